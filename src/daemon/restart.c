/* Restart policies (no, always, unless-stopped, on-failure[:N]) with Docker's back-off: the
 * first restart after 100 ms, each next one twice as late up to a minute, back to 100 ms once a
 * run lasted 10 seconds. The delay is a timerfd on the loop; the start itself is a worker job. */
#include "daemon/internal.h"

#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <time.h>

#define BACKOFF_FIRST_MS 100
#define BACKOFF_MAX_MS 60000
#define RAN_LONG_ENOUGH_S 10

static const char *policy_name(const vd_container *c) {
  json_t *rp = json_object_get(json_object_get(c->rec, "HostConfig"), "RestartPolicy");
  const char *n = json_string_value(json_object_get(rp, "Name"));
  return n && *n ? n : "no";
}

int vd_restart_policy_check(json_t *rp, const char **name, int64_t *max, vs_error **err) {
  *name = NULL;
  *max = 0;
  if (json_is_object(rp) && (vs_json_get_string(rp, "Name", false, name, err) < 0 ||
                             vs_json_get_int(rp, "MaximumRetryCount", false, max, err) < 0))
    return vs_error_wrap(err, "RestartPolicy");
  const char *p = *name;
  bool restarts = p && *p && strcmp(p, "no") != 0;
  if (restarts && strcmp(p, "always") != 0 && strcmp(p, "unless-stopped") != 0 &&
      strcmp(p, "on-failure") != 0)
    return vs_error_set(err, EINVAL, "invalid restart policy '%s'", p);
  if (*max != 0 && (!p || strcmp(p, "on-failure") != 0))
    return vs_error_set(err, EINVAL, "maximum retry count cannot be used with restart policy '%s'",
                        p && *p ? p : "no");
  if (*max < 0)
    return vs_error_set(err, EINVAL, "maximum retry count cannot be negative");
  return restarts;
}

bool vd_restart_wanted(const vd_container *c) {
  if (c->removing || c->removed || c->state != VD_CTR_EXITED)
    return false;
  const char *p = policy_name(c);
  if (!strcmp(p, "always"))
    return !c->manual_stop;
  if (!strcmp(p, "unless-stopped"))
    return !c->manual_stop;
  if (!strcmp(p, "on-failure")) {
    json_t *rp = json_object_get(json_object_get(c->rec, "HostConfig"), "RestartPolicy");
    json_int_t max = json_integer_value(json_object_get(rp, "MaximumRetryCount"));
    return !c->manual_stop && c->exit_code != 0 && (max <= 0 || c->restart_count < max);
  }
  return false;
}

/* Write the record with what restarts change (a copy, so the file write holds no lock). */
static void save_record(vd_daemon *d, vd_container *c) {
  pthread_mutex_lock(&d->lock);
  json_object_set_new(c->rec, "RestartCount", json_integer(c->restart_count));
  json_object_set_new(c->rec, "HasBeenManuallyStopped", json_boolean(c->manual_stop));
  json_t *copy = json_deep_copy(c->rec);
  pthread_mutex_unlock(&d->lock);
  _cleanup_free_ char *path = vs_asprintf("%s/record.json", c->dir);
  vs_error *e = NULL;
  if (vs_json_write_file(path, copy, 0600, &e) < 0) {
    vs_log_warn("save container %.12s: %s", c->id, e->msg);
    vs_error_free(e);
  }
  json_decref(copy);
}

void vd_restart_note_manual(vd_daemon *d, vd_container *c, bool stopped) {
  pthread_mutex_lock(&d->lock);
  /* the record is rewritten (and synced) only when this changes it: not on every start */
  bool changed = c->manual_stop != stopped || (!stopped && c->restart_count != 0);
  c->manual_stop = stopped;
  if (!stopped) /* a start by the user begins a new count, as docker start does */
    c->restart_count = 0;
  pthread_mutex_unlock(&d->lock);
  if (changed)
    save_record(d, c);
}

static void restart_job_run(vd_job *job) {
  vd_daemon *d = job->d;
  vd_container *c = job->ctr;
  pthread_mutex_lock(&d->lock);
  bool go = !c->removing && !c->manual_stop && c->state != VD_CTR_RUNNING && !c->starting;
  pthread_mutex_unlock(&d->lock);
  vs_error *fence = NULL;
  if (go && !vd_cctr_start_allowed(d, c, &fence)) { /* a fenced node starts none of the cluster's */
    vs_log_warn("restart container %.12s: %s", c->id, fence->msg);
    vs_error_free(fence);
    go = false;
  }
  pthread_mutex_lock(&d->lock);
  go = go && !c->removing && !c->manual_stop && c->state != VD_CTR_RUNNING && !c->starting;
  if (go) {
    c->starting = true;
    c->restart_count++;
  }
  pthread_mutex_unlock(&d->lock);
  if (!go) {
    job->result = -1;
    return;
  }
  save_record(d, c);
  vs_error *e = NULL;
  job->result = vd_supervise_start(d, c, &e);
  pthread_mutex_lock(&d->lock);
  c->starting = false;
  if (job->result < 0) {
    free(c->error);
    c->error = vs_strdup(e->msg);
  }
  pthread_mutex_unlock(&d->lock);
  if (job->result < 0) {
    vs_log_warn("restart container %.12s: %s", c->id, e->msg);
    vs_error_free(e);
  } else {
    vs_log_info("container %.12s restarted (%d)", c->id, c->restart_count);
  }
}

static void restart_job_done(vd_job *job) {
  vd_container *c = job->ctr;
  pthread_mutex_lock(&job->d->lock);
  c->restarting = false;
  pthread_mutex_unlock(&job->d->lock);
  if (job->result == 0)
    vd_supervise_watch(job->d, c);
  vd_ctr_unref(job->d, c);
  free(job);
}

void vd_restart_fire(vd_daemon *d, vd_container *c) {
  uint64_t n;
  if (read(c->timerfd, &n, sizeof(n)) < 0 && errno == EAGAIN)
    return;
  vd_restart_cancel(d, c);
  pthread_mutex_lock(&d->lock);
  bool go = c->restarting && !c->removing && !c->removed;
  if (go)
    vd_ctr_ref(c);
  pthread_mutex_unlock(&d->lock);
  if (!go)
    return;
  vd_job_submit_ctr(d, c, restart_job_run, restart_job_done);
}

static long long seconds_since(const char *rfc3339) {
  struct tm tm = {0};
  if (!rfc3339 || !strptime(rfc3339, "%Y-%m-%dT%H:%M:%S", &tm))
    return 0;
  return (long long)time(NULL) - (long long)timegm(&tm);
}

void vd_restart_schedule(vd_daemon *d, vd_container *c) {
  pthread_mutex_lock(&d->lock);
  bool wanted = vd_restart_wanted(c) && c->timerfd < 0;
  if (wanted) {
    long long ran = seconds_since(c->started_at) - seconds_since(c->finished_at);
    if (ran >= RAN_LONG_ENOUGH_S || c->restart_delay_ms <= 0)
      c->restart_delay_ms = BACKOFF_FIRST_MS;
    c->restarting = true;
  }
  int delay = wanted ? c->restart_delay_ms : 0;
  pthread_mutex_unlock(&d->lock);
  if (!wanted)
    return;
  c->timerfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
  struct itimerspec its = {
      .it_value = {.tv_sec = delay / 1000, .tv_nsec = (long)(delay % 1000) * 1000000}};
  if (c->timerfd < 0 || timerfd_settime(c->timerfd, 0, &its, NULL) < 0 ||
      vd_loop_add(d, c->timerfd, EPOLLIN, &c->timer_src, NULL) < 0) {
    vs_log_warn("container %.12s: cannot arm the restart timer: %s", c->id, strerror(errno));
    vd_restart_cancel(d, c);
    return;
  }
  vs_log_debug("container %.12s restarts in %d ms", c->id, delay);
  pthread_mutex_lock(&d->lock);
  /* the next one waits twice as long, unless this run was long enough (see above) */
  c->restart_delay_ms = delay * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : delay * 2;
  pthread_mutex_unlock(&d->lock);
}

void vd_restart_cancel(vd_daemon *d, vd_container *c) {
  if (c->timerfd < 0)
    return;
  vd_loop_del(d, c->timerfd);
  close(c->timerfd);
  c->timerfd = -1;
}
