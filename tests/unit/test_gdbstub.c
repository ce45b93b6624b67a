/* The gdb stub's packet layer: framing, checksums, the interrupt byte, oversized packets, hex
 * parsing; and replies of the dispatcher on a small machine (through a socket pair). */
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tap.h"
#include "vm/gdbstub.h"
#include "vm/machine.h"

static gdb_rx_event feed(gdb_rx *rx, const char *bytes) {
  gdb_rx_event ev = GDB_RX_NONE;
  for (const char *p = bytes; *p; p++) {
    ev = gdb_rx_feed(rx, (uint8_t)*p);
    if (ev != GDB_RX_NONE && p[1])
      return GDB_RX_BAD; /* an event before the end of the input: not what the tests expect */
  }
  return ev;
}

TEST(rx_takes_a_packet_with_a_good_checksum) {
  gdb_rx rx;
  gdb_rx_init(&rx);
  CHECK_EQ(feed(&rx, "+$g#67"), GDB_RX_PACKET);
  CHECK_STREQ(rx.buf, "g");
  CHECK_EQ(feed(&rx, "$m80000000,4#57"), GDB_RX_BAD); /* wrong sum */
  CHECK_EQ(feed(&rx, "$#00"), GDB_RX_PACKET);
  CHECK_EQ(rx.len, 0);
}

TEST(rx_refuses_bad_checksum_digits_and_oversized_packets) {
  gdb_rx rx;
  gdb_rx_init(&rx);
  CHECK_EQ(feed(&rx, "$g#6z"), GDB_RX_BAD);
  CHECK_EQ(feed(&rx, "$g#x7"), GDB_RX_BAD);
  gdb_rx_event ev = GDB_RX_NONE;
  ev = gdb_rx_feed(&rx, '$');
  uint8_t sum = 0;
  for (unsigned i = 0; i < GDB_MAX_PACKET + 100; i++) {
    ev = gdb_rx_feed(&rx, 'a');
    sum = (uint8_t)(sum + 'a');
  }
  CHECK_EQ(ev, GDB_RX_NONE);
  CHECK(rx.len <= GDB_MAX_PACKET);
  char tail[4];
  snprintf(tail, sizeof(tail), "#%02x", sum);
  CHECK_EQ(feed(&rx, tail), GDB_RX_BAD); /* a right sum does not save an oversized packet */
}

TEST(rx_sees_the_interrupt_byte_between_packets_only) {
  gdb_rx rx;
  gdb_rx_init(&rx);
  CHECK_EQ(gdb_rx_feed(&rx, 0x03), GDB_RX_INTERRUPT);
  CHECK_EQ(gdb_rx_feed(&rx, '$'), GDB_RX_NONE);
  CHECK_EQ(gdb_rx_feed(&rx, 0x03), GDB_RX_NONE); /* data inside a packet */
}

TEST(hex_parsing_refuses_garbage_and_overflow) {
  uint64_t v;
  CHECK(gdb_parse_hex_u64("ffffffff80000000", 16, &v));
  CHECK_EQ(v, 0xffffffff80000000ull);
  CHECK(!gdb_parse_hex_u64("1ffffffff80000000", 17, &v));
  CHECK(!gdb_parse_hex_u64("12g4", 4, &v));
  CHECK(!gdb_parse_hex_u64("", 0, &v));
  uint8_t b[2];
  CHECK(gdb_hex_decode("beEF", 4, b));
  CHECK_EQ(b[0], 0xbe);
  CHECK_EQ(b[1], 0xef);
  CHECK(!gdb_hex_decode("abc", 3, b));
  CHECK(!gdb_hex_decode("a-", 2, b));
}

TEST(frame_escapes_and_checksums) {
  char out[32];
  size_t n = gdb_frame("OK", 2, out, sizeof(out));
  CHECK_EQ(n, 6);
  CHECK(memcmp(out, "$OK#9a", 6) == 0);
  n = gdb_frame("a#b", 3, out, sizeof(out));
  CHECK(n == 8 && memcmp(out,
                         "$a}\x03"
                         "b#",
                         6) == 0);
  CHECK_EQ(gdb_frame("0123456789", 10, out, 8), 0); /* too small: nothing */
}

/* A machine with a minimal kernel image, and a stub writing into one end of a socket pair. */
static vm *small_vm(void) {
  uint8_t img[4096] = {0};
  memcpy(img + 0x30, "RISCV\0\0\0", 8);
  memcpy(img + 0x38, "RSC\x05", 4);
  int fd = memfd_create("kernel", MFD_CLOEXEC);
  if (fd < 0 || write(fd, img, sizeof(img)) != (ssize_t)sizeof(img))
    return NULL;
  char path[64];
  snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
  vm_config cfg;
  vm_config_init(&cfg);
  cfg.kernel = path;
  cfg.mem_size = 4ull << 20;
  cfg.smp = 2;
  cfg.console_in = -1;
  cfg.console_out = -1;
  vs_error *err = NULL;
  vm *m = vm_create(&cfg, &err);
  vs_error_free(err);
  close(fd);
  return m;
}

static const char *ask(gdb_stub *s, int peer, const char *cmd, char *buf, size_t cap) {
  char pkt[256];
  uint8_t sum = 0;
  for (const char *p = cmd; *p; p++)
    sum = (uint8_t)(sum + (uint8_t)*p);
  int n = snprintf(pkt, sizeof(pkt), "$%s#%02x", cmd, sum);
  gdb_stub_input(s, (const uint8_t *)pkt, (size_t)n);
  ssize_t got = recv(peer, buf, cap - 1, MSG_DONTWAIT);
  buf[got > 0 ? got : 0] = '\0';
  /* "+$reply#cs": keep the reply */
  char *start = strchr(buf, '$'), *end = strrchr(buf, '#');
  if (!start || !end || end < start)
    return "";
  *end = '\0';
  return start + 1;
}

TEST(dispatcher_answers_on_a_machine) {
  vm *m = small_vm();
  CHECK(m != NULL);
  int sv[2];
  CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
  gdb_stub *s = gdb_stub_new(m, sv[0]);
  char buf[16384];
  CHECK_STREQ(ask(s, sv[1], "qfThreadInfo", buf, sizeof(buf)), "m1,2");
  CHECK_STREQ(ask(s, sv[1], "Hg2", buf, sizeof(buf)), "OK");
  CHECK_STREQ(ask(s, sv[1], "P1=0100000000000000", buf, sizeof(buf)), "OK");
  CHECK_EQ(m->harts[1].x[1], 1);
  CHECK_EQ(m->harts[0].x[1], 0);
  CHECK_STREQ(ask(s, sv[1], "P0=0100000000000000", buf, sizeof(buf)), "OK");
  CHECK_EQ(m->harts[1].x[0], 0); /* x0 stays zero */
  CHECK_STREQ(ask(s, sv[1], "Hg3", buf, sizeof(buf)), "E01");
  CHECK_STREQ(ask(s, sv[1], "M80100000,4:deadbeef", buf, sizeof(buf)), "OK");
  CHECK_STREQ(ask(s, sv[1], "m80100000,4", buf, sizeof(buf)), "deadbeef");
  CHECK_STREQ(ask(s, sv[1], "m1000,4", buf, sizeof(buf)), "E14");
  CHECK_STREQ(ask(s, sv[1], "M1000,1:00", buf, sizeof(buf)), "E14");
  CHECK_STREQ(ask(s, sv[1], "M80100000,2:00", buf, sizeof(buf)), "E01"); /* short data */
  CHECK_STREQ(ask(s, sv[1], "Z0,80000000,4", buf, sizeof(buf)), "OK");
  CHECK_EQ(m->bus.breakpoints->n, 1);
  CHECK_STREQ(ask(s, sv[1], "z0,80000000,4", buf, sizeof(buf)), "OK");
  CHECK_EQ(m->bus.breakpoints->n, 0);
  CHECK_STREQ(ask(s, sv[1], "Z0,zz,4", buf, sizeof(buf)), "E01");
  CHECK_STREQ(ask(s, sv[1], "vCont;x", buf, sizeof(buf)), "E01");
  CHECK_STREQ(ask(s, sv[1], "vCont;s:9", buf, sizeof(buf)), "E01");
  gdb_stub_free(s);
  close(sv[0]);
  close(sv[1]);
  vm_destroy(m);
}

int main(void) { return tap_run(); }
