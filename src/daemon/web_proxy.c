/* /api/... on the web listener: a request checked (session, CSRF, what may not be reached) goes
 * to the router over its own internal connection without the prefix and the browser's
 * credentials; the answer comes back with the security headers added to its head. */
#include "daemon/web_front.h"

#include <errno.h>
#include <strings.h>
#include <unistd.h>

/* ---------------------------------------------------------------- the inner answer */

/* Whether the head's header lines (after the status line) have one named name; *value gets the
 * start of its value when they do. */
static bool head_header(const char *head, size_t hl, const char *name, const char **value) {
  size_t nl = strlen(name);
  for (const char *p = memmem(head, hl, "\r\n", 2); p && p + 2 < head + hl;
       p = memmem(p + 2, (size_t)(head + hl - (p + 2)), "\r\n", 2)) {
    const char *line = p + 2;
    if ((size_t)(head + hl - line) > nl && !strncasecmp(line, name, nl) && line[nl] == ':') {
      *value = line + nl + 1;
      while (**value == ' ' || **value == '\t')
        (*value)++;
      return true;
    }
  }
  return false;
}

/* Whether the client can tell where the answer ends without the connection's end: then its
 * connection may go on after it (f->answer follows the body to its end). */
static bool answer_framing(vd_front *f, const char *head, size_t hl, int status) {
  http_request framing = {0};
  const char *v;
  if (status < 200) /* 1xx, 101 among them: no body of a known end follows */
    return false;
  if (head_header(head, hl, "Transfer-Encoding", &v)) {
    if (strncasecmp(v, "chunked\r\n", 9) != 0)
      return false;
    framing.chunked = true;
  } else if (head_header(head, hl, "Content-Length", &v)) {
    char *end;
    errno = 0;
    unsigned long long n = strtoull(v, &end, 10);
    if (end == v || errno || strncmp(end, "\r\n", 2) != 0)
      return false;
    framing.has_length = true;
    framing.content_length = n;
  } else if (status != 204 && status != 304) {
    return false; /* the body ends with the connection */
  }
  if (f->req.head_only || status == 204 || status == 304)
    framing.chunked = framing.has_length = false;
  http_body_init(&f->answer, &framing, UINT64_MAX);
  return true;
}

/* The router's answer head to the client: without its Connection header when the client's
 * connection goes on, with the security headers, and not to be stored by the browser (inspect
 * documents carry environments, logs carry anything). */
static void pass_head(vd_front *f, const char *h, size_t hl, bool keep) {
  const char *line = h;
  const char *end = h + hl - 2; /* the blank line */
  while (line < end) {
    const char *eol = memmem(line, (size_t)(end - line), "\r\n", 2);
    const char *next = eol ? eol + 2 : end;
    if (!(keep && line != h && !strncasecmp(line, "Connection:", 11)))
      buf_add(&f->out, line, (size_t)(next - line));
    line = next;
  }
  const char *v;
  if (!head_header(h, hl, "Cache-Control", &v))
    buf_str(&f->out, "Cache-Control: no-store\r\n");
  if (keep && f->req.version_minor == 0) /* HTTP/1.0 closes unless told */
    buf_str(&f->out, "Connection: keep-alive\r\n");
  buf_str(&f->out, SECURITY_HEADERS "\r\n");
}

/* A complete inner head: security headers go in; a websocket's 101 becomes the handshake. */
void vd_front_inner_head(vd_front *f, size_t hl) {
  const char *h = f->ihead.p;
  int status = 0;
  if (hl > 12 && !strncmp(h, "HTTP/1.", 7))
    status = (int)strtol(h + 9, NULL, 10);
  if (f->state == F_WS_WAIT) {
    if (status == 101) {
      vd_front_ws_begin(f, hl);
      return;
    }
    f->state = F_PROXY; /* an error answer (no such container...): passed on as it is */
  }
  f->answer_framed = f->state == F_PROXY && answer_framing(f, h, hl, status);
  f->proxy_keep = f->answer_framed && f->have_req && f->req.keep_alive;
  pass_head(f, h, hl, f->proxy_keep);
  f->ihead_done = true;
  fbuf got = f->ihead; /* what came after the head is the body's start */
  memset(&f->ihead, 0, sizeof(f->ihead));
  if (got.len > hl)
    vd_front_inner_data(f, got.p + hl, got.len - hl);
  buf_free(&got);
}

/* The body of a framed answer, followed to its end (which must be the end of what the router
 * sends): then the client's connection may go on, and a stream ended early by the session's end
 * can be ended cleanly at a chunk's boundary. A line of chunked framing cut between two reads waits
 * in answer_tail for the rest (the decoder takes whole lines). */
static void follow_answer(vd_front *f, const char *data, size_t len) {
  if (!f->answer_framed)
    return;
  bool tail = f->answer_tail.len > 0;
  if (tail) {
    buf_add(&f->answer_tail, data, len);
    data = f->answer_tail.p;
    len = f->answer_tail.len;
  }
  size_t off = 0;
  while (f->answer_framed && off < len) {
    if (f->answer.state == HTTP_BODY_DONE) { /* bytes past its end: the connection ends */
      f->answer_framed = false;
      break;
    }
    size_t used = 0;
    const char *d;
    size_t dl;
    vs_error *e = NULL;
    int r = http_body_decode(&f->answer, data + off, len - off, &used, &d, &dl, &e);
    vs_error_free(e);
    if (r > 1) {
      f->answer_framed = false;
      break;
    }
    off += used;
    if (r == 0 && used == 0)
      break;
  }
  if (!f->answer_framed)
    buf_free(&f->answer_tail);
  else if (tail)
    buf_take(&f->answer_tail, off);
  else if (off < len)
    buf_add(&f->answer_tail, data + off, len - off);
}

void vd_front_inner_data(vd_front *f, const char *data, size_t len) {
  if (f->state == F_WS_INSPECT) { /* read whole, at its end (vd_front_ws_inspected) */
    if (f->ihead.len + len > INSPECT_MAX)
      vd_front_close(f);
    else
      buf_add(&f->ihead, data, len);
    return;
  }
  if (!f->web || f->ihead_done) {
    if (f->state == F_WS) {
      vd_front_ws_output(f, data, len);
    } else {
      follow_answer(f, data, len);
      buf_add(&f->out, data, len);
    }
    return;
  }
  buf_add(&f->ihead, data, len);
  const char *end = memmem(f->ihead.p, f->ihead.len, "\r\n\r\n", 4);
  if (end)
    vd_front_inner_head(f, (size_t)(end - f->ihead.p) + 4);
  else if (f->ihead.len > HTTP_MAX_HEAD_BYTES)
    vd_front_close(f);
}

bool vd_front_answer_cut(vd_front *f) {
  if (f->state != F_PROXY || !f->answer_framed || f->answer.state != HTTP_BODY_CHUNK_SIZE ||
      f->answer_tail.len)
    return false;
  buf_str(&f->out, "0\r\n\r\n");
  f->answer_framed = f->proxy_keep = false;
  if (f->inner >= 0) {
    vd_loop_del(f->d, f->inner);
    close(f->inner);
    f->inner = -1;
  }
  f->state = F_CLOSING;
  return true;
}

bool vd_front_inner_ended(vd_front *f) {
  bool keep =
      f->state == F_PROXY && f->proxy_keep && f->answer_framed && f->answer.state == HTTP_BODY_DONE;
  f->proxy_keep = f->answer_framed = false;
  buf_free(&f->answer_tail);
  if (!keep)
    return false;
  vd_front_request_done(f);
  return f->state == F_HEAD;
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
int vd_front_api_refusal(vd_front *f, const char **msg) {
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
  f->session = s->serial; /* a stream it opens ends with the session */
  return 0;
}

/* An API request that passed the checks: its head (without the browser's credentials) to a new
 * internal connection, then its body as it comes. */
void vd_front_api_proxy(vd_front *f) {
  if (vd_front_inner_open(f) < 0) {
    vd_front_respond_error(f, 503, "cannot reach the API router", false);
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
