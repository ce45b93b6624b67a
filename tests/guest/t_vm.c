/* Paging: Sv39, Sv48 and Sv57 with A/D updates, permission checks, SUM, MXR, MPRV, superpages,
 * page-fault causes (12/13/15) and stval, non-canonical addresses, sfence.vma (all, one page, one
 * address space), address spaces switched by satp (ASIDs), global mappings (G bit). */
#include "test.h"

#define N_TABLES 40
static uint64_t tables[N_TABLES][512] __attribute__((aligned(4096)));
static unsigned tables_used;
static uint8_t data_page[4096] __attribute__((aligned(4096)));
static uint8_t data_page2[4096] __attribute__((aligned(4096)));
static uint8_t data_page3[4096] __attribute__((aligned(4096)));
static uint8_t data_page4[4096] __attribute__((aligned(4096)));
static uint32_t code_page[1024] __attribute__((aligned(4096)));
static uint32_t code_page2[1024] __attribute__((aligned(4096)));
static uint64_t space_page[2][512] __attribute__((aligned(4096)));

static int levels;
static uint64_t *root;

static uint64_t *new_table(void) {
  if (tables_used >= N_TABLES)
    test_exit(999);
  uint64_t *t = tables[tables_used++];
  for (int i = 0; i < 512; i++)
    t[i] = 0;
  return t;
}

/* Map va -> pa with a leaf at `leaf_level` (0 = 4 KiB, 1 = 2 MiB, 2 = 1 GiB). Returns the PTE. */
static volatile uint64_t *map(uint64_t va, uint64_t pa, int leaf_level, uint64_t flags) {
  uint64_t *t = root;
  for (int l = levels - 1; l > leaf_level; l--) {
    unsigned idx = (va >> (12 + 9 * l)) & 511;
    if (!(t[idx] & PTE_V)) {
      uint64_t *n = new_table();
      t[idx] = (((uint64_t)n >> 12) << 10) | PTE_V;
    }
    t = (uint64_t *)((t[idx] >> 10) << 12);
  }
  unsigned idx = (va >> (12 + 9 * leaf_level)) & 511;
  t[idx] = ((pa >> 12) << 10) | flags | PTE_V;
  return &t[idx];
}

#define VA_BASE 0x40000000ul        /* test pages live here */
#define U_ALIAS 0xc0000000ul        /* RAM mapped again as user pages */
#define VA_SPACE (VA_BASE + 0xa000) /* a page that each address space maps elsewhere */
#define VA_CODE (VA_BASE + 0xb000)  /* code remapped by a one-page sfence.vma */
#define VA_SUPER 0x40400000ul       /* a 2 MiB page of address space B */
#define VA_GDATA (VA_BASE + 0xc000) /* a global mapping in both address spaces */
#define VA_GCODE (VA_BASE + 0xd000) /* and one of code */
#define VA_OWN (VA_BASE + 0xe000)   /* code that is not global: another page in each space */
#define ASID_A 1ul
#define ASID_B 2ul

static volatile uint64_t *pte_rw, *pte_ro, *pte_u, *pte_x, *pte_code, *pte_nx;
static volatile uint64_t *pte_space_a, *pte_space_b, *pte_super_b, *pte_code_a;
static volatile uint64_t *pte_gdata[2], *pte_gcode[2]; /* in A and B */
static volatile uint64_t s_val;
static uint64_t satp_a, satp_b;

static uint64_t leaf(const void *pa, uint64_t flags) {
  return (((uint64_t)pa >> 12) << 10) | flags | PTE_V;
}

/* Two address spaces (ASIDs) that map VA_SPACE to different pages: what each sees must follow
 * satp, with and without sfence.vma, and one-page and one-ASID fences must take effect for the
 * page or space they name, also for a superpage and for code. Runs with satp_a. */
static void s_spaces(void) {
  volatile uint64_t *v = (volatile uint64_t *)VA_SPACE;
  if (*v != 0xa)
    test_exit(__LINE__);
  CSRW(satp, satp_b);
  if (*v != 0xb)
    test_exit(__LINE__);
  CSRW(satp, satp_a);
  if (*v != 0xa || (CSRR(satp) >> 44 & 0xffff) != ASID_A)
    test_exit(__LINE__);
  /* the current space's page moves: a fence of that page in its ASID */
  *pte_space_a = leaf(space_page[1], PTE_R | PTE_A);
  __asm__ volatile("sfence.vma %0, %1" ::"r"(VA_SPACE), "r"(ASID_A) : "memory");
  if (*v != 0xb)
    test_exit(__LINE__);
  /* the other space's page moves while it does not run: a fence of its whole ASID */
  CSRW(satp, satp_b);
  if (*v != 0xb)
    test_exit(__LINE__);
  CSRW(satp, satp_a);
  *pte_space_b = leaf(space_page[0], PTE_R | PTE_A);
  __asm__ volatile("sfence.vma x0, %0" ::"r"(ASID_B) : "memory");
  CSRW(satp, satp_b);
  if (*v != 0xa)
    test_exit(__LINE__);
  /* a 2 MiB page, used at an offset, then unmapped with a fence of its first address */
  uint64_t off = (uint64_t)space_page[1] & 0x1ffffful;
  if (*(volatile uint64_t *)(VA_SUPER + off) != 0xb)
    test_exit(__LINE__);
  *pte_super_b = 0;
  __asm__ volatile("sfence.vma %0" ::"r"(VA_SUPER) : "memory");
  reset_trap();
  s_val = *(volatile uint64_t *)(VA_SUPER + off);
  if (last_trap.count != 1 || last_trap.cause != 13)
    test_exit(__LINE__);
  /* code: the same call site reaches the page's new code after a fence of that page */
  CSRW(satp, satp_a);
  long (*fn)(void) = (long (*)(void))VA_CODE;
  for (int i = 0; i < 3; i++)
    if (fn() != 42)
      test_exit(__LINE__);
  *pte_code_a = leaf(code_page2, PTE_X | PTE_R | PTE_A);
  __asm__ volatile("sfence.vma %0" ::"r"(VA_CODE) : "memory");
  if (fn() != 43)
    test_exit(__LINE__);
}

/* Both spaces map VA_GDATA and VA_GCODE with the G bit to the same pages: the hart may keep
 * them across satp writes, but a fence without an ASID, of the page or of everything, must reach
 * them in every space, for data and for code (a call through the same site). Runs with satp_a. */
static void s_global_check(uint64_t want_data, long want_code, int line) {
  volatile uint64_t *g = (volatile uint64_t *)VA_GDATA;
  long (*fn)(void) = (long (*)(void))VA_GCODE;
  for (int i = 0; i < 3; i++) {
    if (*g != want_data || fn() != want_code)
      test_exit(line);
    CSRW(satp, i % 2 ? satp_a : satp_b);
  }
  CSRW(satp, satp_a);
}

static void s_global_move(const void *data, const void *code) {
  for (int s = 0; s < 2; s++) {
    *pte_gdata[s] = leaf(data, PTE_R | PTE_A | PTE_G);
    *pte_gcode[s] = leaf(code, PTE_X | PTE_R | PTE_A | PTE_G);
  }
}

static void s_global(void) {
  /* a mapping without G is each space's own, also for code reached from the same call site */
  long (*own)(void) = (long (*)(void))VA_OWN;
  for (int i = 0; i < 4; i++) {
    CSRW(satp, i % 2 ? satp_b : satp_a);
    if (own() != (i % 2 ? 43 : 42))
      test_exit(__LINE__);
  }
  CSRW(satp, satp_a);
  s_global_check(0xa, 42, __LINE__);
  s_global_move(space_page[1], code_page2);
  __asm__ volatile("sfence.vma %0" ::"r"(VA_GDATA) : "memory");
  __asm__ volatile("sfence.vma %0" ::"r"(VA_GCODE) : "memory");
  s_global_check(0xb, 43, __LINE__);
  s_global_move(space_page[0], code_page);
  __asm__ volatile("sfence.vma" ::: "memory");
  s_global_check(0xa, 42, __LINE__);
  /* moved under B, fenced there: A sees it too */
  CSRW(satp, satp_b);
  s_global_move(space_page[1], code_page2);
  __asm__ volatile("sfence.vma" ::: "memory");
  CSRW(satp, satp_a);
  s_global_check(0xb, 43, __LINE__);
}

static void s_body(void) {
  volatile uint64_t *rw = (volatile uint64_t *)VA_BASE;
  /* A then D are set by the hardware */
  s_val = *rw;
  if (!(*pte_rw & PTE_A) || (*pte_rw & PTE_D))
    test_exit(__LINE__);
  *rw = 0x5a5a;
  if (!(*pte_rw & PTE_D) || ((uint64_t *)data_page)[0] != 0x5a5a)
    test_exit(__LINE__);
  /* store to a read-only page: 15 */
  reset_trap();
  *(volatile uint64_t *)(VA_BASE + 0x1000) = 1;
  if (last_trap.cause != 15 || last_trap.tval != VA_BASE + 0x1000)
    test_exit(__LINE__);
  /* load from an unmapped page: 13 */
  reset_trap();
  s_val = *(volatile uint64_t *)(VA_BASE + 0x2008);
  if (last_trap.cause != 13 || last_trap.tval != VA_BASE + 0x2008)
    test_exit(__LINE__);
  /* user page from S without SUM: 13; with SUM: allowed */
  reset_trap();
  s_val = *(volatile uint64_t *)(VA_BASE + 0x3000);
  if (last_trap.cause != 13)
    test_exit(__LINE__);
  CSRS(sstatus, MSTATUS_SUM);
  reset_trap();
  s_val = *(volatile uint64_t *)(VA_BASE + 0x3000);
  if (last_trap.count != 0)
    test_exit(__LINE__);
  CSRC(sstatus, MSTATUS_SUM);
  /* SUM cleared again: the access that just worked faults again (the hart keeps S-mode's
   * translations with and without SUM apart, it does not flush) */
  reset_trap();
  s_val = *(volatile uint64_t *)(VA_BASE + 0x3000);
  if (last_trap.cause != 13)
    test_exit(__LINE__);
  CSRS(sstatus, MSTATUS_SUM);
  reset_trap();
  *(volatile uint64_t *)(VA_BASE + 0x3008) = 7;
  if (last_trap.count != 0)
    test_exit(__LINE__);
  CSRC(sstatus, MSTATUS_SUM);
  reset_trap();
  *(volatile uint64_t *)(VA_BASE + 0x3008) = 8;
  if (last_trap.cause != 15)
    test_exit(__LINE__);
  /* execute-only page: loads fault unless MXR */
  reset_trap();
  s_val = *(volatile uint64_t *)(VA_BASE + 0x4000);
  if (last_trap.cause != 13)
    test_exit(__LINE__);
  CSRS(sstatus, MSTATUS_MXR);
  reset_trap();
  s_val = *(volatile uint32_t *)(VA_BASE + 0x4000);
  if (last_trap.count != 0 || s_val != code_page[0])
    test_exit(__LINE__);
  CSRC(sstatus, MSTATUS_MXR);
  /* execute from the code page (li a0, 42; ret) */
  long (*fn)(void) = (long (*)(void))(VA_BASE + 0x5000);
  if (fn() != 42)
    test_exit(__LINE__);
  /* execute from a non-executable page: 12 */
  reset_trap();
  trap_resume_at = TRAP_RESUME_AT_RA;
  ((long (*)(void))(VA_BASE + 0x6000))();
  if (last_trap.cause != 12 || last_trap.tval != VA_BASE + 0x6000)
    test_exit(__LINE__);
  /* non-canonical address: page fault */
  uint64_t bad = 1ul << (12 + 9 * levels);
  reset_trap();
  s_val = *(volatile uint64_t *)bad;
  if (last_trap.cause != 13 || last_trap.tval != bad)
    test_exit(__LINE__);
  /* a misaligned load that crosses into an unmapped page faults with the address of the bytes
   * that are not mapped (the first page is mapped, the access still happens as a whole or not) */
  reset_trap();
  s_val = 0;
  s_val = *(volatile uint64_t *)(VA_BASE + 0x6ffc);
  if (last_trap.count != 1 || last_trap.cause != 13 || last_trap.tval < VA_BASE + 0x6ffc ||
      last_trap.tval > VA_BASE + 0x7000)
    test_exit(__LINE__);
  /* a misaligned store across two mapped pages works */
  *(volatile uint64_t *)(VA_BASE + 0x8ffc) = 0x0102030405060708ul;
  if (*(volatile uint64_t *)(VA_BASE + 0x8ffc) != 0x0102030405060708ul || data_page4[0] != 0x04 ||
      data_page3[4095] != 0x05)
    test_exit(__LINE__);
  /* remap after sfence.vma */
  *pte_ro = (((uint64_t)data_page2 >> 12) << 10) | PTE_V | PTE_R | PTE_A;
  __asm__ volatile("sfence.vma" ::: "memory");
  if (*(volatile uint64_t *)(VA_BASE + 0x1000) != 0x2222)
    test_exit(__LINE__);
  s_spaces();
  s_global();
  back_to_m();
}

static void u_body(void) {
  /* user code runs from the U alias of RAM; the user page is accessible, S pages are not */
  s_val = *(volatile uint64_t *)(VA_BASE + 0x3000);
  reset_trap();
  s_val = *(volatile uint64_t *)VA_BASE;
  if (last_trap.cause != 13)
    test_exit(__LINE__);
  back_to_m();
}

static void run_mode(int lv, uint64_t satp_mode) {
  levels = lv;
  tables_used = 0;
  root = new_table();
  /* identity map RAM for S as a 1 GiB page; a U alias for user code */
  map(0x80000000ul, 0x80000000ul, 2, PTE_R | PTE_W | PTE_X | PTE_A | PTE_D);
  map(U_ALIAS, 0x80000000ul, 2, PTE_R | PTE_W | PTE_X | PTE_U | PTE_A | PTE_D);
  pte_rw = map(VA_BASE, (uint64_t)data_page, 0, PTE_R | PTE_W);
  pte_ro = map(VA_BASE + 0x1000, (uint64_t)data_page, 0, PTE_R | PTE_A);
  pte_u = map(VA_BASE + 0x3000, (uint64_t)data_page, 0, PTE_R | PTE_W | PTE_U | PTE_A | PTE_D);
  pte_x = map(VA_BASE + 0x4000, (uint64_t)code_page, 0, PTE_X | PTE_A);
  pte_code = map(VA_BASE + 0x5000, (uint64_t)code_page, 0, PTE_X | PTE_R | PTE_A);
  pte_nx = map(VA_BASE + 0x6000, (uint64_t)code_page, 0, PTE_R | PTE_W | PTE_A | PTE_D);
  map(VA_BASE + 0x8000, (uint64_t)data_page3, 0, PTE_R | PTE_W | PTE_A | PTE_D);
  map(VA_BASE + 0x9000, (uint64_t)data_page4, 0, PTE_R | PTE_W | PTE_A | PTE_D);
  pte_space_a = map(VA_SPACE, (uint64_t)space_page[0], 0, PTE_R | PTE_A);
  pte_code_a = map(VA_CODE, (uint64_t)code_page, 0, PTE_X | PTE_R | PTE_A);
  pte_gdata[0] = map(VA_GDATA, (uint64_t)space_page[0], 0, PTE_R | PTE_A | PTE_G);
  pte_gcode[0] = map(VA_GCODE, (uint64_t)code_page, 0, PTE_X | PTE_R | PTE_A | PTE_G);
  map(VA_OWN, (uint64_t)code_page, 0, PTE_X | PTE_R | PTE_A);
  uint64_t *root_a = root;
  /* address space B: RAM, VA_SPACE elsewhere, a 2 MiB page */
  root = new_table();
  map(0x80000000ul, 0x80000000ul, 2, PTE_R | PTE_W | PTE_X | PTE_A | PTE_D);
  pte_space_b = map(VA_SPACE, (uint64_t)space_page[1], 0, PTE_R | PTE_A);
  pte_super_b = map(VA_SUPER, (uint64_t)space_page[1] & ~0x1ffffful, 1, PTE_R | PTE_A);
  pte_gdata[1] = map(VA_GDATA, (uint64_t)space_page[0], 0, PTE_R | PTE_A | PTE_G);
  pte_gcode[1] = map(VA_GCODE, (uint64_t)code_page, 0, PTE_X | PTE_R | PTE_A | PTE_G);
  map(VA_OWN, (uint64_t)code_page2, 0, PTE_X | PTE_R | PTE_A);
  satp_b = (satp_mode << 60) | (ASID_B << 44) | ((uint64_t)root >> 12);
  root = root_a;
  satp_a = (satp_mode << 60) | (ASID_A << 44) | ((uint64_t)root >> 12);
  ((uint64_t *)data_page)[0] = 0x1111;
  ((uint64_t *)data_page2)[0] = 0x2222;
  space_page[0][0] = 0xa;
  space_page[1][0] = 0xb;
  code_page[0] = 0x02a00513;  /* li a0, 42 */
  code_page[1] = 0x00008067;  /* ret */
  code_page2[0] = 0x02b00513; /* li a0, 43 */
  code_page2[1] = 0x00008067; /* ret */
  __asm__ volatile("fence.i");
  CSRW(satp, satp_a);
  __asm__ volatile("sfence.vma" ::: "memory");
  CHECK((CSRR(satp) >> 60) == satp_mode);
  enter_mode(1, s_body);
  CHECK(s_val == 0x2222 || s_val != 0); /* s_body reached its end */
  enter_mode(0, (void (*)(void))((uint64_t)u_body - 0x80000000ul + U_ALIAS));

  /* MPRV: M-mode loads and stores translate with MPP's privilege */
  CSRC(mstatus, MSTATUS_MPP);
  CSRS(mstatus, 1ul << 11); /* MPP = S */
  CSRS(mstatus, MSTATUS_MPRV);
  uint64_t v = *(volatile uint64_t *)VA_BASE;
  CSRC(mstatus, MSTATUS_MPRV);
  CHECK(v == 0x5a5a);

  /* a misaligned superpage (2 MiB leaf with a non-aligned PPN) faults */
  map(VA_BASE + 0x200000, (uint64_t)data_page, 1, PTE_R | PTE_W | PTE_A | PTE_D);
  __asm__ volatile("sfence.vma" ::: "memory");
  CSRS(mstatus, MSTATUS_MPRV);
  reset_trap();
  v = *(volatile uint64_t *)(VA_BASE + 0x200000);
  CSRC(mstatus, MSTATUS_MPRV);
  CHECK(last_trap.count == 1 && last_trap.cause == 13);
  CSRW(satp, 0);
}

int main(void) {
  run_mode(3, 8);  /* Sv39 */
  run_mode(4, 9);  /* Sv48 */
  run_mode(5, 10); /* Sv57 */
  return 0;
}
