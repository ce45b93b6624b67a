/* The gdb stub: the GDB remote serial protocol on a TCP socket (docs/debugging.md).
 *
 * One debugger at a time. The stub is an I/O source of the run loop, like the control socket:
 * packets are served on the I/O thread, with the big lock held. gdb's all-stop model maps onto
 * the machine's pause: while the debugger looks, the VM is paused (every hart parked at an
 * instruction boundary, the guest clock standing); continuing resumes it. Single steps run one
 * instruction of the chosen hart on this thread while the others stay parked.
 *
 * Breakpoints are a list of addresses the harts check before each instruction (rv_breakpoints):
 * guest memory is never patched, so the translator's code, the guest's checksums and snapshots
 * see nothing. With breakpoints set the harts run an instruction at a time, which is slow but
 * exact on both engines. A hart that reaches one stops there and flags it; the stub looks for
 * flags every millisecond while the VM runs and then stops the world.
 *
 * Everything the debugger sends is untrusted: lengths are checked against the buffers, bad hex
 * is an error reply, memory goes through the hart's page tables without side effects and only
 * reaches RAM.
 *
 * QEMU's physical memory mode (`maintenance packet Qqemu.PhyMemMode:1`) is offered as QEMU's
 * users know it: for the rest of the connection m, M and X take guest physical addresses, and
 * so do the watchpoints set meanwhile (in QEMU they stay virtual): such a watchpoint triggers
 * on any hart's access to that physical address, through whatever mapping.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "vm/gdbstub.h"
#include "vm/machine.h"

/* How often a running VM with breakpoints is looked at for a hart that reached one */
#define GDB_BREAKPOINT_POLL_NS 1000000
#define GDB_SEND_TIMEOUT_MS 5000
/* Register numbers as gdb's RISC-V target numbers them (gdb/riscv-tdep.h) */
#define GDB_REG_PC 32
#define GDB_REG_F0 33
#define GDB_REG_CSR0 65
#define GDB_REG_PRIV (GDB_REG_CSR0 + 4096)
#define GDB_CSR_FFLAGS 0x001
#define GDB_CSR_FRM 0x002
#define GDB_CSR_FCSR 0x003
/* the largest m reply (hex) and M/X write (whose data must fit in a packet) gdb sends when it
 * divides PacketSize itself */
#define GDB_MAX_READ (GDB_MAX_PACKET / 2)
#define GDB_MAX_WRITE GDB_MAX_PACKET
#define GDB_SIGINT 2
#define GDB_SIGTRAP 5

struct gdb_stub {
  vm *m;
  int listen_fd; /* -1 without a socket */
  int listen_idx;
  int fd; /* the debugger, -1 when none is connected */
  int fd_idx;
  bool own_fd; /* close fd when the debugger goes */
  gdb_rx rx;
  bool no_ack;
  bool running;       /* the debugger let the VM run and waits for a stop reply */
  int g_hart, c_hart; /* Hg / Hc selection: hart index, -1 = any */
  int only_hart;      /* the hart that alone runs (vCont;c:N), -1 = all */
  unsigned stop_hart; /* the hart the last stop reply named */
  bool phys_mode;     /* Qqemu.PhyMemMode:1: memory and new watchpoints by physical address */
  rv_breakpoints bp;
  char *target_xml;
  size_t target_xml_len;
  char reply[GDB_MAX_PACKET + 1];
  size_t reply_len;
  char frame[2 * GDB_MAX_PACKET + 8];
};

/* ------------------------------------------------------------------ packet layer */

void gdb_rx_init(gdb_rx *rx) { memset(rx, 0, sizeof(*rx)); }

gdb_rx_event gdb_rx_feed(gdb_rx *rx, uint8_t byte) {
  switch (rx->state) {
  case GDB_RX_IDLE:
    if (byte == '$') {
      rx->state = GDB_RX_DATA;
      rx->len = 0;
      rx->sum = 0;
      rx->overflow = false;
    } else if (byte == 0x03) {
      return GDB_RX_INTERRUPT;
    }
    return GDB_RX_NONE; /* acks and noise between packets */
  case GDB_RX_DATA:
    if (byte == '#') {
      rx->state = GDB_RX_SUM1;
      return GDB_RX_NONE;
    }
    rx->sum = (uint8_t)(rx->sum + byte);
    if (rx->len < GDB_MAX_PACKET)
      rx->buf[rx->len++] = (char)byte;
    else
      rx->overflow = true;
    return GDB_RX_NONE;
  case GDB_RX_SUM1: {
    int d = vs_hex_digit(byte);
    rx->want = (uint8_t)((d < 0 ? 0 : d) << 4);
    rx->overflow |= d < 0;
    rx->state = GDB_RX_SUM2;
    return GDB_RX_NONE;
  }
  case GDB_RX_SUM2: {
    int d = vs_hex_digit(byte);
    rx->state = GDB_RX_IDLE;
    if (d < 0 || rx->overflow || (uint8_t)(rx->want | d) != rx->sum)
      return GDB_RX_BAD;
    rx->buf[rx->len] = '\0';
    return GDB_RX_PACKET;
  }
  }
  rx->state = GDB_RX_IDLE;
  return GDB_RX_NONE;
}

bool gdb_parse_hex_u64(const char *s, size_t len, uint64_t *out) {
  if (len == 0 || len > 16)
    return false;
  uint64_t v = 0;
  for (size_t i = 0; i < len; i++) {
    int d = vs_hex_digit((unsigned char)s[i]);
    if (d < 0)
      return false;
    v = (v << 4) | (uint64_t)d;
  }
  *out = v;
  return true;
}

bool gdb_hex_decode(const char *s, size_t len, uint8_t *out) {
  if (len % 2)
    return false;
  for (size_t i = 0; i < len; i += 2) {
    int hi = vs_hex_digit((unsigned char)s[i]), lo = vs_hex_digit((unsigned char)s[i + 1]);
    if (hi < 0 || lo < 0)
      return false;
    out[i / 2] = (uint8_t)(hi << 4 | lo);
  }
  return true;
}

size_t gdb_frame(const char *data, size_t len, char *out, size_t cap) {
  static const char hex[] = "0123456789abcdef";
  size_t n = 0;
  uint8_t sum = 0;
  if (cap < 4)
    return 0;
  out[n++] = '$';
  for (size_t i = 0; i < len; i++) {
    char c = data[i];
    bool escape = c == '$' || c == '#' || c == '}' || c == '*';
    if (n + (escape ? 2 : 1) + 3 > cap)
      return 0;
    if (escape) {
      out[n++] = '}';
      sum = (uint8_t)(sum + '}');
      c = (char)(c ^ 0x20);
    }
    out[n++] = c;
    sum = (uint8_t)(sum + (uint8_t)c);
  }
  out[n++] = '#';
  out[n++] = hex[sum >> 4];
  out[n++] = hex[sum & 15];
  return n;
}

/* ------------------------------------------------------------------ output */

static void stub_disconnect(gdb_stub *s);

static void send_raw(gdb_stub *s, const char *buf, size_t len) {
  size_t done = 0;
  while (s->fd >= 0 && done < len) {
    ssize_t n = send(s->fd, buf + done, len - done, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && errno == ENOTSOCK)
      n = write(s->fd, buf + done, len - done); /* tests and fuzzing write to a plain fd */
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      struct pollfd p = {.fd = s->fd, .events = POLLOUT};
      if (poll(&p, 1, GDB_SEND_TIMEOUT_MS) > 0)
        continue;
    }
    if (n <= 0) {
      stub_disconnect(s); /* the debugger went away or stopped reading */
      return;
    }
    done += (size_t)n;
  }
}

static void reply_reset(gdb_stub *s) { s->reply_len = 0; }

static void reply_add(gdb_stub *s, const char *data, size_t len) {
  if (len > GDB_MAX_PACKET - s->reply_len)
    len = GDB_MAX_PACKET - s->reply_len; /* callers size their replies; never past the buffer */
  memcpy(s->reply + s->reply_len, data, len);
  s->reply_len += len;
}

static void reply_str(gdb_stub *s, const char *str) { reply_add(s, str, strlen(str)); }

static void reply_hex_bytes(gdb_stub *s, const uint8_t *b, size_t n) {
  static const char hex[] = "0123456789abcdef";
  for (size_t i = 0; i < n; i++) {
    char two[2] = {hex[b[i] >> 4], hex[b[i] & 15]};
    reply_add(s, two, 2);
  }
}

/* A register value as gdb wants it: target byte order (little endian), `bytes` long. */
static void reply_reg(gdb_stub *s, uint64_t v, unsigned bytes) {
  uint8_t b[8];
  for (unsigned i = 0; i < 8; i++)
    b[i] = (uint8_t)(v >> (8 * i));
  reply_hex_bytes(s, b, bytes);
}

static void send_reply(gdb_stub *s) {
  size_t n = gdb_frame(s->reply, s->reply_len, s->frame, sizeof(s->frame));
  if (n)
    send_raw(s, s->frame, n);
}

static void send_str(gdb_stub *s, const char *str) {
  reply_reset(s);
  reply_str(s, str);
  send_reply(s);
}

/* ------------------------------------------------------------------ harts, stops, resumes */

static unsigned thread_of(unsigned hart) { return hart + 1; }

/* gdb's thread id: -1 all, 0 any, else hart + 1. *hart = -1 for all/any. */
static bool parse_thread(const gdb_stub *s, const char *p, size_t len, int *hart) {
  if (len == 2 && p[0] == '-' && p[1] == '1') {
    *hart = -1;
    return true;
  }
  uint64_t t;
  if (!gdb_parse_hex_u64(p, len, &t) || t > s->m->nharts)
    return false;
  *hart = t == 0 ? -1 : (int)t - 1;
  return true;
}

static unsigned selected_hart(const gdb_stub *s, int sel) {
  return sel >= 0 && (unsigned)sel < s->m->nharts ? (unsigned)sel : s->stop_hart;
}

/* "watch:ADDR;" (rwatch, awatch) when hart h stopped after an access a watchpoint caught, as
 * the remote protocol's stop reply names it; else "". */
static void watch_stop_reason(const gdb_stub *s, unsigned h, char *buf, size_t size) {
  buf[0] = '\0';
  if (h >= s->m->nharts)
    return;
  const rv_hart *hart = &s->m->harts[h];
  if (!__atomic_load_n(&hart->breakpoint_hit, __ATOMIC_ACQUIRE) || !hart->watch_hit)
    return;
  const char *name = hart->watch_hit == RV_WATCH_WRITE  ? "watch"
                     : hart->watch_hit == RV_WATCH_READ ? "rwatch"
                                                        : "awatch";
  snprintf(buf, size, "%s:%llx;", name, (unsigned long long)hart->watch_addr);
}

static void send_stop_reply(gdb_stub *s, int sig) {
  char watch[48], buf[96];
  watch_stop_reason(s, s->stop_hart, watch, sizeof(watch));
  snprintf(buf, sizeof(buf), "T%02x%sthread:%x;", sig, watch, thread_of(s->stop_hart));
  send_str(s, buf);
}

/* The hart that reached a breakpoint, or -1. */
static int hart_at_breakpoint(const gdb_stub *s) {
  for (unsigned h = 0; h < s->m->nharts; h++)
    if (__atomic_load_n(&s->m->harts[h].breakpoint_hit, __ATOMIC_ACQUIRE))
      return (int)h;
  return -1;
}

static void release_held_harts(gdb_stub *s);

/* All-stop: park every hart (and remember which one stopped). */
static void halt_vm(gdb_stub *s) {
  vm_pause(s->m);
  release_held_harts(s);
  s->running = false;
  int h = hart_at_breakpoint(s);
  if (h >= 0)
    s->stop_hart = (unsigned)h;
  else if (s->only_hart >= 0 && (unsigned)s->only_hart < s->m->nharts)
    s->stop_hart = (unsigned)s->only_hart; /* the one hart that ran */
  else if (s->c_hart >= 0 && (unsigned)s->c_hart < s->m->nharts)
    s->stop_hart = (unsigned)s->c_hart;
  s->g_hart = (int)s->stop_hart;
}

/* Stop and tell the debugger why. */
static void stop_vm(gdb_stub *s, int sig) {
  halt_vm(s);
  send_stop_reply(s, sig);
}

/* Let the VM run: every hart, or only hart `only` (>= 0) while the others stay held (gdb steps
 * one thread over a breakpoint that way: RISC-V gdb single-steps with breakpoints). */
static void resume_vm(gdb_stub *s, int only) {
  vm *m = s->m;
  for (unsigned h = 0; h < m->nharts; h++) {
    __atomic_store_n(&m->harts[h].breakpoint_hit, false, __ATOMIC_RELEASE);
    __atomic_store_n(&m->hart_held[h], only >= 0 && (unsigned)only != h, __ATOMIC_RELEASE);
  }
  s->only_hart = only;
  s->running = true;
  vm_resume(m);
}

/* No hart is held any more: those that were wake up. */
static void release_held_harts(gdb_stub *s) {
  vm *m = s->m;
  for (unsigned h = 0; h < m->nharts; h++)
    if (__atomic_exchange_n(&m->hart_held[h], false, __ATOMIC_ACQ_REL))
      vm_wake_hart(m, h);
}

/* One instruction of one hart while the others stay parked (the VM is paused). On a replay of
 * several harts the others cannot be held (the log says who runs when): the interleaving runs
 * on until the hart has executed one instruction, and a breakpoint another hart reaches first
 * is where it stops. */
static void step_hart(gdb_stub *s, unsigned h) {
  vm *m = s->m;
  vm_pause(m);
  if (vm_hsm_state(m, h) == HSM_STARTED) {
    rv_hart *hart = &m->harts[h];
    /* a watchpoint the step's access triggers is reported with the step's stop */
    __atomic_store_n(&hart->breakpoint_hit, false, __ATOMIC_RELEASE);
    if (vm_rr_replaying(m))
      h = vm_rr_step(m, h); /* the log's records due first, as the replay would */
    else
      rv_hart_step(hart);
    if (m->htif_enabled)
      vm_poll_htif(m, hart);
  }
  s->stop_hart = h;
  s->g_hart = (int)h;
  send_stop_reply(s, GDB_SIGTRAP);
}

/* ------------------------------------------------------------------ registers */

static bool csr_read(const rv_hart *h, unsigned csr, uint64_t *v) {
  switch (csr) {
  case GDB_CSR_FFLAGS:
    *v = h->fflags;
    return true;
  case GDB_CSR_FRM:
    *v = h->frm;
    return true;
  case GDB_CSR_FCSR:
    *v = h->frm << 5 | h->fflags;
    return true;
  case 0x105:
    *v = h->stvec;
    return true;
  case 0x140:
    *v = h->sscratch;
    return true;
  case 0x141:
    *v = h->sepc;
    return true;
  case 0x142:
    *v = h->scause;
    return true;
  case 0x143:
    *v = h->stval;
    return true;
  case 0x180:
    *v = h->satp;
    return true;
  case 0x300:
    *v = h->mstatus;
    return true;
  case 0x301:
    *v = h->misa;
    return true;
  case 0x305:
    *v = h->mtvec;
    return true;
  case 0x341:
    *v = h->mepc;
    return true;
  case 0x342:
    *v = h->mcause;
    return true;
  case 0x343:
    *v = h->mtval;
    return true;
  case 0xb02:
    *v = h->minstret;
    return true;
  case 0xf14:
    *v = h->mhartid;
    return true;
  }
  return false;
}

static const struct {
  const char *name;
  unsigned csr;
} gdb_csrs[] = {{"stvec", 0x105},    {"sscratch", 0x140}, {"sepc", 0x141},    {"scause", 0x142},
                {"stval", 0x143},    {"satp", 0x180},     {"mstatus", 0x300}, {"misa", 0x301},
                {"mtvec", 0x305},    {"mepc", 0x341},     {"mcause", 0x342},  {"mtval", 0x343},
                {"minstret", 0xb02}, {"mhartid", 0xf14}};

/* Register n of hart h: its value and size in bytes; false for a number gdb did not get. */
static bool reg_read(const rv_hart *h, uint64_t n, uint64_t *v, unsigned *bytes) {
  *bytes = 8;
  if (n < 32) {
    *v = h->x[n];
    return true;
  }
  if (n == GDB_REG_PC) {
    *v = h->pc;
    return true;
  }
  if (n >= GDB_REG_F0 && n < GDB_REG_F0 + 32) {
    *v = h->f[n - GDB_REG_F0];
    return true;
  }
  if (n == GDB_REG_PRIV) {
    *v = (uint64_t)h->priv;
    return true;
  }
  if (n >= GDB_REG_CSR0 && n < GDB_REG_PRIV) {
    unsigned csr = (unsigned)(n - GDB_REG_CSR0);
    if (csr <= GDB_CSR_FCSR)
      *bytes = 4;
    return csr_read(h, csr, v);
  }
  return false;
}

/* Writable: the integer and FP registers, pc and the FP CSRs. Changing privilege or paging
 * behind the hart's back would leave its TLB and translated code stale. */
static bool reg_write(rv_hart *h, uint64_t n, uint64_t v) {
  if (n < 32) {
    if (n)
      h->x[n] = v;
    return true;
  }
  if (n == GDB_REG_PC) {
    h->pc = v & ~1ULL;
    return true;
  }
  if (n >= GDB_REG_F0 && n < GDB_REG_F0 + 32) {
    h->f[n - GDB_REG_F0] = v;
    return true;
  }
  if (n == GDB_REG_CSR0 + GDB_CSR_FFLAGS) {
    h->fflags = v & 0x1f;
    return true;
  }
  if (n == GDB_REG_CSR0 + GDB_CSR_FRM) {
    h->frm = v & 7;
    return true;
  }
  if (n == GDB_REG_CSR0 + GDB_CSR_FCSR) {
    h->fflags = v & 0x1f;
    h->frm = (v >> 5) & 7;
    return true;
  }
  return false;
}

/* Little-endian hex of `bytes` bytes into a value. */
static bool parse_reg_value(const char *p, size_t len, uint64_t *v) {
  uint8_t b[8] = {0};
  if (len == 0 || len > 16 || !gdb_hex_decode(p, len, b))
    return false;
  uint64_t r = 0;
  for (unsigned i = 0; i < 8; i++)
    r |= (uint64_t)b[i] << (8 * i);
  *v = r;
  return true;
}

static void cmd_read_all_regs(gdb_stub *s) {
  const rv_hart *h = &s->m->harts[selected_hart(s, s->g_hart)];
  reply_reset(s);
  for (unsigned i = 0; i < 32; i++)
    reply_reg(s, h->x[i], 8);
  reply_reg(s, h->pc, 8);
  send_reply(s);
}

static void cmd_write_all_regs(gdb_stub *s, const char *p, size_t len) {
  rv_hart *h = &s->m->harts[selected_hart(s, s->g_hart)];
  if (len < (size_t)33 * 16) {
    send_str(s, "E01");
    return;
  }
  uint64_t v[33];
  for (unsigned i = 0; i < 33; i++)
    if (!parse_reg_value(p + (size_t)16 * i, 16, &v[i])) {
      send_str(s, "E01");
      return;
    }
  for (unsigned i = 1; i < 33; i++)
    reg_write(h, i, v[i]);
  send_str(s, "OK");
}

static void cmd_read_reg(gdb_stub *s, const char *p, size_t len) {
  uint64_t n, v;
  unsigned bytes;
  const rv_hart *h = &s->m->harts[selected_hart(s, s->g_hart)];
  if (!gdb_parse_hex_u64(p, len, &n)) {
    send_str(s, "E01");
    return;
  }
  if (!reg_read(h, n, &v, &bytes)) {
    send_str(s, "E0e"); /* gdb shows such a register as unavailable */
    return;
  }
  reply_reset(s);
  reply_reg(s, v, bytes);
  send_reply(s);
}

static void cmd_write_reg(gdb_stub *s, const char *p, size_t len) {
  const char *eq = memchr(p, '=', len);
  uint64_t n, v;
  if (!eq || !gdb_parse_hex_u64(p, (size_t)(eq - p), &n) ||
      !parse_reg_value(eq + 1, len - (size_t)(eq + 1 - p), &v)) {
    send_str(s, "E01");
    return;
  }
  rv_hart *h = &s->m->harts[selected_hart(s, s->g_hart)];
  send_str(s, reg_write(h, n, v) ? "OK" : "E02");
}

/* ------------------------------------------------------------------ memory */

/* The host address of guest address `addr` — virtual as hart h sees it now, or physical in
 * the physical memory mode — if RAM holds it; NULL otherwise. *room: bytes from there to the
 * end of the page. */
static uint8_t *guest_ptr(gdb_stub *s, const rv_hart *h, uint64_t addr, size_t *room) {
  uint64_t pa = addr;
  if ((!s->phys_mode && !rv_hart_debug_translate(h, addr, &pa)) || !vm_ram_range_ok(s->m, pa, 1))
    return NULL;
  *room = (size_t)(VM_PAGE_SIZE - (pa & (VM_PAGE_SIZE - 1)));
  return vm_ram_ptr(s->m, pa);
}

/* "ADDR,LEN" (followed by ':' or the end): false on bad hex or a length beyond max. */
static bool parse_addr_len(const char *p, size_t len, uint64_t max, uint64_t *addr, uint64_t *n,
                           const char **rest) {
  const char *comma = memchr(p, ',', len);
  if (!comma)
    return false;
  const char *end = p + len;
  const char *colon = memchr(comma, ':', (size_t)(end - comma));
  const char *len_end = colon ? colon : end;
  if (!gdb_parse_hex_u64(p, (size_t)(comma - p), addr) ||
      !gdb_parse_hex_u64(comma + 1, (size_t)(len_end - comma - 1), n) || *n > max)
    return false;
  *rest = colon ? colon + 1 : end;
  return true;
}

static void cmd_read_mem(gdb_stub *s, const char *p, size_t len) {
  uint64_t addr, n;
  const char *rest;
  if (!parse_addr_len(p, len, GDB_MAX_READ, &addr, &n, &rest)) {
    send_str(s, "E01");
    return;
  }
  const rv_hart *h = &s->m->harts[selected_hart(s, s->g_hart)];
  reply_reset(s);
  uint64_t done = 0;
  while (done < n) {
    size_t room;
    const uint8_t *src = guest_ptr(s, h, addr + done, &room);
    if (!src)
      break;
    size_t chunk = room < n - done ? room : (size_t)(n - done);
    reply_hex_bytes(s, src, chunk);
    done += chunk;
  }
  if (done == 0 && n > 0) {
    send_str(s, "E14"); /* EFAULT: nothing mapped to RAM there */
    return;
  }
  send_reply(s); /* a short read is allowed: gdb asks again for the rest */
}

/* Write n bytes at guest address addr (virtual, or physical in the physical memory mode): all
 * of them, or nothing if any is not in RAM. */
static bool write_guest(gdb_stub *s, uint64_t addr, const uint8_t *data, uint64_t n) {
  const rv_hart *h = &s->m->harts[selected_hart(s, s->g_hart)];
  for (uint64_t done = 0; done < n;) {
    size_t room;
    if (!guest_ptr(s, h, addr + done, &room))
      return false;
    done += room;
  }
  for (uint64_t done = 0; done < n;) {
    size_t room;
    uint8_t *dst = guest_ptr(s, h, addr + done, &room);
    if (!dst)
      return false; /* cannot happen: the loop above found all of it in RAM */
    size_t chunk = room < n - done ? room : (size_t)(n - done);
    memcpy(dst, data + done, chunk);
    /* decoded or translated code of the page is dropped; a migration resends it */
    vm_ram_mark_dirty(s->m, (uint64_t)(dst - s->m->ram) + VM_RAM_BASE, chunk);
    done += chunk;
  }
  return true;
}

static void cmd_write_mem_hex(gdb_stub *s, const char *p, size_t len) {
  uint64_t addr, n;
  const char *rest;
  uint8_t buf[GDB_MAX_WRITE];
  if (!parse_addr_len(p, len, GDB_MAX_WRITE, &addr, &n, &rest) || rest == p + len ||
      (size_t)(p + len - rest) != 2 * n || !gdb_hex_decode(rest, 2 * n, buf)) {
    send_str(s, "E01");
    return;
  }
  send_str(s, write_guest(s, addr, buf, n) ? "OK" : "E14");
}

static void cmd_write_mem_binary(gdb_stub *s, const char *p, size_t len) {
  uint64_t addr, n;
  const char *rest;
  uint8_t buf[GDB_MAX_WRITE];
  if (!parse_addr_len(p, len, GDB_MAX_WRITE, &addr, &n, &rest)) {
    send_str(s, "E01");
    return;
  }
  uint64_t got = 0;
  for (const char *q = rest; q < p + len; q++) {
    uint8_t c = (uint8_t)*q;
    if (c == '}') {
      if (++q == p + len)
        break;
      c = (uint8_t)(*q ^ 0x20);
    }
    if (got == n) {
      got = n + 1; /* more data than announced */
      break;
    }
    buf[got++] = c;
  }
  if (got != n) {
    send_str(s, "E01");
    return;
  }
  send_str(s, write_guest(s, addr, buf, n) ? "OK" : "E14");
}

/* ------------------------------------------------------------------ breakpoints */

static bool breakpoint_add(gdb_stub *s, uint64_t pc) {
  rv_breakpoints *bp = &s->bp;
  for (unsigned i = 0; i < bp->n; i++)
    if (bp->pc[i] == pc)
      return true;
  if (bp->n == RV_MAX_BREAKPOINTS)
    return false;
  bp->pc[bp->n] = pc;
  __atomic_store_n(&bp->n, bp->n + 1, __ATOMIC_RELEASE);
  return true;
}

static void breakpoint_remove(gdb_stub *s, uint64_t pc) {
  rv_breakpoints *bp = &s->bp;
  for (unsigned i = 0; i < bp->n; i++)
    if (bp->pc[i] == pc) {
      bp->pc[i] = bp->pc[bp->n - 1];
      __atomic_store_n(&bp->n, bp->n - 1, __ATOMIC_RELEASE);
      return;
    }
}

/* The set of watchpoints changed (the VM is stopped): no TLB may keep mapping a page that now
 * has one, and the translator's code looks pages up in the TLB, so all of them start afresh. */
static void watchpoints_changed(gdb_stub *s) {
  for (unsigned h = 0; h < s->m->nharts; h++)
    rv_hart_flush_tlb(&s->m->harts[h]);
}

/* gdb's Z2/Z3/Z4 (write, read, access) as a kind of rv_watchpoint */
static unsigned watch_kind_of(char type) {
  return type == '2' ? RV_WATCH_WRITE : type == '3' ? RV_WATCH_READ : RV_WATCH_ACCESS;
}

static bool watchpoint_is(const rv_watchpoint *w, uint64_t addr, uint64_t len, unsigned kind,
                          bool phys) {
  return w->addr == addr && w->len == len && w->kind == kind && w->phys == phys;
}

/* A watchpoint of `len` bytes at addr (physical in the physical memory mode): NULL when it is
 * set (or was already), else the error. */
static const char *watchpoint_add(gdb_stub *s, uint64_t addr, uint64_t len, unsigned kind) {
  rv_breakpoints *bp = &s->bp;
  if (len == 0 || len > RV_MAX_WATCH_LEN || addr + (len - 1) < addr)
    return "E16"; /* EINVAL: empty, too long, or wrapping around the address space */
  for (unsigned i = 0; i < bp->nwatch; i++)
    if (watchpoint_is(&bp->watch[i], addr, len, kind, s->phys_mode))
      return NULL;
  if (bp->nwatch == RV_MAX_WATCHPOINTS)
    return "E0c"; /* ENOMEM: gdb says it cannot insert more */
  bp->watch[bp->nwatch] =
      (rv_watchpoint){.addr = addr, .len = len, .kind = kind, .phys = s->phys_mode};
  __atomic_store_n(&bp->nwatch, bp->nwatch + 1, __ATOMIC_RELEASE);
  watchpoints_changed(s);
  return NULL;
}

static void watchpoint_remove(gdb_stub *s, uint64_t addr, uint64_t len, unsigned kind) {
  rv_breakpoints *bp = &s->bp;
  for (unsigned i = 0; i < bp->nwatch; i++)
    if (watchpoint_is(&bp->watch[i], addr, len, kind, s->phys_mode)) {
      bp->watch[i] = bp->watch[bp->nwatch - 1];
      __atomic_store_n(&bp->nwatch, bp->nwatch - 1, __ATOMIC_RELEASE);
      return; /* TLBs without its page's entries only fill them again */
    }
}

/* Z0/Z1 (software and hardware breakpoints are the same here), z0/z1; Z2/Z3/Z4 (write, read
 * and access watchpoints: addr,length), z2-z4. A watchpoint's address is virtual, as the
 * accessing hart translates it at the access: one on an unmapped address is set and triggers
 * once something maps it. In the physical memory mode it is physical (and z removes the
 * physical one). */
static void cmd_breakpoint(gdb_stub *s, bool insert, const char *p, size_t len) {
  if (len < 2 || p[0] < '0' || p[0] > '4' || p[1] != ',') {
    send_str(s, ""); /* unsupported kind */
    return;
  }
  const char *q = p + 2, *end = p + len;
  const char *comma = memchr(q, ',', (size_t)(end - q));
  uint64_t addr, kind;
  if (!comma || !gdb_parse_hex_u64(q, (size_t)(comma - q), &addr) ||
      !gdb_parse_hex_u64(comma + 1, (size_t)(end - comma - 1), &kind)) {
    send_str(s, "E01");
    return;
  }
  if (p[0] >= '2') {
    if (insert) {
      const char *e = watchpoint_add(s, addr, kind, watch_kind_of(p[0]));
      send_str(s, e ? e : "OK");
    } else {
      watchpoint_remove(s, addr, kind, watch_kind_of(p[0]));
      send_str(s, "OK");
    }
    return;
  }
  if (!insert) {
    breakpoint_remove(s, addr);
    send_str(s, "OK");
    return;
  }
  send_str(s, breakpoint_add(s, addr) ? "OK" : "E0c");
}

/* ------------------------------------------------------------------ queries */

static void build_target_xml(gdb_stub *s) {
  static const char *const xnames[32] = {"zero", "ra", "sp",  "gp",  "tp", "t0", "t1", "t2",
                                         "fp",   "s1", "a0",  "a1",  "a2", "a3", "a4", "a5",
                                         "a6",   "a7", "s2",  "s3",  "s4", "s5", "s6", "s7",
                                         "s8",   "s9", "s10", "s11", "t3", "t4", "t5", "t6"};
  size_t cap = 8192, n = 0;
  char *x = vs_malloc0(cap);
#define XML(...) n += (size_t)snprintf(x + n, n < cap ? cap - n : 0, __VA_ARGS__)
  XML("<?xml version=\"1.0\"?><!DOCTYPE target SYSTEM \"gdb-target.dtd\">"
      "<target version=\"1.0\"><architecture>riscv:rv64</architecture>"
      "<feature name=\"org.gnu.gdb.riscv.cpu\">");
  for (unsigned i = 0; i < 32; i++)
    XML("<reg name=\"%s\" bitsize=\"64\" type=\"%s\" regnum=\"%u\"/>", xnames[i],
        i == 1             ? "code_ptr"
        : i == 2 || i == 8 ? "data_ptr"
                           : "int",
        i);
  XML("<reg name=\"pc\" bitsize=\"64\" type=\"code_ptr\" regnum=\"%d\"/></feature>"
      "<feature name=\"org.gnu.gdb.riscv.fpu\">",
      GDB_REG_PC);
  for (unsigned i = 0; i < 32; i++)
    XML("<reg name=\"f%u\" bitsize=\"64\" type=\"ieee_double\" regnum=\"%u\"/>", i, GDB_REG_F0 + i);
  XML("<reg name=\"fflags\" bitsize=\"32\" type=\"int\" regnum=\"%d\"/>"
      "<reg name=\"frm\" bitsize=\"32\" type=\"int\" regnum=\"%d\"/>"
      "<reg name=\"fcsr\" bitsize=\"32\" type=\"int\" regnum=\"%d\"/></feature>"
      "<feature name=\"org.gnu.gdb.riscv.csr\">",
      GDB_REG_CSR0 + GDB_CSR_FFLAGS, GDB_REG_CSR0 + GDB_CSR_FRM, GDB_REG_CSR0 + GDB_CSR_FCSR);
  for (size_t i = 0; i < ARRAY_SIZE(gdb_csrs); i++)
    XML("<reg name=\"%s\" bitsize=\"64\" type=\"int\" regnum=\"%u\"/>", gdb_csrs[i].name,
        GDB_REG_CSR0 + gdb_csrs[i].csr);
  XML("</feature><feature name=\"org.gnu.gdb.riscv.virtual\">"
      "<reg name=\"priv\" bitsize=\"64\" type=\"int\" regnum=\"%d\"/></feature></target>",
      GDB_REG_PRIV);
#undef XML
  s->target_xml = x;
  s->target_xml_len = n < cap ? n : cap - 1;
}

/* qXfer:features:read:target.xml:OFFSET,LENGTH */
static void cmd_read_features(gdb_stub *s, const char *annex_args, size_t len) {
  static const char annex[] = "target.xml:";
  uint64_t off, n;
  const char *rest;
  if (len < sizeof(annex) - 1 || memcmp(annex_args, annex, sizeof(annex) - 1) != 0) {
    send_str(s, "E00");
    return;
  }
  const char *p = annex_args + sizeof(annex) - 1;
  if (!parse_addr_len(p, len - (size_t)(p - annex_args), UINT64_MAX, &off, &n, &rest)) {
    send_str(s, "E01");
    return;
  }
  if (n > GDB_MAX_PACKET - 1)
    n = GDB_MAX_PACKET - 1; /* room for the 'm' */
  reply_reset(s);
  if (off >= s->target_xml_len) {
    reply_str(s, "l");
  } else {
    uint64_t left = s->target_xml_len - off;
    bool last = left <= n;
    reply_str(s, last ? "l" : "m");
    reply_add(s, s->target_xml + off, (size_t)(last ? left : n));
  }
  send_reply(s);
}

static void cmd_thread_list(gdb_stub *s) {
  char buf[16];
  reply_reset(s);
  reply_str(s, "m");
  for (unsigned h = 0; h < s->m->nharts; h++) {
    snprintf(buf, sizeof(buf), h ? ",%x" : "%x", thread_of(h));
    reply_str(s, buf);
  }
  send_reply(s);
}

static void cmd_thread_extra_info(gdb_stub *s, const char *p, size_t len) {
  int h;
  if (!parse_thread(s, p, len, &h) || h < 0) {
    send_str(s, "E01");
    return;
  }
  char text[48];
  snprintf(text, sizeof(text), "hart %d", h);
  reply_reset(s);
  reply_hex_bytes(s, (const uint8_t *)text, strlen(text));
  send_reply(s);
}

static bool starts_with(const char *p, size_t len, const char *prefix, size_t *plen) {
  *plen = strlen(prefix);
  return len >= *plen && memcmp(p, prefix, *plen) == 0;
}

static void cmd_query(gdb_stub *s, const char *p, size_t len) {
  size_t k;
  char buf[32];
  if (starts_with(p, len, "qSupported", &k)) {
    snprintf(buf, sizeof(buf), "PacketSize=%x", GDB_MAX_PACKET);
    reply_reset(s);
    reply_str(s, buf);
    reply_str(s, ";qXfer:features:read+;QStartNoAckMode+;vContSupported+");
    if (vm_rr_can_reverse(s->m))
      reply_str(s, ";ReverseStep+;ReverseContinue+");
    send_reply(s);
  } else if (starts_with(p, len, "qXfer:features:read:", &k)) {
    cmd_read_features(s, p + k, len - k);
  } else if (starts_with(p, len, "qfThreadInfo", &k)) {
    cmd_thread_list(s);
  } else if (starts_with(p, len, "qsThreadInfo", &k)) {
    send_str(s, "l");
  } else if (starts_with(p, len, "qThreadExtraInfo,", &k)) {
    cmd_thread_extra_info(s, p + k, len - k);
  } else if (len == 2 && p[1] == 'C') {
    snprintf(buf, sizeof(buf), "QC%x", thread_of(s->stop_hart));
    send_str(s, buf);
  } else if (starts_with(p, len, "qAttached", &k)) {
    send_str(s, "1"); /* detaching lets the VM run on rather than killing it */
  } else if (starts_with(p, len, "qSymbol", &k)) {
    send_str(s, "OK");
  } else if (len == 16 && memcmp(p, "qqemu.PhyMemMode", 16) == 0) {
    send_str(s, s->phys_mode ? "1" : "0");
  } else if (len == 15 && memcmp(p, "qqemu.Supported", 15) == 0) {
    send_str(s, "PhyMemMode");
  } else {
    send_str(s, "");
  }
}

/* Qqemu.PhyMemMode:0 or :1 (QEMU's, as gdb users send it with `maintenance packet`): any other
 * value is EINVAL. */
static void cmd_phys_mode(gdb_stub *s, const char *v, size_t len) {
  if (len != 1 || (v[0] != '0' && v[0] != '1')) {
    send_str(s, "E22");
    return;
  }
  s->phys_mode = v[0] == '1';
  send_str(s, "OK");
}

static void cmd_set(gdb_stub *s, const char *p, size_t len) {
  size_t k;
  if (len == 15 && memcmp(p, "QStartNoAckMode", 15) == 0) {
    send_str(s, "OK");
    s->no_ack = true;
  } else if (starts_with(p, len, "Qqemu.PhyMemMode", &k) && (len == k || p[k] == ':')) {
    size_t value = len > k ? k + 1 : k; /* past the ':' */
    cmd_phys_mode(s, p + value, len - value);
  } else {
    send_str(s, "");
  }
}

/* ------------------------------------------------------------------ execution control */

static void cmd_set_thread(gdb_stub *s, const char *p, size_t len) {
  int h;
  if (len < 2 || (p[0] != 'g' && p[0] != 'c') || !parse_thread(s, p + 1, len - 1, &h)) {
    send_str(s, "E01");
    return;
  }
  if (p[0] == 'g')
    s->g_hart = h;
  else
    s->c_hart = h;
  send_str(s, "OK");
}

static void cmd_thread_alive(gdb_stub *s, const char *p, size_t len) {
  int h;
  send_str(s, parse_thread(s, p, len, &h) && h >= 0 ? "OK" : "E01");
}

/* c [ADDR] / s [ADDR]: resuming at another address is not offered (gdb uses P pc instead). */
static void cmd_continue(gdb_stub *s, size_t len) {
  if (len) {
    send_str(s, "E01");
    return;
  }
  resume_vm(s, -1);
}

static void cmd_step(gdb_stub *s, size_t len) {
  if (len) {
    send_str(s, "E01");
    return;
  }
  step_hart(s, selected_hart(s, s->c_hart));
}

/* vCont;ACTION[:THREAD]... with actions c, C, s, S, t. A step of one hart runs that hart alone
 * (the others stay parked); any c without a step continues the whole VM. */
static void cmd_vcont(gdb_stub *s, const char *p, size_t len) {
  int step = -2;      /* hart to step, -2 none */
  bool cont = false;  /* some hart continues */
  int cont_hart = -2; /* the only hart that continues (-1: all) */
  const char *end = p + len;
  while (p < end) {
    if (*p++ != ';')
      goto bad;
    const char *next = memchr(p, ';', (size_t)(end - p));
    if (!next)
      next = end;
    const char *colon = memchr(p, ':', (size_t)(next - p));
    const char *act_end = colon ? colon : next;
    int h = -1;
    if (colon && !parse_thread(s, colon + 1, (size_t)(next - colon - 1), &h))
      goto bad;
    if (act_end == p)
      goto bad;
    char a = *p;
    if (a == 's' || a == 'S') {
      if (step == -2)
        step = h >= 0 ? h : (int)selected_hart(s, s->c_hart);
    } else if (a == 'c' || a == 'C') {
      cont_hart = cont && cont_hart != h ? -1 : h;
      cont = true;
    } else if (a != 't') {
      goto bad;
    }
    p = next;
  }
  if (step >= 0)
    step_hart(s, (unsigned)step);
  else if (cont)
    resume_vm(s, cont_hart);
  else
    send_str(s, "OK");
  return;
bad:
  send_str(s, "E01");
}

static void cmd_v(gdb_stub *s, const char *p, size_t len) {
  size_t k;
  if (starts_with(p, len, "vCont?", &k))
    send_str(s, "vCont;c;C;s;S;t");
  else if (starts_with(p, len, "vCont", &k))
    cmd_vcont(s, p + k, len - k);
  else
    send_str(s, "");
}

/* The hart a reverse step moves: gdb names it with Hc, or leaves it to us (Hc0, any thread:
 * gdb resumes every thread unless scheduler-locking says otherwise), and then it is the thread
 * gdb looks at, whose registers it read last (Hg), or else the one that stopped. */
static unsigned reverse_step_hart(const gdb_stub *s) {
  if (s->c_hart >= 0 && (unsigned)s->c_hart < s->m->nharts)
    return (unsigned)s->c_hart;
  return selected_hart(s, s->g_hart);
}

/* bs / bc on a replay: back one instruction of the selected hart, or to the last breakpoint
 * hit of any hart before here (the replay restores its nearest checkpoint and runs forward).
 * The stop names the hart that landed: the stepped one, or the one at the breakpoint. At the
 * recording's start gdb hears that there is no more history (replaylog:begin), as from QEMU. */
static void cmd_reverse(gdb_stub *s, const char *p, size_t len) {
  if (len != 2 || (p[1] != 's' && p[1] != 'c') || !vm_rr_can_reverse(s->m)) {
    send_str(s, len == 2 && (p[1] == 's' || p[1] == 'c') ? "E22" : "");
    return;
  }
  vm_pause(s->m);
  unsigned stopped = 0;
  int rc = vm_rr_reverse(s->m, p[1] == 's', reverse_step_hart(s), &stopped);
  s->stop_hart = stopped;
  s->g_hart = (int)stopped;
  char watch[48], buf[128];
  watch_stop_reason(s, stopped, watch, sizeof(watch));
  snprintf(buf, sizeof(buf), "T%02x%s%sthread:%x;", GDB_SIGTRAP, rc == 1 ? "replaylog:begin;" : "",
           watch, thread_of(stopped));
  send_str(s, buf);
}

/* The debugger leaves: breakpoints go, the VM runs on. */
static void cmd_detach(gdb_stub *s) {
  __atomic_store_n(&s->bp.n, 0, __ATOMIC_RELEASE);
  __atomic_store_n(&s->bp.nwatch, 0, __ATOMIC_RELEASE);
  send_str(s, "OK");
  stub_disconnect(s);
}

static void cmd_kill(gdb_stub *s) {
  __atomic_store_n(&s->bp.n, 0, __ATOMIC_RELEASE);
  __atomic_store_n(&s->bp.nwatch, 0, __ATOMIC_RELEASE);
  vm_request_exit(s->m, VM_EXIT_QUIT, 0);
  stub_disconnect(s);
}

static void handle_packet(gdb_stub *s, const char *p, size_t len) {
  if (len == 0) {
    send_str(s, "");
    return;
  }
  if (s->running && p[0] != 'k' && p[0] != 'D') {
    /* all-stop: a debugger sends nothing but 0x03 while the VM runs; a client that does gets
     * its answer from a stopped VM (and no stop reply besides) */
    halt_vm(s);
  }
  const char *a = p + 1;
  size_t alen = len - 1;
  switch (p[0]) {
  case '?':
    send_stop_reply(s, GDB_SIGTRAP);
    break;
  case 'g':
    cmd_read_all_regs(s);
    break;
  case 'G':
    cmd_write_all_regs(s, a, alen);
    break;
  case 'p':
    cmd_read_reg(s, a, alen);
    break;
  case 'P':
    cmd_write_reg(s, a, alen);
    break;
  case 'm':
    cmd_read_mem(s, a, alen);
    break;
  case 'M':
    cmd_write_mem_hex(s, a, alen);
    break;
  case 'X':
    cmd_write_mem_binary(s, a, alen);
    break;
  case 'c':
    cmd_continue(s, alen);
    break;
  case 's':
    cmd_step(s, alen);
    break;
  case 'H':
    cmd_set_thread(s, a, alen);
    break;
  case 'T':
    cmd_thread_alive(s, a, alen);
    break;
  case 'Z':
  case 'z':
    cmd_breakpoint(s, p[0] == 'Z', a, alen);
    break;
  case 'q':
    cmd_query(s, p, len);
    break;
  case 'Q':
    cmd_set(s, p, len);
    break;
  case 'v':
    cmd_v(s, p, len);
    break;
  case 'b':
    cmd_reverse(s, p, len);
    break;
  case 'D':
    cmd_detach(s);
    break;
  case 'k':
    cmd_kill(s);
    break;
  default:
    send_str(s, "");
  }
}

void gdb_stub_input(gdb_stub *s, const uint8_t *data, size_t len) {
  for (size_t i = 0; i < len && s->fd >= 0; i++) {
    switch (gdb_rx_feed(&s->rx, data[i])) {
    case GDB_RX_PACKET:
      if (!s->no_ack)
        send_raw(s, "+", 1);
      handle_packet(s, s->rx.buf, s->rx.len);
      break;
    case GDB_RX_BAD:
      if (!s->no_ack)
        send_raw(s, "-", 1);
      break;
    case GDB_RX_INTERRUPT:
      if (s->running)
        stop_vm(s, GDB_SIGINT);
      break;
    case GDB_RX_NONE:
      break;
    }
  }
}

/* ------------------------------------------------------------------ connection and lifetime */

static void stub_disconnect(gdb_stub *s) {
  if (s->fd < 0)
    return;
  if (s->own_fd)
    close(s->fd);
  s->fd = -1;
  s->running = false;
  __atomic_store_n(&s->bp.n, 0, __ATOMIC_RELEASE);
  __atomic_store_n(&s->bp.nwatch, 0, __ATOMIC_RELEASE);
  /* a debugger that went away without detaching leaves the VM running, as after D */
  for (unsigned h = 0; h < s->m->nharts; h++)
    __atomic_store_n(&s->m->harts[h].breakpoint_hit, false, __ATOMIC_RELEASE);
  release_held_harts(s);
  vm_resume(s->m);
}

static void stub_accept(gdb_stub *s) {
  int fd = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
  if (fd < 0)
    return;
  if (s->fd >= 0) {
    close(fd); /* one debugger at a time */
    return;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  s->fd = fd;
  s->own_fd = true;
  gdb_rx_init(&s->rx);
  s->no_ack = false;
  s->g_hart = s->c_hart = s->only_hart = -1;
  s->stop_hart = 0;
  s->phys_mode = false; /* the mode is the connection's */
  /* as QEMU: a debugger that attaches finds the VM stopped */
  vm_pause(s->m);
  s->running = false;
}

static void stub_read(gdb_stub *s) {
  uint8_t buf[4096];
  ssize_t n = recv(s->fd, buf, sizeof(buf), MSG_DONTWAIT);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
    return;
  if (n <= 0) {
    stub_disconnect(s);
    return;
  }
  gdb_stub_input(s, buf, (size_t)n);
}

static void stub_prepare(void *opaque, vm_pollset *ps) {
  gdb_stub *s = opaque;
  s->listen_idx = vm_pollset_add(ps, s->listen_fd, POLLIN);
  s->fd_idx = s->fd >= 0 ? vm_pollset_add(ps, s->fd, POLLIN) : -1;
  if (!s->running || (__atomic_load_n(&s->bp.n, __ATOMIC_ACQUIRE) == 0 &&
                      __atomic_load_n(&s->bp.nwatch, __ATOMIC_ACQUIRE) == 0))
    return;
  if (hart_at_breakpoint(s) >= 0)
    stop_vm(s, GDB_SIGTRAP);
  else
    vm_pollset_wake_within(ps, GDB_BREAKPOINT_POLL_NS);
}

static void stub_dispatch(void *opaque, const vm_pollset *ps) {
  gdb_stub *s = opaque;
  if (s->fd_idx >= 0 && s->fd >= 0 && (vm_pollset_revents(ps, s->fd_idx) & (POLLIN | POLLHUP)))
    stub_read(s);
  if (vm_pollset_revents(ps, s->listen_idx) & POLLIN)
    stub_accept(s);
}

gdb_stub *gdb_stub_new(vm *m, int out_fd) {
  gdb_stub *s = vs_malloc0(sizeof(*s));
  s->m = m;
  s->listen_fd = -1;
  s->listen_idx = s->fd_idx = -1;
  s->fd = out_fd;
  s->g_hart = s->c_hart = s->only_hart = -1;
  gdb_rx_init(&s->rx);
  build_target_xml(s);
  m->bus.breakpoints = &s->bp;
  return s;
}

void gdb_stub_free(gdb_stub *s) {
  if (!s)
    return;
  if (s->m->bus.breakpoints == &s->bp)
    s->m->bus.breakpoints = NULL;
  if (s->own_fd && s->fd >= 0)
    close(s->fd);
  if (s->listen_fd >= 0)
    close(s->listen_fd);
  free(s->target_xml);
  free(s);
}

/* The run ended: a waiting debugger hears that the program exited, with its code. */
static void stub_run_ended(void *opaque) {
  gdb_stub *s = opaque;
  if (s->fd < 0)
    return;
  char buf[16];
  snprintf(buf, sizeof(buf), "W%02x", s->m->exit_code & 0xff);
  send_str(s, buf);
  if (s->own_fd && s->fd >= 0)
    close(s->fd);
  s->fd = -1;
}

static void stub_destroy(void *opaque) {
  gdb_stub *s = opaque;
  vm_remove_hooks(s->m, s);
  vm_remove_io_source(s->m, s);
  gdb_stub_free(s);
}

/* "tcp:[HOST]:PORT" (HOST default 127.0.0.1) into a listening socket. */
static int listen_tcp(const char *spec, vs_error **err) {
  if (strncmp(spec, "tcp:", 4) != 0)
    return vs_error_set(err, 0, "'%s' is not tcp:[HOST]:PORT", spec);
  const char *hp = spec + 4;
  const char *colon = strrchr(hp, ':');
  if (!colon || !colon[1])
    return vs_error_set(err, 0, "'%s' is not tcp:[HOST]:PORT", spec);
  char host[256];
  size_t hlen = (size_t)(colon - hp);
  if (hlen >= 2 && hp[0] == '[' && hp[hlen - 1] == ']') {
    hp++;
    hlen -= 2;
  }
  if (hlen >= sizeof(host))
    return vs_error_set(err, 0, "'%s': host name too long", spec);
  memcpy(host, hp, hlen);
  host[hlen] = '\0';
  struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
  int rc = getaddrinfo(hlen ? host : "127.0.0.1", colon + 1, &hints, &ai);
  if (rc != 0)
    return vs_error_set(err, 0, "resolve %s: %s", spec, gai_strerror(rc));
  int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
  int one = 1;
  if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
      bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 1) < 0) {
    int e = errno;
    if (fd >= 0)
      close(fd);
    freeaddrinfo(ai);
    return vs_error_set(err, e, "gdb: listen on %s", spec);
  }
  freeaddrinfo(ai);
  return fd;
}

int vm_gdb_listen(vm *m, const char *spec, bool wait, vs_error **err) {
  if (m->bus.breakpoints)
    return vs_error_set(err, EBUSY, "a gdb stub is already set up");
  int fd = listen_tcp(spec, err);
  if (fd < 0)
    return -1;
  gdb_stub *s = gdb_stub_new(m, -1);
  s->listen_fd = fd;
  vm_io_source src = {"gdb", stub_prepare, stub_dispatch, s};
  vm_hooks hooks = {"gdb", NULL, stub_run_ended, stub_destroy, s};
  if (vm_add_io_source(m, &src, err) < 0 || vm_add_hooks(m, &hooks, err) < 0) {
    vm_remove_io_source(m, s);
    gdb_stub_free(s);
    return -1;
  }
  if (wait)
    vm_pause(m); /* nothing runs until the debugger says continue */
  vs_log_info("gdb: waiting for a debugger on %s%s", spec, wait ? " (the VM starts stopped)" : "");
  return 0;
}
