/* The network's name service, as Docker's embedded DNS server: on the gateway address (port 53,
 * UDP and TCP), a guest's query for an endpoint's id or alias on the same network gets its address;
 * every other query is forwarded to the host's resolver and the answer relayed back. Names are
 * per network, so a guest cannot learn the addresses of another network's guests.
 *
 * Queries come from guests: every length and label is checked; a malformed query gets no
 * answer. Forwarding never blocks: a query waits in a small table (its id rewritten, so two
 * guests' ids cannot collide upstream) until the answer comes or its slot is needed again.
 *
 * TCP (RFC 7766: resolvers retry there when an answer is truncated, and some always use it):
 * each message has a two-byte length; a connection may carry several queries. Connections are a
 * small table, the oldest closed when it is full or idle too long; forwarded TCP queries go
 * upstream over UDP and their answers come back on the guest's connection. All sockets sit in
 * one epoll set whose fd the caller polls. */
#include <ctype.h>
#include <errno.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>

#include "net/internal.h"

#define DNS_PORT 53
#define DNS_HEADER_LEN 12
#define DNS_NAME_MAX 255
#define DNS_TTL 600u
#define DNS_PENDING 64
#define DNS_PENDING_SECONDS 5
#define DNS_MSG_MAX 1500
#define DNS_TCP_CONNS 16
#define DNS_TCP_IDLE_SECONDS 10
#define DNS_BUDGET_TCP 8 /* reads per connection and call */

enum { DNS_TYPE_A = 1, DNS_TYPE_ANY = 255, DNS_CLASS_IN = 1 };
enum { RCODE_SERVFAIL = 2 };

typedef struct dns_pending {
  bool used;
  uint16_t upstream_id, client_id;
  struct sockaddr_in client;
  int tcp;          /* the TCP connection's slot, or -1 for a UDP client */
  unsigned tcp_gen; /* ... and which connection in that slot */
  bool routed;      /* sent to the client endpoint's own upstream (server), by routed_fd */
  struct sockaddr_in server;
  time_t deadline;
} dns_pending;

typedef struct dns_tcp_conn {
  int fd; /* -1: free */
  unsigned gen;
  struct sockaddr_in peer;
  time_t idle_until;
  size_t len; /* bytes of the current message read so far, its two-byte length included */
  uint8_t buf[2 + DNS_MSG_MAX];
} dns_tcp_conn;

struct net_dns {
  char *network;
  int ep_fd;       /* what the caller polls: every socket below */
  int listen_fd;   /* UDP */
  int tcp_fd;      /* TCP listener */
  int upstream_fd; /* connected to the upstream resolver; -1 when there is none */
  int routed_fd;   /* unconnected: to endpoints' own upstreams (net_endpoint_opts.dns_upstream) */
  uint16_t next_id;
  unsigned next_gen;
  dns_pending pending[DNS_PENDING];
  dns_tcp_conn tcp[DNS_TCP_CONNS];
};

/* The question's name, lowercased and dotted ("web.example"), and where the question ends. */
static int parse_question(const uint8_t *msg, size_t len, char name[DNS_NAME_MAX + 1],
                          size_t *q_end, uint16_t *qtype, uint16_t *qclass, vs_error **err) {
  size_t i = DNS_HEADER_LEN, n = 0;
  for (;;) {
    if (i >= len)
      return vs_error_set(err, EINVAL, "dns: name runs past the message");
    uint8_t l = msg[i++];
    if (l == 0)
      break;
    if (l > 63) /* compression pointers have no place in a question */
      return vs_error_set(err, EINVAL, "dns: label of length %u in the question", l);
    if (l > len - i || n + l + 1 > DNS_NAME_MAX)
      return vs_error_set(err, EINVAL, "dns: name too long or past the message");
    if (n)
      name[n++] = '.';
    for (size_t k = 0; k < l; k++)
      name[n++] = (char)tolower(msg[i + k]);
    i += l;
  }
  name[n] = '\0';
  if (len - i < 4)
    return vs_error_set(err, EINVAL, "dns: question without type and class");
  *qtype = (uint16_t)(msg[i] << 8 | msg[i + 1]);
  *qclass = (uint16_t)(msg[i + 2] << 8 | msg[i + 3]);
  *q_end = i + 4;
  return 0;
}

static bool name_is(const char *name, const char *s) { return strcasecmp(name, s) == 0; }

/* The address of a name on the network: its own endpoints first, then the guests of other
 * hosts (a network across hosts). */
static const struct in_addr *address_by_name(const net_network *n, const char *name) {
  for (size_t i = 0; i < n->n_eps; i++) {
    const net_endpoint *ep = n->eps[i];
    if (name_is(name, ep->id))
      return &ep->ip;
    for (size_t k = 0; k < ep->n_aliases; k++)
      if (name_is(name, ep->aliases[k]))
        return &ep->ip;
  }
  for (size_t i = 0; i < n->n_remote; i++)
    if (name_is(name, n->remote_names[i]))
      return &n->remote_ips[i];
  return NULL;
}

/* Header and question of the query, flags of an authoritative answer, then the A record (its
 * name a pointer to the question's, 0xc00c) when there is one. */
static size_t build_answer(const uint8_t *q, size_t q_end, const struct in_addr *ip, bool with_a,
                           uint8_t rcode, uint8_t *out) {
  memcpy(out, q, q_end);
  out[2] = (uint8_t)(0x80 | 0x04 | (q[2] & 0x01)); /* QR, AA, RD as asked */
  out[3] = (uint8_t)(0x80 | rcode);                /* RA */
  out[4] = 0;
  out[5] = 1;
  memset(out + 6, 0, 6);
  size_t len = q_end;
  if (!with_a)
    return len;
  out[7] = 1;
  static const uint8_t rr[] = {0xc0, 0x0c, 0, DNS_TYPE_A, 0, DNS_CLASS_IN, 0, 0, 0x02, 0x58, 0, 4};
  _Static_assert(DNS_TTL == 0x258, "the record's TTL bytes");
  memcpy(out + len, rr, sizeof(rr));
  len += sizeof(rr);
  memcpy(out + len, &ip->s_addr, 4);
  return len + 4;
}

int net_dns_answer(const net_network *n, const uint8_t *q, size_t len, uint8_t *out, size_t cap,
                   size_t *out_len, bool *forward, vs_error **err) {
  *out_len = 0;
  *forward = false;
  if (len < DNS_HEADER_LEN + 5)
    return vs_error_set(err, EINVAL, "dns: message of %zu bytes is too short", len);
  if (q[2] & 0x80)
    return vs_error_set(err, EINVAL, "dns: a response, not a query");
  if ((q[2] & 0x78) != 0 || q[4] != 0 || q[5] != 1)
    return vs_error_set(err, EINVAL, "dns: not a standard query with one question");
  char name[DNS_NAME_MAX + 1];
  size_t q_end;
  uint16_t qtype, qclass;
  if (parse_question(q, len, name, &q_end, &qtype, &qclass, err) < 0)
    return -1;
  const struct in_addr *ip = qclass == DNS_CLASS_IN ? address_by_name(n, name) : NULL;
  if (!ip) {
    *forward = true;
    return 0;
  }
  if (cap < q_end + 16)
    return vs_error_set(err, EINVAL, "dns: answer buffer of %zu bytes is too small", cap);
  /* a name of ours with no record of the type asked (AAAA): NOERROR with no answer */
  *out_len = build_answer(q, q_end, ip, qtype == DNS_TYPE_A || qtype == DNS_TYPE_ANY, 0, out);
  return 0;
}

int net_dns_parse_upstream(const char *s, struct sockaddr_in *sa, vs_error **err) {
  char host[INET_ADDRSTRLEN];
  const char *colon = strchr(s, ':');
  size_t hl = colon ? (size_t)(colon - s) : strlen(s);
  uint64_t port = DNS_PORT;
  if (hl >= sizeof(host))
    return vs_error_set(err, EINVAL, "dns upstream \"%s\": not IPV4[:PORT]", s);
  memcpy(host, s, hl);
  host[hl] = '\0';
  *sa = (struct sockaddr_in){.sin_family = AF_INET};
  if (inet_pton(AF_INET, host, &sa->sin_addr) != 1 ||
      (colon && (vs_parse_u64(colon + 1, "dns upstream port", &port, NULL) < 0 || port == 0 ||
                 port > 65535)))
    return vs_error_set(err, EINVAL, "dns upstream \"%s\": not IPV4[:PORT]", s);
  sa->sin_port = htons((uint16_t)port);
  return 0;
}

/* The first IPv4 nameserver of the daemon's /etc/resolv.conf; 0 with *found false if none. */
static int upstream_from_resolv_conf(struct sockaddr_in *sa, bool *found, vs_error **err) {
  *found = false;
  _cleanup_free_ char *text = NULL;
  _cleanup_error_ vs_error *e = NULL;
  if (vs_read_file("/etc/resolv.conf", 1 << 16, &text, NULL, &e) < 0)
    return 0; /* no resolver: names not on the network fail (SERVFAIL) */
  for (char *save = NULL, *line = strtok_r(text, "\n", &save); line;
       line = strtok_r(NULL, "\n", &save)) {
    char addr[64];
    if (sscanf(line, " nameserver %63s", addr) == 1 &&
        net_dns_parse_upstream(addr, sa, NULL) == 0) {
      *found = true;
      return 0;
    }
  }
  return 0;
}

static void dns_closep(net_dns **d) { net_dns_close(*d); }

static int open_upstream(net_dns *d, const char *upstream, vs_error **err) {
  struct sockaddr_in sa;
  bool found = true;
  if (upstream ? net_dns_parse_upstream(upstream, &sa, err) < 0
               : upstream_from_resolv_conf(&sa, &found, err) < 0)
    return -1;
  if (!found)
    return 0;
  d->upstream_fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (d->upstream_fd < 0)
    return vs_error_set(err, errno, "dns: upstream socket");
  if (connect(d->upstream_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
    /* the host's own resolver out of reach (no route yet): the network's names still resolve,
     * others get SERVFAIL; an upstream the caller named must work */
    if (!upstream && (errno == ENETUNREACH || errno == EHOSTUNREACH)) {
      vs_log_warn("dns: the resolver of /etc/resolv.conf is unreachable (%s): other names get "
                  "SERVFAIL",
                  strerror(errno));
      close(d->upstream_fd);
      d->upstream_fd = -1;
      return 0;
    }
    return vs_error_set(err, errno, "dns: connect to the upstream resolver");
  }
  return 0;
}

net_dns *net_dns_open(const net_ctx *ctx, const char *network, const char *upstream,
                      vs_error **err) {
  const net_network *n = net_find_network(ctx, network);
  if (!n) {
    vs_error_set(err, ENOENT, "dns: network %s: no such network", network);
    return NULL;
  }
  _cleanup_(dns_closep) net_dns *d = vs_malloc0(sizeof(*d));
  d->network = vs_strdup(network);
  d->upstream_fd = d->tcp_fd = d->ep_fd = d->routed_fd = -1;
  for (size_t i = 0; i < DNS_TCP_CONNS; i++)
    d->tcp[i].fd = -1;
  d->next_id = (uint16_t)(time(NULL) ^ getpid());
  d->listen_fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (d->listen_fd < 0) {
    vs_error_set(err, errno, "dns: socket");
    return NULL;
  }
  struct sockaddr_in sa = {
      .sin_family = AF_INET, .sin_port = htons(DNS_PORT), .sin_addr.s_addr = htonl(n->gateway)};
  char gw[INET_ADDRSTRLEN];
  net_format_ipv4(n->gateway, gw);
  if (bind(d->listen_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
    vs_error_set(err, errno, "dns: network %s: bind %s:%d", network, gw, DNS_PORT);
    return NULL;
  }
  d->tcp_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  int one = 1;
  if (d->tcp_fd < 0 || setsockopt(d->tcp_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
      bind(d->tcp_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(d->tcp_fd, 16) < 0) {
    vs_error_set(err, errno, "dns: network %s: listen on TCP %s:%d", network, gw, DNS_PORT);
    return NULL;
  }
  if (open_upstream(d, upstream, err) < 0) {
    vs_error_wrap(err, "dns: network %s", network);
    return NULL;
  }
  d->routed_fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (d->routed_fd < 0) {
    vs_error_set(err, errno, "dns: socket");
    return NULL;
  }
  d->ep_fd = epoll_create1(EPOLL_CLOEXEC);
  if (d->ep_fd < 0) {
    vs_error_set(err, errno, "dns: epoll_create1");
    return NULL;
  }
  int fds[] = {d->listen_fd, d->tcp_fd, d->upstream_fd, d->routed_fd};
  for (size_t i = 0; i < ARRAY_SIZE(fds); i++) {
    struct epoll_event ev = {.events = EPOLLIN};
    if (fds[i] >= 0 && epoll_ctl(d->ep_fd, EPOLL_CTL_ADD, fds[i], &ev) < 0) {
      vs_error_set(err, errno, "dns: epoll_ctl");
      return NULL;
    }
  }
  return steal_pointer(&d);
}

void net_dns_fds(const net_dns *d, int fds[2]) {
  fds[0] = d->ep_fd;
  fds[1] = -1;
}

void net_dns_close(net_dns *d) {
  if (!d)
    return;
  for (size_t i = 0; i < DNS_TCP_CONNS; i++)
    if (d->tcp[i].fd >= 0)
      close(d->tcp[i].fd);
  if (d->ep_fd >= 0)
    close(d->ep_fd);
  if (d->tcp_fd >= 0)
    close(d->tcp_fd);
  if (d->listen_fd >= 0)
    close(d->listen_fd);
  if (d->upstream_fd >= 0)
    close(d->upstream_fd);
  if (d->routed_fd >= 0)
    close(d->routed_fd);
  free(d->network);
  free(d);
}

/* A free slot, or the oldest expired one; NULL when all are waiting (the query is dropped and
 * the guest's resolver retries, as with a lost packet). */
static dns_pending *pending_slot(net_dns *d, time_t now) {
  for (size_t i = 0; i < DNS_PENDING; i++)
    if (!d->pending[i].used || d->pending[i].deadline < now)
      return &d->pending[i];
  return NULL;
}

static void reply_servfail(net_dns *d, uint8_t *q, size_t len, const struct sockaddr_in *from) {
  q[2] = (uint8_t)(0x80 | (q[2] & 0x01));
  q[3] = (uint8_t)(0x80 | RCODE_SERVFAIL);
  (void)sendto(d->listen_fd, q, len, 0, (const struct sockaddr *)from, sizeof(*from));
}

static void tcp_send(net_dns *d, int slot, const uint8_t *msg, size_t len);

/* The endpoint the query came from, if it has an upstream of its own. */
static const net_endpoint *routed_client(const net_network *n, struct in_addr client) {
  for (size_t i = 0; i < n->n_eps; i++)
    if (n->eps[i]->ip.s_addr == client.s_addr && n->eps[i]->dns_upstream)
      return n->eps[i];
  return NULL;
}

static void forward_query(net_dns *d, const net_network *n, uint8_t *q, size_t len,
                          const struct sockaddr_in *from, int tcp) {
  time_t now = time(NULL);
  struct in_addr client = tcp >= 0 ? d->tcp[tcp].peer.sin_addr
                          : from   ? from->sin_addr
                                   : (struct in_addr){0};
  const net_endpoint *own = routed_client(n, client);
  dns_pending *p = own || d->upstream_fd >= 0 ? pending_slot(d, now) : NULL;
  if (!p) {
    if (tcp < 0) {
      reply_servfail(d, q, len, from);
    } else {
      q[2] = (uint8_t)(0x80 | (q[2] & 0x01));
      q[3] = (uint8_t)(0x80 | RCODE_SERVFAIL);
      tcp_send(d, tcp, q, len);
    }
    return;
  }
  *p = (dns_pending){.used = true,
                     .upstream_id = d->next_id++,
                     .client_id = (uint16_t)(q[0] << 8 | q[1]),
                     .client = from ? *from : (struct sockaddr_in){0},
                     .tcp = tcp,
                     .tcp_gen = tcp >= 0 ? d->tcp[tcp].gen : 0,
                     .routed = own != NULL,
                     .server = own ? own->dns_upstream_sa : (struct sockaddr_in){0},
                     .deadline = now + DNS_PENDING_SECONDS};
  q[0] = (uint8_t)(p->upstream_id >> 8);
  q[1] = (uint8_t)p->upstream_id;
  ssize_t sent =
      own ? sendto(d->routed_fd, q, len, 0, (const struct sockaddr *)&p->server, sizeof(p->server))
          : send(d->upstream_fd, q, len, 0);
  if (sent < 0)
    p->used = false;
}

static bool handle_query(net_dns *d, const net_network *n) {
  uint8_t q[DNS_MSG_MAX], out[DNS_MSG_MAX];
  struct sockaddr_in from = {0}; /* recvfrom fills it; the analyzer cannot tell */
  socklen_t fl = sizeof(from);
  ssize_t len = recvfrom(d->listen_fd, q, sizeof(q), 0, (struct sockaddr *)&from, &fl);
  if (len <= 0)
    return false;
  size_t out_len;
  bool forward;
  _cleanup_error_ vs_error *bad = NULL;
  if (net_dns_answer(n, q, (size_t)len, out, sizeof(out), &out_len, &forward, &bad) < 0) {
    vs_log_debug("network %s: %s", n->name, bad->msg); /* a guest's garbage: no answer */
    return true;
  }
  if (forward)
    forward_query(d, n, q, (size_t)len, &from, -1);
  else
    (void)sendto(d->listen_fd, out, out_len, 0, (struct sockaddr *)&from, sizeof(from));
  return true;
}

/* An answer from an upstream (routed: by routed_fd, from the server the query went to; else
 * from the connected upstream): back to the guest with its own id. */
static bool handle_reply(net_dns *d, bool routed) {
  uint8_t r[DNS_MSG_MAX];
  struct sockaddr_in src = {0};
  socklen_t sl = sizeof(src);
  ssize_t len = recvfrom(routed ? d->routed_fd : d->upstream_fd, r, sizeof(r), 0,
                         (struct sockaddr *)&src, &sl);
  if (len < 0)
    return false;
  if (len < DNS_HEADER_LEN)
    return true;
  uint16_t id = (uint16_t)(r[0] << 8 | r[1]);
  for (size_t i = 0; i < DNS_PENDING; i++) {
    dns_pending *p = &d->pending[i];
    if (!p->used || p->upstream_id != id || p->routed != routed)
      continue;
    if (routed &&
        (src.sin_addr.s_addr != p->server.sin_addr.s_addr || src.sin_port != p->server.sin_port))
      continue; /* not from the server asked: an unconnected socket takes anyone's datagrams */
    r[0] = (uint8_t)(p->client_id >> 8);
    r[1] = (uint8_t)p->client_id;
    if (p->tcp < 0)
      (void)sendto(d->listen_fd, r, (size_t)len, 0, (struct sockaddr *)&p->client,
                   sizeof(p->client));
    else if (d->tcp[p->tcp].fd >= 0 && d->tcp[p->tcp].gen == p->tcp_gen)
      tcp_send(d, p->tcp, r, (size_t)len);
    p->used = false;
    return true;
  }
  return true;
}

/* ---------------------------------------------------------------- TCP */

static void tcp_close(net_dns *d, int slot) {
  dns_tcp_conn *c = &d->tcp[slot];
  if (c->fd < 0)
    return;
  epoll_ctl(d->ep_fd, EPOLL_CTL_DEL, c->fd, NULL);
  close(c->fd);
  c->fd = -1;
}

/* One message with its length. Answers are small and the socket's buffer is empty between
 * queries: a client that does not read what it asked for loses its connection. */
static void tcp_send(net_dns *d, int slot, const uint8_t *msg, size_t len) {
  uint8_t out[2 + DNS_MSG_MAX];
  if (len > DNS_MSG_MAX)
    return;
  out[0] = (uint8_t)(len >> 8);
  out[1] = (uint8_t)len;
  memcpy(out + 2, msg, len);
  if (send(d->tcp[slot].fd, out, len + 2, MSG_NOSIGNAL | MSG_DONTWAIT) != (ssize_t)(len + 2))
    tcp_close(d, slot);
}

static void tcp_accept(net_dns *d, time_t now) {
  for (int budget = 0; budget < DNS_TCP_CONNS; budget++) {
    struct sockaddr_in peer = {0};
    socklen_t pl = sizeof(peer);
    int fd = accept4(d->tcp_fd, (struct sockaddr *)&peer, &pl, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0)
      return;
    int slot = 0;
    for (int i = 0; i < DNS_TCP_CONNS; i++) {
      if (d->tcp[i].fd < 0 || d->tcp[i].idle_until < now) {
        slot = i;
        break;
      }
      if (d->tcp[i].idle_until < d->tcp[slot].idle_until)
        slot = i; /* full: the least recently active one goes */
    }
    tcp_close(d, slot);
    struct epoll_event ev = {.events = EPOLLIN};
    if (epoll_ctl(d->ep_fd, EPOLL_CTL_ADD, fd, &ev) < 0) {
      close(fd);
      continue;
    }
    d->tcp[slot] = (dns_tcp_conn){.fd = fd,
                                  .gen = ++d->next_gen,
                                  .peer = peer,
                                  .idle_until = now + DNS_TCP_IDLE_SECONDS,
                                  .len = 0};
  }
}

/* Read what the connection has; answer every complete query. */
static void tcp_read(net_dns *d, const net_network *n, int slot, time_t now) {
  dns_tcp_conn *c = &d->tcp[slot];
  for (int budget = 0; c->fd >= 0 && budget < DNS_BUDGET_TCP; budget++) {
    size_t want = c->len < 2 ? 2 - c->len : 2 + (size_t)(c->buf[0] << 8 | c->buf[1]) - c->len;
    ssize_t r = recv(c->fd, c->buf + c->len, want, 0);
    if (r < 0 && (errno == EAGAIN || errno == EINTR))
      return;
    if (r <= 0) {
      tcp_close(d, slot);
      return;
    }
    c->len += (size_t)r;
    c->idle_until = now + DNS_TCP_IDLE_SECONDS;
    if (c->len == 2) {
      size_t mlen = (size_t)(c->buf[0] << 8 | c->buf[1]);
      if (mlen < DNS_HEADER_LEN || mlen > DNS_MSG_MAX) {
        tcp_close(d, slot); /* not a query we would answer: no reason to read on */
        return;
      }
      continue;
    }
    if (c->len < 2 + (size_t)(c->buf[0] << 8 | c->buf[1]))
      continue;
    size_t qlen = c->len - 2, out_len;
    c->len = 0;
    uint8_t out[DNS_MSG_MAX];
    bool forward;
    _cleanup_error_ vs_error *bad = NULL;
    if (net_dns_answer(n, c->buf + 2, qlen, out, sizeof(out), &out_len, &forward, &bad) < 0) {
      vs_log_debug("network %s: %s (TCP)", n->name, bad->msg);
      tcp_close(d, slot);
      return;
    }
    if (forward)
      forward_query(d, n, c->buf + 2, qlen, NULL, slot);
    else
      tcp_send(d, slot, out, out_len);
  }
}

/* At most this many datagrams per call, so a flood cannot hold the caller's loop. */
#define DNS_BUDGET 32

int net_dns_handle(net_dns *d, const net_ctx *ctx, vs_error **err) {
  const net_network *n = net_find_network(ctx, d->network);
  if (!n)
    return vs_error_set(err, ENOENT, "dns: network %s: no such network", d->network);
  for (int i = 0; i < DNS_BUDGET && handle_query(d, n); i++)
    ;
  for (int i = 0; d->upstream_fd >= 0 && i < DNS_BUDGET && handle_reply(d, false); i++)
    ;
  for (int i = 0; i < DNS_BUDGET && handle_reply(d, true); i++)
    ;
  time_t now = time(NULL);
  tcp_accept(d, now);
  for (int i = 0; i < DNS_TCP_CONNS; i++)
    tcp_read(d, n, i, now);
  return 0;
}
