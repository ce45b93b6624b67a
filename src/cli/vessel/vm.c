/* vessel vm ...: virtual machines through vesseld's /vessel/v1/vms API (docs/api.md). */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <termios.h>
#include <unistd.h>

#define VM_DETACH_KEY 0x1d /* Ctrl-] */
/* What `vessel vm image build` tags the default VM image (docs/guest.md). */
#define VESSEL_DEFAULT_VM_IMAGE "vessel/debian:trixie"

static int vm_usage(vs_error **err, const char *usage) {
  vs_error_set(err, 0, "usage: vessel vm %s", usage);
  return 125;
}

static char *vm_path(const char *name, const char *suffix) {
  _cleanup_free_ char *e = vessel_query_escape(name);
  return vs_asprintf("/vessel/v1/vms/%s%s", e, suffix);
}

/* A size option as the API takes it: a string such as "512M", checked here first. */
static int size_option(const char *what, const char *s, json_t *body, const char *field,
                       vs_error **err) {
  uint64_t v;
  if (vs_parse_size(s, what, &v, err) < 0)
    return -1;
  json_object_set_new(body, field, json_integer((json_int_t)v));
  return 0;
}

/* KEY=VALUE into the object body[field] (labels, and the placement rules made of them). */
static int label_option(const char *field, const char *s, json_t *body, vs_error **err) {
  const char *eq = strchr(s, '=');
  if (!eq || eq == s)
    return vs_error_set(err, 0, "%s: expected KEY=VALUE", s);
  json_t *o = json_object_get(body, field);
  if (!o)
    json_object_set_new(body, field, o = json_object());
  _cleanup_free_ char *k = vs_asprintf("%.*s", (int)(eq - s), s);
  json_object_set_new(o, k, json_string(eq + 1));
  return 0;
}

static int vm_create(vessel_ctx *ctx, int argc, char **argv, vs_error **err) {
  static const struct option opts[] = {{"cpus", required_argument, 0, 'c'},
                                       {"memory", required_argument, 0, 'm'},
                                       {"kernel", required_argument, 0, 'k'},
                                       {"initrd", required_argument, 0, 'i'},
                                       {"append", required_argument, 0, 'a'},
                                       {"disk", required_argument, 0, 'd'},
                                       {"disk-size", required_argument, 0, 's'},
                                       {"network", required_argument, 0, 'n'},
                                       {"publish", required_argument, 0, 'p'},
                                       {"pool", required_argument, 0, 'P'},
                                       {"qos", required_argument, 0, 'q'},
                                       {"node", required_argument, 0, 'N'},
                                       {"label", required_argument, 0, 'l'},
                                       {"node-selector", required_argument, 0, 'S'},
                                       {"anti-affinity", required_argument, 0, 'A'},
                                       {"affinity", required_argument, 0, 'F'},
                                       {"start", no_argument, 0, 'T'},
                                       {"restart", required_argument, 0, 'r'},
                                       {"image", required_argument, 0, 'I'},
                                       {0, 0, 0, 0}};
  static const char usage[] =
      "create NAME [--image REF] [--cpus N] [--memory SIZE] [--disk BASE] [--disk-size SIZE] "
      "[--network NET "
      "[--publish [IP:]HOST:GUEST[/udp]]...] [--pool POOL [--qos "
      "guaranteed|burstable|best-effort]] [--restart no|always|on-failure|unless-stopped] "
      "[--kernel PATH --initrd PATH --append ARGS] [cluster: --node N --label K=V "
      "--node-selector K=V --anti-affinity K=V --affinity K=V --start]";
  _cleanup_(vs_json_decrefp) json_t *body = json_object();
  int c;
  optind = 1;
  while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    uint64_t n;
    switch (c) {
    case 'c':
      if (vs_parse_u64(optarg, "--cpus", &n, err) < 0)
        return 125;
      json_object_set_new(body, "Cpus", json_integer((json_int_t)n));
      break;
    case 'm':
      if (size_option("--memory", optarg, body, "Memory", err) < 0)
        return 125;
      break;
    case 's':
      if (size_option("--disk-size", optarg, body, "DiskSize", err) < 0)
        return 125;
      break;
    case 'k':
    case 'i':
    case 'd': {
      /* the daemon opens them: make relative paths absolute here */
      _cleanup_free_ char *abs = realpath(optarg, NULL);
      json_object_set_new(body,
                          c == 'k'   ? "Kernel"
                          : c == 'i' ? "Initrd"
                                     : "Disk",
                          json_string(abs ? abs : optarg));
      break;
    }
    case 'a':
      json_object_set_new(body, "Append", json_string(optarg));
      break;
    case 'n':
      json_object_set_new(body, "Network", json_string(optarg));
      break;
    case 'P':
      json_object_set_new(body, "Pool", json_string(optarg));
      break;
    case 'q':
      json_object_set_new(body, "Qos", json_string(optarg));
      break;
    case 'r':
      json_object_set_new(body, "RestartPolicy", json_string(optarg));
      break;
    case 'I':
      json_object_set_new(body, "Image", json_string(optarg));
      break;
    case 'N':
      json_object_set_new(body, "Node", json_string(optarg));
      break;
    case 'T':
      json_object_set_new(body, "Start", json_true());
      break;
    case 'l':
    case 'S':
    case 'A':
    case 'F':
      if (label_option(c == 'l'   ? "Labels"
                       : c == 'S' ? "NodeSelector"
                       : c == 'A' ? "AntiAffinity"
                                  : "Affinity",
                       optarg, body, err) < 0)
        return 125;
      break;
    case 'p': {
      /* the daemon parses the specs: its errors name the one that is wrong */
      json_t *list = json_object_get(body, "Publish");
      if (!list)
        json_object_set_new(body, "Publish", list = json_array());
      json_array_append_new(list, json_string(optarg));
      break;
    }
    default:
      return 125;
    }
  }
  if (optind != argc - 1)
    return vm_usage(err, usage);
  json_object_set_new(body, "Name", json_string(argv[optind]));
  json_t *out = NULL;
  if (vessel_api_json(ctx, "POST", "/vessel/v1/vms", body, &out, err) < 0)
    return 1;
  /* the ID alone on stdout, as docker create prints it; in a cluster, where it went on stderr */
  const char *node = json_string_value(json_object_get(out, "Node"));
  if (node)
    fprintf(stderr, "%s: on node %s\n", argv[optind], node);
  printf("%s\n", json_string_value(json_object_get(out, "Id")));
  json_decref(out);
  return 0;
}

static int vm_action(vessel_ctx *ctx, const char *action, int argc, char **argv, vs_error **err) {
  int first = 1;
  _cleanup_free_ char *suffix = vs_asprintf("/%s", action);
  bool timed = !strcmp(action, "stop") || !strcmp(action, "restart");
  if (timed && first + 1 < argc && (!strcmp(argv[first], "-t") || !strcmp(argv[first], "--time"))) {
    uint64_t t;
    if (vs_parse_u64(argv[first + 1], "-t", &t, err) < 0)
      return 125;
    free(suffix);
    suffix = vs_asprintf("/%s?t=%llu", action, (unsigned long long)t);
    first += 2;
  } else if (!strcmp(action, "kill") && first + 1 < argc &&
             (!strcmp(argv[first], "-s") || !strcmp(argv[first], "--signal"))) {
    _cleanup_free_ char *sig = vessel_query_escape(argv[first + 1]);
    free(suffix);
    suffix = vs_asprintf("/kill?signal=%s", sig);
    first += 2;
  }
  if (first >= argc) {
    _cleanup_free_ char *u = vs_asprintf("%s%s NAME...", action,
                                         timed                     ? " [-t SECONDS]"
                                         : !strcmp(action, "kill") ? " [-s SIGNAL]"
                                                                   : "");
    return vm_usage(err, u);
  }
  _cleanup_free_ char *what = vs_asprintf("vessel vm %s", action);
  return vessel_api_each(ctx, argc, argv, first, "POST", "/vessel/v1/vms/", suffix, what);
}

static int vm_rm(vessel_ctx *ctx, int argc, char **argv, vs_error **err) {
  bool force;
  int first = vessel_force_operands(argc, argv, &force);
  if (first < 0)
    return vm_usage(err, "rm [-f] NAME...");
  return vessel_api_each(ctx, argc, argv, first, "DELETE", "/vessel/v1/vms/",
                         force ? "?force=1" : "", "vessel vm rm");
}

/* vm ls --cluster: every guest of the cluster, with its node and phase. */
static int vm_ls_cluster(vessel_ctx *ctx, vs_error **err) {
  json_t *list = NULL;
  if (vessel_api_json(ctx, "GET", "/vessel/v1/guests", NULL, &list, err) < 0)
    return 1;
  printf("%-20s %-12s %-16s %-8s %-5s %-10s %s\n", "NAME", "KIND", "NODE", "PHASE", "CPUS",
         "MEMORY", "VM ID");
  size_t i;
  json_t *g;
  json_array_foreach(list, i, g) {
    const char *node = json_string_value(json_object_get(g, "Node"));
    const char *id = json_string_value(json_object_get(g, "Id"));
    _cleanup_free_ char *mem =
        vessel_human_size((uint64_t)json_integer_value(json_object_get(g, "Memory")));
    printf("%-20s %-12s %-16s %-8s %-5.4g %-10s %.12s\n",
           json_string_value(json_object_get(g, "Name")),
           json_string_value(json_object_get(g, "Kind"))
               ? json_string_value(json_object_get(g, "Kind"))
               : "-",
           node ? node : "-",
           json_string_value(json_object_get(g, "Phase"))
               ? json_string_value(json_object_get(g, "Phase"))
               : "-",
           json_number_value(json_object_get(g, "Cpus")), mem, id && *id ? id : "-");
  }
  json_decref(list);
  return 0;
}

static int vm_ls(vessel_ctx *ctx, int argc, char **argv, vs_error **err) {
  if (argc == 2 && !strcmp(argv[1], "--cluster"))
    return vm_ls_cluster(ctx, err);
  bool quiet = argc == 2 && (!strcmp(argv[1], "-q") || !strcmp(argv[1], "--quiet"));
  if (argc > 1 && !quiet)
    return vm_usage(err, "ls [-q | --cluster]");
  json_t *list = NULL;
  if (vessel_api_json(ctx, "GET", "/vessel/v1/vms", NULL, &list, err) < 0)
    return 1;
  if (!quiet)
    printf("%-20s %-14s %-9s %-5s %-10s %s\n", "NAME", "VM ID", "STATUS", "CPUS", "MEMORY",
           "CREATED");
  size_t i;
  json_t *vm;
  json_array_foreach(list, i, vm) {
    const char *name = json_string_value(json_object_get(vm, "Name"));
    if (quiet) {
      printf("%s\n", name ? name : "");
      continue;
    }
    _cleanup_free_ char *mem =
        vessel_human_size((uint64_t)json_integer_value(json_object_get(vm, "Memory")));
    _cleanup_free_ char *created =
        vessel_human_time(json_string_value(json_object_get(vm, "Created")));
    printf("%-20s %-14.12s %-9s %-5lld %-10s %s\n", name ? name : "",
           json_string_value(json_object_get(vm, "Id")),
           json_string_value(json_object_get(vm, "Status")),
           (long long)json_integer_value(json_object_get(vm, "Cpus")), mem, created);
  }
  json_decref(list);
  return 0;
}

int vessel_inspect_each(vessel_ctx *ctx, int argc, char **argv, int first, const char *prefix,
                        const char *what) {
  json_t *all = json_array();
  int rc = 0;
  for (int i = first; i < argc; i++) {
    _cleanup_free_ char *esc = vessel_query_escape(argv[i]);
    _cleanup_free_ char *target = vs_asprintf("%s%s", prefix, esc);
    json_t *obj = NULL;
    vs_error *e = NULL;
    if (vessel_api_json(ctx, "GET", target, NULL, &obj, &e) < 0) {
      vs_error_print(e, what);
      vs_error_free(e);
      rc = 1;
      continue;
    }
    json_array_append_new(all, obj);
  }
  vessel_print_json(all);
  return rc;
}

static int vm_inspect(vessel_ctx *ctx, int argc, char **argv, vs_error **err) {
  if (argc < 2)
    return vm_usage(err, "inspect NAME...");
  return vessel_inspect_each(ctx, argc, argv, 1, "/vessel/v1/vms/", "vessel vm inspect");
}

static int write_out(void *arg, const char *data, size_t len, vs_error **err) {
  (void)arg;
  return vs_write_all(1, data, len, err);
}

static int vm_console(vessel_ctx *ctx, const char *name, bool input, bool history, vs_error **err) {
  _cleanup_free_ char *target = vm_path(name, history ? "/console?logs=1" : "/console");
  vessel_hijack hj;
  if (vessel_api_hijack(ctx, "POST", target, &hj, err) < 0)
    return 1;
  struct termios saved;
  bool raw = input && vessel_tty_raw(&saved);
  if (raw)
    fprintf(stderr, "Connected to the console of VM %s (detach with Ctrl-])\r\n", name);
  /* without input (logs -f) nothing goes to the guest; when stdin ends, the console is still
   * shown until the user detaches or the VM ends */
  vessel_relay_opts ro = {
      .out = write_out, .input = input, .shutdown_at_eof = false, .detach_key = VM_DETACH_KEY};
  int rc = vessel_relay(&hj, &ro, err) < 0 ? 1 : 0;
  if (raw) {
    tcsetattr(0, TCSANOW, &saved);
    fprintf(stderr, "\nDetached from VM %s\n", name);
  }
  close(hj.fd);
  free(hj.pending);
  return rc;
}

static int vm_logs(vessel_ctx *ctx, int argc, char **argv, vs_error **err) {
  bool follow = argc == 3 && (!strcmp(argv[1], "-f") || !strcmp(argv[1], "--follow"));
  if (argc != 2 && !follow)
    return vm_usage(err, "logs [-f] NAME");
  const char *name = argv[argc - 1];
  if (follow)
    return vm_console(ctx, name, false, true, err);
  _cleanup_free_ char *target = vm_path(name, "/logs");
  return vessel_api_stream(ctx, "GET", target, NULL, write_out, NULL, err) < 0 ? 1 : 0;
}

static int vm_snapshot_cmd(vessel_ctx *ctx, const char *action, int argc, char **argv,
                           vs_error **err) {
  if (argc != 3) {
    _cleanup_free_ char *u = vs_asprintf("%s NAME SNAPSHOT", action);
    return vm_usage(err, u);
  }
  _cleanup_free_ char *snap = vessel_query_escape(argv[2]);
  _cleanup_free_ char *q = vs_asprintf("/%s?name=%s", action, snap);
  _cleanup_free_ char *target = vm_path(argv[1], q);
  if (vessel_api_json(ctx, "POST", target, NULL, NULL, err) < 0)
    return 1;
  printf("%s\n", argv[2]);
  return 0;
}

/* clone NAME NEW (a snapshot taken now) or clone NAME:SNAPSHOT NEW */
static int vm_clone(vessel_ctx *ctx, int argc, char **argv, vs_error **err) {
  if (argc != 3)
    return vm_usage(err, "clone NAME[:SNAPSHOT] NEW");
  _cleanup_free_ char *src = vs_strdup(argv[1]);
  char *colon = strchr(src, ':');
  if (colon)
    *colon++ = 0;
  _cleanup_free_ char *name = vessel_query_escape(argv[2]);
  _cleanup_free_ char *snap = colon ? vessel_query_escape(colon) : NULL;
  _cleanup_free_ char *q =
      vs_asprintf("/clone?name=%s%s%s", name, snap ? "&snapshot=" : "", snap ? snap : "");
  _cleanup_free_ char *target = vm_path(src, q);
  json_t *out = NULL;
  if (vessel_api_json(ctx, "POST", target, NULL, &out, err) < 0)
    return 1;
  printf("%s\n", json_string_value(json_object_get(out, "Id")));
  json_decref(out);
  return 0;
}

static int vm_stats(vessel_ctx *ctx, int argc, char **argv, vs_error **err) {
  if (argc < 2)
    return vm_usage(err, "stats NAME...");
  printf("%-20s %-5s %-14s %-12s %-10s %-10s %-12s %s\n", "NAME", "CPUS", "INSTRUCTIONS",
         "HOST CPU", "GUEST MEM", "HOST RSS", "DISK READ", "DISK WRITE");
  int rc = 0;
  for (int i = 1; i < argc; i++) {
    _cleanup_free_ char *target = vm_path(argv[i], "/stats");
    json_t *s = NULL;
    vs_error *e = NULL;
    if (vessel_api_json(ctx, "GET", target, NULL, &s, &e) < 0) {
      vs_error_print(e, "vessel vm stats");
      vs_error_free(e);
      rc = 1;
      continue;
    }
    json_t *cpu = json_object_get(s, "Cpu"), *mem = json_object_get(s, "Memory"),
           *disk = json_object_get(s, "Disk");
    _cleanup_free_ char *guest =
        vessel_human_size((uint64_t)json_integer_value(json_object_get(mem, "Guest")));
    _cleanup_free_ char *rss =
        vessel_human_size((uint64_t)json_integer_value(json_object_get(mem, "HostRss")));
    uint64_t rd_bytes = 0, wr_bytes = 0;
    size_t k;
    json_t *d;
    json_array_foreach(json_object_get(disk, "Disks"), k, d) {
      rd_bytes += (uint64_t)json_integer_value(json_object_get(d, "ReadBytes"));
      wr_bytes += (uint64_t)json_integer_value(json_object_get(d, "WriteBytes"));
    }
    _cleanup_free_ char *rd = vessel_human_size(rd_bytes);
    _cleanup_free_ char *wr = vessel_human_size(wr_bytes);
    double secs = (double)json_integer_value(json_object_get(cpu, "HostNs")) / 1e9;
    printf("%-20s %-5lld %-14lld %-12.2f %-10s %-10s %-12s %s\n",
           json_string_value(json_object_get(s, "Name")),
           (long long)json_integer_value(json_object_get(cpu, "Count")),
           (long long)json_integer_value(json_object_get(cpu, "Instructions")), secs, guest, rss,
           rd, wr);
    json_decref(s);
  }
  return rc;
}

/* vessel vm update NAME [--memory-target SIZE] [--restart POLICY] */
static int vm_update(vessel_ctx *ctx, int argc, char **argv, vs_error **err) {
  static const struct option opts[] = {{"memory-target", required_argument, 0, 'm'},
                                       {"restart", required_argument, 0, 'r'},
                                       {0, 0, 0, 0}};
  static const char usage[] = "update NAME [--memory-target SIZE] [--restart POLICY]";
  _cleanup_(vs_json_decrefp) json_t *body = json_object();
  int c;
  optind = 1;
  while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    if (c == 'm') {
      if (size_option("--memory-target", optarg, body, "MemoryTarget", err) < 0)
        return 125;
    } else if (c == 'r')
      json_object_set_new(body, "RestartPolicy", json_string(optarg));
    else
      return 125;
  }
  if (optind != argc - 1 || json_object_size(body) == 0)
    return vm_usage(err, usage);
  _cleanup_free_ char *target = vm_path(argv[optind], "/update");
  if (vessel_api_json(ctx, "POST", target, body, NULL, err) < 0)
    return 1;
  return 0;
}

/* vessel vm migrate NAME --to NODE: live, to another node of the cluster (docs/cluster.md) */
static int vm_migrate(vessel_ctx *ctx, int argc, char **argv, vs_error **err) {
  static const struct option opts[] = {{"to", required_argument, 0, 't'}, {0, 0, 0, 0}};
  static const char usage[] = "migrate NAME --to NODE";
  const char *to = NULL;
  int c;
  optind = 1;
  while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    if (c == 't')
      to = optarg;
    else
      return 125;
  }
  if (optind != argc - 1 || !to)
    return vm_usage(err, usage);
  _cleanup_(vs_json_decrefp) json_t *body = json_pack("{s:s}", "Node", to);
  _cleanup_free_ char *target = vm_path(argv[optind], "/migrate");
  json_t *out = NULL;
  if (vessel_api_json(ctx, "POST", target, body, &out, err) < 0)
    return 1;
  fprintf(stderr, "%s: on node %s\n", argv[optind], to);
  printf("%s\n", json_string_value(json_object_get(out, "Id")));
  json_decref(out);
  return 0;
}

/* The directory of the running vessel (where vessel-vmm is, in the build tree and installed). */
static char *exe_dir(vs_error **err) {
  char path[4096];
  ssize_t n = readlink("/proc/self/exe", path, sizeof(path) - 1);
  if (n <= 0) {
    vs_error_set(err, errno, "readlink /proc/self/exe");
    return NULL;
  }
  path[n] = 0;
  char *slash = strrchr(path, '/');
  if (slash)
    *slash = 0;
  return vs_strdup(path);
}

/* The builder: $VESSEL_SCRIPTS/build-vm-image, or scripts/build-vm-image of the checkout whose
 * build directory holds this vessel. */
static char *find_image_builder(const char *dir, vs_error **err) {
  const char *env = getenv("VESSEL_SCRIPTS");
  char *p = env && *env ? vs_asprintf("%s/build-vm-image", env)
                        : vs_asprintf("%s/../scripts/build-vm-image", dir);
  if (access(p, R_OK) < 0) {
    vs_error_set(err, errno,
                 "the VM image builder %s (set VESSEL_SCRIPTS to the scripts directory of a vessel "
                 "checkout)",
                 p);
    free(p);
    return NULL;
  }
  return p;
}

/* Run the builder with its progress on our stderr; the result directory (its last line of
 * stdout) into *out_dir. */
static int run_image_builder(const char *builder, const char *ssh_key, bool rebuild, char **out_dir,
                             vs_error **err) {
  const char *argv[6] = {"bash", builder};
  size_t n = 2;
  if (ssh_key) {
    argv[n++] = "--ssh-key";
    argv[n++] = ssh_key;
  }
  if (rebuild)
    argv[n++] = "--rebuild";
  argv[n] = NULL;
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) < 0)
    return vs_error_set(err, errno, "pipe");
  vs_spawn_opts o = VS_SPAWN_OPTS_INIT;
  o.stdout_fd = fds[1];
  pid_t pid;
  int r = vs_spawn((char *const *)argv, &o, &pid, err);
  close(fds[1]);
  if (r < 0) {
    close(fds[0]);
    return -1;
  }
  char buf[8192];
  size_t len = 0;
  for (;;) {
    ssize_t k = read(fds[0], buf + len, sizeof(buf) - 1 - len);
    if (k < 0 && errno == EINTR)
      continue;
    if (k <= 0)
      break;
    len += (size_t)k;
    if (len == sizeof(buf) - 1) { /* keep the tail: the last line is what counts */
      memmove(buf, buf + len / 2, len - len / 2);
      len -= len / 2;
    }
  }
  close(fds[0]);
  buf[len] = 0;
  int status;
  if (vs_wait_pid(pid, &status, err) < 0)
    return -1;
  if (status != 0) {
    _cleanup_free_ char *how = vs_wait_status_str(status);
    return vs_error_set(err, 0, "%s %s", builder, how);
  }
  while (len && buf[len - 1] == '\n')
    buf[--len] = 0;
  char *last = strrchr(buf, '\n');
  last = last ? last + 1 : buf;
  if (last[0] != '/')
    return vs_error_set(err, 0, "%s printed no result directory", builder);
  *out_dir = vs_strdup(last);
  return 0;
}

/* vessel vm image build [--tag REF] [--ssh-key FILE.pub] [--rebuild]: the default VM image
 * (scripts/build-vm-image, on this host), imported into the daemon's VM image store. */
static int vm_image_build(vessel_ctx *ctx, int argc, char **argv, vs_error **err) {
  static const char usage[] = "image build [--tag REF] [--ssh-key FILE.pub] [--rebuild]";
  static const struct option opts[] = {{"tag", required_argument, 0, 't'},
                                       {"ssh-key", required_argument, 0, 'k'},
                                       {"rebuild", no_argument, 0, 'r'},
                                       {0, 0, 0, 0}};
  const char *tag = VESSEL_DEFAULT_VM_IMAGE, *key = NULL;
  bool rebuild = false;
  optind = 1;
  int ch;
  while ((ch = getopt_long(argc, argv, "+t:", opts, NULL)) != -1) {
    if (ch == 't')
      tag = optarg;
    else if (ch == 'k')
      key = optarg;
    else if (ch == 'r')
      rebuild = true;
    else
      return vm_usage(err, usage);
  }
  if (optind != argc)
    return vm_usage(err, usage);
  _cleanup_free_ char *dir = exe_dir(err);
  if (!dir)
    return 1;
  _cleanup_free_ char *builder = find_image_builder(dir, err);
  if (!builder)
    return 1;
  /* the builder boots the second stage in the vessel-vmm that sits beside this vessel */
  _cleanup_free_ char *vmm = vs_asprintf("%s/vessel-vmm", dir);
  if (!getenv("VESSEL_VMM") && access(vmm, X_OK) == 0)
    setenv("VESSEL_VMM", vmm, 1);
  _cleanup_free_ char *out = NULL;
  if (run_image_builder(builder, key, rebuild, &out, err) < 0)
    return 1;
  _cleanup_free_ char *vmjson = vs_asprintf("%s/vm.json", out);
  _cleanup_free_ char *text = NULL;
  if (vs_read_file(vmjson, 1 << 16, &text, NULL, err) < 0)
    return 1;
  json_error_t je;
  _cleanup_(vs_json_decrefp) json_t *body = json_loads(text, 0, &je);
  if (!json_is_object(body)) {
    vs_error_set(err, 0, "%s: %s", vmjson, body ? "not an object" : je.text);
    return 1;
  }
  json_object_set_new(body, "Ref", json_string(tag));
  static const struct {
    const char *field, *file;
  } files[] = {{"Kernel", "Image"}, {"Initrd", "initrd.img"}, {"Disk", "disk.qcow2"}};
  for (size_t i = 0; i < ARRAY_SIZE(files); i++) {
    _cleanup_free_ char *p = vs_asprintf("%s/%s", out, files[i].file);
    json_object_set_new(body, files[i].field, json_string(p));
  }
  json_t *res = NULL;
  if (vessel_api_json(ctx, "POST", "/vessel/v1/images/vm/import", body, &res, err) < 0)
    return 1;
  printf("%s: digest: %s\n", json_string_value(json_object_get(res, "Ref")),
         json_string_value(json_object_get(res, "Digest")));
  json_decref(res);
  return 0;
}

/* vessel vm image push VM REF | push [--image SRC] REF | build ... | ls */
static int vm_image(vessel_ctx *ctx, int argc, char **argv, vs_error **err) {
  static const char usage[] = "image push VM REF | image push [--image SRC] REF | image build "
                              "[--tag REF] [--ssh-key FILE.pub] [--rebuild] | image ls";
  if (argc == 2 && (!strcmp(argv[1], "ls") || !strcmp(argv[1], "list"))) {
    json_t *out = NULL;
    if (vessel_api_json(ctx, "GET", "/vessel/v1/images/vm", NULL, &out, err) < 0)
      return 1;
    printf("%-50s %s\n", "REFERENCE", "DIGEST");
    size_t i;
    json_t *v;
    json_array_foreach(out, i, v) printf("%-50s %s\n", json_string_value(json_object_get(v, "Ref")),
                                         json_string_value(json_object_get(v, "Digest")));
    json_decref(out);
    return 0;
  }
  if (argc >= 2 && !strcmp(argv[1], "build"))
    return vm_image_build(ctx, argc - 1, argv + 1, err);
  if (argc < 3 || strcmp(argv[1], "push") != 0)
    return vm_usage(err, usage);
  _cleanup_(vs_json_decrefp) json_t *body = NULL;
  if (argc == 3) /* push REF: the stored image REF, to its registry */
    body = json_pack("{s:s, s:s}", "Image", argv[2], "Ref", argv[2]);
  else if (argc == 5 && !strcmp(argv[2], "--image"))
    body = json_pack("{s:s, s:s}", "Image", argv[3], "Ref", argv[4]);
  else if (argc == 4)
    body = json_pack("{s:s, s:s}", "Vm", argv[2], "Ref", argv[3]);
  else
    return vm_usage(err, usage);
  json_t *out = NULL;
  if (vessel_api_json(ctx, "POST", "/vessel/v1/images/vm/push", body, &out, err) < 0)
    return 1;
  printf("%s: digest: %s\n", json_string_value(json_object_get(out, "Ref")),
         json_string_value(json_object_get(out, "Digest")));
  json_decref(out);
  return 0;
}

int cmd_vm(vessel_ctx *ctx, int argc, char **argv, vs_error **err) {
  static const char usage[] =
      "COMMAND: create, start, stop, kill, restart, pause, resume, rm, ls, inspect, logs, "
      "console, snapshot, restore, clone, stats, update, image, migrate";
  if (argc < 2)
    return vm_usage(err, usage);
  const char *sub = argv[1];
  argc--;
  argv++;
  if (!strcmp(sub, "create"))
    return vm_create(ctx, argc, argv, err);
  static const char *const actions[] = {"start", "stop", "kill", "restart", "pause", "resume"};
  for (size_t k = 0; k < ARRAY_SIZE(actions); k++)
    if (!strcmp(sub, actions[k]))
      return vm_action(ctx, actions[k], argc, argv, err);
  if (!strcmp(sub, "rm"))
    return vm_rm(ctx, argc, argv, err);
  if (!strcmp(sub, "ls") || !strcmp(sub, "list"))
    return vm_ls(ctx, argc, argv, err);
  if (!strcmp(sub, "inspect"))
    return vm_inspect(ctx, argc, argv, err);
  if (!strcmp(sub, "logs"))
    return vm_logs(ctx, argc, argv, err);
  if (!strcmp(sub, "console")) {
    if (argc != 2)
      return vm_usage(err, "console NAME");
    return vm_console(ctx, argv[1], true, false, err);
  }
  if (!strcmp(sub, "snapshot") || !strcmp(sub, "restore"))
    return vm_snapshot_cmd(ctx, sub, argc, argv, err);
  if (!strcmp(sub, "clone"))
    return vm_clone(ctx, argc, argv, err);
  if (!strcmp(sub, "stats"))
    return vm_stats(ctx, argc, argv, err);
  if (!strcmp(sub, "update"))
    return vm_update(ctx, argc, argv, err);
  if (!strcmp(sub, "image"))
    return vm_image(ctx, argc, argv, err);
  if (!strcmp(sub, "migrate"))
    return vm_migrate(ctx, argc, argv, err);
  vs_error_set(err, 0, "vm: unknown command \"%s\"; %s", sub, usage);
  return 125;
}

/* ---------------------------------------------------------------- vessel pool */

/* An overcommit ratio option: a decimal number such as 1.5 (the daemon checks its range). */
static int ratio_option(const char *what, const char *s, json_t *body, const char *field,
                        vs_error **err) {
  char *end = NULL;
  errno = 0;
  double v = strtod(s, &end);
  if (errno || end == s || *end)
    return vs_error_set(err, 0, "%s \"%s\": expected a number such as 1.5", what, s);
  json_object_set_new(body, field, json_real(v));
  return 0;
}

/* The options of pool create and update into body; the index of the first operand, or -1. */
static int pool_options(int argc, char **argv, json_t *body, vs_error **err) {
  static const struct option opts[] = {{"cpus", required_argument, 0, 'c'},
                                       {"memory", required_argument, 0, 'm'},
                                       {"cpu-overcommit", required_argument, 0, 'C'},
                                       {"memory-overcommit", required_argument, 0, 'M'},
                                       {"cluster", no_argument, 0, 'K'},
                                       {"node-selector", required_argument, 0, 'S'},
                                       {0, 0, 0, 0}};
  int c;
  optind = 1;
  while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    uint64_t n;
    int r = 0;
    switch (c) {
    case 'c':
      r = vs_parse_u64(optarg, "--cpus", &n, err);
      if (r == 0)
        json_object_set_new(body, "Cpus", json_integer((json_int_t)n));
      break;
    case 'm':
      r = size_option("--memory", optarg, body, "Memory", err);
      break;
    case 'C':
      r = ratio_option("--cpu-overcommit", optarg, body, "CpuOvercommit", err);
      break;
    case 'M':
      r = ratio_option("--memory-overcommit", optarg, body, "MemoryOvercommit", err);
      break;
    case 'K': /* a pool of the cluster: its capacity is the sum of its nodes' */
      json_object_set_new(body, "Cluster", json_true());
      break;
    case 'S': {
      const char *eq = strchr(optarg, '=');
      if (!eq || eq == optarg) {
        r = vs_error_set(err, 0, "--node-selector \"%s\": expected KEY=VALUE", optarg);
        break;
      }
      json_t *sel = json_object_get(body, "NodeSelector");
      if (!sel)
        json_object_set_new(body, "NodeSelector", sel = json_object());
      char *k = vs_strdup(optarg);
      k[eq - optarg] = 0;
      json_object_set_new(sel, k, json_string(eq + 1));
      free(k);
      break;
    }
    default:
      return -1;
    }
    if (r < 0)
      return -1;
  }
  return optind;
}

/* pool create NAME ... (POST /vessel/v1/pools), pool update NAME ... (POST .../update) */
static int pool_set(vessel_ctx *ctx, bool create, int argc, char **argv, vs_error **err) {
  static const char usage[] = "usage: vessel pool create|update NAME --cpus N --memory SIZE "
                              "[--cpu-overcommit R] [--memory-overcommit R]\n"
                              "       vessel pool create|update NAME --cluster [--node-selector "
                              "K=V]... [--cpu-overcommit R] [--memory-overcommit R]";
  _cleanup_(vs_json_decrefp) json_t *body = json_object();
  int first = pool_options(argc, argv, body, err);
  if (first < 0)
    return 125;
  if (first != argc - 1)
    return vs_error_set(err, 0, "%s", usage), 125;
  _cleanup_free_ char *esc = vessel_query_escape(argv[first]);
  _cleanup_free_ char *target =
      create ? vs_strdup("/vessel/v1/pools") : vs_asprintf("/vessel/v1/pools/%s/update", esc);
  if (create)
    json_object_set_new(body, "Name", json_string(argv[first]));
  json_t *out = NULL;
  if (vessel_api_json(ctx, "POST", target, body, &out, err) < 0)
    return 1;
  printf("%s\n", json_string_value(json_object_get(out, "Name")));
  json_decref(out);
  return 0;
}

/* A size column: "-" for a figure not known (a guest that does not run, or not measured). */
static char *size_or_dash(json_t *v) {
  return json_is_integer(v) ? vessel_human_size((uint64_t)json_integer_value(v)) : vs_strdup("-");
}

static int pool_ls(vessel_ctx *ctx, vs_error **err) {
  json_t *list = NULL;
  if (vessel_api_json(ctx, "GET", "/vessel/v1/pools", NULL, &list, err) < 0)
    return 1;
  printf("%-20s %-11s %-21s %-10s %-7s %s\n", "NAME", "CPUS", "MEMORY", "HELD", "GUESTS",
         "OVERCOMMIT");
  size_t i;
  json_t *p;
  json_array_foreach(list, i, p) {
    json_t *use = json_object_get(p, "Usage");
    _cleanup_free_ char *cpus =
        vs_asprintf("%g/%lld", json_number_value(json_object_get(use, "Cpus")),
                    (long long)json_integer_value(json_object_get(p, "Cpus")));
    _cleanup_free_ char *mu =
        vessel_human_size((uint64_t)json_integer_value(json_object_get(use, "Memory")));
    _cleanup_free_ char *mc =
        vessel_human_size((uint64_t)json_integer_value(json_object_get(p, "Memory")));
    _cleanup_free_ char *mem = vs_asprintf("%s/%s", mu, mc);
    _cleanup_free_ char *held = size_or_dash(json_object_get(use, "Held"));
    printf("%-20s %-11s %-21s %-10s %-7zu cpu %.2f, memory %.2f\n",
           json_string_value(json_object_get(p, "Name")), cpus, mem, held,
           json_array_size(json_object_get(use, "Guests")),
           json_number_value(json_object_get(p, "CpuOvercommit")),
           json_number_value(json_object_get(p, "MemoryOvercommit")));
  }
  json_decref(list);
  return 0;
}

#define POOL_STATS_ROW "%-24s %-11s %-18s %7.1f%% %-21s %6.1f%% %-10s %-10s%s\n"

/* One pool's live figures (GET /vessel/v1/pools/NAME/stats, a second's sample): a line for the
 * pool, one per guest under it. HELD is what admission counts a guest by (what it holds, as
 * the daemon last measured it), REQUESTED its configured size. */
static int pool_stats_one(vessel_ctx *ctx, const char *name, vs_error **err) {
  _cleanup_free_ char *esc = vessel_query_escape(name);
  _cleanup_free_ char *target = vs_asprintf("/vessel/v1/pools/%s/stats", esc);
  json_t *st = NULL;
  if (vessel_api_json(ctx, "GET", target, NULL, &st, err) < 0)
    return -1;
  json_t *cap = json_object_get(st, "Capacity");
  json_t *cpu = json_object_get(st, "Cpu"), *mem = json_object_get(st, "Memory");
  _cleanup_free_ char *used =
      vessel_human_size((uint64_t)json_integer_value(json_object_get(mem, "Usage")));
  _cleanup_free_ char *total =
      vessel_human_size((uint64_t)json_integer_value(json_object_get(cap, "Memory")));
  _cleanup_free_ char *memtext = vs_asprintf("%s / %s", used, total);
  _cleanup_free_ char *cputext =
      vs_asprintf("%.1f%% of %lld", json_number_value(json_object_get(cpu, "Percent")),
                  (long long)json_integer_value(json_object_get(cap, "Cpus")));
  _cleanup_free_ char *held = size_or_dash(json_object_get(json_object_get(st, "Held"), "Memory"));
  _cleanup_free_ char *requested =
      size_or_dash(json_object_get(json_object_get(st, "Requested"), "Memory"));
  printf(POOL_STATS_ROW, name, "pool", cputext,
         json_number_value(json_object_get(cpu, "PoolPercent")), memtext,
         json_number_value(json_object_get(mem, "PoolPercent")), held, requested, "");
  size_t i;
  json_t *g;
  json_array_foreach(json_object_get(st, "Guests"), i, g) {
    json_t *gc = json_object_get(g, "Cpu"), *gm = json_object_get(g, "Memory");
    _cleanup_free_ char *gmem =
        vessel_human_size((uint64_t)json_integer_value(json_object_get(gm, "Usage")));
    _cleanup_free_ char *gname = vs_asprintf("  %s", json_string_value(json_object_get(g, "Name")));
    _cleanup_free_ char *kind = vs_asprintf(
        "%s%s", json_string_value(json_object_get(g, "Kind")),
        strcmp(json_string_value(json_object_get(g, "State")) ?: "", "running") ? " (off)" : "");
    _cleanup_free_ char *gcpu =
        vs_asprintf("%.1f%%", json_number_value(json_object_get(gc, "Percent")));
    _cleanup_free_ char *gheld = size_or_dash(json_object_get(g, "Held"));
    _cleanup_free_ char *greq =
        size_or_dash(json_object_get(json_object_get(g, "Request"), "Memory"));
    json_t *bt = json_object_get(g, "BalloonTarget");
    _cleanup_free_ char *btsize = bt ? vessel_human_size((uint64_t)json_integer_value(bt)) : NULL;
    _cleanup_free_ char *note = bt ? vs_asprintf(" squeezed to %s", btsize) : vs_strdup("");
    printf(POOL_STATS_ROW, gname, kind, gcpu, json_number_value(json_object_get(gc, "PoolPercent")),
           gmem, json_number_value(json_object_get(gm, "PoolPercent")), gheld, greq, note);
  }
  json_decref(st);
  return 0;
}

/* pool stats [NAME...] (every pool without a name), also `vessel top`. */
int vessel_pool_stats(vessel_ctx *ctx, int argc, char **argv, int first, vs_error **err) {
  json_t *names = json_array();
  for (int i = first; i < argc; i++)
    json_array_append_new(names, json_string(argv[i]));
  if (!json_array_size(names)) {
    json_t *list = NULL;
    if (vessel_api_json(ctx, "GET", "/vessel/v1/pools", NULL, &list, err) < 0) {
      json_decref(names);
      return 1;
    }
    size_t i;
    json_t *p;
    json_array_foreach(list, i, p) json_array_append(names, json_object_get(p, "Name"));
    json_decref(list);
  }
  printf("%-24s %-11s %-18s %8s %-21s %7s %-10s %-10s\n", "POOL / GUEST", "KIND",
         "CPU (100% = 1 CPU)", "OF POOL", "MEMORY", "OF POOL", "HELD", "REQUESTED");
  int rc = 0;
  size_t i;
  json_t *n;
  json_array_foreach(names, i, n) {
    vs_error *e = NULL;
    if (pool_stats_one(ctx, json_string_value(n), &e) < 0) {
      vs_error_print(e, "vessel pool stats");
      vs_error_free(e);
      rc = 1;
    }
  }
  json_decref(names);
  return rc;
}

int cmd_top(vessel_ctx *ctx, int argc, char **argv, vs_error **err) {
  return vessel_pool_stats(ctx, argc, argv, 1, err);
}

int cmd_pool(vessel_ctx *ctx, int argc, char **argv, vs_error **err) {
  static const char usage[] = "usage: vessel pool create|update|ls|inspect|stats|rm ...";
  if (argc < 2)
    return vs_error_set(err, 0, "%s", usage), 125;
  const char *sub = argv[1];
  if (!strcmp(sub, "create") || !strcmp(sub, "update"))
    return pool_set(ctx, !strcmp(sub, "create"), argc - 1, argv + 1, err);
  if (!strcmp(sub, "ls") || !strcmp(sub, "list"))
    return argc == 2 ? pool_ls(ctx, err) : (vs_error_set(err, 0, "usage: vessel pool ls"), 125);
  if (!strcmp(sub, "rm") && argc > 2)
    return vessel_api_each(ctx, argc, argv, 2, "DELETE", "/vessel/v1/pools/", "", "vessel pool rm");
  if (!strcmp(sub, "stats"))
    return vessel_pool_stats(ctx, argc, argv, 2, err);
  if (!strcmp(sub, "inspect") && argc > 2)
    return vessel_inspect_each(ctx, argc, argv, 2, "/vessel/v1/pools/", "vessel pool inspect");
  return vs_error_set(err, 0, "%s", usage), 125;
}
