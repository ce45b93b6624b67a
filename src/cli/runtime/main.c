/* vessel-runtime: an OCI runtime, command-line compatible with runc. */
#include "cmd.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <string.h>

static const struct {
  const char *name;
  rt_cmd_fn fn;
  bool sealed; /* spawns processes inside a container: run from the sealed copy */
} commands[] = {
    {"create", cmd_create, true},  {"start", cmd_start, false},       {"run", cmd_run, true},
    {"state", cmd_state, false},   {"kill", cmd_kill, false},         {"delete", cmd_delete, false},
    {"exec", cmd_exec, true},      {"pause", cmd_pause, false},       {"resume", cmd_resume, false},
    {"ps", cmd_ps, false},         {"list", cmd_list, false},         {"update", cmd_update, false},
    {"events", cmd_events, false}, {"features", cmd_features, false}, {"spec", cmd_spec, false},
};

int rt_usage_error(vs_error **err, const char *cmd, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  _cleanup_free_ char *m = NULL;
  if (vasprintf(&m, fmt, ap) < 0)
    abort();
  va_end(ap);
  vs_error_set(err, 0, "%s: %s", cmd, m);
  return 2;
}

int rt_one_id(int argc, char **argv, const char **id, vs_error **err) {
  if (argc - optind != 1)
    return rt_usage_error(err, argv[0], "expects exactly one container id (got %d arguments)",
                          argc - optind);
  *id = argv[optind];
  return 0;
}

int rt_print_json(json_t *j, bool pretty) {
  char *s = json_dumps(j, pretty ? JSON_INDENT(2) : JSON_COMPACT);
  if (!s)
    return 1;
  puts(s);
  free(s);
  return 0;
}

int rt_parse_count(const char *s, const char *option, int *out, vs_error **err) {
  char *end;
  errno = 0;
  long n = strtol(s, &end, 10);
  if (errno || end == s || *end || n < 0 || n > INT32_MAX)
    return vs_error_set(err, 0, "%s: \"%s\" is not a non-negative number", option, s);
  *out = (int)n;
  return 0;
}

int rt_create_opt(int c, ctr_create_opts *o, vs_error **err) {
  switch (c) {
  case 'b':
    o->bundle = optarg;
    return 1;
  case 'p':
    o->pid_file = optarg;
    return 1;
  case 'c':
    o->console_socket = optarg;
    return 1;
  case 'N':
    o->no_pivot = true;
    return 1;
  case 'K':
    o->no_new_keyring = true;
    return 1;
  case 'S':
    return 1;
  case 'F':
    return rt_parse_count(optarg, "--preserve-fds", &o->preserve_fds, err) < 0 ? -1 : 1;
  default:
    return 0;
  }
}

static void usage(void) {
  fputs("usage: vessel-runtime [--root DIR] [--log FILE] [--log-format text|json] [--debug] "
        "COMMAND [OPTIONS] ...\n"
        "commands: create start run state kill delete exec pause resume ps list update events "
        "features spec\n",
        stderr);
}

int main(int argc, char **argv) {
  const char *root = CTR_DEFAULT_ROOT, *log_path = NULL;
  vs_log_format fmt = VS_LOG_FORMAT_TEXT;
  vs_log_level level = VS_LOG_WARN;
  _cleanup_error_ vs_error *err = NULL;
  static const struct option opts[] = {
      {"root", required_argument, NULL, 'r'},       {"log", required_argument, NULL, 'l'},
      {"log-format", required_argument, NULL, 'f'}, {"debug", no_argument, NULL, 'd'},
      {"systemd-cgroup", no_argument, NULL, 's'},   {"rootless", required_argument, NULL, 'R'},
      {"criu", required_argument, NULL, 'C'},       {"help", no_argument, NULL, 'h'},
      {"version", no_argument, NULL, 'v'},          {NULL, 0, NULL, 0},
  };
  int c;
  /* "+": stop at the command name; its options are the command's. */
  while ((c = getopt_long(argc, argv, "+hv", opts, NULL)) != -1) {
    switch (c) {
    case 'r':
      root = optarg;
      break;
    case 'l':
      log_path = optarg;
      break;
    case 'f':
      if (!strcmp(optarg, "json"))
        fmt = VS_LOG_FORMAT_JSON;
      else if (strcmp(optarg, "text") != 0) {
        fprintf(stderr, "vessel-runtime: --log-format: \"%s\" is not text or json\n", optarg);
        return 2;
      }
      break;
    case 'd':
      level = VS_LOG_DEBUG;
      break;
    case 's':
      fprintf(stderr, "vessel-runtime: --systemd-cgroup is not supported: use the cgroupfs "
                      "cgroup manager\n");
      return 2;
    case 'R':
    case 'C':
      break;
    case 'v':
      printf("vessel-runtime version 0.1.0\nspec: %s\n", CTR_OCI_VERSION);
      return 0;
    case 'h':
      usage();
      return 0;
    default:
      usage();
      return 2;
    }
  }
  if (log_path && log_path[0]) {
    int fd = open(log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
      fprintf(stderr, "vessel-runtime: --log %s: %s\n", log_path, strerror(errno));
      return 1;
    }
    vs_log_configure("vessel-runtime", level, fmt, fd);
  } else {
    vs_log_configure("vessel-runtime", level, fmt, 2);
  }
  if (optind >= argc) {
    usage();
    return 2;
  }
  int cargc = argc - optind;
  char **cargv = argv + optind;
  for (size_t i = 0; i < ARRAY_SIZE(commands); i++) {
    if (strcmp(cargv[0], commands[i].name) != 0)
      continue;
    if (commands[i].sealed && ctr_reexec_sealed(argv, &err) < 0) {
      vs_error_print(err, "vessel-runtime");
      return 1;
    }
    ctr_runtime rt = {.root = (char *)root};
    optind = 1;
    int status = commands[i].fn(&rt, cargc, cargv, &err);
    if (err) {
      vs_error_print(err, "vessel-runtime");
      if (log_path && log_path[0])
        vs_log_error("%s", err->msg);
      return status ? status : 1;
    }
    return status;
  }
  fprintf(stderr, "vessel-runtime: unknown command \"%s\"\n", cargv[0]);
  usage();
  return 2;
}
