/* kill [--all] ID [SIGNAL]: SIGNAL by name (KILL, SIGKILL) or number; default SIGTERM. */
#include "cmd.h"

#include <signal.h>
#include <string.h>

static int parse_signal(const char *s) {
  static const struct {
    const char *name;
    int num;
  } sigs[] = {
      {"HUP", SIGHUP},       {"INT", SIGINT},   {"QUIT", SIGQUIT},   {"ILL", SIGILL},
      {"TRAP", SIGTRAP},     {"ABRT", SIGABRT}, {"BUS", SIGBUS},     {"FPE", SIGFPE},
      {"KILL", SIGKILL},     {"USR1", SIGUSR1}, {"SEGV", SIGSEGV},   {"USR2", SIGUSR2},
      {"PIPE", SIGPIPE},     {"ALRM", SIGALRM}, {"TERM", SIGTERM},   {"CHLD", SIGCHLD},
      {"CONT", SIGCONT},     {"STOP", SIGSTOP}, {"TSTP", SIGTSTP},   {"TTIN", SIGTTIN},
      {"TTOU", SIGTTOU},     {"URG", SIGURG},   {"XCPU", SIGXCPU},   {"XFSZ", SIGXFSZ},
      {"VTALRM", SIGVTALRM}, {"PROF", SIGPROF}, {"WINCH", SIGWINCH}, {"IO", SIGIO},
      {"PWR", SIGPWR},       {"SYS", SIGSYS},
  };
  char *end;
  long n = strtol(s, &end, 10);
  if (*s && !*end)
    return n > 0 && n < NSIG ? (int)n : -1;
  if (!strncasecmp(s, "SIG", 3))
    s += 3;
  for (size_t i = 0; i < ARRAY_SIZE(sigs); i++)
    if (!strcasecmp(s, sigs[i].name))
      return sigs[i].num;
  if (!strncasecmp(s, "RTMIN+", 6)) {
    n = strtol(s + 6, &end, 10);
    if (!*end && n >= 0 && SIGRTMIN + n <= SIGRTMAX)
      return SIGRTMIN + (int)n;
  }
  return -1;
}

int cmd_kill(ctr_runtime *rt, int argc, char **argv, vs_error **err) {
  static const struct option opts[] = {{"all", no_argument, NULL, 'a'}, {NULL, 0, NULL, 0}};
  bool all = false;
  int c;
  while ((c = getopt_long(argc, argv, "a", opts, NULL)) != -1) {
    if (c != 'a')
      return rt_usage_error(err, "kill", "unknown option");
    all = true;
  }
  int n = argc - optind;
  if (n < 1 || n > 2)
    return rt_usage_error(err, "kill", "expects ID [SIGNAL]");
  int sig = SIGTERM;
  if (n == 2 && (sig = parse_signal(argv[optind + 1])) < 0)
    return rt_usage_error(err, "kill", "\"%s\" is not a signal", argv[optind + 1]);
  return ctr_kill(rt, argv[optind], sig, all, err) < 0 ? 1 : 0;
}
