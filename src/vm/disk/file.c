/* The image file layer: full reads and writes, O_DIRECT alignment, hole punching. */
#include "vm/disk/disk_int.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <limits.h>
#include <linux/fs.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>

int disk_file_open(disk_file *f, const char *path, bool readonly, bool direct, vs_error **err) {
  int flags = (readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC | (direct ? O_DIRECT : 0);
  f->fd = open(path, flags);
  if (f->fd < 0) {
    if (direct && errno == EINVAL)
      return vs_error_set(err, errno,
                          "open %s with O_DIRECT (cache=none): the file system "
                          "does not support direct I/O",
                          path);
    return vs_error_set(err, errno, "open %s", path);
  }
  struct stat st;
  if (fstat(f->fd, &st) < 0) {
    int e = errno;
    close(f->fd);
    f->fd = -1;
    return vs_error_set(err, e, "stat %s", path);
  }
  if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
    close(f->fd);
    f->fd = -1;
    return vs_error_set(err, 0, "%s is not a regular file or block device", path);
  }
  f->direct = direct;
  f->readonly = readonly;
  f->path = vs_strdup(path);
  return 0;
}

void disk_file_close(disk_file *f) {
  if (f->fd >= 0)
    close(f->fd);
  f->fd = -1;
  free(f->path);
  f->path = NULL;
}

int disk_file_size(disk_file *f, uint64_t *size, vs_error **err) {
  struct stat st;
  if (fstat(f->fd, &st) < 0)
    return vs_error_set(err, errno, "stat %s", f->path);
  if (S_ISBLK(st.st_mode)) {
    uint64_t bytes;
    if (ioctl(f->fd, BLKGETSIZE64, &bytes) < 0)
      return vs_error_set(err, errno, "%s: BLKGETSIZE64", f->path);
    *size = bytes;
    return 0;
  }
  *size = (uint64_t)st.st_size;
  return 0;
}

/* pread until len bytes or end of file; returns the number of bytes read. */
static ssize_t pread_all(int fd, void *buf, size_t len, uint64_t off) {
  size_t done = 0;
  while (done < len) {
    ssize_t n = pread(fd, (char *)buf + done, len - done, (off_t)(off + done));
    if (n < 0) {
      if (errno == EINTR)
        continue;
      return -1;
    }
    if (n == 0)
      break;
    done += (size_t)n;
  }
  return (ssize_t)done;
}

static int pwrite_all(int fd, const void *buf, size_t len, uint64_t off) {
  size_t done = 0;
  while (done < len) {
    ssize_t n = pwrite(fd, (const char *)buf + done, len - done, (off_t)(off + done));
    if (n < 0) {
      if (errno == EINTR)
        continue;
      return -1;
    }
    if (n == 0) {
      errno = ENOSPC;
      return -1;
    }
    done += (size_t)n;
  }
  return 0;
}

static bool is_aligned(const void *buf, size_t len, uint64_t off) {
  return (((uintptr_t)buf | len | off) & (DISK_DIRECT_ALIGN - 1)) == 0;
}

static bool offset_range_ok(uint64_t off, size_t len) {
  return off <= (uint64_t)INT64_MAX && len <= (uint64_t)INT64_MAX - off;
}

/* Returns bytes read (possibly short at end of file) or -1 with errno set. */
static ssize_t file_read_raw(disk_file *f, void *buf, size_t len, uint64_t off) {
  if (!f->direct || is_aligned(buf, len, off))
    return pread_all(f->fd, buf, len, off);
  uint64_t start = off & ~(uint64_t)(DISK_DIRECT_ALIGN - 1);
  uint64_t end = (off + len + DISK_DIRECT_ALIGN - 1) & ~(uint64_t)(DISK_DIRECT_ALIGN - 1);
  void *bounce;
  if (posix_memalign(&bounce, DISK_DIRECT_ALIGN, end - start) != 0)
    abort();
  ssize_t n = pread_all(f->fd, bounce, end - start, start);
  ssize_t r = -1;
  if (n >= 0) {
    uint64_t head = off - start;
    size_t got = (uint64_t)n > head ? (size_t)((uint64_t)n - head) : 0;
    if (got > len)
      got = len;
    memcpy(buf, (char *)bounce + head, got);
    r = (ssize_t)got;
  }
  int e = errno;
  free(bounce);
  errno = e;
  return r;
}

int disk_file_read(disk_file *f, void *buf, size_t len, uint64_t off, vs_error **err) {
  if (!offset_range_ok(off, len))
    return vs_error_set(err, EIO, "%s: read at offset %" PRIu64 " out of range", f->path, off);
  ssize_t n = file_read_raw(f, buf, len, off);
  if (n < 0)
    return vs_error_set(err, errno, "read %s at offset %" PRIu64, f->path, off);
  if ((size_t)n < len)
    return vs_error_set(err, EIO,
                        "read %s: %zu bytes at offset %" PRIu64 " reach past the end "
                        "of the file",
                        f->path, len, off);
  return 0;
}

int disk_file_read_zfill(disk_file *f, void *buf, size_t len, uint64_t off, vs_error **err) {
  if (!offset_range_ok(off, len))
    return vs_error_set(err, EIO, "%s: read at offset %" PRIu64 " out of range", f->path, off);
  ssize_t n = file_read_raw(f, buf, len, off);
  if (n < 0)
    return vs_error_set(err, errno, "read %s at offset %" PRIu64, f->path, off);
  memset((char *)buf + n, 0, len - (size_t)n);
  return 0;
}

int disk_file_write(disk_file *f, const void *buf, size_t len, uint64_t off, vs_error **err) {
  if (f->readonly)
    return vs_error_set(err, EROFS, "write %s", f->path);
  if (!offset_range_ok(off, len))
    return vs_error_set(err, EIO, "%s: write at offset %" PRIu64 " out of range", f->path, off);
  if (!f->direct || is_aligned(buf, len, off)) {
    if (pwrite_all(f->fd, buf, len, off) < 0)
      return vs_error_set(err, errno, "write %s at offset %" PRIu64, f->path, off);
    return 0;
  }
  /* Read-modify-write of the aligned blocks around the range. */
  uint64_t start = off & ~(uint64_t)(DISK_DIRECT_ALIGN - 1);
  uint64_t end = (off + len + DISK_DIRECT_ALIGN - 1) & ~(uint64_t)(DISK_DIRECT_ALIGN - 1);
  _cleanup_free_ void *bounce = NULL;
  if (posix_memalign(&bounce, DISK_DIRECT_ALIGN, end - start) != 0)
    abort();
  ssize_t n = pread_all(f->fd, bounce, end - start, start);
  if (n < 0)
    return vs_error_set(err, errno, "read %s at offset %" PRIu64, f->path, start);
  memset((char *)bounce + n, 0, (end - start) - (size_t)n);
  memcpy((char *)bounce + (off - start), buf, len);
  if (pwrite_all(f->fd, bounce, end - start, start) < 0)
    return vs_error_set(err, errno, "write %s at offset %" PRIu64, f->path, start);
  return 0;
}

static bool iov_aligned(const struct iovec *iov, int iovcnt, uint64_t off) {
  if (off & (DISK_DIRECT_ALIGN - 1))
    return false;
  for (int i = 0; i < iovcnt; i++)
    if (!is_aligned(iov[i].iov_base, iov[i].iov_len, 0))
      return false;
  return true;
}

/* One buffer at a time: the O_DIRECT bounce path and the rest of a partial transfer. */
static int file_rw_each(disk_file *f, bool write, const struct iovec *iov, int iovcnt, size_t skip,
                        uint64_t off, vs_error **err) {
  for (int i = 0; i < iovcnt; i++) {
    if (skip >= iov[i].iov_len) {
      skip -= iov[i].iov_len;
      continue;
    }
    char *base = (char *)iov[i].iov_base + skip;
    size_t len = iov[i].iov_len - skip;
    skip = 0;
    int r = write ? disk_file_write(f, base, len, off, err)
                  : disk_file_read_zfill(f, base, len, off, err);
    if (r < 0)
      return -1;
    off += len;
  }
  return 0;
}

static int file_rwv(disk_file *f, bool write, const struct iovec *iov, int iovcnt, uint64_t off,
                    vs_error **err) {
  if (write && f->readonly)
    return vs_error_set(err, EROFS, "write %s", f->path);
  if ((f->direct && !iov_aligned(iov, iovcnt, off)) || iovcnt > IOV_MAX)
    return file_rw_each(f, write, iov, iovcnt, 0, off, err);
  size_t total = 0;
  for (int i = 0; i < iovcnt; i++)
    total += iov[i].iov_len;
  if (!offset_range_ok(off, total))
    return vs_error_set(err, EIO, "%s: transfer at offset %" PRIu64 " out of range", f->path, off);
  ssize_t n;
  do {
    n = write ? pwritev(f->fd, iov, iovcnt, (off_t)off) : preadv(f->fd, iov, iovcnt, (off_t)off);
  } while (n < 0 && errno == EINTR);
  if (n < 0)
    return vs_error_set(err, errno, "%s %s at offset %" PRIu64, write ? "write" : "read", f->path,
                        off);
  if ((size_t)n == total)
    return 0;
  /* Short transfer (end of file, signal): finish buffer by buffer. */
  return file_rw_each(f, write, iov, iovcnt, (size_t)n, off + (uint64_t)n, err);
}

int disk_file_readv(disk_file *f, const struct iovec *iov, int iovcnt, uint64_t off,
                    vs_error **err) {
  return file_rwv(f, false, iov, iovcnt, off, err);
}

int disk_file_writev(disk_file *f, const struct iovec *iov, int iovcnt, uint64_t off,
                     vs_error **err) {
  return file_rwv(f, true, iov, iovcnt, off, err);
}

int disk_file_sync(disk_file *f, vs_error **err) {
  if (f->readonly)
    return 0;
  if (fdatasync(f->fd) < 0)
    return vs_error_set(err, errno, "fdatasync %s", f->path);
  return 0;
}

int disk_file_punch_hole(disk_file *f, uint64_t off, uint64_t len, vs_error **err) {
  if (f->readonly)
    return vs_error_set(err, EROFS, "discard %s", f->path);
  if (fallocate(f->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len) == 0)
    return 0;
  if (errno == EOPNOTSUPP || errno == ENOSYS || errno == EINVAL)
    return 1;
  return vs_error_set(err, errno, "punch hole in %s at offset %" PRIu64, f->path, off);
}

int disk_file_zero_range(disk_file *f, uint64_t off, uint64_t len, vs_error **err) {
  if (f->readonly)
    return vs_error_set(err, EROFS, "write zeroes to %s", f->path);
  if (fallocate(f->fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len) == 0)
    return 0;
  if (fallocate(f->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len) == 0)
    return 0;
  /* Fall back to writing zeros, a bounded chunk at a time. */
  size_t chunk = len < (1u << 20) ? (size_t)len : (1u << 20);
  void *zeros;
  if (posix_memalign(&zeros, DISK_DIRECT_ALIGN, chunk ? chunk : 1) != 0)
    abort();
  memset(zeros, 0, chunk);
  int r = 0;
  while (len > 0 && r == 0) {
    size_t n = len < chunk ? (size_t)len : chunk;
    r = disk_file_write(f, zeros, n, off, err);
    off += n;
    len -= n;
  }
  free(zeros);
  return r;
}
