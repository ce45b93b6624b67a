/* User-mode networking through libslirp: the guest sees a 10.0.2.0/24 network (QEMU's layout)
 * with a gateway at 10.0.2.2 that is the host itself (its loopback included), DNS at 10.0.2.3
 * forwarded to the host's resolver, DHCP handing out 10.0.2.15 onwards, and IPv6 on fec0::/64.
 * The guest's connections become ordinary sockets of the VMM process; hostfwd listens on host
 * ports and connects into the guest.
 *
 * slirp is single-threaded and driven from the run loop: prepare lets slirp fill its descriptors
 * into the loop's poll set (and shorten the wait for its TCP timers), dispatch hands back what
 * became ready. slirp runs its TCP timers inside slirp_pollfds_poll, so a round that ended
 * without dispatch (a timeout) is completed with an empty poll at the next prepare. Its other
 * timers (IPv6 router advertisements) live in a small table checked on both sides of the wait.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <libslirp.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "vm/dev/virtio.h"
#include "vm/machine.h"
#include "vm/netdev/netdev.h"

#define USER_MAX_TIMERS 4

typedef struct user_timer {
  bool in_use, armed;
  SlirpTimerId id;
  void *cb_opaque;
  int64_t expire_ms;
} user_timer;

typedef struct netdev_user {
  netdev base; /* first */
  Slirp *slirp;
  user_timer timers[USER_MAX_TIMERS];
  vm_pollset *fill_ps;       /* during slirp_pollfds_fill */
  const vm_pollset *poll_ps; /* during slirp_pollfds_poll; NULL: nothing became ready */
  bool filled;               /* descriptors filled and not yet polled */
} netdev_user;

static netdev_user *user_of(netdev *nd) { return (netdev_user *)nd; }

static int64_t clock_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ------------------------------------------------------------------ slirp's callbacks */

static ssize_t cb_send_packet(const void *buf, size_t len, void *opaque) {
  netdev_user *u = opaque;
  u->base.peer.receive(u->base.peer.opaque, buf, len);
  return (ssize_t)len;
}

static void cb_guest_error(const char *msg, void *opaque) {
  (void)opaque;
  /* the guest controls how often this happens: not above debug level */
  vs_log(VS_LOG_DEBUG, "user network: guest error: %s", msg);
}

static int64_t cb_clock_get_ns(void *opaque) {
  (void)opaque;
  return clock_ns();
}

static void *cb_timer_new_opaque(SlirpTimerId id, void *cb_opaque, void *opaque) {
  netdev_user *u = opaque;
  for (unsigned i = 0; i < USER_MAX_TIMERS; i++) {
    user_timer *t = &u->timers[i];
    if (!t->in_use) {
      *t = (user_timer){.in_use = true, .id = id, .cb_opaque = cb_opaque};
      return t;
    }
  }
  /* slirp 4.7 has one timer per instance; more would be a programming error */
  abort();
}

static void cb_timer_free(void *timer, void *opaque) {
  (void)opaque;
  if (timer)
    *(user_timer *)timer = (user_timer){0};
}

static void cb_timer_mod(void *timer, int64_t expire_ms, void *opaque) {
  (void)opaque;
  user_timer *t = timer;
  t->armed = true;
  t->expire_ms = expire_ms;
}

static void cb_poll_fd_nop(int fd, void *opaque) {
  (void)fd;
  (void)opaque;
}

static void cb_notify_nop(void *opaque) { (void)opaque; }

static int cb_add_poll(int fd, int events, void *opaque) {
  netdev_user *u = opaque;
  short ev = 0;
  if (events & SLIRP_POLL_IN)
    ev |= POLLIN;
  if (events & SLIRP_POLL_OUT)
    ev |= POLLOUT;
  if (events & SLIRP_POLL_PRI)
    ev |= POLLPRI;
  return vm_pollset_add(u->fill_ps, fd, ev);
}

static int cb_get_revents(int idx, void *opaque) {
  netdev_user *u = opaque;
  int rev = u->poll_ps ? vm_pollset_revents(u->poll_ps, idx) : 0;
  int ev = 0;
  if (rev & POLLIN)
    ev |= SLIRP_POLL_IN;
  if (rev & POLLOUT)
    ev |= SLIRP_POLL_OUT;
  if (rev & POLLPRI)
    ev |= SLIRP_POLL_PRI;
  if (rev & (POLLERR | POLLNVAL))
    ev |= SLIRP_POLL_ERR;
  if (rev & POLLHUP)
    ev |= SLIRP_POLL_HUP;
  return ev;
}

static const SlirpCb user_callbacks = {
    .send_packet = cb_send_packet,
    .guest_error = cb_guest_error,
    .clock_get_ns = cb_clock_get_ns,
    .timer_free = cb_timer_free,
    .timer_mod = cb_timer_mod,
    .register_poll_fd = cb_poll_fd_nop,
    .unregister_poll_fd = cb_poll_fd_nop,
    .notify = cb_notify_nop,
    .timer_new_opaque = cb_timer_new_opaque,
};

/* ------------------------------------------------------------------ the run loop's side */

static void run_due_timers(netdev_user *u) {
  int64_t now_ms = clock_ns() / 1000000;
  for (unsigned i = 0; i < USER_MAX_TIMERS; i++) {
    user_timer *t = &u->timers[i];
    if (t->in_use && t->armed && t->expire_ms <= now_ms) {
      t->armed = false;
      slirp_handle_timer(u->slirp, t->id, t->cb_opaque);
    }
  }
}

static void wake_for_timers(const netdev_user *u, vm_pollset *ps) {
  int64_t now_ns = clock_ns();
  for (unsigned i = 0; i < USER_MAX_TIMERS; i++) {
    const user_timer *t = &u->timers[i];
    if (t->in_use && t->armed)
      vm_pollset_wake_within(ps, t->expire_ms * 1000000 - now_ns);
  }
}

static void poll_slirp(netdev_user *u, const vm_pollset *ready) {
  u->poll_ps = ready;
  slirp_pollfds_poll(u->slirp, 0, cb_get_revents, u);
  u->poll_ps = NULL;
  u->filled = false;
}

static void user_prepare(netdev *nd, vm_pollset *ps) {
  netdev_user *u = user_of(nd);
  if (u->filled)
    poll_slirp(u, NULL); /* the last wait timed out: let slirp run its TCP timers */
  run_due_timers(u);
  int64_t ms = ps->timeout_ns / 1000000;
  uint32_t timeout_ms = ms > (int64_t)UINT32_MAX ? UINT32_MAX : (uint32_t)ms;
  u->fill_ps = ps;
  slirp_pollfds_fill(u->slirp, &timeout_ms, cb_add_poll, u);
  u->fill_ps = NULL;
  u->filled = true;
  vm_pollset_wake_within(ps, (int64_t)timeout_ms * 1000000);
  wake_for_timers(u, ps);
}

static void user_dispatch(netdev *nd, const vm_pollset *ps) {
  netdev_user *u = user_of(nd);
  if (u->filled)
    poll_slirp(u, ps);
  run_due_timers(u);
}

static void user_send(netdev *nd, const uint8_t *frame, size_t len) {
  slirp_input(user_of(nd)->slirp, frame, (int)len);
}

static void user_destroy(netdev *nd) {
  netdev_user *u = user_of(nd);
  if (u->slirp)
    slirp_cleanup(u->slirp);
  free(u);
}

static const netdev_ops user_ops = {
    .send = user_send,
    .prepare = user_prepare,
    .dispatch = user_dispatch,
    .destroy = user_destroy,
};

/* ------------------------------------------------------------------ set-up */

static struct in_addr ipv4(const char *s) {
  struct in_addr a;
  inet_pton(AF_INET, s, &a);
  return a;
}

static struct in6_addr ipv6(const char *s) {
  struct in6_addr a;
  inet_pton(AF_INET6, s, &a);
  return a;
}

static int add_hostfwd(netdev_user *u, const netdev_hostfwd *fw, vs_error **err) {
  char host[INET_ADDRSTRLEN], guest[INET_ADDRSTRLEN];
  inet_ntop(AF_INET, &fw->host_addr, host, sizeof(host));
  inet_ntop(AF_INET, &fw->guest_addr, guest, sizeof(guest));
  struct in_addr net = ipv4("10.0.2.0");
  if ((fw->guest_addr.s_addr & htonl(0xffffff00)) != net.s_addr)
    return vs_error_set(err, EINVAL,
                        "hostfwd to %s: not an address of the guest network 10.0.2.0/24", guest);
  errno = 0;
  if (slirp_add_hostfwd(u->slirp, fw->udp, fw->host_addr, fw->host_port, fw->guest_addr,
                        fw->guest_port) < 0)
    return vs_error_set(err, errno ? errno : EADDRINUSE, "hostfwd %s:%s:%u-%s:%u: cannot listen",
                        fw->udp ? "udp" : "tcp", host, fw->host_port, guest, fw->guest_port);
  return 0;
}

/* What the device learns from a user backend (offered features, receive headers). */
static netdev user_link(const netdev_ops *ops, netdev_peer peer) {
  /* slirp terminates the guest's TCP itself: a 64 KiB segment is as good as 45 small ones */
  return (netdev){
      .ops = ops, .peer = peer, .name = "user", .rx_csum_valid = true, .accepts_tso = true};
}

static void offline_send(netdev *nd, const uint8_t *frame, size_t len) {
  (void)nd;
  (void)frame;
  (void)len;
}

static void offline_prepare(netdev *nd, vm_pollset *ps) {
  (void)nd;
  (void)ps;
}

static void offline_dispatch(netdev *nd, const vm_pollset *ps) {
  (void)nd;
  (void)ps;
}

static void offline_destroy(netdev *nd) { free(nd); }

static const netdev_ops offline_ops = {
    .send = offline_send,
    .prepare = offline_prepare,
    .dispatch = offline_dispatch,
    .destroy = offline_destroy,
};

netdev *netdev_user_offline(netdev_peer peer) {
  netdev *nd = vs_malloc0(sizeof(*nd));
  *nd = user_link(&offline_ops, peer);
  return nd;
}

netdev *netdev_user_open(const netdev_opts *opts, netdev_peer peer, vs_error **err) {
  netdev_user *u = vs_malloc0(sizeof(*u));
  u->base = user_link(&user_ops, peer);
  unsigned mtu = opts->mtu ? opts->mtu : VIRTIO_NET_DEFAULT_MTU;
  SlirpConfig cfg = {
      .version = 4,
      .in_enabled = true,
      .vnetwork = ipv4("10.0.2.0"),
      .vnetmask = ipv4("255.255.255.0"),
      .vhost = ipv4("10.0.2.2"),
      .in6_enabled = true,
      .vprefix_addr6 = ipv6("fec0::"),
      .vprefix_len = 64,
      .vhost6 = ipv6("fec0::2"),
      .vdhcp_start = ipv4(NETDEV_USER_GUEST_ADDR),
      .vnameserver = ipv4("10.0.2.3"),
      .vnameserver6 = ipv6("fec0::3"),
      .if_mtu = mtu,
      .if_mru = mtu,
  };
  u->slirp = slirp_new(&cfg, &user_callbacks, u);
  if (!u->slirp) {
    free(u);
    vs_error_set(err, 0, "user network: libslirp could not start");
    return NULL;
  }
  for (unsigned i = 0; i < opts->nhostfwd; i++) {
    if (add_hostfwd(u, &opts->hostfwd[i], err) < 0) {
      user_destroy(&u->base);
      return NULL;
    }
  }
  return &u->base;
}
