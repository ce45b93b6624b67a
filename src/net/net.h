/* vessel net: the virtual switch that joins containers and VMs.
 *
 * This is the module's one public header. A network is a Linux bridge with an IPv4 subnet and a
 * gateway address on the bridge; a container joins it through a veth pair (one end renamed eth0
 * in the container's network namespace, the other on the bridge), a VM through a tap with the
 * virtio-net header (vessel-vmm --net tap=IFNAME). Addresses come from the network's IPAM;
 * outbound NAT, published ports and isolation are nftables rules in tables named `vessel` that
 * the module owns and rebuilds whole from its state on every change.
 *
 * Everything acts on the network namespace of the calling thread (the daemon's), except what is
 * done inside a container's namespace, which is given by an open fd. The state (networks,
 * endpoints, addresses, ports) lives in STATE_DIR/net.json, written atomically after every
 * change; a failed operation leaves the kernel and the state as they were.
 */
#ifndef VESSEL_NET_H
#define VESSEL_NET_H

#include <net/if.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>

#include "base/base.h"

/* ------------------------------------------------------------- networks */

typedef struct net_network_opts {
  const char *name;     /* [A-Za-z0-9][A-Za-z0-9_.-]*, at most 64 bytes */
  const char *subnet;   /* "10.88.0.0/16": the host part must be zero */
  const char *gateway;  /* NULL: the subnet's first address */
  const char *ip_range; /* NULL: the whole subnet; else a CIDR inside it to allocate from */
  const char *bridge;   /* NULL: "vsbr-" and 8 hex digits of the name's hash */
  unsigned mtu;         /* 0: 1500 */
  bool internal;        /* no masquerade, no traffic to or from other interfaces */
  bool disable_icc;     /* enable_icc=false: endpoints on the bridge cannot reach each other */
} net_network_opts;

/* ---------------------------------------------------------- published ports */

typedef enum { NET_PROTO_TCP = 0, NET_PROTO_UDP = 1 } net_proto;

typedef struct net_ctx net_ctx;

typedef struct net_port {
  struct in_addr host_ip; /* INADDR_ANY: every address of the host */
  uint16_t host_port;
  uint16_t port; /* in the guest */
  net_proto proto;
} net_port;

/* Parse "[IP:]HOSTPORT:PORT[/tcp|udp]" (Docker's -p, without ranges). Ports are 1..65535. The
 * error names the part that is wrong: "port spec \"80:x\": container port \"x\" is not a
 * number in 1..65535". */
int net_port_parse(const char *spec, net_port *out, vs_error **err);
/* A host port or a range of them, as Docker's API has HostPort: "8080" or "8000-8010" (first
 * <= last; a range is where the daemon picks the first free port, as dockerd does for
 * -p 8000-8010:80). Errors name the part that is wrong. */
int net_port_range_parse(const char *s, uint16_t *first, uint16_t *last, vs_error **err);
/* Refuse ports that another endpoint (of any network) or the same request already has. */
int net_ports_check_free(const net_ctx *ctx, const net_port *ports, size_t n, vs_error **err);
/* Refuse ports a program in the calling thread's namespace is bound to (ports.c); what
 * attach checks, for a caller choosing among host ports. */
int net_ports_check_host(const net_port *ports, size_t n, vs_error **err);
/* "0.0.0.0:8080:80/tcp" into buf (at least NET_PORT_STR_MAX). */
#define NET_PORT_STR_MAX 40
void net_port_format(const net_port *p, char *buf, size_t size);

/* ------------------------------------------------------------- endpoints */

typedef enum { NET_ENDPOINT_VETH = 0, NET_ENDPOINT_TAP = 1 } net_endpoint_kind;

typedef struct net_endpoint_opts {
  const char *network;
  const char *id; /* the guest's id (container or VM), unique on the network; same rules as names */
  /* veth: the container's network namespace (an fd of /proc/PID/ns/net or /run/netns/NAME) and
   * the name its end gets there (NULL: "eth0"). */
  int netns_fd;
  const char *ifname;
  /* tap: the tap's name on the host (NULL: "vstap-" and 8 hex digits). */
  const char *tap_name;
  /* A guest's second network (docker network connect): no default route there, the first
   * network keeps it. The interface then needs its own name (ifname "eth1"). */
  bool no_default_route;
  const char *ip;  /* NULL: the next free address */
  const char *mac; /* NULL: 02:42 and the address, as Docker */
  const net_port *ports;
  size_t n_ports;
  /* Names the network's DNS answers with the endpoint's address besides the id (the container's
   * name, --network-alias); same characters as names, at most 253 bytes. */
  const char *const *aliases;
  size_t n_aliases;
  /* "IPV4[:PORT]": where the network's DNS server forwards this endpoint's queries for names
   * that are not on the network (a container's --dns, as Docker's embedded server does); NULL:
   * the server's own upstream. */
  const char *dns_upstream;
} net_endpoint_opts;

typedef struct net_endpoint_info {
  struct in_addr ip;
  unsigned prefix;
  struct in_addr gateway;
  uint8_t mac[6];
  char host_ifname[IFNAMSIZ]; /* the veth's bridge end, or the tap */
} net_endpoint_info;

/* ------------------------------------------------------------- the context */

/* Load STATE_DIR/net.json (missing: no networks yet); creates STATE_DIR. Touches no interface.
 * The context holds an exclusive lock on STATE_DIR/net.lock until net_close: a second owner of
 * the same state is refused. Not thread-safe: one caller at a time. */
net_ctx *net_open(const char *state_dir, vs_error **err);
void net_close(net_ctx *ctx);

/* Make what the state says exist again after a restart: missing bridges and taps are made again,
 * every endpoint's interface is put (back) on its bridge, the nftables tables are replaced in one
 * transaction (established connections go on). A container endpoint whose veth is gone (its
 * namespace ended while nobody watched) is dropped from the state and its address and ports
 * released. */
int net_restore(net_ctx *ctx, vs_error **err);

/* Validate, create the bridge (address, MTU, up), save, rebuild the rules. */
int net_network_create(net_ctx *ctx, const net_network_opts *opts, vs_error **err);
/* Refused while endpoints are attached. Deletes the bridge and its rules. */
int net_network_remove(net_ctx *ctx, const char *name, vs_error **err);

/* A veth endpoint in opts->netns_fd: address, MAC, MTU, default route via the gateway, up. */
int net_endpoint_attach_veth(net_ctx *ctx, const net_endpoint_opts *opts, net_endpoint_info *info,
                             vs_error **err);
/* A persistent tap (IFF_TAP | IFF_NO_PI | IFF_VNET_HDR) on the bridge, up, for
 * `vessel-vmm --net tap=NAME,mac=...`; the address is reserved for the VM (which configures it
 * itself: DHCP is not there yet) and ports are published to it. */
int net_endpoint_attach_tap(net_ctx *ctx, const net_endpoint_opts *opts, net_endpoint_info *info,
                            vs_error **err);
/* Delete the endpoint's interface (if it still exists), release its address and ports. */
/* Endpoint id's alias `from` becomes `to` on every network it is on (a renamed container). */
int net_endpoint_rename_alias(net_ctx *ctx, const char *id, const char *from, const char *to,
                              vs_error **err);
int net_endpoint_detach(net_ctx *ctx, const char *network, const char *id, vs_error **err);

/* ---------------------------------------------------------------- DHCP */

/* DHCP for the guests of a network (VMs; containers get their address through netlink): a UDP
 * socket on port 67 bound to the network's bridge, non-blocking, for the caller's event loop.
 * Only MAC addresses of the network's endpoints are answered, with the address IPAM reserved
 * for them. */
int net_dhcp_open(const net_ctx *ctx, const char *network, vs_error **err);
/* Read one request from fd (nothing waiting is fine) and answer it. Malformed requests and
 * unknown clients are not errors: they get no answer. */
int net_dhcp_handle(const net_ctx *ctx, const char *network, int fd, vs_error **err);

/* ----------------------------------------------------------------- DNS */

/* The network's name server on its gateway address, port 53 (UDP and TCP): endpoints' ids and
 * aliases on this network resolve to their addresses; other names are forwarded to upstream
 * ("IPV4" or "IPV4:PORT"; NULL: the first nameserver of /etc/resolv.conf, none or unreachable:
 * SERVFAIL). Non-blocking: the caller polls the fds of net_dns_fds (the first is an epoll fd
 * holding every socket of the server; the second is -1, kept for callers that poll two) and
 * calls net_dns_handle when one is readable. */
typedef struct net_dns net_dns;
net_dns *net_dns_open(const net_ctx *ctx, const char *network, const char *upstream,
                      vs_error **err);
void net_dns_fds(const net_dns *d, int fds[2]);
int net_dns_handle(net_dns *d, const net_ctx *ctx, vs_error **err);
void net_dns_close(net_dns *d);

/* -------------------------------------------------------- overlay across hosts (VXLAN) */

/* A network spread over several hosts (a vessel cluster): each host has the network's bridge
 * with the same subnet and gateway address, and a VXLAN device on it that carries the bridge's
 * frames to the other hosts in UDP. The device is named "vsvx-" and 8 hex digits of the
 * network's name; it is the caller's to make again after a restart (not in the state file). */
typedef struct net_vxlan_opts {
  const char *network;
  uint32_t vni;      /* 1..16777215, the same on every host */
  const char *local; /* this host's address: the tunnels' source */
  uint16_t port;     /* UDP; 0: 4789 (IANA's VXLAN port) */
} net_vxlan_opts;

#define NET_VXLAN_PORT 4789
/* What the encapsulation takes from each packet: outer IPv4 (20), UDP (8), VXLAN (8) and the
 * inner Ethernet header (14). An overlay network's MTU is its uplink's minus this. */
#define NET_VXLAN_OVERHEAD 50

/* Make the network's VXLAN device (on its bridge, the network's MTU, up) unless it exists;
 * fresh: delete an existing one first (its flooding entries are then those added after).
 * ifname gets its name. Returns 1 when it made the device (it has no peers yet), 0 when it was
 * there. */
int net_vxlan_ensure(net_ctx *ctx, const net_vxlan_opts *o, bool fresh, char ifname[IFNAMSIZ],
                     vs_error **err);
/* Add (or delete) a host that gets a copy of the network's flooded frames (broadcast, unknown
 * unicast): unicast head-end replication, no multicast needed on the hosts' network. */
int net_vxlan_peer(net_ctx *ctx, const char *network, const char *peer, bool add, vs_error **err);
/* Delete the network's VXLAN device (and with it its flooding entries); none is fine. */
int net_vxlan_remove(const char *network, vs_error **err);
/* The MTU of the interface that holds the IPv4 address local (the overlay's uplink). */
int net_uplink_mtu(const char *local, unsigned *mtu, vs_error **err);
/* The names of guests on other hosts and their addresses, which the network's DNS server
 * answers besides its own endpoints' (these win no clash: a local name is answered first).
 * Replaces the previous list. */
int net_network_set_remote_names(net_ctx *ctx, const char *network, const char *const *names,
                                 const struct in_addr *ips, size_t n, vs_error **err);

/* The state as JSON (a new reference): what `network inspect` shows. */
json_t *net_state_json(const net_ctx *ctx);

/* The nftables ruleset the state asks for, as nft text (a new string): what net_restore and every
 * change load in one transaction. Exposed for tests and `inspect`. */
char *net_ruleset_text(const net_ctx *ctx);

#endif
