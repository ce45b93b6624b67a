/* vessel as a client of vesseld: HTTP/1.1 over the daemon's unix socket, one connection per
 * request (Connection: close), replies read whole, streamed to a callback, or hijacked. */
#include "cli.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <termios.h>

#define VESSEL_DEFAULT_HOST "unix:///run/vessel/vessel.sock"
#define REPLY_HEAD_MAX ((size_t)64 * 1024)
#define REPLY_BODY_MAX ((size_t)256 * 1024 * 1024)

typedef struct conn {
  int fd;
  char buf[16384];
  size_t off, len; /* unread bytes are buf[off, len) */
} conn;

static int conn_fill(conn *c, vs_error **err) {
  if (c->off == c->len)
    c->off = c->len = 0;
  if (c->len == sizeof(c->buf)) {
    memmove(c->buf, c->buf + c->off, c->len - c->off);
    c->len -= c->off;
    c->off = 0;
  }
  for (;;) {
    ssize_t n = read(c->fd, c->buf + c->len, sizeof(c->buf) - c->len);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return vs_error_set(err, errno, "read from vesseld");
    c->len += (size_t)n;
    return (int)n;
  }
}

/* One line ending in CRLF (the CRLF removed); NULL with *err at end of stream or too long. */
static char *conn_line(conn *c, vs_error **err) {
  for (;;) {
    char *nl = memchr(c->buf + c->off, '\n', c->len - c->off);
    if (nl) {
      size_t n = (size_t)(nl - (c->buf + c->off));
      char *line = vs_malloc0(n + 1);
      memcpy(line, c->buf + c->off, n);
      if (n && line[n - 1] == '\r')
        line[n - 1] = 0;
      c->off += n + 1;
      return line;
    }
    if (c->off == 0 && c->len == sizeof(c->buf))
      return vs_error_set(err, EPROTO, "vesseld sent a line longer than %zu bytes", sizeof(c->buf)),
             NULL;
    int n = conn_fill(c, err);
    if (n < 0)
      return NULL;
    if (n == 0)
      return vs_error_set(err, EPROTO, "vesseld closed the connection in a reply's head"), NULL;
  }
}

static int host_socket_path(const char *host, const char **path, vs_error **err) {
  if (!strncmp(host, "unix://", 7)) {
    *path = host + 7;
    return 0;
  }
  if (host[0] == '/') {
    *path = host;
    return 0;
  }
  return vs_error_set(err, EINVAL,
                      "daemon host %s: only unix:// sockets are supported (vesseld listens on "
                      "unix sockets)",
                      host);
}

int vessel_find_daemon(vessel_ctx *ctx, const char *host_opt, bool root_given, vs_error **err) {
  const char *host = host_opt;
  const char *vessel_host = getenv("VESSEL_HOST"), *docker_host = getenv("DOCKER_HOST");
  if (!host && vessel_host && *vessel_host)
    host = vessel_host;
  if (host && root_given)
    return vs_error_set(err, EINVAL,
                        "--root works on a store directly and -H/VESSEL_HOST names a daemon: "
                        "give one of them");
  /* An explicit --root means the daemonless mode: the daemon has its own data root. */
  if (!host && root_given)
    return 0;
  if (!host && docker_host && *docker_host)
    host = docker_host;
  bool explicit = host != NULL;
  if (!host)
    host = VESSEL_DEFAULT_HOST;
  const char *path;
  if (host_socket_path(host, &path, err) < 0)
    return -1;
  if (!explicit) {
    /* The default socket is used when a daemon answers on it; otherwise vessel works alone.
     * A daemon this user may not talk to is an error, not a reason to work beside it. */
    vs_error *e = NULL;
    int fd = vs_unix_connect(path, &e);
    if (fd < 0 && e && e->errnum == EACCES) {
      vs_error_free(e);
      return vs_error_set(err, EACCES,
                          "vesseld runs at %s, but this user may not connect to it (give --root "
                          "DIR to work without the daemon)",
                          host);
    }
    vs_error_free(e);
    if (fd < 0)
      return 0;
    close(fd);
  }
  ctx->host = host;
  ctx->sock_path = path;
  return 0;
}

/* Send the rest of a file as the body, as it is read. */
static int send_file_body(int sock, int fd, vs_error **err) {
  char buf[65536];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return vs_error_set(err, errno, "read the request body");
    if (n == 0)
      return 0;
    if (vs_write_all(sock, buf, (size_t)n, err) < 0)
      return -1;
  }
}

/* The body is len bytes from body, or (body_fd >= 0) len bytes read from body_fd. */
static int conn_open(vessel_ctx *ctx, const char *method, const char *target, const char *ctype,
                     const void *body, size_t len, int body_fd, const char *extra, conn *c,
                     vs_error **err) {
  c->off = c->len = 0;
  c->fd = vs_unix_connect(ctx->sock_path, err);
  if (c->fd < 0)
    return vs_error_wrap(err, "Cannot connect to the vessel daemon at %s (is vesseld running?)",
                         ctx->host);
  _cleanup_free_ char *head = vs_asprintf(
      "%s %s HTTP/1.1\r\nHost: vessel\r\nUser-Agent: vessel/0.1.0\r\n%s%s%s"
      "Content-Length: %zu\r\n%s\r\n",
      method, target, ctype ? "Content-Type: " : "", ctype ? ctype : "", ctype ? "\r\n" : "",
      body || body_fd >= 0 ? len : 0, extra ? extra : "Connection: close\r\n");
  if (vs_write_all(c->fd, head, strlen(head), err) < 0 ||
      (body && len && vs_write_all(c->fd, body, len, err) < 0) ||
      (body_fd >= 0 && send_file_body(c->fd, body_fd, err) < 0)) {
    close(c->fd);
    c->fd = -1;
    return vs_error_wrap(err, "send %s %s to vesseld", method, target);
  }
  return 0;
}

typedef struct reply_head {
  int status;
  bool chunked;
  int64_t length; /* -1: until the connection closes */
} reply_head;

static int read_head(conn *c, reply_head *h, vs_error **err) {
  _cleanup_free_ char *status = conn_line(c, err);
  if (!status)
    return -1;
  /* "HTTP/1.1 200 OK": three digits after the version */
  const char *code = status + 9;
  if (strncmp(status, "HTTP/1.", 7) != 0 || strlen(status) < 12 || status[8] != ' ' ||
      code[0] < '1' || code[0] > '5' || code[1] < '0' || code[1] > '9' || code[2] < '0' ||
      code[2] > '9')
    return vs_error_set(err, EPROTO, "vesseld sent a bad status line: %.80s", status);
  h->status = (code[0] - '0') * 100 + (code[1] - '0') * 10 + (code[2] - '0');
  h->chunked = false;
  h->length = -1;
  size_t total = 0;
  for (;;) {
    _cleanup_free_ char *line = conn_line(c, err);
    if (!line)
      return -1;
    if (!*line)
      return 0;
    total += strlen(line);
    if (total > REPLY_HEAD_MAX)
      return vs_error_set(err, EPROTO, "vesseld sent a reply head over %zu bytes", REPLY_HEAD_MAX);
    char *colon = strchr(line, ':');
    if (!colon)
      continue;
    *colon = 0;
    const char *v = colon + 1 + strspn(colon + 1, " \t");
    if (!strcasecmp(line, "Transfer-Encoding") && !strcasecmp(v, "chunked"))
      h->chunked = true;
    else if (!strcasecmp(line, "Content-Length")) {
      uint64_t n;
      if (vs_parse_u64(v, "Content-Length", &n, err) < 0)
        return -1;
      h->length = (int64_t)n;
    }
  }
}

/* Hand every body byte to fn as it arrives (chunked framing removed). */
static int read_body(conn *c, const reply_head *h, vessel_body_fn fn, void *arg, vs_error **err) {
  int64_t left = h->chunked ? 0 : h->length;
  for (;;) {
    if (h->chunked && left == 0) {
      _cleanup_free_ char *size = conn_line(c, err);
      if (!size)
        return -1;
      if (!*size) /* the CRLF after the previous chunk */
        continue;
      char *end;
      errno = 0;
      unsigned long long n = strtoull(size, &end, 16);
      if (end == size || errno || n > REPLY_BODY_MAX)
        return vs_error_set(err, EPROTO, "vesseld sent a bad chunk size: %.40s", size);
      if (n == 0)
        return 0;
      left = (int64_t)n;
    }
    if (!h->chunked && left == 0)
      return 0;
    if (c->off == c->len) {
      int n = conn_fill(c, err);
      if (n < 0)
        return -1;
      if (n == 0) {
        if (!h->chunked && h->length < 0)
          return 0;
        return vs_error_set(err, EPROTO, "vesseld closed the connection in a reply's body");
      }
    }
    size_t take = c->len - c->off;
    if (left > 0 && (int64_t)take > left)
      take = (size_t)left;
    if (fn(arg, c->buf + c->off, take, err) < 0)
      return -1;
    c->off += take;
    if (left > 0)
      left -= (int64_t)take;
  }
}

typedef struct grow_buf {
  char *data;
  size_t len;
} grow_buf;

static int body_append(void *arg, const char *data, size_t len, vs_error **err) {
  grow_buf *b = arg;
  if (b->len + len > REPLY_BODY_MAX)
    return vs_error_set(err, EFBIG, "vesseld's reply is over %zu bytes", REPLY_BODY_MAX);
  b->data = vs_realloc(b->data, b->len + len + 1);
  memcpy(b->data + b->len, data, len);
  b->len += len;
  b->data[b->len] = 0;
  return 0;
}

/* Docker's error style: {"message": "..."}; falls back on the raw body. */
static int daemon_error(int status, const char *body, size_t len, vs_error **err) {
  json_t *j = body ? json_loadb(body, len, 0, NULL) : NULL;
  const char *msg = json_string_value(json_object_get(j, "message"));
  int errnum = status == 404 ? ENOENT : status == 409 ? EEXIST : EIO;
  if (msg)
    vs_error_set(err, 0, "Error response from daemon: %s", msg);
  else
    vs_error_set(err, 0, "Error response from daemon: status %d: %.200s", status, body ? body : "");
  json_decref(j);
  if (err && *err) /* for callers that tell "not found" from other failures */
    (*err)->errnum = errnum;
  return -1;
}

int vessel_api(vessel_ctx *ctx, const char *method, const char *target, const char *ctype,
               const void *body, size_t len, vessel_reply *r, vs_error **err) {
  conn c;
  memset(r, 0, sizeof(*r));
  if (conn_open(ctx, method, target, ctype, body, len, -1, NULL, &c, err) < 0)
    return -1;
  reply_head h;
  grow_buf b = {0};
  int rc = read_head(&c, &h, err);
  if (rc == 0 && !(h.status == 204 || h.status == 304 || !strcmp(method, "HEAD")))
    rc = read_body(&c, &h, body_append, &b, err);
  close(c.fd);
  if (rc < 0) {
    free(b.data);
    return vs_error_wrap(err, "%s %s", method, target);
  }
  r->status = h.status;
  r->body = b.data ? b.data : vs_strdup("");
  r->len = b.len;
  return 0;
}

int vessel_api_json(vessel_ctx *ctx, const char *method, const char *target, json_t *body,
                    json_t **out, vs_error **err) {
  _cleanup_free_ char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
  vessel_reply r;
  if (vessel_api(ctx, method, target, text ? "application/json" : NULL, text,
                 text ? strlen(text) : 0, &r, err) < 0)
    return -1;
  if (r.status >= 400) {
    daemon_error(r.status, r.body, r.len, err);
    free(r.body);
    return -1;
  }
  if (out) {
    *out = r.len ? vs_json_loads(r.body, r.len, "vesseld's reply", err) : json_null();
    if (!*out) {
      free(r.body);
      return -1;
    }
  }
  free(r.body);
  return r.status;
}

int vessel_api_stream(vessel_ctx *ctx, const char *method, const char *target, json_t *body,
                      vessel_body_fn fn, void *arg, vs_error **err) {
  return vessel_api_upload(ctx, method, target, body, -1, 0, fn, arg, err);
}

int vessel_api_upload(vessel_ctx *ctx, const char *method, const char *target, json_t *body,
                      int body_fd, size_t body_len, vessel_body_fn fn, void *arg, vs_error **err) {
  _cleanup_free_ char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
  conn c;
  if (body_fd >= 0 && conn_open(ctx, method, target, "application/x-tar", NULL, body_len, body_fd,
                                NULL, &c, err) < 0)
    return -1;
  if (body_fd < 0 && conn_open(ctx, method, target, text ? "application/json" : NULL, text,
                               text ? strlen(text) : 0, -1, NULL, &c, err) < 0)
    return -1;
  reply_head h;
  int rc = read_head(&c, &h, err);
  if (rc == 0 && h.status >= 400) {
    grow_buf b = {0};
    if (read_body(&c, &h, body_append, &b, err) == 0)
      daemon_error(h.status, b.data, b.len, err);
    free(b.data);
    rc = -1;
  } else if (rc == 0) {
    rc = read_body(&c, &h, fn, arg, err);
  }
  close(c.fd);
  return rc;
}

int vessel_api_hijack(vessel_ctx *ctx, const char *method, const char *target, vessel_hijack *hj,
                      vs_error **err) {
  conn c;
  memset(hj, 0, sizeof(*hj));
  if (conn_open(ctx, method, target, NULL, NULL, 0, -1, "Connection: Upgrade\r\nUpgrade: tcp\r\n",
                &c, err) < 0)
    return -1;
  reply_head h;
  if (read_head(&c, &h, err) < 0) {
    close(c.fd);
    return -1;
  }
  if (h.status != 101) {
    grow_buf b = {0};
    if (h.status >= 400 && read_body(&c, &h, body_append, &b, NULL) == 0)
      daemon_error(h.status, b.data, b.len, err);
    else
      vs_error_set(err, EPROTO, "%s %s: vesseld answered %d, not 101", method, target, h.status);
    free(b.data);
    close(c.fd);
    return -1;
  }
  hj->fd = c.fd;
  hj->pending_len = c.len - c.off;
  if (hj->pending_len) {
    hj->pending = vs_malloc0(hj->pending_len);
    memcpy(hj->pending, c.buf + c.off, hj->pending_len);
  }
  return 0;
}

char *vessel_query_escape(const char *s) {
  size_t n = strlen(s);
  char *out = vs_malloc0(n * 3 + 1);
  char *p = out;
  for (size_t i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)s[i];
    if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
        strchr("-_.~", ch))
      *p++ = (char)ch;
    else
      p += sprintf(p, "%%%02X", ch);
  }
  return out;
}

int vessel_api_each(vessel_ctx *ctx, int argc, char **argv, int first, const char *method,
                    const char *prefix, const char *suffix, const char *what) {
  int rc = 0;
  for (int i = first; i < argc; i++) {
    _cleanup_free_ char *name = vessel_query_escape(argv[i]);
    _cleanup_free_ char *target = vs_asprintf("%s%s%s", prefix, name, suffix);
    vs_error *e = NULL;
    if (vessel_api_json(ctx, method, target, NULL, NULL, &e) < 0) {
      vs_error_print(e, what);
      vs_error_free(e);
      rc = 1;
    } else {
      printf("%s\n", argv[i]);
    }
  }
  return rc;
}

int vessel_force_operands(int argc, char **argv, bool *force) {
  int first = 1;
  *force = false;
  for (; first < argc && argv[first][0] == '-'; first++) {
    if (strcmp(argv[first], "-f") != 0 && strcmp(argv[first], "--force") != 0)
      return -1;
    *force = true;
  }
  return first < argc ? first : -1;
}

int vessel_relay(vessel_hijack *hj, const vessel_relay_opts *o, vs_error **err) {
  if (hj->pending_len && o->out(o->out_arg, hj->pending, hj->pending_len, err) < 0)
    return -1;
  bool in_open = o->input;
  if (!o->input && o->shutdown_at_eof)
    shutdown(hj->fd, SHUT_WR);
  char buf[16384];
  for (;;) {
    struct pollfd p[2] = {{.fd = hj->fd, .events = POLLIN}, {.fd = 0, .events = POLLIN}};
    if (poll(p, in_open ? 2 : 1, -1) < 0) {
      if (errno == EINTR)
        continue;
      return vs_error_set(err, errno, "poll");
    }
    if (p[0].revents) {
      ssize_t n = read(hj->fd, buf, sizeof(buf));
      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0)
        return 0;
      if (o->out(o->out_arg, buf, (size_t)n, err) < 0)
        return -1;
    }
    if (!in_open || !p[1].revents)
      continue;
    ssize_t n = read(0, buf, sizeof(buf));
    if (n <= 0) {
      in_open = false;
      if (o->shutdown_at_eof)
        shutdown(hj->fd, SHUT_WR);
      continue;
    }
    char *detach = o->detach_key >= 0 ? memchr(buf, o->detach_key, (size_t)n) : NULL;
    size_t len = detach ? (size_t)(detach - buf) : (size_t)n;
    if (len && vs_write_all(hj->fd, buf, len, err) < 0)
      return -1;
    if (detach)
      return 0;
  }
}

bool vessel_tty_raw(struct termios *saved) {
  if (!isatty(0) || tcgetattr(0, saved) != 0)
    return false;
  struct termios t = *saved;
  cfmakeraw(&t);
  return tcsetattr(0, TCSANOW, &t) == 0;
}

void vessel_print_json(json_t *j) {
  char *text = json_dumps(j, JSON_INDENT(4));
  printf("%s\n", text ? text : "null");
  free(text);
  json_decref(j);
}
