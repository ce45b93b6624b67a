/* COPY's writing half: sources from the build context into the root file system of a step.
 *
 * The context side is read from paths that hold no symbolic link (vs_build_context_glob made
 * them so) with O_NOFOLLOW. The image side is untrusted too (an image may hold /etc -> /host):
 * every parent directory is created and opened with vs_mkdir_p_in_root/vs_openat_in_root, and
 * the last component is replaced through its parent's descriptor, never followed.
 */
#include "image/image.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The parent directory of path (created) in the root, and path's last component. */
static int open_parent(int rootfd, const char *path, char **base, vs_error **err) {
  _cleanup_free_ char *p = vs_strdup(path);
  char *slash = strrchr(p, '/');
  const char *dir = "/";
  if (slash) {
    *slash = 0;
    dir = *p ? p : "/";
    *base = vs_strdup(slash + 1);
  } else {
    *base = vs_strdup(p);
  }
  if (vs_mkdir_p_in_root(rootfd, dir, 0755, err) < 0)
    return -1;
  return vs_openat_in_root(rootfd, dir, O_PATH | O_DIRECTORY, 0, err);
}

/* Remove what stands at name unless it is a directory and a directory is wanted. */
static int clear_slot(int pfd, const char *name, bool want_dir, const char *path, vs_error **err) {
  struct stat st;
  if (fstatat(pfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
    return errno == ENOENT ? 0 : vs_error_set(err, errno, "stat %s", path);
  if (S_ISDIR(st.st_mode)) {
    if (want_dir)
      return 1;
    return vs_error_set(err, EISDIR, "cannot replace the directory %s with a file", path);
  }
  if (unlinkat(pfd, name, 0) < 0)
    return vs_error_set(err, errno, "remove %s", path);
  return 0;
}

/* In the kernel when it can (copy_file_range: no round trip of the bytes through user space;
 * the 100 MB file of bench/build), else through a buffer. */
static int copy_data(int in, int out, const char *path, vs_error **err) {
  for (bool copied = false;;) {
    ssize_t r = copy_file_range(in, NULL, out, NULL, 1U << 30, 0);
    if (r < 0 && errno == EINTR)
      continue;
    if (r == 0)
      return 0;
    if (r > 0) {
      copied = true;
      continue;
    }
    if (copied || (errno != EXDEV && errno != EINVAL && errno != ENOSYS && errno != EOPNOTSUPP))
      return vs_error_set(err, errno, "copy %s", path);
    break;
  }
  char buf[1 << 16];
  for (;;) {
    ssize_t r = read(in, buf, sizeof(buf));
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0)
      return vs_error_set(err, errno, "read %s", path);
    if (r == 0)
      return 0;
    if (vs_write_all(out, buf, (size_t)r, err) < 0)
      return vs_error_wrap(err, "write %s", path);
  }
}

static int copy_one(int srcfd, const char *src, int rootfd, const char *dst, const vs_copy_opts *o,
                    vs_error **err);

static int copy_dir_contents(int srcfd, const char *src, int rootfd, const char *dst,
                             const vs_copy_opts *o, vs_error **err) {
  int fd = openat(srcfd, src, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0)
    return vs_error_set(err, errno, "open %s in the build context", src);
  DIR *d = fdopendir(fd);
  if (!d) {
    close(fd);
    return vs_error_set(err, errno, "read %s in the build context", src);
  }
  int r = 0;
  struct dirent *de;
  while (r == 0 && (de = readdir(d))) {
    if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
      continue;
    _cleanup_free_ char *s =
        strcmp(src, ".") ? vs_asprintf("%s/%s", src, de->d_name) : vs_strdup(de->d_name);
    if (vs_dockerignore_match(o->ig, s))
      continue;
    _cleanup_free_ char *t = vs_asprintf("%s/%s", strcmp(dst, "/") ? dst : "", de->d_name);
    r = copy_one(srcfd, s, rootfd, t, o, err);
  }
  closedir(d);
  return r;
}

static int copy_one(int srcfd, const char *src, int rootfd, const char *dst, const vs_copy_opts *o,
                    vs_error **err) {
  struct stat st;
  if (fstatat(srcfd, src, &st, AT_SYMLINK_NOFOLLOW) < 0)
    return vs_error_set(err, errno, "stat %s in the build context", src);
  mode_t mode = o->mode >= 0 ? (mode_t)o->mode : (st.st_mode & 07777);
  if (S_ISDIR(st.st_mode)) {
    if (vs_mkdir_p_in_root(rootfd, dst, 0755, err) < 0)
      return -1;
    _cleanup_close_ int dfd = vs_openat_in_root(rootfd, dst, O_RDONLY | O_DIRECTORY, 0, err);
    if (dfd < 0 || fchown(dfd, o->uid, o->gid) < 0 || fchmod(dfd, mode) < 0)
      return dfd < 0 ? -1 : vs_error_set(err, errno, "set the owner and mode of %s", dst);
    if (copy_dir_contents(srcfd, src, rootfd, dst, o, err) < 0)
      return -1;
    struct timespec ts[2] = {st.st_atim, st.st_mtim};
    futimens(dfd, ts);
    return 0;
  }
  _cleanup_free_ char *base = NULL;
  _cleanup_close_ int pfd = open_parent(rootfd, dst, &base, err);
  if (pfd < 0 || clear_slot(pfd, base, false, dst, err) < 0)
    return -1;
  if (S_ISLNK(st.st_mode)) {
    char target[PATH_MAX];
    ssize_t tl = readlinkat(srcfd, src, target, sizeof(target) - 1);
    if (tl < 0)
      return vs_error_set(err, errno, "read the link %s in the build context", src);
    target[tl] = 0;
    if (symlinkat(target, pfd, base) < 0 ||
        fchownat(pfd, base, o->uid, o->gid, AT_SYMLINK_NOFOLLOW) < 0)
      return vs_error_set(err, errno, "create the link %s", dst);
    return 0;
  }
  if (!S_ISREG(st.st_mode))
    return vs_error_set(err, 0, "%s in the build context is not a file, directory or link", src);
  _cleanup_close_ int in = openat(srcfd, src, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (in < 0)
    return vs_error_set(err, errno, "open %s in the build context", src);
  /* pfd is O_PATH: a real directory descriptor creates the file */
  _cleanup_close_ int dirfd = openat(pfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dirfd < 0)
    return vs_error_set(err, errno, "open the directory of %s", dst);
  _cleanup_close_ int out =
      openat(dirfd, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (out < 0)
    return vs_error_set(err, errno, "create %s", dst);
  if (copy_data(in, out, dst, err) < 0)
    return -1;
  if (fchown(out, o->uid, o->gid) < 0 || fchmod(out, mode) < 0)
    return vs_error_set(err, errno, "set the owner and mode of %s", dst);
  struct timespec ts[2] = {st.st_atim, st.st_mtim};
  futimens(out, ts);
  return 0;
}

static bool is_dir_in_root(int rootfd, const char *path) {
  vs_error *e = NULL;
  int fd = vs_openat_in_root(rootfd, path, O_PATH | O_DIRECTORY, 0, &e);
  vs_error_free(e);
  if (fd < 0)
    return false;
  close(fd);
  return true;
}

int vs_build_copy(int srcfd, char *const *srcs, size_t n, bool as_dir, int rootfd, const char *dest,
                  const char *workdir, const vs_copy_opts *o, vs_error **err) {
  size_t dl = strlen(dest);
  bool dir_dest = as_dir || n > 1 || (dl && dest[dl - 1] == '/') || !strcmp(dest, ".");
  _cleanup_free_ char *joined =
      dest[0] == '/' ? vs_strdup(dest)
                     : vs_asprintf("%s/%s", workdir && *workdir ? workdir : "/", dest);
  _cleanup_free_ char *clean = vs_img_path_clean(joined, strlen(joined));
  _cleanup_free_ char *target = strcmp(clean, ".") ? vs_asprintf("/%s", clean) : vs_strdup("/");
  if ((n > 1 || as_dir) && !(dl && dest[dl - 1] == '/') && !is_dir_in_root(rootfd, target))
    return vs_error_set(err, 0,
                        "When using COPY with more than one source file, the destination must be a "
                        "directory and end with a /");
  dir_dest = dir_dest || is_dir_in_root(rootfd, target);
  for (size_t i = 0; i < n; i++) {
    struct stat st;
    if (fstatat(srcfd, srcs[i], &st, AT_SYMLINK_NOFOLLOW) < 0)
      return vs_error_set(err, errno, "stat %s in the build context", srcs[i]);
    int r;
    if (S_ISDIR(st.st_mode) && is_dir_in_root(rootfd, target)) {
      /* a directory's contents go into the destination; an existing one keeps its owner and
       * mode (COPY . / must not give / the context's mode) */
      r = copy_dir_contents(srcfd, srcs[i], rootfd, target, o, err);
    } else if (!S_ISDIR(st.st_mode) && dir_dest) {
      const char *slash = strrchr(srcs[i], '/');
      _cleanup_free_ char *t =
          vs_asprintf("%s/%s", strcmp(target, "/") ? target : "", slash ? slash + 1 : srcs[i]);
      r = copy_one(srcfd, srcs[i], rootfd, t, o, err);
    } else {
      /* a file to a file name, or a directory that becomes the destination */
      r = copy_one(srcfd, srcs[i], rootfd, target, o, err);
    }
    if (r < 0)
      return vs_error_wrap(err, "copy %s to %s", srcs[i], target);
  }
  return 0;
}
