/* Exact IEEE 754 binary32/binary64 arithmetic in integers, for what the host FPU cannot round:
 * round to nearest, ties to max magnitude (RMM) has no x86 rounding mode, and a fused
 * multiply-add's exact result does not fit any pair of host operations. Each operation computes
 * its exact result as an integer significand times a power of two (bits shifted out are "jammed"
 * into bit 0, which keeps every rounding decision exact because the rounding position is always
 * far above it) and rounds it once with round_pack(). All five rounding modes are implemented so
 * the unit tests can check this code against the host in the four modes both have. */
#include "vm/cpu/cpu_internal.h"

typedef unsigned __int128 u128;

struct fp_format {
  int frac_bits;  /* stored fraction bits: 23, 52 */
  int sign_shift; /* 31, 63 */
  int bias;       /* 127, 1023 */
  int exp_max;    /* all-ones biased exponent: 255, 2047 */
  uint64_t canon_nan;
};

static const struct fp_format formats[2] = {
    [RV_FP_S] = {23, 31, 127, 255, 0x7fc00000U},
    [RV_FP_D] = {52, 63, 1023, 2047, 0x7ff8000000000000ULL},
};

/* A finite number's parts: value = (-1)^sign * mant * 2^exp. */
struct fp_parts {
  bool sign;
  uint64_t mant;
  int exp;
};

enum fp_class { FP_ZERO, FP_FINITE, FP_INF, FP_QNAN, FP_SNAN };

static enum fp_class fp_unpack(const struct fp_format *f, uint64_t bits, struct fp_parts *p) {
  uint64_t frac = bits & ((1ULL << f->frac_bits) - 1);
  int biased = (int)((bits >> f->frac_bits) & (uint64_t)f->exp_max);
  p->sign = (bits >> f->sign_shift) & 1;
  if (biased == f->exp_max) {
    if (!frac)
      return FP_INF;
    return (frac >> (f->frac_bits - 1)) & 1 ? FP_QNAN : FP_SNAN;
  }
  if (biased == 0) {
    p->mant = frac;
    p->exp = 1 - f->bias - f->frac_bits;
    return frac ? FP_FINITE : FP_ZERO;
  }
  p->mant = frac | (1ULL << f->frac_bits);
  p->exp = biased - f->bias - f->frac_bits;
  return FP_FINITE;
}

static uint64_t fp_sign_bit(const struct fp_format *f, bool sign) {
  return (uint64_t)sign << f->sign_shift;
}
static uint64_t fp_inf(const struct fp_format *f, bool sign) {
  return fp_sign_bit(f, sign) | ((uint64_t)f->exp_max << f->frac_bits);
}
static uint64_t fp_max_finite(const struct fp_format *f, bool sign) { return fp_inf(f, sign) - 1; }
/* The sign of an exact zero sum of operands with different signs: -0 only when rounding down. */
static uint64_t fp_exact_zero(const struct fp_format *f, int rm) {
  return fp_sign_bit(f, rm == RV_RM_RDN);
}

static int top_bit(u128 v) {
  uint64_t hi = (uint64_t)(v >> 64);
  return hi ? 127 - __builtin_clzll(hi) : 63 - __builtin_clzll((uint64_t)v);
}

/* Shift right, keeping a lost non-zero part as a set bit 0. */
static u128 shift_right_jam(u128 v, int n) {
  if (n <= 0)
    return v;
  if (n >= 127)
    return v != 0;
  return (v >> n) | ((v & (((u128)1 << n) - 1)) != 0);
}

/* Drop the low `shift` bits of mant, rounding by rm; *inexact tells whether any were non-zero.
 * mant's top bit is at most 120, so a shift above 125 leaves less than half a unit. */
static u128 round_shift(u128 mant, int shift, bool sign, int rm, bool *inexact) {
  if (shift <= 0) {
    *inexact = false;
    return mant << -shift;
  }
  if (shift > 125) {
    *inexact = mant != 0;
    return (rm == RV_RM_RUP && !sign && mant) || (rm == RV_RM_RDN && sign && mant);
  }
  u128 kept = mant >> shift, rem = mant & (((u128)1 << shift) - 1), half = (u128)1 << (shift - 1);
  *inexact = rem != 0;
  bool up;
  switch (rm) {
  case RV_RM_RNE:
    up = rem > half || (rem == half && (kept & 1));
    break;
  case RV_RM_RMM:
    up = rem >= half;
    break;
  case RV_RM_RDN:
    up = sign && rem;
    break;
  case RV_RM_RUP:
    up = !sign && rem;
    break;
  default:
    up = false;
    break;
  }
  return kept + up;
}

/* Round (-1)^sign * mant * 2^exp (mant != 0, top bit at most 120) to the format. Tininess is
 * detected after rounding, as RISC-V specifies: the result is tiny when rounding it with an
 * unbounded exponent range gives a magnitude below the smallest normal number. */
static uint64_t round_pack(const struct fp_format *f, bool sign, u128 mant, int exp, int rm,
                           unsigned *flags) {
  int t = top_bit(mant);
  int e = exp + t; /* value in [2^e, 2^(e+1)) */
  int emin = 1 - f->bias;
  int shift = t - f->frac_bits;
  bool inexact;
  if (e < emin) {
    /* Subnormal range: fewer bits are kept. */
    u128 unbounded = round_shift(mant, shift, sign, rm, &inexact);
    bool tiny = !(unbounded >> (f->frac_bits + 1) && e + 1 >= emin);
    u128 kept = round_shift(mant, shift + (emin - e), sign, rm, &inexact);
    if (inexact)
      *flags |= RV_FF_NX | (tiny ? RV_FF_UF : 0);
    /* A carry into bit frac_bits makes the smallest normal number: the encoding follows. */
    return fp_sign_bit(f, sign) | (uint64_t)kept;
  }
  u128 kept = round_shift(mant, shift, sign, rm, &inexact);
  if (kept >> (f->frac_bits + 1)) {
    kept >>= 1;
    e++;
  }
  if (inexact)
    *flags |= RV_FF_NX;
  if (e + f->bias >= f->exp_max) {
    *flags |= RV_FF_OF | RV_FF_NX;
    bool to_inf = rm == RV_RM_RNE || rm == RV_RM_RMM || (rm == RV_RM_RUP && !sign) ||
                  (rm == RV_RM_RDN && sign);
    return to_inf ? fp_inf(f, sign) : fp_max_finite(f, sign);
  }
  return fp_sign_bit(f, sign) | ((uint64_t)(e + f->bias) << f->frac_bits) |
         ((uint64_t)kept & ((1ULL << f->frac_bits) - 1));
}

static bool is_nan_class(enum fp_class c) { return c == FP_QNAN || c == FP_SNAN; }

/* ---------------------------------------------------------------- operations */

uint64_t rv_softfp_fma(int fmt, uint64_t a, uint64_t b, uint64_t c, int rm, unsigned *flags) {
  const struct fp_format *f = &formats[fmt];
  struct fp_parts pa, pb, pc;
  enum fp_class ca = fp_unpack(f, a, &pa), cb = fp_unpack(f, b, &pb), cc = fp_unpack(f, c, &pc);
  bool inf_times_zero = (ca == FP_INF && cb == FP_ZERO) || (ca == FP_ZERO && cb == FP_INF);
  if (is_nan_class(ca) || is_nan_class(cb) || is_nan_class(cc) || inf_times_zero) {
    /* RISC-V raises NV for inf*0 even when the addend is a quiet NaN. */
    if (ca == FP_SNAN || cb == FP_SNAN || cc == FP_SNAN || inf_times_zero)
      *flags |= RV_FF_NV;
    return f->canon_nan;
  }
  bool psign = pa.sign ^ pb.sign;
  if (ca == FP_INF || cb == FP_INF) {
    if (cc == FP_INF && pc.sign != psign) {
      *flags |= RV_FF_NV;
      return f->canon_nan;
    }
    return fp_inf(f, psign);
  }
  if (cc == FP_INF)
    return c;
  if (ca == FP_ZERO || cb == FP_ZERO) {
    if (cc != FP_ZERO)
      return c;
    return pc.sign == psign ? fp_sign_bit(f, psign) : fp_exact_zero(f, rm);
  }
  /* The exact product has at most 106 bits. */
  u128 pm = (u128)pa.mant * pb.mant;
  int pe = pa.exp + pb.exp;
  if (cc == FP_ZERO)
    return round_pack(f, psign, pm, pe, rm, flags);
  /* Align both terms with their top bit at 116: their low 11 bits are zero, so jamming the
   * smaller one's shifted-out bits into bit 0 keeps the sum's rounding exact. */
  u128 cm = pc.mant;
  int ce = pc.exp;
  int ps = 116 - top_bit(pm), cs = 116 - top_bit(cm);
  pm <<= ps;
  pe -= ps;
  cm <<= cs;
  ce -= cs;
  bool product_bigger = pe > ce || (pe == ce && pm >= cm);
  u128 big = product_bigger ? pm : cm, small = product_bigger ? cm : pm;
  int exp = product_bigger ? pe : ce;
  bool sign = product_bigger ? psign : pc.sign;
  small = shift_right_jam(small, exp - (product_bigger ? ce : pe));
  u128 sum = psign == pc.sign ? big + small : big - small;
  if (sum == 0)
    return fp_exact_zero(f, rm);
  return round_pack(f, sign, sum, exp, rm, flags);
}

uint64_t rv_softfp_div(int fmt, uint64_t a, uint64_t b, int rm, unsigned *flags) {
  const struct fp_format *f = &formats[fmt];
  struct fp_parts pa, pb;
  enum fp_class ca = fp_unpack(f, a, &pa), cb = fp_unpack(f, b, &pb);
  bool sign = pa.sign ^ pb.sign;
  if (is_nan_class(ca) || is_nan_class(cb)) {
    if (ca == FP_SNAN || cb == FP_SNAN)
      *flags |= RV_FF_NV;
    return f->canon_nan;
  }
  if ((ca == FP_INF && cb == FP_INF) || (ca == FP_ZERO && cb == FP_ZERO)) {
    *flags |= RV_FF_NV;
    return f->canon_nan;
  }
  if (ca == FP_INF)
    return fp_inf(f, sign);
  if (cb == FP_ZERO) {
    *flags |= RV_FF_DZ;
    return fp_inf(f, sign);
  }
  if (ca == FP_ZERO || cb == FP_INF)
    return fp_sign_bit(f, sign);
  /* Both significands normalized to 64 bits: the quotient of (A << 64) / B has 64 or 65 bits,
   * and a non-zero remainder is jammed into its bit 0. */
  int sa = 63 - top_bit(pa.mant), sb = 63 - top_bit(pb.mant);
  uint64_t ma = pa.mant << sa, mb = pb.mant << sb;
  u128 num = (u128)ma << 64;
  u128 q = num / mb;
  q |= (num % mb) != 0;
  /* Keep the top bit at or below 120 for round_pack: the quotient has at most 65 bits. */
  return round_pack(f, sign, q, (pa.exp - sa) - (pb.exp - sb) - 64, rm, flags);
}

uint64_t rv_softfp_from_int(int fmt, bool negative, uint64_t magnitude, int rm, unsigned *flags) {
  const struct fp_format *f = &formats[fmt];
  if (!magnitude)
    return 0;
  return round_pack(f, negative, magnitude, 0, rm, flags);
}

uint64_t rv_softfp_narrow(uint64_t d, int rm, unsigned *flags) {
  const struct fp_format *fd = &formats[RV_FP_D], *fs = &formats[RV_FP_S];
  struct fp_parts p;
  switch (fp_unpack(fd, d, &p)) {
  case FP_SNAN:
    *flags |= RV_FF_NV;
    return fs->canon_nan;
  case FP_QNAN:
    return fs->canon_nan;
  case FP_INF:
    return fp_inf(fs, p.sign);
  case FP_ZERO:
    return fp_sign_bit(fs, p.sign);
  default:
    return round_pack(fs, p.sign, p.mant, p.exp, rm, flags);
  }
}
