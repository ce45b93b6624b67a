/* Start-up for guest programs run in S-mode under vessel-vmm's built-in SBI (--bios builtin with
 * an ELF): hart 0 enters _start, the others when a program starts them through SBI HSM at
 * _start. Every hart gets its own stack and calls sbi_main(hartid); a hart that returns sleeps. */
#define SBI_STACK_SIZE 16384
#define SBI_MAX_HARTS 8

  .section .text.init
  .globl _start
_start:
  li t0, SBI_MAX_HARTS
  bgeu a0, t0, 2f
  la sp, sbi_stacks_top
  li t0, SBI_STACK_SIZE
  mul t0, t0, a0
  sub sp, sp, t0
  call sbi_main
2: wfi
  j 2b

  .bss
  .align 12
  .space SBI_STACK_SIZE * SBI_MAX_HARTS
  .globl sbi_stacks_top
sbi_stacks_top:
