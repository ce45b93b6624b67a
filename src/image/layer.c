/* Applying layer tars into a directory, safely.
 *
 * The compressed stream is decompressed by one libarchive reader in "raw" mode; a second reader
 * parses the tar from that stream, so the uncompressed bytes can be hashed on the way (the
 * diff_id) without a second pass. Every path is resolved with openat2(RESOLVE_IN_ROOT) against
 * the layer directory and the last component is always handled with *at() calls on the parent
 * fd without following symlinks, so nothing in the tar can make us write outside the layer. */
#include "image/image.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#define DEFAULT_MAX_BYTES (64ULL << 30)
#define DEFAULT_MAX_ENTRIES 4000000ULL
#define WHITEOUT_PREFIX ".wh."
#define OPAQUE_MARKER ".wh..wh..opq"

typedef struct dir_time {
  char *path;
  struct timespec ts[2];
} dir_time;

typedef struct applier {
  int rootfd;
  uint64_t max_bytes, max_entries, bytes, entries;
  bool allow_devices, plain, no_overwrite_dir_nondir, owner_root;
  struct archive *raw; /* decompressor */
  vs_hasher *hasher;   /* the diff_id; NULL when nobody wants it */
  vs_file_digests *file_digests;
  json_t *reuse; /* the paths this archive named, when unpacking over an earlier one */
  uint64_t raw_bytes;
  dir_time *dirs;
  size_t n_dirs, cap_dirs;
  vs_error *read_err;
} applier;

/* Layers stay on their directory's file system; plain archives may enter mounts (a volume in a
 * container) but never follow a symbolic link. */
static int openat2_in_root(const applier *a, const char *path, int flags) {
  struct open_how how = {
      .flags = (uint64_t)(flags | O_CLOEXEC),
      .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS |
                 (a->plain ? RESOLVE_NO_SYMLINKS : RESOLVE_NO_XDEV),
  };
  int rootfd = a->rootfd;
  long r;
  do
    r = syscall(SYS_openat2, rootfd, *path ? path : ".", &how, sizeof(how));
  while (r < 0 && errno == EAGAIN);
  return (int)r;
}

/* Normalise a tar path: strip leading "/" and "./", drop "." components; refuse "..". */
static int clean_path(const char *in, char **out, vs_error **err) {
  size_t n = strlen(in);
  if (n >= PATH_MAX)
    return vs_error_set(err, ENAMETOOLONG, "entry path too long");
  char *o = vs_malloc0(n + 1);
  size_t on = 0;
  const char *p = in;
  while (*p) {
    while (*p == '/')
      p++;
    const char *e = strchr(p, '/');
    size_t len = e ? (size_t)(e - p) : strlen(p);
    if (len == 0)
      break;
    if (len == 2 && p[0] == '.' && p[1] == '.') {
      free(o);
      return vs_error_set(err, 0, "entry \"%.200s\": \"..\" would leave the layer", in);
    }
    if (!(len == 1 && p[0] == '.')) {
      if (on)
        o[on++] = '/';
      memcpy(o + on, p, len);
      on += len;
    }
    p += len;
  }
  o[on] = 0;
  *out = o;
  return 0;
}

/* Open (creating as needed, mode 0755) the directory `path` inside the root. Over an earlier
 * archive (a->reuse) a file of that one may stand where this one wants a directory: it goes. */
static int ensure_dir(const applier *a, const char *path, vs_error **err) {
  int fd = openat2_in_root(a, path, O_RDONLY | O_DIRECTORY);
  bool stale = fd < 0 && errno == ENOTDIR && a->reuse;
  if (!stale && (fd >= 0 || errno != ENOENT)) {
    if (fd < 0 && errno == ELOOP && a->plain)
      return vs_error_set(err, ELOOP, "directory %.200s goes through a symbolic link", path);
    if (fd < 0)
      return vs_error_set(err, errno, "open directory %.200s", path);
    return fd;
  }
  _cleanup_free_ char *dup = vs_strdup(path);
  char *slash = strrchr(dup, '/');
  const char *base = dup;
  _cleanup_close_ int parent = -1;
  if (slash) {
    *slash = 0;
    base = slash + 1;
    parent = ensure_dir(a, dup, err);
  } else {
    parent = openat2_in_root(a, "", O_RDONLY | O_DIRECTORY);
  }
  if (parent < 0)
    return -1;
  struct stat st;
  if (stale && !json_object_get(a->reuse, path) &&
      fstatat(parent, base, &st, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISDIR(st.st_mode) &&
      unlinkat(parent, base, 0) < 0)
    return vs_error_set(err, errno, "remove %.200s", path);
  if (mkdirat(parent, base, 0755) < 0 && errno != EEXIST)
    return vs_error_set(err, errno, "mkdir %.200s", path);
  fd = openat2_in_root(a, path, O_RDONLY | O_DIRECTORY);
  if (fd < 0)
    return vs_error_set(err, errno, "open directory %.200s", path);
  return fd;
}

static void split_path(char *path, const char **dir, const char **base) {
  char *slash = strrchr(path, '/');
  if (slash) {
    *slash = 0;
    *dir = path;
    *base = slash + 1;
  } else {
    *dir = "";
    *base = path;
  }
}

/* Remove whatever is at parent/base unless both it and the new entry are directories. */
static int make_room(const applier *a, int parent, const char *base, bool new_is_dir,
                     vs_error **err) {
  struct stat st;
  if (fstatat(parent, base, &st, AT_SYMLINK_NOFOLLOW) < 0)
    return errno == ENOENT ? 0 : vs_error_set(err, errno, "stat");
  if (new_is_dir && S_ISDIR(st.st_mode))
    return 0;
  if (a->no_overwrite_dir_nondir && (new_is_dir || S_ISDIR(st.st_mode)))
    return vs_error_set(err, EEXIST, "cannot overwrite %s \"%.200s\" with %s",
                        new_is_dir ? "non-directory" : "directory", base,
                        new_is_dir ? "a directory" : "a non-directory");
  if (vs_rm_rf_at(parent, base, err) < 0)
    return vs_error_wrap(err, "remove existing entry");
  return 0;
}

static int apply_xattrs(struct archive_entry *ae, int fd, vs_error **err) {
  const char *name;
  const void *value;
  size_t size;
  archive_entry_xattr_reset(ae);
  while (archive_entry_xattr_next(ae, &name, &value, &size) == ARCHIVE_OK) {
    if (!name || !*name)
      continue;
    /* overlayfs' own xattrs would let a layer redirect lookups into other layers. */
    if (!strncmp(name, "trusted.overlay.", 16))
      continue;
    if (fsetxattr(fd, name, value, size, 0) < 0 && errno != ENOTSUP)
      return vs_error_set(err, errno, "set xattr %.100s", name);
  }
  return 0;
}

/* The file's data from the archive. With a->file_digests, digest receives the sha256 of the
 * data as it passed ("" when the file has holes: its data did not come in one run). A file of an
 * earlier archive being rewritten (over) keeps its blocks where the new data covers them; its
 * holes and its old tail are cut (freeing blocks costs a discard on this class of machine). */
static int write_file_data(applier *a, struct archive *ar, int fd, int64_t size, bool over,
                           char digest[VS_DIGEST_MAX], vs_error **err) {
  const void *block;
  size_t len;
  la_int64_t off;
  int64_t end = 0;
  vs_hasher *h = a->file_digests ? vs_hasher_new() : NULL;
  digest[0] = 0;
  for (;;) {
    int r = archive_read_data_block(ar, &block, &len, &off);
    if (r == ARCHIVE_EOF)
      break;
    if (r < ARCHIVE_WARN) {
      vs_hasher_free(h);
      return vs_error_set(err, 0, "read data: %s", archive_error_string(ar));
    }
    if (off < 0 || (uint64_t)off + len > a->max_bytes || a->bytes + len > a->max_bytes) {
      vs_hasher_free(h);
      return vs_error_set(err, 0, "layer data exceeds the limit of %llu bytes",
                          (unsigned long long)a->max_bytes);
    }
    if (h && off != end) { /* a hole: the data alone is not the content */
      vs_hasher_free(h);
      h = NULL;
    }
    if (over && off > end &&
        fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, end, off - end) < 0) {
      vs_hasher_free(h);
      return vs_error_set(err, errno, "clear a hole");
    }
    if (h)
      vs_hasher_update(h, block, len);
    a->bytes += len;
    const char *p = block;
    size_t left = len;
    while (left) {
      ssize_t w = pwrite(fd, p, left, off);
      if (w < 0) {
        if (errno == EINTR)
          continue;
        vs_hasher_free(h);
        return vs_error_set(err, errno, "write");
      }
      p += w;
      off += w;
      left -= (size_t)w;
    }
    if (off > end)
      end = off;
  }
  if (h && end == size)
    vs_hasher_finish(h, digest);
  else
    vs_hasher_free(h);
  if (over && ftruncate(fd, end) < 0) /* the old data past the new: gone (a no-op when equal) */
    return vs_error_set(err, errno, "truncate");
  if (size > end && ftruncate(fd, size) < 0)
    return vs_error_set(err, errno, "truncate");
  return 0;
}

/* Remember (or forget) the digest of a file just written: its inode may have been another
 * file's, whose entry must not outlive it. */
static int record_file_digest(applier *a, int fd, const char *digest, vs_error **err) {
  if (!a->file_digests)
    return 0;
  struct stat st;
  if (fstat(fd, &st) < 0)
    return vs_error_set(err, errno, "stat");
  if (*digest)
    vs_file_digests_put(a->file_digests, &st, digest);
  else
    vs_file_digests_drop(a->file_digests, &st);
  return 0;
}

static void entry_times(struct archive_entry *ae, struct timespec ts[2]) {
  ts[1].tv_sec = archive_entry_mtime(ae);
  ts[1].tv_nsec = archive_entry_mtime_is_set(ae) ? archive_entry_mtime_nsec(ae) : 0;
  if (archive_entry_atime_is_set(ae)) {
    ts[0].tv_sec = archive_entry_atime(ae);
    ts[0].tv_nsec = archive_entry_atime_nsec(ae);
  } else {
    ts[0] = ts[1];
  }
  if (ts[0].tv_nsec < 0 || ts[0].tv_nsec > 999999999)
    ts[0].tv_nsec = 0;
  if (ts[1].tv_nsec < 0 || ts[1].tv_nsec > 999999999)
    ts[1].tv_nsec = 0;
}

static int entry_owner(struct archive_entry *ae, uid_t *uid, gid_t *gid, vs_error **err) {
  la_int64_t u = archive_entry_uid(ae), g = archive_entry_gid(ae);
  if (u < 0 || g < 0 || u >= (la_int64_t)UINT32_MAX || g >= (la_int64_t)UINT32_MAX)
    return vs_error_set(err, EINVAL, "bad owner %lld:%lld", (long long)u, (long long)g);
  *uid = (uid_t)u;
  *gid = (gid_t)g;
  return 0;
}

static int apply_whiteout(const applier *a, int parent, const char *base, vs_error **err) {
  if (!strcmp(base, OPAQUE_MARKER)) {
    if (fsetxattr(parent, "trusted.overlay.opaque", "y", 1, 0) < 0)
      return vs_error_set(err, errno, "mark directory opaque");
    return 0;
  }
  const char *name = base + strlen(WHITEOUT_PREFIX);
  if (!*name || !strcmp(name, ".") || !strcmp(name, ".."))
    return vs_error_set(err, EINVAL, "bad whiteout name");
  if (make_room(a, parent, name, false, err) < 0)
    return -1;
  if (mknodat(parent, name, S_IFCHR | 0, makedev(0, 0)) < 0)
    return vs_error_set(err, errno, "create whiteout for %.200s", name);
  return 0;
}

static int apply_hardlink(applier *a, int parent, const char *base, const char *target,
                          vs_error **err) {
  _cleanup_free_ char *t = NULL;
  if (clean_path(target, &t, err) < 0)
    return vs_error_wrap(err, "hardlink target");
  if (!*t)
    return vs_error_set(err, 0, "hardlink to the layer root");
  if (a->reuse && !json_object_get(a->reuse, t)) /* not a file left from the earlier archive */
    return vs_error_set(err, ENOENT, "hardlink target %.200s is not in the archive", target);
  const char *tdir, *tbase;
  split_path(t, &tdir, &tbase);
  _cleanup_close_ int tparent = openat2_in_root(a, tdir, O_RDONLY | O_DIRECTORY);
  if (tparent < 0)
    return vs_error_set(err, errno, "hardlink target %.200s", target);
  struct stat st;
  if (fstatat(tparent, tbase, &st, AT_SYMLINK_NOFOLLOW) < 0)
    return vs_error_set(err, errno, "hardlink target %.200s", target);
  if (S_ISDIR(st.st_mode))
    return vs_error_set(err, 0, "hardlink to directory %.200s", target);
  if (make_room(a, parent, base, false, err) < 0)
    return -1;
  /* No AT_SYMLINK_FOLLOW: a symlink target is linked as the symlink itself. */
  if (linkat(tparent, tbase, parent, base, 0) < 0)
    return vs_error_set(err, errno, "link to %.200s", target);
  return 0;
}

static int remember_dir(applier *a, const char *path, struct archive_entry *ae) {
  if (a->n_dirs == a->cap_dirs) {
    a->cap_dirs = a->cap_dirs ? a->cap_dirs * 2 : 64;
    a->dirs = vs_realloc(a->dirs, a->cap_dirs * sizeof(dir_time));
  }
  a->dirs[a->n_dirs].path = vs_strdup(path);
  entry_times(ae, a->dirs[a->n_dirs].ts);
  a->n_dirs++;
  return 0;
}

/* Over an earlier archive: a regular file of that one, not hard-linked, is written again in
 * place, keeping its inode and its blocks (ext4 without a journal scans the inodes freed in the
 * last minutes on every allocation, and discards freed blocks synchronously: thousands of files
 * replaced per build made each build slower than the one before). -1 when there is none (the
 * entry is then made as usual). */
static int reopen_for_rewrite(int parent, const char *base) {
  struct stat st;
  if (fstatat(parent, base, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode) ||
      st.st_nlink != 1)
    return -1;
  return openat(parent, base, O_WRONLY | O_NOFOLLOW | O_CLOEXEC);
}

static int apply_entry(applier *a, struct archive *ar, struct archive_entry *ae, vs_error **err) {
  const char *raw_path = archive_entry_pathname(ae);
  if (!raw_path)
    return vs_error_set(err, EINVAL, "entry without a name");
  if (a->plain && raw_path[0] == '/')
    return vs_error_set(err, EINVAL, "absolute name \"%.200s\" in the archive", raw_path);
  _cleanup_free_ char *path = NULL;
  if (clean_path(raw_path, &path, err) < 0 || !path)
    return -1;
  if (!*path)
    return 0; /* the layer root itself: keep the store's own directory */
  if (a->reuse)
    json_object_set_new(a->reuse, path, json_true());
  _cleanup_free_ char *full = vs_strdup(path);
  const char *dir, *base;
  split_path(path, &dir, &base);
  _cleanup_close_ int parent = ensure_dir(a, dir, err);
  if (parent < 0)
    return -1;

  if (!a->plain && !strncmp(base, WHITEOUT_PREFIX, strlen(WHITEOUT_PREFIX)))
    return apply_whiteout(a, parent, base, err);

  const char *hardlink = archive_entry_hardlink(ae);
  if (hardlink)
    return apply_hardlink(a, parent, base, hardlink, err);

  uid_t uid = 0;
  gid_t gid = 0;
  if (!a->owner_root && entry_owner(ae, &uid, &gid, err) < 0)
    return -1;
  mode_t perm = archive_entry_perm(ae) & 07777;
  struct timespec ts[2];
  entry_times(ae, ts);
  mode_t type = archive_entry_filetype(ae);

  int rewrite = a->reuse && type == AE_IFREG ? reopen_for_rewrite(parent, base) : -1;
  if (rewrite < 0 && make_room(a, parent, base, type == AE_IFDIR, err) < 0)
    return -1;

  switch (type) {
  case AE_IFREG: {
    _cleanup_close_ int fd = rewrite;
    la_int64_t size = archive_entry_size(ae);
    if (size < 0 || (uint64_t)size > a->max_bytes || a->bytes + (uint64_t)size > a->max_bytes)
      return vs_error_set(err, 0, "file of %lld bytes exceeds the layer limit", (long long)size);
    if (fd < 0)
      fd = openat(parent, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
      return vs_error_set(err, errno, "create");
    char digest[VS_DIGEST_MAX];
    if (write_file_data(a, ar, fd, size, rewrite >= 0, digest, err) < 0 ||
        record_file_digest(a, fd, digest, err) < 0)
      return -1;
    if (fchown(fd, uid, gid) < 0 || fchmod(fd, perm) < 0)
      return vs_error_set(err, errno, "set owner/mode");
    if (apply_xattrs(ae, fd, err) < 0)
      return -1;
    if (futimens(fd, ts) < 0)
      return vs_error_set(err, errno, "set times");
    return 0;
  }
  case AE_IFDIR: {
    if (mkdirat(parent, base, 0700) < 0 && errno != EEXIST)
      return vs_error_set(err, errno, "mkdir");
    _cleanup_close_ int fd = openat(parent, base, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
      return vs_error_set(err, errno, "open directory");
    if (fchown(fd, uid, gid) < 0 || fchmod(fd, perm) < 0)
      return vs_error_set(err, errno, "set owner/mode");
    if (apply_xattrs(ae, fd, err) < 0)
      return -1;
    return remember_dir(a, full, ae);
  }
  case AE_IFLNK: {
    const char *target = archive_entry_symlink(ae);
    if (!target || !*target || strlen(target) >= PATH_MAX)
      return vs_error_set(err, EINVAL, "bad symlink target");
    if (symlinkat(target, parent, base) < 0)
      return vs_error_set(err, errno, "symlink");
    if (fchownat(parent, base, uid, gid, AT_SYMLINK_NOFOLLOW) < 0)
      return vs_error_set(err, errno, "set owner");
    if (utimensat(parent, base, ts, AT_SYMLINK_NOFOLLOW) < 0)
      return vs_error_set(err, errno, "set times");
    return 0;
  }
  case AE_IFCHR:
  case AE_IFBLK:
  case AE_IFIFO: {
    if (type != AE_IFIFO && !a->allow_devices)
      return vs_error_set(err, 0, "device nodes are not allowed here");
    dev_t dev =
        type == AE_IFIFO ? 0 : makedev(archive_entry_rdevmajor(ae), archive_entry_rdevminor(ae));
    if (mknodat(parent, base, type | perm, dev) < 0)
      return vs_error_set(err, errno, "mknod");
    /* The node was just created by us, so it is not a symlink: O_PATH open without following. */
    _cleanup_close_ int fd = openat(parent, base, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
      return vs_error_set(err, errno, "open node");
    if (fchownat(fd, "", uid, gid, AT_EMPTY_PATH) < 0)
      return vs_error_set(err, errno, "set owner");
    _cleanup_free_ char *proc = vs_asprintf("/proc/self/fd/%d", fd);
    if (chmod(proc, perm) < 0)
      return vs_error_set(err, errno, "set mode");
    if (utimensat(parent, base, ts, AT_SYMLINK_NOFOLLOW) < 0)
      return vs_error_set(err, errno, "set times");
    return 0;
  }
  case AE_IFSOCK:
    return 0; /* sockets in layers are meaningless; docker skips them too */
  default:
    return vs_error_set(err, EINVAL, "unknown entry type 0%o", (unsigned)type);
  }
}

/* The tar reader's bytes: whatever the decompressor has now, handed over in its own buffer
 * (valid until the next call). archive_read_data would wait to fill a whole buffer, holding
 * back the last part of a stream that is still arriving (a build context) and copying it. */
static la_ssize_t inner_read(struct archive *ar, void *ctx, const void **buf) {
  applier *a = ctx;
  (void)ar;
  const void *block = NULL;
  size_t len = 0;
  la_int64_t off;
  int r;
  do
    r = archive_read_data_block(a->raw, &block, &len, &off);
  while (r == ARCHIVE_OK && len == 0);
  if (r == ARCHIVE_EOF)
    return 0;
  if (r < ARCHIVE_WARN) {
    vs_error_set(&a->read_err, 0, "decompress: %s", archive_error_string(a->raw));
    return -1;
  }
  la_ssize_t n = (la_ssize_t)len;
  a->raw_bytes += (uint64_t)n;
  /* Headers and padding count too: a stream of empty blocks is a bomb as well. */
  if (a->raw_bytes > a->max_bytes + (a->max_entries + 16) * 1024) {
    vs_error_set(&a->read_err, 0, "uncompressed layer exceeds the size limit");
    return -1;
  }
  if (a->hasher)
    vs_hasher_update(a->hasher, block, (size_t)n);
  *buf = block;
  return n;
}

static void set_dir_times(applier *a) {
  for (size_t i = a->n_dirs; i-- > 0;) {
    _cleanup_close_ int fd = openat2_in_root(a, a->dirs[i].path, O_RDONLY | O_DIRECTORY);
    if (fd >= 0)
      futimens(fd, a->dirs[i].ts);
  }
}

int vs_layer_apply(int fd, int dirfd, const vs_layer_limits *lim, char diff_id_out[VS_DIGEST_MAX],
                   vs_error **err) {
  applier a = {
      .rootfd = dirfd,
      .max_bytes = lim && lim->max_bytes ? lim->max_bytes : DEFAULT_MAX_BYTES,
      .max_entries = lim && lim->max_entries ? lim->max_entries : DEFAULT_MAX_ENTRIES,
      .allow_devices = lim ? lim->allow_devices : true,
      .plain = lim && lim->plain,
      .no_overwrite_dir_nondir = lim && lim->no_overwrite_dir_nondir,
      .owner_root = lim && lim->owner_root,
      .file_digests = lim ? lim->file_digests : NULL,
      .reuse = lim ? lim->reuse_paths : NULL,
  };
  /* a build context or docker cp wants no diff_id: hashing the whole stream would cost a pass */
  a.hasher = diff_id_out ? vs_hasher_new() : NULL;
  struct archive *inner = NULL;
  int r = -1;

  a.raw = archive_read_new();
  archive_read_support_filter_all(a.raw);
  archive_read_support_format_raw(a.raw);
  struct archive_entry *ae;
  if (archive_read_open_fd(a.raw, fd, (size_t)256 << 10) != ARCHIVE_OK ||
      archive_read_next_header(a.raw, &ae) != ARCHIVE_OK) {
    vs_error_set(err, EINVAL, "not a readable layer: %s", archive_error_string(a.raw));
    goto out;
  }
  inner = archive_read_new();
  archive_read_support_format_tar(inner);
  archive_read_support_format_gnutar(inner);
  if (archive_read_open(inner, &a, NULL, inner_read, NULL) != ARCHIVE_OK) {
    if (a.read_err) {
      vs_error_set(err, a.read_err->errnum, "%s", a.read_err->msg);
    } else {
      vs_error_set(err, EINVAL, "not a tar archive: %s", archive_error_string(inner));
    }
    goto out;
  }
  for (;;) {
    int h = archive_read_next_header(inner, &ae);
    if (h == ARCHIVE_EOF)
      break;
    if (h < ARCHIVE_WARN) {
      if (a.read_err)
        vs_error_set(err, a.read_err->errnum, "%s", a.read_err->msg);
      else
        vs_error_set(err, EINVAL, "bad tar: %s", archive_error_string(inner));
      goto out;
    }
    if (++a.entries > a.max_entries) {
      vs_error_set(err, 0, "layer has more than %llu entries", (unsigned long long)a.max_entries);
      goto out;
    }
    if (apply_entry(&a, inner, ae, err) < 0) {
      const char *p = archive_entry_pathname(ae);
      vs_error_wrap(err, "layer entry \"%.200s\"", p ? p : "?");
      if (a.read_err && (!*err || !(*err)->errnum || (*err)->errnum == EIO)) {
        vs_error_free(*err);
        *err = NULL;
        vs_error_set(err, a.read_err->errnum, "%s", a.read_err->msg);
      }
      goto out;
    }
  }
  /* Whatever follows the end-of-archive blocks is part of the diff_id too. */
  for (;;) {
    const void *b;
    la_ssize_t n = inner_read(inner, &a, &b);
    if (n < 0) {
      vs_error_set(err, a.read_err->errnum, "%s", a.read_err->msg);
      goto out;
    }
    if (n == 0)
      break;
  }
  set_dir_times(&a);
  if (diff_id_out) {
    vs_hasher_finish(a.hasher, diff_id_out);
    a.hasher = NULL;
  }
  r = 0;
out:
  if (inner)
    archive_read_free(inner);
  archive_read_free(a.raw);
  vs_hasher_free(a.hasher);
  for (size_t i = 0; i < a.n_dirs; i++)
    free(a.dirs[i].path);
  free(a.dirs);
  vs_error_free(a.read_err);
  return r;
}

/* ---------------------------------------------------------------- pruning after a reuse */

static int prune_dir(int fd, const char *prefix, const json_t *keep, const json_t *above,
                     vs_error **err) {
  int dfd = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  DIR *d = dfd < 0 ? NULL : fdopendir(dfd);
  if (!d) {
    if (dfd >= 0)
      close(dfd);
    return vs_error_set(err, errno, "read directory %.200s", *prefix ? prefix : ".");
  }
  char **names = NULL;
  size_t n = 0;
  struct dirent *de;
  while ((de = readdir(d))) {
    if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0) {
      names = vs_realloc(names, (n + 1) * sizeof(char *));
      names[n++] = vs_strdup(de->d_name);
    }
  }
  closedir(d);
  int r = 0;
  for (size_t i = 0; i < n; i++) {
    _cleanup_free_ char *name = names[i];
    if (r < 0)
      continue;
    _cleanup_free_ char *rel = *prefix ? vs_asprintf("%s/%s", prefix, name) : vs_strdup(name);
    struct stat st;
    if (fstatat(fd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
      if (errno != ENOENT)
        r = vs_error_set(err, errno, "stat %.200s", rel);
      continue;
    }
    bool is_dir = S_ISDIR(st.st_mode);
    bool kept = keep ? json_object_get(keep, rel) || (is_dir && json_object_get(above, rel))
                     : is_dir || S_ISREG(st.st_mode);
    if (!kept) {
      r = vs_rm_rf_at(fd, name, err);
    } else if (is_dir) {
      int sub = openat(fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      r = sub < 0 ? vs_error_set(err, errno, "open directory %.200s", rel)
                  : prune_dir(sub, rel, keep, above, err);
      if (sub >= 0)
        close(sub);
    }
  }
  free(names);
  return r;
}

int vs_dir_prune(int dirfd, const json_t *keep, vs_error **err) {
  _cleanup_json_ json_t *above = json_object();
  const char *key;
  json_t *v;
  json_object_foreach((json_t *)keep, key, v) {
    _cleanup_free_ char *p = vs_strdup(key);
    for (char *slash; (slash = strrchr(p, '/'));) {
      *slash = 0;
      json_object_set_new(above, p, json_true());
    }
  }
  return prune_dir(dirfd, "", keep, above, err);
}
