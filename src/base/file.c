/* Safe file helpers: bounded reads, atomic writes, mkdir -p, rm -rf without following links. */
#include "base.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <string.h>
#include <sys/stat.h>

int vs_write_all(int fd, const void *buf, size_t len, vs_error **err) {
  const char *p = buf;
  while (len > 0) {
    ssize_t w = write(fd, p, len);
    if (w < 0 && errno == EINTR)
      continue;
    if (w < 0)
      return vs_error_set(err, errno, "write");
    if (w == 0)
      return vs_error_set(err, EIO, "write made no progress");
    p += w;
    len -= (size_t)w;
  }
  return 0;
}

static int read_fd_bounded(int fd, const char *path, size_t max_len, char **out, size_t *len,
                           vs_error **err) {
  struct stat st;
  if (fstat(fd, &st) < 0)
    return vs_error_set(err, errno, "stat %s", path);
  if (S_ISDIR(st.st_mode))
    return vs_error_set(err, EISDIR, "read %s", path);
  if (S_ISREG(st.st_mode) && (uintmax_t)st.st_size > max_len)
    return vs_error_set(err, EFBIG,
                        "read %s: file is %jd bytes, larger than the limit of %zu bytes", path,
                        (intmax_t)st.st_size, max_len);

  /* The size from fstat is only a hint (files can grow, /proc files report 0): read until EOF
   * and enforce the limit on what actually arrives. */
  size_t cap = S_ISREG(st.st_mode) && st.st_size > 0 ? (size_t)st.st_size + 1 : 4096;
  if (cap > max_len + 1)
    cap = max_len + 1;
  _cleanup_free_ char *buf = vs_malloc0(cap + 1);
  size_t n = 0;
  for (;;) {
    if (n == cap) {
      if (cap > max_len)
        return vs_error_set(err, EFBIG, "read %s: file is larger than the limit of %zu bytes", path,
                            max_len);
      cap = cap * 2 > max_len + 1 ? max_len + 1 : cap * 2;
      buf = vs_realloc(buf, cap + 1);
    }
    ssize_t r = read(fd, buf + n, cap - n);
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0)
      return vs_error_set(err, errno, "read %s", path);
    if (r == 0)
      break;
    n += (size_t)r;
  }
  if (n > max_len)
    return vs_error_set(err, EFBIG, "read %s: file is larger than the limit of %zu bytes", path,
                        max_len);
  buf[n] = '\0';
  if (len)
    *len = n;
  *out = steal_pointer(&buf);
  return 0;
}

int vs_read_file(const char *path, size_t max_len, char **out, size_t *len, vs_error **err) {
  /* O_NONBLOCK so that a FIFO planted where a file was expected cannot block us in open() */
  _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (fd < 0)
    return vs_error_set(err, errno, "open %s", path);
  struct stat st;
  if (fstat(fd, &st) < 0)
    return vs_error_set(err, errno, "stat %s", path);
  if (S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode))
    return vs_error_set(err, EINVAL, "read %s: not a regular file (a FIFO or socket)", path);
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0)
    return vs_error_set(err, errno, "fcntl %s", path);
  return read_fd_bounded(fd, path, max_len, out, len, err);
}

static int fsync_parent_dir(const char *path, vs_error **err) {
  _cleanup_free_ char *copy = vs_strdup(path);
  const char *dir = dirname(copy);
  _cleanup_close_ int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0)
    return vs_error_set(err, errno, "open directory %s", dir);
  if (fsync(dfd) < 0)
    return vs_error_set(err, errno, "fsync directory %s", dir);
  return 0;
}

int vs_write_file(const char *path, const void *data, size_t len, mode_t mode, vs_error **err) {
  _cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
  if (fd < 0)
    return vs_error_set(err, errno, "create %s", path);
  if (vs_write_all(fd, data, len, err) < 0)
    return vs_error_wrap(err, "write %s", path);
  if (close(steal_fd(&fd)) < 0)
    return vs_error_set(err, errno, "close %s", path);
  return 0;
}

int vs_write_file_atomic(const char *path, const void *data, size_t len, mode_t mode,
                         vs_error **err) {
  _cleanup_free_ char *tmp = vs_asprintf("%s.tmp.XXXXXX", path);
  _cleanup_close_ int fd = mkostemp(tmp, O_CLOEXEC);
  if (fd < 0)
    return vs_error_set(err, errno, "create temporary file for %s", path);
  /* mkostemp creates 0600; set the wanted mode on the fd (umask does not apply here). */
  if (fchmod(fd, mode) < 0) {
    vs_error_set(err, errno, "chmod %s", tmp);
    goto fail;
  }
  if (vs_write_all(fd, data, len, err) < 0) {
    vs_error_wrap(err, "write %s", tmp);
    goto fail;
  }
  if (fsync(fd) < 0) {
    vs_error_set(err, errno, "fsync %s", tmp);
    goto fail;
  }
  if (close(steal_fd(&fd)) < 0) {
    vs_error_set(err, errno, "close %s", tmp);
    goto fail;
  }
  if (rename(tmp, path) < 0) {
    vs_error_set(err, errno, "rename %s to %s", tmp, path);
    goto fail;
  }
  return fsync_parent_dir(path, err);

fail:
  unlink(tmp);
  return -1;
}

static int mkdir_one(const char *path, mode_t mode, vs_error **err) {
  if (mkdir(path, mode) == 0)
    return 0;
  int e = errno;
  struct stat st;
  if (e == EEXIST && stat(path, &st) == 0) {
    if (S_ISDIR(st.st_mode))
      return 0;
    return vs_error_set(err, ENOTDIR, "mkdir %s", path);
  }
  return vs_error_set(err, e, "mkdir %s", path);
}

int vs_mkdir_p(const char *path, mode_t mode, vs_error **err) {
  if (!*path)
    return vs_error_set(err, ENOENT, "mkdir: empty path");
  _cleanup_free_ char *p = vs_strdup(path);
  for (char *s = p + 1; *s; s++) {
    if (*s != '/' || s[-1] == '/')
      continue;
    *s = '\0';
    int r = mkdir_one(p, mode, err);
    *s = '/';
    if (r < 0)
      return -1;
  }
  return mkdir_one(p, mode, err);
}

/* Is dirfd/name the root of a mount? rm -rf must never descend into one: a bind mount left in
 * a container's rootfs would otherwise have its (host) contents deleted. */
static bool is_mount_root(int dirfd, const char *name, dev_t parent_dev) {
  struct statx stx;
  if (statx(dirfd, name, AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT, STATX_TYPE, &stx) == 0 &&
      (stx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT))
    return (stx.stx_attributes & STATX_ATTR_MOUNT_ROOT) != 0;
  struct stat st; /* kernels before 5.8: a different device is certainly another mount */
  return fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && st.st_dev != parent_dev;
}

/* Remove everything inside the directory dfd (which this function closes). */
static int rm_dir_contents(int dfd, const char *path, vs_error **err) {
  DIR *d = fdopendir(dfd);
  if (!d) {
    int e = errno;
    close(dfd);
    return vs_error_set(err, e, "opendir %s", path);
  }
  struct stat parent;
  if (fstat(dirfd(d), &parent) < 0) {
    int e = errno;
    closedir(d);
    return vs_error_set(err, e, "stat %s", path);
  }
  int rc = 0;
  for (;;) {
    errno = 0;
    struct dirent *de = readdir(d);
    if (!de) {
      if (errno)
        rc = vs_error_set(err, errno, "readdir %s", path);
      break;
    }
    if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
      continue;
    struct stat st;
    if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
      if (errno == ENOENT)
        continue;
      rc = vs_error_set(err, errno, "stat %s/%s", path, de->d_name);
      break;
    }
    if (!S_ISDIR(st.st_mode)) {
      if (unlinkat(dirfd(d), de->d_name, 0) < 0 && errno != ENOENT) {
        rc = vs_error_set(err, errno, "unlink %s/%s", path, de->d_name);
        break;
      }
      continue;
    }
    _cleanup_free_ char *sub = vs_asprintf("%s/%s", path, de->d_name);
    if (is_mount_root(dirfd(d), de->d_name, parent.st_dev)) {
      rc = vs_error_set(err, EBUSY, "remove %s: a filesystem is mounted there; unmount it first",
                        sub);
      break;
    }
    int sfd = openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (sfd < 0 && errno == EACCES) {
      /* An unreadable directory: make it ours to read (it is a directory, checked above). */
      if (fchmodat(dirfd(d), de->d_name, (st.st_mode & 07777) | S_IRWXU, 0) == 0)
        sfd = openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    }
    if (sfd < 0) {
      rc = vs_error_set(err, errno, "open %s", sub);
      break;
    }
    if ((st.st_mode & S_IRWXU) != S_IRWXU && fchmod(sfd, (st.st_mode & 07777) | S_IRWXU) < 0) {
      rc = vs_error_set(err, errno, "chmod %s", sub);
      close(sfd);
      break;
    }
    if (rm_dir_contents(sfd, sub, err) < 0) {
      rc = -1;
      break;
    }
    if (unlinkat(dirfd(d), de->d_name, AT_REMOVEDIR) < 0 && errno != ENOENT) {
      rc = vs_error_set(err, errno, "rmdir %s", sub);
      break;
    }
  }
  closedir(d);
  return rc;
}

int vs_rm_rf_at(int dirfd, const char *name, vs_error **err) {
  if (!*name || strchr(name, '/') || !strcmp(name, ".") || !strcmp(name, ".."))
    return vs_error_set(err, EINVAL, "rm -rf: \"%s\" is not one entry of a directory", name);
  struct stat parent;
  if (fstat(dirfd, &parent) < 0)
    return vs_error_set(err, errno, "stat the directory of %s", name);
  if (unlinkat(dirfd, name, 0) == 0 || errno == ENOENT)
    return 0;
  if (errno != EISDIR)
    return vs_error_set(err, errno, "unlink %s", name);
  if (is_mount_root(dirfd, name, parent.st_dev))
    return vs_error_set(err, EBUSY, "remove %s: a filesystem is mounted there", name);
  int dfd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (dfd < 0)
    return vs_error_set(err, errno, "open %s", name);
  if (rm_dir_contents(dfd, name, err) < 0)
    return -1;
  if (unlinkat(dirfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
    return vs_error_set(err, errno, "rmdir %s", name);
  return 0;
}

int vs_rm_rf(const char *path, vs_error **err) {
  if (!*path)
    return vs_error_set(err, EINVAL, "rm -rf: empty path");
  struct stat st, root;
  if (lstat(path, &st) < 0) {
    if (errno == ENOENT)
      return 0;
    return vs_error_set(err, errno, "stat %s", path);
  }
  if (!S_ISDIR(st.st_mode)) {
    if (unlink(path) < 0 && errno != ENOENT)
      return vs_error_set(err, errno, "unlink %s", path);
    return 0;
  }
  if (stat("/", &root) == 0 && root.st_dev == st.st_dev && root.st_ino == st.st_ino)
    return vs_error_set(err, EPERM, "rm -rf %s: refusing to remove the root directory", path);
  int dfd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (dfd < 0 && errno == EACCES && chmod(path, (st.st_mode & 07777) | S_IRWXU) == 0)
    dfd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (dfd < 0)
    return vs_error_set(err, errno, "open %s", path);
  if ((st.st_mode & S_IRWXU) != S_IRWXU && fchmod(dfd, (st.st_mode & 07777) | S_IRWXU) < 0) {
    int e = errno;
    close(dfd);
    return vs_error_set(err, e, "chmod %s", path);
  }
  if (rm_dir_contents(dfd, path, err) < 0)
    return -1;
  if (rmdir(path) < 0 && errno != ENOENT)
    return vs_error_set(err, errno, "rmdir %s", path);
  return 0;
}
