/* OCI runtime spec (config.json) parsing and validation into typed structs.
 *
 * Everything here is untrusted input: each field is type-checked and every error names the field
 * ("mounts[2].destination: ...") so the user can find it in their config.json. */
#include "internal.h"

#include <errno.h>
#include <string.h>
#include <sys/mount.h>

static const char *const ns_names[CTR_NS_COUNT] = {
    [CTR_NS_PID] = "pid",       [CTR_NS_NET] = "network", [CTR_NS_MNT] = "mount",
    [CTR_NS_IPC] = "ipc",       [CTR_NS_UTS] = "uts",     [CTR_NS_USER] = "user",
    [CTR_NS_CGROUP] = "cgroup", [CTR_NS_TIME] = "time",
};

static const char *const hook_names[CTR_HOOK_COUNT] = {
    [CTR_HOOK_PRESTART] = "prestart",
    [CTR_HOOK_CREATE_RUNTIME] = "createRuntime",
    [CTR_HOOK_CREATE_CONTAINER] = "createContainer",
    [CTR_HOOK_START_CONTAINER] = "startContainer",
    [CTR_HOOK_POSTSTART] = "poststart",
    [CTR_HOOK_POSTSTOP] = "poststop",
};

const char *ctr_ns_name(enum ctr_ns_type t) { return t < CTR_NS_COUNT ? ns_names[t] : "?"; }
const char *ctr_hook_name(enum ctr_hook_kind k) { return k < CTR_HOOK_COUNT ? hook_names[k] : "?"; }

/* ------------------------------------------------------------ json access */

static const char *json_type_name(const json_t *j) {
  switch (json_typeof(j)) {
  case JSON_OBJECT:
    return "an object";
  case JSON_ARRAY:
    return "an array";
  case JSON_STRING:
    return "a string";
  case JSON_INTEGER:
    return "an integer";
  case JSON_REAL:
    return "a number";
  case JSON_TRUE:
  case JSON_FALSE:
    return "a boolean";
  default:
    return "null";
  }
}

/* Field lookup that checks the type; *out = NULL when absent and not required. */
static int get_field(json_t *obj, const char *where, const char *key, json_type type, bool required,
                     json_t **out, vs_error **err) {
  json_t *v = json_object_get(obj, key);
  *out = NULL;
  if (!v || json_is_null(v)) {
    if (required)
      return vs_error_set(err, 0, "%s%s%s: required field is missing", where, *where ? "." : "",
                          key);
    return 0;
  }
  bool ok = type == JSON_TRUE ? json_is_boolean(v) : json_typeof(v) == type;
  if (!ok) {
    const char *want = type == JSON_OBJECT    ? "an object"
                       : type == JSON_ARRAY   ? "an array"
                       : type == JSON_STRING  ? "a string"
                       : type == JSON_INTEGER ? "an integer"
                                              : "a boolean";
    return vs_error_set(err, 0, "%s%s%s: must be %s, not %s", where, *where ? "." : "", key, want,
                        json_type_name(v));
  }
  *out = v;
  return 0;
}

static int get_string(json_t *obj, const char *where, const char *key, bool required, char **out,
                      vs_error **err) {
  json_t *v;
  *out = NULL;
  if (get_field(obj, where, key, JSON_STRING, required, &v, err) < 0)
    return -1;
  if (v) {
    if (strlen(json_string_value(v)) != json_string_length(v))
      return vs_error_set(err, 0, "%s.%s: contains a NUL byte", where, key);
    *out = vs_strdup(json_string_value(v));
  }
  return 0;
}

/* A required string: on success *out is never NULL, which callers (and analysers) rely on. */
static int get_required_string(json_t *obj, const char *where, const char *key, char **out,
                               vs_error **err) {
  if (get_string(obj, where, key, true, out, err) < 0)
    return -1;
  if (!*out)
    return vs_error_set(err, 0, "%s.%s: required", where, key);
  return 0;
}

static int get_bool(json_t *obj, const char *where, const char *key, bool *out, vs_error **err) {
  json_t *v;
  if (get_field(obj, where, key, JSON_TRUE, false, &v, err) < 0)
    return -1;
  *out = v ? json_is_true(v) : false;
  return 0;
}

static int get_int_range(json_t *obj, const char *where, const char *key, bool required,
                         int64_t min, int64_t max, int64_t *out, bool *present, vs_error **err) {
  json_t *v;
  if (present)
    *present = false;
  if (get_field(obj, where, key, JSON_INTEGER, required, &v, err) < 0)
    return -1;
  if (!v)
    return 0;
  json_int_t x = json_integer_value(v);
  if (x < min || x > max)
    return vs_error_set(err, 0, "%s.%s: %lld is out of range [%lld, %lld]", where, key,
                        (long long)x, (long long)min, (long long)max);
  *out = x;
  if (present)
    *present = true;
  return 0;
}

static int get_strv(json_t *obj, const char *where, const char *key, bool required, char ***out,
                    vs_error **err) {
  json_t *a;
  *out = NULL;
  if (get_field(obj, where, key, JSON_ARRAY, required, &a, err) < 0)
    return -1;
  if (!a)
    return 0;
  size_t n = json_array_size(a);
  char **v = vs_malloc0((n + 1) * sizeof(char *));
  for (size_t i = 0; i < n; i++) {
    json_t *s = json_array_get(a, i);
    if (!json_is_string(s) || strlen(json_string_value(s)) != json_string_length(s)) {
      ctr_strv_free(v);
      return vs_error_set(err, 0, "%s.%s[%zu]: must be a string, not %s", where, key, i,
                          json_type_name(s));
    }
    v[i] = vs_strdup(json_string_value(s));
  }
  *out = v;
  return 0;
}

/* ------------------------------------------------------------ validators */

static bool path_has_dotdot(const char *p) {
  for (const char *s = p; *s;) {
    const char *e = strchrnul(s, '/');
    if (e - s == 2 && s[0] == '.' && s[1] == '.')
      return true;
    s = *e ? e + 1 : e;
  }
  return false;
}

static int check_abs_path(const char *where, const char *p, vs_error **err) {
  if (!p)
    return vs_error_set(err, 0, "%s: required field is missing", where);
  if (p[0] != '/')
    return vs_error_set(err, 0, "%s: \"%s\" must be an absolute path", where, p);
  if (path_has_dotdot(p))
    return vs_error_set(err, 0, "%s: \"%s\" must not contain \"..\"", where, p);
  if (strlen(p) >= 4096)
    return vs_error_set(err, 0, "%s: path is too long", where);
  return 0;
}

static bool parse_version_number(const char **s, unsigned long *out) {
  if (**s < '0' || **s > '9')
    return false;
  char *end;
  errno = 0;
  *out = strtoul(*s, &end, 10);
  if (errno)
    return false;
  *s = end;
  return true;
}

static int parse_version(const char *v, vs_error **err) {
  if (!v)
    return vs_error_set(err, 0, "ociVersion: required field is missing");
  unsigned long major, minor, patch;
  const char *s = v;
  bool ok = parse_version_number(&s, &major) && *s++ == '.' && parse_version_number(&s, &minor) &&
            *s++ == '.' && parse_version_number(&s, &patch) && (*s == 0 || *s == '-' || *s == '+');
  if (!ok)
    return vs_error_set(err, 0, "ociVersion: \"%s\" is not a version (MAJOR.MINOR.PATCH)", v);
  if (major != 1)
    return vs_error_set(err, 0,
                        "ociVersion: version %s is not supported (this runtime implements "
                        "1.x, up to %s)",
                        v, CTR_OCI_VERSION);
  return 0;
}

/* ------------------------------------------------------------ process */

static void process_clear(ctr_process *p) {
  free(p->additional_gids);
  free(p->cwd);
  ctr_strv_free(p->args);
  ctr_strv_free(p->env);
  memset(p, 0, sizeof(*p));
}

static int parse_process(json_t *j, ctr_process *p, vs_error **err) {
  const char *w = "process";
  p->json = j;
  p->umask = -1;
  if (get_bool(j, w, "terminal", &p->terminal, err) < 0 ||
      get_bool(j, w, "noNewPrivileges", &p->no_new_privileges, err) < 0)
    return -1;
  json_t *cs;
  if (get_field(j, w, "consoleSize", JSON_OBJECT, false, &cs, err) < 0)
    return -1;
  if (cs) {
    int64_t h = 0, wd = 0;
    if (get_int_range(cs, "process.consoleSize", "height", true, 0, 65535, &h, NULL, err) < 0 ||
        get_int_range(cs, "process.consoleSize", "width", true, 0, 65535, &wd, NULL, err) < 0)
      return -1;
    p->console_height = (unsigned)h;
    p->console_width = (unsigned)wd;
  }
  json_t *user;
  if (get_field(j, w, "user", JSON_OBJECT, true, &user, err) < 0)
    return -1;
  int64_t uid = 0, gid = 0, um = 0;
  bool has_umask;
  if (get_int_range(user, "process.user", "uid", true, 0, UINT32_MAX - 1, &uid, NULL, err) < 0 ||
      get_int_range(user, "process.user", "gid", true, 0, UINT32_MAX - 1, &gid, NULL, err) < 0 ||
      get_int_range(user, "process.user", "umask", false, 0, 0777, &um, &has_umask, err) < 0)
    return -1;
  p->uid = (uint32_t)uid;
  p->gid = (uint32_t)gid;
  p->umask = has_umask ? (int)um : -1;
  json_t *ag;
  if (get_field(user, "process.user", "additionalGids", JSON_ARRAY, false, &ag, err) < 0)
    return -1;
  if (ag) {
    p->n_additional_gids = json_array_size(ag);
    if (p->n_additional_gids > 65536)
      return vs_error_set(err, 0, "process.user.additionalGids: too many groups");
    p->additional_gids = vs_malloc0((p->n_additional_gids + 1) * sizeof(gid_t));
    for (size_t i = 0; i < p->n_additional_gids; i++) {
      json_t *g = json_array_get(ag, i);
      if (!json_is_integer(g) || json_integer_value(g) < 0 ||
          json_integer_value(g) >= (json_int_t)UINT32_MAX)
        return vs_error_set(err, 0, "process.user.additionalGids[%zu]: must be a gid (0..%u)", i,
                            UINT32_MAX - 1);
      p->additional_gids[i] = (gid_t)json_integer_value(g);
    }
  }
  if (get_required_string(j, w, "cwd", &p->cwd, err) < 0)
    return -1;
  if (p->cwd[0] != '/')
    return vs_error_set(err, 0, "process.cwd: \"%s\" must be an absolute path", p->cwd);
  if (get_strv(j, w, "args", true, &p->args, err) < 0 || !p->args)
    return -1;
  if (!p->args[0] || !p->args[0][0])
    return vs_error_set(err, 0, "process.args: must name the program to run (empty)");
  if (get_strv(j, w, "env", false, &p->env, err) < 0)
    return -1;
  if (!p->env)
    p->env = vs_malloc0(sizeof(char *));
  for (size_t i = 0; p->env[i]; i++)
    if (!strchr(p->env[i], '=') || p->env[i][0] == '=')
      return vs_error_set(err, 0, "process.env[%zu]: \"%s\" is not NAME=VALUE", i, p->env[i]);
  json_t *dummy;
  if (get_field(j, w, "capabilities", JSON_OBJECT, false, &dummy, err) < 0 ||
      get_field(j, w, "rlimits", JSON_ARRAY, false, &dummy, err) < 0 ||
      get_field(j, w, "apparmorProfile", JSON_STRING, false, &dummy, err) < 0 ||
      get_field(j, w, "selinuxLabel", JSON_STRING, false, &dummy, err) < 0 ||
      get_field(j, w, "oomScoreAdj", JSON_INTEGER, false, &dummy, err) < 0)
    return -1;
  return 0;
}

/* ------------------------------------------------------------ mounts */

struct mount_opt {
  const char *name;
  bool clear;
  unsigned long flag;
};

static const struct mount_opt mount_opts[] = {
    {"ro", false, MS_RDONLY},
    {"rw", true, MS_RDONLY},
    {"nosuid", false, MS_NOSUID},
    {"suid", true, MS_NOSUID},
    {"nodev", false, MS_NODEV},
    {"dev", true, MS_NODEV},
    {"noexec", false, MS_NOEXEC},
    {"exec", true, MS_NOEXEC},
    {"sync", false, MS_SYNCHRONOUS},
    {"async", true, MS_SYNCHRONOUS},
    {"dirsync", false, MS_DIRSYNC},
    {"remount", false, MS_REMOUNT},
    {"mand", false, MS_MANDLOCK},
    {"nomand", true, MS_MANDLOCK},
    {"atime", true, MS_NOATIME},
    {"noatime", false, MS_NOATIME},
    {"diratime", true, MS_NODIRATIME},
    {"nodiratime", false, MS_NODIRATIME},
    {"relatime", false, MS_RELATIME},
    {"norelatime", true, MS_RELATIME},
    {"strictatime", false, MS_STRICTATIME},
    {"nostrictatime", true, MS_STRICTATIME},
    {"silent", false, MS_SILENT},
    {"loud", true, MS_SILENT},
    {"defaults", false, 0},
};

static const struct {
  const char *name;
  unsigned long flags;
} propagation_opts[] = {
    {"shared", MS_SHARED},         {"rshared", MS_SHARED | MS_REC},
    {"slave", MS_SLAVE},           {"rslave", MS_SLAVE | MS_REC},
    {"private", MS_PRIVATE},       {"rprivate", MS_PRIVATE | MS_REC},
    {"unbindable", MS_UNBINDABLE}, {"runbindable", MS_UNBINDABLE | MS_REC},
};

static int propagation_from_name(const char *s, unsigned long *out) {
  for (size_t i = 0; i < ARRAY_SIZE(propagation_opts); i++)
    if (!strcmp(s, propagation_opts[i].name)) {
      *out = propagation_opts[i].flags;
      return 0;
    }
  return -1;
}

static void append_data(char **data, const char *opt) {
  char *n = *data ? vs_asprintf("%s,%s", *data, opt) : vs_strdup(opt);
  free(*data);
  *data = n;
}

static int parse_mount(json_t *j, size_t idx, ctr_mount *m, vs_error **err) {
  char w[48];
  snprintf(w, sizeof(w), "mounts[%zu]", idx);
  if (!json_is_object(j))
    return vs_error_set(err, 0, "%s: must be an object, not %s", w, json_type_name(j));
  if (get_required_string(j, w, "destination", &m->destination, err) < 0 ||
      get_string(j, w, "type", false, &m->type, err) < 0 ||
      get_string(j, w, "source", false, &m->source, err) < 0)
    return -1;
  char fw[64];
  snprintf(fw, sizeof(fw), "%s.destination", w);
  if (check_abs_path(fw, m->destination, err) < 0)
    return -1;
  char **opts;
  if (get_strv(j, w, "options", false, &opts, err) < 0)
    return -1;
  for (size_t i = 0; opts && opts[i]; i++) {
    const char *o = opts[i];
    bool known = false;
    /* runc/crun extensions that are not kernel options (podman uses tmpcopyup) */
    if (!strcmp(o, "tmpcopyup") || !strcmp(o, "notmpcopyup")) {
      m->tmpcopyup = o[0] == 't';
      continue;
    }
    if (!strcmp(o, "copy-symlink"))
      continue;
    if (!strcmp(o, "bind") || !strcmp(o, "rbind")) {
      m->bind = true;
      m->recursive |= o[0] == 'r';
      continue;
    }
    unsigned long prop;
    if (propagation_from_name(o, &prop) == 0) {
      m->propagation = prop;
      continue;
    }
    for (size_t k = 0; k < ARRAY_SIZE(mount_opts); k++) {
      if (strcmp(o, mount_opts[k].name) != 0)
        continue;
      known = true;
      if (mount_opts[k].clear)
        m->flags &= ~mount_opts[k].flag;
      else
        m->flags |= mount_opts[k].flag;
    }
    if (!known) {
      /* idmapped mounts and recursive attributes ("rro", "idmap") are kernel-version specific:
       * refuse them rather than pass them to the file system as data. */
      if (!strcmp(o, "idmap") || !strcmp(o, "ridmap")) {
        vs_error_set(err, 0, "%s.options: \"%s\" (idmapped mounts) is not supported", w, o);
        ctr_strv_free(opts);
        return -1;
      }
      append_data(&m->data, o);
    }
  }
  ctr_strv_free(opts);
  if (m->type && !strcmp(m->type, "bind"))
    m->bind = true;
  if (!m->bind && !m->type)
    return vs_error_set(err, 0, "%s.type: required for a mount that is not a bind mount", w);
  if (m->bind && (!m->source || !m->source[0]))
    return vs_error_set(err, 0, "%s.source: required for a bind mount", w);
  return 0;
}

/* ------------------------------------------------------------ linux */

static int parse_namespaces(ctr_spec *s, json_t *a, vs_error **err) {
  for (size_t i = 0; i < json_array_size(a); i++) {
    json_t *n = json_array_get(a, i);
    char w[48];
    snprintf(w, sizeof(w), "linux.namespaces[%zu]", i);
    if (!json_is_object(n))
      return vs_error_set(err, 0, "%s: must be an object", w);
    _cleanup_free_ char *type = NULL;
    char *path = NULL;
    if (get_required_string(n, w, "type", &type, err) < 0 ||
        get_string(n, w, "path", false, &path, err) < 0)
      return -1;
    int t = -1;
    for (int k = 0; k < CTR_NS_COUNT; k++)
      if (!strcmp(type, ns_names[k]))
        t = k;
    if (t < 0) {
      free(path);
      return vs_error_set(err, 0, "%s.type: unknown namespace type \"%s\"", w, type);
    }
    if (s->ns[t].present) {
      free(path);
      return vs_error_set(err, 0, "%s: namespace \"%s\" is listed twice", w, type);
    }
    if (path && path[0] != '/') {
      free(path);
      return vs_error_set(err, 0, "%s.path: must be an absolute path", w);
    }
    s->ns[t].present = true;
    s->ns[t].path = path;
  }
  return 0;
}

static int parse_idmaps(json_t *a, const char *w, ctr_idmap **out, size_t *n, vs_error **err) {
  *n = json_array_size(a);
  if (*n > 340)
    return vs_error_set(err, 0, "%s: at most 340 mappings are allowed", w);
  *out = vs_malloc0((*n + 1) * sizeof(ctr_idmap));
  for (size_t i = 0; i < *n; i++) {
    json_t *m = json_array_get(a, i);
    char fw[64];
    snprintf(fw, sizeof(fw), "%s[%zu]", w, i);
    if (!json_is_object(m))
      return vs_error_set(err, 0, "%s: must be an object", fw);
    int64_t c = 0, h = 0, sz = 0;
    if (get_int_range(m, fw, "containerID", true, 0, UINT32_MAX - 1, &c, NULL, err) < 0 ||
        get_int_range(m, fw, "hostID", true, 0, UINT32_MAX - 1, &h, NULL, err) < 0 ||
        get_int_range(m, fw, "size", true, 1, UINT32_MAX, &sz, NULL, err) < 0)
      return -1;
    (*out)[i] = (ctr_idmap){(uint32_t)c, (uint32_t)h, (uint32_t)sz};
  }
  return 0;
}

static int parse_devices(ctr_spec *s, json_t *a, vs_error **err) {
  s->n_devices = json_array_size(a);
  s->devices = vs_malloc0((s->n_devices + 1) * sizeof(ctr_device));
  for (size_t i = 0; i < s->n_devices; i++) {
    json_t *d = json_array_get(a, i);
    ctr_device *dv = &s->devices[i];
    char w[48];
    snprintf(w, sizeof(w), "linux.devices[%zu]", i);
    if (!json_is_object(d))
      return vs_error_set(err, 0, "%s: must be an object", w);
    _cleanup_free_ char *type = NULL;
    if (get_required_string(d, w, "type", &type, err) < 0 ||
        get_required_string(d, w, "path", &dv->path, err) < 0)
      return -1;
    if (strlen(type) != 1 || !strchr("cbup", type[0]))
      return vs_error_set(err, 0, "%s.type: \"%s\" is not a device type (c, b, u or p)", w, type);
    dv->type = type[0];
    char fw[64];
    snprintf(fw, sizeof(fw), "%s.path", w);
    if (check_abs_path(fw, dv->path, err) < 0)
      return -1;
    if (strncmp(dv->path, "/dev/", 5) != 0)
      return vs_error_set(err, 0, "%s: \"%s\" is not under /dev", fw, dv->path);
    bool need = dv->type != 'p';
    int64_t maj = 0, min = 0, mode = 0666, uid = 0, gid = 0;
    if (get_int_range(d, w, "major", need, 0, 0xfff, &maj, NULL, err) < 0 ||
        get_int_range(d, w, "minor", need, 0, 0xfffff, &min, NULL, err) < 0 ||
        get_int_range(d, w, "fileMode", false, 0, 07777, &mode, NULL, err) < 0 ||
        get_int_range(d, w, "uid", false, 0, UINT32_MAX - 1, &uid, NULL, err) < 0 ||
        get_int_range(d, w, "gid", false, 0, UINT32_MAX - 1, &gid, NULL, err) < 0)
      return -1;
    dv->major = maj;
    dv->minor = min;
    dv->mode = (uint32_t)mode;
    dv->uid = (uint32_t)uid;
    dv->gid = (uint32_t)gid;
  }
  return 0;
}

static int parse_time_offsets(ctr_spec *s, json_t *o, vs_error **err) {
  const char *clocks[2] = {"monotonic", "boottime"};
  const char *key;
  json_t *v;
  json_object_foreach(o, key, v) {
    int c = !strcmp(key, "monotonic") ? 0 : !strcmp(key, "boottime") ? 1 : -1;
    if (c < 0)
      return vs_error_set(err, 0, "linux.timeOffsets.%s: unknown clock (monotonic or boottime)",
                          key);
    char w[64];
    snprintf(w, sizeof(w), "linux.timeOffsets.%s", clocks[c]);
    if (!json_is_object(v))
      return vs_error_set(err, 0, "%s: must be an object", w);
    int64_t secs = 0, ns = 0;
    if (get_int_range(v, w, "secs", false, INT64_MIN / 2, INT64_MAX / 2, &secs, NULL, err) < 0 ||
        get_int_range(v, w, "nanosecs", false, 0, 999999999, &ns, NULL, err) < 0)
      return -1;
    s->time_offsets[c][0] = secs;
    s->time_offsets[c][1] = ns;
  }
  s->has_time_offsets = true;
  return 0;
}

static int parse_linux(ctr_spec *s, json_t *l, vs_error **err) {
  const char *w = "linux";
  s->linux_json = l;
  json_t *v;
  if (get_field(l, w, "namespaces", JSON_ARRAY, false, &v, err) < 0)
    return -1;
  if (v && parse_namespaces(s, v, err) < 0)
    return -1;
  if (get_field(l, w, "uidMappings", JSON_ARRAY, false, &v, err) < 0)
    return -1;
  if (v && parse_idmaps(v, "linux.uidMappings", &s->uid_maps, &s->n_uid_maps, err) < 0)
    return -1;
  if (get_field(l, w, "gidMappings", JSON_ARRAY, false, &v, err) < 0)
    return -1;
  if (v && parse_idmaps(v, "linux.gidMappings", &s->gid_maps, &s->n_gid_maps, err) < 0)
    return -1;
  bool new_user = s->ns[CTR_NS_USER].present && !s->ns[CTR_NS_USER].path;
  if ((s->n_uid_maps || s->n_gid_maps) && !new_user)
    return vs_error_set(err, 0,
                        "linux.uidMappings: mappings need a new user namespace in "
                        "linux.namespaces");
  if (new_user && (!s->n_uid_maps || !s->n_gid_maps))
    return vs_error_set(err, 0,
                        "linux.uidMappings/gidMappings: a new user namespace needs both "
                        "uid and gid mappings");
  if (get_field(l, w, "devices", JSON_ARRAY, false, &v, err) < 0)
    return -1;
  if (v && parse_devices(s, v, err) < 0)
    return -1;
  if (get_strv(l, w, "maskedPaths", false, &s->masked_paths, err) < 0 ||
      get_strv(l, w, "readonlyPaths", false, &s->readonly_paths, err) < 0)
    return -1;
  for (size_t i = 0; s->masked_paths && s->masked_paths[i]; i++) {
    char fw[48];
    snprintf(fw, sizeof(fw), "linux.maskedPaths[%zu]", i);
    if (check_abs_path(fw, s->masked_paths[i], err) < 0)
      return -1;
  }
  for (size_t i = 0; s->readonly_paths && s->readonly_paths[i]; i++) {
    char fw[48];
    snprintf(fw, sizeof(fw), "linux.readonlyPaths[%zu]", i);
    if (check_abs_path(fw, s->readonly_paths[i], err) < 0)
      return -1;
  }
  if (get_field(l, w, "sysctl", JSON_OBJECT, false, &v, err) < 0)
    return -1;
  if (v) {
    s->sysctls = vs_malloc0((json_object_size(v) + 1) * sizeof(ctr_sysctl));
    const char *key;
    json_t *val;
    json_object_foreach(v, key, val) {
      if (!json_is_string(val))
        return vs_error_set(err, 0, "linux.sysctl.%s: must be a string", key);
      if (!key[0] || strstr(key, "..") || key[0] == '/' || key[0] == '.')
        return vs_error_set(err, 0, "linux.sysctl: \"%s\" is not a sysctl name", key);
      s->sysctls[s->n_sysctls].key = vs_strdup(key);
      s->sysctls[s->n_sysctls].value = vs_strdup(json_string_value(val));
      s->n_sysctls++;
    }
  }
  if (get_string(l, w, "cgroupsPath", false, &s->cgroups_path, err) < 0)
    return -1;
  if (get_field(l, w, "resources", JSON_OBJECT, false, &s->resources, err) < 0)
    return -1;
  _cleanup_free_ char *prop = NULL;
  if (get_string(l, w, "rootfsPropagation", false, &prop, err) < 0)
    return -1;
  if (prop && prop[0] && propagation_from_name(prop, &s->rootfs_propagation) < 0)
    return vs_error_set(err, 0, "linux.rootfsPropagation: \"%s\" is not a propagation mode", prop);
  if (get_field(l, w, "timeOffsets", JSON_OBJECT, false, &v, err) < 0)
    return -1;
  if (v) {
    if (!s->ns[CTR_NS_TIME].present || s->ns[CTR_NS_TIME].path)
      return vs_error_set(err, 0, "linux.timeOffsets: needs a new time namespace");
    if (parse_time_offsets(s, v, err) < 0)
      return -1;
  }
  if (get_field(l, w, "seccomp", JSON_OBJECT, false, &v, err) < 0)
    return -1;
  return 0;
}

/* ------------------------------------------------------------ hooks */

static int parse_hooks(ctr_spec *s, json_t *h, vs_error **err) {
  for (int k = 0; k < CTR_HOOK_COUNT; k++) {
    json_t *a;
    char w[32];
    if (get_field(h, "hooks", hook_names[k], JSON_ARRAY, false, &a, err) < 0)
      return -1;
    if (!a)
      continue;
    s->n_hooks[k] = json_array_size(a);
    s->hooks[k] = vs_malloc0((s->n_hooks[k] + 1) * sizeof(ctr_hook));
    for (size_t i = 0; i < s->n_hooks[k]; i++) {
      json_t *e = json_array_get(a, i);
      ctr_hook *hk = &s->hooks[k][i];
      snprintf(w, sizeof(w), "hooks.%s[%zu]", hook_names[k], i);
      if (!json_is_object(e))
        return vs_error_set(err, 0, "%s: must be an object", w);
      int64_t t = 0;
      if (get_required_string(e, w, "path", &hk->path, err) < 0 ||
          get_strv(e, w, "args", false, &hk->args, err) < 0 ||
          get_strv(e, w, "env", false, &hk->env, err) < 0 ||
          get_int_range(e, w, "timeout", false, 1, 86400, &t, NULL, err) < 0 || !hk->path)
        return -1;
      if (hk->path[0] != '/')
        return vs_error_set(err, 0, "%s.path: \"%s\" must be an absolute path", w, hk->path);
      hk->timeout = (int)t;
    }
  }
  return 0;
}

/* ------------------------------------------------------------ document */

/* Without a mount namespace of its own the container's root is only a chroot in the host's
 * mount table: mounts, devices, masked or read-only paths, a read-only root and the sysctls
 * (written through the container's /proc) would land on the host or not at all. The spec
 * wants an error for what cannot be applied; runc refuses masked and read-only paths only. */
static int check_host_mount_namespace(const ctr_spec *s, vs_error **err) {
  const char *field = NULL;
  if (s->n_mounts)
    field = "mounts";
  else if (s->root_readonly)
    field = "root.readonly";
  else if (s->masked_paths && s->masked_paths[0])
    field = "linux.maskedPaths";
  else if (s->readonly_paths && s->readonly_paths[0])
    field = "linux.readonlyPaths";
  else if (s->n_devices)
    field = "linux.devices";
  else if (s->n_sysctls)
    field = "linux.sysctl";
  if (field)
    return vs_error_set(
        err, 0,
        "%s: applying it needs a mount namespace of the container (linux.namespaces "
        "has none)",
        field);
  return 0;
}

static int spec_from_json(ctr_spec *s, bool need_process, vs_error **err) {
  json_t *j = s->json, *v;
  if (!json_is_object(j))
    return vs_error_set(err, 0, "config.json: must be a JSON object");
  if (get_required_string(j, "", "ociVersion", &s->oci_version, err) < 0 ||
      parse_version(s->oci_version, err) < 0)
    return -1;
  json_t *root;
  if (get_field(j, "", "root", JSON_OBJECT, need_process, &root, err) < 0)
    return -1;
  if (root) {
    if (get_required_string(root, "root", "path", &s->root_path, err) < 0 ||
        get_bool(root, "root", "readonly", &s->root_readonly, err) < 0 || !s->root_path)
      return -1;
    if (!s->root_path[0])
      return vs_error_set(err, 0, "root.path: must not be empty");
  }
  if (get_field(j, "", "process", JSON_OBJECT, need_process, &v, err) < 0)
    return -1;
  if (v) {
    s->has_process = true;
    if (parse_process(v, &s->process, err) < 0)
      return -1;
  }
  if (get_string(j, "", "hostname", false, &s->hostname, err) < 0 ||
      get_string(j, "", "domainname", false, &s->domainname, err) < 0)
    return -1;
  if (s->hostname && strlen(s->hostname) > 64)
    return vs_error_set(err, 0, "hostname: longer than 64 characters");
  if (s->domainname && strlen(s->domainname) > 64)
    return vs_error_set(err, 0, "domainname: longer than 64 characters");
  if (get_field(j, "", "mounts", JSON_ARRAY, false, &v, err) < 0)
    return -1;
  if (v) {
    s->n_mounts = json_array_size(v);
    s->mounts = vs_malloc0((s->n_mounts + 1) * sizeof(ctr_mount));
    for (size_t i = 0; i < s->n_mounts; i++)
      if (parse_mount(json_array_get(v, i), i, &s->mounts[i], err) < 0)
        return -1;
  }
  if (get_field(j, "", "hooks", JSON_OBJECT, false, &v, err) < 0)
    return -1;
  if (v && parse_hooks(s, v, err) < 0)
    return -1;
  if (get_field(j, "", "annotations", JSON_OBJECT, false, &s->annotations, err) < 0)
    return -1;
  if (s->annotations) {
    const char *key;
    json_t *val;
    json_object_foreach(s->annotations, key, val) if (!json_is_string(val)) return vs_error_set(
        err, 0, "annotations.%s: must be a string", key);
  }
  if (get_field(j, "", "linux", JSON_OBJECT, false, &v, err) < 0)
    return -1;
  if (v && parse_linux(s, v, err) < 0)
    return -1;
  /* A uts namespace joined by path is the container's own as much as a new one (runc). */
  if (s->hostname && s->hostname[0] && need_process && !s->ns[CTR_NS_UTS].present)
    return vs_error_set(err, 0, "hostname: setting it needs a uts namespace of the container");
  if (need_process && !s->ns[CTR_NS_MNT].present && check_host_mount_namespace(s, err) < 0)
    return -1;
  return 0;
}

int ctr_spec_parse(const char *text, size_t len, bool need_process, ctr_spec **out,
                   vs_error **err) {
  json_error_t je;
  ctr_spec *s = vs_malloc0(sizeof(*s));
  s->json = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
  if (!s->json) {
    ctr_spec_free(s);
    return vs_error_set(err, 0, "config.json: invalid JSON at line %d column %d: %s", je.line,
                        je.column, je.text);
  }
  if (spec_from_json(s, need_process, err) < 0) {
    ctr_spec_free(s);
    return -1;
  }
  *out = s;
  return 0;
}

int ctr_spec_parse_process(json_t *process, ctr_spec **out, vs_error **err) {
  ctr_spec *s = vs_malloc0(sizeof(*s));
  s->json = json_pack("{s:s,s:O}", "ociVersion", CTR_OCI_VERSION, "process", process);
  if (!json_is_object(process)) {
    ctr_spec_free(s);
    return vs_error_set(err, 0, "process: must be a JSON object");
  }
  s->has_process = true;
  if (parse_process(json_object_get(s->json, "process"), &s->process, err) < 0) {
    ctr_spec_free(s);
    return -1;
  }
  *out = s;
  return 0;
}

int ctr_spec_load(const char *bundle, bool need_process, ctr_spec **out, vs_error **err) {
  _cleanup_free_ char *path = vs_asprintf("%s/config.json", bundle);
  _cleanup_free_ char *text = NULL;
  size_t len;
  if (vs_read_file(path, CTR_SPEC_MAX_BYTES, &text, &len, err) < 0)
    return -1;
  if (ctr_spec_parse(text, len, need_process, out, err) < 0)
    return vs_error_wrap(err, "%s", path);
  return 0;
}

void ctr_spec_free(ctr_spec *s) {
  if (!s)
    return;
  free(s->oci_version);
  free(s->root_path);
  process_clear(&s->process);
  free(s->hostname);
  free(s->domainname);
  for (size_t i = 0; i < s->n_mounts; i++) {
    free(s->mounts[i].destination);
    free(s->mounts[i].type);
    free(s->mounts[i].source);
    free(s->mounts[i].data);
  }
  free(s->mounts);
  for (int k = 0; k < CTR_HOOK_COUNT; k++) {
    for (size_t i = 0; i < s->n_hooks[k]; i++) {
      free(s->hooks[k][i].path);
      ctr_strv_free(s->hooks[k][i].args);
      ctr_strv_free(s->hooks[k][i].env);
    }
    free(s->hooks[k]);
  }
  for (int k = 0; k < CTR_NS_COUNT; k++)
    free(s->ns[k].path);
  free(s->uid_maps);
  free(s->gid_maps);
  for (size_t i = 0; i < s->n_devices; i++)
    free(s->devices[i].path);
  free(s->devices);
  ctr_strv_free(s->masked_paths);
  ctr_strv_free(s->readonly_paths);
  for (size_t i = 0; i < s->n_sysctls; i++) {
    free(s->sysctls[i].key);
    free(s->sysctls[i].value);
  }
  free(s->sysctls);
  free(s->cgroups_path);
  json_decref(s->json);
  free(s);
}
