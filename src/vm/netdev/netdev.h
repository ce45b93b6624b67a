/* Network backends of vessel-vmm (internal to the vm module): what carries a virtio-net device's
 * frames to the outside world.
 *
 *   user  libslirp, a TCP/IP stack inside the VMM: DHCP, DNS, the guest's TCP/UDP connections
 *         made from host sockets (the host's loopback is 10.0.2.2), port forwards into the guest.
 *         Needs no privileges.
 *   tap   a host tap interface (/dev/net/tun): the guest's frames appear on IFNAME, for a bridge
 *         or routing set up by the host (needs CAP_NET_ADMIN, or a tap made for the user).
 *         Opened with IFF_VNET_HDR when the kernel has it: the virtio-net header travels with
 *         every frame, so checksums and TCP segmentation are left to the host kernel (or not
 *         done at all) instead of being done by the VMM, and the guest receives large packets.
 *
 * A backend is polled by the machine's run loop through an I/O source (prepare adds its
 * descriptors and shortens the wait for its timers, dispatch handles what became ready); it
 * hands received frames to its peer, the device. Nothing in a backend blocks.
 *
 * The --net option (QEMU's syntax where there is one):
 *   user[,hostfwd=[tcp|udp]:[HOSTADDR]:HOSTPORT-[GUESTADDR]:GUESTPORT]...[,mac=MAC][,mtu=N]
 *   tap=IFNAME[,mac=MAC][,mtu=N][,vnet_hdr=on|off]   (also: tap,ifname=IFNAME)
 * vnet_hdr: the default uses the header when the kernel supports it and falls back to plain
 * frames otherwise; "on" makes the lack of support an error, "off" never uses it.
 */
#ifndef VESSEL_VM_NETDEV_H
#define VESSEL_VM_NETDEV_H

#include <net/if.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/base.h"

typedef struct vm_pollset vm_pollset; /* machine.h */

#define NETDEV_MAX_HOSTFWD 16
/* The guest address that user networking's DHCP hands out first (hostfwd's default target). */
#define NETDEV_USER_GUEST_ADDR "10.0.2.15"

typedef enum { NETDEV_USER = 0, NETDEV_TAP } netdev_kind;
typedef enum { NETDEV_VNET_HDR_AUTO = 0, NETDEV_VNET_HDR_ON, NETDEV_VNET_HDR_OFF } netdev_vnet_hdr;

typedef struct netdev_hostfwd {
  bool udp;
  struct in_addr host_addr; /* INADDR_ANY when the spec leaves it empty, as in QEMU */
  uint16_t host_port;
  struct in_addr guest_addr;
  uint16_t guest_port;
} netdev_hostfwd;

typedef struct netdev_opts {
  netdev_kind kind;
  bool mac_set;
  uint8_t mac[6];
  unsigned mtu; /* 0: the default (1500) */
  char ifname[IFNAMSIZ];
  netdev_vnet_hdr vnet_hdr; /* tap only */
  netdev_hostfwd hostfwd[NETDEV_MAX_HOSTFWD];
  unsigned nhostfwd;
} netdev_opts;

/* Parse a --net spec; errors name the part that is wrong. */
int netdev_parse_spec(const char *spec, netdev_opts *out, vs_error **err);
/* "52:54:00:12:34:56" -> 6 bytes; rejects multicast addresses (a NIC cannot have one). */
int netdev_parse_mac(const char *s, uint8_t mac[6], vs_error **err);

/* The device a backend delivers to. */
typedef struct netdev_peer {
  /* Can the device take a frame now? A backend that can leave frames where they are (tap) does
   * not read while it cannot; one that cannot (slirp) delivers anyway and the device drops. */
  bool (*can_receive)(void *opaque);
  /* A frame for the guest: Ethernet header and payload, no FCS (after the virtio-net header
   * when the backend carries it: netdev.vnet_hdr). The device copies it. */
  void (*receive)(void *opaque, const uint8_t *frame, size_t len);
  void *opaque;
} netdev_peer;

typedef struct netdev netdev;

/* What the guest takes in frames from a backend that carries the virtio-net header: partial
 * checksums (csum) and TCP segmentation left undone (tso4, tso6; only with csum). */
typedef struct netdev_offloads {
  bool csum, tso4, tso6;
} netdev_offloads;

typedef struct netdev_ops {
  void (*send)(netdev *nd, const uint8_t *frame, size_t len);
  void (*prepare)(netdev *nd, vm_pollset *ps);
  void (*dispatch)(netdev *nd, const vm_pollset *ps);
  void (*destroy)(netdev *nd);
  /* Only for a backend with vnet_hdr. */
  int (*set_offloads)(netdev *nd, netdev_offloads off, vs_error **err);
} netdev_ops;

struct netdev {
  const netdev_ops *ops;
  netdev_peer peer;
  const char *name;   /* "user", "tap" */
  bool rx_csum_valid; /* the frames it delivers carry correct checksums */
  bool accepts_tso;   /* it takes TCP packets of up to 64 KiB whatever the MTU */
  /* Every frame both ways starts with the 12-byte virtio-net header (with num_buffers, as
   * virtio 1.x has it; num_buffers means nothing here): frames it takes may leave the checksum
   * and TCP segmentation to it, frames it delivers may be such too, as set_offloads allows. */
  bool vnet_hdr;
  uint64_t tx_dropped;
};

/* Open the backend opts describes; frames for the guest go to peer. */
netdev *netdev_open(const netdev_opts *opts, netdev_peer peer, vs_error **err);
/* A frame from the guest (checksums complete, or after the virtio-net header with vnet_hdr);
 * dropped if the backend cannot take it now. */
void netdev_send(netdev *nd, const uint8_t *frame, size_t len);
/* With vnet_hdr: what the backend may hand over unfinished from now on (a backend without the
 * header has nothing to set: 0). */
int netdev_set_offloads(netdev *nd, netdev_offloads off, vs_error **err);
/* For the machine's I/O source of this backend. */
void netdev_prepare(netdev *nd, vm_pollset *ps);
void netdev_dispatch(netdev *nd, const vm_pollset *ps);
void netdev_close(netdev *nd);

/* The backends (netdev_open picks one). */
netdev *netdev_user_open(const netdev_opts *opts, netdev_peer peer, vs_error **err);
netdev *netdev_tap_open(const netdev_opts *opts, netdev_peer peer, vs_error **err);

/* A replay's stand-in for the backend opts describe (docs/debugging.md, record and replay): the
 * device sees the same link (offered features, receive headers), but frames the guest sends go
 * nowhere and none arrive except those the replay delivers from its log. Only user networking
 * has one: a tap's link depends on what the host kernel offers. */
netdev *netdev_offline_open(const netdev_opts *opts, netdev_peer peer, vs_error **err);
netdev *netdev_user_offline(netdev_peer peer);

#endif
