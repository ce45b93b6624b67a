/* The OCI config.json of a container: the process from the merged Docker config, Docker's
 * default mounts, capabilities, masked and read-only paths (what `vessel run` and dockerd use). */
#include "daemon/internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

/* The client's mistake (400), without an errno text after the message. */
static int invalid(vs_error **err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int invalid(vs_error **err, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vs_error_setv(err, 0, fmt, ap);
  va_end(ap);
  if (err && *err)
    (*err)->errnum = EINVAL;
  return -1;
}

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

json_t *vd_spec_all_caps(void) {
  json_t *a = json_array();
  for (size_t k = 0; k < ARRAY_SIZE(all_caps); k++)
    if (prctl(PR_CAPBSET_READ, (unsigned long)k, 0, 0, 0) == 1)
      json_array_append_new(a, json_string(all_caps[k]));
  return a;
}

static bool in_array(json_t *a, const char *s) {
  size_t i;
  json_t *v;
  json_array_foreach(a, i, v) if (!strcmp(json_string_value(v), s)) return true;
  return false;
}

/* Docker's default set, then CapAdd, then CapDrop ("ALL" allowed in both). */
static json_t *capabilities(json_t *hc, vs_error **err) {
  _cleanup_json_ json_t *everything = vd_spec_all_caps();
  /* --privileged: every capability */
  json_t *caps = json_is_true(json_object_get(hc, "Privileged")) ? json_copy(everything)
                                                                 : ctr_docker_default_caps();
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
        json_array_extend(caps, everything);
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

/* A mount point as inspect's Mounts shows it; for volumes also whether the volume is anonymous
 * (removed with the container by rm -v and --rm) and whether it is filled from the image. */
static json_t *mount_point(const char *type, const char *name, const char *src, const char *dst,
                           const char *mode, bool ro) {
  json_t *p = json_pack("{s:s, s:s, s:s, s:s, s:b, s:s}", "Type", type, "Source", src ? src : "",
                        "Destination", dst, "Mode", mode ? mode : "", "RW", !ro, "Propagation",
                        !strcmp(type, "bind") ? "rprivate" : "");
  if (name) {
    json_object_set_new(p, "Name", json_string(name));
    json_object_set_new(p, "Driver", json_string("local"));
  }
  return p;
}

/* A volume mounted at dst: the named one (made when missing) or, with name NULL, a new
 * anonymous one with a random 64-hex name, as dockerd makes them. */
static int add_volume(vd_daemon *d, json_t *mounts, json_t *points, const char *name,
                      const char *dst, const char *mode, bool ro, bool copy, vs_error **err) {
  _cleanup_free_ char *anon = name ? NULL : vd_random_id();
  _cleanup_json_ json_t *vol = vd_volume_ensure(d, name ? name : anon, NULL, NULL, NULL, err);
  if (!vol)
    return -1;
  const char *src = json_string_value(json_object_get(vol, "Mountpoint"));
  json_array_append_new(mounts, bind_mount(src, dst, ro));
  json_t *p = mount_point("volume", name ? name : anon, src, dst, mode, ro);
  json_object_set_new(p, "Anonymous", json_boolean(!name));
  json_object_set_new(p, "CopyData", json_boolean(copy));
  json_array_append_new(points, p);
  return 0;
}

/* HostConfig.Binds: "/host:/ctr[:opts]" or "volume:/ctr[:opts]" (opts: ro, rw, z, Z, nocopy);
 * a missing host directory is made, as docker does. */
static int add_binds(vd_daemon *d, json_t *mounts, json_t *points, json_t *hc, vs_error **err) {
  size_t i;
  json_t *v;
  json_array_foreach(json_object_get(hc, "Binds"), i, v) {
    if (!json_is_string(v))
      return vs_error_set(err, EINVAL, "HostConfig.Binds[%zu]: expected string", i);
    _cleanup_free_ char *spec = vs_strdup(json_string_value(v));
    char *dst = strchr(spec, ':');
    if (!dst) { /* "/path" alone: an anonymous volume there (docker-py sends these) */
      if (check_destination("HostConfig.Binds", spec, err) < 0 ||
          add_volume(d, mounts, points, NULL, spec, "", false, true, err) < 0)
        return -1;
      continue;
    }
    *dst++ = 0;
    char *opt = strchr(dst, ':');
    if (opt)
      *opt++ = 0;
    if (check_destination("HostConfig.Binds", dst, err) < 0)
      return -1;
    _cleanup_free_ char *mode = vs_strdup(opt ? opt : "");
    bool ro = false, copy = true;
    for (char *o = opt ? strtok_r(opt, ",", &opt) : NULL; o; o = strtok_r(NULL, ",", &opt)) {
      if (!strcmp(o, "ro"))
        ro = true;
      else if (!strcmp(o, "nocopy") && spec[0] != '/')
        copy = false;
      else if (strcmp(o, "rw") != 0 && strcmp(o, "z") != 0 && strcmp(o, "Z") != 0)
        return vs_error_set(err, EINVAL, "invalid mode: %s", o);
    }
    if (spec[0] != '/') { /* a named volume */
      if (add_volume(d, mounts, points, spec, dst, mode, ro, copy, err) < 0)
        return -1;
      continue;
    }
    if (vs_mkdir_p(spec, 0755, err) < 0)
      return vs_error_wrap(err, "bind source %s", spec);
    json_array_append_new(mounts, bind_mount(spec, dst, ro));
    json_array_append_new(points, mount_point("bind", NULL, spec, dst, mode, ro));
  }
  return 0;
}

/* HostConfig.Mounts ({Type bind|volume|tmpfs, Source, Target, ReadOnly, VolumeOptions}) and
 * HostConfig.Tmpfs. */
static int add_mounts(vd_daemon *d, json_t *mounts, json_t *points, json_t *hc, vs_error **err) {
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
      json_array_append_new(points, mount_point("bind", NULL, src, dst, "", ro));
    } else if (type && !strcmp(type, "volume")) {
      bool nocopy = json_is_true(json_object_get(json_object_get(m, "VolumeOptions"), "NoCopy"));
      if (add_volume(d, mounts, points, src && *src ? src : NULL, dst, "", ro, !nocopy, err) < 0)
        return -1;
    } else if (type && !strcmp(type, "tmpfs")) {
      json_int_t size =
          json_integer_value(json_object_get(json_object_get(m, "TmpfsOptions"), "SizeBytes"));
      _cleanup_free_ char *opt = size > 0 ? vs_asprintf("size=%lld", (long long)size) : NULL;
      json_array_append_new(mounts, tmpfs_mount(dst, opt));
      json_array_append_new(points, mount_point("tmpfs", NULL, "", dst, "", ro));
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

static json_t *mount_at(json_t *mounts, const char *dst);

/* HostConfig.VolumesFrom: "container[:ro|:rw]": the volumes and bind mounts of another
 * container at the same places, read-only with :ro, read-write with :rw, else as that container
 * has them (dockerd's rule; its tmpfs mounts are not shared). A place this container mounts
 * something at itself keeps its own. The copied mount points name the same volumes, so a volume
 * stays in use (and is not removed with either container's -v) while either container exists. */
static int add_volumes_from(vd_daemon *d, json_t *mounts, json_t *points, json_t *hc,
                            vs_error **err) {
  size_t i;
  json_t *v;
  json_array_foreach(json_object_get(hc, "VolumesFrom"), i, v) {
    if (!json_is_string(v))
      return vs_error_set(err, EINVAL, "HostConfig.VolumesFrom[%zu]: expected string", i);
    _cleanup_free_ char *name = vs_strdup(json_string_value(v));
    char *mode = strchr(name, ':');
    if (mode)
      *mode++ = 0;
    int force = -1; /* -1: as the other container has it, 0 rw, 1 ro */
    for (char *save = NULL, *o = mode ? strtok_r(mode, ",", &save) : NULL; o;
         o = strtok_r(NULL, ",", &save)) {
      if (!strcmp(o, "ro") || !strcmp(o, "rw"))
        force = !strcmp(o, "ro");
      else if (strcmp(o, "z") != 0 && strcmp(o, "Z") != 0)
        return vs_error_set(err, EINVAL, "invalid mode: %s", o);
    }
    pthread_mutex_lock(&d->lock);
    vd_container *src = *name ? vd_ctr_find(d, name) : NULL;
    _cleanup_json_ json_t *theirs =
        src ? json_deep_copy(json_object_get(src->rec, "MountPoints")) : NULL;
    pthread_mutex_unlock(&d->lock);
    if (!src)
      return vs_error_set(err, ENOENT, "No such container: %s", name);
    size_t k;
    json_t *p;
    json_array_foreach(theirs, k, p) {
      const char *type = json_string_value(json_object_get(p, "Type"));
      const char *from = json_string_value(json_object_get(p, "Source"));
      const char *dst = json_string_value(json_object_get(p, "Destination"));
      if (!type || !from || !*from || !dst || mount_at(mounts, dst) ||
          (strcmp(type, "volume") != 0 && strcmp(type, "bind") != 0))
        continue;
      bool ro = force >= 0 ? force == 1 : !json_is_true(json_object_get(p, "RW"));
      json_array_append_new(mounts, bind_mount(from, dst, ro));
      json_t *copy = json_copy(p);
      json_object_set_new(copy, "RW", json_boolean(!ro));
      if (force >= 0)
        json_object_set_new(copy, "Mode", json_string(ro ? "ro" : "rw"));
      json_object_set_new(copy, "CopyData", json_false()); /* filled by its first user */
      json_array_append_new(points, copy);
    }
  }
  return 0;
}

/* Whether the container's own HostConfig.Ulimits names the resource (an OCI "RLIMIT_X"). */
static bool own_ulimit(json_t *host_config, const char *type) {
  size_t i;
  json_t *u;
  json_array_foreach(json_object_get(host_config, "Ulimits"), i, u) {
    const char *name = json_string_value(json_object_get(u, "Name"));
    if (name && !strncmp(type, "RLIMIT_", 7) && !strcasecmp(type + 7, name))
      return true;
  }
  return false;
}

/* daemon.json's default-ulimits over the built-in ones, resource by resource, unless the
 * container sets its own (as dockerd merges them). */
static void apply_default_ulimits(vd_daemon *d, json_t *host_config, json_t *rlimits) {
  size_t i, k;
  json_t *def, *have;
  json_array_foreach(d->default_ulimits, i, def) {
    const char *type = json_string_value(json_object_get(def, "type"));
    if (own_ulimit(host_config, type))
      continue;
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

static json_t *mount_at(json_t *mounts, const char *dst) {
  size_t i;
  json_t *m;
  json_array_foreach(mounts, i, m) {
    const char *have = json_string_value(json_object_get(m, "destination"));
    if (have && !strcmp(have, dst))
      return m;
  }
  return NULL;
}

/* Config.Volumes (the image's VOLUMEs and the client's `-v /path`): an anonymous volume at each
 * path nothing else is mounted on, filled from the image. */
static int add_config_volumes(vd_daemon *d, json_t *mounts, json_t *points, json_t *config,
                              vs_error **err) {
  const char *dst;
  json_t *v;
  json_object_foreach(json_object_get(config, "Volumes"), dst, v) {
    if (check_destination("Config.Volumes", dst, err) < 0)
      return -1;
    if (mount_at(mounts, dst))
      continue;
    if (add_volume(d, mounts, points, NULL, dst, "", false, true, err) < 0)
      return -1;
  }
  return 0;
}

/* --init: vessel-init (next to vessel-monitor) bound read-only at /dev/init, as dockerd binds
 * docker-init, runs the command as its child. */
static int add_init(vd_daemon *d, json_t *mounts, json_t *args, vs_error **err) {
  const char *slash = strrchr(d->monitor_path, '/');
  _cleanup_free_ char *init =
      slash ? vs_asprintf("%.*s/vessel-init", (int)(slash - d->monitor_path), d->monitor_path)
            : vs_strdup("vessel-init");
  if (access(init, X_OK) < 0) /* the daemon's installation, not the client's request: 500 */
    return vs_error_set(err, 0, "--init: %s: %s", init, strerror(errno));
  json_array_append_new(mounts,
                        json_pack("{s:s, s:s, s:s, s:[s,s,s]}", "destination", "/dev/init", "type",
                                  "bind", "source", init, "options", "bind", "ro", "nosuid"));
  json_array_insert_new(args, 0, json_string("--"));
  json_array_insert_new(args, 0, json_string("/dev/init"));
  return 0;
}

/* ---------------------------------------------------------------- security, devices, limits */

/* HostConfig.SecurityOpt as dockerd 20.10 reads it: "no-new-privileges[=bool]",
 * "seccomp=unconfined|<profile JSON>" (the CLI sends a profile file's content), and label= and
 * apparmor= options, which mean nothing on a host without SELinux or AppArmor (dockerd ignores
 * them there too). */
static int security_opts(json_t *hc, bool *nnp, bool *unconfined, json_t **profile,
                         vs_error **err) {
  *nnp = *unconfined = false;
  *profile = NULL;
  size_t i;
  json_t *v;
  json_array_foreach(json_object_get(hc, "SecurityOpt"), i, v) {
    const char *opt = json_string_value(v);
    if (!opt)
      return invalid(err, "HostConfig.SecurityOpt[%zu]: expected a string", i);
    if (!strcmp(opt, "no-new-privileges")) {
      *nnp = true;
      continue;
    }
    if (!strcmp(opt, "disable"))
      continue;
    size_t klen = strcspn(opt, "=");
    if (!opt[klen])
      klen = strcspn(opt, ":");
    if (!opt[klen])
      return invalid(err, "invalid --security-opt 1: \"%s\"", opt);
    const char *val = opt + klen + 1;
    if (klen == 17 && !strncmp(opt, "no-new-privileges", klen)) {
      if (!strcmp(val, "true") || !strcmp(val, "1"))
        *nnp = true;
      else if (strcmp(val, "false") != 0 && strcmp(val, "0") != 0)
        return invalid(err, "invalid --security-opt 2: \"%s\"", opt);
    } else if (klen == 7 && !strncmp(opt, "seccomp", klen)) {
      json_decref(*profile);
      *profile = NULL;
      *unconfined = !strcmp(val, "unconfined");
      if (*unconfined)
        continue;
      json_error_t je;
      *profile = json_loads(val, JSON_REJECT_DUPLICATES, &je);
      if (!*profile)
        return invalid(err, "Decoding seccomp profile failed: %s (line %d)", je.text, je.line);
    } else if (!(klen == 5 && !strncmp(opt, "label", klen)) &&
               !(klen == 8 && !strncmp(opt, "apparmor", klen))) {
      return invalid(err, "invalid --security-opt 2: \"%s\"", opt);
    }
  }
  return 0;
}

/* A device node of the host as an OCI linux.devices entry at path (NULL: not a device). */
static json_t *device_entry(const struct stat *st, const char *path) {
  if (!S_ISCHR(st->st_mode) && !S_ISBLK(st->st_mode))
    return NULL;
  return json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:I}", "path", path, "type",
                   S_ISCHR(st->st_mode) ? "c" : "b", "major", (json_int_t)major(st->st_rdev),
                   "minor", (json_int_t)minor(st->st_rdev), "fileMode",
                   (json_int_t)(st->st_mode & 0777), "uid", (json_int_t)st->st_uid, "gid",
                   (json_int_t)st->st_gid);
}

/* The device nodes under host_dir, each at the same place under ctr_dir; the directories
 * runc's host device scan skips are skipped here too, and /dev/console and /dev/ptmx, which
 * the runtime makes itself. */
static void devices_under(const char *host_dir, const char *ctr_dir, json_t *out, int depth) {
  DIR *dh = depth < 8 ? opendir(host_dir) : NULL;
  if (!dh)
    return;
  static const char *const skipped[] = {".",    "..",          "pts",   "shm",     "fd",  "mqueue",
                                        ".lxc", ".lxd-mounts", ".udev", "console", "ptmx"};
  struct dirent *de;
  while ((de = readdir(dh))) {
    bool skip = false;
    for (size_t k = 0; k < ARRAY_SIZE(skipped); k++)
      skip = skip || !strcmp(de->d_name, skipped[k]);
    if (skip)
      continue;
    _cleanup_free_ char *hp = vs_asprintf("%s/%s", host_dir, de->d_name);
    _cleanup_free_ char *cp = vs_asprintf("%s/%s", ctr_dir, de->d_name);
    struct stat st;
    if (lstat(hp, &st) < 0)
      continue;
    if (S_ISDIR(st.st_mode)) {
      devices_under(hp, cp, out, depth + 1);
      continue;
    }
    json_t *e = device_entry(&st, cp);
    if (e)
      json_array_append_new(out, e);
  }
  closedir(dh);
}

/* HostConfig.Devices ({PathOnHost, PathInContainer, CgroupPermissions}; a directory gives every
 * device under it) and DeviceCgroupRules ("c 1:3 rwm"), after Docker's default rules: nothing
 * but the standard devices. --privileged: every device of the host, all allowed, and of the
 * --device mappings those to another path (as dockerd). */
static int devices(json_t *hc, bool privileged, json_t *devs, json_t *rules, vs_error **err) {
  if (privileged)
    devices_under("/dev", "/dev", devs, 0);
  json_array_append_new(rules, json_pack("{s:b, s:s}", "allow", privileged, "access", "rwm"));
  size_t i;
  json_t *v;
  json_array_foreach(json_object_get(hc, "Devices"), i, v) {
    const char *host = json_string_value(json_object_get(v, "PathOnHost"));
    const char *in = json_string_value(json_object_get(v, "PathInContainer"));
    const char *perms = json_string_value(json_object_get(v, "CgroupPermissions"));
    if (!host || host[0] != '/')
      return invalid(err, "HostConfig.Devices[%zu]: PathOnHost must be an absolute path", i);
    if (!in || !*in)
      in = host;
    if (strncmp(in, "/dev/", 5) != 0 || strstr(in, "/../") || strstr(in, "/./"))
      return invalid(err, "HostConfig.Devices[%zu]: %s is not a path under /dev", i, in);
    if (!perms || !*perms)
      perms = "rwm";
    /* privileged: every device is there and allowed already; only other paths are added */
    if (privileged && !strcmp(in, host))
      continue;
    if (strspn(perms, "rwm") != strlen(perms))
      return invalid(err, "invalid device mode: %s", perms);
    struct stat st;
    if (stat(host, &st) < 0) /* 400, not 404: the CLI would take a 404 for a missing image */
      return invalid(err,
                     "error gathering device information while adding custom device \"%s\": %s",
                     host, strerror(errno));
    size_t first = json_array_size(devs);
    if (S_ISDIR(st.st_mode)) {
      devices_under(host, in, devs, 0);
    } else {
      json_t *e = device_entry(&st, in);
      if (!e)
        return invalid(err,
                       "error gathering device information while adding custom device \"%s\": "
                       "not a device node",
                       host);
      json_array_append_new(devs, e);
    }
    for (size_t k = first; !privileged && k < json_array_size(devs); k++) {
      json_t *e = json_array_get(devs, k);
      json_array_append_new(rules, json_pack("{s:b, s:O, s:O, s:O, s:s}", "allow", 1, "type",
                                             json_object_get(e, "type"), "major",
                                             json_object_get(e, "major"), "minor",
                                             json_object_get(e, "minor"), "access", perms));
    }
  }
  json_array_foreach(json_object_get(hc, "DeviceCgroupRules"), i, v) {
    const char *rule = json_string_value(v);
    char type, majs[16], mins[16], access[8];
    char extra;
    if (!rule ||
        sscanf(rule, "%c %15[0-9*]:%15[0-9*] %7s%c", &type, majs, mins, access, &extra) != 4 ||
        !strchr("abc", type) || strspn(access, "rwm") != strlen(access))
      return invalid(err, "invalid device cgroup rule format: '%s'", rule ? rule : "");
    const char t[2] = {type, 0};
    json_t *r = json_pack("{s:b, s:s, s:s}", "allow", 1, "type", t, "access", access);
    if (strcmp(majs, "*") != 0)
      json_object_set_new(r, "major", json_integer(strtoll(majs, NULL, 10)));
    if (strcmp(mins, "*") != 0)
      json_object_set_new(r, "minor", json_integer(strtoll(mins, NULL, 10)));
    json_array_append_new(rules, r);
  }
  return 0;
}

/* HostConfig.Ulimits ({Name "nofile", Soft, Hard}) over the default open-files limit. */
static int rlimits(json_t *hc, json_t *out, vs_error **err) {
  static const char *const names[] = {
      "as",   "core",   "cpu",   "data", "fsize",  "locks",  "memlock",    "msgqueue",
      "nice", "nofile", "nproc", "rss",  "rtprio", "rttime", "sigpending", "stack"};
  bool nofile = false;
  size_t i;
  json_t *v;
  json_array_foreach(json_object_get(hc, "Ulimits"), i, v) {
    const char *name = json_string_value(json_object_get(v, "Name"));
    json_t *soft = json_object_get(v, "Soft"), *hard = json_object_get(v, "Hard");
    bool known = false;
    for (size_t k = 0; name && k < ARRAY_SIZE(names); k++)
      known = known || !strcmp(name, names[k]);
    if (!known)
      return invalid(err, "invalid ulimit type: %s", name ? name : "(none)");
    if (!json_is_integer(soft) || !json_is_integer(hard))
      return invalid(err, "HostConfig.Ulimits[%zu]: Soft and Hard must be integers", i);
    if (json_integer_value(soft) > json_integer_value(hard))
      return invalid(err, "ulimit soft limit must be less than or equal to hard limit: %lld > %lld",
                     (long long)json_integer_value(soft), (long long)json_integer_value(hard));
    _cleanup_free_ char *type = vs_asprintf("RLIMIT_%s", name);
    for (char *p = type; *p; p++)
      *p = (char)(*p >= 'a' && *p <= 'z' ? *p - 32 : *p);
    nofile = nofile || !strcmp(name, "nofile");
    json_array_append_new(out,
                          json_pack("{s:s, s:O, s:O}", "type", type, "hard", hard, "soft", soft));
  }
  if (!nofile)
    json_array_append_new(
        out, json_pack("{s:s, s:i, s:i}", "type", "RLIMIT_NOFILE", "hard", 1024, "soft", 1024));
  return 0;
}

/* HostConfig.GroupAdd: group names (from the image's /etc/group) or numbers. */
static int additional_gids(const char *rootfs, json_t *hc, json_t *out, vs_error **err) {
  size_t i;
  json_t *v;
  json_array_foreach(json_object_get(hc, "GroupAdd"), i, v) {
    const char *g = json_string_value(v);
    if (!g || !*g)
      return invalid(err, "HostConfig.GroupAdd[%zu]: expected a group name or number", i);
    long gid = 0;
    if (all_digits(g)) {
      gid = strtol(g, NULL, 10);
    } else {
      _cleanup_close_ int rootfd = open(rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
      if (rootfd < 0 || lookup_in_file(rootfd, "/etc/group", g, &gid, NULL) < 0)
        return invalid(err, "Unable to find group %s: no matching entries in group file", g);
    }
    if (gid < 0 || gid > 0xfffffffeL)
      return invalid(err, "HostConfig.GroupAdd[%zu]: %s is not a group id", i, g);
    json_array_append_new(out, json_integer(gid));
  }
  return 0;
}

/* HostConfig.Sysctls: only those a container's own namespaces hold, as runc allows them. */
static int sysctls(json_t *hc, json_t *out, vs_error **err) {
  static const char *const ipc[] = {"kernel.msgmax", "kernel.msgmnb",         "kernel.msgmni",
                                    "kernel.sem",    "kernel.shmall",         "kernel.shmmax",
                                    "kernel.shmmni", "kernel.shm_rmid_forced"};
  const char *net = json_string_value(json_object_get(hc, "NetworkMode"));
  bool host_net = net && !strcmp(net, "host");
  const char *key;
  json_t *v;
  json_object_foreach(json_object_get(hc, "Sysctls"), key, v) {
    if (!json_is_string(v))
      return invalid(err, "HostConfig.Sysctls.%s: expected a string", key);
    bool ok = !strncmp(key, "fs.mqueue.", 10) || (!strncmp(key, "net.", 4) && key[4]);
    for (size_t k = 0; k < ARRAY_SIZE(ipc); k++)
      ok = ok || !strcmp(key, ipc[k]);
    if (!ok)
      return invalid(err, "sysctl '%s' is not allowed: it is not in a namespace of the container",
                     key);
    if (host_net && !strncmp(key, "net.", 4))
      return invalid(err, "sysctl '%s' is not allowed in the host's network namespace", key);
    json_object_set(out, key, v);
  }
  return 0;
}

static void drop_option(json_t *m, const char *opt) {
  json_t *o = json_object_get(m, "options");
  for (size_t k = json_array_size(o); k-- > 0;)
    if (!strcmp(json_string_value(json_array_get(o, k)), opt))
      json_array_remove(o, k);
}

/* What HostConfig asks beyond the process and mounts: privileges, security options, devices,
 * limits, groups, /dev/shm's size, sysctls. */
static int apply_host_config(json_t *spec, json_t *hc, const char *rootfs, json_t *caps,
                             vs_error **err) {
  json_t *process = json_object_get(spec, "process");
  json_t *linux_ = json_object_get(spec, "linux");
  json_t *mounts = json_object_get(spec, "mounts");
  bool privileged = json_is_true(json_object_get(hc, "Privileged"));
  bool nnp, unconfined;
  _cleanup_json_ json_t *profile = NULL;
  if (security_opts(hc, &nnp, &unconfined, &profile, err) < 0)
    return -1;
  json_object_set_new(process, "noNewPrivileges", json_boolean(nnp));
  /* privileged containers and seccomp=unconfined run without a filter, as with dockerd */
  if (profile && !privileged) {
    json_t *oci = ctr_seccomp_from_docker(profile, caps, err);
    if (!oci)
      return -1;
    json_object_set_new(linux_, "seccomp", oci);
  }
  json_t *devs = json_array(), *rules = json_array();
  json_object_set_new(linux_, "devices", devs);
  json_object_set_new(json_object_get(linux_, "resources"), "devices", rules);
  if (devices(hc, privileged, devs, rules, err) < 0)
    return -1;
  json_t *rl = json_array();
  json_object_set_new(process, "rlimits", rl);
  if (rlimits(hc, rl, err) < 0)
    return -1;
  json_t *gids = json_array();
  if (additional_gids(rootfs, hc, gids, err) < 0) {
    json_decref(gids);
    return -1;
  }
  if (json_array_size(gids))
    json_object_set_new(json_object_get(process, "user"), "additionalGids", gids);
  else
    json_decref(gids);
  json_t *sc = json_object();
  json_object_set_new(linux_, "sysctl", sc);
  if (sysctls(hc, sc, err) < 0)
    return -1;
  json_int_t shm = json_integer_value(json_object_get(hc, "ShmSize"));
  if (shm < 0)
    return invalid(err, "SHM size can not be less than 0");
  json_t *shm_mount = mount_at(mounts, "/dev/shm");
  if (shm > 0 && shm_mount) {
    for (size_t k = json_array_size(json_object_get(shm_mount, "options")); k-- > 0;) {
      const char *o = json_string_value(json_array_get(json_object_get(shm_mount, "options"), k));
      if (!strncmp(o, "size=", 5))
        json_array_remove(json_object_get(shm_mount, "options"), k);
    }
    json_array_append_new(json_object_get(shm_mount, "options"),
                          json_sprintf("size=%lld", (long long)shm));
  }
  if (privileged) {
    /* /sys and /proc writable: no read-only or masked paths, sysfs mounted read-write */
    json_object_set_new(linux_, "maskedPaths", json_array());
    json_object_set_new(linux_, "readonlyPaths", json_array());
    json_t *sys = mount_at(mounts, "/sys");
    if (sys)
      drop_option(sys, "ro");
  }
  return 0;
}

json_t *vd_spec_build(vd_daemon *d, const vs_image *img, json_t *config, json_t *host_config,
                      const char *dir, const char *rootfs, const char *hostname, json_t *points,
                      vs_error **err) {
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
  if (json_is_true(json_object_get(host_config, "Init")) && add_init(d, mounts, args, err) < 0) {
    json_decref(caps);
    json_decref(mounts);
    json_decref(args);
    json_decref(env);
    return NULL;
  }
  if (!caps || add_binds(d, mounts, points, host_config, err) < 0 ||
      add_mounts(d, mounts, points, host_config, err) < 0 ||
      add_volumes_from(d, mounts, points, host_config, err) < 0 ||
      add_config_volumes(d, mounts, points, config, err) < 0) {
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
  if (apply_host_config(
          spec, host_config, rootfs,
          json_object_get(json_object_get(json_object_get(spec, "process"), "capabilities"),
                          "bounding"),
          err) < 0) {
    json_decref(spec);
    return NULL;
  }
  apply_default_ulimits(d, host_config,
                        json_object_get(json_object_get(spec, "process"), "rlimits"));
  json_t *size = json_object_get(host_config, "ConsoleSize");
  if (tty && json_array_size(size) == 2 && json_integer_value(json_array_get(size, 0)) > 0)
    json_object_set_new(json_object_get(spec, "process"), "consoleSize",
                        json_pack("{s:O, s:O}", "height", json_array_get(size, 0), "width",
                                  json_array_get(size, 1)));
  return spec;
}
