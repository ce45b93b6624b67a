/* virtio-input (virtio 1.2, section 5.8) as a power button: one key, KEY_POWER.
 *
 * The guest's driver discovers the device through the configuration space: it writes `select`
 * and `subsel`, then reads `size` and the data for that question (name, ids, which event types
 * and keys exist). Events travel in 8-byte buffers {le16 type, le16 code, le32 value} that the
 * driver posts on the event queue; the status queue (LEDs and the like) is read and ignored.
 * Events that find no buffer wait in a short queue until the driver posts more.
 */
#include <string.h>

#include "vm/dev/virtio.h"

enum {
  CFG_UNSET = 0x00,
  CFG_ID_NAME = 0x01,
  CFG_ID_SERIAL = 0x02,
  CFG_ID_DEVIDS = 0x03,
  CFG_PROP_BITS = 0x10,
  CFG_EV_BITS = 0x11,
  CFG_ABS_INFO = 0x12,
};

/* linux/input-event-codes.h */
#define EV_SYN 0x00
#define EV_KEY 0x01
#define SYN_REPORT 0
#define KEY_POWER 116
#define BUS_VIRTUAL 0x06

#define CFG_OFF_SELECT 0
#define CFG_OFF_SUBSEL 1
#define CFG_OFF_SIZE 2
#define CFG_OFF_DATA 8

#define EVENTQ 0
#define STATUSQ 1

static const char input_name[] = "vessel power button";

static virtio_input *input_of(virtio_mmio *t) { return (virtio_input *)t; }

/* The answer to the driver's current (select, subsel) question. */
static void config_update(virtio_input *in) {
  uint8_t *data = in->config + CFG_OFF_DATA;
  memset(in->config, 0, sizeof(in->config));
  in->config[CFG_OFF_SELECT] = in->select;
  in->config[CFG_OFF_SUBSEL] = in->subsel;
  uint8_t size = 0;
  switch (in->select) {
  case CFG_ID_NAME:
    size = sizeof(input_name) - 1;
    memcpy(data, input_name, size);
    break;
  case CFG_ID_DEVIDS: /* bustype, vendor, product, version (le16 each) */
    data[0] = BUS_VIRTUAL;
    data[2] = 0x56; /* 'V' */
    data[4] = 0x01;
    data[6] = 0x01;
    size = 8;
    break;
  case CFG_EV_BITS:
    if (in->subsel == EV_KEY) {
      data[KEY_POWER / 8] = 1u << (KEY_POWER % 8);
      size = KEY_POWER / 8 + 1;
    }
    break;
  default:
    break; /* no serial, properties or axes: size 0 */
  }
  in->config[CFG_OFF_SIZE] = size;
}

static const uint8_t *input_config(virtio_mmio *t, size_t *len) {
  *len = sizeof(input_of(t)->config);
  return input_of(t)->config;
}

static void input_config_write(virtio_mmio *t, uint64_t off, unsigned size, uint32_t val) {
  virtio_input *in = input_of(t);
  for (unsigned i = 0; i < size; i++) {
    uint8_t b = (uint8_t)(val >> (8 * i));
    if (off + i == CFG_OFF_SELECT)
      in->select = b;
    else if (off + i == CFG_OFF_SUBSEL)
      in->subsel = b;
  }
  config_update(in);
}

/* Hand waiting events to the driver's buffers. */
static void deliver_pending(virtio_input *in) {
  virtio_mmio *t = &in->mmio;
  unsigned done = 0;
  while (done < in->num_pending) {
    int r = virtio_mmio_pop(t, EVENTQ, &in->elem);
    if (r == 0)
      break;
    if (r < 0)
      return;
    size_t n = vs_iov_copy_to(in->elem.in, in->elem.in_num, 0, in->pending[done], 8);
    if (!virtio_mmio_push(t, EVENTQ, in->elem.head, (uint32_t)n))
      return;
    done++;
  }
  memmove(in->pending, in->pending[done], (size_t)(in->num_pending - done) * 8);
  in->num_pending -= done;
  if (done)
    virtio_mmio_notify_used(t, EVENTQ);
}

/* Status reports (LEDs, ...) carry nothing a power button uses: take and return them. */
static void drain_status(virtio_input *in) {
  virtio_mmio *t = &in->mmio;
  for (;;) {
    int r = virtio_mmio_pop(t, STATUSQ, &in->elem);
    if (r == 0)
      break;
    if (r < 0 || !virtio_mmio_push(t, STATUSQ, in->elem.head, 0))
      return;
  }
  virtio_mmio_notify_used(t, STATUSQ);
}

static void input_notify(virtio_mmio *t, unsigned q) {
  if (q == EVENTQ)
    deliver_pending(input_of(t));
  else if (q == STATUSQ)
    drain_status(input_of(t));
}

static void input_reset(virtio_mmio *t) {
  virtio_input *in = input_of(t);
  in->num_pending = 0;
  in->select = in->subsel = 0;
  config_update(in);
}

static const virtio_device_ops input_ops = {
    .notify = input_notify,
    .config = input_config,
    .reset = input_reset,
    .config_write = input_config_write,
};

void virtio_input_init(virtio_input *in, virtio_mem mem, dev_irq_line irq) {
  memset(in, 0, sizeof(*in));
  virtio_mmio_init(&in->mmio, VIRTIO_ID_INPUT, VIRTIO_F_RING_EVENT_IDX, 2, mem, irq, &input_ops);
  config_update(in);
}

static void queue_event(virtio_input *in, uint16_t type, uint16_t code, uint32_t value) {
  if (in->num_pending == VIRTIO_INPUT_MAX_PENDING)
    return; /* the driver takes nothing: older presses are enough */
  uint8_t *e = in->pending[in->num_pending++];
  e[0] = (uint8_t)type;
  e[1] = (uint8_t)(type >> 8);
  e[2] = (uint8_t)code;
  e[3] = (uint8_t)(code >> 8);
  for (int i = 0; i < 4; i++)
    e[4 + i] = (uint8_t)(value >> (8 * i));
}

bool virtio_input_press_power(virtio_input *in) {
  if (!(in->mmio.status & VIRTIO_STATUS_DRIVER_OK) || !in->mmio.queues[EVENTQ].ready)
    return false;
  queue_event(in, EV_KEY, KEY_POWER, 1);
  queue_event(in, EV_SYN, SYN_REPORT, 0);
  queue_event(in, EV_KEY, KEY_POWER, 0);
  queue_event(in, EV_SYN, SYN_REPORT, 0);
  deliver_pending(in);
  return true;
}

/* ------------------------------------------------------------------ save / restore */

#define VIRTIO_INPUT_STATE_VERSION 1

void virtio_input_save(const virtio_input *in, vmstate_writer *w) {
  virtio_mmio_save(&in->mmio, w);
  vmstate_begin(w, "VINP", VIRTIO_INPUT_STATE_VERSION);
  vmstate_put_u8(w, in->select);
  vmstate_put_u8(w, in->subsel);
  vmstate_put_u32(w, in->num_pending);
  vmstate_put_bytes(w, in->pending, (size_t)in->num_pending * 8);
  vmstate_end_section(w);
}

int virtio_input_load(virtio_input *in, vmstate_reader *img, vs_error **err) {
  if (virtio_mmio_load(&in->mmio, img, err) < 0)
    return -1;
  vmstate_reader r;
  if (vmstate_next(img, "VINP", VIRTIO_INPUT_STATE_VERSION, &r, err) < 0)
    return -1;
  in->select = vmstate_get_u8(&r);
  in->subsel = vmstate_get_u8(&r);
  uint32_t n = vmstate_get_u32(&r);
  if (n > VIRTIO_INPUT_MAX_PENDING) {
    vmstate_refuse(&r, "more pending events than the device holds");
    n = 0;
  }
  vmstate_get_bytes(&r, in->pending, (size_t)n * 8);
  in->num_pending = n;
  config_update(in);
  return vmstate_end(&r, err);
}
