/* Saving and restoring a hart's architectural state (snapshots, migration).
 *
 * The section lists every field of the "architectural state" part of struct rv_hart in a fixed
 * order. Loading checks what the hart itself enforces on CSR writes (a privilege level it has, a
 * paging mode it implements, XLEN fields fixed at 64 bits, misa as built), so a tampered image
 * cannot put the interpreter in a state its code assumes impossible.
 */
#include <stddef.h>

#include "vm/cpu/cpu_internal.h"

/* 2: the hypervisor extension (V and the H and VS CSRs). Version 1 images load into harts
 * without H only. */
#define HART_STATE_VERSION 2

#define MIP_DEVICE_BITS (RV_MIP_MSIP | RV_MIP_MTIP | RV_MIP_MEIP | RV_MIP_SEIP)
#define MIP_ALL_BITS (MIP_DEVICE_BITS | RV_MIP_SSIP | RV_MIP_STIP)
#define XLEN64_FIELDS ((2ULL << 32) | (2ULL << 34))

/* The CSRs in section order, as offsets into the hart so save and load share one list. */
static const size_t csr_offsets[] = {
    offsetof(rv_hart, mstatus),       offsetof(rv_hart, misa),
    offsetof(rv_hart, medeleg),       offsetof(rv_hart, mideleg),
    offsetof(rv_hart, mie),           offsetof(rv_hart, mip),
    offsetof(rv_hart, mtvec),         offsetof(rv_hart, mscratch),
    offsetof(rv_hart, mepc),          offsetof(rv_hart, mcause),
    offsetof(rv_hart, mtval),         offsetof(rv_hart, mcounteren),
    offsetof(rv_hart, menvcfg),       offsetof(rv_hart, mcountinhibit),
    offsetof(rv_hart, stvec),         offsetof(rv_hart, sscratch),
    offsetof(rv_hart, sepc),          offsetof(rv_hart, scause),
    offsetof(rv_hart, stval),         offsetof(rv_hart, scounteren),
    offsetof(rv_hart, senvcfg),       offsetof(rv_hart, satp),
    offsetof(rv_hart, stimecmp),      offsetof(rv_hart, minstret),
    offsetof(rv_hart, mcycle_offset),
};

/* Version 2: the H extension's CSRs, as they sit in the hart (swapped while V=1). */
static const size_t hyp_offsets[] = {
    offsetof(rv_hart, vsstatus), offsetof(rv_hart, vstvec),     offsetof(rv_hart, vsscratch),
    offsetof(rv_hart, vsepc),    offsetof(rv_hart, vscause),    offsetof(rv_hart, vstval),
    offsetof(rv_hart, vsatp),    offsetof(rv_hart, hstatus),    offsetof(rv_hart, hedeleg),
    offsetof(rv_hart, hideleg),  offsetof(rv_hart, hvip),       offsetof(rv_hart, hcounteren),
    offsetof(rv_hart, htval),    offsetof(rv_hart, htinst),     offsetof(rv_hart, hgatp),
    offsetof(rv_hart, henvcfg),  offsetof(rv_hart, htimedelta), offsetof(rv_hart, vstimecmp),
    offsetof(rv_hart, mtval2),   offsetof(rv_hart, mtinst),
};

static uint64_t *csr_at(rv_hart *h, size_t off) { return (uint64_t *)(void *)((char *)h + off); }
static uint64_t csr_value(const rv_hart *h, size_t off) {
  return *(const uint64_t *)(const void *)((const char *)h + off);
}

void rv_hart_save(const rv_hart *h, vmstate_writer *w) {
  vmstate_begin(w, "HART", HART_STATE_VERSION);
  vmstate_put_u64(w, h->mhartid);
  for (int i = 0; i < 32; i++)
    vmstate_put_u64(w, h->x[i]);
  for (int i = 0; i < 32; i++)
    vmstate_put_u64(w, h->f[i]);
  vmstate_put_u64(w, h->pc);
  vmstate_put_u32(w, (uint32_t)h->priv);
  vmstate_put_u32(w, h->fflags);
  vmstate_put_u32(w, h->frm);
  for (size_t i = 0; i < ARRAY_SIZE(csr_offsets); i++) {
    uint64_t v = csr_value(h, csr_offsets[i]);
    /* an IPI another hart posted (SBI) is an SSIP the hart folds into mip when it runs next:
     * on one thread (--hart-threads off, record/replay) it may wait for its turn at a save */
    if (csr_offsets[i] == offsetof(rv_hart, mip))
      v |= __atomic_load_n(&h->mip_posted, __ATOMIC_ACQUIRE);
    vmstate_put_u64(w, v);
  }
  for (size_t i = 0; i < ARRAY_SIZE(h->pmpcfg); i++)
    vmstate_put_u64(w, h->pmpcfg[i]);
  for (size_t i = 0; i < ARRAY_SIZE(h->pmpaddr); i++)
    vmstate_put_u64(w, h->pmpaddr[i]);
  vmstate_put_u64(w, h->reservation);
  vmstate_put_bool(w, h->reservation_valid);
  vmstate_put_bool(w, h->wfi);
  vmstate_put_u64(w, __atomic_load_n(&h->ext_mip, __ATOMIC_RELAXED));
  vmstate_put_bool(w, h->virt);
  for (size_t i = 0; i < ARRAY_SIZE(hyp_offsets); i++)
    vmstate_put_u64(w, csr_value(h, hyp_offsets[i]));
  vmstate_end_section(w);
}

static void check_csrs(const rv_hart *h, uint64_t misa, vmstate_reader *r) {
  if (h->misa != misa)
    vmstate_refuse(r, "misa differs from this hart's extensions");
  if ((h->mstatus & (MSTATUS_UXL | MSTATUS_SXL)) != XLEN64_FIELDS)
    vmstate_refuse(r, "mstatus UXL/SXL are not 64 bits");
  if (((h->mstatus & MSTATUS_MPP) >> MSTATUS_MPP_SHIFT) == 2)
    vmstate_refuse(r, "mstatus.MPP holds a privilege level the hart lacks");
  unsigned mode = (unsigned)(h->satp >> 60);
  if (mode != 0 && mode != 8 && mode != 9 && mode != 10)
    vmstate_refuse(r, "satp holds a paging mode the hart does not implement");
  if (h->mip & ~MIP_ALL_BITS)
    vmstate_refuse(r, "mip has bits of interrupts the hart lacks");
  /* What a pmpcfg/pmpaddr write could leave (pmp.c relies on it: a NAPOT address always has a
   * zero bit). Only the even pmpcfg registers exist on RV64. */
  for (size_t i = 0; i < ARRAY_SIZE(h->pmpcfg); i++)
    if (h->pmpcfg[i] & ~((i & 1) ? 0 : RV_PMPCFG_BITS))
      vmstate_refuse(r, "pmpcfg holds bits the hart does not implement");
  for (size_t i = 0; i < ARRAY_SIZE(h->pmpaddr); i++)
    if (h->pmpaddr[i] & ~RV_PMPADDR_MASK)
      vmstate_refuse(r, "pmpaddr holds address bits beyond the hart's 56-bit physical space");
}

int rv_hart_load(rv_hart *h, vmstate_reader *img, vs_error **err) {
  vmstate_reader r;
  if (vmstate_next(img, "HART", HART_STATE_VERSION, &r, err) < 0)
    return -1;
  uint64_t misa = h->misa; /* fixed at build time: what the image must agree with */
  if (vmstate_get_u64(&r) != h->mhartid)
    vmstate_refuse(&r, "hart id differs from the hart at this position");
  for (int i = 0; i < 32; i++)
    h->x[i] = vmstate_get_u64(&r);
  if (h->x[0] != 0)
    vmstate_refuse(&r, "x0 is not zero");
  for (int i = 0; i < 32; i++)
    h->f[i] = vmstate_get_u64(&r);
  h->pc = vmstate_get_u64(&r);
  if (h->pc & 1)
    vmstate_refuse(&r, "pc is not 2-byte aligned");
  uint32_t priv = vmstate_get_u32(&r);
  if (priv != RV_PRIV_U && priv != RV_PRIV_S && priv != RV_PRIV_M)
    vmstate_refuse(&r, "privilege level out of range");
  h->priv = (int)priv;
  h->fflags = vmstate_get_u32(&r);
  h->frm = vmstate_get_u32(&r);
  if (h->fflags > 0x1f || h->frm > 7)
    vmstate_refuse(&r, "fflags or frm out of range");
  for (size_t i = 0; i < ARRAY_SIZE(csr_offsets); i++)
    *csr_at(h, csr_offsets[i]) = vmstate_get_u64(&r);
  __atomic_store_n(&h->mip_posted, 0, __ATOMIC_RELEASE); /* the saved mip holds what was posted */
  for (size_t i = 0; i < ARRAY_SIZE(h->pmpcfg); i++)
    h->pmpcfg[i] = vmstate_get_u64(&r);
  for (size_t i = 0; i < ARRAY_SIZE(h->pmpaddr); i++)
    h->pmpaddr[i] = vmstate_get_u64(&r);
  h->reservation = vmstate_get_u64(&r);
  h->reservation_valid = vmstate_get_bool(&r);
  h->wfi = vmstate_get_bool(&r);
  uint64_t ext = vmstate_get_u64(&r);
  if (ext & ~MIP_DEVICE_BITS)
    vmstate_refuse(&r, "device interrupt lines out of range");
  __atomic_store_n(&h->ext_mip, ext, __ATOMIC_RELAXED);
  if (r.version >= 2) {
    h->virt = vmstate_get_bool(&r);
    for (size_t i = 0; i < ARRAY_SIZE(hyp_offsets); i++)
      *csr_at(h, hyp_offsets[i]) = vmstate_get_u64(&r);
  } else if (misa & MISA_H) {
    vmstate_refuse(&r, "a version 1 hart image has no hypervisor state: restore it with "
                       "--cpu rv64,h=off");
  } else {
    rv_hyp_clear(h);
  }
  if (!r.bad)
    check_csrs(h, misa, &r);
  const char *bad_h = r.bad ? NULL : rv_hyp_state_invalid(h);
  if (bad_h)
    vmstate_refuse(&r, bad_h);
  if (vmstate_end(&r, err) < 0) {
    h->misa = misa;
    return -1;
  }
  /* SC compares against the value LR read, which the image does not hold: a reservation does
   * not survive a restore (SC may always fail; the guest's LR/SC loop retries) */
  h->reservation_valid = false;
  h->check_irq = true;
  __atomic_store_n(&h->stop_request, false, __ATOMIC_RELAXED);
  rv_hart_flush_tlb(h);
  return 0;
}
