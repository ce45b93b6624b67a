/* virtio-blk (virtio 1.2, section 5.2): one request queue served synchronously on notify.
 *
 * A request is a 16-byte header {le32 type, le32 reserved, le64 sector} in device-readable
 * buffers, then data (readable for writes, writable for reads), then one writable status byte.
 * Requests that name sectors beyond the disk, have data not a multiple of 512 bytes, or carry
 * malformed discard/write-zeroes segments complete with VIRTIO_BLK_S_IOERR; a chain without
 * room for the header or status breaks the protocol and the device needs a reset.
 */
#include "vm/dev/virtio.h"

#include <endian.h>
#include <string.h>

#define VIRTIO_BLK_F_SEG_MAX (1ull << 2)
#define VIRTIO_BLK_F_RO (1ull << 5)
#define VIRTIO_BLK_F_BLK_SIZE (1ull << 6)
#define VIRTIO_BLK_F_FLUSH (1ull << 9)
#define VIRTIO_BLK_F_DISCARD (1ull << 13)
#define VIRTIO_BLK_F_WRITE_ZEROES (1ull << 14)

#define VIRTIO_BLK_T_IN 0
#define VIRTIO_BLK_T_OUT 1
#define VIRTIO_BLK_T_FLUSH 4
#define VIRTIO_BLK_T_GET_ID 8
#define VIRTIO_BLK_T_DISCARD 11
#define VIRTIO_BLK_T_WRITE_ZEROES 13

#define VIRTIO_BLK_S_OK 0
#define VIRTIO_BLK_S_IOERR 1
#define VIRTIO_BLK_S_UNSUPP 2

#define VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP 1

#define SECTOR 512u
#define MAX_DISCARD_SECTORS (1u << 22) /* 2 GiB per segment */
#define MAX_DISCARD_SEGS 32u

#define CONFIG_DISCARD_ALIGNMENT 0x2c /* discard_sector_alignment in the config space */

static virtio_blk *blk_of(virtio_mmio *t) { return (virtio_blk *)t; }

static void put_le32(uint8_t *p, uint32_t v) {
  v = htole32(v);
  memcpy(p, &v, 4);
}
static uint32_t get_le32(const uint8_t *p) {
  uint32_t v;
  memcpy(&v, p, 4);
  return le32toh(v);
}
static void put_le64(uint8_t *p, uint64_t v) {
  v = htole64(v);
  memcpy(p, &v, 8);
}

static bool range_ok(const virtio_blk *b, uint64_t sector, uint64_t bytes) {
  uint64_t size = vm_disk_size(b->disk);
  return sector <= size / SECTOR && bytes <= size - sector * SECTOR;
}

/* Discard and write-zeroes: an array of {le64 sector, le32 num_sectors, le32 flags}. */
static uint8_t do_segments(virtio_blk *b, uint32_t type, const struct iovec *iov, unsigned n,
                           uint64_t len) {
  if (len == 0 || len % 16 || len / 16 > MAX_DISCARD_SEGS)
    return VIRTIO_BLK_S_IOERR;
  if (b->readonly)
    return VIRTIO_BLK_S_IOERR;
  for (uint64_t i = 0; i < len / 16; i++) {
    uint8_t seg[16];
    vs_iov_copy_from(iov, n, i * 16, seg, 16);
    uint64_t sector;
    uint32_t num, flags;
    memcpy(&sector, seg, 8);
    memcpy(&num, seg + 8, 4);
    memcpy(&flags, seg + 12, 4);
    sector = le64toh(sector);
    num = le32toh(num);
    flags = le32toh(flags);
    if (type == VIRTIO_BLK_T_DISCARD ? flags != 0
                                     : (flags & ~(uint32_t)VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP))
      return VIRTIO_BLK_S_UNSUPP;
    if (num > MAX_DISCARD_SECTORS || !range_ok(b, sector, (uint64_t)num * SECTOR))
      return VIRTIO_BLK_S_IOERR;
    vs_error *err = NULL;
    int r = type == VIRTIO_BLK_T_DISCARD
                ? vm_disk_discard(b->disk, sector * SECTOR, (uint64_t)num * SECTOR, &err)
                : vm_disk_write_zeroes(b->disk, sector * SECTOR, (uint64_t)num * SECTOR, &err);
    if (r < 0) {
      vs_log_warn("virtio-blk: %s", err->msg);
      vs_error_free(err);
      return VIRTIO_BLK_S_IOERR;
    }
  }
  return VIRTIO_BLK_S_OK;
}

static uint8_t do_rw(virtio_blk *b, bool write, uint64_t sector, const struct iovec *iov,
                     unsigned n, uint64_t len) {
  if (write && b->readonly)
    return VIRTIO_BLK_S_IOERR;
  if (len % SECTOR || !range_ok(b, sector, len))
    return VIRTIO_BLK_S_IOERR;
  vs_error *err = NULL;
  int r = write ? vm_disk_writev(b->disk, iov, (int)n, sector * SECTOR, &err)
                : vm_disk_readv(b->disk, iov, (int)n, sector * SECTOR, &err);
  if (r < 0) {
    vs_log_warn("virtio-blk: %s", err->msg);
    vs_error_free(err);
    return VIRTIO_BLK_S_IOERR;
  }
  if (write)
    b->write_bytes += len;
  else
    b->read_bytes += len;
  return VIRTIO_BLK_S_OK;
}

/* Serve one request; returns the bytes written into the chain, or -1 if it is malformed. */
static int64_t serve(virtio_blk *b, virtq_elem *e) {
  if (e->out_len < 16 || e->in_len < 1)
    return -1;
  uint8_t hdr[16];
  vs_iov_copy_from(e->out, e->out_num, 0, hdr, 16);
  uint32_t type;
  uint64_t sector;
  memcpy(&type, hdr, 4);
  memcpy(&sector, hdr + 8, 8);
  type = le32toh(type);
  sector = le64toh(sector);

  /* The status byte is the last writable byte; the rest of the writable space is data. */
  struct iovec *last = &e->in[e->in_num - 1];
  uint8_t *status = (uint8_t *)last->iov_base + last->iov_len - 1;
  last->iov_len--;
  uint64_t in_data = e->in_len - 1;
  struct iovec out_data[VIRTQ_MAX_SEGMENTS];
  uint64_t out_len = e->out_len - 16;
  unsigned out_n = vs_iov_slice(e->out, e->out_num, 16, out_len, out_data);
  unsigned in_n = e->in_num - (last->iov_len == 0);

  uint8_t st;
  uint64_t written = 0;
  switch (type) {
  case VIRTIO_BLK_T_IN:
    st = do_rw(b, false, sector, e->in, in_n, in_data);
    written = st == VIRTIO_BLK_S_OK ? in_data : 0;
    break;
  case VIRTIO_BLK_T_OUT:
    st = do_rw(b, true, sector, out_data, out_n, out_len);
    break;
  case VIRTIO_BLK_T_FLUSH: {
    vs_error *err = NULL;
    st = VIRTIO_BLK_S_OK;
    if (vm_disk_flush(b->disk, &err) < 0) {
      vs_log_warn("virtio-blk: %s", err->msg);
      vs_error_free(err);
      st = VIRTIO_BLK_S_IOERR;
    }
    break;
  }
  case VIRTIO_BLK_T_GET_ID:
    written = vs_iov_copy_to(e->in, in_n, 0, b->serial,
                             in_data < VIRTIO_BLK_ID_BYTES ? in_data : VIRTIO_BLK_ID_BYTES);
    st = VIRTIO_BLK_S_OK;
    break;
  case VIRTIO_BLK_T_DISCARD:
  case VIRTIO_BLK_T_WRITE_ZEROES:
    st = do_segments(b, type, out_data, out_n, out_len);
    break;
  default:
    st = VIRTIO_BLK_S_UNSUPP;
    break;
  }
  *status = st;
  b->requests++;
  if (st != VIRTIO_BLK_S_OK)
    b->errors++;
  return (int64_t)(written + 1);
}

static void blk_notify(virtio_mmio *t, unsigned qi) {
  virtio_blk *b = blk_of(t);
  virtq *q = &t->queues[qi];
  bool pushed = false;
  while (virtio_mmio_pop(t, qi, &b->elem) > 0) {
    int64_t written = serve(b, &b->elem);
    if (written < 0) {
      virtio_mmio_set_needs_reset(t, "request without header or status");
      break;
    }
    if (!virtio_mmio_push(t, qi, b->elem.head, (uint32_t)written))
      break;
    pushed = true;
  }
  virtq_update_avail_event(q, &t->mem);
  if (pushed)
    virtio_mmio_notify_used(t, qi);
}

static const uint8_t *blk_config(virtio_mmio *t, size_t *len) {
  virtio_blk *b = blk_of(t);
  *len = sizeof(b->config);
  return b->config;
}

static const virtio_device_ops blk_ops = {
    .notify = blk_notify,
    .config = blk_config,
};

void virtio_blk_init(virtio_blk *b, vm_disk *disk, const char *serial, virtio_mem mem,
                     dev_irq_line irq) {
  memset(b, 0, sizeof(*b));
  b->disk = disk;
  b->readonly = vm_disk_is_readonly(disk);
  if (serial) /* not NUL-terminated when 20 bytes long, as the spec allows */
    memcpy(b->serial, serial, strnlen(serial, sizeof(b->serial)));
  uint64_t features = VIRTIO_F_RING_INDIRECT_DESC | VIRTIO_F_RING_EVENT_IDX | VIRTIO_BLK_F_SEG_MAX |
                      VIRTIO_BLK_F_BLK_SIZE | VIRTIO_BLK_F_FLUSH;
  features |= b->readonly ? VIRTIO_BLK_F_RO : VIRTIO_BLK_F_DISCARD | VIRTIO_BLK_F_WRITE_ZEROES;
  virtio_mmio_init(&b->mmio, VIRTIO_ID_BLOCK, features, 1, mem, irq, &blk_ops);

  vm_disk_info info;
  vm_disk_get_info(disk, &info);
  uint32_t align = info.cluster_size ? (uint32_t)(info.cluster_size / SECTOR) : 8;
  uint8_t *c = b->config;
  put_le64(c + 0x00, vm_disk_size(disk) / SECTOR); /* capacity */
  put_le32(c + 0x0c, VIRTQ_MAX_SIZE - 2);          /* seg_max */
  put_le32(c + 0x14, SECTOR);                      /* blk_size */
  c[0x22] = 1;                                     /* num_queues (le16) */
  put_le32(c + 0x24, MAX_DISCARD_SECTORS);         /* max_discard_sectors */
  put_le32(c + 0x28, MAX_DISCARD_SEGS);            /* max_discard_seg */
  put_le32(c + CONFIG_DISCARD_ALIGNMENT, align);   /* discard_sector_alignment */
  put_le32(c + 0x30, MAX_DISCARD_SECTORS);         /* max_write_zeroes_sectors */
  put_le32(c + 0x34, MAX_DISCARD_SEGS);            /* max_write_zeroes_seg */
  c[0x38] = 1;                                     /* write_zeroes_may_unmap */
}

/* ------------------------------------------------------------------ save / restore */

#define VIRTIO_BLK_STATE_VERSION 2 /* 2: the discard alignment the guest was shown */

void virtio_blk_save(const virtio_blk *b, vmstate_writer *w) {
  virtio_mmio_save(&b->mmio, w);
  vmstate_begin(w, "VBLK", VIRTIO_BLK_STATE_VERSION);
  vmstate_put_u64(w, vm_disk_size(b->disk));
  vmstate_put_bool(w, b->readonly);
  vmstate_put_u64(w, b->requests);
  vmstate_put_u64(w, b->errors);
  vmstate_put_u32(w, get_le32(b->config + CONFIG_DISCARD_ALIGNMENT));
  vmstate_end_section(w);
}

int virtio_blk_load(virtio_blk *b, vmstate_reader *img, vs_error **err) {
  if (virtio_mmio_load(&b->mmio, img, err) < 0)
    return -1;
  vmstate_reader r;
  if (vmstate_next(img, "VBLK", VIRTIO_BLK_STATE_VERSION, &r, err) < 0)
    return -1;
  /* the guest's driver knows the disk's size and mode: the disk opened now must agree */
  if (vmstate_get_u64(&r) != vm_disk_size(b->disk))
    vmstate_refuse(&r, "the disk's size differs from the saved one");
  if (vmstate_get_bool(&r) != b->readonly)
    vmstate_refuse(&r, "the disk's read-only mode differs from the saved one");
  b->requests = vmstate_get_u64(&r);
  b->errors = vmstate_get_u64(&r);
  /* The guest read it when its driver started, from the disk of that time; a snapshot that
   * froze the disk goes on in a qcow2 overlay of another cluster size. It keeps what it saw
   * (and a replay sees what the recording saw). */
  if (r.version >= 2)
    put_le32(b->config + CONFIG_DISCARD_ALIGNMENT, vmstate_get_u32(&r));
  return vmstate_end(&r, err);
}
