#include "base/base.h"
#include "tap.h"
#include "testutil.h"

#include <errno.h>
#include <signal.h>
#include <sys/wait.h>

TEST(run_command_reports_exit_status) {
  _cleanup_error_ vs_error *err = NULL;
  int status = -1;
  char *ok[] = {"true", NULL};
  CHECK_EQ(vs_run_command(ok, &status, &err), 0);
  CHECK_EQ(status, 0);
  char *three[] = {"/bin/sh", "-c", "exit 3", NULL};
  CHECK_EQ(vs_run_command(three, &status, &err), 0);
  CHECK(WIFEXITED(status));
  CHECK_EQ(WEXITSTATUS(status), 3);
  _cleanup_free_ char *s = vs_wait_status_str(status);
  CHECK_STREQ(s, "exited with status 3");
}

TEST(missing_program_is_an_error_not_a_status) {
  _cleanup_error_ vs_error *err = NULL;
  int status = -1;
  char *argv[] = {"/nonexistent/vessel-prog", NULL};
  CHECK_EQ(vs_run_command(argv, &status, &err), -1);
  CHECK_EQ(err->errnum, ENOENT);
  CHECK_STREQ(err->msg, "spawn /nonexistent/vessel-prog: exec: No such file or directory");
  vs_error_freep(&err);
  char *inpath[] = {"vessel-no-such-program-in-path", NULL};
  CHECK_EQ(vs_run_command(inpath, &status, &err), -1);
  /* EACCES when some PATH directory is unreadable to us (execvp reports that over ENOENT) */
  CHECK(err->errnum == ENOENT || err->errnum == EACCES);
  vs_error_freep(&err);
  char *empty[] = {NULL};
  CHECK_EQ(vs_run_command(empty, &status, &err), -1);
  CHECK_CONTAINS(err->msg, "empty command");
}

TEST(bad_cwd_names_the_directory) {
  _cleanup_error_ vs_error *err = NULL;
  vs_spawn_opts o = VS_SPAWN_OPTS_INIT;
  o.cwd = "/nonexistent/dir";
  pid_t pid;
  char *argv[] = {"true", NULL};
  CHECK_EQ(vs_spawn(argv, &o, &pid, &err), -1);
  CHECK_STREQ(err->msg, "spawn true: chdir /nonexistent/dir: No such file or directory");
}

/* Read everything from fd into a static buffer. */
static const char *slurp(int fd) {
  static char buf[4096];
  size_t n = 0;
  ssize_t r;
  while (n < sizeof(buf) - 1 && (r = read(fd, buf + n, sizeof(buf) - 1 - n)) > 0)
    n += (size_t)r;
  buf[n] = '\0';
  return buf;
}

TEST(stdio_env_and_cwd_are_applied) {
  _cleanup_error_ vs_error *err = NULL;
  int in[2], out[2];
  CHECK_EQ(pipe2(in, O_CLOEXEC), 0);
  CHECK_EQ(pipe2(out, O_CLOEXEC), 0);
  char *env[] = {"VESSEL_T=hello", "PATH=/usr/bin:/bin", NULL};
  vs_spawn_opts o = VS_SPAWN_OPTS_INIT;
  o.stdin_fd = in[0];
  o.stdout_fd = out[1];
  o.stderr_fd = out[1];
  o.env = env;
  o.cwd = "/usr";
  char *argv[] = {"sh", "-c", "read x; echo \"$x $VESSEL_T $(pwd) $HOME\"; echo err >&2", NULL};
  pid_t pid;
  CHECK_EQ(vs_spawn(argv, &o, &pid, &err), 0);
  close(in[0]);
  close(out[1]);
  CHECK_EQ(write(in[1], "line\n", 5), 5);
  close(in[1]);
  const char *got = slurp(out[0]);
  close(out[0]);
  int status;
  CHECK_EQ(vs_wait_pid(pid, &status, &err), 0);
  CHECK_EQ(status, 0);
  CHECK_STREQ(got, "line hello /usr \nerr\n");
}

TEST(swapped_stdout_and_stderr) {
  /* stdout -> the fd at 2's place and stderr -> the fd at 1's place must not clobber each other */
  _cleanup_error_ vs_error *err = NULL;
  int a[2], b[2];
  CHECK_EQ(pipe2(a, O_CLOEXEC), 0);
  CHECK_EQ(pipe2(b, O_CLOEXEC), 0);
  vs_spawn_opts o = VS_SPAWN_OPTS_INIT;
  o.stdout_fd = a[1];
  o.stderr_fd = b[1];
  o.stdin_fd = VS_SPAWN_DEVNULL;
  char *argv[] = {"sh", "-c", "echo out; echo err >&2; cat", NULL};
  pid_t pid;
  CHECK_EQ(vs_spawn(argv, &o, &pid, &err), 0);
  close(a[1]);
  close(b[1]);
  int status;
  CHECK_EQ(vs_wait_pid(pid, &status, &err), 0);
  CHECK_EQ(status, 0);
  CHECK_STREQ(slurp(a[0]), "out\n");
  CHECK_STREQ(slurp(b[0]), "err\n");
  close(a[0]);
  close(b[0]);
}

TEST(child_gets_default_signals_and_empty_mask) {
  _cleanup_error_ vs_error *err = NULL;
  sigset_t block, old;
  sigemptyset(&block);
  sigaddset(&block, SIGTERM);
  CHECK_EQ(sigprocmask(SIG_BLOCK, &block, &old), 0);
  struct sigaction ign = {.sa_handler = SIG_IGN}, oldpipe;
  CHECK_EQ(sigaction(SIGPIPE, &ign, &oldpipe), 0);
  int status;
  /* SigBlk and SigIgn in /proc/self/status must be all zero in the child */
  char *argv[] = {"sh", "-c",
                  "grep -E '^Sig(Blk|Ign)' /proc/self/status | grep -vq ':\\s*0*$' && exit 1;"
                  " kill -TERM $$; exit 0",
                  NULL};
  int r = vs_run_command(argv, &status, &err);
  sigprocmask(SIG_SETMASK, &old, NULL);
  sigaction(SIGPIPE, &oldpipe, NULL);
  CHECK_EQ(r, 0);
  CHECK(WIFSIGNALED(status));
  CHECK_EQ(WTERMSIG(status), SIGTERM);
  _cleanup_free_ char *s = vs_wait_status_str(status);
  CHECK_CONTAINS(s, "killed by signal 15");
}

TEST(wait_pid_for_unknown_child_fails) {
  _cleanup_error_ vs_error *err = NULL;
  int status;
  CHECK_EQ(vs_wait_pid(1, &status, &err), -1);
  CHECK_EQ(err->errnum, ECHILD);
  CHECK_CONTAINS(err->msg, "process 1");
}

TEST(no_fds_leak_into_child) {
  _cleanup_error_ vs_error *err = NULL;
  int p[2];
  CHECK_EQ(pipe2(p, O_CLOEXEC), 0);
  /* an fd someone forgot to make CLOEXEC must not reach the child either */
  _cleanup_close_ int careless = open("/dev/null", O_RDONLY);
  CHECK(careless >= 0);
  vs_spawn_opts o = VS_SPAWN_OPTS_INIT;
  o.stdout_fd = p[1];
  /* fds 0-2 and the one ls opens for the directory: nothing from the spawn machinery */
  char *argv[] = {"sh", "-c", "ls /proc/self/fd | wc -l", NULL};
  pid_t pid;
  CHECK_EQ(vs_spawn(argv, &o, &pid, &err), 0);
  close(p[1]);
  const char *got = slurp(p[0]);
  close(p[0]);
  int status;
  CHECK_EQ(vs_wait_pid(pid, &status, &err), 0);
  CHECK_EQ(status, 0);
  CHECK_EQ(atoi(got), 4);
}

TEST(extra_fds_arrive_at_3_and_up) {
  _cleanup_error_ vs_error *err = NULL;
  int out[2], a[2], b[2];
  CHECK_EQ(pipe2(out, O_CLOEXEC), 0);
  CHECK_EQ(pipe2(a, O_CLOEXEC), 0);
  CHECK_EQ(pipe2(b, O_CLOEXEC), 0);
  /* b's write end goes to 3 and a's to 4: crossing numbers on purpose */
  int extra[2] = {b[1], a[1]};
  vs_spawn_opts o = VS_SPAWN_OPTS_INIT;
  o.stdout_fd = out[1];
  o.extra_fds = extra;
  o.n_extra_fds = 2;
  char *argv[] = {"sh", "-c", "echo three >&3; echo four >&4; ls /proc/self/fd | wc -l", NULL};
  pid_t pid;
  CHECK_EQ(vs_spawn(argv, &o, &pid, &err), 0);
  close(out[1]);
  close(a[1]);
  close(b[1]);
  int status;
  CHECK_EQ(vs_wait_pid(pid, &status, &err), 0);
  CHECK_EQ(status, 0);
  CHECK_EQ(atoi(slurp(out[0])), 6); /* 0-2, 3, 4 and ls's directory fd */
  CHECK_STREQ(slurp(b[0]), "three\n");
  CHECK_STREQ(slurp(a[0]), "four\n");
  close(out[0]);
  close(a[0]);
  close(b[0]);
  int bad[1] = {-1};
  o.extra_fds = bad;
  o.n_extra_fds = 1;
  CHECK_EQ(vs_spawn(argv, &o, &pid, &err), -1);
  CHECK_EQ(err->errnum, EBADF);
}

int main(void) { return tap_run(); }
