/* vesseld's HTTP/1.1 request parser: heads, queries, bodies, and hostile input. */
#include "daemon/http.h"
#include "tap.h"

static int parse(const char *text, http_request *req) {
  vs_error *err = NULL;
  size_t len = http_head_length(text, strlen(text));
  if (len == 0)
    return -1;
  int r = http_parse_head(text, len, req, &err);
  if (r)
    CHECK(err && err->msg && *err->msg);
  vs_error_free(err);
  return r;
}

TEST(head_parses_docker_cli_request) {
  http_request req;
  CHECK_EQ(parse("GET /v1.41/containers/json?all=1&filters=%7B%7D HTTP/1.1\r\nHost: api\r\n"
                 "User-Agent: Docker-Client/28.2.2 (linux)\r\n\r\n",
                 &req),
           0);
  CHECK_STREQ(req.method, "GET");
  CHECK_STREQ(req.path, "/v1.41/containers/json");
  CHECK_STREQ(req.query, "all=1&filters=%7B%7D");
  CHECK(req.keep_alive);
  CHECK(!req.chunked && !req.has_length);
  CHECK_STREQ(http_header_get(&req, "user-agent"), "Docker-Client/28.2.2 (linux)");
  char *f = http_query_get(req.query, "filters");
  CHECK_STREQ(f, "{}");
  free(f);
  CHECK(http_query_bool(req.query, "all", false));
  CHECK(!http_query_bool(req.query, "follow", false));
  http_request_clear(&req);
}

TEST(head_connection_and_upgrade) {
  http_request req;
  CHECK_EQ(parse("POST /containers/x/attach HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\n"
                 "Upgrade: tcp\r\nContent-Length: 0\r\n\r\n",
                 &req),
           0);
  CHECK(req.upgrade_tcp);
  CHECK(req.has_length && req.content_length == 0);
  http_request_clear(&req);
  CHECK_EQ(parse("GET / HTTP/1.0\r\n\r\n", &req), 0);
  CHECK(!req.keep_alive);
  http_request_clear(&req);
  CHECK_EQ(parse("GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, close\r\n\r\n", &req), 0);
  CHECK(!req.keep_alive);
  http_request_clear(&req);
}

TEST(head_refuses_malformed_input) {
  static const struct {
    const char *text;
    int status;
  } cases[] = {
      {"GARBAGE\r\n\r\n", 400},
      {"GET  HTTP/1.1\r\nHost: a\r\n\r\n", 400},
      {"GET /x HTTP/2.0\r\nHost: a\r\n\r\n", 505},
      {"GET /x HTTP/1.1 extra\r\nHost: a\r\n\r\n", 400},
      {"GET x HTTP/1.1\r\nHost: a\r\n\r\n", 400},
      {"GET /x HTTP/1.1\r\n\r\n", 400}, /* no Host */
      {"GET /x HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n", 400},
      {"GET /x HTTP/1.1\r\nHost: a\r\nBad Name: v\r\n\r\n", 400},
      {"GET /x HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n", 400},
      {"GET /x HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400},
      {"GET /x HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400},
      {"GET /x HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999\r\n\r\n", 413},
      {"GET /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 501},
      {"GET /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
       400},
      {"GET /a%00b HTTP/1.1\r\nHost: a\r\n\r\n", 400},
      {"GET /a%zz HTTP/1.1\r\nHost: a\r\n\r\n", 400},
      {"GET /a\x01 HTTP/1.1\r\nHost: a\r\n\r\n", 400},
      {"GET /x HTTP/1.1\nHost: a\r\n\r\n", 400}, /* bare LF */
  };
  for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
    http_request req;
    int r = parse(cases[i].text, &req);
    if (r != cases[i].status)
      printf("# case %zu: got %d, expected %d\n", i, r, cases[i].status);
    CHECK_EQ(r, cases[i].status);
    http_request_clear(&req);
  }
}

TEST(head_size_and_header_count_are_bounded) {
  size_t n = HTTP_MAX_HEAD_BYTES + 100;
  char *big = malloc(n + 1);
  memcpy(big, "GET / HTTP/1.1\r\nHost: a\r\nX: ", 28);
  memset(big + 28, 'a', n - 28 - 4);
  memcpy(big + n - 4, "\r\n\r\n", 5);
  http_request req;
  vs_error *err = NULL;
  CHECK_EQ(http_parse_head(big, n, &req, &err), 431);
  CHECK_CONTAINS(err->msg, "larger than");
  vs_error_free(err);
  http_request_clear(&req);
  free(big);
  char *many = vs_strdup("GET / HTTP/1.1\r\nHost: a\r\n");
  for (int i = 0; i < HTTP_MAX_HEADERS + 1; i++) {
    char *m = vs_asprintf("%sX-%d: v\r\n", many, i);
    free(many);
    many = m;
  }
  char *m = vs_asprintf("%s\r\n", many);
  CHECK_EQ(parse(m, &req), 431);
  http_request_clear(&req);
  free(many);
  free(m);
}

/* Decode body text fed `step` bytes at a time; returns the final status (1 = complete). */
static int decode(const char *head, const char *body, size_t step, uint64_t limit, char *out) {
  http_request req;
  CHECK_EQ(parse(head, &req), 0);
  http_body b;
  http_body_init(&b, &req, limit);
  size_t len = strlen(body), off = 0, avail = 0, o = 0;
  int r = 0;
  for (int guard = 0; guard < 10000; guard++) {
    avail = avail + step > len - off ? len - off : avail + step;
    size_t used, dlen;
    const char *d;
    vs_error *err = NULL;
    r = http_body_decode(&b, body + off, avail, &used, &d, &dlen, &err);
    vs_error_free(err);
    if (r > 1)
      break;
    if (dlen)
      memcpy(out + o, d, dlen);
    o += dlen;
    off += used;
    avail -= used;
    if (r == 1 || (used == 0 && off + avail == len))
      break;
  }
  out[o] = 0;
  http_request_clear(&req);
  return r;
}

TEST(body_chunked_in_any_pieces) {
  static const char head[] = "POST /images/load HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: "
                             "chunked\r\n\r\n";
  static const char body[] = "5\r\nhello\r\n1;name=v\r\n \r\nA\r\n0123456789\r\n0\r\n"
                             "X-Trailer: yes\r\n\r\n";
  for (size_t step = 1; step < sizeof(body); step++) {
    char out[64];
    CHECK_EQ(decode(head, body, step, 100, out), 1);
    CHECK_STREQ(out, "hello 0123456789");
  }
}

TEST(body_content_length) {
  char out[64];
  CHECK_EQ(
      decode("POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n", "abcdeEXTRA", 3, 100, out),
      1);
  CHECK_STREQ(out, "abcde");
}

TEST(body_limits_and_malformed_chunks) {
  char out[256];
  static const char ch[] = "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
  CHECK_EQ(decode("POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 50\r\n\r\n", "x", 1, 10, out),
           413);
  CHECK_EQ(decode(ch, "8\r\n12345678\r\n8\r\n12345678\r\n0\r\n\r\n", 4, 10, out), 413);
  CHECK_EQ(decode(ch, "zz\r\nab\r\n", 4, 100, out), 400);
  CHECK_EQ(decode(ch, "2\r\nabX\r\n", 4, 100, out), 400);
  CHECK_EQ(decode(ch, "\r\n", 4, 100, out), 400);
  CHECK_EQ(decode(ch, "fffffffffffffffffff\r\n", 4, 100, out), 413);
  /* a chunk-size line without end is refused once it passes the line limit */
  char longline[HTTP_MAX_CHUNK_LINE + 8];
  memset(longline, '1', sizeof(longline) - 1);
  longline[sizeof(longline) - 1] = 0;
  CHECK_EQ(decode(ch, longline, 64, 100, out), 400);
}

TEST(percent_decode) {
  vs_error *err = NULL;
  char *s = http_percent_decode("a%20b+c%2F", 10, &err);
  CHECK_STREQ(s, "a b c/");
  free(s);
  CHECK(http_percent_decode("%4", 2, &err) == NULL);
  CHECK(err != NULL);
  vs_error_free(err);
}

int main(void) { return tap_run(); }
