/* F and D: rounding modes (static and dynamic), accrued flags, NaN boxing and canonical NaNs,
 * min/max, comparisons, classification, conversions with saturation, FS tracking. */
#include "test.h"

#define S(x) (0xffffffff00000000ull | (uint32_t)(x)) /* NaN-boxed single */
#define CANON_S S(0x7fc00000)
#define CANON_D 0x7ff8000000000000ull
#define NV 16
#define DZ 8
#define OF 4
#define UF 2
#define NX 1

static uint64_t flags;

/* Run "insn ft2, ft0, ft1[, ft3]" on raw register contents; result raw, flags in `flags`. */
#define FP3(insn, a, b, c)                                                                         \
  ({                                                                                               \
    uint64_t _r;                                                                                   \
    __asm__ volatile(                                                                              \
        "csrwi fflags, 0\n fmv.d.x ft0, %2\n fmv.d.x ft1, %3\n fmv.d.x ft3, %4\n" insn             \
        "\n fmv.x.d %0, ft2\n csrr %1, fflags"                                                     \
        : "=r"(_r), "=r"(flags)                                                                    \
        : "r"((uint64_t)(a)), "r"((uint64_t)(b)), "r"((uint64_t)(c))                               \
        : "ft0", "ft1", "ft2", "ft3");                                                             \
    _r;                                                                                            \
  })
#define FP(insn, a, b) FP3(insn, a, b, 0)
/* Integer result: "insn %0, ft0[, ft1]" */
#define FPX(insn, a, b)                                                                            \
  ({                                                                                               \
    uint64_t _r;                                                                                   \
    __asm__ volatile("csrwi fflags, 0\n fmv.d.x ft0, %2\n fmv.d.x ft1, %3\n" insn                  \
                     "\n csrr %1, fflags"                                                          \
                     : "=r"(_r), "=r"(flags)                                                       \
                     : "r"((uint64_t)(a)), "r"((uint64_t)(b))                                      \
                     : "ft0", "ft1");                                                              \
    _r;                                                                                            \
  })
/* Float result from an integer: "insn ft2, %2" */
#define FPI(insn, x)                                                                               \
  ({                                                                                               \
    uint64_t _r;                                                                                   \
    __asm__ volatile("csrwi fflags, 0\n" insn "\n fmv.x.d %0, ft2\n csrr %1, fflags"               \
                     : "=r"(_r), "=r"(flags)                                                       \
                     : "r"((uint64_t)(x))                                                          \
                     : "ft2");                                                                     \
    _r;                                                                                            \
  })

#define ONE_S S(0x3f800000)
#define THREE_S S(0x40400000)
#define ONE_D 0x3ff0000000000000ull
#define THREE_D 0x4008000000000000ull

/* Fused multiply-add rounding in every mode, static and dynamic (frm), on exact ties (where RNE
 * and RMM differ), just above and below a tie (the sticky bits of the exact sum), a subnormal
 * tie (UF) and an overflowing tie (OF). Expected values and flags come from exact rational
 * arithmetic (Python's fractions), not from this emulator. */
struct fma_result {
  uint64_t value;
  uint64_t flags;
};
struct fma_case {
  int op; /* fmadd, fmsub, fnmsub, fnmadd */
  uint64_t a, b, c;
  struct fma_result want[5]; /* rne, rtz, rdn, rup, rmm */
};
typedef uint64_t (*fma_fn)(uint64_t a, uint64_t b, uint64_t c);

#define FMA_FN(name, insn, rm)                                                                     \
  static uint64_t name(uint64_t a, uint64_t b, uint64_t c) {                                       \
    return FP3(insn " ft2, ft0, ft1, ft3, " rm, a, b, c);                                          \
  }
#define FMA_FNS(op, fmt)                                                                           \
  FMA_FN(op##_##fmt##_rne, #op "." #fmt, "rne")                                                    \
  FMA_FN(op##_##fmt##_rtz, #op "." #fmt, "rtz")                                                    \
  FMA_FN(op##_##fmt##_rdn, #op "." #fmt, "rdn")                                                    \
  FMA_FN(op##_##fmt##_rup, #op "." #fmt, "rup")                                                    \
  FMA_FN(op##_##fmt##_rmm, #op "." #fmt, "rmm")                                                    \
  FMA_FN(op##_##fmt##_dyn, #op "." #fmt, "dyn")
#define FMA_ROW(op, fmt)                                                                           \
  {                                                                                                \
    op##_##fmt##_rne, op##_##fmt##_rtz, op##_##fmt##_rdn, op##_##fmt##_rup, op##_##fmt##_rmm,      \
        op##_##fmt##_dyn                                                                           \
  }
FMA_FNS(fmadd, s)
FMA_FNS(fmsub, s)
FMA_FNS(fnmsub, s)
FMA_FNS(fnmadd, s)
FMA_FNS(fmadd, d)
FMA_FNS(fmsub, d)
FMA_FNS(fnmsub, d)
FMA_FNS(fnmadd, d)
/* [op][rm], rm 5 = dynamic */
static const fma_fn fma_s_fns[4][6] = {FMA_ROW(fmadd, s), FMA_ROW(fmsub, s), FMA_ROW(fnmsub, s),
                                       FMA_ROW(fnmadd, s)};
static const fma_fn fma_d_fns[4][6] = {FMA_ROW(fmadd, d), FMA_ROW(fmsub, d), FMA_ROW(fnmsub, d),
                                       FMA_ROW(fnmadd, d)};

static const struct fma_case fma_s_cases[] = {
    {0,
     0x3f800800,
     0x3f800800,
     0x0,
     {{0x3f801000, 1}, {0x3f801000, 1}, {0x3f801000, 1}, {0x3f801001, 1}, {0x3f801001, 1}}},
    {1,
     0x3f800800,
     0x3f800800,
     0x0,
     {{0x3f801000, 1}, {0x3f801000, 1}, {0x3f801000, 1}, {0x3f801001, 1}, {0x3f801001, 1}}},
    {2,
     0x3f800800,
     0x3f800800,
     0x0,
     {{0xbf801000, 1}, {0xbf801000, 1}, {0xbf801001, 1}, {0xbf801000, 1}, {0xbf801001, 1}}},
    {3,
     0x3f800800,
     0x3f800800,
     0x0,
     {{0xbf801000, 1}, {0xbf801000, 1}, {0xbf801001, 1}, {0xbf801000, 1}, {0xbf801001, 1}}},
    {0,
     0x3f800800,
     0x3f800800,
     0x2b800000,
     {{0x3f801001, 1}, {0x3f801000, 1}, {0x3f801000, 1}, {0x3f801001, 1}, {0x3f801001, 1}}},
    {1,
     0x3f800800,
     0x3f800800,
     0x2b800000,
     {{0x3f801000, 1}, {0x3f801000, 1}, {0x3f801000, 1}, {0x3f801001, 1}, {0x3f801000, 1}}},
    {2,
     0x3f800800,
     0x3f800800,
     0x2b800000,
     {{0xbf801000, 1}, {0xbf801000, 1}, {0xbf801001, 1}, {0xbf801000, 1}, {0xbf801000, 1}}},
    {3,
     0x3f800800,
     0x3f800800,
     0x2b800000,
     {{0xbf801001, 1}, {0xbf801000, 1}, {0xbf801001, 1}, {0xbf801000, 1}, {0xbf801001, 1}}},
    {0,
     0x3f800800,
     0x3f800800,
     0xab800000,
     {{0x3f801000, 1}, {0x3f801000, 1}, {0x3f801000, 1}, {0x3f801001, 1}, {0x3f801000, 1}}},
    {1,
     0x3f800800,
     0x3f800800,
     0xab800000,
     {{0x3f801001, 1}, {0x3f801000, 1}, {0x3f801000, 1}, {0x3f801001, 1}, {0x3f801001, 1}}},
    {2,
     0x3f800800,
     0x3f800800,
     0xab800000,
     {{0xbf801001, 1}, {0xbf801000, 1}, {0xbf801001, 1}, {0xbf801000, 1}, {0xbf801001, 1}}},
    {3,
     0x3f800800,
     0x3f800800,
     0xab800000,
     {{0xbf801000, 1}, {0xbf801000, 1}, {0xbf801001, 1}, {0xbf801000, 1}, {0xbf801000, 1}}},
    {0,
     0x800001,
     0x3f000000,
     0x0,
     {{0x400000, 3}, {0x400000, 3}, {0x400000, 3}, {0x400001, 3}, {0x400001, 3}}},
    {1,
     0x800001,
     0x3f000000,
     0x0,
     {{0x400000, 3}, {0x400000, 3}, {0x400000, 3}, {0x400001, 3}, {0x400001, 3}}},
    {2,
     0x800001,
     0x3f000000,
     0x0,
     {{0x80400000, 3}, {0x80400000, 3}, {0x80400001, 3}, {0x80400000, 3}, {0x80400001, 3}}},
    {3,
     0x800001,
     0x3f000000,
     0x0,
     {{0x80400000, 3}, {0x80400000, 3}, {0x80400001, 3}, {0x80400000, 3}, {0x80400001, 3}}},
    {0,
     0x7f7fffff,
     0x3f800000,
     0x73000000,
     {{0x7f800000, 5}, {0x7f7fffff, 1}, {0x7f7fffff, 1}, {0x7f800000, 5}, {0x7f800000, 5}}},
    {1,
     0x7f7fffff,
     0x3f800000,
     0x73000000,
     {{0x7f7ffffe, 1}, {0x7f7ffffe, 1}, {0x7f7ffffe, 1}, {0x7f7fffff, 1}, {0x7f7fffff, 1}}},
    {2,
     0x7f7fffff,
     0x3f800000,
     0x73000000,
     {{0xff7ffffe, 1}, {0xff7ffffe, 1}, {0xff7fffff, 1}, {0xff7ffffe, 1}, {0xff7fffff, 1}}},
    {3,
     0x7f7fffff,
     0x3f800000,
     0x73000000,
     {{0xff800000, 5}, {0xff7fffff, 1}, {0xff800000, 5}, {0xff7fffff, 1}, {0xff800000, 5}}},
};
static const struct fma_case fma_d_cases[] = {
    {0,
     0x3ff0000004000000,
     0x3ff0000002000000,
     0x0,
     {{0x3ff0000006000000, 1},
      {0x3ff0000006000000, 1},
      {0x3ff0000006000000, 1},
      {0x3ff0000006000001, 1},
      {0x3ff0000006000001, 1}}},
    {1,
     0x3ff0000004000000,
     0x3ff0000002000000,
     0x0,
     {{0x3ff0000006000000, 1},
      {0x3ff0000006000000, 1},
      {0x3ff0000006000000, 1},
      {0x3ff0000006000001, 1},
      {0x3ff0000006000001, 1}}},
    {2,
     0x3ff0000004000000,
     0x3ff0000002000000,
     0x0,
     {{0xbff0000006000000, 1},
      {0xbff0000006000000, 1},
      {0xbff0000006000001, 1},
      {0xbff0000006000000, 1},
      {0xbff0000006000001, 1}}},
    {3,
     0x3ff0000004000000,
     0x3ff0000002000000,
     0x0,
     {{0xbff0000006000000, 1},
      {0xbff0000006000000, 1},
      {0xbff0000006000001, 1},
      {0xbff0000006000000, 1},
      {0xbff0000006000001, 1}}},
    {0,
     0x3ff0000004000000,
     0x3ff0000002000000,
     0x3af0000000000000,
     {{0x3ff0000006000001, 1},
      {0x3ff0000006000000, 1},
      {0x3ff0000006000000, 1},
      {0x3ff0000006000001, 1},
      {0x3ff0000006000001, 1}}},
    {1,
     0x3ff0000004000000,
     0x3ff0000002000000,
     0x3af0000000000000,
     {{0x3ff0000006000000, 1},
      {0x3ff0000006000000, 1},
      {0x3ff0000006000000, 1},
      {0x3ff0000006000001, 1},
      {0x3ff0000006000000, 1}}},
    {2,
     0x3ff0000004000000,
     0x3ff0000002000000,
     0x3af0000000000000,
     {{0xbff0000006000000, 1},
      {0xbff0000006000000, 1},
      {0xbff0000006000001, 1},
      {0xbff0000006000000, 1},
      {0xbff0000006000000, 1}}},
    {3,
     0x3ff0000004000000,
     0x3ff0000002000000,
     0x3af0000000000000,
     {{0xbff0000006000001, 1},
      {0xbff0000006000000, 1},
      {0xbff0000006000001, 1},
      {0xbff0000006000000, 1},
      {0xbff0000006000001, 1}}},
    {0,
     0x3ff0000004000000,
     0x3ff0000002000000,
     0xbaf0000000000000,
     {{0x3ff0000006000000, 1},
      {0x3ff0000006000000, 1},
      {0x3ff0000006000000, 1},
      {0x3ff0000006000001, 1},
      {0x3ff0000006000000, 1}}},
    {1,
     0x3ff0000004000000,
     0x3ff0000002000000,
     0xbaf0000000000000,
     {{0x3ff0000006000001, 1},
      {0x3ff0000006000000, 1},
      {0x3ff0000006000000, 1},
      {0x3ff0000006000001, 1},
      {0x3ff0000006000001, 1}}},
    {2,
     0x3ff0000004000000,
     0x3ff0000002000000,
     0xbaf0000000000000,
     {{0xbff0000006000001, 1},
      {0xbff0000006000000, 1},
      {0xbff0000006000001, 1},
      {0xbff0000006000000, 1},
      {0xbff0000006000001, 1}}},
    {3,
     0x3ff0000004000000,
     0x3ff0000002000000,
     0xbaf0000000000000,
     {{0xbff0000006000000, 1},
      {0xbff0000006000000, 1},
      {0xbff0000006000001, 1},
      {0xbff0000006000000, 1},
      {0xbff0000006000000, 1}}},
    {0,
     0x10000000000001,
     0x3fe0000000000000,
     0x0,
     {{0x8000000000000, 3},
      {0x8000000000000, 3},
      {0x8000000000000, 3},
      {0x8000000000001, 3},
      {0x8000000000001, 3}}},
    {1,
     0x10000000000001,
     0x3fe0000000000000,
     0x0,
     {{0x8000000000000, 3},
      {0x8000000000000, 3},
      {0x8000000000000, 3},
      {0x8000000000001, 3},
      {0x8000000000001, 3}}},
    {2,
     0x10000000000001,
     0x3fe0000000000000,
     0x0,
     {{0x8008000000000000, 3},
      {0x8008000000000000, 3},
      {0x8008000000000001, 3},
      {0x8008000000000000, 3},
      {0x8008000000000001, 3}}},
    {3,
     0x10000000000001,
     0x3fe0000000000000,
     0x0,
     {{0x8008000000000000, 3},
      {0x8008000000000000, 3},
      {0x8008000000000001, 3},
      {0x8008000000000000, 3},
      {0x8008000000000001, 3}}},
    {0,
     0x7fefffffffffffff,
     0x3ff0000000000000,
     0x7c90000000000000,
     {{0x7ff0000000000000, 5},
      {0x7fefffffffffffff, 1},
      {0x7fefffffffffffff, 1},
      {0x7ff0000000000000, 5},
      {0x7ff0000000000000, 5}}},
    {1,
     0x7fefffffffffffff,
     0x3ff0000000000000,
     0x7c90000000000000,
     {{0x7feffffffffffffe, 1},
      {0x7feffffffffffffe, 1},
      {0x7feffffffffffffe, 1},
      {0x7fefffffffffffff, 1},
      {0x7fefffffffffffff, 1}}},
    {2,
     0x7fefffffffffffff,
     0x3ff0000000000000,
     0x7c90000000000000,
     {{0xffeffffffffffffe, 1},
      {0xffeffffffffffffe, 1},
      {0xffefffffffffffff, 1},
      {0xffeffffffffffffe, 1},
      {0xffefffffffffffff, 1}}},
    {3,
     0x7fefffffffffffff,
     0x3ff0000000000000,
     0x7c90000000000000,
     {{0xfff0000000000000, 5},
      {0xffefffffffffffff, 1},
      {0xfff0000000000000, 5},
      {0xffefffffffffffff, 1},
      {0xfff0000000000000, 5}}},
};

static void check_fma_cases(const struct fma_case *cases, unsigned n, const fma_fn (*fns)[6],
                            uint64_t box) {
  for (unsigned i = 0; i < n; i++) {
    const struct fma_case *t = &cases[i];
    for (int rm = 0; rm < 5; rm++) {
      uint64_t want = t->want[rm].value | box;
      CHECK(fns[t->op][rm](t->a | box, t->b | box, t->c | box) == want &&
            flags == t->want[rm].flags);
      CSRW(frm, rm);
      CHECK(fns[t->op][5](t->a | box, t->b | box, t->c | box) == want &&
            flags == t->want[rm].flags);
      CSRW(frm, 0);
    }
  }
}

int main(void) {
  /* rounding modes on 1/3 and -1/3 */
  CHECK(FP("fdiv.s ft2, ft0, ft1, rne", ONE_S, THREE_S) == S(0x3eaaaaab) && flags == NX);
  CHECK(FP("fdiv.s ft2, ft0, ft1, rtz", ONE_S, THREE_S) == S(0x3eaaaaaa) && flags == NX);
  CHECK(FP("fdiv.s ft2, ft0, ft1, rdn", ONE_S, THREE_S) == S(0x3eaaaaaa));
  CHECK(FP("fdiv.s ft2, ft0, ft1, rup", ONE_S, THREE_S) == S(0x3eaaaaab));
  CHECK(FP("fdiv.s ft2, ft0, ft1, rmm", ONE_S, THREE_S) == S(0x3eaaaaab));
  CHECK(FP("fdiv.s ft2, ft0, ft1, rdn", S(0xbf800000), THREE_S) == S(0xbeaaaaab));
  CHECK(FP("fdiv.s ft2, ft0, ft1, rup", S(0xbf800000), THREE_S) == S(0xbeaaaaaa));
  CHECK(FP("fdiv.d ft2, ft0, ft1, rne", ONE_D, THREE_D) == 0x3fd5555555555555ull && flags == NX);
  CHECK(FP("fdiv.d ft2, ft0, ft1, rup", ONE_D, THREE_D) == 0x3fd5555555555556ull);
  CHECK(FP("fdiv.d ft2, ft0, ft1, rtz", ONE_D, THREE_D) == 0x3fd5555555555555ull);
  /* ties: RNE goes to even, RMM away from zero */
  CHECK(FP("fadd.s ft2, ft0, ft1, rne", ONE_S, S(0x33800000)) == ONE_S && flags == NX);
  CHECK(FP("fadd.s ft2, ft0, ft1, rmm", ONE_S, S(0x33800000)) == S(0x3f800001) && flags == NX);
  CHECK(FP("fsub.s ft2, ft0, ft1, rmm", S(0xbf800000), S(0x33800000)) == S(0xbf800001));
  CHECK(FP("fadd.d ft2, ft0, ft1, rne", ONE_D, 0x3ca0000000000000ull) == ONE_D);
  CHECK(FP("fadd.d ft2, ft0, ft1, rmm", ONE_D, 0x3ca0000000000000ull) == 0x3ff0000000000001ull &&
        flags == NX);
  CHECK(FP("fmul.s ft2, ft0, ft1, rmm", S(0x3f800001), S(0x3fc00000)) == S(0x3fc00002));
  CHECK(FP("fmul.s ft2, ft0, ft1, rmm", S(0x7f7fffff), S(0x40000000)) == S(0x7f800000) &&
        flags == (OF | NX));
  /* dynamic rounding mode from frm */
  __asm__ volatile("fsrmi 3");
  CHECK(FP("fdiv.d ft2, ft0, ft1", ONE_D, THREE_D) == 0x3fd5555555555556ull);
  __asm__ volatile("fsrmi 1");
  CHECK(FP("fdiv.s ft2, ft0, ft1", ONE_S, THREE_S) == S(0x3eaaaaaa));
  /* a reserved frm makes dynamic-rounding instructions illegal */
  __asm__ volatile("fsrmi 5");
  reset_trap();
  FP("fadd.s ft2, ft0, ft1", ONE_S, ONE_S);
  CHECK(last_trap.count == 1 && last_trap.cause == 2);
  __asm__ volatile("fsrmi 0");
  CHECK(FP("fadd.s ft2, ft0, ft1", ONE_S, ONE_S) == S(0x40000000) && flags == 0);

  /* exceptions */
  CHECK(FP("fdiv.s ft2, ft0, ft1", ONE_S, S(0)) == S(0x7f800000) && flags == DZ);
  CHECK(FP("fdiv.s ft2, ft0, ft1", S(0), S(0)) == CANON_S && flags == NV);
  CHECK(FP("fsqrt.s ft2, ft0", S(0xbf800000), 0) == CANON_S && flags == NV);
  CHECK(FP("fsqrt.d ft2, ft0", 0x4010000000000000ull, 0) == 0x4000000000000000ull && flags == 0);
  CHECK(FP("fmul.s ft2, ft0, ft1, rne", S(0x7f7fffff), S(0x40000000)) == S(0x7f800000) &&
        flags == (OF | NX));
  CHECK(FP("fmul.s ft2, ft0, ft1, rtz", S(0x7f7fffff), S(0x40000000)) == S(0x7f7fffff) &&
        flags == (OF | NX));
  CHECK(FP("fmul.s ft2, ft0, ft1", S(0x00800000), S(0x3f000000)) == S(0x00400000) && flags == 0);
  CHECK(FP("fmul.s ft2, ft0, ft1, rne", S(0x0da24260), S(0x0da24260)) == S(0) &&
        flags == (UF | NX));
  CHECK(FP("fmul.s ft2, ft0, ft1, rup", S(0x0da24260), S(0x0da24260)) == S(1) &&
        flags == (UF | NX));
  CHECK(FP("fsub.d ft2, ft0, ft1", 0x7ff0000000000000ull, 0x7ff0000000000000ull) == CANON_D &&
        flags == NV);
  /* fflags accrue until cleared */
  __asm__ volatile("csrwi fflags, 0\n fmv.w.x ft0, zero\n fdiv.s ft1, ft0, ft0\n fmv.w.x ft3, %0\n"
                   " fdiv.s ft2, ft3, ft0\n csrr %1, fflags" ::"r"(0x3f800000ull),
                   "r"(flags)
                   : "ft0", "ft1", "ft2", "ft3");
  __asm__ volatile("csrr %0, fflags" : "=r"(flags));
  CHECK(flags == (NV | DZ));

  /* NaN boxing: an improperly boxed single reads as the canonical NaN */
  CHECK(FP("fadd.s ft2, ft0, ft1", 0x000000003f800000ull, ONE_S) == CANON_S);
  CHECK(FP("fsgnj.s ft2, ft0, ft1", 0x000000003f800000ull, ONE_S) == CANON_S);
  CHECK(FP("fsgnjn.s ft2, ft0, ft1", ONE_S, ONE_S) == S(0xbf800000));
  CHECK(FP("fsgnjx.s ft2, ft0, ft1", S(0xbf800000), S(0xbf800000)) == ONE_S);
  CHECK(FP("fsgnj.d ft2, ft0, ft1", ONE_D, 0x8000000000000000ull) == 0xbff0000000000000ull);
  CHECK(FPX("fmv.x.w %0, ft0", 0x12345678c0000000ull, 0) == 0xffffffffc0000000ull);
  CHECK(FPI("fmv.w.x ft2, %2", 0xdeadbeef3f800000ull) == ONE_S);
  float fmem = 1.5f;
  uint64_t raw;
  __asm__ volatile("flw ft2, 0(%1)\n fmv.x.d %0, ft2" : "=r"(raw) : "r"(&fmem) : "ft2");
  CHECK(raw == S(0x3fc00000));
  /* NaN results are canonical; NaN inputs propagate as canonical */
  CHECK(FP("fadd.d ft2, ft0, ft1", 0xfff0000000000123ull, ONE_D) == CANON_D && flags == NV);
  CHECK(FP("fadd.d ft2, ft0, ft1", 0xfff8000000000123ull, ONE_D) == CANON_D && flags == 0);

  /* min/max */
  CHECK(FP("fmin.s ft2, ft0, ft1", S(0x80000000), S(0)) == S(0x80000000));
  CHECK(FP("fmax.s ft2, ft0, ft1", S(0x80000000), S(0)) == S(0));
  CHECK(FP("fmin.s ft2, ft0, ft1", CANON_S, ONE_S) == ONE_S && flags == 0);
  CHECK(FP("fmin.s ft2, ft0, ft1", S(0x7f800001), ONE_S) == ONE_S && flags == NV);
  CHECK(FP("fmax.d ft2, ft0, ft1", CANON_D, CANON_D) == CANON_D);
  CHECK(FP("fmax.d ft2, ft0, ft1", ONE_D, THREE_D) == THREE_D);

  /* comparisons */
  CHECK(FPX("feq.s %0, ft0, ft1", CANON_S, CANON_S) == 0 && flags == 0);
  CHECK(FPX("feq.s %0, ft0, ft1", S(0x7f800001), ONE_S) == 0 && flags == NV);
  CHECK(FPX("flt.s %0, ft0, ft1", CANON_S, ONE_S) == 0 && flags == NV);
  CHECK(FPX("fle.d %0, ft0, ft1", ONE_D, ONE_D) == 1 && flags == 0);
  CHECK(FPX("flt.d %0, ft0, ft1", ONE_D, THREE_D) == 1);
  CHECK(FPX("feq.d %0, ft0, ft1", 0x8000000000000000ull, 0) == 1);

  /* fclass */
  CHECK(FPX("fclass.s %0, ft0", S(0xff800000), 0) == 1);
  CHECK(FPX("fclass.s %0, ft0", S(0xbf800000), 0) == 2);
  CHECK(FPX("fclass.s %0, ft0", S(0x807fffff), 0) == 4);
  CHECK(FPX("fclass.s %0, ft0", S(0x80000000), 0) == 8);
  CHECK(FPX("fclass.s %0, ft0", S(0), 0) == 0x10);
  CHECK(FPX("fclass.s %0, ft0", S(1), 0) == 0x20);
  CHECK(FPX("fclass.s %0, ft0", ONE_S, 0) == 0x40);
  CHECK(FPX("fclass.s %0, ft0", S(0x7f800000), 0) == 0x80);
  CHECK(FPX("fclass.s %0, ft0", S(0x7f800001), 0) == 0x100);
  CHECK(FPX("fclass.s %0, ft0", CANON_S, 0) == 0x200);
  CHECK(FPX("fclass.s %0, ft0", 0x3f800000ull, 0) == 0x200); /* unboxed */
  CHECK(FPX("fclass.d %0, ft0", 0xfff0000000000000ull, 0) == 1);
  CHECK(FPX("fclass.d %0, ft0", 0x7ff0000000000001ull, 0) == 0x100);

  /* float -> integer: rounding and saturation */
  CHECK(FPX("fcvt.w.s %0, ft0, rne", S(0x40200000), 0) == 2 && flags == NX); /* 2.5 */
  CHECK(FPX("fcvt.w.s %0, ft0, rmm", S(0x40200000), 0) == 3 && flags == NX);
  CHECK(FPX("fcvt.w.s %0, ft0, rdn", S(0xc0200000), 0) == (uint64_t)-3);
  CHECK(FPX("fcvt.w.s %0, ft0, rup", S(0xc0200000), 0) == (uint64_t)-2);
  CHECK(FPX("fcvt.w.s %0, ft0, rtz", S(0xc0200000), 0) == (uint64_t)-2);
  CHECK(FPX("fcvt.w.s %0, ft0", CANON_S, 0) == 0x7fffffff && flags == NV);
  CHECK(FPX("fcvt.w.s %0, ft0", S(0x4f32d05e), 0) == 0x7fffffff && flags == NV); /* 3e9 */
  CHECK(FPX("fcvt.w.s %0, ft0", S(0xcf32d05e), 0) == 0xffffffff80000000ull && flags == NV);
  CHECK(FPX("fcvt.wu.s %0, ft0", S(0xbf800000), 0) == 0 && flags == NV);
  CHECK(FPX("fcvt.wu.s %0, ft0, rtz", S(0xbf000000), 0) == 0 && flags == NX);
  CHECK(FPX("fcvt.wu.s %0, ft0", S(0x4f32d05e), 0) == 0xffffffffb2d05e00ull && flags == 0);
  CHECK(FPX("fcvt.wu.d %0, ft0", 0x41efffffffe00000ull, 0) == 0xffffffffffffffffull && flags == 0);
  CHECK(FPX("fcvt.l.d %0, ft0", 0x43e0000000000000ull, 0) == 0x7fffffffffffffffull && flags == NV);
  CHECK(FPX("fcvt.l.d %0, ft0", 0xc3e0000000000000ull, 0) == 0x8000000000000000ull && flags == 0);
  CHECK(FPX("fcvt.lu.d %0, ft0", 0x43f0000000000000ull, 0) == ~0ull && flags == NV);
  CHECK(FPX("fcvt.lu.d %0, ft0", 0xfff0000000000000ull, 0) == 0 && flags == NV);
  CHECK(FPX("fcvt.l.s %0, ft0", S(0x7f800000), 0) == 0x7fffffffffffffffull && flags == NV);
  CHECK(FPX("fcvt.lu.s %0, ft0", CANON_S, 0) == ~0ull && flags == NV);

  /* integer -> float */
  CHECK(FPI("fcvt.s.l ft2, %2, rne", 16777217) == S(0x4b800000) && flags == NX);
  CHECK(FPI("fcvt.s.l ft2, %2, rup", 16777217) == S(0x4b800001));
  CHECK(FPI("fcvt.s.l ft2, %2, rmm", 16777217) == S(0x4b800001));
  CHECK(FPI("fcvt.s.l ft2, %2, rmm", -16777217) == S(0xcb800001));
  CHECK(FPI("fcvt.s.w ft2, %2", 0xffffffff00000005ull) == S(0x40a00000) && flags == 0);
  CHECK(FPI("fcvt.s.wu ft2, %2", 0xffffffffffffffffull) == S(0x4f800000) && flags == NX);
  CHECK(FPI("fcvt.d.lu ft2, %2", ~0ull) == 0x43f0000000000000ull && flags == NX);
  CHECK(FPI("fcvt.d.l ft2, %2", -3) == 0xc008000000000000ull && flags == 0);
  CHECK(FPI("fcvt.d.w ft2, %2", 0x80000000ull) == 0xc1e0000000000000ull);
  CHECK(FPI("fcvt.d.wu ft2, %2", 0x80000000ull) == 0x41e0000000000000ull);
  CHECK(FPI("fcvt.s.lu ft2, %2, rtz", ~0ull) == S(0x5f7fffff));

  /* float <-> double */
  CHECK(FP("fcvt.s.d ft2, ft0", 0x3fd5555555555555ull, 0) == S(0x3eaaaaab) && flags == NX);
  CHECK(FP("fcvt.s.d ft2, ft0, rtz", 0x3fd5555555555555ull, 0) == S(0x3eaaaaaa));
  CHECK(FP("fcvt.s.d ft2, ft0", 0x7ff0000000000001ull, 0) == CANON_S && flags == NV);
  CHECK(FP("fcvt.d.s ft2, ft0", S(0x7f800001), 0) == CANON_D && flags == NV);
  CHECK(FP("fcvt.d.s ft2, ft0", ONE_S, 0) == ONE_D && flags == 0);
  CHECK(FP("fcvt.s.d ft2, ft0", 0x47efffffffffffffull, 0) == S(0x7f800000) && flags == (OF | NX));

  /* fused multiply-add */
  CHECK(FP3("fmadd.s ft2, ft0, ft1, ft3", S(0x40000000), THREE_S, ONE_S) == S(0x40e00000));
  CHECK(FP3("fmsub.s ft2, ft0, ft1, ft3", S(0x40000000), THREE_S, ONE_S) == S(0x40a00000));
  CHECK(FP3("fnmsub.s ft2, ft0, ft1, ft3", S(0x40000000), THREE_S, ONE_S) == S(0xc0a00000));
  CHECK(FP3("fnmadd.s ft2, ft0, ft1, ft3", S(0x40000000), THREE_S, ONE_S) == S(0xc0e00000));
  CHECK(FP3("fmadd.d ft2, ft0, ft1, ft3", 0x7ff0000000000000ull, 0, CANON_D) == CANON_D &&
        flags == NV);
  /* one rounding only: (1+2^-52)*(1-2^-53) - 1 = 2^-53 - 2^-105 exactly */
  CHECK(FP3("fmadd.d ft2, ft0, ft1, ft3", 0x3ff0000000000001ull, 0x3fefffffffffffffull,
            0xbff0000000000000ull) == 0x3c9ffffffffffffeull);
  check_fma_cases(fma_s_cases, sizeof(fma_s_cases) / sizeof(fma_s_cases[0]), fma_s_fns,
                  0xffffffff00000000ull);
  check_fma_cases(fma_d_cases, sizeof(fma_d_cases) / sizeof(fma_d_cases[0]), fma_d_fns, 0);

  /* FS: the state is dirty after FP writes; with FS off every FP instruction is illegal */
  CHECK((CSRR(mstatus) & MSTATUS_FS) == MSTATUS_FS && (int64_t)CSRR(mstatus) < 0);
  CSRC(mstatus, MSTATUS_FS);
  reset_trap();
  __asm__ volatile("fmv.w.x ft0, zero");
  CHECK(last_trap.count == 1 && last_trap.cause == 2);
  reset_trap();
  __asm__ volatile("csrr %0, fcsr" : "=r"(raw));
  CHECK(last_trap.count == 1 && last_trap.cause == 2);
  CSRS(mstatus, 1ul << 13);
  CHECK((CSRR(mstatus) & MSTATUS_FS) == (1ul << 13));
  __asm__ volatile("fmv.w.x ft0, zero");
  CHECK((CSRR(mstatus) & MSTATUS_FS) == MSTATUS_FS);
  /* fcsr packs frm and fflags */
  __asm__ volatile("csrw fcsr, %0" ::"r"(0xffull));
  CHECK(CSRR(frm) == 7 && CSRR(fflags) == 0x1f && CSRR(fcsr) == 0xff);
  return 0;
}
