/* RV64I: arithmetic, shifts, comparisons, branches, jumps, loads/stores incl. misaligned. */
#include "test.h"

static volatile uint64_t A = 0x8000000000000001ull, B = 0x0123456789abcdefull, ONE = 1;
static volatile int64_t NEG = -5;
static uint8_t buf[64] __attribute__((aligned(16)));

static uint64_t jalr_target(uint64_t x) { return x + 7; }

int main(void) {
  uint64_t a = A, b = B;
  CHECK(a + b == 0x8123456789abcdf0ull);
  CHECK(b - a == 0x8123456789abcdeeull);
  CHECK((a ^ b) == 0x8123456789abcdeeull);
  CHECK((a | b) == 0x8123456789abcdefull);
  CHECK((a & b) == 1);
  CHECK((b << 4) == 0x123456789abcdef0ull);
  CHECK((b >> 60) == 0);
  CHECK(((int64_t)a >> 63) == -1);
  CHECK((a >> 63) == 1);
  CHECK((int64_t)NEG < (int64_t)ONE);
  CHECK(!((uint64_t)NEG < ONE));
  /* 32-bit ops sign-extend */
  uint32_t w = (uint32_t)b;
  int64_t sw;
  __asm__ volatile("addw %0, %1, %2" : "=r"(sw) : "r"(b), "r"(b));
  CHECK(sw == (int64_t)(int32_t)(w + w));
  __asm__ volatile("addiw %0, %1, 1" : "=r"(sw) : "r"(0x7fffffffull));
  CHECK(sw == -2147483648ll);
  __asm__ volatile("sraiw %0, %1, 4" : "=r"(sw) : "r"(0x80000000ull));
  CHECK(sw == (int64_t)0xfffffffff8000000ull);
  __asm__ volatile("srliw %0, %1, 4" : "=r"(sw) : "r"(0xffffffff80000000ull));
  CHECK(sw == 0x08000000);
  __asm__ volatile("sllw %0, %1, %2" : "=r"(sw) : "r"(1ull), "r"(31ull + 32));
  CHECK(sw == (int64_t)0xffffffff80000000ull);
  __asm__ volatile("subw %0, %1, %2" : "=r"(sw) : "r"(0ull), "r"(0x80000000ull));
  CHECK(sw == (int64_t)0xffffffff80000000ull);
  __asm__ volatile("sraw %0, %1, %2" : "=r"(sw) : "r"(0xffffffff80000000ull), "r"(63ull));
  CHECK(sw == -1);
  uint64_t r;
  __asm__ volatile("slti %0, %1, -1" : "=r"(r) : "r"(-2ll));
  CHECK(r == 1);
  __asm__ volatile("sltiu %0, %1, -1" : "=r"(r) : "r"(5ull));
  CHECK(r == 1);
  __asm__ volatile("lui %0, 0x80000" : "=r"(r));
  CHECK(r == 0xffffffff80000000ull);
  uint64_t pc1, pc2;
  __asm__ volatile("auipc %0, 0\n auipc %1, 1" : "=r"(pc1), "=r"(pc2));
  CHECK(pc2 - pc1 == 4 + 4096);
  /* jal/jalr link */
  uint64_t link, here;
  __asm__ volatile("jal %0, 1f\n 1: auipc %1, 0" : "=r"(link), "=r"(here));
  CHECK(link == here);
  uint64_t (*volatile fp)(uint64_t) = jalr_target;
  CHECK(fp(1) == 8);
  /* jalr clears bit 0 of the target */
  __asm__ volatile("la t0, 1f\n addi t0, t0, 1\n jalr %0, 0(t0)\n 1: nop" : "=r"(link)::"t0");
  /* branches */
  int taken = 0;
  if ((int64_t)A < 0)
    taken++;
  if (A > ONE)
    taken++;
  if ((int64_t)NEG >= -5)
    taken++;
  if ((uint64_t)NEG >= ONE)
    taken++;
  if (A != B)
    taken++;
  CHECK(taken == 5);
  /* loads and stores of every width, sign extension */
  for (int i = 0; i < 64; i++)
    buf[i] = (uint8_t)(0x80 + i);
  volatile uint8_t *p = buf;
  CHECK(*(volatile int8_t *)p == (int8_t)0x80);
  CHECK(*(volatile uint8_t *)p == 0x80);
  CHECK(*(volatile int16_t *)p == (int16_t)0x8180);
  CHECK(*(volatile uint16_t *)p == 0x8180);
  CHECK(*(volatile int32_t *)p == (int32_t)0x83828180);
  CHECK(*(volatile uint32_t *)p == 0x83828180u);
  CHECK(*(volatile uint64_t *)p == 0x8786858483828180ull);
  /* misaligned accesses are done in hardware (no trap) */
  uint64_t v;
  reset_trap();
  __asm__ volatile("ld %0, 3(%1)" : "=r"(v) : "r"(buf));
  CHECK(v == 0x8a89888786858483ull);
  __asm__ volatile("lw %0, 1(%1)" : "=r"(v) : "r"(buf));
  CHECK(v == 0xffffffff84838281ull);
  __asm__ volatile("lhu %0, 5(%1)" : "=r"(v) : "r"(buf));
  CHECK(v == 0x8685);
  __asm__ volatile("sd %0, 9(%1)" ::"r"(0x1122334455667788ull), "r"(buf) : "memory");
  CHECK(buf[9] == 0x88 && buf[16] == 0x11);
  __asm__ volatile("sw %0, 19(%1)" ::"r"(0xaabbccddull), "r"(buf) : "memory");
  CHECK(buf[19] == 0xdd && buf[22] == 0xaa);
  CHECK(last_trap.count == 0);
  /* x0 stays zero */
  __asm__ volatile("addi x0, x0, 5\n mv %0, x0" : "=r"(v));
  CHECK(v == 0);
  /* fence, fence.i */
  __asm__ volatile("fence\n fence.i\n fence rw, rw");
  return 0;
}
