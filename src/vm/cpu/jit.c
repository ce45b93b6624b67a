/* The translator: decoded blocks (cpu.c) become x86-64 code, one host routine per block.
 *
 * Why: the interpreter pays one indirect jump per guest instruction, and in kernel code the host
 * mispredicts many of them. Translated code runs a block's instructions as straight-line host code
 * and pays one indirect call per block.
 *
 * The shape is a template translator, the simplest that removes the dispatch:
 * - Guest registers live in memory (rv_hart.x; x[0] is always 0). The few a block uses most
 *   (up to ten) are loaded into host registers when the block starts and stay there while its
 * inline instructions run; the ones it changed are written back before every call into C (handlers,
 *   slow paths: they see and may change rv_hart.x, and may trap) and before it leaves, and all
 *   are loaded again after a call. Everything else is "load operands, operate, store".
 * - Loads and stores look up the TLB inline (the same entries rv_load/rv_store use) and call
 *   one C slow path (access_slow) when it misses. Accesses through one base register with only
 *   ALU operations between them are checked once for all (plan_groups).
 * - Everything else calls the instruction's handler with h->pc and h->next_pc set, exactly as the
 *   interpreter does.
 * - A block leaves early when an instruction trapped or asked to leave (h->check_irq), as in the
 *   interpreter, with h->pc = h->next_pc and the instruction counted.
 * - Blocks go on to the next without returning to C: a direct jump within the page is linked to
 *   the next block's code (rv_jit_link), other jumps look in the jump cache; every block's chain
 *   entry checks the run's budget and its page's code counter first. A block that branches back
 *   to its own start (a tight loop) goes round in its own code, its kept registers staying in
 *   host registers between iterations; the same checks guard each iteration. So does a block
 *   whose branch goes to a short tail of ALU operations and a jump back, in another page too
 *   (find_tail: the tail is translated into the block, checked against the fetch TLB and its
 *   page's code counter each time it runs).
 * - A few idioms become one host instruction: a rotate spelled as two shifts and an or is a ror,
 *   and the shifts go when nothing can see their results.
 *
 * The block's code does not depend on its virtual address: blocks are keyed by physical address
 * (a page may be mapped at several addresses), so the code takes the block's pc from h->pc on
 * entry and computes every pc from it.
 *
 * Code is written through one mapping and run through another of the same memory (W^X: no page is
 * writable and executable at once). Translated code is dropped together with the decoded blocks
 * (rv_jit_reset when the pool is emptied), so a block and its code always agree.
 *
 * Registers in translated code: rbx = the hart, r12 = the block's pc, rbp, rsi, rdi, r8-r11 and
 * r13-r15 = guest registers the block keeps (ten); rax, rcx, rdx are scratch (the inline TLB
 * lookup needs no more). The frame of rv_jit_enter holds the run's budget and how much of it is
 * left (a count in a register cost that register a guest value), and what the inline TLB lookups
 * need: the load and store TLB sets serving now and the TLB tag (memory operands cost the
 * lookups one load more, and free three host registers for guest registers). */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "vm/cpu/cpu_internal.h"

#if defined(__x86_64__)

#define RV_JIT_CODE_SIZE (32U << 20)
/* The writable view's pages behind the write position are unmapped (madvise) in steps of
 * RV_JIT_TRIM_STEP, all but the last RV_JIT_TRIM_KEEP bytes: the code stays in the memfd and in
 * the executable view, and a later link into it maps its page again. Without this every page of
 * code counted twice in the VMM's RSS (once per view). The pages ahead of the write position are
 * mapped a step at a time (one system call instead of a page fault per page). With steps of
 * 1 MiB the writable view still held 1.5-3 MiB per hart (the step ahead, the one behind); 256 KiB
 * steps keeping 64 KiB took 1.6 MiB off a 1-hart boot's peak RSS for 2% more minor page faults
 * (links into older code), with no CPU time difference measurable (2026-12-07). */
#define RV_JIT_TRIM_STEP (256U << 10)
#define RV_JIT_TRIM_KEEP (64U << 10)
/* The most code one guest instruction becomes, fast and slow path together (checked). */
#define RV_JIT_INSN_MAX 320
#define RV_JIT_BLOCK_EXTRA 128
#define RV_JIT_JMP_SIZE 8192
_Static_assert((RV_JIT_JMP_SIZE & (RV_JIT_JMP_SIZE - 1)) == 0, "a power of two");
/* The jump cache's index of pc: its halfword within the page, mixed with the page number so that
 * code 8 KiB apart (kernel and user code, a caller and its callee) does not share entries. All pcs
 * of one page still land in 2048 distinct entries (the page's bits are one value to xor). */
#define RV_JIT_JMP_HASH_SHIFT 14
static unsigned jmp_index(uint64_t pc) {
  return (unsigned)((pc >> 1) ^ (pc >> RV_JIT_JMP_HASH_SHIFT)) & (RV_JIT_JMP_SIZE - 1);
}
#define RV_JIT_JMP_PAGE_BITS 32768
#define RV_JIT_JMP_MARKED 0x8000U
_Static_assert(RV_JIT_JMP_PAGE_BITS <= RV_JIT_JMP_MARKED, "a page bit fits beside the mark");
#define RV_JIT_KIND_MEMO 64
/* The most instructions of a loop's tail (find_tail), its jump back included, and of the
 * instructions between a block and its branch to the tail (decode_continuation: every block that
 * ends without a jump looks at these, so few). */
#define RV_JIT_TAIL_MAX 12
#define RV_JIT_CONT_MAX 3
static unsigned jmp_page_bit(uint64_t vpn) {
  return (unsigned)(vpn ^ (vpn >> 15) ^ (vpn >> 30)) & (RV_JIT_JMP_PAGE_BITS - 1);
}

struct rv_jit {
  uint8_t *rw; /* the writable view */
  uint8_t *rx; /* the executable view of the same memory */
  size_t size;
  size_t stubs_end; /* the entry and exit stubs live below this and survive resets */
  size_t used;
  size_t trimmed;                /* the writable view holds no pages between stubs_end and this */
  size_t populated;              /* and holds the pages from the write position up to this */
  size_t enter, left, out, step; /* offsets of the stubs */
  size_t chain_bytes;            /* the length of a block's chain entry (emit_chain_entry) */
  /* The jump cache: blocks by virtual pc for jumps that leave their page or go to a computed
   * address (the translation can differ at each run, so these cannot be linked). */
  struct rv_jit_jmp {
    uint64_t pc;
    uint64_t tag; /* tlb_tag (or tlb_gtag) | fetch_tlb when it was filled: the same translation */
    const void *chain; /* the block's chain entry */
    uint64_t unused;   /* entries are 32 bytes: the lookup scales the index by shifting */
  } jmp[RV_JIT_JMP_SIZE];
  /* Virtual pages (by jmp_page_bit) that may have entries in jmp: SFENCE.VMA of a page without
   * any (most are data pages: Linux fences each page it faults in) need not look through the
   * quarter of the cache its pcs index. */
  uint64_t jmp_pages[RV_JIT_JMP_PAGE_BITS / 64];
  /* Each jmp entry's page (its jmp_page_bit | RV_JIT_JMP_MARKED; 0 once forgotten), apart from
   * the entries: a one-page fence reads these 4 KiB of its quarter of the cache and only the
   * entries they point at, instead of the quarter's 64 KiB (17,000 such fences in a boot). */
  uint16_t jmp_page[RV_JIT_JMP_SIZE];
  /* rv_fast_kind of handlers seen at a block's end or writing x0 (handler_kind) */
  struct rv_jit_kind {
    rv_exec_fn fn;
    uint8_t kind;
  } kinds[RV_JIT_KIND_MEMO];
  uint64_t tails; /* blocks translated with their loop's tail (find_tail) */
};

enum { RAX, RCX, RDX, RBX, RSP, RBP, RSI, RDI, R8, R9, R10, R11, R12, R13, R14, R15 };
enum { CC_B = 2, CC_AE = 3, CC_E = 4, CC_NE = 5, CC_A = 7, CC_L = 0xc, CC_GE = 0xd };

#define HART_OFF(field) ((int32_t)offsetof(rv_hart, field))
/* The frame of rv_jit_enter (emit_stubs): [rsp + FRAME_*] while translated code runs. */
#define FRAME_LEFT 0    /* of those, the instructions not yet run: blocks subtract their own */
#define FRAME_LIMIT 8   /* the most instructions this run may execute */
#define FRAME_LD_TLB 16 /* the TLB set (read entries) that serves loads now */
#define FRAME_ST_TLB 24 /* the TLB set (write entries) that serves stores now */
#define FRAME_TAG 32    /* the TLB tag of the current address space */
#define FRAME_BYTES 40  /* below the six saved registers; keeps rsp 16-byte aligned for calls */
#define X_OFF(r) ((int32_t)(8 * (r)))
#define TLB_ACCESS_BYTES ((int32_t)(RV_TLB_SIZE * sizeof(rv_tlb_entry)))
#define TLB_SET_BYTES (3 * TLB_ACCESS_BYTES)
_Static_assert(sizeof(rv_tlb_entry) == 16, "the inline TLB lookup scales the index by 16");
_Static_assert(offsetof(rv_hart, x) == 0, "guest registers are addressed from the hart");

/* ---------------------------------------------------------------- the x86-64 emitter */

typedef struct emitter {
  uint8_t *start, *p, *end;
  uint8_t *chain_go; /* the chain entry's jump into the block's body */
  /* guest registers held in host registers (bit r: x[r] is in host_of[r]), and those of them
   * changed since they were last written back */
  uint32_t cached, dirty;
  uint8_t host_of[32];
} emitter;

static void b1(emitter *e, unsigned v) {
  if (e->p < e->end)
    *e->p = (uint8_t)v;
  e->p++;
}
static void b4(emitter *e, uint32_t v) {
  for (int i = 0; i < 4; i++)
    b1(e, (v >> (8 * i)) & 0xff);
}
static bool fits8(int64_t v) { return v >= -128 && v <= 127; }
static bool fits32(int64_t v) { return v >= INT32_MIN && v <= INT32_MAX; }

/* One instruction is written through a local cursor (a host register once inlined: a store
 * through e->p would make the compiler load e->p again after every byte) into the buffer, or into
 * a scratch area when the buffer has no room left (the emitter then only counts its bytes, and
 * rv_jit_translate sees the overflow). */
#define INSN_MAX_BYTES 16
static uint8_t *insn_open(const emitter *e, uint8_t *scratch) {
  return e->end - e->p >= INSN_MAX_BYTES ? e->p : scratch;
}
static void insn_close(emitter *e, const uint8_t *first, const uint8_t *p) {
  size_t n = (size_t)(p - first);
  if (first != e->p && e->p <= e->end && n <= (size_t)(e->end - e->p))
    memcpy(e->p, first, n); /* written to the scratch area, and fits after all */
  e->p += n;
}
static uint8_t *w1(uint8_t *p, unsigned v) {
  *p = (uint8_t)v;
  return p + 1;
}
static uint8_t *w4(uint8_t *p, uint32_t v) {
  memcpy(p, &v, 4);
  return p + 4;
}
/* an immediate of 0, 1 or 4 bytes */
static uint8_t *w_imm(uint8_t *p, int32_t imm, unsigned bytes) {
  if (bytes == 1)
    return w1(p, (uint8_t)imm);
  return bytes == 4 ? w4(p, (uint32_t)imm) : p;
}

/* REX prefix: w = 64-bit operand; reg, index and base contribute their high bits. */
static uint8_t *w_rex(uint8_t *p, bool w, int reg, int index, int base) {
  unsigned r = 0x40 | (w ? 8 : 0) | ((reg >> 3) << 2) | ((index >> 3) << 1) | (base >> 3);
  return r != 0x40 ? w1(p, r) : p;
}
static uint8_t *w_opcode(uint8_t *p, unsigned opcode) {
  if (opcode > 0xff)
    p = w1(p, opcode >> 8);
  return w1(p, opcode & 0xff);
}

/* ModRM (+SIB, displacement) for [base + disp] or, with index >= 0, [base + index + disp]. */
static uint8_t *w_modrm_mem(uint8_t *p, int reg, int base, int index, int32_t disp) {
  unsigned mod = (disp == 0 && (base & 7) != RBP) ? 0 : fits8(disp) ? 1 : 2;
  if (index >= 0) {
    p = w1(p, (mod << 6) | ((unsigned)(reg & 7) << 3) | 4);
    p = w1(p, ((unsigned)(index & 7) << 3) | (unsigned)(base & 7));
  } else {
    p = w1(p, (mod << 6) | ((unsigned)(reg & 7) << 3) | (unsigned)(base & 7));
    if ((base & 7) == RSP)
      p = w1(p, 0x24);
  }
  if (mod == 1)
    p = w1(p, (uint8_t)disp);
  else if (mod == 2)
    p = w4(p, (uint32_t)disp);
  return p;
}

/* op reg, [base + index + disp] (or the reverse direction, as the opcode says), followed by an
 * immediate of imm_bytes (0, 1 or 4). The opcode may be two bytes (0x0f xx); a 0x66 prefix for
 * 16-bit operands goes before the call. */
static void op_mem_imm(emitter *e, bool w, unsigned opcode, int reg, int base, int index,
                       int32_t disp, int32_t imm, unsigned imm_bytes) {
  uint8_t scratch[INSN_MAX_BYTES];
  uint8_t *first = insn_open(e, scratch), *p = first;
  p = w_rex(p, w, reg, index < 0 ? 0 : index, base);
  p = w_opcode(p, opcode);
  p = w_modrm_mem(p, reg, base, index, disp);
  insn_close(e, first, w_imm(p, imm, imm_bytes));
}
static void op_mem(emitter *e, bool w, unsigned opcode, int reg, int base, int index,
                   int32_t disp) {
  op_mem_imm(e, w, opcode, reg, base, index, disp, 0, 0);
}
/* op reg, rm (register operands), followed by an immediate of imm_bytes (0, 1 or 4). */
static void op_reg_imm(emitter *e, bool w, unsigned opcode, int reg, int rm, int32_t imm,
                       unsigned imm_bytes) {
  uint8_t scratch[INSN_MAX_BYTES];
  uint8_t *first = insn_open(e, scratch), *p = first;
  p = w_rex(p, w, reg, 0, rm);
  p = w_opcode(p, opcode);
  p = w1(p, 0xc0 | ((unsigned)(reg & 7) << 3) | (unsigned)(rm & 7));
  insn_close(e, first, w_imm(p, imm, imm_bytes));
}
static void op_reg(emitter *e, bool w, unsigned opcode, int reg, int rm) {
  op_reg_imm(e, w, opcode, reg, rm, 0, 0);
}

static void mov_load(emitter *e, int reg, int base, int32_t disp) {
  op_mem(e, true, 0x8b, reg, base, -1, disp);
}
static void mov_store(emitter *e, int base, int32_t disp, int reg) {
  op_mem(e, true, 0x89, reg, base, -1, disp);
}
static void lea(emitter *e, int reg, int base, int32_t disp) {
  op_mem(e, true, 0x8d, reg, base, -1, disp);
}
/* mov reg, imm64 in its 10-byte form (fixed length) */
static void mov_imm64(emitter *e, int reg, uint64_t v) {
  uint8_t scratch[INSN_MAX_BYTES];
  uint8_t *first = insn_open(e, scratch), *p = first;
  p = w_rex(p, true, 0, 0, reg);
  p = w1(p, 0xb8 + (reg & 7));
  p = w4(p, (uint32_t)v);
  insn_close(e, first, w4(p, (uint32_t)(v >> 32)));
}
/* mov reg, imm: the shortest form that gives the 64-bit value. */
static void mov_imm(emitter *e, int reg, uint64_t v) {
  if (v <= UINT32_MAX) {
    uint8_t scratch[INSN_MAX_BYTES];
    uint8_t *first = insn_open(e, scratch), *p = first;
    p = w_rex(p, false, 0, 0, reg);
    p = w1(p, 0xb8 + (reg & 7));
    insn_close(e, first, w4(p, (uint32_t)v));
  } else if (fits32((int64_t)v)) {
    op_reg_imm(e, true, 0xc7, 0, reg, (int32_t)v, 4);
  } else {
    mov_imm64(e, reg, v);
  }
}
/* Group-1 ALU with an immediate: ext = 0 add, 1 or, 4 and, 5 sub, 6 xor, 7 cmp. */
static void alu_imm(emitter *e, bool w, unsigned ext, int reg, int32_t imm) {
  if (fits8(imm))
    op_reg_imm(e, w, 0x83, (int)ext, reg, imm, 1);
  else
    op_reg_imm(e, w, 0x81, (int)ext, reg, imm, 4);
}
/* The same on a 64-bit memory operand [base + disp]. */
static void alu_mem_imm(emitter *e, unsigned ext, int base, int32_t disp, int32_t imm) {
  if (fits8(imm))
    op_mem_imm(e, true, 0x83, (int)ext, base, -1, disp, imm, 1);
  else
    op_mem_imm(e, true, 0x81, (int)ext, base, -1, disp, imm, 4);
}
/* Shift by an immediate: ext = 1 ror, 4 shl, 5 shr, 7 sar. */
static void shift_imm(emitter *e, bool w, unsigned ext, int reg, unsigned count) {
  op_reg_imm(e, w, 0xc1, (int)ext, reg, (int32_t)count, 1);
}
static void movsxd(emitter *e, int reg, int rm) { op_reg(e, true, 0x63, reg, rm); }
/* setcc al; movzx eax, al */
static void setcc_rax(emitter *e, unsigned cc) {
  op_reg(e, false, 0x0f90 + cc, 0, RAX);
  op_reg(e, false, 0x0fb6, RAX, RAX);
}
/* A jump (opcode 0xe9) or conditional jump (0x0f8x) with a 32-bit displacement; returns where
 * the displacement is. */
static uint8_t *jump32(emitter *e, unsigned opcode) {
  uint8_t scratch[INSN_MAX_BYTES];
  uint8_t *first = insn_open(e, scratch), *p = w_opcode(first, opcode);
  uint8_t *at = e->p + (p - first);
  insn_close(e, first, w4(p, 0));
  return at;
}
static uint8_t *jcc32(emitter *e, unsigned cc) { return jump32(e, 0x0f80 + cc); }
static uint8_t *jmp32(emitter *e) { return jump32(e, 0xe9); }
/* Point the displacement at `at` to `target` (both in the buffer being written). */
static void patch(emitter *e, uint8_t *at, const uint8_t *target) {
  if (at + 4 > e->end)
    return;
  int32_t rel = (int32_t)(target - (at + 4));
  memcpy(at, &rel, 4);
}
static void call_abs(emitter *e, const void *fn) {
  mov_imm(e, RAX, (uint64_t)(uintptr_t)fn);
  op_reg(e, false, 0xff, 2, RAX); /* call rax */
}

/* ---------------------------------------------------------------- guest state */

/* The host register that holds guest register r, or -1 when it lives in rv_hart.x (x0 too). */
static int host_reg(const emitter *e, unsigned r) {
  return r && (e->cached & (1U << r)) ? e->host_of[r] : -1;
}

static void load_x(emitter *e, int reg, unsigned r) {
  if (r == 0)
    op_reg(e, false, 0x31, reg, reg); /* xor reg, reg: x0 reads as 0 */
  else if (e->cached & (1U << r))
    op_reg(e, true, 0x8b, reg, e->host_of[r]); /* mov reg, host */
  else
    mov_load(e, reg, RBX, X_OFF(r));
}
static void store_x(emitter *e, unsigned r, int reg) {
  if (r == 0)
    return;
  if (e->cached & (1U << r)) {
    op_reg(e, true, 0x8b, e->host_of[r], reg); /* mov host, reg */
    e->dirty |= 1U << r;
  } else {
    mov_store(e, RBX, X_OFF(r), reg);
  }
}

/* The host registers that hold guest registers, and how many uses make a register worth one.
 * rsi, rdi and rbp are spread among the others so that blocks with few kept registers use them
 * too (the differential test then covers their encodings: no REX prefix of their own, rbp's
 * special base form). */
static const uint8_t cache_regs[] = {R8, RSI, R9, RDI, R10, RBP, R11, R13, R14, R15};
#define CACHE_MIN_USES 3

/* Store the kept registers in `regs` to rv_hart.x. */
static void write_back(emitter *e, uint32_t regs) {
  for (uint32_t m = regs & e->cached & ~1U; m; m &= m - 1) {
    unsigned r = (unsigned)__builtin_ctz(m);
    mov_store(e, RBX, X_OFF(r), e->host_of[r]);
  }
}
/* Load the kept registers in `regs` from rv_hart.x. */
static void load_cached(emitter *e, uint32_t regs) {
  for (uint32_t m = regs & e->cached & ~1U; m; m &= m - 1) {
    unsigned r = (unsigned)__builtin_ctz(m);
    mov_load(e, e->host_of[r], RBX, X_OFF(r));
  }
}
/* Load every kept register (after a call: it may have changed any). */
static void reload_cached(emitter *e) { load_cached(e, e->cached); }
/* reg = the pc of the block plus delta */
static void pc_plus(emitter *e, int reg, int64_t delta) {
  if (fits32(delta)) {
    lea(e, reg, R12, (int32_t)delta);
  } else {
    mov_imm(e, reg, (uint64_t)delta);
    op_reg(e, true, 0x01, R12, reg); /* add reg, r12 */
  }
}
/* h->pc and h->next_pc for the instruction at offset off of length len (for handlers and faults).
 */
static void set_pc(emitter *e, int64_t off, unsigned len) {
  pc_plus(e, RAX, off);
  mov_store(e, RBX, HART_OFF(pc), RAX);
  lea(e, RAX, RAX, (int32_t)len);
  mov_store(e, RBX, HART_OFF(next_pc), RAX);
}

/* ---------------------------------------------------------------- block exits */

enum { PLAN_EMIT, PLAN_SKIP, PLAN_ROR };
enum { GROUP_NONE, GROUP_LEAD, GROUP_MEMBER };

typedef struct block_ctx {
  struct rv_jit *j;
  emitter e;
  uintptr_t key;  /* host address of the block's first instruction */
  int64_t off;    /* the current instruction's offset from the block's pc */
  unsigned index; /* and its index in the block: index + 1 instructions have run after it */
  /* loads and stores whose slow paths follow the block's body */
  struct slow_path {
    const rv_insn *d;
    uint8_t kind;
    bool group;     /* of a group (plan_groups): retry alone, then leave rdx "unchecked" */
    uint8_t *miss;  /* the jump that takes it */
    uint32_t dirty; /* kept registers not yet written back at the instruction */
    uint8_t *resume;
    int64_t off;
    unsigned index;
  } slow[RV_BLOCK_MAX];
  unsigned n_slow;
  /* Instructions translated otherwise than by their template (plan_rotates, plan_dead). */
  struct plan {
    uint8_t kind; /* rv_fast_kind of the instruction's handler */
    bool alu;     /* an ALU operation of alu_ops[] (no fault, no call) */
    uint8_t what; /* PLAN_EMIT, PLAN_SKIP (nothing sees the result), PLAN_ROR (an or) */
    uint8_t bits, amount, src; /* PLAN_ROR: rd = x[src] rotated right by amount, in bits */
    uint8_t group;             /* GROUP_NONE, GROUP_LEAD or GROUP_MEMBER (plan_groups) */
    int16_t lo, hi; /* GROUP_LEAD: the bytes the group reaches, as offsets from its base */
    int32_t delta;  /* GROUP_MEMBER: what addi added to the base since the group's first access */
  } plan[RV_BLOCK_MAX + RV_JIT_CONT_MAX + RV_JIT_TAIL_MAX]; /* the block's, then its tail's */
  /* A block whose last instruction branches back to its start, or to a tail that jumps back to
   * it (find_tail), runs its loop without leaving (emit_loop_edge): the kept registers stay in
   * host registers, all counted as changed. */
  bool loops;
  uint8_t *loop_top;       /* where the body starts, the kept registers loaded */
  const uint32_t *counter; /* the code counter of the block's page */
  uint32_t gen;            /* and its value when the block was decoded */
} block_ctx;

static uint8_t *stub(const block_ctx *c, size_t off) { return c->j->rw + off; }

/* `count` more instructions ran: minstret, and what is left of this run's budget. */
static void count_insns(emitter *e, unsigned count) {
  alu_mem_imm(e, 0, RBX, HART_OFF(minstret), (int32_t)count);
  alu_mem_imm(e, 5, RSP, FRAME_LEFT, (int32_t)count);
}
/* The instruction that just ran trapped or asked to leave: h->pc = h->next_pc, `count`
 * instructions of the block ran (the stub counts them). */
static void exit_left(block_ctx *c, unsigned count) {
  mov_imm(&c->e, RAX, count);
  patch(&c->e, jmp32(&c->e), stub(c, c->j->left));
}
/* h->pc is set and the block's instructions are counted: back to the caller. */
static void exit_out(block_ctx *c) {
  op_reg(&c->e, false, 0x31, RDX, RDX); /* xor edx, edx: no exit to link */
  patch(&c->e, jmp32(&c->e), stub(c, c->j->out));
}
/* After a call: leave if the instruction trapped or asked to. */
static void leave_if_asked(block_ctx *c) {
  op_mem(&c->e, false, 0x80, 7, RBX, -1, HART_OFF(check_irq)); /* cmp byte [check_irq], 0 */
  b1(&c->e, 0);
  uint8_t *stay = jcc32(&c->e, CC_E);
  exit_left(c, c->index + 1);
  patch(&c->e, stay, c->e.p);
}

/* ---------------------------------------------------------------- instructions */

/* The handler call of an instruction; the kept registers are in rv_hart.x around it and in their
 * host registers again after it. */
static void emit_call_handler(block_ctx *c, const rv_insn *d) {
  emitter *e = &c->e;
  write_back(e, e->dirty);
  e->dirty = 0;
  set_pc(e, c->off, d->len);
  op_reg(e, true, 0x8b, RDI, RBX); /* mov rdi, rbx */
  mov_imm(e, RSI, (uint64_t)(uintptr_t)d);
  call_abs(e, (const void *)d->fn);
  op_mem(e, true, 0xc7, 0, RBX, -1, X_OFF(0)); /* mov qword [x0], 0 */
  b4(e, 0);
  reload_cached(e);
}

/* The load's sign or zero extension from [base + index + disp]: size and signedness from the
 * kind (movsx/movzx: no separate extension). */
static void load_extend(emitter *e, uint8_t fast, int dst, int base, int index, int32_t disp) {
  switch (fast) {
  case RV_FAST_lb:
    op_mem(e, true, 0x0fbe, dst, base, index, disp);
    break;
  case RV_FAST_lbu:
    op_mem(e, false, 0x0fb6, dst, base, index, disp);
    break;
  case RV_FAST_lh:
    op_mem(e, true, 0x0fbf, dst, base, index, disp);
    break;
  case RV_FAST_lhu:
    op_mem(e, false, 0x0fb7, dst, base, index, disp);
    break;
  case RV_FAST_lw:
    op_mem(e, true, 0x63, dst, base, index, disp);
    break;
  case RV_FAST_lwu:
    op_mem(e, false, 0x8b, dst, base, index, disp);
    break;
  default:
    op_mem(e, true, 0x8b, dst, base, index, disp);
    break;
  }
}

static unsigned access_size(uint8_t fast) {
  switch (fast) {
  case RV_FAST_lb:
  case RV_FAST_lbu:
  case RV_FAST_sb:
    return 1;
  case RV_FAST_lh:
  case RV_FAST_lhu:
  case RV_FAST_sh:
    return 2;
  case RV_FAST_lw:
  case RV_FAST_lwu:
  case RV_FAST_sw:
    return 4;
  default:
    return 8;
  }
}

static bool is_load(uint8_t fast) { return fast >= RV_FAST_lb && fast <= RV_FAST_lwu; }
static bool is_store(uint8_t fast) { return fast >= RV_FAST_sb && fast <= RV_FAST_sd; }

/* The inline TLB lookup of a load or store through base register rs1 for the bytes [x[rs1] + lo,
 * x[rs1] + hi]: the entry of the first byte's page is compared with the page of the last byte, so
 * that a range that leaves its page differs there and misses, with no check of its own. On a hit
 * rdx = what emit_access_op addresses through: the entry's addend when the block keeps rs1 in a
 * host register, else rs1's host address (x[rs1] + addend); on a miss a jump (*miss, to patch)
 * with nothing changed but rax, rcx and rdx. Only rax, rcx and rdx are used, so that the other
 * registers can hold guest registers. */
static void emit_lookup(emitter *e, const rv_insn *d, int32_t tlb_slot, int32_t lo, int32_t hi,
                        uint8_t **miss) {
  int base = host_reg(e, d->rs1);
  if (base < 0) {
    load_x(e, RDX, d->rs1);
    base = RDX;
  }
  lea(e, RAX, base, hi); /* rax = (last byte >> 12) | tag */
  shift_imm(e, true, 5, RAX, 12);
  op_mem(e, false, 0x8d, RCX, base, -1, lo); /* ecx = (first byte's vpn % RV_TLB_SIZE) * 16 */
  shift_imm(e, false, 5, RCX, 12 - 4);
  alu_imm(e, false, 4, RCX, (RV_TLB_SIZE - 1) << 4);
  op_mem(e, true, 0x0b, RAX, RSP, -1, FRAME_TAG); /* or rax, tag */
  op_mem(e, true, 0x03, RCX, RSP, -1, tlb_slot);  /* rcx = the entry */
  op_mem(e, true, 0x3b, RAX, RCX, -1, 0);         /* cmp rax, [rcx].vpn */
  *miss = jcc32(e, CC_NE);
  if (base == RDX)
    op_mem(e, true, 0x03, RDX, RCX, -1, 8); /* add rdx, [rcx].addend */
  else
    mov_load(e, RDX, RCX, 8); /* mov rdx, [rcx].addend */
}

/* The access itself, through what emit_lookup left in rdx: [rdx + kept rs1 + imm] or
 * [rdx + moved + imm], where moved is what addi added to rs1 since that lookup (the host address
 * in rdx is the one of rs1 then). A load goes straight into rd's host register when the block
 * keeps rd. */
static void emit_access_op(emitter *e, const rv_insn *d, uint8_t kind, int32_t moved) {
  int index = host_reg(e, d->rs1);
  int32_t disp = index >= 0 ? d->imm : d->imm + moved;
  if (is_load(kind)) {
    int dst = host_reg(e, d->rd);
    load_extend(e, kind, dst < 0 ? RAX : dst, RDX, index, disp);
    if (dst < 0)
      store_x(e, d->rd, RAX);
    else
      e->dirty |= 1U << d->rd;
    return;
  }
  /* the value from its host register; a byte of rsi, rdi or rbp needs a REX prefix that w_rex
   * leaves out (without one their numbers name dh..bh), so those go through rax */
  unsigned size = access_size(kind);
  int src = host_reg(e, d->rs2);
  if (src < 0 || (size == 1 && src >= RSP && src <= RDI)) {
    load_x(e, RAX, d->rs2);
    src = RAX;
  }
  if (size == 2)
    b1(e, 0x66);
  op_mem(e, size == 8, size == 1 ? 0x88 : 0x89, src, RDX, index, disp);
}

/* Accesses of a group after the first (plan_groups) trust rdx from the first one's lookup unless
 * it holds the "unchecked" mark: 1 where rdx holds an addend (RAM is mapped at a page boundary,
 * so a page's addend has its low 12 bits clear), 0 where it holds a host address (RAM is mapped
 * far above 0, and that address is at most 2 KiB below RAM's). */
static bool group_rdx_is_addend(const emitter *e, const rv_insn *d) {
  return host_reg(e, d->rs1) >= 0;
}
static void emit_group_unchecked(emitter *e, const rv_insn *d) {
  if (group_rdx_is_addend(e, d))
    mov_imm(e, RDX, 1);
  else
    op_reg(e, false, 0x31, RDX, RDX); /* xor edx, edx */
}
/* A jump taken when rdx holds the mark. */
static uint8_t *emit_group_guard(emitter *e, const rv_insn *d) {
  if (group_rdx_is_addend(e, d)) {
    op_reg_imm(e, false, 0xf6, 0, RDX, 1, 1); /* test dl, 1 */
    return jcc32(e, CC_NE);
  }
  op_reg(e, true, 0x85, RDX, RDX); /* test rdx, rdx */
  return jcc32(e, CC_E);
}

/* A load or store (kind) in the block's body or at its end. Alone it looks up the TLB for its own
 * bytes; the first of a group (plan_groups) for the bytes of all of them, the others only check
 * that this lookup hit (rdx not "unchecked"). Misses go to the slow path (emit_slow_path). */
static void emit_mem(block_ctx *c, const rv_insn *d, uint8_t kind) {
  emitter *e = &c->e;
  const struct plan *p = &c->plan[c->index];
  struct slow_path *sp = &c->slow[c->n_slow++];
  *sp = (struct slow_path){.d = d,
                           .kind = kind,
                           .group = p->group != GROUP_NONE,
                           .dirty = e->dirty,
                           .off = c->off,
                           .index = c->index};
  int32_t slot = is_store(kind) ? FRAME_ST_TLB : FRAME_LD_TLB;
  if (p->group == GROUP_MEMBER)
    sp->miss = emit_group_guard(e, d);
  else if (p->group == GROUP_LEAD)
    emit_lookup(e, d, slot, p->lo, p->hi, &sp->miss);
  else
    emit_lookup(e, d, slot, d->imm, d->imm + (int32_t)access_size(kind) - 1, &sp->miss);
  emit_access_op(e, d, kind, p->group == GROUP_MEMBER ? p->delta : 0);
  sp->resume = e->p;
}

/* A load or store that the inline TLB lookup did not serve, at pc: the C slow path fills the TLB,
 * reaches devices and raises faults. Returns whether the block must leave (h->check_irq). */
static bool access_slow(rv_hart *h, uint64_t va, const rv_insn *d, uint64_t pc, uint64_t kind) {
  h->pc = pc;
  h->next_pc = pc + d->len;
  unsigned size = access_size((uint8_t)kind);
  if (is_store((uint8_t)kind)) {
    rv_store_slow(h, va, size, h->x[d->rs2]);
    return h->check_irq;
  }
  uint64_t v;
  if (rv_load_slow(h, va, size, &v) && d->rd) {
#define CONVERT(name, size, conv)                                                                  \
  case RV_FAST_##name:                                                                             \
    h->x[d->rd] = conv;                                                                            \
    break;
    /* the zero-extending loads convert alike */
    switch (kind) {
      // NOLINTNEXTLINE(bugprone-branch-clone)
      RV_LOAD_OPS(CONVERT)
    }
#undef CONVERT
  }
  return h->check_irq;
}

/* The out-of-line half of a load or store. One of a group first looks the TLB up for its own
 * bytes alone (the group's bytes missed: they may leave the page that this one's are in) and
 * goes back with rdx "unchecked", so that the rest of the group checks for itself too. Then the
 * call access_slow(h, va, d, pc, kind). */
static void emit_slow_path(block_ctx *c, const struct slow_path *sp) {
  emitter *e = &c->e;
  const rv_insn *d = sp->d;
  patch(e, sp->miss, e->p);
  uint8_t *miss = NULL;
  if (sp->group) {
    emit_lookup(e, d, is_store(sp->kind) ? FRAME_ST_TLB : FRAME_LD_TLB, d->imm,
                d->imm + (int32_t)access_size(sp->kind) - 1, &miss);
    emit_access_op(e, d, sp->kind, 0);
    emit_group_unchecked(e, d);
    patch(e, jmp32(e), sp->resume);
    patch(e, miss, e->p);
  }
  write_back(e, sp->dirty);
  int base = host_reg(e, d->rs1); /* rsi = va, before rsi (or rdi, r8) are set */
  if (base >= 0) {
    lea(e, RSI, base, d->imm);
  } else {
    load_x(e, RSI, d->rs1);
    if (d->imm)
      lea(e, RSI, RSI, d->imm);
  }
  op_reg(e, true, 0x8b, RDI, RBX);
  mov_imm64(e, RDX, (uint64_t)(uintptr_t)d);
  pc_plus(e, RCX, sp->off);
  mov_imm(e, R8, sp->kind);
  call_abs(e, (const void *)access_slow);
  reload_cached(e); /* a load wrote rv_hart.x[rd] */
  if (sp->group)
    emit_group_unchecked(e, d);
  op_reg(e, false, 0x84, RAX, RAX); /* test al, al */
  patch(e, jcc32(e, CC_E), sp->resume);
  exit_left(c, sp->index + 1);
}

/* The ALU operations of RV_ALU_R_OPS/RV_ALU_I_OPS that have a direct x86 form, as data: rax =
 * rs1 op (rcx = rs2, or the immediate).
 * - kind: ALU_BIN (code = "op r/m, reg" opcode, ext = its group-1 immediate extension), ALU_SHIFT
 *   (ext = shift group extension), ALU_SET (compare, code = the condition), ALU_MUL, ALU_LUI;
 * - word: a 32-bit operation whose result is sign-extended; imm: the second operand is the
 *   immediate. */
enum { ALU_BIN, ALU_SHIFT, ALU_SET, ALU_MUL, ALU_LUI };

/* opcode byte of "op r/m, reg" and the group-1 extension of the same operation */
#define BIN_ADD 0x01, 0
#define BIN_OR 0x09, 1
#define BIN_AND 0x21, 4
#define BIN_SUB 0x29, 5
#define BIN_XOR 0x31, 6

/* Indexed by kind (fast - RV_FAST_addi): the translator looks each ALU instruction up several
 * times, and a search through the list was a visible part of translating. */
#define ALU(name, ...) [RV_FAST_##name - RV_FAST_addi] = {RV_FAST_##name, __VA_ARGS__}
static const struct alu_op_desc {
  uint8_t fast, kind, code, ext, word, imm;
} alu_ops[] = {
    ALU(add, ALU_BIN, BIN_ADD, 0, 0),  ALU(sub, ALU_BIN, BIN_SUB, 0, 0),
    ALU(xor, ALU_BIN, BIN_XOR, 0, 0),  ALU(or, ALU_BIN, BIN_OR, 0, 0),
    ALU(and, ALU_BIN, BIN_AND, 0, 0),  ALU(addw, ALU_BIN, BIN_ADD, 1, 0),
    ALU(subw, ALU_BIN, BIN_SUB, 1, 0), ALU(addi, ALU_BIN, BIN_ADD, 0, 1),
    ALU(xori, ALU_BIN, BIN_XOR, 0, 1), ALU(ori, ALU_BIN, BIN_OR, 0, 1),
    ALU(andi, ALU_BIN, BIN_AND, 0, 1), ALU(addiw, ALU_BIN, BIN_ADD, 1, 1),
    ALU(sll, ALU_SHIFT, 0, 4, 0, 0),   ALU(srl, ALU_SHIFT, 0, 5, 0, 0),
    ALU(sra, ALU_SHIFT, 0, 7, 0, 0),   ALU(sllw, ALU_SHIFT, 0, 4, 1, 0),
    ALU(srlw, ALU_SHIFT, 0, 5, 1, 0),  ALU(sraw, ALU_SHIFT, 0, 7, 1, 0),
    ALU(slli, ALU_SHIFT, 0, 4, 0, 1),  ALU(srli, ALU_SHIFT, 0, 5, 0, 1),
    ALU(srai, ALU_SHIFT, 0, 7, 0, 1),  ALU(slliw, ALU_SHIFT, 0, 4, 1, 1),
    ALU(srliw, ALU_SHIFT, 0, 5, 1, 1), ALU(sraiw, ALU_SHIFT, 0, 7, 1, 1),
    ALU(slt, ALU_SET, CC_L, 7, 0, 0),  ALU(sltu, ALU_SET, CC_B, 7, 0, 0),
    ALU(slti, ALU_SET, CC_L, 7, 0, 1), ALU(sltiu, ALU_SET, CC_B, 7, 0, 1),
    ALU(mul, ALU_MUL, 0, 0, 0, 0),     ALU(mulw, ALU_MUL, 0, 0, 1, 0),
    ALU(lui, ALU_LUI, 0, 0, 0, 1),
};
#undef ALU

/* alu_ops covers RV_ALU_I_OPS and RV_ALU_R_OPS, the last kinds before RV_FAST_COUNT (plan_kinds
 * tells them by their range); a kind left out would have fast 0 (RV_FAST_CALL), which
 * rv_jit_create checks */
_Static_assert(sizeof(alu_ops) / sizeof(alu_ops[0]) == RV_FAST_COUNT - RV_FAST_addi,
               "every ALU kind has an x86 form");

static const struct alu_op_desc *alu_desc(uint8_t fast) {
  return fast >= RV_FAST_addi && fast < RV_FAST_COUNT ? &alu_ops[fast - RV_FAST_addi] : NULL;
}

static void emit_auipc(block_ctx *c, const rv_insn *d) {
  if (d->rd) {
    pc_plus(&c->e, RAX, c->off + d->imm);
    store_x(&c->e, d->rd, RAX);
  }
}

/* mulh, mulhu: the high half of the 128-bit product, which x86's one-operand imul/mul leave in
 * rdx. */
static void emit_mul_high(block_ctx *c, const rv_insn *d) {
  emitter *e = &c->e;
  if (d->rd == 0)
    return;
  load_x(e, RAX, d->rs1);
  load_x(e, RCX, d->rs2);
  op_reg(e, true, 0xf7, d->fn == op_mulhu ? 4 : 5, RCX); /* mul/imul rcx */
  store_x(e, d->rd, RDX);
}

/* The host register an ALU operation computes in: rd's own when the block keeps rd and loading
 * rs1 there does not overwrite the second operand before it is read; else rax (stored after). */
static int alu_target(const emitter *e, const rv_insn *d, const struct alu_op_desc *a) {
  int t = host_reg(e, d->rd);
  if (t < 0 || a->kind == ALU_SET || (!a->imm && d->rs2 == d->rd && d->rs1 != d->rd))
    return RAX;
  return t;
}

/* Operations whose operands may be swapped. */
static bool alu_commutes(const struct alu_op_desc *a) {
  return a->kind == ALU_MUL || (a->kind == ALU_BIN && a->code != 0x29 /* sub */);
}

/* A 64-bit add, or, xor (or sub) with x0 or 0 as one operand copies the other (mv, c.mv);
 * returns that register, or -1. */
static int alu_copy_of(const rv_insn *d, const struct alu_op_desc *a) {
  if (a->kind != ALU_BIN || a->word || a->code == 0x21 /* and */)
    return -1;
  if (a->imm)
    return d->imm == 0 && a->code != 0x29 ? d->rs1 : -1;
  if (d->rs2 == 0)
    return d->rs1;
  return d->rs1 == 0 && a->code != 0x29 ? d->rs2 : -1;
}

/* rd = x[src] */
static void emit_copy(emitter *e, unsigned rd, unsigned src) {
  int t = host_reg(e, rd), from = host_reg(e, src);
  if (t < 0 && from >= 0) {
    mov_store(e, RBX, X_OFF(rd), from); /* rd lives in rv_hart.x: one store */
  } else if (t < 0) {
    load_x(e, RAX, src);
    store_x(e, rd, RAX);
  } else if (src != rd) {
    load_x(e, t, src);
    e->dirty |= 1U << rd;
  }
}

static void emit_alu(block_ctx *c, const rv_insn *insn, const struct alu_op_desc *a) {
  emitter *e = &c->e;
  if (insn->rd == 0)
    return; /* no effect */
  int copy = alu_copy_of(insn, a);
  if (copy >= 0) {
    emit_copy(e, insn->rd, (unsigned)copy);
    return;
  }
  /* rd = rs2 op rd: as rd = rd op rs2 when the operation commutes, so that it computes in rd's
   * host register */
  rv_insn swapped = *insn;
  const rv_insn *d = insn;
  if (!a->imm && alu_commutes(a) && insn->rs2 == insn->rd && insn->rs1 != insn->rd) {
    swapped.rs1 = insn->rs2;
    swapped.rs2 = insn->rs1;
    d = &swapped;
  }
  bool w = !a->word;
  int t = alu_target(e, d, a);
  if (a->kind == ALU_LUI) {
    mov_imm(e, t, (uint64_t)(int64_t)d->imm);
  } else {
    if (t != host_reg(e, d->rs1) || t == RAX)
      load_x(e, t, d->rs1);
    /* the second operand: its host register, its place in rv_hart.x (a memory operand), or rcx
     * (shift counts always go through cl) */
    int src = host_reg(e, d->rs2);
    bool src_mem = !a->imm && src < 0 && d->rs2 != 0 && a->kind != ALU_SHIFT;
    if (!a->imm && !src_mem && (src < 0 || a->kind == ALU_SHIFT)) {
      load_x(e, RCX, d->rs2);
      src = RCX;
    }
    switch (a->kind) {
    case ALU_BIN:
      if (a->imm)
        alu_imm(e, w, a->ext, t, d->imm);
      else if (src_mem) /* op t, [x]: the "reg, r/m" opcode is the "r/m, reg" one + 2 */
        op_mem(e, w, a->code + 2U, t, RBX, -1, X_OFF(d->rs2));
      else
        op_reg(e, w, a->code, src, t);
      break;
    case ALU_SHIFT: /* x86 masks the count to 6 (5) bits, as RISC-V does */
      if (a->imm)
        shift_imm(e, w, a->ext, t, (unsigned)d->imm & (w ? 63 : 31));
      else
        op_reg(e, w, 0xd3, a->ext, t);
      break;
    case ALU_SET:
      if (a->imm)
        alu_imm(e, true, 7, RAX, d->imm);
      else if (src_mem)
        op_mem(e, true, 0x3b, RAX, RBX, -1, X_OFF(d->rs2)); /* cmp rax, [x] */
      else
        op_reg(e, true, 0x39, src, RAX); /* cmp rax, src */
      setcc_rax(e, a->code);
      break;
    default: /* ALU_MUL: the low bits do not depend on signedness */
      if (src_mem)
        op_mem(e, w, 0x0faf, t, RBX, -1, X_OFF(d->rs2));
      else
        op_reg(e, w, 0x0faf, t, src);
      break;
    }
    /* srliw by 1..31 leaves bit 31 clear: the 32-bit shift's zero extension is the sign's */
    bool zero_extends = a->kind == ALU_SHIFT && a->imm && a->ext == 5 && (d->imm & 31) != 0;
    if (a->word && !zero_extends)
      movsxd(e, t, t);
  }
  if (t == RAX)
    store_x(e, d->rd, RAX);
  else
    e->dirty |= 1U << d->rd;
}

/* The guest register an instruction that is neither a call nor a jump writes (0: none). */
static unsigned insn_writes(const rv_insn *d, uint8_t kind) { return is_store(kind) ? 0 : d->rd; }

/* The instruction before index k that last wrote guest register r, or -1 if that is not known: a
 * call (which may write anything) or a folded jump comes first. */
static int last_write(const rv_insn *first, const struct plan *plan, unsigned k, unsigned r) {
  for (unsigned j = k; j-- > 0;) {
    uint8_t kind = plan[j].kind;
    if (!plan[j].alu && !is_load(kind) && !is_store(kind))
      return -1;
    if (insn_writes(&first[j], kind) == r)
      return (int)j;
  }
  return -1;
}

/* Rotates as RV64GC without Zbb spells them (busybox's sha256 has ten per round and schedule
 * step): or r, p, q where p and q were last set by srli(w) p, x, n and slli(w) q, x, 64 (32) - n
 * and x has not changed since. The or becomes r = x rotated right by n (an x86 ror, sign-extended
 * in the word form: bit 31 of the or is q's); the shifts stay, unless plan_dead drops them. */
static void plan_rotates(const rv_insn *first, unsigned n, struct plan *plan) {
  for (unsigned k = 0; k + 1 < n; k++) {
    const rv_insn *d = &first[k];
    if (plan[k].kind != RV_FAST_or || !d->rd || !d->rs1 || !d->rs2 || d->rs1 == d->rs2)
      continue;
    int a = last_write(first, plan, k, d->rs1), b = last_write(first, plan, k, d->rs2);
    if (a < 0 || b < 0)
      continue;
    uint8_t ka = plan[a].kind, kb = plan[b].kind;
    bool a_left = ka == RV_FAST_slli || ka == RV_FAST_slliw;
    const rv_insn *shl = &first[a_left ? a : b], *shr = &first[a_left ? b : a];
    uint8_t kl = a_left ? ka : kb, kr = a_left ? kb : ka;
    bool word = kl == RV_FAST_slliw;
    if (!((kl == RV_FAST_slli && kr == RV_FAST_srli) || (word && kr == RV_FAST_srliw)))
      continue;
    unsigned bits = word ? 32 : 64, x = shl->rs1;
    unsigned left = (unsigned)shl->imm & (bits - 1), right = (unsigned)shr->imm & (bits - 1);
    if (shr->rs1 != x || x == 0 || right == 0 || left + right != bits)
      continue;
    bool changed = false; /* x written from the first shift on (by a shift itself too) */
    for (unsigned j = (unsigned)(a < b ? a : b); j < k; j++)
      changed |= insn_writes(&first[j], plan[j].kind) == x;
    if (!changed) {
      plan[k].what = PLAN_ROR;
      plan[k].bits = (uint8_t)bits;
      plan[k].amount = (uint8_t)right;
      plan[k].src = (uint8_t)x;
    }
  }
}

/* rv_fast_kind of a handler, remembered by the handler's address: rv_fast_kind searches a list,
 * and plan_kinds needs it for every block's last instruction. */
static uint8_t handler_kind(struct rv_jit *j, rv_exec_fn fn) {
  uintptr_t a = (uintptr_t)fn;
  struct rv_jit_kind *m = &j->kinds[(a >> 4 ^ a >> 10) & (RV_JIT_KIND_MEMO - 1)];
  if (m->fn != fn) {
    m->fn = fn;
    m->kind = rv_fast_kind(fn);
  }
  return m->kind;
}

/* The kind of each instruction (rv_fast_kind of its handler), found once per block: the decoder's
 * dispatch kind is the handler's, except for a block's last instruction (a jump's tells which)
 * and an inline operation into x0, which the decoder dispatches as a call (so a call that writes
 * a register other than x0 is one). */
static void plan_kinds(struct rv_jit *j, const rv_insn *first, unsigned n, struct plan *plan) {
  for (unsigned i = 0; i < n; i++) {
    uint8_t fast = first[i].fast, kind;
    if (fast >= RV_LAST_FIRST_JUMP && fast < RV_DISPATCH_COUNT)
      kind = (uint8_t)(fast - RV_LAST_FIRST_JUMP + RV_FAST_FIRST_JUMP);
    else if ((fast != RV_FAST_CALL || first[i].rd != 0) && fast < RV_FAST_COUNT)
      kind = fast;
    else
      kind = handler_kind(j, first[i].fn);
    plan[i].kind = kind;
    plan[i].alu = kind >= RV_FAST_addi && kind < RV_FAST_COUNT;
  }
}

/* ALU instructions whose result nothing can see (the shifts of a planned ror, mostly) are not
 * translated: another ALU instruction (which cannot fault or call) overwrites it before any
 * instruction reads it (its rs1 or rs2 field, used or not; a planned ror reads its source only),
 * faults, calls into C or leaves. One pass backwards over the registers whose value may still be
 * seen: all of them at the last instruction and before anything but an ALU instruction. */
static void plan_dead(const rv_insn *first, unsigned n, struct plan *plan) {
  uint32_t seen = UINT32_MAX;
  for (unsigned i = n - 1; i-- > 0;) {
    const rv_insn *d = &first[i];
    if (!plan[i].alu) {
      seen = UINT32_MAX;
      continue;
    }
    if (d->rd && !(seen & (1U << d->rd))) {
      plan[i].what = PLAN_SKIP;
      continue;
    }
    seen &= ~(1U << d->rd);
    seen |= plan[i].what == PLAN_ROR ? 1U << plan[i].src : (1U << d->rs1) | (1U << d->rs2);
  }
}

/* Loads (or stores) through one base register that its group's first access checks for all of
 * them (emit_mem): after it, up to where the register changes, the same kind of access through it
 * reaching no more than a page with the others, with only inline ALU operations in between (they
 * use rax and rcx only, and cannot fault or call into C: the TLB and the translation cannot change
 * between the accesses, so one lookup for the bytes of all of them answers as each would). memcpy
 * and memset are runs of these, the kernel's crypto code loads its state so. addi of the base
 * register to itself (a pointer moving along) does not end a group: the offsets after it count
 * from the base at the first access. Another access, a handler call, mulh (rdx), any other write
 * of the base or the block's last instruction ends a group. */
static void plan_groups(const rv_insn *first, unsigned n, struct plan *plan) {
  for (unsigned i = 0; i + 1 < n; i++) {
    const rv_insn *d = &first[i];
    uint8_t kind = plan[i].kind;
    bool store = is_store(kind);
    if ((!store && !is_load(kind)) || plan[i].group != GROUP_NONE || (!store && d->rd == d->rs1))
      continue;
    int32_t lo = d->imm, hi = d->imm + (int32_t)access_size(kind) - 1, delta = 0;
    bool members = false;
    for (unsigned j = i + 1; j + 1 < n; j++) {
      const rv_insn *m = &first[j];
      uint8_t kj = plan[j].kind;
      if (m->fn == op_jal || plan[j].what == PLAN_SKIP)
        continue; /* emits nothing */
      if (plan[j].alu || m->fn == op_auipc) {
        if (m->rd != d->rs1 || m->rd == 0)
          continue;
        /* addi base, base, k (a pointer moving along): later offsets count from the first */
        if (kj != RV_FAST_addi || plan[j].what != PLAN_EMIT || m->rs1 != d->rs1 ||
            delta + m->imm < -16384 || delta + m->imm > 16384)
          break;
        delta += m->imm;
        continue;
      }
      if (!(store ? is_store(kj) : is_load(kj)) || m->rs1 != d->rs1)
        break;
      int32_t at = delta + m->imm, mlo = lo < at ? lo : at;
      int32_t end = at + (int32_t)access_size(kj) - 1, mhi = hi > end ? hi : end;
      if (mhi - mlo >= 4096)
        break; /* bytes in two pages: the lookup would always miss */
      lo = mlo;
      hi = mhi;
      plan[j].group = GROUP_MEMBER;
      plan[j].delta = delta;
      members = true;
      if (!store && m->rd == d->rs1)
        break; /* the base changes */
    }
    if (members) {
      plan[i].group = GROUP_LEAD;
      plan[i].lo = (int16_t)lo;
      plan[i].hi = (int16_t)hi;
    }
  }
}

/* A planned ror: rd = x[src] rotated right. */
static void emit_ror(block_ctx *c, const rv_insn *d, const struct plan *p) {
  emitter *e = &c->e;
  int t = host_reg(e, d->rd);
  if (t < 0)
    t = RAX;
  if (t == RAX || t != host_reg(e, p->src))
    load_x(e, t, p->src);
  shift_imm(e, p->bits == 64, 1, t, p->amount); /* ror */
  if (p->bits == 32)
    movsxd(e, t, t);
  if (t == RAX)
    store_x(e, d->rd, RAX);
  else
    e->dirty |= 1U << d->rd;
}

/* Whether an instruction (kind = rv_fast_kind of its handler) is translated inline, not as a call
 * of its handler. */
static bool is_inline(const rv_insn *d, uint8_t kind) {
  return is_load(kind) || is_store(kind) || alu_desc(kind) != NULL || d->fn == op_auipc ||
         d->fn == op_mulh || d->fn == op_mulhu;
}

/* An instruction translated inline (kind = rv_fast_kind of its handler); false: it is not one. */
static bool emit_inline(block_ctx *c, const rv_insn *d, uint8_t kind) {
  const struct alu_op_desc *a;
  if (!is_inline(d, kind))
    return false;
  if (is_load(kind) || is_store(kind))
    emit_mem(c, d, kind); /* a load even into x0: it may fault or reach a device */
  else if ((a = alu_desc(kind)) != NULL)
    emit_alu(c, d, a);
  else if (d->fn == op_auipc)
    emit_auipc(c, d);
  else
    emit_mul_high(c, d); /* mulh, mulhu */
  return true;
}

/* Branches: x86 condition for "taken" after cmp rs1, rs2. */
static unsigned branch_cc(uint8_t fast) {
  switch (fast) {
  case RV_FAST_beq:
    return CC_E;
  case RV_FAST_bne:
    return CC_NE;
  case RV_FAST_blt:
    return CC_L;
  case RV_FAST_bge:
    return CC_GE;
  case RV_FAST_bltu:
    return CC_B;
  default:
    return CC_AE;
  }
}

/* Go on at the pc in r12, in another page or at a computed address: through the jump cache when it
 * knows the block there under the current translation (tlb_tag, fetch set) or as a block of a
 * global mapping (tlb_gtag, fetch set: kernel code, the same in every address space), else back
 * to the caller. The target's chain entry checks the budget and the code counter as for linked
 * jumps. */
static void exit_indirect(block_ctx *c) {
  emitter *e = &c->e;
  op_reg(e, true, 0x8b, RAX, R12); /* eax = jmp_index(pc) * entry bytes */
  op_reg(e, true, 0x8b, RCX, R12);
  shift_imm(e, true, 5, RAX, 1);
  shift_imm(e, true, 5, RCX, RV_JIT_JMP_HASH_SHIFT);
  op_reg(e, false, 0x31, RCX, RAX); /* xor eax, ecx */
  alu_imm(e, false, 4, RAX, RV_JIT_JMP_SIZE - 1);
  shift_imm(e, false, 4, RAX, 5);
  mov_imm64(e, RDX, (uint64_t)(uintptr_t)c->j->jmp);
  op_reg(e, true, 0x01, RAX, RDX);        /* add rdx, rax */
  op_mem(e, true, 0x3b, R12, RDX, -1, 0); /* cmp r12, [rdx].pc */
  uint8_t *miss = jcc32(e, CC_NE);
  op_mem(e, true, 0x63, RAX, RBX, -1, HART_OFF(fetch_tlb));
  op_mem(e, true, 0x0b, RAX, RSP, -1, FRAME_TAG); /* or rax, tag */
  op_mem(e, true, 0x3b, RAX, RDX, -1, 8);         /* cmp rax, [rdx].tag */
  uint8_t *hit = jcc32(e, CC_E);
  op_mem(e, true, 0x63, RAX, RBX, -1, HART_OFF(fetch_tlb));
  op_mem(e, true, 0x0b, RAX, RBX, -1, HART_OFF(tlb_gtag)); /* or rax, global tag */
  op_mem(e, true, 0x3b, RAX, RDX, -1, 8);
  uint8_t *miss2 = jcc32(e, CC_NE);
  patch(e, hit, e->p);
  op_mem(e, false, 0xff, 4, RDX, -1, 16); /* jmp [rdx].code */
  patch(e, miss, e->p);
  patch(e, miss2, e->p);
  mov_store(e, RBX, HART_OFF(pc), R12);
  exit_out(c);
}

/* The block ran `count` instructions and goes on at block pc + delta. A target in the same page
 * gets a jump the caller can later point at the target block's code (rv_jit_link): until then it
 * goes back to the caller with the jump's place in rdx. */
static void exit_to(block_ctx *c, int64_t delta, unsigned count) {
  emitter *e = &c->e;
  count_insns(e, count);
  pc_plus(e, R12, delta);
  int64_t page_off = (int64_t)(c->key & 0xfff) + delta;
  if (page_off >= 0 && page_off < 4094) {
    uint8_t *site = jmp32(e);
    patch(e, site, e->p);
    mov_store(e, RBX, HART_OFF(pc), R12);
    mov_imm64(e, RDX, (uint64_t)(uintptr_t)(c->j->rx + (site - c->j->rw)));
    patch(e, jmp32(e), stub(c, c->j->out));
    return;
  }
  exit_indirect(c);
}

/* The back edge of a block that loops on itself (block_ctx.loops): count the iteration and run
 * the body again, with the kept registers where they are, if the next iteration passes what the
 * block's chain entry checks (it fits in the budget, the page's code counter has not moved);
 * otherwise write them back and leave with h->pc = the block's pc. */
static void emit_loop_edge(block_ctx *c, unsigned count) {
  emitter *e = &c->e;
  count_insns(e, count);
  alu_mem_imm(e, 7, RSP, FRAME_LEFT, (int32_t)count); /* cmp qword [left], n */
  uint8_t *over = jcc32(e, CC_B);
  mov_imm64(e, RAX, (uint64_t)(uintptr_t)c->counter);
  op_mem(e, false, 0x81, 7, RAX, -1, 0); /* cmp dword [rax], gen */
  b4(e, c->gen);
  uint8_t *stale = jcc32(e, CC_NE);
  patch(e, jmp32(e), c->loop_top);
  patch(e, over, e->p);
  patch(e, stale, e->p);
  write_back(e, e->dirty);
  mov_store(e, RBX, HART_OFF(pc), R12);
  exit_out(c);
}

/* Whether the block's last instruction is a conditional branch (beq ... bgeu). */
static bool ends_with_branch(unsigned n, const struct plan *plan) {
  uint8_t kind = plan[n - 1].kind;
  return kind >= RV_FAST_FIRST_JUMP && kind < RV_FAST_jal;
}

/* The offset of the block's last instruction from the block's pc (a `jal x0` inside the block
 * goes on at its target). */
static int64_t last_offset(const rv_insn *first, unsigned n) {
  int64_t off = 0;
  for (unsigned i = 0; i + 1 < n; i++)
    off += first[i].fn == op_jal ? first[i].imm : first[i].len;
  return off;
}

/* Whether the block's last instruction is a conditional branch to the block's own start. */
static bool branches_to_start(const rv_insn *first, unsigned n, const struct plan *plan) {
  return ends_with_branch(n, plan) && last_offset(first, n) + first[n - 1].imm == 0;
}

/* A loop whose back edge goes through a short tail elsewhere: the block's last instruction
 * branches to T, and T's instructions are ALU operations (translated inline: no fault, no call)
 * ending with `j` back to the block's start. busybox's sha256 round is one: its body ends its page
 * with `bne` to 7 moves and a `j` back on the next page; as two blocks each iteration went
 * through the jump cache twice and wrote back and loaded the kept registers twice. The tail is
 * translated into the block (emit_tail): the taken branch runs it and goes round again with the
 * kept registers where they are, as a block that branches to itself does.
 *
 * The tail is decoded here from RAM, so what the code assumes of it is checked each time it is
 * about to run, as rv_block_lookup would check the block at T: that T's virtual page still maps
 * to the same host page (the fetch TLB under the current tag and fetch set; not needed when T is
 * in the block's own page, which runs where it is mapped) and that T's page's code counter has
 * not moved since (it was odd, claimed as code, before its bytes were read: a store to them moves
 * it). Otherwise the branch leaves as it would without a tail. */
struct tail {
  int64_t off;             /* T's offset from the block's pc */
  uintptr_t host;          /* T's host address */
  bool other_page;         /* T is not in the block's page */
  const uint32_t *counter; /* T's page's code counter */
  uint32_t gen;            /* and its value before the tail was read */
  unsigned m;              /* instructions, the jump back included; 0: no tail */
  rv_insn insn[RV_JIT_TAIL_MAX];
  /* The branch to T may also follow the block (k instructions, the branch last: ALU operations
   * before it), in its page: a block ends where another starts, and the loop's body can be cut
   * so, just before its branch (busybox's round is: a longer block ran into it first). These
   * run after the block's own instructions, as the block would go on into them. */
  unsigned k;
  int64_t cont_off; /* the first one's offset from the block's pc */
  rv_insn cont[RV_JIT_CONT_MAX];
};

/* The kind (rv_fast_kind) of an instruction decoded outside a block, as plan_kinds finds it. */
static uint8_t decoded_kind(struct rv_jit *j, const rv_insn *d) {
  if ((d->fast != RV_FAST_CALL || d->rd != 0) && d->fast < RV_FAST_COUNT)
    return d->fast;
  return handler_kind(j, d->fn);
}

/* Decode the instruction at host address `host` into d unless it crosses its page; false if it
 * does. */
static bool decode_at(const rv_hart *h, uintptr_t host, rv_insn *d) {
  unsigned in_page = (unsigned)(host & 0xfff);
  if (in_page > 0xffe)
    return false;
  const uint8_t *at = (const uint8_t *)host; // NOLINT(performance-no-int-to-ptr)
  uint16_t lo;
  memcpy(&lo, at, 2);
  uint32_t raw = lo;
  if ((lo & 3) == 3) {
    if (in_page > 0xffc)
      return false;
    memcpy(&raw, at, 4);
  }
  memset(d, 0, sizeof(*d));
  rv_decode(h->icache, raw, d);
  d->key = host;
  return true;
}

/* Decode the tail at host address `host`, T's offset `off` from the block's pc, into t (t->m = 0
 * when the code there is not a tail). */
static void decode_tail(struct rv_jit *j, const rv_hart *h, uintptr_t host, int64_t off,
                        struct tail *t) {
  for (unsigned k = 0; k < RV_JIT_TAIL_MAX; k++) {
    rv_insn *d = &t->insn[k];
    if (!decode_at(h, host, d))
      return;
    if (d->fn == op_jal) {
      if (d->rd != 0 || off + d->imm != 0)
        return; /* not back to the block's start */
      d->fast = (uint8_t)(RV_LAST_FIRST_JUMP + RV_FAST_jal - RV_FAST_FIRST_JUMP);
      t->m = k + 1;
      return;
    }
    if (!alu_desc(decoded_kind(j, d)))
      return;
    host += d->len;
    off += d->len;
  }
}

/* The instructions after a block that ends without a jump, up to a conditional branch, when
 * all before it are ALU operations (see struct tail); t->k = 0 if not. The block's page must
 * still hold what the block was decoded from (its counter is gen), and the branch's offset is
 * returned in *branch_off. */
static void decode_continuation(struct rv_jit *j, const rv_hart *h, const rv_insn *first,
                                unsigned n, const uint32_t *counter, uint32_t gen, struct tail *t) {
  const rv_insn *last = &first[n - 1];
  t->k = 0;
  if (last->ends_block || __atomic_load_n(counter, __ATOMIC_ACQUIRE) != gen)
    return;
  uintptr_t host = last->key + last->len;
  if ((host & 0xfff) < (last->key & 0xfff))
    return; /* the block ends its page */
  for (unsigned k = 0; k < RV_JIT_CONT_MAX; k++) {
    rv_insn *d = &t->cont[k];
    if (!decode_at(h, host, d))
      return;
    uint8_t kind = decoded_kind(j, d);
    if (kind >= RV_FAST_FIRST_JUMP && kind < RV_FAST_jal) {
      t->k = k + 1;
      return;
    }
    if (!alu_desc(kind))
      return;
    host += d->len;
  }
}

/* The tail of the block's loop, if its last instruction (or the one after it, decode_continuation)
 * branches to one (see struct tail); h is the hart about to run the block, at its pc; the block was
 * decoded when its page's counter was gen. False: the branch goes to another page that the fetch
 * TLB does not hold (not fetched yet: the block has not run, or not branched, yet). */
static bool find_tail(struct rv_jit *j, const rv_hart *h, const rv_insn *first, unsigned n,
                      const struct plan *plan, const uint32_t *counter, uint32_t gen,
                      struct tail *t) {
  t->m = t->k = 0;
  if (!h)
    return true;
  uint64_t pc = h->pc;
  if ((pc >> 12) != h->fetch_vpn || pc + h->fetch_addend != first->key)
    return true; /* the fetch cache does not say where pc is */
  const rv_insn *branch = &first[n - 1];
  int64_t off = last_offset(first, n);
  if (!ends_with_branch(n, plan)) {
    decode_continuation(j, h, first, n, counter, gen, t);
    if (!t->k)
      return true;
    t->cont_off = off + first[n - 1].len;
    off = t->cont_off;
    for (unsigned k = 0; k + 1 < t->k; k++)
      off += t->cont[k].len;
    branch = &t->cont[t->k - 1];
  }
  off += branch->imm; /* T */
  uint64_t va = pc + (uint64_t)off;
  if (off == 0) {
    t->k = 0;
    return true; /* a loop on itself */
  }
  t->other_page = (va >> 12) != (pc >> 12);
  if (t->other_page) {
    const rv_tlb_entry *e = &h->tlb[h->fetch_tlb][ACC_EXEC][rv_tlb_index(va)];
    if (e->vpn != ((va >> 12) | h->tlb_tag)) {
      t->k = 0;
      return false;
    }
    t->host = (uintptr_t)(va + e->addend);
  } else {
    t->host = first->key + (uintptr_t)off;
  }
  const rv_bus *bus = h->bus;
  uint64_t page = (uint64_t)(t->host - (uintptr_t)bus->ram) >> 12;
  if (t->host >= (uintptr_t)bus->ram && page < bus->ram_size >> 12) {
    t->counter = &bus->code_pages[page]; /* only in bounds: outside RAM it is no pointer */
    t->gen = __atomic_load_n(t->counter, __ATOMIC_ACQUIRE);
    t->off = off;
    if (t->gen & 1) /* claimed as code: a store to it moves the counter */
      decode_tail(j, h, t->host, off, t);
  }
  if (!t->m)
    t->k = 0;
  return true;
}

/* Jumps (two, into out) taken unless the fetch TLB maps the virtual page of the tail (block pc +
 * t->off) to the tail's host page now, under the current tag and fetch set: what rv_block_lookup
 * would find. */
static void emit_tail_mapped(emitter *e, const struct tail *t, uint8_t **out) {
  const int32_t entry = HART_OFF(tlb) + ACC_EXEC * TLB_ACCESS_BYTES;
  lea(e, RAX, R12, (int32_t)t->off); /* rax = (T >> 12) | tag */
  op_reg(e, true, 0x8b, RCX, RAX);
  shift_imm(e, true, 5, RAX, 12);
  op_mem(e, true, 0x0b, RAX, RSP, -1, FRAME_TAG);
  shift_imm(e, false, 5, RCX, 12 - 4); /* rcx = the entry's offset in the fetch set */
  alu_imm(e, false, 4, RCX, (RV_TLB_SIZE - 1) << 4);
  op_mem(e, true, 0x63, RDX, RBX, -1, HART_OFF(fetch_tlb)); /* + the set's */
  op_reg(e, true, 0x69, RDX, RDX);
  b4(e, (uint32_t)TLB_SET_BYTES);
  op_reg(e, true, 0x01, RDX, RCX);             /* add rcx, rdx */
  op_mem(e, true, 0x3b, RAX, RBX, RCX, entry); /* cmp rax, [entry].vpn */
  out[0] = jcc32(e, CC_NE);
  lea(e, RAX, R12, (int32_t)t->off);
  op_mem(e, true, 0x03, RAX, RBX, RCX, entry + 8); /* add rax, [entry].addend */
  mov_imm64(e, RCX, (uint64_t)t->host);
  op_reg(e, true, 0x39, RCX, RAX); /* cmp rax, rcx */
  out[1] = jcc32(e, CC_NE);
}

/* The branch to the block's loop's tail (find_tail): the block's last instruction (at c->index),
 * or, when t->k, the last of the instructions after the block (c->index = the block's last, done;
 * c->off = where they start), which run only if the run's budget holds them (else the block leaves
 * as it would have). Not taken: leave as usual. Taken: run the tail if the budget holds block,
 * branch and tail and the tail is still what was decoded where it was, then go round
 * (emit_loop_edge); otherwise leave for T as without a tail. */
static void emit_tail(block_ctx *c, const rv_insn *d, const struct tail *t) {
  emitter *e = &c->e;
  unsigned n = c->index + 1, all;
  if (t->k) {
    unsigned block = c->index + 1;
    n = block + t->k;
    alu_mem_imm(e, 7, RSP, FRAME_LEFT, (int32_t)n); /* cmp qword [left], block + these */
    uint8_t *fits = jcc32(e, CC_AE);
    write_back(e, e->dirty);
    exit_to(c, c->off, block);
    patch(e, fits, e->p);
    for (unsigned k = 0; k + 1 < t->k; k++) { /* ALU operations: no fault, no call */
      c->index = block + k;
      const struct plan *p = &c->plan[c->index];
      if (p->what == PLAN_ROR)
        emit_ror(c, &t->cont[k], p);
      else if (p->what == PLAN_EMIT)
        (void)emit_inline(c, &t->cont[k], p->kind);
      c->off += t->cont[k].len;
    }
    c->index = n - 1;
    d = &t->cont[t->k - 1];
  }
  all = n + t->m;
  load_x(e, RAX, d->rs1);
  load_x(e, RCX, d->rs2);
  op_reg(e, true, 0x39, RCX, RAX); /* cmp rax, rcx */
  uint8_t *taken = jcc32(e, branch_cc(c->plan[c->index].kind));
  write_back(e, e->dirty);
  exit_to(c, c->off + d->len, n);
  patch(e, taken, e->p);
  uint8_t *stay_out[4];
  unsigned outs = 0;
  alu_mem_imm(e, 7, RSP, FRAME_LEFT, (int32_t)all); /* cmp qword [left], with the tail */
  stay_out[outs++] = jcc32(e, CC_B);
  if (t->other_page) {
    emit_tail_mapped(e, t, &stay_out[outs]);
    outs += 2;
  }
  mov_imm64(e, RAX, (uint64_t)(uintptr_t)t->counter);
  op_mem(e, false, 0x81, 7, RAX, -1, 0); /* cmp dword [rax], gen */
  b4(e, t->gen);
  stay_out[outs++] = jcc32(e, CC_NE);
  int64_t branch_off = c->off;
  c->off = t->off;
  for (unsigned k = 0; k + 1 < t->m; k++) { /* ALU operations: no fault, no call */
    c->index = n + k;
    const struct plan *p = &c->plan[c->index];
    if (p->what == PLAN_ROR)
      emit_ror(c, &t->insn[k], p);
    else if (p->what == PLAN_EMIT)
      (void)emit_inline(c, &t->insn[k], p->kind);
    c->off += t->insn[k].len;
  }
  c->index = all - 1;
  emit_loop_edge(c, all);
  for (unsigned k = 0; k < outs; k++)
    patch(e, stay_out[k], e->p);
  c->off = branch_off;
  c->index = n - 1;
  write_back(e, e->dirty);
  exit_to(c, t->off, n);
}

/* The frame's slots for the inline TLB lookups: the sets serving loads and stores now, and the
 * tag. */
static void emit_tlb_registers(emitter *e) {
  mov_load(e, RAX, RBX, HART_OFF(tlb_tag));
  mov_store(e, RSP, FRAME_TAG, RAX);
  op_mem(e, true, 0x63, RAX, RBX, -1, HART_OFF(ld_tlb)); /* movsxd rax, int */
  op_reg(e, true, 0x69, RAX, RAX);                       /* imul rax, rax, set bytes */
  b4(e, (uint32_t)TLB_SET_BYTES);
  op_mem(e, true, 0x8d, RAX, RBX, RAX, HART_OFF(tlb) + ACC_READ * TLB_ACCESS_BYTES);
  mov_store(e, RSP, FRAME_LD_TLB, RAX);
  op_mem(e, true, 0x63, RAX, RBX, -1, HART_OFF(st_tlb));
  op_reg(e, true, 0x69, RAX, RAX);
  b4(e, (uint32_t)TLB_SET_BYTES);
  op_mem(e, true, 0x8d, RAX, RBX, RAX, HART_OFF(tlb) + ACC_WRITE * TLB_ACCESS_BYTES);
  mov_store(e, RSP, FRAME_ST_TLB, RAX);
}

/* The block's last instruction: a branch or jump inline, anything else through its handler. */
static void emit_last(block_ctx *c, const rv_insn *d) {
  emitter *e = &c->e;
  unsigned count = c->index + 1;
  uint8_t kind = c->plan[c->index].kind;
  if (kind < RV_FAST_FIRST_JUMP || kind > RV_FAST_LAST_JUMP) {
    /* a block cut at its length limit or the page end: the next one follows */
    if (emit_inline(c, d, kind)) {
      write_back(e, e->dirty);
      exit_to(c, c->off + d->len, count);
      return;
    }
    kind = RV_FAST_CALL;
  }
  switch (kind) {
  case RV_FAST_jal:
    pc_plus(e, RCX, c->off + d->len);
    store_x(e, d->rd, RCX);
    write_back(e, e->dirty);
    exit_to(c, c->off + d->imm, count);
    return;
  case RV_FAST_jalr:
    load_x(e, RAX, d->rs1);
    if (d->imm)
      lea(e, RAX, RAX, d->imm);
    alu_imm(e, true, 4, RAX, -2);
    pc_plus(e, RCX, c->off + d->len);
    store_x(e, d->rd, RCX);
    write_back(e, e->dirty);
    op_reg(e, true, 0x8b, R12, RAX);
    count_insns(e, count);
    exit_indirect(c);
    return;
  case RV_FAST_CALL:
    /* The counters are read by CSR instructions, which always end a block: bring minstret up
     * to date before the handler runs. */
    if (c->index)
      alu_mem_imm(e, 0, RBX, HART_OFF(minstret), (int32_t)c->index);
    emit_call_handler(c, d);
    alu_mem_imm(e, 0, RBX, HART_OFF(minstret), 1);
    alu_mem_imm(e, 5, RSP, FRAME_LEFT, (int32_t)count);
    mov_load(e, R12, RBX, HART_OFF(next_pc));
    /* A trap, xRET, WFI or an interrupt made deliverable asks to leave. Otherwise go on: the
     * instruction may have changed the translation (satp, sfence.vma, MPRV), so reload the TLB
     * registers and find the next block through the jump cache, which is keyed by it. */
    op_mem(e, false, 0x80, 7, RBX, -1, HART_OFF(check_irq));
    b1(e, 0);
    uint8_t *stay = jcc32(e, CC_E);
    mov_store(e, RBX, HART_OFF(pc), R12);
    exit_out(c);
    patch(e, stay, e->p);
    emit_tlb_registers(e);
    exit_indirect(c);
    return;
  default: { /* conditional branch */
    load_x(e, RAX, d->rs1);
    load_x(e, RCX, d->rs2);
    if (c->loops) { /* taken: back to the block's start */
      op_reg(e, true, 0x39, RCX, RAX);
      uint8_t *taken = jcc32(e, branch_cc(kind));
      write_back(e, e->dirty);
      exit_to(c, c->off + d->len, count);
      patch(e, taken, e->p);
      emit_loop_edge(c, count);
      return;
    }
    write_back(e, e->dirty);
    op_reg(e, true, 0x39, RCX, RAX); /* cmp rax, rcx */
    uint8_t *taken = jcc32(e, branch_cc(kind));
    exit_to(c, c->off + d->len, count);
    patch(e, taken, e->p);
    exit_to(c, c->off + d->imm, count);
    return;
  }
  }
}

static void emit_body_insn(block_ctx *c, const rv_insn *d) {
  if (!emit_inline(c, d, c->plan[c->index].kind)) {
    emit_call_handler(c, d);
    leave_if_asked(c);
  }
}

/* The entry for chained jumps from other blocks of the page (rv_jit_link): r12 already holds the
 * pc and the frame the TLB slots. It goes on only if the block still fits in what is left of this
 * run's budget ([rsp + FRAME_LEFT]) and its page's code counter has not moved since it was
 * decoded; otherwise back to the caller, which looks the block up again. Its length is fixed
 * (rv_jit.chain_bytes: n < 128 is one immediate byte). */
static void emit_chain_entry(emitter *e, unsigned n, const uint32_t *counter, uint32_t gen,
                             const struct rv_jit *j) {
  alu_mem_imm(e, 7, RSP, FRAME_LEFT, (int32_t)n); /* cmp qword [left], n */
  uint8_t *over = jcc32(e, CC_B);
  mov_imm64(e, RAX, (uint64_t)(uintptr_t)counter);
  op_mem(e, false, 0x81, 7, RAX, -1, 0); /* cmp dword [rax], gen */
  b4(e, gen);
  uint8_t *stale = jcc32(e, CC_NE);
  uint8_t *go = jmp32(e);
  patch(e, over, e->p);
  patch(e, stale, e->p);
  mov_store(e, RBX, HART_OFF(pc), R12);
  op_reg(e, false, 0x31, RDX, RDX);
  patch(e, jmp32(e), j->rw + j->out);
  e->chain_go = go;
}

/* The entry from rv_jit_enter: r12 = the pc and the TLB registers, also for the blocks linked to
 * this one. */
static void emit_prologue(block_ctx *c) {
  mov_load(&c->e, R12, RBX, HART_OFF(pc));
  emit_tlb_registers(&c->e);
}

/* The registers the block's instructions name most often (at least CACHE_MIN_USES times) are
 * kept in host registers. Fields an instruction does not use count too: a worse choice at
 * worst, never a wrong result. */
static void choose_cached(emitter *e, const rv_insn *first, unsigned n) {
  unsigned uses[32] = {0};
  for (unsigned i = 0; i < n; i++) {
    uses[first[i].rd]++;
    uses[first[i].rs1]++;
    uses[first[i].rs2]++;
  }
  for (size_t k = 0; k < sizeof(cache_regs); k++) {
    unsigned best = 0, most = CACHE_MIN_USES - 1;
    for (unsigned r = 1; r < 32; r++)
      if (!(e->cached & (1U << r)) && uses[r] > most) {
        best = r;
        most = uses[r];
      }
    if (best == 0)
      break;
    e->cached |= 1U << best;
    e->host_of[best] = cache_regs[k];
  }
}

/* The guest registers the block may read from their host registers before it has written them
 * there: only these are loaded when it starts (a register the block first sets, as a temporary
 * usually is, needs no load). The scan stops at the first handler call, which loads every kept
 * register again after it; an inline instruction (translated by emit_inline or emit_last) reads
 * its rs1 and rs2 fields (whether its format has them or not: a needless load at worst) and then
 * sets all of rd, except a store, which sets nothing. */
static uint32_t read_before_written(const rv_insn *first, unsigned n, const struct plan *plan) {
  uint32_t read = 0, written = 0;
  for (unsigned i = 0; i < n; i++) {
    const rv_insn *d = &first[i];
    uint8_t kind = plan[i].kind;
    bool last = i + 1 == n;
    if (!last && d->fn == op_jal)
      continue; /* jal x0 within the page: not translated, its target follows */
    bool jump = last && kind >= RV_FAST_FIRST_JUMP && kind <= RV_FAST_LAST_JUMP;
    if (!jump && !is_inline(d, kind))
      break; /* a handler call */
    read |= ((1U << d->rs1) | (1U << d->rs2)) & ~written;
    if (!jump && !is_store(kind))
      written |= 1U << d->rd;
  }
  return read;
}

/* Unmap the writable view's pages below `to` (page-aligned): those behind the write position and
 * those that links (rv_jit_link: a patched jump in an older block) mapped again since the last
 * trim. Measured in a 2-hart boot + sha256 run, the links kept 4-6 MiB per hart mapped twice. A
 * failure costs only memory. */
static void trim_writable(struct rv_jit *j, size_t to) {
  if (to > j->stubs_end)
    (void)madvise(j->rw + j->stubs_end, to - j->stubs_end, MADV_DONTNEED);
  j->trimmed = to;
}

/* Map the writable view's next step of pages past the write position. */
static void populate_writable(struct rv_jit *j) {
  size_t from = j->used & ~(size_t)4095;
  size_t to = from + RV_JIT_TRIM_STEP < j->size ? from + RV_JIT_TRIM_STEP : j->size;
  (void)madvise(j->rw + from, to - from, MADV_POPULATE_WRITE);
  j->populated = to;
}

const void *rv_jit_translate(struct rv_jit *j, const rv_hart *h, const rv_insn *first, unsigned n,
                             const uint32_t *counter, uint32_t gen, bool may_wait) {
  block_ctx c = {.j = j, .key = first->key, .counter = counter, .gen = gen};
  plan_kinds(j, first, n, c.plan);
  struct tail tail;
  if (!find_tail(j, h, first, n, c.plan, counter, gen, &tail) && may_wait)
    return RV_JIT_AGAIN;
  /* the plans see the block, what follows it and its tail as one run of instructions (the branch
   * to the tail ends every run they look for) */
  rv_insn seq[RV_BLOCK_MAX + RV_JIT_CONT_MAX + RV_JIT_TAIL_MAX];
  const rv_insn *all = first;
  unsigned total = n + tail.k + tail.m;
  if (tail.m) {
    memcpy(seq, first, n * sizeof(*first));
    memcpy(seq + n, tail.cont, tail.k * sizeof(*first));
    memcpy(seq + n + tail.k, tail.insn, tail.m * sizeof(*first));
    plan_kinds(j, tail.cont, tail.k, c.plan + n);
    plan_kinds(j, tail.insn, tail.m, c.plan + n + tail.k);
    all = seq;
  }
  size_t need = (size_t)total * RV_JIT_INSN_MAX + (size_t)RV_JIT_BLOCK_EXTRA * (tail.m ? 3 : 1);
  if (j->size - j->used < need)
    return NULL;
  if (j->used + need > j->populated)
    populate_writable(j);
  c.e.start = c.e.p = j->rw + j->used;
  c.e.end = c.e.start + need;
  emit_chain_entry(&c.e, n, counter, gen, j);
  uint8_t *entry = c.e.p;
  emit_prologue(&c);
  patch(&c.e, c.e.chain_go, c.e.p);
  choose_cached(&c.e, all, total);
  plan_rotates(all, total, c.plan);
  if (tail.k) { /* the block may leave before what follows it runs (emit_tail's budget check):
                 * nothing after it may make its results dead */
    plan_dead(all, n, c.plan);
    plan_dead(all + n, total - n, c.plan + n);
  } else {
    plan_dead(all, total, c.plan);
  }
  plan_groups(all, total, c.plan);
  c.loops = tail.m || branches_to_start(first, n, c.plan);
  j->tails += tail.m != 0;
  if (c.loops) {
    /* every iteration after the first enters with the kept registers possibly changed */
    load_cached(&c.e, c.e.cached);
    c.e.dirty = c.e.cached;
    c.loop_top = c.e.p;
  } else {
    load_cached(&c.e, read_before_written(first, n, c.plan));
  }
  for (unsigned i = 0; i < n; i++) {
    c.index = i;
    bool body = i + 1 < n || tail.k;     /* not the block's end: instructions follow it */
    if (body && first[i].fn == op_jal) { /* jal x0 within the page: its target follows */
      c.off += first[i].imm;
      continue;
    }
    if (body && c.plan[i].what == PLAN_SKIP) {
      c.off += first[i].len;
      continue;
    }
    if (body && c.plan[i].what == PLAN_ROR)
      emit_ror(&c, &first[i], &c.plan[i]);
    else if (body)
      emit_body_insn(&c, &first[i]);
    else if (tail.m)
      emit_tail(&c, &first[i], &tail);
    else
      emit_last(&c, &first[i]);
    c.off += first[i].len;
  }
  if (tail.k) {
    c.index = n - 1;
    emit_tail(&c, NULL, &tail);
  }
  for (unsigned i = 0; i < c.n_slow; i++)
    emit_slow_path(&c, &c.slow[i]);
  if (c.e.p > c.e.end || (size_t)(entry - c.e.start) != j->chain_bytes)
    return RV_JIT_INTERPRET; /* RV_JIT_INSN_MAX should bound every instruction; if not, the
                                interpreter runs this block */
  j->used += (size_t)(c.e.p - c.e.start);
  j->used = (j->used + 15) & ~(size_t)15;
  if (j->used - j->trimmed >= RV_JIT_TRIM_STEP + RV_JIT_TRIM_KEEP)
    trim_writable(j, (j->used - RV_JIT_TRIM_KEEP) & ~(size_t)4095);
  return j->rx + (entry - j->rw);
}

uint64_t rv_jit_tails(const struct rv_jit *j) { return j->tails; }

void rv_jit_cut_run(volatile int64_t *frame) {
  /* The thread is stopped between two host instructions of translated code or of a C function it
   * called. Blocks check [left] before they run and subtract their count at any point; the run's
   * count is limit - left. Lowering both by the same amount keeps that count exact whatever the
   * code does next, and the next block's check ends the run. */
  int64_t left = frame[FRAME_LEFT / 8];
  if (left > 0) {
    frame[FRAME_LIMIT / 8] -= left;
    frame[FRAME_LEFT / 8] = 0;
  }
}

void rv_jit_link(struct rv_jit *j, uintptr_t site, const void *code) {
  uint8_t *at = j->rw + (site - (uintptr_t)j->rx);
  int32_t rel = (int32_t)((const uint8_t *)code - j->chain_bytes - (j->rx + (at - j->rw) + 4));
  memcpy(at, &rel, 4);
}

/* ---------------------------------------------------------------- entry, exits, buffer */

/* A chain entry that runs the one instruction at r12 through the interpreter (rv_jit_step) and
 * goes on through the jump cache: for the 32-bit instructions that straddle two pages, which no
 * block holds. The jump cache sends their pc here (rv_jit_remember_step), so code around them
 * does not go back to the caller twice. rv_jit_step fetches and checks the bytes each time. */
static void emit_step_stub(struct rv_jit *j, emitter *out) {
  block_ctx c = {.j = j, .e = *out};
  emitter *e = &c.e;
  j->step = (size_t)(e->p - e->start);
  alu_mem_imm(e, 7, RSP, FRAME_LEFT, 1); /* nothing left of the budget: back to the caller */
  uint8_t *over = jcc32(e, CC_B);
  mov_store(e, RBX, HART_OFF(pc), R12);
  op_reg(e, true, 0x8b, RDI, RBX);
  call_abs(e, (const void *)rv_jit_step);
  alu_mem_imm(e, 5, RSP, FRAME_LEFT, 1);
  mov_load(e, R12, RBX, HART_OFF(pc));
  op_mem(e, false, 0x80, 7, RBX, -1, HART_OFF(check_irq));
  b1(e, 0);
  uint8_t *stay = jcc32(e, CC_E);
  exit_out(&c);
  patch(e, stay, e->p);
  emit_tlb_registers(e);
  exit_indirect(&c);
  patch(e, over, e->p);
  mov_store(e, RBX, HART_OFF(pc), R12);
  exit_out(&c);
  *out = c.e;
}

/* enter(h, code, limit): save the callee-saved registers, rbx = h, [rsp + FRAME_LIMIT] and
 * [rsp + FRAME_LEFT] = limit, run the block. Blocks end at `left` (rax more instructions ran,
 * h->pc = h->next_pc) or at `out` with h->pc set and rdx = a jump to link or 0; both return the
 * instructions run (limit - left, in rax) and rdx. */
static void emit_stubs(struct rv_jit *j) {
  emitter e = {.start = j->rw, .p = j->rw, .end = j->rw + 1024};
  static const int saved[] = {RBX, RBP, R12, R13, R14, R15};
  j->enter = 0;
  for (size_t i = 0; i < 6; i++) {
    if (saved[i] >= R8)
      b1(&e, 0x41);                /* REX.B */
    b1(&e, 0x50 + (saved[i] & 7)); /* push */
  }
  /* rsp 16-byte aligned for calls; the frame holds the limit and the TLB slots */
  alu_imm(&e, true, 5, RSP, FRAME_BYTES);
  op_reg(&e, true, 0x8b, RBX, RDI);
  mov_store(&e, RSP, FRAME_LIMIT, RDX);
  mov_store(&e, RSP, FRAME_LEFT, RDX);
  mov_store(&e, RBX, HART_OFF(jit_frame), RSP); /* the budget may be cut from now on */
  op_reg(&e, false, 0xff, 4, RSI);              /* jmp rsi */

  j->left = (size_t)(e.p - e.start);
  op_mem(&e, true, 0x01, RAX, RBX, -1, HART_OFF(minstret)); /* add [minstret], rax */
  op_mem(&e, true, 0x29, RAX, RSP, -1, FRAME_LEFT);         /* sub [left], rax */
  mov_load(&e, RCX, RBX, HART_OFF(next_pc));
  mov_store(&e, RBX, HART_OFF(pc), RCX);
  op_reg(&e, false, 0x31, RDX, RDX);
  j->out = (size_t)(e.p - e.start);
  /* no cut between the two reads of the count (rv_jit_cut_run) */
  op_mem_imm(&e, true, 0xc7, 0, RBX, -1, HART_OFF(jit_frame), 0, 4); /* mov qword [], 0 */
  mov_load(&e, RAX, RSP, FRAME_LIMIT);
  op_mem(&e, true, 0x2b, RAX, RSP, -1, FRAME_LEFT); /* sub rax, [left] */
  alu_imm(&e, true, 0, RSP, FRAME_BYTES);
  for (size_t i = 6; i-- > 0;) {
    if (saved[i] >= R8)
      b1(&e, 0x41);                /* REX.B */
    b1(&e, 0x58 + (saved[i] & 7)); /* pop */
  }
  b1(&e, 0xc3);
  emit_step_stub(j, &e);
  j->stubs_end = ((size_t)(e.p - e.start) + 4095) & ~(size_t)4095;
  j->used = j->trimmed = j->populated = j->stubs_end;
}

int rv_jit_create(struct rv_jit **out, vs_error **err) {
  for (size_t i = 0; i < sizeof(alu_ops) / sizeof(alu_ops[0]); i++)
    if (alu_ops[i].fast != RV_FAST_addi + i) /* a hole in the table: a bug, caught by any test */
      return vs_error_set(err, EINVAL, "translator: no x86 form for ALU kind %zu", i);
  struct rv_jit *j = calloc(1, sizeof(*j));
  if (!j)
    return vs_error_set(err, ENOMEM, "translator: allocate its state");
  j->size = RV_JIT_CODE_SIZE;
  int fd = memfd_create("vessel-jit", MFD_CLOEXEC);
  if (fd < 0) {
    free(j);
    return vs_error_set(err, errno, "translator: memfd_create for the code buffer");
  }
  if (ftruncate(fd, (off_t)j->size) < 0) {
    int e = errno;
    close(fd);
    free(j);
    return vs_error_set(err, e, "translator: size the code buffer");
  }
  j->rw = mmap(NULL, j->size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  j->rx = mmap(NULL, j->size, PROT_READ | PROT_EXEC, MAP_SHARED, fd, 0);
  int e = errno;
  close(fd);
  if (j->rw == MAP_FAILED || j->rx == MAP_FAILED) {
    if (j->rw != MAP_FAILED)
      munmap(j->rw, j->size);
    if (j->rx != MAP_FAILED)
      munmap(j->rx, j->size);
    free(j);
    return vs_error_set(err, e, "translator: map the code buffer");
  }
  emit_stubs(j);
  uint8_t scratch[128];
  const uint32_t counter = 0;
  emitter probe = {.start = scratch, .p = scratch, .end = scratch + sizeof(scratch)};
  emit_chain_entry(&probe, RV_BLOCK_MAX, &counter, 0, j);
  j->chain_bytes = (size_t)(probe.p - probe.start);
  *out = j;
  return 0;
}

void rv_jit_destroy(struct rv_jit *j) {
  if (!j)
    return;
  munmap(j->rw, j->size);
  munmap(j->rx, j->size);
  free(j);
}

void rv_jit_forget_all(struct rv_jit *j) {
  memset(j->jmp, 0, sizeof(j->jmp));
  memset(j->jmp_pages, 0, sizeof(j->jmp_pages));
  memset(j->jmp_page, 0, sizeof(j->jmp_page));
}

void rv_jit_forget_tags(struct rv_jit *j) { memset(j->jmp_pages, 0, sizeof(j->jmp_pages)); }

void rv_jit_reset(struct rv_jit *j) {
  trim_writable(j, (j->used + 4095) & ~(size_t)4095);
  j->used = j->trimmed = j->populated = j->stubs_end;
  rv_jit_forget_all(j);
}

/* Entries with tag 0 match nothing: a translation tag is never 0. */
void rv_jit_forget_page(struct rv_jit *j, uint64_t va) {
  uint64_t vpn = va >> 12;
  unsigned at = jmp_page_bit(vpn);
  uint64_t bit = 1ULL << (at % 64);
  uint64_t *pages = &j->jmp_pages[at / 64];
  if (!(*pages & bit))
    return;
  *pages &= ~bit;
  uint16_t mark = (uint16_t)(at | RV_JIT_JMP_MARKED);
  for (uint64_t pc = vpn << 12; pc < (vpn + 1) << 12; pc += 2) {
    unsigned i = jmp_index(pc);
    if (j->jmp_page[i] != mark)
      continue; /* another page's entry, or none */
    struct rv_jit_jmp *m = &j->jmp[i];
    if ((m->pc >> 12) == vpn) {
      m->tag = 0;
      j->jmp_page[i] = 0;
    } else if (m->tag) {
      *pages |= bit; /* another page that shares the bit keeps it */
    }
  }
}

static void remember(struct rv_jit *j, uint64_t pc, uint64_t tag, const void *chain) {
  struct rv_jit_jmp *m = &j->jmp[jmp_index(pc)];
  unsigned at = jmp_page_bit(pc >> 12);
  j->jmp_pages[at / 64] |= 1ULL << (at % 64);
  j->jmp_page[jmp_index(pc)] = (uint16_t)(at | RV_JIT_JMP_MARKED);
  m->pc = pc;
  m->tag = tag;
  m->chain = chain;
}

void rv_jit_remember(struct rv_jit *j, uint64_t pc, uint64_t tag, const void *code) {
  remember(j, pc, tag, (const uint8_t *)code - j->chain_bytes);
}

void rv_jit_remember_step(struct rv_jit *j, uint64_t pc, uint64_t tag) {
  remember(j, pc, tag, j->rx + j->step);
}

rv_jit_exit rv_jit_enter(const struct rv_jit *j, rv_hart *h, const void *code, uint64_t limit) {
  rv_jit_exit (*enter)(rv_hart *, const void *, uint64_t);
  const void *entry = j->rx + j->enter;
  memcpy(&enter, &entry, sizeof(enter));
  return enter(h, code, limit);
}

#else /* no translator for this host: the interpreter runs everything */

int rv_jit_create(struct rv_jit **out, vs_error **err) {
  (void)err;
  *out = NULL;
  return 0;
}
void rv_jit_destroy(struct rv_jit *j) { (void)j; }
void rv_jit_reset(struct rv_jit *j) { (void)j; }
const void *rv_jit_translate(struct rv_jit *j, const rv_hart *h, const rv_insn *first, unsigned n,
                             const uint32_t *counter, uint32_t gen, bool may_wait) {
  (void)j, (void)h, (void)first, (void)n, (void)counter, (void)gen, (void)may_wait;
  return RV_JIT_INTERPRET;
}
rv_jit_exit rv_jit_enter(const struct rv_jit *j, rv_hart *h, const void *code, uint64_t limit) {
  (void)j, (void)h, (void)code, (void)limit;
  return (rv_jit_exit){0, 0};
}
void rv_jit_link(struct rv_jit *j, uintptr_t site, const void *code) {
  (void)j, (void)site, (void)code;
}
void rv_jit_remember(struct rv_jit *j, uint64_t pc, uint64_t tag, const void *code) {
  (void)j, (void)pc, (void)tag, (void)code;
}
void rv_jit_remember_step(struct rv_jit *j, uint64_t pc, uint64_t tag) {
  (void)j, (void)pc, (void)tag;
}
void rv_jit_cut_run(volatile int64_t *frame) { (void)frame; }
void rv_jit_forget_page(struct rv_jit *j, uint64_t va) { (void)j, (void)va; }
void rv_jit_forget_all(struct rv_jit *j) { (void)j; }
void rv_jit_forget_tags(struct rv_jit *j) { (void)j; }
uint64_t rv_jit_tails(const struct rv_jit *j) {
  (void)j;
  return 0;
}

#endif
