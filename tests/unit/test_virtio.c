/* virtio-mmio + split virtqueues + virtio-blk, driven like a guest driver would through the MMIO
 * registers, with a fake guest RAM and a raw disk image; hostile rings must put the device in
 * DEVICE_NEEDS_RESET (never crash), bad requests must complete with an error status. */
#include "tap.h"
#include "virtio_guest.h"
#include "vm/dev/virtio.h"

#include <endian.h>
#include <stdlib.h>

#define DESC (RAM_BASE + 0x1000)
#define AVAIL (RAM_BASE + 0x2000)
#define USED (RAM_BASE + 0x3000)
#define BUFS (RAM_BASE + 0x10000)

static virtio_blk blk;
static int irq_level;
static char tmpdir[64];
static vm_disk *disk;

static void irq_set(void *ctrl, unsigned irq, bool level) { irq_level = level; }

static uint32_t mmio_r(uint64_t off) {
  uint64_t v = 0;
  CHECK(virtio_mmio_read(&blk.mmio, off, 4, &v));
  return (uint32_t)v;
}
static void mmio_w(uint64_t off, uint32_t v) { CHECK(virtio_mmio_write(&blk.mmio, off, 4, v)); }

static void set_desc(unsigned i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next) {
  uint64_t d = DESC + 16ull * i;
  w64(d, addr);
  w32(d + 8, len);
  w16(d + 12, flags);
  w16(d + 14, next);
}

static void setup(bool readonly, uint64_t features_lo, uint32_t features_hi) {
  if (!ram)
    ram = aligned_alloc(4096, RAM_SIZE);
  memset(ram, 0, RAM_SIZE);
  if (!tmpdir[0]) {
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/vessel-test-virtio-XXXXXX");
    CHECK(mkdtemp(tmpdir) != NULL);
  }
  char path[128];
  snprintf(path, sizeof(path), "%s/disk.raw", tmpdir);
  unlink(path);
  vm_disk_create_opts co = {.format = VM_DISK_FORMAT_RAW, .size = 1 << 20};
  CHECK_EQ(vm_disk_create(path, &co, NULL), 0);
  if (disk)
    vm_disk_close(disk, NULL);
  vm_disk_opts o = {.format = VM_DISK_FORMAT_RAW, .readonly = readonly};
  CHECK_EQ(vm_disk_open(path, &o, &disk, NULL), 0);
  dev_irq_line line = {.set = irq_set, .ctrl = NULL, .irq = 1};
  virtio_blk_init(&blk, disk, "vessel-serial-0",
                  (virtio_mem){.ram = ram, .base = RAM_BASE, .size = RAM_SIZE}, line);
  irq_level = 0;

  CHECK_EQ(mmio_r(0x000), 0x74726976);
  CHECK_EQ(mmio_r(0x004), 2);
  CHECK_EQ(mmio_r(0x008), 2);
  mmio_w(0x070, VIRTIO_STATUS_ACKNOWLEDGE);
  mmio_w(0x070, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
  mmio_w(0x024, 0);
  mmio_w(0x020, (uint32_t)features_lo);
  mmio_w(0x024, 1);
  mmio_w(0x020, features_hi);
  mmio_w(0x070, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK);
  mmio_w(0x030, 0);
  CHECK_EQ(mmio_r(0x034), VIRTQ_MAX_SIZE);
  mmio_w(0x038, QSIZE);
  mmio_w(0x080, (uint32_t)DESC);
  mmio_w(0x084, (uint32_t)(DESC >> 32));
  mmio_w(0x090, (uint32_t)AVAIL);
  mmio_w(0x094, 0);
  mmio_w(0x0a0, (uint32_t)USED);
  mmio_w(0x0a4, 0);
  mmio_w(0x044, 1);
}

static void driver_ok(void) {
  uint32_t st = mmio_r(0x070);
  mmio_w(0x070, st | VIRTIO_STATUS_DRIVER_OK);
}

static uint16_t avail_idx;

/* Publish head and notify; returns the used length, and the status byte via *status. */
static uint32_t submit(uint16_t head, uint64_t status_gpa, uint8_t *status) {
  w16(AVAIL + 4 + 2 * (avail_idx % QSIZE), head);
  avail_idx++;
  w16(AVAIL + 2, avail_idx);
  uint16_t used_before = r16(USED + 2);
  mmio_w(0x050, 0);
  if (r16(USED + 2) == used_before)
    return UINT32_MAX;
  uint16_t slot = (uint16_t)(r16(USED + 2) - 1) % QSIZE;
  CHECK_EQ(r32(USED + 4 + 8 * slot), head);
  if (status)
    *status = *gp(status_gpa);
  return r32(USED + 4 + 8 * slot + 4);
}

static void make_request(uint32_t type, uint64_t sector, uint64_t data_gpa, uint32_t data_len,
                         bool data_writable) {
  w32(BUFS, type);
  w32(BUFS + 4, 0);
  w64(BUFS + 8, sector);
  if (data_len) {
    set_desc(0, BUFS, 16, VIRTQ_DESC_F_NEXT, 1);
    set_desc(1, data_gpa, data_len, VIRTQ_DESC_F_NEXT | (data_writable ? VIRTQ_DESC_F_WRITE : 0),
             2);
    set_desc(2, BUFS + 16, 1, VIRTQ_DESC_F_WRITE, 0);
  } else {
    set_desc(0, BUFS, 16, VIRTQ_DESC_F_NEXT, 2);
    set_desc(2, BUFS + 16, 1, VIRTQ_DESC_F_WRITE, 0);
  }
  *gp(BUFS + 16) = 0xff;
}

static const uint64_t F_HI = 1; /* VERSION_1 */
static const uint64_t F_LO = VIRTIO_F_RING_INDIRECT_DESC | VIRTIO_F_RING_EVENT_IDX | (1u << 9) |
                             (1u << 13) | (1u << 14) | (1u << 2) | (1u << 6);

TEST(blk_write_read_flush_getid) {
  avail_idx = 0;
  setup(false, F_LO, F_HI);
  CHECK(mmio_r(0x070) & VIRTIO_STATUS_FEATURES_OK);
  driver_ok();
  /* capacity in the configuration space: 1 MiB = 2048 sectors */
  uint64_t cap = 0;
  CHECK(virtio_mmio_read(&blk.mmio, 0x100, 8, &cap));
  CHECK_U64(cap, 2048);

  for (int i = 0; i < 4096; i++)
    *gp(BUFS + 0x1000 + i) = (uint8_t)(i * 7);
  uint8_t st;
  make_request(1, 8, BUFS + 0x1000, 4096, false);
  CHECK_EQ(submit(0, BUFS + 16, &st), 1);
  CHECK_EQ(st, 0);
  CHECK_EQ(irq_level, 1);
  mmio_w(0x064, mmio_r(0x060));
  CHECK_EQ(irq_level, 0);

  make_request(0, 8, BUFS + 0x3000, 4096, true);
  CHECK_EQ(submit(0, BUFS + 16, &st), 4097);
  CHECK_EQ(st, 0);
  CHECK(memcmp(gp(BUFS + 0x1000), gp(BUFS + 0x3000), 4096) == 0);

  make_request(4, 0, 0, 0, false);
  submit(0, BUFS + 16, &st);
  CHECK_EQ(st, 0);

  make_request(8, 0, BUFS + 0x5000, 20, true);
  CHECK_EQ(submit(0, BUFS + 16, &st), 21);
  CHECK_EQ(st, 0);
  CHECK(memcmp(gp(BUFS + 0x5000), "vessel-serial-0", 15) == 0);
}

TEST(blk_bad_requests_get_error_status) {
  avail_idx = 0;
  setup(false, F_LO, F_HI);
  driver_ok();
  uint8_t st;
  make_request(0, 2047, BUFS + 0x3000, 1024, true); /* crosses the end of the disk */
  submit(0, BUFS + 16, &st);
  CHECK_EQ(st, 1);
  make_request(0, UINT64_MAX / 2, BUFS + 0x3000, 512, true); /* sector overflow */
  submit(0, BUFS + 16, &st);
  CHECK_EQ(st, 1);
  make_request(1, 0, BUFS + 0x3000, 100, false); /* not a multiple of 512 */
  submit(0, BUFS + 16, &st);
  CHECK_EQ(st, 1);
  make_request(99, 0, 0, 0, false); /* unknown type */
  submit(0, BUFS + 16, &st);
  CHECK_EQ(st, 2);
  /* discard with a segment beyond the disk, then a good write-zeroes */
  w64(BUFS + 0x6000, 2040);
  w32(BUFS + 0x6008, 100);
  w32(BUFS + 0x600c, 0);
  make_request(11, 0, BUFS + 0x6000, 16, false);
  submit(0, BUFS + 16, &st);
  CHECK_EQ(st, 1);
  w64(BUFS + 0x6000, 0);
  w32(BUFS + 0x6008, 16);
  w32(BUFS + 0x600c, 1);
  make_request(13, 0, BUFS + 0x6000, 16, false);
  submit(0, BUFS + 16, &st);
  CHECK_EQ(st, 0);
  /* the device still works and is not in the error state */
  CHECK(!(mmio_r(0x070) & VIRTIO_STATUS_NEEDS_RESET));
}

TEST(blk_readonly_refuses_writes) {
  avail_idx = 0;
  setup(true, F_LO & ~((1u << 13) | (1u << 14)), F_HI);
  CHECK(mmio_r(0x070) & VIRTIO_STATUS_FEATURES_OK);
  mmio_w(0x014, 0);
  CHECK(mmio_r(0x010) & (1u << 5)); /* VIRTIO_BLK_F_RO offered */
  driver_ok();
  uint8_t st;
  make_request(1, 0, BUFS + 0x1000, 512, false);
  submit(0, BUFS + 16, &st);
  CHECK_EQ(st, 1);
}

TEST(indirect_descriptors) {
  avail_idx = 0;
  setup(false, F_LO, F_HI);
  driver_ok();
  uint64_t table = BUFS + 0x8000;
  w32(BUFS, 0);
  w64(BUFS + 8, 0);
  /* header, 8 data buffers of 512 bytes, status */
  uint64_t d = table;
  w64(d, BUFS), w32(d + 8, 16), w16(d + 12, VIRTQ_DESC_F_NEXT), w16(d + 14, 1);
  for (int i = 0; i < 8; i++) {
    d = table + 16 * (1 + i);
    w64(d, BUFS + 0x10000 + 512 * i), w32(d + 8, 512);
    w16(d + 12, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE), w16(d + 14, (uint16_t)(2 + i));
  }
  d = table + 16 * 9;
  w64(d, BUFS + 16), w32(d + 8, 1), w16(d + 12, VIRTQ_DESC_F_WRITE), w16(d + 14, 0);
  set_desc(3, table, 16 * 10, VIRTQ_DESC_F_INDIRECT, 0);
  uint8_t st = 0xff;
  CHECK_EQ(submit(3, BUFS + 16, &st), 4097);
  CHECK_EQ(st, 0);
}

static void expect_needs_reset(void) {
  CHECK(mmio_r(0x070) & VIRTIO_STATUS_NEEDS_RESET);
  CHECK(mmio_r(0x060) & VIRTIO_INT_CONFIG);
  /* further notifications are ignored until reset; reset clears everything */
  mmio_w(0x050, 0);
  mmio_w(0x070, 0);
  CHECK_EQ(mmio_r(0x070), 0);
  CHECK_EQ(mmio_r(0x044), 0);
  CHECK_EQ(irq_level, 0);
}

TEST(hostile_chains_need_reset) {
  for (int c = 0; c < 8; c++) {
    avail_idx = 0;
    setup(false, F_LO, F_HI);
    driver_ok();
    make_request(0, 0, BUFS + 0x1000, 512, true);
    switch (c) {
    case 0: /* loop */
      set_desc(2, BUFS + 16, 1, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 2);
      break;
    case 1: /* buffer outside RAM */
      set_desc(1, RAM_BASE + RAM_SIZE - 100, 512, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 2);
      break;
    case 2: /* huge length */
      set_desc(1, BUFS, 0xffffffffu, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 2);
      break;
    case 3: /* next out of range */
      set_desc(1, BUFS + 0x1000, 512, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 999);
      break;
    case 4: /* readable after writable */
      set_desc(2, BUFS + 16, 1, VIRTQ_DESC_F_NEXT, 3);
      set_desc(3, BUFS + 16, 1, 0, 0);
      break;
    case 5: /* indirect pointing at itself (nested) */
      set_desc(0, DESC, 16, VIRTQ_DESC_F_INDIRECT, 0);
      break;
    case 6: /* no status byte */
      set_desc(0, BUFS, 16, 0, 0);
      break;
    case 7: /* avail index far ahead of the queue */
      avail_idx = 100;
      break;
    }
    submit(0, BUFS + 16, NULL);
    expect_needs_reset();
  }
}

TEST(status_handshake_out_of_order) {
  avail_idx = 0;
  setup(false, F_LO, F_HI);
  /* features without VERSION_1: FEATURES_OK is refused */
  mmio_w(0x070, 0);
  mmio_w(0x070, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
  mmio_w(0x024, 1);
  mmio_w(0x020, 0);
  mmio_w(0x070, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK);
  CHECK(!(mmio_r(0x070) & VIRTIO_STATUS_FEATURES_OK));
  /* features the device does not offer: refused */
  mmio_w(0x070, 0);
  mmio_w(0x070, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
  mmio_w(0x024, 1);
  mmio_w(0x020, 1 | 4);
  mmio_w(0x070, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK);
  CHECK(!(mmio_r(0x070) & VIRTIO_STATUS_FEATURES_OK));
  /* DRIVER_OK without FEATURES_OK: needs reset */
  mmio_w(0x070, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_DRIVER_OK);
  CHECK(mmio_r(0x070) & VIRTIO_STATUS_NEEDS_RESET);
  /* queue rings outside RAM: needs reset, queue stays not ready */
  mmio_w(0x070, 0);
  mmio_w(0x070, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
  mmio_w(0x030, 0);
  mmio_w(0x038, QSIZE);
  mmio_w(0x080, 0x1000);
  mmio_w(0x044, 1);
  CHECK_EQ(mmio_r(0x044), 0);
  CHECK(mmio_r(0x070) & VIRTIO_STATUS_NEEDS_RESET);
  /* queue sizes that are not a power of two, or above QueueNumMax: the queue never goes live */
  for (int k = 0; k < 2; k++) {
    mmio_w(0x070, 0);
    mmio_w(0x070, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
    mmio_w(0x038, k ? 12 : VIRTQ_MAX_SIZE * 2);
    mmio_w(0x080, (uint32_t)DESC);
    mmio_w(0x090, (uint32_t)AVAIL);
    mmio_w(0x0a0, (uint32_t)USED);
    mmio_w(0x044, 1);
    CHECK_EQ(mmio_r(0x044), 0);
    CHECK(mmio_r(0x070) & VIRTIO_STATUS_NEEDS_RESET);
  }
  /* a notification before DRIVER_OK does nothing */
  mmio_w(0x070, 0);
  w16(AVAIL + 2, 1);
  mmio_w(0x050, 0);
  CHECK_EQ(r16(USED + 2), 0);
  /* configuration space: capacity readable in pieces, beyond its end reads zero */
  uint64_t lo = 0, hi = 0, past = 1;
  CHECK(virtio_mmio_read(&blk.mmio, 0x100, 4, &lo));
  CHECK(virtio_mmio_read(&blk.mmio, 0x104, 4, &hi));
  CHECK_U64(lo | hi << 32, 2048);
  CHECK(virtio_mmio_read(&blk.mmio, 0x100 + VIRTIO_BLK_CONFIG_SIZE, 4, &past));
  CHECK_EQ(past, 0);
  /* odd-sized accesses and unknown registers are harmless */
  uint64_t v;
  CHECK(virtio_mmio_read(&blk.mmio, 0x001, 1, &v));
  CHECK(virtio_mmio_write(&blk.mmio, 0xffc, 8, ~0ull));
  CHECK(virtio_mmio_read(&blk.mmio, 0xff8, 8, &v));
  CHECK_EQ(v, 0);
}

TEST(event_idx_suppresses_interrupts) {
  avail_idx = 0;
  setup(false, F_LO, F_HI);
  driver_ok();
  uint8_t st;
  make_request(4, 0, 0, 0, false);
  submit(0, BUFS + 16, &st); /* first completion always interrupts */
  CHECK_EQ(irq_level, 1);
  mmio_w(0x064, 1);
  /* used_event = 5: the driver wants an interrupt only after the 6th completion */
  w16(AVAIL + 4 + 2 * QSIZE, 5);
  submit(0, BUFS + 16, &st);
  CHECK_EQ(irq_level, 0);
  for (int i = 0; i < 4; i++)
    submit(0, BUFS + 16, &st);
  CHECK_EQ(irq_level, 1);
  /* the device published avail_event = what it consumed */
  CHECK_EQ(r16(USED + 4 + 8 * QSIZE), avail_idx);
}

static void cleanup(void) {
  if (disk)
    vm_disk_close(disk, NULL);
  free(ram);
  if (tmpdir[0]) {
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
    if (system(cmd) != 0)
      fprintf(stderr, "cleanup failed\n");
  }
}

int main(void) {
  int r = tap_run();
  cleanup();
  return r;
}
