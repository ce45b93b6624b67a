/* The OCI config.json of a container: the process from the merged Docker config, Docker's
 * default mounts, capabilities, masked and read-only paths (what `vessel run` and dockerd use). */
#include "daemon/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

/* Look a user or group up in a file of the image ("/etc/passwd"): the field after the name. */
static int lookup_in_file(int rootfd, const char *file, const char *name, long *id, long *gid) {
  int fd = vs_openat_in_root(rootfd, file, O_RDONLY, 0, NULL);
  if (fd < 0)
    return -1;
  _cleanup_fclose_ FILE *f = fdopen(fd, "r");
  if (!f) {
    close(fd);
    return -1;
  }
  char line[4096];
  while (fgets(line, sizeof(line), f)) {
    char *fields[4] = {0};
    char *p = line;
    for (int i = 0; i < 4; i++) {
      fields[i] = strsep(&p, ":");
      if (!p)
        break;
    }
    if (fields[0] && fields[2] && !strcmp(fields[0], name)) {
      *id = strtol(fields[2], NULL, 10);
      if (gid && fields[3])
        *gid = strtol(fields[3], NULL, 10);
      return 0;
    }
  }
  return -1;
}

static bool all_digits(const char *s) {
  if (!*s)
    return false;
  for (; *s; s++)
    if (*s < '0' || *s > '9')
      return false;
  return true;
}

/* "user", "uid", "user:group", "uid:gid" against the image's /etc/passwd and /etc/group. */
int vd_spec_resolve_user(const char *rootfs, const char *spec, long *uid, long *gid,
                         vs_error **err) {
  *uid = *gid = 0;
  if (!spec || !*spec)
    return 0;
  _cleanup_free_ char *s = vs_strdup(spec);
  char *group = strchr(s, ':');
  if (group)
    *group++ = 0;
  _cleanup_close_ int rootfd = open(rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (rootfd < 0)
    return vs_error_set(err, errno, "open %s", rootfs);
  long g = 0;
  if (all_digits(s))
    *uid = strtol(s, NULL, 10);
  else if (lookup_in_file(rootfd, "/etc/passwd", s, uid, &g) < 0)
    return vs_error_set(err, EINVAL, "unable to find user %s: no matching entries in passwd file",
                        s);
  *gid = g;
  if (group && all_digits(group))
    *gid = strtol(group, NULL, 10);
  else if (group && lookup_in_file(rootfd, "/etc/group", group, gid, NULL) < 0)
    return vs_error_set(err, EINVAL, "unable to find group %s: no matching entries in group file",
                        group);
  return 0;
}

static json_t *namespaces(json_t *host_config) {
  json_t *ns = json_pack("[{s:s}, {s:s}, {s:s}, {s:s}]", "type", "pid", "type", "ipc", "type",
                         "uts", "type", "mount");
  const char *net = json_string_value(json_object_get(host_config, "NetworkMode"));
  /* "host" shares ours; everything else gets an empty network namespace until the virtual
   * switch brings bridges */
  if (!net || strcmp(net, "host") != 0)
    json_array_append_new(ns, json_pack("{s:s}", "type", "network"));
  return ns;
}

/* ---------------------------------------------------------------- HostConfig */

static const char *const all_caps[] = {"CAP_CHOWN",
                                       "CAP_DAC_OVERRIDE",
                                       "CAP_DAC_READ_SEARCH",
                                       "CAP_FOWNER",
                                       "CAP_FSETID",
                                       "CAP_KILL",
                                       "CAP_SETGID",
                                       "CAP_SETUID",
                                       "CAP_SETPCAP",
                                       "CAP_LINUX_IMMUTABLE",
                                       "CAP_NET_BIND_SERVICE",
                                       "CAP_NET_BROADCAST",
                                       "CAP_NET_ADMIN",
                                       "CAP_NET_RAW",
                                       "CAP_IPC_LOCK",
                                       "CAP_IPC_OWNER",
                                       "CAP_SYS_MODULE",
                                       "CAP_SYS_RAWIO",
                                       "CAP_SYS_CHROOT",
                                       "CAP_SYS_PTRACE",
                                       "CAP_SYS_PACCT",
                                       "CAP_SYS_ADMIN",
                                       "CAP_SYS_BOOT",
                                       "CAP_SYS_NICE",
                                       "CAP_SYS_RESOURCE",
                                       "CAP_SYS_TIME",
                                       "CAP_SYS_TTY_CONFIG",
                                       "CAP_MKNOD",
                                       "CAP_LEASE",
                                       "CAP_AUDIT_WRITE",
                                       "CAP_AUDIT_CONTROL",
                                       "CAP_SETFCAP",
                                       "CAP_MAC_OVERRIDE",
                                       "CAP_MAC_ADMIN",
                                       "CAP_SYSLOG",
                                       "CAP_WAKE_ALARM",
                                       "CAP_BLOCK_SUSPEND",
                                       "CAP_AUDIT_READ",
                                       "CAP_PERFMON",
                                       "CAP_BPF",
                                       "CAP_CHECKPOINT_RESTORE"};

/* "chown", "CAP_CHOWN" or "ALL" as the canonical name; NULL when unknown. */
static const char *cap_name(const char *given) {
  if (!strcasecmp(given, "ALL"))
    return "ALL";
  const char *bare = !strncasecmp(given, "CAP_", 4) ? given + 4 : given;
  for (size_t i = 0; i < ARRAY_SIZE(all_caps); i++)
    if (!strcasecmp(all_caps[i] + 4, bare))
      return all_caps[i];
  return NULL;
}

static bool in_array(json_t *a, const char *s) {
  size_t i;
  json_t *v;
  json_array_foreach(a, i, v) if (!strcmp(json_string_value(v), s)) return true;
  return false;
}

/* Docker's default set, then CapAdd, then CapDrop ("ALL" allowed in both). */
static json_t *capabilities(json_t *hc, vs_error **err) {
  json_t *caps = ctr_docker_default_caps();
  static const char *const fields[] = {"CapAdd", "CapDrop"};
  for (size_t f = 0; f < 2; f++) {
    json_t *list = json_object_get(hc, fields[f]);
    size_t i;
    json_t *v;
    json_array_foreach(list, i, v) {
      const char *name = json_is_string(v) ? cap_name(json_string_value(v)) : NULL;
      if (!name) {
        json_decref(caps);
        vs_error_set(err, EINVAL, "HostConfig.%s[%zu]: unknown capability %s", fields[f], i,
                     json_is_string(v) ? json_string_value(v) : vs_json_type_name(v));
        return NULL;
      }
      if (f == 0 && !strcmp(name, "ALL")) {
        json_array_clear(caps);
        for (size_t k = 0; k < ARRAY_SIZE(all_caps); k++)
          json_array_append_new(caps, json_string(all_caps[k]));
      } else if (f == 0 && !in_array(caps, name)) {
        json_array_append_new(caps, json_string(name));
      } else if (f == 1) {
        for (size_t k = json_array_size(caps); k-- > 0;)
          if (!strcmp(name, "ALL") || !strcmp(json_string_value(json_array_get(caps, k)), name))
            json_array_remove(caps, k);
      }
    }
  }
  return caps;
}

json_t *vd_spec_resources(json_t *hc) {
  json_t *r = json_object();
  json_int_t mem = json_integer_value(json_object_get(hc, "Memory"));
  json_int_t swap = json_integer_value(json_object_get(hc, "MemorySwap"));
  if (mem > 0) {
    json_t *m = json_pack("{s:I}", "limit", mem);
    /* Docker's MemorySwap is memory + swap; 0 means twice the memory, -1 unlimited */
    json_object_set_new(m, "swap", json_integer(swap > 0 ? swap : swap < 0 ? -1 : 2 * mem));
    json_object_set_new(r, "memory", m);
  }
  json_t *cpu = json_object();
  json_int_t nano = json_integer_value(json_object_get(hc, "NanoCpus"));
  json_int_t shares = json_integer_value(json_object_get(hc, "CpuShares"));
  json_int_t quota = json_integer_value(json_object_get(hc, "CpuQuota"));
  json_int_t period = json_integer_value(json_object_get(hc, "CpuPeriod"));
  if (nano > 0) {
    period = 100000;
    quota = nano * period / 1000000000;
  }
  if (shares > 0)
    json_object_set_new(cpu, "shares", json_integer(shares));
  if (quota > 0)
    json_object_set_new(cpu, "quota", json_integer(quota));
  if (period > 0)
    json_object_set_new(cpu, "period", json_integer(period));
  if (json_object_size(cpu))
    json_object_set(r, "cpu", cpu);
  json_decref(cpu);
  json_int_t pids = json_integer_value(json_object_get(hc, "PidsLimit"));
  if (pids > 0)
    json_object_set_new(r, "pids", json_pack("{s:I}", "limit", pids));
  return r;
}

static int check_destination(const char *what, const char *dst, vs_error **err) {
  if (!dst || dst[0] != '/')
    return vs_error_set(err, EINVAL, "%s: mount destination %s is not an absolute path", what,
                        dst ? dst : "(none)");
  if (!strcmp(dst, "/"))
    return vs_error_set(err, EINVAL, "%s: invalid mount destination /", what);
  return 0;
}

static json_t *bind_mount(const char *src, const char *dst, bool ro) {
  return json_pack("{s:s, s:s, s:s, s:[s,s,s]}", "destination", dst, "type", "bind", "source", src,
                   "options", "rbind", "rprivate", ro ? "ro" : "rw");
}

static json_t *tmpfs_mount(const char *dst, const char *opts) {
  json_t *o = json_pack("[s,s,s]", "nosuid", "nodev", "noexec");
  if (opts && *opts)
    json_array_append_new(o, json_string(opts));
  return json_pack("{s:s, s:s, s:s, s:o}", "destination", dst, "type", "tmpfs", "source", "tmpfs",
                   "options", o);
}

/* HostConfig.Binds: "/host:/ctr[:ro|rw]"; a missing host directory is made, as docker does. */
static int add_binds(vd_daemon *d, json_t *mounts, json_t *hc, vs_error **err) {
  size_t i;
  json_t *v;
  json_array_foreach(json_object_get(hc, "Binds"), i, v) {
    if (!json_is_string(v))
      return vs_error_set(err, EINVAL, "HostConfig.Binds[%zu]: expected string", i);
    _cleanup_free_ char *spec = vs_strdup(json_string_value(v));
    char *dst = strchr(spec, ':');
    if (!dst)
      return vs_error_set(err, EINVAL, "invalid volume specification: '%s'", spec);
    *dst++ = 0;
    char *opt = strchr(dst, ':');
    if (opt)
      *opt++ = 0;
    if (check_destination("HostConfig.Binds", dst, err) < 0)
      return -1;
    bool ro = false;
    for (char *o = opt ? strtok_r(opt, ",", &opt) : NULL; o; o = strtok_r(NULL, ",", &opt)) {
      if (!strcmp(o, "ro"))
        ro = true;
      else if (strcmp(o, "rw") != 0 && strcmp(o, "z") != 0 && strcmp(o, "Z") != 0)
        return vs_error_set(err, EINVAL, "invalid mode: %s", o);
    }
    if (spec[0] != '/') { /* a named volume */
      _cleanup_json_ json_t *vol = vd_volume_ensure(d, spec, NULL, NULL, NULL, err);
      if (!vol)
        return -1;
      json_array_append_new(
          mounts, bind_mount(json_string_value(json_object_get(vol, "Mountpoint")), dst, ro));
      continue;
    }
    if (vs_mkdir_p(spec, 0755, err) < 0)
      return vs_error_wrap(err, "bind source %s", spec);
    json_array_append_new(mounts, bind_mount(spec, dst, ro));
  }
  return 0;
}

/* HostConfig.Mounts ({Type bind|tmpfs, Source, Target, ReadOnly}) and HostConfig.Tmpfs. */
static int add_mounts(vd_daemon *d, json_t *mounts, json_t *hc, vs_error **err) {
  size_t i;
  json_t *m;
  json_array_foreach(json_object_get(hc, "Mounts"), i, m) {
    const char *type = json_string_value(json_object_get(m, "Type"));
    const char *src = json_string_value(json_object_get(m, "Source"));
    const char *dst = json_string_value(json_object_get(m, "Target"));
    bool ro = json_is_true(json_object_get(m, "ReadOnly"));
    if (check_destination("HostConfig.Mounts", dst, err) < 0)
      return -1;
    if (type && !strcmp(type, "bind")) {
      struct stat st;
      if (!src || src[0] != '/' || stat(src, &st) < 0)
        return vs_error_set(err, EINVAL,
                            "invalid mount config for type \"bind\": bind source "
                            "path does not exist: %s",
                            src ? src : "(none)");
      json_array_append_new(mounts, bind_mount(src, dst, ro));
    } else if (type && !strcmp(type, "volume")) {
      if (!src || !*src)
        return vs_error_set(err, EINVAL,
                            "HostConfig.Mounts[%zu]: anonymous volumes are not "
                            "supported yet",
                            i);
      _cleanup_json_ json_t *vol = vd_volume_ensure(d, src, NULL, NULL, NULL, err);
      if (!vol)
        return -1;
      json_array_append_new(
          mounts, bind_mount(json_string_value(json_object_get(vol, "Mountpoint")), dst, ro));
    } else if (type && !strcmp(type, "tmpfs")) {
      json_int_t size =
          json_integer_value(json_object_get(json_object_get(m, "TmpfsOptions"), "SizeBytes"));
      _cleanup_free_ char *opt = size > 0 ? vs_asprintf("size=%lld", (long long)size) : NULL;
      json_array_append_new(mounts, tmpfs_mount(dst, opt));
    } else {
      return vs_error_set(err, EINVAL,
                          "HostConfig.Mounts[%zu]: mount type %s is not supported "
                          "yet",
                          i, type ? type : "(none)");
    }
  }
  const char *key;
  json_t *v;
  json_object_foreach(json_object_get(hc, "Tmpfs"), key, v) {
    if (check_destination("HostConfig.Tmpfs", key, err) < 0)
      return -1;
    json_array_append_new(mounts, tmpfs_mount(key, json_string_value(v)));
  }
  return 0;
}

/* daemon.json's default-ulimits over the built-in ones, resource by resource. */
static void apply_default_ulimits(vd_daemon *d, json_t *rlimits) {
  size_t i, k;
  json_t *def, *have;
  json_array_foreach(d->default_ulimits, i, def) {
    const char *type = json_string_value(json_object_get(def, "type"));
    bool replaced = false;
    json_array_foreach(rlimits, k, have) {
      if (!replaced && !strcmp(json_string_value(json_object_get(have, "type")), type)) {
        json_array_set(rlimits, k, def);
        replaced = true;
      }
    }
    if (!replaced)
      json_array_append(rlimits, def);
  }
}

json_t *vd_spec_build(vd_daemon *d, const vs_image *img, json_t *config, json_t *host_config,
                      const char *dir, const char *rootfs, const char *hostname, vs_error **err) {
  (void)img;
  json_t *args = json_array();
  json_array_extend(args, json_object_get(config, "Entrypoint"));
  json_array_extend(args, json_object_get(config, "Cmd"));
  if (json_array_size(args) == 0) {
    json_decref(args);
    vs_error_set(err, EINVAL, "no command specified");
    return NULL;
  }
  json_t *env = json_array();
  json_array_extend(env, json_object_get(config, "Env"));
  json_array_append_new(env, json_sprintf("HOSTNAME=%s", hostname));
  bool tty = json_is_true(json_object_get(config, "Tty"));
  bool has_term = false;
  size_t k;
  json_t *ev;
  json_array_foreach(env, k, ev) if (!strncmp(json_string_value(ev), "TERM=", 5)) has_term = true;
  if (tty && !has_term) /* as docker: programs in a terminal want to know what it is */
    json_array_append_new(env, json_string("TERM=xterm"));
  const char *cwd = json_string_value(json_object_get(config, "WorkingDir"));
  if (!cwd || !*cwd)
    cwd = "/";
  long uid, gid;
  if (vd_spec_resolve_user(rootfs, json_string_value(json_object_get(config, "User")), &uid, &gid,
                           err) < 0) {
    json_decref(args);
    json_decref(env);
    return NULL;
  }
  json_t *caps = capabilities(host_config, err);
  json_t *mounts = ctr_docker_default_mounts(dir);
  if (!caps || add_binds(d, mounts, host_config, err) < 0 ||
      add_mounts(d, mounts, host_config, err) < 0) {
    json_decref(caps);
    json_decref(mounts);
    json_decref(args);
    json_decref(env);
    return NULL;
  }
  json_t *spec = json_pack(
      "{s:s, s:{s:b, s:{s:I, s:I}, s:o, s:o, s:s, s:{s:O, s:O, s:O}, s:[{s:s, s:i, s:i}], "
      "s:b}, s:{s:s, s:b}, s:s, s:o, s:{s:o, s:[s,s,s,s,s,s,s,s,s,s], s:[s,s,s,s,s,s]}}",
      "ociVersion", "1.0.2", "process", "terminal", tty, "user", "uid", (json_int_t)uid, "gid",
      (json_int_t)gid, "args", args, "env", env, "cwd", cwd, "capabilities", "bounding", caps,
      "effective", caps, "permitted", caps, "rlimits", "type", "RLIMIT_NOFILE", "hard", 1024,
      "soft", 1024, "noNewPrivileges", 0, "root", "path", rootfs, "readonly",
      json_is_true(json_object_get(host_config, "ReadonlyRootfs")), "hostname", hostname, "mounts",
      mounts, "linux", "namespaces", namespaces(host_config), "maskedPaths", "/proc/acpi",
      "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
      "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi", "readonlyPaths",
      "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger", "/sys/fs/cgroup");
  json_decref(caps);
  if (!spec) {
    vs_error_set(err, EINVAL, "build the OCI configuration");
    return NULL;
  }
  json_object_set_new(json_object_get(spec, "linux"), "resources", vd_spec_resources(host_config));
  apply_default_ulimits(d, json_object_get(json_object_get(spec, "process"), "rlimits"));
  json_t *size = json_object_get(host_config, "ConsoleSize");
  if (tty && json_array_size(size) == 2 && json_integer_value(json_array_get(size, 0)) > 0)
    json_object_set_new(json_object_get(spec, "process"), "consoleSize",
                        json_pack("{s:O, s:O}", "height", json_array_get(size, 0), "width",
                                  json_array_get(size, 1)));
  return spec;
}
