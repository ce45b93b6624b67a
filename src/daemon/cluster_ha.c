/* HA of the cluster's guests (docs/cluster.md), as vSphere HA: when a node's lease expires, the
 * scheduler (the leader) places its guests that have a restart policy on other live nodes,
 * which start them from their disks on storage every node sees (--cluster-shared-dir); and a
 * node that cannot renew its lease fences itself first: it kills its guests of the cluster
 * before the lease can end, so that a guest never runs on two nodes from one disk.
 *
 * The timing that guarantees it (LEASE_TTL 10 s):
 *   - the keeper notes the monotonic time at which it *sent* each renewal that etcd confirmed;
 *     etcd renewed the lease after that moment, so the lease ends no earlier than TTL after it;
 *   - the watchdog here kills the node's guests of the cluster FENCE_AFTER_MS (7 s) after that
 *     moment and from then on refuses to start any, until a renewal succeeds again;
 *   - the leader moves a guest only once the node's record is gone, that is once the lease has
 *     ended: at least KILL_MARGIN_MS (3 s) after the kill, for SIGKILL to take effect.
 *
 * A node that holds its lease again (a short cut, a vesseld restarted while its VMMs died)
 * restarts its own guests that etcd still places on it, after a compare-and-swap on each
 * record: a leader that moved the guest meanwhile changed the revision, and the start is left
 * to the node it went to; a leader that reads the record after the swap reads the node ready
 * too (it reads the records before the nodes).
 *
 * Guests outlive vesseld, so a vesseld that dies cannot fence them itself: the fencer, a process
 * forked from vesseld at the start, holds pidfds of the running VMMs of the cluster's guests and
 * the deadline, both sent by the watchdog at every look. When vesseld is gone (its end of the
 * socket closes), the fencer kills them at the last deadline it got and exits. A vesseld that
 * starts again on the same data root (and so holds a lease again) tells the old fencer to stand
 * down, through an abstract socket named after the data root, before it forks its own. */
#include "daemon/internal.h"
#include "daemon/vms.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define KILL_MARGIN_MS 3000
#define FENCE_AFTER_MS (VD_CLUSTER_LEASE_TTL * 1000 - KILL_MARGIN_MS)
#define WATCH_MS 200 /* how often the watchdog looks */
/* the fencer process is the backstop for a vesseld that is gone: it kills a second later than
 * vesseld's own watchdog, still 2 s before the lease can end */
#define FENCER_LAG_MS 1000

static const char *str(const json_t *o, const char *f) {
  return json_string_value(json_object_get(o, f));
}

int64_t vd_ha_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int vd_ha_configure(vd_cluster *cl, const vd_cluster_options *o, vs_error **err) {
  if (!o->shared_dir)
    return 0;
  struct stat st;
  if (o->shared_dir[0] != '/')
    return vs_error_set(err, EINVAL, "--cluster-shared-dir %s: expected an absolute path",
                        o->shared_dir);
  if (stat(o->shared_dir, &st) < 0)
    return vs_error_set(err, errno, "--cluster-shared-dir %s", o->shared_dir);
  if (!S_ISDIR(st.st_mode))
    return vs_error_set(err, ENOTDIR, "--cluster-shared-dir %s", o->shared_dir);
  cl->shared_dir = vs_strdup(o->shared_dir);
  return 0;
}

void vd_ha_renewed(vd_cluster *cl, int64_t sent_ms) {
  int64_t prev = __atomic_load_n(&cl->renewed_ms, __ATOMIC_ACQUIRE);
  if (sent_ms > prev) /* a slow reply to an older renewal does not move the mark back */
    __atomic_store_n(&cl->renewed_ms, sent_ms, __ATOMIC_RELEASE);
}

static bool is_fenced(const vd_cluster *cl) {
  return __atomic_load_n(&cl->fenced, __ATOMIC_ACQUIRE);
}

/* Fenced, or about to be at the watchdog's next look: what the starts ask. */
static bool fenced_now(const vd_cluster *cl) {
  return is_fenced(cl) ||
         vd_ha_now_ms() - __atomic_load_n(&cl->renewed_ms, __ATOMIC_ACQUIRE) >= FENCE_AFTER_MS;
}

bool vd_ha_fenced(const vd_cluster *cl) { return cl->enabled && fenced_now(cl); }

/* ------------------------------------------------------------- what the VMs may do */

static bool of_cluster(const vd_daemon *d, const vd_vm *vm) {
  return d->cluster.enabled && json_object_get(vm->rec, "Cluster") != NULL;
}

int vd_ha_start_allowed(vd_daemon *d, const vd_vm *vm, vs_error **err) {
  if (of_cluster(d, vm) && fenced_now(&d->cluster))
    return vs_error_set(err, EAGAIN,
                        "node %s lost its lease in the cluster (etcd cannot be reached): its "
                        "guests of the cluster do not start until it holds one again (another "
                        "node may be starting VM %s)",
                        d->cluster.node_name, vm->name);
  return 0;
}

bool vd_ha_local_restart_allowed(vd_daemon *d, const vd_vm *vm, bool daemon_start) {
  return !of_cluster(d, vm) || (!daemon_start && !fenced_now(&d->cluster));
}

/* ------------------------------------------------------------- the leader's part */

json_t *vd_ha_ready_nodes(const json_t *nodes) {
  json_t *ready = json_object();
  size_t i;
  json_t *n;
  json_array_foreach(nodes, i, n) {
    const char *name = str(n, "Name"), *status = str(n, "Status");
    if (name && status && !strcmp(status, "ready"))
      json_object_set_new(ready, name, json_true());
  }
  return ready;
}

static bool is_container(const json_t *rec) {
  const char *k = str(rec, "Kind");
  return k && !strcmp(k, "container");
}

static bool restart_policy_set(const json_t *rec) {
  const json_t *spec = json_object_get(rec, "Spec");
  const char *p = str(spec, "RestartPolicy");
  if (is_container(rec)) /* the Docker create body's */
    p = str(json_object_get(json_object_get(spec, "HostConfig"), "RestartPolicy"), "Name");
  return p && (!strcmp(p, "always") || !strcmp(p, "unless-stopped") ||
               !strncmp(p, "on-failure", strlen("on-failure")));
}

/* A guest with a disk moves only when that disk is on the shared storage (DiskDir): a disk on
 * the dead node's own storage cannot be reached, and a new blank one would lose its data. */
static bool disk_reachable(const json_t *rec) {
  if (is_container(rec))
    return true; /* its image is pulled by the node it goes to */
  const json_t *spec = json_object_get(rec, "Spec");
  bool has_disk = (str(spec, "Disk") && *str(spec, "Disk")) || str(spec, "Image") ||
                  json_integer_value(json_object_get(spec, "DiskSize")) > 0 ||
                  json_is_string(json_object_get(spec, "DiskSize"));
  return !has_disk || str(rec, "DiskDir");
}

/* A live migration (cluster_migrate.c) whose stream is sent: the guest is in the target's VMM
 * alone, and the target makes the record its own. While that target is ready, a copy started
 * from the disk elsewhere would run the guest twice. */
static bool migration_sent_to_ready(const json_t *ready, const json_t *rec) {
  const json_t *mig = json_object_get(rec, "Migration");
  const char *to = str(mig, "To"), *phase = str(mig, "Phase");
  return vd_cluster_migration_in_progress(rec) && phase && !strcmp(phase, "sent") && to &&
         json_object_get(ready, to);
}

bool vd_ha_failover_wanted(const json_t *ready, const json_t *rec) {
  const char *node = str(rec, "Node"), *phase = str(rec, "Phase"), *kind = str(rec, "Kind");
  if (!node || !phase || !kind || (strcmp(kind, "vm") != 0 && strcmp(kind, "container") != 0) ||
      json_object_get(ready, node))
    return false;
  if (migration_sent_to_ready(ready, rec))
    return false;
  /* placed and never made: nothing ran, it is placed anew */
  if (!strcmp(phase, "placed"))
    return true;
  return !strcmp(phase, "running") && restart_policy_set(rec) && disk_reachable(rec);
}

void vd_ha_failover_prepare(json_t *rec) {
  json_t *prev = json_object_get(rec, "Failover");
  json_int_t count = json_integer_value(json_object_get(prev, "Count"));
  _cleanup_free_ char *now = vd_now();
  json_object_set_new(
      rec, "Failover",
      json_pack("{s:s, s:s, s:I}", "From", str(rec, "Node"), "At", now, "Count", count + 1));
  json_object_set_new(rec, "Start",
                      json_boolean(json_is_true(json_object_get(rec, "Start")) ||
                                   !strcmp(str(rec, "Phase"), "running")));
  /* the node it ran on, or its pin: placement chooses among the live ones */
  json_object_del(rec, "Node");
  /* a migration that had not sent the guest yet ends with its source: the target drops the VM
   * it prepared (docs/cluster.md) */
  json_t *mig = json_object_get(rec, "Migration");
  if (vd_cluster_migration_in_progress(rec)) {
    json_object_set_new(mig, "Phase", json_string("failed"));
    json_object_set_new(mig, "Reason",
                        json_sprintf("node %s is down: the guest restarts elsewhere (failover)",
                                     str(json_object_get(rec, "Failover"), "From")));
    json_object_set_new(mig, "Code", json_integer(500));
    json_object_set_new(mig, "Finished", json_string(now));
  }
}

void vd_ha_failover_placed(json_t *rec, const char *node) {
  json_t *f = json_object_get(rec, "Failover");
  vs_log_info("cluster: node %s is down: %s %s restarts on %s (failover %lld)", str(f, "From"),
              is_container(rec) ? "container" : "VM", str(rec, "Name"), node,
              (long long)json_integer_value(json_object_get(f, "Count")));
  json_object_set_new(rec, "Node", json_string(node));
  json_object_set_new(rec, "Phase", json_string("placed"));
  json_object_del(rec, "Reason");
}

/* ------------------------------------------------------------- the reconciler's part */

void vd_ha_note_made(json_t *next, const json_t *vm_rec) {
  const char *dir = str(vm_rec, "DiskDir");
  /* only a disk that was made there: a VM without one has nothing on the shared storage */
  if (dir && str(vm_rec, "DiskPath"))
    json_object_set_new(next, "DiskDir", json_string(dir));
}

/* ------------------------------------------------------------- the fencer process */

#define FENCER_MAX_FDS                                                                             \
  253 /* SCM_RIGHTS' limit: more guests than this are fenced by vesseld only                       \
       */

typedef struct fence_msg {
  int64_t deadline_ms; /* CLOCK_MONOTONIC */
  uint32_t stand_down; /* from a new vesseld: exit without killing */
} fence_msg;

/* The fencer's listening address: abstract, so nothing is left on disk, and per network
 * namespace (the tests' nodes each have their own). */
static socklen_t fencer_addr(const char *data_root, struct sockaddr_un *a) {
  char hash[VS_SHA256_HEX_LEN + 1];
  vs_sha256_hex(data_root, strlen(data_root), hash);
  memset(a, 0, sizeof(*a));
  a->sun_family = AF_UNIX;
  int n = snprintf(a->sun_path + 1, sizeof(a->sun_path) - 1, "vessel-fencer/%.32s", hash);
  return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
}

static void fencer_say(const char *what) {
  /* write(2) only: the fencer is a fork of a threaded process and never calls malloc */
  static const char tag[] = "vessel-fencer: ";
  (void)!write(2, tag, sizeof(tag) - 1);
  (void)!write(2, what, strlen(what));
  (void)!write(2, "\n", 1);
}

/* One connection to the fencer's socket: whether it is a vesseld of this node (same user)
 * asking it to stand down. A peer that connects and sends nothing is given 200 ms: the fencer
 * must be back at its deadline, whoever holds a connection open. */
static bool stand_down_asked(int lfd) {
  int c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
  if (c < 0)
    return false;
  struct ucred cred;
  socklen_t cl = sizeof(cred);
  struct timeval patience = {.tv_sec = 0, .tv_usec = 200000};
  fence_msg m;
  bool asked = getsockopt(c, SOL_SOCKET, SO_PEERCRED, &cred, &cl) == 0 && cred.uid == getuid() &&
               setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &patience, sizeof(patience)) == 0 &&
               read(c, &m, sizeof(m)) == (ssize_t)sizeof(m) && m.stand_down;
  close(c);
  return asked;
}

/* The fencer's loop (a forked child: async-signal-safe calls only). sock: from vesseld. */
static _Noreturn void fencer_main(int sock, const struct sockaddr_un *addr, socklen_t alen,
                                  int64_t deadline) {
  static int held[FENCER_MAX_FDS];
  size_t nheld = 0;
  bool parent = true;
  /* nothing of vesseld's stays open here (its API socket would look alive to the next one) */
  if (sock != 3) {
    dup2(sock, 3);
    sock = 3;
  }
  syscall(SYS_close_range, 4U, ~0U, 0U);
  setsid();
  prctl(PR_SET_NAME, "vessel-fencer", 0, 0, 0);
  int lfd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  /* the fencer of an earlier vesseld may take a moment to go after it was told to */
  for (int i = 0; lfd >= 0 && i < 40; i++) {
    if (bind(lfd, (const struct sockaddr *)addr, alen) == 0 && listen(lfd, 4) == 0)
      break;
    struct timespec ts = {0, 50L * 1000 * 1000};
    nanosleep(&ts, NULL);
    if (i == 39) {
      close(lfd);
      lfd = -1;
      fencer_say("cannot listen: a vesseld started later cannot tell this fencer to stand down");
    }
  }
  for (;;) {
    int64_t now = vd_ha_now_ms();
    if (now >= deadline) {
      for (size_t i = 0; i < nheld; i++)
        syscall(SYS_pidfd_send_signal, held[i], SIGKILL, NULL, 0);
      if (!parent) {
        if (nheld)
          fencer_say("vesseld is gone and its lease ends: killed its VMMs of the cluster");
        _exit(0);
      }
      deadline = INT64_MAX; /* until vesseld sends a new one */
    }
    int64_t wait = deadline == INT64_MAX ? 1000 : deadline - now;
    struct pollfd p[2] = {{parent ? sock : -1, POLLIN, 0}, {lfd, POLLIN, 0}};
    poll(p, 2, (int)(wait < 1000 ? wait : 1000));
    if (p[0].revents) {
      fence_msg m;
      union {
        char buf[CMSG_SPACE(sizeof(int) * FENCER_MAX_FDS)];
        struct cmsghdr align;
      } c;
      struct iovec iov = {&m, sizeof(m)};
      struct msghdr mh = {
          .msg_iov = &iov, .msg_iovlen = 1, .msg_control = c.buf, .msg_controllen = sizeof(c.buf)};
      ssize_t n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
      if (n <= 0 && !(n < 0 && errno == EINTR)) {
        parent = false; /* vesseld is gone: the last deadline stands */
        close(sock);
      } else if (n == (ssize_t)sizeof(m)) {
        for (size_t i = 0; i < nheld; i++)
          close(held[i]);
        nheld = 0;
        for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm))
          if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS)
            for (size_t i = 0;
                 i < (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int) && nheld < FENCER_MAX_FDS; i++)
              memcpy(&held[nheld++], CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
        deadline = m.deadline_ms;
      }
    }
    if (lfd >= 0 && (p[1].revents & POLLIN) && stand_down_asked(lfd) && !parent) {
      fencer_say("a new vesseld holds the node's lease: standing down");
      _exit(0);
    }
  }
}

/* Tell the fencer an earlier vesseld of this data root left to stand down (none: nothing). */
static void fencer_stand_down(const struct sockaddr_un *addr, socklen_t alen) {
  int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  fence_msg m = {.deadline_ms = 0, .stand_down = 1};
  if (fd >= 0 && connect(fd, (const struct sockaddr *)addr, alen) == 0 &&
      write(fd, &m, sizeof(m)) == (ssize_t)sizeof(m))
    vs_log_info("cluster: told the fencer of the previous vesseld to stand down");
  if (fd >= 0)
    close(fd);
}

static int fencer_start(vd_daemon *d, vs_error **err) {
  vd_cluster *cl = &d->cluster;
  struct sockaddr_un addr;
  socklen_t alen = fencer_addr(d->data_root, &addr);
  fencer_stand_down(&addr, alen);
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
    return vs_error_set(err, errno, "cluster: the fencer's socket");
  int64_t deadline =
      __atomic_load_n(&cl->renewed_ms, __ATOMIC_ACQUIRE) + FENCE_AFTER_MS + FENCER_LAG_MS;
  pid_t pid = fork();
  if (pid < 0) {
    close(sv[0]);
    close(sv[1]);
    return vs_error_set(err, errno, "cluster: starting the fencer");
  }
  if (pid == 0) {
    close(sv[0]);
    fencer_main(sv[1], &addr, alen, deadline);
  }
  close(sv[1]);
  pthread_mutex_lock(&d->vms->lock);
  cl->fence_fd = sv[0];
  cl->fencer_on = true;
  pthread_mutex_unlock(&d->vms->lock);
  vs_log_debug("cluster: fencer process %d", (int)pid);
  return 0;
}

/* The deadline and the pidfds of the running VMMs of the cluster's guests and of those being
 * started, to the fencer. */
void vd_ha_fencer_update(vd_daemon *d) {
  vd_cluster *cl = &d->cluster;
  if (!cl->enabled)
    return;
  vd_vms *t = d->vms;
  fence_msg m = {.deadline_ms = __atomic_load_n(&cl->renewed_ms, __ATOMIC_ACQUIRE) +
                                FENCE_AFTER_MS + FENCER_LAG_MS};
  union {
    char buf[CMSG_SPACE(sizeof(int) * FENCER_MAX_FDS)];
    struct cmsghdr align;
  } c;
  memset(&c, 0, sizeof(c));
  struct iovec iov = {&m, sizeof(m)};
  struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
  int fds[FENCER_MAX_FDS];
  /* the containers' processes (pidfds opened for this message, closed after it; taken before
   * the VMs' lock, not under it) */
  size_t n_ctrs = vd_cctr_pidfds(d, fds, FENCER_MAX_FDS / 2);
  size_t n = n_ctrs;
  /* under the lock while sent: a pidfd is closed only under it, and the fencer's socket too */
  pthread_mutex_lock(&t->lock);
  if (!cl->fencer_on) {
    pthread_mutex_unlock(&t->lock);
    for (size_t i = 0; i < n_ctrs; i++)
      close(fds[i]);
    return;
  }
  for (size_t i = 0; i < t->n && n < FENCER_MAX_FDS; i++) {
    const vd_vm *vm = t->vms[i];
    if (!of_cluster(d, vm))
      continue;
    if (vm->pid > 0 && vm->pidfd >= 0)
      fds[n++] = vm->pidfd;
    if (vm->spawn_pidfd >= 0 && n < FENCER_MAX_FDS)
      fds[n++] = vm->spawn_pidfd;
  }
  if (n) {
    mh.msg_control = c.buf;
    mh.msg_controllen = CMSG_SPACE(sizeof(int) * n);
    struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int) * n);
    memcpy(CMSG_DATA(cm), fds, sizeof(int) * n);
  }
  ssize_t r = sendmsg(cl->fence_fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
  pthread_mutex_unlock(&t->lock);
  for (size_t i = 0; i < n_ctrs; i++)
    close(fds[i]);
  if (r < 0 && errno != EAGAIN)
    vs_log_warn("cluster: the fencer process: %s", strerror(errno));
}

/* ------------------------------------------------------------- the watchdog */

/* SIGKILL to every running VMM of the cluster's guests; how many were sent one. Called again
 * and again while fenced: a VMM that a start had under way is caught at the next look. */
static int fence_kill(vd_daemon *d) {
  vd_vms *t = d->vms;
  int n = 0;
  pthread_mutex_lock(&t->lock);
  for (size_t i = 0; i < t->n; i++) {
    vd_vm *vm = t->vms[i];
    if (!of_cluster(d, vm))
      continue;
    if (vm->spawn_pidfd >= 0) /* a start under way: its VMM runs already */
      syscall(SYS_pidfd_send_signal, vm->spawn_pidfd, SIGKILL, NULL, 0);
    if (vm->pid > 0 && vm->pidfd >= 0) {
      syscall(SYS_pidfd_send_signal, vm->pidfd, SIGKILL, NULL, 0);
      n++;
    }
  }
  pthread_mutex_unlock(&t->lock);
  return n + vd_cctr_fence_kill(d);
}

/* Claim the guest's record for this node (a compare-and-swap that changes its revision): true
 * when etcd still places it here and no leader moved it first. */
bool vd_ha_claim_own(vd_cluster *cl, const char *name, vs_error **err) {
  int64_t rev = 0;
  json_t *rec = vd_guest_record_get(cl, name, &rev, err);
  if (!rec)
    return false;
  bool mine = str(rec, "Node") && !strcmp(str(rec, "Node"), cl->node_name) && str(rec, "Phase") &&
              !strcmp(str(rec, "Phase"), "running");
  bool ok = false;
  if (mine) {
    _cleanup_free_ char *now = vd_now();
    json_object_set_new(rec, "Restarted", json_string(now));
    _cleanup_free_ char *key = vs_asprintf("/vessel/guests/%s", name);
    _cleanup_free_ char *doc = json_dumps(rec, JSON_COMPACT | JSON_SORT_KEYS);
    if (vc_etcd_put_if(cl->etcd, key, doc, strlen(doc), 0, rev, &ok, NULL, NULL, err) < 0)
      ok = false;
  }
  json_decref(rec);
  return ok;
}

/* This node's guests of the cluster whose VMMs are gone (killed by the fence, or ended with a
 * vesseld that was not running) and whose restart policy wants them back: started here if etcd
 * still places them here. -1 when etcd could not be asked (try again later). */
static int restart_own(vd_daemon *d) {
  vd_vms *t = d->vms;
  json_t *names = json_array();
  pthread_mutex_lock(&t->lock);
  for (size_t i = 0; i < t->n; i++)
    if (of_cluster(d, t->vms[i]) && t->vms[i]->pid == 0)
      json_array_append_new(names, json_string(t->vms[i]->name));
  pthread_mutex_unlock(&t->lock);
  int rc = 0;
  size_t i;
  json_t *n;
  json_array_foreach(names, i, n) {
    const char *name = json_string_value(n);
    vs_error *e = NULL;
    vd_vm *vm = vd_vm_claim_name(t, name, &e);
    if (!vm) {
      if (e->errnum == EBUSY) /* a request works on it: look again later */
        rc = -1;
      vs_error_free(e);
      continue;
    }
    /* claimed (busy) before the record: no request starts it between the two */
    if (vd_vm_restart_wanted(t, vm)) {
      bool mine = vd_ha_claim_own(&d->cluster, name, &e);
      if (e) /* etcd did not answer: again later */
        rc = -1;
      else if (mine && vd_vm_start(d, vm, &e) == 0)
        vs_log_info("cluster: restarted VM %s, which etcd still places on this node", name);
    }
    vd_vm_release(t, vm);
    if (e)
      vs_log_warn("cluster: restarting VM %s: %s", name, e->msg);
    vs_error_free(e);
  }
  json_decref(names);
  return vd_cctr_restart_own(d) < 0 ? -1 : rc;
}

static void *ha_thread(void *arg) {
  vd_daemon *d = arg;
  vd_cluster *cl = &d->cluster;
  bool recheck = true; /* at start: guests whose VMMs ended while vesseld was not running */
  int64_t last_retry = 0;
  while (!vd_cluster_sleep(cl, WATCH_MS)) {
    vd_ha_fencer_update(d);
    int64_t now = vd_ha_now_ms();
    int64_t late = now - __atomic_load_n(&cl->renewed_ms, __ATOMIC_ACQUIRE);
    if (late >= FENCE_AFTER_MS) {
      if (!is_fenced(cl)) {
        __atomic_store_n(&cl->fenced, true, __ATOMIC_RELEASE);
        vs_log_warn("cluster: fencing: no lease renewal for %lld ms (the lease lasts %d s): "
                    "killing this node's guests of the cluster, another node may start them",
                    (long long)late, VD_CLUSTER_LEASE_TTL);
      }
      int killed = fence_kill(d);
      if (killed)
        vs_log_warn("cluster: fencing: sent SIGKILL to %d guest%s", killed, killed == 1 ? "" : "s");
      continue;
    }
    if (is_fenced(cl)) {
      __atomic_store_n(&cl->fenced, false, __ATOMIC_RELEASE);
      vs_log_info("cluster: the lease is renewed: fencing ends");
      recheck = true;
    }
    if (recheck && now - last_retry >= 1000) {
      last_retry = now;
      recheck = restart_own(d) < 0;
    }
  }
  return NULL;
}

int vd_ha_start(vd_daemon *d, vs_error **err) {
  vd_cluster *cl = &d->cluster;
  if (fencer_start(d, err) < 0)
    return -1;
  return vd_cluster_thread_start(d, &cl->ha, ha_thread, "the fencing watchdog", err);
}

void vd_ha_stop(vd_daemon *d) {
  vd_cluster *cl = &d->cluster;
  vd_cluster_thread_join(&cl->ha);
  /* the fencer sees the end of the socket: it kills the guests at the deadline unless a new
   * vesseld on this data root tells it to stand down first */
  pthread_mutex_lock(&d->vms->lock); /* a start may be telling the fencer of its VMM */
  if (cl->fencer_on)
    close(cl->fence_fd);
  cl->fencer_on = false;
  pthread_mutex_unlock(&d->vms->lock);
}
