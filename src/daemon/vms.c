/* VMs as daemon objects (their API is vm_api.c): one vessel-vmm process per running VM.
 *
 * A VM is a directory <data-root>/vms/<id>/ holding record.json (what the VM is: written by
 * vesseld, atomically replaced), vmm.json (the running VMM's pid and start time), its disk
 * overlay, snapshots, and the console's files. The VMM itself owns its console: its stdout and
 * stderr are console.log (opened O_APPEND by vesseld before the exec, then held only by the
 * VMM), its stdin is the FIFO console.in, opened read-write by the VMM so it never sees an end
 * of file. So the console's history and input outlive vesseld with no process in between:
 * viewers (vm_console.c) follow the log file and write into the FIFO.
 *
 * vesseld starts each VMM in its own session and watches it with a pidfd on the loop, as it does
 * containers' monitors; a restarted vesseld opens pidfds on the VMMs its vmm.json files name
 * (after checking their start times). Control requests (pause, powerdown, snapshot, info) go to
 * the VMM's control socket from worker threads. */
#include "daemon/vms.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <time.h>
#include <arpa/inet.h>

#define VM_DEFAULT_MEMORY (256ULL << 20)
#define VM_DEFAULT_APPEND "console=ttyS0"
#define VM_API_WAIT_MS 10000    /* for a new VMM's control socket */
#define VM_LOG_MAX (16LL << 20) /* console and VMM logs are rotated past this at a start */
/* restart back-off, as Docker's (restart.c): 100 ms, doubling up to a minute, reset after a run
 * of 10 seconds */
#define VM_RESTART_FIRST_MS 100
#define VM_RESTART_MAX_MS 60000
#define VM_RAN_LONG_ENOUGH_S 10

static void vm_restart_schedule(vd_daemon *d, vd_vm *vm, bool daemon_start);

/* ---------------------------------------------------------------- the table */

void vd_vm_free(vd_vm *vm) {
  if (!vm)
    return;
  if (vm->pidfd >= 0)
    close(vm->pidfd);
  if (vm->restart_timerfd >= 0)
    close(vm->restart_timerfd);
  json_decref(vm->rec);
  free(vm->name);
  free(vm->dir);
  free(vm->started_at);
  free(vm->finished_at);
  free(vm->error);
  free(vm);
}

vd_vm *vd_vm_find_locked(vd_vms *t, const char *what) {
  vd_vm *prefix = NULL;
  int n = 0;
  size_t wl = strlen(what);
  for (size_t i = 0; i < t->n; i++) {
    vd_vm *vm = t->vms[i];
    if (!strcmp(vm->name, what) || !strcmp(vm->id, what))
      return vm;
    if (wl >= 3 && !strncmp(vm->id, what, wl)) {
      prefix = vm;
      n++;
    }
  }
  return n == 1 ? prefix : NULL;
}

void vd_vm_add_locked(vd_vms *t, vd_vm *vm) {
  t->vms = vs_realloc(t->vms, sizeof(vd_vm *) * (t->n + 1));
  t->vms[t->n++] = vm;
}

/* Removed VMs stay allocated until the daemon ends: a worker or the loop may still hold one. */
void vd_vm_remove_locked(vd_vms *t, vd_vm *vm) {
  for (size_t i = 0; i < t->n; i++)
    if (t->vms[i] == vm) {
      t->vms[i] = t->vms[--t->n];
      break;
    }
  vm->removed = true;
  vm->next_dead = t->dead;
  t->dead = vm;
}

bool vd_vm_name_valid(const char *s) {
  if (!s || !*s || strlen(s) > 64 ||
      !((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z') ||
        (s[0] >= '0' && s[0] <= '9')))
    return false;
  for (const char *p = s; *p; p++)
    if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
          *p == '_' || *p == '.' || *p == '-'))
      return false;
  return true;
}

const char *vd_vm_status(const vd_vm *vm) {
  if (vm->restarting && vm->pid == 0)
    return "restarting";
  if (vm->pid > 0)
    return vm->paused ? "paused" : "running";
  return vm->finished_at ? "stopped" : "created";
}

int vd_vm_save(vd_vm *vm, vs_error **err) {
  _cleanup_free_ char *p = vs_asprintf("%s/record.json", vm->dir);
  return vs_json_write_file(p, vm->rec, 0600, err);
}

/* ---------------------------------------------------------------- the VMM's control socket */

/* The socket's path may be longer than a sockaddr_un holds: reach it through the directory. */
static int vm_connect(const vd_vm *vm, vs_error **err) {
  _cleanup_close_ int dfd = open(vm->dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0)
    return vs_error_set(err, errno, "open %s", vm->dir);
  char path[64];
  snprintf(path, sizeof(path), "/proc/self/fd/%d/api.sock", dfd);
  return vs_unix_connect(path, err);
}

/* One request to the VMM; *result (if result) gets the reply's result. Events in between are
 * skipped. Blocking: workers only. */
int vd_vm_ctl(const vd_vm *vm, json_t *req, json_t **result, vs_error **err) {
  return vd_vm_ctl_within(vm, req, -1, result, err);
}

int vd_vm_ctl_within(const vd_vm *vm, json_t *req, int timeout_ms, json_t **result,
                     vs_error **err) {
  _cleanup_close_ int fd = vm_connect(vm, err);
  if (fd < 0) {
    json_decref(req);
    return vs_error_wrap(err, "the VM's control socket");
  }
  if (timeout_ms >= 0) {
    /* a VMM that does not answer (stopped by a debugger, swapped out) must not hold the
     * caller: reads and writes then fail with EAGAIN */
    struct timeval tv = {timeout_ms / 1000, (suseconds_t)(timeout_ms % 1000) * 1000};
    if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0) {
      json_decref(req);
      return vs_error_set(err, errno, "the VM's control socket: set a timeout");
    }
  }
  _cleanup_free_ char *line = json_dumps(req, JSON_COMPACT);
  json_decref(req);
  if (vs_write_all(fd, line, strlen(line), err) < 0 || vs_write_all(fd, "\n", 1, err) < 0)
    return vs_error_wrap(err, "the VM's control socket");
  char buf[65536];
  size_t len = 0;
  for (;;) {
    char *nl = len ? memchr(buf, '\n', len) : NULL;
    if (!nl) {
      if (len == sizeof(buf))
        return vs_error_set(err, EPROTO, "the VMM's reply is too long");
      ssize_t n = read(fd, buf + len, sizeof(buf) - len);
      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return vs_error_set(err, ETIMEDOUT, "the VMM did not answer within %d ms", timeout_ms);
      if (n <= 0)
        return vs_error_set(err, n < 0 ? errno : EPIPE, "the VMM closed its control socket");
      len += (size_t)n;
      continue;
    }
    json_t *j = json_loadb(buf, (size_t)(nl - buf), 0, NULL);
    size_t used = (size_t)(nl - buf) + 1;
    memmove(buf, buf + used, len - used);
    len -= used;
    if (!j || !json_object_get(j, "ok")) { /* an event */
      json_decref(j);
      continue;
    }
    int r = 0;
    if (!json_is_true(json_object_get(j, "ok")))
      r = vs_error_set(err, 0, "%s", json_string_value(json_object_get(j, "error")));
    else if (result)
      *result = json_incref(json_object_get(j, "result"));
    json_decref(j);
    return r;
  }
}

int vd_vm_ctl_simple(const vd_vm *vm, const char *command, vs_error **err) {
  return vd_vm_ctl(vm, json_pack("{s:s}", "command", command), NULL, err);
}

/* ---------------------------------------------------------------- running VMMs */

static int pidfd_of(pid_t pid) { return (int)syscall(SYS_pidfd_open, pid, 0); }

json_t *vd_vm_event_attrs(const vd_vm *vm) { return json_pack("{s:s}", "name", vm->name); }

/* Watch a VMM with a pidfd on the loop (under t->lock). A VMM that is gone is marked stopped. */
static void vm_watch_locked(vd_daemon *d, vd_vm *vm) {
  vm->pidfd = pidfd_of(vm->pid);
  if (vm->pidfd < 0 || vd_pid_start_time(vm->pid) != vm->pid_start ||
      vd_loop_add(d, vm->pidfd, EPOLLIN, &vm->src, NULL) < 0) {
    if (vm->pidfd >= 0)
      close(vm->pidfd);
    vm->pidfd = -1;
    vm->pid = 0;
  }
}

static void vm_mark_stopped_locked(vd_vm *vm, int code, const char *error) {
  _cleanup_free_ char *mpath = vs_asprintf("%s/vmm.json", vm->dir);
  json_t *m = vs_json_load_file(mpath, 1 << 16, NULL);
  vd_pool_cgroup_leave(json_object_get(m, "Cgroup"));
  json_decref(m);
  unlink(mpath);
  vm->pid = 0;
  vm->paused = false;
  vm->exit_code = code;
  free(vm->finished_at);
  vm->finished_at = vd_now();
  free(vm->error);
  vm->error = error ? vs_strdup(error) : NULL;
  json_object_set_new(vm->rec, "FinishedAt", json_string(vm->finished_at));
  json_object_set_new(vm->rec, "ExitCode", json_integer(code));
  json_object_set_new(vm->rec, "Error", json_string(error ? error : ""));
  vs_error *e = NULL;
  if (vd_vm_save(vm, &e) < 0) {
    vs_log_warn("vm %s: %s", vm->name, e->msg);
    vs_error_free(e);
  }
}

void vd_vms_event(vd_daemon *d, vd_src *src) {
  vd_vm *vm = src->owner;
  vd_vms *t = d->vms;
  siginfo_t si = {0};
  int code = -1, sig = 0;
  _cleanup_free_ char *why = NULL;
  /* our child: reap it and learn how it ended; a VMM an earlier vesseld started is not */
  if (waitid((idtype_t)P_PIDFD, (id_t)vm->pidfd, &si, WEXITED | WNOHANG) == 0 && si.si_pid) {
    if (si.si_code == CLD_EXITED)
      code = si.si_status;
    else {
      sig = si.si_status;
      code = 128 + si.si_status;
    }
  }
  pthread_mutex_lock(&t->lock);
  vd_loop_del(d, vm->pidfd);
  close(vm->pidfd);
  vm->pidfd = -1;
  if (code < 0)
    why = vs_strdup("vessel-vmm ended; its exit status is unknown (an earlier vesseld started it)");
  else if (sig && !vm->stopping)
    why = vs_asprintf("vessel-vmm was killed by signal %d (%s)", sig, strsignal(sig));
  else if (code != 0 && !vm->stopping)
    why = vs_asprintf("vessel-vmm ended with status %d (see vmm.log)", code);
  vm_mark_stopped_locked(vm, code, why);
  pthread_cond_broadcast(&t->cond);
  json_t *attrs = vd_vm_event_attrs(vm);
  json_object_set_new(attrs, "exitCode", json_sprintf("%d", code));
  if (why)
    json_object_set_new(attrs, "error", json_string(why));
  char id[65];
  memcpy(id, vm->id, sizeof(id));
  pthread_mutex_unlock(&t->lock);
  vd_event_emit(d, "vm", "die", id, attrs);
  vm_restart_schedule(d, vm, false);
}

/* The paths of the default guest that scripts/fetch-guest fills. */
static char *default_guest_dir(void) {
  const char *cache = getenv("VESSEL_CACHE");
  if (cache && *cache)
    return vs_asprintf("%s/guest", cache);
  const char *home = getenv("HOME");
  return vs_asprintf("%s/.cache/vessel/guest", home && *home ? home : "/root");
}

char *vd_vmm_path(const vd_daemon *d) {
  const char *slash = strrchr(d->monitor_path, '/');
  if (!slash)
    return vs_strdup("vessel-vmm");
  return vs_asprintf("%.*s/vessel-vmm", (int)(slash - d->monitor_path), d->monitor_path);
}

/* The argument list of a cold boot or of a restore from the record. */
static char **vmm_argv(const vd_daemon *d, const vd_vm *vm, size_t *n) {
  json_t *cfg = json_object_get(vm->rec, "Config");
  json_t *restore = json_object_get(vm->rec, "Restore");
  char **argv = vs_malloc0(sizeof(char *) * 24);
  size_t i = 0;
  argv[i++] = vd_vmm_path(d);
  if (json_is_true(json_object_get(restore, "Pending"))) {
    argv[i++] = vs_strdup("--restore");
    argv[i++] = vs_strdup(json_string_value(json_object_get(restore, "Dir")));
    if (json_is_true(json_object_get(restore, "Clone")))
      argv[i++] = vs_strdup("--clone");
    /* each start gets fresh overlays over the snapshot's (frozen) disks */
    argv[i++] = vs_strdup("--clone-dir");
    argv[i++] = vs_asprintf("%s/run-%lld", vm->dir, (long long)time(NULL));
    /* the VM's own tap (a clone's is not its source's) and the address its DHCP knows */
    json_t *ns = json_object_get(vm->rec, "NetworkSettings");
    if (json_string_value(json_object_get(ns, "Tap"))) {
      argv[i++] = vs_strdup("--net");
      argv[i++] = vs_asprintf("tap=%s,mac=%s", json_string_value(json_object_get(ns, "Tap")),
                              json_string_value(json_object_get(ns, "MacAddress")));
    }
  } else {
    argv[i++] = vs_strdup("--kernel");
    argv[i++] = vs_strdup(json_string_value(json_object_get(cfg, "Kernel")));
    const char *initrd = json_string_value(json_object_get(cfg, "Initrd"));
    if (initrd && *initrd) {
      argv[i++] = vs_strdup("--initrd");
      argv[i++] = vs_strdup(initrd);
    }
    argv[i++] = vs_strdup("--append");
    argv[i++] = vs_strdup(json_string_value(json_object_get(cfg, "Append")));
    argv[i++] = vs_strdup("--smp");
    argv[i++] = vs_asprintf("%lld", (long long)json_integer_value(json_object_get(cfg, "Cpus")));
    argv[i++] = vs_strdup("--mem");
    argv[i++] =
        vs_asprintf("%lldK", (long long)(json_integer_value(json_object_get(cfg, "Memory")) >> 10));
    /* the guest gives the memory it frees back to the host (free page reporting) */
    argv[i++] = vs_strdup("--balloon");
    const char *disk = json_string_value(json_object_get(vm->rec, "DiskPath"));
    if (disk && *disk) {
      argv[i++] = vs_strdup("--disk");
      argv[i++] = vs_asprintf("%s,format=qcow2", disk);
    }
    json_t *ns = json_object_get(vm->rec, "NetworkSettings");
    if (json_string_value(json_object_get(ns, "Tap"))) {
      argv[i++] = vs_strdup("--net");
      argv[i++] = vs_asprintf("tap=%s,mac=%s", json_string_value(json_object_get(ns, "Tap")),
                              json_string_value(json_object_get(ns, "MacAddress")));
    }
  }
  argv[i++] = vs_strdup("--api-sock");
  argv[i++] = vs_strdup("/proc/self/fd/3/api.sock");
  *n = i;
  return argv;
}

static void argv_free(char **argv, size_t n) {
  for (size_t i = 0; i < n; i++)
    free(argv[i]);
  free(argv);
}

/* The last line of vmm.log: what a VMM that failed to start said. */
static char *vmm_log_tail(const vd_vm *vm) {
  _cleanup_free_ char *p = vs_asprintf("%s/vmm.log", vm->dir);
  _cleanup_free_ char *text = NULL;
  size_t len = 0;
  if (vs_read_file(p, 1 << 20, &text, &len, NULL) < 0 || len == 0)
    return vs_strdup("no message");
  while (len && text[len - 1] == '\n')
    text[--len] = 0;
  char *nl = strrchr(text, '\n');
  return vs_strdup(nl ? nl + 1 : text);
}

/* Wait until the new VMM answers on its control socket, or report why it ended. */
static int wait_vmm_ready(vd_vm *vm, pid_t pid, int pidfd, vs_error **err) {
  for (int waited = 0; waited < VM_API_WAIT_MS; waited += 20) {
    vs_error *e = NULL;
    int fd = vm_connect(vm, &e);
    vs_error_free(e);
    if (fd >= 0) {
      close(fd);
      return 0;
    }
    struct pollfd p = {.fd = pidfd, .events = POLLIN};
    if (poll(&p, 1, 20) > 0) {
      int status = 0;
      waitpid(pid, &status, 0);
      _cleanup_free_ char *tail = vmm_log_tail(vm);
      _cleanup_free_ char *how = vs_wait_status_str(status);
      return vs_error_set(err, 0, "vessel-vmm %s: %s", how, tail);
    }
  }
  kill(pid, SIGKILL);
  waitpid(pid, NULL, 0);
  return vs_error_set(err, ETIMEDOUT, "vessel-vmm did not open its control socket");
}

/* A log over VM_LOG_MAX becomes PATH.1 (replacing the one before) when a VMM starts: the VMM
 * holds its log for its whole run, so that is when it can be rotated without losing a byte. */
static void rotate_log(const char *path) {
  struct stat st;
  if (stat(path, &st) < 0 || st.st_size <= VM_LOG_MAX)
    return;
  _cleanup_free_ char *previous = vs_asprintf("%s.1", path);
  if (rename(path, previous) < 0)
    vs_log_warn("rotate %s: %s", path, strerror(errno));
}

static int open_console_files(const vd_vm *vm, int *in, int *out, int *log, vs_error **err) {
  _cleanup_free_ char *fifo = vs_asprintf("%s/console.in", vm->dir);
  _cleanup_free_ char *clog = vs_asprintf("%s/console.log", vm->dir);
  _cleanup_free_ char *vlog = vs_asprintf("%s/vmm.log", vm->dir);
  if (mkfifo(fifo, 0600) < 0 && errno != EEXIST)
    return vs_error_set(err, errno, "mkfifo %s", fifo);
  rotate_log(clog);
  rotate_log(vlog);
  /* read-write: the VMM is a writer of its own input FIFO, so it never reads an end of file */
  *in = open(fifo, O_RDWR | O_CLOEXEC);
  *out = open(clog, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  *log = open(vlog, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (*in < 0 || *out < 0 || *log < 0)
    return vs_error_set(err, errno, "open the console files in %s", vm->dir);
  return 0;
}

/* A VM that a live migration moves (docs/cluster.md): it arrives in a VMM that waits for the
 * stream, or it left in one that ended; either way no other VMM may start from its disks. */
static bool vm_migrating(const vd_vm *vm) { return json_object_get(vm->rec, "Migrating") != NULL; }

/* A VMM process now runs the VM: its pid and start time, kept in vmm.json (how a restarted
 * daemon finds it again); cgroup (taken) is the cgroup it runs in, NULL when none of its own. */
static int vm_note_started_locked(vd_vm *vm, pid_t pid, bool paused, json_t *cgroup,
                                  vs_error **err) {
  vm->pid = pid;
  vm->pid_start = vd_pid_start_time(pid);
  vm->paused = paused;
  vm->stopping = false;
  /* a new VMM: not measured yet, and no squeeze of the last one's balloon */
  vm->held_pid = 0;
  vm->balloon_ready = false;
  vm->squeeze = 0;
  free(vm->started_at);
  vm->started_at = vd_now();
  free(vm->finished_at);
  vm->finished_at = NULL;
  free(vm->error);
  vm->error = NULL;
  json_t *m = json_pack("{s:i, s:I, s:s, s:o*}", "Pid", (int)pid, "StartTime",
                        (json_int_t)vm->pid_start, "StartedAt", vm->started_at, "Cgroup", cgroup);
  _cleanup_free_ char *mpath = vs_asprintf("%s/vmm.json", vm->dir);
  int r = vs_json_write_file(mpath, m, 0600, err);
  json_decref(m);
  return r;
}

/* The VMM a start spawned (pidfd), or none (-1) once the start has ended: the fencer is told at
 * once, not at the watchdog's next look. */
static void spawned(vd_daemon *d, vd_vm *vm, int pidfd) {
  pthread_mutex_lock(&d->vms->lock);
  vm->spawn_pidfd = pidfd;
  pthread_mutex_unlock(&d->vms->lock);
  if (pidfd >= 0)
    vd_ha_fencer_update(d);
}

/* The rest of a start, once the VMM runs: its pool, its control socket, its record. */
static int start_spawned(vd_daemon *d, vd_vm *vm, pid_t pid, int pidfd, vs_error **err) {
  /* into its pool's cgroup at once, before the guest's RAM is touched */
  json_t *cgroup = vd_pool_cgroup_enter(d, vm, pid, err);
  if (!cgroup && vd_pool_cgroup_wanted(vm)) {
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return -1;
  }
  if (pidfd < 0 || wait_vmm_ready(vm, pid, pidfd, err) < 0) {
    vd_pool_cgroup_leave(cgroup);
    json_decref(cgroup);
    return -1;
  }
  /* a restore or a clone resumes once: later it boots cold from the disk its VMM left */
  json_t *restore = json_object_get(vm->rec, "Restore");
  json_t *info = NULL;
  if (json_is_true(json_object_get(restore, "Pending")) &&
      vd_vm_ctl(vm, json_pack("{s:s}", "command", "info"), &info, err) < 0) {
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    vd_pool_cgroup_leave(cgroup);
    json_decref(cgroup);
    return vs_error_wrap(err, "the restored VMM");
  }
  const char *spec =
      json_string_value(json_object_get(json_array_get(json_object_get(info, "disks"), 0), "spec"));
  vd_vms *t = d->vms;
  pthread_mutex_lock(&t->lock);
  if (info) {
    json_object_set_new(restore, "Pending", json_false());
    if (spec)
      json_object_set_new(vm->rec, "DiskPath", json_stringn(spec, strcspn(spec, ",")));
    json_decref(info);
  }
  int r = vm_note_started_locked(vm, pid, false, cgroup, err);
  json_object_del(vm->rec, "FinishedAt");
  json_object_del(vm->rec, "Error");
  json_object_set_new(vm->rec, "ExitCode", json_integer(0));
  vm->exit_code = 0;
  if (r == 0)
    r = vd_vm_save(vm, err);
  if (r == 0)
    vm_watch_locked(d, vm);
  pthread_mutex_unlock(&t->lock);
  if (r < 0) {
    kill(pid, SIGKILL);
    return -1;
  }
  vd_event_emit(d, "vm", "start", vm->id, vd_vm_event_attrs(vm));
  json_t *target = json_object_get(json_object_get(vm->rec, "Config"), "MemoryTarget");
  vs_error *e = NULL;
  if (target &&
      vd_vm_ctl(vm,
                json_pack("{s:s, s:I}", "command", "balloon", "target", json_integer_value(target)),
                NULL, &e) < 0) {
    vs_log_warn("vm %s: memory target: %s", vm->name, e->msg);
    vs_error_free(e);
  }
  return 0;
}

/* Start the VM's VMM and wait until it serves its control socket (worker). */
int vd_vm_start(vd_daemon *d, vd_vm *vm, vs_error **err) {
  if (vm_migrating(vm))
    return vs_error_set(err, EBUSY,
                        "VM %s is being migrated: its guest runs in another VMM (or is on its "
                        "way there)",
                        vm->name);
  if (vd_ha_start_allowed(d, vm, err) < 0)
    return -1;
  int in = -1, out = -1, log = -1;
  _cleanup_close_ int dfd = open(vm->dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
  int r = dfd < 0 ? vs_error_set(err, errno, "open %s", vm->dir)
                  : open_console_files(vm, &in, &out, &log, err);
  _cleanup_free_ char *sock = vs_asprintf("%s/api.sock", vm->dir);
  if (r == 0)
    r = vs_unix_remove_stale(sock, err);
  size_t n = 0;
  char **argv = r == 0 ? vmm_argv(d, vm, &n) : NULL;
  pid_t pid = 0;
  if (r == 0) {
    vs_spawn_opts o = VS_SPAWN_OPTS_INIT;
    o.stdin_fd = in;
    o.stdout_fd = out;
    o.stderr_fd = log;
    o.new_session = true; /* VMs outlive vesseld and its terminal */
    o.extra_fds = &dfd;
    o.n_extra_fds = 1;
    r = vs_spawn(argv, &o, &pid, err);
    if (r < 0)
      vs_error_wrap(err, "start %s", argv[0]);
  }
  argv_free(argv, n);
  for (int *fd = (int[]){in, out, log}, k = 0; k < 3; k++)
    if (fd[k] >= 0)
      close(fd[k]);
  if (r < 0)
    return -1;
  _cleanup_close_ int pidfd = pidfd_of(pid);
  spawned(d, vm, pidfd);
  r = start_spawned(d, vm, pid, pidfd, err);
  spawned(d, vm, -1);
  return r;
}

int vd_vm_start_incoming(vd_daemon *d, vd_vm *vm, int listen_fd, vs_error **err) {
  int in = -1, out = -1, log = -1;
  _cleanup_close_ int dfd = open(vm->dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
  int r = dfd < 0 ? vs_error_set(err, errno, "open %s", vm->dir)
                  : open_console_files(vm, &in, &out, &log, err);
  _cleanup_free_ char *sock = vs_asprintf("%s/api.sock", vm->dir);
  if (r == 0)
    r = vs_unix_remove_stale(sock, err);
  _cleanup_free_ char *vmm = vd_vmm_path(d);
  /* the directory is descriptor 3 (the socket's path may be too long), the listener 4 */
  char *argv[] = {vmm, "--incoming", "fd:4", "--paused", "--api-sock", "/proc/self/fd/3/api.sock",
                  NULL};
  int fds[2] = {dfd, listen_fd};
  pid_t pid = 0;
  if (r == 0) {
    vs_spawn_opts o = VS_SPAWN_OPTS_INIT;
    o.stdin_fd = in;
    o.stdout_fd = out;
    o.stderr_fd = log;
    o.new_session = true;
    o.extra_fds = fds;
    o.n_extra_fds = 2;
    r = vs_spawn(argv, &o, &pid, err);
    if (r < 0)
      vs_error_wrap(err, "start %s --incoming", vmm);
  }
  for (int *fd = (int[]){in, out, log}, k = 0; k < 3; k++)
    if (fd[k] >= 0)
      close(fd[k]);
  if (r < 0)
    return -1;
  json_t *cgroup = vd_pool_cgroup_enter(d, vm, pid, err);
  if (!cgroup && vd_pool_cgroup_wanted(vm)) {
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return -1;
  }
  vd_vms *t = d->vms;
  pthread_mutex_lock(&t->lock);
  r = vm_note_started_locked(vm, pid, true, cgroup, err); /* paused until the stream is in */
  if (r == 0)
    r = vd_vm_save(vm, err);
  if (r == 0)
    vm_watch_locked(d, vm);
  pthread_mutex_unlock(&t->lock);
  if (r < 0) {
    kill(pid, SIGKILL);
    return -1;
  }
  return 0;
}

int vd_vm_ctl_connect(const vd_vm *vm, vs_error **err) { return vm_connect(vm, err); }

/* Wait (worker) until the loop has seen the VMM end, at most timeout_ms (-1: no limit). */
bool vd_vm_wait_stopped(vd_vms *t, vd_vm *vm, int timeout_ms) {
  struct timespec until = vs_realtime_after_ms(timeout_ms);
  pthread_mutex_lock(&t->lock);
  int r = 0;
  while (vm->pid > 0 && r != ETIMEDOUT)
    r = timeout_ms < 0 ? pthread_cond_wait(&t->cond, &t->lock)
                       : pthread_cond_timedwait(&t->cond, &t->lock, &until);
  bool stopped = vm->pid == 0;
  pthread_mutex_unlock(&t->lock);
  return stopped;
}

void vd_vm_kill(vd_vms *t, vd_vm *vm, int sig) {
  pthread_mutex_lock(&t->lock);
  if (vm->pidfd >= 0)
    syscall(SYS_pidfd_send_signal, vm->pidfd, sig, NULL, 0);
  pthread_mutex_unlock(&t->lock);
}

/* Power-down request, then a kill after timeout seconds (worker). */
int vd_vm_stop(vd_daemon *d, vd_vm *vm, int timeout, vs_error **err) {
  vd_vms *t = d->vms;
  vd_vm_note_manual(t, vm, true); /* its restart policy leaves it stopped */
  pthread_mutex_lock(&t->lock);
  bool running = vm->pid > 0;
  vm->stopping = true;
  bool paused = vm->paused;
  pthread_mutex_unlock(&t->lock);
  if (!running)
    return 0;
  vs_error *e = NULL;
  /* a paused guest cannot see its power button */
  if (paused && vd_vm_ctl_simple(vm, "resume", &e) < 0) {
    vs_log_info("vm %s: resume before power-down: %s", vm->name, e->msg);
    vs_error_free(e);
    e = NULL;
  }
  if (timeout > 0 && vd_vm_ctl_simple(vm, "powerdown", &e) < 0) {
    vs_log_info("vm %s: power-down request: %s; killing it", vm->name, e->msg);
    vs_error_free(e);
    timeout = 0;
  }
  if (timeout > 0 && vd_vm_wait_stopped(t, vm, timeout * 1000)) {
    vd_event_emit(d, "vm", "stop", vm->id, vd_vm_event_attrs(vm));
    return 0;
  }
  vd_vm_kill(t, vm, SIGKILL);
  if (!vd_vm_wait_stopped(t, vm, 10000))
    return vs_error_set(err, ETIMEDOUT, "vm %s: vessel-vmm did not end after SIGKILL", vm->name);
  vd_event_emit(d, "vm", "stop", vm->id, vd_vm_event_attrs(vm));
  return 0;
}

/* ---------------------------------------------------------------- restart policies */

static const char *restart_policy(const vd_vm *vm) {
  const char *p =
      json_string_value(json_object_get(json_object_get(vm->rec, "Config"), "RestartPolicy"));
  return p ? p : "no";
}

/* Whether a VM that is not running should be started again (under t->lock). At the daemon's
 * start, `always` also brings back VMs a request stopped, as Docker does. */
static bool restart_wanted_locked(const vd_vm *vm, bool daemon_start) {
  if (vm->removed || vm->pid > 0 || vm->restarting || vm_migrating(vm))
    return false;
  const char *p = restart_policy(vm);
  if (!strcmp(p, "always"))
    return daemon_start || !vm->manual_stop;
  if (!strcmp(p, "unless-stopped"))
    return !vm->manual_stop;
  if (!strcmp(p, "on-failure"))
    return !vm->manual_stop && vm->finished_at && vm->exit_code != 0;
  return false;
}

bool vd_vm_restart_wanted(vd_vms *t, const vd_vm *vm) {
  pthread_mutex_lock(&t->lock);
  bool wanted = restart_wanted_locked(vm, false);
  pthread_mutex_unlock(&t->lock);
  return wanted;
}

static void save_restart_state_locked(vd_vm *vm) {
  json_object_set_new(vm->rec, "RestartCount", json_integer(vm->restart_count));
  json_object_set_new(vm->rec, "ManuallyStopped", json_boolean(vm->manual_stop));
  vs_error *e = NULL;
  if (vd_vm_save(vm, &e) < 0) {
    vs_log_warn("vm %s: %s", vm->name, e->msg);
    vs_error_free(e);
  }
}

void vd_vm_note_manual(vd_vms *t, vd_vm *vm, bool stopped) {
  pthread_mutex_lock(&t->lock);
  bool changed = vm->manual_stop != stopped || (!stopped && vm->restart_count != 0);
  vm->manual_stop = stopped;
  if (!stopped) /* a start by a request begins a new count */
    vm->restart_count = 0;
  if (changed)
    save_restart_state_locked(vm);
  pthread_mutex_unlock(&t->lock);
}

static long long seconds_since(const char *rfc3339) {
  struct tm tm = {0};
  if (!rfc3339 || !strptime(rfc3339, "%Y-%m-%dT%H:%M:%S", &tm))
    return 0;
  return (long long)time(NULL) - (long long)timegm(&tm);
}

static void restart_timer_close(vd_daemon *d, vd_vm *vm) {
  if (vm->restart_timerfd < 0)
    return;
  vd_loop_del(d, vm->restart_timerfd);
  close(vm->restart_timerfd);
  vm->restart_timerfd = -1;
}

/* Arm the VM's restart timer if its policy wants it back (loop). */
static void vm_restart_schedule(vd_daemon *d, vd_vm *vm, bool daemon_start) {
  vd_vms *t = d->vms;
  pthread_mutex_lock(&t->lock);
  bool wanted =
      restart_wanted_locked(vm, daemon_start) && vd_ha_local_restart_allowed(d, vm, daemon_start);
  if (wanted) {
    long long ran = seconds_since(vm->started_at) - seconds_since(vm->finished_at);
    if (ran >= VM_RAN_LONG_ENOUGH_S || vm->restart_delay_ms <= 0 || daemon_start)
      vm->restart_delay_ms = VM_RESTART_FIRST_MS;
    vm->restarting = true;
  }
  int delay = vm->restart_delay_ms;
  if (wanted) /* the next one waits twice as long, unless this run was long enough */
    vm->restart_delay_ms = delay * 2 > VM_RESTART_MAX_MS ? VM_RESTART_MAX_MS : delay * 2;
  pthread_mutex_unlock(&t->lock);
  if (!wanted)
    return;
  vm->restart_timerfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
  struct itimerspec its = {
      .it_value = {.tv_sec = delay / 1000, .tv_nsec = (long)(delay % 1000) * 1000000}};
  if (vm->restart_timerfd < 0 || timerfd_settime(vm->restart_timerfd, 0, &its, NULL) < 0 ||
      vd_loop_add(d, vm->restart_timerfd, EPOLLIN, &vm->restart_src, NULL) < 0) {
    vs_log_warn("vm %s: cannot arm the restart timer: %s", vm->name, strerror(errno));
    if (vm->restart_timerfd >= 0)
      close(vm->restart_timerfd);
    vm->restart_timerfd = -1;
    pthread_mutex_lock(&t->lock);
    vm->restarting = false;
    pthread_mutex_unlock(&t->lock);
    return;
  }
  vs_log_info("vm %s: restart policy %s: starting it again in %d ms", vm->name, restart_policy(vm),
              delay);
}

typedef struct vm_restart_job {
  vd_job job; /* first */
  vd_vm *vm;
} vm_restart_job;

static void restart_job_run(vd_job *job) {
  vd_vm *vm = ((vm_restart_job *)job)->vm;
  vd_vms *t = job->d->vms;
  pthread_mutex_lock(&t->lock);
  /* a request may have started, stopped or removed it meanwhile */
  bool go = !vm->removed && !vm->busy && vm->pid == 0 && vm->restarting &&
            (!vm->manual_stop || !strcmp(restart_policy(vm), "always")) &&
            vd_ha_local_restart_allowed(job->d, vm, false);
  if (go) {
    vm->busy = true;
    vm->restart_count++;
    vm->manual_stop = false;
    save_restart_state_locked(vm);
  }
  pthread_mutex_unlock(&t->lock);
  job->result = -1;
  if (!go)
    return;
  vs_error *e = NULL;
  job->result = vd_vm_start(job->d, vm, &e);
  pthread_mutex_lock(&t->lock);
  vm->busy = false;
  if (job->result < 0) {
    free(vm->error);
    vm->error = vs_asprintf("restart: %s", e->msg);
  }
  pthread_mutex_unlock(&t->lock);
  if (job->result < 0) {
    vs_log_warn("vm %s: restart: %s", vm->name, e->msg);
    vs_error_free(e);
  } else {
    vs_log_info("vm %s restarted (%d)", vm->name, vm->restart_count);
  }
}

static void restart_job_done(vd_job *job) {
  vd_vm *vm = ((vm_restart_job *)job)->vm;
  vd_daemon *d = job->d;
  pthread_mutex_lock(&d->vms->lock);
  vm->restarting = false;
  bool failed = job->result < 0 && !vm->removed && vm->pid == 0;
  pthread_mutex_unlock(&d->vms->lock);
  if (failed) /* a start that failed is tried again, later each time */
    vm_restart_schedule(d, vm, false);
  free(job);
}

void vd_vms_restart_fire(vd_daemon *d, vd_src *src) {
  vd_vm *vm = src->owner;
  restart_timer_close(d, vm);
  vm_restart_job *j = vs_malloc0(sizeof(*j));
  j->job.d = d;
  j->job.run = restart_job_run;
  j->job.done = restart_job_done;
  j->vm = vm;
  vd_job_submit(d, &j->job);
}

/* ---------------------------------------------------------------- the balloon */

int vd_vm_set_memory_target(vd_vms *t, vd_vm *vm, uint64_t target, vs_error **err) {
  pthread_mutex_lock(&t->lock);
  json_object_set_new(json_object_get(vm->rec, "Config"), "MemoryTarget",
                      json_integer((json_int_t)target));
  int r = vd_vm_save(vm, err);
  bool running = vm->pid > 0;
  /* a pool under pressure may hold it lower for now (pool_memory.c) */
  uint64_t goal = vd_vm_balloon_goal_locked(vm);
  pthread_mutex_unlock(&t->lock);
  if (r < 0 || !running)
    return r;
  return vd_vm_ctl(vm, json_pack("{s:s, s:I}", "command", "balloon", "target", (json_int_t)goal),
                   NULL, err);
}

/* ---------------------------------------------------------------- recovery */

static vd_vm *vm_new(vd_daemon *d, const char *id, json_t *rec) {
  vd_vm *vm = vs_malloc0(sizeof(*vm));
  snprintf(vm->id, sizeof(vm->id), "%s", id);
  vm->rec = rec;
  vm->name = vs_strdup(json_string_value(json_object_get(rec, "Name")));
  vm->dir = vs_asprintf("%s/%s", d->vms->dir, id);
  vm->pidfd = -1;
  vm->spawn_pidfd = -1;
  vm->src.kind = VD_SRC_VM;
  vm->src.owner = vm;
  vm->restart_timerfd = -1;
  vm->restart_src.kind = VD_SRC_VM_RESTART;
  vm->restart_src.owner = vm;
  vm->manual_stop = json_is_true(json_object_get(rec, "ManuallyStopped"));
  vm->restart_count = (int)json_integer_value(json_object_get(rec, "RestartCount"));
  return vm;
}

static void vm_recover_one(vd_daemon *d, const char *id) {
  _cleanup_free_ char *dir = vs_asprintf("%s/%s", d->vms->dir, id);
  _cleanup_free_ char *rpath = vs_asprintf("%s/record.json", dir);
  vs_error *e = NULL;
  json_t *rec = vs_json_load_file(rpath, 1 << 20, &e);
  if (!rec || !json_string_value(json_object_get(rec, "Name"))) {
    /* a create killed before its commit point */
    vs_log_warn("vm directory %s has no valid record, removing it: %s", dir, e ? e->msg : "");
    vs_error_free(e);
    json_decref(rec);
    vs_rm_rf(dir, NULL);
    return;
  }
  vd_vm *vm = vm_new(d, id, rec);
  const char *fin = json_string_value(json_object_get(rec, "FinishedAt"));
  vm->finished_at = fin ? vs_strdup(fin) : NULL;
  vm->exit_code = (int)json_integer_value(json_object_get(rec, "ExitCode"));
  const char *er = json_string_value(json_object_get(rec, "Error"));
  vm->error = er && *er ? vs_strdup(er) : NULL;
  _cleanup_free_ char *mpath = vs_asprintf("%s/vmm.json", dir);
  json_t *m = vs_json_load_file(mpath, 1 << 16, NULL);
  pthread_mutex_lock(&d->vms->lock);
  if (m) {
    vm->pid = (pid_t)json_integer_value(json_object_get(m, "Pid"));
    vm->pid_start = (unsigned long long)json_integer_value(json_object_get(m, "StartTime"));
    const char *sa = json_string_value(json_object_get(m, "StartedAt"));
    vm->started_at = sa ? vs_strdup(sa) : NULL;
    vm_watch_locked(d, vm);
    if (vm->pid == 0)
      vm_mark_stopped_locked(vm, -1, "vessel-vmm ended while vesseld was not running");
    json_decref(m);
  }
  vd_vm_add_locked(d->vms, vm);
  pthread_mutex_unlock(&d->vms->lock);
  /* the loop does not run yet: asking the VMM whether it is paused blocks nothing */
  json_t *st = NULL;
  if (vm->pid > 0 && vd_vm_ctl(vm, json_pack("{s:s}", "command", "status"), &st, NULL) == 0) {
    const char *s = json_string_value(json_object_get(st, "state"));
    vm->paused = s && !strcmp(s, "paused");
    json_decref(st);
  }
  if (vm->pid == 0)
    vm_restart_schedule(d, vm, true);
}

int vd_vms_init(vd_daemon *d, vs_error **err) {
  vd_vms *t = vs_malloc0(sizeof(*t));
  pthread_mutex_init(&t->lock, NULL);
  pthread_cond_init(&t->cond, NULL);
  pthread_cond_init(&t->sampler_cond, NULL);
  t->ctr_held = json_object();
  t->dir = vs_asprintf("%s/vms", d->data_root);
  d->vms = t;
  if (vs_mkdir_p(t->dir, 0700, err) < 0 || vd_pools_load(d, err) < 0)
    return -1;
  _cleanup_free_ char *images = vs_asprintf("%s/vm-images", d->data_root);
  t->images = vs_store_open(images, err);
  if (!t->images)
    return vs_error_wrap(err, "the VM image store");
  DIR *dir = opendir(t->dir);
  if (!dir)
    return vs_error_set(err, errno, "open %s", t->dir);
  struct dirent *de;
  while ((de = readdir(dir)))
    if (de->d_name[0] != '.' && strlen(de->d_name) == 64)
      vm_recover_one(d, de->d_name);
  closedir(dir);
  return 0;
}

void vd_vms_free(vd_daemon *d) {
  vd_vms *t = d->vms;
  if (!t)
    return;
  for (size_t i = 0; i < t->n; i++)
    vd_vm_free(t->vms[i]);
  while (t->dead) {
    vd_vm *vm = t->dead;
    t->dead = vm->next_dead;
    vd_vm_free(vm);
  }
  free(t->vms);
  free(t->dir);
  if (t->images)
    vs_store_close(t->images);
  vd_pools_free(t);
  json_decref(t->ctr_held);
  pthread_mutex_destroy(&t->lock);
  pthread_cond_destroy(&t->cond);
  pthread_cond_destroy(&t->sampler_cond);
  free(t);
  d->vms = NULL;
}

/* ---------------------------------------------------------------- for the handlers */

/* Whether its VMM runs (the loop clears the pid when the VMM ends). */
bool vd_vm_running(vd_vms *t, const vd_vm *vm) {
  pthread_mutex_lock(&t->lock);
  bool r = vm->pid > 0;
  pthread_mutex_unlock(&t->lock);
  return r;
}

int vd_body_size(json_t *body, const char *field, uint64_t dflt, uint64_t *out, vs_error **err) {
  json_t *v = json_object_get(body, field);
  if (!v || json_is_null(v)) {
    *out = dflt;
    return 0;
  }
  if (json_is_integer(v) && json_integer_value(v) > 0) {
    *out = (uint64_t)json_integer_value(v);
    return 0;
  }
  if (json_is_string(v))
    return vs_parse_size(json_string_value(v), field, out, err);
  return vs_error_set(err, EINVAL,
                      "%s: expected a positive number of bytes or a size such as "
                      "\"512M\", found %s",
                      field, vs_json_type_name(v));
}

static int file_readable(const char *what, const char *path, vs_error **err) {
  if (path[0] != '/')
    return vs_error_set(err, EINVAL, "%s %s: an absolute path is needed", what, path);
  if (access(path, R_OK) < 0)
    return vs_error_set(err, errno, "%s %s", what, path);
  return 0;
}

/* Publish: ["[IP:]HOST:GUEST[/udp]", ...] as `vessel vm create --publish` sends them, added to
 * Docker's PortBindings shape. */
static int publish_bindings(json_t *publish, json_t *bindings, vs_error **err) {
  if (!json_is_array(publish))
    return vs_error_set(err, EINVAL, "Publish: expected an array of \"HOST:GUEST\" strings");
  size_t i;
  json_t *v;
  json_array_foreach(publish, i, v) {
    net_port p;
    if (!json_is_string(v))
      return vs_error_set(err, EINVAL, "Publish[%zu]: expected a string such as \"8080:80\"", i);
    if (net_port_parse(json_string_value(v), &p, err) < 0)
      return vs_error_wrap(err, "Publish");
    _cleanup_free_ char *key =
        vs_asprintf("%u/%s", p.port, p.proto == NET_PROTO_UDP ? "udp" : "tcp");
    json_t *list = json_object_get(bindings, key);
    if (!list)
      json_object_set_new(bindings, key, list = json_array());
    char ip[INET_ADDRSTRLEN] = "";
    if (p.host_ip.s_addr)
      inet_ntop(AF_INET, &p.host_ip, ip, sizeof(ip));
    _cleanup_free_ char *hport = vs_asprintf("%u", p.host_port);
    json_array_append_new(list, json_pack("{s:s, s:s}", "HostIp", ip, "HostPort", hport));
  }
  return 0;
}

int vd_body_known_fields(json_t *body, const char *const *known, size_t n, const char *what,
                         vs_error **err) {
  const char *key;
  json_t *v;
  json_object_foreach(body, key, v) {
    bool ok = false;
    for (size_t i = 0; i < n; i++)
      ok = ok || !strcmp(key, known[i]);
    if (!ok)
      return vs_error_set(err, EINVAL, "unknown field %s in %s", key, what);
  }
  return 0;
}

int vd_vm_config_parse(json_t *body, json_t *cfg, json_t *disk, vs_error **err) {
  static const char *const known[] = {"Name",    "Cpus", "Memory",   "Kernel",       "Initrd",
                                      "Append",  "Disk", "DiskSize", "Network",      "PortBindings",
                                      "Publish", "Pool", "Qos",      "RestartPolicy"};
  if (vd_body_known_fields(body, known, ARRAY_SIZE(known), "a VM's configuration", err) < 0)
    return -1;
  int64_t cpus = 1;
  if (vs_json_get_int(body, "Cpus", false, &cpus, err) < 0)
    return -1;
  if (!json_object_get(body, "Cpus"))
    cpus = 1;
  if (cpus < 1 || cpus > 8)
    return vs_error_set(err, EINVAL, "Cpus %lld: a VM has 1 to 8 vCPUs", (long long)cpus);
  uint64_t mem;
  if (vd_body_size(body, "Memory", VM_DEFAULT_MEMORY, &mem, err) < 0)
    return -1;
  if (mem < (16ULL << 20) || mem > (64ULL << 30))
    return vs_error_set(err, EINVAL, "Memory %llu: a VM has 16 MiB to 64 GiB",
                        (unsigned long long)mem);
  const char *kernel = NULL, *initrd = NULL, *append = NULL, *base = NULL;
  if (vs_json_get_string(body, "Kernel", false, &kernel, err) < 0 ||
      vs_json_get_string(body, "Initrd", false, &initrd, err) < 0 ||
      vs_json_get_string(body, "Append", false, &append, err) < 0 ||
      vs_json_get_string(body, "Disk", false, &base, err) < 0)
    return -1;
  _cleanup_free_ char *guest = NULL;
  _cleanup_free_ char *dk = NULL, *di = NULL;
  if (!kernel || !*kernel) {
    /* the default guest: Debian's kernel and vessel's initramfs from scripts/fetch-guest */
    guest = default_guest_dir();
    dk = vs_asprintf("%s/Image", guest);
    kernel = dk;
    if (!initrd) {
      di = vs_asprintf("%s/initrd.img", guest);
      initrd = di;
    }
    if (access(dk, R_OK) < 0)
      return vs_error_set(err, ENOENT,
                          "no Kernel given and the default guest is missing (%s): run "
                          "scripts/fetch-guest, or set VESSEL_CACHE for vesseld",
                          dk);
  }
  if (file_readable("Kernel", kernel, err) < 0 ||
      (initrd && *initrd && file_readable("Initrd", initrd, err) < 0) ||
      (base && *base && file_readable("Disk", base, err) < 0))
    return -1;
  uint64_t disk_size = 0;
  if (vd_body_size(body, "DiskSize", 0, &disk_size, err) < 0)
    return -1;
  const char *network = NULL;
  json_t *bindings = json_object_get(body, "PortBindings");
  if (vs_json_get_string(body, "Network", false, &network, err) < 0)
    return -1;
  if (network && !*network)
    network = NULL;
  if (bindings && !json_is_null(bindings) && !json_is_object(bindings))
    return vs_error_set(err, EINVAL,
                        "PortBindings: expected an object such as {\"80/tcp\": [{\"HostPort\": "
                        "\"8080\"}]}, found %s",
                        vs_json_type_name(bindings));
  _cleanup_json_ json_t *merged = NULL;
  if (json_object_get(body, "Publish")) {
    merged = json_is_object(bindings) ? json_deep_copy(bindings) : json_object();
    if (publish_bindings(json_object_get(body, "Publish"), merged, err) < 0)
      return -1;
    bindings = merged;
  }
  if (json_object_size(bindings) && !network)
    return vs_error_set(err, EINVAL, "PortBindings: published ports need a Network for the VM");
  const char *pool = NULL, *qos = NULL;
  if (vs_json_get_string(body, "Pool", false, &pool, err) < 0 ||
      vs_json_get_string(body, "Qos", false, &qos, err) < 0)
    return -1;
  if (qos && strcmp(qos, "guaranteed") != 0 && strcmp(qos, "burstable") != 0 &&
      strcmp(qos, "best-effort") != 0)
    return vs_error_set(
        err, EINVAL, "Qos \"%s\": use guaranteed, burstable or best-effort (as Kubernetes)", qos);
  const char *policy = NULL;
  if (vs_json_get_string(body, "RestartPolicy", false, &policy, err) < 0)
    return -1;
  if (policy && *policy) {
    const char *name;
    int64_t max;
    _cleanup_json_ json_t *rp = json_pack("{s:s}", "Name", policy);
    if (vd_restart_policy_check(rp, &name, &max, err) < 0)
      return vs_error_wrap(err, "RestartPolicy");
    json_object_set_new(cfg, "RestartPolicy", json_string(policy));
  }
  if (pool && *pool && strcmp(pool, VD_DEFAULT_POOL) != 0) {
    json_object_set_new(cfg, "Pool", json_string(pool));
    json_object_set_new(cfg, "Qos", json_string(qos ? qos : "guaranteed"));
  } else {
    /* the default pool: admitted against the host's capacity; a cgroup only for a QoS class */
    json_object_set_new(cfg, "Pool", json_string(VD_DEFAULT_POOL));
    if (qos)
      json_object_set_new(cfg, "Qos", json_string(qos));
  }
  if (network) {
    json_object_set_new(cfg, "Network", json_string(network));
    json_object_set_new(cfg, "PortBindings",
                        json_is_object(bindings) ? json_deep_copy(bindings) : json_object());
  }
  json_object_set_new(cfg, "Cpus", json_integer(cpus));
  json_object_set_new(cfg, "Memory", json_integer((json_int_t)mem));
  json_object_set_new(cfg, "Kernel", json_string(kernel));
  json_object_set_new(cfg, "Initrd", json_string(initrd ? initrd : ""));
  json_object_set_new(cfg, "Append", json_string(append ? append : VM_DEFAULT_APPEND));
  if ((base && *base) || disk_size) {
    json_object_set_new(disk, "Base", json_string(base ? base : ""));
    json_object_set_new(disk, "Size", json_integer((json_int_t)disk_size));
  }
  return 0;
}

/* The VM's own disk: a qcow2 overlay over the base (shared, never written), or a blank one. */
int vd_vm_create_disk(vd_daemon *d, vd_vm *vm, json_t *disk, vs_error **err) {
  const char *base = json_string_value(json_object_get(disk, "Base"));
  uint64_t size = (uint64_t)json_integer_value(json_object_get(disk, "Size"));
  /* a guest of a cluster with shared storage keeps its disk there, where every node sees it */
  const char *shared = json_string_value(json_object_get(vm->rec, "DiskDir"));
  if (shared && vs_mkdir_p(shared, 0700, err) < 0)
    return vs_error_wrap(err, "make the VM's disk");
  _cleanup_free_ char *path = vs_asprintf("%s/disk.qcow2", shared ? shared : vm->dir);
  if (shared && json_is_true(json_object_get(vm->rec, "DiskAdopt"))) {
    /* restarted by HA on another node (docs/cluster.md): the disk its guest left is the disk */
    if (access(path, R_OK | W_OK) < 0)
      return vs_error_set(err, errno, "the VM's disk %s on the cluster's shared storage", path);
    json_object_set_new(disk, "Path", json_string(path));
    json_object_set_new(vm->rec, "DiskPath", json_string(path));
    return 0;
  }
  _cleanup_free_ char *vmm = vd_vmm_path(d);
  _cleanup_free_ char *sz = size ? vs_asprintf("%llu", (unsigned long long)size) : NULL;
  char *argv[12] = {vmm, "img", "create", "-f", "qcow2"};
  size_t n = 5;
  if (base && *base) {
    argv[n++] = "-b";
    argv[n++] = (char *)base;
  }
  argv[n++] = path;
  if (sz)
    argv[n++] = sz;
  int status;
  vs_spawn_opts o = VS_SPAWN_OPTS_INIT;
  o.stdout_fd = VS_SPAWN_DEVNULL;
  pid_t pid;
  if (vs_spawn(argv, &o, &pid, err) < 0 || vs_wait_pid(pid, &status, err) < 0)
    return vs_error_wrap(err, "make the VM's disk");
  if (status != 0)
    return vs_error_set(err, EINVAL, "make the VM's disk: vessel-vmm img create failed for %s",
                        base && *base ? base : "a blank disk");
  json_object_set_new(disk, "Path", json_string(path));
  json_object_set_new(vm->rec, "DiskPath", json_string(path));
  return 0;
}

/* Make the directory and the record of a new VM and add it to the table (worker). */
static bool id_valid(const char *id) {
  size_t n = 0;
  for (; id[n]; n++)
    if (!((id[n] >= '0' && id[n] <= '9') || (id[n] >= 'a' && id[n] <= 'f')))
      return false;
  return n == 64;
}

vd_vm *vd_vm_create(vd_daemon *d, const char *name, json_t *rec, vs_error **err) {
  return vd_vm_create_with_id(d, name, NULL, rec, err);
}

vd_vm *vd_vm_create_with_id(vd_daemon *d, const char *name, const char *want_id, json_t *rec,
                            vs_error **err) {
  vd_vm *vm_found;
  vd_vms *t = d->vms;
  if (want_id && !id_valid(want_id)) {
    json_decref(rec);
    return vs_error_set(err, EINVAL, "VM ID %.80s: expected 64 hex digits", want_id), NULL;
  }
  _cleanup_free_ char *id = want_id ? vs_strdup(want_id) : vd_random_id();
  json_object_set_new(rec, "Id", json_string(id));
  json_object_set_new(rec, "Name", json_string(name));
  char *now = vd_now();
  json_object_set_new(rec, "Created", json_string(now));
  free(now);
  pthread_mutex_lock(&t->lock);
  bool taken = vd_vm_find_locked(t, name) && !strcmp(vd_vm_find_locked(t, name)->name, name);
  bool id_taken = want_id && (vm_found = vd_vm_find_locked(t, id)) && !strcmp(vm_found->id, id);
  pthread_mutex_unlock(&t->lock);
  if (taken || id_taken) {
    json_decref(rec);
    if (taken)
      return vs_error_set(err, EEXIST, "the name %s is already in use by a VM", name), NULL;
    return vs_error_set(err, EEXIST, "the ID %.12s is already in use by a VM", id), NULL;
  }
  vd_vm *vm = vm_new(d, id, rec);
  vm->busy = true;
  if (vs_mkdir_p(vm->dir, 0700, err) < 0) {
    vd_vm_free(vm);
    return NULL;
  }
  return vm;
}

/* Commit the record (the commit point of a create) and publish the VM. */
int vd_vm_commit(vd_daemon *d, vd_vm *vm, vs_error **err) {
  vd_vms *t = d->vms;
  if (vd_vm_save(vm, err) < 0)
    return -1;
  pthread_mutex_lock(&d->lock); /* the containers of the VM's pool count too */
  pthread_mutex_lock(&t->lock);
  vd_vm *other = vd_vm_find_locked(t, vm->name);
  bool taken = other && !strcmp(other->name, vm->name);
  json_t *cfg = json_object_get(vm->rec, "Config");
  const char *pool = json_string_value(json_object_get(cfg, "Pool"));
  /* admitted under the lock that adds it: two creates cannot both take the last room */
  int r =
      taken || !pool
          ? 0
          : vd_pool_admit_locked(d, pool, (double)json_integer_value(json_object_get(cfg, "Cpus")),
                                 json_integer_value(json_object_get(cfg, "Memory")), err);
  if (!taken && r == 0)
    vd_vm_add_locked(t, vm);
  pthread_mutex_unlock(&t->lock);
  pthread_mutex_unlock(&d->lock);
  if (taken)
    return vs_error_set(err, EEXIST, "the name %s is already in use by a VM", vm->name);
  if (r < 0)
    return -1;
  vd_event_emit(d, "vm", "create", vm->id, vd_vm_event_attrs(vm));
  return 0;
}

void vd_vm_discard(vd_vm *vm) {
  vs_rm_rf(vm->dir, NULL);
  vd_vm_free(vm);
}

char *vd_vm_snapshot_dir(const vd_vm *vm, const char *snap) {
  return vs_asprintf("%s/snapshots/%s", vm->dir, snap);
}

/* A snapshot with disk_overlay=true turns the VM's disk into the snapshot's frozen base and
 * moves the VMM to a new overlay: record that one, so a later cold boot uses it. */
int vd_vm_snapshot(vd_vms *t, vd_vm *vm, const char *dir, json_t **res, vs_error **err) {
  json_t *r = NULL;
  if (vd_vm_ctl(vm,
                json_pack("{s:s, s:s, s:b}", "command", "snapshot", "dir", dir, "disk_overlay", 1),
                &r, err) < 0)
    return -1;
  const char *spec = json_string_value(json_array_get(json_object_get(r, "disks"), 0));
  if (spec && json_object_get(vm->rec, "DiskPath")) {
    pthread_mutex_lock(&t->lock);
    json_object_set_new(vm->rec, "DiskPath", json_stringn(spec, strcspn(spec, ",")));
    int s = vd_vm_save(vm, err);
    pthread_mutex_unlock(&t->lock);
    if (s < 0) {
      json_decref(r);
      return -1;
    }
  }
  if (res)
    *res = r;
  else
    json_decref(r);
  return 0;
}

/* ---------------------------------------------------------------- the VM's NIC */

/* The tap lives as long as the VM (persistent, on the network's bridge): its address, the
 * reservation the network's DHCP answers the VM's MAC with, and its name in the network's DNS
 * stay the same across starts, restores and restarts of vesseld. */
int vd_vm_net_attach(vd_daemon *d, vd_vm *vm, vs_error **err) {
  json_t *cfg = json_object_get(vm->rec, "Config");
  const char *network = json_string_value(json_object_get(cfg, "Network"));
  if (!network)
    return 0;
  net_port *ports = NULL;
  size_t n_ports = 0;
  if (vd_net_tap_ports(json_object_get(cfg, "PortBindings"), &ports, &n_ports, err) < 0)
    return -1;
  net_endpoint_info info = {0};
  int r = vd_net_attach_tap(d, network, vm->name, NULL, ports, n_ports, &info, err);
  if (r < 0) {
    free(ports);
    return vs_error_wrap(err, "attach VM %s to network %s", vm->name, network);
  }
  char ip[INET_ADDRSTRLEN], gw[INET_ADDRSTRLEN];
  inet_ntop(AF_INET, &info.ip, ip, sizeof(ip));
  inet_ntop(AF_INET, &info.gateway, gw, sizeof(gw));
  json_t *published = json_object();
  for (size_t i = 0; i < n_ports; i++) {
    char hip[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &ports[i].host_ip, hip, sizeof(hip));
    _cleanup_free_ char *key =
        vs_asprintf("%u/%s", ports[i].port, ports[i].proto == NET_PROTO_UDP ? "udp" : "tcp");
    _cleanup_free_ char *hport = vs_asprintf("%u", ports[i].host_port);
    json_t *a = json_object_get(published, key);
    if (!a)
      json_object_set_new(published, key, a = json_array());
    json_array_append_new(a, json_pack("{s:s, s:s}", "HostIp", hip, "HostPort", hport));
  }
  free(ports);
  _cleanup_free_ char *mac = vs_asprintf("%02x:%02x:%02x:%02x:%02x:%02x", info.mac[0], info.mac[1],
                                         info.mac[2], info.mac[3], info.mac[4], info.mac[5]);
  json_object_set_new(vm->rec, "NetworkSettings",
                      json_pack("{s:s, s:s, s:s, s:s, s:i, s:s, s:o}", "Network", network, "Tap",
                                info.host_ifname, "MacAddress", mac, "IPAddress", ip, "IPPrefixLen",
                                (int)info.prefix, "Gateway", gw, "Ports", published));
  return 0;
}

void vd_vm_net_detach(vd_daemon *d, vd_vm *vm) {
  const char *network =
      json_string_value(json_object_get(json_object_get(vm->rec, "NetworkSettings"), "Network"));
  vs_error *e = NULL;
  if (network && vd_net_detach_tap(d, network, vm->name, &e) < 0) {
    vs_log_warn("vm %s: detach from network %s: %s", vm->name, network, e->msg);
    vs_error_free(e);
  }
}
