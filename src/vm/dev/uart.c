/* ns16550a UART: the guest console.
 *
 * Transmission is instantaneous (bytes go to a buffer the machine flushes to the console fd), so
 * the transmitter is always empty; the THR-empty interrupt follows the 16550 rules (latched when
 * the holding register empties or when the interrupt is enabled, cleared by reading IIR or by
 * writing THR) because Linux's 8250 driver depends on exactly that behaviour.
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "vm/dev/dev.h"

enum {
  UART_RBR_THR = 0, /* DLL when DLAB */
  UART_IER = 1,     /* DLM when DLAB */
  UART_IIR_FCR = 2,
  UART_LCR = 3,
  UART_MCR = 4,
  UART_LSR = 5,
  UART_MSR = 6,
  UART_SCR = 7,
};

#define LCR_DLAB 0x80
#define IER_RDI 0x01
#define IER_THRI 0x02
#define IER_RLSI 0x04
#define IER_MSI 0x08
#define IIR_NO_INT 0x01
#define IIR_THRI 0x02
#define IIR_RDI 0x04
#define IIR_FIFO_ENABLED 0xc0
#define FCR_ENABLE 0x01
#define FCR_CLEAR_RX 0x02
#define LSR_DR 0x01
#define LSR_THRE 0x20
#define LSR_TEMT 0x40
#define MCR_LOOP 0x10
#define MSR_CTS 0x10
#define MSR_DSR 0x20
#define MSR_RI 0x40
#define MSR_DCD 0x80

static uint8_t uart_iir(const uart_state *u) {
  uint8_t id = IIR_NO_INT;
  if ((u->ier & IER_RDI) && u->rx_count > 0)
    id = IIR_RDI;
  else if ((u->ier & IER_THRI) && u->thr_ipending)
    id = IIR_THRI;
  return id | u->iir_fifo;
}

static void uart_update_irq(uart_state *u) {
  dev_irq_set(&u->irq, (uart_iir(u) & IIR_NO_INT) == 0);
}

static uint8_t uart_msr(const uart_state *u) {
  if (!(u->mcr & MCR_LOOP))
    return MSR_DCD | MSR_DSR | MSR_CTS;
  /* loopback: modem outputs feed the modem inputs */
  uint8_t m = 0;
  if (u->mcr & 0x01)
    m |= MSR_DSR;
  if (u->mcr & 0x02)
    m |= MSR_CTS;
  if (u->mcr & 0x04)
    m |= MSR_RI;
  if (u->mcr & 0x08)
    m |= MSR_DCD;
  return m;
}

void uart_init(uart_state *u, dev_irq_line irq, int out_fd) {
  memset(u, 0, sizeof(*u));
  u->irq = irq;
  u->out_fd = out_fd;
  u->lsr = LSR_THRE | LSR_TEMT;
  u->dll = 12; /* 9600 baud at 1.8432 MHz, the reset value firmware expects */
}

void uart_flush(uart_state *u) {
  size_t done = 0;
  while (done < u->tx_len) {
    ssize_t n = write(u->out_fd, u->tx + done, u->tx_len - done);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      break; /* console gone or not writable: drop output rather than stall the guest */
    done += (size_t)n;
  }
  u->tx_len = 0;
}

static void uart_transmit(uart_state *u, uint8_t c) {
  if (u->mcr & MCR_LOOP) {
    uart_rx_push(u, &c, 1);
  } else {
    if (u->tx_len == sizeof(u->tx))
      uart_flush(u);
    u->tx[u->tx_len++] = c;
    if (c == '\n' && u->tx_len > sizeof(u->tx) / 2)
      uart_flush(u);
  }
  u->thr_ipending = true; /* the byte left at once: THR is empty again */
}

unsigned uart_rx_space(const uart_state *u) { return UART_FIFO_SIZE - u->rx_count; }

void uart_rx_push(uart_state *u, const uint8_t *buf, size_t len) {
  for (size_t i = 0; i < len && u->rx_count < UART_FIFO_SIZE; i++) {
    u->rx[(u->rx_head + u->rx_count) % UART_FIFO_SIZE] = buf[i];
    u->rx_count++;
  }
  if (u->rx_count > 0)
    u->lsr |= LSR_DR;
  uart_update_irq(u);
}

static uint8_t uart_rx_pop(uart_state *u) {
  if (u->rx_count == 0)
    return 0;
  uint8_t c = u->rx[u->rx_head];
  u->rx_head = (u->rx_head + 1) % UART_FIFO_SIZE;
  u->rx_count--;
  if (u->rx_count == 0)
    u->lsr &= (uint8_t)~LSR_DR;
  return c;
}

void uart_console_write(uart_state *u, const uint8_t *buf, size_t len) {
  for (size_t i = 0; i < len; i++) {
    if (u->tx_len == sizeof(u->tx))
      uart_flush(u);
    u->tx[u->tx_len++] = buf[i];
  }
}

size_t uart_console_read(uart_state *u, uint8_t *buf, size_t len) {
  size_t n = 0;
  while (n < len && u->rx_count > 0)
    buf[n++] = uart_rx_pop(u);
  uart_update_irq(u);
  return n;
}

bool uart_read(void *dev, uint64_t off, unsigned size, uint64_t *val) {
  uart_state *u = dev;
  if (off >= 8 || size > 4)
    return false;
  uint8_t v = 0;
  switch (off) {
  case UART_RBR_THR:
    v = (u->lcr & LCR_DLAB) ? u->dll : uart_rx_pop(u);
    break;
  case UART_IER:
    v = (u->lcr & LCR_DLAB) ? u->dlm : u->ier;
    break;
  case UART_IIR_FCR:
    v = uart_iir(u);
    if ((v & 0x0f) == IIR_THRI)
      u->thr_ipending = false; /* reading IIR acknowledges THR-empty */
    break;
  case UART_LCR:
    v = u->lcr;
    break;
  case UART_MCR:
    v = u->mcr;
    break;
  case UART_LSR:
    v = u->lsr;
    break;
  case UART_MSR:
    v = uart_msr(u);
    break;
  case UART_SCR:
    v = u->scr;
    break;
  }
  uart_update_irq(u);
  *val = v;
  return true;
}

bool uart_write(void *dev, uint64_t off, unsigned size, uint64_t val) {
  uart_state *u = dev;
  if (off >= 8 || size > 4)
    return false;
  uint8_t v = (uint8_t)val;
  switch (off) {
  case UART_RBR_THR:
    if (u->lcr & LCR_DLAB)
      u->dll = v;
    else
      uart_transmit(u, v);
    break;
  case UART_IER:
    if (u->lcr & LCR_DLAB) {
      u->dlm = v;
    } else {
      bool thri_enabled = !(u->ier & IER_THRI) && (v & IER_THRI);
      u->ier = v & (IER_RDI | IER_THRI | IER_RLSI | IER_MSI);
      if (thri_enabled)
        u->thr_ipending = true; /* enabling THRI with an empty THR raises it at once */
    }
    break;
  case UART_IIR_FCR:
    u->fcr = v;
    u->iir_fifo = (v & FCR_ENABLE) ? IIR_FIFO_ENABLED : 0;
    if (v & FCR_CLEAR_RX) {
      u->rx_count = 0;
      u->lsr &= (uint8_t)~LSR_DR;
    }
    break;
  case UART_LCR:
    u->lcr = v;
    break;
  case UART_MCR:
    u->mcr = v & 0x1f;
    break;
  case UART_LSR:
  case UART_MSR:
    break; /* read-only */
  case UART_SCR:
    u->scr = v;
    break;
  }
  uart_update_irq(u);
  return true;
}

/* ------------------------------------------------------------------ save / restore */

#define UART_STATE_VERSION 1

void uart_save(const uart_state *u, vmstate_writer *w) {
  vmstate_begin(w, "UART", UART_STATE_VERSION);
  const uint8_t regs[] = {u->ier, u->iir_fifo, u->lcr, u->mcr, u->lsr,
                          u->msr, u->scr,      u->dll, u->dlm, u->fcr};
  vmstate_put_bytes(w, regs, sizeof(regs));
  vmstate_put_bool(w, u->thr_ipending);
  vmstate_put_bytes(w, u->rx, sizeof(u->rx));
  vmstate_put_u32(w, u->rx_head);
  vmstate_put_u32(w, u->rx_count);
  /* output the guest wrote but the console has not taken yet */
  vmstate_put_u32(w, (uint32_t)u->tx_len);
  vmstate_put_bytes(w, u->tx, u->tx_len);
  vmstate_end_section(w);
}

int uart_load(uart_state *u, vmstate_reader *img, vs_error **err) {
  vmstate_reader r;
  if (vmstate_next(img, "UART", UART_STATE_VERSION, &r, err) < 0)
    return -1;
  uint8_t regs[10];
  vmstate_get_bytes(&r, regs, sizeof(regs));
  u->ier = regs[0] & (IER_RDI | IER_THRI | IER_RLSI | IER_MSI);
  u->iir_fifo = regs[1] & IIR_FIFO_ENABLED;
  u->lcr = regs[2];
  u->mcr = regs[3] & 0x1f;
  u->lsr = regs[4];
  u->msr = regs[5];
  u->scr = regs[6];
  u->dll = regs[7];
  u->dlm = regs[8];
  u->fcr = regs[9];
  u->thr_ipending = vmstate_get_bool(&r);
  vmstate_get_bytes(&r, u->rx, sizeof(u->rx));
  u->rx_head = vmstate_get_u32(&r);
  u->rx_count = vmstate_get_u32(&r);
  if (u->rx_head >= UART_FIFO_SIZE || u->rx_count > UART_FIFO_SIZE)
    vmstate_refuse(&r, "receive FIFO position out of range");
  uint32_t tx_len = vmstate_get_u32(&r);
  if (tx_len > sizeof(u->tx)) {
    vmstate_refuse(&r, "transmit buffer longer than the device's");
    tx_len = 0;
  }
  vmstate_get_bytes(&r, u->tx, tx_len);
  u->tx_len = tx_len;
  return vmstate_end(&r, err);
}
