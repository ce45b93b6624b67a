/* vessel vm: a RISC-V (RV64GC) virtual machine compatible with QEMU's `virt` memory map.
 *
 * This is the module's one public header: what src/cli/vmm (and later the daemon) may use.
 *
 *     vm_config cfg;
 *     vm_config_init(&cfg);
 *     cfg.kernel = "Image";
 *     vm *m = vm_create(&cfg, &err);       // RAM, devices, device tree, kernel/firmware loaded
 *     vm_exit_reason r = vm_run(m, &err);  // runs until poweroff, reset, HTIF exit or quit
 *     vm_destroy(m);
 */
#ifndef VESSEL_VM_H
#define VESSEL_VM_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "base/base.h"

#define VM_RAM_BASE 0x80000000ULL
#define VM_MAX_SMP 8
#define VM_MIN_MEM (1ull << 20)
#define VM_MAX_MEM (64ull << 30)
#define VM_DEFAULT_MEM (512ull << 20)
#define VM_MAX_DISKS 8
#define VM_MAX_NICS 4

typedef enum {
  VM_BIOS_BUILTIN = 0, /* the VMM's own SBI; the kernel starts in S-mode */
  VM_BIOS_NONE,        /* no firmware: the kernel (an ELF test program) starts in M-mode */
  VM_BIOS_FILE,        /* an M-mode firmware image (OpenSBI fw_dynamic/fw_jump) */
} vm_bios_kind;

/* Which device the console's input goes to; both print to console_out. */
typedef enum {
  VM_CONSOLE_UART = 0, /* the ns16550a UART: the guest's ttyS0 */
  VM_CONSOLE_VIRTIO,   /* virtio-console: the guest's hvc0 (default command line console=hvc0) */
} vm_console_device;

typedef enum {
  VM_RNG_AUTO = 0, /* a virtio-rng device if a virtio-mmio slot is left */
  VM_RNG_ON,
  VM_RNG_OFF,
} vm_rng_mode;

typedef struct vm_config {
  const char *kernel; /* Linux Image (with or without PE header) or ELF; required */
  const char *initrd; /* optional */
  const char *append; /* kernel command line; NULL = default */
  vm_bios_kind bios;
  const char *bios_path; /* for VM_BIOS_FILE */
  bool htif;             /* bare-metal test mode: tohost/fromhost from the ELF's symbols */
  uint64_t mem_size;     /* bytes */
  unsigned smp;          /* number of harts, 1..VM_MAX_SMP */
  int console_in;        /* guest console input (-1: none) */
  int console_out;       /* guest console output */
  bool console_escape;   /* Ctrl-A x quits, Ctrl-A a sends Ctrl-A (on a TTY) */
  bool trace;            /* print traps and device events to stderr */
  bool interpreter;      /* run the harts in the interpreter (--accel interp), not translated */
  bool no_hypervisor;    /* --cpu rv64,h=off: harts without the H extension (default: with) */
  bool one_thread;       /* --hart-threads off: every hart on vm_run's thread, round-robin */
  bool net_offline;      /* NICs without a live backend: a replay delivers the recorded frames */
  const char *disks[VM_MAX_DISKS]; /* --disk specs (vm_disk_parse_spec syntax) */
  unsigned ndisks;
  const char *nets[VM_MAX_NICS]; /* --net specs (vm_net_check_spec syntax) */
  unsigned nnets;
  vm_console_device console;
  vm_rng_mode rng;
  bool balloon; /* --balloon: a virtio-balloon device (free page reporting, inflate, stats) */
} vm_config;

typedef enum {
  VM_EXIT_POWEROFF = 0, /* guest powered off (syscon, SBI SRST shutdown) */
  VM_EXIT_RESET,        /* guest asked for a reboot */
  VM_EXIT_FAIL,         /* guest reported failure (SRST with failure reason, syscon FAIL, HTIF) */
  VM_EXIT_QUIT,         /* the user quit (Ctrl-A x, the control socket's quit, snapshot --quit) */
  VM_EXIT_MIGRATED,     /* the guest moved to another vessel-vmm (migrate): it runs there now */
} vm_exit_reason;

typedef struct vm vm;

void vm_config_init(vm_config *cfg);

/* Parse a memory size such as "512M", "2G", "1048576" (suffixes K, M, G, T; optional "iB"/"B").
 * Checks the range VM_MIN_MEM..VM_MAX_MEM. */
int vm_parse_mem_size(const char *s, uint64_t *out, vs_error **err);

/* Check a --net spec: user[,hostfwd=[tcp|udp]:[HOSTADDR]:HOSTPORT-[GUESTADDR]:GUESTPORT]...
 * [,mac=MAC][,mtu=N] or tap=IFNAME[,mac=MAC][,mtu=N]; the error names what is wrong. */
int vm_net_check_spec(const char *spec, vs_error **err);

vm *vm_create(const vm_config *cfg, vs_error **err);
/* Run until the guest stops. Returns the exit reason (>= 0) or -1 with *err set on an internal
 * error. *exit_code receives the guest's failure code for VM_EXIT_FAIL (HTIF: tohost >> 1). */
int vm_run(vm *m, int *exit_code, vs_error **err);
void vm_destroy(vm *m);

/* ------------------------------------------------------------------ lifecycle (docs/lifecycle.md)
 *
 * Snapshots, restore, clones and live migration. All of these run on the thread that runs
 * vm_run (the control socket's requests are served between instruction slices, or, with a host
 * thread per hart, while every hart stands at an instruction boundary: vm_pause). */

/* Serve the JSON control API on a unix socket at path (mode 0600) while vm_run runs. A stale
 * socket file left at path by a dead VMM is replaced; any other file is an error. */
int vm_control_listen(vm *m, const char *path, vs_error **err);

/* The client side: send one request (a JSON object) to the control socket at path and read its
 * reply. With until_events (NULL-terminated names), keep reading after a successful reply until
 * one of those events arrives (*event) or the VMM closes the connection (*event stays NULL). */
int vm_control_call(const char *path, json_t *req, const char *const *until_events, json_t **reply,
                    json_t **event, vs_error **err);

/* Serve the GDB remote serial protocol (docs/debugging.md) on spec "tcp:[HOST]:PORT" (HOST
 * default 127.0.0.1) while vm_run runs. wait: the VM starts paused until the debugger continues. */
int vm_gdb_listen(vm *m, const char *spec, bool wait, vs_error **err);

/* Ask the guest to shut down cleanly: press the virtual power button (docs/lifecycle.md). */
int vm_powerdown(vm *m, vs_error **err);

/* Stop / continue the harts. The guest's clock (mtime) stands still while paused. */
void vm_pause(vm *m);
void vm_resume(vm *m);
bool vm_is_paused(const vm *m);

typedef struct vm_snapshot_opts {
  bool quit;         /* stop the VM after the snapshot (suspend to disk) */
  bool disk_overlay; /* freeze each writable disk as the snapshot's base; the VM continues on a
                        new qcow2 overlay next to it (PATH.<n>.qcow2) */
} vm_snapshot_opts;

/* Write the whole VM state into dir (created if missing): `state` (devices, harts, config,
 * SHA-256) and `memory` (guest RAM, sparse). Pauses the VM while capturing. */
int vm_snapshot(vm *m, const char *dir, const vm_snapshot_opts *opts, vs_error **err);

typedef struct vm_restore_opts {
  /* the console and diagnostics of this process (not part of the snapshot) */
  int console_in, console_out;
  bool console_escape, trace;
  bool interpreter;      /* as vm_config.interpreter */
  bool one_thread;       /* as vm_config.one_thread */
  bool net_offline;      /* as vm_config.net_offline */
  bool clone;            /* a new identity: own disk overlays, new MAC addresses */
  const char *clone_dir; /* where a clone's overlays go (NULL: a new DIR/clone-XXXXXX) */
  bool verify_memory;    /* check the memory file's SHA-256 too (reads all of it) */
  /* --net with --restore: new backends for the snapshot's NICs, one each, in order (a clone's
   * own taps); a mac= in them is the clone's new address. nnets 0: the snapshot's own. */
  const char *nets[VM_MAX_NICS];
  unsigned nnets;
} vm_restore_opts;

void vm_restore_opts_init(vm_restore_opts *o);
/* A VM in the state the snapshot in dir recorded, ready for vm_run; the guest's RAM is the
 * snapshot's memory file mapped copy-on-write. Nothing runs when this fails. */
vm *vm_restore(const char *dir, const vm_restore_opts *opts, vs_error **err);

/* Record and replay (docs/debugging.md). vm_record_start, on a VM that vm_create built and
 * that has not run yet, saves a starting snapshot in dir/start and logs every outside input of
 * the run that follows into dir/log. vm_replay_open builds the VM of dir/start to replay dir/log
 * (vm_run then takes no outside input). After vm_run, vm_rr_finish writes the log's end, or
 * checks that the replay reached it with the recorded state, and prints the run's digest; it
 * fails with the first divergence. Up to RR_MAX_HARTS harts on one thread, --net user, disks. */
int vm_record_start(vm *m, const char *dir, vs_error **err);
/* What --record refuses before the machine is built (a tap network). */
int vm_record_check_config(const vm_config *cfg, vs_error **err);
/* from_snapshot NULL: from dir/start; else a snapshot that `ctl snapshot` took during the
 * recording (named in the log by its state's digest; any other is refused): the replay begins
 * there and reads the log on from that point. */
vm *vm_replay_open(const char *dir, const char *from_snapshot, const vm_restore_opts *opts,
                   vs_error **err);
int vm_rr_finish(vm *m, vs_error **err);
/* dir/log (or the file dir) as text, one record per line (vessel-vmm replay-dump). */
int vm_replay_dump(const char *dir, FILE *out, vs_error **err);

/* Live migration. The receiver listens on host:port (or "fd:N", a listening socket it inherited:
 * its parent picked the port and can tell the sender before this process runs), takes one
 * stream and returns the migrated VM ready for vm_run (or an error: a stream cut short or
 * malformed). */
vm *vm_migrate_incoming(const char *hostport, const vm_restore_opts *opts, vs_error **err);
/* The sender: starts pre-copy to host:port from the run loop; the guest keeps running until the
 * final stop-and-copy, then vm_run returns VM_EXIT_MIGRATED. Failures are reported as events and
 * leave the VM running. */
int vm_migrate_start(vm *m, const char *dest, vs_error **err);

#endif
