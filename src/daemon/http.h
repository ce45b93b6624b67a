/* vesseld's HTTP/1.1 request parser (private to src/daemon, its unit tests and fuzz harness).
 *
 * The parser is pure: it works on bytes the caller has buffered and never does I/O, so the event
 * loop, the unit tests and the fuzzer drive the same code. Everything it reads comes from a client
 * and is treated as hostile: sizes are bounded, numbers are checked for overflow, and a malformed
 * request gets the status code to answer with and a message naming the problem.
 */
#ifndef VESSEL_DAEMON_HTTP_H
#define VESSEL_DAEMON_HTTP_H

#include "base/base.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HTTP_MAX_HEAD_BYTES ((size_t)64 * 1024) /* request line + headers */
#define HTTP_MAX_HEADERS 100
#define HTTP_MAX_CHUNK_LINE 1024 /* chunk-size line with extensions, trailer lines */

typedef struct http_header {
  char *name; /* as sent; compare with strcasecmp */
  char *value;
} http_header;

typedef struct http_request {
  char *method;
  char *target;      /* as sent: "/v1.41/containers/json?all=1" */
  char *path;        /* percent-decoded path without the query: "/v1.41/containers/json" */
  char *query;       /* raw query without '?', "" when none */
  int version_minor; /* HTTP/1.<minor> */
  http_header headers[HTTP_MAX_HEADERS];
  size_t n_headers;
  bool chunked;            /* Transfer-Encoding: chunked */
  bool has_length;         /* Content-Length given */
  uint64_t content_length; /* when has_length */
  bool keep_alive;         /* HTTP/1.1 without "Connection: close", or 1.0 with keep-alive */
  bool upgrade_tcp;        /* Upgrade: tcp (Docker's attach and exec hijack) */
  bool head_only;          /* HEAD: the response has no body */
} http_request;

/* Find the end of the head ("\r\n\r\n") in buf; returns the head's length including the blank
 * line, or 0 when it is not complete yet. */
size_t http_head_length(const char *buf, size_t len);

/* Parse a complete head of len bytes (from http_head_length). Returns 0, or the HTTP status to
 * answer with (400, 413, 431, 501, 505) and *err naming the problem. req is filled on success and
 * must be cleared with http_request_clear either way. */
int http_parse_head(const char *buf, size_t len, http_request *req, vs_error **err);
void http_request_clear(http_request *req);
/* The first header of that name (case-insensitive) or NULL. */
const char *http_header_get(const http_request *req, const char *name);

/* A query parameter, percent-decoded (caller frees), or NULL when absent. */
char *http_query_get(const char *query, const char *name);
/* Every non-empty value of a repeated query parameter, percent-decoded, as a JSON array of
 * strings (new reference); values that do not decode are left out. */
json_t *http_query_all(const char *query, const char *name);
/* Docker's boolean query values: "1", "true", "True" are true; "", "0", "false" are false. */
bool http_query_bool(const char *query, const char *name, bool dflt);

/* Percent-decode src into a new string; NULL (with *err) on a bad escape or an encoded NUL. */
char *http_percent_decode(const char *src, size_t len, vs_error **err);

/* ---- request bodies: Content-Length or chunked, decoded incrementally */

typedef enum {
  HTTP_BODY_LENGTH,     /* Content-Length bytes of data */
  HTTP_BODY_CHUNK_SIZE, /* reading a chunk-size line */
  HTTP_BODY_CHUNK_DATA,
  HTTP_BODY_CHUNK_CRLF, /* the CRLF after a chunk's data */
  HTTP_BODY_TRAILER,    /* trailer lines up to the final blank line */
  HTTP_BODY_DONE,
} http_body_state;

typedef struct http_body {
  http_body_state state;
  uint64_t remaining; /* bytes left of the body (LENGTH) or of the current chunk */
  uint64_t total;     /* decoded bytes so far */
  uint64_t limit;     /* most decoded bytes accepted */
} http_body;

/* Start decoding the body of req, refusing more than limit decoded bytes. */
void http_body_init(http_body *b, const http_request *req, uint64_t limit);
/* Decode from in[0..len): *consumed gets the input bytes used; *data and *data_len (may be empty)
 * a slice of in that is body data. Call again with the rest while *consumed > 0. Returns 1 when
 * the body is complete, 0 when more input is needed, or the HTTP status to answer (400, 413)
 * with *err set. */
int http_body_decode(http_body *b, const char *in, size_t len, size_t *consumed, const char **data,
                     size_t *data_len, vs_error **err);

/* "OK", "Not Found", ... for a status code. */
const char *http_reason(int status);

#endif
