/* qcow2 refcounts: the refcount table and blocks, cluster allocation, deferred frees.
 *
 * Write order (what a crash at any point leaves behind):
 *  - a fresh cluster's refcount is raised (and fdatasync'ed, see qcow2_order_refcounts) before any
 *    L1 entry or written-back L2 table points to it: a crash leaks it at worst;
 *  - a cluster loses its reference only at a flush, after the metadata that stopped using it is
 *    on disk (qcow2_free_later): a crash never leaves an entry pointing to a free cluster;
 *  - a new refcount block is written before the table entry that points to it, and a grown
 *    refcount table is complete on disk before the header switches to it.
 */
#include "vm/disk/qcow2.h"

#include <errno.h>
#include <string.h>

/* ------------------------------------------------------------- metadata cluster set */

static size_t meta_hash(uint64_t v, size_t cap) {
  return (size_t)((v * 0x9e3779b97f4a7c15ull) >> 20) & (cap - 1);
}

static void meta_insert_raw(qcow2_meta_set *s, uint64_t key) {
  size_t i = meta_hash(key, s->cap);
  while (s->slots[i] != 0)
    i = (i + 1) & (s->cap - 1);
  s->slots[i] = key;
  s->count++;
}

static void meta_grow(qcow2_meta_set *s) {
  qcow2_meta_set n = {.cap = s->cap ? s->cap * 2 : 64};
  n.slots = vs_malloc0(n.cap * sizeof(uint64_t));
  for (size_t i = 0; i < s->cap; i++)
    if (s->slots[i])
      meta_insert_raw(&n, s->slots[i]);
  free(s->slots);
  *s = n;
}

bool qcow2_meta_has(const qcow2_meta_set *s, uint64_t cluster) {
  if (!s->cap)
    return false;
  uint64_t key = cluster + 1;
  for (size_t i = meta_hash(key, s->cap);; i = (i + 1) & (s->cap - 1)) {
    if (s->slots[i] == key)
      return true;
    if (s->slots[i] == 0)
      return false;
  }
}

bool qcow2_meta_add(qcow2_meta_set *s, uint64_t cluster) {
  if (qcow2_meta_has(s, cluster))
    return false;
  if ((s->count + 1) * 2 > s->cap)
    meta_grow(s);
  meta_insert_raw(s, cluster + 1);
  return true;
}

void qcow2_meta_remove(qcow2_meta_set *s, uint64_t cluster) {
  if (!qcow2_meta_has(s, cluster))
    return;
  /* Rebuild without the key: removals are rare (a refcount table move). */
  qcow2_meta_set n = {.cap = s->cap};
  n.slots = vs_malloc0(n.cap * sizeof(uint64_t));
  for (size_t i = 0; i < s->cap; i++)
    if (s->slots[i] && s->slots[i] != cluster + 1)
      meta_insert_raw(&n, s->slots[i]);
  free(s->slots);
  *s = n;
}

void qcow2_meta_free(qcow2_meta_set *s) {
  free(s->slots);
  s->slots = NULL;
  s->cap = s->count = 0;
}

/* ------------------------------------------------------------- refcount blocks */

int qcow2_write_header_field(qcow2 *q, unsigned off, uint64_t value, unsigned size,
                             vs_error **err) {
  uint8_t buf[8];
  if (size == 8)
    qcow2_put_be64(buf, value);
  else
    qcow2_put_be32(buf, (uint32_t)value);
  return disk_file_write(q->file, buf, size, off, err);
}

int qcow2_refcount_load(qcow2 *q, uint64_t file_size, vs_error **err) {
  q->refcount_bits = 1u << q->refcount_order;
  q->refcount_max = q->refcount_bits == 64 ? UINT64_MAX : (1ull << q->refcount_bits) - 1;
  q->rb_entries = q->cluster_size * 8 / q->refcount_bits;
  q->rt_entries = (uint64_t)q->rt_clusters * q->cluster_size / 8;
  size_t bytes = (size_t)q->rt_entries * 8;
  q->rt = vs_malloc0(bytes ? bytes : 8);
  if (bytes && disk_file_read(q->file, q->rt, bytes, q->rt_offset, err) < 0)
    return vs_error_wrap(err, "read refcount table");
  for (uint64_t i = 0; i < q->rt_entries; i++) {
    uint64_t e = be64toh(q->rt[i]);
    q->rt[i] = e;
    if (e == 0)
      continue;
    if (e & QCOW2_RT_RESERVED || e & (q->cluster_size - 1))
      return vs_error_set(err, EINVAL,
                          "refcount table entry %" PRIu64 " (0x%" PRIx64 ") is not cluster aligned",
                          i, e);
    if (e >= file_size || file_size - e < q->cluster_size)
      return vs_error_set(err, EINVAL,
                          "refcount block %" PRIu64 " at offset 0x%" PRIx64
                          " lies past the end of the file (%" PRIu64 " bytes)",
                          i, e, file_size);
    if (!qcow2_meta_add(&q->meta, e >> q->cluster_bits))
      return vs_error_set(
          err, EINVAL, "refcount block %" PRIu64 " at offset 0x%" PRIx64 " overlaps other metadata",
          i, e);
  }
  for (size_t i = 0; i < QCOW2_RB_CACHE_SLOTS; i++)
    q->rb_cache[i].data = vs_malloc0(q->cluster_size);
  return 0;
}

void qcow2_refcount_free(qcow2 *q) {
  free(q->rt);
  q->rt = NULL;
  for (size_t i = 0; i < QCOW2_RB_CACHE_SLOTS; i++) {
    free(q->rb_cache[i].data);
    q->rb_cache[i].data = NULL;
  }
  free(q->pending_free);
  q->pending_free = NULL;
}

static qcow2_cache_slot *refblock_get(qcow2 *q, uint64_t ti, vs_error **err) {
  uint64_t off = q->rt[ti];
  qcow2_cache_slot *s = &q->rb_cache[ti % QCOW2_RB_CACHE_SLOTS];
  if (s->offset == off)
    return s;
  s->offset = 0;
  if (disk_file_read(q->file, s->data, q->cluster_size, off, err) < 0) {
    vs_error_wrap(err, "read refcount block at 0x%" PRIx64, off);
    return NULL;
  }
  s->offset = off;
  return s;
}

static uint64_t rb_entry_get(const qcow2 *q, const uint8_t *blk, uint64_t i) {
  switch (q->refcount_order) {
  case 0:
  case 1:
  case 2: {
    unsigned bits = q->refcount_bits, per_byte = 8 / bits;
    unsigned shift = (unsigned)(i % per_byte) * bits;
    return (blk[i / per_byte] >> shift) & ((1u << bits) - 1);
  }
  case 3:
    return blk[i];
  case 4:
    return (uint64_t)blk[2 * i] << 8 | blk[2 * i + 1];
  case 5:
    return qcow2_be32(blk + 4 * i);
  default:
    return qcow2_be64(blk + 8 * i);
  }
}

/* Sets entry i and returns the byte range of the block that changed. */
void qcow2_rb_entry_set(const qcow2 *q, uint8_t *blk, uint64_t i, uint64_t v, size_t *boff,
                        size_t *blen) {
  switch (q->refcount_order) {
  case 0:
  case 1:
  case 2: {
    unsigned bits = q->refcount_bits, per_byte = 8 / bits;
    unsigned shift = (unsigned)(i % per_byte) * bits;
    uint8_t mask = (uint8_t)(((1u << bits) - 1) << shift);
    blk[i / per_byte] = (uint8_t)((blk[i / per_byte] & ~mask) | ((v << shift) & mask));
    *boff = i / per_byte;
    *blen = 1;
    return;
  }
  case 3:
    blk[i] = (uint8_t)v;
    *boff = i, *blen = 1;
    return;
  case 4:
    qcow2_put_be16(blk + 2 * i, (uint16_t)v);
    *boff = 2 * i, *blen = 2;
    return;
  case 5:
    qcow2_put_be32(blk + 4 * i, (uint32_t)v);
    *boff = 4 * i, *blen = 4;
    return;
  default:
    qcow2_put_be64(blk + 8 * i, v);
    *boff = 8 * i, *blen = 8;
    return;
  }
}

int qcow2_refcount_get(qcow2 *q, uint64_t cluster, uint64_t *rc, vs_error **err) {
  uint64_t ti = cluster / q->rb_entries;
  if (ti >= q->rt_entries || q->rt[ti] == 0) {
    *rc = 0;
    return 0;
  }
  qcow2_cache_slot *s = refblock_get(q, ti, err);
  if (!s)
    return -1;
  *rc = rb_entry_get(q, (uint8_t *)s->data, cluster % q->rb_entries);
  return 0;
}

static uint64_t div_round_up(uint64_t a, uint64_t b) { return a / b + (a % b != 0); }

/* Move the refcount table to a bigger one covering at least `need` entries. The new table and
 * the refcount blocks that describe it go into a fresh area at the end of the file, aligned to
 * the range of one refcount block so those blocks describe exactly that area. */
static int refcount_table_grow(qcow2 *q, uint64_t need, vs_error **err) {
  uint64_t E = q->rb_entries, cs = q->cluster_size;
  uint64_t p = div_round_up(q->file_clusters, E) * E;
  uint64_t n = need > q->rt_entries * 2 ? need : q->rt_entries * 2;
  uint64_t k, m = 1;
  for (;;) {
    k = div_round_up(n * 8, cs);
    m = div_round_up(m + k, E);
    uint64_t end_ti = div_round_up(p + m + k, E);
    if (end_ti <= n)
      break;
    n = end_ti;
  }
  k = div_round_up(n * 8, cs);
  n = k * cs / 8;
  if (k * cs > QCOW2_MAX_RT_BYTES || p + m + k > (QCOW2_OFFSET_MASK >> q->cluster_bits))
    return vs_error_set(err, EFBIG, "refcount table would exceed %u bytes: image too large",
                        QCOW2_MAX_RT_BYTES);

  /* The refcount blocks of the new area: block j describes clusters [p + j*E, p + (j+1)*E). */
  _cleanup_free_ uint8_t *blk = vs_malloc0(cs);
  for (uint64_t j = 0; j < m; j++) {
    memset(blk, 0, cs);
    for (uint64_t c = p + j * E; c < p + (j + 1) * E && c < p + m + k; c++) {
      size_t bo, bl;
      qcow2_rb_entry_set(q, blk, c - p - j * E, 1, &bo, &bl);
    }
    if (disk_file_write(q->file, blk, cs, (p + j) * cs, err) < 0)
      return -1;
  }
  uint64_t *nt = vs_malloc0(k * cs);
  for (uint64_t i = 0; i < q->rt_entries; i++)
    nt[i] = htobe64(q->rt[i]);
  for (uint64_t j = 0; j < m; j++)
    nt[p / E + j] = htobe64((p + j) * cs);
  int r = disk_file_write(q->file, nt, k * cs, (p + m) * cs, err);
  if (r == 0)
    r = disk_file_sync(q->file, err);
  if (r == 0) {
    uint8_t hdr[12];
    qcow2_put_be64(hdr, (p + m) * cs);
    qcow2_put_be32(hdr + 8, (uint32_t)k);
    r = disk_file_write(q->file, hdr, sizeof(hdr), 48, err);
  }
  if (r == 0)
    r = disk_file_sync(q->file, err);
  if (r < 0) {
    free(nt);
    return vs_error_wrap(err, "grow refcount table");
  }
  uint64_t old_off = q->rt_offset, old_clusters = q->rt_clusters;
  for (uint64_t i = 0; i < n; i++)
    nt[i] = be64toh(nt[i]);
  free(q->rt);
  q->rt = nt;
  q->rt_entries = n;
  q->rt_offset = (p + m) * cs;
  q->rt_clusters = (uint32_t)k;
  for (uint64_t c = p; c < p + m + k; c++)
    qcow2_meta_add(&q->meta, c);
  q->file_clusters = p + m + k;
  for (uint64_t c = 0; c < old_clusters; c++)
    qcow2_meta_remove(&q->meta, (old_off >> q->cluster_bits) + c);
  /* The header no longer points to the old table: it can go now. */
  qcow2_free_later(q, old_off, old_clusters * cs);
  return 0;
}

/* Clusters being reserved right now: a new refcount block must not land on them. */
typedef struct alloc_span {
  uint64_t start, end;
} alloc_span;

/* Create the missing refcount block for table entry ti, placed inside the range it describes
 * so that it describes itself. */
static int refblock_create(qcow2 *q, uint64_t ti, alloc_span busy, vs_error **err) {
  uint64_t E = q->rb_entries, cs = q->cluster_size;
  uint64_t b = UINT64_MAX;
  for (uint64_t c = ti * E; c < (ti + 1) * E; c++) {
    if ((c >= busy.start && c < busy.end) || qcow2_meta_has(&q->meta, c) || c == 0)
      continue;
    b = c;
    break;
  }
  if (b == UINT64_MAX || b > (QCOW2_OFFSET_MASK >> q->cluster_bits))
    return vs_error_set(err, EIO, "no room for refcount block %" PRIu64, ti);
  _cleanup_free_ uint8_t *blk = vs_malloc0(cs);
  size_t bo, bl;
  qcow2_rb_entry_set(q, blk, b - ti * E, 1, &bo, &bl);
  if (disk_file_write(q->file, blk, cs, b * cs, err) < 0 || disk_file_sync(q->file, err) < 0)
    return -1;
  uint8_t ent[8];
  qcow2_put_be64(ent, b * cs);
  if (disk_file_write(q->file, ent, 8, q->rt_offset + ti * 8, err) < 0)
    return -1;
  q->rt[ti] = b * cs;
  qcow2_meta_add(&q->meta, b);
  if (b + 1 > q->file_clusters)
    q->file_clusters = b + 1;
  return 0;
}

/* Add delta to a cluster's refcount, creating refcount blocks (and growing the table) when a
 * cluster beyond the current ones gets its first reference. */
static int refcount_update(qcow2 *q, uint64_t cluster, int delta, alloc_span busy, vs_error **err) {
  uint64_t ti = cluster / q->rb_entries;
  if (ti >= q->rt_entries || q->rt[ti] == 0) {
    if (delta < 0)
      return vs_error_set(err, EIO,
                          "refcount of cluster 0x%" PRIx64
                          " would drop below zero (no refcount block): image corrupt",
                          cluster << q->cluster_bits);
    if (ti >= q->rt_entries && refcount_table_grow(q, ti + 1, err) < 0)
      return -1;
    if (q->rt[ti] == 0 && refblock_create(q, ti, busy, err) < 0)
      return -1;
  }
  qcow2_cache_slot *s = refblock_get(q, ti, err);
  if (!s)
    return -1;
  uint64_t i = cluster % q->rb_entries;
  uint64_t rc = rb_entry_get(q, (uint8_t *)s->data, i);
  if (delta < 0 && rc == 0)
    return vs_error_set(err, EIO,
                        "refcount of cluster 0x%" PRIx64 " would drop below zero: image corrupt",
                        cluster << q->cluster_bits);
  if (delta > 0 && rc == q->refcount_max)
    return vs_error_set(err, EIO, "refcount of cluster 0x%" PRIx64 " overflows",
                        cluster << q->cluster_bits);
  size_t bo, bl;
  qcow2_rb_entry_set(q, (uint8_t *)s->data, i, delta > 0 ? rc + 1 : rc - 1, &bo, &bl);
  if (disk_file_write(q->file, (uint8_t *)s->data + bo, bl, s->offset + bo, err) < 0) {
    s->offset = 0; /* the cached copy no longer matches the file */
    return -1;
  }
  if (delta > 0)
    q->refcounts_unsynced = true;
  return 0;
}

static bool cluster_is_free(qcow2 *q, uint64_t c, bool *is_free, vs_error **err) {
  uint64_t rc;
  if (qcow2_refcount_get(q, c, &rc, err) < 0)
    return false;
  *is_free = rc == 0 && !qcow2_meta_has(&q->meta, c) && c != 0;
  return true;
}

/* Reserve a run of free clusters (refcount 1 each), starting at the first free one. */
static int reserve_clusters(qcow2 *q, vs_error **err) {
  uint64_t max_cluster = QCOW2_OFFSET_MASK >> q->cluster_bits;
  /* Sequential writers use up reserves quickly: double the next one, so the number of
   * ordering fdatasyncs stays small. */
  if (q->reserve_size < QCOW2_RESERVE_CLUSTERS)
    q->reserve_size = QCOW2_RESERVE_CLUSTERS;
  uint64_t want = q->reserve_size;
  if (q->reserve_size < QCOW2_RESERVE_MAX)
    q->reserve_size *= 2;
  if (want > q->rb_entries / 2)
    want = q->rb_entries / 2;
  uint64_t s = q->free_hint;
  bool is_free = false;
  for (;; s++) {
    if (s >= max_cluster)
      return vs_error_set(err, ENOSPC, "qcow2 image is full (no free cluster below 64 PiB)");
    if (!cluster_is_free(q, s, &is_free, err))
      return -1;
    if (is_free)
      break;
  }
  uint64_t len = 1;
  while (len < want && s + len < max_cluster) {
    if (!cluster_is_free(q, s + len, &is_free, err))
      return -1;
    if (!is_free)
      break;
    len++;
  }
  alloc_span busy = {s, s + len};
  if (s + len > q->file_clusters)
    q->file_clusters = s + len;
  for (uint64_t c = s; c < s + len; c++) {
    if (refcount_update(q, c, +1, busy, err) < 0)
      return vs_error_wrap(err, "allocate cluster");
    q->reserve_next = s;
    q->reserve_count = c - s + 1;
  }
  q->free_hint = s + len;
  return 0;
}

int qcow2_alloc_cluster(qcow2 *q, uint64_t *offset, vs_error **err) {
  while (q->reserve_count == 0 || qcow2_meta_has(&q->meta, q->reserve_next)) {
    if (q->reserve_count) { /* became metadata (a refcount block) after being reserved */
      qcow2_free_later(q, q->reserve_next << q->cluster_bits, q->cluster_size);
      q->reserve_next++;
      q->reserve_count--;
      continue;
    }
    if (reserve_clusters(q, err) < 0)
      return -1;
  }
  *offset = q->reserve_next << q->cluster_bits;
  q->reserve_next++;
  q->reserve_count--;
  return 0;
}

int qcow2_order_refcounts(qcow2 *q, vs_error **err) {
  if (!q->refcounts_unsynced)
    return 0;
  if (disk_file_sync(q->file, err) < 0)
    return -1;
  q->refcounts_unsynced = false;
  return 0;
}

void qcow2_free_later(qcow2 *q, uint64_t offset, uint64_t len) {
  if (q->n_pending_free == q->cap_pending_free) {
    q->cap_pending_free = q->cap_pending_free ? q->cap_pending_free * 2 : 16;
    q->pending_free = vs_realloc(q->pending_free, q->cap_pending_free * sizeof(*q->pending_free));
  }
  q->pending_free[q->n_pending_free++] = (qcow2_free_range){offset, len};
}

static int free_clusters_now(qcow2 *q, uint64_t first, uint64_t count, vs_error **err) {
  alloc_span none = {0, 0};
  for (uint64_t c = first; c < first + count; c++) {
    if (refcount_update(q, c, -1, none, err) < 0)
      return -1;
    uint64_t rc;
    if (qcow2_refcount_get(q, c, &rc, err) < 0)
      return -1;
    if (rc == 0) {
      if (c < q->free_hint)
        q->free_hint = c;
      /* Give the space back to the host file system; failure to do so is harmless. */
      disk_file_punch_hole(q->file, c << q->cluster_bits, q->cluster_size, NULL);
    }
  }
  return 0;
}

int qcow2_refcount_flush(qcow2 *q, vs_error **err) {
  if (disk_file_sync(q->file, err) < 0)
    return -1;
  q->refcounts_unsynced = false;
  int r = 0;
  size_t i = 0;
  for (; i < q->n_pending_free && r == 0; i++) {
    qcow2_free_range *f = &q->pending_free[i];
    uint64_t first = f->offset >> q->cluster_bits;
    uint64_t last = (f->offset + f->len - 1) >> q->cluster_bits;
    r = free_clusters_now(q, first, last - first + 1, err);
  }
  /* Keep what was not tried; a range that failed half-way is dropped (at worst a leak, never a
   * second decrement). */
  size_t left = q->n_pending_free - i;
  if (left)
    memmove(q->pending_free, q->pending_free + i, left * sizeof(*q->pending_free));
  q->n_pending_free = left;
  return r;
}

void qcow2_release_reserve(qcow2 *q) {
  if (q->reserve_count == 0)
    return;
  qcow2_free_later(q, q->reserve_next << q->cluster_bits, q->reserve_count << q->cluster_bits);
  q->reserve_count = 0;
}
