/* Networks: the Docker network API over src/net, and the network side of a container's life
 * (its namespace, endpoints, published ports, hosts and resolv.conf).
 *
 * src/net owns the kernel objects and their state (STATE_DIR/net.json: networks, endpoints,
 * addresses, ports); this file keeps what only the API knows (ids, labels, options, creation
 * times) in <data-root>/network/networks.json, and every container's requested endpoints in its
 * record (NetworkingConfig). What a running container has (addresses, MACs, ports) is read back
 * from src/net's state into vd_container.net, under d->lock, for inspect and ps.
 *
 * A container on a bridge network gets a network namespace made by vesseld before its monitor
 * starts (a bind mount of the namespace at <exec-root>/netns/<id>, as `ip netns add` makes), so
 * its interfaces exist before its first instruction runs; config.json names that path. The
 * namespace lives until the container exits, when its endpoints are detached and the mount
 * removed.
 *
 * Locks: vn->lock guards the net_ctx and the metadata; it may be taken before d->lock, never
 * after. The DNS and DHCP sockets of every network are polled by the loop. */
#include "daemon/internal.h"
#include "net/net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <sched.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>

#define DEFAULT_BRIDGE_NETWORK "bridge"
#define DEFAULT_BRIDGE_SUBNET "172.17.0.0/16"
#define META_MAX (16U << 20)

/* The sockets of one network's DHCP and DNS servers, polled by the loop. Never freed before
 * the daemon ends (an event already fetched may name it); a removed network's entry is closed
 * and reused by the next network. */
typedef struct vn_server {
  char *network; /* NULL: closed */
  int dhcp_fd;
  net_dns *dns;
  vd_src dhcp_src, dns_src[2];
  struct vn_server *next;
} vn_server;

struct vd_net {
  pthread_mutex_t lock;
  net_ctx *ctx;
  char *dir, *meta_path, *netns_dir;
  char *default_bridge; /* the default network's bridge, NULL with --bridge none */
  json_t *meta;         /* {"networks": {name: {Id, Created, Driver, Labels, Options, ...}}} */
  vn_server *servers;
  /* networks across hosts (cluster_net.c): the peers each network's VXLAN device floods to, as
   * made since this daemon started ({name: [address...]}); a network not in it gets its
   * device made afresh */
  json_t *vx_peers;
  /* networks of the cluster are made on a node only while it needs them: when each was made here
   * ({name: CLOCK_MONOTONIC ms}), for the grace before an unused one goes */
  json_t *made_ms;
  vd_daemon *d; /* the network of the cluster a lookup names is made here on demand */
};

/* An error whose message is ours alone (no strerror appended), with errnum for the status. */
static int net_fail(vs_error **err, int errnum, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int net_fail(vs_error **err, int errnum, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vs_error_setv(err, 0, fmt, ap);
  va_end(ap);
  if (err && *err)
    (*err)->errnum = errnum;
  return -1;
}

/* ---------------------------------------------------------------- metadata */

static json_t *meta_networks(vd_net *vn) { return json_object_get(vn->meta, "networks"); }

static int meta_save(vd_net *vn, vs_error **err) {
  return vs_json_write_file(vn->meta_path, vn->meta, 0600, err);
}

static bool is_predefined(const char *name) {
  return !strcmp(name, DEFAULT_BRIDGE_NETWORK) || !strcmp(name, "host") || !strcmp(name, "none");
}

static const char *cluster_network_on_demand(vd_net *vn, const char *name);

/* A network by name, full id or unique id prefix: its name (borrowed from the metadata). A
 * network of the cluster that this node has not made (it makes them only while it has guests on
 * them) is made here when named. */
static const char *meta_find(vd_net *vn, const char *what) {
  json_t *nets = meta_networks(vn);
  if (!what || !*what)
    return NULL;
  if (json_object_get(nets, what))
    return json_object_iter_key(json_object_iter_at(nets, what));
  if (vn->d && vn->d->cluster.enabled) {
    const char *made = cluster_network_on_demand(vn, what);
    if (made)
      return made;
  }
  const char *name, *found = NULL;
  json_t *m;
  json_object_foreach(nets, name, m) {
    const char *id = json_string_value(json_object_get(m, "Id"));
    if (id && !strcmp(id, what))
      return name;
  }
  size_t len = strlen(what);
  json_object_foreach(nets, name, m) {
    const char *id = json_string_value(json_object_get(m, "Id"));
    if (id && !strncmp(id, what, len)) {
      if (found)
        return NULL; /* ambiguous */
      found = name;
    }
  }
  return found;
}

/* The library's view of one network (a new reference), NULL when it has none. */
static json_t *lib_network(vd_net *vn, const char *name) {
  _cleanup_json_ json_t *st = net_state_json(vn->ctx);
  size_t i;
  json_t *n;
  json_array_foreach(json_object_get(st, "networks"), i, n) {
    if (!strcmp(json_string_value(json_object_get(n, "name")), name))
      return json_incref(n);
  }
  return NULL;
}

static json_t *new_meta(const char *driver, bool internal, json_t *labels, json_t *options,
                        json_t *ipam_config) {
  _cleanup_free_ char *id = vd_random_id();
  _cleanup_free_ char *created = vd_now();
  return json_pack("{s:s, s:s, s:s, s:b, s:O, s:O, s:O}", "Id", id, "Created", created, "Driver",
                   driver, "Internal", internal, "Labels", labels ? labels : json_object(),
                   "Options", options ? options : json_object(), "IPAMConfig",
                   ipam_config ? ipam_config : json_array());
}

/* ---------------------------------------------------------------- DNS and DHCP on the loop */

static void server_close(vd_daemon *d, vn_server *s) {
  if (!s->network)
    return;
  if (s->dhcp_fd >= 0) {
    vd_loop_del(d, s->dhcp_fd);
    close(s->dhcp_fd);
  }
  if (s->dns) {
    int fds[2];
    net_dns_fds(s->dns, fds);
    for (int i = 0; i < 2; i++)
      if (fds[i] >= 0)
        vd_loop_del(d, fds[i]);
    net_dns_close(s->dns);
  }
  s->dhcp_fd = -1;
  s->dns = NULL;
  free(s->network);
  s->network = NULL;
}

/* DHCP and DNS on every network: VMs configure themselves and learn the name server (the
 * gateway) by DHCP, as on libvirt's default network. Containers on the default bridge are not
 * pointed at it (they get the host's resolv.conf, as Docker's default bridge has no embedded
 * DNS). Failures are logged: the network still works. */
static void servers_open(vd_daemon *d, const char *network) {
  vd_net *vn = d->net;
  vn_server *s = vn->servers;
  while (s && s->network)
    s = s->next;
  if (!s) {
    s = vs_malloc0(sizeof(*s));
    s->next = vn->servers;
    vn->servers = s;
  }
  s->network = vs_strdup(network);
  s->dhcp_fd = -1;
  s->dhcp_src = (vd_src){VD_SRC_NET, s};
  s->dns_src[0] = s->dns_src[1] = (vd_src){VD_SRC_NET, s};
  vs_error *e = NULL;
  s->dhcp_fd = net_dhcp_open(vn->ctx, network, &e);
  if (s->dhcp_fd < 0 || vd_loop_add(d, s->dhcp_fd, EPOLLIN, &s->dhcp_src, &e) < 0) {
    vs_log_warn("network %s: no DHCP server: %s", network, e->msg);
    vs_error_free(e);
    e = NULL;
    if (s->dhcp_fd >= 0)
      close(s->dhcp_fd);
    s->dhcp_fd = -1;
  }
  s->dns = net_dns_open(vn->ctx, network, NULL, &e);
  if (!s->dns) {
    vs_log_warn("network %s: no DNS server: %s", network, e->msg);
    vs_error_free(e);
    return;
  }
  int fds[2];
  net_dns_fds(s->dns, fds);
  for (int i = 0; i < 2; i++)
    if (fds[i] >= 0 && vd_loop_add(d, fds[i], EPOLLIN, &s->dns_src[i], &e) < 0) {
      vs_log_warn("network %s: DNS socket: %s", network, e->msg);
      vs_error_free(e);
      e = NULL;
    }
}

static void servers_close(vd_daemon *d, const char *network) {
  for (vn_server *s = d->net->servers; s; s = s->next)
    if (s->network && !strcmp(s->network, network))
      server_close(d, s);
}

void vd_net_event(vd_daemon *d, vd_src *src) {
  vd_net *vn = d->net;
  vn_server *s = src->owner;
  vs_error *e = NULL;
  pthread_mutex_lock(&vn->lock);
  int r = 0;
  if (s->network && src == &s->dhcp_src && s->dhcp_fd >= 0)
    r = net_dhcp_handle(vn->ctx, s->network, s->dhcp_fd, &e);
  else if (s->network && s->dns)
    r = net_dns_handle(s->dns, vn->ctx, &e);
  pthread_mutex_unlock(&vn->lock);
  if (r < 0) {
    vs_log_debug("network %s: %s", s->network ? s->network : "-", e->msg);
    vs_error_free(e);
  }
}

/* ---------------------------------------------------------------- networks */

static bool is_cluster_network(vd_net *vn, const char *name);

/* net_endpoint_detach, and on a network of the cluster the address's claim given back. */
static int endpoint_detach(vd_daemon *d, const char *network, const char *id, vs_error **err) {
  if (net_endpoint_detach(d->net->ctx, network, id, err) < 0)
    return -1;
  /* before the node has joined (endpoints of containers that ended while no daemon ran), the
   * network pass gives the claim back later */
  if (d->cluster.enabled && d->cluster.lease && is_cluster_network(d->net, network))
    vd_cnet_release(d, network, id);
  return 0;
}

static bool cidr_parse(const char *s, uint32_t *addr, unsigned *prefix) {
  char buf[32];
  const char *slash = strchr(s, '/');
  if (!slash || (size_t)(slash - s) >= sizeof(buf))
    return false;
  memcpy(buf, s, (size_t)(slash - s));
  buf[slash - s] = 0;
  struct in_addr a;
  char *end;
  unsigned long p = strtoul(slash + 1, &end, 10);
  if (inet_pton(AF_INET, buf, &a) != 1 || *end || p > 32)
    return false;
  *addr = ntohl(a.s_addr);
  *prefix = (unsigned)p;
  return true;
}

/* Docker's default address pools: 172.17-31.0.0/16, then 192.168.0-240.0/20; the first that
 * overlaps no network's subnet. */
static char *auto_subnet(vd_net *vn) {
  _cleanup_json_ json_t *st = net_state_json(vn->ctx);
  for (unsigned k = 0; k < 15 + 16; k++) {
    uint32_t base =
        k < 15 ? (172U << 24 | (17U + k) << 16) : (192U << 24 | 168U << 16 | (k - 15) << 12);
    unsigned prefix = k < 15 ? 16 : 20;
    bool clash = false;
    size_t i;
    json_t *n;
    json_array_foreach(json_object_get(st, "networks"), i, n) {
      uint32_t a;
      unsigned p;
      if (!cidr_parse(json_string_value(json_object_get(n, "subnet")), &a, &p))
        continue;
      unsigned m = p < prefix ? p : prefix;
      uint32_t mask = m ? ~0U << (32 - m) : 0;
      clash = clash || (a & mask) == (base & mask);
    }
    if (!clash)
      return vs_asprintf("%u.%u.%u.%u/%u", base >> 24, (base >> 16) & 255, (base >> 8) & 255,
                         base & 255, prefix);
  }
  return NULL;
}

typedef struct vn_create {
  const char *name, *driver;
  const char *subnet, *gateway, *ip_range;
  bool internal;
  json_t *labels, *options;
  /* a network of the cluster (docs/cluster.md): its Id is the cluster's, its MTU the
   * overlay's (at most), and it spans the nodes through a VXLAN device */
  bool cluster;
  const char *id;
  unsigned mtu;
  int64_t revision; /* of its record in etcd, when made from it */
} vn_create;

static int check_options(json_t *options, net_network_opts *o, vs_error **err) {
  const char *k;
  json_t *v;
  json_object_foreach(options, k, v) {
    const char *s = json_string_value(v);
    if (!s)
      return net_fail(err, EINVAL, "option %s: expected a string", k);
    if (!strcmp(k, "com.docker.network.bridge.name")) {
      o->bridge = s;
    } else if (!strcmp(k, "com.docker.network.driver.mtu")) {
      char *end;
      unsigned long mtu = strtoul(s, &end, 10);
      if (!*s || *end || mtu < 68 || mtu > 65535)
        return net_fail(err, EINVAL, "option %s: \"%s\" is not an MTU in 68..65535", k, s);
      o->mtu = (unsigned)mtu;
    } else if (!strcmp(k, "com.docker.network.bridge.enable_icc")) {
      if (strcmp(s, "true") != 0 && strcmp(s, "false") != 0)
        return net_fail(err, EINVAL, "option %s: expected true or false, not \"%s\"", k, s);
      o->disable_icc = !strcmp(s, "false");
    } else if (!strcmp(k, "com.docker.network.bridge.enable_ip_masquerade") ||
               !strcmp(k, "com.docker.network.bridge.default_bridge") ||
               !strcmp(k, "com.docker.network.bridge.host_binding_ipv4")) {
      bool masquerade = !strcmp(k, "com.docker.network.bridge.enable_ip_masquerade");
      if (!masquerade || strcmp(s, "true") != 0)
        return net_fail(err, EINVAL, "option %s=%s is not supported by vesseld", k, s);
    } else {
      return net_fail(err, EINVAL,
                      "option %s is not supported by the bridge driver of "
                      "vesseld",
                      k);
    }
  }
  return 0;
}

/* Make a bridge network (under vn->lock): src/net first, then the metadata; a failure of the
 * second undoes the first. */
static int network_make(vd_daemon *d, const vn_create *c, char **id_out, vs_error **err) {
  vd_net *vn = d->net;
  if (is_predefined(c->name) && !(vn->default_bridge && !strcmp(c->name, DEFAULT_BRIDGE_NETWORK) &&
                                  !json_object_get(meta_networks(vn), c->name)))
    return net_fail(err, EEXIST, "network with name %s already exists", c->name);
  if (json_object_get(meta_networks(vn), c->name))
    return net_fail(err, EEXIST, "network with name %s already exists", c->name);
  if (c->driver && *c->driver && strcmp(c->driver, "bridge") != 0)
    return net_fail(err, EINVAL,
                    "driver %s is not supported by vesseld: only bridge networks can be made",
                    c->driver);
  net_network_opts o = {.name = c->name,
                        .subnet = c->subnet,
                        .gateway = c->gateway && *c->gateway ? c->gateway : NULL,
                        .ip_range = c->ip_range && *c->ip_range ? c->ip_range : NULL,
                        .internal = c->internal};
  if (check_options(c->options, &o, err) < 0)
    return -1;
  if (c->mtu && (!o.mtu || o.mtu > c->mtu))
    o.mtu = c->mtu;
  _cleanup_free_ char *subnet = NULL;
  if (!o.subnet || !*o.subnet) {
    if (o.gateway || o.ip_range)
      return net_fail(err, EINVAL, "a gateway or ip-range needs a subnet");
    subnet = auto_subnet(vn);
    if (!subnet)
      return net_fail(err, EADDRNOTAVAIL,
                      "could not find an available, non-overlapping IPv4 address pool among "
                      "the defaults to assign to the network");
    o.subnet = subnet;
  }
  json_t *meta = new_meta("bridge", c->internal, c->labels, c->options, NULL);
  if (c->id)
    json_object_set_new(meta, "Id", json_string(c->id));
  if (c->cluster)
    json_object_set_new(meta, "Cluster", json_pack("{s:I}", "Revision", (json_int_t)c->revision));
  _cleanup_free_ char *bridge = NULL;
  if (!o.bridge) {
    /* Docker's br-<first 12 digits of the id>; the default network's from --bridge */
    bridge = !strcmp(c->name, DEFAULT_BRIDGE_NETWORK)
                 ? vs_strdup(vn->default_bridge)
                 : vs_asprintf("br-%.12s", json_string_value(json_object_get(meta, "Id")));
    o.bridge = bridge;
  }
  if (net_network_create(vn->ctx, &o, err) < 0) {
    json_decref(meta);
    return -1;
  }
  json_t *cfg = json_pack("{s:s}", "Subnet", o.subnet);
  _cleanup_json_ json_t *ln = lib_network(vn, c->name);
  json_object_set(cfg, "Gateway", json_object_get(ln, "gateway"));
  if (o.ip_range)
    json_object_set_new(cfg, "IPRange", json_string(o.ip_range));
  json_object_set_new(meta, "IPAMConfig", json_pack("[o]", cfg));
  json_object_set_new(meta_networks(vn), c->name, meta);
  if (meta_save(vn, err) < 0) {
    json_object_del(meta_networks(vn), c->name);
    vs_error *e2 = NULL;
    if (net_network_remove(vn->ctx, c->name, &e2) < 0) {
      vs_log_warn("undo network %s: %s", c->name, e2->msg);
      vs_error_free(e2);
    }
    return vs_error_wrap(err, "save the network metadata");
  }
  servers_open(d, c->name);
  if (id_out)
    *id_out = vs_strdup(json_string_value(json_object_get(meta, "Id")));
  return 0;
}

static void network_event(vd_daemon *d, const char *name, const char *id, const char *action,
                          const char *container) {
  json_t *a = json_pack("{s:s, s:s}", "name", name, "type", "bridge");
  if (container)
    json_object_set_new(a, "container", json_string(container));
  vd_event_emit(d, "network", action, id, a);
}

/* Containers on the network (d->lock held): Docker's "Containers" of network inspect. */
static json_t *network_containers(vd_daemon *d, const char *name) {
  json_t *out = json_object();
  for (size_t i = 0; i < d->n_ctrs; i++) {
    vd_container *c = d->ctrs[i];
    json_t *ep = c->state == VD_CTR_RUNNING
                     ? json_object_get(json_object_get(c->net, "Networks"), name)
                     : NULL;
    if (!ep || !json_string_length(json_object_get(ep, "IPAddress")))
      continue;
    json_t *ipv4 = json_sprintf("%s/%d", json_string_value(json_object_get(ep, "IPAddress")),
                                (int)json_integer_value(json_object_get(ep, "IPPrefixLen")));
    json_object_set_new(out, c->id,
                        json_pack("{s:s, s:O, s:O, s:o, s:s}", "Name", c->name + 1, "EndpointID",
                                  json_object_get(ep, "EndpointID"), "MacAddress",
                                  json_object_get(ep, "MacAddress"), "IPv4Address", ipv4,
                                  "IPv6Address", ""));
  }
  return out;
}

/* Docker's network object (vn->lock held; takes d->lock for the containers). */
static json_t *network_json(vd_daemon *d, const char *name, bool with_containers) {
  vd_net *vn = d->net;
  json_t *m = json_object_get(meta_networks(vn), name);
  const char *driver = json_string_value(json_object_get(m, "Driver"));
  json_t *options = json_deep_copy(json_object_get(m, "Options"));
  if (!strcmp(name, DEFAULT_BRIDGE_NETWORK)) {
    json_object_set_new(options, "com.docker.network.bridge.default_bridge", json_string("true"));
    json_object_set_new(options, "com.docker.network.bridge.name",
                        json_string(vn->default_bridge ? vn->default_bridge : ""));
  }
  json_t *containers;
  if (with_containers) {
    pthread_mutex_lock(&d->lock);
    containers = network_containers(d, name);
    pthread_mutex_unlock(&d->lock);
  } else {
    containers = json_object();
  }
  return json_pack(
      "{s:s, s:O, s:O, s:s, s:s, s:b, s:{s:s, s:n, s:O}, s:O, s:b, s:b, s:{s:s}, "
      "s:b, s:o, s:o, s:O}",
      "Name", name, "Id", json_object_get(m, "Id"), "Created", json_object_get(m, "Created"),
      "Scope", "local", "Driver", driver, "EnableIPv6", 0, "IPAM", "Driver", "default", "Options",
      "Config", json_object_get(m, "IPAMConfig"), "Internal", json_object_get(m, "Internal"),
      "Attachable", 0, "Ingress", 0, "ConfigFrom", "Network", "", "ConfigOnly", 0, "Containers",
      containers, "Options", options, "Labels", json_object_get(m, "Labels"));
}

static bool network_matches(json_t *filters, const char *name, json_t *m) {
  static const char *const keys[] = {"name", "id", "driver", "type", "label"};
  for (size_t k = 0; k < ARRAY_SIZE(keys); k++) {
    _cleanup_json_ json_t *vals = vd_filter_values(filters, keys[k]);
    if (json_array_size(vals) == 0)
      continue;
    bool any = false;
    size_t i;
    json_t *v;
    json_array_foreach(vals, i, v) {
      const char *want = json_string_value(v);
      if (!want)
        continue;
      const char *id = json_string_value(json_object_get(m, "Id"));
      if (k == 0)
        any = any || strstr(name, want);
      else if (k == 1)
        any = any || !strncmp(id, want, strlen(want));
      else if (k == 2)
        any = any || !strcmp(json_string_value(json_object_get(m, "Driver")), want);
      else if (k == 3)
        any = any || !strcmp(want, is_predefined(name) ? "builtin" : "custom");
      else
        any = any || vd_label_match(json_object_get(m, "Labels"), want);
    }
    if (!any)
      return false;
  }
  return true;
}

static json_t *call_filters(vd_call *c, const char *const *known, size_t n_known) {
  _cleanup_free_ char *ftext = http_query_get(c->req->query, "filters");
  if (!ftext || !*ftext)
    return json_object();
  vs_error *e = NULL;
  json_t *f = vs_json_loads(ftext, strlen(ftext), "filters", &e);
  if (!f || !json_is_object(f)) {
    vd_call_error(c, 400, "invalid filters: %s", e ? e->msg : "expected a JSON object");
    vs_error_free(e);
    json_decref(f);
    return NULL;
  }
  const char *key;
  json_t *v;
  json_object_foreach(f, key, v) {
    bool ok = false;
    for (size_t k = 0; k < n_known; k++)
      ok = ok || !strcmp(key, known[k]);
    if (!ok) {
      vd_call_error(c, 400, "invalid filter '%s'", key);
      json_decref(f);
      return NULL;
    }
  }
  return f;
}

void vd_h_networks_list(vd_call *c) {
  static const char *const known[] = {"name", "id", "driver", "type", "label"};
  _cleanup_json_ json_t *filters = call_filters(c, known, ARRAY_SIZE(known));
  if (!filters)
    return;
  vd_net *vn = c->d->net;
  json_t *out = json_array();
  pthread_mutex_lock(&vn->lock);
  const char *name;
  json_t *m;
  json_object_foreach(meta_networks(vn), name, m) {
    if (network_matches(filters, name, m))
      json_array_append_new(out, network_json(c->d, name, false));
  }
  pthread_mutex_unlock(&vn->lock);
  vd_call_json(c, 200, out);
}

void vd_h_network_inspect(vd_call *c) {
  vd_net *vn = c->d->net;
  pthread_mutex_lock(&vn->lock);
  const char *name = meta_find(vn, c->arg);
  json_t *j = name ? network_json(c->d, name, true) : NULL;
  pthread_mutex_unlock(&vn->lock);
  if (!j)
    vd_call_error(c, 404, "network %s not found", c->arg);
  else
    vd_call_json(c, 200, j);
}

/* The request's IPAM: at most one IPv4 config. */
static int create_ipam(json_t *body, vn_create *o, vs_error **err) {
  json_t *ipam = NULL, *cfgs = NULL;
  if (vs_json_get_object(body, "IPAM", false, &ipam, err) < 0 ||
      (ipam && vs_json_get_array(ipam, "Config", false, &cfgs, err) < 0))
    return -1;
  const char *drv = NULL;
  if (ipam && vs_json_get_string(ipam, "Driver", false, &drv, err) < 0)
    return -1;
  if (drv && *drv && strcmp(drv, "default") != 0)
    return net_fail(err, EINVAL, "IPAM driver %s is not supported by vesseld", drv);
  if (json_array_size(cfgs) > 1)
    return net_fail(err, EINVAL, "only one IPv4 subnet per network is supported by vesseld");
  json_t *cfg = json_array_get(cfgs, 0);
  if (cfg && (vs_json_get_string(cfg, "Subnet", false, &o->subnet, err) < 0 ||
              vs_json_get_string(cfg, "Gateway", false, &o->gateway, err) < 0 ||
              vs_json_get_string(cfg, "IPRange", false, &o->ip_range, err) < 0))
    return vs_error_wrap(err, "IPAM.Config[0]");
  json_t *aux = json_object_get(cfg, "AuxiliaryAddresses");
  if (json_object_size(aux) > 0)
    return net_fail(err, EINVAL, "auxiliary addresses are not supported by vesseld");
  return 0;
}

static int string_map(json_t *body, const char *field, json_t **out, vs_error **err) {
  if (vs_json_get_object(body, field, false, out, err) < 0)
    return -1;
  const char *k;
  json_t *v;
  json_object_foreach(*out, k, v) {
    if (!json_is_string(v))
      return net_fail(err, EINVAL, "field \"%s\".%s: expected string, found %s", field, k,
                      vs_json_type_name(v));
  }
  return 0;
}

/* A network just made here becomes the cluster's (vn->lock held): its record in etcd, which
 * every node's network pass makes on that node; refused (and the network removed again) when
 * the cluster has one of that name. */
static int network_publish(vd_daemon *d, const char *name, vs_error **err) {
  vd_net *vn = d->net;
  json_t *m = json_object_get(meta_networks(vn), name);
  _cleanup_json_ json_t *ln = lib_network(vn, name);
  _cleanup_json_ json_t *rec = json_pack(
      "{s:s, s:O, s:O, s:O, s:O, s:O, s:O, s:O}", "Name", name, "Id", json_object_get(m, "Id"),
      "Subnet", json_object_get(ln, "subnet"), "Gateway", json_object_get(ln, "gateway"), "Mtu",
      json_object_get(ln, "mtu"), "Internal", json_object_get(m, "Internal"), "Labels",
      json_object_get(m, "Labels"), "Options", json_object_get(m, "Options"));
  if (json_object_get(ln, "ip_range"))
    json_object_set(rec, "IPRange", json_object_get(ln, "ip_range"));
  int64_t rev = 0;
  if (vd_cnet_publish(d, rec, &rev, err) == 0) {
    json_object_set_new(json_object_get(m, "Cluster"), "Revision", json_integer(rev));
    vs_error *e = NULL;
    if (meta_save(vn, &e) < 0) {
      vs_log_warn("network %s: %s", name, e->msg);
      vs_error_free(e);
    }
    return 0;
  }
  servers_close(d, name);
  json_object_del(meta_networks(vn), name);
  vs_error *e = NULL;
  if (net_network_remove(vn->ctx, name, &e) < 0 || meta_save(vn, &e) < 0) {
    vs_log_warn("undo network %s: %s", name, e->msg);
    vs_error_free(e);
  }
  return -1;
}

void vd_h_network_create(vd_call *c) {
  vd_daemon *d = c->d;
  _cleanup_json_ json_t *body = vd_call_body_object(c);
  if (!body)
    return;
  vn_create o = {0};
  bool ipv6 = false;
  vs_error *e = NULL;
  if (vs_json_get_string(body, "Name", true, &o.name, &e) < 0 ||
      vs_json_get_string(body, "Driver", false, &o.driver, &e) < 0 ||
      vs_json_get_bool(body, "Internal", false, &o.internal, &e) < 0 ||
      vs_json_get_bool(body, "EnableIPv6", false, &ipv6, &e) < 0 ||
      string_map(body, "Labels", &o.labels, &e) < 0 ||
      string_map(body, "Options", &o.options, &e) < 0 || create_ipam(body, &o, &e) < 0) {
    vd_call_error(c, 400, "%s", e->msg);
    vs_error_free(e);
    return;
  }
  if (ipv6) {
    vd_call_error(c, 400, "IPv6 networks are not supported by vesseld yet");
    return;
  }
  if (json_is_true(json_object_get(body, "Ingress")) ||
      json_is_true(json_object_get(body, "ConfigOnly"))) {
    vd_call_error(c, 400, "ingress and config-only networks are not supported by vesseld");
    return;
  }
  _cleanup_free_ char *id = NULL;
  o.cluster = d->cluster.enabled;
  if (o.cluster && vd_cnet_overlay_mtu(d, &o.mtu, &e) < 0) {
    vd_call_fail(c, e);
    vs_error_free(e);
    return;
  }
  pthread_mutex_lock(&d->net->lock);
  int r = network_make(d, &o, &id, &e);
  if (r == 0 && o.cluster)
    r = network_publish(d, o.name, &e);
  pthread_mutex_unlock(&d->net->lock);
  if (r == 0 && o.cluster)
    vd_cnet_kick(d);
  if (r < 0) {
    vd_call_fail(c, e);
    vs_error_free(e);
    return;
  }
  vs_log_info("network %s created (%.12s)", o.name, id);
  network_event(d, o.name, id, "create", NULL);
  vd_call_json(c, 201, json_pack("{s:s, s:s}", "Id", id, "Warning", ""));
}

/* Endpoints of containers that stopped but whose teardown job has not run yet (vn->lock held):
 * a stopped container has none, as with Docker, so they do not keep the network in use. */
static void drop_stopped_endpoints(vd_daemon *d, const char *name) {
  _cleanup_json_ json_t *ln = lib_network(d->net, name);
  size_t i;
  json_t *ep;
  json_array_foreach(json_object_get(ln, "endpoints"), i, ep) {
    const char *id = json_string_value(json_object_get(ep, "id"));
    if (strcmp(json_string_value(json_object_get(ep, "kind")), "veth") != 0)
      continue;
    pthread_mutex_lock(&d->lock);
    vd_container *c = vd_ctr_find(d, id);
    bool stopped = c && !strcmp(c->id, id) && c->state != VD_CTR_RUNNING && !c->starting;
    pthread_mutex_unlock(&d->lock);
    vs_error *e = NULL;
    if (!stopped)
      continue;
    if (endpoint_detach(d, name, id, &e) < 0) {
      vs_log_warn("%s", e->msg);
      vs_error_free(e);
      continue;
    }
    json_t *m = json_object_get(meta_networks(d->net), name);
    network_event(d, name, json_string_value(json_object_get(m, "Id")), "disconnect", id);
  }
}

static bool is_cluster_network(vd_net *vn, const char *name) {
  return json_object_get(json_object_get(meta_networks(vn), name), "Cluster") != NULL;
}

/* Remove a user-defined network (vn->lock held). A network of the cluster goes from etcd first
 * (refused while guests of other nodes are on it), unless local_only: the network pass, which
 * removes a network whose record is gone. */
static int network_remove_ex(vd_daemon *d, const char *name, bool local_only, char **id_out,
                             vs_error **err);
static int network_remove(vd_daemon *d, const char *name, char **id_out, vs_error **err) {
  return network_remove_ex(d, name, false, id_out, err);
}
static int network_remove_ex(vd_daemon *d, const char *name, bool local_only, char **id_out,
                             vs_error **err) {
  vd_net *vn = d->net;
  json_t *m = json_object_get(meta_networks(vn), name);
  const char *id = json_string_value(json_object_get(m, "Id"));
  if (is_predefined(name))
    return net_fail(err, EPERM, "%s is a pre-defined network and cannot be removed", name);
  drop_stopped_endpoints(d, name);
  _cleanup_json_ json_t *ln = lib_network(vn, name);
  if (json_array_size(json_object_get(ln, "endpoints")) > 0)
    return net_fail(err, EBUSY,
                    "error while removing network: network %s id %s has active endpoints", name,
                    id);
  bool cluster = is_cluster_network(vn, name);
  if (cluster && !local_only && d->cluster.enabled && vd_cnet_unpublish(d, name, err) < 0)
    return -1;
  if (cluster) {
    vs_error *e = NULL;
    if (net_vxlan_remove(name, &e) < 0) {
      vs_log_warn("%s", e->msg);
      vs_error_free(e);
    }
    if (vn->vx_peers)
      json_object_del(vn->vx_peers, name);
  }
  servers_close(d, name);
  if (ln && net_network_remove(vn->ctx, name, err) < 0) {
    servers_open(d, name);
    return -1;
  }
  *id_out = vs_strdup(id);
  json_object_del(meta_networks(vn), name);
  if (meta_save(vn, err) < 0)
    return vs_error_wrap(err, "network %s removed, but its metadata could not be saved", name);
  return 0;
}

void vd_h_network_delete(vd_call *c) {
  vd_daemon *d = c->d;
  vd_net *vn = d->net;
  vs_error *e = NULL;
  pthread_mutex_lock(&vn->lock);
  const char *found = meta_find(vn, c->arg);
  _cleanup_free_ char *name = found ? vs_strdup(found) : NULL;
  _cleanup_free_ char *id = NULL;
  int r = name ? network_remove(d, name, &id, &e) : 0;
  pthread_mutex_unlock(&vn->lock);
  if (!name) {
    vd_call_error(c, 404, "network %s not found", c->arg);
    return;
  }
  if (r < 0 && !id) {
    vd_call_error(c, e->errnum == EPERM || e->errnum == EBUSY ? 403 : 500, "%s", e->msg);
    vs_error_free(e);
    return;
  }
  if (r < 0) {
    vs_log_warn("%s", e->msg);
    vs_error_free(e);
  }
  vs_log_info("network %s removed", name);
  network_event(d, name, id, "destroy", NULL);
  vd_call_status(c, 204);
}

void vd_h_networks_prune(vd_call *c) {
  static const char *const known[] = {"label"};
  _cleanup_json_ json_t *filters = call_filters(c, known, ARRAY_SIZE(known));
  if (!filters)
    return;
  vd_daemon *d = c->d;
  vd_net *vn = d->net;
  json_t *deleted = json_array();
  pthread_mutex_lock(&vn->lock);
  _cleanup_json_ json_t *names = json_array();
  const char *name;
  json_t *m;
  json_object_foreach(meta_networks(vn), name, m) {
    if (!is_predefined(name) && network_matches(filters, name, m))
      json_array_append_new(names, json_string(name));
  }
  size_t i;
  json_t *v;
  json_array_foreach(names, i, v) {
    vs_error *e = NULL;
    char *id = NULL;
    if (network_remove(d, json_string_value(v), &id, &e) < 0) {
      vs_error_free(e);
      if (!id)
        continue; /* in use */
    }
    network_event(d, json_string_value(v), id, "destroy", NULL);
    json_array_append(deleted, v);
    free(id);
  }
  pthread_mutex_unlock(&vn->lock);
  vd_call_json(c, 200, json_pack("{s:o}", "NetworksDeleted", deleted));
}

/* ---------------------------------------------------------------- a container's endpoints */

static char *netns_path(vd_daemon *d, const char *id) {
  return vs_asprintf("%s/%s", d->net->netns_dir, id);
}

typedef struct {
  const char *path;
  int err;
} netns_make_arg;

static void *netns_make_thread(void *p) {
  netns_make_arg *a = p;
  /* the namespace lives on as the bind mount after this thread ends */
  if (unshare(CLONE_NEWNET) < 0 ||
      mount("/proc/thread-self/ns/net", a->path, NULL, MS_BIND, NULL) < 0)
    a->err = errno;
  return NULL;
}

/* A new network namespace bound at path, as `ip netns add` makes one. */
static int netns_make(const char *path, vs_error **err) {
  int fd = open(path, O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444);
  if (fd < 0)
    return vs_error_set(err, errno, "create %s", path);
  close(fd);
  netns_make_arg a = {path, 0};
  pthread_t t;
  int r = pthread_create(&t, NULL, netns_make_thread, &a);
  if (r == 0)
    pthread_join(t, NULL);
  else
    a.err = r;
  if (a.err) {
    unlink(path);
    return vs_error_set(err, a.err, "make a network namespace at %s", path);
  }
  return 0;
}

static void netns_remove(const char *path) {
  if (umount2(path, MNT_DETACH) < 0 && errno != EINVAL && errno != ENOENT)
    vs_log_warn("unmount %s: %s", path, strerror(errno));
  if (unlink(path) < 0 && errno != ENOENT)
    vs_log_warn("remove %s: %s", path, strerror(errno));
}

/* The network a container's NetworkMode names: "bridge" for default, NULL for none/host/
 * container:, else a network name resolved from a name or id (vn->lock held). */
static const char *mode_network(vd_net *vn, const char *mode, bool *missing) {
  *missing = false;
  if (!mode || !*mode || !strcmp(mode, "default"))
    mode = DEFAULT_BRIDGE_NETWORK;
  /* --bridge none: the default network is an empty namespace, as dockerd's */
  if (!vn->default_bridge && !strcmp(mode, DEFAULT_BRIDGE_NETWORK))
    return NULL;
  if (!strcmp(mode, "none") || !strcmp(mode, "host") || !strncmp(mode, "container:", 10))
    return NULL;
  const char *name = meta_find(vn, mode);
  if (!name)
    *missing = true;
  return name;
}

/* A key of EndpointsConfig: "default" is the default bridge (CLI 28 sends it so). */
static const char *endpoint_network(vd_net *vn, const char *key) {
  return meta_find(vn, strcmp(key, "default") ? key : DEFAULT_BRIDGE_NETWORK);
}

/* An EndpointsConfig key for the default network while there is none (--bridge none). */
static bool default_off(vd_net *vn, const char *key) {
  return !vn->default_bridge && (!strcmp(key, "default") || !strcmp(key, DEFAULT_BRIDGE_NETWORK));
}

/* A container's wanted endpoints in order: [{name, cfg}] with the mode's network first. */
static json_t *wanted_endpoints(vd_net *vn, json_t *rec, vs_error **err) {
  json_t *hc = json_object_get(rec, "HostConfig");
  const char *mode = json_string_value(json_object_get(hc, "NetworkMode"));
  json_t *eps = json_object_get(json_object_get(rec, "NetworkingConfig"), "EndpointsConfig");
  json_t *out = json_array();
  bool missing;
  const char *primary = mode_network(vn, mode, &missing);
  if (missing) {
    json_decref(out);
    net_fail(err, ENOENT, "network %s not found", mode);
    return NULL;
  }
  if (!primary && json_object_size(eps) > 0 && mode && !strcmp(mode, "host")) {
    json_decref(out);
    net_fail(err, EINVAL,
             "container sharing the host's network cannot be connected to "
             "other networks");
    return NULL;
  }
  if (!primary)
    return out;
  const char *key;
  json_t *cfg;
  json_t *primary_cfg = NULL;
  json_object_foreach(eps, key, cfg) {
    if (default_off(vn, key))
      continue;
    const char *n = endpoint_network(vn, key);
    if (n && !strcmp(n, primary))
      primary_cfg = cfg;
  }
  /* disconnected from its first network (compose does so, then connects it with aliases) */
  if (!json_is_true(json_object_get(rec, "PrimaryDisconnected")))
    json_array_append_new(out, json_pack("{s:s, s:O}", "name", primary, "cfg",
                                         primary_cfg ? primary_cfg : json_object()));
  json_object_foreach(eps, key, cfg) {
    if (default_off(vn, key))
      continue;
    const char *n = endpoint_network(vn, key);
    if (!n) {
      json_decref(out);
      net_fail(err, ENOENT, "network %s not found", key);
      return NULL;
    }
    if (strcmp(n, primary) != 0)
      json_array_append_new(out, json_pack("{s:s, s:O}", "name", n, "cfg", cfg));
  }
  return out;
}

/* "80/tcp" into port and protocol. */
static int parse_ctr_port(const char *key, uint16_t *port, net_proto *proto, vs_error **err) {
  char *end;
  unsigned long p = strtoul(key, &end, 10);
  if (end == key || p < 1 || p > 65535)
    return net_fail(err, EINVAL, "invalid port specification: \"%s\"", key);
  *proto = NET_PROTO_TCP;
  if (*end == '/') {
    if (!strcmp(end + 1, "udp"))
      *proto = NET_PROTO_UDP;
    else if (strcmp(end + 1, "tcp") != 0)
      return net_fail(err, EINVAL,
                      "invalid port specification: \"%s\": protocol %s is not "
                      "tcp or udp",
                      key, end + 1);
  } else if (*end) {
    return net_fail(err, EINVAL, "invalid port specification: \"%s\"", key);
  }
  *port = (uint16_t)p;
  return 0;
}

/* A free host port from the kernel's ephemeral range (a trial bind to port 0). */
static uint16_t ephemeral_port(struct in_addr ip, net_proto proto) {
  int s = socket(AF_INET, (proto == NET_PROTO_UDP ? SOCK_DGRAM : SOCK_STREAM) | SOCK_CLOEXEC, 0);
  if (s < 0)
    return 0;
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr = ip};
  socklen_t len = sizeof(a);
  uint16_t port = 0;
  if (bind(s, (struct sockaddr *)&a, sizeof(a)) == 0 &&
      getsockname(s, (struct sockaddr *)&a, &len) == 0)
    port = ntohs(a.sin_port);
  close(s);
  return port;
}

/* The published ports of a container: PortBindings, and with PublishAllPorts every exposed
 * port on an ephemeral host port (host_port 0). A HostPort range ("8000-8010", what the docker
 * CLI sends for -p 8000-8010:80) gives its first port, and its last in *ends_out (when asked
 * for; 0 for a single port): ports_pick_in_ranges chooses one at start. */
static int published_ports(json_t *rec, net_port **out, size_t *n_out, uint16_t **ends_out,
                           vs_error **err) {
  json_t *hc = json_object_get(rec, "HostConfig");
  json_t *bindings = json_object_get(hc, "PortBindings");
  json_t *exposed = json_object_get(json_object_get(rec, "Config"), "ExposedPorts");
  bool all = json_is_true(json_object_get(hc, "PublishAllPorts"));
  size_t cap = json_object_size(exposed) + 1, n = 0;
  const char *key;
  json_t *v;
  json_object_foreach(bindings, key, v) cap += json_array_size(v) + 1;
  net_port *ports = vs_malloc0(cap * sizeof(*ports));
  uint16_t *ends = vs_malloc0(cap * sizeof(*ends));
  json_object_foreach(bindings, key, v) {
    uint16_t cport = 0;
    net_proto proto = NET_PROTO_TCP;
    if (parse_ctr_port(key, &cport, &proto, err) < 0)
      goto fail;
    size_t i;
    json_t *b;
    json_array_foreach(v, i, b) {
      const char *hip = json_string_value(json_object_get(b, "HostIp"));
      const char *hport = json_string_value(json_object_get(b, "HostPort"));
      net_port p = {.port = cport, .proto = proto};
      if (hip && *hip && inet_pton(AF_INET, hip, &p.host_ip) != 1) {
        net_fail(err, EINVAL, "port %s: host address \"%s\" is not an IPv4 address", key, hip);
        goto fail;
      }
      uint16_t end = 0;
      if (hport && *hport) {
        if (net_port_range_parse(hport, &p.host_port, &end, err) < 0) {
          vs_error_wrap(err, "port %s", key);
          goto fail;
        }
        if (end == p.host_port)
          end = 0;
      }
      ends[n] = end;
      ports[n++] = p;
    }
  }
  if (all) {
    json_object_foreach(exposed, key, v) {
      uint16_t cport = 0;
      net_proto proto = NET_PROTO_TCP;
      if (parse_ctr_port(key, &cport, &proto, err) < 0)
        goto fail;
      bool bound = false;
      for (size_t i = 0; i < n; i++)
        bound = bound || (ports[i].port == cport && ports[i].proto == proto);
      if (!bound)
        ports[n++] = (net_port){.port = cport, .proto = proto};
    }
  }
  *out = ports;
  *n_out = n;
  if (ends_out)
    *ends_out = ends;
  else
    free(ends);
  return 0;
fail:
  free(ports);
  free(ends);
  return -1;
}

/* For each port given as a range (ends[i] != 0), the first host port of its range that no
 * endpoint publishes (ctx: the library's state; NULL: not looked at), no earlier port of the list
 * has and no program is bound to, as dockerd does; none free is EADDRINUSE naming the range. */
static int ports_pick_in_ranges(const net_ctx *ctx, net_port *ports, const uint16_t *ends, size_t n,
                                vs_error **err) {
  for (size_t i = 0; i < n; i++) {
    if (!ends[i])
      continue;
    unsigned first = ports[i].host_port;
    bool found = false;
    for (unsigned hp = first; hp <= ends[i] && !found; hp++) {
      net_port keep = ports[i];
      ports[i].host_port = (uint16_t)hp;
      found = (!ctx || net_ports_check_free(ctx, ports, i + 1, NULL) == 0) &&
              net_ports_check_host(&ports[i], 1, NULL) == 0;
      if (!found)
        ports[i] = keep;
    }
    if (!found)
      return net_fail(err, EADDRINUSE, "port %u/%s: no free host port in %u-%u", ports[i].port,
                      ports[i].proto == NET_PROTO_UDP ? "udp" : "tcp", first, ends[i]);
  }
  return 0;
}

static void ports_pick_random(net_port *ports, size_t n, const bool *random) {
  for (size_t i = 0; i < n; i++)
    if (random[i])
      ports[i].host_port = ephemeral_port(ports[i].host_ip, ports[i].proto);
}

/* Aliases of a container on a user-defined network: its name, its short id (as Docker) and
 * the requested ones. */
static const char **endpoint_aliases(const vd_container *c, json_t *cfg, const char *short_id,
                                     size_t *n) {
  json_t *req = json_object_get(cfg, "Aliases");
  const char **a = vs_malloc0((json_array_size(req) + 3) * sizeof(char *));
  size_t k = 0;
  a[k++] = c->name + 1;
  a[k++] = short_id;
  size_t i;
  json_t *v;
  json_array_foreach(req, i, v) {
    const char *s = json_string_value(v);
    if (s && strcmp(s, c->name + 1) != 0 && strcmp(s, short_id) != 0)
      a[k++] = s;
  }
  *n = k;
  return a;
}

/* EndpointSettings of every network the container is on, from src/net's state (vn->lock held). */
static json_t *endpoint_settings(vd_net *vn, const vd_container *c, json_t *wanted) {
  _cleanup_json_ json_t *st = net_state_json(vn->ctx);
  json_t *nets = json_object(), *ports = json_object();
  size_t i;
  json_t *w;
  json_array_foreach(wanted, i, w) {
    const char *name = json_string_value(json_object_get(w, "name"));
    json_t *cfg = json_object_get(w, "cfg");
    json_t *m = json_object_get(meta_networks(vn), name);
    json_t *ln = NULL, *ep = NULL;
    size_t j, k;
    json_t *x, *y;
    json_array_foreach(json_object_get(st, "networks"), j, x) {
      if (!strcmp(json_string_value(json_object_get(x, "name")), name))
        ln = x;
    }
    json_array_foreach(json_object_get(ln, "endpoints"), k, y) {
      if (!strcmp(json_string_value(json_object_get(y, "id")), c->id))
        ep = y;
    }
    uint32_t a = 0;
    unsigned prefix = 0;
    cidr_parse(json_string_value(json_object_get(ln, "subnet")), &a, &prefix);
    char eid[VS_SHA256_HEX_LEN + 1] = "";
    if (ep) {
      _cleanup_free_ char *key = vs_asprintf("%s/%s", name, c->id);
      vs_sha256_hex(key, strlen(key), eid);
    }
    json_t *aliases = json_array();
    if (ep && strcmp(name, DEFAULT_BRIDGE_NETWORK) != 0) {
      json_t *al;
      json_array_foreach(json_object_get(ep, "aliases"), k, al) {
        if (strcmp(json_string_value(al), c->name + 1) != 0)
          json_array_append(aliases, al);
      }
    }
    json_object_set_new(
        nets, name,
        json_pack("{s:O, s:n, s:o, s:O, s:s, s:s, s:s, s:i, s:s, s:s, s:i, s:s, s:n}", "IPAMConfig",
                  json_object_get(cfg, "IPAMConfig") ?: json_null(), "Links", "Aliases",
                  json_array_size(aliases) ? aliases : (json_decref(aliases), json_null()),
                  "NetworkID", json_object_get(m, "Id"), "EndpointID", eid, "Gateway",
                  ep ? json_string_value(json_object_get(ln, "gateway")) : "", "IPAddress",
                  ep ? json_string_value(json_object_get(ep, "ip")) : "", "IPPrefixLen",
                  ep ? (int)prefix : 0, "IPv6Gateway", "", "GlobalIPv6Address", "",
                  "GlobalIPv6PrefixLen", 0, "MacAddress",
                  ep ? json_string_value(json_object_get(ep, "mac")) : "", "DriverOpts"));
    json_t *p;
    json_array_foreach(json_object_get(ep, "ports"), k, p) {
      net_port port;
      if (net_port_parse(json_string_value(p), &port, NULL) < 0)
        continue;
      _cleanup_free_ char *pk =
          vs_asprintf("%u/%s", port.port, port.proto == NET_PROTO_UDP ? "udp" : "tcp");
      json_t *list = json_object_get(ports, pk);
      if (!json_is_array(list)) {
        list = json_array();
        json_object_set_new(ports, pk, list);
      }
      char ip[INET_ADDRSTRLEN];
      inet_ntop(AF_INET, &port.host_ip, ip, sizeof(ip));
      json_array_append_new(list, json_pack("{s:s, s:o}", "HostIp", ip, "HostPort",
                                            json_sprintf("%u", port.host_port)));
    }
  }
  return json_pack("{s:o, s:o}", "Networks", nets, "Ports", ports);
}

/* Put the new network view on the container (takes d->lock). */
static void ctr_net_set(vd_daemon *d, vd_container *c, json_t *net) {
  pthread_mutex_lock(&d->lock);
  json_decref(c->net);
  c->net = net;
  pthread_mutex_unlock(&d->lock);
}

/* Detach every endpoint of the container (vn->lock held); returns the networks it was on. */
static json_t *detach_all(vd_daemon *d, const char *id) {
  vd_net *vn = d->net;
  _cleanup_json_ json_t *st = net_state_json(vn->ctx);
  json_t *left = json_array();
  size_t i, k;
  json_t *n, *ep;
  json_array_foreach(json_object_get(st, "networks"), i, n) {
    json_array_foreach(json_object_get(n, "endpoints"), k, ep) {
      if (strcmp(json_string_value(json_object_get(ep, "id")), id) != 0)
        continue;
      const char *name = json_string_value(json_object_get(n, "name"));
      vs_error *e = NULL;
      if (endpoint_detach(d, name, id, &e) < 0) {
        vs_log_warn("detach %.12s from %s: %s", id, name, e->msg);
        vs_error_free(e);
      }
      json_array_append_new(left, json_string(name));
    }
  }
  return left;
}

/* Name the container's network namespace in its config.json (NULL: the runtime makes one; host:
 * none at all). An unchanged file is not rewritten: a start then costs no flush to disk. */
static int spec_set_netns(vd_container *c, const char *path, bool host, vs_error **err) {
  _cleanup_free_ char *spec_path = vs_asprintf("%s/config.json", c->dir);
  _cleanup_json_ json_t *spec = vs_json_load_file(spec_path, 1U << 22, err);
  if (!spec)
    return -1;
  json_t *ns = json_object_get(json_object_get(spec, "linux"), "namespaces");
  bool changed = false;
  size_t i;
  json_t *v;
  json_array_foreach(ns, i, v) {
    if (strcmp(json_string_value(json_object_get(v, "type")) ?: "", "network") != 0)
      continue;
    const char *old = json_string_value(json_object_get(v, "path"));
    if (host) {
      json_array_remove(ns, i);
      changed = true;
      break;
    }
    if (path && (!old || strcmp(old, path) != 0)) {
      json_object_set_new(v, "path", json_string(path));
      changed = true;
    } else if (!path && old) {
      json_object_del(v, "path");
      changed = true;
    }
  }
  return changed ? vs_json_write_file(spec_path, spec, 0600, err) : 0;
}

/* On a user network the name server is the network's own, on its gateway (Docker's is
 * 127.0.0.11 inside), with ndots:0 unless --dns-option sets it, as Docker's; --dns-search and
 * --dns-option apply. --dns servers are where that server forwards the container's other
 * names (dns_upstream_of). */
static char *user_network_resolv_conf(json_t *host_config, const char *gateway) {
  _cleanup_free_ char *search = vs_json_join(json_object_get(host_config, "DnsSearch"), " ");
  _cleanup_free_ char *opts = vs_json_join(json_object_get(host_config, "DnsOptions"), " ");
  _cleanup_free_ char *search_line = *search ? vs_asprintf("search %s\n", search) : vs_strdup("");
  _cleanup_free_ char *options =
      strstr(opts, "ndots:") ? vs_strdup(opts) : vs_asprintf("ndots:0%s%s", *opts ? " " : "", opts);
  return vs_asprintf("nameserver %s\n%soptions %s\n", gateway, search_line, options);
}

/* --link NAME[:ALIAS] ("/name:/me/alias" as dockerd stores it): the linked container's address
 * on a network both are on, under the alias and its name, in this container's /etc/hosts (what
 * Docker writes on the default bridge; on user networks resolvers read /etc/hosts before asking
 * the network's server, so the alias works there too, for this container only, as Docker's).
 * The linked container must be running. Docker's link environment variables: links.c. */
static char *link_hosts_lines(vd_daemon *d, vd_container *c, json_t *net, vs_error **err) {
  _cleanup_free_ char *out = vs_strdup("");
  size_t i;
  json_t *v;
  json_array_foreach(json_object_get(json_object_get(c->rec, "HostConfig"), "Links"), i, v) {
    const char *spec = json_string_value(v);
    if (!spec)
      return net_fail(err, EINVAL, "Links[%zu]: not a string", i), NULL;
    const char *alias;
    _cleanup_free_ char *name = vd_link_split(spec, &alias);
    if (!*name || !*alias)
      return net_fail(err, EINVAL, "invalid link \"%s\": expected NAME[:ALIAS]", spec), NULL;
    _cleanup_free_ char *full = vs_asprintf("/%s", name);
    _cleanup_free_ char *ip = NULL;
    pthread_mutex_lock(&d->lock);
    vd_container *o = vd_ctr_find_name(d, full);
    if (!o)
      o = vd_ctr_find(d, name);
    if (o && o != c && o->state == VD_CTR_RUNNING) {
      const char *key;
      json_t *ep;
      json_object_foreach(json_object_get(o->net, "Networks"), key, ep) {
        const char *addr = json_string_value(json_object_get(ep, "IPAddress"));
        if (addr && *addr && json_object_get(json_object_get(net, "Networks"), key)) {
          ip = vs_strdup(addr);
          break;
        }
      }
    }
    pthread_mutex_unlock(&d->lock);
    if (!ip)
      return net_fail(err, EINVAL,
                      "Cannot link to %s: it is not a running container on one of this "
                      "container's networks",
                      name),
             NULL;
    char *next = strcmp(alias, name) != 0 ? vs_asprintf("%s%s\t%s %s\n", out, ip, alias, name)
                                          : vs_asprintf("%s%s\t%s\n", out, ip, name);
    free(out);
    out = next;
  }
  return steal_pointer(&out);
}

/* hosts and resolv.conf once the addresses are known, with the container's DNS options and
 * --add-host entries (written at create too; rewritten here at every start). */
static int write_etc(vd_daemon *d, vd_container *c, json_t *net, bool user_network,
                     vs_error **err) {
  const char *hostname =
      json_string_value(json_object_get(json_object_get(c->rec, "Config"), "Hostname"));
  json_t *hc = json_object_get(c->rec, "HostConfig");
  ctr_docker_dns dns = {json_object_get(hc, "Dns"), json_object_get(hc, "DnsSearch"),
                        json_object_get(hc, "DnsOptions"), json_object_get(hc, "ExtraHosts")};
  if (ctr_docker_write_etc_files_dns(c->dir, hostname ? hostname : "", &dns, err) < 0)
    return -1;
  const char *name;
  json_t *ep;
  json_object_foreach(json_object_get(net, "Networks"), name, ep) {
    _cleanup_free_ char *path = vs_asprintf("%s/hosts", c->dir);
    _cleanup_free_ char *old = NULL;
    if (vs_read_file(path, 1 << 16, &old, NULL, err) < 0)
      return -1;
    _cleanup_free_ char *links = link_hosts_lines(d, c, net, err);
    if (!links)
      return -1;
    _cleanup_free_ char *text = vs_asprintf(
        "%s%s\t%s\n%s", old, json_string_value(json_object_get(ep, "IPAddress")), hostname, links);
    if (vs_write_file_atomic(path, text, strlen(text), 0644, err) < 0)
      return -1;
    if (user_network) {
      /* the network's name server listens on its gateway (Docker's is 127.0.0.11 inside) */
      _cleanup_free_ char *rpath = vs_asprintf("%s/resolv.conf", c->dir);
      _cleanup_free_ char *resolv =
          user_network_resolv_conf(hc, json_string_value(json_object_get(ep, "Gateway")));
      if (vs_write_file_atomic(rpath, resolv, strlen(resolv), 0644, err) < 0)
        return -1;
    }
    break; /* the first network's address names the host, as Docker */
  }
  return 0;
}

/* The container's first IPv4 --dns server: its network DNS server's upstream for it, as
 * Docker's embedded server forwards to the container's servers (NULL: the host's). */
static const char *dns_upstream_of(json_t *host_config) {
  size_t i;
  json_t *v;
  json_array_foreach(json_object_get(host_config, "Dns"), i, v) {
    struct in_addr a;
    const char *s = json_string_value(v);
    if (s && inet_pton(AF_INET, s, &a) == 1)
      return s;
  }
  return NULL;
}

/* Attach one endpoint; ports with a random host port are drawn again when taken meanwhile. */
static int attach_one(vd_daemon *d, vd_container *c, json_t *w, int netns_fd, unsigned index,
                      net_port *ports, size_t n_ports, vs_error **err) {
  vd_net *vn = d->net;
  const char *name = json_string_value(json_object_get(w, "name"));
  json_t *cfg = json_object_get(w, "cfg");
  bool user = strcmp(name, DEFAULT_BRIDGE_NETWORK) != 0;
  char ifname[IFNAMSIZ];
  snprintf(ifname, sizeof(ifname), "eth%u", index);
  const char *ip =
      json_string_value(json_object_get(json_object_get(cfg, "IPAMConfig"), "IPv4Address"));
  const char *mac = json_string_value(json_object_get(cfg, "MacAddress"));
  if ((!mac || !*mac) && index == 0)
    mac = json_string_value(json_object_get(json_object_get(c->rec, "Config"), "MacAddress"));
  size_t n_aliases = 0;
  char short_id[13];
  snprintf(short_id, sizeof(short_id), "%.12s", c->id);
  _cleanup_free_ const char **aliases =
      user ? endpoint_aliases(c, cfg, short_id, &n_aliases) : NULL;
  net_endpoint_opts o = {.network = name,
                         .id = c->id,
                         .netns_fd = netns_fd,
                         .ifname = ifname,
                         .no_default_route = index > 0,
                         .ip = ip && *ip ? ip : NULL,
                         .mac = mac && *mac ? mac : NULL,
                         .ports = ports,
                         .n_ports = n_ports,
                         .aliases = aliases,
                         .n_aliases = n_aliases,
                         .dns_upstream =
                             user ? dns_upstream_of(json_object_get(c->rec, "HostConfig")) : NULL};
  /* on a network of the cluster the address comes from etcd, where no other node can take it */
  char claimed[INET_ADDRSTRLEN] = "";
  if (is_cluster_network(vn, name)) {
    if (vd_cnet_claim(d, name, c->id, o.ip, aliases, n_aliases, claimed, err) < 0)
      return vs_error_wrap(err, "connect to network %s", name);
    o.ip = claimed;
  }
  bool *random = vs_malloc0((n_ports + 1) * sizeof(bool));
  for (size_t i = 0; i < n_ports; i++)
    random[i] = ports[i].host_port == 0;
  int r = -1;
  for (int attempt = 0; attempt < 8; attempt++) {
    ports_pick_random(ports, n_ports, random);
    vs_error *e = NULL;
    r = net_endpoint_attach_veth(vn->ctx, &o, NULL, &e);
    bool retry = r < 0 && e->errnum == EADDRINUSE && o.ip == NULL;
    bool any_random = false;
    for (size_t i = 0; i < n_ports; i++)
      any_random = any_random || random[i];
    if (r == 0 || !retry || !any_random) {
      if (r < 0)
        *err = e;
      break;
    }
    vs_error_free(e);
  }
  free(random);
  if (r < 0 && claimed[0])
    vd_cnet_release(d, name, c->id);
  return r < 0 ? vs_error_wrap(err, "connect to network %s", name) : 0;
}

int vd_net_setup(vd_daemon *d, vd_container *c, vs_error **err) {
  vd_net *vn = d->net;
  json_t *hc = json_object_get(c->rec, "HostConfig");
  const char *mode = json_string_value(json_object_get(hc, "NetworkMode"));
  _cleanup_free_ char *nspath = netns_path(d, c->id);
  pthread_mutex_lock(&vn->lock);
  c->net_gen++; /* a teardown of the previous run still queued now leaves this one alone */
  json_t *gone = detach_all(d, c->id); /* a previous run's leftovers */
  json_decref(gone);
  netns_remove(nspath);
  pthread_mutex_unlock(&vn->lock);
  if (mode && !strncmp(mode, "container:", 10)) {
    pthread_mutex_lock(&d->lock);
    vd_container *o = vd_ctr_find(d, mode + 10);
    pid_t pid = o && o->state == VD_CTR_RUNNING ? o->pid : 0;
    pthread_mutex_unlock(&d->lock);
    if (pid <= 0)
      return net_fail(err, EINVAL, "cannot join network of a non running container: %s", mode + 10);
    _cleanup_free_ char *p = vs_asprintf("/proc/%d/ns/net", (int)pid);
    ctr_net_set(d, c, json_pack("{s:{}, s:{}}", "Networks", "Ports"));
    return spec_set_netns(c, p, false, err);
  }
  pthread_mutex_lock(&vn->lock);
  json_t *wanted = wanted_endpoints(vn, c->rec, err);
  bool default_off = !vn->default_bridge && json_array_size(wanted) > 0 &&
                     !strcmp(json_string_value(json_object_get(json_array_get(wanted, 0), "name")),
                             DEFAULT_BRIDGE_NETWORK);
  pthread_mutex_unlock(&vn->lock);
  if (!wanted)
    return -1;
  if (json_array_size(wanted) == 0 || default_off) {
    /* none, host, or the default bridge turned off (--bridge none): what the runtime makes */
    json_decref(wanted);
    ctr_net_set(d, c, json_pack("{s:{s:{}}, s:{}}", "Networks", mode ? mode : "none", "Ports"));
    return spec_set_netns(c, NULL, mode && !strcmp(mode, "host"), err);
  }
  net_port *ports = NULL;
  _cleanup_free_ uint16_t *ends = NULL;
  size_t n_ports = 0;
  if (published_ports(c->rec, &ports, &n_ports, &ends, err) < 0) {
    json_decref(wanted);
    return -1;
  }
  if (netns_make(nspath, err) < 0) {
    free(ports);
    json_decref(wanted);
    return -1;
  }
  _cleanup_close_ int fd = open(nspath, O_RDONLY | O_CLOEXEC);
  int r = fd < 0 ? vs_error_set(err, errno, "open %s", nspath) : 0;
  pthread_mutex_lock(&vn->lock);
  if (r == 0)
    r = ports_pick_in_ranges(vn->ctx, ports, ends, n_ports, err);
  size_t i;
  json_t *w;
  json_array_foreach(wanted, i, w) {
    if (r < 0)
      break;
    r = attach_one(d, c, w, fd, (unsigned)i, i == 0 ? ports : NULL, i == 0 ? n_ports : 0, err);
  }
  json_t *net = r == 0 ? endpoint_settings(vn, c, wanted) : NULL;
  if (r < 0)
    json_decref(detach_all(d, c->id));
  pthread_mutex_unlock(&vn->lock);
  free(ports);
  const char *first = json_string_value(json_object_get(json_array_get(wanted, 0), "name"));
  if (r == 0 && (write_etc(d, c, net, strcmp(first, DEFAULT_BRIDGE_NETWORK) != 0, err) < 0 ||
                 spec_set_netns(c, nspath, false, err) < 0))
    r = -1;
  if (r < 0) {
    json_decref(net);
    pthread_mutex_lock(&vn->lock);
    json_decref(detach_all(d, c->id));
    pthread_mutex_unlock(&vn->lock);
    netns_remove(nspath);
    json_decref(wanted);
    return -1;
  }
  ctr_net_set(d, c, net);
  json_array_foreach(wanted, i, w) {
    const char *name = json_string_value(json_object_get(w, "name"));
    pthread_mutex_lock(&vn->lock);
    const char *nid =
        json_string_value(json_object_get(json_object_get(meta_networks(vn), name), "Id"));
    _cleanup_free_ char *id = vs_strdup(nid ? nid : "");
    pthread_mutex_unlock(&vn->lock);
    network_event(d, name, id, "connect", c->id);
  }
  json_decref(wanted);
  return 0;
}

/* Detach the container's endpoints and remove its namespace, unless a start made new ones since
 * generation gen was read (check). Everything under vn->lock, so a start cannot interleave. */
static void teardown(vd_daemon *d, vd_container *c, bool check, unsigned gen) {
  vd_net *vn = d->net;
  if (!vn)
    return;
  pthread_mutex_lock(&vn->lock);
  if (check && c->net_gen != gen) {
    pthread_mutex_unlock(&vn->lock);
    return;
  }
  json_t *left = detach_all(d, c->id);
  size_t i;
  json_t *v;
  json_t *ids = json_array();
  json_array_foreach(left, i, v) {
    const char *nid = json_string_value(
        json_object_get(json_object_get(meta_networks(vn), json_string_value(v)), "Id"));
    json_array_append_new(ids, json_string(nid ? nid : ""));
  }
  _cleanup_free_ char *nspath = netns_path(d, c->id);
  netns_remove(nspath);
  pthread_mutex_lock(&d->lock);
  json_decref(c->net);
  c->net = NULL;
  pthread_mutex_unlock(&d->lock);
  pthread_mutex_unlock(&vn->lock);
  json_array_foreach(left, i, v) network_event(
      d, json_string_value(v), json_string_value(json_array_get(ids, i)), "disconnect", c->id);
  json_decref(left);
  json_decref(ids);
}

void vd_net_teardown(vd_daemon *d, vd_container *c) { teardown(d, c, false, 0); }

unsigned vd_net_run(vd_daemon *d, vd_container *c) {
  if (!d->net)
    return 0;
  pthread_mutex_lock(&d->net->lock);
  unsigned run = c->net_gen;
  pthread_mutex_unlock(&d->net->lock);
  return run;
}

void vd_net_teardown_run(vd_daemon *d, vd_container *c, unsigned run) { teardown(d, c, true, run); }

/* ---------------------------------------------------------------- create, inspect, ps */

/* "02:42:ac:11:00:02": six pairs of hex digits (the library checks the rest at attach). */
static bool mac_valid(const char *mac) {
  if (strlen(mac) != 17)
    return false;
  for (size_t i = 0; i < 17; i++)
    if (i % 3 == 2 ? mac[i] != ':' : vs_hex_digit((unsigned char)mac[i]) < 0)
      return false;
  return true;
}

int vd_net_create_prepare(vd_daemon *d, json_t *body, json_t *rec, const vs_image *img,
                          vs_error **err) {
  vd_net *vn = d->net;
  json_t *hc = json_object_get(rec, "HostConfig");
  json_t *cfg = json_object_get(rec, "Config");
  json_t *ncfg = json_object_get(body, "NetworkingConfig"), *eps = NULL;
  if (ncfg && !json_is_null(ncfg) &&
      (!json_is_object(ncfg) || vs_json_get_object(ncfg, "EndpointsConfig", false, &eps, err) < 0))
    return net_fail(err, EINVAL, "NetworkingConfig: expected an object with EndpointsConfig");
  const char *mode = json_string_value(json_object_get(hc, "NetworkMode"));
  pthread_mutex_lock(&vn->lock);
  bool missing;
  const char *primary = mode_network(vn, mode, &missing);
  int r = 0;
  if (missing)
    r = net_fail(err, EINVAL, "network %s not found", mode);
  const char *key;
  json_t *ep;
  json_object_foreach(eps, key, ep) {
    if (r < 0)
      break;
    if (default_off(vn, key))
      continue;
    const char *n = endpoint_network(vn, key);
    json_t *ipam = json_object_get(ep, "IPAMConfig");
    const char *ip = json_string_value(json_object_get(ipam, "IPv4Address"));
    json_t *aliases = json_object_get(ep, "Aliases");
    struct in_addr a;
    if (!json_is_object(ep))
      r = net_fail(err, EINVAL, "EndpointsConfig.%s: expected an object", key);
    else if (!n)
      r = net_fail(err, EINVAL, "network %s not found", key);
    else if (!primary && strcmp(n, "host") != 0 && strcmp(n, "none") != 0)
      r = net_fail(err, EINVAL,
                   "container cannot be connected to network %s with "
                   "network mode %s",
                   key, mode);
    else if (ip && *ip && inet_pton(AF_INET, ip, &a) != 1)
      r = net_fail(err, EINVAL, "invalid IPv4 address: %s", ip);
    else if (ip && *ip && !strcmp(n, DEFAULT_BRIDGE_NETWORK))
      r = net_fail(err, EINVAL,
                   "user specified IP address is supported on user defined "
                   "networks only");
    else if (json_array_size(aliases) && !strcmp(n, DEFAULT_BRIDGE_NETWORK))
      r = net_fail(err, EINVAL,
                   "network-scoped alias is supported only for containers in "
                   "user defined networks");
  }
  pthread_mutex_unlock(&vn->lock);
  if (r < 0)
    return -1;
  const char *mac = json_string_value(json_object_get(cfg, "MacAddress"));
  if (mac && *mac && !mac_valid(mac))
    return net_fail(err, EINVAL, "invalid MAC address: %s", mac);
  /* EXPOSE of the image and -p imply exposed ports, as Docker records them */
  json_t *exposed = json_object();
  json_object_update(exposed,
                     json_object_get(json_object_get(img->config.root, "config"), "ExposedPorts"));
  json_object_update(exposed, json_object_get(cfg, "ExposedPorts"));
  json_t *v;
  json_object_foreach(json_object_get(hc, "PortBindings"), key, v) {
    uint16_t port;
    net_proto proto;
    if (parse_ctr_port(key, &port, &proto, err) < 0) {
      json_decref(exposed);
      return -1;
    }
    json_object_set_new(exposed, key, json_object());
  }
  json_object_set_new(cfg, "ExposedPorts", exposed);
  net_port *ports = NULL;
  size_t n = 0;
  if (published_ports(rec, &ports, &n, NULL, err) < 0)
    return -1;
  free(ports);
  json_object_set_new(rec, "NetworkingConfig",
                      json_pack("{s:O}", "EndpointsConfig", eps ? eps : json_object()));
  return 0;
}

/* EndpointSettings of a network the container is not on right now (stopped). */
static json_t *blank_settings(json_t *cfg) {
  return json_pack("{s:O, s:n, s:O, s:s, s:s, s:s, s:s, s:i, s:s, s:s, s:i, s:s, s:n}",
                   "IPAMConfig", json_object_get(cfg, "IPAMConfig") ?: json_null(), "Links",
                   "Aliases", json_object_get(cfg, "Aliases") ?: json_null(), "NetworkID", "",
                   "EndpointID", "", "Gateway", "", "IPAddress", "", "IPPrefixLen", 0,
                   "IPv6Gateway", "", "GlobalIPv6Address", "", "GlobalIPv6PrefixLen", 0,
                   "MacAddress", "", "DriverOpts");
}

/* What the container has now: nothing once it stopped, even before its endpoints are gone. */
static json_t *live_net(const vd_container *c) {
  return c->state == VD_CTR_RUNNING ? c->net : NULL;
}

json_t *vd_net_settings(const vd_container *c) {
  json_t *net = live_net(c);
  json_t *nets = json_deep_copy(json_object_get(net, "Networks"));
  if (!nets) {
    /* not running: the configured networks without addresses */
    nets = json_object();
    const char *mode =
        json_string_value(json_object_get(json_object_get(c->rec, "HostConfig"), "NetworkMode"));
    if (!mode || !strcmp(mode, "default"))
      mode = DEFAULT_BRIDGE_NETWORK;
    json_t *eps = json_object_get(json_object_get(c->rec, "NetworkingConfig"), "EndpointsConfig");
    if (strncmp(mode, "container:", 10) != 0 && !json_object_get(eps, mode) &&
        !json_is_true(json_object_get(c->rec, "PrimaryDisconnected")))
      json_object_set_new(nets, mode, blank_settings(NULL));
    const char *k;
    json_t *v;
    json_object_foreach(eps, k, v) json_object_set_new(nets, k, blank_settings(v));
  }
  json_t *ports = json_deep_copy(json_object_get(net, "Ports")) ?: json_object();
  const char *k;
  json_t *v;
  json_object_foreach(json_object_get(json_object_get(c->rec, "Config"), "ExposedPorts"), k, v) {
    if (net && !json_object_get(ports, k))
      json_object_set_new(ports, k, json_null());
  }
  json_t *b = json_object_get(nets, DEFAULT_BRIDGE_NETWORK);
  json_t *s =
      json_pack("{s:s, s:s, s:b, s:s, s:s, s:o, s:s, s:n, s:n, s:s, s:s, s:i, s:s, s:i, "
                "s:s, s:s, s:s, s:o}",
                "Bridge", "", "SandboxID", "", "HairpinMode", 0, "LinkLocalIPv6Address", "",
                "LinkLocalIPv6PrefixLen", "", "Ports", ports, "SandboxKey", "",
                "SecondaryIPAddresses", "SecondaryIPv6Addresses", "EndpointID", "", "Gateway", "",
                "GlobalIPv6PrefixLen", 0, "IPAddress", "", "IPPrefixLen", 0, "IPv6Gateway", "",
                "GlobalIPv6Address", "", "MacAddress", "", "Networks", nets);
  json_object_set_new(s, "LinkLocalIPv6PrefixLen", json_integer(0));
  /* the top-level fields are the default bridge's, as Docker's */
  static const char *const copy[] = {"EndpointID", "Gateway", "IPAddress", "IPPrefixLen",
                                     "MacAddress"};
  for (size_t i = 0; b && i < ARRAY_SIZE(copy); i++)
    if (json_object_get(b, copy[i]))
      json_object_set(s, copy[i], json_object_get(b, copy[i]));
  return s;
}

json_t *vd_net_summary_ports(const vd_container *c) {
  json_t *out = json_array();
  const char *k;
  json_t *list;
  json_object_foreach(json_object_get(live_net(c), "Ports"), k, list) {
    unsigned port = (unsigned)strtoul(k, NULL, 10);
    const char *proto = strchr(k, '/') ? strchr(k, '/') + 1 : "tcp";
    size_t i;
    json_t *b;
    json_array_foreach(list, i, b) {
      json_array_append_new(
          out, json_pack("{s:O, s:i, s:i, s:s}", "IP", json_object_get(b, "HostIp"), "PrivatePort",
                         (int)port, "PublicPort",
                         (int)strtol(json_string_value(json_object_get(b, "HostPort")), NULL, 10),
                         "Type", proto));
    }
  }
  return out;
}

json_t *vd_net_summary_networks(const vd_container *c) {
  json_t *nets = json_deep_copy(json_object_get(live_net(c), "Networks"));
  return nets ? nets : json_object();
}

/* ---------------------------------------------------------------- connect, disconnect */

static vd_container *find_container(vd_daemon *d, const char *what) {
  pthread_mutex_lock(&d->lock);
  vd_container *c = what ? vd_ctr_find(d, what) : NULL;
  if (c)
    vd_ctr_ref(c);
  pthread_mutex_unlock(&d->lock);
  return c;
}

/* The container a connect or disconnect body names (held for the call as c->ctr) and the
 * network of the path: its name and id in *name and *nid. NULL after answering 404. */
static vd_container *call_ctr_and_network(vd_call *c, json_t *body, char **name, char **nid) {
  vd_net *vn = c->d->net;
  const char *who = json_string_value(json_object_get(body, "Container"));
  vd_container *ctr = find_container(c->d, who);
  if (!ctr) {
    vd_call_error(c, 404, "No such container: %s", who ? who : "");
    return NULL;
  }
  c->ctr = ctr;
  pthread_mutex_lock(&vn->lock);
  const char *found = meta_find(vn, c->arg);
  if (found) {
    *name = vs_strdup(found);
    *nid = vs_strdup(
        json_string_value(json_object_get(json_object_get(meta_networks(vn), found), "Id")));
  }
  pthread_mutex_unlock(&vn->lock);
  if (!found) {
    vd_call_error(c, 404, "network %s not found", c->arg);
    return NULL;
  }
  return ctr;
}

void vd_h_network_connect(vd_call *c) {
  vd_daemon *d = c->d;
  vd_net *vn = d->net;
  _cleanup_json_ json_t *body = vd_call_body_object(c);
  if (!body)
    return;
  json_t *epcfg = json_object_get(body, "EndpointConfig");
  if (epcfg && !json_is_object(epcfg) && !json_is_null(epcfg)) {
    vd_call_error(c, 400, "EndpointConfig: expected an object");
    return;
  }
  _cleanup_free_ char *name = NULL, *nid = NULL;
  vd_container *ctr = call_ctr_and_network(c, body, &name, &nid);
  if (!ctr)
    return;
  if (is_predefined(name) && strcmp(name, DEFAULT_BRIDGE_NETWORK) != 0) {
    vd_call_error(c, 403,
                  "container cannot be disconnected from host network or connected to "
                  "host network");
    return;
  }
  const char *mode =
      json_string_value(json_object_get(json_object_get(ctr->rec, "HostConfig"), "NetworkMode"));
  if (mode &&
      (!strcmp(mode, "host") || !strcmp(mode, "none") || !strncmp(mode, "container:", 10))) {
    vd_call_error(c, 400,
                  "container sharing network namespace with another container or host "
                  "cannot be connected to any other network");
    return;
  }
  const char *ip =
      json_string_value(json_object_get(json_object_get(epcfg, "IPAMConfig"), "IPv4Address"));
  if (!strcmp(name, DEFAULT_BRIDGE_NETWORK) &&
      ((ip && *ip) || json_array_size(json_object_get(epcfg, "Aliases")))) {
    vd_call_error(c, 400,
                  "user specified IP address or aliases are supported on user defined "
                  "networks only");
    return;
  }
  pthread_mutex_lock(&d->lock);
  json_t *eps = json_object_get(json_object_get(ctr->rec, "NetworkingConfig"), "EndpointsConfig");
  if (!eps) {
    json_object_set_new(ctr->rec, "NetworkingConfig", json_pack("{s:{}}", "EndpointsConfig"));
    eps = json_object_get(json_object_get(ctr->rec, "NetworkingConfig"), "EndpointsConfig");
  }
  bool on =
      json_object_get(eps, name) || json_object_get(json_object_get(ctr->net, "Networks"), name);
  bool running = ctr->state == VD_CTR_RUNNING;
  pid_t pid = ctr->pid;
  if (!on)
    json_object_set_new(eps, name, epcfg ? json_deep_copy(epcfg) : json_object());
  pthread_mutex_unlock(&d->lock);
  bool primary_is_it = false;
  if (!on) {
    pthread_mutex_lock(&vn->lock);
    bool missing;
    const char *p = mode_network(vn, mode, &missing);
    primary_is_it = p && !strcmp(p, name);
    pthread_mutex_unlock(&vn->lock);
  }
  bool reconnect = primary_is_it && json_is_true(json_object_get(ctr->rec, "PrimaryDisconnected"));
  if (reconnect) {
    pthread_mutex_lock(&d->lock);
    json_object_del(ctr->rec, "PrimaryDisconnected");
    pthread_mutex_unlock(&d->lock);
  }
  if (on || (primary_is_it && !reconnect)) {
    vd_call_error(c, 403, "endpoint with name %s already exists in network %s", ctr->name + 1,
                  name);
    if (!on) {
      pthread_mutex_lock(&d->lock);
      json_object_del(eps, name);
      pthread_mutex_unlock(&d->lock);
    }
    return;
  }
  vs_error *e = NULL;
  int r = 0;
  if (running) {
    _cleanup_free_ char *nspath = netns_path(d, ctr->id);
    _cleanup_close_ int fd = open(nspath, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      r = vs_error_set(&e, errno, "the network namespace of container %.12s (pid %d)", ctr->id,
                       (int)pid);
    } else {
      pthread_mutex_lock(&vn->lock);
      _cleanup_json_ json_t *wanted = wanted_endpoints(vn, ctr->rec, &e);
      unsigned index = (unsigned)json_object_size(json_object_get(ctr->net, "Networks"));
      r = wanted ? 0 : -1;
      json_t *w = NULL;
      size_t i;
      json_t *x;
      json_array_foreach(wanted, i, x) {
        if (!strcmp(json_string_value(json_object_get(x, "name")), name))
          w = x;
      }
      if (r == 0)
        r = attach_one(d, ctr, w, fd, index, NULL, 0, &e);
      json_t *net = r == 0 ? endpoint_settings(vn, ctr, wanted) : NULL;
      pthread_mutex_unlock(&vn->lock);
      if (net) {
        json_object_set(net, "Ports", json_object_get(ctr->net, "Ports"));
        ctr_net_set(d, ctr, net);
      }
    }
  }
  if (r == 0)
    r = vd_ctr_save(ctr, &e);
  if (r < 0) {
    pthread_mutex_lock(&d->lock);
    json_object_del(eps, name);
    if (reconnect)
      json_object_set_new(ctr->rec, "PrimaryDisconnected", json_true());
    pthread_mutex_unlock(&d->lock);
    vd_call_fail(c, e);
    vs_error_free(e);
    return;
  }
  if (running)
    network_event(d, name, nid, "connect", ctr->id);
  vd_call_status(c, 200);
}

void vd_h_network_disconnect(vd_call *c) {
  vd_daemon *d = c->d;
  vd_net *vn = d->net;
  _cleanup_json_ json_t *body = vd_call_body_object(c);
  if (!body)
    return;
  _cleanup_free_ char *name = NULL, *nid = NULL;
  vd_container *ctr = call_ctr_and_network(c, body, &name, &nid);
  if (!ctr)
    return;
  pthread_mutex_lock(&d->lock);
  json_t *eps = json_object_get(json_object_get(ctr->rec, "NetworkingConfig"), "EndpointsConfig");
  json_t *hc = json_object_get(ctr->rec, "HostConfig");
  const char *mode = json_string_value(json_object_get(hc, "NetworkMode"));
  bool live = json_object_get(json_object_get(ctr->net, "Networks"), name) != NULL;
  bool configured = json_object_get(eps, name) != NULL;
  pthread_mutex_unlock(&d->lock);
  pthread_mutex_lock(&vn->lock);
  bool missing;
  const char *p = mode_network(vn, mode, &missing);
  bool primary = p && !strcmp(p, name);
  pthread_mutex_unlock(&vn->lock);
  if (primary && json_is_true(json_object_get(ctr->rec, "PrimaryDisconnected")))
    primary = false;
  if (!live && !configured && !primary) {
    vd_call_error(c, 400, "container %.12s is not connected to network %s", ctr->id, name);
    return;
  }
  vs_error *e = NULL;
  if (live) {
    pthread_mutex_lock(&vn->lock);
    int r = endpoint_detach(d, name, ctr->id, &e);
    pthread_mutex_unlock(&vn->lock);
    if (r < 0) {
      vd_call_fail(c, e);
      vs_error_free(e);
      return;
    }
  }
  pthread_mutex_lock(&d->lock);
  json_object_del(eps, name);
  json_object_del(json_object_get(ctr->net, "Networks"), name);
  if (primary)
    json_object_set_new(ctr->rec, "PrimaryDisconnected", json_true());
  pthread_mutex_unlock(&d->lock);
  if (vd_ctr_save(ctr, &e) < 0) {
    vd_call_fail(c, e);
    vs_error_free(e);
    return;
  }
  if (live)
    network_event(d, name, nid, "disconnect", ctr->id);
  vd_call_status(c, 200);
}

/* ---------------------------------------------------------------- VM endpoints */

int vd_net_attach_tap(vd_daemon *d, const char *network, const char *id, const char *ip,
                      const net_port *ports, size_t n_ports, net_endpoint_info *info,
                      vs_error **err) {
  vd_net *vn = d->net;
  pthread_mutex_lock(&vn->lock);
  const char *name = meta_find(vn, network);
  json_t *m = name ? json_object_get(meta_networks(vn), name) : NULL;
  int r;
  char claimed[INET_ADDRSTRLEN] = "";
  if (!name)
    r = net_fail(err, ENOENT, "network %s not found", network);
  else if (strcmp(json_string_value(json_object_get(m, "Driver")), "bridge") != 0)
    r = net_fail(err, EINVAL, "network %s has no bridge for a VM", name);
  /* a VM of the cluster keeps its address wherever it goes: its claim names it, and the node
   * that makes its tap (a migration's or a failover's target) takes the claim over */
  else if (is_cluster_network(vn, name) &&
           vd_cnet_claim(d, name, id, ip, (const char *const[]){id}, 1, claimed, err) < 0)
    r = -1;
  else
    r = net_endpoint_attach_tap(vn->ctx,
                                &(net_endpoint_opts){.network = name,
                                                     .id = id,
                                                     .ip = claimed[0] ? claimed : ip,
                                                     .ports = ports,
                                                     .n_ports = n_ports,
                                                     .aliases = (const char *[]){id},
                                                     .n_aliases = 1},
                                info, err);
  if (r < 0 && claimed[0])
    vd_cnet_release(d, name, id);
  _cleanup_free_ char *nid = m ? vs_strdup(json_string_value(json_object_get(m, "Id"))) : NULL;
  _cleanup_free_ char *nname = name ? vs_strdup(name) : NULL;
  pthread_mutex_unlock(&vn->lock);
  if (r == 0)
    network_event(d, nname, nid, "connect", id);
  return r;
}

int vd_net_detach_tap(vd_daemon *d, const char *network, const char *id, vs_error **err) {
  vd_net *vn = d->net;
  pthread_mutex_lock(&vn->lock);
  const char *name = meta_find(vn, network);
  _cleanup_free_ char *nname = name ? vs_strdup(name) : NULL;
  _cleanup_free_ char *nid =
      name ? vs_strdup(
                 json_string_value(json_object_get(json_object_get(meta_networks(vn), name), "Id")))
           : NULL;
  int r = name ? endpoint_detach(d, name, id, err)
               : net_fail(err, ENOENT, "network %s not found", network);
  pthread_mutex_unlock(&vn->lock);
  if (r == 0)
    network_event(d, nname, nid, "disconnect", id);
  return r;
}

void vd_net_renamed(vd_daemon *d, const char *id, const char *old_name, const char *new_name) {
  vd_net *vn = d->net;
  if (!vn)
    return;
  _cleanup_error_ vs_error *e = NULL;
  pthread_mutex_lock(&vn->lock);
  if (net_endpoint_rename_alias(vn->ctx, id, old_name, new_name, &e) < 0)
    vs_log_warn("rename %s to %s: the network's name stays the old one: %s", old_name, new_name,
                e->msg);
  pthread_mutex_unlock(&vn->lock);
}

int vd_net_tap_ports(json_t *bindings, net_port **ports, size_t *n_ports, vs_error **err) {
  _cleanup_json_ json_t *rec =
      json_pack("{s:{s:O?}, s:{}}", "HostConfig", "PortBindings", bindings, "Config");
  if (bindings && !json_is_object(bindings))
    return net_fail(err, EINVAL,
                    "PortBindings: expected an object such as "
                    "{\"80/tcp\": [{\"HostPort\": \"8080\"}]}");
  _cleanup_free_ uint16_t *ends = NULL;
  if (published_ports(rec, ports, n_ports, &ends, err) < 0)
    return -1;
  if (ports_pick_in_ranges(NULL, *ports, ends, *n_ports, err) < 0) {
    free(*ports);
    *ports = NULL;
    return -1;
  }
  bool *random = vs_malloc0((*n_ports + 1) * sizeof(bool));
  for (size_t i = 0; i < *n_ports; i++)
    random[i] = (*ports)[i].host_port == 0;
  ports_pick_random(*ports, *n_ports, random);
  free(random);
  return 0;
}

/* POST /vessel/v1/networks/{}/taps {"Id", "IPAddress", "PortBindings"}: a tap for a VM that
 * is started by someone else (vessel-vmm --net tap=NAME,mac=MAC); it gets its address by DHCP
 * and its Id as its name in the network's DNS. */
void vd_h_network_tap_attach(vd_call *c) {
  _cleanup_json_ json_t *body = vd_call_body_object(c);
  if (!body)
    return;
  const char *id = NULL, *ip = NULL;
  vs_error *e = NULL;
  net_port *ports = NULL;
  size_t n_ports = 0;
  if (vs_json_get_string(body, "Id", true, &id, &e) < 0 ||
      vs_json_get_string(body, "IPAddress", false, &ip, &e) < 0 ||
      vd_net_tap_ports(json_object_get(body, "PortBindings"), &ports, &n_ports, &e) < 0) {
    vd_call_error(c, 400, "%s", e->msg);
    vs_error_free(e);
    return;
  }
  net_endpoint_info info = {0};
  int r = vd_net_attach_tap(c->d, c->arg, id, ip && *ip ? ip : NULL, ports, n_ports, &info, &e);
  free(ports);
  if (r < 0) {
    vd_call_fail(c, e);
    vs_error_free(e);
    return;
  }
  char ipbuf[INET_ADDRSTRLEN], gw[INET_ADDRSTRLEN];
  inet_ntop(AF_INET, &info.ip, ipbuf, sizeof(ipbuf));
  inet_ntop(AF_INET, &info.gateway, gw, sizeof(gw));
  _cleanup_free_ char *mac = vs_asprintf("%02x:%02x:%02x:%02x:%02x:%02x", info.mac[0], info.mac[1],
                                         info.mac[2], info.mac[3], info.mac[4], info.mac[5]);
  vd_call_json(c, 201,
               json_pack("{s:s, s:s, s:s, s:s, s:i, s:s}", "Id", id, "Tap", info.host_ifname,
                         "MacAddress", mac, "IPAddress", ipbuf, "IPPrefixLen", (int)info.prefix,
                         "Gateway", gw));
}

/* DELETE /vessel/v1/networks/{}/taps?id=ID */
void vd_h_network_tap_detach(vd_call *c) {
  _cleanup_free_ char *id = http_query_get(c->req->query, "id");
  if (!id || !*id) {
    vd_call_error(c, 400, "the query parameter id names the VM endpoint");
    return;
  }
  vs_error *e = NULL;
  if (vd_net_detach_tap(c->d, c->arg, id, &e) < 0) {
    vd_call_fail(c, e);
    vs_error_free(e);
    return;
  }
  vd_call_status(c, 204);
}

/* ---------------------------------------------------------------- networks of the cluster */

/* Make the network of a cluster record here (vn->lock held). */
static int cluster_network_make(vd_daemon *d, const char *name, json_t *rec, vs_error **err) {
  vn_create c = {.name = name,
                 .driver = "bridge",
                 .subnet = json_string_value(json_object_get(rec, "Subnet")),
                 .gateway = json_string_value(json_object_get(rec, "Gateway")),
                 .ip_range = json_string_value(json_object_get(rec, "IPRange")),
                 .internal = json_is_true(json_object_get(rec, "Internal")),
                 .labels = json_object_get(rec, "Labels"),
                 .options = json_object_get(rec, "Options"),
                 .cluster = true,
                 .id = json_string_value(json_object_get(rec, "Id")),
                 .mtu = (unsigned)json_integer_value(json_object_get(rec, "Mtu")),
                 .revision = json_integer_value(json_object_get(rec, "Revision"))};
  if (!c.subnet || !c.gateway || !c.id || !json_is_object(c.labels) || !json_is_object(c.options) ||
      c.mtu < 68)
    return net_fail(err, EINVAL, "the cluster's record of network %s is incomplete", name);
  if (network_make(d, &c, NULL, err) < 0)
    return -1;
  vs_log_info("network %s of the cluster made here (%s)", name, c.subnet);
  return 0;
}

static bool strings_have(const json_t *a, const char *s) {
  size_t i;
  json_t *v;
  json_array_foreach(a, i, v) {
    if (json_is_string(v) && !strcmp(json_string_value(v), s))
      return true;
  }
  return false;
}

/* The network's VXLAN device and its flooding peers as wanted (vn->lock held). */
static int cluster_network_overlay(vd_daemon *d, const char *name, json_t *rec, json_t *peers,
                                   vs_error **err) {
  vd_net *vn = d->net;
  if (!vn->vx_peers)
    vn->vx_peers = json_object();
  json_t *had = json_object_get(vn->vx_peers, name);
  char ifname[IFNAMSIZ];
  net_vxlan_opts o = {.network = name,
                      .vni = (uint32_t)json_integer_value(json_object_get(rec, "Vni")),
                      .local = d->cluster.advertise,
                      .port = (uint16_t)json_integer_value(json_object_get(rec, "Port"))};
  int made = net_vxlan_ensure(vn->ctx, &o, had == NULL, ifname, err);
  if (made < 0)
    return -1;
  if (made && had) { /* deleted behind our back: made again, without its peers */
    vs_log_warn("network %s: its VXLAN device %s was gone: made again", name, ifname);
    json_array_clear(had);
  }
  if (!had) {
    had = json_array();
    json_object_set_new(vn->vx_peers, name, had);
  }
  size_t i;
  json_t *p;
  json_array_foreach(peers, i, p) {
    if (strings_have(had, json_string_value(p)))
      continue;
    if (net_vxlan_peer(vn->ctx, name, json_string_value(p), true, err) < 0)
      return -1;
    json_array_append(had, p);
  }
  for (i = json_array_size(had); i-- > 0;) {
    const char *peer = json_string_value(json_array_get(had, i));
    if (strings_have(peers, peer))
      continue;
    if (net_vxlan_peer(vn->ctx, name, peer, false, err) < 0)
      return -1;
    json_array_remove(had, i);
  }
  return 0;
}

/* The names of the guests other nodes have on the network, for its DNS server. */
static void cluster_network_names(vd_net *vn, const char *name, json_t *claims) {
  size_t n = 0, i, k;
  json_t *cl, *nm;
  json_array_foreach(claims, i, cl) n += json_array_size(json_object_get(cl, "Names"));
  _cleanup_free_ const char **names = vs_malloc0((n + 1) * sizeof(char *));
  _cleanup_free_ struct in_addr *ips = vs_malloc0((n + 1) * sizeof(struct in_addr));
  n = 0;
  json_array_foreach(claims, i, cl) {
    struct in_addr ip;
    if (inet_pton(AF_INET, json_string_value(json_object_get(cl, "Ip")), &ip) != 1)
      continue;
    json_array_foreach(json_object_get(cl, "Names"), k, nm) {
      if (json_is_string(nm)) {
        names[n] = json_string_value(nm);
        ips[n++] = ip;
      }
    }
  }
  vs_error *e = NULL;
  if (net_network_set_remote_names(vn->ctx, name, names, ips, n, &e) < 0) {
    vs_log_warn("%s", e->msg);
    vs_error_free(e);
  }
}

/* Milliseconds a network of the cluster made here stays unused before it goes: the node that
 * took its create keeps it a while, and a guest being set up on it meanwhile keeps it. */
#define UNUSED_GRACE_MS 30000

static int64_t mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void note_made(vd_net *vn, const char *name) {
  if (!vn->made_ms)
    vn->made_ms = json_object();
  json_object_set_new(vn->made_ms, name, json_integer(mono_ms()));
}

/* Whether the network of the cluster made here has been unused past the grace (one this daemon
 * found at its start counts from then). */
static bool unused_long_enough(vd_net *vn, const char *name) {
  json_t *at = vn->made_ms ? json_object_get(vn->made_ms, name) : NULL;
  if (!at) {
    note_made(vn, name);
    return false;
  }
  return mono_ms() - json_integer_value(at) > UNUSED_GRACE_MS;
}

static const char *cluster_network_on_demand(vd_net *vn, const char *name) {
  vd_daemon *d = vn->d;
  json_t *peers = NULL, *names = NULL;
  json_t *rec = vd_cnet_record(d, name, &peers, &names);
  if (!rec)
    return NULL;
  vs_error *e = NULL;
  if (cluster_network_make(d, name, rec, &e) < 0 ||
      cluster_network_overlay(d, name, rec, peers, &e) < 0) {
    vs_log_warn("network %s of the cluster: making it here: %s", name, e->msg);
    vs_error_free(e);
  } else {
    cluster_network_names(vn, name, names);
  }
  if (json_object_get(meta_networks(vn), name)) {
    note_made(vn, name);
    vd_cnet_kick(d); /* its pass tells the other nodes, which then flood to this one */
  }
  json_decref(rec);
  json_decref(peers);
  json_decref(names);
  json_t *nets = meta_networks(vn);
  return json_object_get(nets, name) ? json_object_iter_key(json_object_iter_at(nets, name)) : NULL;
}

void vd_net_cluster_apply(vd_daemon *d, json_t *records, int64_t revision, json_t *peers,
                          json_t *remote_claims, json_t *wanted) {
  vd_net *vn = d->net;
  pthread_mutex_lock(&vn->lock);
  const char *name;
  json_t *rec;
  _cleanup_json_ json_t *unused = json_array();
  _cleanup_json_ json_t *none = json_array(); /* the peers of a network no other node has */
  json_object_foreach(records, name, rec) {
    vs_error *e = NULL;
    json_t *m = json_object_get(meta_networks(vn), name);
    if (m && !json_object_get(m, "Cluster")) {
      vs_log_warn("network %s of the cluster: this node has a network of its own by that name",
                  name);
      continue;
    }
    /* made only on the nodes whose guests need it, removed when the last one there goes (one
     * made here lately, by a create or on demand, is kept as it is for the grace) */
    if (!json_object_get(wanted, name)) {
      if (!m)
        continue;
      if (unused_long_enough(vn, name)) {
        json_array_append_new(unused, json_string(name));
        continue;
      }
    } else if (m && vn->made_ms) {
      json_object_set_new(vn->made_ms, name, json_integer(mono_ms())); /* in use now */
    }
    if (!m)
      note_made(vn, name);
    json_t *floods = json_object_get(peers, name);
    if ((!m && cluster_network_make(d, name, rec, &e) < 0) ||
        cluster_network_overlay(d, name, rec, floods ? floods : none, &e) < 0) {
      vs_log_warn("network %s of the cluster: %s", name, e->msg);
      vs_error_free(e);
      continue;
    }
    cluster_network_names(vn, name, json_object_get(remote_claims, name));
  }
  /* networks of the cluster whose records are gone (read after they were made here) */
  _cleanup_json_ json_t *gone = json_array();
  json_t *m;
  json_object_foreach(meta_networks(vn), name, m) {
    json_int_t made =
        json_integer_value(json_object_get(json_object_get(m, "Cluster"), "Revision"));
    if (json_object_get(m, "Cluster") && !json_object_get(records, name) && made < revision)
      json_array_append_new(gone, json_string(name));
  }
  size_t i;
  json_t *v;
  json_array_foreach(unused, i, v) {
    vs_error *e = NULL;
    char *id = NULL;
    if (network_remove_ex(d, json_string_value(v), true, &id, &e) < 0) {
      vs_log_debug("network %s of the cluster is unused here: %s", json_string_value(v), e->msg);
      vs_error_free(e);
    } else {
      vs_log_info("network %s of the cluster: no guest here needs it: removed here",
                  json_string_value(v));
      json_object_del(vn->made_ms, json_string_value(v));
    }
    free(id);
  }
  json_array_foreach(gone, i, v) {
    vs_error *e = NULL;
    char *id = NULL;
    if (network_remove_ex(d, json_string_value(v), true, &id, &e) < 0) {
      vs_log_warn("network %s was removed from the cluster: %s", json_string_value(v), e->msg);
      vs_error_free(e);
    } else {
      vs_log_info("network %s was removed from the cluster: removed here", json_string_value(v));
    }
    if (id)
      network_event(d, json_string_value(v), id, "destroy", NULL);
    free(id);
  }
  pthread_mutex_unlock(&vn->lock);
}

json_t *vd_net_cluster_made(vd_daemon *d) {
  vd_net *vn = d->net;
  json_t *out = json_object();
  pthread_mutex_lock(&vn->lock);
  const char *name;
  json_t *m;
  json_object_foreach(meta_networks(vn), name, m) {
    if (json_object_get(m, "Cluster"))
      json_object_set_new(out, name, json_true());
  }
  pthread_mutex_unlock(&vn->lock);
  return out;
}

json_t *vd_net_cluster_endpoints(vd_daemon *d) {
  vd_net *vn = d->net;
  json_t *out = json_array();
  pthread_mutex_lock(&vn->lock);
  _cleanup_json_ json_t *st = net_state_json(vn->ctx);
  size_t i, k;
  json_t *n, *ep;
  json_array_foreach(json_object_get(st, "networks"), i, n) {
    const char *name = json_string_value(json_object_get(n, "name"));
    if (!is_cluster_network(vn, name))
      continue;
    json_array_foreach(json_object_get(n, "endpoints"), k, ep) {
      json_t *names = json_deep_copy(json_object_get(ep, "aliases"));
      json_array_append(names, json_object_get(ep, "id"));
      json_array_append_new(out, json_pack("{s:s, s:O, s:O, s:o}", "Network", name, "Id",
                                           json_object_get(ep, "id"), "Ip",
                                           json_object_get(ep, "ip"), "Names", names));
    }
  }
  pthread_mutex_unlock(&vn->lock);
  return out;
}

/* ---------------------------------------------------------------- start and end */

/* Networks in src/net without metadata (a kill between the two writes) are removed when
 * unused; metadata without a network in src/net is dropped. */
static int reconcile(vd_daemon *d, vs_error **err) {
  vd_net *vn = d->net;
  _cleanup_json_ json_t *st = net_state_json(vn->ctx);
  size_t i;
  json_t *n;
  json_array_foreach(json_object_get(st, "networks"), i, n) {
    const char *name = json_string_value(json_object_get(n, "name"));
    if (json_object_get(meta_networks(vn), name))
      continue;
    vs_error *e = NULL;
    if (json_array_size(json_object_get(n, "endpoints")) == 0 &&
        net_network_remove(vn->ctx, name, &e) < 0) {
      vs_log_warn("network %s without metadata: %s", name, e->msg);
      vs_error_free(e);
    }
  }
  _cleanup_json_ json_t *names = json_array();
  const char *name;
  json_t *m;
  json_object_foreach(meta_networks(vn), name, m) {
    if (!strcmp(json_string_value(json_object_get(m, "Driver")), "bridge")) {
      _cleanup_json_ json_t *ln = lib_network(vn, name);
      if (!ln)
        json_array_append_new(names, json_string(name));
    }
  }
  json_t *v;
  json_array_foreach(names, i, v) json_object_del(meta_networks(vn), json_string_value(v));
  return json_array_size(names) ? meta_save(vn, err) : 0;
}

static int ensure_predefined(vd_daemon *d, vs_error **err) {
  vd_net *vn = d->net;
  json_t *nets = meta_networks(vn);
  static const char *const kinds[][2] = {{"host", "host"}, {"none", "null"}};
  bool changed = false;
  for (size_t i = 0; i < ARRAY_SIZE(kinds); i++)
    if (!json_object_get(nets, kinds[i][0])) {
      json_object_set_new(nets, kinds[i][0], new_meta(kinds[i][1], false, NULL, NULL, NULL));
      changed = true;
    }
  if (changed && meta_save(vn, err) < 0)
    return -1;
  json_t *bm = json_object_get(nets, DEFAULT_BRIDGE_NETWORK);
  if (!vn->default_bridge) {
    /* --bridge none: no default network; one made before stays until it is unused */
    if (bm) {
      _cleanup_json_ json_t *ln = lib_network(vn, DEFAULT_BRIDGE_NETWORK);
      if (json_array_size(json_object_get(ln, "endpoints")) == 0) {
        if (ln && net_network_remove(vn->ctx, DEFAULT_BRIDGE_NETWORK, err) < 0)
          return -1;
        json_object_del(nets, DEFAULT_BRIDGE_NETWORK);
        return meta_save(vn, err);
      }
    }
    return 0;
  }
  if (bm)
    return 0;
  vn_create o = {.name = DEFAULT_BRIDGE_NETWORK, .subnet = DEFAULT_BRIDGE_SUBNET};
  return network_make(d, &o, NULL, err);
}

static bool ctr_is_running(vd_daemon *d, const char *id) {
  pthread_mutex_lock(&d->lock);
  vd_container *c = vd_ctr_find(d, id);
  bool r = c && c->id[0] && !strcmp(c->id, id) && c->state == VD_CTR_RUNNING;
  pthread_mutex_unlock(&d->lock);
  return r;
}

/* Containers found running get their view back; endpoints of containers that ended while no
 * daemon ran are detached, and their namespaces unmounted. */
static void recover_containers(vd_daemon *d) {
  vd_net *vn = d->net;
  _cleanup_json_ json_t *st = net_state_json(vn->ctx);
  size_t i, k;
  json_t *n, *ep;
  json_array_foreach(json_object_get(st, "networks"), i, n) {
    json_array_foreach(json_object_get(n, "endpoints"), k, ep) {
      const char *id = json_string_value(json_object_get(ep, "id"));
      if (strcmp(json_string_value(json_object_get(ep, "kind")), "veth") != 0 ||
          ctr_is_running(d, id))
        continue;
      vs_error *e = NULL;
      if (endpoint_detach(d, json_string_value(json_object_get(n, "name")), id, &e) < 0) {
        vs_log_warn("%s", e->msg);
        vs_error_free(e);
      }
    }
  }
  pthread_mutex_lock(&d->lock);
  size_t n_ctrs = d->n_ctrs;
  vd_container **ctrs = vs_malloc0((n_ctrs + 1) * sizeof(vd_container *));
  for (size_t j = 0; j < n_ctrs; j++) {
    ctrs[j] = d->ctrs[j];
    vd_ctr_ref(ctrs[j]);
  }
  pthread_mutex_unlock(&d->lock);
  for (size_t j = 0; j < n_ctrs; j++) {
    vd_container *c = ctrs[j];
    _cleanup_free_ char *nspath = netns_path(d, c->id);
    if (c->state != VD_CTR_RUNNING) {
      netns_remove(nspath);
    } else {
      json_t *wanted = wanted_endpoints(vn, c->rec, NULL);
      if (wanted && json_array_size(wanted))
        ctr_net_set(d, c, endpoint_settings(vn, c, wanted));
      json_decref(wanted);
    }
    vd_ctr_unref(d, c);
  }
  free(ctrs);
}

int vd_net_init(vd_daemon *d, const char *bridge, vs_error **err) {
  vd_net *vn = vs_malloc0(sizeof(*vn));
  pthread_mutex_init(&vn->lock, NULL);
  d->net = vn;
  vn->d = d;
  vn->dir = vs_asprintf("%s/network", d->data_root);
  vn->meta_path = vs_asprintf("%s/networks.json", vn->dir);
  vn->netns_dir = vs_asprintf("%s/netns", d->exec_root);
  if (!bridge || !*bridge)
    bridge = VD_DEFAULT_BRIDGE;
  vn->default_bridge = strcmp(bridge, "none") ? vs_strdup(bridge) : NULL;
  if (vs_mkdir_p(vn->netns_dir, 0700, err) < 0)
    return -1;
  vn->ctx = net_open(vn->dir, err);
  if (!vn->ctx)
    return vs_error_wrap(err, "open the network state");
  struct stat st;
  if (stat(vn->meta_path, &st) == 0) {
    vn->meta = vs_json_load_file(vn->meta_path, META_MAX, err);
    if (!vn->meta || !json_is_object(meta_networks(vn))) {
      if (vn->meta)
        net_fail(err, EINVAL, "%s: no \"networks\" object", vn->meta_path);
      return vs_error_wrap(err, "network metadata");
    }
  } else {
    vn->meta = json_pack("{s:{}}", "networks");
  }
  _cleanup_json_ json_t *state = net_state_json(vn->ctx);
  bool any = json_array_size(json_object_get(state, "networks")) > 0;
  pthread_mutex_lock(&vn->lock);
  int r = 0;
  /* with nothing in the state, nothing of ours is in the kernel: leave the namespace alone */
  if (any)
    r = net_restore(vn->ctx, err);
  if (r == 0)
    r = reconcile(d, err);
  if (r == 0)
    r = ensure_predefined(d, err);
  if (r == 0)
    recover_containers(d);
  _cleanup_json_ json_t *st2 = net_state_json(vn->ctx);
  size_t i;
  json_t *n;
  json_array_foreach(json_object_get(st2, "networks"), i, n) {
    const char *name = json_string_value(json_object_get(n, "name"));
    bool open = false;
    for (vn_server *s = vn->servers; s; s = s->next)
      open = open || (s->network && !strcmp(s->network, name));
    if (!open)
      servers_open(d, name);
  }
  pthread_mutex_unlock(&vn->lock);
  return r < 0 ? vs_error_wrap(err, "networks") : 0;
}

void vd_net_free(vd_daemon *d) {
  vd_net *vn = d->net;
  if (!vn)
    return;
  while (vn->servers) {
    vn_server *s = vn->servers;
    vn->servers = s->next;
    server_close(d, s);
    free(s);
  }
  if (vn->ctx)
    net_close(vn->ctx);
  json_decref(vn->meta);
  if (vn->vx_peers)
    json_decref(vn->vx_peers);
  if (vn->made_ms)
    json_decref(vn->made_ms);
  free(vn->dir);
  free(vn->meta_path);
  free(vn->netns_dir);
  free(vn->default_bridge);
  pthread_mutex_destroy(&vn->lock);
  free(vn);
  d->net = NULL;
}
