/* A DHCP server for VMs (and anything else on a network that asks), as libvirt's default network
 * gives one: it answers only clients whose MAC address belongs to an endpoint of the network, with
 * the address IPAM reserved for that endpoint, so IPAM stays the only place addresses come from
 * and there is no lease table to keep or persist (the reservation lasts as long as the endpoint).
 *
 * Requests come from guests, so every length and option is checked before use; anything malformed
 * or not for us gets no answer. Replies are broadcast on the bridge (the client has no address
 * yet), which every DHCP client accepts (RFC 2131 4.1). */
#include <errno.h>
#include <net/if.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>

#include "net/internal.h"

#define DHCP_SERVER_PORT 67
#define DHCP_CLIENT_PORT 68
#define DHCP_FIXED_LEN 236 /* op .. file */
#define DHCP_COOKIE 0x63825363u
#define DHCP_MIN_REPLY 300 /* BOOTP's minimum message, which some clients insist on */
#define DHCP_LEASE_SECONDS 86400u

enum {
  OPT_PAD = 0,
  OPT_SUBNET_MASK = 1,
  OPT_ROUTER = 3,
  OPT_DNS_SERVER = 6,
  OPT_MTU = 26,
  OPT_BROADCAST = 28,
  OPT_REQUESTED_IP = 50,
  OPT_LEASE_TIME = 51,
  OPT_MESSAGE_TYPE = 53,
  OPT_SERVER_ID = 54,
  OPT_END = 255,
};

enum { DHCPDISCOVER = 1, DHCPOFFER = 2, DHCPREQUEST = 3, DHCPACK = 5, DHCPNAK = 6 };

typedef struct dhcp_request {
  uint8_t type;
  uint32_t xid; /* as sent (network order), copied back */
  uint16_t flags;
  uint32_t ciaddr, giaddr; /* host order */
  uint8_t chaddr[16];
  bool has_requested_ip, has_server_id;
  uint32_t requested_ip, server_id;
} dhcp_request;

static uint32_t get_be32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put_be32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24);
  p[1] = (uint8_t)(v >> 16);
  p[2] = (uint8_t)(v >> 8);
  p[3] = (uint8_t)v;
}

static int parse_option(dhcp_request *r, uint8_t code, const uint8_t *val, uint8_t len,
                        vs_error **err) {
  switch (code) {
  case OPT_MESSAGE_TYPE:
    if (len != 1)
      return vs_error_set(err, EINVAL, "dhcp: message type option of length %u", len);
    r->type = val[0];
    break;
  case OPT_REQUESTED_IP:
  case OPT_SERVER_ID:
    if (len != 4)
      return vs_error_set(err, EINVAL, "dhcp: address option %u of length %u", code, len);
    if (code == OPT_REQUESTED_IP) {
      r->has_requested_ip = true;
      r->requested_ip = get_be32(val);
    } else {
      r->has_server_id = true;
      r->server_id = get_be32(val);
    }
    break;
  default:
    break; /* options we do not use are skipped, as the RFC asks */
  }
  return 0;
}

static int parse_options(dhcp_request *r, const uint8_t *p, size_t len, vs_error **err) {
  size_t i = 0;
  while (i < len) {
    uint8_t code = p[i++];
    if (code == OPT_PAD)
      continue;
    if (code == OPT_END)
      return 0;
    if (i >= len)
      return vs_error_set(err, EINVAL, "dhcp: option %u has no length", code);
    uint8_t olen = p[i++];
    if (olen > len - i)
      return vs_error_set(err, EINVAL, "dhcp: option %u (%u bytes) runs past the message", code,
                          olen);
    if (parse_option(r, code, p + i, olen, err) < 0)
      return -1;
    i += olen;
  }
  return vs_error_set(err, EINVAL, "dhcp: options without an end option");
}

static int dhcp_parse(const uint8_t *msg, size_t len, dhcp_request *r, vs_error **err) {
  memset(r, 0, sizeof(*r));
  if (len < DHCP_FIXED_LEN + 4)
    return vs_error_set(err, EINVAL, "dhcp: message of %zu bytes is too short", len);
  if (msg[0] != 1 || msg[1] != 1 || msg[2] != 6)
    return vs_error_set(err, EINVAL, "dhcp: not an Ethernet BOOTREQUEST (op %u htype %u hlen %u)",
                        msg[0], msg[1], msg[2]);
  if (get_be32(msg + DHCP_FIXED_LEN) != DHCP_COOKIE)
    return vs_error_set(err, EINVAL, "dhcp: no magic cookie");
  memcpy(&r->xid, msg + 4, 4);
  r->flags = (uint16_t)(msg[10] << 8 | msg[11]);
  r->ciaddr = get_be32(msg + 12);
  r->giaddr = get_be32(msg + 24);
  memcpy(r->chaddr, msg + 28, 16);
  if (parse_options(r, msg + DHCP_FIXED_LEN + 4, len - DHCP_FIXED_LEN - 4, err) < 0)
    return -1;
  if (r->type == 0)
    return vs_error_set(err, EINVAL, "dhcp: no message type");
  return 0;
}

static const net_endpoint *endpoint_by_mac(const net_network *n, const uint8_t mac[6]) {
  for (size_t i = 0; i < n->n_eps; i++)
    if (memcmp(n->eps[i]->mac, mac, 6) == 0)
      return n->eps[i];
  return NULL;
}

typedef struct opt_writer {
  uint8_t *p;
  size_t len, cap;
} opt_writer;

static void put_opt(opt_writer *w, uint8_t code, const void *val, uint8_t len) {
  if (w->len + 2u + len + 1u > w->cap) /* always leave room for the end option */
    return;
  w->p[w->len++] = code;
  w->p[w->len++] = len;
  memcpy(w->p + w->len, val, len);
  w->len += len;
}

static void put_opt_u32(opt_writer *w, uint8_t code, uint32_t v) {
  uint8_t b[4];
  put_be32(b, v);
  put_opt(w, code, b, 4);
}

static size_t build_reply(const net_network *n, const dhcp_request *r, uint8_t type,
                          uint32_t yiaddr, uint8_t *out, size_t cap) {
  memset(out, 0, cap);
  out[0] = 2; /* BOOTREPLY */
  out[1] = 1;
  out[2] = 6;
  memcpy(out + 4, &r->xid, 4);
  out[10] = (uint8_t)(r->flags >> 8);
  out[11] = (uint8_t)r->flags;
  put_be32(out + 12, type == DHCPNAK ? 0 : r->ciaddr);
  put_be32(out + 16, yiaddr);
  put_be32(out + 20, type == DHCPNAK ? 0 : n->gateway);
  put_be32(out + 24, r->giaddr);
  memcpy(out + 28, r->chaddr, 16);
  put_be32(out + DHCP_FIXED_LEN, DHCP_COOKIE);
  opt_writer w = {.p = out, .len = DHCP_FIXED_LEN + 4, .cap = cap};
  put_opt(&w, OPT_MESSAGE_TYPE, &type, 1);
  put_opt_u32(&w, OPT_SERVER_ID, n->gateway);
  if (type != DHCPNAK) {
    uint8_t mtu[2] = {(uint8_t)(n->mtu >> 8), (uint8_t)n->mtu};
    put_opt_u32(&w, OPT_LEASE_TIME, DHCP_LEASE_SECONDS);
    put_opt_u32(&w, OPT_SUBNET_MASK, net_prefix_mask(n->prefix));
    put_opt_u32(&w, OPT_BROADCAST, n->subnet | ~net_prefix_mask(n->prefix));
    put_opt_u32(&w, OPT_ROUTER, n->gateway);
    /* the network's name server (net_dns_open) listens on the gateway */
    put_opt_u32(&w, OPT_DNS_SERVER, n->gateway);
    put_opt(&w, OPT_MTU, mtu, 2);
  }
  w.p[w.len++] = OPT_END;
  return w.len < DHCP_MIN_REPLY ? DHCP_MIN_REPLY : w.len;
}

/* *out_len is 0 when the message gets no answer: not ours, another server's, an unknown MAC,
 * a message type we do not answer (RELEASE, DECLINE: the address stays the endpoint's). */
int net_dhcp_reply(const net_network *n, const uint8_t *msg, size_t len, uint8_t *out, size_t cap,
                   size_t *out_len, vs_error **err) {
  *out_len = 0;
  if (cap < DHCP_MIN_REPLY + 64)
    return vs_error_set(err, EINVAL, "dhcp: reply buffer of %zu bytes is too small", cap);
  dhcp_request r;
  if (dhcp_parse(msg, len, &r, err) < 0)
    return -1;
  const net_endpoint *ep = endpoint_by_mac(n, r.chaddr);
  if (!ep || r.giaddr != 0) /* relayed requests come from other segments: not ours */
    return 0;
  uint32_t ip = ntohl(ep->ip.s_addr);
  if (r.type == DHCPDISCOVER) {
    *out_len = build_reply(n, &r, DHCPOFFER, ip, out, cap);
  } else if (r.type == DHCPREQUEST) {
    if (r.has_server_id && r.server_id != n->gateway)
      return 0; /* the client chose another server's offer */
    uint32_t want = r.has_requested_ip ? r.requested_ip : r.ciaddr;
    *out_len = build_reply(n, &r, want == ip ? DHCPACK : DHCPNAK, want == ip ? ip : 0, out, cap);
  }
  return 0;
}

int net_dhcp_open(const net_ctx *ctx, const char *network, vs_error **err) {
  const net_network *n = net_find_network(ctx, network);
  if (!n)
    return vs_error_set(err, ENOENT, "dhcp: network %s: no such network", network);
  _cleanup_close_ int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0)
    return vs_error_set(err, errno, "dhcp: socket");
  int one = 1;
  /* one socket per bridge on port 67: bound to its device, so they do not clash */
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
      setsockopt(fd, SOL_SOCKET, SO_BROADCAST, &one, sizeof(one)) < 0 ||
      setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, n->bridge, (socklen_t)strlen(n->bridge)) < 0)
    return vs_error_set(err, errno, "dhcp: network %s: socket options on %s", network, n->bridge);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(DHCP_SERVER_PORT)};
  if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
    return vs_error_set(err, errno, "dhcp: network %s: bind port %d on %s", network,
                        DHCP_SERVER_PORT, n->bridge);
  return steal_fd(&fd);
}

int net_dhcp_handle(const net_ctx *ctx, const char *network, int fd, vs_error **err) {
  const net_network *n = net_find_network(ctx, network);
  if (!n)
    return vs_error_set(err, ENOENT, "dhcp: network %s: no such network", network);
  uint8_t msg[1500], out[576];
  ssize_t len = recv(fd, msg, sizeof(msg), 0);
  if (len < 0)
    return errno == EAGAIN || errno == EINTR ? 0 : vs_error_set(err, errno, "dhcp: receive");
  size_t out_len;
  _cleanup_error_ vs_error *bad = NULL;
  if (net_dhcp_reply(n, msg, (size_t)len, out, sizeof(out), &out_len, &bad) < 0) {
    vs_log_debug("network %s: %s", network, bad->msg); /* a guest's garbage is not our error */
    return 0;
  }
  if (out_len == 0)
    return 0;
  struct sockaddr_in to = {.sin_family = AF_INET,
                           .sin_port = htons(DHCP_CLIENT_PORT),
                           .sin_addr.s_addr = htonl(INADDR_BROADCAST)};
  if (sendto(fd, out, out_len, 0, (struct sockaddr *)&to, sizeof(to)) < 0)
    return vs_error_set(err, errno, "dhcp: network %s: send reply", network);
  return 0;
}
