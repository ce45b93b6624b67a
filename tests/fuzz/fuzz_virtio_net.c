/* libFuzzer harness for virtio-net and the --net option parser. The input is a --net spec (up
 * to the first NUL), then 24 bytes choosing features and ring addresses, then the guest RAM
 * image (rings, descriptors, headers, frames: all hostile). The device transmits whatever the
 * rings say, runs the control commands they hold and receives frames cut from the input (after a
 * virtio-net header cut from the input too, when the fake backend carries the header); it must
 * never crash, hang, hand the backend a frame longer than a TSO packet or a header the host kernel
 * should not see, or touch memory outside the fake guest RAM. */
#include "vm/dev/virtio.h"
#include "vm/netdev/netdev.h"

#include <stdlib.h>
#include <string.h>

#define RAM_BASE 0x80000000ull
#define RAM_SIZE (64u << 10)
#define MTU 1500

static void irq_set(void *ctrl, unsigned irq, bool level) {}

/* What the device may hand a backend that carries the header: NEEDS_CSUM at most, a partial
 * checksum inside the frame and after the Ethernet header, TCP TSO with a usable gso_size and
 * hdr_len; fields that mean nothing for the packet are zero. */
static void check_header(const uint8_t *h, size_t len) {
  uint16_t hdr_len = (uint16_t)(h[2] | h[3] << 8), gso_size = (uint16_t)(h[4] | h[5] << 8);
  uint16_t start = (uint16_t)(h[6] | h[7] << 8), coff = (uint16_t)(h[8] | h[9] << 8);
  size_t frame = len - VIRTIO_NET_HDR_SIZE;
  if ((h[0] & ~1) || (h[1] != 0 && h[1] != 1 && h[1] != 4))
    abort();
  if ((h[0] & 1) ? start < 14 || (size_t)start + coff + 2 > frame : start || coff)
    abort();
  if (h[1] ? !(h[0] & 1) || coff != 16 || !gso_size || gso_size == 0xffff || hdr_len > frame
           : hdr_len || gso_size || frame > MTU + VIRTIO_NET_LINK_OVERHEAD)
    abort();
}

static void check_send(void *opaque, const uint8_t *frame, size_t len) {
  bool vnet_hdr = opaque != NULL;
  if (len > VIRTIO_NET_MAX_GSO_FRAME + (vnet_hdr ? VIRTIO_NET_HDR_SIZE : 0))
    abort();
  if (vnet_hdr)
    check_header(frame, len);
  volatile uint8_t sink = 0;
  for (size_t i = 0; i < len; i++)
    sink ^= frame[i]; /* ASan sees every byte the backend would read */
  (void)sink;
}

static void setup_queue(virtio_mmio *t, unsigned q, uint32_t size_bits, uint32_t where) {
  virtio_mmio_write(t, 0x030, 4, q);
  virtio_mmio_write(t, 0x038, 4, 1u << (size_bits & 15)); /* sometimes invalid */
  virtio_mmio_write(t, 0x080, 4, (uint32_t)RAM_BASE + (where & 0xfff0));
  virtio_mmio_write(t, 0x084, 4, 0);
  virtio_mmio_write(t, 0x090, 4, (uint32_t)RAM_BASE + ((where >> 16) & 0xfffe));
  virtio_mmio_write(t, 0x094, 4, 0);
  virtio_mmio_write(t, 0x0a0, 4, (uint32_t)RAM_BASE + ((size_bits >> 4) & 0xfffc));
  virtio_mmio_write(t, 0x0a4, 4, 0);
  virtio_mmio_write(t, 0x044, 4, 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static virtio_net net;
  static bool logging;
  if (!logging) {
    vs_log_configure("fuzz_virtio_net", VS_LOG_ERROR, VS_LOG_FORMAT_TEXT, 2);
    logging = true;
  }
  const uint8_t *nul = memchr(data, 0, size < 256 ? size : 256);
  if (!nul)
    return 0;
  netdev_opts opts;
  vs_error *err = NULL;
  if (netdev_parse_spec((const char *)data, &opts, &err) < 0)
    vs_error_free(err);
  size_t off = (size_t)(nul - data) + 1;
  if (size - off < 24)
    return 0;
  uint32_t w[6];
  memcpy(w, data + off, sizeof(w));
  off += sizeof(w);

  /* exactly RAM_SIZE bytes so ASan catches any access past guest RAM */
  uint8_t *ram = calloc(1, RAM_SIZE);
  memcpy(ram, data + off, size - off < RAM_SIZE ? size - off : RAM_SIZE);
  static const uint8_t mac[6] = {0x52, 0x54, 0, 0x12, 0x34, 0x56};
  static int vnet_hdr_backend; /* its address marks the fake backend that carries the header */
  bool vnet_hdr = w[5] & 4;
  virtio_net_link link = {.send = check_send,
                          .opaque = vnet_hdr ? &vnet_hdr_backend : NULL,
                          .rx_csum_valid = w[5] & 1,
                          .accepts_tso = w[5] & 2,
                          .vnet_hdr = vnet_hdr};
  virtio_net_init(&net, mac, MTU, (virtio_mem){.ram = ram, .base = RAM_BASE, .size = RAM_SIZE},
                  (dev_irq_line){.set = irq_set}, link);
  virtio_mmio *t = &net.mmio;
  virtio_mmio_write(t, 0x070, 4, 1);
  virtio_mmio_write(t, 0x070, 4, 3);
  virtio_mmio_write(t, 0x024, 4, 0);
  virtio_mmio_write(t, 0x020, 4, w[0]);
  virtio_mmio_write(t, 0x024, 4, 1);
  virtio_mmio_write(t, 0x020, 4, 1);
  virtio_mmio_write(t, 0x070, 4, 11);
  setup_queue(t, 0, w[1], w[2]);
  setup_queue(t, 1, w[3], w[4]);
  setup_queue(t, 2, w[3] >> 8 | w[1] << 24, w[4] ^ w[2]); /* the control queue */
  virtio_mmio_write(t, 0x070, 4, 15);
  for (int i = 0; i < 4; i++) {
    virtio_mmio_write(t, 0x050, 4, 1);
    virtio_mmio_write(t, 0x050, 4, 2);
    /* a frame for the guest: a slice of the input, sometimes larger than the MTU */
    size_t flen = (w[5] >> (8 * (i & 3))) % (size - off + 1);
    virtio_net_can_receive(&net);
    virtio_net_receive(&net, data + off, flen);
    if (i & 1)
      virtio_net_flush(&net);
    virtio_mmio_write(t, 0x050, 4, 0);
    uint64_t v;
    virtio_mmio_read(t, 0x060, 4, &v);
    virtio_mmio_write(t, 0x064, 4, (uint32_t)v);
    /* the driver side moves on: bump both available indexes a little */
    uint64_t avail[2] = {(w[2] >> 16) & 0xfffe, (w[4] >> 16) & 0xfffe};
    for (int q = 0; q < 2; q++)
      if (avail[q] + 4 <= RAM_SIZE)
        ram[avail[q] + 2] = (uint8_t)(ram[avail[q] + 2] + (w[5] >> (16 + q)) % 3);
  }
  virtio_mmio_write(t, 0x070, 4, 0);
  virtio_net_destroy(&net);
  free(ram);
  return 0;
}
