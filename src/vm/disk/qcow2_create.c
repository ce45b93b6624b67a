/* Creating qcow2 images: header (+ backing file name and format), refcount table and blocks,
 * an empty L1 table. Layout: cluster 0 header, then the refcount table, the refcount blocks
 * that describe these first clusters, and the L1 table. */
#include "vm/disk/qcow2.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <string.h>

static uint64_t div_up(uint64_t a, uint64_t b) { return a / b + (a % b != 0); }

/* Size and format of the backing file, opened the way the new image will open it. */
static int probe_backing(const char *image_path, const vm_disk_create_opts *opts, uint64_t *size,
                         vm_disk_format *fmt, vs_error **err) {
  _cleanup_free_ char *path = NULL;
  if (opts->backing_file[0] == '/') {
    path = vs_strdup(opts->backing_file);
  } else {
    _cleanup_free_ char *copy = vs_strdup(image_path);
    path = vs_asprintf("%s/%s", dirname(copy), opts->backing_file);
  }
  vm_disk_opts o = {.format = opts->backing_format, .readonly = true};
  _cleanup_disk_ vm_disk *b = NULL;
  if (vm_disk_open(path, &o, &b, err) < 0)
    return vs_error_wrap(err, "backing file");
  *size = vm_disk_size(b);
  vm_disk_info info;
  vm_disk_get_info(b, &info);
  vm_disk_format_parse(info.format, fmt);
  return 0;
}

static size_t put_extension(uint8_t *hdr, size_t off, uint32_t type, const void *data,
                            uint32_t len) {
  qcow2_put_be32(hdr + off, type);
  qcow2_put_be32(hdr + off + 4, len);
  memcpy(hdr + off + 8, data, len);
  return off + 8 + ((len + 7u) & ~7u);
}

int disk_qcow2_create(const char *path, const vm_disk_create_opts *opts, vs_error **err) {
  uint64_t cs = opts->cluster_size ? opts->cluster_size : 65536;
  unsigned version = opts->qcow2_version ? opts->qcow2_version : 3;
  unsigned refcount_bits = opts->refcount_bits ? opts->refcount_bits : 16;
  if (cs < 512 || cs > (2u << 20) || (cs & (cs - 1)))
    return vs_error_set(err, EINVAL,
                        "cluster size %" PRIu64 " must be a power of two between "
                        "512 and 2M",
                        cs);
  if (version != 2 && version != 3)
    return vs_error_set(err, EINVAL, "qcow2 version must be 2 (compat=0.10) or 3 (compat=1.1)");
  if (refcount_bits > 64 || (refcount_bits & (refcount_bits - 1)) ||
      (version == 2 && refcount_bits != 16))
    return vs_error_set(err, EINVAL,
                        "refcount bits %u: must be a power of two up to 64 (16 "
                        "for version 2)",
                        refcount_bits);
  if (opts->backing_file && strlen(opts->backing_file) > QCOW2_MAX_BACKING_NAME)
    return vs_error_set(err, EINVAL, "backing file name longer than %d bytes",
                        QCOW2_MAX_BACKING_NAME);

  uint64_t size = opts->size;
  vm_disk_format bfmt = opts->backing_format;
  if (opts->backing_file &&
      probe_backing(path, opts, size ? &(uint64_t){0} : &size, &bfmt, err) < 0)
    return -1;
  size = (size + 511) & ~511ull;
  unsigned cluster_bits = (unsigned)__builtin_ctzll(cs);
  uint64_t l2_entries = cs / 8;
  uint64_t l1_size = div_up(size, cs * l2_entries);
  if (l1_size == 0)
    l1_size = 1;
  if (size > (uint64_t)INT64_MAX || l1_size * 8 > QCOW2_MAX_L1_BYTES)
    return vs_error_set(
        err, EFBIG, "disk size %" PRIu64 " is too large for %" PRIu64 "-byte clusters", size, cs);

  /* Clusters: header, refcount table (rt), refcount blocks (rb), L1 table (l1c). */
  uint64_t E = cs * 8 / refcount_bits;
  uint64_t l1c = div_up(l1_size * 8, cs), rt = 1, rb = 1, total;
  for (;;) {
    total = 1 + rt + rb + l1c;
    uint64_t nrb = div_up(total, E), nrt = div_up(nrb * 8, cs);
    if (nrb == rb && nrt == rt)
      break;
    rb = nrb > rb ? nrb : rb;
    rt = nrt > rt ? nrt : rt;
  }
  uint64_t rt_off = cs, rb_off = (1 + rt) * cs, l1_off = (1 + rt + rb) * cs;

  _cleanup_free_ uint8_t *hdr = vs_malloc0(cs);
  qcow2_put_be32(hdr, QCOW2_MAGIC);
  qcow2_put_be32(hdr + 4, version);
  qcow2_put_be32(hdr + 20, cluster_bits);
  qcow2_put_be64(hdr + 24, size);
  qcow2_put_be32(hdr + 36, (uint32_t)l1_size);
  qcow2_put_be64(hdr + 40, l1_off);
  qcow2_put_be64(hdr + 48, rt_off);
  qcow2_put_be32(hdr + 56, (uint32_t)rt);
  size_t off = QCOW2_V2_HEADER_LEN;
  if (version == 3) {
    qcow2_put_be32(hdr + 96, (uint32_t)__builtin_ctz(refcount_bits));
    qcow2_put_be32(hdr + 100, 112); /* up to and including compression_type, padded */
    off = 112;
  }
  if (opts->backing_file && bfmt != VM_DISK_FORMAT_AUTO) {
    const char *name = vm_disk_format_name(bfmt);
    off = put_extension(hdr, off, QCOW2_EXT_BACKING_FORMAT, name, (uint32_t)strlen(name));
  }
  if (version == 3) {
    static const struct {
      uint8_t type, bit;
      const char *name;
    } features[] = {
        {0, 0, "dirty bit"},        {0, 1, "corrupt bit"},         {0, 2, "external data file"},
        {0, 3, "compression type"}, {0, 4, "extended L2 entries"}, {1, 0, "lazy refcounts"},
        {2, 0, "bitmaps"},          {2, 1, "raw external data"}};
    uint8_t table[ARRAY_SIZE(features) * 48] = {0};
    for (size_t i = 0; i < ARRAY_SIZE(features); i++) {
      table[i * 48] = features[i].type;
      table[i * 48 + 1] = features[i].bit;
      memcpy(table + i * 48 + 2, features[i].name, strlen(features[i].name));
    }
    if (off + 8 + sizeof(table) + 8 + (opts->backing_file ? strlen(opts->backing_file) : 0) <= cs)
      off = put_extension(hdr, off, QCOW2_EXT_FEATURE_TABLE, table, sizeof(table));
  }
  off += 8; /* end of extensions (zeroed) */
  if (opts->backing_file) {
    size_t len = strlen(opts->backing_file);
    if (off + len > cs)
      return vs_error_set(
          err, EINVAL, "backing file name does not fit in a %" PRIu64 "-byte header cluster", cs);
    memcpy(hdr + off, opts->backing_file, len);
    qcow2_put_be64(hdr + 8, off);
    qcow2_put_be32(hdr + 16, (uint32_t)len);
  }

  _cleanup_free_ uint8_t *meta = vs_malloc0((rt + rb) * cs);
  for (uint64_t i = 0; i < rb; i++)
    qcow2_put_be64(meta + i * 8, rb_off + i * cs);
  qcow2 q = {.refcount_order = (unsigned)__builtin_ctz(refcount_bits),
             .refcount_bits = refcount_bits};
  for (uint64_t c = 0; c < total; c++) {
    size_t bo, bl;
    qcow2_rb_entry_set(&q, meta + rt * cs + (c / E) * cs, c % E, 1, &bo, &bl);
  }

  _cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0)
    return vs_error_set(err, errno, "create %s", path);
  disk_file f = {.fd = fd, .path = (char *)path};
  if (disk_file_write(&f, hdr, cs, 0, err) < 0 ||
      disk_file_write(&f, meta, (rt + rb) * cs, rt_off, err) < 0)
    goto fail;
  if (ftruncate(fd, (off_t)(total * cs)) < 0) {
    vs_error_set(err, errno, "resize %s", path);
    goto fail;
  }
  if (fsync(fd) < 0) {
    vs_error_set(err, errno, "fsync %s", path);
    goto fail;
  }
  return 0;
fail:
  unlink(path);
  return -1;
}
