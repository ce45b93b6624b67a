/* vessel-monitor: one process per running container, like conmon or containerd-shim.
 *
 * It is the container init's parent, so it alone can collect the exit status; it holds the read
 * ends of the container's stdout and stderr, so the container never blocks on a full pipe or
 * dies of SIGPIPE when vesseld goes away; and it writes everything to files vesseld reads, so
 * vesseld can be killed, restarted or upgraded while containers run:
 *   monitor.json  {"MonitorPid", "MonitorStart", "Pid", "StartedAt"}: written once started
 *   <id>-json.log Docker's json-file log: {"log":"...","stream":"stdout","time":"..."} per line
 *   exit.json     {"ExitCode", "FinishedAt"}: written after the last output is in the log
 * Each file has exactly one writer and is replaced atomically (the log is only appended to), so
 * a reader never sees half of one. */
#include "daemon/daemon.h"
#include "daemon/internal.h"
#include "ctr/ctr.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>

/* Docker cuts lines at 16 KiB: a longer line becomes several entries, all but the last without
 * the final newline. */
#define LOG_LINE_MAX (16U * 1024U)

typedef struct log_stream {
  int fd; /* read end of the container's pipe, -1 at end of file */
  const char *name;
  char buf[LOG_LINE_MAX];
  size_t len;
} log_stream;

/* The json-file log being written, rotated by size (see logfiles.c). */
typedef struct log_writer {
  int fd;
  const char *path;
  int64_t size, max_size; /* max_size -1: no limit */
  unsigned max_files;
  bool compress;
  const char *attrs; /* ",\"attrs\":{...}" or "" */
} log_writer;

/* Make room for an entry of len bytes: rotate when it would pass max-size (an entry larger
 * than max-size gets a file of its own). */
static void log_make_room(log_writer *w, size_t len) {
  if (w->max_size < 0 || w->size == 0 || w->size + (int64_t)len <= w->max_size)
    return;
  if (w->max_files <= 1) { /* no rotated files: the log starts again */
    if (ftruncate(w->fd, 0) == 0)
      w->size = 0;
    return;
  }
  int fd = -1;
  if (vd_log_rotate(w->path, w->max_files, w->compress) < 0 ||
      (fd = open(w->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600)) < 0) {
    vs_log_warn("rotate the container log %s: %s", w->path, strerror(errno));
    return; /* keep writing where we were */
  }
  close(w->fd);
  w->fd = fd;
  w->size = 0;
}

/* Append one json-file entry for data[0..len) to the log. */
static void log_entry(log_writer *w, const char *stream, const char *data, size_t len) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  char now[64];
  vs_utc_rfc3339(&ts, now, sizeof(now));
  _cleanup_free_ char *esc = vd_json_escape_bytes(data, len);
  _cleanup_free_ char *line = vs_asprintf("{\"log\":\"%s\",\"stream\":\"%s\"%s,\"time\":\"%s\"}\n",
                                          esc, stream, w->attrs, now);
  vs_error *e = NULL;
  size_t n = strlen(line);
  log_make_room(w, n);
  /* O_APPEND and one write per entry: a reader never sees a torn line from us */
  if (vs_write_all(w->fd, line, n, &e) < 0) {
    vs_log_warn("write the container log: %s", e->msg);
    vs_error_free(e);
    return;
  }
  w->size += (int64_t)n;
}

/* Log every complete line in s->buf and keep the rest; a full buffer is logged as is. */
static void log_lines(log_stream *s, log_writer *log, bool flush_all) {
  size_t start = 0;
  for (;;) {
    char *nl = memchr(s->buf + start, '\n', s->len - start);
    if (!nl)
      break;
    size_t n = (size_t)(nl - (s->buf + start)) + 1;
    log_entry(log, s->name, s->buf + start, n);
    start += n;
  }
  if (start < s->len && (flush_all || (s->len - start) == sizeof(s->buf))) {
    log_entry(log, s->name, s->buf + start, s->len - start);
    start = s->len;
  }
  memmove(s->buf, s->buf + start, s->len - start);
  s->len -= start;
}

static void log_read(log_stream *s, log_writer *log) {
  ssize_t n = read(s->fd, s->buf + s->len, sizeof(s->buf) - s->len);
  if (n < 0 && (errno == EINTR || errno == EAGAIN))
    return;
  if (n <= 0) {
    log_lines(s, log, true);
    close(s->fd);
    s->fd = -1;
    return;
  }
  s->len += (size_t)n;
  /* What the container wrote so far goes to the log now, an incomplete last line too (as an
   * entry without its newline, which Docker calls partial): followers read the log, and a
   * prompt without a newline must reach them. Only a pipe with more waiting is read on first. */
  int more = 0;
  if (s->len < sizeof(s->buf) && ioctl(s->fd, FIONREAD, &more) == 0 && more > 0)
    return;
  log_lines(s, log, true);
}

static int wait_status_to_code(int status) {
  if (WIFEXITED(status))
    return WEXITSTATUS(status);
  if (WIFSIGNALED(status))
    return 128 + WTERMSIG(status);
  return 255;
}

/* ---------------------------------------------------------------- attach clients
 *
 * vesseld connects to <bundle>/attach.sock to feed stdin and resize the terminal. Frames: one
 * type byte, a big-endian 32-bit length, the payload: 'i' stdin data, 'c' close stdin, 'r'
 * resize (big-endian 16-bit rows and columns). */

#define MAX_CLIENTS 8
#define FRAME_MAX 32768U
#define STDIN_BUF 65536U

typedef struct attach_client {
  int fd;
  unsigned char buf[5 + FRAME_MAX];
  size_t len;
} attach_client;

typedef struct monitor {
  const vd_monitor_options *o;
  log_writer log;
  log_stream out, errs;
  int stdin_fd; /* write side of the container's stdin (pipe or terminal), -1 if none */
  int master;   /* the terminal's master, -1 without a TTY */
  char in[STDIN_BUF];
  size_t in_len;
  bool in_close;
  int listen_fd;
  attach_client clients[MAX_CLIENTS];
} monitor;

static void client_drop(attach_client *cl) {
  close(cl->fd);
  cl->fd = -1;
  cl->len = 0;
}

static void client_accept(monitor *m) {
  int fd = accept4(m->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
  if (fd < 0)
    return;
  for (size_t i = 0; i < MAX_CLIENTS; i++)
    if (m->clients[i].fd < 0) {
      m->clients[i].fd = fd;
      m->clients[i].len = 0;
      return;
    }
  close(fd); /* more attachers than we serve: that one gets nothing */
}

static void resize(monitor *m, const unsigned char *p, uint32_t n) {
  if (m->master < 0 || n != 4)
    return;
  struct winsize ws = {.ws_row = (unsigned short)(p[0] << 8 | p[1]),
                       .ws_col = (unsigned short)(p[2] << 8 | p[3])};
  ioctl(m->master, TIOCSWINSZ, &ws);
}

/* Act on every complete frame; stdin data waits while the stdin buffer is full. */
static void client_frames(monitor *m, attach_client *cl) {
  size_t off = 0;
  while (cl->len - off >= 5) {
    const unsigned char *f = cl->buf + off;
    uint32_t n = (uint32_t)f[1] << 24 | (uint32_t)f[2] << 16 | (uint32_t)f[3] << 8 | f[4];
    if (n > FRAME_MAX) {
      client_drop(cl);
      return;
    }
    if (cl->len - off < 5 + n)
      break;
    if (f[0] == 'i') {
      if (m->stdin_fd < 0) {
        /* stdin is closed or was never open: the data goes nowhere */
      } else if (sizeof(m->in) - m->in_len < n) {
        break;
      } else {
        memcpy(m->in + m->in_len, f + 5, n);
        m->in_len += n;
      }
    } else if (f[0] == 'c') {
      m->in_close = true;
    } else if (f[0] == 'r') {
      resize(m, f + 5, n);
    }
    off += 5 + n;
  }
  memmove(cl->buf, cl->buf + off, cl->len - off);
  cl->len -= off;
}

static void client_read(monitor *m, attach_client *cl) {
  ssize_t n = read(cl->fd, cl->buf + cl->len, sizeof(cl->buf) - cl->len);
  if (n < 0 && (errno == EINTR || errno == EAGAIN))
    return;
  if (n <= 0) {
    client_drop(cl);
    return;
  }
  cl->len += (size_t)n;
  client_frames(m, cl);
}

/* Move buffered stdin into the container; close its stdin once asked and drained. */
static void stdin_flush(monitor *m) {
  while (m->stdin_fd >= 0 && m->in_len > 0) {
    ssize_t n = write(m->stdin_fd, m->in, m->in_len);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && errno == EAGAIN)
      return;
    if (n <= 0) { /* nobody reads it any more */
      m->in_len = 0;
      break;
    }
    memmove(m->in, m->in + n, m->in_len - (size_t)n);
    m->in_len -= (size_t)n;
  }
  /* a terminal has no end of input to send: its stdin stays open */
  if (m->in_close && m->in_len == 0 && m->stdin_fd >= 0 && m->master < 0) {
    close(m->stdin_fd);
    m->stdin_fd = -1;
  }
  for (size_t i = 0; i < MAX_CLIENTS; i++) /* room again: frames that waited */
    if (m->clients[i].fd >= 0 && m->clients[i].len)
      client_frames(m, &m->clients[i]);
}

/* ---------------------------------------------------------------- the loop */

/* Copy output until the init has exited and its output is at end of file (every process of
 * the container is gone: they die with the init of their PID namespace); feed stdin meanwhile. */
static int run_until_exit(monitor *m, pid_t pid) {
  int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
  int status = -1;
  bool exited = false;
  while (!exited || m->out.fd >= 0 || m->errs.fd >= 0) {
    struct pollfd p[5 + MAX_CLIENTS];
    p[0] = (struct pollfd){.fd = m->out.fd, .events = POLLIN};
    p[1] = (struct pollfd){.fd = m->errs.fd, .events = POLLIN};
    p[2] = (struct pollfd){.fd = exited ? -1 : pidfd, .events = POLLIN};
    p[3] = (struct pollfd){.fd = m->listen_fd, .events = POLLIN};
    /* the terminal's master is polled for output already; a pipe needs its own entry */
    p[4] = (struct pollfd){.fd = m->in_len && m->master < 0 ? m->stdin_fd : -1, .events = POLLOUT};
    if (m->master >= 0 && m->in_len)
      p[0].events |= POLLOUT;
    for (size_t i = 0; i < MAX_CLIENTS; i++) {
      attach_client *cl = &m->clients[i];
      p[5 + i] = (struct pollfd){.fd = cl->len < sizeof(cl->buf) ? cl->fd : -1, .events = POLLIN};
    }
    int r = poll(p, 5 + MAX_CLIENTS, pidfd < 0 && !exited ? 100 : -1);
    if (r < 0 && errno != EINTR)
      break;
    if (p[0].revents & (POLLIN | POLLHUP | POLLERR))
      log_read(&m->out, &m->log);
    if (p[1].revents)
      log_read(&m->errs, &m->log);
    if (p[3].revents & POLLIN)
      client_accept(m);
    for (size_t i = 0; i < MAX_CLIENTS; i++)
      if (p[5 + i].revents && m->clients[i].fd >= 0)
        client_read(m, &m->clients[i]);
    if (m->in_len || m->in_close)
      stdin_flush(m);
    if (!exited && waitpid(pid, &status, WNOHANG) == pid)
      exited = true;
  }
  if (!exited && waitpid(pid, &status, 0) < 0)
    status = -1;
  if (pidfd >= 0)
    close(pidfd);
  return status < 0 ? 255 : wait_status_to_code(status);
}

/* monitor.json and exit.json are replaced atomically (a temporary file renamed over the name)
 * but not fsynced: what they describe is a process of this boot. A kill -9 of vesseld or of
 * the monitor leaves the page cache intact, so readers still see the old or the new file; only
 * a power loss can drop them, and then the container is gone too and the next start treats the
 * record it finds (none: never started; monitor.json without exit.json: its monitor died) as
 * it treats a monitor that died. Two flushes each were most of a short container's exit. */
static int write_record(const char *bundle, const char *name, const json_t *j, vs_error **err) {
  _cleanup_free_ char *text = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS);
  if (!text)
    return vs_error_set(err, EINVAL, "serialise %s", name);
  _cleanup_free_ char *tmp = vs_asprintf("%s/%s.tmp", bundle, name);
  _cleanup_free_ char *path = vs_asprintf("%s/%s", bundle, name);
  if (vs_write_file(tmp, text, strlen(text), 0600, err) < 0)
    return -1;
  if (rename(tmp, path) < 0)
    return vs_error_set(err, errno, "rename %s to %s", tmp, path);
  return 0;
}

static int write_monitor_record(const vd_monitor_options *o, pid_t pid, vs_error **err) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  char now[64];
  vs_utc_rfc3339(&ts, now, sizeof(now));
  _cleanup_json_ json_t *j =
      json_pack("{s:i, s:I, s:i, s:s}", "MonitorPid", (int)getpid(), "MonitorStart",
                (json_int_t)vd_pid_start_time(getpid()), "Pid", (int)pid, "StartedAt", now);
  return write_record(o->bundle, "monitor.json", j, err);
}

static int write_exit_record(const vd_monitor_options *o, int code, vs_error **err) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  char now[64];
  vs_utc_rfc3339(&ts, now, sizeof(now));
  _cleanup_json_ json_t *j = json_pack("{s:i, s:s}", "ExitCode", code, "FinishedAt", now);
  return write_record(o->bundle, "exit.json", j, err);
}

int vd_exec_helper_run(const char *runtime_root, const char *id, const char *process_file,
                       vs_error **err) {
  _cleanup_json_ json_t *proc = vs_json_load_file(process_file, CTR_SPEC_MAX_BYTES, err);
  unlink(process_file);
  if (!proc)
    return -1;
  ctr_runtime rt = {.root = (char *)runtime_root};
  ctr_exec_opts eo = {.process = proc};
  return ctr_exec(&rt, id, &eo, err);
}

/* A unix socket listening at NAME inside the directory dirfd, whatever the directory's path
 * length (sun_path holds 108 bytes): bound through /proc/self/fd. */
static int listen_in_dir(int dirfd, const char *name, vs_error **err) {
  _cleanup_free_ char *path = vs_asprintf("/proc/self/fd/%d/%s", dirfd, name);
  unlink(path);
  int fd = vs_unix_listen(path, 0600, err);
  if (fd >= 0)
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  return fd;
}

/* Create the container with our fds 0, 1 and 2 set to what its init must inherit, then put our
 * own back. With a terminal, the init sends the pty's master to console.sock. */
static pid_t create_with_stdio(const ctr_runtime *rt, const vd_monitor_options *o, int dirfd,
                               int in, int out, int errfd, int *master, vs_error **err) {
  _cleanup_close_ int saved_out = fcntl(1, F_DUPFD_CLOEXEC, 3);
  _cleanup_close_ int saved_err = fcntl(2, F_DUPFD_CLOEXEC, 3);
  if (saved_out < 0 || saved_err < 0)
    return vs_error_set(err, errno, "save the monitor's stdio");
  _cleanup_close_ int console = -1;
  _cleanup_free_ char *console_path = vs_asprintf("/proc/self/fd/%d/console.sock", dirfd);
  if (o->tty && (console = listen_in_dir(dirfd, "console.sock", err)) < 0)
    return -1;
  if (dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(errfd, 2) < 0)
    return vs_error_set(err, errno, "set up the container's stdio");
  ctr_create_opts co = {.bundle = o->bundle, .console_socket = o->tty ? console_path : NULL};
  pid_t pid = ctr_create(rt, o->id, &co, err);
  dup2(saved_out, 1);
  dup2(saved_err, 2);
  if (pid < 0 || !o->tty)
    return pid;
  unlink(console_path);
  /* the init connected before it was cloned and has sent the master by now */
  _cleanup_close_ int conn = accept4(console, NULL, NULL, SOCK_CLOEXEC);
  char buf[256];
  size_t nfds = 0;
  if (conn < 0 || vs_recv_fds(conn, buf, sizeof(buf), master, 1, &nfds, err) < 0 || nfds != 1) {
    if (!err || !*err)
      vs_error_set(err, EPROTO, "the container's init sent no terminal");
    ctr_delete(rt, o->id, true, NULL);
    waitpid(pid, NULL, 0);
    return -1;
  }
  return pid;
}

static void report_ready(int fd, const char *text) {
  if (fd < 0)
    return;
  vs_write_all(fd, text, strlen(text), NULL);
  close(fd);
}

/* The container runs: tell vesseld, log its output, record how it ended. */
static int supervise(monitor *m, const ctr_runtime *rt, pid_t pid, vs_error **err) {
  _cleanup_free_ char *ok = vs_asprintf("ok %d\n", (int)pid);
  report_ready(m->o->ready_fd, ok);
  int code = run_until_exit(m, pid);
  for (size_t i = 0; i < MAX_CLIENTS; i++)
    if (m->clients[i].fd >= 0)
      client_drop(&m->clients[i]);
  vs_error *e = NULL;
  if (ctr_delete(rt, m->o->id, true, &e) < 0) {
    vs_log_warn("%s", e->msg);
    vs_error_free(e);
  }
  return write_exit_record(m->o, code, err);
}

static void close_pair(int p[2]) {
  for (int i = 0; i < 2; i++)
    if (p[i] >= 0)
      close(p[i]);
  p[0] = p[1] = -1;
}

int vd_monitor_run(const vd_monitor_options *o, vs_error **err) {
  signal(SIGPIPE, SIG_IGN);
  ctr_runtime rt = {.root = (char *)o->runtime_root};
  int outp[2] = {-1, -1}, errp[2] = {-1, -1}, inp[2] = {-1, -1};
  monitor *m = vs_malloc0(sizeof(*m));
  m->o = o;
  m->stdin_fd = m->master = m->listen_fd = -1;
  for (size_t i = 0; i < MAX_CLIENTS; i++)
    m->clients[i].fd = -1;
  _cleanup_close_ int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
  _cleanup_close_ int dirfd = open(o->bundle, O_PATH | O_DIRECTORY | O_CLOEXEC);
  _cleanup_free_ char *attrs = o->log_attrs ? vs_asprintf(",\"attrs\":%s", o->log_attrs) : NULL;
  m->log = (log_writer){.path = o->log_path,
                        .attrs = attrs ? attrs : "",
                        .compress = o->log_compress,
                        .max_size = o->log_max_size ? o->log_max_size : -1,
                        .max_files = o->log_max_files ? o->log_max_files : 1};
  m->log.fd = open(o->log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  struct stat lst;
  if (m->log.fd >= 0 && fstat(m->log.fd, &lst) == 0)
    m->log.size = lst.st_size;
  int r = -1;
  if (devnull < 0 || dirfd < 0 || m->log.fd < 0) {
    vs_error_set(err, errno, "open %s",
                 devnull < 0 ? "/dev/null"
                 : dirfd < 0 ? o->bundle
                             : o->log_path);
    goto out;
  }
  if (pipe2(outp, O_CLOEXEC) < 0 || pipe2(errp, O_CLOEXEC) < 0 ||
      (o->open_stdin && !o->tty && pipe2(inp, O_CLOEXEC) < 0)) {
    vs_error_set(err, errno, "pipe");
    goto out;
  }
  if ((m->listen_fd = listen_in_dir(dirfd, "attach.sock", err)) < 0)
    goto out;
  pid_t pid = create_with_stdio(&rt, o, dirfd, inp[0] >= 0 ? inp[0] : devnull, outp[1], errp[1],
                                &m->master, err);
  close(outp[1]);
  close(errp[1]);
  outp[1] = errp[1] = -1;
  if (inp[0] >= 0)
    close(inp[0]);
  inp[0] = -1;
  if (pid < 0)
    goto out;
  if (ctr_start(&rt, o->id, err) < 0 || write_monitor_record(o, pid, err) < 0) {
    ctr_delete(&rt, o->id, true, NULL);
    waitpid(pid, NULL, 0);
    goto out;
  }
  m->out = (log_stream){.fd = outp[0], .name = "stdout"};
  m->errs = (log_stream){.fd = errp[0], .name = "stderr"};
  outp[0] = errp[0] = -1;
  if (m->master >= 0) {
    /* with a terminal everything comes from its master, as stdout (docker's json-file) */
    close(m->out.fd);
    close(m->errs.fd);
    m->errs.fd = -1;
    m->out.fd = m->master;
    fcntl(m->master, F_SETFL, fcntl(m->master, F_GETFL) | O_NONBLOCK);
    m->stdin_fd = o->open_stdin ? m->master : -1;
  } else if (inp[1] >= 0) {
    m->stdin_fd = inp[1];
    inp[1] = -1;
    fcntl(m->stdin_fd, F_SETFL, fcntl(m->stdin_fd, F_GETFL) | O_NONBLOCK);
  }
  r = supervise(m, &rt, pid, err);
  if (m->stdin_fd >= 0 && m->stdin_fd != m->master)
    close(m->stdin_fd);
  unlinkat(dirfd, "attach.sock", 0);
out:
  close_pair(outp);
  close_pair(errp);
  close_pair(inp);
  if (r < 0)
    report_ready(o->ready_fd, err && *err ? (*err)->msg : "failed");
  if (m->listen_fd >= 0)
    close(m->listen_fd);
  if (m->log.fd >= 0)
    close(m->log.fd);
  free(m);
  return r;
}
