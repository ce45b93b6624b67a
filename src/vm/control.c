/* The control socket: a JSON API on a unix socket, one object per line (docs/lifecycle.md).
 *
 *   request  {"command": "snapshot", "dir": "/var/lib/x", "id": 7}
 *   reply    {"id": 7, "ok": true, "result": {...}}   or   {"id": 7, "ok": false, "error": "..."}
 *   event    {"event": "paused", "time": 1700000000.123}
 *
 * The socket is an I/O source of the run loop: requests are served between instruction slices,
 * on the thread that runs the harts, so a command sees the machine in a consistent state and
 * needs no locking. Clients are untrusted: a line that is not a JSON object, an unknown command,
 * bad arguments or a line longer than CTL_MAX_LINE gets an error reply, never a dropped
 * connection or a disturbed VM. A client that stops reading is dropped once CTL_MAX_OUT bytes of
 * replies and events wait for it.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "vm/machine.h"

#define CTL_MAX_CLIENTS 8
#define CTL_MAX_LINE 65536
#define CTL_MAX_OUT (1u << 20)
#define CTL_SHUTDOWN_FLUSH_MS 1000

typedef struct ctl_client {
  int fd;
  int poll_idx;
  char in[CTL_MAX_LINE];
  size_t in_len;
  bool discarding; /* inside a line that was too long: skip to its end */
  char *out;
  size_t out_len, out_cap;
  bool dead;
} ctl_client;

typedef struct vm_control vm_control;
struct vm_control {
  vm *m;
  char *path;
  int listen_fd;
  int listen_idx;
  ctl_client *clients[CTL_MAX_CLIENTS];
};

/* ------------------------------------------------------------------ output */

static void client_queue(ctl_client *c, json_t *msg) {
  char *text = json_dumps(msg, JSON_COMPACT);
  size_t n = strlen(text);
  if (c->out_len + n + 1 > CTL_MAX_OUT) {
    c->dead = true; /* it does not read what it asked for */
    free(text);
    return;
  }
  if (c->out_cap < c->out_len + n + 1) {
    c->out_cap = (c->out_len + n + 1) * 2;
    c->out = vs_realloc(c->out, c->out_cap);
  }
  memcpy(c->out + c->out_len, text, n);
  c->out[c->out_len + n] = '\n';
  c->out_len += n + 1;
  free(text);
}

static void client_flush(ctl_client *c) {
  size_t done = 0;
  while (done < c->out_len) {
    ssize_t n = send(c->fd, c->out + done, c->out_len - done, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
      break;
    if (n <= 0) {
      c->dead = true;
      break;
    }
    done += (size_t)n;
  }
  memmove(c->out, c->out + done, c->out_len - done);
  c->out_len -= done;
}

static double wall_time(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void vm_control_event(vm *m, const char *name, json_t *fields) {
  vm_control *ctl = m->control;
  if (!ctl) {
    if (fields)
      json_decref(fields);
    return;
  }
  json_t *ev = fields ? fields : json_object();
  json_object_set_new(ev, "event", json_string(name));
  json_object_set_new(ev, "time", json_real(wall_time()));
  for (unsigned i = 0; i < CTL_MAX_CLIENTS; i++)
    if (ctl->clients[i]) {
      client_queue(ctl->clients[i], ev);
      client_flush(ctl->clients[i]);
    }
  json_decref(ev);
}

static void reply_error(ctl_client *c, json_t *id, const char *msg) {
  json_t *r = json_pack("{s:b, s:s}", "ok", 0, "error", msg);
  if (id)
    json_object_set(r, "id", id);
  client_queue(c, r);
  json_decref(r);
}

static void reply_ok(ctl_client *c, json_t *id, json_t *result) {
  json_t *r = json_pack("{s:b, s:o}", "ok", 1, "result", result ? result : json_object());
  if (id)
    json_object_set(r, "id", id);
  client_queue(c, r);
  json_decref(r);
}

/* ------------------------------------------------------------------ commands */

typedef json_t *(*ctl_handler)(vm *m, const json_t *req, vs_error **err);

static const char *state_name(const vm *m) {
  if (m->migration)
    return "migrating";
  return m->paused ? "paused" : "running";
}

static json_t *cmd_status(vm *m, const json_t *req, vs_error **err) {
  (void)req;
  (void)err;
  return json_pack("{s:s, s:I}", "state", state_name(m), "mtime", (json_int_t)vm_read_mtime(m));
}

static json_t *cmd_pause(vm *m, const json_t *req, vs_error **err) {
  (void)req;
  (void)err;
  vm_pause(m);
  return json_pack("{s:s}", "state", state_name(m));
}

static json_t *cmd_resume(vm *m, const json_t *req, vs_error **err) {
  (void)req;
  if (m->migration) {
    vs_error_set(err, 0, "a migration is in progress");
    return NULL;
  }
  vm_resume(m);
  return json_pack("{s:s}", "state", state_name(m));
}

static json_t *hart_info(vm *m, unsigned h) {
  const rv_hart *t = &m->harts[h];
  static const char *const hsm_names[] = {"started", "stopped", "start-pending", "stop-pending",
                                          "suspended"};
  static const char *const priv_names[] = {"U", "S", "?", "M"};
  char pc[19];
  snprintf(pc, sizeof(pc), "0x%llx", (unsigned long long)t->pc);
  return json_pack("{s:i, s:s, s:s, s:s, s:b, s:I}", "id", h, "state",
                   hsm_names[m->hsm[h] <= HSM_SUSPENDED ? m->hsm[h] : 0], "priv",
                   priv_names[t->priv & 3], "pc", pc, "wfi", t->wfi, "instret",
                   (json_int_t)t->minstret);
}

/* The NICs with the address each device offers the guest (a clone's differs from its original). */
static json_t *nics_info(vm *m) {
  json_t *nics = json_array();
  for (unsigned i = 0; i < m->cfg.nnets; i++) {
    const uint8_t *a = m->net[i]->st.mac;
    char mac[18];
    snprintf(mac, sizeof(mac), "%02x:%02x:%02x:%02x:%02x:%02x", a[0], a[1], a[2], a[3], a[4], a[5]);
    const virtio_net_state *st = &m->net[i]->st;
    json_array_append_new(nics, json_pack("{s:s, s:s, s:I, s:I, s:I, s:I}", "spec", m->cfg.nets[i],
                                          "mac", mac, "rx_frames", (json_int_t)st->rx_frames,
                                          "rx_dropped", (json_int_t)st->rx_dropped, "tx_frames",
                                          (json_int_t)st->tx_frames, "tx_dropped",
                                          (json_int_t)st->tx_dropped));
  }
  return nics;
}

static json_t *cmd_info(vm *m, const json_t *req, vs_error **err) {
  (void)req;
  (void)err;
  json_t *harts = json_array();
  /* harts on their own threads stand still while they are read */
  vm_stop_harts(m);
  for (unsigned h = 0; h < m->nharts; h++)
    json_array_append_new(harts, hart_info(m, h));
  vm_release_harts(m);
  json_t *devices = json_array();
  for (unsigned i = 0; i < m->num_regions; i++) {
    char base[19];
    snprintf(base, sizeof(base), "0x%llx", (unsigned long long)m->regions[i].base);
    json_array_append_new(devices, json_pack("{s:s, s:s, s:I}", "name", m->regions[i].name, "base",
                                             base, "size", (json_int_t)m->regions[i].size));
  }
  json_t *nics = nics_info(m);
  json_t *disks = json_array();
  for (unsigned i = 0; i < m->cfg.ndisks; i++)
    json_array_append_new(
        disks,
        json_pack("{s:s, s:I, s:b, s:I, s:I, s:I, s:I}", "spec", m->cfg.disks[i], "size",
                  (json_int_t)vm_disk_size(m->disk[i]), "readonly", vm_disk_is_readonly(m->disk[i]),
                  "requests", (json_int_t)m->blk[i]->requests, "errors",
                  (json_int_t)m->blk[i]->errors, "read_bytes", (json_int_t)m->blk[i]->read_bytes,
                  "write_bytes", (json_int_t)m->blk[i]->write_bytes));
  return json_pack("{s:s, s:o, s:{s:I, s:s}, s:o, s:o, s:o, s:I}", "state", state_name(m), "harts",
                   harts, "memory", "size", (json_int_t)m->ram_size, "base", "0x80000000",
                   "devices", devices, "disks", disks, "nics", nics, "mtime",
                   (json_int_t)vm_read_mtime(m));
}

static json_t *cmd_quit(vm *m, const json_t *req, vs_error **err) {
  (void)req;
  (void)err;
  vm_request_exit(m, VM_EXIT_QUIT, 0);
  return json_object();
}

static json_t *cmd_powerdown(vm *m, const json_t *req, vs_error **err) {
  (void)req;
  if (vm_powerdown(m, err) < 0)
    return NULL;
  return json_pack("{s:s}", "state", state_name(m));
}

static int64_t elapsed_us(const struct timespec *t0) {
  struct timespec t1;
  clock_gettime(CLOCK_MONOTONIC, &t1);
  return (t1.tv_sec - t0->tv_sec) * 1000000 + (t1.tv_nsec - t0->tv_nsec) / 1000;
}

static json_t *cmd_snapshot(vm *m, const json_t *req, vs_error **err) {
  const char *dir = NULL;
  vm_snapshot_opts o = {0};
  if (vs_json_get_string(req, "dir", true, &dir, err) < 0 ||
      vs_json_get_bool(req, "quit", false, &o.quit, err) < 0 ||
      vs_json_get_bool(req, "disk_overlay", false, &o.disk_overlay, err) < 0)
    return NULL;
  if (!*dir) {
    vs_error_set(err, 0, "snapshot: dir is empty");
    return NULL;
  }
  struct timespec t0;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  /* during a recording the snapshot is a replay point (and the disks go on in overlays) */
  if ((vm_rr_recording(m) ? vm_rr_snapshot(m, dir, &o, err) : vm_snapshot(m, dir, &o, err)) < 0)
    return NULL;
  json_t *disks = json_array();
  for (unsigned i = 0; i < m->cfg.ndisks; i++)
    json_array_append_new(disks, json_string(m->cfg.disks[i]));
  return json_pack("{s:s, s:I, s:o}", "dir", dir, "duration_us", (json_int_t)elapsed_us(&t0),
                   "disks", disks);
}

static json_t *cmd_migrate(vm *m, const json_t *req, vs_error **err) {
  const char *dest = NULL;
  if (vs_json_get_string(req, "dest", true, &dest, err) < 0)
    return NULL;
  if (vm_migrate_start(m, dest, err) < 0)
    return NULL;
  return json_pack("{s:s}", "state", state_name(m));
}

/* {"command": "balloon", "target": BYTES}: the guest's memory target (what it keeps; the rest
 * goes into the balloon; target = the RAM size empties it). Without target, only the state. Each
 * call also asks the guest for fresh statistics, which the next call returns. */
static json_t *cmd_balloon(vm *m, const json_t *req, vs_error **err) {
  virtio_balloon *b = m->balloon;
  if (!b) {
    vs_error_set(err, 0, "this machine has no balloon device (vessel-vmm --balloon)");
    return NULL;
  }
  json_t *t = json_object_get(req, "target");
  if (t) {
    if (!json_is_integer(t) || json_integer_value(t) < 0 ||
        (uint64_t)json_integer_value(t) > m->ram_size) {
      vs_error_set(err, 0,
                   "balloon: target must be a number of bytes from 0 to the RAM size (%llu)",
                   (unsigned long long)m->ram_size);
      return NULL;
    }
    uint64_t keep = (uint64_t)json_integer_value(t);
    virtio_balloon_set_target(b, (uint32_t)((m->ram_size - keep) / VIRTIO_BALLOON_PAGE_SIZE));
  }
  virtio_balloon_request_stats(b);
  json_t *stats = json_object();
  for (unsigned i = 0; i < VIRTIO_BALLOON_NUM_STATS; i++)
    if (b->stats_valid & (1u << i))
      json_object_set_new(stats, virtio_balloon_stat_name(i),
                          json_integer((json_int_t)b->stats[i]));
  const uint64_t page = VIRTIO_BALLOON_PAGE_SIZE;
  /* ready: the guest's driver runs, so a target is acted on (vesseld counts on it) */
  bool ready =
      (b->mmio.status & VIRTIO_STATUS_DRIVER_OK) && !(b->mmio.status & VIRTIO_STATUS_NEEDS_RESET);
  return json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:b, s:o}", "size", (json_int_t)m->ram_size,
                   "target", (json_int_t)(m->ram_size - (uint64_t)b->target_pages * page),
                   "balloon", (json_int_t)((uint64_t)b->actual_pages * page), "inflated",
                   (json_int_t)(b->inflated_pages * page), "deflated",
                   (json_int_t)(b->deflated_pages * page), "reported",
                   (json_int_t)b->reported_bytes, "ready", ready, "stats", stats);
}

/* recorded: allowed during a recording (--record). The others would reach the guest without
 * a record in the log (a power button press, a balloon target) or take the VM away (a
 * migration). Pausing only moves the guest's clock, which the log has. */
static const struct {
  const char *name;
  ctl_handler fn;
  bool recorded;
} ctl_commands[] = {
    {"status", cmd_status, true},     {"pause", cmd_pause, true},
    {"resume", cmd_resume, true},     {"info", cmd_info, true},
    {"quit", cmd_quit, true},         {"powerdown", cmd_powerdown, false},
    {"snapshot", cmd_snapshot, true}, {"migrate", cmd_migrate, false},
    {"balloon", cmd_balloon, false},
};

static void serve_line(vm *m, ctl_client *c, const char *line, size_t len) {
  _cleanup_error_ vs_error *err = NULL;
  json_error_t jerr;
  _cleanup_json_ json_t *req = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
  if (!req) {
    char msg[256];
    snprintf(msg, sizeof(msg), "malformed JSON: %s (column %d)", jerr.text, jerr.column);
    reply_error(c, NULL, msg);
    return;
  }
  json_t *id = json_is_object(req) ? json_object_get(req, "id") : NULL;
  const char *cmd = NULL;
  if (!json_is_object(req)) {
    reply_error(c, NULL, "a request is a JSON object");
    return;
  }
  if (vs_json_get_string(req, "command", true, &cmd, &err) < 0) {
    reply_error(c, id, err->msg);
    return;
  }
  for (size_t i = 0; i < ARRAY_SIZE(ctl_commands); i++) {
    if (strcmp(cmd, ctl_commands[i].name) != 0)
      continue;
    if (!ctl_commands[i].recorded && vm_rr_recording(m)) {
      char msg[160];
      snprintf(msg, sizeof(msg),
               "%s: not during a recording (the log would not have what it changes)", cmd);
      reply_error(c, id, msg);
      return;
    }
    json_t *result = ctl_commands[i].fn(m, req, &err);
    if (result)
      reply_ok(c, id, result);
    else
      reply_error(c, id, err ? err->msg : "failed");
    return;
  }
  char msg[160];
  snprintf(msg, sizeof(msg), "unknown command '%.64s'", cmd);
  reply_error(c, id, msg);
}

/* ------------------------------------------------------------------ connections */

static void client_read(vm *m, ctl_client *c) {
  for (;;) {
    if (c->in_len == sizeof(c->in)) {
      /* a line longer than we accept: answer once, then skip to its newline */
      if (!c->discarding)
        reply_error(c, NULL, "request line longer than 65536 bytes");
      c->discarding = true;
      c->in_len = 0;
    }
    ssize_t n = recv(c->fd, c->in + c->in_len, sizeof(c->in) - c->in_len, MSG_DONTWAIT);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
      return;
    if (n <= 0) {
      c->dead = true;
      return;
    }
    size_t start = 0, end = c->in_len + (size_t)n;
    for (size_t i = c->in_len; i < end; i++) {
      if (c->in[i] != '\n')
        continue;
      if (!c->discarding && i > start)
        serve_line(m, c, c->in + start, i - start);
      c->discarding = false;
      start = i + 1;
    }
    memmove(c->in, c->in + start, end - start);
    c->in_len = end - start;
    if (__atomic_load_n(&m->stop, __ATOMIC_ACQUIRE))
      return;
  }
}

static void client_close(vm_control *ctl, unsigned i) {
  ctl_client *c = ctl->clients[i];
  close(c->fd);
  free(c->out);
  free(c);
  ctl->clients[i] = NULL;
}

static void accept_clients(vm_control *ctl) {
  for (;;) {
    int fd = accept4(ctl->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0)
      return;
    unsigned i = 0;
    while (i < CTL_MAX_CLIENTS && ctl->clients[i])
      i++;
    if (i == CTL_MAX_CLIENTS) {
      static const char busy[] = "{\"ok\":false,\"error\":\"too many control connections\"}\n";
      if (send(fd, busy, sizeof(busy) - 1, MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
        /* it goes away either way */
      }
      close(fd);
      continue;
    }
    ctl_client *c = vs_malloc0(sizeof(*c));
    c->fd = fd;
    c->poll_idx = -1;
    ctl->clients[i] = c;
  }
}

static void control_prepare(void *opaque, vm_pollset *ps) {
  vm_control *ctl = opaque;
  ctl->listen_idx = vm_pollset_add(ps, ctl->listen_fd, POLLIN);
  for (unsigned i = 0; i < CTL_MAX_CLIENTS; i++) {
    ctl_client *c = ctl->clients[i];
    if (c)
      c->poll_idx = vm_pollset_add(ps, c->fd, (short)(POLLIN | (c->out_len ? POLLOUT : 0)));
  }
}

static void control_dispatch(void *opaque, const vm_pollset *ps) {
  vm_control *ctl = opaque;
  if (vm_pollset_revents(ps, ctl->listen_idx) & POLLIN)
    accept_clients(ctl);
  for (unsigned i = 0; i < CTL_MAX_CLIENTS; i++) {
    ctl_client *c = ctl->clients[i];
    if (!c || c->poll_idx < 0)
      continue;
    int ev = vm_pollset_revents(ps, c->poll_idx);
    if (ev & (POLLIN | POLLHUP | POLLERR))
      client_read(ctl->m, c);
    if (c->out_len)
      client_flush(c);
    if (c->dead)
      client_close(ctl, i);
  }
}

/* The machine's own events (paused, resumed) go to every client. */
static void control_hook_event(void *opaque, const char *event) {
  const vm_control *ctl = opaque;
  vm_control_event(ctl->m, event, NULL);
}

static void control_close(void *opaque);

int vm_control_listen(vm *m, const char *path, vs_error **err) {
  if (m->control)
    return vs_error_set(err, EBUSY, "the control socket is already open");
  if (vs_unix_remove_stale(path, err) < 0)
    return -1;
  int fd = vs_unix_listen(path, 0600, err);
  if (fd < 0)
    return -1;
  if (fcntl(fd, F_SETFL, O_NONBLOCK) < 0) {
    close(fd);
    unlink(path);
    return vs_error_set(err, errno, "control socket %s", path);
  }
  vm_control *ctl = vs_malloc0(sizeof(*ctl));
  ctl->m = m;
  ctl->path = vs_strdup(path);
  ctl->listen_fd = fd;
  vm_io_source src = {"control", control_prepare, control_dispatch, ctl};
  vm_hooks hooks = {"control", control_hook_event, control_close, control_close, ctl};
  if (vm_add_io_source(m, &src, err) < 0 || vm_add_hooks(m, &hooks, err) < 0) {
    vm_remove_io_source(m, ctl);
    close(fd);
    unlink(path);
    free(ctl->path);
    free(ctl);
    return -1;
  }
  m->control = ctl;
  return 0;
}

static const char *exit_event_name(vm_exit_reason r) {
  switch (r) {
  case VM_EXIT_POWEROFF:
    return "powered-off";
  case VM_EXIT_RESET:
    return "reset";
  case VM_EXIT_FAIL:
    return "failed";
  case VM_EXIT_QUIT:
    return "quit";
  case VM_EXIT_MIGRATED:
    return "migrated";
  }
  return "stopped";
}

/* Give each client a moment to take its last replies and the exit event. */
static void flush_before_close(vm_control *ctl) {
  struct timespec t0;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (unsigned i = 0; i < CTL_MAX_CLIENTS; i++) {
    ctl_client *c = ctl->clients[i];
    while (c && c->out_len && !c->dead && elapsed_us(&t0) < (int64_t)CTL_SHUTDOWN_FLUSH_MS * 1000) {
      struct pollfd p = {.fd = c->fd, .events = POLLOUT};
      if (poll(&p, 1, 100) > 0)
        client_flush(c);
    }
  }
}

/* The run loop ended (or the VM goes away): tell the clients why, flush and close the socket. */
static void control_close(void *opaque) {
  vm_control *ctl = opaque;
  vm *m = ctl->m;
  vm_remove_hooks(m, ctl);
  vm_remove_io_source(m, ctl);
  if (__atomic_load_n(&m->stop, __ATOMIC_ACQUIRE))
    vm_control_event(m, exit_event_name(m->exit_reason), NULL);
  flush_before_close(ctl);
  for (unsigned i = 0; i < CTL_MAX_CLIENTS; i++)
    if (ctl->clients[i])
      client_close(ctl, i);
  close(ctl->listen_fd);
  unlink(ctl->path);
  free(ctl->path);
  free(ctl);
  m->control = NULL;
}

/* ------------------------------------------------------------------ the client side */

static bool event_in(const json_t *msg, const char *const *names) {
  const char *ev = json_string_value(json_object_get(msg, "event"));
  for (size_t i = 0; ev && names && names[i]; i++)
    if (strcmp(ev, names[i]) == 0)
      return true;
  return false;
}

int vm_control_call(const char *path, json_t *req, const char *const *until_events, json_t **reply,
                    json_t **event, vs_error **err) {
  *reply = NULL;
  if (event)
    *event = NULL;
  _cleanup_close_ int fd = vs_unix_connect(path, err);
  if (fd < 0)
    return -1;
  char *text = json_dumps(req, JSON_COMPACT);
  size_t n = strlen(text);
  text = vs_realloc(text, n + 2);
  text[n] = '\n';
  int rc = vs_write_all(fd, text, n + 1, err);
  free(text);
  if (rc < 0)
    return vs_error_wrap(err, "send to %s", path);
  _cleanup_fclose_ FILE *f = fdopen(steal_fd(&fd), "r");
  if (!f)
    return vs_error_set(err, errno, "read from %s", path);
  _cleanup_free_ char *line = NULL;
  size_t cap = 0;
  ssize_t len;
  while ((len = getline(&line, &cap, f)) > 0) {
    json_t *msg = json_loadb(line, (size_t)len, 0, NULL);
    if (!json_is_object(msg)) {
      json_decref(msg);
      continue;
    }
    if (!json_object_get(msg, "event")) {
      if (*reply) {
        json_decref(msg);
        continue;
      }
      *reply = msg;
      if (!until_events || !json_is_true(json_object_get(msg, "ok")))
        return 0;
      continue;
    }
    if (*reply && event && event_in(msg, until_events)) {
      *event = msg;
      return 0;
    }
    json_decref(msg);
  }
  if (*reply)
    return 0; /* the VMM went away after replying (quit, migrated): no event to wait for */
  return vs_error_set(err, 0, "%s closed the connection without a reply", path);
}
