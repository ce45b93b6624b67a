/* The gdb stub's packet layer (private to vm; shared with its unit test and fuzz harness).
 *
 * Framing of the GDB remote serial protocol: "$data#cs" with a two-digit hex checksum, '+'/'-'
 * acknowledgements and the out-of-band interrupt byte 0x03. Every byte comes from a socket:
 * a packet longer than GDB_MAX_PACKET is dropped whole (reported as bad), never written past
 * the buffer. */
#ifndef VESSEL_VM_GDBSTUB_H
#define VESSEL_VM_GDBSTUB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vm/vm.h"

/* The largest packet either side sends (qSupported's PacketSize, in hex) */
#define GDB_MAX_PACKET 4096

typedef enum {
  GDB_RX_NONE,      /* nothing complete yet */
  GDB_RX_PACKET,    /* a packet with a good checksum: rx.buf[0..len) */
  GDB_RX_BAD,       /* a packet with a bad checksum or too long: answer '-' */
  GDB_RX_INTERRUPT, /* 0x03 outside a packet */
} gdb_rx_event;

typedef struct gdb_rx {
  enum { GDB_RX_IDLE, GDB_RX_DATA, GDB_RX_SUM1, GDB_RX_SUM2 } state;
  bool overflow;
  uint8_t sum;  /* of the data so far */
  uint8_t want; /* the checksum the sender gave */
  size_t len;
  char buf[GDB_MAX_PACKET + 1]; /* NUL-terminated when a packet is complete */
} gdb_rx;

void gdb_rx_init(gdb_rx *rx);
/* Feed one byte from the socket. */
gdb_rx_event gdb_rx_feed(gdb_rx *rx, uint8_t byte);

/* Hex helpers: false on a character that is not a hex digit or a value that overflows. */
bool gdb_parse_hex_u64(const char *s, size_t len, uint64_t *out);
/* Decode len hex digits (even) into out (len / 2 bytes). */
bool gdb_hex_decode(const char *s, size_t len, uint8_t *out);
/* Frame `data` as a packet "$...#cs" into out (escaping $ # } *); returns the length, or 0 when
 * out (cap bytes) is too small. */
size_t gdb_frame(const char *data, size_t len, char *out, size_t cap);

/* The stub of a machine, without a socket (tests, fuzzing): replies go to out_fd. */
typedef struct gdb_stub gdb_stub;
gdb_stub *gdb_stub_new(vm *m, int out_fd);
/* Bytes from the debugger: packets are answered at once. */
void gdb_stub_input(gdb_stub *s, const uint8_t *data, size_t len);
void gdb_stub_free(gdb_stub *s);

#endif
