/* Unit tests of the machine: devices (UART, PLIC, ACLINT, syscon, RTC) through their MMIO
 * handlers, hostile accesses, memory-size parsing, the device tree, the built-in SBI, the boot
 * loader's handling of bad kernels and initrds, and how a spinning hart waits for the others. */
#include <fcntl.h>
#include <pthread.h>
#include <time.h>
#include <libfdt.h>
#include <string.h>
#include <unistd.h>

#include "tap.h"
#include "vm/machine.h"

/* ------------------------------------------------------------------ a recorder for hart IRQs */

typedef struct irq_log {
  uint64_t mip[VM_MAX_HARTS];
} irq_log;

static void log_hart_irq(void *opaque, unsigned hart, uint64_t bit, bool level) {
  irq_log *l = opaque;
  if (level)
    l->mip[hart] |= bit;
  else
    l->mip[hart] &= ~bit;
}

typedef struct line_log {
  bool level[64];
} line_log;

static void log_line(void *opaque, unsigned irq, bool level) {
  ((line_log *)opaque)->level[irq] = level;
}

static uint64_t rd(dev_read_fn f, void *dev, uint64_t off, unsigned size) {
  uint64_t v = 0xdeadbeef;
  CHECK(f(dev, off, size, &v));
  return v;
}

/* ------------------------------------------------------------------ UART */

TEST(uart_transmits_and_raises_thre_interrupt) {
  int fds[2];
  CHECK(pipe(fds) == 0);
  line_log lines = {0};
  uart_state u;
  uart_init(&u, (dev_irq_line){log_line, &lines, 10}, fds[1]);
  CHECK_EQ(rd(uart_read, &u, 5, 1) & 0x60, 0x60); /* LSR: THRE and TEMT */
  CHECK_EQ(rd(uart_read, &u, 2, 1), 0x01);        /* IIR: no interrupt */
  CHECK(uart_write(&u, 1, 1, 0x02));              /* IER: THRI */
  CHECK(lines.level[10]);
  CHECK_EQ(rd(uart_read, &u, 2, 1), 0x02); /* IIR: THR empty; reading acknowledges it */
  CHECK(!lines.level[10]);
  CHECK_EQ(rd(uart_read, &u, 2, 1), 0x01);
  CHECK(uart_write(&u, 0, 1, 'h'));
  CHECK(uart_write(&u, 0, 1, 'i'));
  CHECK(lines.level[10]); /* THR emptied again */
  uart_flush(&u);
  char buf[8] = {0};
  CHECK_EQ(read(fds[0], buf, sizeof(buf)), 2);
  CHECK_STREQ(buf, "hi");
  close(fds[0]);
  close(fds[1]);
}

TEST(uart_receive_fifo_and_divisor_latch) {
  line_log lines = {0};
  uart_state u;
  uart_init(&u, (dev_irq_line){log_line, &lines, 10}, -1);
  CHECK(uart_write(&u, 1, 1, 0x01)); /* IER: RDI */
  CHECK(!lines.level[10]);
  uart_rx_push(&u, (const uint8_t *)"ab", 2);
  CHECK(lines.level[10]);
  CHECK_EQ(rd(uart_read, &u, 2, 1) & 0x0f, 0x04);
  CHECK_EQ(rd(uart_read, &u, 5, 1) & 1, 1);
  CHECK_EQ(rd(uart_read, &u, 0, 1), 'a');
  CHECK_EQ(rd(uart_read, &u, 0, 1), 'b');
  CHECK_EQ(rd(uart_read, &u, 5, 1) & 1, 0);
  CHECK(!lines.level[10]);
  /* the FIFO holds 16 bytes; more are dropped, not overflowed */
  uint8_t many[40];
  memset(many, 'x', sizeof(many));
  uart_rx_push(&u, many, sizeof(many));
  CHECK_EQ(uart_rx_space(&u), 0);
  /* DLAB switches offsets 0/1 to the divisor */
  CHECK(uart_write(&u, 3, 1, 0x80));
  CHECK(uart_write(&u, 0, 1, 0x34));
  CHECK(uart_write(&u, 1, 1, 0x12));
  CHECK_EQ(rd(uart_read, &u, 0, 1), 0x34);
  CHECK_EQ(rd(uart_read, &u, 1, 1), 0x12);
  CHECK_EQ(uart_rx_space(&u), 0); /* reading DLL did not consume input */
}

TEST(uart_rejects_bad_offsets_and_sizes) {
  uart_state u;
  uart_init(&u, (dev_irq_line){0}, -1);
  uint64_t v;
  CHECK(!uart_read(&u, 8, 1, &v));
  CHECK(!uart_read(&u, 0, 8, &v));
  CHECK(!uart_write(&u, 0x1000, 1, 0));
  CHECK(!uart_write(&u, UINT64_MAX, 1, 0));
}

/* ------------------------------------------------------------------ PLIC */

TEST(plic_claim_complete_priority_and_threshold) {
  irq_log log = {0};
  plic_state p;
  plic_init(&p, 2, (dev_hart_irq){log_hart_irq, &log});
  const uint64_t s_ctx1 = 3;           /* hart 1, S-mode */
  CHECK(plic_write(&p, 4 * 10, 4, 1)); /* priority(10) = 1 */
  CHECK(plic_write(&p, 4 * 11, 4, 5)); /* priority(11) = 5 */
  CHECK(plic_write(&p, 0x2000 + 0x80 * s_ctx1, 4, (1u << 10) | (1u << 11)));
  plic_set_irq(&p, 10, true);
  CHECK(log.mip[1] & DEV_MIP_SEIP);
  CHECK(!(log.mip[1] & DEV_MIP_MEIP));
  CHECK(!(log.mip[0] & (DEV_MIP_SEIP | DEV_MIP_MEIP)));
  CHECK_EQ(rd(plic_read, &p, 0x1000, 4), 1u << 10); /* pending */
  plic_set_irq(&p, 11, true);
  const uint64_t claim = 0x200000 + 0x1000 * s_ctx1 + 4;
  CHECK_EQ(rd(plic_read, &p, claim, 4), 11); /* the higher priority first */
  CHECK_EQ(rd(plic_read, &p, claim, 4), 10);
  CHECK(!(log.mip[1] & DEV_MIP_SEIP)); /* both in service */
  CHECK_EQ(rd(plic_read, &p, claim, 4), 0);
  plic_set_irq(&p, 10, false);
  CHECK(plic_write(&p, claim, 4, 10)); /* complete: line low, no new request */
  CHECK(plic_write(&p, claim, 4, 11)); /* complete: line still high: pending again */
  CHECK(log.mip[1] & DEV_MIP_SEIP);
  /* a threshold at the source's priority masks it */
  CHECK(plic_write(&p, 0x200000 + 0x1000 * s_ctx1, 4, 5));
  CHECK(!(log.mip[1] & DEV_MIP_SEIP));
  CHECK_EQ(rd(plic_read, &p, claim, 4), 0);
}

TEST(plic_ignores_hostile_accesses) {
  irq_log log = {0};
  plic_state p;
  plic_init(&p, 1, (dev_hart_irq){log_hart_irq, &log});
  uint64_t v;
  CHECK(!plic_read(&p, 0x2000 + 0x80 * 5, 4, &v));     /* context 5 does not exist */
  CHECK(!plic_write(&p, 0x200000 + 0x1000 * 7, 4, 0)); /* nor context 7 */
  CHECK(!plic_read(&p, 2, 4, &v));                     /* misaligned */
  CHECK(!plic_read(&p, 0, 1, &v));                     /* byte access */
  CHECK(!plic_write(&p, PLIC_SIZE, 4, 0));             /* beyond the window */
  CHECK(plic_write(&p, 0x200004, 4, 0xffffffff));      /* completing garbage is ignored */
  CHECK(plic_write(&p, 0, 4, 7));                      /* source 0 has no priority */
  CHECK_EQ(rd(plic_read, &p, 0, 4), 0);
  plic_set_irq(&p, 0, true);
  plic_set_irq(&p, 1000, true);
  CHECK_EQ(rd(plic_read, &p, 0x1000, 4), 0);
}

/* ------------------------------------------------------------------ ACLINT */

typedef struct fake_clock {
  irq_log log;
  uint64_t now;
} fake_clock;

static uint64_t fake_read_mtime(void *opaque) { return ((fake_clock *)opaque)->now; }
static void fake_write_mtime(void *opaque, uint64_t v) { ((fake_clock *)opaque)->now = v; }
static void fake_hart_irq(void *opaque, unsigned hart, uint64_t bit, bool level) {
  log_hart_irq(&((fake_clock *)opaque)->log, hart, bit, level);
}

TEST(aclint_timer_and_software_interrupts) {
  fake_clock clk = {.now = 1000};
  aclint_state c;
  aclint_init(&c, 2, (dev_hart_irq){fake_hart_irq, &clk}, fake_read_mtime, fake_write_mtime);
  CHECK_EQ(rd(aclint_read, &c, ACLINT_MTIME_OFF, 8), 1000);
  CHECK_EQ(rd(aclint_read, &c, ACLINT_MTIME_OFF + 4, 4), 0);
  CHECK(aclint_write(&c, ACLINT_MTIMECMP_OFF + 8, 8, 1500)); /* hart 1 */
  CHECK(!(clk.log.mip[1] & DEV_MIP_MTIP));
  CHECK_EQ(aclint_next_deadline(&c), 1500);
  clk.now = 1500;
  aclint_update_timers(&c, clk.now);
  CHECK(clk.log.mip[1] & DEV_MIP_MTIP);
  CHECK(!(clk.log.mip[0] & DEV_MIP_MTIP));
  /* writing the high half alone moves the deadline far away and clears MTIP at once */
  CHECK(aclint_write(&c, ACLINT_MTIMECMP_OFF + 12, 4, 1));
  CHECK_U64(rd(aclint_read, &c, ACLINT_MTIMECMP_OFF + 8, 8), (1ull << 32) | 1500);
  CHECK(!(clk.log.mip[1] & DEV_MIP_MTIP));
  CHECK(aclint_write(&c, 0, 4, 1)); /* MSIP hart 0 */
  CHECK(clk.log.mip[0] & DEV_MIP_MSIP);
  CHECK_EQ(rd(aclint_read, &c, 0, 4), 1);
  CHECK(aclint_write(&c, 0, 4, 0));
  CHECK(!(clk.log.mip[0] & DEV_MIP_MSIP));
  CHECK(aclint_write(&c, ACLINT_MTIME_OFF, 8, 42));
  CHECK_EQ(clk.now, 42);
  uint64_t v;
  CHECK(!aclint_read(&c, 1, 4, &v));
  CHECK(!aclint_read(&c, ACLINT_SIZE, 4, &v));
  CHECK(aclint_write(&c, 4 * 5, 4, 1)); /* msip of a hart that does not exist: ignored */
  CHECK_EQ(clk.log.mip[1] & DEV_MIP_MSIP, 0);
}

/* ------------------------------------------------------------------ syscon, RTC */

TEST(syscon_poweroff_reset_and_fail) {
  syscon_state s;
  syscon_init(&s);
  CHECK(syscon_write(&s, 0, 4, 0x1234));
  CHECK_EQ(s.request, SYSCON_NONE);
  CHECK(syscon_write(&s, 0, 4, SYSCON_POWEROFF));
  CHECK_EQ(s.request, SYSCON_REQ_POWEROFF);
  CHECK(syscon_write(&s, 0, 4, SYSCON_RESET));
  CHECK_EQ(s.request, SYSCON_REQ_RESET);
  CHECK(syscon_write(&s, 0, 4, (7u << 16) | SYSCON_FAIL));
  CHECK_EQ(s.request, SYSCON_REQ_FAIL);
  CHECK_EQ(s.fail_code, 7);
  CHECK(!syscon_write(&s, SYSCON_SIZE, 4, SYSCON_POWEROFF));
}

TEST(rtc_reads_host_time_and_fires_alarm) {
  line_log lines = {0};
  rtc_state r;
  rtc_init(&r, (dev_irq_line){log_line, &lines, 11});
  uint64_t lo = rd(rtc_read, &r, 0x00, 4), hi = rd(rtc_read, &r, 0x04, 4);
  uint64_t ns = lo | (hi << 32);
  uint64_t host = (uint64_t)time(NULL) * 1000000000ull;
  CHECK(ns > host - 5000000000ull && ns < host + 5000000000ull);
  /* an alarm in the past fires at once when enabled */
  CHECK(rtc_write(&r, 0x0c, 4, 0));
  CHECK(rtc_write(&r, 0x08, 4, 1));
  CHECK(rtc_write(&r, 0x10, 4, 1));
  CHECK(lines.level[11]);
  CHECK(rtc_write(&r, 0x1c, 4, 1));
  CHECK(!lines.level[11]);
  /* setting the clock moves what the guest reads */
  CHECK(rtc_write(&r, 0x04, 4, 0));
  CHECK(rtc_write(&r, 0x00, 4, 1000));
  CHECK(rd(rtc_read, &r, 0x00, 4) < 1000000000u);
  uint64_t v;
  CHECK(!rtc_read(&r, 2, 4, &v));
  CHECK(!rtc_write(&r, RTC_SIZE, 4, 0));
}

/* ------------------------------------------------------------------ memory sizes */

TEST(mem_size_parsing) {
  uint64_t v = 0;
  CHECK_EQ(vm_parse_mem_size("512M", &v, NULL), 0);
  CHECK_U64(v, 512ull << 20);
  CHECK_EQ(vm_parse_mem_size("2G", &v, NULL), 0);
  CHECK_U64(v, 2ull << 30);
  CHECK_EQ(vm_parse_mem_size("1GiB", &v, NULL), 0);
  CHECK_U64(v, 1ull << 30);
  CHECK_EQ(vm_parse_mem_size("256", &v, NULL), 0); /* MiB, as QEMU's -m */
  CHECK_U64(v, 256ull << 20);
  const char *bad[] = {"0", "", "-1", "12Q", "1000000T", "18446744073709551616", "512K", "abc"};
  for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
    _cleanup_error_ vs_error *err = NULL;
    CHECK_EQ(vm_parse_mem_size(bad[i], &v, &err), -1);
    CHECK(err != NULL);
    CHECK_CONTAINS(err->msg, "memory size");
  }
}

/* ------------------------------------------------------------------ device tree, SBI, boot */

/* A machine without harts running: enough for the device tree and the SBI. */
static vm *test_vm(const char *kernel, const char *initrd, unsigned smp, uint64_t mem,
                   vs_error **err) {
  vm_config cfg;
  vm_config_init(&cfg);
  cfg.kernel = kernel;
  cfg.initrd = initrd;
  cfg.smp = smp;
  cfg.mem_size = mem;
  cfg.console_in = -1;
  cfg.console_out = -1;
  return vm_create(&cfg, err);
}

/* A minimal RISC-V Image: the 64-byte header and a few bytes of "code". */
static char *write_image(uint64_t image_size) {
  char *path = vs_strdup("/tmp/vessel-test-image-XXXXXX");
  int fd = mkstemp(path);
  CHECK(fd >= 0);
  uint8_t img[4096] = {0};
  for (int i = 0; i < 8; i++)
    img[0x10 + i] = (uint8_t)(image_size >> (8 * i));
  memcpy(img + 0x30, "RISCV\0\0\0", 8);
  memcpy(img + 0x38, "RSC\x05", 4);
  CHECK_EQ(write(fd, img, sizeof(img)), (long long)sizeof(img));
  close(fd);
  return path;
}

TEST(device_tree_describes_the_machine) {
  _cleanup_free_ char *kernel = write_image(0x100000);
  _cleanup_error_ vs_error *err = NULL;
  vm *m = test_vm(kernel, NULL, 3, 64ull << 20, &err);
  unlink(kernel);
  CHECK(m != NULL);
  const void *fdt = vm_ram_ptr(m, m->fdt_addr);
  CHECK_EQ(fdt_check_header(fdt), 0);
  int len;
  const char *isa = fdt_getprop(fdt, fdt_path_offset(fdt, "/cpus/cpu@2"), "riscv,isa", &len);
  CHECK_STREQ(isa, RV_ISA_STRING_H); /* the hypervisor extension is on by default */
  CHECK(fdt_path_offset(fdt, "/cpus/cpu@3") < 0);
  const fdt32_t *tb = fdt_getprop(fdt, fdt_path_offset(fdt, "/cpus"), "timebase-frequency", &len);
  CHECK(tb != NULL);
  CHECK_EQ(fdt32_to_cpu(*tb), 10000000);
  int plic = fdt_path_offset(fdt, "/soc/plic@c000000");
  CHECK(plic >= 0);
  CHECK_EQ(fdt_node_check_compatible(fdt, plic, "sifive,plic-1.0.0"), 0);
  const void *ie = fdt_getprop(fdt, plic, "interrupts-extended", &len);
  CHECK(ie != NULL);
  CHECK_EQ(len, 3 * 4 * 4); /* two contexts per hart */
  CHECK_EQ(
      fdt_node_check_compatible(fdt, fdt_path_offset(fdt, "/soc/clint@2000000"), "sifive,clint0"),
      0);
  CHECK(fdt_path_offset(fdt, "/soc/serial@10000000") >= 0);
  CHECK(fdt_path_offset(fdt, "/soc/rtc@101000") >= 0);
  CHECK(fdt_path_offset(fdt, "/poweroff") >= 0);
  const char *stdout_path = fdt_getprop(fdt, fdt_path_offset(fdt, "/chosen"), "stdout-path", &len);
  CHECK_STREQ(stdout_path, "/soc/serial@10000000");
  const fdt64_t *reg = fdt_getprop(fdt, fdt_path_offset(fdt, "/memory@80000000"), "reg", &len);
  CHECK(reg != NULL);
  CHECK_U64(fdt64_ld(&reg[1]), 64ull << 20); /* a property is only 4-byte aligned */
  /* the kernel sits at 2 MiB and only hart 0 runs (the others wait for SBI HSM) */
  CHECK_U64(m->harts[0].pc, VM_RAM_BASE + VM_KERNEL_OFFSET);
  CHECK_U64(m->harts[0].x[11], m->fdt_addr);
  CHECK_EQ(m->hsm[0], HSM_STARTED);
  CHECK_EQ(m->hsm[1], HSM_STOPPED);
  vm_destroy(m);
}

static void sbi(vm *m, unsigned hart, uint64_t eid, uint64_t fid, uint64_t a0, uint64_t a1,
                uint64_t a2) {
  rv_hart *h = &m->harts[hart];
  h->x[17] = eid;
  h->x[16] = fid;
  h->x[10] = a0;
  h->x[11] = a1;
  h->x[12] = a2;
  CHECK(vm_sbi_call(m, h));
}

/* --cpu rv64,h=off: misa, the device tree and the extension list all lack H. */
TEST(device_tree_without_the_hypervisor_extension) {
  _cleanup_free_ char *kernel = write_image(0x100000);
  _cleanup_error_ vs_error *err = NULL;
  vm_config cfg;
  vm_config_init(&cfg);
  cfg.kernel = kernel;
  cfg.smp = 1;
  cfg.mem_size = 64ull << 20;
  cfg.console_in = -1;
  cfg.console_out = -1;
  cfg.no_hypervisor = true;
  vm *m = vm_create(&cfg, &err);
  unlink(kernel);
  CHECK(m != NULL);
  const void *fdt = vm_ram_ptr(m, m->fdt_addr);
  int cpu = fdt_path_offset(fdt, "/cpus/cpu@0"), len;
  CHECK_STREQ(fdt_getprop(fdt, cpu, "riscv,isa", &len), RV_ISA_STRING);
  const char *ext = fdt_getprop(fdt, cpu, "riscv,isa-extensions", &len);
  CHECK(ext != NULL);
  for (const char *e = ext; e < ext + len; e += strlen(e) + 1)
    CHECK(strcmp(e, "h") != 0);
  CHECK_U64(m->harts[0].misa & (1ULL << 7), 0);
  sbi(m, 0, 0x52464E43, 4, 1, 0, 0); /* remote HFENCE.GVMA: not without H */
  CHECK_EQ((int64_t)m->harts[0].x[10], -2);
  vm_destroy(m);
}

TEST(sbi_base_hsm_ipi_and_srst) {
  _cleanup_free_ char *kernel = write_image(0x100000);
  _cleanup_error_ vs_error *err = NULL;
  vm *m = test_vm(kernel, NULL, 2, 64ull << 20, &err);
  unlink(kernel);
  CHECK(m != NULL);
  sbi(m, 0, 0x10, 0, 0, 0, 0); /* get_spec_version */
  CHECK_EQ(m->harts[0].x[10], 0);
  CHECK_U64(m->harts[0].x[11], 2u << 24);
  sbi(m, 0, 0x10, 3, 0x4442434E, 0, 0); /* probe DBCN */
  CHECK_EQ(m->harts[0].x[11], 1);
  sbi(m, 0, 0x10, 3, 0x12345678, 0, 0); /* probe something unknown */
  CHECK_EQ(m->harts[0].x[11], 0);
  sbi(m, 0, 0x48534D, 2, 1, 0, 0); /* hart 1 status: stopped */
  CHECK_EQ(m->harts[0].x[11], HSM_STOPPED);
  sbi(m, 0, 0x48534D, 0, 1, VM_RAM_BASE + 0x400000, 0x55); /* start hart 1 */
  CHECK_EQ(m->harts[0].x[10], 0);
  /* with a thread per hart, hart 1's own thread resets it: here nothing runs, so do it */
  CHECK_EQ(m->hsm[1], m->threads.on ? HSM_START_PENDING : HSM_STARTED);
  if (m->hsm[1] == HSM_START_PENDING)
    vm_hart_begin(m, 1);
  CHECK_EQ(m->hsm[1], HSM_STARTED);
  CHECK_U64(m->harts[1].pc, VM_RAM_BASE + 0x400000);
  CHECK_EQ(m->harts[1].x[10], 1);
  CHECK_EQ(m->harts[1].x[11], 0x55);
  CHECK_EQ(m->harts[1].priv, RV_PRIV_S);
  sbi(m, 0, 0x48534D, 0, 1, VM_RAM_BASE, 0); /* already started */
  CHECK_EQ((int64_t)m->harts[0].x[10], -6);
  sbi(m, 0, 0x48534D, 0, 7, VM_RAM_BASE, 0); /* no such hart */
  CHECK_EQ((int64_t)m->harts[0].x[10], -3);
  sbi(m, 0, 0x48534D, 0, 1, 0x1000, 0); /* start address outside RAM */
  CHECK((int64_t)m->harts[0].x[10] < 0);
  sbi(m, 0, 0x735049, 0, 2, 0, 0); /* IPI to hart 1: posted, taken by hart 1 itself */
  rv_hart_serve_requests(&m->harts[1]);
  CHECK(m->harts[1].mip & RV_MIP_SSIP);
  CHECK(!(m->harts[0].mip & RV_MIP_SSIP));
  sbi(m, 0, 0x735049, 0, 1, 5, 0); /* IPI to hart 5: invalid */
  CHECK_EQ((int64_t)m->harts[0].x[10], -3);
  sbi(m, 1, 0x48534D, 1, 0, 0, 0); /* hart 1 stops itself */
  CHECK_EQ(m->hsm[1], HSM_STOPPED);
  sbi(m, 0, 0x4442434E, 0, 16, UINT64_MAX - 4, 0); /* DBCN write from a wrapping address */
  CHECK_EQ((int64_t)m->harts[0].x[10], -3);
  sbi(m, 0, 0x52464E43, 4, 1, 0, 0); /* HFENCE.GVMA on the caller: the harts have H */
  CHECK_EQ(m->harts[0].x[10], 0);
  sbi(m, 0, 0x52464E43, 7, 1, 0, 0); /* no such RFENCE function */
  CHECK_EQ((int64_t)m->harts[0].x[10], -2);
  sbi(m, 0, 0x54494D45, 0, 12345, 0, 0); /* set_timer */
  CHECK_EQ(rv_hart_next_timer(&m->harts[0]), 12345);
  CHECK(!m->stop);
  sbi(m, 0, 0x53525354, 0, 0, 0, 0); /* SRST shutdown */
  CHECK(m->stop);
  CHECK_EQ(m->exit_reason, VM_EXIT_POWEROFF);
  vm_destroy(m);
}

TEST(the_clock_offers_its_pace_and_withdraws_it_when_it_jumps) {
  _cleanup_free_ char *kernel = write_image(0x100000);
  _cleanup_error_ vs_error *err = NULL;
  vm *m = test_vm(kernel, NULL, 1, 64ull << 20, &err);
  unlink(kernel);
  CHECK(m != NULL);
  CHECK(m->bus.mtime_pace == &m->pace);
  /* measured over the first clock reads of VM_PACE_SPAN_NS, where the kernel's clock is the TSC */
  struct timespec wait = {.tv_nsec = 30000000};
  nanosleep(&wait, NULL);
  uint64_t before = vm_read_mtime(m);
  if (m->pace.cycles_per_tick) {
    /* a lower bound of the real pace: 10 ms of mtime take at least that many cycles */
    uint64_t c0 = rv_cycles(), t0 = vm_read_mtime(m);
    wait.tv_nsec = 10000000;
    nanosleep(&wait, NULL);
    /* mtime before the cycles at the end (after them at the start): a preemption between the
     * two reads can only widen the cycles' span, never make the check fail on a loaded host */
    uint64_t t1 = vm_read_mtime(m), c1 = rv_cycles();
    CHECK(c1 - c0 >= (t1 - t0 - 1) * m->pace.cycles_per_tick);
  }
  /* a jump of mtime (a guest's write, a snapshot's restore) moves the generation */
  uint32_t gen = m->pace.gen;
  vm_set_mtime(m, before + 100000000);
  CHECK(m->pace.gen != gen);
  CHECK(vm_read_mtime(m) >= before + 100000000);
  vm_destroy(m);
}

TEST(boot_rejects_bad_kernels_and_initrds) {
  _cleanup_error_ vs_error *err = NULL;
  char junk[] = "/tmp/vessel-test-junk-XXXXXX";
  int fd = mkstemp(junk);
  CHECK(fd >= 0);
  CHECK_EQ(write(fd, "not a kernel, just some text that is long enough to have a header....", 70),
           70);
  close(fd);
  CHECK(test_vm(junk, NULL, 1, 64ull << 20, &err) == NULL);
  CHECK_CONTAINS(err->msg, "neither a RISC-V Linux Image nor an ELF");
  vs_error_freep(&err);

  /* an Image whose bss does not fit */
  _cleanup_free_ char *big = write_image(512ull << 20);
  CHECK(test_vm(big, NULL, 1, 64ull << 20, &err) == NULL);
  CHECK_CONTAINS(err->msg, "more than the 64 MiB of RAM");
  vs_error_freep(&err);
  unlink(big);

  /* an initrd larger than RAM */
  _cleanup_free_ char *kernel = write_image(0x100000);
  CHECK(truncate(junk, 80ll << 20) == 0);
  CHECK(test_vm(kernel, junk, 1, 64ull << 20, &err) == NULL);
  CHECK_CONTAINS(err->msg, "does not fit in RAM");
  vs_error_freep(&err);

  /* an initrd that fits lands page-aligned above the kernel, below the device tree */
  CHECK(truncate(junk, 1 << 20) == 0);
  vm *m = test_vm(kernel, junk, 1, 64ull << 20, &err);
  CHECK(m != NULL);
  CHECK_EQ(m->initrd_end - m->initrd_start, 1 << 20);
  CHECK_EQ(m->initrd_start & 0xfff, 0);
  CHECK(m->initrd_start >= m->kernel_end);
  CHECK(m->initrd_end <= m->fdt_addr);
  vm_destroy(m);
  unlink(junk);
  unlink(kernel);
}

/* ------------------------------------------------------------------ spinning harts */

typedef struct progress_waiter {
  vm *m;
  unsigned self;
  uint32_t seen;
  bool any;
  bool woken;
} progress_waiter;

static void *wait_progress_thread(void *arg) {
  progress_waiter *w = arg;
  /* an hour: only vm_harts_progress ends this wait within the test's time */
  w->woken = vm_harts_wait_progress(w->m, w->self, w->seen, w->any, 3600ll * 1000000000);
  return NULL;
}

static void start_waiter(pthread_t *th, progress_waiter *w) {
  CHECK_EQ(pthread_create(th, NULL, wait_progress_thread, w), 0);
  while (__atomic_load_n(&w->m->threads.sleepers, __ATOMIC_ACQUIRE) == 0)
    usleep(1000);
}

/* A hart whose guest spins sleeps on the machine's progress word (harts.c): it wakes when
 * another hart did work or something was asked of it, and does not sleep when that happened
 * before it went to sleep (no lost wake-up). One that waits only for what is asked of it (it was
 * woken for nothing too often) sleeps through the other harts' work. */
TEST(spinning_harts_sleep_until_another_makes_progress) {
  _cleanup_free_ char *kernel = write_image(0x100000);
  _cleanup_error_ vs_error *err = NULL;
  vm *m = test_vm(kernel, NULL, 3, 64ull << 20, &err);
  unlink(kernel);
  CHECK(m != NULL);
  CHECK(m->threads.on); /* several harts: a thread each */
  const int64_t hour = 3600ll * 1000000000;

  /* nobody makes progress: the timeout ends the wait */
  uint32_t seen = __atomic_load_n(&m->threads.progress, __ATOMIC_ACQUIRE);
  CHECK(!vm_harts_wait_progress(m, 1, seen, true, 1000000));
  CHECK_EQ(__atomic_load_n(&m->threads.sleepers, __ATOMIC_ACQUIRE), 0);

  /* a sleeper for any progress is woken by another hart's work */
  progress_waiter w = {.m = m, .self = 1, .seen = seen, .any = true};
  pthread_t th;
  start_waiter(&th, &w);
  vm_harts_progress(m, VM_PROGRESS_ANY);
  CHECK_EQ(pthread_join(th, NULL), 0);
  CHECK(w.woken);
  CHECK_EQ(__atomic_load_n(&m->threads.sleepers, __ATOMIC_ACQUIRE), 0);
  CHECK_EQ(__atomic_load_n(&m->threads.sleepers_any, __ATOMIC_ACQUIRE), 0);

  /* progress made before the wait: no sleep at all (an hour would time the test out) */
  CHECK(vm_harts_wait_progress(m, 1, seen, true, hour));
  CHECK(vm_harts_wait_progress(m, 1, seen, false, hour));

  /* a sleeper for its own requests sleeps through others' work (while a sleeper for any
   * progress beside it wakes) and through a request to another hart, and wakes for one to
   * itself (an IPI's wake-up) */
  w = (progress_waiter){.m = m, .self = 1, .any = false};
  w.seen = __atomic_load_n(&m->threads.progress, __ATOMIC_ACQUIRE);
  start_waiter(&th, &w);
  progress_waiter w2 = {.m = m, .self = 2, .seen = w.seen, .any = true};
  pthread_t th2;
  CHECK_EQ(pthread_create(&th2, NULL, wait_progress_thread, &w2), 0);
  while (__atomic_load_n(&m->threads.sleepers, __ATOMIC_ACQUIRE) < 2)
    usleep(1000);
  vm_harts_progress(m, VM_PROGRESS_ANY);
  CHECK_EQ(pthread_join(th2, NULL), 0);
  CHECK(w2.woken);
  vm_wake_hart(m, 2);
  usleep(20000);
  CHECK_EQ(__atomic_load_n(&m->threads.sleepers, __ATOMIC_ACQUIRE), 1); /* still asleep */
  vm_wake_hart(m, 1);
  CHECK_EQ(pthread_join(th, NULL), 0);
  CHECK(w.woken);

  /* what else is asked of a hart wakes it too: a TLB shootdown, an HSM start, a stop */
  w.seen = __atomic_load_n(&m->threads.progress, __ATOMIC_ACQUIRE);
  start_waiter(&th, &w);
  (void)vm_hart_ask_tlb_flush(m, 1);
  CHECK_EQ(pthread_join(th, NULL), 0);
  w.seen = __atomic_load_n(&m->threads.progress, __ATOMIC_ACQUIRE);
  start_waiter(&th, &w);
  vm_hart_start(m, 1);
  CHECK_EQ(pthread_join(th, NULL), 0);
  w.seen = __atomic_load_n(&m->threads.progress, __ATOMIC_ACQUIRE);
  start_waiter(&th, &w);
  vm_request_exit(m, VM_EXIT_POWEROFF, 0);
  CHECK_EQ(pthread_join(th, NULL), 0);
  CHECK(w.woken);
  vm_destroy(m);
}

int main(void) { return tap_run(); }
