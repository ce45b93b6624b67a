/* The web console's websocket framing (src/daemon/ws.c): client frames in, server frames out,
 * and hostile input ending in the right close code. */
#include "daemon/ws.h"
#include "tap.h"

#include <string.h>

/* A masked client frame of payload into out; its length. */
static size_t client_frame(uint8_t *out, int first_byte, const void *payload, size_t len) {
  static const uint8_t key[4] = {0x37, 0xfa, 0x21, 0x3d};
  size_t h = 0;
  out[h++] = (uint8_t)first_byte;
  if (len < 126) {
    out[h++] = (uint8_t)(0x80 | len);
  } else if (len <= 0xffff) {
    out[h++] = 0x80 | 126;
    out[h++] = (uint8_t)(len >> 8);
    out[h++] = (uint8_t)len;
  } else {
    out[h++] = 0x80 | 127;
    for (int i = 7; i >= 0; i--)
      out[h++] = (uint8_t)((uint64_t)len >> (8 * i));
  }
  memcpy(out + h, key, 4);
  h += 4;
  for (size_t i = 0; i < len; i++)
    out[h + i] = ((const uint8_t *)payload)[i] ^ key[i & 3];
  return h + len;
}

/* Feed in to a fresh reader: the result of the first ws_read that is not "need more". */
static int read_one(ws_reader *r, const uint8_t *in, size_t len, ws_message *m, uint16_t *code,
                    size_t *used) {
  vs_error *err = NULL;
  int res = ws_read(r, in, len, used, m, code, &err);
  if (res < 0)
    CHECK(err && err->msg && *err->msg);
  vs_error_free(err);
  return res;
}

TEST(binary_and_text_frames_unmasked) {
  ws_reader r;
  ws_reader_init(&r, 0);
  uint8_t buf[256];
  size_t n = client_frame(buf, 0x82, "ls -l\n", 6);
  ws_message m;
  uint16_t code = 0;
  size_t used;
  CHECK_EQ(read_one(&r, buf, n, &m, &code, &used), 1);
  CHECK_EQ(used, n);
  CHECK_EQ(m.opcode, WS_OP_BINARY);
  CHECK_EQ(m.len, 6);
  CHECK(!memcmp(m.data, "ls -l\n", 6));
  free(m.data);
  const char *json = "{\"type\":\"resize\",\"cols\":80,\"rows\":24}";
  n = client_frame(buf, 0x81, json, strlen(json));
  CHECK_EQ(read_one(&r, buf, n, &m, &code, &used), 1);
  CHECK_EQ(m.opcode, WS_OP_TEXT);
  CHECK_STREQ((char *)m.data, json);
  free(m.data);
  ws_reader_clear(&r);
}

TEST(partial_input_waits_and_extended_lengths) {
  ws_reader r;
  ws_reader_init(&r, 0);
  static uint8_t payload[70000], buf[70020];
  memset(payload, 'a', sizeof(payload));
  size_t n = client_frame(buf, 0x82, payload, 300); /* 16-bit length */
  ws_message m;
  uint16_t code = 0;
  size_t used;
  for (size_t cut = 0; cut < n; cut += 7) {
    CHECK_EQ(read_one(&r, buf, cut, &m, &code, &used), 0);
    CHECK_EQ(used, 0);
  }
  CHECK_EQ(read_one(&r, buf, n, &m, &code, &used), 1);
  CHECK_EQ(m.len, 300);
  free(m.data);
  /* 64-bit length within the limit when the limit is raised */
  ws_reader big;
  ws_reader_init(&big, 100000);
  n = client_frame(buf, 0x82, payload, sizeof(payload));
  CHECK_EQ(read_one(&big, buf, n, &m, &code, &used), 1);
  CHECK_EQ(m.len, sizeof(payload));
  free(m.data);
  ws_reader_clear(&big);
  ws_reader_clear(&r);
}

TEST(fragments_reassemble_with_control_frames_between) {
  ws_reader r;
  ws_reader_init(&r, 0);
  uint8_t buf[512];
  size_t n = client_frame(buf, 0x01, "{\"type\":", 8); /* text, not final */
  n += client_frame(buf + n, 0x89, "hi", 2);           /* ping in between */
  n += client_frame(buf + n, 0x80, "\"resize\"}", 9);  /* continuation, final */
  ws_message m;
  uint16_t code;
  size_t used, off = 0;
  CHECK_EQ(read_one(&r, buf, n, &m, &code, &used), 0); /* the first piece is kept */
  CHECK(used > 0);
  off += used;
  CHECK_EQ(read_one(&r, buf + off, n - off, &m, &code, &used), 1);
  CHECK_EQ(m.opcode, WS_OP_PING);
  CHECK_STREQ((char *)m.data, "hi");
  free(m.data);
  off += used;
  CHECK_EQ(read_one(&r, buf + off, n - off, &m, &code, &used), 1);
  CHECK_EQ(m.opcode, WS_OP_TEXT);
  CHECK_STREQ((char *)m.data, "{\"type\":\"resize\"}");
  free(m.data);
  CHECK_EQ(off + used, n);
  ws_reader_clear(&r);
}

/* A message of the most one-byte fragments the limit allows: reassembled whole, byte for byte
 * (the buffer grows by doubling, so this costs linear time, not a copy per fragment). */
TEST(many_tiny_fragments_reassemble) {
  ws_reader r;
  ws_reader_init(&r, 0);
  uint8_t frame[16];
  ws_message m;
  uint16_t code = 0;
  size_t used;
  for (size_t i = 0; i < WS_MAX_MESSAGE; i++) {
    uint8_t c = (uint8_t)('a' + i % 26);
    int first = i == 0 ? 0x02 : (i == WS_MAX_MESSAGE - 1 ? 0x80 : 0x00);
    size_t n = client_frame(frame, first, &c, 1);
    int res = read_one(&r, frame, n, &m, &code, &used);
    CHECK_EQ(used, n);
    if (i < WS_MAX_MESSAGE - 1 && res != 0) {
      CHECK_EQ(res, 0);
      break;
    }
  }
  CHECK_EQ(m.opcode, WS_OP_BINARY);
  CHECK_EQ(m.len, WS_MAX_MESSAGE);
  bool same = m.data != NULL;
  for (size_t i = 0; same && i < m.len; i++)
    same = m.data[i] == (uint8_t)('a' + i % 26);
  CHECK(same);
  free(m.data);
  ws_reader_clear(&r);
}

TEST(too_big_is_1009) {
  ws_reader r;
  ws_reader_init(&r, 0);
  uint8_t hdr[14] = {0x82, 0x80 | 127, 0, 0, 0, 0, 0, 1, 0, 1}; /* 65537 bytes announced */
  ws_message m;
  uint16_t code = 0;
  size_t used;
  CHECK_EQ(read_one(&r, hdr, sizeof(hdr), &m, &code, &used), -1);
  CHECK_EQ(code, WS_CLOSE_TOO_BIG);
  /* a fragmented message that grows past the limit */
  static uint8_t payload[40000], buf[40020];
  size_t n = client_frame(buf, 0x02, payload, sizeof(payload));
  CHECK_EQ(read_one(&r, buf, n, &m, &code, &used), 0);
  CHECK_EQ(used, n);
  n = client_frame(buf, 0x80, payload, sizeof(payload));
  CHECK_EQ(read_one(&r, buf, n, &m, &code, &used), -1);
  CHECK_EQ(code, WS_CLOSE_TOO_BIG);
  ws_reader_clear(&r);
}

TEST(garbage_is_1002) {
  static const uint8_t cases[][2] = {
      {0x82, 0x05}, /* not masked */
      {0xc2, 0x85}, /* RSV1 without an extension */
      {0x92, 0x85}, /* RSV3 */
      {0x83, 0x85}, /* reserved opcode 3 */
      {0x8b, 0x85}, /* reserved control opcode 0xB */
      {0x09, 0x80}, /* fragmented ping */
      {0x89, 0xfe}, /* ping longer than 125 bytes */
      {0x80, 0x85}, /* continuation of nothing */
  };
  for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
    ws_reader r;
    ws_reader_init(&r, 0);
    uint8_t buf[16] = {0};
    memcpy(buf, cases[i], 2);
    ws_message m;
    uint16_t code = 0;
    size_t used;
    CHECK_EQ(read_one(&r, buf, sizeof(buf), &m, &code, &used), -1);
    CHECK_EQ(code, WS_CLOSE_PROTOCOL);
    ws_reader_clear(&r);
  }
  /* a new message while a fragmented one is open */
  ws_reader r;
  ws_reader_init(&r, 0);
  uint8_t buf[64];
  size_t n = client_frame(buf, 0x02, "ab", 2);
  n += client_frame(buf + n, 0x82, "cd", 2);
  ws_message m;
  uint16_t code = 0;
  size_t used;
  CHECK_EQ(read_one(&r, buf, n, &m, &code, &used), 0);
  CHECK_EQ(read_one(&r, buf + used, n - used, &m, &code, &used), -1);
  CHECK_EQ(code, WS_CLOSE_PROTOCOL);
  ws_reader_clear(&r);
  /* a 64-bit length with its top bit set */
  uint8_t top[14] = {0x82, 0x80 | 127, 0x80};
  ws_reader_init(&r, 0);
  CHECK_EQ(read_one(&r, top, sizeof(top), &m, &code, &used), -1);
  CHECK_EQ(code, WS_CLOSE_PROTOCOL);
}

TEST(server_frames_and_close_payloads) {
  uint8_t hdr[10];
  CHECK_EQ(ws_frame_header(hdr, WS_OP_BINARY, 5), 2);
  CHECK_EQ(hdr[0], 0x82);
  CHECK_EQ(hdr[1], 5);
  CHECK_EQ(ws_frame_header(hdr, WS_OP_BINARY, 126), 4);
  CHECK_EQ(hdr[1], 126);
  CHECK_EQ(hdr[2] << 8 | hdr[3], 126);
  CHECK_EQ(ws_frame_header(hdr, WS_OP_TEXT, 70000), 10);
  CHECK_EQ(hdr[0], 0x81);
  CHECK_EQ(hdr[1], 127);
  CHECK_EQ(hdr[7] << 16 | hdr[8] << 8 | hdr[9], 70000);
  uint8_t p[125];
  char longreason[300];
  memset(longreason, 'r', sizeof(longreason) - 1);
  longreason[sizeof(longreason) - 1] = 0;
  CHECK_EQ(ws_close_payload(p, 1009, longreason), 125);
  CHECK_EQ(ws_close_code(p, 125), 1009);
  CHECK_EQ(ws_close_payload(p, 1000, NULL), 2);
  CHECK_EQ(ws_close_code(p, 2), 1000);
  CHECK_EQ(ws_close_code(p, 0), 1005);
  CHECK_EQ(ws_close_code(p, 1), -1);
  uint8_t bad[2] = {0x03, 0xed}; /* 1005 may not be sent */
  CHECK_EQ(ws_close_code(bad, 2), -1);
  uint8_t app[2] = {0x0f, 0xa0}; /* 4000: an application's */
  CHECK_EQ(ws_close_code(app, 2), 4000);
}

int main(void) { return tap_run(); }
