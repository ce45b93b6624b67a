/* Two-stage address translation of the hypervisor extension: a guest virtual address goes through
 * the VS stage (vsatp: Sv39/Sv48/Sv57, its page tables in guest physical memory) to a guest
 * physical address, and that through the G stage (hgatp: Sv39x4/Sv48x4/Sv57x4) to a host
 * physical one. Every page-table access of the VS stage is itself translated by the G stage.
 *
 * Faults: the VS stage gives the usual page faults (12, 13, 15); the G stage gives guest-page
 * faults (20, 21, 23) of the original access's kind, with the guest physical address >> 2 for
 * htval/mtval2 (h->trap_gpa) and, when the G stage failed on a VS-stage page-table access, the
 * pseudoinstruction of that implicit access for htinst/mtinst (h->trap_tinst). Page-table
 * entries outside RAM or refused by PMP give access faults.
 */
#include "vm/cpu/cpu_internal.h"

/* htinst pseudoinstructions for a G-stage fault on a VS-stage page-table access (RV64). */
#define TINST_PTE_READ 0x3000ULL
#define TINST_PTE_WRITE 0x3020ULL

enum walk_fault { WALK_OK, WALK_PAGE, WALK_GUEST_PAGE, WALK_ACCESS };

static int fault_cause(int access, enum walk_fault f) {
  static const int page[3] = {EXC_LOAD_PAGE, EXC_STORE_PAGE, EXC_INSN_PAGE};
  static const int guest[3] = {EXC_LOAD_GUEST_PAGE, EXC_STORE_GUEST_PAGE, EXC_INSN_GUEST_PAGE};
  static const int acc[3] = {EXC_LOAD_ACCESS, EXC_STORE_ACCESS, EXC_INSN_ACCESS};
  return f == WALK_PAGE ? page[access] : f == WALK_GUEST_PAGE ? guest[access] : acc[access];
}

/* HS-mode's mstatus.MXR and the guest's vsstatus, wherever V has put them. */
static bool hs_mxr(const rv_hart *h) {
  return ((h->virt ? h->vsstatus : h->mstatus) & MSTATUS_MXR) != 0;
}
static uint64_t guest_status(const rv_hart *h) { return h->virt ? h->mstatus : h->vsstatus; }
static uint64_t guest_satp(const rv_hart *h) { return h->virt ? h->satp : h->vsatp; }

/* How a walk treats the leaf it finds. */
typedef struct walk_rules {
  int access;   /* ACC_READ/WRITE/EXEC: the permission needed */
  bool user;    /* a VU access (or the G stage, whose leaves must all be U) */
  bool sum;     /* VS accesses may reach U pages (not for fetches) */
  bool mxr;     /* loads may read executable pages */
  bool g_stage; /* leaves must have U set; no SUM rule */
  bool debug;   /* the debugger's look: no permission checks, no A/D updates */
  bool exec_rd; /* HLVX: a read that needs execute permission */
} walk_rules;

static enum walk_fault check_leaf(uint64_t pte, const walk_rules *w) {
  if (w->debug)
    return WALK_OK;
  if (w->g_stage) {
    if (!(pte & PTE_U))
      return WALK_GUEST_PAGE;
  } else if (w->user) {
    if (!(pte & PTE_U))
      return WALK_PAGE;
  } else if ((pte & PTE_U) && (w->access == ACC_EXEC || !w->sum)) {
    return WALK_PAGE;
  }
  bool ok;
  if (w->access == ACC_EXEC || w->exec_rd)
    ok = pte & PTE_X;
  else if (w->access == ACC_WRITE)
    ok = pte & PTE_W;
  else
    ok = (pte & PTE_R) || (w->mxr && (pte & PTE_X));
  if (!ok)
    return w->g_stage ? WALK_GUEST_PAGE : WALK_PAGE;
  return WALK_OK;
}

/* The host address of the 8-byte page-table entry at physical address pa, or NULL when it is not
 * in RAM or PMP refuses an S-mode access of that kind. */
static uint64_t *pte_host(rv_hart *h, uint64_t pa, int access, bool debug) {
  const rv_bus *bus = h->bus;
  if (!rv_ram_contains(bus, pa, 8))
    return NULL;
  if (!debug && !rv_pmp_check(h, pa, 8, access, RV_PRIV_S))
    return NULL;
  return (uint64_t *)(void *)(bus->ram + (pa - bus->ram_base));
}

/* Set A (and D for writes) in the entry at host/pa atomically, unless it changed since it was
 * read; returns false when it changed (the walk starts again). */
// NOLINTNEXTLINE(readability-non-const-parameter): written by the compare-and-swap
static bool update_ad(rv_hart *h, uint64_t *host, uint64_t pa, uint64_t pte, uint64_t need) {
  uint64_t expected = pte;
  if (!__atomic_compare_exchange_n(host, &expected, pte | need, false, __ATOMIC_SEQ_CST,
                                   __ATOMIC_SEQ_CST))
    return false;
  rv_ram_written_at(h, pa);
  return true;
}

/* One stage's page tables: where the root is, how deep, how wide the root's index is, and the
 * fault a bad entry gives. The VS stage's entries are at guest physical addresses, read through
 * the G stage. */
typedef struct stage {
  uint64_t root;
  int levels;
  uint64_t root_index_mask;
  enum walk_fault fault;
  bool g;
} stage;

static enum walk_fault g_stage(rv_hart *h, uint64_t gpa, const walk_rules *w, uint64_t *pa);

/* An implicit access of a VS-stage walk to the entry at guest physical gpa: its host address,
 * or NULL with *f set (and the guest-page fault's address and pseudoinstruction recorded). */
static uint64_t *vs_pte(rv_hart *h, uint64_t gpa, bool write, bool debug, uint64_t *pa,
                        enum walk_fault *f) {
  walk_rules g = {.access = write ? ACC_WRITE : ACC_READ,
                  .user = true,
                  .g_stage = true,
                  .mxr = false,
                  .debug = debug};
  *f = g_stage(h, gpa, &g, pa);
  if (*f == WALK_GUEST_PAGE) {
    h->trap_gpa = gpa >> 2;
    h->trap_tinst = write ? TINST_PTE_WRITE : TINST_PTE_READ;
  }
  if (*f)
    return NULL;
  uint64_t *host = pte_host(h, *pa, write ? ACC_WRITE : ACC_READ, debug);
  if (!host)
    *f = WALK_ACCESS;
  return host;
}

/* The host address of the entry at `addr` in s's tables (*pa: its physical address). */
static uint64_t *stage_pte(rv_hart *h, const stage *s, uint64_t addr, bool write, bool debug,
                           uint64_t *pa, enum walk_fault *f) {
  if (!s->g)
    return vs_pte(h, addr, write, debug, pa, f);
  *pa = addr;
  uint64_t *host = pte_host(h, addr, write ? ACC_WRITE : ACC_READ, debug);
  if (!host)
    *f = WALK_ACCESS;
  return host;
}

/* Walk s's tables for addr under w's rules: *out is the address it maps to. */
static enum walk_fault walk(rv_hart *h, const stage *s, uint64_t addr, const walk_rules *w,
                            uint64_t *out) {
  uint64_t table = s->root;
  for (int level = s->levels - 1; level >= 0; level--) {
    unsigned shift = 12 + 9 * (unsigned)level;
    uint64_t index_mask = level == s->levels - 1 ? s->root_index_mask : 511;
    uint64_t pte_addr = table + ((addr >> shift) & index_mask) * 8, pte_pa;
    enum walk_fault f = WALK_OK;
    uint64_t *host = stage_pte(h, s, pte_addr, false, w->debug, &pte_pa, &f);
    if (!host)
      return f;
    uint64_t pte = __atomic_load_n(host, __ATOMIC_RELAXED);
    if (!(pte & PTE_V) || (pte & (PTE_R | PTE_W)) == PTE_W || (pte >> 54))
      return s->fault;
    uint64_t ppn = (pte >> 10) & PTE_PPN_MASK;
    if (!(pte & (PTE_R | PTE_X))) {
      if (level == 0 || (pte & (PTE_A | PTE_D | PTE_U)))
        return s->fault;
      table = ppn << 12;
      continue;
    }
    f = check_leaf(pte, w);
    if (f)
      return f;
    if (ppn & ((1ULL << (9 * level)) - 1))
      return s->fault; /* misaligned superpage */
    uint64_t need = PTE_A | (w->access == ACC_WRITE ? PTE_D : 0);
    if (!w->debug && (pte & need) != need) {
      /* a write to the entry (through the G stage for the VS stage's) */
      host = stage_pte(h, s, pte_addr, true, false, &pte_pa, &f);
      if (!host)
        return f;
      if (!update_ad(h, host, pte_pa, pte, need))
        return walk(h, s, addr, w, out);
    }
    uint64_t off_mask = (1ULL << shift) - 1;
    if (level && !s->g && !w->debug) /* the guest's superpage, as 4 KiB entries in the TLB */
      rv_tlb_note_superpage(h, addr & ~off_mask, addr | off_mask);
    *out = ((ppn << 12) & ~off_mask) | (addr & off_mask);
    return WALK_OK;
  }
  return s->fault;
}

static int atp_levels(uint64_t atp) {
  unsigned mode = (unsigned)(atp >> 60);
  return mode == 8 ? 3 : mode == 9 ? 4 : 5;
}

/* The G stage: guest physical gpa to host physical *pa under w's rules. */
static enum walk_fault g_stage(rv_hart *h, uint64_t gpa, const walk_rules *w, uint64_t *pa) {
  if (!(h->hgatp >> 60)) {
    *pa = gpa;
    return WALK_OK;
  }
  /* the root table is four pages: two more address bits */
  stage s = {.root = (h->hgatp & PTE_PPN_MASK) << 12,
             .levels = atp_levels(h->hgatp),
             .root_index_mask = 2047,
             .fault = WALK_GUEST_PAGE,
             .g = true};
  if (gpa >> (12 + 9 * s.levels + 2))
    return WALK_GUEST_PAGE;
  return walk(h, &s, gpa, w, pa);
}

/* The VS stage: guest virtual va to guest physical *gpa. */
static enum walk_fault vs_stage(rv_hart *h, uint64_t va, const walk_rules *w, uint64_t *gpa) {
  uint64_t satp = guest_satp(h);
  if (!(satp >> 60)) {
    *gpa = va;
    return WALK_OK;
  }
  stage s = {.root = (satp & PTE_PPN_MASK) << 12,
             .levels = atp_levels(satp),
             .root_index_mask = 511,
             .fault = WALK_PAGE,
             .g = false};
  int va_bits = 12 + 9 * s.levels;
  if ((uint64_t)((int64_t)(va << (64 - va_bits)) >> (64 - va_bits)) != va)
    return WALK_PAGE;
  return walk(h, &s, va, w, gpa);
}

static walk_rules vs_rules(const rv_hart *h, int access, int set, bool hlvx) {
  uint64_t vs = guest_status(h);
  walk_rules w = {.access = access,
                  .user = set == TLB_VU,
                  .sum = set == TLB_VS_SUM,
                  .mxr = (vs & MSTATUS_MXR) || hs_mxr(h),
                  .exec_rd = hlvx};
  return w;
}

int rv_hyp_translate(rv_hart *h, uint64_t va, int access, int set, bool hlvx, uint64_t *pa) {
  h->trap_gva = true;
  walk_rules w = vs_rules(h, access, set, hlvx);
  uint64_t gpa;
  enum walk_fault f = vs_stage(h, va, &w, &gpa);
  if (f)
    return fault_cause(access, f);
  walk_rules g = {
      .access = access, .user = true, .g_stage = true, .mxr = hs_mxr(h), .exec_rd = hlvx};
  f = g_stage(h, gpa, &g, pa);
  if (f == WALK_GUEST_PAGE) {
    h->trap_gpa = gpa >> 2;
    h->trap_tinst = 0; /* an explicit access: zero is always a valid htinst */
  }
  return f ? fault_cause(access, f) : 0;
}

bool rv_hyp_debug_translate(const rv_hart *h, uint64_t va, uint64_t *pa) {
  /* the walk records fault details in the hart: let it write into a copy of those only */
  rv_hart *m = (rv_hart *)h; // NOLINT: debug walks neither write memory nor change translation
  uint64_t gpa_saved = m->trap_gpa, tinst_saved = m->trap_tinst;
  bool gva_saved = m->trap_gva;
  walk_rules w = {.access = ACC_READ, .debug = true};
  uint64_t gpa = 0;
  bool ok = vs_stage(m, va, &w, &gpa) == WALK_OK;
  walk_rules g = {.access = ACC_READ, .g_stage = true, .debug = true};
  ok = ok && g_stage(m, gpa, &g, pa) == WALK_OK;
  m->trap_gpa = gpa_saved;
  m->trap_tinst = tinst_saved;
  m->trap_gva = gva_saved;
  return ok;
}
