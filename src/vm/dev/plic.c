/* PLIC (sifive,plic-1.0.0): level-triggered sources, per-source priority, per-context enable,
 * threshold and claim/complete. Context 2h is hart h's M-mode, context 2h+1 its S-mode.
 *
 * Register map (offsets from the base):
 *   0x000000 + 4*src          priority
 *   0x001000                  pending bits (read-only)
 *   0x002000 + 0x80*ctx       enable bits
 *   0x200000 + 0x1000*ctx     threshold (+0), claim/complete (+4)
 */
#include <string.h>

#include "vm/dev/dev.h"

#define PLIC_PENDING 0x1000u
#define PLIC_ENABLE 0x2000u
#define PLIC_ENABLE_STRIDE 0x80u
#define PLIC_CONTEXT 0x200000u
#define PLIC_CONTEXT_STRIDE 0x1000u
#define PLIC_PRIORITY_MASK 7u
#define PLIC_VALID_SOURCES (~1ull) /* source 0 is reserved */

/* Highest-priority pending, enabled source above the context's threshold; 0 if none. */
static unsigned plic_best_source(const plic_state *p, unsigned ctx) {
  uint64_t candidates = p->pending & ~p->claimed & p->enable[ctx];
  unsigned best = 0;
  uint32_t best_prio = p->threshold[ctx];
  while (candidates) {
    unsigned src = (unsigned)__builtin_ctzll(candidates);
    candidates &= candidates - 1;
    if (p->priority[src] > best_prio) {
      best = src;
      best_prio = p->priority[src];
    }
  }
  return best;
}

static void plic_update(plic_state *p) {
  for (unsigned ctx = 0; ctx < p->num_contexts; ctx++) {
    bool level = plic_best_source(p, ctx) != 0;
    uint64_t bit = (ctx & 1) ? DEV_MIP_SEIP : DEV_MIP_MEIP;
    p->out.set(p->out.machine, ctx / 2, bit, level);
  }
}

void plic_init(plic_state *p, unsigned num_harts, dev_hart_irq out) {
  memset(p, 0, sizeof(*p));
  p->num_contexts = 2 * (num_harts > VM_MAX_HARTS ? VM_MAX_HARTS : num_harts);
  p->out = out;
}

void plic_set_irq(void *dev, unsigned irq, bool level) {
  plic_state *p = dev;
  if (irq == 0 || irq >= PLIC_NUM_SOURCES)
    return;
  uint64_t bit = 1ULL << irq;
  bool was = (p->level & bit) != 0;
  if (was == level)
    return;
  if (level) {
    p->level |= bit;
    p->pending |= bit; /* the gateway forwards a request only while not in service */
  } else {
    p->level &= ~bit;
    p->pending &= ~bit;
  }
  plic_update(p);
}

static uint32_t plic_claim(plic_state *p, unsigned ctx) {
  unsigned src = plic_best_source(p, ctx);
  if (src) {
    p->pending &= ~(1ULL << src);
    p->claimed |= 1ULL << src;
    plic_update(p);
  }
  return src;
}

static void plic_complete(plic_state *p, unsigned ctx, uint32_t src) {
  if (src == 0 || src >= PLIC_NUM_SOURCES || !(p->enable[ctx] & (1ULL << src)))
    return; /* the spec ignores completions for sources not enabled in this context */
  p->claimed &= ~(1ULL << src);
  if (p->level & (1ULL << src))
    p->pending |= 1ULL << src; /* still asserted: a new request */
  plic_update(p);
}

/* Registers are 32-bit; 64-bit accesses are split into two words. */
static bool plic_read32(plic_state *p, uint64_t off, uint32_t *val) {
  if (off < PLIC_PENDING) {
    unsigned src = (unsigned)(off / 4);
    *val = src < PLIC_NUM_SOURCES ? p->priority[src] : 0;
    return true;
  }
  if (off < PLIC_ENABLE) {
    uint64_t word = (off - PLIC_PENDING) / 4;
    *val = word < PLIC_NUM_SOURCES / 32 ? (uint32_t)(p->pending >> (32 * word)) : 0;
    return true;
  }
  if (off < PLIC_CONTEXT) {
    uint64_t ctx = (off - PLIC_ENABLE) / PLIC_ENABLE_STRIDE;
    uint64_t word = ((off - PLIC_ENABLE) % PLIC_ENABLE_STRIDE) / 4;
    if (ctx >= p->num_contexts)
      return false;
    *val = word < PLIC_NUM_SOURCES / 32 ? (uint32_t)(p->enable[ctx] >> (32 * word)) : 0;
    return true;
  }
  uint64_t ctx = (off - PLIC_CONTEXT) / PLIC_CONTEXT_STRIDE;
  uint64_t reg = (off - PLIC_CONTEXT) % PLIC_CONTEXT_STRIDE;
  if (ctx >= p->num_contexts)
    return false;
  if (reg == 0)
    *val = p->threshold[ctx];
  else if (reg == 4)
    *val = plic_claim(p, (unsigned)ctx);
  else
    *val = 0;
  return true;
}

static bool plic_write32(plic_state *p, uint64_t off, uint32_t val) {
  if (off < PLIC_PENDING) {
    unsigned src = (unsigned)(off / 4);
    if (src > 0 && src < PLIC_NUM_SOURCES)
      p->priority[src] = val & PLIC_PRIORITY_MASK;
    plic_update(p);
    return true;
  }
  if (off < PLIC_ENABLE)
    return true; /* pending bits are read-only */
  if (off < PLIC_CONTEXT) {
    uint64_t ctx = (off - PLIC_ENABLE) / PLIC_ENABLE_STRIDE;
    uint64_t word = ((off - PLIC_ENABLE) % PLIC_ENABLE_STRIDE) / 4;
    if (ctx >= p->num_contexts)
      return false;
    if (word < PLIC_NUM_SOURCES / 32) {
      uint64_t mask = 0xffffffffULL << (32 * word);
      uint64_t bits = ((uint64_t)val << (32 * word)) & PLIC_VALID_SOURCES;
      p->enable[ctx] = (p->enable[ctx] & ~mask) | bits;
      plic_update(p);
    }
    return true;
  }
  uint64_t ctx = (off - PLIC_CONTEXT) / PLIC_CONTEXT_STRIDE;
  uint64_t reg = (off - PLIC_CONTEXT) % PLIC_CONTEXT_STRIDE;
  if (ctx >= p->num_contexts)
    return false;
  if (reg == 0) {
    p->threshold[ctx] = val & PLIC_PRIORITY_MASK;
    plic_update(p);
  } else if (reg == 4) {
    plic_complete(p, (unsigned)ctx, val);
  }
  return true;
}

bool plic_read(void *dev, uint64_t off, unsigned size, uint64_t *val) {
  plic_state *p = dev;
  if ((size != 4 && size != 8) || (off & (size - 1)) || off >= PLIC_SIZE)
    return false;
  uint32_t lo = 0, hi = 0;
  if (!plic_read32(p, off, &lo))
    return false;
  if (size == 8 && !plic_read32(p, off + 4, &hi))
    return false;
  *val = lo | ((uint64_t)hi << 32);
  return true;
}

bool plic_write(void *dev, uint64_t off, unsigned size, uint64_t val) {
  plic_state *p = dev;
  if ((size != 4 && size != 8) || (off & (size - 1)) || off >= PLIC_SIZE)
    return false;
  if (!plic_write32(p, off, (uint32_t)val))
    return false;
  return size == 4 || plic_write32(p, off + 4, (uint32_t)(val >> 32));
}

/* ------------------------------------------------------------------ save / restore */

#define PLIC_STATE_VERSION 1

void plic_save(const plic_state *p, vmstate_writer *w) {
  vmstate_begin(w, "PLIC", PLIC_STATE_VERSION);
  vmstate_put_u32(w, p->num_contexts);
  for (unsigned i = 0; i < PLIC_NUM_SOURCES; i++)
    vmstate_put_u32(w, p->priority[i]);
  vmstate_put_u64(w, p->level);
  vmstate_put_u64(w, p->pending);
  vmstate_put_u64(w, p->claimed);
  for (unsigned c = 0; c < p->num_contexts; c++) {
    vmstate_put_u64(w, p->enable[c]);
    vmstate_put_u32(w, p->threshold[c]);
  }
  vmstate_end_section(w);
}

int plic_load(plic_state *p, vmstate_reader *img, vs_error **err) {
  vmstate_reader r;
  if (vmstate_next(img, "PLIC", PLIC_STATE_VERSION, &r, err) < 0)
    return -1;
  if (vmstate_get_u32(&r) != p->num_contexts)
    vmstate_refuse(&r, "number of contexts differs from the machine's harts");
  for (unsigned i = 0; i < PLIC_NUM_SOURCES; i++)
    p->priority[i] = vmstate_get_u32(&r) & PLIC_PRIORITY_MASK;
  p->level = vmstate_get_u64(&r) & PLIC_VALID_SOURCES;
  p->pending = vmstate_get_u64(&r) & PLIC_VALID_SOURCES;
  p->claimed = vmstate_get_u64(&r) & PLIC_VALID_SOURCES;
  for (unsigned c = 0; c < p->num_contexts && !r.bad; c++) {
    p->enable[c] = vmstate_get_u64(&r) & PLIC_VALID_SOURCES;
    p->threshold[c] = vmstate_get_u32(&r) & PLIC_PRIORITY_MASK;
  }
  if (vmstate_end(&r, err) < 0)
    return -1;
  plic_update(p);
  return 0;
}
