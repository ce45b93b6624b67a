/* Not a test of the hart: the program tests/integration/test_replay.py records twice to show
 * that two recordings of one run differ only in the outside inputs. It runs in M-mode on one
 * hart without HTIF (a recording refuses it): output on the UART, the end through the syscon's
 * power-off. Between stretches of computing it reads the clock three ways (the time CSR, the
 * CLINT's mtime, the goldfish RTC) and prints each value beside the instruction count it read
 * it at, waits for a timer interrupt in WFI and takes it where its own instructions enable it,
 * and at the end reads a line of console input, also waiting in WFI. What it does never
 * depends on a value it read: numbers are printed as 16 hex digits, and WFI with an interrupt
 * already pending retires like a nop, so the instruction counts are the same whenever the
 * input came. Before powering off it wipes its stack and registers, so its final state holds
 * nothing it read and both recordings end with the same digest. */
#include <stdint.h>

#define UART ((volatile uint8_t *)0x10000000ul)
#define UART_RBR 0
#define UART_IER 1
#define UART_LSR 5
#define LSR_DR 0x01
#define LSR_THRE 0x20
#define RTC ((volatile uint32_t *)0x00101000ul)
#define CLINT_MTIMECMP ((volatile uint64_t *)0x02004000ul)
#define CLINT_MTIME ((volatile uint64_t *)0x0200bff8ul)
#define PLIC ((volatile uint32_t *)0x0c000000ul)
#define UART_IRQ 10
#define MIP_MTIP (1ul << 7)
#define MIP_MEIP (1ul << 11)
#define MSTATUS_MIE (1ul << 3)
#define ROUNDS 5
#define WAIT_TICKS 20000 /* 2 ms of the 10 MHz clock */

void rr_main(void);
void rr_trap(void) __attribute__((interrupt("machine"), aligned(4)));

volatile uint64_t rr_ticks;
volatile uint64_t rr_sink;

/* Start on our own stack with the trap vector set; after rr_main, wipe the stack and every
 * register and power off (the syscon's 0x5555). */
__asm__(
    ".section .text.init, \"ax\"\n"
    ".globl _start\n"
    "_start:\n"
    "  la sp, rr_stack_top\n"
    "  la t0, rr_trap\n"
    "  csrw mtvec, t0\n"
    "  call rr_main\n"
    "  la t0, rr_stack\n"
    "  la t1, rr_stack_top\n"
    "1: sd zero, 0(t0)\n"
    "  addi t0, t0, 8\n"
    "  bltu t0, t1, 1b\n"
    "  csrw mscratch, zero\n"
    "  .irp r, 1,2,3,4,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31\n"
    "  li x\\r, 0\n"
    "  .endr\n"
    "  li t0, 0x100000\n"
    "  li t1, 0x5555\n"
    "  sw t1, 0(t0)\n"
    "2: j 2b\n"
    ".bss\n"
    ".align 4\n"
    "rr_stack: .space 16384\n"
    "rr_stack_top:\n"
    ".text\n");

/* The only interrupt this program enables is the timer: take it once. */
void rr_trap(void) {
  *CLINT_MTIMECMP = ~0ul;
  rr_ticks++;
}

static void put(char c) {
  while (!(UART[UART_LSR] & LSR_THRE)) {
  }
  UART[UART_RBR] = (uint8_t)c;
}

static void put_str(const char *s) {
  while (*s)
    put(*s++);
}

/* 16 digits whatever the value: the same instructions for every value */
static void put_hex(uint64_t v) {
  static const char digits[] = "0123456789abcdef";
  for (int s = 60; s >= 0; s -= 4)
    put(digits[(v >> s) & 15]);
}

/* "WHAT COUNT VALUE": the value was read by the instruction after the one that read COUNT */
static void show(const char *what, uint64_t at, uint64_t v) {
  put_str(what);
  put(' ');
  put_hex(at);
  put(' ');
  put_hex(v);
  put('\n');
}

static void compute(void) {
  uint64_t x = rr_sink;
  for (int i = 0; i < 300000; i++)
    x = x * 6364136223846793005ul + 1442695040888963407ul;
  rr_sink = x;
}

static void read_clocks(void) {
  uint64_t at, v;
  uint32_t lo, hi;
  __asm__ volatile("csrr %0, instret\n\tcsrr %1, time" : "=&r"(at), "=r"(v));
  show("time", at, v);
  __asm__ volatile("csrr %0, instret\n\tld %1, 0(%2)"
                   : "=&r"(at), "=r"(v)
                   : "r"(CLINT_MTIME)
                   : "memory");
  show("mtime", at, v);
  /* reading TIME_LOW latches TIME_HIGH */
  __asm__ volatile("csrr %0, instret\n\tlw %1, 0(%3)\n\tlw %2, 4(%3)"
                   : "=&r"(at), "=&r"(lo), "=&r"(hi)
                   : "r"(RTC)
                   : "memory");
  show("rtc", at, (uint64_t)hi << 32 | lo);
}

/* Sleep until the timer is due, then take its interrupt by enabling it: where it is taken is
 * this code's choice, not the clock's. */
static void wait_tick(void) {
  uint64_t now, mip, before = rr_ticks;
  __asm__ volatile("csrr %0, time" : "=r"(now));
  *CLINT_MTIMECMP = now + WAIT_TICKS;
  __asm__ volatile("csrs mie, %0" ::"r"(MIP_MTIP));
  do {
    __asm__ volatile("wfi\n\tcsrr %0, mip" : "=r"(mip)::"memory");
  } while (!(mip & MIP_MTIP));
  __asm__ volatile("csrs mstatus, %0\n\tcsrc mstatus, %0" ::"r"(MSTATUS_MIE) : "memory");
  __asm__ volatile("csrc mie, %0" ::"r"(MIP_MTIP));
  put_str(rr_ticks == before + 1 ? "tick " : "no tick ");
  put_hex(rr_ticks);
  put('\n');
}

/* A line of console input, waiting in WFI for the UART's interrupt line (never taken). */
static void read_line(void) {
  char line[64];
  unsigned n = 0;
  PLIC[UART_IRQ] = 1;                /* priority */
  PLIC[0x2000 / 4] = 1u << UART_IRQ; /* enabled for context 0: hart 0's M-mode */
  PLIC[0x200000 / 4] = 0;            /* threshold */
  UART[UART_IER] = 1;                /* received data available */
  __asm__ volatile("csrs mie, %0" ::"r"(MIP_MEIP));
  put_str("rr-inputs: type a line\n");
  for (;;) {
    do
      __asm__ volatile("wfi" ::: "memory");
    while (!(UART[UART_LSR] & LSR_DR));
    char c = 0;
    while ((UART[UART_LSR] & LSR_DR) && c != '\n') {
      c = (char)UART[UART_RBR];
      if (n < sizeof(line) - 1)
        line[n++] = c;
    }
    if (c == '\n')
      break;
  }
  line[n] = 0;
  UART[UART_IER] = 0;
  PLIC[0x200004 / 4] = PLIC[0x200004 / 4]; /* claim and complete, if anything is pending */
  __asm__ volatile("csrc mie, %0" ::"r"(MIP_MEIP));
  put_str("got ");
  put_str(line);
}

void rr_main(void) {
  put_str("rr-inputs: start\n");
  for (int round = 0; round < ROUNDS; round++) {
    compute();
    read_clocks();
    wait_tick();
  }
  read_line();
  put_str("rr-inputs: end\n");
}
