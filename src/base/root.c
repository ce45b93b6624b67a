/* Path resolution inside a root directory: openat2(RESOLVE_IN_ROOT) with a userspace fallback. */
#include "base-internal.h"

#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <linux/openat2.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>

#define MAX_SYMLINKS 40 /* the kernel's limit for one lookup */

/* The directories of the walk so far, root first; ".." pops, but never past the root. */
typedef struct dir_stack {
  int *fds;
  size_t depth; /* number of valid fds; fds[0] is the root */
  size_t cap;
} dir_stack;

static void dir_stack_clear(dir_stack *st) {
  for (size_t i = 0; i < st->depth; i++)
    close(st->fds[i]);
  free(st->fds);
  st->fds = NULL;
  st->depth = st->cap = 0;
}

static void dir_stack_push(dir_stack *st, int fd) {
  if (st->depth == st->cap) {
    st->cap = st->cap ? st->cap * 2 : 16;
    st->fds = vs_realloc(st->fds, st->cap * sizeof(*st->fds));
  }
  st->fds[st->depth++] = fd;
}

static void dir_stack_to_root(dir_stack *st) {
  while (st->depth > 1)
    close(st->fds[--st->depth]);
}

static int dir_stack_top(const dir_stack *st) { return st->fds[st->depth - 1]; }

/* A procfs symlink whose target is absolute or an anonymous object ("pipe:[12]") is a magic
 * link: the kernel would jump to the object itself, bypassing path resolution. /proc/self
 * ("1234") and /proc/mounts ("self/mounts") are ordinary relative links. */
static bool is_magic_link(int linkfd, const char *target) {
  struct statfs sfs;
  if (fstatfs(linkfd, &sfs) < 0 || sfs.f_type != PROC_SUPER_MAGIC)
    return false;
  return target[0] == '/' || strstr(target, ":[") != NULL;
}

/* Read the link at fd (an O_PATH|O_NOFOLLOW fd) into a new string. */
static char *read_link_fd(int fd) {
  size_t cap = 256;
  for (;;) {
    char *buf = vs_malloc0(cap);
    ssize_t n = readlinkat(fd, "", buf, cap);
    if (n < 0) {
      free(buf);
      return NULL;
    }
    if ((size_t)n < cap) {
      buf[n] = '\0';
      return buf;
    }
    free(buf);
    cap *= 2;
  }
}

/* Follow the symlink open at linkfd: the rest of the walk becomes target + "/" + rest. */
static int follow_link(dir_stack *st, int linkfd, char **todo, const char *rest,
                       bool trailing_slash, int *links, const char *path, vs_error **err) {
  if (++*links > MAX_SYMLINKS)
    return vs_error_set(err, ELOOP, "open %s in root", path);
  _cleanup_free_ char *target = read_link_fd(linkfd);
  if (!target)
    return vs_error_set(err, errno, "readlink while opening %s in root", path);
  if (is_magic_link(linkfd, target))
    return vs_error_set(err, ELOOP, "open %s in root: refusing to follow the magic link to %s",
                        path, target);
  if (target[0] == '/')
    dir_stack_to_root(st);
  /* "link/" keeps its trailing slash (the target must be a directory); "link" must not get one */
  char *next = *rest ? vs_asprintf("%s/%s", target, rest)
                     : vs_asprintf("%s%s", target, trailing_slash ? "/" : "");
  free(*todo);
  *todo = next;
  return 0;
}

int vs_openat_in_root_walk(int rootfd, const char *path, int flags, mode_t mode, vs_error **err) {
  if (!*path) /* as openat2 and openat: an empty path names nothing */
    return vs_error_set(err, ENOENT, "open \"\" in root");
  dir_stack st = {0};
  int root = fcntl(rootfd, F_DUPFD_CLOEXEC, 3);
  if (root < 0)
    return vs_error_set(err, errno, "open %s in root: dup root fd", path);
  dir_stack_push(&st, root);

  char *todo = vs_strdup(path);
  int links = 0, result = -1;
  for (;;) {
    char *p = todo;
    while (*p == '/')
      p++;
    char *end = strchrnul(p, '/');
    char *after = end;
    while (*after == '/')
      after++;
    bool last = *after == '\0';
    bool trailing_slash = *end == '/';
    size_t clen = (size_t)(end - p);
    if (clen > NAME_MAX) {
      vs_error_set(err, ENAMETOOLONG, "open %s in root: a component is longer than %d bytes", path,
                   NAME_MAX);
      break;
    }
    char comp[NAME_MAX + 1];
    memcpy(comp, p, clen);
    comp[clen] = '\0';
    const char *rest = after; /* points into todo: consume it before todo changes */

    if (comp[0] == '\0' || !strcmp(comp, ".") || !strcmp(comp, "..")) {
      if (!strcmp(comp, "..") && st.depth > 1)
        close(st.fds[--st.depth]);
      if (last) { /* the path names a directory on the stack */
        result = openat(dir_stack_top(&st), ".", flags | O_CLOEXEC, mode);
        if (result < 0)
          vs_error_set(err, errno, "open %s in root", path);
        break;
      }
      memmove(todo, after, strlen(after) + 1);
      continue;
    }

    int fd = openat(dir_stack_top(&st), comp, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0 && !(last && errno == ENOENT && (flags & O_CREAT))) {
      vs_error_set(err, errno, "open %s in root", path);
      break;
    }
    struct stat sb = {0};
    if (fd >= 0 && fstat(fd, &sb) < 0) {
      vs_error_set(err, errno, "open %s in root: stat %s", path, comp);
      close(fd);
      break;
    }
    if (fd >= 0 && S_ISLNK(sb.st_mode) && last && (flags & O_CREAT) && (flags & O_EXCL)) {
      close(fd); /* O_EXCL never creates through a symlink, dangling or not */
      vs_error_set(err, EEXIST, "open %s in root", path);
      break;
    }
    if (fd >= 0 && S_ISLNK(sb.st_mode) && !(last && !trailing_slash && (flags & O_NOFOLLOW))) {
      int r = follow_link(&st, fd, &todo, rest, trailing_slash, &links, path, err);
      close(fd);
      if (r < 0)
        break;
      continue;
    }
    if (last) {
      if (fd >= 0)
        close(fd);
      int f = flags | O_NOFOLLOW | O_CLOEXEC;
      if (trailing_slash && !(flags & O_CREAT))
        f |= O_DIRECTORY;
      result = openat(dir_stack_top(&st), comp, f, mode);
      if (result < 0)
        vs_error_set(err, errno, "open %s in root", path);
      break;
    }
    if (!S_ISDIR(sb.st_mode)) {
      close(fd);
      vs_error_set(err, ENOTDIR, "open %s in root: %s", path, comp);
      break;
    }
    dir_stack_push(&st, fd);
    memmove(todo, after, strlen(after) + 1);
  }
  free(todo);
  dir_stack_clear(&st);
  return result;
}

int vs_openat_in_root(int rootfd, const char *path, int flags, mode_t mode, vs_error **err) {
  struct open_how how = {
      .flags = (uint64_t)(flags | O_CLOEXEC),
      /* openat2 refuses a mode unless a file may be created */
      .mode = (flags & (O_CREAT | __O_TMPFILE)) ? mode : 0,
      .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
  };
  for (int attempt = 0; attempt < 16; attempt++) {
    long fd = syscall(SYS_openat2, rootfd, path, &how, sizeof(how));
    if (fd >= 0)
      return (int)fd;
    if (errno == ENOSYS)
      return vs_openat_in_root_walk(rootfd, path, flags, mode, err);
    /* EAGAIN: a concurrent rename raced with ".." resolution; the kernel asks us to retry. */
    if (errno != EAGAIN && errno != EINTR)
      break;
  }
  if (errno == ELOOP)
    return vs_error_set(err, ELOOP, "open %s in root (a symlink loop or a magic link)", path);
  return vs_error_set(err, errno, "open %s in root", path);
}

int vs_mkdir_p_in_root(int rootfd, const char *path, mode_t mode, vs_error **err) {
  _cleanup_free_ char *p = vs_strdup(path);
  size_t n = strlen(p);
  size_t i = 0;
  while (i < n) {
    while (i < n && p[i] == '/')
      i++;
    size_t start = i;
    while (i < n && p[i] != '/')
      i++;
    if (i == start)
      break;
    size_t clen = i - start;
    if ((clen == 1 && p[start] == '.') || (clen == 2 && !strncmp(p + start, "..", 2)))
      continue;

    char saved_start = p[start], saved_end = p[i];
    p[start] = '\0';
    _cleanup_close_ int parent =
        vs_openat_in_root(rootfd, start ? p : ".", O_PATH | O_DIRECTORY, 0, err);
    p[start] = saved_start;
    if (parent < 0)
      return vs_error_wrap(err, "mkdir %s in root", path);
    p[i] = '\0';
    int r = mkdirat(parent, p + start, mode);
    int e = errno;
    p[i] = saved_end;
    if (r < 0 && e != EEXIST)
      return vs_error_set(err, e, "mkdir %s in root: %.*s", path, (int)i, p);
  }
  /* Whatever existed must resolve (inside the root) to a directory. */
  _cleanup_close_ int fd = vs_openat_in_root(rootfd, path, O_PATH | O_DIRECTORY, 0, err);
  if (fd < 0)
    return vs_error_wrap(err, "mkdir %s in root", path);
  return 0;
}
