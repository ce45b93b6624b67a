/* virtio-console (virtio 1.2, section 5.3) with one port and no optional features: the guest's
 * hvc0. Queue 0 (receiveq) takes console input, queue 1 (transmitq) carries the guest's output.
 *
 * Input arrives from the machine's console (after its Ctrl-A escapes) and waits in a small ring
 * until the guest posts receive buffers; the machine only reads as much as the ring has room for,
 * so nothing is lost while the guest is slow. Output is written to the console fd as it comes.
 */
#include "vm/dev/virtio.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#define RX_QUEUE 0
#define TX_QUEUE 1

static virtio_console *console_of(virtio_mmio *t) { return (virtio_console *)t; }

static bool device_live(const virtio_console *c) {
  return (c->mmio.status & VIRTIO_STATUS_DRIVER_OK) &&
         !(c->mmio.status & VIRTIO_STATUS_NEEDS_RESET);
}

static void write_out(int fd, const void *buf, size_t len) {
  const uint8_t *p = buf;
  while (len) {
    ssize_t n = write(fd, p, len);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return; /* the console is gone: the guest keeps running without it */
    p += n;
    len -= (size_t)n;
  }
}

/* Take one chain from queue qi into c->elem, and give it back (virtio_mmio_pop/push). */
static int take_chain(virtio_console *c, unsigned qi) {
  return virtio_mmio_pop(&c->mmio, qi, &c->elem);
}

static bool give_back(virtio_console *c, unsigned qi, uint32_t written) {
  return virtio_mmio_push(&c->mmio, qi, c->elem.head, written);
}

static void finish(virtio_console *c, unsigned qi, bool pushed) {
  virtq_update_avail_event(&c->mmio.queues[qi], &c->mmio.mem);
  if (pushed)
    virtio_mmio_notify_used(&c->mmio, qi);
}

static void transmit(virtio_console *c) {
  bool pushed = false;
  while (take_chain(c, TX_QUEUE) > 0) {
    for (unsigned i = 0; i < c->elem.out_num; i++)
      write_out(c->out_fd, c->elem.out[i].iov_base, c->elem.out[i].iov_len);
    c->tx_bytes += c->elem.out_len;
    if (!give_back(c, TX_QUEUE, 0))
      return;
    pushed = true;
  }
  finish(c, TX_QUEUE, pushed);
}

/* Move waiting input into the guest's receive buffers. */
static void deliver_input(virtio_console *c) {
  virtq *q = &c->mmio.queues[RX_QUEUE];
  if (!device_live(c) || !q->ready)
    return;
  bool pushed = false;
  while (c->rx_count && take_chain(c, RX_QUEUE) > 0) {
    if (c->elem.in_len == 0) {
      give_back(c, RX_QUEUE, 0); /* no room in it: hand it back unused */
      pushed = true;
      continue;
    }
    uint32_t wrote = 0;
    while (c->rx_count && wrote < c->elem.in_len) {
      /* the ring's contiguous run from its head */
      size_t run = VIRTIO_CONSOLE_RX_BUF - c->rx_head;
      if (run > c->rx_count)
        run = c->rx_count;
      size_t n = vs_iov_copy_to(c->elem.in, c->elem.in_num, wrote, c->rx + c->rx_head, run);
      if (n == 0)
        break;
      wrote += (uint32_t)n;
      c->rx_head = (c->rx_head + (unsigned)n) % VIRTIO_CONSOLE_RX_BUF;
      c->rx_count -= (unsigned)n;
    }
    c->rx_bytes += wrote;
    if (!give_back(c, RX_QUEUE, wrote))
      return;
    pushed = true;
  }
  finish(c, RX_QUEUE, pushed);
}

unsigned virtio_console_rx_space(const virtio_console *c) {
  return VIRTIO_CONSOLE_RX_BUF - c->rx_count;
}

void virtio_console_rx_push(virtio_console *c, const uint8_t *buf, size_t len) {
  for (size_t i = 0; i < len && c->rx_count < VIRTIO_CONSOLE_RX_BUF; i++) {
    c->rx[(c->rx_head + c->rx_count) % VIRTIO_CONSOLE_RX_BUF] = buf[i];
    c->rx_count++;
  }
  deliver_input(c);
}

static void console_notify(virtio_mmio *t, unsigned q) {
  virtio_console *c = console_of(t);
  if (q == TX_QUEUE)
    transmit(c);
  else if (q == RX_QUEUE)
    deliver_input(c);
}

static const uint8_t *console_config(virtio_mmio *t, size_t *len) {
  virtio_console *c = console_of(t);
  *len = sizeof(c->config);
  return c->config;
}

static const virtio_device_ops console_ops = {
    .notify = console_notify,
    .config = console_config,
};

void virtio_console_init(virtio_console *c, int out_fd, virtio_mem mem, dev_irq_line irq) {
  memset(c, 0, sizeof(*c));
  c->out_fd = out_fd;
  virtio_mmio_init(&c->mmio, VIRTIO_ID_CONSOLE,
                   VIRTIO_F_RING_INDIRECT_DESC | VIRTIO_F_RING_EVENT_IDX, 2, mem, irq,
                   &console_ops);
}

/* ------------------------------------------------------------------ snapshot */

#define VIRTIO_CONSOLE_STATE_VERSION 1

void virtio_console_save(const virtio_console *c, vmstate_writer *w) {
  virtio_mmio_save(&c->mmio, w);
  vmstate_begin(w, "VCON", VIRTIO_CONSOLE_STATE_VERSION);
  vmstate_put_u32(w, c->rx_count);
  for (unsigned i = 0; i < c->rx_count; i++)
    vmstate_put_u8(w, c->rx[(c->rx_head + i) % VIRTIO_CONSOLE_RX_BUF]);
  vmstate_put_u64(w, c->rx_bytes);
  vmstate_put_u64(w, c->tx_bytes);
  vmstate_end_section(w);
}

int virtio_console_load(virtio_console *c, vmstate_reader *img, vs_error **err) {
  if (virtio_mmio_load(&c->mmio, img, err) < 0)
    return -1;
  vmstate_reader r;
  if (vmstate_next(img, "VCON", VIRTIO_CONSOLE_STATE_VERSION, &r, err) < 0)
    return -1;
  uint32_t n = vmstate_get_u32(&r);
  if (n > VIRTIO_CONSOLE_RX_BUF) {
    vmstate_refuse(&r, "more pending input than the device holds");
    n = 0;
  }
  c->rx_head = 0;
  vmstate_get_bytes(&r, c->rx, n);
  c->rx_count = n;
  c->rx_bytes = vmstate_get_u64(&r);
  c->tx_bytes = vmstate_get_u64(&r);
  return vmstate_end(&r, err);
}
