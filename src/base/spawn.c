/* Process spawning: fork + exec, with failures in the child reported through a CLOEXEC pipe. */
#include "base.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>

enum child_stage { STAGE_SIGNALS, STAGE_SETSID, STAGE_DUP, STAGE_CHDIR, STAGE_EXEC };

static const char *const stage_names[] = {
    [STAGE_SIGNALS] = "reset signals", [STAGE_SETSID] = "setsid", [STAGE_DUP] = "set up stdio",
    [STAGE_CHDIR] = "chdir",           [STAGE_EXEC] = "exec",
};

struct child_report {
  int stage;
  int errnum;
};

/* Runs in the child between fork and exec: only async-signal-safe calls. */
__attribute__((noreturn)) static void child_fail(int errfd, enum child_stage stage) {
  struct child_report rep = {.stage = stage, .errnum = errno};
  ssize_t w;
  do
    w = write(errfd, &rep, sizeof(rep));
  while (w < 0 && errno == EINTR);
  _exit(127);
}

__attribute__((noreturn)) static void child_exec(int errfd, char *const argv[],
                                                 const vs_spawn_opts *o, int devnull) {
  /* Dispositions set to SIG_IGN and blocked signals survive exec; the child starts clean. */
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; sig++)
    if (sig != SIGKILL && sig != SIGSTOP)
      sigaction(sig, &sa, NULL); /* fails harmlessly for signals glibc reserves */
  sigset_t none;
  sigemptyset(&none);
  if (sigprocmask(SIG_SETMASK, &none, NULL) < 0)
    child_fail(errfd, STAGE_SIGNALS);

  if (o->new_session && setsid() < 0)
    child_fail(errfd, STAGE_SETSID);

  /* Targets are 0..2 and 3..first_free-1. Copy every source (and the report pipe) above them
   * before the first dup2, so that no dup2 overwrites a source still needed (stdout=2,
   * stderr=1, or an extra fd that sits where another one must go). */
  int first_free = 3 + (int)o->n_extra_fds;
  if (errfd < first_free) {
    errfd = fcntl(errfd, F_DUPFD_CLOEXEC, first_free);
    if (errfd < 0)
      _exit(127);
  }
  int src[3 + VS_SPAWN_MAX_EXTRA_FDS];
  int want[3] = {o->stdin_fd, o->stdout_fd, o->stderr_fd};
  for (int i = 0; i < first_free; i++) {
    int from = i < 3 ? want[i] : o->extra_fds[i - 3];
    if (from == VS_SPAWN_INHERIT) {
      src[i] = -1;
      continue;
    }
    if (from == VS_SPAWN_DEVNULL)
      from = devnull;
    src[i] = fcntl(from, F_DUPFD_CLOEXEC, first_free);
    if (src[i] < 0)
      child_fail(errfd, STAGE_DUP);
  }
  for (int i = 0; i < first_free; i++)
    if (src[i] >= 0 && dup2(src[i], i) < 0) /* dup2 clears CLOEXEC on the target */
      child_fail(errfd, STAGE_DUP);
  /* Nothing else crosses exec: not our copies, not fds someone forgot to make CLOEXEC. Kernels
   * before 5.11 lack CLOSE_RANGE_CLOEXEC; there only CLOEXEC discipline protects. */
  (void)close_range((unsigned)first_free, ~0U, CLOSE_RANGE_CLOEXEC);

  if (o->cwd && chdir(o->cwd) < 0)
    child_fail(errfd, STAGE_CHDIR);

  if (o->env)
    execvpe(argv[0], argv, o->env);
  else
    execvp(argv[0], argv);
  child_fail(errfd, STAGE_EXEC);
}

int vs_spawn(char *const argv[], const vs_spawn_opts *opts, pid_t *pid, vs_error **err) {
  static const vs_spawn_opts defaults = VS_SPAWN_OPTS_INIT;
  const vs_spawn_opts *o = opts ? opts : &defaults;
  if (!argv || !argv[0])
    return vs_error_set(err, EINVAL, "spawn: empty command");
  if (o->n_extra_fds > VS_SPAWN_MAX_EXTRA_FDS)
    return vs_error_set(err, EINVAL, "spawn %s: %zu extra fds, the limit is %d", argv[0],
                        o->n_extra_fds, VS_SPAWN_MAX_EXTRA_FDS);
  for (size_t i = 0; i < o->n_extra_fds; i++)
    if (o->extra_fds[i] < 0)
      return vs_error_set(err, EBADF, "spawn %s: extra fd %zu is %d", argv[0], i, o->extra_fds[i]);

  _cleanup_close_ int devnull = -1;
  if (o->stdin_fd == VS_SPAWN_DEVNULL || o->stdout_fd == VS_SPAWN_DEVNULL ||
      o->stderr_fd == VS_SPAWN_DEVNULL) {
    devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (devnull < 0)
      return vs_error_set(err, errno, "spawn %s: open /dev/null", argv[0]);
  }
  int pipefd[2];
  if (pipe2(pipefd, O_CLOEXEC) < 0)
    return vs_error_set(err, errno, "spawn %s: pipe", argv[0]);

  pid_t child = fork();
  if (child < 0) {
    int e = errno;
    close(pipefd[0]);
    close(pipefd[1]);
    return vs_error_set(err, e, "spawn %s: fork", argv[0]);
  }
  if (child == 0) {
    close(pipefd[0]);
    child_exec(pipefd[1], argv, o, devnull);
  }
  close(pipefd[1]);

  struct child_report rep;
  ssize_t n;
  do
    n = read(pipefd[0], &rep, sizeof(rep));
  while (n < 0 && errno == EINTR);
  close(pipefd[0]);
  if (n == 0) { /* the pipe closed on exec: the program runs */
    *pid = child;
    return 0;
  }
  int status;
  while (waitpid(child, &status, 0) < 0 && errno == EINTR)
    ;
  if (n != (ssize_t)sizeof(rep) || rep.stage < 0 || rep.stage > STAGE_EXEC)
    return vs_error_set(err, EIO, "spawn %s: the child failed before exec", argv[0]);
  if (rep.stage == STAGE_CHDIR)
    return vs_error_set(err, rep.errnum, "spawn %s: chdir %s", argv[0], o->cwd);
  return vs_error_set(err, rep.errnum, "spawn %s: %s", argv[0], stage_names[rep.stage]);
}

int vs_wait_pid(pid_t pid, int *status, vs_error **err) {
  int st;
  for (;;) {
    pid_t r = waitpid(pid, &st, 0);
    if (r == pid)
      break;
    if (r < 0 && errno == EINTR)
      continue;
    return vs_error_set(err, r < 0 ? errno : ECHILD, "wait for process %d", (int)pid);
  }
  if (status)
    *status = st;
  return 0;
}

int vs_run_command(char *const argv[], int *status, vs_error **err) {
  pid_t pid = -1;
  if (vs_spawn(argv, NULL, &pid, err) < 0)
    return -1;
  return vs_wait_pid(pid, status, err);
}

char *vs_wait_status_str(int status) {
  if (WIFEXITED(status))
    return vs_asprintf("exited with status %d", WEXITSTATUS(status));
  if (WIFSIGNALED(status))
    return vs_asprintf("killed by signal %d (%s)%s", WTERMSIG(status), strsignal(WTERMSIG(status)),
                       WCOREDUMP(status) ? ", core dumped" : "");
  if (WIFSTOPPED(status))
    return vs_asprintf("stopped by signal %d (%s)", WSTOPSIG(status), strsignal(WSTOPSIG(status)));
  return vs_asprintf("unknown wait status 0x%x", (unsigned)status);
}
