/* F and D: arithmetic runs on the host FPU with its rounding mode and exception flags (x86-64
 * SSE detects tininess after rounding, like RISC-V); NaN results are replaced by the RISC-V
 * canonical NaN; min/max, comparisons, classification and float-to-integer conversions are done
 * in software because their RISC-V semantics differ from C's. */
#include <fenv.h>
#include <math.h>

#include "vm/cpu/cpu_internal.h"

#define FF_NX 1u
#define FF_UF 2u
#define FF_OF 4u
#define FF_DZ 8u
#define FF_NV 16u

#define RM_RNE 0
#define RM_RTZ 1
#define RM_RDN 2
#define RM_RUP 3
#define RM_RMM 4

#define CANON_S 0x7fc00000u
#define CANON_D 0x7ff8000000000000ull

/* Keep the compiler from moving arithmetic across the fenv calls around it. */
#define FP_BARRIER(v) __asm__ volatile("" : "+m"(v)::"memory")

static inline uint32_t unbox_s(uint64_t v) {
  return (v >> 32) == 0xffffffffu ? (uint32_t)v : CANON_S;
}
static inline uint64_t box_s(uint32_t v) { return 0xffffffff00000000ull | v; }
static inline float as_f(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static inline uint32_t f_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static inline double as_d(uint64_t u) { double f; memcpy(&f, &u, 8); return f; }
static inline uint64_t d_bits(double f) { uint64_t u; memcpy(&u, &f, 8); return u; }

static inline bool is_nan_s(uint32_t u) { return (u & 0x7f800000u) == 0x7f800000u && (u & 0x7fffff); }
static inline bool is_snan_s(uint32_t u) { return is_nan_s(u) && !(u & 0x400000u); }
static inline bool is_nan_d(uint64_t u) {
  return (u & 0x7ff0000000000000ull) == 0x7ff0000000000000ull && (u & 0xfffffffffffffull);
}
static inline bool is_snan_d(uint64_t u) { return is_nan_d(u) && !(u & 0x8000000000000ull); }

static inline uint32_t canon_s(float f) { return isnan(f) ? CANON_S : f_bits(f); }
static inline uint64_t canon_d(double f) { return isnan(f) ? CANON_D : d_bits(f); }

#define FS1 unbox_s(h->f[d->rs1])
#define FS2 unbox_s(h->f[d->rs2])
#define FS3 unbox_s(h->f[d->rs3])
#define FD1 (h->f[d->rs1])
#define FD2 (h->f[d->rs2])
#define FD3 (h->f[d->rs3])

static bool fp_on(rv_hart *h, const rv_insn *d) {
  if (unlikely(!(h->mstatus & MSTATUS_FS))) {
    rv_illegal(h, d);
    return false;
  }
  return true;
}

/* Resolve the rounding mode (dynamic -> frm); reserved modes are illegal instructions. */
static bool fp_rm(rv_hart *h, const rv_insn *d, int *rm) {
  if (!fp_on(h, d))
    return false;
  int r = d->rm == 7 ? (int)h->frm : d->rm;
  if (r > RM_RMM) {
    rv_illegal(h, d);
    return false;
  }
  *rm = r;
  return true;
}

static void fp_host_enter(int rm) {
  static const int host_rm[5] = {FE_TONEAREST, FE_TOWARDZERO, FE_DOWNWARD, FE_UPWARD,
                                 FE_TONEAREST};
  feclearexcept(FE_ALL_EXCEPT);
  if (rm != RM_RNE && rm != RM_RMM)
    fesetround(host_rm[rm]);
}

static unsigned fp_host_leave(int rm) {
  int e = fetestexcept(FE_ALL_EXCEPT);
  if (rm != RM_RNE && rm != RM_RMM)
    fesetround(FE_TONEAREST);
  unsigned f = 0;
  if (e & FE_INEXACT) f |= FF_NX;
  if (e & FE_UNDERFLOW) f |= FF_UF;
  if (e & FE_OVERFLOW) f |= FF_OF;
  if (e & FE_DIVBYZERO) f |= FF_DZ;
  if (e & FE_INVALID) f |= FF_NV;
  return f;
}

static void fp_done(rv_hart *h, unsigned flags) {
  h->fflags |= flags;
  rv_mark_fs_dirty(h);
}

/* ---------------------------------------------------------------- loads and stores */

RV_HANDLER(op_flw) {
  uint64_t v;
  if (fp_on(h, d) && rv_load(h, h->x[d->rs1] + (uint64_t)d->imm, 4, &v)) {
    h->f[d->rd] = box_s((uint32_t)v);
    rv_mark_fs_dirty(h);
  }
}
RV_HANDLER(op_fld) {
  uint64_t v;
  if (fp_on(h, d) && rv_load(h, h->x[d->rs1] + (uint64_t)d->imm, 8, &v)) {
    h->f[d->rd] = v;
    rv_mark_fs_dirty(h);
  }
}
RV_HANDLER(op_fsw) {
  if (fp_on(h, d))
    rv_store(h, h->x[d->rs1] + (uint64_t)d->imm, 4, (uint32_t)h->f[d->rs2]);
}
RV_HANDLER(op_fsd) {
  if (fp_on(h, d))
    rv_store(h, h->x[d->rs1] + (uint64_t)d->imm, 8, h->f[d->rs2]);
}

/* ---------------------------------------------------------------- arithmetic */

/* Round-to-nearest-max-magnitude has no host rounding mode. For single precision the operation is
 * done in double with round-toward-zero and a sticky last bit ("round to odd": double has more
 * than 2*24+2 bits, so rounding that once more to float is exact), then rounded to float by
 * looking at the midpoint between the two float neighbours. */
static float rmm_from_odd_double(double x, unsigned host_flags, unsigned *fl) {
  *fl = host_flags & (FF_NV | FF_DZ);
  if (isnan(x) || isinf(x))
    return (float)x;
  if (host_flags & FF_NX) {
    uint64_t u = d_bits(x) | 1;
    x = as_d(u);
  }
  fesetround(FE_TOWARDZERO);
  double xb = x;
  FP_BARRIER(xb);
  float t = (float)xb;
  FP_BARRIER(t);
  fesetround(FE_TONEAREST);
  if ((double)t == x)
    return t;
  float next = nextafterf(t, signbit(x) ? -INFINITY : INFINITY);
  double mid = isinf(next) ? copysign(0x1.ffffffp127, x) : ((double)t + (double)next) / 2;
  float r = fabs(x) >= fabs(mid) ? next : t;
  *fl |= FF_NX;
  if (isinf(r))
    *fl |= FF_OF;
  if (fabs(x) < 0x1p-126)
    *fl |= FF_UF;
  return r;
}

static float rmm_single(double (*op)(double, double, double), float a, float b, float c,
                        unsigned *fl) {
  double da = a, db = b, dc = c;
  fp_host_enter(RM_RTZ);
  FP_BARRIER(da);
  double x = op(da, db, dc);
  FP_BARRIER(x);
  unsigned hf = fp_host_leave(RM_RTZ);
  return rmm_from_odd_double(x, hf, fl);
}
static double d_add(double a, double b, double c) { (void)c; return a + b; }
static double d_sub(double a, double b, double c) { (void)c; return a - b; }
static double d_mul(double a, double b, double c) { (void)c; return a * b; }
static double d_div(double a, double b, double c) { (void)c; return a / b; }
static double d_sqrt(double a, double b, double c) { (void)b; (void)c; return sqrt(a); }
static double d_fma(double a, double b, double c) { return fma(a, b, c); }

/* For double precision the rounding error of +, -, * and / is exactly representable: RNE and
 * RMM differ only on an exact tie, where RMM moves one step away from zero. */
static double rmm_fix_tie(double r, double err) {
  if (err == 0 || isnan(r) || isinf(r) || signbit(err) != signbit(r))
    return r;
  double up = nextafter(r, copysign(INFINITY, r));
  return fabs(err) * 2 == fabs(up - r) ? up : r;
}
static double two_sum_err(double a, double b, double s) {
  double bb = s - a;
  return (a - (s - bb)) + (b - bb);
}

#define ARITH_S(name, expr, dop)                                                                   \
  RV_HANDLER(name) {                                                                               \
    int rm;                                                                                        \
    if (!fp_rm(h, d, &rm))                                                                         \
      return;                                                                                      \
    float a = as_f(FS1), b = as_f(FS2);                                                            \
    (void)b;                                                                                       \
    if (rm == RM_RMM) {                                                                            \
      unsigned fl;                                                                                 \
      float r = rmm_single(dop, a, b, 0, &fl);                                                     \
      h->f[d->rd] = box_s(canon_s(r));                                                             \
      fp_done(h, fl);                                                                              \
      return;                                                                                      \
    }                                                                                              \
    fp_host_enter(rm);                                                                             \
    FP_BARRIER(a);                                                                                 \
    FP_BARRIER(b);                                                                                 \
    float r = (expr);                                                                              \
    FP_BARRIER(r);                                                                                 \
    unsigned fl = fp_host_leave(rm);                                                               \
    h->f[d->rd] = box_s(canon_s(r));                                                               \
    fp_done(h, fl);                                                                                \
  }
#define ARITH_D(name, expr, err_expr)                                                              \
  RV_HANDLER(name) {                                                                               \
    int rm;                                                                                        \
    if (!fp_rm(h, d, &rm))                                                                         \
      return;                                                                                      \
    double a = as_d(FD1), b = as_d(FD2);                                                           \
    (void)b;                                                                                       \
    fp_host_enter(rm);                                                                             \
    FP_BARRIER(a);                                                                                 \
    FP_BARRIER(b);                                                                                 \
    double r = (expr);                                                                             \
    FP_BARRIER(r);                                                                                 \
    unsigned fl = fp_host_leave(rm);                                                               \
    if (rm == RM_RMM && (fl & FF_NX))                                                              \
      r = rmm_fix_tie(r, (err_expr));                                                              \
    h->f[d->rd] = canon_d(r);                                                                      \
    fp_done(h, fl);                                                                                \
  }

ARITH_S(op_fadd_s, a + b, d_add)
ARITH_S(op_fsub_s, a - b, d_sub)
ARITH_S(op_fmul_s, a *b, d_mul)
ARITH_S(op_fdiv_s, a / b, d_div)
ARITH_S(op_fsqrt_s, sqrtf(a), d_sqrt)
/* The error terms: exact for +/- (TwoSum), * (fma) and / (remainder scaled by the divisor). */
ARITH_D(op_fadd_d, a + b, two_sum_err(a, b, r))
ARITH_D(op_fsub_d, a - b, two_sum_err(a, -b, r))
ARITH_D(op_fmul_d, a *b, fma(a, b, -r))
ARITH_D(op_fdiv_d, a / b, -fma(r, b, -a) / b)
ARITH_D(op_fsqrt_d, sqrt(a), 0.0) /* a square root is never exactly halfway */

/* a*b+c with optional negation of the product and of c; inf*0 is invalid even when c is a
 * quiet NaN (the host may not flag it). */
#define FMA_S(name, neg_prod, neg_c)                                                               \
  RV_HANDLER(name) {                                                                               \
    int rm;                                                                                        \
    if (!fp_rm(h, d, &rm))                                                                         \
      return;                                                                                      \
    float a = as_f(FS1), b = as_f(FS2), c = as_f(FS3);                                             \
    unsigned extra = ((isinf(a) && b == 0) || (a == 0 && isinf(b))) ? FF_NV : 0;                   \
    if (neg_prod)                                                                                  \
      a = -a;                                                                                      \
    if (neg_c)                                                                                     \
      c = -c;                                                                                      \
    if (rm == RM_RMM) {                                                                            \
      unsigned fl;                                                                                 \
      float r = rmm_single(d_fma, a, b, c, &fl);                                                   \
      h->f[d->rd] = box_s(canon_s(r));                                                             \
      fp_done(h, fl | extra);                                                                      \
      return;                                                                                      \
    }                                                                                              \
    fp_host_enter(rm);                                                                             \
    FP_BARRIER(a);                                                                                 \
    float r = fmaf(a, b, c);                                                                       \
    FP_BARRIER(r);                                                                                 \
    unsigned fl = fp_host_leave(rm) | extra;                                                       \
    h->f[d->rd] = box_s(canon_s(r));                                                               \
    fp_done(h, fl);                                                                                \
  }
#define FMA_D(name, neg_prod, neg_c)                                                               \
  RV_HANDLER(name) {                                                                               \
    int rm;                                                                                        \
    if (!fp_rm(h, d, &rm))                                                                         \
      return;                                                                                      \
    double a = as_d(FD1), b = as_d(FD2), c = as_d(FD3);                                            \
    unsigned extra = ((isinf(a) && b == 0) || (a == 0 && isinf(b))) ? FF_NV : 0;                   \
    if (neg_prod)                                                                                  \
      a = -a;                                                                                      \
    if (neg_c)                                                                                     \
      c = -c;                                                                                      \
    fp_host_enter(rm);                                                                             \
    FP_BARRIER(a);                                                                                 \
    double r = fma(a, b, c);                                                                       \
    FP_BARRIER(r);                                                                                 \
    unsigned fl = fp_host_leave(rm) | extra;                                                       \
    h->f[d->rd] = canon_d(r);                                                                      \
    fp_done(h, fl);                                                                                \
  }
FMA_S(op_fmadd_s, 0, 0)
FMA_S(op_fmsub_s, 0, 1)
FMA_S(op_fnmsub_s, 1, 0)
FMA_S(op_fnmadd_s, 1, 1)
FMA_D(op_fmadd_d, 0, 0)
FMA_D(op_fmsub_d, 0, 1)
FMA_D(op_fnmsub_d, 1, 0)
FMA_D(op_fnmadd_d, 1, 1)

/* ---------------------------------------------------------------- sign injection, min/max */

#define SGNJ(name, get, put, signbit, expr)                                                        \
  RV_HANDLER(name) {                                                                               \
    if (!fp_on(h, d))                                                                              \
      return;                                                                                      \
    __typeof__(get(d->rs1)) a = get(d->rs1), b = get(d->rs2), sb = signbit;                        \
    h->f[d->rd] = put((a & ~sb) | ((expr) & sb));                                                  \
    rv_mark_fs_dirty(h);                                                                           \
  }
#define GET_S(r) unbox_s(h->f[r])
#define GET_D(r) (h->f[r])
#define PUT_D(v) (v)
SGNJ(op_fsgnj_s, GET_S, box_s, 0x80000000u, b)
SGNJ(op_fsgnjn_s, GET_S, box_s, 0x80000000u, ~b)
SGNJ(op_fsgnjx_s, GET_S, box_s, 0x80000000u, a ^ b)
SGNJ(op_fsgnj_d, GET_D, PUT_D, 0x8000000000000000ull, b)
SGNJ(op_fsgnjn_d, GET_D, PUT_D, 0x8000000000000000ull, ~b)
SGNJ(op_fsgnjx_d, GET_D, PUT_D, 0x8000000000000000ull, a ^ b)

static uint32_t minmax_s(rv_hart *h, uint32_t a, uint32_t b, bool max) {
  if (is_snan_s(a) || is_snan_s(b))
    h->fflags |= FF_NV;
  if (is_nan_s(a) && is_nan_s(b))
    return CANON_S;
  if (is_nan_s(a))
    return b;
  if (is_nan_s(b))
    return a;
  float fa = as_f(a), fb = as_f(b);
  if (fa == fb) /* equal, incl. +0/-0: min prefers the negative, max the positive */
    return max ? (a & b) : (a | b);
  return (max ? fa > fb : fa < fb) ? a : b;
}
static uint64_t minmax_d(rv_hart *h, uint64_t a, uint64_t b, bool max) {
  if (is_snan_d(a) || is_snan_d(b))
    h->fflags |= FF_NV;
  if (is_nan_d(a) && is_nan_d(b))
    return CANON_D;
  if (is_nan_d(a))
    return b;
  if (is_nan_d(b))
    return a;
  double fa = as_d(a), fb = as_d(b);
  if (fa == fb)
    return max ? (a & b) : (a | b);
  return (max ? fa > fb : fa < fb) ? a : b;
}
RV_HANDLER(op_fmin_s) { if (fp_on(h, d)) { h->f[d->rd] = box_s(minmax_s(h, FS1, FS2, false)); rv_mark_fs_dirty(h); } }
RV_HANDLER(op_fmax_s) { if (fp_on(h, d)) { h->f[d->rd] = box_s(minmax_s(h, FS1, FS2, true)); rv_mark_fs_dirty(h); } }
RV_HANDLER(op_fmin_d) { if (fp_on(h, d)) { h->f[d->rd] = minmax_d(h, FD1, FD2, false); rv_mark_fs_dirty(h); } }
RV_HANDLER(op_fmax_d) { if (fp_on(h, d)) { h->f[d->rd] = minmax_d(h, FD1, FD2, true); rv_mark_fs_dirty(h); } }

/* ---------------------------------------------------------------- comparisons, classify */

#define CMP(name, type, get, isnan_fn, issnan_fn, conv, op, signaling)                             \
  RV_HANDLER(name) {                                                                               \
    if (!fp_on(h, d))                                                                              \
      return;                                                                                      \
    type a = get(d->rs1), b = get(d->rs2);                                                         \
    uint64_t r = 0;                                                                                \
    if (isnan_fn(a) || isnan_fn(b)) {                                                              \
      if ((signaling) || issnan_fn(a) || issnan_fn(b)) {                                           \
        h->fflags |= FF_NV;                                                                        \
        rv_mark_fs_dirty(h);                                                                       \
      }                                                                                            \
    } else {                                                                                       \
      r = conv(a) op conv(b);                                                                      \
    }                                                                                              \
    h->x[d->rd] = r;                                                                               \
  }
CMP(op_feq_s, uint32_t, GET_S, is_nan_s, is_snan_s, as_f, ==, false)
CMP(op_flt_s, uint32_t, GET_S, is_nan_s, is_snan_s, as_f, <, true)
CMP(op_fle_s, uint32_t, GET_S, is_nan_s, is_snan_s, as_f, <=, true)
CMP(op_feq_d, uint64_t, GET_D, is_nan_d, is_snan_d, as_d, ==, false)
CMP(op_flt_d, uint64_t, GET_D, is_nan_d, is_snan_d, as_d, <, true)
CMP(op_fle_d, uint64_t, GET_D, is_nan_d, is_snan_d, as_d, <=, true)

static uint64_t fclass_bits(bool neg, bool inf, bool nan, bool snan, bool zero, bool subnormal) {
  if (nan)
    return snan ? 1u << 8 : 1u << 9;
  if (inf)
    return neg ? 1u << 0 : 1u << 7;
  if (zero)
    return neg ? 1u << 3 : 1u << 4;
  if (subnormal)
    return neg ? 1u << 2 : 1u << 5;
  return neg ? 1u << 1 : 1u << 6;
}
RV_HANDLER(op_fclass_s) {
  if (!fp_on(h, d))
    return;
  uint32_t u = FS1, e = (u >> 23) & 0xff, m = u & 0x7fffff;
  h->x[d->rd] = fclass_bits(u >> 31, e == 0xff && !m, is_nan_s(u), is_snan_s(u), !e && !m, !e && m);
}
RV_HANDLER(op_fclass_d) {
  if (!fp_on(h, d))
    return;
  uint64_t u = FD1, e = (u >> 52) & 0x7ff, m = u & 0xfffffffffffffull;
  h->x[d->rd] =
      fclass_bits(u >> 63, e == 0x7ff && !m, is_nan_d(u), is_snan_d(u), !e && !m, !e && m);
}

/* ---------------------------------------------------------------- moves */

RV_HANDLER(op_fmv_x_w) { if (fp_on(h, d)) h->x[d->rd] = (uint64_t)(int64_t)(int32_t)(uint32_t)h->f[d->rs1]; }
RV_HANDLER(op_fmv_x_d) { if (fp_on(h, d)) h->x[d->rd] = h->f[d->rs1]; }
RV_HANDLER(op_fmv_w_x) { if (fp_on(h, d)) { h->f[d->rd] = box_s((uint32_t)h->x[d->rs1]); rv_mark_fs_dirty(h); } }
RV_HANDLER(op_fmv_d_x) { if (fp_on(h, d)) { h->f[d->rd] = h->x[d->rs1]; rv_mark_fs_dirty(h); } }

/* ---------------------------------------------------------------- conversions */

static double round_by_mode(double x, int rm) {
  switch (rm) {
  case RM_RTZ: return trunc(x);
  case RM_RDN: return floor(x);
  case RM_RUP: return ceil(x);
  case RM_RMM: return round(x);
  default: return nearbyint(x); /* the host runs in round-to-nearest-even */
  }
}

/* Float to integer with RISC-V saturation: NaN and too-large values give the maximum, too-small
 * values the minimum, both with only NV set; otherwise NX when rounding changed the value. */
static uint64_t fcvt_to_int(double x, bool nan, int rm, bool is_signed, int bits, unsigned *fl) {
  double lo, hi_excl; /* valid range: lo <= r < hi_excl */
  uint64_t min_v, max_v;
  if (is_signed) {
    lo = -ldexp(1.0, bits - 1);
    hi_excl = ldexp(1.0, bits - 1);
    min_v = (uint64_t)1 << (bits - 1); /* bit pattern of the minimum, sign-extended below */
    max_v = ((uint64_t)1 << (bits - 1)) - 1;
    if (bits == 64)
      min_v = 0x8000000000000000ull;
    else
      min_v = (uint64_t)(int64_t)(int32_t)0x80000000u;
  } else {
    lo = 0;
    hi_excl = ldexp(1.0, bits);
    min_v = 0;
    max_v = bits == 64 ? UINT64_MAX : 0xffffffffull;
  }
  if (nan) {
    *fl = FF_NV;
    return bits == 32 ? (uint64_t)(int64_t)(int32_t)(uint32_t)max_v : max_v;
  }
  double r = round_by_mode(x, rm);
  if (r >= hi_excl) {
    *fl = FF_NV;
    return bits == 32 ? (uint64_t)(int64_t)(int32_t)(uint32_t)max_v : max_v;
  }
  if (r < lo) {
    *fl = FF_NV;
    return min_v;
  }
  *fl = r != x ? FF_NX : 0;
  uint64_t v = is_signed ? (uint64_t)(int64_t)r : (uint64_t)r;
  if (bits == 32)
    v = (uint64_t)(int64_t)(int32_t)(uint32_t)v;
  return v;
}

#define CVT_TO_INT(name, getd, isnan_fn, getbits, sgn, bits)                                       \
  RV_HANDLER(name) {                                                                               \
    int rm;                                                                                        \
    if (!fp_rm(h, d, &rm))                                                                         \
      return;                                                                                      \
    unsigned fl;                                                                               \
    h->x[d->rd] = fcvt_to_int(getd, isnan_fn(getbits), rm, sgn, bits, &fl);                        \
    if (fl)                                                                                        \
      fp_done(h, fl);                                                                              \
  }
CVT_TO_INT(op_fcvt_w_s, (double)as_f(FS1), is_nan_s, FS1, true, 32)
CVT_TO_INT(op_fcvt_wu_s, (double)as_f(FS1), is_nan_s, FS1, false, 32)
CVT_TO_INT(op_fcvt_l_s, (double)as_f(FS1), is_nan_s, FS1, true, 64)
CVT_TO_INT(op_fcvt_lu_s, (double)as_f(FS1), is_nan_s, FS1, false, 64)
CVT_TO_INT(op_fcvt_w_d, as_d(FD1), is_nan_d, FD1, true, 32)
CVT_TO_INT(op_fcvt_wu_d, as_d(FD1), is_nan_d, FD1, false, 32)
CVT_TO_INT(op_fcvt_l_d, as_d(FD1), is_nan_d, FD1, true, 64)
CVT_TO_INT(op_fcvt_lu_d, as_d(FD1), is_nan_d, FD1, false, 64)

/* Integer to float, rounded by the host in the requested mode. Round-to-nearest-max-magnitude
 * differs from RNE only on exact ties, which an integer source has when it needs more bits than
 * the mantissa holds: handled by looking at the neighbours. */
#define CVT_FROM_INT(name, itype, expr, ftype, store)                                              \
  RV_HANDLER(name) {                                                                               \
    int rm;                                                                                        \
    if (!fp_rm(h, d, &rm))                                                                         \
      return;                                                                                      \
    itype v = (itype)(expr);                                                                       \
    fp_host_enter(rm == RM_RMM ? RM_RTZ : rm);                                                     \
    FP_BARRIER(v);                                                                                 \
    ftype r = (ftype)v;                                                                            \
    FP_BARRIER(r);                                                                                 \
    unsigned fl = fp_host_leave(rm == RM_RMM ? RM_RTZ : rm);                                       \
    if (rm == RM_RMM && (fl & FF_NX))                                                              \
      r = rmm_fix_##ftype((long double)v, r);                                                      \
    h->f[d->rd] = store(r);                                                                        \
    fp_done(h, fl);                                                                                \
  }

/* r is the truncated result of exact value x (|r| <= |x|); step away from zero when x is at or
 * beyond the midpoint to the next representable value. long double holds every 64-bit integer. */
static float rmm_fix_float(long double x, float r) {
  float next = nextafterf(r, x < 0 ? -INFINITY : INFINITY);
  long double mid = ((long double)r + (long double)next) / 2;
  return (x < 0 ? x <= mid : x >= mid) ? next : r;
}
static double rmm_fix_double(long double x, double r) {
  double next = nextafter(r, x < 0 ? -INFINITY : INFINITY);
  long double mid = ((long double)r + (long double)next) / 2;
  return (x < 0 ? x <= mid : x >= mid) ? next : r;
}
#define STORE_S(r) box_s(f_bits(r))
#define STORE_D(r) d_bits(r)
CVT_FROM_INT(op_fcvt_s_w, int32_t, h->x[d->rs1], float, STORE_S)
CVT_FROM_INT(op_fcvt_s_wu, uint32_t, h->x[d->rs1], float, STORE_S)
CVT_FROM_INT(op_fcvt_s_l, int64_t, h->x[d->rs1], float, STORE_S)
CVT_FROM_INT(op_fcvt_s_lu, uint64_t, h->x[d->rs1], float, STORE_S)
CVT_FROM_INT(op_fcvt_d_w, int32_t, h->x[d->rs1], double, STORE_D)
CVT_FROM_INT(op_fcvt_d_wu, uint32_t, h->x[d->rs1], double, STORE_D)
CVT_FROM_INT(op_fcvt_d_l, int64_t, h->x[d->rs1], double, STORE_D)
CVT_FROM_INT(op_fcvt_d_lu, uint64_t, h->x[d->rs1], double, STORE_D)

RV_HANDLER(op_fcvt_s_d) {
  int rm;
  if (!fp_rm(h, d, &rm))
    return;
  double a = as_d(FD1);
  int host = rm == RM_RMM ? RM_RTZ : rm;
  fp_host_enter(host);
  FP_BARRIER(a);
  float r = (float)a;
  FP_BARRIER(r);
  unsigned fl = fp_host_leave(host);
  if (rm == RM_RMM && (fl & FF_NX) && !isnan(a)) {
    float fixed = rmm_fix_float((long double)a, r);
    if (isinf(fixed) && !isinf(r))
      fl |= FF_OF;
    r = fixed;
  }
  h->f[d->rd] = box_s(canon_s(r));
  fp_done(h, fl);
}
RV_HANDLER(op_fcvt_d_s) {
  int rm;
  if (!fp_rm(h, d, &rm))
    return;
  float a = as_f(FS1);
  fp_host_enter(RM_RNE);
  FP_BARRIER(a);
  double r = (double)a;
  FP_BARRIER(r);
  unsigned fl = fp_host_leave(RM_RNE);
  h->f[d->rd] = canon_d(r);
  fp_done(h, fl);
}
