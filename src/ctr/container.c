/* Container lifecycle: create, start, run, kill, delete, pause/resume, ps, update, stats. */
#include "init.h"
#include "security.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>

static char *now_rfc3339(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  char buf[64];
  vs_utc_rfc3339(&ts, buf, sizeof(buf));
  return vs_strdup(buf);
}

static char *oci_state_text(const ctr_runtime *rt, const ctr_state *st, const char *status) {
  json_t *j = ctr_state_oci_json(rt, st);
  if (status)
    json_object_set_new(j, "status", json_string(status));
  /* A status we state (a hook's) is not the one derived from a process that may be gone. */
  if (status && strcmp(status, "stopped") != 0)
    json_object_set_new(j, "pid", json_integer(st->pid));
  char *s = json_dumps(j, JSON_COMPACT);
  json_decref(j);
  return s;
}

static int connect_console(const char *path, vs_error **err) {
  int fd = vs_unix_connect(path, err);
  if (fd < 0)
    return vs_error_wrap(err, "--console-socket");
  return fd;
}

static int write_id_map(pid_t pid, const char *file, const ctr_idmap *m, size_t n, vs_error **err) {
  char buf[340 * 40];
  size_t off = 0;
  for (size_t i = 0; i < n; i++)
    off += (size_t)snprintf(buf + off, sizeof(buf) - off, "%u %u %u\n", m[i].container_id,
                            m[i].host_id, m[i].size);
  _cleanup_free_ char *path = vs_asprintf("/proc/%d/%s", (int)pid, file);
  if (ctr_write_file(path, buf, err) < 0)
    return vs_error_wrap(err, "write the user namespace's %s", file);
  return 0;
}

static int write_id_maps(pid_t pid, const ctr_spec *s, vs_error **err) {
  /* setgroups must be denied before an unprivileged writer may set gid_map; as root we keep
   * setgroups() usable for additionalGids. */
  if (geteuid() != 0) {
    _cleanup_free_ char *p = vs_asprintf("/proc/%d/setgroups", (int)pid);
    if (ctr_write_file(p, "deny", err) < 0)
      return -1;
  }
  if (write_id_map(pid, "uid_map", s->uid_maps, s->n_uid_maps, err) < 0 ||
      write_id_map(pid, "gid_map", s->gid_maps, s->n_gid_maps, err) < 0)
    return -1;
  return 0;
}

/* The time namespace only applies to children: make one for the init before cloning it. */
static int prepare_time_ns(const ctr_spec *s, int *saved, vs_error **err) {
  *saved = -1;
  if (!s->ns[CTR_NS_TIME].present)
    return 0;
  *saved = open("/proc/self/ns/time_for_children", O_RDONLY | O_CLOEXEC);
  if (*saved < 0)
    return vs_error_set(err, errno, "open /proc/self/ns/time_for_children");
  if (s->ns[CTR_NS_TIME].path) {
    _cleanup_close_ int fd = open(s->ns[CTR_NS_TIME].path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || setns(fd, CLONE_NEWTIME) < 0)
      return vs_error_set(err, errno, "linux.namespaces: join time namespace %s",
                          s->ns[CTR_NS_TIME].path);
    return 0;
  }
  if (unshare(CLONE_NEWTIME) < 0)
    return vs_error_set(err, errno, "unshare the time namespace");
  if (s->has_time_offsets) {
    char buf[128];
    snprintf(buf, sizeof(buf), "monotonic %lld %lld\nboottime %lld %lld\n",
             (long long)s->time_offsets[0][0], (long long)s->time_offsets[0][1],
             (long long)s->time_offsets[1][0], (long long)s->time_offsets[1][1]);
    if (ctr_write_file("/proc/self/timens_offsets", buf, err) < 0)
      return vs_error_wrap(err, "linux.timeOffsets");
  }
  return 0;
}

static int prepare_pid_ns(const ctr_spec *s, int *saved, vs_error **err) {
  *saved = -1;
  if (!s->ns[CTR_NS_PID].present || !s->ns[CTR_NS_PID].path)
    return 0;
  *saved = open("/proc/self/ns/pid", O_RDONLY | O_CLOEXEC);
  _cleanup_close_ int fd = open(s->ns[CTR_NS_PID].path, O_RDONLY | O_CLOEXEC);
  if (*saved < 0 || fd < 0 || setns(fd, CLONE_NEWPID) < 0)
    return vs_error_set(err, errno, "linux.namespaces: join pid namespace %s",
                        s->ns[CTR_NS_PID].path);
  return 0;
}

static void restore_ns(int *saved, int type) {
  if (*saved >= 0) {
    setns(*saved, type);
    close(*saved);
    *saved = -1;
  }
}

typedef struct create_result {
  pid_t pid;
  int tty_master; /* foreground run with a terminal; -1 otherwise */
  ctr_spec *spec;
  ctr_state *state;
  ctr_cgroup *cg;
} create_result;

static void create_result_clear(create_result *r) {
  if (r->tty_master >= 0)
    close(r->tty_master);
  ctr_spec_free(r->spec);
  ctr_state_free(r->state);
  ctr_cgroup_free(r->cg);
  memset(r, 0, sizeof(*r));
  r->tty_master = -1;
}

/* Undo a failed create: nothing may be left behind (process, cgroup, state directory). */
static void create_rollback(const ctr_runtime *rt, const char *id, pid_t pid, ctr_cgroup *cg) {
  if (pid > 0) {
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
  }
  if (cg) {
    ctr_cgroup_kill(cg, SIGKILL, NULL);
    vs_error *e = NULL;
    if (ctr_cgroup_destroy(cg, &e) < 0) {
      vs_log_warn("%s", e->msg);
      vs_error_free(e);
    }
  }
  _cleanup_free_ char *dir = ctr_state_dir(rt, id);
  vs_rm_rf(dir, NULL);
}

/* clone() for the init, into the cgroup2 directory cgroup2_fd when there is one and the
 * kernel has clone3 with CLONE_INTO_CGROUP (5.7); *into says which happened, in the child too
 * (it is set before each attempt, so the child's copy tells how it was made). */
static pid_t clone_init(unsigned long flags, int cgroup2_fd, bool *into) {
  if (cgroup2_fd >= 0) {
    struct clone_args ca = {.flags = (flags & ~(unsigned long)CSIGNAL) | CLONE_INTO_CGROUP,
                            .exit_signal = flags & CSIGNAL,
                            .cgroup = (uint64_t)cgroup2_fd};
    *into = true;
    pid_t pid = (pid_t)syscall(SYS_clone3, &ca, sizeof(ca));
    if (pid >= 0)
      return pid;
  }
  *into = false; /* the init writes itself into cgroup.procs instead */
  return (pid_t)syscall(SYS_clone, flags, NULL, NULL, NULL, NULL);
}

/* The SYNC_TTY message carries an fd: it has to be received with recvmsg. Peek first. */
int ctr_maybe_recv_tty(int sync_fd, int *master, vs_error **err) {
  char c;
  ssize_t n = recv(sync_fd, &c, 1, MSG_PEEK);
  if (n == 1 && c == SYNC_TTY) {
    *master = ctr_recv_fd(sync_fd, err);
    return *master < 0 ? -1 : 1;
  }
  return 0;
}

static int run_parent_side(const ctr_runtime *rt, create_result *r, int sync_fd, vs_error **err) {
  char msg[4096];
  for (;;) {
    int t = ctr_maybe_recv_tty(sync_fd, &r->tty_master, err);
    if (t < 0)
      return -1;
    if (t > 0)
      continue;
    int m = ctr_sync_recv(sync_fd, msg, sizeof(msg));
    if (m == SYNC_HOOKS) {
      if (r->spec->n_hooks[CTR_HOOK_PRESTART] || r->spec->n_hooks[CTR_HOOK_CREATE_RUNTIME]) {
        _cleanup_free_ char *st = oci_state_text(rt, r->state, "creating");
        if (ctr_hooks_run(r->spec, CTR_HOOK_PRESTART, st, err) < 0 ||
            ctr_hooks_run(r->spec, CTR_HOOK_CREATE_RUNTIME, st, err) < 0)
          return -1;
      }
      if (ctr_sync_send(sync_fd, SYNC_HOOKS_DONE, NULL) < 0)
        return vs_error_set(err, errno, "sync with the container init");
    } else if (m == SYNC_TTY) {
      /* handled by the receiver of the fd below; cannot happen here */
      return vs_error_set(err, EPROTO, "unexpected terminal message");
    } else if (m == SYNC_READY) {
      return 0;
    } else if (m == SYNC_ERROR) {
      return vs_error_set(err, 0, "container init: %s", msg);
    } else {
      return vs_error_set(err, m < 0 ? errno : 0, "container init exited during setup");
    }
  }
}

/* run: after READY the init keeps its end of the sync socket open until execve closes it
 * (O_CLOEXEC), so end of file means the program runs (or the init was killed, which the
 * status shows); run returns only then, as start does (start_container). A failure on the
 * way (a startContainer hook, execve) arrives as an error message. */
static int await_exec(int sync_fd, vs_error **err) {
  char msg[4096];
  int m = ctr_sync_recv(sync_fd, msg, sizeof(msg));
  if (m == 0)
    return 0;
  if (m == SYNC_ERROR)
    return vs_error_set(err, 0, "container init: %s", msg);
  return vs_error_set(err, m < 0 ? errno : EPROTO, "container init: unexpected message");
}

/* start_now (run): the init does not wait on exec.fifo for a separate `start` but goes on to
 * execute the process once it is ready, while the runtime records the container as running
 * (until then `state` says creating). */
static int create_container(const ctr_runtime *rt, const char *id, const ctr_create_opts *o,
                            bool start_now, create_result *r, vs_error **err) {
  memset(r, 0, sizeof(*r));
  r->tty_master = -1;
  if (ctr_id_validate(id, err) < 0)
    return -1;
  char bundle[4096];
  if (!realpath(o->bundle && o->bundle[0] ? o->bundle : ".", bundle))
    return vs_error_set(err, errno, "bundle %s", o->bundle ? o->bundle : ".");
  if (ctr_spec_load(bundle, true, &r->spec, err) < 0)
    return -1;
  ctr_spec *s = r->spec;
  if (ctr_security_validate(s->process.json, s->linux_json, err) < 0 ||
      ctr_cgroup_validate_resources(s->resources, err) < 0)
    return -1;
  _cleanup_free_ char *rootfs_in =
      s->root_path[0] == '/' ? vs_strdup(s->root_path) : vs_asprintf("%s/%s", bundle, s->root_path);
  char rootfs[4096];
  struct stat sb;
  if (!realpath(rootfs_in, rootfs) || stat(rootfs, &sb) < 0)
    return vs_error_set(err, errno, "root.path %s", rootfs_in);
  if (!S_ISDIR(sb.st_mode))
    return vs_error_set(err, ENOTDIR, "root.path %s", rootfs);
  if (s->process.terminal && !o->console_socket && !o->foreground)
    return vs_error_set(err, 0,
                        "process.terminal needs --console-socket when the runtime does "
                        "not stay in the foreground");
  if (vs_mkdir_p(rt->root, 0700, err) < 0)
    return vs_error_wrap(err, "runtime root");
  _cleanup_free_ char *dir = ctr_state_dir(rt, id);
  if (mkdir(dir, 0700) < 0) {
    if (errno == EEXIST)
      return vs_error_set(err, 0, "container \"%s\" already exists", id);
    return vs_error_set(err, errno, "mkdir %s", dir);
  }
  /* From here on every failure must undo what was made. */
  pid_t pid = -1;
  int sp[2] = {-1, -1};
  _cleanup_free_ char *fifo = vs_asprintf("%s/exec.fifo", dir);
  _cleanup_close_ int fifo_fd = -1, console_fd = -1, cgroup2_fd = -1;
  int saved_time = -1, saved_pid = -1;
  ctr_state *st = r->state = vs_malloc0(sizeof(ctr_state));
  st->id = vs_strdup(id);
  st->bundle = vs_strdup(bundle);
  st->rootfs = vs_strdup(rootfs);
  st->created = now_rfc3339();
  st->owner = vs_strdup("");
  st->stored = CTR_STATUS_CREATING;
  if (s->annotations)
    st->annotations = json_incref(s->annotations);
  st->config = json_incref(s->json);
  /* 0622 whatever the umask: a user-namespaced init reopens it as an unmapped "other". */
  if (!start_now && (mkfifo(fifo, 0622) < 0 || chmod(fifo, 0622) < 0)) {
    vs_error_set(err, errno, "mkfifo %s", fifo);
    goto fail;
  }
  if (!start_now && (fifo_fd = open(fifo, O_PATH | O_CLOEXEC)) < 0) {
    vs_error_set(err, errno, "open %s", fifo);
    goto fail;
  }
  /* The cgroup directories are decided now and made after clone, while the init enters its
   * namespaces and mounts its root: the init needs them only for the cgroup mount and for
   * joining, and waits for GO before either (init.c). */
  if (ctr_cgroup_plan(id, s->cgroups_path, &r->cg, err) < 0)
    goto fail;
  if (s->process.terminal && o->console_socket) {
    console_fd = connect_console(o->console_socket, err);
    if (console_fd < 0)
      goto fail;
  }
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) < 0) {
    vs_error_set(err, errno, "socketpair");
    goto fail;
  }
  if (prepare_pid_ns(s, &saved_pid, err) < 0 || prepare_time_ns(s, &saved_time, err) < 0)
    goto fail;
  unsigned long flags = SIGCHLD;
  if (s->ns[CTR_NS_PID].present && !s->ns[CTR_NS_PID].path)
    flags |= CLONE_NEWPID;
  if (s->ns[CTR_NS_USER].present && !s->ns[CTR_NS_USER].path)
    flags |= CLONE_NEWUSER;
  /* The init joins its cgroups itself (cheaper: see ctr_cgroup_open_unified) unless it may not
   * reach the host's cgroup files as the host's root by then: in a user namespace, or a mount
   * or cgroup namespace it joins. */
  bool self_join = !s->ns[CTR_NS_USER].present &&
                   !(s->ns[CTR_NS_MNT].present && s->ns[CTR_NS_MNT].path) &&
                   !(s->ns[CTR_NS_CGROUP].present && s->ns[CTR_NS_CGROUP].path);
  if (self_join && ctr_cgroup_open_unified(r->cg, &cgroup2_fd, err) < 0)
    goto fail;
  bool in_cgroup2 = false;
  fflush(NULL);
  pid = clone_init(flags, cgroup2_fd, &in_cgroup2);
  if (pid == 0) {
    close(sp[0]);
    bool have_go = false;
    pid_t host_pid = 0;
    ctr_init_ctx c = {
        .id = id,
        .spec = s,
        .process = &s->process,
        .bundle = bundle,
        .rootfs = rootfs,
        .sync_fd = sp[1],
        .fifo_fd = fifo_fd,
        .own_fds_dir = -1,
        .start_fd = -1,
        .console_fd = console_fd,
        .tty_to_runtime = s->process.terminal && !o->console_socket,
        .no_pivot = o->no_pivot,
        .new_keyring = !o->no_new_keyring,
        .preserve_fds = o->preserve_fds,
        .cg = r->cg,
        .join_cgroups = self_join,
        .in_cgroup2 = in_cgroup2,
        .have_go = &have_go,
        .host_pid = &host_pid,
    };
    ctr_init_main(&c);
  }
  int clone_errno = errno;
  restore_ns(&saved_pid, CLONE_NEWPID);
  restore_ns(&saved_time, CLONE_NEWTIME);
  close(sp[1]);
  sp[1] = -1;
  if (pid < 0) {
    vs_error_set(err, clone_errno, "clone the container init");
    goto fail;
  }
  st->pid = pid;
  st->pid_start = ctr_pid_start_time(pid);
  if (ctr_cgroup_make(r->cg, s->resources, err) < 0 ||
      (s->linux_json &&
       ctr_cgroup_allow_devices(r->cg, json_object_get(s->linux_json, "devices"), err) < 0) ||
      (!self_join && ctr_cgroup_add_pid(r->cg, pid, err) < 0) ||
      ((flags & CLONE_NEWUSER) && write_id_maps(pid, s, err) < 0))
    goto fail;
  st->cgroup = ctr_cgroup_to_json(r->cg);
  /* The init may have failed already: then the send fails and its error message is what
   * run_parent_side() reads next. */
  char pid_text[16];
  snprintf(pid_text, sizeof(pid_text), "%d", (int)pid);
  if (ctr_sync_send(sp[0], SYNC_GO, pid_text) < 0 && errno != EPIPE && errno != ECONNRESET) {
    vs_error_set(err, errno, "sync with the container init");
    goto fail;
  }
  if (ctr_state_save(rt, st, err) < 0)
    goto fail;
  if (run_parent_side(rt, r, sp[0], err) < 0 || (start_now && await_exec(sp[0], err) < 0))
    goto fail;
  st->stored = start_now ? CTR_STATUS_RUNNING : CTR_STATUS_CREATED;
  st->started = start_now;
  if (ctr_state_save(rt, st, err) < 0)
    goto fail;
  if (o->pid_file) {
    char buf[32];
    int n = snprintf(buf, sizeof(buf), "%d", (int)pid);
    if (vs_write_file_atomic(o->pid_file, buf, (size_t)n, 0644, err) < 0)
      goto fail;
  }
  close(sp[0]);
  sp[0] = -1;
  r->pid = pid;
  return 0;
fail:
  if (sp[0] >= 0)
    close(sp[0]);
  restore_ns(&saved_pid, CLONE_NEWPID);
  restore_ns(&saved_time, CLONE_NEWTIME);
  create_rollback(rt, id, pid, r->cg);
  return vs_error_wrap(err, "create container %s", id);
}

pid_t ctr_create(const ctr_runtime *rt, const char *id, const ctr_create_opts *o, vs_error **err) {
  create_result r;
  if (create_container(rt, id, o, false, &r, err) < 0) {
    create_result_clear(&r);
    return -1;
  }
  pid_t pid = r.pid;
  create_result_clear(&r);
  return pid;
}

/* ------------------------------------------------------------------ start */

static int saved_spec_with_hooks(const ctr_state *st, ctr_spec **spec, vs_error **err) {
  *spec = NULL;
  if (!json_object_get(st->config, "hooks"))
    return -1; /* callers only want the hooks */
  char *text = json_dumps(st->config, JSON_COMPACT);
  if (!text)
    return vs_error_set(err, 0, "container %s: no saved config", st->id);
  int r = ctr_spec_parse(text, strlen(text), false, spec, err);
  free(text);
  return r;
}

static int open_cgroup_of(const ctr_state *st, ctr_cgroup **cg, vs_error **err) {
  *cg = NULL;
  if (!st->cgroup)
    return vs_error_set(err, 0, "container %s has no cgroup", st->id);
  return ctr_cgroup_from_json(st->cgroup, cg, err);
}

/* Failures of poststart hooks are logged, not fatal (runc). The state they get says running,
 * as the process has been started, even when a short one has already exited by now. */
static void run_poststart_hooks(const ctr_runtime *rt, const ctr_state *st) {
  ctr_spec *spec = NULL;
  if (saved_spec_with_hooks(st, &spec, NULL) == 0 && spec && spec->n_hooks[CTR_HOOK_POSTSTART]) {
    _cleanup_free_ char *text = oci_state_text(rt, st, "running");
    vs_error *e = NULL;
    if (ctr_hooks_run(spec, CTR_HOOK_POSTSTART, text, &e) < 0) {
      vs_log_warn("%s", e->msg);
      vs_error_free(e);
    }
  }
  ctr_spec_free(spec);
}

/* Waits for the init to open exec.fifo (it is blocked in open until we do) and reads its
 * byte, watching that the init is alive meanwhile. */
static int release_init(const ctr_state *st, int fd, vs_error **err) {
  for (;;) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int r = poll(&p, 1, 100);
    if (r < 0 && errno != EINTR)
      return vs_error_set(err, errno, "poll exec.fifo");
    if (r > 0) {
      char c;
      ssize_t n = read(fd, &c, 1);
      if (n == 1)
        return 0;
      if (n < 0 && errno != EAGAIN && errno != EINTR)
        return vs_error_set(err, errno, "read exec.fifo");
      /* End of file: the init's write end came and went, its byte read by another start. */
      if (n == 0 && ctr_pid_alive(st->pid, st->pid_start))
        return vs_error_set(err, 0, "container %s is being started already", st->id);
    }
    if (!ctr_pid_alive(st->pid, st->pid_start))
      return vs_error_set(err, 0, "container init exited before start");
  }
}

/* Reads exec.fifo to the end of the file, as runc does: the init's write end closes at
 * execve (or when the init dies), so from then on the container's pid is the program's and a
 * signal sent to it is the program's business. Anything the init wrote after its first byte
 * is why it failed (a startContainer hook, execve). */
static int await_program(int fd, vs_error **err) {
  char msg[1024];
  size_t len = 0;
  for (;;) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, -1) < 0 && errno != EINTR)
      return vs_error_set(err, errno, "poll exec.fifo");
    ssize_t n = read(fd, msg + len, sizeof(msg) - 1 - len);
    if (n == 0)
      break;
    if (n < 0 && errno != EAGAIN && errno != EINTR)
      return vs_error_set(err, errno, "read exec.fifo");
    if (n > 0 && (len += (size_t)n) == sizeof(msg) - 1)
      break;
  }
  if (len == 0)
    return 0;
  msg[len] = 0;
  return vs_error_set(err, 0, "container init: %s", msg);
}

static int start_container(const ctr_runtime *rt, ctr_state *st, vs_error **err) {
  ctr_status s = ctr_state_status(rt, st);
  if (s != CTR_STATUS_CREATED)
    return vs_error_set(err, 0, "cannot start a container that is %s", ctr_status_name(s));
  _cleanup_free_ char *fifo = vs_asprintf("%s/%s/exec.fifo", rt->root, st->id);
  _cleanup_close_ int fd = open(fifo, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0)
    return vs_error_set(err, errno, "open %s", fifo);
  if (release_init(st, fd, err) < 0 || await_program(fd, err) < 0)
    return -1;
  /* The program runs: `state` says so once the fifo is gone (as runc's). Until then it said
   * created, which the spec's definition asks: the program had not been executed. */
  unlink(fifo);
  st->started = true;
  st->stored = CTR_STATUS_RUNNING;
  if (ctr_state_save(rt, st, err) < 0)
    return -1;
  run_poststart_hooks(rt, st);
  return 0;
}

int ctr_start(const ctr_runtime *rt, const char *id, vs_error **err) {
  ctr_state *st;
  if (ctr_state_load(rt, id, &st, err) < 0)
    return -1;
  int r = start_container(rt, st, err);
  ctr_state_free(st);
  return r;
}

/* ------------------------------------------------------------------ delete */

static void wait_gone(ctr_state *st, ctr_cgroup *cg) {
  for (int i = 0; i < 500; i++) {
    bool init_alive = ctr_pid_alive(st->pid, st->pid_start);
    size_t n = 0;
    pid_t *pids = NULL;
    if (cg)
      ctr_cgroup_pids(cg, &pids, &n, NULL);
    free(pids);
    if (!init_alive && n == 0)
      return;
    /* Reap it if it is our child (run, or create's rollback). */
    waitpid(st->pid, NULL, WNOHANG);
    struct timespec ts = {0, 10L * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
}

static int destroy_container(const ctr_runtime *rt, ctr_state *st, bool run_poststop,
                             vs_error **err) {
  ctr_cgroup *cg = NULL;
  if (st->cgroup && open_cgroup_of(st, &cg, err) < 0)
    return -1;
  size_t left = 0;
  pid_t *pids = NULL;
  if (cg && ctr_cgroup_pids(cg, &pids, &left, NULL) == 0 && left) {
    bool frozen = false;
    ctr_cgroup_is_frozen(cg, &frozen, NULL);
    ctr_cgroup_kill(cg, SIGKILL, NULL);
    if (frozen)
      ctr_cgroup_freeze(cg, false, NULL);
  }
  free(pids);
  if (ctr_pid_alive(st->pid, st->pid_start))
    kill(st->pid, SIGKILL);
  wait_gone(st, cg);
  /* The spec's lifecycle ends every created container with poststop, started or not (as
   * runc's destroy does); a create that never finished made no container. */
  if (run_poststop && st->stored != CTR_STATUS_CREATING) {
    ctr_spec *spec = NULL;
    if (saved_spec_with_hooks(st, &spec, NULL) == 0 && spec && spec->n_hooks[CTR_HOOK_POSTSTOP]) {
      _cleanup_free_ char *text = oci_state_text(rt, st, "stopped");
      vs_error *e = NULL;
      if (ctr_hooks_run(spec, CTR_HOOK_POSTSTOP, text, &e) < 0) {
        vs_log_warn("%s", e->msg);
        vs_error_free(e);
      }
    }
    ctr_spec_free(spec);
  }
  if (cg && ctr_cgroup_destroy(cg, err) < 0) {
    ctr_cgroup_free(cg);
    return vs_error_wrap(err, "delete container %s", st->id);
  }
  ctr_cgroup_free(cg);
  _cleanup_free_ char *dir = ctr_state_dir(rt, st->id);
  if (vs_rm_rf(dir, err) < 0)
    return vs_error_wrap(err, "delete container %s", st->id);
  return 0;
}

int ctr_delete(const ctr_runtime *rt, const char *id, bool force, vs_error **err) {
  ctr_state *st;
  if (ctr_state_load(rt, id, &st, err) < 0)
    return -1;
  ctr_status s = ctr_state_status(rt, st);
  int r;
  /* The spec: deleting a container that is not stopped MUST fail and change nothing. runc
   * deletes a created one anyway (it kills it first); we ask for --force, as for running. */
  if (s != CTR_STATUS_STOPPED && !force)
    r = vs_error_set(err, 0, "cannot delete container %s that is %s (use --force)", id,
                     ctr_status_name(s));
  else
    r = destroy_container(rt, st, true, err);
  ctr_state_free(st);
  return r;
}

/* ------------------------------------------------------------------ run */

static void set_raw(int fd, struct termios *saved, bool *was_set) {
  struct termios t;
  *was_set = false;
  if (!isatty(fd) || tcgetattr(fd, saved) < 0)
    return;
  t = *saved;
  cfmakeraw(&t);
  if (tcsetattr(fd, TCSANOW, &t) == 0)
    *was_set = true;
}

static void copy_once(int from, int to, bool *open_) {
  char buf[8192];
  ssize_t n = read(from, buf, sizeof(buf));
  if (n <= 0) {
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
      return;
    *open_ = false;
    return;
  }
  for (ssize_t off = 0; off < n;) {
    ssize_t w = write(to, buf + off, (size_t)(n - off));
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      return;
    off += w;
  }
}

static void resize_from(int from, int master) {
  struct winsize ws;
  if (master >= 0 && ioctl(from, TIOCGWINSZ, &ws) == 0)
    ioctl(master, TIOCSWINSZ, &ws);
}

/* Forward signals to the container and pump the terminal until the init exits. */
void ctr_forwarded_signals(sigset_t *set) {
  sigfillset(set);
  sigdelset(set, SIGSEGV);
  sigdelset(set, SIGBUS);
  sigdelset(set, SIGILL);
  sigdelset(set, SIGFPE);
}

/* The signals are blocked by the caller (before the container could start) so none is lost. */
int ctr_wait_foreground(pid_t pid, int master, vs_error **err) {
  sigset_t set;
  ctr_forwarded_signals(&set);
  _cleanup_close_ int sfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
  if (sfd < 0)
    return vs_error_set(err, errno, "signalfd");
  struct termios saved;
  bool raw = false, in_open = master >= 0, out_open = master >= 0;
  if (master >= 0) {
    set_raw(0, &saved, &raw);
    resize_from(0, master);
  }
  int status = 0;
  for (;;) {
    pid_t w = waitpid(pid, &status, WNOHANG);
    if (w < 0 && errno == ECHILD) {
      status = 255 << 8;
      break;
    }
    if (w == pid && !out_open)
      break;
    if (w == pid) {
      /* drain what the pty still holds, then stop */
      struct pollfd p = {.fd = master, .events = POLLIN};
      while (out_open && poll(&p, 1, 0) > 0)
        copy_once(master, 1, &out_open);
      break;
    }
    struct pollfd p[3] = {{.fd = sfd, .events = POLLIN},
                          {.fd = in_open ? 0 : -1, .events = POLLIN},
                          {.fd = out_open ? master : -1, .events = POLLIN}};
    int r = poll(p, 3, -1);
    if (r < 0 && errno != EINTR)
      break;
    if (p[0].revents & POLLIN) {
      struct signalfd_siginfo si;
      while (read(sfd, &si, sizeof(si)) == sizeof(si)) {
        if (si.ssi_signo == SIGCHLD)
          continue;
        if (si.ssi_signo == SIGWINCH) {
          resize_from(0, master);
          continue;
        }
        kill(pid, (int)si.ssi_signo);
      }
    }
    if (p[1].revents & (POLLIN | POLLHUP))
      copy_once(0, master, &in_open);
    if (p[2].revents & (POLLIN | POLLHUP | POLLERR))
      copy_once(master, 1, &out_open);
  }
  if (raw)
    tcsetattr(0, TCSANOW, &saved);
  if (WIFEXITED(status))
    return WEXITSTATUS(status);
  if (WIFSIGNALED(status))
    return 128 + WTERMSIG(status);
  return 255;
}

int ctr_run(const ctr_runtime *rt, const char *id, const ctr_create_opts *o, vs_error **err) {
  sigset_t set, old;
  ctr_forwarded_signals(&set);
  if (o->foreground)
    sigprocmask(SIG_BLOCK, &set, &old);
  create_result r;
  int status = -1;
  if (create_container(rt, id, o, true, &r, err) < 0 || !r.state)
    goto out;
  run_poststart_hooks(rt, r.state);
  if (!o->foreground) {
    status = 0;
    goto out;
  }
  status = ctr_wait_foreground(r.pid, r.tty_master, err);
  vs_error *e = NULL;
  if (destroy_container(rt, r.state, true, &e) < 0) {
    vs_log_warn("%s", e->msg);
    vs_error_free(e);
  }
out:
  create_result_clear(&r);
  if (o->foreground)
    sigprocmask(SIG_SETMASK, &old, NULL);
  return status;
}

/* ------------------------------------------------------------------ signals */

int ctr_kill(const ctr_runtime *rt, const char *id, int sig, bool all, vs_error **err) {
  ctr_state *st;
  if (ctr_state_load(rt, id, &st, err) < 0)
    return -1;
  int r = 0;
  ctr_status s = ctr_state_status(rt, st);
  if (all) {
    ctr_cgroup *cg = NULL;
    if (open_cgroup_of(st, &cg, err) < 0 || ctr_cgroup_kill(cg, sig, err) < 0)
      r = -1;
    ctr_cgroup_free(cg);
  } else if (s == CTR_STATUS_STOPPED || s == CTR_STATUS_CREATING) {
    r = vs_error_set(err, ESRCH, "container %s is not running", id);
  } else {
    /* A pidfd pins the process: the start-time check and the signal hit the same one. */
    int pfd = (int)syscall(SYS_pidfd_open, st->pid, 0);
    if (pfd < 0 || !ctr_pid_alive(st->pid, st->pid_start))
      r = vs_error_set(err, ESRCH, "container %s is not running", id);
    else if (syscall(SYS_pidfd_send_signal, pfd, sig, NULL, 0) < 0)
      r = vs_error_set(err, errno, "kill container %s", id);
    if (pfd >= 0)
      close(pfd);
  }
  ctr_state_free(st);
  return r;
}

/* ------------------------------------------------------------------ cgroup commands */

static int with_cgroup(const ctr_runtime *rt, const char *id, ctr_state **st, ctr_cgroup **cg,
                       vs_error **err) {
  *cg = NULL;
  if (ctr_state_load(rt, id, st, err) < 0)
    return -1;
  if (open_cgroup_of(*st, cg, err) < 0) {
    ctr_state_free(*st);
    return -1;
  }
  return 0;
}

int ctr_pause(const ctr_runtime *rt, const char *id, bool pause, vs_error **err) {
  ctr_state *st;
  ctr_cgroup *cg;
  if (with_cgroup(rt, id, &st, &cg, err) < 0)
    return -1;
  ctr_status s = ctr_state_status(rt, st);
  int r;
  if (pause && s != CTR_STATUS_RUNNING && s != CTR_STATUS_CREATED)
    r = vs_error_set(err, 0, "cannot pause container %s that is %s", id, ctr_status_name(s));
  else if (!pause && s != CTR_STATUS_PAUSED)
    r = vs_error_set(err, 0, "cannot resume container %s that is %s (not paused)", id,
                     ctr_status_name(s));
  else
    r = ctr_cgroup_freeze(cg, pause, err);
  ctr_cgroup_free(cg);
  ctr_state_free(st);
  return r;
}

int ctr_ps(const ctr_runtime *rt, const char *id, pid_t **pids, size_t *n, vs_error **err) {
  ctr_state *st;
  ctr_cgroup *cg;
  if (with_cgroup(rt, id, &st, &cg, err) < 0)
    return -1;
  int r = ctr_cgroup_pids(cg, pids, n, err);
  ctr_cgroup_free(cg);
  ctr_state_free(st);
  return r;
}

int ctr_update(const ctr_runtime *rt, const char *id, json_t *resources, vs_error **err) {
  ctr_state *st;
  ctr_cgroup *cg;
  if (with_cgroup(rt, id, &st, &cg, err) < 0)
    return -1;
  int r = ctr_cgroup_validate_resources(resources, err);
  if (r == 0)
    r = ctr_cgroup_update(cg, resources, err);
  ctr_cgroup_free(cg);
  ctr_state_free(st);
  return r;
}

json_t *ctr_stats(const ctr_runtime *rt, const char *id, vs_error **err) {
  ctr_state *st;
  ctr_cgroup *cg;
  if (with_cgroup(rt, id, &st, &cg, err) < 0)
    return NULL;
  json_t *data = ctr_cgroup_stats(cg, err);
  json_t *ev = NULL;
  if (data)
    ev = json_pack("{s:s,s:s,s:o}", "type", "stats", "id", id, "data", data);
  ctr_cgroup_free(cg);
  ctr_state_free(st);
  return ev;
}
