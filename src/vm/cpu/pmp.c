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

void rv_pmp_update(rv_hart *h) {
  h->pmp_count = 0;
  h->pmp_locked = false;
  for (unsigned i = 0; i < RV_PMP_ENTRIES; i++) {
    unsigned cfg = rv_pmp_cfg(h, i);
    if ((cfg >> PMP_A_SHIFT) & 3)
      h->pmp_count = i + 1;
    if (cfg & PMP_L)
      h->pmp_locked = true;
  }
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
  if (priv == RV_PRIV_M && !h->pmp_locked)
    return true; /* only locked entries apply to M-mode */
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
    static const unsigned need[3] = {[ACC_READ] = PMP_R, [ACC_WRITE] = PMP_W, [ACC_EXEC] = PMP_X};
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
