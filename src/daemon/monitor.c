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
#include <sys/syscall.h>
#include <sys/wait.h>
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

/* Append one json-file entry for data[0..len) to the log. */
static void log_entry(int log_fd, const char *stream, const char *data, size_t len) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  char now[64];
  vs_utc_rfc3339(&ts, now, sizeof(now));
  _cleanup_free_ char *esc = vd_json_escape_bytes(data, len);
  _cleanup_free_ char *line =
      vs_asprintf("{\"log\":\"%s\",\"stream\":\"%s\",\"time\":\"%s\"}\n", esc, stream, now);
  vs_error *e = NULL;
  /* O_APPEND and one write per entry: a reader never sees a torn line from us */
  if (vs_write_all(log_fd, line, strlen(line), &e) < 0) {
    vs_log_warn("write the container log: %s", e->msg);
    vs_error_free(e);
  }
}

/* Log every complete line in s->buf and keep the rest; a full buffer is logged as is. */
static void log_lines(log_stream *s, int log_fd, bool flush_all) {
  size_t start = 0;
  for (;;) {
    char *nl = memchr(s->buf + start, '\n', s->len - start);
    if (!nl)
      break;
    size_t n = (size_t)(nl - (s->buf + start)) + 1;
    log_entry(log_fd, s->name, s->buf + start, n);
    start += n;
  }
  if (start < s->len && (flush_all || (s->len - start) == sizeof(s->buf))) {
    log_entry(log_fd, s->name, s->buf + start, s->len - start);
    start = s->len;
  }
  memmove(s->buf, s->buf + start, s->len - start);
  s->len -= start;
}

static void log_read(log_stream *s, int log_fd) {
  ssize_t n = read(s->fd, s->buf + s->len, sizeof(s->buf) - s->len);
  if (n < 0 && (errno == EINTR || errno == EAGAIN))
    return;
  if (n <= 0) {
    log_lines(s, log_fd, true);
    close(s->fd);
    s->fd = -1;
    return;
  }
  s->len += (size_t)n;
  log_lines(s, log_fd, false);
}

static int wait_status_to_code(int status) {
  if (WIFEXITED(status))
    return WEXITSTATUS(status);
  if (WIFSIGNALED(status))
    return 128 + WTERMSIG(status);
  return 255;
}

/* Copy output until the init has exited and both pipes are at end of file (every process of
 * the container is gone: they die with the init of their PID namespace). */
static int copy_output_until_exit(pid_t pid, log_stream *out, log_stream *errs, int log_fd) {
  int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
  int status = -1;
  bool exited = false;
  while (!exited || out->fd >= 0 || errs->fd >= 0) {
    struct pollfd p[3] = {{.fd = out->fd, .events = POLLIN},
                          {.fd = errs->fd, .events = POLLIN},
                          {.fd = exited ? -1 : pidfd, .events = POLLIN}};
    int r = poll(p, 3, pidfd < 0 && !exited ? 100 : -1);
    if (r < 0 && errno != EINTR)
      break;
    if (p[0].revents)
      log_read(out, log_fd);
    if (p[1].revents)
      log_read(errs, log_fd);
    if (!exited && waitpid(pid, &status, WNOHANG) == pid)
      exited = true;
  }
  if (!exited && waitpid(pid, &status, 0) < 0)
    status = -1;
  if (pidfd >= 0)
    close(pidfd);
  return status < 0 ? 255 : wait_status_to_code(status);
}

static int write_monitor_record(const vd_monitor_options *o, pid_t pid, vs_error **err) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  char now[64];
  vs_utc_rfc3339(&ts, now, sizeof(now));
  _cleanup_free_ char *path = vs_asprintf("%s/monitor.json", o->bundle);
  _cleanup_json_ json_t *j =
      json_pack("{s:i, s:I, s:i, s:s}", "MonitorPid", (int)getpid(), "MonitorStart",
                (json_int_t)vd_pid_start_time(getpid()), "Pid", (int)pid, "StartedAt", now);
  return vs_json_write_file(path, j, 0600, err);
}

static int write_exit_record(const vd_monitor_options *o, int code, vs_error **err) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  char now[64];
  vs_utc_rfc3339(&ts, now, sizeof(now));
  _cleanup_free_ char *path = vs_asprintf("%s/exit.json", o->bundle);
  _cleanup_json_ json_t *j = json_pack("{s:i, s:s}", "ExitCode", code, "FinishedAt", now);
  return vs_json_write_file(path, j, 0600, err);
}

/* Create the container with our fds 0, 1 and 2 set to what its init must inherit, then put our
 * own back. */
static pid_t create_with_stdio(const ctr_runtime *rt, const vd_monitor_options *o, int in, int out,
                               int errfd, vs_error **err) {
  _cleanup_close_ int saved_out = fcntl(1, F_DUPFD_CLOEXEC, 3);
  _cleanup_close_ int saved_err = fcntl(2, F_DUPFD_CLOEXEC, 3);
  if (saved_out < 0 || saved_err < 0)
    return vs_error_set(err, errno, "save the monitor's stdio");
  if (dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(errfd, 2) < 0)
    return vs_error_set(err, errno, "set up the container's stdio");
  ctr_create_opts co = {.bundle = o->bundle};
  pid_t pid = ctr_create(rt, o->id, &co, err);
  dup2(saved_out, 1);
  dup2(saved_err, 2);
  return pid;
}

static void report_ready(int fd, const char *text) {
  if (fd < 0)
    return;
  vs_write_all(fd, text, strlen(text), NULL);
  close(fd);
}

/* The container runs: tell vesseld, log its output, record how it ended. */
static int supervise(const vd_monitor_options *o, const ctr_runtime *rt, pid_t pid, int out_fd,
                     int err_fd, int log_fd, vs_error **err) {
  _cleanup_free_ char *ok = vs_asprintf("ok %d\n", (int)pid);
  report_ready(o->ready_fd, ok);
  log_stream out = {.fd = out_fd, .name = "stdout"}, errs = {.fd = err_fd, .name = "stderr"};
  int code = copy_output_until_exit(pid, &out, &errs, log_fd);
  vs_error *e = NULL;
  if (ctr_delete(rt, o->id, true, &e) < 0) {
    vs_log_warn("%s", e->msg);
    vs_error_free(e);
  }
  return write_exit_record(o, code, err);
}

int vd_monitor_run(const vd_monitor_options *o, vs_error **err) {
  signal(SIGPIPE, SIG_IGN);
  ctr_runtime rt = {.root = (char *)o->runtime_root};
  int outp[2] = {-1, -1}, errp[2] = {-1, -1};
  _cleanup_close_ int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
  _cleanup_close_ int log_fd =
      open(o->log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (devnull < 0 || log_fd < 0) {
    vs_error_set(err, errno, "open %s", devnull < 0 ? "/dev/null" : o->log_path);
    goto fail;
  }
  if (pipe2(outp, O_CLOEXEC) < 0 || pipe2(errp, O_CLOEXEC) < 0) {
    vs_error_set(err, errno, "pipe");
    goto fail;
  }
  pid_t pid = create_with_stdio(&rt, o, devnull, outp[1], errp[1], err);
  close(outp[1]);
  close(errp[1]);
  outp[1] = errp[1] = -1;
  if (pid < 0)
    goto fail;
  if (ctr_start(&rt, o->id, err) < 0 || write_monitor_record(o, pid, err) < 0) {
    ctr_delete(&rt, o->id, true, NULL);
    waitpid(pid, NULL, 0);
    goto fail;
  }
  return supervise(o, &rt, pid, outp[0], errp[0], log_fd, err);
fail:
  for (int i = 0; i < 2; i++) {
    if (outp[i] >= 0)
      close(outp[i]);
    if (errp[i] >= 0)
      close(errp[i]);
  }
  report_ready(o->ready_fd, err && *err ? (*err)->msg : "failed");
  return -1;
}
