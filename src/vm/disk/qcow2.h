/* Private to src/vm/disk: qcow2 state shared by qcow2.c, qcow2_refcount.c, qcow2_create.c.
 * Format reference: QEMU's docs/interop/qcow2.txt (versions 2 and 3). */
#ifndef VESSEL_VM_DISK_QCOW2_H
#define VESSEL_VM_DISK_QCOW2_H

#include "vm/disk/disk_int.h"

#include <endian.h>

#define QCOW2_MAGIC 0x514649fbu
#define QCOW2_V2_HEADER_LEN 72
#define QCOW2_V3_HEADER_LEN 104

#define QCOW2_INCOMPAT_DIRTY (UINT64_C(1) << 0)
#define QCOW2_INCOMPAT_CORRUPT (UINT64_C(1) << 1)
#define QCOW2_INCOMPAT_DATA_FILE (UINT64_C(1) << 2)
#define QCOW2_INCOMPAT_COMPRESSION (UINT64_C(1) << 3)
#define QCOW2_INCOMPAT_EXTL2 (UINT64_C(1) << 4)
#define QCOW2_COMPAT_LAZY_REFCOUNTS (UINT64_C(1) << 0)

#define QCOW2_EXT_END 0x00000000u
#define QCOW2_EXT_BACKING_FORMAT 0xe2792acau
#define QCOW2_EXT_FEATURE_TABLE 0x6803f857u
#define QCOW2_EXT_BITMAPS 0x23852875u
#define QCOW2_EXT_CRYPTO 0x0537be77u
#define QCOW2_EXT_DATA_FILE 0x44415441u

#define QCOW2_OFLAG_COPIED (UINT64_C(1) << 63)
#define QCOW2_OFLAG_COMPRESSED (UINT64_C(1) << 62)
#define QCOW2_OFLAG_ZERO (UINT64_C(1) << 0)
#define QCOW2_OFFSET_MASK UINT64_C(0x00fffffffffffe00) /* bits 9-55 */
#define QCOW2_L1_RESERVED UINT64_C(0x7f000000000001ff)
#define QCOW2_L2_RESERVED UINT64_C(0x3f000000000001fe) /* standard descriptors */
#define QCOW2_RT_RESERVED UINT64_C(0x00000000000001ff)

/* Implementation limits (the same as QEMU's, so every image QEMU opens we can open). */
#define QCOW2_MIN_CLUSTER_BITS 9
#define QCOW2_MAX_CLUSTER_BITS 21
#define QCOW2_MAX_L1_BYTES (32u << 20)
#define QCOW2_MAX_RT_BYTES (8u << 20)
#define QCOW2_MAX_BACKING_NAME 1023
#define QCOW2_MAX_SNAPSHOTS 65536

#define QCOW2_L2_CACHE_BYTES (8u << 20)
#define QCOW2_RB_CACHE_SLOTS 16
/* Clusters whose refcounts are raised ahead of use in one go, so that one fdatasync orders the
 * refcount updates of many allocations before the L2 entries that point to them. */
#define QCOW2_RESERVE_CLUSTERS 64
#define QCOW2_RESERVE_MAX 1024 /* what a crash may leak at most */

typedef struct qcow2_cache_slot {
  uint64_t offset; /* host offset of the cached table; 0 = empty */
  uint64_t *data;  /* one cluster, big-endian as on disk */
  bool dirty;      /* L2 tables only: entries changed here and not yet written to the file */
} qcow2_cache_slot;

/* Set of host cluster indexes that hold metadata (header, L1, refcount table and blocks, L2
 * tables, snapshot table): guest data is never read from or written to these. */
typedef struct qcow2_meta_set {
  uint64_t *slots; /* open addressing; value+1 stored so 0 means empty */
  size_t cap, count;
} qcow2_meta_set;

typedef struct qcow2_free_range {
  uint64_t offset, len; /* host byte range whose clusters lose one reference at the next flush */
} qcow2_free_range;

typedef struct qcow2 {
  vm_disk *disk;
  disk_file *file;
  /* header */
  unsigned version;
  unsigned cluster_bits;
  uint64_t cluster_size;
  uint32_t header_length;
  uint64_t incompat, compat, autoclear;
  uint8_t compression_type; /* 0 zlib, 1 zstd */
  uint32_t nb_snapshots;
  uint64_t snapshots_offset;
  char *backing_name, *backing_format;
  vm_disk *backing;
  int backing_depth;
  uint64_t size; /* virtual disk size */
  /* mapping */
  uint64_t l2_entries;
  uint32_t l1_size;
  uint64_t l1_offset;
  uint64_t *l1; /* host-endian copy */
  qcow2_cache_slot *l2_cache;
  size_t l2_slots;
  /* refcounts */
  unsigned refcount_order, refcount_bits;
  uint64_t refcount_max;
  uint64_t rb_entries; /* entries per refcount block */
  uint64_t rt_offset;
  uint32_t rt_clusters;
  uint64_t rt_entries;
  uint64_t *rt; /* host-endian copy */
  qcow2_cache_slot rb_cache[QCOW2_RB_CACHE_SLOTS];
  qcow2_meta_set meta;
  /* allocation */
  uint64_t file_clusters; /* clusters up to the end of the file or of any allocation */
  uint64_t free_hint;     /* no free cluster below this index */
  uint64_t reserve_next;  /* reserved clusters [reserve_next, reserve_next+reserve_count) */
  uint64_t reserve_count;
  uint64_t reserve_size;   /* size of the next reserve */
  bool refcounts_unsynced; /* refcount raises or fresh-cluster data not yet ordered by an
                            * fdatasync before the L2 tables that point to them */
  qcow2_free_range *pending_free;
  size_t n_pending_free, cap_pending_free;
  /* scratch */
  uint8_t *cluster_buf; /* one cluster for copy-on-write */
  uint8_t *zero_buf;    /* one cluster of zeros (allocated on first use) */
  uint8_t *comp_out;    /* last decompressed cluster */
  uint64_t comp_entry;  /* L2 entry of comp_out, 0 = none */
  uint8_t *comp_in;     /* compressed input */
  size_t comp_in_cap;
} qcow2;

static inline uint64_t qcow2_be64(const void *p) {
  uint64_t v;
  __builtin_memcpy(&v, p, 8);
  return be64toh(v);
}
static inline uint32_t qcow2_be32(const void *p) {
  uint32_t v;
  __builtin_memcpy(&v, p, 4);
  return be32toh(v);
}
static inline void qcow2_put_be64(void *p, uint64_t v) {
  v = htobe64(v);
  __builtin_memcpy(p, &v, 8);
}
static inline void qcow2_put_be32(void *p, uint32_t v) {
  v = htobe32(v);
  __builtin_memcpy(p, &v, 4);
}
static inline void qcow2_put_be16(void *p, uint16_t v) {
  v = htobe16(v);
  __builtin_memcpy(p, &v, 2);
}

/* meta set */
void qcow2_meta_free(qcow2_meta_set *s);
/* Returns false if the cluster was already in the set. */
bool qcow2_meta_add(qcow2_meta_set *s, uint64_t cluster);
bool qcow2_meta_has(const qcow2_meta_set *s, uint64_t cluster);
void qcow2_meta_remove(qcow2_meta_set *s, uint64_t cluster);

/* refcounts (qcow2_refcount.c) */
int qcow2_refcount_load(qcow2 *q, uint64_t file_size, vs_error **err);
void qcow2_refcount_free(qcow2 *q);
/* Set entry i of a refcount block; returns the byte range that changed. */
void qcow2_rb_entry_set(const qcow2 *q, uint8_t *blk, uint64_t i, uint64_t v, size_t *boff,
                        size_t *blen);
int qcow2_refcount_get(qcow2 *q, uint64_t cluster, uint64_t *rc, vs_error **err);
/* Allocate one cluster (refcount 1); returns its host offset. */
int qcow2_alloc_cluster(qcow2 *q, uint64_t *offset, vs_error **err);
/* Before an L1 entry or L2 table that points to fresh clusters is written: order their refcount
 * updates and data before it (fdatasync), so a power loss can leak clusters but never lose a
 * reference. */
int qcow2_order_refcounts(qcow2 *q, vs_error **err);
/* Drop one reference to each cluster of [offset, offset+len) at the next flush, after the
 * metadata that stopped using them is on disk. */
void qcow2_free_later(qcow2 *q, uint64_t offset, uint64_t len);
/* Give the clusters reserved ahead back (at the next flush). */
void qcow2_release_reserve(qcow2 *q);
/* fdatasync, then apply the deferred frees and give back the unused reserve. */
int qcow2_refcount_flush(qcow2 *q, vs_error **err);

/* A header field update (host-endian value of `size` bytes at byte `off` of the header). */
int qcow2_write_header_field(qcow2 *q, unsigned off, uint64_t value, unsigned size, vs_error **err);

#endif
