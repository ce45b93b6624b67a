/* F and D: arithmetic runs on the host FPU with its rounding mode and exception flags (x86-64
 * SSE detects tininess after rounding, like RISC-V), except round to nearest with ties to max
 * magnitude, which the host lacks: that is computed exactly in software (softfp.c). NaN results are
 * replaced by the RISC-V canonical NaN; min/max, comparisons, classification and float-to-integer
 * conversions are done in software because their RISC-V semantics differ from C's. */
#include <fenv.h>
#include <math.h>

#include "vm/cpu/cpu_internal.h"

#define CANON_S 0x7fc00000U
#define CANON_D 0x7ff8000000000000ULL

/* Keep the compiler from moving arithmetic across the fenv calls around it. */
#define FP_BARRIER(v) __asm__ volatile("" : "+m"(v)::"memory")

static inline uint32_t unbox_s(uint64_t v) {
  return (v >> 32) == 0xffffffffU ? (uint32_t)v : CANON_S;
}
static inline uint64_t box_s(uint32_t v) { return 0xffffffff00000000ULL | v; }
static inline float as_f(uint32_t u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}
static inline uint32_t f_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
}
static inline double as_d(uint64_t u) {
  double f;
  memcpy(&f, &u, 8);
  return f;
}
static inline uint64_t d_bits(double f) {
  uint64_t u;
  memcpy(&u, &f, 8);
  return u;
}

static inline bool is_nan_s(uint32_t u) {
  return (u & 0x7f800000U) == 0x7f800000U && (u & 0x7fffff);
}
static inline bool is_snan_s(uint32_t u) { return is_nan_s(u) && !(u & 0x400000U); }
static inline bool is_nan_d(uint64_t u) {
  return (u & 0x7ff0000000000000ULL) == 0x7ff0000000000000ULL && (u & 0xfffffffffffffULL);
}
static inline bool is_snan_d(uint64_t u) { return is_nan_d(u) && !(u & 0x8000000000000ULL); }

static inline uint32_t canon_s(float f) { return isnan(f) ? CANON_S : f_bits(f); }
static inline uint64_t canon_d(double f) { return isnan(f) ? CANON_D : d_bits(f); }

#define FS1 unbox_s(h->f[d->rs1])
#define FS2 unbox_s(h->f[d->rs2])
#define FS3 unbox_s(h->f[d->rs3])
#define FD1 (h->f[d->rs1])
#define FD2 (h->f[d->rs2])
#define FD3 (h->f[d->rs3])

static bool fp_on(rv_hart *h, const rv_insn *d) {
  if (unlikely(!rv_fs_enabled(h))) {
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
  if (r > RV_RM_RMM) {
    rv_illegal(h, d);
    return false;
  }
  *rm = r;
  return true;
}

static void fp_host_enter(int rm) {
  static const int host_rm[5] = {FE_TONEAREST, FE_TOWARDZERO, FE_DOWNWARD, FE_UPWARD, FE_TONEAREST};
  feclearexcept(FE_ALL_EXCEPT);
  if (rm != RV_RM_RNE && rm != RV_RM_RMM)
    fesetround(host_rm[rm]);
}

static unsigned fp_host_leave(int rm) {
  int e = fetestexcept(FE_ALL_EXCEPT);
  if (rm != RV_RM_RNE && rm != RV_RM_RMM)
    fesetround(FE_TONEAREST);
  unsigned f = 0;
  if (e & FE_INEXACT)
    f |= RV_FF_NX;
  if (e & FE_UNDERFLOW)
    f |= RV_FF_UF;
  if (e & FE_OVERFLOW)
    f |= RV_FF_OF;
  if (e & FE_DIVBYZERO)
    f |= RV_FF_DZ;
  if (e & FE_INVALID)
    f |= RV_FF_NV;
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

/* Round to nearest, ties to max magnitude (RMM) has no host rounding mode: those operations are
 * computed exactly in software (softfp.c). +, - and * are fused multiply-adds with an exact term
 * (a*1 + b, a*b + -0, which keeps the sign of a zero product). A square root is never exactly
 * halfway between two floating-point numbers, so RMM rounds it like RNE on the host. */
typedef uint64_t (*rmm_fn)(int fmt, uint64_t a, uint64_t b, unsigned *fl);

static uint64_t one_bits(int fmt) { return fmt == RV_FP_S ? 0x3f800000U : 0x3ff0000000000000ULL; }
static uint64_t sign_bit(int fmt) { return fmt == RV_FP_S ? 0x80000000U : 0x8000000000000000ULL; }

static uint64_t rmm_add(int fmt, uint64_t a, uint64_t b, unsigned *fl) {
  return rv_softfp_fma(fmt, a, one_bits(fmt), b, RV_RM_RMM, fl);
}
static uint64_t rmm_sub(int fmt, uint64_t a, uint64_t b, unsigned *fl) {
  return rv_softfp_fma(fmt, a, one_bits(fmt), b ^ sign_bit(fmt), RV_RM_RMM, fl);
}
static uint64_t rmm_mul(int fmt, uint64_t a, uint64_t b, unsigned *fl) {
  return rv_softfp_fma(fmt, a, b, sign_bit(fmt), RV_RM_RMM, fl);
}
static uint64_t rmm_div(int fmt, uint64_t a, uint64_t b, unsigned *fl) {
  return rv_softfp_div(fmt, a, b, RV_RM_RMM, fl);
}

#define ARITH_S(name, expr, rmm)                                                                   \
  RV_HANDLER(name) {                                                                               \
    int rm;                                                                                        \
    if (!fp_rm(h, d, &rm))                                                                         \
      return;                                                                                      \
    rmm_fn soft = (rmm);                                                                           \
    if (rm == RV_RM_RMM && soft) {                                                                 \
      unsigned fl = 0;                                                                             \
      h->f[d->rd] = box_s((uint32_t)soft(RV_FP_S, FS1, FS2, &fl));                                 \
      fp_done(h, fl);                                                                              \
      return;                                                                                      \
    }                                                                                              \
    float a = as_f(FS1), b = as_f(FS2);                                                            \
    (void)b;                                                                                       \
    fp_host_enter(rm);                                                                             \
    FP_BARRIER(a);                                                                                 \
    FP_BARRIER(b);                                                                                 \
    float r = (expr);                                                                              \
    FP_BARRIER(r);                                                                                 \
    unsigned fl = fp_host_leave(rm);                                                               \
    h->f[d->rd] = box_s(canon_s(r));                                                               \
    fp_done(h, fl);                                                                                \
  }
#define ARITH_D(name, expr, rmm)                                                                   \
  RV_HANDLER(name) {                                                                               \
    int rm;                                                                                        \
    if (!fp_rm(h, d, &rm))                                                                         \
      return;                                                                                      \
    rmm_fn soft = (rmm);                                                                           \
    if (rm == RV_RM_RMM && soft) {                                                                 \
      unsigned fl = 0;                                                                             \
      h->f[d->rd] = soft(RV_FP_D, FD1, FD2, &fl);                                                  \
      fp_done(h, fl);                                                                              \
      return;                                                                                      \
    }                                                                                              \
    double a = as_d(FD1), b = as_d(FD2);                                                           \
    (void)b;                                                                                       \
    fp_host_enter(rm);                                                                             \
    FP_BARRIER(a);                                                                                 \
    FP_BARRIER(b);                                                                                 \
    double r = (expr);                                                                             \
    FP_BARRIER(r);                                                                                 \
    unsigned fl = fp_host_leave(rm);                                                               \
    h->f[d->rd] = canon_d(r);                                                                      \
    fp_done(h, fl);                                                                                \
  }

ARITH_S(op_fadd_s, a + b, rmm_add)
ARITH_S(op_fsub_s, a - b, rmm_sub)
ARITH_S(op_fmul_s, a *b, rmm_mul)
ARITH_S(op_fdiv_s, a / b, rmm_div)
ARITH_S(op_fsqrt_s, sqrtf(a), NULL)
ARITH_D(op_fadd_d, a + b, rmm_add)
ARITH_D(op_fsub_d, a - b, rmm_sub)
ARITH_D(op_fmul_d, a *b, rmm_mul)
ARITH_D(op_fdiv_d, a / b, rmm_div)
ARITH_D(op_fsqrt_d, sqrt(a), NULL)

/* a*b+c with optional negation of the product and of c. The host's fma rounds once in the four
 * modes it has (inf*0 is invalid even when c is a quiet NaN, which the host may not flag); RMM
 * goes to the exact software FMA. */
#define FMA_S(name, neg_prod, neg_c)                                                               \
  RV_HANDLER(name) {                                                                               \
    int rm;                                                                                        \
    if (!fp_rm(h, d, &rm))                                                                         \
      return;                                                                                      \
    uint32_t ua = FS1 ^ ((neg_prod) ? 0x80000000U : 0), uc = FS3 ^ ((neg_c) ? 0x80000000U : 0);    \
    if (rm == RV_RM_RMM) {                                                                         \
      unsigned fl = 0;                                                                             \
      h->f[d->rd] = box_s((uint32_t)rv_softfp_fma(RV_FP_S, ua, FS2, uc, rm, &fl));                 \
      fp_done(h, fl);                                                                              \
      return;                                                                                      \
    }                                                                                              \
    float a = as_f(ua), b = as_f(FS2), c = as_f(uc);                                               \
    unsigned extra = ((isinf(a) && b == 0) || (a == 0 && isinf(b))) ? RV_FF_NV : 0;                \
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
    uint64_t ua = FD1 ^ ((neg_prod) ? 1ULL << 63 : 0), uc = FD3 ^ ((neg_c) ? 1ULL << 63 : 0);      \
    if (rm == RV_RM_RMM) {                                                                         \
      unsigned fl = 0;                                                                             \
      h->f[d->rd] = rv_softfp_fma(RV_FP_D, ua, FD2, uc, rm, &fl);                                  \
      fp_done(h, fl);                                                                              \
      return;                                                                                      \
    }                                                                                              \
    double a = as_d(ua), b = as_d(FD2), c = as_d(uc);                                              \
    unsigned extra = ((isinf(a) && b == 0) || (a == 0 && isinf(b))) ? RV_FF_NV : 0;                \
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
    h->f[d->rd] = put((a & ~sb) | ((expr)&sb));                                                    \
    rv_mark_fs_dirty(h);                                                                           \
  }
#define GET_S(r) unbox_s(h->f[r])
#define GET_D(r) (h->f[r])
#define PUT_D(v) (v)
SGNJ(op_fsgnj_s, GET_S, box_s, 0x80000000U, b)
SGNJ(op_fsgnjn_s, GET_S, box_s, 0x80000000U, ~b)
SGNJ(op_fsgnjx_s, GET_S, box_s, 0x80000000U, a ^ b)
SGNJ(op_fsgnj_d, GET_D, PUT_D, 0x8000000000000000ULL, b)
SGNJ(op_fsgnjn_d, GET_D, PUT_D, 0x8000000000000000ULL, ~b)
SGNJ(op_fsgnjx_d, GET_D, PUT_D, 0x8000000000000000ULL, a ^ b)

static uint32_t minmax_s(rv_hart *h, uint32_t a, uint32_t b, bool max) {
  if (is_snan_s(a) || is_snan_s(b))
    h->fflags |= RV_FF_NV;
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
    h->fflags |= RV_FF_NV;
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
RV_HANDLER(op_fmin_s) {
  if (fp_on(h, d)) {
    h->f[d->rd] = box_s(minmax_s(h, FS1, FS2, false));
    rv_mark_fs_dirty(h);
  }
}
RV_HANDLER(op_fmax_s) {
  if (fp_on(h, d)) {
    h->f[d->rd] = box_s(minmax_s(h, FS1, FS2, true));
    rv_mark_fs_dirty(h);
  }
}
RV_HANDLER(op_fmin_d) {
  if (fp_on(h, d)) {
    h->f[d->rd] = minmax_d(h, FD1, FD2, false);
    rv_mark_fs_dirty(h);
  }
}
RV_HANDLER(op_fmax_d) {
  if (fp_on(h, d)) {
    h->f[d->rd] = minmax_d(h, FD1, FD2, true);
    rv_mark_fs_dirty(h);
  }
}

/* ---------------------------------------------------------------- comparisons, classify */

#define CMP(name, type, get, isnan_fn, issnan_fn, conv, op, signaling)                             \
  RV_HANDLER(name) {                                                                               \
    if (!fp_on(h, d))                                                                              \
      return;                                                                                      \
    type a = get(d->rs1), b = get(d->rs2);                                                         \
    uint64_t r = 0;                                                                                \
    if (isnan_fn(a) || isnan_fn(b)) {                                                              \
      if ((signaling) || issnan_fn(a) || issnan_fn(b)) {                                           \
        h->fflags |= RV_FF_NV;                                                                     \
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
    return snan ? 1U << 8 : 1U << 9;
  if (inf)
    return neg ? 1U << 0 : 1U << 7;
  if (zero)
    return neg ? 1U << 3 : 1U << 4;
  if (subnormal)
    return neg ? 1U << 2 : 1U << 5;
  return neg ? 1U << 1 : 1U << 6;
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
  uint64_t u = FD1, e = (u >> 52) & 0x7ff, m = u & 0xfffffffffffffULL;
  h->x[d->rd] =
      fclass_bits(u >> 63, e == 0x7ff && !m, is_nan_d(u), is_snan_d(u), !e && !m, !e && m);
}

/* ---------------------------------------------------------------- moves */

RV_HANDLER(op_fmv_x_w) {
  if (fp_on(h, d))
    h->x[d->rd] = (uint64_t)(int64_t)(int32_t)(uint32_t)h->f[d->rs1];
}
RV_HANDLER(op_fmv_x_d) {
  if (fp_on(h, d))
    h->x[d->rd] = h->f[d->rs1];
}
RV_HANDLER(op_fmv_w_x) {
  if (fp_on(h, d)) {
    h->f[d->rd] = box_s((uint32_t)h->x[d->rs1]);
    rv_mark_fs_dirty(h);
  }
}
RV_HANDLER(op_fmv_d_x) {
  if (fp_on(h, d)) {
    h->f[d->rd] = h->x[d->rs1];
    rv_mark_fs_dirty(h);
  }
}

/* ---------------------------------------------------------------- conversions */

static double round_by_mode(double x, int rm) {
  switch (rm) {
  case RV_RM_RTZ:
    return trunc(x);
  case RV_RM_RDN:
    return floor(x);
  case RV_RM_RUP:
    return ceil(x);
  case RV_RM_RMM:
    return round(x);
  default:
    return nearbyint(x); /* the host runs in round-to-nearest-even */
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
    max_v = ((uint64_t)1 << (bits - 1)) - 1;
    /* the minimum's bit pattern, sign-extended to 64 bits for the W forms */
    min_v = bits == 64 ? 0x8000000000000000ULL : (uint64_t)(int64_t)(int32_t)0x80000000U;
  } else {
    lo = 0;
    hi_excl = ldexp(1.0, bits);
    min_v = 0;
    max_v = bits == 64 ? UINT64_MAX : 0xffffffffULL;
  }
  if (nan) {
    *fl = RV_FF_NV;
    return bits == 32 ? (uint64_t)(int64_t)(int32_t)(uint32_t)max_v : max_v;
  }
  double r = round_by_mode(x, rm);
  if (r >= hi_excl) {
    *fl = RV_FF_NV;
    return bits == 32 ? (uint64_t)(int64_t)(int32_t)(uint32_t)max_v : max_v;
  }
  if (r < lo) {
    *fl = RV_FF_NV;
    return min_v;
  }
  *fl = r != x ? RV_FF_NX : 0;
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
    unsigned fl;                                                                                   \
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

/* Integer to float, rounded by the host in the requested mode; RMM in software. */
#define CVT_FROM_INT(name, itype, sgn, ftype, fmt, store)                                          \
  RV_HANDLER(name) {                                                                               \
    int rm;                                                                                        \
    if (!fp_rm(h, d, &rm))                                                                         \
      return;                                                                                      \
    itype v = (itype)h->x[d->rs1];                                                                 \
    if (rm == RV_RM_RMM) {                                                                         \
      unsigned fl = 0;                                                                             \
      uint64_t ext = (uint64_t)v; /* sign-extended for the signed types */                         \
      bool neg = (sgn) && (ext >> 63);                                                             \
      uint64_t mag = neg ? 0 - ext : ext;                                                          \
      uint64_t bits = rv_softfp_from_int(fmt, neg, mag, rm, &fl);                                  \
      h->f[d->rd] = (fmt) == RV_FP_S ? box_s((uint32_t)bits) : bits;                               \
      fp_done(h, fl);                                                                              \
      return;                                                                                      \
    }                                                                                              \
    fp_host_enter(rm);                                                                             \
    FP_BARRIER(v);                                                                                 \
    ftype r = (ftype)v;                                                                            \
    FP_BARRIER(r);                                                                                 \
    unsigned fl = fp_host_leave(rm);                                                               \
    h->f[d->rd] = store(r);                                                                        \
    fp_done(h, fl);                                                                                \
  }

#define STORE_S(r) box_s(f_bits(r))
#define STORE_D(r) d_bits(r)
CVT_FROM_INT(op_fcvt_s_w, int32_t, true, float, RV_FP_S, STORE_S)
CVT_FROM_INT(op_fcvt_s_wu, uint32_t, false, float, RV_FP_S, STORE_S)
CVT_FROM_INT(op_fcvt_s_l, int64_t, true, float, RV_FP_S, STORE_S)
CVT_FROM_INT(op_fcvt_s_lu, uint64_t, false, float, RV_FP_S, STORE_S)
CVT_FROM_INT(op_fcvt_d_w, int32_t, true, double, RV_FP_D, STORE_D)
CVT_FROM_INT(op_fcvt_d_wu, uint32_t, false, double, RV_FP_D, STORE_D)
CVT_FROM_INT(op_fcvt_d_l, int64_t, true, double, RV_FP_D, STORE_D)
CVT_FROM_INT(op_fcvt_d_lu, uint64_t, false, double, RV_FP_D, STORE_D)

RV_HANDLER(op_fcvt_s_d) {
  int rm;
  if (!fp_rm(h, d, &rm))
    return;
  if (rm == RV_RM_RMM) {
    unsigned fl = 0;
    h->f[d->rd] = box_s((uint32_t)rv_softfp_narrow(FD1, rm, &fl));
    fp_done(h, fl);
    return;
  }
  double a = as_d(FD1);
  fp_host_enter(rm);
  FP_BARRIER(a);
  float r = (float)a;
  FP_BARRIER(r);
  unsigned fl = fp_host_leave(rm);
  h->f[d->rd] = box_s(canon_s(r));
  fp_done(h, fl);
}

RV_HANDLER(op_fcvt_d_s) {
  int rm;
  if (!fp_rm(h, d, &rm))
    return;
  float a = as_f(FS1);
  fp_host_enter(RV_RM_RNE);
  FP_BARRIER(a);
  double r = (double)a;
  FP_BARRIER(r);
  unsigned fl = fp_host_leave(RV_RM_RNE);
  h->f[d->rd] = canon_d(r);
  fp_done(h, fl);
}
