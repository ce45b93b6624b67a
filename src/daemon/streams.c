/* Streamed answers on the loop: logs (also -f), attach (hijacked, no TTY) and wait.
 *
 * Output comes from the json-file log the monitor appends to, never from the container's pipes:
 * so logs, attach and a restarted vesseld all see the same bytes, and nothing the container
 * wrote while vesseld was down is lost. Followers read on when inotify says the container's
 * directory changed, and end when the monitor has exited and the log is drained. Without a TTY,
 * frames carry Docker's 8-byte header: stream (1 stdout, 2 stderr), three zeros, big-endian
 * length. */
#include "daemon/internal.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>

#define LOG_READ_CHUNK 65536
#define LOG_LINE_LIMIT (1U << 20) /* a longer "line" in the log is not ours: skipped */

static void stream_link(vd_conn *conn, vd_container *c, vd_stream_kind kind) {
  conn->stream = kind;
  conn->ctr = c;
  conn->stream_next = c->streams;
  c->streams = conn;
}

void vd_stream_detach(vd_conn *conn) {
  vd_exec_detach_conn(conn);
  vd_events_detach(conn);
  vd_stats_detach(conn);
  vd_container *c = conn->ctr;
  if (c) {
    for (vd_conn **pp = &c->streams; *pp; pp = &(*pp)->stream_next)
      if (*pp == conn) {
        *pp = conn->stream_next;
        break;
      }
  }
  conn->ctr = NULL;
  conn->stream_next = NULL;
  conn->stream = VD_STREAM_NONE;
  if (conn->mon_fd >= 0) {
    vd_loop_del(conn->d, conn->mon_fd);
    close(conn->mon_fd);
  }
  conn->mon_fd = -1;
  free(conn->mon_out);
  conn->mon_out = NULL;
  conn->mon_out_len = 0;
  conn->attach_stdin = conn->stdin_closed = conn->raw = false;
  conn->n_detach_keys = conn->detach_matched = 0;
  conn->detach_seen = false;
  if (conn->log_fd >= 0)
    close(conn->log_fd);
  conn->log_fd = -1;
  free(conn->log_partial);
  conn->log_partial = NULL;
  conn->log_partial_len = 0;
  free(conn->wait_condition);
  conn->wait_condition = NULL;
  free(conn->logs_since);
  free(conn->logs_until);
  conn->logs_since = conn->logs_until = NULL;
}

/* What one read of the log becomes: frames gathered and sent as one chunk. */
typedef struct out_batch {
  char *p;
  size_t len, cap;
} out_batch;

static void batch_add(out_batch *b, const void *data, size_t n) {
  if (n == 0)
    return;
  if (!b->p || b->len + n > b->cap) {
    b->cap = b->cap ? b->cap * 2 : 65536;
    while (b->cap < b->len + n)
      b->cap *= 2;
    b->p = vs_realloc(b->p, b->cap);
  }
  memcpy(b->p + b->len, data, n);
  b->len += n;
}

/* One log entry, decoded. */
typedef struct log_entry {
  char *text; /* the "log" string, decoded (malloc'd) */
  size_t len;
  bool is_err;
  char time[64]; /* "" if none */
  char
      *details; /* the entry's attrs as `docker logs --details` shows them ("k=v,k2=v2"), or NULL */
} log_entry;

static bool take(const char **p, const char *end, const char *lit) {
  size_t n = strlen(lit);
  if ((size_t)(end - *p) < n || memcmp(*p, lit, n) != 0)
    return false;
  *p += n;
  return true;
}

/* The monitor's own form, {"log":"...","stream":"stdout","time":"..."} with the escapes it
 * writes: decoded here, as a million-line log through a general JSON parser costs seconds.
 * false for anything else (\u escapes included), which the JSON parser then reads. */
static bool entry_parse_fast(const char *line, size_t len, log_entry *e) {
  const char *p = line, *end = line + len;
  if (!take(&p, end, "{\"log\":\""))
    return false;
  char *out = vs_malloc0((size_t)(end - p) + 1);
  size_t n = 0;
  for (; p < end && *p != '"'; p++) {
    if (*p != '\\') {
      out[n++] = *p;
      continue;
    }
    if (++p >= end)
      break;
    static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
    const char *k = memchr(from, *p, sizeof(from) - 1);
    if (!k) { /* \u and the rest: the JSON parser's job */
      free(out);
      return false;
    }
    out[n++] = to[k - from];
  }
  const char *t = NULL;
  if (p < end && take(&p, end, "\",\"stream\":\"") &&
      ((e->is_err = take(&p, end, "stderr")) || take(&p, end, "stdout")) &&
      take(&p, end, "\",\"time\":\"")) {
    t = p;
    while (p < end && *p != '"' && *p != '\\')
      p++;
  }
  if (!t || (size_t)(p - t) >= sizeof(e->time) || !take(&p, end, "\"}") || p != end) {
    free(out);
    return false;
  }
  memcpy(e->time, t, (size_t)(p - 2 - t));
  e->time[p - 2 - t] = 0;
  e->text = out;
  e->len = n;
  return true;
}

/* Go's url.QueryEscape: letters, digits and -_.~ stay, a space is +, the rest %XX. */
static char *query_escape(const char *s) {
  char *out = vs_malloc0(strlen(s) * 3 + 1);
  char *o = out;
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if (isalnum(*p) || strchr("-_.~", *p))
      *o++ = (char)*p;
    else if (*p == ' ')
      *o++ = '+';
    else
      o += sprintf(o, "%%%02X", *p);
  }
  return out;
}

static bool entry_parse(const char *line, size_t len, log_entry *e) {
  memset(e, 0, sizeof(*e));
  if (entry_parse_fast(line, len, e))
    return true;
  _cleanup_json_ json_t *j = json_loadb(line, len, JSON_REJECT_DUPLICATES, NULL);
  const char *log = json_string_value(json_object_get(j, "log"));
  const char *stream = json_string_value(json_object_get(j, "stream"));
  if (!log || !stream)
    return false;
  const char *time = json_string_value(json_object_get(j, "time"));
  e->len = json_string_length(json_object_get(j, "log"));
  e->text = vs_malloc0(e->len + 1);
  memcpy(e->text, log, e->len);
  e->is_err = !strcmp(stream, "stderr");
  snprintf(e->time, sizeof(e->time), "%s", time ? time : "");
  /* dockerd's form: keys in order (the monitor wrote them sorted), each side query-escaped */
  const char *key;
  json_t *v;
  json_object_foreach(json_object_get(j, "attrs"), key, v) {
    _cleanup_free_ char *k = query_escape(key);
    _cleanup_free_ char *val = query_escape(json_is_string(v) ? json_string_value(v) : "");
    char *next =
        vs_asprintf("%s%s%s=%s", e->details ? e->details : "", e->details ? "," : "", k, val);
    free(e->details);
    e->details = next;
  }
  return true;
}

/* One json-file line to a multiplexed frame, if its stream is wanted. */
static void emit_line(vd_conn *conn, const char *line, size_t len, out_batch *b) {
  log_entry e;
  if (!entry_parse(line, len, &e))
    return;
  _cleanup_free_ char *text = e.text;
  _cleanup_free_ char *details = e.details;
  if ((e.is_err && !conn->out_stderr) || (!e.is_err && !conn->out_stdout) || e.len == 0)
    return;
  /* the monitor writes fixed-width UTC times: they compare as strings */
  if (e.time[0] && ((conn->logs_since && strcmp(e.time, conn->logs_since) < 0) ||
                    (conn->logs_until && strcmp(e.time, conn->logs_until) > 0)))
    return;
  size_t n = e.len;
  size_t tl = conn->timestamps && e.time[0] ? strlen(e.time) + 1 : 0; /* -t: "TIME " first */
  /* --details: the attrs next, "k=v,k2=v2 " */
  size_t dl = conn->details && details ? strlen(details) + 1 : 0;
  if (!conn->raw) { /* a terminal's output is one stream, sent as it is */
    size_t fl = n + tl + dl;
    unsigned char hdr[8] = {e.is_err ? 2 : 1,
                            0,
                            0,
                            0,
                            (unsigned char)(fl >> 24),
                            (unsigned char)(fl >> 16),
                            (unsigned char)(fl >> 8),
                            (unsigned char)fl};
    batch_add(b, hdr, 8);
  }
  if (tl) {
    batch_add(b, e.time, tl - 1);
    batch_add(b, " ", 1);
  }
  if (dl) {
    batch_add(b, details, dl - 1);
    batch_add(b, " ", 1);
  }
  batch_add(b, text, n);
}

/* Split what was read into lines; keep an incomplete last line for the next read. */
static void emit_lines(vd_conn *conn, const char *buf, size_t len) {
  out_batch b = {0};
  size_t start = 0;
  for (size_t i = 0; i < len; i++) {
    if (buf[i] != '\n')
      continue;
    if (conn->log_partial_len) {
      size_t total = conn->log_partial_len + (i - start);
      if (total <= LOG_LINE_LIMIT) {
        conn->log_partial = vs_realloc(conn->log_partial, total);
        memcpy(conn->log_partial + conn->log_partial_len, buf + start, i - start);
        emit_line(conn, conn->log_partial, total, &b);
      }
      free(conn->log_partial);
      conn->log_partial = NULL;
      conn->log_partial_len = 0;
    } else {
      emit_line(conn, buf + start, i - start, &b);
    }
    start = i + 1;
  }
  size_t rest = len - start;
  if (rest && conn->log_partial_len + rest <= LOG_LINE_LIMIT) {
    conn->log_partial = vs_realloc(conn->log_partial, conn->log_partial_len + rest);
    memcpy(conn->log_partial + conn->log_partial_len, buf + start, rest);
    conn->log_partial_len += rest;
  }
  vd_conn_stream_write(conn, b.p, b.len);
  free(b.p);
}

/* At the end of the file a stream reads: go on in the next one if the log was rotated since
 * (or from the start if it was emptied, with max-file 1). Whether there is more to read. */
static bool log_next_file(vd_conn *conn) {
  if (!conn->ctr)
    return false;
  struct stat st;
  off_t pos = lseek(conn->log_fd, 0, SEEK_CUR);
  if (fstat(conn->log_fd, &st) == 0 && pos > st.st_size) {
    lseek(conn->log_fd, 0, SEEK_SET);
    return true;
  }
  _cleanup_free_ char *path = vd_ctr_log_path(conn->ctr);
  int fd = vd_log_open_next(path, conn->log_fd);
  if (fd == VD_LOG_UNREAD)
    return true;
  if (fd < 0)
    return false;
  close(conn->log_fd);
  conn->log_fd = fd;
  return true;
}

void vd_stream_pump(vd_conn *conn) {
  if (conn->log_fd < 0 || conn->dead)
    return;
  char buf[LOG_READ_CHUNK];
  /* only while the client keeps up: a slow reader must not make us buffer the whole log. When
   * the socket takes everything queued, no EPOLLOUT will come to call us again: read on. */
  bool at_end = false;
  while (!conn->dead && conn->log_fd >= 0 && !at_end) {
    while (!conn->dead && conn->log_fd >= 0 && conn->out_len - conn->out_off < VD_OUT_HIGH_WATER) {
      ssize_t n = read(conn->log_fd, buf, sizeof(buf));
      if (n < 0 && errno == EINTR)
        continue;
      if (n == 0 && log_next_file(conn))
        continue;
      if (n <= 0) {
        if (!conn->follow || conn->ctr_ended) {
          vd_conn_stream_end(conn);
          return;
        }
        at_end = true; /* inotify says when the log grows */
        break;
      }
      emit_lines(conn, buf, (size_t)n);
    }
    vd_conn_flush(conn);
    if (!conn->dead && conn->out_len - conn->out_off >= VD_OUT_HIGH_WATER)
      break; /* EPOLLOUT brings us back */
  }
}

void vd_streams_poke(vd_daemon *d, vd_container *c) {
  (void)d;
  for (vd_conn *s = c->streams, *next; s; s = next) {
    next = s->stream_next;
    if (s->stream == VD_STREAM_LOGS || s->stream == VD_STREAM_ATTACH)
      vd_stream_pump(s);
  }
}

static void answer_wait(vd_conn *conn, int code) {
  _cleanup_json_ json_t *j = json_pack("{s:i, s:n}", "StatusCode", code, "Error");
  _cleanup_free_ char *text = json_dumps(j, JSON_COMPACT);
  _cleanup_free_ char *line = vs_asprintf("%s\n", text);
  vd_conn_stream_write(conn, line, strlen(line));
  vd_conn_stream_end(conn);
}

void vd_streams_exit(vd_daemon *d, vd_container *c, bool removed) {
  pthread_mutex_lock(&d->lock);
  int code = c->exit_code;
  pthread_mutex_unlock(&d->lock);
  for (vd_conn *s = c->streams, *next; s; s = next) {
    next = s->stream_next;
    if (s->stream == VD_STREAM_WAIT) {
      bool want_removal = s->wait_condition && !strcmp(s->wait_condition, "removed");
      if (!want_removal || removed)
        answer_wait(s, code);
      continue;
    }
    s->ctr_ended = true;
    s->follow = true; /* drain to the end of the log, then end */
    vd_stream_pump(s);
  }
}

/* ---------------------------------------------------------------- stdin to the monitor */

static void mon_frame(vd_conn *conn, char type, const char *data, size_t len) {
  conn->mon_out = vs_realloc(conn->mon_out, conn->mon_out_len + 5 + len);
  unsigned char *h = (unsigned char *)conn->mon_out + conn->mon_out_len;
  h[0] = (unsigned char)type;
  h[1] = (unsigned char)(len >> 24);
  h[2] = (unsigned char)(len >> 16);
  h[3] = (unsigned char)(len >> 8);
  h[4] = (unsigned char)len;
  if (len)
    memcpy(h + 5, data, len);
  conn->mon_out_len += 5 + len;
}

static void mon_flush(vd_conn *conn) {
  size_t off = 0;
  while (off < conn->mon_out_len) {
    ssize_t n = send(conn->mon_fd, conn->mon_out + off, conn->mon_out_len - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && errno == EAGAIN)
      break;
    if (n <= 0) { /* the monitor is gone: the container's exit ends the stream */
      off = conn->mon_out_len;
      break;
    }
    off += (size_t)n;
  }
  if (off < conn->mon_out_len)
    memmove(conn->mon_out, conn->mon_out + off, conn->mon_out_len - off);
  conn->mon_out_len -= off;
  struct epoll_event ev = {.events = conn->mon_out_len ? EPOLLOUT : 0, .data.ptr = &conn->mon_src};
  epoll_ctl(conn->d->epfd, EPOLL_CTL_MOD, conn->mon_fd, &ev);
}

/* ---------------------------------------------------------------- detach keys */

static int detach_key(const char *k, size_t len, unsigned char *out) {
  if (len == 1) {
    *out = (unsigned char)k[0];
    return 0;
  }
  if (len != 6 || strncasecmp(k, "ctrl-", 5) != 0)
    return -1;
  char c = (char)tolower((unsigned char)k[5]);
  static const char specials[] = "@[\\]^_";
  if (c >= 'a' && c <= 'z')
    *out = (unsigned char)(c - 'a' + 1);
  else if (strchr(specials, c) && c)
    *out = (unsigned char)(c == '@' ? 0 : 27 + (strchr(specials, c) - specials) - 1);
  else
    return -1;
  return 0;
}

int vd_detach_keys_parse(const char *spec, unsigned char keys[VD_DETACH_KEYS_MAX], size_t *n,
                         vs_error **err) {
  if (!spec || !*spec)
    spec = "ctrl-p,ctrl-q";
  *n = 0;
  for (const char *p = spec;;) {
    size_t len = strcspn(p, ",");
    if (*n == VD_DETACH_KEYS_MAX || detach_key(p, len, &keys[*n]) < 0)
      return vs_error_set(err, EINVAL, "Invalid detach keys (%s) provided", spec);
    (*n)++;
    if (!p[len])
      break;
    p += len + 1;
  }
  return 0;
}

void vd_detach_filter(vd_conn *c, size_t from) {
  if (!c->n_detach_keys || c->detach_seen || from >= c->in_len)
    return;
  size_t n = c->in_len - from;
  _cleanup_free_ unsigned char *src = vs_malloc0(n);
  memcpy(src, c->in + from, n);
  if (c->in_cap < from + n + c->n_detach_keys) {
    c->in_cap = from + n + c->n_detach_keys;
    c->in = vs_realloc(c->in, c->in_cap);
  }
  size_t o = from;
  for (size_t i = 0; i < n; i++) {
    unsigned char b = src[i];
    if (b == c->detach_keys[c->detach_matched]) {
      if (++c->detach_matched == c->n_detach_keys) {
        c->detach_seen = true;
        c->detach_matched = 0;
        break;
      }
      continue;
    }
    if (c->detach_matched) { /* not the sequence after all: what was withheld goes on */
      memcpy(c->in + o, c->detach_keys, c->detach_matched);
      o += c->detach_matched;
      c->detach_matched = 0;
      if (b == c->detach_keys[0]) {
        c->detach_matched = 1;
        continue;
      }
    }
    c->in[o++] = (char)b;
  }
  c->in_len = o;
}

/* Only so much is queued for the monitor: the rest waits in the connection's input, and the
 * connection stops reading (server.c) until the container takes it. */
#define MON_OUT_LIMIT ((size_t)256 * 1024)

void vd_attach_forward(vd_conn *conn) {
  if (!conn->attach_stdin) {
    conn->in_len = 0; /* stdin not attached: what the client sends is dropped */
    return;
  }
  if (conn->mon_fd < 0) {
    vd_conn_update(conn); /* not started yet: kept until it is, up to a limit */
    return;
  }
  /* until the socket is full (then EPOLLOUT brings us back) or the input is all sent */
  while (conn->in_len && conn->mon_fd >= 0) {
    while (conn->in_len && conn->mon_out_len < MON_OUT_LIMIT) {
      size_t n = conn->in_len < 32768 ? conn->in_len : 32768;
      mon_frame(conn, 'i', conn->in, n);
      memmove(conn->in, conn->in + n, conn->in_len - n);
      conn->in_len -= n;
    }
    mon_flush(conn);
    if (conn->mon_out_len)
      break;
  }
  if (conn->peer_eof && conn->in_len == 0 && conn->stdin_once && !conn->stdin_closed) {
    mon_frame(conn, 'c', NULL, 0);
    conn->stdin_closed = true;
  }
  mon_flush(conn);
  vd_conn_update(conn); /* room again: read on from the client */
}

void vd_attach_event(vd_conn *conn, uint32_t events) {
  if (events & (EPOLLERR | EPOLLHUP)) {
    vd_loop_del(conn->d, conn->mon_fd);
    close(conn->mon_fd);
    conn->mon_fd = -1;
    conn->mon_out_len = 0;
    conn->in_len = 0;
    return;
  }
  mon_flush(conn);
  vd_attach_forward(conn);
}

static void attach_connect(vd_conn *conn) {
  if (!conn->attach_stdin || conn->mon_fd >= 0)
    return;
  vs_error *e = NULL;
  int fd = vd_monitor_connect(conn->ctr, &e);
  if (fd < 0) {
    vs_log_warn("attach stdin: %s", e->msg);
    vs_error_free(e);
    return;
  }
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  if (vd_loop_add(conn->d, fd, 0, &conn->mon_src, NULL) < 0) {
    close(fd);
    return;
  }
  conn->mon_fd = fd;
  vd_attach_forward(conn);
}

void vd_streams_started(vd_daemon *d, vd_container *c) {
  (void)d;
  for (vd_conn *s = c->streams, *next; s; s = next) {
    next = s->stream_next;
    if (s->stream == VD_STREAM_ATTACH)
      attach_connect(s);
  }
}

/* ---------------------------------------------------------------- handlers */

/* The container and its log opened for reading; answers the error itself. */
static vd_container *open_log(vd_call *c, int *fd) {
  vd_daemon *d = c->d;
  pthread_mutex_lock(&d->lock);
  vd_container *ctr = vd_ctr_find(d, c->arg);
  pthread_mutex_unlock(&d->lock);
  if (!ctr || ctr->removed) {
    vd_call_error(c, 404, "No such container: %s", c->arg);
    return NULL;
  }
  _cleanup_free_ char *path = vd_ctr_log_path(ctr);
  *fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (*fd < 0) {
    vd_call_error(c, 500, "open the log of %s: %s", c->arg, strerror(errno));
    return NULL;
  }
  return ctr;
}

/* docker logs --since/--until: the client sends seconds ("1700000000.25"); as an RFC 3339
 * string like the log's times. NULL when absent or 0. */
static char *log_bound(const char *q, const char *name, bool *bad) {
  _cleanup_free_ char *v = http_query_get(q, name);
  if (!v || !*v || !strcmp(v, "0"))
    return NULL;
  char *end;
  double secs = strtod(v, &end);
  /* 1e12 s (some 30,000 years) bounds what fits a time_t cast; NaN fails it too */
  if (end == v || *end || !(secs >= 0 && secs < 1e12)) {
    *bad = true;
    return NULL;
  }
  struct timespec ts = {.tv_sec = (time_t)secs,
                        .tv_nsec = (long)((secs - (double)(time_t)secs) * 1e9)};
  char buf[64];
  vs_utc_rfc3339(&ts, buf, sizeof(buf));
  return vs_strdup(buf);
}

void vd_h_container_logs(vd_call *c) {
  const char *q = c->req->query;
  bool out = http_query_bool(q, "stdout", false), errs = http_query_bool(q, "stderr", false);
  if (!out && !errs) {
    vd_call_error(c, 400, "Bad parameters: you must choose at least one stream");
    return;
  }
  _cleanup_free_ char *tail = http_query_get(q, "tail");
  long long tail_n = -1;
  if (tail && *tail && strcmp(tail, "all") != 0) {
    char *end;
    tail_n = strtoll(tail, &end, 10);
    if (*end || tail_n < 0) {
      vd_call_error(c, 400, "invalid value for tail: %s", tail);
      return;
    }
  }
  bool bad = false;
  _cleanup_free_ char *since = log_bound(q, "since", &bad);
  _cleanup_free_ char *until = log_bound(q, "until", &bad);
  if (bad) {
    vd_call_error(c, 400, "invalid value for since or until");
    return;
  }
  int fd;
  vd_container *ctr = open_log(c, &fd);
  if (!ctr)
    return;
  if (tail_n == 0) {
    lseek(fd, 0, SEEK_END);
  } else { /* from the oldest rotated file, or as far back as the tail reaches */
    _cleanup_free_ char *path = vd_ctr_log_path(ctr);
    int from = -1;
    if (tail_n > 0 ? vd_log_seek_tail(path, tail_n, &from) == 0
                   : (from = vd_log_open_oldest(path)) >= 0) {
      close(fd);
      fd = from;
    }
  }
  vd_conn *conn = c->conn;
  pthread_mutex_lock(&c->d->lock);
  bool running = ctr->state == VD_CTR_RUNNING || ctr->starting;
  pthread_mutex_unlock(&c->d->lock);
  c->streamed = true;
  conn->log_fd = fd;
  conn->out_stdout = out;
  conn->out_stderr = errs;
  conn->follow = http_query_bool(q, "follow", false) && running;
  conn->timestamps = http_query_bool(q, "timestamps", false);
  conn->details = http_query_bool(q, "details", false);
  conn->logs_since = steal_pointer(&since);
  conn->logs_until = steal_pointer(&until);
  conn->raw = json_is_true(json_object_get(json_object_get(ctr->rec, "Config"), "Tty"));
  stream_link(conn, ctr, VD_STREAM_LOGS);
  vd_conn_stream_begin(conn, 200, "application/vnd.docker.raw-stream");
  vd_stream_pump(conn);
}

void vd_h_container_attach(vd_call *c) {
  const char *q = c->req->query;
  if (!http_query_bool(q, "stream", false) && !http_query_bool(q, "logs", false)) {
    vd_call_error(c, 400, "Bad parameters: you must choose at least one of stream or logs");
    return;
  }
  _cleanup_free_ char *keys = http_query_get(q, "detachKeys");
  vs_error *e = NULL;
  c->conn->detach_matched = 0;
  if (vd_detach_keys_parse(keys, c->conn->detach_keys, &c->conn->n_detach_keys, &e) < 0) {
    vd_call_error(c, 400, "%s", e->msg);
    vs_error_free(e);
    return;
  }
  int fd;
  vd_container *ctr = open_log(c, &fd);
  if (!ctr)
    return;
  /* stream only: what the container writes from now on; with logs, all of it */
  if (!http_query_bool(q, "logs", false)) {
    lseek(fd, 0, SEEK_END);
  } else {
    _cleanup_free_ char *path = vd_ctr_log_path(ctr);
    int from = vd_log_open_oldest(path);
    if (from >= 0) {
      close(fd);
      fd = from;
    }
  }
  vd_conn *conn = c->conn;
  c->streamed = true;
  conn->log_fd = fd;
  conn->out_stdout = http_query_bool(q, "stdout", false);
  conn->out_stderr = http_query_bool(q, "stderr", false);
  conn->follow = http_query_bool(q, "stream", false);
  json_t *cfg = json_object_get(ctr->rec, "Config");
  conn->raw = json_is_true(json_object_get(cfg, "Tty"));
  conn->attach_stdin =
      http_query_bool(q, "stdin", false) && json_is_true(json_object_get(cfg, "OpenStdin"));
  conn->stdin_once = json_is_true(json_object_get(cfg, "StdinOnce"));
  /* as dockerd: only a terminal's input is watched for the detach keys */
  if (conn->raw && conn->attach_stdin)
    vd_detach_filter(conn, 0);
  else
    conn->n_detach_keys = 0;
  stream_link(conn, ctr, VD_STREAM_ATTACH);
  vd_conn_hijack_begin(conn, "application/vnd.docker.raw-stream");
  pthread_mutex_lock(&c->d->lock);
  bool running = ctr->state == VD_CTR_RUNNING && ctr->pidfd >= 0;
  pthread_mutex_unlock(&c->d->lock);
  if (running)
    attach_connect(conn);
  vd_stream_pump(conn);
  /* the detach keys came with the request itself */
  if (!conn->dead && conn->stream == VD_STREAM_ATTACH && conn->detach_seen)
    vd_conn_stream_end(conn);
}

void vd_h_container_wait(vd_call *c) {
  vd_daemon *d = c->d;
  _cleanup_free_ char *cond = http_query_get(c->req->query, "condition");
  if (cond && *cond && strcmp(cond, "not-running") != 0 && strcmp(cond, "next-exit") != 0 &&
      strcmp(cond, "removed") != 0) {
    vd_call_error(c, 400, "invalid condition: \"%s\"", cond);
    return;
  }
  pthread_mutex_lock(&d->lock);
  vd_container *ctr = vd_ctr_find(d, c->arg);
  /* a container whose monitor died is not stopped for a waiter until vd_supervise_end_orphan
   * has ended it and recorded the true exit (its 255 until then is a placeholder) */
  /* nor one whose exit is still being settled: finish_exit answers its waiters after that */
  bool stopped = ctr && ctr->state != VD_CTR_RUNNING && !ctr->starting && !ctr->monitor_lost &&
                 !ctr->exit_settling;
  int code = ctr ? ctr->exit_code : 0;
  pthread_mutex_unlock(&d->lock);
  if (!ctr) {
    vd_call_error(c, 404, "No such container: %s", c->arg);
    return;
  }
  if (stopped && (!cond || !*cond || !strcmp(cond, "not-running"))) {
    vd_call_json(c, 200, json_pack("{s:i, s:n}", "StatusCode", code, "Error"));
    return;
  }
  vd_conn *conn = c->conn;
  c->streamed = true;
  conn->wait_condition = cond && *cond ? steal_pointer(&cond) : vs_strdup("not-running");
  stream_link(conn, ctr, VD_STREAM_WAIT);
  /* the headers go out now, as dockerd does, so the client knows the wait is in place */
  vd_conn_stream_begin(conn, 200, "application/json");
}
