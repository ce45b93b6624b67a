/* libFuzzer: the hart's two engines must agree. The input (laid out as for fuzz_cpu: the first
 * bytes choose the starting state, the rest is the program, repeated over RAM) runs on two harts
 * with their own buses and RAM, one in the interpreter (rv_bus.interpreter) and one translated to
 * host code, under the same run budgets. After every rv_hart_run the architectural state, RAM and
 * what the devices saw must be the same; any difference is a crash (__builtin_trap).
 *
 * Both machines are deterministic: time follows the instructions retired (so it does not depend on
 * how often an engine looks at the timer, only on where the guest is), devices answer by address,
 * and interrupts are the same fixed lines for both. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "fuzz_hyp.h"

#define RAM_BASE 0x80000000ULL
#define RAM_SIZE (1U << 18)

typedef struct machine {
  rv_bus bus;
  rv_hart hart;
  uint8_t *ram;
  uint64_t mtime_reads;
  uint64_t mmio_reads, mmio_writes, mmio_hash;
} machine;

static uint64_t fz_mtime(void *opaque) {
  machine *m = opaque;
  m->mtime_reads++; /* not compared: the run loop polls the timer as often as it likes */
  return m->hart.minstret * 7;
}
static bool fz_mmio_read(void *opaque, uint64_t pa, unsigned size, uint64_t *val) {
  machine *m = opaque;
  (void)size;
  m->mmio_reads++;
  *val = pa * 0x9e3779b97f4a7c15ULL;
  return (pa & 0xf0000000) == 0x10000000; /* a pretend device window */
}
static bool fz_mmio_write(void *opaque, uint64_t pa, unsigned size, uint64_t val) {
  machine *m = opaque;
  m->mmio_writes++;
  m->mmio_hash = (m->mmio_hash ^ pa ^ ((uint64_t)size << 60) ^ val) * 0x100000001b3ULL;
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

static bool machine_init(machine *m, bool interpreter) {
  /* guard pages around RAM turn any out-of-bounds host access into a crash the fuzzer sees */
  uint8_t *g = mmap(NULL, RAM_SIZE + 2 * 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (g == MAP_FAILED)
    return false;
  m->ram = g + 4096;
  if (mprotect(m->ram, RAM_SIZE, PROT_READ | PROT_WRITE) < 0)
    return false;
  m->bus = (rv_bus){.ram = m->ram,
                    .ram_base = RAM_BASE,
                    .ram_size = RAM_SIZE,
                    .opaque = m,
                    .mmio_read = fz_mmio_read,
                    .mmio_write = fz_mmio_write,
                    .read_mtime = fz_mtime,
                    .code_pages = calloc(RAM_SIZE / 4096, sizeof(uint32_t)),
                    .interpreter = interpreter};
  return m->bus.code_pages && rv_hart_init(&m->hart, 0, &m->bus, NULL) == 0;
}

/* The starting state of fuzz_cpu, from the header. */
static void machine_load(machine *m, uint64_t sel, uint64_t mstatus, uint64_t satp_ppn,
                         uint64_t deleg, uint64_t tvec, uint64_t hyp, const uint8_t *prog,
                         size_t n) {
  rv_hart *h = &m->hart;
  m->bus.sbi_call = (sel & 0x100) ? fz_sbi : NULL;
  m->mtime_reads = m->mmio_reads = m->mmio_writes = m->mmio_hash = 0;
  memset(m->ram, 0, RAM_SIZE);
  for (size_t off = 0; n && off < RAM_SIZE; off += n)
    memcpy(m->ram + off, prog, n < RAM_SIZE - off ? n : RAM_SIZE - off);
  memset(m->bus.code_pages, 0, (RAM_SIZE / 4096) * sizeof(uint32_t));
  rv_hart_flush_icache(h); /* RAM was rewritten behind the hart's back */
  static const int privs[4] = {RV_PRIV_U, RV_PRIV_S, RV_PRIV_M, RV_PRIV_M};
  rv_hart_reset(h, RAM_BASE + ((sel >> 8) & 0xffe), privs[sel & 3]);
  h->check_irq = h->yield = false;
  h->mstatus = (h->mstatus & ~0x7e19aaULL) | (mstatus & 0x7e19aaULL);
  h->mstatus |= (mstatus & 1) ? (1ULL << 13) : 0; /* FS on */
  static const uint64_t modes[4] = {0, 8, 9, 10};
  h->satp = (modes[(sel >> 2) & 3] << 60) | ((RAM_BASE >> 12) + (satp_ppn & 0x7f));
  h->medeleg = deleg & 0xb3ff;
  h->mideleg = (deleg >> 32) & 0x222;
  h->mie = (deleg >> 16) & 0xaaa;
  h->mtvec = RAM_BASE + (tvec & 0xffff);
  h->stvec = RAM_BASE + ((tvec >> 16) & 0xffff);
  h->menvcfg = (sel & 0x10) ? (1ULL << 63) : 0;
  h->mcounteren = (sel >> 5) & 7;
  h->stimecmp = (sel & 0x20000) ? 0 : UINT64_MAX;
  fuzz_hyp_state(h, hyp, RAM_BASE);
  rv_hart_flush_tlb(h);
  if (sel & 0x40000)
    rv_hart_set_irq(h, RV_MIP_MEIP, true);
}

static void same(uint64_t a, uint64_t b) {
  if (a != b)
    __builtin_trap();
}

static void compare(const machine *a, const machine *b) {
  const rv_hart *x = &a->hart, *y = &b->hart;
  for (int i = 0; i < 32; i++) {
    same(x->x[i], y->x[i]);
    same(x->f[i], y->f[i]);
  }
  same(x->pc, y->pc);
  same((uint64_t)x->priv, (uint64_t)y->priv);
  same(x->minstret, y->minstret);
  same(x->mcause, y->mcause);
  same(x->mepc, y->mepc);
  same(x->mtval, y->mtval);
  same(x->scause, y->scause);
  same(x->sepc, y->sepc);
  same(x->stval, y->stval);
  same(x->mstatus, y->mstatus);
  same(x->satp, y->satp);
  same(x->fflags, y->fflags);
  same(x->frm, y->frm);
  same(x->mip, y->mip);
  same(x->wfi, y->wfi);
  same(x->reservation_valid, y->reservation_valid);
  same(x->virt, y->virt);
  same(x->vsstatus, y->vsstatus);
  same(x->hstatus, y->hstatus);
  same(x->htval, y->htval);
  same(x->mtval2, y->mtval2);
  same(x->hvip, y->hvip);
  same(a->mmio_reads, b->mmio_reads);
  same(a->mmio_writes, b->mmio_writes);
  same(a->mmio_hash, b->mmio_hash);
  if (memcmp(a->ram, b->ram, RAM_SIZE) != 0)
    __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static machine interp, jit;
  static bool ready;
  if (!ready) {
    if (!machine_init(&interp, true) || !machine_init(&jit, false))
      abort();
    ready = true;
  }
  const uint8_t *p = data;
  size_t n = size;
  uint64_t sel = take64(&p, &n);
  uint64_t mstatus = take64(&p, &n), satp_ppn = take64(&p, &n), deleg = take64(&p, &n);
  uint64_t tvec = take64(&p, &n), hyp = take64(&p, &n);
  machine_load(&interp, sel, mstatus, satp_ppn, deleg, tvec, hyp, p, n);
  machine_load(&jit, sel, mstatus, satp_ppn, deleg, tvec, hyp, p, n);
  /* runs of a block in the interpreter before it is translated: 0 (every block translated at
   * once) to 3, so interpreted and translated blocks follow one another */
  jit.hart.icache->jit_warmup = (uint8_t)(sel >> 62);
  /* a pool with room for two blocks (emptied under linked and running code) or a full one, in
   * both engines (tvec's high half is otherwise unused) */
  uint32_t pool = (tvec >> 32) & 1 ? 2 * RV_BLOCK_MAX : RV_POOL_SIZE;
  interp.hart.icache->pool_limit = pool;
  jit.hart.icache->pool_limit = pool;
  /* budgets that end runs inside blocks and chains as well as after them */
  static const uint64_t budgets[8] = {1, 7, 33, 512, 3, 100, 1000, 2};
  for (int i = 0; i < 12 && !interp.hart.wfi; i++) {
    uint64_t budget = budgets[(sel >> (20 + 3 * (i % 14))) & 7];
    uint64_t ra = rv_hart_run(&interp.hart, budget);
    uint64_t rb = rv_hart_run(&jit.hart, budget);
    same(ra, rb);
    compare(&interp, &jit);
  }
  return 0;
}
