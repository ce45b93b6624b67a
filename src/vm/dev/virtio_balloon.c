/* virtio-balloon (virtio 1.2, section 5.5) with statistics and free page reporting.
 *
 * Queues, in the order the driver finds them (queues of features it did not take are skipped,
 * as Linux's virtio_find_vqs numbers them): inflateq 0, deflateq 1, statsq (STATS_VQ), then
 * reporting_vq (PAGE_REPORTING). No free page hints and no page poison: without PAGE_POISON a
 * guest that poisons or zeroes free pages keeps reporting off by itself, which is right, since
 * the pages we drop come back as zero.
 *
 * The guest is hostile: every page frame number and every reported range is checked against
 * guest RAM; bad ones are counted and skipped, never touched. A chain can name at most
 * MAX_PFNS_PER_CHAIN pages (Linux sends 256), so one notify cannot keep the VMM busy for long.
 * Dropped pages are marked written: a live migration sends them again (as zero) and the harts
 * drop code they had decoded from them. */
#include "vm/dev/virtio.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#define VIRTIO_BALLOON_F_STATS_VQ (1ull << 1)
#define VIRTIO_BALLOON_F_DEFLATE_ON_OOM (1ull << 2)
#define VIRTIO_BALLOON_F_PAGE_REPORTING (1ull << 5)

#define INFLATE_QUEUE 0
#define DEFLATE_QUEUE 1
#define MAX_PFNS_PER_CHAIN 4096u
#define STAT_ENTRY_SIZE 10 /* le16 tag, le64 value (packed) */

static virtio_balloon *balloon_of(virtio_mmio *t) { return (virtio_balloon *)t; }

static bool negotiated(const virtio_balloon *b, uint64_t feature) {
  return (b->mmio.driver_features & feature) != 0;
}

/* The queue index of statsq / reporting_vq, or -1 when the driver did not take the feature. */
static int stats_queue(const virtio_balloon *b) {
  return negotiated(b, VIRTIO_BALLOON_F_STATS_VQ) ? 2 : -1;
}
static int reporting_queue(const virtio_balloon *b) {
  if (!negotiated(b, VIRTIO_BALLOON_F_PAGE_REPORTING))
    return -1;
  return 2 + (stats_queue(b) >= 0);
}

/* Give [gpa, gpa + len) (inside RAM, page-aligned) back to the host. */
static void drop_range(virtio_balloon *b, uint64_t gpa, uint64_t len) {
  const virtio_mem *mem = &b->mmio.mem;
  uint8_t *p = virtio_mem_ptr(mem, gpa, len);
  if (!p || len == 0)
    return;
  virtio_mem_mark_dirty(mem, gpa, len);
  if (madvise(p, len, MADV_DONTNEED) < 0)
    vs_log_warn("virtio-balloon: madvise of %llu bytes at guest 0x%llx: %s",
                (unsigned long long)len, (unsigned long long)gpa, strerror(errno));
}

/* The page frame numbers of an inflate chain: runs of consecutive pages are dropped together. */
static void inflate_chain(virtio_balloon *b, const virtq_elem *e) {
  uint64_t run_start = 0, run_pages = 0;
  size_t n = e->out_len / 4;
  if (n > MAX_PFNS_PER_CHAIN)
    n = MAX_PFNS_PER_CHAIN;
  for (size_t i = 0; i < n; i++) {
    uint8_t le[4];
    if (vs_iov_copy_from(e->out, e->out_num, i * 4, le, 4) != 4)
      break;
    uint64_t gpa = (uint64_t)((uint32_t)le[0] | (uint32_t)le[1] << 8 | (uint32_t)le[2] << 16 |
                              (uint32_t)le[3] << 24)
                   << 12;
    if (!virtio_mem_ptr(&b->mmio.mem, gpa, VIRTIO_BALLOON_PAGE_SIZE)) {
      b->bad_pfns++;
      continue;
    }
    b->inflated_pages++;
    if (run_pages && gpa == run_start + run_pages * VIRTIO_BALLOON_PAGE_SIZE) {
      run_pages++;
      continue;
    }
    drop_range(b, run_start, run_pages * VIRTIO_BALLOON_PAGE_SIZE);
    run_start = gpa;
    run_pages = 1;
  }
  drop_range(b, run_start, run_pages * VIRTIO_BALLOON_PAGE_SIZE);
}

/* A reporting chain: each device-writable buffer is a free range of guest RAM (the transport
 * mapped it, so it lies inside RAM); only whole pages inside it are dropped. */
static void report_chain(virtio_balloon *b, const virtq_elem *e) {
  const virtio_mem *mem = &b->mmio.mem;
  for (unsigned i = 0; i < e->in_num; i++) {
    uint64_t gpa = (uint64_t)((const uint8_t *)e->in[i].iov_base - mem->ram) + mem->base;
    uint64_t end = gpa + e->in[i].iov_len;
    uint64_t first =
        (gpa + VIRTIO_BALLOON_PAGE_SIZE - 1) & ~(uint64_t)(VIRTIO_BALLOON_PAGE_SIZE - 1);
    uint64_t last = end & ~(uint64_t)(VIRTIO_BALLOON_PAGE_SIZE - 1);
    if (last <= first)
      continue;
    drop_range(b, first, last - first);
    b->reported_bytes += last - first;
  }
}

static void stats_chain(virtio_balloon *b, const virtq_elem *e) {
  size_t n = e->out_len / STAT_ENTRY_SIZE;
  for (size_t i = 0; i < n && i < 64; i++) {
    uint8_t ent[STAT_ENTRY_SIZE];
    if (vs_iov_copy_from(e->out, e->out_num, i * STAT_ENTRY_SIZE, ent, sizeof(ent)) != sizeof(ent))
      break;
    unsigned tag = (unsigned)ent[0] | (unsigned)ent[1] << 8;
    if (tag >= VIRTIO_BALLOON_NUM_STATS)
      continue; /* a newer guest's statistic */
    uint64_t v = 0;
    for (int k = 7; k >= 0; k--)
      v = v << 8 | ent[2 + k];
    b->stats[tag] = v;
    b->stats_valid |= 1u << tag;
  }
}

static void balloon_notify(virtio_mmio *t, unsigned qi) {
  virtio_balloon *b = balloon_of(t);
  int sq = stats_queue(b), rq = reporting_queue(b);
  if (qi != INFLATE_QUEUE && qi != DEFLATE_QUEUE && (int)qi != sq && (int)qi != rq)
    return;
  bool pushed = false;
  while (virtio_mmio_pop(t, qi, &b->elem) > 0) {
    if ((int)qi == sq) {
      stats_chain(b, &b->elem);
      if (b->stats_held) /* the driver has one buffer out; a second one is returned at once */
        pushed = virtio_mmio_push(t, qi, b->stats_head, 0) || pushed;
      b->stats_head = b->elem.head;
      b->stats_held = true;
      continue;
    }
    if (qi == INFLATE_QUEUE)
      inflate_chain(b, &b->elem);
    else if (qi == DEFLATE_QUEUE)
      b->deflated_pages += b->elem.out_len / 4;
    else
      report_chain(b, &b->elem);
    if (!virtio_mmio_push(t, qi, b->elem.head, 0))
      return;
    pushed = true;
  }
  virtq_update_avail_event(&t->queues[qi], &t->mem);
  if (pushed)
    virtio_mmio_notify_used(t, qi);
}

static void update_config(virtio_balloon *b) {
  for (int i = 0; i < 4; i++) {
    b->config[i] = (uint8_t)(b->target_pages >> (8 * i));
    b->config[4 + i] = (uint8_t)(b->actual_pages >> (8 * i));
  }
}

static const uint8_t *balloon_config(virtio_mmio *t, size_t *len) {
  virtio_balloon *b = balloon_of(t);
  update_config(b);
  *len = sizeof(b->config);
  return b->config;
}

/* The driver writes `actual` (offset 4); num_pages is the device's. */
static void balloon_config_write(virtio_mmio *t, uint64_t off, unsigned size, uint32_t val) {
  virtio_balloon *b = balloon_of(t);
  if (off == 4 && size == 4)
    b->actual_pages = val;
}

static void balloon_reset(virtio_mmio *t) {
  virtio_balloon *b = balloon_of(t);
  b->actual_pages = 0;
  b->stats_held = false;
}

static const virtio_device_ops balloon_ops = {
    .notify = balloon_notify,
    .config = balloon_config,
    .reset = balloon_reset,
    .config_write = balloon_config_write,
};

void virtio_balloon_init(virtio_balloon *b, virtio_mem mem, dev_irq_line irq) {
  memset(b, 0, sizeof(*b));
  virtio_mmio_init(&b->mmio, VIRTIO_ID_BALLOON,
                   VIRTIO_F_RING_INDIRECT_DESC | VIRTIO_F_RING_EVENT_IDX |
                       VIRTIO_BALLOON_F_STATS_VQ | VIRTIO_BALLOON_F_DEFLATE_ON_OOM |
                       VIRTIO_BALLOON_F_PAGE_REPORTING,
                   4, mem, irq, &balloon_ops);
}

void virtio_balloon_set_target(virtio_balloon *b, uint32_t pages) {
  if (pages == b->target_pages)
    return;
  b->target_pages = pages;
  virtio_mmio_config_changed(&b->mmio);
}

void virtio_balloon_request_stats(virtio_balloon *b) {
  int sq = stats_queue(b);
  if (sq < 0 || !(b->mmio.status & VIRTIO_STATUS_DRIVER_OK) ||
      (b->mmio.status & VIRTIO_STATUS_NEEDS_RESET) || !b->mmio.queues[sq].ready)
    return;
  /* Linux primes statsq before DRIVER_OK, when the transport does not pass notifies on: take
   * that first buffer now */
  if (!b->stats_held)
    balloon_notify(&b->mmio, (unsigned)sq);
  if (!b->stats_held)
    return;
  b->stats_held = false;
  if (virtio_mmio_push(&b->mmio, (unsigned)sq, b->stats_head, 0))
    virtio_mmio_notify_used(&b->mmio, (unsigned)sq);
}

const char *virtio_balloon_stat_name(unsigned tag) {
  static const char *const names[VIRTIO_BALLOON_NUM_STATS] = {
      "swap_in",     "swap_out",      "major_faults",   "minor_faults",
      "free_memory", "total_memory",  "available",      "disk_caches",
      "htlb_allocs", "htlb_failures", "oom_kills",      "alloc_stalls",
      "async_scans", "direct_scans",  "async_reclaims", "direct_reclaims"};
  return tag < VIRTIO_BALLOON_NUM_STATS ? names[tag] : NULL;
}

/* ------------------------------------------------------------------ snapshot */

#define VIRTIO_BALLOON_STATE_VERSION 1

void virtio_balloon_save(const virtio_balloon *b, vmstate_writer *w) {
  virtio_mmio_save(&b->mmio, w);
  vmstate_begin(w, "VBAL", VIRTIO_BALLOON_STATE_VERSION);
  vmstate_put_u32(w, b->target_pages);
  vmstate_put_u32(w, b->actual_pages);
  vmstate_put_bool(w, b->stats_held);
  vmstate_put_u16(w, b->stats_head);
  vmstate_put_u32(w, b->stats_valid);
  for (unsigned i = 0; i < VIRTIO_BALLOON_NUM_STATS; i++)
    vmstate_put_u64(w, b->stats[i]);
  vmstate_put_u64(w, b->inflated_pages);
  vmstate_put_u64(w, b->deflated_pages);
  vmstate_put_u64(w, b->reported_bytes);
  vmstate_put_u64(w, b->bad_pfns);
  vmstate_end_section(w);
}

int virtio_balloon_load(virtio_balloon *b, vmstate_reader *img, vs_error **err) {
  if (virtio_mmio_load(&b->mmio, img, err) < 0)
    return -1;
  vmstate_reader r;
  if (vmstate_next(img, "VBAL", VIRTIO_BALLOON_STATE_VERSION, &r, err) < 0)
    return -1;
  b->target_pages = vmstate_get_u32(&r);
  b->actual_pages = vmstate_get_u32(&r);
  b->stats_held = vmstate_get_bool(&r);
  b->stats_head = vmstate_get_u16(&r);
  int sq = stats_queue(b);
  /* a held buffer goes back through statsq: its head must be a descriptor of that queue */
  if (b->stats_held && (sq < 0 || b->stats_head >= b->mmio.queues[sq].num)) {
    vmstate_refuse(&r, "a held statistics buffer outside the statistics queue");
    b->stats_held = false;
  }
  b->stats_valid = vmstate_get_u32(&r) & ((1u << VIRTIO_BALLOON_NUM_STATS) - 1);
  for (unsigned i = 0; i < VIRTIO_BALLOON_NUM_STATS; i++)
    b->stats[i] = vmstate_get_u64(&r);
  b->inflated_pages = vmstate_get_u64(&r);
  b->deflated_pages = vmstate_get_u64(&r);
  b->reported_bytes = vmstate_get_u64(&r);
  b->bad_pfns = vmstate_get_u64(&r);
  return vmstate_end(&r, err);
}
