/* Live migration of the cluster's guests from node to node, and drain (docs/cluster.md).
 *
 * A migration is a small state machine kept in the guest's record, under "Migration", so the
 * three parties (the node that took the request, the source, the target) need no connection of
 * their own: each acts on the phases that concern it when the guests' watch wakes this node's
 * migrator, and every write is a compare-and-swap on the record's revision.
 *
 *   requested  any node (the API, drain)  From, To, Id, Expires
 *   offered    the source                 the VM's Config and disk paths: it runs here
 *   ready      the target                 Address: an incoming VMM listens there, to wait paused
 *   sent       the source                 its VMM sent everything, was acknowledged and ended;
 *                                         the console's history is in the shared directory
 *   done       the target                 the record's Node is the target: its VMM runs the guest
 *   failed     whoever found it           Reason, Code; the guest runs on the source as before,
 *                                         unless the failure came after sent (Reason says so)
 *
 * The guest runs in one VMM at a time: the target's VMM takes the stream paused (--paused) and
 * is resumed only once the source's VMM has acknowledged the end and exited. Disks and the
 * console's history move through the directory every node shares (--cluster-shared-dir).
 */
#include "daemon/internal.h"
#include "daemon/vms.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define GUESTS "/vessel/guests/"
#define MIGRATE_WAIT_S 900      /* a request waits this long for the outcome */
#define MIGRATE_EXPIRES_S 900   /* a migration not sent by then is abandoned */
#define SEND_TIMEOUT_MS 600000  /* the source VMM's transfer, acknowledgement included */
#define ARRIVE_TIMEOUT_MS 60000 /* the target VMM's control socket after the ack */
#define EXIT_TIMEOUT_MS 60000   /* the source VMM's exit after the ack */
#define CTL_LINE_MAX 65536
#define MOVE_WAIT_S 300 /* a drain waits this long for a moved container to be made again */

static const char *str(const json_t *o, const char *f) {
  return json_string_value(json_object_get(o, f));
}

static bool str_is(const json_t *o, const char *f, const char *want) {
  const char *v = str(o, f);
  return v && want && !strcmp(v, want);
}

static bool mig_final(const json_t *mig) {
  return str_is(mig, "Phase", "done") || str_is(mig, "Phase", "failed");
}

/* A migration still under way: not finished, and sent or not yet expired (once sent, the guest
 * is in the target's VMM alone: that one must not be abandoned). */
static bool mig_in_progress(const json_t *rec) {
  json_t *mig = json_object_get(rec, "Migration");
  if (!json_is_object(mig) || !str(mig, "Phase") || mig_final(mig))
    return false;
  return str_is(mig, "Phase", "sent") ||
         json_integer_value(json_object_get(mig, "Expires")) > (json_int_t)time(NULL);
}

/* An ID as vd_random_id makes them: it names files in the shared directory. */
static bool id_valid(const char *id) {
  if (!id || strlen(id) != 64)
    return false;
  for (const char *p = id; *p; p++)
    if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
      return false;
  return true;
}

bool vd_cluster_owns_disk_dir(const vd_cluster *cl, const char *dir) {
  if (!cl->shared_dir || !dir)
    return false;
  size_t n = strlen(cl->shared_dir);
  if (strncmp(dir, cl->shared_dir, n) != 0 || strncmp(dir + n, "/disks/", 7) != 0)
    return false;
  const char *leaf = dir + n + 7;
  if (strlen(leaf) != 16)
    return false;
  for (const char *p = leaf; *p; p++)
    if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
      return false;
  return true;
}

/* The disk paths of an offer (from etcd: checked): the directory one of the shared
 * directory's, the disk in it. */
static bool offer_paths_valid(const vd_cluster *cl, const json_t *offer) {
  const char *ddir = str(offer, "DiskDir"), *disk = str(offer, "DiskPath");
  if (!ddir)
    return !disk || !*disk;
  size_t n = strlen(ddir);
  return vd_cluster_owns_disk_dir(cl, ddir) &&
         (!disk || (!strncmp(disk, ddir, n) && disk[n] == '/' && !strstr(disk, "/..")));
}

bool vd_cluster_migration_in_progress(const json_t *rec) { return mig_in_progress(rec); }

bool vd_cluster_migrating_to(const json_t *rec, const char *node) {
  return mig_in_progress(rec) && str_is(json_object_get(rec, "Migration"), "To", node);
}

/* ------------------------------------------------------------- record updates */

typedef struct mig_update {
  json_t *rec_fields; /* set in the record (may be NULL) */
  json_t *mig_fields; /* set in its Migration */
} mig_update;

/* Apply u to the record of name while its migration is still id: compare-and-swap, read again
 * on a conflict. 1: written; 0: the record or that migration is gone; -1: etcd failed. */
static int update_migration(vd_cluster *cl, const char *name, const char *id, const mig_update *u,
                            vs_error **err) {
  for (int attempt = 0; attempt < 50; attempt++) {
    int64_t rev;
    vs_error *e = NULL;
    json_t *rec = vd_guest_record_get(cl, name, &rev, &e);
    if (!rec) {
      if (!e)
        return 0;
      *err = e;
      return -1;
    }
    json_t *mig = json_object_get(rec, "Migration");
    if (!json_is_object(mig) || !str_is(mig, "Id", id)) {
      json_decref(rec);
      return 0;
    }
    if (u->rec_fields)
      json_object_update(rec, u->rec_fields);
    json_object_update(mig, u->mig_fields);
    bool ok = false;
    int r = vd_guest_record_put(cl, name, rec, rev, &ok, err);
    json_decref(rec);
    if (r < 0)
      return -1;
    if (ok)
      return 1;
  }
  return vs_error_set(err, EAGAIN, "VM %s: 50 conflicting writes in a row", name);
}

static void set_phase(vd_cluster *cl, const char *name, const char *id, json_t *rec_fields,
                      json_t *mig_fields) {
  mig_update u = {rec_fields, mig_fields};
  vs_error *e = NULL;
  if (update_migration(cl, name, id, &u, &e) < 0) {
    vs_log_warn("cluster: migration of %s: recording phase %s: %s", name, str(mig_fields, "Phase"),
                e->msg);
    vs_error_free(e);
  }
  if (rec_fields)
    json_decref(rec_fields);
  json_decref(mig_fields);
}

/* The migration failed: code is what the request answers (409: it could not begin; 500). */
static void fail_migration(vd_cluster *cl, const char *name, const char *id, int code,
                           const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static void fail_migration(vd_cluster *cl, const char *name, const char *id, int code,
                           const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *reason = NULL;
  if (vasprintf(&reason, fmt, ap) < 0)
    reason = NULL;
  va_end(ap);
  vs_log_warn("cluster: migration of %s failed: %s", name, reason ? reason : "?");
  char *now = vd_now();
  set_phase(cl, name, id, NULL,
            json_pack("{s:s, s:s, s:i, s:s}", "Phase", "failed", "Reason",
                      reason ? reason : "out of memory", "Code", code, "Finished", now));
  free(now);
  free(reason);
}

/* ------------------------------------------------------------- files */

static char *history_path(const vd_cluster *cl, const char *name, const char *id) {
  return vs_asprintf("%s/migrations/%s.%.16s.console", cl->shared_dir, name, id);
}

/* Copy what is in from onto the end of to (to is created when missing). */
static int append_file(const char *from, const char *to, bool create, vs_error **err) {
  _cleanup_close_ int in = open(from, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (in < 0)
    return vs_error_set(err, errno, "open %s", from);
  int flags = O_WRONLY | O_APPEND | O_CLOEXEC | O_NOFOLLOW | (create ? O_CREAT | O_TRUNC : 0);
  _cleanup_close_ int out = open(to, flags, 0600);
  if (out < 0)
    return vs_error_set(err, errno, "open %s", to);
  char buf[65536];
  for (;;) {
    ssize_t n = read(in, buf, sizeof(buf));
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return vs_error_set(err, errno, "read %s", from);
    if (n == 0)
      break;
    if (vs_write_all(out, buf, (size_t)n, err) < 0)
      return vs_error_wrap(err, "write %s", to);
  }
  if (fsync(out) < 0) /* the other node reads it next: it must be on the shared storage */
    return vs_error_set(err, errno, "fsync %s", to);
  return 0;
}

/* A listening TCP socket on this node's advertised address, on a port the kernel picks: made
 * here so the port is known (and accepting) before the VMM that inherits it runs. */
int vd_cluster_listen_advertised(const char *host, char **address, vs_error **err) {
  struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
  struct addrinfo *ai = NULL;
  int rc = getaddrinfo(host, "0", &hints, &ai);
  if (rc)
    return vs_error_set(err, EINVAL, "resolve --advertise %s: %s", host, gai_strerror(rc));
  int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_storage sa;
  socklen_t len = sizeof(sa);
  if (fd < 0 || bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 1) < 0 ||
      getsockname(fd, (struct sockaddr *)&sa, &len) < 0) {
    vs_error_set(err, errno, "listen on %s", host);
    if (fd >= 0)
      close(fd);
    freeaddrinfo(ai);
    return -1;
  }
  char h[NI_MAXHOST], p[NI_MAXSERV];
  rc = getnameinfo((struct sockaddr *)&sa, len, h, sizeof(h), p, sizeof(p),
                   NI_NUMERICHOST | NI_NUMERICSERV);
  freeaddrinfo(ai);
  if (rc) {
    close(fd);
    return vs_error_set(err, EINVAL, "the listening socket's address: %s", gai_strerror(rc));
  }
  *address = strchr(h, ':') ? vs_asprintf("[%s]:%s", h, p) : vs_asprintf("%s:%s", h, p);
  return fd;
}

/* ------------------------------------------------------------- the source */

/* Claim this node's VM of the cluster named name; NULL with *busy when another request holds
 * it (the next pass tries again). */
static vd_vm *claim_cluster_vm(vd_daemon *d, const char *name, bool *busy) {
  vs_error *e = NULL;
  vd_vm *vm = vd_vm_claim_name(d->vms, name, &e);
  *busy = !vm && e->errnum == EBUSY;
  vs_error_free(e);
  if (vm && (strcmp(vm->name, name) != 0 || !json_object_get(vm->rec, "Cluster"))) {
    vd_vm_release(d->vms, vm);
    vm = NULL;
  }
  return vm;
}

/* The names of the VM's snapshots, ", "-separated ("" when it has none). */
static char *snapshot_names(const vd_vm *vm, size_t *n) {
  _cleanup_free_ char *p = vs_asprintf("%s/snapshots", vm->dir);
  char *names = vs_strdup("");
  *n = 0;
  DIR *dir = opendir(p);
  if (!dir)
    return names;
  struct dirent *de;
  while ((de = readdir(dir)))
    if (de->d_name[0] != '.') {
      char *next = vs_asprintf("%s%s%s", names, (*n)++ ? ", " : "", de->d_name);
      free(names);
      names = next;
    }
  closedir(dir);
  return names;
}

static void source_offer(vd_daemon *d, const char *name, const json_t *mig) {
  vd_cluster *cl = &d->cluster;
  const char *id = str(mig, "Id");
  bool busy;
  vd_vm *vm = claim_cluster_vm(d, name, &busy);
  if (!vm) {
    if (!busy)
      fail_migration(cl, name, id, 409, "node %s has no VM %s of the cluster", cl->node_name, name);
    return;
  }
  const char *disk = str(vm->rec, "DiskPath");
  const char *ddir = str(vm->rec, "DiskDir");
  size_t n_snaps = 0;
  _cleanup_free_ char *snaps = snapshot_names(vm, &n_snaps);
  if (!vd_vm_running(d->vms, vm))
    fail_migration(cl, name, id, 409, "VM %s is not running on node %s", name, cl->node_name);
  else if (!cl->shared_dir)
    fail_migration(cl, name, id, 409,
                   "node %s has no --cluster-shared-dir: the disks and the console's history "
                   "move through storage every node sees",
                   cl->node_name);
  else if (disk && *disk && !ddir)
    fail_migration(cl, name, id, 409,
                   "VM %s keeps its disk %s in node %s's own data root (it was made before "
                   "--cluster-shared-dir): it cannot move",
                   name, disk, cl->node_name);
  else if (n_snaps)
    /* a snapshot's saved RAM and devices are in this node's data root, and a restore on the
     * target would need them: the VM stays rather than leave them behind */
    fail_migration(cl, name, id, 409,
                   "VM %s has %zu snapshot%s (%s) kept in node %s's data root, which do not "
                   "move with it: a VM with snapshots stays on its node",
                   name, n_snaps, n_snaps == 1 ? "" : "s", snaps, cl->node_name);
  else {
    /* VmId: the VM keeps its ID on the target */
    json_t *offer =
        json_pack("{s:O, s:s}", "Config", json_object_get(vm->rec, "Config"), "VmId", vm->id);
    static const char *const fields[] = {"Disk", "DiskPath", "DiskDir"};
    for (size_t i = 0; i < ARRAY_SIZE(fields); i++)
      if (json_object_get(vm->rec, fields[i]))
        json_object_set(offer, fields[i], json_object_get(vm->rec, fields[i]));
    vs_log_info("cluster: migration of %s to %s: offered", name, str(mig, "To"));
    set_phase(cl, name, id, NULL, json_pack("{s:s, s:o}", "Phase", "offered", "Vm", offer));
  }
  vd_vm_release(d->vms, vm);
}

/* One line from the VMM's control socket into *msg; 0 at its end. */
static int ctl_read_line(int fd, char *buf, size_t *len, int64_t deadline_ms, json_t **msg,
                         vs_error **err) {
  for (;;) {
    char *nl = *len ? memchr(buf, '\n', *len) : NULL;
    if (nl) {
      *msg = json_loadb(buf, (size_t)(nl - buf), 0, NULL);
      size_t used = (size_t)(nl - buf) + 1;
      memmove(buf, buf + used, *len - used);
      *len -= used;
      if (json_is_object(*msg))
        return 1;
      json_decref(*msg);
      continue;
    }
    if (*len == CTL_LINE_MAX)
      return vs_error_set(err, EPROTO, "a line of the VMM's control socket is too long");
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    int64_t left = deadline_ms - (now.tv_sec * 1000 + now.tv_nsec / 1000000);
    if (left <= 0)
      return vs_error_set(err, ETIMEDOUT, "no outcome within %d s", SEND_TIMEOUT_MS / 1000);
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int r = poll(&p, 1, left > 1000 ? 1000 : (int)left);
    if (r < 0 && errno != EINTR)
      return vs_error_set(err, errno, "poll the VMM's control socket");
    if (r <= 0)
      continue;
    ssize_t n = read(fd, buf + *len, CTL_LINE_MAX - *len);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return vs_error_set(err, errno, "read the VMM's control socket");
    if (n == 0)
      return 0;
    *len += (size_t)n;
  }
}

/* Ask the VMM to migrate to dest and wait for the outcome: 0 with *done the
 * migration-completed event, or an error (the VMM then runs the guest on, as before). */
static int vmm_migrate(const vd_vm *vm, const char *dest, json_t **done, vs_error **err) {
  *done = NULL;
  _cleanup_close_ int fd = vd_vm_ctl_connect(vm, err);
  if (fd < 0)
    return vs_error_wrap(err, "the VM's control socket");
  json_t *req = json_pack("{s:s, s:s}", "command", "migrate", "dest", dest);
  _cleanup_free_ char *line = json_dumps(req, JSON_COMPACT);
  json_decref(req);
  if (vs_write_all(fd, line, strlen(line), err) < 0 || vs_write_all(fd, "\n", 1, err) < 0)
    return vs_error_wrap(err, "the VM's control socket");
  struct timespec t0;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  int64_t deadline = t0.tv_sec * 1000 + t0.tv_nsec / 1000000 + SEND_TIMEOUT_MS;
  _cleanup_free_ char *buf = vs_malloc0(CTL_LINE_MAX);
  size_t len = 0;
  for (;;) {
    json_t *msg = NULL;
    int r = ctl_read_line(fd, buf, &len, deadline, &msg, err);
    if (r < 0)
      return -1;
    if (r == 0)
      return vs_error_set(err, EPIPE, "the VMM ended before the migration's outcome");
    const char *ev = str(msg, "event");
    json_t *ok = json_object_get(msg, "ok");
    if (ok && !json_is_true(ok)) {
      vs_error_set(err, 0, "%s", str(msg, "error") ? str(msg, "error") : "refused");
      json_decref(msg);
      return -1;
    }
    if (ev && !strcmp(ev, "migration-completed")) {
      *done = msg;
      return 0;
    }
    if (ev && !strcmp(ev, "migration-failed")) {
      vs_error_set(err, 0, "%s", str(msg, "error") ? str(msg, "error") : "no reason given");
      json_decref(msg);
      return -1;
    }
    json_decref(msg);
  }
}

static void set_migrating_locked(vd_vm *vm, json_t *flag) {
  if (flag)
    json_object_set_new(vm->rec, "Migrating", flag);
  else
    json_object_del(vm->rec, "Migrating");
  vs_error *e = NULL;
  if (vd_vm_save(vm, &e) < 0) {
    vs_log_warn("vm %s: %s", vm->name, e->msg);
    vs_error_free(e);
  }
}

static void source_send(vd_daemon *d, const char *name, const json_t *mig) {
  vd_cluster *cl = &d->cluster;
  vd_vms *t = d->vms;
  const char *id = str(mig, "Id"), *to = str(mig, "To"), *dest = str(mig, "Address");
  bool busy;
  vd_vm *vm = claim_cluster_vm(d, name, &busy);
  if (!vm) {
    if (!busy)
      fail_migration(cl, name, id, 409, "node %s no longer has VM %s", cl->node_name, name);
    return;
  }
  if (!dest || !vd_vm_running(t, vm)) {
    vd_vm_release(t, vm);
    fail_migration(cl, name, id, 409, "VM %s stopped on node %s before the transfer", name,
                   cl->node_name);
    return;
  }
  /* from now on neither a restart policy nor a start may run the guest here again */
  pthread_mutex_lock(&t->lock);
  set_migrating_locked(vm, json_pack("{s:s, s:s}", "To", to, "Id", id));
  vm->stopping = true;
  pthread_mutex_unlock(&t->lock);
  vs_log_info("cluster: migration of %s to %s: sending to %s", name, to, dest);
  json_t *done = NULL;
  vs_error *e = NULL;
  if (vmm_migrate(vm, dest, &done, &e) < 0) {
    pthread_mutex_lock(&t->lock);
    set_migrating_locked(vm, NULL);
    vm->stopping = false;
    pthread_mutex_unlock(&t->lock);
    vd_vm_release(t, vm);
    fail_migration(cl, name, id, 500, "the transfer from %s to %s: %s (VM %s runs on %s as before)",
                   cl->node_name, to, e->msg, name, cl->node_name);
    vs_error_free(e);
    return;
  }
  /* acknowledged: the target holds the guest, paused; this VMM ends by itself */
  if (!vd_vm_wait_stopped(t, vm, EXIT_TIMEOUT_MS)) {
    vd_vm_kill(t, vm, SIGKILL);
    vd_vm_wait_stopped(t, vm, 10000);
  }
  _cleanup_free_ char *dir = vs_asprintf("%s/migrations", cl->shared_dir);
  _cleanup_free_ char *history = history_path(cl, name, id);
  _cleanup_free_ char *log = vs_asprintf("%s/console.log", vm->dir);
  if (vs_mkdir_p(dir, 0700, &e) < 0 || append_file(log, history, true, &e) < 0) {
    /* the guest goes on there all the same: only the history before the move is missing */
    vs_log_warn("cluster: migration of %s: the console's history: %s", name, e->msg);
    vs_error_free(e);
    e = NULL;
  }
  vd_vm_release(t, vm);
  vs_log_info("cluster: migration of %s to %s: sent (%lld ms in all, the guest stopped for %lld "
              "us, %lld rounds, %lld bytes)",
              name, to, (long long)json_integer_value(json_object_get(done, "total_ms")),
              (long long)json_integer_value(json_object_get(done, "downtime_us")),
              (long long)json_integer_value(json_object_get(done, "rounds")),
              (long long)json_integer_value(json_object_get(done, "bytes")));
  set_phase(cl, name, id, NULL,
            json_pack("{s:s, s:O?, s:O?, s:O?, s:O?}", "Phase", "sent", "TotalMs",
                      json_object_get(done, "total_ms"), "DowntimeUs",
                      json_object_get(done, "downtime_us"), "Rounds",
                      json_object_get(done, "rounds"), "Bytes", json_object_get(done, "bytes")));
  json_decref(done);
}

/* ------------------------------------------------------------- the target */

static void target_prepare(vd_daemon *d, const char *name, const json_t *mig) {
  vd_cluster *cl = &d->cluster;
  vd_vms *t = d->vms;
  const char *id = str(mig, "Id");
  json_t *offer = json_object_get(mig, "Vm");
  if (!cl->shared_dir) {
    fail_migration(cl, name, id, 409,
                   "node %s has no --cluster-shared-dir: the disks and the console's history "
                   "move through storage every node sees",
                   cl->node_name);
    return;
  }
  if (!json_is_object(json_object_get(offer, "Config")) || !offer_paths_valid(cl, offer)) {
    fail_migration(cl, name, id, 500,
                   "the source's offer has no Config, or disk paths outside the shared "
                   "directory %s/disks",
                   cl->shared_dir);
    return;
  }
  pthread_mutex_lock(&t->lock);
  vd_vm *other = vd_vm_find_locked(t, name);
  bool ours = other && !strcmp(other->name, name) &&
              str_is(json_object_get(other->rec, "Migrating"), "Id", id);
  bool taken = other && !strcmp(other->name, name) && !ours;
  pthread_mutex_unlock(&t->lock);
  if (ours)
    return; /* made by an earlier pass whose write did not land: the expiry ends it */
  if (taken) {
    fail_migration(cl, name, id, 409, "node %s already has a VM named %s", cl->node_name, name);
    return;
  }
  json_t *rec =
      json_pack("{s:O, s:{s:s}, s:{s:s, s:s}}", "Config", json_object_get(offer, "Config"),
                "Cluster", "Node", cl->node_name, "Migrating", "From", str(mig, "From"), "Id", id);
  static const char *const fields[] = {"Disk", "DiskPath", "DiskDir"};
  for (size_t i = 0; i < ARRAY_SIZE(fields); i++)
    if (json_object_get(offer, fields[i]))
      json_object_set(rec, fields[i], json_object_get(offer, fields[i]));
  vs_error *e = NULL;
  /* the VM keeps its ID (a source that did not say it: a new one) */
  const char *vm_id_wanted = str(offer, "VmId");
  vd_vm *vm = vd_vm_create_with_id(d, name, vm_id_wanted, rec, &e); /* takes rec */
  if (vm && vd_vm_net_attach(d, vm, &e) < 0) {
    vd_vm_discard(vm);
    vm = NULL;
  } else if (vm && vd_vm_commit(d, vm, &e) < 0) {
    vd_vm_net_detach(d, vm);
    vd_vm_discard(vm);
    vm = NULL;
  }
  if (!vm) {
    fail_migration(cl, name, id, e->errnum == EEXIST || e->errnum == EBUSY ? 409 : 500,
                   "node %s cannot take VM %s: %s", cl->node_name, name, e->msg);
    vs_error_free(e);
    return;
  }
  char *address = NULL;
  int lfd = vd_cluster_listen_advertised(cl->advertise, &address, &e);
  if (lfd < 0 || vd_vm_start_incoming(d, vm, lfd, &e) < 0) {
    if (lfd >= 0)
      close(lfd);
    free(address);
    vs_error *e2 = NULL;
    if (vd_vm_remove(d, vm, true, &e2) < 0) {
      vd_vm_release(t, vm);
      vs_error_free(e2);
    }
    fail_migration(cl, name, id, 500, "node %s cannot receive VM %s: %s", cl->node_name, name,
                   e->msg);
    vs_error_free(e);
    return;
  }
  close(lfd); /* the VMM has its own copy */
  vs_log_info("cluster: migration of %s from %s: waiting on %s", name, str(mig, "From"), address);
  char vm_id[65];
  memcpy(vm_id, vm->id, sizeof(vm_id));
  vd_vm_release(t, vm);
  set_phase(cl, name, id, NULL,
            json_pack("{s:s, s:s, s:s}", "Phase", "ready", "Address", address, "TargetId", vm_id));
  free(address);
}

/* Until the VMM serves its control socket (it has the guest) or ends; whether it serves it. */
static bool wait_arrived(vd_vms *t, const vd_vm *vm) {
  for (int waited = 0; waited < ARRIVE_TIMEOUT_MS; waited += 50) {
    vs_error *e = NULL;
    int fd = vd_vm_ctl_connect(vm, &e);
    vs_error_free(e);
    if (fd >= 0) {
      close(fd);
      return true;
    }
    if (!vd_vm_running(t, vm))
      return false;
    usleep(50000);
  }
  return false;
}

static void target_finish(vd_daemon *d, const char *name, const json_t *mig) {
  vd_cluster *cl = &d->cluster;
  vd_vms *t = d->vms;
  const char *id = str(mig, "Id");
  bool busy;
  vd_vm *vm = claim_cluster_vm(d, name, &busy);
  if (!vm) {
    if (!busy)
      fail_migration(cl, name, id, 500,
                     "VM %s was sent to node %s, which no longer has its VMM: the guest is lost",
                     name, cl->node_name);
    return;
  }
  vs_error *e = NULL;
  bool arriving = str_is(json_object_get(vm->rec, "Migrating"), "Id", id);
  if (arriving) {
    if (!wait_arrived(t, vm)) {
      vd_vm_release(t, vm);
      fail_migration(cl, name, id, 500,
                     "VM %s was sent, but the VMM of node %s did not take it (see its vmm.log): "
                     "the guest is lost",
                     name, cl->node_name);
      return;
    }
    /* the history before the move, then resume: what the guest writes next comes after it */
    _cleanup_free_ char *history = history_path(cl, name, id);
    _cleanup_free_ char *log = vs_asprintf("%s/console.log", vm->dir);
    if (append_file(history, log, false, &e) < 0) {
      vs_log_warn("cluster: migration of %s: the console's history: %s", name, e->msg);
      vs_error_free(e);
      e = NULL;
    }
    unlink(history);
    if (vd_vm_ctl_simple(vm, "resume", &e) < 0) {
      vd_vm_release(t, vm);
      fail_migration(cl, name, id, 500, "VM %s arrived on node %s but does not resume: %s", name,
                     cl->node_name, e->msg);
      vs_error_free(e);
      return;
    }
    pthread_mutex_lock(&t->lock);
    vm->paused = false;
    set_migrating_locked(vm, NULL);
    pthread_mutex_unlock(&t->lock);
  }
  json_t *inspect = vd_vm_inspect(t, vm);
  char vm_id[65];
  memcpy(vm_id, vm->id, sizeof(vm_id));
  vd_vm_release(t, vm);
  char *now = vd_now();
  vs_log_info("cluster: migration of %s from %s: done, it runs here", name, str(mig, "From"));
  set_phase(cl, name, id,
            json_pack("{s:s, s:s, s:s}", "Node", cl->node_name, "Id", vm_id, "Phase", "running"),
            json_pack("{s:s, s:s, s:o}", "Phase", "done", "Finished", now, "Inspect", inspect));
  free(now);
  vd_event_emit(
      d, "vm", "migrate", vm_id,
      json_pack("{s:s, s:s, s:s}", "name", name, "from", str(mig, "From"), "to", cl->node_name));
}

/* ------------------------------------------------------------- the migrator */

/* A VM this node sent away whose migration failed after all: it may be started here again. */
static void source_settle(vd_daemon *d, json_t *by_name) {
  vd_cluster *cl = &d->cluster;
  vd_vms *t = d->vms;
  pthread_mutex_lock(&t->lock);
  for (size_t i = 0; i < t->n; i++) {
    vd_vm *vm = t->vms[i];
    json_t *flag = json_object_get(vm->rec, "Migrating");
    json_t *rec = json_object_get(by_name, vm->name);
    if (!str(flag, "To") || vm->busy || vm->pid > 0 || !rec || !str_is(rec, "Node", cl->node_name))
      continue;
    json_t *mig = json_object_get(rec, "Migration");
    if (str_is(mig, "Id", str(flag, "Id")) && mig_in_progress(rec))
      continue;
    vs_log_info("cluster: VM %s stays on this node (its migration did not finish)", vm->name);
    set_migrating_locked(vm, NULL);
  }
  pthread_mutex_unlock(&t->lock);
}

/* One pass over every record: the steps of the migrations this node takes part in. */
static int migrate_pass(vd_daemon *d, vs_error **err) {
  vd_cluster *cl = &d->cluster;
  vc_range r;
  if (vc_etcd_get_prefix(cl->etcd, GUESTS, 0, &r, err) < 0)
    return -1;
  json_t *by_name = json_object();
  for (size_t i = 0; i < r.n; i++) {
    json_t *rec = vd_guest_record_of(&r.kvs[i]);
    const char *name = rec ? str(rec, "Name") : NULL;
    if (name && vd_vm_name_valid(name))
      json_object_set(by_name, name, rec);
    if (rec)
      json_decref(rec);
  }
  vc_range_clear(&r);
  const char *name;
  json_t *rec;
  json_object_foreach(by_name, name, rec) {
    json_t *mig = json_object_get(rec, "Migration");
    const char *phase = str(mig, "Phase"), *id = str(mig, "Id");
    bool from_me = str_is(mig, "From", cl->node_name), to_me = str_is(mig, "To", cl->node_name);
    if (!phase || !id_valid(id) || !str(mig, "From") || !str(mig, "To") || mig_final(mig) ||
        !(from_me || to_me))
      continue;
    if (!mig_in_progress(rec)) { /* expired before it was sent */
      fail_migration(cl, name, id, 500, "abandoned: not sent within %d s (phase %s)",
                     MIGRATE_EXPIRES_S, phase);
      continue;
    }
    if (from_me && !strcmp(phase, "requested"))
      source_offer(d, name, mig);
    else if (to_me && !strcmp(phase, "offered"))
      target_prepare(d, name, mig);
    else if (from_me && !strcmp(phase, "ready"))
      source_send(d, name, mig);
    else if (to_me && !strcmp(phase, "sent"))
      target_finish(d, name, mig);
  }
  source_settle(d, by_name);
  json_decref(by_name);
  return 0;
}

static void *migrator_thread(void *arg) {
  vd_daemon *d = arg;
  vd_cluster *cl = &d->cluster;
  while (!cl->stop) {
    vs_error *e = NULL;
    if (migrate_pass(d, &e) < 0) {
      vs_log_warn("cluster: migrations: %s", e->msg);
      vs_error_free(e);
    }
    struct timespec until = vs_realtime_after_ms(2000);
    pthread_mutex_lock(&cl->lock);
    while (!cl->migrate_dirty && !cl->stop)
      if (pthread_cond_timedwait(&cl->guests_cond, &cl->lock, &until) != 0)
        break;
    cl->migrate_dirty = false;
    pthread_mutex_unlock(&cl->lock);
  }
  return NULL;
}

int vd_cluster_start_migrator(vd_daemon *d, vs_error **err) {
  vd_cluster *cl = &d->cluster;
  return vd_cluster_thread_start(d, &cl->migrator, migrator_thread, "the migrator", err);
}

json_t *vd_cluster_guest_extra(const vd_cluster *cl, const json_t *rec, vs_error **err) {
  const char *name = str(rec, "Name"), *dir = str(rec, "DiskDir");
  /* the record comes from etcd and this directory is removed with the guest: only one of this
   * node's shared directory's disks/ is taken */
  if (dir && !vd_cluster_owns_disk_dir(cl, dir))
    return vs_error_set(err, EINVAL,
                        "VM %s: its disk is in %s, not in a directory of this node's "
                        "--cluster-shared-dir %s/disks",
                        name ? name : "?", dir, cl->shared_dir ? cl->shared_dir : "(none)"),
           NULL;
  json_t *extra = json_pack("{s:{s:s}}", "Cluster", "Node", cl->node_name);
  /* a guest made before on some node (a failover, or made again here) keeps its VM's ID, as a
   * migrated one does; the create refuses one that is malformed or this node has already */
  if (str(rec, "Id"))
    json_object_set_new(extra, "VmId", json_string(str(rec, "Id")));
  if (dir) {
    /* made before on some node (a failover): its disk is on the shared storage already */
    json_object_set_new(extra, "DiskDir", json_string(dir));
    json_object_set_new(extra, "DiskAdopt", json_true());
  } else if (cl->shared_dir) {
    /* a directory of its own that a later guest of the same name cannot reuse by mistake */
    _cleanup_free_ char *rnd = vd_random_id();
    json_object_set_new(extra, "DiskDir", json_sprintf("%s/disks/%.16s", cl->shared_dir, rnd));
  }
  return extra;
}

/* ------------------------------------------------------------- requests */

/* The guests the placement sees beside the one that moves: each where it is, and one under
 * migration also where it goes (it holds room on both until it is done). */
static json_t *guests_but(vd_cluster *cl, const char *name, vs_error **err) {
  vc_range r;
  if (vc_etcd_get_prefix(cl->etcd, GUESTS, 0, &r, err) < 0)
    return NULL;
  json_t *out = json_array();
  for (size_t i = 0; i < r.n; i++) {
    json_t *rec = vd_guest_record_of(&r.kvs[i]);
    const char *phase = rec ? str(rec, "Phase") : NULL;
    if (!phase || !str(rec, "Node") || str_is(rec, "Name", name) || !strcmp(phase, "pending") ||
        !strcmp(phase, "refused") || !strcmp(phase, "failed")) {
      if (rec)
        json_decref(rec);
      continue;
    }
    if (mig_in_progress(rec)) {
      json_t *there = json_deep_copy(rec);
      json_object_set(there, "Node", json_object_get(json_object_get(rec, "Migration"), "To"));
      json_array_append_new(out, there);
    }
    json_array_append_new(out, rec);
  }
  vc_range_clear(&r);
  return out;
}

static json_t *find_node(json_t *nodes, const char *name) {
  size_t i;
  json_t *n;
  json_array_foreach(nodes, i, n) if (str_is(n, "Name", name)) return n;
  return NULL;
}

typedef struct mig_outcome {
  int code;      /* 200, or the error's status */
  char *message; /* the error */
  char *to;      /* the node chosen */
  json_t *inspect;
} mig_outcome;

static void outcome_clear(mig_outcome *o) {
  free(o->message);
  free(o->to);
  if (o->inspect)
    json_decref(o->inspect);
  memset(o, 0, sizeof(*o));
}

static int outcome_error(mig_outcome *o, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int outcome_error(mig_outcome *o, int code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  free(o->message);
  if (vasprintf(&o->message, fmt, ap) < 0)
    o->message = NULL;
  va_end(ap);
  o->code = code;
  return -1;
}

/* Whether the target node can take the guest now; 0, or -1 with the answer in o. */
static int check_target(vd_daemon *d, const json_t *rec, const char *name, const char *to,
                        mig_outcome *o) {
  vd_cluster *cl = &d->cluster;
  vs_error *e = NULL;
  json_t *nodes = vd_cluster_nodes(d, &e);
  json_t *guests = nodes ? guests_but(cl, name, &e) : NULL;
  if (!guests) {
    if (nodes)
      json_decref(nodes);
    outcome_error(o, 503, "cluster store: %s", e->msg);
    vs_error_free(e);
    return -1;
  }
  json_t *req = json_deep_copy(rec);
  json_object_del(req, "Migration");
  if (to)
    json_object_set_new(req, "Node", json_string(to));
  else /* drain: anywhere the scheduler's rules allow (the draining node is filtered out) */
    json_object_del(req, "Node");
  json_t *n = to ? find_node(nodes, to) : NULL;
  const json_t *src = find_node(nodes, str(rec, "Node"));
  const char *kind = str_is(rec, "Kind", "container") ? "container" : "VM";
  char *node = NULL, *reason = NULL;
  int r = 0;
  if (!str_is(src, "Status", "ready")) /* HA's failover restarts it elsewhere (cluster_ha.c) */
    r = outcome_error(o, 409,
                      "%s %s's node %s is down: it is to be restarted elsewhere, not migrated",
                      kind, name, str(rec, "Node"));
  else if (to && !n)
    r = outcome_error(o, 404, "No such node: %s", to);
  else if (to && !str_is(n, "Status", "ready"))
    r = outcome_error(o, 409, "node %s is down", to);
  else if (to && json_is_true(json_object_get(n, "Draining")))
    r = outcome_error(o, 409, "node %s is draining", to);
  else if (to && json_is_true(json_object_get(n, "Unschedulable")))
    r = outcome_error(o, 409, "node %s is cordoned", to);
  else if (vc_place(nodes, guests, req, &node, &reason, &e) < 0) {
    r = outcome_error(o, 500, "placement: %s", e->msg);
    vs_error_free(e);
  } else if (!node)
    r = outcome_error(o, 409, "cannot move %s %s: %s", kind, name, reason);
  else
    o->to = vs_strdup(node);
  free(node);
  free(reason);
  json_decref(req);
  json_decref(guests);
  json_decref(nodes);
  return r;
}

/* Check a migration of the guest name (to: NULL for the scheduler's choice) and write its
 * request; 0 with *id, or -1 with the answer in o. */
static int request_migration(vd_daemon *d, const char *name, const char *to, char **id,
                             mig_outcome *o) {
  vd_cluster *cl = &d->cluster;
  for (int attempt = 0; attempt < 20; attempt++) {
    int64_t rev;
    vs_error *e = NULL;
    json_t *rec = vd_guest_record_get(cl, name, &rev, &e);
    if (!rec) {
      if (e) {
        outcome_error(o, 503, "cluster store: %s", e->msg);
        vs_error_free(e);
        return -1;
      }
      vd_vms *t = d->vms;
      pthread_mutex_lock(&t->lock);
      vd_vm *vm = vd_vm_find_locked(t, name);
      bool own = vm && !strcmp(vm->name, name);
      pthread_mutex_unlock(&t->lock);
      if (own)
        return outcome_error(o, 409,
                             "VM %s is node %s's own, not a guest of the cluster: only the "
                             "cluster's guests migrate",
                             name, cl->node_name);
      return outcome_error(o, 404, "No such VM: %s", name);
    }
    const char *from = str(rec, "Node"), *phase = str(rec, "Phase");
    json_t *cur = json_object_get(rec, "Migration");
    int r = 0;
    if (!str_is(rec, "Kind", "vm"))
      r = outcome_error(o, 409, "%s is not a VM", name);
    else if (!phase || strcmp(phase, "running") != 0 || !from)
      r = outcome_error(o, 409, "VM %s is not running (its phase is %s)", name,
                        phase ? phase : "unknown");
    else if (mig_in_progress(rec))
      r = outcome_error(o, 409, "VM %s is already being migrated to %s", name, str(cur, "To"));
    else if (to && !strcmp(to, from))
      r = outcome_error(o, 409, "VM %s already runs on node %s", name, to);
    else
      r = check_target(d, rec, name, to, o);
    if (r < 0) {
      json_decref(rec);
      return -1;
    }
    *id = vd_random_id();
    char *now = vd_now();
    json_object_set_new(rec, "Migration",
                        json_pack("{s:s, s:s, s:s, s:s, s:s, s:I}", "Id", *id, "Phase", "requested",
                                  "From", from, "To", o->to, "Started", now, "Expires",
                                  (json_int_t)time(NULL) + MIGRATE_EXPIRES_S));
    free(now);
    bool ok = false;
    r = vd_guest_record_put(cl, name, rec, rev, &ok, &e);
    json_decref(rec);
    if (r < 0) {
      free(*id);
      *id = NULL;
      outcome_error(o, 503, "cluster store: %s", e->msg);
      vs_error_free(e);
      return -1;
    }
    if (ok) {
      vs_log_info("cluster: migration of %s from %s to %s requested", name, from, o->to);
      return 0;
    }
    free(*id); /* the record changed meanwhile: check again */
    *id = NULL;
    free(o->to);
    o->to = NULL;
  }
  return outcome_error(o, 409, "VM %s: its record keeps changing; try again", name);
}

/* What a wait reads in the guest's record each time: 0 to go on waiting, 1 when o is filled. */
typedef int (*record_judge)(const json_t *rec, const char *name, const void *arg, mig_outcome *o);

/* Read name's record until judge decides (20 ms apart at first, 200 ms at most): true, or false
 * when wait_s passed. A record gone is decided here: "<what> <name> was removed while <doing>". */
static bool await_record(vd_cluster *cl, const char *name, int wait_s, const char *what,
                         const char *doing, record_judge judge, const void *arg, mig_outcome *o) {
  useconds_t pause = 20000;
  for (time_t end = time(NULL) + wait_s; time(NULL) < end;) {
    int64_t rev;
    vs_error *e = NULL;
    json_t *rec = vd_guest_record_get(cl, name, &rev, &e);
    if (!rec) {
      if (e)
        outcome_error(o, 503, "cluster store: %s", e->msg);
      else
        outcome_error(o, 409, "%s %s was removed while %s", what, name, doing);
      vs_error_free(e);
      return true;
    }
    int decided = judge(rec, name, arg, o);
    json_decref(rec);
    if (decided)
      return true;
    usleep(pause);
    if (pause < 200000)
      pause *= 2;
  }
  return false;
}

/* A migration (its id in arg) replaced, done or failed. */
static int migration_ended(const json_t *rec, const char *name, const void *arg, mig_outcome *o) {
  json_t *mig = json_object_get(rec, "Migration");
  if (!str_is(mig, "Id", arg)) {
    outcome_error(o, 409, "the migration of VM %s was replaced by another", name);
    return 1;
  }
  if (str_is(mig, "Phase", "done")) {
    o->code = 200;
    o->inspect = json_incref(json_object_get(mig, "Inspect"));
    return 1;
  }
  if (str_is(mig, "Phase", "failed")) {
    int code = (int)json_integer_value(json_object_get(mig, "Code"));
    outcome_error(o, code == 409 ? 409 : 500, "cannot migrate VM %s to %s: %s", name,
                  str(mig, "To"), str(mig, "Reason") ? str(mig, "Reason") : "no reason given");
    return 1;
  }
  return 0;
}

/* Wait for the migration id of name to end: o says how. */
static void await_migration(vd_cluster *cl, const char *name, const char *id, mig_outcome *o) {
  if (!await_record(cl, name, MIGRATE_WAIT_S, "VM", "it was being migrated", migration_ended, id,
                    o))
    outcome_error(o, 504, "VM %s: the migration did not end within %d s", name, MIGRATE_WAIT_S);
}

static void migrate_one(vd_daemon *d, const char *name, const char *to, mig_outcome *o) {
  char *id = NULL;
  if (request_migration(d, name, to, &id, o) < 0)
    return;
  /* wake this node's own migrator at once: it may be the source */
  vd_cluster *cl = &d->cluster;
  pthread_mutex_lock(&cl->lock);
  cl->migrate_dirty = true;
  pthread_cond_broadcast(&cl->guests_cond);
  pthread_mutex_unlock(&cl->lock);
  await_migration(cl, name, id, o);
  free(id);
}

/* POST /vessel/v1/vms/{name}/migrate {"Node": "n2"} */
void vd_h_vm_migrate(vd_call *c) {
  _cleanup_json_ json_t *body = vd_call_body_object(c);
  if (!body)
    return;
  static const char *const known[] = {"Node"};
  vs_error *e = NULL;
  const char *to = NULL;
  if (vd_body_known_fields(body, known, ARRAY_SIZE(known), "a migration", &e) < 0 ||
      vs_json_get_string(body, "Node", true, &to, &e) < 0) {
    vd_call_error(c, 400, "%s", e->msg);
    vs_error_free(e);
    return;
  }
  if (!vd_vm_name_valid(to)) {
    vd_call_error(c, 400, "Node \"%.80s\": expected a node's name", to);
    return;
  }
  if (!c->d->cluster.enabled) {
    vd_call_error(c, 409,
                  "this vesseld is not in a cluster: a VM migrates between the nodes of a "
                  "cluster (start vesseld with --cluster etcd=URL --node-name N --advertise "
                  "ADDR --cluster-shared-dir DIR)");
    return;
  }
  mig_outcome o = {0};
  migrate_one(c->d, c->arg, to, &o);
  if (o.code == 200)
    vd_call_json(c, 200, json_incref(o.inspect));
  else
    vd_call_error(c, o.code, "%s", o.message ? o.message : "migration failed");
  outcome_clear(&o);
}

/* ------------------------------------------------------------- containers moved by drain */

/* A container cannot move live: as Kubernetes' drain evicts a pod and its controller makes it
 * again elsewhere, the container's record is placed again (the scheduler's filter and score,
 * the draining node filtered out) and written with the new Node and Phase "placed" by a
 * compare-and-swap; the new node's reconciler makes and starts it from its Spec, and the old
 * node's removes its copy when it sees the record placed elsewhere (cluster_ctrs.c). 0 with
 * o->to, or -1 with the answer in o. */
static int place_container_again(vd_daemon *d, const char *name, const char *from, mig_outcome *o) {
  vd_cluster *cl = &d->cluster;
  for (int attempt = 0; attempt < 20; attempt++) {
    int64_t rev;
    vs_error *e = NULL;
    json_t *rec = vd_guest_record_get(cl, name, &rev, &e);
    if (!rec) {
      outcome_error(o, e ? 503 : 404, "%s%s",
                    e ? "cluster store: " : "No such container: ", e ? e->msg : name);
      vs_error_free(e);
      return -1;
    }
    if (!str_is(rec, "Node", from)) { /* removed and made again, or moved meanwhile */
      json_decref(rec);
      return outcome_error(o, 409, "container %s is no longer on node %s", name, from);
    }
    if (check_target(d, rec, name, NULL, o) < 0) {
      json_decref(rec);
      return -1;
    }
    char *now = vd_now();
    /* Start: as it was wanted (a stopped container is made on the new node, not started) */
    json_object_set_new(rec, "Start",
                        json_boolean(json_is_true(json_object_get(rec, "Start")) ||
                                     str_is(rec, "Phase", "running")));
    json_object_set_new(rec, "Moved", json_pack("{s:s, s:s}", "From", from, "At", now));
    free(now);
    json_object_set_new(rec, "Node", json_string(o->to));
    json_object_set_new(rec, "Phase", json_string("placed"));
    json_object_del(rec, "Reason");
    bool ok = false;
    int r = vd_guest_record_put(cl, name, rec, rev, &ok, &e);
    json_decref(rec);
    if (r < 0) {
      outcome_error(o, 503, "cluster store: %s", e->msg);
      vs_error_free(e);
      return -1;
    }
    if (ok) {
      vs_log_info("cluster: drain of %s: container %s placed again on %s", from, name, o->to);
      return 0;
    }
    free(o->to); /* the record changed meanwhile: place it again */
    o->to = NULL;
  }
  return outcome_error(o, 409, "container %s: its record keeps changing; try again", name);
}

/* A container placed again on o->to made there (running, or created when it was stopped),
 * failed there, or placed elsewhere meanwhile. */
static int container_made(const json_t *rec, const char *name, const void *arg, mig_outcome *o) {
  (void)arg;
  const char *want = json_is_true(json_object_get(rec, "Start")) ? "running" : "created";
  if (!str_is(rec, "Node", o->to)) {
    outcome_error(o, 409, "container %s was placed elsewhere (on %s) while it moved", name,
                  str(rec, "Node") ? str(rec, "Node") : "no node");
    return 1;
  }
  if (str_is(rec, "Phase", "failed")) {
    outcome_error(o, 500, "container %s: %s", name,
                  str(rec, "Reason") ? str(rec, "Reason") : "failed on its new node");
    return 1;
  }
  if (str_is(rec, "Phase", want)) {
    o->code = 200;
    return 1;
  }
  return 0;
}

/* Wait for the container placed again on o->to to be made there: o->code 200, or the node's
 * reason. */
static void await_container(vd_cluster *cl, const char *name, mig_outcome *o) {
  if (!await_record(cl, name, MOVE_WAIT_S, "container", "it moved", container_made, NULL, o))
    outcome_error(o, 504, "container %s was not made on node %s within %d s", name, o->to,
                  MOVE_WAIT_S);
}

/* The containers of a drained node that are placed again elsewhere: made there or to be made
 * (placed, created, running); one that failed on this node or was refused stays. */
static bool container_moves(const json_t *rec) {
  return str_is(rec, "Kind", "container") &&
         (str_is(rec, "Phase", "placed") || str_is(rec, "Phase", "created") ||
          str_is(rec, "Phase", "running"));
}

/* Place every container of names again, one after the other (each placement sees the ones
 * before it), then wait for each to be made where it went: into migrated or failed. */
static void drain_containers(vd_daemon *d, const char *from, json_t *names, json_t *migrated,
                             json_t *failed) {
  size_t n = json_array_size(names);
  mig_outcome *o = vs_malloc0(sizeof(*o) * (n + 1));
  for (size_t i = 0; i < n; i++)
    if (place_container_again(d, json_string_value(json_array_get(names, i)), from, &o[i]) == 0)
      o[i].code = 100; /* placed: its node makes it */
  /* the old node's reconciler is woken by the watch; this one's at once, it may be either */
  vd_cluster_note_local_change(d);
  for (size_t i = 0; i < n; i++) {
    json_t *v = json_array_get(names, i);
    if (o[i].code == 100)
      await_container(&d->cluster, json_string_value(v), &o[i]);
    if (o[i].code == 200)
      json_array_append_new(migrated, json_pack("{s:O, s:s, s:s, s:s}", "Name", v, "Kind",
                                                "container", "From", from, "To", o[i].to));
    else
      json_array_append_new(failed, json_pack("{s:O, s:s}", "Name", v, "Error",
                                              o[i].message ? o[i].message : "move failed"));
    outcome_clear(&o[i]);
  }
  free(o);
}

static int set_draining(json_t *spec, void *arg) {
  (void)arg;
  json_object_set_new(spec, "Draining", json_true());
  return 0;
}

/* POST /vessel/v1/nodes/{name}/drain: nothing new goes to the node, and every VM running on it
 * moves where the scheduler's rules allow, one after the other. The answer is the node with
 * what moved where (Migrated), what could not (Failed) and the guests that stay, not running
 * (Stayed). */
void vd_h_node_drain(vd_call *c) {
  vd_daemon *d = c->d;
  vd_cluster *cl = &d->cluster;
  if (!vd_cluster_required(c))
    return;
  vs_error *e = NULL;
  json_t *nodes = vd_cluster_nodes(d, &e);
  bool known = nodes && find_node(nodes, c->arg);
  if (nodes)
    json_decref(nodes);
  if (!nodes || (known && vd_cluster_update_spec(d, c->arg, set_draining, NULL, &e) < 0)) {
    vd_call_error(c, 503, "cluster store: %s", e->msg);
    vs_error_free(e);
    return;
  }
  if (!known) {
    vd_call_error(c, 404, "No such node: %s", c->arg);
    return;
  }
  vd_event_emit(d, "node", "drain", c->arg, json_pack("{s:s}", "name", c->arg));
  vc_range r;
  if (vc_etcd_get_prefix(cl->etcd, GUESTS, 0, &r, &e) < 0) {
    vd_call_error(c, 503, "cluster store: %s", e->msg);
    vs_error_free(e);
    return;
  }
  json_t *moving = json_array(), *ctrs = json_array(), *stayed = json_array();
  for (size_t i = 0; i < r.n; i++) {
    json_t *rec = vd_guest_record_of(&r.kvs[i]);
    if (rec && str_is(rec, "Node", c->arg) && str(rec, "Name")) {
      if (str_is(rec, "Kind", "vm") && str_is(rec, "Phase", "running"))
        json_array_append_new(moving, json_string(str(rec, "Name")));
      else if (container_moves(rec))
        json_array_append_new(ctrs, json_string(str(rec, "Name")));
      else
        json_array_append_new(stayed, json_pack("{s:s, s:s}", "Name", str(rec, "Name"), "Phase",
                                                str(rec, "Phase") ? str(rec, "Phase") : ""));
    }
    if (rec)
      json_decref(rec);
  }
  vc_range_clear(&r);
  json_t *migrated = json_array(), *failed = json_array();
  size_t i;
  json_t *v;
  json_array_foreach(moving, i, v) {
    mig_outcome o = {0};
    migrate_one(d, json_string_value(v), NULL, &o);
    if (o.code == 200)
      json_array_append_new(migrated, json_pack("{s:O, s:s, s:s, s:s}", "Name", v, "Kind", "vm",
                                                "From", c->arg, "To", o.to ? o.to : ""));
    else
      json_array_append_new(failed, json_pack("{s:O, s:s}", "Name", v, "Error",
                                              o.message ? o.message : "migration failed"));
    outcome_clear(&o);
  }
  json_decref(moving);
  drain_containers(d, c->arg, ctrs, migrated, failed);
  json_decref(ctrs);
  nodes = vd_cluster_nodes(d, &e);
  json_t *n = nodes ? find_node(nodes, c->arg) : NULL;
  if (!n) {
    vd_call_error(c, 503, "cluster store: %s", e ? e->msg : "the node went away");
    vs_error_free(e);
    json_decref(migrated);
    json_decref(failed);
    json_decref(stayed);
    if (nodes)
      json_decref(nodes);
    return;
  }
  json_t *answer = json_deep_copy(n);
  json_decref(nodes);
  json_object_set_new(answer, "Migrated", migrated);
  json_object_set_new(answer, "Failed", failed);
  json_object_set_new(answer, "Stayed", stayed);
  vd_call_json(c, 200, answer);
}
