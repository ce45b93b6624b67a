/* RFC 6455 framing: see ws.h. */
#include "daemon/ws.h"

#include <errno.h>
#include <string.h>

void ws_reader_init(ws_reader *r, size_t limit) {
  memset(r, 0, sizeof(*r));
  r->limit = limit ? limit : WS_MAX_MESSAGE;
}

void ws_reader_clear(ws_reader *r) {
  free(r->frag);
  r->frag = NULL;
  r->frag_len = 0;
  r->frag_cap = 0;
  r->frag_opcode = 0;
}

static int fail(uint16_t *close_code, uint16_t code, vs_error **err, const char *msg) {
  *close_code = code;
  vs_error_set(err, EPROTO, "websocket: %s", msg);
  return -1;
}

static bool is_control(int op) { return op >= 0x8; }

static bool known_opcode(int op) {
  return op == WS_OP_CONT || op == WS_OP_TEXT || op == WS_OP_BINARY || op == WS_OP_CLOSE ||
         op == WS_OP_PING || op == WS_OP_PONG;
}

/* The frame's header: checked, its length in *hlen and payload length in *plen; 0 when more
 * input is needed, 1 when complete, -1 on a protocol error. */
static int parse_header(const ws_reader *r, const uint8_t *in, size_t len, size_t *hlen,
                        uint64_t *plen, uint16_t *close_code, vs_error **err) {
  if (len < 2)
    return 0;
  int op = in[0] & 0x0f;
  bool fin = in[0] & 0x80;
  if (in[0] & 0x70)
    return fail(close_code, WS_CLOSE_PROTOCOL, err, "reserved bits set (no extension agreed)");
  if (!known_opcode(op))
    return fail(close_code, WS_CLOSE_PROTOCOL, err, "unknown opcode");
  if (!(in[1] & 0x80))
    return fail(close_code, WS_CLOSE_PROTOCOL, err, "client frame not masked");
  if (is_control(op) && !fin)
    return fail(close_code, WS_CLOSE_PROTOCOL, err, "fragmented control frame");
  if (op == WS_OP_CONT && !r->frag_opcode)
    return fail(close_code, WS_CLOSE_PROTOCOL, err, "continuation without a message to continue");
  if ((op == WS_OP_TEXT || op == WS_OP_BINARY) && r->frag_opcode)
    return fail(close_code, WS_CLOSE_PROTOCOL, err, "new message inside a fragmented one");
  uint64_t n = in[1] & 0x7f;
  size_t h = 2;
  if (is_control(op) && n > 125)
    return fail(close_code, WS_CLOSE_PROTOCOL, err, "control frame longer than 125 bytes");
  if (n == 126) {
    if (len < 4)
      return 0;
    n = ((uint64_t)in[2] << 8) | in[3];
    h = 4;
  } else if (n == 127) {
    if (len < 10)
      return 0;
    if (in[2] & 0x80)
      return fail(close_code, WS_CLOSE_PROTOCOL, err, "length with its top bit set");
    n = 0;
    for (int i = 2; i < 10; i++)
      n = (n << 8) | in[i];
    h = 10;
  }
  if (n > r->limit || (op == WS_OP_CONT && n > r->limit - r->frag_len))
    return fail(close_code, WS_CLOSE_TOO_BIG, err, "message larger than 65536 bytes");
  *hlen = h + 4; /* the masking key */
  *plen = n;
  return len >= *hlen ? 1 : 0;
}

int ws_read(ws_reader *r, const uint8_t *in, size_t len, size_t *consumed, ws_message *msg,
            uint16_t *close_code, vs_error **err) {
  *consumed = 0;
  memset(msg, 0, sizeof(*msg));
  size_t hlen = 0;
  uint64_t plen = 0;
  int h = parse_header(r, in, len, &hlen, &plen, close_code, err);
  if (h <= 0)
    return h;
  if (len - hlen < plen)
    return 0;
  int op = in[0] & 0x0f;
  bool fin = in[0] & 0x80;
  const uint8_t *key = in + hlen - 4;
  size_t n = (size_t)plen;
  *consumed = hlen + n;
  if (op == WS_OP_CONT || (!fin && !is_control(op))) { /* a piece of a fragmented message */
    if (r->frag_len + n + 1 > r->frag_cap) {
      size_t cap = r->frag_cap ? r->frag_cap : 256;
      while (cap < r->frag_len + n + 1)
        cap *= 2;
      r->frag = vs_realloc(r->frag, cap);
      r->frag_cap = cap;
    }
    for (size_t i = 0; i < n; i++)
      r->frag[r->frag_len + i] = in[hlen + i] ^ key[i & 3];
    r->frag_len += n;
    r->frag[r->frag_len] = 0;
    if (op != WS_OP_CONT)
      r->frag_opcode = op;
    if (!fin)
      return 0;
    msg->opcode = r->frag_opcode;
    msg->data = r->frag;
    msg->len = r->frag_len;
    r->frag = NULL;
    r->frag_len = 0;
    r->frag_cap = 0;
    r->frag_opcode = 0;
    return 1;
  }
  msg->opcode = op;
  msg->data = vs_malloc0(n + 1);
  for (size_t i = 0; i < n; i++)
    msg->data[i] = in[hlen + i] ^ key[i & 3];
  msg->len = n;
  return 1;
}

size_t ws_frame_header(uint8_t hdr[10], int opcode, size_t len) {
  hdr[0] = (uint8_t)(0x80 | (opcode & 0x0f));
  if (len < 126) {
    hdr[1] = (uint8_t)len;
    return 2;
  }
  if (len <= 0xffff) {
    hdr[1] = 126;
    hdr[2] = (uint8_t)(len >> 8);
    hdr[3] = (uint8_t)len;
    return 4;
  }
  hdr[1] = 127;
  uint64_t v = len;
  for (int i = 9; i >= 2; i--) {
    hdr[i] = (uint8_t)v;
    v >>= 8;
  }
  return 10;
}

size_t ws_close_payload(uint8_t out[125], uint16_t code, const char *reason) {
  out[0] = (uint8_t)(code >> 8);
  out[1] = (uint8_t)code;
  size_t n = reason ? strlen(reason) : 0;
  if (n > 123)
    n = 123;
  for (size_t i = 0; i < n; i++) /* bytes of a frame, not a string */
    out[2 + i] = (uint8_t)reason[i];
  return 2 + n;
}

int ws_close_code(const uint8_t *payload, size_t len) {
  if (len == 0)
    return 1005;
  if (len == 1)
    return -1;
  int code = (payload[0] << 8) | payload[1];
  /* RFC 6455 7.4: codes a peer may put on the wire */
  bool ok = (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1011) ||
            (code >= 3000 && code <= 4999);
  return ok ? code : -1;
}
