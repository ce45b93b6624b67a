/* Split virtqueues (virtio 1.2, section 2.7): taking descriptor chains from the available ring
 * and returning them through the used ring, with indirect descriptors and event index.
 *
 * Ring layout in guest memory (little-endian):
 *   descriptor table: num x {le64 addr, le32 len, le16 flags, le16 next}       (align 16)
 *   available ring:   le16 flags, le16 idx, le16 ring[num], le16 used_event     (align 2)
 *   used ring:        le16 flags, le16 idx, {le32 id, le32 len}[num], le16 avail_event (align 4)
 */
#include "vm/dev/virtio.h"

#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <string.h>

#define VRING_AVAIL_F_NO_INTERRUPT 1

static uint16_t rd16(const uint8_t *p) {
  uint16_t v;
  memcpy(&v, p, 2);
  return le16toh(v);
}
static uint32_t rd32(const uint8_t *p) {
  uint32_t v;
  memcpy(&v, p, 4);
  return le32toh(v);
}
static uint64_t rd64(const uint8_t *p) {
  uint64_t v;
  memcpy(&v, p, 8);
  return le64toh(v);
}
static void wr16(uint8_t *p, uint16_t v) {
  v = htole16(v);
  memcpy(p, &v, 2);
}
static void wr32(uint8_t *p, uint32_t v) {
  v = htole32(v);
  memcpy(p, &v, 4);
}

static uint64_t desc_bytes(uint32_t num) { return 16ull * num; }
static uint64_t avail_bytes(uint32_t num) { return 6 + 2ull * num; }
static uint64_t used_bytes(uint32_t num) { return 6 + 8ull * num; }

bool virtq_rings_valid(const virtq *vq, const virtio_mem *mem) {
  uint32_t n = vq->num;
  if (n == 0 || n > VIRTQ_MAX_SIZE || (n & (n - 1)))
    return false;
  if ((vq->desc & 15) || (vq->avail & 1) || (vq->used & 3))
    return false;
  return virtio_mem_ptr(mem, vq->desc, desc_bytes(n)) &&
         virtio_mem_ptr(mem, vq->avail, avail_bytes(n)) &&
         virtio_mem_ptr(mem, vq->used, used_bytes(n));
}

void virtq_reset(virtq *vq) { memset(vq, 0, sizeof(*vq)); }

bool virtq_has_avail(const virtq *vq, const virtio_mem *mem) {
  if (!vq->ready || !virtq_rings_valid(vq, mem))
    return false;
  const uint8_t *avail = virtio_mem_ptr(mem, vq->avail, avail_bytes(vq->num));
  return rd16(avail + 2) != vq->last_avail;
}

void virtq_unpop(virtq *vq, uint16_t n) { vq->last_avail = (uint16_t)(vq->last_avail - n); }

typedef struct vdesc {
  uint64_t addr;
  uint32_t len;
  uint16_t flags, next;
} vdesc;

static void read_desc(const uint8_t *table, uint32_t i, vdesc *d) {
  const uint8_t *p = table + 16ull * i;
  d->addr = rd64(p);
  d->len = rd32(p + 8);
  d->flags = rd16(p + 12);
  d->next = rd16(p + 14);
}

/* Add one buffer to the element, in device-readable then device-writable order. */
static int add_buffer(virtq_elem *e, const virtio_mem *mem, const vdesc *d, vs_error **err) {
  if (d->len == 0)
    return 0; /* an empty buffer carries nothing */
  void *p = virtio_mem_ptr(mem, d->addr, d->len);
  if (!p)
    return vs_error_set(err, EFAULT, "descriptor buffer 0x%" PRIx64 "+%u is outside guest RAM",
                        d->addr, d->len);
  if (d->flags & VIRTQ_DESC_F_WRITE) {
    if (e->in_num == VIRTQ_MAX_SEGMENTS)
      return vs_error_set(err, E2BIG, "descriptor chain has more than %d writable buffers",
                          VIRTQ_MAX_SEGMENTS);
    e->in[e->in_num++] = (struct iovec){p, d->len};
    e->in_len += d->len;
    /* the device may write any of it: a migration must send the page again */
    virtio_mem_mark_dirty(mem, d->addr, d->len);
  } else {
    if (e->in_num)
      return vs_error_set(err, EINVAL, "device-readable descriptor after a writable one");
    if (e->out_num == VIRTQ_MAX_SEGMENTS)
      return vs_error_set(err, E2BIG, "descriptor chain has more than %d readable buffers",
                          VIRTQ_MAX_SEGMENTS);
    e->out[e->out_num++] = (struct iovec){p, d->len};
    e->out_len += d->len;
  }
  return 0;
}

/* Walk an indirect table: its own chain, bounded by its length; no nesting. */
static int walk_indirect(virtq_elem *e, const virtio_mem *mem, const vdesc *ind, vs_error **err) {
  if (ind->len == 0 || ind->len % 16)
    return vs_error_set(err, EINVAL, "indirect table length %u is not a non-zero multiple of 16",
                        ind->len);
  uint32_t count = ind->len / 16;
  if (count > VIRTQ_MAX_SEGMENTS * 2)
    return vs_error_set(err, E2BIG, "indirect table of %u descriptors is too long", count);
  const uint8_t *table = virtio_mem_ptr(mem, ind->addr, ind->len);
  if (!table || (ind->addr & 15))
    return vs_error_set(err, EFAULT,
                        "indirect table 0x%" PRIx64 "+%u is outside guest RAM or "
                        "misaligned",
                        ind->addr, ind->len);
  uint32_t i = 0;
  for (uint32_t steps = 0;; steps++) {
    if (steps >= count)
      return vs_error_set(err, ELOOP, "indirect descriptor chain loops");
    vdesc d;
    read_desc(table, i, &d);
    if (d.flags & VIRTQ_DESC_F_INDIRECT)
      return vs_error_set(err, EINVAL, "nested indirect descriptor");
    if (add_buffer(e, mem, &d, err) < 0)
      return -1;
    if (!(d.flags & VIRTQ_DESC_F_NEXT))
      return 0;
    if (d.next >= count)
      return vs_error_set(err, EINVAL, "indirect descriptor next %u beyond the table (%u)", d.next,
                          count);
    i = d.next;
  }
}

int virtq_pop(virtq *vq, const virtio_mem *mem, virtq_elem *e, vs_error **err) {
  if (!vq->ready || !virtq_rings_valid(vq, mem))
    return vs_error_set(err, EINVAL, "queue is not ready or its rings are outside guest RAM");
  const uint8_t *avail = virtio_mem_ptr(mem, vq->avail, avail_bytes(vq->num));
  const uint8_t *table = virtio_mem_ptr(mem, vq->desc, desc_bytes(vq->num));
  uint16_t avail_idx = rd16(avail + 2);
  uint16_t pending = (uint16_t)(avail_idx - vq->last_avail);
  if (pending == 0)
    return 0;
  if (pending > vq->num)
    return vs_error_set(err, EINVAL,
                        "available index %u runs %u entries ahead of a %u-entry "
                        "queue",
                        avail_idx, pending, vq->num);
  /* Read the ring entry only after the index that published it. */
  __atomic_thread_fence(__ATOMIC_ACQUIRE);
  uint16_t head = rd16(avail + 4 + (size_t)2 * (vq->last_avail % vq->num));
  if (head >= vq->num)
    return vs_error_set(err, EINVAL, "available ring entry %u out of range (queue size %u)", head,
                        vq->num);
  e->head = head;
  e->out_num = e->in_num = 0;
  e->out_len = e->in_len = 0;
  uint32_t i = head;
  for (uint32_t steps = 0;; steps++) {
    if (steps >= vq->num)
      return vs_error_set(err, ELOOP, "descriptor chain from head %u loops", head);
    vdesc d;
    read_desc(table, i, &d);
    if (d.flags & VIRTQ_DESC_F_INDIRECT) {
      if (!vq->indirect)
        return vs_error_set(err, EINVAL, "indirect descriptor without the negotiated feature");
      if (d.flags & VIRTQ_DESC_F_NEXT)
        return vs_error_set(err, EINVAL, "indirect descriptor with the next flag");
      if (walk_indirect(e, mem, &d, err) < 0)
        return -1;
      break;
    }
    if (add_buffer(e, mem, &d, err) < 0)
      return -1;
    if (!(d.flags & VIRTQ_DESC_F_NEXT))
      break;
    if (d.next >= vq->num)
      return vs_error_set(err, EINVAL, "descriptor next %u out of range (queue size %u)", d.next,
                          vq->num);
    i = d.next;
  }
  vq->last_avail++;
  return 1;
}

int virtq_push(virtq *vq, const virtio_mem *mem, uint16_t head, uint32_t written, vs_error **err) {
  uint8_t *used = virtio_mem_ptr(mem, vq->used, used_bytes(vq->num));
  if (!vq->ready || !used)
    return vs_error_set(err, EINVAL, "used ring is outside guest RAM");
  virtio_mem_mark_dirty(mem, vq->used, used_bytes(vq->num));
  uint8_t *ent = used + 4 + (size_t)8 * (vq->used_idx % vq->num);
  wr32(ent, head);
  wr32(ent + 4, written);
  /* The entry must be visible before the index that publishes it. */
  __atomic_thread_fence(__ATOMIC_RELEASE);
  vq->used_idx++;
  wr16(used + 2, vq->used_idx);
  return 0;
}

bool virtq_should_notify(virtq *vq, const virtio_mem *mem) {
  const uint8_t *avail = virtio_mem_ptr(mem, vq->avail, avail_bytes(vq->num));
  if (!avail)
    return false;
  __atomic_thread_fence(__ATOMIC_SEQ_CST);
  if (!vq->event_idx)
    return !(rd16(avail) & VRING_AVAIL_F_NO_INTERRUPT);
  /* Event index (2.7.10): interrupt if used_event lies in (old, new]. */
  uint16_t event = rd16(avail + 4 + (size_t)2 * vq->num);
  uint16_t new_idx = vq->used_idx, old = vq->signalled_used;
  bool valid = vq->signalled_valid;
  vq->signalled_used = new_idx;
  vq->signalled_valid = true;
  if (!valid)
    return true;
  return (uint16_t)(new_idx - event - 1) < (uint16_t)(new_idx - old);
}

void virtq_update_avail_event(virtq *vq, const virtio_mem *mem) {
  if (!vq->event_idx)
    return;
  uint8_t *used = virtio_mem_ptr(mem, vq->used, used_bytes(vq->num));
  if (used) {
    virtio_mem_mark_dirty(mem, vq->used, used_bytes(vq->num));
    wr16(used + 4 + (size_t)8 * vq->num, vq->last_avail);
  }
}
