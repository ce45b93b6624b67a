/* The container table and the records under <data-root>/containers/<id>/.
 *
 * State is kept in small JSON files, each with a single writer, each replaced atomically
 * (a temporary file renamed over the name; see docs/daemon.md for which are fsynced):
 *   record.json   vesseld: what was created (Config, HostConfig, name, image)
 *   monitor.json  the monitor: it started the container (pids, start time)
 *   exit.json     the monitor: the container exited (code, time)
 *   image         the manifest digest, which keeps the image from garbage collection
 * A kill -9 at any moment leaves each file old or new, never torn; a directory without
 * record.json is a create that did not finish and is removed at the next start. A removed
 * container's directory is first renamed to .removed-<id> (the removal is then complete, in
 * one atomic step) and deleted after the answer; a start deletes any it finds. */
#include "daemon/internal.h"

#include <dirent.h>
#include <errno.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/mount.h>

#define RECORD_MAX (1U << 20)

char *vd_ctr_log_path(const vd_container *c) {
  return vs_asprintf("%s/%s-json.log", c->dir, c->id);
}

const char *vd_ctr_state_name(const vd_container *c) {
  if (c->removing)
    return "removing";
  switch (c->state) {
  case VD_CTR_CREATED:
    return "created";
  case VD_CTR_RUNNING:
    return c->paused ? "paused" : "running";
  case VD_CTR_EXITED:
    return "exited";
  }
  return "dead";
}

vd_container *vd_ctr_new(vd_daemon *d, const char *id, json_t *rec) {
  vd_container *c = vs_malloc0(sizeof(*c));
  snprintf(c->id, sizeof(c->id), "%s", id);
  c->rec = rec;
  c->name = vs_strdup(json_string_value(json_object_get(rec, "Name")));
  c->dir = vs_asprintf("%s/%s", d->containers_dir, id);
  c->pidfd = -1;
  c->watch = -1;
  c->refs = 1;
  c->pid_src.kind = VD_SRC_MONITOR;
  c->pid_src.owner = c;
  c->timerfd = -1;
  c->health_timer = -1;
  c->timer_src.kind = VD_SRC_RESTART;
  c->timer_src.owner = c;
  c->restart_count = (int)json_integer_value(json_object_get(rec, "RestartCount"));
  c->manual_stop = json_is_true(json_object_get(rec, "HasBeenManuallyStopped"));
  return c;
}

static void ctr_free(vd_container *c) {
  if (c->pidfd >= 0)
    close(c->pidfd);
  if (c->timerfd >= 0)
    close(c->timerfd);
  if (c->health_timer >= 0)
    close(c->health_timer);
  json_decref(c->health);
  free(c->probe_exec);
  json_decref(c->rec);
  json_decref(c->net);
  free(c->name);
  free(c->dir);
  free(c->started_at);
  free(c->finished_at);
  free(c->error);
  free(c);
}

void vd_ctr_ref(vd_container *c) { c->refs++; }

void vd_ctr_unref(vd_daemon *d, vd_container *c) {
  pthread_mutex_lock(&d->lock);
  bool last = --c->refs == 0;
  pthread_mutex_unlock(&d->lock);
  if (last)
    ctr_free(c);
}

void vd_ctr_add(vd_daemon *d, vd_container *c) {
  d->ctrs = vs_realloc(d->ctrs, sizeof(vd_container *) * (d->n_ctrs + 1));
  d->ctrs[d->n_ctrs++] = c;
  /* the logs growing and exit.json appearing wake the followers */
  c->watch = inotify_add_watch(d->inofd, c->dir, IN_MODIFY | IN_MOVED_TO | IN_CLOSE_WRITE);
}

void vd_ctr_remove(vd_daemon *d, vd_container *c) {
  for (size_t i = 0; i < d->n_ctrs; i++)
    if (d->ctrs[i] == c) {
      memmove(d->ctrs + i, d->ctrs + i + 1, sizeof(vd_container *) * (d->n_ctrs - i - 1));
      d->n_ctrs--;
      break;
    }
  if (c->watch >= 0)
    inotify_rm_watch(d->inofd, c->watch);
  c->watch = -1;
}

vd_container *vd_ctr_find_name(vd_daemon *d, const char *name) {
  const char *n = name[0] == '/' ? name + 1 : name;
  for (size_t i = 0; i < d->n_ctrs; i++)
    if (d->ctrs[i]->name && !strcmp(d->ctrs[i]->name + 1, n))
      return d->ctrs[i];
  return NULL;
}

vd_container *vd_ctr_find(vd_daemon *d, const char *what) {
  if (!*what)
    return NULL;
  for (size_t i = 0; i < d->n_ctrs; i++)
    if (!strcmp(d->ctrs[i]->id, what))
      return d->ctrs[i];
  vd_container *c = vd_ctr_find_name(d, what);
  if (c)
    return c;
  /* a unique ID prefix, as docker accepts */
  vd_container *found = NULL;
  size_t len = strlen(what);
  for (size_t i = 0; i < d->n_ctrs; i++)
    if (!strncmp(d->ctrs[i]->id, what, len)) {
      if (found)
        return NULL;
      found = d->ctrs[i];
    }
  return found;
}

int vd_ctr_save(vd_container *c, vs_error **err) {
  _cleanup_free_ char *path = vs_asprintf("%s/record.json", c->dir);
  return vs_json_write_file(path, c->rec, 0600, err);
}

static void set_str(char **dst, const char *v) {
  free(*dst);
  *dst = v ? vs_strdup(v) : NULL;
}

void vd_ctr_refresh(vd_daemon *d, vd_container *c) {
  _cleanup_free_ char *mpath = vs_asprintf("%s/monitor.json", c->dir);
  _cleanup_free_ char *epath = vs_asprintf("%s/exit.json", c->dir);
  _cleanup_json_ json_t *mon = vs_json_load_file(mpath, RECORD_MAX, NULL);
  _cleanup_json_ json_t *ex = vs_json_load_file(epath, RECORD_MAX, NULL);
  if (!mon && !ex && access(c->dir, F_OK) < 0)
    return; /* being removed: keep what is known */
  if (mon) {
    c->monitor_pid = (pid_t)json_integer_value(json_object_get(mon, "MonitorPid"));
    c->monitor_start = (unsigned long long)json_integer_value(json_object_get(mon, "MonitorStart"));
    c->pid = (pid_t)json_integer_value(json_object_get(mon, "Pid"));
    set_str(&c->started_at, json_string_value(json_object_get(mon, "StartedAt")));
  }
  if (ex) {
    c->state = VD_CTR_EXITED;
    c->paused = false;
    c->exit_code = (int)json_integer_value(json_object_get(ex, "ExitCode"));
    set_str(&c->finished_at, json_string_value(json_object_get(ex, "FinishedAt")));
    if (json_string_length(json_object_get(ex, "Error")))
      set_str(&c->error, json_string_value(json_object_get(ex, "Error")));
    c->pid = 0;
    c->monitor_lost = false;
  } else if (mon) {
    bool alive = c->monitor_pid > 0 && vd_pid_start_time(c->monitor_pid) == c->monitor_start;
    c->state = alive ? VD_CTR_RUNNING : VD_CTR_EXITED;
    if (alive) {
      ctr_state *st = NULL;
      /* a vesseld restarted under a paused container sees the frozen cgroup */
      if (ctr_state_load(&d->rt, c->id, &st, NULL) == 0) {
        c->paused = ctr_state_status(&d->rt, st) == CTR_STATUS_PAUSED;
        ctr_state_free(st);
      }
    }
    c->monitor_lost = !alive;
    if (!alive) {
      /* the monitor died without recording an exit: until vd_supervise_end_orphan has ended
       * what it left behind and recorded the exit, nothing knows the status */
      c->exit_code = 255;
      c->pid = 0;
      set_str(&c->error, "the container's monitor exited without recording its exit status");
      if (!c->finished_at)
        c->finished_at = vd_now();
    }
  } else {
    c->state = VD_CTR_CREATED;
    c->monitor_lost = false;
  }
}

/* A directory without a readable record is a create that died half-way. */
static void remove_incomplete(const char *dir) {
  _cleanup_free_ char *rootfs = vs_asprintf("%s/rootfs", dir);
  umount2(rootfs, MNT_DETACH);
  vs_error *e = NULL;
  if (vs_rm_rf(dir, &e) < 0) {
    vs_log_warn("remove incomplete container %s: %s", dir, e->msg);
    vs_error_free(e);
  }
}

#define DISCARD_PREFIX ".removed-"

typedef struct {
  vd_job job; /* first: the job is the discard */
  char *path;
} discard_job;

static void discard_run(vd_job *job) {
  discard_job *dj = (discard_job *)job;
  vs_error *e = NULL;
  if (vs_rm_rf(dj->path, &e) < 0) {
    vs_log_warn("remove %s: %s", dj->path, e->msg);
    vs_error_free(e);
  }
}

static void discard_done(vd_job *job) {
  discard_job *dj = (discard_job *)job;
  free(dj->path);
  free(dj);
}

/* Deleting a container's files (its overlay's upper and work directories among them) takes
 * tens of milliseconds of metadata updates; docker's `run --rm` waits for the removal, not
 * for the deletion. The rename is atomic, so a kill -9 leaves the directory either under its
 * ID (the container still exists) or under the discard name (it is gone; the next start
 * deletes it). */
int vd_store_discard_dir(vd_daemon *d, const vd_container *c, vs_error **err) {
  char *to = vs_asprintf("%s/" DISCARD_PREFIX "%s", d->containers_dir, c->id);
  if (rename(c->dir, to) < 0) {
    int saved = errno;
    free(to);
    if (saved == ENOENT)
      return 0;
    /* a discard of the same ID still under way (or another file system): delete in place */
    if (vs_rm_rf(c->dir, err) < 0)
      return -1;
    return 0;
  }
  discard_job *dj = vs_malloc0(sizeof(*dj));
  dj->path = to;
  dj->job.d = d;
  dj->job.run = discard_run;
  dj->job.done = discard_done;
  vd_job_submit(d, &dj->job);
  return 0;
}

int vd_store_recover(vd_daemon *d, vs_error **err) {
  if (vs_mkdir_p(d->containers_dir, 0700, err) < 0)
    return -1;
  DIR *dir = opendir(d->containers_dir);
  if (!dir)
    return vs_error_set(err, errno, "open %s", d->containers_dir);
  struct dirent *de;
  while ((de = readdir(dir))) {
    if (!strncmp(de->d_name, DISCARD_PREFIX, strlen(DISCARD_PREFIX))) {
      _cleanup_free_ char *gone = vs_asprintf("%s/%s", d->containers_dir, de->d_name);
      remove_incomplete(gone); /* removed before a kill -9 let it be deleted */
      continue;
    }
    if (de->d_name[0] == '.')
      continue;
    _cleanup_free_ char *cdir = vs_asprintf("%s/%s", d->containers_dir, de->d_name);
    _cleanup_free_ char *rpath = vs_asprintf("%s/record.json", cdir);
    _cleanup_free_ char *legacy = vs_asprintf("%s/container.json", cdir);
    if (access(legacy, F_OK) == 0)
      continue; /* made by the daemonless `vessel run`: not ours */
    json_t *rec = vs_json_load_file(rpath, RECORD_MAX, NULL);
    if (!rec || strlen(de->d_name) != 64) {
      json_decref(rec);
      vs_log_warn("removing %s: no complete record", cdir);
      remove_incomplete(cdir);
      continue;
    }
    vd_container *c = vd_ctr_new(d, de->d_name, rec);
    vd_ctr_refresh(d, c);
    if (c->monitor_lost) { /* its monitor died while no daemon ran */
      vd_supervise_end_orphan(d, c);
      vd_ctr_refresh(d, c);
      c->monitor_lost = false; /* ended; if no exit could be recorded, 255 is final */
    }
    vd_ctr_add(d, c);
    if (c->state == VD_CTR_RUNNING)
      vd_supervise_watch(d, c);
    else if (!vd_cctr_of_cluster_locked(d, c)) /* died while no daemon ran: the policy brings
                                                * it back now */
      vd_restart_schedule(d, c);
    /* a container of the cluster is restarted only if etcd still places it here, once this
     * node holds its lease (cluster_ha.c): another node may run it now */
    vs_log_info("found container %.12s (%s)", c->id, vd_ctr_state_name(c));
  }
  closedir(dir);
  return 0;
}
