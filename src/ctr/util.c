/* File, path and process helpers private to the runtime. */
#include "internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>

int ctr_write_file(const char *path, const char *data, vs_error **err) {
  _cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0)
    return vs_error_set(err, errno, "open %s", path);
  if (vs_write_all(fd, data, strlen(data), err) < 0)
    return vs_error_wrap(err, "write %s", path);
  return 0;
}

static int mkdir_p_in_root_depth(int rootfd, const char *path, mode_t mode, int depth,
                                 vs_error **err) {
  if (depth > 40)
    return vs_error_set(err, ELOOP, "mkdir %s in the container root", path);
  _cleanup_free_ char *p = vs_strdup(path);
  size_t len = strlen(p);
  /* Walk prefixes: each one is resolved inside the root, so a symlinked component can only
   * lead to another place inside the root. A dangling symlink is followed (inside the root) and
   * its target created, as runc does. */
  for (size_t i = 1; i <= len; i++) {
    if (p[i] != '/' && p[i] != 0)
      continue;
    char saved = p[i];
    p[i] = 0;
    int fd = vs_openat_in_root(rootfd, p, O_PATH | O_DIRECTORY, 0, NULL);
    if (fd >= 0) {
      if (saved == 0)
        return fd;
      close(fd);
      p[i] = saved;
      continue;
    }
    if (errno != ENOENT)
      return vs_error_set(err, errno, "mkdir %s in the container root", p);
    char *slash = strrchr(p, '/');
    const char *base = slash ? slash + 1 : p;
    _cleanup_free_ char *parent = vs_strdup(slash ? p : "/");
    if (slash)
      parent[slash - p] = 0;
    _cleanup_close_ int pfd =
        vs_openat_in_root(rootfd, *parent ? parent : "/", O_PATH | O_DIRECTORY, 0, err);
    if (pfd < 0)
      return vs_error_wrap(err, "mkdir %s", path);
    if (mkdirat(pfd, base, mode) < 0) {
      if (errno != EEXIST)
        return vs_error_set(err, errno, "mkdir %s in the container root", p);
      char target[4096];
      ssize_t n = readlinkat(pfd, base, target, sizeof(target) - 1);
      if (n < 0)
        return vs_error_set(err, errno, "mkdir %s in the container root", p);
      target[n] = 0;
      _cleanup_free_ char *next =
          target[0] == '/' ? vs_strdup(target) : vs_asprintf("%s/%s", parent, target);
      int tfd = mkdir_p_in_root_depth(rootfd, next, mode, depth + 1, err);
      if (tfd < 0)
        return -1;
      close(tfd);
    }
    if (saved == 0)
      return vs_openat_in_root(rootfd, p, O_PATH | O_DIRECTORY, 0, err);
    p[i] = saved;
  }
  return vs_openat_in_root(rootfd, path, O_PATH | O_DIRECTORY, 0, err);
}

int ctr_mkdir_p_in_root(int rootfd, const char *path, mode_t mode, vs_error **err) {
  return mkdir_p_in_root_depth(rootfd, path, mode, 0, err);
}

size_t ctr_strv_len(char *const *v) {
  size_t n = 0;
  while (v && v[n])
    n++;
  return n;
}

char **ctr_strv_dup(char *const *v) {
  size_t n = ctr_strv_len(v);
  char **r = vs_malloc0((n + 1) * sizeof(char *));
  for (size_t i = 0; i < n; i++)
    r[i] = vs_strdup(v[i]);
  return r;
}

void ctr_strv_free(char **v) {
  for (size_t i = 0; v && v[i]; i++)
    free(v[i]);
  free(v);
}

unsigned long long ctr_pid_start_time(pid_t pid) {
  char path[64], buf[1024];
  snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return 0;
  ssize_t n = read(fd, buf, sizeof(buf) - 1);
  close(fd);
  if (n <= 0)
    return 0;
  buf[n] = 0;
  /* The command name may contain spaces and parentheses: fields start after the last ')'. */
  char *p = strrchr(buf, ')');
  if (!p || p[1] != ' ')
    return 0;
  p += 2;
  if (*p == 'Z' || *p == 'X')
    return 0;
  for (int field = 3; field < 22; field++) {
    p = strchr(p, ' ');
    if (!p)
      return 0;
    p++;
  }
  return strtoull(p, NULL, 10);
}

bool ctr_pid_alive(pid_t pid, unsigned long long start) {
  if (pid <= 0)
    return false;
  unsigned long long now = ctr_pid_start_time(pid);
  return now != 0 && now == start;
}

int ctr_send_fd(int sock, int fd, const char *msg, vs_error **err) {
  char cbuf[CMSG_SPACE(sizeof(int))];
  memset(cbuf, 0, sizeof(cbuf));
  struct iovec iov = {.iov_base = (void *)msg, .iov_len = strlen(msg) + 1};
  struct msghdr mh = {
      .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf)};
  struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(c), &fd, sizeof(int));
  ssize_t r;
  do
    r = sendmsg(sock, &mh, MSG_NOSIGNAL);
  while (r < 0 && errno == EINTR);
  if (r < 0)
    return vs_error_set(err, errno, "send fd");
  return 0;
}

int ctr_recv_fd(int sock, vs_error **err) {
  char cbuf[CMSG_SPACE(sizeof(int))], data[256];
  struct iovec iov = {.iov_base = data, .iov_len = sizeof(data)};
  struct msghdr mh = {
      .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf)};
  ssize_t r;
  do
    r = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
  while (r < 0 && errno == EINTR);
  if (r < 0)
    return vs_error_set(err, errno, "receive fd");
  struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
  if (!c || c->cmsg_type != SCM_RIGHTS || c->cmsg_len != CMSG_LEN(sizeof(int)))
    return vs_error_set(err, EPROTO, "receive fd: no descriptor in the message");
  int fd;
  memcpy(&fd, CMSG_DATA(c), sizeof(int));
  return fd;
}

int ctr_write_file_replace(const char *path, const char *data, size_t len, mode_t mode,
                           vs_error **err) {
  _cleanup_free_ char *tmp = vs_asprintf("%s.tmp.%d", path, (int)getpid());
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0)
    return vs_error_set(err, errno, "create %s", tmp);
  if (vs_write_all(fd, data, len, err) < 0) {
    close(fd);
    unlink(tmp);
    return vs_error_wrap(err, "write %s", tmp);
  }
  close(fd);
  if (rename(tmp, path) < 0) {
    int e = errno;
    unlink(tmp);
    return vs_error_set(err, e, "rename %s to %s", tmp, path);
  }
  return 0;
}
