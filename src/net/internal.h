/* Private to src/net and its unit tests. */
#ifndef VESSEL_NET_INTERNAL_H
#define VESSEL_NET_INTERNAL_H

#include <arpa/inet.h>

#include "net/net.h"

#define NET_NAME_MAX 64
#define NET_ID_MAX 128
#define NET_DEFAULT_MTU 1500
#define NET_STATE_FILE "net.json"
#define NET_LOCK_FILE "net.lock"
#define NET_STATE_MAX (16u << 20)

typedef struct net_endpoint {
  char *id;
  net_endpoint_kind kind;
  struct in_addr ip;
  uint8_t mac[6];
  char host_ifname[IFNAMSIZ];
  net_port *ports;
  size_t n_ports;
  char **aliases; /* names the network's DNS answers besides the id */
  size_t n_aliases;
  char *dns_upstream;                 /* "IPV4[:PORT]" or NULL: see net_endpoint_opts */
  struct sockaddr_in dns_upstream_sa; /* ... parsed */
} net_endpoint;

/* Addresses are kept in host byte order inside IPAM (uint32_t), in struct in_addr at the edges. */
typedef struct net_network {
  char *name;
  char bridge[IFNAMSIZ];
  uint32_t subnet; /* host order, host part zero */
  unsigned prefix;
  uint32_t gateway;
  uint32_t range; /* allocation range (the subnet when none was given) */
  unsigned range_prefix;
  bool has_range;
  unsigned mtu;
  bool internal;
  bool disable_icc;
  net_endpoint **eps;
  size_t n_eps;
  /* Names of guests on other nodes of a cluster network, which the DNS server answers too
   * (net_network_set_remote_names; not in the state file: the daemon sets them again). */
  char **remote_names;
  struct in_addr *remote_ips;
  size_t n_remote;
} net_network;

struct net_ctx {
  char *state_dir;
  char *state_path;
  int lock_fd; /* flock on STATE_DIR/net.lock: one owner of the state at a time */
  net_network **nets;
  size_t n_nets;
};

/* ---- names (ipam.c) */
int net_check_name(const char *name, const char *what, size_t max, vs_error **err);
/* A name the kernel takes for an interface and that needs no quoting in nft or /proc/sys paths:
 * 1..15 bytes of [A-Za-z0-9_.-], not "." or "..". */
int net_check_ifname(const char *name, const char *what, vs_error **err);

/* ---- addresses and IPAM (ipam.c) */
int net_parse_ipv4(const char *s, const char *what, uint32_t *out, vs_error **err);
/* "a.b.c.d/n" with a zero host part. */
int net_parse_cidr(const char *s, const char *what, uint32_t *addr, unsigned *prefix,
                   vs_error **err);
uint32_t net_prefix_mask(unsigned prefix);
bool net_cidr_contains(uint32_t net, unsigned prefix, uint32_t addr);
void net_format_ipv4(uint32_t addr, char buf[INET_ADDRSTRLEN]);
/* Build a network from options (no kernel work); checks it against ctx's networks (name, bridge,
 * overlapping subnets). */
net_network *net_network_from_opts(const net_ctx *ctx, const net_network_opts *opts,
                                   vs_error **err);
void net_network_free(net_network *n);
void net_network_remote_names_free(net_network *n); /* vxlan.c */
void net_endpoint_free(net_endpoint *ep);
net_network *net_find_network(const net_ctx *ctx, const char *name);
net_endpoint *net_find_endpoint(const net_network *n, const char *id, size_t *index);
/* The next free address of the allocation range, or the explicit request (inside the subnet,
 * not the network, broadcast or gateway address, not taken). */
int net_ipam_allocate(const net_network *n, const char *request, uint32_t *out, vs_error **err);
void net_default_mac(uint32_t ip, uint8_t mac[6]);
int net_parse_mac(const char *s, uint8_t mac[6], vs_error **err);
void net_format_mac(const uint8_t mac[6], char buf[18]);
/* "PREFIX" and 8 hex digits of SHA-256(key): stable, short enough for IFNAMSIZ. */
void net_derived_ifname(const char *prefix, const char *key, char out[IFNAMSIZ]);

/* ---- state (state.c) */
json_t *net_state_to_json(const net_ctx *ctx);
/* Replaces ctx's networks with the document's; every field is checked as if it came from a user. */
int net_state_from_json(net_ctx *ctx, const json_t *doc, vs_error **err);
int net_state_save(const net_ctx *ctx, vs_error **err);
void net_ctx_add_network(net_ctx *ctx, net_network *n);
void net_ctx_remove_network(net_ctx *ctx, const net_network *n);
void net_network_add_endpoint(net_network *n, net_endpoint *ep);
void net_network_remove_endpoint(net_network *n, size_t index);

/* ---- DHCP (dhcp.c): the answer to one request from a guest on n into out (cap >= 364 bytes);
 * *out_len 0 when it gets none. Malformed requests are errors naming the problem. */
int net_dhcp_reply(const net_network *n, const uint8_t *msg, size_t len, uint8_t *out, size_t cap,
                   size_t *out_len, vs_error **err);

/* ---- DNS (dns.c): the answer to one query from a guest on n, or *forward when the name is not
 * the network's. Malformed queries are errors naming the problem. */
int net_dns_answer(const net_network *n, const uint8_t *q, size_t len, uint8_t *out, size_t cap,
                   size_t *out_len, bool *forward, vs_error **err);
#define NET_ALIAS_MAX 253
/* "IPV4[:PORT]" (port 53 when left out) of a DNS server (dns.c). */
int net_dns_parse_upstream(const char *s, struct sockaddr_in *sa, vs_error **err);
/* Copy and check the endpoint's own DNS upstream into ep; NULL: none (net.c). */
int net_endpoint_set_dns_upstream(net_endpoint *ep, const char *upstream, vs_error **err);
/* Copy and check the aliases into ep (net.c). */
int net_endpoint_set_aliases(net_endpoint *ep, const char *const *aliases, size_t n,
                             vs_error **err);

/* ---- nftables (nft.c) */
int net_nft_apply(const net_ctx *ctx, vs_error **err);

/* ---- netlink and devices (link.c), all in the calling thread's network namespace unless the
 * socket was opened in another one. */
typedef struct nl_sock {
  struct mnl_socket *mnl;
  uint32_t portid;
  uint32_t seq;
} nl_sock;

int nl_open(nl_sock *s, vs_error **err);
/* A socket in the namespace netns_fd: the calling thread enters it just to make the socket. */
int nl_open_in_netns(nl_sock *s, int netns_fd, vs_error **err);
void nl_close(nl_sock *s);
int nl_link_index(nl_sock *s, const char *name, int *index, vs_error **err);
int nl_link_exists(nl_sock *s, const char *name, bool *exists, vs_error **err);
int nl_bridge_create(nl_sock *s, const char *name, unsigned mtu, const uint8_t mac[6],
                     vs_error **err);
/* veth pair host_name <-> peer_name, the peer moved into peer_netns_fd with mac and mtu. */
int nl_veth_create(nl_sock *s, const char *host_name, const char *peer_name, int peer_netns_fd,
                   const uint8_t peer_mac[6], unsigned mtu, vs_error **err);
int nl_link_delete(nl_sock *s, const char *name, vs_error **err);
/* A VXLAN device (vni, source address local and UDP port, both in host order) with learning. */
int nl_vxlan_create(nl_sock *s, const char *name, uint32_t vni, uint32_t local, uint16_t port,
                    unsigned mtu, vs_error **err);
/* Add or delete the all-zero FDB entry of the VXLAN device index that sends to peer. */
int nl_fdb_peer(nl_sock *s, int index, uint32_t peer, bool add, vs_error **err);
int nl_link_set_up(nl_sock *s, int index, vs_error **err);
int nl_link_set_master(nl_sock *s, int index, int master, vs_error **err);
int nl_link_set_mtu(nl_sock *s, int index, unsigned mtu, vs_error **err);
int nl_addr_add(nl_sock *s, int index, uint32_t addr, unsigned prefix, vs_error **err);
int nl_route_add_default(nl_sock *s, int index, uint32_t gateway, vs_error **err);
/* A persistent tap made through /dev/net/tun, with the flags vessel-vmm attaches with. */
int tap_create_persistent(const char *name, vs_error **err);
/* Write "1" to /proc/sys/net/ipv4/... of the calling thread's namespace. */
int net_sysctl_enable(const char *path, vs_error **err);

#endif
