/* Exceptions, delegation and the privilege-changing instructions: ecall from each mode, illegal
 * instructions, breakpoints, access faults, mret/sret, TSR/TW/TVM, WFI. */
#include "test.h"

static void u_ecall(void) {
  __asm__ volatile("li a7, 0\n ecall" ::: "a7");
  back_to_m();
}
static void s_ecall(void) {
  __asm__ volatile("li a7, 0\n ecall" ::: "a7");
  back_to_m();
}
static void s_sret(void) {
  __asm__ volatile("sret"); /* TSR=1: illegal */
  back_to_m();
}
static void s_wfi(void) {
  __asm__ volatile("wfi"); /* TW=1: illegal */
  back_to_m();
}
static void s_satp(void) {
  uint64_t v;
  __asm__ volatile("csrr %0, satp" : "=r"(v)); /* TVM=1: illegal */
  __asm__ volatile("sfence.vma");              /* TVM=1: illegal */
  back_to_m();
}
static void u_privileged(void) {
  __asm__ volatile("wfi");        /* illegal in U */
  __asm__ volatile("sret");       /* illegal in U */
  __asm__ volatile("mret");       /* illegal in U */
  __asm__ volatile("sfence.vma"); /* illegal in U */
  back_to_m();
}
static void s_mret(void) {
  __asm__ volatile("mret"); /* illegal in S */
  back_to_m();
}
static volatile uint64_t s_mode_seen;
static void s_sret_to_u_target(void) { back_to_m(); }
static void s_sret_to_u(void) {
  /* S sends itself to U through sret */
  CSRC(sstatus, MSTATUS_SPP);
  CSRW(sepc, (uint64_t)s_sret_to_u_target);
  s_mode_seen = 1;
  __asm__ volatile("sret");
}

int main(void) {
  /* ecall from M, S, U */
  reset_trap();
  __asm__ volatile("li a7, 0\n ecall" ::: "a7");
  CHECK(last_trap.count == 1 && last_trap.cause == 11 && last_trap.priv == 3);
  reset_trap();
  enter_mode(1, s_ecall);
  CHECK(last_trap.count == 1 && last_trap.cause == 9 && last_trap.priv == 1 && !last_trap.s_mode);
  reset_trap();
  enter_mode(0, u_ecall);
  CHECK(last_trap.count == 1 && last_trap.cause == 8 && last_trap.priv == 0);
  /* delegated to S: U ecall goes to stvec with scause 8 */
  CSRW(stvec, (uint64_t)s_trap_entry);
  CSRW(sscratch, (uint64_t)s_trap_stack_top);
  CSRW(medeleg, 1ul << 8);
  reset_trap();
  enter_mode(0, u_ecall);
  CHECK(last_trap.count == 1 && last_trap.cause == 8 && last_trap.s_mode && last_trap.priv == 0);
  /* delegation never applies to traps taken in M */
  CSRW(medeleg, 1ul << 2);
  reset_trap();
  __asm__ volatile(".4byte 0xffffffff");
  CHECK(last_trap.count == 1 && last_trap.cause == 2 && !last_trap.s_mode);
  CSRW(medeleg, 0);
  /* illegal instructions: mtval holds the encoding */
  reset_trap();
  __asm__ volatile(".4byte 0x0000007f");
  CHECK(last_trap.count == 1 && last_trap.cause == 2);
  CHECK(last_trap.tval == 0x7f || last_trap.tval == 0);
  /* breakpoint */
  reset_trap();
  __asm__ volatile("ebreak");
  CHECK(last_trap.count == 1 && last_trap.cause == 3);
  /* access faults on unmapped physical memory: load 5, store 7, fetch 1 */
  reset_trap();
  (void)*(volatile uint64_t *)0x40000000;
  CHECK(last_trap.count == 1 && last_trap.cause == 5 && last_trap.tval == 0x40000000);
  reset_trap();
  *(volatile uint32_t *)0x40000010 = 1;
  CHECK(last_trap.count == 1 && last_trap.cause == 7 && last_trap.tval == 0x40000010);
  reset_trap();
  trap_resume_at = TRAP_RESUME_AT_RA;
  ((void (*)(void))0x40000000)();
  CHECK(last_trap.count == 1 && last_trap.cause == 1 && last_trap.tval == 0x40000000);
  /* TSR, TW, TVM */
  CSRS(mstatus, MSTATUS_TSR | MSTATUS_TW | MSTATUS_TVM);
  reset_trap();
  enter_mode(1, s_sret);
  CHECK(last_trap.count == 1 && last_trap.cause == 2 && last_trap.priv == 1);
  reset_trap();
  enter_mode(1, s_wfi);
  CHECK(last_trap.count == 1 && last_trap.cause == 2);
  reset_trap();
  enter_mode(1, s_satp);
  CHECK(last_trap.count == 2 && last_trap.cause == 2);
  CSRC(mstatus, MSTATUS_TSR | MSTATUS_TW | MSTATUS_TVM);
  /* without TVM, S may read satp and run sfence.vma */
  reset_trap();
  enter_mode(1, s_satp);
  CHECK(last_trap.count == 0);
  /* privileged instructions from U, mret from S */
  reset_trap();
  enter_mode(0, u_privileged);
  CHECK(last_trap.count == 4 && last_trap.cause == 2 && last_trap.priv == 0);
  reset_trap();
  enter_mode(1, s_mret);
  CHECK(last_trap.count == 1 && last_trap.cause == 2);
  /* sret from S to U */
  reset_trap();
  s_mode_seen = 0;
  enter_mode(1, s_sret_to_u);
  CHECK(s_mode_seen == 1 && last_trap.count == 0);
  /* mret restores MIE from MPIE and sets MPIE; MPP becomes U */
  CSRC(mstatus, MSTATUS_MIE);
  CSRS(mstatus, 1ul << 7);
  CSRS(mstatus, MSTATUS_MPP);
  __asm__ volatile("la t0, 1f\n csrw mepc, t0\n mret\n 1:" ::: "t0");
  uint64_t ms = CSRR(mstatus);
  CHECK((ms & (1ul << 7)) && (ms & MSTATUS_MIE) && ((ms >> 11) & 3) == 0);
  CSRC(mstatus, MSTATUS_MIE);
  return 0;
}
