/* The hypervisor extension: its CSRs (WARL masks, who may access them), the trap paths between
 * VU/VS/HS/M (delegation through medeleg/hedeleg, mstatus.MPV/GVA, hstatus.SPV/SPVP/GVA), the
 * virtual-instruction exception, two-stage translation with faults at each stage (their tval,
 * mtval2/htval and mtinst/htinst), HLV/HLVX/HSV, and VS-level interrupts (hvip, vstimecmp). */
#include "test.h"

__asm__(".option arch, +h"); /* GCC 12 has no 'h' in -march; binutils 2.40 does */

#define RWX_AD (PTE_V | PTE_R | PTE_W | PTE_X | PTE_A | PTE_D)

#define MSTATUS_GVA (1ul << 38)
#define MSTATUS_MPV (1ul << 39)
#define HSTATUS_GVA (1ul << 6)
#define HSTATUS_SPV (1ul << 7)
#define HSTATUS_SPVP (1ul << 8)
#define HSTATUS_HU (1ul << 9)
#define HSTATUS_VTVM (1ul << 20)
#define HSTATUS_VTW (1ul << 21)
#define HSTATUS_VTSR (1ul << 22)
#define STCE (1ul << 63)

#define CAUSE_ILLEGAL 2
#define CAUSE_LOAD_ACCESS 5
#define CAUSE_ECALL_VS 10
#define CAUSE_LOAD_PAGE 13
#define CAUSE_STORE_PAGE 15
#define CAUSE_FETCH_GUEST 20
#define CAUSE_LOAD_GUEST 21
#define CAUSE_VIRTUAL 22
#define CAUSE_STORE_GUEST 23

/* The guest-physical window the G-stage tests map page by page (root index 4 of Sv39x4). */
#define GW 0x100000000ul

/* G stage: a 16 KiB root, one level-1 and one level-0 table for the window */
static uint64_t g_root[2048] __attribute__((aligned(16384)));
static uint64_t g_l1[512] __attribute__((aligned(4096)));
static uint64_t g_l0[512] __attribute__((aligned(4096)));
/* VS stage (guest physical = host physical in the identity part) */
static uint64_t vs_root[512] __attribute__((aligned(4096)));
static uint64_t data_page[512] __attribute__((aligned(4096)));
static uint64_t data_page2[512] __attribute__((aligned(4096)));
static uint64_t exec_page[512] __attribute__((aligned(4096)));

static uint64_t pte(const void *pa, uint64_t flags) { return ((uint64_t)pa >> 12) << 10 | flags; }

/* What the recording trap entries below saw (offsets used by the assembly). */
struct rec {
  uint64_t t1, cause, tval, hstatus, htval, htinst, epc, count, resume;
};
static volatile struct rec hs_rec, vs_rec;

/* HS and VS trap entries: record the trap in the struct rec that sscratch points at (vsscratch
 * for VS), go on after the 4-byte instruction (or at rec.resume); an interrupt masks its level. */
#define REC_ENTRY(name, with_h)                                                                    \
  __asm__(".text\n.align 4\n.globl " #name "\n" #name ":\n"                                        \
          "csrrw t0, sscratch, t0\n sd t1, 0(t0)\n csrr t1, scause\n sd t1, 8(t0)\n"               \
          "bltz t1, 2f\n csrr t1, stval\n sd t1, 16(t0)\n"                                         \
          ".if " #with_h "\n csrr t1, hstatus\n sd t1, 24(t0)\n csrr t1, htval\n sd t1, 32(t0)\n"  \
          "csrr t1, htinst\n sd t1, 40(t0)\n .endif\n"                                             \
          "csrr t1, sepc\n sd t1, 48(t0)\n ld t1, 64(t0)\n bnez t1, 1f\n csrr t1, sepc\n"          \
          "addi t1, t1, 4\n1: csrw sepc, t1\n sd zero, 64(t0)\n j 3f\n"                            \
          "2: csrw sie, zero\n .if " #with_h "\n csrw hvip, zero\n .endif\n"                       \
          "3: ld t1, 56(t0)\n addi t1, t1, 1\n sd t1, 56(t0)\n ld t1, 0(t0)\n"                     \
          "csrrw t0, sscratch, t0\n sret\n")
REC_ENTRY(hs_trap_entry, 1);
REC_ENTRY(vs_trap_entry, 0);
extern char hs_trap_entry[], vs_trap_entry[];

/* Accesses that are always 4-byte instructions (the recording entries skip 4 bytes). */
static inline uint64_t ld4(uint64_t a) {
  uint64_t v;
  __asm__ volatile(".option push\n.option norvc\nld %0, 0(%1)\n.option pop"
                   : "=r"(v)
                   : "r"(a)
                   : "memory");
  return v;
}
static inline void sd4(uint64_t a, uint64_t v) {
  __asm__ volatile(".option push\n.option norvc\nsd %1, 0(%0)\n.option pop" ::"r"(a), "r"(v)
                   : "memory");
}
static inline uint64_t hlv_d(uint64_t a) {
  uint64_t v = 0xdead;
  __asm__ volatile("hlv.d %0, (%1)" : "+r"(v) : "r"(a) : "memory");
  return v;
}
static inline uint64_t hlv_b(uint64_t a) {
  uint64_t v = 0xdead;
  __asm__ volatile("hlv.b %0, (%1)" : "+r"(v) : "r"(a) : "memory");
  return v;
}
static inline uint64_t hlvx_wu(uint64_t a) {
  uint64_t v = 0xdead;
  __asm__ volatile("hlvx.wu %0, (%1)" : "+r"(v) : "r"(a) : "memory");
  return v;
}
static inline void hsv_w(uint64_t a, uint64_t v) {
  __asm__ volatile("hsv.w %1, (%0)" ::"r"(a), "r"(v) : "memory");
}

/* ------------------------------------------------------------------ CSRs */

static void csr_masks(void) {
  CHECK(CSRR(misa) & (1ul << 7));
  CHECK((CSRR(hstatus) >> 32 & 3) == 2); /* VSXL = 64 */
  CSRW(hstatus, ~0ul);
  CHECK(CSRR(hstatus) == ((2ul << 32) | HSTATUS_GVA | HSTATUS_SPV | HSTATUS_SPVP | HSTATUS_HU |
                          HSTATUS_VTVM | HSTATUS_VTW | HSTATUS_VTSR));
  CSRW(hstatus, 0);
  CHECK(CSRR(hstatus) == (2ul << 32));
  CSRW(hedeleg, ~0ul);
  CHECK(CSRR(hedeleg) == 0xb1ff);
  CSRW(hedeleg, 0);
  CSRW(hideleg, ~0ul);
  CHECK(CSRR(hideleg) == 0x444);
  CSRW(hideleg, 0);
  CSRW(hvip, ~0ul);
  CHECK(CSRR(hvip) == 0x444);
  CHECK((CSRR(hip) & 0x444) == 0x444);
  CSRW(hvip, 0);
  CSRW(hgeie, ~0ul);
  CHECK(CSRR(hgeie) == 0);
  CHECK(CSRR(hgeip) == 0);
  CSRW(hcounteren, ~0ul);
  CHECK(CSRR(hcounteren) == 0xffffffff);
  CSRW(henvcfg, ~0ul);
  CSRC(menvcfg, STCE);
  CHECK(CSRR(henvcfg) == 1); /* STCE reads zero while menvcfg.STCE is clear */
  CSRS(menvcfg, STCE);
  CHECK(CSRR(henvcfg) == (STCE | 1));
  CSRW(henvcfg, 0);
  /* mideleg shows the VS-level interrupts delegated for good; medeleg takes the H causes */
  CSRW(mideleg, 0);
  CHECK(CSRR(mideleg) == 0x444);
  CSRW(medeleg, ~0ul);
  CHECK(CSRR(medeleg) == (0xb3fful | (1ul << 10) | (0xful << 20)));
  CSRW(medeleg, 0);
  /* hgatp: an unsupported mode leaves it alone; the root's two low PPN bits read zero */
  CSRW(hgatp, (8ul << 60) | 0x80123ul);
  CHECK(CSRR(hgatp) == ((8ul << 60) | 0x80120ul));
  CSRW(hgatp, (7ul << 60) | 0x80000ul);
  CHECK(CSRR(hgatp) == ((8ul << 60) | 0x80120ul));
  CSRW(hgatp, 0);
  CSRW(vsatp, 5ul << 60); /* unsupported mode */
  CHECK(CSRR(vsatp) == 0);
  CSRW(vsstatus, ~0ul);
  CHECK((CSRR(vsstatus) & ~(1ul << 63)) ==
        ((2ul << 32) | 0x2 | 0x20 | 0x100 | MSTATUS_FS | MSTATUS_SUM | MSTATUS_MXR));
  CSRW(vsstatus, 0);
  CSRW(0x34b, 0x1234); /* mtval2, mtinst: read-write */
  CHECK(CSRR(0x34b) == 0x1234);
  CSRW(mstatus, CSRR(mstatus) | MSTATUS_MPV | MSTATUS_GVA);
  CHECK((CSRR(mstatus) & (MSTATUS_MPV | MSTATUS_GVA)) == (MSTATUS_MPV | MSTATUS_GVA));
  CSRC(mstatus, MSTATUS_MPV | MSTATUS_GVA);
}

static void hs_reads_h_csrs(void) {
  CSRW(vsscratch, 77);
  CHECK(CSRR(vsscratch) == 77);
  (void)CSRR(hstatus);
  back_to_m();
}

static void u_reads_hstatus(void) {
  (void)CSRR(hstatus);
  back_to_m();
}

/* VS-mode: S CSRs are the VS ones, H and VS CSRs are virtual instructions, M CSRs illegal. */
static volatile uint64_t seen_sscratch, seen_sstatus, seen_time;
static void vs_csr_rules(void) {
  seen_sscratch = CSRR(sscratch);
  seen_sstatus = CSRR(sstatus);
  (void)CSRR(hstatus); /* 22 */
  (void)CSRR(vsatp);   /* 22 */
  (void)CSRR(mstatus); /* 2 */
  back_to_m();
}

static void vs_read_hstatus(void) {
  (void)CSRR(hstatus);
  back_to_m();
}
static void vs_read_mstatus(void) {
  (void)CSRR(mstatus);
  back_to_m();
}
static void vu_read_sstatus(void) {
  (void)CSRR(sstatus);
  back_to_m();
}
static void vu_read_cycle(void) {
  (void)CSRR(cycle);
  back_to_m();
}
static void vs_read_time(void) {
  seen_time = CSRR(time);
  back_to_m();
}
static void vs_wfi(void) {
  __asm__ volatile("wfi");
  back_to_m();
}
static void vs_sret(void) {
  __asm__ volatile("sret");
  back_to_m();
}
static void vs_sfence(void) {
  __asm__ volatile("sfence.vma");
  back_to_m();
}
static void vs_hlv(void) {
  (void)hlv_d((uint64_t)data_page);
  back_to_m();
}
static void vs_hfence(void) {
  __asm__ volatile("hfence.gvma");
  back_to_m();
}
static void vs_mret(void) {
  __asm__ volatile("mret");
  back_to_m();
}

/* Run fn in VS (priv 1) or VU (priv 0) mode; M handles what is not delegated. */
static void enter_virtual(long priv, void (*fn)(void)) {
  CSRS(mstatus, MSTATUS_MPV);
  enter_mode(priv, fn);
  CHECK(!(CSRR(mstatus) & MSTATUS_MPV)); /* MRET to M cleared it */
}

static void expect_m_trap(uint64_t cause, int from_priv, int virt) {
  CHECK(last_trap.count >= 1);
  CHECK(last_trap.cause == cause);
  CHECK(!last_trap.s_mode);
  CHECK(last_trap.priv == from_priv);
  CHECK(!!(last_trap.status & MSTATUS_MPV) == virt);
}

static void csr_access_rules(void) {
  reset_trap();
  enter_mode(1, hs_reads_h_csrs);
  CHECK(last_trap.count == 0);
  reset_trap();
  enter_mode(0, u_reads_hstatus);
  expect_m_trap(CAUSE_ILLEGAL, 0, 0);

  CSRW(vsscratch, 0x5a5a);
  CSRW(vsstatus, MSTATUS_SUM);
  reset_trap();
  enter_virtual(1, vs_read_hstatus);
  expect_m_trap(CAUSE_VIRTUAL, 1, 1);
  CHECK((last_trap.tval & 0xfff0707ful) == 0x60002073ul); /* the csrr itself */
  reset_trap();
  enter_virtual(1, vs_read_mstatus);
  expect_m_trap(CAUSE_ILLEGAL, 1, 1);
  reset_trap();
  enter_virtual(1, vs_csr_rules);
  CHECK(last_trap.count == 3);
  CHECK(seen_sscratch == 0x5a5a);
  CHECK(seen_sstatus & MSTATUS_SUM);
  CHECK(CSRR(vsscratch) == 0x5a5a);
  CSRW(vsstatus, 0);

  /* VU: supervisor CSRs are virtual instructions; counters obey hcounteren */
  reset_trap();
  enter_virtual(0, vu_read_sstatus);
  expect_m_trap(CAUSE_VIRTUAL, 0, 1);
  CSRW(mcounteren, 7);
  CSRW(scounteren, 7);
  CSRW(hcounteren, 0);
  reset_trap();
  enter_virtual(0, vu_read_cycle);
  expect_m_trap(CAUSE_VIRTUAL, 0, 1);
  CSRW(hcounteren, 7);
  reset_trap();
  enter_virtual(0, vu_read_cycle);
  CHECK(last_trap.count == 0);
  CSRW(mcounteren, 0);
  reset_trap();
  enter_virtual(0, vu_read_cycle);
  expect_m_trap(CAUSE_ILLEGAL, 0, 1);
  CSRW(mcounteren, 7);
  /* htimedelta moves the guest's time */
  CSRW(htimedelta, 1ul << 50);
  enter_virtual(1, vs_read_time);
  CHECK(seen_time >= (1ul << 50));
  CSRW(htimedelta, 0);

  /* instructions: WFI (VTW), SRET (VTSR), SFENCE.VMA (VTVM), the H instructions, MRET */
  CSRW(hstatus, HSTATUS_VTW | HSTATUS_VTSR | HSTATUS_VTVM);
  void (*const virt_fns[])(void) = {vs_wfi, vs_sret, vs_sfence, vs_hlv, vs_hfence};
  for (unsigned i = 0; i < sizeof(virt_fns) / sizeof(virt_fns[0]); i++) {
    reset_trap();
    enter_virtual(1, virt_fns[i]);
    expect_m_trap(CAUSE_VIRTUAL, 1, 1);
  }
  CSRW(hstatus, 0);
  reset_trap();
  enter_virtual(1, vs_mret);
  expect_m_trap(CAUSE_ILLEGAL, 1, 1);
  /* TW=1 makes WFI illegal, not virtual */
  CSRS(mstatus, MSTATUS_TW);
  reset_trap();
  enter_virtual(1, vs_wfi);
  expect_m_trap(CAUSE_ILLEGAL, 1, 1);
  CSRC(mstatus, MSTATUS_TW);
}

/* ------------------------------------------------------------------ trap paths */

static void vs_ecall(void) {
  __asm__ volatile("li a7, 0; ecall" ::: "a7", "memory");
  back_to_m();
}
static void vs_illegal(void) {
  __asm__ volatile(".option push\n.option norvc\n.word 0\n.option pop");
  back_to_m();
}
static void vu_illegal(void) {
  __asm__ volatile(".option push\n.option norvc\n.word 0\n.option pop");
  back_to_m();
}

static void trap_paths(void) {
  /* VS ECALL is cause 10, to M by default */
  reset_trap();
  enter_virtual(1, vs_ecall);
  expect_m_trap(CAUSE_ECALL_VS, 1, 1);
  /* medeleg without hedeleg: to HS, with SPV/SPVP telling where from */
  CSRW(stvec, (uint64_t)hs_trap_entry);
  CSRW(sscratch, (uint64_t)&hs_rec);
  CSRW(medeleg, 1ul << CAUSE_ILLEGAL);
  hs_rec.count = 0;
  reset_trap();
  enter_virtual(1, vs_illegal);
  CHECK(last_trap.count == 0);
  CHECK(hs_rec.count == 1);
  CHECK(hs_rec.cause == CAUSE_ILLEGAL);
  CHECK((hs_rec.hstatus & (HSTATUS_SPV | HSTATUS_SPVP)) == (HSTATUS_SPV | HSTATUS_SPVP));
  CHECK(!(hs_rec.hstatus & HSTATUS_GVA)); /* tval is not an address */
  CHECK(!(CSRR(hstatus) & HSTATUS_SPV));  /* SRET back to VS cleared it */
  hs_rec.count = 0;
  enter_virtual(0, vu_illegal);
  CHECK(hs_rec.count == 1);
  CHECK((hs_rec.hstatus & (HSTATUS_SPV | HSTATUS_SPVP)) == HSTATUS_SPV);
  /* ... and with hedeleg too: to VS, whose handler sees its own scause and sepc */
  CSRW(hedeleg, 1ul << CAUSE_ILLEGAL);
  CSRW(vstvec, (uint64_t)vs_trap_entry);
  CSRW(vsscratch, (uint64_t)&vs_rec);
  hs_rec.count = vs_rec.count = 0;
  enter_virtual(1, vs_illegal);
  CHECK(hs_rec.count == 0);
  CHECK(vs_rec.count == 1);
  CHECK(vs_rec.cause == CAUSE_ILLEGAL);
  CHECK(vs_rec.tval == 0);
  CHECK(CSRR(vscause) == CAUSE_ILLEGAL);
  CHECK(CSRR(vsepc) == vs_rec.epc + 4); /* the entry moved it past the instruction */
  /* the virtual-instruction exception is never delegated to VS (hedeleg bit 22 is read-only) */
  CSRW(medeleg, (1ul << CAUSE_ILLEGAL) | (1ul << CAUSE_VIRTUAL));
  hs_rec.count = vs_rec.count = 0;
  enter_virtual(1, vs_read_hstatus);
  CHECK(vs_rec.count == 0);
  CHECK(hs_rec.count == 1);
  CHECK(hs_rec.cause == CAUSE_VIRTUAL);
  CSRW(medeleg, 0);
  CSRW(hedeleg, 0);
}

/* ------------------------------------------------------------------ two-stage translation */

static void g_map_window(void) {
  for (int i = 0; i < 2048; i++)
    g_root[i] = 0;
  for (int i = 0; i < 512; i++)
    g_l1[i] = g_l0[i] = 0;
  /* guest physical 0x8000_0000.. = host physical (1 GiB), user pages as the G stage needs */
  g_root[2] = pte((void *)0x80000000ul, RWX_AD | PTE_U);
  g_root[GW >> 30] = pte(g_l1, PTE_V);
  g_l1[0] = pte(g_l0, PTE_V);
  g_l0[0] = pte(data_page, PTE_V | PTE_R | PTE_W | PTE_U | PTE_A | PTE_D);
  g_l0[1] = pte(data_page2, PTE_V | PTE_R | PTE_U | PTE_A);        /* read-only */
  g_l0[2] = pte(data_page, PTE_V | PTE_R | PTE_W | PTE_A | PTE_D); /* not U */
  /* [3] unmapped */
  g_l0[5] = pte(exec_page, PTE_V | PTE_X | PTE_U | PTE_A);               /* execute-only */
  g_l0[6] = pte(data_page, PTE_V | PTE_W | PTE_U | PTE_A | PTE_D);       /* W without R: reserved */
  g_l0[7] = pte(data_page, PTE_V | PTE_R | PTE_U | PTE_A) | (1ul << 60); /* reserved bits */
  CSRW(hgatp, (8ul << 60) | ((uint64_t)g_root >> 12));
  __asm__ volatile("hfence.gvma" ::: "memory");
}

/* htinst/mtinst of an explicit access: the trapping instruction with rs1 replaced by the offset
 * of the faulting address (0 here: the accesses have no immediate and are aligned) */
#define TINST_EXPLICIT 1
static uint64_t transformed_at(uint64_t epc) {
  uint32_t insn = *(volatile uint16_t *)epc | (uint32_t) * (volatile uint16_t *)(epc + 2) << 16;
  return insn & ~(0x1ful << 15);
}

static void expect_hlv_fault(uint64_t cause, uint64_t va, uint64_t gpa, uint64_t tinst) {
  if (tinst == TINST_EXPLICIT)
    tinst = transformed_at(last_trap.epc);
  CHECK(last_trap.count == 1);
  CHECK(last_trap.cause == cause);
  CHECK(last_trap.tval == va);
  CHECK(last_trap.tval2 == gpa >> 2);
  CHECK(last_trap.tinst == tinst);
  CHECK(last_trap.status & MSTATUS_GVA);
  CHECK(!(last_trap.status & MSTATUS_MPV)); /* HLV runs with V=0 */
}

static void hlv_two_stage(void) {
  g_map_window();
  CSRW(vsatp, 0);
  CSRW(hstatus, HSTATUS_SPVP);
  data_page[0] = 0x1122334455667788ul;
  data_page2[0] = 0xabcdul;
  /* G stage only (vsatp bare): the window's pages */
  CHECK(hlv_d(GW) == 0x1122334455667788ul);
  CHECK(hlv_d(GW + 0x1000) == 0xabcd);
  CHECK(hlv_b(GW + 7) == (uint64_t)(int64_t)(int8_t)0x11);
  hsv_w(GW + 8, 0xfeedf00d);
  CHECK(data_page[1] == 0xfeedf00dul);
  reset_trap();
  hsv_w(GW + 0x1000, 1); /* read-only at the G stage */
  expect_hlv_fault(CAUSE_STORE_GUEST, GW + 0x1000, GW + 0x1000, TINST_EXPLICIT);
  reset_trap();
  (void)hlv_d(GW + 0x2000); /* not a U page */
  expect_hlv_fault(CAUSE_LOAD_GUEST, GW + 0x2000, GW + 0x2000, TINST_EXPLICIT);
  reset_trap();
  (void)hlv_d(GW + 0x3008); /* unmapped */
  expect_hlv_fault(CAUSE_LOAD_GUEST, GW + 0x3008, GW + 0x3008, TINST_EXPLICIT);
  reset_trap();
  (void)hlv_d(GW + 0x6000); /* W without R */
  expect_hlv_fault(CAUSE_LOAD_GUEST, GW + 0x6000, GW + 0x6000, TINST_EXPLICIT);
  reset_trap();
  (void)hlv_d(GW + 0x7000); /* reserved PTE bits */
  expect_hlv_fault(CAUSE_LOAD_GUEST, GW + 0x7000, GW + 0x7000, TINST_EXPLICIT);
  reset_trap();
  (void)hlv_d(1ul << 41); /* beyond Sv39x4's 41-bit guest physical space */
  expect_hlv_fault(CAUSE_LOAD_GUEST, 1ul << 41, 1ul << 41, TINST_EXPLICIT);
  /* HLVX reads need execute permission: the execute-only page, not the data page */
  exec_page[0] = 0x13; /* nop */
  reset_trap();
  CHECK(hlvx_wu(GW + 0x5000) == 0x13);
  CHECK(last_trap.count == 0);
  (void)hlvx_wu(GW);
  expect_hlv_fault(CAUSE_LOAD_GUEST, GW, GW, TINST_EXPLICIT);
  reset_trap();
  (void)hlv_d(GW + 0x5000); /* a plain HLV of the execute-only page (mstatus.MXR clear) */
  expect_hlv_fault(CAUSE_LOAD_GUEST, GW + 0x5000, GW + 0x5000, TINST_EXPLICIT);
  reset_trap();
  CSRS(mstatus, MSTATUS_MXR);
  CHECK(hlv_d(GW + 0x5000) == 0x13);
  CSRC(mstatus, MSTATUS_MXR);
  CHECK(last_trap.count == 0);

  /* VS stage (Sv39, tables in guest physical memory) over the G stage */
  for (int i = 0; i < 512; i++)
    vs_root[i] = 0;
  vs_root[2] = pte((void *)0x80000000ul, RWX_AD); /* identity, supervisor */
  vs_root[1] = pte((void *)GW, RWX_AD & ~PTE_X);  /* VA 0x4000_0000.. = the window */
  vs_root[5] = pte((void *)(GW + 0x3000), PTE_V); /* a table in unmapped guest memory */
  vs_root[6] = pte((void *)(GW + 0x1000), PTE_V); /* a table in a read-only guest page */
  data_page2[0] = pte((void *)0x80000000ul, PTE_V | PTE_R | PTE_W); /* 2 MiB leaf, A clear */
  CSRW(vsatp, (8ul << 60) | ((uint64_t)vs_root >> 12));
  CHECK(hlv_d(0x40000000ul) == 0x1122334455667788ul);
  reset_trap();
  (void)hlv_d(0xc0000000ul); /* no VS mapping: a page fault, no guest physical address */
  expect_hlv_fault(CAUSE_LOAD_PAGE, 0xc0000000ul, 0, 0);
  reset_trap();
  (void)hlv_d(0x40003000ul); /* VS maps it, the G stage does not */
  expect_hlv_fault(CAUSE_LOAD_GUEST, 0x40003000ul, GW + 0x3000, TINST_EXPLICIT);
  reset_trap();
  (void)hlv_d(0x140000000ul); /* the walk's own read faults: pseudoinstruction 0x3000 */
  expect_hlv_fault(CAUSE_LOAD_GUEST, 0x140000000ul, GW + 0x3000, 0x3000);
  reset_trap();
  (void)hlv_d(0x180000000ul); /* setting A needs a write the G stage refuses: 0x3020 */
  expect_hlv_fault(CAUSE_LOAD_GUEST, 0x180000000ul, GW + 0x1000, 0x3020);
  CHECK(!(data_page2[0] & PTE_A));
  /* SPVP = 0: VU accesses; a supervisor VS page is then a page fault */
  CSRW(hstatus, 0);
  reset_trap();
  (void)hlv_d(0x40000000ul);
  expect_hlv_fault(CAUSE_LOAD_PAGE, 0x40000000ul, 0, 0);
  CSRW(hstatus, HSTATUS_SPVP);
  CSRW(vsatp, 0);

  /* a G-stage root outside RAM: access fault, never a host crash */
  CSRW(hgatp, (8ul << 60) | (0x10000000ul >> 12));
  reset_trap();
  (void)hlv_d(GW);
  CHECK(last_trap.cause == CAUSE_LOAD_ACCESS);
  CHECK(last_trap.tval == GW);
  CHECK(last_trap.status & MSTATUS_GVA);
  g_map_window();
}

/* M-mode data accesses with MPRV and MPV: as the guest's (VS with MPP = S), through both stages,
 * as OpenSBI reads a guest's instruction; their faults have GVA set. */
static void mprv_with_mpv(void) {
  g_map_window();
  CSRW(vsatp, 0);
  data_page[0] = 0x55;
  CSRC(mstatus, MSTATUS_MPP);
  CSRS(mstatus, (1ul << 11) | MSTATUS_MPV | MSTATUS_MPRV);
  uint64_t v = ld4(GW);
  reset_trap();
  (void)ld4(GW + 0x3000);
  CSRC(mstatus, MSTATUS_MPRV | MSTATUS_MPV);
  CHECK(v == 0x55);
  CHECK(last_trap.cause == CAUSE_LOAD_GUEST);
  CHECK(last_trap.tval == GW + 0x3000);
  CHECK(last_trap.tval2 == (GW + 0x3000) >> 2);
  CHECK(last_trap.status & MSTATUS_GVA);
  CHECK(!(last_trap.status & MSTATUS_MPV)); /* the trap came from M-mode, V=0 */
}

static void hs_hlv(void) {
  seen_sscratch = hlv_d(GW);
  back_to_m();
}
static void u_hlv(void) {
  seen_sscratch = hlv_d(GW);
  back_to_m();
}

static void hlv_privilege(void) {
  data_page[0] = 99;
  seen_sscratch = 0;
  reset_trap();
  enter_mode(1, hs_hlv);
  CHECK(last_trap.count == 0);
  CHECK(seen_sscratch == 99);
  reset_trap();
  enter_mode(0, u_hlv); /* hstatus.HU clear: illegal */
  expect_m_trap(CAUSE_ILLEGAL, 0, 0);
  CSRS(hstatus, HSTATUS_HU);
  seen_sscratch = 0;
  reset_trap();
  enter_mode(0, u_hlv);
  CHECK(last_trap.count == 0);
  CHECK(seen_sscratch == 99);
  CSRC(hstatus, HSTATUS_HU);
}

/* V=1 code: fetched, loaded and stored through both stages. */
static volatile uint64_t vs_value;
static void vs_load_window(void) {
  vs_value = ld4(GW);
  (void)ld4(GW + 0x3000);
  sd4(GW + 0x1000, 5);
  back_to_m();
}
static void vs_fetch_unmapped(void) {
  trap_resume_at = TRAP_RESUME_AT_RA;
  ((void (*)(void))(GW + 0x3000))();
  back_to_m();
}
static void vs_compressed_load(void) {
  register uint64_t a1 __asm__("a1") = GW + 0x3000;
  __asm__ volatile(".option push\n.option rvc\n.hword 0x6188\n.option pop" ::"r"(a1)
                   : "a0", "memory");
  back_to_m();
}
static void vs_paged(void) {
  vs_value = ld4(0x40000000ul + 8);
  (void)ld4(0xc0000000ul);
  back_to_m();
}

static void vs_two_stage(void) {
  g_map_window();
  data_page[0] = 0x77;
  reset_trap();
  enter_virtual(1, vs_load_window);
  CHECK(vs_value == 0x77);
  CHECK(last_trap.count == 2);
  /* the last one: the store, a guest-page fault from V=1 */
  CHECK(last_trap.cause == CAUSE_STORE_GUEST);
  CHECK(last_trap.tval == GW + 0x1000);
  CHECK(last_trap.tval2 == (GW + 0x1000) >> 2);
  CHECK(last_trap.tinst == transformed_at(last_trap.epc));
  CHECK((last_trap.status & (MSTATUS_MPV | MSTATUS_GVA)) == (MSTATUS_MPV | MSTATUS_GVA));
  /* a compressed load's htinst is its 32-bit form, transformed, with bit 1 clear */
  reset_trap();
  enter_virtual(1, vs_compressed_load);
  CHECK(last_trap.cause == CAUSE_LOAD_GUEST);
  CHECK(last_trap.tinst == 0x3501); /* c.ld a0, 0(a1) is ld a0, 0(a1) */
  reset_trap();
  enter_virtual(1, vs_fetch_unmapped);
  CHECK(last_trap.cause == CAUSE_FETCH_GUEST);
  CHECK(last_trap.tval == GW + 0x3000);
  CHECK(last_trap.tval2 == (GW + 0x3000) >> 2);
  CHECK(last_trap.tinst == 0); /* fetches: zero */

  /* delegated to HS: htval and hstatus.GVA instead of mtval2 and mstatus.GVA */
  CSRW(medeleg, (1ul << CAUSE_LOAD_GUEST) | (1ul << CAUSE_STORE_GUEST));
  hs_rec.count = 0;
  reset_trap();
  enter_virtual(1, vs_load_window);
  CHECK(last_trap.count == 0);
  CHECK(hs_rec.count == 2);
  CHECK(hs_rec.cause == CAUSE_STORE_GUEST);
  CHECK(hs_rec.tval == GW + 0x1000);
  CHECK(hs_rec.htval == (GW + 0x1000) >> 2);
  CHECK(hs_rec.htinst == transformed_at(hs_rec.epc));
  CHECK(hs_rec.hstatus & HSTATUS_GVA);
  CSRW(medeleg, 0);

  /* the guest's own paging: its page faults go to VS when both levels delegate them */
  for (int i = 0; i < 512; i++)
    vs_root[i] = 0;
  vs_root[2] = pte((void *)0x80000000ul, RWX_AD);
  vs_root[1] = pte((void *)GW, RWX_AD & ~PTE_X);
  data_page[1] = 0x4242;
  CSRW(vsatp, (8ul << 60) | ((uint64_t)vs_root >> 12));
  CSRW(medeleg, 1ul << CAUSE_LOAD_PAGE);
  CSRW(hedeleg, 1ul << CAUSE_LOAD_PAGE);
  vs_rec.count = hs_rec.count = 0;
  reset_trap();
  enter_virtual(1, vs_paged);
  CHECK(vs_value == 0x4242);
  CHECK(vs_rec.count == 1);
  CHECK(vs_rec.cause == CAUSE_LOAD_PAGE);
  CHECK(vs_rec.tval == 0xc0000000ul);
  CHECK(hs_rec.count == 0 && last_trap.count == 0);
  CSRW(medeleg, 0);
  CSRW(hedeleg, 0);
  CSRW(vsatp, 0);
}

/* ------------------------------------------------------------------ interrupts */

static void vs_spin(void) {
  for (volatile int i = 0; i < 1000; i++) {
  }
  back_to_m();
}

static void interrupts(void) {
  CSRW(hgatp, 0);
  CSRW(stvec, (uint64_t)hs_trap_entry);
  CSRW(sscratch, (uint64_t)&hs_rec);
  CSRW(vstvec, (uint64_t)vs_trap_entry);
  CSRW(vsscratch, (uint64_t)&vs_rec);
  CSRW(mideleg, 0x222);
  /* hvip.VSSIP with hideleg: taken in VS as its supervisor software interrupt (cause 1) */
  CSRW(hideleg, 0x444);
  CSRW(vsstatus, 0x2); /* SIE */
  CSRW(hie, 0x444);
  CHECK(CSRR(vsie) == 0x222);
  CSRW(hvip, 1ul << 2);
  CHECK(CSRR(vsip) == 0x2);
  CHECK(CSRR(mip) & (1ul << 2));
  vs_rec.count = hs_rec.count = 0;
  enter_virtual(1, vs_spin);
  CHECK(vs_rec.count == 1);
  CHECK(vs_rec.cause == (IRQ_BIT | 1));
  CHECK(hs_rec.count == 0);
  /* the entry masked vsie; the VS interrupt bit is still pending in hvip */
  CHECK(CSRR(hie) == 0);
  CSRW(hvip, 0);
  /* without hideleg: HS takes it, numbered as a VS interrupt (cause 2) */
  CSRW(hideleg, 0);
  CSRW(hie, 0x444);
  CSRW(hvip, 1ul << 2);
  vs_rec.count = hs_rec.count = 0;
  enter_virtual(1, vs_spin);
  CHECK(hs_rec.count == 1);
  CHECK(hs_rec.cause == (IRQ_BIT | 2));
  CHECK(vs_rec.count == 0);
  CHECK(CSRR(hvip) == 0);
  /* delegated to VS, it never interrupts HS-mode, even with sstatus.SIE set */
  CSRW(hideleg, 0x444);
  CSRW(hvip, 1ul << 2);
  CSRS(mstatus, MSTATUS_SIE);
  hs_rec.count = 0;
  enter_mode(1, vs_spin);
  CHECK(hs_rec.count == 0);
  CSRC(mstatus, MSTATUS_SIE);
  CSRW(hvip, 0);
  /* the guest's timer: vstimecmp against time + htimedelta */
  CSRW(hideleg, 0x444);
  CSRW(hie, 0x444);
  CSRS(menvcfg, STCE);
  CSRW(henvcfg, STCE);
  CSRW(mcounteren, 7);
  CSRW(hcounteren, 7);
  CSRW(htimedelta, 0);
  CSRW(vstimecmp, ~0ul);
  CHECK(!(CSRR(hip) & (1ul << 6)));
  CSRW(htimedelta, ~0ul >> 1); /* the guest's clock is far ahead: its deadline has passed */
  CSRW(vstimecmp, 1ul << 40);
  CHECK(CSRR(hip) & (1ul << 6));
  vs_rec.count = 0;
  enter_virtual(1, vs_spin);
  CHECK(vs_rec.count == 1);
  CHECK(vs_rec.cause == (IRQ_BIT | 5));
  CSRW(vstimecmp, ~0ul);
  CSRW(htimedelta, 0);
  CSRW(hie, 0);
  CSRW(hideleg, 0);
  CSRW(mideleg, 0);
  CSRW(vsstatus, 0);
}

int main(void) {
  trap_reads_h = 1;
  csr_masks();
  csr_access_rules();
  trap_paths();
  hlv_two_stage();
  hlv_privilege();
  mprv_with_mpv();
  vs_two_stage();
  interrupts();
  return 0;
}
