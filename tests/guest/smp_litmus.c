/* Litmus tests between harts 0 and 1 (the others only meet them at the barriers):
 * - message passing: data written, fence w,w, flag; the reader sees the flag, fence r,r, and must
 *   see all the data;
 * - store buffering: x = r; fence rw,rw; read y || y = r; fence rw,rw; read x: at least one hart
 *   must see the other's store (on an x86-64 host this needs an MFENCE: a store before a load is
 *   the one order x86 does not keep by itself);
 * - cross-hart code modification: hart 0 rewrites a function hart 1 has run (and so translated),
 *   fences and raises a flag; hart 1 runs FENCE.I and must get the new code.
 * The return value of hart 0 is the failing check (0: all passed). */
#include "smp.h"

#define MP_ROUNDS 2000
#define MP_WORDS 16
#define SB_ROUNDS 20000
#define SMC_ROUNDS 300

static volatile uint64_t meet __attribute__((aligned(64)));
static volatile uint64_t mp_data[MP_WORDS] __attribute__((aligned(64)));
static volatile uint64_t mp_flag __attribute__((aligned(64)));
static volatile uint64_t mp_ack __attribute__((aligned(64)));
static volatile uint64_t mp_bad __attribute__((aligned(64)));
static volatile uint64_t sb_x __attribute__((aligned(64)));
static volatile uint64_t sb_y __attribute__((aligned(64)));
static volatile uint64_t sb_seen[2] __attribute__((aligned(64)));
static volatile uint64_t sb_meet __attribute__((aligned(64)));
static volatile uint64_t sb_bad __attribute__((aligned(64)));
static volatile uint64_t smc_flag __attribute__((aligned(64)));
static volatile uint64_t smc_ack __attribute__((aligned(64)));
static volatile uint64_t smc_bad __attribute__((aligned(64)));
/* a function in a page of its own: addi a0, zero, K; ret */
static volatile uint32_t smc_code[1024]
    __attribute__((aligned(4096), section(".data.smc"))) = {0x00000513, 0x00008067};

static uint32_t addi_a0(uint32_t k) { return (k << 20) | (10u << 7) | 0x13u; }

static void wait_for(volatile uint64_t *p, uint64_t v) {
  while (load_acquire(p) != v)
    cpu_relax();
}

static void message_passing(long hartid) {
  for (uint64_t r = 1; r <= MP_ROUNDS; r++) {
    if (hartid == 0) {
      for (int i = 0; i < MP_WORDS; i++)
        mp_data[i] = r * 100 + (uint64_t)i;
      __asm__ volatile("fence w, w" ::: "memory");
      mp_flag = r;
      wait_for(&mp_ack, r);
    } else {
      while (mp_flag != r)
        cpu_relax();
      __asm__ volatile("fence r, r" ::: "memory");
      for (int i = 0; i < MP_WORDS; i++)
        if (mp_data[i] != r * 100 + (uint64_t)i)
          mp_bad = mp_bad + 1;
      store_release(&mp_ack, r);
    }
  }
}

/* Both harts meet before each round, so their stores and loads overlap in time. */
static void two_hart_meet(uint64_t round) {
  amoadd_d(&sb_meet, 1);
  while (load_acquire(&sb_meet) < 2 * round)
    cpu_relax();
}

static void store_buffering(long hartid) {
  volatile uint64_t *mine = hartid == 0 ? &sb_x : &sb_y;
  volatile uint64_t *theirs = hartid == 0 ? &sb_y : &sb_x;
  for (uint64_t r = 1; r <= SB_ROUNDS; r++) {
    two_hart_meet(2 * r - 1);
    *mine = r;
    __asm__ volatile("fence rw, rw" ::: "memory");
    sb_seen[hartid] = *theirs;
    two_hart_meet(2 * r);
    if (hartid == 0 && sb_seen[0] < r && sb_seen[1] < r)
      sb_bad = sb_bad + 1;
  }
}

static void code_modification(long hartid) {
  long (*fn)(void) = (long (*)(void))(uintptr_t)smc_code;
  for (uint64_t r = 1; r <= SMC_ROUNDS; r++) {
    uint32_t k = (uint32_t)(r & 0x7ff);
    if (hartid == 0) {
      smc_code[0] = addi_a0(k);
      __asm__ volatile("fence rw, rw" ::: "memory");
      store_release(&smc_flag, r);
      wait_for(&smc_ack, r);
    } else {
      wait_for(&smc_flag, r);
      __asm__ volatile("fence.i" ::: "memory");
      for (int i = 0; i < 3; i++)
        if (fn() != (long)k)
          smc_bad = smc_bad + 1;
      store_release(&smc_ack, r);
    }
  }
}

long smp_main(long hartid) {
  smp_barrier(&meet, 1);
  if (hartid <= 1)
    message_passing(hartid);
  smp_barrier(&meet, 2);
  if (hartid <= 1)
    store_buffering(hartid);
  smp_barrier(&meet, 3);
  if (hartid <= 1)
    code_modification(hartid);
  smp_barrier(&meet, 4);
  if (hartid != 0)
    return 0;
  if (mp_bad)
    return 1;
  if (sb_bad)
    return 2;
  if (smc_bad)
    return 3;
  return 0;
}
