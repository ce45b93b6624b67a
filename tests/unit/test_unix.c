#include "base/base.h"
#include "tap.h"
#include "testutil.h"

#include <errno.h>
#include <sys/socket.h>
#include <sys/stat.h>

TEST(listen_applies_mode_and_connect_works) {
  _cleanup_free_ char *dir = test_tmpdir();
  _cleanup_free_ char *path = vs_asprintf("%s/ctl.sock", dir);
  _cleanup_error_ vs_error *err = NULL;
  mode_t old = umask(0077);
  _cleanup_close_ int l = vs_unix_listen(path, 0660, &err);
  umask(old);
  CHECK(l >= 0);
  struct stat st;
  CHECK_EQ(stat(path, &st), 0);
  CHECK(S_ISSOCK(st.st_mode));
  CHECK_EQ(st.st_mode & 0777, 0660);
  _cleanup_close_ int c = vs_unix_connect(path, &err);
  CHECK(c >= 0);
  _cleanup_close_ int a = accept4(l, NULL, NULL, SOCK_CLOEXEC);
  CHECK(a >= 0);
  CHECK_EQ(write(c, "hi", 2), 2);
  char buf[3] = {0};
  CHECK_EQ(read(a, buf, 2), 2);
  CHECK_STREQ(buf, "hi");
  CHECK_EQ(vs_rm_rf(dir, &err), 0);
}

TEST(listen_errors_name_the_path) {
  _cleanup_error_ vs_error *err = NULL;
  char longp[200];
  memset(longp, 'x', sizeof(longp) - 1);
  longp[0] = '/';
  longp[sizeof(longp) - 1] = '\0';
  CHECK_EQ(vs_unix_listen(longp, 0600, &err), -1);
  CHECK_EQ(err->errnum, ENAMETOOLONG);
  CHECK_CONTAINS(err->msg, "the limit is 107");
  CHECK_EQ(vs_unix_connect("/nonexistent/vessel.sock", &err), -1);
  CHECK_EQ(err->errnum, ENOENT);
  CHECK_CONTAINS(err->msg, "connect to /nonexistent/vessel.sock");
  _cleanup_free_ char *dir = test_tmpdir();
  _cleanup_free_ char *path = vs_asprintf("%s/s", dir);
  _cleanup_close_ int l = vs_unix_listen(path, 0600, &err);
  CHECK(l >= 0);
  CHECK_EQ(vs_unix_listen(path, 0600, &err), -1);
  CHECK_EQ(err->errnum, EADDRINUSE);
  CHECK_CONTAINS(err->msg, path);
  vs_error_freep(&err);
  CHECK_EQ(vs_rm_rf(dir, &err), 0);
}

TEST(stale_socket_is_removed_a_live_one_or_a_file_is_not) {
  _cleanup_error_ vs_error *err = NULL;
  _cleanup_free_ char *dir = test_tmpdir();
  _cleanup_free_ char *path = vs_asprintf("%s/s", dir);
  CHECK_EQ(vs_unix_remove_stale(path, &err), 0); /* nothing there */
  int l = vs_unix_listen(path, 0600, &err);
  CHECK(l >= 0);
  CHECK_EQ(vs_unix_remove_stale(path, &err), -1); /* somebody answers */
  CHECK_EQ(err->errnum, EADDRINUSE);
  CHECK_CONTAINS(err->msg, path);
  vs_error_freep(&err);
  close(l); /* the server died: its socket file stays behind */
  struct stat st;
  CHECK_EQ(lstat(path, &st), 0);
  CHECK_EQ(vs_unix_remove_stale(path, &err), 0);
  CHECK_EQ(lstat(path, &st), -1);
  CHECK_EQ(vs_write_file_atomic(path, "x", 1, 0600, &err), 0); /* not a socket: kept */
  CHECK_EQ(vs_unix_remove_stale(path, &err), -1);
  CHECK_EQ(err->errnum, EEXIST);
  CHECK_EQ(lstat(path, &st), 0);
  vs_error_freep(&err);
  CHECK_EQ(vs_rm_rf(dir, &err), 0);
}

static bool same_file(int a, int b) {
  struct stat sa, sb;
  return fstat(a, &sa) == 0 && fstat(b, &sb) == 0 && sa.st_dev == sb.st_dev &&
         sa.st_ino == sb.st_ino;
}

TEST(fds_pass_with_data) {
  _cleanup_error_ vs_error *err = NULL;
  int sv[2];
  CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  int p[2];
  CHECK_EQ(pipe2(p, O_CLOEXEC), 0);
  int fds[3] = {p[0], p[1], 0};
  CHECK_EQ(vs_send_fds(sv[0], "hello", 5, fds, 3, &err), 0);
  char buf[16] = {0};
  int got[4] = {-1, -1, -1, -1};
  size_t n = 0;
  CHECK_EQ(vs_recv_fds(sv[1], buf, sizeof(buf), got, 4, &n, &err), 5);
  CHECK_STREQ(buf, "hello");
  CHECK_EQ(n, 3);
  for (int i = 0; i < 3; i++) {
    CHECK(same_file(fds[i], got[i]));
    CHECK(fcntl(got[i], F_GETFD) & FD_CLOEXEC);
  }
  /* the passed pipe works */
  CHECK_EQ(write(got[1], "x", 1), 1);
  char c = 0;
  CHECK_EQ(read(p[0], &c, 1), 1);
  CHECK_EQ(c, 'x');
  for (int i = 0; i < 3; i++)
    close(got[i]);
  close(p[0]);
  close(p[1]);
  /* data without fds */
  CHECK_EQ(vs_send_fds(sv[0], "ab", 2, NULL, 0, &err), 0);
  CHECK_EQ(vs_recv_fds(sv[1], buf, sizeof(buf), got, 4, &n, &err), 2);
  CHECK_EQ(n, 0);
  /* end of stream */
  close(sv[0]);
  CHECK_EQ(vs_recv_fds(sv[1], buf, sizeof(buf), got, 4, &n, &err), 0);
  close(sv[1]);
  CHECK(err == NULL);
}

static int count_open_fds(void) {
  int n = 0;
  for (int fd = 0; fd < 1024; fd++)
    if (fcntl(fd, F_GETFD) >= 0)
      n++;
  return n;
}

TEST(too_many_fds_is_refused_and_nothing_leaks) {
  _cleanup_error_ vs_error *err = NULL;
  int sv[2];
  CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  int fds[5] = {0, 1, 2, 0, 1};
  CHECK_EQ(vs_send_fds(sv[0], "m", 1, fds, 5, &err), 0);
  int before = count_open_fds();
  char buf[4];
  int got[2];
  size_t n = 99;
  CHECK_EQ(vs_recv_fds(sv[1], buf, sizeof(buf), got, 2, &n, &err), -1);
  CHECK_EQ(n, 0);
  CHECK_EQ(err->errnum, EMSGSIZE);
  CHECK_CONTAINS(err->msg, "truncated");
  CHECK_EQ(count_open_fds(), before);
  vs_error_freep(&err);
  /* fds when none are expected */
  CHECK_EQ(vs_send_fds(sv[0], "m", 1, fds, 1, &err), 0);
  CHECK_EQ(vs_recv_fds(sv[1], buf, sizeof(buf), got, 0, &n, &err), -1);
  CHECK_CONTAINS(err->msg, "truncated");
  CHECK_EQ(count_open_fds(), before);
  vs_error_freep(&err);
  /* odd max_fds: CMSG_SPACE rounding lets one more fd through the kernel; still refused */
  int sv2[2];
  CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv2), 0);
  CHECK_EQ(vs_send_fds(sv2[0], "m", 1, fds, 2, &err), 0);
  int one[1];
  CHECK_EQ(vs_recv_fds(sv2[1], buf, sizeof(buf), one, 1, &n, &err), -1);
  CHECK_EQ(err->errnum, EMSGSIZE);
  CHECK_EQ(count_open_fds(), before + 2);
  close(sv2[0]);
  close(sv2[1]);
  close(sv[0]);
  close(sv[1]);
}

TEST(send_argument_checks) {
  _cleanup_error_ vs_error *err = NULL;
  int fds[1] = {0};
  CHECK_EQ(vs_send_fds(0, "", 0, fds, 1, &err), -1);
  CHECK_CONTAINS(err->msg, "at least one byte");
  char b[1];
  size_t n;
  CHECK_EQ(vs_recv_fds(0, b, 0, fds, 1, &n, &err), -1);
  CHECK_CONTAINS(err->msg, "zero-byte buffer");
  CHECK_EQ(vs_send_fds(0, "x", 1, fds, 300, &err), -1);
  CHECK_CONTAINS(err->msg, "limit is 253");
  int sv[2];
  CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  close(sv[1]);
  /* a closed peer gives EPIPE, not SIGPIPE */
  CHECK_EQ(vs_send_fds(sv[0], "x", 1, NULL, 0, &err), -1);
  CHECK_EQ(err->errnum, EPIPE);
  close(sv[0]);
}

TEST(seqpacket_truncated_data_is_refused) {
  _cleanup_error_ vs_error *err = NULL;
  int sv[2];
  CHECK_EQ(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
  int fds[1] = {0};
  CHECK_EQ(vs_send_fds(sv[0], "0123456789", 10, fds, 1, &err), 0);
  int before = count_open_fds();
  char buf[4];
  int got[1];
  size_t n;
  CHECK_EQ(vs_recv_fds(sv[1], buf, sizeof(buf), got, 1, &n, &err), -1);
  CHECK_CONTAINS(err->msg, "larger than the 4-byte buffer");
  CHECK_EQ(count_open_fds(), before);
  close(sv[0]);
  close(sv[1]);
}

int main(void) { return tap_run(); }
