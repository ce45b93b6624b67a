/* The front layer of the web console and of the API over TLS: see web.h.
 *
 * A front connection has two sockets: the client's (TLS) and the inner one (a socketpair whose
 * other end server.c serves as an API connection). front_run moves what it can each time either
 * socket is ready: the client's bytes are read and interpreted (HTTP heads, websocket frames) or
 * passed on, the inner answers are passed back (with security headers added to their head, or
 * framed as websocket messages). Buffers are bounded: a side that does not read stops the other. */
#include "daemon/web.h"
#include "daemon/ws.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <time.h>

#define BUF_HIGH ((size_t)1 << 20) /* stop reading a side while this much waits for the other */
#define READ_CHUNK 16384
#define LINGER_SECONDS 2
#define INSPECT_MAX ((size_t)1 << 20)
#define IDLE_SECONDS 30 /* for a handshake, a request head, a login body */
#define VD_MAX_FRONTS 512

enum { TIMER_NONE, TIMER_IDLE, TIMER_LINGER };
#define LOGIN_BODY_MAX 4096
#define DISCARD_BODY_MAX ((uint64_t)1 << 20) /* of a request refused or answered here */
#define STATIC_MAX ((size_t)32 << 20)

#define SECURITY_HEADERS                                                                           \
  "Content-Security-Policy: default-src 'self'; connect-src 'self'; img-src 'self' data:; "        \
  "style-src 'self' 'unsafe-inline'; frame-ancestors 'none'\r\n"                                   \
  "X-Content-Type-Options: nosniff\r\nReferrer-Policy: no-referrer\r\n"                            \
  "Strict-Transport-Security: max-age=31536000\r\nX-Frame-Options: DENY\r\n"

typedef struct fbuf {
  char *p;
  size_t len, cap;
} fbuf;

static void buf_add(fbuf *b, const void *data, size_t len) {
  if (b->len + len > b->cap) {
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + len)
      cap *= 2;
    b->p = vs_realloc(b->p, cap);
    b->cap = cap;
  }
  if (len)
    memcpy(b->p + b->len, data, len);
  b->len += len;
}

static void buf_str(fbuf *b, const char *s) { buf_add(b, s, strlen(s)); }

static void buf_take(fbuf *b, size_t n) {
  memmove(b->p, b->p + n, b->len - n);
  b->len -= n;
}

static void buf_free(fbuf *b) {
  free(b->p);
  memset(b, 0, sizeof(*b));
}

typedef enum {
  F_HANDSHAKE,  /* TLS handshake */
  F_HEAD,       /* web: reading a request head */
  F_LOCAL_BODY, /* web: reading the body of a request answered here (login) */
  F_BUSY,       /* web: a worker checks a password */
  F_PROXY_BODY, /* web: passing an API request's body to the router */
  F_PROXY,      /* web: the request went in, its answer comes back; input is dropped */
  F_WS_INSPECT, /* web: websocket to a container: is it a TTY? (its inspect, read whole) */
  F_WS_WAIT,    /* web: websocket asked, waiting for the router's 101 */
  F_WS,         /* web: websocket terminal */
  F_RELAY,      /* API over TLS: bytes both ways */
  F_CLOSING,    /* send what is queued, then close */
  F_LINGER,     /* sent all and shut our side: read what the client still sends, a while */
} front_state;

struct vd_front {
  vd_src src, inner_src, timer_src;
  vd_daemon *d;
  vd_front *prev, *next;
  int fd, inner;
  int timer;          /* timerfd: the deadline of the handshake, a request head, a lingering end */
  int timer_mode;     /* what it is armed for: TIMER_NONE, TIMER_IDLE, TIMER_LINGER */
  unsigned requests;  /* requests answered: each new head gets its own deadline */
  unsigned armed_for; /* the value of requests when the idle deadline was armed */
  front_state state;
  vd_tls tls;
  fbuf in, out, to_inner, ihead;
  http_request req;
  http_body body;
  fbuf local_body;
  const char *refusal_msg; /* static text */
  int refusal;             /* an API request's refusal, answered once its body is read */
  char addr[48];
  ws_reader ws;
  char *ws_ctr; /* the container whose TTY this is (resize), NULL for a VM console */
  bool web;
  bool ihead_done; /* the inner answer's head went to the client */
  bool client_eof, inner_eof, inner_wr_shut;
  bool dead;
  bool busy; /* a login job holds it */
  bool have_req;
  bool keep_body; /* F_LOCAL_BODY: the body is wanted (login), not only read */
  bool ws_close_sent;
  bool ws_demux;      /* the container has no TTY: its output comes in Docker's frames */
  uint8_t mux_hdr[8]; /* a frame header being read */
  size_t mux_hdr_len; /* of mux_hdr */
  uint32_t mux_left;  /* bytes of the current frame still to come */
};

static vd_web *web_of(vd_daemon *d) { return d->web; }

/* ---------------------------------------------------------------- helpers */

/* Whether a comma-separated header value lists token (parameters after ';' ignored). */
static bool has_token(const char *value, const char *token) {
  size_t tl = strlen(token);
  for (const char *p = value; p && *p;) {
    while (*p == ' ' || *p == ',' || *p == '\t')
      p++;
    size_t n = strcspn(p, ",;");
    size_t m = n;
    while (m && (p[m - 1] == ' ' || p[m - 1] == '\t'))
      m--;
    if (m == tl && !strncasecmp(p, token, tl)) {
      const char *q = strstr(p, "q=0");
      const char *next = strchr(p, ',');
      return !(q && (!next || q < next) && !strncmp(q, "q=0", 3) &&
               (q[3] == 0 || q[3] == ',' || (q[3] == '.' && q[4] == '0')));
    }
    p = strchr(p, ',');
  }
  return false;
}

static void date_header(char *out, size_t size) {
  time_t t = time(NULL);
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(out, size, "%a, %d %b %Y %H:%M:%S GMT", &tm);
}

/* A whole answer made here; extra is "Name: value\r\n" lines or NULL. */
static void respond(vd_front *f, int status, const char *ctype, const void *body, size_t len,
                    const char *extra, bool keep) {
  char date[64];
  date_header(date, sizeof(date));
  _cleanup_free_ char *head = vs_asprintf(
      "HTTP/1.1 %d %s\r\nServer: vesseld/0.1.0 (linux)\r\nDate: %s\r\n" SECURITY_HEADERS
      "Content-Length: %zu\r\n%s%s%s%s%s",
      status, http_reason(status), date, len, ctype ? "Content-Type: " : "", ctype ? ctype : "",
      ctype ? "\r\n" : "", extra ? extra : "", keep ? "" : "Connection: close\r\n");
  buf_str(&f->out, head);
  buf_str(&f->out, "\r\n");
  if (body && len && !(f->have_req && f->req.head_only))
    buf_add(&f->out, body, len);
  if (!keep)
    f->state = F_CLOSING;
}

static void respond_json(vd_front *f, int status, json_t *j, const char *extra, bool keep) {
  _cleanup_free_ char *text = json_dumps(j, JSON_COMPACT);
  json_decref(j);
  _cleanup_free_ char *line = vs_asprintf("%s\n", text);
  respond(f, status, "application/json", line, strlen(line), extra, keep);
}

static void respond_error(vd_front *f, int status, const char *msg, bool keep) {
  respond_json(f, status, json_pack("{s:s}", "message", msg), NULL, keep);
}

/* After a local answer: the next request, or the end when it could not be kept. */
static void request_done(vd_front *f) {
  f->requests++;
  bool keep = f->have_req && f->req.keep_alive && f->state != F_CLOSING;
  if (f->have_req)
    http_request_clear(&f->req);
  f->have_req = false;
  buf_free(&f->local_body);
  f->state = keep ? F_HEAD : F_CLOSING;
}

/* ---------------------------------------------------------------- connections */

static void front_update(vd_front *f);
static void front_run(vd_front *f);

static void front_close(vd_front *f) {
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
static int inner_open(vd_front *f) {
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
  return 0;
}

static void front_update(vd_front *f) {
  if (f->dead)
    return;
  /* once the client shut its side, RDHUP would fire on every wait: stop asking */
  uint32_t ev = f->client_eof ? 0 : EPOLLRDHUP;
  bool reading = f->state != F_CLOSING && f->state != F_BUSY && !f->client_eof;
  if (reading && f->to_inner.len < BUF_HIGH && f->in.len < BUF_HIGH && f->out.len < BUF_HIGH)
    ev |= EPOLLIN;
  if (f->out.len || f->tls.want_write || f->state == F_HANDSHAKE)
    ev |= EPOLLOUT;
  if (f->state == F_HANDSHAKE && !f->tls.want_write)
    ev = EPOLLIN | (ev & EPOLLRDHUP);
  struct epoll_event e = {.events = ev, .data.ptr = &f->src};
  epoll_ctl(f->d->epfd, EPOLL_CTL_MOD, f->fd, &e);
  if (f->inner >= 0) {
    uint32_t iev = 0;
    if (!f->inner_eof && f->out.len < BUF_HIGH)
      iev |= EPOLLIN;
    if (f->to_inner.len)
      iev |= EPOLLOUT;
    struct epoll_event ie = {.events = iev, .data.ptr = &f->inner_src};
    epoll_ctl(f->d->epfd, EPOLL_CTL_MOD, f->inner, &ie);
  }
}

void vd_front_event(vd_src *src, uint32_t events) {
  vd_front *f = src->owner;
  if (f->dead)
    return;
  if (src == &f->src && (events & (EPOLLERR | EPOLLHUP))) { /* the client's socket is gone */
    front_close(f);
    return;
  }
  front_run(f);
}

/* ---------------------------------------------------------------- websockets */

static void ws_send(vd_front *f, int opcode, const void *data, size_t len) {
  uint8_t hdr[10];
  size_t h = ws_frame_header(hdr, opcode, len);
  buf_add(&f->out, hdr, h);
  buf_add(&f->out, data, len);
}

static void ws_close(vd_front *f, uint16_t code, const char *reason) {
  if (!f->ws_close_sent) {
    uint8_t p[125];
    size_t n = ws_close_payload(p, code, reason);
    ws_send(f, WS_OP_CLOSE, p, n);
    f->ws_close_sent = true;
  }
  f->state = F_CLOSING;
}

/* The terminal's size to the container (a request of its own; its answer is not awaited). */
static void ws_resize(vd_front *f, json_t *msg) {
  json_t *cols = json_object_get(msg, "cols"), *rows = json_object_get(msg, "rows");
  if (!json_is_integer(cols) || !json_is_integer(rows) || json_integer_value(cols) < 1 ||
      json_integer_value(rows) < 1 || json_integer_value(cols) > 10000 ||
      json_integer_value(rows) > 10000 || !f->ws_ctr)
    return; /* a VM's serial console has no size */
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0)
    return;
  _cleanup_free_ char *req = vs_asprintf(
      "POST /containers/%s/resize?h=%lld&w=%lld HTTP/1.1\r\nHost: vesseld\r\n"
      "Content-Length: 0\r\nConnection: close\r\n\r\n",
      f->ws_ctr, (long long)json_integer_value(rows), (long long)json_integer_value(cols));
  /* a few hundred bytes into an empty socket buffer: the write is whole; the router reads the
   * request, then our end's close, and drops the answer */
  if (write(sv[0], req, strlen(req)) < 0 || !vd_conn_adopt(f->d, sv[1]))
    vs_log_debug("web: resize of %s not sent", f->ws_ctr);
  close(sv[0]);
}

static void ws_input(vd_front *f) {
  while (f->state == F_WS && f->in.len) {
    size_t used = 0;
    ws_message m;
    uint16_t code = 0;
    vs_error *e = NULL;
    int r = ws_read(&f->ws, (const uint8_t *)f->in.p, f->in.len, &used, &m, &code, &e);
    if (r < 0) {
      vs_log_debug("web %s: %s", f->addr, e->msg);
      ws_close(f, code, e->msg + strlen("websocket: "));
      vs_error_free(e);
      buf_free(&f->in);
      return;
    }
    buf_take(&f->in, used);
    if (r == 0) {
      if (used == 0)
        return;
      continue;
    }
    if (m.opcode == WS_OP_BINARY) {
      buf_add(&f->to_inner, m.data, m.len);
    } else if (m.opcode == WS_OP_TEXT) {
      json_t *j = json_loadb((const char *)m.data, m.len, 0, NULL);
      const char *type = json_string_value(json_object_get(j, "type"));
      if (!json_is_object(j)) {
        ws_close(f, WS_CLOSE_BAD_DATA, "control messages are JSON objects");
      } else if (type && !strcmp(type, "resize")) {
        ws_resize(f, j);
      }
      json_decref(j);
    } else if (m.opcode == WS_OP_PING) {
      ws_send(f, WS_OP_PONG, m.data, m.len);
    } else if (m.opcode == WS_OP_CLOSE) {
      int code2 = ws_close_code(m.data, m.len);
      ws_close(f,
               code2 < 0       ? WS_CLOSE_PROTOCOL
               : code2 == 1005 ? WS_CLOSE_NORMAL
                               : (uint16_t)code2,
               "");
    }
    free(m.data);
  }
}

/* The client's websocket key to the accept value (RFC 6455 4.2.2). */
static void ws_accept_value(const char *key, char out[29]) {
  static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
  unsigned char digest[SHA_DIGEST_LENGTH];
  _cleanup_free_ char *s = vs_asprintf("%s%s", key, guid);
  SHA1((const unsigned char *)s, strlen(s), digest);
  EVP_EncodeBlock((unsigned char *)out, digest, SHA_DIGEST_LENGTH);
}

/* Terminal output to the client, as binary messages of at most 64 KiB (what we accept). */
static void ws_output_raw(vd_front *f, const char *data, size_t len) {
  for (size_t off = 0; off < len;) {
    size_t n = len - off < WS_MAX_MESSAGE ? len - off : WS_MAX_MESSAGE;
    ws_send(f, WS_OP_BINARY, data + off, n);
    off += n;
  }
}

/* The same from a container without a TTY: Docker's 8-byte frame headers (stream, 0, 0, 0,
 * big-endian length) come off; stdout and stderr both go to the terminal. */
static void ws_output(vd_front *f, const char *data, size_t len) {
  if (!f->ws_demux) {
    ws_output_raw(f, data, len);
    return;
  }
  while (len) {
    if (f->mux_left == 0) {
      size_t take = sizeof(f->mux_hdr) - f->mux_hdr_len;
      take = take < len ? take : len;
      memcpy(f->mux_hdr + f->mux_hdr_len, data, take);
      f->mux_hdr_len += take;
      data += take;
      len -= take;
      if (f->mux_hdr_len == sizeof(f->mux_hdr)) {
        f->mux_left = (uint32_t)f->mux_hdr[4] << 24 | (uint32_t)f->mux_hdr[5] << 16 |
                      (uint32_t)f->mux_hdr[6] << 8 | f->mux_hdr[7];
        f->mux_hdr_len = 0;
      }
      continue;
    }
    size_t n = len < f->mux_left ? len : f->mux_left;
    ws_output_raw(f, data, n);
    f->mux_left -= (uint32_t)n;
    data += n;
    len -= n;
  }
}

/* ---------------------------------------------------------------- the inner answer */

/* A complete inner head: security headers go in; a websocket's 101 becomes the handshake. */
static void inner_head(vd_front *f, size_t hl) {
  const char *h = f->ihead.p;
  int status = 0;
  if (hl > 12 && !strncmp(h, "HTTP/1.", 7))
    status = (int)strtol(h + 9, NULL, 10);
  if (f->state == F_WS_WAIT) {
    if (status == 101) {
      char accept[29];
      ws_accept_value(http_header_get(&f->req, "Sec-WebSocket-Key"), accept);
      _cleanup_free_ char *resp =
          vs_asprintf("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                      "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n" SECURITY_HEADERS "\r\n",
                      accept);
      buf_str(&f->out, resp);
      f->state = F_WS;
      ws_reader_init(&f->ws, WS_MAX_MESSAGE);
      buf_take(&f->ihead, hl);
      if (f->ihead.len)
        ws_output(f, f->ihead.p, f->ihead.len);
      buf_free(&f->ihead);
      f->ihead_done = true;
      return;
    }
    f->state = F_PROXY; /* an error answer (no such container...): passed on as it is */
  }
  /* the head ends with CRLF CRLF: the headers go before the last CRLF */
  buf_add(&f->out, h, hl - 2);
  buf_str(&f->out, SECURITY_HEADERS "\r\n");
  buf_take(&f->ihead, hl);
  buf_add(&f->out, f->ihead.p, f->ihead.len);
  buf_free(&f->ihead);
  f->ihead_done = true;
}

static void inner_data(vd_front *f, const char *data, size_t len) {
  if (f->state == F_WS_INSPECT) { /* read whole, at its end (ws_inspected) */
    if (f->ihead.len + len > INSPECT_MAX)
      front_close(f);
    else
      buf_add(&f->ihead, data, len);
    return;
  }
  if (!f->web || f->ihead_done) {
    if (f->state == F_WS)
      ws_output(f, data, len);
    else
      buf_add(&f->out, data, len);
    return;
  }
  buf_add(&f->ihead, data, len);
  const char *end = memmem(f->ihead.p, f->ihead.len, "\r\n\r\n", 4);
  if (end)
    inner_head(f, (size_t)(end - f->ihead.p) + 4);
  else if (f->ihead.len > HTTP_MAX_HEAD_BYTES)
    front_close(f);
}

/* ---------------------------------------------------------------- requests */

static bool id_valid(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n > 128 || s[0] == '.' || s[0] == '-')
    return false;
  for (size_t i = 0; i < n; i++)
    if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
          (s[i] >= '0' && s[i] <= '9') || s[i] == '_' || s[i] == '.' || s[i] == '-'))
      return false;
  return true;
}

/* The session of an API or websocket request, or NULL after answering 401. */
static vd_web_session *need_session(vd_front *f) {
  const char *why;
  vd_web_session *s = vd_web_session_get(web_of(f->d), &f->req, &why);
  if (!s) /* the body, if any, was read: the connection can go on */
    respond_error(f, 401, why, f->req.keep_alive);
  return s;
}

static void web_websocket(vd_front *f, const char *rest) {
  const char *up = http_header_get(&f->req, "Upgrade");
  const char *key = http_header_get(&f->req, "Sec-WebSocket-Key");
  const char *ver = http_header_get(&f->req, "Sec-WebSocket-Version");
  unsigned char raw[32];
  if (strcmp(f->req.method, "GET") != 0 || !up || !has_token(up, "websocket") || !key ||
      strlen(key) != 24 || EVP_DecodeBlock(raw, (const unsigned char *)key, 24) != 18 || !ver ||
      strcmp(ver, "13") != 0) {
    respond_error(f, 400, "expected a websocket upgrade (RFC 6455, version 13)", false);
    return;
  }
  vd_web_session *s = need_session(f);
  if (!s)
    return;
  _cleanup_free_ char *csrf = http_query_get(f->req.query, "csrf");
  if (!csrf || !vd_web_token_equal(csrf, s->csrf)) {
    respond_error(f, 403, "missing or invalid CSRF token", false);
    return;
  }
  const char *origin = http_header_get(&f->req, "Origin");
  const char *host = http_header_get(&f->req, "Host");
  _cleanup_free_ char *want = vs_asprintf("https://%s", host ? host : "");
  if (!origin || strcmp(origin, want) != 0) {
    respond_error(f, 403, "websocket from another origin refused", false);
    return;
  }
  /* /containers/{id}/attach or /vms/{id}/console */
  char kind[16] = "", id[160] = "", what[16] = "";
  if (sscanf(rest, "/%15[a-z]/%159[^/]/%15[a-z]", kind, id, what) != 3 || !id_valid(id) ||
      !((!strcmp(kind, "containers") && !strcmp(what, "attach")) ||
        (!strcmp(kind, "vms") && !strcmp(what, "console"))) ||
      strlen(rest) != 3 + strlen(kind) + strlen(id) + strlen(what)) {
    respond_error(f, 404, "no such websocket endpoint", false);
    return;
  }
  if (inner_open(f) < 0) {
    respond_error(f, 503, "cannot reach the API router", false);
    return;
  }
  if (!strcmp(kind, "vms")) {
    _cleanup_free_ char *req =
        vs_asprintf("POST /vessel/v1/vms/%s/console?logs=1 HTTP/1.1\r\n", id);
    buf_str(&f->to_inner, req);
    buf_str(&f->to_inner, "Host: vesseld\r\nUpgrade: tcp\r\nConnection: Upgrade, close\r\n"
                          "Content-Length: 0\r\n\r\n");
    f->state = F_WS_WAIT;
    return;
  }
  /* a container: whether it has a TTY says how its output comes (ws_inspected) */
  f->ws_ctr = vs_strdup(id);
  _cleanup_free_ char *req = vs_asprintf(
      "GET /containers/%s/json HTTP/1.1\r\nHost: vesseld\r\nConnection: close\r\n\r\n", id);
  buf_str(&f->to_inner, req);
  f->state = F_WS_INSPECT;
}

/* The container's inspect came (the inner connection closed): attach to it, or pass the
 * router's refusal (404 no such container) on. */
static void ws_inspected(vd_front *f) {
  const char *end = f->ihead.p ? memmem(f->ihead.p, f->ihead.len, "\r\n\r\n", 4) : NULL;
  if (!end) {
    respond_error(f, 502, "no answer from the API router", false);
    return;
  }
  size_t hl = (size_t)(end - f->ihead.p) + 4;
  int status = f->ihead.len > 12 ? (int)strtol(f->ihead.p + 9, NULL, 10) : 0;
  if (status != 200) {
    f->state = F_PROXY;
    inner_head(f, hl);
    f->state = F_CLOSING;
    return;
  }
  json_t *j = json_loadb(f->ihead.p + hl, f->ihead.len - hl, 0, NULL);
  f->ws_demux = !json_is_true(json_object_get(json_object_get(j, "Config"), "Tty"));
  json_decref(j);
  buf_free(&f->ihead);
  f->inner_eof = false;
  f->ihead_done = false;
  if (inner_open(f) < 0) {
    respond_error(f, 503, "cannot reach the API router", false);
    return;
  }
  _cleanup_free_ char *req = vs_asprintf(
      "POST /containers/%s/attach?stream=1&stdin=1&stdout=1&stderr=1 HTTP/1.1\r\nHost: vesseld\r\n"
      "Upgrade: tcp\r\nConnection: Upgrade, close\r\nContent-Length: 0\r\n\r\n",
      f->ws_ctr);
  buf_str(&f->to_inner, req);
  f->state = F_WS_WAIT;
}

/* Headers not passed to the router: the browser's credentials and hop-by-hop ones. */
static bool header_dropped(const char *name) {
  static const char *const drop[] = {"Cookie",  "X-CSRF-Token",     "Connection", "Keep-Alive",
                                     "Upgrade", "Proxy-Connection", "TE",         "Expect"};
  for (size_t i = 0; i < ARRAY_SIZE(drop); i++)
    if (!strcasecmp(name, drop[i]))
      return true;
  return false;
}

/* Why an API request may not go to the router: 0, or the status with *msg. */
static int api_refusal(vd_front *f, const char **msg) {
  const char *why;
  vd_web_session *s = vd_web_session_get(web_of(f->d), &f->req, &why);
  if (!s)
    return *msg = why, 401;
  bool safe = !strcmp(f->req.method, "GET") || !strcmp(f->req.method, "HEAD");
  const char *token = http_header_get(&f->req, "X-CSRF-Token");
  if (!safe && (!token || !vd_web_token_equal(token, s->csrf)))
    return *msg = "missing or invalid CSRF token", 403;
  _cleanup_free_ char *vmsg = NULL;
  const char *api = vd_api_path(f->req.path + 4, &vmsg);
  if (api && !strncmp(api, "/vessel/v1/web/", 15))
    return *msg = "the web password is set on the host with `vessel web passwd`", 403;
  /* the raw target must carry the prefix literally for it to be cut off */
  if (strncmp(f->req.target, "/api/", 5) != 0)
    return *msg = "the /api prefix must not be percent-encoded", 400;
  return 0;
}

/* An API request that passed the checks: its head (without the browser's credentials) to a new
 * internal connection, then its body as it comes. */
static void web_api_proxy(vd_front *f) {
  if (inner_open(f) < 0) {
    respond_error(f, 503, "cannot reach the API router", false);
    return;
  }
  _cleanup_free_ char *line = vs_asprintf("%s %s HTTP/1.1\r\n", f->req.method, f->req.target + 4);
  buf_str(&f->to_inner, line);
  for (size_t i = 0; i < f->req.n_headers; i++) {
    if (header_dropped(f->req.headers[i].name))
      continue;
    _cleanup_free_ char *h =
        vs_asprintf("%s: %s\r\n", f->req.headers[i].name, f->req.headers[i].value);
    buf_str(&f->to_inner, h);
  }
  /* one request per internal connection: its end is the end of the answer */
  buf_str(&f->to_inner, "Connection: close\r\n\r\n");
  http_body_init(&f->body, &f->req, UINT64_MAX);
  f->state = F_PROXY_BODY;
}

/* ---- static files */

static const char *content_type(const char *path) {
  static const struct {
    const char *ext, *type;
  } types[] = {{".html", "text/html; charset=utf-8"},
               {".js", "text/javascript; charset=utf-8"},
               {".mjs", "text/javascript; charset=utf-8"},
               {".css", "text/css; charset=utf-8"},
               {".json", "application/json"},
               {".svg", "image/svg+xml"},
               {".png", "image/png"},
               {".ico", "image/x-icon"},
               {".woff2", "font/woff2"},
               {".txt", "text/plain; charset=utf-8"},
               {".map", "application/json"},
               {".wasm", "application/wasm"}};
  const char *dot = strrchr(path, '.');
  const char *slash = strrchr(path, '/');
  if (dot && (!slash || dot > slash))
    for (size_t i = 0; i < ARRAY_SIZE(types); i++)
      if (!strcasecmp(dot, types[i].ext))
        return types[i].type;
  return "application/octet-stream";
}

/* Open a regular file under the web root; -1 when there is none. */
static int static_open(vd_web *w, const char *rel, struct stat *st) {
  if (!*rel)
    return -1;
  int fd = vs_openat_in_root(w->root_fd, rel, O_RDONLY | O_CLOEXEC | O_NOFOLLOW, 0, NULL);
  if (fd < 0)
    return -1;
  if (fstat(fd, st) < 0 || !S_ISREG(st->st_mode) || (size_t)st->st_size > STATIC_MAX) {
    close(fd);
    return -1;
  }
  return fd;
}

/* A "." or ".." segment: such paths are not served (the root would contain them anyway). */
static bool has_dot_segment(const char *path) {
  for (const char *p = path; (p = strchr(p, '/')) != NULL; p++) {
    size_t n = strcspn(p + 1, "/");
    if ((n == 1 && p[1] == '.') || (n == 2 && p[1] == '.' && p[2] == '.'))
      return true;
  }
  return false;
}

static void web_static(vd_front *f) {
  vd_web *w = web_of(f->d);
  bool keep = f->req.keep_alive;
  if (strcmp(f->req.method, "GET") != 0 && strcmp(f->req.method, "HEAD") != 0) {
    respond(f, 405, NULL, NULL, 0, "Allow: GET, HEAD\r\n", false);
    return;
  }
  const char *path = f->req.path;
  if (w->root_fd < 0 || has_dot_segment(path)) {
    respond_error(f, 404, "not found", keep);
    return;
  }
  _cleanup_free_ char *rel = vs_strdup(path + strspn(path, "/"));
  size_t rl = strlen(rel);
  if (rl == 0 || rel[rl - 1] == '/') {
    char *r2 = vs_asprintf("%sindex.html", rel);
    free(rel);
    rel = r2;
  }
  struct stat st;
  int fd = static_open(w, rel, &st);
  if (fd < 0) {
    const char *last = strrchr(rel, '/');
    if (strchr(last ? last : rel, '.')) {
      respond_error(f, 404, "not found", keep);
      return;
    }
    free(rel);
    rel = vs_strdup("index.html"); /* an address of the single-page app */
    fd = static_open(w, rel, &st);
    if (fd < 0) {
      respond_error(f, 404, "the web console is not installed (scripts/build-web)", keep);
      return;
    }
  }
  const char *ae = http_header_get(&f->req, "Accept-Encoding");
  bool gz = false;
  if (ae && has_token(ae, "gzip")) {
    _cleanup_free_ char *gzrel = vs_asprintf("%s.gz", rel);
    struct stat gst;
    int gfd = static_open(w, gzrel, &gst);
    if (gfd >= 0) {
      close(fd);
      fd = gfd;
      st = gst;
      gz = true;
    }
  }
  char *data = vs_malloc0((size_t)st.st_size + 1);
  size_t got = 0;
  while (got < (size_t)st.st_size) {
    ssize_t n = read(fd, data + got, (size_t)st.st_size - got);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      break;
    got += (size_t)n;
  }
  close(fd);
  bool immutable = !strncmp(rel, "assets/", 7);
  _cleanup_free_ char *extra = vs_asprintf(
      "%sVary: Accept-Encoding\r\nCache-Control: %s\r\n", gz ? "Content-Encoding: gzip\r\n" : "",
      immutable ? "public, max-age=31536000, immutable" : "no-cache");
  respond(f, 200, content_type(rel), data, got, extra, keep);
  free(data);
}

/* ---- login, session, logout */

typedef struct login_job {
  vd_job job;
  vd_front *f;
  char *path, *password;
  int result; /* 1 match, 0 no match, -1 error (msg) */
  char *msg;
  bool no_password;
} login_job;

static void login_run(vd_job *job) {
  login_job *lj = (login_job *)job;
  vs_error *e = NULL;
  lj->result = vd_web_password_check(lj->path, lj->password, &e);
  if (lj->result < 0) {
    lj->no_password = e->errnum == ENOENT;
    lj->msg = vs_strdup(e->msg);
    vs_error_free(e);
  }
}

static void login_done(vd_job *job) {
  login_job *lj = (login_job *)job;
  vd_front *f = lj->f;
  f->busy = false;
  if (web_of(f->d))
    web_of(f->d)->logins_running--;
  if (!f->dead) {
    vd_web *w = web_of(f->d);
    bool keep = f->req.keep_alive;
    if (lj->result == 1) {
      vd_web_session *s = vd_web_session_new(w);
      _cleanup_free_ char *cookie =
          vs_asprintf("Set-Cookie: vessel_session=%s; Path=/; Secure; HttpOnly; "
                      "SameSite=Strict\r\nCache-Control: no-store\r\n",
                      s->token);
      respond_json(f, 200, json_pack("{s:s}", "csrf", s->csrf), cookie, keep);
      vs_log_info("web: login from %s", f->addr);
    } else if (lj->result == 0) {
      vd_web_login_failed(w, f->addr);
      vs_log_warn("web: wrong password from %s", f->addr);
      respond_error(f, 401, "wrong password", keep);
    } else if (lj->no_password) {
      respond_error(f, 401, "no web password is set: run `vessel web passwd` on the host", keep);
    } else {
      vs_log_warn("web: login: %s", lj->msg);
      respond_error(f, 500, "the password record cannot be read (see the daemon's log)", keep);
    }
    request_done(f);
    front_run(f);
  }
  if (lj->password)
    OPENSSL_cleanse(lj->password, strlen(lj->password));
  free(lj->password);
  free(lj->path);
  free(lj->msg);
  free(lj);
}

static void web_login(vd_front *f) {
  vd_web *w = web_of(f->d);
  bool keep = f->req.keep_alive;
  long long wait = vd_web_login_wait(w, f->addr);
  /* each check costs a worker a third of a second: a flood of logins must not take them all */
  if (wait == 0 && w->logins_running >= VD_WEB_LOGINS_RUNNING_MAX)
    wait = 1;
  if (wait > 0) {
    _cleanup_free_ char *msg = vs_asprintf("too many login attempts; try again in %lld s", wait);
    _cleanup_free_ char *extra = vs_asprintf("Retry-After: %lld\r\n", wait);
    respond_json(f, 429, json_pack("{s:s}", "message", msg), extra, keep);
    request_done(f);
    return;
  }
  json_t *j = json_loadb(f->local_body.p ? f->local_body.p : "", f->local_body.len, 0, NULL);
  const char *pw = json_string_value(json_object_get(j, "password"));
  if (!json_is_object(j) || !pw) {
    json_decref(j);
    respond_error(f, 400, "expected a JSON object {\"password\": \"...\"}", keep);
    request_done(f);
    return;
  }
  login_job *lj = vs_malloc0(sizeof(*lj));
  lj->job.d = f->d;
  lj->job.run = login_run;
  lj->job.done = login_done;
  lj->f = f;
  lj->path = vs_strdup(w->passwd_path);
  lj->password = vs_strdup(pw);
  json_decref(j);
  OPENSSL_cleanse(f->local_body.p, f->local_body.len);
  f->busy = true;
  f->state = F_BUSY;
  w->logins_running++;
  vd_job_submit(f->d, &lj->job);
}

static void web_local_request(vd_front *f) {
  vd_web *w = web_of(f->d);
  bool keep = f->req.keep_alive;
  const char *p = f->req.path;
  bool post = !strcmp(f->req.method, "POST");
  if (!strcmp(p, "/web/login") && post) {
    web_login(f);
    return;
  }
  if (!strcmp(p, "/web/session") && !strcmp(f->req.method, "GET")) {
    const char *why;
    vd_web_session *s = vd_web_session_get(w, &f->req, &why);
    if (s)
      respond_json(f, 200, json_pack("{s:s}", "csrf", s->csrf), "Cache-Control: no-store\r\n",
                   keep);
    else
      respond_error(f, 401, why, keep);
  } else if (!strcmp(p, "/web/logout") && post) {
    vd_web_session *s = need_session(f);
    const char *token = http_header_get(&f->req, "X-CSRF-Token");
    if (s && (!token || !vd_web_token_equal(token, s->csrf))) {
      respond_error(f, 403, "missing or invalid CSRF token", keep);
    } else if (s) {
      vd_web_session_end(w, s);
      respond(f, 204, NULL, NULL, 0,
              "Set-Cookie: vessel_session=; Path=/; Secure; HttpOnly; SameSite=Strict; "
              "Max-Age=0\r\n",
              keep);
    }
  } else if (!strcmp(p, "/web/login") || !strcmp(p, "/web/logout") || !strcmp(p, "/web/session")) {
    respond(f, 405, NULL, NULL, 0,
            !strcmp(p, "/web/session") ? "Allow: GET\r\n" : "Allow: POST\r\n", keep);
  } else {
    respond_error(f, 404, "page not found", keep);
  }
  request_done(f);
}

static bool is_api(const char *p) { return !strncmp(p, "/api/", 5) || !strcmp(p, "/api"); }

/* A request answered here, its body (if any) read: login and the rest, websockets, files. */
static void web_dispatch(vd_front *f) {
  const char *p = f->req.path;
  if (f->refusal) { /* an API request refused before its body was read */
    respond_error(f, f->refusal, f->refusal_msg, f->req.keep_alive);
    f->refusal = 0;
    request_done(f);
    return;
  }
  if (!strncmp(p, "/api/ws/", 8)) {
    web_websocket(f, p + 7);
    if (f->state == F_HEAD || f->state == F_CLOSING) /* refused */
      request_done(f);
    return;
  }
  if (is_api(p)) { /* /api alone */
    respond_error(f, 404, "page not found", f->req.keep_alive);
    request_done(f);
    return;
  }
  if (!strncmp(p, "/web/", 5)) {
    web_local_request(f);
    return;
  }
  web_static(f);
  request_done(f);
}

/* A parsed head: pass it to the router, or read its body, then answer it here. A refused
 * request's body is read all the same (up to a limit), so that the answer is not lost to a
 * reset when the connection closes with unread input. */
static void web_request(vd_front *f) {
  const char *p = f->req.path;
  bool has_body = f->req.chunked || (f->req.has_length && f->req.content_length > 0);
  f->refusal = 0;
  /* a client that waits for leave to send its body gets it from here (the router never sees
   * Expect) */
  const char *expect = http_header_get(&f->req, "Expect");
  if (has_body && expect && !strcasecmp(expect, "100-continue") && f->in.len == 0)
    buf_str(&f->out, "HTTP/1.1 100 Continue\r\n\r\n");
  if (is_api(p) && strncmp(p, "/api/ws/", 8) != 0 && strcmp(p, "/api") != 0) {
    f->refusal = api_refusal(f, &f->refusal_msg);
    if (!f->refusal) {
      web_api_proxy(f);
      return;
    }
  }
  if (has_body) {
    f->keep_body = !strcmp(p, "/web/login") && !f->refusal;
    http_body_init(&f->body, &f->req, f->keep_body ? LOGIN_BODY_MAX : DISCARD_BODY_MAX);
    f->state = F_LOCAL_BODY;
    return;
  }
  web_dispatch(f);
}

/* Interpret what the client sent, as far as the state allows. */
static void client_input(vd_front *f) {
  for (;;) {
    front_state before = f->state;
    size_t in_before = f->in.len;
    switch (f->state) {
    case F_HEAD: {
      size_t hl = http_head_length(f->in.p ? f->in.p : "", f->in.len);
      if (hl == 0) {
        if (f->in.len > HTTP_MAX_HEAD_BYTES)
          respond_error(f, 431, "request head larger than 65536 bytes", false);
        break;
      }
      vs_error *e = NULL;
      int r = http_parse_head(f->in.p, hl, &f->req, &e);
      f->have_req = true;
      buf_take(&f->in, hl);
      if (r) {
        respond_error(f, r, e->msg, false);
        vs_error_free(e);
        break;
      }
      web_request(f);
      break;
    }
    case F_LOCAL_BODY:
    case F_PROXY_BODY: {
      size_t used;
      const char *data;
      size_t dlen;
      vs_error *e = NULL;
      int r =
          http_body_decode(&f->body, f->in.p ? f->in.p : "", f->in.len, &used, &data, &dlen, &e);
      if (r > 1) {
        if (f->state == F_PROXY_BODY) {
          front_close(f);
        } else {
          respond_error(f, r, e->msg, false);
        }
        vs_error_free(e);
        return;
      }
      if (f->state == F_PROXY_BODY)
        buf_add(&f->to_inner, f->in.p, used); /* the body as it was framed */
      else if (f->keep_body)
        buf_add(&f->local_body, data, dlen);
      /* else a refused request's body, read only to be dropped: kept for the next request's
       * inner connection, it came before that request's head there (400 "malformed method") */
      buf_take(&f->in, used);
      if (r == 1) {
        if (f->state == F_LOCAL_BODY) {
          f->state = F_HEAD;
          web_dispatch(f);
        } else {
          f->state = F_PROXY;
        }
      }
      break;
    }
    case F_PROXY:
    case F_WS_INSPECT:
    case F_WS_WAIT:
    case F_LINGER:
      buf_free(&f->in); /* one request per connection from here: the rest is dropped */
      break;
    case F_WS:
      ws_input(f);
      break;
    case F_RELAY:
      buf_add(&f->to_inner, f->in.p, f->in.len);
      f->in.len = 0;
      break;
    default:
      break;
    }
    if (f->dead || (f->state == before && f->in.len == in_before))
      return;
  }
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
      front_close(f);
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
    client_input(f);
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
    inner_data(f, chunk, (size_t)n);
  }
  if (f->inner_eof && !f->dead) {
    vd_loop_del(f->d, f->inner);
    close(f->inner);
    f->inner = -1;
    if (f->state == F_WS_INSPECT) {
      ws_inspected(f);
      return;
    }
    /* the answer (or the stream) ended: so does the client's connection */
    if (f->state == F_WS)
      ws_close(f, WS_CLOSE_NORMAL, "the stream ended");
    f->state = F_CLOSING;
  }
}

static void front_run(vd_front *f) {
  uint64_t expired = 0;
  if (read(f->timer, &expired, sizeof(expired)) == sizeof(expired) && expired &&
      f->timer_mode != TIMER_NONE) {
    if (f->timer_mode == TIMER_IDLE)
      vs_log_debug("web %s: no request within %d s, closed", f->addr, IDLE_SECONDS);
    front_close(f);
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
        front_close(f);
        return;
      }
      if (r == 0)
        break;
      f->state = f->web ? F_HEAD : F_RELAY;
      if (!f->web && inner_open(f) < 0) {
        front_close(f);
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
      front_close(f);
      return;
    }
    if (f->client_eof && f->state == F_RELAY && f->inner < 0) {
      front_close(f);
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

void vd_front_listener_event(vd_daemon *d, vd_front_listener *l) {
  for (;;) {
    struct sockaddr_storage sa;
    socklen_t sl = sizeof(sa);
    int fd = accept4(l->fd, (struct sockaddr *)&sa, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0)
      return;
    if (d->n_conns >= VD_MAX_CONNS || d->n_fronts >= VD_MAX_FRONTS) {
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
    if (getnameinfo((struct sockaddr *)&sa, sl, f->addr, sizeof(f->addr), NULL, 0,
                    NI_NUMERICHOST) != 0)
      snprintf(f->addr, sizeof(f->addr), "?");
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
  vs_log_info("web console on https://%s (static files %s)", o->web, w->root);
  return 0;
}

void vd_web_free(vd_daemon *d) {
  while (d->fronts)
    front_close(d->fronts);
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
    if (w->root_fd >= 0)
      close(w->root_fd);
    free(w->root);
    free(w->passwd_path);
    OPENSSL_cleanse(w->sessions, sizeof(w->sessions));
    free(w);
    d->web = NULL;
  }
}
