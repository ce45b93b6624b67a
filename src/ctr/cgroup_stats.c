/* Statistics for `events --stats`, in the shape of runc's types.Stats. */
#include <dirent.h>
#include <string.h>
#include <unistd.h>

#include "ctr/cgroup_internal.h"

static uint64_t read_u64_or_zero(const char *dir, const char *file) {
  uint64_t v = 0;
  if (cg_read_u64(dir, file, &v, NULL) < 0)
    return 0;
  return v == UINT64_MAX ? 0 : v;
}

/* A flat keyed file ("key value" lines) as a JSON object. */
static json_t *keyed_to_json(const char *text) {
  json_t *o = json_object();
  _cleanup_free_ char *copy = vs_strdup(text);
  char *save = NULL;
  for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
    char *sp = strchr(line, ' ');
    if (!sp)
      continue;
    *sp = 0;
    char *end;
    unsigned long long v = strtoull(sp + 1, &end, 10);
    if (end != sp + 1)
      json_object_set_new(o, line, json_integer((json_int_t)v));
  }
  return o;
}

/* v * unit as a JSON integer (nanoseconds from ticks or microseconds). */
static json_t *scaled(uint64_t v, uint64_t unit) {
  uint64_t product = v * unit;
  return json_integer((json_int_t)product);
}

/* "8:0" at *p: major and minor numbers; advances *p past them. */
static bool parse_devnum(const char **p, unsigned long *maj, unsigned long *min) {
  char *end;
  if (**p < '0' || **p > '9')
    return false;
  *maj = strtoul(*p, &end, 10);
  if (*end != ':' || end[1] < '0' || end[1] > '9')
    return false;
  *min = strtoul(end + 1, &end, 10);
  *p = end;
  return true;
}

static json_t *mem_entry(uint64_t usage, uint64_t max, uint64_t failcnt, uint64_t limit) {
  return json_pack("{s:I, s:I, s:I, s:I}", "usage", (json_int_t)usage, "max", (json_int_t)max,
                   "failcnt", (json_int_t)failcnt, "limit", (json_int_t)limit);
}

static json_t *v1_mem_entry(const char *dir, const char *prefix) {
  _cleanup_free_ char *u = vs_asprintf("%s.usage_in_bytes", prefix);
  _cleanup_free_ char *m = vs_asprintf("%s.max_usage_in_bytes", prefix);
  _cleanup_free_ char *f = vs_asprintf("%s.failcnt", prefix);
  _cleanup_free_ char *l = vs_asprintf("%s.limit_in_bytes", prefix);
  return mem_entry(read_u64_or_zero(dir, u), read_u64_or_zero(dir, m), read_u64_or_zero(dir, f),
                   read_u64_or_zero(dir, l));
}

static void memory_stats(cg_dir *d, json_t *data) {
  json_t *mem = json_object();
  _cleanup_free_ char *stat = NULL, *oom = NULL;
  json_t *raw =
      cg_read(d->path, "memory.stat", &stat, NULL) == 0 ? keyed_to_json(stat) : json_object();
  uint64_t v = 0;
  if (!d->unified) {
    json_object_set_new(mem, "usage", v1_mem_entry(d->path, "memory"));
    json_object_set_new(mem, "swap", v1_mem_entry(d->path, "memory.memsw"));
    json_object_set_new(mem, "kernel", v1_mem_entry(d->path, "memory.kmem"));
    json_object_set_new(mem, "kernelTCP", v1_mem_entry(d->path, "memory.kmem.tcp"));
    if (stat && cg_keyed_get(stat, "cache", &v))
      json_object_set_new(mem, "cache", json_integer((json_int_t)v));
    if (cg_read(d->path, "memory.oom_control", &oom, NULL) == 0) {
      if (cg_keyed_get(oom, "oom_kill", &v))
        json_object_set_new(raw, "oom_kill", json_integer((json_int_t)v));
      if (cg_keyed_get(oom, "under_oom", &v))
        json_object_set_new(raw, "under_oom", json_integer((json_int_t)v));
    }
  } else {
    uint64_t failcnt = 0;
    if (cg_read(d->path, "memory.events", &oom, NULL) == 0) {
      cg_keyed_get(oom, "max", &failcnt);
      if (cg_keyed_get(oom, "oom_kill", &v))
        json_object_set_new(raw, "oom_kill", json_integer((json_int_t)v));
    }
    json_object_set_new(mem, "usage",
                        mem_entry(read_u64_or_zero(d->path, "memory.current"),
                                  read_u64_or_zero(d->path, "memory.peak"), failcnt,
                                  read_u64_or_zero(d->path, "memory.max")));
    json_object_set_new(mem, "swap",
                        mem_entry(read_u64_or_zero(d->path, "memory.swap.current"),
                                  read_u64_or_zero(d->path, "memory.swap.peak"), 0,
                                  read_u64_or_zero(d->path, "memory.swap.max")));
    if (stat && cg_keyed_get(stat, "file", &v))
      json_object_set_new(mem, "cache", json_integer((json_int_t)v));
  }
  json_object_set_new(mem, "raw", raw);
  json_object_set_new(data, "memory", mem);
}

static void cpu_stats(ctr_cgroup *cg, json_t *data) {
  json_t *usage = json_object(), *thr = json_object();
  cg_dir *acct = cg_dir_for(cg, "cpuacct"), *cpu = cg_dir_for(cg, "cpu");
  _cleanup_free_ char *text = NULL;
  uint64_t v = 0;
  if (acct && !acct->unified) {
    json_object_set_new(usage, "total",
                        json_integer((json_int_t)read_u64_or_zero(acct->path, "cpuacct.usage")));
    json_t *percpu = json_array();
    _cleanup_free_ char *pc = NULL;
    if (cg_read(acct->path, "cpuacct.usage_percpu", &pc, NULL) == 0) {
      char *p = pc, *end;
      for (;;) {
        unsigned long long x = strtoull(p, &end, 10);
        if (end == p)
          break;
        json_array_append_new(percpu, json_integer((json_int_t)x));
        p = end;
      }
    }
    json_object_set_new(usage, "percpu", percpu);
    if (cg_read(acct->path, "cpuacct.stat", &text, NULL) == 0) {
      long hz = sysconf(_SC_CLK_TCK);
      uint64_t ns_per_tick = hz > 0 ? 1000000000ULL / (uint64_t)hz : 10000000ULL;
      if (cg_keyed_get(text, "user", &v))
        json_object_set_new(usage, "user", scaled(v, ns_per_tick));
      if (cg_keyed_get(text, "system", &v))
        json_object_set_new(usage, "kernel", scaled(v, ns_per_tick));
    }
  }
  if (cpu) {
    _cleanup_free_ char *st = NULL;
    if (cg_read(cpu->path, "cpu.stat", &st, NULL) == 0) {
      if (cpu->unified) {
        if (cg_keyed_get(st, "usage_usec", &v))
          json_object_set_new(usage, "total", scaled(v, 1000));
        if (cg_keyed_get(st, "user_usec", &v))
          json_object_set_new(usage, "user", scaled(v, 1000));
        if (cg_keyed_get(st, "system_usec", &v))
          json_object_set_new(usage, "kernel", scaled(v, 1000));
        if (cg_keyed_get(st, "throttled_usec", &v))
          json_object_set_new(thr, "throttledTime", scaled(v, 1000));
      } else if (cg_keyed_get(st, "throttled_time", &v)) {
        json_object_set_new(thr, "throttledTime", json_integer((json_int_t)v));
      }
      if (cg_keyed_get(st, "nr_periods", &v))
        json_object_set_new(thr, "periods", json_integer((json_int_t)v));
      if (cg_keyed_get(st, "nr_throttled", &v))
        json_object_set_new(thr, "throttledPeriods", json_integer((json_int_t)v));
    }
  }
  json_object_set_new(data, "cpu", json_pack("{s:o, s:o}", "usage", usage, "throttling", thr));
}

static void pids_stats(cg_dir *d, json_t *data) {
  json_object_set_new(data, "pids",
                      json_pack("{s:I, s:I}", "current",
                                (json_int_t)read_u64_or_zero(d->path, "pids.current"), "limit",
                                (json_int_t)read_u64_or_zero(d->path, "pids.max")));
}

/* "8:0 Read 123" lines (v1) -> [{"major":8,"minor":0,"op":"Read","value":123}]. */
static json_t *v1_blkio_entries(const char *dir, const char *file) {
  json_t *arr = json_array();
  _cleanup_free_ char *text = NULL;
  if (cg_read(dir, file, &text, NULL) < 0)
    return arr;
  char *save = NULL;
  for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
    unsigned long maj, min;
    const char *p = line;
    if (!parse_devnum(&p, &maj, &min) || *p != ' ')
      continue;
    char *op = (char *)p + 1, *sp = strchr(op, ' '), *end;
    if (!sp)
      continue;
    *sp = 0;
    unsigned long long value = strtoull(sp + 1, &end, 10);
    if (end == sp + 1)
      continue;
    json_array_append_new(arr, json_pack("{s:I, s:I, s:s, s:I}", "major", (json_int_t)maj, "minor",
                                         (json_int_t)min, "op", op, "value", (json_int_t)value));
  }
  return arr;
}

/* io.stat "8:0 rbytes=1 wbytes=2 rios=3 wios=4" -> runc's v1-shaped entries. */
static void v2_io_stats(cg_dir *d, json_t *blkio) {
  json_t *bytes = json_array(), *ios = json_array();
  _cleanup_free_ char *text = NULL;
  if (cg_read(d->path, "io.stat", &text, NULL) == 0) {
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
      unsigned long maj, min;
      const char *rest = line;
      if (!parse_devnum(&rest, &maj, &min))
        continue;
      static const struct {
        const char *key, *op;
        bool bytes;
      } map[] = {{"rbytes=", "Read", true},
                 {"wbytes=", "Write", true},
                 {"rios=", "Read", false},
                 {"wios=", "Write", false}};
      for (size_t i = 0; i < ARRAY_SIZE(map); i++) {
        const char *p = strstr(rest, map[i].key);
        if (!p)
          continue;
        json_array_append_new(map[i].bytes ? bytes : ios,
                              json_pack("{s:I, s:I, s:s, s:I}", "major", (json_int_t)maj, "minor",
                                        (json_int_t)min, "op", map[i].op, "value",
                                        (json_int_t)strtoull(p + strlen(map[i].key), NULL, 10)));
      }
    }
  }
  json_object_set_new(blkio, "ioServiceBytesRecursive", bytes);
  json_object_set_new(blkio, "ioServicedRecursive", ios);
}

static void blkio_stats(cg_dir *d, json_t *data) {
  json_t *blkio = json_object();
  if (d->unified) {
    v2_io_stats(d, blkio);
  } else {
    bool bfq = cg_file_exists(d->path, "blkio.bfq.io_service_bytes_recursive");
    json_object_set_new(
        blkio, "ioServiceBytesRecursive",
        v1_blkio_entries(d->path, bfq ? "blkio.bfq.io_service_bytes_recursive"
                                      : "blkio.throttle.io_service_bytes_recursive"));
    json_object_set_new(blkio, "ioServicedRecursive",
                        v1_blkio_entries(d->path, bfq ? "blkio.bfq.io_serviced_recursive"
                                                      : "blkio.throttle.io_serviced_recursive"));
  }
  json_object_set_new(data, "blkio", blkio);
}

/* "hugepages-2048kB" -> "2MB". */
static bool hugepage_dir_to_size(const char *name, char out[32]) {
  if (strncmp(name, "hugepages-", 10) != 0 || name[10] < '0' || name[10] > '9')
    return false;
  char *end;
  unsigned long kb = strtoul(name + 10, &end, 10);
  if (strcmp(end, "kB") != 0)
    return false;
  if (kb >= (1UL << 20) && kb % (1UL << 20) == 0)
    snprintf(out, 32, "%luGB", kb >> 20);
  else if (kb >= 1024 && kb % 1024 == 0)
    snprintf(out, 32, "%luMB", kb >> 10);
  else
    snprintf(out, 32, "%luKB", kb);
  return true;
}

static void hugetlb_stats(cg_dir *d, json_t *data) {
  json_t *h = json_object();
  DIR *dir = opendir("/sys/kernel/mm/hugepages");
  struct dirent *e;
  while (dir && (e = readdir(dir))) {
    char size[32];
    if (!hugepage_dir_to_size(e->d_name, size))
      continue;
    uint64_t usage, max = 0, failcnt = 0;
    if (d->unified) {
      _cleanup_free_ char *cur = vs_asprintf("hugetlb.%s.current", size);
      _cleanup_free_ char *ev = vs_asprintf("hugetlb.%s.events", size);
      _cleanup_free_ char *text = NULL;
      usage = read_u64_or_zero(d->path, cur);
      if (cg_read(d->path, ev, &text, NULL) == 0)
        cg_keyed_get(text, "max", &failcnt);
    } else {
      _cleanup_free_ char *u = vs_asprintf("hugetlb.%s.usage_in_bytes", size);
      _cleanup_free_ char *m = vs_asprintf("hugetlb.%s.max_usage_in_bytes", size);
      _cleanup_free_ char *f = vs_asprintf("hugetlb.%s.failcnt", size);
      usage = read_u64_or_zero(d->path, u);
      max = read_u64_or_zero(d->path, m);
      failcnt = read_u64_or_zero(d->path, f);
    }
    json_object_set_new(h, size,
                        json_pack("{s:I, s:I, s:I}", "usage", (json_int_t)usage, "max",
                                  (json_int_t)max, "failcnt", (json_int_t)failcnt));
  }
  if (dir)
    closedir(dir);
  json_object_set_new(data, "hugetlb", h);
}

void cg_stats_fill(ctr_cgroup *cg, json_t *data) {
  cg_dir *d;
  cpu_stats(cg, data);
  if ((d = cg_dir_for(cg, "memory")))
    memory_stats(d, data);
  if ((d = cg_dir_for(cg, "pids")))
    pids_stats(d, data);
  if ((d = cg_dir_for(cg, "blkio")))
    blkio_stats(d, data);
  d = cg_dir_for(cg, "hugetlb");
  if (d && (!d->unified || cg_file_exists(d->path, "hugetlb.2MB.current") ||
            access("/sys/kernel/mm/hugepages", F_OK) == 0))
    hugetlb_stats(d, data);
}
