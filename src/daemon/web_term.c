/* Websocket terminals of the web console: a container's TTY (attach) or a VM's serial console,
 * bridged to the router's hijacked streams. Frames are read by ws.c; output goes back as binary
 * messages, without Docker's stream headers for a container without a TTY. */
#include "daemon/web_front.h"

#include <errno.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <sys/socket.h>

/* ---------------------------------------------------------------- websockets */

static void ws_send(vd_front *f, int opcode, const void *data, size_t len) {
  uint8_t hdr[10];
  size_t h = ws_frame_header(hdr, opcode, len);
  buf_add(&f->out, hdr, h);
  buf_add(&f->out, data, len);
}

void vd_front_ws_close(vd_front *f, uint16_t code, const char *reason) {
  if (!f->ws_close_sent) {
    uint8_t p[125];
    size_t n = ws_close_payload(p, code, reason);
    ws_send(f, WS_OP_CLOSE, p, n);
    f->ws_close_sent = true;
  }
  f->state = F_CLOSING;
}

/* The size the client asked for last to the container (a request of its own; its answer is not
 * awaited). Sizes asked for meanwhile are not sent: a flood of resize messages costs one
 * internal connection per batch read, not one each. */
static void ws_resize_send(vd_front *f) {
  if (!f->ws_ctr || !f->ws_want_cols ||
      (f->ws_want_cols == f->ws_cols && f->ws_want_rows == f->ws_rows))
    return;
  f->ws_cols = f->ws_want_cols;
  f->ws_rows = f->ws_want_rows;
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0)
    return;
  _cleanup_free_ char *req =
      vs_asprintf("POST /containers/%s/resize?h=%d&w=%d HTTP/1.1\r\nHost: vesseld\r\n"
                  "Content-Length: 0\r\nConnection: close\r\n\r\n",
                  f->ws_ctr, f->ws_rows, f->ws_cols);
  /* a few hundred bytes into an empty socket buffer: the write is whole; the router reads the
   * request, then our end's close, and drops the answer */
  if (write(sv[0], req, strlen(req)) < 0 || !vd_conn_adopt(f->d, sv[1]))
    vs_log_debug("web: resize of %s not sent", f->ws_ctr);
  close(sv[0]);
}

/* {"type": "resize", "cols": C, "rows": R}: remembered, sent by ws_resize_send. */
static void ws_resize(vd_front *f, json_t *msg) {
  json_t *cols = json_object_get(msg, "cols"), *rows = json_object_get(msg, "rows");
  if (!json_is_integer(cols) || !json_is_integer(rows) || json_integer_value(cols) < 1 ||
      json_integer_value(rows) < 1 || json_integer_value(cols) > 10000 ||
      json_integer_value(rows) > 10000 || !f->ws_ctr)
    return; /* a VM's serial console has no size */
  f->ws_want_cols = (int)json_integer_value(cols);
  f->ws_want_rows = (int)json_integer_value(rows);
}

static void ws_input_frames(vd_front *f) {
  while (f->state == F_WS && f->in.len) {
    size_t used = 0;
    ws_message m;
    uint16_t code = 0;
    vs_error *e = NULL;
    int r = ws_read(&f->ws, (const uint8_t *)f->in.p, f->in.len, &used, &m, &code, &e);
    if (r < 0) {
      vs_log_debug("web %s: %s", f->addr, e->msg);
      vd_front_ws_close(f, code, e->msg + strlen("websocket: "));
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
        vd_front_ws_close(f, WS_CLOSE_BAD_DATA, "control messages are JSON objects");
      } else if (type && !strcmp(type, "resize")) {
        ws_resize(f, j);
      }
      json_decref(j);
    } else if (m.opcode == WS_OP_PING) {
      ws_send(f, WS_OP_PONG, m.data, m.len);
    } else if (m.opcode == WS_OP_CLOSE) {
      int code2 = ws_close_code(m.data, m.len);
      vd_front_ws_close(f,
                        code2 < 0       ? WS_CLOSE_PROTOCOL
                        : code2 == 1005 ? WS_CLOSE_NORMAL
                                        : (uint16_t)code2,
                        "");
    }
    free(m.data);
  }
}

void vd_front_ws_input(vd_front *f) {
  ws_input_frames(f);
  if (f->state == F_WS)
    ws_resize_send(f);
}

/* The client's websocket key to the accept value (RFC 6455 4.2.2). */
static void ws_accept_value(const char *key, char out[29]) {
  static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
  unsigned char digest[SHA_DIGEST_LENGTH];
  _cleanup_free_ char *s = vs_asprintf("%s%s", key, guid);
  SHA1((const unsigned char *)s, strlen(s), digest);
  EVP_EncodeBlock((unsigned char *)out, digest, SHA_DIGEST_LENGTH);
}

void vd_front_ws_begin(vd_front *f, size_t hl) {
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
    vd_front_ws_output(f, f->ihead.p, f->ihead.len);
  buf_free(&f->ihead);
  f->ihead_done = true;
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
void vd_front_ws_output(vd_front *f, const char *data, size_t len) {
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

void vd_front_websocket(vd_front *f, const char *rest) {
  const char *up = http_header_get(&f->req, "Upgrade");
  const char *key = http_header_get(&f->req, "Sec-WebSocket-Key");
  const char *ver = http_header_get(&f->req, "Sec-WebSocket-Version");
  unsigned char raw[32];
  if (strcmp(f->req.method, "GET") != 0 || !up || !vd_front_has_token(up, "websocket") || !key ||
      strlen(key) != 24 || EVP_DecodeBlock(raw, (const unsigned char *)key, 24) != 18 || !ver ||
      strcmp(ver, "13") != 0) {
    vd_front_respond_error(f, 400, "expected a websocket upgrade (RFC 6455, version 13)", false);
    return;
  }
  vd_web_session *s = vd_front_need_session(f);
  if (!s)
    return;
  f->session = s->serial; /* the terminal ends with the session */
  _cleanup_free_ char *csrf = http_query_get(f->req.query, "csrf");
  if (!csrf || !vd_web_token_equal(csrf, s->csrf)) {
    vd_front_respond_error(f, 403, "missing or invalid CSRF token", false);
    return;
  }
  const char *origin = http_header_get(&f->req, "Origin");
  const char *host = http_header_get(&f->req, "Host");
  _cleanup_free_ char *want = vs_asprintf("https://%s", host ? host : "");
  if (!origin || strcmp(origin, want) != 0) {
    vd_front_respond_error(f, 403, "websocket from another origin refused", false);
    return;
  }
  /* /containers/{id}/attach or /vms/{id}/console */
  char kind[16] = "", id[160] = "", what[16] = "";
  if (sscanf(rest, "/%15[a-z]/%159[^/]/%15[a-z]", kind, id, what) != 3 || !id_valid(id) ||
      !((!strcmp(kind, "containers") && !strcmp(what, "attach")) ||
        (!strcmp(kind, "vms") && !strcmp(what, "console"))) ||
      strlen(rest) != 3 + strlen(kind) + strlen(id) + strlen(what)) {
    vd_front_respond_error(f, 404, "no such websocket endpoint", false);
    return;
  }
  if (vd_front_inner_open(f) < 0) {
    vd_front_respond_error(f, 503, "cannot reach the API router", false);
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
  /* a container: whether it has a TTY says how its output comes (vd_front_ws_inspected) */
  f->ws_ctr = vs_strdup(id);
  _cleanup_free_ char *req = vs_asprintf(
      "GET /containers/%s/json HTTP/1.1\r\nHost: vesseld\r\nConnection: close\r\n\r\n", id);
  buf_str(&f->to_inner, req);
  f->state = F_WS_INSPECT;
}

/* The container's inspect came (the inner connection closed): attach to it, or pass the
 * router's refusal (404 no such container) on. */
void vd_front_ws_inspected(vd_front *f) {
  const char *end = f->ihead.p ? memmem(f->ihead.p, f->ihead.len, "\r\n\r\n", 4) : NULL;
  if (!end) {
    vd_front_respond_error(f, 502, "no answer from the API router", false);
    return;
  }
  size_t hl = (size_t)(end - f->ihead.p) + 4;
  int status = f->ihead.len > 12 ? (int)strtol(f->ihead.p + 9, NULL, 10) : 0;
  if (status != 200) {
    f->state = F_PROXY;
    f->req.keep_alive = false; /* the connection ends with this answer */
    vd_front_inner_head(f, hl);
    f->state = F_CLOSING;
    return;
  }
  json_t *j = json_loadb(f->ihead.p + hl, f->ihead.len - hl, 0, NULL);
  f->ws_demux = !json_is_true(json_object_get(json_object_get(j, "Config"), "Tty"));
  json_decref(j);
  buf_free(&f->ihead);
  f->inner_eof = false;
  f->ihead_done = false;
  if (vd_front_inner_open(f) < 0) {
    vd_front_respond_error(f, 503, "cannot reach the API router", false);
    return;
  }
  _cleanup_free_ char *req = vs_asprintf(
      "POST /containers/%s/attach?stream=1&stdin=1&stdout=1&stderr=1 HTTP/1.1\r\nHost: vesseld\r\n"
      "Upgrade: tcp\r\nConnection: Upgrade, close\r\nContent-Length: 0\r\n\r\n",
      f->ws_ctr);
  buf_str(&f->to_inner, req);
  f->state = F_WS_WAIT;
}
