/* API connections on the event loop: reading requests, writing responses, streams, hijacks.
 *
 * Everything here runs on the loop thread. A connection reads a head, then its body (into
 * memory, or into a temporary file for image archives), then hands the call to its handler:
 * right away for quick handlers, through a worker for those that may block. A build's body goes
 * to its worker through a pipe instead, as it arrives (see "streamed bodies" below). Output is
 * queued and written as the socket accepts it, so a slow client never blocks the loop. */
#include "daemon/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/sendfile.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>

#define READ_CHUNK 65536
/* Input kept while a request is handled (pipelined requests, attach stdin we ignore). */
#define IN_LIMIT (HTTP_MAX_HEAD_BYTES + READ_CHUNK)

static void conn_close(vd_conn *c);
static void conn_free(vd_conn *c);
static void conn_process(vd_conn *c);

static long long now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int vd_loop_add(vd_daemon *d, int fd, uint32_t events, vd_src *src, vs_error **err) {
  struct epoll_event ev = {.events = events, .data.ptr = src};
  if (epoll_ctl(d->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
    return vs_error_set(err, errno, "epoll_ctl add");
  return 0;
}

void vd_loop_del(vd_daemon *d, int fd) { epoll_ctl(d->epfd, EPOLL_CTL_DEL, fd, NULL); }

/* Between requests, with this much of the answers made so far still unsent (or a file body
 * going out), the client is not reading them: its next requests stay in its socket until it
 * does. Reading on would only queue answers nobody takes, as fast as the client sends. */
static bool conn_answers_backed_up(const vd_conn *c) {
  return c->state == VD_CONN_HEAD &&
         (c->file_fd >= 0 || c->out_len - c->out_off >= VD_OUT_HIGH_WATER);
}

/* Which events the connection wants now: input while it may use it, output while some waits. */
static void conn_update_events(vd_conn *c) {
  if (c->hung_up)
    return; /* out of the epoll set for good: nothing can come or go */
  /* once the client shut its side, RDHUP would fire on every wait: stop asking */
  uint32_t ev = c->peer_eof ? 0 : EPOLLRDHUP;
  bool reading = c->state == VD_CONN_HEAD || c->state == VD_CONN_BODY;
  if (c->pipe_off < c->pipe_len)
    reading = false; /* a streamed body waits for its worker: keep the rest in the socket */
  if (!c->peer_eof && (reading || c->in_len < IN_LIMIT))
    ev |= EPOLLIN;
  if (c->out_len > c->out_off || c->file_fd >= 0)
    ev |= EPOLLOUT;
  if (((c->stream == VD_STREAM_ATTACH && c->attach_stdin) || c->stream == VD_STREAM_EXEC) &&
      c->in_len >= IN_LIMIT)
    ev &= ~(uint32_t)EPOLLIN; /* the container does not read its stdin: stop reading ours */
  /* a client that does not read its answers is not read either, nor woken for its end (RDHUP
   * fires until the input is read): only the answers' going out wakes it */
  if (conn_answers_backed_up(c))
    ev &= ~(uint32_t)(EPOLLIN | EPOLLRDHUP);
  struct epoll_event e = {.events = ev, .data.ptr = &c->src};
  epoll_ctl(c->d->epfd, EPOLL_CTL_MOD, c->fd, &e);
}

static void conn_flush(vd_conn *c) {
  while (c->out_off < c->out_len) {
    ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && errno == EAGAIN)
      break;
    if (n <= 0) {
      conn_close(c);
      return;
    }
    c->out_off += (size_t)n;
  }
  /* a file body (docker save) goes after the head, straight from the page cache */
  while (c->out_off == c->out_len && c->file_fd >= 0 && c->file_left > 0) {
    size_t chunk = c->file_left < ((size_t)1 << 20) ? (size_t)c->file_left : (size_t)1 << 20;
    ssize_t n = sendfile(c->fd, c->file_fd, NULL, chunk);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && errno == EAGAIN)
      break;
    if (n <= 0) {
      conn_close(c);
      return;
    }
    c->file_left -= (uint64_t)n;
  }
  if (c->file_fd >= 0 && c->file_left == 0) {
    close(c->file_fd);
    c->file_fd = -1;
  }
  if (c->out_off == c->out_len && c->file_fd < 0) {
    c->out_off = c->out_len = 0;
    if (c->state == VD_CONN_CLOSING) {
      conn_close(c);
      return;
    }
  }
  conn_update_events(c);
}

void vd_conn_send(vd_conn *c, const void *data, size_t len) {
  if (c->dead)
    return;
  /* move the unsent rest to the front rather than growing behind what was sent */
  if (c->out_off > 0 && c->out_off >= c->out_len / 2) {
    memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
    c->out_len -= c->out_off;
    c->out_off = 0;
  }
  if (c->out_len + len > c->out_cap) {
    size_t cap = c->out_cap ? c->out_cap : 4096;
    while (cap < c->out_len + len)
      cap *= 2;
    c->out = vs_realloc(c->out, cap);
    c->out_cap = cap;
  }
  memcpy(c->out + c->out_len, data, len);
  c->out_len += len;
}

static void send_str(vd_conn *c, const char *s) { vd_conn_send(c, s, strlen(s)); }

/* The headers every dockerd response has, which clients read the API version from. */
static void send_head(vd_conn *c, int status, const char *content_type, long long length,
                      bool keep_alive) {
  char date[64];
  time_t t = time(NULL);
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
  _cleanup_free_ char *head = vs_asprintf(
      "HTTP/1.1 %d %s\r\nApi-Version: " VD_API_VERSION "\r\nDocker-Experimental: false\r\n"
      "Ostype: linux\r\nServer: vesseld/0.1.0 (linux)\r\nDate: %s\r\n",
      status, http_reason(status), date);
  send_str(c, head);
  if (content_type) {
    _cleanup_free_ char *ct = vs_asprintf("Content-Type: %s\r\n", content_type);
    send_str(c, ct);
  }
  if (length >= 0) {
    _cleanup_free_ char *cl = vs_asprintf("Content-Length: %lld\r\n", length);
    send_str(c, cl);
  }
  if (!keep_alive)
    send_str(c, "Connection: close\r\n");
}

void vd_call_free(vd_call *call) {
  if (!call)
    return;
  free(call->arg);
  free(call->body);
  free(call->headers_owned);
  if (call->body_fd >= 0)
    close(call->body_fd);
  if (call->file_fd >= 0)
    close(call->file_fd);
  if (call->body_path) {
    unlink(call->body_path);
    free(call->body_path);
  }
  json_decref(call->json);
  free(call->text);
  free(call->posted);
  free(call);
}

/* After a response: the next request on this connection, or close. */
static void conn_next_request(vd_conn *c, bool keep_alive) {
  http_request_clear(&c->req);
  c->call = NULL;
  c->stream = VD_STREAM_NONE;
  if (!keep_alive || c->peer_eof) {
    c->state = VD_CONN_CLOSING;
    conn_flush(c);
    return;
  }
  c->state = VD_CONN_HEAD;
  conn_flush(c);
  if (!c->dead && c->state == VD_CONN_HEAD && c->in_len > 0)
    conn_process(c);
}

void vd_conn_finish_call(vd_conn *c, vd_call *call) {
  bool keep = c->req.keep_alive;
  const char *extra = call->extra_headers ? call->extra_headers : "";
  if (call->json) {
    _cleanup_free_ char *body = json_dumps(call->json, JSON_COMPACT);
    size_t len = strlen(body);
    send_head(c, call->status, "application/json", (long long)len + 1, keep);
    send_str(c, extra);
    send_str(c, "\r\n");
    if (!c->req.head_only) {
      vd_conn_send(c, body, len);
      send_str(c, "\n");
    }
  } else if (call->file_fd >= 0) {
    send_head(c, call->status, call->content_type, (long long)call->file_size, keep);
    send_str(c, extra);
    send_str(c, "\r\n");
    if (!c->req.head_only) {
      c->file_fd = call->file_fd;
      c->file_left = call->file_size;
      call->file_fd = -1;
    }
  } else if (call->text) {
    size_t len = strlen(call->text);
    send_head(c, call->status, call->content_type, (long long)len, keep);
    send_str(c, extra);
    send_str(c, "\r\n");
    if (!c->req.head_only)
      vd_conn_send(c, call->text, len);
  } else {
    send_head(c, call->status, NULL, call->status == 204 || call->status == 304 ? -1 : 0, keep);
    send_str(c, extra);
    send_str(c, "\r\n");
  }
  vd_call_free(call);
  conn_next_request(c, keep);
}

/* An error before any handler ran (bad request line, unknown path): answer and close if the
 * framing can no longer be trusted. */
static void conn_fail(vd_conn *c, int status, const char *msg, bool keep) {
  _cleanup_json_ json_t *j = json_pack("{s:s}", "message", msg);
  _cleanup_free_ char *body = json_dumps(j, JSON_COMPACT);
  size_t len = strlen(body);
  send_head(c, status, "application/json", (long long)len + 1, keep);
  send_str(c, "\r\n");
  vd_conn_send(c, body, len);
  send_str(c, "\n");
  vd_call_free(c->call);
  conn_next_request(c, keep);
}

void vd_conn_stream_begin(vd_conn *c, int status, const char *content_type) {
  send_head(c, status, content_type, -1, c->req.keep_alive);
  send_str(c, "Transfer-Encoding: chunked\r\n\r\n");
  c->chunked = true;
  c->state = VD_CONN_STREAM;
  conn_flush(c);
}

void vd_conn_hijack_begin(vd_conn *c, const char *content_type) {
  if (c->req.upgrade_tcp) {
    _cleanup_free_ char *h = vs_asprintf("HTTP/1.1 101 UPGRADED\r\nContent-Type: %s\r\n"
                                         "Connection: Upgrade\r\nUpgrade: tcp\r\n"
                                         "Api-Version: " VD_API_VERSION "\r\n\r\n",
                                         content_type);
    send_str(c, h);
  } else {
    /* old clients hijack a plain 200 response */
    send_head(c, 200, content_type, -1, false);
    send_str(c, "\r\n");
  }
  c->chunked = false;
  c->state = VD_CONN_STREAM;
  conn_flush(c);
}

int vd_conn_release_fd(vd_conn *c) {
  if (c->dead)
    return -1;
  int fd = fcntl(c->fd, F_DUPFD_CLOEXEC, 3);
  if (fd < 0)
    return -1;
  /* the status flags are shared with the loop's descriptor, which is closed just below */
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
  if (vs_write_all(fd, c->out + c->out_off, c->out_len - c->out_off, NULL) < 0) {
    close(fd);
    fd = -1;
  }
  c->out_off = c->out_len;
  conn_close(c);
  return fd;
}

void vd_conn_stream_write(vd_conn *c, const void *data, size_t len) {
  if (len == 0)
    return;
  if (c->chunked) {
    char size[32];
    int n = snprintf(size, sizeof(size), "%zx\r\n", len);
    vd_conn_send(c, size, (size_t)n);
  }
  vd_conn_send(c, data, len);
  if (c->chunked)
    send_str(c, "\r\n");
}

void vd_conn_update(vd_conn *c) {
  if (!c->dead)
    conn_update_events(c);
}

void vd_conn_flush(vd_conn *c) {
  if (!c->dead)
    conn_flush(c);
}

void vd_conn_stream_end(vd_conn *c) {
  vd_stream_detach(c);
  if (!c->chunked) { /* hijacked: the end of the stream is the end of the connection */
    c->state = VD_CONN_CLOSING;
    conn_flush(c);
    return;
  }
  send_str(c, "0\r\n\r\n");
  conn_next_request(c, c->req.keep_alive);
}

/* ---------------------------------------------------------------- reading */

static bool conn_read(vd_conn *c) {
  if (c->in_cap - c->in_len < READ_CHUNK) {
    c->in_cap = c->in_len + READ_CHUNK;
    c->in = vs_realloc(c->in, c->in_cap);
  }
  ssize_t n = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, 0);
  if (n < 0 && (errno == EINTR || errno == EAGAIN))
    return true;
  if (n <= 0) {
    c->peer_eof = true;
    return false;
  }
  c->in_len += (size_t)n;
  if (c->state == VD_CONN_BODY)
    c->body_active_ns = now_ns();
  if (c->stream == VD_STREAM_ATTACH || c->stream == VD_STREAM_EXEC)
    vd_detach_filter(c, c->in_len - (size_t)n);
  return true;
}

static void conn_consume(vd_conn *c, size_t n) {
  if (n == 0)
    return;
  memmove(c->in, c->in + n, c->in_len - n);
  c->in_len -= n;
}

/* ---------------------------------------------------------------- streamed bodies
 *
 * A VD_RUN_WORKER_STREAMED route (docker build) goes to its worker as soon as its head is read; the
 * loop writes the decoded body into a pipe that the worker reads (call->body_fd), so the build
 * context is unpacked while it arrives instead of after a spool file holds all of it. The pipe
 * is the only buffer: while it is full the loop keeps what it decoded in pipe_buf and stops
 * reading the socket until the pipe drains. The worker reads the pipe to its end after the
 * handler (http_job_run), so the call completes only once the whole body is read and the
 * connection is ready for its next request. The end of the body closes the write end; so does
 * the end of the connection, and the worker then sees a truncated body. */

static void pipe_close(vd_conn *c) {
  if (c->pipe_fd >= 0) {
    if (c->pipe_polled)
      vd_loop_del(c->d, c->pipe_fd);
    close(c->pipe_fd);
  }
  c->pipe_fd = -1;
  c->pipe_polled = false;
  free(c->pipe_buf);
  c->pipe_buf = NULL;
  c->pipe_len = c->pipe_off = 0;
}

/* Write what waits into the pipe: 1 when all of it went, 0 while the pipe is full (the loop
 * then waits for it to become writable), -1 when the pipe failed: the worker still reads it to
 * its end before the call completes, so nothing but closing the connection is safe then. */
static int pipe_flush(vd_conn *c) {
  while (c->pipe_off < c->pipe_len) {
    ssize_t n = write(c->pipe_fd, c->pipe_buf + c->pipe_off, c->pipe_len - c->pipe_off);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && errno == EAGAIN) {
      struct epoll_event e = {.events = EPOLLOUT, .data.ptr = &c->pipe_src};
      int op = c->pipe_polled ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
      if (epoll_ctl(c->d->epfd, op, c->pipe_fd, &e) < 0)
        break;
      c->pipe_polled = true;
      return 0;
    }
    if (n <= 0)
      break;
    c->pipe_off += (size_t)n;
  }
  if (c->pipe_off < c->pipe_len) {
    vs_log_warn("%s %s: pass the body on: %s", c->req.method, c->req.target, strerror(errno));
    conn_close(c);
    return -1;
  }
  c->pipe_off = c->pipe_len = 0;
  if (c->pipe_polled) {
    vd_loop_del(c->d, c->pipe_fd);
    c->pipe_polled = false;
  }
  return 1;
}

/* Decoded body bytes to the worker: false when the connection had to close. */
static bool pipe_put(vd_conn *c, const char *data, size_t len) {
  /* first straight into the pipe; only what it does not take now is copied */
  size_t off = 0;
  while (c->pipe_len == 0 && off < len) {
    ssize_t n = write(c->pipe_fd, data + off, len - off);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      break; /* full, or failed: pipe_flush tells which */
    off += (size_t)n;
  }
  if (off == len)
    return true;
  c->pipe_buf = vs_realloc(c->pipe_buf, c->pipe_len + len - off);
  memcpy(c->pipe_buf + c->pipe_len, data + off, len - off);
  c->pipe_len += len - off;
  return pipe_flush(c) >= 0;
}

/* The body's end (or a body that cannot be decoded): the worker sees EOF once the pipe drained.
 * The connection waits for the worker's answer as for any worker call. */
static void pipe_body_end(vd_conn *c) {
  c->body_in_worker = false;
  c->state = VD_CONN_BUSY;
  if (c->pipe_off == c->pipe_len)
    pipe_close(c);
  conn_update_events(c);
}

/* The client stopped sending before the body's end: once what it sent is in the pipe, the
 * worker gets the end of a truncated body. */
static void pipe_check_peer_eof(vd_conn *c) {
  if (c->dead || !c->body_in_worker || !c->peer_eof || c->pipe_off < c->pipe_len)
    return;
  c->req.keep_alive = false;
  pipe_close(c);
  pipe_body_end(c);
}

void vd_conn_pipe_event(vd_conn *c);
void vd_conn_pipe_event(vd_conn *c) {
  if (c->dead || pipe_flush(c) <= 0)
    return;
  c->body_active_ns = now_ns(); /* the client's idle time counts from here again */
  if (!c->body_in_worker) {
    pipe_close(c); /* the body ended while the pipe was full: now the worker may see EOF */
    return;
  }
  conn_process(c); /* decode what waited in the input buffer */
  pipe_check_peer_eof(c);
}

/* Create the pipe and hand the call to its worker now. */
static int pipe_open(vd_conn *c, vd_call *call, vs_error **err) {
  int p[2];
  if (pipe2(p, O_CLOEXEC) < 0)
    return vs_error_set(err, errno, "pipe for the request body");
  /* a larger pipe wakes the worker less often; the default (64 KiB) is enough when refused */
  fcntl(p[1], F_SETPIPE_SZ, 1 << 20);
  fcntl(p[1], F_SETFL, O_NONBLOCK);
  call->body_fd = p[0];
  c->pipe_fd = p[1];
  c->body_in_worker = true;
  return 0;
}

static bool body_store(vd_conn *c, const char *data, size_t len) {
  vd_call *call = c->call;
  if (len == 0)
    return true;
  if (c->body_in_worker)
    return pipe_put(c, data, len);
  if (call->body_fd >= 0) {
    vs_error *e = NULL;
    if (vs_write_all(call->body_fd, data, len, &e) < 0) {
      _cleanup_free_ char *msg = vs_asprintf("spool the request body: %s", e->msg);
      vs_error_free(e);
      conn_fail(c, 500, msg, false);
      return false;
    }
    return true;
  }
  call->body = vs_realloc(call->body, call->body_len + len + 1);
  memcpy(call->body + call->body_len, data, len);
  call->body_len += len;
  call->body[call->body_len] = 0;
  return true;
}

/* A streamed body is read to its end whatever the handler did with it: the call must not
 * complete (and the connection read its next request) while the body still comes. */
static void drain_body(int fd) {
  char buf[65536];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n == 0 || (n < 0 && errno != EINTR))
      return;
  }
}

static void http_job_run(vd_job *job) {
  vd_call *call = job->call;
  call->route->handler(call);
  if (call->route->mode == VD_RUN_WORKER_STREAMED && call->body_fd >= 0)
    drain_body(call->body_fd);
}

/* On the loop: what a worker posted goes out, after the head when it is the first piece. */
static void post_deliver(vd_job *job) {
  vd_call *call = job->call;
  vd_daemon *d = job->d;
  free(job);
  pthread_mutex_lock(&d->qlock);
  char *data = steal_pointer(&call->posted);
  size_t len = call->posted_len;
  call->posted_len = 0;
  call->post_queued = false;
  pthread_mutex_unlock(&d->qlock);
  vd_conn *c = call->conn;
  if (!c->dead) {
    if (!call->stream_open) {
      send_head(c, 200, "application/json", -1, c->req.keep_alive);
      send_str(c, "Transfer-Encoding: chunked\r\n\r\n");
      c->chunked = true;
      call->stream_open = true;
    }
    vd_conn_stream_write(c, data, len);
    conn_flush(c);
  }
  free(data);
}

void vd_call_post(vd_call *call, const char *data, size_t len) {
  vd_daemon *d = call->d;
  pthread_mutex_lock(&d->qlock);
  call->posted = vs_realloc(call->posted, call->posted_len + len);
  memcpy(call->posted + call->posted_len, data, len);
  call->posted_len += len;
  call->post_begun = true;
  /* one delivery on the done list at a time; it comes before the call's own completion */
  bool wake = !call->post_queued;
  if (wake) {
    vd_job *job = vs_malloc0(sizeof(*job));
    job->d = d;
    job->call = call;
    job->done = post_deliver;
    job->next = d->done;
    d->done = job;
    call->post_queued = true;
  }
  pthread_mutex_unlock(&d->qlock);
  uint64_t one = 1;
  if (wake && write(d->donefd, &one, sizeof(one)) < 0)
    vs_log_warn("wake the event loop: %s", strerror(errno));
}

/* The loop's part of a call made inside the daemon (cluster_ctrs.c), as http_job_done does it
 * for a client's. */
static void after_call_done(vd_job *job) {
  vd_container *ctr = job->ctr;
  if (job->result == VD_AFTER_WATCH)
    vd_supervise_watch(job->d, ctr);
  else if (job->result == VD_AFTER_REMOVED)
    vd_supervise_removed(job->d, ctr);
  else if (job->result == VD_AFTER_START_FAILED)
    vd_supervise_start_failed(job->d, ctr);
  vd_ctr_unref(job->d, ctr);
  free(job);
}

void vd_loop_after_call(vd_daemon *d, vd_container *ctr, int after) {
  vd_job *job = vs_malloc0(sizeof(*job));
  job->d = d;
  job->ctr = ctr;
  job->result = after;
  job->done = after_call_done;
  vd_loop_done(d, job);
}

static void http_job_done(vd_job *job) {
  vd_call *call = job->call;
  vd_conn *c = call->conn;
  free(job);
  if (call->ctr) {
    if (call->after == VD_AFTER_WATCH)
      vd_supervise_watch(c->d, call->ctr);
    else if (call->after == VD_AFTER_REMOVED)
      vd_supervise_removed(c->d, call->ctr);
    else if (call->after == VD_AFTER_START_FAILED)
      vd_supervise_start_failed(c->d, call->ctr);
    vd_ctr_unref(c->d, call->ctr);
    call->ctr = NULL;
  }
  if (c->dead) {
    c->state = VD_CONN_CLOSING; /* the sweep frees it, and the call with it */
    return;
  }
  if (call->stream_open) { /* a progress stream: everything went into it */
    bool keep = c->req.keep_alive;
    send_str(c, "0\r\n\r\n");
    c->chunked = false;
    vd_call_free(call);
    conn_next_request(c, keep);
    return;
  }
  vd_conn_finish_call(c, call);
}

/* A call to a worker: run(job) there, answered by http_job_done on the loop. */
static void submit_call(vd_call *call, void (*run)(vd_job *job)) {
  vd_job *job = vs_malloc0(sizeof(*job));
  job->d = call->d;
  job->call = call;
  job->run = run;
  job->done = http_job_done;
  vd_job_submit(call->d, job);
}

static void deferred_job_run(vd_job *job) { job->call->deferred(job->call); }

void vd_call_defer(vd_call *call, void (*run)(vd_call *call)) {
  call->deferred = run;
  submit_call(call, deferred_job_run);
}

static void conn_dispatch(vd_conn *c) {
  vd_call *call = c->call;
  /* a guest of the cluster on another node: the request goes there (cluster_tunnel.c) */
  int taken = vd_tunnel_take(c, call);
  if (taken == 1)
    return;
  if (taken == 2) {
    c->state = VD_CONN_BUSY;
    vd_conn_finish_call(c, call);
    return;
  }
  if (call->route->mode != VD_RUN_LOOP) {
    c->state = VD_CONN_BUSY;
    submit_call(call, http_job_run);
    conn_update_events(c);
    return;
  }
  c->state = VD_CONN_BUSY;
  call->route->handler(call);
  if (call->deferred) {
    conn_update_events(c);
  } else if (!call->streamed) {
    vd_conn_finish_call(c, call);
  } else {
    /* the stream owns the connection now; it may even have ended already */
    if (c->call == call)
      c->call = NULL;
    vd_call_free(call);
  }
}

/* Decode what is buffered; what was decoded leaves the input buffer once at the end (a body of
 * many small chunks would otherwise move the buffer's rest three times per chunk). */
static void conn_read_body(vd_conn *c) {
  size_t off = 0;
  for (;;) {
    if (c->pipe_off < c->pipe_len)
      break; /* the worker's pipe is full: vd_conn_pipe_event goes on */
    size_t used;
    const char *data;
    size_t dlen;
    vs_error *e = NULL;
    int r = http_body_decode(&c->body, c->in + off, c->in_len - off, &used, &data, &dlen, &e);
    if (r > 1 && c->body_in_worker) {
      /* the worker has the call: it sees a truncated body and answers; then the connection,
       * whose framing is lost, closes */
      vs_log_warn("%s %s: %s", c->req.method, c->req.target, e->msg);
      vs_error_free(e);
      conn_consume(c, off);
      c->req.keep_alive = false;
      pipe_close(c);
      pipe_body_end(c);
      return;
    }
    if (r > 1) {
      _cleanup_free_ char *msg = vs_strdup(e->msg);
      vs_error_free(e);
      conn_consume(c, off);
      conn_fail(c, r, msg, false);
      return;
    }
    if (!body_store(c, data, dlen))
      return; /* the call or the connection ended */
    off += used;
    if (r == 1) {
      /* consumed first: a quick handler may go on to the next request in the buffer */
      conn_consume(c, off);
      if (c->body_in_worker)
        pipe_body_end(c);
      else
        conn_dispatch(c);
      return;
    }
    if (used == 0)
      break;
  }
  conn_consume(c, off);
}

/* A parsed head: find the handler, then read the body where the route wants it. */
static void conn_start_call(vd_conn *c) {
  vd_call *call = vs_malloc0(sizeof(*call));
  call->d = c->d;
  call->conn = c;
  call->req = &c->req;
  call->body_fd = -1;
  call->file_fd = -1;
  c->call = call;
  _cleanup_free_ char *msg = NULL;
  vs_log_debug("%s %s", c->req.method, c->req.target);
  int status = vd_route_resolve(call, &msg);
  bool has_body = c->req.chunked || (c->req.has_length && c->req.content_length > 0);
  if (status) {
    conn_fail(c, status, msg, c->req.keep_alive && !has_body);
    return;
  }
  uint64_t limit = VD_MAX_JSON_BODY;
  if (call->route->body_to_file && has_body) {
    vs_error *e = NULL;
    _cleanup_free_ char *tmpl = vs_asprintf("%s/tmp/upload-XXXXXX", c->d->data_root);
    call->body_fd = mkostemp(tmpl, O_CLOEXEC);
    if (call->body_fd < 0) {
      vs_error_set(&e, errno, "create a temporary file in %s/tmp", c->d->data_root);
      _cleanup_free_ char *m = vs_strdup(e->msg);
      vs_error_free(e);
      conn_fail(c, 500, m, false);
      return;
    }
    call->body_path = steal_pointer(&tmpl);
    limit = VD_MAX_LOAD_BODY;
  }
  if (call->route->mode == VD_RUN_WORKER_STREAMED && has_body) {
    vs_error *e = NULL;
    if (pipe_open(c, call, &e) < 0) {
      _cleanup_free_ char *m = vs_strdup(e->msg);
      vs_error_free(e);
      conn_fail(c, 500, m, false);
      return;
    }
    limit = VD_MAX_LOAD_BODY;
  }
  http_body_init(&c->body, &c->req, limit);
  c->state = VD_CONN_BODY;
  c->body_active_ns = now_ns();
  if (c->body_in_worker)
    submit_call(call, http_job_run);
  /* curl waits a second for this before it sends a large body */
  const char *expect = http_header_get(&c->req, "Expect");
  if (has_body && expect && !strcasecmp(expect, "100-continue") && c->in_len == 0) {
    send_str(c, "HTTP/1.1 100 Continue\r\n\r\n");
    conn_flush(c);
  }
}

static void conn_read_head(vd_conn *c) {
  size_t hl = http_head_length(c->in, c->in_len);
  if (hl == 0) {
    if (c->in_len > HTTP_MAX_HEAD_BYTES)
      conn_fail(c, 431, "request head larger than 65536 bytes", false);
    return;
  }
  vs_error *e = NULL;
  int r = http_parse_head(c->in, hl, &c->req, &e);
  conn_consume(c, hl);
  if (r) {
    _cleanup_free_ char *msg = vs_strdup(e->msg);
    vs_error_free(e);
    conn_fail(c, r, msg, false);
    return;
  }
  conn_start_call(c);
}

/* Run the state machine over what is buffered. */
static void conn_process(vd_conn *c) {
  /* the next answer must wait until a file body is out */
  if (c->file_fd >= 0)
    return;
  for (;;) {
    vd_conn_state before = c->state;
    size_t in_before = c->in_len;
    if (conn_answers_backed_up(c))
      break; /* pipelined requests wait until the client takes what it was answered */
    if (c->state == VD_CONN_HEAD)
      conn_read_head(c);
    else if (c->state == VD_CONN_BODY)
      conn_read_body(c);
    else
      break;
    if (c->dead || (c->state == before && c->in_len == in_before))
      break;
  }
  if (!c->dead)
    conn_update_events(c);
}

void vd_conn_event(vd_conn *c, uint32_t events);
void vd_conn_event(vd_conn *c, uint32_t events) {
  if (events & EPOLLERR) {
    conn_close(c);
    return;
  }
  if (events & EPOLLOUT) {
    conn_flush(c);
    if (c->dead)
      return;
    /* the client caught up: read on in the log it follows */
    if (c->stream == VD_STREAM_LOGS || c->stream == VD_STREAM_ATTACH)
      vd_stream_pump(c);
    if (c->dead)
      return;
    if (c->state == VD_CONN_HEAD && c->file_fd < 0 && c->in_len > 0)
      conn_process(c); /* requests that waited for a file body */
  }
  if (events & (EPOLLIN | EPOLLHUP | EPOLLRDHUP)) {
    bool open = conn_read(c);
    if (!open && (events & EPOLLHUP) && (c->state == VD_CONN_BUSY || c->body_in_worker)) {
      /* Gone both ways while a worker has its call: HUP cannot be masked and would wake the
       * loop on every wait until the worker returns, so the socket leaves the epoll set; the
       * answer's first send then fails and closes it (the worker's pipe still drains). */
      vd_loop_del(c->d, c->fd);
      c->hung_up = true;
    }
    if (!open) {
      /* a hijacked client may shut its sending side and still read the stream */
      if (c->stream == VD_STREAM_ATTACH && !(events & EPOLLHUP)) {
        vd_attach_forward(c);
        conn_update_events(c);
        return;
      }
      if (c->stream == VD_STREAM_EXEC && !(events & EPOLLHUP)) {
        vd_exec_forward(c);
        conn_update_events(c);
        return;
      }
      if (c->state == VD_CONN_BUSY) {
        conn_update_events(c);
        return;
      }
      if (c->body_in_worker) { /* what came before the client's end still goes to the worker */
        conn_process(c);
        pipe_check_peer_eof(c);
        return;
      }
      if (c->state == VD_CONN_HEAD && !(events & EPOLLHUP) &&
          (c->out_len > c->out_off || c->file_fd >= 0)) {
        c->state = VD_CONN_CLOSING; /* it shut its side only: the answers made still go out */
        conn_flush(c);
        return;
      }
      conn_close(c);
      return;
    }
    if (c->state == VD_CONN_HEAD || c->state == VD_CONN_BODY)
      conn_process(c);
    else if (c->stream == VD_STREAM_ATTACH)
      vd_attach_forward(c);
    else if (c->stream == VD_STREAM_EXEC)
      vd_exec_forward(c);
    else
      conn_update_events(c);
    /* the detach keys: what came before them went on; the stream ends, the container runs on */
    if (!c->dead && c->detach_seen)
      vd_conn_stream_end(c);
  }
}

/* ---------------------------------------------------------------- idle bodies
 *
 * A client that sent a request head and then stops sending its body would hold what the body
 * is for as long as it keeps the connection: a build's worker thread (the body streams to it),
 * and a connection slot with a half-read body for every other route. dockerd waits forever;
 * vesseld gives a body d->body_idle_ns (--body-idle-timeout, 5 minutes by default) without a
 * byte, then closes the connection: a worker that had the call reads the end of a truncated
 * body and answers into the void, and is free again. The clock stands still while the loop
 * itself holds the client back (the worker's pipe is full). A body still in the loop's hands
 * gets 408 before the close. */

static void conn_expire_body(vd_conn *c) {
  long long secs = c->d->body_idle_ns / 1000000000LL;
  vs_log_warn("%s %s: no request body bytes for %lld s: closing the connection", c->req.method,
              c->req.target, secs);
  if (c->body_in_worker) {
    conn_close(c);
    return;
  }
  _cleanup_free_ char *msg =
      vs_asprintf("request body timed out: nothing received for %lld seconds", secs);
  conn_fail(c, 408, msg, false);
}

int vd_conn_expire_idle_bodies(vd_daemon *d);
int vd_conn_expire_idle_bodies(vd_daemon *d) {
  long long now = now_ns(), next = -1;
  for (vd_conn *c = d->conns, *after; c; c = after) {
    after = c->next; /* expiring unlinks c */
    if (c->dead || c->state != VD_CONN_BODY || c->pipe_off < c->pipe_len)
      continue;
    long long deadline = c->body_active_ns + d->body_idle_ns;
    if (deadline <= now)
      conn_expire_body(c);
    else if (next < 0 || deadline < next)
      next = deadline;
  }
  if (next < 0)
    return -1;
  long long ms = (next - now + 999999) / 1000000;
  return ms > 3600000 ? 3600000 : (int)ms;
}

vd_conn *vd_conn_adopt(vd_daemon *d, int fd) {
  if (d->n_conns >= VD_MAX_CONNS) {
    close(fd);
    return NULL;
  }
  vd_conn *c = vs_malloc0(sizeof(*c));
  c->src.kind = VD_SRC_CONN;
  c->src.owner = c;
  c->fd = fd;
  c->d = d;
  c->log_fd = -1;
  c->mon_fd = -1;
  c->file_fd = -1;
  c->events_timer = -1;
  c->stats_timer = -1;
  c->pipe_fd = -1;
  c->pipe_src.kind = VD_SRC_BODY_PIPE;
  c->pipe_src.owner = c;
  c->mon_src.kind = VD_SRC_ATTACH;
  c->mon_src.owner = c;
  c->state = VD_CONN_HEAD;
  if (vd_loop_add(d, fd, EPOLLIN | EPOLLRDHUP, &c->src, NULL) < 0) {
    close(fd);
    free(c);
    return NULL;
  }
  c->next = d->conns;
  if (d->conns)
    d->conns->prev = c;
  d->conns = c;
  d->n_conns++;
  return c;
}

static void adopt_tunnel_done(vd_job *job) {
  vd_conn *c = vd_conn_adopt(job->d, job->result);
  if (c)
    c->tunneled = true;
  free(job);
}

void vd_loop_adopt_tunnel(vd_daemon *d, int fd) {
  vd_job *job = vs_malloc0(sizeof(*job));
  job->d = d;
  job->result = fd;
  job->done = adopt_tunnel_done;
  vd_loop_done(d, job);
}

void vd_conn_accept(vd_daemon *d, int lfd);
void vd_conn_accept(vd_daemon *d, int lfd) {
  for (;;) {
    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0)
      return;
    vd_conn_adopt(d, fd);
  }
}

static void conn_free(vd_conn *c) {
  pipe_close(c);
  if (c->file_fd >= 0)
    close(c->file_fd);
  vd_call_free(c->call);
  http_request_clear(&c->req);
  free(c->in);
  free(c->out);
  free(c);
}

/* Closing only marks the connection: code up the stack may still hold it, so it is freed by
 * vd_conn_sweep at the end of the loop iteration (or when its worker call returns). */
static void conn_close(vd_conn *c) {
  vd_daemon *d = c->d;
  if (c->dead)
    return;
  vd_loop_del(d, c->fd);
  close(c->fd);
  c->fd = -1;
  vd_stream_detach(c);
  c->dead = true;
  /* a worker reading a streamed body gets its end (a truncated body) and still has the call:
   * the connection is freed when it returns, as for any worker call */
  pipe_close(c);
  if (c->body_in_worker) {
    c->body_in_worker = false;
    c->state = VD_CONN_BUSY;
  }
  if (c->prev)
    c->prev->next = c->next;
  else
    d->conns = c->next;
  if (c->next)
    c->next->prev = c->prev;
  d->n_conns--;
  c->prev = NULL;
  c->next = d->dead_conns;
  d->dead_conns = c;
}

void vd_conn_sweep(vd_daemon *d);
void vd_conn_sweep(vd_daemon *d) {
  vd_conn **pp = &d->dead_conns;
  while (*pp) {
    vd_conn *c = *pp;
    /* a worker holds it: http_job_done, or a VM stats sample's job, lets it go */
    if (c->state == VD_CONN_BUSY || c->stats_job) {
      pp = &c->next;
      continue;
    }
    *pp = c->next;
    conn_free(c);
  }
}

void vd_conn_close_all(vd_daemon *d);
void vd_conn_close_all(vd_daemon *d) {
  while (d->conns)
    conn_close(d->conns);
  vd_conn_sweep(d);
}
