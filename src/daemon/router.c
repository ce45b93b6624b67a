/* API paths to handlers, API version prefixes, and the answer helpers handlers use. */
#include "daemon/internal.h"

#include <errno.h>
#include <stdarg.h>
#include <string.h>

static const vd_route routes[] = {
    {"GET", "/_ping", vd_h_ping, VD_RUN_LOOP, false},
    {"HEAD", "/_ping", vd_h_ping, VD_RUN_LOOP, false},
    {"GET", "/version", vd_h_version, VD_RUN_LOOP, false},
    {"GET", "/info", vd_h_info, VD_RUN_WORKER, false},
    {"GET", "/events", vd_h_events, VD_RUN_LOOP, false},
    {"POST", "/commit", vd_h_commit, VD_RUN_WORKER, false},
    {"POST", "/build", vd_h_build, VD_RUN_WORKER_STREAMED, false},
    {"GET", "/images/json", vd_h_images_list, VD_RUN_WORKER, false},
    {"POST", "/images/load", vd_h_image_load, VD_RUN_WORKER, true},
    {"POST", "/images/prune", vd_h_images_prune, VD_RUN_WORKER, false},
    {"GET", "/system/df", vd_h_system_df, VD_RUN_WORKER, false},
    {"POST", "/build/prune", vd_h_build_prune, VD_RUN_WORKER, false},
    {"POST", "/images/create", vd_h_image_create, VD_RUN_WORKER, true},
    {"GET", "/images/{*}/json", vd_h_image_inspect, VD_RUN_WORKER, false},
    {"GET", "/images/{*}/history", vd_h_image_history, VD_RUN_WORKER, false},
    {"GET", "/images/get", vd_h_image_save, VD_RUN_WORKER, false},
    {"GET", "/images/{*}/get", vd_h_image_save, VD_RUN_WORKER, false},
    {"POST", "/images/{*}/tag", vd_h_image_tag, VD_RUN_WORKER, false},
    {"POST", "/images/{*}/push", vd_h_image_push, VD_RUN_WORKER, false},
    {"POST", "/auth", vd_h_auth, VD_RUN_WORKER, false},
    {"DELETE", "/images/{*}", vd_h_image_delete, VD_RUN_WORKER, false},
    {"GET", "/containers/json", vd_h_containers_list, VD_RUN_LOOP, false},
    {"POST", "/containers/create", vd_h_container_create, VD_RUN_WORKER, false},
    {"GET", "/containers/{}/json", vd_h_container_inspect, VD_RUN_LOOP, false},
    {"POST", "/containers/{}/start", vd_h_container_start, VD_RUN_WORKER, false},
    {"POST", "/containers/{}/stop", vd_h_container_stop, VD_RUN_WORKER, false},
    {"POST", "/containers/{}/kill", vd_h_container_kill, VD_RUN_WORKER, false},
    {"POST", "/containers/{}/wait", vd_h_container_wait, VD_RUN_LOOP, false},
    {"POST", "/containers/{}/attach", vd_h_container_attach, VD_RUN_LOOP, false},
    {"GET", "/containers/{}/logs", vd_h_container_logs, VD_RUN_LOOP, false},
    {"POST", "/containers/{}/restart", vd_h_container_restart, VD_RUN_WORKER, false},
    {"POST", "/containers/{}/pause", vd_h_container_pause, VD_RUN_WORKER, false},
    /* on the loop, so that resizes are applied in the order they came (on workers a burst of
     * them raced and an earlier size could land last); a local connect and a 9-byte write */
    {"POST", "/containers/{}/resize", vd_h_container_resize, VD_RUN_LOOP, false},
    {"POST", "/containers/{}/unpause", vd_h_container_unpause, VD_RUN_WORKER, false},
    {"DELETE", "/containers/{}", vd_h_container_delete, VD_RUN_WORKER, false},
    {"POST", "/containers/{}/exec", vd_h_exec_create, VD_RUN_LOOP, false},
    {"POST", "/containers/{}/rename", vd_h_container_rename, VD_RUN_WORKER, false},
    {"GET", "/containers/{}/top", vd_h_container_top, VD_RUN_WORKER, false},
    {"GET", "/containers/{}/stats", vd_h_container_stats, VD_RUN_LOOP, false},
    {"GET", "/containers/{}/changes", vd_h_container_changes, VD_RUN_WORKER, false},
    {"GET", "/containers/{}/archive", vd_h_container_archive_get, VD_RUN_WORKER, false},
    {"HEAD", "/containers/{}/archive", vd_h_container_archive_get, VD_RUN_WORKER, false},
    {"PUT", "/containers/{}/archive", vd_h_container_archive_put, VD_RUN_WORKER, true},
    {"GET", "/containers/{}/export", vd_h_container_export, VD_RUN_WORKER, false},
    {"POST", "/containers/{}/update", vd_h_container_update, VD_RUN_WORKER, false},
    {"POST", "/containers/prune", vd_h_containers_prune, VD_RUN_WORKER, false},
    {"POST", "/exec/{}/start", vd_h_exec_start, VD_RUN_LOOP, false},
    {"GET", "/exec/{}/json", vd_h_exec_inspect, VD_RUN_LOOP, false},
    {"POST", "/exec/{}/resize", vd_h_exec_resize, VD_RUN_LOOP, false},
    {"GET", "/volumes", vd_h_volumes_list, VD_RUN_WORKER, false},
    {"POST", "/volumes/create", vd_h_volume_create, VD_RUN_WORKER, false},
    {"POST", "/volumes/prune", vd_h_volumes_prune, VD_RUN_WORKER, false},
    {"GET", "/volumes/{}", vd_h_volume_inspect, VD_RUN_WORKER, false},
    {"DELETE", "/volumes/{}", vd_h_volume_delete, VD_RUN_WORKER, false},
    {"GET", "/networks", vd_h_networks_list, VD_RUN_WORKER, false},
    {"POST", "/networks/create", vd_h_network_create, VD_RUN_WORKER, false},
    {"POST", "/networks/prune", vd_h_networks_prune, VD_RUN_WORKER, false},
    {"GET", "/networks/{}", vd_h_network_inspect, VD_RUN_WORKER, false},
    {"DELETE", "/networks/{}", vd_h_network_delete, VD_RUN_WORKER, false},
    {"POST", "/networks/{}/connect", vd_h_network_connect, VD_RUN_WORKER, false},
    {"POST", "/networks/{}/disconnect", vd_h_network_disconnect, VD_RUN_WORKER, false},
    {"POST", "/vessel/v1/networks/{}/taps", vd_h_network_tap_attach, VD_RUN_WORKER, false},
    {"DELETE", "/vessel/v1/networks/{}/taps", vd_h_network_tap_detach, VD_RUN_WORKER, false},
    /* vessel's own API beside Docker's (docs/api.md) */
    {"GET", "/vessel/v1/pools", vd_h_pools_list, VD_RUN_LOOP, false},
    {"POST", "/vessel/v1/pools", vd_h_pool_create, VD_RUN_WORKER, false},
    {"GET", "/vessel/v1/pools/{}", vd_h_pool_inspect, VD_RUN_LOOP, false},
    {"POST", "/vessel/v1/pools/{}/update", vd_h_pool_update, VD_RUN_WORKER, false},
    {"GET", "/vessel/v1/pools/{}/stats", vd_h_pool_stats, VD_RUN_WORKER, false},
    {"DELETE", "/vessel/v1/pools/{}", vd_h_pool_delete, VD_RUN_WORKER, false},
    {"GET", "/vessel/v1/nodes", vd_h_nodes_list, VD_RUN_WORKER, false},
    {"GET", "/vessel/v1/guests", vd_h_cluster_guests, VD_RUN_WORKER, false},
    {"POST", "/vessel/v1/containers", vd_h_cluster_ctr_create, VD_RUN_WORKER, false},
    {"POST", "/vessel/v1/containers/{}/stop", vd_h_cluster_ctr_stop, VD_RUN_WORKER, false},
    {"POST", "/vessel/v1/containers/{}/start", vd_h_cluster_ctr_start, VD_RUN_WORKER, false},
    {"GET", "/vessel/v1/containers/{}/logs", vd_h_cluster_ctr_logs, VD_RUN_WORKER, false},
    {"DELETE", "/vessel/v1/containers/{}", vd_h_cluster_ctr_delete, VD_RUN_WORKER, false},
    {"GET", "/vessel/v1/cluster/images", vd_h_cluster_images, VD_RUN_WORKER, false},
    {"GET", "/vessel/v1/nodes/{}", vd_h_node_inspect, VD_RUN_WORKER, false},
    {"POST", "/vessel/v1/nodes/{}/cordon", vd_h_node_cordon, VD_RUN_WORKER, false},
    {"POST", "/vessel/v1/nodes/{}/uncordon", vd_h_node_uncordon, VD_RUN_WORKER, false},
    {"POST", "/vessel/v1/nodes/{}/drain", vd_h_node_drain, VD_RUN_WORKER, false},
    {"POST", "/vessel/v1/nodes/{}/labels", vd_h_node_labels, VD_RUN_WORKER, false},
    {"DELETE", "/vessel/v1/nodes/{}", vd_h_node_delete, VD_RUN_WORKER, false},
    {"GET", "/vessel/v1/vms", vd_h_vms_list, VD_RUN_LOOP, false},
    {"POST", "/vessel/v1/vms", vd_h_vm_create, VD_RUN_WORKER, false},
    {"GET", "/vessel/v1/vms/{}", vd_h_vm_inspect, VD_RUN_LOOP, false},
    {"DELETE", "/vessel/v1/vms/{}", vd_h_vm_delete, VD_RUN_WORKER, false},
    {"POST", "/vessel/v1/vms/{}/start", vd_h_vm_start, VD_RUN_WORKER, false},
    {"POST", "/vessel/v1/vms/{}/stop", vd_h_vm_stop, VD_RUN_WORKER, false},
    {"POST", "/vessel/v1/vms/{}/kill", vd_h_vm_kill, VD_RUN_WORKER, false},
    {"POST", "/vessel/v1/vms/{}/restart", vd_h_vm_restart, VD_RUN_WORKER, false},
    {"POST", "/vessel/v1/vms/{}/pause", vd_h_vm_pause, VD_RUN_WORKER, false},
    {"POST", "/vessel/v1/vms/{}/resume", vd_h_vm_resume, VD_RUN_WORKER, false},
    {"POST", "/vessel/v1/vms/{}/migrate", vd_h_vm_migrate, VD_RUN_WORKER, false},
    {"GET", "/vessel/v1/vms/{}/logs", vd_h_vm_logs, VD_RUN_LOOP, false},
    {"POST", "/vessel/v1/vms/{}/console", vd_h_vm_console, VD_RUN_LOOP, false},
    {"POST", "/vessel/v1/vms/{}/snapshot", vd_h_vm_snapshot, VD_RUN_WORKER, false},
    {"POST", "/vessel/v1/vms/{}/restore", vd_h_vm_restore, VD_RUN_WORKER, false},
    {"POST", "/vessel/v1/vms/{}/clone", vd_h_vm_clone, VD_RUN_WORKER, false},
    {"GET", "/vessel/v1/vms/{}/stats", vd_h_vm_stats, VD_RUN_LOOP, false},
    {"POST", "/vessel/v1/vms/{}/update", vd_h_vm_update, VD_RUN_WORKER, false},
    {"GET", "/vessel/v1/images/vm", vd_h_vm_images_list, VD_RUN_WORKER, false},
    {"POST", "/vessel/v1/images/vm/push", vd_h_vm_image_push, VD_RUN_WORKER, false},
    {"POST", "/vessel/v1/images/vm/import", vd_h_vm_image_import, VD_RUN_WORKER, false},
    {"GET", "/vessel/v1/host/stats", vd_h_host_stats, VD_RUN_LOOP, false},
    {"POST", "/vessel/v1/web/password", vd_h_web_password, VD_RUN_WORKER, false},
    /* swarm mode is out of scope: answered as dockerd does when it is not a manager */
    {"GET", "/swarm", vd_h_swarm, VD_RUN_LOOP, false},
    {"POST", "/swarm/{*}", vd_h_swarm, VD_RUN_LOOP, false},
    {"GET", "/nodes", vd_h_swarm, VD_RUN_LOOP, false},
    {"GET", "/services", vd_h_swarm, VD_RUN_LOOP, false},
    {"POST", "/services/create", vd_h_swarm, VD_RUN_LOOP, false},
    {"GET", "/tasks", vd_h_swarm, VD_RUN_LOOP, false},
    {"GET", "/secrets", vd_h_swarm, VD_RUN_LOOP, false},
    {"GET", "/configs", vd_h_swarm, VD_RUN_LOOP, false},
};

/* Match path against one pattern; *arg gets what the placeholder matched. */
static bool pattern_match(const char *pattern, const char *path, char **arg) {
  const char *ph = strchr(pattern, '{');
  if (!ph)
    return !strcmp(pattern, path);
  size_t pre = (size_t)(ph - pattern);
  bool any = ph[1] == '*';
  const char *suffix = strchr(ph, '}') + 1;
  size_t plen = strlen(path), slen = strlen(suffix);
  if (plen < pre + slen + 1 || strncmp(path, pattern, pre) != 0 ||
      strcmp(path + plen - slen, suffix) != 0)
    return false;
  size_t alen = plen - pre - slen;
  const char *a = path + pre;
  if (!any && memchr(a, '/', alen))
    return false;
  *arg = vs_malloc0(alen + 1);
  memcpy(*arg, a, alen);
  return true;
}

const vd_route *vd_route_find(const char *method, const char *path, char **arg, bool *path_known) {
  *path_known = false;
  *arg = NULL;
  for (size_t i = 0; i < ARRAY_SIZE(routes); i++) {
    char *a = NULL;
    if (!pattern_match(routes[i].pattern, path, &a))
      continue;
    *path_known = true;
    if (!strcmp(routes[i].method, method)) {
      free(*arg);
      *arg = a;
      return &routes[i];
    }
    free(a);
  }
  return NULL;
}

/* "1.41" as 141; -1 if malformed. */
static int version_number(const char *s, size_t len) {
  unsigned major = 0, minor = 0;
  size_t i = 0;
  for (; i < len && s[i] >= '0' && s[i] <= '9' && major < 100; i++)
    major = major * 10 + (unsigned)(s[i] - '0');
  if (i == 0 || i >= len || s[i] != '.')
    return -1;
  size_t j = ++i;
  for (; i < len && s[i] >= '0' && s[i] <= '9' && minor < 1000; i++)
    minor = minor * 10 + (unsigned)(s[i] - '0');
  if (i == j || i != len)
    return -1;
  return (int)(major * 1000 + minor);
}

const char *vd_api_path(const char *path, char **msg) {
  *msg = NULL;
  if (path[0] != '/' || path[1] != 'v' || path[2] < '0' || path[2] > '9')
    return path;
  const char *slash = strchr(path + 1, '/');
  size_t vlen = slash ? (size_t)(slash - path - 2) : strlen(path + 2);
  int v = version_number(path + 2, vlen);
  if (v < 0)
    return path; /* not a version prefix: the path is looked up as it is (and not found) */
  if (v > version_number(VD_API_VERSION, strlen(VD_API_VERSION))) {
    *msg = vs_asprintf("client version %.*s is too new. Maximum supported API version is "
                       "" VD_API_VERSION,
                       (int)vlen, path + 2);
    return NULL;
  }
  if (v < version_number(VD_MIN_API_VERSION, strlen(VD_MIN_API_VERSION))) {
    *msg = vs_asprintf("client version %.*s is too old. Minimum supported API version is "
                       "" VD_MIN_API_VERSION ", please upgrade your client to a newer version",
                       (int)vlen, path + 2);
    return NULL;
  }
  return slash ? slash : "/";
}

int vd_route_resolve(vd_call *call, char **msg) {
  const char *path = vd_api_path(call->req->path, msg);
  if (!path)
    return 400;
  bool known;
  call->route = vd_route_find(call->req->method, path, &call->arg, &known);
  if (call->route)
    return 0;
  if (known) {
    *msg = vs_asprintf("method %s not allowed for %s", call->req->method, path);
    return 405;
  }
  *msg = vs_strdup("page not found");
  return 404;
}

/* ---------------------------------------------------------------- answers */

void vd_call_json(vd_call *c, int status, json_t *json) {
  json_decref(c->json);
  c->status = status;
  c->json = json;
}

void vd_call_status(vd_call *c, int status) {
  json_decref(c->json);
  c->json = NULL;
  c->status = status;
}

void vd_call_error(vd_call *c, int status, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *msg = NULL;
  if (vasprintf(&msg, fmt, ap) < 0)
    abort();
  va_end(ap);
  vd_call_json(c, status, json_pack("{s:s}", "message", msg));
  free(msg);
}

void vd_call_fail(vd_call *c, const vs_error *e) {
  if (!e) {
    vd_call_error(c, 500, "internal error without a message");
    return;
  }
  int status = 500;
  if (e->errnum == ENOENT)
    status = 404;
  else if (e->errnum == EEXIST || e->errnum == EBUSY || e->errnum == EADDRINUSE)
    status = 409; /* EADDRINUSE: a host port another endpoint or program holds */
  else if (e->errnum == EINVAL)
    status = 400;
  vd_call_error(c, status, "%s", e->msg);
}

json_t *vd_call_body_object(vd_call *c) {
  if (!c->body || c->body_len == 0) {
    vd_call_error(c, 400, "request body is empty: a JSON object was expected");
    return NULL;
  }
  vs_error *e = NULL;
  json_t *j = vs_json_loads(c->body, c->body_len, "request body", &e);
  if (!j) {
    vd_call_error(c, 400, "%s", e->msg);
    vs_error_free(e);
    return NULL;
  }
  if (!json_is_object(j)) {
    vd_call_error(c, 400, "request body: expected a JSON object, found %s", vs_json_type_name(j));
    json_decref(j);
    return NULL;
  }
  return j;
}

int vd_call_filters(vd_call *c, const char *const *known, size_t n_known, json_t **out) {
  *out = NULL;
  _cleanup_free_ char *text = http_query_get(c->req->query, "filters");
  if (!text || !*text)
    return 0;
  vs_error *e = NULL;
  json_t *filters = vs_json_loads(text, strlen(text), "filters", &e);
  if (!filters || !json_is_object(filters)) {
    vd_call_error(c, 400, "invalid filters: %s", e ? e->msg : "expected a JSON object");
    vs_error_free(e);
    json_decref(filters);
    return -1;
  }
  const char *key;
  json_t *v;
  json_object_foreach(filters, key, v) {
    bool ok = false;
    for (size_t k = 0; k < n_known; k++)
      ok = ok || !strcmp(key, known[k]);
    if (!ok) {
      vd_call_error(c, 400, "invalid filter '%s'", key);
      json_decref(filters);
      return -1;
    }
  }
  *out = filters;
  return 0;
}
