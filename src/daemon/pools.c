/* Resource pools (/vessel/v1/pools, docs/api.md): a named capacity of CPUs and memory with
 * overcommit ratios that VMs are admitted against, and a cgroup that bounds what they really
 * use.
 *
 * A pool is one file, <data-root>/pools/<name>.json (atomically replaced), kept in memory in
 * vd_vms (under its lock, as the VMs that count against it). Admission counts every guest of
 * the pool, running or not: CPUs as Kubernetes counts requests, memory as pool_memory.c counts
 * it (what a guest holds where the daemon can take it back, its request otherwise); a guest is
 * admitted when that plus its own request stays within capacity times the ratio.
 * Enforcement: the pool's cgroup, /vessel-pools/<name> in every hierarchy (src/ctr's cgroup
 * code, so v1, v2 and this host's hybrid layout alike), is limited to the capacity itself (CPU
 * quota of Cpus whole CPUs, memory limit of Memory); each running VMM sits in
 * /vessel-pools/<name>/vm-<id> with its QoS class's weight and limits (qos_resources).
 *
 * The pool "default" always exists: its capacity is the host's (online CPUs, physical memory)
 * with generous overcommit (VD_DEFAULT_CPU_OVERCOMMIT, VD_DEFAULT_MEMORY_OVERCOMMIT), and it
 * holds every guest that names no pool: VMs and containers without the label are admitted
 * against it. Its guests stay in vesseld's own cgroup unless they ask for a QoS class (a VM's
 * --qos): the host's capacity needs no bound of its own. It is not written to a
 * file until an update changes it, and cannot be removed. */
#include "ctr/cgroup.h"
#include "daemon/vms.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <string.h>
#include <unistd.h>

/* Far above any host; a larger size is a typo or an attack, and would not fit in a JSON integer. */
#define POOL_MEMORY_MAX (1ULL << 50)

#define CPU_PERIOD_US 100000LL
#define CPU_SHARES_PER_CPU 1024LL /* v1 cpu.shares; v2 cpu.weight is derived by src/ctr */
#define CPU_SHARES_MIN 2          /* Kubernetes' best-effort shares */
/* What a VMM holds beyond the guest's RAM (code, device buffers, page tables) */
#define VMM_OVERHEAD (64LL << 20)
#define VD_DEFAULT_CPU_OVERCOMMIT 16.0
#define VD_DEFAULT_MEMORY_OVERCOMMIT 1.5

/* ---------------------------------------------------------------- the pools */

static char *pool_file(const vd_vms *t, const char *name) {
  return vs_asprintf("%s/%s.json", t->pools_dir, name);
}

static char *pool_cgroup_path(const char *name) { return vs_asprintf("/vessel-pools/%s", name); }

int vd_pools_load(vd_daemon *d, vs_error **err) {
  vd_vms *t = d->vms;
  t->pools = json_object();
  t->pools_dir = vs_asprintf("%s/pools", d->data_root);
  if (vs_mkdir_p(t->pools_dir, 0700, err) < 0)
    return -1;
  DIR *dir = opendir(t->pools_dir);
  if (!dir)
    return vs_error_set(err, errno, "open %s", t->pools_dir);
  struct dirent *de;
  while ((de = readdir(dir))) {
    size_t l = strlen(de->d_name);
    if (de->d_name[0] == '.' || l < 6 || strcmp(de->d_name + l - 5, ".json") != 0)
      continue;
    _cleanup_free_ char *p = vs_asprintf("%s/%s", t->pools_dir, de->d_name);
    vs_error *e = NULL;
    json_t *pool = vs_json_load_file(p, 1 << 16, &e);
    const char *name = json_string_value(json_object_get(pool, "Name"));
    if (!name) {
      vs_log_warn("pool file %s is not valid, ignoring it: %s", p, e ? e->msg : "no Name");
      vs_error_free(e);
      json_decref(pool);
      continue;
    }
    json_object_set_new(t->pools, name, pool);
  }
  closedir(dir);
  if (!json_object_get(t->pools, VD_DEFAULT_POOL)) {
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    json_object_set_new(t->pools, VD_DEFAULT_POOL,
                        json_pack("{s:s, s:I, s:I, s:f, s:f, s:s}", "Name", VD_DEFAULT_POOL, "Cpus",
                                  (json_int_t)(cpus > 0 ? cpus : 1), "Memory",
                                  (json_int_t)(pages > 0 && page > 0 ? pages * page : 1LL << 30),
                                  "CpuOvercommit", VD_DEFAULT_CPU_OVERCOMMIT, "MemoryOvercommit",
                                  VD_DEFAULT_MEMORY_OVERCOMMIT, "Created", d->started));
  }
  return 0;
}

void vd_pools_free(vd_vms *t) {
  json_decref(t->pools);
  free(t->pools_dir);
}

/* A container's pool: its label vessel.pool (docker run --label vessel.pool=NAME). */
const char *vd_pool_ctr_name(json_t *rec) {
  return json_string_value(
      json_object_get(json_object_get(json_object_get(rec, "Config"), "Labels"), VD_POOL_LABEL));
}

/* A container's request, from docker run's --cpus and --memory, and its QoS class as Kubernetes
 * derives it: both limits set, guaranteed; one, burstable; none, best-effort. */
const char *vd_pool_ctr_request(json_t *rec, double *cpus, int64_t *mem) {
  json_t *hc = json_object_get(rec, "HostConfig");
  *cpus = (double)json_integer_value(json_object_get(hc, "NanoCpus")) / 1e9;
  *mem = json_integer_value(json_object_get(hc, "Memory"));
  return *cpus > 0 && *mem > 0 ? "guaranteed" : *cpus > 0 || *mem > 0 ? "burstable" : "best-effort";
}

/* One guest of a pool in {Kind, Name, Qos, Memory, Held, Counted}: its memory request, what it
 * holds (null: not running, or not measured yet) and what admission counts of it; with detail,
 * what pool_stats.c measures it by too: Id, Cpus, Running, and a running VM's Pid and Dir. */
static json_t *guest_json(const char *kind, const char *id, const char *name, const char *qos,
                          double cpus, int64_t mem, int64_t held, int64_t counted, bool running,
                          pid_t pid, const char *dir, bool detail) {
  json_t *g =
      json_pack("{s:s, s:s, s:s, s:I, s:o, s:I}", "Kind", kind, "Name", name, "Qos", qos, "Memory",
                (json_int_t)mem, "Held", held >= 0 ? json_integer((json_int_t)held) : json_null(),
                "Counted", (json_int_t)counted);
  if (detail) {
    json_object_set_new(g, "Id", json_string(id));
    json_object_set_new(g, "Cpus", json_real(cpus));
    json_object_set_new(g, "Running", json_boolean(running));
    if (pid > 0 && dir) {
      json_object_set_new(g, "Pid", json_integer(pid));
      json_object_set_new(g, "Dir", json_string(dir));
    }
  }
  return g;
}

json_t *vd_pool_usage_locked(vd_daemon *d, const char *name, bool detail) {
  vd_vms *t = d->vms;
  double cpus = 0;
  int64_t mem = 0, held = 0, counted = 0;
  json_t *guests = json_array();
  for (size_t i = 0; i < t->n; i++) {
    const vd_vm *vm = t->vms[i];
    json_t *cfg = json_object_get(vm->rec, "Config");
    const char *p = json_string_value(json_object_get(cfg, "Pool"));
    if (strcmp(p ? p : VD_DEFAULT_POOL, name) != 0) /* VMs older than the default pool too */
      continue;
    double vcpus = (double)json_integer_value(json_object_get(cfg, "Cpus"));
    int64_t vmem = json_integer_value(json_object_get(cfg, "Memory")), vheld;
    int64_t vcounted = vd_vm_memory_counted_locked(vm, &vheld);
    cpus += vcpus;
    mem += vmem;
    counted += vcounted;
    held += vheld > 0 ? vheld : 0;
    json_t *g = guest_json("vm", vm->id, vm->name, vd_vm_qos(vm), vcpus, vmem, vheld, vcounted,
                           vm->pid > 0, vm->pid, vm->dir, detail);
    if (vm->pid > 0 && vm->squeeze)
      json_object_set_new(g, "BalloonTarget", json_integer((json_int_t)vm->squeeze));
    json_array_append_new(guests, g);
  }
  for (size_t i = 0; i < d->n_ctrs; i++) {
    vd_container *c = d->ctrs[i];
    const char *p = vd_pool_ctr_name(c->rec);
    if (strcmp(p ? p : VD_DEFAULT_POOL, name) != 0 || c->removed)
      continue;
    double ccpus;
    int64_t cmem, cheld;
    const char *qos = vd_pool_ctr_request(c->rec, &ccpus, &cmem);
    int64_t ccounted = vd_ctr_memory_counted_locked(t, c, &cheld);
    cpus += ccpus;
    mem += cmem;
    counted += ccounted;
    held += cheld > 0 ? cheld : 0;
    json_array_append_new(guests,
                          guest_json("container", c->id, c->name[0] == '/' ? c->name + 1 : c->name,
                                     qos, ccpus, cmem, cheld, ccounted, c->state == VD_CTR_RUNNING,
                                     0, NULL, detail));
  }
  return json_pack("{s:f, s:I, s:I, s:I, s:o}", "Cpus", cpus, "Memory", (json_int_t)mem, "Held",
                   (json_int_t)held, "Counted", (json_int_t)counted, "Guests", guests);
}

/* The admissible totals: capacity times the overcommit ratio. */
static void pool_limits(json_t *pool, double *cpus, double *mem) {
  *cpus = (double)json_integer_value(json_object_get(pool, "Cpus")) *
          json_number_value(json_object_get(pool, "CpuOvercommit"));
  *mem = (double)json_integer_value(json_object_get(pool, "Memory")) *
         json_number_value(json_object_get(pool, "MemoryOvercommit"));
}

int vd_pool_admit_locked(vd_daemon *d, const char *name, double cpus, int64_t mem, vs_error **err) {
  json_t *pool = json_object_get(d->vms->pools, name);
  if (!pool)
    return vs_error_set(err, ENOENT, "pool %s not found", name);
  json_t *use = vd_pool_usage_locked(d, name, false);
  double used_cpus = json_number_value(json_object_get(use, "Cpus"));
  int64_t requested = json_integer_value(json_object_get(use, "Memory"));
  int64_t held = json_integer_value(json_object_get(use, "Held"));
  /* memory by what the guests hold, at least what cannot be taken back (pool_memory.c) */
  int64_t used_mem = json_integer_value(json_object_get(use, "Counted"));
  json_decref(use);
  double max_cpus, max_mem;
  pool_limits(pool, &max_cpus, &max_mem);
  double left_cpus = max_cpus - used_cpus, left_mem = max_mem - (double)used_mem;
  if (cpus <= left_cpus + 1e-9 && (double)mem <= left_mem + 0.5)
    return 0;
  /* the message alone (no strerror); EBUSY makes it a 409 */
  vs_error_set(err, 0,
               "pool %s cannot admit %g CPUs and %lld MiB: it has %.2f CPUs and %lld "
               "MiB left (capacity %lld CPUs x %.2f, %lld MiB x %.2f); its guests hold %lld MiB "
               "of the %lld MiB they request and count as %lld MiB (guaranteed and stopped "
               "guests at their request)",
               name, cpus, (long long)(mem >> 20), left_cpus > 0 ? left_cpus : 0,
               (long long)(left_mem > 0 ? (int64_t)left_mem >> 20 : 0),
               (long long)json_integer_value(json_object_get(pool, "Cpus")),
               json_number_value(json_object_get(pool, "CpuOvercommit")),
               (long long)(json_integer_value(json_object_get(pool, "Memory")) >> 20),
               json_number_value(json_object_get(pool, "MemoryOvercommit")),
               (long long)(held >> 20), (long long)(requested >> 20), (long long)(used_mem >> 20));
  if (err && *err)
    (*err)->errnum = EBUSY;
  return -1;
}

/* A 404 would make the docker CLI look for the image: an unknown pool is a bad request. */
static void ctr_pool_not_found(const char *name, vs_error **err) {
  if (!err || !*err || (*err)->errnum != ENOENT)
    return;
  vs_error_free(*err);
  *err = NULL;
  vs_error_set(err, 0, "pool %s not found (label " VD_POOL_LABEL ")", name);
  if (*err)
    (*err)->errnum = EINVAL;
}

int vd_pool_ctr_admit_locked(vd_daemon *d, json_t *rec, vs_error **err) {
  const char *name = vd_pool_ctr_name(rec);
  double cpus;
  int64_t mem;
  vd_pool_ctr_request(rec, &cpus, &mem);
  /* a container that names no pool is admitted against the default one, as a VM is */
  pthread_mutex_lock(&d->vms->lock);
  int r = vd_pool_admit_locked(d, name ? name : VD_DEFAULT_POOL, cpus, mem, err);
  pthread_mutex_unlock(&d->vms->lock);
  if (r < 0)
    ctr_pool_not_found(name ? name : VD_DEFAULT_POOL, err);
  return r;
}

int vd_pool_ctr_update_admit_locked(vd_daemon *d, json_t *rec, json_t *host_config,
                                    vs_error **err) {
  const char *name = vd_pool_ctr_name(rec);
  double old_cpus, new_cpus;
  int64_t old_mem, new_mem;
  vd_pool_ctr_request(rec, &old_cpus, &old_mem);
  _cleanup_json_ json_t *next = json_pack("{s:O}", "HostConfig", host_config);
  vd_pool_ctr_request(next, &new_cpus, &new_mem);
  /* the pool already counts the old request: only growth needs room */
  double more_cpus = new_cpus > old_cpus ? new_cpus - old_cpus : 0;
  int64_t more_mem = new_mem > old_mem ? new_mem - old_mem : 0;
  if (more_cpus <= 0 && more_mem <= 0)
    return 0;
  pthread_mutex_lock(&d->vms->lock);
  int r = vd_pool_admit_locked(d, name ? name : VD_DEFAULT_POOL, more_cpus, more_mem, err);
  pthread_mutex_unlock(&d->vms->lock);
  if (r < 0)
    ctr_pool_not_found(name ? name : VD_DEFAULT_POOL, err);
  return r;
}

/* ---------------------------------------------------------------- cgroups */

/* The pool's own limits: its capacity, whatever was admitted against it. */
static json_t *pool_resources(json_t *pool) {
  json_int_t cpus = json_integer_value(json_object_get(pool, "Cpus"));
  return json_pack("{s:{s:I, s:I, s:I}, s:{s:I}}", "cpu", "shares",
                   (json_int_t)(cpus * CPU_SHARES_PER_CPU), "quota",
                   (json_int_t)(cpus * CPU_PERIOD_US), "period", (json_int_t)CPU_PERIOD_US,
                   "memory", "limit", json_integer_value(json_object_get(pool, "Memory")));
}

/* A guest's weight and limits by its QoS class, as Kubernetes maps them: guaranteed gets its
 * CPUs as weight and quota and its memory as a hard limit; burstable the same weight and memory
 * limit but no CPU quota (it may use the pool's idle CPU); best-effort the minimum weight and no
 * limits of its own (the pool's bound it). */
static json_t *qos_resources(const char *qos, json_int_t cpus, json_int_t mem) {
  if (!strcmp(qos, "best-effort"))
    return json_pack("{s:{s:I}}", "cpu", "shares", (json_int_t)CPU_SHARES_MIN);
  json_t *r =
      json_pack("{s:{s:I}, s:{s:I}}", "cpu", "shares", (json_int_t)(cpus * CPU_SHARES_PER_CPU),
                "memory", "limit", (json_int_t)(mem + VMM_OVERHEAD));
  if (!strcmp(qos, "guaranteed")) {
    json_object_set_new(json_object_get(r, "cpu"), "quota", json_integer(cpus * CPU_PERIOD_US));
    json_object_set_new(json_object_get(r, "cpu"), "period", json_integer(CPU_PERIOD_US));
  }
  return r;
}

const char *vd_vm_qos(const vd_vm *vm) {
  const char *q = json_string_value(json_object_get(json_object_get(vm->rec, "Config"), "Qos"));
  return q ? q : "guaranteed";
}

bool vd_pool_cgroup_wanted(const vd_vm *vm) {
  json_t *cfg = json_object_get(vm->rec, "Config");
  const char *name = json_string_value(json_object_get(cfg, "Pool"));
  return name && (strcmp(name, VD_DEFAULT_POOL) != 0 || json_object_get(cfg, "Qos"));
}

json_t *vd_pool_cgroup_enter(vd_daemon *d, const vd_vm *vm, pid_t pid, vs_error **err) {
  json_t *cfg = json_object_get(vm->rec, "Config");
  const char *name = json_string_value(json_object_get(cfg, "Pool"));
  if (!vd_pool_cgroup_wanted(vm))
    return NULL;
  vd_vms *t = d->vms;
  pthread_mutex_lock(&t->lock);
  json_t *pool = json_incref(json_object_get(t->pools, name));
  pthread_mutex_unlock(&t->lock);
  if (!pool)
    return vs_error_set(err, ENOENT, "pool %s not found", name), NULL;
  _cleanup_free_ char *ppath = pool_cgroup_path(name);
  _cleanup_free_ char *gpath = vs_asprintf("%s/vm-%s", ppath, vm->id);
  _cleanup_json_ json_t *pres = pool_resources(pool);
  _cleanup_json_ json_t *gres =
      qos_resources(vd_vm_qos(vm), json_integer_value(json_object_get(cfg, "Cpus")),
                    json_integer_value(json_object_get(cfg, "Memory")));
  json_decref(pool);
  ctr_cgroup *pcg = NULL, *gcg = NULL;
  json_t *saved = NULL;
  /* the pool's directory is made (or its limits applied again) with each guest that enters */
  if (ctr_cgroup_create(name, ppath, pres, &pcg, err) == 0 &&
      ctr_cgroup_create(vm->id, gpath, gres, &gcg, err) == 0) {
    if (ctr_cgroup_add_pid(gcg, pid, err) == 0)
      saved = ctr_cgroup_to_json(gcg);
    else
      ctr_cgroup_destroy(gcg, NULL);
  }
  ctr_cgroup_free(pcg);
  ctr_cgroup_free(gcg);
  if (!saved)
    vs_error_wrap(err, "put VM %s in pool %s's cgroup", vm->name, name);
  return saved;
}

int vd_pool_ctr_spec(vd_daemon *d, json_t *rec, json_t *spec, vs_error **err) {
  const char *name = vd_pool_ctr_name(rec);
  if (!name)
    return 0;
  vd_vms *t = d->vms;
  pthread_mutex_lock(&t->lock);
  json_t *pool = json_incref(json_object_get(t->pools, name));
  pthread_mutex_unlock(&t->lock);
  if (!pool)
    return vs_error_set(err, ENOENT, "pool %s not found", name);
  _cleanup_free_ char *ppath = pool_cgroup_path(name);
  _cleanup_json_ json_t *pres = pool_resources(pool);
  json_decref(pool);
  /* the pool's directory with its limits; the runtime makes the container's under it (and
   * leaves the pool's when it removes the container's) */
  ctr_cgroup *pcg = NULL;
  if (ctr_cgroup_create(name, ppath, pres, &pcg, err) < 0)
    return vs_error_wrap(err, "the cgroup of pool %s", name);
  ctr_cgroup_free(pcg);
  json_t *linux_ = json_object_get(spec, "linux");
  json_object_set_new(
      linux_, "cgroupsPath",
      json_sprintf("%s/ctr-%s", ppath, json_string_value(json_object_get(rec, "Id"))));
  /* its weight by its QoS class, unless --cpu-shares chose one: best-effort the least, others
   * their CPUs' worth (Kubernetes' mapping of requests to shares) */
  if (!json_integer_value(json_object_get(json_object_get(rec, "HostConfig"), "CpuShares"))) {
    double cpus;
    int64_t mem;
    const char *qos = vd_pool_ctr_request(rec, &cpus, &mem);
    json_int_t shares = !strcmp(qos, "best-effort") || cpus <= 0
                            ? CPU_SHARES_MIN
                            : (json_int_t)(cpus * (double)CPU_SHARES_PER_CPU);
    json_t *res = json_object_get(linux_, "resources");
    if (!res)
      json_object_set_new(linux_, "resources", res = json_object());
    json_t *cpu = json_object_get(res, "cpu");
    if (!cpu)
      json_object_set_new(res, "cpu", cpu = json_object());
    json_object_set_new(cpu, "shares",
                        json_integer(shares < CPU_SHARES_MIN ? CPU_SHARES_MIN : shares));
  }
  return 0;
}

void vd_pool_cgroup_leave(json_t *saved) {
  ctr_cgroup *cg = NULL;
  vs_error *e = NULL;
  if (!saved)
    return;
  if (ctr_cgroup_from_json(saved, &cg, &e) < 0 || ctr_cgroup_destroy(cg, &e) < 0) {
    vs_log_warn("remove a VM's cgroup: %s", e->msg);
    vs_error_free(e);
  }
  ctr_cgroup_free(cg);
}

/* ---------------------------------------------------------------- the API */

static json_t *pool_json_locked(vd_daemon *d, json_t *pool) {
  const char *name = json_string_value(json_object_get(pool, "Name"));
  double max_cpus, max_mem;
  pool_limits(pool, &max_cpus, &max_mem);
  json_t *use = vd_pool_usage_locked(d, name, false);
  json_t *j = json_deep_copy(pool);
  _cleanup_free_ char *cgpath = pool_cgroup_path(name);
  json_object_set_new(j, "CgroupPath", json_string(cgpath));
  json_object_set_new(
      j, "Available",
      json_pack(
          "{s:f, s:I}", "Cpus", max_cpus - json_number_value(json_object_get(use, "Cpus")),
          "Memory",
          (json_int_t)(max_mem - (double)json_integer_value(json_object_get(use, "Counted")))));
  json_object_set_new(j, "Usage", use);
  return j;
}

void vd_h_pools_list(vd_call *c) {
  vd_vms *t = c->d->vms;
  json_t *a = json_array();
  const char *key;
  json_t *pool;
  pthread_mutex_lock(&c->d->lock);
  pthread_mutex_lock(&t->lock);
  json_object_foreach(t->pools, key, pool) json_array_append_new(a, pool_json_locked(c->d, pool));
  pthread_mutex_unlock(&t->lock);
  pthread_mutex_unlock(&c->d->lock);
  /* and the cluster's pools (cluster_pools.c), from the watch's copy: no etcd call here */
  json_t *cp = vd_cluster_pools_view(c->d, NULL);
  json_array_extend(a, cp);
  json_decref(cp);
  vd_call_json(c, 200, a);
}

void vd_h_pool_inspect(vd_call *c) {
  vd_vms *t = c->d->vms;
  pthread_mutex_lock(&c->d->lock);
  pthread_mutex_lock(&t->lock);
  json_t *pool = json_object_get(t->pools, c->arg);
  json_t *j = pool ? pool_json_locked(c->d, pool) : NULL;
  pthread_mutex_unlock(&t->lock);
  pthread_mutex_unlock(&c->d->lock);
  if (!j) {
    json_t *cp = vd_cluster_pools_view(c->d, c->arg);
    j = json_array_size(cp) ? json_incref(json_array_get(cp, 0)) : NULL;
    json_decref(cp);
  }
  if (!j)
    vd_call_error(c, 404, "No such pool: %s", c->arg);
  else
    vd_call_json(c, 200, j);
}

/* An overcommit ratio: a number from 1 to 100 (default 1: no overcommit). */
static int ratio(json_t *body, const char *field, double *out, vs_error **err) {
  json_t *v = json_object_get(body, field);
  *out = 1.0;
  if (!v || json_is_null(v))
    return 0;
  if (!json_is_number(v) || json_number_value(v) < 1.0 || json_number_value(v) > 100.0 ||
      isnan(json_number_value(v)))
    return vs_error_set(err, EINVAL, "%s: expected a number from 1 to 100 (1: no overcommit)",
                        field);
  *out = json_number_value(v);
  return 0;
}

int vd_pool_parse(json_t *body, json_t *pool, vs_error **err) {
  static const char *const known[] = {"Name", "Cpus", "Memory", "CpuOvercommit",
                                      "MemoryOvercommit"};
  if (vd_body_known_fields(body, known, ARRAY_SIZE(known), "a pool", err) < 0)
    return -1;
  const char *name = NULL;
  int64_t cpus = 0;
  uint64_t mem = 0;
  double rc, rm;
  if (vs_json_get_string(body, "Name", true, &name, err) < 0)
    return -1;
  if (!vd_vm_name_valid(name))
    return vs_error_set(err, EINVAL,
                        "pool name \"%s\": use 1 to 64 letters, digits, '_', '.' or '-', "
                        "starting with a letter or digit",
                        name);
  if (vs_json_get_int(body, "Cpus", true, &cpus, err) < 0)
    return -1;
  if (cpus < 1 || cpus > 1024)
    return vs_error_set(err, EINVAL, "Cpus %lld: a pool has 1 to 1024 CPUs", (long long)cpus);
  if (vd_body_size(body, "Memory", 0, &mem, err) < 0)
    return -1;
  if (mem < (16ULL << 20))
    return vs_error_set(err, EINVAL, "Memory: a pool needs at least 16 MiB");
  if (mem > POOL_MEMORY_MAX) /* also keeps it a positive JSON integer */
    return vs_error_set(err, EINVAL, "Memory: a pool has at most 1 PiB");
  if (ratio(body, "CpuOvercommit", &rc, err) < 0 || ratio(body, "MemoryOvercommit", &rm, err) < 0)
    return -1;
  json_object_set_new(pool, "Name", json_string(name));
  json_object_set_new(pool, "Cpus", json_integer(cpus));
  json_object_set_new(pool, "Memory", json_integer((json_int_t)mem));
  json_object_set_new(pool, "CpuOvercommit", json_real(rc));
  json_object_set_new(pool, "MemoryOvercommit", json_real(rm));
  return 0;
}

void vd_h_pool_create(vd_call *c) {
  _cleanup_json_ json_t *body = vd_call_body_object(c);
  if (!body)
    return;
  if (c->d->cluster.enabled && vd_cluster_pool_wanted(body)) {
    vd_cluster_pool_create(c, body);
    return;
  }
  vs_error *e = NULL;
  json_t *pool = json_object();
  if (vd_pool_parse(body, pool, &e) < 0) {
    json_decref(pool);
    vd_call_error(c, 400, "%s", e->msg);
    vs_error_free(e);
    return;
  }
  char *now = vd_now();
  json_object_set_new(pool, "Created", json_string(now));
  free(now);
  const char *name = json_string_value(json_object_get(pool, "Name"));
  vd_vms *t = c->d->vms;
  pthread_mutex_lock(&t->lock);
  _cleanup_free_ char *path = pool_file(t, name);
  int status = 201;
  if (json_object_get(t->pools, name)) {
    status = 409;
    vs_error_set(&e, EEXIST, "the name %s is already in use by a pool", name);
  } else if (vs_json_write_file(path, pool, 0600, &e) < 0) {
    status = 500;
  } else {
    json_object_set(t->pools, name, pool);
  }
  pthread_mutex_unlock(&t->lock);
  if (status == 201)
    vd_call_json(c, 201, json_pack("{s:s}", "Name", name));
  else
    vd_call_error(c, status, "%s", e->msg);
  vs_error_free(e);
  json_decref(pool);
}

/* POST /vessel/v1/pools/{name}/update: new capacity or ratios, refused when what the pool's
 * guests request would no longer fit; the pool's cgroup gets the new limits at once. */
void vd_h_pool_update(vd_call *c) {
  _cleanup_json_ json_t *body = vd_call_body_object(c);
  if (!body)
    return;
  if (vd_cluster_pool_update(c, body))
    return;
  vd_vms *t = c->d->vms;
  vs_error *e = NULL;
  int status = 200;
  json_t *pool = json_object();
  pthread_mutex_lock(&c->d->lock);
  pthread_mutex_lock(&t->lock);
  json_t *old = json_object_get(t->pools, c->arg);
  _cleanup_json_ json_t *merged = old ? json_deep_copy(old) : NULL;
  json_object_del(merged, "Created");
  if (!old) {
    status = 404;
    vs_error_set(&e, 0, "No such pool: %s", c->arg);
  } else if (json_object_get(body, "Name")) {
    status = 400;
    vs_error_set(&e, 0, "Name: a pool cannot be renamed");
  } else if (json_object_update(merged, body), vd_pool_parse(merged, pool, &e) < 0) {
    status = 400;
  } else {
    json_object_set(pool, "Created", json_object_get(old, "Created"));
    json_t *use = vd_pool_usage_locked(c->d, c->arg, false);
    double max_cpus, max_mem;
    pool_limits(pool, &max_cpus, &max_mem);
    double cpus = json_number_value(json_object_get(use, "Cpus"));
    int64_t mem = json_integer_value(json_object_get(use, "Memory"));
    int64_t counted = json_integer_value(json_object_get(use, "Counted"));
    /* memory as admission counts it: what the guests hold, at least what cannot be taken back */
    if (cpus > max_cpus + 1e-9 || (double)counted > max_mem + 0.5) {
      status = 409;
      vs_error_set(&e, 0,
                   "pool %s: its guests request %g CPUs and %lld MiB and count as %lld MiB, "
                   "more than the update leaves (%.2f CPUs, %lld MiB): remove guests first",
                   c->arg, cpus, (long long)(mem >> 20), (long long)(counted >> 20), max_cpus,
                   (long long)max_mem >> 20);
    }
    json_decref(use);
    _cleanup_free_ char *path = pool_file(t, c->arg);
    if (status == 200 && vs_json_write_file(path, pool, 0600, &e) < 0)
      status = 500;
    if (status == 200)
      json_object_set(t->pools, c->arg, pool);
  }
  pthread_mutex_unlock(&t->lock);
  pthread_mutex_unlock(&c->d->lock);
  if (status == 200) {
    /* a pool whose cgroup exists (it has or had guests) gets its new limits now */
    _cleanup_free_ char *ppath = pool_cgroup_path(c->arg);
    _cleanup_json_ json_t *pres = pool_resources(pool);
    ctr_cgroup *cg = NULL;
    if (ctr_cgroup_plan(c->arg, ppath, &cg, &e) == 0) {
      ctr_cgroup_hierarchy h;
      bool exists = ctr_cgroup_hierarchy_get(cg, 0, &h) && access(h.host_path, F_OK) == 0;
      if (exists && ctr_cgroup_update(cg, pres, &e) < 0)
        status = 500;
    } else {
      status = 500;
    }
    ctr_cgroup_free(cg);
  }
  if (status == 200) {
    pthread_mutex_lock(&c->d->lock);
    pthread_mutex_lock(&t->lock);
    json_t *j = pool_json_locked(c->d, pool);
    pthread_mutex_unlock(&t->lock);
    pthread_mutex_unlock(&c->d->lock);
    vd_call_json(c, 200, j);
  } else
    vd_call_error(c, status, "%s", e ? e->msg : "update failed");
  vs_error_free(e);
  json_decref(pool);
}

void vd_h_pool_delete(vd_call *c) {
  vd_vms *t = c->d->vms;
  if (vd_cluster_pool_delete(c))
    return;
  pthread_mutex_lock(&c->d->lock);
  pthread_mutex_lock(&t->lock);
  json_t *pool = json_object_get(t->pools, c->arg);
  if (pool && !strcmp(c->arg, VD_DEFAULT_POOL)) {
    pthread_mutex_unlock(&t->lock);
    pthread_mutex_unlock(&c->d->lock);
    vd_call_error(c, 409,
                  "the default pool cannot be removed (it holds the guests that name no "
                  "pool)");
    return;
  }
  json_t *use = pool ? vd_pool_usage_locked(c->d, c->arg, false) : NULL;
  size_t n = json_array_size(json_object_get(use, "Guests"));
  _cleanup_free_ char *first = n ? vs_strdup(json_string_value(json_object_get(
                                       json_array_get(json_object_get(use, "Guests"), 0), "Name")))
                                 : NULL;
  json_decref(use);
  _cleanup_free_ char *path = pool ? pool_file(t, c->arg) : NULL;
  if (pool && !n) {
    unlink(path);
    json_object_del(t->pools, c->arg);
  }
  pthread_mutex_unlock(&t->lock);
  pthread_mutex_unlock(&c->d->lock);
  if (!pool) {
    vd_call_error(c, 404, "No such pool: %s", c->arg);
    return;
  }
  if (n) {
    vd_call_error(c, 409, "pool %s holds %zu guests (%s first): remove them first", c->arg, n,
                  first);
    return;
  }
  /* its cgroup, empty once its last guest left, and /vessel-pools when no other pool uses it */
  _cleanup_free_ char *cgpath = pool_cgroup_path(c->arg);
  ctr_cgroup *cg = NULL;
  vs_error *e = NULL;
  if (ctr_cgroup_plan(c->arg, cgpath, &cg, &e) == 0) {
    ctr_cgroup_hierarchy h;
    for (size_t i = 0; ctr_cgroup_hierarchy_get(cg, i, &h); i++) {
      _cleanup_free_ char *parent = vs_strdup(h.host_path);
      char *slash = strrchr(parent, '/');
      if (rmdir(h.host_path) < 0 && errno != ENOENT)
        vs_log_warn("pool %s: remove cgroup %s: %s", c->arg, h.host_path, strerror(errno));
      if (slash) {
        *slash = 0;
        rmdir(parent); /* busy while other pools have theirs */
      }
    }
  }
  vs_error_free(e);
  ctr_cgroup_free(cg);
  vd_call_status(c, 204);
}
