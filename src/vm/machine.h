/* The machine: internal header shared by machine.c, boot.c, fdt.c and sbi.c (not public). */
#ifndef VESSEL_VM_MACHINE_H
#define VESSEL_VM_MACHINE_H

#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "vm/cpu/cpu.h"
#include "vm/dev/dev.h"
#include "vm/dev/htif.h"
#include "vm/dev/virtio.h"
#include "vm/disk/disk.h"
#include "vm/vm.h"

/* Memory map (QEMU virt compatible) */
#define VM_SYSCON_BASE 0x00100000ULL
#define VM_RTC_BASE 0x00101000ULL
#define VM_ACLINT_BASE 0x02000000ULL
#define VM_PLIC_BASE 0x0c000000ULL
#define VM_UART_BASE 0x10000000ULL
#define VM_UART_SIZE 0x100ULL
#define VM_VIRTIO_BASE 0x10001000ull
#define VM_VIRTIO_SIZE 0x1000ULL
#define VM_MAX_VIRTIO 8

#define VM_UART_IRQ 10
#define VM_RTC_IRQ 11
#define VM_VIRTIO_IRQ_FIRST 1

#define VM_TIMEBASE_HZ 10000000U
#define VM_UART_CLOCK_HZ 3686400U
/* the largest paging mode the hart implements (it has Sv39, Sv48 and Sv57) */
#define VM_MMU_TYPE "riscv,sv57"

/* Where the kernel goes when firmware occupies the start of RAM (OpenSBI's FW_JUMP_ADDR) */
#define VM_KERNEL_OFFSET 0x200000ull
/* The device tree lives at the top of RAM in a window this large; firmware (OpenSBI) grows the
 * tree in place when it adds its reserved-memory nodes, so leave it room. */
#define VM_FDT_MAX_SIZE 0x10000ull
#define VM_FDT_WINDOW 0x40000ull

#define VM_MAX_REGIONS 16

/* Strings a saved configuration owns: kernel, initrd, append, bios, the disk and the NIC specs */
#define VM_CONFIG_STRINGS (4 + VM_MAX_DISKS + VM_MAX_NICS)

/* SBI HSM hart states (SBI spec, chapter "Hart State Management") */
typedef enum {
  HSM_STARTED = 0,
  HSM_STOPPED = 1,
  HSM_START_PENDING = 2,
  HSM_STOP_PENDING = 3,
  HSM_SUSPENDED = 4,
} hsm_state;

typedef struct vm_virtio_slot {
  uint64_t base;
  unsigned irq;
} vm_virtio_slot;

/* ------------------------------------------------------------------ I/O sources
 *
 * Everything the run loop waits for between CPU slices, apart from the timers: console input, a
 * network backend, the control socket. Before the loop polls, each source adds its descriptors to
 * the poll set (and may shorten the wait, e.g. for a slirp timer); afterwards it handles those
 * that became ready. The loop itself knows no device and no backend. */
#define VM_MAX_POLLFDS 64
#define VM_MAX_IO_SOURCES 16

typedef struct vm_pollset {
  int64_t timeout_ns; /* the loop's wait; sources can only shorten it */
  unsigned n;
  struct pollfd fds[VM_MAX_POLLFDS];
} vm_pollset;

/* Adds fd and returns its index for vm_pollset_revents, or -1 when the set is full (the source
 * then simply is not polled this round). */
int vm_pollset_add(vm_pollset *ps, int fd, short events);
/* The events that fired for index idx; 0 for an index that vm_pollset_add refused. */
int vm_pollset_revents(const vm_pollset *ps, int idx);
/* Make the loop wait at most ns nanoseconds this round. */
void vm_pollset_wake_within(vm_pollset *ps, int64_t ns);

typedef struct vm_io_source {
  const char *name;
  void (*prepare)(void *opaque, vm_pollset *ps);
  void (*dispatch)(void *opaque, const vm_pollset *ps);
  void *opaque;
} vm_io_source;

/* ------------------------------------------------------------------ threaded harts (harts.c)
 *
 * With --smp N > 1 each hart runs on its own host thread (as QEMU's MTTCG); the thread that
 * calls vm_run serves the I/O sources. Locks, always taken in this order:
 *   big_lock    the devices (every MMIO access), PLIC, ACLINT, the console, HSM changes, the I/O
 *               sources and everything the lifecycle code touches: one machine-wide lock, a first
 *               step (devices are seldom hot; per-device locks can come later)
 *   sched_lock  harts going to sleep and waking, HSM start, stop-the-world
 * Cross-hart CPU state (IPIs, TLB shootdowns, code pages) needs neither: it goes through the
 * hart's request fields (cpu.h), which the target serves on its own thread. */
typedef struct vm_hart_thread {
  _Alignas(RV_CACHE_LINE) struct vm *m; /* each hart's thread writes its own entry every slice */
  unsigned index;
  pthread_t thread;
  bool started;
  bool idle; /* (sched_lock) the thread is in its wait loop, not running the hart */
  /* the thread runs the hart: a kick interrupts it (harts.c). Written by the thread itself under
   * sched_lock, read by others under it and by the thread without it */
  bool runs;
  pthread_cond_t wake; /* with sched_lock: an idle, stopped or parked hart sleeps on it */
  /* The guest spins on this hart (harts.c: vm_hart_after_run) */
  bool spinning;        /* its last run ended with h->spun */
  uint64_t spin_pc;     /* where that run ended */
  uint64_t spin_insns;  /* and how many instructions it ran */
  bool spin_woken;      /* its last sleep ended by progress (or did not begin: progress came) */
  unsigned spin_futile; /* wake-ups by progress in a row after which it only spun again */
} vm_hart_thread;

typedef struct vm_threads {
  bool on;
  pthread_mutex_t big_lock;
  pthread_mutex_t sched_lock;
  pthread_cond_t parked_cv; /* a hart parked or its thread ended (vm_stop_harts waits) */
  unsigned stop_requests;   /* outstanding vm_stop_harts; harts park while non-zero */
  unsigned parked;          /* hart threads parked at an instruction boundary */
  unsigned live;            /* hart threads started and not ended */
  int kick_fd;              /* eventfd that wakes the I/O thread out of ppoll */
  bool kicked;              /* a kick is in flight: later ones need no system call */
  bool io_running;          /* vm_run's thread serves the I/O sources, holding big_lock */
  /* A spinning hart sleeps on this futex word until another hart did work or something was
   * asked of it (vm_harts_progress bumps it), or a short timeout; `sleepers` counts them and
   * `sleepers_any` those woken by any hart's work, so the bumps need no system call while
   * nobody sleeps. */
  uint32_t progress;
  uint32_t sleepers, sleepers_any;
  int64_t spin_yield_ns; /* how long a spinning hart's sched_yield took (a moving average) */
  int64_t spin_probe_at; /* while that is long: when a spinning hart next yields (to measure) */
  vm_hart_thread harts[VM_MAX_SMP];
} vm_threads;

/* ------------------------------------------------------------------ lifecycle hooks
 *
 * Code built on the machine (the control socket, a migration in progress) registers what it must
 * hear of, instead of the machine naming it: events the machine raises (paused, resumed), the end
 * of vm_run, and vm_destroy. Each callback may be NULL. A hook may remove itself (and only
 * itself) from inside its own callback. */
#define VM_MAX_HOOKS 8

typedef struct vm_hooks {
  const char *name;
  void (*event)(void *opaque, const char *event);
  void (*run_ended)(void *opaque);
  void (*destroy)(void *opaque);
  void *opaque;
} vm_hooks;

struct vm_control; /* replay.c: the run loop's record/replay hooks (m->rr set) */
/* Between slices: recording samples the host's clock and logs it if it moved. */
void vm_rr_tick(vm *m);
/* Console input reaches the guest: recording logs it. */
void vm_rr_console_input(vm *m, const uint8_t *buf, size_t len);
/* The one-thread loop started hart h (HSM), or ran a slice of it: recording logs it. */
void vm_rr_hart_began(vm *m, unsigned h);
void vm_rr_hart_ran(vm *m, unsigned h);
bool vm_rr_replaying(const vm *m);
/* The control socket during a recording (control.c): only commands that change nothing the
 * guest sees outside the log are served, and a snapshot becomes a replay point (logged with
 * its count and state digest; the disks go on in new overlays). */
bool vm_rr_recording(const vm *m);
int vm_rr_snapshot(vm *m, const char *dir, const vm_snapshot_opts *opts, vs_error **err);
/* The replay's run loop: the hart runs from one logged record to the next. */
void vm_rr_replay_run(vm *m);
/* A debugger on a replay (gdbstub.c): a single step of hart h that applies the log's records
 * due first (with several harts the recorded interleaving runs on until h has executed one
 * instruction, and stops early where another hart reaches a breakpoint); returns the hart that
 * stopped. Reverse execution, by restoring the nearest checkpoint and running forward: a step
 * back of hart `hart` (to its previous instruction), or back to the previous breakpoint hit of
 * any hart. Returns 0 when it landed (*stopped: the hart to report), 1 when it stopped at the
 * start of the recording (no more history), -1 when the replay cannot go back (no debugger). */
bool vm_rr_can_reverse(const vm *m);
unsigned vm_rr_step(vm *m, unsigned h);
int vm_rr_reverse(vm *m, bool step, unsigned hart, unsigned *stopped);
/* Serve the I/O sources once (the run loop's service between slices; sleep_ns 0: just look). */
void vm_serve_io(vm *m, int64_t sleep_ns);

/* control.c */
struct vm_migration; /* migrate.c */

// NOLINTNEXTLINE(clang-analyzer-optin.performance.Padding): the harts are cache-line aligned
struct vm {
  vm_config cfg;
  /* strings cfg points to when the configuration came from a snapshot or a migration stream */
  char *cfg_strings[VM_CONFIG_STRINGS];

  /* memory */
  uint8_t *ram;
  uint64_t ram_size;

  /* harts */
  rv_bus bus;
  rv_hart harts[VM_MAX_SMP];
  unsigned nharts;
  hsm_state hsm[VM_MAX_SMP];
  /* a debugger lets some harts run and holds these still (gdb's vCont;c:N): not runnable until
   * cleared (atomic; whoever clears it wakes the hart) */
  bool hart_held[VM_MAX_SMP];
  uint64_t hsm_start_addr[VM_MAX_SMP];
  uint64_t hsm_start_opaque[VM_MAX_SMP];

  /* devices and the physical address map outside RAM */
  dev_region regions[VM_MAX_REGIONS];
  unsigned num_regions;
  uart_state uart;
  plic_state plic;
  aclint_state aclint;
  syscon_state syscon;
  rtc_state rtc;
  htif htif; /* --htif mode only */
  vm_virtio_slot virtio[VM_MAX_VIRTIO];
  unsigned num_virtio;
  vm_disk *disk[VM_MAX_DISKS];
  virtio_blk *blk[VM_MAX_DISKS]; /* on the heap: each holds a large scratch element */
  /* network, console and entropy devices (devices.c) */
  virtio_net *net[VM_MAX_NICS];
  struct netdev *netdev[VM_MAX_NICS];
  virtio_console *vconsole; /* --console virtio: console input goes here instead of the UART */
  virtio_rng *rng;
  virtio_balloon *balloon;    /* --balloon */
  virtio_input *power_button; /* NULL when the disks took every virtio slot */

  /* clock: mtime = (CLOCK_MONOTONIC - mtime_epoch_ns) at 10 MHz */
  int64_t mtime_epoch_ns;
  /* mtime's pace in host cycles, offered to the harts (bus.mtime_pace) once measured: from
   * pace_start (cycles, ns) to a clock read VM_PACE_SPAN_NS later (vm_measure_pace) */
  rv_mtime_pace pace;
  bool pace_measuring; /* __atomic */
  uint64_t pace_start_cycles;
  int64_t pace_start_ns;
  /* record/replay (replay.c; NULL: off): the guest's clock then stands at rr_mtime */
  struct vm_rr *rr;
  uint64_t rr_mtime;

  /* boot layout, decided by boot.c */
  char *bootargs;
  uint64_t kernel_addr, kernel_end; /* kernel_end includes its bss (Image image_size) */
  uint64_t entry;                   /* first instruction executed */
  int entry_priv;                   /* 3 = M (firmware, bare metal), 1 = S (builtin SBI) */
  uint64_t initrd_start, initrd_end;
  uint64_t fdt_addr;
  uint64_t fw_dynamic_info; /* address of OpenSBI's fw_dynamic_info, 0 if none */

  /* console input escape state (Ctrl-A prefix) */
  bool escape_pending;
  bool console_eof;
  bool htif_enabled;
  int console_poll_idx; /* the console's entry in this round's poll set, -1 if none */

  /* what the run loop polls between slices, and who hears of its events */
  vm_io_source io_sources[VM_MAX_IO_SOURCES];
  vm_hooks hooks[VM_MAX_HOOKS];
  unsigned num_hooks;
  vm_pollset pollset;

  /* why the run loop stopped */
  bool stop;
  bool paused; /* pause, snapshot, migration's stop-and-copy: the harts do not run */
  vm_exit_reason exit_reason;
  int exit_code;
  unsigned num_io_sources; /* (here: it fills the struct's padding) */

  /* lifecycle: pause, control socket, migration (docs/lifecycle.md) */
  uint64_t paused_mtime; /* the guest's clock stands here while paused */
  uint64_t *dirty_pages; /* live migration's bitmap, also in bus.dirty_pages (NULL: off) */
  struct vm_control *control;
  struct vm_migration *migration;

  vm_threads threads;
};

/* The machine's own state besides its devices ("MACH"): mtime and the harts' HSM states. */
#define VM_PAGE_SIZE 4096ull

/* machine.c */
uint64_t vm_read_mtime(void *opaque);
/* The host's clock as mtime, whatever the guest's clock shows (record/replay freezes it). */
uint64_t vm_host_mtime(const vm *m);
/* Hand console input to the guest's console device (UART or virtio-console). */
void vm_console_deliver(vm *m, const uint8_t *buf, size_t len);
/* Continue the guest's clock from `mtime` (restore, resume). */
void vm_set_mtime(vm *m, uint64_t mtime);
/* A machine around `ram` (cfg->mem_size bytes mapped by the caller; the vm unmaps it) with its
 * harts, devices and disks, but nothing loaded and no hart reset: vm_create boots it, restore and
 * migration load saved state into it. cfg's strings must outlive the vm. */
vm *vm_build(const vm_config *cfg, uint8_t *ram, vs_error **err);
/* Count of guest RAM pages and the dirty bitmap's length in 64-bit words. */
static inline uint64_t vm_ram_pages(const vm *m) { return m->ram_size / VM_PAGE_SIZE; }
static inline size_t vm_dirty_words(const vm *m) { return (size_t)((vm_ram_pages(m) + 63) / 64); }
/* Start / stop dirty-page tracking (migration). Starting marks every page dirty. */
void vm_dirty_tracking_start(vm *m);
void vm_dirty_tracking_stop(vm *m);
/* Move the dirty bits into `out` (vm_dirty_words long) and clear them; the harts' TLBs are
 * flushed so their next write to any page marks it again. */
void vm_dirty_harvest(vm *m, uint64_t *out);
void vm_request_exit(vm *m, vm_exit_reason reason, int code);
/* Register an I/O source with the run loop (see vm_io_source); remove the one with `opaque`. */
int vm_add_io_source(vm *m, const vm_io_source *src, vs_error **err);
void vm_remove_io_source(vm *m, const void *opaque);
/* --htif: serve the program's tohost request after `hart` ran a slice (the big lock held). */
void vm_poll_htif(vm *m, const rv_hart *hart);
/* Register lifecycle hooks (see vm_hooks); remove those with `opaque`. */
int vm_add_hooks(vm *m, const vm_hooks *h, vs_error **err);
void vm_remove_hooks(vm *m, const void *opaque);
/* Reserve the next virtio-mmio window (base address and PLIC line). The caller initialises its
 * device with vm_virtio_irq(m, slot) and then maps it with vm_virtio_map. Windows are handed out
 * in order, so the guest enumerates devices in the order the machine adds them. */
int vm_virtio_claim(vm *m, const char *what, vm_virtio_slot *slot, vs_error **err);
dev_irq_line vm_virtio_irq(vm *m, const vm_virtio_slot *slot);
/* Guest RAM as virtio devices see it: their writes into it mark pages for live migration. */
static inline virtio_mem vm_virtio_mem(vm *m) {
  return (virtio_mem){.ram = m->ram,
                      .base = VM_RAM_BASE,
                      .size = m->ram_size,
                      .dirty = &m->dirty_pages,
                      .code_pages = m->bus.code_pages};
}
/* The machine wrote guest RAM itself (SBI console read): a migration must resend it, and the
 * harts decode code from it afresh. */
static inline void vm_ram_mark_dirty(vm *m, uint64_t paddr, uint64_t len) {
  virtio_mem mem = vm_virtio_mem(m);
  virtio_mem_mark_dirty(&mem, paddr, len);
}
void vm_virtio_map(vm *m, const vm_virtio_slot *slot, const char *name, virtio_mmio *mmio);
/* Guest physical memory access for the machine's own use (SBI DBCN, loaders): false if the
 * range is not entirely inside RAM. */
bool vm_ram_range_ok(const vm *m, uint64_t paddr, uint64_t len);
static inline uint8_t *vm_ram_ptr(vm *m, uint64_t paddr) { return m->ram + (paddr - VM_RAM_BASE); }

/* devices.c: virtio-net with its backends, virtio-console, virtio-rng (after the disks) */
int vm_add_io_devices(vm *m, vs_error **err);
void vm_destroy_io_devices(vm *m);
void vm_io_devices_save(vm *m, vmstate_writer *w);
int vm_io_devices_load(vm *m, vmstate_reader *r, vs_error **err);
void vm_io_devices_new_identity(vm *m);
/* After an incoming migration: a RARP broadcast from each NIC's MAC into its backend, as QEMU
 * announces a migrated guest, so the switches on the way (the host's bridge, a VXLAN overlay's
 * forwarding tables on other hosts) learn at once where the guest is now instead of sending its
 * frames to the host it left until it speaks. */
void vm_io_devices_announce(vm *m);

/* fdt.c */
int vm_fdt_build(vm *m, void *buf, size_t bufsize, vs_error **err);
int vm_fdt_add_virtio_mmio(void *fdt, uint64_t base, unsigned irq, vs_error **err);

/* boot.c: load firmware, kernel, initrd and device tree; set entry point and registers. */
int vm_boot_load(vm *m, vs_error **err);
void vm_boot_reset_harts(vm *m);

/* sbi.c */
bool vm_sbi_call(void *opaque, rv_hart *hart);

/* harts.c: the threaded run loop (vm_threads). Outside it, these do nothing. */
int vm_threads_init(vm *m, vs_error **err);
void vm_threads_destroy(vm *m);
int vm_run_threaded(vm *m, vs_error **err);
/* Stop every hart at an instruction boundary and keep it there until vm_release_harts (nests).
 * Called by the I/O thread with big_lock held; drops it while it waits. */
void vm_stop_harts(vm *m);
void vm_release_harts(vm *m);
void vm_big_lock(vm *m);
void vm_big_unlock(vm *m);
/* Ask hart h (on its own thread) for a TLB flush; returns the ticket rv_hart_tlb_flushed waits
 * for. A hart whose thread is idle is flushed at once by the caller. */
uint32_t vm_hart_ask_tlb_flush(vm *m, unsigned h);
/* Wake hart h's thread if it sleeps (an interrupt became pending, a request was posted). */
void vm_wake_hart(vm *m, unsigned h);
/* Spinning harts (the guest waits in cpu_relax) sleep on the progress word. Its events: a hart did
 * work (VM_PROGRESS_ANY: its stores may be what the others wait for), or something was asked of
 * the harts of a mask (bit h: hart h; an interrupt posted, a TLB flush, a start or stop). */
#define VM_PROGRESS_ANY (1U << 31)
#define VM_PROGRESS_ALL_HARTS ((1U << VM_MAX_SMP) - 1)
_Static_assert(VM_MAX_SMP < 31, "hart bits below VM_PROGRESS_ANY");
/* Count an event and wake the sleepers it concerns: with VM_PROGRESS_ANY in `whom` those that
 * wait for any progress, and the harts of `whom` whatever they wait for. */
void vm_harts_progress(vm *m, uint32_t whom);
/* Hart `self` sleeps until an event after the progress word read `seen` concerns it (any
 * progress, or with !any only what is asked of it), or timeout_ns passed; it does not sleep if
 * the word moved on already. Returns whether the word moved on since `seen`. */
bool vm_harts_wait_progress(vm *m, unsigned self, uint32_t seen, bool any, int64_t timeout_ns);
/* Wake the I/O thread: a device may want its sources prepared again (console output, virtio
 * buffers), or the machine is stopping. */
void vm_kick_io(vm *m);
/* HSM start of hart h (start_addr and opaque already stored): threaded, the hart's own thread
 * resets itself; otherwise it is reset here. */
void vm_hart_start(vm *m, unsigned h);
/* HSM state of hart h: read and set by several threads. */
static inline hsm_state vm_hsm_state(const vm *m, unsigned h) {
  return __atomic_load_n(&m->hsm[h], __ATOMIC_ACQUIRE);
}
static inline void vm_set_hsm_state(vm *m, unsigned h, hsm_state s) {
  __atomic_store_n(&m->hsm[h], s, __ATOMIC_RELEASE);
}
/* Reset a START_PENDING hart and mark it started (its own thread, or the one-thread loop). */
void vm_hart_begin(vm *m, unsigned h);

/* snapshot.c: the state image shared by snapshots and migration (docs/lifecycle.md) */
#define VM_STATE_MAGIC "VSSLSTAT"
#define VM_STATE_FORMAT_VERSION 2
/* The whole device and hart state, with the configuration first and the checksum last.
 * memory_sha256 (may be NULL) adds a RAM_ section naming the snapshot's memory file. */
void vm_state_save(vm *m, vmstate_writer *w, const char *memory_sha256);
/* Check the image's header, format version and checksum, then read its configuration into *cfg
 * (strings allocated into strings[], which the caller frees; *disks_frozen: the disks are a
 * snapshot's read-only bases) and return a reader positioned at the sections after it. */
int vm_state_open(const uint8_t *img, size_t len, vm_config *cfg, char *strings[VM_CONFIG_STRINGS],
                  bool *disks_frozen, vmstate_reader *rest, vs_error **err);
/* Load everything after the configuration into a machine built from that configuration.
 * *memory_sha256 (may be NULL) receives the RAM_ section's checksum, if any. */
int vm_state_load(vm *m, vmstate_reader *r, char memory_sha256[VS_SHA256_HEX_LEN + 1],
                  vs_error **err);
/* The CONF section alone (the migration stream sends it first). */
void vm_config_save(vm *m, vmstate_writer *w, bool disks_frozen);
int vm_config_load(vmstate_reader *img, vm_config *cfg, char *strings[VM_CONFIG_STRINGS],
                   bool *disks_frozen, vs_error **err);
/* Replace the VM's disk specs by ones with absolute paths and explicit formats. */
int vm_make_disk_specs_absolute(vm *m, vs_error **err);
/* Write one of the disk specs with an absolute path (for a state image); allocated. */
char *vm_disk_spec_absolute(const char *spec, vs_error **err);

/* control.c */
/* Send an event to every client of the control socket: {"event": name, ...fields} (fields
 * is a JSON object or NULL; stolen). */
void vm_control_event(vm *m, const char *name, json_t *fields);

#endif
