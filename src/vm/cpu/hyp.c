/* The hypervisor extension (H 1.0): the virtualization mode V, the hypervisor and VS CSRs, trap
 * routing between VU/VS/HS/M, the virtual-instruction exception, and the hypervisor instructions
 * (HLV/HLVX/HSV, HFENCE). Two-stage translation is in hyp_mmu.c.
 *
 * While V=1 the supervisor CSR fields of the hart hold the guest's values (vsstatus, vstvec, ...,
 * swapped in by rv_hyp_set_virt), so every S-mode path (traps into S, SRET, SUM, satp) serves the
 * virtual supervisor unchanged; the vs* fields hold HS-mode's meanwhile. The interrupt CSRs that
 * are not swapped (sie, sip, stimecmp) are redirected here.
 */
#include "vm/cpu/cpu_internal.h"

enum {
  CSR_SIE = 0x104,
  CSR_SIP = 0x144,
  CSR_STIMECMP = 0x14d,
  CSR_VSSTATUS = 0x200,
  CSR_VSIE = 0x204,
  CSR_VSTVEC = 0x205,
  CSR_VSSCRATCH = 0x240,
  CSR_VSEPC = 0x241,
  CSR_VSCAUSE = 0x242,
  CSR_VSTVAL = 0x243,
  CSR_VSIP = 0x244,
  CSR_VSTIMECMP = 0x24d,
  CSR_VSATP = 0x280,
  CSR_MTINST = 0x34a,
  CSR_MTVAL2 = 0x34b,
  CSR_HSTATUS = 0x600,
  CSR_HEDELEG = 0x602,
  CSR_HIDELEG = 0x603,
  CSR_HIE = 0x604,
  CSR_HTIMEDELTA = 0x605,
  CSR_HCOUNTEREN = 0x606,
  CSR_HGEIE = 0x607,
  CSR_HENVCFG = 0x60a,
  CSR_HTVAL = 0x643,
  CSR_HIP = 0x644,
  CSR_HVIP = 0x645,
  CSR_HTINST = 0x64a,
  CSR_HGATP = 0x680,
  CSR_HGEIP = 0xe12,
};

/* The sstatus fields that belong to the guest while V=1. */
#define VS_SWAPPED_STATUS                                                                          \
  (MSTATUS_SIE | MSTATUS_SPIE | MSTATUS_SPP | MSTATUS_FS | MSTATUS_SUM | MSTATUS_MXR)
#define HSTATUS_WRITABLE                                                                           \
  (HSTATUS_GVA | HSTATUS_SPV | HSTATUS_SPVP | HSTATUS_HU | HSTATUS_VTVM | HSTATUS_VTW |            \
   HSTATUS_VTSR)
/* Exceptions HS-mode may pass on to VS-mode: not the ECALLs from HS/VS/M, the guest-page faults
 * or the virtual-instruction exception. */
#define HEDELEG_MASK 0xb1ffULL
#define HGATP_MODE_SHIFT 60
#define HGATP_VMID_MASK (((1ULL << 14) - 1) << 44)
#define HGATP_PPN_MASK (((1ULL << 44) - 1) & ~3ULL) /* the 16 KiB root is aligned */

static void swap64(uint64_t *a, uint64_t *b) {
  uint64_t t = *a;
  *a = *b;
  *b = t;
}

void rv_hyp_set_virt(rv_hart *h, bool virt) {
  if (h->virt == virt)
    return;
  uint64_t m = h->mstatus, vs = h->vsstatus;
  h->mstatus = (m & ~VS_SWAPPED_STATUS) | (vs & VS_SWAPPED_STATUS);
  h->vsstatus = (vs & ~VS_SWAPPED_STATUS) | (m & VS_SWAPPED_STATUS);
  swap64(&h->stvec, &h->vstvec);
  swap64(&h->sscratch, &h->vsscratch);
  swap64(&h->sepc, &h->vsepc);
  swap64(&h->scause, &h->vscause);
  swap64(&h->stval, &h->vstval);
  swap64(&h->satp, &h->vsatp);
  h->virt = virt;
  /* TLB entries are tagged by the address space (satp) they were filled under: now the guest's
   * satp, or HS-mode's again (V=1 entries have sets of their own, so equal values never mix) */
  rv_tlb_switch_space(h);
}

void rv_hyp_clear(rv_hart *h) {
  h->virt = false;
  h->vsstatus = 2ULL << 32;                  /* UXL = 64 bits */
  h->hstatus = rv_has_h(h) ? 2ULL << 32 : 0; /* VSXL = 64 bits */
  h->vstvec = h->vsscratch = h->vsepc = h->vscause = h->vstval = h->vsatp = 0;
  h->hedeleg = h->hideleg = h->hvip = h->hcounteren = h->htval = h->htinst = h->hgatp = 0;
  h->henvcfg = h->htimedelta = h->mtval2 = h->mtinst = 0;
  h->vstimecmp = UINT64_MAX;
}

/* ---------------------------------------------------------------- interrupts */

static uint64_t guest_time(rv_hart *h) {
  return h->bus->read_mtime(h->bus->opaque) + h->htimedelta;
}

static bool henvcfg_stce(const rv_hart *h) {
  return (h->menvcfg & MENVCFG_STCE) && (h->henvcfg & MENVCFG_STCE);
}

uint64_t rv_hyp_mip(rv_hart *h) {
  uint64_t mip = h->hvip & RV_MIP_VS_MASK;
  if (henvcfg_stce(h) && h->vstimecmp != UINT64_MAX && guest_time(h) >= h->vstimecmp)
    mip |= RV_MIP_VSTIP;
  return mip;
}

bool rv_hyp_trap_to_vs(const rv_hart *h, uint64_t cause, bool irq) {
  return (((irq ? h->hideleg : h->hedeleg) >> cause) & 1) != 0;
}

/* The VS view of the VS-level interrupt bits: VSxIP (bit n+1) appears as SxIP (bit n) where
 * hideleg passes it on. */
static uint64_t vs_view(const rv_hart *h, uint64_t bits) {
  return (bits & h->hideleg & RV_MIP_VS_MASK) >> 1;
}

/* ---------------------------------------------------------------- CSRs */

static bool vstimecmp_allowed(rv_hart *h, bool from_vs) {
  if (h->priv != RV_PRIV_M && (!(h->menvcfg & MENVCFG_STCE) || !(h->mcounteren & 2)))
    return false;
  if (from_vs && (!(h->henvcfg & MENVCFG_STCE) || !(h->hcounteren & 2))) {
    h->csr_virtual = true;
    return false;
  }
  return true;
}

/* vsie, vsip, vstimecmp: shared by their own numbers (HS) and sie/sip/stimecmp (V=1). */
static bool vs_irq_read(rv_hart *h, unsigned which, uint64_t *val, bool from_vs) {
  switch (which) {
  case CSR_VSIE:
    *val = vs_view(h, h->mie);
    return true;
  case CSR_VSIP:
    *val = vs_view(h, rv_read_mip(h));
    return true;
  default:
    if (!vstimecmp_allowed(h, from_vs))
      return false;
    *val = h->vstimecmp;
    return true;
  }
}

static bool vs_irq_write(rv_hart *h, unsigned which, uint64_t val, bool from_vs) {
  uint64_t m = h->hideleg & RV_MIP_VS_MASK;
  switch (which) {
  case CSR_VSIE:
    h->mie = (h->mie & ~m) | ((val << 1) & m);
    return true;
  case CSR_VSIP:
    m &= RV_MIP_VSSIP;
    h->hvip = (h->hvip & ~m) | ((val << 1) & m);
    return true;
  default:
    if (!vstimecmp_allowed(h, from_vs))
      return false;
    h->vstimecmp = val;
    return true;
  }
}

static unsigned vs_irq_csr(unsigned csr) {
  return csr == CSR_SIE ? CSR_VSIE : csr == CSR_SIP ? CSR_VSIP : CSR_VSTIMECMP;
}

bool rv_hyp_vs_csr_read(rv_hart *h, unsigned csr, uint64_t *val, bool *handled) {
  *handled = csr == CSR_SIE || csr == CSR_SIP || csr == CSR_STIMECMP;
  return *handled && vs_irq_read(h, vs_irq_csr(csr), val, true);
}

bool rv_hyp_vs_csr_write(rv_hart *h, unsigned csr, uint64_t val, bool *handled) {
  *handled = csr == CSR_SIE || csr == CSR_SIP || csr == CSR_STIMECMP;
  return *handled && vs_irq_write(h, vs_irq_csr(csr), val, true);
}

static uint64_t status_view(uint64_t s) {
  if ((s & MSTATUS_FS) == MSTATUS_FS_DIRTY)
    s |= MSTATUS_SD;
  return s;
}

/* hgatp and the HFENCE.GVMA from HS-mode obey mstatus.TVM. */
static bool hs_tvm_trapped(const rv_hart *h) {
  return h->priv == RV_PRIV_S && (h->mstatus & MSTATUS_TVM);
}

bool rv_hyp_csr_read(rv_hart *h, unsigned csr, uint64_t *val, bool *handled) {
  *handled = true;
  switch (csr) {
  case CSR_VSSTATUS:
    *val = status_view(h->vsstatus);
    return true;
  case CSR_VSIE:
  case CSR_VSIP:
  case CSR_VSTIMECMP:
    return vs_irq_read(h, csr, val, false);
  case CSR_VSTVEC:
    *val = h->vstvec;
    return true;
  case CSR_VSSCRATCH:
    *val = h->vsscratch;
    return true;
  case CSR_VSEPC:
    *val = h->vsepc;
    return true;
  case CSR_VSCAUSE:
    *val = h->vscause;
    return true;
  case CSR_VSTVAL:
    *val = h->vstval;
    return true;
  case CSR_VSATP:
    *val = h->vsatp;
    return true;
  case CSR_MTINST:
    *val = h->mtinst;
    return true;
  case CSR_MTVAL2:
    *val = h->mtval2;
    return true;
  case CSR_HSTATUS:
    *val = h->hstatus;
    return true;
  case CSR_HEDELEG:
    *val = h->hedeleg;
    return true;
  case CSR_HIDELEG:
    *val = h->hideleg;
    return true;
  case CSR_HIE:
    *val = h->mie & RV_MIP_VS_MASK;
    return true;
  case CSR_HIP:
    *val = rv_read_mip(h) & RV_MIP_VS_MASK;
    return true;
  case CSR_HVIP:
    *val = h->hvip;
    return true;
  case CSR_HTIMEDELTA:
    *val = h->htimedelta;
    return true;
  case CSR_HCOUNTEREN:
    *val = h->hcounteren;
    return true;
  case CSR_HGEIE:
  case CSR_HGEIP:
    *val = 0; /* no guest external interrupt files (GEILEN = 0) */
    return true;
  case CSR_HENVCFG:
    *val = h->henvcfg & (h->menvcfg & MENVCFG_STCE ? ~0ULL : ~MENVCFG_STCE);
    return true;
  case CSR_HTVAL:
    *val = h->htval;
    return true;
  case CSR_HTINST:
    *val = h->htinst;
    return true;
  case CSR_HGATP:
    if (hs_tvm_trapped(h))
      return false;
    *val = h->hgatp;
    return true;
  default:
    *handled = false;
    return false;
  }
}

static bool write_hgatp(rv_hart *h, uint64_t val) {
  if (hs_tvm_trapped(h))
    return false;
  uint64_t mode = val >> HGATP_MODE_SHIFT;
  if (mode != 0 && mode != 8 && mode != 9 && mode != 10)
    return true; /* WARL: an unsupported mode leaves hgatp as it was */
  val &= (15ULL << HGATP_MODE_SHIFT) | HGATP_VMID_MASK | HGATP_PPN_MASK;
  if (val != h->hgatp) { /* KVM writes it again at every vCPU load */
    h->hgatp = val;
    rv_hart_flush_tlb(h); /* another guest (VMID) or G-stage table: nothing cached may stay */
  }
  return true;
}

static void write_vsatp(rv_hart *h, uint64_t val) {
  uint64_t mode = val >> 60;
  if (mode != 0 && mode != 8 && mode != 9 && mode != 10)
    return;
  val = mode == 0 ? 0 : val;
  if (val != h->vsatp) {
    h->vsatp = val;
    rv_hart_flush_tlb(h);
  }
}

bool rv_hyp_csr_write(rv_hart *h, unsigned csr, uint64_t val, bool *handled) {
  *handled = true;
  switch (csr) {
  case CSR_VSSTATUS: {
    uint64_t old = h->vsstatus;
    h->vsstatus = (old & ~VS_SWAPPED_STATUS) | (val & VS_SWAPPED_STATUS);
    if ((old ^ h->vsstatus) & (MSTATUS_MXR | MSTATUS_SUM))
      rv_hart_flush_tlb(h);
    return true;
  }
  case CSR_VSIE:
  case CSR_VSIP:
  case CSR_VSTIMECMP:
    return vs_irq_write(h, csr, val, false);
  case CSR_VSTVEC:
    h->vstvec = val & ~2ULL;
    return true;
  case CSR_VSSCRATCH:
    h->vsscratch = val;
    return true;
  case CSR_VSEPC:
    h->vsepc = val & ~1ULL;
    return true;
  case CSR_VSCAUSE:
    h->vscause = val;
    return true;
  case CSR_VSTVAL:
    h->vstval = val;
    return true;
  case CSR_VSATP:
    write_vsatp(h, val);
    return true;
  case CSR_MTINST:
    h->mtinst = val;
    return true;
  case CSR_MTVAL2:
    h->mtval2 = val;
    return true;
  case CSR_HSTATUS:
    h->hstatus = (h->hstatus & ~HSTATUS_WRITABLE) | (val & HSTATUS_WRITABLE);
    return true;
  case CSR_HEDELEG:
    h->hedeleg = val & HEDELEG_MASK;
    return true;
  case CSR_HIDELEG:
    h->hideleg = val & RV_MIP_VS_MASK;
    return true;
  case CSR_HIE:
    h->mie = (h->mie & ~RV_MIP_VS_MASK) | (val & RV_MIP_VS_MASK);
    return true;
  case CSR_HIP:
    h->hvip = (h->hvip & ~RV_MIP_VSSIP) | (val & RV_MIP_VSSIP);
    return true;
  case CSR_HVIP:
    h->hvip = val & RV_MIP_VS_MASK;
    return true;
  case CSR_HTIMEDELTA:
    h->htimedelta = val;
    return true;
  case CSR_HCOUNTEREN:
    h->hcounteren = val & 0xffffffff;
    return true;
  case CSR_HGEIE:
    return true; /* GEILEN = 0: read-only zero */
  case CSR_HENVCFG:
    h->henvcfg = val & (MENVCFG_STCE | 1);
    return true;
  case CSR_HTVAL:
    h->htval = val;
    return true;
  case CSR_HTINST:
    h->htinst = val;
    return true;
  case CSR_HGATP:
    return write_hgatp(h, val);
  default:
    *handled = false;
    return false;
  }
}

int rv_hyp_csr_denied(rv_hart *h, unsigned csr, bool write) {
  unsigned level = (csr >> 8) & 3;
  /* the CSR levels a mode reaches: M all, HS the hypervisor ones too, VS the supervisor ones */
  unsigned mode = h->priv == RV_PRIV_M      ? 3
                  : h->priv == RV_PRIV_U    ? 0
                  : h->virt || !rv_has_h(h) ? 1
                                            : 2;
  if (write && (csr >> 10) == 3)
    return EXC_ILLEGAL;
  if (level <= mode)
    return 0;
  if (!h->virt || level == 3)
    return EXC_ILLEGAL;
  /* V=1: a supervisor or hypervisor CSR that HS-mode could read is a virtual instruction. */
  int priv = h->priv;
  uint64_t ignored;
  h->virt = false; /* no swap: only whether the read succeeds counts */
  h->priv = RV_PRIV_S;
  bool exists = rv_csr_read(h, csr, &ignored);
  h->virt = true;
  h->priv = priv;
  return exists ? EXC_VIRTUAL_INSN : EXC_ILLEGAL;
}

/* ---------------------------------------------------------------- htinst */

/* The instruction at h->pc as the hart fetched it (read without side effects), or 0. */
static uint32_t insn_at_pc(const rv_hart *h, bool *compressed) {
  uint64_t pa;
  const rv_bus *bus = h->bus;
  if (!rv_hart_debug_translate(h, h->pc, &pa) || !rv_ram_contains(bus, pa, 2))
    return 0;
  uint16_t lo;
  memcpy(&lo, bus->ram + (pa - bus->ram_base), 2);
  *compressed = (lo & 3) != 3;
  if (*compressed)
    return rv_expand_compressed(lo);
  if ((h->pc & 0xfff) > 0xffc || !rv_ram_contains(bus, pa, 4))
    return 0; /* the upper half is on another page: htinst may always be zero */
  uint32_t raw;
  memcpy(&raw, bus->ram + (pa - bus->ram_base), 4);
  return raw;
}

uint64_t rv_hyp_transformed_insn(const rv_hart *h, uint64_t addr) {
  bool compressed = false;
  uint32_t raw = insn_at_pc(h, &compressed);
  const uint32_t rs1_field = 0x1fU << 15;
  uint64_t base = h->x[(raw >> 15) & 31];
  uint32_t t;
  switch (raw & 0x7f) {
  case 0x03: /* loads: imm[11:0] cleared */
  case 0x07:
    base += (uint64_t)(int64_t)((int32_t)raw >> 20);
    t = raw & 0x000fffffU;
    break;
  case 0x23: /* stores: imm[11:5] and imm[4:0] cleared */
  case 0x27:
    base += (uint64_t)(int64_t)(((int32_t)raw >> 25) * 32 + (int32_t)((raw >> 7) & 31));
    t = raw & ~0xfe000f80U;
    break;
  case 0x2f: /* AMOs and HLV/HSV: as they are */
    t = raw;
    break;
  case 0x73:
    if (((raw >> 12) & 7) != 4)
      return 0;
    t = raw;
    break;
  default:
    return 0;
  }
  /* rs1 holds the faulting address's offset from the access's own (parts of misaligned ones) */
  uint64_t offset = addr - base;
  if (offset > 31)
    return 0;
  t = (t & ~rs1_field) | (uint32_t)(offset << 15);
  return compressed ? (t & ~2U) : t; /* bit 1 clear: it came from a 16-bit instruction */
}

/* ---------------------------------------------------------------- snapshots */

static bool paging_mode_ok(uint64_t atp) {
  uint64_t mode = atp >> 60;
  return mode == 0 || mode == 8 || mode == 9 || mode == 10;
}

const char *rv_hyp_state_invalid(const rv_hart *h) {
  if (!rv_has_h(h)) {
    bool any = h->virt || h->hstatus || h->hedeleg || h->hideleg || h->hvip || h->hcounteren ||
               h->htval || h->htinst || h->hgatp || h->henvcfg || h->htimedelta || h->mtval2 ||
               h->mtinst || h->vstvec || h->vsscratch || h->vsepc || h->vscause || h->vstval ||
               h->vsatp || (h->vsstatus & ~(3ULL << 32)) || h->vstimecmp != UINT64_MAX ||
               (h->mstatus & (MSTATUS_MPV | MSTATUS_GVA)) || (h->mie & RV_MIP_VS_MASK);
    return any ? "hypervisor state in an image of a hart without the H extension" : NULL;
  }
  if (h->virt && h->priv == RV_PRIV_M)
    return "V=1 in M-mode";
  if ((h->hstatus & ~HSTATUS_WRITABLE) != (2ULL << 32))
    return "hstatus holds bits the hart does not implement or VSXL is not 64 bits";
  if ((h->vsstatus & ~VS_SWAPPED_STATUS) != (2ULL << 32))
    return "vsstatus holds bits the hart does not implement or UXL is not 64 bits";
  if (h->hedeleg & ~HEDELEG_MASK)
    return "hedeleg delegates exceptions VS-mode cannot take";
  if ((h->hideleg | h->hvip) & ~RV_MIP_VS_MASK)
    return "hideleg or hvip hold bits other than the VS-level interrupts";
  if (h->hcounteren >> 32)
    return "hcounteren is wider than 32 bits";
  if (h->henvcfg & ~(MENVCFG_STCE | 1))
    return "henvcfg holds bits the hart does not implement";
  if (!paging_mode_ok(h->hgatp) ||
      (h->hgatp & ~((15ULL << HGATP_MODE_SHIFT) | HGATP_VMID_MASK | HGATP_PPN_MASK)))
    return "hgatp holds a mode or bits the hart does not implement";
  if (!paging_mode_ok(h->vsatp))
    return "vsatp holds a paging mode the hart does not implement";
  return NULL;
}

/* ---------------------------------------------------------------- xRET */

void rv_hyp_sret(rv_hart *h) {
  if (h->virt || !rv_has_h(h))
    return;
  bool spv = (h->hstatus & HSTATUS_SPV) != 0;
  h->hstatus &= ~HSTATUS_SPV;
  rv_hyp_set_virt(h, spv);
}

void rv_hyp_mret(rv_hart *h, int mpp) {
  bool mpv = (h->mstatus & MSTATUS_MPV) != 0 && mpp != RV_PRIV_M;
  h->mstatus &= ~MSTATUS_MPV;
  rv_hyp_set_virt(h, mpv);
}

/* ---------------------------------------------------------------- instructions */

void rv_virtual_insn(rv_hart *h, const rv_insn *d) { rv_raise(h, EXC_VIRTUAL_INSN, d->raw); }

/* HLV/HSV/HFENCE run in HS and M (and in U with hstatus.HU for HLV/HSV); from V=1 they are
 * virtual instructions. Returns whether d may run, after raising if not. */
static bool hyp_insn_allowed(rv_hart *h, const rv_insn *d, bool user_ok) {
  if (!rv_has_h(h)) {
    rv_illegal(h, d);
    return false;
  }
  if (h->virt) {
    rv_virtual_insn(h, d);
    return false;
  }
  if (h->priv == RV_PRIV_U && !(user_ok && (h->hstatus & HSTATUS_HU))) {
    rv_illegal(h, d);
    return false;
  }
  return true;
}

/* The TLB set a hypervisor load or store translates through: VS or VU by hstatus.SPVP. */
static int hlv_set(const rv_hart *h) {
  if (!(h->hstatus & HSTATUS_SPVP))
    return TLB_VU;
  return (h->vsstatus & MSTATUS_SUM) ? TLB_VS_SUM : TLB_VS;
}

static int hlv_access_cause(int access, bool misaligned) {
  if (access == ACC_WRITE)
    return misaligned ? EXC_STORE_MISALIGNED : EXC_STORE_ACCESS;
  return misaligned ? EXC_LOAD_MISALIGNED : EXC_LOAD_ACCESS;
}

/* The physical address of a hypervisor access (misaligned ones are split by the caller), or
 * false after raising its exception. */
static bool hlv_translate(rv_hart *h, uint64_t va, unsigned size, int access, bool hlvx,
                          uint64_t *pa) {
  int set = hlv_set(h);
  int cause = rv_hyp_translate(h, va, access, set, hlvx, pa);
  if (!cause && !rv_pmp_check(h, *pa, size, access, set == TLB_VU ? RV_PRIV_U : RV_PRIV_S))
    cause = hlv_access_cause(access, false);
  if (cause) {
    rv_raise(h, (uint64_t)cause, va);
    return false;
  }
  return true;
}

/* One piece of a hypervisor access: the debugger's watchpoints see each piece with its guest
 * virtual address and the physical address it reached (a misaligned access's bytes may lie in
 * two pages). */
static bool hlv_byte_or_aligned(rv_hart *h, uint64_t va, unsigned size, int access, bool hlvx,
                                uint64_t *val) {
  uint64_t pa;
  if (!hlv_translate(h, va, size, access, hlvx, &pa))
    return false;
  rv_bus *bus = h->bus;
  unsigned watched = access == ACC_WRITE ? RV_WATCH_WRITE : RV_WATCH_READ;
  if (rv_ram_contains(bus, pa, size)) {
    uint8_t *p = bus->ram + (pa - bus->ram_base);
    if (access == ACC_WRITE) {
      memcpy(p, val, size); /* little-endian host: the low bytes */
      rv_ram_written_at(h, pa);
    } else {
      *val = 0;
      memcpy(val, p, size);
    }
    rv_watch_data_access(h, va, pa, size, watched);
    return true;
  }
  bool ok = access == ACC_WRITE ? bus->mmio_write && bus->mmio_write(bus->opaque, pa, size, *val)
                                : bus->mmio_read && bus->mmio_read(bus->opaque, pa, size, val);
  if (!ok) {
    rv_raise(h, (uint64_t)hlv_access_cause(access, false), va);
    return false;
  }
  if (size < 8 && access != ACC_WRITE)
    *val &= (1ULL << (8 * size)) - 1;
  rv_watch_data_access(h, va, pa, size, watched);
  return true;
}

/* One hypervisor load or store; misaligned ones in RAM go byte by byte. */
static bool hlv_access(rv_hart *h, uint64_t va, unsigned size, int access, bool hlvx,
                       uint64_t *val) {
  if (!(va & (size - 1)))
    return hlv_byte_or_aligned(h, va, size, access, hlvx, val);
  uint64_t v = access == ACC_WRITE ? *val : 0;
  if (access == ACC_WRITE) {
    for (unsigned i = 0; i < size; i++) { /* all bytes checked first: no partial store */
      uint64_t pa;
      if (!hlv_translate(h, va + i, 1, access, hlvx, &pa))
        return false;
      if (!rv_ram_contains(h->bus, pa, 1)) {
        rv_raise(h, EXC_STORE_MISALIGNED, va);
        return false;
      }
    }
  }
  for (unsigned i = 0; i < size; i++) {
    uint64_t b = (v >> (8 * i)) & 0xff;
    if (!hlv_byte_or_aligned(h, va + i, 1, access, hlvx, &b))
      return false;
    if (access != ACC_WRITE)
      v |= (b & 0xff) << (8 * i);
  }
  *val = v;
  return true;
}

static void hlv(rv_hart *h, const rv_insn *d, unsigned size, bool sign, bool hlvx) {
  if (!hyp_insn_allowed(h, d, true))
    return;
  uint64_t v;
  uint64_t va = h->x[d->rs1];
  if (!hlv_access(h, va, size, ACC_READ, hlvx, &v))
    return;
  h->trap_gva = false;
  if (sign && size < 8) {
    unsigned shift = 64 - 8 * size;
    v = (uint64_t)((int64_t)(v << shift) >> shift);
  }
  h->x[d->rd] = v;
}

static void hsv(rv_hart *h, const rv_insn *d, unsigned size) {
  if (!hyp_insn_allowed(h, d, true))
    return;
  uint64_t v = h->x[d->rs2], va = h->x[d->rs1];
  if (hlv_access(h, va, size, ACC_WRITE, false, &v))
    h->trap_gva = false;
  h->check_irq = true; /* the store may have written decoded code or a device */
}

RV_HANDLER(op_hlv_b) { hlv(h, d, 1, true, false); }
RV_HANDLER(op_hlv_bu) { hlv(h, d, 1, false, false); }
RV_HANDLER(op_hlv_h) { hlv(h, d, 2, true, false); }
RV_HANDLER(op_hlv_hu) { hlv(h, d, 2, false, false); }
RV_HANDLER(op_hlvx_hu) { hlv(h, d, 2, false, true); }
RV_HANDLER(op_hlv_w) { hlv(h, d, 4, true, false); }
RV_HANDLER(op_hlv_wu) { hlv(h, d, 4, false, false); }
RV_HANDLER(op_hlvx_wu) { hlv(h, d, 4, false, true); }
RV_HANDLER(op_hlv_d) { hlv(h, d, 8, false, false); }
RV_HANDLER(op_hsv_b) { hsv(h, d, 1); }
RV_HANDLER(op_hsv_h) { hsv(h, d, 2); }
RV_HANDLER(op_hsv_w) { hsv(h, d, 4); }
RV_HANDLER(op_hsv_d) { hsv(h, d, 8); }

/* Both fences drop the whole TLB: V=1 translations live in sets of their own, and the G stage is
 * folded into them, so a finer flush would have to find every guest page a host page backs. */
RV_HANDLER(op_hfence_vvma) {
  if (hyp_insn_allowed(h, d, false))
    rv_hart_flush_tlb(h);
}

RV_HANDLER(op_hfence_gvma) {
  if (!hyp_insn_allowed(h, d, false))
    return;
  if (hs_tvm_trapped(h)) {
    rv_illegal(h, d);
    return;
  }
  rv_hart_flush_tlb(h);
}
