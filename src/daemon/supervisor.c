/* Supervision: starting a container's monitor, noticing its exit, killing and removing.
 *
 * vesseld never is the container's parent: the monitor is (monitor.c). vesseld watches the
 * monitor through a pidfd, which works whether the monitor is its child or was started by a
 * vesseld that has since been killed, and reads what the monitor recorded. */
#include "daemon/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

static int pidfd_of(pid_t pid) { return (int)syscall(SYS_pidfd_open, pid, 0); }

static bool is_mount_point(const char *path, const char *parent) {
  struct stat a, b;
  return stat(path, &a) == 0 && stat(parent, &b) == 0 && a.st_dev != b.st_dev;
}

/* The overlay root stays mounted while the container exists; after a reboot it is not. */
int vd_supervise_ensure_rootfs(vd_daemon *d, vd_container *c, vs_error **err) {
  _cleanup_free_ char *rootfs = vs_asprintf("%s/rootfs", c->dir);
  if (is_mount_point(rootfs, c->dir))
    return 0;
  const char *md = json_string_value(json_object_get(c->rec, "ImageManifest"));
  vs_image img;
  pthread_mutex_lock(&d->store_lock);
  int r = md ? vs_store_load_image(d->store, md, &img, err)
             : vs_error_set(err, EINVAL, "the record names no image");
  if (r == 0) {
    r = vs_store_lock(d->store, false, err);
    if (r == 0) {
      r = vs_rootfs_mount(d->store, &img, c->dir, rootfs, err);
      vs_store_unlock(d->store);
    }
    vs_image_clear(&img);
  }
  pthread_mutex_unlock(&d->store_lock);
  return r;
}

/* Read the monitor's report: "ok PID\n", or its error message. */
static int read_ready(int fd, vs_error **err) {
  char buf[4096];
  size_t len = 0;
  for (;;) {
    ssize_t n = read(fd, buf + len, sizeof(buf) - 1 - len);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      break;
    len += (size_t)n;
    if (len == sizeof(buf) - 1)
      break;
  }
  buf[len] = 0;
  if (!strncmp(buf, "ok ", 3))
    return 0;
  buf[strcspn(buf, "\n")] = 0;
  return vs_error_set(err, 0, "%s", len ? buf : "the monitor exited without a report");
}

/* ---------------------------------------------------------------- the spare monitor
 *
 * Starting a monitor is two executions of vessel-monitor (its own and the protected re-exec of
 * selfexe.c), each with its dynamic linking: 10-19 ms of every container start. So one monitor
 * is started ahead (`vessel-monitor --spare`, once the previous one is taken) and waits on a
 * socket for the arguments and descriptors a monitor is started with; it ends when the socket
 * closes unused (vesseld stopped, or was killed). Its command line names the runtime root so
 * that it is found with the daemon's processes. */

static void spare_job_run(vd_job *j) { vd_monitor_spare_refill(j->d); }
static void spare_job_done(vd_job *j) { free(j); }

void vd_monitor_spare_submit(vd_daemon *d) {
  vd_job *j = vs_malloc0(sizeof(*j));
  j->d = d;
  j->run = spare_job_run;
  j->done = spare_job_done;
  vd_job_submit(d, j);
}

void vd_monitor_spare_refill(vd_daemon *d) {
  pthread_mutex_lock(&d->spare_lock);
  bool have = d->spare_fd >= 0;
  pthread_mutex_unlock(&d->spare_lock);
  if (have)
    return;
  int sp[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) < 0)
    return;
  char *argv[] = {d->monitor_path, "--spare", "--runtime-root", d->rt.root, NULL};
  vs_spawn_opts o = VS_SPAWN_OPTS_INIT;
  o.stdin_fd = o.stdout_fd = o.stderr_fd = VS_SPAWN_DEVNULL;
  o.new_session = true; /* as every monitor (spawn_monitor) */
  o.extra_fds = &sp[1];
  o.n_extra_fds = 1;
  pid_t pid;
  vs_error *e = NULL;
  int r = vs_spawn(argv, &o, &pid, &e);
  close(sp[1]);
  if (r < 0) {
    vs_log_warn("start a spare monitor: %s", e->msg);
    vs_error_free(e);
    close(sp[0]);
    return;
  }
  pthread_mutex_lock(&d->spare_lock);
  bool keep = d->spare_fd < 0;
  if (keep) {
    d->spare_fd = sp[0];
    d->spare_pid = pid;
  }
  pthread_mutex_unlock(&d->spare_lock);
  if (!keep) { /* another worker was quicker: this one ends at its socket's end */
    close(sp[0]);
    waitpid(pid, NULL, 0);
  }
}

void vd_monitor_spare_close(vd_daemon *d) {
  pthread_mutex_lock(&d->spare_lock);
  if (d->spare_fd >= 0)
    close(d->spare_fd);
  d->spare_fd = -1;
  pthread_mutex_unlock(&d->spare_lock);
}

/* Hand argv and the descriptors (the ready pipe, then the monitor's log if any) to the spare:
 * 0 with its pid, -1 when there is no spare or it could not take them. */
static int spare_take(vd_daemon *d, char **argv, const int *fds, size_t nfds, pid_t *pid) {
  pthread_mutex_lock(&d->spare_lock);
  int fd = d->spare_fd;
  pid_t spid = d->spare_pid;
  d->spare_fd = -1;
  pthread_mutex_unlock(&d->spare_lock);
  if (fd < 0)
    return -1;
  char buf[8192];
  size_t len = 0;
  for (size_t i = 0; argv[i]; i++) {
    size_t n = strlen(argv[i]) + 1;
    if (len + n > sizeof(buf)) {
      len = 0;
      break;
    }
    memcpy(buf + len, argv[i], n);
    len += n;
  }
  int r = len ? vs_send_fds(fd, buf, len, fds, nfds, NULL) : -1;
  close(fd);
  if (r < 0) { /* it died, or has its socket's end now: gone either way */
    waitpid(spid, NULL, 0);
    return -1;
  }
  *pid = spid;
  return 0;
}

static int spawn_monitor(vd_daemon *d, vd_container *c, pid_t *pid, vs_error **err) {
  int p[2];
  if (pipe2(p, O_CLOEXEC) < 0)
    return vs_error_set(err, errno, "pipe");
  _cleanup_free_ char *log = vd_ctr_log_path(c);
  _cleanup_free_ char *mlog = vs_asprintf("%s/monitor.log", c->dir);
  _cleanup_close_ int mlog_fd =
      open(mlog, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  json_t *cfg = json_object_get(c->rec, "Config");
  char *argv[24] = {d->monitor_path, "--id",  c->id, "--bundle",   c->dir, "--runtime-root",
                    d->rt.root,      "--log", log,   "--ready-fd", "3"};
  size_t argc = 11;
  vd_log_opts lo;
  char max_size[32], max_files[16];
  if (vd_log_options(json_object_get(c->rec, "HostConfig"), &lo, err) < 0) {
    close(p[0]);
    close(p[1]);
    return vs_error_wrap(err, "the container's log options");
  }
  if (lo.max_size > 0) {
    snprintf(max_size, sizeof(max_size), "%lld", (long long)lo.max_size);
    snprintf(max_files, sizeof(max_files), "%u", lo.max_files);
    argv[argc++] = "--log-max-size";
    argv[argc++] = max_size;
    argv[argc++] = "--log-max-files";
    argv[argc++] = max_files;
    if (lo.compress)
      argv[argc++] = "--log-compress";
  }
  _cleanup_json_ json_t *attrs = vd_log_attrs(c->rec);
  _cleanup_free_ char *attrs_text = attrs ? json_dumps(attrs, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
  if (attrs_text) {
    argv[argc++] = "--log-attrs";
    argv[argc++] = attrs_text;
  }
  if (json_is_true(json_object_get(cfg, "Tty")))
    argv[argc++] = "--tty";
  if (json_is_true(json_object_get(cfg, "OpenStdin")))
    argv[argc++] = "--stdin";
  int pass[2] = {p[1], mlog_fd};
  int r = 0;
  if (spare_take(d, argv, pass, mlog_fd >= 0 ? 2 : 1, pid) == 0) {
    vd_monitor_spare_submit(d); /* the next one, while this one starts the container */
  } else {
    vs_spawn_opts o = VS_SPAWN_OPTS_INIT;
    o.stdin_fd = VS_SPAWN_DEVNULL;
    o.stdout_fd = VS_SPAWN_DEVNULL;
    o.stderr_fd = mlog_fd >= 0 ? mlog_fd : VS_SPAWN_DEVNULL;
    o.new_session = true; /* a Ctrl-C at vesseld's terminal must not reach the containers */
    o.extra_fds = &p[1];
    o.n_extra_fds = 1;
    r = vs_spawn(argv, &o, pid, err);
  }
  close(p[1]);
  if (r < 0) {
    close(p[0]);
    return vs_error_wrap(err, "start the monitor %s", d->monitor_path);
  }
  r = read_ready(p[0], err);
  close(p[0]);
  if (r < 0)
    waitpid(*pid, NULL, 0);
  return r;
}

int vd_supervise_start(vd_daemon *d, vd_container *c, vs_error **err) {
  if (vd_supervise_ensure_rootfs(d, c, err) < 0)
    return vs_error_wrap(err, "mount the root file system");
  if (vd_volumes_copy_up(d, c, err) < 0)
    return -1;
  _cleanup_free_ char *mpath = vs_asprintf("%s/monitor.json", c->dir);
  _cleanup_free_ char *epath = vs_asprintf("%s/exit.json", c->dir);
  unlink(mpath);
  unlink(epath);
  pid_t pid;
  if (vd_net_setup(d, c, err) < 0)
    return vs_error_wrap(err, "network");
  if (vd_links_env(d, c, err) < 0) {
    vd_net_teardown(d, c);
    return -1;
  }
  if (spawn_monitor(d, c, &pid, err) < 0) {
    vd_net_teardown(d, c);
    return -1;
  }
  pthread_mutex_lock(&d->lock);
  vd_ctr_refresh(d, c);
  free(c->error);
  c->error = NULL;
  pthread_mutex_unlock(&d->lock);
  vd_ha_fencer_update(d); /* a container of the cluster is fenced from now on */
  return 0;
}

void vd_supervise_watch(vd_daemon *d, vd_container *c) {
  /* while the previous monitor's pidfd is registered, its exit event re-watches */
  if (c->pidfd >= 0 || c->monitor_pid <= 0)
    return;
  c->watched_pid = c->monitor_pid;
  c->pidfd = pidfd_of(c->monitor_pid);
  /* after opening, the pidfd pins the process: check it is still the monitor we recorded */
  if (c->pidfd < 0 || vd_pid_start_time(c->monitor_pid) != c->monitor_start ||
      vd_loop_add(d, c->pidfd, EPOLLIN, &c->pid_src, NULL) < 0) {
    if (c->pidfd >= 0)
      close(c->pidfd);
    c->pidfd = -1;
    vd_supervise_exited(d, c);
    return;
  }
  vd_streams_started(d, c);
  vd_health_start(d, c);
}

static void remove_job_run(vd_job *job) {
  vs_error *e = NULL;
  job->result = vd_supervise_remove(job->d, job->ctr, true, &e);
  if (job->result < 0) {
    vs_log_warn("auto-remove container %.12s: %s", job->ctr->id, e->msg);
    vs_error_free(e);
    return;
  }
  /* --rm takes the anonymous volumes along, as dockerd's auto-removal does */
  vd_volumes_release(job->d, json_object_get(job->ctr->rec, "MountPoints"), job->ctr->id);
}

static void removed_done(vd_job *job) {
  vd_supervise_removed(job->d, job->ctr);
  vd_ctr_unref(job->d, job->ctr);
  free(job);
}

static void nothing_to_run(vd_job *job) { (void)job; }

void vd_supervise_post_removed(vd_daemon *d, vd_job *job) {
  /* a job with nothing left to do: a worker passes it straight back to the loop */
  job->run = nothing_to_run;
  job->done = removed_done;
  vd_job_submit(d, job);
}

static void remove_job_done(vd_job *job) {
  if (job->result == 0)
    vd_supervise_removed(job->d, job->ctr);
  vd_ctr_unref(job->d, job->ctr);
  free(job);
}

/* After an exit or a failed start: streams, waiters, auto-removal (loop). */
static void after_exit(vd_daemon *d, vd_container *c, bool restarted) {
  pthread_mutex_lock(&d->lock);
  c->exits++;
  json_t *hc = json_object_get(c->rec, "HostConfig");
  bool auto_remove = json_is_true(json_object_get(hc, "AutoRemove")) && !c->removing && !restarted;
  if (auto_remove) {
    c->removing = true;
    vd_ctr_ref(c);
  }
  pthread_mutex_unlock(&d->lock);
  vd_streams_exit(d, c, false);
  if (restarted)
    vd_supervise_watch(d, c);
  else if (!auto_remove)
    vd_restart_schedule(d, c);
  if (auto_remove) {
    vd_job_submit_ctr(d, c, remove_job_run, remove_job_done);
  }
}

void vd_supervise_start_failed(vd_daemon *d, vd_container *c) {
  if (!c->removed)
    after_exit(d, c, false);
}

/* The monitor is the only holder of the container's stdout and stderr pipes and the parent of
 * its init: once it is gone (kill -9), nothing can log what the container writes (its writes
 * fail with EPIPE) and nothing can learn its exit status (it is nobody's child we could wait
 * for). Left alone it would run on unsupervised with an unknowable exit. So it is ended the
 * way containerd ends a container whose shim died: everything in its cgroup is killed, its
 * runtime state deleted, and exit.json records 137 (it died of that SIGKILL) — or 255 when the
 * init had already ended and its status went with the monitor — with an Error saying why. The
 * log has everything the monitor read before it died; the restart policy applies as to any
 * exit, so `--restart always` brings it back under a new monitor. */
void vd_supervise_end_orphan(vd_daemon *d, vd_container *c) {
  ctr_state *st = NULL;
  bool alive = false;
  if (ctr_state_load(&d->rt, c->id, &st, NULL) == 0) {
    alive = ctr_state_status(&d->rt, st) != CTR_STATUS_STOPPED;
    ctr_state_free(st);
  }
  vs_log_warn("container %.12s: its monitor died without recording an exit; %s", c->id,
              alive ? "killing the container" : "its init had ended");
  vs_error *e = NULL;
  if (ctr_delete(&d->rt, c->id, true, &e) < 0 && alive)
    vs_log_warn("container %.12s: %s", c->id, e->msg);
  vs_error_free(e);
  e = NULL;
  _cleanup_free_ char *now = vd_now();
  _cleanup_json_ json_t *ex = json_pack(
      "{s:i, s:s, s:s}", "ExitCode", alive ? 128 + SIGKILL : 255, "FinishedAt", now, "Error",
      alive ? "the container's monitor died: the container was killed"
            : "the container's monitor died: its exit status is unknown");
  _cleanup_free_ char *path = vs_asprintf("%s/exit.json", c->dir);
  if (access(c->dir, F_OK) == 0 && vs_json_write_file(path, ex, 0600, &e) < 0) {
    vs_log_warn("container %.12s: %s", c->id, e->msg);
    vs_error_free(e);
  }
}

static void finish_exit(vd_daemon *d, vd_container *c, pid_t ended);

static void end_orphan_run(vd_job *job) { vd_supervise_end_orphan(job->d, job->ctr); }

static void end_orphan_done(vd_job *job) {
  if (!job->ctr->removed)
    finish_exit(job->d, job->ctr, job->ctr->watched_pid);
  vd_ctr_unref(job->d, job->ctr);
  free(job);
}

void vd_supervise_exited(vd_daemon *d, vd_container *c) {
  vd_health_stop(d, c);
  if (c->pidfd >= 0) {
    vd_loop_del(d, c->pidfd);
    close(c->pidfd);
    c->pidfd = -1;
  }
  if (c->removed)
    return;
  pid_t ended = c->watched_pid;
  /* our child when this vesseld started it; otherwise somebody else reaps it */
  if (ended > 0)
    waitpid(ended, NULL, WNOHANG);
  pthread_mutex_lock(&d->lock);
  vd_ctr_refresh(d, c);
  /* the pidfd says this monitor ended; without exit.json (a zombie monitor still looks alive
   * to the refresh) its container is an orphan */
  bool lost =
      c->monitor_pid == ended && !c->removing && (c->monitor_lost || c->state == VD_CTR_RUNNING);
  if (lost)
    vd_ctr_ref(c);
  pthread_mutex_unlock(&d->lock);
  if (lost) { /* ending it may wait for its processes: a worker's job */
    vd_job_submit_ctr(d, c, end_orphan_run, end_orphan_done);
    return;
  }
  finish_exit(d, c, ended);
}

/* An exit whose report waits for the teardown of the ended run's endpoints. */
typedef struct {
  vd_job job; /* first: the job is the exit */
  pid_t ended;
  int code;
  unsigned run;
} exit_job;

static void emit_die(vd_daemon *d, vd_container *c, int code) {
  pthread_mutex_lock(&d->lock);
  json_t *attrs = vd_event_ctr_attrs(c);
  pthread_mutex_unlock(&d->lock);
  json_object_set_new(attrs, "exitCode", json_sprintf("%d", code));
  vd_event_emit(d, "container", "die", c->id, attrs);
  pthread_mutex_lock(&d->lock);
  c->exits_reported++;
  pthread_cond_broadcast(&d->exit_cond);
  pthread_mutex_unlock(&d->lock);
}

/* The die event, then streams, waiters and restart policy (loop). */
static void report_exit(vd_daemon *d, vd_container *c, pid_t ended, int code) {
  pthread_mutex_lock(&d->lock);
  c->exit_settling = false;
  /* a start may have come while the endpoints were being torn down (it refreshed the state) */
  bool restarted = c->state == VD_CTR_RUNNING && c->monitor_pid != ended;
  pthread_mutex_unlock(&d->lock);
  emit_die(d, c, code);
  after_exit(d, c, restarted);
}

static void exit_teardown_run(vd_job *job) {
  vd_net_teardown_run(job->d, job->ctr, ((exit_job *)job)->run);
}

static void exit_teardown_done(vd_job *job) {
  exit_job *x = (exit_job *)job;
  vd_container *c = job->ctr;
  if (!c->removed) /* a removal answered the waiters and said die and destroy */
    report_exit(job->d, c, x->ended, x->code);
  vd_ctr_unref(job->d, c);
  free(x);
}

/* The exit is recorded (or never will be): the container's endpoints go with it, as Docker's
 * do, before anybody hears of the exit. dockerd releases the network before it marks the
 * container stopped, so a client that saw the exit (a wait, `docker run`, the die event) can
 * reuse the address or remove the network at once. The teardown (netlink and a ruleset load)
 * runs on a worker; the report follows on the loop. */
static void finish_exit(vd_daemon *d, vd_container *c, pid_t ended) {
  pthread_mutex_lock(&d->lock);
  vd_ctr_refresh(d, c);
  /* a restart may have started the next monitor before this exit got here */
  bool restarted = c->state == VD_CTR_RUNNING && c->monitor_pid != ended;
  if (c->state == VD_CTR_RUNNING && !restarted) { /* the pidfd said it ended */
    c->state = VD_CTR_EXITED;
    c->exit_code = 255;
  }
  int code = c->exit_code;
  bool teardown = !restarted && d->net;
  if (teardown) {
    c->exit_settling = true;
    vd_ctr_ref(c);
  }
  pthread_mutex_unlock(&d->lock);
  vs_log_info("container %.12s exited with %d", c->id, code);
  if (!teardown) {
    report_exit(d, c, ended, code);
    return;
  }
  exit_job *x = vs_malloc0(sizeof(*x));
  x->job.d = d;
  x->job.ctr = c;
  x->job.run = exit_teardown_run;
  x->job.done = exit_teardown_done;
  x->ended = ended;
  x->code = code;
  x->run = vd_net_run(d, c);
  vd_job_submit(d, &x->job);
}

int vd_monitor_connect(const vd_container *c, vs_error **err) {
  /* through /proc/self/fd: a socket path must fit in 108 bytes, the data root need not */
  _cleanup_close_ int dirfd = open(c->dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (dirfd < 0)
    return vs_error_set(err, errno, "open %s", c->dir);
  _cleanup_free_ char *path = vs_asprintf("/proc/self/fd/%d/attach.sock", dirfd);
  int fd = vs_unix_connect(path, err);
  if (fd < 0)
    return vs_error_wrap(err, "the monitor of container %.12s", c->id);
  return fd;
}

int vd_supervise_kill(vd_daemon *d, vd_container *c, int sig, vs_error **err) {
  if (ctr_kill(&d->rt, c->id, sig, false, err) < 0)
    return vs_error_wrap(err, "kill container %.12s", c->id);
  return 0;
}

int vd_supervise_wait_exit(vd_container *c, int timeout_ms) {
  pid_t mpid = c->monitor_pid;
  if (mpid <= 0)
    return 1;
  int fd = pidfd_of(mpid);
  if (fd < 0)
    return 1;
  if (vd_pid_start_time(mpid) != c->monitor_start) {
    close(fd);
    return 1;
  }
  struct pollfd p = {.fd = fd, .events = POLLIN};
  int r;
  do
    r = poll(&p, 1, timeout_ms);
  while (r < 0 && errno == EINTR);
  close(fd);
  return r > 0 ? 1 : 0;
}

void vd_supervise_wait_reported(vd_daemon *d, vd_container *c, unsigned before, int timeout_ms) {
  struct timespec until = vs_realtime_after_ms(timeout_ms);
  pthread_mutex_lock(&d->lock);
  while (c->exits_reported == before && !c->removed &&
         pthread_cond_timedwait(&d->exit_cond, &d->lock, &until) == 0)
    ;
  pthread_mutex_unlock(&d->lock);
}

int vd_supervise_remove(vd_daemon *d, vd_container *c, bool force, vs_error **err) {
  pthread_mutex_lock(&d->lock);
  bool running = c->state == VD_CTR_RUNNING;
  pthread_mutex_unlock(&d->lock);
  if (running && force) {
    vs_error *e = NULL;
    if (vd_supervise_kill(d, c, SIGKILL, &e) < 0)
      vs_error_free(e); /* it may have exited meanwhile */
    if (!vd_supervise_wait_exit(c, 10000))
      return vs_error_set(err, EBUSY, "container %.12s did not stop after SIGKILL", c->id);
    pthread_mutex_lock(&d->lock);
    vd_ctr_refresh(d, c);
    pthread_mutex_unlock(&d->lock);
  }
  vd_net_teardown(d, c);
  /* the monitor removes the runtime state; a monitor that died could not */
  ctr_delete(&d->rt, c->id, true, NULL);
  _cleanup_free_ char *rootfs = vs_asprintf("%s/rootfs", c->dir);
  if (umount2(rootfs, MNT_DETACH) < 0 && errno != EINVAL && errno != ENOENT)
    return vs_error_set(err, errno, "unmount %s", rootfs);
  if (vd_store_discard_dir(d, c, err) < 0)
    return vs_error_wrap(err, "remove container %.12s", c->id);
  return 0;
}

void vd_supervise_removed(vd_daemon *d, vd_container *c) {
  vd_restart_cancel(d, c);
  vd_health_stop(d, c);
  if (c->pidfd >= 0) {
    vd_loop_del(d, c->pidfd);
    close(c->pidfd);
    c->pidfd = -1;
  }
  pthread_mutex_lock(&d->lock);
  if (c->removed) {
    pthread_mutex_unlock(&d->lock);
    return;
  }
  vd_ctr_remove(d, c);
  c->removed = true;
  /* removed while its exit was being settled (a stop, then rm at once): die comes first */
  bool settling = c->exit_settling;
  c->exit_settling = false;
  int code = c->exit_code;
  pthread_mutex_unlock(&d->lock);
  if (settling)
    emit_die(d, c, code);
  vs_log_info("container %.12s removed", c->id);
  pthread_mutex_lock(&d->lock);
  json_t *attrs = vd_event_ctr_attrs(c);
  pthread_mutex_unlock(&d->lock);
  vd_event_emit(d, "container", "destroy", c->id, attrs);
  vd_streams_exit(d, c, true);
  /* the table's reference goes at the end of the loop iteration: events already fetched may
   * still name the container */
  c->next_dead = d->dead_ctrs;
  d->dead_ctrs = c;
}
