/* Guest test support: checks report the source line of the first failing check through HTIF
 * (tohost = line << 1 | 1); traps are recorded and skipped unless a test says otherwise. */
#ifndef GUEST_TEST_H
#define GUEST_TEST_H

#include <stdint.h>

#define MAGIC_BACK_TO_M 0x52455431

void test_exit(long code) __attribute__((noreturn));
void enter_mode(long priv, void (*fn)(void));
void back_to_m(void) __attribute__((noreturn));
extern char m_trap_entry[], s_trap_entry[], s_trap_stack_top[], enter_mode_return[];

#define CHECK(cond)                                                                                \
  do {                                                                                             \
    if (!(cond))                                                                                   \
      test_exit(__LINE__);                                                                         \
  } while (0)

#define CSRR(csr)                                                                                  \
  ({                                                                                               \
    uint64_t _v;                                                                                   \
    __asm__ volatile("csrr %0, " #csr : "=r"(_v));                                                 \
    _v;                                                                                            \
  })
#define CSRW(csr, v) __asm__ volatile("csrw " #csr ", %0" ::"r"((uint64_t)(v)) : "memory")
#define CSRS(csr, v) __asm__ volatile("csrs " #csr ", %0" ::"r"((uint64_t)(v)) : "memory")
#define CSRC(csr, v) __asm__ volatile("csrc " #csr ", %0" ::"r"((uint64_t)(v)) : "memory")

/* What the last trap looked like. */
struct trap_record {
  uint64_t count, cause, tval, epc;
  int s_mode;            /* taken through stvec */
  int priv;              /* previous privilege (from MPP/SPP) */
  uint64_t status;       /* mstatus (M traps) or sstatus at the trap */
  uint64_t tval2, tinst; /* mtval2, mtinst of M traps, when trap_reads_h is set */
};
/* Set by programs for harts with the hypervisor extension: M traps also record mtval2/mtinst. */
extern volatile int trap_reads_h;
extern volatile struct trap_record last_trap;
/* If non-zero, the next trap resumes here instead of after the faulting instruction. */
extern volatile uint64_t trap_resume_at;
#define TRAP_RESUME_AT_RA 1 /* resume at the faulting code's return address (fetch faults) */
/* Called for interrupts (after recording): must clear the source. */
extern void (*volatile irq_hook)(uint64_t cause, int s_mode);

static inline void reset_trap(void) {
  last_trap.count = 0;
  last_trap.cause = 0xdead;
  last_trap.tval = 0xdead;
}

#define MSTATUS_SIE (1ul << 1)
#define MSTATUS_MIE (1ul << 3)
#define MSTATUS_SPP (1ul << 8)
#define MSTATUS_MPP (3ul << 11)
#define MSTATUS_FS (3ul << 13)
#define MSTATUS_MPRV (1ul << 17)
#define MSTATUS_SUM (1ul << 18)
#define MSTATUS_MXR (1ul << 19)
#define MSTATUS_TVM (1ul << 20)
#define MSTATUS_TW (1ul << 21)
#define MSTATUS_TSR (1ul << 22)
#define IRQ_BIT (1ul << 63)

/* page-table entries (t_vm, t_hyp) */
#define PTE_V 0x1ul
#define PTE_R 0x2ul
#define PTE_W 0x4ul
#define PTE_X 0x8ul
#define PTE_U 0x10ul
#define PTE_G 0x20ul
#define PTE_A 0x40ul
#define PTE_D 0x80ul

#endif
