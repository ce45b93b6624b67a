/* The front connection of the web console and of the API over TLS: its states, moving bytes
 * between the client (TLS) and the inner API connection, deadlines, and the listeners. See
 * web_front.h for the other files of the front. */
#include "daemon/web_front.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <time.h>

#define READ_CHUNK 16384
#define LINGER_SECONDS 2
#define VD_MAX_FRONTS 512

enum { TIMER_NONE, TIMER_IDLE, TIMER_LINGER };

/* ---------------------------------------------------------------- connections */

static void front_update(vd_front *f);

void vd_front_close(vd_front *f) {
  vd_daemon *d = f->d;
  if (f->dead)
    return;
  f->dead = true;
  vd_loop_del(d, f->fd);
  vd_tls_clear(&f->tls);
  close(f->fd);
  f->fd = -1;
  if (f->timer >= 0) {
    vd_loop_del(d, f->timer);
    close(f->timer);
    f->timer = -1;
  }
  d->n_fronts--;
  if (f->inner >= 0) {
    vd_loop_del(d, f->inner);
    close(f->inner);
    f->inner = -1;
  }
  if (f->prev)
    f->prev->next = f->next;
  else
    d->fronts = f->next;
  if (f->next)
    f->next->prev = f->prev;
  f->prev = NULL;
  f->next = d->dead_fronts;
  d->dead_fronts = f;
}

static void front_free(vd_front *f) {
  buf_free(&f->in);
  buf_free(&f->out);
  buf_free(&f->to_inner);
  buf_free(&f->ihead);
  buf_free(&f->local_body);
  buf_free(&f->answer_tail);
  if (f->have_req)
    http_request_clear(&f->req);
  ws_reader_clear(&f->ws);
  free(f->ws_ctr);
  free(f);
}

void vd_front_sweep(vd_daemon *d) {
  vd_front **pp = &d->dead_fronts;
  while (*pp) {
    vd_front *f = *pp;
    if (f->busy) { /* its login job lets it go */
      pp = &f->next;
      continue;
    }
    *pp = f->next;
    front_free(f);
  }
}

/* A new internal API connection for this front connection. */
int vd_front_inner_open(vd_front *f) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0)
    return -1;
  if (!vd_conn_adopt(f->d, sv[1])) {
    close(sv[0]);
    return -1;
  }
  f->inner = sv[0];
  f->inner_src.kind = VD_SRC_FRONT;
  f->inner_src.owner = f;
  if (vd_loop_add(f->d, f->inner, EPOLLIN, &f->inner_src, NULL) < 0) {
    close(f->inner);
    f->inner = -1;
    return -1;
  }
  f->inner_in_set = true;
  f->inner_eof = false;
  f->ihead_done = false;
  return 0;
}

/* The events wanted of a descriptor; it leaves the epoll set while none are: a peer's hang-up is
 * reported whatever the mask, and would wake the loop again and again while nothing can be done
 * about it (a client that does not read our answer, the router's end closed behind it). */
static void want_events(vd_front *f, int fd, vd_src *src, bool *in_set, uint32_t ev) {
  struct epoll_event e = {.events = ev, .data.ptr = src};
  if (ev && *in_set)
    epoll_ctl(f->d->epfd, EPOLL_CTL_MOD, fd, &e);
  else if (ev)
    epoll_ctl(f->d->epfd, EPOLL_CTL_ADD, fd, &e);
  else if (*in_set)
    epoll_ctl(f->d->epfd, EPOLL_CTL_DEL, fd, NULL);
  *in_set = ev != 0;
}

static void front_update(vd_front *f) {
  if (f->dead)
    return;
  uint32_t ev = 0;
  bool reading = f->state != F_CLOSING && f->state != F_BUSY && !f->client_eof;
  /* RDHUP only with IN: a client that shut its side while we cannot read (it does not read our
   * answer) would otherwise wake the loop on every wait */
  if (reading && f->to_inner.len < BUF_HIGH && f->in.len < BUF_HIGH && f->out.len < BUF_HIGH)
    ev |= EPOLLIN | EPOLLRDHUP;
  if (f->out.len || f->tls.want_write || f->state == F_HANDSHAKE)
    ev |= EPOLLOUT;
  if (f->state == F_HANDSHAKE && !f->tls.want_write)
    ev = EPOLLIN | EPOLLRDHUP;
  struct epoll_event e = {.events = ev, .data.ptr = &f->src};
  epoll_ctl(f->d->epfd, EPOLL_CTL_MOD, f->fd, &e);
  if (f->inner >= 0) {
    uint32_t iev = 0;
    if (!f->inner_eof && f->out.len < BUF_HIGH)
      iev |= EPOLLIN;
    if (f->to_inner.len)
      iev |= EPOLLOUT;
    want_events(f, f->inner, &f->inner_src, &f->inner_in_set, iev);
  }
}

void vd_front_event(vd_src *src, uint32_t events) {
  vd_front *f = src->owner;
  if (f->dead)
    return;
  if (src == &f->src && (events & (EPOLLERR | EPOLLHUP))) { /* the client's socket is gone */
    vd_front_close(f);
    return;
  }
  vd_front_run(f);
}

/* ---------------------------------------------------------------- moving bytes */

/* Set the connection's deadline (seconds 0: none). */
static void timer_arm(vd_front *f, int mode, int seconds) {
  struct itimerspec its = {.it_value = {.tv_sec = seconds}};
  timerfd_settime(f->timer, 0, &its, NULL);
  f->timer_mode = mode;
  f->armed_for = f->requests;
}

/* The deadline that goes with the state: a client gets IDLE_SECONDS for its handshake and for
 * each request's head (and a login's body); answers, streams and terminals have none. */
static void timer_update(vd_front *f) {
  bool waiting = f->state == F_HANDSHAKE || f->state == F_HEAD || f->state == F_LOCAL_BODY;
  if (f->timer_mode == TIMER_LINGER)
    return;
  if (waiting && (f->timer_mode != TIMER_IDLE || f->armed_for != f->requests))
    timer_arm(f, TIMER_IDLE, IDLE_SECONDS);
  else if (!waiting && f->timer_mode != TIMER_NONE)
    timer_arm(f, TIMER_NONE, 0);
}

/* Everything was sent and the connection is to end. Closing a socket that has unread input
 * makes the kernel send a reset, which can destroy our last answer (a close frame, an error)
 * before the client reads it; so our side is shut first and what still comes is read and
 * dropped until the client closes, or for LINGER_SECONDS at most. */
static void linger_begin(vd_front *f) {
  f->state = F_LINGER;
  if (f->timer_mode == TIMER_LINGER) /* lingering already */
    return;
  if (f->inner >= 0) {
    vd_loop_del(f->d, f->inner);
    close(f->inner);
    f->inner = -1;
  }
  if (f->tls.established)
    SSL_shutdown(f->tls.ssl);
  shutdown(f->fd, SHUT_WR);
  timer_arm(f, TIMER_LINGER, LINGER_SECONDS);
}

/* What is queued for the client, through TLS: false when the connection ended. */
static bool flush_client(vd_front *f) {
  while (f->out.len) {
    ssize_t n = vd_tls_write(&f->tls, f->out.p, f->out.len);
    if (n < 0 && errno == EAGAIN)
      return true;
    if (n <= 0) {
      vd_front_close(f);
      return false;
    }
    buf_take(&f->out, (size_t)n);
  }
  if (f->state == F_CLOSING)
    linger_begin(f);
  return true;
}

static bool read_client(vd_front *f) {
  char chunk[READ_CHUNK];
  /* answers made here (files, pongs) wait in out: a client that does not read them is not read */
  while (!f->client_eof && f->in.len < BUF_HIGH && f->to_inner.len < BUF_HIGH &&
         f->out.len < BUF_HIGH && f->state != F_BUSY && f->state != F_CLOSING) {
    ssize_t n = vd_tls_read(&f->tls, chunk, sizeof(chunk));
    if (f->state == F_LINGER && n < 0 && errno != EAGAIN)
      n = 0; /* after our close_notify the session may refuse more: the end */
    if (n < 0 && errno == EAGAIN)
      return true;
    if (n <= 0) {
      f->client_eof = true;
      return true;
    }
    buf_add(&f->in, chunk, (size_t)n);
    vd_front_client_input(f);
    if (f->dead)
      return false;
  }
  return true;
}

static void flush_inner(vd_front *f) {
  while (f->inner >= 0 && f->to_inner.len) {
    ssize_t n = send(f->inner, f->to_inner.p, f->to_inner.len, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && errno == EAGAIN)
      return;
    if (n <= 0) { /* the router closed: what it answered is read below */
      f->to_inner.len = 0;
      return;
    }
    buf_take(&f->to_inner, (size_t)n);
  }
  /* a relay client that shut its side: pass the shutdown on once its bytes are through */
  if (f->inner >= 0 && f->client_eof && f->state == F_RELAY && !f->inner_wr_shut) {
    shutdown(f->inner, SHUT_WR);
    f->inner_wr_shut = true;
  }
}

static void read_inner(vd_front *f) {
  char chunk[READ_CHUNK];
  if (f->inner < 0)
    return;
  while (!f->inner_eof && f->out.len < BUF_HIGH && !f->dead) {
    ssize_t n = recv(f->inner, chunk, sizeof(chunk), 0);
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
      return;
    if (n <= 0) {
      f->inner_eof = true;
      break;
    }
    vd_front_inner_data(f, chunk, (size_t)n);
  }
  if (f->inner_eof && !f->dead) {
    vd_loop_del(f->d, f->inner);
    close(f->inner);
    f->inner = -1;
    if (f->state == F_WS_INSPECT) {
      vd_front_ws_inspected(f);
      return;
    }
    if (f->state == F_WS) {
      vd_front_ws_close(f, WS_CLOSE_NORMAL, "the stream ended");
    } else if (vd_front_inner_ended(f)) {
      /* an answer the client could tell the end of: its connection goes on, with the next
       * request it may have sent already */
      if (f->in.len)
        vd_front_client_input(f);
      return;
    }
    /* the stream ended, or an answer that ends with the connection: so does the client's */
    if (!f->dead)
      f->state = F_CLOSING;
  }
}

void vd_front_run(vd_front *f) {
  uint64_t expired = 0;
  if (read(f->timer, &expired, sizeof(expired)) == sizeof(expired) && expired &&
      f->timer_mode != TIMER_NONE) {
    if (f->timer_mode == TIMER_IDLE)
      vs_log_debug("web %s: no request within %d s, closed", f->addr, IDLE_SECONDS);
    vd_front_close(f);
    return;
  }
  for (int round = 0; round < 64 && !f->dead; round++) {
    size_t before = f->in.len + f->out.len + f->to_inner.len;
    front_state st = f->state;
    bool eofs = f->client_eof + f->inner_eof;
    if (f->state == F_HANDSHAKE) {
      vs_error *e = NULL;
      int r = vd_tls_handshake(&f->tls, &e);
      if (r < 0) {
        vs_log_debug("web %s: %s", f->addr, e->msg);
        vs_error_free(e);
        vd_front_close(f);
        return;
      }
      if (r == 0)
        break;
      f->state = f->web ? F_HEAD : F_RELAY;
      if (!f->web && vd_front_inner_open(f) < 0) {
        vd_front_close(f);
        return;
      }
    }
    if (!flush_client(f) || !read_client(f))
      return;
    flush_inner(f);
    read_inner(f);
    if (f->dead || !flush_client(f))
      return;
    if (f->client_eof && f->state != F_RELAY) { /* a browser that left: nothing more to do */
      vd_front_close(f);
      return;
    }
    if (f->client_eof && f->state == F_RELAY && f->inner < 0) {
      vd_front_close(f);
      return;
    }
    if (before == f->in.len + f->out.len + f->to_inner.len && st == f->state &&
        eofs == f->client_eof + f->inner_eof)
      break;
  }
  if (!f->dead) {
    timer_update(f);
    front_update(f);
  }
}

/* ---------------------------------------------------------------- listeners */

/* The connections of one client address: one address cannot take every connection there is
 * (each may hold a slot 30 s without sending a request). */
static size_t fronts_of(vd_daemon *d, const char *addr) {
  size_t n = 0;
  for (vd_front *f = d->fronts; f; f = f->next)
    n += !strcmp(f->addr, addr);
  return n;
}

void vd_web_end_session_streams(vd_daemon *d, uint64_t serial) {
  vd_front *next;
  for (vd_front *f = d->fronts; f; f = next) {
    next = f->next;
    if (!f->session || (serial && f->session != serial))
      continue;
    f->session = 0;
    if (f->state == F_WS) { /* a close frame says why */
      vd_front_ws_close(f, WS_CLOSE_POLICY, "the session ended");
      vd_front_run(f);                   /* may close f, never another: next stays in the list */
    } else if (vd_front_answer_cut(f)) { /* a stream ends as streams end */
      vd_front_run(f);
    } else if (f->state == F_PROXY || f->state == F_PROXY_BODY || f->state == F_WS_WAIT ||
               f->state == F_WS_INSPECT) {
      vd_front_close(f);
    }
  }
}

void vd_front_listener_event(vd_daemon *d, vd_front_listener *l) {
  for (;;) {
    struct sockaddr_storage sa;
    socklen_t sl = sizeof(sa);
    int fd = accept4(l->fd, (struct sockaddr *)&sa, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0)
      return;
    char addr[48];
    if (getnameinfo((struct sockaddr *)&sa, sl, addr, sizeof(addr), NULL, 0, NI_NUMERICHOST) != 0)
      snprintf(addr, sizeof(addr), "?");
    if (d->n_conns >= VD_MAX_CONNS || d->n_fronts >= VD_MAX_FRONTS ||
        fronts_of(d, addr) >= VD_WEB_MAX_FRONTS_PER_ADDR) {
      vs_log_debug("web %s: connection refused (too many)", addr);
      close(fd);
      continue;
    }
    vd_front *f = vs_malloc0(sizeof(*f));
    f->d = d;
    f->fd = fd;
    f->inner = -1;
    f->timer = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
    f->timer_src.kind = VD_SRC_FRONT;
    f->timer_src.owner = f;
    f->web = l->web;
    f->src.kind = VD_SRC_FRONT;
    f->src.owner = f;
    f->state = F_HANDSHAKE;
    memcpy(f->addr, addr, sizeof(addr));
    if (f->timer < 0 || vd_tls_init(&f->tls, l->ctx, fd, NULL) < 0 ||
        vd_loop_add(d, f->timer, EPOLLIN, &f->timer_src, NULL) < 0) {
      vd_tls_clear(&f->tls);
      if (f->timer >= 0)
        close(f->timer);
      close(fd);
      free(f);
      continue;
    }
    if (vd_loop_add(d, fd, EPOLLIN | EPOLLRDHUP, &f->src, NULL) < 0) {
      vd_loop_del(d, f->timer);
      close(f->timer);
      vd_tls_clear(&f->tls);
      close(fd);
      free(f);
      continue;
    }
    timer_arm(f, TIMER_IDLE, IDLE_SECONDS);
    d->n_fronts++;
    f->next = d->fronts;
    if (d->fronts)
      d->fronts->prev = f;
    d->fronts = f;
  }
}

static int add_front_listener(vd_daemon *d, int fd, bool web, SSL_CTX *ctx, const char *name,
                              vs_error **err) {
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  vd_front_listener *l = vs_malloc0(sizeof(*l));
  l->src.kind = VD_SRC_FRONT_LISTENER;
  l->src.owner = l;
  l->fd = fd;
  l->web = web;
  l->ctx = ctx;
  l->name = vs_strdup(name);
  l->next = d->front_listeners;
  d->front_listeners = l;
  return vd_loop_add(d, fd, EPOLLIN, &l->src, err);
}

int vd_front_listen_relay(vd_daemon *d, int fd, SSL_CTX *ctx, const char *name, vs_error **err) {
  return add_front_listener(d, fd, false, ctx, name, err);
}

/* The directory of the running executable, for the default web root. */
static char *exe_dir(void) {
  char path[4096];
  ssize_t n = readlink("/proc/self/exe", path, sizeof(path) - 1);
  if (n <= 0)
    return vs_strdup(".");
  path[n] = 0;
  char *slash = strrchr(path, '/');
  if (slash)
    *slash = 0;
  return vs_strdup(path);
}

int vd_web_init(vd_daemon *d, const vd_options *o, vs_error **err) {
  if (!o->web)
    return 0;
  vd_web *w = vs_malloc0(sizeof(*w));
  d->web = w;
  w->d = d;
  w->root_fd = -1;
  w->session_ttl = o->web_session_ttl > 0 ? o->web_session_ttl : 28800;
  w->passwd_path = vs_asprintf("%s/web/passwd", d->data_root);
  if (o->web_root) {
    w->root = vs_strdup(o->web_root);
  } else {
    _cleanup_free_ char *dir = exe_dir();
    w->root = vs_asprintf("%s/web", dir);
  }
  w->root_fd = open(w->root, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (w->root_fd < 0)
    vs_log_warn("web: no static files at %s (%s): the API answers, the pages do not", w->root,
                strerror(errno));
  int fd = vd_listen_tcp(o->web, "--web", err);
  if (fd < 0)
    return -1;
  _cleanup_free_ char *cert = NULL, *key = NULL;
  if (o->web_cert || o->web_key) {
    if (!o->web_cert || !o->web_key) {
      close(fd);
      return vs_error_set(err, EINVAL, "--web-cert and --web-key go together");
    }
    cert = vs_strdup(o->web_cert);
    key = vs_strdup(o->web_key);
  } else {
    _cleanup_free_ char *dir = vs_asprintf("%s/web", d->data_root);
    _cleanup_free_ char *host = vs_strdup(o->web);
    char *colon = strrchr(host, ':');
    if (colon)
      *colon = 0;
    if (host[0] == '[') {
      memmove(host, host + 1, strlen(host));
      host[strcspn(host, "]")] = 0;
    }
    if (vd_tls_self_signed(dir, host, &cert, &key, err) < 0) {
      close(fd);
      return vs_error_wrap(err, "--web");
    }
  }
  vd_tls_options to = {.cert = cert, .key = key};
  SSL_CTX *ctx = vd_tls_server_ctx(&to, err);
  if (!ctx) {
    close(fd);
    return vs_error_wrap(err, "--web");
  }
  if (add_front_listener(d, fd, true, ctx, o->web, err) < 0)
    return -1;
  /* only now: a start that failed must not write the sessions over at its end */
  w->sessions_path = vs_asprintf("%s/web/sessions.json", d->data_root);
  vd_web_sessions_load(w);
  vs_log_info("web console on https://%s (static files %s)", o->web, w->root);
  return 0;
}

void vd_web_free(vd_daemon *d) {
  while (d->fronts)
    vd_front_close(d->fronts);
  vd_front_sweep(d);
  while (d->front_listeners) {
    vd_front_listener *l = d->front_listeners;
    d->front_listeners = l->next;
    close(l->fd);
    SSL_CTX_free(l->ctx);
    free(l->name);
    free(l);
  }
  vd_web *w = d->web;
  if (w) {
    if (w->sessions_path)
      vd_web_sessions_save(w); /* their last use, for the next start */
    if (w->root_fd >= 0)
      close(w->root_fd);
    free(w->root);
    free(w->passwd_path);
    free(w->sessions_path);
    OPENSSL_cleanse(w->sessions, sizeof(w->sessions));
    free(w);
    d->web = NULL;
  }
}
