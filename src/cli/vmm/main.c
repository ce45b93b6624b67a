/* vessel-vmm: run a RISC-V virtual machine with its console on stdin/stdout. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "base/base.h"
#include "cli/vmm/ctl.h"
#include "cli/vmm/img.h"
#include "vm/vm.h"

/* Exit statuses (documented in --help) */
enum {
  EXIT_POWEROFF = 0,
  EXIT_VMM_ERROR = 1,
  EXIT_USAGE = 2,
  EXIT_GUEST_RESET = 3,
  EXIT_GUEST_FAILURE = 4,
};

static const char usage_text[] =
    "Usage: vessel-vmm --kernel PATH [OPTIONS]\n"
    "       vessel-vmm --restore DIR [--clone [--clone-dir DIR]] [--api-sock PATH]\n"
    "       vessel-vmm --incoming HOST:PORT|fd:N [--paused] [--api-sock PATH]\n"
    "       vessel-vmm --replay DIR [--from SNAPSHOT] [--accel jit|interp]\n"
    "                  [--gdb tcp:[HOST]:PORT [--gdb-wait]]\n"
    "       vessel-vmm replay-dump DIR      (a recording's log, one record per line)\n"
    "       vessel-vmm img SUBCOMMAND ...   (disk images, see 'vessel-vmm img --help')\n"
    "       vessel-vmm ctl SOCKET COMMAND   (control a running VM, see 'vessel-vmm ctl --help')\n"
    "\n"
    "Run a RISC-V (RV64GC) virtual machine compatible with QEMU's 'virt' machine. The guest\n"
    "console (ns16550a UART, ttyS0; or virtio-console, hvc0, with --console virtio) is on\n"
    "stdin/stdout; on a terminal it is put in raw mode and Ctrl-A x quits, Ctrl-A h lists the\n"
    "other console commands.\n"
    "\n"
    "Options:\n"
    "  --kernel PATH     kernel: a RISC-V Linux Image (with or without EFI/PE header, may be\n"
    "                    gzip-compressed) or an ELF executable (required)\n"
    "  --initrd PATH     initial ramdisk (cpio archive, compressed or not)\n"
    "  --append STR      kernel command line (default: \"console=ttyS0\")\n"
    "  --bios KIND       firmware: 'builtin' (default; the VMM implements SBI 2.0 and starts the\n"
    "                    kernel in S-mode), 'none' (start the kernel in M-mode), or the PATH of "
    "an\n"
    "                    M-mode firmware such as OpenSBI's fw_dynamic.bin or fw_jump.bin\n"
    "  --htif            bare-metal test mode (needs --bios none and an ELF kernel): HTIF through\n"
    "                    the program's tohost/fromhost symbols; tohost=1 exits with status 0, any\n"
    "                    other odd value v exits with status v>>1\n"
    "  --mem SIZE        guest RAM, e.g. 512M or 2G (suffix K, M, G, T; a plain number is MiB);\n"
    "                    default 512M, at most 64G\n"
    "  --smp N           number of harts, 1 to 8 (default 1)\n"
    "  --disk SPEC       a virtio-blk disk (repeatable, up to 8: /dev/vda, vdb, ... in order);\n"
    "                    SPEC is PATH[,format=raw|qcow2][,readonly=on|off]\n"
    "                    [,cache=writeback|none][,serial=ID]\n"
    "  --net SPEC        a virtio-net NIC (repeatable, up to 4: eth0, eth1, ...); SPEC is\n"
    "                    user[,hostfwd=[tcp|udp]:[HOSTADDR]:HOSTPORT-[GUESTADDR]:GUESTPORT]...\n"
    "                         user-mode networking (libslirp, no privileges): network\n"
    "                         10.0.2.0/24, DHCP from 10.0.2.15, the host (and its loopback)\n"
    "                         at 10.0.2.2, DNS at 10.0.2.3; hostfwd forwards a host port\n"
    "                         into the guest (HOSTADDR default 0.0.0.0, GUESTADDR 10.0.2.15)\n"
    "                    tap=IFNAME[,vnet_hdr=on|off]\n"
    "                         the host tap interface IFNAME (CAP_NET_ADMIN, or a tap made\n"
    "                         for the user); the virtio-net header travels with the frames,\n"
    "                         so checksums and TCP segmentation are left to the host kernel\n"
    "                         (default: when the kernel supports it; on: or fail; off: never)\n"
    "                    either with [,mac=52:54:00:12:34:56][,mtu=1500] (default MAC\n"
    "                    52:54:00:12:34:56 for the first NIC, ...:57 for the second, ...)\n"
    "  --console DEV     the device console input goes to: 'uart' (default; the guest's ttyS0)\n"
    "                    or 'virtio' (virtio-console, the guest's hvc0; the default command\n"
    "                    line becomes \"console=hvc0\"). The other device's output still shows.\n"
    "  --rng on|off      a virtio-rng device fed from the host's getrandom() (default: on when\n"
    "                    a virtio slot is left after the disks, NICs and console)\n"
    "  --balloon         a virtio-balloon device: the guest reports its free pages and the\n"
    "                    host takes them back; the control socket's balloon command sets a\n"
    "                    target and reads the guest's memory statistics\n"
    "  --api-sock PATH   serve the JSON control API on a unix socket (mode 0600)\n"
    "  --restore DIR     resume the VM saved in DIR by 'ctl SOCKET snapshot DIR' (the snapshot\n"
    "                    describes the machine: no other machine option is needed)\n"
    "  --clone           with --restore: a new VM from the snapshot (shared RAM pages, its own\n"
    "                    qcow2 overlay per writable disk, new MAC addresses)\n"
    "  --clone-dir DIR   where a clone's overlays go (default: a new DIR/clone-XXXXXX)\n"
    "                    (--net with --restore: new backends for the snapshot's NICs, one\n"
    "                    each, in order; a clone takes the mac= they give)\n"
    "  --verify-memory   with --restore: check the memory file's SHA-256 (reads all of it)\n"
    "  --incoming H:P    receive a live migration on TCP H:P, then run the VM (fd:N: accept\n"
    "                    on the listening socket inherited as descriptor N)\n"
    "  --paused          start with the harts stopped; 'resume' on the control socket runs\n"
    "                    them (a migration's receiver waits so for its daemon)\n"
    "  --record DIR      save a starting snapshot in DIR/start and log every outside input\n"
    "                    (clock, interrupts, console input, rng bytes, network frames) in\n"
    "                    DIR/log, writable disks frozen under an overlay; prints the\n"
    "                    instruction count and a digest of the final state at the end;\n"
    "                    with --api-sock, 'ctl SOCKET snapshot DIR' takes a replay point\n"
    "  --replay DIR      run DIR's recording again with no outside input; fails at the first\n"
    "                    divergence; with --gdb, gdb can also run it backwards (reverse-stepi,\n"
    "                    reverse-continue; see docs/debugging.md)\n"
    "  --from SNAPSHOT   with --replay: begin at a snapshot taken during the recording\n"
    "  --accel KIND      how the harts run: 'jit' (default on x86-64 hosts; guest code is\n"
    "                    translated to host code) or 'interp' (the interpreter)\n"
    "  --cpu MODEL       the harts' ISA: 'rv64' (default: RV64GC with the hypervisor\n"
    "                    extension H, so the guest can run KVM) or 'rv64,h=off' (without H)\n"
    "  --hart-threads on|off  with --smp N > 1: each hart on its own host thread (on, the\n"
    "                    default) or all harts taking turns on one thread (off)\n"
    "  --gdb tcp:[HOST]:PORT  serve a gdb remote stub (HOST default 127.0.0.1; see\n"
    "                    docs/debugging.md): 'target remote HOST:PORT' in gdb-multiarch\n"
    "  --gdb-wait        start with the harts stopped until the debugger continues (as QEMU's\n"
    "                    -S; without --gdb it listens on tcp::1234)\n"
    "  --trace           print SBI calls and accesses to unmapped addresses on stderr\n"
    "                    (also enabled by VESSEL_TRACE=1)\n"
    "  -h, --help        show this help\n"
    "\n"
    "Exit status:\n"
    "  0  the guest powered off (or Ctrl-A x)\n"
    "  1  the VMM failed: unusable kernel, initrd or firmware, out of memory, internal error\n"
    "  2  bad command line\n"
    "  3  the guest asked for a reboot\n"
    "  4  the guest reported a failure (SBI system reset with failure reason, test device)\n"
    "  N  with --htif: the test program's exit code (tohost >> 1)\n";

enum {
  OPT_KERNEL = 256,
  OPT_INITRD,
  OPT_APPEND,
  OPT_BIOS,
  OPT_HTIF,
  OPT_MEM,
  OPT_SMP,
  OPT_TRACE,
  OPT_ACCEL,
  OPT_CPU,
  OPT_HART_THREADS,
  OPT_DISK,
  OPT_NET,
  OPT_CONSOLE,
  OPT_RNG,
  OPT_BALLOON,
  OPT_API_SOCK,
  OPT_RESTORE,
  OPT_CLONE,
  OPT_CLONE_DIR,
  OPT_VERIFY_MEMORY,
  OPT_INCOMING,
  OPT_GDB,
  OPT_GDB_WAIT,
  OPT_RECORD,
  OPT_REPLAY,
  OPT_PAUSED,
  OPT_FROM,
};

/* What to run: a new VM from cfg, a snapshot, or an incoming migration. */
typedef struct vmm_args {
  vm_config cfg;
  const char *api_sock;
  const char *restore;
  const char *incoming;
  const char *gdb;
  bool gdb_wait;
  bool paused;        /* --paused */
  const char *record; /* --record DIR */
  const char *replay; /* --replay DIR */
  const char *from;   /* --from SNAPSHOT */
  vm_restore_opts ropts;
} vmm_args;

static const struct option long_options[] = {
    {"kernel", required_argument, NULL, OPT_KERNEL},
    {"initrd", required_argument, NULL, OPT_INITRD},
    {"append", required_argument, NULL, OPT_APPEND},
    {"bios", required_argument, NULL, OPT_BIOS},
    {"htif", no_argument, NULL, OPT_HTIF},
    {"mem", required_argument, NULL, OPT_MEM},
    {"smp", required_argument, NULL, OPT_SMP},
    {"trace", no_argument, NULL, OPT_TRACE},
    {"accel", required_argument, NULL, OPT_ACCEL},
    {"cpu", required_argument, NULL, OPT_CPU},
    {"hart-threads", required_argument, NULL, OPT_HART_THREADS},
    {"disk", required_argument, NULL, OPT_DISK},
    {"net", required_argument, NULL, OPT_NET},
    {"console", required_argument, NULL, OPT_CONSOLE},
    {"rng", required_argument, NULL, OPT_RNG},
    {"balloon", no_argument, NULL, OPT_BALLOON},
    {"api-sock", required_argument, NULL, OPT_API_SOCK},
    {"gdb", required_argument, NULL, OPT_GDB},
    {"gdb-wait", no_argument, NULL, OPT_GDB_WAIT},
    {"restore", required_argument, NULL, OPT_RESTORE},
    {"clone", no_argument, NULL, OPT_CLONE},
    {"clone-dir", required_argument, NULL, OPT_CLONE_DIR},
    {"verify-memory", no_argument, NULL, OPT_VERIFY_MEMORY},
    {"incoming", required_argument, NULL, OPT_INCOMING},
    {"record", required_argument, NULL, OPT_RECORD},
    {"replay", required_argument, NULL, OPT_REPLAY},
    {"paused", no_argument, NULL, OPT_PAUSED},
    {"from", required_argument, NULL, OPT_FROM},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

/* --cpu: "rv64" with an optional ",h=on|off" (QEMU's spelling also: true/false). */
static int parse_cpu_model(const char *s, bool *no_hypervisor) {
  if (strncmp(s, "rv64", 4) != 0)
    return -1;
  s += 4;
  *no_hypervisor = false;
  if (!*s)
    return 0;
  if (strcmp(s, ",h=on") == 0 || strcmp(s, ",h=true") == 0)
    return 0;
  if (strcmp(s, ",h=off") == 0 || strcmp(s, ",h=false") == 0) {
    *no_hypervisor = true;
    return 0;
  }
  return -1;
}

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  /* the analyser loses va_start on some of parse_args's paths into here */
  vsnprintf(msg, sizeof(msg), fmt, ap); // NOLINT(clang-analyzer-valist.Uninitialized)
  va_end(ap);
  fprintf(stderr, "vessel-vmm: %s\nTry 'vessel-vmm --help'.\n", msg);
  return EXIT_USAGE;
}

static int parse_smp(const char *s, unsigned *out) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (end == s || *end || errno || v < 1 || v > VM_MAX_SMP)
    return -1;
  *out = (unsigned)v;
  return 0;
}

/* Parse the command line into cfg. Returns -1 to continue, or an exit status. */
static int parse_args(int argc, char **argv, vmm_args *a) {
  vm_config *cfg = &a->cfg;
  bool machine_opts = false; /* options that a snapshot or migration stream decides */
  opterr = 0;
  int c;
  while ((c = getopt_long(argc, argv, ":h", long_options, NULL)) != -1) {
    switch (c) {
    case OPT_API_SOCK:
      a->api_sock = optarg;
      break;
    case OPT_GDB:
      a->gdb = optarg;
      break;
    case OPT_GDB_WAIT:
      a->gdb_wait = true;
      break;
    case OPT_RESTORE:
      a->restore = optarg;
      break;
    case OPT_RECORD:
      a->record = optarg;
      break;
    case OPT_REPLAY:
      a->replay = optarg;
      break;
    case OPT_FROM:
      a->from = optarg;
      break;
    case OPT_CLONE:
      a->ropts.clone = true;
      break;
    case OPT_CLONE_DIR:
      a->ropts.clone_dir = optarg;
      break;
    case OPT_VERIFY_MEMORY:
      a->ropts.verify_memory = true;
      break;
    case OPT_INCOMING:
      a->incoming = optarg;
      break;
    case OPT_PAUSED:
      a->paused = true;
      break;
    case OPT_KERNEL:
      cfg->kernel = optarg;
      break;
    case OPT_INITRD:
      machine_opts = true;
      cfg->initrd = optarg;
      break;
    case OPT_APPEND:
      machine_opts = true;
      cfg->append = optarg;
      break;
    case OPT_BIOS:
      machine_opts = true;
      if (strcmp(optarg, "builtin") == 0) {
        cfg->bios = VM_BIOS_BUILTIN;
      } else if (strcmp(optarg, "none") == 0) {
        cfg->bios = VM_BIOS_NONE;
      } else if (*optarg) {
        cfg->bios = VM_BIOS_FILE;
        cfg->bios_path = optarg;
      } else {
        return usage_error("%s", "--bios needs 'builtin', 'none' or a firmware path");
      }
      break;
    case OPT_HTIF:
      machine_opts = true;
      cfg->htif = true;
      break;
    case OPT_MEM: {
      machine_opts = true;
      _cleanup_error_ vs_error *err = NULL;
      if (vm_parse_mem_size(optarg, &cfg->mem_size, &err) < 0)
        return usage_error("--mem: %s", err->msg);
      break;
    }
    case OPT_SMP:
      machine_opts = true;
      if (parse_smp(optarg, &cfg->smp) < 0)
        return usage_error("--smp '%s': expected a number of harts from 1 to 8", optarg);
      break;
    case OPT_TRACE:
      cfg->trace = true;
      break;
    case OPT_ACCEL:
      if (strcmp(optarg, "jit") != 0 && strcmp(optarg, "interp") != 0)
        return usage_error("--accel '%s': expected 'jit' or 'interp'", optarg);
      cfg->interpreter = strcmp(optarg, "interp") == 0;
      break;
    case OPT_CPU:
      if (parse_cpu_model(optarg, &cfg->no_hypervisor) < 0)
        return usage_error("--cpu '%s': expected 'rv64', 'rv64,h=on' or 'rv64,h=off'", optarg);
      break;
    case OPT_HART_THREADS:
      if (strcmp(optarg, "on") != 0 && strcmp(optarg, "off") != 0)
        return usage_error("--hart-threads '%s': expected 'on' or 'off'", optarg);
      cfg->one_thread = strcmp(optarg, "off") == 0;
      break;
    case OPT_DISK:
      machine_opts = true;
      if (cfg->ndisks == VM_MAX_DISKS)
        return usage_error("too many --disk options (at most %d)", VM_MAX_DISKS);
      cfg->disks[cfg->ndisks++] = optarg;
      break;
    case OPT_NET: {
      _cleanup_error_ vs_error *err = NULL;
      if (cfg->nnets == VM_MAX_NICS)
        return usage_error("too many --net options (at most %d)", VM_MAX_NICS);
      if (vm_net_check_spec(optarg, &err) < 0)
        return usage_error("--net: %s", err->msg);
      cfg->nets[cfg->nnets++] = optarg;
      break;
    }
    case OPT_CONSOLE:
      if (strcmp(optarg, "uart") == 0 || strcmp(optarg, "ttyS0") == 0)
        cfg->console = VM_CONSOLE_UART;
      else if (strcmp(optarg, "virtio") == 0 || strcmp(optarg, "hvc0") == 0)
        cfg->console = VM_CONSOLE_VIRTIO;
      else
        return usage_error("--console '%s': expected 'uart' or 'virtio'", optarg);
      break;
    case OPT_RNG:
      if (strcmp(optarg, "on") == 0)
        cfg->rng = VM_RNG_ON;
      else if (strcmp(optarg, "off") == 0)
        cfg->rng = VM_RNG_OFF;
      else
        return usage_error("--rng '%s': expected 'on' or 'off'", optarg);
      break;
    case OPT_BALLOON:
      cfg->balloon = true;
      break;
    case 'h':
      fputs(usage_text, stdout);
      return 0;
    case ':':
      return usage_error("option '%s' needs an argument", argv[optind - 1]);
    default:
      return usage_error("unknown option '%s'", argv[optind - 1]);
    }
  }
  if (optind < argc)
    return usage_error("unexpected argument '%s'", argv[optind]);
  if (a->restore && a->incoming)
    return usage_error("%s", "--restore and --incoming exclude each other");
  if (a->paused && (a->record || a->replay))
    return usage_error("%s", "--paused does not go with --record or --replay");
  if ((a->record || a->replay) && (a->restore || a->incoming || (a->replay && a->api_sock) ||
                                   (a->record && (a->gdb || a->gdb_wait || a->replay))))
    return usage_error("%s", "--record and --replay take no --restore, --incoming or each "
                             "other, --record no --gdb, --replay no --api-sock");
  if (a->from && !a->replay)
    return usage_error("%s", "--from needs --replay");
  if (a->replay) {
    if (machine_opts)
      return usage_error("%s", "the recording describes the machine: --kernel, --mem, --disk, "
                               "... are not allowed with --replay");
    return -1;
  }
  if ((a->ropts.clone || a->ropts.clone_dir || a->ropts.verify_memory) && !a->restore)
    return usage_error("%s", "--clone, --clone-dir and --verify-memory need --restore");
  if (a->restore || a->incoming) {
    if (machine_opts || cfg->kernel)
      return usage_error("%s", "the snapshot or migration stream describes the machine: "
                               "--kernel, --mem, --disk, ... are not allowed with --restore "
                               "or --incoming");
    return -1;
  }
  if (!cfg->kernel)
    return usage_error("%s", "no kernel given: use --kernel PATH");
  if (cfg->htif && cfg->bios != VM_BIOS_NONE)
    return usage_error("%s", "--htif needs --bios none");
  return -1;
}

/* ------------------------------------------------------------------ terminal */

/* The terminal state to restore, kept for the signal handler (which can only reach statics). */
static struct termios saved_tty;
static bool tty_raw;

static void tty_restore(void) {
  if (tty_raw)
    tcsetattr(STDIN_FILENO, TCSANOW, &saved_tty);
}

static void fatal_signal(int sig) {
  tty_restore();
  signal(sig, SIG_DFL);
  raise(sig);
}

/* Raw input like QEMU's stdio console: keys (Ctrl-C included) go to the guest; output keeps
 * its newline translation. */
static void tty_make_raw(void) {
  if (tcgetattr(STDIN_FILENO, &saved_tty) < 0)
    return;
  struct termios t = saved_tty;
  t.c_iflag &= ~(tcflag_t)(IGNBRK | BRKINT | PARMRK | ISTRIP | INLCR | IGNCR | ICRNL | IXON);
  t.c_lflag &= ~(tcflag_t)(ECHO | ECHONL | ICANON | ISIG | IEXTEN);
  t.c_cflag &= ~(tcflag_t)(CSIZE | PARENB);
  t.c_cflag |= CS8;
  t.c_cc[VMIN] = 1;
  t.c_cc[VTIME] = 0;
  if (tcsetattr(STDIN_FILENO, TCSANOW, &t) < 0)
    return;
  tty_raw = true;
  atexit(tty_restore);
  signal(SIGTERM, fatal_signal);
  signal(SIGHUP, fatal_signal);
}

/* ------------------------------------------------------------------ main */

/* vessel-vmm replay-dump DIR: the log of a recording as text (docs/debugging.md). */
static int replay_dump_main(int argc, char **argv) {
  if (argc == 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
    fputs("Usage: vessel-vmm replay-dump DIR|LOG\n"
          "Print a recording's log (DIR/log) one record per line: a header line, then the\n"
          "record's number, kind, instruction count and payload (docs/debugging.md).\n",
          stdout);
    return 0;
  }
  if (argc != 2)
    return usage_error("%s", "replay-dump takes one argument: the recording's directory");
  _cleanup_error_ vs_error *err = NULL;
  if (vm_replay_dump(argv[1], stdout, &err) < 0) {
    vs_error_print(err, "vessel-vmm replay-dump");
    return EXIT_VMM_ERROR;
  }
  return 0;
}

static int exit_status(vm_exit_reason reason, int code, bool htif) {
  switch (reason) {
  case VM_EXIT_POWEROFF:
  case VM_EXIT_QUIT:
  case VM_EXIT_MIGRATED:
    return EXIT_POWEROFF;
  case VM_EXIT_RESET:
    return EXIT_GUEST_RESET;
  case VM_EXIT_FAIL:
    return htif ? code : EXIT_GUEST_FAILURE;
  }
  return EXIT_VMM_ERROR;
}

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "img") == 0)
    return vmm_img_main(argc - 1, argv + 1);
  vs_log_configure("vessel-vmm", VS_LOG_WARN, VS_LOG_FORMAT_TEXT, 2);
  if (argc > 1 && strcmp(argv[1], "ctl") == 0)
    return vmm_ctl_main(argc - 1, argv + 1);
  if (argc > 1 && strcmp(argv[1], "replay-dump") == 0)
    return replay_dump_main(argc - 1, argv + 1);
  vmm_args a = {0};
  vm_config_init(&a.cfg);
  vm_restore_opts_init(&a.ropts);
  const char *trace_env = getenv("VESSEL_TRACE");
  a.cfg.trace = trace_env && *trace_env && strcmp(trace_env, "0") != 0;
  int rc = parse_args(argc, argv, &a);
  if (rc >= 0)
    return rc;
  vm_config cfg = a.cfg;
  if (a.record)
    cfg.one_thread = true; /* the harts take turns on one thread in a repeatable order */

  signal(SIGPIPE, SIG_IGN); /* a closed console must not kill the VM */
  bool tty = isatty(STDIN_FILENO);
  cfg.console_in = STDIN_FILENO;
  cfg.console_out = STDOUT_FILENO;
  cfg.console_escape = tty;
  a.ropts.console_in = cfg.console_in;
  a.ropts.console_out = cfg.console_out;
  a.ropts.console_escape = cfg.console_escape;
  a.ropts.trace = cfg.trace;
  a.ropts.interpreter = cfg.interpreter;
  a.ropts.one_thread = cfg.one_thread;
  for (unsigned i = 0; i < cfg.nnets; i++) /* with --restore: the NICs' new backends */
    a.ropts.nets[a.ropts.nnets++] = cfg.nets[i];

  _cleanup_error_ vs_error *err = NULL;
  if (a.record && vm_record_check_config(&cfg, &err) < 0) {
    vs_error_print(err, "vessel-vmm");
    return EXIT_VMM_ERROR;
  }
  vm *m = a.restore    ? vm_restore(a.restore, &a.ropts, &err)
          : a.incoming ? vm_migrate_incoming(a.incoming, &a.ropts, &err)
          : a.replay   ? vm_replay_open(a.replay, a.from, &a.ropts, &err)
                       : vm_create(&cfg, &err);
  if (!m) {
    vs_error_print(err, "vessel-vmm");
    return EXIT_VMM_ERROR;
  }
  if (a.record && vm_record_start(m, a.record, &err) < 0) {
    vs_error_print(err, "vessel-vmm");
    vm_destroy(m);
    return EXIT_VMM_ERROR;
  }
  if (a.api_sock && vm_control_listen(m, a.api_sock, &err) < 0) {
    vs_error_print(err, "vessel-vmm");
    vm_destroy(m);
    return EXIT_VMM_ERROR;
  }
  if (a.paused)
    vm_pause(m); /* until a client of the control socket says resume */
  if ((a.gdb || a.gdb_wait) &&
      vm_gdb_listen(m, a.gdb ? a.gdb : "tcp::1234", a.gdb_wait, &err) < 0) {
    vs_error_print(err, "vessel-vmm");
    vm_destroy(m);
    return EXIT_VMM_ERROR;
  }
  if (tty)
    tty_make_raw();
  int code = 0;
  int reason = vm_run(m, &code, &err);
  if (reason >= 0 && vm_rr_finish(m, &err) < 0)
    reason = -1;
  vm_destroy(m);
  tty_restore();
  if (reason < 0) {
    vs_error_print(err, "vessel-vmm");
    return EXIT_VMM_ERROR;
  }
  return exit_status((vm_exit_reason)reason, code, cfg.htif);
}
