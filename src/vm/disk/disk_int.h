/* Private to src/vm/disk: the image file layer and the backend interface. */
#ifndef VESSEL_VM_DISK_INT_H
#define VESSEL_VM_DISK_INT_H

#include "vm/disk/disk.h"

#include <inttypes.h>
#include <pthread.h>
#include <sys/types.h>

/* ------------------------------------------------------------- image file */

/* One open image file. With O_DIRECT every transfer is done in DISK_DIRECT_ALIGN units through
 * a bounce buffer when the caller's buffer, offset or length is not aligned. */
#define DISK_DIRECT_ALIGN 4096
typedef struct disk_file {
  int fd;
  bool direct;
  bool readonly;
  char *path;
} disk_file;

int disk_file_open(disk_file *f, const char *path, bool readonly, bool direct, vs_error **err);
void disk_file_close(disk_file *f);
/* Current size of the file (or block device). */
int disk_file_size(disk_file *f, uint64_t *size, vs_error **err);
/* Read exactly len bytes; reaching end of file is an error. */
int disk_file_read(disk_file *f, void *buf, size_t len, uint64_t off, vs_error **err);
/* Read len bytes; the part beyond end of file reads as zeros. */
int disk_file_read_zfill(disk_file *f, void *buf, size_t len, uint64_t off, vs_error **err);
int disk_file_write(disk_file *f, const void *buf, size_t len, uint64_t off, vs_error **err);
/* Vectored transfers (one syscall for many guest buffers); reads past end of file give zeros. */
int disk_file_readv(disk_file *f, const struct iovec *iov, int iovcnt, uint64_t off,
                    vs_error **err);
int disk_file_writev(disk_file *f, const struct iovec *iov, int iovcnt, uint64_t off,
                     vs_error **err);
int disk_file_sync(disk_file *f, vs_error **err);
/* Deallocate a range (keeps the size); 0 if done, 1 if the file system cannot, -1 on error. */
int disk_file_punch_hole(disk_file *f, uint64_t off, uint64_t len, vs_error **err);
/* Make a range read as zeros, efficiently if the file system can; always succeeds or errors. */
int disk_file_zero_range(disk_file *f, uint64_t off, uint64_t len, vs_error **err);

/* ------------------------------------------------------------- backends */

typedef struct disk_open_ctx {
  int depth; /* 0 for the top image */
  dev_t dev[VM_DISK_MAX_CHAIN + 1];
  ino_t ino[VM_DISK_MAX_CHAIN + 1];
} disk_open_ctx;

typedef struct disk_ops {
  const char *name;
  /* Offsets and lengths are already checked against the disk size. */
  int (*read)(vm_disk *d, void *buf, uint64_t off, size_t len, vs_error **err);
  int (*write)(vm_disk *d, const void *buf, uint64_t off, size_t len, vs_error **err);
  /* Optional: scatter/gather in one go (else read/write per buffer). */
  int (*readv)(vm_disk *d, const struct iovec *iov, int iovcnt, uint64_t off, vs_error **err);
  int (*writev)(vm_disk *d, const struct iovec *iov, int iovcnt, uint64_t off, vs_error **err);
  int (*flush)(vm_disk *d, vs_error **err);
  int (*discard)(vm_disk *d, uint64_t off, uint64_t len, vs_error **err);
  int (*write_zeroes)(vm_disk *d, uint64_t off, uint64_t len, vs_error **err);
  void (*info)(vm_disk *d, vm_disk_info *info);
  int (*close)(vm_disk *d, vs_error **err); /* flushes; frees d->priv */
} disk_ops;

struct vm_disk {
  const disk_ops *ops;
  disk_file file;
  uint64_t size;
  bool readonly;
  pthread_mutex_t lock;
  void *priv; /* the backend's state */
};

int disk_raw_open(vm_disk *d, vs_error **err);
int disk_qcow2_open(vm_disk *d, const disk_open_ctx *ctx, vs_error **err);
/* Open a backing file (read-only) as part of the chain described by ctx. */
int disk_open_backing(const char *path, vm_disk_format fmt, const disk_open_ctx *ctx, vm_disk **out,
                      vs_error **err);

int disk_raw_create(const char *path, const vm_disk_create_opts *opts, vs_error **err);
int disk_qcow2_create(const char *path, const vm_disk_create_opts *opts, vs_error **err);

#endif
