/* libFuzzer harness: a hostile guest. The input is a sequence of operations on a small machine:
 * MMIO reads and writes anywhere in the physical address space below RAM (devices and holes),
 * writes into guest RAM (so virtqueue rings and what they point to are the fuzzer's), and SBI
 * calls with arbitrary registers. The first byte's top bit adds a virtio-balloon (inflated and
 * reported pages are dropped from RAM). Nothing may crash or corrupt the VMM. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "vm/machine.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A minimal RISC-V Image: just the header. */
static int kernel_fd = -1;

static void make_kernel(void) {
  uint8_t img[4096] = {0};
  memcpy(img + 0x30, "RISCV\0\0\0", 8);
  memcpy(img + 0x38, "RSC\x05", 4);
  kernel_fd = memfd_create("kernel", MFD_CLOEXEC);
  if (kernel_fd < 0 || write(kernel_fd, img, sizeof(img)) != (ssize_t)sizeof(img))
    __builtin_trap();
}

static uint64_t take(const uint8_t **p, const uint8_t *end, unsigned n) {
  uint64_t v = 0;
  for (unsigned i = 0; i < n && *p < end; i++, (*p)++)
    v |= (uint64_t) * *p << (8 * i);
  return v;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (kernel_fd < 0)
    make_kernel();
  char path[64];
  snprintf(path, sizeof(path), "/proc/self/fd/%d", kernel_fd);
  vm_config cfg;
  vm_config_init(&cfg);
  cfg.kernel = path;
  cfg.mem_size = 4ull << 20;
  cfg.smp = 1 + (size ? data[0] % 4 : 0);
  cfg.balloon = size && (data[0] & 0x80);
  cfg.console_in = -1;
  cfg.console_out = -1;
  vs_error *err = NULL;
  vm *m = vm_create(&cfg, &err);
  if (!m)
    __builtin_trap(); /* this configuration is valid */

  static const uint64_t bases[] = {
      VM_SYSCON_BASE, VM_RTC_BASE, VM_ACLINT_BASE,         VM_PLIC_BASE, VM_UART_BASE,
      VM_VIRTIO_BASE, 0,           VM_PLIC_BASE + 0x200000};
  const uint8_t *p = data + (size ? 1 : 0), *end = data + size;
  while (p < end && !m->stop) {
    uint8_t op = (uint8_t)take(&p, end, 1);
    unsigned sz = 1u << ((op >> 1) & 3);
    if ((op & 0xc0) == 0xc0) {
      rv_hart *h = &m->harts[(op >> 3) % m->nharts];
      h->x[17] = take(&p, end, 4);
      h->x[16] = take(&p, end, 1);
      for (int r = 10; r < 16; r++)
        h->x[r] = take(&p, end, 8);
      if ((h->x[11] & 0xff) == 0x80) /* sometimes a valid guest address for DBCN */
        h->x[11] = VM_RAM_BASE + (h->x[11] >> 40);
      vm_sbi_call(m, h);
      continue;
    }
    if ((op & 0xf8) == 0xb0) { /* 1 to 8 bytes into RAM */
      uint64_t off = take(&p, end, 3) % (m->ram_size - 8);
      uint64_t v = take(&p, end, 8);
      memcpy(m->ram + off, &v, 1 + (op & 7));
      continue;
    }
    uint64_t addr = bases[(op >> 3) & 7] + take(&p, end, 3);
    if (op & 1) {
      uint64_t v = take(&p, end, sz);
      m->bus.mmio_write(m, addr, sz, v);
    } else {
      uint64_t v;
      m->bus.mmio_read(m, addr, sz, &v);
    }
  }
  vm_destroy(m);
  return 0;
}
