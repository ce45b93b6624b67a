/* C: every compressed instruction class, written out explicitly (the compiler emits many more). */
#include "test.h"

static uint64_t mem[8] __attribute__((aligned(16))) = {0x1111, 0x2222, 0x3333, 0x4444};

int main(void) {
  uint64_t r;
  __asm__ volatile(".option push\n.option rvc\n c.li %0, -7\n c.addi %0, 3\n .option pop"
                   : "=r"(r));
  CHECK(r == (uint64_t)-4);
  __asm__ volatile("c.lui %0, 0xfffe1\n" : "=r"(r));
  CHECK(r == 0xfffffffffffe1000ull);
  r = 0x7fffffff;
  __asm__ volatile("c.addiw %0, 1" : "+r"(r));
  CHECK(r == 0xffffffff80000000ull);
  uint64_t sp_before, sp_after;
  __asm__ volatile("mv %0, sp\n c.addi16sp sp, -64\n mv %1, sp\n c.addi16sp sp, 64"
                   : "=r"(sp_before), "=r"(sp_after));
  CHECK(sp_before - sp_after == 64);
  __asm__ volatile("c.addi4spn a0, sp, 16\n mv %0, a0\n mv %1, sp" : "=r"(r), "=r"(sp_after)::"a0");
  CHECK(r == sp_after + 16);
  /* loads/stores with compressed registers */
  uint64_t v1, v2;
  __asm__ volatile("mv a0, %2\n c.ld a1, 8(a0)\n c.lw a2, 16(a0)\n mv %0, a1\n mv %1, a2"
                   : "=r"(v1), "=r"(v2)
                   : "r"(mem)
                   : "a0", "a1", "a2");
  CHECK(v1 == 0x2222 && v2 == 0x3333);
  __asm__ volatile("mv a0, %0\n li a1, -2\n c.sd a1, 32(a0)\n c.sw a1, 40(a0)" ::"r"(mem)
                   : "a0", "a1", "memory");
  CHECK(mem[4] == (uint64_t)-2 && mem[5] == 0xfffffffe);
  /* stack-relative */
  __asm__ volatile("addi sp, sp, -32\n li a0, 77\n c.sdsp a0, 8(sp)\n c.swsp a0, 16(sp)\n"
                   " c.ldsp a1, 8(sp)\n c.lwsp a2, 16(sp)\n addi sp, sp, 32\n mv %0, a1\n mv %1, a2"
                   : "=r"(v1), "=r"(v2)::"a0", "a1", "a2", "memory");
  CHECK(v1 == 77 && v2 == 77);
  /* ALU */
  __asm__ volatile("li a0, 12\n li a1, 10\n c.sub a0, a1\n mv %0, a0" : "=r"(r)::"a0", "a1");
  CHECK(r == 2);
  __asm__ volatile("li a0, 12\n li a1, 10\n c.xor a0, a1\n mv %0, a0" : "=r"(r)::"a0", "a1");
  CHECK(r == 6);
  __asm__ volatile("li a0, 12\n li a1, 10\n c.or a0, a1\n mv %0, a0" : "=r"(r)::"a0", "a1");
  CHECK(r == 14);
  __asm__ volatile("li a0, 12\n li a1, 10\n c.and a0, a1\n mv %0, a0" : "=r"(r)::"a0", "a1");
  CHECK(r == 8);
  __asm__ volatile("li a0, 0x7fffffff\n li a1, 1\n c.addw a0, a1\n mv %0, a0"
                   : "=r"(r)::"a0", "a1");
  CHECK(r == 0xffffffff80000000ull);
  __asm__ volatile("li a0, 0\n li a1, 1\n c.subw a0, a1\n mv %0, a0" : "=r"(r)::"a0", "a1");
  CHECK(r == (uint64_t)-1);
  __asm__ volatile("li a0, -16\n c.srai a0, 2\n mv %0, a0" : "=r"(r)::"a0");
  CHECK(r == (uint64_t)-4);
  __asm__ volatile("li a0, -16\n c.srli a0, 60\n mv %0, a0" : "=r"(r)::"a0");
  CHECK(r == 15);
  __asm__ volatile("li a0, 0xff\n c.andi a0, -16\n mv %0, a0" : "=r"(r)::"a0");
  CHECK(r == 0xf0);
  __asm__ volatile("li a0, 3\n c.slli a0, 62\n mv %0, a0" : "=r"(r)::"a0");
  CHECK(r == 0xc000000000000000ull);
  __asm__ volatile("li a1, 5\n c.mv a0, a1\n c.add a0, a1\n mv %0, a0" : "=r"(r)::"a0", "a1");
  CHECK(r == 10);
  /* control flow */
  __asm__ volatile("li %0, 0\n c.j 1f\n li %0, 1\n 1:" : "=r"(r));
  CHECK(r == 0);
  __asm__ volatile(
      "li a0, 0\n li %0, 0\n c.beqz a0, 1f\n li %0, 1\n 1: c.bnez a0, 2f\n addi %0, %0, 2\n 2:"
      : "=r"(r)::"a0");
  CHECK(r == 2);
  uint64_t link, target;
  __asm__ volatile("la a0, 1f\n c.jalr a0\n 1: mv %0, ra\n la %1, 1b"
                   : "=r"(link), "=r"(target)::"a0", "ra");
  CHECK(link == target);
  __asm__ volatile("la a0, 1f\n li %0, 1\n c.jr a0\n li %0, 2\n 1:" : "=r"(r)::"a0");
  CHECK(r == 1);
  /* FP loads/stores */
  double dv = 2.5, out = 0;
  __asm__ volatile("mv a0, %1\n c.fld fa0, 0(a0)\n mv a1, %2\n c.fsd fa0, 0(a1)"
                   : "=m"(out)
                   : "r"(&dv), "r"(&out)
                   : "a0", "a1", "fa0", "memory");
  CHECK(out == 2.5);
  /* c.ebreak traps with cause 3 and tval = pc; the reserved all-zero encoding is illegal */
  reset_trap();
  __asm__ volatile("c.ebreak");
  CHECK(last_trap.count == 1 && last_trap.cause == 3 &&
        (last_trap.tval == last_trap.epc || last_trap.tval == 0));
  reset_trap();
  __asm__ volatile(".2byte 0");
  CHECK(last_trap.count == 1 && last_trap.cause == 2 && last_trap.tval == 0);
  return 0;
}
