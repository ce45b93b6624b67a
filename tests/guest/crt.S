/* Start-up and trap entry for the bare-metal guest tests (see test.h). */
#define MAGIC_BACK_TO_M 0x52455431

  .section .text.init
  .globl _start
_start:
  la sp, stack_top
  la t0, m_trap_stack_top
  csrw mscratch, t0
  la t0, m_trap_entry
  csrw mtvec, t0
  li t0, (1 << 13)          /* mstatus.FS = initial: enable the FPU */
  csrs mstatus, t0
  csrwi fcsr, 0
  li t0, -1                 /* PMP: let S and U access all memory (NAPOT, RWX) */
  csrw pmpaddr0, t0
  li t0, 0x1f
  csrw pmpcfg0, t0
  call main
  call test_exit
1: j 1b

/* void test_exit(long code): code 0 = pass, else the failing check's number */
  .text
  .globl test_exit
test_exit:
  beqz a0, 1f
  slli a0, a0, 1
  ori a0, a0, 1
  j 2f
1: li a0, 1
2: la t0, tohost
  sd a0, 0(t0)
3: j 3b

/* Trap entry: registers go to a frame on a separate trap stack (xscratch holds its top) and the C
 * handler trap_handler(frame, from_s_vector) may change them, including sp (frame[2]). */
.macro TRAP_ENTRY scratch, ret, smode
  csrrw sp, \scratch, sp
  addi sp, sp, -256
  .irp r, 1,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
  sd x\r, (\r*8)(sp)
  .endr
  csrr t0, \scratch
  sd t0, 16(sp)
  mv a0, sp
  li a1, \smode
  call trap_handler
  addi t0, sp, 256
  csrw \scratch, t0
  .irp r, 1,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
  ld x\r, (\r*8)(sp)
  .endr
  ld sp, 16(sp)
  \ret
.endm

  .align 4
  .globl m_trap_entry
m_trap_entry:
  TRAP_ENTRY mscratch, mret, 0

  .align 4
  .globl s_trap_entry
s_trap_entry:
  TRAP_ENTRY sscratch, sret, 1

/* void enter_mode(long priv, void (*fn)(void)): run fn in U (0) or S (1) mode; fn comes back
 * with back_to_m(). */
  .globl enter_mode
enter_mode:
  addi sp, sp, -112
  sd ra, 0(sp)
  .irp r, 0,1,2,3,4,5,6,7,8,9,10,11
  sd s\r, (8+\r*8)(sp)
  .endr
  la t0, saved_m_sp
  sd sp, 0(t0)
  li t0, (3 << 11)
  csrc mstatus, t0
  slli t1, a0, 11
  csrs mstatus, t1
  csrw mepc, a1
  mret
  .globl enter_mode_return
enter_mode_return:
  la t0, saved_m_sp
  ld sp, 0(t0)
  ld ra, 0(sp)
  .irp r, 0,1,2,3,4,5,6,7,8,9,10,11
  ld s\r, (8+\r*8)(sp)
  .endr
  addi sp, sp, 112
  ret

  .globl back_to_m
back_to_m:
  li a7, MAGIC_BACK_TO_M
  ecall
1: j 1b

  .section .tohost, "aw", @progbits
  .align 6
  .globl tohost
  .type tohost, @object
  .size tohost, 8
tohost: .dword 0
  .align 6
  .globl fromhost
  .type fromhost, @object
  .size fromhost, 8
fromhost: .dword 0

  .bss
  .align 12
  .space 16384
  .globl stack_top
stack_top:
  .space 8192
  .globl m_trap_stack_top
m_trap_stack_top:
  .space 8192
  .globl s_trap_stack_top
s_trap_stack_top:
  .align 3
saved_m_sp: .dword 0
