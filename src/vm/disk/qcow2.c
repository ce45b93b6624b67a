/* qcow2 images (versions 2 and 3): opening and checking the header, guest reads and writes
 * through the L1/L2 mapping, compressed and zero clusters, backing files.
 *
 * Everything read from the image is untrusted: header fields, table entries and compressed data
 * are checked before use. A bad header or L1/refcount table refuses the open; a bad L2 entry
 * fails the one request that meets it with EIO. Guest data is never read from or written to a
 * cluster that holds metadata, and every write lands inside the image file.
 *
 * L2 tables are written lazily, as QEMU does with cache=writeback: a request that allocates
 * clusters (or a zero/discard that unmaps them) changes the cached L2 table and marks it dirty;
 * the table reaches the file at the next guest FLUSH, at close, or when its cache slot is reused
 * for another table. Before a dirty table is written, one fdatasync makes the refcounts and data
 * of the clusters it points to durable; at a FLUSH the tables are then synced, and only after
 * that do replaced clusters lose their reference (qcow2_free_later). A brand-new L2 table is
 * written zeroed, with an ordering sync, before the L1 entry that points to it, so an L1 entry
 * never points to a table that is not on disk; its entries follow lazily like any other.
 * Writes into clusters that are already allocated go straight to the file.
 *
 * What a VMM crash leaves: writes since the last FLUSH that allocated clusters may be lost
 * (their L2 entries were only in memory); flushed data is durable; the image is never corrupt,
 * at worst clusters leak (refcount 1, no L2 entry), which qemu-img check reports as leaks.
 */
#include "vm/disk/qcow2.h"

#include <errno.h>
#include <libgen.h>
#include <string.h>
#include <zlib.h>
#include <zstd.h>

typedef enum {
  CL_UNALLOCATED,
  CL_ZERO,
  CL_NORMAL,
  CL_COMPRESSED,
} cluster_kind;

static qcow2 *qcow2_of(vm_disk *d) { return d->priv; }

/* ------------------------------------------------------------- mapping */

/* Write a dirty cached L2 table to its place in the file. Its entries may point to clusters
 * whose refcounts or data are not durable yet: the ordering sync comes first, so the table on
 * disk never points to a cluster a crash would leave free or unwritten. On failure the table
 * stays dirty (the cache, not the file, holds the truth) and is tried again later. */
static int l2_writeback(qcow2 *q, qcow2_cache_slot *s, vs_error **err) {
  if (!s->dirty)
    return 0;
  if (qcow2_order_refcounts(q, err) < 0)
    return vs_error_wrap(err, "order refcounts before L2 table at 0x%" PRIx64, s->offset);
  if (disk_file_write(q->file, s->data, q->cluster_size, s->offset, err) < 0)
    return vs_error_wrap(err, "write L2 table at 0x%" PRIx64, s->offset);
  s->dirty = false;
  return 0;
}

/* Every dirty L2 table to the file; the first write-back's ordering sync covers them all. */
static int l2_writeback_all(qcow2 *q, vs_error **err) {
  for (size_t i = 0; i < q->l2_slots; i++)
    if (l2_writeback(q, &q->l2_cache[i], err) < 0)
      return -1;
  return 0;
}

static int l2_load(qcow2 *q, uint64_t l1_index, qcow2_cache_slot **out, vs_error **err) {
  uint64_t off = q->l1[l1_index] & QCOW2_OFFSET_MASK;
  qcow2_cache_slot *s = &q->l2_cache[l1_index % q->l2_slots];
  if (s->offset != off) {
    /* The slot is reused for another table: the one it holds may have entries only here. */
    if (l2_writeback(q, s, err) < 0)
      return vs_error_wrap(err, "evict L2 table");
    s->offset = 0;
    if (disk_file_read(q->file, s->data, q->cluster_size, off, err) < 0)
      return vs_error_wrap(err, "read L2 table at 0x%" PRIx64, off);
    s->offset = off;
  }
  *out = s;
  return 0;
}

/* The L2 entry for a guest offset (0 if its L2 table does not exist). */
static int l2_entry_get(qcow2 *q, uint64_t guest, uint64_t *entry, vs_error **err) {
  uint64_t cluster = guest >> q->cluster_bits;
  uint64_t l1i = cluster / q->l2_entries;
  if (l1i >= q->l1_size || (q->l1[l1i] & QCOW2_OFFSET_MASK) == 0) {
    *entry = 0;
    return 0;
  }
  qcow2_cache_slot *s = NULL;
  if (l2_load(q, l1i, &s, err) < 0)
    return -1;
  *entry = be64toh(s->data[cluster % q->l2_entries]);
  return 0;
}

/* The L2 table for a guest offset, allocated (zeroed) if missing. */
static int l2_get_for_write(qcow2 *q, uint64_t guest, qcow2_cache_slot **out, vs_error **err) {
  uint64_t l1i = (guest >> q->cluster_bits) / q->l2_entries;
  if (l1i >= q->l1_size)
    return vs_error_set(err, EIO, "guest offset 0x%" PRIx64 " beyond the L1 table", guest);
  uint64_t e = q->l1[l1i];
  if (e & QCOW2_OFFSET_MASK) {
    uint64_t rc = 0;
    if (!(e & QCOW2_OFLAG_COPIED) &&
        qcow2_refcount_get(q, (e & QCOW2_OFFSET_MASK) >> q->cluster_bits, &rc, err) < 0)
      return -1;
    if (!(e & QCOW2_OFLAG_COPIED) && rc == 1) {
      /* Only this L1 entry uses the table: the flag was just not set. */
      uint8_t ent[8];
      qcow2_put_be64(ent, e | QCOW2_OFLAG_COPIED);
      if (disk_file_write(q->file, ent, 8, q->l1_offset + l1i * 8, err) < 0)
        return vs_error_wrap(err, "write L1 entry");
      e = q->l1[l1i] = e | QCOW2_OFLAG_COPIED;
    }
    if (!(e & QCOW2_OFLAG_COPIED))
      return vs_error_set(err, EIO,
                          "L2 table at 0x%" PRIx64 " is shared (internal snapshot): "
                          "writing to it is not supported",
                          e & QCOW2_OFFSET_MASK);
    return l2_load(q, l1i, out, err);
  }
  uint64_t off;
  if (qcow2_alloc_cluster(q, &off, err) < 0)
    return vs_error_wrap(err, "allocate L2 table");
  qcow2_cache_slot *s = &q->l2_cache[l1i % q->l2_slots];
  if (l2_writeback(q, s, err) < 0)
    return vs_error_wrap(err, "evict L2 table");
  s->offset = 0;
  memset(s->data, 0, q->cluster_size);
  if (disk_file_write(q->file, s->data, q->cluster_size, off, err) < 0)
    return -1;
  qcow2_meta_add(&q->meta, off >> q->cluster_bits);
  /* The zeroed table must be on disk before the L1 entry that makes it live. */
  q->refcounts_unsynced = true;
  if (qcow2_order_refcounts(q, err) < 0)
    return -1;
  uint8_t ent[8];
  qcow2_put_be64(ent, off | QCOW2_OFLAG_COPIED);
  if (disk_file_write(q->file, ent, 8, q->l1_offset + l1i * 8, err) < 0)
    return vs_error_wrap(err, "write L1 entry");
  q->l1[l1i] = off | QCOW2_OFLAG_COPIED;
  s->offset = off;
  *out = s;
  return 0;
}

/* L2 entries change in the cache only: the table is written back at the next flush or when its
 * slot is reused (l2_writeback), not once per request. A brand-new table is the exception: it is
 * written zeroed before the L1 entry that makes it live (l2_get_for_write). */
static void l2_entry_set(qcow2 *q, qcow2_cache_slot *s, uint64_t guest, uint64_t entry) {
  uint64_t i = (guest >> q->cluster_bits) % q->l2_entries;
  s->data[i] = htobe64(entry);
  s->dirty = true;
}

static cluster_kind classify(const qcow2 *q, uint64_t entry) {
  if (entry & QCOW2_OFLAG_COMPRESSED)
    return CL_COMPRESSED;
  if (q->version >= 3 && (entry & QCOW2_OFLAG_ZERO))
    return CL_ZERO;
  return (entry & QCOW2_OFFSET_MASK) ? CL_NORMAL : CL_UNALLOCATED;
}

/* Host offset of a standard data cluster, after checking the entry points to a real data
 * cluster of this image. */
static int data_cluster_offset(qcow2 *q, uint64_t entry, uint64_t guest, uint64_t *host,
                               vs_error **err) {
  uint64_t off = entry & QCOW2_OFFSET_MASK;
  if ((entry & QCOW2_L2_RESERVED) || (off & (q->cluster_size - 1)))
    return vs_error_set(err, EIO,
                        "corrupt L2 entry 0x%016" PRIx64 " for guest offset 0x%" PRIx64
                        ": reserved bits set or cluster not aligned",
                        entry, guest);
  uint64_t c = off >> q->cluster_bits;
  if (c >= q->file_clusters)
    return vs_error_set(err, EIO,
                        "L2 entry for guest offset 0x%" PRIx64 " points past the end "
                        "of the image (0x%" PRIx64 ")",
                        guest, off);
  if (qcow2_meta_has(&q->meta, c))
    return vs_error_set(err, EIO,
                        "L2 entry for guest offset 0x%" PRIx64 " points into image "
                        "metadata (0x%" PRIx64 ")",
                        guest, off);
  *host = off;
  return 0;
}

/* ------------------------------------------------------------- compressed clusters */

static void compressed_extent(const qcow2 *q, uint64_t entry, uint64_t *off, uint64_t *len) {
  unsigned x = 62 - (q->cluster_bits - 8);
  uint64_t host = entry & ((1ull << x) - 1);
  uint64_t sectors = ((entry & ~QCOW2_OFLAG_COPIED & ~QCOW2_OFLAG_COMPRESSED) >> x) + 1;
  *off = host;
  *len = sectors * 512 - (host & 511);
}

static int inflate_zlib(qcow2 *q, size_t in_len, vs_error **err) {
  z_stream z = {0};
  if (inflateInit2(&z, -15) != Z_OK)
    return vs_error_set(err, ENOMEM, "zlib inflateInit2 failed");
  z.next_in = q->comp_in;
  z.avail_in = (uInt)in_len;
  z.next_out = q->comp_out;
  z.avail_out = (uInt)q->cluster_size;
  int ret = inflate(&z, Z_FINISH);
  bool ok = ret == Z_STREAM_END || (ret == Z_BUF_ERROR && z.avail_out == 0) ||
            (ret == Z_OK && z.avail_out == 0);
  ok = ok && z.total_out == q->cluster_size;
  inflateEnd(&z);
  if (!ok)
    return vs_error_set(err, EIO, "corrupt deflate data in compressed cluster");
  return 0;
}

static int inflate_zstd(qcow2 *q, size_t in_len, vs_error **err) {
  ZSTD_DCtx *dctx = ZSTD_createDCtx();
  if (!dctx)
    return vs_error_set(err, ENOMEM, "ZSTD_createDCtx failed");
  ZSTD_inBuffer in = {q->comp_in, in_len, 0};
  ZSTD_outBuffer out = {q->comp_out, q->cluster_size, 0};
  int r = 0;
  while (out.pos < out.size) {
    size_t pos_before = in.pos + out.pos;
    size_t ret = ZSTD_decompressStream(dctx, &out, &in);
    if (ZSTD_isError(ret)) {
      r = vs_error_set(err, EIO, "corrupt zstd data in compressed cluster: %s",
                       ZSTD_getErrorName(ret));
      break;
    }
    if (ret == 0 || in.pos + out.pos == pos_before)
      break; /* end of frame or no progress */
  }
  if (r == 0 && out.pos != out.size)
    r = vs_error_set(err, EIO, "compressed cluster decompresses to %zu bytes, not %" PRIu64,
                     out.pos, q->cluster_size);
  ZSTD_freeDCtx(dctx);
  return r;
}

/* The host extent of a compressed cluster, after checking that it starts in the data area. */
static int compressed_check(qcow2 *q, uint64_t entry, uint64_t guest, uint64_t *off, uint64_t *len,
                            vs_error **err) {
  compressed_extent(q, entry, off, len);
  uint64_t c = *off >> q->cluster_bits;
  if (*off == 0 || c >= q->file_clusters || qcow2_meta_has(&q->meta, c))
    return vs_error_set(err, EIO,
                        "compressed cluster for guest offset 0x%" PRIx64 " at 0x%" PRIx64
                        " lies outside the data area",
                        guest, *off);
  return 0;
}

static int read_compressed(qcow2 *q, uint64_t entry, uint64_t guest, vs_error **err) {
  if (q->comp_entry == entry && entry != 0)
    return 0;
  q->comp_entry = 0;
  uint64_t off, len;
  if (compressed_check(q, entry, guest, &off, &len, err) < 0)
    return -1;
  if (len > q->comp_in_cap) {
    free(q->comp_in);
    q->comp_in = vs_malloc0(len);
    q->comp_in_cap = len;
  }
  if (disk_file_read_zfill(q->file, q->comp_in, len, off, err) < 0)
    return -1;
  int r = q->compression_type == 1 ? inflate_zstd(q, len, err) : inflate_zlib(q, len, err);
  if (r < 0)
    return vs_error_wrap(err, "guest offset 0x%" PRIx64, guest);
  q->comp_entry = entry;
  return 0;
}

/* ------------------------------------------------------------- requests */

/* A guest request: the guest's buffers, and room to slice them into the part that one
 * preadv/pwritev (or one copy) moves. */
typedef struct io_req {
  const struct iovec *iov;
  int iovcnt;
  uint64_t off;       /* guest offset of the request's first byte */
  struct iovec *part; /* room for iovcnt entries */
} io_req;

/* Bytes [pos, pos+len) of the request into r->part; returns how many entries they take. */
static int req_slice(const io_req *r, uint64_t pos, uint64_t len) {
  return (int)vs_iov_slice(r->iov, (unsigned)r->iovcnt, pos, len, r->part); /* <= iovcnt */
}

static uint64_t min_u64(uint64_t a, uint64_t b) { return a < b ? a : b; }

/* Whether the cluster at `guest`, mapped by `next`, is read (or, for writes, overwritten in
 * place) together with the run that started with a cluster mapped by `first`: normal clusters
 * that follow each other in the file (`host` is where `guest` must be), unallocated clusters,
 * zero clusters. */
static bool continues_run(qcow2 *q, uint64_t first, uint64_t next, uint64_t guest, uint64_t host,
                          bool write) {
  cluster_kind kind = classify(q, first);
  if (classify(q, next) != kind)
    return false;
  uint64_t h = 0;
  switch (kind) {
  case CL_NORMAL:
    if (write && !(next & QCOW2_OFLAG_COPIED))
      return false;
    /* A bad entry ends the run; the next step meets it again and fails with its message. */
    return data_cluster_offset(q, next, guest, &h, NULL) == 0 && h == host;
  case CL_UNALLOCATED:
    return !(next & QCOW2_OFLAG_COPIED);
  case CL_ZERO:
    return true;
  case CL_COMPRESSED:
    return false;
  }
  return false;
}

/* Length of the run that starts at guest offset `guest` (mapped by `first`, at file offset `host`
 * if it is a normal cluster) and goes on over the following clusters, at most `left` bytes. */
static int run_length(qcow2 *q, uint64_t first, uint64_t guest, uint64_t host, uint64_t left,
                      bool write, uint64_t *run, vs_error **err) {
  uint64_t cs = q->cluster_size;
  uint64_t len = min_u64(cs - (guest & (cs - 1)), left);
  while (len < left) {
    uint64_t next = 0;
    if (l2_entry_get(q, guest + len, &next, err) < 0)
      return -1;
    if (!continues_run(q, first, next, guest + len, host + len, write))
      break;
    len += min_u64(cs, left - len);
  }
  *run = len;
  return 0;
}

/* ------------------------------------------------------------- reads */

/* Request bytes [pos, pos+len) from the backing file; what lies beyond its end (or everything,
 * without one) reads as zeros. */
static int read_from_backing(qcow2 *q, const io_req *r, uint64_t pos, uint64_t len,
                             vs_error **err) {
  uint64_t guest = r->off + pos;
  uint64_t bsize = q->backing ? vm_disk_size(q->backing) : 0;
  uint64_t have = guest >= bsize ? 0 : min_u64(bsize - guest, len);
  if (have && vm_disk_readv(q->backing, r->part, req_slice(r, pos, have), guest, err) < 0)
    return vs_error_wrap(err, "backing file %s", q->backing_name);
  vs_iov_zero(r->part, req_slice(r, pos + have, len - have));
  return 0;
}

/* Read the run of clusters that starts at request byte pos, whose first cluster is mapped by
 * `entry`, in one go: one preadv for normal clusters that follow each other in the file, one
 * backing file read for unallocated ones. Stores the run's length in *run. */
static int read_run(qcow2 *q, const io_req *r, uint64_t entry, uint64_t pos, uint64_t left,
                    uint64_t *run, vs_error **err) {
  uint64_t guest = r->off + pos, in = guest & (q->cluster_size - 1), host = 0;
  switch (classify(q, entry)) {
  case CL_UNALLOCATED:
    if (entry & QCOW2_OFLAG_COPIED)
      return vs_error_set(err, EIO,
                          "corrupt L2 entry for guest offset 0x%" PRIx64
                          ": copied flag without a cluster",
                          guest - in);
    if (run_length(q, entry, guest, 0, left, false, run, err) < 0)
      return -1;
    return read_from_backing(q, r, pos, *run, err);
  case CL_ZERO:
    if (run_length(q, entry, guest, 0, left, false, run, err) < 0)
      return -1;
    vs_iov_zero(r->part, req_slice(r, pos, *run));
    return 0;
  case CL_COMPRESSED:
    *run = min_u64(q->cluster_size - in, left);
    if (read_compressed(q, entry, guest - in, err) < 0)
      return -1;
    vs_iov_copy_to(r->part, req_slice(r, pos, *run), 0, q->comp_out + in, SIZE_MAX);
    return 0;
  case CL_NORMAL:
    if (data_cluster_offset(q, entry, guest - in, &host, err) < 0 ||
        run_length(q, entry, guest, host + in, left, false, run, err) < 0)
      return -1;
    return disk_file_readv(q->file, r->part, req_slice(r, pos, *run), host + in, err);
  }
  return -1;
}

static int read_request(qcow2 *q, const io_req *r, uint64_t len, vs_error **err) {
  for (uint64_t pos = 0, run = 0; pos < len; pos += run) {
    uint64_t entry = 0;
    if (l2_entry_get(q, r->off + pos, &entry, err) < 0 ||
        read_run(q, r, entry, pos, len - pos, &run, err) < 0)
      return -1;
  }
  return 0;
}

static int qcow2_readv(vm_disk *d, const struct iovec *iov, int iovcnt, uint64_t off,
                       vs_error **err) {
  _cleanup_free_ struct iovec *part = vs_malloc0((size_t)iovcnt * sizeof(*part));
  io_req r = {iov, iovcnt, off, part};
  return read_request(qcow2_of(d), &r, vs_iov_total(iov, iovcnt), err);
}

static int qcow2_read(vm_disk *d, void *buf, uint64_t off, size_t len, vs_error **err) {
  struct iovec v = {buf, len}, part;
  io_req r = {&v, 1, off, &part};
  return read_request(qcow2_of(d), &r, len, err);
}

/* The whole old content of the guest cluster at `guest` (mapped by `entry`) into cluster_buf. */
static int read_old_cluster(qcow2 *q, uint64_t entry, uint64_t guest, vs_error **err) {
  struct iovec v = {q->cluster_buf, q->cluster_size}, part;
  io_req r = {&v, 1, guest, &part};
  uint64_t run = 0;
  return read_run(q, &r, entry, 0, q->cluster_size, &run, err);
}

/* ------------------------------------------------------------- writes */

/* Drop the image's reference to what an L2 entry pointed to (after the new entry is written). */
static void release_old_cluster(qcow2 *q, uint64_t entry) {
  uint64_t off, len;
  switch (classify(q, entry)) {
  case CL_COMPRESSED:
    compressed_extent(q, entry, &off, &len);
    if (off != 0)
      qcow2_free_later(q, off, len);
    if (q->comp_entry == entry)
      q->comp_entry = 0;
    break;
  case CL_NORMAL:
  case CL_ZERO:
    off = entry & QCOW2_OFFSET_MASK;
    if (off != 0 && !(off & (q->cluster_size - 1)) &&
        !qcow2_meta_has(&q->meta, off >> q->cluster_bits))
      qcow2_free_later(q, off, q->cluster_size);
    break;
  case CL_UNALLOCATED:
    break;
  }
}

static bool writable_in_place(const qcow2 *q, uint64_t entry) {
  return classify(q, entry) == CL_NORMAL && (entry & QCOW2_OFLAG_COPIED);
}

/* Overwrite clusters that only this image uses: one pwritev for a run of them that follow each
 * other in the file. */
static int write_in_place(qcow2 *q, const io_req *r, uint64_t entry, uint64_t pos, uint64_t left,
                          uint64_t *run, vs_error **err) {
  uint64_t guest = r->off + pos, in = guest & (q->cluster_size - 1), host = 0;
  if (data_cluster_offset(q, entry, guest - in, &host, err) < 0 ||
      run_length(q, entry, guest, host + in, left, true, run, err) < 0)
    return -1;
  return disk_file_writev(q->file, r->part, req_slice(r, pos, *run), host + in, err);
}

/* Clusters that get fresh clusters in one go: at most this many, all under one L2 table, so that
 * their L2 entries are one write. */
#define FRESH_RUN_MAX 64

typedef struct fresh_run {
  uint64_t pos, len; /* the request bytes written */
  unsigned count;
  uint64_t old[FRESH_RUN_MAX];  /* the L2 entries before the write */
  uint64_t host[FRESH_RUN_MAX]; /* the new clusters */
} fresh_run;

/* An entry that is about to be replaced is checked like one that is read, although a cluster
 * the request covers whole is never read: releasing it must not drop a reference that some
 * metadata holds. */
static int check_old_entry(qcow2 *q, uint64_t entry, uint64_t guest, vs_error **err) {
  uint64_t off = 0, len = 0;
  switch (classify(q, entry)) {
  case CL_NORMAL:
    return data_cluster_offset(q, entry, guest, &off, err);
  case CL_COMPRESSED:
    if (compressed_check(q, entry, guest, &off, &len, err) < 0)
      return -1;
    /* The extent may reach into the next cluster: that one must not be metadata either. */
    if (qcow2_meta_has(&q->meta, (off + len - 1) >> q->cluster_bits))
      return vs_error_set(err, EIO,
                          "compressed cluster for guest offset 0x%" PRIx64 " at 0x%" PRIx64
                          " reaches into image metadata",
                          guest, off);
    return 0;
  case CL_UNALLOCATED:
  case CL_ZERO:
    break;
  }
  return 0;
}

/* The clusters from request byte pos on that cannot be overwritten in place (unallocated, zero,
 * compressed, shared): up to the end of the request, of their L2 table, or FRESH_RUN_MAX. */
static int fresh_run_collect(qcow2 *q, const io_req *r, uint64_t entry, uint64_t pos, uint64_t left,
                             fresh_run *f, vs_error **err) {
  uint64_t cs = q->cluster_size, per_table = q->l2_entries << q->cluster_bits;
  uint64_t table_end = ((r->off + pos) / per_table + 1) * per_table;
  *f = (fresh_run){.pos = pos};
  for (;;) {
    uint64_t guest = r->off + pos + f->len;
    if (check_old_entry(q, entry, guest & ~(cs - 1), err) < 0)
      return -1;
    f->old[f->count++] = entry;
    f->len += min_u64(cs - (guest & (cs - 1)), left - f->len);
    guest = r->off + pos + f->len;
    if (f->len == left || f->count == FRESH_RUN_MAX || guest >= table_end)
      return 0;
    if (l2_entry_get(q, guest, &entry, err) < 0)
      return -1;
    if (writable_in_place(q, entry))
      return 0;
  }
}

/* A cluster the request covers in part: its old content (backing file, zeros, compressed or
 * shared data) with the request's bytes [pos, pos+len) merged in, written whole to `host`. */
static int cow_write(qcow2 *q, const io_req *r, uint64_t old, uint64_t pos, uint64_t len,
                     uint64_t host, vs_error **err) {
  uint64_t guest = r->off + pos, in = guest & (q->cluster_size - 1);
  if (read_old_cluster(q, old, guest - in, err) < 0)
    return -1;
  vs_iov_copy_from(r->part, req_slice(r, pos, len), 0, q->cluster_buf + in, SIZE_MAX);
  return disk_file_write(q->file, q->cluster_buf, q->cluster_size, host, err);
}

/* The data of a fresh run. A cluster the request covers whole needs none of its old content: it
 * goes to the file straight from the guest's buffers, in one pwritev with the following ones
 * while their new clusters follow each other in the file. */
static int fresh_run_write_data(qcow2 *q, const io_req *r, const fresh_run *f, vs_error **err) {
  uint64_t cs = q->cluster_size, end = f->pos + f->len;
  for (uint64_t i = 0, pos = f->pos; i < f->count;) {
    uint64_t n = min_u64(cs - ((r->off + pos) & (cs - 1)), end - pos);
    if (n != cs) {
      if (cow_write(q, r, f->old[i], pos, n, f->host[i], err) < 0)
        return -1;
      pos += n, i++;
      continue;
    }
    uint64_t k = 1;
    while (i + k < f->count && f->host[i + k] == f->host[i] + k * cs && pos + (k + 1) * cs <= end)
      k++;
    if (disk_file_writev(q->file, r->part, req_slice(r, pos, k * cs), f->host[i], err) < 0)
      return -1;
    pos += k * cs, i += k;
  }
  return 0;
}

/* Give a fresh run its new clusters. The crash-safety order of qcow2_refcount.c holds for the
 * whole run at once: every new cluster's refcount is raised and ordered before any L2 entry
 * points to it, the data is written before the entries that make it live, and the old clusters
 * are released only at the next flush, after the entries. */
static int fresh_run_write(qcow2 *q, const io_req *r, fresh_run *f, vs_error **err) {
  qcow2_cache_slot *l2 = NULL;
  if (l2_get_for_write(q, r->off + f->pos, &l2, err) < 0)
    return -1;
  for (unsigned i = 0; i < f->count; i++)
    if (qcow2_alloc_cluster(q, &f->host[i], err) < 0)
      return -1;
  if (fresh_run_write_data(q, r, f, err) < 0)
    return -1;
  /* The new clusters' data must be durable before a written-back L2 table points to them (a
   * reused cluster would otherwise show another guest block's old content after a crash). */
  q->refcounts_unsynced = true;
  uint64_t cs = q->cluster_size;
  for (unsigned i = 0; i < f->count; i++)
    l2_entry_set(q, l2, ((r->off + f->pos) & ~(cs - 1)) + i * cs, f->host[i] | QCOW2_OFLAG_COPIED);
  for (unsigned i = 0; i < f->count; i++)
    release_old_cluster(q, f->old[i]);
  return 0;
}

static int write_request(qcow2 *q, const io_req *r, uint64_t len, vs_error **err) {
  for (uint64_t pos = 0, run = 0; pos < len; pos += run) {
    uint64_t entry = 0;
    if (l2_entry_get(q, r->off + pos, &entry, err) < 0)
      return -1;
    if (writable_in_place(q, entry)) {
      if (write_in_place(q, r, entry, pos, len - pos, &run, err) < 0)
        return -1;
      continue;
    }
    fresh_run f;
    if (fresh_run_collect(q, r, entry, pos, len - pos, &f, err) < 0 ||
        fresh_run_write(q, r, &f, err) < 0)
      return -1;
    run = f.len;
  }
  return 0;
}

static int qcow2_writev(vm_disk *d, const struct iovec *iov, int iovcnt, uint64_t off,
                        vs_error **err) {
  _cleanup_free_ struct iovec *part = vs_malloc0((size_t)iovcnt * sizeof(*part));
  io_req r = {iov, iovcnt, off, part};
  return write_request(qcow2_of(d), &r, vs_iov_total(iov, iovcnt), err);
}

static int qcow2_write(vm_disk *d, const void *buf, uint64_t off, size_t len, vs_error **err) {
  struct iovec v = {(void *)buf, len}, part;
  io_req r = {&v, 1, off, &part};
  return write_request(qcow2_of(d), &r, len, err);
}

/* Zeros written as data (where a cluster cannot simply be marked zero), from a zeroed buffer
 * of one cluster. */
static int write_zero_data(qcow2 *q, uint64_t off, uint64_t len, vs_error **err) {
  if (!q->zero_buf)
    q->zero_buf = vs_malloc0(q->cluster_size);
  while (len > 0) {
    uint64_t n = min_u64(len, q->cluster_size);
    struct iovec v = {q->zero_buf, n}, part;
    io_req r = {&v, 1, off, &part};
    if (write_request(q, &r, n, err) < 0)
      return -1;
    off += n, len -= n;
  }
  return 0;
}

/* Point whole guest clusters of [off, off+len) at "zero" (zeroes) or at nothing (discard);
 * partial clusters at either end are left to the caller. */
static int unmap_clusters(qcow2 *q, uint64_t off, uint64_t len, bool zeroes, vs_error **err) {
  for (; len > 0; off += q->cluster_size, len -= q->cluster_size) {
    uint64_t entry = 0;
    if (l2_entry_get(q, off, &entry, err) < 0)
      return -1;
    cluster_kind kind = classify(q, entry);
    uint64_t new_entry;
    if (!q->backing)
      new_entry = 0; /* unallocated reads as zeros */
    else if (q->version >= 3)
      new_entry = QCOW2_OFLAG_ZERO; /* hides the backing file */
    else if (zeroes)
      new_entry = UINT64_MAX; /* version 2 over a backing file: only real zeros hide it */
    else
      continue; /* discard is advisory */
    if (new_entry == UINT64_MAX) {
      if (write_zero_data(q, off, q->cluster_size, err) < 0)
        return -1;
      continue;
    }
    if (new_entry == entry || (kind == CL_UNALLOCATED && new_entry == 0))
      continue;
    qcow2_cache_slot *l2 = NULL;
    if (l2_get_for_write(q, off, &l2, err) < 0)
      return -1;
    l2_entry_set(q, l2, off, new_entry);
    release_old_cluster(q, entry);
  }
  return 0;
}

static int qcow2_write_zeroes(vm_disk *d, uint64_t off, uint64_t len, vs_error **err) {
  qcow2 *q = qcow2_of(d);
  uint64_t cs = q->cluster_size;
  uint64_t head_end = (off + cs - 1) & ~(cs - 1);
  if (head_end > off + len)
    head_end = off + len;
  if (head_end > off && write_zero_data(q, off, head_end - off, err) < 0)
    return -1;
  uint64_t tail_start = (off + len) & ~(cs - 1);
  if (tail_start > head_end) {
    if (unmap_clusters(q, head_end, tail_start - head_end, true, err) < 0)
      return -1;
  } else {
    tail_start = head_end;
  }
  if (off + len > tail_start && write_zero_data(q, tail_start, off + len - tail_start, err) < 0)
    return -1;
  return 0;
}

static int qcow2_discard(vm_disk *d, uint64_t off, uint64_t len, vs_error **err) {
  qcow2 *q = qcow2_of(d);
  uint64_t cs = q->cluster_size;
  uint64_t start = (off + cs - 1) & ~(cs - 1);
  uint64_t end = (off + len) & ~(cs - 1);
  /* The disk's last cluster may be partial: discard it whole when the range reaches the end. */
  if (off + len == d->size)
    end = (off + len + cs - 1) & ~(cs - 1);
  if (end <= start)
    return 0;
  return unmap_clusters(q, start, end - start, false, err);
}

/* Everything durable, in order: data and refcounts synced, then the dirty L2 tables written
 * (l2_writeback_all), then synced again (qcow2_refcount_flush), and only then the clusters the
 * new entries stopped using lose their reference. */
static int flush_all(qcow2 *q, vs_error **err) {
  if (l2_writeback_all(q, err) < 0)
    return vs_error_wrap(err, "flush L2 tables");
  return qcow2_refcount_flush(q, err);
}

static int qcow2_flush(vm_disk *d, vs_error **err) { return flush_all(qcow2_of(d), err); }

/* ------------------------------------------------------------- open / close */

static void qcow2_free(qcow2 *q) {
  if (!q)
    return;
  if (q->backing)
    vm_disk_close(q->backing, NULL);
  free(q->backing_name);
  free(q->backing_format);
  free(q->l1);
  if (q->l2_cache) {
    for (size_t i = 0; i < q->l2_slots; i++)
      free(q->l2_cache[i].data);
    free(q->l2_cache);
  }
  qcow2_refcount_free(q);
  qcow2_meta_free(&q->meta);
  free(q->cluster_buf);
  free(q->zero_buf);
  free(q->comp_out);
  free(q->comp_in);
  free(q);
}

static int qcow2_close(vm_disk *d, vs_error **err) {
  qcow2 *q = qcow2_of(d);
  int r = 0;
  if (!d->readonly) {
    qcow2_release_reserve(q);
    r = flush_all(q, err);
    if (r == 0)
      r = disk_file_sync(q->file, err);
  }
  qcow2_free(q);
  d->priv = NULL;
  return r;
}

static void qcow2_info(vm_disk *d, vm_disk_info *info) {
  qcow2 *q = qcow2_of(d);
  info->cluster_size = q->cluster_size;
  info->qcow2_version = q->version;
  info->refcount_bits = q->refcount_bits;
  info->compression = q->compression_type == 1 ? "zstd" : "zlib";
  info->backing_file = q->backing_name;
  info->backing_format = q->backing_format;
  info->backing_depth = q->backing_depth;
  info->dirty = q->incompat & QCOW2_INCOMPAT_DIRTY;
  info->corrupt = q->incompat & QCOW2_INCOMPAT_CORRUPT;
  info->lazy_refcounts = q->compat & QCOW2_COMPAT_LAZY_REFCOUNTS;
}

static const disk_ops qcow2_ops = {
    .name = "qcow2",
    .read = qcow2_read,
    .write = qcow2_write,
    .readv = qcow2_readv,
    .writev = qcow2_writev,
    .flush = qcow2_flush,
    .discard = qcow2_discard,
    .write_zeroes = qcow2_write_zeroes,
    .info = qcow2_info,
    .close = qcow2_close,
};

/* Name of a feature bit from the image's feature name table, or "unknown". */
static void feature_name(const uint8_t *table, size_t len, int type, int bit, char out[48]) {
  snprintf(out, 48, "unknown");
  for (size_t i = 0; table && i + 48 <= len; i += 48) {
    if (table[i] == type && table[i + 1] == bit) {
      size_t n = strnlen((const char *)table + i + 2, 46);
      memcpy(out, table + i + 2, n);
      out[n] = 0;
      for (size_t k = 0; k < n; k++)
        if (out[k] < 0x20 || out[k] > 0x7e)
          out[k] = '?';
      return;
    }
  }
}

static int parse_extensions(qcow2 *q, const uint8_t *hdr, const uint8_t **ftable,
                            size_t *ftable_len, vs_error **err) {
  uint64_t cs = q->cluster_size;
  uint64_t off = q->version == 2 ? QCOW2_V2_HEADER_LEN : q->header_length;
  while (off + 8 <= cs) {
    uint32_t type = qcow2_be32(hdr + off), len = qcow2_be32(hdr + off + 4);
    if (type == QCOW2_EXT_END)
      break;
    if (len > cs - off - 8)
      return vs_error_set(err, EINVAL,
                          "header extension 0x%08x at offset %" PRIu64
                          " (%u bytes) overflows the header cluster",
                          type, off, len);
    const uint8_t *data = hdr + off + 8;
    switch (type) {
    case QCOW2_EXT_BACKING_FORMAT:
      if (len == 0 || len > 63)
        return vs_error_set(err, EINVAL, "backing format extension of %u bytes", len);
      free(q->backing_format);
      q->backing_format = vs_malloc0(len + 1);
      memcpy(q->backing_format, data, len);
      break;
    case QCOW2_EXT_FEATURE_TABLE:
      *ftable = data;
      *ftable_len = len;
      break;
    case QCOW2_EXT_CRYPTO:
      return vs_error_set(err, ENOTSUP, "encrypted images are not supported");
    case QCOW2_EXT_DATA_FILE:
      return vs_error_set(err, ENOTSUP, "images with an external data file are not supported");
    default:
      break; /* bitmaps and unknown extensions: nothing to do to read or write guest data */
    }
    off += 8 + (((uint64_t)len + 7) & ~7ull);
  }
  return 0;
}

static int check_features(qcow2 *q, const uint8_t *ftable, size_t ftable_len, bool readonly,
                          vs_error **err) {
  uint64_t known = QCOW2_INCOMPAT_DIRTY | QCOW2_INCOMPAT_CORRUPT | QCOW2_INCOMPAT_COMPRESSION;
  uint64_t unknown = q->incompat & ~known;
  if (unknown) {
    int bit = __builtin_ctzll(unknown);
    char name[48];
    feature_name(ftable, ftable_len, 0, bit, name);
    if (bit == 2)
      snprintf(name, sizeof(name), "external data file");
    else if (bit == 4)
      snprintf(name, sizeof(name), "extended L2 entries");
    return vs_error_set(err, ENOTSUP, "unsupported incompatible feature bit %d (%s)", bit, name);
  }
  if (q->incompat & QCOW2_INCOMPAT_COMPRESSION) {
    if (q->header_length <= 104 || q->compression_type == 0)
      return vs_error_set(err, EINVAL, "compression type bit set without a compression type");
  } else if (q->compression_type != 0) {
    return vs_error_set(err, EINVAL, "compression type %u without the compression type bit",
                        q->compression_type);
  }
  if (q->compression_type > 1)
    return vs_error_set(err, ENOTSUP, "unknown compression type %u", q->compression_type);
  if (readonly)
    return 0;
  if (q->incompat & QCOW2_INCOMPAT_CORRUPT)
    return vs_error_set(err, EINVAL,
                        "image is marked corrupt; open it read-only or repair it "
                        "with qemu-img check -r all");
  if (q->incompat & QCOW2_INCOMPAT_DIRTY)
    return vs_error_set(err, EINVAL,
                        "image is dirty (lazy refcounts not written back); repair "
                        "it with qemu-img check -r all or open it read-only");
  if (q->nb_snapshots)
    return vs_error_set(err, ENOTSUP,
                        "image has %u internal snapshots: writing is not "
                        "supported, open it read-only",
                        q->nb_snapshots);
  return 0;
}

static int parse_header(qcow2 *q, const uint8_t *hdr, uint64_t file_size, vs_error **err) {
  uint64_t cs = q->cluster_size;
  q->size = 0;
  uint64_t size = qcow2_be64(hdr + 24);
  if (qcow2_be32(hdr + 32) != 0)
    return vs_error_set(err, ENOTSUP, "encrypted images are not supported");
  q->l1_size = qcow2_be32(hdr + 36);
  q->l1_offset = qcow2_be64(hdr + 40);
  q->rt_offset = qcow2_be64(hdr + 48);
  q->rt_clusters = qcow2_be32(hdr + 56);
  q->nb_snapshots = qcow2_be32(hdr + 60);
  q->snapshots_offset = qcow2_be64(hdr + 64);
  q->refcount_order = 4;
  q->header_length = QCOW2_V2_HEADER_LEN;
  if (q->version >= 3) {
    q->incompat = qcow2_be64(hdr + 72);
    q->compat = qcow2_be64(hdr + 80);
    q->autoclear = qcow2_be64(hdr + 88);
    q->refcount_order = qcow2_be32(hdr + 96);
    q->header_length = qcow2_be32(hdr + 100);
    if (q->header_length < QCOW2_V3_HEADER_LEN || q->header_length > cs || q->header_length % 8)
      return vs_error_set(err, EINVAL, "bad header length %u", q->header_length);
    if (q->header_length > 104)
      q->compression_type = hdr[104];
  }
  if (q->refcount_order > 6)
    return vs_error_set(err, EINVAL, "refcount order %u is larger than 6", q->refcount_order);
  q->l2_entries = cs / 8;
  if (q->l1_size > QCOW2_MAX_L1_BYTES / 8)
    return vs_error_set(err, EFBIG, "L1 table of %u entries is too large", q->l1_size);
  uint64_t max_size = (uint64_t)q->l1_size * q->l2_entries * cs;
  if (size > max_size || size > (uint64_t)INT64_MAX)
    return vs_error_set(err, EINVAL,
                        "disk size %" PRIu64 " exceeds what the L1 table of %u "
                        "entries maps (%" PRIu64 " bytes)",
                        size, q->l1_size, max_size);
  uint64_t l1_bytes = (uint64_t)q->l1_size * 8;
  if (q->l1_size && ((q->l1_offset & (cs - 1)) || q->l1_offset == 0 || q->l1_offset > file_size ||
                     file_size - q->l1_offset < l1_bytes))
    return vs_error_set(err, EINVAL,
                        "L1 table at 0x%" PRIx64 " (%" PRIu64 " bytes) is not "
                        "cluster aligned or lies outside the file",
                        q->l1_offset, l1_bytes);
  uint64_t rt_bytes = (uint64_t)q->rt_clusters * cs;
  if (rt_bytes > QCOW2_MAX_RT_BYTES || rt_bytes == 0)
    return vs_error_set(err, EINVAL, "refcount table of %u clusters is empty or too large",
                        q->rt_clusters);
  if ((q->rt_offset & (cs - 1)) || q->rt_offset == 0 || q->rt_offset > file_size ||
      file_size - q->rt_offset < rt_bytes)
    return vs_error_set(err, EINVAL,
                        "refcount table at 0x%" PRIx64 " is not cluster aligned "
                        "or lies outside the file",
                        q->rt_offset);
  if (q->nb_snapshots > QCOW2_MAX_SNAPSHOTS ||
      (q->nb_snapshots && ((q->snapshots_offset & (cs - 1)) || q->snapshots_offset == 0 ||
                           q->snapshots_offset >= file_size)))
    return vs_error_set(err, EINVAL, "bad snapshot table (%u snapshots at 0x%" PRIx64 ")",
                        q->nb_snapshots, q->snapshots_offset);
  q->size = size;
  return 0;
}

static int parse_backing_name(qcow2 *q, const uint8_t *hdr, vs_error **err) {
  uint64_t off = qcow2_be64(hdr + 8);
  uint32_t len = qcow2_be32(hdr + 16);
  if (off == 0)
    return 0;
  if (len == 0 || len > QCOW2_MAX_BACKING_NAME || off > q->cluster_size ||
      q->cluster_size - off < len)
    return vs_error_set(err, EINVAL,
                        "backing file name (%u bytes at offset %" PRIu64
                        ") does not fit in the header cluster",
                        len, off);
  q->backing_name = vs_malloc0(len + 1);
  memcpy(q->backing_name, hdr + off, len);
  if (strlen(q->backing_name) != len)
    return vs_error_set(err, EINVAL, "backing file name contains a NUL byte");
  return 0;
}

static int load_l1(qcow2 *q, uint64_t file_size, vs_error **err) {
  uint64_t cs = q->cluster_size;
  q->l1 = vs_malloc0((q->l1_size ? (size_t)q->l1_size : 1) * 8);
  if (q->l1_size && disk_file_read(q->file, q->l1, (size_t)q->l1_size * 8, q->l1_offset, err) < 0)
    return vs_error_wrap(err, "read L1 table");
  for (uint32_t i = 0; i < q->l1_size; i++) {
    uint64_t e = be64toh(q->l1[i]);
    q->l1[i] = e;
    uint64_t off = e & QCOW2_OFFSET_MASK;
    if (off == 0)
      continue;
    if ((e & QCOW2_L1_RESERVED) || (off & (cs - 1)))
      return vs_error_set(err, EINVAL,
                          "L1 entry %u (0x%016" PRIx64 ") has reserved bits set "
                          "or is not cluster aligned",
                          i, e);
    if (off >= file_size || file_size - off < cs)
      return vs_error_set(err, EINVAL,
                          "L1 entry %u points past the end of the file (L2 table "
                          "at 0x%" PRIx64 ", file has %" PRIu64 " bytes)",
                          i, off, file_size);
    if (!qcow2_meta_add(&q->meta, off >> q->cluster_bits))
      return vs_error_set(err, EINVAL, "L1 entry %u points into other metadata (0x%" PRIx64 ")", i,
                          off);
  }
  return 0;
}

static int add_meta_range(qcow2 *q, uint64_t off, uint64_t bytes, const char *what,
                          vs_error **err) {
  uint64_t first = off >> q->cluster_bits;
  uint64_t n = (bytes + q->cluster_size - 1) >> q->cluster_bits;
  for (uint64_t c = first; c < first + n; c++)
    if (!qcow2_meta_add(&q->meta, c))
      return vs_error_set(err, EINVAL, "%s at 0x%" PRIx64 " overlaps other metadata", what, off);
  return 0;
}

static int open_backing(qcow2 *q, const char *image_path, const disk_open_ctx *ctx,
                        vs_error **err) {
  if (!q->backing_name)
    return 0;
  vm_disk_format fmt = VM_DISK_FORMAT_AUTO;
  if (q->backing_format && vm_disk_format_parse(q->backing_format, &fmt) < 0)
    return vs_error_set(err, ENOTSUP, "backing file format '%s' is not supported",
                        q->backing_format);
  _cleanup_free_ char *path = NULL;
  if (q->backing_name[0] == '/') {
    path = vs_strdup(q->backing_name);
  } else {
    _cleanup_free_ char *copy = vs_strdup(image_path);
    path = vs_asprintf("%s/%s", dirname(copy), q->backing_name);
  }
  if (disk_open_backing(path, fmt, ctx, &q->backing, err) < 0)
    return vs_error_wrap(err, "backing file");
  q->backing_depth = 1;
  if (q->backing->ops == &qcow2_ops)
    q->backing_depth += qcow2_of(q->backing)->backing_depth;
  return 0;
}

int disk_qcow2_open(vm_disk *d, const disk_open_ctx *ctx, vs_error **err) {
  qcow2 *q = vs_malloc0(sizeof(*q));
  q->disk = d;
  q->file = &d->file;
  d->priv = q;
  uint64_t file_size;
  _cleanup_free_ uint8_t *hdr = NULL;
  const uint8_t *ftable = NULL;
  size_t ftable_len = 0;
  if (disk_file_size(q->file, &file_size, err) < 0)
    goto fail;
  uint8_t small[QCOW2_V3_HEADER_LEN];
  if (file_size < QCOW2_V2_HEADER_LEN) {
    vs_error_set(err, EINVAL, "file of %" PRIu64 " bytes is too short for a qcow2 header",
                 file_size);
    goto fail;
  }
  if (disk_file_read_zfill(q->file, small, sizeof(small), 0, err) < 0)
    goto fail;
  if (qcow2_be32(small) != QCOW2_MAGIC) {
    vs_error_set(err, EINVAL, "not a qcow2 image (bad magic)");
    goto fail;
  }
  q->version = qcow2_be32(small + 4);
  if (q->version != 2 && q->version != 3) {
    vs_error_set(err, ENOTSUP, "unsupported qcow2 version %u", q->version);
    goto fail;
  }
  q->cluster_bits = qcow2_be32(small + 20);
  if (q->cluster_bits < QCOW2_MIN_CLUSTER_BITS || q->cluster_bits > QCOW2_MAX_CLUSTER_BITS) {
    vs_error_set(err, EINVAL, "cluster bits %u outside %d..%d", q->cluster_bits,
                 QCOW2_MIN_CLUSTER_BITS, QCOW2_MAX_CLUSTER_BITS);
    goto fail;
  }
  q->cluster_size = 1ull << q->cluster_bits;
  hdr = vs_malloc0(q->cluster_size);
  if (disk_file_read_zfill(q->file, hdr, q->cluster_size, 0, err) < 0 ||
      parse_header(q, hdr, file_size, err) < 0 ||
      parse_extensions(q, hdr, &ftable, &ftable_len, err) < 0 ||
      parse_backing_name(q, hdr, err) < 0 ||
      check_features(q, ftable, ftable_len, d->readonly, err) < 0)
    goto fail;
  q->file_clusters = (file_size + q->cluster_size - 1) >> q->cluster_bits;
  qcow2_meta_add(&q->meta, 0);
  if (add_meta_range(q, q->l1_offset, (uint64_t)q->l1_size * 8, "L1 table", err) < 0 ||
      add_meta_range(q, q->rt_offset, (uint64_t)q->rt_clusters * q->cluster_size, "refcount table",
                     err) < 0 ||
      qcow2_refcount_load(q, file_size, err) < 0 || load_l1(q, file_size, err) < 0)
    goto fail;
  q->l2_slots = QCOW2_L2_CACHE_BYTES / q->cluster_size;
  if (q->l2_slots < 16)
    q->l2_slots = 16;
  if (q->l2_slots > q->l1_size)
    q->l2_slots = q->l1_size ? q->l1_size : 1;
  q->l2_cache = vs_malloc0(q->l2_slots * sizeof(*q->l2_cache));
  for (size_t i = 0; i < q->l2_slots; i++)
    q->l2_cache[i].data = vs_malloc0(q->cluster_size);
  q->cluster_buf = vs_malloc0(q->cluster_size);
  q->comp_out = vs_malloc0(q->cluster_size);
  if (open_backing(q, d->file.path, ctx, err) < 0)
    goto fail;
  if (!d->readonly && q->autoclear) {
    /* We do not keep the data of auto-clear features (bitmaps) up to date: say so first. */
    if (qcow2_write_header_field(q, 88, 0, 8, err) < 0 || disk_file_sync(q->file, err) < 0)
      goto fail;
    q->autoclear = 0;
  }
  d->size = q->size;
  d->ops = &qcow2_ops;
  return 0;
fail:
  qcow2_free(q);
  d->priv = NULL;
  return -1;
}
