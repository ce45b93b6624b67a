/* The hart's two engines must agree: the interpreter (rv_bus.interpreter) and the translator to
 * x86-64 code (jit.c). Random programs from a seeded generator run on two harts, each on its own
 * bus and RAM, under the same run budgets; after every rv_hart_run the registers, pc, privilege,
 * counters, trap CSRs, all of RAM and what the devices saw must be the same.
 *
 * The programs mix everything the translator inlines (RV_ALU_*_OPS, RV_LOAD_OPS, RV_STORE_OPS,
 * RV_BRANCH_OPS, jal/jalr/auipc/lui, compressed forms) with instructions it hands to their
 * handlers (M, Zba/Zbb, A, CSR reads, FP moves), accesses that miss the TLB, straddle pages, are
 * misaligned, fault or reach MMIO, loops, jumps between pages, self-modifying code, Sv39 paging
 * in S-mode, the same in VS-mode (V=1: Sv39 over an Sv39x4 G stage, traps to VS, HS and M), runs
 * of instructions on three registers (which the translator keeps in host registers: loads into
 * them through slow paths, handler calls between their uses), rotates spelled as two shifts and
 * an or, loops whose body is one block branching to its own start. A trap handler in the program
 * skips a faulting instruction, so a program goes on after its faults; every program ends in WFI.
 *
 *   JIT_DIFF_SEED=N JIT_DIFF_KIND=m|s|vs|line [JIT_DIFF_WARMUP=runs]  runs one program and prints
 *   its code and each step.
 */
#include "tap.h"

#include <signal.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "vm/cpu/cpu_internal.h"

#define RAM_BASE 0x80000000ULL
#define RAM_PAGES 72U
#define RAM_SIZE (RAM_PAGES * 4096ULL)
#define MMIO_BASE 0x10000000ULL
#define MMIO_IRQ (MMIO_BASE + 0x800) /* writes raise or lower SEIP (never enabled) */
#define VA_BASE 0x40000000ULL        /* S-mode programs see RAM page i at VA_BASE + i * 4096 */
#define RAM_ALIGN (1ULL << 19)
_Static_assert(RAM_ALIGN == 2ULL << (1 + RV_BLOCK_BITS), "code RAM_ALIGN / 2 apart shares a pair");

/* RAM pages (index from RAM_BASE) */
enum {
  PAGE_HANDLER = 0, /* trap handler */
  PAGE_END = 1,     /* where every program ends: wfi; j . */
  PAGE_CODE = 2,
  CODE_PAGES = 10,
  PAGE_DATA = 16,
  DATA_PAGES = 8,
  PAGE_PT = 28, /* Sv39 tables: root, level 1, level 0 */
  PAGE_SPARE = 31,
  PAGE_G_L1 = 42, /* VS programs: the G stage's level-1 and level-0 tables and 16 KiB root */
  PAGE_G_L0 = 43,
  PAGE_G_ROOT = 44,
};
/* S-mode virtual pages beyond RAM's: aliases of the code pages, the device page */
enum { VPAGE_ALIAS = 32, VPAGE_MMIO = 48 };

/* ---------------------------------------------------------------- the two machines */

typedef struct engine {
  rv_bus bus;
  rv_hart hart;
  uint64_t mtime_reads; /* not compared */
  uint64_t mmio_reads, mmio_writes, mmio_hash;
} engine;

static uint64_t mix64(uint64_t v) {
  v ^= v >> 33;
  v *= 0xff51afd7ed558ccdULL;
  v ^= v >> 33;
  v *= 0xc4ceb9fe1a85ec53ULL;
  return v ^ (v >> 33);
}

/* Time follows the instructions retired: both harts see the same clock at the same place in the
 * program, however often their run loops look at it. */
static uint64_t eng_mtime(void *opaque) {
  engine *e = opaque;
  e->mtime_reads++;
  return e->hart.minstret * 3;
}

static bool eng_mmio_read(void *opaque, uint64_t pa, unsigned size, uint64_t *val) {
  engine *e = opaque;
  if (pa < MMIO_BASE || pa >= MMIO_BASE + 0x1000)
    return false;
  uint64_t v = mix64(pa ^ (e->mmio_reads++ << 20) ^ size);
  *val = size == 8 ? v : v & ((1ULL << (8 * size)) - 1);
  return true;
}

static bool eng_mmio_write(void *opaque, uint64_t pa, unsigned size, uint64_t val) {
  engine *e = opaque;
  if (pa < MMIO_BASE || pa >= MMIO_BASE + 0x1000)
    return false;
  e->mmio_writes++;
  e->mmio_hash = mix64(e->mmio_hash ^ pa ^ ((uint64_t)size << 56)) ^ val;
  if (pa == MMIO_IRQ)
    rv_hart_set_irq(&e->hart, RV_MIP_SEIP, val & 1);
  return true;
}

static engine *engine_new(bool interpreter) {
  engine *e = vs_malloc0_aligned(_Alignof(engine), sizeof(*e));
  /* RAM at a multiple of RAM_ALIGN: code RAM_ALIGN / 2 apart then shares a pair of block slots
   * in both engines (blocks_that_share_a_slot_pair) */
  uint8_t *map =
      mmap(NULL, RAM_SIZE + RAM_ALIGN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (map == MAP_FAILED)
    abort();
  uint8_t *ram = (uint8_t *)(((uintptr_t)map + RAM_ALIGN - 1) & ~(uintptr_t)(RAM_ALIGN - 1));
  if (ram > map)
    munmap(map, (size_t)(ram - map));
  munmap(ram + RAM_SIZE, (size_t)(map + RAM_ALIGN - ram));
  e->bus = (rv_bus){.ram = ram,
                    .ram_base = RAM_BASE,
                    .ram_size = RAM_SIZE,
                    .opaque = e,
                    .mmio_read = eng_mmio_read,
                    .mmio_write = eng_mmio_write,
                    .read_mtime = eng_mtime,
                    .code_pages = calloc(RAM_PAGES, sizeof(uint32_t)),
                    .interpreter = interpreter};
  _cleanup_error_ vs_error *err = NULL;
  if (rv_hart_init(&e->hart, 0, &e->bus, &err) < 0)
    TAP_FAIL("rv_hart_init: %s", err->msg);
  return e;
}

static void engine_free(engine *e) {
  rv_hart_destroy(&e->hart);
  free(e->bus.code_pages);
  munmap(e->bus.ram, RAM_SIZE);
  free(e);
}

/* ---------------------------------------------------------------- instruction encoders */

static uint32_t enc_r(unsigned f7, unsigned rs2, unsigned rs1, unsigned f3, unsigned rd,
                      unsigned op) {
  return f7 << 25 | rs2 << 20 | rs1 << 15 | f3 << 12 | rd << 7 | op;
}
static uint32_t enc_i(int32_t imm, unsigned rs1, unsigned f3, unsigned rd, unsigned op) {
  return ((uint32_t)imm & 0xfff) << 20 | rs1 << 15 | f3 << 12 | rd << 7 | op;
}
static uint32_t enc_s(int32_t imm, unsigned rs2, unsigned rs1, unsigned f3, unsigned op) {
  uint32_t u = (uint32_t)imm;
  return ((u >> 5) & 0x7f) << 25 | rs2 << 20 | rs1 << 15 | f3 << 12 | (u & 0x1f) << 7 | op;
}
static uint32_t enc_b(int32_t off, unsigned rs1, unsigned rs2, unsigned f3) {
  uint32_t u = (uint32_t)off;
  return ((u >> 12) & 1) << 31 | ((u >> 5) & 0x3f) << 25 | rs2 << 20 | rs1 << 15 | f3 << 12 |
         ((u >> 1) & 0xf) << 8 | ((u >> 11) & 1) << 7 | 0x63;
}
static uint32_t enc_u(uint32_t imm, unsigned rd, unsigned op) {
  return (imm & 0xfffff000) | rd << 7 | op;
}
static uint32_t enc_j(int32_t off, unsigned rd) {
  uint32_t u = (uint32_t)off;
  return ((u >> 20) & 1) << 31 | ((u >> 1) & 0x3ff) << 21 | ((u >> 11) & 1) << 20 |
         ((u >> 12) & 0xff) << 12 | rd << 7 | 0x6f;
}
static uint32_t enc_csrr(unsigned rd, unsigned csr) { return enc_i((int32_t)csr, 0, 2, rd, 0x73); }
static uint32_t enc_csrw(unsigned csr, unsigned rs1) {
  return enc_i((int32_t)csr, rs1, 1, 0, 0x73);
}

/* compressed (rd'/rs' are x8..x15) */
static uint16_t c_ci(unsigned f3, unsigned op, unsigned rd, int32_t imm6) {
  uint32_t u = (uint32_t)imm6;
  return (uint16_t)(f3 << 13 | ((u >> 5) & 1) << 12 | rd << 7 | (u & 0x1f) << 2 | op);
}
static uint16_t c_j(int32_t off) {
  uint32_t u = (uint32_t)off;
  return (uint16_t)(5U << 13 | ((u >> 11) & 1) << 12 | ((u >> 4) & 1) << 11 | ((u >> 8) & 3) << 9 |
                    ((u >> 10) & 1) << 8 | ((u >> 6) & 1) << 7 | ((u >> 7) & 1) << 6 |
                    ((u >> 1) & 7) << 3 | ((u >> 5) & 1) << 2 | 1);
}
static uint16_t c_bz(bool nez, unsigned rs1, int32_t off) {
  uint32_t u = (uint32_t)off;
  return (uint16_t)((nez ? 7U : 6U) << 13 | ((u >> 8) & 1) << 12 | ((u >> 3) & 3) << 10 |
                    (rs1 - 8) << 7 | ((u >> 6) & 3) << 5 | ((u >> 1) & 3) << 3 |
                    ((u >> 5) & 1) << 2 | 1);
}
/* c.lw/c.ld/c.sw/c.sd: f3 2, 3, 6, 7; off a multiple of the size, below 128 (256 for 8) */
static uint16_t c_ls(unsigned f3, unsigned rs1, unsigned r, unsigned off) {
  unsigned lo = (f3 & 1) ? ((off >> 6) & 3) << 5 : (((off >> 2) & 1) << 6 | ((off >> 6) & 1) << 5);
  return (uint16_t)(f3 << 13 | ((off >> 3) & 7) << 10 | (rs1 - 8) << 7 | lo | (r - 8) << 2);
}
/* c.lwsp/c.ldsp (f3 2, 3) and c.swsp/c.sdsp (f3 6, 7) */
static uint16_t c_sp(unsigned f3, unsigned r, unsigned off) {
  switch (f3) {
  case 2:
    return (uint16_t)(2U << 13 | ((off >> 5) & 1) << 12 | r << 7 | ((off >> 2) & 7) << 4 |
                      ((off >> 6) & 3) << 2 | 2);
  case 3:
    return (uint16_t)(3U << 13 | ((off >> 5) & 1) << 12 | r << 7 | ((off >> 3) & 3) << 5 |
                      ((off >> 6) & 7) << 2 | 2);
  case 6:
    return (uint16_t)(6U << 13 | ((off >> 2) & 0xf) << 9 | ((off >> 6) & 3) << 7 | r << 2 | 2);
  default:
    return (uint16_t)(7U << 13 | ((off >> 3) & 7) << 10 | ((off >> 6) & 7) << 7 | r << 2 | 2);
  }
}

/* ---------------------------------------------------------------- the program generator */

static uint64_t rng_next(uint64_t *s) { /* splitmix64 */
  uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

enum prog_kind { KIND_LINE, KIND_M, KIND_S, KIND_VS };
/* S and VS programs run with paging at VA_BASE */
static bool paged(enum prog_kind k) { return k == KIND_S || k == KIND_VS; }

typedef struct gen {
  uint64_t rng;
  enum prog_kind kind;
  uint8_t *img;      /* the RAM image */
  uint64_t at;       /* where the next instruction goes (offset in RAM) */
  uint64_t code_end; /* offset where code must stop */
  uint64_t view;     /* the address the program sees for RAM offset 0 */
  const struct rv_icache *dec;
  uint64_t data; /* x31's value */
  bool in_loop;
  uint64_t loop_alu[16]; /* 4-byte ALU instructions of the current loop body (offsets) */
  unsigned n_loop_alu;
  struct hole {
    uint64_t at, size;
  } holes[16];
  unsigned n_holes;
  unsigned insns;
} gen;

static unsigned rnd(gen *g, unsigned n) { return (unsigned)(rng_next(&g->rng) % n); }
static bool chance(gen *g, unsigned percent) { return rnd(g, 100) < percent; }
static uint64_t pc_of(const gen *g, uint64_t at) { return g->view + at; }

static void put32(gen *g, uint32_t v) {
  rv_insn d;
  rv_decode(g->dec, v, &d);
  if (d.fn == rv_illegal)
    TAP_FAIL("generator: 0x%08x does not decode", v);
  memcpy(g->img + g->at, &v, 4);
  g->at += 4;
  g->insns++;
}
static void put16(gen *g, uint16_t v) {
  if (rv_expand_compressed(v) == 0)
    TAP_FAIL("generator: compressed 0x%04x does not expand", v);
  memcpy(g->img + g->at, &v, 2);
  g->at += 2;
  g->insns++;
}
static void put_raw32(gen *g, uint32_t v) { /* may be illegal on purpose */
  memcpy(g->img + g->at, &v, 4);
  g->at += 4;
  g->insns++;
}

/* registers: random instructions write x1..x26; x27 counts loops; x28/x29 belong to the trap
 * handler; x30 points at special places (devices, holes, code), x31 into the data pages */
enum { R_LOOP = 27, R_SPECIAL = 30, R_DATA = 31 };
static unsigned rd_any(gen *g) { return 1 + rnd(g, 26); }
static unsigned rs_any(gen *g) { return rnd(g, 32); }
static unsigned rc_any(gen *g) { return 8 + rnd(g, 8); } /* x8..x15 */

static const uint64_t edge_values[] = {0,
                                       1,
                                       UINT64_MAX,
                                       0x8000000000000000ULL,
                                       0x7fffffffffffffffULL,
                                       0x7fffffff,
                                       0x80000000,
                                       0xffffffff,
                                       0xffffffff80000000ULL,
                                       0x100000000ULL,
                                       31,
                                       32,
                                       33,
                                       63,
                                       64,
                                       0xfff,
                                       0x800,
                                       0xfffffffffffff800ULL,
                                       RAM_BASE + PAGE_DATA * 4096ULL + 0x800,
                                       0x8080808080808080ULL};

static uint64_t rnd_value(gen *g) {
  switch (rnd(g, 4)) {
  case 0:
    return edge_values[rnd(g, sizeof(edge_values) / sizeof(edge_values[0]))];
  case 1:
    return (uint64_t)(int64_t)(int32_t)(rnd(g, 4096) - 2048);
  default:
    return rng_next(&g->rng);
  }
}
static int32_t rnd_imm12(gen *g) {
  if (chance(g, 20))
    return chance(g, 50) ? 2047 : -2048;
  return (int32_t)rnd(g, 4096) - 2048;
}

/* 4-byte register-to-register ALU operations the translator inlines (RV_ALU_R_OPS), and
 * handler-called ones (M, Zba, Zbb) */
static const uint32_t alu_r_inline[][3] = {
    /* f7, f3, opcode */
    {0, 0, 0x33}, {0x20, 0, 0x33}, {0, 1, 0x33},    {0, 2, 0x33}, {0, 3, 0x33}, {0, 4, 0x33},
    {0, 5, 0x33}, {0x20, 5, 0x33}, {0, 6, 0x33},    {0, 7, 0x33}, {0, 0, 0x3b}, {0x20, 0, 0x3b},
    {0, 1, 0x3b}, {0, 5, 0x3b},    {0x20, 5, 0x3b}, {1, 0, 0x33}, {1, 0, 0x3b},
};
static const uint32_t alu_r_handler[][3] = {
    {1, 1, 0x33},    {1, 2, 0x33},    {1, 3, 0x33},    {1, 4, 0x33},    {1, 5, 0x33},
    {1, 6, 0x33},    {1, 7, 0x33},    {1, 4, 0x3b},    {1, 5, 0x3b},    {1, 6, 0x3b},
    {1, 7, 0x3b},    {0x10, 2, 0x33}, {0x10, 4, 0x33}, {0x10, 6, 0x33}, {0x04, 0, 0x3b},
    {0x10, 2, 0x3b}, {0x10, 4, 0x3b}, {0x10, 6, 0x3b}, {0x20, 7, 0x33}, {0x20, 6, 0x33},
    {0x20, 4, 0x33}, {0x05, 6, 0x33}, {0x05, 7, 0x33}, {0x05, 4, 0x33}, {0x05, 5, 0x33},
    {0x30, 1, 0x33}, {0x30, 5, 0x33}, {0x30, 1, 0x3b}, {0x30, 5, 0x3b},
};

/* A random inline ALU instruction (4 bytes): what self-modifying stores write, too. */
static uint32_t rnd_alu32(gen *g, unsigned rd) {
  switch (rnd(g, 6)) {
  case 0:
  case 1: {
    const uint32_t *o = alu_r_inline[rnd(g, sizeof(alu_r_inline) / sizeof(alu_r_inline[0]))];
    return enc_r(o[0], rs_any(g), rs_any(g), o[1], rd, o[2]);
  }
  case 2: { /* shifts by an immediate, all counts */
    static const unsigned f3s[] = {1, 5, 5};
    unsigned k = rnd(g, 3);
    if (chance(g, 50)) /* 64-bit */
      return enc_i((int32_t)((k == 2 ? 0x400U : 0) | rnd(g, 64)), rs_any(g), f3s[k], rd, 0x13);
    return enc_i((int32_t)((k == 2 ? 0x400U : 0) | rnd(g, 32)), rs_any(g), f3s[k], rd, 0x1b);
  }
  case 3: {
    static const unsigned f3s[] = {0, 2, 3, 4, 6, 7};
    return enc_i(rnd_imm12(g), rs_any(g), f3s[rnd(g, 6)], rd, 0x13);
  }
  case 4:
    return chance(g, 50) ? enc_i(rnd_imm12(g), rs_any(g), 0, rd, 0x1b)   /* addiw */
                         : enc_u((uint32_t)rng_next(&g->rng), rd, 0x37); /* lui */
  default:
    return enc_u((uint32_t)rng_next(&g->rng), rd, 0x17); /* auipc */
  }
}

static uint32_t rnd_handler32(gen *g, unsigned rd) {
  switch (rnd(g, 4)) {
  case 0:
  case 1: {
    const uint32_t *o = alu_r_handler[rnd(g, sizeof(alu_r_handler) / sizeof(alu_r_handler[0]))];
    return enc_r(o[0], rs_any(g), rs_any(g), o[1], rd, o[2]);
  }
  case 2: { /* Zbb unary and immediate forms */
    static const uint32_t un[][3] = {
        {0x600, 1, 0x13}, {0x601, 1, 0x13}, {0x602, 1, 0x13}, {0x604, 1, 0x13},
        {0x605, 1, 0x13}, {0x600, 1, 0x1b}, {0x601, 1, 0x1b}, {0x602, 1, 0x1b},
        {0x287, 5, 0x13}, {0x6b8, 5, 0x13}, {0x080, 4, 0x3b}, /* zext.h */
    };
    unsigned k = rnd(g, 14);
    if (k == 11)
      return enc_i((int32_t)(0x600U | rnd(g, 64)), rs_any(g), 5, rd, 0x13); /* rori */
    if (k == 12)
      return enc_i((int32_t)(0x600U | rnd(g, 32)), rs_any(g), 5, rd, 0x1b); /* roriw */
    if (k == 13)
      return enc_i((int32_t)(0x080U | rnd(g, 64)), rs_any(g), 1, rd, 0x1b); /* slli.uw */
    return enc_i((int32_t)un[k][0], rs_any(g), un[k][1], rd, un[k][2]);
  }
  default: { /* counters and a few CSRs (some trap in S-mode) */
    static const unsigned csrs[] = {0xb02, 0xc02, 0xb00, 0xc00, 0xc01, 0x300, 0x100, 0xf14};
    return enc_csrr(rd, csrs[rnd(g, sizeof(csrs) / sizeof(csrs[0]))]);
  }
  }
}

/* addi rd, base, off */
static void put_addr(gen *g, unsigned rd, unsigned base, int32_t off) {
  put32(g, enc_i(off, base, 0, rd, 0x13));
}

/* A load or store of random kind through base + off. */
static void put_mem(gen *g, unsigned base, int32_t off) {
  if (chance(g, 50)) {
    static const unsigned f3s[] = {0, 1, 2, 3, 4, 5, 6};
    put32(g, enc_i(off, base, f3s[rnd(g, 7)], rd_any(g), 0x03));
  } else {
    put32(g, enc_s(off, rs_any(g), base, rnd(g, 4), 0x23));
  }
}

static void put_special_base(gen *g);

/* A register other than `not` (and than x27..x31) for an ALU result. */
static unsigned rd_other(gen *g, unsigned not ) {
  unsigned rd = rd_any(g);
  return rd == not ? rd % 26 + 1 : rd;
}

/* Loads (or stores) through one base register, as memcpy, memset and the kernel's crypto code do:
 * the translator checks the first for the bytes of all (a group, jit.c's plan_groups) and the rest
 * only for that check's result. The base: the data pointer, a special place (a device, a page
 * boundary, nothing, code, a read-only page, a page whose walk sets A and D) or a register of its
 * own (x8..x15 sometimes, for compressed forms); offsets in a row, mixed or around a page end;
 * inline ALU operations between them and addi of the base to itself (which the group spans), and
 * what ends a group: the base written otherwise (addiw, a load into it), an access of the other
 * kind or through another register, a handler call. */
static void put_mem_group(gen *g) {
  unsigned base = R_DATA;
  unsigned k = rnd(g, 100);
  int32_t moved = 0; /* the base's value less x31's */
  if (k < 30) {
    put_special_base(g);
    base = R_SPECIAL;
  } else if (k < 55) {
    base = chance(g, 50) ? rc_any(g) : rd_any(g);
    moved = (int32_t)rnd(g, 256) - 128;
    put_addr(g, base, R_DATA, moved);
  }
  bool store = chance(g, 50);
  unsigned n = 2 + rnd(g, 8);
  unsigned stride = 1U << rnd(g, 4);
  int32_t off = chance(g, 50) ? (int32_t)rnd(g, 64) - 32 : rnd_imm12(g);
  if (base != R_SPECIAL && chance(g, 25)) { /* around a page end: the bytes leave the page */
    int32_t in_page = (int32_t)((g->data + (uint64_t)(int64_t)moved) % 4096);
    off = (in_page >= 2048 ? 4096 - in_page : -in_page) - (int32_t)(n * stride / 2);
  }
  for (unsigned i = 0; i < n; i++) {
    int32_t o = chance(g, 80) ? off + (int32_t)(i * stride) : off + (int32_t)rnd(g, 128) - 64;
    if (o < -2048 || o > 2047)
      o = off;
    bool compressed = base >= 8 && base <= 15 && o >= 0 && chance(g, 40);
    if (compressed) {
      bool wide = chance(g, 50);
      unsigned co = (unsigned)o & (wide ? 0xf8U : 0x7cU);
      unsigned f3 = (store ? 6U : 2U) + (wide ? 1U : 0U);
      unsigned r = rc_any(g);
      if (!store && r == base && chance(g, 70))
        r = base == 15 ? 8 : base + 1;
      put16(g, c_ls(f3, base, r, co));
    } else if (store) {
      put32(g, enc_s(o, rs_any(g), base, rnd(g, 4), 0x23));
    } else {
      /* a load into the base itself ends the group (rarely: the base moves) */
      unsigned rd = base != R_DATA && chance(g, 8) ? base : rd_other(g, base);
      put32(g, enc_i(o, base, rnd(g, 7), rd, 0x03));
    }
    unsigned between = rnd(g, 100);
    if (between < 25) {
      put32(g, rnd_alu32(g, rd_other(g, base)));
    } else if (between < 30 && base != R_DATA) { /* the pointer moves (the group goes on) */
      int32_t by = (int32_t)rnd(g, 33) - 16;
      if (chance(g, 50) && by)
        put16(g, c_ci(0, 1, base, by)); /* c.addi */
      else
        put32(g, enc_i(by, base, 0, base, 0x13)); /* addi */
    } else if (between < 31 && base != R_DATA) {  /* another write of the base: the group ends */
      put32(g, enc_i((int32_t)rnd(g, 33) - 16, base, 0, base, 0x1b)); /* addiw */
    } else if (between < 34) {
      put_mem(g, chance(g, 50) ? base : R_DATA, rnd_imm12(g) & ~7);
    } else if (between < 36) {
      put32(g, rnd_handler32(g, rd_other(g, base)));
    }
  }
}

/* x30 := somewhere special: a device, an edge of RAM, nothing, code, a page boundary */
static void put_special_base(gen *g) {
  uint64_t target;
  unsigned k = rnd(g, paged(g->kind) ? 8 : 7);
  switch (k) {
  case 0:
    target = MMIO_BASE + 8 * rnd(g, 256) + (chance(g, 20) ? rnd(g, 8) : 0);
    if (paged(g->kind))
      target = VA_BASE + VPAGE_MMIO * 4096ULL + (target - MMIO_BASE);
    break;
  case 1:
    target = MMIO_IRQ;
    if (paged(g->kind))
      target = VA_BASE + VPAGE_MMIO * 4096ULL + 0x800;
    break;
  case 2: /* the end of RAM (S: an unmapped page) */
    target = pc_of(g, RAM_SIZE - 4);
    break;
  case 3: /* before RAM (S: unmapped) and nowhere */
    target = chance(g, 50) ? g->view - 32 : 0x90000000ULL;
    break;
  case 4: /* code: probably code that already ran or is about to */
    target = pc_of(g, PAGE_CODE * 4096ULL + rnd(g, CODE_PAGES * 4096));
    if (paged(g->kind) && chance(g, 50))
      target += (VPAGE_ALIAS - PAGE_CODE) * 4096ULL; /* through another mapping */
    break;
  case 5: /* a page boundary in the data */
    target = pc_of(g, (PAGE_DATA + 1 + rnd(g, DATA_PAGES - 1)) * 4096ULL);
    break;
  case 6: /* S: the read-only data page, M: the spare page */
    target = pc_of(g, (paged(g->kind) ? PAGE_DATA + DATA_PAGES - 1 : PAGE_SPARE) * 4096ULL +
                          rnd(g, 4096));
    break;
  default: /* S: the data page whose PTE has A and D clear */
    target = pc_of(g, (PAGE_DATA + 1) * 4096ULL + rnd(g, 4096));
    break;
  }
  /* li x30, target: auipc from here, so it works at any view */
  int64_t rel = (int64_t)(target - pc_of(g, g->at));
  int32_t lo = (int32_t)((uint32_t)rel << 20) >> 20;
  put32(g, enc_u((uint32_t)(rel - lo), R_SPECIAL, 0x17));
  put_addr(g, R_SPECIAL, R_SPECIAL, lo);
}

static void put_amo(gen *g) {
  unsigned rt = rd_any(g);
  unsigned size = chance(g, 50) ? 8 : 4;
  int32_t off = (int32_t)(rnd(g, 256) * size) - 1024;
  if (chance(g, 10))
    off += 2; /* misaligned: a trap */
  put_addr(g, rt, R_DATA, off);
  static const unsigned f5s[] = {0, 1, 4, 0xc, 8, 0x10, 0x14, 0x18, 0x1c, 2, 3};
  unsigned f5 = f5s[rnd(g, 11)];
  unsigned rs2 = f5 == 2 ? 0 : rs_any(g);
  put32(g, enc_r(f5 << 2 | rnd(g, 4), rs2, rt, size == 8 ? 3 : 2, rd_any(g), 0x2f));
}

static void put_fp(gen *g) {
  unsigned f1 = rnd(g, 32), f2 = rnd(g, 32), f3 = rnd(g, 32);
  switch (rnd(g, 5)) {
  case 0:
    put32(g, enc_r(0x79, 0, rs_any(g), 0, f1, 0x53)); /* fmv.d.x */
    break;
  case 1:
    put32(g, enc_r(0x71, 0, f1, 0, rd_any(g), 0x53)); /* fmv.x.d */
    break;
  case 2:
    put32(g, enc_r(chance(g, 50) ? 0x01 : 0x09, f2, f3, 0, f1, 0x53)); /* fadd.d/fmul.d, rne */
    break;
  case 3:
    put32(g, enc_r(0x61, 2, f1, 1, rd_any(g), 0x53)); /* fcvt.l.d, rtz */
    break;
  default:
    put32(g, enc_r(0x69, 2, rs_any(g), 0, f1, 0x53)); /* fcvt.d.l */
    break;
  }
}

static void put_compressed(gen *g) {
  unsigned r = rd_any(g);
  switch (rnd(g, 12)) {
  case 0: { /* c.addi, c.addiw, c.li */
    static const unsigned f3s[] = {0, 1, 2};
    int32_t imm = (int32_t)rnd(g, 64) - 32;
    unsigned f3 = f3s[rnd(g, 3)];
    put16(g, c_ci(f3, 1, r, f3 == 0 && imm == 0 ? 1 : imm));
    break;
  }
  case 1: { /* c.lui (rd not x2), c.slli */
    if (chance(g, 50)) {
      int32_t imm = (int32_t)rnd(g, 63) - 32;
      put16(g, c_ci(3, 1, r == 2 ? 3 : r, imm >= 0 ? imm + 1 : imm));
    } else {
      put16(g, c_ci(0, 2, r, (int32_t)(1 + rnd(g, 63))));
    }
    break;
  }
  case 2: { /* c.srli, c.srai, c.andi */
    unsigned k = rnd(g, 3), rc = rc_any(g);
    int32_t imm = k == 2 ? (int32_t)rnd(g, 64) - 32 : (int32_t)(1 + rnd(g, 63));
    uint32_t u = (uint32_t)imm;
    put16(g, (uint16_t)(4U << 13 | ((u >> 5) & 1) << 12 | k << 10 | (rc - 8) << 7 |
                        (u & 0x1f) << 2 | 1));
    break;
  }
  case 3: { /* c.sub, c.xor, c.or, c.and, c.subw, c.addw */
    unsigned k = rnd(g, 6), rc = rc_any(g), rs = rc_any(g);
    unsigned f6 = k < 4 ? 0x23 : 0x27, f2 = k < 4 ? k : k - 4;
    put16(g, (uint16_t)(f6 << 10 | (rc - 8) << 7 | f2 << 5 | (rs - 8) << 2 | 1));
    break;
  }
  case 4: /* c.mv, c.add */
    put16(g, (uint16_t)((chance(g, 50) ? 0x8U : 0x9U) << 12 | r << 7 | (1 + rnd(g, 31)) << 2 | 2));
    break;
  case 5:
  case 6: { /* c.lw, c.ld, c.sw, c.sd through x8..x15 set from the data pointer */
    unsigned base = rc_any(g), f3 = chance(g, 50) ? 2 + rnd(g, 2) : 6 + rnd(g, 2);
    unsigned off = (f3 & 1) ? 8 * rnd(g, 32) : 4 * rnd(g, 32);
    put_addr(g, base, R_DATA, (int32_t)(rnd(g, 2048) & ~1U) - 1024 - (chance(g, 10) ? 1 : 0));
    put16(g, c_ls(f3, base, rc_any(g), off));
    break;
  }
  case 7: { /* c.lwsp, c.ldsp, c.swsp, c.sdsp */
    unsigned f3 = chance(g, 50) ? 2 + rnd(g, 2) : 6 + rnd(g, 2);
    unsigned off = (f3 & 1) ? 8 * rnd(g, 64) : 4 * rnd(g, 64);
    put_addr(g, 2, R_DATA, (int32_t)rnd(g, 1024) - 2048);
    put16(g, c_sp(f3, f3 < 6 ? r : rnd(g, 32), off));
    break;
  }
  default:
    put16(g, 0x0001); /* c.nop */
    break;
  }
}

/* A few instructions on three registers (x5-x7), or on twelve (more than the translator keeps
 * in host registers): a block that uses registers this often keeps them in host registers, so
 * loads into them (slow paths on a TLB miss, page straddles and faults included), stores of them,
 * handler calls between their uses and inline ALU operations computed in place (rd the same as
 * rs1 or rs2, or neither) are all exercised. */
static void put_hot_run(gen *g) {
  static const unsigned hot[] = {5, 6, 7, 8, 9, 18, 19, 20, 21, 22, 23, 24};
  unsigned k = chance(g, 50) ? 3 : 12;
  for (unsigned n = 3 + rnd(g, k == 3 ? 6 : 24); n--;) {
    unsigned rd = hot[rnd(g, k)], a = hot[rnd(g, k)], b = hot[rnd(g, k)];
    switch (rnd(g, 8)) {
    case 7: { /* rotate rd = a by two shifts (into b and rd) and an or, which the translator
                 fuses into one ror; sometimes almost a rotate (amounts, registers) */
      bool word = chance(g, 50);
      unsigned bits = word ? 32 : 64, right = 1 + rnd(g, bits - 1);
      unsigned left = chance(g, 85) ? bits - right : rnd(g, bits);
      uint32_t op = word ? 0x1b : 0x13;
      uint32_t shl = enc_i((int32_t)left, a, 1, b, op), shr = enc_i((int32_t)right, a, 5, rd, op);
      bool shl_first = chance(g, 50);
      put32(g, shl_first ? shl : shr);
      if (chance(g, 30)) /* between the shifts or after them: may change x or a shift's result */
        put32(g, rnd_alu32(g, hot[rnd(g, k)]));
      put32(g, shl_first ? shr : shl);
      if (chance(g, 30))
        put32(g, chance(g, 50) ? rnd_alu32(g, hot[rnd(g, k)])
                               : enc_i(rnd_imm12(g), R_DATA, 2, hot[rnd(g, k)], 0x03));
      unsigned to = chance(g, 80) ? rd : hot[rnd(g, k)]; /* or into the right shift's register */
      put32(g, chance(g, 50) ? enc_r(0, b, rd, 6, to, 0x33) : enc_r(0, rd, b, 6, to, 0x33));
      break;
    }
    case 5: { /* any inline register-register operation */
      const uint32_t *o = alu_r_inline[rnd(g, sizeof(alu_r_inline) / sizeof(alu_r_inline[0]))];
      put32(g, enc_r(o[0], b, a, o[1], rd, o[2]));
      break;
    }
    case 6: { /* an inline operation with an immediate (rs1 from the hot set) */
      uint32_t i = rnd_alu32(g, rd);
      put32(g, (i & 0x7f) == 0x17 || (i & 0x7f) == 0x37 ? i : (i & ~(31U << 15)) | (a << 15));
      break;
    }
    case 0:
      put32(g, enc_i(rnd_imm12(g), R_DATA, rnd(g, 7), rd, 0x03)); /* a load of any size */
      break;
    case 1:
      put32(g, enc_s(rnd_imm12(g), a, R_DATA, rnd(g, 4), 0x23));
      break;
    case 2:
      put32(g, rnd_handler32(g, rd));
      break;
    default:
      put32(g, enc_r(chance(g, 50) ? 0x20 : 0, b, a, 0, rd, 0x33)); /* add, sub */
      break;
    }
  }
}

/* Another address space with the same page tables: satp's ASID bit 0 flips (csrr, li 1 << 44,
 * xor, csrw). The TLB and the jump cache find global pages (put_page_tables) under either ASID's
 * tag, the others under their own. */
static void put_asid_switch(gen *g) {
  unsigned rt = rd_any(g), ru = rd_any(g);
  if (ru == rt)
    ru = rt % 26 + 1;
  put32(g, enc_csrr(rt, 0x180));
  put32(g, enc_i(1, 0, 0, ru, 0x13));
  put32(g, enc_i(44, ru, 1, ru, 0x13));    /* slli */
  put32(g, enc_r(0, ru, rt, 4, rt, 0x33)); /* xor */
  put32(g, enc_csrw(0x180, rt));
}

/* One instruction (or a short sequence) that does not transfer control. */
static void put_simple(gen *g, bool line_only) {
  unsigned k = rnd(g, 100);
  if (k < 30) {
    put32(g, rnd_alu32(g, chance(g, 3) ? 0 : rd_any(g)));
  } else if (k < 40) {
    put32(g, rnd_handler32(g, rd_any(g)));
  } else if (k < 47) { /* data: anywhere around the pointer, misaligned too, across pages */
    put_mem(g, R_DATA, rnd_imm12(g));
  } else if (k < 55) {
    put_mem_group(g);
  } else if (k < 62) {
    put_special_base(g);
    for (unsigned n = 1 + rnd(g, 3); n--;)
      put_mem(g, R_SPECIAL, (int32_t)rnd(g, 33) - 16);
  } else if (k < 64) { /* wherever a register points: mostly a fault */
    put_mem(g, rs_any(g), rnd_imm12(g));
  } else if (k < 70) {
    put_amo(g);
  } else if (k < 82) {
    put_compressed(g);
  } else if (k < 86) {
    put_fp(g);
  } else if (k < 89 && !line_only) {
    static const uint32_t sys[] = {
        0x00000073, /* ecall */
        0x00100073, /* ebreak */
        0x0000100f, /* fence.i */
        0x0ff0000f, /* fence */
        0x12000073, /* sfence.vma */
    };
    unsigned s = rnd(g, 7);
    if (s == 5)
      put_raw32(g, chance(g, 50) ? 0 : 0xffffffff); /* illegal */
    else if (s == 6)
      put_asid_switch(g);
    else
      put32(g, sys[s]);
  } else if (k < 95) {
    put_hot_run(g);
  } else {
    put32(g, enc_i(rnd_imm12(g), rs_any(g), 0, rd_any(g), 0x13));
  }
}

static void put_simple_run(gen *g, unsigned n, bool line_only) {
  while (n--) {
    if (g->in_loop && chance(g, 30) && g->n_loop_alu < 16) {
      g->loop_alu[g->n_loop_alu++] = g->at;
      put32(g, rnd_alu32(g, rd_any(g)));
    } else {
      put_simple(g, line_only);
    }
  }
}

/* li rd, v (32-bit value, sign-extended) */
static void put_li32(gen *g, unsigned rd, uint32_t v) {
  int32_t lo = (int32_t)(v << 20) >> 20;
  put32(g, enc_u(v - (uint32_t)lo, rd, 0x37));
  put32(g, enc_i(lo, rd, 0, rd, 0x1b));
}

/* Self-modifying code: store a new instruction over one that runs later in this block (ahead),
 * or over one of the loop body that already ran (behind). */
static void put_smc(gen *g, bool behind) {
  unsigned rv = rd_any(g), ra = rd_any(g);
  uint32_t insn = rnd_alu32(g, rd_any(g));
  put_li32(g, rv, insn);
  uint64_t auipc_at = g->at;
  put32(g, enc_u(0, ra, 0x17));
  if (behind) {
    uint64_t target = g->loop_alu[rnd(g, g->n_loop_alu)];
    put32(g, enc_s((int32_t)(target - auipc_at), rv, ra, 2, 0x23));
    return;
  }
  unsigned k = rnd(g, 4);
  put32(g, enc_s((int32_t)(8 + 4 * k), rv, ra, 2, 0x23));
  while (k--)
    put32(g, rnd_alu32(g, rd_any(g)));
  put32(g, rnd_alu32(g, rd_any(g))); /* the one replaced */
}

/* A forward branch over a few instructions (taken or not as the registers say). */
static void put_forward_branch(gen *g) {
  uint64_t at = g->at;
  bool compressed = chance(g, 25);
  if (compressed)
    put16(g, 0x0001);
  else
    put32(g, enc_i(0, 0, 0, 0, 0x13)); /* placeholder */
  put_simple_run(g, rnd(g, 6), true);
  int32_t off = (int32_t)(g->at - at);
  uint64_t save = g->at;
  g->at = at;
  g->insns--;
  if (compressed) {
    put16(g, chance(g, 25) ? c_j(off) : c_bz(chance(g, 50), rc_any(g), off));
  } else if (chance(g, 15)) {
    put32(g, enc_j(off, chance(g, 50) ? 0 : rd_any(g))); /* jal */
  } else {
    static const unsigned f3s[] = {0, 1, 4, 5, 6, 7};
    put32(g, enc_b(off, rs_any(g), rs_any(g), f3s[rnd(g, 6)]));
  }
  g->at = save;
}

static void put_loop(gen *g) {
  unsigned count = 1 + rnd(g, 12);
  put32(g, enc_i((int32_t)count, 0, 0, R_LOOP, 0x13));
  uint64_t top = g->at;
  g->in_loop = true;
  g->n_loop_alu = 0;
  /* only hot runs: often one block that branches back to its own start, which the translator
   * runs as a loop with the registers it keeps in host registers */
  bool tight = chance(g, 25);
  for (unsigned n = 1 + rnd(g, tight ? 3 : 5); n--;) {
    unsigned k = tight ? 9 : rnd(g, 10);
    if (k == 9)
      put_hot_run(g);
    else if (k < 2)
      put_forward_branch(g);
    else if (k < 3)
      put_smc(g, false);
    else if (k < 5 && g->n_loop_alu)
      put_smc(g, true);
    else
      put_simple_run(g, 1 + rnd(g, 4), true);
  }
  g->in_loop = false;
  put32(g, enc_i(-1, R_LOOP, 0, R_LOOP, 0x13));
  if (chance(g, 20)) {
    put32(g, enc_b((int32_t)(top - g->at), 0, R_LOOP, 4)); /* blt x0, x27 */
  } else {
    put32(g, enc_b((int32_t)(top - g->at), R_LOOP, 0, 1)); /* bne x27, x0 */
  }
}

/* jump to dest (any distance within RAM): jal, or auipc + jalr (a computed jump) */
static void put_jump_to(gen *g, uint64_t dest) {
  int64_t rel = (int64_t)(dest - g->at);
  if (chance(g, 50)) {
    put32(g, enc_j((int32_t)rel, chance(g, 50) ? 0 : rd_any(g)));
    return;
  }
  unsigned rt = rd_any(g);
  int32_t lo = (int32_t)((uint32_t)rel << 20) >> 20;
  put32(g, enc_u((uint32_t)(rel - lo), rt, 0x17));
  put32(g, enc_i(lo, rt, 0, chance(g, 50) ? 0 : rd_any(g), 0x67));
}

/* Leave a hole: jump some way ahead (often into another page); the hole may get code later. */
static void put_far_jump(gen *g) {
  uint64_t gap = 64 + 2 * rnd(g, 1400);
  if (g->at + 8 + gap + 1024 > g->code_end)
    return;
  uint64_t here = g->at;
  put_jump_to(g, here + 8 + gap);
  while (g->at < here + 8) /* the jump took 4 or 8 bytes */
    put16(g, 0x0001);
  if (g->n_holes < 16)
    g->holes[g->n_holes++] = (struct hole){g->at, gap};
  g->at += gap;
}

/* Jump back into a hole, run a little there, come back. */
static void put_back_jump(gen *g) {
  if (!g->n_holes)
    return;
  struct hole *h = &g->holes[rnd(g, g->n_holes)];
  if (h->size < 64)
    return;
  uint64_t site = g->at;
  put_jump_to(g, h->at);
  uint64_t ret = g->at;
  g->at = h->at;
  unsigned before = g->insns;
  while (g->at + 40 < h->at + h->size && g->insns - before < 6)
    put_simple(g, true);
  put_jump_to(g, ret);
  uint64_t used = g->at - h->at;
  h->at += used;
  h->size -= used;
  g->at = ret;
  (void)site;
}

/* The trap handler at RAM offset 0: skip the instruction that trapped (2 or 4 bytes), or after a
 * fetch fault go to the end. M-mode or S-mode CSRs as the program runs. */
static void put_handler(gen *g, bool s) {
  unsigned cause = s ? 0x142 : 0x342, epc = s ? 0x141 : 0x341, scratch = s ? 0x140 : 0x340;
  uint32_t ret = s ? 0x10200073 : 0x30200073;
  g->at = 0;
  put32(g, enc_csrr(28, cause));
  put32(g, enc_i(1, 0, 0, 29, 0x13));
  put32(g, enc_b(4 * 12, 28, 29, 0)); /* beq -> fetch */
  put32(g, enc_i(12, 0, 0, 29, 0x13));
  put32(g, enc_b(4 * 10, 28, 29, 0));
  put32(g, enc_csrr(28, epc));
  put32(g, enc_i(0, 28, 5, 29, 0x03)); /* lhu x29, 0(x28) */
  put32(g, enc_i(3, 29, 7, 29, 0x13));
  put32(g, enc_i(2, 28, 0, 28, 0x13));
  put32(g, enc_i(-3, 29, 0, 29, 0x13));
  put32(g, enc_b(8, 29, 0, 1)); /* bne x29, x0, +8 */
  put32(g, enc_i(2, 28, 0, 28, 0x13));
  put32(g, enc_csrw(epc, 28));
  put32(g, ret);
  /* fetch: */
  put32(g, enc_csrr(28, scratch));
  put32(g, enc_csrw(epc, 28));
  put32(g, ret);
  /* the end: wfi; j . */
  g->at = PAGE_END * 4096;
  put32(g, 0x10500073);
  put32(g, enc_j(-4, 0));
}

static void put_page_tables(uint8_t *img) {
  uint64_t *root = (uint64_t *)(img + PAGE_PT * 4096ULL);
  uint64_t *l1 = root + 512, *l0 = root + 1024;
  const uint64_t V = 1, R = 2, W = 4, X = 8, G = 32, A = 64, D = 128;
  uint64_t ram_ppn = RAM_BASE >> 12;
  root[VA_BASE >> 30] = ((ram_ppn + PAGE_PT + 1) << 10) | V;
  l1[0] = ((ram_ppn + PAGE_PT + 2) << 10) | V;
  /* RAM's pages are global mappings (as Linux maps the kernel), the aliases are not */
  for (unsigned i = 0; i <= PAGE_SPARE; i++)
    l0[i] = ((ram_ppn + i) << 10) | V | R | W | X | G | A | D;
  l0[PAGE_DATA + DATA_PAGES - 1] &= ~W;     /* read-only: stores fault */
  l0[PAGE_DATA + 1] &= ~(A | D);            /* the walk sets A and D */
  l0[PAGE_SPARE] = 0;                       /* unmapped */
  for (unsigned i = 0; i < CODE_PAGES; i++) /* code seen twice */
    l0[VPAGE_ALIAS + i] = ((ram_ppn + PAGE_CODE + i) << 10) | V | R | W | X | A | D;
  l0[VPAGE_MMIO] = ((MMIO_BASE >> 12) << 10) | V | R | W | A | D;
}

/* The G stage of VS programs (Sv39x4): guest physical = host physical, RAM by 4 KiB pages (all
 * user pages, as the G stage wants), the first GiB (the device) by one superpage. */
static void put_g_stage(uint8_t *img) {
  uint64_t *root = (uint64_t *)(img + PAGE_G_ROOT * 4096ULL);
  uint64_t *l1 = (uint64_t *)(img + PAGE_G_L1 * 4096ULL);
  uint64_t *l0 = (uint64_t *)(img + PAGE_G_L0 * 4096ULL);
  const uint64_t V = 1, R = 2, W = 4, X = 8, U = 16, A = 64, D = 128;
  uint64_t ram_ppn = RAM_BASE >> 12;
  root[0] = V | R | W | U | A | D;
  root[RAM_BASE >> 30] = ((ram_ppn + PAGE_G_L1) << 10) | V;
  l1[0] = ((ram_ppn + PAGE_G_L0) << 10) | V;
  for (unsigned i = 0; i <= PAGE_SPARE; i++)
    l0[i] = ((ram_ppn + i) << 10) | V | R | W | X | U | A | D;
}

typedef struct program {
  uint8_t img[RAM_SIZE];
  enum prog_kind kind;
  uint64_t x[32];
  uint64_t entry;
  unsigned insns;
} program;

static void generate(program *p, uint64_t seed, enum prog_kind kind, const struct rv_icache *dec) {
  memset(p, 0, sizeof(*p));
  gen g = {.rng = seed * 0x2545f4914f6cdd1dULL + 1, .kind = kind, .img = p->img, .dec = dec};
  g.view = paged(kind) ? VA_BASE : RAM_BASE;
  p->kind = kind;
  put_handler(&g, paged(kind));
  if (paged(kind))
    put_page_tables(p->img);
  if (kind == KIND_VS)
    put_g_stage(p->img);
  for (uint64_t o = PAGE_DATA * 4096ULL; o < (PAGE_DATA + DATA_PAGES) * 4096ULL; o += 8) {
    uint64_t v = rnd_value(&g);
    memcpy(p->img + o, &v, 8);
  }
  for (unsigned i = 1; i < 32; i++)
    p->x[i] = rnd_value(&g);
  p->x[R_DATA] = pc_of(&g, (PAGE_DATA + 1 + rnd(&g, DATA_PAGES - 2)) * 4096ULL + rnd(&g, 4096));
  g.data = p->x[R_DATA];
  g.at = PAGE_CODE * 4096ULL + 2 * rnd(&g, 64);
  g.code_end = (PAGE_CODE + CODE_PAGES) * 4096ULL - 64;
  p->entry = pc_of(&g, g.at);
  unsigned target = kind == KIND_LINE ? 8 + rnd(&g, 120) : 20 + rnd(&g, 260);
  g.insns = 0;
  while (g.insns < target && g.at + 1024 < g.code_end) {
    if (kind == KIND_LINE) {
      put_simple(&g, true);
      continue;
    }
    unsigned k = rnd(&g, 100);
    if (k < 55)
      put_simple_run(&g, 1 + rnd(&g, 6), false);
    else if (k < 70)
      put_forward_branch(&g);
    else if (k < 80)
      put_loop(&g);
    else if (k < 86)
      put_smc(&g, false);
    else if (k < 93)
      put_far_jump(&g);
    else
      put_back_jump(&g);
  }
  put_jump_to(&g, PAGE_END * 4096ULL);
  p->insns = g.insns;
}

/* ---------------------------------------------------------------- running and comparing */

static void engine_load(engine *e, const program *p) {
  rv_hart *h = &e->hart;
  memcpy(e->bus.ram, p->img, RAM_SIZE);
  memset(e->bus.code_pages, 0, RAM_PAGES * sizeof(uint32_t));
  rv_hart_flush_icache(h); /* its blocks (and their code) go */
  e->mtime_reads = 0;
  e->mmio_reads = e->mmio_writes = e->mmio_hash = 0;
  h->check_irq = h->yield = false;
  if (p->kind == KIND_VS) {
    /* HS-mode's state, then the guest's in the vs* fields, swapped in by entering V=1 */
    rv_hart_reset(h, p->entry, RV_PRIV_S);
    h->medeleg = 0xb3ff | (1ULL << 10) | (0xfULL << 20); /* ECALL from VS, H causes: to HS */
    h->hedeleg = 0xb1ff;                                 /* and every exception it may: to VS */
    h->stvec = RAM_BASE + PAGE_END * 4096ULL;            /* HS ends the program */
    h->mtvec = RAM_BASE + PAGE_END * 4096ULL;
    h->hcounteren = 7;
    h->hgatp = (8ULL << 60) | ((RAM_BASE >> 12) + PAGE_G_ROOT);
    h->vstvec = VA_BASE;
    h->vsscratch = VA_BASE + PAGE_END * 4096ULL;
    h->vsatp = (8ULL << 60) | ((RAM_BASE >> 12) + PAGE_PT);
    h->vsstatus |= 1ULL << 13;
    h->mstatus |= 1ULL << 13;
    rv_hyp_set_virt(h, true);
  } else if (p->kind == KIND_S) {
    rv_hart_reset(h, p->entry, RV_PRIV_S);
    h->medeleg = 0xb3ff; /* every exception to the S-mode handler */
    h->stvec = VA_BASE;
    h->sscratch = VA_BASE + PAGE_END * 4096ULL;
    h->mtvec = RAM_BASE + PAGE_END * 4096ULL;
    h->satp = (8ULL << 60) | ((RAM_BASE >> 12) + PAGE_PT);
  } else {
    rv_hart_reset(h, p->entry, RV_PRIV_M);
    h->mtvec = RAM_BASE;
    h->mscratch = RAM_BASE + PAGE_END * 4096ULL;
  }
  h->mstatus |= 1ULL << 13; /* FS: initial */
  memcpy(h->x, p->x, sizeof(h->x));
  h->x[0] = 0;
  rv_hart_flush_tlb(h);
}

/* The first difference between the two machines, or NULL. */
static const char *engine_diff(const engine *a, const engine *b, char *buf, size_t len) {
  const rv_hart *x = &a->hart, *y = &b->hart;
  for (unsigned i = 0; i < 32; i++) {
    if (x->x[i] != y->x[i]) {
      snprintf(buf, len, "x%u: interp 0x%" PRIx64 " jit 0x%" PRIx64, i, x->x[i], y->x[i]);
      return buf;
    }
    if (x->f[i] != y->f[i]) {
      snprintf(buf, len, "f%u: interp 0x%" PRIx64 " jit 0x%" PRIx64, i, x->f[i], y->f[i]);
      return buf;
    }
  }
#define FIELD(f)                                                                                   \
  if ((uint64_t)x->f != (uint64_t)y->f) {                                                          \
    snprintf(buf, len, #f ": interp 0x%" PRIx64 " jit 0x%" PRIx64, (uint64_t)x->f,                 \
             (uint64_t)y->f);                                                                      \
    return buf;                                                                                    \
  }
  FIELD(pc)
  FIELD(priv)
  FIELD(minstret)
  FIELD(mcause)
  FIELD(mepc)
  FIELD(mtval)
  FIELD(scause)
  FIELD(sepc)
  FIELD(stval)
  FIELD(mstatus)
  FIELD(virt)
  FIELD(vsstatus)
  FIELD(vscause)
  FIELD(vsepc)
  FIELD(hstatus)
  FIELD(htval)
  FIELD(mtval2)
  FIELD(fflags)
  FIELD(wfi)
  FIELD(reservation_valid)
  FIELD(ext_mip)
#undef FIELD
  if (a->mmio_reads != b->mmio_reads || a->mmio_writes != b->mmio_writes ||
      a->mmio_hash != b->mmio_hash) {
    snprintf(buf, len, "devices: reads %" PRIu64 "/%" PRIu64 " writes %" PRIu64 "/%" PRIu64,
             a->mmio_reads, b->mmio_reads, a->mmio_writes, b->mmio_writes);
    return buf;
  }
  if (memcmp(a->bus.ram, b->bus.ram, RAM_SIZE) != 0) {
    size_t i = 0;
    while (a->bus.ram[i] == b->bus.ram[i])
      i++;
    snprintf(buf, len, "RAM at 0x%" PRIx64 ": interp 0x%02x jit 0x%02x", (uint64_t)(RAM_BASE + i),
             a->bus.ram[i], b->bus.ram[i]);
    return buf;
  }
  return NULL;
}

typedef struct diff_ctx {
  engine *interp, *jit;
  program *prog;
  const char *what;
  uint64_t programs, steps, insns, finished;
  uint64_t translated; /* blocks the translator turned into host code */
  uint64_t ended_virt; /* programs that ended with V=1 (in VS-mode) */
  bool verbose;
} diff_ctx;

/* Both engines in lockstep, budget instructions at a time, until both wait for an interrupt (at
 * most max_runs runs), their states compared after every run. */
static void lockstep_until_wfi(diff_ctx *c, uint64_t budget, int max_runs, unsigned pass) {
  for (int i = 0; i < max_runs && !(c->interp->hart.wfi && c->jit->hart.wfi); i++) {
    uint64_t ra = rv_hart_run(&c->interp->hart, budget);
    uint64_t rb = rv_hart_run(&c->jit->hart, budget);
    CHECK_EQ(ra, rb);
    char buf[256];
    const char *d = engine_diff(c->interp, c->jit, buf, sizeof(buf));
    if (d)
      TAP_FAIL("pass %u step %d: %s", pass, i, d);
  }
  CHECK(c->jit->hart.wfi);
}

static const uint64_t budgets[] = {1, 7, 33, 2, 100, 5, 1000, 64, 3, 4096, 17, 250};

/* Run one program on both engines; fail the test at the first difference. */
static void run_program(diff_ctx *c, uint64_t seed, enum prog_kind kind) {
  program *p = c->prog;
  generate(p, seed, kind, c->interp->hart.icache);
  engine_load(c->interp, p);
  engine_load(c->jit, p);
  uint64_t budget_rng = seed;
  uint64_t total = 0, br = rng_next(&budget_rng);
  char buf[256];
  for (unsigned step = 0; total < 20000; step++) {
    uint64_t n = (br >> (step % 16 * 4)) & 1 ? budgets[step % 12] : 1 + (br >> step % 50) % 300;
    uint64_t before = c->interp->hart.minstret, pc = c->interp->hart.pc;
    uint64_t ra = rv_hart_run(&c->interp->hart, n);
    uint64_t rb = rv_hart_run(&c->jit->hart, n);
    c->steps++;
    if (c->verbose) {
      const rv_hart *h = &c->interp->hart;
      fprintf(stderr,
              "# step %u budget %" PRIu64 ": pc 0x%" PRIx64 " ran %" PRIu64 "/%" PRIu64
              " -> pc 0x%" PRIx64 "/0x%" PRIx64 " mcause %" PRIx64 " mepc %" PRIx64
              " mtval %" PRIx64 " scause %" PRIx64 " sepc %" PRIx64 "\n",
              step, n, pc, ra, rb, h->pc, c->jit->hart.pc, h->mcause, h->mepc, h->mtval, h->scause,
              h->sepc);
    }
    const char *d = ra != rb
                        ? (snprintf(buf, sizeof(buf), "ran %" PRIu64 " vs %" PRIu64, ra, rb), buf)
                        : engine_diff(c->interp, c->jit, buf, sizeof(buf));
    if (d)
      TAP_FAIL("%s seed %" PRIu64 ": step %u (budget %" PRIu64 ") from pc 0x%" PRIx64
               ", instructions %" PRIu64 "..%" PRIu64 ": %s (JIT_DIFF_SEED=%" PRIu64
               " JIT_DIFF_KIND=%s to trace)",
               c->what, seed, step, n, pc, before, c->interp->hart.minstret, d, seed,
               kind == KIND_S    ? "s"
               : kind == KIND_VS ? "vs"
               : kind == KIND_M  ? "m"
                                 : "line");
    total += ra;
    if (ra == 0 && c->interp->hart.wfi) {
      c->finished++;
      c->ended_virt += c->interp->hart.virt;
      break;
    }
  }
  c->programs++;
  c->insns += total;
  const struct rv_icache *ic = c->jit->hart.icache;
  for (uint32_t i = 0; i < RV_BLOCK_SLOTS; i++) /* the blocks that have code now */
    c->translated += ic->blocks[i].where && rv_jit_is_code(ic->blocks[i].code);
}

/* warmup: the runs of a block in the interpreter before it is translated (rv_icache.jit_warmup);
 * 0 translates every block at its first run, so the translator runs everything the program runs */
static diff_ctx diff_open(const char *what, unsigned warmup) {
  diff_ctx c = {.what = what, .interp = engine_new(true), .jit = engine_new(false)};
  c.prog = malloc(sizeof(*c.prog));
  if (!c.prog)
    abort();
  if (!c.jit->hart.icache->jit) {
    engine_free(c.interp);
    engine_free(c.jit);
    free(c.prog);
    SKIP("no translator for this host");
  }
  c.jit->hart.icache->jit_warmup = (uint8_t)warmup;
  return c;
}

static void diff_close(diff_ctx *c) {
  printf("# %s: %" PRIu64 " programs (%" PRIu64 " reached their end), %" PRIu64 " runs, %" PRIu64
         " instructions, %" PRIu64 " blocks translated\n",
         c->what, c->programs, c->finished, c->steps, c->insns, c->translated);
  engine_free(c->interp);
  engine_free(c->jit);
  free(c->prog);
}

static void run_many(const char *what, enum prog_kind kind, uint64_t first, unsigned count,
                     unsigned warmup) {
  diff_ctx c = diff_open(what, warmup);
  for (unsigned i = 0; i < count; i++)
    run_program(&c, first + i, kind);
  CHECK_EQ(c.programs, count);
  CHECK(c.insns > count); /* the programs ran */
  /* and the translator ran them (warming up: their loops) */
  CHECK(c.translated > (warmup ? count / 4 : count));
  CHECK(c.finished > count / 2);
  if (kind == KIND_VS)
    CHECK(c.ended_virt > count / 2); /* most ran to their end in VS-mode */
  diff_close(&c);
}

/* ---------------------------------------------------------------- the tests */

TEST(encoders_match_the_decoder) {
  /* the generator's encoders against known encodings (test_cpu.c has the same) */
  CHECK_U64(c_ci(2, 1, 10, 0), 0x4501);                             /* c.li a0, 0 */
  CHECK_U64(c_ci(0, 1, 2, -16), 0x1141);                            /* c.addi sp, -16 */
  CHECK_U64(c_j(8), 0xa021);                                        /* c.j +8 */
  CHECK_U64(c_bz(false, 10, -4), 0xdd75);                           /* c.beqz a0, -4 */
  CHECK_U64(c_ls(3, 10, 12, 8), 0x6510);                            /* c.ld a2, 8(a0) */
  CHECK_U64(c_sp(7, 1, 8), 0xe406);                                 /* c.sdsp ra, 8(sp) */
  CHECK_U64(enc_i(-32, 2, 0, 2, 0x13), 0xfe010113);                 /* addi sp, sp, -32 */
  CHECK_U64(enc_s(-8, 1, 2, 3, 0x23), 0xfe113c23);                  /* sd ra, -8(sp) */
  CHECK_U64(enc_b(-16, 14, 0, 1), 0xfe0718e3);                      /* bnez a4, -16 */
  CHECK_U64(enc_j(-12, 1), 0xff5ff0ef);                             /* jal ra, -12 */
  CHECK_U64(rv_expand_compressed(c_sp(2, 15, 4 * 33)), 0x08412783); /* c.lwsp a5, 132(sp) */
  CHECK_U64(rv_expand_compressed(c_sp(6, 15, 4 * 33)), 0x08f12223); /* c.swsp a5, 132(sp) */
  CHECK_U64(rv_expand_compressed(c_ls(2, 9, 10, 68)), 0x0444a503);  /* c.lw a0, 68(s1) */
  CHECK_U64(rv_expand_compressed(c_ls(6, 9, 10, 68)), 0x04a4a223);  /* c.sw a0, 68(s1) */
  CHECK_U64(rv_expand_compressed(c_sp(3, 15, 8 * 33)), 0x10813783); /* c.ldsp a5, 264(sp) */
  CHECK_U64(rv_expand_compressed(c_bz(true, 8, 130)), 0x08041163);  /* c.bnez s0, 130 */
  CHECK_U64(rv_expand_compressed(c_j(-1366)), 0xaabff06f);          /* c.j -1366 */
}

static uint64_t sx32(uint64_t v) { return (uint64_t)(int64_t)(int32_t)(uint32_t)v; }

TEST(rotates_in_a_loop_that_branches_to_itself) {
  /* sha256's shape: a loop body that is one block branching back to its start (the translator
   * loops in it with the registers kept in host registers) and rotates spelled as two shifts and
   * an or (translated as one ror): 32- and 64-bit, either shift first, the shifted temporary dead
   * or read later (after a load that may fault: it must hold its value there). Both engines
   * against each other and against the same computation in C, under budgets that end runs inside
   * the loop. */
  diff_ctx c = diff_open("rotate loop", 0);
  program *p = c.prog;
  enum { ITER = 300 };
  const uint64_t data = RAM_BASE + PAGE_DATA * 4096ULL;
  for (unsigned pass = 0; pass < 4; pass++) {
    static const uint64_t pass_budget[] = {100000, 1, 7, 33};
    memset(p, 0, sizeof(*p));
    gen g = {
        .rng = 1, .kind = KIND_M, .img = p->img, .dec = c.interp->hart.icache, .view = RAM_BASE};
    p->kind = KIND_M;
    put_handler(&g, false);
    g.at = PAGE_CODE * 4096ULL;
    p->entry = pc_of(&g, g.at);
    p->x[5] = 0x0123456789abcdefULL;
    p->x[31] = data;
    put32(&g, enc_i(ITER, 0, 0, R_LOOP, 0x13));
    uint64_t top = g.at;
    put32(&g, enc_i(26, 5, 1, 6, 0x1b));                   /* slliw x6, x5, 26 */
    put32(&g, enc_i(6, 5, 5, 7, 0x1b));                    /* srliw x7, x5, 6 */
    put32(&g, enc_r(0, 6, 7, 6, 7, 0x33));                 /* or x7, x7, x6 (x6 dead) */
    put32(&g, enc_i(13, 5, 1, 6, 0x13));                   /* slli x6, x5, 13 */
    put32(&g, enc_i(51, 5, 5, 8, 0x13));                   /* srli x8, x5, 51 */
    put32(&g, enc_r(0, 8, 6, 6, 8, 0x33));                 /* or x8, x6, x8 (x6 read next) */
    put32(&g, enc_r(0, 6, 9, 0, 9, 0x33));                 /* add x9, x9, x6 */
    put32(&g, enc_i(11, 8, 5, 18, 0x1b));                  /* srliw x18, x8, 11 */
    put32(&g, enc_i(21, 8, 1, 19, 0x1b));                  /* slliw x19, x8, 21 */
    put32(&g, enc_r(0, 18, 19, 6, 18, 0x33));              /* or x18, x19, x18 */
    put32(&g, enc_i(30, 5, 1, 21, 0x1b));                  /* slliw x21, x5, 30 */
    put32(&g, enc_i(0, R_DATA, 2, 20, 0x03));              /* lw x20, 0(x31): x19 live across it */
    put32(&g, enc_i(2, 19, 0, 19, 0x13));                  /* addi x19, x19, 2 */
    put32(&g, enc_i(2, 5, 5, 22, 0x1b));                   /* srliw x22, x5, 2 */
    put32(&g, enc_r(0, 21, 22, 6, 22, 0x33));              /* or x22, x22, x21: the shifts apart */
    put32(&g, enc_r(0, 22, 5, 0, 5, 0x33));                /* add x5, x5, x22 */
    put32(&g, enc_r(0, 7, 5, 0, 5, 0x33));                 /* add x5, x5, x7 */
    put32(&g, enc_r(0, 8, 5, 4, 5, 0x33));                 /* xor x5, x5, x8 */
    put32(&g, enc_r(0, 20, 5, 0, 5, 0x33));                /* add x5, x5, x20 */
    put32(&g, enc_r(0, 18, 5, 0, 5, 0x33));                /* add x5, x5, x18 */
    put32(&g, enc_s(0, 5, R_DATA, 2, 0x23));               /* sw x5, 0(x31) */
    put32(&g, enc_i(-1, R_LOOP, 0, R_LOOP, 0x13));         /* addi x27, x27, -1 */
    put32(&g, enc_b((int32_t)(top - g.at), R_LOOP, 0, 1)); /* bne x27, x0, top */
    put_jump_to(&g, PAGE_END * 4096ULL);
    engine_load(c.interp, p);
    engine_load(c.jit, p);
    lockstep_until_wfi(&c, pass_budget[pass], 100000, pass);
    uint64_t x5 = p->x[5], x6 = 0, x7, x8, x9 = 0, x18, x19 = 0, x20, x21 = 0, x22 = 0;
    uint32_t mem = 0;
    for (unsigned i = 0; i < ITER; i++) {
      x7 = sx32((uint32_t)x5 >> 6) | sx32((uint32_t)x5 << 26);
      x6 = x5 << 13;
      x8 = x6 | x5 >> 51;
      x9 += x6;
      x19 = sx32((uint32_t)x8 << 21);
      x18 = sx32((uint32_t)x8 >> 11) | x19;
      x21 = sx32((uint32_t)x5 << 30);
      x20 = sx32(mem);
      x19 += 2;
      x22 = sx32((uint32_t)x5 >> 2) | x21;
      x5 += x22;
      x5 = (((x5 + x7) ^ x8) + x20) + x18;
      mem = (uint32_t)x5;
    }
    const rv_hart *h = &c.jit->hart;
    CHECK_U64(h->x[5], x5);
    CHECK_U64(h->x[6], x6);
    CHECK_U64(h->x[9], x9);
    CHECK_U64(h->x[19], x19);
    CHECK_U64(h->x[21], x21);
    CHECK_U64(h->x[22], x22);
    uint32_t stored;
    memcpy(&stored, c.jit->bus.ram + PAGE_DATA * 4096ULL, 4);
    CHECK_U64(stored, mem);
    c.programs++;
    c.finished++;
  }
  diff_close(&c);
}

/* A loop through a 32-bit instruction at a page's last halfword (0xffe), which no block holds:
 * the interpreter steps it (rv_step fetches both halves), translated code reaches it through the
 * jump cache and its step stub, both by falling into it from the block before (a block that ends
 * at 0xffe) and by a branch to it, and goes on to the next page. In a boot such instructions in
 * hot loops (blake2s, filemap_map_pages) were each a return to the run loop and two failed
 * decodes per iteration. Both engines against each other and the same computation in C, under
 * budgets that end runs anywhere in the loop, the instruction itself included. */
TEST(a_loop_through_an_instruction_that_straddles_two_pages) {
  diff_ctx c = diff_open("straddling loop", 0);
  program *p = c.prog;
  enum { ITER = 400 };
  const uint64_t head = (PAGE_CODE + 1) * 4096ULL - 32, straddle = head + 30;
  for (unsigned pass = 0; pass < 4; pass++) {
    static const uint64_t pass_budget[] = {100000, 1, 7, 33};
    memset(p, 0, sizeof(*p));
    gen g = {
        .rng = 3, .kind = KIND_M, .img = p->img, .dec = c.interp->hart.icache, .view = RAM_BASE};
    p->kind = KIND_M;
    put_handler(&g, false);
    g.at = PAGE_CODE * 4096ULL;
    p->entry = pc_of(&g, g.at);
    put32(&g, enc_i(ITER, 0, 0, R_LOOP, 0x13));  /* x27 = ITER */
    put32(&g, enc_j((int32_t)(head - g.at), 0)); /* j head */
    g.at = head;
    put32(&g, enc_i(1, 6, 0, 6, 0x13));                    /* addi x6, x6, 1 */
    put32(&g, enc_i(1, 6, 0, 6, 0x13));                    /* addi x6, x6, 1 */
    put32(&g, enc_i(1, 6, 0, 6, 0x13));                    /* addi x6, x6, 1 */
    put32(&g, enc_i(1, R_LOOP, 7, 9, 0x13));               /* andi x9, x27, 1 */
    put32(&g, enc_b((int32_t)(straddle - g.at), 9, 0, 1)); /* bne x9, x0, straddle */
    put32(&g, enc_i(2, 6, 0, 6, 0x13));                    /* addi x6, x6, 2 */
    put32(&g, enc_i(5, 10, 0, 10, 0x13));                  /* addi x10, x10, 5 */
    put16(&g, 0x0405);                                     /* c.addi x8, 1 */
    CHECK_U64(g.at, straddle);
    put32(&g, enc_i(3, 7, 0, 7, 0x13));                     /* addi x7, x7, 3: 0xffe..0x1001 */
    put32(&g, enc_i(-1, R_LOOP, 0, R_LOOP, 0x13));          /* addi x27, x27, -1 */
    put32(&g, enc_b((int32_t)(head - g.at), R_LOOP, 0, 1)); /* bne x27, x0, head */
    put_jump_to(&g, PAGE_END * 4096ULL);
    engine_load(c.interp, p);
    engine_load(c.jit, p);
    lockstep_until_wfi(&c, pass_budget[pass], 100000, pass);
    const rv_hart *h = &c.jit->hart;
    CHECK_U64(h->x[6], 3 * ITER + 2 * (ITER / 2)); /* the even counts fall into it */
    CHECK_U64(h->x[7], 3 * ITER);
    CHECK_U64(h->x[8], ITER / 2);
    CHECK_U64(h->x[10], 5 * (ITER / 2));
    c.programs++;
    c.finished++;
  }
  diff_close(&c);
}

/* Another hart on the engine's bus (rv_hart_init: its own caches, the bus's code counters) runs
 * "sw x6, 0(x7); fence.i; wfi" at RAM offset `at`: it writes instruction `insn` at RAM offset
 * `where` while the engine's hart is stopped somewhere in a loop whose code may hold it. */
static void other_hart_writes(engine *e, uint64_t at, uint64_t where, uint32_t insn) {
  rv_hart *h = vs_malloc0_aligned(_Alignof(rv_hart), sizeof(*h));
  _cleanup_error_ vs_error *err = NULL;
  if (rv_hart_init(h, 1, &e->bus, &err) < 0)
    TAP_FAIL("rv_hart_init: %s", err->msg);
  rv_hart_reset(h, RAM_BASE + at, RV_PRIV_M);
  h->x[6] = insn;
  h->x[7] = RAM_BASE + where;
  rv_hart_run(h, 100);
  CHECK(h->wfi);
  rv_hart_destroy(h);
  free(h);
}

/* sha256's round and moves: a loop whose body ends a page with a branch to a tail on the next page
 * (moves of the registers the body keeps, then a jump back to the body's start). The translator
 * runs the tail inside the body's code (jit.c: find_tail), checking each time that the tail's
 * page still maps where it did and its code is unchanged. Both engines against each other and the
 * same computation in C, under budgets that end runs anywhere in the loop. Passes 4 and 5:
 * another hart rewrites one of the moves (then one of the body's instructions) between runs: the
 * new instructions must run. */
TEST(a_loop_whose_tail_is_on_the_next_page) {
  diff_ctx c = diff_open("tail loop", 0);
  program *p = c.prog;
  enum { ITER = 200 };
  const uint64_t data = RAM_BASE + PAGE_DATA * 4096ULL;
  const uint64_t body = (PAGE_CODE + 2) * 4096ULL - 14 * 4, moves = (PAGE_CODE + 2) * 4096ULL + 64;
  const uint64_t other = (PAGE_CODE + 6) * 4096ULL;
  const uint32_t count10 = enc_i(1, 10, 0, 10, 0x13), count11 = enc_i(1, 11, 0, 11, 0x13);
  for (unsigned pass = 0; pass < 6; pass++) {
    /* passes 4 and 5: budgets that hold a whole iteration (21 instructions), so that the
     * translated loop runs its tail between the other hart's writes */
    static const uint64_t pass_budget[] = {100000, 1, 7, 33, 30, 45};
    memset(p, 0, sizeof(*p));
    gen g = {
        .rng = 1, .kind = KIND_M, .img = p->img, .dec = c.interp->hart.icache, .view = RAM_BASE};
    p->kind = KIND_M;
    put_handler(&g, false);
    g.at = other; /* the other hart's program */
    put32(&g, enc_s(0, 6, 7, 2, 0x23));
    put32(&g, 0x0000100f); /* fence.i */
    put32(&g, 0x10500073); /* wfi */
    g.at = PAGE_CODE * 4096ULL;
    p->entry = pc_of(&g, g.at);
    for (unsigned r = 1; r < 27; r++)
      p->x[r] = 0x9e3779b97f4a7c15ULL * r;
    p->x[10] = p->x[11] = 0;
    p->x[31] = data;
    put32(&g, enc_i(ITER, 0, 0, R_LOOP, 0x13));
    put32(&g, enc_j((int32_t)(body - g.at), 0));
    g.at = body;
    put32(&g, enc_r(0, 18, 5, 0, 5, 0x33));   /* add x5, x5, x18 */
    put32(&g, enc_r(0, 5, 6, 4, 6, 0x33));    /* xor x6, x6, x5 */
    put32(&g, enc_i(26, 5, 1, 7, 0x1b));      /* slliw x7, x5, 26 */
    put32(&g, enc_i(6, 5, 5, 8, 0x1b));       /* srliw x8, x5, 6 */
    put32(&g, enc_r(0, 7, 8, 6, 8, 0x33));    /* or x8, x8, x7 */
    put32(&g, enc_r(0, 8, 19, 0, 19, 0x33));  /* add x19, x19, x8 */
    put32(&g, enc_i(0, R_DATA, 2, 20, 0x03)); /* lw x20, 0(x31) */
    put32(&g, enc_r(0, 20, 5, 0, 5, 0x33));   /* add x5, x5, x20 */
    put32(&g, enc_s(0, 5, R_DATA, 2, 0x23));  /* sw x5, 0(x31) */
    put32(&g, enc_r(0, 19, 21, 0, 21, 0x33)); /* add x21, x21, x19 */
    uint64_t xor_at = g.at;
    put32(&g, enc_r(0, 6, 22, 4, 22, 0x33));                 /* xor x22, x22, x6 */
    put32(&g, enc_r(0, 22, 23, 0, 23, 0x33));                /* add x23, x23, x22 */
    put32(&g, enc_i(-1, R_LOOP, 0, R_LOOP, 0x13));           /* addi x27, x27, -1 */
    put32(&g, enc_b((int32_t)(moves - g.at), R_LOOP, 0, 1)); /* bne x27, x0, moves */
    /* the fall-through, the next page's first bytes */
    put32(&g, enc_j((int32_t)(PAGE_END * 4096ULL - g.at), 0));
    g.at = moves;
    static const unsigned to[] = {24, 23, 22, 21, 19, 18, 9}, from[] = {23, 22, 21, 19, 18, 9, 5};
    for (unsigned k = 0; k < 7; k++) /* mv, as c.mv and as addi */
      if (k % 2)
        put16(&g, (uint16_t)(0x8002 | to[k] << 7 | from[k] << 2));
      else
        put32(&g, enc_i(0, from[k], 0, to[k], 0x13));
    uint64_t last_move = g.at - 4;
    put32(&g, enc_j((int32_t)(body - g.at), 0));
    engine_load(c.interp, p);
    engine_load(c.jit, p);
    if (pass < 4) {
      lockstep_until_wfi(&c, pass_budget[pass], 100000, pass);
      uint64_t x[32];
      memcpy(x, p->x, sizeof(x));
      uint32_t mem = 0;
      for (unsigned i = 0; i < ITER; i++) {
        x[5] += x[18];
        x[6] ^= x[5];
        x[7] = sx32((uint32_t)x[5] << 26);
        x[8] = sx32((uint32_t)x[5] >> 6) | x[7];
        x[19] += x[8];
        x[20] = sx32(mem);
        x[5] += x[20];
        mem = (uint32_t)x[5];
        x[21] += x[19];
        x[22] ^= x[6];
        x[23] += x[22];
        if (i + 1 < ITER)
          for (unsigned k = 0; k < 7; k++)
            x[to[k]] = x[from[k]];
      }
      for (unsigned r = 1; r < 27; r++)
        if (c.jit->hart.x[r] != x[r])
          TAP_FAIL("pass %u: x%u = 0x%" PRIx64 ", computed 0x%" PRIx64, pass, r, c.jit->hart.x[r],
                   x[r]);
    } else {
      /* part of the way, another hart replaces the last move, later the body's xor; then on */
      for (unsigned phase = 0; phase < 3; phase++) {
        for (int i = 0; i < (phase < 2 ? 30 : 100000) && !c.jit->hart.wfi; i++) {
          uint64_t ra = rv_hart_run(&c.interp->hart, pass_budget[pass]);
          uint64_t rb = rv_hart_run(&c.jit->hart, pass_budget[pass]);
          CHECK_EQ(ra, rb);
          char buf[256];
          const char *d = engine_diff(c.interp, c.jit, buf, sizeof(buf));
          if (d)
            TAP_FAIL("pass %u phase %u step %d: %s", pass, phase, i, d);
        }
        if (phase < 2) {
          CHECK(!c.jit->hart.wfi);
          uint64_t where = phase ? xor_at : last_move;
          other_hart_writes(c.interp, other, where, phase ? count11 : count10);
          other_hart_writes(c.jit, other, where, phase ? count11 : count10);
        }
      }
      CHECK(c.jit->hart.wfi);
      /* the new instructions ran from where they were written on */
      CHECK(c.jit->hart.x[10] > 0 && c.jit->hart.x[10] < ITER);
      CHECK(c.jit->hart.x[11] > 0 && c.jit->hart.x[11] < c.jit->hart.x[10]);
    }
    c.programs++;
    c.finished++;
  }
  CHECK(rv_jit_tails(c.jit->hart.icache->jit) > 0); /* the loop did run through a tail */
  diff_close(&c);
}

/* A tail in S-mode whose page changes under it: the loop's block on page A branches to a tail on
 * page B whose code differs by the mapping (x9 += 1 or += 1000), and each outer iteration changes
 * the mapping first: (satp) it switches between two address spaces (ASIDs 1 and 2, their own
 * page tables) that map B's virtual page to different physical pages, or (fence) it rewrites B's
 * page table entry in one address space and fences that page (sfence.vma rs1 = B). A tail that
 * did not check where B's page maps now would run the other page's code. */
static void run_remapped_tail(diff_ctx *c, bool by_satp, bool cut, uint64_t budget) {
  program *p = c->prog;
  enum { ITER = 60, INNER = 3, PAGE_ALT = 12, PAGE_PT2 = 32 };
  memset(p, 0, sizeof(*p));
  gen g = {.rng = 3, .kind = KIND_S, .img = p->img, .dec = c->interp->hart.icache, .view = VA_BASE};
  p->kind = KIND_S;
  put_handler(&g, true);
  put_page_tables(p->img);
  const uint64_t ram_ppn = RAM_BASE >> 12, G = 32;
  const unsigned page_b = PAGE_CODE + 1;
  uint64_t *l0 = (uint64_t *)(p->img + (PAGE_PT + 2) * 4096ULL);
  l0[page_b] &= ~G; /* B is not a global mapping */
  uint64_t pte_b = l0[page_b], pte_alt = (pte_b & 0x3ff) | ((ram_ppn + PAGE_ALT) << 10);
  /* the second address space: a copy of the tables, B mapped to PAGE_ALT */
  memcpy(p->img + PAGE_PT2 * 4096ULL, p->img + PAGE_PT * 4096ULL, 3 * 4096);
  uint64_t *root2 = (uint64_t *)(p->img + PAGE_PT2 * 4096ULL);
  root2[VA_BASE >> 30] = ((ram_ppn + PAGE_PT2 + 1) << 10) | 1;
  root2[512] = ((ram_ppn + PAGE_PT2 + 2) << 10) | 1; /* its level 1 -> its level 0 */
  root2[1024 + page_b] = pte_alt;
  const uint64_t satp1 = (8ULL << 60) | (1ULL << 44) | (ram_ppn + PAGE_PT);
  const uint64_t satp2 = (8ULL << 60) | (2ULL << 44) | (ram_ppn + PAGE_PT2);
  for (unsigned r = 1; r < 27; r++)
    p->x[r] = 0x2545f4914f6cdd1dULL * r;
  p->x[9] = 0;
  p->x[20] = satp2;
  p->x[22] = satp1 ^ satp2;
  p->x[21] = pte_alt;
  p->x[23] = pte_alt ^ pte_b;
  p->x[R_SPECIAL] = VA_BASE + (PAGE_PT + 2) * 4096ULL + 8 * page_b; /* B's PTE */
  p->x[24] = VA_BASE + page_b * 4096ULL;
  const uint64_t at_b = page_b * 4096ULL + 0x10; /* within a branch's reach */
  g.at = PAGE_CODE * 4096ULL;
  p->entry = pc_of(&g, g.at);
  put32(&g, enc_i(ITER, 0, 0, R_LOOP, 0x13));
  uint64_t to_branch = g.at;
  if (cut) { /* first straight to the branch: a block starts there, so the loop's block ends
              * before it and the branch follows the block (jit.c: decode_continuation) */
    put32(&g, enc_i(1, 0, 0, 26, 0x13)); /* li x26, 1 */
    to_branch = g.at;
    put32(&g, enc_b(0, 0, 0, 0)); /* beq x0, x0, (the branch): a block starts there */
  }
  uint64_t top = g.at;
  if (by_satp) {
    put32(&g, enc_csrw(0x180, 20));           /* csrw satp, x20 */
    put32(&g, enc_r(0, 22, 20, 4, 20, 0x33)); /* xor x20, x20, x22: the other one next */
  } else {
    put32(&g, enc_s(0, 21, R_SPECIAL, 3, 0x23)); /* sd x21, 0(x30): B's PTE */
    put32(&g, enc_r(9, 0, 24, 0, 0, 0x73));      /* sfence.vma x24, x0 */
    put32(&g, enc_r(0, 23, 21, 4, 21, 0x33));    /* xor x21, x21, x23 */
  }
  put32(&g, enc_i(INNER, 0, 0, 26, 0x13)); /* li x26, INNER */
  uint64_t inner = g.at;                   /* a block of its own once the tail jumps back here */
  put32(&g, enc_r(0, 6, 5, 0, 5, 0x33));   /* add x5, x5, x6 (x5, x6 kept) */
  put32(&g, enc_r(0, 5, 6, 0, 6, 0x33));   /* add x6, x6, x5 */
  put32(&g, enc_r(0, 6, 5, 4, 5, 0x33));   /* xor x5, x5, x6 */
  put32(&g, enc_i(-1, 26, 0, 26, 0x13));   /* addi x26, x26, -1 */
  put32(&g, enc_r(0, 6, 5, 0, 8, 0x33));   /* add x8, x5, x6: dead if what follows runs */
  if (cut) { /* (the branch and what comes before it follow the block: a block starts here) */
    uint32_t b = enc_b((int32_t)(g.at - to_branch), 0, 0, 0);
    memcpy(p->img + to_branch, &b, 4);
  }
  put32(&g, enc_i(7, 0, 0, 8, 0x13));                 /* li x8, 7 */
  put32(&g, enc_b((int32_t)(at_b - g.at), 26, 0, 1)); /* bne x26, x0, B: the tail */
  put32(&g, enc_r(0, 5, 7, 0, 7, 0x33));              /* add x7, x7, x5 */
  put32(&g, enc_i(-1, R_LOOP, 0, R_LOOP, 0x13));
  put32(&g, enc_b((int32_t)(top - g.at), R_LOOP, 0, 1));
  put_jump_to(&g, PAGE_END * 4096ULL);
  for (unsigned v = 0; v < 2; v++) { /* B's two versions, the same place in their pages */
    g.at = (v ? PAGE_ALT * 4096ULL : page_b * 4096ULL) + (at_b & 0xfff);
    put32(&g, enc_i(v ? 1000 : 1, 9, 0, 9, 0x13));       /* addi x9, x9, 1 / 1000 */
    put32(&g, enc_r(0, 6, 5, 0, 5, 0x33));               /* add x5, x5, x6 */
    put32(&g, enc_r(0, 5, 6, 4, 6, 0x33));               /* xor x6, x6, x5 */
    put32(&g, enc_j((int32_t)(inner - (at_b + 12)), 0)); /* back to the loop's block */
  }
  engine_load(c->interp, p);
  engine_load(c->jit, p);
  lockstep_until_wfi(c, budget, 100000, by_satp);
  c->programs++;
  c->finished++;
  if (cut)
    return; /* the engines agree; the detour's extra turn is not modelled here */
  uint64_t x5 = p->x[5], x6 = p->x[6], x7 = p->x[7], x9 = 0;
  for (unsigned i = 0; i < ITER; i++) {
    for (unsigned k = 0; k < INNER; k++) {
      x5 += x6;
      x6 += x5;
      x5 ^= x6;
      if (k + 1 < INNER) {
        x9 += i % 2 ? 1 : 1000;
        x5 += x6;
        x6 ^= x5;
      }
    }
    x7 += x5;
  }
  CHECK_U64(c->jit->hart.x[9], x9);
  CHECK_U64(c->jit->hart.x[5], x5);
  CHECK_U64(c->jit->hart.x[6], x6);
  CHECK_U64(c->jit->hart.x[7], x7);
}

TEST(a_tail_follows_satp_and_sfence_vma_of_its_page) {
  diff_ctx c = diff_open("tail, remapped", 0);
  static const uint64_t budgets_here[] = {100000, 1, 7, 33};
  for (unsigned i = 0; i < 4; i++)
    for (unsigned cut = 0; cut < 2; cut++) {
      run_remapped_tail(&c, true, cut, budgets_here[i]);
      run_remapped_tail(&c, false, cut, budgets_here[i]);
    }
  CHECK(rv_jit_tails(c.jit->hart.icache->jit) > 0);
  diff_close(&c);
}

TEST(self_modifying_code_is_seen_by_both_engines) {
  /* A store rewrites (1) an instruction ahead in its own block and (2) an instruction of a loop
   * body that already ran; both engines must run the new instructions. */
  diff_ctx c = diff_open("smc", 0);
  program *p = c.prog;
  memset(p, 0, sizeof(*p));
  gen g = {.rng = 1, .kind = KIND_M, .img = p->img, .dec = c.interp->hart.icache, .view = RAM_BASE};
  p->kind = KIND_M;
  put_handler(&g, false);
  g.at = PAGE_CODE * 4096ULL;
  p->entry = pc_of(&g, g.at);
  uint32_t addi5 = enc_i(5, 5, 0, 5, 0x13); /* addi x5, x5, 5 */
  put_li32(&g, 6, addi5);
  put32(&g, enc_u(0, 7, 0x17));            /* auipc x7, 0 */
  put32(&g, enc_s(12, 6, 7, 2, 0x23));     /* sw x6, 12(x7): two instructions ahead */
  put32(&g, enc_i(1, 5, 0, 5, 0x13));      /* addi x5, x5, 1 (runs) */
  put32(&g, enc_i(100, 5, 0, 5, 0x13));    /* replaced by addi x5, x5, 5 */
  put32(&g, enc_i(3, 0, 0, R_LOOP, 0x13)); /* x27 = 3 */
  uint64_t top = g.at;
  put32(&g, enc_i(1000, 8, 0, 8, 0x13)); /* x8 += 1000, then += 5 after the first pass */
  put32(&g, enc_b(8, 0, 0, 0));          /* beq x0, x0, +8: a block of its own above */
  put_raw32(&g, 0);
  put_li32(&g, 6, enc_i(5, 8, 0, 8, 0x13)); /* addi x8, x8, 5 */
  put32(&g, enc_u(0, 7, 0x17));
  put32(&g, enc_s((int32_t)(top - (g.at - 4)), 6, 7, 2, 0x23));
  put32(&g, enc_i(-1, R_LOOP, 0, R_LOOP, 0x13));
  put32(&g, enc_b((int32_t)(top - g.at), R_LOOP, 0, 1));
  put_jump_to(&g, PAGE_END * 4096ULL);
  for (unsigned pass = 0; pass < 3; pass++) {
    static const uint64_t pass_budget[] = {100000, 1, 7};
    engine_load(c.interp, p);
    engine_load(c.jit, p);
    lockstep_until_wfi(&c, pass_budget[pass], 200, pass);
    c.programs++;
    c.finished++;
    CHECK_U64(c.jit->hart.x[5], 6);            /* 1 + 5, not 1 + 100 */
    CHECK_U64(c.jit->hart.x[8], 1000 + 5 + 5); /* the rewritten body ran twice */
  }
  diff_close(&c);
}

/* Block slots come in pairs (cpu.c: rv_block_pair): with RAM at a multiple of 512 KiB, blocks at
 * RAM offsets o and o + 256 KiB (and o + 2 for o % 4 == 0) hash to one pair (RAM_ALIGN follows
 * RV_BLOCK_BITS). A loop calls two such
 * functions alternately: both stay decoded (the pool stops growing; with one slot per address
 * each call decoded its function again). With a third one they evict each other and must still
 * run right. */
static void run_pair_program(diff_ctx *c, bool third, unsigned rounds, bool short_runs) {
  program *p = c->prog;
  memset(p, 0, sizeof(*p));
  gen g = {
      .rng = 7, .kind = KIND_M, .img = p->img, .dec = c->interp->hart.icache, .view = RAM_BASE};
  p->kind = KIND_M;
  put_handler(&g, false);
  const uint64_t f1 = (PAGE_CODE + 4) * 4096ULL, f2 = f1 + RAM_ALIGN / 2, f3 = f1 + 2;
  g.at = f1;
  put16(&g, c_ci(0, 1, 5, 1));        /* c.addi x5, 1 */
  put32(&g, enc_i(1, 6, 0, 6, 0x13)); /* f3: addi x6, x6, 1 */
  put32(&g, enc_i(0, 1, 0, 0, 0x67)); /* ret */
  g.at = f2;
  put32(&g, enc_i(1, 7, 0, 7, 0x13)); /* addi x7, x7, 1 */
  put32(&g, enc_i(0, 1, 0, 0, 0x67)); /* ret */
  g.at = PAGE_CODE * 4096ULL;
  p->entry = pc_of(&g, g.at);
  put32(&g, enc_i((int32_t)rounds, 0, 0, R_LOOP, 0x13));
  uint64_t top = g.at;
  put32(&g, enc_j((int32_t)(f1 - g.at), 1));
  put32(&g, enc_j((int32_t)(f2 - g.at), 1));
  if (third)
    put32(&g, enc_j((int32_t)(f3 - g.at), 1));
  put32(&g, enc_i(-1, R_LOOP, 0, R_LOOP, 0x13));
  put32(&g, enc_b((int32_t)(top - g.at), R_LOOP, 0, 1));
  put_jump_to(&g, PAGE_END * 4096ULL);
  engine_load(c->interp, p);
  engine_load(c->jit, p);
  for (unsigned i = 0; i < 100000 && !(c->interp->hart.wfi && c->jit->hart.wfi); i++) {
    /* short runs start anywhere, with a lookup (also of blocks that begin inside others) */
    uint64_t n = short_runs ? 1 + i % 13 : 100000;
    uint64_t ra = rv_hart_run(&c->interp->hart, n), rb = rv_hart_run(&c->jit->hart, n);
    CHECK_EQ(ra, rb);
    char buf[256];
    const char *d = engine_diff(c->interp, c->jit, buf, sizeof(buf));
    if (d)
      TAP_FAIL("%s functions, step %u: %s", third ? "three" : "two", i, d);
  }
  CHECK(c->jit->hart.wfi);
  CHECK_U64(c->jit->hart.x[5], rounds);
  CHECK_U64(c->jit->hart.x[6], third ? 2 * rounds : rounds);
  CHECK_U64(c->jit->hart.x[7], rounds);
  c->programs++;
  c->finished++;
}

TEST(blocks_that_share_a_slot_pair) {
  diff_ctx c = diff_open("slot pairs", 0);
  const unsigned rounds = 300;
  run_pair_program(&c, false, rounds, false);
  /* both functions stayed decoded: far fewer instructions in the pool than calls made (the
   * interpreter looks each call's block up; translated code finds it in the jump cache) */
  printf("# pool after %u rounds: %u and %u instructions\n", rounds,
         c.interp->hart.icache->pool_used, c.jit->hart.icache->pool_used);
  CHECK(c.interp->hart.icache->pool_used < rounds);
  CHECK(c.jit->hart.icache->pool_used < rounds);
  run_pair_program(&c, true, rounds, true);
  run_pair_program(&c, false, rounds, true);
  diff_close(&c);
}

/* A one-page SFENCE.VMA of a page whose code the jump cache knows (jit.c: rv_jit_forget_page).
 * An S-mode loop calls a function through the alias page VPAGE_ALIAS + 5 (a jump to another page:
 * the translated caller finds it in the jump cache), then points that page's PTE at other code and
 * fences the page, by its first address or one inside it, or fences another page (which must not
 * change what runs: the old mapping is still in the TLB, as the interpreter sees it too). */
TEST(a_fenced_page_leaves_the_jump_cache) {
  diff_ctx c = diff_open("fenced page", 0);
  program *p = c.prog;
  enum { F_A = PAGE_CODE + 5, F_B = PAGE_CODE + 6, ALIAS = VPAGE_ALIAS + 5, CALLS = 3 };
  const uint64_t ram_ppn = RAM_BASE >> 12, alias_va = VA_BASE + ALIAS * 4096ULL;
  /* the level-0 table is the third page of PAGE_PT (put_page_tables) */
  const uint64_t pte_va = VA_BASE + (PAGE_PT + 2) * 4096ULL + ALIAS * 8ULL;
  const uint32_t pte_flags = 0x1 | 0x2 | 0x4 | 0x8 | 0x40 | 0x80; /* V R W X A D */
  for (unsigned pass = 0; pass < 4; pass++) {
    static const uint64_t pass_budget[] = {100000, 1, 7, 33};
    memset(p, 0, sizeof(*p));
    gen g = {
        .rng = 3, .kind = KIND_S, .img = p->img, .dec = c.interp->hart.icache, .view = VA_BASE};
    p->kind = KIND_S;
    put_handler(&g, true);
    put_page_tables(p->img);
    g.at = F_A * 4096ULL;
    put32(&g, enc_i(1, 5, 0, 5, 0x13)); /* f_a: addi x5, x5, 1; ret */
    put32(&g, enc_i(0, 1, 0, 0, 0x67));
    g.at = F_B * 4096ULL;
    put32(&g, enc_i(100, 5, 0, 5, 0x13)); /* f_b: addi x5, x5, 100; ret */
    put32(&g, enc_i(0, 1, 0, 0, 0x67));
    g.at = PAGE_CODE * 4096ULL;
    p->entry = pc_of(&g, g.at);
    put_li32(&g, 6, (uint32_t)pte_va);
    /* x7: the fence's address: the alias page itself, an address inside it, or the next page */
    static const uint32_t fence_off[] = {0, 0x7fe, 4096, 0x10};
    put_li32(&g, 7, (uint32_t)(alias_va + fence_off[pass]));
    for (unsigned round = 0; round < 3; round++) {
      for (unsigned k = 0; k < CALLS; k++) /* jal ra, alias_va */
        put32(&g, enc_j((int32_t)(alias_va - pc_of(&g, g.at)), 1));
      /* the alias page shows f_b in round 0, f_a in round 1 */
      put_li32(&g, 8, (uint32_t)(((ram_ppn + (round == 0 ? F_B : F_A)) << 10) | pte_flags));
      put32(&g, enc_s(0, 8, 6, 3, 0x23));       /* sd x8, 0(x6) */
      put32(&g, enc_r(0x09, 0, 7, 0, 0, 0x73)); /* sfence.vma x7, x0 */
    }
    put_jump_to(&g, PAGE_END * 4096ULL);
    engine_load(c.interp, p);
    engine_load(c.jit, p);
    lockstep_until_wfi(&c, pass_budget[pass], 100000, pass);
    /* rounds 0, 1, 2 ran f_a, f_b, f_a when the fence hit the alias page; with the fence of the
     * next page the TLB may keep the old entry (both engines alike), so only the engines'
     * agreement is checked then */
    if (fence_off[pass] < 4096)
      CHECK_U64(c.jit->hart.x[5], CALLS * (1 + 100 + 1));
    c.programs++;
    c.finished++;
  }
  diff_close(&c);
}

/* Block shapes (cpu.c: rv_block_build): a loop entered by falling into it is decoded once, not a
 * second time as the tail of the block before it; a `j` within the page goes on into its target
 * (here a block that already starts there). Both engines run the program alike, and each decodes
 * (pool_used) no more than these blocks. */
TEST(loop_heads_and_jumps_to_blocks_are_decoded_once) {
  diff_ctx c = diff_open("block shapes", 0);
  program *p = c.prog;
  memset(p, 0, sizeof(*p));
  gen g = {.rng = 5, .kind = KIND_M, .img = p->img, .dec = c.interp->hart.icache, .view = RAM_BASE};
  p->kind = KIND_M;
  put_handler(&g, false);
  g.at = PAGE_CODE * 4096ULL;
  p->entry = pc_of(&g, g.at);
  /* 1: a block of 2, then the loop (10) entered by falling into it, branching back to its head */
  put32(&g, enc_i(50, 0, 0, R_LOOP, 0x13)); /* x27 = 50 */
  put32(&g, enc_i(1, 5, 0, 5, 0x13));       /* addi x5, x5, 1 */
  uint64_t head = g.at;
  for (unsigned k = 0; k < 8; k++)
    put32(&g, enc_i((int32_t)k + 1, 6, 0, 6, 0x13)); /* addi x6, x6, k + 1 */
  put32(&g, enc_i(-1, R_LOOP, 0, R_LOOP, 0x13));
  put32(&g, enc_b((int32_t)(head - g.at), R_LOOP, 0, 1)); /* bne x27, x0, head */
  /* 2: call L (7), then a block of 3 that ends with a `j` to L, which already starts a block */
  uint64_t call = g.at, l = call + 64;
  put32(&g, enc_j((int32_t)(l - g.at), 1)); /* jal ra, L */
  put32(&g, enc_i(1, 9, 0, 9, 0x13));       /* addi x9, x9, 1 */
  put32(&g, enc_i(1, 11, 0, 11, 0x13));     /* addi x11, x11, 1 */
  put32(&g, enc_j((int32_t)(l - g.at), 0)); /* j L */
  uint64_t end = l + 64;
  g.at = l;
  for (unsigned k = 0; k < 5; k++)
    put32(&g, enc_i(1, 8, 0, 8, 0x13));              /* addi x8, x8, 1 */
  put32(&g, enc_b((int32_t)(end - g.at), 11, 0, 1)); /* bne x11, x0, end */
  put32(&g, enc_i(0, 1, 0, 0, 0x67));                /* ret */
  g.at = end;
  put_jump_to(&g, PAGE_END * 4096ULL);
  for (unsigned pass = 0; pass < 3; pass++) {
    static const uint64_t pass_budget[] = {100000, 1, 7};
    engine_load(c.interp, p);
    engine_load(c.jit, p);
    lockstep_until_wfi(&c, pass_budget[pass], 100000, pass);
    CHECK_U64(c.jit->hart.x[6], 50 * 36);
    CHECK_U64(c.jit->hart.x[8], 10);
    CHECK_U64(c.jit->hart.x[9], 1);
    /* 2 + 10, the call 1, 3 + 6 (on through the `j` to L's branch), L's block 6 and its ret 1,
     * the way to the end 2 and the end 2: without the rule the loop's 10 come twice */
    const struct rv_icache *ics[] = {c.interp->hart.icache, c.jit->hart.icache};
    for (unsigned e = 0; e < 2; e++) {
      if (pass == 0)
        printf("# pool after the program: %u instructions\n", ics[e]->pool_used);
      if (pass_budget[pass] == 100000) /* short runs may start blocks anywhere */
        CHECK(ics[e]->pool_used <= 2 + 10 + 1 + 3 + 6 + 6 + 1 + 2 + 2);
    }
    c.programs++;
    c.finished++;
  }
  (void)call;
  diff_close(&c);
}

/* The pool of decoded blocks (and the code translated from them) emptied every few blocks:
 * blocks that are linked to each other, sit in the jump cache or were entered by a link are
 * dropped between and during runs, in both engines. */
static void run_many_small_pool(const char *what, enum prog_kind kind, uint64_t first,
                                unsigned count, unsigned warmup) {
  diff_ctx c = diff_open(what, warmup);
  c.interp->hart.icache->pool_limit = 3 * RV_BLOCK_MAX;
  c.jit->hart.icache->pool_limit = 3 * RV_BLOCK_MAX;
  for (unsigned i = 0; i < count; i++)
    run_program(&c, first + i, kind);
  printf("# %s: the pool was emptied %u times (interpreter %u)\n", what, c.jit->hart.icache->clears,
         c.interp->hart.icache->clears);
  CHECK(c.jit->hart.icache->clears > count); /* more than once per program */
  CHECK(c.finished > count / 2);
  diff_close(&c);
}

TEST(programs_whose_pool_empties) {
  run_many_small_pool("M-mode, small pool", KIND_M, 600000, 1000, 0);
  run_many_small_pool("S-mode Sv39, small pool, warm-up 1", KIND_S, 700000, 1000, 1);
}

/* memcpy's shape (jit.c's plan_groups: the first load of a group looks the TLB up for the bytes
 * of all): eight loads through one register with an ALU operation between two of them, then
 * eight stores through another, in a loop whose pointers move 8 bytes per iteration across two
 * page ends (the source's and the destination's at different iterations: groups that leave
 * their page there), then groups of loads and stores to the device (MMIO: never in the TLB), to
 * nothing (access faults the trap handler skips, one by one) and over the instructions that
 * follow (self-modifying code: stores to a code page are never in the TLB), and a group whose
 * last access leaves RAM. Both engines against
 * each other under budgets that end runs inside groups, and the copy against C. */
TEST(grouped_loads_and_stores_at_page_ends_devices_and_code) {
  diff_ctx c = diff_open("groups", 0);
  program *p = c.prog;
  enum { ITER = 40, SRC_PAGE = PAGE_DATA + 2, DST_PAGE = PAGE_DATA + 5 };
  const uint64_t src = RAM_BASE + SRC_PAGE * 4096ULL - 200,
                 dst = RAM_BASE + DST_PAGE * 4096ULL - 96;
  for (unsigned pass = 0; pass < 5; pass++) {
    static const uint64_t pass_budget[] = {100000, 1, 7, 33, 3};
    memset(p, 0, sizeof(*p));
    gen g = {
        .rng = 3, .kind = KIND_M, .img = p->img, .dec = c.interp->hart.icache, .view = RAM_BASE};
    p->kind = KIND_M;
    put_handler(&g, false);
    for (uint64_t o = (SRC_PAGE - 1) * 4096ULL; o < (SRC_PAGE + 1) * 4096ULL; o++)
      p->img[o] = (uint8_t)mix64(o);
    g.at = PAGE_CODE * 4096ULL;
    p->entry = pc_of(&g, g.at);
    p->x[10] = src;
    p->x[11] = dst;
    p->x[12] = MMIO_BASE + 0x40;
    p->x[13] = 0x90000000ULL; /* nothing there */
    p->x[26] = RAM_BASE + RAM_SIZE - 16;
    put32(&g, enc_i(ITER, 0, 0, R_LOOP, 0x13));
    uint64_t top = g.at;
    for (unsigned i = 0; i < 8; i++) {
      put32(&g, enc_i((int32_t)(8 * i), 10, 3, 14 + i, 0x03)); /* ld x14+i, 8i(x10) */
      if (i == 3)
        put32(&g, enc_r(0, 14, 6, 0, 6, 0x33)); /* add x6, x6, x14 */
    }
    for (unsigned i = 0; i < 8; i++)
      put32(&g, enc_s((int32_t)(8 * i), 14 + i, 11, 3, 0x23)); /* sd x14+i, 8i(x11) */
    put32(&g, enc_i(8, 10, 0, 10, 0x13));
    put32(&g, enc_i(8, 11, 0, 11, 0x13));
    put32(&g, enc_i(-1, R_LOOP, 0, R_LOOP, 0x13));
    put32(&g, enc_b((int32_t)(top - g.at), R_LOOP, 0, 1)); /* bne x27, x0, top */
    /* the device: loads of each size, a store between two, stores */
    put32(&g, enc_i(0, 12, 2, 5, 0x03));  /* lw x5, 0(x12) */
    put32(&g, enc_i(4, 12, 4, 7, 0x03));  /* lbu x7, 4(x12) */
    put32(&g, enc_i(8, 12, 3, 8, 0x03));  /* ld x8, 8(x12) */
    put32(&g, enc_s(16, 8, 12, 3, 0x23)); /* sd x8, 16(x12) */
    put32(&g, enc_s(24, 5, 12, 2, 0x23)); /* sw x5, 24(x12) */
    put32(&g, enc_s(30, 7, 12, 1, 0x23)); /* sh x7, 30(x12) */
    /* nothing: every access faults and is skipped */
    put32(&g, enc_i(0, 13, 3, 9, 0x03));
    put32(&g, enc_i(8, 13, 3, 18, 0x03));
    put32(&g, enc_s(0, 9, 13, 3, 0x23));
    put32(&g, enc_s(8, 9, 13, 3, 0x23));
    /* the end of RAM: the group's last load and store fault, the others do not */
    put32(&g, enc_i(0, 26, 3, 9, 0x03));  /* ld x9, 0(x26) */
    put32(&g, enc_i(8, 26, 3, 18, 0x03)); /* ld x18, 8(x26) */
    put32(&g, enc_i(16, 26, 2, 9, 0x03)); /* lw x9, 16(x26): beyond */
    put32(&g, enc_s(0, 18, 26, 3, 0x23));
    put32(&g, enc_s(8, 18, 26, 3, 0x23));
    put32(&g, enc_s(16, 18, 26, 1, 0x23)); /* beyond */
    /* code: two stores over the two instructions after them */
    put_li32(&g, 23, enc_i(5, 24, 0, 24, 0x13)); /* addi x24, x24, 5 */
    put32(&g, enc_u(0, 25, 0x17));               /* auipc x25, 0 */
    put32(&g, enc_s(12, 23, 25, 2, 0x23));       /* sw x23, 12(x25) */
    put32(&g, enc_s(16, 23, 25, 2, 0x23));       /* sw x23, 16(x25) */
    put32(&g, enc_i(100, 24, 0, 24, 0x13));      /* replaced */
    put32(&g, enc_i(100, 24, 0, 24, 0x13));      /* replaced */
    put_jump_to(&g, PAGE_END * 4096ULL);
    engine_load(c.interp, p);
    engine_load(c.jit, p);
    lockstep_until_wfi(&c, pass_budget[pass], 100000, pass);
    const rv_hart *h = &c.jit->hart;
    CHECK(memcmp(c.jit->bus.ram + (dst - RAM_BASE), p->img + (src - RAM_BASE), 8 * ITER + 56) == 0);
    uint64_t x6 = 0;
    for (unsigned i = 0; i < ITER; i++) {
      uint64_t v;
      memcpy(&v, p->img + (src - RAM_BASE) + 8 * i, 8);
      x6 += v;
    }
    CHECK_U64(h->x[6], x6);
    CHECK_U64(h->x[24], 10);         /* both new instructions ran */
    CHECK_U64(c.jit->mmio_reads, 3); /* the device saw every access */
    CHECK_U64(c.jit->mmio_writes, 3);
    c.programs++;
    c.finished++;
  }
  diff_close(&c);
}

/* Another hart unmaps the page that a group of loads reads and fences (SBI RFENCE: a flush this
 * hart serves between its runs) while this one is in the middle of the group's loop: from the
 * next run on every load faults (the handler skips it), until the page comes back. The runs are
 * short and end inside groups, so groups start at each of their loads. */
TEST(a_page_unmapped_between_grouped_loads_by_another_harts_fence) {
  diff_ctx c = diff_open("unmapped", 0);
  program *p = c.prog;
  memset(p, 0, sizeof(*p));
  gen g = {.rng = 5, .kind = KIND_S, .img = p->img, .dec = c.interp->hart.icache, .view = VA_BASE};
  p->kind = KIND_S;
  put_handler(&g, true);
  put_page_tables(p->img);
  const unsigned page = PAGE_DATA + 3;
  for (uint64_t o = page * 4096ULL; o < (page + 1) * 4096ULL; o++)
    p->img[o] = (uint8_t)mix64(o);
  g.at = PAGE_CODE * 4096ULL;
  p->entry = pc_of(&g, g.at);
  p->x[R_DATA] = VA_BASE + page * 4096ULL + 64;
  put32(&g, enc_i(400, 0, 0, R_LOOP, 0x13));
  uint64_t top = g.at;
  put32(&g, enc_i(0, R_DATA, 3, 5, 0x03));  /* ld x5, 0(x31) */
  put32(&g, enc_r(0, 5, 6, 0, 6, 0x33));    /* add x6, x6, x5 */
  put32(&g, enc_i(8, R_DATA, 3, 7, 0x03));  /* ld x7, 8(x31) */
  put32(&g, enc_r(0, 7, 6, 4, 6, 0x33));    /* xor x6, x6, x7 */
  put32(&g, enc_i(16, R_DATA, 2, 8, 0x03)); /* lw x8, 16(x31) */
  put32(&g, enc_i(24, R_DATA, 4, 9, 0x03)); /* lbu x9, 24(x31) */
  put32(&g, enc_r(0, 8, 6, 0, 6, 0x33));    /* add x6, x6, x8 */
  put32(&g, enc_r(0, 9, 6, 0, 6, 0x33));    /* add x6, x6, x9 */
  put32(&g, enc_i(-1, R_LOOP, 0, R_LOOP, 0x13));
  put32(&g, enc_b((int32_t)(top - g.at), R_LOOP, 0, 1));
  put_jump_to(&g, PAGE_END * 4096ULL);
  engine_load(c.interp, p);
  engine_load(c.jit, p);
  c.interp->bus.threaded = c.jit->bus.threaded = true; /* harts serve fences asked of them */
  uint64_t *pte[2] = {(uint64_t *)(c.interp->bus.ram + PAGE_PT * 4096ULL + 8192) + page,
                      (uint64_t *)(c.jit->bus.ram + PAGE_PT * 4096ULL + 8192) + page};
  const uint64_t mapped = *pte[0];
  uint64_t faults = 0;
  for (int i = 0; i < 100000 && !(c.interp->hart.wfi && c.jit->hart.wfi); i++) {
    if (i % 40 == 13 || i % 40 == 27) { /* the other hart: unmap or map again, then fence */
      for (int k = 0; k < 2; k++) {
        *pte[k] = i % 40 == 13 ? 0 : mapped;
        rv_hart_ask_tlb_flush(k ? &c.jit->hart : &c.interp->hart);
      }
    }
    uint64_t budget = 1 + (uint64_t)i % 9;
    uint64_t ra = rv_hart_run(&c.interp->hart, budget);
    uint64_t rb = rv_hart_run(&c.jit->hart, budget);
    CHECK_EQ(ra, rb);
    char buf[256];
    const char *d = engine_diff(c.interp, c.jit, buf, sizeof(buf));
    if (d)
      TAP_FAIL("step %d: %s", i, d);
    if (c.jit->hart.scause == 13) { /* a load page fault: counted, and forgotten by both */
      faults++;
      c.jit->hart.scause = c.interp->hart.scause = 0;
    }
  }
  CHECK(c.jit->hart.wfi);
  CHECK(faults > 0); /* loads faulted while the page was away */
  c.interp->bus.threaded = c.jit->bus.threaded = false;
  c.programs++;
  c.finished++;
  diff_close(&c);
}

/* A kick (harts.c): a signal on the hart's own thread cuts its run short (rv_hart_cut_run), here
 * with a stop request as a stop-the-world sends. */
typedef struct kick_target {
  rv_hart *hart;
  volatile sig_atomic_t in_code; /* kicks that found translated code running */
} kick_target;

static void kick_handler(int sig, siginfo_t *si, void *uc) {
  (void)sig, (void)uc;
  kick_target *k = si->si_value.sival_ptr;
  if (k->hart->jit_frame)
    k->in_code++;
  __atomic_store_n(&k->hart->stop_request, true, __ATOMIC_RELAXED);
  rv_hart_cut_run(k->hart);
}

/* A loop that never ends: sha256-like rotates, a load and a store, a CSR read (a call into C that
 * ends its block) and a jump back. */
static void put_endless_loop(program *p, const struct rv_icache *dec) {
  memset(p, 0, sizeof(*p));
  gen g = {.rng = 1, .kind = KIND_M, .img = p->img, .dec = dec, .view = RAM_BASE};
  p->kind = KIND_M;
  put_handler(&g, false);
  g.at = PAGE_CODE * 4096ULL;
  p->entry = pc_of(&g, g.at);
  p->x[5] = 0x0123456789abcdefULL;
  p->x[R_DATA] = RAM_BASE + PAGE_DATA * 4096ULL;
  uint64_t top = g.at;
  put32(&g, enc_i(26, 5, 1, 6, 0x1b));        /* slliw x6, x5, 26 */
  put32(&g, enc_i(6, 5, 5, 7, 0x1b));         /* srliw x7, x5, 6 */
  put32(&g, enc_r(0, 6, 7, 6, 7, 0x33));      /* or x7, x7, x6 */
  put32(&g, enc_i(0, R_DATA, 3, 20, 0x03));   /* ld x20, 0(x31) */
  put32(&g, enc_r(0, 7, 5, 0, 5, 0x33));      /* add x5, x5, x7 */
  put32(&g, enc_r(0, 20, 5, 4, 5, 0x33));     /* xor x5, x5, x20 */
  put32(&g, enc_s(0, 5, R_DATA, 3, 0x23));    /* sd x5, 0(x31) */
  put32(&g, enc_i(1, 9, 0, 9, 0x13));         /* addi x9, x9, 1 */
  put32(&g, enc_csrr(23, 0x340));             /* csrr x23, mscratch */
  put32(&g, enc_r(0, 23, 5, 0, 5, 0x33));     /* add x5, x5, x23 */
  put32(&g, enc_j((int32_t)(top - g.at), 0)); /* j top */
}

TEST(a_run_cut_short_by_a_signal_keeps_its_count_exact) {
  /* The handler may stop translated code anywhere: in a block, between a block's count and its
   * budget update, in a C function a block called, in the exit stub. Each run, cut at a
   * different moment, must end at an instruction boundary with the count it returns exact:
   * the other engine, run for that many instructions, reaches the same state. The engines take
   * turns being cut. */
  diff_ctx c = diff_open("cut runs", 0);
  put_endless_loop(c.prog, c.interp->hart.icache);
  engine_load(c.interp, c.prog);
  engine_load(c.jit, c.prog);
  struct sigaction sa = {.sa_sigaction = kick_handler, .sa_flags = SA_SIGINFO}, old;
  sigemptyset(&sa.sa_mask);
  CHECK(sigaction(SIGRTMIN, &sa, &old) == 0);
  kick_target targets[2] = {{.hart = &c.jit->hart}, {.hart = &c.interp->hart}};
  enum { ROUNDS = 40 };
  const uint64_t budget = 1ULL << 50;
  for (unsigned round = 0; round < ROUNDS; round++) {
    kick_target *k = &targets[round % 2];
    engine *cut = round % 2 ? c.interp : c.jit, *other = round % 2 ? c.jit : c.interp;
    struct sigevent ev = {
        .sigev_notify = SIGEV_THREAD_ID, .sigev_signo = SIGRTMIN, .sigev_value.sival_ptr = k};
    ev._sigev_un._tid = gettid();
    timer_t timer;
    CHECK(timer_create(CLOCK_MONOTONIC, &ev, &timer) == 0);
    long us = 50 + (long)(round * 53 % 400);
    struct itimerspec when = {.it_value = {.tv_sec = 0, .tv_nsec = us * 1000}};
    CHECK(timer_settime(timer, 0, &when, NULL) == 0);
    cut->hart.stop_request = false;
    uint64_t n = rv_hart_run(&cut->hart, budget);
    timer_delete(timer);
    cut->hart.stop_request = false;
    CHECK(n > 0 && n < budget);
    CHECK_EQ(rv_hart_run(&other->hart, n), n);
    char buf[256];
    const char *d = engine_diff(c.interp, c.jit, buf, sizeof(buf));
    if (d)
      TAP_FAIL("round %u (%s cut after %" PRIu64 " instructions): %s", round,
               round % 2 ? "interpreter" : "translated code", n, d);
    c.steps += 2;
    c.insns += n;
  }
  sigaction(SIGRTMIN, &old, NULL);
  /* the loop ran as translated code, where most kicks found it */
  CHECK(targets[0].in_code > 0);
  CHECK(c.jit->hart.x[9] > 0);
  c.programs++;
  diff_close(&c);
}

TEST(straight_line_programs) { run_many("straight-line", KIND_LINE, 1, 3000, 0); }

TEST(programs_with_loops_jumps_and_traps) { run_many("M-mode", KIND_M, 100000, 3000, 0); }

TEST(sv39_programs_in_s_mode) { run_many("S-mode Sv39", KIND_S, 200000, 3000, 0); }

/* Blocks first run in the interpreter, then translated: links and jump-cache entries between
 * interpreted and translated blocks, and blocks translated in the middle of a loop. */
TEST(programs_whose_blocks_warm_up) {
  run_many("M-mode, warm-up 2", KIND_M, 400000, 1000, 2);
  run_many("S-mode Sv39, warm-up 1", KIND_S, 500000, 1000, 1);
}

/* V=1: the translator runs guest code through the V=1 TLB sets (its jump cache keyed by them) */
TEST(two_stage_programs_in_vs_mode) {
  run_many("VS-mode Sv39 over Sv39x4", KIND_VS, 300000, 3000, 0);
}

int main(void) {
  const char *seed = getenv("JIT_DIFF_SEED");
  if (seed) { /* debugging: one program, traced */
    const char *k = getenv("JIT_DIFF_KIND");
    enum prog_kind kind = !k || strcmp(k, "m") == 0 ? KIND_M
                          : strcmp(k, "s") == 0     ? KIND_S
                          : strcmp(k, "vs") == 0    ? KIND_VS
                                                    : KIND_LINE;
    volatile int failed = 0;
    if (setjmp(tap.fail_jmp) == 0) {
      const char *w = getenv("JIT_DIFF_WARMUP");
      diff_ctx c = diff_open("one", w ? (unsigned)strtoul(w, NULL, 0) : 0);
      c.verbose = true;
      generate(c.prog, strtoull(seed, NULL, 0), kind, c.interp->hart.icache);
      for (uint64_t o = PAGE_CODE * 4096ULL; o < (PAGE_CODE + CODE_PAGES) * 4096ULL; o += 2) {
        uint16_t v;
        memcpy(&v, c.prog->img + o, 2);
        if (v)
          fprintf(stderr, "0x%" PRIx64 ": %04x\n",
                  (uint64_t)((paged(kind) ? VA_BASE : RAM_BASE) + o), v);
      }
      run_program(&c, strtoull(seed, NULL, 0), kind);
      diff_close(&c);
    } else {
      failed = 1;
      printf("# %s\n", tap.fail_msg);
    }
    return failed;
  }
  return tap_run();
}
