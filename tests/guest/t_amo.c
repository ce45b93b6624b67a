/* A: LR/SC (success, failure after another SC, wrong address) and every AMO, W and D. */
#include "test.h"

static volatile uint64_t mem64[4] __attribute__((aligned(64)));
static volatile uint32_t mem32[4] __attribute__((aligned(64)));

#define AMO(op, addr, val)                                                                         \
  ({                                                                                               \
    uint64_t _old;                                                                                 \
    __asm__ volatile(op " %0, %2, (%1)"                                                            \
                     : "=r"(_old)                                                                  \
                     : "r"(addr), "r"((uint64_t)(val))                                             \
                     : "memory");                                                                  \
    _old;                                                                                          \
  })

int main(void) {
  volatile uint64_t *d = mem64;
  volatile uint32_t *w = mem32;
  *d = 10;
  CHECK(AMO("amoadd.d", d, 5) == 10 && *d == 15);
  CHECK(AMO("amoswap.d", d, 0xff00) == 15 && *d == 0xff00);
  CHECK(AMO("amoxor.d", d, 0x0ff0) == 0xff00 && *d == 0xf0f0);
  CHECK(AMO("amoand.d", d, 0x3c3c) == 0xf0f0 && *d == 0x3030);
  CHECK(AMO("amoor.d", d, 0x0101) == 0x3030 && *d == 0x3131);
  *d = (uint64_t)-5;
  CHECK(AMO("amomin.d", d, 3) == (uint64_t)-5 && *d == (uint64_t)-5);
  CHECK(AMO("amomax.d", d, 3) == (uint64_t)-5 && *d == 3);
  CHECK(AMO("amominu.d", d, (uint64_t)-1) == 3 && *d == 3);
  CHECK(AMO("amomaxu.d", d, (uint64_t)-1) == 3 && *d == (uint64_t)-1);
  CHECK(AMO("amoadd.d.aqrl", d, 1) == (uint64_t)-1 && *d == 0);

  *w = 0x7fffffff;
  CHECK(AMO("amoadd.w", w, 1) == 0x7fffffff && *w == 0x80000000u);
  /* the old value is sign-extended */
  CHECK(AMO("amoswap.w", w, 5) == 0xffffffff80000000ull && *w == 5);
  CHECK(AMO("amoxor.w", w, 3) == 5 && *w == 6);
  CHECK(AMO("amoand.w", w, 3) == 6 && *w == 2);
  CHECK(AMO("amoor.w", w, 0x80000000u) == 2 && *w == 0x80000002u);
  CHECK(AMO("amomin.w", w, 1) == 0xffffffff80000002ull && *w == 0x80000002u);
  CHECK(AMO("amomax.w", w, 1) == 0xffffffff80000002ull && *w == 1);
  CHECK(AMO("amominu.w", w, 0xffffffffu) == 1 && *w == 1);
  CHECK(AMO("amomaxu.w", w, 0xffffffffu) == 1 && *w == 0xffffffffu);
  /* upper bits of rs2 are ignored by .w */
  CHECK(AMO("amoadd.w", w, 0x100000001ull) == 0xffffffffffffffffull && *w == 0);
  w[1] = 0x1234;
  CHECK(w[1] == 0x1234);

  /* LR/SC */
  uint64_t v, fail;
  *d = 42;
  __asm__ volatile("lr.d %0, (%2)\n sc.d %1, %3, (%2)"
                   : "=&r"(v), "=&r"(fail)
                   : "r"(d), "r"(43ull)
                   : "memory");
  CHECK(v == 42 && fail == 0 && *d == 43);
  /* a second SC without a new LR fails */
  __asm__ volatile("sc.d %0, %2, (%1)" : "=r"(fail) : "r"(d), "r"(44ull) : "memory");
  CHECK(fail != 0 && *d == 43);
  /* SC to another address than the reservation fails */
  __asm__ volatile("lr.d %0, (%2)\n sc.d %1, %3, (%4)"
                   : "=&r"(v), "=&r"(fail)
                   : "r"(d), "r"(1ull), "r"(d + 1)
                   : "memory");
  CHECK(fail != 0 && d[1] == 0);
  /* an exception between LR and SC (trap entry) clears the reservation */
  __asm__ volatile("lr.w %0, (%1)" : "=r"(v) : "r"(w) : "memory");
  CHECK(v == 0);
  __asm__ volatile("ecall");
  __asm__ volatile("sc.w %0, %2, (%1)" : "=r"(fail) : "r"(w), "r"(9ull) : "memory");
  CHECK(fail != 0 && *w == 0);
  /* LR.W sign-extends; SC.W stores 32 bits */
  *w = 0x80000001u;
  __asm__ volatile("lr.w %0, (%2)\n sc.w %1, %3, (%2)"
                   : "=&r"(v), "=&r"(fail)
                   : "r"(w), "r"(0x1ffffffffull)
                   : "memory");
  CHECK(v == 0xffffffff80000001ull && fail == 0 && *w == 0xffffffffu && w[1] == 0x1234);
  /* misaligned AMO and LR raise store/AMO (6) and load (4) misaligned exceptions */
  reset_trap();
  AMO("amoadd.w", (volatile char *)w + 2, 1);
  CHECK(last_trap.count == 1 && (last_trap.cause == 6 || last_trap.cause == 7) &&
        last_trap.tval == (uint64_t)w + 2);
  reset_trap();
  __asm__ volatile("lr.d %0, (%1)" : "=r"(v) : "r"((volatile char *)d + 4) : "memory");
  CHECK(last_trap.count == 1 && (last_trap.cause == 4 || last_trap.cause == 5));
  /* AMO on an unmapped physical address: store/AMO access fault (7) */
  reset_trap();
  AMO("amoswap.d", (volatile uint64_t *)0x40000000, 1);
  CHECK(last_trap.count == 1 && last_trap.cause == 7 && last_trap.tval == 0x40000000);
  return 0;
}
