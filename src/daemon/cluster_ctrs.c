/* Containers as guests of the cluster (docs/cluster.md, "Containers of the cluster"), the way
 * VMs are: `POST /vessel/v1/containers` on any node writes a record under /vessel/guests/NAME
 * with Kind "container" and the Docker create body as its Spec; the scheduler places it by its
 * CPU and memory requests (cluster_guests.c); the node it lands on pulls its image when it lacks
 * it and creates and starts it with its own container code (the handlers of its Docker API,
 * called inside the daemon), then records Phase and Id. The Docker API of each node still
 * serves that node's containers alone, unchanged.
 *
 * A request for a container of another node is carried to that node and served there
 * (cluster_tunnel.c), /vessel/v1/containers/NAME/stop|start|logs included: those handlers act on
 * this node's container. A removal deletes the record, and the node removes what it made when
 * it sees the record gone. */
#include "daemon/internal.h"
#include "daemon/vms.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define GUESTS "/vessel/guests/"
#define LOGS_MAX ((size_t)256 * 1024) /* of a remote logs request: the newest this many bytes */
#define STOP_TIMEOUT_MAX 86400L       /* seconds, as a local stop takes them */

static const char *str(const json_t *o, const char *f) {
  return json_string_value(json_object_get(o, f));
}

static const char *phase_of(const json_t *rec) {
  const char *p = str(rec, "Phase");
  return p ? p : "";
}

static bool is_container_record(const json_t *rec) {
  const char *k = str(rec, "Kind");
  return k && !strcmp(k, "container");
}

bool vd_cctr_of_cluster_locked(const vd_daemon *d, const vd_container *c) {
  json_t *labels = json_object_get(json_object_get(c->rec, "Config"), "Labels");
  return d->cluster.enabled && json_is_string(json_object_get(labels, VD_CCTR_NODE_LABEL));
}

bool vd_cctr_start_allowed(vd_daemon *d, vd_container *c, vs_error **err) {
  pthread_mutex_lock(&d->lock);
  bool ours = vd_cctr_of_cluster_locked(d, c);
  pthread_mutex_unlock(&d->lock);
  if (ours && vd_ha_fenced(&d->cluster)) {
    vs_error_set(err, EAGAIN,
                 "node %s lost its lease in the cluster (etcd cannot be reached): its guests of "
                 "the cluster do not start until it holds one again (another node may be "
                 "starting container %s)",
                 d->cluster.node_name, c->name + (c->name[0] == '/'));
    return false;
  }
  return true;
}

/* ------------------------------------------------------------- calls inside the daemon */

/* A handler of the Docker API run on this thread as if a client had called it (the node's own
 * container code, unchanged): its status, and its JSON answer in *reply (NULL: none). What the
 * handler leaves for the loop (watch a started container, finish a removal) goes there. */
static int internal_call(vd_daemon *d, void (*handler)(vd_call *), const char *arg,
                         const char *query, const json_t *body, json_t **reply) {
  http_request req = {.method = (char *)"POST", .query = vs_strdup(query ? query : "")};
  vd_call call = {.d = d, .req = &req, .body_fd = -1, .file_fd = -1, .internal = true};
  call.arg = arg ? vs_strdup(arg) : NULL;
  if (body) {
    call.body = json_dumps(body, JSON_COMPACT);
    call.body_len = strlen(call.body);
  }
  handler(&call);
  if (call.ctr)
    vd_loop_after_call(d, call.ctr, (int)call.after);
  free(call.arg);
  free(call.body);
  free(req.query);
  free(call.text);
  if (reply)
    *reply = call.json;
  else
    json_decref(call.json);
  return call.status;
}

static const char *reply_message(const json_t *reply) {
  const char *m = str(reply, "message");
  return m ? m : "no message";
}

/* The container image of the spec in this node's store, pulled from its registry (with this
 * node's credentials: its auth files) when it is not. */
static int ensure_image(vd_daemon *d, const char *ref, vs_error **err) {
  vs_image img;
  vs_error *e = NULL;
  pthread_mutex_lock(&d->store_lock);
  int r = vs_store_resolve(d->store, ref, &img, &e);
  pthread_mutex_unlock(&d->store_lock);
  if (r == 0) {
    vs_image_clear(&img);
    return 0;
  }
  vs_error_free(e);
  vs_registry_opts o = {.tls_verify = 1, .quiet = true, .containers_only = true};
  char digest[VS_DIGEST_MAX];
  if (vs_image_pull(d->store, ref, &o, digest, err) < 0)
    return vs_error_wrap(err,
                         "image %s: not in this host's image store, and pulling it from its "
                         "registry failed",
                         ref);
  vs_log_info("cluster: pulled %s for a container placed on this node", ref);
  return 0;
}

/* ------------------------------------------------------------- the container's node */

typedef struct local_state {
  bool exists, ours, running, manual_stop;
  char id[65];
} local_state;

static local_state local_of(vd_daemon *d, const char *name) {
  local_state s = {0};
  pthread_mutex_lock(&d->lock);
  vd_container *c = vd_ctr_find_name(d, name);
  if (c && !c->removing) {
    s.exists = true;
    s.ours = vd_cctr_of_cluster_locked(d, c);
    s.running = c->state == VD_CTR_RUNNING || c->starting;
    s.manual_stop = c->manual_stop;
    snprintf(s.id, sizeof(s.id), "%s", c->id);
  }
  pthread_mutex_unlock(&d->lock);
  return s;
}

static int local_create(vd_daemon *d, const char *name, const json_t *spec, vs_error **err) {
  const char *image = str(spec, "Image");
  if (!image)
    return vs_error_set(err, EINVAL, "the record's Spec has no Image");
  if (ensure_image(d, image, err) < 0)
    return -1;
  _cleanup_json_ json_t *body = json_deep_copy(spec);
  json_t *labels = json_object_get(body, "Labels");
  if (!json_is_object(labels)) {
    labels = json_object();
    json_object_set_new(body, "Labels", labels);
  }
  /* marks it as the cluster's: the reconciler removes it when its record goes or moves */
  json_object_set_new(labels, VD_CCTR_NODE_LABEL, json_string(d->cluster.node_name));
  _cleanup_free_ char *esc = vs_asprintf("name=%s", name);
  json_t *reply = NULL;
  int status = internal_call(d, vd_h_container_create, NULL, esc, body, &reply);
  if (status != 201)
    vs_error_set(err, status == 404 ? ENOENT : EIO, "create: %s", reply_message(reply));
  json_decref(reply);
  return status == 201 ? 0 : -1;
}

static int local_start(vd_daemon *d, const char *name, vs_error **err) {
  json_t *reply = NULL;
  int status = internal_call(d, vd_h_container_start, name, NULL, NULL, &reply);
  if (status != 204 && status != 304)
    vs_error_set(err, EIO, "start: %s", reply_message(reply));
  json_decref(reply);
  return status == 204 || status == 304 ? 0 : -1;
}

/* Write the record's Phase (and Start) as this node's container is, when it differs: the
 * cluster's desired state follows the user (a stop by a request: created, HA leaves it). seen:
 * the record as the caller read it (compared first: etcd is read only when it differs). */
static void sync_phase(vd_daemon *d, const char *name, const json_t *seen) {
  vd_cluster *cl = &d->cluster;
  local_state s = local_of(d, name);
  if (!s.exists || !s.ours)
    return;
  const char *want = s.running ? "running" : s.manual_stop ? "created" : NULL;
  if (!want || (seen && !strcmp(phase_of(seen), want)))
    return;
  int64_t rev = 0;
  vs_error *e = NULL;
  json_t *rec = vd_guest_record_get(cl, name, &rev, &e);
  if (!rec || !want || !str(rec, "Node") || strcmp(str(rec, "Node"), cl->node_name) != 0 ||
      !strcmp(phase_of(rec), want) || strcmp(phase_of(rec), "failed") == 0) {
    vs_error_free(e);
    json_decref(rec);
    return;
  }
  json_object_set_new(rec, "Phase", json_string(want));
  json_object_set_new(rec, "Start", json_boolean(!strcmp(want, "running")));
  json_object_set_new(rec, "Id", json_string(s.id));
  bool ok = false;
  if (vd_guest_record_put(cl, name, rec, rev, &ok, &e) < 0 || !ok)
    vs_log_debug("cluster: recording container %s as %s: %s", name, want,
                 e ? e->msg : "changed meanwhile");
  else
    vs_log_info("cluster: container %s is %s on this node", name, want);
  vs_error_free(e);
  json_decref(rec);
}

/* Make (and start) the container of a record placed on this node; the record then says so. */
static void make_local(vd_daemon *d, json_t *rec, int64_t rev) {
  vd_cluster *cl = &d->cluster;
  const char *name = str(rec, "Name");
  const json_t *spec = json_object_get(rec, "Spec");
  vs_error *e = NULL;
  local_state s = local_of(d, name);
  if (s.exists && !s.ours)
    vs_error_set(&e, EEXIST, "node %s has a container of its own named %s", cl->node_name, name);
  else if (!json_is_object(spec))
    vs_error_set(&e, EINVAL, "the record has no Spec");
  else if (!s.exists)
    local_create(d, name, spec, &e);
  bool start = json_is_true(json_object_get(rec, "Start"));
  if (!e && start && vd_ha_fenced(cl))
    vs_error_set(&e, EAGAIN, "node %s lost its lease in the cluster", cl->node_name);
  if (!e && start)
    local_start(d, name, &e);
  s = local_of(d, name);
  json_t *next = json_deep_copy(rec);
  if (!e && s.exists) {
    json_object_set_new(next, "Id", json_string(s.id));
    json_object_set_new(next, "Phase", json_string(s.running ? "running" : "created"));
    json_object_del(next, "Reason");
    vs_log_info("cluster: made container %s placed on this node", name);
  } else {
    json_object_set_new(next, "Phase", json_string("failed"));
    _cleanup_free_ char *why = vs_asprintf("on node %s: %s", cl->node_name, e ? e->msg : "unknown");
    json_object_set_new(next, "Reason", json_string(why));
    vs_log_warn("cluster: cannot make container %s: %s", name, e ? e->msg : "unknown");
  }
  vs_error_free(e);
  e = NULL;
  bool ok = false;
  if (vd_guest_record_put(cl, name, next, rev, &ok, &e) < 0 || !ok)
    vs_log_debug("cluster: recording container %s: %s", name, e ? e->msg : "changed meanwhile");
  vs_error_free(e);
  json_decref(next);
}

void vd_cctr_reconcile(vd_daemon *d, json_t *rec, int64_t rev) {
  const char *phase = phase_of(rec);
  local_state s = local_of(d, str(rec, "Name"));
  bool made = !strcmp(phase, "created") || !strcmp(phase, "running");
  if (!strcmp(phase, "placed") || (made && !s.exists))
    make_local(d, rec, rev);
  else if (made && s.ours)
    sync_phase(d, str(rec, "Name"), rec);
}

void vd_cctr_remove_orphans(vd_daemon *d, const json_t *mine) {
  json_t *names = json_array();
  pthread_mutex_lock(&d->lock);
  for (size_t i = 0; i < d->n_ctrs; i++) {
    vd_container *c = d->ctrs[i];
    if (c->name && !c->removing && vd_cctr_of_cluster_locked(d, c) &&
        !json_object_get(mine, c->name + 1))
      json_array_append_new(names, json_string(c->name + 1));
  }
  pthread_mutex_unlock(&d->lock);
  size_t i;
  json_t *n;
  json_array_foreach(names, i, n) {
    json_t *reply = NULL;
    int status =
        internal_call(d, vd_h_container_delete, json_string_value(n), "force=1", NULL, &reply);
    if (status == 204)
      vs_log_info("cluster: removed container %s, no longer the cluster's on this node",
                  json_string_value(n));
    else
      vs_log_debug("cluster: removing container %s: %s", json_string_value(n),
                   reply_message(reply));
    json_decref(reply);
  }
  json_decref(names);
}

void vd_cctr_forget(vd_daemon *d, vd_container *c) {
  vd_cluster *cl = &d->cluster;
  if (!cl->enabled)
    return;
  pthread_mutex_lock(&d->lock);
  _cleanup_free_ char *name =
      c->name && vd_cctr_of_cluster_locked(d, c) ? vs_strdup(c->name + 1) : NULL;
  pthread_mutex_unlock(&d->lock);
  if (!name)
    return;
  int64_t rev = 0;
  vs_error *e = NULL;
  json_t *rec = vd_guest_record_get(cl, name, &rev, &e);
  /* the same Id on this node, made: not a record placed here again since (drain, failover) */
  bool ours = rec && is_container_record(rec) && !strcmp(str(rec, "Node") ?: "", cl->node_name) &&
              !strcmp(str(rec, "Id") ?: "", c->id) && strcmp(phase_of(rec), "placed") != 0;
  json_decref(rec);
  bool gone = false;
  _cleanup_free_ char *key = vs_asprintf(GUESTS "%s", name);
  if (ours && vc_etcd_delete_if(cl->etcd, key, rev, &gone, &e) == 0 && gone)
    vs_log_info("cluster: container %s removed on its node: its record too", name);
  if (e)
    vs_log_warn("cluster: the record of removed container %s: %s", name, e->msg);
  vs_error_free(e);
}

/* ------------------------------------------------------------- requests of other nodes */

/* The json-file log of this node's container, as [{"Stream", "Text"}], tail lines ("all" or
 * a number), at most LOGS_MAX bytes of text (the newest). */
static json_t *read_logs(vd_daemon *d, const char *name, const char *tail, vs_error **err) {
  pthread_mutex_lock(&d->lock);
  vd_container *c = vd_ctr_find_name(d, name);
  char *path = c ? vd_ctr_log_path(c) : NULL;
  pthread_mutex_unlock(&d->lock);
  if (!path)
    return vs_error_set(err, ENOENT, "No such container: %s", name), NULL;
  int fd = -1;
  char *end = NULL;
  long long n = tail && strcmp(tail, "all") != 0 ? strtoll(tail, &end, 10) : -1;
  if (end && (*end || n < 0)) {
    free(path);
    return vs_error_set(err, EINVAL, "tail: expected \"all\" or a number of lines"), NULL;
  }
  if (n >= 0)
    vd_log_seek_tail(path, n, &fd);
  else
    fd = open(path, O_RDONLY | O_CLOEXEC);
  free(path);
  json_t *out = json_array();
  if (fd < 0)
    return out; /* nothing written yet */
  struct stat st;
  off_t pos = lseek(fd, 0, SEEK_CUR);
  off_t window = (off_t)(4 * LOGS_MAX); /* the text, and the JSON lines' overhead */
  if (fstat(fd, &st) == 0 && st.st_size - pos > window)
    lseek(fd, st.st_size - window, SEEK_SET);
  FILE *f = fdopen(fd, "r");
  char *line = NULL;
  size_t cap = 0, total = 0;
  ssize_t len;
  bool partial = pos != lseek(fd, 0, SEEK_CUR); /* the first line is cut: skip it */
  while (f && (len = getline(&line, &cap, f)) > 0) {
    if (partial) {
      partial = false;
      continue;
    }
    json_t *j = json_loadb(line, (size_t)len, 0, NULL);
    const char *text = str(j, "log"), *stream = str(j, "stream");
    if (text) {
      total += strlen(text);
      json_array_append_new(out, json_pack("{s:s, s:O}", "Stream", stream ? stream : "stdout",
                                           "Text", json_object_get(j, "log")));
    }
    json_decref(j);
  }
  while (total > LOGS_MAX && json_array_size(out) > 1) {
    total -= json_string_length(json_object_get(json_array_get(out, 0), "Text"));
    json_array_remove(out, 0);
  }
  free(line);
  if (f)
    fclose(f);
  else
    close(fd);
  return out;
}

/* A stop, start or logs of this node's container: the answer's {Status, Message, Output}. */
static json_t *do_op(vd_daemon *d, const char *name, const json_t *op) {
  const char *what = str(op, "Op");
  json_t *reply = NULL;
  int status = 500;
  vs_error *e = NULL;
  if (what && !strcmp(what, "logs")) {
    json_t *out = read_logs(d, name, str(op, "Tail"), &e);
    if (out)
      return json_pack("{s:i, s:o}", "Status", 200, "Output", out);
    int errnum = e ? e->errnum : 0;
    status = errnum == ENOENT ? 404 : errnum == EINVAL ? 400 : 500;
    json_t *r = json_pack("{s:i, s:s}", "Status", status, "Message", e ? e->msg : "no message");
    vs_error_free(e);
    return r;
  }
  if (what && !strcmp(what, "stop")) {
    json_int_t t = json_integer_value(json_object_get(op, "Timeout"));
    _cleanup_free_ char *q =
        json_object_get(op, "Timeout") ? vs_asprintf("t=%lld", (long long)t) : NULL;
    status = internal_call(d, vd_h_container_stop, name, q, NULL, &reply);
  } else if (what && !strcmp(what, "start")) {
    status = internal_call(d, vd_h_container_start, name, NULL, NULL, &reply);
  } else {
    status = 400;
    reply = json_pack("{s:s}", "message", "unknown operation");
  }
  sync_phase(d, name, NULL);
  json_t *r = json_pack("{s:i}", "Status", status);
  if (status >= 400)
    json_object_set_new(r, "Message", json_string(reply_message(reply)));
  json_decref(reply);
  return r;
}

/* ------------------------------------------------------------- the API */

/* The placement request of a container: its CPUs (HostConfig.NanoCpus) and memory
 * (HostConfig.Memory), 0 when not limited, as Kubernetes counts a pod without requests. */
static int take_requests(const json_t *body, json_t *guest, vs_error **err) {
  const json_t *hc = json_object_get(body, "HostConfig");
  if (hc && !json_is_object(hc))
    return vs_error_set(err, EINVAL, "HostConfig: expected an object");
  const json_t *nano = json_object_get(hc, "NanoCpus"), *mem = json_object_get(hc, "Memory");
  if ((nano && !json_is_integer(nano)) || json_integer_value(nano) < 0)
    return vs_error_set(err, EINVAL, "HostConfig.NanoCpus: expected a number of 0 or more");
  if ((mem && !json_is_integer(mem)) || json_integer_value(mem) < 0)
    return vs_error_set(err, EINVAL, "HostConfig.Memory: expected a number of bytes");
  json_object_set_new(guest, "Cpus", json_real((double)json_integer_value(nano) / 1e9));
  json_object_set_new(guest, "Memory", json_integer(json_integer_value(mem)));
  const char *policy;
  int64_t max;
  if (vd_restart_policy_check(json_object_get(hc, "RestartPolicy"), &policy, &max, err) < 0)
    return vs_error_wrap(err, "HostConfig");
  return 0;
}

/* What ps shows of a container on another node: its image and command. */
static void take_display(const json_t *body, json_t *guest) {
  json_object_set(guest, "Image", json_object_get(body, "Image"));
  const json_t *cmd = json_object_get(body, "Cmd");
  size_t i;
  json_t *a;
  char *text = vs_strdup("");
  json_array_foreach(cmd, i, a) {
    char *next =
        vs_asprintf("%s%s%s", text, i ? " " : "", json_string_value(a) ? json_string_value(a) : "");
    free(text);
    text = next;
  }
  json_object_set_new(guest, "Command", json_string(text));
  free(text);
}

static int check_create(vd_cluster *cl, json_t *body, json_t *guest, vs_error **err) {
  const json_t *image = json_object_get(body, "Image");
  if (!json_is_string(image) || !*json_string_value(image))
    return vs_error_set(err, EINVAL, "Image: expected a reference such as registry/app:tag");
  if (vd_cluster_take_placement(body, guest, true, err) < 0 || take_requests(body, guest, err) < 0)
    return -1;
  /* docker run --label vessel.pool=NAME: a pool of the cluster admits it cluster-wide; another
   * name is a pool of the node it lands on (the label stays for that node) */
  const char *pool = str(json_object_get(body, "Labels"), "vessel.pool");
  if (pool) {
    _cleanup_json_ json_t *p = json_pack("{s:s}", "Pool", pool);
    if (vd_cluster_take_pool(cl, p, guest, err) < 0)
      return -1;
    if (json_object_get(guest, "Pool")) /* the cluster's: not a pool of the node it lands on */
      json_object_del(json_object_get(body, "Labels"), "vessel.pool");
  }
  take_display(body, guest);
  return 0;
}

/* POST /vessel/v1/containers?name=NAME: a container of the cluster (started once made). */
void vd_h_cluster_ctr_create(vd_call *c) {
  if (!vd_cluster_required(c))
    return;
  vd_cluster *cl = &c->d->cluster;
  json_t *body = vd_call_body_object(c);
  if (!body)
    return;
  _cleanup_free_ char *qname = http_query_get(c->req->query, "name");
  _cleanup_free_ char *id = vd_random_id();
  _cleanup_free_ char *name =
      qname && *qname ? vs_strdup(qname + (qname[0] == '/')) : vs_asprintf("c-%.10s", id);
  vs_error *e = NULL;
  json_t *guest = json_pack("{s:s, s:s}", "Kind", "container", "Name", name);
  if (!vd_vm_name_valid(name))
    vs_error_set(&e, EINVAL,
                 "container name \"%s\": a container of the cluster is named by 1 to 64 "
                 "letters, digits, '_', '.' or '-', starting with a letter or digit",
                 name);
  else if (check_create(cl, body, guest, &e) < 0 && e->errnum == 0)
    e->errnum = EINVAL;
  if (e) {
    vd_call_fail(c, e);
    vs_error_free(e);
    json_decref(body);
    json_decref(guest);
    return;
  }
  json_object_set_new(guest, "Start", json_true());
  json_object_set_new(guest, "Spec", body);
  json_object_set_new(guest, "Phase", json_string("pending"));
  json_object_set_new(guest, "Origin", json_string(cl->node_name));
  char *now = vd_now();
  json_object_set_new(guest, "Created", json_string(now));
  free(now);
  bool ok = false;
  if (vd_guest_record_put(cl, name, guest, 0, &ok, &e) < 0) {
    vd_call_error(c, 503, "cluster store: %s", e->msg);
    vs_error_free(e);
  } else if (!ok) {
    vd_call_error(c, 409, "the name %s is already in use by a guest of the cluster", name);
  } else {
    vd_cluster_wait_created(c, name, "container");
  }
  json_decref(guest);
}

/* The record of the container the path names: NULL after answering (404, 503). */
static json_t *call_record(vd_call *c, int64_t *rev) {
  vs_error *e = NULL;
  json_t *rec = vd_guest_record_get(&c->d->cluster, c->arg, rev, &e);
  if (!rec && e) {
    vd_call_error(c, 503, "cluster store: %s", e->msg);
    vs_error_free(e);
    return NULL;
  }
  if (!rec || !is_container_record(rec)) {
    json_decref(rec);
    vd_call_error(c, 404, "No such container of the cluster: %s", c->arg);
    return NULL;
  }
  return rec;
}

static bool node_alive(vd_cluster *cl, const char *node) {
  _cleanup_free_ char *key = vs_asprintf("/vessel/nodes/%s", node);
  int64_t rev;
  json_t *n = vd_cache_get(cl, key, &rev);
  if (!n) {
    vc_range r;
    vs_error *e = NULL;
    bool there = vc_etcd_get(cl->etcd, key, &r, &e) == 0 && r.n > 0;
    if (!e)
      vc_range_clear(&r);
    vs_error_free(e);
    return there;
  }
  json_decref(n);
  return true;
}

/* A stop, start or logs of a container of the cluster on this node (one of another node was
 * carried to it before the handler: cluster_tunnel.c). The answer {Status, Message, Output}, or
 * NULL after answering the call. */
static json_t *run_op(vd_call *c, json_t *op) {
  vd_cluster *cl = &c->d->cluster;
  int64_t rev = 0;
  json_t *rec = call_record(c, &rev);
  if (!rec)
    return NULL;
  const char *node = str(rec, "Node");
  const char *phase = phase_of(rec);
  json_t *answer = NULL;
  if (!node || (strcmp(phase, "created") != 0 && strcmp(phase, "running") != 0)) {
    vd_call_error(c, 409, "container %s is %s, not made on a node", c->arg,
                  *phase ? phase : "without a phase");
  } else if (!strcmp(node, cl->node_name)) {
    answer = do_op(c->d, c->arg, op);
  } else if (!node_alive(cl, node)) {
    vd_call_error(c, 409, "container %s is on node %s, which is down", c->arg, node);
  } else {
    /* the tunnel carries the request to that node from this node's copy of the records, which
     * did not have it there yet */
    vd_call_error(c, 503,
                  "container %s is on node %s: this node's copy of the cluster's records "
                  "did not say so yet; try again",
                  c->arg, node);
  }
  if (answer && !json_object_get(answer, "Node"))
    json_object_set_new(answer, "Node", json_string(node));
  if (answer && json_is_true(json_object_get(json_object_get(rec, "Spec"), "Tty")))
    json_object_set_new(answer, "Tty", json_true());
  json_decref(rec);
  return answer;
}

static void answer_op(vd_call *c, json_t *answer) {
  if (!answer)
    return;
  int status = (int)json_integer_value(json_object_get(answer, "Status"));
  if (status >= 400)
    vd_call_error(c, status, "%s", str(answer, "Message") ? str(answer, "Message") : "failed");
  else
    vd_call_status(c, status ? status : 204);
  json_decref(answer);
}

void vd_h_cluster_ctr_stop(vd_call *c) {
  if (!vd_cluster_required(c))
    return;
  json_t *op = json_pack("{s:s}", "Op", "stop");
  _cleanup_free_ char *t = http_query_get(c->req->query, "t");
  if (t && *t) {
    char *end;
    long v = strtol(t, &end, 10);
    if (*end || v < 0 || v > STOP_TIMEOUT_MAX) {
      json_decref(op);
      vd_call_error(c, 400, "invalid value for t: %s", t);
      return;
    }
    json_object_set_new(op, "Timeout", json_integer(v));
  }
  answer_op(c, run_op(c, op));
  json_decref(op);
}

void vd_h_cluster_ctr_start(vd_call *c) {
  if (!vd_cluster_required(c))
    return;
  json_t *op = json_pack("{s:s}", "Op", "start");
  answer_op(c, run_op(c, op));
  json_decref(op);
}

/* GET /vessel/v1/containers/{name}/logs[?tail=N]: {"Node", "Tty", "Output": [{"Stream",
 * "Text"}]} from the container's node (no follow: the output so far). */
void vd_h_cluster_ctr_logs(vd_call *c) {
  if (!vd_cluster_required(c))
    return;
  _cleanup_free_ char *tail = http_query_get(c->req->query, "tail");
  json_t *op = json_pack("{s:s, s:s}", "Op", "logs", "Tail", tail && *tail ? tail : "all");
  json_t *answer = run_op(c, op);
  json_decref(op);
  if (!answer)
    return;
  int status = (int)json_integer_value(json_object_get(answer, "Status"));
  if (status >= 400) {
    answer_op(c, answer);
    return;
  }
  json_t *out = json_pack("{s:O, s:b, s:O}", "Node", json_object_get(answer, "Node"), "Tty",
                          json_is_true(json_object_get(answer, "Tty")), "Output",
                          json_object_get(answer, "Output"));
  json_decref(answer);
  vd_call_json(c, 200, out);
}

/* DELETE /vessel/v1/containers/{name}[?force=1]: the record goes (a running container only
 * with force); its node removes the container, at once when it is this one. */
void vd_h_cluster_ctr_delete(vd_call *c) {
  if (!vd_cluster_required(c))
    return;
  vd_cluster *cl = &c->d->cluster;
  bool force = http_query_bool(c->req->query, "force", false);
  int64_t rev = 0;
  json_t *rec = call_record(c, &rev);
  if (!rec)
    return;
  const char *node = str(rec, "Node");
  if (!strcmp(phase_of(rec), "running") && !force) {
    vd_call_error(c, 409, "container %s is running on node %s: stop it first or force the removal",
                  c->arg, node ? node : "?");
    json_decref(rec);
    return;
  }
  if (node && !strcmp(node, cl->node_name)) {
    json_t *reply = NULL;
    int status = internal_call(c->d, vd_h_container_delete, c->arg, "force=1", NULL, &reply);
    if (status != 204 && status != 404) {
      vd_call_error(c, status, "%s", reply_message(reply));
      json_decref(reply);
      json_decref(rec);
      return;
    }
    json_decref(reply);
  }
  _cleanup_free_ char *key = vs_asprintf(GUESTS "%s", c->arg);
  vs_error *e = NULL;
  if (vc_etcd_delete(cl->etcd, key, false, NULL, &e) < 0)
    vd_call_error(c, 503, "cluster store: %s", e->msg);
  else
    vd_call_status(c, 204);
  vs_error_free(e);
  json_decref(rec);
}

/* ------------------------------------------------------------- fencing */

int vd_cctr_fence_kill(vd_daemon *d) {
  int n = 0;
  pthread_mutex_lock(&d->lock);
  for (size_t i = 0; i < d->n_ctrs; i++) {
    vd_container *c = d->ctrs[i];
    if (c->state != VD_CTR_RUNNING || c->pid <= 0 || !vd_cctr_of_cluster_locked(d, c))
      continue;
    /* a pidfd, opened while the table says the process runs: never another process's pid */
    int fd = (int)syscall(SYS_pidfd_open, c->pid, 0);
    if (fd >= 0) {
      syscall(SYS_pidfd_send_signal, fd, SIGKILL, NULL, 0);
      close(fd);
      n++;
    }
  }
  pthread_mutex_unlock(&d->lock);
  return n;
}

size_t vd_cctr_pidfds(vd_daemon *d, int *fds, size_t max) {
  size_t n = 0;
  pthread_mutex_lock(&d->lock);
  for (size_t i = 0; i < d->n_ctrs && n < max; i++) {
    vd_container *c = d->ctrs[i];
    if (c->state != VD_CTR_RUNNING || c->pid <= 0 || !vd_cctr_of_cluster_locked(d, c))
      continue;
    int fd = (int)syscall(SYS_pidfd_open, c->pid, 0);
    if (fd >= 0)
      fds[n++] = fd;
  }
  pthread_mutex_unlock(&d->lock);
  return n;
}

/* This node's containers of the cluster that are not running and whose restart policy wants
 * them back (after vesseld's start, or its fencing): started if etcd still places them here,
 * after vd_ha_claim_own's compare-and-swap. -1 when etcd could not be asked. */
int vd_cctr_restart_own(vd_daemon *d) {
  json_t *names = json_array();
  pthread_mutex_lock(&d->lock);
  for (size_t i = 0; i < d->n_ctrs; i++) {
    vd_container *c = d->ctrs[i];
    if (c->name && vd_cctr_of_cluster_locked(d, c) && !c->starting && vd_restart_wanted(c))
      json_array_append_new(names, json_string(c->name + 1));
  }
  pthread_mutex_unlock(&d->lock);
  int rc = 0;
  size_t i;
  json_t *n;
  json_array_foreach(names, i, n) {
    const char *name = json_string_value(n);
    vs_error *e = NULL;
    bool mine = vd_ha_claim_own(&d->cluster, name, &e);
    if (e)
      rc = -1;
    else if (mine && local_start(d, name, &e) == 0)
      vs_log_info("cluster: restarted container %s, which etcd still places on this node", name);
    if (e)
      vs_log_warn("cluster: restarting container %s: %s", name, e->msg);
    vs_error_free(e);
  }
  json_decref(names);
  return rc;
}
