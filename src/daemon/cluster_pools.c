/* Pools of the cluster (docs/cluster.md): a pool whose capacity is the sum of its nodes' — every
 * ready node, or those whose labels match its NodeSelector — times its overcommit ratios, and
 * whose admission is cluster-wide: the scheduler admits a guest against what the pool's guests
 * on every node request, and writes the guest's placement in the same etcd transaction that
 * checks the scheduler still leads and the pool is unchanged (write_decisions), so two creates
 * on two nodes at once are decided one after the other and never both take the last room.
 *
 * A pool of the cluster is /vessel/pools/NAME: {Name, NodeSelector, CpuOvercommit,
 * MemoryOvercommit, Created}. The local pools of a node (pools.c) stay as they are; a pool
 * create with "Cluster": true (or a NodeSelector) on a node of a cluster makes one of the
 * cluster's, and a VM of the cluster naming it is admitted by the scheduler and made on its node
 * in that node's default pool (its cgroup bounds the node's guests; the pool bounds what the
 * cluster admits). */
#include "daemon/internal.h"
#include "daemon/vms.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define GUESTS_PREFIX "/vessel/guests/"

static const char *str(const json_t *o, const char *f) {
  return json_string_value(json_object_get(o, f));
}

static double num(const json_t *o, const char *f) {
  return json_number_value(json_object_get(o, f));
}

json_t *vd_cluster_pools_of(const vc_range *r) {
  json_t *out = json_object();
  for (size_t i = 0; i < r->n; i++) {
    json_t *p = vd_guest_record_of(&r->kvs[i]); /* a JSON object, checked */
    const char *name = r->kvs[i].key + strlen(VD_POOLS_PREFIX);
    if (p && vd_vm_name_valid(name))
      json_object_set_new(
          out, name, json_pack("{s:o, s:I}", "Pool", p, "Rev", (json_int_t)r->kvs[i].mod_revision));
    else if (p)
      json_decref(p);
  }
  return out;
}

/* Every key of want is in labels with the same value. */
static bool labels_match(const json_t *labels, const json_t *want) {
  const char *k;
  json_t *v;
  json_object_foreach((json_t *)want, k, v) {
    const char *have = str(labels, k);
    if (!have || !json_is_string(v) || strcmp(have, json_string_value(v)) != 0)
      return false;
  }
  return true;
}

/* The pool's capacity: the sum of its ready nodes' CPUs and memory; *members their names. */
static void pool_capacity(const json_t *pool, const json_t *nodes, double *cpus, double *mem,
                          json_t *members) {
  const json_t *sel = json_object_get(pool, "NodeSelector");
  size_t i;
  json_t *n;
  *cpus = *mem = 0;
  json_array_foreach((json_t *)nodes, i, n) {
    const char *status = str(n, "Status");
    if (!status || strcmp(status, "ready") != 0 ||
        (json_is_object(sel) && !labels_match(json_object_get(n, "Labels"), sel)))
      continue;
    *cpus += num(n, "Cpus");
    *mem += num(n, "Memory");
    if (members)
      json_array_append_new(members, json_string(str(n, "Name") ? str(n, "Name") : "?"));
  }
}

/* What the pool's guests placed so far request; *list their names and nodes. */
static void pool_usage(const char *name, const json_t *placed, double *cpus, double *mem,
                       json_t *list) {
  size_t i;
  json_t *g;
  *cpus = *mem = 0;
  json_array_foreach((json_t *)placed, i, g) {
    const char *p = str(g, "Pool");
    if (!p || strcmp(p, name) != 0)
      continue;
    *cpus += num(g, "Cpus");
    *mem += num(g, "Memory");
    if (list)
      json_array_append_new(list,
                            json_pack("{s:s, s:s}", "Name", str(g, "Name") ? str(g, "Name") : "?",
                                      "Node", str(g, "Node") ? str(g, "Node") : ""));
  }
}

static double ratio_of(const json_t *pool, const char *f) {
  double r = num(pool, f);
  return r >= 1.0 && r <= 100.0 ? r : 1.0;
}

json_t *vd_cluster_pool_admit(const json_t *pools, const json_t *nodes, const json_t *placed,
                              const json_t *rec, int64_t *pool_rev, char **reason) {
  const char *name = str(rec, "Pool");
  *pool_rev = 0;
  if (!name)
    return json_incref((json_t *)rec);
  json_t *entry = json_object_get(pools, name);
  json_t *pool = json_object_get(entry, "Pool");
  if (!pool) {
    *reason = vs_asprintf("no pool %s in the cluster", name);
    return NULL;
  }
  *pool_rev = (int64_t)json_integer_value(json_object_get(entry, "Rev"));
  double cap_cpus, cap_mem, used_cpus, used_mem;
  json_t *members = json_array();
  pool_capacity(pool, nodes, &cap_cpus, &cap_mem, members);
  pool_usage(name, placed, &used_cpus, &used_mem, NULL);
  double rc = ratio_of(pool, "CpuOvercommit"), rm = ratio_of(pool, "MemoryOvercommit");
  double left_cpus = cap_cpus * rc - used_cpus, left_mem = cap_mem * rm - used_mem;
  double cpus = num(rec, "Cpus"), mem = num(rec, "Memory");
  if (cpus > left_cpus + 1e-9 || mem > left_mem + 0.5) {
    size_t i;
    json_t *m;
    char *names = vs_strdup("");
    json_array_foreach(members, i, m) {
      char *n = vs_asprintf("%s%s%s", names, i ? ", " : "", json_string_value(m));
      free(names);
      names = n;
    }
    *reason = vs_asprintf(
        "pool %s cannot admit %.2f CPUs and %lld MiB: it has %.2f CPUs and %lld MiB left of "
        "%.2f CPUs x %.2f and %lld MiB x %.2f (%s%s)",
        name, cpus, (long long)vs_i64_saturate(mem / (1 << 20)), left_cpus > 0 ? left_cpus : 0,
        (long long)vs_i64_saturate(left_mem > 0 ? left_mem / (1 << 20) : 0), cap_cpus, rc,
        (long long)vs_i64_saturate(cap_mem / (1 << 20)), rm,
        *names ? "nodes " : "no ready node matches it", names);
    free(names);
    json_decref(members);
    return NULL;
  }
  json_decref(members);
  /* it lands on one of the pool's nodes: the pool's selector joins the guest's own */
  json_t *req = json_deep_copy(rec);
  json_t *sel = json_object_get(pool, "NodeSelector");
  if (json_is_object(sel) && json_object_size(sel)) {
    json_t *mine = json_object_get(req, "NodeSelector");
    if (!json_is_object(mine)) {
      mine = json_object();
      json_object_set_new(req, "NodeSelector", mine);
    }
    json_object_update(mine, sel);
  }
  return req;
}

/* ------------------------------------------------------------- the API */

static char *pool_key(const char *name) { return vs_asprintf(VD_POOLS_PREFIX "%s", name); }

bool vd_cluster_pool_wanted(const json_t *body) {
  return json_is_true(json_object_get(body, "Cluster")) ||
         json_object_get(body, "NodeSelector") != NULL;
}

static int parse_ratio(const json_t *body, const char *f, json_t *pool, vs_error **err) {
  json_t *v = json_object_get(body, f);
  if (!v || json_is_null(v)) {
    json_object_set_new(pool, f, json_real(1.0));
    return 0;
  }
  if (!json_is_number(v) || isnan(json_number_value(v)) || json_number_value(v) < 1.0 ||
      json_number_value(v) > 100.0)
    return vs_error_set(err, EINVAL, "%s: expected a number from 1 to 100 (1: no overcommit)", f);
  json_object_set_new(pool, f, json_real(json_number_value(v)));
  return 0;
}

static int parse_pool(const json_t *body, json_t *pool, vs_error **err) {
  static const char *const known[] = {"Name", "Cluster", "NodeSelector", "CpuOvercommit",
                                      "MemoryOvercommit"};
  const char *k;
  json_t *v;
  json_object_foreach((json_t *)body, k, v) {
    bool ok = false;
    for (size_t i = 0; i < ARRAY_SIZE(known); i++)
      ok |= !strcmp(k, known[i]);
    if (!ok)
      return vs_error_set(err, EINVAL,
                          "%s: not a field of a pool of the cluster (its capacity is the sum of "
                          "its nodes': Name, NodeSelector, CpuOvercommit, MemoryOvercommit)",
                          k);
  }
  const char *name = str(body, "Name");
  if (!vd_vm_name_valid(name))
    return vs_error_set(err, EINVAL,
                        "pool name \"%s\": use 1 to 64 letters, digits, '_', '.' or '-', "
                        "starting with a letter or digit",
                        name ? name : "");
  json_t *sel = json_object_get(body, "NodeSelector");
  if (sel && !json_is_null(sel)) {
    if (!json_is_object(sel))
      return vs_error_set(err, EINVAL, "NodeSelector: expected an object of labels");
    json_object_foreach(sel, k, v) if (!*k || !json_is_string(v)) return vs_error_set(
        err, EINVAL, "NodeSelector.%s: expected a non-empty key and a string value", k);
  }
  json_object_set_new(pool, "Name", json_string(name));
  json_object_set_new(pool, "NodeSelector",
                      json_is_object(sel) ? json_deep_copy(sel) : json_object());
  if (parse_ratio(body, "CpuOvercommit", pool, err) < 0 ||
      parse_ratio(body, "MemoryOvercommit", pool, err) < 0)
    return -1;
  char *now = vd_now();
  json_object_set_new(pool, "Created", json_string(now));
  free(now);
  return 0;
}

/* Write the new pool (create-only) and answer. */
static void pool_write(vd_call *c, json_t *pool) {
  vd_cluster *cl = &c->d->cluster;
  const char *name = str(pool, "Name");
  _cleanup_free_ char *key = pool_key(name);
  _cleanup_free_ char *doc = json_dumps(pool, JSON_COMPACT | JSON_SORT_KEYS);
  bool ok = false;
  int64_t at = 0;
  vs_error *e = NULL;
  if (vc_etcd_put_if(cl->etcd, key, doc, strlen(doc), 0, 0, &ok, NULL, &at, &e) < 0) {
    vd_call_error(c, 503, "cluster store: %s", e->msg);
  } else if (!ok) {
    vd_call_error(c, 409, "the name %s is already in use by a pool of the cluster", name);
  } else {
    vd_cache_note_put(cl, key, doc, strlen(doc), at);
    vd_call_json(c, 201, json_pack("{s:s}", "Name", name));
  }
  vs_error_free(e);
}

void vd_cluster_pool_create(vd_call *c, json_t *body) {
  vs_error *e = NULL;
  json_t *pool = json_object();
  if (parse_pool(body, pool, &e) < 0)
    vd_call_error(c, 400, "%s", e->msg);
  else
    pool_write(c, pool);
  vs_error_free(e);
  json_decref(pool);
}

/* The API's view of a pool of the cluster: its capacity now, what is admitted, what is left. */
/* A pool of the cluster as its member nodes and placed guests make it. */
typedef struct pool_figures {
  double cap_cpus, cap_mem;   /* the ready member nodes' sum */
  double used_cpus, used_mem; /* the requests of the guests placed in it */
  double cpu_ratio, mem_ratio;
  json_t *members, *guests; /* their names */
} pool_figures;

static void pool_figures_of(const char *name, const json_t *pool, const json_t *nodes,
                            const json_t *placed, pool_figures *f) {
  f->members = json_array();
  f->guests = json_array();
  pool_capacity(pool, nodes, &f->cap_cpus, &f->cap_mem, f->members);
  pool_usage(name, placed, &f->used_cpus, &f->used_mem, f->guests);
  f->cpu_ratio = ratio_of(pool, "CpuOvercommit");
  f->mem_ratio = ratio_of(pool, "MemoryOvercommit");
}

static void pool_figures_clear(pool_figures *f) {
  json_decref(f->members);
  json_decref(f->guests);
}

static json_t *pool_view(const char *name, const json_t *pool, const json_t *nodes,
                         const json_t *placed) {
  pool_figures f;
  pool_figures_of(name, pool, nodes, placed, &f);
  json_t *v = json_deep_copy(pool);
  json_object_set_new(v, "Cluster", json_true());
  json_object_set_new(v, "Cpus", json_integer(vs_i64_saturate(f.cap_cpus + 0.5)));
  json_object_set_new(v, "Memory", json_integer(vs_i64_saturate(f.cap_mem)));
  json_object_set(v, "Nodes", f.members);
  json_object_set_new(v, "Available",
                      json_pack("{s:f, s:I}", "Cpus", f.cap_cpus * f.cpu_ratio - f.used_cpus,
                                "Memory", vs_i64_saturate(f.cap_mem * f.mem_ratio - f.used_mem)));
  json_object_set_new(v, "Usage",
                      json_pack("{s:f, s:I, s:O}", "Cpus", f.used_cpus, "Memory",
                                vs_i64_saturate(f.used_mem), "Guests", f.guests));
  pool_figures_clear(&f);
  return v;
}

/* The guests that count against pools: placed somewhere, not refused or failed. */
static json_t *placed_guests(const vc_range *g) {
  json_t *placed = json_array();
  for (size_t i = 0; i < g->n; i++) {
    json_t *rec = vd_guest_record_of(&g->kvs[i]);
    const char *phase = rec ? str(rec, "Phase") : NULL;
    if (phase && str(rec, "Node") && strcmp(phase, "pending") != 0 &&
        strcmp(phase, "refused") != 0 && strcmp(phase, "failed") != 0)
      json_array_append(placed, rec);
    if (rec)
      json_decref(rec);
  }
  return placed;
}

json_t *vd_cluster_pools_view(vd_daemon *d, const char *only) {
  vd_cluster *cl = &d->cluster;
  vc_range pr, g;
  json_t *out = json_array();
  if (!cl->enabled || !vd_cache_range(cl, VD_POOLS_PREFIX, &pr))
    return out;
  json_t *pools = vd_cluster_pools_of(&pr);
  vc_range_clear(&pr);
  vs_error *e = NULL;
  json_t *nodes = vd_cluster_nodes_cached(d, false, &e);
  vs_error_free(e);
  if (!nodes || !vd_cache_range(cl, GUESTS_PREFIX, &g)) {
    json_decref(nodes);
    json_decref(pools);
    return out;
  }
  json_t *placed = placed_guests(&g);
  vc_range_clear(&g);
  const char *name;
  json_t *entry;
  json_object_foreach(pools, name, entry) {
    if (!only || !strcmp(only, name))
      json_array_append_new(out, pool_view(name, json_object_get(entry, "Pool"), nodes, placed));
  }
  json_decref(placed);
  json_decref(nodes);
  json_decref(pools);
  return out;
}

bool vd_cluster_pool_delete(vd_call *c) {
  vd_cluster *cl = &c->d->cluster;
  if (!cl->enabled)
    return false;
  _cleanup_free_ char *key = pool_key(c->arg);
  vc_range cur, g;
  vs_error *e = NULL;
  if (vc_etcd_get(cl->etcd, key, &cur, &e) < 0) {
    vd_call_error(c, 503, "cluster store: %s", e->msg);
    vs_error_free(e);
    return true;
  }
  if (!cur.n) {
    vc_range_clear(&cur);
    return false; /* not the cluster's: a pool of this node */
  }
  int64_t rev = cur.kvs[0].mod_revision;
  vc_range_clear(&cur);
  if (vc_etcd_get_prefix(cl->etcd, GUESTS_PREFIX, 0, &g, &e) < 0) {
    vd_call_error(c, 503, "cluster store: %s", e->msg);
    vs_error_free(e);
    return true;
  }
  json_t *placed = placed_guests(&g);
  vc_range_clear(&g);
  json_t *list = json_array();
  double cpus, mem;
  pool_usage(c->arg, placed, &cpus, &mem, list);
  json_decref(placed);
  bool ok = false;
  if (json_array_size(list)) {
    vd_call_error(c, 409, "pool %s of the cluster holds %zu guests (%s first): remove them first",
                  c->arg, json_array_size(list), str(json_array_get(list, 0), "Name"));
  } else if (vc_etcd_delete_if(cl->etcd, key, rev, &ok, &e) < 0) {
    vd_call_error(c, 503, "cluster store: %s", e->msg);
  } else if (!ok) {
    /* changed or removed by another request meanwhile */
    vd_call_error(c, 409, "pool %s of the cluster changed meanwhile: try again", c->arg);
  } else {
    vd_call_status(c, 204);
  }
  json_decref(list);
  vs_error_free(e);
  return true;
}

/* ------------------------------------------------------------- update */

/* The pool after the update: its fields with body's over them, checked as a create's; Name and
 * Created kept. */
static int pool_updated(const json_t *old, const json_t *body, json_t *pool, vs_error **err) {
  if (json_object_get(body, "Name"))
    return vs_error_set(err, EINVAL, "Name: a pool cannot be renamed");
  _cleanup_json_ json_t *merged = json_deep_copy(old);
  json_object_del(merged, "Created");
  json_object_update(merged, (json_t *)body);
  if (parse_pool(merged, pool, err) < 0)
    return -1;
  json_object_set(pool, "Created", json_object_get(old, "Created"));
  return 0;
}

/* Why the pool cannot become pool (NULL: it can): what its guests request must stay within
 * what its nodes give times its ratios after the change. */
static char *shrink_refused(const char *name, const json_t *pool, const json_t *nodes,
                            const json_t *placed) {
  pool_figures f;
  pool_figures_of(name, pool, nodes, placed, &f);
  char *why = NULL;
  if (f.used_cpus > f.cap_cpus * f.cpu_ratio + 1e-9 || f.used_mem > f.cap_mem * f.mem_ratio + 0.5) {
    _cleanup_free_ char *names = vs_strdup("");
    size_t i;
    json_t *m;
    json_array_foreach(f.members, i, m) {
      char *n = vs_asprintf("%s%s%s", names, i ? ", " : "", json_string_value(m));
      free(names);
      names = n;
    }
    why = vs_asprintf("pool %s of the cluster: its %zu guests request %.2f CPUs and %lld MiB, "
                      "more than the update leaves (%.2f CPUs x %.2f and %lld MiB x %.2f on %s%s): "
                      "remove guests first",
                      name, json_array_size(f.guests), f.used_cpus,
                      (long long)vs_i64_saturate(f.used_mem / (1 << 20)), f.cap_cpus, f.cpu_ratio,
                      (long long)vs_i64_saturate(f.cap_mem / (1 << 20)), f.mem_ratio,
                      *names ? "nodes " : "no ready node", names);
  }
  pool_figures_clear(&f);
  return why;
}

/* One try: read the pool and its guests, check, write if neither changed meanwhile. 1: written,
 * 0: changed meanwhile (try again); -1 with *status and err: refused or failed. */
static int pool_update_once(vd_call *c, const json_t *body, json_t **out, int *status,
                            vs_error **err) {
  vd_cluster *cl = &c->d->cluster;
  _cleanup_free_ char *key = pool_key(c->arg);
  vc_range cur, g;
  if (vc_etcd_get(cl->etcd, key, &cur, err) < 0)
    return *status = 503, -1;
  json_t *old = cur.n ? vd_guest_record_of(&cur.kvs[0]) : NULL;
  int64_t rev = cur.n ? cur.kvs[0].mod_revision : 0;
  vc_range_clear(&cur);
  if (!old)
    return *status = 404, vs_error_set(err, ENOENT, "No such pool: %s", c->arg);
  json_t *pool = json_object();
  if (pool_updated(old, body, pool, err) < 0) {
    json_decref(old);
    json_decref(pool);
    return *status = 400, -1;
  }
  json_decref(old);
  /* the guests first: the nodes read after them are at least as new */
  if (vc_etcd_get_prefix(cl->etcd, GUESTS_PREFIX, 0, &g, err) < 0) {
    json_decref(pool);
    return *status = 503, -1;
  }
  json_t *placed = placed_guests(&g);
  int64_t since = g.revision;
  vc_range_clear(&g);
  json_t *nodes = vd_cluster_nodes(c->d, err);
  char *why = nodes ? shrink_refused(c->arg, pool, nodes, placed) : NULL;
  int r = 1;
  if (!nodes) {
    *status = 503;
    r = -1;
  } else if (why) {
    *status = 409;
    vs_error_set(err, EBUSY, "%s", why);
    r = -1;
  } else {
    _cleanup_free_ char *doc = json_dumps(pool, JSON_COMPACT | JSON_SORT_KEYS);
    bool ok = false;
    int64_t at = 0;
    /* a guest admitted since the read changed a record under the prefix: counted again */
    if (vc_etcd_put_if_quiet(cl->etcd, key, doc, strlen(doc), rev, GUESTS_PREFIX, since, &ok, &at,
                             err) < 0) {
      *status = 503;
      r = -1;
    } else if (ok) {
      vd_cache_note_put(cl, key, doc, strlen(doc), at);
      *out = pool_view(c->arg, pool, nodes, placed);
    } else {
      r = 0;
    }
  }
  free(why);
  json_decref(placed);
  json_decref(nodes);
  json_decref(pool);
  return r;
}

bool vd_cluster_pool_update(vd_call *c, const json_t *body) {
  vd_cluster *cl = &c->d->cluster;
  if (!cl->enabled)
    return false;
  if (!json_is_true(json_object_get(body, "Cluster"))) {
    /* without --cluster: the node's own pool of that name first, as inspect */
    pthread_mutex_lock(&c->d->vms->lock);
    bool local = json_object_get(c->d->vms->pools, c->arg) != NULL;
    pthread_mutex_unlock(&c->d->vms->lock);
    if (local)
      return false;
  }
  for (int attempt = 0; attempt < 50; attempt++) {
    json_t *out = NULL;
    int status = 0;
    vs_error *e = NULL;
    int r = pool_update_once(c, body, &out, &status, &e);
    if (r == 1) {
      vd_call_json(c, 200, out);
      return true;
    }
    if (r < 0) {
      if (status == 404 && !json_is_true(json_object_get(body, "Cluster"))) {
        vs_error_free(e);
        return false; /* neither the node's nor the cluster's: the local path says 404 */
      }
      vd_call_error(c, status, "%s%s", status == 503 ? "cluster store: " : "", e->msg);
      vs_error_free(e);
      return true;
    }
    vs_log_debug("cluster: pool %s or its guests changed during an update: again", c->arg);
  }
  vd_call_error(c, 409, "pool %s of the cluster: 50 conflicting writes in a row: try again",
                c->arg);
  return true;
}

int vd_cluster_take_pool(vd_cluster *cl, json_t *body, json_t *guest, vs_error **err) {
  const char *name = str(body, "Pool");
  if (!name || !vd_vm_name_valid(name))
    return 0;
  _cleanup_free_ char *key = pool_key(name);
  vc_range r;
  if (vc_etcd_get(cl->etcd, key, &r, err) < 0)
    return -1;
  if (r.n) { /* the cluster's: admitted by the scheduler, made in the node's default pool */
    json_object_set_new(guest, "Pool", json_string(name));
    json_object_del(body, "Pool");
  }
  vc_range_clear(&r);
  return 0;
}
