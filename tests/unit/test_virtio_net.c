/* virtio-net with a fake backend, virtio-console, virtio-rng, virtio-balloon and the --net option
 * parser, driven through the MMIO registers like a guest driver would, with a fake guest RAM.
 * Hostile chains must put the device in DEVICE_NEEDS_RESET or drop the packet, never crash. */
#include "tap.h"
#include "virtio_guest.h"
#include "vm/dev/virtio.h"
#include "vm/netdev/netdev.h"

#include <arpa/inet.h>
#include <endian.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

/* rings of queue q at RING(q) + {0, 0x1000, 0x2000} */
#define RING(q) (RAM_BASE + 0x1000 + 0x4000ull * (q))
#define BUFS (RAM_BASE + 0x20000)

#define F_CSUM (1u << 0)
#define F_GUEST_CSUM (1u << 1)
#define F_MTU (1u << 3)
#define F_GUEST_TSO4 (1u << 7)
#define F_GUEST_TSO6 (1u << 8)
#define F_MAC (1u << 5)
#define F_HOST_TSO4 (1u << 11)
#define F_HOST_TSO6 (1u << 12)
#define F_MRG_RXBUF (1u << 15)
#define F_STATUS (1u << 16)

static virtio_mmio *dev; /* the device under test */
static virtio_net net;
static int irq_level;
static uint16_t avail_idx[4];

/* the fake backend: the last frame the device sent */
static uint8_t sent[70000];
static size_t sent_len;
static unsigned sent_count;

static bool link_tso;                /* the fake backend takes TSO packets */
static bool link_vnet_hdr;           /* the fake backend carries the virtio-net header */
static virtio_net_offloads offloads; /* what the device last told the fake backend */
static unsigned offload_calls;

static void irq_set(void *ctrl, unsigned irq, bool level) { irq_level = level; }

static void fake_set_offloads(void *opaque, virtio_net_offloads off) {
  offloads = off;
  offload_calls++;
}

static void fake_send(void *opaque, const uint8_t *frame, size_t len) {
  memcpy(sent, frame, len);
  sent_len = len;
  sent_count++;
}

static uint32_t mmio_r(uint64_t off) {
  uint64_t v = 0;
  CHECK(virtio_mmio_read(dev, off, 4, &v));
  return (uint32_t)v;
}
static void mmio_w(uint64_t off, uint32_t v) { CHECK(virtio_mmio_write(dev, off, 4, v)); }

static void set_desc(unsigned q, unsigned i, uint64_t addr, uint32_t len, uint16_t flags,
                     uint16_t next) {
  uint64_t d = RING(q) + 16ull * i;
  w64(d, addr);
  w32(d + 8, len);
  w16(d + 12, flags);
  w16(d + 14, next);
}

static void setup_queue(unsigned q) {
  mmio_w(0x030, q);
  mmio_w(0x038, QSIZE);
  mmio_w(0x080, (uint32_t)RING(q));
  mmio_w(0x084, (uint32_t)(RING(q) >> 32));
  mmio_w(0x090, (uint32_t)(RING(q) + 0x1000));
  mmio_w(0x094, 0);
  mmio_w(0x0a0, (uint32_t)(RING(q) + 0x2000));
  mmio_w(0x0a4, 0);
  mmio_w(0x044, 1);
}

/* The driver's side of the handshake with the given feature bits (low word). */
static void bring_up(uint32_t features_lo, unsigned nqueues) {
  avail_idx[0] = avail_idx[1] = avail_idx[2] = avail_idx[3] = 0;
  irq_level = 0;
  mmio_w(0x070, VIRTIO_STATUS_ACKNOWLEDGE);
  mmio_w(0x070, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
  mmio_w(0x024, 0);
  mmio_w(0x020, features_lo);
  mmio_w(0x024, 1);
  mmio_w(0x020, 1); /* VERSION_1 */
  mmio_w(0x070, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK);
  CHECK(mmio_r(0x070) & VIRTIO_STATUS_FEATURES_OK);
  for (unsigned q = 0; q < nqueues; q++)
    setup_queue(q);
  mmio_w(0x070, mmio_r(0x070) | VIRTIO_STATUS_DRIVER_OK);
}

static void fresh_ram(void) {
  if (!ram)
    ram = aligned_alloc(4096, RAM_SIZE);
  memset(ram, 0, RAM_SIZE);
}

static void setup_net(uint32_t features_lo, uint16_t mtu, bool csum_valid) {
  fresh_ram();
  virtio_net_destroy(&net);
  static const uint8_t mac[6] = {0x52, 0x54, 0x00, 0x12, 0x34, 0x56};
  dev_irq_line line = {.set = irq_set, .irq = 1};
  virtio_net_link link = {.send = fake_send,
                          .rx_csum_valid = csum_valid,
                          .accepts_tso = link_tso,
                          .vnet_hdr = link_vnet_hdr,
                          .set_offloads = fake_set_offloads};
  offloads = (virtio_net_offloads){0};
  offload_calls = 0;
  virtio_net_init(&net, mac, mtu, (virtio_mem){.ram = ram, .base = RAM_BASE, .size = RAM_SIZE},
                  line, link);
  dev = &net.mmio;
  sent_len = sent_count = 0;
  CHECK_EQ(mmio_r(0x008), VIRTIO_ID_NET);
  bring_up(features_lo, 2);
}

/* Publish head on queue q and notify. */
static void kick(unsigned q, uint16_t head) {
  w16(RING(q) + 0x1000 + 4 + 2 * (avail_idx[q] % QSIZE), head);
  avail_idx[q]++;
  w16(RING(q) + 0x1000 + 2, avail_idx[q]);
  mmio_w(0x050, q);
}

/* Publish head on the receive queue without a notification (a NAPI-polling driver). */
static void post_rx(uint16_t head) {
  w16(RING(0) + 0x1000 + 4 + 2 * (avail_idx[0] % QSIZE), head);
  avail_idx[0]++;
  w16(RING(0) + 0x1000 + 2, avail_idx[0]);
}

static uint16_t used_idx(unsigned q) { return r16(RING(q) + 0x2000 + 2); }
static uint32_t used_id(unsigned q, uint16_t i) {
  return r32(RING(q) + 0x2000 + 4 + 8 * (i % QSIZE));
}
static uint32_t used_len(unsigned q, uint16_t i) {
  return r32(RING(q) + 0x2000 + 4 + 8 * (i % QSIZE) + 4);
}

static bool needs_reset(void) { return mmio_r(0x070) & VIRTIO_STATUS_NEEDS_RESET; }

/* A transmit chain at BUFS: header (flags, gso, csum_start, csum_offset) + frame. */
static void make_tx(uint8_t flags, uint8_t gso, uint16_t cstart, uint16_t coff,
                    const uint8_t *frame, size_t len) {
  uint8_t *h = gp(BUFS);
  memset(h, 0, VIRTIO_NET_HDR_SIZE);
  h[0] = flags;
  h[1] = gso;
  w16(BUFS + 6, cstart);
  w16(BUFS + 8, coff);
  memcpy(gp(BUFS + 0x100), frame, len);
  set_desc(1, 0, BUFS, VIRTIO_NET_HDR_SIZE, VIRTQ_DESC_F_NEXT, 1);
  set_desc(1, 1, BUFS + 0x100, (uint32_t)len, 0, 0);
}

/* make_tx with the GSO fields too. */
static void make_tx_gso(uint8_t flags, uint8_t gso, uint16_t hdr_len, uint16_t gso_size,
                        uint16_t cstart, uint16_t coff, const uint8_t *frame, size_t len) {
  make_tx(flags, gso, cstart, coff, frame, len);
  w16(BUFS + 2, hdr_len);
  w16(BUFS + 4, gso_size);
}

static void fill_frame(uint8_t *f, size_t len, uint8_t seed) {
  for (size_t i = 0; i < len; i++)
    f[i] = (uint8_t)(seed + i * 13);
  f[12] = 0x08; /* ethertype IPv4 */
  f[13] = 0x00;
}

TEST(net_config_space) {
  setup_net(F_MAC | F_STATUS | F_MTU, 1500, true);
  uint64_t v = 0;
  uint8_t mac[6];
  for (int i = 0; i < 6; i++) {
    CHECK(virtio_mmio_read(dev, 0x100 + i, 1, &v));
    mac[i] = (uint8_t)v;
  }
  CHECK(memcmp(mac, "\x52\x54\x00\x12\x34\x56", 6) == 0);
  CHECK(virtio_mmio_read(dev, 0x106, 2, &v));
  CHECK_EQ(v, 1); /* link up */
  CHECK(virtio_mmio_read(dev, 0x10a, 2, &v));
  CHECK_EQ(v, 1500);
  mmio_w(0x014, 0); /* DeviceFeaturesSel = 0 */
  uint32_t f = mmio_r(0x010);
  CHECK(f & F_MAC);
  CHECK(f & F_MRG_RXBUF);
  CHECK(f & F_CSUM);
}

TEST(net_tx_sends_the_frame) {
  setup_net(F_MAC, 1500, true);
  uint8_t frame[600];
  fill_frame(frame, sizeof(frame), 1);
  make_tx(0, 0, 0, 0, frame, sizeof(frame));
  kick(1, 0);
  CHECK_EQ(sent_count, 1);
  CHECK_EQ(sent_len, sizeof(frame));
  CHECK(memcmp(sent, frame, sizeof(frame)) == 0);
  CHECK_EQ(used_idx(1), 1);
  CHECK_EQ(used_id(1, 0), 0);
  CHECK_EQ(irq_level, 1);
  CHECK_EQ(net.st.tx_frames, 1);
}

/* RFC 1071 sum for the checks below */
static uint16_t sum16(const uint8_t *p, size_t len, uint32_t acc) {
  for (size_t i = 0; i + 1 < len; i += 2)
    acc += (uint32_t)p[i] << 8 | p[i + 1];
  if (len & 1)
    acc += (uint32_t)p[len - 1] << 8;
  while (acc >> 16)
    acc = (acc & 0xffff) + (acc >> 16);
  return (uint16_t)acc;
}

TEST(net_tx_completes_partial_checksum) {
  setup_net(F_MAC | F_CSUM, 1500, true);
  /* Ethernet + IPv4 (20) + UDP (8) + 101 bytes of payload */
  uint8_t f[14 + 20 + 8 + 101] = {0};
  fill_frame(f, sizeof(f), 3);
  uint8_t *ip = f + 14, *udp = ip + 20;
  memset(ip, 0, 20);
  ip[0] = 0x45;
  ip[9] = 17;
  memcpy(ip + 12, "\x0a\x00\x02\x0f\x0a\x00\x02\x02", 8);
  uint16_t udp_len = 8 + 101;
  udp[4] = (uint8_t)(udp_len >> 8);
  udp[5] = (uint8_t)udp_len;
  /* the driver leaves the pseudo-header sum in the checksum field */
  uint8_t pseudo[12];
  memcpy(pseudo, ip + 12, 8);
  pseudo[8] = 0;
  pseudo[9] = 17;
  pseudo[10] = (uint8_t)(udp_len >> 8);
  pseudo[11] = (uint8_t)udp_len;
  uint16_t ps = sum16(pseudo, sizeof(pseudo), 0);
  udp[6] = (uint8_t)(ps >> 8);
  udp[7] = (uint8_t)ps;
  make_tx(1 /* NEEDS_CSUM */, 0, 14 + 20, 6, f, sizeof(f));
  kick(1, 0);
  CHECK_EQ(sent_count, 1);
  /* the receiver's check: pseudo header + segment sums to 0xffff */
  const uint8_t *sudp = sent + 14 + 20;
  uint16_t total = sum16(sudp, udp_len, sum16(pseudo, sizeof(pseudo), 0));
  CHECK_EQ(total, 0xffff);
  CHECK(sudp[6] || sudp[7]);
}

TEST(net_tx_bad_packets_are_dropped) {
  setup_net(F_MAC, 1500, true);
  static uint8_t big[1600];
  fill_frame(big, sizeof(big), 5);
  make_tx(0, 0, 0, 0, big, 1500 + 19); /* beyond MTU + Ethernet + VLAN */
  kick(1, 0);
  CHECK_EQ(sent_count, 0);
  CHECK_EQ(used_idx(1), 1); /* the chain still comes back */
  make_tx(0, 1 /* GSO_TCPV4 */, 0, 0, big, 100);
  kick(1, 0);
  CHECK_EQ(sent_count, 0);
  make_tx(1, 0, 90, 20, big, 100); /* NEEDS_CSUM without the feature and beyond the frame */
  kick(1, 0);
  CHECK_EQ(sent_count, 0);
  set_desc(1, 0, BUFS, 4, 0, 0); /* shorter than the header */
  kick(1, 0);
  CHECK_EQ(sent_count, 0);
  CHECK_EQ(net.st.tx_dropped, 4);
  CHECK(!needs_reset());
}

TEST(net_tx_tso_packets_pass_whole_to_a_backend_that_takes_them) {
  link_tso = true;
  setup_net(F_MAC | F_CSUM | F_HOST_TSO4, 1500, true);
  mmio_w(0x014, 0);
  CHECK(mmio_r(0x010) & F_HOST_TSO4);
  CHECK(mmio_r(0x010) & F_HOST_TSO6);
  static uint8_t f[30000];
  fill_frame(f, sizeof(f), 31);
  make_tx_gso(1, 1 /* TCPV4 */, 54, 1448, 34, 16, f, sizeof(f));
  kick(1, 0);
  CHECK_EQ(sent_count, 1);
  CHECK_EQ(sent_len, sizeof(f));
  make_tx(0, 1, 34, 16, f, sizeof(f)); /* TSO without NEEDS_CSUM */
  kick(1, 0);
  make_tx(1, 4 /* TCPV6: not negotiated */, 54, 16, f, sizeof(f));
  kick(1, 0);
  make_tx(1, 3 /* UDP */, 34, 6, f, sizeof(f));
  kick(1, 0);
  make_tx(1, 0x81 /* TCPV4 | ECN */, 34, 16, f, sizeof(f));
  kick(1, 0);
  make_tx(1, 0, 34, 16, f, sizeof(f)); /* no GSO: the MTU still applies */
  kick(1, 0);
  CHECK_EQ(sent_count, 1);
  CHECK_EQ(net.st.tx_dropped, 5);
  link_tso = false;
  setup_net(F_MAC | F_CSUM, 1500, true);
  mmio_w(0x014, 0);
  CHECK(!(mmio_r(0x010) & F_HOST_TSO4)); /* not offered for a backend that needs frames */
}

TEST(net_tx_checksum_position_outside_frame_dropped) {
  setup_net(F_MAC | F_CSUM, 1500, true);
  uint8_t f[100];
  fill_frame(f, sizeof(f), 7);
  make_tx(1, 0, 99, 0, f, sizeof(f)); /* the 2-byte field would end past the frame */
  kick(1, 0);
  make_tx(1, 0, 0xffff, 0xffff, f, sizeof(f));
  kick(1, 0);
  CHECK_EQ(sent_count, 0);
  CHECK_EQ(net.st.tx_dropped, 2);
}

TEST(net_tx_hostile_chain_needs_reset) {
  setup_net(F_MAC, 1500, true);
  set_desc(1, 0, RAM_BASE + RAM_SIZE - 8, 64, 0, 0); /* outside guest RAM */
  kick(1, 0);
  CHECK(needs_reset());
  CHECK_EQ(sent_count, 0);
  CHECK_EQ(irq_level, 1); /* configuration change interrupt */
}

TEST(net_rx_waits_for_buffers_then_delivers) {
  setup_net(F_MAC | F_GUEST_CSUM, 1500, true);
  CHECK(!virtio_net_can_receive(&net));
  uint8_t f[300];
  fill_frame(f, sizeof(f), 9);
  virtio_net_receive(&net, f, sizeof(f));
  CHECK_EQ(net.pending_count, 1);
  CHECK_EQ(used_idx(0), 0);
  set_desc(0, 3, BUFS, 2048, VIRTQ_DESC_F_WRITE, 0);
  kick(0, 3);
  CHECK_EQ(net.pending_count, 0);
  CHECK_EQ(used_idx(0), 1);
  CHECK_EQ(used_id(0, 0), 3);
  CHECK_EQ(used_len(0, 0), VIRTIO_NET_HDR_SIZE + sizeof(f));
  CHECK_EQ(*gp(BUFS), 2); /* DATA_VALID */
  CHECK_EQ(r16(BUFS + 10), 1);
  CHECK(memcmp(gp(BUFS + VIRTIO_NET_HDR_SIZE), f, sizeof(f)) == 0);
  CHECK_EQ(irq_level, 1);
  CHECK_EQ(net.st.rx_frames, 1);
}

TEST(net_rx_no_data_valid_from_unverified_backend) {
  setup_net(F_MAC | F_GUEST_CSUM, 1500, false);
  set_desc(0, 0, BUFS, 2048, VIRTQ_DESC_F_WRITE, 0);
  post_rx(0);
  CHECK(virtio_net_can_receive(&net));
  uint8_t f[64];
  fill_frame(f, sizeof(f), 11);
  virtio_net_receive(&net, f, sizeof(f));
  CHECK_EQ(used_idx(0), 1);
  CHECK_EQ(*gp(BUFS), 0);
}

TEST(net_rx_mergeable_spans_buffers) {
  setup_net(F_MAC | F_MRG_RXBUF | F_MTU, 9000, true);
  for (unsigned i = 0; i < 4; i++) {
    set_desc(0, i, BUFS + 0x1000 * i, 1024, VIRTQ_DESC_F_WRITE, 0);
    post_rx((uint16_t)i);
  }
  static uint8_t f[2500];
  fill_frame(f, sizeof(f), 13);
  virtio_net_receive(&net, f, sizeof(f));
  CHECK_EQ(used_idx(0), 3); /* 12 + 2500 bytes in three 1024-byte buffers */
  CHECK_EQ(r16(BUFS + 10), 3);
  CHECK_EQ(used_len(0, 0), 1024);
  CHECK_EQ(used_len(0, 1), 1024);
  CHECK_EQ(used_len(0, 2), VIRTIO_NET_HDR_SIZE + sizeof(f) - 2048);
  CHECK(memcmp(gp(BUFS + VIRTIO_NET_HDR_SIZE), f, 1024 - VIRTIO_NET_HDR_SIZE) == 0);
  CHECK(memcmp(gp(BUFS + 0x1000), f + 1024 - VIRTIO_NET_HDR_SIZE, 1024) == 0);
  CHECK(memcmp(gp(BUFS + 0x2000), f + 2048 - VIRTIO_NET_HDR_SIZE,
               sizeof(f) - 2048 + VIRTIO_NET_HDR_SIZE) == 0);
  /* one buffer left is too little for another such frame: it waits, none is consumed */
  virtio_net_receive(&net, f, sizeof(f));
  CHECK_EQ(used_idx(0), 3);
  CHECK_EQ(net.pending_count, 1);
  for (unsigned i = 4; i < 6; i++) {
    set_desc(0, i, BUFS + 0x1000 * i, 1024, VIRTQ_DESC_F_WRITE, 0);
    post_rx((uint16_t)i);
  }
  mmio_w(0x050, 0);
  CHECK_EQ(net.pending_count, 0);
  CHECK_EQ(used_idx(0), 6);
  CHECK_EQ(used_id(0, 3), 3);
}

/* An Ethernet + IPv4 + TCP segment of `payload` bytes from seq, flags ACK (| PSH). */
static size_t make_tcp_segment(uint8_t *f, uint16_t sport, uint32_t seq, size_t payload, bool psh) {
  memset(f, 0, 54);
  memcpy(f, "\x52\x54\x00\x12\x34\x56\x52\x55\x0a\x00\x02\x02\x08\x00", 14);
  uint8_t *ip = f + 14, *tcp = ip + 20;
  size_t tot = 40 + payload;
  ip[0] = 0x45;
  ip[2] = (uint8_t)(tot >> 8);
  ip[3] = (uint8_t)tot;
  ip[8] = 64;
  ip[9] = 6;
  memcpy(ip + 12, "\x0a\x00\x02\x02\x0a\x00\x02\x0f", 8);
  tcp[0] = (uint8_t)(sport >> 8);
  tcp[1] = (uint8_t)sport;
  tcp[3] = 80;
  tcp[4] = (uint8_t)(seq >> 24);
  tcp[5] = (uint8_t)(seq >> 16);
  tcp[6] = (uint8_t)(seq >> 8);
  tcp[7] = (uint8_t)seq;
  tcp[11] = 1; /* ack */
  tcp[12] = 5 << 4;
  tcp[13] = psh ? 0x18 : 0x10;
  tcp[14] = 0xff;
  for (size_t i = 0; i < payload; i++)
    f[54 + i] = (uint8_t)(seq + i);
  return 54 + payload;
}

TEST(net_rx_coalesces_tcp_segments_for_guest_tso) {
  setup_net(F_MAC | F_MRG_RXBUF | F_GUEST_CSUM | F_GUEST_TSO4, 1500, true);
  for (unsigned i = 0; i < 8; i++) {
    set_desc(0, i, BUFS + 0x1000 * i, 4096, VIRTQ_DESC_F_WRITE, 0);
    post_rx((uint16_t)i);
  }
  static uint8_t f[1600];
  uint32_t seq = 1000;
  for (int i = 0; i < 3; i++, seq += 1000)
    virtio_net_receive(&net, f, make_tcp_segment(f, 5555, seq, 1000, i == 2));
  virtio_net_receive(&net, f, make_tcp_segment(f, 5555, seq, 1000, false)); /* after PSH */
  virtio_net_receive(&net, f, make_tcp_segment(f, 6666, 1, 500, false));    /* another flow */
  CHECK_EQ(used_idx(0), 0); /* they wait for the end of the burst */
  virtio_net_flush(&net);
  CHECK_EQ(used_idx(0), 3);
  /* the first three as one 3000-byte TCP packet with gso_size 1000 */
  CHECK_EQ(used_len(0, 0), VIRTIO_NET_HDR_SIZE + 54 + 3000);
  uint8_t *h = gp(BUFS);
  CHECK_EQ(h[0], 2); /* DATA_VALID */
  CHECK_EQ(h[1], 1); /* GSO_TCPV4 */
  CHECK_EQ(r16(BUFS + 2), 54);
  CHECK_EQ(r16(BUFS + 4), 1000);
  const uint8_t *ip = h + VIRTIO_NET_HDR_SIZE + 14;
  CHECK_EQ(ip[2] << 8 | ip[3], 40 + 3000);
  CHECK_EQ(sum16(ip, 20, 0), 0xffff); /* a valid header checksum */
  CHECK_EQ(ip[20 + 13], 0x18);        /* the last segment's PSH */
  for (int i = 0; i < 3000; i++)
    if (ip[40 + i] != (uint8_t)(1000 + i)) {
      CHECK(!"payload out of order");
      break;
    }
  CHECK_EQ(used_len(0, 1), VIRTIO_NET_HDR_SIZE + 54 + 1000);
  CHECK_EQ(*gp(BUFS + 0x1000 + 1), 0); /* a single segment: no GSO */
  CHECK_EQ(used_len(0, 2), VIRTIO_NET_HDR_SIZE + 54 + 500);
  CHECK_EQ(net.st.rx_frames, 5);
}

TEST(net_rx_no_coalescing_across_gaps_or_without_the_feature) {
  setup_net(F_MAC | F_MRG_RXBUF | F_GUEST_CSUM | F_GUEST_TSO4, 1500, true);
  for (unsigned i = 0; i < 8; i++) {
    set_desc(0, i, BUFS + 0x1000 * i, 4096, VIRTQ_DESC_F_WRITE, 0);
    post_rx((uint16_t)i);
  }
  static uint8_t f[1600];
  virtio_net_receive(&net, f, make_tcp_segment(f, 5555, 0, 1000, false));
  virtio_net_receive(&net, f, make_tcp_segment(f, 5555, 2000, 1000, false)); /* a gap */
  virtio_net_receive(&net, f, make_tcp_segment(f, 5555, 3000, 1200, false)); /* larger */
  virtio_net_flush(&net);
  CHECK_EQ(used_idx(0), 3);
  /* without GUEST_TSO4 every frame goes at once, as it is */
  setup_net(F_MAC | F_MRG_RXBUF | F_GUEST_CSUM, 1500, true);
  set_desc(0, 0, BUFS, 4096, VIRTQ_DESC_F_WRITE, 0);
  post_rx(0);
  virtio_net_receive(&net, f, make_tcp_segment(f, 5555, 0, 1000, false));
  CHECK_EQ(used_idx(0), 1);
  CHECK_EQ(*gp(BUFS + 1), 0);
}

TEST(net_rx_header_split_over_buffers) {
  setup_net(F_MAC, 1500, true);
  /* a hostile but legal layout: the header in 5 + 7 bytes, then the frame */
  set_desc(0, 0, BUFS, 5, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1);
  set_desc(0, 1, BUFS + 0x100, 7, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 2);
  set_desc(0, 2, BUFS + 0x200, 1600, VIRTQ_DESC_F_WRITE, 0);
  post_rx(0);
  uint8_t f[100];
  fill_frame(f, sizeof(f), 17);
  virtio_net_receive(&net, f, sizeof(f));
  CHECK_EQ(used_idx(0), 1);
  CHECK_EQ(used_len(0, 0), VIRTIO_NET_HDR_SIZE + sizeof(f));
  CHECK_EQ(r16(BUFS + 0x100 + 5), 1); /* num_buffers at header offset 10 */
  CHECK(memcmp(gp(BUFS + 0x200), f, sizeof(f)) == 0);
}

TEST(net_rx_small_buffer_without_merging_drops_frame) {
  setup_net(F_MAC, 1500, true);
  set_desc(0, 0, BUFS, 100, VIRTQ_DESC_F_WRITE, 0);
  post_rx(0);
  uint8_t f[500];
  fill_frame(f, sizeof(f), 19);
  virtio_net_receive(&net, f, sizeof(f));
  CHECK_EQ(used_idx(0), 1);
  CHECK_EQ(used_len(0, 0), 0);
  CHECK_EQ(net.st.rx_dropped, 1);
  CHECK(!needs_reset());
}

TEST(net_rx_merged_buffer_below_header_needs_reset) {
  setup_net(F_MAC | F_MRG_RXBUF, 1500, true);
  set_desc(0, 0, BUFS, 8, VIRTQ_DESC_F_WRITE, 0);
  post_rx(0);
  uint8_t f[60];
  fill_frame(f, sizeof(f), 21);
  virtio_net_receive(&net, f, sizeof(f));
  CHECK(needs_reset());
  /* a device that needs a reset takes no more frames and never blocks its backend */
  virtio_net_receive(&net, f, sizeof(f));
  CHECK(virtio_net_can_receive(&net));
}

TEST(net_rx_oversized_runt_and_overflow_dropped) {
  setup_net(F_MAC, 1500, true);
  static uint8_t f[2000];
  fill_frame(f, sizeof(f), 23);
  virtio_net_receive(&net, f, 1500 + 19); /* beyond MTU */
  virtio_net_receive(&net, f, 10);        /* shorter than an Ethernet header */
  CHECK_EQ(net.st.rx_dropped, 2);
  CHECK_EQ(net.pending_count, 0);
  for (int i = 0; i < VIRTIO_NET_PENDING_FRAMES + 5; i++)
    virtio_net_receive(&net, f, 100);
  CHECK_EQ(net.pending_count, VIRTIO_NET_PENDING_FRAMES);
  CHECK_EQ(net.st.rx_dropped, 2 + 5);
  CHECK(!virtio_net_can_receive(&net)); /* tap stops reading */
  mmio_w(0x070, 0);                     /* reset drops what waits */
  CHECK_EQ(net.pending_count, 0);
}

TEST(net_frames_before_driver_ok_are_dropped) {
  fresh_ram();
  virtio_net_destroy(&net);
  static const uint8_t mac[6] = {0x52, 0x54, 0x00, 0, 0, 1};
  virtio_net_link link = {.send = fake_send, .rx_csum_valid = true};
  virtio_net_init(&net, mac, 1500, (virtio_mem){.ram = ram, .base = RAM_BASE, .size = RAM_SIZE},
                  (dev_irq_line){.set = irq_set}, link);
  uint8_t f[64];
  fill_frame(f, sizeof(f), 29);
  virtio_net_receive(&net, f, sizeof(f));
  CHECK_EQ(net.pending_count, 0);
  CHECK_EQ(net.st.rx_dropped, 1);
}

/* ------------------------------------------------------------------ a backend with the header */

/* A backend that carries the virtio-net header (a tap with IFF_VNET_HDR). */
static void setup_vnet_hdr_net(uint32_t features_lo) {
  link_vnet_hdr = true;
  setup_net(features_lo, 1500, false);
  link_vnet_hdr = false;
}

static uint16_t le16_at(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

TEST(net_vnet_hdr_offers_tso_and_sets_the_guests_offloads) {
  setup_vnet_hdr_net(F_MAC | F_CSUM | F_GUEST_CSUM | F_GUEST_TSO4 | F_GUEST_TSO6 | F_HOST_TSO4);
  mmio_w(0x014, 0);
  uint32_t f = mmio_r(0x010);
  CHECK(f & F_GUEST_TSO4);
  CHECK(f & F_GUEST_TSO6);
  CHECK(f & F_HOST_TSO4);
  CHECK(f & F_HOST_TSO6);
  CHECK_EQ(offload_calls, 1); /* at FEATURES_OK */
  CHECK(offloads.csum && offloads.tso4 && offloads.tso6);
  mmio_w(0x070, 0); /* a reset takes them back */
  CHECK_EQ(offload_calls, 2);
  CHECK(!offloads.csum && !offloads.tso4 && !offloads.tso6);
  /* TSO without GUEST_CSUM means nothing: the backend gets no offloads at all */
  setup_vnet_hdr_net(F_MAC | F_GUEST_TSO4);
  CHECK_EQ(offload_calls, 1);
  CHECK(!offloads.csum && !offloads.tso4);
  setup_vnet_hdr_net(F_MAC | F_GUEST_CSUM | F_GUEST_TSO4);
  CHECK(offloads.csum && offloads.tso4 && !offloads.tso6);
  /* a backend without the header is never asked, and gets no GUEST_TSO6 */
  setup_net(F_MAC | F_GUEST_CSUM, 1500, true);
  CHECK_EQ(offload_calls, 0);
  mmio_w(0x014, 0);
  CHECK(!(mmio_r(0x010) & F_GUEST_TSO6));
}

TEST(net_vnet_hdr_tx_passes_the_header_through) {
  setup_vnet_hdr_net(F_MAC | F_CSUM | F_HOST_TSO4 | F_HOST_TSO6);
  static uint8_t f[30000];
  fill_frame(f, sizeof(f), 41);
  make_tx_gso(1, 1 /* TCPV4 */, 66, 1448, 34, 16, f, sizeof(f));
  kick(1, 0);
  CHECK_EQ(sent_count, 1);
  CHECK_EQ(sent_len, VIRTIO_NET_HDR_SIZE + sizeof(f));
  CHECK_EQ(sent[0], 1);
  CHECK_EQ(sent[1], 1);
  CHECK_EQ(le16_at(sent + 2), 66);
  CHECK_EQ(le16_at(sent + 4), 1448);
  CHECK_EQ(le16_at(sent + 6), 34);
  CHECK_EQ(le16_at(sent + 8), 16);
  /* no checksum and no segmentation in the device: the frame goes as the guest gave it */
  CHECK(memcmp(sent + VIRTIO_NET_HDR_SIZE, f, sizeof(f)) == 0);
  CHECK_EQ(net.st.tx_frames, 1);
  /* a plain frame with leftovers in fields that mean nothing for it: they do not go out */
  make_tx_gso(0, 0, 999, 5, 77, 3, f, 200);
  kick(1, 0);
  CHECK_EQ(sent_count, 2);
  CHECK_EQ(sent_len, VIRTIO_NET_HDR_SIZE + 200);
  static const uint8_t zero[VIRTIO_NET_HDR_SIZE];
  CHECK(memcmp(sent, zero, sizeof(zero)) == 0);
  /* NEEDS_CSUM without GSO: start and offset pass, hdr_len and gso_size do not */
  make_tx_gso(1, 0, 999, 5, 34, 6, f, 200);
  kick(1, 0);
  CHECK_EQ(sent_count, 3);
  CHECK_EQ(sent[0], 1);
  CHECK_EQ(le16_at(sent + 2), 0);
  CHECK_EQ(le16_at(sent + 4), 0);
  CHECK_EQ(le16_at(sent + 6), 34);
  CHECK_EQ(le16_at(sent + 8), 6);
  CHECK(memcmp(sent + VIRTIO_NET_HDR_SIZE, f, 200) == 0);
  /* TCPV6 */
  make_tx_gso(1, 4, 74, 1428, 54, 16, f, 20000);
  kick(1, 0);
  CHECK_EQ(sent_count, 4);
  CHECK_EQ(sent[1], 4);
}

TEST(net_vnet_hdr_tx_hostile_headers_never_reach_the_backend) {
  setup_vnet_hdr_net(F_MAC | F_CSUM | F_HOST_TSO4);
  static uint8_t f[30000];
  fill_frame(f, sizeof(f), 43);
  static const struct {
    uint8_t flags, gso;
    uint16_t hdr_len, gso_size, cstart, coff;
    size_t len;
  } bad[] = {
      {2, 0, 0, 0, 0, 0, 100},                 /* DATA_VALID is the device's to set */
      {4, 0, 0, 0, 0, 0, 100},                 /* RSC_INFO */
      {0x81, 0, 0, 0, 34, 16, 100},            /* unknown flag bits */
      {1, 3 /* UDP */, 42, 1400, 34, 6, 3000}, /* UFO: not offered */
      {1, 5 /* UDP_L4 */, 42, 1400, 34, 6, 3000},
      {1, 0x81 /* TCPV4|ECN */, 54, 1448, 34, 16, 3000},
      {1, 4 /* TCPV6: not negotiated */, 74, 1428, 54, 16, 3000},
      {1, 0x7f, 54, 1448, 34, 16, 3000}, /* no such type */
      {0, 1, 54, 1448, 34, 16, 3000},    /* TSO without NEEDS_CSUM */
      {1, 1, 54, 0, 34, 16, 3000},       /* gso_size 0 */
      {1, 1, 54, 0xffff, 34, 16, 3000},  /* Linux's GSO_BY_FRAGS */
      {1, 1, 3001, 1448, 34, 16, 3000},  /* hdr_len beyond the frame */
      {1, 1, 0xffff, 1448, 34, 16, 3000},
      {1, 1, 54, 1448, 34, 6, 3000},    /* TSO whose checksum is not TCP's */
      {1, 1, 54, 1448, 2990, 16, 3000}, /* no room for a TCP header */
      {1, 0, 0, 0, 10, 6, 100},         /* checksum inside the Ethernet header */
      {1, 0, 0, 0, 99, 0, 100},         /* the field ends past the frame */
      {1, 0, 0, 0, 34, 0xffff, 100},
      {1, 0, 0, 0, 0xffff, 0xffff, 100},
      {0, 0, 0, 0, 0, 0, 1500 + 19},       /* beyond the MTU without GSO */
      {1, 1, 54, 1448, 34, 16, sizeof(f)}, /* fine: the control case */
  };
  size_t n = sizeof(bad) / sizeof(bad[0]);
  for (size_t i = 0; i < n; i++) {
    make_tx_gso(bad[i].flags, bad[i].gso, bad[i].hdr_len, bad[i].gso_size, bad[i].cstart,
                bad[i].coff, f, bad[i].len);
    kick(1, 0);
    if (sent_count != (i == n - 1 ? 1u : 0u)) {
      fprintf(stderr, "# case %zu: sent %u\n", i, sent_count);
      CHECK(!"a hostile header reached the backend");
      break;
    }
  }
  CHECK_EQ(net.st.tx_dropped, n - 1);
  CHECK_EQ(used_idx(1), n); /* every chain came back */
  CHECK(!needs_reset());
  /* NEEDS_CSUM without VIRTIO_NET_F_CSUM */
  setup_vnet_hdr_net(F_MAC);
  make_tx(1, 0, 34, 16, f, 100);
  kick(1, 0);
  CHECK_EQ(sent_count, 0);
  CHECK_EQ(net.st.tx_dropped, 1);
}

/* Hand the device what a vnet_hdr backend reads: header, then frame. */
static void backend_rx(uint8_t flags, uint8_t gso, uint16_t hdr_len, uint16_t gso_size,
                       uint16_t cstart, uint16_t coff, const uint8_t *frame, size_t len) {
  static uint8_t buf[VIRTIO_NET_HDR_SIZE + 70000];
  memset(buf, 0, VIRTIO_NET_HDR_SIZE);
  buf[0] = flags;
  buf[1] = gso;
  buf[2] = (uint8_t)hdr_len;
  buf[3] = (uint8_t)(hdr_len >> 8);
  buf[4] = (uint8_t)gso_size;
  buf[5] = (uint8_t)(gso_size >> 8);
  buf[6] = (uint8_t)cstart;
  buf[7] = (uint8_t)(cstart >> 8);
  buf[8] = (uint8_t)coff;
  buf[9] = (uint8_t)(coff >> 8);
  buf[10] = 0xaa; /* num_buffers from a backend means nothing */
  memcpy(buf + VIRTIO_NET_HDR_SIZE, frame, len);
  virtio_net_receive(&net, buf, VIRTIO_NET_HDR_SIZE + len);
}

static void post_rx_buffers(unsigned count, uint32_t size) {
  for (unsigned i = 0; i < count; i++) {
    set_desc(0, i, BUFS + 0x1000ull * i, size, VIRTQ_DESC_F_WRITE, 0);
    post_rx((uint16_t)i);
  }
}

TEST(net_vnet_hdr_rx_gives_the_guest_the_backends_header) {
  setup_vnet_hdr_net(F_MAC | F_MRG_RXBUF | F_GUEST_CSUM | F_GUEST_TSO4 | F_GUEST_TSO6);
  post_rx_buffers(QSIZE, 4096);
  static uint8_t f[30000];
  fill_frame(f, sizeof(f), 47);
  backend_rx(1, 1, 66, 1448, 34, 16, f, sizeof(f)); /* a 30000-byte TCP packet, partial csum */
  unsigned bufs = (VIRTIO_NET_HDR_SIZE + sizeof(f) + 4095) / 4096;
  CHECK_EQ(used_idx(0), bufs);
  const uint8_t *h = gp(BUFS);
  CHECK_EQ(h[0], 1);
  CHECK_EQ(h[1], 1);
  CHECK_EQ(r16(BUFS + 2), 66);
  CHECK_EQ(r16(BUFS + 4), 1448);
  CHECK_EQ(r16(BUFS + 6), 34);
  CHECK_EQ(r16(BUFS + 8), 16);
  CHECK_EQ(r16(BUFS + 10), bufs); /* num_buffers is the device's */
  CHECK(memcmp(gp(BUFS + VIRTIO_NET_HDR_SIZE), f, 4096 - VIRTIO_NET_HDR_SIZE) == 0);
  CHECK(memcmp(gp(BUFS + 0x1000), f + 4096 - VIRTIO_NET_HDR_SIZE, 4096) == 0);
  /* DATA_VALID on a plain frame */
  backend_rx(2, 0, 0, 0, 0, 0, f, 300);
  CHECK_EQ(used_idx(0), bufs + 1);
  CHECK_EQ(*gp(BUFS + 0x1000ull * bufs), 2);
  CHECK_EQ(r16(BUFS + 0x1000ull * bufs + 10), 1);
  CHECK_EQ(net.st.rx_frames, 2);
  CHECK_EQ(net.st.rx_dropped, 0);
}

TEST(net_vnet_hdr_rx_what_the_guest_did_not_agree_to) {
  /* no GUEST_CSUM: a partial checksum is completed here and the guest gets a plain header */
  setup_vnet_hdr_net(F_MAC);
  post_rx_buffers(4, 2048);
  uint8_t f[14 + 20 + 8 + 51] = {0};
  fill_frame(f, sizeof(f), 53);
  uint8_t *udp = f + 14 + 20;
  udp[6] = 0x12; /* the pseudo-header sum the host left */
  udp[7] = 0x34;
  backend_rx(1 | 2, 0, 0, 0, 34, 6, f, sizeof(f));
  CHECK_EQ(used_idx(0), 1);
  static const uint8_t zero[10];
  CHECK(memcmp(gp(BUFS), zero, sizeof(zero)) == 0);
  const uint8_t *got = gp(BUFS + VIRTIO_NET_HDR_SIZE);
  /* now complete: with the pseudo-header sum the receiver adds, the segment sums to 0xffff */
  CHECK_EQ(sum16(got + 34, sizeof(f) - 34, 0x1234), 0xffff);
  CHECK(memcmp(got, f, 34) == 0);
  /* refused: TSO the guest did not take, a bad position, unknown flags or types, runts */
  setup_vnet_hdr_net(F_MAC | F_MRG_RXBUF | F_GUEST_CSUM | F_GUEST_TSO4);
  post_rx_buffers(QSIZE, 4096);
  static uint8_t big[VIRTIO_NET_MAX_GSO_FRAME + 10];
  fill_frame(big, sizeof(big), 59);
  backend_rx(1, 4 /* TCPV6: not negotiated */, 74, 1428, 54, 16, big, 20000);
  backend_rx(1, 0x81 /* ECN */, 54, 1448, 34, 16, big, 20000);
  backend_rx(1, 3 /* UDP */, 42, 1400, 34, 6, big, 20000);
  backend_rx(0, 1, 54, 1448, 0, 0, big, 20000);         /* TSO without NEEDS_CSUM */
  backend_rx(1, 1, 54, 0, 34, 16, big, 20000);          /* gso_size 0 */
  backend_rx(1, 1, 20001, 1448, 34, 16, big, 20000);    /* hdr_len beyond the frame */
  backend_rx(1, 0, 0, 0, 34, 0xfff0, big, 200);         /* field beyond the frame */
  backend_rx(1, 0, 0, 0, 4, 2, big, 200);               /* in the Ethernet header */
  backend_rx(0x10, 0, 0, 0, 0, 0, big, 200);            /* unknown flag */
  backend_rx(0, 0, 0, 0, 0, 0, big, 1500 + 19);         /* beyond the MTU without GSO */
  backend_rx(1, 1, 54, 1448, 34, 16, big, sizeof(big)); /* beyond 64 KiB */
  backend_rx(0, 0, 0, 0, 0, 0, big, 5);                 /* a runt */
  virtio_net_receive(&net, big, 7);                     /* not even a header */
  CHECK_EQ(used_idx(0), 0);
  CHECK_EQ(net.st.rx_dropped, 13);
  CHECK_EQ(net.pending_count, 0);
  CHECK(!needs_reset());
  /* without GUEST_CSUM a TSO packet is refused even with GUEST_TSO4 */
  setup_vnet_hdr_net(F_MAC | F_MRG_RXBUF | F_GUEST_TSO4);
  post_rx_buffers(QSIZE, 4096);
  backend_rx(1, 1, 54, 1448, 34, 16, big, 20000);
  CHECK_EQ(used_idx(0), 0);
  CHECK_EQ(net.st.rx_dropped, 1);
}

/* ------------------------------------------------------------------ control queue */

#define F_CTRL_VQ (1u << 17)
#define F_CTRL_RX (1u << 18)
#define F_CTRL_MAC_ADDR (1u << 23)
#define CTRL_BUF (BUFS + 0x10000)
#define CTRL_ACK (BUFS + 0x18000)

static const uint8_t own_mac[6] = {0x52, 0x54, 0x00, 0x12, 0x34, 0x56};

/* A control command: class, command, data in one readable buffer, the ack byte in a writable
 * one. Returns the ack the device wrote (0xee: none). */
static uint8_t ctrl_cmd(uint8_t cls, uint8_t cmd, const void *data, size_t len) {
  uint8_t *p = gp(CTRL_BUF);
  p[0] = cls;
  p[1] = cmd;
  memcpy(p + 2, data, len);
  *gp(CTRL_ACK) = 0xee;
  set_desc(2, 0, CTRL_BUF, (uint32_t)(2 + len), VIRTQ_DESC_F_NEXT, 1);
  set_desc(2, 1, CTRL_ACK, 1, VIRTQ_DESC_F_WRITE, 0);
  kick(2, 0);
  return *gp(CTRL_ACK);
}

static uint8_t ctrl_on(uint8_t cmd, uint8_t on) { return ctrl_cmd(0, cmd, &on, 1); }

/* MAC_TABLE_SET with nu unicast and nm multicast entries taken from macs. */
static uint8_t ctrl_table(const uint8_t (*macs)[6], uint32_t nu, uint32_t nm) {
  static uint8_t data[8 + 6 * 80];
  size_t off = 0;
  uint32_t le = htole32(nu);
  memcpy(data, &le, 4);
  memcpy(data + 4, macs, 6 * nu);
  off = 4 + 6 * nu;
  le = htole32(nm);
  memcpy(data + off, &le, 4);
  memcpy(data + off + 4, macs + nu, 6 * nm);
  return ctrl_cmd(1, 0, data, off + 4 + 6 * nm);
}

/* A frame to dst from the fake backend: delivered (true) or kept by the filter. */
static bool rx_to(const uint8_t dst[6]) {
  uint8_t f[64];
  fill_frame(f, sizeof(f), 61);
  memcpy(f, dst, 6);
  uint16_t before = used_idx(0);
  uint64_t filtered = net.st.rx_filtered;
  set_desc(0, before % QSIZE, BUFS + 0x1000ull * (before % QSIZE), 2048, VIRTQ_DESC_F_WRITE, 0);
  post_rx((uint16_t)(before % QSIZE));
  virtio_net_receive(&net, f, sizeof(f));
  bool delivered = used_idx(0) == (uint16_t)(before + 1);
  if (!delivered) {
    CHECK_EQ(net.st.rx_filtered, filtered + 1);
    avail_idx[0]--; /* the buffer stays posted: the next frame's post reuses its slot */
  }
  return delivered;
}

static void setup_ctrl_net(uint32_t features_lo) {
  fresh_ram();
  virtio_net_destroy(&net);
  dev_irq_line line = {.set = irq_set, .irq = 1};
  virtio_net_link link = {.send = fake_send, .rx_csum_valid = true};
  virtio_net_init(&net, own_mac, 1500, (virtio_mem){.ram = ram, .base = RAM_BASE, .size = RAM_SIZE},
                  line, link);
  dev = &net.mmio;
  bring_up(features_lo, 3);
}

TEST(net_ctrl_rx_filter) {
  setup_ctrl_net(F_MAC | F_CTRL_VQ | F_CTRL_RX | F_CTRL_MAC_ADDR);
  mmio_w(0x014, 0);
  uint32_t f = mmio_r(0x010);
  CHECK(f & F_CTRL_VQ);
  CHECK(f & F_CTRL_RX);
  CHECK(f & F_CTRL_MAC_ADDR);
  static const uint8_t other[6] = {0x52, 0x54, 0, 0, 0, 9},
                       bcast[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
  static const uint8_t mcast[6] = {0x33, 0x33, 0xff, 0, 0, 1}, mcast2[6] = {0x01, 0, 0x5e, 0, 0, 1};
  /* promiscuous after a reset, as QEMU */
  CHECK(rx_to(other));
  CHECK_EQ(ctrl_on(0 /* PROMISC */, 0), 0);
  CHECK(!rx_to(other));
  CHECK(rx_to(own_mac));
  CHECK(rx_to(bcast));
  CHECK(!rx_to(mcast));
  CHECK_EQ(ctrl_on(1 /* ALLMULTI */, 1), 0);
  CHECK(rx_to(mcast));
  CHECK(!rx_to(other));
  CHECK_EQ(ctrl_on(1, 0), 0);
  /* the table: one unicast, one multicast */
  const uint8_t table[2][6] = {{0x52, 0x54, 0, 0, 0, 9}, {0x33, 0x33, 0xff, 0, 0, 1}};
  CHECK_EQ(ctrl_table(table, 1, 1), 0);
  CHECK(rx_to(other));
  CHECK(rx_to(mcast));
  CHECK(!rx_to(mcast2));
  /* more than the table holds: that kind passes */
  static uint8_t many[70][6];
  for (int i = 0; i < 70; i++) {
    memcpy(many[i], "\x33\x33\x00\x00\x01", 5);
    many[i][5] = (uint8_t)i;
  }
  CHECK_EQ(ctrl_table(many, 0, 70), 0);
  CHECK(net.st.filter.multi_overflow);
  CHECK(rx_to(mcast2));
  CHECK(!rx_to(other)); /* the unicast entry went with the old table */
  CHECK_EQ(ctrl_on(0, 1), 0);
  CHECK(rx_to(other));
  CHECK_EQ(used_idx(2), 6); /* every command came back */
  /* a reset makes the device promiscuous again */
  CHECK_EQ(ctrl_on(0, 0), 0);
  mmio_w(0x070, 0);
  CHECK(net.st.filter.promisc);
  CHECK(!net.st.filter.multi_overflow);
}

TEST(net_ctrl_mac_addr_set) {
  setup_ctrl_net(F_MAC | F_CTRL_VQ | F_CTRL_RX | F_CTRL_MAC_ADDR);
  CHECK_EQ(ctrl_on(0, 0), 0);
  static const uint8_t mac[6] = {0x02, 0, 0, 0, 0, 0x42};
  CHECK_EQ(ctrl_cmd(1, 1 /* MAC_ADDR_SET */, mac, 6), 0);
  CHECK(rx_to(mac));
  CHECK(!rx_to(own_mac));
  uint64_t v = 0;
  CHECK(virtio_mmio_read(dev, 0x105, 1, &v)); /* the config space shows it */
  CHECK_EQ(v, 0x42);
  /* a clone's new address reaches the config space, not the filter: the guest keeps its own */
  static const uint8_t clone_mac[6] = {0x52, 0x54, 0, 0xaa, 0xbb, 0xcc};
  virtio_net_set_mac(&net, clone_mac);
  CHECK(rx_to(mac));
  CHECK(!rx_to(clone_mac));
}

TEST(net_ctrl_bad_commands_change_nothing) {
  setup_ctrl_net(F_MAC | F_CTRL_VQ | F_CTRL_RX);
  CHECK_EQ(ctrl_on(0, 0), 0);
  const uint8_t table[2][6] = {{0x52, 0x54, 0, 0, 0, 9}, {0x33, 0x33, 0xff, 0, 0, 1}};
  CHECK_EQ(ctrl_table(table, 1, 1), 0);
  virtio_net_rx_filter before = net.st.filter;
  uint8_t data[64] = {0};
  CHECK_EQ(ctrl_cmd(0, 0, data, 2), 1); /* PROMISC with two bytes */
  CHECK_EQ(ctrl_cmd(0, 0, data, 0), 1); /* without its byte */
  CHECK_EQ(ctrl_on(2 /* ALLUNI: CTRL_RX_EXTRA */, 1), 1);
  CHECK_EQ(ctrl_cmd(9, 0, data, 1), 1); /* no such class */
  CHECK_EQ(ctrl_cmd(1, 7, data, 6), 1); /* no such MAC command */
  static const uint8_t mac[6] = {0x02, 0, 0, 0, 0, 1};
  CHECK_EQ(ctrl_cmd(1, 1, mac, 6), 1); /* MAC_ADDR_SET without CTRL_MAC_ADDR */
  /* tables: a count far beyond the command, a u32 count whose size overflows 32 bits, a
   * missing multicast list, a byte too many, a count that ends inside the last address */
  uint32_t huge = htole32(0xffffffffu), big = htole32(0x2aaaaaabu); /* 6 * big wraps */
  memcpy(data, &huge, 4);
  CHECK_EQ(ctrl_cmd(1, 0, data, 8), 1);
  memcpy(data, &big, 4);
  CHECK_EQ(ctrl_cmd(1, 0, data, 8), 1);
  memset(data, 0, sizeof(data));
  data[0] = 1;
  CHECK_EQ(ctrl_cmd(1, 0, data, 4 + 6), 1);
  CHECK_EQ(ctrl_cmd(1, 0, data, 4 + 6 + 4 + 1), 1);
  data[10] = 1;
  CHECK_EQ(ctrl_cmd(1, 0, data, 4 + 6 + 4 + 5), 1);
  CHECK(memcmp(&before, &net.st.filter, sizeof(before)) == 0);
  CHECK(!needs_reset());
  /* without CTRL_RX, the filter commands are refused too */
  setup_ctrl_net(F_MAC | F_CTRL_VQ);
  CHECK_EQ(ctrl_on(0, 0), 1);
  CHECK(net.st.filter.promisc);
  /* a command with no room for the ack breaks the protocol */
  setup_ctrl_net(F_MAC | F_CTRL_VQ | F_CTRL_RX);
  set_desc(2, 0, CTRL_BUF, 3, 0, 0);
  kick(2, 0);
  CHECK(needs_reset());
}

TEST(net_ctrl_filter_survives_save_and_load) {
  setup_ctrl_net(F_MAC | F_CTRL_VQ | F_CTRL_RX | F_CTRL_MAC_ADDR);
  CHECK_EQ(ctrl_on(0, 0), 0);
  const uint8_t table[2][6] = {{0x52, 0x54, 0, 0, 0, 9}, {0x33, 0x33, 0xff, 0, 0, 1}};
  CHECK_EQ(ctrl_table(table, 1, 1), 0);
  virtio_net_rx_filter saved = net.st.filter;
  vmstate_writer w;
  vmstate_writer_init(&w);
  virtio_net_save(&net, &w);
  setup_ctrl_net(F_MAC);
  CHECK(net.st.filter.promisc);
  vmstate_reader img;
  vmstate_reader_init(&img, w.data, w.len);
  vs_error *err = NULL;
  CHECK_EQ(virtio_net_load(&net, &img, &err), 0);
  CHECK(memcmp(&saved, &net.st.filter, sizeof(saved)) == 0);
  vmstate_writer_free(&w);
}

/* A state saved before the control queue existed: two queues in the transport, VNET version 1
 * without the filter. It loads; the control queue stays reset and the filter promiscuous. A
 * state with more queues than the device has is refused. */
TEST(net_loads_a_state_from_before_the_control_queue) {
  setup_net(F_MAC | F_MRG_RXBUF, 1500, true);
  vmstate_writer w;
  vmstate_writer_init(&w);
  net.mmio.num_queues = 2; /* as the old device had */
  virtio_mmio_save(&net.mmio, &w);
  net.mmio.num_queues = 3;
  vmstate_begin(&w, "VNET", 1);
  vmstate_put_bytes(&w, own_mac, 6);
  vmstate_put_u16(&w, 1500);
  for (int i = 0; i < 4; i++)
    vmstate_put_u64(&w, 7);
  vmstate_end_section(&w);
  setup_ctrl_net(F_MAC | F_CTRL_VQ | F_CTRL_RX);
  CHECK_EQ(ctrl_on(0, 0), 0);
  vmstate_reader img;
  vmstate_reader_init(&img, w.data, w.len);
  vs_error *err = NULL;
  CHECK_EQ(virtio_net_load(&net, &img, &err), 0);
  CHECK(net.mmio.queues[0].ready && net.mmio.queues[1].ready);
  CHECK(!net.mmio.queues[2].ready);
  CHECK(net.st.filter.promisc);
  CHECK(memcmp(net.st.filter.own_mac, own_mac, 6) == 0);
  CHECK_EQ(net.st.rx_frames, 7);
  vmstate_writer_free(&w);

  vmstate_writer_init(&w);
  net.mmio.num_queues = 4;
  virtio_net_save(&net, &w);
  net.mmio.num_queues = 3;
  vmstate_reader_init(&img, w.data, w.len);
  CHECK(virtio_net_load(&net, &img, &err) < 0);
  CHECK_CONTAINS(err->msg, "number of queues");
  vs_error_free(err);
  vmstate_writer_free(&w);
}

/* ------------------------------------------------------------------ virtio-console */

static virtio_console con;

TEST(console_input_and_output) {
  fresh_ram();
  int p[2];
  CHECK_EQ(pipe2(p, O_NONBLOCK), 0);
  virtio_console_init(&con, p[1], (virtio_mem){.ram = ram, .base = RAM_BASE, .size = RAM_SIZE},
                      (dev_irq_line){.set = irq_set, .irq = 2});
  dev = &con.mmio;
  CHECK_EQ(mmio_r(0x008), VIRTIO_ID_CONSOLE);
  bring_up(0, 2);
  /* input before the guest posts buffers waits */
  CHECK_EQ(virtio_console_rx_space(&con), VIRTIO_CONSOLE_RX_BUF);
  virtio_console_rx_push(&con, (const uint8_t *)"hello", 5);
  CHECK_EQ(virtio_console_rx_space(&con), VIRTIO_CONSOLE_RX_BUF - 5);
  set_desc(0, 0, BUFS, 3, VIRTQ_DESC_F_WRITE, 0);
  set_desc(0, 1, BUFS + 0x100, 64, VIRTQ_DESC_F_WRITE, 0);
  post_rx(0);
  post_rx(1);
  mmio_w(0x050, 0);
  CHECK_EQ(used_idx(0), 2);
  CHECK_EQ(used_len(0, 0), 3);
  CHECK_EQ(used_len(0, 1), 2);
  CHECK(memcmp(gp(BUFS), "hel", 3) == 0);
  CHECK(memcmp(gp(BUFS + 0x100), "lo", 2) == 0);
  CHECK_EQ(virtio_console_rx_space(&con), VIRTIO_CONSOLE_RX_BUF);
  /* output */
  memcpy(gp(BUFS + 0x200), "guest says", 10);
  set_desc(1, 0, BUFS + 0x200, 6, VIRTQ_DESC_F_NEXT, 1);
  set_desc(1, 1, BUFS + 0x206, 4, 0, 0);
  kick(1, 0);
  char buf[32] = {0};
  CHECK_EQ(read(p[0], buf, sizeof(buf)), 10);
  CHECK_STREQ(buf, "guest says");
  CHECK_EQ(used_idx(1), 1);
  /* a hostile chain */
  set_desc(1, 0, 0x1000, 16, 0, 0);
  kick(1, 0);
  CHECK(needs_reset());
  close(p[0]);
  close(p[1]);
}

TEST(console_input_beyond_room_is_dropped) {
  fresh_ram();
  virtio_console_init(&con, -1, (virtio_mem){.ram = ram, .base = RAM_BASE, .size = RAM_SIZE},
                      (dev_irq_line){.set = irq_set});
  dev = &con.mmio;
  static uint8_t lots[VIRTIO_CONSOLE_RX_BUF + 100];
  memset(lots, 'x', sizeof(lots));
  virtio_console_rx_push(&con, lots, sizeof(lots));
  CHECK_EQ(virtio_console_rx_space(&con), 0);
}

/* ------------------------------------------------------------------ virtio-rng */

static virtio_rng rng;

TEST(rng_fills_buffers_and_caps_requests) {
  fresh_ram();
  virtio_rng_init(&rng, (virtio_mem){.ram = ram, .base = RAM_BASE, .size = RAM_SIZE},
                  (dev_irq_line){.set = irq_set});
  dev = &rng.mmio;
  CHECK_EQ(mmio_r(0x008), VIRTIO_ID_RNG);
  bring_up(0, 1);
  set_desc(0, 0, BUFS, 64, VIRTQ_DESC_F_WRITE, 0);
  kick(0, 0);
  CHECK_EQ(used_idx(0), 1);
  CHECK_EQ(used_len(0, 0), 64);
  int nonzero = 0;
  for (int i = 0; i < 64; i++)
    nonzero += *gp(BUFS + i) != 0;
  CHECK(nonzero > 32);
  set_desc(0, 1, BUFS, 1u << 20, VIRTQ_DESC_F_WRITE, 0);
  kick(0, 1);
  CHECK_EQ(used_len(0, 1), VIRTIO_RNG_MAX_REQUEST);
  set_desc(0, 2, BUFS, 16, 0, 0); /* nothing writable: an empty answer, not an error */
  kick(0, 2);
  CHECK_EQ(used_len(0, 2), 0);
  CHECK(!needs_reset());
  set_desc(0, 3, BUFS, 16, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 3); /* loops */
  kick(0, 3);
  CHECK(needs_reset());
}

/* ------------------------------------------------------------------ virtio-balloon */

static virtio_balloon bal;

TEST(balloon_drops_inflated_and_reported_pages_checking_each) {
  fresh_ram();
  virtio_balloon_init(&bal, (virtio_mem){.ram = ram, .base = RAM_BASE, .size = RAM_SIZE},
                      (dev_irq_line){.set = irq_set});
  dev = &bal.mmio;
  CHECK_EQ(mmio_r(0x008), VIRTIO_ID_BALLOON);
  bring_up(1u << 1 | 1u << 5, 4); /* STATS_VQ, PAGE_REPORTING: statsq 2, reporting_vq 3 */
  /* inflate: two pages of guest data, then page numbers below and beyond RAM (skipped) */
  uint64_t page = BUFS + 0x10000;
  memset(gp(page), 0xab, 8192);
  w32(BUFS, (uint32_t)(page >> 12));
  w32(BUFS + 4, (uint32_t)(page >> 12) + 1);
  w32(BUFS + 8, 0x10);
  w32(BUFS + 12, (uint32_t)((RAM_BASE + RAM_SIZE) >> 12));
  set_desc(0, 0, BUFS, 16, 0, 0);
  kick(0, 0);
  CHECK_EQ(used_idx(0), 1);
  CHECK_EQ(*gp(page), 0);
  CHECK_EQ(*gp(page + 8191), 0);
  CHECK_EQ(bal.inflated_pages, 2);
  CHECK_EQ(bal.bad_pfns, 2);
  /* a reported range of two and a half pages: the whole pages go */
  uint64_t free_range = BUFS + 0x20000;
  memset(gp(free_range), 0xcd, 3 * 4096);
  set_desc(3, 0, free_range, 2 * 4096 + 2048, VIRTQ_DESC_F_WRITE, 0);
  kick(3, 0);
  CHECK_EQ(used_idx(3), 1);
  CHECK_EQ(*gp(free_range), 0);
  CHECK_EQ(*gp(free_range + 2 * 4096), 0xcd);
  CHECK_EQ(bal.reported_bytes, 8192);
  /* statistics: the buffer is held until the host asks again; unknown tags are skipped */
  static const uint8_t st[20] = {4, 0, 0x00, 0x10, 0, 0, 0, 0, 0, 0, 99, 0, 1, 0, 0, 0, 0, 0, 0, 0};
  memcpy(gp(BUFS + 0x30000), st, sizeof(st));
  set_desc(2, 0, BUFS + 0x30000, sizeof(st), 0, 0);
  kick(2, 0);
  CHECK_EQ(used_idx(2), 0);
  CHECK_EQ(bal.stats[4], 0x1000);
  CHECK_EQ(bal.stats_valid, 1u << 4);
  virtio_balloon_request_stats(&bal);
  CHECK_EQ(used_idx(2), 1);
  /* the target in the config space, the driver's actual written back */
  virtio_balloon_set_target(&bal, 100);
  CHECK_EQ(mmio_r(0x100), 100);
  mmio_w(0x104, 60);
  CHECK_EQ(bal.actual_pages, 60);
  CHECK(!needs_reset());
  /* a chain that loops: the device needs a reset, nothing else happens */
  set_desc(0, 1, BUFS, 16, VIRTQ_DESC_F_NEXT, 1);
  kick(0, 1);
  CHECK(needs_reset());
}

/* ------------------------------------------------------------------ --net */

TEST(net_spec_user_with_forwards) {
  netdev_opts o;
  vs_error *err = NULL;
  CHECK_EQ(netdev_parse_spec("user,hostfwd=tcp:127.0.0.1:2222-:22,hostfwd=udp::5353-10.0.2.20:53,"
                             "mac=52:54:00:AB:cd:01,mtu=9000",
                             &o, &err),
           0);
  CHECK_EQ(o.kind, NETDEV_USER);
  CHECK_EQ(o.nhostfwd, 2);
  CHECK(!o.hostfwd[0].udp);
  CHECK_EQ(o.hostfwd[0].host_addr.s_addr, htonl(0x7f000001));
  CHECK_EQ(o.hostfwd[0].host_port, 2222);
  CHECK_EQ(o.hostfwd[0].guest_addr.s_addr, htonl(0x0a00020f)); /* 10.0.2.15 */
  CHECK_EQ(o.hostfwd[0].guest_port, 22);
  CHECK(o.hostfwd[1].udp);
  CHECK_EQ(o.hostfwd[1].host_addr.s_addr, htonl(INADDR_ANY));
  CHECK_EQ(o.hostfwd[1].guest_addr.s_addr, htonl(0x0a000214));
  CHECK(o.mac_set);
  CHECK(memcmp(o.mac, "\x52\x54\x00\xab\xcd\x01", 6) == 0);
  CHECK_EQ(o.mtu, 9000);
  CHECK_EQ(netdev_parse_spec("user", &o, &err), 0);
  CHECK_EQ(o.nhostfwd, 0);
  CHECK(!o.mac_set);
  CHECK_EQ(netdev_parse_spec("user,hostfwd=:127.0.0.1:80-:8080", &o, &err), 0);
  CHECK(!o.hostfwd[0].udp);
}

TEST(net_spec_tap_forms) {
  netdev_opts o;
  CHECK_EQ(netdev_parse_spec("tap=vtap0,mac=02:00:00:00:00:01", &o, NULL), 0);
  CHECK_EQ(o.kind, NETDEV_TAP);
  CHECK_STREQ(o.ifname, "vtap0");
  CHECK_EQ(netdev_parse_spec("tap,ifname=tap15", &o, NULL), 0);
  CHECK_STREQ(o.ifname, "tap15");
  CHECK_EQ(netdev_parse_spec("tap=123456789012345", &o, NULL), 0);
  CHECK_EQ(netdev_parse_spec("tap=1234567890123456", &o, NULL), -1);
  CHECK_EQ(netdev_parse_spec("tap=../x", &o, NULL), -1);
  CHECK_EQ(netdev_parse_spec("tap=t0", &o, NULL), 0);
  CHECK_EQ(o.vnet_hdr, NETDEV_VNET_HDR_AUTO);
  CHECK_EQ(netdev_parse_spec("tap=t0,vnet_hdr=on", &o, NULL), 0);
  CHECK_EQ(o.vnet_hdr, NETDEV_VNET_HDR_ON);
  CHECK_EQ(netdev_parse_spec("tap=t0,vnet_hdr=off", &o, NULL), 0);
  CHECK_EQ(o.vnet_hdr, NETDEV_VNET_HDR_OFF);
}

TEST(net_spec_errors_name_the_problem) {
  static const struct {
    const char *spec, *msg;
  } cases[] = {
      {"", "empty"},
      {",", "empty"},
      {"vde", "unknown network type 'vde'"},
      {"user,hostfwd=tcp::1-:", "no guest port"},
      {"user,hostfwd=tcp:1.2.3.4.5:1-:1", "host address '1.2.3.4.5'"},
      {"user,hostfwd=tcp::-:1", "no host port"},
      {"user,hostfwd=tcp::65536-:1", "host port '65536'"},
      {"user,hostfwd=tcp::1-:1x", "guest port '1x'"},
      {"user,mac=zz:54:00:12:34:56", "not six hex bytes"},
      {"user,mac=52:54:00:12:34:56:78", "extra characters"},
      {"user,mtu=70000", "mtu '70000'"},
      {"user,mtu=", "mtu ''"},
      {"user,=x", "unknown option ''"},
      {"tap=t0,vnet_hdr=yes", "vnet_hdr 'yes' is neither on nor off"},
      {"user,vnet_hdr=on", "vnet_hdr is an option of 'tap' networking only"},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    netdev_opts o;
    vs_error *err = NULL;
    CHECK_EQ(netdev_parse_spec(cases[i].spec, &o, &err), -1);
    CHECK(err != NULL);
    if (err) {
      CHECK_CONTAINS(err->msg, cases[i].msg);
      vs_error_free(err);
    }
  }
  /* more forwards than there is room for */
  char spec[2048] = "user";
  for (int i = 0; i <= NETDEV_MAX_HOSTFWD; i++)
    snprintf(spec + strlen(spec), sizeof(spec) - strlen(spec), ",hostfwd=tcp::%d-:1", 1000 + i);
  netdev_opts o;
  vs_error *err = NULL;
  CHECK_EQ(netdev_parse_spec(spec, &o, &err), -1);
  CHECK_CONTAINS(err->msg, "too many hostfwd");
  vs_error_free(err);
}

int main(void) {
  int r = tap_run();
  virtio_net_destroy(&net);
  free(ram);
  return r;
}
