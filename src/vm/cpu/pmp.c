/* Physical memory protection (privileged architecture 1.12, section 3.7): 64 entries, 4-byte
 * granularity, OFF/TOR/NA4/NAPOT address matching, R/W/X and the lock bit.
 *
 * The checks run when a physical access is made on a slow path and when a page is put in the
 * TLB, never on a TLB hit: a page goes into the TLB only when one PMP decision covers all of it,
 * and every pmpcfg/pmpaddr write flushes the TLB. */
#include "vm/cpu/cpu_internal.h"

#define PMP_R 0x01U
#define PMP_W 0x02U
#define PMP_X 0x04U
#define PMP_A_SHIFT 3
#define PMP_L 0x80U

enum { PMP_OFF, PMP_TOR, PMP_NA4, PMP_NAPOT };

static bool pmp_range(const rv_hart *h, unsigned i, unsigned cfg, uint64_t *lo, uint64_t *hi);

/* S and U mode's PMP decision for all of RAM when a single entry makes it (the firmware's usual
 * "everything" entry): PMP_RAM_UNIFORM | the R/W/X bits; 0 when RAM is split between entries. */
static uint8_t pmp_ram_summary(const rv_hart *h) {
  uint64_t ram_lo = h->bus->ram_base, ram_hi = ram_lo + h->bus->ram_size;
  for (unsigned i = 0; i < h->pmp_count; i++) {
    unsigned cfg = rv_pmp_cfg(h, i);
    uint64_t lo, hi;
    if (!pmp_range(h, i, cfg, &lo, &hi) || ram_hi <= lo || ram_lo >= hi)
      continue;
    if (lo <= ram_lo && ram_hi <= hi)
      return (uint8_t)(RV_PMP_RAM_UNIFORM | (cfg & (PMP_R | PMP_W | PMP_X)));
    return 0;
  }
  return RV_PMP_RAM_UNIFORM; /* no entry matches RAM: S and U may not access it */
}

/* Called on every TLB flush: eight pmpcfg registers of eight entries each, not 64 entries. */
void rv_pmp_update(rv_hart *h) {
  h->pmp_count = 0;
  h->pmp_locked = false;
  for (unsigned r = 0; r < RV_PMP_ENTRIES / 8; r++) {
    uint64_t w = h->pmpcfg[(size_t)r * 2];
    if (w & 0x8080808080808080ULL)
      h->pmp_locked = true;
    uint64_t a = w & 0x1818181818181818ULL; /* the A fields */
    if (a)
      h->pmp_count = r * 8 + (unsigned)(63 - __builtin_clzll(a)) / 8 + 1;
  }
  h->pmp_ram_su = pmp_ram_summary(h);
}

bool rv_pmp_addr_writable(const rv_hart *h, unsigned i) {
  if (rv_pmp_cfg(h, i) & PMP_L)
    return false;
  /* A locked TOR entry also locks the address below it, its lower bound. */
  if (i + 1 < RV_PMP_ENTRIES) {
    unsigned next = rv_pmp_cfg(h, i + 1);
    if ((next & PMP_L) && ((next >> PMP_A_SHIFT) & 3) == PMP_TOR)
      return false;
  }
  return true;
}

/* The byte range [*lo, *hi) entry i matches; false when it matches nothing. */
static bool pmp_range(const rv_hart *h, unsigned i, unsigned cfg, uint64_t *lo, uint64_t *hi) {
  uint64_t addr = h->pmpaddr[i];
  switch ((cfg >> PMP_A_SHIFT) & 3) {
  case PMP_TOR:
    *lo = i ? h->pmpaddr[i - 1] << 2 : 0;
    *hi = addr << 2;
    return *lo < *hi;
  case PMP_NA4:
    *lo = addr << 2;
    *hi = *lo + 4;
    return true;
  case PMP_NAPOT: {
    /* k trailing ones encode a naturally aligned region of 2^(k+3) bytes. */
    unsigned k = (unsigned)__builtin_ctzll(~addr);
    uint64_t size = 1ULL << (k + 3);
    *lo = (addr << 2) & ~(size - 1);
    *hi = *lo + size;
    return true;
  }
  default:
    return false;
  }
}

/* The PMP decision for the bytes [pa, pa + size) accessed with effective privilege priv. */
static bool pmp_allows(const rv_hart *h, uint64_t pa, uint64_t size, int access, int priv) {
  static const unsigned need[3] = {[ACC_READ] = PMP_R, [ACC_WRITE] = PMP_W, [ACC_EXEC] = PMP_X};
  if (priv == RV_PRIV_M && !h->pmp_locked)
    return true; /* only locked entries apply to M-mode */
  if (priv != RV_PRIV_M && (h->pmp_ram_su & RV_PMP_RAM_UNIFORM) &&
      rv_ram_contains(h->bus, pa, size)) /* page walks and TLB fills of the kernel */
    return (h->pmp_ram_su & need[access]) != 0;
  uint64_t end = pa + size;
  for (unsigned i = 0; i < h->pmp_count; i++) {
    unsigned cfg = rv_pmp_cfg(h, i);
    uint64_t lo, hi;
    if (!pmp_range(h, i, cfg, &lo, &hi) || end <= lo || pa >= hi)
      continue;
    /* The lowest-numbered entry matching any byte decides, and it must match all of them. */
    if (pa < lo || end > hi)
      return false;
    if (priv == RV_PRIV_M && !(cfg & PMP_L))
      return true;
    return (cfg & need[access]) != 0;
  }
  /* No entry matches: M-mode may access, S and U may not (this hart implements entries). */
  return priv == RV_PRIV_M;
}

bool rv_pmp_check(const rv_hart *h, uint64_t pa, unsigned size, int access, int priv) {
  return pmp_allows(h, pa, size, access, priv);
}

/* Whole-page decisions: a page split between entries (or partly matched) is never cached, so
 * each of its accesses comes back here with its own bytes. */
bool rv_pmp_page_allows(const rv_hart *h, uint64_t ppage, int access, int priv) {
  return pmp_allows(h, ppage, 4096, access, priv);
}
