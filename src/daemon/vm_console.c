/* A VM's serial console for its viewers: POST /vessel/v1/vms/{name}/console, hijacked.
 *
 * The VMM writes its console to console.log and reads it from the FIFO console.in (vms.c), so a
 * viewer needs no help from the VMM: it follows the log (inotify) and writes what its client
 * types into the FIFO. Each viewer is a small thread that owns its descriptors (the client's
 * socket taken off the loop, the log, the FIFO, a pidfd of the VMM, an inotify instance) and
 * shares nothing with the daemon, so any number of viewers can come and go, and a viewer never
 * holds up the loop. Detaching is closing the connection; the VM does not notice. */
#include "daemon/vms.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/socket.h>
#include <sys/syscall.h>

typedef struct viewer {
  int sock, log, fifo, pidfd, ino;
} viewer;

static void viewer_free(viewer *v) {
  int fds[] = {v->sock, v->log, v->fifo, v->pidfd, v->ino};
  for (size_t i = 0; i < ARRAY_SIZE(fds); i++)
    if (fds[i] >= 0)
      close(fds[i]);
  free(v);
}

/* Send what the log holds beyond what was sent; false when the client is gone. */
static bool pump_log(viewer *v) {
  char buf[65536];
  for (;;) {
    ssize_t n = read(v->log, buf, sizeof(buf));
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return true;
    for (ssize_t off = 0; off < n;) {
      ssize_t w = send(v->sock, buf + off, (size_t)(n - off), MSG_NOSIGNAL);
      if (w < 0 && errno == EINTR)
        continue;
      if (w <= 0)
        return false;
      off += w;
    }
  }
}

/* The client's keystrokes to the guest; false when the client closed its side. */
static bool pump_input(viewer *v) {
  char buf[4096];
  ssize_t n = read(v->sock, buf, sizeof(buf));
  if (n < 0 && errno == EINTR)
    return true;
  if (n <= 0)
    return false;
  return vs_write_all(v->fifo, buf, (size_t)n, NULL) == 0;
}

static void *viewer_main(void *arg) {
  viewer *v = arg;
  bool go = pump_log(v);
  while (go) {
    struct pollfd p[3] = {{.fd = v->sock, .events = POLLIN},
                          {.fd = v->ino, .events = POLLIN},
                          {.fd = v->pidfd, .events = POLLIN}};
    if (poll(p, 3, -1) < 0) {
      if (errno == EINTR)
        continue;
      break;
    }
    if (p[1].revents) {
      char ev[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
      while (read(v->ino, ev, sizeof(ev)) > 0) {
      }
      go = pump_log(v);
    }
    if (go && p[0].revents)
      go = pump_input(v);
    if (go && p[2].revents) { /* the VM ended: what it wrote last, then the end */
      pump_log(v);
      break;
    }
  }
  viewer_free(v);
  return NULL;
}

static int viewer_open(const vd_vm *vm, pid_t pid, bool history, viewer *v, vs_error **err) {
  _cleanup_free_ char *logp = vs_asprintf("%s/console.log", vm->dir);
  _cleanup_free_ char *fifop = vs_asprintf("%s/console.in", vm->dir);
  v->log = open(logp, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  /* the VMM holds the FIFO open for reading, so this does not wait */
  v->fifo = open(fifop, O_WRONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
  if (v->log < 0 || v->fifo < 0)
    return vs_error_set(err, errno, "open the console of VM %s", vm->name);
  fcntl(v->fifo, F_SETFL, 0);
  if (!history)
    lseek(v->log, 0, SEEK_END);
  v->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
  v->ino = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
  if (v->pidfd < 0 || v->ino < 0 || inotify_add_watch(v->ino, logp, IN_MODIFY) < 0)
    return vs_error_set(err, errno, "watch the console of VM %s", vm->name);
  return 0;
}

void vd_h_vm_console(vd_call *c) {
  vd_vms *t = c->d->vms;
  bool history = http_query_bool(c->req->query, "logs", false);
  viewer *v = vs_malloc0(sizeof(*v));
  v->sock = v->log = v->fifo = v->pidfd = v->ino = -1;
  vs_error *e = NULL;
  pthread_mutex_lock(&t->lock);
  vd_vm *vm = NULL;
  for (size_t i = 0; i < t->n && !vm; i++)
    if (!strcmp(t->vms[i]->name, c->arg) || !strcmp(t->vms[i]->id, c->arg))
      vm = t->vms[i];
  pid_t pid = vm ? vm->pid : 0;
  int r = vm && pid > 0 ? viewer_open(vm, pid, history, v, &e) : 0;
  pthread_mutex_unlock(&t->lock);
  if (!vm || pid <= 0 || r < 0) {
    if (!vm)
      vd_call_error(c, 404, "No such VM: %s", c->arg);
    else if (pid <= 0)
      vd_call_error(c, 409, "VM %s is not running", vm->name);
    else
      vd_call_error(c, 500, "%s", e->msg);
    vs_error_free(e);
    viewer_free(v);
    return;
  }
  c->streamed = true;
  vd_conn_hijack_begin(c->conn, "application/vnd.vessel.raw-stream");
  v->sock = vd_conn_release_fd(c->conn);
  pthread_t th;
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  if (v->sock < 0 || pthread_create(&th, &attr, viewer_main, v) != 0)
    viewer_free(v);
  pthread_attr_destroy(&attr);
}
