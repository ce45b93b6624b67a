/* The machine, assembled in one place: guest RAM, the physical address map of the devices, the
 * clock, the console, and the run loop that drives the harts.
 *
 * With several harts each runs on its own host thread (harts.c) unless --hart-threads off; then,
 * and with one hart, harts run round-robin on the calling thread, each for a slice of
 * instructions. When every running hart waits in WFI the loop sleeps in ppoll() on its I/O
 * sources (console, network backends, control socket) until the earliest timer deadline, so an
 * idle guest costs (nearly) no host CPU.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "vm/machine.h"

/* Instructions a hart runs before the loop looks at devices, timers and other harts. Small
 * enough that IPIs between harts and console input are served within a fraction of a
 * millisecond, large enough that the loop's own cost does not show. */
#define VM_SLICE_SMP 20000
#define VM_SLICE_UP 100000
/* Longest single sleep when idle: bounds the latency of anything we do not poll for. */
#define VM_MAX_SLEEP_NS 100000000ll

#define CTRL_A 0x01
/* Console input read at once (the UART takes 16 bytes, virtio-console more) */
#define VM_CONSOLE_READ_MAX 256

static void vm_console_prepare(void *opaque, vm_pollset *ps);
static void vm_console_dispatch(void *opaque, const vm_pollset *ps);
static void vm_emit_event(vm *m, const char *event);
static void vm_call_run_ended_hooks(vm *m);
static void vm_call_destroy_hooks(vm *m);

/* ------------------------------------------------------------------ clock */

static int64_t monotonic_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* mtime's pace (rv_mtime_pace) is measured over the first VM_PACE_SPAN_NS of clock reads, and
 * offered with a margin of 1/VM_PACE_MARGIN below the measured cycles per tick (the clock may be
 * slewed by NTP, ~0.05%, and the two reads at each end are not simultaneous). */
#define VM_PACE_SPAN_NS 20000000
#define VM_PACE_MARGIN 64

/* Whether the host's cycle counter runs at a constant rate with the clock: the kernel keeps its
 * clock on the TSC only then (a TSC it distrusts is replaced by another clocksource). */
static bool vm_cycles_follow_clock(void) {
#if defined(__x86_64__)
  char src[16] = "";
  FILE *f = fopen("/sys/devices/system/clocksource/clocksource0/current_clocksource", "re");
  if (!f)
    return false;
  bool tsc = fgets(src, sizeof(src), f) && strcmp(src, "tsc\n") == 0;
  fclose(f);
  return tsc;
#else
  return false;
#endif
}

static void vm_start_pace(vm *m) {
  if (!vm_cycles_follow_clock())
    return;
  m->pace_start_cycles = rv_cycles();
  m->pace_start_ns = monotonic_ns();
  m->pace_measuring = true;
}

/* Once VM_PACE_SPAN_NS have passed since vm_start_pace, offer the harts mtime's pace. */
static void vm_measure_pace(vm *m) {
  uint64_t cycles = rv_cycles();
  int64_t span = monotonic_ns() - m->pace_start_ns;
  if (span < VM_PACE_SPAN_NS || !__atomic_exchange_n(&m->pace_measuring, false, __ATOMIC_ACQ_REL))
    return;
  /* the cycles read before the clock: if anything, fewer cycles per ns than the truth */
  uint64_t per_tick =
      (cycles - m->pace_start_cycles) * (1000000000 / VM_TIMEBASE_HZ) / (uint64_t)span;
  per_tick -= per_tick / VM_PACE_MARGIN + 1;
  if (per_tick > 0 && per_tick < (1ULL << 24) && !m->rr)
    __atomic_store_n(&m->pace.cycles_per_tick, per_tick, __ATOMIC_RELEASE);
}

/* Record/replay drives the guest's clock from its log: no pace is offered again, and the harts
 * forget what they inferred from the host's. */
static void vm_stop_pace(vm *m) {
  __atomic_store_n(&m->pace_measuring, false, __ATOMIC_RELEASE);
  __atomic_store_n(&m->pace.cycles_per_tick, 0, __ATOMIC_RELEASE);
  __atomic_add_fetch(&m->pace.gen, 1, __ATOMIC_ACQ_REL);
}

/* Every hart thread reads the clock; the big lock's holder sets it: the fields are atomics. */
uint64_t vm_read_mtime(void *opaque) {
  vm *m = opaque;
  if (m->rr) {
    if (__builtin_expect(__atomic_load_n(&m->pace.cycles_per_tick, __ATOMIC_RELAXED) ||
                             __atomic_load_n(&m->pace_measuring, __ATOMIC_RELAXED),
                         0))
      vm_stop_pace(m);
    return m->rr_mtime;
  }
  if (__atomic_load_n(&m->paused, __ATOMIC_ACQUIRE))
    return m->paused_mtime;
  if (__builtin_expect(__atomic_load_n(&m->pace_measuring, __ATOMIC_RELAXED), 0))
    vm_measure_pace(m);
  return vm_host_mtime(m);
}

uint64_t vm_host_mtime(const vm *m) {
  int64_t epoch = __atomic_load_n(&m->mtime_epoch_ns, __ATOMIC_RELAXED);
  /* unsigned: a guest (or a snapshot) may set any mtime, the arithmetic wraps instead of
   * overflowing */
  return ((uint64_t)monotonic_ns() - (uint64_t)epoch) / (1000000000 / VM_TIMEBASE_HZ);
}

void vm_set_mtime(vm *m, uint64_t mtime) {
  int64_t epoch = (int64_t)((uint64_t)monotonic_ns() - mtime * (1000000000 / VM_TIMEBASE_HZ));
  __atomic_store_n(&m->mtime_epoch_ns, epoch, __ATOMIC_RELAXED);
  if (m->rr) {
    m->rr_mtime = mtime;
    vm_stop_pace(m);
  }
  if (m->paused)
    m->paused_mtime = mtime;
  /* mtime jumped: what the harts inferred from its pace no longer holds */
  __atomic_add_fetch(&m->pace.gen, 1, __ATOMIC_ACQ_REL);
}

static void vm_write_mtime(void *opaque, uint64_t val) { vm_set_mtime(opaque, val); }

/* ------------------------------------------------------------------ memory map */

bool vm_ram_range_ok(const vm *m, uint64_t paddr, uint64_t len) {
  return paddr >= VM_RAM_BASE && paddr - VM_RAM_BASE <= m->ram_size &&
         len <= m->ram_size - (paddr - VM_RAM_BASE);
}

static void vm_map_device(vm *m, const char *name, uint64_t base, uint64_t size, void *dev,
                          dev_read_fn read, dev_write_fn write) {
  /* the table is sized for every device the machine has; overflowing it is a programming error */
  if (m->num_regions == VM_MAX_REGIONS)
    abort();
  m->regions[m->num_regions++] = (dev_region){name, base, size, dev, read, write};
}

static const dev_region *vm_find_region(const vm *m, uint64_t paddr, unsigned size) {
  for (unsigned i = 0; i < m->num_regions; i++) {
    const dev_region *r = &m->regions[i];
    if (paddr >= r->base && paddr - r->base < r->size && size <= r->size - (paddr - r->base))
      return r;
  }
  return NULL;
}

static bool vm_mmio_read_locked(vm *m, uint64_t paddr, unsigned size, uint64_t *val) {
  const dev_region *r = vm_find_region(m, paddr, size);
  if (!r) {
    if (m->cfg.trace)
      fprintf(stderr, "vmm: read of unmapped address 0x%llx (%u bytes)\n",
              (unsigned long long)paddr, size);
    return false;
  }
  return r->read(r->dev, paddr - r->base, size, val);
}

/* Harts on their own threads reach the devices one at a time, under the big lock. */
static bool vm_mmio_read(void *opaque, uint64_t paddr, unsigned size, uint64_t *val) {
  vm *m = opaque;
  vm_big_lock(m);
  bool ok = vm_mmio_read_locked(m, paddr, size, val);
  vm_big_unlock(m);
  return ok;
}

static void vm_check_syscon(vm *m) {
  switch (m->syscon.request) {
  case SYSCON_NONE:
    return;
  case SYSCON_REQ_POWEROFF:
    vm_request_exit(m, VM_EXIT_POWEROFF, 0);
    break;
  case SYSCON_REQ_RESET:
    vm_request_exit(m, VM_EXIT_RESET, 0);
    break;
  case SYSCON_REQ_FAIL:
    vm_request_exit(m, VM_EXIT_FAIL, (int)m->syscon.fail_code);
    break;
  }
  m->syscon.request = SYSCON_NONE;
}

/* Does this device write want the I/O thread to prepare its sources again? New virtio buffers
 * and the like do; console output does once a line is complete or the buffer fills (a kick per
 * character would cost the I/O thread a wake-up and a write per character of the boot log;
 * a partial line waits for the next round, at most 100 ms). The CLINT and PLIC never do. */
static bool vm_write_wants_io(const vm *m, const dev_region *r, uint64_t off, uint64_t val) {
  if (r->dev == &m->aclint || r->dev == &m->plic)
    return false;
  if (r->dev == &m->uart)
    return (off == 0 && val == '\n') || m->uart.tx_len >= sizeof(m->uart.tx) / 2;
  return true;
}

static bool vm_mmio_write_locked(vm *m, uint64_t paddr, unsigned size, uint64_t val) {
  const dev_region *r = vm_find_region(m, paddr, size);
  if (!r) {
    if (m->cfg.trace)
      fprintf(stderr, "vmm: write of unmapped address 0x%llx (%u bytes)\n",
              (unsigned long long)paddr, size);
    return false;
  }
  bool ok = r->write(r->dev, paddr - r->base, size, val);
  if (r->dev == &m->syscon)
    vm_check_syscon(m);
  if (vm_write_wants_io(m, r, paddr - r->base, val))
    vm_kick_io(m);
  return ok;
}

static bool vm_mmio_write(void *opaque, uint64_t paddr, unsigned size, uint64_t val) {
  vm *m = opaque;
  vm_big_lock(m);
  bool ok = vm_mmio_write_locked(m, paddr, size, val);
  vm_big_unlock(m);
  return ok;
}

/* ------------------------------------------------------------------ interrupts and exits */

static void vm_set_hart_irq(void *machine, unsigned hart, uint64_t mip_bit, bool level) {
  vm *m = machine;
  if (hart >= m->nharts)
    return;
  if (!m->threads.on) {
    rv_hart_set_irq(&m->harts[hart], mip_bit, level);
    return;
  }
  /* another thread's hart: its run is cut short to look at the line, or it wakes from WFI */
  if (rv_hart_post_irq(&m->harts[hart], mip_bit, level))
    vm_wake_hart(m, hart);
}

void vm_request_exit(vm *m, vm_exit_reason reason, int code) {
  if (__atomic_load_n(&m->stop, __ATOMIC_ACQUIRE))
    return; /* the first reason wins (callers hold the big lock: no two race here) */
  m->exit_reason = reason;
  m->exit_code = code;
  __atomic_store_n(&m->stop, true, __ATOMIC_RELEASE);
  /* record/replay: the hart ends its slice where its budget says, not where it notices */
  for (unsigned h = 0; h < m->nharts && !m->rr; h++) {
    __atomic_store_n(&m->harts[h].stop_request, true, __ATOMIC_RELAXED);
    vm_wake_hart(m, h);
  }
  vm_kick_io(m);
}

/* ------------------------------------------------------------------ construction */

void vm_config_init(vm_config *cfg) {
  memset(cfg, 0, sizeof(*cfg));
  cfg->bios = VM_BIOS_BUILTIN;
  cfg->mem_size = VM_DEFAULT_MEM;
  cfg->smp = 1;
  cfg->console_in = 0;
  cfg->console_out = 1;
}

int vm_parse_mem_size(const char *s, uint64_t *out, vs_error **err) {
  if (!s || !*s)
    return vs_error_set(err, 0, "memory size is empty");
  errno = 0;
  char *end;
  if (*s == '-')
    return vs_error_set(err, 0, "memory size '%s' is negative", s);
  unsigned long long v = strtoull(s, &end, 10);
  if (end == s || errno)
    return vs_error_set(err, 0, "memory size '%s' is not a number", s);
  unsigned shift = 20; /* a plain number means MiB, as in QEMU's -m */
  switch (*end) {
  case 'k':
  case 'K':
    shift = 10;
    end++;
    break;
  case 'm':
  case 'M':
    shift = 20;
    end++;
    break;
  case 'g':
  case 'G':
    shift = 30;
    end++;
    break;
  case 't':
  case 'T':
    shift = 40;
    end++;
    break;
  case 'b':
  case 'B':
    shift = 0;
    end++;
    break;
  default:
    break;
  }
  if (shift && (*end == 'i' || *end == 'I') && (end[1] == 'b' || end[1] == 'B'))
    end += 2;
  else if (shift && (*end == 'b' || *end == 'B'))
    end++;
  if (*end)
    return vs_error_set(err, 0, "memory size '%s' has an unknown suffix (use K, M, G or T)", s);
  if (v == 0)
    return vs_error_set(err, 0, "memory size '%s' is zero", s);
  if (v > (VM_MAX_MEM >> shift))
    return vs_error_set(err, 0, "memory size '%s' is larger than the maximum of %llu GiB", s,
                        (unsigned long long)(VM_MAX_MEM >> 30));
  v <<= shift;
  if (v < VM_MIN_MEM)
    return vs_error_set(err, 0, "memory size '%s' is smaller than the minimum of %llu MiB", s,
                        (unsigned long long)(VM_MIN_MEM >> 20));
  if (v & 0xfff)
    return vs_error_set(err, 0, "memory size '%s' is not a multiple of 4 KiB", s);
  *out = v;
  return 0;
}

static int vm_check_config(const vm_config *cfg, vs_error **err) {
  if (!cfg->kernel)
    return vs_error_set(err, 0, "no kernel given (--kernel PATH)");
  if (cfg->smp < 1 || cfg->smp > VM_MAX_SMP)
    return vs_error_set(err, 0, "number of harts %u is out of range 1..%d", cfg->smp, VM_MAX_SMP);
  if (cfg->mem_size < VM_MIN_MEM || cfg->mem_size > VM_MAX_MEM || (cfg->mem_size & 0xfff))
    return vs_error_set(err, 0, "memory size %llu bytes is out of range or not page aligned",
                        (unsigned long long)cfg->mem_size);
  if (cfg->bios == VM_BIOS_FILE && !cfg->bios_path)
    return vs_error_set(err, 0, "no firmware path given");
  if (cfg->ndisks > VM_MAX_DISKS)
    return vs_error_set(err, 0, "too many disks (%u, at most %d)", cfg->ndisks, VM_MAX_DISKS);
  if (cfg->htif && cfg->bios != VM_BIOS_NONE)
    return vs_error_set(err, 0, "--htif needs --bios none (bare-metal test programs)");
  return 0;
}

static void vm_wire_devices(vm *m) {
  dev_hart_irq hart_irq = {vm_set_hart_irq, m};
  plic_init(&m->plic, m->nharts, hart_irq);
  uart_init(&m->uart, (dev_irq_line){plic_set_irq, &m->plic, VM_UART_IRQ}, m->cfg.console_out);
  aclint_init(&m->aclint, m->nharts, hart_irq, vm_read_mtime, vm_write_mtime);
  syscon_init(&m->syscon);
  rtc_init(&m->rtc, (dev_irq_line){plic_set_irq, &m->plic, VM_RTC_IRQ});

  /* most frequently accessed first: the lookup is a linear scan */
  vm_map_device(m, "uart", VM_UART_BASE, VM_UART_SIZE, &m->uart, uart_read, uart_write);
  vm_map_device(m, "plic", VM_PLIC_BASE, PLIC_SIZE, &m->plic, plic_read, plic_write);
  vm_map_device(m, "clint", VM_ACLINT_BASE, ACLINT_SIZE, &m->aclint, aclint_read, aclint_write);
  vm_map_device(m, "rtc", VM_RTC_BASE, RTC_SIZE, &m->rtc, rtc_read, rtc_write);
  vm_map_device(m, "syscon", VM_SYSCON_BASE, SYSCON_SIZE, &m->syscon, syscon_read, syscon_write);
}

int vm_virtio_claim(vm *m, const char *what, vm_virtio_slot *slot, vs_error **err) {
  if (m->num_virtio == VM_MAX_VIRTIO)
    return vs_error_set(err, 0, "%s: no free virtio-mmio slot (at most %d devices)", what,
                        VM_MAX_VIRTIO);
  slot->base = VM_VIRTIO_BASE + (uint64_t)m->num_virtio * VM_VIRTIO_SIZE;
  slot->irq = VM_VIRTIO_IRQ_FIRST + m->num_virtio;
  m->virtio[m->num_virtio++] = *slot;
  return 0;
}

dev_irq_line vm_virtio_irq(vm *m, const vm_virtio_slot *slot) {
  return (dev_irq_line){plic_set_irq, &m->plic, slot->irq};
}

void vm_virtio_map(vm *m, const vm_virtio_slot *slot, const char *name, virtio_mmio *mmio) {
  vm_map_device(m, name, slot->base, VM_VIRTIO_SIZE, mmio, virtio_mmio_read, virtio_mmio_write);
}

/* Disk i becomes virtio-mmio slot i, so the guest sees them as /dev/vda, vdb, ... in order. */
static int vm_add_disks(vm *m, vs_error **err) {
  for (unsigned i = 0; i < m->cfg.ndisks; i++) {
    _cleanup_free_ char *path = NULL;
    _cleanup_free_ char *serial = NULL;
    vm_disk_opts opts;
    vm_virtio_slot slot;
    if (vm_disk_parse_spec(m->cfg.disks[i], &path, &opts, &serial, err) < 0 ||
        vm_disk_open(path, &opts, &m->disk[i], err) < 0 ||
        vm_virtio_claim(m, "virtio-blk", &slot, err) < 0)
      return vs_error_wrap(err, "disk %u", i);
    char id[21];
    snprintf(id, sizeof(id), "vessel-vd%c", 'a' + i);
    m->blk[i] = vs_malloc0(sizeof(virtio_blk));
    virtio_blk_init(m->blk[i], m->disk[i], serial ? serial : id, vm_virtio_mem(m),
                    vm_virtio_irq(m, &slot));
    vm_virtio_map(m, &slot, "virtio-blk", &m->blk[i]->mmio);
  }
  return 0;
}

/* The parts of vm_check_config that a machine without a kernel to load (restore, migration)
 * must pass too. */
static int vm_check_machine(const vm_config *cfg, vs_error **err) {
  if (cfg->smp < 1 || cfg->smp > VM_MAX_SMP)
    return vs_error_set(err, 0, "number of harts %u is out of range 1..%d", cfg->smp, VM_MAX_SMP);
  if (cfg->mem_size < VM_MIN_MEM || cfg->mem_size > VM_MAX_MEM || (cfg->mem_size & 0xfff))
    return vs_error_set(err, 0, "memory size %llu bytes is out of range or not page aligned",
                        (unsigned long long)cfg->mem_size);
  if (cfg->ndisks > VM_MAX_DISKS)
    return vs_error_set(err, 0, "too many disks (%u, at most %d)", cfg->ndisks, VM_MAX_DISKS);
  return 0;
}

/* The power button (virtio-input) takes the first virtio slot after the disks, if one is left. */
static void vm_add_power_button(vm *m) {
  vm_virtio_slot slot;
  if (m->num_virtio == VM_MAX_VIRTIO || vm_virtio_claim(m, "virtio-input", &slot, NULL) < 0)
    return;
  m->power_button = vs_malloc0(sizeof(virtio_input));
  virtio_input_init(m->power_button, vm_virtio_mem(m), vm_virtio_irq(m, &slot));
  vm_virtio_map(m, &slot, "virtio-input", &m->power_button->mmio);
}

vm *vm_build(const vm_config *cfg, uint8_t *ram, vs_error **err) {
  if (vm_check_machine(cfg, err) < 0) {
    munmap(ram, cfg->mem_size);
    return NULL;
  }
  /* Mapped, not allocated: page-aligned (the harts are cache-line aligned), and the pages of the
   * harts a machine does not have (there is room for VM_MAX_SMP) are never touched. An aligned
   * allocation zeroed by memset cost a 1-hart VM 2.3 MiB of RSS. */
  vm *m = mmap(NULL, sizeof(*m), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) {
    vs_error_set(err, errno, "map the machine's state (%zu bytes)", sizeof(*m));
    munmap(ram, cfg->mem_size);
    return NULL;
  }
  m->cfg = *cfg;
  m->nharts = cfg->smp;
  m->ram_size = cfg->mem_size;
  m->mtime_epoch_ns = monotonic_ns();
  m->ram = ram;

  m->bus = (rv_bus){
      .ram = m->ram,
      .ram_base = VM_RAM_BASE,
      .ram_size = m->ram_size,
      .opaque = m,
      .mmio_read = vm_mmio_read,
      .mmio_write = vm_mmio_write,
      .sbi_call = cfg->bios == VM_BIOS_BUILTIN ? vm_sbi_call : NULL,
      .read_mtime = vm_read_mtime,
      .mtime_pace = &m->pace,
      .code_pages = vs_malloc0(vm_ram_pages(m) * sizeof(uint32_t)),
      .interpreter = m->cfg.interpreter,
      .no_hypervisor = m->cfg.no_hypervisor,
      .nharts = m->nharts,
  };
  vm_start_pace(m);
  for (unsigned h = 0; h < m->nharts; h++) {
    if (rv_hart_init(&m->harts[h], h, &m->bus, err) < 0) {
      m->nharts = h;
      vm_destroy(m);
      return NULL;
    }
  }
  if (vm_threads_init(m, err) < 0) {
    vm_destroy(m);
    return NULL;
  }
  vm_wire_devices(m);
  vm_io_source console = {"console", vm_console_prepare, vm_console_dispatch, m};
  if (vm_add_io_source(m, &console, err) < 0 || vm_add_disks(m, err) < 0 ||
      vm_add_io_devices(m, err) < 0) {
    vm_destroy(m);
    return NULL;
  }
  if (!cfg->htif)
    vm_add_power_button(m);
  return m;
}

vm *vm_create(const vm_config *cfg, vs_error **err) {
  if (vm_check_config(cfg, err) < 0)
    return NULL;
  /* Anonymous memory is zero and only backed by host pages once the guest touches it. */
  void *ram = mmap(NULL, cfg->mem_size, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (ram == MAP_FAILED) {
    vs_error_set(err, errno, "allocate %llu MiB of guest RAM",
                 (unsigned long long)(cfg->mem_size >> 20));
    return NULL;
  }
  vm *m = vm_build(cfg, ram, err);
  if (!m)
    return NULL;
  if (vm_boot_load(m, err) < 0) {
    vm_destroy(m);
    return NULL;
  }
  vm_boot_reset_harts(m);
  return m;
}

void vm_destroy(vm *m) {
  if (!m)
    return;
  vm_call_destroy_hooks(m);
  vm_dirty_tracking_stop(m);
  for (unsigned h = 0; h < m->nharts; h++)
    rv_hart_destroy(&m->harts[h]);
  vm_destroy_io_devices(m);
  for (unsigned i = 0; i < VM_MAX_DISKS; i++) {
    free(m->blk[i]);
    if (m->disk[i])
      vm_disk_close(m->disk[i], NULL); /* flushes; qcow2 returns clusters reserved ahead */
  }
  if (m->ram)
    munmap(m->ram, m->ram_size);
  free(m->bus.code_pages);
  free(m->power_button);
  free(m->bootargs);
  for (unsigned i = 0; i < ARRAY_SIZE(m->cfg_strings); i++)
    free(m->cfg_strings[i]);
  vm_threads_destroy(m);
  munmap(m, sizeof(*m));
}

/* ------------------------------------------------------------------ pause and dirty pages */

bool vm_is_paused(const vm *m) { return m->paused; }

void vm_pause(vm *m) {
  if (m->paused)
    return;
  vm_stop_harts(m);
  m->paused_mtime = vm_read_mtime(m);
  __atomic_store_n(&m->paused, true, __ATOMIC_RELEASE);
  uart_flush(&m->uart);
  vm_emit_event(m, "paused");
}

void vm_resume(vm *m) {
  if (!m->paused)
    return;
  __atomic_store_n(&m->paused, false, __ATOMIC_RELEASE);
  vm_set_mtime(m, m->paused_mtime);
  vm_release_harts(m);
  vm_emit_event(m, "resumed");
}

int vm_powerdown(vm *m, vs_error **err) {
  if (!m->power_button)
    return vs_error_set(err, 0, "this machine has no power button (every virtio slot is a disk)");
  if (!virtio_input_press_power(m->power_button))
    return vs_error_set(err, 0,
                        "the guest has no driver for the power button (virtio-input) "
                        "running yet");
  return 0;
}

/* Only with the harts stopped (or on their own thread): a TLB belongs to its hart's thread. */
static void vm_flush_all_tlbs(vm *m) {
  for (unsigned h = 0; h < m->nharts; h++)
    rv_hart_flush_tlb(&m->harts[h]);
}

void vm_dirty_tracking_start(vm *m) {
  vm_stop_harts(m);
  if (!m->dirty_pages)
    m->dirty_pages = vs_malloc0(vm_dirty_words(m) * sizeof(uint64_t));
  memset(m->dirty_pages, 0xff, vm_dirty_words(m) * sizeof(uint64_t));
  m->bus.dirty_pages = m->dirty_pages;
  /* write mappings cached before now would let stores pass unmarked */
  vm_flush_all_tlbs(m);
  vm_release_harts(m);
}

void vm_dirty_tracking_stop(vm *m) {
  vm_stop_harts(m);
  m->bus.dirty_pages = NULL;
  free(m->dirty_pages);
  m->dirty_pages = NULL;
  vm_release_harts(m);
}

/* The harts stand still while the bits move and their TLBs empty: a write mapping kept past the
 * harvest would let writes go unmarked and the migration lose them. */
void vm_dirty_harvest(vm *m, uint64_t *out) {
  vm_stop_harts(m);
  size_t n = vm_dirty_words(m);
  for (size_t i = 0; i < n; i++)
    out[i] = __atomic_exchange_n(&m->dirty_pages[i], 0, __ATOMIC_RELAXED);
  /* bits past the end of RAM (the last word) are never pages */
  if (vm_ram_pages(m) % 64)
    out[n - 1] &= (1ull << (vm_ram_pages(m) % 64)) - 1;
  vm_flush_all_tlbs(m);
  vm_release_harts(m);
}

/* ------------------------------------------------------------------ console */

static void vm_console_help(vm *m) {
  static const char help[] = "\r\nC-a h    print this help\r\n"
                             "C-a x    exit the VMM\r\n"
                             "C-a C-a  send C-a to the guest\r\n";
  if (write(m->cfg.console_out, help, sizeof(help) - 1) < 0) {
    /* nothing to do: the console is gone */
  }
}

/* Console input goes to the UART, or to virtio-console with --console virtio. */
static unsigned vm_console_room(const vm *m) {
  return m->vconsole ? virtio_console_rx_space(m->vconsole) : uart_rx_space(&m->uart);
}

void vm_console_deliver(vm *m, const uint8_t *buf, size_t len) {
  if (len == 0)
    return;
  if (m->rr)
    vm_rr_console_input(m, buf, len);
  if (m->vconsole)
    virtio_console_rx_push(m->vconsole, buf, len);
  else
    uart_rx_push(&m->uart, buf, len);
}

/* Feed console input to the guest, interpreting the Ctrl-A escapes on a terminal. len is at
 * most VM_CONSOLE_READ_MAX. */
static void vm_console_input(vm *m, const uint8_t *buf, size_t len) {
  uint8_t out[VM_CONSOLE_READ_MAX];
  size_t n = 0;
  for (size_t i = 0; i < len && i < sizeof(out) && !__atomic_load_n(&m->stop, __ATOMIC_ACQUIRE);
       i++) {
    uint8_t c = buf[i];
    if (!m->cfg.console_escape) {
      out[n++] = c;
      continue;
    }
    if (m->escape_pending) {
      m->escape_pending = false;
      if (c == 'x' || c == 'X') {
        static const char msg[] = "\r\nvessel-vmm: terminated\r\n";
        if (write(m->cfg.console_out, msg, sizeof(msg) - 1) < 0) {
          /* console gone */
        }
        vm_request_exit(m, VM_EXIT_QUIT, 0);
      } else if (c == 'h' || c == 'H' || c == '?') {
        vm_console_help(m);
      } else if (c == CTRL_A || c == 'a') {
        out[n++] = CTRL_A;
      }
      continue;
    }
    if (c == CTRL_A)
      m->escape_pending = true;
    else
      out[n++] = c;
  }
  vm_console_deliver(m, out, n);
}

static bool vm_console_wants_input(const vm *m) {
  return m->cfg.console_in >= 0 && !m->console_eof && vm_console_room(m) > 0;
}

static void vm_console_read(vm *m) {
  uint8_t buf[VM_CONSOLE_READ_MAX];
  size_t want = vm_console_room(m);
  if (want > sizeof(buf))
    want = sizeof(buf);
  if (want == 0)
    return;
  ssize_t n = read(m->cfg.console_in, buf, want);
  if (n > 0)
    vm_console_input(m, buf, (size_t)n);
  else if (n == 0 || (errno != EINTR && errno != EAGAIN))
    m->console_eof = true; /* input closed: the guest keeps running without it */
}

static void vm_console_prepare(void *opaque, vm_pollset *ps) {
  vm *m = opaque;
  if (m->uart.tx_len)
    uart_flush(&m->uart);
  m->console_poll_idx =
      vm_console_wants_input(m) ? vm_pollset_add(ps, m->cfg.console_in, POLLIN) : -1;
}

static void vm_console_dispatch(void *opaque, const vm_pollset *ps) {
  vm *m = opaque;
  if (vm_pollset_revents(ps, m->console_poll_idx) & (POLLIN | POLLHUP | POLLERR))
    vm_console_read(m);
}

/* ------------------------------------------------------------------ I/O sources */

int vm_pollset_add(vm_pollset *ps, int fd, short events) {
  if (ps->n == VM_MAX_POLLFDS)
    return -1;
  ps->fds[ps->n] = (struct pollfd){.fd = fd, .events = events};
  return (int)ps->n++;
}

int vm_pollset_revents(const vm_pollset *ps, int idx) {
  return idx >= 0 && (unsigned)idx < ps->n ? ps->fds[idx].revents : 0;
}

void vm_pollset_wake_within(vm_pollset *ps, int64_t ns) {
  if (ns < 0)
    ns = 0;
  if (ns < ps->timeout_ns)
    ps->timeout_ns = ns;
}

int vm_add_io_source(vm *m, const vm_io_source *src, vs_error **err) {
  if (m->num_io_sources == VM_MAX_IO_SOURCES)
    return vs_error_set(err, 0, "%s: too many I/O sources (at most %d)", src->name,
                        VM_MAX_IO_SOURCES);
  m->io_sources[m->num_io_sources++] = *src;
  return 0;
}

void vm_remove_io_source(vm *m, const void *opaque) {
  for (unsigned i = 0; i < m->num_io_sources; i++) {
    if (m->io_sources[i].opaque != opaque)
      continue;
    memmove(&m->io_sources[i], &m->io_sources[i + 1],
            (m->num_io_sources - i - 1) * sizeof(m->io_sources[0]));
    m->num_io_sources--;
    return;
  }
}

/* ------------------------------------------------------------------ lifecycle hooks */

int vm_add_hooks(vm *m, const vm_hooks *h, vs_error **err) {
  if (m->num_hooks == VM_MAX_HOOKS)
    return vs_error_set(err, 0, "%s: too many lifecycle hooks (at most %d)", h->name, VM_MAX_HOOKS);
  m->hooks[m->num_hooks++] = *h;
  return 0;
}

void vm_remove_hooks(vm *m, const void *opaque) {
  for (unsigned i = 0; i < m->num_hooks; i++) {
    if (m->hooks[i].opaque != opaque)
      continue;
    memmove(&m->hooks[i], &m->hooks[i + 1], (m->num_hooks - i - 1) * sizeof(m->hooks[0]));
    m->num_hooks--;
    return;
  }
}

static void vm_emit_event(vm *m, const char *event) {
  for (unsigned i = 0; i < m->num_hooks; i++)
    if (m->hooks[i].event)
      m->hooks[i].event(m->hooks[i].opaque, event);
}

/* Newest first; a hook may remove itself meanwhile (the ones below it do not move). */
static void vm_call_run_ended_hooks(vm *m) {
  for (unsigned i = m->num_hooks; i-- > 0;)
    if (i < m->num_hooks && m->hooks[i].run_ended)
      m->hooks[i].run_ended(m->hooks[i].opaque);
}

static void vm_call_destroy_hooks(vm *m) {
  while (m->num_hooks) {
    vm_hooks h = m->hooks[--m->num_hooks];
    if (h.destroy)
      h.destroy(h.opaque);
  }
}

/* ------------------------------------------------------------------ run loop */

/* HTIF lives in RAM: the test program writes tohost and waits; looking after each slice is
 * enough (programs spin on fromhost or keep running until we stop them). */
void vm_poll_htif(vm *m, const rv_hart *hart) {
  int code = 0;
  uint64_t request = 0;
  htif_event ev =
      htif_poll(&m->htif, m->ram, VM_RAM_BASE, m->ram_size, m->cfg.console_out, &code, &request);
  if (ev == HTIF_NOTHING)
    return;
  if (ev != HTIF_EXIT)
    vs_log_error("htif: %s (tohost 0x%llx at pc 0x%llx): ending the run with exit code %d",
                 htif_event_describe(ev), (unsigned long long)request, (unsigned long long)hart->pc,
                 code);
  if (code == 0)
    vm_request_exit(m, VM_EXIT_POWEROFF, 0);
  else
    vm_request_exit(m, VM_EXIT_FAIL, code);
}

/* Would this hart do anything if run now? */
static bool vm_hart_runnable(vm *m, unsigned h) {
  if (m->hsm[h] != HSM_STARTED || __atomic_load_n(&m->hart_held[h], __ATOMIC_ACQUIRE))
    return false;
  return !m->harts[h].wfi || rv_hart_irq_pending(&m->harts[h]);
}

/* Nanoseconds until the next event that can wake an idle hart: a timer of a started hart or the
 * RTC alarm. */
static int64_t vm_ns_until_next_event(vm *m) {
  uint64_t now = m->paused ? m->paused_mtime : vm_host_mtime(m);
  uint64_t deadline = UINT64_MAX;
  for (unsigned h = 0; h < m->nharts; h++) {
    if (m->hsm[h] != HSM_STARTED)
      continue;
    uint64_t mie = m->harts[h].mie;
    if ((mie & RV_MIP_MTIP) && m->aclint.mtimecmp[h] < deadline)
      deadline = m->aclint.mtimecmp[h];
    uint64_t st = rv_hart_next_timer(&m->harts[h]);
    if ((mie & RV_MIP_STIP) && st < deadline)
      deadline = st;
  }
  int64_t ns = VM_MAX_SLEEP_NS;
  if (deadline != UINT64_MAX) {
    if (deadline <= now)
      return 0;
    uint64_t ticks = deadline - now;
    if (ticks < (uint64_t)VM_MAX_SLEEP_NS / (1000000000 / VM_TIMEBASE_HZ))
      ns = (int64_t)ticks * (1000000000 / VM_TIMEBASE_HZ);
  }
  int64_t rtc = rtc_ns_until_alarm(&m->rtc);
  return rtc < ns ? rtc : ns;
}

/* Between slices: let every I/O source add its descriptors, wait up to `sleep_ns` (0: just look)
 * for any of them, let the sources handle what is ready, then advance the timers. */
static void vm_service(vm *m, int64_t sleep_ns) {
  vm_pollset *ps = &m->pollset;
  ps->n = 0;
  ps->timeout_ns = sleep_ns;
  for (unsigned i = 0; i < m->num_io_sources; i++)
    m->io_sources[i].prepare(m->io_sources[i].opaque, ps);
  if (ps->n || ps->timeout_ns > 0) {
    struct timespec ts = {ps->timeout_ns / 1000000000, ps->timeout_ns % 1000000000};
    /* paused: nothing but the I/O sources can give the loop work, so wait for them alone */
    bool forever = ps->timeout_ns == INT64_MAX;
    if (ppoll(ps->n ? ps->fds : NULL, ps->n, forever ? NULL : &ts, NULL) <= 0)
      ps->n = 0; /* timeout or signal: nothing to dispatch */
  }
  for (unsigned i = 0; i < m->num_io_sources && ps->n; i++)
    m->io_sources[i].dispatch(m->io_sources[i].opaque, ps);
  if (m->rr) {
    vm_rr_tick(m);
    return;
  }
  aclint_update_timers(&m->aclint, vm_read_mtime(m));
  rtc_update(&m->rtc);
}

void vm_serve_io(vm *m, int64_t sleep_ns) { vm_service(m, sleep_ns); }

/* --trace: a line per hart every few seconds, to see where a stuck guest is. */
static void vm_trace_harts(vm *m, int64_t *next_ns) {
  int64_t now_ns = monotonic_ns();
  if (now_ns < *next_ns)
    return;
  *next_ns = now_ns + 5000000000LL;
  uint64_t now = vm_read_mtime(m);
  for (unsigned h = 0; h < m->nharts; h++) {
    const rv_hart *t = &m->harts[h];
    uint64_t st = rv_hart_next_timer(t);
    fprintf(stderr,
            "vmm: hart %u hsm=%d priv=%d pc=0x%llx wfi=%d mie=0x%llx mip=0x%llx ext=0x%llx "
            "mstatus=0x%llx stimecmp%+lld mtimecmp%+lld insns=%llu\n",
            h, m->hsm[h], t->priv, (unsigned long long)t->pc, t->wfi, (unsigned long long)t->mie,
            (unsigned long long)t->mip, (unsigned long long)t->ext_mip,
            (unsigned long long)t->mstatus, st == UINT64_MAX ? 0LL : (long long)(st - now),
            m->aclint.mtimecmp[h] == UINT64_MAX ? 0LL : (long long)(m->aclint.mtimecmp[h] - now),
            (unsigned long long)t->minstret);
  }
}

/* The harts take turns on this thread. */
static void vm_run_one_thread(vm *m) {
  const uint64_t slice = m->nharts > 1 ? VM_SLICE_SMP : VM_SLICE_UP;
  int64_t next_trace_ns = 0;
  if (vm_rr_replaying(m)) {
    vm_rr_replay_run(m);
    return;
  }
  /* take what the I/O sources have first: a control client waiting on a restored VM gets its
   * answer before the first slice pays for the cold caches */
  vm_service(m, 0);
  while (!m->stop) {
    if (m->paused) {
      vm_service(m, INT64_MAX);
      continue;
    }
    if (m->cfg.trace)
      vm_trace_harts(m, &next_trace_ns);
    bool busy = false;
    for (unsigned h = 0; h < m->nharts && !m->stop; h++) {
      if (m->hsm[h] == HSM_START_PENDING) {
        vm_hart_begin(m, h);
        if (m->rr)
          vm_rr_hart_began(m, h);
      }
      if (!vm_hart_runnable(m, h))
        continue;
      rv_hart *hart = &m->harts[h];
      /* a store by another hart since this hart's LR must make its SC fail */
      if (m->nharts > 1)
        rv_hart_clear_reservation(hart);
      rv_hart_run(hart, slice);
      if (m->rr)
        vm_rr_hart_ran(m, h);
      if (m->htif_enabled)
        vm_poll_htif(m, hart);
    }
    /* after the round: a hart may have woken one that was skipped (an IPI through the CLINT) */
    for (unsigned h = 0; h < m->nharts && !busy; h++)
      busy = vm_hart_runnable(m, h);
    if (m->stop)
      break;
    vm_service(m, busy ? 0 : vm_ns_until_next_event(m));
  }
}

int vm_run(vm *m, int *exit_code, vs_error **err) {
  int rc = 0;
  if (m->threads.on)
    rc = vm_run_threaded(m, err);
  else
    vm_run_one_thread(m);
  uart_flush(&m->uart);
  vm_call_run_ended_hooks(m);
  *exit_code = m->exit_code;
  return rc < 0 ? -1 : (int)m->exit_reason;
}
