/* Container IDs, the persisted state file and the OCI status computed from it. */
#include "cgroup.h"
#include "internal.h"

#include <dirent.h>
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

int ctr_id_validate(const char *id, vs_error **err) {
  if (!id || !id[0])
    return vs_error_set(err, 0, "container id: must not be empty");
  size_t n = strlen(id);
  if (n > CTR_ID_MAX)
    return vs_error_set(err, 0, "container id: %zu characters is too long (at most %d)", n,
                        CTR_ID_MAX);
  if (!strcmp(id, ".") || !strcmp(id, ".."))
    return vs_error_set(err, 0, "container id \"%s\": is not a valid id", id);
  for (size_t i = 0; i < n; i++) {
    char c = id[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '+' || c == '-' || c == '.';
    if (!ok)
      return vs_error_set(err, 0,
                          "container id \"%s\": character '%c' is not allowed (letters, digits, "
                          "'_', '+', '-', '.')",
                          id, c >= 32 && c < 127 ? c : '?');
  }
  return 0;
}

static const char *const status_names[] = {
    [CTR_STATUS_CREATING] = "creating", [CTR_STATUS_CREATED] = "created",
    [CTR_STATUS_RUNNING] = "running",   [CTR_STATUS_PAUSED] = "paused",
    [CTR_STATUS_STOPPED] = "stopped",
};

const char *ctr_status_name(ctr_status s) { return status_names[s]; }

static int status_from_name(const char *s) {
  for (size_t i = 0; i < ARRAY_SIZE(status_names); i++)
    if (s && !strcmp(s, status_names[i]))
      return (int)i;
  return -1;
}

void ctr_state_free(ctr_state *st) {
  if (!st)
    return;
  free(st->id);
  free(st->bundle);
  free(st->rootfs);
  free(st->created);
  free(st->owner);
  json_decref(st->annotations);
  json_decref(st->cgroup);
  json_decref(st->config);
  free(st);
}

json_t *ctr_state_to_json(const ctr_state *st) {
  json_t *j = json_object();
  json_object_set_new(j, "id", json_string(st->id));
  json_object_set_new(j, "pid", json_integer(st->pid));
  json_object_set_new(j, "pid_start", json_integer((json_int_t)st->pid_start));
  json_object_set_new(j, "bundle", json_string(st->bundle ? st->bundle : ""));
  json_object_set_new(j, "rootfs", json_string(st->rootfs ? st->rootfs : ""));
  json_object_set_new(j, "created", json_string(st->created ? st->created : ""));
  json_object_set_new(j, "owner", json_string(st->owner ? st->owner : ""));
  json_object_set_new(j, "started", json_boolean(st->started));
  json_object_set_new(j, "status", json_string(ctr_status_name(st->stored)));
  if (st->annotations)
    json_object_set(j, "annotations", st->annotations);
  if (st->cgroup)
    json_object_set(j, "cgroup", st->cgroup);
  if (st->config)
    json_object_set(j, "config", st->config);
  return j;
}

int ctr_state_from_json(json_t *j, ctr_state **out, vs_error **err) {
  const char *id = json_string_value(json_object_get(j, "id"));
  json_t *pid = json_object_get(j, "pid");
  int status = status_from_name(json_string_value(json_object_get(j, "status")));
  if (!json_is_object(j) || !id || !json_is_integer(pid) || status < 0)
    return vs_error_set(err, 0, "state file: id, pid or status missing or of the wrong type");
  if (ctr_id_validate(id, err) < 0)
    return vs_error_wrap(err, "state file");
  ctr_state *st = vs_malloc0(sizeof(*st));
  st->id = vs_strdup(id);
  st->pid = (pid_t)json_integer_value(pid);
  st->pid_start = (unsigned long long)json_integer_value(json_object_get(j, "pid_start"));
#define STR(k) vs_strdup(json_string_value(json_object_get(j, k)) ?: "")
  st->bundle = STR("bundle");
  st->rootfs = STR("rootfs");
  st->created = STR("created");
  st->owner = STR("owner");
#undef STR
  st->started = json_is_true(json_object_get(j, "started"));
  st->stored = (ctr_status)status;
  if ((st->annotations = json_object_get(j, "annotations")))
    json_incref(st->annotations);
  if ((st->cgroup = json_object_get(j, "cgroup")))
    json_incref(st->cgroup);
  if ((st->config = json_object_get(j, "config")))
    json_incref(st->config);
  *out = st;
  return 0;
}

char *ctr_state_dir(const ctr_runtime *rt, const char *id) {
  return vs_asprintf("%s/%s", rt->root, id);
}

int ctr_state_save(const ctr_runtime *rt, const ctr_state *st, vs_error **err) {
  _cleanup_free_ char *dir = ctr_state_dir(rt, st->id);
  _cleanup_free_ char *path = vs_asprintf("%s/state.json", dir);
  json_t *j = ctr_state_to_json(st);
  char *text = json_dumps(j, JSON_COMPACT);
  json_decref(j);
  int r = ctr_write_file_replace(path, text, strlen(text), 0600, err);
  free(text);
  return r;
}

int ctr_state_load(const ctr_runtime *rt, const char *id, ctr_state **out, vs_error **err) {
  if (ctr_id_validate(id, err) < 0)
    return -1;
  _cleanup_free_ char *dir = ctr_state_dir(rt, id);
  _cleanup_free_ char *path = vs_asprintf("%s/state.json", dir);
  struct stat sb;
  if (stat(dir, &sb) < 0)
    return vs_error_set(err, errno == ENOENT ? ENOENT : errno, "container \"%s\" does not exist",
                        id);
  _cleanup_free_ char *text = NULL;
  size_t len;
  if (vs_read_file(path, 64U << 20, &text, &len, err) < 0)
    return vs_error_wrap(err, "container %s", id);
  json_error_t je;
  json_t *j = json_loadb(text, len, 0, &je);
  if (!j)
    return vs_error_set(err, 0, "container %s: state file %s: %s", id, path, je.text);
  int r = ctr_state_from_json(j, out, err);
  json_decref(j);
  if (r < 0)
    return vs_error_wrap(err, "container %s", id);
  return 0;
}

ctr_status ctr_state_status(const ctr_runtime *rt, const ctr_state *st) {
  if (st->stored == CTR_STATUS_CREATING)
    return st->pid > 0 && !ctr_pid_alive(st->pid, st->pid_start) ? CTR_STATUS_STOPPED
                                                                 : CTR_STATUS_CREATING;
  if (!ctr_pid_alive(st->pid, st->pid_start))
    return CTR_STATUS_STOPPED;
  if (st->cgroup) {
    ctr_cgroup *cg = NULL;
    bool frozen = false;
    if (ctr_cgroup_from_json(st->cgroup, &cg, NULL) == 0) {
      ctr_cgroup_is_frozen(cg, &frozen, NULL);
      ctr_cgroup_free(cg);
      if (frozen)
        return CTR_STATUS_PAUSED;
    }
  }
  _cleanup_free_ char *fifo = vs_asprintf("%s/%s/exec.fifo", rt->root, st->id);
  if (access(fifo, F_OK) == 0)
    return CTR_STATUS_CREATED;
  return CTR_STATUS_RUNNING;
}

json_t *ctr_state_oci_json(const ctr_runtime *rt, const ctr_state *st) {
  ctr_status s = ctr_state_status(rt, st);
  json_t *j = json_object();
  json_object_set_new(j, "ociVersion", json_string(CTR_OCI_VERSION));
  json_object_set_new(j, "id", json_string(st->id));
  json_object_set_new(j, "status", json_string(ctr_status_name(s)));
  json_object_set_new(j, "pid", json_integer(s == CTR_STATUS_STOPPED ? 0 : st->pid));
  json_object_set_new(j, "bundle", json_string(st->bundle));
  json_object_set_new(j, "rootfs", json_string(st->rootfs));
  json_object_set_new(j, "created", json_string(st->created));
  json_object_set_new(j, "owner", json_string(st->owner));
  json_object_set_new(j, "annotations",
                      st->annotations ? json_copy(st->annotations) : json_object());
  return j;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

char **ctr_list_ids(const ctr_runtime *rt, vs_error **err) {
  DIR *d = opendir(rt->root);
  if (!d) {
    if (errno == ENOENT)
      return vs_malloc0(sizeof(char *));
    vs_error_set(err, errno, "open runtime root %s", rt->root);
    return NULL;
  }
  size_t n = 0, cap = 16;
  char **v = vs_malloc0(cap * sizeof(char *));
  struct dirent *de;
  while ((de = readdir(d))) {
    if (de->d_name[0] == '.' || ctr_id_validate(de->d_name, NULL) < 0)
      continue;
    _cleanup_free_ char *p = vs_asprintf("%s/%s/state.json", rt->root, de->d_name);
    if (access(p, F_OK) < 0)
      continue;
    if (n + 2 > cap)
      v = vs_realloc(v, (cap *= 2) * sizeof(char *));
    v[n++] = vs_strdup(de->d_name);
  }
  closedir(d);
  v[n] = NULL;
  qsort(v, n, sizeof(char *), cmp_str);
  return v;
}
