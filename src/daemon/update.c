/* docker update: a container's memory, CPU and pids limits and its restart policy, changed in
 * its record (and its OCI config.json, for the next starts) and, when it runs, in its cgroup
 * through src/ctr's ctr_update. As dockerd does, a zero (or absent) value means "unchanged":
 * the CLI sends every field of UpdateConfig, most of them 0. */
#include "daemon/internal.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#define MIN_MEMORY (6LL << 20)

/* Fields of UpdateConfig that vesseld does not apply: refused when set, never ignored. */
static const char *const unsupported_ints[] = {
    "BlkioWeight",     "CpuRealtimePeriod", "CpuRealtimeRuntime", "KernelMemory",
    "KernelMemoryTCP", "MemoryReservation", "CpuCount",           "CpuPercent"};
static const char *const unsupported_strings[] = {"CpusetCpus", "CpusetMems"};

/* The update's integer field, 0 when absent; -1 with *err when it is not an integer. */
static int update_int(json_t *body, const char *field, int64_t *out, vs_error **err) {
  *out = 0;
  return vs_json_get_int(body, field, false, out, err);
}

/* Check the update against the container's HostConfig and apply it to hc (a copy). */
static int merge_update(json_t *hc, json_t *body, vs_error **err) {
  for (size_t i = 0; i < ARRAY_SIZE(unsupported_ints); i++) {
    int64_t v;
    if (update_int(body, unsupported_ints[i], &v, err) < 0)
      return -1;
    if (v)
      return vs_error_set(err, EINVAL, "%s: not supported by vesseld's update yet",
                          unsupported_ints[i]);
  }
  for (size_t i = 0; i < ARRAY_SIZE(unsupported_strings); i++) {
    const char *s = json_string_value(json_object_get(body, unsupported_strings[i]));
    if (s && *s)
      return vs_error_set(err, EINVAL, "%s: not supported by vesseld's update yet",
                          unsupported_strings[i]);
  }
  int64_t mem, swap, nano, shares, quota, period;
  if (update_int(body, "Memory", &mem, err) < 0 || update_int(body, "MemorySwap", &swap, err) < 0 ||
      update_int(body, "NanoCpus", &nano, err) < 0 ||
      update_int(body, "CpuShares", &shares, err) < 0 ||
      update_int(body, "CpuQuota", &quota, err) < 0 ||
      update_int(body, "CpuPeriod", &period, err) < 0)
    return -1;
  if (mem && mem < MIN_MEMORY)
    return vs_error_set(err, EINVAL, "Minimum memory limit allowed is 6MB");
  json_int_t cur_swap = json_integer_value(json_object_get(hc, "MemorySwap"));
  if (mem > 0 && !swap && cur_swap > 0 && mem > cur_swap)
    return vs_error_set(err, EINVAL,
                        "Memory limit should be smaller than already set memoryswap limit, "
                        "update the memoryswap at the same time");
  json_int_t new_mem = mem ? mem : json_integer_value(json_object_get(hc, "Memory"));
  if (swap > 0 && (new_mem <= 0 || swap < new_mem))
    return vs_error_set(err, EINVAL,
                        "Minimum memoryswap limit should be larger than memory limit, see usage");
  long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
  if (nano && (nano < 10000000 || nano > (int64_t)ncpu * 1000000000))
    return vs_error_set(err, EINVAL,
                        "Range of CPUs is from 0.01 to %ld.00, as there are only %ld CPUs "
                        "available",
                        ncpu, ncpu);
  if (nano && (quota || period || json_integer_value(json_object_get(hc, "CpuQuota")) ||
               json_integer_value(json_object_get(hc, "CpuPeriod"))))
    return vs_error_set(err, EINVAL,
                        "Conflicting options: CPU Quota or Period cannot be updated together "
                        "with NanoCPUs");
  if ((quota || period) && json_integer_value(json_object_get(hc, "NanoCpus")))
    return vs_error_set(err, EINVAL,
                        "Conflicting options: CPU Quota and Period cannot be updated as NanoCPUs "
                        "has already been set");
  if (shares < 0 || quota < -1 || period < 0 || mem < 0 || swap < -1)
    return vs_error_set(err, EINVAL, "negative values are not allowed for these limits");
  static const char *const names[] = {"Memory",    "MemorySwap", "NanoCpus",
                                      "CpuShares", "CpuQuota",   "CpuPeriod"};
  int64_t vals[] = {mem, swap, nano, shares, quota, period};
  for (size_t i = 0; i < ARRAY_SIZE(names); i++)
    if (vals[i])
      json_object_set_new(hc, names[i], json_integer(vals[i]));
  json_t *pids = json_object_get(body, "PidsLimit");
  if (pids && !json_is_null(pids)) {
    if (!json_is_integer(pids))
      return vs_error_set(err, EINVAL, "field \"PidsLimit\": expected integer, found %s",
                          vs_json_type_name(pids));
    /* 0 and -1 mean unlimited (API 1.40 and later) */
    json_int_t p = json_integer_value(pids);
    json_object_set_new(hc, "PidsLimit", json_integer(p > 0 ? p : 0));
  }
  const char *name;
  int64_t max;
  int restarts = vd_restart_policy_check(json_object_get(body, "RestartPolicy"), &name, &max, err);
  if (restarts < 0)
    return -1;
  if (name && *name) { /* an empty name leaves the policy as it is */
    if (restarts && json_is_true(json_object_get(hc, "AutoRemove")))
      return vs_error_set(err, EINVAL,
                          "Restart policy cannot be updated because AutoRemove is enabled for "
                          "the container");
    json_object_set_new(hc, "RestartPolicy",
                        json_pack("{s:s, s:I}", "Name", name, "MaximumRetryCount", max));
  }
  return 0;
}

/* The resources for a running container's cgroup: vd_spec_resources, plus what it leaves out
 * because at create it is the default (no pids limit). */
static json_t *cgroup_resources(json_t *hc, json_t *body) {
  json_t *r = vd_spec_resources(hc);
  json_t *pids = json_object_get(body, "PidsLimit");
  if (json_is_integer(pids) && json_integer_value(pids) <= 0)
    json_object_set_new(r, "pids", json_pack("{s:i}", "limit", -1));
  return r;
}

/* The new resources in config.json too, for the container's next starts. */
static int save_spec_resources(vd_container *ctr, json_t *hc, vs_error **err) {
  _cleanup_free_ char *path = vs_asprintf("%s/config.json", ctr->dir);
  _cleanup_json_ json_t *spec = vs_json_load_file(path, 16U << 20, err);
  json_t *lx = spec ? json_object_get(spec, "linux") : NULL;
  if (!json_is_object(lx))
    return spec ? vs_error_set(err, EINVAL, "%s has no linux object", path) : -1;
  json_object_set_new(lx, "resources", vd_spec_resources(hc));
  return vs_json_write_file(path, spec, 0600, err);
}

void vd_h_container_update(vd_call *c) {
  vd_daemon *d = c->d;
  _cleanup_json_ json_t *body = vd_call_body_object(c);
  if (!body)
    return;
  vd_container *ctr = vd_call_container(c);
  if (!ctr)
    return;
  c->ctr = ctr;
  pthread_mutex_lock(&d->lock);
  json_t *cur = json_object_get(ctr->rec, "HostConfig");
  _cleanup_json_ json_t *hc = json_is_object(cur) ? json_deep_copy(cur) : json_object();
  bool running = ctr->state == VD_CTR_RUNNING, busy = ctr->removing || ctr->starting;
  pthread_mutex_unlock(&d->lock);
  if (busy) {
    vd_call_error(c, 409, "container %s is being started or removed", c->arg);
    return;
  }
  vs_error *e = NULL;
  if (merge_update(hc, body, &e) < 0) {
    vd_call_error(c, 400, "Cannot update container %.12s: %s", ctr->id, e->msg);
    vs_error_free(e);
    return;
  }
  /* more --cpus or --memory than it had must fit its pool, as a new guest's request */
  pthread_mutex_lock(&d->lock);
  int admitted = vd_pool_ctr_update_admit_locked(d, ctr->rec, hc, &e);
  pthread_mutex_unlock(&d->lock);
  if (admitted < 0) {
    vd_call_error(c, e->errnum == EINVAL ? 400 : 409, "Cannot update container %.12s: %s", ctr->id,
                  e->msg);
    vs_error_free(e);
    return;
  }
  if (running) {
    _cleanup_json_ json_t *res = cgroup_resources(hc, body);
    if (ctr_update(&d->rt, ctr->id, res, &e) < 0) {
      vd_call_error(c, e->errnum == EINVAL ? 400 : 500, "Cannot update container %.12s: %s",
                    ctr->id, e->msg);
      vs_error_free(e);
      return;
    }
  }
  pthread_mutex_lock(&d->lock);
  json_object_set(ctr->rec, "HostConfig", hc);
  json_t *copy = json_deep_copy(ctr->rec);
  pthread_mutex_unlock(&d->lock);
  _cleanup_free_ char *path = vs_asprintf("%s/record.json", ctr->dir);
  int r = vs_json_write_file(path, copy, 0600, &e);
  json_decref(copy);
  if (r == 0)
    r = save_spec_resources(ctr, hc, &e);
  if (r < 0) {
    vd_call_error(c, 500, "Cannot update container %.12s: %s", ctr->id, e->msg);
    vs_error_free(e);
    return;
  }
  pthread_mutex_lock(&d->lock);
  json_t *attrs = vd_event_ctr_attrs(ctr);
  pthread_mutex_unlock(&d->lock);
  vd_event_emit(d, "container", "update", ctr->id, attrs);
  vd_call_json(c, 200, json_pack("{s:[]}", "Warnings"));
}
