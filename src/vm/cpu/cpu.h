/* The RISC-V hart of vessel-vmm: an RV64IMAFDC interpreter with the privileged architecture 1.12
 * (M/S/U, Sv39/Sv48/Sv57, Sstc).
 *
 * The machine owns the bus (RAM + MMIO callbacks) and calls rv_hart_run() with an instruction
 * budget. All architectural state lives in struct rv_hart so it can be saved and restored; the
 * TLB, the PMP summary and the decoded-instruction cache are derived state: after restoring the
 * architectural fields into a live hart (keeping its bus and icache pointers) call
 * rv_hart_flush_tlb().
 *
 * Decoded code stays valid until its page is written: the harts' own stores find that out
 * themselves (a page with decoded code is never mapped for writing in a TLB), everything else that
 * writes guest RAM (devices, the machine, a test) reports it with rv_code_page_written() or drops
 * the decode caches with rv_hart_flush_icache(). So FENCE.I costs nothing, and a store to code
 * ahead of it in the same block is still seen at once.
 */
#ifndef VESSEL_VM_CPU_H
#define VESSEL_VM_CPU_H

#include <stdbool.h>
#include <stdint.h>

#include "base/base.h"
#include "vm/vmstate.h"

/* The ISA string for the device tree: exactly what this hart implements, with the hypervisor
 * extension (RV_ISA_STRING_H, the default) or without it (--cpu rv64,h=off). */
#define RV_ISA_STRING "rv64imafdc_zicntr_zicsr_zifencei_zihpm_zba_zbb_zbs_sstc"
#define RV_ISA_STRING_H "rv64imafdch_zicntr_zicsr_zifencei_zihpm_zba_zbb_zbs_sstc"

typedef struct rv_hart rv_hart;

/* Debugger breakpoints (the gdb stub's): addresses where every hart stops before executing the
 * instruction. Changed only while the harts stand still; with n == 0 the harts run at full
 * speed, otherwise one instruction at a time through the normal engine (rv_hart_run), so
 * translated blocks never run past a breakpoint. */
#define RV_MAX_BREAKPOINTS 64
/* Debugger watchpoints: ranges of guest virtual addresses (as the access's own translation sees
 * them), or of guest physical addresses (`phys`: whatever virtual address, hart or mapping the
 * access came through), whose data accesses stop the hart after the accessing instruction
 * completes. While any is set, no TLB maps a page a watchpoint touches (a virtual page for a
 * virtual watchpoint, any page mapped onto the physical page of a physical one), so every
 * access to such a page takes the C slow path, which compares it with the ranges (as QEMU
 * does); other pages keep their fast paths and with none set nothing changes. Whoever changes
 * the set (with the harts standing still) flushes every hart's TLB. Instruction fetches,
 * page-table walks and device (DMA) accesses do not trigger. */
#define RV_MAX_WATCHPOINTS 16
#define RV_MAX_WATCH_LEN 65536 /* the longest range one watchpoint covers */
enum { RV_WATCH_WRITE = 1, RV_WATCH_READ = 2, RV_WATCH_ACCESS = 3 }; /* a mask of accesses */
typedef struct rv_watchpoint {
  uint64_t addr, len; /* [addr, addr + len), len 1..RV_MAX_WATCH_LEN, not wrapping around */
  unsigned kind;      /* RV_WATCH_* */
  bool phys;          /* addr is a guest physical address */
} rv_watchpoint;
typedef struct rv_breakpoints {
  unsigned n;
  uint64_t pc[RV_MAX_BREAKPOINTS];
  unsigned nwatch;
  rv_watchpoint watch[RV_MAX_WATCHPOINTS];
} rv_breakpoints;
/* The first watchpoint that an access of `size` bytes at va, translated to pa (the same page:
 * accesses that cross one are split), of kind `access` (RV_WATCH_READ, RV_WATCH_WRITE or both
 * for a read-modify-write), triggers; -1 if none. */
int rv_watch_find(const rv_breakpoints *bp, uint64_t va, uint64_t pa, uint64_t size,
                  unsigned access);
/* Whether a watchpoint touches the 4 KiB virtual page of va or the physical page of pa that it
 * maps to (its TLB entries must stay out). */
bool rv_watch_covers_page(const rv_breakpoints *bp, uint64_t va, uint64_t pa);

/* The host's cycle counter (x86-64: the TSC; 0 elsewhere, where no pace is ever offered). */
#if defined(__x86_64__)
static inline uint64_t rv_cycles(void) { return __builtin_ia32_rdtsc(); }
#else
static inline uint64_t rv_cycles(void) { return 0; }
#endif

/* A bound on mtime's speed, set by the bus's owner: while `gen` stays the same, mtime advances at
 * most one tick per `cycles_per_tick` rv_cycles(). The owner bumps `gen` whenever mtime jumps (a
 * guest or snapshot sets it); cycles_per_tick 0 = no bound (not calibrated yet, record/replay). */
typedef struct rv_mtime_pace {
  uint64_t cycles_per_tick; /* __atomic */
  uint32_t gen;             /* __atomic */
} rv_mtime_pace;

typedef struct rv_bus {
  uint8_t *ram;      /* host mapping of guest RAM */
  uint64_t ram_base; /* 0x8000_0000 */
  uint64_t ram_size;
  void *opaque; /* the machine */
  /* Physical accesses outside RAM (size 1,2,4,8). Return false = access fault for the guest. */
  bool (*mmio_read)(void *opaque, uint64_t paddr, unsigned size, uint64_t *val);
  bool (*mmio_write)(void *opaque, uint64_t paddr, unsigned size, uint64_t val);
  /* --bios builtin: ECALL from S-mode is an SBI call served by the machine. Return true if the
   * machine handled it (it set a0/a1 in hart->x[] and the hart continues at pc+4); false = trap
   * as usual. NULL when real M-mode firmware runs. */
  bool (*sbi_call)(void *opaque, rv_hart *hart);
  /* mtime: 10 MHz timebase (time CSR, Sstc stimecmp). */
  uint64_t (*read_mtime)(void *opaque);
  /* NULL, or how fast mtime can advance in rv_cycles() (rv_mtime_pace): lets the interrupt
   * checks see that stimecmp is still ahead without reading the clock. */
  const struct rv_mtime_pace *mtime_pace;
  /* Record/replay: asked before the hart takes interrupt `cause`. Recording logs it and says
   * yes; replaying says yes only where the log took it. NULL: always taken. */
  bool (*irq_gate)(void *opaque, rv_hart *hart, uint64_t cause);
  /* Live migration tracks the RAM pages the harts write: one bit per 4 KiB page, set when a
   * write mapping enters the TLB (and when a page-table walk sets A/D bits). The machine flushes
   * the TLBs whenever it harvests the bits, so every later write marks again. NULL: no tracking. */
  uint64_t *dirty_pages;
  /* Decoded code, one counter per RAM page (ram_size / 4096 of them, zeroed by the bus's owner).
   * Odd: the harts may hold decoded blocks of the page, and no hart maps it for writing in its
   * TLB, so every store to it takes the slow path. Even: nothing decoded from the page is used. A
   * write makes an odd counter even (rv_code_page_written); decoding makes it odd again. */
  uint32_t *code_pages;
  uint32_t code_epoch; /* advances when a page becomes code: the other harts then drop their write
                          mappings (they may map that page) before they run again */
  bool interpreter;    /* run the harts in the interpreter only, not translated to host code */
  bool no_hypervisor;  /* the harts lack the H extension (misa.H clear); zero = they have it */
  /* Each hart runs on its own host thread: what one hart does to another (code pages, IPIs, TLB
   * shootdowns, memory ordering) goes through atomics and requests the target serves itself. */
  bool threaded;
  /* How many harts share the bus (0 counts as 1): with several, each hart's decoded-block pool
   * and translated code are smaller (cpu_internal.h: RV_POOL_SIZE_SMP). */
  unsigned nharts;
  /* NULL or the debugger's breakpoints (rv_breakpoints) */
  const rv_breakpoints *breakpoints;
} rv_bus;

/* Guest RAM page `page` (index from ram_base) was written from outside the harts' stores. Odd to
 * even by compare-and-swap: two writers at once must not move the counter to odd again (that
 * would claim the page as code without anyone dropping its write mappings). */
// NOLINTNEXTLINE(readability-non-const-parameter): written by the compare-and-swap
static inline void rv_code_page_written(uint32_t *code_pages, uint64_t page) {
  uint32_t c = __atomic_load_n(&code_pages[page], __ATOMIC_RELAXED);
  while ((c & 1) && !__atomic_compare_exchange_n(&code_pages[page], &c, c + 1, false,
                                                 __ATOMIC_SEQ_CST, __ATOMIC_RELAXED)) {
  }
}

/* Privilege levels */
#define RV_PRIV_U 0
#define RV_PRIV_S 1
#define RV_PRIV_M 3

/* mip/mie bits */
#define RV_MIP_SSIP (1ULL << 1)
#define RV_MIP_MSIP (1ULL << 3)
#define RV_MIP_STIP (1ULL << 5)
#define RV_MIP_MTIP (1ULL << 7)
#define RV_MIP_SEIP (1ULL << 9)
#define RV_MIP_MEIP (1ULL << 11)
/* the hypervisor extension's VS-level interrupts and the guest external one (hyp.c) */
#define RV_MIP_VSSIP (1ULL << 2)
#define RV_MIP_VSTIP (1ULL << 6)
#define RV_MIP_VSEIP (1ULL << 10)
#define RV_MIP_SGEIP (1ULL << 12)

#define RV_TLB_SIZE 1024 /* per set and access type: the kernel's working set missed in 256 */
#define RV_PMP_ENTRIES 64
/* TLB sets: U, S, M, S-mode data accesses with mstatus.SUM set, and the same three for V=1 (VU,
 * VS, VS with vsstatus.SUM: two-stage translations) (cpu_internal.h) */
#define RV_TLB_SETS 7
/* Address spaces (satp values: root table and ASID) whose TLB entries stay while another runs */
#define RV_TLB_SPACES 16
/* The TLB sets whose entries may come from global mappings (U, S, M, S with SUM; M translates
 * nothing, V=1 sets are the guest's own) */
#define RV_TLB_GLOBAL_SETS 4

/* One TLB entry maps a virtual page straight to host memory (RAM only):
 * host address = vaddr + addend. */
typedef struct rv_tlb_entry {
  uint64_t vpn; /* (vaddr >> 12) | tlb_tag; entries with an older tag are empty */
  uintptr_t addend;
} rv_tlb_entry;

struct rv_icache; /* decoded-instruction cache, private to the cpu */

/* Host cache line: what other host threads write in a hart lives on lines of its own. */
#define RV_CACHE_LINE 64

// NOLINTNEXTLINE(clang-analyzer-optin.performance.Padding): cache-line groups, on purpose
struct rv_hart {
  /* ---- architectural state (saved/restored). The hart is cache-line aligned: the harts of a
   * machine lie side by side, and one hart's registers, written back at every exit from
   * translated code, shared a line with the next hart's hot fields (its icache pointer) and the
   * bus; the other host core then missed on them at every look at interrupts (issue 18) */
  _Alignas(RV_CACHE_LINE) uint64_t x[32];
  uint64_t f[32]; /* NaN-boxed single values in the low 32 bits */
  uint64_t pc;
  int priv;
  uint32_t fflags, frm;
  bool virt; /* the hypervisor extension's V: VS or VU mode (hyp.c) */
  uint64_t mhartid;
  uint64_t mstatus, misa, medeleg, mideleg, mie, mip; /* mip: bits written by software */
  uint64_t mtvec, mscratch, mepc, mcause, mtval, mcounteren, menvcfg, mcountinhibit;
  uint64_t stvec, sscratch, sepc, scause, stval, scounteren, senvcfg, satp, stimecmp;
  /* The hypervisor extension (hyp.c). While V=1 the hart runs in VS or VU mode and the supervisor
   * fields above (the sstatus bits of mstatus, stvec, sscratch, sepc, scause, stval, satp) hold
   * the VS values, swapped with the vs* fields below, which then hold HS-mode's: all S-mode
   * code works unchanged on the virtual supervisor. With V=0 each field holds its own CSR. */
  uint64_t vsstatus, vstvec, vsscratch, vsepc, vscause, vstval, vsatp;
  uint64_t hstatus, hedeleg, hideleg, hvip, hcounteren, htval, htinst, hgatp, henvcfg;
  uint64_t htimedelta, vstimecmp, mtval2, mtinst;
  uint64_t pmpcfg[16]; /* only even indices are used on RV64 */
  uint64_t pmpaddr[RV_PMP_ENTRIES];
  uint64_t minstret; /* also serves as mcycle */
  uint64_t mcycle_offset;
  uint64_t reservation; /* LR/SC reserved physical address */
  bool reservation_valid;
  bool wfi;            /* WFI executed with nothing pending: the machine may sleep */
  bool breakpoint_hit; /* rv_hart_run stopped at a debugger breakpoint or watchpoint (cleared by
                          the debugger) */
  /* Set where a fault is found, consumed by the trap: whether tval is a guest virtual address of
   * a two-stage access (hstatus.GVA/mstatus.GVA); whether the last CSR access failed with a
   * virtual-instruction exception rather than an illegal one. */
  bool trap_gva;
  bool csr_virtual;
  /* What the next trap writes besides its cause and tval: htval/mtval2 (a guest physical
   * address >> 2) and htinst/mtinst, for guest-page faults. */
  uint64_t trap_gpa, trap_tinst;

  /* ---- what other host threads write (__atomic; rv_bus.threaded; not saved: served before a
   * stop), on a line of its own, so that a request or the polls of the harts waiting for an
   * answer take none of the hart's hot lines away from its core */
  _Alignas(RV_CACHE_LINE) uint64_t ext_mip; /* device interrupt lines (rv_hart_set_irq) */
  uint64_t mip_posted;      /* software-writable mip bits another hart set (SBI IPI) */
  uint32_t tlb_flush_asked; /* TLB flush tickets handed out to other harts (SBI RFENCE) */
  uint32_t tlb_flush_done;  /* the last ticket this hart has served */
  bool stop_request;        /* set by the machine to leave rv_hart_run */

  /* ---- derived state (rebuilt; not saved) */
  _Alignas(RV_CACHE_LINE) rv_bus *bus;
  uint64_t reservation_value; /* what LR read: SC succeeds if memory still holds it (cmpxchg) */
  /* stimecmp is known to be ahead of mtime until rv_cycles() reaches stip_quiet_until, as long
   * as stimecmp is still stip_quiet_cmp and the pace's generation stip_quiet_gen (rv_stimer_due) */
  uint64_t stip_quiet_until, stip_quiet_cmp;
  uint32_t stip_quiet_gen;
  uint64_t next_pc;
  int64_t *jit_frame; /* while translated code runs: its frame (jit.c; rv_hart_cut_run), or NULL */
  bool check_irq;     /* leave the inner block loop and re-check interrupts */
  bool yield;         /* the hart is spinning: end rv_hart_run early */
  bool spun;          /* the last rv_hart_run ended early for that (the machine may let it sleep) */
  unsigned spin_hints;
  int ld_tlb, st_tlb, fetch_tlb; /* which TLB set serves data/fetch: the effective privilege
                                   (0 U, 1 S, 2 M: no translation) */
  unsigned pmp_count;            /* PMP entries up to the last one that is not OFF */
  bool pmp_locked;               /* some PMP entry is locked: M-mode accesses are checked too */
  uint8_t pmp_ram_su;            /* S/U decision for all of RAM if one entry makes it (pmp.c) */
  uint64_t tlb_tag;              /* the tag of the current address space's entries, bits 52..63
                                    (vpn needs only 52 bits) */
  uint64_t tlb_gen;              /* the last tag handed out (mmu.c: rv_tlb_new_tag) */
  struct rv_tlb_space {
    uint64_t satp, tag; /* tag 0: unused */
  } tlb_spaces[RV_TLB_SPACES];
  /* Global mappings (PTE G bit: Linux maps the kernel so) are the same in every address space
   * (mmu.c): the tag their jump-cache entries carry, renewed by fences that reach them; the satp
   * MODE it was handed out under; and whether the last page-table walk went through a G bit. */
  uint64_t tlb_gtag;
  uint64_t tlb_gmode;
  bool walk_global;
  uint64_t tlb_super[2][2]; /* [lower, upper half of the address space][first, last] virtual
                               address mapped by a superpage since the last full flush */
  uint32_t code_epoch;      /* bus->code_epoch when the write mappings were last checked */
  uint64_t fetch_vpn;       /* one-entry fetch cache */
  uintptr_t fetch_addend;
  rv_tlb_entry tlb[RV_TLB_SETS][3][RV_TLB_SIZE]; /* [set][read, write, exec][index]; only pages one
                                          PMP decision covers */
  /* per entry of the first RV_TLB_GLOBAL_SETS sets: tlb_gtag >> 52 when it maps a page of a
   * global mapping, else 0 */
  uint16_t tlb_global[RV_TLB_GLOBAL_SETS][3][RV_TLB_SIZE];
  struct rv_icache *icache;
  /* With breakpoint_hit: 0 = a breakpoint (the hart is about to execute at pc), else the
   * RV_WATCH_* kind of the watchpoint at watch_addr that the instruction before pc triggered
   * (last: the hot fields above keep their places). */
  unsigned watch_hit;
  uint64_t watch_addr;
};

int rv_hart_init(rv_hart *h, unsigned hartid, rv_bus *bus, vs_error **err);
void rv_hart_destroy(rv_hart *h);

/* Reset into `priv` at `pc`. Resetting into S-mode (built-in SBI) also sets up what M-mode
 * firmware would have: counters enabled for S/U, Sstc enabled, the usual traps delegated to S. */
void rv_hart_reset(rv_hart *h, uint64_t pc, int priv);

/* Run until max_insns retired, WFI with nothing pending (h->wfi = true), h->stop_request (seen at
 * an instruction boundary where the hart looks at interrupts: every 16384 instructions, and
 * within a block after rv_hart_cut_run), or
 * the guest spins waiting for another hart (Linux's cpu_relax()): then it returns early (h->spun)
 * so the machine can run the other harts. Returns the number of instructions executed. */
uint64_t rv_hart_run(rv_hart *h, uint64_t max_insns);
/* The debugger: exactly one instruction (or the trap it takes), breakpoints and stop requests
 * ignored (it steps a hart the machine parked). Returns
 * the number of instructions retired (0 while waiting in WFI with nothing pending). */
uint64_t rv_hart_step(rv_hart *h);
/* The debugger's view of memory: translate va as the hart's data accesses see it now (its
 * privilege, satp), without side effects (no A/D updates, no fault, no TLB fill) and without
 * permission checks. false when va is not mapped. */
bool rv_hart_debug_translate(const rv_hart *h, uint64_t va, uint64_t *pa);

/* Devices raise/lower MSIP, MTIP, MEIP, SEIP, on the hart's own thread (it leaves its block to
 * look at once). */
void rv_hart_set_irq(rv_hart *h, uint64_t mip_bit, bool level);
/* The same from another thread: the hart sees the line where it next looks at interrupts.
 * Returns whether the line went up (the caller then wakes the hart's thread if it sleeps, or cuts
 * its run short). */
bool rv_hart_post_irq(rv_hart *h, uint64_t mip_bit, bool level);

/* Interrupts pending and enabled in mie (ignoring global enables): WFI wakes on these. */
bool rv_hart_irq_pending(rv_hart *h);
/* Take the highest-priority pending and enabled interrupt now, if any (waking a WFI): replay
 * calls it at the instruction count where the recording took one. */
bool rv_hart_take_interrupt(rv_hart *h);

void rv_hart_flush_tlb(rv_hart *h);
void rv_hart_flush_icache(rv_hart *h);
void rv_hart_clear_reservation(rv_hart *h);

/* Cross-hart requests, for harts on their own host threads (rv_bus.threaded). Another thread
 * never touches a hart's TLB or mip itself: it posts, and the hart serves the request in
 * rv_hart_run (where it looks at interrupts: every 16384 instructions, or at once after
 * rv_hart_cut_run) or when its thread calls rv_hart_serve_requests (idle, stopped or parked
 * harts). */
/* Set software-writable mip bits (SSIP from an SBI IPI). */
void rv_hart_post_mip(rv_hart *h, uint64_t bits);
/* Ask for a TLB flush; returns the ticket that rv_hart_tlb_flushed(h, ticket) waits for. */
uint32_t rv_hart_ask_tlb_flush(rv_hart *h);
bool rv_hart_tlb_flushed(rv_hart *h, uint32_t ticket);
/* The hart's own thread: serve what was posted and asked. */
void rv_hart_serve_requests(rv_hart *h);
/* From a signal handler on the hart's own thread (async-signal-safe): make the running
 * rv_hart_run look at interrupts and requests within a block, wherever the thread was stopped. */
void rv_hart_cut_run(rv_hart *h);

/* The earliest timer deadline (stimecmp, and the guest's vstimecmp), in mtime ticks. */
uint64_t rv_hart_next_timer(const rv_hart *h);
/* The ISA string of the device tree for harts on this bus. */
const char *rv_isa_string(const rv_bus *bus);

/* Snapshots and migration (state.c): the architectural state as one "HART" section. Loading
 * refuses values the hart could never hold (privilege, paging mode, fixed fields) and flushes the
 * TLB; the hart keeps its bus and caches. */
void rv_hart_save(const rv_hart *h, vmstate_writer *w);
int rv_hart_load(rv_hart *h, vmstate_reader *img, vs_error **err);

#endif
