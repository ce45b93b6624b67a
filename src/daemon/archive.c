/* docker cp and docker export: the archive endpoints (GET, HEAD and PUT
 * /containers/{id}/archive) and GET /containers/{id}/export.
 *
 * Every path a client names is resolved inside the container's root with vs_openat_in_root
 * (openat2 RESOLVE_IN_ROOT): "..", absolute symbolic links and relative ones that climb all
 * stay inside. A running container's root is /proc/<init>/root, which also shows its mounts
 * (volumes, binds) as dockerd's cp does; a stopped one's is its overlay root. Trees are read
 * and written only through descriptors (openat with O_NOFOLLOW, one component at a time), so a
 * container that swaps a directory for a symbolic link while we read cannot send us outside.
 * Archives coming in are applied by the image module's layer code in its plain mode, which
 * refuses "..", absolute names and entries whose directory goes through a symbolic link. */
#include "daemon/internal.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <sched.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define TAR_MAX_DEPTH 512

/* The parent pid in /proc/<pid>/stat, read through the process's /proc directory (which
 * keeps naming that process: once it is gone, reads fail even if the pid is reused). */
static pid_t proc_parent(int procfd) {
  _cleanup_close_ int fd = openat(procfd, "stat", O_RDONLY | O_CLOEXEC);
  char buf[1024];
  ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;
  if (n <= 0)
    return -1;
  buf[n] = 0;
  const char *p = strrchr(buf, ')'); /* the command name may hold anything */
  /* ") S PPID ...": the state, then the parent */
  if (!p || p[1] != ' ' || !p[2] || p[3] != ' ')
    return -1;
  char *end;
  long ppid = strtol(p + 4, &end, 10);
  return end != p + 4 && *end == ' ' && ppid > 0 ? (pid_t)ppid : -1;
}

/* A running container's root as its init sees it (with its mounts): /proc/<init>/root, but only
 * once it is certain that pid is still the init, the child of the container's live monitor;
 * a pid reused by a host process would otherwise hand out the host's root. */
static int running_root(vd_container *ctr, pid_t pid, pid_t monitor,
                        unsigned long long monitor_start) {
  char path[64];
  snprintf(path, sizeof(path), "/proc/%d", (int)pid);
  _cleanup_close_ int procfd = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (procfd < 0)
    return -1;
  int root = openat(procfd, "root", O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (root >= 0 &&
      (proc_parent(procfd) != monitor || vd_pid_start_time(monitor) != monitor_start)) {
    vs_log_warn("container %.12s: pid %d is no longer its init", ctr->id, (int)pid);
    close(root);
    return -1;
  }
  return root;
}

/* The bind mounts (volumes and binds) of a stopped container's config.json, set up on its
 * overlay root in the calling thread's own mount namespace, which is private: nothing is seen
 * outside it, and it goes away with the thread. Read-only ones are made read-only. */
static int mount_binds(vd_container *ctr, int rootfd, vs_error **err) {
  _cleanup_free_ char *spec_path = vs_asprintf("%s/config.json", ctr->dir);
  _cleanup_json_ json_t *spec = vs_json_load_file(spec_path, 16U << 20, err);
  if (!spec)
    return -1;
  size_t i;
  json_t *m;
  json_array_foreach(json_object_get(spec, "mounts"), i, m) {
    const char *type = json_string_value(json_object_get(m, "type"));
    const char *src = json_string_value(json_object_get(m, "source"));
    const char *dst = json_string_value(json_object_get(m, "destination"));
    if (!type || strcmp(type, "bind") != 0 || !src || !dst || !strncmp(dst, "/proc", 5) ||
        !strncmp(dst, "/sys", 4) || !strncmp(dst, "/dev", 4))
      continue;
    bool ro = false;
    size_t k;
    json_t *o;
    json_array_foreach(json_object_get(m, "options"), k, o) ro |=
        !strcmp(json_string_value(o) ? json_string_value(o) : "", "ro");
    _cleanup_close_ int sfd = open(src, O_PATH | O_CLOEXEC);
    vs_error *e = NULL;
    _cleanup_close_ int dfd = vs_openat_in_root(rootfd, dst, O_PATH, 0, &e);
    if (sfd < 0 || dfd < 0) { /* never mounted yet (the runtime makes the mount point) */
      vs_error_free(e);
      continue;
    }
    char sp[64], dp[64];
    snprintf(sp, sizeof(sp), "/proc/self/fd/%d", sfd);
    snprintf(dp, sizeof(dp), "/proc/self/fd/%d", dfd);
    if (mount(sp, dp, NULL, MS_BIND | MS_REC, NULL) < 0)
      return vs_error_set(err, errno, "mount %s on %s", src, dst);
    if (!ro)
      continue;
    /* the mount itself now: dfd still names the directory it covers */
    _cleanup_close_ int mfd = vs_openat_in_root(rootfd, dst, O_PATH, 0, err);
    if (mfd < 0)
      return -1;
    snprintf(dp, sizeof(dp), "/proc/self/fd/%d", mfd);
    if (mount(NULL, dp, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY, NULL) < 0)
      return vs_error_set(err, errno, "make %s read-only", dst);
  }
  return 0;
}

typedef void (*root_fn)(vd_call *c, const char *path, int root);

typedef struct stopped_root {
  vd_call *call;
  const char *path;
  root_fn fn;
} stopped_root;

/* A thread of its own, so its mount namespace and file system attributes go with it. */
static void *stopped_root_thread(void *arg) {
  stopped_root *sr = arg;
  vd_call *c = sr->call;
  vs_error *e = NULL;
  _cleanup_free_ char *rootfs = vs_asprintf("%s/rootfs", c->ctr->dir);
  int root = -1;
  if (unshare(CLONE_FS | CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
    vs_error_set(&e, errno, "a private mount namespace");
  else if ((root = open(rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0)
    vs_error_set(&e, errno, "open %s", rootfs);
  if (e || mount_binds(c->ctr, root, &e) < 0) {
    vd_call_error(c, 500, "container %.12s: %s", c->ctr->id, e->msg);
    vs_error_free(e);
  } else {
    sr->fn(c, sr->path, root);
  }
  if (root >= 0)
    close(root);
  return NULL;
}

/* Run fn with the container's root (worker): a running container's as its init sees it, a
 * stopped one's overlay root with its volumes and binds mounted, as dockerd's cp has it. */
static void with_container_root(vd_call *c, const char *path, root_fn fn) {
  vd_daemon *d = c->d;
  vd_container *ctr = c->ctr;
  pthread_mutex_lock(&d->lock);
  bool running = ctr->state == VD_CTR_RUNNING;
  pid_t pid = ctr->pid, monitor = ctr->monitor_pid;
  unsigned long long monitor_start = ctr->monitor_start;
  pthread_mutex_unlock(&d->lock);
  if (running && pid > 0) {
    int root = running_root(ctr, pid, monitor, monitor_start);
    if (root >= 0) {
      fn(c, path, root);
      close(root);
      return;
    }
    /* it exited meanwhile: its overlay root is still there */
  }
  vs_error *e = NULL;
  if (vd_supervise_ensure_rootfs(d, ctr, &e) < 0) {
    vd_call_error(c, 500, "container %.12s: %s", ctr->id, e->msg);
    vs_error_free(e);
    return;
  }
  stopped_root sr = {.call = c, .path = path, .fn = fn};
  pthread_t t;
  int r = pthread_create(&t, NULL, stopped_root_thread, &sr);
  if (r != 0) {
    vd_call_error(c, 500, "container %.12s: a thread for the copy: %s", ctr->id, strerror(r));
    return;
  }
  pthread_join(t, NULL);
}

/* A path as Docker splits it: its directory and its last component ("." for "/x/." and for the
 * root). Trailing slashes do not count. */
static void split_container_path(const char *path, char **dir, char **base) {
  _cleanup_free_ char *p = vs_strdup(path);
  size_t n = strlen(p);
  while (n > 1 && p[n - 1] == '/')
    p[--n] = 0;
  char *slash = strrchr(p, '/');
  if (!slash) {
    *dir = vs_strdup("/");
    *base = vs_strdup(p);
  } else if (slash[1] == 0) { /* "/" */
    *dir = vs_strdup("/");
    *base = vs_strdup(".");
  } else {
    *base = vs_strdup(slash + 1);
    *slash = 0;
    *dir = vs_strdup(*p ? p : "/");
  }
}

/* The entry the path names, not following a final symbolic link (as dockerd's lstat): its
 * parent directory (opened inside root) in *parent and its stat. */
static int resolve_entry(int root, const char *path, int *parent, char **base, struct stat *st,
                         vs_error **err) {
  _cleanup_free_ char *dir = NULL;
  split_container_path(path, &dir, base);
  int pfd = vs_openat_in_root(root, dir, O_PATH | O_DIRECTORY, 0, err);
  if (pfd < 0)
    return -1;
  const char *name = strcmp(*base, ".") ? *base : "";
  if (fstatat(pfd, name, st, AT_SYMLINK_NOFOLLOW | (*name ? 0 : AT_EMPTY_PATH)) < 0) {
    int e = errno;
    close(pfd);
    return vs_error_set(err, e, "stat %s", path);
  }
  *parent = pfd;
  return 0;
}

/* Go's os.FileMode of a stat mode: the permission bits and Go's own type and special bits. */
static uint32_t go_file_mode(mode_t m) {
  uint32_t g = m & 0777;
  switch (m & S_IFMT) {
  case S_IFDIR:
    g |= 1U << 31;
    break;
  case S_IFLNK:
    g |= 1U << 27;
    break;
  case S_IFIFO:
    g |= 1U << 25;
    break;
  case S_IFSOCK:
    g |= 1U << 24;
    break;
  case S_IFBLK:
    g |= 1U << 26;
    break;
  case S_IFCHR:
    g |= (1U << 26) | (1U << 21);
    break;
  default:
    break;
  }
  if (m & S_ISUID)
    g |= 1U << 23;
  if (m & S_ISGID)
    g |= 1U << 22;
  if (m & S_ISVTX)
    g |= 1U << 20;
  return g;
}

static char *rfc3339(const struct timespec *ts) {
  struct tm tm;
  gmtime_r(&ts->tv_sec, &tm);
  char buf[64];
  strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
  return vs_asprintf("%s.%09ldZ", buf, ts->tv_nsec);
}

/* X-Docker-Container-Path-Stat: base64 of {"name","size","mode","mtime","linkTarget"}. */
static char *path_stat_header(int parent, const char *base, const char *path,
                              const struct stat *st) {
  char target[4096] = "";
  if (S_ISLNK(st->st_mode)) {
    /* as read: a relative target is joined to the link's directory by the client */
    ssize_t n = readlinkat(parent, base, target, sizeof(target) - 1);
    target[n > 0 ? n : 0] = 0;
  }
  _cleanup_free_ char *mtime = rfc3339(&st->st_mtim);
  const char *name = !strcmp(base, ".") && !strcmp(path, "/") ? "/" : base;
  _cleanup_json_ json_t *j =
      json_pack("{s:s, s:I, s:I, s:s, s:s}", "name", name, "size", (json_int_t)st->st_size, "mode",
                (json_int_t)go_file_mode(st->st_mode), "mtime", mtime, "linkTarget", target);
  _cleanup_free_ char *text = json_dumps(j, JSON_COMPACT);
  size_t n = strlen(text);
  _cleanup_free_ char *b64 = vs_malloc0(4 * ((n + 2) / 3) + 1);
  EVP_EncodeBlock((unsigned char *)b64, (const unsigned char *)text, (int)n);
  return vs_asprintf("X-Docker-Container-Path-Stat: %s\r\n", b64);
}

/* ---------------------------------------------------------------- writing tars */

typedef struct tar_writer {
  struct archive *a;
  char *buf;
  size_t buf_size;
} tar_writer;

static int tar_fail(tar_writer *w, const char *name, vs_error **err) {
  return vs_error_set(err, EIO, "write %s to the archive: %s", name, archive_error_string(w->a));
}

static int tar_file_data(tar_writer *w, int fd, int64_t size, const char *name, vs_error **err) {
  int64_t left = size;
  while (left > 0) {
    ssize_t n = read(fd, w->buf, (size_t)left < w->buf_size ? (size_t)left : w->buf_size);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return vs_error_set(err, errno, "read %s", name);
    if (n == 0)
      break; /* it shrank while we read: the writer pads the entry with zeros */
    if (archive_write_data(w->a, w->buf, (size_t)n) < 0)
      return tar_fail(w, name, err);
    left -= n;
  }
  return 0;
}

/* Add parent/base as `name` to the tar, and everything below it when it is a directory. */
static int tar_add(tar_writer *w, int parent, const char *base, const char *name, unsigned depth,
                   vs_error **err);

static int tar_dir_children(tar_writer *w, int dfd, const char *name, unsigned depth,
                            vs_error **err) {
  int fd2 = dup(dfd);
  if (fd2 < 0)
    return vs_error_set(err, errno, "dup");
  DIR *dir = fdopendir(fd2);
  if (!dir) {
    close(fd2);
    return vs_error_set(err, errno, "open directory %s", name);
  }
  int r = 0;
  for (struct dirent *de; r == 0 && (de = readdir(dir));) {
    if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
      continue;
    _cleanup_free_ char *child =
        *name ? vs_asprintf("%s/%s", name, de->d_name) : vs_strdup(de->d_name);
    r = tar_add(w, dfd, de->d_name, child, depth + 1, err);
  }
  closedir(dir);
  return r;
}

static int tar_add(tar_writer *w, int parent, const char *base, const char *name, unsigned depth,
                   vs_error **err) {
  if (depth > TAR_MAX_DEPTH)
    return vs_error_set(err, ELOOP, "%s: directories nested deeper than %d", name, TAR_MAX_DEPTH);
  const char *at = *base ? base : ".";
  struct stat st;
  if (fstatat(parent, at, &st, AT_SYMLINK_NOFOLLOW) < 0)
    return errno == ENOENT ? 0 : vs_error_set(err, errno, "stat %s", name);
  if (S_ISSOCK(st.st_mode))
    return 0; /* as Go's archive/tar: sockets are not archived */
  _cleanup_close_ int fd = -1;
  if (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode)) {
    int flags = S_ISDIR(st.st_mode) ? O_RDONLY | O_DIRECTORY : O_RDONLY | O_NONBLOCK | O_NOCTTY;
    fd = openat(parent, at, flags | O_NOFOLLOW | O_CLOEXEC);
    /* it was replaced meanwhile (by a link, a fifo): take what is there now, or skip it */
    if (fd < 0 || fstat(fd, &st) < 0 || !(S_ISREG(st.st_mode) || S_ISDIR(st.st_mode)))
      return fd < 0 && errno != ENOENT && errno != ELOOP ? vs_error_set(err, errno, "open %s", name)
                                                         : 0;
  }
  char target[4096];
  struct archive_entry *e = archive_entry_new();
  archive_entry_copy_stat(e, &st);
  archive_entry_set_pathname(e, *name ? name : ".");
  if (S_ISLNK(st.st_mode)) {
    ssize_t n = readlinkat(parent, at, target, sizeof(target) - 1);
    if (n < 0) {
      archive_entry_free(e);
      return vs_error_set(err, errno, "readlink %s", name);
    }
    target[n] = 0;
    archive_entry_set_symlink(e, target);
  }
  if (!S_ISREG(st.st_mode))
    archive_entry_set_size(e, 0);
  int r = archive_write_header(w->a, e) < ARCHIVE_WARN ? tar_fail(w, name, err) : 0;
  archive_entry_free(e);
  if (r == 0 && S_ISREG(st.st_mode))
    r = tar_file_data(w, fd, st.st_size, name, err);
  if (r == 0 && archive_write_finish_entry(w->a) < ARCHIVE_WARN)
    r = tar_fail(w, name, err);
  if (r == 0 && S_ISDIR(st.st_mode))
    r = tar_dir_children(w, fd, name, depth, err);
  return r;
}

/* A tar of parent/base (named `name` in the archive; "" for the contents of a directory
 * without an entry of its own) into an unlinked temporary file, ready to be sent. */
static int tar_to_temp(vd_daemon *d, int parent, const char *base, const char *name, int *fd_out,
                       uint64_t *size_out, vs_error **err) {
  _cleanup_free_ char *tmpl = vs_asprintf("%s/tmp/archive-XXXXXX", d->data_root);
  int fd = mkostemp(tmpl, O_CLOEXEC);
  if (fd < 0)
    return vs_error_set(err, errno, "create %s", tmpl);
  unlink(tmpl);
  tar_writer w = {.a = archive_write_new(), .buf_size = (size_t)256 << 10};
  w.buf = vs_malloc0(w.buf_size);
  archive_write_set_format_pax_restricted(w.a);
  archive_write_set_bytes_in_last_block(w.a, 1);
  int r = archive_write_open_fd(w.a, fd) != ARCHIVE_OK ? tar_fail(&w, "the archive", err) : 0;
  if (r == 0 && !*name) {
    _cleanup_close_ int dfd =
        openat(parent, *base ? base : ".", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    r = dfd < 0 ? vs_error_set(err, errno, "open %s", base) : tar_dir_children(&w, dfd, "", 0, err);
  } else if (r == 0) {
    r = tar_add(&w, parent, base, name, 0, err);
  }
  if (r == 0 && archive_write_close(w.a) != ARCHIVE_OK)
    r = tar_fail(&w, "the archive's end", err);
  archive_write_free(w.a);
  free(w.buf);
  struct stat st = {0};
  if (r == 0 && (fstat(fd, &st) < 0 || lseek(fd, 0, SEEK_SET) < 0))
    r = vs_error_set(err, errno, "temporary archive");
  if (r != 0) {
    close(fd);
    return -1;
  }
  *fd_out = fd;
  *size_out = (uint64_t)st.st_size;
  return 0;
}

/* ---------------------------------------------------------------- handlers */

static void answer_path_error(vd_call *c, vd_container *ctr, const char *path, vs_error *e) {
  if (e->errnum == ENOENT)
    vd_call_error(c, 404, "Could not find the file %s in container %s", path, c->arg);
  else if (e->errnum == ENOTDIR || e->errnum == ELOOP || e->errnum == EINVAL)
    vd_call_error(c, 400, "%s", e->msg);
  else
    vd_call_error(c, 500, "container %.12s: %s", ctr->id, e->msg);
}

/* The path and the container of an archive call: NULL with the call answered. */
static char *archive_begin(vd_call *c) {
  char *path = http_query_get(c->req->query, "path");
  if (!path || !*path) {
    free(path);
    vd_call_error(c, 400, "path is required: the file or directory in the container");
    return NULL;
  }
  vd_container *ctr = vd_call_container(c);
  if (!ctr) {
    free(path);
    return NULL;
  }
  c->ctr = ctr;
  return path;
}

/* HEAD and GET /containers/{id}/archive?path=P: the stat header, and for GET a tar of P (named
 * by its last component, a symbolic link itself rather than what it points to). */
static void archive_get(vd_call *c, const char *path, int root) {
  _cleanup_close_ int parent = -1;
  _cleanup_free_ char *base = NULL;
  struct stat st;
  vs_error *e = NULL;
  if (resolve_entry(root, path, &parent, &base, &st, &e) < 0) {
    answer_path_error(c, c->ctr, path, e);
    vs_error_free(e);
    return;
  }
  c->headers_owned = path_stat_header(parent, base, path, &st);
  c->extra_headers = c->headers_owned;
  if (c->req->head_only) {
    vd_call_status(c, 200);
    return;
  }
  int fd;
  uint64_t size;
  if (tar_to_temp(c->d, parent, strcmp(base, ".") ? base : "", base, &fd, &size, &e) < 0) {
    vd_call_error(c, 500, "archive %s of container %.12s: %s", path, c->ctr->id, e->msg);
    vs_error_free(e);
    return;
  }
  c->status = 200;
  c->file_fd = fd;
  c->file_size = size;
  c->content_type = "application/x-tar";
}

void vd_h_container_archive_get(vd_call *c) {
  _cleanup_free_ char *path = archive_begin(c);
  if (path)
    with_container_root(c, path, archive_get);
}

/* Whether fd is on the container's root mount itself (not a volume or bind below it). */
static bool on_root_mount(int root, int fd) {
  struct statx a, b;
  if (statx(root, "", AT_EMPTY_PATH, STATX_MNT_ID, &a) < 0 ||
      statx(fd, "", AT_EMPTY_PATH, STATX_MNT_ID, &b) < 0 || !(a.stx_mask & STATX_MNT_ID) ||
      !(b.stx_mask & STATX_MNT_ID))
    return true;
  return a.stx_mnt_id == b.stx_mnt_id;
}

/* PUT /containers/{id}/archive?path=DIR: extract the tar body into DIR, which must exist. */
static void archive_put(vd_call *c, const char *path, int root) {
  const char *q = c->req->query;
  bool no_overwrite = http_query_bool(q, "noOverwriteDirNonDir", false);
  bool copy_ids = http_query_bool(q, "copyUIDGID", false);
  vs_error *e = NULL;
  _cleanup_close_ int dest = vs_openat_in_root(root, path, O_RDONLY | O_DIRECTORY, 0, &e);
  if (dest < 0) {
    if (e->errnum == ENOTDIR) {
      vd_call_error(c, 400, "extraction point is not a directory: %s", path);
    } else {
      answer_path_error(c, c->ctr, path, e);
    }
    vs_error_free(e);
    return;
  }
  pthread_mutex_lock(&c->d->lock);
  bool read_only =
      json_is_true(json_object_get(json_object_get(c->ctr->rec, "HostConfig"), "ReadonlyRootfs"));
  pthread_mutex_unlock(&c->d->lock);
  if (read_only && on_root_mount(root, dest)) {
    vd_call_error(c, 403, "container rootfs is marked read-only");
    return;
  }
  vs_layer_limits lim = {
      .plain = true, .no_overwrite_dir_nondir = no_overwrite, .owner_root = !copy_ids};
  if (lseek(c->body_fd, 0, SEEK_SET) < 0 || vs_layer_apply(c->body_fd, dest, &lim, NULL, &e) < 0) {
    int errnum = e ? e->errnum : errno;
    int status = errnum == EROFS                                         ? 403
                 : errnum == ENOSPC || errnum == EIO || errnum == ENOMEM ? 500
                                                                         : 400;
    vd_call_error(c, status, "extract the archive into %s: %s%s", path,
                  e ? e->msg : strerror(errno),
                  errnum == EROFS ? " (the mounted volume is marked read-only)" : "");
    vs_error_free(e);
    return;
  }
  vs_log_info("container %.12s: archive extracted into %s", c->ctr->id, path);
  vd_call_status(c, 200);
}

void vd_h_container_archive_put(vd_call *c) {
  if (c->body_fd < 0) {
    vd_call_error(c, 400, "request body is empty: a tar archive was expected");
    return;
  }
  _cleanup_free_ char *path = archive_begin(c);
  if (path)
    with_container_root(c, path, archive_put);
}

/* GET /containers/{id}/export: the container's file system (its overlay root, without its
 * volumes and binds, as dockerd exports it) as a tar. */
void vd_h_container_export(vd_call *c) {
  vd_container *ctr = vd_call_container(c);
  if (!ctr)
    return;
  c->ctr = ctr;
  vs_error *e = NULL;
  if (vd_supervise_ensure_rootfs(c->d, ctr, &e) < 0) {
    vd_call_error(c, 500, "export %.12s: %s", ctr->id, e->msg);
    vs_error_free(e);
    return;
  }
  _cleanup_free_ char *rootfs = vs_asprintf("%s/rootfs", ctr->dir);
  _cleanup_close_ int root = open(rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
  int fd;
  uint64_t size;
  if (root < 0 ? vs_error_set(&e, errno, "open %s", rootfs)
               : tar_to_temp(c->d, root, "", "", &fd, &size, &e) < 0) {
    vd_call_error(c, 500, "export %.12s: %s", ctr->id, e->msg);
    vs_error_free(e);
    return;
  }
  vd_event_emit(c->d, "container", "export", ctr->id, NULL);
  c->status = 200;
  c->file_fd = fd;
  c->file_size = size;
  c->content_type = "application/x-tar";
}
