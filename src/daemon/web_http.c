/* The web listener's requests: heads and bodies read from the client, checked, and dispatched
 * to login and sessions (web_session.c), the API (web_proxy.c), websockets (web_term.c) or the
 * static files (web_static.c); answers made here carry the security headers. */
#include "daemon/web_front.h"

#include <strings.h>
#include <time.h>

/* ---------------------------------------------------------------- helpers */

/* Whether a comma-separated header value lists token (parameters after ';' ignored). */
bool vd_front_has_token(const char *value, const char *token) {
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
void vd_front_respond(vd_front *f, int status, const char *ctype, const void *body, size_t len,
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

void vd_front_respond_json(vd_front *f, int status, json_t *j, const char *extra, bool keep) {
  _cleanup_free_ char *text = json_dumps(j, JSON_COMPACT);
  json_decref(j);
  _cleanup_free_ char *line = vs_asprintf("%s\n", text);
  vd_front_respond(f, status, "application/json", line, strlen(line), extra, keep);
}

void vd_front_respond_error(vd_front *f, int status, const char *msg, bool keep) {
  vd_front_respond_json(f, status, json_pack("{s:s}", "message", msg), NULL, keep);
}

/* After a local answer: the next request, or the end when it could not be kept. */
void vd_front_request_done(vd_front *f) {
  f->requests++;
  bool keep = f->have_req && f->req.keep_alive && f->state != F_CLOSING;
  if (f->have_req)
    http_request_clear(&f->req);
  f->have_req = false;
  buf_free(&f->local_body);
  f->state = keep ? F_HEAD : F_CLOSING;
}

/* The session of an API or websocket request, or NULL after answering 401. */
vd_web_session *vd_front_need_session(vd_front *f) {
  const char *why;
  vd_web_session *s = vd_web_session_get(web_of(f->d), &f->req, &why);
  if (!s) /* the body, if any, was read: the connection can go on */
    vd_front_respond_error(f, 401, why, f->req.keep_alive);
  return s;
}

static bool is_api(const char *p) { return !strncmp(p, "/api/", 5) || !strcmp(p, "/api"); }

/* A request answered here, its body (if any) read: login and the rest, websockets, files. */
static void web_dispatch(vd_front *f) {
  const char *p = f->req.path;
  if (f->refusal) { /* an API request refused before its body was read */
    vd_front_respond_error(f, f->refusal, f->refusal_msg, f->req.keep_alive);
    f->refusal = 0;
    vd_front_request_done(f);
    return;
  }
  if (!strncmp(p, "/api/ws/", 8)) {
    vd_front_websocket(f, p + 7);
    if (f->state == F_HEAD || f->state == F_CLOSING) /* refused */
      vd_front_request_done(f);
    return;
  }
  if (is_api(p)) { /* /api alone */
    vd_front_respond_error(f, 404, "page not found", f->req.keep_alive);
    vd_front_request_done(f);
    return;
  }
  if (!strncmp(p, "/web/", 5)) {
    vd_front_local_request(f);
    return;
  }
  vd_front_static(f);
  vd_front_request_done(f);
}

/* A parsed head: pass it to the router, or read its body, then answer it here. A refused
 * request's body is read all the same (up to a limit), so that the answer is not lost to a
 * reset when the connection closes with unread input. */
static void web_request(vd_front *f) {
  const char *p = f->req.path;
  bool has_body = f->req.chunked || (f->req.has_length && f->req.content_length > 0);
  f->refusal = 0;
  f->session = 0;
  /* a client that waits for leave to send its body gets it from here (the router never sees
   * Expect) */
  const char *expect = http_header_get(&f->req, "Expect");
  if (has_body && expect && !strcasecmp(expect, "100-continue") && f->in.len == 0)
    buf_str(&f->out, "HTTP/1.1 100 Continue\r\n\r\n");
  if (is_api(p) && strncmp(p, "/api/ws/", 8) != 0 && strcmp(p, "/api") != 0) {
    f->refusal = vd_front_api_refusal(f, &f->refusal_msg);
    if (!f->refusal) {
      vd_front_api_proxy(f);
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
void vd_front_client_input(vd_front *f) {
  for (;;) {
    front_state before = f->state;
    size_t in_before = f->in.len;
    switch (f->state) {
    case F_HEAD: {
      size_t hl = http_head_length(f->in.p ? f->in.p : "", f->in.len);
      if (hl == 0) {
        if (f->in.len > HTTP_MAX_HEAD_BYTES)
          vd_front_respond_error(f, 431, "request head larger than 65536 bytes", false);
        break;
      }
      vs_error *e = NULL;
      int r = http_parse_head(f->in.p, hl, &f->req, &e);
      f->have_req = true;
      buf_take(&f->in, hl);
      if (r) {
        vd_front_respond_error(f, r, e->msg, false);
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
          vd_front_close(f);
        } else {
          vd_front_respond_error(f, r, e->msg, false);
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
      break; /* the next request waits for this answer's end (bounded: reading stops) */
    case F_WS_INSPECT:
    case F_WS_WAIT:
    case F_LINGER:
      buf_free(&f->in); /* no request after a websocket's: the rest is dropped */
      break;
    case F_WS:
      vd_front_ws_input(f);
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
