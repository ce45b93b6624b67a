/* virtio-mmio transport, version 2 (virtio 1.2, section 4.2.2): registers, feature negotiation,
 * the device status handshake, queue setup, notifications and interrupts. */
#include "vm/dev/virtio.h"

#include <string.h>

enum {
  REG_MAGIC = 0x000,
  REG_VERSION = 0x004,
  REG_DEVICE_ID = 0x008,
  REG_VENDOR_ID = 0x00c,
  REG_DEVICE_FEATURES = 0x010,
  REG_DEVICE_FEATURES_SEL = 0x014,
  REG_DRIVER_FEATURES = 0x020,
  REG_DRIVER_FEATURES_SEL = 0x024,
  REG_QUEUE_SEL = 0x030,
  REG_QUEUE_NUM_MAX = 0x034,
  REG_QUEUE_NUM = 0x038,
  REG_QUEUE_READY = 0x044,
  REG_QUEUE_NOTIFY = 0x050,
  REG_INTERRUPT_STATUS = 0x060,
  REG_INTERRUPT_ACK = 0x064,
  REG_STATUS = 0x070,
  REG_QUEUE_DESC_LOW = 0x080,
  REG_QUEUE_DESC_HIGH = 0x084,
  REG_QUEUE_DRIVER_LOW = 0x090,
  REG_QUEUE_DRIVER_HIGH = 0x094,
  REG_QUEUE_DEVICE_LOW = 0x0a0,
  REG_QUEUE_DEVICE_HIGH = 0x0a4,
  REG_SHM_SEL = 0x0ac,
  REG_SHM_LEN_LOW = 0x0b0,
  REG_SHM_LEN_HIGH = 0x0b4,
  REG_SHM_BASE_LOW = 0x0b8,
  REG_SHM_BASE_HIGH = 0x0bc,
  REG_QUEUE_RESET = 0x0c0,
  REG_CONFIG_GENERATION = 0x0fc,
  REG_CONFIG = 0x100,
};

#define VIRTIO_MMIO_MAGIC 0x74726976u /* "virt" */
#define VIRTIO_VENDOR_ID 0x4c535356u  /* "VSSL" */

void virtio_mmio_init(virtio_mmio *t, uint32_t device_id, uint64_t device_features,
                      unsigned num_queues, virtio_mem mem, dev_irq_line irq,
                      const virtio_device_ops *ops) {
  memset(t, 0, sizeof(*t));
  t->device_id = device_id;
  t->device_features = device_features | VIRTIO_F_VERSION_1;
  t->num_queues = num_queues > VIRTIO_MAX_QUEUES ? VIRTIO_MAX_QUEUES : num_queues;
  t->mem = mem;
  t->irq = irq;
  t->ops = ops;
}

static void update_irq(virtio_mmio *t) { dev_irq_set(&t->irq, t->interrupt_status != 0); }

static void device_reset(virtio_mmio *t) {
  t->driver_features = 0;
  t->device_features_sel = t->driver_features_sel = t->queue_sel = 0;
  t->status = 0;
  t->interrupt_status = 0;
  for (unsigned i = 0; i < VIRTIO_MAX_QUEUES; i++)
    virtq_reset(&t->queues[i]);
  if (t->ops->reset)
    t->ops->reset(t);
  update_irq(t);
}

void virtio_mmio_set_needs_reset(virtio_mmio *t, const char *why) {
  if (t->trace || !(t->status & VIRTIO_STATUS_NEEDS_RESET))
    vs_log_warn("virtio device %u: %s: device needs reset", t->device_id, why);
  t->status |= VIRTIO_STATUS_NEEDS_RESET;
  if (t->status & VIRTIO_STATUS_DRIVER_OK) {
    t->interrupt_status |= VIRTIO_INT_CONFIG;
    update_irq(t);
  }
}

void virtio_mmio_config_changed(virtio_mmio *t) {
  t->config_generation++;
  if (t->status & VIRTIO_STATUS_DRIVER_OK) {
    t->interrupt_status |= VIRTIO_INT_CONFIG;
    update_irq(t);
  }
}

int virtio_mmio_pop(virtio_mmio *t, unsigned qi, virtq_elem *e) {
  vs_error *err = NULL;
  int r = virtq_pop(&t->queues[qi], &t->mem, e, &err);
  if (r < 0) {
    virtio_mmio_set_needs_reset(t, err->msg);
    vs_error_free(err);
  }
  return r;
}

bool virtio_mmio_push(virtio_mmio *t, unsigned qi, uint16_t head, uint32_t written) {
  vs_error *err = NULL;
  if (virtq_push(&t->queues[qi], &t->mem, head, written, &err) < 0) {
    virtio_mmio_set_needs_reset(t, err->msg);
    vs_error_free(err);
    return false;
  }
  return true;
}

void virtio_mmio_notify_used(virtio_mmio *t, unsigned q) {
  if (q >= t->num_queues)
    return;
  if (virtq_should_notify(&t->queues[q], &t->mem)) {
    t->interrupt_status |= VIRTIO_INT_USED;
    update_irq(t);
  }
}

static virtq *selected_queue(virtio_mmio *t) {
  return t->queue_sel < t->num_queues ? &t->queues[t->queue_sel] : NULL;
}

static bool features_acceptable(const virtio_mmio *t) {
  return (t->driver_features & ~t->device_features) == 0 &&
         (t->driver_features & VIRTIO_F_VERSION_1);
}

static void write_status(virtio_mmio *t, uint32_t val) {
  if (val == 0) {
    device_reset(t);
    return;
  }
  uint32_t old = t->status;
  if (val & ~old & VIRTIO_STATUS_FEATURES_OK) {
    /* 3.1.1: the device accepts FEATURES_OK only for a subset of what it offered, after the
     * driver said it knows the device; otherwise the bit stays clear for the driver to see. */
    if (!(old & VIRTIO_STATUS_DRIVER) || !features_acceptable(t))
      val &= ~(uint32_t)VIRTIO_STATUS_FEATURES_OK;
    else {
      for (unsigned i = 0; i < t->num_queues; i++) {
        t->queues[i].indirect = t->driver_features & VIRTIO_F_RING_INDIRECT_DESC;
        t->queues[i].event_idx = t->driver_features & VIRTIO_F_RING_EVENT_IDX;
      }
      if (t->ops->features_ok)
        t->ops->features_ok(t);
    }
  }
  if ((val & ~old & VIRTIO_STATUS_DRIVER_OK) && !(val & VIRTIO_STATUS_FEATURES_OK)) {
    t->status = old | (val & ~(uint32_t)VIRTIO_STATUS_DRIVER_OK);
    virtio_mmio_set_needs_reset(t, "DRIVER_OK without FEATURES_OK");
    return;
  }
  /* Bits are only ever added until a reset; NEEDS_RESET is the device's to set. */
  t->status = old | (val & ~(uint32_t)VIRTIO_STATUS_NEEDS_RESET);
}

static void write_queue_ready(virtio_mmio *t, virtq *q, uint32_t val) {
  if (!val) {
    q->ready = false;
    return;
  }
  if (q->ready)
    return;
  if (!virtq_rings_valid(q, &t->mem)) {
    virtio_mmio_set_needs_reset(t, "queue rings are misaligned, outside guest RAM or of a bad "
                                   "size");
    return;
  }
  q->ready = true;
  q->last_avail = q->used_idx = 0;
  q->signalled_valid = false;
  q->indirect = t->driver_features & VIRTIO_F_RING_INDIRECT_DESC;
  q->event_idx = t->driver_features & VIRTIO_F_RING_EVENT_IDX;
}

static void set_low(uint64_t *reg, uint32_t v) { *reg = (*reg & ~0xffffffffull) | v; }
static void set_high(uint64_t *reg, uint32_t v) {
  *reg = (*reg & 0xffffffffull) | ((uint64_t)v << 32);
}

static bool config_read(virtio_mmio *t, uint64_t off, unsigned size, uint64_t *val) {
  size_t len = 0;
  const uint8_t *cfg = t->ops->config ? t->ops->config(t, &len) : NULL;
  *val = 0;
  if (!cfg || off > len || size > len - off)
    return true; /* reads beyond the configuration space read as zero */
  for (unsigned i = 0; i < size; i++)
    *val |= (uint64_t)cfg[off + i] << (8 * i);
  return true;
}

bool virtio_mmio_read(void *dev, uint64_t off, unsigned size, uint64_t *val) {
  virtio_mmio *t = dev;
  if (off >= REG_CONFIG)
    return config_read(t, off - REG_CONFIG, size, val);
  *val = 0;
  if (size != 4 || (off & 3))
    return true; /* registers are 32 bits wide: other accesses read as zero */
  virtq *q = selected_queue(t);
  switch (off) {
  case REG_MAGIC:
    *val = VIRTIO_MMIO_MAGIC;
    break;
  case REG_VERSION:
    *val = 2;
    break;
  case REG_DEVICE_ID:
    *val = t->device_id;
    break;
  case REG_VENDOR_ID:
    *val = VIRTIO_VENDOR_ID;
    break;
  case REG_DEVICE_FEATURES:
    *val = t->device_features_sel < 2
               ? (uint32_t)(t->device_features >> (32 * t->device_features_sel))
               : 0;
    break;
  case REG_QUEUE_NUM_MAX:
    *val = q ? VIRTQ_MAX_SIZE : 0;
    break;
  case REG_QUEUE_READY:
    *val = q ? q->ready : 0;
    break;
  case REG_INTERRUPT_STATUS:
    *val = t->interrupt_status;
    break;
  case REG_STATUS:
    *val = t->status;
    break;
  case REG_QUEUE_DESC_LOW:
    *val = q ? (uint32_t)q->desc : 0;
    break;
  case REG_QUEUE_DESC_HIGH:
    *val = q ? (uint32_t)(q->desc >> 32) : 0;
    break;
  case REG_QUEUE_DRIVER_LOW:
    *val = q ? (uint32_t)q->avail : 0;
    break;
  case REG_QUEUE_DRIVER_HIGH:
    *val = q ? (uint32_t)(q->avail >> 32) : 0;
    break;
  case REG_QUEUE_DEVICE_LOW:
    *val = q ? (uint32_t)q->used : 0;
    break;
  case REG_QUEUE_DEVICE_HIGH:
    *val = q ? (uint32_t)(q->used >> 32) : 0;
    break;
  case REG_SHM_LEN_LOW:
  case REG_SHM_LEN_HIGH:
    *val = 0xffffffffu; /* no shared memory regions */
    break;
  case REG_CONFIG_GENERATION:
    *val = t->config_generation;
    break;
  default:
    break;
  }
  return true;
}

static bool queue_setup_allowed(const virtio_mmio *t, const virtq *q) {
  /* Queue registers may change only while the queue is not live and the driver is still
   * setting the device up. */
  return q && !q->ready && !(t->status & VIRTIO_STATUS_DRIVER_OK);
}

bool virtio_mmio_write(void *dev, uint64_t off, unsigned size, uint64_t val64) {
  virtio_mmio *t = dev;
  if (off >= REG_CONFIG) {
    if (t->ops->config_write && size <= 4)
      t->ops->config_write(t, off - REG_CONFIG, size, (uint32_t)val64);
    return true; /* read-only configuration fields ignore writes */
  }
  if (size != 4 || (off & 3))
    return true;
  uint32_t val = (uint32_t)val64;
  virtq *q = selected_queue(t);
  switch (off) {
  case REG_DEVICE_FEATURES_SEL:
    t->device_features_sel = val;
    break;
  case REG_DRIVER_FEATURES:
    if ((t->status & VIRTIO_STATUS_DRIVER) && !(t->status & VIRTIO_STATUS_FEATURES_OK) &&
        t->driver_features_sel < 2) {
      unsigned shift = 32 * t->driver_features_sel;
      t->driver_features =
          (t->driver_features & ~(0xffffffffull << shift)) | ((uint64_t)val << shift);
    }
    break;
  case REG_DRIVER_FEATURES_SEL:
    t->driver_features_sel = val;
    break;
  case REG_QUEUE_SEL:
    t->queue_sel = val;
    break;
  case REG_QUEUE_NUM:
    if (queue_setup_allowed(t, q))
      q->num = val;
    break;
  case REG_QUEUE_READY:
    if (q)
      write_queue_ready(t, q, val);
    break;
  case REG_QUEUE_NOTIFY:
    if (val < t->num_queues && (t->status & VIRTIO_STATUS_DRIVER_OK) &&
        !(t->status & VIRTIO_STATUS_NEEDS_RESET) && t->queues[val].ready && t->ops->notify)
      t->ops->notify(t, val);
    break;
  case REG_INTERRUPT_ACK:
    t->interrupt_status &= ~val;
    update_irq(t);
    break;
  case REG_STATUS:
    write_status(t, val);
    break;
  case REG_QUEUE_DESC_LOW:
    if (queue_setup_allowed(t, q))
      set_low(&q->desc, val);
    break;
  case REG_QUEUE_DESC_HIGH:
    if (queue_setup_allowed(t, q))
      set_high(&q->desc, val);
    break;
  case REG_QUEUE_DRIVER_LOW:
    if (queue_setup_allowed(t, q))
      set_low(&q->avail, val);
    break;
  case REG_QUEUE_DRIVER_HIGH:
    if (queue_setup_allowed(t, q))
      set_high(&q->avail, val);
    break;
  case REG_QUEUE_DEVICE_LOW:
    if (queue_setup_allowed(t, q))
      set_low(&q->used, val);
    break;
  case REG_QUEUE_DEVICE_HIGH:
    if (queue_setup_allowed(t, q))
      set_high(&q->used, val);
    break;
  default:
    break; /* read-only or unknown registers: writes are ignored */
  }
  return true;
}

/* ------------------------------------------------------------------ save / restore */

#define VIRTIO_MMIO_STATE_VERSION 1

static void virtq_save(const virtq *q, vmstate_writer *w) {
  vmstate_put_u32(w, q->num);
  vmstate_put_u64(w, q->desc);
  vmstate_put_u64(w, q->avail);
  vmstate_put_u64(w, q->used);
  vmstate_put_bool(w, q->ready);
  vmstate_put_u16(w, q->last_avail);
  vmstate_put_u16(w, q->used_idx);
  vmstate_put_u16(w, q->signalled_used);
  vmstate_put_bool(w, q->signalled_valid);
  vmstate_put_bool(w, q->indirect);
  vmstate_put_bool(w, q->event_idx);
}

static void virtq_load(virtq *q, const virtio_mem *mem, vmstate_reader *r) {
  q->num = vmstate_get_u32(r);
  q->desc = vmstate_get_u64(r);
  q->avail = vmstate_get_u64(r);
  q->used = vmstate_get_u64(r);
  q->ready = vmstate_get_bool(r);
  q->last_avail = vmstate_get_u16(r);
  q->used_idx = vmstate_get_u16(r);
  q->signalled_used = vmstate_get_u16(r);
  q->signalled_valid = vmstate_get_bool(r);
  q->indirect = vmstate_get_bool(r);
  q->event_idx = vmstate_get_bool(r);
  if (q->num > VIRTQ_MAX_SIZE || (q->num & (q->num - 1)))
    vmstate_refuse(r, "queue size is not a power of two up to the maximum");
  /* a ready queue passed these checks when the driver enabled it */
  if (q->ready && !virtq_rings_valid(q, mem))
    vmstate_refuse(r, "a ready queue's rings are misaligned or outside guest RAM");
}

void virtio_mmio_save(const virtio_mmio *t, vmstate_writer *w) {
  vmstate_begin(w, "VIRT", VIRTIO_MMIO_STATE_VERSION);
  vmstate_put_u32(w, t->device_id);
  vmstate_put_u32(w, t->num_queues);
  vmstate_put_u64(w, t->driver_features);
  vmstate_put_u32(w, t->device_features_sel);
  vmstate_put_u32(w, t->driver_features_sel);
  vmstate_put_u32(w, t->queue_sel);
  vmstate_put_u32(w, t->status);
  vmstate_put_u32(w, t->interrupt_status);
  vmstate_put_u32(w, t->config_generation);
  for (unsigned i = 0; i < t->num_queues; i++)
    virtq_save(&t->queues[i], w);
  vmstate_end_section(w);
}

int virtio_mmio_load(virtio_mmio *t, vmstate_reader *img, vs_error **err) {
  vmstate_reader r;
  if (vmstate_next(img, "VIRT", VIRTIO_MMIO_STATE_VERSION, &r, err) < 0)
    return -1;
  if (vmstate_get_u32(&r) != t->device_id)
    vmstate_refuse(&r, "device type differs from the device at this slot");
  /* A device may have gained a queue since the state was saved (virtio-net's control queue):
   * the driver of that state cannot have negotiated its use, so the new queues stay reset. */
  uint32_t saved_queues = vmstate_get_u32(&r);
  if (saved_queues == 0 || saved_queues > t->num_queues)
    vmstate_refuse(&r, "number of queues differs from the device's");
  t->driver_features = vmstate_get_u64(&r);
  if (t->driver_features & ~t->device_features)
    vmstate_refuse(&r, "the driver's features are not a subset of the device's");
  t->device_features_sel = vmstate_get_u32(&r);
  t->driver_features_sel = vmstate_get_u32(&r);
  t->queue_sel = vmstate_get_u32(&r);
  t->status = vmstate_get_u32(&r) & 0xff;
  t->interrupt_status = vmstate_get_u32(&r) & (VIRTIO_INT_USED | VIRTIO_INT_CONFIG);
  t->config_generation = vmstate_get_u32(&r);
  for (unsigned i = 0; i < saved_queues && !r.bad; i++)
    virtq_load(&t->queues[i], &t->mem, &r);
  for (unsigned i = saved_queues; i < t->num_queues && !r.bad; i++)
    virtq_reset(&t->queues[i]);
  if (vmstate_end(&r, err) < 0)
    return -1;
  update_irq(t);
  return 0;
}
