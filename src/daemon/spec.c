/* The OCI config.json of a container: the process from the merged Docker config, Docker's
 * default mounts, capabilities, masked and read-only paths (what `vessel run` and dockerd use). */
#include "daemon/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>

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
static int resolve_user(const char *rootfs, const char *spec, long *uid, long *gid,
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

static json_t *default_mounts(const char *dir) {
  json_t *m = json_pack(
      "[{s:s, s:s, s:s, s:[s,s,s]}, {s:s, s:s, s:s, s:[s,s,s,s]}, "
      "{s:s, s:s, s:s, s:[s,s,s,s,s,s]}, {s:s, s:s, s:s, s:[s,s,s,s,s]}, "
      "{s:s, s:s, s:s, s:[s,s,s]}, {s:s, s:s, s:s, s:[s,s,s,s]}]",
      "destination", "/proc", "type", "proc", "source", "proc", "options", "nosuid", "noexec",
      "nodev", "destination", "/dev", "type", "tmpfs", "source", "tmpfs", "options", "nosuid",
      "strictatime", "mode=755", "size=65536k", "destination", "/dev/pts", "type", "devpts",
      "source", "devpts", "options", "nosuid", "noexec", "newinstance", "ptmxmode=0666",
      "mode=0620", "gid=5", "destination", "/dev/shm", "type", "tmpfs", "source", "shm", "options",
      "nosuid", "noexec", "nodev", "mode=1777", "size=65536k", "destination", "/dev/mqueue", "type",
      "mqueue", "source", "mqueue", "options", "nosuid", "noexec", "nodev", "destination", "/sys",
      "type", "sysfs", "source", "sysfs", "options", "nosuid", "noexec", "nodev", "ro");
  static const char *const etc[] = {"hosts", "resolv.conf", "hostname"};
  for (size_t i = 0; i < ARRAY_SIZE(etc); i++) {
    _cleanup_free_ char *src = vs_asprintf("%s/%s", dir, etc[i]);
    _cleanup_free_ char *dst = vs_asprintf("/etc/%s", etc[i]);
    json_array_append_new(m, json_pack("{s:s, s:s, s:s, s:[s,s]}", "destination", dst, "type",
                                       "bind", "source", src, "options", "rbind", "rprivate"));
  }
  return m;
}

static json_t *default_caps(void) {
  static const char *const caps[] = {
      "CAP_CHOWN",   "CAP_DAC_OVERRIDE", "CAP_FSETID",           "CAP_FOWNER",
      "CAP_MKNOD",   "CAP_NET_RAW",      "CAP_SETGID",           "CAP_SETUID",
      "CAP_SETFCAP", "CAP_SETPCAP",      "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT",
      "CAP_KILL",    "CAP_AUDIT_WRITE"};
  json_t *a = json_array();
  for (size_t i = 0; i < ARRAY_SIZE(caps); i++)
    json_array_append_new(a, json_string(caps[i]));
  return a;
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

json_t *vd_spec_build(const vs_image *img, json_t *config, json_t *host_config, const char *dir,
                      const char *rootfs, const char *hostname, vs_error **err) {
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
  const char *cwd = json_string_value(json_object_get(config, "WorkingDir"));
  if (!cwd || !*cwd)
    cwd = "/";
  long uid, gid;
  if (resolve_user(rootfs, json_string_value(json_object_get(config, "User")), &uid, &gid, err) <
      0) {
    json_decref(args);
    json_decref(env);
    return NULL;
  }
  json_t *caps = default_caps();
  json_t *spec = json_pack(
      "{s:s, s:{s:b, s:{s:I, s:I}, s:o, s:o, s:s, s:{s:O, s:O, s:O}, s:[{s:s, s:i, s:i}], "
      "s:b}, s:{s:s, s:b}, s:s, s:o, s:{s:o, s:[s,s,s,s,s,s,s,s,s,s], s:[s,s,s,s,s,s]}}",
      "ociVersion", "1.0.2", "process", "terminal", 0, "user", "uid", (json_int_t)uid, "gid",
      (json_int_t)gid, "args", args, "env", env, "cwd", cwd, "capabilities", "bounding", caps,
      "effective", caps, "permitted", caps, "rlimits", "type", "RLIMIT_NOFILE", "hard", 1024,
      "soft", 1024, "noNewPrivileges", 0, "root", "path", rootfs, "readonly", 0, "hostname",
      hostname, "mounts", default_mounts(dir), "linux", "namespaces", namespaces(host_config),
      "maskedPaths", "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
      "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
      "/sys/firmware", "/proc/scsi", "readonlyPaths", "/proc/bus", "/proc/fs", "/proc/irq",
      "/proc/sys", "/proc/sysrq-trigger", "/sys/fs/cgroup");
  json_decref(caps);
  if (!spec)
    vs_error_set(err, EINVAL, "build the OCI configuration");
  return spec;
}
