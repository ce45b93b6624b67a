/* docker exec: exec instances, their helper process and their hijacked streams (loop).
 *
 * An exec runs in a helper (`vessel-monitor --exec`, the monitor program in another mode) that
 * joins the container with src/ctr's ctr_exec and exits with the process's status. The helper is
 * vesseld's child: its stdin, stdout and stderr are pipes vesseld relays to the client of
 * `POST /exec/{id}/start`, and a pidfd says when it ended. Unlike a container, an exec does not
 * outlive the daemon (its pipes break).
 *
 * With a TTY the helper's stdin is a terminal rather than a pipe (vesseld keeps its master, in
 * raw mode so nothing is echoed or edited): the helper relays it into the process's own
 * terminal and, on SIGWINCH, copies its stdin's size onto that terminal, as a runtime in the
 * foreground does with the user's terminal. So `POST /exec/{id}/resize` is a TIOCSWINSZ on our
 * master and a SIGWINCH to the helper. */
#include "daemon/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>

#define EXEC_KEEP_FINISHED 256 /* finished exec records kept for inspect */
#define EXEC_READ_CHUNK 65536

struct vd_exec {
  char id[65];
  char ctr_id[65];
  json_t *cfg; /* the create body: Cmd, Env, User, WorkingDir, Tty, Attach* */
  bool tty, started, running, detached;
  int exit_code;
  pid_t pid;
  int pidfd, out_fd, err_fd, in_fd;
  int tty_fd;                /* TTY: the master of the helper's stdin terminal */
  unsigned short rows, cols; /* a size asked for before the helper started */
  vd_src pid_src, out_src, err_src, in_src;
  vd_conn *conn; /* the client of start, NULL once gone or detached */
  /* a health probe: stdout and stderr together, the first VD_HEALTH_OUTPUT_MAX bytes kept,
   * handed to the health checker when the probe is over */
  bool probe;
  char *probe_out;
  size_t probe_len;
  vd_exec *next;
};

static vd_exec *exec_find(vd_daemon *d, const char *id) {
  for (vd_exec *e = d->execs; e; e = e->next)
    if (!strcmp(e->id, id))
      return e;
  return NULL;
}

static void close_watched(vd_daemon *d, int *fd) {
  if (*fd < 0)
    return;
  vd_loop_del(d, *fd);
  close(*fd);
  *fd = -1;
}

static void exec_free(vd_daemon *d, vd_exec *e) {
  close_watched(d, &e->pidfd);
  close_watched(d, &e->out_fd);
  close_watched(d, &e->err_fd);
  close_watched(d, &e->in_fd);
  if (e->tty_fd >= 0)
    close(e->tty_fd);
  json_decref(e->cfg);
  free(e->probe_out);
  free(e);
}

/* Keep the list bounded: the oldest finished records go first. */
static void exec_trim(vd_daemon *d) {
  size_t finished = 0;
  for (vd_exec *e = d->execs; e; e = e->next)
    finished += e->started && !e->running;
  while (finished > EXEC_KEEP_FINISHED) {
    vd_exec **last = NULL;
    for (vd_exec **pp = &d->execs; *pp; pp = &(*pp)->next)
      if ((*pp)->started && !(*pp)->running && !(*pp)->conn)
        last = pp;
    if (!last)
      return;
    vd_exec *gone = *last;
    *last = gone->next;
    exec_free(d, gone);
    finished--;
  }
}

void vd_execs_free(vd_daemon *d) {
  while (d->execs) {
    vd_exec *e = d->execs;
    d->execs = e->next;
    exec_free(d, e);
  }
}

/* ---------------------------------------------------------------- create, inspect */

static int check_exec_body(json_t *body, vs_error **err) {
  const char **cmd = NULL, **env = NULL;
  size_t n = 0;
  const char *s;
  bool b;
  int r = vs_json_get_string_array(body, "Cmd", true, &cmd, &n, err);
  free(cmd);
  if (r < 0)
    return -1;
  if (n == 0)
    return vs_error_set(err, EINVAL, "No exec command specified");
  r = vs_json_get_string_array(body, "Env", false, &env, NULL, err);
  free(env);
  if (r < 0 || vs_json_get_string(body, "User", false, &s, err) < 0 ||
      vs_json_get_string(body, "WorkingDir", false, &s, err) < 0 ||
      vs_json_get_bool(body, "Tty", false, &b, err) < 0 ||
      vs_json_get_bool(body, "AttachStdin", false, &b, err) < 0 ||
      vs_json_get_bool(body, "AttachStdout", false, &b, err) < 0 ||
      vs_json_get_bool(body, "AttachStderr", false, &b, err) < 0)
    return -1;
  if (vs_json_get_bool(body, "Privileged", false, &b, err) < 0)
    return -1;
  unsigned char keys[VD_DETACH_KEYS_MAX];
  size_t nkeys;
  const char *dk = NULL;
  /* docker-py sends "detachKeys": Go's decoder, dockerd's, ignores the case of names */
  if (vs_json_get_string(body, "DetachKeys", false, &dk, err) < 0 ||
      vs_json_get_string(body, "detachKeys", false, &dk, err) < 0 ||
      vd_detach_keys_parse(dk, keys, &nkeys, err) < 0)
    return -1;
  const char *wd = json_string_value(json_object_get(body, "WorkingDir"));
  if (wd && *wd && wd[0] != '/')
    return vs_error_set(err, EINVAL, "WorkingDir %s is not an absolute path", wd);
  return 0;
}

void vd_h_exec_create(vd_call *c) {
  vd_daemon *d = c->d;
  _cleanup_json_ json_t *body = vd_call_body_object(c);
  if (!body)
    return;
  vs_error *e = NULL;
  if (check_exec_body(body, &e) < 0) {
    vd_call_error(c, 400, "%s", e->msg);
    vs_error_free(e);
    return;
  }
  pthread_mutex_lock(&d->lock);
  vd_container *ctr = vd_ctr_find(d, c->arg);
  bool running = ctr && ctr->state == VD_CTR_RUNNING && !ctr->paused;
  char ctr_id[65] = "";
  if (ctr)
    snprintf(ctr_id, sizeof(ctr_id), "%s", ctr->id);
  pthread_mutex_unlock(&d->lock);
  if (!ctr) {
    vd_call_error(c, 404, "No such container: %s", c->arg);
    return;
  }
  if (!running) {
    vd_call_error(c, 409, "Container %s is not running", c->arg);
    return;
  }
  vd_exec *x = vs_malloc0(sizeof(*x));
  _cleanup_free_ char *id = vd_random_id();
  snprintf(x->id, sizeof(x->id), "%s", id);
  snprintf(x->ctr_id, sizeof(x->ctr_id), "%s", ctr_id);
  x->cfg = json_incref(body);
  x->tty = json_is_true(json_object_get(body, "Tty"));
  x->pidfd = x->out_fd = x->err_fd = x->in_fd = x->tty_fd = -1;
  x->next = d->execs;
  d->execs = x;
  exec_trim(d);
  vd_call_json(c, 201, json_pack("{s:s}", "Id", x->id));
}

void vd_h_exec_inspect(vd_call *c) {
  vd_exec *x = exec_find(c->d, c->arg);
  if (!x) {
    vd_call_error(c, 404, "No such exec instance: %s", c->arg);
    return;
  }
  json_t *cmd = json_object_get(x->cfg, "Cmd");
  json_t *args = json_deep_copy(cmd);
  json_array_remove(args, 0);
  const char *user = json_string_value(json_object_get(x->cfg, "User"));
  vd_call_json(
      c, 200,
      json_pack("{s:s, s:b, s:i, s:{s:O, s:o, s:b, s:s, s:b}, s:b, s:b, s:b, s:s, s:i, s:b, "
                "s:s}",
                "ID", x->id, "Running", x->running, "ExitCode", x->exit_code, "ProcessConfig",
                "entrypoint", json_array_get(cmd, 0), "arguments", args, "tty", x->tty, "user",
                user ? user : "", "privileged", json_is_true(json_object_get(x->cfg, "Privileged")),
                "OpenStdin", json_is_true(json_object_get(x->cfg, "AttachStdin")), "OpenStdout",
                json_is_true(json_object_get(x->cfg, "AttachStdout")), "OpenStderr",
                json_is_true(json_object_get(x->cfg, "AttachStderr")), "ContainerID", x->ctr_id,
                "Pid", x->running ? (int)x->pid : 0, "CanRemove", 0, "DetachKeys", ""));
  if (!x->started)
    json_object_set_new(c->json, "ExitCode", json_null());
}

/* ---------------------------------------------------------------- the process */

/* The exec's OCI process: the container's, with the exec's command, environment, user,
 * directory and terminal. */
static json_t *exec_process(vd_daemon *d, vd_exec *x, vs_error **err) {
  json_t *p = ctr_exec_default_process(&d->rt, x->ctr_id, err);
  if (!p)
    return NULL;
  json_object_set(p, "args", json_object_get(x->cfg, "Cmd"));
  json_t *env = json_object_get(p, "env");
  if (!json_is_array(env)) {
    env = json_array();
    json_object_set_new(p, "env", env);
  }
  size_t i, j;
  json_t *v, *w;
  json_array_foreach(json_object_get(x->cfg, "Env"), i, v) {
    const char *kv = json_string_value(v);
    size_t klen = strcspn(kv, "=");
    bool replaced = false;
    json_array_foreach(env, j, w) if (!strncmp(json_string_value(w), kv, klen) &&
                                      json_string_value(w)[klen] == '=') {
      json_array_set(env, j, v);
      replaced = true;
      break;
    }
    if (!replaced)
      json_array_append(env, v);
  }
  if (x->tty)
    json_array_append_new(env, json_string("TERM=xterm"));
  const char *wd = json_string_value(json_object_get(x->cfg, "WorkingDir"));
  if (wd && *wd)
    json_object_set_new(p, "cwd", json_string(wd));
  json_object_set_new(p, "terminal", json_boolean(x->tty));
  if (json_is_true(json_object_get(x->cfg, "Privileged"))) { /* exec --privileged: every cap */
    json_t *caps = vd_spec_all_caps();
    json_object_set_new(
        p, "capabilities",
        json_pack("{s:O, s:O, s:O}", "bounding", caps, "effective", caps, "permitted", caps));
    json_decref(caps);
  }
  const char *user = json_string_value(json_object_get(x->cfg, "User"));
  if (user && *user) {
    _cleanup_free_ char *rootfs = vs_asprintf("%s/%s/rootfs", d->containers_dir, x->ctr_id);
    long uid, gid;
    if (vd_spec_resolve_user(rootfs, user, &uid, &gid, err) < 0) {
      json_decref(p);
      return NULL;
    }
    json_object_set_new(p, "user",
                        json_pack("{s:I, s:I}", "uid", (json_int_t)uid, "gid", (json_int_t)gid));
  }
  return p;
}

static int watch(vd_daemon *d, int fd, uint32_t events, vd_src *src, vd_src_kind kind, vd_exec *x) {
  src->kind = kind;
  src->owner = x;
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  return vd_loop_add(d, fd, events, src, NULL);
}

static void close_pipe(int p[2]) {
  for (int i = 0; i < 2; i++)
    if (p[i] >= 0)
      close(p[i]);
  p[0] = p[1] = -1;
}

/* The helper's process description: a temporary file it reads and removes (no fsync). */
static char *write_process_file(vd_daemon *d, vd_exec *x, vs_error **err) {
  _cleanup_json_ json_t *proc = exec_process(d, x, err);
  if (!proc)
    return NULL;
  _cleanup_free_ char *dir = vs_asprintf("%s/execs", d->exec_root);
  char *file = vs_asprintf("%s/%s.json", dir, x->id);
  _cleanup_free_ char *text = json_dumps(proc, JSON_COMPACT);
  if (vs_mkdir_p(dir, 0700, err) < 0) {
    free(file);
    return NULL;
  }
  _cleanup_close_ int fd = open(file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0 || vs_write_all(fd, text, strlen(text), err) < 0) {
    if (fd < 0)
      vs_error_set(err, errno, "create %s", file);
    free(file);
    return NULL;
  }
  return file;
}

/* The helper's stdin terminal: in[0] the slave (raw, at the size asked so far), in[1] and
 * x->tty_fd the master. */
static int open_stdin_terminal(vd_exec *x, int in[2], vs_error **err) {
  int master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
  char name[64];
  if (master < 0 || grantpt(master) < 0 || unlockpt(master) < 0 ||
      ptsname_r(master, name, sizeof(name)) != 0) {
    int e = errno;
    if (master >= 0)
      close(master);
    return vs_error_set(err, e, "a terminal for the exec's stdin");
  }
  int slave = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
  struct termios t;
  if (slave < 0 || tcgetattr(slave, &t) < 0) {
    int e = errno;
    close(master);
    if (slave >= 0)
      close(slave);
    return vs_error_set(err, e, "open %s", name);
  }
  cfmakeraw(&t);
  tcsetattr(slave, TCSANOW, &t);
  if (x->rows && x->cols) {
    struct winsize ws = {.ws_row = x->rows, .ws_col = x->cols};
    ioctl(master, TIOCSWINSZ, &ws);
  }
  x->tty_fd = master;
  in[0] = slave;
  in[1] = fcntl(master, F_DUPFD_CLOEXEC, 3);
  return 0;
}

/* Start the helper with pipes for the streams the client attached. */
static int exec_spawn(vd_daemon *d, vd_exec *x, vs_error **err) {
  _cleanup_free_ char *file = write_process_file(d, x, err);
  if (!file)
    return -1;
  int in[2] = {-1, -1}, out[2] = {-1, -1}, er[2] = {-1, -1};
  bool want_in = json_is_true(json_object_get(x->cfg, "AttachStdin")) && !x->detached;
  bool merged = x->tty || x->probe; /* one pipe for stdout and stderr */
  if (x->tty && open_stdin_terminal(x, in, err) < 0)
    goto fail;
  if ((want_in && !x->tty && pipe2(in, O_CLOEXEC) < 0) || pipe2(out, O_CLOEXEC) < 0 ||
      (!merged && pipe2(er, O_CLOEXEC) < 0)) {
    vs_error_set(err, errno, "pipe");
    goto fail;
  }
  char *argv[] = {d->monitor_path, "--exec",         file,       "--id",
                  x->ctr_id,       "--runtime-root", d->rt.root, NULL};
  vs_spawn_opts o = VS_SPAWN_OPTS_INIT;
  o.stdin_fd = in[0] >= 0 ? in[0] : VS_SPAWN_DEVNULL;
  o.stdout_fd = out[1];
  o.stderr_fd = merged ? out[1] : er[1];
  if (vs_spawn(argv, &o, &x->pid, err) < 0)
    goto fail;
  x->pidfd = (int)syscall(SYS_pidfd_open, x->pid, 0);
  if (x->pidfd < 0 || watch(d, x->pidfd, EPOLLIN, &x->pid_src, VD_SRC_EXEC_PID, x) < 0) {
    vs_error_set(err, errno, "watch the exec helper");
    kill(x->pid, SIGKILL);
    waitpid(x->pid, NULL, 0);
    goto fail;
  }
  x->out_fd = out[0];
  out[0] = -1;
  watch(d, x->out_fd, EPOLLIN, &x->out_src, VD_SRC_EXEC_OUT, x);
  if (er[0] >= 0) {
    x->err_fd = er[0];
    er[0] = -1;
    watch(d, x->err_fd, EPOLLIN, &x->err_src, VD_SRC_EXEC_OUT, x);
  }
  if (in[1] >= 0 && want_in) {
    x->in_fd = in[1];
    in[1] = -1;
    watch(d, x->in_fd, 0, &x->in_src, VD_SRC_EXEC_IN, x);
  }
  close_pipe(in);
  close_pipe(out);
  close_pipe(er);
  x->started = x->running = true;
  return 0;
fail:
  unlink(file);
  close_pipe(in);
  close_pipe(out);
  close_pipe(er);
  if (x->tty_fd >= 0)
    close(x->tty_fd);
  x->tty_fd = -1;
  return -1;
}

/* ---------------------------------------------------------------- streams */

/* The exec is over when its helper exited and its output is drained: end the client's stream
 * (a hijacked connection closes), after ExitCode is set for the inspect that follows. */
static void exec_maybe_finish(vd_daemon *d, vd_exec *x) {
  if (x->running || x->out_fd >= 0 || x->err_fd >= 0)
    return;
  close_watched(d, &x->in_fd);
  if (x->probe) {
    x->probe = false;
    vd_health_probe_done(d, x->ctr_id, x->id, x->exit_code, x->probe_out ? x->probe_out : "",
                         x->probe_len);
  }
  vd_conn *c = x->conn;
  x->conn = NULL;
  if (c && c->exec == x) {
    c->exec = NULL;
    vd_conn_stream_end(c);
  }
}

static void exec_output(vd_daemon *d, vd_exec *x, int *fd, int stream) {
  char buf[EXEC_READ_CHUNK + 8];
  ssize_t n = read(*fd, buf + 8, EXEC_READ_CHUNK);
  if (n < 0 && (errno == EINTR || errno == EAGAIN))
    return;
  if (n <= 0) {
    close_watched(d, fd);
    exec_maybe_finish(d, x);
    return;
  }
  if (x->probe) {
    size_t keep = VD_HEALTH_OUTPUT_MAX - x->probe_len;
    if (keep > (size_t)n)
      keep = (size_t)n;
    if (!x->probe_out)
      x->probe_out = vs_malloc0(VD_HEALTH_OUTPUT_MAX + 1);
    memcpy(x->probe_out + x->probe_len, buf + 8, keep);
    x->probe_len += keep;
    return;
  }
  vd_conn *c = x->conn;
  if (!c)
    return; /* nobody listens: the output is dropped, as dockerd does for a detached exec */
  if (x->tty) {
    vd_conn_stream_write(c, buf + 8, (size_t)n);
  } else {
    buf[0] = (char)stream;
    buf[1] = buf[2] = buf[3] = 0;
    buf[4] = (char)(n >> 24);
    buf[5] = (char)(n >> 16);
    buf[6] = (char)(n >> 8);
    buf[7] = (char)n;
    vd_conn_stream_write(c, buf, (size_t)n + 8);
  }
  vd_conn_flush(c);
}

/* Client input to the helper's stdin; the client's end of input closes it. */
void vd_exec_forward(vd_conn *c) {
  vd_exec *x = c->exec;
  if (!x || x->in_fd < 0) {
    c->in_len = 0;
    return;
  }
  while (c->in_len) {
    ssize_t n = write(x->in_fd, c->in, c->in_len);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && errno == EAGAIN)
      break;
    if (n <= 0) { /* it stopped reading its stdin */
      c->in_len = 0;
      close_watched(c->d, &x->in_fd);
      return;
    }
    memmove(c->in, c->in + n, c->in_len - (size_t)n);
    c->in_len -= (size_t)n;
  }
  if (c->in_len) {
    struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = &x->in_src};
    epoll_ctl(c->d->epfd, EPOLL_CTL_MOD, x->in_fd, &ev);
  } else if (c->peer_eof) {
    close_watched(c->d, &x->in_fd);
  } else {
    struct epoll_event ev = {.events = 0, .data.ptr = &x->in_src};
    epoll_ctl(c->d->epfd, EPOLL_CTL_MOD, x->in_fd, &ev);
  }
  vd_conn_update(c);
}

void vd_exec_event(vd_daemon *d, vd_src *src, uint32_t events) {
  vd_exec *x = src->owner;
  if (src == &x->pid_src) {
    int status = 0;
    close_watched(d, &x->pidfd);
    if (waitpid(x->pid, &status, 0) == x->pid)
      x->exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    else
      x->exit_code = 255;
    x->running = false;
    vs_log_debug("exec %.12s in %.12s exited with %d", x->id, x->ctr_id, x->exit_code);
    vd_event_emit(
        d, "container", "exec_die", x->ctr_id,
        json_pack("{s:s, s:o}", "execID", x->id, "exitCode", json_sprintf("%d", x->exit_code)));
    exec_maybe_finish(d, x);
  } else if (src == &x->out_src) {
    exec_output(d, x, &x->out_fd, 1);
  } else if (src == &x->err_src) {
    exec_output(d, x, &x->err_fd, 2);
  } else if (src == &x->in_src) {
    if (events & (EPOLLERR | EPOLLHUP))
      close_watched(d, &x->in_fd);
    if (x->conn)
      vd_exec_forward(x->conn);
  }
}

void vd_exec_detach_conn(vd_conn *c) {
  vd_exec *x = c->exec;
  if (!x)
    return;
  c->exec = NULL;
  x->conn = NULL;
  close_watched(c->d, &x->in_fd);
}

/* ---------------------------------------------------------------- health probes */

int vd_exec_probe_start(vd_daemon *d, const char *ctr_id, json_t *cmd, char **exec_id,
                        vs_error **err) {
  vd_exec *x = vs_malloc0(sizeof(*x));
  _cleanup_free_ char *id = vd_random_id();
  snprintf(x->id, sizeof(x->id), "%s", id);
  snprintf(x->ctr_id, sizeof(x->ctr_id), "%s", ctr_id);
  x->cfg = json_pack("{s:O, s:b, s:b}", "Cmd", cmd, "AttachStdout", 1, "AttachStderr", 1);
  x->probe = x->detached = true;
  x->pidfd = x->out_fd = x->err_fd = x->in_fd = -1;
  if (exec_spawn(d, x, err) < 0) {
    exec_free(d, x);
    return -1;
  }
  x->next = d->execs;
  d->execs = x;
  exec_trim(d);
  *exec_id = vs_strdup(x->id);
  return 0;
}

void vd_exec_probe_kill(vd_daemon *d, const char *exec_id) {
  vd_exec *x = exec_find(d, exec_id);
  if (!x || !x->running)
    return;
  x->probe = false; /* its result no longer counts */
  kill(x->pid, SIGKILL);
}

/* ---------------------------------------------------------------- start */

static const char *exec_detach_keys(const vd_exec *x) {
  const char *k = json_string_value(json_object_get(x->cfg, "DetachKeys"));
  return k ? k : json_string_value(json_object_get(x->cfg, "detachKeys"));
}

void vd_h_exec_start(vd_call *c) {
  vd_daemon *d = c->d;
  vd_exec *x = exec_find(d, c->arg);
  if (!x) {
    vd_call_error(c, 404, "No such exec instance: %s", c->arg);
    return;
  }
  json_t *body = NULL;
  if (c->body_len) {
    body = vd_call_body_object(c);
    if (!body)
      return;
  }
  bool detach = json_is_true(json_object_get(body, "Detach"));
  json_decref(body);
  if (x->started) {
    vd_call_error(c, 409, "Exec %s has already run", c->arg);
    return;
  }
  pthread_mutex_lock(&d->lock);
  vd_container *ctr = vd_ctr_find(d, x->ctr_id);
  bool running = ctr && ctr->state == VD_CTR_RUNNING && !ctr->paused;
  pthread_mutex_unlock(&d->lock);
  if (!running) {
    vd_call_error(c, 409, "Container %.12s is not running", x->ctr_id);
    return;
  }
  x->detached = detach;
  vs_error *e = NULL;
  if (exec_spawn(d, x, &e) < 0) {
    vd_call_error(c, e->errnum == EINVAL ? 400 : 500, "exec in %.12s: %s", x->ctr_id, e->msg);
    vs_error_free(e);
    return;
  }
  if (detach) {
    vd_call_status(c, 200);
    return;
  }
  vd_conn *conn = c->conn;
  c->streamed = true;
  conn->exec = x;
  conn->stream = VD_STREAM_EXEC;
  /* as dockerd: a terminal's input is watched for the detach keys (checked at create) */
  conn->detach_matched = 0;
  if (x->tty && x->in_fd >= 0 &&
      vd_detach_keys_parse(exec_detach_keys(x), conn->detach_keys, &conn->n_detach_keys, NULL) == 0)
    vd_detach_filter(conn, 0);
  x->conn = conn;
  /* API 1.41 names both kinds raw-stream; the multiplexing is what Tty says */
  vd_conn_hijack_begin(conn, "application/vnd.docker.raw-stream");
  vd_exec_forward(conn);
  if (!conn->dead && conn->stream == VD_STREAM_EXEC && conn->detach_seen)
    vd_conn_stream_end(conn); /* the detach keys came with the request itself */
}

/* POST /exec/{id}/resize?h=&w=: the size of the exec's terminal (see the top of this file). */
void vd_h_exec_resize(vd_call *c) {
  uint64_t h, w;
  if (vd_call_terminal_size(c, &h, &w) < 0)
    return;
  vd_exec *x = exec_find(c->d, c->arg);
  if (!x) {
    vd_call_error(c, 404, "No such exec instance: %s", c->arg);
    return;
  }
  if (x->started && !x->running) {
    vd_call_error(c, 409, "Exec %s is not running", c->arg);
    return;
  }
  x->rows = (unsigned short)h;
  x->cols = (unsigned short)w;
  if (x->tty_fd >= 0) {
    struct winsize ws = {.ws_row = x->rows, .ws_col = x->cols};
    if (ioctl(x->tty_fd, TIOCSWINSZ, &ws) < 0 || kill(x->pid, SIGWINCH) < 0) {
      vd_call_error(c, 500, "resize exec %.12s: %s", x->id, strerror(errno));
      return;
    }
  }
  vd_call_status(c, 200);
}
