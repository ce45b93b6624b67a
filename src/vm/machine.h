/* The machine: internal header shared by machine.c, boot.c, fdt.c and sbi.c (not public). */
#ifndef VESSEL_VM_MACHINE_H
#define VESSEL_VM_MACHINE_H

#include <stdbool.h>
#include <stdint.h>

#include "vm/cpu/cpu.h"
#include "vm/dev/dev.h"
#include "vm/dev/htif.h"
#include "vm/dev/virtio.h"
#include "vm/disk/disk.h"
#include "vm/vm.h"

/* Memory map (QEMU virt compatible) */
#define VM_SYSCON_BASE 0x00100000ull
#define VM_RTC_BASE 0x00101000ull
#define VM_ACLINT_BASE 0x02000000ull
#define VM_PLIC_BASE 0x0c000000ull
#define VM_UART_BASE 0x10000000ull
#define VM_UART_SIZE 0x100ull
#define VM_VIRTIO_BASE 0x10001000ull
#define VM_VIRTIO_SIZE 0x1000ull
#define VM_MAX_VIRTIO 8

#define VM_UART_IRQ 10
#define VM_RTC_IRQ 11
#define VM_VIRTIO_IRQ_FIRST 1

#define VM_TIMEBASE_HZ 10000000u
#define VM_UART_CLOCK_HZ 3686400u
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
  bool htif_enabled;
  vm_virtio_slot virtio[VM_MAX_VIRTIO];
  unsigned num_virtio;
  vm_disk *disk[VM_MAX_DISKS];
  virtio_blk *blk[VM_MAX_DISKS]; /* on the heap: each holds a large scratch element */

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

  /* why the run loop stopped */
  bool stop;
  vm_exit_reason exit_reason;
  int exit_code;
};

/* machine.c */
uint64_t vm_read_mtime(void *opaque);
void vm_request_exit(vm *m, vm_exit_reason reason, int code);
/* Guest physical memory access for the machine's own use (SBI DBCN, loaders): false if the
 * range is not entirely inside RAM. */
bool vm_ram_range_ok(const vm *m, uint64_t paddr, uint64_t len);
static inline uint8_t *vm_ram_ptr(vm *m, uint64_t paddr) { return m->ram + (paddr - VM_RAM_BASE); }

/* fdt.c */
int vm_fdt_build(vm *m, void *buf, size_t bufsize, vs_error **err);
int vm_fdt_add_virtio_mmio(void *fdt, uint64_t base, unsigned irq, vs_error **err);

/* boot.c: load firmware, kernel, initrd and device tree; set entry point and registers. */
int vm_boot_load(vm *m, vs_error **err);
void vm_boot_reset_harts(vm *m);

/* sbi.c */
bool vm_sbi_call(void *opaque, rv_hart *hart);

#endif
