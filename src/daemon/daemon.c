/* The daemon's context: listeners, the event loop, signals, the worker pool. */
#include "daemon/internal.h"
#include "daemon/web.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/signalfd.h>
#include <netdb.h>
#include <sys/socket.h>
#include <sys/stat.h>

void vd_conn_event(vd_conn *c, uint32_t events);
void vd_conn_accept(vd_daemon *d, int lfd);
void vd_conn_pipe_event(vd_conn *c);
void vd_conn_close_all(vd_daemon *d);
void vd_conn_sweep(vd_daemon *d);
/* Close the connections whose request body has been idle too long; the epoll timeout (ms) to
 * the next such deadline, or -1. */
int vd_conn_expire_idle_bodies(vd_daemon *d);

/* ---------------------------------------------------------------- workers */

void vd_job_submit_ctr(vd_daemon *d, vd_container *c, void (*run)(vd_job *),
                       void (*done)(vd_job *)) {
  vd_job *job = vs_malloc0(sizeof(*job));
  job->d = d;
  job->ctr = c;
  job->run = run;
  job->done = done;
  vd_job_submit(d, job);
}

void vd_job_submit(vd_daemon *d, vd_job *job) {
  job->next = NULL;
  pthread_mutex_lock(&d->qlock);
  if (d->queue_tail)
    d->queue_tail->next = job;
  else
    d->queue = job;
  d->queue_tail = job;
  pthread_cond_signal(&d->qcond);
  pthread_mutex_unlock(&d->qlock);
}

static void *worker_main(void *arg) {
  vd_daemon *d = arg;
  for (;;) {
    pthread_mutex_lock(&d->qlock);
    while (!d->queue && !d->quit_workers)
      pthread_cond_wait(&d->qcond, &d->qlock);
    vd_job *job = d->queue;
    if (!job) {
      pthread_mutex_unlock(&d->qlock);
      return NULL;
    }
    d->queue = job->next;
    if (!d->queue)
      d->queue_tail = NULL;
    pthread_mutex_unlock(&d->qlock);
    job->run(job);
    vd_loop_done(d, job);
  }
}

void vd_loop_done(vd_daemon *d, vd_job *job) {
  pthread_mutex_lock(&d->qlock);
  job->next = d->done;
  d->done = job;
  pthread_mutex_unlock(&d->qlock);
  uint64_t one = 1;
  if (write(d->donefd, &one, sizeof(one)) < 0)
    vs_log_warn("wake the event loop: %s", strerror(errno));
}

/* Finished jobs, oldest first, completed on the loop. */
static void run_done_jobs(vd_daemon *d) {
  uint64_t n;
  if (read(d->donefd, &n, sizeof(n)) < 0 && errno != EAGAIN)
    vs_log_warn("read the worker eventfd: %s", strerror(errno));
  pthread_mutex_lock(&d->qlock);
  vd_job *list = d->done;
  d->done = NULL;
  pthread_mutex_unlock(&d->qlock);
  vd_job *rev = NULL;
  while (list) {
    vd_job *next = list->next;
    list->next = rev;
    rev = list;
    list = next;
  }
  while (rev) {
    vd_job *next = rev->next;
    rev->done(rev);
    rev = next;
  }
}

static int start_workers(vd_daemon *d, vs_error **err) {
  for (size_t i = 0; i < VD_WORKERS; i++) {
    int r = pthread_create(&d->workers[i], NULL, worker_main, d);
    if (r)
      return vs_error_set(err, r, "start a worker thread");
    d->n_workers++;
  }
  return 0;
}

bool vd_workers_quitting(vd_daemon *d) {
  pthread_mutex_lock(&d->qlock);
  bool quit = d->quit_workers;
  pthread_mutex_unlock(&d->qlock);
  return quit;
}

static void stop_workers(vd_daemon *d) {
  pthread_mutex_lock(&d->qlock);
  d->quit_workers = true;
  pthread_cond_broadcast(&d->qcond);
  pthread_mutex_unlock(&d->qlock);
  for (size_t i = 0; i < d->n_workers; i++)
    pthread_join(d->workers[i], NULL);
  if (d->n_workers)
    run_done_jobs(d);
  d->n_workers = 0;
}

/* ---------------------------------------------------------------- listeners */

static int add_listener(vd_daemon *d, int fd, const char *path, vs_error **err) {
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  size_t i = d->n_listen++;
  d->listen_fds[i] = fd;
  d->listen_paths[i] = path ? vs_strdup(path) : NULL;
  d->listen_srcs[i].kind = VD_SRC_LISTENER;
  d->listen_srcs[i].owner = &d->listen_fds[i];
  return vd_loop_add(d, fd, EPOLLIN, &d->listen_srcs[i], err);
}

int vd_listen_tcp(const char *hp, const char *what, vs_error **err) {
  const char *colon = strrchr(hp, ':');
  if (!colon || !colon[1] || strchr(colon, ']'))
    return vs_error_set(err, EINVAL, "%s %s: expected ADDRESS:PORT", what, hp);
  _cleanup_free_ char *addr = vs_img_strndup(hp, (size_t)(colon - hp));
  char *a = addr;
  size_t alen = strlen(a);
  if (alen >= 2 && a[0] == '[' && a[alen - 1] == ']') {
    a[alen - 1] = 0;
    a++;
  }
  struct addrinfo hints = {.ai_family = AF_UNSPEC,
                           .ai_socktype = SOCK_STREAM,
                           .ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV};
  struct addrinfo *res = NULL;
  int gr = getaddrinfo(*a ? a : NULL, colon + 1, &hints, &res);
  if (gr)
    return vs_error_set(err, EINVAL, "%s %s: %s", what, hp, gai_strerror(gr));
  int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
      bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, SOMAXCONN) < 0) {
    int e = errno;
    if (fd >= 0)
      close(fd);
    freeaddrinfo(res);
    return vs_error_set(err, e, "%s %s: listen", what, hp);
  }
  freeaddrinfo(res);
  return fd;
}

/* tcp://HOST:PORT (HOST an address, [v6], or empty for every address). Without --tlsverify,
 * dockerd's warning goes to the log, as the API gives root to whoever reaches the port. With
 * --tls the connections go through the TLS front (web.c) to the same router. */
static int listen_tcp(vd_daemon *d, const vd_options *o, const char *host, vs_error **err) {
  int fd = vd_listen_tcp(host + 6, "-H", err);
  if (fd < 0)
    return -1;
  if (!o->tls_verify) {
    vs_log_warn("Binding to IP address without --tlsverify is insecure and gives root access on "
                "this machine to everyone who has access to your network. host=\"%s\"",
                host);
    vs_log_warn("[!] DON'T BIND ON ANY IP ADDRESS WITHOUT setting --tlsverify IF YOU DON'T KNOW "
                "WHAT YOU'RE DOING [!]");
  }
  if (!o->tls && !o->tls_verify)
    return add_listener(d, fd, NULL, err);
  if (!o->tls_cert || !o->tls_key) {
    close(fd);
    return vs_error_set(err, EINVAL, "-H %s: --tls needs --tlscert and --tlskey", host);
  }
  if (o->tls_verify && !o->tls_ca) {
    close(fd);
    return vs_error_set(err, EINVAL, "-H %s: --tlsverify needs --tlscacert", host);
  }
  vd_tls_options to = {
      .cert = o->tls_cert, .key = o->tls_key, .ca = o->tls_ca, .verify = o->tls_verify};
  SSL_CTX *ctx = vd_tls_server_ctx(&to, err);
  if (!ctx) {
    close(fd);
    return vs_error_wrap(err, "-H %s", host);
  }
  return vd_front_listen_relay(d, fd, ctx, host, err);
}

static int listen_on(vd_daemon *d, const vd_options *o, const char *host, vs_error **err) {
  if (!strncmp(host, "tcp://", 6))
    return listen_tcp(d, o, host, err);
  if (strncmp(host, "unix://", 7) != 0 || host[7] != '/')
    return vs_error_set(err, EINVAL, "-H %s: expected unix:///absolute/path or tcp://ADDRESS:PORT",
                        host);
  const char *path = host + 7;
  _cleanup_free_ char *dir = vs_strdup(path);
  char *slash = strrchr(dir, '/');
  if (slash && slash != dir) {
    *slash = 0;
    if (vs_mkdir_p(dir, 0755, err) < 0)
      return vs_error_wrap(err, "-H %s", host);
  }
  if (vs_unix_remove_stale(path, err) < 0)
    return vs_error_wrap(err, "-H %s", host);
  int fd = vs_unix_listen(path, 0660, err);
  if (fd < 0)
    return vs_error_wrap(err, "-H %s", host);
  return add_listener(d, fd, path, err);
}

/* ---------------------------------------------------------------- setup */

static int setup_loop_fds(vd_daemon *d, vs_error **err) {
  d->epfd = epoll_create1(EPOLL_CLOEXEC);
  if (d->epfd < 0)
    return vs_error_set(err, errno, "epoll_create1");
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  /* blocked before the workers start, so only the signalfd sees them */
  pthread_sigmask(SIG_BLOCK, &set, NULL);
  signal(SIGPIPE, SIG_IGN);
  d->sigfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
  d->donefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  d->inofd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
  if (d->sigfd < 0 || d->donefd < 0 || d->inofd < 0)
    return vs_error_set(err, errno, "signalfd/eventfd/inotify");
  d->sig_src.kind = VD_SRC_SIGNAL;
  d->done_src.kind = VD_SRC_DONE;
  d->ino_src.kind = VD_SRC_INOTIFY;
  if (vd_loop_add(d, d->sigfd, EPOLLIN, &d->sig_src, err) < 0 ||
      vd_loop_add(d, d->donefd, EPOLLIN, &d->done_src, err) < 0 ||
      vd_loop_add(d, d->inofd, EPOLLIN, &d->ino_src, err) < 0)
    return -1;
  return 0;
}

vd_daemon *vd_daemon_new(const vd_options *o, vs_error **err) {
  vd_daemon *d = vs_malloc0(sizeof(*d));
  d->epfd = d->sigfd = d->donefd = d->inofd = -1;
  pthread_mutex_init(&d->lock, NULL);
  pthread_mutex_init(&d->qlock, NULL);
  pthread_mutex_init(&d->store_lock, NULL);
  pthread_mutex_init(&d->volume_lock, NULL);
  pthread_mutex_init(&d->event_lock, NULL);
  pthread_mutex_init(&d->spare_lock, NULL);
  d->spare_fd = -1;
  pthread_cond_init(&d->qcond, NULL);
  pthread_cond_init(&d->exit_cond, NULL);
  d->data_root = vs_strdup(o->data_root ? o->data_root : VD_DEFAULT_DATA_ROOT);
  d->body_idle_ns =
      (o->body_idle_timeout > 0 ? o->body_idle_timeout : VD_BODY_IDLE_TIMEOUT_S) * 1000000000LL;
  d->exec_root = vs_strdup(o->exec_root ? o->exec_root : VD_DEFAULT_EXEC_ROOT);
  d->monitor_path = vs_strdup(o->monitor_path);
  d->default_ulimits = o->default_ulimits ? json_incref(o->default_ulimits) : NULL;
  d->containers_dir = vs_asprintf("%s/containers", d->data_root);
  d->rt.root = vs_asprintf("%s/runtime", d->exec_root);
  d->started = vd_now();
  d->listen_fds = vs_malloc0(sizeof(int) * (o->n_hosts + 1));
  d->listen_paths = vs_malloc0(sizeof(char *) * (o->n_hosts + 1));
  d->listen_srcs = vs_malloc0(sizeof(vd_src) * (o->n_hosts + 1));
  if (vd_cluster_configure(&d->cluster, &o->cluster, err) < 0 ||
      vs_mkdir_p(d->data_root, 0711, err) < 0 || vs_mkdir_p(d->rt.root, 0700, err) < 0)
    goto fail;
  d->store = vs_store_open(d->data_root, err);
  if (!d->store || setup_loop_fds(d, err) < 0 || vd_store_recover(d, err) < 0 ||
      vd_vms_init(d, err) < 0 || vd_net_init(d, o->bridge, err) < 0 || vd_cluster_join(d, err) < 0)
    goto fail;
  for (size_t i = 0; i < o->n_hosts; i++)
    if (listen_on(d, o, o->hosts[i], err) < 0)
      goto fail;
  if (vd_web_init(d, o, err) < 0)
    goto fail;
  if (start_workers(d, err) < 0 || vd_cluster_start(d, err) < 0)
    goto fail;
  vd_monitor_spare_submit(d);
  vd_pool_memory_start(d);
  return d;
fail:
  vd_daemon_free(d);
  return NULL;
}

/* ---------------------------------------------------------------- the loop */

static void on_inotify(vd_daemon *d) {
  /* the table may grow on a worker meanwhile: look up under the lock, feed without it */
  char buf[16384] __attribute__((aligned(__alignof__(struct inotify_event))));
  for (;;) {
    ssize_t n = read(d->inofd, buf, sizeof(buf));
    if (n <= 0)
      return;
    for (char *p = buf; p < buf + n;) {
      const struct inotify_event *ev = (const struct inotify_event *)p;
      p += sizeof(*ev) + ev->len;
      vd_container *c = NULL;
      pthread_mutex_lock(&d->lock);
      for (size_t i = 0; i < d->n_ctrs && !c; i++)
        if (d->ctrs[i]->watch == ev->wd)
          c = d->ctrs[i];
      pthread_mutex_unlock(&d->lock);
      if (c)
        vd_streams_poke(d, c);
    }
  }
}

static void on_signal(vd_daemon *d) {
  struct signalfd_siginfo si;
  while (read(d->sigfd, &si, sizeof(si)) == sizeof(si)) {
    vs_log_info("received signal %u, shutting down (containers keep running)", si.ssi_signo);
    d->stopping = true;
  }
}

static void sweep_removed_containers(vd_daemon *d) {
  while (d->dead_ctrs) {
    vd_container *c = d->dead_ctrs;
    d->dead_ctrs = c->next_dead;
    vd_ctr_unref(d, c);
  }
}

int vd_daemon_run(vd_daemon *d, vs_error **err) {
  vs_log_info("API listening on %s (data root %s)",
              d->n_listen && d->listen_paths[0] ? d->listen_paths[0] : "-", d->data_root);
  struct epoll_event evs[64];
  int timeout = -1;
  while (!d->stopping) {
    int n = epoll_wait(d->epfd, evs, 64, timeout);
    if (n < 0 && errno != EINTR)
      return vs_error_set(err, errno, "epoll_wait");
    for (int i = 0; i < n; i++) {
      vd_src *src = evs[i].data.ptr;
      switch (src->kind) {
      case VD_SRC_LISTENER:
        vd_conn_accept(d, *(int *)src->owner);
        break;
      case VD_SRC_CONN:
        vd_conn_event(src->owner, evs[i].events);
        break;
      case VD_SRC_SIGNAL:
        on_signal(d);
        break;
      case VD_SRC_DONE:
        run_done_jobs(d);
        break;
      case VD_SRC_INOTIFY:
        on_inotify(d);
        break;
      case VD_SRC_MONITOR:
        vd_supervise_exited(d, src->owner);
        break;
      case VD_SRC_RESTART:
        vd_restart_fire(d, src->owner);
        break;
      case VD_SRC_ATTACH:
        vd_attach_event(src->owner, evs[i].events);
        break;
      case VD_SRC_EVENTS_TIMER:
        vd_events_timer(src->owner);
        break;
      case VD_SRC_NET:
        vd_net_event(d, src);
        break;
      case VD_SRC_HEALTH:
        vd_health_timer(d, src->owner);
        break;
      case VD_SRC_VM:
        vd_vms_event(d, src);
        break;
      case VD_SRC_VM_RESTART:
        vd_vms_restart_fire(d, src);
        break;
      case VD_SRC_STATS_TIMER:
        vd_stats_tick(src->owner);
        break;
      case VD_SRC_FRONT_LISTENER:
        vd_front_listener_event(d, src->owner);
        break;
      case VD_SRC_FRONT:
        vd_front_event(src, evs[i].events);
        break;
      case VD_SRC_BODY_PIPE:
        vd_conn_pipe_event(src->owner);
        break;
      case VD_SRC_EXEC_PID:
      case VD_SRC_EXEC_OUT:
      case VD_SRC_EXEC_IN:
        vd_exec_event(d, src, evs[i].events);
        break;
      }
    }
    timeout = vd_conn_expire_idle_bodies(d);
    vd_events_deliver(d);
    vd_front_sweep(d);
    vd_conn_sweep(d);
    sweep_removed_containers(d);
  }
  return 0;
}

void vd_daemon_free(vd_daemon *d) {
  if (!d)
    return;
  vd_pool_memory_stop(d);
  vd_cluster_free(d);
  vd_web_free(d);
  vd_conn_close_all(d);
  vd_execs_free(d);
  stop_workers(d);
  vd_front_sweep(d);
  vd_monitor_spare_close(d);
  vd_conn_sweep(d);
  for (size_t i = 0; i < d->n_listen; i++) {
    close(d->listen_fds[i]);
    if (d->listen_paths[i]) /* a unix socket's file */
      unlink(d->listen_paths[i]);
    free(d->listen_paths[i]);
  }
  for (size_t i = 0; i < d->n_ctrs; i++) {
    vd_container *c = d->ctrs[i];
    if (c->pidfd >= 0)
      close(c->pidfd);
    c->pidfd = -1;
    c->refs = 1;
    vd_ctr_unref(d, c);
  }
  free(d->ctrs);
  sweep_removed_containers(d);
  free(d->listen_fds);
  free(d->listen_paths);
  free(d->listen_srcs);
  vd_net_free(d);
  if (d->store)
    vs_store_close(d->store);
  if (d->epfd >= 0)
    close(d->epfd);
  if (d->sigfd >= 0)
    close(d->sigfd);
  if (d->donefd >= 0)
    close(d->donefd);
  if (d->inofd >= 0)
    close(d->inofd);
  pthread_mutex_destroy(&d->lock);
  pthread_mutex_destroy(&d->qlock);
  pthread_mutex_destroy(&d->store_lock);
  pthread_mutex_destroy(&d->volume_lock);
  pthread_mutex_destroy(&d->event_lock);
  pthread_mutex_destroy(&d->spare_lock);
  vd_events_free(d);
  vd_vms_free(d);
  pthread_cond_destroy(&d->qcond);
  pthread_cond_destroy(&d->exit_cond);
  free(d->data_root);
  free(d->exec_root);
  free(d->monitor_path);
  json_decref(d->default_ulimits);
  free(d->containers_dir);
  free(d->rt.root);
  free(d->started);
  free(d);
}
