/* A host tap interface: frames go to and come from IFNAME through /dev/net/tun (IFF_TAP, no
 * packet information header). The tap is attached as the host set it up; a tap that does not exist
 * yet is created (needs CAP_NET_ADMIN) and disappears when the VMM exits.
 *
 * With IFF_VNET_HDR (as QEMU's vnet_hdr=on) each frame read or written starts with the virtio 1.x
 * net header (TUNSETVNETHDRSZ 12, little-endian): the device passes the guest's header through,
 * so the host kernel completes checksums and segments TSO packets only where it must (a packet
 * to a local socket needs neither), and TUNSETOFFLOAD lets the host hand the guest partial
 * checksums and 64 KiB TCP packets when its driver takes them. A kernel without it (or a tap
 * that refuses the header settings) gets plain frames, as before, unless vnet_hdr=on was asked.
 *
 * Receiving follows the guest: while the device cannot take a frame the descriptor is not polled,
 * so frames wait in the kernel's tap queue (which drops beyond its length, like a full NIC ring).
 * Sending never blocks: a frame the kernel will not take now is dropped.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "vm/dev/virtio.h"
#include "vm/machine.h"
#include "vm/netdev/netdev.h"

/* Frames handed over per dispatch, so that a flood cannot starve the harts. */
#define TAP_READ_BUDGET 64
/* A plain frame of the largest MTU, or header + a GSO packet of 64 KiB. */
#define TAP_FRAME_MAX (VIRTIO_NET_HDR_SIZE + VIRTIO_NET_MAX_GSO_FRAME)

typedef struct netdev_tap {
  netdev base; /* first */
  int fd;
  int poll_idx;
  char ifname[IFNAMSIZ];
  uint8_t frame[TAP_FRAME_MAX];
} netdev_tap;

static netdev_tap *tap_of(netdev *nd) { return (netdev_tap *)nd; }

static bool peer_can_receive(const netdev *nd) {
  return !nd->peer.can_receive || nd->peer.can_receive(nd->peer.opaque);
}

static void tap_prepare(netdev *nd, vm_pollset *ps) {
  netdev_tap *t = tap_of(nd);
  t->poll_idx = peer_can_receive(nd) ? vm_pollset_add(ps, t->fd, POLLIN) : -1;
}

static void tap_dispatch(netdev *nd, const vm_pollset *ps) {
  netdev_tap *t = tap_of(nd);
  if (!(vm_pollset_revents(ps, t->poll_idx) & POLLIN))
    return;
  for (int i = 0; i < TAP_READ_BUDGET && peer_can_receive(nd); i++) {
    ssize_t n = read(t->fd, t->frame, sizeof(t->frame));
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      break; /* EAGAIN: the queue is empty */
    nd->peer.receive(nd->peer.opaque, t->frame, (size_t)n);
  }
}

static void tap_send(netdev *nd, const uint8_t *frame, size_t len) {
  netdev_tap *t = tap_of(nd);
  ssize_t n;
  do
    n = write(t->fd, frame, len);
  while (n < 0 && errno == EINTR);
  if (n != (ssize_t)len)
    nd->tx_dropped++;
}

static int tap_set_offloads(netdev *nd, netdev_offloads off, vs_error **err) {
  netdev_tap *t = tap_of(nd);
  unsigned long flags = 0;
  if (off.csum) /* the kernel refuses TSO without checksum offload */
    flags = TUN_F_CSUM | (off.tso4 ? TUN_F_TSO4 : 0) | (off.tso6 ? TUN_F_TSO6 : 0);
  if (ioctl(t->fd, TUNSETOFFLOAD, flags) < 0)
    return vs_error_set(err, errno, "tap %s: set offloads 0x%lx (TUNSETOFFLOAD)", t->ifname, flags);
  return 0;
}

static void tap_destroy(netdev *nd) {
  netdev_tap *t = tap_of(nd);
  /* A persistent tap keeps its offloads after we close it: its next user may read plain frames
   * and would get 64 KiB packets without a header. Best effort: there is no one to tell. */
  if (t->fd >= 0 && nd->vnet_hdr)
    (void)ioctl(t->fd, TUNSETOFFLOAD, 0ul);
  if (t->fd >= 0)
    close(t->fd);
  free(t);
}

static const netdev_ops tap_ops = {
    .send = tap_send,
    .prepare = tap_prepare,
    .dispatch = tap_dispatch,
    .destroy = tap_destroy,
    .set_offloads = tap_set_offloads,
};

/* The kernel's tun features (TUNGETFEATURES); 0 when it cannot say (very old kernels). */
static unsigned tun_features(int fd) {
  unsigned features = 0;
  return ioctl(fd, TUNGETFEATURES, &features) == 0 ? features : 0;
}

/* Header size, byte order and no offloads yet: the guest has not said what it takes. The header
 * is little-endian (virtio 1.x); TUNSETVNETLE says so on a big-endian host, where the default
 * is the host's order. */
static int tap_setup_vnet_hdr(int fd, const char *ifname, vs_error **err) {
  int size = VIRTIO_NET_HDR_SIZE;
  if (ioctl(fd, TUNSETVNETHDRSZ, &size) < 0)
    return vs_error_set(err, errno, "tap %s: virtio-net header size (TUNSETVNETHDRSZ)", ifname);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  int le = 1;
  if (ioctl(fd, TUNSETVNETLE, &le) < 0)
    return vs_error_set(err, errno, "tap %s: little-endian header (TUNSETVNETLE)", ifname);
#endif
  if (ioctl(fd, TUNSETOFFLOAD, 0ul) < 0)
    return vs_error_set(err, errno, "tap %s: offloads (TUNSETOFFLOAD)", ifname);
  return 0;
}

/* Open /dev/net/tun and attach IFNAME, with the virtio-net header or without. On success *name
 * is the interface's name as the kernel has it. */
static int tap_attach(const char *ifname, bool vnet_hdr, char name[IFNAMSIZ], vs_error **err) {
  _cleanup_close_ int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0)
    return vs_error_set(err, errno, "tap %s: open /dev/net/tun", ifname);
  if (vnet_hdr && !(tun_features(fd) & IFF_VNET_HDR))
    return vs_error_set(err, EOPNOTSUPP, "tap %s: the kernel has no IFF_VNET_HDR", ifname);
  struct ifreq ifr = {0};
  ifr.ifr_flags = (short)(IFF_TAP | IFF_NO_PI | (vnet_hdr ? IFF_VNET_HDR : 0));
  memcpy(ifr.ifr_name, ifname, strnlen(ifname, IFNAMSIZ - 1));
  if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
    int e = errno;
    return vs_error_set(err, e, "tap %s: attach (TUNSETIFF)%s", ifname,
                        e == EPERM   ? " needs CAP_NET_ADMIN, or a tap made for this user "
                                       "(ip tuntap add NAME mode tap user USER)"
                        : e == EBUSY ? " failed: is another process using it?"
                                     : "");
  }
  if (vnet_hdr && tap_setup_vnet_hdr(fd, ifname, err) < 0)
    return -1;
  /* Plain frames: clear offloads a previous user (killed before it could) left on a persistent
   * tap, else the kernel would hand us unsegmented packets. Best effort: old kernels lack it. */
  if (!vnet_hdr)
    (void)ioctl(fd, TUNSETOFFLOAD, 0ul);
  memcpy(name, ifr.ifr_name, IFNAMSIZ);
  name[IFNAMSIZ - 1] = '\0';
  return steal_fd(&fd);
}

/* Attach with the header when opts allow it. "auto" falls back to plain frames when the kernel
 * or the tap refuses the header: an error attaching at all then shows in the second attempt. */
static int tap_attach_for(const netdev_opts *opts, bool *vnet_hdr, char name[IFNAMSIZ],
                          vs_error **err) {
  *vnet_hdr = opts->vnet_hdr != NETDEV_VNET_HDR_OFF;
  if (opts->vnet_hdr != NETDEV_VNET_HDR_AUTO)
    return tap_attach(opts->ifname, *vnet_hdr, name, err);
  _cleanup_error_ vs_error *hdr_err = NULL;
  int fd = tap_attach(opts->ifname, true, name, &hdr_err);
  if (fd >= 0)
    return fd;
  vs_log_info("%s; using plain frames (checksums and segmentation in the VMM)", hdr_err->msg);
  *vnet_hdr = false;
  return tap_attach(opts->ifname, false, name, err);
}

netdev *netdev_tap_open(const netdev_opts *opts, netdev_peer peer, vs_error **err) {
  char name[IFNAMSIZ];
  bool vnet_hdr;
  int fd = tap_attach_for(opts, &vnet_hdr, name, err);
  if (fd < 0)
    return NULL;
  netdev_tap *t = vs_malloc0(sizeof(*t));
  t->base = (netdev){
      .ops = &tap_ops, .peer = peer, .name = "tap", .rx_csum_valid = false, .vnet_hdr = vnet_hdr};
  t->fd = fd;
  t->poll_idx = -1;
  memcpy(t->ifname, name, sizeof(t->ifname));
  return &t->base;
}
