/* Unit tests of saved VM state: the section writer and reader (vmstate.c), each device's save/load
 * pair (a device loaded from another's image saves the same bytes), refusal of values a device
 * cannot hold, a hart's round trip, and a whole machine's state image with its checksum and
 * format version. */
#include <string.h>
#include <sys/mman.h>

#include "tap.h"
#include "vm/machine.h"

/* ------------------------------------------------------------------ section format */

TEST(sections_round_trip_every_type) {
  vmstate_writer w;
  vmstate_writer_init(&w);
  vmstate_begin(&w, "TEST", 3);
  vmstate_put_u8(&w, 0xab);
  vmstate_put_u16(&w, 0xbeef);
  vmstate_put_u32(&w, 0xdeadbeef);
  vmstate_put_u64(&w, 0x0123456789abcdefULL);
  vmstate_put_bool(&w, true);
  vmstate_put_str(&w, "hello");
  vmstate_put_str(&w, NULL);
  vmstate_begin(&w, "NEXT", 1); /* closes TEST */
  vmstate_end_section(&w);
  CHECK_EQ(w.len, 16 + 1 + 2 + 4 + 8 + 1 + 4 + 5 + 4 + 16);

  vmstate_reader img, r;
  vmstate_reader_init(&img, w.data, w.len);
  CHECK(vmstate_next(&img, "TEST", 3, &r, NULL) == 0);
  CHECK_EQ(r.version, 3);
  CHECK_EQ(vmstate_get_u8(&r), 0xab);
  CHECK_EQ(vmstate_get_u16(&r), 0xbeef);
  CHECK_U64(vmstate_get_u32(&r), 0xdeadbeefu);
  CHECK_U64(vmstate_get_u64(&r), 0x0123456789abcdefULL);
  CHECK(vmstate_get_bool(&r));
  char *s = vmstate_get_str(&r, 16);
  CHECK_STREQ(s, "hello");
  free(s);
  CHECK(vmstate_get_str(&r, 16) == NULL);
  CHECK(vmstate_end(&r, NULL) == 0);
  CHECK(vmstate_next(&img, "NEXT", 1, &r, NULL) == 0);
  CHECK(vmstate_end(&r, NULL) == 0);
  CHECK(vmstate_at_end(&img));
  vmstate_writer_free(&w);
}

TEST(reader_refuses_wrong_tag_newer_version_and_bad_length) {
  vmstate_writer w;
  vmstate_writer_init(&w);
  vmstate_begin(&w, "UART", 2);
  vmstate_put_u32(&w, 7);
  vmstate_end_section(&w);
  vmstate_reader img, r;
  vs_error *err = NULL;
  vmstate_reader_init(&img, w.data, w.len);
  CHECK(vmstate_next(&img, "PLIC", 1, &r, &err) < 0);
  CHECK_CONTAINS(err->msg, "found 'UART'");
  vs_error_free(err);
  err = NULL;
  CHECK(vmstate_next(&img, "UART", 1, &r, &err) < 0);
  CHECK_CONTAINS(err->msg, "version 2, this build reads 1 to 1");
  vs_error_free(err);
  err = NULL;
  w.data[8] = 0xff; /* length beyond the image */
  CHECK(vmstate_next(&img, "UART", 2, &r, &err) < 0);
  CHECK_CONTAINS(err->msg, "claims");
  vs_error_free(err);
  err = NULL;
  vmstate_reader_init(&img, w.data, 10); /* cut inside the header */
  CHECK(vmstate_next(&img, "UART", 2, &r, &err) < 0);
  CHECK_CONTAINS(err->msg, "missing");
  vs_error_free(err);
  vmstate_writer_free(&w);
}

TEST(reader_reports_short_sections_leftovers_and_refused_values) {
  uint8_t payload[6] = {1, 2, 3, 4, 5, 6};
  vmstate_reader r;
  vs_error *err = NULL;
  vmstate_reader_init(&r, payload, sizeof(payload));
  memcpy(r.tag, "TEST", 5);
  CHECK_U64(vmstate_get_u64(&r), 0); /* past the end: zero, and the section is bad */
  CHECK(vmstate_end(&r, &err) < 0);
  CHECK_CONTAINS(err->msg, "too short");
  vs_error_free(err);
  err = NULL;
  vmstate_reader_init(&r, payload, sizeof(payload));
  vmstate_get_u32(&r);
  CHECK(vmstate_end(&r, &err) < 0);
  CHECK_CONTAINS(err->msg, "2 unexpected bytes");
  vs_error_free(err);
  err = NULL;
  vmstate_reader_init(&r, payload, sizeof(payload));
  (void)vmstate_get_bool(&r); /* 1: fine */
  (void)vmstate_get_bool(&r); /* 2: not a boolean */
  CHECK(r.bad);
  uint8_t str[] = {3, 0, 0, 0, 'a', 0, 'b'};
  vmstate_reader_init(&r, str, sizeof(str));
  CHECK(vmstate_get_str(&r, 10) == NULL);
  CHECK(r.bad);
  vmstate_reader_init(&r, str, sizeof(str));
  CHECK(vmstate_get_str(&r, 2) == NULL);
  CHECK(r.bad);
}

/* ------------------------------------------------------------------ devices */

static void no_hart_irq(void *machine, unsigned hart, uint64_t bit, bool level) {
  (void)machine;
  (void)hart;
  (void)bit;
  (void)level;
}
static void no_line(void *ctrl, unsigned irq, bool level) {
  (void)ctrl;
  (void)irq;
  (void)level;
}
static uint64_t fixed_mtime(void *m) {
  (void)m;
  return 12345;
}
static void set_mtime(void *m, uint64_t v) {
  (void)m;
  (void)v;
}

/* Save a, load the image into b, and check b saves the very same bytes. */
#define CHECK_ROUND_TRIP(save, load, a, b)                                                         \
  do {                                                                                             \
    vmstate_writer w1, w2;                                                                         \
    vmstate_writer_init(&w1);                                                                      \
    vmstate_writer_init(&w2);                                                                      \
    save(a, &w1);                                                                                  \
    vmstate_end_section(&w1);                                                                      \
    vmstate_reader img;                                                                            \
    vmstate_reader_init(&img, w1.data, w1.len);                                                    \
    vs_error *e = NULL;                                                                            \
    int rc = load(b, &img, &e);                                                                    \
    if (rc < 0)                                                                                    \
      TAP_FAIL("load: %s", e->msg);                                                                \
    CHECK(vmstate_at_end(&img));                                                                   \
    save(b, &w2);                                                                                  \
    vmstate_end_section(&w2);                                                                      \
    CHECK_EQ(w1.len, w2.len);                                                                      \
    CHECK(memcmp(w1.data, w2.data, w1.len) == 0);                                                  \
    vmstate_writer_free(&w1);                                                                      \
    vmstate_writer_free(&w2);                                                                      \
  } while (0)

TEST(uart_plic_aclint_rtc_syscon_round_trip) {
  dev_irq_line line = {no_line, NULL, 10};
  dev_hart_irq hirq = {no_hart_irq, NULL};
  uart_state u1, u2;
  uart_init(&u1, line, -1);
  uart_init(&u2, line, -1);
  CHECK(uart_write(&u1, 1, 1, 0x03));
  CHECK(uart_write(&u1, 3, 1, 0x03));
  uart_rx_push(&u1, (const uint8_t *)"abc", 3);
  CHECK(uart_write(&u1, 0, 1, 'x'));
  CHECK_ROUND_TRIP(uart_save, uart_load, &u1, &u2);
  CHECK_EQ(u2.rx_count, 3);
  CHECK_EQ(u2.tx_len, 1);

  plic_state p1, p2;
  plic_init(&p1, 2, hirq);
  plic_init(&p2, 2, hirq);
  CHECK(plic_write(&p1, 4 * 10, 4, 5));
  CHECK(plic_write(&p1, 0x2080, 4, 1u << 10));
  plic_set_irq(&p1, 10, true);
  CHECK_ROUND_TRIP(plic_save, plic_load, &p1, &p2);
  CHECK_EQ(p2.priority[10], 5);

  aclint_state c1, c2;
  aclint_init(&c1, 2, hirq, fixed_mtime, set_mtime);
  aclint_init(&c2, 2, hirq, fixed_mtime, set_mtime);
  CHECK(aclint_write(&c1, ACLINT_MTIMECMP_OFF + 8, 8, 999));
  CHECK(aclint_write(&c1, 0, 4, 1));
  CHECK_ROUND_TRIP(aclint_save, aclint_load, &c1, &c2);
  CHECK_U64(c2.mtimecmp[1], 999);

  rtc_state r1, r2;
  rtc_init(&r1, line);
  rtc_init(&r2, line);
  r1.offset_ns = -5000000000LL;
  r1.alarm_armed = true;
  r1.alarm_ns = 77;
  CHECK_ROUND_TRIP(rtc_save, rtc_load, &r1, &r2);
  CHECK(r2.offset_ns == -5000000000LL);

  syscon_state s1, s2;
  syscon_init(&s1);
  syscon_init(&s2);
  CHECK(syscon_write(&s1, 0, 4, 0x3333 | (7u << 16)));
  CHECK_ROUND_TRIP(syscon_save, syscon_load, &s1, &s2);
  CHECK_EQ(s2.fail_code, 7);
}

TEST(device_load_refuses_impossible_values) {
  uart_state u;
  uart_init(&u, (dev_irq_line){no_line, NULL, 10}, -1);
  vmstate_writer w;
  vmstate_writer_init(&w);
  uart_save(&u, &w);
  vmstate_end_section(&w);
  /* rx_head follows the 10 registers, thr_ipending and the 16-byte FIFO */
  w.data[16 + 10 + 1 + 16] = 99;
  vmstate_reader img;
  vmstate_reader_init(&img, w.data, w.len);
  vs_error *err = NULL;
  CHECK(uart_load(&u, &img, &err) < 0);
  CHECK_CONTAINS(err->msg, "receive FIFO position out of range");
  vs_error_free(err);
  vmstate_writer_free(&w);

  plic_state p, q;
  dev_hart_irq hirq = {no_hart_irq, NULL};
  plic_init(&p, 2, hirq);
  plic_init(&q, 1, hirq); /* a machine with fewer harts */
  vmstate_writer_init(&w);
  plic_save(&p, &w);
  vmstate_end_section(&w);
  vmstate_reader_init(&img, w.data, w.len);
  err = NULL;
  CHECK(plic_load(&q, &img, &err) < 0);
  CHECK_CONTAINS(err->msg, "number of contexts");
  vs_error_free(err);
  vmstate_writer_free(&w);
}

TEST(virtio_transport_and_power_button_round_trip) {
  static uint8_t ram[1 << 16] __attribute__((aligned(4096)));
  virtio_mem mem = {.ram = ram, .base = 0x80000000, .size = sizeof(ram)};
  dev_irq_line line = {no_line, NULL, 3};
  static virtio_input a, b;
  virtio_input_init(&a, mem, line);
  virtio_input_init(&b, mem, line);
  /* the driver's handshake and an event queue in RAM */
  CHECK(virtio_mmio_write(&a.mmio, 0x070, 4, 1 | 2));
  CHECK(virtio_mmio_write(&a.mmio, 0x024, 4, 1));
  CHECK(virtio_mmio_write(&a.mmio, 0x020, 4, 1)); /* VERSION_1 */
  CHECK(virtio_mmio_write(&a.mmio, 0x070, 4, 1 | 2 | 8));
  CHECK(virtio_mmio_write(&a.mmio, 0x038, 4, 8));
  CHECK(virtio_mmio_write(&a.mmio, 0x080, 4, 0x80001000));
  CHECK(virtio_mmio_write(&a.mmio, 0x090, 4, 0x80002000));
  CHECK(virtio_mmio_write(&a.mmio, 0x0a0, 4, 0x80003000));
  CHECK(virtio_mmio_write(&a.mmio, 0x044, 4, 1));
  CHECK(virtio_mmio_write(&a.mmio, 0x070, 4, 1 | 2 | 8 | 4));
  CHECK(virtio_mmio_write(&a.mmio, 0x100, 1, 0x11)); /* select EV_BITS */
  CHECK(virtio_mmio_write(&a.mmio, 0x101, 1, 1));    /* subsel EV_KEY */
  CHECK(virtio_input_press_power(&a));               /* no buffers posted: the events wait */
  CHECK_EQ(a.num_pending, 4);
  CHECK_ROUND_TRIP(virtio_input_save, virtio_input_load, &a, &b);
  CHECK_EQ(b.num_pending, 4);
  CHECK(b.mmio.queues[0].ready);
  CHECK_EQ(b.config[2], 116 / 8 + 1); /* the EV_KEY bitmap's size, recomputed */

  /* a transport whose ready queue points outside RAM is refused */
  a.mmio.queues[0].used = 0x90000000;
  vmstate_writer w;
  vmstate_writer_init(&w);
  virtio_input_save(&a, &w);
  vmstate_reader img;
  vmstate_reader_init(&img, w.data, w.len);
  vs_error *err = NULL;
  CHECK(virtio_input_load(&b, &img, &err) < 0);
  CHECK_CONTAINS(err->msg, "outside guest RAM");
  vs_error_free(err);
  vmstate_writer_free(&w);
}

/* ------------------------------------------------------------------ harts and machines */

static uint64_t bus_mtime(void *opaque) {
  (void)opaque;
  return 1000;
}

/* A small bus for harts that are saved and loaded, never run. */
static rv_bus hart_test_bus(void) {
  static uint8_t ram[1 << 16] __attribute__((aligned(4096)));
  static uint32_t code_pages[sizeof(ram) / 4096];
  return (rv_bus){.ram = ram,
                  .ram_base = 0x80000000,
                  .ram_size = sizeof(ram),
                  .read_mtime = bus_mtime,
                  .code_pages = code_pages};
}

TEST(hart_round_trip_and_refusals) {
  rv_bus bus = hart_test_bus();
  rv_hart a, b;
  CHECK(rv_hart_init(&a, 0, &bus, NULL) == 0);
  CHECK(rv_hart_init(&b, 0, &bus, NULL) == 0);
  rv_hart_reset(&a, 0x80001000, RV_PRIV_S);
  a.x[5] = 42;
  a.f[3] = 0x4000000000000000ULL;
  a.satp = (8ULL << 60) | 0x80123;
  a.stimecmp = 5555;
  a.wfi = true;
  CHECK_ROUND_TRIP(rv_hart_save, rv_hart_load, &a, &b);
  CHECK_U64(b.pc, 0x80001000);
  CHECK_EQ(b.priv, RV_PRIV_S);
  CHECK_U64(b.x[5], 42);

  a.priv = 2; /* no such privilege level */
  vmstate_writer w;
  vmstate_writer_init(&w);
  rv_hart_save(&a, &w);
  vmstate_end_section(&w);
  vmstate_reader img;
  vmstate_reader_init(&img, w.data, w.len);
  vs_error *err = NULL;
  CHECK(rv_hart_load(&b, &img, &err) < 0);
  CHECK_CONTAINS(err->msg, "privilege level out of range");
  vs_error_free(err);
  vmstate_writer_free(&w);

  /* Found by fuzz_snapshot: an all-ones NAPOT pmpaddr (no CSR write can leave one) reached the
   * PMP summary, which counts its trailing ones. */
  a.priv = RV_PRIV_S;
  a.pmpaddr[0] = UINT64_MAX;
  vmstate_writer_init(&w);
  rv_hart_save(&a, &w);
  vmstate_end_section(&w);
  vmstate_reader_init(&img, w.data, w.len);
  err = NULL;
  CHECK(rv_hart_load(&b, &img, &err) < 0);
  CHECK_CONTAINS(err->msg, "pmpaddr holds address bits");
  vs_error_free(err);
  vmstate_writer_free(&w);
  a.pmpaddr[0] = 0;
  a.pmpcfg[1] = 1; /* odd pmpcfg registers do not exist on RV64 */
  vmstate_writer_init(&w);
  rv_hart_save(&a, &w);
  vmstate_end_section(&w);
  vmstate_reader_init(&img, w.data, w.len);
  err = NULL;
  CHECK(rv_hart_load(&b, &img, &err) < 0);
  CHECK_CONTAINS(err->msg, "pmpcfg holds bits");
  vs_error_free(err);
  vmstate_writer_free(&w);
  rv_hart_destroy(&a);
  rv_hart_destroy(&b);
}

/* Save a into a fresh image, load it into b; NULL on success, else the error (caller frees). */
static vs_error *hart_reload(rv_hart *a, rv_hart *b, uint32_t as_version, size_t cut) {
  vmstate_writer w;
  vmstate_writer_init(&w);
  rv_hart_save(a, &w);
  vmstate_end_section(&w);
  if (as_version) { /* an older layout: another version number, the newer tail cut off */
    for (int i = 0; i < 4; i++)
      w.data[4 + i] = (uint8_t)(as_version >> (8 * i));
    uint64_t len = w.len - VMSTATE_SECTION_HEADER - cut;
    for (int i = 0; i < 8; i++)
      w.data[8 + i] = (uint8_t)(len >> (8 * i));
    w.len -= cut;
  }
  vmstate_reader img;
  vmstate_reader_init(&img, w.data, w.len);
  vs_error *err = NULL;
  int rc = rv_hart_load(b, &img, &err);
  vmstate_writer_free(&w);
  if (rc == 0)
    CHECK(err == NULL);
  return err;
}

/* Version 2 of the hart section: V and the hypervisor CSRs survive, impossible values are
 * refused, and version 1 images (no H state) load only into harts without H. */
TEST(hart_hypervisor_state_round_trip_and_refusals) {
  rv_bus bus = hart_test_bus();
  rv_hart a, b;
  CHECK(rv_hart_init(&a, 0, &bus, NULL) == 0);
  CHECK(rv_hart_init(&b, 0, &bus, NULL) == 0);
  rv_hart_reset(&a, 0x80001000, RV_PRIV_S);
  a.virt = true;
  a.hgatp = (8ULL << 60) | (5ULL << 44) | 0x80100;
  a.hstatus |= 1ULL << 7; /* SPV */
  a.hideleg = 0x444;
  a.htimedelta = 77;
  a.vstimecmp = 1234;
  a.vsepc = 0x80002000;
  vs_error *err = hart_reload(&a, &b, 0, 0);
  CHECK(err == NULL);
  CHECK(b.virt);
  CHECK_U64(b.hgatp, a.hgatp);
  CHECK_U64(b.htimedelta, 77);
  CHECK_U64(b.vstimecmp, 1234);
  CHECK_U64(b.vsepc, 0x80002000);

  struct {
    uint64_t *field, value;
    const char *msg;
  } bad[] = {
      {&a.hgatp, 7ULL << 60, "hgatp"},     {&a.hstatus, (2ULL << 32) | (1ULL << 0), "hstatus"},
      {&a.hedeleg, 1ULL << 10, "hedeleg"}, {&a.hvip, 1ULL << 1, "hvip"},
      {&a.vsatp, 3ULL << 60, "vsatp"},
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    uint64_t keep = *bad[i].field;
    *bad[i].field = bad[i].value;
    err = hart_reload(&a, &b, 0, 0);
    *bad[i].field = keep;
    CHECK(err != NULL);
    CHECK_CONTAINS(err->msg, bad[i].msg);
    vs_error_free(err);
  }
  a.priv = RV_PRIV_M;
  err = hart_reload(&a, &b, 0, 0);
  CHECK(err != NULL);
  CHECK_CONTAINS(err->msg, "V=1 in M-mode");
  vs_error_free(err);

  /* a version 1 image (without the 1 + 20 * 8 bytes of H state) */
  size_t h_bytes = 1 + 20 * 8;
  a.priv = RV_PRIV_S;
  err = hart_reload(&a, &b, 1, h_bytes);
  CHECK(err != NULL);
  CHECK_CONTAINS(err->msg, "--cpu rv64,h=off");
  vs_error_free(err);
  rv_bus plain = bus;
  plain.no_hypervisor = true;
  rv_hart c, d;
  CHECK(rv_hart_init(&c, 0, &plain, NULL) == 0);
  CHECK(rv_hart_init(&d, 0, &plain, NULL) == 0);
  rv_hart_reset(&c, 0x80001000, RV_PRIV_S);
  c.x[7] = 9;
  err = hart_reload(&c, &d, 1, h_bytes);
  CHECK(err == NULL);
  CHECK_U64(d.x[7], 9);
  CHECK(!d.virt);
  /* H images do not load into harts without H, nor the reverse */
  err = hart_reload(&a, &d, 0, 0);
  CHECK(err != NULL);
  CHECK_CONTAINS(err->msg, "misa");
  vs_error_free(err);
  err = hart_reload(&c, &b, 0, 0);
  CHECK(err != NULL);
  CHECK_CONTAINS(err->msg, "misa");
  vs_error_free(err);
  rv_hart_destroy(&a);
  rv_hart_destroy(&b);
  rv_hart_destroy(&c);
  rv_hart_destroy(&d);
}

static vm *small_machine(void) {
  vm_config cfg;
  vm_config_init(&cfg);
  cfg.mem_size = 4 << 20;
  cfg.console_in = -1;
  cfg.console_out = -1;
  void *ram = mmap(NULL, cfg.mem_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  CHECK(ram != MAP_FAILED);
  vm *m = vm_build(&cfg, ram, NULL);
  CHECK(m != NULL);
  vm_pause(m); /* a still clock: both images carry the same mtime */
  return m;
}

static int load_image(vm *m, const vmstate_writer *w, vs_error **err) {
  vm_config cfg;
  vm_config_init(&cfg);
  char *strings[VM_CONFIG_STRINGS] = {0};
  bool frozen;
  vmstate_reader rest;
  int rc = vm_state_open(w->data, w->len, &cfg, strings, &frozen, &rest, err);
  if (rc == 0)
    rc = vm_state_load(m, &rest, NULL, err);
  for (unsigned i = 0; i < ARRAY_SIZE(strings); i++)
    free(strings[i]);
  return rc;
}

TEST(machine_state_image_round_trip_checksum_and_version) {
  vm *a = small_machine();
  vm *b = small_machine();
  a->harts[0].pc = 0x80000400;
  a->harts[0].x[10] = 7;
  a->uart.scr = 0x5a;
  vmstate_writer w1, w2;
  vmstate_writer_init(&w1);
  vmstate_writer_init(&w2);
  vm_state_save(a, &w1, NULL);
  vs_error *err = NULL;
  if (load_image(b, &w1, &err) < 0)
    TAP_FAIL("load: %s", err->msg);
  vm_state_save(b, &w2, NULL);
  CHECK_EQ(w1.len, w2.len);
  CHECK(memcmp(w1.data, w2.data, w1.len) == 0);
  CHECK_U64(b->harts[0].x[10], 7);

  w1.data[w1.len / 2] ^= 1;
  CHECK(load_image(b, &w1, &err) < 0);
  CHECK_CONTAINS(err->msg, "checksum mismatch");
  vs_error_free(err);
  err = NULL;
  w1.data[w1.len / 2] ^= 1;
  w1.data[8] = 9;
  CHECK(load_image(b, &w1, &err) < 0);
  CHECK_CONTAINS(err->msg, "snapshot format version 9, this build reads 2");
  vs_error_free(err);
  err = NULL;
  CHECK(load_image(b, &(vmstate_writer){.data = w2.data, .len = 30}, &err) < 0);
  vs_error_free(err);
  vmstate_writer_free(&w1);
  vmstate_writer_free(&w2);
  vm_destroy(a);
  vm_destroy(b);
}

int main(void) { return tap_run(); }
