/* vessel-vmm ctl PATH COMMAND [ARGS]: the command-line client of the control socket
 * (docs/lifecycle.md). Each command becomes one JSON request; the reply's result is printed as
 * JSON on stdout, an error reply on stderr with exit status 1. */
#include <getopt.h>
#include <string.h>

#include "base/base.h"
#include "cli/vmm/ctl.h"
#include "vm/vm.h"

static const char ctl_usage[] =
    "Usage: vessel-vmm ctl SOCKET COMMAND [ARGS]\n"
    "\n"
    "Send a command to a running vessel-vmm's control socket (--api-sock SOCKET).\n"
    "\n"
    "Commands:\n"
    "  status                      running, paused or migrating\n"
    "  info                        harts, memory, devices, disks\n"
    "  pause | resume              stop / continue the guest (its clock stops too)\n"
    "  powerdown                   press the power button: the guest shuts down cleanly\n"
    "  quit                        stop the VM at once\n"
    "  snapshot DIR [--quit] [--disk-overlay]\n"
    "                              save the whole VM into DIR (restore with --restore DIR);\n"
    "                              --quit stops it afterwards (suspend to disk);\n"
    "                              --disk-overlay freezes each writable disk as the snapshot's\n"
    "                              base and continues on a new overlay PATH.N.qcow2\n"
    "                              (during --record: a replay point, --replay --from DIR)\n"
    "  migrate HOST:PORT           live-migrate to 'vessel-vmm --incoming HOST:PORT' and wait\n"
    "                              until it completed or failed\n"
    "  balloon [TARGET]            (--balloon) the guest's memory target (512M, ...: what it\n"
    "                              keeps; the rest goes into the balloon) and its statistics\n";

typedef struct ctl_cmd {
  const char *name;
  int min_args, max_args; /* positional arguments after the command */
} ctl_cmd;

static const ctl_cmd ctl_cmds[] = {
    {"status", 0, 0},    {"info", 0, 0},     {"pause", 0, 0},   {"resume", 0, 0},  {"quit", 0, 0},
    {"powerdown", 0, 0}, {"snapshot", 1, 1}, {"migrate", 1, 1}, {"balloon", 0, 1},
};

static int ctl_usage_error(const char *msg) {
  fprintf(stderr, "vessel-vmm ctl: %s\nTry 'vessel-vmm ctl --help'.\n", msg);
  return 2;
}

/* Options of `snapshot`: --quit, --disk-overlay. */
static int parse_snapshot_flags(int argc, char **argv, json_t *req) {
  static const struct option opts[] = {
      {"quit", no_argument, NULL, 'q'},
      {"disk-overlay", no_argument, NULL, 'o'},
      {NULL, 0, NULL, 0},
  };
  optind = 1;
  opterr = 0;
  int c;
  while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    if (c == 'q')
      json_object_set_new(req, "quit", json_true());
    else if (c == 'o')
      json_object_set_new(req, "disk_overlay", json_true());
    else
      return -1;
  }
  return optind;
}

static json_t *build_request(const ctl_cmd *cmd, int argc, char **argv) {
  json_t *req = json_pack("{s:s}", "command", cmd->name);
  int first = 1;
  if (strcmp(cmd->name, "snapshot") == 0) {
    first = parse_snapshot_flags(argc, argv, req);
    if (first < 0) {
      json_decref(req);
      return NULL;
    }
  }
  int nargs = argc - first;
  if (nargs < cmd->min_args || nargs > cmd->max_args) {
    json_decref(req);
    return NULL;
  }
  if (strcmp(cmd->name, "snapshot") == 0)
    json_object_set_new(req, "dir", json_string(argv[first]));
  else if (strcmp(cmd->name, "migrate") == 0)
    json_object_set_new(req, "dest", json_string(argv[first]));
  else if (strcmp(cmd->name, "balloon") == 0 && nargs == 1) {
    uint64_t target;
    if (vs_parse_size(argv[first], "TARGET", &target, NULL) < 0) {
      json_decref(req);
      return NULL;
    }
    json_object_set_new(req, "target", json_integer((json_int_t)target));
  }
  return req;
}

int vmm_ctl_main(int argc, char **argv) {
  if (argc >= 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
    fputs(ctl_usage, stdout);
    return 0;
  }
  if (argc < 3)
    return ctl_usage_error("needs a SOCKET and a COMMAND");
  const char *path = argv[1];
  const ctl_cmd *cmd = NULL;
  for (size_t i = 0; i < ARRAY_SIZE(ctl_cmds); i++)
    if (strcmp(argv[2], ctl_cmds[i].name) == 0)
      cmd = &ctl_cmds[i];
  if (!cmd)
    return ctl_usage_error("unknown command");
  _cleanup_json_ json_t *req = build_request(cmd, argc - 2, argv + 2);
  if (!req)
    return ctl_usage_error("wrong arguments for this command");
  static const char *const migrate_end[] = {"migration-completed", "migration-failed", NULL};
  bool wait = strcmp(cmd->name, "migrate") == 0;
  _cleanup_error_ vs_error *err = NULL;
  _cleanup_json_ json_t *reply = NULL;
  _cleanup_json_ json_t *event = NULL;
  if (vm_control_call(path, req, wait ? migrate_end : NULL, &reply, &event, &err) < 0) {
    vs_error_print(err, "vessel-vmm ctl");
    return 1;
  }
  if (!json_is_true(json_object_get(reply, "ok"))) {
    const char *msg = json_string_value(json_object_get(reply, "error"));
    fprintf(stderr, "vessel-vmm ctl: %s: %s\n", cmd->name, msg ? msg : "failed");
    return 1;
  }
  json_t *out = event ? event : json_object_get(reply, "result");
  json_dumpf(out ? out : json_null(), stdout, JSON_INDENT(2) | JSON_SORT_KEYS);
  fputc('\n', stdout);
  const char *ev = event ? json_string_value(json_object_get(event, "event")) : NULL;
  return ev && strcmp(ev, "migration-failed") == 0 ? 1 : 0;
}
