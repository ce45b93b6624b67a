/* A host tap interface: frames go to and come from IFNAME through /dev/net/tun (IFF_TAP, no
 * packet information header). The tap is attached as the host set it up; a tap that does not exist
 * yet is created (needs CAP_NET_ADMIN) and disappears when the VMM exits.
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

#include "vm/machine.h"
#include "vm/netdev/netdev.h"

/* Frames handed over per dispatch, so that a flood cannot starve the harts. */
#define TAP_READ_BUDGET 64
#define TAP_FRAME_MAX 65600

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

static void tap_destroy(netdev *nd) {
  netdev_tap *t = tap_of(nd);
  if (t->fd >= 0)
    close(t->fd);
  free(t);
}

static const netdev_ops tap_ops = {
    .send = tap_send,
    .prepare = tap_prepare,
    .dispatch = tap_dispatch,
    .destroy = tap_destroy,
};

netdev *netdev_tap_open(const netdev_opts *opts, netdev_peer peer, vs_error **err) {
  _cleanup_close_ int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    vs_error_set(err, errno, "tap %s: open /dev/net/tun", opts->ifname);
    return NULL;
  }
  struct ifreq ifr = {0};
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
  memcpy(ifr.ifr_name, opts->ifname, strnlen(opts->ifname, IFNAMSIZ - 1));
  if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
    int e = errno;
    vs_error_set(err, e, "tap %s: attach (TUNSETIFF)%s", opts->ifname,
                 e == EPERM   ? " needs CAP_NET_ADMIN, or a tap made for this user "
                                "(ip tuntap add NAME mode tap user USER)"
                 : e == EBUSY ? " failed: is another process using it?"
                              : "");
    return NULL;
  }
  netdev_tap *t = vs_malloc0(sizeof(*t));
  t->base = (netdev){.ops = &tap_ops, .peer = peer, .name = "tap", .rx_csum_valid = false};
  t->fd = steal_fd(&fd);
  t->poll_idx = -1;
  memcpy(t->ifname, ifr.ifr_name, sizeof(t->ifname));
  t->ifname[IFNAMSIZ - 1] = '\0';
  return &t->base;
}
