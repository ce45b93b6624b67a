/* The exact software floating point (src/vm/cpu/softfp.c): checked against the host FPU in the
 * four rounding modes both have, on edge cases and on many pseudo-random operands (results and
 * all five flags), and on hand-checked ties for round to nearest, ties to max magnitude (RMM),
 * which the host lacks. */
#include <fenv.h>
#include <math.h>

#include "tap.h"

#include "vm/cpu/cpu_internal.h"

#define FP_BARRIER(v) __asm__ volatile("" : "+m"(v)::"memory")

static const int host_modes[4] = {FE_TONEAREST, FE_TOWARDZERO, FE_DOWNWARD, FE_UPWARD};

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;
static uint64_t rng(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return rng_state;
}

static unsigned host_flags(void) {
  int e = fetestexcept(FE_ALL_EXCEPT);
  return ((e & FE_INEXACT) ? RV_FF_NX : 0) | ((e & FE_UNDERFLOW) ? RV_FF_UF : 0) |
         ((e & FE_OVERFLOW) ? RV_FF_OF : 0) | ((e & FE_DIVBYZERO) ? RV_FF_DZ : 0) |
         ((e & FE_INVALID) ? RV_FF_NV : 0);
}

static double as_d(uint64_t u) {
  double f;
  memcpy(&f, &u, 8);
  return f;
}
static uint64_t d_bits(double f) {
  uint64_t u;
  memcpy(&u, &f, 8);
  return u;
}
static float as_f(uint32_t u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}
static uint32_t f_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
}

/* Operands that reach every path: specials, subnormals, the overflow edge, short and random
 * significands over the whole exponent range. */
static uint64_t pick_d(void) {
  uint64_t r = rng(), sign = r & (1ULL << 63);
  switch (r % 11) {
  case 0:
    return sign | (rng() % 4 == 0 ? 0x7ff0000000000000ULL : 0);
  case 1:
    return sign | (rng() & 0xfffffffffffffULL); /* subnormal */
  case 2:
    return sign | (0x7fe0000000000000ULL - (rng() % 8) * 0x10000000000000ULL) |
           (rng() & 0xfffffffffffffULL);
  case 3:
    return sign | ((0x3ff0000000000000ULL + (rng() % 64 - 32) * 0x10000000000000ULL)) |
           (rng() & 0xfff0000000000000ULL >> 12); /* few significant bits */
  case 4:
    return sign | (0x0010000000000000ULL * (1 + rng() % 60)) | (rng() & 0xfffffffffffffULL);
  case 5:
    return rng() % 16 == 0 ? (sign | 0x7ff0000000000001ULL | (rng() & 0x8000000000000ULL)) : rng();
  default:
    return sign | ((0x3ff0000000000000ULL + (rng() % 256 - 128) * 0x10000000000000ULL)) |
           (rng() & 0xfffffffffffffULL);
  }
}
static uint32_t pick_s(void) {
  uint32_t r = (uint32_t)rng(), sign = r & 0x80000000U;
  switch (r % 11) {
  case 0:
    return sign | (rng() % 4 == 0 ? 0x7f800000U : 0);
  case 1:
    return sign | ((uint32_t)rng() & 0x7fffffU);
  case 2:
    return sign | (0x7f000000U - (uint32_t)(rng() % 8) * 0x800000U) | ((uint32_t)rng() & 0x7fffffU);
  case 3:
    return sign | (0x3f800000U + (uint32_t)(rng() % 32) * 0x800000U) |
           ((uint32_t)rng() & 0x7f0000U);
  case 4:
    return sign | (0x800000U * (uint32_t)(1 + rng() % 30)) | ((uint32_t)rng() & 0x7fffffU);
  case 5:
    return (uint32_t)rng();
  default:
    return sign | (0x3f800000U + (uint32_t)(rng() % 64) * 0x800000U - 32 * 0x800000U) |
           ((uint32_t)rng() & 0x7fffffU);
  }
}

static uint64_t canon_d(double r) { return isnan(r) ? 0x7ff8000000000000ULL : d_bits(r); }
static uint32_t canon_s(float r) { return isnan(r) ? 0x7fc00000U : f_bits(r); }

static unsigned inf_times_zero_nv(double a, double b) {
  return ((isinf(a) && b == 0) || (a == 0 && isinf(b))) ? RV_FF_NV : 0;
}

#define EXPECT_SAME(what, got, gotf, want, wantf, ctx, ...)                                        \
  do {                                                                                             \
    unsigned long long got_ = (got), want_ = (want);                                               \
    unsigned gotf_ = (gotf), wantf_ = (wantf);                                                     \
    if (got_ != want_ || gotf_ != wantf_)                                                          \
      TAP_FAIL(what ": got %#llx flags %#x, host %#llx flags %#x; " ctx, got_, gotf_, want_,       \
               wantf_, __VA_ARGS__);                                                               \
  } while (0)

TEST(fma_d_matches_host_in_four_modes) {
  for (int i = 0; i < 400000; i++) {
    int rm = i % 4;
    uint64_t a = pick_d(), b = pick_d(), c = pick_d();
    if (i % 3 == 0 && !isnan(as_d(a) * as_d(b))) /* near-cancellation: c ~ -(a*b) */
      c = d_bits(-(as_d(a) * as_d(b))) + (rng() % 5) - 2;
    double x = as_d(a), y = as_d(b), z = as_d(c);
    feclearexcept(FE_ALL_EXCEPT);
    fesetround(host_modes[rm]);
    FP_BARRIER(x);
    double r = fma(x, y, z);
    FP_BARRIER(r);
    unsigned hf = host_flags() | inf_times_zero_nv(x, y);
    fesetround(FE_TONEAREST);
    unsigned sf = 0;
    uint64_t s = rv_softfp_fma(RV_FP_D, a, b, c, rm, &sf);
    EXPECT_SAME("fma.d", s, sf, canon_d(r), hf, "a=%#llx b=%#llx c=%#llx rm=%d",
                (unsigned long long)a, (unsigned long long)b, (unsigned long long)c, rm);
  }
  CHECK(true);
}

TEST(fma_s_matches_host_in_four_modes) {
  for (int i = 0; i < 400000; i++) {
    int rm = i % 4;
    uint32_t a = pick_s(), b = pick_s(), c = pick_s();
    if (i % 3 == 0 && !isnan(as_f(a) * as_f(b)))
      c = f_bits(-(as_f(a) * as_f(b))) + (uint32_t)(rng() % 5) - 2;
    float x = as_f(a), y = as_f(b), z = as_f(c);
    feclearexcept(FE_ALL_EXCEPT);
    fesetround(host_modes[rm]);
    FP_BARRIER(x);
    float r = fmaf(x, y, z);
    FP_BARRIER(r);
    unsigned hf = host_flags() | inf_times_zero_nv(x, y);
    fesetround(FE_TONEAREST);
    unsigned sf = 0;
    uint64_t s = rv_softfp_fma(RV_FP_S, a, b, c, rm, &sf);
    EXPECT_SAME("fma.s", s, sf, (uint64_t)canon_s(r), hf, "a=%#x b=%#x c=%#x rm=%d", a, b, c, rm);
  }
  CHECK(true);
}

TEST(div_matches_host_in_four_modes) {
  for (int i = 0; i < 200000; i++) {
    int rm = i % 4;
    uint64_t a = pick_d(), b = pick_d();
    uint32_t fa = pick_s(), fb = pick_s();
    double x = as_d(a), y = as_d(b);
    float fx = as_f(fa), fy = as_f(fb);
    feclearexcept(FE_ALL_EXCEPT);
    fesetround(host_modes[rm]);
    FP_BARRIER(x);
    FP_BARRIER(y);
    double r = x / y;
    FP_BARRIER(r);
    unsigned hf = host_flags();
    feclearexcept(FE_ALL_EXCEPT);
    FP_BARRIER(fx);
    FP_BARRIER(fy);
    float fr = fx / fy;
    FP_BARRIER(fr);
    unsigned hff = host_flags();
    fesetround(FE_TONEAREST);
    unsigned sf = 0, sff = 0;
    uint64_t s = rv_softfp_div(RV_FP_D, a, b, rm, &sf);
    uint64_t ss = rv_softfp_div(RV_FP_S, fa, fb, rm, &sff);
    EXPECT_SAME("div.d", s, sf, canon_d(r), hf, "a=%#llx b=%#llx rm=%d", (unsigned long long)a,
                (unsigned long long)b, rm);
    EXPECT_SAME("div.s", ss, sff, (uint64_t)canon_s(fr), hff, "a=%#x b=%#x rm=%d", fa, fb, rm);
  }
  CHECK(true);
}

TEST(conversions_match_host_in_four_modes) {
  for (int i = 0; i < 200000; i++) {
    int rm = i % 4;
    int64_t v = (int64_t)(rng() >> (rng() % 64));
    if (i & 1)
      v = -v;
    uint64_t dbl = pick_d();
    double x = as_d(dbl);
    feclearexcept(FE_ALL_EXCEPT);
    fesetround(host_modes[rm]);
    FP_BARRIER(v);
    double rd = (double)v;
    FP_BARRIER(rd);
    unsigned fd = host_flags();
    feclearexcept(FE_ALL_EXCEPT);
    float rs = (float)v;
    FP_BARRIER(rs);
    unsigned fs = host_flags();
    feclearexcept(FE_ALL_EXCEPT);
    FP_BARRIER(x);
    float rn = (float)x;
    FP_BARRIER(rn);
    unsigned fn = host_flags();
    fesetround(FE_TONEAREST);
    unsigned f1 = 0, f2 = 0, f3 = 0;
    uint64_t mag = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
    EXPECT_SAME("cvt.d.l", rv_softfp_from_int(RV_FP_D, v < 0, mag, rm, &f1), f1, d_bits(rd), fd,
                "v=%lld rm=%d", (long long)v, rm);
    EXPECT_SAME("cvt.s.l", rv_softfp_from_int(RV_FP_S, v < 0, mag, rm, &f2), f2,
                (uint64_t)f_bits(rs), fs, "v=%lld rm=%d", (long long)v, rm);
    EXPECT_SAME("cvt.s.d", rv_softfp_narrow(dbl, rm, &f3), f3, (uint64_t)canon_s(rn), fn,
                "d=%#llx rm=%d", (unsigned long long)dbl, rm);
  }
  CHECK(true);
}

/* Ties to max magnitude, hand-checked: an exact result halfway between two neighbours rounds
 * away from zero (RNE would pick the even one); just below halfway rounds down. */
TEST(rmm_rounds_ties_away_from_zero) {
  unsigned f = 0;
  /* (1 + 2^-52) * (1 + 2^-1) + 0 = 1.5 + 1.5*2^-52: the 2^-53 bit is a tie; RMM -> up */
  CHECK(rv_softfp_fma(RV_FP_D, 0x3ff0000000000001ULL, 0x3ff8000000000000ULL, 0, RV_RM_RMM, &f) ==
            0x3ff8000000000002ULL &&
        f == RV_FF_NX);
  f = 0;
  CHECK(rv_softfp_fma(RV_FP_D, 0x3ff0000000000001ULL, 0x3ff8000000000000ULL, 0, RV_RM_RNE, &f) ==
        0x3ff8000000000002ULL); /* 1.5+1.5u: mantissa ...1|1 -> even is up as well */
  /* 1 * 1 + 2^-53 = 1 + half an ulp: RMM -> 1 + 2^-52, RNE -> 1 */
  f = 0;
  CHECK(rv_softfp_fma(RV_FP_D, 0x3ff0000000000000ULL, 0x3ff0000000000000ULL, 0x3ca0000000000000ULL,
                      RV_RM_RMM, &f) == 0x3ff0000000000001ULL &&
        f == RV_FF_NX);
  f = 0;
  CHECK(rv_softfp_fma(RV_FP_D, 0x3ff0000000000000ULL, 0x3ff0000000000000ULL, 0x3ca0000000000000ULL,
                      RV_RM_RNE, &f) == 0x3ff0000000000000ULL &&
        f == RV_FF_NX);
  /* negative: -(1 + 2^-53) -> -(1 + 2^-52) */
  f = 0;
  CHECK(rv_softfp_fma(RV_FP_D, 0xbff0000000000000ULL, 0x3ff0000000000000ULL, 0xbca0000000000000ULL,
                      RV_RM_RMM, &f) == 0xbff0000000000001ULL);
  /* just below the tie: (1 + 2^-52) * (1 - 2^-53) = 1 + 2^-53 - 2^-105 -> 1 */
  f = 0;
  CHECK(rv_softfp_fma(RV_FP_D, 0x3ff0000000000001ULL, 0x3fefffffffffffffULL, 0, RV_RM_RMM, &f) ==
            0x3ff0000000000000ULL &&
        f == RV_FF_NX);
  /* single: 1 + 2^-24 is a tie */
  f = 0;
  CHECK(rv_softfp_fma(RV_FP_S, 0x3f800000U, 0x3f800000U, 0x33800000U, RV_RM_RMM, &f) ==
            0x3f800001U &&
        f == RV_FF_NX);
  /* subnormal tie: 2^-1074 / 2 = 2^-1075, halfway between 0 and the smallest subnormal */
  f = 0;
  CHECK(rv_softfp_div(RV_FP_D, 1, 0x4000000000000000ULL, RV_RM_RMM, &f) == 1 &&
        f == (RV_FF_NX | RV_FF_UF));
  f = 0;
  CHECK(rv_softfp_div(RV_FP_D, 1, 0x4000000000000000ULL, RV_RM_RNE, &f) == 0 &&
        f == (RV_FF_NX | RV_FF_UF));
  /* tininess after rounding: (2^27 - 1) * 2^-600 * (2^27 + 1) * 2^-476 = 2^-1022 - 2^-1076
   * rounds up to the smallest normal with an unbounded exponent too, so it is not tiny: NX
   * without UF. 2^-1022 - 2^-1075 has 53 bits: tiny, so UF with the same result. */
  f = 0;
  CHECK(rv_softfp_fma(RV_FP_D, 0x1c1ffffffc000000ULL, 0x23e0000002000000ULL, 0, RV_RM_RMM, &f) ==
            0x0010000000000000ULL &&
        f == RV_FF_NX);
  f = 0;
  CHECK(rv_softfp_fma(RV_FP_D, 0x001fffffffffffffULL, 0x3fe0000000000000ULL, 0, RV_RM_RMM, &f) ==
            0x0010000000000000ULL &&
        f == (RV_FF_NX | RV_FF_UF));
  /* overflow: the largest finite times (1 + 2^-53) ties up to 2^1024: infinity, OF|NX */
  f = 0;
  CHECK(rv_softfp_fma(RV_FP_D, 0x7fefffffffffffffULL, 0x3ff0000000000000ULL, 0x7c90000000000000ULL,
                      RV_RM_RMM, &f) == 0x7ff0000000000000ULL &&
        f == (RV_FF_OF | RV_FF_NX));
  /* integer ties: 2^24 + 1 -> 2^24 + 2 in single; 2^53 + 1 -> 2^53 + 2 in double */
  f = 0;
  CHECK(rv_softfp_from_int(RV_FP_S, false, 16777217, RV_RM_RMM, &f) == 0x4b800001U &&
        f == RV_FF_NX);
  f = 0;
  CHECK(rv_softfp_from_int(RV_FP_D, true, (1ULL << 53) + 1, RV_RM_RMM, &f) ==
        0xc340000000000001ULL);
  /* exact cancellation is +0 (RMM) or -0 (RDN), no flags */
  f = 0;
  CHECK(rv_softfp_fma(RV_FP_D, 0x3ff0000000000000ULL, 0x3ff0000000000000ULL, 0xbff0000000000000ULL,
                      RV_RM_RMM, &f) == 0 &&
        f == 0);
  CHECK(rv_softfp_fma(RV_FP_D, 0x3ff0000000000000ULL, 0x3ff0000000000000ULL, 0xbff0000000000000ULL,
                      RV_RM_RDN, &f) == 0x8000000000000000ULL &&
        f == 0);
  /* inf * 0 + qNaN is invalid */
  f = 0;
  CHECK(rv_softfp_fma(RV_FP_D, 0x7ff0000000000000ULL, 0, 0x7ff8000000000000ULL, RV_RM_RMM, &f) ==
            0x7ff8000000000000ULL &&
        f == RV_FF_NV);
}

int main(void) { return tap_run(); }
