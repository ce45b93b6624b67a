/* The default config.json (`spec`), the runtime's feature list (`features`), and Docker's defaults
 * for specs built from images. */
#include "internal.h"
#include "security.h"

#include <arpa/inet.h>
#include <errno.h>
#include <string.h>

static const char default_spec[] =
    "{\"ociVersion\":\"" CTR_OCI_VERSION "\","
    "\"process\":{\"terminal\":true,\"user\":{\"uid\":0,\"gid\":0},\"args\":[\"sh\"],"
    "\"env\":[\"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\","
    "\"TERM=xterm\"],\"cwd\":\"/\","
    "\"capabilities\":{\"bounding\":[\"CAP_AUDIT_WRITE\",\"CAP_KILL\",\"CAP_NET_BIND_SERVICE\"],"
    "\"effective\":[\"CAP_AUDIT_WRITE\",\"CAP_KILL\",\"CAP_NET_BIND_SERVICE\"],"
    "\"permitted\":[\"CAP_AUDIT_WRITE\",\"CAP_KILL\",\"CAP_NET_BIND_SERVICE\"],"
    "\"ambient\":[\"CAP_AUDIT_WRITE\",\"CAP_KILL\",\"CAP_NET_BIND_SERVICE\"]},"
    "\"rlimits\":[{\"type\":\"RLIMIT_NOFILE\",\"hard\":1024,\"soft\":1024}],"
    "\"noNewPrivileges\":true},"
    "\"root\":{\"path\":\"rootfs\",\"readonly\":true},"
    "\"hostname\":\"vessel\","
    "\"mounts\":["
    "{\"destination\":\"/proc\",\"type\":\"proc\",\"source\":\"proc\"},"
    "{\"destination\":\"/dev\",\"type\":\"tmpfs\",\"source\":\"tmpfs\","
    "\"options\":[\"nosuid\",\"strictatime\",\"mode=755\",\"size=65536k\"]},"
    "{\"destination\":\"/dev/pts\",\"type\":\"devpts\",\"source\":\"devpts\","
    "\"options\":[\"nosuid\",\"noexec\",\"newinstance\",\"ptmxmode=0666\",\"mode=0620\",\"gid=5\"]}"
    ","
    "{\"destination\":\"/dev/shm\",\"type\":\"tmpfs\",\"source\":\"shm\","
    "\"options\":[\"nosuid\",\"noexec\",\"nodev\",\"mode=1777\",\"size=65536k\"]},"
    "{\"destination\":\"/dev/mqueue\",\"type\":\"mqueue\",\"source\":\"mqueue\","
    "\"options\":[\"nosuid\",\"noexec\",\"nodev\"]},"
    "{\"destination\":\"/sys\",\"type\":\"sysfs\",\"source\":\"sysfs\","
    "\"options\":[\"nosuid\",\"noexec\",\"nodev\",\"ro\"]},"
    "{\"destination\":\"/sys/fs/cgroup\",\"type\":\"cgroup\",\"source\":\"cgroup\","
    "\"options\":[\"nosuid\",\"noexec\",\"nodev\",\"relatime\",\"ro\"]}],"
    "\"linux\":{\"resources\":{\"devices\":[{\"allow\":false,\"access\":\"rwm\"}]},"
    "\"namespaces\":[{\"type\":\"pid\"},{\"type\":\"network\"},{\"type\":\"ipc\"},"
    "{\"type\":\"uts\"},{\"type\":\"mount\"},{\"type\":\"cgroup\"}],"
    "\"maskedPaths\":[\"/proc/acpi\",\"/proc/asound\",\"/proc/kcore\",\"/proc/keys\","
    "\"/proc/latency_stats\",\"/proc/timer_list\",\"/proc/timer_stats\",\"/proc/sched_debug\","
    "\"/sys/firmware\",\"/proc/scsi\"],"
    "\"readonlyPaths\":[\"/proc/bus\",\"/proc/fs\",\"/proc/irq\",\"/proc/sys\","
    "\"/proc/sysrq-trigger\"]}}";

json_t *ctr_default_spec(bool rootless) {
  json_t *j = json_loads(default_spec, 0, NULL);
  if (!j)
    abort();
  if (rootless) {
    json_t *l = json_object_get(j, "linux");
    json_t *ns = json_pack("[{s:s},{s:s},{s:s},{s:s},{s:s},{s:s}]", "type", "pid", "type", "ipc",
                           "type", "uts", "type", "mount", "type", "cgroup", "type", "user");
    json_object_set_new(l, "namespaces", ns);
    json_object_set_new(
        l, "uidMappings",
        json_pack("[{s:i,s:i,s:i}]", "containerID", 0, "hostID", (int)getuid(), "size", 1));
    json_object_set_new(
        l, "gidMappings",
        json_pack("[{s:i,s:i,s:i}]", "containerID", 0, "hostID", (int)getgid(), "size", 1));
    json_object_del(l, "resources");
    json_t *mounts = json_object_get(j, "mounts");
    size_t i;
    json_t *m;
    json_array_foreach(mounts, i, m) {
      const char *dest = json_string_value(json_object_get(m, "destination"));
      if (dest && !strcmp(dest, "/sys")) {
        json_object_set_new(m, "type", json_string("none"));
        json_object_set_new(m, "source", json_string("/sys"));
        json_object_set_new(m, "options",
                            json_pack("[s,s,s,s,s]", "rbind", "nosuid", "noexec", "nodev", "ro"));
      }
      if (dest && !strcmp(dest, "/dev/pts")) {
        json_t *o = json_object_get(m, "options");
        json_array_remove(o, json_array_size(o) - 1); /* gid=5 is not mapped */
      }
    }
  }
  return j;
}

static const char features[] =
    "{\"ociVersionMin\":\"1.0.0\",\"ociVersionMax\":\"" CTR_OCI_VERSION "\","
    "\"hooks\":[\"prestart\",\"createRuntime\",\"createContainer\",\"startContainer\","
    "\"poststart\",\"poststop\"],"
    "\"mountOptions\":[\"async\",\"atime\",\"bind\",\"defaults\",\"dev\",\"diratime\",\"dirsync\","
    "\"exec\",\"loud\",\"mand\",\"noatime\",\"nodev\",\"nodiratime\",\"noexec\",\"nomand\","
    "\"norelatime\",\"nostrictatime\",\"nosuid\",\"private\",\"rbind\",\"relatime\",\"remount\","
    "\"ro\",\"rprivate\",\"rshared\",\"rslave\",\"runbindable\",\"rw\",\"shared\",\"silent\","
    "\"slave\",\"strictatime\",\"suid\",\"sync\",\"unbindable\"],"
    "\"linux\":{\"namespaces\":[\"cgroup\",\"ipc\",\"mount\",\"network\",\"pid\",\"time\","
    "\"user\",\"uts\"],"
    "\"cgroup\":{\"v1\":true,\"v2\":true,\"systemd\":false,\"systemdUser\":false},"
    "\"intelRdt\":{\"enabled\":false},"
    "\"mountExtensions\":{\"idmap\":{\"enabled\":false}}},"
    "\"annotations\":{\"org.opencontainers.runc.checkpoint.enabled\":\"false\"}}";

json_t *ctr_features(void) {
  json_t *j = json_loads(features, 0, NULL);
  if (!j)
    abort();
  /* capabilities, seccomp, apparmor, selinux: what this build and host have */
  ctr_security_features(json_object_get(j, "linux"));
  return j;
}

json_t *ctr_docker_default_mounts(const char *etc_dir) {
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
    _cleanup_free_ char *src = vs_asprintf("%s/%s", etc_dir, etc[i]);
    _cleanup_free_ char *dst = vs_asprintf("/etc/%s", etc[i]);
    json_array_append_new(m, json_pack("{s:s, s:s, s:s, s:[s,s]}", "destination", dst, "type",
                                       "bind", "source", src, "options", "rbind", "rprivate"));
  }
  return m;
}

json_t *ctr_docker_default_caps(void) {
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

/* Not synced: vesseld syncs a new container's directory once, before its commit point, and a
 * daemonless run has nothing to recover. */
static int write_etc_file(const char *dir, const char *name, const char *text, vs_error **err) {
  _cleanup_free_ char *p = vs_asprintf("%s/%s", dir, name);
  return vs_write_file(p, text, strlen(text), 0644, err);
}

static bool is_ip_address(const char *s) {
  unsigned char buf[sizeof(struct in6_addr)];
  return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

/* The words of the host's resolv.conf lines starting with key ("nameserver", "search"). */
static json_t *resolv_words(const char *text, const char *key) {
  json_t *out = json_array();
  size_t klen = strlen(key);
  for (const char *line = text; line && *line;) {
    const char *end = strchr(line, '\n');
    size_t len = end ? (size_t)(end - line) : strlen(line);
    if (len > klen && !strncmp(line, key, klen) && (line[klen] == ' ' || line[klen] == '\t')) {
      _cleanup_free_ char *rest = vs_asprintf("%.*s", (int)(len - klen), line + klen);
      char *save = NULL;
      for (char *w = strtok_r(rest, " \t\r", &save); w; w = strtok_r(NULL, " \t\r", &save)) {
        if (w[0] == '#' || w[0] == ';')
          break;
        json_array_append_new(out, json_string(w));
      }
    }
    line = end ? end + 1 : NULL;
  }
  return out;
}

/* resolv.conf as dockerd writes it when any DNS option is given: search, nameservers, options. */
static char *build_resolv(const char *host, const ctr_docker_dns *o, vs_error **err) {
  _cleanup_json_ json_t *servers =
      json_array_size(o->servers) ? json_incref(o->servers) : resolv_words(host, "nameserver");
  _cleanup_json_ json_t *search =
      json_array_size(o->search) ? json_incref(o->search) : resolv_words(host, "search");
  _cleanup_json_ json_t *options =
      json_array_size(o->options) ? json_incref(o->options) : resolv_words(host, "options");
  size_t i;
  json_t *v;
  json_array_foreach(servers, i, v) {
    if (!json_is_string(v) || !is_ip_address(json_string_value(v))) {
      vs_error_set(err, 0, "%s is not an ip address",
                   json_is_string(v) ? json_string_value(v) : "(not a string)");
      (*err)->errnum = EINVAL;
      return NULL;
    }
  }
  _cleanup_free_ char *s = vs_json_join(search, " "), *opts = vs_json_join(options, " ");
  char *out = vs_strdup("");
  if (*s && strcmp(s, ".") != 0) {
    char *n = vs_asprintf("search %s\n", s);
    free(out);
    out = n;
  }
  json_array_foreach(servers, i, v) {
    char *n = vs_asprintf("%snameserver %s\n", out, json_string_value(v));
    free(out);
    out = n;
  }
  if (*opts) {
    char *n = vs_asprintf("%soptions %s\n", out, opts);
    free(out);
    out = n;
  }
  return out;
}

/* "name:address" entries as hosts lines. */
static char *extra_hosts(json_t *entries, vs_error **err) {
  char *out = vs_strdup("");
  size_t i;
  json_t *v;
  json_array_foreach(entries, i, v) {
    const char *e = json_string_value(v);
    const char *colon = e ? strchr(e, ':') : NULL;
    if (!colon || colon == e || !is_ip_address(colon + 1)) {
      free(out);
      vs_error_set(err, 0, "invalid IP address in add-host: \"%s\"", colon ? colon + 1 : "");
      (*err)->errnum = EINVAL;
      return NULL;
    }
    char *n = vs_asprintf("%s%s\t%.*s\n", out, colon + 1, (int)(colon - e), e);
    free(out);
    out = n;
  }
  return out;
}

int ctr_docker_write_etc_files_dns(const char *etc_dir, const char *hostname,
                                   const ctr_docker_dns *dns, vs_error **err) {
  _cleanup_free_ char *extra = NULL;
  if (dns && !(extra = extra_hosts(dns->extra_hosts, err)))
    return -1;
  _cleanup_free_ char *hosts =
      vs_asprintf("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
                  "%s127.0.1.1\t%s\n",
                  extra ? extra : "", hostname);
  _cleanup_free_ char *hn = vs_asprintf("%s\n", hostname);
  _cleanup_free_ char *resolv = NULL;
  if (vs_read_file("/etc/resolv.conf", 65536, &resolv, NULL, NULL) < 0)
    resolv = vs_strdup("");
  if (dns && (json_array_size(dns->servers) || json_array_size(dns->search) ||
              json_array_size(dns->options))) {
    char *built = build_resolv(resolv, dns, err);
    if (!built)
      return -1;
    free(resolv);
    resolv = built;
  }
  if (write_etc_file(etc_dir, "hosts", hosts, err) < 0 ||
      write_etc_file(etc_dir, "hostname", hn, err) < 0 ||
      write_etc_file(etc_dir, "resolv.conf", resolv, err) < 0)
    return -1;
  return 0;
}

int ctr_docker_write_etc_files(const char *etc_dir, const char *hostname, vs_error **err) {
  return ctr_docker_write_etc_files_dns(etc_dir, hostname, NULL, err);
}
