/* libFuzzer harness for the virtqueue parser and virtio-blk: the input is guest RAM (rings,
 * descriptors, requests, all hostile) plus a few bytes choosing the queue setup. The device is
 * brought up through its MMIO registers and notified a few times; it must never crash, hang,
 * or touch memory outside the fake guest RAM (ASan watches the bounds). */
#include "vm/dev/virtio.h"

#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#define RAM_BASE 0x80000000ull
#define RAM_SIZE (64u << 10)

static void irq_set(void *ctrl, unsigned irq, bool level) {}

static vm_disk *make_disk(void) {
  int fd = memfd_create("fuzz-virtq-disk", MFD_CLOEXEC);
  if (fd < 0 || ftruncate(fd, 256 << 10) < 0)
    return NULL;
  char path[64];
  snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
  vm_disk_opts o = {.format = VM_DISK_FORMAT_RAW};
  vm_disk *d = NULL;
  vm_disk_open(path, &o, &d, NULL);
  close(fd);
  return d;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static vm_disk *disk;
  static virtio_blk blk;
  if (!disk) {
    vs_log_configure("fuzz_virtq", VS_LOG_ERROR, VS_LOG_FORMAT_TEXT, 2);
    if (!(disk = make_disk()))
      return 0;
  }
  if (size < 16)
    return 0;
  /* Exactly RAM_SIZE bytes so ASan catches any access past guest RAM. */
  uint8_t *ram = malloc(RAM_SIZE);
  memset(ram, 0, RAM_SIZE);
  memcpy(ram, data + 16, size - 16 < RAM_SIZE ? size - 16 : RAM_SIZE);
  dev_irq_line irq = {.set = irq_set};
  virtio_blk_init(&blk, disk, "fuzz", (virtio_mem){.ram = ram, .base = RAM_BASE, .size = RAM_SIZE},
                  irq);

  uint32_t w[4];
  memcpy(w, data, 16);
  virtio_mmio *t = &blk.mmio;
  virtio_mmio_write(t, 0x070, 4, 1);
  virtio_mmio_write(t, 0x070, 4, 3);
  virtio_mmio_write(t, 0x024, 4, 0);
  virtio_mmio_write(t, 0x020, 4, w[0]);
  virtio_mmio_write(t, 0x024, 4, 1);
  virtio_mmio_write(t, 0x020, 4, 1);
  virtio_mmio_write(t, 0x070, 4, 11);
  virtio_mmio_write(t, 0x030, 4, 0);
  virtio_mmio_write(t, 0x038, 4, 1u << (w[1] & 15)); /* queue size: sometimes invalid */
  /* ring addresses: inside RAM mostly, from the input */
  virtio_mmio_write(t, 0x080, 4, (uint32_t)RAM_BASE + (w[2] & 0xfff0));
  virtio_mmio_write(t, 0x084, 4, 0);
  virtio_mmio_write(t, 0x090, 4, (uint32_t)RAM_BASE + ((w[2] >> 16) & 0xfffe));
  virtio_mmio_write(t, 0x094, 4, 0);
  virtio_mmio_write(t, 0x0a0, 4, (uint32_t)RAM_BASE + (w[3] & 0xfffc));
  virtio_mmio_write(t, 0x0a4, 4, 0);
  virtio_mmio_write(t, 0x044, 4, 1);
  virtio_mmio_write(t, 0x070, 4, 15);
  for (int i = 0; i < 4; i++) {
    virtio_mmio_write(t, 0x050, 4, 0);
    uint64_t v;
    virtio_mmio_read(t, 0x060, 4, &v);
    virtio_mmio_write(t, 0x064, 4, (uint32_t)v);
    /* the driver side moves on: bump the available index a little */
    uint64_t avail = (w[2] >> 16) & 0xfffe;
    if (avail + 4 <= RAM_SIZE)
      ram[avail + 2] = (uint8_t)(ram[avail + 2] + (w[3] >> 16) % 3);
  }
  virtio_mmio_write(t, 0x070, 4, 0);
  free(ram);
  return 0;
}
