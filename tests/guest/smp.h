/* Multi-hart guest programs (crt_smp.S): shared helpers. The harts run the same program; the
 * number of harts is given at build time (SMP_HARTS) and must match vessel-vmm's --smp. */
#ifndef VESSEL_TESTS_GUEST_SMP_H
#define VESSEL_TESTS_GUEST_SMP_H

#include <stdint.h>

#ifndef SMP_HARTS
#define SMP_HARTS 4
#endif

static inline uint64_t amoadd_d(volatile uint64_t *p, uint64_t v) {
  uint64_t old;
  __asm__ volatile("amoadd.d.aqrl %0, %2, (%1)" : "=r"(old) : "r"(p), "r"(v) : "memory");
  return old;
}

static inline uint32_t amoadd_w(volatile uint32_t *p, uint32_t v) {
  uint32_t old;
  __asm__ volatile("amoadd.w %0, %2, (%1)" : "=r"(old) : "r"(p), "r"(v) : "memory");
  return old;
}

static inline uint64_t amoadd_d_relaxed(volatile uint64_t *p, uint64_t v) {
  uint64_t old;
  __asm__ volatile("amoadd.d %0, %2, (%1)" : "=r"(old) : "r"(p), "r"(v) : "memory");
  return old;
}

static inline uint64_t load_acquire(volatile uint64_t *p) {
  uint64_t v = *p;
  __asm__ volatile("fence r, rw" ::: "memory");
  return v;
}

static inline void store_release(volatile uint64_t *p, uint64_t v) {
  __asm__ volatile("fence rw, w" ::: "memory");
  *p = v;
}

/* Linux's cpu_relax(): tells the VMM this hart waits for another one. */
static inline void cpu_relax(void) {
  long dummy = 0;
  __asm__ volatile("div %0, %0, zero" : "+r"(dummy));
}

/* All harts meet here; `round` numbers the meetings (every hart passes the same sequence). */
static inline void smp_barrier(volatile uint64_t *count, uint64_t round) {
  amoadd_d(count, 1);
  while (load_acquire(count) < round * SMP_HARTS)
    cpu_relax();
}

#endif
