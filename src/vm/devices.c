/* The machine's network, console and entropy devices: virtio-net with its backend (one per --net),
 * virtio-console (--console virtio), virtio-balloon (--balloon) and virtio-rng. They take the
 * virtio-mmio slots after the disks, in that order; each network backend is an I/O source of the
 * run loop.
 */
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "vm/machine.h"
#include "vm/netdev/netdev.h"

/* QEMU's first NIC address; the n-th NIC gets ...:56 + n (locally administered, unicast). */
static const uint8_t default_mac[6] = {0x52, 0x54, 0x00, 0x12, 0x34, 0x56};

int vm_net_check_spec(const char *spec, vs_error **err) {
  netdev_opts o;
  return netdev_parse_spec(spec, &o, err);
}

/* virtio_net_link.send and the backend's I/O source hooks. */
static void net_send(void *opaque, const uint8_t *frame, size_t len) {
  netdev_send(opaque, frame, len);
}
/* virtio_net_link.set_offloads. A backend that cannot change them keeps what it had: the device
 * checks every header from it against the guest's features anyway. */
static void net_set_offloads(void *opaque, virtio_net_offloads off) {
  netdev *nd = opaque;
  vs_error *err = NULL;
  netdev_offloads o = {.csum = off.csum, .tso4 = off.tso4, .tso6 = off.tso6};
  if (netdev_set_offloads(nd, o, &err) < 0) {
    vs_log_warn("network backend %s: %s", nd->name, err->msg);
    vs_error_free(err);
  }
}
/* The I/O source of a NIC (opaque: the device, whose link leads to its backend): the backend,
 * then the frames it produced go to the guest together. */
static void net_prepare(void *opaque, vm_pollset *ps) {
  virtio_net *n = opaque;
  netdev_prepare(n->link.opaque, ps);
  virtio_net_flush(n);
}
static void net_dispatch(void *opaque, const vm_pollset *ps) {
  virtio_net *n = opaque;
  netdev_dispatch(n->link.opaque, ps);
  virtio_net_flush(n);
}

static int add_net(vm *m, unsigned i, vs_error **err) {
  netdev_opts o;
  vm_virtio_slot slot;
  if (netdev_parse_spec(m->cfg.nets[i], &o, err) < 0 ||
      vm_virtio_claim(m, "virtio-net", &slot, err) < 0)
    return -1;
  uint8_t mac[6];
  memcpy(mac, default_mac, sizeof(mac));
  mac[5] = (uint8_t)(mac[5] + i);
  if (o.mac_set)
    memcpy(mac, o.mac, sizeof(mac));
  virtio_net *n = vs_malloc0(sizeof(*n));
  m->net[i] = n;
  netdev_peer peer = {virtio_net_can_receive, virtio_net_receive, n};
  netdev *nd = m->cfg.net_offline ? netdev_offline_open(&o, peer, err) : netdev_open(&o, peer, err);
  if (!nd)
    return -1;
  m->netdev[i] = nd;
  virtio_net_link link = {.send = net_send,
                          .opaque = nd,
                          .rx_csum_valid = nd->rx_csum_valid,
                          .accepts_tso = nd->accepts_tso,
                          .vnet_hdr = nd->vnet_hdr,
                          .set_offloads = net_set_offloads};
  uint16_t mtu = (uint16_t)(o.mtu ? o.mtu : VIRTIO_NET_DEFAULT_MTU);
  virtio_net_init(n, mac, mtu, vm_virtio_mem(m), vm_virtio_irq(m, &slot), link);
  vm_virtio_map(m, &slot, "virtio-net", &n->mmio);
  vm_io_source src = {nd->name, net_prepare, net_dispatch, n};
  return vm_add_io_source(m, &src, err);
}

void vm_io_devices_announce(vm *m) {
  for (unsigned i = 0; i < VM_MAX_NICS; i++) {
    if (!m->net[i] || !m->netdev[i])
      continue;
    netdev *nd = m->netdev[i];
    /* RFC 903 reverse ARP "request reverse", sender and target the NIC's own MAC */
    uint8_t frame[12 + 60] = {0};
    size_t hdr = nd->vnet_hdr ? 12 : 0; /* a zero virtio-net header: nothing to offload */
    uint8_t *f = frame + hdr;
    const uint8_t *mac = m->net[i]->st.mac;
    memset(f, 0xff, 6);
    memcpy(f + 6, mac, 6);
    f[12] = 0x80; /* ethertype 0x8035: RARP */
    f[13] = 0x35;
    static const uint8_t arp_hdr[8] = {0, 1, 0x08, 0x00, 6, 4, 0, 3};
    memcpy(f + 14, arp_hdr, sizeof(arp_hdr));
    memcpy(f + 22, mac, 6); /* sender hardware address; sender IP 0 */
    memcpy(f + 32, mac, 6); /* target hardware address; target IP 0 */
    netdev_send(nd, frame, hdr + 60);
  }
}

static int add_console(vm *m, vs_error **err) {
  if (m->cfg.console != VM_CONSOLE_VIRTIO)
    return 0;
  vm_virtio_slot slot;
  if (vm_virtio_claim(m, "virtio-console", &slot, err) < 0)
    return -1;
  m->vconsole = vs_malloc0(sizeof(*m->vconsole));
  virtio_console_init(m->vconsole, m->cfg.console_out, vm_virtio_mem(m), vm_virtio_irq(m, &slot));
  vm_virtio_map(m, &slot, "virtio-console", &m->vconsole->mmio);
  return 0;
}

/* The default (VM_RNG_AUTO) gives way to devices the user asked for when the slots run out. */
static int add_rng(vm *m, vs_error **err) {
  if (m->cfg.rng == VM_RNG_OFF || (m->cfg.rng == VM_RNG_AUTO && m->num_virtio == VM_MAX_VIRTIO))
    return 0;
  vm_virtio_slot slot;
  if (vm_virtio_claim(m, "virtio-rng", &slot, err) < 0)
    return -1;
  m->rng = vs_malloc0(sizeof(*m->rng));
  virtio_rng_init(m->rng, vm_virtio_mem(m), vm_virtio_irq(m, &slot));
  vm_virtio_map(m, &slot, "virtio-rng", &m->rng->mmio);
  return 0;
}

static int add_balloon(vm *m, vs_error **err) {
  if (!m->cfg.balloon)
    return 0;
  vm_virtio_slot slot;
  if (vm_virtio_claim(m, "virtio-balloon", &slot, err) < 0)
    return -1;
  m->balloon = vs_malloc0(sizeof(*m->balloon));
  virtio_balloon_init(m->balloon, vm_virtio_mem(m), vm_virtio_irq(m, &slot));
  vm_virtio_map(m, &slot, "virtio-balloon", &m->balloon->mmio);
  return 0;
}

int vm_add_io_devices(vm *m, vs_error **err) {
  if (m->cfg.nnets > VM_MAX_NICS)
    return vs_error_set(err, 0, "too many network devices (%u, at most %d)", m->cfg.nnets,
                        VM_MAX_NICS);
  for (unsigned i = 0; i < m->cfg.nnets; i++)
    if (add_net(m, i, err) < 0)
      return vs_error_wrap(err, "network device %u", i);
  /* the balloon before the rng: the default rng gives way when the slots run out */
  return add_console(m, err) < 0 || add_balloon(m, err) < 0 || add_rng(m, err) < 0 ? -1 : 0;
}

void vm_destroy_io_devices(vm *m) {
  for (unsigned i = 0; i < VM_MAX_NICS; i++) {
    netdev_close(m->netdev[i]);
    m->netdev[i] = NULL;
    if (m->net[i])
      virtio_net_destroy(m->net[i]);
    free(m->net[i]);
    m->net[i] = NULL;
  }
  free(m->vconsole);
  m->vconsole = NULL;
  free(m->rng);
  m->rng = NULL;
  free(m->balloon);
  m->balloon = NULL;
}

/* ------------------------------------------------------------------ snapshots */

void vm_io_devices_save(vm *m, vmstate_writer *w) {
  for (unsigned i = 0; i < m->cfg.nnets; i++)
    virtio_net_save(m->net[i], w);
  if (m->vconsole)
    virtio_console_save(m->vconsole, w);
  if (m->balloon)
    virtio_balloon_save(m->balloon, w);
  if (m->rng)
    virtio_rng_save(m->rng, w);
}

int vm_io_devices_load(vm *m, vmstate_reader *r, vs_error **err) {
  for (unsigned i = 0; i < m->cfg.nnets; i++)
    if (virtio_net_load(m->net[i], r, err) < 0)
      return -1;
  if (m->vconsole && virtio_console_load(m->vconsole, r, err) < 0)
    return -1;
  if (m->balloon && virtio_balloon_load(m->balloon, r, err) < 0)
    return vs_error_wrap(err, "balloon");
  if (m->rng && virtio_rng_load(m->rng, r, err) < 0)
    return -1;
  return 0;
}

/* A clone's NICs: the address its --net spec gives (the daemon's, whose DHCP knows it), or new
 * locally administered addresses (52:54:00 and three random bytes), so clones on one bridge do
 * not collide with each other or with their original. */
void vm_io_devices_new_identity(vm *m) {
  for (unsigned i = 0; i < m->cfg.nnets; i++) {
    uint8_t mac[6] = {0x52, 0x54, 0x00, 0, 0, 0};
    netdev_opts o;
    if (netdev_parse_spec(m->cfg.nets[i], &o, NULL) == 0 && o.mac_set)
      memcpy(mac, o.mac, sizeof(mac));
    else if (getrandom(mac + 3, 3, 0) != 3)
      mac[5] = (uint8_t)(mac[5] ^ (uint8_t)getpid() ^ (uint8_t)i);
    virtio_net_set_mac(m->net[i], mac);
  }
}
