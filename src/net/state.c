/* The module's state in STATE_DIR/net.json: networks, endpoints, addresses and ports. Written
 * atomically after every change (vs_json_write_file), read back at start with every field checked
 * as strictly as the options it came from: a damaged file gives an error naming the field, never
 * a half-loaded state. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>

#include "net/internal.h"

void net_ctx_add_network(net_ctx *ctx, net_network *n) {
  ctx->nets = vs_realloc(ctx->nets, (ctx->n_nets + 1) * sizeof(net_network *));
  ctx->nets[ctx->n_nets++] = n;
}

void net_ctx_remove_network(net_ctx *ctx, const net_network *n) {
  for (size_t i = 0; i < ctx->n_nets; i++)
    if (ctx->nets[i] == n) {
      memmove(&ctx->nets[i], &ctx->nets[i + 1], (ctx->n_nets - i - 1) * sizeof(net_network *));
      ctx->n_nets--;
      return;
    }
}

void net_network_add_endpoint(net_network *n, net_endpoint *ep) {
  n->eps = vs_realloc(n->eps, (n->n_eps + 1) * sizeof(net_endpoint *));
  n->eps[n->n_eps++] = ep;
}

void net_network_remove_endpoint(net_network *n, size_t index) {
  memmove(&n->eps[index], &n->eps[index + 1], (n->n_eps - index - 1) * sizeof(net_endpoint *));
  n->n_eps--;
}

static json_t *cidr_json(uint32_t addr, unsigned prefix) {
  char ip[INET_ADDRSTRLEN];
  net_format_ipv4(addr, ip);
  char buf[INET_ADDRSTRLEN + 4];
  snprintf(buf, sizeof(buf), "%s/%u", ip, prefix);
  return json_string(buf);
}

static json_t *ipv4_json(uint32_t addr) {
  char ip[INET_ADDRSTRLEN];
  net_format_ipv4(addr, ip);
  return json_string(ip);
}

static json_t *endpoint_to_json(const net_endpoint *ep) {
  char mac[18];
  net_format_mac(ep->mac, mac);
  json_t *ports = json_array();
  for (size_t i = 0; i < ep->n_ports; i++) {
    char s[NET_PORT_STR_MAX];
    net_port_format(&ep->ports[i], s, sizeof(s));
    json_array_append_new(ports, json_string(s));
  }
  json_t *aliases = json_array();
  for (size_t i = 0; i < ep->n_aliases; i++)
    json_array_append_new(aliases, json_string(ep->aliases[i]));
  json_t *j = json_pack("{s:s, s:s, s:o, s:s, s:s, s:o, s:o}", "id", ep->id, "kind",
                        ep->kind == NET_ENDPOINT_TAP ? "tap" : "veth", "ip",
                        ipv4_json(ntohl(ep->ip.s_addr)), "mac", mac, "host_ifname", ep->host_ifname,
                        "ports", ports, "aliases", aliases);
  if (ep->dns_upstream)
    json_object_set_new(j, "dns_upstream", json_string(ep->dns_upstream));
  return j;
}

static json_t *network_to_json(const net_network *n) {
  json_t *eps = json_array();
  for (size_t i = 0; i < n->n_eps; i++)
    json_array_append_new(eps, endpoint_to_json(n->eps[i]));
  json_t *j = json_pack("{s:s, s:s, s:o, s:o, s:I, s:b, s:b, s:o}", "name", n->name, "bridge",
                        n->bridge, "subnet", cidr_json(n->subnet, n->prefix), "gateway",
                        ipv4_json(n->gateway), "mtu", (json_int_t)n->mtu, "internal", n->internal,
                        "enable_icc", !n->disable_icc, "endpoints", eps);
  if (n->has_range)
    json_object_set_new(j, "ip_range", cidr_json(n->range, n->range_prefix));
  return j;
}

json_t *net_state_to_json(const net_ctx *ctx) {
  json_t *nets = json_array();
  for (size_t i = 0; i < ctx->n_nets; i++)
    json_array_append_new(nets, network_to_json(ctx->nets[i]));
  return json_pack("{s:i, s:o}", "version", 1, "networks", nets);
}

json_t *net_state_json(const net_ctx *ctx) { return net_state_to_json(ctx); }

int net_state_save(const net_ctx *ctx, vs_error **err) {
  _cleanup_json_ json_t *j = net_state_to_json(ctx);
  return vs_json_write_file(ctx->state_path, j, 0600, err);
}

static int endpoint_lists_from_json(net_endpoint *ep, const json_t *j, vs_error **err) {
  const char **specs = NULL;
  size_t n = 0;
  if (vs_json_get_string_array(j, "ports", false, &specs, &n, err) < 0)
    return -1;
  ep->ports = vs_malloc0((n ? n : 1) * sizeof(*ep->ports));
  for (size_t i = 0; i < n; i++)
    if (net_port_parse(specs[i], &ep->ports[i], err) < 0) {
      free(specs);
      return -1;
    }
  ep->n_ports = n;
  free(specs);
  const char **aliases = NULL;
  if (vs_json_get_string_array(j, "aliases", false, &aliases, &n, err) < 0)
    return -1;
  int r = net_endpoint_set_aliases(ep, aliases, aliases ? n : 0, err);
  free(aliases);
  const char *upstream = NULL;
  if (r == 0 && (vs_json_get_string(j, "dns_upstream", false, &upstream, err) < 0 ||
                 net_endpoint_set_dns_upstream(ep, upstream, err) < 0))
    r = -1;
  return r;
}

static net_endpoint *endpoint_from_json(const net_network *n, const json_t *j, vs_error **err) {
  const char *id, *kind, *ip, *mac, *ifname;
  if (vs_json_get_string(j, "id", true, &id, err) < 0 ||
      vs_json_get_string(j, "kind", true, &kind, err) < 0 ||
      vs_json_get_string(j, "ip", true, &ip, err) < 0 ||
      vs_json_get_string(j, "mac", true, &mac, err) < 0 ||
      vs_json_get_string(j, "host_ifname", true, &ifname, err) < 0)
    return NULL;
  if (net_check_name(id, "endpoint id", NET_ID_MAX, err) < 0 ||
      net_check_ifname(ifname, "host_ifname", err) < 0)
    return NULL;
  if (strcmp(kind, "veth") != 0 && strcmp(kind, "tap") != 0) {
    vs_error_set(err, EINVAL, "endpoint %s: kind \"%s\" is not veth or tap", id, kind);
    return NULL;
  }
  net_endpoint *ep = vs_malloc0(sizeof(*ep));
  ep->id = vs_strdup(id);
  ep->kind = strcmp(kind, "tap") == 0 ? NET_ENDPOINT_TAP : NET_ENDPOINT_VETH;
  snprintf(ep->host_ifname, sizeof(ep->host_ifname), "%s", ifname);
  uint32_t a;
  if (net_ipam_allocate(n, ip, &a, err) < 0 || net_parse_mac(mac, ep->mac, err) < 0 ||
      endpoint_lists_from_json(ep, j, err) < 0) {
    vs_error_wrap(err, "endpoint %s", id);
    net_endpoint_free(ep);
    return NULL;
  }
  ep->ip.s_addr = htonl(a);
  return ep;
}

static int network_opts_from_json(const json_t *j, net_network_opts *o, vs_error **err) {
  uint64_t mtu = 0;
  bool icc = true;
  if (vs_json_get_string(j, "name", true, &o->name, err) < 0 ||
      vs_json_get_string(j, "bridge", true, &o->bridge, err) < 0 ||
      vs_json_get_string(j, "subnet", true, &o->subnet, err) < 0 ||
      vs_json_get_string(j, "gateway", true, &o->gateway, err) < 0 ||
      vs_json_get_string(j, "ip_range", false, &o->ip_range, err) < 0 ||
      vs_json_get_uint64(j, "mtu", true, &mtu, err) < 0 ||
      vs_json_get_bool(j, "internal", false, &o->internal, err) < 0 ||
      vs_json_get_bool(j, "enable_icc", false, &icc, err) < 0)
    return -1;
  if (mtu < 68 || mtu > 65535)
    return vs_error_set(err, EINVAL, "network %s: mtu %llu not in 68..65535", o->name,
                        (unsigned long long)mtu);
  o->mtu = (unsigned)mtu;
  o->disable_icc = !icc;
  return 0;
}

/* Endpoints go through IPAM and the port check one by one, so a file with an address or a port
 * twice is refused as an API request would be. */
static int network_endpoints_from_json(const net_ctx *ctx, net_network *n, const json_t *j,
                                       vs_error **err) {
  json_t *eps = NULL;
  if (vs_json_get_array(j, "endpoints", false, &eps, err) < 0)
    return -1;
  size_t i;
  json_t *e;
  json_array_foreach(eps, i, e) {
    net_endpoint *ep = endpoint_from_json(n, e, err);
    if (!ep)
      return -1;
    if (net_find_endpoint(n, ep->id, NULL) ||
        net_ports_check_free(ctx, ep->ports, ep->n_ports, err) < 0) {
      if (!(err && *err))
        vs_error_set(err, EEXIST, "endpoint %s: listed twice", ep->id);
      net_endpoint_free(ep);
      return -1;
    }
    net_network_add_endpoint(n, ep);
  }
  return 0;
}

static void ctx_clear(net_ctx *ctx) {
  for (size_t i = 0; i < ctx->n_nets; i++)
    net_network_free(ctx->nets[i]);
  free(ctx->nets);
  ctx->nets = NULL;
  ctx->n_nets = 0;
}

int net_state_from_json(net_ctx *ctx, const json_t *doc, vs_error **err) {
  json_t *nets = NULL;
  if (vs_json_get_array(doc, "networks", true, &nets, err) < 0)
    return -1;
  ctx_clear(ctx);
  size_t i;
  json_t *j;
  json_array_foreach(nets, i, j) {
    net_network_opts o = {0};
    net_network *n = NULL;
    if (network_opts_from_json(j, &o, err) < 0 || !(n = net_network_from_opts(ctx, &o, err))) {
      ctx_clear(ctx);
      return vs_error_wrap(err, "networks[%zu]", i);
    }
    net_ctx_add_network(ctx, n); /* before its endpoints: their ports are checked against it */
    if (network_endpoints_from_json(ctx, n, j, err) < 0) {
      ctx_clear(ctx);
      return vs_error_wrap(err, "networks[%zu]", i);
    }
  }
  return 0;
}

/* Two owners would each rebuild the tables from their own state and hand out the same addresses:
 * the second is refused, not made to wait, so a second daemon on the same data root says so. */
static int lock_state_dir(net_ctx *ctx, vs_error **err) {
  _cleanup_free_ char *path = vs_asprintf("%s/%s", ctx->state_dir, NET_LOCK_FILE);
  ctx->lock_fd = open(path, O_RDONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (ctx->lock_fd < 0)
    return vs_error_set(err, errno, "open %s", path);
  if (flock(ctx->lock_fd, LOCK_EX | LOCK_NB) < 0)
    return vs_error_set(err, errno, "lock %s%s", path,
                        errno == EWOULDBLOCK ? " (another process owns this state)" : "");
  return 0;
}

net_ctx *net_open(const char *state_dir, vs_error **err) {
  if (vs_mkdir_p(state_dir, 0700, err) < 0) {
    vs_error_wrap(err, "net state directory %s", state_dir);
    return NULL;
  }
  net_ctx *ctx = vs_malloc0(sizeof(*ctx));
  ctx->state_dir = vs_strdup(state_dir);
  ctx->state_path = vs_asprintf("%s/%s", state_dir, NET_STATE_FILE);
  ctx->lock_fd = -1;
  if (lock_state_dir(ctx, err) < 0) {
    net_close(ctx);
    return NULL;
  }
  if (access(ctx->state_path, F_OK) != 0 && errno == ENOENT)
    return ctx;
  _cleanup_json_ json_t *doc = vs_json_load_file(ctx->state_path, NET_STATE_MAX, err);
  if (!doc || net_state_from_json(ctx, doc, err) < 0) {
    vs_error_wrap(err, "load %s", ctx->state_path);
    net_close(ctx);
    return NULL;
  }
  return ctx;
}

void net_close(net_ctx *ctx) {
  if (!ctx)
    return;
  ctx_clear(ctx);
  if (ctx->lock_fd >= 0)
    close(ctx->lock_fd);
  free(ctx->state_dir);
  free(ctx->state_path);
  free(ctx);
}
