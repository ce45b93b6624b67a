/* Many harts at once on shared counters: amoadd.d, amoadd.w, LR/SC increments (D and W) and a
 * spinlock (amoswap.aq / release store) around plain increments. Every final count is checked
 * exactly: a lost update or a store-conditional that wrongly succeeded shows as a wrong count. */
#include "smp.h"

#define ITERS 200000

static volatile uint64_t amo_d __attribute__((aligned(64)));
static volatile uint32_t amo_w __attribute__((aligned(64)));
static volatile uint64_t lrsc_d __attribute__((aligned(64)));
static volatile uint32_t lrsc_w __attribute__((aligned(64)));
static volatile uint32_t lock __attribute__((aligned(64)));
static volatile uint64_t locked_count __attribute__((aligned(64)));
static volatile uint64_t meet __attribute__((aligned(64)));

static void lrsc_inc_d(volatile uint64_t *p) {
  uint64_t v, fail;
  do {
    __asm__ volatile("lr.d %0, (%2)\n\taddi %0, %0, 1\n\tsc.d %1, %0, (%2)"
                     : "=&r"(v), "=&r"(fail)
                     : "r"(p)
                     : "memory");
  } while (fail);
}

static void lrsc_inc_w(volatile uint32_t *p) {
  uint64_t v, fail;
  do {
    __asm__ volatile("lr.w.aq %0, (%2)\n\taddiw %0, %0, 1\n\tsc.w.rl %1, %0, (%2)"
                     : "=&r"(v), "=&r"(fail)
                     : "r"(p)
                     : "memory");
  } while (fail);
}

static void spin_lock(volatile uint32_t *l) {
  uint32_t old;
  do {
    __asm__ volatile("amoswap.w.aq %0, %2, (%1)" : "=r"(old) : "r"(l), "r"(1) : "memory");
    if (old)
      cpu_relax();
  } while (old);
}

static void spin_unlock(volatile uint32_t *l) {
  __asm__ volatile("fence rw, w" ::: "memory");
  *l = 0;
}

/* Each kind of update in a phase of its own, so the harts hammer one counter at a time. */
long smp_main(long hartid) {
  smp_barrier(&meet, 1);
  for (int i = 0; i < ITERS; i++)
    amoadd_d_relaxed(&amo_d, 1);
  for (int i = 0; i < ITERS; i++)
    amoadd_w(&amo_w, 3);
  smp_barrier(&meet, 2);
  for (int i = 0; i < ITERS; i++)
    lrsc_inc_d(&lrsc_d);
  smp_barrier(&meet, 3);
  for (int i = 0; i < ITERS; i++)
    lrsc_inc_w(&lrsc_w);
  smp_barrier(&meet, 4);
  for (int i = 0; i < ITERS / 4; i++) {
    spin_lock(&lock);
    locked_count = locked_count + 1; /* a plain load and store: only the lock keeps it exact */
    spin_unlock(&lock);
  }
  smp_barrier(&meet, 5);
  if (hartid != 0)
    return 0;
  const uint64_t n = (uint64_t)SMP_HARTS * ITERS;
  if (amo_d != n)
    return 1;
  if (amo_w != (uint32_t)(3 * n))
    return 2;
  if (lrsc_d != n)
    return 3;
  if (lrsc_w != (uint32_t)n)
    return 4;
  if (locked_count != n / 4)
    return 5;
  return 0;
}
