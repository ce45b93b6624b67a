/* virtio for vessel-vmm (internal to the vm module): the virtio-mmio version 2 transport, split
 * virtqueues (indirect descriptors, event index) and the devices behind them (virtio-blk).
 * Reference: OASIS "Virtual I/O Device (VIRTIO) Version 1.2".
 *
 * The guest is hostile: every address, length, index and chain it hands us is checked against
 * guest RAM and the queue size before use. A driver that breaks the rules of the ring puts the
 * device in DEVICE_NEEDS_RESET (and raises a configuration change interrupt); a bad request
 * (beyond the disk, unaligned, unknown type) completes with an I/O error status. Neither ever
 * crashes or hangs the VMM, and no request ever touches memory outside guest RAM.
 *
 * Wiring (by the machine), e.g. for a disk at slot n:
 *     virtio_blk_init(&blk, disk, "serial", vm_virtio_mem(m), irq_line);
 *     map [base, base + 0x1000) to virtio_mmio_read/virtio_mmio_write with dev = &blk.mmio
 * Requests are served synchronously when the driver writes QueueNotify.
 */
#ifndef VESSEL_VM_DEV_VIRTIO_H
#define VESSEL_VM_DEV_VIRTIO_H

#include "base/base.h"
#include "vm/dev/dev.h"
#include "vm/disk/disk.h"

#include <sys/uio.h>

/* ------------------------------------------------------------------ guest memory */

typedef struct virtio_mem {
  uint8_t *ram;  /* host mapping of guest RAM */
  uint64_t base; /* guest physical address of ram[0] */
  uint64_t size;
  /* The machine's dirty-page bitmap while a migration tracks writes (*dirty is NULL otherwise):
   * device writes into guest RAM mark their pages. NULL when nothing tracks. */
  uint64_t *const *dirty;
} virtio_mem;

/* A device is about to write [gpa, gpa+len) of guest RAM (already checked to be inside it). */
static inline void virtio_mem_mark_dirty(const virtio_mem *m, uint64_t gpa, uint64_t len) {
  uint64_t *bitmap = m->dirty ? *m->dirty : NULL;
  if (!bitmap || len == 0)
    return;
  for (uint64_t pg = (gpa - m->base) >> 12; pg <= (gpa - m->base + len - 1) >> 12; pg++)
    __atomic_or_fetch(&bitmap[pg / 64], 1ull << (pg % 64), __ATOMIC_RELAXED);
}

/* Host pointer to [gpa, gpa+len) if it lies entirely inside guest RAM, else NULL. */
static inline void *virtio_mem_ptr(const virtio_mem *m, uint64_t gpa, uint64_t len) {
  if (gpa < m->base || gpa - m->base > m->size || len > m->size - (gpa - m->base))
    return NULL;
  return m->ram + (gpa - m->base);
}

/* ------------------------------------------------------------------ split virtqueues */

#define VIRTQ_MAX_SIZE 256     /* QueueNumMax of our queues */
#define VIRTQ_MAX_SEGMENTS 512 /* buffers in one chain (direct + indirect) */

#define VIRTQ_DESC_F_NEXT 1
#define VIRTQ_DESC_F_WRITE 2
#define VIRTQ_DESC_F_INDIRECT 4

typedef struct virtq {
  /* set by the driver through the transport */
  uint32_t num; /* queue size (power of two, <= VIRTQ_MAX_SIZE) */
  uint64_t desc, avail, used;
  bool ready;
  /* device side */
  uint16_t last_avail;     /* next avail ring entry to take */
  uint16_t used_idx;       /* next used ring entry to fill */
  uint16_t signalled_used; /* used_idx when we last interrupted (event index) */
  bool signalled_valid;
  bool indirect;  /* VIRTIO_F_RING_INDIRECT_DESC negotiated */
  bool event_idx; /* VIRTIO_F_RING_EVENT_IDX negotiated */
} virtq;

/* One request: its chain mapped to host memory. Device-readable buffers come first (out), then
 * device-writable ones (in), as the spec requires of drivers. */
typedef struct virtq_elem {
  uint16_t head;
  unsigned out_num, in_num;
  uint64_t out_len, in_len;
  struct iovec out[VIRTQ_MAX_SEGMENTS];
  struct iovec in[VIRTQ_MAX_SEGMENTS];
} virtq_elem;

/* Whether the queue's rings lie in guest RAM with the alignment the spec requires. */
bool virtq_rings_valid(const virtq *vq, const virtio_mem *mem);
/* Take the next available chain: 1 = got one, 0 = queue empty, -1 = the driver broke the ring
 * protocol (err says how; the device must then need a reset). */
int virtq_pop(virtq *vq, const virtio_mem *mem, virtq_elem *elem, vs_error **err);
/* Return a chain with `written` bytes written into its device-writable buffers. */
int virtq_push(virtq *vq, const virtio_mem *mem, uint16_t head, uint32_t written, vs_error **err);
/* After pushing: does the driver want an interrupt (flags / used_event)? */
bool virtq_should_notify(virtq *vq, const virtio_mem *mem);
/* With event index: ask the driver to notify when it adds beyond what we consumed. */
void virtq_update_avail_event(virtq *vq, const virtio_mem *mem);
void virtq_reset(virtq *vq);

/* Copy up to len bytes out of / into an iovec list starting at byte `skip`; returns bytes done. */
size_t iov_copy_from(const struct iovec *iov, unsigned n, size_t skip, void *buf, size_t len);
size_t iov_copy_to(const struct iovec *iov, unsigned n, size_t skip, const void *buf, size_t len);

/* ------------------------------------------------------------------ virtio-mmio transport */

#define VIRTIO_MMIO_SIZE 0x1000
#define VIRTIO_MAX_QUEUES 4

#define VIRTIO_STATUS_ACKNOWLEDGE 1
#define VIRTIO_STATUS_DRIVER 2
#define VIRTIO_STATUS_DRIVER_OK 4
#define VIRTIO_STATUS_FEATURES_OK 8
#define VIRTIO_STATUS_NEEDS_RESET 64
#define VIRTIO_STATUS_FAILED 128

#define VIRTIO_F_RING_INDIRECT_DESC (1ull << 28)
#define VIRTIO_F_RING_EVENT_IDX (1ull << 29)
#define VIRTIO_F_VERSION_1 (1ull << 32)

#define VIRTIO_INT_USED 1
#define VIRTIO_INT_CONFIG 2

typedef struct virtio_mmio virtio_mmio;

/* What a device behind the transport provides. */
typedef struct virtio_device_ops {
  /* The driver notified queue `q` (DRIVER_OK, queue ready). */
  void (*notify)(virtio_mmio *t, unsigned q);
  /* Device configuration space, little-endian. */
  const uint8_t *(*config)(virtio_mmio *t, size_t *len);
  /* Reset of the device's own state (the transport resets the queues). */
  void (*reset)(virtio_mmio *t);
  /* A driver write into the configuration space (optional: NULL = read-only). */
  void (*config_write)(virtio_mmio *t, uint64_t off, unsigned size, uint32_t val);
} virtio_device_ops;

struct virtio_mmio {
  /* identity */
  uint32_t device_id;
  uint64_t device_features;
  unsigned num_queues;
  /* driver-visible state */
  uint64_t driver_features;
  uint32_t device_features_sel, driver_features_sel, queue_sel;
  uint32_t status;
  uint32_t interrupt_status;
  uint32_t config_generation;
  virtq queues[VIRTIO_MAX_QUEUES];
  /* wiring */
  virtio_mem mem;
  dev_irq_line irq;
  const virtio_device_ops *ops;
  bool trace;
};

void virtio_mmio_init(virtio_mmio *t, uint32_t device_id, uint64_t device_features,
                      unsigned num_queues, virtio_mem mem, dev_irq_line irq,
                      const virtio_device_ops *ops);
bool virtio_mmio_read(void *dev, uint64_t off, unsigned size, uint64_t *val);
bool virtio_mmio_write(void *dev, uint64_t off, unsigned size, uint64_t val);
/* Raise the used-buffer interrupt (if the queue asks for it). */
void virtio_mmio_notify_used(virtio_mmio *t, unsigned q);
/* The driver broke the protocol: DEVICE_NEEDS_RESET and a configuration interrupt. */
void virtio_mmio_set_needs_reset(virtio_mmio *t, const char *why);
/* The transport's driver-visible state and every queue's position ("VIRT" section). The device
 * behind it saves its own state after it. Loading checks the device id and queue count against
 * the device this build wired at the same slot. */
void virtio_mmio_save(const virtio_mmio *t, vmstate_writer *w);
int virtio_mmio_load(virtio_mmio *t, vmstate_reader *img, vs_error **err);

/* ------------------------------------------------------------------ virtio-blk */

#define VIRTIO_ID_BLOCK 2
#define VIRTIO_BLK_ID_BYTES 20
#define VIRTIO_BLK_CONFIG_SIZE 0x3c

typedef struct virtio_blk {
  virtio_mmio mmio; /* first: the MMIO handlers get a pointer to it */
  vm_disk *disk;    /* not owned */
  bool readonly;
  char serial[VIRTIO_BLK_ID_BYTES];
  uint8_t config[VIRTIO_BLK_CONFIG_SIZE];
  virtq_elem elem; /* scratch for the request being served */
  uint64_t requests, errors;
} virtio_blk;

/* serial may be NULL (then "vessel-vd<N>" style ids are up to the caller). */
void virtio_blk_init(virtio_blk *b, vm_disk *disk, const char *serial, virtio_mem mem,
                     dev_irq_line irq);
/* The transport and queue positions ("VIRT") then the disk's identity ("VBLK": size, read-only),
 * which must match the disk opened on restore. */
void virtio_blk_save(const virtio_blk *b, vmstate_writer *w);
int virtio_blk_load(virtio_blk *b, vmstate_reader *img, vs_error **err);

/* ------------------------------------------------------------------ virtio-input power button */

#define VIRTIO_ID_INPUT 18
#define VIRTIO_INPUT_CONFIG_SIZE 136
#define VIRTIO_INPUT_MAX_PENDING 32

/* A one-key keyboard: KEY_POWER. The machine presses it for `powerdown`; the guest's input layer
 * reports it like an ACPI power button, and its init (busybox acpid) powers off cleanly. */
typedef struct virtio_input {
  virtio_mmio mmio; /* first: the MMIO handlers get a pointer to it */
  uint8_t select, subsel;
  uint8_t config[VIRTIO_INPUT_CONFIG_SIZE];
  uint8_t pending[VIRTIO_INPUT_MAX_PENDING][8]; /* events waiting for a driver buffer */
  unsigned num_pending;
  virtq_elem elem;
} virtio_input;

void virtio_input_init(virtio_input *in, virtio_mem mem, dev_irq_line irq);
/* Press and release the power button. False when the driver is not ready to hear it. */
bool virtio_input_press_power(virtio_input *in);
void virtio_input_save(const virtio_input *in, vmstate_writer *w);
int virtio_input_load(virtio_input *in, vmstate_reader *img, vs_error **err);

#endif
