/* Interrupts: software (SSIP via sip, MSIP via the CLINT), timers (Sstc stimecmp, CLINT
 * mtimecmp), delegation to S, global enables per privilege, WFI wake-up. */
#include "test.h"

#define CLINT_MSIP ((volatile uint32_t *)0x02000000)
#define CLINT_MTIMECMP ((volatile uint64_t *)0x02004000)
#define MIP_SSIP (1ul << 1)
#define MIP_MSIP (1ul << 3)
#define MIP_STIP (1ul << 5)
#define MIP_MTIP (1ul << 7)

static volatile uint64_t irqs_seen;
volatile uint64_t vector_entries; /* bit n: trap entered through vector entry n */

/* A vectored trap table: entry 0 (exceptions) and 3 (MSI, which leaves a mark in
 * vector_entries) go to the usual handler; the others must not be used here. */
__asm__(".pushsection .text\n"
        ".option push\n.option norvc\n"
        ".align 8\n"
        "vector_table:\n"
        "  j vec_0\n j vec_bad\n j vec_bad\n j vec_3\n j vec_bad\n j vec_bad\n"
        "  j vec_bad\n j vec_bad\n j vec_bad\n j vec_bad\n j vec_bad\n j vec_bad\n"
        "vec_0: j m_trap_entry\n"
        "vec_3: csrw mscratch, t0\n la t0, vector_entries\n sd t0, 0(t0)\n"
        "  la t0, m_trap_stack_top\n csrrw t0, mscratch, t0\n j m_trap_entry\n"
        "vec_bad: li a0, 777\n j test_exit\n"
        ".option pop\n.popsection\n");
extern char vector_table[];

static void clear_source(uint64_t cause, int s_mode) {
  irqs_seen |= 1ul << cause;
  switch (cause) {
  case 1:
    CSRC(sip, MIP_SSIP);
    break;
  case 3:
    *CLINT_MSIP = 0;
    break;
  case 5:
    CSRW(stimecmp, ~0ul);
    break;
  case 7:
    *CLINT_MTIMECMP = ~0ul;
    break;
  default:
    test_exit(900 + (long)cause);
  }
}

static uint64_t rdtime(void) {
  uint64_t t;
  __asm__ volatile("rdtime %0" : "=r"(t));
  return t;
}

static void s_soft_irq(void) {
  CSRS(sstatus, MSTATUS_SIE);
  CSRS(sip, MIP_SSIP); /* taken right after this instruction */
  __asm__ volatile("nop");
  CSRC(sstatus, MSTATUS_SIE);
  back_to_m();
}

static void s_timer_wfi(void) {
  CSRS(sstatus, MSTATUS_SIE);
  CSRW(stimecmp, rdtime() + 2000);
  for (int i = 0; i < 1000 && !(irqs_seen & (1ul << 5)); i++)
    __asm__ volatile("wfi");
  CSRC(sstatus, MSTATUS_SIE);
  back_to_m();
}

/* A due Sstc timer waits while SIE is off (the interrupt checks then skip the clock read) and is
 * taken right after SIE is set. */
static volatile uint64_t irqs_while_masked;
static void s_timer_masked(void) {
  CSRW(stimecmp, 0);
  for (volatile int i = 0; i < 20000; i++)
    ;
  irqs_while_masked = irqs_seen;
  CSRS(sstatus, MSTATUS_SIE);
  __asm__ volatile("nop");
  CSRC(sstatus, MSTATUS_SIE);
  back_to_m();
}

static void s_masked_m_irq(void) {
  /* SIE is off, but M-level interrupts are always enabled below M */
  *CLINT_MSIP = 1;
  for (int i = 0; i < 100 && !(irqs_seen & (1ul << 3)); i++)
    __asm__ volatile("nop");
  back_to_m();
}

int main(void) {
  irq_hook = clear_source;
  CSRW(stvec, (uint64_t)s_trap_entry);
  CSRW(sscratch, (uint64_t)s_trap_stack_top);
  CSRS(menvcfg, 1ul << 63); /* Sstc */
  CSRW(mcounteren, 7);
  CSRW(stimecmp, ~0ul);

  /* supervisor software interrupt, delegated, taken in S */
  CSRW(mideleg, MIP_SSIP | MIP_STIP);
  CSRW(mie, MIP_SSIP | MIP_STIP | MIP_MSIP | MIP_MTIP);
  reset_trap();
  enter_mode(1, s_soft_irq);
  CHECK(irqs_seen & (1ul << 1));
  CHECK(last_trap.count == 1 && last_trap.cause == (IRQ_BIT | 1) && last_trap.s_mode);

  /* S interrupts are not taken in M even with MIE set */
  irqs_seen = 0;
  CSRS(mip, MIP_SSIP);
  CSRS(mstatus, MSTATUS_MIE);
  for (volatile int i = 0; i < 10; i++)
    ;
  CHECK(irqs_seen == 0 && (CSRR(mip) & MIP_SSIP));
  CSRC(mstatus, MSTATUS_MIE);
  CSRC(mip, MIP_SSIP);

  /* Sstc timer in S, with WFI */
  irqs_seen = 0;
  reset_trap();
  enter_mode(1, s_timer_wfi);
  CHECK(irqs_seen & (1ul << 5));
  CHECK(last_trap.cause == (IRQ_BIT | 5) && last_trap.s_mode);
  /* a due timer masked by SIE=0, taken once SIE is set */
  irqs_seen = 0;
  reset_trap();
  enter_mode(1, s_timer_masked);
  CHECK(irqs_while_masked == 0);
  CHECK(irqs_seen == (1ul << 5) && last_trap.cause == (IRQ_BIT | 5) && last_trap.s_mode);
  /* not delegated: a due STIP waits in M while MIE is off, and is taken in M once it is set */
  irqs_seen = 0;
  reset_trap();
  CSRC(mstatus, MSTATUS_MIE); /* the return from S-mode may have left it set */
  CSRW(mideleg, MIP_SSIP);
  CSRW(stimecmp, 0);
  for (volatile int i = 0; i < 20000; i++)
    ;
  CHECK(irqs_seen == 0);
  CSRS(mstatus, MSTATUS_MIE);
  __asm__ volatile("nop");
  CSRC(mstatus, MSTATUS_MIE);
  CHECK(irqs_seen == (1ul << 5) && last_trap.cause == (IRQ_BIT | 5) && !last_trap.s_mode);
  CSRW(mideleg, MIP_SSIP | MIP_STIP);
  /* with STCE, mip.STIP reflects stimecmp and cannot be written */
  CSRW(stimecmp, 0);
  CHECK(CSRR(mip) & MIP_STIP);
  CSRC(mip, MIP_STIP);
  CHECK(CSRR(mip) & MIP_STIP);
  CSRW(stimecmp, ~0ul);
  CHECK(!(CSRR(mip) & MIP_STIP));

  /* machine software interrupt through the CLINT */
  irqs_seen = 0;
  reset_trap();
  CSRS(mstatus, MSTATUS_MIE);
  *CLINT_MSIP = 1;
  for (int i = 0; i < 100 && !irqs_seen; i++)
    __asm__ volatile("nop");
  CSRC(mstatus, MSTATUS_MIE);
  CHECK(irqs_seen == (1ul << 3) && last_trap.cause == (IRQ_BIT | 3) && !last_trap.s_mode);

  /* machine timer: WFI wakes up on a pending enabled interrupt even with MIE=0 */
  irqs_seen = 0;
  *CLINT_MTIMECMP = rdtime() + 1000;
  while (!(CSRR(mip) & MIP_MTIP))
    __asm__ volatile("wfi");
  CHECK(irqs_seen == 0);
  CSRS(mstatus, MSTATUS_MIE); /* now it is taken */
  __asm__ volatile("nop");
  CSRC(mstatus, MSTATUS_MIE);
  CHECK(irqs_seen == (1ul << 7));

  /* vectored mode: the MSI goes to base + 4 * 3 */
  CSRW(mtvec, (uint64_t)vector_table | 1);
  vector_entries = 0;
  irqs_seen = 0;
  CSRS(mstatus, MSTATUS_MIE);
  *CLINT_MSIP = 1;
  for (int i = 0; i < 100 && !irqs_seen; i++)
    __asm__ volatile("nop");
  CSRC(mstatus, MSTATUS_MIE);
  CHECK(irqs_seen == (1ul << 3) && vector_entries == (uint64_t)&vector_entries);
  /* exceptions still go to the base */
  reset_trap();
  __asm__ volatile("ebreak");
  CHECK(last_trap.count == 1 && last_trap.cause == 3);
  CSRW(mtvec, (uint64_t)m_trap_entry);

  /* an M interrupt preempts S-mode even with SIE clear */
  irqs_seen = 0;
  reset_trap();
  enter_mode(1, s_masked_m_irq);
  CHECK(irqs_seen == (1ul << 3) && last_trap.priv == 1 && !last_trap.s_mode);

  CSRW(mie, 0);
  CSRW(mideleg, 0);
  return 0;
}
