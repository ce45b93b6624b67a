/* Requests for a guest of another node, carried to that node (docs/cluster.md, "From any node").
 *
 * The node that takes a request naming a guest of the cluster that is placed on another node (A)
 * does not serve it: it listens once on its advertised address, writes /vessel/tunnels/ID (under
 * its lease, create-only) naming that node (B), the address and a random ticket, and waits. B's
 * tunnel thread sees the key in its copy of etcd, connects and presents the ticket; A checks it
 * in constant time, takes that one connection, writes the client's request into it unchanged
 * (on B the guest is local) and copies bytes both ways until either side ends. B serves the
 * connection as any client's (vd_conn_adopt), so what the client gets is exactly what a client
 * on B would: an answer, a chunked stream, a hijacked attach, exec or console.
 *
 * etcd is the trust root: whoever reads the key may connect, whoever writes it may point B at an
 * address; TLS and auth on etcd protect both. The tunnel's bytes are as private as the nodes'
 * network (as a migration's). */
#include "daemon/internal.h"
#include "daemon/vms.h"
#include "daemon/web.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#define TUNNELS "/vessel/tunnels/"
#define CONNECT_WAIT_S 20 /* for B's connection, once the key is written */
#define TICKET_WAIT_MS 5000
#define TICKET_LEN 64
#define PIPE_CHUNK 65536

/* The requests that go to the guest's node: those of one VM or one container by its name, and
 * those of an exec made there through this node (its ID is learnt from the create's answer).
 * Creation, removal and migration stay with the handlers (they act on the cluster's records). */
typedef enum { KIND_VM, KIND_CTR, KIND_EXEC } guest_kind;

static const struct {
  const char *method, *pattern;
  guest_kind kind;
} forwarded[] = {
    {"GET", "/vessel/v1/vms/{}", KIND_VM},
    {"POST", "/vessel/v1/vms/{}/start", KIND_VM},
    {"POST", "/vessel/v1/vms/{}/stop", KIND_VM},
    {"POST", "/vessel/v1/vms/{}/kill", KIND_VM},
    {"POST", "/vessel/v1/vms/{}/restart", KIND_VM},
    {"POST", "/vessel/v1/vms/{}/pause", KIND_VM},
    {"POST", "/vessel/v1/vms/{}/resume", KIND_VM},
    {"GET", "/vessel/v1/vms/{}/logs", KIND_VM},
    {"POST", "/vessel/v1/vms/{}/console", KIND_VM},
    {"GET", "/vessel/v1/vms/{}/stats", KIND_VM},
    {"GET", "/containers/{}/json", KIND_CTR},
    {"POST", "/containers/{}/start", KIND_CTR},
    {"POST", "/containers/{}/stop", KIND_CTR},
    {"POST", "/containers/{}/kill", KIND_CTR},
    {"POST", "/containers/{}/restart", KIND_CTR},
    {"POST", "/containers/{}/pause", KIND_CTR},
    {"POST", "/containers/{}/unpause", KIND_CTR},
    {"POST", "/containers/{}/wait", KIND_CTR},
    {"POST", "/containers/{}/attach", KIND_CTR},
    {"POST", "/containers/{}/resize", KIND_CTR},
    {"POST", "/containers/{}/exec", KIND_CTR},
    {"GET", "/containers/{}/logs", KIND_CTR},
    {"GET", "/containers/{}/stats", KIND_CTR},
    {"GET", "/containers/{}/top", KIND_CTR},
    {"POST", "/vessel/v1/containers/{}/stop", KIND_CTR},
    {"POST", "/vessel/v1/containers/{}/start", KIND_CTR},
    {"GET", "/vessel/v1/containers/{}/logs", KIND_CTR},
    {"POST", "/exec/{}/start", KIND_EXEC},
    {"GET", "/exec/{}/json", KIND_EXEC},
    {"POST", "/exec/{}/resize", KIND_EXEC},
};

typedef struct tunnel_job {
  vd_daemon *d;
  int client;    /* the client's socket (blocking) */
  char *node;    /* B */
  char *what;    /* "VM web1", "container web1": for messages */
  char *request; /* the head, the body and what followed, for B */
  size_t request_len;
  bool learn_exec; /* an exec's create: its ID, in B's answer, is remembered as B's */
} tunnel_job;

/* Execs made on other nodes through this one, by ID ({id: node}); a few hundred at most. */
#define EXECS_MAX 512
#define ANSWER_PEEK 8192

static const char *str(const json_t *o, const char *f) {
  return json_string_value(json_object_get(o, f));
}

/* ------------------------------------------------------------- the node that took the request */

static void tunnel_job_free(tunnel_job *t) {
  if (t->client >= 0)
    close(t->client);
  free(t->node);
  free(t->what);
  free(t->request);
  free(t);
}

/* An answer of our own on the client's socket, before the tunnel carried anything. */
static void answer_client(int fd, int status, const char *msg) {
  _cleanup_json_ json_t *j = json_pack("{s:s}", "message", msg);
  _cleanup_free_ char *body = json_dumps(j, JSON_COMPACT);
  _cleanup_free_ char *out = vs_asprintf("HTTP/1.1 %d %s\r\nApi-Version: " VD_API_VERSION
                                         "\r\nContent-Type: application/json\r\n"
                                         "Content-Length: %zu\r\nConnection: close\r\n\r\n%s\n",
                                         status, http_reason(status), strlen(body) + 1, body);
  if (vs_write_all(fd, out, strlen(out), NULL) < 0)
    vs_log_debug("cluster: tunnel: the client went away before its answer");
}

static bool stopping(vd_cluster *cl) {
  pthread_mutex_lock(&cl->lock);
  bool s = cl->stop;
  pthread_mutex_unlock(&cl->lock);
  return s;
}

/* Read exactly len bytes within ms; whether they came. */
static bool read_within(int fd, char *buf, size_t len, int ms) {
  size_t got = 0;
  int64_t end = vd_ha_now_ms() + ms;
  while (got < len) {
    int64_t left = end - vd_ha_now_ms();
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (left <= 0 || poll(&p, 1, (int)left) <= 0)
      return false;
    ssize_t n = recv(fd, buf + got, len - got, 0);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return false;
    got += (size_t)n;
  }
  return true;
}

/* The one connection that presents ticket, within CONNECT_WAIT_S; others are dropped. */
static int accept_ticket(vd_cluster *cl, int lfd, const char *ticket) {
  int64_t end = vd_ha_now_ms() + (int64_t)CONNECT_WAIT_S * 1000;
  while (vd_ha_now_ms() < end && !stopping(cl)) {
    struct pollfd p = {.fd = lfd, .events = POLLIN};
    if (poll(&p, 1, 200) <= 0)
      continue;
    int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0)
      continue;
    char got[TICKET_LEN + 2] = {0};
    if (read_within(fd, got, TICKET_LEN + 1, TICKET_WAIT_MS) && got[TICKET_LEN] == '\n') {
      got[TICKET_LEN] = 0;
      if (vd_web_token_equal(got, ticket))
        return fd;
    }
    vs_log_warn("cluster: tunnel: a connection without the ticket was dropped");
    close(fd);
  }
  return -1;
}

/* Write the key that asks B to connect, wait for it; the tunnel's socket or -1 after answering
 * the client. */
static int tunnel_open(vd_daemon *d, tunnel_job *t) {
  vd_cluster *cl = &d->cluster;
  vs_error *e = NULL;
  _cleanup_free_ char *address = NULL;
  int lfd = vd_cluster_listen_advertised(cl->advertise, &address, &e);
  if (lfd < 0) {
    _cleanup_free_ char *m = vs_asprintf("%s is on node %s: %s", t->what, t->node, e->msg);
    answer_client(t->client, 502, m);
    vs_error_free(e);
    return -1;
  }
  _cleanup_free_ char *ticket = vd_random_id();
  _cleanup_free_ char *id = vd_random_id();
  id[16] = 0;
  _cleanup_free_ char *key = vs_asprintf(TUNNELS "%s", id);
  _cleanup_json_ json_t *doc = json_pack("{s:s, s:s, s:s, s:s}", "Node", t->node, "From",
                                         cl->node_name, "Address", address, "Ticket", ticket);
  _cleanup_free_ char *text = json_dumps(doc, JSON_COMPACT);
  bool ok = false;
  if (vc_etcd_put_if(cl->etcd, key, text, strlen(text), vd_cluster_lease(cl), 0, &ok, NULL, NULL,
                     &e) < 0 ||
      !ok) {
    _cleanup_free_ char *m =
        vs_asprintf("cluster store: %s", e ? e->msg : "the tunnel's key exists already");
    answer_client(t->client, 503, m);
    vs_error_free(e);
    close(lfd);
    return -1;
  }
  int fd = accept_ticket(cl, lfd, ticket);
  close(lfd);
  if (vc_etcd_delete(cl->etcd, key, false, NULL, &e) < 0) {
    vs_log_debug("cluster: tunnel: removing %s: %s", key, e->msg); /* it goes with the lease */
    vs_error_free(e);
  }
  if (fd < 0) {
    _cleanup_free_ char *m = vs_asprintf("%s is on node %s, which did not connect within %d s",
                                         t->what, t->node, CONNECT_WAIT_S);
    answer_client(t->client, 504, m);
  }
  return fd;
}

/* The start of B's answer to an exec's create, kept until it is whole: the exec's ID is then
 * remembered as B's before the client has the answer (it asks for the exec's start at once). */
typedef struct answer_peek {
  vd_cluster *cl;
  const char *node;
  char buf[ANSWER_PEEK];
  size_t len;
  bool done;
} answer_peek;

/* B's answer to an exec's create (201 {"Id": ...}), whole: that exec is B's. Whether the answer
 * is whole (or will never be of use). */
static bool learn_exec(vd_cluster *cl, const char *node, const char *answer, size_t len) {
  const char *end = memmem(answer, len, "\r\n\r\n", 4);
  if (!end)
    return len >= ANSWER_PEEK;
  if (len < 12 || strncmp(answer + 8, " 201", 4) != 0)
    return true;
  end += 4;
  _cleanup_json_ json_t *j = json_loadb(end, len - (size_t)(end - answer), 0, NULL);
  if (!j)
    return len >= ANSWER_PEEK; /* not all of it yet */
  const char *id = str(j, "Id");
  if (!id || strlen(id) != 64 || strspn(id, "0123456789abcdef") != 64)
    return true;
  pthread_mutex_lock(&cl->lock);
  if (!cl->tunnel_execs || json_object_size(cl->tunnel_execs) >= EXECS_MAX) {
    json_decref(cl->tunnel_execs); /* the oldest go with the rest: execs are short-lived */
    cl->tunnel_execs = json_object();
  }
  json_object_set_new(cl->tunnel_execs, id, json_string(node));
  pthread_mutex_unlock(&cl->lock);
  return true;
}

/* The node an exec made through this node is on; NULL. */
static char *exec_node(vd_cluster *cl, const char *id) {
  pthread_mutex_lock(&cl->lock);
  const char *n = json_string_value(json_object_get(cl->tunnel_execs, id));
  char *node = n ? vs_strdup(n) : NULL;
  pthread_mutex_unlock(&cl->lock);
  return node;
}

/* Copy what one socket gives to the other: false at its end (or an error). An answer peeked at
 * is looked at before the client gets it. */
static bool pass(int from, int to, char *buf, answer_peek *peek) {
  ssize_t n = recv(from, buf, PIPE_CHUNK, 0);
  if (n < 0 && (errno == EINTR || errno == EAGAIN))
    return true;
  if (n <= 0)
    return false;
  if (peek && !peek->done) {
    size_t k = ANSWER_PEEK - peek->len < (size_t)n ? ANSWER_PEEK - peek->len : (size_t)n;
    memcpy(peek->buf + peek->len, buf, k);
    peek->len += k;
    peek->done = learn_exec(peek->cl, peek->node, peek->buf, peek->len);
  }
  return vs_write_all(to, buf, (size_t)n, NULL) == 0;
}

/* Bytes both ways until B ends (or the client is gone both ways, or the daemon stops); a
 * client that shuts its sending side has that passed on, and the answer still comes. */
static void tunnel_pipe(vd_cluster *cl, int client, int tunnel, answer_peek *peek) {
  _cleanup_free_ char *buf = vs_malloc0(PIPE_CHUNK);
  bool client_open = true;
  while (!stopping(cl)) {
    struct pollfd p[2] = {{.fd = tunnel, .events = POLLIN},
                          {.fd = client_open ? client : -1, .events = POLLIN}};
    int r = poll(p, 2, 500);
    if (r < 0 && errno != EINTR)
      break;
    if (r <= 0)
      continue;
    if ((p[0].revents & (POLLIN | POLLHUP | POLLERR)) && !pass(tunnel, client, buf, peek))
      break;
    if (p[1].revents & (POLLIN | POLLHUP | POLLERR)) {
      if (!pass(client, tunnel, buf, NULL)) {
        client_open = false;
        shutdown(tunnel, SHUT_WR);
      }
    }
  }
}

static void *tunnel_thread(void *arg) {
  tunnel_job *t = arg;
  vd_cluster *cl = &t->d->cluster;
  int fd = tunnel_open(t->d, t);
  if (fd >= 0) {
    /* a client that stops reading does not hold the thread forever */
    struct timeval tv = {.tv_sec = 60};
    setsockopt(t->client, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    _cleanup_free_ answer_peek *peek = t->learn_exec ? vs_malloc0(sizeof(*peek)) : NULL;
    if (peek) {
      peek->cl = cl;
      peek->node = t->node;
    }
    if (vs_write_all(fd, t->request, t->request_len, NULL) == 0)
      tunnel_pipe(cl, t->client, fd, peek);
    close(fd);
  }
  tunnel_job_free(t);
  pthread_mutex_lock(&cl->lock);
  cl->tunnels_active--;
  pthread_cond_broadcast(&cl->cond);
  pthread_mutex_unlock(&cl->lock);
  return NULL;
}

/* Headers that describe this hop's framing, not the request: the request goes as one body
 * with its length, and the connection ends with the answer unless it is an upgrade. */
static bool hop_header(const char *name) {
  static const char *const hop[] = {
      "Connection",       "Keep-Alive", "Content-Length", "Transfer-Encoding", "Expect",
      "Proxy-Connection", "TE"};
  for (size_t i = 0; i < ARRAY_SIZE(hop); i++)
    if (!strcasecmp(name, hop[i]))
      return true;
  return false;
}

/* The request as B gets it: its line and headers as the client sent them, the body whole. */
static void build_request(const vd_call *call, tunnel_job *t) {
  const http_request *req = call->req;
  char *out = vs_asprintf("%s %s HTTP/1.1\r\n", req->method, req->target);
  for (size_t i = 0; i < req->n_headers; i++) {
    if (hop_header(req->headers[i].name))
      continue;
    char *next = vs_asprintf("%s%s: %s\r\n", out, req->headers[i].name, req->headers[i].value);
    free(out);
    out = next;
  }
  char *next = vs_asprintf("%sContent-Length: %zu\r\nConnection: %s\r\n\r\n", out, call->body_len,
                           req->upgrade_tcp ? "Upgrade" : "close");
  free(out);
  out = next;
  size_t hl = strlen(out);
  t->request_len = hl + call->body_len;
  t->request = vs_realloc(out, t->request_len + 1);
  if (call->body_len)
    memcpy(t->request + hl, call->body, call->body_len);
}

/* Whether the guest is on this node: then the handler serves the request (and says 404 when
 * the name is nobody's). */
static bool guest_here(vd_daemon *d, const char *name, bool vm) {
  if (!vm) {
    pthread_mutex_lock(&d->lock);
    bool here = vd_ctr_find(d, name) != NULL;
    pthread_mutex_unlock(&d->lock);
    return here;
  }
  pthread_mutex_lock(&d->vms->lock);
  bool here = vd_vm_find_locked(d->vms, name) != NULL;
  pthread_mutex_unlock(&d->vms->lock);
  return here;
}

/* The node the call's guest is on, when it is another that is up: NULL when this node serves
 * the call (*down then says whether it must answer that the node is down). */
static char *call_node(vd_daemon *d, const vd_call *call, guest_kind kind, char **down) {
  vd_cluster *cl = &d->cluster;
  *down = NULL;
  _cleanup_free_ char *node = NULL;
  if (kind == KIND_EXEC) {
    node = exec_node(cl, call->arg);
  } else {
    if (!vd_vm_name_valid(call->arg) || guest_here(d, call->arg, kind == KIND_VM))
      return NULL;
    _cleanup_free_ char *gkey = vs_asprintf("/vessel/guests/%s", call->arg);
    int64_t rev;
    _cleanup_json_ json_t *rec = vd_cache_get(cl, gkey, &rev);
    const char *n = str(rec, "Node"), *k = str(rec, "Kind");
    if (n && k && !strcmp(k, kind == KIND_VM ? "vm" : "container"))
      node = vs_strdup(n);
  }
  if (!node || !strcmp(node, cl->node_name))
    return NULL;
  _cleanup_free_ char *nkey = vs_asprintf("/vessel/nodes/%s", node);
  int64_t rev;
  _cleanup_json_ json_t *nrec = vd_cache_get(cl, nkey, &rev);
  if (!nrec) {
    *down = steal_pointer(&node);
    return NULL;
  }
  return steal_pointer(&node);
}

int vd_tunnel_take(vd_conn *c, vd_call *call) {
  vd_daemon *d = c->d;
  vd_cluster *cl = &d->cluster;
  if (!cl->enabled || c->tunneled || !call->arg || call->route->body_to_file ||
      call->route->mode == VD_RUN_WORKER_STREAMED)
    return 0;
  guest_kind kind = KIND_VM;
  bool known = false;
  for (size_t i = 0; i < ARRAY_SIZE(forwarded) && !known; i++)
    if (!strcmp(forwarded[i].pattern, call->route->pattern) &&
        !strcmp(forwarded[i].method, call->route->method)) {
      known = true;
      kind = forwarded[i].kind;
    }
  if (!known)
    return 0;
  const char *noun = kind == KIND_VM ? "VM" : kind == KIND_CTR ? "container" : "exec";
  _cleanup_free_ char *down = NULL;
  _cleanup_free_ char *node = call_node(d, call, kind, &down);
  if (down) {
    vd_call_error(call, 409, "%s %s is on node %s, which is down", noun, call->arg, down);
    return 2;
  }
  if (!node)
    return 0;
  tunnel_job *t = vs_malloc0(sizeof(*t));
  t->d = d;
  t->node = steal_pointer(&node);
  t->what = vs_asprintf("%s %s", noun, call->arg);
  t->learn_exec = !strcmp(call->route->pattern, "/containers/{}/exec");
  build_request(call, t);
  /* what the client sent after the request (a hijacked stream's first bytes) follows it */
  if (c->in_len) {
    t->request = vs_realloc(t->request, t->request_len + c->in_len);
    memcpy(t->request + t->request_len, c->in, c->in_len);
    t->request_len += c->in_len;
    c->in_len = 0;
  }
  c->call = NULL;
  vd_call_free(call);
  t->client = vd_conn_release_fd(c);
  if (t->client < 0) {
    tunnel_job_free(t);
    return 1;
  }
  vs_log_debug("cluster: %s: to node %s", t->what, t->node);
  pthread_mutex_lock(&cl->lock);
  cl->tunnels_active++;
  pthread_mutex_unlock(&cl->lock);
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  pthread_t th;
  int rc = pthread_create(&th, &attr, tunnel_thread, t);
  pthread_attr_destroy(&attr);
  if (rc) {
    answer_client(t->client, 503, "cannot start a thread for the tunnel");
    tunnel_job_free(t);
    pthread_mutex_lock(&cl->lock);
    cl->tunnels_active--;
    pthread_mutex_unlock(&cl->lock);
  }
  return 1;
}

void vd_tunnels_wait(vd_cluster *cl) {
  pthread_mutex_lock(&cl->lock);
  while (cl->tunnels_active > 0)
    pthread_cond_wait(&cl->cond, &cl->lock);
  pthread_mutex_unlock(&cl->lock);
}

/* ------------------------------------------------------------- the guest's node */

/* "host:port" or "[v6]:port" to a connected socket within a few seconds; -1. */
static int connect_address(const char *address) {
  _cleanup_free_ char *host = vs_strdup(address);
  char *colon = strrchr(host, ':');
  if (!colon)
    return -1;
  *colon = 0;
  const char *port = colon + 1;
  char *h = host;
  if (h[0] == '[') {
    h++;
    size_t l = strlen(h);
    if (l == 0 || h[l - 1] != ']')
      return -1;
    h[l - 1] = 0;
  }
  struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV};
  struct addrinfo *ai = NULL;
  if (getaddrinfo(h, port, &hints, &ai))
    return -1;
  int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  int rc = fd < 0 ? -1 : connect(fd, ai->ai_addr, ai->ai_addrlen);
  freeaddrinfo(ai);
  if (fd < 0)
    return -1;
  if (rc < 0 && errno == EINPROGRESS) {
    struct pollfd p = {.fd = fd, .events = POLLOUT};
    int err = 0;
    socklen_t el = sizeof(err);
    if (poll(&p, 1, 5000) == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) == 0 && !err)
      rc = 0;
  }
  if (rc < 0) {
    close(fd);
    return -1;
  }
  return fd;
}

/* Connect to the asking node, present the ticket, and serve what comes as a client's
 * connection. */
static void tunnel_serve(vd_daemon *d, const char *key, const json_t *doc) {
  const char *address = str(doc, "Address"), *ticket = str(doc, "Ticket");
  if (!address || !ticket || strlen(ticket) != TICKET_LEN) {
    vs_log_warn("cluster: tunnel %s: malformed", key);
    return;
  }
  int fd = connect_address(address);
  if (fd < 0) {
    vs_log_warn("cluster: tunnel %s: cannot connect to %s (node %s)", key, address,
                str(doc, "From") ? str(doc, "From") : "?");
    return;
  }
  _cleanup_free_ char *line = vs_asprintf("%s\n", ticket);
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
  if (vs_write_all(fd, line, strlen(line), NULL) < 0) {
    close(fd);
    return;
  }
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  vd_loop_adopt_tunnel(d, fd);
}

static void *tunneler_thread(void *arg) {
  vd_daemon *d = arg;
  vd_cluster *cl = &d->cluster;
  json_t *seen = json_object(); /* keys already served: each once */
  pthread_mutex_lock(&cl->lock);
  while (!cl->stop) {
    pthread_mutex_unlock(&cl->lock);
    vc_range r;
    if (vd_cache_range(cl, TUNNELS, &r)) {
      json_t *still = json_object();
      for (size_t i = 0; i < r.n; i++) {
        const char *key = r.kvs[i].key;
        json_object_set_new(still, key, json_true());
        if (json_object_get(seen, key))
          continue;
        json_t *doc = vd_guest_record_of(&r.kvs[i]);
        if (doc && str(doc, "Node") && !strcmp(str(doc, "Node"), cl->node_name))
          tunnel_serve(d, key, doc);
        json_decref(doc);
      }
      json_decref(seen);
      seen = still;
      vc_range_clear(&r);
    }
    struct timespec until = vs_realtime_after_ms(1000);
    pthread_mutex_lock(&cl->lock);
    if (!cl->stop)
      pthread_cond_timedwait(&cl->guests_cond, &cl->lock, &until);
  }
  pthread_mutex_unlock(&cl->lock);
  json_decref(seen);
  return NULL;
}

int vd_cluster_start_tunnels(vd_daemon *d, vs_error **err) {
  vd_cluster *cl = &d->cluster;
  return vd_cluster_thread_start(d, &cl->tunneler, tunneler_thread, "the tunnel thread", err);
}
