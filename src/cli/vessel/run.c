/* vessel run / ps / rm / mount: containers on overlay root file systems, run by an OCI runtime. */
#include "cli.h"
#include "ctr/ctr.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <linux/openat2.h>
#include <signal.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>

static char *now_rfc3339(void) {
  char buf[64];
  time_t t = time(NULL);
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return vs_strdup(buf);
}

static char *random_id(void) {
  unsigned char b[32];
  int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
  if (fd < 0 || read(fd, b, sizeof(b)) != (ssize_t)sizeof(b))
    abort();
  close(fd);
  char *s = vs_malloc0(65);
  for (int i = 0; i < 32; i++)
    snprintf(s + (size_t)i * 2, 3, "%02x", b[i]);
  return s;
}

static char *container_dir(vessel_ctx *ctx, const char *id) {
  return vs_asprintf("%s/containers/%s", ctx->root, id);
}

static json_t *container_load(vessel_ctx *ctx, const char *id) {
  _cleanup_free_ char *p = vs_asprintf("%s/containers/%s/container.json", ctx->root, id);
  return json_load_file(p, 0, NULL);
}

static int container_save(vessel_ctx *ctx, json_t *c, vs_error **err) {
  _cleanup_free_ char *p = vs_asprintf("%s/containers/%s/container.json", ctx->root,
                                       json_string_value(json_object_get(c, "Id")));
  _cleanup_free_ char *text = json_dumps(c, JSON_INDENT(2));
  return vs_write_file_atomic(p, text, strlen(text), 0600, err);
}

/* Find a container by name, full ID or ID prefix; returns its full ID. */
char *vessel_container_find(vessel_ctx *ctx, const char *what, vs_error **err) {
  _cleanup_free_ char *dir = vs_asprintf("%s/containers", ctx->root);
  DIR *d = opendir(dir);
  char *found = NULL;
  int matches = 0;
  if (d) {
    struct dirent *de;
    while ((de = readdir(d))) {
      if (de->d_name[0] == '.')
        continue;
      json_t *c = container_load(ctx, de->d_name);
      const char *name = json_string_value(json_object_get(c, "Name"));
      if ((name && !strcmp(name, what)) || !strcmp(de->d_name, what)) {
        free(found);
        found = vs_strdup(de->d_name);
        matches = 1;
        json_decref(c);
        break;
      }
      if (strlen(what) >= 3 && !strncmp(de->d_name, what, strlen(what))) {
        free(found);
        found = vs_strdup(de->d_name);
        matches++;
      }
      json_decref(c);
    }
    closedir(d);
  }
  if (matches != 1) {
    free(found);
    vs_error_set(err, ENOENT, matches ? "container %s is ambiguous" : "no such container: %s",
                 what);
    return NULL;
  }
  return found;
}

/* Read a file from inside the container's root, never following links out of it. */
static char *read_in_root(const char *root, const char *path) {
  _cleanup_close_ int rfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (rfd < 0)
    return NULL;
  struct open_how how = {.flags = O_RDONLY | O_CLOEXEC,
                         .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS};
  _cleanup_close_ int fd = (int)syscall(SYS_openat2, rfd, path, &how, sizeof(how));
  if (fd < 0)
    return NULL;
  char *buf = vs_malloc0(1 << 20);
  ssize_t n = read(fd, buf, (1 << 20) - 1);
  if (n < 0) {
    free(buf);
    return NULL;
  }
  buf[n] = 0;
  return buf;
}

/* uid and gid of a user name (or number) from the image's /etc/passwd. */
static int lookup_id(const char *rootfs, const char *file, const char *name, long *id, long *gid) {
  char *end;
  long v = strtol(name, &end, 10);
  if (*name && !*end) {
    *id = v;
    return 0;
  }
  _cleanup_free_ char *text = read_in_root(rootfs, file);
  if (!text)
    return -1;
  for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
    char *f[7] = {0};
    int n = 0;
    for (char *p = line; n < 7; n++) {
      f[n] = p;
      p = strchr(p, ':');
      if (!p)
        break;
      *p++ = 0;
    }
    if (n >= 2 && f[0] && !strcmp(f[0], name)) {
      *id = strtol(f[2], NULL, 10);
      if (gid && f[3])
        *gid = strtol(f[3], NULL, 10);
      return 0;
    }
  }
  return -1;
}

static int resolve_user(const char *rootfs, const char *spec, long *uid, long *gid,
                        vs_error **err) {
  *uid = 0;
  *gid = 0;
  if (!spec || !*spec)
    return 0;
  _cleanup_free_ char *s = vs_strdup(spec);
  char *group = strchr(s, ':');
  if (group)
    *group++ = 0;
  long g = -1;
  if (lookup_id(rootfs, "/etc/passwd", s, uid, &g) < 0)
    return vs_error_set(err, ENOENT, "user \"%s\" not found in the image's /etc/passwd", s);
  *gid = g >= 0 ? g : 0;
  if (group && lookup_id(rootfs, "/etc/group", group, gid, NULL) < 0)
    return vs_error_set(err, ENOENT, "group \"%s\" not found in the image's /etc/group", group);
  return 0;
}

typedef struct run_opts {
  bool rm, tty, interactive, detach;
  json_t *env;
  const char *workdir, *user, *name, *entrypoint, *runtime, *network;
  char **cmd;
  int ncmd;
} run_opts;

static json_t *build_spec(const vs_image *img, const run_opts *ro, const char *rootfs,
                          const char *cdir, const char *hostname, vs_error **err) {
  json_t *cfg = json_object_get(img->config.root, "config");
  json_t *args = json_array();
  json_t *ep = json_object_get(cfg, "Entrypoint");
  json_t *cmd = json_object_get(cfg, "Cmd");
  if (ro->entrypoint) {
    if (*ro->entrypoint)
      json_array_append_new(args, json_string(ro->entrypoint));
  } else if (json_is_array(ep)) {
    json_array_extend(args, ep);
  }
  if (ro->ncmd > 0) {
    for (int i = 0; i < ro->ncmd; i++)
      json_array_append_new(args, json_string(ro->cmd[i]));
  } else if (json_is_array(cmd) && !ro->entrypoint) {
    json_array_extend(args, cmd);
  }
  if (json_array_size(args) == 0) {
    json_decref(args);
    vs_error_set(err, EINVAL, "no command given and the image has no Entrypoint or Cmd");
    return NULL;
  }
  json_t *env = json_array();
  json_t *ienv = json_object_get(cfg, "Env");
  if (json_is_array(ienv))
    json_array_extend(env, ienv);
  else
    json_array_append_new(
        env, json_string("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"));
  if (ro->tty)
    json_array_append_new(env, json_string("TERM=xterm"));
  json_array_append_new(env, json_sprintf("HOSTNAME=%s", hostname));
  json_array_extend(env, ro->env);
  const char *cwd =
      ro->workdir ? ro->workdir : json_string_value(json_object_get(cfg, "WorkingDir"));
  if (!cwd || !*cwd)
    cwd = "/";
  if (cwd[0] != '/') {
    json_decref(args);
    json_decref(env);
    vs_error_set(err, EINVAL, "working directory %s is not absolute", cwd);
    return NULL;
  }
  const char *user = ro->user ? ro->user : json_string_value(json_object_get(cfg, "User"));
  long uid, gid;
  if (resolve_user(rootfs, user, &uid, &gid, err) < 0) {
    json_decref(args);
    json_decref(env);
    return NULL;
  }
  json_t *caps = ctr_docker_default_caps();
  json_t *ns = json_pack("[{s:s},{s:s},{s:s},{s:s}]", "type", "pid", "type", "ipc", "type", "uts",
                         "type", "mount");
  if (ro->network && !strcmp(ro->network, "none"))
    json_array_append_new(ns, json_pack("{s:s}", "type", "network"));
  json_t *spec = json_pack(
      "{s:s, s:{s:b, s:{s:I, s:I}, s:o, s:o, s:s, s:{s:O, s:O, s:O, s:O}, s:[{s:s, s:i, s:i}], "
      "s:b}, s:{s:s, s:b}, s:s, s:o, s:{s:o, s:[s,s,s,s,s,s,s,s,s,s], s:[s,s,s,s,s,s]}}",
      "ociVersion", "1.0.2", "process", "terminal", ro->tty, "user", "uid", (json_int_t)uid, "gid",
      (json_int_t)gid, "args", args, "env", env, "cwd", cwd, "capabilities", "bounding", caps,
      "effective", caps, "permitted", caps, "inheritable", caps, "rlimits", "type", "RLIMIT_NOFILE",
      "hard", 1024, "soft", 1024, "noNewPrivileges", 1, "root", "path", rootfs, "readonly", 0,
      "hostname", hostname, "mounts", ctr_docker_default_mounts(cdir), "linux", "namespaces", ns,
      "maskedPaths", "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
      "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
      "/sys/firmware", "/proc/scsi", "readonlyPaths", "/proc/bus", "/proc/fs", "/proc/irq",
      "/proc/sys", "/proc/sysrq-trigger", "/sys/fs/cgroup");
  json_decref(caps);
  return spec;
}

static int write_text(const char *dir, const char *name, const char *text, vs_error **err) {
  _cleanup_free_ char *p = vs_asprintf("%s/%s", dir, name);
  return vs_write_file_atomic(p, text, strlen(text), 0644, err);
}

static char *find_runtime(vessel_ctx *ctx, const char *given) {
  if (given)
    return vs_strdup(given);
  _cleanup_free_ char *self = vs_strdup(ctx->argv0);
  char *slash = strrchr(self, '/');
  if (slash) {
    *slash = 0;
    char *p = vs_asprintf("%s/vessel-runtime", self);
    if (access(p, X_OK) == 0)
      return p;
    free(p);
  }
  return vs_strdup("runc");
}

static int run_runtime(const char *runtime, const char *state_root, const char *bundle,
                       const char *id, vs_error **err) {
  pid_t pid = fork();
  if (pid < 0)
    return vs_error_set(err, errno, "fork");
  if (pid == 0) {
    execlp(runtime, runtime, "--root", state_root, "run", "--bundle", bundle, id, (char *)NULL);
    fprintf(stderr, "vessel: exec %s: %s\n", runtime, strerror(errno));
    _exit(127);
  }
  /* The runtime forwards signals to the container; we just wait for it. */
  signal(SIGINT, SIG_IGN);
  signal(SIGTERM, SIG_IGN);
  int st;
  while (waitpid(pid, &st, 0) < 0)
    if (errno != EINTR)
      return vs_error_set(err, errno, "wait for %s", runtime);
  signal(SIGINT, SIG_DFL);
  signal(SIGTERM, SIG_DFL);
  if (WIFEXITED(st))
    return WEXITSTATUS(st);
  return 128 + WTERMSIG(st);
}

static int remove_container(vessel_ctx *ctx, const char *id, vs_error **err) {
  _cleanup_free_ char *dir = container_dir(ctx, id);
  _cleanup_free_ char *rootfs = vs_asprintf("%s/rootfs", dir);
  if (umount2(rootfs, MNT_DETACH) < 0 && errno != EINVAL && errno != ENOENT)
    return vs_error_set(err, errno, "unmount %s", rootfs);
  return vs_rm_rf(dir, err);
}

/* Create a container: directory, record, overlay root. Returns its id. */
static char *create_container(vessel_ctx *ctx, vs_store *s, const vs_image *img, const char *name,
                              json_t *command, vs_error **err) {
  if (name) {
    vs_error *e = NULL;
    char *other = vessel_container_find(ctx, name, &e);
    vs_error_free(e);
    if (other) {
      free(other);
      vs_error_set(err, EEXIST, "the container name \"%s\" is already in use", name);
      return NULL;
    }
  }
  char *id = random_id();
  _cleanup_free_ char *dir = container_dir(ctx, id);
  _cleanup_free_ char *rootfs = vs_asprintf("%s/rootfs", dir);
  _cleanup_free_ char *created = now_rfc3339();
  if (vs_mkdir_p(dir, 0700, err) < 0 || write_text(dir, "image", img->manifest_digest, err) < 0)
    goto fail;
  json_t *c = json_pack("{s:s, s:s?, s:s, s:s, s:O, s:s, s:s}", "Id", id, "Name", name, "Image",
                        img->manifest.config.digest, "ImageDigest", img->manifest_digest, "Command",
                        command ? command : json_null(), "Created", created, "Status", "created");
  int r = container_save(ctx, c, err);
  json_decref(c);
  if (r < 0)
    goto fail;
  if (vs_store_lock(s, false, err) < 0)
    goto fail;
  r = vs_rootfs_mount(s, img, dir, rootfs, err);
  vs_store_unlock(s);
  if (r < 0)
    goto fail;
  return id;
fail:;
  vs_error *e = NULL;
  remove_container(ctx, id, &e);
  vs_error_free(e);
  free(id);
  return NULL;
}

static int ensure_image(vessel_ctx *ctx, vs_store *s, const char *what, vs_image *img,
                        vs_error **err) {
  vs_error *e = NULL;
  if (vs_store_resolve(s, what, img, &e) == 0)
    return 0;
  vs_error_free(e);
  vs_registry_opts o = {.tls_verify = 1, .progress_fd = 2};
  char digest[VS_DIGEST_MAX];
  if (vs_image_pull(s, what, &o, digest, err) < 0)
    return -1;
  return vs_store_load_image(s, digest, img, err);
}

const struct option vessel_run_options[] = {{"rm", no_argument, 0, 'R'},
                                            {"tty", no_argument, 0, 't'},
                                            {"interactive", no_argument, 0, 'i'},
                                            {"detach", no_argument, 0, 'd'},
                                            {"env", required_argument, 0, 'e'},
                                            {"workdir", required_argument, 0, 'w'},
                                            {"user", required_argument, 0, 'u'},
                                            {"name", required_argument, 0, 'n'},
                                            {"entrypoint", required_argument, 0, 'E'},
                                            {"runtime", required_argument, 0, 'r'},
                                            {"network", required_argument, 0, 'N'},
                                            {"pool", required_argument, 0, 'P'},
                                            {"cpus", required_argument, 0, 'c'},
                                            {"memory", required_argument, 0, 'm'},
                                            {"label", required_argument, 0, 'l'},
                                            {"restart", required_argument, 0, 'S'},
                                            {"node", required_argument, 0, 'O'},
                                            {"node-selector", required_argument, 0, 'L'},
                                            {"anti-affinity", required_argument, 0, 'A'},
                                            {"affinity", required_argument, 0, 'F'},
                                            {0, 0, 0, 0}};

int cmd_run(vessel_ctx *ctx, int argc, char **argv, vs_error **err) {

  run_opts ro = {.env = json_array()};
  int c;
  optind = 1;
  while ((c = getopt_long(argc, argv, "+itde:w:u:", vessel_run_options, NULL)) != -1) {
    switch (c) {
    case 'R':
      ro.rm = true;
      break;
    case 't':
      ro.tty = true;
      break;
    case 'i':
      ro.interactive = true;
      break;
    case 'e':
      if (strchr(optarg, '='))
        json_array_append_new(ro.env, json_string(optarg));
      else if (getenv(optarg))
        json_array_append_new(ro.env, json_sprintf("%s=%s", optarg, getenv(optarg)));
      break;
    case 'w':
      ro.workdir = optarg;
      break;
    case 'u':
      ro.user = optarg;
      break;
    case 'n':
      ro.name = optarg;
      break;
    case 'E':
      ro.entrypoint = optarg;
      break;
    case 'r':
      ro.runtime = optarg;
      break;
    case 'N':
      ro.network = optarg;
      break;
    case 'd':
      json_decref(ro.env);
      vs_error_set(err, 0,
                   "run -d: a detached container needs vesseld (without a daemon vessel "
                   "runs containers in the foreground)");
      return 125;
    case 'P':
    case 'c':
    case 'm':
    case 'l':
      json_decref(ro.env);
      vs_error_set(err, 0,
                   "run --pool, --cpus, --memory and --label need vesseld (its pools admit "
                   "and limit containers)");
      return 125;
    case 'S':
    case 'O':
    case 'L':
    case 'A':
    case 'F':
      json_decref(ro.env);
      vs_error_set(err, 0,
                   "run --restart, --node, --node-selector, --anti-affinity and --affinity need "
                   "vesseld (the placement ones a vesseld in a cluster)");
      return 125;
    default:
      json_decref(ro.env);
      return 125;
    }
  }
  if (optind >= argc) {
    json_decref(ro.env);
    return vs_error_set(err, EINVAL, "usage: vessel run [OPTIONS] IMAGE [COMMAND...]"), 125;
  }
  const char *image = argv[optind];
  ro.cmd = argv + optind + 1;
  ro.ncmd = argc - optind - 1;
  vs_store *s = vessel_store(ctx, err);
  vs_image img = {0};
  int rc = 125;
  char *id = NULL;
  json_t *spec = NULL;
  if (!s || ensure_image(ctx, s, image, &img, err) < 0)
    goto out;
  json_t *command = json_array();
  for (int i = 0; i < ro.ncmd; i++)
    json_array_append_new(command, json_string(ro.cmd[i]));
  id = create_container(ctx, s, &img, ro.name, command, err);
  json_decref(command);
  if (!id)
    goto out;
  {
    _cleanup_free_ char *dir = container_dir(ctx, id);
    _cleanup_free_ char *rootfs = vs_asprintf("%s/rootfs", dir);
    char host[13];
    snprintf(host, sizeof(host), "%.12s", id);
    if (ctr_docker_write_etc_files(dir, host, err) < 0)
      goto fail;
    spec = build_spec(&img, &ro, rootfs, dir, host, err);
    if (!spec)
      goto fail;
    _cleanup_free_ char *text = json_dumps(spec, JSON_INDENT(2));
    if (write_text(dir, "config.json", text, err) < 0)
      goto fail;
    json_t *rec = container_load(ctx, id);
    json_object_set_new(rec, "Status", json_string("running"));
    json_object_set_new(rec, "Pid", json_integer(getpid()));
    container_save(ctx, rec, NULL);
    _cleanup_free_ char *runtime = find_runtime(ctx, ro.runtime);
    _cleanup_free_ char *state = vs_asprintf("%s/runtime", ctx->root);
    rc = run_runtime(runtime, state, dir, id, err);
    if (rc < 0) {
      rc = 125;
      json_decref(rec);
      goto fail;
    }
    _cleanup_free_ char *fin = now_rfc3339();
    json_object_set_new(rec, "Status", json_string("exited"));
    json_object_set_new(rec, "ExitCode", json_integer(rc));
    json_object_set_new(rec, "Finished", json_string(fin));
    json_object_del(rec, "Pid");
    container_save(ctx, rec, NULL);
    json_decref(rec);
    if (!ro.rm) {
      /* keep the upper dir, but no mount lingers after the container ended */
      umount2(rootfs, MNT_DETACH);
      goto out;
    }
  }
fail:
  if (id) {
    vs_error *e = NULL;
    if (remove_container(ctx, id, &e) < 0)
      vs_log_warn("%s", e->msg);
    vs_error_free(e);
  }
out:
  json_decref(spec);
  json_decref(ro.env);
  free(id);
  vs_image_clear(&img);
  return rc;
}

int cmd_mount(vessel_ctx *ctx, int argc, char **argv, vs_error **err) {
  if (argc != 2)
    return vs_error_set(err, EINVAL,
                        "usage: vessel mount IMAGE (prints the mount point; "
                        "vessel rm ID unmounts and removes it)"),
           125;
  vs_store *s = vessel_store(ctx, err);
  vs_image img;
  if (!s || vs_store_resolve(s, argv[1], &img, err) < 0)
    return 125;
  char *id = create_container(ctx, s, &img, NULL, NULL, err);
  vs_image_clear(&img);
  if (!id)
    return 125;
  printf("%s %s/containers/%s/rootfs\n", id, ctx->root, id);
  free(id);
  return 0;
}

static bool pid_alive(json_t *rec) {
  json_int_t pid = json_integer_value(json_object_get(rec, "Pid"));
  return pid > 0 && kill((pid_t)pid, 0) == 0;
}

int cmd_ps(vessel_ctx *ctx, int argc, char **argv, vs_error **err) {
  bool all = false, quiet = false;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "-a") || !strcmp(argv[i], "--all"))
      all = true;
    else if (!strcmp(argv[i], "-q"))
      quiet = true;
    else if (!strcmp(argv[i], "-aq") || !strcmp(argv[i], "-qa"))
      all = quiet = true;
  }
  _cleanup_free_ char *dir = vs_asprintf("%s/containers", ctx->root);
  DIR *d = opendir(dir);
  if (!quiet)
    printf("%-14s %-20s %-24s %-16s %-22s %s\n", "CONTAINER ID", "IMAGE", "COMMAND", "CREATED",
           "STATUS", "NAMES");
  if (!d)
    return 0;
  vs_store *s = vessel_store(ctx, err);
  json_t *tags = s ? vs_store_tags(s, NULL) : NULL;
  struct dirent *de;
  while ((de = readdir(d))) {
    if (de->d_name[0] == '.')
      continue;
    json_t *rec = container_load(ctx, de->d_name);
    if (!rec)
      continue;
    const char *status = json_string_value(json_object_get(rec, "Status"));
    bool running = status && !strcmp(status, "running") && pid_alive(rec);
    if (!all && !running) {
      json_decref(rec);
      continue;
    }
    if (quiet) {
      printf("%.12s\n", de->d_name);
      json_decref(rec);
      continue;
    }
    const char *md = json_string_value(json_object_get(rec, "ImageDigest"));
    _cleanup_free_ char *image = vs_strdup(json_string_value(json_object_get(rec, "Image")) + 7);
    const char *key;
    json_t *val;
    json_object_foreach(tags, key, val) if (md && !strcmp(json_string_value(val), md)) {
      free(image);
      image = vs_image_name_familiar(key);
      break;
    }
    _cleanup_free_ char *cmd = vs_json_join(json_object_get(rec, "Command"), " ");
    _cleanup_free_ char *created =
        vessel_human_time(json_string_value(json_object_get(rec, "Created")));
    _cleanup_free_ char *st = NULL;
    if (running)
      st = vs_strdup("Up");
    else if (status && !strcmp(status, "exited"))
      st = vs_asprintf("Exited (%lld)",
                       (long long)json_integer_value(json_object_get(rec, "ExitCode")));
    else
      st = vs_strdup("Created");
    const char *name = json_string_value(json_object_get(rec, "Name"));
    printf("%-14.12s %-20.20s %-24.24s %-16s %-22s %s\n", de->d_name, image, cmd, created, st,
           name ? name : "");
    json_decref(rec);
  }
  closedir(d);
  json_decref(tags);
  return 0;
}

int cmd_rm(vessel_ctx *ctx, int argc, char **argv, vs_error **err) {
  bool force = false;
  int rc = 0, first = 1;
  for (; first < argc && argv[first][0] == '-'; first++)
    if (!strcmp(argv[first], "-f") || !strcmp(argv[first], "--force"))
      force = true;
  if (first >= argc)
    return vs_error_set(err, EINVAL, "usage: vessel rm [-f] CONTAINER..."), 125;
  for (int i = first; i < argc; i++) {
    vs_error *e = NULL;
    _cleanup_free_ char *id = vessel_container_find(ctx, argv[i], &e);
    json_t *rec = id ? container_load(ctx, id) : NULL;
    const char *status = json_string_value(json_object_get(rec, "Status"));
    if (id && !force && status && !strcmp(status, "running") && pid_alive(rec))
      vs_error_set(&e, EBUSY, "container %s is running (use -f)", argv[i]);
    else if (id)
      remove_container(ctx, id, &e);
    json_decref(rec);
    if (e) {
      vs_error_print(e, "vessel rm");
      vs_error_free(e);
      rc = 1;
    } else {
      printf("%s\n", argv[i]);
    }
  }
  return rc;
}
