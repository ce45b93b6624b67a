/* Hart lifecycle, the execution loop, traps and interrupts, CSRs. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "vm/cpu/cpu_internal.h"

#define MISA_RV64IMAFDCSU                                                                          \
  ((2ULL << 62) | (1U << ('A' - 'A')) | (1U << ('C' - 'A')) | (1U << ('D' - 'A')) |                \
   (1U << ('F' - 'A')) | (1U << ('I' - 'A')) | (1U << ('M' - 'A')) | (1U << ('S' - 'A')) |         \
   (1U << ('U' - 'A')))

/* Interrupts S-mode may see and delegate; M-level bits are never delegated here. */
#define MIP_S_MASK (RV_MIP_SSIP | RV_MIP_STIP | RV_MIP_SEIP)
#define MIP_ALL (MIP_S_MASK | RV_MIP_MSIP | RV_MIP_MTIP | RV_MIP_MEIP)

#define MSTATUS_WRITABLE                                                                           \
  (MSTATUS_SIE | MSTATUS_MIE | MSTATUS_SPIE | MSTATUS_MPIE | MSTATUS_SPP | MSTATUS_MPP |           \
   MSTATUS_FS | MSTATUS_MPRV | MSTATUS_SUM | MSTATUS_MXR | MSTATUS_TVM | MSTATUS_TW | MSTATUS_TSR)
#define SSTATUS_MASK                                                                               \
  (MSTATUS_SIE | MSTATUS_SPIE | MSTATUS_SPP | MSTATUS_FS | MSTATUS_SUM | MSTATUS_MXR |             \
   MSTATUS_UXL | MSTATUS_SD)

#define PMP_CFG_NAPOT_RWX 0x1fULL
#define PMP_CFG_LOCK 0x80ULL

/* medeleg bits that can be set: everything but ECALL from M (11) and reserved causes; with H
 * also ECALL from VS (10), the guest-page faults and the virtual-instruction exception. */
#define MEDELEG_MASK 0xb3ffULL
#define MEDELEG_H_MASK ((1ULL << EXC_ECALL_VS) | (0xfULL << EXC_INSN_GUEST_PAGE))
/* With H, the VS-level interrupts are always delegated past M (mideleg reads them as one); SGEIP
 * would be too if there were guest external interrupt files (GEILEN = 0 here). */
#define MIDELEG_H_FORCED RV_MIP_VS_MASK

int rv_hart_init(rv_hart *h, unsigned hartid, rv_bus *bus, vs_error **err) {
  memset(h, 0, sizeof(*h));
  h->tlb_gen = UINT64_MAX << 52; /* the first flush wraps and clears the table */
  if (!bus || !bus->ram || bus->ram_size == 0 || (bus->ram_size & 0xfff) || (bus->ram_base & 0xfff))
    return vs_error_set(err, EINVAL, "hart %u: RAM must be a non-empty page-aligned region",
                        hartid);
  if (!bus->read_mtime)
    return vs_error_set(err, EINVAL, "hart %u: the bus has no mtime source", hartid);
  h->icache = calloc(1, sizeof(*h->icache));
  if (!h->icache)
    return vs_error_set(err, ENOMEM, "hart %u: allocate the decoded-instruction cache", hartid);
  rv_decode_index(h->icache);
  h->icache->jit_warmup = bus->nharts > 1 ? RV_JIT_WARMUP_SMP : RV_JIT_WARMUP;
  h->icache->pool_limit = bus->nharts > 1 ? RV_POOL_SIZE_SMP : RV_POOL_SIZE;
  if (!bus->interpreter && rv_jit_create(&h->icache->jit, err) < 0) {
    free(h->icache);
    h->icache = NULL;
    return vs_error_wrap(err, "hart %u", hartid);
  }
  h->bus = bus;
  h->mhartid = hartid;
  rv_hart_reset(h, bus->ram_base, RV_PRIV_M);
  return 0;
}

void rv_hart_destroy(rv_hart *h) {
  if (h->icache)
    rv_jit_destroy(h->icache->jit);
  free(h->icache);
  h->icache = NULL;
}

void rv_hart_reset(rv_hart *h, uint64_t pc, int priv) {
  memset(h->x, 0, sizeof(h->x));
  memset(h->f, 0, sizeof(h->f));
  h->pc = pc;
  h->priv = priv;
  h->fflags = h->frm = 0;
  h->misa = MISA_RV64IMAFDCSU | (h->bus->no_hypervisor ? 0 : MISA_H);
  h->mstatus = (2ULL << 32) | (2ULL << 34); /* UXL = SXL = 64 bits */
  rv_hyp_clear(h);
  h->medeleg = h->mideleg = h->mie = h->mip = 0;
  h->mtvec = h->mscratch = h->mepc = h->mcause = h->mtval = 0;
  h->mcounteren = h->menvcfg = h->mcountinhibit = 0;
  h->stvec = h->sscratch = h->sepc = h->scause = h->stval = 0;
  h->scounteren = h->senvcfg = h->satp = 0;
  h->stimecmp = UINT64_MAX;
  memset(h->pmpcfg, 0, sizeof(h->pmpcfg));
  memset(h->pmpaddr, 0, sizeof(h->pmpaddr));
  if (priv != RV_PRIV_M) {
    /* Firmware grants S and U all of memory with one NAPOT entry (no match = no access). */
    h->pmpaddr[0] = RV_PMPADDR_MASK;
    h->pmpcfg[0] = PMP_CFG_NAPOT_RWX;
  }
  h->minstret = 0;
  h->reservation_valid = false;
  h->wfi = false;
  __atomic_store_n(&h->ext_mip, 0, __ATOMIC_RELAXED);
  if (priv == RV_PRIV_S) {
    /* What M-mode firmware leaves behind before entering the kernel. */
    h->mcounteren = 7;
    /* OpenSBI opens cycle, time and instret to U-mode as well; Linux writes scounteren only
     * from its SBI PMU driver, which the built-in SBI does not serve, so without this every
     * vDSO clock_gettime (rdtime) in user space traps (busybox udhcpc died of SIGILL). */
    h->scounteren = 7;
    h->menvcfg = MENVCFG_STCE;
    h->mideleg = MIP_S_MASK;
    h->medeleg = (1U << EXC_INSN_MISALIGNED) | (1U << EXC_BREAKPOINT) | (1U << EXC_ECALL_U) |
                 (1U << EXC_INSN_PAGE) | (1U << EXC_LOAD_PAGE) | (1U << EXC_STORE_PAGE) |
                 (1U << EXC_ILLEGAL) | (1U << EXC_LOAD_MISALIGNED) | (1U << EXC_STORE_MISALIGNED) |
                 (1U << EXC_INSN_ACCESS) | (1U << EXC_LOAD_ACCESS) | (1U << EXC_STORE_ACCESS);
    /* and, as OpenSBI does when the hart has H, the hypervisor's own traps go to HS-mode */
    if (rv_has_h(h))
      h->medeleg |= MEDELEG_H_MASK;
    h->mstatus |= (uint64_t)RV_PRIV_S << MSTATUS_MPP_SHIFT;
  }
  rv_hart_flush_tlb(h);
  /* The decode cache needs no flush: it follows the bytes in RAM, not the hart's state. */
}

/* Every address space's entries go (mmu.c: rv_tlb_flush_all). */
void rv_hart_flush_tlb(rv_hart *h) {
  rv_tlb_flush_all(h);
  rv_pmp_update(h);
  rv_update_modes(h);
}

static void rv_blocks_clear(struct rv_icache *ic) {
  memset(ic->blocks, 0, sizeof(ic->blocks));
  ic->pool_used = 0;
  ic->clears++;
  if (ic->jit)
    rv_jit_reset(ic->jit);
}

void rv_hart_flush_icache(rv_hart *h) {
  for (unsigned i = 0; i < RV_ICACHE_SIZE; i++)
    h->icache->e[i].key = 0;
  rv_blocks_clear(h->icache);
}

void rv_hart_clear_reservation(rv_hart *h) { h->reservation_valid = false; }

void rv_hart_post_mip(rv_hart *h, uint64_t bits) {
  __atomic_or_fetch(&h->mip_posted, bits & MIP_S_MASK, __ATOMIC_SEQ_CST);
}

/* Posted bits become software-written mip bits here, on the hart's own thread. */
static void rv_fold_posted_mip(rv_hart *h) {
  if (unlikely(__atomic_load_n(&h->mip_posted, __ATOMIC_RELAXED) != 0))
    h->mip |= __atomic_exchange_n(&h->mip_posted, 0, __ATOMIC_ACQ_REL);
}

uint32_t rv_hart_ask_tlb_flush(rv_hart *h) {
  return __atomic_add_fetch(&h->tlb_flush_asked, 1, __ATOMIC_SEQ_CST);
}

bool rv_hart_tlb_flushed(rv_hart *h, uint32_t ticket) {
  /* tickets wrap: compare by distance */
  return (int32_t)(__atomic_load_n(&h->tlb_flush_done, __ATOMIC_ACQUIRE) - ticket) >= 0;
}

static void rv_serve_tlb_flush(rv_hart *h) {
  uint32_t asked = __atomic_load_n(&h->tlb_flush_asked, __ATOMIC_ACQUIRE);
  if (likely(asked == __atomic_load_n(&h->tlb_flush_done, __ATOMIC_RELAXED)))
    return;
  rv_hart_flush_tlb(h);
  __atomic_store_n(&h->tlb_flush_done, asked, __ATOMIC_RELEASE);
}

void rv_hart_serve_requests(rv_hart *h) {
  rv_fold_posted_mip(h);
  rv_serve_tlb_flush(h);
}

void rv_hart_cut_run(rv_hart *h) {
  /* check_irq ends the interpreter's and the run loop's inner loops, the cut budget the
   * translated code's chain of blocks (the thread may be in either, or in neither) */
  __atomic_store_n(&h->check_irq, true, __ATOMIC_RELAXED);
  int64_t *frame = __atomic_load_n(&h->jit_frame, __ATOMIC_RELAXED);
  if (frame)
    rv_jit_cut_run(frame);
}

uint64_t rv_hart_next_timer(const rv_hart *h) {
  uint64_t t = h->stimecmp;
  /* the guest's timer, in host mtime ticks (a deadline already behind mtime stays due) */
  if (rv_has_h(h) && h->vstimecmp != UINT64_MAX) {
    uint64_t g = h->vstimecmp - h->htimedelta;
    if (g < t)
      t = g;
  }
  return t;
}

const char *rv_isa_string(const rv_bus *bus) {
  return bus->no_hypervisor ? RV_ISA_STRING : RV_ISA_STRING_H;
}

bool rv_hart_post_irq(rv_hart *h, uint64_t mip_bit, bool level) {
  mip_bit &= RV_MIP_MSIP | RV_MIP_MTIP | RV_MIP_MEIP | RV_MIP_SEIP;
  if (!level) {
    __atomic_and_fetch(&h->ext_mip, ~mip_bit, __ATOMIC_SEQ_CST);
    return false;
  }
  return (__atomic_fetch_or(&h->ext_mip, mip_bit, __ATOMIC_SEQ_CST) & mip_bit) != mip_bit;
}

void rv_hart_set_irq(rv_hart *h, uint64_t mip_bit, bool level) {
  rv_hart_post_irq(h, mip_bit, level);
  h->check_irq = true;
}

/* The TLB sets follow the effective privilege even without paging: PMP treats M-mode apart.
 * V=1 accesses have sets of their own (two-stage translations). */
static int rv_tlb_set(int priv, bool virt) {
  if (priv == RV_PRIV_M)
    return TLB_M;
  return virt ? TLB_VU + priv : priv;
}

void rv_update_modes(rv_hart *h) {
  int data_priv = h->priv;
  bool data_virt = h->virt;
  if (h->priv == RV_PRIV_M && (h->mstatus & MSTATUS_MPRV)) {
    data_priv = (int)((h->mstatus & MSTATUS_MPP) >> MSTATUS_MPP_SHIFT);
    data_virt = data_priv != RV_PRIV_M && (h->mstatus & MSTATUS_MPV);
  }
  int data_set = rv_tlb_set(data_priv, data_virt);
  /* SUM of the mode's sstatus: the guest's vsstatus is in mstatus while V=1, in vsstatus for
   * M-mode's MPRV accesses with MPV */
  uint64_t status = data_virt && !h->virt ? h->vsstatus : h->mstatus;
  if ((data_set == TLB_S || data_set == TLB_VS) && (status & MSTATUS_SUM))
    data_set = data_set == TLB_S ? TLB_S_SUM : TLB_VS_SUM;
  h->ld_tlb = h->st_tlb = data_set;
  h->fetch_tlb = rv_tlb_set(h->priv, h->virt);
  h->fetch_vpn = UINT64_MAX;
}

void rv_mark_fs_dirty(rv_hart *h) {
  h->mstatus |= MSTATUS_FS_DIRTY;
  if (h->virt)
    h->vsstatus |= MSTATUS_FS_DIRTY; /* HS-mode's mstatus.FS, swapped out */
}

/* ---------------------------------------------------------------- traps */

/* mideleg as the hart reads it: with H the VS-level interrupts are delegated for good. */
static uint64_t rv_mideleg(const rv_hart *h) {
  return h->mideleg | (rv_has_h(h) ? MIDELEG_H_FORCED : 0);
}

/* Whether an exception's tval is an address (its guest virtual address when GVA is set). */
static bool rv_cause_has_address(uint64_t cause) {
  return cause < 16 ? ((0xb0fbU >> cause) & 1)
                    : (cause == EXC_INSN_GUEST_PAGE || cause == EXC_LOAD_GUEST_PAGE ||
                       cause == EXC_STORE_GUEST_PAGE);
}

/* What a trap into HS or M records of the mode it left (the H extension's part of the trap). */
typedef struct rv_trap_origin {
  bool virt;
  bool gva;
  uint64_t gpa, tinst;
} rv_trap_origin;

static rv_trap_origin rv_trap_origin_of(rv_hart *h, uint64_t cause, uint64_t tval, bool irq) {
  rv_trap_origin o = {.virt = h->virt};
  if (!irq && rv_cause_has_address(cause) && tval != 0)
    o.gva = h->virt || (cause != EXC_BREAKPOINT && h->trap_gva);
  if (!irq && (cause == EXC_INSN_GUEST_PAGE || cause == EXC_LOAD_GUEST_PAGE ||
               cause == EXC_STORE_GUEST_PAGE)) {
    o.gpa = h->trap_gpa;
    o.tinst = h->trap_tinst;
    /* an explicit load or store (not a fetch, not a VS page-table access): the instruction */
    if (!o.tinst && cause != EXC_INSN_GUEST_PAGE)
      o.tinst = rv_hyp_transformed_insn(h, tval);
  }
  h->trap_gva = false;
  h->trap_gpa = h->trap_tinst = 0;
  return o;
}

static void rv_take_trap(rv_hart *h, uint64_t cause, uint64_t tval, bool irq) {
  uint64_t epc = h->pc;
  uint64_t deleg = irq ? rv_mideleg(h) : h->medeleg;
  rv_trap_origin o = rv_trap_origin_of(h, cause, tval, irq);
  h->reservation_valid = false;
  if (h->priv <= RV_PRIV_S && ((deleg >> cause) & 1)) {
    if (o.virt && rv_hyp_trap_to_vs(h, cause, irq)) {
      /* to VS-mode: V stays 1, so the S fields are the guest's; its interrupts are numbered as
       * a supervisor's (VSSIP 2 is its SSIP 1) */
      if (irq)
        cause--;
    } else if (rv_has_h(h)) {
      rv_hyp_set_virt(h, false);
      uint64_t hs = h->hstatus & ~(HSTATUS_SPV | HSTATUS_GVA);
      if (o.virt)
        hs = (hs & ~HSTATUS_SPVP) | HSTATUS_SPV | (h->priv == RV_PRIV_S ? HSTATUS_SPVP : 0);
      h->hstatus = hs | (o.gva ? HSTATUS_GVA : 0);
      h->htval = o.gpa;
      h->htinst = o.tinst;
    }
    h->scause = cause | ((uint64_t)irq << 63);
    h->sepc = epc;
    h->stval = tval;
    uint64_t s = h->mstatus;
    s = (s & ~MSTATUS_SPIE) | ((s & MSTATUS_SIE) ? MSTATUS_SPIE : 0);
    s &= ~MSTATUS_SIE;
    s = (s & ~MSTATUS_SPP) | (h->priv == RV_PRIV_S ? MSTATUS_SPP : 0);
    h->mstatus = s;
    h->priv = RV_PRIV_S;
    uint64_t base = h->stvec & ~3ULL;
    h->next_pc = ((h->stvec & 1) && irq) ? base + 4 * cause : base;
  } else {
    rv_hyp_set_virt(h, false);
    if (rv_has_h(h)) {
      h->mstatus = (h->mstatus & ~(MSTATUS_MPV | MSTATUS_GVA)) | (o.virt ? MSTATUS_MPV : 0) |
                   (o.gva ? MSTATUS_GVA : 0);
      h->mtval2 = o.gpa;
      h->mtinst = o.tinst;
    }
    h->mcause = cause | ((uint64_t)irq << 63);
    h->mepc = epc;
    h->mtval = tval;
    uint64_t s = h->mstatus;
    s = (s & ~MSTATUS_MPIE) | ((s & MSTATUS_MIE) ? MSTATUS_MPIE : 0);
    s &= ~MSTATUS_MIE;
    s = (s & ~MSTATUS_MPP) | ((uint64_t)h->priv << MSTATUS_MPP_SHIFT);
    h->mstatus = s;
    h->priv = RV_PRIV_M;
    uint64_t base = h->mtvec & ~3ULL;
    h->next_pc = ((h->mtvec & 1) && irq) ? base + 4 * cause : base;
  }
  rv_update_modes(h);
  h->check_irq = true;
}

void rv_raise(rv_hart *h, uint64_t cause, uint64_t tval) { rv_take_trap(h, cause, tval, false); }

void rv_illegal(rv_hart *h, const rv_insn *d) { rv_raise(h, EXC_ILLEGAL, d->raw); }

/* The longest wait rv_stimer_due trusts the pace for (ticks: 1 s), and keeps its product small. */
#define RV_STIP_QUIET_MAX_TICKS 10000000ULL

/* Has mtime reached stimecmp (the Sstc timer's level)? A read of the host clock, ~1.6 million of
 * them in a boot (the interrupt checks), unless the bus offers mtime's pace: then the last read
 * bounds when mtime can reach stimecmp in host cycles, and until that cycle count the answer is
 * no without a clock read. Exact: the bound is taken before the read and the pace is a lower
 * bound of the cycles per tick, so the interrupt is never seen before the guest could read
 * time >= stimecmp; once the bound passes, the clock decides as before. */
static bool rv_stimer_due(rv_hart *h) {
  uint64_t cmp = h->stimecmp;
  const rv_mtime_pace *pace = h->bus->mtime_pace;
  if (!pace)
    return h->bus->read_mtime(h->bus->opaque) >= cmp;
  uint32_t gen = __atomic_load_n(&pace->gen, __ATOMIC_ACQUIRE);
  uint64_t cycles_per_tick = __atomic_load_n(&pace->cycles_per_tick, __ATOMIC_ACQUIRE);
  uint64_t start = rv_cycles();
  if (cmp == h->stip_quiet_cmp && gen == h->stip_quiet_gen && start < h->stip_quiet_until)
    return false;
  uint64_t now = h->bus->read_mtime(h->bus->opaque);
  if (now >= cmp)
    return true;
  if (cycles_per_tick) {
    /* mtime read `now` at or after `start`: it reaches cmp no sooner than (cmp - now - 1) whole
     * ticks after `start` (the tick it read may be about to end) */
    uint64_t ticks = cmp - now - 1;
    if (ticks > RV_STIP_QUIET_MAX_TICKS)
      ticks = RV_STIP_QUIET_MAX_TICKS;
    h->stip_quiet_until = start + ticks * cycles_per_tick;
    h->stip_quiet_cmp = cmp;
    h->stip_quiet_gen = gen;
  }
  return false;
}

/* mip as the hart sees it; with_timer: also the Sstc timer's level (rv_stimer_due). */
static uint64_t rv_mip_now(rv_hart *h, bool with_timer) {
  rv_fold_posted_mip(h);
  uint64_t mip = h->mip | __atomic_load_n(&h->ext_mip, __ATOMIC_RELAXED);
  if (with_timer && h->stimecmp != UINT64_MAX && rv_stimer_due(h))
    mip |= RV_MIP_STIP;
  if (rv_has_h(h))
    mip |= rv_hyp_mip(h);
  return mip;
}

uint64_t rv_read_mip(rv_hart *h) { return rv_mip_now(h, true); }

bool rv_hart_irq_pending(rv_hart *h) { return (rv_read_mip(h) & h->mie) != 0; }

/* Could rv_check_interrupts take a supervisor timer interrupt now (the same rules as there)? If
 * not, whether STIP is pending changes nothing it decides: another interrupt is taken or none
 * either way (STIP never goes to VS-mode). The interrupt checks then skip the clock read, most of
 * them in a boot (1.9 million clock reads, ~1.4% of its time, came from here: the kernel runs
 * with interrupts disabled or its timer disabled much of the time). */
static bool rv_stip_takeable(const rv_hart *h) {
  if (!(h->mie & RV_MIP_STIP))
    return false;
  if (!(rv_mideleg(h) & RV_MIP_STIP))
    return h->priv < RV_PRIV_M || (h->mstatus & MSTATUS_MIE);
  if (h->hideleg & RV_MIP_STIP)
    return true; /* not a delegation the H extension allows: decide as before */
  bool hs_level = h->priv == RV_PRIV_S && !h->virt;
  return h->virt || h->priv < RV_PRIV_S || (hs_level && (h->mstatus & MSTATUS_SIE));
}

/* Take the highest-priority enabled interrupt, if any. */
static bool rv_check_interrupts(rv_hart *h) {
  uint64_t pending = rv_mip_now(h, rv_stip_takeable(h)) & h->mie;
  if (likely(!pending))
    return false;
  uint64_t deleg = rv_mideleg(h);
  uint64_t m = pending & ~deleg;
  uint64_t s = pending & deleg & ~h->hideleg; /* to HS-mode */
  uint64_t vs = pending & deleg & h->hideleg; /* to VS-mode (hideleg is zero without H) */
  uint64_t take = 0;
  /* While V=1 the guest's sstatus.SIE is in mstatus; HS interrupts are then always enabled. */
  bool hs_level = h->priv == RV_PRIV_S && !h->virt;
  if (m && (h->priv < RV_PRIV_M || (h->mstatus & MSTATUS_MIE)))
    take = m;
  else if (s && (h->virt || h->priv < RV_PRIV_S || (hs_level && (h->mstatus & MSTATUS_SIE))))
    take = s;
  else if (vs && h->virt && (h->priv == RV_PRIV_U || (h->mstatus & MSTATUS_SIE)))
    take = vs;
  if (!take)
    return false;
  static const uint8_t order[] = {11, 3, 7, 9, 1, 5, 12, 10, 2, 6};
  for (size_t i = 0; i < sizeof(order); i++) {
    if (take & (1ULL << order[i])) {
      if (unlikely(h->bus->irq_gate) && !h->bus->irq_gate(h->bus->opaque, h, order[i]))
        return false;
      h->wfi = false;
      rv_take_trap(h, order[i], 0, true);
      h->pc = h->next_pc;
      return true;
    }
  }
  return false;
}

bool rv_hart_take_interrupt(rv_hart *h) { return rv_check_interrupts(h); }

/* ---------------------------------------------------------------- execution loop */

/* Execute one instruction; returns whether it straddled two pages (those are never in a block). */
static inline bool rv_step(rv_hart *h) {
  uint64_t pc = h->pc;
  bool straddles = false;
  uint8_t *host;
  if (likely((pc >> 12) == h->fetch_vpn)) {
    host = (uint8_t *)(uintptr_t)(pc + h->fetch_addend); // NOLINT(performance-no-int-to-ptr)
  } else {
    host = rv_fetch_slow(h, pc);
    if (!host) {
      h->pc = h->next_pc;
      return false;
    }
  }
  uint32_t raw;
  if (likely((pc & 0xfff) <= 0xffc)) {
    memcpy(&raw, host, 4);
  } else {
    uint16_t lo;
    memcpy(&lo, host, 2);
    raw = lo;
    if ((lo & 3) == 3) {
      /* A 32-bit instruction straddling two pages: fetch the upper half separately. */
      uint8_t *hi_host = rv_fetch_slow(h, pc + 2);
      if (!hi_host) {
        h->pc = h->next_pc;
        return false;
      }
      uint16_t hi;
      memcpy(&hi, hi_host, 2);
      raw |= (uint32_t)hi << 16;
      h->fetch_vpn = UINT64_MAX;
      straddles = true;
    }
  }
  if ((raw & 3) != 3)
    raw &= 0xffff;
  rv_insn *d = &h->icache->e[((uintptr_t)host >> 1) & (RV_ICACHE_SIZE - 1)];
  if (unlikely(d->key != (uintptr_t)host || d->raw != raw)) {
    rv_decode(h->icache, raw, d);
    d->key = (uintptr_t)host;
  }
  h->next_pc = pc + d->len;
  d->fn(h, d);
  h->x[0] = 0;
  h->pc = h->next_pc;
  return straddles;
}

void rv_jit_step(rv_hart *h) {
  rv_step(h);
  h->minstret++;
}

/* ---------------------------------------------------------------- decoded blocks */

/* A block's place (rv_block.where, also kept in links): its length and first instruction. */
static unsigned rv_where_len(uint32_t where) { return where & ((1U << RV_BLOCK_N_BITS) - 1); }

static rv_insn *rv_where_first(struct rv_icache *ic, uint32_t where) {
  return &ic->pool[where >> RV_BLOCK_N_BITS];
}

/* The index of the RAM page that holds host address `host`. */
static uint64_t rv_ram_page(const rv_bus *bus, const uint8_t *host) {
  return (uint64_t)(host - bus->ram) >> 12;
}

/* The code counter of RAM page `page`; other harts may move it (rv_bus.threaded). */
static inline uint32_t rv_code_gen(const rv_bus *bus, uint64_t page) {
  return __atomic_load_n(&bus->code_pages[page], __ATOMIC_RELAXED);
}

/* The host page a TLB entry maps (its virtual page plus the addend). */
static uintptr_t rv_tlb_host_page(const rv_tlb_entry *e) {
  return (uintptr_t)((e->vpn & ((1ULL << 52) - 1)) << 12) + e->addend;
}

/* Drop the write mappings of this hart's TLB; only_page: just those of that host page. */
static void rv_drop_write_mappings(rv_hart *h, uintptr_t only_page) {
  for (int s = 0; s < RV_TLB_SETS; s++) {
    rv_tlb_entry *t = h->tlb[s][ACC_WRITE];
    for (unsigned i = 0; i < RV_TLB_SIZE; i++) {
      if (!only_page || rv_tlb_host_page(&t[i]) == only_page)
        t[i].vpn = 0;
    }
  }
}

/* Harts on their own threads: another hart made pages code while this one may have held write
 * mappings of them, and stores through those did not move the pages' counters. So every write
 * mapping of a page that is code now, of any address space (one that ran before the last satp
 * write may be used again), counts as a write to it (its decoded blocks are dropped, at worst
 * once too often) and goes. Done before this hart can publish what it stored
 * (fences, SBI calls, every slice), so another hart that synchronises with it and then runs
 * FENCE.I never runs code decoded before those stores. */
static void rv_release_code_write_mappings(rv_hart *h) {
  rv_bus *bus = h->bus;
  const uint64_t tag_mask = ~((1ULL << 52) - 1);
  for (int s = 0; s < RV_TLB_SETS; s++) {
    rv_tlb_entry *t = h->tlb[s][ACC_WRITE];
    for (unsigned i = 0; i < RV_TLB_SIZE; i++) {
      if ((t[i].vpn & tag_mask) == 0)
        continue; /* empty */
      uintptr_t host = rv_tlb_host_page(&t[i]);
      uint64_t page = (uint64_t)(host - (uintptr_t)bus->ram) >> 12;
      if (page >= bus->ram_size >> 12 || !(rv_code_gen(bus, page) & 1))
        continue;
      rv_code_page_written(bus->code_pages, page);
      t[i].vpn = 0;
    }
  }
}

/* Blocks are about to be decoded from RAM page `page` (at host address host_page): make its
 * counter odd, so that stores to it take the slow path and move it on, and return that odd value,
 * the generation of the blocks decoded now. This hart drops its own write mapping of the page;
 * the others drop all theirs before they run again (threaded: before they publish their stores,
 * rv_release_code_write_mappings). Claimed before the bytes are read: a store that lands after
 * the claim either moves the counter or is caught by its hart's release, so no block ever holds
 * code older than its generation says. */
static uint32_t rv_code_page_claim(rv_hart *h, uint64_t page, uintptr_t host_page) {
  rv_bus *bus = h->bus;
  uint32_t c = rv_code_gen(bus, page);
  while (!(c & 1)) {
    if (__atomic_compare_exchange_n(&bus->code_pages[page], &c, c + 1, false, __ATOMIC_SEQ_CST,
                                    __ATOMIC_RELAXED)) {
      c++;
      uint32_t was = __atomic_fetch_add(&bus->code_epoch, 1, __ATOMIC_SEQ_CST);
      if (h->code_epoch == was)
        h->code_epoch = was + 1;
      rv_drop_write_mappings(h, host_page);
      break;
    }
    /* another hart claimed it first (c is now odd) or wrote it (try again) */
  }
  return c;
}

/* Another hart made pages code since this one last looked: it may map them for writing. */
static void rv_check_code_epoch(rv_hart *h) {
  uint32_t epoch = __atomic_load_n(&h->bus->code_epoch, __ATOMIC_SEQ_CST);
  if (unlikely(h->code_epoch != epoch)) {
    if (h->bus->threaded)
      rv_release_code_write_mappings(h);
    else
      rv_drop_write_mappings(h, 0);
    h->code_epoch = epoch;
  }
}

void rv_hart_sync_code(rv_hart *h) {
  if (h->bus->threaded)
    rv_check_code_epoch(h);
}

/* The dispatch kind of a block's last instruction (enum rv_fast). */
static uint8_t rv_last_kind(uint8_t fast) {
  if (fast >= RV_FAST_FIRST_JUMP && fast <= RV_FAST_LAST_JUMP)
    return (uint8_t)(RV_LAST_FIRST_JUMP + fast - RV_FAST_FIRST_JUMP);
  return RV_LAST_CALL;
}

/* Blocks start anywhere in megabytes of kernel code: fold the higher address bits in. A block
 * may sit in either slot of its pair (two ways, the one used last first): with one slot per
 * address, hot blocks that hashed alike evicted each other at every lookup and were decoded and
 * translated again each time (in a boot, 287,000 of 950,000 block builds; the pool then filled
 * and emptied that much sooner). */
static rv_block *rv_block_pair(struct rv_icache *ic, uintptr_t host) {
  unsigned slot = (unsigned)((host >> 1) ^ (host >> (1 + RV_BLOCK_BITS))) & (RV_BLOCK_SLOTS - 1);
  return &ic->blocks[slot & ~1U];
}

/* The slot of the pair that holds the block starting at `host` (of any generation), or NULL. */
static rv_block *rv_block_find(rv_block *pair, uintptr_t host) {
  if (pair[0].key == host && pair[0].where)
    return &pair[0];
  if (pair[1].key == host && pair[1].where)
    return &pair[1];
  return NULL;
}

/* Whether a block decoded under the page's code counter `gen` starts at host address `host`. */
static bool rv_block_starts_at(struct rv_icache *ic, const uint8_t *host, uint32_t gen) {
  const rv_block *b = rv_block_find(rv_block_pair(ic, (uintptr_t)host), (uintptr_t)host);
  return b && b->gen == gen;
}

/* Whether the block goes on past d, at offset `off` in the page: d is `jal x0` (j, c.j) to the
 * same page, so its target is decoded as the block's next instruction (a loop's back edge then
 * joins its body into one block, the jump costing nothing). */
static bool rv_jumps_on(const rv_insn *d, unsigned off) {
  int64_t to = (int64_t)off + d->imm;
  return d->fn == op_jal && d->rd == 0 && to >= 0 && to <= 0xffe;
}

/* The index of the block's instruction (of the first n) at host address `at`, if one after the
 * first is there; else 0. */
static unsigned rv_block_index_of(const rv_insn *first, unsigned n, uintptr_t at) {
  for (unsigned k = 1; k < n; k++)
    if (first[k].key == at)
      return k;
  return 0;
}

/* Decode the block that starts at host address `host` (guest pc `pc`) into the pool. It ends
 * where a block already starts (a join point of branches, reached by falling through): the two
 * then run one after the other instead of decoding (and translating) the rest of the run twice.
 * For the same reason it ends before its own instruction that its last branch (or a `j` it goes
 * on through) goes back to: a loop entered by falling into it, whose body would otherwise be
 * decoded behind the code before the loop and again from its head. (A boot decodes 2.8 million
 * instructions, 430,000 different ones: 1.2 million again after the pool was emptied, 1.0 million
 * as a second copy in the same pool, mostly blocks that start inside another at a branch target
 * reached after the code before it; loops are a small part of those. Ending a block at a `j` to
 * another block saved 5% more decoding but cost loops whose back edge is that `j` a link per
 * iteration.) */
static rv_block *rv_block_build(rv_hart *h, rv_block *b, uint8_t *host, uint64_t pc) {
  struct rv_icache *ic = h->icache;
  if (ic->pool_used + RV_BLOCK_MAX > ic->pool_limit)
    rv_blocks_clear(ic);
  rv_insn *first = &ic->pool[ic->pool_used];
  uint8_t *start = host;
  uint64_t page = rv_ram_page(h->bus, start);
  uint32_t gen = rv_code_page_claim(h, page, (uintptr_t)start & ~(uintptr_t)0xfff);
  unsigned n = 0, off = pc & 0xfff;
  bool jumped = false;
  while (n < RV_BLOCK_MAX && off <= 0xffe) {
    if (n && !jumped && rv_block_starts_at(ic, host, gen))
      break;
    uint16_t lo;
    memcpy(&lo, host, 2);
    uint32_t raw = lo;
    if ((lo & 3) == 3) {
      if (off > 0xffc)
        break; /* crosses the page: fetched on its own by rv_step */
      memcpy(&raw, host, 4);
    }
    rv_insn *d = &first[n++];
    rv_decode(ic, raw, d);
    d->key = (uintptr_t)host;
    jumped = d->ends_block && n < RV_BLOCK_MAX && rv_jumps_on(d, off);
    bool branch = d->fast >= RV_FAST_FIRST_JUMP && d->fast < RV_FAST_jal;
    if (jumped || branch) {
      unsigned head = rv_block_index_of(first, n, (uintptr_t)(host + d->imm));
      if (head) {
        n = head; /* the loop's head starts the next block */
        break;
      }
    }
    if (d->ends_block && !jumped)
      break;
    int64_t step = jumped ? d->imm : d->len;
    host += step;
    off = (unsigned)((int64_t)off + step);
  }
  if (!n)
    return NULL;
  first[n - 1].fast = rv_last_kind(first[n - 1].fast);
  first[n - 1].next[0] = first[n - 1].next[1] = 0;
  b->where = (ic->pool_used << RV_BLOCK_N_BITS) | n;
  b->key = (uintptr_t)start;
  b->code = NULL;
  /* a store since the claim moved the counter on: the block is then never used */
  b->gen = gen;
  ic->pool_used += n;
  return b;
}

/* The block at h->pc when its page is the current fetch page (translated, executable, one PMP
 * decision for the whole page); NULL sends the instruction through rv_step. Decoded now if it is
 * not there, unless `may_build` is false. */
static inline rv_block *rv_block_lookup_in(rv_hart *h, bool may_build) {
  uint64_t pc = h->pc;
  if (unlikely((pc >> 12) != h->fetch_vpn)) {
    /* Another page: the fetch TLB holds it if it was fetched before (and PMP allows all of it),
     * or it is filled now; if it cannot be, rv_step translates it and raises any fault. (When
     * rv_step ran the first instruction of each newly mapped page, the block after it was decoded
     * and translated as well as the block at pc later: a block too many per fetch TLB miss.) */
    const rv_tlb_entry *e = &h->tlb[h->fetch_tlb][ACC_EXEC][rv_tlb_index(pc)];
    if (e->vpn != ((pc >> 12) | h->tlb_tag) && !rv_tlb_take_global(h, h->fetch_tlb, ACC_EXEC, pc) &&
        !rv_fetch_fill(h, pc))
      return NULL;
    h->fetch_vpn = pc >> 12;
    h->fetch_addend = e->addend;
  }
  uint8_t *host = (uint8_t *)(uintptr_t)(pc + h->fetch_addend); // NOLINT(performance-no-int-to-ptr)
  rv_block *pair = rv_block_pair(h->icache, (uintptr_t)host);
  if (likely(pair[0].key == (uintptr_t)host && pair[0].where)) {
    if (likely(pair[0].gen == rv_code_gen(h->bus, rv_ram_page(h->bus, host))))
      return &pair[0];
    if (!may_build)
      return NULL;
    return rv_block_build(h, &pair[0], host, pc); /* its page was written */
  }
  /* the other way, or a block that is not there: either way it becomes the pair's first (the
   * first moves over, the second goes) */
  rv_block second = pair[1];
  pair[1] = pair[0];
  pair[0] = second;
  if (second.key == (uintptr_t)host && second.where &&
      second.gen == rv_code_gen(h->bus, rv_ram_page(h->bus, host)))
    return &pair[0];
  if (!may_build)
    return NULL;
  return rv_block_build(h, &pair[0], host, pc);
}

static rv_block *rv_block_lookup(rv_hart *h) { return rv_block_lookup_in(h, true); }

/* Run blk and the blocks that follow it while fewer than `chunk` instructions have run, the next
 * block fits in `left` and no instruction asked to leave; returns the instructions executed. A
 * block stops early when an instruction trapped or asked to leave (it counts; a store that wrote
 * decoded code asks, so the code after it is decoded again).
 *
 * Threaded code: every instruction jumps straight to the next one's code, through its own
 * indirect jump; a block's last instruction has its own kinds (RV_LAST_*), so no instruction
 * checks where it is. Loads, stores, base ALU operations and the branch or jump that ends a block
 * (cpu_internal.h) run inline with pc in a local; the rest go through their handlers with h->pc
 * and h->next_pc set. minstret counts every instruction; it is brought up to date before a
 * block's last instruction when that one calls its handler, the only place a counter CSR can be
 * read. */
/* GCC would merge the copies of the dispatch jump into one, which predicts worse. */
#if defined(__GNUC__) && !defined(__clang__)
#define RV_KEEP_DISPATCH_COPIES __attribute__((optimize("no-crossjumping", "no-gcse")))
#else
#define RV_KEEP_DISPATCH_COPIES
#endif

/* One function by necessity: computed goto cannot leave it, so every inline operation is a label
 * in it. */
// NOLINTNEXTLINE(readability-function-size)
RV_KEEP_DISPATCH_COPIES static uint64_t rv_blocks_run(rv_hart *h, rv_block *blk, uint64_t chunk,
                                                      uint64_t left) {
#define RV_LABEL(name, ...) [RV_FAST_##name] = &&fast_##name,
#define RV_CALL_LABEL(name, ...) [RV_FAST_##name] = &&call,
  /* Jumps end blocks: they run inline as the last instruction (RV_LAST_*). */
#define RV_JUMP_LABEL(name, ...)                                                                   \
  [RV_LAST_FIRST_JUMP + RV_FAST_##name - RV_FAST_FIRST_JUMP] = &&last_##name,
  static const void *const code[RV_DISPATCH_COUNT] = {
      [RV_FAST_CALL] = &&call,
      [RV_FAST_jal] = &&jump_on, /* only jal x0 within the page is not last (rv_block_build) */
      [RV_FAST_jalr] = &&call,
      RV_BRANCH_OPS(RV_CALL_LABEL) RV_STORE_OPS(RV_LABEL) RV_LOAD_OPS(RV_LABEL)
          RV_ALU_I_OPS(RV_LABEL) RV_ALU_R_OPS(RV_LABEL)[RV_LAST_CALL] = &&run_last,
      RV_BRANCH_OPS(RV_JUMP_LABEL)[RV_LAST_FIRST_JUMP + RV_FAST_jal - RV_FAST_FIRST_JUMP] =
          &&last_jal,
      [RV_LAST_FIRST_JUMP + RV_FAST_jalr - RV_FAST_FIRST_JUMP] = &&last_jalr};
#undef RV_LABEL
#undef RV_CALL_LABEL
#undef RV_JUMP_LABEL
  struct rv_icache *ic = h->icache;
  rv_insn *first = rv_where_first(ic, blk->where), *d = first;
  uint64_t *x = h->x;
  uint64_t pc = h->pc;
  unsigned n = 0;
  uint64_t total = 0;
  uint32_t gen = blk->gen; /* the code counter of the running blocks' page */
  uint32_t *link = NULL;   /* where the block that just ran keeps its successor */
  uint32_t clears = ic->clears;

#define DISPATCH()                                                                                 \
  do {                                                                                             \
    goto *code[d->fast];                                                                           \
  } while (0)
#define NEXT()                                                                                     \
  do {                                                                                             \
    pc += d->len;                                                                                  \
    d++;                                                                                           \
    DISPATCH();                                                                                    \
  } while (0)
/* Loads and stores may trap or make a device raise an interrupt. */
#define LEAVE_IF_ASKED()                                                                           \
  do {                                                                                             \
    if (unlikely(h->check_irq))                                                                    \
      goto left;                                                                                   \
  } while (0)

  DISPATCH();

call:
  h->pc = pc;
  h->next_pc = pc + d->len;
  d->fn(h, d);
  x[0] = 0;
  LEAVE_IF_ASKED();
  NEXT();

jump_on: /* jal x0 to the block's next instruction */
  pc += (uint64_t)(int64_t)d->imm;
  d++;
  DISPATCH();

#define RV_INLINE_LOAD(name, size, conv)                                                           \
  fast_##name : {                                                                                  \
    uint64_t v;                                                                                    \
    h->pc = pc;                                                                                    \
    h->next_pc = pc + d->len;                                                                      \
    if (likely(rv_load(h, x[d->rs1] + (uint64_t)d->imm, size, &v)))                                \
      x[d->rd] = conv;                                                                             \
    LEAVE_IF_ASKED();                                                                              \
    NEXT();                                                                                        \
  }
#define RV_INLINE_STORE(name, size)                                                                \
  fast_##name : {                                                                                  \
    h->pc = pc;                                                                                    \
    h->next_pc = pc + d->len;                                                                      \
    rv_store(h, x[d->rs1] + (uint64_t)d->imm, size, x[d->rs2]);                                    \
    LEAVE_IF_ASKED();                                                                              \
    NEXT();                                                                                        \
  }
#define RV_INLINE_ALU_I(name, expr)                                                                \
  fast_##name : {                                                                                  \
    uint64_t a = x[d->rs1], b = (uint64_t)d->imm;                                                  \
    (void)a;                                                                                       \
    x[d->rd] = (expr);                                                                             \
    NEXT();                                                                                        \
  }
#define RV_INLINE_ALU_R(name, expr)                                                                \
  fast_##name : {                                                                                  \
    uint64_t a = x[d->rs1], b = x[d->rs2];                                                         \
    x[d->rd] = (expr);                                                                             \
    NEXT();                                                                                        \
  }
  RV_LOAD_OPS(RV_INLINE_LOAD)
  RV_STORE_OPS(RV_INLINE_STORE)
  RV_ALU_I_OPS(RV_INLINE_ALU_I)
  RV_ALU_R_OPS(RV_INLINE_ALU_R)
#undef RV_INLINE_LOAD
#undef RV_INLINE_STORE
#undef RV_INLINE_ALU_I
#undef RV_INLINE_ALU_R
#undef NEXT
#undef LEAVE_IF_ASKED

run_last:
  n = (unsigned)(d - first);
  h->minstret += n;
  h->pc = pc;
  h->next_pc = pc + d->len;
  d->fn(h, d);
  x[0] = 0;
  h->pc = h->next_pc;
  h->minstret++;
  total += n + 1;
  if (unlikely(h->check_irq))
    return total;
  link = NULL;
  goto chain;
#define RV_INLINE_BRANCH(name, cond)                                                               \
  last_##name : {                                                                                  \
    uint64_t a = x[d->rs1], b = x[d->rs2];                                                         \
    bool taken = (cond);                                                                           \
    pc += taken ? (uint64_t)d->imm : d->len;                                                       \
    link = &d->next[taken];                                                                        \
    goto jumped;                                                                                   \
  }
  RV_BRANCH_OPS(RV_INLINE_BRANCH)
#undef RV_INLINE_BRANCH
last_jal: /* as op_jal and op_jalr (exec.c) */
  x[d->rd] = pc + d->len;
  x[0] = 0;
  pc += (uint64_t)d->imm;
  link = &d->next[1];
  goto jumped;
last_jalr : {
  uint64_t target = (x[d->rs1] + (uint64_t)d->imm) & ~1ULL;
  x[d->rd] = pc + d->len;
  x[0] = 0;
  pc = target;
  link = NULL;
}
jumped:
  n = (unsigned)(d - first);
  h->pc = pc;
  h->minstret += n + 1;
  total += n + 1;
chain: /* on to the next block, while the chunk lasts and it fits in the budget */
  if (total >= chunk || unlikely(h->check_irq)) /* check_irq: rv_hart_cut_run */
    return total;
  if (link && *link && (h->pc >> 12) == h->fetch_vpn) {
    /* A successor in the same page: valid while the page's code counter has not moved (it was
     * linked when both blocks were decoded under the same counter). */
    uint8_t *host = (uint8_t *)(uintptr_t)(h->pc + h->fetch_addend); // NOLINT
    rv_insn *next = rv_where_first(ic, *link);
    if (likely(next->key == (uintptr_t)host &&
               rv_code_gen(h->bus, rv_ram_page(h->bus, host)) == gen)) {
      if (rv_where_len(*link) > left - total)
        return total;
      first = d = next;
      pc = h->pc;
      DISPATCH();
    }
  }
  uint64_t page_vpn = h->fetch_vpn;
  blk = rv_block_lookup(h);
  if (!blk)
    return total;
  /* link the block that ran to this one if both are in one page and neither was dropped */
  if (link && clears == ic->clears && h->fetch_vpn == page_vpn && blk->gen == gen)
    *link = blk->where;
  clears = ic->clears;
  gen = blk->gen;
  if (rv_where_len(blk->where) > left - total)
    return total;
  first = d = rv_where_first(ic, blk->where);
  pc = h->pc;
  DISPATCH();
left: /* d trapped or asked to leave: it ran */
  pc = h->next_pc;
  d++;
  n = (unsigned)(d - first);
  h->pc = pc;
  h->minstret += n;
  return total + n;
#undef DISPATCH
}

/* blk's translated code, translated now if it has none and has warmed up (ic->jit_warmup runs in
 * the interpreter, counted in blk->code); RV_JIT_INTERPRET while it warms up or when it cannot be
 * translated; NULL if the code buffer was full and everything was dropped (blk too). */
static const void *rv_jit_code(rv_hart *h, rv_block *blk) {
  struct rv_icache *ic = h->icache;
  uint32_t at = blk->where >> RV_BLOCK_N_BITS;
  uintptr_t seen = (uintptr_t)blk->code;
  if (likely(seen >= RV_JIT_CODE_MIN) || seen == (uintptr_t)RV_JIT_INTERPRET)
    return blk->code;
  uintptr_t runs = seen ? seen - 1 : 0; /* runs so far, all in the interpreter */
  if (runs < ic->jit_warmup) {
    blk->code = (const void *)(runs + 2);
    return RV_JIT_INTERPRET;
  }
  const uint8_t *host = (const uint8_t *)blk->key; // NOLINT(performance-no-int-to-ptr)
  const uint32_t *counter = &h->bus->code_pages[rv_ram_page(h->bus, host)];
  /* At the first try the translator may ask for one more run in the interpreter: a loop's tail
   * in a page the fetch TLB does not hold yet (the run fetches it) */
  const void *code = rv_jit_translate(ic->jit, h, &ic->pool[at], rv_where_len(blk->where), counter,
                                      blk->gen, runs == ic->jit_warmup);
  if (code == RV_JIT_AGAIN) {
    blk->code = (const void *)(runs + 2);
    return RV_JIT_INTERPRET;
  }
  if (!code)
    rv_blocks_clear(ic); /* blk is empty now */
  else
    blk->code = code;
  return code;
}

/* Run blk and the blocks that follow it as translated code, with the limits of rv_blocks_run:
 * while fewer than `chunk` instructions have run, the next block fits in `left` and no
 * instruction asked to leave. A block is translated once it has warmed up (rv_jit_code; until
 * then the interpreter runs it); a direct jump to another block of its page is then linked to
 * that block's code, so the two run on without coming back here. */
static uint64_t rv_jit_blocks_run(rv_hart *h, rv_block *blk, uint64_t chunk, uint64_t left) {
  struct rv_icache *ic = h->icache;
  uint64_t total = 0;
  uintptr_t link = 0;
  for (;;) {
    uint32_t clears = ic->clears;
    const void *code = rv_jit_code(h, blk);
    if (!code)
      return total;
    if (unlikely(code == RV_JIT_INTERPRET)) {
      total += rv_blocks_run(h, blk, 1, left - total); /* this block only */
      link = 0;
    } else {
      if (link && clears == ic->clears)
        rv_jit_link(ic->jit, link, code);
      else if (clears == ic->clears)
        rv_jit_remember(ic->jit, h->pc, rv_tlb_jump_tag(h, h->pc), code);
      /* Chained blocks may run past the chunk by less than a block, as the interpreter's do:
       * the chain entry that would overrun this limit is then past the chunk, so a chunk ends
       * with one exit instead of two (the refused entry, then the block entered from here). */
      uint64_t limit = chunk - total + RV_BLOCK_MAX;
      if (limit > left - total)
        limit = left - total;
      rv_jit_exit r = rv_jit_enter(ic->jit, h, code, limit);
      total += r.count;
      link = r.link;
    }
    if (unlikely(h->check_irq) || total >= chunk)
      return total;
    clears = ic->clears;
    blk = rv_block_lookup(h);
    if (!blk || rv_where_len(blk->where) > left - total)
      return total;
    if (clears != ic->clears)
      link = 0; /* the lookup emptied the pool and the code with it */
  }
}

/* ---------------------------------------------------------------- the run loop */

/* Instructions between looks at interrupts and other harts' requests. Each look leaves
 * translated code and finds the block again (two exits: the chain entry refuses the block that
 * would overrun the budget); at 1024 those exits were about half of all exits while the guest
 * computed, and 16384 (~10 us) rather than 4096 took a 1-hart boot's looks from 1.0 million to
 * 280,000 and its CPU time down by ~4% (2026-12-07, issue 18). The looks are for the hart's own
 * timer: what another thread asks of a hart (an RFENCE whose caller waits, an IPI, a stop) cuts
 * its run short at once (harts.c: a signal, rv_hart_cut_run). With harts that waited for the look
 * instead (every 4096 instructions, to keep an RFENCE within a few microseconds), a hart running
 * busybox's sha256 beside another looked every ~1 us, and two jobs on 2 harts ran 1.63x as fast
 * as on 1. */
#define RV_BLOCK_LOOK 16384

static uint64_t rv_hart_run_insns(rv_hart *h, uint64_t max_insns) {
  uint64_t done = 0;
  if (h->wfi) {
    if (!rv_hart_irq_pending(h))
      return 0;
    h->wfi = false;
  }
  rv_check_code_epoch(h);
  const uint64_t chunk = RV_BLOCK_LOOK;
  while (done < max_insns && !__atomic_load_n(&h->stop_request, __ATOMIC_RELAXED)) {
    h->check_irq = false;
    if (h->bus->threaded)
      rv_serve_tlb_flush(h);
    rv_check_interrupts(h);
    /* Interrupts are checked every `chunk` instructions (a block may run past that) and
     * whenever an instruction asks for it; max_insns is never exceeded. */
    uint64_t left = max_insns - done;
    uint64_t n = left < chunk ? left : chunk;
    uint64_t i = 0;
    while (i < n) {
      rv_block *b = rv_block_lookup_in(h, left - i >= RV_BLOCK_MAX);
      if (likely(b && rv_where_len(b->where) <= left - i)) {
        i += h->icache->jit ? rv_jit_blocks_run(h, b, n - i, left - i)
                            : rv_blocks_run(h, b, n - i, left - i);
      } else {
        uint64_t pc = h->pc, tag = h->tlb_tag | (uint64_t)h->fetch_tlb;
        if (rv_step(h) && h->icache->jit)
          rv_jit_remember_step(h->icache->jit, pc, tag);
        i++;
        h->minstret++; /* per instruction, so counter CSR reads are exact */
      }
      if (unlikely(h->check_irq))
        break;
    }
    done += i;
    if (h->wfi || unlikely(h->breakpoint_hit)) /* WFI, or a watchpoint triggered */
      break;
    if (h->yield) {
      h->yield = false;
      h->spun = true;
      break;
    }
  }
  return done;
}

static bool rv_at_breakpoint(const rv_hart *h, const rv_breakpoints *bp, unsigned n) {
  for (unsigned i = 0; i < n && i < RV_MAX_BREAKPOINTS; i++)
    if (bp->pc[i] == h->pc)
      return true;
  return false;
}

/* With debugger breakpoints: one instruction at a time, looking at the pc before each. */
static uint64_t rv_hart_run_to_breakpoint(rv_hart *h, const rv_breakpoints *bp, unsigned n,
                                          uint64_t max_insns) {
  uint64_t done = 0;
  while (done < max_insns && !__atomic_load_n(&h->stop_request, __ATOMIC_RELAXED)) {
    if (h->breakpoint_hit)
      break;
    if (rv_at_breakpoint(h, bp, n)) {
      h->watch_hit = 0;
      h->breakpoint_hit = true;
      break;
    }
    uint64_t one = rv_hart_run_insns(h, 1);
    done += one;
    if (!one || h->wfi)
      break;
  }
  return done;
}

uint64_t rv_hart_run(rv_hart *h, uint64_t max_insns) {
  const rv_breakpoints *bp = h->bus->breakpoints;
  unsigned n = bp ? __atomic_load_n(&bp->n, __ATOMIC_ACQUIRE) : 0;
  h->spun = false;
  if (unlikely(n))
    return rv_hart_run_to_breakpoint(h, bp, n, max_insns);
  if (unlikely(h->breakpoint_hit)) /* it stopped at a watchpoint: the debugger resumes it */
    return 0;
  return rv_hart_run_insns(h, max_insns);
}

uint64_t rv_hart_step(rv_hart *h) {
  /* the hart is parked by a stop-the-world request, which the step must not obey */
  bool stop = __atomic_exchange_n(&h->stop_request, false, __ATOMIC_SEQ_CST);
  uint64_t n = rv_hart_run_insns(h, 1);
  __atomic_store_n(&h->stop_request, stop, __ATOMIC_SEQ_CST);
  return n;
}

/* ---------------------------------------------------------------- CSRs */

enum {
  CSR_FFLAGS = 0x001,
  CSR_FRM = 0x002,
  CSR_FCSR = 0x003,
  CSR_CYCLE = 0xc00,
  CSR_TIME = 0xc01,
  CSR_INSTRET = 0xc02,
  CSR_SSTATUS = 0x100,
  CSR_SIE = 0x104,
  CSR_STVEC = 0x105,
  CSR_SCOUNTEREN = 0x106,
  CSR_SENVCFG = 0x10a,
  CSR_SSCRATCH = 0x140,
  CSR_SEPC = 0x141,
  CSR_SCAUSE = 0x142,
  CSR_STVAL = 0x143,
  CSR_SIP = 0x144,
  CSR_STIMECMP = 0x14d,
  CSR_SATP = 0x180,
  CSR_MVENDORID = 0xf11,
  CSR_MARCHID = 0xf12,
  CSR_MIMPID = 0xf13,
  CSR_MHARTID = 0xf14,
  CSR_MCONFIGPTR = 0xf15,
  CSR_MSTATUS = 0x300,
  CSR_MISA = 0x301,
  CSR_MEDELEG = 0x302,
  CSR_MIDELEG = 0x303,
  CSR_MIE = 0x304,
  CSR_MTVEC = 0x305,
  CSR_MCOUNTEREN = 0x306,
  CSR_MENVCFG = 0x30a,
  CSR_MCOUNTINHIBIT = 0x320,
  CSR_MSCRATCH = 0x340,
  CSR_MEPC = 0x341,
  CSR_MCAUSE = 0x342,
  CSR_MTVAL = 0x343,
  CSR_MIP = 0x344,
  CSR_MTINST = 0x34a,
  CSR_MTVAL2 = 0x34b,
  CSR_PMPCFG0 = 0x3a0,
  CSR_PMPADDR0 = 0x3b0,
  CSR_MCYCLE = 0xb00,
  CSR_MINSTRET = 0xb02,
};

static uint64_t rv_sstatus_view(uint64_t mstatus) {
  uint64_t s = mstatus & SSTATUS_MASK;
  if ((mstatus & MSTATUS_FS) == MSTATUS_FS_DIRTY)
    s |= MSTATUS_SD;
  return s;
}

/* Counter access from S/U is gated by mcounteren (and scounteren for U); with V=1 also by
 * hcounteren, and what M allows but the hypervisor does not is a virtual instruction. */
static bool rv_counter_allowed(rv_hart *h, unsigned idx) {
  if (h->priv < RV_PRIV_M && !((h->mcounteren >> idx) & 1))
    return false;
  if (h->virt && !((h->hcounteren >> idx) & 1)) {
    h->csr_virtual = true;
    return false;
  }
  if (h->priv < RV_PRIV_S && !((h->scounteren >> idx) & 1)) {
    h->csr_virtual = h->virt;
    return false;
  }
  return true;
}

static bool rv_fp_csr_allowed(rv_hart *h) { return rv_fs_enabled(h); }

static bool rv_stimecmp_allowed(rv_hart *h) {
  if (h->priv == RV_PRIV_M)
    return true;
  return (h->menvcfg & MENVCFG_STCE) && (h->mcounteren & 2);
}

/* satp from S-mode: mstatus.TVM traps HS-mode's accesses (illegal), hstatus.VTVM the guest's
 * (virtual instruction). */
static bool rv_satp_allowed(rv_hart *h) {
  if (h->priv != RV_PRIV_S)
    return true;
  if (h->virt) {
    h->csr_virtual = (h->hstatus & HSTATUS_VTVM) != 0;
    return !h->csr_virtual;
  }
  return !(h->mstatus & MSTATUS_TVM);
}

/* Whether the hart's mode may access csr at all; on refusal csr_virtual says which exception. */
static bool rv_csr_accessible(rv_hart *h, unsigned csr, bool write) {
  h->csr_virtual = false;
  int denied = rv_hyp_csr_denied(h, csr, write);
  h->csr_virtual = denied == EXC_VIRTUAL_INSN;
  return denied == 0;
}

uint64_t rv_csr_rmw_base(rv_hart *h, unsigned csr, uint64_t old) {
  /* mip/sip: the software-written bits only (and hvip's VSSIP, which mip shows) */
  if (csr == 0x344 || (csr == 0x144 && !h->virt))
    return h->mip | (h->hvip & RV_MIP_VSSIP);
  if (csr == 0x644) /* hip: likewise, VSSIP only */
    return h->hvip & RV_MIP_VSSIP;
  return old;
}

bool rv_csr_read(rv_hart *h, unsigned csr, uint64_t *val) {
  if (!rv_csr_accessible(h, csr, false))
    return false;
  if (rv_has_h(h)) {
    bool handled;
    bool ok = h->virt ? rv_hyp_vs_csr_read(h, csr, val, &handled)
                      : rv_hyp_csr_read(h, csr, val, &handled);
    if (handled)
      return ok;
  }
  switch (csr) {
  case CSR_FFLAGS:
    if (!rv_fp_csr_allowed(h))
      return false;
    *val = h->fflags;
    return true;
  case CSR_FRM:
    if (!rv_fp_csr_allowed(h))
      return false;
    *val = h->frm;
    return true;
  case CSR_FCSR:
    if (!rv_fp_csr_allowed(h))
      return false;
    *val = (h->frm << 5) | h->fflags;
    return true;
  case CSR_CYCLE:
  case CSR_INSTRET:
    if (!rv_counter_allowed(h, csr & 31))
      return false;
    *val = h->minstret;
    return true;
  case CSR_TIME:
    if (!rv_counter_allowed(h, 1))
      return false;
    *val = h->bus->read_mtime(h->bus->opaque) + (h->virt ? h->htimedelta : 0);
    return true;
  case CSR_SSTATUS:
    *val = rv_sstatus_view(h->mstatus);
    return true;
  case CSR_SIE:
    *val = h->mie & h->mideleg;
    return true;
  case CSR_STVEC:
    *val = h->stvec;
    return true;
  case CSR_SCOUNTEREN:
    *val = h->scounteren;
    return true;
  case CSR_SENVCFG:
    *val = h->senvcfg;
    return true;
  case CSR_SSCRATCH:
    *val = h->sscratch;
    return true;
  case CSR_SEPC:
    *val = h->sepc;
    return true;
  case CSR_SCAUSE:
    *val = h->scause;
    return true;
  case CSR_STVAL:
    *val = h->stval;
    return true;
  case CSR_SIP:
    *val = rv_read_mip(h) & h->mideleg;
    return true;
  case CSR_STIMECMP:
    if (!rv_stimecmp_allowed(h))
      return false;
    *val = h->stimecmp;
    return true;
  case CSR_SATP:
    if (!rv_satp_allowed(h))
      return false;
    *val = h->satp;
    return true;
  case CSR_MVENDORID:
  case CSR_MARCHID:
  case CSR_MIMPID:
  case CSR_MCONFIGPTR:
    *val = 0;
    return true;
  case CSR_MHARTID:
    *val = h->mhartid;
    return true;
  case CSR_MSTATUS: {
    uint64_t s = h->mstatus;
    if ((s & MSTATUS_FS) == MSTATUS_FS_DIRTY)
      s |= MSTATUS_SD;
    *val = s;
    return true;
  }
  case CSR_MISA:
    *val = h->misa;
    return true;
  case CSR_MEDELEG:
    *val = h->medeleg;
    return true;
  case CSR_MIDELEG:
    *val = rv_mideleg(h);
    return true;
  case CSR_MIE:
    *val = h->mie;
    return true;
  case CSR_MTVEC:
    *val = h->mtvec;
    return true;
  case CSR_MCOUNTEREN:
    *val = h->mcounteren;
    return true;
  case CSR_MENVCFG:
    *val = h->menvcfg;
    return true;
  case CSR_MCOUNTINHIBIT:
    *val = h->mcountinhibit;
    return true;
  case CSR_MSCRATCH:
    *val = h->mscratch;
    return true;
  case CSR_MEPC:
    *val = h->mepc;
    return true;
  case CSR_MCAUSE:
    *val = h->mcause;
    return true;
  case CSR_MTVAL:
    *val = h->mtval;
    return true;
  case CSR_MIP:
    *val = rv_read_mip(h);
    return true;
  case CSR_MTINST:
  case CSR_MTVAL2:
    *val = 0;
    return true;
  case CSR_MCYCLE:
  case CSR_MINSTRET:
    *val = h->minstret;
    return true;
  default:
    break;
  }
  if (csr >= CSR_PMPCFG0 && csr < CSR_PMPCFG0 + 16) {
    if (csr & 1)
      return false; /* odd pmpcfg registers do not exist on RV64 */
    *val = h->pmpcfg[csr - CSR_PMPCFG0];
    return true;
  }
  if (csr >= CSR_PMPADDR0 && csr < CSR_PMPADDR0 + 64) {
    *val = h->pmpaddr[csr - CSR_PMPADDR0];
    return true;
  }
  /* Zihpm: hpmcounter3..31 (user view), mhpmcounter3..31, mhpmevent3..31 read zero. */
  if (csr >= 0xc03 && csr <= 0xc1f) {
    if (!rv_counter_allowed(h, csr & 31))
      return false;
    *val = 0;
    return true;
  }
  if ((csr >= 0xb03 && csr <= 0xb1f) || (csr >= 0x323 && csr <= 0x33f)) {
    *val = 0;
    return true;
  }
  return false;
}

static void rv_write_mstatus(rv_hart *h, uint64_t val) {
  uint64_t old = h->mstatus;
  uint64_t writable = MSTATUS_WRITABLE | (rv_has_h(h) ? MSTATUS_MPV | MSTATUS_GVA : 0);
  uint64_t s = (old & ~writable) | (val & writable);
  /* MPP is WARL: the reserved value 2 keeps the old setting. */
  if (((s & MSTATUS_MPP) >> MSTATUS_MPP_SHIFT) == 2)
    s = (s & ~MSTATUS_MPP) | (old & MSTATUS_MPP);
  h->mstatus = s;
  /* SUM picks a TLB set of its own; MXR changes what loads may read in every set. */
  if ((old ^ s) & MSTATUS_MXR)
    rv_hart_flush_tlb(h);
  else
    rv_update_modes(h);
}

static void rv_write_satp(rv_hart *h, uint64_t val) {
  uint64_t mode = val >> 60;
  if (mode != 0 && mode != 8 && mode != 9 && mode != 10)
    return; /* WARL: unsupported modes leave satp unchanged */
  if (mode == 0)
    val = 0;
  h->satp = val;
  rv_tlb_switch_space(h);
}

static bool rv_csr_write_field(rv_hart *h, unsigned csr, uint64_t val);

/* Whether writing csr can make an interrupt deliverable (enables, pending bits, delegation,
 * the supervisor timer). */
static bool rv_csr_affects_interrupts(unsigned csr) {
  switch (csr) {
  case CSR_SSTATUS:
  case CSR_SIE:
  case CSR_SIP:
  case CSR_STIMECMP:
  case CSR_MSTATUS:
  case CSR_MIE:
  case CSR_MIP:
  case CSR_MIDELEG:
  case 0x204: /* vsie, vsip, vstimecmp, hie, hip, hvip, hideleg */
  case 0x244:
  case 0x24d:
  case 0x604:
  case 0x644:
  case 0x645:
  case 0x603:
  case 0x605: /* htimedelta moves the guest's timer */
    return true;
  default:
    return false;
  }
}

bool rv_csr_write(rv_hart *h, unsigned csr, uint64_t val) {
  if (!rv_csr_accessible(h, csr, true))
    return false;
  bool ok;
  bool handled = false;
  if (rv_has_h(h))
    ok = h->virt ? rv_hyp_vs_csr_write(h, csr, val, &handled)
                 : rv_hyp_csr_write(h, csr, val, &handled);
  if (!handled)
    ok = rv_csr_write_field(h, csr, val);
  /* A write to an interrupt CSR may unmask or raise one (sstatus.SIE in every
   * spin_unlock_irqrestore): the run loop looks again only when one is pending and enabled, not
   * after every CSR write (sscratch at every trap). Translation changes reach the fetch cache
   * through the TLB flush. */
  if (rv_csr_affects_interrupts(csr) && rv_hart_irq_pending(h))
    h->check_irq = true;
  return ok;
}

static bool rv_csr_write_field(rv_hart *h, unsigned csr, uint64_t val) {
  switch (csr) {
  case CSR_FFLAGS:
    if (!rv_fp_csr_allowed(h))
      return false;
    h->fflags = val & 0x1f;
    rv_mark_fs_dirty(h);
    return true;
  case CSR_FRM:
    if (!rv_fp_csr_allowed(h))
      return false;
    h->frm = val & 7;
    rv_mark_fs_dirty(h);
    return true;
  case CSR_FCSR:
    if (!rv_fp_csr_allowed(h))
      return false;
    h->fflags = val & 0x1f;
    h->frm = (val >> 5) & 7;
    rv_mark_fs_dirty(h);
    return true;
  case CSR_SSTATUS:
    rv_write_mstatus(h, (h->mstatus & ~SSTATUS_MASK) | (val & SSTATUS_MASK));
    return true;
  case CSR_SIE:
    h->mie = (h->mie & ~h->mideleg) | (val & h->mideleg);
    return true;
  case CSR_STVEC:
    h->stvec = val & ~2ULL;
    return true;
  case CSR_SCOUNTEREN:
    h->scounteren = val & 0xffffffff;
    return true;
  case CSR_SENVCFG:
    h->senvcfg = val & 1;
    return true; /* FIOM only */
  case CSR_SSCRATCH:
    h->sscratch = val;
    return true;
  case CSR_SEPC:
    h->sepc = val & ~1ULL;
    return true;
  case CSR_SCAUSE:
    h->scause = val;
    return true;
  case CSR_STVAL:
    h->stval = val;
    return true;
  case CSR_SIP: {
    uint64_t m = h->mideleg & RV_MIP_SSIP;
    h->mip = (h->mip & ~m) | (val & m);
    return true;
  }
  case CSR_STIMECMP:
    if (!rv_stimecmp_allowed(h))
      return false;
    h->stimecmp = val;
    return true;
  case CSR_SATP:
    if (!rv_satp_allowed(h))
      return false;
    rv_write_satp(h, val);
    return true;
  case CSR_MSTATUS:
    rv_write_mstatus(h, val);
    return true;
  case CSR_MISA:
    return true; /* WARL, fixed */
  case CSR_MEDELEG:
    h->medeleg = val & (MEDELEG_MASK | (rv_has_h(h) ? MEDELEG_H_MASK : 0));
    return true;
  case CSR_MIDELEG:
    h->mideleg = val & MIP_S_MASK;
    return true;
  case CSR_MIE:
    h->mie = val & (MIP_ALL | (rv_has_h(h) ? RV_MIP_VS_MASK : 0));
    return true;
  case CSR_MTVEC:
    h->mtvec = val & ~2ULL;
    return true;
  case CSR_MCOUNTEREN:
    h->mcounteren = val & 0xffffffff;
    return true;
  case CSR_MENVCFG:
    h->menvcfg = val & (MENVCFG_STCE | 1);
    return true;
  case CSR_MCOUNTINHIBIT:
    h->mcountinhibit = val & 0xfffffffd;
    return true;
  case CSR_MSCRATCH:
    h->mscratch = val;
    return true;
  case CSR_MEPC:
    h->mepc = val & ~1ULL;
    return true;
  case CSR_MCAUSE:
    h->mcause = val;
    return true;
  case CSR_MTVAL:
    h->mtval = val;
    return true;
  case CSR_MIP: {
    /* With Sstc enabled, STIP is driven by stimecmp only. */
    uint64_t m = RV_MIP_SSIP | RV_MIP_SEIP | RV_MIP_STIP;
    if (h->menvcfg & MENVCFG_STCE)
      m &= ~RV_MIP_STIP;
    h->mip = (h->mip & ~m) | (val & m);
    if (rv_has_h(h)) /* mip.VSSIP is hvip.VSSIP */
      h->hvip = (h->hvip & ~RV_MIP_VSSIP) | (val & RV_MIP_VSSIP);
    return true;
  }
  case CSR_MTINST:
  case CSR_MTVAL2:
    return true;
  case CSR_MCYCLE:
  case CSR_MINSTRET:
    h->minstret = val - 1; /* the written value wins over this instruction's own increment */
    return true;
  default:
    break;
  }
  if (csr >= CSR_PMPCFG0 && csr < CSR_PMPCFG0 + 16) {
    if (csr & 1)
      return false;
    uint64_t cur = h->pmpcfg[csr - CSR_PMPCFG0], next = 0;
    for (int i = 0; i < 8; i++) {
      uint64_t b = (cur >> (8 * i)) & 0xff, nb = (val >> (8 * i)) & 0xff;
      if (b & PMP_CFG_LOCK)
        nb = b; /* locked until reset */
      else if ((nb & 3) == 2)
        nb &= ~3ULL; /* R=0 W=1 is reserved */
      next |= (nb & 0x9f) << (8 * i);
    }
    h->pmpcfg[csr - CSR_PMPCFG0] = next;
    rv_hart_flush_tlb(h); /* cached pages carry the old PMP decisions */
    return true;
  }
  if (csr >= CSR_PMPADDR0 && csr < CSR_PMPADDR0 + 64) {
    unsigned i = csr - CSR_PMPADDR0;
    if (rv_pmp_addr_writable(h, i)) {
      h->pmpaddr[i] = val & RV_PMPADDR_MASK;
      rv_hart_flush_tlb(h);
    }
    return true;
  }
  if ((csr >= 0xb03 && csr <= 0xb1f) || (csr >= 0x323 && csr <= 0x33f))
    return true; /* Zihpm counters and events: hard-wired zero */
  return false;
}
