/* libFuzzer: random instruction streams and random privileged state for the hart. Whatever the
 * guest does, the VMM must not crash, read or write outside guest RAM, or hang: the guest only
 * gets exceptions. The first bytes choose the starting state (with the hypervisor extension's:
 * fuzz_hyp.h), the rest is the program. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "fuzz_hyp.h"

#define RAM_BASE 0x80000000ull
#define RAM_SIZE (1u << 18)

static uint64_t fake_mtime;

static uint64_t fz_mtime(void *opaque) {
  (void)opaque;
  return fake_mtime += 7;
}
static bool fz_mmio_read(void *opaque, uint64_t pa, unsigned size, uint64_t *val) {
  (void)opaque;
  (void)size;
  *val = pa * 0x9e3779b97f4a7c15ull;
  return (pa & 0xf0000000) == 0x10000000; /* a pretend device window */
}
static bool fz_mmio_write(void *opaque, uint64_t pa, unsigned size, uint64_t val) {
  (void)opaque;
  (void)size;
  (void)val;
  return (pa & 0xf0000000) == 0x10000000;
}
static bool fz_sbi(void *opaque, rv_hart *h) {
  (void)opaque;
  h->x[10] = 0;
  return (h->x[17] & 1) != 0;
}

static uint64_t take64(const uint8_t **p, size_t *n) {
  uint64_t v = 0;
  size_t k = *n < 8 ? *n : 8;
  memcpy(&v, *p, k);
  *p += k;
  *n -= k;
  return v;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static uint8_t *ram;
  static rv_hart hart;
  static rv_bus bus;
  if (!ram) {
    /* guard pages around RAM turn any out-of-bounds host access into a crash the fuzzer sees */
    uint8_t *m = mmap(NULL, RAM_SIZE + 2 * 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
      return 0;
    ram = m + 4096;
    mprotect(ram, RAM_SIZE, PROT_READ | PROT_WRITE);
    bus = (rv_bus){.ram = ram,
                   .ram_base = RAM_BASE,
                   .ram_size = RAM_SIZE,
                   .mmio_read = fz_mmio_read,
                   .mmio_write = fz_mmio_write,
                   .read_mtime = fz_mtime,
                   .code_pages = calloc(RAM_SIZE / 4096, sizeof(uint32_t))};
    if (rv_hart_init(&hart, 0, &bus, NULL) < 0)
      return 0;
  }
  const uint8_t *p = data;
  size_t n = size;
  uint64_t sel = take64(&p, &n);
  uint64_t mstatus = take64(&p, &n), satp_ppn = take64(&p, &n), deleg = take64(&p, &n);
  uint64_t tvec = take64(&p, &n), hyp = take64(&p, &n);
  bus.sbi_call = (sel & 0x100) ? fz_sbi : NULL;
  memset(ram, 0, RAM_SIZE);
  /* the program at the start of RAM, repeated so page tables built from it look like code */
  for (size_t off = 0; n && off < RAM_SIZE; off += n)
    memcpy(ram + off, p, n < RAM_SIZE - off ? n : RAM_SIZE - off);
  rv_hart_flush_icache(&hart); /* RAM was rewritten behind the hart's back */
  static const int privs[4] = {RV_PRIV_U, RV_PRIV_S, RV_PRIV_M, RV_PRIV_M};
  rv_hart_reset(&hart, RAM_BASE + ((sel >> 8) & 0xffe), privs[sel & 3]);
  hart.mstatus = (hart.mstatus & ~0x7e19aaull) | (mstatus & 0x7e19aaull);
  hart.mstatus |= (mstatus & 1) ? (1ull << 13) : 0; /* FS on */
  static const uint64_t modes[4] = {0, 8, 9, 10};
  hart.satp = (modes[(sel >> 2) & 3] << 60) | ((RAM_BASE >> 12) + (satp_ppn & 0x7f));
  hart.medeleg = deleg & 0xb3ff;
  hart.mideleg = (deleg >> 32) & 0x222;
  hart.mie = (deleg >> 16) & 0xaaa;
  hart.mtvec = RAM_BASE + (tvec & 0xffff);
  hart.stvec = RAM_BASE + ((tvec >> 16) & 0xffff);
  hart.menvcfg = (sel & 0x10) ? (1ull << 63) : 0;
  hart.mcounteren = (sel >> 5) & 7;
  hart.stimecmp = (sel & 0x20000) ? 0 : UINT64_MAX;
  fuzz_hyp_state(&hart, hyp, RAM_BASE);
  rv_hart_flush_tlb(&hart);
  rv_hart_flush_icache(&hart);
  if (sel & 0x40000)
    rv_hart_set_irq(&hart, RV_MIP_MEIP, true);
  for (int i = 0; i < 8 && !hart.wfi; i++)
    rv_hart_run(&hart, 512);
  return 0;
}
