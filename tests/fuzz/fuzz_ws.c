/* Fuzz the web console's websocket reader: the input is a client's byte stream, fed in pieces
 * of the size the first byte picks, as its TLS records arrive. Whatever comes, the reader never
 * reads or consumes past what it was given, never hands out a message over its limit, and every
 * error carries a close code a server may send and a message. */
#include "daemon/ws.h"

#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1)
    return 0;
  size_t step = (size_t)data[0] + 1;
  data++;
  size--;
  ws_reader r;
  ws_reader_init(&r, 4096); /* a small limit, so that the fuzzer reaches it */
  size_t off = 0, avail = 0;
  for (int rounds = 0; rounds < 100000 && off < size; rounds++) {
    avail = avail + step > size - off ? size - off : avail + step;
    /* a copy of exactly what is available, so that ASan sees any read past it */
    uint8_t *in = malloc(avail ? avail : 1);
    memcpy(in, data + off, avail);
    size_t used = 0;
    ws_message m;
    uint16_t code = 0;
    vs_error *err = NULL;
    int res = ws_read(&r, in, avail, &used, &m, &code, &err);
    free(in);
    if (res < 0) {
      if (!err || !err->msg || (code != WS_CLOSE_PROTOCOL && code != WS_CLOSE_TOO_BIG))
        abort();
      vs_error_free(err);
      break;
    }
    if (used > avail)
      abort();
    if (res == 1) {
      if (m.len > r.limit || !m.data || m.data[m.len] != 0)
        abort();
      if (m.opcode == WS_OP_CLOSE) {
        int c = ws_close_code(m.data, m.len);
        if (c != -1 && (c < 1000 || c > 4999))
          abort();
      }
      free(m.data);
    }
    off += used;
    avail -= used;
    if (used == 0 && off + avail == size)
      break;
  }
  ws_reader_clear(&r);
  return 0;
}
