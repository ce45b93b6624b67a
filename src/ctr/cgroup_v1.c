/* cgroup v1 controllers: memory, cpu, cpuset, blkio, devices, freezer; plus pids and hugetlb,
 * whose files differ little between the versions. */
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

/* v1 takes -1 for "unlimited" in memory files. */
static int write_mem_value(cg_dir *d, const char *file, int64_t v, vs_error **err) {
  return cg_writef(d->path, file, err, "%lld", (long long)(v < 0 ? -1 : v));
}

int cg_v1_memory(cg_dir *d, json_t *mem, vs_error **err) {
  int64_t limit = 0, swap = 0, v;
  bool has_limit = get_int(mem, "limit", &limit), has_swap = get_int(mem, "swap", &swap);
  bool memsw = cg_file_exists(d->path, "memory.memsw.limit_in_bytes");
  if (has_swap && !memsw && swap != 0)
    return vs_error_set(err, 0,
                        "linux.resources.memory.swap: this kernel has no swap accounting "
                        "(memory.memsw.limit_in_bytes)");
  has_limit = has_limit && limit != 0;
  has_swap = has_swap && swap != 0 && memsw;
  /* A new limit without a swap value keeps the swap allowance the container had (memsw minus
   * limit), so `update --memory` works on a container created with a memory+swap limit. */
  uint64_t cur_limit = 0, cur_memsw = 0;
  if (memsw && (has_limit || has_swap) &&
      (cg_read_u64(d->path, "memory.limit_in_bytes", &cur_limit, err) < 0 ||
       cg_read_u64(d->path, "memory.memsw.limit_in_bytes", &cur_memsw, err) < 0))
    return -1;
  const uint64_t unlimited = 1ULL << 62;
  if (has_limit && !has_swap && memsw && cur_memsw < unlimited) {
    has_swap = true;
    swap = limit < 0
               ? -1
               : limit + (int64_t)(cur_memsw - (cur_memsw > cur_limit ? cur_limit : cur_memsw));
  }
  /* memsw must stay >= limit at every step: raise memsw first when it grows. */
  bool swap_first = has_swap && (swap < 0 || (uint64_t)swap > cur_memsw);
  if (swap_first && write_mem_value(d, "memory.memsw.limit_in_bytes", swap, err) < 0)
    return vs_error_wrap(err, "linux.resources.memory.swap");
  if (has_limit && write_mem_value(d, "memory.limit_in_bytes", limit, err) < 0)
    return vs_error_wrap(err, "linux.resources.memory.limit");
  if (has_swap && !swap_first && write_mem_value(d, "memory.memsw.limit_in_bytes", swap, err) < 0)
    return vs_error_wrap(err, "linux.resources.memory.swap");
  if (get_int(mem, "reservation", &v) && v != 0 &&
      write_mem_value(d, "memory.soft_limit_in_bytes", v, err) < 0)
    return vs_error_wrap(err, "linux.resources.memory.reservation");
  if (get_int(mem, "swappiness", &v) &&
      cg_writef(d->path, "memory.swappiness", err, "%lld", (long long)v) < 0)
    return vs_error_wrap(err, "linux.resources.memory.swappiness");
  if (json_is_true(json_object_get(mem, "disableOOMKiller")) &&
      cg_write(d->path, "memory.oom_control", "1", err) < 0)
    return vs_error_wrap(err, "linux.resources.memory.disableOOMKiller");
  if (json_is_integer(json_object_get(mem, "kernel")) ||
      json_is_integer(json_object_get(mem, "kernelTCP")))
    vs_log_debug("linux.resources.memory.kernel/kernelTCP: deprecated by the kernel; ignored");
  return 0;
}

int cg_v1_cpu(cg_dir *d, json_t *cpu, vs_error **err) {
  int64_t v;
  if (get_int(cpu, "shares", &v) && v != 0 &&
      cg_writef(d->path, "cpu.shares", err, "%lld", (long long)v) < 0)
    return vs_error_wrap(err, "linux.resources.cpu.shares");
  /* The period goes first: the kernel checks the quota against it. */
  if (get_int(cpu, "period", &v) && v != 0 &&
      cg_writef(d->path, "cpu.cfs_period_us", err, "%lld", (long long)v) < 0)
    return vs_error_wrap(err, "linux.resources.cpu.period");
  if (get_int(cpu, "quota", &v) && v != 0 &&
      cg_writef(d->path, "cpu.cfs_quota_us", err, "%lld", (long long)(v < 0 ? -1 : v)) < 0)
    return vs_error_wrap(err, "linux.resources.cpu.quota");
  if (get_int(cpu, "burst", &v) && cg_file_exists(d->path, "cpu.cfs_burst_us") &&
      cg_writef(d->path, "cpu.cfs_burst_us", err, "%lld", (long long)v) < 0)
    return vs_error_wrap(err, "linux.resources.cpu.burst");
  if (get_int(cpu, "realtimePeriod", &v) && v != 0) {
    if (!cg_file_exists(d->path, "cpu.rt_period_us"))
      return vs_error_set(err, 0,
                          "linux.resources.cpu.realtimePeriod: the kernel has no "
                          "realtime group scheduling (cpu.rt_period_us)");
    if (cg_writef(d->path, "cpu.rt_period_us", err, "%lld", (long long)v) < 0)
      return vs_error_wrap(err, "linux.resources.cpu.realtimePeriod");
  }
  if (get_int(cpu, "realtimeRuntime", &v) && v != 0) {
    if (!cg_file_exists(d->path, "cpu.rt_runtime_us"))
      return vs_error_set(err, 0,
                          "linux.resources.cpu.realtimeRuntime: the kernel has no "
                          "realtime group scheduling (cpu.rt_runtime_us)");
    if (cg_writef(d->path, "cpu.rt_runtime_us", err, "%lld", (long long)v) < 0)
      return vs_error_wrap(err, "linux.resources.cpu.realtimeRuntime");
  }
  if (get_int(cpu, "idle", &v) && cg_file_exists(d->path, "cpu.idle") &&
      cg_writef(d->path, "cpu.idle", err, "%lld", (long long)v) < 0)
    return vs_error_wrap(err, "linux.resources.cpu.idle");
  return 0;
}

int cg_v1_cpuset(cg_dir *d, json_t *cpu, bool init_from_parent, vs_error **err) {
  (void)init_from_parent;
  const char *s;
  /* mems first: a cpuset needs both before it accepts tasks, and the order does not matter
   * otherwise. */
  if ((s = json_string_value(json_object_get(cpu, "mems"))) && *s &&
      cg_write(d->path, "cpuset.mems", s, err) < 0)
    return vs_error_wrap(err, "linux.resources.cpu.mems");
  if ((s = json_string_value(json_object_get(cpu, "cpus"))) && *s &&
      cg_write(d->path, "cpuset.cpus", s, err) < 0)
    return vs_error_wrap(err, "linux.resources.cpu.cpus");
  return 0;
}

int cg_pids_limit(cg_dir *d, json_t *pids, vs_error **err) {
  int64_t v;
  if (!get_int(pids, "limit", &v) || v == 0)
    return 0;
  int rc = v < 0 ? cg_write(d->path, "pids.max", "max", err)
                 : cg_writef(d->path, "pids.max", err, "%lld", (long long)v);
  return rc < 0 ? vs_error_wrap(err, "linux.resources.pids.limit") : 0;
}

static int write_device_entries(cg_dir *d, json_t *bio, const char *key, const char *file,
                                const char *field, vs_error **err) {
  json_t *arr = json_object_get(bio, key), *e;
  size_t i;
  if (!json_is_array(arr))
    return 0;
  json_array_foreach(arr, i, e) {
    int64_t maj = 0, min = 0, v = 0;
    get_int(e, "major", &maj);
    get_int(e, "minor", &min);
    if (!get_int(e, field, &v))
      continue;
    if (!cg_file_exists(d->path, file))
      return vs_error_set(err, 0, "linux.resources.blockIO.%s[%zu]: this host has no %s", key, i,
                          file);
    if (cg_writef(d->path, file, err, "%lld:%lld %lld", (long long)maj, (long long)min,
                  (long long)v) < 0)
      return vs_error_wrap(err, "linux.resources.blockIO.%s[%zu]", key, i);
  }
  return 0;
}

/* The weight file in use: CFQ's blkio.weight or BFQ's blkio.bfq.weight; NULL if neither. */
static const char *v1_weight_file(cg_dir *d) {
  if (cg_file_exists(d->path, "blkio.weight"))
    return "blkio.weight";
  if (cg_file_exists(d->path, "blkio.bfq.weight"))
    return "blkio.bfq.weight";
  return NULL;
}

int cg_v1_blkio(cg_dir *d, json_t *bio, vs_error **err) {
  int64_t v;
  const char *wfile = v1_weight_file(d);
  if (get_int(bio, "weight", &v) && v != 0) {
    if (!wfile)
      return vs_error_set(err, 0,
                          "linux.resources.blockIO.weight: the blkio controller on this host "
                          "has no weight file (blkio.weight / blkio.bfq.weight)");
    if (cg_writef(d->path, wfile, err, "%lld", (long long)v) < 0)
      return vs_error_wrap(err, "linux.resources.blockIO.weight");
  }
  if (get_int(bio, "leafWeight", &v) && v != 0) {
    if (!cg_file_exists(d->path, "blkio.leaf_weight"))
      return vs_error_set(err, 0,
                          "linux.resources.blockIO.leafWeight: this host has no "
                          "blkio.leaf_weight");
    if (cg_writef(d->path, "blkio.leaf_weight", err, "%lld", (long long)v) < 0)
      return vs_error_wrap(err, "linux.resources.blockIO.leafWeight");
  }
  if (json_array_size(json_object_get(bio, "weightDevice")) > 0) {
    if (!wfile)
      return vs_error_set(err, 0,
                          "linux.resources.blockIO.weightDevice: the blkio controller on this "
                          "host has no weight files");
    const char *devfile = strcmp(wfile, "blkio.weight") == 0 ? "blkio.weight_device" : wfile;
    if (write_device_entries(d, bio, "weightDevice", devfile, "weight", err) < 0 ||
        write_device_entries(d, bio, "weightDevice", "blkio.leaf_weight_device", "leafWeight",
                             err) < 0)
      return -1;
  }
  return write_device_entries(d, bio, "throttleReadBpsDevice", "blkio.throttle.read_bps_device",
                              "rate", err) < 0 ||
                 write_device_entries(d, bio, "throttleWriteBpsDevice",
                                      "blkio.throttle.write_bps_device", "rate", err) < 0 ||
                 write_device_entries(d, bio, "throttleReadIOPSDevice",
                                      "blkio.throttle.read_iops_device", "rate", err) < 0 ||
                 write_device_entries(d, bio, "throttleWriteIOPSDevice",
                                      "blkio.throttle.write_iops_device", "rate", err) < 0
             ? -1
             : 0;
}

int cg_hugetlb(cg_dir *d, json_t *limits, vs_error **err) {
  size_t i;
  json_t *e;
  json_array_foreach(limits, i, e) {
    const char *size = json_string_value(json_object_get(e, "pageSize"));
    int64_t limit = 0;
    get_int(e, "limit", &limit);
    _cleanup_free_ char *file =
        vs_asprintf(d->unified ? "hugetlb.%s.max" : "hugetlb.%s.limit_in_bytes", size);
    if (!cg_file_exists(d->path, file))
      return vs_error_set(err, 0,
                          "linux.resources.hugepageLimits[%zu].pageSize: huge page size %s is "
                          "not supported on this host (no %s)",
                          i, size, file);
    if (cg_writef(d->path, file, err, "%lld", (long long)limit) < 0)
      return vs_error_wrap(err, "linux.resources.hugepageLimits[%zu]", i);
  }
  return 0;
}

int cg_v1_devices(cg_dir *d, json_t *rules, vs_error **err) {
  size_t i;
  json_t *r;
  json_array_foreach(rules, i, r) {
    const char *type = json_string_value(json_object_get(r, "type"));
    const char *access = json_string_value(json_object_get(r, "access"));
    bool allow = json_is_true(json_object_get(r, "allow"));
    int64_t maj = -1, min = -1;
    get_int(r, "major", &maj);
    get_int(r, "minor", &min);
    if (!type)
      type = "a";
    if (!access || !*access)
      access = "rwm";
    char rule[64], majs[24] = "*", mins[24] = "*";
    if (strcmp(type, "a") == 0) {
      snprintf(rule, sizeof(rule), "a");
    } else {
      if (maj >= 0)
        snprintf(majs, sizeof(majs), "%lld", (long long)maj);
      if (min >= 0)
        snprintf(mins, sizeof(mins), "%lld", (long long)min);
      snprintf(rule, sizeof(rule), "%s %s:%s %s", type, majs, mins, access);
    }
    if (cg_write(d->path, allow ? "devices.allow" : "devices.deny", rule, err) < 0)
      return vs_error_wrap(err, "linux.resources.devices[%zu]", i);
  }
  return 0;
}

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

/* Writing FROZEN starts freezing; the state reads FREEZING until every task is stopped. A task
 * stuck in the kernel can keep it there, so re-kick the freeze (thaw + freeze) now and then. */
int cg_v1_freeze(cg_dir *d, bool freeze, vs_error **err) {
  const char *want = freeze ? "FROZEN" : "THAWED";
  for (int attempt = 0; attempt < 1000; attempt++) {
    if (attempt % 50 == 49 && freeze && cg_write(d->path, "freezer.state", "THAWED", err) < 0)
      return -1;
    if ((attempt == 0 || attempt % 50 == 49) && cg_write(d->path, "freezer.state", want, err) < 0)
      return vs_error_wrap(err, freeze ? "freeze" : "thaw");
    _cleanup_free_ char *state = NULL;
    if (cg_read(d->path, "freezer.state", &state, err) < 0)
      return -1;
    if (strncmp(state, want, strlen(want)) == 0)
      return 0;
    sleep_ms(attempt < 10 ? 1 : 10);
  }
  if (freeze)
    cg_write(d->path, "freezer.state", "THAWED", NULL);
  return vs_error_set(err, ETIMEDOUT, "%s: the cgroup did not reach %s", d->path, want);
}
