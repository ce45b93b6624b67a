/* Fuzz vesseld's HTTP/1.1 request parser: the head, query lookups and the body decoder fed the
 * rest of the input in pieces of every size the first byte picks, as a client's writes arrive. */
#include "daemon/http.h"

#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void decode_body(const http_request *req, const char *in, size_t len, size_t step) {
  http_body b;
  http_body_init(&b, req, 1 << 20);
  size_t off = 0, avail = 0, decoded = 0;
  for (int rounds = 0; rounds < 100000; rounds++) {
    avail = avail + step > len - off ? len - off : avail + step;
    size_t used;
    const char *d;
    size_t dlen;
    vs_error *err = NULL;
    int r = http_body_decode(&b, in + off, avail, &used, &d, &dlen, &err);
    if (r > 1) {
      if (!err || !err->msg)
        abort(); /* an error status always comes with a message */
      vs_error_free(err);
      return;
    }
    if (used > avail || (dlen && (d < in + off || d + dlen > in + off + avail)))
      abort(); /* never consumes or points past what it was given */
    decoded += dlen;
    if (decoded > b.limit)
      abort();
    off += used;
    avail -= used;
    if (r == 1 || (used == 0 && off + avail == len))
      return;
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1)
    return 0;
  size_t step = (size_t)data[0] % 17 + 1;
  const char *in = (const char *)data + 1;
  size_t len = size - 1;
  size_t head = http_head_length(in, len);
  if (head == 0)
    return 0;
  http_request req;
  vs_error *err = NULL;
  int r = http_parse_head(in, head, &req, &err);
  if (r) {
    if (!err || !err->msg || r < 400 || r > 599)
      abort();
    vs_error_free(err);
  } else {
    if (!req.method || !req.path || !req.query || req.path[0] != '/')
      abort();
    free(http_query_get(req.query, "all"));
    (void)http_query_bool(req.query, "follow", false);
    (void)http_header_get(&req, "Host");
    decode_body(&req, in + head, len - head, step);
  }
  http_request_clear(&req);
  return 0;
}
