/* cgroup2 controllers: memory, cpu, cpuset, io, the freezer, and enabling controllers down
 * the tree. */
#include <errno.h>
#include <string.h>
#include <time.h>

#include "ctr/cgroup_internal.h"

static bool get_int(json_t *obj, const char *key, int64_t *out) {
  json_t *v = json_object_get(obj, key);
  if (!json_is_integer(v))
    return false;
  *out = json_integer_value(v);
  return true;
}

static int write_max(cg_dir *d, const char *file, int64_t v, vs_error **err) {
  return v < 0 ? cg_write(d->path, file, "max", err)
               : cg_writef(d->path, file, err, "%lld", (long long)v);
}

int cg_v2_enable(cg_dir *d, const char *controller, vs_error **err) {
  size_t ml = strlen(d->mount);
  _cleanup_free_ char *walk = vs_strdup(d->mount);
  const char *rest = d->path + ml; /* "/a/b/container" */
  for (;;) {
    _cleanup_free_ char *ctl = NULL;
    if (cg_read(walk, "cgroup.subtree_control", &ctl, err) < 0)
      return -1;
    for (char *p = ctl; *p; p++)
      if (*p == ' ' || *p == '\n')
        *p = ',';
    if (!cg_list_has(ctl, controller) &&
        cg_writef(walk, "cgroup.subtree_control", err, "+%s", controller) < 0)
      return vs_error_wrap(err, "enable the %s controller", controller);
    const char *slash = strchr(rest + 1, '/');
    if (!slash)
      return 0; /* `walk` is the container's parent */
    free(walk);
    walk = vs_asprintf("%.*s", (int)(slash - d->path), d->path);
    rest = slash;
  }
}

int cg_v2_memory(cg_dir *d, json_t *mem, vs_error **err) {
  int64_t limit = 0, swap = 0, v;
  bool has_limit = get_int(mem, "limit", &limit) && limit != 0;
  bool has_swap = get_int(mem, "swap", &swap) && swap != 0;
  if (has_swap) {
    if (!cg_file_exists(d->path, "memory.swap.max"))
      return vs_error_set(err, 0,
                          "linux.resources.memory.swap: no swap accounting on this "
                          "kernel (memory.swap.max)");
    if (swap > 0 && !(has_limit && limit > 0))
      return vs_error_set(err, 0,
                          "linux.resources.memory.swap: needs memory.limit as well on "
                          "cgroup v2 (swap is memory plus swap)");
  }
  /* Lower the swap allowance before the limit and raise it after, so memory+swap never
   * exceeds what was asked at any step; order only matters for the sum, so do limit first. */
  if (has_limit && write_max(d, "memory.max", limit, err) < 0)
    return vs_error_wrap(err, "linux.resources.memory.limit");
  if (has_swap && write_max(d, "memory.swap.max", swap < 0 ? -1 : swap - limit, err) < 0)
    return vs_error_wrap(err, "linux.resources.memory.swap");
  if (get_int(mem, "reservation", &v) && v != 0 && write_max(d, "memory.low", v, err) < 0)
    return vs_error_wrap(err, "linux.resources.memory.reservation");
  if (json_is_integer(json_object_get(mem, "swappiness")))
    vs_log_warn("linux.resources.memory.swappiness: not supported by cgroup v2; ignored");
  if (json_is_true(json_object_get(mem, "disableOOMKiller")))
    vs_log_warn("linux.resources.memory.disableOOMKiller: not supported by cgroup v2; ignored");
  return 0;
}

uint64_t cg_shares_to_weight(uint64_t shares) {
  if (shares == 0)
    return 0;
  if (shares < 2)
    shares = 2;
  if (shares > 262144)
    shares = 262144;
  return 1 + ((shares - 2) * 9999) / 262142;
}

int cg_v2_cpu(cg_dir *d, json_t *cpu, vs_error **err) {
  int64_t v, quota = 0, period = 0;
  if (get_int(cpu, "shares", &v) && v != 0 &&
      cg_writef(d->path, "cpu.weight", err, "%llu",
                (unsigned long long)cg_shares_to_weight((uint64_t)v)) < 0)
    return vs_error_wrap(err, "linux.resources.cpu.shares");
  bool has_quota = get_int(cpu, "quota", &quota) && quota != 0;
  bool has_period = get_int(cpu, "period", &period) && period != 0;
  if (has_quota || has_period) {
    if (!has_period) {
      /* cpu.max is "QUOTA PERIOD": keep the current period. */
      _cleanup_free_ char *cur = NULL;
      if (cg_read(d->path, "cpu.max", &cur, err) < 0)
        return -1;
      const char *sp = strchr(cur, ' ');
      period = sp ? strtoll(sp + 1, NULL, 10) : 100000;
    }
    int rc =
        (has_quota && quota > 0)
            ? cg_writef(d->path, "cpu.max", err, "%lld %lld", (long long)quota, (long long)period)
            : cg_writef(d->path, "cpu.max", err, "max %lld", (long long)period);
    if (rc < 0)
      return vs_error_wrap(err, "linux.resources.cpu.quota/period");
  }
  if (get_int(cpu, "burst", &v) && cg_file_exists(d->path, "cpu.max.burst") &&
      cg_writef(d->path, "cpu.max.burst", err, "%lld", (long long)v) < 0)
    return vs_error_wrap(err, "linux.resources.cpu.burst");
  if ((get_int(cpu, "realtimeRuntime", &v) && v != 0) ||
      (get_int(cpu, "realtimePeriod", &v) && v != 0))
    return vs_error_set(err, 0,
                        "linux.resources.cpu.realtimeRuntime/realtimePeriod: not "
                        "supported by cgroup v2");
  if (get_int(cpu, "idle", &v) && cg_file_exists(d->path, "cpu.idle") &&
      cg_writef(d->path, "cpu.idle", err, "%lld", (long long)v) < 0)
    return vs_error_wrap(err, "linux.resources.cpu.idle");
  return 0;
}

int cg_v2_cpuset(cg_dir *d, json_t *cpu, vs_error **err) {
  const char *s;
  if ((s = json_string_value(json_object_get(cpu, "cpus"))) && *s &&
      cg_write(d->path, "cpuset.cpus", s, err) < 0)
    return vs_error_wrap(err, "linux.resources.cpu.cpus");
  if ((s = json_string_value(json_object_get(cpu, "mems"))) && *s &&
      cg_write(d->path, "cpuset.mems", s, err) < 0)
    return vs_error_wrap(err, "linux.resources.cpu.mems");
  return 0;
}

static int write_io_max(cg_dir *d, json_t *bio, const char *key, const char *name, vs_error **err) {
  json_t *arr = json_object_get(bio, key), *e;
  size_t i;
  if (!json_is_array(arr))
    return 0;
  json_array_foreach(arr, i, e) {
    int64_t maj = 0, min = 0, rate = 0;
    get_int(e, "major", &maj);
    get_int(e, "minor", &min);
    get_int(e, "rate", &rate);
    if (cg_writef(d->path, "io.max", err, "%lld:%lld %s=%lld", (long long)maj, (long long)min, name,
                  (long long)rate) < 0)
      return vs_error_wrap(err, "linux.resources.blockIO.%s[%zu]", key, i);
  }
  return 0;
}

int cg_v2_io(cg_dir *d, json_t *bio, vs_error **err) {
  int64_t v;
  const char *wfile = cg_file_exists(d->path, "io.bfq.weight") ? "io.bfq.weight"
                      : cg_file_exists(d->path, "io.weight")   ? "io.weight"
                                                               : NULL;
  if (get_int(bio, "weight", &v) && v != 0) {
    if (!wfile)
      return vs_error_set(err, 0,
                          "linux.resources.blockIO.weight: the io controller on this "
                          "host has no weight file (io.weight / io.bfq.weight)");
    /* blkio weights are 10..1000, io.weight 1..10000: the same conversion as runc. */
    uint64_t w = 1 + ((uint64_t)v - 10) * 9999 / 990;
    if (cg_writef(d->path, wfile, err, "default %llu", (unsigned long long)w) < 0)
      return vs_error_wrap(err, "linux.resources.blockIO.weight");
  }
  json_t *arr = json_object_get(bio, "weightDevice"), *e;
  size_t i;
  json_array_foreach(arr, i, e) {
    int64_t maj = 0, min = 0, w = 0;
    get_int(e, "major", &maj);
    get_int(e, "minor", &min);
    if (!get_int(e, "weight", &w) || w == 0)
      continue;
    if (!wfile)
      return vs_error_set(err, 0,
                          "linux.resources.blockIO.weightDevice[%zu]: no io weight "
                          "file on this host",
                          i);
    if (cg_writef(d->path, wfile, err, "%lld:%lld %lld", (long long)maj, (long long)min,
                  (long long)w) < 0)
      return vs_error_wrap(err, "linux.resources.blockIO.weightDevice[%zu]", i);
  }
  return write_io_max(d, bio, "throttleReadBpsDevice", "rbps", err) < 0 ||
                 write_io_max(d, bio, "throttleWriteBpsDevice", "wbps", err) < 0 ||
                 write_io_max(d, bio, "throttleReadIOPSDevice", "riops", err) < 0 ||
                 write_io_max(d, bio, "throttleWriteIOPSDevice", "wiops", err) < 0
             ? -1
             : 0;
}

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

int cg_v2_freeze(cg_dir *d, bool freeze, vs_error **err) {
  if (cg_write(d->path, "cgroup.freeze", freeze ? "1" : "0", err) < 0)
    return vs_error_wrap(err, freeze ? "freeze" : "thaw");
  for (int attempt = 0; attempt < 500; attempt++) {
    _cleanup_free_ char *events = NULL;
    if (cg_read(d->path, "cgroup.events", &events, err) < 0)
      return -1;
    uint64_t frozen = 0;
    if (cg_keyed_get(events, "frozen", &frozen) && (frozen == 1) == freeze)
      return 0;
    sleep_ms(attempt < 10 ? 1 : 10);
  }
  if (freeze)
    cg_write(d->path, "cgroup.freeze", "0", NULL);
  return vs_error_set(err, ETIMEDOUT, "%s: the cgroup did not become %s", d->path,
                      freeze ? "frozen" : "thawed");
}
