/* Raw images: the virtual disk is the file, byte for byte. */
#include "vm/disk/disk_int.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>

static int raw_read(vm_disk *d, void *buf, uint64_t off, size_t len, vs_error **err) {
  /* The file may have shrunk under us; what is missing reads as zeros. */
  return disk_file_read_zfill(&d->file, buf, len, off, err);
}

static int raw_write(vm_disk *d, const void *buf, uint64_t off, size_t len, vs_error **err) {
  return disk_file_write(&d->file, buf, len, off, err);
}

static int raw_readv(vm_disk *d, const struct iovec *iov, int iovcnt, uint64_t off,
                     vs_error **err) {
  return disk_file_readv(&d->file, iov, iovcnt, off, err);
}

static int raw_writev(vm_disk *d, const struct iovec *iov, int iovcnt, uint64_t off,
                      vs_error **err) {
  return disk_file_writev(&d->file, iov, iovcnt, off, err);
}

static int raw_flush(vm_disk *d, vs_error **err) { return disk_file_sync(&d->file, err); }

static int raw_discard(vm_disk *d, uint64_t off, uint64_t len, vs_error **err) {
  /* Discard is advisory: a file system without hole punching keeps the data. */
  return disk_file_punch_hole(&d->file, off, len, err) < 0 ? -1 : 0;
}

static int raw_write_zeroes(vm_disk *d, uint64_t off, uint64_t len, vs_error **err) {
  return disk_file_zero_range(&d->file, off, len, err);
}

static int raw_close(vm_disk *d, vs_error **err) { return d->readonly ? 0 : raw_flush(d, err); }

static const disk_ops raw_ops = {
    .name = "raw",
    .read = raw_read,
    .write = raw_write,
    .readv = raw_readv,
    .writev = raw_writev,
    .flush = raw_flush,
    .discard = raw_discard,
    .write_zeroes = raw_write_zeroes,
    .close = raw_close,
};

int disk_raw_open(vm_disk *d, vs_error **err) {
  if (disk_file_size(&d->file, &d->size, err) < 0)
    return -1;
  d->ops = &raw_ops;
  return 0;
}

int disk_raw_create(const char *path, const vm_disk_create_opts *opts, vs_error **err) {
  _cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0)
    return vs_error_set(err, errno, "create %s", path);
  if (opts->size > (uint64_t)INT64_MAX || ftruncate(fd, (off_t)opts->size) < 0) {
    int e = opts->size > (uint64_t)INT64_MAX ? EFBIG : errno;
    unlink(path);
    return vs_error_set(err, e, "resize %s to %" PRIu64 " bytes", path, opts->size);
  }
  return 0;
}
