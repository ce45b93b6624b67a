/* RFC 6455 websocket framing for the web console (private to src/daemon, its unit tests and fuzz
 * harness).
 *
 * Like http.h this is pure: it works on bytes the caller buffered and never does I/O. Frames come
 * from a browser and are treated as hostile: a client frame must be masked, reserved bits must be
 * clear, opcodes must be known, control frames short and whole, and a message (all its fragments)
 * is bounded; anything else ends in the close code to send and a message naming the problem.
 */
#ifndef VESSEL_DAEMON_WS_H
#define VESSEL_DAEMON_WS_H

#include "base/base.h"

#include <stddef.h>
#include <stdint.h>

#define WS_MAX_MESSAGE ((size_t)64 * 1024) /* one frame or one fragmented message */

enum {
  WS_OP_CONT = 0x0,
  WS_OP_TEXT = 0x1,
  WS_OP_BINARY = 0x2,
  WS_OP_CLOSE = 0x8,
  WS_OP_PING = 0x9,
  WS_OP_PONG = 0xA,
};

enum {
  WS_CLOSE_NORMAL = 1000,
  WS_CLOSE_GOING_AWAY = 1001,
  WS_CLOSE_PROTOCOL = 1002,
  WS_CLOSE_BAD_DATA = 1007,
  WS_CLOSE_POLICY = 1008,
  WS_CLOSE_TOO_BIG = 1009,
};

/* Reassembles a client's messages frame by frame. */
typedef struct ws_reader {
  size_t limit;  /* most bytes of one message (WS_MAX_MESSAGE unless set) */
  uint8_t *frag; /* a fragmented message so far */
  size_t frag_len;
  size_t frag_cap; /* grown by doubling: a message of many tiny fragments costs linear time */
  int frag_opcode; /* WS_OP_TEXT or WS_OP_BINARY while a fragmented message is open, else 0 */
} ws_reader;

typedef struct ws_message {
  int opcode;    /* TEXT, BINARY (whole messages), CLOSE, PING, PONG */
  uint8_t *data; /* unmasked payload, NUL-terminated; the caller frees */
  size_t len;
} ws_message;

void ws_reader_init(ws_reader *r, size_t limit);
void ws_reader_clear(ws_reader *r);

/* Take what in[0..len) holds: *consumed gets the bytes used (call again with the rest while it
 * is > 0). Returns 1 with *msg filled when a message or control frame is complete, 0 when more
 * input is needed, or -1 with *close_code (1002, 1009) and *err naming the problem. */
int ws_read(ws_reader *r, const uint8_t *in, size_t len, size_t *consumed, ws_message *msg,
            uint16_t *close_code, vs_error **err);

/* The header of a server frame (unmasked, FIN set) carrying len bytes: its length (2..10). */
size_t ws_frame_header(uint8_t hdr[10], int opcode, size_t len);

/* A close frame's payload: code, then reason (truncated to fit a control frame); its length. */
size_t ws_close_payload(uint8_t out[125], uint16_t code, const char *reason);

/* A close frame's code from its payload: 1005 (none) for an empty payload, or -1 when the
 * payload is one byte or the code is not one a peer may send. */
int ws_close_code(const uint8_t *payload, size_t len);

#endif
