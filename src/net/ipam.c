/* Names, IPv4 addresses and address management: what a network and its endpoints may be, checked
 * before anything is made in the kernel. */
#include <ctype.h>
#include <errno.h>
#include <string.h>

#include "net/internal.h"

static bool is_name_char(char c) {
  return isalnum((unsigned char)c) || c == '_' || c == '.' || c == '-';
}

int net_check_name(const char *name, const char *what, size_t max, vs_error **err) {
  if (!name || !*name)
    return vs_error_set(err, EINVAL, "%s: empty", what);
  size_t len = strnlen(name, max + 1);
  if (len > max)
    return vs_error_set(err, EINVAL, "%s \"%.*s...\": longer than %zu bytes", what, 32, name, max);
  if (!isalnum((unsigned char)name[0]))
    return vs_error_set(err, EINVAL, "%s \"%s\": must start with a letter or digit", what, name);
  for (size_t i = 0; i < len; i++)
    if (!is_name_char(name[i]))
      return vs_error_set(err, EINVAL, "%s \"%s\": character %zu is not one of [A-Za-z0-9_.-]",
                          what, name, i + 1);
  return 0;
}

/* Stricter than the kernel's dev_valid_name (which takes anything but '/', ':' and spaces): the
 * name is also written into nft rules and /proc/sys paths, where quotes and '*' would matter. */
int net_check_ifname(const char *name, const char *what, vs_error **err) {
  if (!name || !*name)
    return vs_error_set(err, EINVAL, "%s: empty interface name", what);
  size_t len = strnlen(name, IFNAMSIZ);
  if (len >= IFNAMSIZ)
    return vs_error_set(err, EINVAL, "%s \"%s\": longer than %d bytes (IFNAMSIZ)", what, name,
                        IFNAMSIZ - 1);
  if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
    return vs_error_set(err, EINVAL, "%s \"%s\": not an interface name", what, name);
  for (size_t i = 0; i < len; i++)
    if (!is_name_char(name[i]))
      return vs_error_set(err, EINVAL,
                          "%s \"%s\": character %zu is not one of [A-Za-z0-9_.-] in an interface "
                          "name",
                          what, name, i + 1);
  return 0;
}

int net_parse_ipv4(const char *s, const char *what, uint32_t *out, vs_error **err) {
  struct in_addr a;
  if (!s || inet_pton(AF_INET, s, &a) != 1)
    return vs_error_set(err, EINVAL, "%s \"%s\": not an IPv4 address", what, s ? s : "");
  *out = ntohl(a.s_addr);
  return 0;
}

uint32_t net_prefix_mask(unsigned prefix) {
  return prefix == 0 ? 0 : (uint32_t)(0xffffffffu << (32 - prefix));
}

bool net_cidr_contains(uint32_t net, unsigned prefix, uint32_t addr) {
  return (addr & net_prefix_mask(prefix)) == net;
}

int net_parse_cidr(const char *s, const char *what, uint32_t *addr, unsigned *prefix,
                   vs_error **err) {
  char buf[INET_ADDRSTRLEN + 4];
  const char *slash = s ? strchr(s, '/') : NULL;
  if (!slash || (size_t)(slash - s) >= INET_ADDRSTRLEN)
    return vs_error_set(err, EINVAL, "%s \"%s\": expected ADDRESS/PREFIX like 10.88.0.0/16", what,
                        s ? s : "");
  memcpy(buf, s, (size_t)(slash - s));
  buf[slash - s] = '\0';
  const char *p = slash + 1;
  size_t plen = strlen(p);
  if (plen < 1 || plen > 2 || strspn(p, "0123456789") != plen)
    return vs_error_set(err, EINVAL, "%s \"%s\": prefix \"%s\" is not a number in 0..32", what, s,
                        p);
  unsigned n = (unsigned)strtoul(p, NULL, 10);
  if (n > 32)
    return vs_error_set(err, EINVAL, "%s \"%s\": prefix %u is larger than 32", what, s, n);
  uint32_t a;
  if (net_parse_ipv4(buf, what, &a, err) < 0)
    return -1;
  if ((a & ~net_prefix_mask(n)) != 0)
    return vs_error_set(err, EINVAL, "%s \"%s\": host bits are set (did you mean %u.%u.%u.%u/%u?)",
                        what, s, (a & net_prefix_mask(n)) >> 24,
                        ((a & net_prefix_mask(n)) >> 16) & 255,
                        ((a & net_prefix_mask(n)) >> 8) & 255, a & net_prefix_mask(n) & 255, n);
  *addr = a;
  *prefix = n;
  return 0;
}

void net_format_ipv4(uint32_t addr, char buf[INET_ADDRSTRLEN]) {
  struct in_addr a = {.s_addr = htonl(addr)};
  inet_ntop(AF_INET, &a, buf, INET_ADDRSTRLEN);
}

static bool cidrs_overlap(uint32_t a, unsigned pa, uint32_t b, unsigned pb) {
  unsigned p = pa < pb ? pa : pb;
  return (a & net_prefix_mask(p)) == (b & net_prefix_mask(p));
}

net_network *net_find_network(const net_ctx *ctx, const char *name) {
  for (size_t i = 0; i < ctx->n_nets; i++)
    if (strcmp(ctx->nets[i]->name, name) == 0)
      return ctx->nets[i];
  return NULL;
}

net_endpoint *net_find_endpoint(const net_network *n, const char *id, size_t *index) {
  for (size_t i = 0; i < n->n_eps; i++)
    if (strcmp(n->eps[i]->id, id) == 0) {
      if (index)
        *index = i;
      return n->eps[i];
    }
  return NULL;
}

void net_endpoint_free(net_endpoint *ep) {
  if (!ep)
    return;
  free(ep->id);
  free(ep->ports);
  for (size_t i = 0; i < ep->n_aliases; i++)
    free(ep->aliases[i]);
  free(ep->aliases);
  free(ep->dns_upstream);
  free(ep);
}

void net_network_free(net_network *n) {
  if (!n)
    return;
  for (size_t i = 0; i < n->n_eps; i++)
    net_endpoint_free(n->eps[i]);
  free(n->eps);
  net_network_remote_names_free(n);
  free(n->name);
  free(n);
}

void net_derived_ifname(const char *prefix, const char *key, char out[IFNAMSIZ]) {
  char hex[VS_SHA256_HEX_LEN + 1];
  vs_sha256_hex(key, strlen(key), hex);
  snprintf(out, IFNAMSIZ, "%s%.8s", prefix, hex);
}

/* The subnet must leave room for a gateway and at least one guest: /31 and /32 have no host
 * addresses in the classic sense, and Docker refuses them too. */
static int network_parse_addresses(net_network *n, const net_network_opts *opts, vs_error **err) {
  if (!opts->subnet)
    return vs_error_set(err, EINVAL, "a subnet is needed (there is no automatic subnet pool yet)");
  if (net_parse_cidr(opts->subnet, "subnet", &n->subnet, &n->prefix, err) < 0)
    return -1;
  if (n->prefix > 30)
    return vs_error_set(err, EINVAL, "subnet %s: a /%u has no room for a gateway and a guest",
                        opts->subnet, n->prefix);
  if (opts->gateway) {
    if (net_parse_ipv4(opts->gateway, "gateway", &n->gateway, err) < 0)
      return -1;
    uint32_t bcast = n->subnet | ~net_prefix_mask(n->prefix);
    if (!net_cidr_contains(n->subnet, n->prefix, n->gateway))
      return vs_error_set(err, EINVAL, "gateway %s is outside subnet %s", opts->gateway,
                          opts->subnet);
    if (n->gateway == n->subnet || n->gateway == bcast)
      return vs_error_set(err, EINVAL, "gateway %s is the network or broadcast address of %s",
                          opts->gateway, opts->subnet);
  } else {
    n->gateway = n->subnet + 1;
  }
  n->range = n->subnet;
  n->range_prefix = n->prefix;
  if (opts->ip_range) {
    if (net_parse_cidr(opts->ip_range, "ip-range", &n->range, &n->range_prefix, err) < 0)
      return -1;
    if (n->range_prefix < n->prefix || !net_cidr_contains(n->subnet, n->prefix, n->range))
      return vs_error_set(err, EINVAL, "ip-range %s is not inside subnet %s", opts->ip_range,
                          opts->subnet);
    n->has_range = true;
  }
  return 0;
}

static int network_check_unique(const net_ctx *ctx, const net_network *n, vs_error **err) {
  char a[INET_ADDRSTRLEN], b[INET_ADDRSTRLEN];
  for (size_t i = 0; i < ctx->n_nets; i++) {
    const net_network *o = ctx->nets[i];
    if (strcmp(o->name, n->name) == 0)
      return vs_error_set(err, EEXIST, "network %s already exists", n->name);
    if (strcmp(o->bridge, n->bridge) == 0)
      return vs_error_set(err, EEXIST, "bridge %s is already network %s's", n->bridge, o->name);
    if (cidrs_overlap(o->subnet, o->prefix, n->subnet, n->prefix)) {
      net_format_ipv4(n->subnet, a);
      net_format_ipv4(o->subnet, b);
      return vs_error_set(err, EEXIST, "subnet %s/%u overlaps network %s's subnet %s/%u", a,
                          n->prefix, o->name, b, o->prefix);
    }
  }
  return 0;
}

net_network *net_network_from_opts(const net_ctx *ctx, const net_network_opts *opts,
                                   vs_error **err) {
  if (net_check_name(opts->name, "network name", NET_NAME_MAX, err) < 0)
    return NULL;
  net_network *n = vs_malloc0(sizeof(*n));
  n->name = vs_strdup(opts->name);
  n->mtu = opts->mtu ? opts->mtu : NET_DEFAULT_MTU;
  n->internal = opts->internal;
  n->disable_icc = opts->disable_icc;
  if (opts->bridge) {
    if (net_check_ifname(opts->bridge, "bridge name", err) < 0)
      goto fail;
    snprintf(n->bridge, sizeof(n->bridge), "%s", opts->bridge);
  } else {
    net_derived_ifname("vsbr-", opts->name, n->bridge);
  }
  if (n->mtu < 68 || n->mtu > 65535) {
    vs_error_set(err, EINVAL, "mtu %u: not in 68..65535", n->mtu);
    goto fail;
  }
  if (network_parse_addresses(n, opts, err) < 0 || network_check_unique(ctx, n, err) < 0)
    goto fail;
  return n;
fail:
  vs_error_wrap(err, "network %s", opts->name);
  net_network_free(n);
  return NULL;
}

static bool address_taken(const net_network *n, uint32_t addr) {
  for (size_t i = 0; i < n->n_eps; i++)
    if (ntohl(n->eps[i]->ip.s_addr) == addr)
      return true;
  return false;
}

static bool address_reserved(const net_network *n, uint32_t addr) {
  uint32_t bcast = n->subnet | ~net_prefix_mask(n->prefix);
  return addr == n->subnet || addr == bcast || addr == n->gateway;
}

static int allocate_requested(const net_network *n, const char *request, uint32_t *out,
                              vs_error **err) {
  uint32_t a;
  if (net_parse_ipv4(request, "ip", &a, err) < 0)
    return -1;
  if (!net_cidr_contains(n->subnet, n->prefix, a))
    return vs_error_set(err, EINVAL, "ip %s is outside the network's subnet", request);
  if (address_reserved(n, a))
    return vs_error_set(err, EINVAL, "ip %s is the network, broadcast or gateway address", request);
  if (address_taken(n, a))
    return vs_error_set(err, EADDRINUSE, "ip %s is already in use on the network", request);
  *out = a;
  return 0;
}

/* Lowest free address of the range: deterministic, and a network holds at most a few thousand
 * endpoints, so a linear scan over them costs nothing next to the netlink work. */
int net_ipam_allocate(const net_network *n, const char *request, uint32_t *out, vs_error **err) {
  if (request)
    return allocate_requested(n, request, out, err);
  uint32_t first = n->range;
  uint32_t last = n->range | ~net_prefix_mask(n->range_prefix);
  for (uint64_t a = first; a <= last; a++)
    if (!address_reserved(n, (uint32_t)a) && !address_taken(n, (uint32_t)a)) {
      *out = (uint32_t)a;
      return 0;
    }
  char r[INET_ADDRSTRLEN];
  net_format_ipv4(n->range, r);
  return vs_error_set(err, ENOSPC, "no free address left in %s/%u", r, n->range_prefix);
}

static bool ports_clash(const net_port *a, const net_port *b) {
  return a->proto == b->proto && a->host_port == b->host_port &&
         (a->host_ip.s_addr == htonl(INADDR_ANY) || b->host_ip.s_addr == htonl(INADDR_ANY) ||
          a->host_ip.s_addr == b->host_ip.s_addr);
}

static int port_check_against_state(const net_ctx *ctx, const net_port *p, vs_error **err) {
  char s[NET_PORT_STR_MAX];
  for (size_t i = 0; i < ctx->n_nets; i++)
    for (size_t j = 0; j < ctx->nets[i]->n_eps; j++) {
      const net_endpoint *ep = ctx->nets[i]->eps[j];
      for (size_t k = 0; k < ep->n_ports; k++)
        if (ports_clash(p, &ep->ports[k])) {
          net_port_format(p, s, sizeof(s));
          return vs_error_set(err, EADDRINUSE,
                              "port %s: host port %u/%s is already published by %s on network %s",
                              s, p->host_port, p->proto == NET_PROTO_UDP ? "udp" : "tcp", ep->id,
                              ctx->nets[i]->name);
        }
    }
  return 0;
}

int net_ports_check_free(const net_ctx *ctx, const net_port *ports, size_t n, vs_error **err) {
  char s[NET_PORT_STR_MAX];
  for (size_t i = 0; i < n; i++) {
    for (size_t j = 0; j < i; j++)
      if (ports_clash(&ports[i], &ports[j])) {
        net_port_format(&ports[i], s, sizeof(s));
        return vs_error_set(err, EINVAL, "port %s: host port %u is published twice", s,
                            ports[i].host_port);
      }
    if (port_check_against_state(ctx, &ports[i], err) < 0)
      return -1;
  }
  return 0;
}

/* As Docker: 02:42 (locally administered, unicast) and the IPv4 address, so a guest's MAC is
 * stable across restarts and never collides with another endpoint's on the same network. */
void net_default_mac(uint32_t ip, uint8_t mac[6]) {
  mac[0] = 0x02;
  mac[1] = 0x42;
  mac[2] = (uint8_t)(ip >> 24);
  mac[3] = (uint8_t)(ip >> 16);
  mac[4] = (uint8_t)(ip >> 8);
  mac[5] = (uint8_t)ip;
}

int net_parse_mac(const char *s, uint8_t mac[6], vs_error **err) {
  bool ok = s && strlen(s) == 17;
  for (size_t i = 0; ok && i < 6; i++) {
    int hi = vs_hex_digit(s[3 * i]), lo = vs_hex_digit(s[3 * i + 1]);
    ok = hi >= 0 && lo >= 0 && (i == 5 || s[3 * i + 2] == ':');
    if (ok)
      mac[i] = (uint8_t)(hi << 4 | lo);
  }
  if (!ok)
    return vs_error_set(err, EINVAL, "mac \"%s\": expected six hex bytes like 02:42:0a:58:00:02",
                        s ? s : "");
  if (mac[0] & 1)
    return vs_error_set(err, EINVAL, "mac %s: a multicast address cannot be an interface's", s);
  static const uint8_t zero[6];
  if (memcmp(mac, zero, 6) == 0)
    return vs_error_set(err, EINVAL, "mac %s: the zero address cannot be an interface's", s);
  return 0;
}

void net_format_mac(const uint8_t mac[6], char buf[18]) {
  snprintf(buf, 18, "%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2], mac[3], mac[4],
           mac[5]);
}
