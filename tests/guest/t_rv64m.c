/* M: multiply and divide, including the division-by-zero and overflow cases. */
#include "test.h"

#define R(op, a, b)                                                                                \
  ({                                                                                               \
    uint64_t _r;                                                                                   \
    __asm__ volatile(op " %0, %1, %2" : "=r"(_r) : "r"((uint64_t)(a)), "r"((uint64_t)(b)));        \
    _r;                                                                                            \
  })

int main(void) {
  const uint64_t MIN = 0x8000000000000000ull, M1 = ~0ull;
  CHECK(R("mul", 7, -3) == (uint64_t)-21);
  CHECK(R("mulh", MIN, MIN) == 0x4000000000000000ull);
  CHECK(R("mulh", -1, 1) == M1);
  CHECK(R("mulhu", M1, M1) == 0xfffffffffffffffeull);
  CHECK(R("mulhsu", -1, M1) == M1);
  CHECK(R("mulhsu", 2, M1) == 1);
  CHECK(R("mulw", 0x7fffffff, 2) == 0xfffffffffffffffeull);
  CHECK(R("div", -7, 2) == (uint64_t)-3);
  CHECK(R("rem", -7, 2) == (uint64_t)-1);
  CHECK(R("div", 5, 0) == M1);
  CHECK(R("rem", 5, 0) == 5);
  CHECK(R("divu", 5, 0) == M1);
  CHECK(R("remu", 5, 0) == 5);
  CHECK(R("div", MIN, -1) == MIN);
  CHECK(R("rem", MIN, -1) == 0);
  CHECK(R("divu", M1, 2) == 0x7fffffffffffffffull);
  CHECK(R("remu", M1, 10) == 5);
  CHECK(R("divw", 0xffffffff80000000ull, -1) == 0xffffffff80000000ull);
  CHECK(R("remw", 0xffffffff80000000ull, -1) == 0);
  CHECK(R("divw", 7, 0) == M1);
  CHECK(R("divuw", 0xffffffff, 0) == M1);
  CHECK(R("divuw", 0x80000000, 1) == 0xffffffff80000000ull);
  CHECK(R("remuw", 0x80000007, 0x10) == 7);
  CHECK(R("remuw", 0x80000007, 0) == 0xffffffff80000007ull);
  CHECK(R("remw", -7, 0) == (uint64_t)-7);
  return 0;
}
