/* OCI hooks: run a program with the container's state JSON on its stdin, with a timeout. */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>

static int wait_with_timeout(pid_t pid, int timeout_s, int *status) {
  if (timeout_s <= 0)
    return waitpid(pid, status, 0) == pid ? 0 : -1;
  int pfd = (int)syscall(SYS_pidfd_open, pid, 0);
  if (pfd < 0)
    return waitpid(pid, status, 0) == pid ? 0 : -1;
  struct pollfd p = {.fd = pfd, .events = POLLIN};
  int r;
  do
    r = poll(&p, 1, timeout_s * 1000);
  while (r < 0 && errno == EINTR);
  close(pfd);
  if (r == 0) {
    kill(pid, SIGKILL);
    waitpid(pid, status, 0);
    errno = ETIMEDOUT;
    return -1;
  }
  return waitpid(pid, status, 0) == pid ? 0 : -1;
}

int ctr_hook_run(const ctr_hook *h, const char *state_json, vs_error **err) {
  int in[2];
  if (pipe2(in, O_CLOEXEC) < 0)
    return vs_error_set(err, errno, "hook %s: pipe", h->path);
  pid_t pid = fork();
  if (pid < 0) {
    close(in[0]);
    close(in[1]);
    return vs_error_set(err, errno, "hook %s: fork", h->path);
  }
  if (pid == 0) {
    dup2(in[0], 0);
    sigset_t all;
    sigemptyset(&all);
    sigprocmask(SIG_SETMASK, &all, NULL);
    char *const default_args[] = {h->path, NULL};
    char *const empty_env[] = {NULL};
    execve(h->path, h->args && h->args[0] ? h->args : default_args, h->env ? h->env : empty_env);
    _exit(127);
  }
  close(in[0]);
  /* A hook that does not read its stdin must not block us: ignore EPIPE. */
  size_t len = strlen(state_json), off = 0;
  struct sigaction ign = {.sa_handler = SIG_IGN}, old;
  sigaction(SIGPIPE, &ign, &old);
  while (off < len) {
    ssize_t w = write(in[1], state_json + off, len - off);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      break;
    off += (size_t)w;
  }
  close(in[1]);
  sigaction(SIGPIPE, &old, NULL);
  int status = 0;
  if (wait_with_timeout(pid, h->timeout, &status) < 0)
    return vs_error_set(err, errno, "hook %s", h->path);
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
    return 0;
  if (WIFEXITED(status))
    return vs_error_set(err, 0, "hook %s exited with status %d", h->path, WEXITSTATUS(status));
  return vs_error_set(err, 0, "hook %s killed by signal %d", h->path, WTERMSIG(status));
}

int ctr_hooks_run(const ctr_spec *spec, enum ctr_hook_kind k, const char *state_json,
                  vs_error **err) {
  for (size_t i = 0; i < spec->n_hooks[k]; i++)
    if (ctr_hook_run(&spec->hooks[k][i], state_json, err) < 0)
      return vs_error_wrap(err, "%s hook %zu", ctr_hook_name(k), i);
  return 0;
}
