/* qcow2 images (versions 2 and 3): opening and checking the header, guest reads and writes
 * through the L1/L2 mapping, compressed and zero clusters, backing files.
 *
 * Everything read from the image is untrusted: header fields, table entries and compressed data
 * are checked before use. A bad header or L1/refcount table refuses the open; a bad L2 entry
 * fails the one request that meets it with EIO. Guest data is never read from or written to a
 * cluster that holds metadata, and every write lands inside the image file.
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

static int l2_load(qcow2 *q, uint64_t l1_index, qcow2_cache_slot **out, vs_error **err) {
  uint64_t off = q->l1[l1_index] & QCOW2_OFFSET_MASK;
  qcow2_cache_slot *s = &q->l2_cache[l1_index % q->l2_slots];
  if (s->offset != off) {
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

static int l2_entry_set(qcow2 *q, qcow2_cache_slot *s, uint64_t guest, uint64_t entry,
                        vs_error **err) {
  uint64_t i = (guest >> q->cluster_bits) % q->l2_entries;
  s->data[i] = htobe64(entry);
  if (disk_file_write(q->file, &s->data[i], 8, s->offset + i * 8, err) < 0) {
    s->offset = 0;
    return vs_error_wrap(err, "write L2 entry");
  }
  return 0;
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

static int read_compressed(qcow2 *q, uint64_t entry, uint64_t guest, vs_error **err) {
  if (q->comp_entry == entry && entry != 0)
    return 0;
  q->comp_entry = 0;
  uint64_t off, len;
  compressed_extent(q, entry, &off, &len);
  uint64_t c = off >> q->cluster_bits;
  if (off == 0 || c >= q->file_clusters || qcow2_meta_has(&q->meta, c))
    return vs_error_set(err, EIO,
                        "compressed cluster for guest offset 0x%" PRIx64 " at 0x%" PRIx64
                        " lies outside the data area",
                        guest, off);
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

/* ------------------------------------------------------------- reads */

static int read_from_backing(qcow2 *q, void *buf, uint64_t guest, size_t len, vs_error **err) {
  uint64_t bsize = q->backing ? vm_disk_size(q->backing) : 0;
  size_t have = guest >= bsize ? 0 : (bsize - guest < len ? (size_t)(bsize - guest) : len);
  if (have && vm_disk_read(q->backing, buf, guest, have, err) < 0)
    return vs_error_wrap(err, "backing file %s", q->backing_name);
  memset((char *)buf + have, 0, len - have);
  return 0;
}

/* Read [in, in+len) of the guest cluster that starts at `guest` and is mapped by `entry`. */
static int read_cluster_part(qcow2 *q, uint64_t entry, uint64_t guest, uint64_t in, size_t len,
                             void *buf, vs_error **err) {
  uint64_t host = 0;
  switch (classify(q, entry)) {
  case CL_UNALLOCATED:
    if (entry & QCOW2_OFLAG_COPIED)
      return vs_error_set(
          err, EIO,
          "corrupt L2 entry for guest offset 0x%" PRIx64 ": copied flag without a cluster", guest);
    return read_from_backing(q, buf, guest + in, len, err);
  case CL_ZERO:
    memset(buf, 0, len);
    return 0;
  case CL_COMPRESSED:
    if (read_compressed(q, entry, guest, err) < 0)
      return -1;
    memcpy(buf, q->comp_out + in, len);
    return 0;
  case CL_NORMAL:
    if (data_cluster_offset(q, entry, guest, &host, err) < 0)
      return -1;
    return disk_file_read_zfill(q->file, buf, len, host + in, err);
  }
  return -1;
}

static int qcow2_read(vm_disk *d, void *buf, uint64_t off, size_t len, vs_error **err) {
  qcow2 *q = qcow2_of(d);
  char *p = buf;
  while (len > 0) {
    uint64_t in = off & (q->cluster_size - 1);
    size_t n = q->cluster_size - in < len ? (size_t)(q->cluster_size - in) : len;
    uint64_t entry = 0;
    if (l2_entry_get(q, off, &entry, err) < 0)
      return -1;
    uint64_t host = 0;
    if (classify(q, entry) == CL_NORMAL) {
      if (data_cluster_offset(q, entry, off - in, &host, err) < 0)
        return -1;
      /* Extend over the following clusters while they are contiguous in the file. */
      size_t run = n;
      while (run < len) {
        uint64_t next = 0, nhost = 0;
        size_t m = len - run < q->cluster_size ? len - run : (size_t)q->cluster_size;
        if (l2_entry_get(q, off + run, &next, err) < 0)
          return -1;
        if (classify(q, next) != CL_NORMAL ||
            data_cluster_offset(q, next, off + run, &nhost, NULL) < 0 || nhost != host + in + run)
          break;
        run += m;
      }
      if (disk_file_read_zfill(q->file, p, run, host + in, err) < 0)
        return -1;
      n = run;
    } else if (read_cluster_part(q, entry, off - in, in, n, p, err) < 0) {
      return -1;
    }
    p += n;
    off += n;
    len -= n;
  }
  return 0;
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

/* Write into a fresh cluster: the old content (backing file, zeros, compressed data, a shared
 * cluster) is merged with the new bytes, then the L2 entry is switched to the new cluster. */
static int cow_write_cluster(qcow2 *q, uint64_t entry, uint64_t guest, uint64_t in,
                             const void *data, size_t len, vs_error **err) {
  const void *src = data;
  if (in != 0 || len != q->cluster_size) {
    if (read_cluster_part(q, entry, guest, 0, q->cluster_size, q->cluster_buf, err) < 0)
      return -1;
    if (data)
      memcpy(q->cluster_buf + in, data, len);
    else
      memset(q->cluster_buf + in, 0, len);
    src = q->cluster_buf;
  } else if (!data) {
    memset(q->cluster_buf, 0, q->cluster_size);
    src = q->cluster_buf;
  }
  qcow2_cache_slot *l2;
  if (l2_get_for_write(q, guest, &l2, err) < 0)
    return -1;
  uint64_t host = 0;
  if (qcow2_alloc_cluster(q, &host, err) < 0)
    return -1;
  if (disk_file_write(q->file, src, q->cluster_size, host, err) < 0)
    return -1;
  if (qcow2_order_refcounts(q, err) < 0)
    return -1;
  if (l2_entry_set(q, l2, guest, host | QCOW2_OFLAG_COPIED, err) < 0)
    return -1;
  release_old_cluster(q, entry);
  return 0;
}

/* data == NULL writes zeros. */
static int write_range(qcow2 *q, const void *data, uint64_t off, uint64_t len, vs_error **err) {
  const char *p = data;
  while (len > 0) {
    uint64_t in = off & (q->cluster_size - 1);
    size_t n = q->cluster_size - in < len ? (size_t)(q->cluster_size - in) : (size_t)len;
    uint64_t entry = 0;
    if (l2_entry_get(q, off, &entry, err) < 0)
      return -1;
    uint64_t host = 0;
    if (classify(q, entry) == CL_NORMAL && (entry & QCOW2_OFLAG_COPIED)) {
      if (data_cluster_offset(q, entry, off - in, &host, err) < 0)
        return -1;
      int r;
      if (p) {
        r = disk_file_write(q->file, p, n, host + in, err);
      } else {
        memset(q->cluster_buf, 0, n);
        r = disk_file_write(q->file, q->cluster_buf, n, host + in, err);
      }
      if (r < 0)
        return -1;
    } else if (cow_write_cluster(q, entry, off - in, in, p, n, err) < 0) {
      return -1;
    }
    if (p)
      p += n;
    off += n;
    len -= n;
  }
  return 0;
}

static int qcow2_write(vm_disk *d, const void *buf, uint64_t off, size_t len, vs_error **err) {
  return write_range(qcow2_of(d), buf, off, len, err);
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
      if (write_range(q, NULL, off, q->cluster_size, err) < 0)
        return -1;
      continue;
    }
    if (new_entry == entry || (kind == CL_UNALLOCATED && new_entry == 0))
      continue;
    qcow2_cache_slot *l2 = NULL;
    if (l2_get_for_write(q, off, &l2, err) < 0)
      return -1;
    if (l2_entry_set(q, l2, off, new_entry, err) < 0)
      return -1;
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
  if (head_end > off && write_range(q, NULL, off, head_end - off, err) < 0)
    return -1;
  uint64_t tail_start = (off + len) & ~(cs - 1);
  if (tail_start > head_end) {
    if (unmap_clusters(q, head_end, tail_start - head_end, true, err) < 0)
      return -1;
  } else {
    tail_start = head_end;
  }
  if (off + len > tail_start && write_range(q, NULL, tail_start, off + len - tail_start, err) < 0)
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

static int qcow2_flush(vm_disk *d, vs_error **err) {
  return qcow2_refcount_flush(qcow2_of(d), err);
}

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
  free(q->comp_out);
  free(q->comp_in);
  free(q);
}

static int qcow2_close(vm_disk *d, vs_error **err) {
  qcow2 *q = qcow2_of(d);
  int r = 0;
  if (!d->readonly) {
    qcow2_release_reserve(q);
    r = qcow2_refcount_flush(q, err);
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
