/* Address translation (Sv39/Sv48/Sv57), the TLB, and the slow paths of memory accesses. */
#include "vm/cpu/cpu_internal.h"

/* The hart writes RAM at pa (or maps its page for writing): live migration's dirty-page bitmap
 * (rv_bus.dirty_pages) marks it, and decoded code of the page is dropped. If there was some, the
 * hart leaves its block after this instruction, so code the store changed is decoded afresh. */
static inline void rv_ram_written(rv_hart *h, uint64_t pa) {
  const rv_bus *bus = h->bus;
  uint64_t pg = (pa - bus->ram_base) >> 12;
  if (unlikely(bus->dirty_pages != NULL))
    __atomic_or_fetch(&bus->dirty_pages[pg / 64], 1ULL << (pg % 64), __ATOMIC_RELAXED);
  if (unlikely(__atomic_load_n(&bus->code_pages[pg], __ATOMIC_RELAXED) & 1)) {
    rv_code_page_written(bus->code_pages, pg);
    h->check_irq = true;
  }
}

static int rv_fault_cause(int access, bool page) {
  static const int page_cause[3] = {EXC_LOAD_PAGE, EXC_STORE_PAGE, EXC_INSN_PAGE};
  static const int access_cause[3] = {EXC_LOAD_ACCESS, EXC_STORE_ACCESS, EXC_INSN_ACCESS};
  return page ? page_cause[access] : access_cause[access];
}

void rv_ram_written_at(rv_hart *h, uint64_t pa) { rv_ram_written(h, pa); }

/* The privilege PMP checks an access of TLB set `set` with (S and U are alike for PMP). */
static int rv_set_priv(int set) {
  if (set == TLB_M)
    return RV_PRIV_M;
  return set == TLB_U || set == TLB_VU ? RV_PRIV_U : RV_PRIV_S;
}

/* ---------------------------------------------------------------- TLB tags and flushes
 *
 * Each entry carries the tag of the address space (satp value) it was filled under. A satp write
 * switches to the tag the new value had before (rv_tlb_spaces remembers the last few), so Linux's
 * context switches between processes with their own ASIDs keep both processes' entries. SFENCE.VMA
 * of one page clears only the entries that can map that page (one slot per set and access type),
 * unless a superpage might cover it: the TLB holds superpages as 4 KiB entries, so then the whole
 * address space goes. Tags are handed out in order and never reused until the 12-bit counter
 * wraps around; then the table, the spaces and the jump cache are cleared. Cleared entries get vpn
 * 0: a live tag is never 0, so no address matches them.
 *
 * Global mappings (a G bit on the walk's path) exist in every address space: Linux maps the kernel
 * so. An entry filled from one is marked with the global tag (tlb_global); a miss in another
 * address space that finds va's page there under an older tag takes the entry over without a
 * walk, and the jump cache keeps blocks of global pages under the global tag, which every address
 * space matches (jit.c), so kernel code is not looked up again after each context switch. Fences
 * without an ASID and full flushes renew the global tag; those of one ASID leave global mappings
 * alone, as the privileged specification allows. A change of satp's MODE renews it too (bare
 * satp has no global mappings). */

#define TLB_TAG_STEP (1ULL << 52)
#define TLB_VPN_MASK (TLB_TAG_STEP - 1)

static void rv_tlb_clear_supers(rv_hart *h) {
  for (int half = 0; half < 2; half++) {
    h->tlb_super[half][0] = UINT64_MAX;
    h->tlb_super[half][1] = 0;
  }
}

/* The superpage [first, last] was translated (it may enter the TLB as 4 KiB entries). */
void rv_tlb_note_superpage(rv_hart *h, uint64_t first, uint64_t last) {
  uint64_t *range = h->tlb_super[first >> 63];
  if (first < range[0])
    range[0] = first;
  if (last > range[1])
    range[1] = last;
}

static bool rv_tlb_maybe_superpage(const rv_hart *h, uint64_t va) {
  const uint64_t *range = h->tlb_super[va >> 63];
  return va >= range[0] && va <= range[1];
}

static uint64_t rv_tlb_new_tag(rv_hart *h) {
  h->tlb_gen += TLB_TAG_STEP;
  if (h->tlb_gen == 0) {
    for (int s = 0; s < RV_TLB_SETS; s++)
      for (int a = 0; a < 3; a++)
        for (int i = 0; i < RV_TLB_SIZE; i++)
          h->tlb[s][a][i].vpn = 0;
    memset(h->tlb_spaces, 0, sizeof(h->tlb_spaces));
    if (h->icache && h->icache->jit)
      rv_jit_forget_all(h->icache->jit); /* it is keyed by tags as well */
    /* the global tag is from before the wrap: take the first new one (never 0) */
    h->tlb_gtag = TLB_TAG_STEP;
    h->tlb_gen = 2 * TLB_TAG_STEP;
  }
  return h->tlb_gen;
}

/* Global mappings are forgotten: entries and jump-cache entries marked with the old global tag
 * no longer count as global. */
static void rv_tlb_renew_global(rv_hart *h) {
  h->tlb_gtag = rv_tlb_new_tag(h);
  h->tlb_gmode = h->satp >> 60;
}

/* The entry of va in TLB set `set` (access type `access`) holds va's page from a global mapping
 * under another address space's tag: it becomes the current space's (no walk). */
bool rv_tlb_take_global(rv_hart *h, int set, int access, uint64_t va) {
  if (set >= RV_TLB_GLOBAL_SETS || set == TLB_M)
    return false;
  unsigned i = rv_tlb_index(va);
  rv_tlb_entry *e = &h->tlb[set][access][i];
  uint16_t global = (uint16_t)(h->tlb_gtag >> 52); /* 0 until the first flush: none yet */
  /* a cleared entry (vpn 0) has no tag and is never taken over */
  if (!global || h->tlb_global[set][access][i] != global || (e->vpn & TLB_VPN_MASK) != va >> 12 ||
      !(e->vpn & ~TLB_VPN_MASK))
    return false;
  e->vpn = (va >> 12) | h->tlb_tag;
  return true;
}

uint64_t rv_tlb_jump_tag(const rv_hart *h, uint64_t pc) {
  int set = h->fetch_tlb;
  unsigned i = rv_tlb_index(pc);
  uint16_t global = (uint16_t)(h->tlb_gtag >> 52);
  if (global && set < RV_TLB_GLOBAL_SETS && set != TLB_M &&
      h->tlb_global[set][ACC_EXEC][i] == global &&
      h->tlb[set][ACC_EXEC][i].vpn == ((pc >> 12) | h->tlb_tag))
    return h->tlb_gtag | (uint64_t)set;
  return h->tlb_tag | (uint64_t)set;
}

static struct rv_tlb_space *rv_tlb_space_of(rv_hart *h, uint64_t satp) {
  uint64_t asid = (satp >> 44) & 0xffff;
  return &h->tlb_spaces[(asid ^ satp) % RV_TLB_SPACES];
}

static uint64_t rv_satp_asid(uint64_t satp) { return (satp >> 44) & 0xffff; }

/* The current satp gets a fresh tag: its old entries are gone. */
static void rv_tlb_renew_space(rv_hart *h) {
  uint64_t tag = rv_tlb_new_tag(h);
  struct rv_tlb_space *sp = rv_tlb_space_of(h, h->satp);
  sp->satp = h->satp;
  sp->tag = tag;
  h->tlb_tag = tag;
}

void rv_tlb_flush_all(rv_hart *h) {
  memset(h->tlb_spaces, 0, sizeof(h->tlb_spaces));
  rv_tlb_clear_supers(h);
  rv_tlb_renew_global(h);
  rv_tlb_renew_space(h);
  /* the tags of the jump cache's entries are all dead now (a one-page fence of a page it has
   * entries of scanned 2048 of them: 3% of a boot, 2026-12-07) */
  if (h->icache && h->icache->jit)
    rv_jit_forget_tags(h->icache->jit);
}

void rv_tlb_switch_space(rv_hart *h) {
  /* with V=1 satp holds the guest's vsatp, whose translations use other sets */
  if (!h->virt && h->satp >> 60 != h->tlb_gmode)
    rv_tlb_renew_global(h);
  const struct rv_tlb_space *sp = rv_tlb_space_of(h, h->satp);
  if (sp->tag && sp->satp == h->satp)
    h->tlb_tag = sp->tag;
  else
    rv_tlb_renew_space(h);
  rv_update_modes(h);
}

/* Every entry of address space asid goes; global mappings stay (rv_tlb_take_global). */
static void rv_tlb_flush_asid(rv_hart *h, uint64_t asid) {
  for (unsigned i = 0; i < RV_TLB_SPACES; i++)
    if (rv_satp_asid(h->tlb_spaces[i].satp) == asid)
      h->tlb_spaces[i].tag = 0;
  if (rv_satp_asid(h->satp) == asid)
    rv_tlb_renew_space(h);
  rv_update_modes(h);
}

void rv_tlb_sfence(rv_hart *h, uint64_t va, bool by_va, uint64_t asid, bool by_asid) {
  asid &= 0xffff;
  if (!by_va || rv_tlb_maybe_superpage(h, va)) {
    if (by_asid)
      rv_tlb_flush_asid(h, asid);
    else
      rv_hart_flush_tlb(h);
    return;
  }
  /* The slots that can hold va's page, in every set: entries of other address spaces there go
   * too, which is only more than asked (global ones as well, and the jump cache forgets the
   * page under every tag). */
  unsigned i = rv_tlb_index(va);
  for (int s = 0; s < RV_TLB_SETS; s++)
    for (int a = 0; a < 3; a++)
      h->tlb[s][a][i].vpn = 0;
  h->fetch_vpn = UINT64_MAX;
  if (h->icache && h->icache->jit)
    rv_jit_forget_page(h->icache->jit, va);
}

int rv_translate(rv_hart *h, uint64_t va, int access, int set, uint64_t *pa) {
  if (set >= TLB_VU) /* V=1: two stages (hyp_mmu.c) */
    return rv_hyp_translate(h, va, access, set, false, pa);
  h->trap_gva = false;
  h->walk_global = false;
  if (set == TLB_M || !(h->satp >> 60)) {
    *pa = va;
    return 0;
  }
  unsigned mode = h->satp >> 60;
  int levels = mode == 8 ? 3 : mode == 9 ? 4 : 5;
  int va_bits = 12 + 9 * levels;
  if ((uint64_t)((int64_t)(va << (64 - va_bits)) >> (64 - va_bits)) != va)
    return rv_fault_cause(access, true);
  uint64_t table = (h->satp & PTE_PPN_MASK) << 12;
  const rv_bus *bus = h->bus;
  bool global = false;
  for (int level = levels - 1; level >= 0; level--) {
    uint64_t pte_addr = table + ((va >> (12 + 9 * level)) & 511) * 8;
    /* Page-table accesses are S-mode accesses for PMP; failing ones are access faults. */
    if (!rv_ram_contains(bus, pte_addr, 8) || !rv_pmp_check(h, pte_addr, 8, ACC_READ, RV_PRIV_S))
      return rv_fault_cause(access, false);
    uint64_t *pte_host = (uint64_t *)(bus->ram + (pte_addr - bus->ram_base));
    uint64_t pte = __atomic_load_n(pte_host, __ATOMIC_RELAXED);
    if (!(pte & PTE_V) || ((pte & (PTE_R | PTE_W)) == PTE_W) || (pte >> 54))
      return rv_fault_cause(access, true);
    uint64_t ppn = (pte >> 10) & PTE_PPN_MASK;
    global |= (pte & PTE_G) != 0; /* a global table makes everything below it global */
    if (!(pte & (PTE_R | PTE_X))) {
      if (level == 0 || (pte & (PTE_A | PTE_D | PTE_U)))
        return rv_fault_cause(access, true);
      table = ppn << 12;
      continue;
    }
    /* Leaf: privilege and permission checks. */
    if (set == TLB_U) {
      if (!(pte & PTE_U))
        return rv_fault_cause(access, true);
    } else if (pte & PTE_U) {
      /* S-mode reaches user pages only through the SUM set (data accesses while SUM is set) */
      if (access == ACC_EXEC || set != TLB_S_SUM)
        return rv_fault_cause(access, true);
    }
    bool ok;
    if (access == ACC_EXEC)
      ok = pte & PTE_X;
    else if (access == ACC_WRITE)
      ok = pte & PTE_W;
    else
      ok = (pte & PTE_R) || ((h->mstatus & MSTATUS_MXR) && (pte & PTE_X));
    if (!ok)
      return rv_fault_cause(access, true);
    uint64_t span_mask = (1ULL << (9 * level)) - 1;
    if (ppn & span_mask)
      return rv_fault_cause(access, true); /* misaligned superpage */
    uint64_t need = PTE_A | (access == ACC_WRITE ? PTE_D : 0);
    if ((pte & need) != need) {
      /* Hardware A/D update: atomically, and only if the PTE did not change meanwhile. */
      if (!rv_pmp_check(h, pte_addr, 8, ACC_WRITE, RV_PRIV_S))
        return rv_fault_cause(access, false);
      uint64_t expected = pte;
      if (!__atomic_compare_exchange_n(pte_host, &expected, pte | need, false, __ATOMIC_SEQ_CST,
                                       __ATOMIC_SEQ_CST))
        return rv_translate(h, va, access, set, pa);
      rv_ram_written(h, pte_addr);
    }
    uint64_t off_mask = (1ULL << (12 + 9 * level)) - 1;
    *pa = ((ppn << 12) & ~off_mask) | (va & off_mask);
    if (level > 0)
      rv_tlb_note_superpage(h, va & ~off_mask, va | off_mask);
    h->walk_global = global;
    return 0;
  }
  return rv_fault_cause(access, true);
}

bool rv_hart_debug_translate(const rv_hart *h, uint64_t va, uint64_t *pa) {
  if (h->virt)
    return rv_hyp_debug_translate(h, va, pa);
  unsigned mode = h->satp >> 60;
  if (h->priv == RV_PRIV_M || mode == 0) {
    *pa = va;
    return true;
  }
  int levels = mode == 8 ? 3 : mode == 9 ? 4 : 5;
  int va_bits = 12 + 9 * levels;
  if ((uint64_t)((int64_t)(va << (64 - va_bits)) >> (64 - va_bits)) != va)
    return false;
  uint64_t table = (h->satp & PTE_PPN_MASK) << 12;
  const rv_bus *bus = h->bus;
  for (int level = levels - 1; level >= 0; level--) {
    uint64_t pte_addr = table + ((va >> (12 + 9 * level)) & 511) * 8;
    if (!rv_ram_contains(bus, pte_addr, 8))
      return false;
    const uint64_t *pte_host = (const uint64_t *)(bus->ram + (pte_addr - bus->ram_base));
    uint64_t pte = __atomic_load_n(pte_host, __ATOMIC_RELAXED);
    if (!(pte & PTE_V) || ((pte & (PTE_R | PTE_W)) == PTE_W) || (pte >> 54))
      return false;
    uint64_t ppn = (pte >> 10) & PTE_PPN_MASK;
    if (!(pte & (PTE_R | PTE_X))) {
      table = ppn << 12;
      continue;
    }
    if (ppn & ((1ULL << (9 * level)) - 1))
      return false; /* misaligned superpage */
    uint64_t off_mask = (1ULL << (12 + 9 * level)) - 1;
    *pa = ((ppn << 12) & ~off_mask) | (va & off_mask);
    return true;
  }
  return false;
}

/* ---------------------------------------------------------------- debugger watchpoints */

static bool rv_ranges_overlap(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen) {
  /* inclusive last bytes: neither range wraps around the address space */
  return a <= b + (blen - 1) && b <= a + (alen - 1);
}

int rv_watch_find(const rv_breakpoints *bp, uint64_t va, uint64_t pa, uint64_t size,
                  unsigned access) {
  unsigned n = __atomic_load_n(&bp->nwatch, __ATOMIC_ACQUIRE);
  if (size == 0)
    return -1;
  bool va_ok = va + (size - 1) >= va, pa_ok = pa + (size - 1) >= pa; /* not wrapping around */
  for (unsigned i = 0; i < n && i < RV_MAX_WATCHPOINTS; i++) {
    const rv_watchpoint *w = &bp->watch[i];
    uint64_t a = w->phys ? pa : va;
    if ((w->kind & access) && (w->phys ? pa_ok : va_ok) &&
        rv_ranges_overlap(a, size, w->addr, w->len))
      return (int)i;
  }
  return -1;
}

bool rv_watch_covers_page(const rv_breakpoints *bp, uint64_t va, uint64_t pa) {
  return rv_watch_find(bp, va & ~0xfffULL, pa & ~0xfffULL, 4096, RV_WATCH_ACCESS) >= 0;
}

/* The watchpoints in force, or NULL (no debugger, or none set: the common case). */
static inline const rv_breakpoints *rv_watching(const rv_hart *h) {
  const rv_breakpoints *bp = h->bus->breakpoints;
  if (likely(!bp || !__atomic_load_n(&bp->nwatch, __ATOMIC_RELAXED)))
    return NULL;
  return bp;
}

/* A data access of the current instruction reached memory: if it triggers a watchpoint, the
 * hart leaves its block after this instruction and rv_hart_run returns (the first hit of an
 * instruction is the one reported). */
static __attribute__((noinline, cold)) void rv_watch_hit(rv_hart *h, const rv_breakpoints *bp,
                                                         uint64_t va, uint64_t pa, unsigned size,
                                                         unsigned access) {
  if (h->breakpoint_hit)
    return;
  int i = rv_watch_find(bp, va, pa, size, access);
  if (i < 0)
    return;
  h->watch_hit = bp->watch[i].kind;
  h->watch_addr = bp->watch[i].addr;
  h->check_irq = true;
  __atomic_store_n(&h->breakpoint_hit, true, __ATOMIC_RELEASE);
}

static inline void rv_watch_access(rv_hart *h, uint64_t va, uint64_t pa, unsigned size,
                                   unsigned access) {
  const rv_breakpoints *bp = rv_watching(h);
  if (unlikely(bp))
    rv_watch_hit(h, bp, va, pa, size, access);
}

void rv_watch_data_access(rv_hart *h, uint64_t va, uint64_t pa, unsigned size, unsigned access) {
  rv_watch_access(h, va, pa, size, access);
}

/* Map va's page to host RAM in the TLB when the whole physical page is RAM and one PMP decision
 * allows the access on all of it; returns whether it did. */
static bool rv_tlb_fill(rv_hart *h, int set, int access, uint64_t va, uint64_t pa) {
  const rv_bus *bus = h->bus;
  uint64_t ppage = pa & ~0xfffULL;
  if (!rv_ram_contains(bus, ppage, 4096) || !rv_pmp_page_allows(h, ppage, access, rv_set_priv(set)))
    return false;
  /* M-mode's MPRV accesses with MPV translate through vsatp under HS-mode's address space tag:
   * kept out of the V=1 sets, whose entries carry the tags of the guest's satp values */
  if (set >= TLB_VU && !h->virt)
    return false;
  /* a watched page's data accesses all come to the slow path, which checks them */
  const rv_breakpoints *bp = rv_watching(h);
  if (unlikely(bp) && access != ACC_EXEC && rv_watch_covers_page(bp, va, pa))
    return false;
  if (access == ACC_WRITE)
    rv_ram_written(h, ppage);
  unsigned i = rv_tlb_index(va);
  rv_tlb_entry *e = &h->tlb[set][access][i];
  e->vpn = (va >> 12) | h->tlb_tag;
  e->addend = (uintptr_t)(bus->ram + (ppage - bus->ram_base)) - (va & ~0xfffULL);
  /* walk_global is from the walk that translated va (M translates nothing) */
  if (set < RV_TLB_GLOBAL_SETS)
    h->tlb_global[set][access][i] =
        set != TLB_M && h->walk_global ? (uint16_t)(h->tlb_gtag >> 52) : 0;
  return true;
}

/* Translate va and check PMP for the access: 0 and *pa, or the exception cause. */
static int rv_translate_checked(rv_hart *h, uint64_t va, unsigned size, int access, int set,
                                uint64_t *pa) {
  int cause = rv_translate(h, va, access, set, pa);
  if (cause)
    return cause;
  if (!rv_pmp_check(h, *pa, size, access, rv_set_priv(set)))
    return rv_fault_cause(access, false);
  return 0;
}

static bool rv_load_bytewise(rv_hart *h, uint64_t va, unsigned size, uint64_t *out) {
  uint64_t v = 0;
  for (unsigned i = 0; i < size; i++) {
    uint64_t b;
    if (!rv_load(h, va + i, 1, &b))
      return false;
    v |= b << (8 * i);
  }
  *out = v;
  return true;
}

bool rv_load_slow(rv_hart *h, uint64_t va, unsigned size, uint64_t *out) {
  if ((va & 0xfff) + size > 4096)
    return rv_load_bytewise(h, va, size, out);
  if (rv_tlb_take_global(h, h->ld_tlb, ACC_READ, va))
    return rv_load(h, va, size, out);
  uint64_t pa;
  int cause = rv_translate_checked(h, va, size, ACC_READ, h->ld_tlb, &pa);
  if (cause) {
    rv_raise(h, cause, va);
    return false;
  }
  const rv_bus *bus = h->bus;
  if (rv_ram_contains(bus, pa, size)) {
    rv_tlb_fill(h, h->ld_tlb, ACC_READ, va, pa);
    const uint8_t *p = bus->ram + (pa - bus->ram_base);
    switch (size) {
    case 1:
      *out = *p;
      break;
    case 2: {
      uint16_t v;
      memcpy(&v, p, 2);
      *out = v;
      break;
    }
    case 4: {
      uint32_t v;
      memcpy(&v, p, 4);
      *out = v;
      break;
    }
    default: {
      uint64_t v;
      memcpy(&v, p, 8);
      *out = v;
      break;
    }
    }
    rv_watch_access(h, va, pa, size, RV_WATCH_READ);
    return true;
  }
  if (va & (size - 1)) {
    rv_raise(h, EXC_LOAD_MISALIGNED, va);
    return false;
  }
  uint64_t v = 0;
  if (!bus->mmio_read || !bus->mmio_read(bus->opaque, pa, size, &v)) {
    rv_raise(h, EXC_LOAD_ACCESS, va);
    return false;
  }
  if (size < 8)
    v &= (1ULL << (8 * size)) - 1;
  *out = v;
  rv_watch_access(h, va, pa, size, RV_WATCH_READ);
  return true;
}

static bool rv_store_bytewise(rv_hart *h, uint64_t va, unsigned size, uint64_t val) {
  /* Check every byte first so a fault leaves memory unchanged. */
  for (unsigned i = 0; i < size; i++) {
    uint64_t pa;
    int cause = rv_translate_checked(h, va + i, 1, ACC_WRITE, h->st_tlb, &pa);
    if (cause) {
      rv_raise(h, cause, va + i);
      return false;
    }
  }
  for (unsigned i = 0; i < size; i++)
    if (!rv_store(h, va + i, 1, (val >> (8 * i)) & 0xff))
      return false;
  return true;
}

bool rv_store_slow(rv_hart *h, uint64_t va, unsigned size, uint64_t val) {
  if ((va & 0xfff) + size > 4096)
    return rv_store_bytewise(h, va, size, val);
  if (rv_tlb_take_global(h, h->st_tlb, ACC_WRITE, va))
    return rv_store(h, va, size, val);
  uint64_t pa;
  int cause = rv_translate_checked(h, va, size, ACC_WRITE, h->st_tlb, &pa);
  if (cause) {
    rv_raise(h, cause, va);
    return false;
  }
  const rv_bus *bus = h->bus;
  if (rv_ram_contains(bus, pa, size)) {
    rv_tlb_fill(h, h->st_tlb, ACC_WRITE, va, pa);
    rv_ram_written(h, pa); /* also when PMP kept the page out of the TLB */
    uint8_t *p = bus->ram + (pa - bus->ram_base);
    switch (size) {
    case 1:
      *p = (uint8_t)val;
      break;
    case 2: {
      uint16_t v = (uint16_t)val;
      memcpy(p, &v, 2);
      break;
    }
    case 4: {
      uint32_t v = (uint32_t)val;
      memcpy(p, &v, 4);
      break;
    }
    default:
      memcpy(p, &val, 8);
      break;
    }
    rv_watch_access(h, va, pa, size, RV_WATCH_WRITE);
    return true;
  }
  if (va & (size - 1)) {
    rv_raise(h, EXC_STORE_MISALIGNED, va);
    return false;
  }
  if (!bus->mmio_write || !bus->mmio_write(bus->opaque, pa, size, val)) {
    rv_raise(h, EXC_STORE_ACCESS, va);
    return false;
  }
  rv_watch_access(h, va, pa, size, RV_WATCH_WRITE);
  return true;
}

void *rv_atomic_ptr(rv_hart *h, uint64_t va, unsigned size, int access, uint64_t *pa) {
  if (va & (size - 1)) {
    rv_raise(h, access == ACC_READ ? EXC_LOAD_MISALIGNED : EXC_STORE_MISALIGNED, va);
    return NULL;
  }
  int set = access == ACC_READ ? h->ld_tlb : h->st_tlb;
  const rv_bus *bus = h->bus;
  /* the TLB as loads and stores use it (an aligned access stays in its page): without this every
   * LR, SC and AMO walked the page table, half the walks of a boot */
  const rv_tlb_entry *e = &h->tlb[set][access][rv_tlb_index(va)];
  if (e->vpn == ((va >> 12) | h->tlb_tag) || rv_tlb_take_global(h, set, access, va)) {
    uint8_t *host = (uint8_t *)(uintptr_t)(va + e->addend); // NOLINT(performance-no-int-to-ptr)
    *pa = bus->ram_base + (uint64_t)(host - bus->ram);
    return host;
  }
  int cause = rv_translate_checked(h, va, size, access, set, pa);
  if (cause) {
    rv_raise(h, cause, va);
    return NULL;
  }
  if (!rv_ram_contains(bus, *pa, size)) {
    rv_raise(h, access == ACC_READ ? EXC_LOAD_ACCESS : EXC_STORE_ACCESS, va);
    return NULL;
  }
  rv_tlb_fill(h, set, access, va, *pa);
  if (access == ACC_WRITE)
    rv_ram_written(h, *pa); /* also when PMP kept the page out of the TLB */
  /* LR reads; SC and the AMOs are taken as reading and writing (a failing SC writes nothing,
   * and gdb's write watchpoint then sees an unchanged value and goes on) */
  rv_watch_access(h, va, *pa, size, access == ACC_READ ? RV_WATCH_READ : RV_WATCH_ACCESS);
  return bus->ram + (*pa - bus->ram_base);
}

bool rv_fetch_fill(rv_hart *h, uint64_t pc) {
  int set = h->fetch_tlb;
  uint64_t pa = 0;
  if (rv_translate_checked(h, pc, 2, ACC_EXEC, set, &pa) != 0 ||
      !rv_ram_contains(h->bus, pa & ~0xfffULL, 4096))
    return false;
  return rv_tlb_fill(h, set, ACC_EXEC, pc, pa);
}

uint8_t *rv_fetch_slow(rv_hart *h, uint64_t pc) {
  int set = h->fetch_tlb;
  rv_tlb_entry *e = &h->tlb[set][ACC_EXEC][rv_tlb_index(pc)];
  if (e->vpn == ((pc >> 12) | h->tlb_tag) || rv_tlb_take_global(h, set, ACC_EXEC, pc)) {
    h->fetch_vpn = pc >> 12;
    h->fetch_addend = e->addend;
    return (uint8_t *)(uintptr_t)(pc + e->addend); // NOLINT(performance-no-int-to-ptr)
  }
  uint64_t pa = 0;
  int cause = rv_translate_checked(h, pc, 2, ACC_EXEC, set, &pa);
  if (cause) {
    rv_raise(h, cause, pc);
    return NULL;
  }
  /* Instructions execute from RAM only; anything else (device memory) is an access fault. */
  const rv_bus *bus = h->bus;
  if (!rv_ram_contains(bus, pa & ~0xfffULL, 4096)) {
    rv_raise(h, EXC_INSN_ACCESS, pc);
    return NULL;
  }
  uint8_t *host = bus->ram + (pa - bus->ram_base);
  if (rv_tlb_fill(h, set, ACC_EXEC, pc, pa)) {
    h->fetch_vpn = pc >> 12;
    h->fetch_addend = e->addend;
    return host;
  }
  /* A page PMP splits: every fetch from it comes back here, and the second half of a 32-bit
   * instruction is checked on its own. */
  h->fetch_vpn = UINT64_MAX;
  if ((host[0] & 3) == 3 && (pc & 0xfff) <= 0xffc &&
      !rv_pmp_check(h, pa + 2, 2, ACC_EXEC, rv_set_priv(set))) {
    rv_raise(h, EXC_INSN_ACCESS, pc + 2);
    return NULL;
  }
  return host;
}
