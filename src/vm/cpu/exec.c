/* Execution of the integer instructions: RV64I, M, A, Zba/Zbb/Zbs, Zicsr, Zifencei, system. */
#include "vm/cpu/cpu_internal.h"

#define X(r) (h->x[r])
#define RS1 X(d->rs1)
#define RS2 X(d->rs2)
#define RD X(d->rd)
#define SX32(v) ((uint64_t)(int64_t)(int32_t)(v))

/* ---------------------------------------------------------------- RV64I */

RV_HANDLER(op_auipc) { RD = h->pc + (uint64_t)d->imm; }
RV_HANDLER(op_jal) {
  RD = h->pc + d->len;
  h->next_pc = h->pc + (uint64_t)d->imm;
}
RV_HANDLER(op_jalr) {
  uint64_t target = (RS1 + (uint64_t)d->imm) & ~1ULL;
  RD = h->pc + d->len;
  h->next_pc = target;
}

#define BRANCH(name, cond)                                                                         \
  RV_HANDLER(op_##name) {                                                                          \
    uint64_t a = RS1, b = RS2;                                                                     \
    if (cond)                                                                                      \
      h->next_pc = h->pc + (uint64_t)d->imm;                                                       \
  }
RV_BRANCH_OPS(BRANCH)

/* The semantics of the loads, stores and ALU operations are the lists in cpu_internal.h, which
 * the block runner (cpu.c) also executes inline. */
#define LOAD(name, size, conv)                                                                     \
  RV_HANDLER(op_##name) {                                                                          \
    uint64_t v;                                                                                    \
    if (likely(rv_load(h, RS1 + (uint64_t)d->imm, size, &v)))                                      \
      RD = conv;                                                                                   \
  }
RV_LOAD_OPS(LOAD)

#define STORE(name, size)                                                                          \
  RV_HANDLER(op_##name) { rv_store(h, RS1 + (uint64_t)d->imm, size, RS2); }
RV_STORE_OPS(STORE)

#define ALU_I(name, expr)                                                                          \
  RV_HANDLER(op_##name) {                                                                          \
    uint64_t a = RS1, b = (uint64_t)d->imm;                                                        \
    (void)a;                                                                                       \
    (void)b;                                                                                       \
    RD = (expr);                                                                                   \
  }
#define ALU_R(name, expr)                                                                          \
  RV_HANDLER(op_##name) {                                                                          \
    uint64_t a = RS1, b = RS2;                                                                     \
    RD = (expr);                                                                                   \
  }
RV_ALU_I_OPS(ALU_I)
RV_ALU_R_OPS(ALU_R)

/* ---------------------------------------------------------------- M */

static uint64_t mulhu64(uint64_t a, uint64_t b) {
  return (uint64_t)(((unsigned __int128)a * b) >> 64);
}
static uint64_t mulh64(int64_t a, int64_t b) { return (uint64_t)(((__int128)a * b) >> 64); }
static uint64_t mulhsu64(int64_t a, uint64_t b) {
  return (uint64_t)(((__int128)a * (unsigned __int128)b) >> 64);
}
static uint64_t div64(int64_t a, int64_t b) {
  if (b == 0)
    return UINT64_MAX;
  if (a == INT64_MIN && b == -1)
    return (uint64_t)a;
  return (uint64_t)(a / b);
}
static uint64_t rem64(int64_t a, int64_t b) {
  if (b == 0)
    return (uint64_t)a;
  if (a == INT64_MIN && b == -1)
    return 0;
  return (uint64_t)(a % b);
}
static uint32_t div32(int32_t a, int32_t b) {
  if (b == 0)
    return UINT32_MAX;
  if (a == INT32_MIN && b == -1)
    return (uint32_t)a;
  return (uint32_t)(a / b);
}
static uint32_t rem32(int32_t a, int32_t b) {
  if (b == 0)
    return (uint32_t)a;
  if (a == INT32_MIN && b == -1)
    return 0;
  return (uint32_t)(a % b);
}

ALU_R(mulh, mulh64((int64_t)a, (int64_t)b))
ALU_R(mulhsu, mulhsu64((int64_t)a, b))
ALU_R(mulhu, mulhu64(a, b))
/* Linux's cpu_relax() is "div rd, rd, zero": a hart spinning on a lock or on another hart. After
 * a few of them the hart gives up the rest of its slice so the machine runs the other harts. */
RV_HANDLER(op_div) {
  uint64_t a = RS1, b = RS2;
  if (unlikely(b == 0) && d->rd == d->rs1 && ++h->spin_hints >= 16) {
    h->spin_hints = 0;
    h->yield = true;
    h->check_irq = true;
  }
  RD = div64((int64_t)a, (int64_t)b);
}
ALU_R(divu, b ? a / b : UINT64_MAX)
ALU_R(rem, rem64((int64_t)a, (int64_t)b))
ALU_R(remu, b ? a % b : a)
ALU_R(divw, SX32(div32((int32_t)a, (int32_t)b)))
ALU_R(divuw, SX32((uint32_t)b ? (uint32_t)a / (uint32_t)b : UINT32_MAX))
ALU_R(remw, SX32(rem32((int32_t)a, (int32_t)b)))
ALU_R(remuw, SX32((uint32_t)b ? (uint32_t)a % (uint32_t)b : (uint32_t)a))

/* ---------------------------------------------------------------- Zba / Zbb / Zbs */

static uint64_t rol64(uint64_t a, unsigned s) { return s ? (a << s) | (a >> (64 - s)) : a; }
static uint64_t ror64(uint64_t a, unsigned s) { return s ? (a >> s) | (a << (64 - s)) : a; }
static uint32_t rol32(uint32_t a, unsigned s) { return s ? (a << s) | (a >> (32 - s)) : a; }
static uint32_t ror32(uint32_t a, unsigned s) { return s ? (a >> s) | (a << (32 - s)) : a; }
static uint64_t orc_b(uint64_t a) {
  uint64_t r = 0;
  for (int i = 0; i < 8; i++)
    if ((a >> (8 * i)) & 0xff)
      r |= 0xffULL << (8 * i);
  return r;
}

ALU_R(sh1add, (a << 1) + b)
ALU_R(sh2add, (a << 2) + b)
ALU_R(sh3add, (a << 3) + b)
ALU_R(add_uw, (uint64_t)(uint32_t)a + b)
ALU_R(sh1add_uw, ((uint64_t)(uint32_t)a << 1) + b)
ALU_R(sh2add_uw, ((uint64_t)(uint32_t)a << 2) + b)
ALU_R(sh3add_uw, ((uint64_t)(uint32_t)a << 3) + b)
ALU_I(slli_uw, (uint64_t)(uint32_t)a << (b & 63))

ALU_R(andn, a & ~b)
ALU_R(orn, a | ~b)
ALU_R(xnor, ~(a ^ b))
ALU_R(max, (int64_t)a > (int64_t)b ? a : b)
ALU_R(maxu, a > b ? a : b)
ALU_R(min, (int64_t)a < (int64_t)b ? a : b)
ALU_R(minu, a < b ? a : b)
ALU_R(rol, rol64(a, b & 63))
ALU_R(ror, ror64(a, b & 63))
ALU_R(rolw, SX32(rol32((uint32_t)a, b & 31)))
ALU_R(rorw, SX32(ror32((uint32_t)a, b & 31)))
ALU_I(rori, ror64(a, b & 63))
ALU_I(roriw, SX32(ror32((uint32_t)a, b & 31)))
ALU_I(clz, a ? (uint64_t)__builtin_clzll(a) : 64)
ALU_I(ctz, a ? (uint64_t)__builtin_ctzll(a) : 64)
ALU_I(cpop, (uint64_t)__builtin_popcountll(a))
ALU_I(clzw, (uint32_t)a ? (uint64_t)__builtin_clz((uint32_t)a) : 32)
ALU_I(ctzw, (uint32_t)a ? (uint64_t)__builtin_ctz((uint32_t)a) : 32)
ALU_I(cpopw, (uint64_t)__builtin_popcount((uint32_t)a))
ALU_I(sext_b, (uint64_t)(int64_t)(int8_t)a)
ALU_I(sext_h, (uint64_t)(int64_t)(int16_t)a)
ALU_I(zext_h, (uint64_t)(uint16_t)a)
ALU_I(orc_b, orc_b(a))
ALU_I(rev8, __builtin_bswap64(a))

ALU_R(bclr, a & ~(1ULL << (b & 63)))
ALU_R(bset, a | (1ULL << (b & 63)))
ALU_R(binv, a ^ (1ULL << (b & 63)))
ALU_R(bext, (a >> (b & 63)) & 1)
ALU_I(bclri, a & ~(1ULL << (b & 63)))
ALU_I(bseti, a | (1ULL << (b & 63)))
ALU_I(binvi, a ^ (1ULL << (b & 63)))
ALU_I(bexti, (a >> (b & 63)) & 1)

/* ---------------------------------------------------------------- A */

/* LR/SC across host threads, as QEMU does it: LR remembers the address and the value it read,
 * SC stores with a compare-and-swap against that value. A store by another hart that changed the
 * value makes SC fail; one that wrote the same value back in between (ABA) does not. RISC-V
 * LR/SC sequences in practice (Linux's cmpxchg, atomics, locks) compare values anyway; a guest
 * algorithm that relies on LR/SC to detect an A-B-A change of a pointer could be fooled. The
 * alternative, every store checking every other hart's reservation, would cost each store. */
static void rv_reserve(rv_hart *h, uint64_t pa, uint64_t value) {
  h->reservation = pa;
  h->reservation_value = value;
  h->reservation_valid = true;
}

RV_HANDLER(op_lr_w) {
  uint64_t pa;
  int32_t *p = rv_atomic_ptr(h, RS1, 4, ACC_READ, &pa);
  if (!p)
    return;
  int32_t v = __atomic_load_n(p, __ATOMIC_SEQ_CST);
  RD = SX32(v);
  rv_reserve(h, pa, (uint32_t)v);
}
RV_HANDLER(op_lr_d) {
  uint64_t pa;
  uint64_t *p = rv_atomic_ptr(h, RS1, 8, ACC_READ, &pa);
  if (!p)
    return;
  uint64_t v = __atomic_load_n(p, __ATOMIC_SEQ_CST);
  RD = v;
  rv_reserve(h, pa, v);
}
RV_HANDLER(op_sc_w) {
  uint64_t pa;
  uint32_t *p = rv_atomic_ptr(h, RS1, 4, ACC_WRITE, &pa);
  if (!p)
    return;
  uint32_t expected = (uint32_t)h->reservation_value;
  bool ok = h->reservation_valid && h->reservation == pa &&
            __atomic_compare_exchange_n(p, &expected, (uint32_t)RS2, false, __ATOMIC_SEQ_CST,
                                        __ATOMIC_SEQ_CST);
  RD = ok ? 0 : 1;
  h->reservation_valid = false;
}
RV_HANDLER(op_sc_d) {
  uint64_t pa;
  uint64_t *p = rv_atomic_ptr(h, RS1, 8, ACC_WRITE, &pa);
  if (!p)
    return;
  uint64_t expected = h->reservation_value;
  bool ok =
      h->reservation_valid && h->reservation == pa &&
      __atomic_compare_exchange_n(p, &expected, RS2, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
  RD = ok ? 0 : 1;
  h->reservation_valid = false;
}

/* AMOs run as a compare-and-swap loop on host memory, so they are atomic across host threads. */
#define AMO(name, type, stype, expr)                                                               \
  RV_HANDLER(name) {                                                                               \
    uint64_t pa;                                                                                   \
    type *p = rv_atomic_ptr(h, RS1, sizeof(type), ACC_WRITE, &pa); /* NOLINT */                    \
    if (!p)                                                                                        \
      return;                                                                                      \
    type b = (type)RS2;                                                                            \
    type a = __atomic_load_n(p, __ATOMIC_RELAXED);                                                 \
    type n;                                                                                        \
    do {                                                                                           \
      n = (expr);                                                                                  \
    } while (!__atomic_compare_exchange_n(p, &a, n, false, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED));   \
    RD = (uint64_t)(int64_t)(stype)a;                                                              \
  }
#define AMO_BOTH(suffix, expr32, expr64)                                                           \
  AMO(op_amo##suffix##_w, uint32_t, int32_t, expr32)                                               \
  AMO(op_amo##suffix##_d, uint64_t, int64_t, expr64)
AMO_BOTH(swap, b, b)
AMO_BOTH(add, a + b, a + b)
AMO_BOTH(xor, a ^ b, a ^ b)
AMO_BOTH(and, a &b, a &b)
AMO_BOTH(or, a | b, a | b)
AMO_BOTH(min, (int32_t)a < (int32_t)b ? a : b, (int64_t)a < (int64_t)b ? a : b)
AMO_BOTH(max, (int32_t)a > (int32_t)b ? a : b, (int64_t)a > (int64_t)b ? a : b)
AMO_BOTH(minu, a < b ? a : b, a < b ? a : b)
AMO_BOTH(maxu, a > b ? a : b, a > b ? a : b)

/* ---------------------------------------------------------------- fences */

/* FENCE pred/succ bits (I, O, R, W from bit 3 down) and the fm field of FENCE.TSO. */
#define FENCE_W 1U
#define FENCE_R 2U
#define FENCE_O 4U
#define FENCE_I 8U
#define FENCE_FM_TSO 8U

/* x86-64 keeps every order RVWMO fences ask for except a store before a later load: only a fence
 * with a write (or output) before and a read (or input) after needs MFENCE. FENCE.TSO does not
 * order stores before loads. With one host thread no other hart can watch the order at all. */
static bool fence_needs_mfence(uint32_t raw) {
  unsigned pred = (raw >> 24) & 0xf, succ = (raw >> 20) & 0xf, fm = raw >> 28;
  return fm != FENCE_FM_TSO && (pred & (FENCE_W | FENCE_O)) && (succ & (FENCE_R | FENCE_I));
}

RV_HANDLER(op_fence) {
  if (!h->bus->threaded)
    return;
  rv_hart_sync_code(h);
  if (fence_needs_mfence(d->raw))
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
}
RV_HANDLER(op_fence_i) {
  /* Decoded code already follows every write to its page (rv_bus.code_pages), so there is
   * nothing to drop; only the fetch cache is refreshed. */
  (void)d;
  h->fetch_vpn = UINT64_MAX;
  rv_hart_sync_code(h);
}

/* ---------------------------------------------------------------- Zicsr */

static void csr_op(rv_hart *h, const rv_insn *d, uint64_t src, int kind, bool writes) {
  unsigned csr = (unsigned)d->imm;
  uint64_t old = 0;
  bool reads = !(kind == 0 && d->rd == 0); /* csrrw with rd=x0 does not read */
  if (reads && !rv_csr_read(h, csr, &old)) {
    rv_raise(h, h->csr_virtual ? EXC_VIRTUAL_INSN : EXC_ILLEGAL, d->raw);
    return;
  }
  if (writes) {
    /* CSRRS/CSRRC on mip/sip modify the software-written bits only: the interrupt lines (e.g. the
     * PLIC's SEIP, the Sstc STIP) that a read ORs in must not be latched into them (priv 3.1.9). */
    uint64_t base = rv_csr_rmw_base(h, csr, old);
    uint64_t nv = kind == 0 ? src : kind == 1 ? (base | src) : (base & ~src);
    if (!rv_csr_write(h, csr, nv)) {
      rv_raise(h, h->csr_virtual ? EXC_VIRTUAL_INSN : EXC_ILLEGAL, d->raw);
      return;
    }
  }
  RD = old;
}

RV_HANDLER(op_csrrw) { csr_op(h, d, RS1, 0, true); }
RV_HANDLER(op_csrrs) { csr_op(h, d, RS1, 1, d->rs1 != 0); }
RV_HANDLER(op_csrrc) { csr_op(h, d, RS1, 2, d->rs1 != 0); }
RV_HANDLER(op_csrrwi) { csr_op(h, d, d->rs1, 0, true); }
RV_HANDLER(op_csrrsi) { csr_op(h, d, d->rs1, 1, d->rs1 != 0); }
RV_HANDLER(op_csrrci) { csr_op(h, d, d->rs1, 2, d->rs1 != 0); }

/* ---------------------------------------------------------------- system */

RV_HANDLER(op_ecall) {
  rv_hart_sync_code(h); /* an SBI call may tell other harts to run what this one wrote */
  if (h->priv == RV_PRIV_S && !h->virt && h->bus->sbi_call && h->bus->sbi_call(h->bus->opaque, h)) {
    h->check_irq = true; /* the SBI call may have changed timers, IPIs or hart state */
    return;
  }
  /* from VS-mode: cause 10 (the guest's SBI calls, which its hypervisor serves) */
  rv_raise(h, h->virt && h->priv == RV_PRIV_S ? EXC_ECALL_VS : EXC_ECALL_U + (uint64_t)h->priv, 0);
}
RV_HANDLER(op_ebreak) { rv_raise(h, EXC_BREAKPOINT, h->pc); }

RV_HANDLER(op_mret) {
  if (h->priv < RV_PRIV_M) {
    rv_illegal(h, d);
    return;
  }
  uint64_t s = h->mstatus;
  int mpp = (int)((s & MSTATUS_MPP) >> MSTATUS_MPP_SHIFT);
  s = (s & ~MSTATUS_MIE) | ((s & MSTATUS_MPIE) ? MSTATUS_MIE : 0);
  s |= MSTATUS_MPIE;
  s &= ~MSTATUS_MPP; /* MPP <- U */
  if (mpp != RV_PRIV_M)
    s &= ~MSTATUS_MPRV;
  h->mstatus = s;
  h->priv = mpp;
  h->next_pc = h->mepc;
  rv_hyp_mret(h, mpp); /* V = MPV */
  rv_update_modes(h);
  h->check_irq = true;
}

RV_HANDLER(op_sret) {
  if (h->virt && (h->priv == RV_PRIV_U || (h->hstatus & HSTATUS_VTSR))) {
    rv_virtual_insn(h, d);
    return;
  }
  if (h->priv < RV_PRIV_S || (h->priv == RV_PRIV_S && !h->virt && (h->mstatus & MSTATUS_TSR))) {
    rv_illegal(h, d);
    return;
  }
  uint64_t s = h->mstatus;
  int spp = (s & MSTATUS_SPP) ? RV_PRIV_S : RV_PRIV_U;
  s = (s & ~MSTATUS_SIE) | ((s & MSTATUS_SPIE) ? MSTATUS_SIE : 0);
  s |= MSTATUS_SPIE;
  s &= ~MSTATUS_SPP;
  s &= ~MSTATUS_MPRV; /* SPP is never M */
  h->mstatus = s;
  h->priv = spp;
  h->next_pc = h->sepc;
  rv_hyp_sret(h); /* from HS-mode: V = hstatus.SPV */
  rv_update_modes(h);
  h->check_irq = true;
}

RV_HANDLER(op_wfi) {
  if ((h->priv == RV_PRIV_U && !h->virt) || (h->priv == RV_PRIV_S && (h->mstatus & MSTATUS_TW))) {
    rv_illegal(h, d);
    return;
  }
  if (h->virt && (h->priv == RV_PRIV_U || (h->hstatus & HSTATUS_VTW))) {
    rv_virtual_insn(h, d);
    return;
  }
  h->check_irq = true;
  if (!rv_hart_irq_pending(h))
    h->wfi = true;
}

RV_HANDLER(op_sfence_vma) {
  if (h->virt && (h->priv == RV_PRIV_U || (h->hstatus & HSTATUS_VTVM))) {
    rv_virtual_insn(h, d);
    return;
  }
  if (h->priv == RV_PRIV_U || (h->priv == RV_PRIV_S && !h->virt && (h->mstatus & MSTATUS_TVM))) {
    rv_illegal(h, d);
    return;
  }
  if (d->rs1 == 0 && d->rs2 == 0)
    rv_hart_flush_tlb(h);
  else
    rv_tlb_sfence(h, h->x[d->rs1], d->rs1 != 0, h->x[d->rs2], d->rs2 != 0);
}
