/* vesseld: the daemon with the Docker Engine API. Options are parsed here; everything else is
 * src/daemon. */
#include "daemon/daemon.h"

#include <errno.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <string.h>
#include <sys/resource.h>

static void usage(FILE *f) {
  fprintf(f, "usage: vesseld [--data-root DIR] [--exec-root DIR] [-H unix:///PATH]...\n"
             "               [--log-level error|warn|info|debug] [--log-format text|json]\n"
             "               [-b|--bridge NAME|none]\n"
             "defaults: --data-root " VD_DEFAULT_DATA_ROOT " --exec-root " VD_DEFAULT_EXEC_ROOT
             " -H " VD_DEFAULT_HOST " --bridge " VD_DEFAULT_BRIDGE "\n");
}

static int parse_level(const char *s, vs_log_level *out, vs_error **err) {
  static const char *const names[] = {"error", "warn", "info", "debug"};
  for (size_t i = 0; i < ARRAY_SIZE(names); i++)
    if (!strcmp(s, names[i]) || (i == 1 && !strcmp(s, "warning"))) {
      *out = (vs_log_level)i;
      return 0;
    }
  return vs_error_set(err, EINVAL, "--log-level %s: expected error, warn, info or debug", s);
}

/* vessel-monitor lives next to vesseld (build/ or the install's bin directory). */
static char *monitor_path(void) {
  char self[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
  if (n <= 0)
    return vs_strdup("vessel-monitor");
  self[n] = 0;
  return vs_asprintf("%s/vessel-monitor", dirname(self));
}

int main(int argc, char **argv) {
  static const struct option opts[] = {{"data-root", required_argument, NULL, 'd'},
                                       {"exec-root", required_argument, NULL, 'x'},
                                       {"host", required_argument, NULL, 'H'},
                                       {"log-level", required_argument, NULL, 'l'},
                                       {"log-format", required_argument, NULL, 'f'},
                                       {"bridge", required_argument, NULL, 'b'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
  vd_options o = {.data_root = VD_DEFAULT_DATA_ROOT, .exec_root = VD_DEFAULT_EXEC_ROOT};
  const char **hosts = vs_malloc0(sizeof(char *) * (size_t)(argc + 1));
  vs_log_level level = VS_LOG_INFO;
  vs_log_format fmt = VS_LOG_FORMAT_TEXT;
  vs_error *err = NULL;
  int c;
  while ((c = getopt_long(argc, argv, "H:b:h", opts, NULL)) != -1) {
    switch (c) {
    case 'd':
      o.data_root = optarg;
      break;
    case 'x':
      o.exec_root = optarg;
      break;
    case 'H':
      hosts[o.n_hosts++] = optarg;
      break;
    case 'b':
      o.bridge = optarg;
      break;
    case 'l':
      if (parse_level(optarg, &level, &err) < 0)
        goto fail;
      break;
    case 'f':
      if (strcmp(optarg, "text") != 0 && strcmp(optarg, "json") != 0) {
        vs_error_set(&err, EINVAL, "--log-format %s: expected text or json", optarg);
        goto fail;
      }
      fmt = strcmp(optarg, "json") ? VS_LOG_FORMAT_TEXT : VS_LOG_FORMAT_JSON;
      break;
    case 'h':
      usage(stdout);
      free(hosts);
      return 0;
    default:
      usage(stderr);
      free(hosts);
      return 2;
    }
  }
  if (optind < argc) {
    vs_error_set(&err, EINVAL, "unexpected argument %s", argv[optind]);
    goto fail;
  }
  if (o.n_hosts == 0)
    hosts[o.n_hosts++] = VD_DEFAULT_HOST;
  o.hosts = hosts;
  vs_log_configure("vesseld", level, fmt, 2);
  /* every connection and every running container's monitor (pidfd) holds a descriptor */
  struct rlimit nofile;
  if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
    nofile.rlim_cur = nofile.rlim_max;
    setrlimit(RLIMIT_NOFILE, &nofile);
  }
  char *mon = monitor_path();
  o.monitor_path = mon;
  vd_daemon *d = vd_daemon_new(&o, &err);
  int rc = d && vd_daemon_run(d, &err) == 0 ? 0 : 1;
  vd_daemon_free(d);
  free(mon);
  if (rc) {
    vs_error_print(err, "vesseld");
    vs_error_free(err);
  }
  free(hosts);
  return rc;
fail:
  vs_error_print(err, "vesseld");
  vs_error_free(err);
  free(hosts);
  return 2;
}
