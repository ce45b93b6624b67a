/* Guests of the cluster (docs/cluster.md): a VM created on any node becomes a record under
 * /vessel/guests/NAME; the scheduler (one node at a time, the leader) places it; the node it is
 * placed on creates (and starts) it locally — the way Kubernetes' scheduler binds a pod and the
 * node's kubelet runs it. Every write is a compare-and-swap on the record's revision, so two
 * writers never both win, and each node's reconciler works from the whole list again after
 * every change (and every restart), so a lost event or a restart converges.
 *
 * A record's Phase: pending (written by the create) -> placed (Node chosen) or refused (Reason)
 * -> created or running (the node made the VM: Id) or failed (Reason). */
#include "daemon/internal.h"
#include "daemon/vms.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define GUESTS "/vessel/guests/"
#define LEADER_KEY "/vessel/leader"
#define CREATE_WAIT_S 300 /* a create waits this long for the node to make the VM */
/* placements written in one etcd transaction: with their guards (the leader key, a pool each at
 * most) within etcd's 128 compares of one transaction */
#define BATCH 63

static const char *str(const json_t *o, const char *f) {
  return json_string_value(json_object_get(o, f));
}

static char *guest_key(const char *name) { return vs_asprintf(GUESTS "%s", name); }

json_t *vd_guest_record_of(const vc_kv *kv) {
  json_t *j = json_loadb(kv->value, kv->value_len, JSON_REJECT_DUPLICATES, NULL);
  if (j && !json_is_object(j)) {
    json_decref(j);
    j = NULL;
  }
  return j;
}

int vd_guest_record_put(vd_cluster *cl, const char *name, json_t *rec, int64_t rev, bool *ok,
                        vs_error **err) {
  _cleanup_free_ char *key = guest_key(name);
  _cleanup_free_ char *doc = json_dumps(rec, JSON_COMPACT | JSON_SORT_KEYS);
  int64_t at = 0;
  if (vc_etcd_put_if(cl->etcd, key, doc, strlen(doc), 0, rev, ok, NULL, &at, err) < 0)
    return -1;
  if (*ok) /* the next pass (of any thread here) sees it without waiting for its event */
    vd_cache_note_put(cl, key, doc, strlen(doc), at);
  return 0;
}

json_t *vd_guest_record_get(vd_cluster *cl, const char *name, int64_t *rev, vs_error **err) {
  _cleanup_free_ char *key = guest_key(name);
  vc_range r;
  *rev = 0;
  if (vc_etcd_get(cl->etcd, key, &r, err) < 0)
    return NULL;
  json_t *j = r.n ? vd_guest_record_of(&r.kvs[0]) : NULL;
  if (r.n)
    *rev = r.kvs[0].mod_revision;
  if (r.n && !j)
    vs_error_set(err, EINVAL, "the cluster's record of %s is not a JSON object", name);
  vc_range_clear(&r);
  return j;
}

/* ------------------------------------------------------------- create and delete */

int vd_cluster_take_placement(json_t *body, json_t *guest, bool keep_labels, vs_error **err) {
  static const char *const maps[] = {"Labels", "NodeSelector", "AntiAffinity", "Affinity"};
  for (size_t i = 0; i < ARRAY_SIZE(maps); i++) {
    json_t *v = json_object_get(body, maps[i]);
    if (!v || json_is_null(v))
      continue;
    const char *k;
    json_t *x;
    if (!json_is_object(v))
      return vs_error_set(err, EINVAL, "%s: expected an object of labels", maps[i]);
    json_object_foreach(v, k, x) if (!json_is_string(x) || !*k) return vs_error_set(
        err, EINVAL, "%s.%s: expected a non-empty key and a string value", maps[i], k);
    json_object_set(guest, maps[i], v);
    if (!(keep_labels && !strcmp(maps[i], "Labels")))
      json_object_del(body, maps[i]);
  }
  json_t *node = json_object_get(body, "Node");
  if (node && !json_is_null(node)) {
    if (!json_is_string(node) || !vd_vm_name_valid(json_string_value(node)))
      return vs_error_set(err, EINVAL, "Node: expected a node's name");
    json_object_set(guest, "Node", node);
  }
  json_object_del(body, "Node");
  json_t *start = json_object_get(body, "Start");
  if (start && !json_is_boolean(start))
    return vs_error_set(err, EINVAL, "Start: expected true or false");
  json_object_set_new(guest, "Start", json_boolean(json_is_true(start)));
  json_object_del(body, "Start");
  return 0;
}

/* The record as the watch's copy has it, or (not loaded, or not there: a copy that lags, or a
 * record removed) as etcd has it. */
static json_t *record_now(vd_cluster *cl, const char *name, int64_t *rev, vs_error **err) {
  _cleanup_free_ char *key = guest_key(name);
  json_t *rec = vd_cache_get(cl, key, rev);
  return rec ? rec : vd_guest_record_get(cl, name, rev, err);
}

/* Until the watch's copy changes (or timeout_ms). */
static void wait_change(vd_cluster *cl, int timeout_ms) {
  struct timespec until = vs_realtime_after_ms(timeout_ms);
  pthread_mutex_lock(&cl->lock);
  if (!cl->stop)
    pthread_cond_timedwait(&cl->guests_cond, &cl->lock, &until);
  pthread_mutex_unlock(&cl->lock);
}

void vd_cluster_wait_created(vd_call *c, const char *name, const char *kind) {
  vd_cluster *cl = &c->d->cluster;
  for (time_t end = time(NULL) + CREATE_WAIT_S; time(NULL) < end;) {
    vs_error *e = NULL;
    int64_t rev;
    json_t *rec = record_now(cl, name, &rev, &e);
    if (!rec) {
      if (e)
        vd_call_error(c, 503, "cluster store: %s", e->msg);
      else
        vd_call_error(c, 409, "%s %s was removed while it was being created", kind, name);
      vs_error_free(e);
      return;
    }
    const char *phase = str(rec, "Phase");
    if (phase && (!strcmp(phase, "refused") || !strcmp(phase, "failed"))) {
      _cleanup_free_ char *key = guest_key(name);
      bool gone = false;
      vc_etcd_delete_if(cl->etcd, key, rev, &gone, &e);
      vs_error_free(e);
      bool refused = !strcmp(phase, "refused");
      vd_call_error(c, refused ? 409 : 500, "%s %s %s: %s",
                    refused ? "cannot place" : "cannot create", kind, name,
                    str(rec, "Reason") ? str(rec, "Reason") : "no reason given");
      json_decref(rec);
      return;
    }
    if (phase && (!strcmp(phase, "created") || !strcmp(phase, "running"))) {
      vd_call_json(c, 201,
                   json_pack("{s:s, s:s, s:s}", "Id", str(rec, "Id") ? str(rec, "Id") : "", "Name",
                             name, "Node", str(rec, "Node") ? str(rec, "Node") : ""));
      json_decref(rec);
      return;
    }
    json_decref(rec);
    /* woken by the watch; the timeout only bounds a change missed between look and wait */
    wait_change(cl, 200);
  }
  vd_call_error(c, 504,
                "%s %s: not created by its node within %d s (it stays in the cluster's "
                "records)",
                kind, name, CREATE_WAIT_S);
}

/* The create's configuration checked as a local create would, except its Image: the node the
 * guest lands on takes it from its store or pulls it (vd_vm_image_prepare), and the image's
 * defaults are not known here; the request's Cpus and Memory (or 1 CPU and the default memory)
 * are what the scheduler places. */
static int config_check(json_t *body, json_t *cfg, json_t *disk, vs_error **err) {
  json_t *image = json_object_get(body, "Image");
  if (image && (!json_is_string(image) || !*json_string_value(image)))
    return vs_error_set(err, EINVAL, "Image: expected a reference such as registry/vm:tag");
  _cleanup_json_ json_t *rest = json_deep_copy(body);
  json_object_del(rest, "Image");
  return vd_vm_config_parse(rest, cfg, disk, err);
}

void vd_cluster_vm_create(vd_call *c, const char *name, json_t *body) {
  vd_cluster *cl = &c->d->cluster;
  vs_error *e = NULL;
  json_t *guest = json_pack("{s:s, s:s}", "Kind", "vm", "Name", name ? name : "");
  json_t *cfg = json_object(), *disk = json_object();
  if (!vd_vm_name_valid(name))
    vs_error_set(&e, EINVAL,
                 "VM name \"%s\": use 1 to 64 letters, digits, '_', '.' or '-', starting with a "
                 "letter or digit",
                 name ? name : "");
  else if (vd_cluster_take_placement(body, guest, false, &e) == 0 &&
           vd_cluster_take_pool(cl, body, guest, &e) == 0 &&
           config_check(body, cfg, disk, &e) < 0 && e->errnum == 0)
    e->errnum = EINVAL;
  if (!e) {
    json_object_set(guest, "Cpus", json_object_get(cfg, "Cpus"));
    json_object_set(guest, "Memory", json_object_get(cfg, "Memory"));
    json_object_del(body, "Name");
    json_object_set(guest, "Spec", body);
    json_object_set_new(guest, "Phase", json_string("pending"));
    json_object_set_new(guest, "Origin", json_string(cl->node_name));
    char *now = vd_now();
    json_object_set_new(guest, "Created", json_string(now));
    free(now);
  }
  json_decref(cfg);
  json_decref(disk);
  json_decref(body);
  if (e) {
    json_decref(guest);
    vd_call_fail(c, e);
    vs_error_free(e);
    return;
  }
  bool ok = false;
  if (vd_guest_record_put(cl, name, guest, 0, &ok, &e) < 0) {
    vd_call_error(c, 503, "cluster store: %s", e->msg);
    vs_error_free(e);
  } else if (!ok) {
    vd_call_error(c, 409, "the name %s is already in use by a VM of the cluster", name);
  } else {
    vd_cluster_wait_created(c, name, "VM");
  }
  json_decref(guest);
}

bool vd_cluster_vm_delete(vd_call *c, bool force) {
  vd_cluster *cl = &c->d->cluster;
  _cleanup_free_ char *key = guest_key(c->arg);
  vs_error *e = NULL;
  int64_t rev;
  json_t *rec = vd_guest_record_get(cl, c->arg, &rev, &e);
  if (!rec) {
    if (!e)
      return false; /* not a guest of the cluster: a VM of this node alone */
    vd_call_error(c, 503, "cluster store: %s", e->msg);
    vs_error_free(e);
    return true;
  }
  const char *node = str(rec, "Node");
  bool here = node && !strcmp(node, cl->node_name);
  bool running = !strcmp(str(rec, "Phase") ? str(rec, "Phase") : "", "running");
  if (running && !force && !here) {
    vd_call_error(c, 409, "VM %s is running on node %s: stop it first or force the removal", c->arg,
                  node);
    json_decref(rec);
    return true;
  }
  vd_vm *vm = here ? vd_vm_claim_name(c->d->vms, c->arg, &e) : NULL;
  if (here && !vm && e->errnum != ENOENT) {
    vd_call_fail(c, e);
    goto out;
  }
  vs_error_free(e);
  e = NULL;
  if (vm && vd_vm_remove(c->d, vm, force, &e) < 0) {
    vd_vm_release(c->d->vms, vm);
    vd_call_fail(c, e);
    goto out;
  }
  /* the record goes last: another node's reconciler removes its VM when it sees it gone */
  if (vc_etcd_delete(cl->etcd, key, false, NULL, &e) < 0)
    vd_call_error(c, 503, "cluster store: %s", e->msg);
  else
    vd_call_status(c, 204);
out:
  vs_error_free(e);
  json_decref(rec);
  return true;
}

/* GET /vessel/v1/guests: every guest of the cluster, whichever node holds it (by name). */
void vd_h_cluster_guests(vd_call *c) {
  vc_range r;
  if (!vd_cluster_read_prefix(c, GUESTS, &r))
    return;
  static const char *const shown[] = {"Kind",  "Name",    "Node",     "Phase",  "Reason",  "Id",
                                      "Cpus",  "Memory",  "Labels",   "Origin", "Created", "Pool",
                                      "Image", "Command", "Failover", "Moved"};
  json_t *out = json_array();
  for (size_t i = 0; i < r.n; i++) {
    json_t *rec = vd_guest_record_of(&r.kvs[i]);
    if (!rec || !str(rec, "Name")) {
      if (rec)
        json_decref(rec);
      continue;
    }
    json_t *g = json_object();
    for (size_t k = 0; k < ARRAY_SIZE(shown); k++) {
      json_t *v = json_object_get(rec, shown[k]);
      if (v)
        json_object_set(g, shown[k], v);
    }
    json_array_append_new(out, g);
    json_decref(rec);
  }
  vc_range_clear(&r);
  vd_call_json(c, 200, out);
}

/* ------------------------------------------------------------- the scheduler */

bool vd_cluster_sleep(vd_cluster *cl, int ms) {
  struct timespec until = vs_realtime_after_ms(ms);
  pthread_mutex_lock(&cl->lock);
  if (!cl->stop)
    pthread_cond_timedwait(&cl->cond, &cl->lock, &until);
  bool stop = cl->stop;
  pthread_mutex_unlock(&cl->lock);
  return stop;
}

/* Leadership: the leader key, held under this node's lease (it goes when the node does). Its
 * revision while this node holds it guards every placement (write_decisions): a node that
 * lost the key (its lease ended) cannot place anything, even before it notices. */
static bool campaign(vd_cluster *cl) {
  bool ok = false;
  vc_range cur;
  vs_error *e = NULL;
  int64_t at = 0, lease = vd_cluster_lease(cl);
  if (vc_etcd_put_if(cl->etcd, LEADER_KEY, cl->node_name, strlen(cl->node_name), lease, 0, &ok,
                     &cur, &at, &e) < 0) {
    vs_log_debug("cluster: campaign: %s", e->msg);
    vs_error_free(e);
    return false;
  }
  if (ok) {
    cl->leader_revision = at;
  } else {
    ok = cur.n == 1 && !strcmp(cur.kvs[0].value, cl->node_name) && cur.kvs[0].lease == lease;
    cl->leader_revision = ok ? cur.kvs[0].mod_revision : 0;
  }
  vc_range_clear(&cur);
  return ok;
}

typedef struct pending {
  json_t *rec;
  const char *key;
  int64_t rev, created;
  bool failover;    /* placed again: its node is down (cluster_ha.c) */
  const char *pool; /* placed in this pool of the cluster (its key guards the write) */
  int64_t pool_rev;
} pending;

static int by_creation(const void *a, const void *b) {
  const pending *x = a, *y = b;
  return x->created < y->created ? -1 : x->created > y->created;
}

/* The guards of a transaction: the leader key, and the pools its placements were admitted to
 * (a pool removed or changed meanwhile fails the write). 0 when leadership is unknown. */
static size_t guards(vd_cluster *cl, const pending *pend, size_t n, vc_put *out, char **pool_keys) {
  size_t k = 0;
  out[k++] = (vc_put){LEADER_KEY, NULL, 0, 0, cl->leader_revision};
  for (size_t i = 0; i < n; i++) {
    if (!pend[i].pool)
      continue;
    _cleanup_free_ char *key = vs_asprintf("/vessel/pools/%s", pend[i].pool);
    bool dup = false;
    for (size_t j = 1; j < k && !dup; j++)
      dup = !strcmp(out[j].key, key);
    if (dup)
      continue;
    pool_keys[k] = steal_pointer(&key);
    out[k] = (vc_put){pool_keys[k], NULL, 0, 0, pend[i].pool_rev};
    k++;
  }
  return k;
}

/* Write the decisions of pend[0..n) in one transaction, guarded; when it fails (some record
 * changed), each alone, so that the others still land. Returns false when some write failed:
 * the copy of the records was stale. */
static bool write_decisions(vd_cluster *cl, pending *pend, size_t n) {
  vc_put puts[2 * BATCH + 1];
  char *docs[BATCH];
  char *pool_keys[BATCH + 1] = {0};
  size_t ng = guards(cl, pend, n, puts, pool_keys);
  for (size_t i = 0; i < n; i++) {
    docs[i] = json_dumps(pend[i].rec, JSON_COMPACT | JSON_SORT_KEYS);
    puts[ng + i] = (vc_put){pend[i].key, docs[i], strlen(docs[i]), 0, pend[i].rev};
  }
  bool ok = false, all = true;
  int64_t at = 0;
  vs_error *e = NULL;
  bool batch_ok = vc_etcd_put_all_if(cl->etcd, puts, ng + n, &ok, &at, &e) == 0 && ok;
  vs_error_free(e);
  for (size_t i = 0; i < n; i++) {
    if (batch_ok) {
      vd_cache_note_put(cl, puts[ng + i].key, docs[i], puts[ng + i].len, at);
      continue;
    }
    e = NULL;
    vc_put one[3];
    char *one_keys[2] = {0};
    size_t k = guards(cl, &pend[i], 1, one, one_keys); /* its own pool only */
    one[k] = puts[ng + i];
    if (vc_etcd_put_all_if(cl->etcd, one, k + 1, &ok, &at, &e) < 0 || !ok) {
      vs_log_debug("cluster: placing %s: %s", one[k].key, e ? e->msg : "changed meanwhile");
      all = false;
    } else {
      vd_cache_note_put(cl, one[k].key, docs[i], one[k].len, at);
    }
    vs_error_free(e);
    free(one_keys[1]);
  }
  for (size_t i = 0; i < n; i++)
    free(docs[i]);
  for (size_t i = 0; i < BATCH + 1; i++)
    free(pool_keys[i]);
  return batch_ok || all;
}

/* The guests' records and the nodes, from the watch's copy (or from etcd while it is not
 * loaded). The records before the nodes: a node that comes back and claims a guest of its own
 * (cluster_ha.c) between the two reads is seen ready, or changed the record's revision. */
static int pass_inputs(vd_daemon *d, vc_range *r, json_t **nodes, json_t **pools, vs_error **err) {
  vd_cluster *cl = &d->cluster;
  vc_range pr;
  if (vd_cache_range(cl, GUESTS, r)) {
    *nodes = vd_cluster_nodes_cached(d, false, err);
    vd_cache_range(cl, VD_POOLS_PREFIX, &pr);
  } else {
    if (vc_etcd_get_prefix(cl->etcd, GUESTS, 0, r, err) < 0)
      return -1;
    *nodes = vd_cluster_nodes(d, err);
    if (*nodes && vc_etcd_get_prefix(cl->etcd, VD_POOLS_PREFIX, 0, &pr, err) < 0) {
      json_decref(*nodes);
      *nodes = NULL;
    }
  }
  if (!*nodes) {
    vc_range_clear(r);
    return -1;
  }
  *pools = vd_cluster_pools_of(&pr);
  vc_range_clear(&pr);
  return 0;
}

static int64_t now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* One guest's decision: placed (or placed again by HA), refused, or left for the next pass. */
static bool decide(json_t *nodes, json_t *pools, const json_t *images, json_t *placed, pending *p) {
  char *node = NULL, *reason = NULL;
  vs_error *e = NULL;
  json_t *req = vd_cluster_pool_admit(pools, nodes, placed, p->rec, &p->pool_rev, &reason);
  json_t *have_image = vd_cluster_image_nodes(images, p->rec);
  if (req && have_image) { /* image locality: a copy, the record is written as it is */
    json_t *copy = json_deep_copy(req);
    json_object_set(copy, "ImageNodes", have_image);
    json_decref(req);
    req = copy;
  }
  if (req && vc_place(nodes, placed, req, &node, &reason, &e) < 0) {
    reason = vs_strdup(e->msg);
    vs_error_free(e);
  }
  json_decref(req);
  p->pool = node ? str(p->rec, "Pool") : NULL;
  bool decided = true;
  if (node && p->failover) {
    vd_ha_failover_placed(p->rec, node);
    json_array_append(placed, p->rec);
  } else if (node) {
    json_object_set_new(p->rec, "Node", json_string(node));
    json_object_set_new(p->rec, "Phase", json_string("placed"));
    json_array_append(placed, p->rec);
    vs_log_debug("cluster: placed %s on %s", str(p->rec, "Name"), node);
  } else if (p->failover) {
    /* it stays on its node, which is down, and is tried again at the next pass */
    vs_log_debug("cluster: cannot restart %s elsewhere yet: %s", str(p->rec, "Name"), reason);
    decided = false;
  } else {
    json_object_set_new(p->rec, "Phase", json_string("refused"));
    json_object_set_new(p->rec, "Reason", json_string(reason));
    vs_log_info("cluster: cannot place %s: %s", str(p->rec, "Name"), reason);
  }
  free(node);
  free(reason);
  return decided;
}

/* One pass: place every pending guest, and every guest of a node that is down which HA restarts
 * elsewhere, oldest first, each seeing the ones placed before it. Returns 1 when a write found
 * the copy of the records stale. */
static int schedule_pass(vd_daemon *d, vs_error **err) {
  vd_cluster *cl = &d->cluster;
  vc_range r;
  json_t *nodes, *pools;
  int64_t t0 = now_us();
  if (pass_inputs(d, &r, &nodes, &pools, err) < 0)
    return -1;
  json_t *ready = vd_ha_ready_nodes(nodes);
  json_t *placed = json_array();
  pending *pend = vs_malloc0(sizeof(pending) * (r.n + 1));
  pending *decided = vs_malloc0(sizeof(pending) * (r.n + 1));
  size_t np = 0, nd = 0;
  for (size_t i = 0; i < r.n; i++) {
    json_t *rec = vd_guest_record_of(&r.kvs[i]);
    const char *phase = rec ? str(rec, "Phase") : NULL;
    if (!phase) {
      if (rec)
        json_decref(rec);
      continue;
    }
    pending p = {.rec = rec,
                 .key = r.kvs[i].key,
                 .rev = r.kvs[i].mod_revision,
                 .created = r.kvs[i].create_revision};
    if (!strcmp(phase, "pending")) {
      pend[np++] = p;
      continue;
    }
    if (vd_ha_failover_wanted(ready, rec)) {
      vd_ha_failover_prepare(rec);
      p.failover = true;
      pend[np++] = p;
      continue;
    }
    if (strcmp(phase, "refused") != 0 && strcmp(phase, "failed") != 0 && str(rec, "Node"))
      json_array_append(placed, rec);
    json_decref(rec);
  }
  qsort(pend, np, sizeof(*pend), by_creation);
  json_t *images = np ? vd_cluster_image_index(cl) : NULL;
  for (size_t i = 0; i < np; i++)
    if (decide(nodes, pools, images, placed, &pend[i]))
      decided[nd++] = pend[i];
  json_decref(images);
  bool stale = false;
  int64_t t1 = now_us();
  for (size_t i = 0; i < nd; i += BATCH)
    stale |= !write_decisions(cl, decided + i, nd - i < BATCH ? nd - i : BATCH);
  if (nd) /* where a placement's time goes (docs/performance.md) */
    vs_log_debug("cluster: pass: %zu decided of %zu records in %lld us, written in %lld us", nd,
                 r.n, (long long)(t1 - t0), (long long)(now_us() - t1));
  for (size_t i = 0; i < np; i++)
    json_decref(pend[i].rec);
  free(pend);
  free(decided);
  vc_range_clear(&r);
  json_decref(placed);
  json_decref(ready);
  json_decref(nodes);
  json_decref(pools);
  return stale ? 1 : 0;
}

/* What a change of one key concerns on this node: the scheduler (a guest to place, one gone,
 * a node or a pool changed), the reconciler (a guest on this node, arriving, gone, or one this
 * node has a VM of), the migrator (a guest with a migration, or gone). The others' passes read
 * the whole list: waking them for every record of the cluster made a placement cost three
 * nodes' full reads. */
static void classify(vd_daemon *d, const vc_event *ev, bool *sched, bool *recon, bool *mig) {
  vd_cluster *cl = &d->cluster;
  const char *key = ev->kv.key;
  if (!key || strncmp(key, GUESTS, strlen(GUESTS)) != 0) {
    *sched |= key && (!strncmp(key, "/vessel/node", 12) ||
                      !strncmp(key, VD_POOLS_PREFIX, strlen(VD_POOLS_PREFIX)));
    return;
  }
  if (ev->type == VC_EVENT_DELETE) {
    *sched = *recon = *mig = true;
    return;
  }
  json_t *rec = vd_guest_record_of(&ev->kv);
  if (!rec) {
    *sched = *recon = *mig = true;
    return;
  }
  const char *phase = str(rec, "Phase"), *node = str(rec, "Node"), *name = str(rec, "Name");
  const char *kind = str(rec, "Kind");
  *sched |= phase && !strcmp(phase, "pending");
  bool migration = json_object_get(rec, "Migration") != NULL;
  *mig |= migration;
  /* a VM placed here (a placeholder is made by no node), or one this node has a VM of */
  bool made_here = kind && (!strcmp(kind, "vm") || !strcmp(kind, "container"));
  bool mine = made_here && node && !strcmp(node, cl->node_name);
  if (!mine && !migration && name) {
    vd_vms *t = d->vms;
    pthread_mutex_lock(&t->lock);
    mine = vd_vm_find_locked(t, name) != NULL;
    pthread_mutex_unlock(&t->lock);
    pthread_mutex_lock(&d->lock);
    mine = mine || vd_ctr_find_name(d, name) != NULL;
    pthread_mutex_unlock(&d->lock);
  }
  *recon |= mine || migration;
  json_decref(rec);
}

/* The watcher: every message goes into the copy and wakes the passes it concerns. */
static int on_change(void *arg, const vc_watch_msg *m) {
  vd_daemon *d = arg;
  vd_cluster *cl = &d->cluster;
  if (m->n == 0 && !m->created)
    return 0;
  /* a watch made (again): everything may have changed */
  bool wake[3] = {m->created, m->created, m->created}; /* scheduler, reconciler, migrator */
  for (size_t i = 0; i < m->n; i++)
    classify(d, &m->events[i], &wake[0], &wake[1], &wake[2]);
  pthread_mutex_lock(&cl->lock);
  vd_cache_apply_locked(cl, m);
  if (m->revision > cl->guests_revision)
    cl->guests_revision = m->revision;
  cl->schedule_dirty |= wake[0];
  cl->reconcile_dirty |= wake[1];
  cl->migrate_dirty |= wake[2];
  pthread_cond_broadcast(&cl->guests_cond);
  pthread_mutex_unlock(&cl->lock);
  return 0;
}

static void *watcher_thread(void *arg) {
  vd_daemon *d = arg;
  vd_cluster *cl = &d->cluster;
  while (!cl->stop) {
    vs_error *e = NULL;
    pthread_mutex_lock(&cl->lock);
    bool loaded = cl->cache_ok;
    pthread_mutex_unlock(&cl->lock);
    if (!loaded && vd_cache_reload(cl, NULL, &e) < 0) {
      vs_log_debug("cluster: %s", e->msg);
      vs_error_free(e);
      vd_cluster_sleep(cl, 500);
      continue;
    }
    pthread_mutex_lock(&cl->lock);
    int64_t from = cl->guests_revision + 1;
    pthread_mutex_unlock(&cl->lock);
    if (vc_etcd_watch(cl->etcd, "/vessel/", true, from, on_change, d, &cl->stop, 0, &e) < 0) {
      vs_log_debug("cluster: %s", e->msg);
      if (e->errnum == ECANCELED) { /* compacted: read everything again, watch from there */
        pthread_mutex_lock(&cl->lock);
        cl->cache_ok = false;
        pthread_mutex_unlock(&cl->lock);
      }
      vs_error_free(e);
      vd_cluster_sleep(cl, 500);
    }
  }
  return NULL;
}

/* Until *dirty (then cleared: a change after this point marks it again) or timeout_ms. */
static void wait_dirty(vd_cluster *cl, bool *dirty, int timeout_ms) {
  struct timespec until = vs_realtime_after_ms(timeout_ms);
  pthread_mutex_lock(&cl->lock);
  while (!*dirty && !cl->stop)
    if (pthread_cond_timedwait(&cl->guests_cond, &cl->lock, &until) != 0)
      break;
  *dirty = false;
  pthread_mutex_unlock(&cl->lock);
}

static void *scheduler_thread(void *arg) {
  vd_daemon *d = arg;
  vd_cluster *cl = &d->cluster;
  bool was_leader = false;
  int64_t campaigned = 0;
  while (!cl->stop) {
    /* the key stays while the lease does: asking again once a second is enough, and each ask
     * is an etcd write (a commit) that a pass per placement would pay */
    bool leader = was_leader;
    if (!was_leader || vd_ha_now_ms() - campaigned >= 1000) {
      leader = campaign(cl);
      campaigned = vd_ha_now_ms();
    }
    if (leader != was_leader)
      vs_log_info(leader ? "cluster: this node is the scheduler now (leader)"
                         : "cluster: this node is no longer the scheduler");
    if (leader && !was_leader) {
      /* what an earlier leader placed is in the copy before this one places anything */
      vs_error *e = NULL;
      if (vd_cache_reload(cl, NULL, &e) < 0) {
        vs_log_debug("cluster: %s", e->msg);
        vs_error_free(e);
      }
    }
    was_leader = leader;
    if (!leader) {
      /* the leader key goes with its node's lease: try again now and then */
      vd_cluster_sleep(cl, 1000);
      continue;
    }
    vs_error *e = NULL;
    int rc = schedule_pass(d, &e);
    if (rc < 0) {
      vs_log_warn("cluster: scheduling: %s", e->msg);
      vs_error_free(e);
      vd_cluster_sleep(cl, 500);
      continue;
    }
    if (rc == 1) { /* a write found the copy stale: read it again, and the leadership */
      campaigned = 0;
      if (vd_cache_reload(cl, NULL, &e) < 0) {
        vs_log_debug("cluster: %s", e->msg);
        vs_error_free(e);
      }
      vd_cluster_sleep(cl, 20); /* a write that keeps failing does not spin */
      continue;
    }
    wait_dirty(cl, &cl->schedule_dirty, 2000);
  }
  return NULL;
}

/* ------------------------------------------------------------- the reconciler */

/* Make (and start) the VM of a record placed on this node; the record then says so. */
static void make_local(vd_daemon *d, json_t *rec, int64_t rev) {
  vd_cluster *cl = &d->cluster;
  const char *name = str(rec, "Name");
  json_t *spec = json_object_get(rec, "Spec");
  vs_error *e = NULL;
  vd_vm *vm = vd_vm_claim_name(d->vms, name, &e);
  if (vm && !json_object_get(vm->rec, "Cluster")) {
    vd_vm_release(d->vms, vm);
    vm = NULL;
    vs_error_set(&e, EEXIST, "node %s has a VM of its own named %s", cl->node_name, name);
  } else if (!vm && e->errnum == ENOENT) {
    vs_error_free(e);
    e = NULL;
    json_t *extra = vd_cluster_guest_extra(cl, rec, &e);
    vm = extra && json_is_object(spec) ? vd_vm_new_from_request(d, name, spec, extra, &e) : NULL;
    if (!vm && !e)
      vs_error_set(&e, EINVAL, "the record has no Spec");
    json_decref(extra);
  }
  if (vm && json_is_true(json_object_get(rec, "Start")) && !vd_vm_running(d->vms, vm) &&
      vd_vm_start(d, vm, &e) < 0)
    vs_error_wrap(&e, "start");
  json_t *next = json_deep_copy(rec);
  if (vm && !e) {
    json_object_set_new(next, "Id", json_string(vm->id));
    vd_ha_note_made(next, vm->rec);
    json_object_set_new(next, "Phase",
                        json_string(vd_vm_running(d->vms, vm) ? "running" : "created"));
    vs_log_info("cluster: made VM %s placed on this node", name);
  } else {
    json_object_set_new(next, "Phase", json_string("failed"));
    _cleanup_free_ char *why = vs_asprintf("on node %s: %s", cl->node_name, e ? e->msg : "unknown");
    json_object_set_new(next, "Reason", json_string(why));
    vs_log_warn("cluster: cannot make VM %s: %s", name, e ? e->msg : "unknown");
  }
  if (vm)
    vd_vm_release(d->vms, vm);
  vs_error_free(e);
  e = NULL;
  bool ok = false;
  if (vd_guest_record_put(cl, name, next, rev, &ok, &e) < 0 || !ok)
    vs_log_debug("cluster: recording VM %s: %s", name, e ? e->msg : "changed meanwhile");
  vs_error_free(e);
  json_decref(next);
}

/* The Phase a record of this node's VM should have: running while the user wants it to run
 * (started, not stopped or killed by a request since: a VMM that died still wants to run, and
 * HA restarts it elsewhere if the node goes), created once stopped by a request. NULL: as it is. */
static const char *wanted_phase(vd_vms *t, const char *name) {
  pthread_mutex_lock(&t->lock);
  const vd_vm *vm = vd_vm_find_locked(t, name);
  const char *phase = !vm ? NULL : vm->manual_stop ? "created" : vm->pid > 0 ? "running" : NULL;
  pthread_mutex_unlock(&t->lock);
  return phase;
}

/* A start or stop of the VM on this node, by a request to this node, written back to the record
 * (the cluster's desired state follows the user; HA acts on it). */
static void sync_phase(vd_daemon *d, const json_t *rec, int64_t rev) {
  const char *name = str(rec, "Name");
  const char *want = wanted_phase(d->vms, name);
  if (!want || !strcmp(want, str(rec, "Phase")))
    return;
  json_t *next = json_deep_copy(rec);
  json_object_set_new(next, "Phase", json_string(want));
  json_object_set_new(next, "Start", json_boolean(!strcmp(want, "running")));
  vs_error *e = NULL;
  bool ok = false;
  if (vd_guest_record_put(&d->cluster, name, next, rev, &ok, &e) < 0 || !ok)
    vs_log_debug("cluster: recording VM %s as %s: %s", name, want,
                 e ? e->msg : "changed meanwhile");
  else
    vs_log_info("cluster: VM %s is %s on this node", name, want);
  vs_error_free(e);
  json_decref(next);
}

void vd_cluster_note_local_change(vd_daemon *d) {
  vd_cluster *cl = &d->cluster;
  if (!cl->enabled)
    return;
  pthread_mutex_lock(&cl->lock);
  cl->reconcile_dirty = true;
  pthread_cond_broadcast(&cl->guests_cond);
  pthread_mutex_unlock(&cl->lock);
}

/* VMs this node made for the cluster whose record is gone or placed elsewhere: removed. The disk
 * on shared storage goes with a guest that is gone, not with one that another node runs now. */
static void remove_orphans(vd_daemon *d, json_t *mine, json_t *all) {
  vd_vms *t = d->vms;
  json_t *names = json_array();
  pthread_mutex_lock(&t->lock);
  for (size_t i = 0; i < t->n; i++)
    if (json_object_get(t->vms[i]->rec, "Cluster") && !json_object_get(mine, t->vms[i]->name))
      json_array_append_new(names, json_string(t->vms[i]->name));
  pthread_mutex_unlock(&t->lock);
  size_t i;
  json_t *n;
  json_array_foreach(names, i, n) {
    vs_error *e = NULL;
    vd_vm *vm = vd_vm_claim_name(t, json_string_value(n), &e);
    if (vm && json_object_get(all, json_string_value(n))) {
      pthread_mutex_lock(&t->lock);
      json_object_del(vm->rec, "DiskDir"); /* not saved: the record goes first in the removal */
      pthread_mutex_unlock(&t->lock);
    }
    if (vm && vd_vm_remove(d, vm, true, &e) < 0)
      vd_vm_release(t, vm);
    if (e)
      vs_log_debug("cluster: removing VM %s: %s", json_string_value(n), e->msg);
    else
      vs_log_info("cluster: removed VM %s, no longer the cluster's on this node",
                  json_string_value(n));
    vs_error_free(e);
  }
  json_decref(names);
}

static int reconcile_pass(vd_daemon *d, int64_t *revision, vs_error **err) {
  vd_cluster *cl = &d->cluster;
  vc_range r;
  if (vc_etcd_get_prefix(cl->etcd, GUESTS, 0, &r, err) < 0)
    return -1;
  *revision = r.revision;
  json_t *mine = json_object(), *all = json_object(), *ctrs = json_object();
  for (size_t i = 0; i < r.n; i++) {
    json_t *rec = vd_guest_record_of(&r.kvs[i]);
    if (rec && vd_vm_name_valid(str(rec, "Name")))
      json_object_set_new(all, str(rec, "Name"), json_true());
    const char *node = rec ? str(rec, "Node") : NULL;
    const char *phase = rec ? str(rec, "Phase") : NULL;
    const char *kind = rec ? str(rec, "Kind") : NULL;
    if (rec && vd_cluster_migrating_to(rec, cl->node_name) && vd_vm_name_valid(str(rec, "Name")))
      json_object_set(mine, str(rec, "Name"), rec); /* arriving by migration: its VM stays */
    bool container = kind && !strcmp(kind, "container");
    if (container && node && phase && !strcmp(node, cl->node_name) &&
        vd_vm_name_valid(str(rec, "Name"))) {
      if (strcmp(phase, "pending") != 0 && strcmp(phase, "refused") != 0)
        json_object_set(ctrs, str(rec, "Name"), rec);
      vd_cctr_reconcile(d, rec, r.kvs[i].mod_revision);
    }
    if (!node || !phase || !kind || strcmp(node, cl->node_name) != 0 || strcmp(kind, "vm") != 0 ||
        !vd_vm_name_valid(str(rec, "Name"))) {
      if (rec)
        json_decref(rec);
      continue;
    }
    if (strcmp(phase, "pending") != 0 && strcmp(phase, "refused") != 0)
      json_object_set(mine, str(rec, "Name"), rec);
    /* placed: make it; created or running: make it again if this node lost it */
    bool have = false;
    if (strcmp(phase, "created") == 0 || strcmp(phase, "running") == 0) {
      vd_vms *t = d->vms;
      pthread_mutex_lock(&t->lock);
      have = vd_vm_find_locked(t, str(rec, "Name")) != NULL;
      pthread_mutex_unlock(&t->lock);
    }
    if (!strcmp(phase, "placed") ||
        ((!strcmp(phase, "created") || !strcmp(phase, "running")) && !have))
      make_local(d, rec, r.kvs[i].mod_revision);
    else if (have && !vd_cluster_migration_in_progress(rec))
      sync_phase(d, rec, r.kvs[i].mod_revision);
    json_decref(rec);
  }
  remove_orphans(d, mine, all);
  vd_cctr_remove_orphans(d, ctrs);
  json_decref(ctrs);
  json_decref(mine);
  json_decref(all);
  vc_range_clear(&r);
  return 0;
}

static void *reconciler_thread(void *arg) {
  vd_daemon *d = arg;
  vd_cluster *cl = &d->cluster;
  while (!cl->stop) {
    int64_t rev = 0;
    vs_error *e = NULL;
    if (reconcile_pass(d, &rev, &e) < 0) {
      vs_log_warn("cluster: reconciling: %s", e->msg);
      vs_error_free(e);
      vd_cluster_sleep(cl, 500);
      continue;
    }
    wait_dirty(cl, &cl->reconcile_dirty, 5000);
  }
  return NULL;
}

int vd_cluster_start_guests(vd_daemon *d, vs_error **err) {
  vd_cluster *cl = &d->cluster;
  if (vd_cluster_thread_start(d, &cl->watcher, watcher_thread, "the watch of guests", err) < 0 ||
      vd_cluster_thread_start(d, &cl->scheduler, scheduler_thread, "the scheduler", err) < 0)
    return -1;
  return vd_cluster_thread_start(d, &cl->reconciler, reconciler_thread, "the reconciler", err);
}
