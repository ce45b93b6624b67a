/* Physical memory protection: M-mode sets up entries, S and U code (and M-mode through MPRV and
 * the lock bit) gets access faults (causes 1, 5, 7) where the lowest-numbered matching entry
 * denies, for NAPOT, NA4 and TOR entries; no match denies S/U; the TLB forgets old decisions. */
#include "test.h"

#define PMP_R 0x01
#define PMP_W 0x02
#define PMP_X 0x04
#define PMP_TOR 0x08
#define PMP_NA4 0x10
#define PMP_NAPOT 0x18
#define PMP_L 0x80
#define U_MODE 0
#define S_MODE 1

/* Pages under test; the last entry (15) lets S and U use the first 4 MiB of RAM (code, data,
 * stacks), so an address above it matches no entry. */
static uint8_t region[3][4096] __attribute__((aligned(4096)));
#define UNMATCHED 0x80600000ul

static volatile uint64_t target, loaded;

static void do_load(void) {
  loaded = *(volatile uint64_t *)target;
  back_to_m();
}
static void do_load32(void) {
  loaded = *(volatile uint32_t *)target;
  back_to_m();
}
static void do_store(void) {
  *(volatile uint64_t *)target = 0x5555;
  back_to_m();
}
static void do_call(void) {
  loaded = ((uint64_t(*)(void))target)();
  back_to_m();
}

/* Program one entry: pmpaddr<i> and its byte of pmpcfg0/pmpcfg2 (only entries 0-15 here). */
static void pmp_addr(int i, uint64_t v) {
  switch (i) {
  case 0:
    CSRW(pmpaddr0, v);
    break;
  case 1:
    CSRW(pmpaddr1, v);
    break;
  case 2:
    CSRW(pmpaddr2, v);
    break;
  case 3:
    CSRW(pmpaddr3, v);
    break;
  case 15:
    CSRW(pmpaddr15, v);
    break;
  default:
    test_exit(1);
  }
}
static uint64_t cfg0, cfg2;
static void pmp_cfg(int i, uint64_t cfg) {
  uint64_t *reg = i < 8 ? &cfg0 : &cfg2;
  int shift = 8 * (i % 8);
  *reg = (*reg & ~(0xfful << shift)) | (cfg << shift);
  CSRW(pmpcfg0, cfg0);
  CSRW(pmpcfg2, cfg2);
}
static uint64_t napot(uint64_t base, uint64_t size) { return (base | (size / 2 - 1)) >> 2; }

static void clear_test_entries(void) {
  for (int i = 0; i < 4; i++)
    pmp_cfg(i, 0);
}

/* Run fn at priv on addr; returns the trap cause, or -1 when nothing trapped. */
static long run(int priv, void (*fn)(void), uint64_t addr) {
  target = addr;
  reset_trap();
  if (fn == do_call)
    trap_resume_at = TRAP_RESUME_AT_RA;
  enter_mode(priv, fn);
  trap_resume_at = 0;
  if (!last_trap.count)
    return -1;
  CHECK(last_trap.count == 1 && !last_trap.s_mode && last_trap.priv == priv);
  return (long)last_trap.cause;
}

int main(void) {
  uint64_t a = (uint64_t)region[0], b = (uint64_t)region[1], c = (uint64_t)region[2];
  /* crt.S opened everything with entry 0; replace that with entry 15 over 4 MiB */
  cfg0 = cfg2 = 0;
  CSRW(pmpcfg0, 0);
  pmp_addr(15, napot(0x80000000ul, 4ul << 20));
  pmp_cfg(15, PMP_NAPOT | PMP_R | PMP_W | PMP_X);
  CHECK((uint64_t)&region[2][4096] <= 0x80400000ul);

  /* no matching entry: S and U fail, M succeeds */
  CHECK(run(S_MODE, do_load, UNMATCHED) == 5 && last_trap.tval == UNMATCHED);
  CHECK(run(U_MODE, do_store, UNMATCHED) == 7 && last_trap.tval == UNMATCHED);
  *(volatile uint64_t *)UNMATCHED = 7;
  CHECK(*(volatile uint64_t *)UNMATCHED == 7);

  /* NAPOT, read-only page: loads pass, stores fault, in S and in U */
  region[0][8] = 0x42;
  pmp_addr(0, napot(a, 4096));
  pmp_cfg(0, PMP_NAPOT | PMP_R);
  CHECK(run(S_MODE, do_load, a + 8) == -1 && loaded == 0x42);
  CHECK(run(S_MODE, do_store, a + 16) == 7 && last_trap.tval == a + 16);
  CHECK(run(U_MODE, do_store, a + 4088) == 7 && last_trap.tval == a + 4088);
  CHECK(run(U_MODE, do_load, a) == -1);
  CHECK(run(S_MODE, do_store, b) == -1 && *(volatile uint64_t *)b == 0x5555); /* entry 15 */
  /* M-mode ignores unlocked entries */
  *(volatile uint64_t *)(a + 16) = 9;
  CHECK(region[0][16] == 9);

  /* the TLB forgets: the same page becomes unreadable, then writable */
  pmp_cfg(0, PMP_NAPOT);
  CHECK(run(S_MODE, do_load, a + 8) == 5 && last_trap.tval == a + 8);
  pmp_cfg(0, PMP_NAPOT | PMP_R | PMP_W);
  CHECK(run(S_MODE, do_store, a + 8) == -1 && *(volatile uint64_t *)(a + 8) == 0x5555);

  /* NA4: one 4-byte word with no access inside a read-write page (entry 1) */
  pmp_addr(0, (b + 8) >> 2);
  pmp_cfg(0, PMP_NA4);
  pmp_addr(1, napot(b, 4096));
  pmp_cfg(1, PMP_NAPOT | PMP_R | PMP_W);
  CHECK(run(S_MODE, do_load32, b + 8) == 5);
  CHECK(run(S_MODE, do_load32, b + 12) == -1);
  CHECK(run(S_MODE, do_load32, b + 4) == -1);
  CHECK(run(U_MODE, do_store, b + 16) == -1);
  /* an access that only partly matches the lowest matching entry fails */
  CHECK(run(S_MODE, do_load, b + 4) == 5 && last_trap.tval == b + 4);
  CHECK(run(S_MODE, do_load, b + 8) == 5);

  /* priority: the lowest-numbered matching entry decides */
  clear_test_entries();
  pmp_addr(0, napot(c, 4096));
  pmp_cfg(0, PMP_NAPOT);
  pmp_addr(1, napot(c, 4096));
  pmp_cfg(1, PMP_NAPOT | PMP_R | PMP_W);
  CHECK(run(S_MODE, do_load, c) == 5);
  pmp_cfg(0, PMP_NAPOT | PMP_R | PMP_W);
  pmp_cfg(1, PMP_NAPOT);
  CHECK(run(S_MODE, do_load, c) == -1);

  /* TOR: [pmpaddr0, pmpaddr1) executable and readable (entry 0 itself is OFF) */
  clear_test_entries();
  static const uint32_t code[] = {0x02a00513, 0x00008067}; /* li a0, 42; ret */
  for (unsigned i = 0; i < 2; i++)
    ((volatile uint32_t *)c)[i] = code[i];
  __asm__ volatile("fence.i");
  pmp_addr(0, c >> 2);
  pmp_addr(1, (c + 4096) >> 2);
  pmp_cfg(1, PMP_TOR | PMP_R | PMP_X);
  CHECK(run(S_MODE, do_call, c) == -1 && loaded == 42);
  CHECK(run(U_MODE, do_call, c) == -1 && loaded == 42);
  CHECK(run(S_MODE, do_store, c + 64) == 7);
  pmp_cfg(1, PMP_TOR | PMP_R);
  CHECK(run(S_MODE, do_call, c) == 1 && last_trap.tval == c);
  CHECK(run(U_MODE, do_call, c) == 1 && last_trap.tval == c);
  /* the range ends at pmpaddr1: the page before c is entry 15's */
  CHECK(run(S_MODE, do_store, c - 8) == -1);
  /* pmpaddr0 >= pmpaddr1: TOR matches nothing, entry 15 decides */
  pmp_addr(0, (c + 4096) >> 2);
  CHECK(run(S_MODE, do_call, c) == -1 && loaded == 42);

  /* MPRV: M-mode loads and stores with MPP's privilege (fetches stay M) */
  clear_test_entries();
  pmp_addr(0, napot(a, 4096));
  pmp_cfg(0, PMP_NAPOT | PMP_R);
  CSRC(mstatus, MSTATUS_MPP);
  CSRS(mstatus, 1ul << 11); /* MPP = S */
  reset_trap();
  CSRS(mstatus, MSTATUS_MPRV);
  *(volatile uint64_t *)(a + 24) = 1; /* store access fault, taken in M */
  CSRC(mstatus, MSTATUS_MPRV);
  CHECK(last_trap.count == 1 && last_trap.cause == 7 && last_trap.tval == a + 24 &&
        last_trap.priv == 3);
  CHECK(region[0][24] == 0);

  /* the lock bit: binds M-mode, and the entry and its address stay until reset */
  ((volatile uint32_t *)a)[0] = 0x00008067; /* ret, for the fetch below */
  __asm__ volatile("fence.i");
  pmp_cfg(0, PMP_NAPOT | PMP_R | PMP_L);
  reset_trap();
  *(volatile uint64_t *)(a + 32) = 1;
  CHECK(last_trap.count == 1 && last_trap.cause == 7 && last_trap.tval == a + 32);
  CHECK(*(volatile uint64_t *)(a + 32) == 0);
  CSRW(pmpaddr0, 0);
  CHECK(CSRR(pmpaddr0) == napot(a, 4096));
  pmp_cfg(0, PMP_NAPOT | PMP_R | PMP_W);
  CHECK((CSRR(pmpcfg0) & 0xff) == (PMP_NAPOT | PMP_R | PMP_L));
  CHECK(run(S_MODE, do_store, a + 32) == 7);
  /* M-mode fetches from a locked entry without X fault too */
  target = a;
  reset_trap();
  trap_resume_at = TRAP_RESUME_AT_RA;
  ((void (*)(void))target)();
  CHECK(last_trap.count == 1 && last_trap.cause == 1 && last_trap.tval == a);
  return 0;
}
