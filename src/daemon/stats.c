/* docker stats --no-stream: the container's cgroup statistics (src/ctr's runc-style stats)
 * turned into dockerd's format, two samples a second apart so that the client can compute the
 * CPU share (one sample with one-shot). Streaming stats are not done yet. */
#include "daemon/internal.h"

#include <errno.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Total CPU time of the host in nanoseconds, from /proc/stat, as dockerd's system_cpu_usage. */
static json_int_t system_cpu_ns(void) {
  _cleanup_free_ char *text = NULL;
  if (vs_read_file("/proc/stat", 1 << 20, &text, NULL, NULL) < 0 || strncmp(text, "cpu ", 4) != 0)
    return 0;
  unsigned long long total = 0;
  char *p = text + 4;
  for (int i = 0; i < 8; i++) {
    char *end;
    unsigned long long v = strtoull(p, &end, 10);
    if (end == p)
      break;
    total += v;
    p = end;
  }
  long hz = sysconf(_SC_CLK_TCK);
  return (json_int_t)(total * (1000000000ULL / (unsigned long long)(hz > 0 ? hz : 100)));
}

/* One sample: dockerd's cpu_stats, memory_stats and pids_stats from ctr_stats's data. */
static json_t *sample(vd_daemon *d, const vd_container *c, json_t **cpu, json_t **mem,
                      json_t **pids, vs_error **err) {
  json_t *st = ctr_stats(&d->rt, c->id, err);
  if (!st)
    return NULL;
  json_t *data = json_object_get(st, "data");
  json_t *cu = json_object_get(json_object_get(data, "cpu"), "usage");
  json_t *percpu = json_object_get(cu, "percpu");
  *cpu =
      json_pack("{s:{s:I, s:o, s:I, s:I}, s:I, s:I, s:{s:i, s:i, s:i}}", "cpu_usage", "total_usage",
                json_integer_value(json_object_get(cu, "total")), "percpu_usage",
                json_is_array(percpu) ? json_incref(percpu) : json_array(), "usage_in_kernelmode",
                json_integer_value(json_object_get(cu, "kernel")), "usage_in_usermode",
                json_integer_value(json_object_get(cu, "user")), "system_cpu_usage",
                system_cpu_ns(), "online_cpus", (json_int_t)sysconf(_SC_NPROCESSORS_ONLN),
                "throttling_data", "periods", 0, "throttled_periods", 0, "throttled_time", 0);
  json_t *mu = json_object_get(json_object_get(data, "memory"), "usage");
  json_int_t limit = json_integer_value(json_object_get(mu, "limit"));
  if (limit <= 0 || limit > (json_int_t)1 << 62) /* unlimited: the host's memory, as dockerd */
    limit = (json_int_t)sysconf(_SC_PHYS_PAGES) * sysconf(_SC_PAGESIZE);
  json_t *raw = json_object_get(json_object_get(data, "memory"), "raw");
  *mem =
      json_pack("{s:I, s:I, s:I, s:o}", "usage", json_integer_value(json_object_get(mu, "usage")),
                "max_usage", json_integer_value(json_object_get(mu, "max")), "limit", limit,
                "stats", json_is_object(raw) ? json_incref(raw) : json_object());
  json_t *p = json_object_get(data, "pids");
  *pids = json_pack("{s:I}", "current", json_integer_value(json_object_get(p, "current")));
  if (json_integer_value(json_object_get(p, "limit")) > 0)
    json_object_set(*pids, "limit", json_object_get(p, "limit"));
  return st;
}

void vd_h_container_stats(vd_call *c) {
  vd_daemon *d = c->d;
  if (http_query_bool(c->req->query, "stream", true)) {
    vd_call_error(c, 501, "streaming stats are not supported by vesseld yet: use --no-stream");
    return;
  }
  bool one_shot = http_query_bool(c->req->query, "one-shot", false);
  pthread_mutex_lock(&d->lock);
  vd_container *ctr = vd_ctr_find(d, c->arg);
  if (ctr)
    vd_ctr_ref(ctr);
  bool running = ctr && ctr->state == VD_CTR_RUNNING;
  pthread_mutex_unlock(&d->lock);
  if (!ctr) {
    vd_call_error(c, 404, "No such container: %s", c->arg);
    return;
  }
  c->ctr = ctr;
  _cleanup_free_ char *now = vd_now();
  if (!running) { /* dockerd answers a stopped container with empty statistics */
    vd_call_json(c, 200,
                 json_pack("{s:s, s:s, s:s, s:s, s:{}, s:{}, s:{}, s:{}}", "read", now, "preread",
                           "0001-01-01T00:00:00Z", "id", ctr->id, "name", ctr->name, "cpu_stats",
                           "precpu_stats", "memory_stats", "pids_stats"));
    return;
  }
  json_t *cpu0 = NULL, *mem0 = NULL, *pids0 = NULL, *cpu = NULL, *mem = NULL, *pids = NULL;
  vs_error *e = NULL;
  _cleanup_free_ char *pre = NULL;
  json_t *st0 = NULL;
  if (!one_shot) {
    st0 = sample(d, ctr, &cpu0, &mem0, &pids0, &e);
    pre = vd_now();
    /* a worker may wait: the client asked for a rate */
    struct timespec ts = {.tv_sec = 1};
    while (st0 && nanosleep(&ts, &ts) < 0 && errno == EINTR) {
    }
  }
  json_t *st = (one_shot || st0) ? sample(d, ctr, &cpu, &mem, &pids, &e) : NULL;
  json_decref(st0);
  json_decref(mem0);
  json_decref(pids0);
  if (!st) {
    json_decref(cpu0);
    vd_call_fail(c, e);
    vs_error_free(e);
    return;
  }
  json_decref(st);
  free(now);
  now = vd_now();
  vd_call_json(c, 200,
               json_pack("{s:s, s:s, s:s, s:s, s:o, s:o, s:o, s:o, s:{}}", "read", now, "preread",
                         pre ? pre : "0001-01-01T00:00:00Z", "id", ctr->id, "name", ctr->name,
                         "cpu_stats", cpu, "precpu_stats", cpu0 ? cpu0 : json_object(),
                         "memory_stats", mem, "pids_stats", pids, "networks"));
}
