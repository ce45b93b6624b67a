/* The machine: internal header shared by machine.c, boot.c, fdt.c and sbi.c (not public). */
#ifndef VESSEL_VM_MACHINE_H
#define VESSEL_VM_MACHINE_H

#include <poll.h>
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

struct vm {
  vm_config cfg;

  /* memory */
  uint8_t *ram;
  uint64_t ram_size;

  /* harts */
  rv_bus bus;
  rv_hart harts[VM_MAX_SMP];
  unsigned nharts;
  hsm_state hsm[VM_MAX_SMP];
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

  /* clock: mtime = (CLOCK_MONOTONIC - mtime_epoch_ns) at 10 MHz */
  int64_t mtime_epoch_ns;

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

  /* what the run loop polls between slices */
  vm_io_source io_sources[VM_MAX_IO_SOURCES];
  vm_pollset pollset;

  /* why the run loop stopped */
  bool stop;
  vm_exit_reason exit_reason;
  int exit_code;
  unsigned num_io_sources; /* (here: it fills the struct's padding) */
};

/* machine.c */
uint64_t vm_read_mtime(void *opaque);
void vm_request_exit(vm *m, vm_exit_reason reason, int code);
/* Register an I/O source with the run loop (see vm_io_source). */
int vm_add_io_source(vm *m, const vm_io_source *src, vs_error **err);
/* Reserve the next virtio-mmio window (base address and PLIC line). The caller initialises its
 * device with vm_virtio_irq(m, slot) and then maps it with vm_virtio_map. Windows are handed out
 * in order, so the guest enumerates devices in the order the machine adds them. */
int vm_virtio_claim(vm *m, const char *what, vm_virtio_slot *slot, vs_error **err);
dev_irq_line vm_virtio_irq(vm *m, const vm_virtio_slot *slot);
void vm_virtio_map(vm *m, const vm_virtio_slot *slot, const char *name, virtio_mmio *mmio);
/* Guest physical memory access for the machine's own use (SBI DBCN, loaders): false if the
 * range is not entirely inside RAM. */
bool vm_ram_range_ok(const vm *m, uint64_t paddr, uint64_t len);
static inline uint8_t *vm_ram_ptr(vm *m, uint64_t paddr) { return m->ram + (paddr - VM_RAM_BASE); }

/* devices.c: virtio-net with its backends, virtio-console, virtio-rng (after the disks) */
int vm_add_io_devices(vm *m, vs_error **err);
void vm_destroy_io_devices(vm *m);

/* fdt.c */
int vm_fdt_build(vm *m, void *buf, size_t bufsize, vs_error **err);
int vm_fdt_add_virtio_mmio(void *fdt, uint64_t base, unsigned irq, vs_error **err);

/* boot.c: load firmware, kernel, initrd and device tree; set entry point and registers. */
int vm_boot_load(vm *m, vs_error **err);
void vm_boot_reset_harts(vm *m);

/* sbi.c */
bool vm_sbi_call(void *opaque, rv_hart *hart);

#endif
