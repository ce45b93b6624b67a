/* Zicsr, Zicntr, Zihpm and the machine/supervisor CSRs: access rules, WARL fields, counters. */
#include "test.h"

static volatile uint64_t u_time_ok, u_cycle_ok;

static void u_read_counters(void) {
  uint64_t t;
  __asm__ volatile("rdtime %0" : "=r"(t));
  u_time_ok = t != 0;
  __asm__ volatile("rdcycle %0" : "=r"(t));
  u_cycle_ok = 1;
  back_to_m();
}

static void s_touch_m_csr(void) {
  uint64_t v;
  __asm__ volatile("csrr %0, mstatus" : "=r"(v));
  __asm__ volatile("csrr %0, sstatus" : "=r"(v));
  back_to_m();
}

int main(void) {
  /* identification */
  CHECK(CSRR(mvendorid) == 0 && CSRR(marchid) == 0 && CSRR(mimpid) == 0);
  CHECK(CSRR(mhartid) == 0);
  uint64_t misa = CSRR(misa);
  CHECK((misa >> 62) == 2);
  for (const char *e = "ACDFIMSU"; *e; e++)
    CHECK(misa & (1ul << (*e - 'A')));
  /* read-only CSRs cannot be written */
  reset_trap();
  __asm__ volatile("csrw mvendorid, zero");
  CHECK(last_trap.count == 1 && last_trap.cause == 2);
  reset_trap();
  __asm__ volatile("csrw cycle, zero");
  CHECK(last_trap.count == 1 && last_trap.cause == 2);
  /* a CSR that does not exist is illegal; mtval holds the instruction */
  reset_trap();
  __asm__ volatile(".4byte 0x7c0027f3"); /* csrr a5, 0x7c0 */
  CHECK(last_trap.count == 1 && last_trap.cause == 2 &&
        (last_trap.tval == 0x7c0027f3 || last_trap.tval == 0));
  /* csrrs/csrrc/csrrw semantics */
  CSRW(sscratch, 0xf0);
  uint64_t old;
  __asm__ volatile("csrrs %0, sscratch, %1" : "=r"(old) : "r"(0x0full));
  CHECK(old == 0xf0 && CSRR(sscratch) == 0xff);
  __asm__ volatile("csrrc %0, sscratch, %1" : "=r"(old) : "r"(0xf0ull));
  CHECK(old == 0xff && CSRR(sscratch) == 0x0f);
  __asm__ volatile("csrrwi %0, sscratch, 31" : "=r"(old));
  CHECK(old == 0x0f && CSRR(sscratch) == 31);
  __asm__ volatile("csrrsi %0, sscratch, 0" : "=r"(old)); /* reads, does not write */
  CHECK(old == 31);
  __asm__ volatile("csrrci %0, sscratch, 1" : "=r"(old));
  CHECK(CSRR(sscratch) == 30);
  /* counters advance; instret counts instructions */
  uint64_t c1 = CSRR(mcycle), i1 = CSRR(minstret);
  for (volatile int i = 0; i < 100; i++)
    ;
  uint64_t c2 = CSRR(mcycle), i2 = CSRR(minstret);
  CHECK(c2 > c1 && i2 - i1 >= 100);
  /* instret is exact: back-to-back reads differ by one; a written value is what is read next */
  __asm__ volatile("csrr %0, minstret\n csrr %1, minstret" : "=r"(i1), "=r"(i2));
  CHECK(i2 - i1 == 1);
  __asm__ volatile("csrw minstret, %2\n csrr %0, minstret\n csrr %1, minstret"
                   : "=&r"(i1), "=&r"(i2)
                   : "r"(1000ul));
  CHECK(i1 == 1000 && i2 == 1001);
  uint64_t t1, t2;
  __asm__ volatile("rdtime %0" : "=r"(t1));
  for (volatile int i = 0; i < 20000; i++)
    ;
  __asm__ volatile("rdtime %0" : "=r"(t2));
  CHECK(t2 > t1);
  CHECK(CSRR(hpmcounter3) == 0 && CSRR(mhpmcounter3) == 0);
  /* U-mode counter access is gated by mcounteren and scounteren */
  CSRW(mcounteren, 0);
  CSRW(scounteren, 0);
  reset_trap();
  u_time_ok = u_cycle_ok = 0;
  enter_mode(0, u_read_counters);
  CHECK(last_trap.count == 2 && last_trap.cause == 2);
  CSRW(mcounteren, 7);
  CSRW(scounteren, 7);
  reset_trap();
  enter_mode(0, u_read_counters);
  CHECK(last_trap.count == 0 && u_time_ok == 1 && u_cycle_ok == 1);
  /* S-mode cannot touch M CSRs */
  reset_trap();
  enter_mode(1, s_touch_m_csr);
  CHECK(last_trap.count == 1 && last_trap.cause == 2 && last_trap.priv == 1);
  /* mstatus: MPP is WARL (2 is reserved), SXL/UXL read as 64-bit */
  uint64_t ms = CSRR(mstatus);
  CHECK(((ms >> 32) & 3) == 2 && ((ms >> 34) & 3) == 2);
  CSRC(mstatus, MSTATUS_MPP);
  CSRS(mstatus, 2ul << 11);
  CHECK(((CSRR(mstatus) >> 11) & 3) != 2);
  /* sstatus is a view of mstatus */
  CSRS(sstatus, MSTATUS_SUM);
  CHECK(CSRR(mstatus) & MSTATUS_SUM);
  CSRC(mstatus, MSTATUS_SUM);
  CHECK(!(CSRR(sstatus) & MSTATUS_SUM));
  CSRS(sstatus, MSTATUS_MPRV); /* not visible through sstatus */
  CHECK(!(CSRR(mstatus) & MSTATUS_MPRV));
  /* delegation registers: ecall from M cannot be delegated; sie/sip only show delegated bits */
  CSRW(medeleg, ~0ul);
  CHECK(!(CSRR(medeleg) & (1ul << 11)) && (CSRR(medeleg) & (1ul << 8)));
  CSRW(medeleg, 0);
  CSRW(mideleg, 0);
  CSRW(mie, 0x222);
  CHECK(CSRR(sie) == 0);
  CSRW(mideleg, 0x222);
  CHECK(CSRR(sie) == 0x222);
  CSRW(sie, 0);
  CHECK(CSRR(mie) == 0);
  CSRW(mideleg, 0);
  /* satp: unsupported modes are ignored; Sv39/48/57 are accepted */
  CSRW(satp, 0);
  CSRW(satp, 7ul << 60);
  CHECK(CSRR(satp) == 0);
  CSRW(satp, 8ul << 60);
  CHECK((CSRR(satp) >> 60) == 8);
  CSRW(satp, 10ul << 60);
  CHECK((CSRR(satp) >> 60) == 10);
  CSRW(satp, 0);
  /* PMP registers hold their values */
  CSRW(pmpaddr1, 0x1234);
  CHECK(CSRR(pmpaddr1) == 0x1234);
  /* stvec/mtvec keep the mode bits 0 and 1 (direct, vectored) */
  CSRW(stvec, 0x80000101);
  CHECK(CSRR(stvec) == 0x80000101);
  /* menvcfg.STCE and stimecmp exist (Sstc) */
  CSRS(menvcfg, 1ul << 63);
  CHECK(CSRR(menvcfg) >> 63);
  CSRW(stimecmp, 12345);
  CHECK(CSRR(stimecmp) == 12345);
  CSRW(stimecmp, ~0ul);
  return 0;
}
