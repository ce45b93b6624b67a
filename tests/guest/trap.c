/* The C side of the guest tests' trap entry (crt.S). */
#include "test.h"

volatile struct trap_record last_trap;
volatile uint64_t trap_resume_at;
volatile int trap_reads_h;
void (*volatile irq_hook)(uint64_t cause, int s_mode);

/* t_vm runs user code from an alias of RAM at 0xc000_0000; M-mode reads it through RAM. */
static unsigned insn_len(uint64_t pc) {
  if (pc >= 0xc0000000ul && pc < 0x100000000ul)
    pc -= 0x40000000ul;
  uint16_t lo = *(volatile uint16_t *)pc;
  return (lo & 3) == 3 ? 4 : 2;
}

void trap_handler(uint64_t *regs, int s_mode);
void trap_handler(uint64_t *regs, int s_mode) {
  uint64_t cause = s_mode ? CSRR(scause) : CSRR(mcause);
  uint64_t epc = s_mode ? CSRR(sepc) : CSRR(mepc);
  uint64_t tval = s_mode ? CSRR(stval) : CSRR(mtval);
  uint64_t status = CSRR(sstatus);
  if (!s_mode)
    status = CSRR(mstatus);
  /* ECALL from U, S or (hypervisor extension) VS */
  if ((cause == 8 || cause == 9 || cause == 10) && regs[17] == MAGIC_BACK_TO_M) {
    if (s_mode) {
      /* An ecall delegated to S: pass the request on to M. */
      __asm__ volatile("mv a7, %0; ecall" ::"r"((uint64_t)MAGIC_BACK_TO_M) : "a7");
    }
    CSRS(mstatus, MSTATUS_MPP);
    CSRW(mepc, (uint64_t)enter_mode_return);
    return;
  }
  last_trap.count++;
  last_trap.cause = cause;
  last_trap.tval = tval;
  last_trap.epc = epc;
  last_trap.s_mode = s_mode;
  last_trap.priv = s_mode ? (int)((status >> 8) & 1) : (int)((status >> 11) & 3);
  last_trap.status = status;
  if (trap_reads_h && !s_mode) {
    last_trap.tval2 = CSRR(0x34b);
    last_trap.tinst = CSRR(0x34a);
  }
  if (cause & IRQ_BIT) {
    if (irq_hook)
      irq_hook(cause & ~IRQ_BIT, s_mode);
    return;
  }
  uint64_t next = trap_resume_at;
  if (next == TRAP_RESUME_AT_RA)
    next = regs[1];
  if (!next)
    next = epc + insn_len(epc);
  trap_resume_at = 0;
  if (s_mode)
    CSRW(sepc, next);
  else
    CSRW(mepc, next);
}
