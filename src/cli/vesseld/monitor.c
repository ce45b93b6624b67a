/* vessel-monitor: started by vesseld, one per running container (see src/daemon/monitor.c). */
#include "ctr/ctr.h"
#include "daemon/daemon.h"

#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <string.h>

/* `--spare`: receive the argument vector (NUL-separated) and the ready pipe (which becomes fd 3,
 * replacing the socket) and the monitor's log (fd 2). Returns the new argc, 0 at the socket's
 * end, -1 on a malformed message. */
static int spare_arguments(char ***out) {
  static char buf[8192];
  int fds[2];
  size_t nfds = 0;
  ssize_t n = vs_recv_fds(3, buf, sizeof(buf) - 1, fds, 2, &nfds, NULL);
  if (n <= 0 || nfds < 1) {
    for (size_t i = 0; i < nfds; i++)
      close(fds[i]);
    return n == 0 ? 0 : -1;
  }
  if (dup2(fds[0], 3) < 0 || (nfds == 2 && dup2(fds[1], 2) < 0))
    return -1;
  for (size_t i = 0; i < nfds; i++)
    close(fds[i]);
  buf[n] = 0;
  size_t argc = 0;
  for (ssize_t i = 0; i < n; i++)
    argc += buf[i] == 0;
  char **argv = vs_malloc0((argc + 1) * sizeof(char *));
  char *p = buf;
  for (size_t i = 0; i < argc; i++, p += strlen(p) + 1)
    argv[i] = p;
  *out = argv;
  return (int)argc;
}

int main(int argc, char **argv) {
  static const struct option opts[] = {{"id", required_argument, NULL, 'i'},
                                       {"bundle", required_argument, NULL, 'b'},
                                       {"runtime-root", required_argument, NULL, 'r'},
                                       {"log", required_argument, NULL, 'l'},
                                       {"ready-fd", required_argument, NULL, 'f'},
                                       {"tty", no_argument, NULL, 't'},
                                       {"stdin", no_argument, NULL, 's'},
                                       {"exec", required_argument, NULL, 'e'},
                                       {"log-max-size", required_argument, NULL, 'S'},
                                       {"log-max-files", required_argument, NULL, 'F'},
                                       {"log-attrs", required_argument, NULL, 'A'},
                                       {"log-compress", no_argument, NULL, 'C'},
                                       {NULL, 0, NULL, 0}};
  vs_log_configure("vessel-monitor", VS_LOG_INFO, VS_LOG_FORMAT_TEXT, 2);
  vs_error *err = NULL;
  /* A spare warms up (the sealed re-exec and its dynamic linking) in the background: at a low
   * priority, so that it does not slow the container start that made vesseld ask for it. */
  bool spare = argc >= 2 && !strcmp(argv[1], "--spare");
  if (spare && !getenv("VESSEL_SPARE_NICE")) {
    errno = 0;
    int prio = getpriority(PRIO_PROCESS, 0);
    char text[16];
    snprintf(text, sizeof(text), "%d", errno ? 0 : prio);
    setenv("VESSEL_SPARE_NICE", text, 1); /* once: the re-exec below comes here again */
    if (setpriority(PRIO_PROCESS, 0, 10) < 0)
      vs_log_debug("spare monitor: setpriority: %s", strerror(errno));
  }
  /* the container's init is cloned from this process: run from a copy nobody can write to, as
   * vessel-runtime does (CVE-2019-5736) */
  if (ctr_reexec_sealed(argv, &err) < 0) {
    vs_error_print(err, "vessel-monitor");
    vs_error_free(err);
    return 1;
  }
  char **spare_argv = NULL;
  if (spare) {
    /* warm: back to the priority every monitor has (and its container inherits) before
     * waiting; a spare that cannot ends, and vesseld starts monitors the slow way */
    const char *prio = getenv("VESSEL_SPARE_NICE");
    int was = prio ? (int)strtol(prio, NULL, 10) : 0;
    unsetenv("VESSEL_SPARE_NICE");
    if (setpriority(PRIO_PROCESS, 0, was) < 0)
      return 0;
    /* started ahead by vesseld: the real arguments and descriptors come on fd 3 (see
     * supervisor.c); its end without them means vesseld went away */
    argc = spare_arguments(&spare_argv);
    if (argc <= 0)
      return argc < 0 ? 2 : 0;
    argv = spare_argv;
  }
  vd_monitor_options o = {.ready_fd = -1};
  const char *exec_file = NULL;
  int c;
  while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    uint64_t fd;
    switch (c) {
    case 'i':
      o.id = optarg;
      break;
    case 'b':
      o.bundle = optarg;
      break;
    case 't':
      o.tty = true;
      break;
    case 'e':
      exec_file = optarg;
      break;
    case 's':
      o.open_stdin = true;
      break;
    case 'r':
      o.runtime_root = optarg;
      break;
    case 'l':
      o.log_path = optarg;
      break;
    case 'A':
      o.log_attrs = optarg;
      break;
    case 'C':
      o.log_compress = true;
      break;
    case 'S':
    case 'F':
      if (vs_parse_u64(optarg, c == 'S' ? "--log-max-size" : "--log-max-files", &fd, &err) < 0 ||
          fd > (uint64_t)INT64_MAX || (c == 'F' && fd > 1000)) {
        if (!err)
          vs_error_set(&err, EINVAL, "%s: out of range", optarg);
        vs_error_print(err, "vessel-monitor");
        vs_error_free(err);
        return 2;
      }
      if (c == 'S')
        o.log_max_size = (int64_t)fd;
      else
        o.log_max_files = (unsigned)fd;
      break;
    case 'f':
      if (vs_parse_u64(optarg, "--ready-fd", &fd, &err) < 0 || fd < 3 || fd > 1024) {
        if (!err)
          vs_error_set(&err, EINVAL, "--ready-fd %s: expected a descriptor above 2", optarg);
        vs_error_print(err, "vessel-monitor");
        vs_error_free(err);
        return 2;
      }
      o.ready_fd = (int)fd;
      break;
    default:
      return 2;
    }
  }
  if (exec_file && o.id && o.runtime_root) {
    int status = vd_exec_helper_run(o.runtime_root, o.id, exec_file, &err);
    if (status < 0) {
      vs_error_print(err, "vessel-monitor");
      vs_error_free(err);
      return 126; /* docker exec's code for a command that could not be run */
    }
    return status;
  }
  if (!o.id || !o.bundle || !o.runtime_root || !o.log_path) {
    fprintf(stderr, "usage: vessel-monitor --id ID --bundle DIR --runtime-root DIR --log FILE "
                    "[--ready-fd N]\n");
    return 2;
  }
  if (vd_monitor_run(&o, &err) < 0) {
    vs_error_print(err, "vessel-monitor");
    vs_error_free(err);
    return 1;
  }
  return 0;
}
