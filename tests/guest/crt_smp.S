/* Start-up for the multi-hart guest programs (smp_*.c): every hart enters _start in M-mode, gets
 * its own stack and calls smp_main(hartid); hart 0's return value ends the program through HTIF
 * (0 = pass), the other harts sleep. */
#define SMP_STACK_SIZE 16384
#define SMP_MAX_HARTS 8

  .section .text.init
  .globl _start
_start:
  csrr a0, mhartid
  li t0, SMP_MAX_HARTS
  bgeu a0, t0, park
  la sp, smp_stacks_top
  li t0, SMP_STACK_SIZE
  mul t0, t0, a0
  sub sp, sp, t0
  call smp_main
  csrr t0, mhartid
  bnez t0, park
/* hart 0: code 0 = pass, else (code << 1) | 1 as test_exit does */
  beqz a0, 1f
  slli a0, a0, 1
  ori a0, a0, 1
  j 2f
1: li a0, 1
2: la t0, tohost
  sd a0, 0(t0)
3: j 3b
park:
  wfi
  j park

  .section .tohost, "aw", @progbits
  .align 6
  .globl tohost
tohost: .dword 0
  .align 6
  .globl fromhost
fromhost: .dword 0

  .bss
  .align 12
  .space SMP_STACK_SIZE * SMP_MAX_HARTS
  .globl smp_stacks_top
smp_stacks_top:
