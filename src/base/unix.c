/* Unix domain sockets and descriptor passing (SCM_RIGHTS). */
#include "base.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

static int fill_addr(struct sockaddr_un *sa, const char *path, vs_error **err) {
  memset(sa, 0, sizeof(*sa));
  sa->sun_family = AF_UNIX;
  size_t n = strlen(path);
  if (n == 0)
    return vs_error_set(err, EINVAL, "unix socket: empty path");
  if (n >= sizeof(sa->sun_path))
    return vs_error_set(err, ENAMETOOLONG, "unix socket %s: path is %zu bytes, the limit is %zu",
                        path, n, sizeof(sa->sun_path) - 1);
  memcpy(sa->sun_path, path, n + 1);
  return 0;
}

int vs_unix_remove_stale(const char *path, vs_error **err) {
  struct stat st;
  if (lstat(path, &st) < 0)
    return errno == ENOENT ? 0 : vs_error_set(err, errno, "stat %s", path);
  if (!S_ISSOCK(st.st_mode))
    return vs_error_set(err, EEXIST, "%s exists and is not a socket", path);
  int fd = vs_unix_connect(path, NULL);
  if (fd >= 0) {
    close(fd);
    return vs_error_set(err, EADDRINUSE, "%s: another process serves this socket", path);
  }
  if (unlink(path) < 0)
    return vs_error_set(err, errno, "remove stale socket %s", path);
  return 0;
}

int vs_unix_listen(const char *path, mode_t mode, vs_error **err) {
  struct sockaddr_un sa;
  if (fill_addr(&sa, path, err) < 0)
    return -1;
  _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return vs_error_set(err, errno, "socket for %s", path);
  /* Linux creates the socket file with the socket inode's mode (minus umask): setting it before
   * bind means the file never exists with wider permissions, without touching the process-wide
   * umask. */
  if (fchmod(fd, mode) < 0)
    return vs_error_set(err, errno, "chmod socket for %s", path);
  if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
    return vs_error_set(err, errno, "bind %s", path);
  /* The umask may have removed bits the caller asked for; fix the file to exactly mode. It can
   * only gain bits the caller wanted, so no window of wider access exists. */
  if (fchmodat(AT_FDCWD, path, mode, AT_SYMLINK_NOFOLLOW) < 0) /* never through a symlink */
    return vs_error_set(err, errno, "chmod %s", path);
  if (listen(fd, SOMAXCONN) < 0)
    return vs_error_set(err, errno, "listen on %s", path);
  return steal_fd(&fd);
}

int vs_unix_connect(const char *path, vs_error **err) {
  struct sockaddr_un sa;
  if (fill_addr(&sa, path, err) < 0)
    return -1;
  _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return vs_error_set(err, errno, "socket for %s", path);
  int r;
  do
    r = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
  while (r < 0 && errno == EINTR);
  if (r < 0)
    return vs_error_set(err, errno, "connect to %s", path);
  return steal_fd(&fd);
}

int vs_send_fds(int sock, const void *buf, size_t len, const int *fds, size_t nfds,
                vs_error **err) {
  if (len == 0)
    return vs_error_set(err, EINVAL, "send fds: at least one byte of data must go with them");
  if (nfds > VS_MAX_PASS_FDS)
    return vs_error_set(err, EINVAL, "send fds: %zu descriptors, the limit is %d", nfds,
                        VS_MAX_PASS_FDS);
  union {
    char buf[CMSG_SPACE(VS_MAX_PASS_FDS * sizeof(int))];
    struct cmsghdr align;
  } control;
  memset(&control, 0, sizeof(control));

  const char *p = buf;
  bool fds_sent = nfds == 0;
  while (len > 0) {
    struct iovec iov = {.iov_base = (void *)p, .iov_len = len};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
    if (!fds_sent) {
      msg.msg_control = control.buf;
      msg.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
      struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
      c->cmsg_level = SOL_SOCKET;
      c->cmsg_type = SCM_RIGHTS;
      c->cmsg_len = CMSG_LEN(nfds * sizeof(int));
      memcpy(CMSG_DATA(c), fds, nfds * sizeof(int));
    }
    ssize_t n = sendmsg(sock, &msg, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return vs_error_set(err, errno, "sendmsg");
    fds_sent = true; /* descriptors travel with the first byte sent */
    p += n;
    len -= (size_t)n;
  }
  return 0;
}

static void close_fds(int *fds, size_t n) {
  for (size_t i = 0; i < n; i++)
    close(fds[i]);
}

ssize_t vs_recv_fds(int sock, void *buf, size_t cap, int *fds_out, size_t max_fds, size_t *nfds,
                    vs_error **err) {
  *nfds = 0;
  if (cap == 0)
    return vs_error_set(err, EINVAL, "recvmsg: a zero-byte buffer cannot tell data from EOF");
  if (max_fds > VS_MAX_PASS_FDS)
    max_fds = VS_MAX_PASS_FDS;
  union {
    char buf[CMSG_SPACE(VS_MAX_PASS_FDS * sizeof(int))];
    struct cmsghdr align;
  } control;
  struct iovec iov = {.iov_base = buf, .iov_len = cap};
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
  if (max_fds > 0) {
    msg.msg_control = control.buf;
    msg.msg_controllen = CMSG_SPACE(max_fds * sizeof(int));
  }
  ssize_t n;
  do
    n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
  while (n < 0 && errno == EINTR);
  if (n < 0)
    return vs_error_set(err, errno, "recvmsg");

  /* Collect every descriptor first, so that on any error all of them get closed. */
  int got[VS_MAX_PASS_FDS + 2];
  size_t ngot = 0;
  for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
      continue;
    size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < k && ngot < ARRAY_SIZE(got); i++)
      memcpy(&got[ngot++], CMSG_DATA(c) + i * sizeof(int), sizeof(int));
  }
  if (msg.msg_flags & MSG_CTRUNC) {
    close_fds(got, ngot);
    return vs_error_set(err, EMSGSIZE,
                        "recvmsg: control message truncated: the peer sent more than %zu file "
                        "descriptors (or none were expected); all received ones were closed",
                        max_fds);
  }
  if (ngot > max_fds) {
    close_fds(got, ngot);
    return vs_error_set(err, EMSGSIZE,
                        "recvmsg: the peer sent %zu file descriptors, at most %zu were expected",
                        ngot, max_fds);
  }
  if (msg.msg_flags & MSG_TRUNC) {
    close_fds(got, ngot);
    return vs_error_set(err, EMSGSIZE, "recvmsg: message larger than the %zu-byte buffer", cap);
  }
  memcpy(fds_out, got, ngot * sizeof(int));
  *nfds = ngot;
  return n;
}
