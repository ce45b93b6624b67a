/* vesseld in a cluster (docs/cluster.md): joining (waiting for etcd, checking the cluster
 * token), the node's record under a lease kept alive by a thread of its own, and the
 * /vessel/v1/nodes endpoints, which read and write etcd directly so that they work alike from
 * any node.
 *
 * Keys (all under /vessel/):
 *   cluster/token      sha256 of the cluster token, written by the first node (create-only txn)
 *   nodes/NAME         the node's status (capacity, address, labels given at start), under its
 *                      lease: it vanishes when the node stops renewing
 *   nodespec/NAME      what the operators decided (cordoned, draining, labels added): kept
 *                      without a lease, changed only by compare-and-swap on its revision
 */
#include "daemon/internal.h"
#include "daemon/vms.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/statvfs.h>
#include <sys/sysinfo.h>
#include <time.h>
#include <unistd.h>

#define LEASE_TTL VD_CLUSTER_LEASE_TTL
/* Renewals every RENEW_MS; one that fails is tried again RETRY_MS later, each member given
 * KEEPER_TIMEOUT_MS. The watchdog fences FENCE_AFTER_MS (7 s) after the last renewal that worked,
 * so a member that hangs (its raft leader cut off, an election under way) leaves time for about
 * three tries of every member first. */
#define RENEW_MS 2000
#define RETRY_MS 250
#define KEEPER_TIMEOUT_MS 1500

static char *node_key(const char *prefix, const char *name) {
  return vs_asprintf("/vessel/%s/%s", prefix, name);
}

/* ------------------------------------------------------------- options */

/* "etcd=URL[,URL...]" */
static int parse_cluster(const char *s, vd_cluster *cl, vs_error **err) {
  if (strncmp(s, "etcd=", 5) != 0 || !s[5])
    return vs_error_set(err, EINVAL, "--cluster %s: expected etcd=URL[,URL...]", s);
  _cleanup_free_ char *list = vs_strdup(s + 5);
  char *save = NULL;
  for (char *u = strtok_r(list, ",", &save); u; u = strtok_r(NULL, ",", &save)) {
    cl->endpoints = vs_realloc(cl->endpoints, sizeof(char *) * (cl->n_endpoints + 1));
    cl->endpoints[cl->n_endpoints++] = vs_strdup(u);
  }
  if (!cl->n_endpoints)
    return vs_error_set(err, EINVAL, "--cluster %s: no etcd URL", s);
  return 0;
}

/* "cpus=N,memory=SIZE,disk=SIZE": the capacity the node declares instead of the host's (a
 * host shared with other work, and the tests' and benchmarks' fake-capacity nodes). */
static int parse_capacity(const char *s, vd_cluster *cl, vs_error **err) {
  _cleanup_free_ char *list = vs_strdup(s);
  char *save = NULL;
  for (char *kv = strtok_r(list, ",", &save); kv; kv = strtok_r(NULL, ",", &save)) {
    char *eq = strchr(kv, '=');
    if (!eq)
      return vs_error_set(err, EINVAL, "--node-capacity %s: expected cpus=N,memory=SIZE,disk=SIZE",
                          s);
    *eq = 0;
    uint64_t v = 0;
    if (!strcmp(kv, "cpus")) {
      char *end = NULL;
      errno = 0;
      unsigned long long n = strtoull(eq + 1, &end, 10);
      if (errno || !end || *end || n < 1 || n > 4096)
        return vs_error_set(err, EINVAL, "--node-capacity cpus=%s: expected 1 to 4096", eq + 1);
      cl->cpus = (int64_t)n;
    } else if (!strcmp(kv, "memory") || !strcmp(kv, "disk")) {
      if (vs_parse_size(eq + 1, kv, &v, err) < 0)
        return vs_error_wrap(err, "--node-capacity");
      if (!strcmp(kv, "memory"))
        cl->memory = (int64_t)v;
      else
        cl->disk = (int64_t)v;
    } else {
      return vs_error_set(err, EINVAL, "--node-capacity: unknown resource %s (cpus, memory, disk)",
                          kv);
    }
  }
  return 0;
}

static bool label_valid(const char *k) {
  if (!*k || strlen(k) > 63)
    return false;
  for (const char *p = k; *p; p++)
    if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
          *p == '.' || *p == '-' || *p == '_' || *p == '/'))
      return false;
  return true;
}

/* The node's own facts: the host's CPUs, memory and data-root disk unless --node-capacity said. */
static json_t *node_status(const vd_daemon *d, const vd_cluster *cl) {
  int64_t cpus = cl->cpus, mem = cl->memory, disk = cl->disk;
  if (!cpus)
    cpus = sysconf(_SC_NPROCESSORS_ONLN);
  struct sysinfo si;
  if (!mem && sysinfo(&si) == 0)
    mem = (int64_t)si.totalram * si.mem_unit;
  struct statvfs sv;
  if (!disk && statvfs(d->data_root, &sv) == 0)
    disk = (int64_t)(sv.f_blocks * sv.f_frsize);
  return json_pack("{s:s, s:s, s:I, s:I, s:I, s:O, s:f, s:f, s:s, s:s}", "Name", cl->node_name,
                   "Address", cl->advertise, "Cpus", (json_int_t)cpus, "Memory", (json_int_t)mem,
                   "Disk", (json_int_t)disk, "Labels", cl->labels, "CpuOvercommit",
                   cl->cpu_overcommit, "MemoryOvercommit", cl->memory_overcommit, "Started",
                   d->started, "Version", "0.1.0");
}

int vd_cluster_configure(vd_cluster *cl, const vd_cluster_options *o, vs_error **err) {
  memset(cl, 0, sizeof(*cl));
  cl->labels = json_object();
  cl->cpu_overcommit = cl->memory_overcommit = 1.0;
  if (!o->cluster) {
    if (o->node_name || o->advertise || o->token || o->n_labels || o->capacity || o->etcd_cacert ||
        o->etcd_cert || o->etcd_key || o->etcd_user || o->shared_dir)
      return vs_error_set(err, EINVAL,
                          "--node-name, --advertise, --cluster-token, --node-label, "
                          "--node-capacity, --cluster-shared-dir and the --etcd-* options need "
                          "--cluster etcd=URL");
    return 0;
  }
  if (parse_cluster(o->cluster, cl, err) < 0)
    return -1;
  if (!o->node_name || !vd_vm_name_valid(o->node_name))
    return vs_error_set(err, EINVAL,
                        "--node-name: a cluster node needs a name of 1 to 64 letters, digits, "
                        "'_', '.' or '-'");
  if (!o->advertise || !*o->advertise)
    return vs_error_set(err, EINVAL,
                        "--advertise: a cluster node needs the address others reach "
                        "it at");
  cl->node_name = vs_strdup(o->node_name);
  cl->advertise = vs_strdup(o->advertise);
  cl->token = o->token ? vs_strdup(o->token) : NULL;
  for (size_t i = 0; i < o->n_labels; i++) {
    _cleanup_free_ char *kv = vs_strdup(o->labels[i]);
    char *eq = strchr(kv, '=');
    if (eq)
      *eq = 0;
    if (!label_valid(kv))
      return vs_error_set(err, EINVAL,
                          "--node-label %s: expected KEY=VALUE with a key of letters, "
                          "digits, '.', '-', '_' or '/'",
                          o->labels[i]);
    json_object_set_new(cl->labels, kv, json_string(eq ? eq + 1 : ""));
  }
  if (o->capacity && parse_capacity(o->capacity, cl, err) < 0)
    return -1;
  if (vd_ha_configure(cl, o, err) < 0)
    return -1;
  vc_etcd_options eo = {.endpoints = (const char *const *)cl->endpoints,
                        .n_endpoints = cl->n_endpoints,
                        .cacert = o->etcd_cacert,
                        .cert = o->etcd_cert,
                        .key = o->etcd_key};
  _cleanup_free_ char *user = NULL;
  if (o->etcd_user) {
    user = vs_strdup(o->etcd_user);
    char *colon = strchr(user, ':');
    if (!colon)
      return vs_error_set(err, EINVAL, "--etcd-user: expected USER:PASSWORD");
    *colon = 0;
    eo.user = user;
    eo.password = colon + 1;
  }
  cl->etcd = vc_etcd_new(&eo, err);
  if (!cl->etcd)
    return -1;
  /* the keeper's own client: a renewal never waits behind another thread's request (one that
   * an etcd member without a leader holds for the whole timeout), and a member that does not
   * answer is left for the next one soon enough to try them all before the watchdog fences */
  eo.timeout_ms = KEEPER_TIMEOUT_MS;
  cl->lease_etcd = vc_etcd_new(&eo, err);
  if (!cl->lease_etcd)
    return -1;
  cl->enabled = true;
  pthread_mutex_init(&cl->lock, NULL);
  pthread_cond_init(&cl->cond, NULL);
  pthread_cond_init(&cl->guests_cond, NULL);
  pthread_cond_init(&cl->images_cond, NULL);
  vd_cache_init(cl);
  return 0;
}

/* ------------------------------------------------------------- joining */

/* Sleep up to ms, unless SIGTERM or SIGINT (blocked, read through the daemon's signalfd)
 * arrives: then false. */
static bool wait_unless_signalled(vd_daemon *d, int ms) {
  struct pollfd p = {.fd = d->sigfd, .events = POLLIN};
  if (poll(&p, 1, ms) > 0) {
    struct signalfd_siginfo si;
    if (read(d->sigfd, &si, sizeof(si)) == sizeof(si)) {
      vs_log_info("received signal %u while waiting for etcd, shutting down", si.ssi_signo);
      return false;
    }
  }
  return true;
}

/* The first node sets the cluster's token (its hash); every later one must bring the same. */
static int check_token(vd_cluster *cl, vs_error **err) {
  char hash[VS_SHA256_HEX_LEN + 1];
  const char *t = cl->token ? cl->token : "";
  vs_sha256_hex(t, strlen(t), hash);
  bool created = false;
  vc_range cur;
  if (vc_etcd_put_if(cl->etcd, "/vessel/cluster/token", hash, strlen(hash), 0, 0, &created, &cur,
                     NULL, err) < 0)
    return -1;
  if (created) {
    vs_log_info("cluster: this node created the cluster (its token is now the cluster's)");
    return 0;
  }
  bool same = cur.n == 1 && !strcmp(cur.kvs[0].value, hash);
  vc_range_clear(&cur);
  if (!same)
    return vs_error_set(err, EACCES,
                        "cluster token refused: the cluster at %s was created with another "
                        "--cluster-token (%s); this node does not join it",
                        vc_etcd_endpoint(cl->etcd),
                        cl->token ? "this node gave a different one" : "this node gave none");
  return 0;
}

int64_t vd_cluster_lease(const vd_cluster *cl) {
  return __atomic_load_n(&cl->lease, __ATOMIC_ACQUIRE);
}

static int register_node(vd_daemon *d, vd_cluster *cl, vs_error **err) {
  int64_t sent =
      vd_ha_now_ms(); /* the lease is granted after this: it ends TTL after it or later */
  int64_t lease;
  if (vc_etcd_lease_grant(cl->lease_etcd, LEASE_TTL, &lease, err) < 0)
    return -1;
  __atomic_store_n(&cl->lease, lease, __ATOMIC_RELEASE);
  json_t *st = node_status(d, cl);
  _cleanup_free_ char *doc = json_dumps(st, JSON_COMPACT | JSON_SORT_KEYS);
  json_decref(st);
  _cleanup_free_ char *key = node_key("nodes", cl->node_name);
  if (vc_etcd_put(cl->lease_etcd, key, doc, strlen(doc), lease, NULL, err) < 0)
    return -1;
  vd_ha_renewed(cl, sent);
  return 0;
}

int vd_cluster_join(vd_daemon *d, vs_error **err) {
  vd_cluster *cl = &d->cluster;
  if (!cl->enabled)
    return 0;
  for (int tries = 0;; tries++) {
    _cleanup_error_ vs_error *e = NULL;
    if (vc_etcd_status(cl->etcd, &e) == 0)
      break;
    /* refused credentials, TLS failures, something that is no etcd: waiting will not help */
    if (e->errnum == EACCES || e->errnum == EPROTO) {
      *err = steal_pointer(&e);
      return vs_error_wrap(err, "cluster: joining as node %s", cl->node_name);
    }
    if (tries % 10 == 0)
      vs_log_warn("cluster: waiting for etcd (%zu endpoint%s, first %s): %s", cl->n_endpoints,
                  cl->n_endpoints == 1 ? "" : "s", cl->endpoints[0], e->msg);
    if (!wait_unless_signalled(d, 500))
      return vs_error_set(err, EINTR, "cluster: stopped while waiting for etcd at %s",
                          cl->endpoints[0]);
  }
  if (check_token(cl, err) < 0 || register_node(d, cl, err) < 0)
    return vs_error_wrap(err, "cluster: joining as node %s", cl->node_name);
  vs_log_info("cluster: node %s joined through etcd at %s (lease %llx, %d s)", cl->node_name,
              vc_etcd_endpoint(cl->etcd), (unsigned long long)vd_cluster_lease(cl), LEASE_TTL);
  return 0;
}

/* The lease's keeper: renews every RENEW_MS, and RETRY_MS after a renewal that failed (the
 * fencing watchdog, cluster_ha.c, counts from the last one that worked); a lease found expired
 * (etcd unreachable for longer than the TTL) is replaced and the record written again. */
static void *keepalive_thread(void *arg) {
  vd_daemon *d = arg;
  vd_cluster *cl = &d->cluster;
  bool failed = false;
  pthread_mutex_lock(&cl->lock);
  while (!cl->stop) {
    struct timespec until = vs_realtime_after_ms(failed ? RETRY_MS : RENEW_MS);
    pthread_cond_timedwait(&cl->cond, &cl->lock, &until);
    if (cl->stop)
      break;
    pthread_mutex_unlock(&cl->lock);
    vs_error *e = NULL;
    int64_t ttl = 0;
    int64_t sent = vd_ha_now_ms();
    failed = true;
    if (vc_etcd_lease_keepalive(cl->lease_etcd, vd_cluster_lease(cl), &ttl, &e) < 0) {
      vs_log_warn("cluster: %s", e->msg);
    } else if (ttl > 0) {
      vd_ha_renewed(cl, sent);
      failed = false;
    } else {
      vs_log_warn("cluster: the node's lease expired: registering again");
      if (register_node(d, cl, &e) < 0)
        vs_log_warn("cluster: %s", e->msg);
      else
        failed = false;
    }
    vs_error_free(e);
    pthread_mutex_lock(&cl->lock);
  }
  pthread_mutex_unlock(&cl->lock);
  return NULL;
}

int vd_cluster_thread_start(vd_daemon *d, vd_cluster_thread *t, void *(*fn)(void *),
                            const char *what, vs_error **err) {
  int rc = pthread_create(&t->id, NULL, fn, d);
  if (rc)
    return vs_error_set(err, rc, "cluster: starting %s", what);
  t->started = true;
  return 0;
}

void vd_cluster_thread_join(vd_cluster_thread *t) {
  if (t->started)
    pthread_join(t->id, NULL);
  t->started = false;
}

int vd_cluster_start(vd_daemon *d, vs_error **err) {
  vd_cluster *cl = &d->cluster;
  if (!cl->enabled)
    return 0;
  if (vd_cluster_thread_start(d, &cl->keeper, keepalive_thread, "the lease keeper", err) < 0)
    return -1;
  if (vd_ha_start(d, err) < 0)
    return -1;
  if (vd_cluster_start_guests(d, err) < 0)
    return -1;
  if (vd_cluster_start_networks(d, err) < 0)
    return -1;
  if (vd_cluster_start_images(d, err) < 0)
    return -1;
  if (vd_cluster_start_tunnels(d, err) < 0)
    return -1;
  return vd_cluster_start_migrator(d, err);
}

/* Stop the threads. The lease is left to expire rather than revoked: the node's guests outlive
 * vesseld, so a daemon that stops (or is upgraded) is not a node that is gone. */
void vd_cluster_free(vd_daemon *d) {
  vd_cluster *cl = &d->cluster;
  if (cl->enabled) {
    pthread_mutex_lock(&cl->lock);
    cl->stop = true;
    pthread_cond_broadcast(&cl->cond);
    pthread_cond_broadcast(&cl->guests_cond);
    pthread_cond_broadcast(&cl->images_cond);
    pthread_mutex_unlock(&cl->lock);
    vd_cluster_thread *threads[] = {&cl->keeper,   &cl->scheduler, &cl->reconciler, &cl->watcher,
                                    &cl->migrator, &cl->netter,    &cl->imager,     &cl->tunneler};
    for (size_t i = 0; i < ARRAY_SIZE(threads); i++)
      vd_cluster_thread_join(threads[i]);
    vd_tunnels_wait(cl);
    json_decref(cl->tunnel_execs);
    vd_ha_stop(d);
    pthread_mutex_destroy(&cl->lock);
    pthread_cond_destroy(&cl->cond);
    pthread_cond_destroy(&cl->guests_cond);
    pthread_cond_destroy(&cl->images_cond);
  }
  vc_etcd_free(cl->etcd);
  vc_etcd_free(cl->lease_etcd);
  for (size_t i = 0; i < cl->n_endpoints; i++)
    free(cl->endpoints[i]);
  free(cl->endpoints);
  free(cl->node_name);
  free(cl->advertise);
  free(cl->token);
  free(cl->shared_dir);
  vd_cache_free(cl);
  if (cl->labels)
    json_decref(cl->labels);
  memset(cl, 0, sizeof(*cl));
}

/* ------------------------------------------------------------- node records */

/* A value from etcd parsed as a JSON object (what another node wrote: checked like any input). */
static json_t *kv_object(const vc_kv *kv) {
  json_t *j = json_loadb(kv->value, kv->value_len, JSON_REJECT_DUPLICATES, NULL);
  if (j && !json_is_object(j)) {
    json_decref(j);
    j = NULL;
  }
  return j;
}

/* The API's view of one node: its status (NULL when its lease is gone) merged with its spec. */
static json_t *node_view(const char *name, json_t *status, json_t *spec) {
  json_t *v = status ? json_deep_copy(status) : json_pack("{s:s}", "Name", name);
  json_object_set_new(v, "Status", json_string(status ? "ready" : "down"));
  bool cordoned = spec && json_is_true(json_object_get(spec, "Unschedulable"));
  bool draining = spec && json_is_true(json_object_get(spec, "Draining"));
  json_object_set_new(v, "Unschedulable", json_boolean(cordoned || draining));
  json_object_set_new(v, "Draining", json_boolean(draining));
  json_t *labels = json_object_get(v, "Labels");
  if (!json_is_object(labels)) {
    labels = json_object();
    json_object_set_new(v, "Labels", labels);
  }
  json_t *extra = spec ? json_object_get(spec, "Labels") : NULL;
  if (json_is_object(extra))
    json_object_update(labels, extra);
  return v;
}

static int node_name_of(const char *key, const char *prefix, const char **name) {
  size_t n = strlen(prefix);
  if (strncmp(key, prefix, n) != 0 || !vd_vm_name_valid(key + n))
    return -1;
  *name = key + n;
  return 0;
}

/* The guests placed on each node of by_name ({name: {"guests": [...], "cpus", "memory"}}). */
static void add_guests(json_t *by_name, const vc_range *g) {
  for (size_t i = 0; i < g->n; i++) {
    json_t *rec = kv_object(&g->kvs[i]);
    const char *node = rec ? json_string_value(json_object_get(rec, "Node")) : NULL;
    const char *phase = rec ? json_string_value(json_object_get(rec, "Phase")) : NULL;
    json_t *e = node ? json_object_get(by_name, node) : NULL;
    if (e && phase && strcmp(phase, "pending") != 0 && strcmp(phase, "refused") != 0 &&
        strcmp(phase, "failed") != 0) {
      json_t *list = json_object_get(e, "guests");
      if (!list)
        json_object_set_new(e, "guests", list = json_array());
      json_array_append_new(list, json_string(json_string_value(json_object_get(rec, "Name"))
                                                  ? json_string_value(json_object_get(rec, "Name"))
                                                  : "?"));
      double cpus = json_number_value(json_object_get(rec, "Cpus"));
      double mem = json_number_value(json_object_get(rec, "Memory"));
      json_object_set_new(e, "cpus",
                          json_real(json_number_value(json_object_get(e, "cpus")) + cpus));
      json_object_set_new(e, "memory",
                          json_real(json_number_value(json_object_get(e, "memory")) + mem));
    }
    if (rec)
      json_decref(rec);
  }
}

/* The nodes from their records (st), specs (sp) and, when g is given, guests. */
static json_t *nodes_of(const vc_range *st, const vc_range *sp, const vc_range *g) {
  json_t *by_name = json_object();
  for (size_t i = 0; i < st->n; i++) {
    const char *name;
    json_t *s = kv_object(&st->kvs[i]);
    if (s && node_name_of(st->kvs[i].key, "/vessel/nodes/", &name) == 0)
      json_object_set_new(by_name, name, json_pack("{s:o}", "status", s));
    else if (s)
      json_decref(s);
  }
  for (size_t i = 0; i < sp->n; i++) {
    const char *name;
    json_t *s = kv_object(&sp->kvs[i]);
    if (!s || node_name_of(sp->kvs[i].key, "/vessel/nodespec/", &name) < 0) {
      if (s)
        json_decref(s);
      continue;
    }
    json_t *e = json_object_get(by_name, name);
    if (!e)
      json_object_set_new(by_name, name, e = json_object());
    json_object_set_new(e, "spec", s);
  }
  if (g)
    add_guests(by_name, g);
  json_t *out = json_array();
  const char *name;
  json_t *e;
  /* jansson keeps insertion order; etcd returned keys sorted, the spec-only ones go after */
  json_object_foreach(by_name, name, e) {
    json_t *v = node_view(name, json_object_get(e, "status"), json_object_get(e, "spec"));
    json_t *gs = json_object_get(e, "guests");
    if (!g) {
      json_array_append_new(out, v);
      continue;
    }
    json_object_set(v, "Guests", gs ? gs : json_array());
    json_object_set_new(
        v, "Allocated",
        json_pack("{s:f, s:I}", "Cpus", json_number_value(json_object_get(e, "cpus")), "Memory",
                  vs_i64_saturate(json_number_value(json_object_get(e, "memory")))));
    json_array_append_new(out, v);
  }
  json_decref(by_name);
  return out;
}

/* Every node (ready or down) as the API shows it, in name order: read from etcd, so that what
 * a request just changed is seen by the next. */
json_t *vd_cluster_nodes(vd_daemon *d, vs_error **err) {
  vd_cluster *cl = &d->cluster;
  vc_range st, sp, g;
  if (vc_etcd_get_prefix(cl->etcd, "/vessel/nodes/", 0, &st, err) < 0)
    return NULL;
  if (vc_etcd_get_prefix(cl->etcd, "/vessel/nodespec/", 0, &sp, err) < 0) {
    vc_range_clear(&st);
    return NULL;
  }
  if (vc_etcd_get_prefix(cl->etcd, "/vessel/guests/", 0, &g, err) < 0) {
    vc_range_clear(&st);
    vc_range_clear(&sp);
    return NULL;
  }
  json_t *out = nodes_of(&st, &sp, &g);
  vc_range_clear(&st);
  vc_range_clear(&sp);
  vc_range_clear(&g);
  return out;
}

json_t *vd_cluster_nodes_cached(vd_daemon *d, bool with_guests, vs_error **err) {
  vd_cluster *cl = &d->cluster;
  vc_range st, sp, g = {0};
  if (!vd_cache_range(cl, "/vessel/nodes/", &st) || !vd_cache_range(cl, "/vessel/nodespec/", &sp) ||
      (with_guests && !vd_cache_range(cl, "/vessel/guests/", &g))) {
    vc_range_clear(&st);
    vc_range_clear(&sp);
    vs_error_set(err, EAGAIN, "the cluster's records are not loaded yet");
    return NULL;
  }
  json_t *out = nodes_of(&st, &sp, with_guests ? &g : NULL);
  vc_range_clear(&st);
  vc_range_clear(&sp);
  vc_range_clear(&g);
  return out;
}

static json_t *find_node(json_t *nodes, const char *name) {
  size_t i;
  json_t *n;
  json_array_foreach(nodes, i,
                     n) if (!strcmp(json_string_value(json_object_get(n, "Name")), name)) return n;
  return NULL;
}

/* Change a node's spec by compare-and-swap on its revision: read, let change() edit it, write
 * only if nobody wrote in between, else read again. Two nodes changing one spec at once both
 * get their change in, in the order etcd's revisions give. */
int vd_cluster_update_spec(vd_daemon *d, const char *name, int (*change)(json_t *spec, void *arg),
                           void *arg, vs_error **err) {
  vd_cluster *cl = &d->cluster;
  _cleanup_free_ char *key = node_key("nodespec", name);
  for (int attempt = 0; attempt < 100; attempt++) {
    vc_range cur;
    if (vc_etcd_get(cl->etcd, key, &cur, err) < 0)
      return -1;
    int64_t rev = cur.n ? cur.kvs[0].mod_revision : 0;
    json_t *spec = cur.n ? kv_object(&cur.kvs[0]) : NULL;
    vc_range_clear(&cur);
    if (!spec)
      spec = json_object();
    if (change(spec, arg) < 0) {
      json_decref(spec);
      return vs_error_set(err, EINVAL, "node %s: the change is not valid", name);
    }
    _cleanup_free_ char *doc = json_dumps(spec, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(spec);
    bool ok = false;
    if (vc_etcd_put_if(cl->etcd, key, doc, strlen(doc), 0, rev, &ok, NULL, NULL, err) < 0)
      return -1;
    if (ok)
      return 0;
    vs_log_debug("cluster: node %s's spec changed under us (revision %lld): again", name,
                 (long long)rev);
  }
  return vs_error_set(err, EAGAIN, "node %s: 100 conflicting writes in a row", name);
}

/* ------------------------------------------------------------- the API */

bool vd_cluster_required(vd_call *c) {
  if (c->d->cluster.enabled)
    return true;
  vd_call_error(c, 503,
                "this vesseld is not in a cluster (start it with --cluster etcd=URL "
                "--node-name N --advertise ADDR)");
  return false;
}

bool vd_cluster_read_prefix(vd_call *c, const char *prefix, vc_range *r) {
  if (!vd_cluster_required(c))
    return false;
  vs_error *e = NULL;
  if (vc_etcd_get_prefix(c->d->cluster.etcd, prefix, 0, r, &e) < 0) {
    vd_call_error(c, 503, "cluster store: %s", e->msg);
    vs_error_free(e);
    return false;
  }
  return true;
}

static void answer_nodes_error(vd_call *c, vs_error *e) {
  vd_call_error(c, 503, "cluster store: %s", e->msg);
  vs_error_free(e);
}

void vd_h_nodes_list(vd_call *c) {
  if (!vd_cluster_required(c))
    return;
  vs_error *e = NULL;
  json_t *nodes = vd_cluster_nodes(c->d, &e);
  if (!nodes) {
    answer_nodes_error(c, e);
    return;
  }
  vd_call_json(c, 200, nodes);
}

/* The node as inspect shows it: 404 when etcd knows nothing of it. */
static json_t *one_node(vd_call *c, const char *name) {
  vs_error *e = NULL;
  json_t *nodes = vd_cluster_nodes(c->d, &e);
  if (!nodes) {
    answer_nodes_error(c, e);
    return NULL;
  }
  json_t *n = find_node(nodes, name);
  if (n)
    json_incref(n);
  json_decref(nodes);
  if (!n)
    vd_call_error(c, 404, "No such node: %s", name);
  return n;
}

void vd_h_node_inspect(vd_call *c) {
  if (!vd_cluster_required(c))
    return;
  json_t *n = one_node(c, c->arg);
  if (n)
    vd_call_json(c, 200, n);
}

typedef struct flags_change {
  int unschedulable, draining; /* -1: leave */
} flags_change;

static int change_flags(json_t *spec, void *arg) {
  const flags_change *f = arg;
  if (f->unschedulable >= 0)
    json_object_set_new(spec, "Unschedulable", json_boolean(f->unschedulable));
  if (f->draining >= 0)
    json_object_set_new(spec, "Draining", json_boolean(f->draining));
  return 0;
}

static void set_flags(vd_call *c, flags_change f, const char *action) {
  if (!vd_cluster_required(c))
    return;
  json_t *n = one_node(c, c->arg);
  if (!n)
    return;
  json_decref(n);
  vs_error *e = NULL;
  if (vd_cluster_update_spec(c->d, c->arg, change_flags, &f, &e) < 0) {
    answer_nodes_error(c, e);
    return;
  }
  vd_event_emit(c->d, "node", action, c->arg, json_pack("{s:s}", "name", c->arg));
  n = one_node(c, c->arg);
  if (n)
    vd_call_json(c, 200, n);
}

void vd_h_node_cordon(vd_call *c) { set_flags(c, (flags_change){1, -1}, "cordon"); }
/* uncordon also ends a drain (which cluster_migrate.c does) */
void vd_h_node_uncordon(vd_call *c) { set_flags(c, (flags_change){0, 0}, "uncordon"); }

typedef struct labels_change {
  json_t *set;    /* {key: value} */
  json_t *remove; /* [key] */
} labels_change;

static int change_labels(json_t *spec, void *arg) {
  const labels_change *l = arg;
  json_t *labels = json_object_get(spec, "Labels");
  if (!json_is_object(labels)) {
    labels = json_object();
    json_object_set_new(spec, "Labels", labels);
  }
  if (l->set)
    json_object_update(labels, l->set);
  size_t i;
  json_t *k;
  json_array_foreach(l->remove, i, k) json_object_del(labels, json_string_value(k));
  return 0;
}

/* POST /vessel/v1/nodes/{name}/labels {"Set": {"k": "v"}, "Remove": ["k2"]} */
void vd_h_node_labels(vd_call *c) {
  if (!vd_cluster_required(c))
    return;
  _cleanup_json_ json_t *body = vd_call_body_object(c);
  if (!body)
    return;
  static const char *const known[] = {"Set", "Remove"};
  vs_error *e = NULL;
  labels_change l = {0};
  if (vd_body_known_fields(body, known, ARRAY_SIZE(known), "a label change", &e) < 0 ||
      vs_json_get_object(body, "Set", false, &l.set, &e) < 0 ||
      vs_json_get_array(body, "Remove", false, &l.remove, &e) < 0) {
    vd_call_error(c, 400, "%s", e->msg);
    vs_error_free(e);
    return;
  }
  const char *k;
  json_t *v;
  json_object_foreach(l.set, k, v) if (!label_valid(k) || !json_is_string(v)) {
    vd_call_error(c, 400,
                  "label %.80s: expected a key of letters, digits, '.', '-', '_' or '/' "
                  "and a string value",
                  k);
    return;
  }
  size_t i;
  json_array_foreach(l.remove, i, v) if (!json_is_string(v)) {
    vd_call_error(c, 400, "Remove[%zu]: expected a label key", i);
    return;
  }
  json_t *n = one_node(c, c->arg);
  if (!n)
    return;
  json_decref(n);
  if (vd_cluster_update_spec(c->d, c->arg, change_labels, &l, &e) < 0) {
    answer_nodes_error(c, e);
    return;
  }
  n = one_node(c, c->arg);
  if (n)
    vd_call_json(c, 200, n);
}

/* DELETE /vessel/v1/nodes/{name}[?force=1]: forget a node. A node whose lease is alive would
 * only register again; it is refused unless forced. */
void vd_h_node_delete(vd_call *c) {
  if (!vd_cluster_required(c))
    return;
  bool force = http_query_bool(c->req->query, "force", false);
  vs_error *e = NULL;
  json_t *nodes = vd_cluster_nodes(c->d, &e);
  if (!nodes) {
    answer_nodes_error(c, e);
    return;
  }
  /* a node whose lease ended and that has no spec is known only by its record of images */
  json_t *n = find_node(nodes, c->arg);
  bool known = n != NULL;
  bool up = n && !strcmp(json_string_value(json_object_get(n, "Status")), "ready");
  json_decref(nodes);
  if (up && !force) {
    vd_call_error(c, 409,
                  "node %s is up (its lease is alive): stop its vesseld first, or "
                  "remove it with force",
                  c->arg);
    return;
  }
  _cleanup_free_ char *spec = node_key("nodespec", c->arg);
  _cleanup_free_ char *status = node_key("nodes", c->arg);
  int64_t images = 0;
  if (vc_etcd_delete(c->d->cluster.etcd, spec, false, NULL, &e) < 0 ||
      vc_etcd_delete(c->d->cluster.etcd, status, false, NULL, &e) < 0 ||
      vd_cluster_images_forget(&c->d->cluster, c->arg, &images, &e) < 0) {
    answer_nodes_error(c, e);
    return;
  }
  if (!known && !images) {
    vd_call_error(c, 404, "No such node: %s", c->arg);
    return;
  }
  vd_event_emit(c->d, "node", "remove", c->arg, json_pack("{s:s}", "name", c->arg));
  vd_call_status(c, 204);
}
