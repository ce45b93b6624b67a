/* Record and replay of a whole VM (replay.h has the log; docs/debugging.md the user's view).
 *
 * What makes a run repeatable: one hart on one thread; the guest's clock stands still inside a
 * slice of the run loop and moves only between slices (a TIME record), so however often an
 * engine looks at it inside a slice it reads the same; the RTC follows that clock; interrupts
 * are taken only where the recording took them (the CPU's irq_gate), which replay reaches
 * exactly through the run's instruction budget; console input, rng bytes and network frames come
 * from the log (a replay's NICs have no backend); disks are frozen under an overlay at the start.
 * The interpreter and the translator stop at the same counts, so either replays either's log.
 * A debugger on a replay can go back: checkpoints along the way, re-execution from the nearest;
 * with several harts the position is the recorded interleaving's step count. */
#include "vm/replay.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "vm/machine.h"
#include "vm/netdev/netdev.h"
#include "vm/vmstate.h"

#define MAX_LOG_FILE (4ull << 30)
#define MAX_STATE_FILE (64u << 20)
/* frames a NIC holds between two slices while recording; a backend that hands more in one
 * slice (slirp cannot be told to wait) loses them, as a NIC with a full ring would */
#define RR_NET_QUEUE_MAX 1024u
/* A checkpoint every so many instructions while a debugger can reverse a replay: a step back
 * re-executes at most this many (about a quarter of a second with the translator) */
#define RR_CHECKPOINT_INSNS 100000000ull
#define RR_PAGE 4096u

_Static_assert(RR_MAX_NICS >= VM_MAX_NICS, "the log's NIC numbers cover every NIC");

/* Recording: the frames a NIC's backend handed over during a slice, delivered after it. */
typedef struct rr_frame {
  uint8_t *data;
  size_t len;
} rr_frame;

/* Replaying under a debugger: the machine at a count, for reverse execution. RAM is kept as the
 * pages written since the checkpoint before (the dirty bitmap of migration); a page in none of
 * the deltas up to a checkpoint is as the starting snapshot's memory file has it. */
typedef struct rr_checkpoint {
  uint64_t icount;             /* the replay's position (replay_position) */
  uint64_t counts[VM_MAX_SMP]; /* each hart's instruction count */
  bool in_slice[VM_MAX_SMP];   /* several harts: a hart was inside a recorded slice */
  uint8_t *state;              /* vm_state_save: harts, devices, the clock */
  size_t state_len;
  uint32_t *pages; /* the pages written since the checkpoint before, and their bytes */
  uint8_t *data;
  size_t npages;
  size_t loop_i, rng_i; /* where the replay stood in the log */
} rr_checkpoint;

/* reverse-continue: a breakpoint or watchpoint hit noted while re-running a window forward */
typedef struct rr_hit {
  uint64_t pos; /* the replay's position when the hart was about to execute the instruction at
                   the breakpoint, or had just executed the one that triggered the watchpoint */
  unsigned hart;
  unsigned watch_hit; /* rv_hart.watch_hit and watch_addr of a watchpoint hit */
  uint64_t watch_addr;
} rr_hit;

typedef struct rr_nic {
  vm *m;
  rr_frame *q;
  size_t n, cap;
  unsigned index;
} rr_nic;

struct vm_rr {
  char *dir;
  int64_t realtime_base; /* host CLOCK_REALTIME (ns) when mtime was 0 */
  /* recording */
  rr_log_writer log;
  rr_nic nics[VM_MAX_NICS];
  /* replaying: where the disks' overlays go (removed at the end), and the snapshot the replay
   * began from (DIR/start, or a snapshot taken during the recording: --from) */
  char *clone_dir;
  char *from_dir;
  bool from_snapshot; /* from_dir is a replay point, taken at from_icount */
  uint64_t from_icount;
  /* replaying: the log, and its records in two queues: the run loop's (time, interrupts,
   * console, end) and the rng device's, which asks for its bytes inside a slice */
  char *log_data;
  size_t log_len;
  rr_event *loop_ev, *rng_ev;
  size_t loop_n, rng_n, loop_i, rng_i;
  int64_t took; /* the cause the gate let through, -1: none */
  char *divergence;
  /* replaying under a debugger: checkpoints for reverse execution */
  rr_checkpoint *cps;
  size_t ncps, cps_cap;
  uint64_t next_checkpoint;
  uint64_t *dirty;   /* scratch: vm_dirty_words */
  uint64_t furthest; /* the count the replay has reached: output before it was printed */
  rr_hit *hits;      /* reverse-continue: breakpoint hits in the window scanned */
  size_t nhits, hits_cap;
  unsigned harts;   /* the log's */
  int start_mem_fd; /* the memory file of from_dir: RAM as the replay began */
  int console_fd;
  bool replaying;
  bool taking; /* the loop takes the logged interrupt now */
  bool ended;
  bool debugging;
  bool in_slice[VM_MAX_SMP]; /* replay: a hart is inside a recorded slice */
  uint8_t digest[RR_DIGEST_LEN];
  uint8_t start_digest[RR_DIGEST_LEN]; /* SHA-256 of start/state */
};

static uint64_t icount_of(const vm *m) { return m->harts[0].minstret; }

/* Where a replay stands: the sum of the harts' instruction counts. The recorded interleaving
 * runs one hart at a time, so it moves by one with each instruction whichever hart executes
 * it, and names one point of the run (with one hart it is that hart's count). */
static uint64_t replay_position(const vm *m) {
  uint64_t pos = 0;
  for (unsigned h = 0; h < m->nharts; h++)
    pos += m->harts[h].minstret;
  return pos;
}

static void rr_put_hart(vm *m, rr_kind kind, unsigned hart, uint64_t value, const uint8_t *data,
                        size_t len) {
  rr_event ev = {.kind = kind,
                 .hart = hart,
                 .icount = m->harts[hart].minstret,
                 .value = value,
                 .data = data,
                 .len = len};
  rr_log_put(&m->rr->log, &ev);
}

static void rr_put(vm *m, rr_kind kind, uint64_t value, const uint8_t *data, size_t len) {
  rr_put_hart(m, kind, 0, value, data, len);
}

/* The first divergence stops the replay; later ones only follow from it. */
static void diverge(vm *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void diverge(vm *m, const char *fmt, ...) {
  struct vm_rr *rr = m->rr;
  if (rr->divergence)
    return;
  char what[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof(what), fmt, ap); // NOLINT(clang-analyzer-valist.Uninitialized)
  va_end(ap);
  rr->divergence =
      vs_asprintf("replay diverged at instruction count %llu (pc 0x%llx): %s",
                  (unsigned long long)icount_of(m), (unsigned long long)m->harts[0].pc, what);
  vm_request_exit(m, VM_EXIT_FAIL, 1);
}

/* ------------------------------------------------------------------ the hooks */

static int64_t host_realtime_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* The RTC's host clock: the recording's wall clock at mtime 0 plus the guest's mtime. */
static int64_t rr_realtime_ns(void *opaque) {
  vm *m = opaque;
  return m->rr->realtime_base + (int64_t)(m->rr_mtime * (1000000000 / VM_TIMEBASE_HZ));
}

static bool rr_irq_gate(void *opaque, rv_hart *hart, uint64_t cause) {
  vm *m = opaque;
  struct vm_rr *rr = m->rr;
  if (!rr->replaying) {
    rr_put_hart(m, RR_IRQ, (unsigned)(hart - m->harts), cause, NULL, 0);
    return true;
  }
  if (!rr->taking)
    return false;
  rr->took = (int64_t)cause;
  return true;
}

static size_t rr_rng_record(void *opaque, uint8_t *buf, size_t len) {
  vm *m = opaque;
  size_t got = 0;
  while (got < len) {
    ssize_t r = getrandom(buf + got, len - got, 0);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      break;
    got += (size_t)r;
  }
  for (size_t off = 0; off < got; off += RR_DATA_MAX) {
    size_t n = got - off < RR_DATA_MAX ? got - off : RR_DATA_MAX;
    rr_put(m, RR_RNG, 0, buf + off, n);
  }
  return got;
}

static size_t rr_rng_replay(void *opaque, uint8_t *buf, size_t len) {
  vm *m = opaque;
  struct vm_rr *rr = m->rr;
  size_t got = 0;
  while (got < len) {
    if (rr->rng_i == rr->rng_n) {
      diverge(m, "virtio-rng asked for %zu bytes, the log has no more", len - got);
      break;
    }
    const rr_event *ev = &rr->rng_ev[rr->rng_i];
    if (ev->len > len - got) {
      diverge(m,
              "virtio-rng asked for %zu bytes, the log's next rng record (recorded at %llu) "
              "holds %zu",
              len - got, (unsigned long long)ev->icount, ev->len);
      break;
    }
    memcpy(buf + got, ev->data, ev->len);
    got += ev->len;
    rr->rng_i++;
  }
  return got;
}

/* ---- network frames. While recording, what a NIC's backend hands over (slirp often answers at
 * once, inside the guest's transmit, in the middle of a slice) waits in rr_nic's queue and goes
 * to the device after the slice, logged with the count it went in at; the device's own flush
 * runs only then too (its I/O source's prepare and dispatch flush no more), so the frames reach
 * guest memory at counts the log names. Replay delivers the same frames at the same counts, with
 * no backend behind the NIC (netdev_offline_open). */

static bool rr_net_can_receive(void *opaque) {
  rr_nic *nic = opaque;
  return nic->n < RR_NET_QUEUE_MAX;
}

static void rr_net_receive(void *opaque, const uint8_t *frame, size_t len) {
  rr_nic *nic = opaque;
  if (nic->n == RR_NET_QUEUE_MAX || len == 0 || len > RR_FRAME_MAX)
    return; /* dropped, as the device drops what it has no room for: nothing to log */
  if (nic->n == nic->cap) {
    nic->cap = nic->cap ? nic->cap * 2 : 16;
    nic->q = vs_realloc(nic->q, nic->cap * sizeof(*nic->q));
  }
  nic->q[nic->n].data = vs_malloc0(len);
  memcpy(nic->q[nic->n].data, frame, len);
  nic->q[nic->n++].len = len;
}

/* The NIC's I/O source while recording: its backend, without the device's flush. */
static void rr_net_prepare(void *opaque, vm_pollset *ps) {
  virtio_net *n = opaque;
  netdev_prepare(n->link.opaque, ps);
}

static void rr_net_dispatch(void *opaque, const vm_pollset *ps) {
  virtio_net *n = opaque;
  netdev_dispatch(n->link.opaque, ps);
}

/* Between slices: log and deliver what the backends handed over. */
static void rr_net_deliver(vm *m) {
  for (unsigned i = 0; i < m->cfg.nnets; i++) {
    rr_nic *nic = &m->rr->nics[i];
    if (!nic->n)
      continue;
    for (size_t k = 0; k < nic->n; k++) {
      rr_event ev = {.kind = RR_NET,
                     .nic = i,
                     .flags = k + 1 == nic->n ? RR_NET_BURST_END : 0,
                     .icount = icount_of(m),
                     .data = nic->q[k].data,
                     .len = nic->q[k].len};
      rr_log_put(&m->rr->log, &ev);
      virtio_net_receive(m->net[i], nic->q[k].data, nic->q[k].len);
      free(nic->q[k].data);
    }
    nic->n = 0;
    virtio_net_flush(m->net[i]);
  }
}

static void replay_net(vm *m, const rr_event *ev) {
  if (ev->nic >= m->cfg.nnets) {
    diverge(m, "the log delivers a frame to NIC %u, the machine has %u", ev->nic, m->cfg.nnets);
    return;
  }
  virtio_net_receive(m->net[ev->nic], ev->data, ev->len);
  if (ev->flags & RR_NET_BURST_END)
    virtio_net_flush(m->net[ev->nic]);
}

static void install_net_hooks(vm *m) {
  for (unsigned i = 0; i < m->cfg.nnets; i++) {
    rr_nic *nic = &m->rr->nics[i];
    nic->m = m;
    nic->index = i;
    m->netdev[i]->peer = (netdev_peer){rr_net_can_receive, rr_net_receive, nic};
    for (unsigned k = 0; k < m->num_io_sources; k++) {
      if (m->io_sources[k].opaque == m->net[i]) {
        m->io_sources[k].prepare = rr_net_prepare;
        m->io_sources[k].dispatch = rr_net_dispatch;
      }
    }
  }
}

/* The guest's clock moves to `mtime`: the timers that depend on it follow. */
static void rr_set_time(vm *m, uint64_t mtime) {
  m->rr_mtime = mtime;
  if (m->paused)
    m->paused_mtime = mtime; /* the clock a debugger's stop resumes with */
  aclint_update_timers(&m->aclint, mtime);
  rtc_update(&m->rtc);
}

void vm_rr_tick(vm *m) {
  if (m->rr->replaying)
    return;
  rr_net_deliver(m);
  uint64_t now = vm_host_mtime(m);
  if (now == m->rr_mtime)
    return;
  rr_put(m, RR_TIME, now, NULL, 0);
  rr_set_time(m, now);
}

void vm_rr_console_input(vm *m, const uint8_t *buf, size_t len) {
  if (!m->rr->replaying)
    rr_put(m, RR_CONSOLE, 0, buf, len);
}

void vm_rr_hart_began(vm *m, unsigned h) {
  if (!m->rr->replaying && m->nharts > 1)
    rr_put_hart(m, RR_BEGIN, h, 0, NULL, 0);
}

void vm_rr_hart_ran(vm *m, unsigned h) {
  if (!m->rr->replaying && m->nharts > 1)
    rr_put_hart(m, RR_RUN, h, 0, NULL, 0);
}

bool vm_rr_replaying(const vm *m) { return m->rr && m->rr->replaying; }

static void install_hooks(vm *m) {
  m->bus.irq_gate = rr_irq_gate;
  m->rtc.clock_ns = rr_realtime_ns;
  m->rtc.clock_opaque = m;
  if (m->rng) {
    m->rng->source = m->rr->replaying ? rr_rng_replay : rr_rng_record;
    m->rng->source_opaque = m;
  }
  if (!m->rr->replaying)
    install_net_hooks(m); /* a replay's NICs have no backend */
}

/* ------------------------------------------------------------------ digest */

/* SHA-256 over every hart's saved state and all of RAM. */
static void state_digest(vm *m, uint8_t out[RR_DIGEST_LEN]) {
  vmstate_writer w;
  vmstate_writer_init(&w);
  for (unsigned h = 0; h < m->nharts; h++)
    rv_hart_save(&m->harts[h], &w);
  vs_sha256_ctx ctx;
  vs_sha256_init(&ctx);
  vs_sha256_update(&ctx, w.data, w.len);
  vs_sha256_update(&ctx, m->ram, m->ram_size);
  vs_sha256_final_raw(&ctx, out);
  vmstate_writer_free(&w);
}

static void hex_of(const uint8_t *d, char out[RR_DIGEST_LEN * 2 + 1]) {
  static const char digits[] = "0123456789abcdef";
  for (size_t i = 0; i < RR_DIGEST_LEN; i++) {
    out[2 * i] = digits[d[i] >> 4];
    out[2 * i + 1] = digits[d[i] & 15];
  }
  out[2 * (size_t)RR_DIGEST_LEN] = '\0';
}

/* ------------------------------------------------------------------ recording */

int vm_record_check_config(const vm_config *cfg, vs_error **err) {
  for (unsigned i = 0; i < cfg->nnets; i++) {
    netdev_opts o;
    if (netdev_parse_spec(cfg->nets[i], &o, err) < 0)
      return -1;
    if (o.kind != NETDEV_USER)
      return vs_error_set(err, 0,
                          "--record: network %u is a tap; only user networking (--net user) is "
                          "recorded (a tap's link depends on the host kernel)",
                          i);
  }
  return 0;
}

static int check_recordable(const vm *m, vs_error **err) {
  if (m->nharts > RR_MAX_HARTS || m->threads.on)
    return vs_error_set(err, 0,
                        "--record: %u harts on their own threads; record/replay runs them on "
                        "one thread (--hart-threads off)",
                        m->nharts);
  if (vm_record_check_config(&m->cfg, err) < 0)
    return -1;
  if (m->htif_enabled)
    return vs_error_set(err, 0, "--record: --htif test programs are not supported");
  return 0;
}

/* SHA-256 of a snapshot's state file: it names the kernel and the machine and holds the RAM's
 * digest, so it tells one start from another. */
static int snapshot_digest_of(const char *start, uint8_t out[RR_DIGEST_LEN], vs_error **err) {
  _cleanup_free_ char *path = vs_asprintf("%s/state", start);
  _cleanup_free_ char *img = NULL;
  size_t len = 0;
  if (vs_read_file(path, MAX_STATE_FILE, &img, &len, err) < 0)
    return -1;
  vs_sha256_ctx ctx;
  vs_sha256_init(&ctx);
  vs_sha256_update(&ctx, img, len);
  vs_sha256_final_raw(&ctx, out);
  return 0;
}

int vm_record_start(vm *m, const char *dir, vs_error **err) {
  if (check_recordable(m, err) < 0)
    return -1;
  if (vs_mkdir_p(dir, 0700, err) < 0)
    return vs_error_wrap(err, "--record %s", dir);
  _cleanup_free_ char *start = vs_asprintf("%s/start", dir);
  /* Writable disks are frozen as the start's bases and the recording goes on in overlays next
   * to them (PATH.<n>.qcow2): a replay reads the same bytes from its own overlay on the same
   * base. A read-only disk is replayed from the image itself. Either way the image must not be
   * changed afterwards. */
  vm_snapshot_opts so = {.disk_overlay = true};
  uint8_t start_digest[RR_DIGEST_LEN];
  struct vm_rr *rr = vs_malloc0(sizeof(*rr));
  rr->dir = vs_strdup(dir);
  /* The guest's clock starts at 0 with its first instruction (the machine's stands still while
   * rr is set): the start then holds no host time, and two recordings of one program start
   * from the same state and digest */
  m->rr = rr;
  vm_set_mtime(m, 0);
  if (vm_snapshot(m, start, &so, err) < 0 || snapshot_digest_of(start, start_digest, err) < 0) {
    m->rr = NULL;
    free(rr->dir);
    free(rr);
    return vs_error_wrap(err, "--record: the starting snapshot");
  }
  m->rr = NULL;
  memcpy(rr->start_digest, start_digest, RR_DIGEST_LEN);
  const uint64_t mtime = 0;
  rr->realtime_base = host_realtime_ns();
  _cleanup_free_ char *log = vs_asprintf("%s/log", dir);
  if (rr_log_create(&rr->log, log, m->nharts, rr->realtime_base, rr->start_digest, err) < 0) {
    free(rr->dir);
    free(rr);
    return vs_error_wrap(err, "--record");
  }
  m->rr = rr;
  install_hooks(m);
  rr_put(m, RR_TIME, mtime, NULL, 0);
  rr_set_time(m, mtime);
  return 0;
}

bool vm_rr_recording(const vm *m) { return m->rr && !m->rr->replaying; }

/* A snapshot during a recording is a replay point: it is taken between two slices (the control
 * socket is served there), and the log says at which count and clock, and which snapshot (its
 * state file's digest), so that a replay can begin there (--from) and read the log on from the
 * record after it. The disks always go on in new overlays, so the snapshot's stay as they were
 * when it was taken. */
int vm_rr_snapshot(vm *m, const char *dir, const vm_snapshot_opts *opts, vs_error **err) {
  struct vm_rr *rr = m->rr;
  size_t name_len = strlen(dir);
  if (name_len > RR_NAME_MAX)
    return vs_error_set(err, 0,
                        "snapshot during a recording: a directory name of %zu bytes (at "
                        "most %u)",
                        name_len, RR_NAME_MAX);
  /* frames a NIC holds until the guest gives it buffers are not in a snapshot: a replay from
   * it would go without them */
  for (unsigned i = 0; i < m->cfg.nnets; i++)
    if (m->net[i]->pending_count)
      return vs_error_set(err, EAGAIN,
                          "snapshot during a recording: NIC %u holds %u received frames the "
                          "guest has not taken yet (a snapshot does not keep them): try again",
                          i, m->net[i]->pending_count);
  vm_snapshot_opts o = *opts;
  o.disk_overlay = true;
  uint8_t digest[RR_DIGEST_LEN];
  if (vm_snapshot(m, dir, &o, err) < 0)
    return -1;
  if (snapshot_digest_of(dir, digest, err) < 0)
    return vs_error_wrap(err, "snapshot %s", dir);
  rr_event ev = {.kind = RR_SNAPSHOT,
                 .icount = icount_of(m),
                 .value = m->rr_mtime,
                 .data = digest,
                 .len = RR_DIGEST_LEN,
                 .name = (const uint8_t *)dir,
                 .name_len = name_len};
  rr_log_put(&rr->log, &ev);
  return 0;
}

/* ------------------------------------------------------------------ replaying */

/* Where a replay begins: the start, or the SNAPSHOT record of the snapshot it was given. */
typedef struct replay_from {
  const uint8_t *digest; /* the snapshot's state digest; NULL: the start */
  bool found;
  rr_event ev;          /* its record */
  size_t loop_i, rng_i; /* the queues' records after it */
} replay_from;

static int load_log(struct vm_rr *rr, const char *dir, replay_from *from, vs_error **err) {
  _cleanup_free_ char *path = vs_asprintf("%s/log", dir);
  if (vs_read_file(path, MAX_LOG_FILE, &rr->log_data, &rr->log_len, err) < 0)
    return -1;
  rr_log_reader r;
  if (rr_log_open(&r, (const uint8_t *)rr->log_data, rr->log_len, err) < 0)
    return vs_error_wrap(err, "%s", path);
  rr->realtime_base = r.realtime_base;
  rr->harts = r.harts;
  memcpy(rr->start_digest, r.start_digest, RR_DIGEST_LEN);
  size_t cap_loop = 0, cap_rng = 0;
  rr_event ev;
  int rc;
  while ((rc = rr_log_next(&r, &ev, err)) == 1) {
    if (ev.kind == RR_SNAPSHOT && from->digest && !from->found &&
        memcmp(ev.data, from->digest, RR_DIGEST_LEN) == 0) {
      from->found = true;
      from->ev = ev;
      from->loop_i = rr->loop_n + 1;
      from->rng_i = rr->rng_n;
    }
    rr_event **q = ev.kind == RR_RNG ? &rr->rng_ev : &rr->loop_ev;
    size_t *n = ev.kind == RR_RNG ? &rr->rng_n : &rr->loop_n;
    size_t *cap = ev.kind == RR_RNG ? &cap_rng : &cap_loop;
    if (*n == *cap) {
      *cap = *cap ? *cap * 2 : 1024;
      *q = vs_realloc(*q, *cap * sizeof(**q));
    }
    (*q)[(*n)++] = ev;
  }
  if (rc < 0)
    return vs_error_wrap(err, "%s", path);
  return 0;
}

static void checkpoint_free(rr_checkpoint *cp) {
  free(cp->state);
  free(cp->pages);
  free(cp->data);
  memset(cp, 0, sizeof(*cp));
}

static void rr_free(struct vm_rr *rr) {
  for (size_t i = 0; i < rr->ncps; i++)
    checkpoint_free(&rr->cps[i]);
  free(rr->cps);
  free(rr->dirty);
  free(rr->hits);
  if (rr->debugging && rr->start_mem_fd >= 0)
    close(rr->start_mem_fd);
  for (unsigned i = 0; i < VM_MAX_NICS; i++) {
    for (size_t k = 0; k < rr->nics[i].n; k++)
      free(rr->nics[i].q[k].data);
    free(rr->nics[i].q);
  }
  if (rr->clone_dir) {
    vs_error *e = NULL;
    if (vs_rm_rf(rr->clone_dir, &e) < 0) {
      vs_log_warn("--replay: remove %s: %s", rr->clone_dir, e->msg);
      vs_error_free(e);
    }
    free(rr->clone_dir);
  }
  free(rr->dir);
  free(rr->from_dir);
  free(rr->log_data);
  free(rr->loop_ev);
  free(rr->rng_ev);
  free(rr->divergence);
  free(rr);
}

/* --from SNAP: SNAP must be a snapshot this recording took (its digest in a SNAPSHOT record). */
static int find_from(struct vm_rr *rr, const char *dir, const char *snap, replay_from *from,
                     uint8_t digest[RR_DIGEST_LEN], vs_error **err) {
  if (snapshot_digest_of(snap, digest, err) < 0)
    return vs_error_wrap(err, "--replay %s --from %s", dir, snap);
  from->digest = digest;
  if (load_log(rr, dir, from, err) < 0)
    return -1;
  if (!from->found) {
    char hex[RR_DIGEST_LEN * 2 + 1];
    hex_of(digest, hex);
    return vs_error_set(err, 0,
                        "--replay %s --from %s: not a snapshot of this recording (no snapshot "
                        "record in %s/log names its state, digest %s)",
                        dir, snap, dir, hex);
  }
  return 0;
}

vm *vm_replay_open(const char *dir, const char *from_snapshot, const vm_restore_opts *opts,
                   vs_error **err) {
  struct vm_rr *rr = vs_malloc0(sizeof(*rr));
  rr->replaying = true;
  rr->dir = vs_strdup(dir);
  replay_from from = {0};
  uint8_t from_digest[RR_DIGEST_LEN];
  if (from_snapshot ? find_from(rr, dir, from_snapshot, &from, from_digest, err) < 0
                    : load_log(rr, dir, &from, err) < 0) {
    rr_free(rr);
    return NULL;
  }
  _cleanup_free_ char *start = vs_asprintf("%s/start", dir);
  rr->from_dir = from_snapshot ? vs_strdup(from_snapshot) : vs_strdup(start);
  uint8_t start_digest[RR_DIGEST_LEN];
  if (snapshot_digest_of(start, start_digest, err) < 0) {
    rr_free(rr);
    vs_error_wrap(err, "--replay: the starting snapshot");
    return NULL;
  }
  if (memcmp(start_digest, rr->start_digest, RR_DIGEST_LEN) != 0) {
    char want[RR_DIGEST_LEN * 2 + 1], got[RR_DIGEST_LEN * 2 + 1];
    hex_of(rr->start_digest, want);
    hex_of(start_digest, got);
    vs_error_set(err, 0,
                 "--replay %s: the log was recorded from another start (another kernel, machine "
                 "or snapshot): it names a start with digest %s, %s/state has %s",
                 dir, want, start, got);
    rr_free(rr);
    return NULL;
  }
  /* the disks' overlays on their frozen bases: this replay's own, removed at its end */
  rr->clone_dir = vs_asprintf("%s/replay-XXXXXX", dir);
  if (!mkdtemp(rr->clone_dir)) {
    vs_error_set(err, errno, "--replay: create %s", rr->clone_dir);
    free(rr->clone_dir);
    rr->clone_dir = NULL;
    rr_free(rr);
    return NULL;
  }
  vm_restore_opts o = *opts;
  o.console_in = -1; /* replay takes no input but the log's */
  o.one_thread = true;
  o.net_offline = true;
  o.clone_dir = rr->clone_dir;
  vm *m = vm_restore(rr->from_dir, &o, err);
  if (!m) {
    vs_error_wrap(err, "--replay: the snapshot %s", rr->from_dir);
    rr_free(rr);
    return NULL;
  }
  vs_error *why = NULL;
  if (check_recordable(m, &why) < 0 ||
      (m->nharts != rr->harts &&
       vs_error_set(&why, 0, "%u harts, the log %u", m->nharts, rr->harts) < 0)) {
    vs_error_set(err, 0, "--replay %s: the snapshot does not match the log (%s)", dir, why->msg);
    vs_error_free(why);
    rr_free(rr);
    vm_destroy(m);
    return NULL;
  }
  m->rr = rr;
  install_hooks(m);
  if (from.found) { /* the log on from the record after the snapshot's, the clock as it was */
    rr->loop_i = from.loop_i;
    rr->rng_i = from.rng_i;
    rr->from_snapshot = true;
    rr->from_icount = from.ev.icount;
    rr_set_time(m, from.ev.value);
    if (icount_of(m) != from.ev.icount)
      diverge(m, "the snapshot %s holds instruction count %llu, its record in the log %llu",
              from_snapshot, (unsigned long long)icount_of(m), (unsigned long long)from.ev.icount);
  }
  return m;
}

static void replay_end(vm *m, const rr_event *ev) {
  struct vm_rr *rr = m->rr;
  state_digest(m, rr->digest);
  if (memcmp(rr->digest, ev->data, RR_DIGEST_LEN) != 0) {
    char want[RR_DIGEST_LEN * 2 + 1], got[RR_DIGEST_LEN * 2 + 1];
    hex_of(ev->data, want);
    hex_of(rr->digest, got);
    diverge(m, "the final state's digest is %s, the recording's %s", got, want);
    return;
  }
  rr->ended = true;
  if (!m->stop)
    vm_request_exit(m, VM_EXIT_QUIT, 0); /* the recording ended by the user's quit */
}

/* The hart is at the count where the recording took an interrupt: take it now, the same one. */
static void replay_take_irq(vm *m, const rr_event *ev) {
  rv_hart *h = &m->harts[ev->hart];
  m->rr->taking = true;
  m->rr->took = -1;
  rv_hart_take_interrupt(h);
  m->rr->taking = false;
  if (m->rr->took == (int64_t)ev->value)
    return;
  char replay[64];
  if (m->rr->took < 0)
    snprintf(replay, sizeof(replay), "has none to take");
  else
    snprintf(replay, sizeof(replay), "took interrupt %lld", (long long)m->rr->took);
  diverge(m,
          "hart %u: the recording took interrupt %llu here, replay %s (mip 0x%llx, lines "
          "0x%llx, mie 0x%llx, priv %d, mstatus 0x%llx)",
          ev->hart, (unsigned long long)ev->value, replay, (unsigned long long)h->mip,
          (unsigned long long)h->ext_mip, (unsigned long long)h->mie, h->priv,
          (unsigned long long)h->mstatus);
}

/* Apply the log's record that falls due at the hart's instruction count. */
static void replay_apply(vm *m, const rr_event *ev) {
  switch (ev->kind) {
  case RR_TIME:
    rr_set_time(m, ev->value);
    break;
  case RR_CONSOLE:
    vm_console_deliver(m, ev->data, ev->len);
    break;
  case RR_IRQ:
    replay_take_irq(m, ev);
    break;
  case RR_NET:
    replay_net(m, ev);
    break;
  case RR_END:
    replay_end(m, ev);
    break;
  case RR_RNG:
  case RR_RUN:
  case RR_BEGIN:
  case RR_SNAPSHOT: /* a replay point: --from begins after it */
    break;          /* the device's queue; several harts' records (replay_run_harts) */
  }
}

/* Several harts: each RUN record is one slice of one hart, as the recording's loop ran it. The
 * loop cleared the hart's LR reservation before the slice; an interrupt record of that hart
 * comes before the RUN record of the slice it was taken in. */
static void replay_advance(vm *m, unsigned h, uint64_t to, const rr_event *ev) {
  struct vm_rr *rr = m->rr;
  rv_hart *hart = &m->harts[h];
  if (!rr->in_slice[h]) {
    rv_hart_clear_reservation(hart);
    rr->in_slice[h] = true;
  }
  while (!rr->divergence && hart->minstret < to) {
    uint64_t done = rv_hart_run(hart, to - hart->minstret);
    uart_flush(&m->uart);
    if (done == 0)
      diverge(m,
              "hart %u stops (wfi %d, hsm %d) at its count %llu, but the log's %s record wants "
              "it at %llu",
              h, hart->wfi, m->hsm[h], (unsigned long long)hart->minstret, rr_kind_name(ev->kind),
              (unsigned long long)to);
  }
  if (hart->minstret > to)
    diverge(m, "hart %u ran past the log's %s record at its count %llu (now %llu)", h,
            rr_kind_name(ev->kind), (unsigned long long)to, (unsigned long long)hart->minstret);
}

static void replay_begin(vm *m, const rr_event *ev) {
  if (m->hsm[ev->hart] != HSM_START_PENDING)
    diverge(m, "the recording started hart %u here, replay has no start pending (hsm %d)", ev->hart,
            m->hsm[ev->hart]);
  else
    vm_hart_begin(m, ev->hart);
}

static void replay_run_harts(vm *m) {
  struct vm_rr *rr = m->rr;
  while (!rr->divergence && !rr->ended) {
    if (rr->loop_i == rr->loop_n) {
      diverge(m, "the log ends without its end record");
      break;
    }
    const rr_event *ev = &rr->loop_ev[rr->loop_i++];
    switch (ev->kind) {
    case RR_BEGIN:
      replay_begin(m, ev);
      break;
    case RR_IRQ:
      replay_advance(m, ev->hart, ev->icount, ev);
      replay_take_irq(m, ev);
      break;
    case RR_RUN:
      replay_advance(m, ev->hart, ev->icount, ev);
      rr->in_slice[ev->hart] = false;
      break;
    case RR_END:
      if (icount_of(m) != ev->icount)
        diverge(m, "the recording ended with hart 0 at %llu", (unsigned long long)ev->icount);
      else
        replay_end(m, ev);
      break;
    default:
      replay_apply(m, ev); /* between slices: time, console */
      break;
    }
  }
  uart_flush(&m->uart);
}

/* ------------------------------------------------------------------ one hart, and a debugger */

typedef struct replay_run_opts {
  uint64_t until;      /* stop when the hart's count reaches it (UINT64_MAX: the log's end) */
  bool apply_at_until; /* ... after applying the records due there (not the end record) */
  bool serve;          /* serve the I/O sources (the debugger) between runs */
  bool scan;           /* note breakpoint hits below `until` and run on (reverse-continue) */
} replay_run_opts;

static void checkpoint_take(vm *m);

/* Hart h (index hart) stopped at a hit at position pos while scanning up to `until`: note it
 * unless it is a watchpoint hit at `until` itself (the one reverse-continue starts from) and
 * clear it. Returns whether the hart must step past a breakpoint before running on (after a
 * watchpoint hit it stands after the access already). */
static bool note_hit(struct vm_rr *rr, rv_hart *h, unsigned hart, uint64_t pos, uint64_t until) {
  rr_hit hit = {.pos = pos, .hart = hart, .watch_hit = h->watch_hit, .watch_addr = h->watch_addr};
  h->breakpoint_hit = false;
  h->watch_hit = 0;
  if (pos >= until)
    return !hit.watch_hit;
  if (rr->nhits == rr->hits_cap) {
    rr->hits_cap = rr->hits_cap ? rr->hits_cap * 2 : 64;
    rr->hits = vs_realloc(rr->hits, rr->hits_cap * sizeof(*rr->hits));
  }
  rr->hits[rr->nhits++] = hit;
  return !hit.watch_hit;
}

/* The debugger's breakpoints are back after a run without them: TLB entries that run made for
 * watched pages must go. */
static void breakpoints_back(vm *m, const rv_breakpoints *bp) {
  m->bus.breakpoints = bp;
  if (bp && __atomic_load_n(&bp->nwatch, __ATOMIC_ACQUIRE))
    for (unsigned h = 0; h < m->nharts; h++)
      rv_hart_flush_tlb(&m->harts[h]);
}

/* Landed on `hit` by re-running: a watchpoint hit is reported as the forward run saw it. */
static void show_hit(vm *m, const rr_hit *hit) {
  if (!hit->watch_hit || hit->hart >= m->nharts)
    return;
  rv_hart *h = &m->harts[hit->hart];
  h->watch_hit = hit->watch_hit;
  h->watch_addr = hit->watch_addr;
  h->breakpoint_hit = true;
}

/* Console output the replay printed already (before a reverse step) is not printed again. */
static void replay_flush_console(vm *m) {
  struct vm_rr *rr = m->rr;
  if (!rr->debugging) {
    uart_flush(&m->uart);
    return;
  }
  uint64_t now = replay_position(m);
  m->uart.out_fd = now <= rr->furthest ? -1 : rr->console_fd;
  uart_flush(&m->uart);
  m->uart.out_fd = rr->console_fd;
  if (now > rr->furthest)
    rr->furthest = now;
}

/* The records due at the hart's count, in the log's order. */
static void replay_apply_due(vm *m, bool end_too) {
  struct vm_rr *rr = m->rr;
  while (!rr->divergence && !rr->ended && rr->loop_i < rr->loop_n) {
    const rr_event *ev = &rr->loop_ev[rr->loop_i];
    if (ev->icount != m->harts[0].minstret || (ev->kind == RR_END && !end_too))
      return;
    rr->loop_i++;
    replay_apply(m, ev);
  }
}

/* Between two steps of a replay: serve the debugger (waiting while it holds the VM paused) and
 * check that the log goes on. False: stop replaying (the debugger killed the VM, or the log
 * ends without its end record: a divergence). */
static bool replay_goes_on(vm *m, bool serve) {
  if (serve) {
    vm_serve_io(m, 0);
    while (m->paused && !m->stop)
      vm_serve_io(m, INT64_MAX);
    if (m->stop && m->exit_reason == VM_EXIT_QUIT)
      return false;
  }
  if (m->rr->loop_i == m->rr->loop_n) {
    diverge(m, "the log ends without its end record");
    return false;
  }
  return true;
}

/* One hart from one logged record to the next (apply what is due, run to the next record). */
static void replay_one_hart(vm *m, const replay_run_opts *o) {
  struct vm_rr *rr = m->rr;
  rv_hart *h = &m->harts[0];
  bool step_over = false; /* scanning: past the breakpoint just noted */
  while (!rr->divergence && !rr->ended) {
    if (!replay_goes_on(m, o->serve))
      break;
    const rr_event *ev = &rr->loop_ev[rr->loop_i];
    uint64_t now = h->minstret;
    if (ev->icount < now) {
      diverge(m, "ran past the log's %s record at instruction count %llu", rr_kind_name(ev->kind),
              (unsigned long long)ev->icount);
      break;
    }
    if (now == o->until && (!o->apply_at_until || ev->icount != now || ev->kind == RR_END))
      break;
    if (ev->icount == now) {
      rr->loop_i++;
      replay_apply(m, ev);
      continue;
    }
    if (rr->debugging && now >= rr->next_checkpoint)
      checkpoint_take(m);
    uint64_t budget = ev->icount - now;
    if (o->until > now && o->until - now < budget)
      budget = o->until - now;
    uint64_t done;
    if (step_over) {
      done = rv_hart_step(h);
      step_over = false;
    } else {
      done = rv_hart_run(h, budget);
    }
    if (o->scan && h->breakpoint_hit) {
      step_over = note_hit(rr, h, 0, h->minstret, o->until);
      continue;
    }
    replay_flush_console(m);
    if (done == 0 && !h->breakpoint_hit && (h->wfi || m->hsm[0] != HSM_STARTED))
      diverge(m,
              "the hart waits (wfi %d, hsm %d) with nothing to wake it, but the log's next "
              "record (%s) is at instruction count %llu",
              h->wfi, m->hsm[0], rr_kind_name(ev->kind), (unsigned long long)ev->icount);
  }
  replay_flush_console(m);
}

/* ---- checkpoints */

static void checkpoint_take(vm *m) {
  struct vm_rr *rr = m->rr;
  if (rr->ncps == rr->cps_cap) {
    rr->cps_cap = rr->cps_cap ? rr->cps_cap * 2 : 64;
    rr->cps = vs_realloc(rr->cps, rr->cps_cap * sizeof(*rr->cps));
  }
  rr_checkpoint *cp = &rr->cps[rr->ncps++];
  memset(cp, 0, sizeof(*cp));
  cp->icount = replay_position(m);
  for (unsigned h = 0; h < m->nharts; h++) {
    cp->counts[h] = m->harts[h].minstret;
    cp->in_slice[h] = rr->in_slice[h];
  }
  cp->loop_i = rr->loop_i;
  cp->rng_i = rr->rng_i;
  size_t words = vm_dirty_words(m);
  vm_dirty_harvest(m, rr->dirty);
  for (size_t w = 0; w < words; w++)
    cp->npages += (size_t)__builtin_popcountll(rr->dirty[w]);
  if (rr->ncps == 1)
    cp->npages = 0; /* the first: RAM is the start's memory file (tracking began all dirty) */
  cp->pages = vs_malloc0((cp->npages ? cp->npages : 1) * sizeof(*cp->pages));
  cp->data = vs_malloc0(cp->npages ? cp->npages * (size_t)RR_PAGE : 1);
  size_t n = 0;
  for (size_t w = 0; w < words && n < cp->npages; w++) {
    for (uint64_t bits = rr->dirty[w]; bits && n < cp->npages; bits &= bits - 1) {
      size_t page = w * 64 + (size_t)__builtin_ctzll(bits);
      cp->pages[n] = (uint32_t)page;
      memcpy(cp->data + n * RR_PAGE, m->ram + page * RR_PAGE, RR_PAGE);
      n++;
    }
  }
  vmstate_writer w;
  vmstate_writer_init(&w);
  vm_state_save(m, &w, NULL);
  cp->state = w.data; /* the checkpoint keeps the writer's buffer */
  cp->state_len = w.len;
  rr->next_checkpoint = cp->icount + RR_CHECKPOINT_INSNS;
}

static void set_page_bit(uint64_t *bits, size_t page) { bits[page / 64] |= 1ull << (page % 64); }

/* The machine as checkpoint k holds it; the later checkpoints go (they are made again, the
 * same, as the replay passes their counts). */
static void checkpoint_restore(vm *m, size_t k) {
  struct vm_rr *rr = m->rr;
  size_t words = vm_dirty_words(m);
  /* the pages that may differ from the start: written since the last checkpoint, or in any */
  vm_dirty_harvest(m, rr->dirty);
  for (size_t j = 1; j < rr->ncps; j++)
    for (size_t i = 0; i < rr->cps[j].npages; i++)
      set_page_bit(rr->dirty, rr->cps[j].pages[i]);
  for (size_t w = 0; w < words; w++) {
    for (uint64_t bits = rr->dirty[w]; bits; bits &= bits - 1) {
      size_t page = w * 64 + (size_t)__builtin_ctzll(bits);
      uint8_t *dst = m->ram + page * RR_PAGE;
      ssize_t got = pread(rr->start_mem_fd, dst, RR_PAGE, (off_t)(page * RR_PAGE));
      if (got < (ssize_t)RR_PAGE)
        memset(dst + (got > 0 ? got : 0), 0, RR_PAGE - (size_t)(got > 0 ? got : 0));
    }
  }
  for (size_t j = 1; j <= k; j++)
    for (size_t i = 0; i < rr->cps[j].npages; i++)
      memcpy(m->ram + (size_t)rr->cps[j].pages[i] * RR_PAGE, rr->cps[j].data + i * RR_PAGE,
             RR_PAGE);
  /* code decoded or translated from the pages is stale */
  for (size_t w = 0; w < words; w++)
    for (uint64_t bits = rr->dirty[w]; bits; bits &= bits - 1)
      vm_ram_mark_dirty(m, VM_RAM_BASE + (w * 64 + (uint64_t)__builtin_ctzll(bits)) * RR_PAGE,
                        RR_PAGE);
  rr_checkpoint *cp = &rr->cps[k];
  vm_config cfg;
  vm_config_init(&cfg);
  char *strings[VM_CONFIG_STRINGS] = {0};
  bool frozen;
  vmstate_reader rest;
  vs_error *err = NULL;
  if (vm_state_open(cp->state, cp->state_len, &cfg, strings, &frozen, &rest, &err) < 0 ||
      vm_state_load(m, &rest, NULL, &err) < 0) {
    diverge(m, "restoring the checkpoint at %llu failed: %s", (unsigned long long)cp->icount,
            err->msg);
    vs_error_free(err);
  }
  for (unsigned i = 0; i < VM_CONFIG_STRINGS; i++)
    free(strings[i]);
  for (unsigned h = 0; h < m->nharts; h++) {
    m->harts[h].breakpoint_hit = false;
    rv_hart_flush_tlb(&m->harts[h]);
    rv_hart_flush_icache(&m->harts[h]);
  }
  vm_dirty_harvest(m, rr->dirty); /* RAM is the checkpoint's now: nothing written since */
  while (rr->ncps > k + 1)
    checkpoint_free(&rr->cps[--rr->ncps]);
  rr->loop_i = cp->loop_i;
  rr->rng_i = cp->rng_i;
  memcpy(rr->in_slice, cp->in_slice, sizeof(rr->in_slice));
  rr->next_checkpoint = cp->icount + RR_CHECKPOINT_INSNS;
}

/* Checkpoints from the start on: a debugger is attached to the replay. */
static int debugging_start(vm *m, vs_error **err) {
  struct vm_rr *rr = m->rr;
  _cleanup_free_ char *mem = vs_asprintf("%s/memory", rr->from_dir);
  rr->start_mem_fd = open(mem, O_RDONLY | O_CLOEXEC);
  if (rr->start_mem_fd < 0)
    return vs_error_set(err, errno, "open %s", mem);
  rr->debugging = true;
  rr->console_fd = m->uart.out_fd;
  rr->dirty = vs_malloc0(vm_dirty_words(m) * sizeof(uint64_t));
  vm_dirty_tracking_start(m);
  checkpoint_take(m);
  return 0;
}

bool vm_rr_can_reverse(const vm *m) { return m->rr && m->rr->debugging; }

/* The last checkpoint before position c (the first if none is). */
static size_t checkpoint_before(const struct vm_rr *rr, uint64_t c) {
  size_t k = rr->ncps - 1;
  while (k > 0 && rr->cps[k].icount >= c)
    k--;
  return k;
}

/* From checkpoint k to count `to`, without the debugger's breakpoints. */
static void replay_to(vm *m, size_t k, uint64_t to, bool apply_at_to) {
  const rv_breakpoints *bp = m->bus.breakpoints;
  checkpoint_restore(m, k);
  m->bus.breakpoints = NULL;
  replay_run_opts o = {.until = to, .apply_at_until = apply_at_to};
  replay_one_hart(m, &o);
  breakpoints_back(m, bp);
}

/* ---- several harts under a debugger
 *
 * The replay's position is the interleaving's step count (replay_position). Every stop is at a
 * boundary where the next hart to run is about to execute an instruction, with every record
 * due before that instruction applied (an interrupt taken, a hart started, the clock moved): a
 * stop reached by running on, by stepping or by re-running from a checkpoint is then the same
 * state, and a breakpoint hit is "hart h about to execute an instruction at the breakpoint". A
 * run's budget never crosses a record, so where a run is cut (a checkpoint, a stop) changes
 * nothing: the harts check breakpoints before every instruction but the one a slice ends at,
 * which that slice does not execute. */

typedef struct harts_run_opts {
  uint64_t until_pos;   /* stop at this position (UINT64_MAX: no such stop) */
  int until_hart;       /* >= 0: stop when this hart is about to execute ... */
  uint64_t until_count; /* ... with this instruction count */
  int step_hart;        /* >= 0: this hart executes one instruction (whatever its pc), then stop */
  bool serve;           /* serve the debugger between runs; its stub stops the VM at a hit */
  bool scan;            /* reverse-continue: note breakpoint hits and run on */
  bool stop_at_hit;     /* a step: another hart's breakpoint hit on the way ends it */
} harts_run_opts;

/* Consume the record at loop_i if it needs no hart to run; false when hart *h must run first. */
static bool replay_harts_apply_next(vm *m, unsigned *h) {
  struct vm_rr *rr = m->rr;
  const rr_event *ev = &rr->loop_ev[rr->loop_i];
  if (ev->kind != RR_RUN && ev->kind != RR_IRQ) {
    rr->loop_i++;
    if (ev->kind == RR_BEGIN)
      replay_begin(m, ev);
    else if (ev->kind == RR_END && icount_of(m) != ev->icount)
      diverge(m, "the recording ended with hart 0 at %llu", (unsigned long long)ev->icount);
    else
      replay_apply(m, ev); /* between slices: time, console, frames, the end */
    return true;
  }
  rv_hart *hart = &m->harts[ev->hart];
  if (!rr->in_slice[ev->hart]) { /* as replay_advance: the slice begins */
    rv_hart_clear_reservation(hart);
    rr->in_slice[ev->hart] = true;
  }
  if (hart->minstret > ev->icount) {
    diverge(m, "hart %u ran past the log's %s record at its count %llu (now %llu)", ev->hart,
            rr_kind_name(ev->kind), (unsigned long long)ev->icount,
            (unsigned long long)hart->minstret);
    return true;
  }
  if (hart->minstret < ev->icount) {
    *h = ev->hart;
    return false;
  }
  rr->loop_i++;
  if (ev->kind == RR_IRQ)
    replay_take_irq(m, ev);
  else
    rr->in_slice[ev->hart] = false;
  return true;
}

/* Run the recorded interleaving until a stop `o` asks for (or a divergence, or the end).
 * Returns the hart about to execute where it stopped. */
static unsigned replay_harts_debug(vm *m, const harts_run_opts *o) {
  struct vm_rr *rr = m->rr;
  unsigned next = o->step_hart >= 0 ? (unsigned)o->step_hart : 0;
  int over = -1; /* scanning: the hart that steps past the breakpoint just noted */
  bool stepped = false;
  uint64_t step_to = o->step_hart >= 0 ? m->harts[o->step_hart].minstret + 1 : 0;
  while (!rr->divergence && !rr->ended) {
    if (!replay_goes_on(m, o->serve))
      break;
    unsigned h;
    if (replay_harts_apply_next(m, &h))
      continue;
    /* hart h executes next */
    rv_hart *hart = &m->harts[h];
    const rr_event *ev = &rr->loop_ev[rr->loop_i];
    uint64_t pos = replay_position(m);
    next = h;
    if (stepped || pos >= o->until_pos ||
        ((int)h == o->until_hart && hart->minstret >= o->until_count))
      break;
    if (rr->debugging && pos >= rr->next_checkpoint)
      checkpoint_take(m);
    uint64_t budget = ev->icount - hart->minstret;
    if (o->until_pos != UINT64_MAX && o->until_pos - pos < budget)
      budget = o->until_pos - pos;
    if ((int)h == o->until_hart && o->until_count - hart->minstret < budget)
      budget = o->until_count - hart->minstret;
    uint64_t done;
    if ((int)h == o->step_hart || (int)h == over) {
      done = rv_hart_step(hart);
      over = -1;
      stepped = (int)h == o->step_hart && hart->minstret >= step_to;
    } else {
      done = rv_hart_run(hart, budget);
    }
    replay_flush_console(m);
    if (hart->breakpoint_hit) {
      if (o->scan) {
        if (note_hit(rr, hart, h, replay_position(m), o->until_pos))
          over = (int)h;
        continue;
      }
      if (o->stop_at_hit)
        break;
      continue; /* serving: the stub sees the hit and stops the VM */
    }
    if (done == 0)
      diverge(m,
              "hart %u stops (wfi %d, hsm %d) at its count %llu, but the log's %s record wants "
              "it at %llu",
              h, hart->wfi, m->hsm[h], (unsigned long long)hart->minstret, rr_kind_name(ev->kind),
              (unsigned long long)ev->icount);
  }
  replay_flush_console(m);
  return next;
}

/* The last checkpoint at which hart h had not yet executed its instruction number `count`. */
static size_t checkpoint_before_hart(const struct vm_rr *rr, unsigned h, uint64_t count) {
  size_t k = rr->ncps - 1;
  while (k > 0 && rr->cps[k].counts[h] > count)
    k--;
  return k;
}

static void clear_breakpoint_hits(vm *m) {
  for (unsigned h = 0; h < m->nharts; h++) {
    m->harts[h].breakpoint_hit = false;
    m->harts[h].watch_hit = 0;
  }
}

/* A step of hart h on a replay of several harts: the interleaving runs on (the other harts
 * cannot be held: the log says who runs when) until h has executed one instruction; a
 * breakpoint another hart reaches on the way stops it there. */
static unsigned replay_harts_step(vm *m, unsigned h) {
  clear_breakpoint_hits(m);
  harts_run_opts o = {
      .until_pos = UINT64_MAX, .until_hart = -1, .step_hart = (int)h, .stop_at_hit = true};
  return replay_harts_debug(m, &o);
}

/* Back on a replay of several harts. A step goes to where hart h was about to execute its
 * previous instruction (the other harts as they were then); a continue to the last breakpoint
 * hit of any hart before the current position. */
static int replay_harts_reverse(vm *m, bool step, unsigned h, unsigned *stopped) {
  struct vm_rr *rr = m->rr;
  const rv_breakpoints *bp = m->bus.breakpoints;
  *stopped = h;
  if (step) {
    uint64_t count = m->harts[h].minstret;
    if (count <= rr->cps[0].counts[h])
      return 1;
    checkpoint_restore(m, checkpoint_before_hart(rr, h, count - 1));
    m->bus.breakpoints = NULL;
    harts_run_opts o = {
        .until_pos = UINT64_MAX, .until_hart = (int)h, .until_count = count - 1, .step_hart = -1};
    *stopped = replay_harts_debug(m, &o);
    breakpoints_back(m, bp);
    return 0;
  }
  uint64_t window_end = replay_position(m);
  if (window_end <= rr->cps[0].icount)
    return 1;
  for (size_t k = checkpoint_before(rr, window_end);; k--) {
    checkpoint_restore(m, k);
    rr->nhits = 0;
    harts_run_opts scan = {
        .until_pos = window_end, .until_hart = -1, .step_hart = -1, .scan = true};
    replay_harts_debug(m, &scan);
    if (rr->divergence)
      return 0;
    if (rr->nhits) {
      checkpoint_restore(m, k);
      m->bus.breakpoints = NULL;
      const rr_hit *hit = &rr->hits[rr->nhits - 1];
      harts_run_opts land = {.until_pos = hit->pos, .until_hart = -1, .step_hart = -1};
      *stopped = replay_harts_debug(m, &land);
      breakpoints_back(m, bp);
      if (hit->watch_hit) /* it stands after the access, and may not be the next to run */
        *stopped = hit->hart;
      show_hit(m, hit);
      return 0;
    }
    if (k == 0) {
      checkpoint_restore(m, 0);
      *stopped = 0;
      return 1;
    }
    window_end = rr->cps[k].icount;
  }
}

unsigned vm_rr_step(vm *m, unsigned h) {
  struct vm_rr *rr = m->rr;
  if (!rr->debugging) {
    rv_hart_step(&m->harts[h]);
    return h;
  }
  if (m->nharts > 1)
    return replay_harts_step(m, h);
  replay_apply_due(m, true);
  if (!rr->divergence && !rr->ended)
    rv_hart_step(&m->harts[0]);
  replay_flush_console(m);
  return 0;
}

int vm_rr_reverse(vm *m, bool step, unsigned hart, unsigned *stopped) {
  struct vm_rr *rr = m->rr;
  *stopped = 0;
  if (!rr || !rr->debugging || hart >= m->nharts)
    return -1;
  if (m->nharts > 1)
    return replay_harts_reverse(m, step, hart, stopped);
  uint64_t now = m->harts[0].minstret;
  if (now <= rr->cps[0].icount)
    return 1;
  if (step) {
    replay_to(m, checkpoint_before(rr, now - 1), now - 1, false);
    return 0;
  }
  /* back to the last breakpoint hit before now: scan the windows between checkpoints from the
   * nearest backwards, each run forward with the breakpoints noted */
  uint64_t window_end = now;
  for (size_t k = checkpoint_before(rr, now);; k--) {
    checkpoint_restore(m, k);
    rr->nhits = 0;
    replay_run_opts o = {.until = window_end, .scan = true};
    replay_one_hart(m, &o);
    if (rr->divergence)
      return 0;
    if (rr->nhits) {
      replay_to(m, k, rr->hits[rr->nhits - 1].pos, true);
      show_hit(m, &rr->hits[rr->nhits - 1]);
      return 0;
    }
    if (k == 0) {
      checkpoint_restore(m, 0);
      return 1;
    }
    window_end = rr->cps[k].icount;
  }
}

void vm_rr_replay_run(vm *m) {
  struct vm_rr *rr = m->rr;
  if (m->nharts == 1 && m->hsm[0] == HSM_START_PENDING)
    vm_hart_begin(m, 0);    /* several harts: the log's BEGIN records start them */
  if (m->bus.breakpoints) { /* a debugger's stub: keep checkpoints to go back to */
    vs_error *err = NULL;
    if (debugging_start(m, &err) < 0) {
      diverge(m, "cannot keep checkpoints for the debugger: %s", err->msg);
      vs_error_free(err);
      return;
    }
  }
  if (m->nharts > 1 && rr->debugging) {
    harts_run_opts o = {.until_pos = UINT64_MAX, .until_hart = -1, .step_hart = -1, .serve = true};
    replay_harts_debug(m, &o);
  } else if (m->nharts > 1) {
    replay_run_harts(m);
  } else {
    replay_run_opts o = {.until = UINT64_MAX, .serve = rr->debugging};
    replay_one_hart(m, &o);
  }
}

/* ------------------------------------------------------------------ the end */

int vm_rr_finish(vm *m, vs_error **err) {
  struct vm_rr *rr = m->rr;
  if (!rr)
    return 0;
  m->rr = NULL;
  char hex[RR_DIGEST_LEN * 2 + 1];
  int rc = 0;
  if (!rr->replaying) {
    state_digest(m, rr->digest);
    rr_event ev = {
        .kind = RR_END, .icount = icount_of(m), .data = rr->digest, .len = RR_DIGEST_LEN};
    rr_log_put(&rr->log, &ev);
    uint64_t records = rr->log.records;
    rc = rr_log_close(&rr->log, err);
    if (rc == 0) {
      hex_of(rr->digest, hex);
      fprintf(stderr,
              "vessel-vmm: recorded %llu instructions in %s: log %llu bytes, %llu records, "
              "digest %s\n",
              (unsigned long long)ev.icount, rr->dir, (unsigned long long)rr->log.bytes_written,
              (unsigned long long)records, hex);
    } else {
      vs_error_wrap(err, "--record %s", rr->dir);
    }
  } else if (rr->divergence) {
    rc = vs_error_set(err, 0, "--replay %s: %s", rr->dir, rr->divergence);
  } else if (!rr->ended) {
    rc = vs_error_set(err, 0, "--replay %s: stopped at instruction count %llu before the end",
                      rr->dir, (unsigned long long)icount_of(m));
  } else {
    hex_of(rr->digest, hex);
    char from[64] = "";
    if (rr->from_snapshot)
      snprintf(from, sizeof(from), " (from the snapshot at %llu)",
               (unsigned long long)rr->from_icount);
    fprintf(stderr, "vessel-vmm: replayed %llu instructions from %s%s: digest %s (matches)\n",
            (unsigned long long)icount_of(m), rr->dir, from, hex);
  }
  m->bus.irq_gate = NULL;
  m->rtc.clock_ns = NULL;
  if (m->rng)
    m->rng->source = NULL;
  rr_free(rr);
  return rc;
}

/* ------------------------------------------------------------------ as text */

int vm_replay_dump(const char *dir, FILE *out, vs_error **err) {
  struct stat st;
  _cleanup_free_ char *path =
      stat(dir, &st) == 0 && S_ISDIR(st.st_mode) ? vs_asprintf("%s/log", dir) : vs_strdup(dir);
  _cleanup_free_ char *data = NULL;
  size_t len = 0;
  if (vs_read_file(path, MAX_LOG_FILE, &data, &len, err) < 0)
    return -1;
  if (rr_log_dump((const uint8_t *)data, len, out, err) < 0)
    return vs_error_wrap(err, "%s", path);
  return 0;
}
