/* Unit tests of the hart's pieces: the decode table, compressed expansion, CSRs, traps, the MMU,
 * interrupts and WFI, and the ELF loader's handling of hostile files. */
#include "tap.h"

#include "rv_testbus.h"
#include "vm/cpu/cpu_internal.h"

/* Put 32-bit instructions at the RAM base and reset the hart there in `priv`. */
/* The program goes to the start of RAM as a device would write it: reported, so that blocks
 * decoded from an earlier program there are not run (they were run when their length happened
 * not to fit the budget). */
static void load_program(testbus *tb, const uint32_t *insns, size_t n, int priv) {
  memcpy(tb->bus.ram, insns, n * 4);
  for (size_t page = 0; page * 4096 < n * 4; page++)
    rv_code_page_written(tb->bus.code_pages, page);
  rv_hart_reset(&tb->hart, TB_RAM_BASE, priv);
}

static testbus *new_bus(void) {
  static testbus tb;
  _cleanup_error_ vs_error *err = NULL;
  if (tb_init(&tb, 16 << 20, &err) < 0)
    TAP_FAIL("tb_init: %s", err->msg);
  return &tb;
}

TEST(decode_table_entries_are_reachable) {
  /* Every entry's own match pattern must decode to that entry: no earlier, overlapping entry may
   * shadow it, and the per-opcode index must contain it. */
  struct rv_icache *ic = calloc(1, sizeof(*ic));
  rv_decode_index(ic);
  size_t n;
  const rv_op *ops = rv_decode_table(&n);
  CHECK(n > 150);
  for (size_t i = 0; i < n; i++) {
    rv_insn d;
    uint32_t raw = ops[i].match | 3; /* all 32-bit encodings have low bits 11 */
    rv_decode(ic, raw, &d);
    if (d.fn != ops[i].fn)
      TAP_FAIL("entry %zu (%s, 0x%08x) decodes to another handler", i, ops[i].name, raw);
    CHECK_EQ(d.len, 4);
  }
  rv_insn d;
  rv_decode(ic, 0xffffffff, &d);
  CHECK(d.fn == rv_illegal);
  rv_decode(ic, 0x0000007f, &d);
  CHECK(d.fn == rv_illegal);
  free(ic);
}

TEST(decode_immediates) {
  struct rv_icache *ic = calloc(1, sizeof(*ic));
  rv_decode_index(ic);
  rv_insn d;
  rv_decode(ic, 0xfe010113, &d); /* addi sp, sp, -32 */
  CHECK_EQ(d.imm, -32);
  CHECK_EQ(d.rd, 2);
  rv_decode(ic, 0xfe113c23, &d); /* sd ra, -8(sp) */
  CHECK_EQ(d.imm, -8);
  rv_decode(ic, 0xfe0718e3, &d); /* bnez a4, -16 */
  CHECK_EQ(d.imm, -16);
  rv_decode(ic, 0xff5ff0ef, &d); /* jal ra, -12 */
  CHECK_EQ(d.imm, -12);
  rv_decode(ic, 0x800002b7, &d); /* lui t0, 0x80000 */
  CHECK_EQ(d.imm, (int32_t)0x80000000);
  free(ic);
}

TEST(compressed_expansion) {
  CHECK_U64(rv_expand_compressed(0x4501), 0x00000513); /* c.li a0, 0 */
  CHECK_U64(rv_expand_compressed(0x8082), 0x00008067); /* c.ret */
  CHECK_U64(rv_expand_compressed(0x9002), 0x00100073); /* c.ebreak */
  CHECK_U64(rv_expand_compressed(0xe406), 0x00113423); /* c.sdsp ra, 8(sp) */
  CHECK_U64(rv_expand_compressed(0x1141), 0xff010113); /* c.addi sp, sp, -16 */
  CHECK_U64(rv_expand_compressed(0x0000), 0);          /* reserved: illegal */
  CHECK_U64(rv_expand_compressed(0x8d0d), 0x40b50533); /* c.sub a0, a1 */
  CHECK_U64(rv_expand_compressed(0x6510), 0x00853603); /* c.ld a2, 8(a0) */
  CHECK_U64(rv_expand_compressed(0x67c1), 0x000107b7); /* c.lui a5, 0x10 */
  CHECK_U64(rv_expand_compressed(0x7139), 0xfc010113); /* c.addi16sp sp, -64 */
  CHECK_U64(rv_expand_compressed(0xa021), 0x0080006f); /* c.j +8 */
  CHECK_U64(rv_expand_compressed(0xdd75), 0xfe050ee3); /* c.beqz a0, -4 */
}

TEST(csr_access_rules) {
  testbus *tb = new_bus();
  rv_hart *h = &tb->hart;
  uint64_t v;
  h->priv = RV_PRIV_M;
  CHECK(rv_csr_read(h, 0xf11, &v) && v == 0); /* mvendorid */
  CHECK(!rv_csr_write(h, 0xf11, 1));          /* read-only */
  CHECK(!rv_csr_read(h, 0x7c0, &v));          /* does not exist */
  h->priv = RV_PRIV_S;
  CHECK(!rv_csr_read(h, 0x300, &v)); /* mstatus from S */
  CHECK(rv_csr_read(h, 0x100, &v));  /* sstatus */
  h->mstatus |= MSTATUS_TVM;
  CHECK(!rv_csr_read(h, 0x180, &v)); /* satp under TVM */
  h->mstatus &= ~MSTATUS_TVM;
  CHECK(!rv_csr_read(h, 0x14d, &v)); /* stimecmp without STCE */
  h->priv = RV_PRIV_M;
  CHECK(rv_csr_write(h, 0x30a, MENVCFG_STCE));
  CHECK(rv_csr_write(h, 0x306, 2));
  h->priv = RV_PRIV_S;
  CHECK(rv_csr_read(h, 0x14d, &v));
  h->priv = RV_PRIV_M;
  CHECK(rv_csr_write(h, 0x180, 5ull << 60)); /* unsupported mode: ignored */
  CHECK(rv_csr_read(h, 0x180, &v) && v == 0);
  tb_destroy(tb);
}

TEST(illegal_instruction_traps_with_encoding) {
  testbus *tb = new_bus();
  static const uint32_t prog[] = {0xffffffff};
  load_program(tb, prog, 1, RV_PRIV_M);
  tb->hart.mtvec = TB_RAM_BASE + 0x100;
  rv_hart_run(&tb->hart, 1);
  CHECK_U64(tb->hart.mcause, 2);
  CHECK_U64(tb->hart.mtval, 0xffffffff);
  CHECK_U64(tb->hart.mepc, TB_RAM_BASE);
  CHECK_U64(tb->hart.pc, TB_RAM_BASE + 0x100);
  tb_destroy(tb);
}

TEST(csrrs_on_mip_does_not_latch_the_external_interrupt) {
  testbus *tb = new_bus();
  static const uint32_t prog[] = {0x3445a573}; /* csrrs a0, mip, a1 */
  load_program(tb, prog, 1, RV_PRIV_M);
  tb->hart.x[11] = RV_MIP_SSIP;
  rv_hart_set_irq(&tb->hart, RV_MIP_SEIP, true);
  rv_hart_run(&tb->hart, 1);
  CHECK(tb->hart.x[10] & RV_MIP_SEIP); /* the read shows the line */
  CHECK(tb->hart.mip & RV_MIP_SSIP);
  CHECK(!(tb->hart.mip & RV_MIP_SEIP)); /* but it is not written back as the software bit */
  rv_hart_set_irq(&tb->hart, RV_MIP_SEIP, false);
  uint64_t v;
  CHECK(rv_csr_read(&tb->hart, 0x344, &v) && !(v & RV_MIP_SEIP));
  tb_destroy(tb);
}

TEST(fetch_from_device_memory_is_an_access_fault) {
  testbus *tb = new_bus();
  rv_hart_reset(&tb->hart, 0x10000000, RV_PRIV_M);
  tb->hart.mtvec = TB_RAM_BASE;
  memset(tb->bus.ram, 0, 8); /* the handler: illegal instructions (stays in bounds) */
  rv_hart_run(&tb->hart, 1);
  CHECK_U64(tb->hart.mcause, 1);
  CHECK_U64(tb->hart.mtval, 0x10000000);
  tb_destroy(tb);
}

TEST(wfi_stops_the_run_until_an_interrupt) {
  testbus *tb = new_bus();
  static const uint32_t prog[] = {0x10500073, 0x00000013}; /* wfi; nop */
  load_program(tb, prog, 2, RV_PRIV_M);
  uint64_t n = rv_hart_run(&tb->hart, 1000);
  CHECK(tb->hart.wfi);
  CHECK(n <= 2);
  CHECK_EQ(rv_hart_run(&tb->hart, 1000), 0);
  tb->hart.mie = RV_MIP_MSIP;
  rv_hart_set_irq(&tb->hart, RV_MIP_MSIP, true);
  CHECK(rv_hart_irq_pending(&tb->hart));
  /* MIE is off: WFI resumes without taking the interrupt */
  tb->hart.mtvec = TB_RAM_BASE + 0x100;
  rv_hart_run(&tb->hart, 1);
  CHECK(!tb->hart.wfi);
  CHECK_U64(tb->hart.pc, TB_RAM_BASE + 8);
  /* with MIE set the interrupt is taken (the handler starts with a nop) */
  static const uint32_t nop = 0x00000013;
  memcpy(tb->bus.ram + 0x100, &nop, 4);
  tb->hart.mstatus |= MSTATUS_MIE;
  rv_hart_run(&tb->hart, 1);
  CHECK_U64(tb->hart.mcause, (1ull << 63) | 3);
  tb_destroy(tb);
}

/* A clock for the pace test: it moves only when told, and its reads are counted. */
static uint64_t fake_now;
static unsigned fake_reads;
static uint64_t fake_mtime(void *opaque) {
  (void)opaque;
  fake_reads++;
  return fake_now;
}

/* Reads of the clock by one Sstc timer check (rv_hart_irq_pending), and whether it saw STIP. */
static unsigned reads_of_one_check(rv_hart *h, bool *pending) {
  unsigned before = fake_reads;
  *pending = rv_hart_irq_pending(h);
  return fake_reads - before;
}

TEST(stimecmp_checks_skip_the_clock_only_while_it_is_provably_ahead) {
  testbus *tb = new_bus();
  rv_hart *h = &tb->hart;
  rv_hart_reset(h, TB_RAM_BASE, RV_PRIV_S);
  rv_mtime_pace pace = {.cycles_per_tick = 0, .gen = 7};
  tb->bus.read_mtime = fake_mtime;
  tb->bus.mtime_pace = &pace;
  h->mie = RV_MIP_STIP;
  h->stimecmp = 1000;
  fake_now = 10;
  bool pending;
  /* no pace measured yet: every check reads */
  CHECK_EQ(reads_of_one_check(h, &pending), 1);
  CHECK_EQ(reads_of_one_check(h, &pending), 1);
  CHECK(!pending);
  /* a slow pace (2^32 cycles per tick: the ~900 ticks ahead last for minutes, so a preempted
   * test on a loaded host still sees them ahead): after one read the next checks need none */
  pace.cycles_per_tick = 1ULL << 32;
  CHECK_EQ(reads_of_one_check(h, &pending), 1);
  CHECK_EQ(reads_of_one_check(h, &pending), 0);
  CHECK(!pending);
  /* a new stimecmp is read against the clock again */
  h->stimecmp = 900;
  CHECK_EQ(reads_of_one_check(h, &pending), 1);
  CHECK_EQ(reads_of_one_check(h, &pending), 0);
  /* mtime jumps past it: the owner bumps the generation, and the check sees the timer */
  fake_now = 5000;
  __atomic_add_fetch(&pace.gen, 1, __ATOMIC_ACQ_REL);
  CHECK_EQ(reads_of_one_check(h, &pending), 1);
  CHECK(pending);
  CHECK_EQ(reads_of_one_check(h, &pending), 1); /* due: always read (it may be cleared) */
  CHECK(pending);
  /* one tick ahead: the tick it read may end at once, so nothing is inferred */
  h->stimecmp = 5001;
  CHECK_EQ(reads_of_one_check(h, &pending), 1);
  CHECK_EQ(reads_of_one_check(h, &pending), 1);
  CHECK(!pending);
  fake_now = 5001;
  CHECK_EQ(reads_of_one_check(h, &pending), 1);
  CHECK(pending);
#if defined(__x86_64__)
  /* a fast pace: once its cycles have passed, the clock decides again */
  pace.cycles_per_tick = 1;
  h->stimecmp = 6000;
  CHECK_EQ(reads_of_one_check(h, &pending), 1);
  uint64_t start = rv_cycles();
  while (rv_cycles() - start < 100000) {
  }
  fake_now = 6000;
  CHECK_EQ(reads_of_one_check(h, &pending), 1);
  CHECK(pending);
#endif
  /* no pace on the bus: every check reads, as before */
  tb->bus.mtime_pace = NULL;
  h->stimecmp = 9000;
  CHECK_EQ(reads_of_one_check(h, &pending), 1);
  CHECK_EQ(reads_of_one_check(h, &pending), 1);
  CHECK(!pending);
  tb->bus.read_mtime = tb_mtime;
  tb_destroy(tb);
}

TEST(sv39_translation_sets_accessed_and_dirty) {
  testbus *tb = new_bus();
  rv_hart *h = &tb->hart;
  uint8_t *ram = tb->bus.ram;
  uint64_t root = TB_RAM_BASE + 0x10000, l1 = root + 0x1000, l0 = root + 0x2000;
  uint64_t page = TB_RAM_BASE + 0x20000;
  uint64_t *r = (uint64_t *)(ram + 0x10000), *t1 = (uint64_t *)(ram + 0x11000),
           *t0 = (uint64_t *)(ram + 0x12000);
  /* PMP: S-mode (and its page-table walks) may access everything */
  CHECK(rv_csr_write(h, 0x3b0, UINT64_MAX) && rv_csr_write(h, 0x3a0, 0x1f));
  r[1] = ((l1 >> 12) << 10) | 1; /* va 0x4000_0000 */
  t1[0] = ((l0 >> 12) << 10) | 1;
  t0[0] = ((page >> 12) << 10) | 0x7; /* V R W, A=D=0 */
  t0[1] = ((page >> 12) << 10) | 0x3; /* V R */
  t0[2] = ((page >> 12) << 10) | 0x5; /* W without R: reserved */
  h->satp = (8ull << 60) | (root >> 12);
  h->priv = RV_PRIV_S;
  rv_update_modes(h);
  uint64_t pa;
  CHECK_EQ(rv_translate(h, 0x40000123, ACC_READ, TLB_S, &pa), 0);
  CHECK_U64(pa, page + 0x123);
  CHECK((t0[0] & 0x40) && !(t0[0] & 0x80));
  CHECK_EQ(rv_translate(h, 0x40000008, ACC_WRITE, TLB_S, &pa), 0);
  CHECK(t0[0] & 0x80);
  CHECK_EQ(rv_translate(h, 0x40001000, ACC_WRITE, TLB_S, &pa), EXC_STORE_PAGE);
  CHECK_EQ(rv_translate(h, 0x40001000, ACC_EXEC, TLB_S, &pa), EXC_INSN_PAGE);
  CHECK_EQ(rv_translate(h, 0x40002000, ACC_READ, TLB_S, &pa), EXC_LOAD_PAGE);
  CHECK_EQ(rv_translate(h, 0x40003000, ACC_READ, TLB_S, &pa), EXC_LOAD_PAGE); /* invalid */
  CHECK_EQ(rv_translate(h, 0x40000000, ACC_READ, TLB_U, &pa), EXC_LOAD_PAGE); /* not U */
  CHECK_EQ(rv_translate(h, 0x8000000000ull, ACC_READ, TLB_S, &pa),
           EXC_LOAD_PAGE); /* non-canonical */
  /* a page table PMP denies to S-mode is an access fault of the access's own type */
  h->priv = RV_PRIV_M;
  CHECK(rv_csr_write(h, 0x3b0, (root + 0x2000) >> 2)); /* TOR [0, l0): the last level is out */
  CHECK(rv_csr_write(h, 0x3a0, 0x0f));
  h->priv = RV_PRIV_S;
  CHECK_EQ(rv_translate(h, 0x40000123, ACC_READ, TLB_S, &pa), EXC_LOAD_ACCESS);
  CHECK_EQ(rv_translate(h, 0x40000123, ACC_EXEC, TLB_S, &pa), EXC_INSN_ACCESS);
  /* a page table outside RAM is an access fault */
  h->satp = (8ull << 60) | (0x1000000ull >> 12);
  CHECK_EQ(rv_translate(h, 0x0, ACC_WRITE, TLB_S, &pa), EXC_STORE_ACCESS);
  tb_destroy(tb);
}

TEST(pmp_lowest_matching_entry_decides) {
  testbus *tb = new_bus();
  rv_hart *h = &tb->hart;
  rv_hart_reset(h, TB_RAM_BASE, RV_PRIV_M);
  uint64_t base = 0x80000000;
  /* 0: NA4 at base+0x100, R only; 1: TOR [base, base+0x2000) RW; 2: NAPOT base..+64K RWX */
  CHECK(rv_csr_write(h, 0x3b0, (base + 0x100) >> 2));
  CHECK(rv_csr_write(h, 0x3b1, base >> 2)); /* lower bound of entry 2's TOR */
  CHECK(rv_csr_write(h, 0x3b2, (base + 0x2000) >> 2));
  CHECK(rv_csr_write(h, 0x3b3, (base >> 2) | 0x1fff)); /* 2^(13+3) = 64 KiB */
  CHECK(rv_csr_write(h, 0x3a0, 0x1fULL << 24 | 0x0bULL << 16 | 0x00ULL << 8 | 0x11));
  CHECK_EQ(h->pmp_count, 4u);
  CHECK(rv_pmp_check(h, base + 0x100, 4, ACC_READ, RV_PRIV_S));
  CHECK(!rv_pmp_check(h, base + 0x100, 4, ACC_WRITE, RV_PRIV_S));
  CHECK(!rv_pmp_check(h, base + 0xfe, 4, ACC_READ, RV_PRIV_S)); /* straddles entry 0's edge */
  CHECK(rv_pmp_check(h, base + 0x200, 8, ACC_WRITE, RV_PRIV_U));
  CHECK(!rv_pmp_check(h, base + 0x200, 4, ACC_EXEC, RV_PRIV_S));
  CHECK(rv_pmp_check(h, base + 0x2000, 4, ACC_EXEC, RV_PRIV_S));
  CHECK(!rv_pmp_check(h, base + 0x10000, 4, ACC_READ, RV_PRIV_S)); /* no match */
  CHECK(rv_pmp_check(h, base + 0x100, 4, ACC_WRITE, RV_PRIV_M));   /* unlocked: M passes */
  CHECK(!rv_pmp_page_allows(h, base, ACC_READ, RV_PRIV_S));        /* split page */
  CHECK(rv_pmp_page_allows(h, base + 0x1000, ACC_WRITE, RV_PRIV_S));
  /* locking entry 0 binds M-mode and freezes the entry until reset */
  CHECK(rv_csr_write(h, 0x3a0, 0x1fULL << 24 | 0x0bULL << 16 | 0x91));
  CHECK(!rv_pmp_check(h, base + 0x100, 4, ACC_WRITE, RV_PRIV_M));
  CHECK(rv_pmp_check(h, base + 0x104, 4, ACC_WRITE, RV_PRIV_M));
  CHECK(rv_csr_write(h, 0x3b0, 0) && h->pmpaddr[0] == (base + 0x100) >> 2);
  CHECK(rv_csr_write(h, 0x3a0, 0) && (h->pmpcfg[0] & 0xff) == 0x91);
  /* a locked TOR entry also freezes the address below it */
  CHECK(rv_csr_write(h, 0x3a0, 0x1fULL << 24 | 0x8bULL << 16 | 0x91));
  CHECK(rv_csr_write(h, 0x3b1, 0) && h->pmpaddr[1] == base >> 2);
  rv_hart_reset(h, TB_RAM_BASE, RV_PRIV_M);
  CHECK(h->pmpcfg[0] == 0 && h->pmp_count == 0 && !h->pmp_locked);
  tb_destroy(tb);
}

TEST(loads_through_the_tlb_see_stores) {
  testbus *tb = new_bus();
  rv_hart *h = &tb->hart;
  rv_hart_reset(h, TB_RAM_BASE, RV_PRIV_M);
  CHECK(rv_store(h, TB_RAM_BASE + 0x1003, 8, 0x1122334455667788ull)); /* misaligned: in RAM */
  uint64_t v;
  CHECK(rv_load(h, TB_RAM_BASE + 0x1003, 8, &v));
  CHECK_U64(v, 0x1122334455667788ull);
  CHECK(rv_store(h, TB_RAM_BASE + 0xffd, 8, 0xa1a2a3a4a5a6a7a8ull)); /* crosses a page */
  CHECK(rv_load(h, TB_RAM_BASE + 0xffd, 8, &v));
  CHECK_U64(v, 0xa1a2a3a4a5a6a7a8ull);
  /* the last bytes of RAM, and one past it */
  CHECK(rv_load(h, TB_RAM_BASE + tb->bus.ram_size - 8, 8, &v));
  h->mtvec = TB_RAM_BASE;
  CHECK(!rv_load(h, TB_RAM_BASE + tb->bus.ram_size - 4, 8, &v));
  CHECK_U64(h->mcause, EXC_LOAD_ACCESS);
  tb_destroy(tb);
}

/* Decoded blocks: the budget is exact, and code changed in memory (by a store of the block
 * itself, or from outside after the block was decoded) runs as it is now. */
TEST(blocks_keep_the_budget_and_see_changed_code) {
  testbus *tb = new_bus();
  rv_hart *h = &tb->hart;
  const uint32_t addi_x1_1 = 0x00100093, inc_x1 = 0x00108093, add100_x1 = 0x06408093;
  const uint32_t prog[] = {addi_x1_1, inc_x1, inc_x1, inc_x1, 0x0000006f /* j . */};
  load_program(tb, prog, 5, RV_PRIV_M);
  h->mtvec = TB_RAM_BASE + 0x800;
  CHECK_U64(rv_hart_run(h, 3), 3);
  CHECK_U64(h->x[1], 3);
  CHECK_U64(h->pc, TB_RAM_BASE + 12);
  CHECK_U64(h->minstret, 3);
  CHECK_U64(rv_hart_run(h, 2), 2);
  CHECK_U64(h->x[1], 4);
  CHECK_U64(h->pc, TB_RAM_BASE + 16);
  /* changed from outside (and reported, as devices do): the third instruction now adds 100 */
  memcpy(tb->bus.ram + 8, &add100_x1, 4);
  rv_code_page_written(tb->bus.code_pages, 0);
  h->pc = TB_RAM_BASE;
  CHECK_U64(rv_hart_run(h, 5), 5);
  CHECK_U64(h->x[1], 103);
  /* changed by a store of the block itself, ahead of where it runs */
  const uint32_t smc[] = {0x0021a623 /* sw x2, 12(x3) */, addi_x1_1, inc_x1, inc_x1, 0x0000006f};
  load_program(tb, smc, 5, RV_PRIV_M);
  h->mtvec = TB_RAM_BASE + 0x800;
  h->x[2] = inc_x1;
  h->x[3] = TB_RAM_BASE;
  CHECK_U64(rv_hart_run(h, 5), 5); /* decodes the block with the old fourth instruction */
  CHECK_U64(h->x[1], 3);
  h->pc = TB_RAM_BASE;
  h->x[1] = 0;
  h->x[2] = add100_x1;
  h->x[3] = TB_RAM_BASE;
  CHECK_U64(rv_hart_run(h, 5), 5);
  CHECK_U64(h->x[1], 102);
  CHECK_U64(h->minstret, 10);
  tb_destroy(tb);
}

/* Found by fuzz_cpu: after the TLB generation tag wrapped, cleared entries matched the top page
 * of the address space under the last generation and sent the access to a stale host pointer. */
TEST(tlb_generation_wrap_leaves_no_matching_entry) {
  testbus *tb = new_bus();
  rv_hart *h = &tb->hart;
  rv_hart_reset(h, TB_RAM_BASE, RV_PRIV_M);
  h->mtvec = TB_RAM_BASE;
  uint64_t v;
  CHECK(rv_load(h, TB_RAM_BASE + 0x2000, 8, &v)); /* fills an entry */
  for (int i = 0; i < 2 * 4096 + 7; i++) {
    rv_hart_flush_tlb(h);
    if ((h->tlb_tag >> 52) == 0xfff) {
      h->mcause = 0;
      CHECK(!rv_load(h, 0xfffffffffffff000ull, 8, &v)); /* no RAM there: an access fault */
      CHECK_U64(h->mcause, EXC_LOAD_ACCESS);
    }
  }
  CHECK(rv_load(h, TB_RAM_BASE + 0x2000, 8, &v));
  tb_destroy(tb);
}

/* ---- ELF loader with hostile files */

static uint8_t elf_buf[8192];

static size_t make_elf(void) {
  memset(elf_buf, 0, sizeof(elf_buf));
  uint8_t *b = elf_buf;
  memcpy(b, "\177ELF", 4);
  b[4] = 2; /* 64-bit */
  b[5] = 1; /* little endian */
  b[6] = 1;
  uint16_t u16;
  uint32_t u32;
  uint64_t u64;
#define PUT(off, v) (memcpy(b + (off), &(v), sizeof(v)))
  u16 = 2;
  PUT(16, u16); /* ET_EXEC */
  u16 = 243;
  PUT(18, u16); /* EM_RISCV */
  u64 = TB_RAM_BASE;
  PUT(24, u64);
  u64 = 64;
  PUT(32, u64); /* phoff */
  u16 = 56;
  PUT(54, u16); /* phentsize */
  u16 = 1;
  PUT(56, u16); /* phnum */
  /* PT_LOAD: 16 bytes from offset 0x100 to RAM base, 32 bytes in memory */
  u32 = 1;
  PUT(64, u32);
  u64 = 0x100;
  PUT(64 + 8, u64);
  u64 = TB_RAM_BASE;
  PUT(64 + 16, u64);
  PUT(64 + 24, u64);
  u64 = 16;
  PUT(64 + 32, u64);
  u64 = 32;
  PUT(64 + 40, u64);
  memset(b + 0x100, 0xab, 16);
#undef PUT
  return 0x200;
}

TEST(elf_loader_accepts_a_minimal_file) {
  testbus *tb = new_bus();
  size_t len = make_elf();
  memset(tb->bus.ram, 0xff, 64);
  rv_elf_image img;
  _cleanup_error_ vs_error *err = NULL;
  CHECK_EQ(rv_elf_load(elf_buf, len, tb->bus.ram, TB_RAM_BASE, tb->bus.ram_size, &img, &err), 0);
  CHECK_U64(img.entry, TB_RAM_BASE);
  CHECK(tb->bus.ram[0] == 0xab && tb->bus.ram[15] == 0xab && tb->bus.ram[16] == 0 &&
        tb->bus.ram[31] == 0 && tb->bus.ram[32] == 0xff);
  CHECK(!img.has_tohost);
  tb_destroy(tb);
}

static const char *elf_error(size_t len) {
  static char msg[256];
  testbus *tb = new_bus();
  rv_elf_image img;
  _cleanup_error_ vs_error *err = NULL;
  int r = rv_elf_load(elf_buf, len, tb->bus.ram, TB_RAM_BASE, tb->bus.ram_size, &img, &err);
  snprintf(msg, sizeof(msg), "%s", r < 0 && err ? err->msg : "(loaded)");
  tb_destroy(tb);
  return msg;
}

TEST(elf_loader_rejects_hostile_files) {
  size_t len = make_elf();
  CHECK_CONTAINS(elf_error(10), "truncated");
  elf_buf[0] = 'X';
  CHECK_CONTAINS(elf_error(len), "not an ELF");
  len = make_elf();
  elf_buf[18] = 62; /* x86-64 */
  CHECK_CONTAINS(elf_error(len), "not RISC-V");
  len = make_elf();
  uint64_t big = 0xffffffffffffff00ull;
  memcpy(elf_buf + 32, &big, 8); /* phoff */
  CHECK_CONTAINS(elf_error(len), "program headers lie outside");
  len = make_elf();
  memcpy(elf_buf + 64 + 8, &big, 8); /* p_offset */
  CHECK_CONTAINS(elf_error(len), "outside the file");
  len = make_elf();
  uint64_t addr = 0x1000;
  memcpy(elf_buf + 64 + 24, &addr, 8); /* p_paddr below RAM */
  CHECK_CONTAINS(elf_error(len), "outside guest RAM");
  len = make_elf();
  memcpy(elf_buf + 64 + 40, &big, 8); /* p_memsz huge */
  CHECK_CONTAINS(elf_error(len), "outside guest RAM");
  len = make_elf();
  uint64_t sz = 64;
  memcpy(elf_buf + 64 + 32, &sz, 8); /* filesz > memsz */
  CHECK_CONTAINS(elf_error(len), "file size exceeds memory size");
}

/* ---- debugger watchpoints (mmu.c): the range checks, and hits on both engines */

TEST(watch_ranges_overlap_exactly) {
  rv_breakpoints bp = {0};
  bp.watch[0] = (rv_watchpoint){.addr = 0x1000, .len = 4, .kind = RV_WATCH_WRITE};
  bp.watch[1] = (rv_watchpoint){.addr = 0x2000, .len = 8, .kind = RV_WATCH_READ};
  bp.watch[2] = (rv_watchpoint){.addr = 0x3000, .len = 1, .kind = RV_WATCH_ACCESS};
  bp.watch[3] = (rv_watchpoint){.addr = 0xfffffffffffffff8ULL, .len = 8, .kind = RV_WATCH_WRITE};
  bp.nwatch = 4;
  CHECK_EQ(rv_watch_find(&bp, 0xffc, 0xffc, 4, RV_WATCH_WRITE), -1); /* ends just before */
  CHECK_EQ(rv_watch_find(&bp, 0xffd, 0xffd, 4, RV_WATCH_WRITE), 0); /* its last byte is the first */
  CHECK_EQ(rv_watch_find(&bp, 0x1003, 0x1003, 1, RV_WATCH_WRITE), 0);
  CHECK_EQ(rv_watch_find(&bp, 0x1004, 0x1004, 1, RV_WATCH_WRITE), -1); /* just after */
  CHECK_EQ(rv_watch_find(&bp, 0x1000, 0x1000, 4, RV_WATCH_READ), -1);  /* a write watchpoint */
  CHECK_EQ(rv_watch_find(&bp, 0x1000, 0x1000, 4, RV_WATCH_ACCESS), 0); /* an AMO reads and writes */
  CHECK_EQ(rv_watch_find(&bp, 0x2007, 0x2007, 1, RV_WATCH_READ), 1);
  CHECK_EQ(rv_watch_find(&bp, 0x2000, 0x2000, 8, RV_WATCH_WRITE), -1);
  CHECK_EQ(rv_watch_find(&bp, 0x1ff8, 0x1ff8, 8, RV_WATCH_READ), -1);
  CHECK_EQ(rv_watch_find(&bp, 0x1ff9, 0x1ff9, 8, RV_WATCH_READ), 1);
  CHECK_EQ(rv_watch_find(&bp, 0x3000, 0x3000, 1, RV_WATCH_WRITE), 2);
  CHECK_EQ(rv_watch_find(&bp, 0x3000, 0x3000, 1, RV_WATCH_READ), 2);
  CHECK_EQ(rv_watch_find(&bp, 0xfffffffffffffffcULL, 0xfffffffffffffffcULL, 4, RV_WATCH_WRITE),
           3); /* the top */
  CHECK_EQ(rv_watch_find(&bp, 0xffffffffffffffffULL, 0xffffffffffffffffULL, 2, RV_WATCH_WRITE),
           -1); /* wraps: none */
  CHECK_EQ(rv_watch_find(&bp, 0x1000, 0x1000, 0, RV_WATCH_WRITE), -1);
  CHECK(rv_watch_covers_page(&bp, 0x1abc, 0x1abc));
  CHECK(rv_watch_covers_page(&bp, 0x2fff, 0x2fff));
  CHECK(!rv_watch_covers_page(&bp, 0x4000, 0x4000));
  CHECK(!rv_watch_covers_page(&bp, 0xfff, 0xfff));
  CHECK(rv_watch_covers_page(&bp, 0xfffffffffffff123ULL, 0xfffffffffffff123ULL));
  /* a physical watchpoint compares the physical address, whatever the virtual one */
  bp.watch[4] = (rv_watchpoint){.addr = 0x9000, .len = 4, .kind = RV_WATCH_WRITE, .phys = true};
  bp.nwatch = 5;
  CHECK_EQ(rv_watch_find(&bp, 0x5000, 0x9000, 4, RV_WATCH_WRITE), 4);
  CHECK_EQ(rv_watch_find(&bp, 0x6ffe, 0x8ffe, 4, RV_WATCH_WRITE), 4); /* its first bytes */
  CHECK_EQ(rv_watch_find(&bp, 0x5004, 0x9004, 4, RV_WATCH_WRITE), -1);
  CHECK_EQ(rv_watch_find(&bp, 0x9000, 0x5000, 4, RV_WATCH_WRITE), -1); /* only the va matches */
  CHECK_EQ(rv_watch_find(&bp, 0x5000, 0x9000, 4, RV_WATCH_READ), -1);
  CHECK_EQ(rv_watch_find(&bp, 0x1000, 0x9000, 4, RV_WATCH_WRITE), 0); /* the virtual one first */
  CHECK(rv_watch_covers_page(&bp, 0x7123, 0x9123));
  CHECK(!rv_watch_covers_page(&bp, 0x9123, 0x7123));
  bp.nwatch = 0;
  CHECK(!rv_watch_covers_page(&bp, 0x1abc, 0x1abc));
  CHECK_EQ(rv_watch_find(&bp, 0x1000, 0x1000, 4, RV_WATCH_WRITE), -1);
}

static uint32_t enc_i(int32_t imm, unsigned rs1, unsigned f3, unsigned rd, unsigned op) {
  return ((uint32_t)imm << 20) | (rs1 << 15) | (f3 << 12) | (rd << 7) | op;
}
static uint32_t enc_s(int32_t imm, unsigned rs2, unsigned rs1, unsigned f3) {
  uint32_t u = (uint32_t)imm;
  return ((u >> 5 & 0x7f) << 25) | (rs2 << 20) | (rs1 << 15) | (f3 << 12) | ((u & 0x1f) << 7) |
         0x23;
}
static uint32_t enc_jal0(int32_t off) {
  uint32_t u = (uint32_t)off;
  return ((u >> 20 & 1) << 31) | ((u >> 1 & 0x3ff) << 21) | ((u >> 11 & 1) << 20) |
         ((u >> 12 & 0xff) << 12) | 0x6f;
}

/* A loop over data at RAM + 0x1000 (t0): a counter read and incremented (+0x08), a doubleword
 * read (+0x10), an AMO (+0x20) and a store that crosses into RAM + 0x3000. Offsets of the
 * instructions after each access: */
enum {
  W_AFTER_LW = 0x0c,
  W_AFTER_SW = 0x14,
  W_AFTER_LD = 0x18,
  W_AFTER_AMO = 0x24,
  W_AFTER_SD = 0x28
};
static const uint32_t *watch_program(void) {
  static uint32_t p[11];
  p[0] = 0x00001297;                                    /* auipc t0, 1 */
  p[1] = 0x00003f97;                                    /* auipc t6, 3 (t6 = RAM + 0x3004) */
  p[2] = enc_i(8, 5, 2, 6, 0x03);                       /* lw t1, 8(t0) */
  p[3] = enc_i(1, 6, 0, 6, 0x13);                       /* addi t1, t1, 1 */
  p[4] = enc_s(8, 6, 5, 2);                             /* sw t1, 8(t0) */
  p[5] = enc_i(16, 5, 3, 7, 0x03);                      /* ld t2, 16(t0) */
  p[6] = enc_i(1, 0, 0, 28, 0x13);                      /* addi t3, x0, 1 */
  p[7] = enc_i(32, 5, 0, 29, 0x13);                     /* addi t4, t0, 32 */
  p[8] = (28u << 20) | (29u << 15) | (2u << 12) | 0x2f; /* amoadd.w x0, t3, (t4) */
  p[9] = enc_s(-8, 6, 31, 3);                           /* sd t1, -8(t6): RAM + 0x2ffc..0x3003 */
  p[10] = enc_jal0(-32);                                /* j p[2] */
  return p;
}

static void watch_only(rv_hart *h, rv_breakpoints *bp, uint64_t off, uint64_t len, unsigned kind) {
  bp->watch[0] = (rv_watchpoint){.addr = TB_RAM_BASE + off, .len = len, .kind = kind};
  bp->nwatch = 1;
  rv_hart_flush_tlb(h); /* as the gdb stub does when the set changes */
  h->breakpoint_hit = false;
}

/* Run until a hit; it must be after the instruction at RAM + `after`, of `kind`. */
static void expect_hit(rv_hart *h, uint64_t after, unsigned kind, uint64_t watch_off) {
  uint64_t done = rv_hart_run(h, 100000);
  CHECK(done > 0 && done < 100000);
  CHECK(h->breakpoint_hit);
  CHECK_EQ(h->watch_hit, kind);
  CHECK_U64(h->watch_addr, TB_RAM_BASE + watch_off);
  CHECK_U64(h->pc, TB_RAM_BASE + after);
  CHECK_U64(rv_hart_run(h, 100), 0); /* stopped until the debugger clears the hit */
}

static void watchpoints_on(bool interpreter) {
  static testbus tb;
  _cleanup_error_ vs_error *err = NULL;
  if (tb_init_engine(&tb, 16 << 20, interpreter, &err) < 0)
    TAP_FAIL("tb_init: %s", err->msg);
  rv_breakpoints bp = {0};
  tb.bus.breakpoints = &bp;
  rv_hart *h = &tb.hart;
  load_program(&tb, watch_program(), 11, RV_PRIV_M);
  uint32_t *counter = (uint32_t *)(tb.bus.ram + 0x1008);
  /* warm: the blocks are translated and the data pages are in the TLB */
  CHECK_U64(rv_hart_run(h, 5000), 5000);
  CHECK(!h->breakpoint_hit);
  uint32_t before = *counter;
  CHECK(before > 100);

  watch_only(h, &bp, 0x1008, 4, RV_WATCH_WRITE);
  expect_hit(h, W_AFTER_SW, RV_WATCH_WRITE, 0x1008);
  CHECK_EQ(*counter, before + 1); /* stopped after the store: gdb compares old and new */
  h->breakpoint_hit = false;
  expect_hit(h, W_AFTER_SW, RV_WATCH_WRITE, 0x1008); /* the next round */
  CHECK_EQ(*counter, before + 2);

  watch_only(h, &bp, 0x1008, 4, RV_WATCH_READ); /* the lw, not the sw */
  expect_hit(h, W_AFTER_LW, RV_WATCH_READ, 0x1008);
  watch_only(h, &bp, 0x1014, 4, RV_WATCH_READ); /* the ld's upper half */
  expect_hit(h, W_AFTER_LD, RV_WATCH_READ, 0x1014);
  watch_only(h, &bp, 0x1022, 1, RV_WATCH_ACCESS); /* inside the AMO's word */
  expect_hit(h, W_AFTER_AMO, RV_WATCH_ACCESS, 0x1022);
  watch_only(h, &bp, 0x1020, 4, RV_WATCH_READ); /* an AMO reads too */
  expect_hit(h, W_AFTER_AMO, RV_WATCH_READ, 0x1020);
  watch_only(h, &bp, 0x3002, 1, RV_WATCH_WRITE); /* the second page of a crossing store */
  expect_hit(h, W_AFTER_SD, RV_WATCH_WRITE, 0x3002);
  uint64_t crossed; /* the store crossed a page: at 0x2ffc, not 8-byte aligned */
  memcpy(&crossed, tb.bus.ram + 0x2ffc, sizeof(crossed));
  CHECK_U64(crossed, h->x[6]);

  /* with a breakpoint as well (the harts then run an instruction at a time) */
  bp.pc[0] = TB_RAM_BASE + 0x800; /* never reached */
  bp.n = 1;
  watch_only(h, &bp, 0x1008, 4, RV_WATCH_WRITE);
  expect_hit(h, W_AFTER_SW, RV_WATCH_WRITE, 0x1008);
  bp.n = 0;

  /* a watchpoint elsewhere, then none: the loop runs its whole budget */
  watch_only(h, &bp, 0x5000, 8, RV_WATCH_ACCESS);
  CHECK_U64(rv_hart_run(h, 10000), 10000);
  CHECK(!h->breakpoint_hit);
  bp.nwatch = 0;
  CHECK_U64(rv_hart_run(h, 10000), 10000);
  CHECK(!h->breakpoint_hit);
  tb_destroy(&tb);
}

/* HLV/HSV bypass the TLB (hyp.c): they report to the watchpoints themselves. In M-mode with
 * hgatp and vsatp bare, the guest's virtual address is the physical one. */
TEST(watchpoints_see_hypervisor_loads_and_stores) {
  static testbus tb;
  _cleanup_error_ vs_error *err = NULL;
  if (tb_init_engine(&tb, 16 << 20, false, &err) < 0)
    TAP_FAIL("tb_init: %s", err->msg);
  rv_breakpoints bp = {0};
  tb.bus.breakpoints = &bp;
  rv_hart *h = &tb.hart;
  const uint32_t prog[] = {
      0x00001297,                                                  /* auipc t0, 1 */
      (0x34u << 25) | (5u << 15) | (4u << 12) | (6u << 7) | 0x73,  /* hlv.w t1, (t0) */
      (0x35u << 25) | (6u << 20) | (5u << 15) | (4u << 12) | 0x73, /* hsv.w t1, (t0) */
      enc_jal0(-8),                                                /* j the hlv.w */
  };
  load_program(&tb, prog, 4, RV_PRIV_M);
  /* the accesses are checked by PMP as U-mode ones: one entry allows everything */
  h->pmpaddr[0] = RV_PMPADDR_MASK;
  h->pmpcfg[0] = 0x1f; /* NAPOT, R, W, X */
  rv_pmp_update(h);
  CHECK_U64(rv_hart_run(h, 1000), 1000); /* they work, and nothing stops */
  CHECK_U64(h->mcause, 0);
  watch_only(h, &bp, 0x1000, 4, RV_WATCH_READ);
  expect_hit(h, 0x08, RV_WATCH_READ, 0x1000);
  watch_only(h, &bp, 0x1002, 2, RV_WATCH_WRITE);
  expect_hit(h, 0x0c, RV_WATCH_WRITE, 0x1002);
  tb_destroy(&tb);
}

/* Physical watchpoints, in S-mode with Sv39 paging: the code runs from a gigapage that maps
 * RAM onto itself; virtual pages 0x4000_0000 and 0x4000_1000 both map the data page at RAM +
 * 0x20000. The loop reads a counter through the first mapping and writes it through the
 * second. */
enum { P_DATA = 0x20000, P_AFTER_LW = 0x0c, P_AFTER_SW = 0x14 };
#define P_VA_READ 0x40000000ULL

static void map_two_aliases(testbus *tb) {
  rv_hart *h = &tb->hart;
  uint64_t *root = (uint64_t *)(tb->bus.ram + 0x10000), *l1 = (uint64_t *)(tb->bus.ram + 0x11000),
           *l0 = (uint64_t *)(tb->bus.ram + 0x12000);
  root[TB_RAM_BASE >> 30] = ((TB_RAM_BASE >> 12) << 10) | 0xcf; /* V R W X A D */
  root[P_VA_READ >> 30] = (((TB_RAM_BASE + 0x11000) >> 12) << 10) | 1;
  l1[0] = (((TB_RAM_BASE + 0x12000) >> 12) << 10) | 1;
  l0[0] = l0[1] = (((TB_RAM_BASE + P_DATA) >> 12) << 10) | 0xc7; /* V R W A D */
  h->pmpaddr[0] = RV_PMPADDR_MASK;                               /* S-mode may access everything */
  h->pmpcfg[0] = 0x1f;
  rv_pmp_update(h);
  h->satp = (8ull << 60) | ((TB_RAM_BASE + 0x10000) >> 12);
  rv_update_modes(h);
}

static void watch_set(rv_hart *h, rv_breakpoints *bp, uint64_t addr, unsigned kind, bool phys) {
  bp->watch[0] = (rv_watchpoint){.addr = addr, .len = 4, .kind = kind, .phys = phys};
  bp->nwatch = 1;
  rv_hart_flush_tlb(h);
  h->breakpoint_hit = false;
}

static void physical_watchpoints_on(bool interpreter) {
  static testbus tb;
  _cleanup_error_ vs_error *err = NULL;
  if (tb_init_engine(&tb, 16 << 20, interpreter, &err) < 0)
    TAP_FAIL("tb_init: %s", err->msg);
  rv_breakpoints bp = {0};
  tb.bus.breakpoints = &bp;
  rv_hart *h = &tb.hart;
  const uint32_t prog[] = {
      0x400002b7,              /* lui t0, 0x40000 (the mapping read through) */
      0x40001337,              /* lui t1, 0x40001 (the mapping written through) */
      enc_i(8, 5, 2, 7, 0x03), /* lw t2, 8(t0) */
      enc_i(1, 7, 0, 7, 0x13), /* addi t2, t2, 1 */
      enc_s(8, 7, 6, 2),       /* sw t2, 8(t1) */
      enc_jal0(-12),           /* j the lw */
  };
  load_program(&tb, prog, 6, RV_PRIV_S);
  map_two_aliases(&tb);
  uint32_t *counter = (uint32_t *)(tb.bus.ram + P_DATA + 8);
  /* warm: the blocks are translated and both mappings are in the TLB */
  CHECK_U64(rv_hart_run(h, 5000), 5000);
  CHECK(!h->breakpoint_hit);
  CHECK_U64(h->mcause, 0);
  uint32_t before = *counter;
  CHECK(before > 100);

  uint64_t pa = TB_RAM_BASE + P_DATA + 8;
  watch_set(h, &bp, pa, RV_WATCH_WRITE, true); /* the store, through the second mapping */
  expect_hit(h, P_AFTER_SW, RV_WATCH_WRITE, P_DATA + 8);
  CHECK_EQ(*counter, before + 1);
  h->breakpoint_hit = false; /* the next round: neither mapping went into the TLB meanwhile */
  expect_hit(h, P_AFTER_SW, RV_WATCH_WRITE, P_DATA + 8);
  CHECK_EQ(*counter, before + 2);
  watch_set(h, &bp, pa, RV_WATCH_READ, true); /* the load, through the first */
  expect_hit(h, P_AFTER_LW, RV_WATCH_READ, P_DATA + 8);
  h->breakpoint_hit = false;
  expect_hit(h, P_AFTER_LW, RV_WATCH_READ, P_DATA + 8);
  /* a virtual write watchpoint on the mapping only read through sees nothing; a read one
   * does */
  watch_set(h, &bp, P_VA_READ + 8, RV_WATCH_WRITE, false);
  CHECK_U64(rv_hart_run(h, 10000), 10000);
  CHECK(!h->breakpoint_hit);
  watch_set(h, &bp, P_VA_READ + 8, RV_WATCH_READ, false);
  CHECK(rv_hart_run(h, 100000) < 100000 && h->breakpoint_hit);
  CHECK_U64(h->watch_addr, P_VA_READ + 8);
  CHECK_U64(h->pc, TB_RAM_BASE + P_AFTER_LW);
  /* another word of the watched page: its accesses are checked (slow path) and run on */
  watch_set(h, &bp, pa + 0x100, RV_WATCH_ACCESS, true);
  CHECK_U64(rv_hart_run(h, 10000), 10000);
  CHECK(!h->breakpoint_hit);
  CHECK_U64(h->mcause, 0);
  tb_destroy(&tb);
}

TEST(physical_watchpoints_see_every_mapping_interpreter) { physical_watchpoints_on(true); }
TEST(physical_watchpoints_see_every_mapping_translator) { physical_watchpoints_on(false); }

TEST(watchpoints_stop_the_interpreter_after_the_access) { watchpoints_on(true); }
TEST(watchpoints_stop_the_translator_after_the_access) { watchpoints_on(false); }

int main(void) { return tap_run(); }
