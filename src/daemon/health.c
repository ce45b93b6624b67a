/* Health checks (HEALTHCHECK, --health-*): probes run on the loop through the exec machinery.
 *
 * A running container with a health check has one timerfd: armed for the next probe (one
 * interval after the start or the last result) or, while a probe runs, for its timeout. A probe
 * is an exec (exec.c) whose output is kept rather than streamed; its end comes back through
 * vd_health_probe_done. The result goes into State.Health as dockerd keeps it: Status starting,
 * healthy or unhealthy, FailingStreak, the last five results in Log. State.Health is also
 * written to health.json in the container directory (replaced by rename, without fsync: losing
 * the last result in a crash is harmless), so inspect after a daemon restart still shows it;
 * the checks themselves resume from "starting" then, as with dockerd's live restore. */
#include "daemon/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <time.h>

#define NS_PER_SEC 1000000000LL
#define DEFAULT_INTERVAL_NS (30 * NS_PER_SEC)
#define DEFAULT_TIMEOUT_NS (30 * NS_PER_SEC)
#define DEFAULT_RETRIES 3
#define LOG_KEPT 5
#define HEALTH_FILE_MAX (1U << 16)

/* Config.Healthcheck when it asks for probes ("CMD ..." or "CMD-SHELL ..."), else NULL
 * (none, "NONE", or an empty test). */
static json_t *check_config(const vd_container *c) {
  json_t *hc = json_object_get(json_object_get(c->rec, "Config"), "Healthcheck");
  const char *kind = json_string_value(json_array_get(json_object_get(hc, "Test"), 0));
  if (!kind || (strcmp(kind, "CMD") != 0 && strcmp(kind, "CMD-SHELL") != 0))
    return NULL;
  return hc;
}

static long long ns_or(json_t *hc, const char *field, long long dflt) {
  long long v = (long long)json_integer_value(json_object_get(hc, field));
  return v > 0 ? v : dflt;
}

/* The probe's command: CMD's words, or CMD-SHELL's text under the container's shell. */
static json_t *probe_command(const vd_container *c, json_t *hc) {
  json_t *test = json_object_get(hc, "Test");
  json_t *cmd = json_array();
  if (!strcmp(json_string_value(json_array_get(test, 0)), "CMD")) {
    for (size_t i = 1; i < json_array_size(test); i++)
      json_array_append(cmd, json_array_get(test, i));
    return cmd;
  }
  json_t *shell = json_object_get(json_object_get(c->rec, "Config"), "Shell");
  if (json_array_size(shell)) {
    json_array_extend(cmd, shell);
  } else {
    json_array_append_new(cmd, json_string("/bin/sh"));
    json_array_append_new(cmd, json_string("-c"));
  }
  json_array_append(cmd, json_array_get(test, 1));
  return cmd;
}

static void disarm(vd_daemon *d, vd_container *c) {
  if (c->health_timer < 0)
    return;
  vd_loop_del(d, c->health_timer);
  close(c->health_timer);
  c->health_timer = -1;
}

static void arm(vd_daemon *d, vd_container *c, long long ns) {
  if (c->health_timer < 0) {
    c->health_timer = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    c->health_src.kind = VD_SRC_HEALTH;
    c->health_src.owner = c;
    if (c->health_timer < 0 || vd_loop_add(d, c->health_timer, EPOLLIN, &c->health_src, NULL) < 0) {
      vs_log_warn("container %.12s: no timer for its health check: %s", c->id, strerror(errno));
      if (c->health_timer >= 0)
        close(c->health_timer);
      c->health_timer = -1;
      return;
    }
  }
  struct itimerspec its = {.it_value = {.tv_sec = ns / NS_PER_SEC, .tv_nsec = ns % NS_PER_SEC}};
  timerfd_settime(c->health_timer, 0, &its, NULL);
}

/* State.Health to health.json (no fsync, see the top). */
static void save(vd_daemon *d, vd_container *c) {
  pthread_mutex_lock(&d->lock);
  _cleanup_free_ char *text = c->health ? json_dumps(c->health, JSON_COMPACT) : NULL;
  pthread_mutex_unlock(&d->lock);
  if (!text)
    return;
  _cleanup_free_ char *path = vs_asprintf("%s/health.json", c->dir);
  _cleanup_free_ char *tmp = vs_asprintf("%s/.health.json.tmp", c->dir);
  _cleanup_close_ int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
  vs_error *e = NULL;
  if (fd < 0 || vs_write_all(fd, text, strlen(text), &e) < 0 || rename(tmp, path) < 0) {
    vs_log_warn("container %.12s: save its health: %s", c->id, e ? e->msg : strerror(errno));
    vs_error_free(e);
    unlink(tmp);
  }
}

/* A duration as Go's time.Duration prints it (dockerd's messages do): "200ms", "1.5s",
 * "1m30s". */
static char *go_duration(long long ns) {
  if (ns < NS_PER_SEC) {
    char *s = vs_asprintf("%.6f", (double)ns / 1e6);
    char *end = s + strlen(s) - 1;
    while (*end == '0')
      *end-- = 0;
    if (*end == '.')
      *end = 0;
    char *out = vs_asprintf("%sms", s);
    free(s);
    return out;
  }
  long long h = ns / (3600 * NS_PER_SEC), m = ns / (60 * NS_PER_SEC) % 60;
  char *sec = vs_asprintf("%.9f", (double)(ns % (60 * NS_PER_SEC)) / 1e9);
  char *end = sec + strlen(sec) - 1;
  while (*end == '0')
    *end-- = 0;
  if (*end == '.')
    *end = 0;
  char *out = h   ? vs_asprintf("%lldh%lldm%ss", h, m, sec)
              : m ? vs_asprintf("%lldm%ss", m, sec)
                  : vs_asprintf("%ss", sec);
  free(sec);
  return out;
}

static long long realtime_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (long long)ts.tv_sec * NS_PER_SEC + ts.tv_nsec;
}

/* RFC 3339 with optional fraction ("2024-01-02T03:04:05.123456789Z") to ns; 0 if unreadable. */
static long long parse_time_ns(const char *t) {
  struct tm tm = {0};
  const char *rest = t ? strptime(t, "%Y-%m-%dT%H:%M:%S", &tm) : NULL;
  if (!rest)
    return 0;
  long long ns = (long long)timegm(&tm) * NS_PER_SEC;
  if (*rest == '.') {
    long long scale = NS_PER_SEC / 10;
    for (rest++; *rest >= '0' && *rest <= '9'; rest++, scale /= 10)
      ns += (*rest - '0') * scale;
  }
  return ns;
}

static char *format_time(long long ns) {
  struct timespec ts = {.tv_sec = ns / NS_PER_SEC, .tv_nsec = ns % NS_PER_SEC};
  char buf[64];
  vs_utc_rfc3339(&ts, buf, sizeof(buf));
  return vs_strdup(buf);
}

/* A probe's result into State.Health: dockerd's rules (a failure in the start period does not
 * count while the container never was healthy; retries failures in a row make it unhealthy). */
static void record(vd_daemon *d, vd_container *c, long long start, int code, const char *out,
                   size_t len) {
  json_t *hc = check_config(c);
  long long start_period = ns_or(hc, "StartPeriod", 0);
  long long retries = json_integer_value(json_object_get(hc, "Retries"));
  if (retries <= 0)
    retries = DEFAULT_RETRIES;
  _cleanup_free_ char *s = format_time(start), *e = format_time(realtime_ns());
  json_t *entry = json_pack("{s:s, s:s, s:i, s:s%}", "Start", s, "End", e, "ExitCode", code,
                            "Output", out, len);
  if (!entry) { /* not UTF-8: U+FFFD for what is not, as Go's encoder does */
    _cleanup_free_ char *esc = vd_json_escape_bytes(out, len);
    _cleanup_free_ char *quoted = vs_asprintf("\"%s\"", esc);
    json_t *text = json_loads(quoted, JSON_DECODE_ANY, NULL);
    entry = json_pack("{s:s, s:s, s:i, s:o}", "Start", s, "End", e, "ExitCode", code, "Output",
                      text ? text : json_string(""));
  }
  pthread_mutex_lock(&d->lock);
  json_t *h = c->health;
  json_t *log = json_object_get(h, "Log");
  json_array_append_new(log, entry);
  while (json_array_size(log) > LOG_KEPT)
    json_array_remove(log, 0);
  const char *old = json_string_value(json_object_get(h, "Status"));
  _cleanup_free_ char *was = vs_strdup(old ? old : "");
  long long streak = json_integer_value(json_object_get(h, "FailingStreak"));
  const char *now = was;
  if (code == 0) {
    streak = 0;
    now = "healthy";
  } else if (!(strcmp(was, "starting") == 0 &&
               start - parse_time_ns(c->started_at) < start_period)) {
    if (++streak >= retries)
      now = "unhealthy";
  }
  json_object_set_new(h, "FailingStreak", json_integer(streak));
  json_object_set_new(h, "Status", json_string(now));
  bool changed = strcmp(was, now) != 0;
  json_t *attrs = changed ? vd_event_ctr_attrs(c) : NULL;
  _cleanup_free_ char *action = changed ? vs_asprintf("health_status: %s", now) : NULL;
  pthread_mutex_unlock(&d->lock);
  if (changed)
    vd_event_emit(d, "container", action, c->id, attrs);
  save(d, c);
}

void vd_health_start(vd_daemon *d, vd_container *c) {
  pthread_mutex_lock(&d->lock);
  json_t *hc = check_config(c);
  long long interval = ns_or(hc, "Interval", DEFAULT_INTERVAL_NS);
  pthread_mutex_unlock(&d->lock);
  if (!hc)
    return;
  vd_health_stop(d, c);
  _cleanup_json_ json_t *kept = NULL;
  if (!c->health) { /* a restarted daemon: the log of the previous one */
    _cleanup_free_ char *path = vs_asprintf("%s/health.json", c->dir);
    kept = vs_json_load_file(path, HEALTH_FILE_MAX, NULL);
  }
  pthread_mutex_lock(&d->lock);
  if (!c->health) {
    json_t *log = json_object_get(kept, "Log");
    c->health = json_pack("{s:s, s:i, s:o}", "Status", "starting", "FailingStreak", 0, "Log",
                          json_is_array(log) ? json_incref(log) : json_array());
  }
  json_object_set_new(c->health, "Status", json_string("starting"));
  json_object_set_new(c->health, "FailingStreak", json_integer(0));
  pthread_mutex_unlock(&d->lock);
  save(d, c);
  arm(d, c, interval);
}

void vd_health_stop(vd_daemon *d, vd_container *c) {
  if (c->probe_exec) {
    vd_exec_probe_kill(d, c->probe_exec);
    free(c->probe_exec);
    c->probe_exec = NULL;
  }
  disarm(d, c);
}

void vd_health_timer(vd_daemon *d, vd_container *c) {
  uint64_t ticks;
  if (read(c->health_timer, &ticks, sizeof(ticks)) < 0 && errno == EAGAIN)
    return;
  pthread_mutex_lock(&d->lock);
  json_t *hc = check_config(c);
  long long interval = ns_or(hc, "Interval", DEFAULT_INTERVAL_NS);
  long long timeout = ns_or(hc, "Timeout", DEFAULT_TIMEOUT_NS);
  bool running = c->state == VD_CTR_RUNNING && !c->removing, paused = c->paused;
  _cleanup_json_ json_t *cmd = hc ? probe_command(c, hc) : NULL;
  pthread_mutex_unlock(&d->lock);
  if (!hc || !running) {
    vd_health_stop(d, c);
    return;
  }
  if (c->probe_exec) { /* the probe ran out of time */
    vd_exec_probe_kill(d, c->probe_exec);
    free(c->probe_exec);
    c->probe_exec = NULL;
    _cleanup_free_ char *t = go_duration(timeout);
    _cleanup_free_ char *msg = vs_asprintf("Health check exceeded timeout (%s)", t);
    record(d, c, c->probe_started, -1, msg, strlen(msg));
    arm(d, c, interval);
    return;
  }
  if (paused) { /* a frozen container cannot run a probe: try again later */
    arm(d, c, interval);
    return;
  }
  c->probe_started = realtime_ns();
  vs_error *e = NULL;
  if (vd_exec_probe_start(d, c->id, cmd, &c->probe_exec, &e) < 0) {
    record(d, c, c->probe_started, -1, e->msg, strlen(e->msg));
    vs_error_free(e);
    arm(d, c, interval);
    return;
  }
  arm(d, c, timeout);
}

void vd_health_probe_done(vd_daemon *d, const char *ctr_id, const char *exec_id, int exit_code,
                          const char *out, size_t len) {
  pthread_mutex_lock(&d->lock);
  vd_container *c = vd_ctr_find(d, ctr_id);
  if (c)
    vd_ctr_ref(c);
  json_t *hc = c ? check_config(c) : NULL;
  long long interval = ns_or(hc, "Interval", DEFAULT_INTERVAL_NS);
  pthread_mutex_unlock(&d->lock);
  if (!c)
    return;
  if (c->probe_exec && !strcmp(c->probe_exec, exec_id)) {
    free(c->probe_exec);
    c->probe_exec = NULL;
    record(d, c, c->probe_started, exit_code, out, len);
    arm(d, c, interval);
  }
  vd_ctr_unref(d, c);
}

const char *vd_health_status(const vd_container *c) {
  if (!c->health || !check_config(c))
    return NULL;
  return json_string_value(json_object_get(c->health, "Status"));
}
