/* Networks and endpoints: the order of the kernel work, the state and the rules, and the way
 * back when a step fails. Every operation runs in the same order: check everything that can be
 * checked without the kernel, make the interfaces, put the change into the state, load the rules
 * built from that state, save it. A failure undoes the steps before it, so neither the kernel
 * nor net.json keeps half of an operation. */
#include <errno.h>
#include <string.h>

#include "net/internal.h"

static void nl_closep(nl_sock *s) { nl_close(s); }
#define _cleanup_nl_ _cleanup_(nl_closep)

static int ifname_must_be_free(nl_sock *s, const char *name, vs_error **err) {
  bool exists = false;
  if (nl_link_exists(s, name, &exists, err) < 0)
    return -1;
  if (exists)
    return vs_error_set(err, EEXIST, "interface %s already exists (vessel only uses what it makes)",
                        name);
  return 0;
}

/* Best effort: used on the way back from a failure, whose error is the one to report. */
static void link_delete_quietly(nl_sock *s, const char *name) {
  _cleanup_error_ vs_error *e = NULL;
  if (nl_link_delete(s, name, &e) < 0 && e->errnum != ENODEV)
    vs_log_warn("rollback: %s", e->msg);
}

static void nft_apply_quietly(const net_ctx *ctx) {
  _cleanup_error_ vs_error *e = NULL;
  if (net_nft_apply(ctx, &e) < 0)
    vs_log_warn("rollback: %s", e->msg);
}

/* Rules first, then the file: a ruleset the kernel refuses leaves the old file, and a file that
 * cannot be written gets the old rules back. */
static int commit_state(net_ctx *ctx, void (*undo)(net_ctx *, void *), void *arg, vs_error **err) {
  if (net_nft_apply(ctx, err) < 0) {
    undo(ctx, arg);
    return -1;
  }
  if (net_state_save(ctx, err) < 0) {
    undo(ctx, arg);
    nft_apply_quietly(ctx);
    return -1;
  }
  return 0;
}

/* ------------------------------------------------------------- bridges */

static int bridge_configure(nl_sock *s, const net_network *n, vs_error **err) {
  int index;
  if (nl_link_index(s, n->bridge, &index, err) < 0 ||
      nl_addr_add(s, index, n->gateway, n->prefix, err) < 0 || nl_link_set_up(s, index, err) < 0)
    return -1;
  /* Published ports on 127.0.0.1 are DNATed in output and leave through the bridge with a
   * loopback source, which the kernel drops as martian unless the bridge allows it. */
  _cleanup_free_ char *localnet =
      vs_asprintf("/proc/sys/net/ipv4/conf/%s/route_localnet", n->bridge);
  if (net_sysctl_enable(localnet, err) < 0)
    return -1;
  /* Guests reach other networks' hosts only through routing; Docker sets this as well. */
  if (!n->internal && net_sysctl_enable("/proc/sys/net/ipv4/ip_forward", err) < 0)
    return -1;
  return 0;
}

/* The gateway's MAC follows the endpoints' scheme (02:42 and the address), so it is stable across
 * restarts and differs from every endpoint's on the network. */
static int bridge_make(nl_sock *s, const net_network *n, vs_error **err) {
  uint8_t mac[6];
  net_default_mac(n->gateway, mac);
  if (ifname_must_be_free(s, n->bridge, err) < 0 ||
      nl_bridge_create(s, n->bridge, n->mtu, mac, err) < 0)
    return -1;
  if (bridge_configure(s, n, err) < 0) {
    link_delete_quietly(s, n->bridge);
    return -1;
  }
  return 0;
}

static void undo_network_add(net_ctx *ctx, void *arg) { net_ctx_remove_network(ctx, arg); }

int net_network_create(net_ctx *ctx, const net_network_opts *opts, vs_error **err) {
  net_network *n = net_network_from_opts(ctx, opts, err);
  if (!n)
    return -1;
  _cleanup_nl_ nl_sock s = {0};
  if (nl_open(&s, err) < 0 || bridge_make(&s, n, err) < 0) {
    net_network_free(n);
    return vs_error_wrap(err, "network %s", opts->name);
  }
  net_ctx_add_network(ctx, n);
  if (commit_state(ctx, undo_network_add, n, err) < 0) {
    link_delete_quietly(&s, n->bridge);
    net_network_free(n);
    return vs_error_wrap(err, "network %s", opts->name);
  }
  return 0;
}

static void undo_network_remove(net_ctx *ctx, void *arg) { net_ctx_add_network(ctx, arg); }

int net_network_remove(net_ctx *ctx, const char *name, vs_error **err) {
  net_network *n = net_find_network(ctx, name);
  if (!n)
    return vs_error_set(err, ENOENT, "network %s: no such network", name);
  if (n->n_eps > 0)
    return vs_error_set(err, EBUSY, "network %s: %zu endpoint%s still attached (first: %s)", name,
                        n->n_eps, n->n_eps == 1 ? " is" : "s are", n->eps[0]->id);
  net_ctx_remove_network(ctx, n);
  if (commit_state(ctx, undo_network_remove, n, err) < 0)
    return vs_error_wrap(err, "network %s", name);
  _cleanup_nl_ nl_sock s = {0};
  _cleanup_error_ vs_error *e = NULL;
  int r = 0;
  if (nl_open(&s, &e) < 0 || (nl_link_delete(&s, n->bridge, &e) < 0 && e->errnum != ENODEV))
    r = vs_error_set(err, e->errnum, "network %s removed, but its bridge remains: %s", name,
                     e->msg);
  net_network_free(n);
  return r;
}

/* ------------------------------------------------------------ endpoints */

int net_endpoint_set_aliases(net_endpoint *ep, const char *const *aliases, size_t n,
                             vs_error **err) {
  ep->aliases = vs_malloc0((n ? n : 1) * sizeof(char *));
  for (size_t i = 0; i < n; i++) {
    if (net_check_name(aliases[i], "alias", NET_ALIAS_MAX, err) < 0)
      return -1;
    ep->aliases[ep->n_aliases++] = vs_strdup(aliases[i]);
  }
  return 0;
}

int net_endpoint_set_dns_upstream(net_endpoint *ep, const char *upstream, vs_error **err) {
  if (!upstream)
    return 0;
  if (net_dns_parse_upstream(upstream, &ep->dns_upstream_sa, err) < 0)
    return -1;
  ep->dns_upstream = vs_strdup(upstream);
  return 0;
}

/* Everything about a new endpoint that needs no kernel: the network, the id, IPAM, MAC, ports. */
static net_endpoint *endpoint_prepare(net_ctx *ctx, const net_endpoint_opts *opts,
                                      net_endpoint_kind kind, net_network **net, vs_error **err) {
  if (net_check_name(opts->network, "network name", NET_NAME_MAX, err) < 0 ||
      net_check_name(opts->id, "endpoint id", NET_ID_MAX, err) < 0)
    return NULL;
  net_network *n = net_find_network(ctx, opts->network);
  if (!n) {
    vs_error_set(err, ENOENT, "network %s: no such network", opts->network);
    return NULL;
  }
  if (net_find_endpoint(n, opts->id, NULL)) {
    vs_error_set(err, EEXIST, "%s is already attached to network %s", opts->id, n->name);
    return NULL;
  }
  if (n->internal && opts->n_ports > 0) {
    vs_error_set(err, EINVAL, "network %s is internal: ports cannot be published on it", n->name);
    return NULL;
  }
  if (net_ports_check_free(ctx, opts->ports, opts->n_ports, err) < 0 ||
      net_ports_check_host(opts->ports, opts->n_ports, err) < 0)
    return NULL;
  uint32_t ip;
  if (net_ipam_allocate(n, opts->ip, &ip, err) < 0)
    return NULL;
  net_endpoint *ep = vs_malloc0(sizeof(*ep));
  ep->id = vs_strdup(opts->id);
  ep->kind = kind;
  ep->ip.s_addr = htonl(ip);
  if (opts->mac) {
    if (net_parse_mac(opts->mac, ep->mac, err) < 0) {
      net_endpoint_free(ep);
      return NULL;
    }
  } else {
    net_default_mac(ip, ep->mac);
  }
  ep->ports = vs_malloc0((opts->n_ports ? opts->n_ports : 1) * sizeof(*ep->ports));
  if (opts->n_ports)
    memcpy(ep->ports, opts->ports, opts->n_ports * sizeof(*ep->ports));
  ep->n_ports = opts->n_ports;
  if (net_endpoint_set_aliases(ep, opts->aliases, opts->n_aliases, err) < 0 ||
      net_endpoint_set_dns_upstream(ep, opts->dns_upstream, err) < 0) {
    net_endpoint_free(ep);
    return NULL;
  }
  *net = n;
  return ep;
}

static void endpoint_info_fill(const net_network *n, const net_endpoint *ep,
                               net_endpoint_info *info) {
  if (!info)
    return;
  info->ip = ep->ip;
  info->prefix = n->prefix;
  info->gateway.s_addr = htonl(n->gateway);
  memcpy(info->mac, ep->mac, 6);
  memcpy(info->host_ifname, ep->host_ifname, IFNAMSIZ);
}

static int attach_to_bridge(nl_sock *s, const net_network *n, const char *ifname, vs_error **err) {
  int index, bridge;
  if (nl_link_index(s, ifname, &index, err) < 0 || nl_link_index(s, n->bridge, &bridge, err) < 0 ||
      nl_link_set_master(s, index, bridge, err) < 0 || nl_link_set_up(s, index, err) < 0)
    return -1;
  return 0;
}

/* Inside the guest: address, up, default route, and loopback up (a fresh namespace has lo down,
 * and guests expect 127.0.0.1 to work). */
static int guest_side_configure(const net_network *n, const net_endpoint *ep,
                                const net_endpoint_opts *opts, const char *ifname, vs_error **err) {
  _cleanup_nl_ nl_sock g = {0};
  int index, lo;
  if (nl_open_in_netns(&g, opts->netns_fd, err) < 0 || nl_link_index(&g, ifname, &index, err) < 0 ||
      nl_addr_add(&g, index, ntohl(ep->ip.s_addr), n->prefix, err) < 0 ||
      nl_link_set_up(&g, index, err) < 0 ||
      (!opts->no_default_route && nl_route_add_default(&g, index, n->gateway, err) < 0) ||
      nl_link_index(&g, "lo", &lo, err) < 0 || nl_link_set_up(&g, lo, err) < 0)
    return vs_error_wrap(err, "in the guest's namespace");
  return 0;
}

typedef struct endpoint_undo {
  net_network *n;
  net_endpoint *ep;
} endpoint_undo;

static void undo_endpoint_add(net_ctx *ctx, void *arg) {
  endpoint_undo *u = arg;
  size_t index;
  if (net_find_endpoint(u->n, u->ep->id, &index))
    net_network_remove_endpoint(u->n, index);
}

/* The endpoint's interfaces exist: record it, load the rules, save. */
static int endpoint_commit(net_ctx *ctx, nl_sock *s, net_network *n, net_endpoint *ep,
                           net_endpoint_info *info, vs_error **err) {
  net_network_add_endpoint(n, ep);
  endpoint_undo u = {n, ep};
  if (commit_state(ctx, undo_endpoint_add, &u, err) < 0) {
    link_delete_quietly(s, ep->host_ifname);
    net_endpoint_free(ep);
    return -1;
  }
  endpoint_info_fill(n, ep, info);
  return 0;
}

int net_endpoint_attach_veth(net_ctx *ctx, const net_endpoint_opts *opts, net_endpoint_info *info,
                             vs_error **err) {
  const char *ifname = opts->ifname ? opts->ifname : "eth0";
  net_network *n = NULL;
  net_endpoint *ep = NULL;
  _cleanup_nl_ nl_sock s = {0};
  _cleanup_free_ char *key = NULL;
  if (opts->netns_fd < 0) {
    vs_error_set(err, EBADF, "the guest's network namespace is needed (an fd of /proc/PID/ns/net)");
    goto fail;
  }
  if (net_check_ifname(ifname, "interface name in the guest", err) < 0 ||
      !(ep = endpoint_prepare(ctx, opts, NET_ENDPOINT_VETH, &n, err)))
    goto fail;
  key = vs_asprintf("%s/%s", n->name, ep->id);
  net_derived_ifname("vsv-", key, ep->host_ifname);
  if (nl_open(&s, err) < 0 || ifname_must_be_free(&s, ep->host_ifname, err) < 0 ||
      nl_veth_create(&s, ep->host_ifname, ifname, opts->netns_fd, ep->mac, n->mtu, err) < 0)
    goto fail;
  /* From here on, deleting the host end takes the guest's end with it. */
  if (guest_side_configure(n, ep, opts, ifname, err) < 0 ||
      attach_to_bridge(&s, n, ep->host_ifname, err) < 0) {
    link_delete_quietly(&s, ep->host_ifname);
    goto fail;
  }
  if (endpoint_commit(ctx, &s, n, ep, info, err) < 0)
    return vs_error_wrap(err, "attach %s to network %s", opts->id, opts->network);
  return 0;
fail:
  net_endpoint_free(ep);
  return vs_error_wrap(err, "attach %s to network %s", opts->id ? opts->id : "",
                       opts->network ? opts->network : "");
}

int net_endpoint_attach_tap(net_ctx *ctx, const net_endpoint_opts *opts, net_endpoint_info *info,
                            vs_error **err) {
  net_network *n = NULL;
  net_endpoint *ep = NULL;
  _cleanup_nl_ nl_sock s = {0};
  int index;
  if (opts->tap_name && net_check_ifname(opts->tap_name, "tap name", err) < 0)
    goto fail;
  if (!(ep = endpoint_prepare(ctx, opts, NET_ENDPOINT_TAP, &n, err)))
    goto fail;
  if (opts->tap_name) {
    snprintf(ep->host_ifname, sizeof(ep->host_ifname), "%s", opts->tap_name);
  } else {
    _cleanup_free_ char *key = vs_asprintf("%s/%s", n->name, ep->id);
    net_derived_ifname("vstap-", key, ep->host_ifname);
  }
  /* TUNSETIFF on an existing tap would attach to it instead of making one: check first. */
  if (nl_open(&s, err) < 0 || ifname_must_be_free(&s, ep->host_ifname, err) < 0 ||
      tap_create_persistent(ep->host_ifname, err) < 0)
    goto fail;
  if (nl_link_index(&s, ep->host_ifname, &index, err) < 0 ||
      nl_link_set_mtu(&s, index, n->mtu, err) < 0 ||
      attach_to_bridge(&s, n, ep->host_ifname, err) < 0) {
    link_delete_quietly(&s, ep->host_ifname);
    goto fail;
  }
  if (endpoint_commit(ctx, &s, n, ep, info, err) < 0)
    return vs_error_wrap(err, "attach tap for %s to network %s", opts->id, opts->network);
  return 0;
fail:
  net_endpoint_free(ep);
  return vs_error_wrap(err, "attach tap for %s to network %s", opts->id ? opts->id : "",
                       opts->network ? opts->network : "");
}

/* A renamed container: its endpoints' alias `from` becomes `to` on every network, so the DNS
 * servers answer the new name at once (they read the aliases at each query). Only the state file
 * changes: no rule names an alias. */
int net_endpoint_rename_alias(net_ctx *ctx, const char *id, const char *from, const char *to,
                              vs_error **err) {
  if (net_check_name(to, "alias", NET_ALIAS_MAX, err) < 0)
    return -1;
  size_t changed = 0;
  for (size_t i = 0; i < ctx->n_nets; i++) {
    net_endpoint *ep = net_find_endpoint(ctx->nets[i], id, NULL);
    for (size_t k = 0; ep && k < ep->n_aliases; k++) {
      if (strcmp(ep->aliases[k], from) != 0)
        continue;
      free(ep->aliases[k]);
      ep->aliases[k] = vs_strdup(to);
      changed++;
    }
  }
  return changed ? net_state_save(ctx, err) : 0;
}

typedef struct endpoint_readd {
  net_network *n;
  net_endpoint *ep;
} endpoint_readd;

static void undo_endpoint_remove(net_ctx *ctx, void *arg) {
  endpoint_readd *u = arg;
  net_network_add_endpoint(u->n, u->ep);
}

int net_endpoint_detach(net_ctx *ctx, const char *network, const char *id, vs_error **err) {
  net_network *n = net_find_network(ctx, network);
  if (!n)
    return vs_error_set(err, ENOENT, "detach %s: network %s: no such network", id, network);
  size_t index;
  net_endpoint *ep = net_find_endpoint(n, id, &index);
  if (!ep)
    return vs_error_set(err, ENOENT, "detach %s: not attached to network %s", id, network);
  net_network_remove_endpoint(n, index);
  endpoint_readd u = {n, ep};
  if (commit_state(ctx, undo_endpoint_remove, &u, err) < 0)
    return vs_error_wrap(err, "detach %s from network %s", id, network);
  /* A veth whose guest namespace is gone has already disappeared with it: ENODEV is fine. */
  _cleanup_nl_ nl_sock s = {0};
  _cleanup_error_ vs_error *e = NULL;
  int r = 0;
  if (nl_open(&s, &e) < 0 || (nl_link_delete(&s, ep->host_ifname, &e) < 0 && e->errnum != ENODEV))
    r = vs_error_set(err, e->errnum, "detach %s from network %s: %s", id, network, e->msg);
  net_endpoint_free(ep);
  return r;
}

/* ------------------------------------------------------------- restore */

/* A tap is the VM's and outlives it (persistent): one that went missing is made again, so the
 * VM can attach to it. */
static int tap_remake(nl_sock *s, const net_network *n, const net_endpoint *ep, vs_error **err) {
  int index;
  if (tap_create_persistent(ep->host_ifname, err) < 0 ||
      nl_link_index(s, ep->host_ifname, &index, err) < 0 ||
      nl_link_set_mtu(s, index, n->mtu, err) < 0)
    return -1;
  vs_log_info("network %s: made tap %s of %s again", n->name, ep->host_ifname, ep->id);
  return 0;
}

/* Bring one endpoint back to what the state says. A veth whose host end is gone went with its
 * container's namespace: nothing can bring it back, so the endpoint is dropped and its address
 * and ports released (*dropped). An existing interface is put on the bridge again, which a
 * bridge made again needs. */
static int endpoint_restore(nl_sock *s, net_network *n, size_t index, bool *dropped,
                            vs_error **err) {
  net_endpoint *ep = n->eps[index];
  bool exists = false;
  *dropped = false;
  if (nl_link_exists(s, ep->host_ifname, &exists, err) < 0)
    return -1;
  if (!exists && ep->kind == NET_ENDPOINT_VETH) {
    char ip[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &ep->ip, ip, sizeof(ip));
    vs_log_info("network %s: %s's veth %s is gone (its namespace ended): released %s", n->name,
                ep->id, ep->host_ifname, ip);
    net_network_remove_endpoint(n, index);
    net_endpoint_free(ep);
    *dropped = true;
    return 0;
  }
  if (!exists && tap_remake(s, n, ep, err) < 0)
    return -1;
  return attach_to_bridge(s, n, ep->host_ifname, err);
}

static int network_restore(nl_sock *s, net_network *n, bool *changed, vs_error **err) {
  bool exists = false;
  if (nl_link_exists(s, n->bridge, &exists, err) < 0 || (!exists && bridge_make(s, n, err) < 0))
    return -1;
  for (size_t i = n->n_eps; i-- > 0;) {
    bool dropped;
    if (endpoint_restore(s, n, i, &dropped, err) < 0)
      return vs_error_wrap(err, "endpoint %s", n->eps[i]->id);
    *changed |= dropped;
  }
  return 0;
}

int net_restore(net_ctx *ctx, vs_error **err) {
  _cleanup_nl_ nl_sock s = {0};
  bool changed = false;
  if (nl_open(&s, err) < 0)
    return vs_error_wrap(err, "restore networks");
  for (size_t i = 0; i < ctx->n_nets; i++)
    if (network_restore(&s, ctx->nets[i], &changed, err) < 0)
      return vs_error_wrap(err, "restore network %s", ctx->nets[i]->name);
  if (net_nft_apply(ctx, err) < 0 || (changed && net_state_save(ctx, err) < 0))
    return vs_error_wrap(err, "restore networks");
  return 0;
}
