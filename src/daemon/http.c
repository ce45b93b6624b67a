/* HTTP/1.1 request heads and bodies (RFC 9112), parsed from bytes a hostile client sent. */
#include "daemon/http.h"

#include <ctype.h>
#include <errno.h>
#include <string.h>
#include <strings.h>

size_t http_head_length(const char *buf, size_t len) {
  const char *end = memmem(buf, len, "\r\n\r\n", 4);
  return end ? (size_t)(end - buf) + 4 : 0;
}

void http_request_clear(http_request *req) {
  free(req->method);
  free(req->target);
  free(req->path);
  free(req->query);
  for (size_t i = 0; i < req->n_headers; i++) {
    free(req->headers[i].name);
    free(req->headers[i].value);
  }
  memset(req, 0, sizeof(*req));
}

const char *http_header_get(const http_request *req, const char *name) {
  for (size_t i = 0; i < req->n_headers; i++)
    if (!strcasecmp(req->headers[i].name, name))
      return req->headers[i].value;
  return NULL;
}

static char *copy_span(const char *s, size_t n) {
  char *p = vs_malloc0(n + 1);
  memcpy(p, s, n);
  return p;
}

/* RFC 9110 token characters: what method names and header field names may contain. */
static bool is_tchar(unsigned char c) { return isalnum(c) || (c && strchr("!#$%&'*+-.^_`|~", c)); }

/* '+' means a space only in query strings (form encoding), never in a path. */
static char *percent_decode(const char *src, size_t len, bool plus_is_space, vs_error **err) {
  char *out = vs_malloc0(len + 1);
  size_t o = 0;
  for (size_t i = 0; i < len; i++) {
    if (src[i] != '%') {
      char ch = src[i];
      if (plus_is_space && ch == '+')
        ch = ' ';
      out[o++] = ch;
      continue;
    }
    int hi = len - i >= 3 ? vs_hex_digit((unsigned char)src[i + 1]) : -1;
    int lo = len - i >= 3 ? vs_hex_digit((unsigned char)src[i + 2]) : -1;
    /* an encoded NUL would cut the string short where later code looks */
    if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
      free(out);
      vs_error_set(err, 0, "bad percent escape at offset %zu", i);
      return NULL;
    }
    out[o++] = (char)(hi * 16 + lo);
    i += 2;
  }
  out[o] = 0;
  return out;
}

char *http_percent_decode(const char *src, size_t len, vs_error **err) {
  return percent_decode(src, len, true, err);
}

char *http_query_get(const char *query, const char *name) {
  size_t nlen = strlen(name);
  const char *p = query;
  while (p && *p) {
    const char *amp = strchr(p, '&');
    size_t plen = amp ? (size_t)(amp - p) : strlen(p);
    const char *eq = memchr(p, '=', plen);
    size_t klen = eq ? (size_t)(eq - p) : plen;
    if (klen == nlen && !memcmp(p, name, nlen)) {
      if (!eq)
        return vs_strdup("");
      return percent_decode(eq + 1, plen - klen - 1, true, NULL);
    }
    p = amp ? amp + 1 : NULL;
  }
  return NULL;
}

json_t *http_query_all(const char *query, const char *name) {
  json_t *out = json_array();
  size_t nlen = strlen(name);
  for (const char *p = query; p && *p;) {
    const char *amp = strchr(p, '&');
    size_t plen = amp ? (size_t)(amp - p) : strlen(p);
    if (plen > nlen && !memcmp(p, name, nlen) && p[nlen] == '=') {
      char *v = percent_decode(p + nlen + 1, plen - nlen - 1, true, NULL);
      if (v && *v)
        json_array_append_new(out, json_string(v));
      free(v);
    }
    p = amp ? amp + 1 : NULL;
  }
  return out;
}

bool http_query_bool(const char *query, const char *name, bool dflt) {
  _cleanup_free_ char *v = http_query_get(query, name);
  if (!v)
    return dflt;
  /* Go's strconv.ParseBool, as dockerd's httputils.BoolValue: anything but these is false */
  return !strcmp(v, "1") || !strcasecmp(v, "true") || !strcmp(v, "t") || !strcmp(v, "T");
}

/* ---------------------------------------------------------------- the head */

static int parse_request_line(const char *line, size_t len, http_request *req, vs_error **err) {
  const char *sp1 = memchr(line, ' ', len);
  if (!sp1 || sp1 == line)
    return vs_error_set(err, 0, "malformed request line"), 400;
  for (const char *p = line; p < sp1; p++)
    if (!is_tchar((unsigned char)*p))
      return vs_error_set(err, 0, "malformed method in request line"), 400;
  const char *rest = sp1 + 1;
  size_t rest_len = len - (size_t)(rest - line);
  const char *sp2 = memchr(rest, ' ', rest_len);
  if (!sp2 || sp2 == rest)
    return vs_error_set(err, 0, "malformed request line"), 400;
  const char *version = sp2 + 1;
  size_t vlen = len - (size_t)(version - line);
  if (vlen != 8 || memcmp(version, "HTTP/", 5) != 0 || !isdigit((unsigned char)version[5]) ||
      version[6] != '.' || !isdigit((unsigned char)version[7]))
    return vs_error_set(err, 0, "malformed HTTP version in request line"), 400;
  if (version[5] != '1' || (version[7] != '0' && version[7] != '1'))
    return vs_error_set(err, 0, "HTTP version %.8s not supported", version), 505;
  req->version_minor = version[7] - '0';
  req->method = copy_span(line, (size_t)(sp1 - line));
  size_t tlen = (size_t)(sp2 - rest);
  for (size_t i = 0; i < tlen; i++)
    if ((unsigned char)rest[i] <= 0x20 || (unsigned char)rest[i] >= 0x7f)
      return vs_error_set(err, 0, "invalid character in request target"), 400;
  if (rest[0] != '/')
    return vs_error_set(err, 0, "request target must be an absolute path"), 400;
  req->target = copy_span(rest, tlen);
  const char *q = memchr(rest, '?', tlen);
  size_t plen = q ? (size_t)(q - rest) : tlen;
  req->path = percent_decode(rest, plen, false, err);
  if (!req->path)
    return vs_error_wrap(err, "request path"), 400;
  req->query = q ? copy_span(q + 1, tlen - plen - 1) : vs_strdup("");
  req->head_only = !strcmp(req->method, "HEAD");
  return 0;
}

static bool has_token(const char *value, const char *token) {
  size_t tl = strlen(token);
  for (const char *p = value; *p;) {
    while (*p == ' ' || *p == '\t' || *p == ',')
      p++;
    const char *e = p;
    while (*e && *e != ',')
      e++;
    const char *t = e;
    while (t > p && (t[-1] == ' ' || t[-1] == '\t'))
      t--;
    if ((size_t)(t - p) == tl && !strncasecmp(p, token, tl))
      return true;
    p = e;
  }
  return false;
}

static int parse_content_length(const char *v, uint64_t *out, vs_error **err) {
  uint64_t n = 0;
  if (!*v)
    return vs_error_set(err, 0, "empty Content-Length"), 400;
  for (const char *p = v; *p; p++) {
    if (*p < '0' || *p > '9')
      return vs_error_set(err, 0, "invalid Content-Length \"%.32s\"", v), 400;
    if (n > (UINT64_MAX - 9) / 10)
      return vs_error_set(err, 0, "Content-Length too large"), 413;
    n = n * 10 + (uint64_t)(*p - '0');
  }
  *out = n;
  return 0;
}

/* What the headers say about framing and the connection (RFC 9112 section 6). */
static int interpret_headers(http_request *req, vs_error **err) {
  const char *te = NULL, *cl = NULL;
  for (size_t i = 0; i < req->n_headers; i++) {
    const http_header *h = &req->headers[i];
    if (!strcasecmp(h->name, "Content-Length")) {
      uint64_t n;
      int r = parse_content_length(h->value, &n, err);
      if (r)
        return r;
      /* repeated lengths that disagree are how requests get smuggled */
      if (cl && n != req->content_length)
        return vs_error_set(err, 0, "conflicting Content-Length headers"), 400;
      cl = h->value;
      req->content_length = n;
      req->has_length = true;
    } else if (!strcasecmp(h->name, "Transfer-Encoding")) {
      if (te)
        return vs_error_set(err, 0, "repeated Transfer-Encoding header"), 400;
      te = h->value;
    }
  }
  if (te) {
    if (strcasecmp(te, "chunked") != 0)
      return vs_error_set(err, 0, "unsupported Transfer-Encoding \"%.32s\"", te), 501;
    if (cl)
      return vs_error_set(err, 0, "both Content-Length and Transfer-Encoding given"), 400;
    if (req->version_minor == 0)
      return vs_error_set(err, 0, "chunked encoding in an HTTP/1.0 request"), 400;
    req->chunked = true;
  }
  const char *conn = http_header_get(req, "Connection");
  if (req->version_minor >= 1)
    req->keep_alive = !(conn && has_token(conn, "close"));
  else
    req->keep_alive = conn && has_token(conn, "keep-alive");
  const char *up = http_header_get(req, "Upgrade");
  req->upgrade_tcp = up && has_token(up, "tcp");
  if (req->version_minor >= 1 && !http_header_get(req, "Host"))
    return vs_error_set(err, 0, "missing Host header"), 400;
  return 0;
}

static int parse_header_line(const char *line, size_t len, http_request *req, vs_error **err) {
  if (req->n_headers >= HTTP_MAX_HEADERS)
    return vs_error_set(err, 0, "more than %d header fields", HTTP_MAX_HEADERS), 431;
  if (line[0] == ' ' || line[0] == '\t')
    return vs_error_set(err, 0, "obsolete header line folding"), 400;
  const char *colon = memchr(line, ':', len);
  if (!colon || colon == line)
    return vs_error_set(err, 0, "malformed header line"), 400;
  for (const char *p = line; p < colon; p++)
    if (!is_tchar((unsigned char)*p))
      return vs_error_set(err, 0, "invalid character in header name"), 400;
  const char *v = colon + 1, *end = line + len;
  while (v < end && (*v == ' ' || *v == '\t'))
    v++;
  while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
    end--;
  for (const char *p = v; p < end; p++)
    if ((*p < 0x20 && *p != '\t') || *p == 0x7f)
      return vs_error_set(err, 0, "invalid character in header value"), 400;
  http_header *h = &req->headers[req->n_headers++];
  h->name = copy_span(line, (size_t)(colon - line));
  h->value = copy_span(v, (size_t)(end - v));
  return 0;
}

int http_parse_head(const char *buf, size_t len, http_request *req, vs_error **err) {
  memset(req, 0, sizeof(*req));
  if (len > HTTP_MAX_HEAD_BYTES)
    return vs_error_set(err, 0, "request head larger than %zu bytes", HTTP_MAX_HEAD_BYTES), 431;
  if (!buf || len < 4 || memcmp(buf + len - 4, "\r\n\r\n", 4) != 0)
    return vs_error_set(err, 0, "incomplete request head"), 400;
  if (memchr(buf, 0, len))
    return vs_error_set(err, 0, "NUL byte in request head"), 400;
  const char *p = buf, *end = buf + len - 2; /* the final CRLF ends the header block */
  bool first = true;
  while (p < end) {
    const char *eol = memmem(p, (size_t)(end - p), "\r\n", 2);
    if (!eol)
      return vs_error_set(err, 0, "malformed line ending"), 400;
    size_t llen = (size_t)(eol - p);
    if (memchr(p, '\r', llen) || memchr(p, '\n', llen))
      return vs_error_set(err, 0, "bare CR or LF in request head"), 400;
    int r = first ? parse_request_line(p, llen, req, err) : parse_header_line(p, llen, req, err);
    if (r)
      return r;
    first = false;
    p = eol + 2;
  }
  if (first)
    return vs_error_set(err, 0, "empty request"), 400;
  return interpret_headers(req, err);
}

/* ---------------------------------------------------------------- the body */

void http_body_init(http_body *b, const http_request *req, uint64_t limit) {
  memset(b, 0, sizeof(*b));
  b->limit = limit;
  if (req->chunked) {
    b->state = HTTP_BODY_CHUNK_SIZE;
  } else {
    b->state = req->has_length && req->content_length ? HTTP_BODY_LENGTH : HTTP_BODY_DONE;
    b->remaining = req->content_length;
  }
}

/* A complete line (ending in CRLF) at in, or 0 when more input is needed; -1 when the line is
 * longer than HTTP_MAX_CHUNK_LINE. */
static ssize_t chunk_line(const char *in, size_t len) {
  size_t lim = len < HTTP_MAX_CHUNK_LINE + 2 ? len : HTTP_MAX_CHUNK_LINE + 2;
  const char *eol = memmem(in, lim, "\r\n", 2);
  if (eol)
    return eol - in;
  return len >= HTTP_MAX_CHUNK_LINE + 2 ? -1 : 0;
}

static int parse_chunk_size(const char *line, size_t len, uint64_t *out, vs_error **err) {
  uint64_t n = 0;
  size_t i = 0;
  for (; i < len && vs_hex_digit((unsigned char)line[i]) >= 0; i++) {
    if (n >> 60)
      return vs_error_set(err, 0, "chunk size too large"), 413;
    n = n * 16 + (uint64_t)vs_hex_digit((unsigned char)line[i]);
  }
  if (i == 0)
    return vs_error_set(err, 0, "malformed chunk size"), 400;
  while (i < len && (line[i] == ' ' || line[i] == '\t'))
    i++;
  if (i < len && line[i] != ';')
    return vs_error_set(err, 0, "malformed chunk size"), 400;
  *out = n;
  return 0;
}

static int decode_chunk_size(http_body *b, const char *in, size_t len, size_t *consumed,
                             vs_error **err) {
  ssize_t l = chunk_line(in, len);
  if (l < 0)
    return vs_error_set(err, 0, "chunk size line too long"), 400;
  if (l == 0 && (len < 2 || memcmp(in, "\r\n", 2) != 0))
    return 0;
  uint64_t n;
  int r = parse_chunk_size(in, (size_t)l, &n, err);
  if (r)
    return r;
  *consumed = (size_t)l + 2;
  b->remaining = n;
  b->state = n ? HTTP_BODY_CHUNK_DATA : HTTP_BODY_TRAILER;
  return 0;
}

static int decode_trailer(http_body *b, const char *in, size_t len, size_t *consumed,
                          vs_error **err) {
  ssize_t l = chunk_line(in, len);
  if (l < 0)
    return vs_error_set(err, 0, "trailer line too long"), 400;
  if (l == 0 && (len < 2 || memcmp(in, "\r\n", 2) != 0))
    return 0;
  *consumed = (size_t)l + 2;
  if (l == 0)
    b->state = HTTP_BODY_DONE;
  /* a bounded number of trailer fields: they are read and ignored */
  else if (++b->remaining > HTTP_MAX_HEADERS)
    return vs_error_set(err, 0, "more than %d trailer fields", HTTP_MAX_HEADERS), 431;
  return 0;
}

static int take_data(http_body *b, const char *in, size_t len, size_t *consumed, const char **data,
                     size_t *data_len, vs_error **err) {
  size_t n = len < b->remaining ? len : (size_t)b->remaining;
  if (b->total + n > b->limit || b->total + n < b->total)
    return vs_error_set(err, 0, "request body larger than %llu bytes",
                        (unsigned long long)b->limit),
           413;
  *data = in;
  *data_len = n;
  *consumed = n;
  b->remaining -= n;
  b->total += n;
  return 0;
}

int http_body_decode(http_body *b, const char *in, size_t len, size_t *consumed, const char **data,
                     size_t *data_len, vs_error **err) {
  *consumed = 0;
  *data = NULL;
  *data_len = 0;
  int r = 0;
  switch (b->state) {
  case HTTP_BODY_DONE:
    return 1;
  case HTTP_BODY_LENGTH:
    if (b->remaining > b->limit)
      return vs_error_set(err, 0, "request body larger than %llu bytes",
                          (unsigned long long)b->limit),
             413;
    r = take_data(b, in, len, consumed, data, data_len, err);
    if (!r && b->remaining == 0)
      b->state = HTTP_BODY_DONE;
    break;
  case HTTP_BODY_CHUNK_SIZE:
    r = decode_chunk_size(b, in, len, consumed, err);
    break;
  case HTTP_BODY_CHUNK_DATA:
    r = take_data(b, in, len, consumed, data, data_len, err);
    if (!r && b->remaining == 0)
      b->state = HTTP_BODY_CHUNK_CRLF;
    break;
  case HTTP_BODY_CHUNK_CRLF:
    if (len < 2)
      return 0;
    if (memcmp(in, "\r\n", 2) != 0)
      return vs_error_set(err, 0, "missing CRLF after chunk data"), 400;
    *consumed = 2;
    b->state = HTTP_BODY_CHUNK_SIZE;
    break;
  case HTTP_BODY_TRAILER:
    r = decode_trailer(b, in, len, consumed, err);
    break;
  }
  if (r)
    return r;
  return b->state == HTTP_BODY_DONE ? 1 : 0;
}

const char *http_reason(int status) {
  switch (status) {
  case 101:
    return "UPGRADED";
  case 200:
    return "OK";
  case 201:
    return "Created";
  case 204:
    return "No Content";
  case 304:
    return "Not Modified";
  case 400:
    return "Bad Request";
  case 403:
    return "Forbidden";
  case 404:
    return "Not Found";
  case 405:
    return "Method Not Allowed";
  case 408:
    return "Request Timeout";
  case 409:
    return "Conflict";
  case 413:
    return "Request Entity Too Large";
  case 431:
    return "Request Header Fields Too Large";
  case 500:
    return "Internal Server Error";
  case 501:
    return "Not Implemented";
  case 503:
    return "Service Unavailable";
  case 505:
    return "HTTP Version Not Supported";
  default:
    return "Unknown";
  }
}
