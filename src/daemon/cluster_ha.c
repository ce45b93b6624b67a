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
 * too (it reads the records before the nodes). */
#include "daemon/internal.h"
#include "daemon/vms.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define KILL_MARGIN_MS 3000
#define FENCE_AFTER_MS (VD_CLUSTER_LEASE_TTL * 1000 - KILL_MARGIN_MS)
#define WATCH_MS 200 /* how often the watchdog looks */

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

/* ------------------------------------------------------------- what the VMs may do */

static bool of_cluster(const vd_daemon *d, const vd_vm *vm) {
  return d->cluster.enabled && json_object_get(vm->rec, "Cluster") != NULL;
}

int vd_ha_start_allowed(vd_daemon *d, const vd_vm *vm, vs_error **err) {
  if (of_cluster(d, vm) && is_fenced(&d->cluster))
    return vs_error_set(err, EAGAIN,
                        "node %s lost its lease in the cluster (etcd cannot be reached): its "
                        "guests of the cluster do not start until it holds one again (another "
                        "node may be starting VM %s)",
                        d->cluster.node_name, vm->name);
  return 0;
}

bool vd_ha_local_restart_allowed(vd_daemon *d, const vd_vm *vm, bool daemon_start) {
  return !of_cluster(d, vm) || (!daemon_start && !is_fenced(&d->cluster));
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

static bool restart_policy_set(const json_t *rec) {
  const char *p = str(json_object_get(rec, "Spec"), "RestartPolicy");
  return p && (!strcmp(p, "always") || !strcmp(p, "unless-stopped") ||
               !strncmp(p, "on-failure", strlen("on-failure")));
}

/* A guest with a disk moves only when that disk is on the shared storage (DiskDir): a disk on
 * the dead node's own storage cannot be reached, and a new blank one would lose its data. */
static bool disk_reachable(const json_t *rec) {
  const json_t *spec = json_object_get(rec, "Spec");
  bool has_disk = (str(spec, "Disk") && *str(spec, "Disk")) || str(spec, "Image") ||
                  json_integer_value(json_object_get(spec, "DiskSize")) > 0 ||
                  json_is_string(json_object_get(spec, "DiskSize"));
  return !has_disk || str(rec, "DiskDir");
}

bool vd_ha_failover_wanted(const json_t *ready, const json_t *rec) {
  const char *node = str(rec, "Node"), *phase = str(rec, "Phase"), *kind = str(rec, "Kind");
  if (!node || !phase || !kind || strcmp(kind, "vm") != 0 || json_object_get(ready, node))
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
}

void vd_ha_failover_placed(json_t *rec, const char *node) {
  json_t *f = json_object_get(rec, "Failover");
  vs_log_info("cluster: node %s is down: VM %s restarts on %s (failover %lld)", str(f, "From"),
              str(rec, "Name"), node, (long long)json_integer_value(json_object_get(f, "Count")));
  json_object_set_new(rec, "Node", json_string(node));
  json_object_set_new(rec, "Phase", json_string("placed"));
  json_object_del(rec, "Reason");
}

/* ------------------------------------------------------------- the reconciler's part */

json_t *vd_ha_vm_extra(const vd_cluster *cl, const json_t *rec, vs_error **err) {
  const char *name = str(rec, "Name"), *dir = str(rec, "DiskDir");
  _cleanup_free_ char *mine =
      cl->shared_dir && name ? vs_asprintf("%s/guests/%s", cl->shared_dir, name) : NULL;
  /* the record comes from etcd and this directory is removed with the guest: only the one
   * that this node's shared storage has for this name is taken */
  if (dir && (!mine || strcmp(dir, mine) != 0))
    return vs_error_set(err, EINVAL,
                        "VM %s: its disk is in %s, and this node's --cluster-shared-dir gives %s",
                        name, dir, mine ? mine : "none"),
           NULL;
  json_t *extra = json_pack("{s:{s:s}}", "Cluster", "Node", cl->node_name);
  if (mine)
    json_object_set_new(extra, "DiskDir", json_string(mine));
  /* made before on some node: its disk is on the shared storage already */
  if (dir)
    json_object_set_new(extra, "DiskAdopt", json_true());
  return extra;
}

void vd_ha_note_made(json_t *next, const json_t *vm_rec) {
  const char *dir = str(vm_rec, "DiskDir");
  /* only a disk that was made there: a VM without one has nothing on the shared storage */
  if (dir && str(vm_rec, "DiskPath"))
    json_object_set_new(next, "DiskDir", json_string(dir));
}

/* ------------------------------------------------------------- the watchdog */

static bool ha_sleep(vd_cluster *cl, int ms) {
  struct timespec until = vs_realtime_after_ms(ms);
  pthread_mutex_lock(&cl->lock);
  if (!cl->stop)
    pthread_cond_timedwait(&cl->cond, &cl->lock, &until);
  bool stop = cl->stop;
  pthread_mutex_unlock(&cl->lock);
  return stop;
}

/* SIGKILL to every running VMM of the cluster's guests; how many were sent one. Called again
 * and again while fenced: a VMM that a start had under way is caught at the next look. */
static int fence_kill(vd_daemon *d) {
  vd_vms *t = d->vms;
  int n = 0;
  pthread_mutex_lock(&t->lock);
  for (size_t i = 0; i < t->n; i++) {
    vd_vm *vm = t->vms[i];
    if (vm->pid > 0 && vm->pidfd >= 0 && of_cluster(d, vm)) {
      syscall(SYS_pidfd_send_signal, vm->pidfd, SIGKILL, NULL, 0);
      n++;
    }
  }
  pthread_mutex_unlock(&t->lock);
  return n;
}

/* The record of one guest and its revision; NULL (no error) when there is none. */
static json_t *get_record(vd_cluster *cl, const char *name, int64_t *rev, vs_error **err) {
  _cleanup_free_ char *key = vs_asprintf("/vessel/guests/%s", name);
  vc_range r;
  if (vc_etcd_get(cl->etcd, key, &r, err) < 0)
    return NULL;
  json_t *j =
      r.n ? json_loadb(r.kvs[0].value, r.kvs[0].value_len, JSON_REJECT_DUPLICATES, NULL) : NULL;
  *rev = r.n ? r.kvs[0].mod_revision : 0;
  vc_range_clear(&r);
  if (j && !json_is_object(j)) {
    json_decref(j);
    j = NULL;
  }
  return j;
}

/* Claim the guest's record for this node (a compare-and-swap that changes its revision): true
 * when etcd still places it here and no leader moved it first. */
static bool claim_own(vd_cluster *cl, const char *name, vs_error **err) {
  int64_t rev = 0;
  json_t *rec = get_record(cl, name, &rev, err);
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
      bool mine = claim_own(&d->cluster, name, &e);
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
  return rc;
}

static void *ha_thread(void *arg) {
  vd_daemon *d = arg;
  vd_cluster *cl = &d->cluster;
  bool recheck = true; /* at start: guests whose VMMs ended while vesseld was not running */
  int64_t last_retry = 0;
  while (!ha_sleep(cl, WATCH_MS)) {
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
        vs_log_warn("cluster: fencing: sent SIGKILL to %d VMM%s", killed, killed == 1 ? "" : "s");
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
  int rc = pthread_create(&cl->ha, NULL, ha_thread, d);
  if (rc)
    return vs_error_set(err, rc, "cluster: starting the fencing watchdog");
  cl->ha_started = true;
  return 0;
}

void vd_ha_stop(vd_daemon *d) {
  vd_cluster *cl = &d->cluster;
  if (cl->ha_started)
    pthread_join(cl->ha, NULL);
  cl->ha_started = false;
}
