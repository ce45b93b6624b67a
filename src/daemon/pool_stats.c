/* Live statistics of a resource pool (GET /vessel/v1/pools/{name}/stats, `vessel pool stats`):
 * per guest and for the whole pool, the CPU its guests use (100 % is one host CPU, and the share
 * of the pool's capacity) and the memory they hold (against the pool's memory), measured over
 * one interval (a second) as docker stats --no-stream does.
 *
 * The figures come from the guests' cgroups: a container's (src/ctr's statistics, what docker
 * stats reads), a VM's own under its pool's (its VMM is in it, vd_pool_cgroup_enter). A VM of
 * the default pool without a QoS class has no cgroup of its own (it stays in vesseld's): its
 * VMM's /proc entry gives its CPU time and resident memory. Memory is what docker stats shows:
 * the cgroup's usage without its inactive page cache, which the kernel reclaims first. Guests
 * that do not run are listed with zeros. Beside them, what admission counts (pool_memory.c's
 * last sample: Held, Counted, a squeezed VM's BalloonTarget). */
#include "ctr/cgroup.h"
#include "daemon/vms.h"

#include <errno.h>
#include <string.h>
#include <time.h>

#define SAMPLE_INTERVAL_NS 1000000000LL

/* The memory a cgroup's statistics say is in use, without the inactive file cache (v1's
 * total_inactive_file, v2's inactive_file), as the docker CLI computes it. */
uint64_t vd_cgroup_memory_in_use(json_t *data) {
  json_t *mem = json_object_get(data, "memory");
  json_t *raw = json_object_get(mem, "raw");
  uint64_t usage =
      (uint64_t)json_integer_value(json_object_get(json_object_get(mem, "usage"), "usage"));
  json_t *inactive = json_object_get(raw, "total_inactive_file");
  if (!inactive)
    inactive = json_object_get(raw, "inactive_file");
  uint64_t cache = (uint64_t)json_integer_value(inactive);
  return cache < usage ? usage - cache : usage;
}

static uint64_t cgroup_cpu_ns(json_t *data) {
  return (uint64_t)json_integer_value(
      json_object_get(json_object_get(json_object_get(data, "cpu"), "usage"), "total"));
}

/* A running VM's VMM: its cgroup's figures when it has one (vmm.json's Cgroup), else its
 * process's. Source says which. */
static void sample_vm(json_t *g, uint64_t *cpu_ns, uint64_t *mem) {
  pid_t pid = (pid_t)json_integer_value(json_object_get(g, "Pid"));
  _cleanup_free_ char *mpath =
      vs_asprintf("%s/vmm.json", json_string_value(json_object_get(g, "Dir")));
  _cleanup_json_ json_t *m = vs_json_load_file(mpath, 1 << 16, NULL);
  json_t *saved = json_object_get(m, "Cgroup");
  ctr_cgroup *cg = NULL;
  json_t *st = NULL;
  if (saved && ctr_cgroup_from_json(saved, &cg, NULL) == 0)
    st = ctr_cgroup_stats(cg, NULL);
  ctr_cgroup_free(cg);
  if (st) {
    *cpu_ns = cgroup_cpu_ns(st);
    *mem = vd_cgroup_memory_in_use(st);
    json_decref(st);
    json_object_set_new(g, "Source", json_string("cgroup"));
    return;
  }
  vd_proc_usage(pid, cpu_ns, mem);
  json_object_set_new(g, "Source", json_string("process"));
}

static void sample_container(vd_daemon *d, json_t *g, uint64_t *cpu_ns, uint64_t *mem) {
  vs_error *e = NULL;
  json_t *st = ctr_stats(&d->rt, json_string_value(json_object_get(g, "Id")), &e);
  vs_error_free(e); /* it stopped since the guests were listed: zeros */
  json_t *data = json_object_get(st, "data");
  *cpu_ns = data ? cgroup_cpu_ns(data) : 0;
  *mem = data ? vd_cgroup_memory_in_use(data) : 0;
  json_object_set_new(g, "Source", json_string("cgroup"));
  json_decref(st);
}

/* One sample of every running guest: CpuNs (cumulative) and MemoryUse set in each. */
static void sample_guests(vd_daemon *d, json_t *guests, const char *cpu_field) {
  size_t i;
  json_t *g;
  json_array_foreach(guests, i, g) {
    uint64_t cpu_ns = 0, mem = 0;
    if (json_is_true(json_object_get(g, "Running"))) {
      if (!strcmp(json_string_value(json_object_get(g, "Kind")), "vm")) {
        if (json_object_get(g, "Pid"))
          sample_vm(g, &cpu_ns, &mem);
      } else {
        sample_container(d, g, &cpu_ns, &mem);
      }
    }
    json_object_set_new(g, cpu_field, json_integer((json_int_t)cpu_ns));
    json_object_set_new(g, "MemoryUse", json_integer((json_int_t)mem));
  }
}

static long long monotonic_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static double percent(double part, double whole) { return whole > 0 ? 100.0 * part / whole : 0; }

/* The reply's guest: what it requests, what it uses, both against the pool's capacity. */
static json_t *guest_stats(json_t *g, long long interval_ns, double pool_cpus, double pool_mem) {
  json_int_t busy = json_integer_value(json_object_get(g, "CpuNs")) -
                    json_integer_value(json_object_get(g, "CpuNs0"));
  double cpus_used = busy > 0 ? (double)busy / (double)interval_ns : 0;
  json_int_t mem = json_integer_value(json_object_get(g, "MemoryUse"));
  bool running = json_is_true(json_object_get(g, "Running"));
  json_t *s = json_pack("{s:O, s:O, s:O, s:O, s:s, s:{s:O, s:O}, s:{s:f, s:f}, s:{s:I, s:f}}",
                        "Kind", json_object_get(g, "Kind"), "Id", json_object_get(g, "Id"), "Name",
                        json_object_get(g, "Name"), "Qos", json_object_get(g, "Qos"), "State",
                        running ? "running" : "stopped", "Request", "Cpus",
                        json_object_get(g, "Cpus"), "Memory", json_object_get(g, "Memory"), "Cpu",
                        "Percent", 100.0 * cpus_used, "PoolPercent", percent(cpus_used, pool_cpus),
                        "Memory", "Usage", mem, "PoolPercent", percent((double)mem, pool_mem));
  if (running && json_object_get(g, "Source"))
    json_object_set(s, "Source", json_object_get(g, "Source"));
  /* what admission counts of it (pool_memory.c): the sampler's last figure, not this second's */
  json_object_set(s, "Held", json_object_get(g, "Held"));
  json_object_set(s, "Counted", json_object_get(g, "Counted"));
  if (json_object_get(g, "BalloonTarget"))
    json_object_set(s, "BalloonTarget", json_object_get(g, "BalloonTarget"));
  return s;
}

static json_t *pool_stats(vd_daemon *d, const char *name, vs_error **err) {
  vd_vms *t = d->vms;
  pthread_mutex_lock(&d->lock);
  pthread_mutex_lock(&t->lock);
  json_t *pool = json_object_get(t->pools, name);
  json_int_t cap_cpus = json_integer_value(json_object_get(pool, "Cpus"));
  json_int_t cap_mem = json_integer_value(json_object_get(pool, "Memory"));
  json_t *use = pool ? vd_pool_usage_locked(d, name, true) : NULL;
  pthread_mutex_unlock(&t->lock);
  pthread_mutex_unlock(&d->lock);
  if (!use)
    return vs_error_set(err, 0, "No such pool: %s", name), NULL;
  json_t *guests = json_object_get(use, "Guests");
  /* two samples an interval apart: the CPU time between them is the guests' use */
  long long t0 = monotonic_ns();
  sample_guests(d, guests, "CpuNs0");
  struct timespec nap = {SAMPLE_INTERVAL_NS / 1000000000LL, SAMPLE_INTERVAL_NS % 1000000000LL};
  while (nanosleep(&nap, &nap) < 0 && errno == EINTR)
    ;
  long long interval = monotonic_ns() - t0;
  sample_guests(d, guests, "CpuNs");
  json_t *out_guests = json_array();
  double cpus_used = 0;
  json_int_t mem = 0;
  size_t i;
  json_t *g;
  json_array_foreach(guests, i, g) {
    json_t *s = guest_stats(g, interval, (double)cap_cpus, (double)cap_mem);
    cpus_used += json_number_value(json_object_get(json_object_get(s, "Cpu"), "Percent")) / 100.0;
    mem += json_integer_value(json_object_get(json_object_get(s, "Memory"), "Usage"));
    json_array_append_new(out_guests, s);
  }
  _cleanup_free_ char *now = vd_now();
  json_t *doc = json_pack(
      "{s:s, s:s, s:I, s:{s:I, s:I}, s:{s:f, s:I}, s:{s:f, s:f}, s:{s:I, s:f}, s:o}", "Name", name,
      "Read", now, "IntervalNs", (json_int_t)interval, "Capacity", "Cpus", cap_cpus, "Memory",
      cap_mem, "Requested", "Cpus", json_number_value(json_object_get(use, "Cpus")), "Memory",
      json_integer_value(json_object_get(use, "Memory")), "Cpu", "Percent", 100.0 * cpus_used,
      "PoolPercent", percent(cpus_used, (double)cap_cpus), "Memory", "Usage", mem, "PoolPercent",
      percent((double)mem, (double)cap_mem), "Guests", out_guests);
  json_object_set_new(doc, "Held",
                      json_pack("{s:O, s:O}", "Memory", json_object_get(use, "Held"), "Counted",
                                json_object_get(use, "Counted")));
  json_decref(use);
  return doc;
}

void vd_h_pool_stats(vd_call *c) {
  vs_error *e = NULL;
  json_t *doc = pool_stats(c->d, c->arg, &e);
  if (doc)
    vd_call_json(c, 200, doc);
  else
    vd_call_error(c, 404, "%s", e->msg);
  vs_error_free(e);
}
