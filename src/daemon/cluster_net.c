/* Networks across the nodes of a cluster (docs/cluster.md, "Networks across hosts").
 *
 * A network made while in a cluster is the cluster's: its record /vessel/networks/NAME holds
 * the subnet, the gateway, the MTU and a VNI (claimed under /vessel/netvnis/VNI in the same
 * transaction, so two networks never share one). Every node's network pass makes each record's
 * network on that node (networks.c: the bridge with the gateway address, as on every other node,
 * and a VXLAN device on it whose flooding peers are the --advertise addresses of the other nodes
 * that have the network) and
 * removes the networks whose records went.
 *
 * Each node that has made a network says so, /vessel/netnodes/NAME/NODE under its own lease
 * (written and deleted by its pass, gone with the node): a network's VXLAN device floods to the
 * nodes that have the network, not to every node, and follows that set as it changes.
 *
 * Addresses are claimed in etcd, /vessel/netaddrs/NAME/IP = {Node, Id, Names, At}, by a
 * create-only transaction before the endpoint is made: of two nodes that want one address, one
 * gets it. The claim names its endpoint (a container's id, a VM's name): a VM that moves to
 * another node (migration, failover) keeps its claim, and so its address and MAC, and the
 * node it lands on takes the claim over. The other nodes' DNS servers answer the claims' Names.
 *
 * The pass runs at every change under /vessel/net (networks, VNIs, claims) and at least every
 * 2 s (the nodes' records, for the peers): read everything, apply it here, then make the
 * claims agree with this node's endpoints (one missing is written again; one of this node's
 * whose endpoint is gone, after a grace for attaches under way, is deleted).
 */
#include "daemon/internal.h"
#include "daemon/vms.h"

#include <arpa/inet.h>
#include <errno.h>
#include <string.h>
#include <time.h>

#define NETS "/vessel/networks/"
#define VNIS "/vessel/netvnis/"
#define ADDRS "/vessel/netaddrs/"
#define HOLDERS "/vessel/netnodes/" /* NAME/NODE: the node has made the network (its lease) */
#define NET_WATCH "/vessel/net"     /* the four above */
#define NODES "/vessel/nodes/"
#define VNI_FIRST 4096
#define PASS_MS 2000
#define CLAIM_GRACE_MS 30000 /* a claim of this node without its endpoint yet is left this long */

static const char *str(const json_t *o, const char *f) {
  return json_string_value(json_object_get(o, f));
}

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static json_t *kv_json(const vc_kv *kv) {
  json_t *j = json_loadb(kv->value, kv->value_len, JSON_REJECT_DUPLICATES, NULL);
  if (j && !json_is_object(j)) {
    json_decref(j);
    j = NULL;
  }
  return j;
}

int vd_cnet_overlay_mtu(vd_daemon *d, unsigned *mtu, vs_error **err) {
  unsigned up = 0;
  if (net_uplink_mtu(d->cluster.advertise, &up, err) < 0)
    return vs_error_wrap(err, "the overlay's MTU (--advertise %s)", d->cluster.advertise);
  if (up < 68 + NET_VXLAN_OVERHEAD)
    return vs_error_set(err, EINVAL, "the uplink's MTU %u is too small for an overlay", up);
  *mtu = up - NET_VXLAN_OVERHEAD;
  return 0;
}

void vd_cnet_kick(vd_daemon *d) {
  vd_cluster *cl = &d->cluster;
  pthread_mutex_lock(&cl->lock);
  cl->net_dirty = true; /* seen when the watch under way ends (at most PASS_MS) */
  pthread_mutex_unlock(&cl->lock);
}

/* ------------------------------------------------------------------ records */

static bool cidr_of(const char *s, uint32_t *net, unsigned *prefix) {
  char buf[INET_ADDRSTRLEN + 4];
  if (!s || strlen(s) >= sizeof(buf))
    return false;
  snprintf(buf, sizeof(buf), "%s", s);
  char *slash = strchr(buf, '/');
  if (!slash)
    return false;
  *slash = '\0';
  char *end;
  unsigned long p = strtoul(slash + 1, &end, 10);
  struct in_addr a;
  if (*end || p > 32 || inet_pton(AF_INET, buf, &a) != 1)
    return false;
  *net = ntohl(a.s_addr);
  *prefix = (unsigned)p;
  return true;
}

static uint32_t mask_of(unsigned prefix) { return prefix ? ~0U << (32 - prefix) : 0; }

/* Whether two CIDRs overlap (the shorter prefix decides). */
static bool overlaps(const char *a, const char *b) {
  uint32_t na, nb;
  unsigned pa, pb;
  if (!cidr_of(a, &na, &pa) || !cidr_of(b, &nb, &pb))
    return false;
  uint32_t m = mask_of(pa < pb ? pa : pb);
  return (na & m) == (nb & m);
}

/* The lowest VNI from VNI_FIRST that no network holds. */
static uint32_t free_vni(const vc_range *vnis) {
  for (uint32_t v = VNI_FIRST;; v++) {
    char key[64];
    snprintf(key, sizeof(key), VNIS "%u", v);
    bool used = false;
    for (size_t i = 0; i < vnis->n && !used; i++)
      used = !strcmp(vnis->kvs[i].key, key);
    if (!used)
      return v;
  }
}

int vd_cnet_publish(vd_daemon *d, json_t *rec, int64_t *revision, vs_error **err) {
  vc_etcd *e = d->cluster.etcd;
  const char *name = str(rec, "Name");
  _cleanup_free_ char *key = vs_asprintf(NETS "%s", name);
  for (int attempt = 0; attempt < 16; attempt++) {
    vc_range nets, vnis;
    if (vc_etcd_get_prefix(e, NETS, 0, &nets, err) < 0)
      return vs_error_wrap(err, "network %s: the cluster's networks", name);
    for (size_t i = 0; i < nets.n; i++) {
      _cleanup_json_ json_t *other = kv_json(&nets.kvs[i]);
      const char *oname = str(other, "Name");
      int code = oname && !strcmp(oname, name)                        ? EEXIST
                 : overlaps(str(other, "Subnet"), str(rec, "Subnet")) ? EADDRINUSE
                                                                      : 0;
      if (code) {
        vs_error_set(err, 0,
                     code == EEXIST ? "network with name %s already exists in the cluster"
                                    : "network %s: subnet %s overlaps network %s of the cluster",
                     name, str(rec, "Subnet"), oname ? oname : "?");
        if (err && *err)
          (*err)->errnum = code == EEXIST ? EEXIST : EINVAL;
        vc_range_clear(&nets);
        return -1;
      }
    }
    vc_range_clear(&nets);
    if (vc_etcd_get_prefix(e, VNIS, 0, &vnis, err) < 0)
      return vs_error_wrap(err, "network %s: the cluster's VNIs", name);
    uint32_t vni = free_vni(&vnis);
    vc_range_clear(&vnis);
    json_object_set_new(rec, "Vni", json_integer(vni));
    json_object_set_new(rec, "Port", json_integer(NET_VXLAN_PORT));
    _cleanup_free_ char *doc = json_dumps(rec, JSON_COMPACT | JSON_SORT_KEYS);
    _cleanup_free_ char *vkey = vs_asprintf(VNIS "%u", vni);
    vc_put puts[2] = {{.key = key, .value = doc, .len = strlen(doc)},
                      {.key = vkey, .value = name, .len = strlen(name)}};
    bool ok = false;
    if (vc_etcd_put_all_if(e, puts, 2, &ok, revision, err) < 0)
      return vs_error_wrap(err, "network %s: write its record", name);
    if (ok) {
      vs_log_info("network %s is the cluster's: VNI %u, MTU %lld", name, vni,
                  (long long)json_integer_value(json_object_get(rec, "Mtu")));
      return 0;
    }
    /* another node took the name or the VNI meanwhile: read again */
  }
  return vs_error_set(err, EAGAIN, "network %s: the cluster's networks kept changing", name);
}

/* The claims of one network, {ip: {Node, Id, Names, At, Revision}}. */
static json_t *claims_of(vc_etcd *e, const char *network, vs_error **err) {
  _cleanup_free_ char *prefix = vs_asprintf(ADDRS "%s/", network);
  vc_range r;
  if (vc_etcd_get_prefix(e, prefix, 0, &r, err) < 0)
    return NULL;
  json_t *out = json_object();
  for (size_t i = 0; i < r.n; i++) {
    json_t *c = kv_json(&r.kvs[i]);
    if (!c)
      continue;
    json_object_set_new(c, "Revision", json_integer(r.kvs[i].mod_revision));
    json_object_set_new(out, r.kvs[i].key + strlen(prefix), c);
  }
  vc_range_clear(&r);
  return out;
}

int vd_cnet_unpublish(vd_daemon *d, const char *network, vs_error **err) {
  vd_cluster *cl = &d->cluster;
  _cleanup_json_ json_t *claims = claims_of(cl->etcd, network, err);
  if (!claims)
    return vs_error_wrap(err, "network %s", network);
  /* claims of nodes that are down or gone do not hold the network: such a node removes its
   * copy when its guests have left it */
  vc_range nodes;
  if (vc_etcd_get_prefix(cl->etcd, NODES, 0, &nodes, err) < 0)
    return vs_error_wrap(err, "network %s", network);
  _cleanup_json_ json_t *up = json_object();
  for (size_t i = 0; i < nodes.n; i++)
    json_object_set_new(up, nodes.kvs[i].key + strlen(NODES), json_true());
  vc_range_clear(&nodes);
  const char *ip;
  json_t *c;
  json_object_foreach(claims, ip, c) {
    if (str(c, "Node") && strcmp(str(c, "Node"), cl->node_name) != 0 &&
        json_object_get(up, str(c, "Node"))) {
      vs_error_set(err, 0,
                   "error while removing network: network %s has active endpoints on node %s "
                   "(%s: %.12s)",
                   network, str(c, "Node"), ip, str(c, "Id") ? str(c, "Id") : "?");
      if (err && *err)
        (*err)->errnum = EBUSY;
      return -1;
    }
  }
  _cleanup_free_ char *key = vs_asprintf(NETS "%s", network);
  vc_range r;
  if (vc_etcd_get(cl->etcd, key, &r, err) < 0)
    return vs_error_wrap(err, "network %s", network);
  _cleanup_json_ json_t *rec = r.n ? kv_json(&r.kvs[0]) : NULL;
  vc_range_clear(&r);
  _cleanup_free_ char *vkey =
      vs_asprintf(VNIS "%lld", (long long)json_integer_value(json_object_get(rec, "Vni")));
  _cleanup_free_ char *akey = vs_asprintf(ADDRS "%s/", network);
  _cleanup_free_ char *hkey = vs_asprintf(HOLDERS "%s/", network);
  if (vc_etcd_delete(cl->etcd, key, false, NULL, err) < 0 ||
      (rec && vc_etcd_delete(cl->etcd, vkey, false, NULL, err) < 0) ||
      vc_etcd_delete(cl->etcd, akey, true, NULL, err) < 0 ||
      vc_etcd_delete(cl->etcd, hkey, true, NULL, err) < 0)
    return vs_error_wrap(err, "network %s: remove it from the cluster", network);
  return 0;
}

/* ------------------------------------------------------------------ addresses */

static char *claim_doc(vd_cluster *cl, const char *id, const char *const *names, size_t n) {
  json_t *nm = json_array();
  for (size_t i = 0; i < n; i++)
    json_array_append_new(nm, json_string(names[i]));
  _cleanup_json_ json_t *c = json_pack("{s:s, s:s, s:o, s:I}", "Node", cl->node_name, "Id", id,
                                       "Names", nm, "At", (json_int_t)now_ms());
  return json_dumps(c, JSON_COMPACT | JSON_SORT_KEYS);
}

static int claim_put(vd_cluster *cl, const char *network, const char *ip, const char *doc,
                     int64_t expected, bool *ok, vs_error **err) {
  _cleanup_free_ char *key = vs_asprintf(ADDRS "%s/%s", network, ip);
  return vc_etcd_put_if(cl->etcd, key, doc, strlen(doc), 0, expected, ok, NULL, NULL, err);
}

/* The network's subnet and gateway from its record. */
static int network_range(vd_cluster *cl, const char *network, uint32_t *first, uint32_t *last,
                         uint32_t *gateway, vs_error **err) {
  _cleanup_free_ char *key = vs_asprintf(NETS "%s", network);
  vc_range r;
  if (vc_etcd_get(cl->etcd, key, &r, err) < 0)
    return -1;
  _cleanup_json_ json_t *rec = r.n ? kv_json(&r.kvs[0]) : NULL;
  vc_range_clear(&r);
  if (!rec)
    return vs_error_set(err, ENOENT, "network %s is not in the cluster (removed?)", network);
  uint32_t net, range;
  unsigned prefix, range_prefix;
  struct in_addr gw;
  if (!cidr_of(str(rec, "Subnet"), &net, &prefix) || prefix > 30 ||
      inet_pton(AF_INET, str(rec, "Gateway") ? str(rec, "Gateway") : "", &gw) != 1)
    return vs_error_set(err, EINVAL, "the cluster's record of network %s is damaged", network);
  if (!cidr_of(str(rec, "IPRange"), &range, &range_prefix)) {
    range = net;
    range_prefix = prefix;
  }
  *first = range + 1;
  *last = (range | ~mask_of(range_prefix)) - 1;
  uint32_t bcast = net | ~mask_of(prefix);
  if (*first <= net)
    *first = net + 1;
  if (*last >= bcast)
    *last = bcast - 1;
  *gateway = ntohl(gw.s_addr);
  return 0;
}

int vd_cnet_claim(vd_daemon *d, const char *network, const char *id, const char *want,
                  const char *const *names, size_t n_names, char ip[INET_ADDRSTRLEN],
                  vs_error **err) {
  vd_cluster *cl = &d->cluster;
  _cleanup_free_ char *doc = claim_doc(cl, id, names, n_names);
  for (int attempt = 0; attempt < 8; attempt++) {
    _cleanup_json_ json_t *claims = claims_of(cl->etcd, network, err);
    if (!claims)
      return vs_error_wrap(err, "claim an address on network %s", network);
    const char *cip;
    json_t *c;
    bool ok = false, own = false;
    json_object_foreach(claims, cip, c) {
      if (!str(c, "Id") || strcmp(str(c, "Id"), id) != 0)
        continue;
      /* the endpoint's own claim: a VM that moved here keeps its address */
      own = true;
      if (claim_put(cl, network, cip, doc, json_integer_value(json_object_get(c, "Revision")), &ok,
                    err) < 0)
        return vs_error_wrap(err, "claim an address on network %s", network);
      if (ok) {
        snprintf(ip, INET_ADDRSTRLEN, "%s", cip);
        return 0;
      }
      break;
    }
    if (own)
      continue; /* it changed meanwhile: read again */
    if (want) {
      if (claim_put(cl, network, want, doc, 0, &ok, err) < 0)
        return vs_error_wrap(err, "claim %s on network %s", want, network);
      if (!ok) {
        json_t *o = json_object_get(claims, want);
        vs_error_set(err, 0, "address %s is already in use on network %s (node %s)", want, network,
                     o && str(o, "Node") ? str(o, "Node") : "?");
        if (err && *err)
          (*err)->errnum = EADDRINUSE;
        return -1;
      }
      snprintf(ip, INET_ADDRSTRLEN, "%s", want);
      return 0;
    }
    uint32_t first, last, gateway;
    if (network_range(cl, network, &first, &last, &gateway, err) < 0)
      return vs_error_wrap(err, "claim an address on network %s", network);
    bool tried = false;
    for (uint32_t a = first; a <= last && a >= first && !tried; a++) {
      char buf[INET_ADDRSTRLEN];
      struct in_addr in = {.s_addr = htonl(a)};
      inet_ntop(AF_INET, &in, buf, sizeof(buf));
      if (a == gateway || json_object_get(claims, buf))
        continue;
      tried = true;
      if (claim_put(cl, network, buf, doc, 0, &ok, err) < 0)
        return vs_error_wrap(err, "claim %s on network %s", buf, network);
      if (ok) {
        snprintf(ip, INET_ADDRSTRLEN, "%s", buf);
        return 0;
      }
      /* another node took it a moment ago: read the claims again */
    }
    if (!tried) {
      vs_error_set(err, 0, "network %s has no free address left in the cluster", network);
      if (err && *err)
        (*err)->errnum = EADDRNOTAVAIL;
      return -1;
    }
  }
  return vs_error_set(err, EAGAIN, "claim an address on network %s: the claims kept changing",
                      network);
}

void vd_cnet_release(vd_daemon *d, const char *network, const char *id) {
  vd_cluster *cl = &d->cluster;
  vs_error *e = NULL;
  _cleanup_json_ json_t *claims = claims_of(cl->etcd, network, &e);
  const char *ip;
  json_t *c;
  json_object_foreach(claims, ip, c) {
    if (!str(c, "Id") || strcmp(str(c, "Id"), id) != 0 || !str(c, "Node") ||
        strcmp(str(c, "Node"), cl->node_name) != 0)
      continue; /* another node's now (the VM moved there): not ours to give back */
    _cleanup_free_ char *key = vs_asprintf(ADDRS "%s/%s", network, ip);
    bool ok;
    if (vc_etcd_delete_if(cl->etcd, key, json_integer_value(json_object_get(c, "Revision")), &ok,
                          &e) < 0)
      break;
  }
  if (e) {
    vs_log_warn("network %s: give back the address of %.12s: %s (the network pass will)", network,
                id, e->msg);
    vs_error_free(e);
  }
}

/* ------------------------------------------------------------------ the pass */

typedef struct cnet_view {
  json_t *records; /* {name: record + Revision} */
  int64_t revision;
  json_t *peers;  /* {network: [address]}: the other nodes that have made it */
  json_t *held;   /* {network: {Lease, Revision}}: this node's keys under HOLDERS */
  json_t *claims; /* {network: {ip: claim}} */
} cnet_view;

static void view_clear(cnet_view *v) {
  json_decref(v->records);
  json_decref(v->peers);
  json_decref(v->held);
  json_decref(v->claims);
  memset(v, 0, sizeof(*v));
}

/* {node: address} of the nodes registered (their lease alive), this one left out. */
static json_t *node_addresses(vd_cluster *cl, const vc_range *nodes) {
  json_t *out = json_object();
  for (size_t i = 0; i < nodes->n; i++) {
    _cleanup_json_ json_t *n = kv_json(&nodes->kvs[i]);
    const char *addr = str(n, "Address"), *name = nodes->kvs[i].key + strlen(NODES);
    struct in_addr a;
    if (addr && inet_pton(AF_INET, addr, &a) == 1 && strcmp(name, cl->node_name) != 0)
      json_object_set_new(out, name, json_string(addr));
  }
  return out;
}

/* The node of a key HOLDERS NET/NODE, and NET in net; NULL for a key not of that form. */
static const char *holder_of(const char *key, char *net, size_t size) {
  const char *rest = key + strlen(HOLDERS), *slash = strchr(rest, '/');
  if (!slash || (size_t)(slash - rest) >= size || !slash[1])
    return NULL;
  snprintf(net, size, "%.*s", (int)(slash - rest), rest);
  return slash + 1;
}

/* peers[net] gets addr (a node that has the network; NULL: one not registered, left out). */
static void add_peer(json_t *peers, const char *net, const json_t *addr) {
  if (!json_is_string(addr))
    return;
  json_t *list = json_object_get(peers, net);
  if (!list) {
    list = json_array();
    json_object_set_new(peers, net, list);
  }
  json_array_append(list, (json_t *)addr);
}

static int view_read(vd_cluster *cl, cnet_view *v, vs_error **err) {
  vc_range nets, nodes, addrs;
  if (vc_etcd_get_prefix(cl->etcd, NETS, 0, &nets, err) < 0)
    return -1;
  v->records = json_object();
  v->revision = nets.revision;
  for (size_t i = 0; i < nets.n; i++) {
    json_t *rec = kv_json(&nets.kvs[i]);
    if (!rec)
      continue;
    json_object_set_new(rec, "Revision", json_integer(nets.kvs[i].mod_revision));
    json_object_set_new(v->records, nets.kvs[i].key + strlen(NETS), rec);
  }
  vc_range_clear(&nets);
  vc_range holders;
  if (vc_etcd_get_prefix(cl->etcd, NODES, 0, &nodes, err) < 0)
    return -1;
  _cleanup_json_ json_t *addrs_of = node_addresses(cl, &nodes);
  vc_range_clear(&nodes);
  if (vc_etcd_get_prefix(cl->etcd, HOLDERS, 0, &holders, err) < 0)
    return -1;
  v->peers = json_object();
  v->held = json_object();
  for (size_t i = 0; i < holders.n; i++) {
    char net[256];
    const char *node = holder_of(holders.kvs[i].key, net, sizeof(net));
    if (!node)
      continue;
    if (!strcmp(node, cl->node_name)) {
      _cleanup_json_ json_t *h = kv_json(&holders.kvs[i]);
      json_object_set_new(v->held, net,
                          json_pack("{s:I, s:I}", "Lease",
                                    json_integer_value(json_object_get(h, "Lease")), "Revision",
                                    (json_int_t)holders.kvs[i].mod_revision));
      continue;
    }
    add_peer(v->peers, net, json_object_get(addrs_of, node));
  }
  vc_range_clear(&holders);
  if (vc_etcd_get_prefix(cl->etcd, ADDRS, 0, &addrs, err) < 0)
    return -1;
  v->claims = json_object();
  for (size_t i = 0; i < addrs.n; i++) {
    const char *rest = addrs.kvs[i].key + strlen(ADDRS);
    const char *slash = strchr(rest, '/');
    char net[256]; /* a network's name is at most 64 bytes */
    if (!slash || (size_t)(slash - rest) >= sizeof(net))
      continue;
    json_t *c = kv_json(&addrs.kvs[i]);
    if (!c)
      continue;
    snprintf(net, sizeof(net), "%.*s", (int)(slash - rest), rest);
    json_t *per = json_object_get(v->claims, net);
    if (!per) {
      per = json_object();
      json_object_set_new(v->claims, net, per);
    }
    json_object_set_new(c, "Revision", json_integer(addrs.kvs[i].mod_revision));
    json_object_set_new(per, slash + 1, c);
  }
  vc_range_clear(&addrs);
  return 0;
}

/* The claims of other nodes, per network, as [{Ip, Names}] for the DNS servers. */
static json_t *remote_names(vd_cluster *cl, json_t *claims) {
  json_t *out = json_object();
  const char *net, *ip;
  json_t *per, *c;
  json_object_foreach(claims, net, per) {
    json_t *list = json_array();
    json_object_foreach(per, ip, c) {
      if (str(c, "Node") && strcmp(str(c, "Node"), cl->node_name) != 0)
        json_array_append_new(
            list, json_pack("{s:s, s:O?}", "Ip", ip, "Names", json_object_get(c, "Names")));
    }
    json_object_set_new(out, net, list);
  }
  return out;
}

static bool has_endpoint(json_t *eps, const char *network, const char *id) {
  size_t i;
  json_t *ep;
  json_array_foreach(eps, i, ep) {
    if (!strcmp(str(ep, "Network"), network) && !strcmp(str(ep, "Id"), id))
      return true;
  }
  return false;
}

/* Make the claims agree with this node's endpoints: an endpoint without a claim (its claim was
 * given back by a node its VM left after a failed migration, or etcd lost a write) claims its
 * address again; a claim of this node without its endpoint (a release that failed) goes once
 * it is older than the grace of an attach under way. Never takes another node's claim over:
 * that is the attach's to do (vd_cnet_claim), or two nodes would take turns. */
static void claims_converge(vd_cluster *cl, json_t *claims, json_t *eps) {
  size_t i;
  json_t *ep;
  json_array_foreach(eps, i, ep) {
    const char *net = str(ep, "Network"), *ip = str(ep, "Ip"), *id = str(ep, "Id");
    json_t *c = json_object_get(json_object_get(claims, net), ip);
    if (c) {
      if (str(c, "Id") && strcmp(str(c, "Id"), id) != 0)
        vs_log_warn("network %s: %s of %.12s here is claimed by %.12s on node %s", net, ip, id,
                    str(c, "Id"), str(c, "Node") ? str(c, "Node") : "?");
      continue;
    }
    json_t *names = json_object_get(ep, "Names");
    size_t n = json_array_size(names);
    _cleanup_free_ const char **nv = vs_malloc0((n + 1) * sizeof(char *));
    for (size_t k = 0; k < n; k++)
      nv[k] = json_string_value(json_array_get(names, k));
    _cleanup_free_ char *doc = claim_doc(cl, id, nv, n);
    bool ok;
    vs_error *e = NULL;
    if (claim_put(cl, net, ip, doc, 0, &ok, &e) < 0) {
      vs_log_warn("network %s: claim %s again: %s", net, ip, e->msg);
      vs_error_free(e);
    }
  }
  const char *net, *ip;
  json_t *per, *c;
  int64_t now = now_ms();
  json_object_foreach(claims, net, per) {
    json_object_foreach(per, ip, c) {
      if (!str(c, "Node") || strcmp(str(c, "Node"), cl->node_name) != 0 || !str(c, "Id") ||
          has_endpoint(eps, net, str(c, "Id")) ||
          now - json_integer_value(json_object_get(c, "At")) < CLAIM_GRACE_MS)
        continue;
      _cleanup_free_ char *key = vs_asprintf(ADDRS "%s/%s", net, ip);
      bool ok;
      vs_error *e = NULL;
      if (vc_etcd_delete_if(cl->etcd, key, json_integer_value(json_object_get(c, "Revision")), &ok,
                            &e) < 0) {
        vs_log_warn("network %s: give back %s: %s", net, ip, e->msg);
        vs_error_free(e);
      }
    }
  }
}

/* ------------------------------------------------------------------ made where needed */

json_t *vd_cnet_record(vd_daemon *d, const char *name, json_t **peers, json_t **names) {
  vd_cluster *cl = &d->cluster;
  *peers = *names = NULL;
  if (!vd_vm_name_valid(name))
    return NULL;
  _cleanup_free_ char *key = vs_asprintf(NETS "%s", name);
  int64_t rev = 0;
  json_t *rec = vd_cache_get(cl, key, &rev);
  if (!rec)
    return NULL;
  json_object_set_new(rec, "Revision", json_integer(rev));
  *peers = json_array();
  vc_range r;
  _cleanup_json_ json_t *addrs_of = NULL;
  if (vd_cache_range(cl, NODES, &r)) {
    addrs_of = node_addresses(cl, &r);
    vc_range_clear(&r);
  }
  /* the nodes that have made it (this one has not yet: it says so at its pass) */
  _cleanup_free_ char *hprefix = vs_asprintf(HOLDERS "%s/", name);
  if (addrs_of && vd_cache_range(cl, hprefix, &r)) {
    for (size_t i = 0; i < r.n; i++) {
      const json_t *addr = json_object_get(addrs_of, r.kvs[i].key + strlen(hprefix));
      if (json_is_string(addr))
        json_array_append(*peers, (json_t *)addr);
    }
    vc_range_clear(&r);
  }
  *names = json_array();
  _cleanup_free_ char *prefix = vs_asprintf(ADDRS "%s/", name);
  if (vd_cache_range(cl, prefix, &r)) {
    for (size_t i = 0; i < r.n; i++) {
      _cleanup_json_ json_t *c = kv_json(&r.kvs[i]);
      if (c && str(c, "Node") && strcmp(str(c, "Node"), cl->node_name) != 0)
        json_array_append_new(*names, json_pack("{s:s, s:O?}", "Ip", r.kvs[i].key + strlen(prefix),
                                                "Names", json_object_get(c, "Names")));
    }
    vc_range_clear(&r);
  }
  return rec;
}

/* Mark name (or the record whose Id is it) wanted. */
static void want(json_t *wanted, json_t *records, const char *name) {
  if (!name)
    return;
  if (json_object_get(records, name)) {
    json_object_set_new(wanted, name, json_true());
    return;
  }
  const char *n;
  json_t *rec;
  json_object_foreach(records, n, rec) {
    if (str(rec, "Id") && !strcmp(str(rec, "Id"), name))
      json_object_set_new(wanted, n, json_true());
  }
}

/* The networks of the cluster this node needs ({name: true}): those its endpoints are on, those
 * its containers name (running or not: a start attaches them), and those of the guests of the
 * cluster placed on it or migrating to it (a VM's Network, before its tap exists). */
static json_t *wanted_here(vd_daemon *d, json_t *records, json_t *eps) {
  vd_cluster *cl = &d->cluster;
  json_t *wanted = json_object();
  size_t i;
  json_t *ep;
  json_array_foreach(eps, i, ep) want(wanted, records, str(ep, "Network"));
  pthread_mutex_lock(&d->lock);
  for (size_t k = 0; k < d->n_ctrs; k++) {
    json_t *rec = d->ctrs[k]->rec;
    want(wanted, records,
         json_string_value(json_object_get(json_object_get(rec, "HostConfig"), "NetworkMode")));
    const char *key;
    json_t *cfg;
    json_object_foreach(
        json_object_get(json_object_get(rec, "NetworkingConfig"), "EndpointsConfig"), key, cfg)
        want(wanted, records, key);
  }
  pthread_mutex_unlock(&d->lock);
  vc_range g;
  if (!vd_cache_range(cl, "/vessel/guests/", &g))
    return wanted;
  for (size_t k = 0; k < g.n; k++) {
    _cleanup_json_ json_t *rec = kv_json(&g.kvs[k]);
    const char *phase = str(rec, "Phase");
    bool mine = str(rec, "Node") && !strcmp(str(rec, "Node"), cl->node_name);
    if (!phase || !strcmp(phase, "refused") || !strcmp(phase, "failed") ||
        !(mine || vd_cluster_migrating_to(rec, cl->node_name)))
      continue;
    want(wanted, records, str(json_object_get(rec, "Spec"), "Network"));
  }
  vc_range_clear(&g);
  return wanted;
}

/* Make this node's keys under HOLDERS say which networks of the cluster it has made: one for
 * each (written again under the current lease after the node registered anew), none for a
 * network it removed. The other nodes flood to it for those networks alone. */
static void holders_converge(vd_daemon *d, json_t *records, json_t *held) {
  vd_cluster *cl = &d->cluster;
  int64_t lease = vd_cluster_lease(cl);
  _cleanup_json_ json_t *made = vd_net_cluster_made(d);
  const char *net;
  json_t *h, *v;
  json_object_foreach(made, net, v) {
    h = json_object_get(held, net);
    if (!lease || !json_object_get(records, net) ||
        (h && json_integer_value(json_object_get(h, "Lease")) == lease))
      continue;
    _cleanup_free_ char *key = vs_asprintf(HOLDERS "%s/%s", net, cl->node_name);
    _cleanup_free_ char *doc =
        vs_asprintf("{\"Node\":\"%s\",\"Lease\":%lld}", cl->node_name, (long long)lease);
    vs_error *e = NULL;
    if (vc_etcd_put(cl->etcd, key, doc, strlen(doc), lease, NULL, &e) < 0) {
      vs_log_warn("network %s: say that node %s has it: %s", net, cl->node_name, e->msg);
      vs_error_free(e);
    }
  }
  json_object_foreach(held, net, h) {
    if (json_object_get(made, net))
      continue;
    _cleanup_free_ char *key = vs_asprintf(HOLDERS "%s/%s", net, cl->node_name);
    bool ok;
    vs_error *e = NULL;
    if (vc_etcd_delete_if(cl->etcd, key, json_integer_value(json_object_get(h, "Revision")), &ok,
                          &e) < 0) {
      vs_log_warn("network %s: say that node %s no longer has it: %s", net, cl->node_name, e->msg);
      vs_error_free(e);
    }
  }
}

static int net_pass(vd_daemon *d, int64_t *revision, vs_error **err) {
  vd_cluster *cl = &d->cluster;
  cnet_view v = {0};
  if (view_read(cl, &v, err) < 0) {
    view_clear(&v);
    return -1;
  }
  *revision = v.revision;
  _cleanup_json_ json_t *names = remote_names(cl, v.claims);
  _cleanup_json_ json_t *before = vd_net_cluster_endpoints(d);
  _cleanup_json_ json_t *wanted = wanted_here(d, v.records, before);
  vd_net_cluster_apply(d, v.records, v.revision, v.peers, names, wanted);
  _cleanup_json_ json_t *eps = vd_net_cluster_endpoints(d);
  claims_converge(cl, v.claims, eps);
  holders_converge(d, v.records, v.held);
  view_clear(&v);
  return 0;
}

static int on_net_change(void *arg, const vc_watch_msg *m) {
  (void)arg;
  return m->n > 0; /* a change: end the watch, run the pass */
}

/* Until a change under /vessel/net after revision, a kick, or PASS_MS. */
static void wait_change(vd_daemon *d, int64_t revision) {
  vd_cluster *cl = &d->cluster;
  pthread_mutex_lock(&cl->lock);
  bool kicked = cl->net_dirty;
  cl->net_dirty = false;
  pthread_mutex_unlock(&cl->lock);
  if (kicked)
    return;
  vs_error *e = NULL;
  if (vc_etcd_watch(cl->etcd, NET_WATCH, true, revision + 1, on_net_change, NULL, &cl->stop,
                    PASS_MS, &e) < 0) {
    vs_log_debug("cluster: networks: %s", e->msg);
    vs_error_free(e);
    vd_cluster_sleep(cl, 500);
  }
}

static void *net_thread(void *arg) {
  vd_daemon *d = arg;
  vd_cluster *cl = &d->cluster;
  while (!cl->stop) {
    int64_t rev = 0;
    vs_error *e = NULL;
    if (net_pass(d, &rev, &e) < 0) {
      vs_log_warn("cluster: networks: %s", e->msg);
      vs_error_free(e);
      vd_cluster_sleep(cl, 1000);
      continue;
    }
    wait_change(d, rev);
  }
  return NULL;
}

int vd_cluster_start_networks(vd_daemon *d, vs_error **err) {
  vd_cluster *cl = &d->cluster;
  return vd_cluster_thread_start(d, &cl->netter, net_thread, "the network pass", err);
}
