/* vessel-init: the init vesseld puts at /dev/init in containers run with --init (as dockerd
 * does with docker-init). It runs the command as its child, forwards the signals it receives
 * to it, reaps every process the kernel re-parents to it (orphans that would otherwise stay
 * zombies under a PID 1 that never waits), and exits with the child's status (128 + the signal
 * if a signal ended it). Statically linked and free of the project's libraries, so any image
 * can run it.
 *
 *   vessel-init [--] COMMAND [ARG]...
 */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

/* Signals that are about this process itself (faults, terminal stops): not forwarded. */
static bool is_own_signal(int sig) {
  return sig == SIGFPE || sig == SIGILL || sig == SIGSEGV || sig == SIGBUS || sig == SIGABRT ||
         sig == SIGTRAP || sig == SIGSYS || sig == SIGTTIN || sig == SIGTTOU || sig == SIGTSTP;
}

static void run_child(char **argv, const sigset_t *old) {
  /* its own process group, in the terminal's foreground when there is one, so that a
   * terminal's ^C reaches the command as it would without an init */
  setpgid(0, 0);
  if (isatty(STDIN_FILENO)) {
    signal(SIGTTOU, SIG_IGN);
    tcsetpgrp(STDIN_FILENO, getpgrp());
    signal(SIGTTOU, SIG_DFL);
  }
  sigprocmask(SIG_SETMASK, old, NULL);
  execvp(argv[0], argv);
  int e = errno;
  fprintf(stderr, "vessel-init: exec %s: %s\n", argv[0], strerror(e));
  _exit(e == ENOENT ? 127 : 126);
}

/* Reap every child that ended; 1 when the command was among them (its status in *status). */
static int reap(pid_t child, int *status) {
  int found = 0;
  for (;;) {
    int st;
    pid_t p = waitpid(-1, &st, WNOHANG);
    if (p <= 0)
      return found;
    if (p == child) {
      *status = st;
      found = 1;
    }
  }
}

int main(int argc, char **argv) {
  int first = 1;
  if (first < argc && !strcmp(argv[first], "--"))
    first++;
  if (first >= argc) {
    fprintf(stderr, "usage: vessel-init [--] COMMAND [ARG]...\n");
    return 2;
  }
  /* not PID 1 (e.g. a shared PID namespace): orphans come to us all the same */
  if (getpid() != 1)
    prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
  sigset_t all, old;
  sigfillset(&all);
  sigprocmask(SIG_SETMASK, &all, &old);
  pid_t child = fork();
  if (child < 0) {
    perror("vessel-init: fork");
    return 1;
  }
  if (child == 0)
    run_child(argv + first, &old);
  int status = 0;
  for (;;) {
    siginfo_t si;
    int sig = sigwaitinfo(&all, &si);
    if (sig < 0)
      continue; /* EINTR */
    if (sig == SIGCHLD) {
      if (reap(child, &status))
        break;
    } else if (!is_own_signal(sig)) {
      kill(child, sig);
    }
  }
  /* the command ended: reap what is left, then leave (the kernel ends the rest of the PID
   * namespace with us) */
  int ignored;
  reap(-1, &ignored);
  if (WIFSIGNALED(status))
    return 128 + WTERMSIG(status);
  return WEXITSTATUS(status);
}
