/* The container's root file system: mounts, devices, pivot_root, masked and read-only paths.
 *
 * Runs in the container's init, inside its new mount namespace. Every destination comes from the
 * spec (untrusted) and is resolved inside the rootfs with openat2(RESOLVE_IN_ROOT); the mount is
 * then made on /proc/self/fd/N of the resolved O_PATH fd, so a symlink in the image can never
 * redirect a mount onto the host. */
#include "cgroup.h"
#include "init.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <string.h>
#include <dirent.h>
#include <sys/mount.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>

#define FD_PATH(buf, fd) snprintf(buf, sizeof(buf), "/proc/self/fd/%d", fd)

/* Flags a bind remount must keep: the kernel refuses to clear them in a user namespace. */
static unsigned long locked_flags(const char *path) {
  struct statvfs sv;
  unsigned long f = 0;
  if (statvfs(path, &sv) < 0)
    return 0;
  if (sv.f_flag & ST_NOSUID)
    f |= MS_NOSUID;
  if (sv.f_flag & ST_NODEV)
    f |= MS_NODEV;
  if (sv.f_flag & ST_NOEXEC)
    f |= MS_NOEXEC;
  if (sv.f_flag & ST_RDONLY)
    f |= MS_RDONLY;
  return f;
}

static int remount_bind(const char *path, unsigned long flags, vs_error **err) {
  unsigned long f = MS_BIND | MS_REMOUNT | flags | (locked_flags(path) & ~MS_RDONLY);
  if (mount(NULL, path, NULL, f, NULL) < 0)
    return vs_error_set(err, errno, "remount %s", path);
  return 0;
}

/* Create the mount point for `dest`: a directory, or an empty file when binding a file. */
static int make_mountpoint(int rootfd, const char *dest, bool file, vs_error **err) {
  if (!file) {
    int fd = ctr_mkdir_p_in_root(rootfd, dest, 0755, err);
    return fd;
  }
  _cleanup_free_ char *parent = vs_strdup(dest);
  char *slash = strrchr(parent, '/');
  if (slash)
    *slash = 0;
  if (parent[0]) {
    int pfd = ctr_mkdir_p_in_root(rootfd, parent, 0755, err);
    if (pfd < 0)
      return -1;
    close(pfd);
  }
  int fd = vs_openat_in_root(rootfd, dest, O_RDONLY | O_CREAT | O_NOCTTY, 0644, NULL);
  if (fd >= 0)
    close(fd);
  return vs_openat_in_root(rootfd, dest, O_PATH, 0, err);
}

static int reopen(int rootfd, const char *dest, char *buf, size_t bufsz, vs_error **err) {
  int fd = vs_openat_in_root(rootfd, dest, O_PATH, 0, err);
  if (fd >= 0)
    snprintf(buf, bufsz, "/proc/self/fd/%d", fd);
  return fd;
}

static int mount_bind(const ctr_init_ctx *c, int rootfd, const ctr_mount *m, vs_error **err) {
  _cleanup_free_ char *src =
      m->source[0] == '/' ? vs_strdup(m->source) : vs_asprintf("%s/%s", c->bundle, m->source);
  struct stat sb;
  if (stat(src, &sb) < 0)
    return vs_error_set(err, errno, "bind source %s", src);
  _cleanup_close_ int fd = make_mountpoint(rootfd, m->destination, !S_ISDIR(sb.st_mode), err);
  if (fd < 0)
    return -1;
  char p[64];
  FD_PATH(p, fd);
  if (mount(src, p, NULL, MS_BIND | (m->recursive ? MS_REC : 0), NULL) < 0)
    return vs_error_set(err, errno, "bind %s on %s", src, m->destination);
  _cleanup_close_ int nfd = reopen(rootfd, m->destination, p, sizeof(p), err);
  if (nfd < 0)
    return -1;
  unsigned long f = m->flags & ~(MS_REMOUNT | MS_BIND | MS_REC);
  if (f && remount_bind(p, f, err) < 0)
    return -1;
  if (m->propagation && mount(NULL, p, NULL, m->propagation, NULL) < 0)
    return vs_error_set(err, errno, "set propagation of %s", m->destination);
  return 0;
}

static int mount_cgroup(const ctr_init_ctx *c, int rootfd, const ctr_mount *m, vs_error **err) {
  ctr_init_await_go(c); /* the runtime makes the directories we bind meanwhile */
  _cleanup_close_ int fd = make_mountpoint(rootfd, m->destination, false, err);
  if (fd < 0)
    return -1;
  char p[64];
  FD_PATH(p, fd);
  size_t n = c->cg ? ctr_cgroup_hierarchy_count(c->cg) : 0;
  unsigned long ro = m->flags & MS_RDONLY;
  unsigned long base = MS_NOSUID | MS_NODEV | MS_NOEXEC;
  ctr_cgroup_hierarchy h;
  /* A pure v2 host: the container's own cgroup directory is its /sys/fs/cgroup. */
  if (n == 1 && ctr_cgroup_hierarchy_get(c->cg, 0, &h) && !h.name[0]) {
    if (mount(h.host_path, p, NULL, MS_BIND | MS_REC, NULL) < 0)
      return vs_error_set(err, errno, "bind cgroup %s on %s", h.host_path, m->destination);
    _cleanup_close_ int nfd = reopen(rootfd, m->destination, p, sizeof(p), err);
    return nfd < 0 ? -1 : remount_bind(p, base | ro, err);
  }
  if (mount("tmpfs", p, "tmpfs", base, "mode=755") < 0)
    return vs_error_set(err, errno, "mount tmpfs on %s", m->destination);
  for (size_t i = 0; i < n; i++) {
    if (!ctr_cgroup_hierarchy_get(c->cg, i, &h) || !h.name[0])
      continue;
    _cleanup_free_ char *dest = vs_asprintf("%s/%s", m->destination, h.name);
    _cleanup_close_ int dfd = make_mountpoint(rootfd, dest, false, err);
    if (dfd < 0)
      return -1;
    char dp[64];
    FD_PATH(dp, dfd);
    if (mount(h.host_path, dp, NULL, MS_BIND | MS_REC, NULL) < 0)
      return vs_error_set(err, errno, "bind cgroup %s on %s", h.host_path, dest);
    _cleanup_close_ int nfd = reopen(rootfd, dest, dp, sizeof(dp), err);
    if (nfd < 0 || remount_bind(dp, base | ro, err) < 0)
      return -1;
    /* Co-mounted v1 controllers ("cpu,cpuacct") are also reachable under each name. */
    if (strchr(h.name, ',')) {
      _cleanup_free_ char *names = vs_strdup(h.name);
      char *save = NULL;
      for (char *t = strtok_r(names, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        _cleanup_close_ int pfd = vs_openat_in_root(rootfd, m->destination, O_PATH, 0, NULL);
        if (pfd >= 0)
          symlinkat(h.name, pfd, t);
      }
    }
  }
  if (ro) {
    _cleanup_close_ int nfd = reopen(rootfd, m->destination, p, sizeof(p), err);
    if (nfd < 0 || mount(NULL, p, NULL, MS_REMOUNT | base | MS_RDONLY, "mode=755") < 0)
      return vs_error_set(err, errno, "remount %s read-only", m->destination);
  }
  return 0;
}

static int copy_tree(int from, int to, int depth, vs_error **err) {
  if (depth > 64)
    return vs_error_set(err, ELOOP, "copy: directory tree too deep");
  int dup_fd = dup(from);
  DIR *d = dup_fd >= 0 ? fdopendir(dup_fd) : NULL;
  if (!d) {
    if (dup_fd >= 0)
      close(dup_fd);
    return vs_error_set(err, errno, "copy: read directory");
  }
  struct dirent *de;
  int r = 0;
  while (r == 0 && (de = readdir(d))) {
    if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
      continue;
    struct stat sb;
    if (fstatat(from, de->d_name, &sb, AT_SYMLINK_NOFOLLOW) < 0)
      continue;
    if (S_ISDIR(sb.st_mode)) {
      if (mkdirat(to, de->d_name, sb.st_mode & 07777) < 0 && errno != EEXIST) {
        r = vs_error_set(err, errno, "copy: mkdir %s", de->d_name);
        break;
      }
      _cleanup_close_ int sub_from =
          openat(from, de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      _cleanup_close_ int sub_to =
          openat(to, de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (sub_from < 0 || sub_to < 0) {
        r = vs_error_set(err, errno, "copy: open %s", de->d_name);
        break;
      }
      r = copy_tree(sub_from, sub_to, depth + 1, err);
    } else if (S_ISLNK(sb.st_mode)) {
      char target[4096];
      ssize_t n = readlinkat(from, de->d_name, target, sizeof(target) - 1);
      if (n < 0)
        continue;
      target[n] = 0;
      if (symlinkat(target, to, de->d_name) < 0 && errno != EEXIST)
        r = vs_error_set(err, errno, "copy: symlink %s", de->d_name);
    } else if (S_ISREG(sb.st_mode)) {
      _cleanup_close_ int in = openat(from, de->d_name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
      _cleanup_close_ int out = openat(
          to, de->d_name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, sb.st_mode & 07777);
      if (in < 0 || out < 0) {
        r = vs_error_set(err, errno, "copy: %s", de->d_name);
        break;
      }
      for (off_t left = sb.st_size; left > 0;) {
        ssize_t c = sendfile(out, in, NULL, (size_t)left);
        if (c <= 0)
          break;
        left -= c;
      }
    } else {
      continue; /* devices, fifos, sockets are not copied */
    }
    if (r == 0 && fchownat(to, de->d_name, sb.st_uid, sb.st_gid, AT_SYMLINK_NOFOLLOW) < 0 &&
        errno != EPERM && errno != EINVAL)
      r = vs_error_set(err, errno, "copy: chown %s", de->d_name);
  }
  closedir(d);
  return r;
}

int ctr_copy_tree(int from, int to, vs_error **err) { return copy_tree(from, to, 0, err); }

static int mount_fs(const ctr_init_ctx *c, int rootfd, const ctr_mount *m, vs_error **err) {
  _cleanup_close_ int fd = make_mountpoint(rootfd, m->destination, false, err);
  if (fd < 0)
    return -1;
  char p[64];
  FD_PATH(p, fd);
  /* What the image has under the mount point, before the tmpfs hides it. */
  _cleanup_close_ int below = -1;
  if (m->tmpcopyup && m->type && !strcmp(m->type, "tmpfs"))
    below = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  unsigned long f = m->flags & ~(MS_REMOUNT | MS_BIND | MS_REC);
  const char *src = m->source && m->source[0] ? m->source : m->type;
  if (mount(src, p, m->type, f, m->data) == 0)
    goto mounted;
  int e = errno;
  /* In a user namespace some file systems cannot be mounted fresh (sysfs without a network
   * namespace of our own, mqueue with a shared IPC namespace): bind the host's, like runc. */
  if (e == EPERM && (!strcmp(m->type, "sysfs") || !strcmp(m->type, "mqueue"))) {
    const char *host = !strcmp(m->type, "sysfs") ? "/sys" : "/dev/mqueue";
    if (mount(host, p, NULL, MS_BIND | MS_REC, NULL) == 0) {
      _cleanup_close_ int nfd = reopen(rootfd, m->destination, p, sizeof(p), err);
      if (nfd < 0 || remount_bind(p, f, err) < 0)
        return -1;
      goto mounted;
    }
  }
  /* devpts "gid=5" fails when gid 5 is not mapped in the user namespace. */
  if (e == EINVAL && !strcmp(m->type, "devpts") && m->data && strstr(m->data, "gid=")) {
    _cleanup_free_ char *d = vs_strdup(m->data), *out = NULL;
    char *save = NULL;
    for (char *t = strtok_r(d, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
      if (!strncmp(t, "gid=", 4))
        continue;
      char *n = out ? vs_asprintf("%s,%s", out, t) : vs_strdup(t);
      free(out);
      out = n;
    }
    if (mount(src, p, m->type, f, out) == 0)
      goto mounted;
  }
  return vs_error_set(err, e, "mount %s (%s) on %s", src, m->type, m->destination);
mounted:
  if (below >= 0) {
    _cleanup_close_ int nfd = reopen(rootfd, m->destination, p, sizeof(p), err);
    _cleanup_close_ int top = nfd < 0 ? -1 : open(p, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (top < 0 || ctr_copy_tree(below, top, err) < 0)
      return vs_error_wrap(err, "mount %s", m->destination);
  }
  if (m->propagation) {
    _cleanup_close_ int nfd = reopen(rootfd, m->destination, p, sizeof(p), err);
    if (nfd < 0 || mount(NULL, p, NULL, m->propagation, NULL) < 0)
      return vs_error_set(err, errno, "set propagation of %s", m->destination);
  }
  (void)c;
  return 0;
}

static int mount_one(const ctr_init_ctx *c, int rootfd, const ctr_mount *m, vs_error **err) {
  if (m->bind)
    return mount_bind(c, rootfd, m, err);
  if (!strcmp(m->type, "cgroup") || !strcmp(m->type, "cgroup2"))
    return mount_cgroup(c, rootfd, m, err);
  return mount_fs(c, rootfd, m, err);
}

/* ------------------------------------------------------------------ devices */

static int make_device(int rootfd, const ctr_device *d, bool bind_from_host, vs_error **err) {
  _cleanup_free_ char *parent = vs_strdup(d->path);
  char *slash = strrchr(parent, '/');
  *slash = 0;
  const char *base = slash + 1;
  _cleanup_close_ int pfd = ctr_mkdir_p_in_root(rootfd, parent[0] ? parent : "/", 0755, err);
  if (pfd < 0)
    return -1;
  _cleanup_close_ int dfd = openat(pfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0)
    return vs_error_set(err, errno, "open %s", parent);
  unlinkat(dfd, base, 0);
  if (!bind_from_host) {
    mode_t type = d->type == 'b' ? S_IFBLK : d->type == 'p' ? S_IFIFO : S_IFCHR;
    if (mknodat(dfd, base, type | (d->mode & 07777),
                makedev((unsigned)d->major, (unsigned)d->minor)) == 0) {
      if (fchownat(dfd, base, d->uid, d->gid, AT_SYMLINK_NOFOLLOW) < 0)
        return vs_error_set(err, errno, "chown %s", d->path);
      return 0;
    }
    if (errno != EPERM)
      return vs_error_set(err, errno, "mknod %s", d->path);
  }
  /* No mknod in a user namespace: bind the host's node instead. */
  int f = openat(dfd, base, O_RDONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (f < 0)
    return vs_error_set(err, errno, "create %s", d->path);
  close(f);
  _cleanup_close_ int tfd = openat(dfd, base, O_PATH | O_NOFOLLOW | O_CLOEXEC);
  char p[64];
  FD_PATH(p, tfd);
  if (mount(d->path, p, NULL, MS_BIND, NULL) < 0)
    return vs_error_set(err, errno, "bind host device %s", d->path);
  return 0;
}

static const struct {
  const char *path;
  int major, minor;
} default_devices[] = {
    {"/dev/null", 1, 3},   {"/dev/zero", 1, 5},    {"/dev/full", 1, 7},
    {"/dev/random", 1, 8}, {"/dev/urandom", 1, 9}, {"/dev/tty", 5, 0},
};

static bool spec_has_device(const ctr_spec *s, const char *path) {
  for (size_t i = 0; i < s->n_devices; i++)
    if (!strcmp(s->devices[i].path, path))
      return true;
  return false;
}

static int create_devices(const ctr_init_ctx *c, int rootfd, vs_error **err) {
  bool userns = c->spec->ns[CTR_NS_USER].present;
  for (size_t i = 0; i < ARRAY_SIZE(default_devices); i++) {
    if (spec_has_device(c->spec, default_devices[i].path))
      continue;
    ctr_device d = {.type = 'c',
                    .path = (char *)default_devices[i].path,
                    .major = default_devices[i].major,
                    .minor = default_devices[i].minor,
                    .mode = 0666};
    if (make_device(rootfd, &d, userns, err) < 0)
      return -1;
  }
  for (size_t i = 0; i < c->spec->n_devices; i++)
    if (make_device(rootfd, &c->spec->devices[i], userns, err) < 0)
      return -1;
  _cleanup_close_ int dev = vs_openat_in_root(rootfd, "/dev", O_RDONLY | O_DIRECTORY, 0, err);
  if (dev < 0)
    return -1;
  static const char *const links[][2] = {
      {"/proc/self/fd", "fd"},       {"/proc/self/fd/0", "stdin"}, {"/proc/self/fd/1", "stdout"},
      {"/proc/self/fd/2", "stderr"}, {"/proc/kcore", "core"},
  };
  for (size_t i = 0; i < ARRAY_SIZE(links); i++)
    if (symlinkat(links[i][0], dev, links[i][1]) < 0 && errno != EEXIST)
      return vs_error_set(err, errno, "symlink /dev/%s", links[i][1]);
  struct stat sb;
  if (fstatat(dev, "pts/ptmx", &sb, AT_SYMLINK_NOFOLLOW) == 0) {
    unlinkat(dev, "ptmx", 0);
    if (symlinkat("pts/ptmx", dev, "ptmx") < 0)
      return vs_error_set(err, errno, "symlink /dev/ptmx");
  }
  return 0;
}

/* ------------------------------------------------------------------ root */

int ctr_rootfs_setup(const ctr_init_ctx *c, vs_error **err) {
  const ctr_spec *s = c->spec;
  /* Nothing we mount may propagate back to the host: slave (or private) first; the spec's
   * rootfsPropagation is applied to the new root after pivot_root. */
  unsigned long prop =
      (s->rootfs_propagation & MS_PRIVATE) ? MS_PRIVATE | MS_REC : MS_SLAVE | MS_REC;
  if (mount(NULL, "/", NULL, prop, NULL) < 0)
    return vs_error_set(err, errno, "set propagation of /");
  if (mount(c->rootfs, c->rootfs, NULL, MS_BIND | MS_REC, NULL) < 0)
    return vs_error_set(err, errno, "bind the root file system %s", c->rootfs);
  _cleanup_close_ int rootfd = open(c->rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (rootfd < 0)
    return vs_error_set(err, errno, "open %s", c->rootfs);
  for (size_t i = 0; i < s->n_mounts; i++)
    if (mount_one(c, rootfd, &s->mounts[i], err) < 0)
      return vs_error_wrap(err, "mounts[%zu]", i);
  if (create_devices(c, rootfd, err) < 0)
    return vs_error_wrap(err, "devices");
  return 0;
}

static bool root_on_ramfs(void) {
  struct statfs sf;
  return statfs("/", &sf) == 0 && sf.f_type == RAMFS_MAGIC;
}

int ctr_rootfs_pivot(const ctr_init_ctx *c, vs_error **err) {
  if (chdir(c->rootfs) < 0)
    return vs_error_set(err, errno, "chdir %s", c->rootfs);
  if (c->no_pivot || root_on_ramfs()) {
    if (mount(c->rootfs, "/", NULL, MS_MOVE, NULL) < 0)
      return vs_error_set(err, errno, "move %s to /", c->rootfs);
    if (chroot(".") < 0)
      return vs_error_set(err, errno, "chroot %s", c->rootfs);
  } else {
    /* pivot_root(".", ".") stacks the old root on top of the new one; detaching it leaves
     * only the container's root without needing a directory for the old one. */
    if (syscall(SYS_pivot_root, ".", ".") < 0) {
      if (errno == EINVAL) {
        if (mount(c->rootfs, "/", NULL, MS_MOVE, NULL) < 0 || chroot(".") < 0)
          return vs_error_set(err, errno, "move %s to / (pivot_root not possible)", c->rootfs);
        goto done;
      }
      return vs_error_set(err, errno, "pivot_root %s", c->rootfs);
    }
    if (mount(NULL, ".", NULL, MS_SLAVE | MS_REC, NULL) < 0)
      return vs_error_set(err, errno, "make the old root a slave");
    if (umount2(".", MNT_DETACH) < 0)
      return vs_error_set(err, errno, "detach the old root");
  }
done:
  if (chdir("/") < 0)
    return vs_error_set(err, errno, "chdir /");
  if (c->spec->rootfs_propagation && mount(NULL, "/", NULL, c->spec->rootfs_propagation, NULL) < 0)
    return vs_error_set(err, errno, "linux.rootfsPropagation");
  return 0;
}

static int mask_path(int rootfd, const char *path, vs_error **err) {
  _cleanup_close_ int fd = vs_openat_in_root(rootfd, path, O_PATH, 0, NULL);
  if (fd < 0)
    return 0; /* nothing to mask */
  struct stat sb;
  if (fstat(fd, &sb) < 0)
    return vs_error_set(err, errno, "stat %s", path);
  char p[64];
  FD_PATH(p, fd);
  int r = S_ISDIR(sb.st_mode) ? mount("tmpfs", p, "tmpfs", MS_RDONLY, "size=0,mode=0555")
                              : mount("/dev/null", p, NULL, MS_BIND, NULL);
  if (r < 0)
    return vs_error_set(err, errno, "mask %s", path);
  return 0;
}

static int readonly_path(int rootfd, const char *path, vs_error **err) {
  _cleanup_close_ int fd = vs_openat_in_root(rootfd, path, O_PATH, 0, NULL);
  if (fd < 0)
    return 0;
  char p[64];
  FD_PATH(p, fd);
  if (mount(p, p, NULL, MS_BIND | MS_REC, NULL) < 0)
    return vs_error_set(err, errno, "bind %s", path);
  _cleanup_close_ int nfd = reopen(rootfd, path, p, sizeof(p), err);
  if (nfd < 0)
    return -1;
  return remount_bind(p, MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, err);
}

int ctr_rootfs_finish(const ctr_init_ctx *c, vs_error **err) {
  const ctr_spec *s = c->spec;
  _cleanup_close_ int rootfd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (rootfd < 0)
    return vs_error_set(err, errno, "open /");
  /* sysctls first: /proc/sys is usually one of the read-only paths */
  for (size_t i = 0; i < s->n_sysctls; i++) {
    _cleanup_free_ char *p = vs_asprintf("/proc/sys/%s", s->sysctls[i].key);
    for (char *q = p + 10; *q; q++)
      if (*q == '.')
        *q = '/';
    if (ctr_write_file(p, s->sysctls[i].value, err) < 0)
      return vs_error_wrap(err, "linux.sysctl.%s", s->sysctls[i].key);
  }
  for (size_t i = 0; s->masked_paths && s->masked_paths[i]; i++)
    if (mask_path(rootfd, s->masked_paths[i], err) < 0)
      return -1;
  for (size_t i = 0; s->readonly_paths && s->readonly_paths[i]; i++)
    if (readonly_path(rootfd, s->readonly_paths[i], err) < 0)
      return -1;
  if (s->root_readonly && remount_bind("/", MS_RDONLY, err) < 0)
    return vs_error_wrap(err, "make the root read-only");
  return 0;
}
