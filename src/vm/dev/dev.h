/* The device model shared by the machine and its devices (internal to the vm module).
 *
 * A device is a plain struct that owns all of its state (so it can be saved and restored next to
 * its code, see issue 5) plus a pair of MMIO handlers. The machine maps each device at a base
 * address and calls the handlers with the offset inside the device's window. Handlers get guest
 * controlled offsets and sizes: they check both and return false for anything the device does not
 * decode, which the hart turns into an access fault. They never crash on a bad access.
 *
 * Devices talk to the rest of the machine only through the small callback structs below: an
 * interrupt line into the PLIC, interrupt bits into a hart, the console, and the machine's clock.
 *
 * Saving and restoring (snapshots, migration): each device has DEV_save(dev, writer), which writes
 * one section with its guest-visible state, and DEV_load(dev, reader, err), which reads it back
 * into a device initialised with the same wiring, refusing values the device could never hold.
 * Wiring (interrupt lines, file descriptors, callbacks) is never saved.
 */
#ifndef VESSEL_VM_DEV_H
#define VESSEL_VM_DEV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vm/vmstate.h"

#define VM_MAX_HARTS 8

/* MMIO handlers. `off` is relative to the device's base; size is 1, 2, 4 or 8. */
typedef bool (*dev_read_fn)(void *dev, uint64_t off, unsigned size, uint64_t *val);
typedef bool (*dev_write_fn)(void *dev, uint64_t off, unsigned size, uint64_t val);

typedef struct dev_region {
  const char *name;
  uint64_t base;
  uint64_t size;
  void *dev;
  dev_read_fn read;
  dev_write_fn write;
} dev_region;

/* A level-triggered interrupt line into an interrupt controller (the PLIC). */
typedef struct dev_irq_line {
  void (*set)(void *ctrl, unsigned irq, bool level);
  void *ctrl;
  unsigned irq;
} dev_irq_line;

static inline void dev_irq_set(const dev_irq_line *line, bool level) {
  if (line->set)
    line->set(line->ctrl, line->irq, level);
}

/* Interrupt bits of a hart's mip (MSIP, MTIP, MEIP, SEIP), driven by the PLIC and the ACLINT. */
typedef struct dev_hart_irq {
  void (*set)(void *machine, unsigned hart, uint64_t mip_bit, bool level);
  void *machine;
} dev_hart_irq;

/* mip bit numbers (privileged spec, table "Machine interrupt register") */
#define DEV_MIP_SSIP (1ull << 1)
#define DEV_MIP_MSIP (1ull << 3)
#define DEV_MIP_STIP (1ull << 5)
#define DEV_MIP_MTIP (1ull << 7)
#define DEV_MIP_SEIP (1ull << 9)
#define DEV_MIP_MEIP (1ull << 11)

/* Little-endian access helpers for register files wider than one access. */
static inline uint64_t dev_extract(uint64_t reg, unsigned byte_off, unsigned size) {
  uint64_t v = reg >> (8 * byte_off);
  return size >= 8 ? v : v & ((1ULL << (8 * size)) - 1);
}
static inline uint64_t dev_deposit(uint64_t reg, unsigned byte_off, unsigned size, uint64_t val) {
  uint64_t mask = size >= 8 ? ~0ULL : ((1ULL << (8 * size)) - 1);
  mask <<= 8 * byte_off;
  return (reg & ~mask) | ((val << (8 * byte_off)) & mask);
}

/* ------------------------------------------------------------------ ns16550a UART */

#define UART_FIFO_SIZE 16
#define UART_TX_BUF 4096

typedef struct uart_state {
  /* registers */
  uint8_t ier, iir_fifo, lcr, mcr, lsr, msr, scr, dll, dlm, fcr;
  bool thr_ipending; /* THR-empty interrupt latched (cleared by reading IIR or writing THR) */
  /* receive FIFO */
  uint8_t rx[UART_FIFO_SIZE];
  unsigned rx_head, rx_count;
  /* transmitted bytes not yet written to the console */
  uint8_t tx[UART_TX_BUF];
  size_t tx_len;
  /* wiring */
  dev_irq_line irq;
  int out_fd;
} uart_state;

void uart_init(uart_state *u, dev_irq_line irq, int out_fd);
bool uart_read(void *dev, uint64_t off, unsigned size, uint64_t *val);
bool uart_write(void *dev, uint64_t off, unsigned size, uint64_t val);
/* Room in the receive FIFO, and feeding it with console input. */
unsigned uart_rx_space(const uart_state *u);
void uart_rx_push(uart_state *u, const uint8_t *buf, size_t len);
/* Write buffered output to the console fd. */
void uart_flush(uart_state *u);
/* The firmware console (SBI DBCN) shares the UART's console without touching its registers. */
void uart_console_write(uart_state *u, const uint8_t *buf, size_t len);
size_t uart_console_read(uart_state *u, uint8_t *buf, size_t len);
void uart_save(const uart_state *u, vmstate_writer *w);
int uart_load(uart_state *u, vmstate_reader *img, vs_error **err);

/* ------------------------------------------------------------------ PLIC (sifive,plic-1.0.0) */

#define PLIC_NUM_SOURCES 64 /* source 0 does not exist; 1..63 usable */
#define PLIC_MAX_CONTEXTS (2 * VM_MAX_HARTS)
#define PLIC_SIZE 0x4000000ull
#define PLIC_DT_SIZE 0x600000ULL

typedef struct plic_state {
  uint32_t priority[PLIC_NUM_SOURCES];
  uint64_t level;   /* current input level of each source */
  uint64_t pending; /* gateway: latched requests not yet claimed */
  uint64_t claimed; /* claimed and not yet completed */
  uint64_t enable[PLIC_MAX_CONTEXTS];
  uint32_t threshold[PLIC_MAX_CONTEXTS];
  unsigned num_contexts; /* 2 per hart: 2h = M-mode, 2h+1 = S-mode */
  dev_hart_irq out;
} plic_state;

void plic_init(plic_state *p, unsigned num_harts, dev_hart_irq out);
bool plic_read(void *dev, uint64_t off, unsigned size, uint64_t *val);
bool plic_write(void *dev, uint64_t off, unsigned size, uint64_t val);
/* dev_irq_line.set for sources */
void plic_set_irq(void *dev, unsigned irq, bool level);
void plic_save(const plic_state *p, vmstate_writer *w);
int plic_load(plic_state *p, vmstate_reader *img, vs_error **err);

/* ------------------------------------------------------------------ ACLINT / CLINT */

#define ACLINT_SIZE 0x10000ULL
#define ACLINT_MTIMECMP_OFF 0x4000u
#define ACLINT_MTIME_OFF 0xbff8u

typedef struct aclint_state {
  uint32_t msip[VM_MAX_HARTS];
  uint64_t mtimecmp[VM_MAX_HARTS];
  unsigned num_harts;
  dev_hart_irq out;
  uint64_t (*read_mtime)(void *machine);
  void (*write_mtime)(void *machine, uint64_t val);
} aclint_state;

void aclint_init(aclint_state *c, unsigned num_harts, dev_hart_irq out,
                 uint64_t (*read_mtime)(void *), void (*write_mtime)(void *, uint64_t));
bool aclint_read(void *dev, uint64_t off, unsigned size, uint64_t *val);
bool aclint_write(void *dev, uint64_t off, unsigned size, uint64_t val);
/* Re-evaluate MTIP of every hart against the current time. */
void aclint_update_timers(aclint_state *c, uint64_t now);
/* The earliest mtimecmp of all harts (UINT64_MAX if none armed). */
uint64_t aclint_next_deadline(const aclint_state *c);
/* mtime is the machine's: these cover msip and mtimecmp. */
void aclint_save(const aclint_state *c, vmstate_writer *w);
int aclint_load(aclint_state *c, vmstate_reader *img, vs_error **err);

/* ------------------------------------------------------------------ syscon (poweroff/reboot) */

#define SYSCON_SIZE 0x1000ULL
#define SYSCON_POWEROFF 0x5555U
#define SYSCON_RESET 0x7777U
#define SYSCON_FAIL 0x3333u /* sifive,test0: FAIL with exit code in bits 31:16 */

typedef enum {
  SYSCON_NONE = 0,
  SYSCON_REQ_POWEROFF,
  SYSCON_REQ_RESET,
  SYSCON_REQ_FAIL,
} syscon_request;

typedef struct syscon_state {
  syscon_request request;
  unsigned fail_code;
} syscon_state;

void syscon_init(syscon_state *s);
bool syscon_read(void *dev, uint64_t off, unsigned size, uint64_t *val);
bool syscon_write(void *dev, uint64_t off, unsigned size, uint64_t val);
void syscon_save(const syscon_state *s, vmstate_writer *w);
int syscon_load(syscon_state *s, vmstate_reader *img, vs_error **err);

/* ------------------------------------------------------------------ goldfish RTC */

#define RTC_SIZE 0x1000ULL

typedef struct rtc_state {
  int64_t offset_ns; /* guest time = host CLOCK_REALTIME + offset */
  uint32_t time_high_latch;
  uint32_t alarm_high_latch;
  uint64_t alarm_ns;
  bool alarm_armed;
  bool irq_enabled;
  bool irq_pending;
  dev_irq_line irq;
  /* record/replay: the host's real-time clock in ns comes from here instead (NULL: the host's) */
  int64_t (*clock_ns)(void *opaque);
  void *clock_opaque;
} rtc_state;

void rtc_init(rtc_state *r, dev_irq_line irq);
bool rtc_read(void *dev, uint64_t off, unsigned size, uint64_t *val);
bool rtc_write(void *dev, uint64_t off, unsigned size, uint64_t val);
/* Fire the alarm if its time has come. */
void rtc_update(rtc_state *r);
/* Nanoseconds until the alarm fires (INT64_MAX if none armed). */
int64_t rtc_ns_until_alarm(const rtc_state *r);
/* The guest's clock offset from the host's real-time clock is saved, so a restored guest reads
 * the real date (its wall clock follows the host's, as after a suspend). */
void rtc_save(const rtc_state *r, vmstate_writer *w);
int rtc_load(rtc_state *rtc, vmstate_reader *img, vs_error **err);

#endif
