/* Private to src/vm/cpu: decoded instructions, the decode table, traps, memory access paths. */
#ifndef VESSEL_VM_CPU_INTERNAL_H
#define VESSEL_VM_CPU_INTERNAL_H

#include <string.h>

#include "vm/cpu/cpu.h"

#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

/* ---------------------------------------------------------------- instruction semantics */

/* The loads, stores and base ALU operations as lists: exec.c makes their handlers from them and
 * the block runner (cpu.c) executes them inline, so each meaning is written once. ALU operands
 * are a = rs1 and b = rs2 or the immediate, both uint64_t. */
#define RV_SX32(v) ((uint64_t)(int64_t)(int32_t)(v))
#define RV_LOAD_OPS(X)                                                                             \
  X(lb, 1, (uint64_t)(int64_t)(int8_t)v)                                                           \
  X(lh, 2, (uint64_t)(int64_t)(int16_t)v)                                                          \
  X(lw, 4, RV_SX32(v))                                                                             \
  X(ld, 8, v)                                                                                      \
  X(lbu, 1, v)                                                                                     \
  X(lhu, 2, v)                                                                                     \
  X(lwu, 4, v)
#define RV_STORE_OPS(X) X(sb, 1) X(sh, 2) X(sw, 4) X(sd, 8)
/* Conditional branches: taken when the condition on a = rs1, b = rs2 holds. */
#define RV_BRANCH_OPS(X)                                                                           \
  X(beq, a == b)                                                                                   \
  X(bne, a != b)                                                                                   \
  X(blt, (int64_t)a < (int64_t)b)                                                                  \
  X(bge, (int64_t)a >= (int64_t)b)                                                                 \
  X(bltu, a < b)                                                                                   \
  X(bgeu, a >= b)
#define RV_ALU_I_OPS(X)                                                                            \
  X(addi, a + b)                                                                                   \
  X(slti, (int64_t)a < (int64_t)b)                                                                 \
  X(sltiu, a < b)                                                                                  \
  X(xori, a ^ b)                                                                                   \
  X(ori, a | b)                                                                                    \
  X(andi, a &b)                                                                                    \
  X(slli, a << (b & 63))                                                                           \
  X(srli, a >> (b & 63))                                                                           \
  X(srai, (uint64_t)((int64_t)a >> (b & 63)))                                                      \
  X(addiw, RV_SX32(a + b))                                                                         \
  X(slliw, RV_SX32((uint32_t)a << (b & 31)))                                                       \
  X(srliw, RV_SX32((uint32_t)a >> (b & 31)))                                                       \
  X(sraiw, RV_SX32((int32_t)a >> (b & 31)))                                                        \
  X(lui, b)
#define RV_ALU_R_OPS(X)                                                                            \
  X(add, a + b)                                                                                    \
  X(sub, a - b)                                                                                    \
  X(sll, a << (b & 63))                                                                            \
  X(slt, (int64_t)a < (int64_t)b)                                                                  \
  X(sltu, a < b)                                                                                   \
  X(xor, a ^ b)                                                                                    \
  X(srl, a >> (b & 63))                                                                            \
  X(sra, (uint64_t)((int64_t)a >> (b & 63)))                                                       \
  X(or, a | b)                                                                                     \
  X(and, a &b)                                                                                     \
  X(addw, RV_SX32(a + b))                                                                          \
  X(subw, RV_SX32(a - b))                                                                          \
  X(sllw, RV_SX32((uint32_t)a << (b & 31)))                                                        \
  X(srlw, RV_SX32((uint32_t)a >> (b & 31)))                                                        \
  X(sraw, RV_SX32((int32_t)a >> (b & 31)))                                                         \
  X(mul, a *b)                                                                                     \
  X(mulw, RV_SX32((uint32_t)a *(uint32_t)b))

/* How the block runner executes a decoded instruction: through its handler, or inline. Stores
 * and jumps come first: they are the inline kinds that write no rd or may write x0. Jumps only
 * end blocks. */
#define RV_FAST_ENUM(name, ...) RV_FAST_##name,
enum rv_fast {
  RV_FAST_CALL,
  RV_STORE_OPS(RV_FAST_ENUM) RV_BRANCH_OPS(RV_FAST_ENUM) RV_FAST_jal,
  RV_FAST_jalr,
  RV_FAST_FIRST_JUMP = RV_FAST_beq,
  RV_FAST_LAST_JUMP = RV_FAST_jalr,
  RV_FAST_LAST_STORE = RV_FAST_jalr, /* the last kind that may have rd = x0 */
  RV_LOAD_OPS(RV_FAST_ENUM) RV_ALU_I_OPS(RV_FAST_ENUM) RV_ALU_R_OPS(RV_FAST_ENUM) RV_FAST_COUNT,
  /* A block's last instruction is dispatched as one of these (the block builder sets them), so
   * the runner never compares positions: through its handler, or a jump run inline. */
  RV_LAST_CALL = RV_FAST_COUNT,
  RV_LAST_FIRST_JUMP,
  RV_DISPATCH_COUNT = RV_LAST_FIRST_JUMP + RV_FAST_LAST_JUMP - RV_FAST_FIRST_JUMP + 1
};

/* ---------------------------------------------------------------- decoded instructions */

typedef struct rv_insn rv_insn;
typedef void (*rv_exec_fn)(rv_hart *h, const rv_insn *d);

struct rv_insn {
  rv_exec_fn fn;
  uintptr_t key; /* host address of the instruction's first byte (unique per physical address) */
  int32_t imm;
  uint32_t raw; /* the instruction bits (16 or 32) it was decoded from */
  uint8_t rd, rs1, rs2, rs3;
  uint8_t len;        /* 2 or 4 */
  uint8_t rm;         /* funct3 */
  uint8_t ends_block; /* control transfer, system or fence: the last instruction of a block */
  uint8_t fast;       /* enum rv_fast */
  /* A block's last branch or jump: the blocks it went on to in the same page (rv_block.where; 0
   * = none yet), [0] not taken, [1] taken, so the runner goes there without a lookup. */
  uint32_t next[2];
};

/* Operand layouts of the decode table (how fields are extracted into rv_insn). */
enum rv_format { FMT_NONE, FMT_R, FMT_I, FMT_S, FMT_B, FMT_U, FMT_J, FMT_R4, FMT_SHIFT, FMT_CSR };

typedef struct rv_op {
  uint32_t mask, match;
  rv_exec_fn fn;
  uint8_t format;
  const char *name;
} rv_op;

/* Single instructions (the fallback for fetches that cannot use a block). */
#define RV_ICACHE_BITS 12
#define RV_ICACHE_SIZE (1U << RV_ICACHE_BITS)

/* Decoded blocks: straight-line runs of instructions inside one page, ending after a control
 * transfer, system instruction or fence, at the page end or at RV_BLOCK_MAX instructions. A
 * block is found by the host address of its first instruction (so by physical address) and its
 * instructions live in a pool that is emptied when full. A block remembers its page's code
 * counter (rv_bus.code_pages) from when it was decoded: once the page is written the counter
 * moves on and the block is decoded again. */
#define RV_BLOCK_MAX 63
/* 2^17 slots (3 MiB): with 2^16, the ~30,000 blocks a pool holds in a boot evicted 45,000 live
 * blocks from their pairs, and 180,000 instructions were decoded again in the same pool for it;
 * twice the slots halve that (decoding 6% less) */
#define RV_BLOCK_BITS 17
#define RV_BLOCK_SLOTS (1U << RV_BLOCK_BITS)
/* One hart's pool: 262,144 instructions (10 MiB; and ~20 MiB of translated code per fill). Once
 * the run loop stopped decoding blocks it could not run (near the end of a slice every step had
 * decoded a block at its pc), a boot's pool filled less than half as fast: the 327,680 it had
 * then held ~9 MiB more translated code at the peak (172 MiB, RVVM's size) for no CPU time
 * measurable against this size, and 196,608 cost 7% more CPU (4 alternating boots each,
 * 2026-12-07, issue 18). */
#define RV_POOL_SIZE (4U << 16)
/* Each hart's pool when the bus has several: the harts of an SMP guest run the same kernel, so
 * each one's cache holds another copy of the same hot code, and a full pool per hart made the
 * second hart cost ~40 MiB. 196,608 instructions (3/4 of the former 2^18; 7.5 MiB, ~15 MiB of
 * code per fill): bench/vm-boot's 2-hart peak RSS 193 MiB against 203 with 7/8 and 199 with
 * 13/16 of 2^18 (RVVM 202), boot and sha256 times the same within the noise (4 alternating
 * rounds, 2026-12-07 13:52), for ~20 pool empties per boot instead of 10. The boot's code is
 * ~300,000 different instructions: a pool much smaller than that empties again and again. */
#define RV_POOL_SIZE_SMP (3U << 16)

/* A block table slot: where = (index of the first instruction in the pool << 6) | instruction
 * count (1..RV_BLOCK_MAX), 0 = empty; gen = the page's code counter when it was decoded; key = the
 * host address of its first instruction (as the pool's copy: which block it is); code = its
 * translated code (NULL: it has not run; RV_JIT_INTERPRET: the interpreter runs it; below
 * RV_JIT_CODE_MIN: it ran that many times less one in the interpreter, warming up). A lookup
 * after an exit from translated code reads this one slot: the pool (megabytes) and a separate
 * code table cost a cache miss each, about a tenth of the VMM's time in a guest's sha256 run. */
typedef struct rv_block {
  uint32_t where;
  uint32_t gen;
  uintptr_t key;
  const void *code;
} rv_block;
#define RV_BLOCK_N_BITS 6

struct rv_icache {
  rv_insn e[RV_ICACHE_SIZE];
  rv_block blocks[RV_BLOCK_SLOTS];
  /* pool indices must fit in a slot */
  _Static_assert(RV_POOL_SIZE <= (1ULL << (32 - RV_BLOCK_N_BITS)), "pool too large");
  rv_insn pool[RV_POOL_SIZE];
  struct rv_jit *jit; /* NULL: the interpreter runs every block */
  /* A block runs this many times in the interpreter before it is translated (at most
   * RV_JIT_WARMUP_MAX; RV_JIT_WARMUP unless a test sets it). */
  uint8_t jit_warmup;
  uint32_t pool_used;
  /* The pool is emptied when a block might not fit below this: RV_POOL_SIZE (RV_POOL_SIZE_SMP
   * with several harts; its pages past this are never touched), less in tests (cpu_jit empties
   * it every few blocks, under linked and running code). */
  uint32_t pool_limit;
  uint32_t clears;      /* times the pool was emptied: links into it are only made within one */
  uint8_t fast_of[512]; /* enum rv_fast of each decode table entry */
  uint16_t order[512];  /* decode table indices grouped by major opcode */
  uint16_t first[32];   /* start of each opcode's group in order[] */
  uint16_t count[32];
};

#define RV_JIT_INTERPRET ((const void *)1)
/* rv_jit_translate: not now; the interpreter runs the block once more, then ask again */
#define RV_JIT_AGAIN ((const void *)2)
/* rv_block.code values from here on are code; those below count a block's warm-up runs */
#define RV_JIT_CODE_MIN 64U
#define RV_JIT_WARMUP_MAX (RV_JIT_CODE_MIN - 3)
/* The default of rv_icache.jit_warmup. Much of a boot's code runs only a few times, but with
 * 2 the emitter's time saved in a boot + sha256 run went to the interpreter and the scans of
 * warming blocks instead (perf, 2026-12-07: no net gain), so blocks are translated when they
 * first run. */
#define RV_JIT_WARMUP 0
/* With several harts each one translates the code it runs for itself, and a boot spreads the
 * kernel's run-once work (async initcalls, kworkers, crypto self-tests) over them: the second
 * hart meets most of it cold while the first waits for it. Interpreting a block twice before
 * translating it cut a 2-hart boot's CPU time by ~5% and its peak RSS by 6-8 MiB (2026-12-07,
 * issue 18, docs/performance.md "Seventh round"). */
#define RV_JIT_WARMUP_SMP 2
static inline bool rv_jit_is_code(const void *code) { return (uintptr_t)code >= RV_JIT_CODE_MIN; }

/* jit.c: the translator from decoded blocks to x86-64 code. */
struct rv_jit;
/* *out = NULL (and success) on hosts without a translator. */
int rv_jit_create(struct rv_jit **out, vs_error **err);
void rv_jit_destroy(struct rv_jit *j);
/* Drop all translated code (with the block pool it was made from). */
void rv_jit_reset(struct rv_jit *j);
/* Translate the block of n decoded instructions at first, decoded when its page's code counter
 * (*counter) was gen; NULL when the code buffer is full. The instructions must stay where they are
 * while the code lives (the code calls their handlers with them). h: the hart about to run the
 * block, at its pc (NULL: none), whose fetch TLB tells where a loop's tail is; may_wait: the
 * translator may answer RV_JIT_AGAIN when that page is not in the fetch TLB yet. */
const void *rv_jit_translate(struct rv_jit *j, const rv_hart *h, const rv_insn *first, unsigned n,
                             const uint32_t *counter, uint32_t gen, bool may_wait);
/* What a run of translated code did: the instructions it executed (counted in minstret; h->pc is
 * at the next one), and link: when the last block left by a direct jump within its page, that
 * jump's place, which rv_jit_link can point at the next block's code (else 0). */
typedef struct rv_jit_exit {
  uint64_t count;
  uintptr_t link;
} rv_jit_exit;
/* Run translated code with h->pc at its block's first instruction. Blocks linked to it run on
 * while their instructions keep the count within limit. */
rv_jit_exit rv_jit_enter(const struct rv_jit *j, rv_hart *h, const void *code, uint64_t limit);
void rv_jit_link(struct rv_jit *j, uintptr_t site, const void *code);
/* Make the run of translated code whose frame is rv_hart.jit_frame end at its next block (from a
 * signal handler on the hart's own thread: rv_hart_cut_run). */
void rv_jit_cut_run(volatile int64_t *frame);
/* How many blocks were translated with their loop's tail in them (jit.c: find_tail; for tests). */
uint64_t rv_jit_tails(const struct rv_jit *j);
/* The block at virtual pc under translation tag `tag` (rv_tlb_jump_tag: tlb_tag or, for a page of
 * a global mapping, tlb_gtag, | fetch_tlb) has this code: jumps into other pages and computed
 * jumps find it there without leaving translated code. */
void rv_jit_remember(struct rv_jit *j, uint64_t pc, uint64_t tag, const void *code);
/* The instruction at pc straddles two pages (no block holds it): the jump cache sends jumps to it
 * to a stub that runs it with rv_jit_step. */
void rv_jit_remember_step(struct rv_jit *j, uint64_t pc, uint64_t tag);
/* Forget what the jump cache knows about the virtual page of va (SFENCE.VMA of that page), or
 * about every page (the TLB tags wrapped around). */
void rv_jit_forget_page(struct rv_jit *j, uint64_t va);
void rv_jit_forget_all(struct rv_jit *j);
/* No tag the jump cache holds can match again (every address space and the global mappings got
 * new tags): its entries stay, dead, but the page filter starts empty, so a one-page fence later
 * scans the cache only for pages remembered since. */
void rv_jit_forget_tags(struct rv_jit *j);
/* cpu.c: execute the one instruction at h->pc in the interpreter, counted in minstret. */
void rv_jit_step(rv_hart *h);

/* decode.c */
void rv_decode_index(struct rv_icache *ic);
/* Decode `raw` (a 16-bit compressed or 32-bit instruction) into d; unknown -> illegal handler. */
void rv_decode(const struct rv_icache *ic, uint32_t raw, rv_insn *d);
/* How the block runner executes the instructions of this handler (enum rv_fast), whatever their rd
 * and place in a block (rv_decode sends writes to x0 and a block's last instruction elsewhere). */
uint8_t rv_fast_kind(rv_exec_fn fn);
/* Expand a 16-bit compressed instruction to its 32-bit equivalent; 0 if reserved/illegal. */
uint32_t rv_expand_compressed(uint16_t c);
const rv_op *rv_decode_table(size_t *n);

/* ---------------------------------------------------------------- CSR bits */

#define MSTATUS_SIE (1ULL << 1)
#define MSTATUS_MIE (1ULL << 3)
#define MSTATUS_SPIE (1ULL << 5)
#define MSTATUS_MPIE (1ULL << 7)
#define MSTATUS_SPP (1ULL << 8)
#define MSTATUS_MPP_SHIFT 11
#define MSTATUS_MPP (3ULL << 11)
#define MSTATUS_FS (3ULL << 13)
#define MSTATUS_FS_DIRTY (3ULL << 13)
#define MSTATUS_MPRV (1ULL << 17)
#define MSTATUS_SUM (1ULL << 18)
#define MSTATUS_MXR (1ULL << 19)
#define MSTATUS_TVM (1ULL << 20)
#define MSTATUS_TW (1ULL << 21)
#define MSTATUS_TSR (1ULL << 22)
#define MSTATUS_UXL (3ULL << 32)
#define MSTATUS_SXL (3ULL << 34)
#define MSTATUS_SD (1ULL << 63)

#define MENVCFG_STCE (1ULL << 63)

/* page-table entries (mmu.c, hyp_mmu.c) */
#define PTE_V (1ULL << 0)
#define PTE_R (1ULL << 1)
#define PTE_W (1ULL << 2)
#define PTE_X (1ULL << 3)
#define PTE_U (1ULL << 4)
#define PTE_G (1ULL << 5)
#define PTE_A (1ULL << 6)
#define PTE_D (1ULL << 7)
#define PTE_PPN_MASK ((1ULL << 44) - 1)

/* the hypervisor extension */
#define MISA_H (1ULL << ('H' - 'A'))
#define MSTATUS_GVA (1ULL << 38)
#define MSTATUS_MPV (1ULL << 39)
#define HSTATUS_GVA (1ULL << 6)
#define HSTATUS_SPV (1ULL << 7)
#define HSTATUS_SPVP (1ULL << 8)
#define HSTATUS_HU (1ULL << 9)
#define HSTATUS_VTVM (1ULL << 20)
#define HSTATUS_VTW (1ULL << 21)
#define HSTATUS_VTSR (1ULL << 22)
#define HSTATUS_VSXL (3ULL << 32)
#define RV_MIP_VS_MASK (RV_MIP_VSSIP | RV_MIP_VSTIP | RV_MIP_VSEIP)

/* exception causes */
enum {
  EXC_INSN_MISALIGNED = 0,
  EXC_INSN_ACCESS = 1,
  EXC_ILLEGAL = 2,
  EXC_BREAKPOINT = 3,
  EXC_LOAD_MISALIGNED = 4,
  EXC_LOAD_ACCESS = 5,
  EXC_STORE_MISALIGNED = 6,
  EXC_STORE_ACCESS = 7,
  EXC_ECALL_U = 8,
  EXC_ECALL_S = 9,
  EXC_ECALL_M = 11,
  EXC_INSN_PAGE = 12,
  EXC_LOAD_PAGE = 13,
  EXC_STORE_PAGE = 15,
  EXC_ECALL_VS = 10,
  EXC_INSN_GUEST_PAGE = 20,
  EXC_LOAD_GUEST_PAGE = 21,
  EXC_VIRTUAL_INSN = 22,
  EXC_STORE_GUEST_PAGE = 23,
};

enum { ACC_READ = 0, ACC_WRITE = 1, ACC_EXEC = 2 };
/* TLB sets. S-mode data accesses while mstatus.SUM is set (user memory reachable) have their own:
 * Linux sets and clears SUM around every copy to or from user memory, and flushing the TLB each
 * time made page walks a third of the VMM's time in a network upload. */
/* V=1 accesses (VS/VU mode, or M-mode data accesses with MPRV and MPV) have sets of their own,
 * so that guest and host translations never mix; a write to hgatp (another VMID) flushes. */
enum { TLB_U = 0, TLB_S = 1, TLB_M = 2, TLB_S_SUM = 3, TLB_VU = 4, TLB_VS = 5, TLB_VS_SUM = 6 };
_Static_assert(TLB_VS_SUM + 1 == RV_TLB_SETS, "one TLB set each");

/* ---------------------------------------------------------------- cpu.c */

/* Raise an exception for the current instruction (at h->pc). */
void rv_raise(rv_hart *h, uint64_t cause, uint64_t tval);
void rv_illegal(rv_hart *h, const rv_insn *d);
/* Recompute which TLB sets serve fetch and data accesses (after priv/mstatus/satp changes). */
/* Threaded harts: before this hart publishes its stores (fences, SBI calls), give up write
 * mappings of pages other harts made code meanwhile (cpu.c). */
void rv_hart_sync_code(rv_hart *h);
void rv_update_modes(rv_hart *h);
bool rv_csr_read(rv_hart *h, unsigned csr, uint64_t *val);
bool rv_csr_write(rv_hart *h, unsigned csr, uint64_t val);
uint64_t rv_read_mip(rv_hart *h);
void rv_mark_fs_dirty(rv_hart *h);
/* The value CSRRS/CSRRC modify: the software-written bits of mip/sip/hip, else what was read. */
uint64_t rv_csr_rmw_base(rv_hart *h, unsigned csr, uint64_t old);
/* The FPU is on: mstatus.FS, and with V=1 also the guest's vsstatus.FS (both swapped). */
static inline bool rv_fs_enabled(const rv_hart *h) {
  return (h->mstatus & MSTATUS_FS) && (!h->virt || (h->vsstatus & MSTATUS_FS));
}

/* ---------------------------------------------------------------- hyp.c: the H extension */

static inline bool rv_has_h(const rv_hart *h) { return (h->misa & MISA_H) != 0; }
/* The reset values of V and the H CSRs. */
void rv_hyp_clear(rv_hart *h);
/* Enter or leave V=1 (swapping the supervisor CSRs with the VS ones); no mode update. */
void rv_hyp_set_virt(rv_hart *h, bool virt);
/* Hypervisor and VS CSRs (0x2xx, 0x6xx, hgeip, mtval2/mtinst): whether csr is one of them
 * (*handled); then whether the access succeeded. */
bool rv_hyp_csr_read(rv_hart *h, unsigned csr, uint64_t *val, bool *handled);
bool rv_hyp_csr_write(rv_hart *h, unsigned csr, uint64_t val, bool *handled);
/* With V=1, the supervisor CSRs that are not swapped (sie, sip, stimecmp) read and write the VS
 * view; *handled tells whether csr was one of them. */
bool rv_hyp_vs_csr_read(rv_hart *h, unsigned csr, uint64_t *val, bool *handled);
bool rv_hyp_vs_csr_write(rv_hart *h, unsigned csr, uint64_t val, bool *handled);
/* The interrupt bits the H extension adds to mip (hvip, the vstimecmp timer). */
uint64_t rv_hyp_mip(rv_hart *h);
/* Trap entry: whether an exception or interrupt from V=1 goes to VS-mode (hedeleg/hideleg). */
bool rv_hyp_trap_to_vs(const rv_hart *h, uint64_t cause, bool irq);
/* Interrupts: the one to take among the pending-and-enabled ones, or -1; *vs = taken in VS. */
int rv_hyp_pick_interrupt(rv_hart *h, uint64_t pending, bool *vs);
/* htinst/mtinst for an explicit access's fault at addr: the trapping instruction transformed as
 * the specification says (offset in rs1, immediates cleared), or 0 when it cannot be read. */
uint64_t rv_hyp_transformed_insn(const rv_hart *h, uint64_t addr);
/* Snapshots: why the H state just loaded could never be the hart's, or NULL. */
const char *rv_hyp_state_invalid(const rv_hart *h);
/* xRET */
void rv_hyp_sret(rv_hart *h);
void rv_hyp_mret(rv_hart *h, int mpp);
/* 0 when csr may be accessed in the hart's mode, else the exception (illegal or virtual). */
int rv_hyp_csr_denied(rv_hart *h, unsigned csr, bool write);
/* Raise the virtual-instruction exception for d. */
void rv_virtual_insn(rv_hart *h, const rv_insn *d);

/* hyp_mmu.c: two-stage translation for the V=1 TLB sets. */
int rv_hyp_translate(rv_hart *h, uint64_t va, int access, int set, bool hlvx, uint64_t *pa);
/* debugger view of a V=1 address */
bool rv_hyp_debug_translate(const rv_hart *h, uint64_t va, uint64_t *pa);

/* ---------------------------------------------------------------- pmp.c */

static inline unsigned rv_pmp_cfg(const rv_hart *h, unsigned i) {
  /* RV64 packs eight entries into each even-numbered pmpcfg register. */
  return (h->pmpcfg[(size_t)(i / 8) * 2] >> (8 * (i % 8))) & 0xff;
}
#define RV_PMPADDR_MASK ((1ULL << 54) - 1)   /* physical address bits 55:2 */
#define RV_PMPCFG_BITS 0x9f9f9f9f9f9f9f9fULL /* L, A, X, W, R of eight entries */

/* Recompute the derived PMP summary (pmp_count, pmp_locked, pmp_ram_su) after pmpcfg changes. */
#define RV_PMP_RAM_UNIFORM 0x80
void rv_pmp_update(rv_hart *h);
/* pmpaddr[i] is writable: its entry is not locked, nor is a TOR entry above it. */
bool rv_pmp_addr_writable(const rv_hart *h, unsigned i);
/* Whether an access of size bytes at physical address pa is allowed at privilege priv. */
bool rv_pmp_check(const rv_hart *h, uint64_t pa, unsigned size, int access, int priv);
/* Whether the whole 4 KiB page has one PMP decision and it allows the access (TLB fill). */
bool rv_pmp_page_allows(const rv_hart *h, uint64_t ppage, int access, int priv);

/* ---------------------------------------------------------------- mmu.c */

/* Translate va for an access through TLB set `set`; returns 0 and *pa, or an exception cause. */
int rv_translate(rv_hart *h, uint64_t va, int access, int set, uint64_t *pa);
/* The hart wrote RAM at pa outside a store (page-table A/D bits): dirty tracking and code pages. */
void rv_ram_written_at(rv_hart *h, uint64_t pa);
bool rv_load_slow(rv_hart *h, uint64_t va, unsigned size, uint64_t *out);
/* A data access that bypasses the TLB (HLV/HSV) reached memory at va, translated to pa: the
 * debugger's watchpoints see it (access: RV_WATCH_READ or RV_WATCH_WRITE); the slow paths below
 * check theirs themselves. */
void rv_watch_data_access(rv_hart *h, uint64_t va, uint64_t pa, unsigned size, unsigned access);
bool rv_store_slow(rv_hart *h, uint64_t va, unsigned size, uint64_t val);
/* Host pointer for an aligned atomic access (LR: ACC_READ, SC/AMO: ACC_WRITE) in RAM, or NULL
 * after raising the exception. *pa receives the physical address. */
void *rv_atomic_ptr(rv_hart *h, uint64_t va, unsigned size, int access, uint64_t *pa);
/* Fill the fetch TLB with pc's page when it translates, is RAM and one PMP decision allows
 * fetches from all of it; false otherwise, with nothing raised (rv_fetch_slow raises). */
bool rv_fetch_fill(rv_hart *h, uint64_t pc);
/* Host pointer of the instruction at h->pc (fills the fetch cache), or NULL after raising. */
uint8_t *rv_fetch_slow(rv_hart *h, uint64_t pc);
/* The TLB keeps the entries of several address spaces (satp values) apart by tag, so a satp
 * write back to a recent one finds its entries again. Drop all of them: */
void rv_tlb_flush_all(rv_hart *h);
/* satp was written: use the tag of its address space, or a fresh one. */
void rv_tlb_switch_space(rv_hart *h);
/* va's entry in TLB set `set` maps it from a global mapping under another address space's tag: it
 * is the current space's now, without a walk; false if it is not so. */
bool rv_tlb_take_global(rv_hart *h, int set, int access, uint64_t va);
/* The jump cache's tag for a block at pc (whose page is in the fetch TLB): the global tag | the
 * fetch set when its page is a global mapping, else the address space's tag | the fetch set. */
uint64_t rv_tlb_jump_tag(const rv_hart *h, uint64_t pc);
/* The superpage [first, last] was translated (it may enter the TLB as 4 KiB entries): a one-page
 * SFENCE.VMA inside it then drops the whole address space (hyp_mmu.c notes the guest's too). */
void rv_tlb_note_superpage(rv_hart *h, uint64_t first, uint64_t last);
/* SFENCE.VMA with rs1 and/or rs2 (both x0 is rv_hart_flush_tlb): the page of va (by_va) in the
 * address space asid (by_asid) or in all of them. */
void rv_tlb_sfence(rv_hart *h, uint64_t va, bool by_va, uint64_t asid, bool by_asid);

static inline bool rv_ram_contains(const rv_bus *bus, uint64_t pa, uint64_t size) {
  return pa >= bus->ram_base && pa - bus->ram_base < bus->ram_size &&
         size <= bus->ram_size - (pa - bus->ram_base);
}

static inline unsigned rv_tlb_index(uint64_t va) { return (va >> 12) & (RV_TLB_SIZE - 1); }

static inline bool rv_load(rv_hart *h, uint64_t va, unsigned size, uint64_t *out) {
  const rv_tlb_entry *e = &h->tlb[h->ld_tlb][ACC_READ][rv_tlb_index(va)];
  if (likely(e->vpn == ((va >> 12) | h->tlb_tag) && (va & 0xfff) <= 4096 - size)) {
    const void *p = (const void *)(uintptr_t)(va + e->addend); // NOLINT(performance-no-int-to-ptr)
    switch (size) {
    case 1:
      *out = *(const uint8_t *)p;
      return true;
    case 2: {
      uint16_t v;
      memcpy(&v, p, 2);
      *out = v;
      return true;
    }
    case 4: {
      uint32_t v;
      memcpy(&v, p, 4);
      *out = v;
      return true;
    }
    default: {
      uint64_t v;
      memcpy(&v, p, 8);
      *out = v;
      return true;
    }
    }
  }
  return rv_load_slow(h, va, size, out);
}

static inline bool rv_store(rv_hart *h, uint64_t va, unsigned size, uint64_t val) {
  const rv_tlb_entry *e = &h->tlb[h->st_tlb][ACC_WRITE][rv_tlb_index(va)];
  if (likely(e->vpn == ((va >> 12) | h->tlb_tag) && (va & 0xfff) <= 4096 - size)) {
    void *p = (void *)(uintptr_t)(va + e->addend); // NOLINT(performance-no-int-to-ptr)
    switch (size) {
    case 1:
      *(uint8_t *)p = (uint8_t)val;
      return true;
    case 2: {
      uint16_t v = (uint16_t)val;
      memcpy(p, &v, 2);
      return true;
    }
    case 4: {
      uint32_t v = (uint32_t)val;
      memcpy(p, &v, 4);
      return true;
    }
    default:
      memcpy(p, &val, 8);
      return true;
    }
  }
  return rv_store_slow(h, va, size, val);
}

/* ---------------------------------------------------------------- softfp.c */

/* fflags bits and rounding modes (frm / the rm field) */
#define RV_FF_NX 1U
#define RV_FF_UF 2U
#define RV_FF_OF 4U
#define RV_FF_DZ 8U
#define RV_FF_NV 16U
enum { RV_RM_RNE, RV_RM_RTZ, RV_RM_RDN, RV_RM_RUP, RV_RM_RMM };
enum { RV_FP_S, RV_FP_D };

/* Exact IEEE 754 operations in software, in any of the five rounding modes, on raw bits of the
 * format (RV_FP_S: the low 32 bits). Flags are ORed into *flags; NaN results are canonical. */
uint64_t rv_softfp_fma(int fmt, uint64_t a, uint64_t b, uint64_t c, int rm, unsigned *flags);
uint64_t rv_softfp_div(int fmt, uint64_t a, uint64_t b, int rm, unsigned *flags);
uint64_t rv_softfp_from_int(int fmt, bool negative, uint64_t magnitude, int rm, unsigned *flags);
/* binary64 -> binary32 */
uint64_t rv_softfp_narrow(uint64_t d, int rm, unsigned *flags);

/* ---------------------------------------------------------------- exec.c / fpu.c handlers */

#define RV_HANDLER(name) void name(rv_hart *h, const rv_insn *d)
#include "vm/cpu/handlers.h"

#endif
