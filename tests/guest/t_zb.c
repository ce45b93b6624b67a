/* Zba, Zbb, Zbs. */
#include "test.h"

#define R(op, a, b)                                                                                \
  ({                                                                                               \
    uint64_t _r;                                                                                   \
    __asm__ volatile(op " %0, %1, %2" : "=r"(_r) : "r"((uint64_t)(a)), "r"((uint64_t)(b)));        \
    _r;                                                                                            \
  })
#define U(op, a)                                                                                   \
  ({                                                                                               \
    uint64_t _r;                                                                                   \
    __asm__ volatile(op " %0, %1" : "=r"(_r) : "r"((uint64_t)(a)));                                \
    _r;                                                                                            \
  })
#define I(op, a, imm)                                                                              \
  ({                                                                                               \
    uint64_t _r;                                                                                   \
    __asm__ volatile(op " %0, %1, " #imm : "=r"(_r) : "r"((uint64_t)(a)));                         \
    _r;                                                                                            \
  })

int main(void) {
  /* Zba */
  CHECK(R("sh1add", 3, 100) == 106);
  CHECK(R("sh2add", 3, 100) == 112);
  CHECK(R("sh3add", 3, 100) == 124);
  CHECK(R("add.uw", 0xffffffff00000005ull, 1) == 6);
  CHECK(R("sh1add.uw", 0xffffffff80000000ull, 1) == 0x100000001ull);
  CHECK(R("sh2add.uw", 0x100000001ull, 0) == 4);
  CHECK(R("sh3add.uw", 0x80000000ull, 0) == 0x400000000ull);
  CHECK(I("slli.uw", 0xffffffff80000001ull, 4) == 0x800000010ull);
  /* Zbb */
  CHECK(R("andn", 0xff, 0x0f) == 0xf0);
  CHECK(R("orn", 0, ~0x0full) == 0x0f);
  CHECK(R("xnor", 0xff, 0x0f) == ~0xf0ull);
  CHECK(U("clz", 0) == 64 && U("clz", 1) == 63 && U("clz", ~0ull) == 0);
  CHECK(U("ctz", 0) == 64 && U("ctz", 0x100) == 8);
  CHECK(U("cpop", 0xf0f0) == 8);
  CHECK(U("clzw", 0xffffffff00000000ull) == 32 && U("clzw", 0x8000) == 16);
  CHECK(U("ctzw", 0xffffffff00000000ull) == 32 && U("ctzw", 0x80000000ull) == 31);
  CHECK(U("cpopw", 0xffffffff0000000full) == 4);
  CHECK(R("max", -1, 1) == 1 && R("min", -1, 1) == (uint64_t)-1);
  CHECK(R("maxu", -1, 1) == (uint64_t)-1 && R("minu", -1, 1) == 1);
  CHECK(U("sext.b", 0x80) == (uint64_t)-128 && U("sext.h", 0x8000) == (uint64_t)-32768);
  CHECK(U("zext.h", 0xffffffffffff8001ull) == 0x8001);
  CHECK(R("rol", 0x8000000000000001ull, 1) == 3);
  CHECK(R("ror", 3, 1) == 0x8000000000000001ull);
  CHECK(I("rori", 3, 1) == 0x8000000000000001ull);
  CHECK(R("rolw", 0x80000001ull, 1) == 3);
  CHECK(R("rorw", 3, 1) == 0xffffffff80000001ull);
  CHECK(I("roriw", 1, 1) == 0xffffffff80000000ull);
  CHECK(U("orc.b", 0x0001000000100000ull) == 0x00ff000000ff0000ull);
  CHECK(U("rev8", 0x0102030405060708ull) == 0x0807060504030201ull);
  /* Zbs */
  CHECK(R("bclr", 0xff, 3) == 0xf7 && I("bclri", 0xff, 7) == 0x7f);
  CHECK(R("bset", 0, 63) == 0x8000000000000000ull && I("bseti", 0, 40) == 1ull << 40);
  CHECK(R("binv", 1, 64 + 0) == 0 && I("binvi", 0, 1) == 2);
  CHECK(R("bext", 0x10, 4) == 1 && I("bexti", 0x10, 3) == 0);
  return 0;
}
