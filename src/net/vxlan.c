/* Networks across hosts: a VXLAN device on the network's bridge on every host, the other
 * hosts as flooding peers, and the names of guests on other hosts for the DNS server. Which
 * hosts and names there are is the caller's knowledge (vesseld reads them from etcd); this
 * file only makes the kernel objects. */
#include <errno.h>
#include <ifaddrs.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net/internal.h"

static void nl_closep(nl_sock *s) { nl_close(s); }
#define _cleanup_nl_ _cleanup_(nl_closep)

static void vxlan_ifname(const char *network, char out[IFNAMSIZ]) {
  net_derived_ifname("vsvx-", network, out);
}

static int vxlan_make(nl_sock *s, const net_network *n, const net_vxlan_opts *o, uint32_t local,
                      const char *name, vs_error **err) {
  int index, bridge;
  uint16_t port = o->port ? o->port : NET_VXLAN_PORT;
  if (nl_vxlan_create(s, name, o->vni, local, port, n->mtu, err) < 0)
    return -1;
  if (nl_link_index(s, name, &index, err) < 0 || nl_link_index(s, n->bridge, &bridge, err) < 0 ||
      nl_link_set_master(s, index, bridge, err) < 0 || nl_link_set_up(s, index, err) < 0) {
    _cleanup_error_ vs_error *e = NULL;
    if (nl_link_delete(s, name, &e) < 0)
      vs_log_warn("rollback: %s", e->msg);
    return -1;
  }
  return 0;
}

int net_vxlan_ensure(net_ctx *ctx, const net_vxlan_opts *o, bool fresh, char ifname[IFNAMSIZ],
                     vs_error **err) {
  const net_network *n = net_find_network(ctx, o->network);
  if (!n)
    return vs_error_set(err, ENOENT, "network %s: no such network", o->network);
  if (o->vni == 0 || o->vni > 0xffffff)
    return vs_error_set(err, EINVAL, "network %s: VNI %u is not in 1..16777215", o->network,
                        o->vni);
  uint32_t local;
  if (net_parse_ipv4(o->local, "local address", &local, err) < 0)
    return vs_error_wrap(err, "network %s", o->network);
  vxlan_ifname(o->network, ifname);
  _cleanup_nl_ nl_sock s = {0};
  bool exists = false;
  if (nl_open(&s, err) < 0 || nl_link_exists(&s, ifname, &exists, err) < 0)
    return vs_error_wrap(err, "network %s", o->network);
  if (exists && !fresh)
    return 0;
  if (exists && nl_link_delete(&s, ifname, err) < 0)
    return vs_error_wrap(err, "network %s", o->network);
  if (vxlan_make(&s, n, o, local, ifname, err) < 0)
    return vs_error_wrap(err, "network %s", o->network);
  return 1;
}

int net_vxlan_peer(net_ctx *ctx, const char *network, const char *peer, bool add, vs_error **err) {
  if (!net_find_network(ctx, network))
    return vs_error_set(err, ENOENT, "network %s: no such network", network);
  uint32_t ip;
  if (net_parse_ipv4(peer, "peer", &ip, err) < 0)
    return vs_error_wrap(err, "network %s", network);
  char ifname[IFNAMSIZ];
  vxlan_ifname(network, ifname);
  _cleanup_nl_ nl_sock s = {0};
  int index;
  if (nl_open(&s, err) < 0 || nl_link_index(&s, ifname, &index, err) < 0 ||
      nl_fdb_peer(&s, index, ip, add, err) < 0)
    return vs_error_wrap(err, "network %s", network);
  return 0;
}

int net_vxlan_remove(const char *network, vs_error **err) {
  char ifname[IFNAMSIZ];
  vxlan_ifname(network, ifname);
  _cleanup_nl_ nl_sock s = {0};
  if (nl_open(&s, err) < 0)
    return -1;
  _cleanup_error_ vs_error *e = NULL;
  if (nl_link_delete(&s, ifname, &e) < 0 && e->errnum != ENODEV)
    return vs_error_set(err, e->errnum, "network %s: %s", network, e->msg);
  return 0;
}

int net_uplink_mtu(const char *local, unsigned *mtu, vs_error **err) {
  uint32_t want;
  if (net_parse_ipv4(local, "uplink address", &want, err) < 0)
    return -1;
  struct ifaddrs *all = NULL;
  if (getifaddrs(&all) < 0)
    return vs_error_set(err, errno, "list the interfaces' addresses");
  char name[IFNAMSIZ] = "";
  for (const struct ifaddrs *a = all; a; a = a->ifa_next) {
    if (!a->ifa_addr || a->ifa_addr->sa_family != AF_INET)
      continue;
    const struct sockaddr_in *sin = (const struct sockaddr_in *)(const void *)a->ifa_addr;
    if (ntohl(sin->sin_addr.s_addr) == want) {
      snprintf(name, sizeof(name), "%s", a->ifa_name);
      break;
    }
  }
  freeifaddrs(all);
  if (!name[0])
    return vs_error_set(err, EADDRNOTAVAIL, "no interface has the address %s", local);
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return vs_error_set(err, errno, "socket");
  struct ifreq ifr = {0};
  snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
  int r = ioctl(fd, SIOCGIFMTU, &ifr);
  int e = errno;
  close(fd);
  if (r < 0)
    return vs_error_set(err, e, "the MTU of %s", name);
  *mtu = (unsigned)ifr.ifr_mtu;
  return 0;
}

static void remote_names_clear(net_network *n) {
  for (size_t i = 0; i < n->n_remote; i++)
    free(n->remote_names[i]);
  free(n->remote_names);
  free(n->remote_ips);
  n->remote_names = NULL;
  n->remote_ips = NULL;
  n->n_remote = 0;
}

int net_network_set_remote_names(net_ctx *ctx, const char *network, const char *const *names,
                                 const struct in_addr *ips, size_t n, vs_error **err) {
  net_network *net = net_find_network(ctx, network);
  if (!net)
    return vs_error_set(err, ENOENT, "network %s: no such network", network);
  for (size_t i = 0; i < n; i++)
    if (net_check_name(names[i], "name", NET_ALIAS_MAX, err) < 0)
      return vs_error_wrap(err, "network %s: a guest's name on another host", network);
  remote_names_clear(net);
  if (n == 0)
    return 0;
  net->remote_names = vs_malloc0(n * sizeof(char *));
  net->remote_ips = vs_malloc0(n * sizeof(struct in_addr));
  for (size_t i = 0; i < n; i++) {
    net->remote_names[i] = vs_strdup(names[i]);
    net->remote_ips[i] = ips[i];
  }
  net->n_remote = n;
  return 0;
}

void net_network_remote_names_free(net_network *n) { remote_names_clear(n); }
