/* A container's cgroup across every hierarchy of the host: create, join, freeze, update,
 * list, kill, destroy, and the JSON that the state file keeps. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "ctr/cgroup_internal.h"
#include "ctr/security_internal.h"

#define CG_PATH_MAX 1024

/* Controllers vessel manages on a cgroup2 hierarchy. */
static const char *const v2_known[] = {"cpu", "cpuset", "io", "memory", "pids", "hugetlb"};
/* The v1 controller that corresponds to a cgroup2 one (io <-> blkio). */
static const char *v1_name_of(const char *v2) { return strcmp(v2, "io") == 0 ? "blkio" : v2; }

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

/* ---------------------------------------------------------------- validation */

static int validate_device_rule(json_t *rule, const char *what, vs_error **err) {
  if (sj_expect_object(rule, what, err) < 0)
    return -1;
  bool allow;
  const char *type = NULL, *access = NULL;
  int64_t v;
  if (sj_bool(rule, "allow", what, true, &allow, err) < 0 ||
      sj_string(rule, "type", what, false, &type, err) < 0 ||
      sj_int(rule, "major", what, false, -1, UINT32_MAX, &v, err) < 0 ||
      sj_int(rule, "minor", what, false, -1, UINT32_MAX, &v, err) < 0 ||
      sj_string(rule, "access", what, false, &access, err) < 0)
    return -1;
  if (type && strcmp(type, "a") != 0 && strcmp(type, "b") != 0 && strcmp(type, "c") != 0)
    return vs_error_set(err, 0, "%s.type: \"%s\" is not a device type (a, b or c)", what, type);
  if (access && (!*access || strspn(access, "rwm") != strlen(access) || strlen(access) > 3))
    return vs_error_set(err, 0, "%s.access: \"%s\" is not a combination of r, w and m", what,
                        access);
  return 0;
}

static int validate_memory(json_t *mem, vs_error **err) {
  const char *what = "linux.resources.memory";
  if (sj_expect_object(mem, what, err) < 0)
    return -1;
  static const char *const sizes[] = {"limit", "reservation", "swap", "kernel", "kernelTCP"};
  int64_t v;
  bool b;
  for (size_t i = 0; i < ARRAY_SIZE(sizes); i++)
    if (sj_int(mem, sizes[i], what, false, -1, INT64_MAX, &v, err) < 0)
      return -1;
  if (sj_int(mem, "swappiness", what, false, 0, 100, &v, err) < 0 ||
      sj_bool(mem, "disableOOMKiller", what, false, &b, err) < 0 ||
      sj_bool(mem, "useHierarchy", what, false, &b, err) < 0 ||
      sj_bool(mem, "checkBeforeUpdate", what, false, &b, err) < 0)
    return -1;
  int64_t limit = 0, swap = 0;
  if (sj_int(mem, "limit", what, false, -1, INT64_MAX, &limit, err) > 0 &&
      sj_int(mem, "swap", what, false, -1, INT64_MAX, &swap, err) > 0 && limit > 0 && swap > 0 &&
      swap < limit)
    return vs_error_set(err, 0,
                        "%s.swap: %lld is below memory.limit %lld (swap is memory plus swap)", what,
                        (long long)swap, (long long)limit);
  return 0;
}

/* "0-3,5" style lists of cpus or memory nodes. */
static bool cpulist_valid(const char *s) {
  if (!*s)
    return true;
  for (const char *p = s;;) {
    char *end;
    if (*p < '0' || *p > '9')
      return false;
    unsigned long a = strtoul(p, &end, 10);
    p = end;
    if (*p == '-') {
      p++;
      if (*p < '0' || *p > '9')
        return false;
      unsigned long b = strtoul(p, &end, 10);
      if (b < a)
        return false;
      p = end;
    }
    if (a > 65535)
      return false;
    if (!*p)
      return true;
    if (*p != ',')
      return false;
    p++;
  }
}

static int validate_cpu(json_t *cpu, vs_error **err) {
  const char *what = "linux.resources.cpu";
  if (sj_expect_object(cpu, what, err) < 0)
    return -1;
  int64_t v;
  const char *s;
  if (sj_int(cpu, "shares", what, false, 0, 262144, &v, err) < 0 ||
      sj_int(cpu, "quota", what, false, -1, INT64_MAX, &v, err) < 0 ||
      sj_int(cpu, "burst", what, false, 0, INT64_MAX, &v, err) < 0 ||
      sj_int(cpu, "realtimeRuntime", what, false, -1, INT64_MAX, &v, err) < 0 ||
      sj_int(cpu, "realtimePeriod", what, false, 0, INT64_MAX, &v, err) < 0 ||
      sj_int(cpu, "idle", what, false, 0, 1, &v, err) < 0)
    return -1;
  if (sj_int(cpu, "period", what, false, 0, 1000000, &v, err) < 0)
    return -1;
  if (sj_int(cpu, "period", what, false, 0, 1000000, &v, err) > 0 && v != 0 && v < 1000)
    return vs_error_set(err, 0, "%s.period: %lld is out of range (1000 to 1000000 microseconds)",
                        what, (long long)v);
  if (sj_int(cpu, "quota", what, false, -1, INT64_MAX, &v, err) > 0 && v > 0 && v < 1000)
    return vs_error_set(err, 0, "%s.quota: %lld is below the minimum of 1000 microseconds", what,
                        (long long)v);
  static const char *const lists[] = {"cpus", "mems"};
  for (size_t i = 0; i < ARRAY_SIZE(lists); i++) {
    int r = sj_string(cpu, lists[i], what, false, &s, err);
    if (r < 0)
      return -1;
    if (r > 0 && (strlen(s) > 4096 || !cpulist_valid(s)))
      return vs_error_set(err, 0, "%s.%s: \"%.64s\" is not a list like \"0-3,5\"", what, lists[i],
                          s);
  }
  return 0;
}

static int validate_dev_entries(json_t *bio, const char *key, bool weight, vs_error **err) {
  json_t *arr;
  int r = sj_array(bio, key, "linux.resources.blockIO", false, &arr, err);
  if (r <= 0)
    return r;
  size_t i;
  json_t *e;
  json_array_foreach(arr, i, e) {
    _cleanup_free_ char *what = vs_asprintf("linux.resources.blockIO.%s[%zu]", key, i);
    int64_t v;
    if (sj_expect_object(e, what, err) < 0 ||
        sj_int(e, "major", what, true, 0, UINT32_MAX, &v, err) < 0 ||
        sj_int(e, "minor", what, true, 0, UINT32_MAX, &v, err) < 0)
      return -1;
    if (weight) {
      if (sj_int(e, "weight", what, false, 0, 1000, &v, err) < 0 ||
          sj_int(e, "leafWeight", what, false, 0, 1000, &v, err) < 0)
        return -1;
    } else if (sj_int(e, "rate", what, true, 0, INT64_MAX, &v, err) < 0) {
      return -1;
    }
  }
  return 0;
}

static int validate_blkio(json_t *bio, vs_error **err) {
  const char *what = "linux.resources.blockIO";
  if (sj_expect_object(bio, what, err) < 0)
    return -1;
  int64_t v;
  if (sj_int(bio, "weight", what, false, 0, 1000, &v, err) < 0 ||
      sj_int(bio, "leafWeight", what, false, 0, 1000, &v, err) < 0)
    return -1;
  if (validate_dev_entries(bio, "weightDevice", true, err) < 0)
    return -1;
  static const char *const thr[] = {"throttleReadBpsDevice", "throttleWriteBpsDevice",
                                    "throttleReadIOPSDevice", "throttleWriteIOPSDevice"};
  for (size_t i = 0; i < ARRAY_SIZE(thr); i++)
    if (validate_dev_entries(bio, thr[i], false, err) < 0)
      return -1;
  return 0;
}

bool cg_hugepage_size_valid(const char *s) {
  size_t digits = strspn(s, "0123456789");
  if (digits == 0 || digits > 6)
    return false;
  const char *unit = s + digits;
  return strcmp(unit, "KB") == 0 || strcmp(unit, "MB") == 0 || strcmp(unit, "GB") == 0;
}

static int validate_hugetlb(json_t *arr, vs_error **err) {
  size_t i;
  json_t *e;
  json_array_foreach(arr, i, e) {
    _cleanup_free_ char *what = vs_asprintf("linux.resources.hugepageLimits[%zu]", i);
    const char *size;
    int64_t v;
    if (sj_expect_object(e, what, err) < 0 ||
        sj_string(e, "pageSize", what, true, &size, err) < 0 ||
        sj_int(e, "limit", what, true, 0, INT64_MAX, &v, err) < 0)
      return -1;
    if (!cg_hugepage_size_valid(size))
      return vs_error_set(err, 0, "%s.pageSize: \"%.32s\" is not a size like \"2MB\"", what, size);
  }
  return 0;
}

static int validate_unified(json_t *uni, vs_error **err) {
  if (sj_expect_object(uni, "linux.resources.unified", err) < 0)
    return -1;
  const char *key;
  json_t *val;
  json_object_foreach(uni, key, val) {
    const char *dot = strchr(key, '.');
    if (!dot || dot == key || strchr(key, '/') || strstr(key, "..") || strlen(key) > 128 ||
        strncmp(key, "cgroup.", 7) == 0)
      return vs_error_set(err, 0, "linux.resources.unified: \"%.64s\" is not a controller file",
                          key);
    if (!json_is_string(val))
      return vs_error_set(err, 0, "linux.resources.unified.%s: must be a string", key);
  }
  return 0;
}

int ctr_cgroup_validate_resources(json_t *r, vs_error **err) {
  if (!r || json_is_null(r))
    return 0;
  if (sj_expect_object(r, "linux.resources", err) < 0)
    return -1;
  json_t *v;
  if (sj_array(r, "devices", "linux.resources", false, &v, err) < 0)
    return -1;
  if (v) {
    size_t i;
    json_t *rule;
    json_array_foreach(v, i, rule) {
      _cleanup_free_ char *what = vs_asprintf("linux.resources.devices[%zu]", i);
      if (validate_device_rule(rule, what, err) < 0)
        return -1;
    }
  }
  if ((v = json_object_get(r, "memory")) && !json_is_null(v) && validate_memory(v, err) < 0)
    return -1;
  if ((v = json_object_get(r, "cpu")) && !json_is_null(v) && validate_cpu(v, err) < 0)
    return -1;
  if ((v = json_object_get(r, "pids")) && !json_is_null(v)) {
    int64_t lim;
    if (sj_expect_object(v, "linux.resources.pids", err) < 0 ||
        sj_int(v, "limit", "linux.resources.pids", true, INT64_MIN, INT64_MAX, &lim, err) < 0)
      return -1;
  }
  if ((v = json_object_get(r, "blockIO")) && !json_is_null(v) && validate_blkio(v, err) < 0)
    return -1;
  if (sj_array(r, "hugepageLimits", "linux.resources", false, &v, err) < 0)
    return -1;
  if (v && validate_hugetlb(v, err) < 0)
    return -1;
  if ((v = json_object_get(r, "network")) && !json_is_null(v) &&
      sj_expect_object(v, "linux.resources.network", err) < 0)
    return -1;
  if ((v = json_object_get(r, "unified")) && !json_is_null(v) && validate_unified(v, err) < 0)
    return -1;
  return 0;
}

static int validate_cgroups_path(const char *p, vs_error **err) {
  if (strlen(p) > CG_PATH_MAX)
    return vs_error_set(err, 0, "linux.cgroupsPath: longer than %d bytes", CG_PATH_MAX);
  if (strchr(p, ':') && p[0] != '/')
    return vs_error_set(err, 0,
                        "linux.cgroupsPath: \"%s\" looks like a systemd slice:prefix:name path; "
                        "vessel-runtime only manages cgroupfs paths (--systemd-cgroup is not "
                        "supported)",
                        p);
  for (const char *c = p; *c; c++)
    if ((unsigned char)*c < 0x20 || *c == 0x7f)
      return vs_error_set(err, 0, "linux.cgroupsPath: contains a control character");
  _cleanup_free_ char *copy = vs_strdup(p);
  char *save = NULL;
  for (char *c = strtok_r(copy, "/", &save); c; c = strtok_r(NULL, "/", &save))
    if (strcmp(c, "..") == 0 || strcmp(c, ".") == 0)
      return vs_error_set(err, 0, "linux.cgroupsPath: \"%s\" has a \"%s\" component", p, c);
  return 0;
}

/* ------------------------------------------------------------- lookups */

cg_dir *cg_dir_for(ctr_cgroup *cg, const char *controller) {
  const char *v1 = v1_name_of(controller);
  for (size_t i = 0; i < cg->n; i++)
    if (!cg->d[i].unified && cg_list_has(cg->d[i].controllers, v1))
      return &cg->d[i];
  const char *v2 = strcmp(controller, "blkio") == 0 ? "io" : controller;
  for (size_t i = 0; i < cg->n; i++)
    if (cg->d[i].unified && cg_list_has(cg->d[i].controllers, v2))
      return &cg->d[i];
  return NULL;
}

static cg_dir *unified_dir(ctr_cgroup *cg) {
  for (size_t i = 0; i < cg->n; i++)
    if (cg->d[i].unified)
      return &cg->d[i];
  return NULL;
}

static cg_dir *freezer_dir(ctr_cgroup *cg) {
  cg_dir *d = cg_dir_for(cg, "freezer");
  return d ? d : unified_dir(cg);
}

/* ------------------------------------------------------------- free/destroy */

void ctr_cgroup_free(ctr_cgroup *cg) {
  if (!cg)
    return;
  for (size_t i = 0; i < cg->n; i++) {
    free(cg->d[i].name);
    free(cg->d[i].controllers);
    free(cg->d[i].mount);
    free(cg->d[i].path);
  }
  free(cg->d);
  json_decref(cg->dev_rules);
  if (cg->bpf_fd >= 0)
    close(cg->bpf_fd);
  free(cg);
}

/* rmdir, waiting a little while the kernel finishes tearing down exited tasks. */
static int rmdir_retry(const char *path) {
  for (int attempt = 0;; attempt++) {
    if (rmdir(path) == 0 || errno == ENOENT)
      return 0;
    if (errno != EBUSY || attempt >= 20)
      return -1;
    sleep_ms(attempt < 5 ? 10 : 50);
  }
}

/* Remove the sub-cgroups a container made inside its own cgroup, depth first. */
static int remove_tree(const char *path, int depth, vs_error **err) {
  DIR *dir = opendir(path);
  if (dir) {
    struct dirent *e;
    int rc = 0;
    while ((e = readdir(dir))) {
      if (e->d_type != DT_DIR || strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
        continue;
      _cleanup_free_ char *sub = vs_asprintf("%s/%s", path, e->d_name);
      if (depth < 32 && remove_tree(sub, depth + 1, err) < 0)
        rc = -1;
    }
    closedir(dir);
    if (rc < 0)
      return -1;
  } else if (errno == ENOENT) {
    return 0;
  }
  if (rmdir_retry(path) < 0)
    return vs_error_set(err, errno, "remove cgroup %s", path);
  return 0;
}

static int destroy_dir(cg_dir *d, vs_error **err) {
  if (d->created <= 0)
    return 0;
  /* Usually the container made no sub-cgroups and its tasks are gone: one rmdir does it. */
  if (rmdir(d->path) < 0 && errno != ENOENT && remove_tree(d->path, 0, err) < 0)
    return -1;
  /* Ancestors we created (e.g. /vessel) go too, unless other containers still use them. */
  _cleanup_free_ char *p = vs_strdup(d->path);
  for (int i = 1; i < d->created; i++) {
    char *slash = strrchr(p, '/');
    if (!slash || slash == p)
      break;
    *slash = 0;
    if (strlen(p) <= strlen(d->mount))
      break;
    if (rmdir(p) < 0)
      break;
  }
  d->created = 0;
  return 0;
}

int ctr_cgroup_destroy(ctr_cgroup *cg, vs_error **err) {
  int rc = 0;
  for (size_t i = 0; i < cg->n; i++) {
    vs_error *e = NULL;
    if (destroy_dir(&cg->d[i], &e) < 0) {
      if (rc == 0 && err) {
        vs_error_free(*err);
        *err = e;
      } else {
        vs_error_free(e);
      }
      rc = -1;
    }
  }
  return rc;
}

/* ------------------------------------------------------------- create */

/* The caller's path in a hierarchy, relative to the hierarchy's mount root. */
static const char *self_relative(const cg_hier *h) {
  size_t rl = strlen(h->mount_root);
  if (strcmp(h->mount_root, "/") != 0 && strncmp(h->self_path, h->mount_root, rl) == 0 &&
      (h->self_path[rl] == '/' || h->self_path[rl] == 0))
    return h->self_path[rl] ? h->self_path + rl : "/";
  return h->self_path;
}

static char *inner_path(const cg_hier *h, const char *id, const char *cgroups_path) {
  if (!cgroups_path || !*cgroups_path)
    return vs_asprintf("/vessel/%s", id);
  if (cgroups_path[0] == '/')
    return vs_strdup(cgroups_path);
  const char *self = self_relative(h);
  return vs_asprintf("%s/%s", strcmp(self, "/") == 0 ? "" : self, cgroups_path);
}

/* v1 cpuset: a new cgroup starts with empty cpus/mems and refuses tasks until they are set. */
static int cpuset_init_from_parent(const char *dir, vs_error **err) {
  static const char *const files[] = {"cpuset.cpus", "cpuset.mems"};
  _cleanup_free_ char *parent = vs_strdup(dir);
  char *slash = strrchr(parent, '/');
  if (slash)
    *slash = 0;
  for (size_t i = 0; i < ARRAY_SIZE(files); i++) {
    _cleanup_free_ char *mine = NULL, *theirs = NULL;
    if (cg_read(dir, files[i], &mine, err) < 0)
      return -1;
    if (mine[0] != '\n' && mine[0] != 0)
      continue;
    if (cg_read(parent, files[i], &theirs, err) < 0)
      return -1;
    if (cg_write(dir, files[i], theirs, err) < 0)
      return -1;
  }
  return 0;
}

static int make_dirs_once(cg_dir *d, const char *inner, bool cpuset, vs_error **err) {
  _cleanup_free_ char *walk = vs_strdup(d->mount);
  _cleanup_free_ char *copy = vs_strdup(inner);
  char *save = NULL;
  char *comp = strtok_r(copy, "/", &save);
  if (!comp)
    return vs_error_set(err, 0, "cgroup path \"%s\" names the hierarchy root", inner);
  for (; comp; comp = strtok_r(NULL, "/", &save)) {
    char *next = vs_asprintf("%s/%s", walk, comp);
    free(walk);
    walk = next;
    if (mkdir(walk, 0755) == 0) {
      d->created++;
      if (cpuset && cpuset_init_from_parent(walk, err) < 0)
        return vs_error_wrap(err, "initialise cpuset of %s", walk);
    } else if (errno != EEXIST) {
      return vs_error_set(err, errno, "create cgroup %s", walk);
    }
  }
  return 0;
}

static int make_dirs(cg_dir *d, const char *inner, bool cpuset, vs_error **err) {
  /* Another container's delete may remove a shared parent (/vessel) between our mkdirs. */
  for (int attempt = 0;; attempt++) {
    d->created = 0;
    if (make_dirs_once(d, inner, cpuset, err) == 0)
      break;
    if (attempt >= 4 || !err || !*err || (*err)->errnum != ENOENT)
      return -1;
    vs_error_free(*err);
    *err = NULL;
  }
  /* The container's own directory belongs to it even when it existed already. */
  if (d->created == 0)
    d->created = 1;
  return 0;
}

/* Controllers of a cgroup2 hierarchy vessel will use: all it offers on a pure v2 host; on a
 * hybrid host only those that no v1 hierarchy has. */
static char *unified_controllers(const cg_layout *l, const cg_hier *h) {
  _cleanup_free_ char *avail = NULL;
  _cleanup_free_ char *dir =
      vs_asprintf("%s%s", h->mountpoint, strcmp(self_relative(h), "/") ? self_relative(h) : "");
  if (cg_read(dir, "cgroup.controllers", &avail, NULL) < 0)
    return vs_strdup("");
  for (char *p = avail; *p; p++)
    if (*p == ' ' || *p == '\n')
      *p = ',';
  char *out = vs_strdup("");
  for (size_t i = 0; i < ARRAY_SIZE(v2_known); i++) {
    if (!cg_list_has(avail, v2_known[i]) || cg_layout_v1(l, v1_name_of(v2_known[i])))
      continue;
    char *j = vs_asprintf("%s%s%s", out, *out ? "," : "", v2_known[i]);
    free(out);
    out = j;
  }
  return out;
}

static bool layout_is_pure_v2(const cg_layout *l) {
  for (size_t i = 0; i < l->n; i++)
    if (!l->h[i].unified)
      return false;
  return true;
}

static int apply_resources(ctr_cgroup *cg, json_t *r, bool creating, vs_error **err);

int ctr_cgroup_plan(const char *id, const char *cgroups_path, ctr_cgroup **out, vs_error **err) {
  if (cgroups_path && validate_cgroups_path(cgroups_path, err) < 0)
    return -1;
  if (!cgroups_path && (!id || !*id || strchr(id, '/') || strcmp(id, "..") == 0))
    return vs_error_set(err, 0, "cgroup: invalid container id \"%s\"", id ? id : "");
  cg_layout l = {0};
  if (cg_layout_load(&l, err) < 0)
    return -1;
  ctr_cgroup *cg = vs_malloc0(sizeof(*cg));
  cg->bpf_fd = -1;
  cg->d = vs_malloc0(l.n * sizeof(*cg->d));
  cg->pure_v2 = layout_is_pure_v2(&l);
  cg->default_path = !cgroups_path || !*cgroups_path;
  int rc = 0;
  for (size_t i = 0; i < l.n; i++) {
    const cg_hier *h = &l.h[i];
    cg_dir *d = &cg->d[cg->n];
    _cleanup_free_ char *inner = inner_path(h, id, cgroups_path);
    d->unified = h->unified;
    d->name = cg_hier_name(h);
    d->controllers = h->unified ? unified_controllers(&l, h) : vs_strdup(h->controllers);
    d->mount = vs_strdup(h->mountpoint);
    d->path = vs_asprintf("%s%s", h->mountpoint, inner);
    cg->n++;
    if (strlen(d->path) > CG_PATH_MAX + 256) {
      rc = vs_error_set(err, 0, "cgroup path %s is too long", d->path);
      break;
    }
  }
  cg_layout_clear(&l);
  if (rc < 0) {
    ctr_cgroup_free(cg);
    return vs_error_wrap(err, "cgroup for container %s", id ? id : "");
  }
  *out = cg;
  return 0;
}

int ctr_cgroup_make(ctr_cgroup *cg, json_t *resources, vs_error **err) {
  if (ctr_cgroup_validate_resources(resources, err) < 0)
    return -1;
  int rc = -1;
  for (size_t i = 0; i < cg->n; i++) {
    cg_dir *d = &cg->d[i];
    const char *inner = d->path + strlen(d->mount);
    if (!d->premade &&
        make_dirs(d, inner, !d->unified && cg_list_has(d->controllers, "cpuset"), err) < 0)
      goto out;
    /* The default parent /vessel stays between containers, as runc leaves the parents of its
     * cgroups: making and removing it (and initialising its v1 cpuset) on every container
     * cost about a tenth of a container start on a hybrid host with ten hierarchies. */
    if (cg->default_path && d->created > 1)
      d->created = 1;
    if (d->unified && cg->pure_v2) {
      /* Enable every controller we manage so later `update`s can use them. */
      _cleanup_free_ char *ctrls = vs_strdup(d->controllers);
      char *save = NULL;
      for (char *c = strtok_r(ctrls, ",", &save); c; c = strtok_r(NULL, ",", &save))
        if (cg_v2_enable(d, c, err) < 0)
          goto out;
    }
  }
  if (apply_resources(cg, resources, true, err) < 0)
    goto out;
  rc = 0;
out:
  if (rc < 0) {
    ctr_cgroup_destroy(cg, NULL);
    return vs_error_wrap(err, "create cgroup %s", cg->n ? cg->d[0].path : "");
  }
  return 0;
}

int ctr_cgroup_create(const char *id, const char *cgroups_path, json_t *resources, ctr_cgroup **out,
                      vs_error **err) {
  if (ctr_cgroup_validate_resources(resources, err) < 0)
    return -1;
  ctr_cgroup *cg;
  if (ctr_cgroup_plan(id, cgroups_path, &cg, err) < 0)
    return -1;
  if (ctr_cgroup_make(cg, resources, err) < 0) {
    ctr_cgroup_free(cg);
    return vs_error_wrap(err, "create cgroup for container %s", id ? id : "");
  }
  *out = cg;
  return 0;
}

/* ------------------------------------------------------------- resources */

/* runc's default device rules, appended after the spec's own rules. */
static const char *const default_device_rules[] = {
    "c *:* m",   "b *:* m",   "c 1:3 rwm", "c 1:8 rwm",   "c 1:7 rwm", "c 5:0 rwm",
    "c 1:5 rwm", "c 1:9 rwm", "c 5:1 rwm", "c 136:* rwm", "c 5:2 rwm", "c 10:200 rwm",
};

static int apply_devices(ctr_cgroup *cg, json_t *rules, vs_error **err) {
  cg_dir *d = cg_dir_for(cg, "devices");
  if (!d) {
    cg_dir *u = unified_dir(cg);
    if (!u) {
      vs_log_warn("linux.resources.devices: no devices controller and no cgroup2 here; device "
                  "rules are not enforced");
      return 0;
    }
    if (cg_v2_devices_attach(u, rules, NULL, &cg->bpf_fd, err) < 0)
      return vs_error_wrap(err, "linux.resources.devices");
    json_decref(cg->dev_rules);
    cg->dev_rules = json_incref(rules);
    return 0;
  }
  if (cg_v1_devices(d, rules, err) < 0)
    return -1;
  for (size_t i = 0; i < ARRAY_SIZE(default_device_rules); i++)
    if (cg_write(d->path, "devices.allow", default_device_rules[i], err) < 0)
      return vs_error_wrap(err, "allow default device");
  return 0;
}

int ctr_cgroup_allow_devices(ctr_cgroup *cg, json_t *devs, vs_error **err) {
  cg_dir *d = cg_dir_for(cg, "devices");
  if (!devs || !json_is_array(devs) || json_array_size(devs) == 0)
    return 0;
  if (!d && cg->dev_rules) {
    cg_dir *u = unified_dir(cg);
    if (u && cg_v2_devices_attach(u, cg->dev_rules, devs, &cg->bpf_fd, err) < 0)
      return vs_error_wrap(err, "linux.devices");
    return 0;
  }
  if (!d || d->unified)
    return 0;
  size_t i;
  json_t *e;
  json_array_foreach(devs, i, e) {
    const char *type = json_string_value(json_object_get(e, "type"));
    json_t *maj = json_object_get(e, "major"), *min = json_object_get(e, "minor");
    if (!type || !json_is_integer(maj) || !json_is_integer(min))
      continue; /* the spec parser reports malformed devices; "p" fifos need no rule */
    char t = (char)(type[0] == 'u' ? 'c' : type[0]);
    if (t != 'c' && t != 'b')
      continue;
    if (cg_writef(d->path, "devices.allow", err, "%c %lld:%lld rwm", t,
                  (long long)json_integer_value(maj), (long long)json_integer_value(min)) < 0)
      return vs_error_wrap(err, "linux.devices[%zu]", i);
  }
  return 0;
}

static bool nonempty(json_t *v) {
  return v && !json_is_null(v) &&
         ((json_is_object(v) && json_object_size(v) > 0) ||
          (json_is_array(v) && json_array_size(v) > 0));
}

/* Every pageSize must be one the kernel has (checked before enabling hugetlb on cgroup2). */
static int check_hugepage_sizes(json_t *limits, vs_error **err) {
  size_t i;
  json_t *e;
  json_array_foreach(limits, i, e) {
    const char *size = json_string_value(json_object_get(e, "pageSize"));
    char *unit;
    unsigned long n = strtoul(size, &unit, 10);
    unsigned long kb = n << (strcmp(unit, "GB") == 0 ? 20 : strcmp(unit, "MB") == 0 ? 10 : 0);
    _cleanup_free_ char *dir = vs_asprintf("/sys/kernel/mm/hugepages/hugepages-%lukB", kb);
    if (access(dir, F_OK) < 0)
      return vs_error_set(err, 0,
                          "linux.resources.hugepageLimits[%zu].pageSize: huge page size %s is "
                          "not supported on this host",
                          i, size);
  }
  return 0;
}

static int need(ctr_cgroup *cg, const char *controller, const char *field, cg_dir **d,
                vs_error **err) {
  *d = cg_dir_for(cg, controller);
  if (!*d)
    return vs_error_set(err, 0, "%s: the %s controller is not available on this host", field,
                        controller);
  return 0;
}

static int apply_resources(ctr_cgroup *cg, json_t *r, bool creating, vs_error **err) {
  if (!r || json_is_null(r))
    return 0;
  cg_dir *d;
  json_t *v;
  if (creating && (v = json_object_get(r, "devices")) && json_is_array(v) &&
      apply_devices(cg, v, err) < 0)
    return -1;
  if (nonempty(v = json_object_get(r, "memory"))) {
    if (need(cg, "memory", "linux.resources.memory", &d, err) < 0)
      return -1;
    if ((d->unified ? cg_v2_memory(d, v, err) : cg_v1_memory(d, v, err)) < 0)
      return -1;
  }
  if (nonempty(v = json_object_get(r, "cpu"))) {
    bool has_cpu = false, has_set = false;
    const char *key;
    json_t *val;
    json_object_foreach(v, key, val) {
      if (json_is_null(val))
        continue;
      if (strcmp(key, "cpus") == 0 || strcmp(key, "mems") == 0)
        has_set = true;
      else
        has_cpu = true;
    }
    if (has_cpu) {
      if (need(cg, "cpu", "linux.resources.cpu", &d, err) < 0)
        return -1;
      if ((d->unified ? cg_v2_cpu(d, v, err) : cg_v1_cpu(d, v, err)) < 0)
        return -1;
    }
    if (has_set) {
      if (need(cg, "cpuset", "linux.resources.cpu.cpus/mems", &d, err) < 0)
        return -1;
      if ((d->unified ? cg_v2_cpuset(d, v, err) : cg_v1_cpuset(d, v, false, err)) < 0)
        return -1;
    }
  }
  if (nonempty(v = json_object_get(r, "pids"))) {
    if (need(cg, "pids", "linux.resources.pids", &d, err) < 0 || cg_pids_limit(d, v, err) < 0)
      return -1;
  }
  if (nonempty(v = json_object_get(r, "blockIO"))) {
    if (need(cg, "blkio", "linux.resources.blockIO", &d, err) < 0)
      return -1;
    if ((d->unified ? cg_v2_io(d, v, err) : cg_v1_blkio(d, v, err)) < 0)
      return -1;
  }
  if (nonempty(v = json_object_get(r, "hugepageLimits"))) {
    if (need(cg, "hugetlb", "linux.resources.hugepageLimits", &d, err) < 0)
      return -1;
    if (check_hugepage_sizes(v, err) < 0)
      return -1;
    if (d->unified && cg_v2_enable(d, "hugetlb", err) < 0)
      return vs_error_wrap(err, "linux.resources.hugepageLimits");
    if (cg_hugetlb(d, v, err) < 0)
      return -1;
  }
  if (nonempty(json_object_get(r, "network")))
    vs_log_warn("linux.resources.network: net_cls/net_prio are not managed by vessel-runtime; "
                "ignored");
  if (nonempty(json_object_get(r, "rdma")))
    vs_log_warn("linux.resources.rdma: no rdma controller on this host; ignored");
  if (nonempty(v = json_object_get(r, "unified"))) {
    cg_dir *u = unified_dir(cg);
    if (!u)
      return vs_error_set(err, 0, "linux.resources.unified: this host has no cgroup2 hierarchy");
    const char *key;
    json_t *val;
    json_object_foreach(v, key, val) {
      char ctrl[64];
      size_t n = (size_t)(strchr(key, '.') - key);
      snprintf(ctrl, sizeof(ctrl), "%.*s", (int)(n < 63 ? n : 63), key);
      if (cg_v2_enable(u, ctrl, NULL) < 0)
        vs_log_debug("linux.resources.unified: cannot enable controller %s", ctrl);
      if (cg_write(u->path, key, json_string_value(val), err) < 0)
        return vs_error_wrap(err, "linux.resources.unified.%s", key);
    }
  }
  return 0;
}

int ctr_cgroup_update(ctr_cgroup *cg, json_t *resources, vs_error **err) {
  if (ctr_cgroup_validate_resources(resources, err) < 0)
    return -1;
  if (apply_resources(cg, resources, false, err) < 0)
    return vs_error_wrap(err, "update cgroup");
  return 0;
}

/* ------------------------------------------------------------- processes */

int ctr_cgroup_add_pid(ctr_cgroup *cg, pid_t pid, vs_error **err) {
  for (size_t i = 0; i < cg->n; i++)
    if (cg_writef(cg->d[i].path, "cgroup.procs", err, "%d", (int)pid) < 0)
      return vs_error_wrap(err, "add pid %d to cgroup", (int)pid);
  return 0;
}

int ctr_cgroup_open_unified(ctr_cgroup *cg, int *fd, vs_error **err) {
  *fd = -1;
  if (cg->pure_v2)
    return 0;
  for (size_t i = 0; i < cg->n; i++) {
    cg_dir *d = &cg->d[i];
    if (!d->unified)
      continue;
    if (make_dirs(d, d->path + strlen(d->mount), false, err) < 0)
      return vs_error_wrap(err, "create cgroup %s", d->path);
    d->premade = true;
    if (cg->default_path && d->created > 1)
      d->created = 1; /* the shared /vessel parent stays (see ctr_cgroup_make) */
    *fd = open(d->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (*fd < 0)
      return vs_error_set(err, errno, "open cgroup %s", d->path);
    return 0;
  }
  return 0;
}

int ctr_cgroup_join_self(ctr_cgroup *cg, bool skip_unified, vs_error **err) {
  for (size_t i = 0; i < cg->n; i++) {
    const cg_dir *d = &cg->d[i];
    if (d->unified && skip_unified)
      continue;
    if (cg_write(d->path, d->unified ? "cgroup.procs" : "tasks", "0", err) < 0)
      return vs_error_wrap(err, "join cgroup %s", d->path);
  }
  return 0;
}

static void collect_pids(const char *dir, int depth, pid_t **pids, size_t *n, size_t *cap) {
  _cleanup_free_ char *text = NULL;
  if (cg_read(dir, "cgroup.procs", &text, NULL) == 0) {
    for (char *p = text; *p;) {
      char *end;
      long v = strtol(p, &end, 10);
      if (end == p)
        break;
      if (v > 0) {
        if (*n == *cap) {
          *cap = *cap ? *cap * 2 : 16;
          *pids = vs_realloc(*pids, *cap * sizeof(pid_t));
        }
        (*pids)[(*n)++] = (pid_t)v;
      }
      p = end;
      while (*p == '\n')
        p++;
    }
  }
  if (depth >= 32)
    return;
  DIR *d = opendir(dir);
  if (!d)
    return;
  struct dirent *e;
  while ((e = readdir(d))) {
    if (e->d_type != DT_DIR || e->d_name[0] == '.')
      continue;
    _cleanup_free_ char *sub = vs_asprintf("%s/%s", dir, e->d_name);
    collect_pids(sub, depth + 1, pids, n, cap);
  }
  closedir(d);
}

static int cmp_pid(const void *a, const void *b) {
  pid_t x = *(const pid_t *)a, y = *(const pid_t *)b;
  return (x > y) - (x < y);
}

int ctr_cgroup_pids(ctr_cgroup *cg, pid_t **pids, size_t *n, vs_error **err) {
  cg_dir *d = freezer_dir(cg);
  if (!d && cg->n)
    d = &cg->d[0];
  if (!d)
    return vs_error_set(err, 0, "cgroup has no hierarchies");
  if (access(d->path, F_OK) < 0)
    return vs_error_set(err, errno, "cgroup %s", d->path);
  size_t cap = 0;
  *pids = NULL;
  *n = 0;
  collect_pids(d->path, 0, pids, n, &cap);
  if (*n)
    qsort(*pids, *n, sizeof(pid_t), cmp_pid);
  return 0;
}

int ctr_cgroup_kill(ctr_cgroup *cg, int sig, vs_error **err) {
  bool frozen = false;
  ctr_cgroup_is_frozen(cg, &frozen, NULL);
  for (int round = 0; round < 100; round++) {
    _cleanup_free_ pid_t *pids = NULL;
    size_t n = 0;
    if (ctr_cgroup_pids(cg, &pids, &n, err) < 0)
      return -1;
    if (n == 0)
      return 0;
    for (size_t i = 0; i < n; i++)
      if (kill(pids[i], sig) < 0 && errno != ESRCH)
        return vs_error_set(err, errno, "kill %d", (int)pids[i]);
    if (sig != SIGKILL)
      return 0;
    /* Frozen tasks only act on SIGKILL once thawed. */
    if (frozen && ctr_cgroup_freeze(cg, false, err) < 0)
      return -1;
    frozen = false;
    sleep_ms(round < 10 ? 5 : 20);
  }
  return vs_error_set(err, EBUSY, "processes of the container survive SIGKILL");
}

/* ------------------------------------------------------------- freezer */

int ctr_cgroup_freeze(ctr_cgroup *cg, bool freeze, vs_error **err) {
  cg_dir *d = freezer_dir(cg);
  if (!d)
    return vs_error_set(err, ENOTSUP, "no freezer: neither a v1 freezer nor cgroup2 here");
  return d->unified ? cg_v2_freeze(d, freeze, err) : cg_v1_freeze(d, freeze, err);
}

int ctr_cgroup_is_frozen(ctr_cgroup *cg, bool *frozen, vs_error **err) {
  cg_dir *d = freezer_dir(cg);
  *frozen = false;
  if (!d)
    return 0;
  _cleanup_free_ char *text = NULL;
  if (d->unified) {
    if (cg_read(d->path, "cgroup.events", &text, err) < 0)
      return -1;
    uint64_t v = 0;
    *frozen = cg_keyed_get(text, "frozen", &v) && v == 1;
  } else {
    if (cg_read(d->path, "freezer.state", &text, err) < 0)
      return -1;
    *frozen = strncmp(text, "FROZEN", 6) == 0;
  }
  return 0;
}

/* ------------------------------------------------------------- stats */

json_t *ctr_cgroup_stats(ctr_cgroup *cg, vs_error **err) {
  if (cg->n == 0 || access(cg->d[0].path, F_OK) < 0) {
    vs_error_set(err, errno ? errno : ENOENT, "cgroup %s", cg->n ? cg->d[0].path : "(none)");
    return NULL;
  }
  json_t *data = json_object();
  cg_stats_fill(cg, data);
  return data;
}

/* ------------------------------------------------------------- state file */

json_t *ctr_cgroup_to_json(const ctr_cgroup *cg) {
  json_t *dirs = json_array();
  for (size_t i = 0; i < cg->n; i++)
    json_array_append_new(dirs, json_pack("{s:s, s:s, s:b, s:s, s:s, s:i}", "name", cg->d[i].name,
                                          "controllers", cg->d[i].controllers, "unified",
                                          cg->d[i].unified, "mount", cg->d[i].mount, "path",
                                          cg->d[i].path, "created", cg->d[i].created));
  return json_pack("{s:i, s:o}", "version", 1, "dirs", dirs);
}

static int dir_from_json(json_t *j, size_t i, cg_dir *d, vs_error **err) {
  _cleanup_free_ char *what = vs_asprintf("cgroup.dirs[%zu]", i);
  const char *name, *ctrls, *mount, *path;
  bool unified;
  int64_t created;
  if (sj_expect_object(j, what, err) < 0 || sj_string(j, "name", what, true, &name, err) < 0 ||
      sj_string(j, "controllers", what, true, &ctrls, err) < 0 ||
      sj_bool(j, "unified", what, true, &unified, err) < 0 ||
      sj_string(j, "mount", what, true, &mount, err) < 0 ||
      sj_string(j, "path", what, true, &path, err) < 0 ||
      sj_int(j, "created", what, true, 0, 64, &created, err) < 0)
    return -1;
  size_t ml = strlen(mount);
  if (mount[0] != '/' || strncmp(path, mount, ml) != 0 || path[ml] != '/' || strstr(path, "/../") ||
      strlen(path) > CG_PATH_MAX + 256)
    return vs_error_set(err, 0, "%s.path: \"%s\" is not below its mount point \"%s\"", what, path,
                        mount);
  d->name = vs_strdup(name);
  d->controllers = vs_strdup(ctrls);
  d->unified = unified;
  d->mount = vs_strdup(mount);
  d->path = vs_strdup(path);
  d->created = (int)created;
  return 0;
}

int ctr_cgroup_from_json(json_t *saved, ctr_cgroup **out, vs_error **err) {
  int64_t version;
  json_t *dirs;
  if (sj_expect_object(saved, "cgroup", err) < 0 ||
      sj_int(saved, "version", "cgroup", true, 1, 1, &version, err) < 0 ||
      sj_array(saved, "dirs", "cgroup", true, &dirs, err) < 0)
    return -1;
  ctr_cgroup *cg = vs_malloc0(sizeof(*cg));
  cg->bpf_fd = -1;
  cg->d = vs_malloc0((json_array_size(dirs) + 1) * sizeof(*cg->d));
  size_t i;
  json_t *e;
  json_array_foreach(dirs, i, e) {
    if (dir_from_json(e, i, &cg->d[cg->n], err) < 0) {
      ctr_cgroup_free(cg);
      return -1;
    }
    cg->n++;
  }
  *out = cg;
  return 0;
}

/* ------------------------------------------------------------- mounts */

size_t ctr_cgroup_hierarchy_count(const ctr_cgroup *cg) { return cg->n; }

bool ctr_cgroup_hierarchy_get(const ctr_cgroup *cg, size_t i, ctr_cgroup_hierarchy *out) {
  if (i >= cg->n)
    return false;
  out->name = cg->d[i].name;
  out->host_path = cg->d[i].path;
  out->unified = cg->d[i].unified;
  return true;
}
