/* Live migration over TCP: iterative pre-copy of guest RAM, then stop-and-copy of the last dirty
 * pages and the device state (docs/lifecycle.md).
 *
 * Stream (all integers little-endian):
 *   "VSSLMIGR" u32 version
 *   'C' u32 len, the CONF section            the machine: the receiver needs no options
 *   'P' u64 first_page u32 count, pages      guest RAM, count * 4096 bytes
 *   'Z' u64 first_page u32 count             pages that are zero now
 *   'S' u32 len, a state image               devices and harts, with its own SHA-256
 *   'E' 32 bytes SHA-256 of every byte of the stream before this record
 * and the receiver answers 'K' (running) or 'X' u32 len, message.
 *
 * The sender is an I/O source of the run loop, not a thread: between instruction slices it
 * writes what the socket takes (POLLOUT) and refills its buffer from the round's dirty bitmap,
 * so the guest runs on while RAM is copied and no lock guards RAM or the bitmap. A round starts
 * by harvesting the dirty bits (which flushes the TLBs so every later store marks again). When a
 * round leaves few dirty pages, or rounds stop converging, the guest is paused and the rest goes
 * out in one blocking burst; the downtime is that burst plus the receiver's answer.
 *
 * A failure on the sender (connection refused or lost, a receiver error) stops the migration and
 * leaves the guest running as before; on the receiver any malformed or truncated stream is an
 * error and nothing runs.
 */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "vm/machine.h"

#define MIG_MAGIC "VSSLMIGR"
#define MIG_VERSION 1
#define MIG_CHUNK (1u << 20)      /* bytes queued per refill */
#define MIG_RUN_MAX 64u           /* pages per 'P' record */
#define MIG_FINAL_PAGES 256u      /* few enough dirty pages for a short stop-and-copy */
#define MIG_MAX_ROUNDS 30u        /* stop iterating when rounds do not converge */
#define MIG_ACK_TIMEOUT_MS 60000  /* the receiver loads the state and opens the disks */
#define MIG_RECV_TIMEOUT_MS 60000 /* a silent sender for this long is a dead stream */
#define MIG_MAX_STATE (64u << 20)
#define MIG_CONNECT_TIMEOUT_MS 5000
#define MIG_MAX_MESSAGE 4096u

typedef struct vm_migration {
  vm *m;
  int fd;
  int poll_idx;
  char *dest;
  vmstate_writer out; /* bytes queued for the socket */
  size_t out_sent;
  vs_sha256_ctx hash; /* of every byte queued */
  uint64_t *round;    /* this round's dirty pages */
  uint64_t cursor;    /* next page of the round to look at */
  unsigned round_no;
  uint64_t round_pages;
  uint64_t pages_sent, bytes_sent;
  struct timespec started;
} vm_migration;

static int64_t ms_since(const struct timespec *t0) {
  struct timespec t1;
  clock_gettime(CLOCK_MONOTONIC, &t1);
  return (t1.tv_sec - t0->tv_sec) * 1000 + (t1.tv_nsec - t0->tv_nsec) / 1000000;
}

static int64_t us_since(const struct timespec *t0) {
  struct timespec t1;
  clock_gettime(CLOCK_MONOTONIC, &t1);
  return (t1.tv_sec - t0->tv_sec) * 1000000 + (t1.tv_nsec - t0->tv_nsec) / 1000;
}

/* "host:port" (an IPv6 host in brackets) into its parts. */
static int split_hostport(const char *hp, char **host, char **port, vs_error **err) {
  const char *colon = strrchr(hp, ':');
  if (!colon || colon == hp || !colon[1])
    return vs_error_set(err, 0, "'%s' is not HOST:PORT", hp);
  const char *h = hp;
  size_t hlen = (size_t)(colon - hp);
  if (h[0] == '[' && hlen >= 2 && h[hlen - 1] == ']') {
    h++;
    hlen -= 2;
  }
  char *hs = vs_malloc0(hlen + 1);
  memcpy(hs, h, hlen);
  *host = hs;
  *port = vs_strdup(colon + 1);
  return 0;
}

static struct addrinfo *resolve(const char *hostport, bool passive, vs_error **err) {
  _cleanup_free_ char *host = NULL;
  _cleanup_free_ char *port = NULL;
  if (split_hostport(hostport, &host, &port, err) < 0)
    return NULL;
  struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = passive ? AI_PASSIVE : 0};
  struct addrinfo *ai = NULL;
  int rc = getaddrinfo(host, port, &hints, &ai);
  if (rc != 0) {
    vs_error_set(err, 0, "resolve %s: %s", hostport, gai_strerror(rc));
    return NULL;
  }
  return ai;
}

/* ------------------------------------------------------------------ byte I/O */

static int write_full(int fd, const void *buf, size_t len, vs_error **err) {
  const uint8_t *p = buf;
  while (len) {
    ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      struct pollfd pfd = {.fd = fd, .events = POLLOUT};
      if (poll(&pfd, 1, MIG_ACK_TIMEOUT_MS) <= 0)
        return vs_error_set(err, ETIMEDOUT, "the receiver stopped reading");
      continue;
    }
    if (n <= 0)
      return vs_error_set(err, n < 0 ? errno : EPIPE, "send");
    p += n;
    len -= (size_t)n;
  }
  return 0;
}

static int read_full(int fd, void *buf, size_t len, int timeout_ms, vs_error **err) {
  uint8_t *p = buf;
  while (len) {
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    int r = poll(&pfd, 1, timeout_ms);
    if (r < 0 && errno == EINTR)
      continue;
    if (r == 0)
      return vs_error_set(err, ETIMEDOUT, "the stream stalled for %d s", timeout_ms / 1000);
    ssize_t n = recv(fd, p, len, 0);
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
      continue;
    if (n < 0)
      return vs_error_set(err, errno, "receive");
    if (n == 0)
      return vs_error_set(err, 0, "the stream ended early");
    p += n;
    len -= (size_t)n;
  }
  return 0;
}

static uint64_t le_load(const uint8_t *p, unsigned n) {
  uint64_t v = 0;
  for (unsigned i = 0; i < n; i++)
    v |= (uint64_t)p[i] << (8 * i);
  return v;
}

/* ------------------------------------------------------------------ sender */

/* Queue bytes: everything queued is hashed for the final 'E' record. The hash is taken of the
 * queued copy, not of p: guest RAM may change under a running hart's stores in between (such a
 * page is dirty and goes again in the next round). */
static void queue_bytes(vm_migration *g, const void *p, size_t n) {
  size_t at = g->out.len;
  vmstate_put_bytes(&g->out, p, n);
  vs_sha256_update(&g->hash, g->out.data + at, n);
}

static void queue_le(vm_migration *g, uint64_t v, unsigned n) {
  uint8_t b[8];
  for (unsigned i = 0; i < n; i++)
    b[i] = (uint8_t)(v >> (8 * i));
  queue_bytes(g, b, n);
}

static void queue_record(vm_migration *g, char type) { queue_bytes(g, &type, 1); }

static bool page_zero(const uint8_t *p) {
  const uint64_t *w = (const uint64_t *)(const void *)p;
  for (size_t i = 0; i < VM_PAGE_SIZE / 8; i++)
    if (w[i])
      return false;
  return true;
}

static bool round_has(const vm_migration *g, uint64_t pg) {
  return (g->round[pg / 64] >> (pg % 64)) & 1;
}

/* Queue one run of consecutive dirty pages starting at pg: zero pages as 'Z', others as 'P'
 * (in the first round zero pages are skipped: the receiver's RAM starts zeroed). */
static uint64_t queue_run(vm_migration *g, uint64_t pg, uint64_t pages) {
  vm *m = g->m;
  bool zero = page_zero(m->ram + pg * VM_PAGE_SIZE);
  uint64_t end = pg + 1;
  while (end < pages && end - pg < MIG_RUN_MAX && round_has(g, end) &&
         page_zero(m->ram + end * VM_PAGE_SIZE) == zero)
    end++;
  if (zero && g->round_no == 0)
    return end;
  queue_record(g, zero ? 'Z' : 'P');
  queue_le(g, pg, 8);
  queue_le(g, end - pg, 4);
  if (!zero)
    queue_bytes(g, m->ram + pg * VM_PAGE_SIZE, (size_t)((end - pg) * VM_PAGE_SIZE));
  g->pages_sent += end - pg;
  return end;
}

/* Queue up to MIG_CHUNK bytes of this round; false when the round is done. */
static bool queue_more(vm_migration *g, uint64_t limit_bytes) {
  uint64_t pages = vm_ram_pages(g->m);
  size_t start = g->out.len;
  while (g->cursor < pages && g->out.len - start < limit_bytes) {
    uint64_t w = g->round[g->cursor / 64] >> (g->cursor % 64);
    if (!w) {
      g->cursor = (g->cursor / 64 + 1) * 64;
      continue;
    }
    g->cursor += (uint64_t)__builtin_ctzll(w);
    if (g->cursor >= pages)
      break;
    g->cursor = queue_run(g, g->cursor, pages);
  }
  return g->cursor < pages;
}

static uint64_t count_bits(const uint64_t *bm, size_t words) {
  uint64_t n = 0;
  for (size_t i = 0; i < words; i++)
    n += (uint64_t)__builtin_popcountll(bm[i]);
  return n;
}

static void start_round(vm_migration *g) {
  vm_dirty_harvest(g->m, g->round);
  g->cursor = 0;
  g->round_pages = count_bits(g->round, vm_dirty_words(g->m));
}

/* Add what the guest wrote since the round's harvest to the round (which is not sent yet). */
static void merge_round(vm_migration *g) {
  size_t words = vm_dirty_words(g->m);
  _cleanup_free_ uint64_t *more = vs_malloc0(words * sizeof(uint64_t));
  vm_dirty_harvest(g->m, more);
  for (size_t i = 0; i < words; i++)
    g->round[i] |= more[i];
  g->cursor = 0;
  g->round_pages = count_bits(g->round, words);
}

static void migration_free(vm_migration *g) {
  if (g->fd >= 0)
    close(g->fd);
  vmstate_writer_free(&g->out);
  vs_sha256_abandon(&g->hash);
  free(g->round);
  free(g->dest);
  free(g);
}

/* The migration ends (done, failed, or the VM goes away with it). */
static void migration_destroy(vm *m) {
  vm_migration *g = m->migration;
  if (!g)
    return;
  vm_remove_hooks(m, g);
  vm_remove_io_source(m, g);
  vm_dirty_tracking_stop(m);
  m->migration = NULL;
  migration_free(g);
}

static void migration_hook_destroy(void *opaque) {
  const vm_migration *g = opaque;
  migration_destroy(g->m);
}

/* The source's disks are released before the receiver opens them (a qcow2 image has one writer);
 * a failed migration opens them again. */
static int release_disks(vm *m, vs_error **err) {
  for (unsigned i = 0; i < m->cfg.ndisks; i++) {
    if (vm_disk_close(m->disk[i], err) < 0)
      return vs_error_wrap(err, "flush disk %u", i);
    m->disk[i] = NULL;
    m->blk[i]->disk = NULL;
  }
  return 0;
}

static void reopen_disks(vm *m) {
  for (unsigned i = 0; i < m->cfg.ndisks; i++) {
    if (m->disk[i])
      continue;
    _cleanup_error_ vs_error *err = NULL;
    _cleanup_free_ char *path = NULL;
    _cleanup_free_ char *serial = NULL;
    vm_disk_opts o;
    if (vm_disk_parse_spec(m->cfg.disks[i], &path, &o, &serial, &err) < 0 ||
        vm_disk_open(path, &o, &m->disk[i], &err) < 0) {
      /* the guest would see I/O errors: stopping is the honest outcome */
      vs_log_error("migration failed and disk %u cannot be reopened: %s", i, err->msg);
      vm_request_exit(m, VM_EXIT_FAIL, 1);
      continue;
    }
    m->blk[i]->disk = m->disk[i];
  }
}

static void migration_failed(vm *m, bool was_paused, const vs_error *err) {
  vs_log_warn("migration to %s failed: %s", m->migration->dest, err->msg);
  vm_control_event(m, "migration-failed", json_pack("{s:s}", "error", err->msg));
  migration_destroy(m);
  reopen_disks(m);
  if (!was_paused)
    vm_resume(m);
}

/* Stop-and-copy: the guest is paused; everything left goes out at once. */
static int send_final(vm_migration *g, vs_error **err) {
  vm *m = g->m;
  merge_round(g); /* the harvested round, plus what the guest wrote since */
  while (queue_more(g, UINT64_MAX))
    ;
  vmstate_writer st;
  vmstate_writer_init(&st);
  vm_state_save(m, &st, NULL);
  if (release_disks(m, err) < 0) {
    vmstate_writer_free(&st);
    return -1;
  }
  queue_record(g, 'S');
  queue_le(g, st.len, 4);
  queue_bytes(g, st.data, st.len);
  vmstate_writer_free(&st);
  uint8_t sum[32];
  vs_sha256_final_raw(&g->hash, sum);
  vs_sha256_init(&g->hash);
  vmstate_put_u8(&g->out, 'E');
  vmstate_put_bytes(&g->out, sum, sizeof(sum));
  if (write_full(g->fd, g->out.data + g->out_sent, g->out.len - g->out_sent, err) < 0)
    return -1;
  g->bytes_sent += g->out.len - g->out_sent;
  g->out.len = g->out_sent = 0;
  uint8_t ack;
  if (read_full(g->fd, &ack, 1, MIG_ACK_TIMEOUT_MS, err) < 0)
    return vs_error_wrap(err, "waiting for the receiver");
  if (ack == 'K')
    return 0;
  uint8_t lenb[4];
  char msg[MIG_MAX_MESSAGE + 1] = "";
  if (ack == 'X' && read_full(g->fd, lenb, 4, 1000, NULL) == 0) {
    uint32_t n = (uint32_t)le_load(lenb, 4);
    if (n <= MIG_MAX_MESSAGE && read_full(g->fd, msg, n, 1000, NULL) == 0)
      msg[n] = 0;
  }
  return vs_error_set(err, 0, "the receiver refused the VM: %s", *msg ? msg : "no reason given");
}

static void finish(vm_migration *g) {
  vm *m = g->m;
  bool was_paused = m->paused;
  struct timespec stop;
  clock_gettime(CLOCK_MONOTONIC, &stop);
  vm_pause(m);
  _cleanup_error_ vs_error *err = NULL;
  if (send_final(g, &err) < 0) {
    migration_failed(m, was_paused, err);
    return;
  }
  json_t *ev = json_pack("{s:s, s:I, s:I, s:I, s:I, s:i}", "dest", g->dest, "total_ms",
                         (json_int_t)ms_since(&g->started), "downtime_us",
                         (json_int_t)us_since(&stop), "pages", (json_int_t)g->pages_sent, "bytes",
                         (json_int_t)g->bytes_sent, "rounds", (int)g->round_no + 1);
  vm_control_event(m, "migration-completed", ev);
  migration_destroy(m);
  vm_request_exit(m, VM_EXIT_MIGRATED, 0);
}

static void progress_event(vm_migration *g) {
  vm_control_event(g->m, "migration-progress",
                   json_pack("{s:i, s:I, s:I, s:I}", "round", (int)g->round_no, "dirty_pages",
                             (json_int_t)g->round_pages, "pages_sent", (json_int_t)g->pages_sent,
                             "bytes_sent", (json_int_t)g->bytes_sent));
}

/* The round is sent: start the next one, or stop and copy the rest. */
static void next_round(vm_migration *g) {
  g->round_no++;
  start_round(g);
  progress_event(g);
  if (g->round_pages <= MIG_FINAL_PAGES || g->round_no >= MIG_MAX_ROUNDS)
    finish(g);
}

static void migrate_prepare(void *opaque, vm_pollset *ps) {
  vm_migration *g = opaque;
  g->poll_idx = vm_pollset_add(ps, g->fd, POLLOUT);
}

static void migrate_dispatch(void *opaque, const vm_pollset *ps) {
  vm_migration *g = opaque;
  vm *m = g->m;
  int ev = vm_pollset_revents(ps, g->poll_idx);
  if (!(ev & (POLLOUT | POLLERR | POLLHUP)))
    return;
  for (int burst = 0; burst < 8; burst++) {
    if (g->out_sent == g->out.len) {
      g->out.len = g->out_sent = 0;
      if (!queue_more(g, MIG_CHUNK) && g->out.len == 0) {
        next_round(g);
        return;
      }
    }
    ssize_t n = send(g->fd, g->out.data + g->out_sent, g->out.len - g->out_sent,
                     MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
      return;
    if (n <= 0) {
      vs_error *err = NULL;
      vs_error_set(&err, n < 0 ? errno : EPIPE, "send to %s", g->dest);
      migration_failed(m, m->paused, err);
      vs_error_free(err);
      return;
    }
    g->out_sent += (size_t)n;
    g->bytes_sent += (uint64_t)n;
  }
}

/* The run loop waits while we connect: an unreachable host must not stall the guest for the
 * kernel's TCP timeout. The socket stays non-blocking (every later send and receive polls). */
static int connect_within(int fd, const struct sockaddr *sa, socklen_t len, int timeout_ms) {
  if (connect(fd, sa, len) == 0)
    return 0;
  if (errno != EINPROGRESS)
    return -1;
  struct pollfd pfd = {.fd = fd, .events = POLLOUT};
  int r;
  do
    r = poll(&pfd, 1, timeout_ms);
  while (r < 0 && errno == EINTR);
  if (r == 0) {
    errno = ETIMEDOUT;
    return -1;
  }
  int soerr = 0;
  socklen_t sl = sizeof(soerr);
  if (r < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
    return -1;
  if (soerr) {
    errno = soerr;
    return -1;
  }
  return 0;
}

static int connect_to(const char *dest, vs_error **err) {
  struct addrinfo *ai = resolve(dest, false, err);
  if (!ai)
    return -1;
  int fd = -1, saved = 0;
  for (struct addrinfo *a = ai; a && fd < 0; a = a->ai_next) {
    fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, a->ai_protocol);
    if (fd < 0)
      continue;
    if (connect_within(fd, a->ai_addr, a->ai_addrlen, MIG_CONNECT_TIMEOUT_MS) < 0) {
      saved = errno;
      close(fd);
      fd = -1;
    }
  }
  freeaddrinfo(ai);
  if (fd < 0)
    return vs_error_set(err, saved, "connect to %s", dest);
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  return fd;
}

int vm_migrate_start(vm *m, const char *dest, vs_error **err) {
  if (m->migration)
    return vs_error_set(err, EBUSY, "a migration is already in progress");
  if (m->htif_enabled)
    return vs_error_set(err, 0, "--htif test programs cannot migrate");
  if (vm_make_disk_specs_absolute(m, err) < 0)
    return -1;
  int fd = connect_to(dest, err);
  if (fd < 0)
    return -1;
  vm_migration *g = vs_malloc0(sizeof(*g));
  g->m = m;
  g->fd = fd;
  g->poll_idx = -1;
  g->dest = vs_strdup(dest);
  vmstate_writer_init(&g->out);
  vs_sha256_init(&g->hash);
  g->round = vs_malloc0(vm_dirty_words(m) * sizeof(uint64_t));
  clock_gettime(CLOCK_MONOTONIC, &g->started);
  queue_bytes(g, MIG_MAGIC, 8);
  queue_le(g, MIG_VERSION, 4);
  vmstate_writer conf;
  vmstate_writer_init(&conf);
  vm_config_save(m, &conf, false);
  queue_record(g, 'C');
  queue_le(g, conf.len, 4);
  queue_bytes(g, conf.data, conf.len);
  vmstate_writer_free(&conf);
  vm_io_source src = {"migration", migrate_prepare, migrate_dispatch, g};
  vm_hooks hooks = {"migration", NULL, NULL, migration_hook_destroy, g};
  if (vm_add_io_source(m, &src, err) < 0 || vm_add_hooks(m, &hooks, err) < 0) {
    vm_remove_io_source(m, g);
    migration_free(g);
    return -1;
  }
  m->migration = g;
  vm_dirty_tracking_start(m);
  start_round(g); /* round 0: every page */
  return 0;
}

/* ------------------------------------------------------------------ receiver */

#define MIG_IN_BUF (256u << 10)

typedef struct mig_in {
  int fd;
  vs_sha256_ctx hash;
  uint8_t *ram;
  uint64_t ram_size;
  /* reads are buffered: a record's small fields would otherwise cost a system call each */
  uint8_t *buf;
  size_t pos, len;
} mig_in;

/* Whatever the socket has (at least one byte) into the buffer. */
static int in_fill(mig_in *in, vs_error **err) {
  for (;;) {
    struct pollfd pfd = {.fd = in->fd, .events = POLLIN};
    int r = poll(&pfd, 1, MIG_RECV_TIMEOUT_MS);
    if (r < 0 && errno == EINTR)
      continue;
    if (r == 0)
      return vs_error_set(err, ETIMEDOUT, "the stream stalled for %d s",
                          MIG_RECV_TIMEOUT_MS / 1000);
    ssize_t n = recv(in->fd, in->buf, MIG_IN_BUF, 0);
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
      continue;
    if (n < 0)
      return vs_error_set(err, errno, "receive");
    if (n == 0)
      return vs_error_set(err, 0, "the stream ended early");
    in->pos = 0;
    in->len = (size_t)n;
    return 0;
  }
}

/* Exactly len bytes of the stream (unhashed: the end record). */
static int in_take(mig_in *in, void *buf, size_t len, vs_error **err) {
  uint8_t *p = buf;
  while (len) {
    if (in->pos == in->len && in_fill(in, err) < 0)
      return -1;
    size_t n = in->len - in->pos < len ? in->len - in->pos : len;
    memcpy(p, in->buf + in->pos, n);
    in->pos += n;
    p += n;
    len -= n;
  }
  return 0;
}

static int in_read(mig_in *in, void *buf, size_t len, vs_error **err) {
  if (in_take(in, buf, len, err) < 0)
    return -1;
  vs_sha256_update(&in->hash, buf, len);
  return 0;
}

static int in_le(mig_in *in, unsigned n, uint64_t *v, vs_error **err) {
  uint8_t b[8];
  if (in_read(in, b, n, err) < 0)
    return -1;
  *v = le_load(b, n);
  return 0;
}

/* A length-prefixed blob of at most max bytes; allocated. */
static int in_blob(mig_in *in, size_t max, uint8_t **out, size_t *len, vs_error **err) {
  uint64_t n;
  if (in_le(in, 4, &n, err) < 0)
    return -1;
  if (n == 0 || n > max)
    return vs_error_set(err, 0, "a record of %llu bytes (at most %zu)", (unsigned long long)n, max);
  *out = vs_malloc0((size_t)n);
  *len = (size_t)n;
  return in_read(in, *out, (size_t)n, err);
}

static int in_pages(mig_in *in, bool zero, vs_error **err) {
  uint64_t first, count;
  if (in_le(in, 8, &first, err) < 0 || in_le(in, 4, &count, err) < 0)
    return -1;
  uint64_t pages = in->ram_size / VM_PAGE_SIZE;
  if (count == 0 || count > MIG_RUN_MAX || first >= pages || count > pages - first)
    return vs_error_set(err, 0, "pages %llu+%llu are outside guest RAM (%llu pages)",
                        (unsigned long long)first, (unsigned long long)count,
                        (unsigned long long)pages);
  uint8_t *p = in->ram + first * VM_PAGE_SIZE;
  if (zero) {
    memset(p, 0, (size_t)(count * VM_PAGE_SIZE));
    return 0;
  }
  return in_read(in, p, (size_t)(count * VM_PAGE_SIZE), err);
}

static int in_header(mig_in *in, vs_error **err) {
  uint8_t h[12];
  if (in_read(in, h, sizeof(h), err) < 0)
    return -1;
  if (memcmp(h, MIG_MAGIC, 8) != 0)
    return vs_error_set(err, 0, "not a vessel migration stream (bad magic)");
  uint32_t v = (uint32_t)le_load(h + 8, 4);
  if (v != MIG_VERSION)
    return vs_error_set(err, 0, "migration stream version %u, this build reads %u", v, MIG_VERSION);
  return 0;
}

static int in_config(mig_in *in, vm_config *cfg, char *strings[VM_CONFIG_STRINGS], vs_error **err) {
  uint8_t type;
  if (in_read(in, &type, 1, err) < 0)
    return -1;
  if (type != 'C')
    return vs_error_set(err, 0, "the stream does not start with the configuration");
  _cleanup_free_ uint8_t *conf = NULL;
  size_t len = 0;
  if (in_blob(in, 1u << 20, &conf, &len, err) < 0)
    return -1;
  vmstate_reader r;
  vmstate_reader_init(&r, conf, len);
  bool frozen;
  if (vm_config_load(&r, cfg, strings, &frozen, err) < 0)
    return -1;
  if (!vmstate_at_end(&r))
    return vs_error_set(err, 0, "unexpected bytes after the configuration");
  return 0;
}

/* Pages until the state record; returns the state image. */
static int in_memory_and_state(mig_in *in, uint8_t **state, size_t *state_len, vs_error **err) {
  for (;;) {
    uint8_t type;
    if (in_read(in, &type, 1, err) < 0)
      return -1;
    switch (type) {
    case 'P':
    case 'Z':
      if (in_pages(in, type == 'Z', err) < 0)
        return -1;
      break;
    case 'S':
      return in_blob(in, MIG_MAX_STATE, state, state_len, err);
    default:
      return vs_error_set(err, 0, "unknown record type 0x%02x", type);
    }
  }
}

static int in_end(mig_in *in, vs_error **err) {
  uint8_t want[32], got[32], type;
  vs_sha256_final_raw(&in->hash, got);
  vs_sha256_init(&in->hash);
  if (in_take(in, &type, 1, err) < 0 || (type == 'E' && in_take(in, want, sizeof(want), err) < 0))
    return -1;
  if (type != 'E')
    return vs_error_set(err, 0, "the state is not followed by the end record");
  if (memcmp(want, got, sizeof(got)) != 0)
    return vs_error_set(err, 0, "stream checksum mismatch");
  return 0;
}

static void send_refusal(int fd, const char *msg) {
  size_t n = strlen(msg);
  if (n > MIG_MAX_MESSAGE)
    n = MIG_MAX_MESSAGE;
  uint8_t h[5] = {'X', (uint8_t)n, (uint8_t)(n >> 8), 0, 0};
  if (write_full(fd, h, sizeof(h), NULL) == 0)
    write_full(fd, msg, n, NULL);
}

/* "fd:N": a listening socket its parent made (and chose the port of) before starting us. */
static int inherited_listener(const char *spec, vs_error **err) {
  char *end = NULL;
  errno = 0;
  long n = strtol(spec + 3, &end, 10);
  int listening = 0;
  socklen_t len = sizeof(listening);
  if (errno || end == spec + 3 || *end || n < 3 || n > 65535)
    return vs_error_set(err, EINVAL, "--incoming %s: expected fd:N with N a descriptor above 2",
                        spec);
  if (getsockopt((int)n, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) < 0 || !listening)
    return vs_error_set(err, errno ? errno : ENOTSOCK,
                        "--incoming %s: descriptor %ld is not a listening socket", spec, n);
  return (int)n;
}

static int accept_on(int lfd, const char *hostport, vs_error **err) {
  vs_log_info("waiting for a migration on %s", hostport);
  int fd;
  do
    fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
  while (fd < 0 && errno == EINTR);
  int saved = errno;
  close(lfd);
  if (fd < 0)
    return vs_error_set(err, saved, "accept on %s", hostport);
  return fd;
}

static int accept_one(const char *hostport, vs_error **err) {
  if (!strncmp(hostport, "fd:", 3)) {
    int lfd = inherited_listener(hostport, err);
    return lfd < 0 ? -1 : accept_on(lfd, hostport, err);
  }
  struct addrinfo *ai = resolve(hostport, true, err);
  if (!ai)
    return -1;
  int lfd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
  int one = 1;
  if (lfd < 0 || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
      bind(lfd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(lfd, 1) < 0) {
    vs_error_set(err, errno, "listen on %s", hostport);
    if (lfd >= 0)
      close(lfd);
    freeaddrinfo(ai);
    return -1;
  }
  freeaddrinfo(ai);
  return accept_on(lfd, hostport, err);
}

static void free_strings(char *strings[VM_CONFIG_STRINGS]) {
  for (unsigned i = 0; i < VM_CONFIG_STRINGS; i++) {
    free(strings[i]);
    strings[i] = NULL;
  }
}

/* The stream up to its end record: configuration, RAM (into a new mapping) and the state. */
static int receive_stream(mig_in *in, vm_config *cfg, char *strings[VM_CONFIG_STRINGS],
                          uint8_t **state, size_t *state_len, vs_error **err) {
  if (in_header(in, err) < 0 || in_config(in, cfg, strings, err) < 0)
    return -1;
  in->ram_size = cfg->mem_size;
  void *ram = mmap(NULL, cfg->mem_size, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (ram == MAP_FAILED)
    return vs_error_set(err, errno, "allocate guest RAM");
  in->ram = ram;
  if (in_memory_and_state(in, state, state_len, err) < 0 || in_end(in, err) < 0) {
    munmap(ram, cfg->mem_size);
    in->ram = NULL;
    return -1;
  }
  return 0;
}

/* The state image must describe the machine the stream announced. */
static int load_state(vm *m, const uint8_t *state, size_t len, vs_error **err) {
  vm_config scfg;
  vm_config_init(&scfg);
  char *sstrings[VM_CONFIG_STRINGS] = {0};
  bool frozen;
  vmstate_reader rest;
  int rc = vm_state_open(state, len, &scfg, sstrings, &frozen, &rest, err);
  if (rc == 0 &&
      (scfg.mem_size != m->cfg.mem_size || scfg.smp != m->cfg.smp || scfg.ndisks != m->cfg.ndisks))
    rc = vs_error_set(err, 0, "the state's machine differs from the announced configuration");
  free_strings(sstrings);
  if (rc < 0)
    return -1;
  return vm_state_load(m, &rest, NULL, err);
}

static vm *receive(mig_in *in, const vm_restore_opts *opts, vs_error **err) {
  vm_config cfg;
  vm_config_init(&cfg);
  char *strings[VM_CONFIG_STRINGS] = {0};
  uint8_t *state = NULL;
  size_t state_len = 0;
  if (receive_stream(in, &cfg, strings, &state, &state_len, err) < 0) {
    free(state);
    free_strings(strings);
    return NULL;
  }
  cfg.console_in = opts->console_in;
  cfg.console_out = opts->console_out;
  cfg.console_escape = opts->console_escape;
  cfg.trace = opts->trace;
  cfg.interpreter = opts->interpreter;
  cfg.one_thread = opts->one_thread;
  /* the disks are opened only now: the sender released them before its final records */
  vm *m = vm_build(&cfg, in->ram, err);
  if (!m) {
    free(state);
    free_strings(strings);
    return NULL;
  }
  memcpy(m->cfg_strings, strings, sizeof(strings));
  int rc = load_state(m, state, state_len, err);
  free(state);
  if (rc < 0) {
    vm_destroy(m);
    return NULL;
  }
  return m;
}

vm *vm_migrate_incoming(const char *hostport, const vm_restore_opts *opts, vs_error **err) {
  mig_in in = {.fd = accept_one(hostport, err)};
  if (in.fd < 0)
    return NULL;
  vs_sha256_init(&in.hash);
  in.buf = vs_malloc0(MIG_IN_BUF);
  vm *m = receive(&in, opts, err);
  vs_sha256_abandon(&in.hash);
  free(in.buf);
  if (!m) {
    vs_error_wrap(err, "incoming migration");
    send_refusal(in.fd, err && *err ? (*err)->msg : "failed");
    close(in.fd);
    return NULL;
  }
  static const uint8_t ack = 'K';
  _cleanup_error_ vs_error *werr = NULL;
  if (write_full(in.fd, &ack, 1, &werr) < 0) {
    /* the sender cannot know we run: it keeps its guest, so we must not run ours */
    vs_error_set(err, 0, "incoming migration: cannot confirm to the sender: %s", werr->msg);
    close(in.fd);
    vm_destroy(m);
    return NULL;
  }
  close(in.fd);
  vm_io_devices_announce(m);
  return m;
}
