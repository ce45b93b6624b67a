/* Block backends of vessel-vmm: raw files and qcow2 images (internal to the vm module).
 *
 * A vm_disk is a byte-addressed virtual disk of vm_disk_size() bytes. Requests are checked
 * against the disk size; a failing request sets *err (errnum EIO for a corrupt image, EROFS for a
 * write to a read-only disk, ...) and leaves the disk usable. All calls on one disk are serialized
 * internally, so a device may issue them from a worker thread.
 *
 * Crash safety (qcow2): metadata is written in an order that leaves at most leaked clusters when
 * the process dies at any point; vm_disk_flush() makes all completed writes durable (fdatasync).
 * Writes that allocated clusters since the last flush may be lost in a crash (their L2 entries
 * are kept in memory until the flush, as QEMU does with cache=writeback).
 */
#ifndef VESSEL_VM_DISK_H
#define VESSEL_VM_DISK_H

#include "base/base.h"

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

typedef enum {
  VM_DISK_FORMAT_AUTO = 0, /* probe: qcow2 magic, otherwise raw */
  VM_DISK_FORMAT_RAW,
  VM_DISK_FORMAT_QCOW2,
} vm_disk_format;

typedef enum {
  VM_DISK_CACHE_WRITEBACK = 0, /* host page cache; durable after vm_disk_flush() */
  VM_DISK_CACHE_NONE,          /* O_DIRECT: bypass the host page cache */
} vm_disk_cache;

typedef struct vm_disk_opts {
  vm_disk_format format;
  bool readonly;
  vm_disk_cache cache;
} vm_disk_opts;

typedef struct vm_disk vm_disk;

/* What `vessel-vmm img info` shows. Strings point into the disk and live as long as it does. */
typedef struct vm_disk_info {
  const char *format;       /* "raw" or "qcow2" */
  uint64_t virtual_size;    /* bytes */
  uint64_t file_size;       /* bytes of the image file */
  uint64_t cluster_size;    /* qcow2 only, else 0 */
  unsigned qcow2_version;   /* 2 or 3; 0 for raw */
  unsigned refcount_bits;   /* qcow2 only */
  const char *compression;  /* qcow2: "zlib" or "zstd" */
  const char *backing_file; /* as written in the image, NULL if none */
  const char *backing_format;
  int backing_depth; /* number of images below this one */
  bool dirty, corrupt, lazy_refcounts;
} vm_disk_info;

/* Open PATH. opts may be NULL (auto format, read-write, writeback). qcow2 backing files are opened
 * read-only, relative names resolved against the image's directory; loops and chains deeper than
 * VM_DISK_MAX_CHAIN are refused. */
#define VM_DISK_MAX_CHAIN 32
int vm_disk_open(const char *path, const vm_disk_opts *opts, vm_disk **out, vs_error **err);

int vm_disk_read(vm_disk *d, void *buf, uint64_t offset, size_t len, vs_error **err);
int vm_disk_write(vm_disk *d, const void *buf, uint64_t offset, size_t len, vs_error **err);
/* Scatter/gather variants: the iovec describes len = sum(iov_len) bytes at offset. */
int vm_disk_readv(vm_disk *d, const struct iovec *iov, int iovcnt, uint64_t offset, vs_error **err);
int vm_disk_writev(vm_disk *d, const struct iovec *iov, int iovcnt, uint64_t offset,
                   vs_error **err);
/* Make every completed write durable (fdatasync of the image file). */
int vm_disk_flush(vm_disk *d, vs_error **err);
/* The range may read back as anything afterwards (zeros for raw and qcow2 here); advisory. */
int vm_disk_discard(vm_disk *d, uint64_t offset, uint64_t len, vs_error **err);
/* The range reads back as zeros afterwards. */
int vm_disk_write_zeroes(vm_disk *d, uint64_t offset, uint64_t len, vs_error **err);

uint64_t vm_disk_size(const vm_disk *d);
bool vm_disk_is_readonly(const vm_disk *d);
void vm_disk_get_info(vm_disk *d, vm_disk_info *info);

/* Flush and release. Returns -1 if the final flush failed; the disk is freed either way. */
int vm_disk_close(vm_disk *d, vs_error **err);
static inline void vm_disk_closep(vm_disk **d) {
  if (*d)
    vm_disk_close(*d, NULL);
}
#define _cleanup_disk_ _cleanup_(vm_disk_closep)

/* ------------------------------------------------------------- image creation */

typedef struct vm_disk_create_opts {
  vm_disk_format format;         /* RAW or QCOW2 */
  uint64_t size;                 /* bytes; 0 with a backing file = the backing file's size */
  const char *backing_file;      /* qcow2 only: stored as given */
  vm_disk_format backing_format; /* AUTO = probe the backing file */
  uint32_t cluster_size;         /* qcow2: 0 = 65536 */
  unsigned qcow2_version;        /* 0 = 3 */
  unsigned refcount_bits;        /* 0 = 16 */
} vm_disk_create_opts;

/* Create a new image at PATH (fails if it exists). */
int vm_disk_create(const char *path, const vm_disk_create_opts *opts, vs_error **err);

/* Parse a --disk argument: "PATH[,format=raw|qcow2][,readonly=on|off][,cache=writeback|none]
 * [,serial=ID]" (",," in PATH stands for a comma, as in QEMU). *path and *serial (NULL if not
 * given) are allocated; the caller frees them. */
int vm_disk_parse_spec(const char *spec, char **path, vm_disk_opts *opts, char **serial,
                       vs_error **err);

const char *vm_disk_format_name(vm_disk_format f);
/* "raw" / "qcow2" -> format; returns -1 for anything else. */
int vm_disk_format_parse(const char *name, vm_disk_format *out);

#endif
