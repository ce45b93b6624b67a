/* docker stats: the container's cgroup statistics (src/ctr's runc-style stats) turned into
 * dockerd's format. --no-stream runs on a worker: two samples a second apart so that the client
 * can compute the CPU share (one sample with one-shot). A stream is loop state: a timerfd per
 * connection fires every second and the sample (a few small cgroup files) is read on the loop,
 * the previous one's CPU figures becoming precpu_stats; it ends when the client leaves or the
 * container is removed, and pauses while the client does not read. */
#include "daemon/internal.h"

#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
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

#define EPOCH "0001-01-01T00:00:00Z"

/* dockerd's answer for a container that does not run: empty statistics. */
static json_t *empty_stats(const vd_container *ctr) {
  _cleanup_free_ char *now = vd_now();
  return json_pack("{s:s, s:s, s:s, s:s, s:{}, s:{}, s:{}, s:{}}", "read", now, "preread", EPOCH,
                   "id", ctr->id, "name", ctr->name, "cpu_stats", "precpu_stats", "memory_stats",
                   "pids_stats");
}

/* One stats object; cpu, mem and pids are stolen, precpu (may be NULL) too. */
static json_t *stats_object(const vd_container *ctr, const char *pre, json_t *cpu, json_t *mem,
                            json_t *pids, json_t *precpu) {
  _cleanup_free_ char *now = vd_now();
  return json_pack("{s:s, s:s, s:s, s:s, s:o, s:o, s:o, s:o, s:{}}", "read", now, "preread",
                   pre ? pre : EPOCH, "id", ctr->id, "name", ctr->name, "cpu_stats", cpu,
                   "precpu_stats", precpu ? precpu : json_object(), "memory_stats", mem,
                   "pids_stats", pids, "networks");
}

/* Streamed stats ------------------------------------------------------------------------- */

static void stats_send(vd_conn *c, json_t *obj) {
  /* one chunk per object with its newline: docker-py's splitter chokes on a lone "\n" at the end */
  _cleanup_free_ char *text = json_dumps(obj, JSON_COMPACT);
  json_decref(obj);
  _cleanup_free_ char *line = vs_asprintf("%s\n", text);
  vd_conn_stream_write(c, line, strlen(line));
  vd_conn_flush(c);
}

/* Host statistics (GET /vessel/v1/host/stats) ------------------------------------------ */

/* The host's CPU time, busy and in all, in clock ticks, from /proc/stat's first line. */
static bool host_cpu_ticks(unsigned long long *busy, unsigned long long *total) {
  _cleanup_free_ char *text = NULL;
  if (vs_read_file("/proc/stat", 1 << 20, &text, NULL, NULL) < 0 || strncmp(text, "cpu ", 4) != 0)
    return false;
  unsigned long long v[8] = {0};
  char *p = text + 4;
  int got = 0;
  for (; got < 8; got++) {
    char *end;
    v[got] = strtoull(p, &end, 10);
    if (end == p)
      break;
    p = end;
  }
  if (got < 4)
    return false;
  *total = 0;
  for (int i = 0; i < 8; i++)
    *total += v[i];
  *busy = *total - v[3] - v[4]; /* idle and iowait are not busy */
  return true;
}

/* {"Time", "NCPU", "CPUPercent", "Load1", "MemTotal", "MemUsed"}; the CPU share since the
 * previous sample in *prev (busy, total), which is updated. */
static json_t *host_sample(unsigned long long prev[2]) {
  unsigned long long busy = 0, total = 0;
  double cpu = 0;
  if (host_cpu_ticks(&busy, &total)) {
    if (prev[1] && total > prev[1])
      cpu = 100.0 * (double)(busy - prev[0]) / (double)(total - prev[1]);
    prev[0] = busy;
    prev[1] = total;
  }
  double load1 = 0;
  _cleanup_free_ char *la = NULL;
  if (vs_read_file("/proc/loadavg", 4096, &la, NULL, NULL) == 0)
    load1 = strtod(la, NULL);
  long long mem_total = 0, mem_avail = -1;
  _cleanup_free_ char *mi = NULL;
  if (vs_read_file("/proc/meminfo", 1 << 16, &mi, NULL, NULL) == 0) {
    const char *p = strstr(mi, "MemTotal:");
    if (p)
      mem_total = strtoll(p + 9, NULL, 10) * 1024;
    p = strstr(mi, "MemAvailable:");
    if (p)
      mem_avail = strtoll(p + 13, NULL, 10) * 1024;
  }
  long long used = mem_avail >= 0 && mem_avail <= mem_total ? mem_total - mem_avail : 0;
  return json_pack("{s:I, s:I, s:f, s:f, s:I, s:I}", "Time", (json_int_t)time(NULL), "NCPU",
                   (json_int_t)sysconf(_SC_NPROCESSORS_ONLN), "CPUPercent", cpu, "Load1", load1,
                   "MemTotal", (json_int_t)mem_total, "MemUsed", (json_int_t)used);
}

static void host_tick(vd_conn *c) {
  if (c->out_len - c->out_off >= VD_OUT_HIGH_WATER)
    return;
  stats_send(c, host_sample(c->host_prev_cpu));
}

/* One sample (worker): the CPU share over a fifth of a second. */
static void host_stats_once(vd_call *c) {
  unsigned long long prev[2] = {0, 0};
  json_decref(host_sample(prev));
  struct timespec ts = {.tv_nsec = 200L * 1000 * 1000};
  while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
  }
  vd_call_json(c, 200, host_sample(prev));
}

int vd_stats_stream_arm(vd_call *c, const struct itimerspec *its, const char *what) {
  vd_conn *conn = c->conn;
  int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
  vs_error *e = NULL;
  conn->stats_src.kind = VD_SRC_STATS_TIMER;
  conn->stats_src.owner = conn;
  if (tfd < 0 || timerfd_settime(tfd, 0, its, NULL) < 0 ||
      vd_loop_add(c->d, tfd, EPOLLIN, &conn->stats_src, &e) < 0) {
    vd_call_error(c, 500, "%s: cannot arm a timer: %s", what, e ? e->msg : strerror(errno));
    vs_error_free(e);
    if (tfd >= 0)
      close(tfd);
    return -1;
  }
  c->streamed = true;
  conn->stream = VD_STREAM_STATS;
  conn->stats_timer = tfd;
  conn->stats_ctr = NULL;
  return 0;
}

void vd_h_host_stats(vd_call *c) {
  if (!http_query_bool(c->req->query, "stream", false)) {
    vd_call_defer(c, host_stats_once);
    return;
  }
  /* the first object a fifth of a second in (its CPU share needs two samples), then one a second */
  struct itimerspec its = {.it_value = {.tv_nsec = 200L * 1000 * 1000},
                           .it_interval = {.tv_sec = 1}};
  if (vd_stats_stream_arm(c, &its, "host stats") < 0)
    return;
  vd_conn *conn = c->conn;
  conn->host_prev_cpu[0] = conn->host_prev_cpu[1] = 0;
  json_decref(host_sample(conn->host_prev_cpu));
  vd_conn_stream_begin(conn, 200, "application/json");
}

void vd_stats_tick(vd_conn *c) {
  uint64_t n;
  if (c->stats_timer >= 0 && read(c->stats_timer, &n, sizeof(n)) < 0 && errno != EAGAIN)
    vs_log_debug("stats timer: %s", strerror(errno));
  if (c->dead || c->stream != VD_STREAM_STATS)
    return;
  vd_daemon *d = c->d;
  vd_container *ctr = c->stats_ctr;
  if (c->stats_vm) {
    vd_vm_stats_tick(c);
    return;
  }
  if (!ctr) { /* the host's */
    host_tick(c);
    return;
  }
  pthread_mutex_lock(&d->lock);
  bool gone = ctr->removed || ctr->removing, running = ctr->state == VD_CTR_RUNNING;
  pthread_mutex_unlock(&d->lock);
  if (gone) {
    vd_conn_stream_end(c);
    return;
  }
  if (c->out_len - c->out_off >= VD_OUT_HIGH_WATER)
    return; /* the client does not read: skip this second rather than queue it */
  json_t *cpu = NULL, *mem = NULL, *pids = NULL;
  vs_error *e = NULL;
  json_t *st = running ? sample(d, ctr, &cpu, &mem, &pids, &e) : NULL;
  if (!st) { /* not running (or it just stopped): dockerd's empty statistics */
    vs_error_free(e);
    json_decref(c->stats_prev_cpu);
    c->stats_prev_cpu = NULL;
    stats_send(c, empty_stats(ctr));
    return;
  }
  json_decref(st);
  json_t *precpu = c->stats_prev_cpu;
  c->stats_prev_cpu = json_incref(cpu);
  json_t *obj = stats_object(ctr, c->stats_prev_read, cpu, mem, pids, precpu);
  free(c->stats_prev_read);
  c->stats_prev_read = vs_strdup(json_string_value(json_object_get(obj, "read")));
  stats_send(c, obj);
}

void vd_stats_detach(vd_conn *c) {
  if (c->stats_timer >= 0) {
    vd_loop_del(c->d, c->stats_timer);
    close(c->stats_timer);
    c->stats_timer = -1;
  }
  if (c->stats_ctr)
    vd_ctr_unref(c->d, c->stats_ctr);
  c->stats_ctr = NULL;
  c->stats_vm = NULL; /* VMs stay allocated; a sample under way finds the stream gone */
  json_decref(c->stats_prev_cpu);
  c->stats_prev_cpu = NULL;
  free(c->stats_prev_read);
  c->stats_prev_read = NULL;
}

/* On the loop: the stream begins with a sample now, then one a second. */
static void stats_stream_begin(vd_call *c) {
  vd_daemon *d = c->d;
  vd_container *ctr = vd_call_container(c);
  if (!ctr)
    return;
  vd_conn *conn = c->conn;
  int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
  struct itimerspec its = {.it_value = {.tv_sec = 1}, .it_interval = {.tv_sec = 1}};
  vs_error *e = NULL;
  conn->stats_src.kind = VD_SRC_STATS_TIMER;
  conn->stats_src.owner = conn;
  if (tfd < 0 || timerfd_settime(tfd, 0, &its, NULL) < 0 ||
      vd_loop_add(d, tfd, EPOLLIN, &conn->stats_src, &e) < 0) {
    vd_call_error(c, 500, "stats: cannot arm a timer: %s", e ? e->msg : strerror(errno));
    vs_error_free(e);
    if (tfd >= 0)
      close(tfd);
    vd_ctr_unref(d, ctr);
    return;
  }
  c->streamed = true;
  conn->stream = VD_STREAM_STATS;
  conn->stats_timer = tfd;
  conn->stats_ctr = ctr;
  vd_conn_stream_begin(conn, 200, "application/json");
  vd_stats_tick(conn);
}

/* --no-stream (worker): it may wait a second between its two samples. */
static void stats_once(vd_call *c) {
  vd_daemon *d = c->d;
  bool one_shot = http_query_bool(c->req->query, "one-shot", false);
  vd_container *ctr = vd_call_container(c);
  if (!ctr)
    return;
  c->ctr = ctr;
  pthread_mutex_lock(&d->lock);
  bool running = ctr->state == VD_CTR_RUNNING;
  pthread_mutex_unlock(&d->lock);
  if (!running) {
    vd_call_json(c, 200, empty_stats(ctr));
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
  vd_call_json(c, 200, stats_object(ctr, pre, cpu, mem, pids, cpu0));
}

/* On the loop: a stream stays there; the single answer goes to a worker. */
void vd_h_container_stats(vd_call *c) {
  if (http_query_bool(c->req->query, "stream", true))
    stats_stream_begin(c);
  else
    vd_call_defer(c, stats_once);
}
