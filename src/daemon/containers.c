/* Container endpoints: create, list, inspect, start, stop, kill, remove. */
#include "daemon/internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>

/* ---------------------------------------------------------------- lookups */

/* Find and reference the container the path names; answers 404 itself. */
static vd_container *call_container(vd_call *c) {
  vd_daemon *d = c->d;
  pthread_mutex_lock(&d->lock);
  vd_container *ctr = vd_ctr_find(d, c->arg);
  if (ctr)
    vd_ctr_ref(ctr);
  pthread_mutex_unlock(&d->lock);
  if (!ctr)
    vd_call_error(c, 404, "No such container: %s", c->arg);
  return ctr;
}

/* The container the call names, held for the call (c->ctr), if it is running; otherwise the call
 * is answered (404, 409) and NULL returned. */
static vd_container *call_running_container(vd_call *c) {
  vd_container *ctr = call_container(c);
  if (!ctr)
    return NULL;
  c->ctr = ctr;
  pthread_mutex_lock(&c->d->lock);
  bool running = ctr->state == VD_CTR_RUNNING;
  pthread_mutex_unlock(&c->d->lock);
  if (!running) {
    vd_call_error(c, 409, "Container %s is not running", c->arg);
    return NULL;
  }
  return ctr;
}

/* The same for handlers in other files. */
vd_container *vd_call_container(vd_call *c) { return call_container(c); }
vd_container *vd_call_running_container(vd_call *c) { return call_running_container(c); }

/* An event about ctr (its attributes read under the lock), with extra attributes. */
static void ctr_event(vd_daemon *d, vd_container *ctr, const char *action, json_t *extra) {
  pthread_mutex_lock(&d->lock);
  json_t *a = vd_event_ctr_attrs(ctr);
  pthread_mutex_unlock(&d->lock);
  if (extra) {
    json_object_update(a, extra);
    json_decref(extra);
  }
  vd_event_emit(d, "container", action, ctr->id, a);
}

/* ---------------------------------------------------------------- create */

static bool valid_name(const char *n) {
  if (n[0] == '/')
    n++;
  if (!((n[0] >= 'a' && n[0] <= 'z') || (n[0] >= 'A' && n[0] <= 'Z') ||
        (n[0] >= '0' && n[0] <= '9')) ||
      !n[1])
    return false;
  for (const char *p = n + 1; *p; p++)
    if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
          *p == '_' || *p == '.' || *p == '-'))
      return false;
  return strlen(n) <= 253;
}

/* Docker's "adjective_scientist" names, from short lists. */
static char *generated_name(vd_daemon *d, const char *id) {
  static const char *const adj[] = {"brave", "calm",  "eager",  "fond",  "keen",   "lucid",
                                    "merry", "nifty", "quirky", "sharp", "tender", "upbeat",
                                    "vivid", "witty", "zen",    "bold"};
  static const char *const who[] = {
      "curie",   "darwin", "euler",   "fermi",    "gauss",  "hopper",  "kepler", "lovelace",
      "noether", "pascal", "ritchie", "thompson", "turing", "wozniak", "yonath", "lamarr"};
  for (unsigned i = 0; i < 32; i++) {
    unsigned a = (unsigned)strtoul((char[]){id[i % 60], id[i % 60 + 1], 0}, NULL, 16);
    char *n = vs_asprintf("/%s_%s", adj[a % ARRAY_SIZE(adj)], who[(a / 16 + i) % ARRAY_SIZE(who)]);
    if (!vd_ctr_find_name(d, n))
      return n;
    free(n);
  }
  return vs_asprintf("/%.12s", id);
}

/* Docker's StrSlice: a string or an array of strings; NULL (with *absent) when null/absent. */
static int str_slice(json_t *obj, const char *field, json_t **out, vs_error **err) {
  json_t *v = json_object_get(obj, field);
  *out = NULL;
  if (!v || json_is_null(v))
    return 0;
  if (json_is_string(v)) {
    *out = json_pack("[O]", v);
    return 0;
  }
  const char **strs = NULL;
  if (vs_json_get_string_array(obj, field, false, &strs, NULL, err) < 0) {
    (*err)->errnum = EINVAL; /* the client's mistake */
    return -1;
  }
  free(strs);
  *out = json_incref(v);
  return 0;
}

/* Environment: the image's, overridden key by key by the request's. */
static json_t *merge_env(json_t *image_env, json_t *user_env) {
  json_t *out = json_array();
  json_array_extend(out, image_env);
  size_t i, j;
  json_t *v, *w;
  json_array_foreach(user_env, i, v) {
    const char *kv = json_string_value(v);
    size_t klen = strcspn(kv, "=");
    bool replaced = false;
    json_array_foreach(out, j, w) {
      const char *old = json_string_value(w);
      if (!strncmp(old, kv, klen) && (old[klen] == '=' || old[klen] == 0)) {
        json_array_set(out, j, v);
        replaced = true;
        break;
      }
    }
    if (!replaced)
      json_array_append(out, v);
  }
  return out;
}

/* The request's health check over the image's, field by field (an empty test or a zero
 * duration takes the image's), as dockerd merges them. */
static json_t *merged_healthcheck(json_t *image, json_t *user) {
  if (!json_is_object(user))
    return json_is_object(image) ? json_deep_copy(image) : json_null();
  json_t *out = json_deep_copy(user);
  if (!json_array_size(json_object_get(out, "Test")) && json_object_get(image, "Test"))
    json_object_set(out, "Test", json_object_get(image, "Test"));
  static const char *const fields[] = {"Interval", "Timeout", "StartPeriod", "Retries"};
  for (size_t i = 0; i < ARRAY_SIZE(fields); i++)
    if (json_integer_value(json_object_get(out, fields[i])) == 0 &&
        json_object_get(image, fields[i]))
      json_object_set(out, fields[i], json_object_get(image, fields[i]));
  return out;
}

/* Config.Healthcheck: Test ["NONE"], ["CMD", args...] or ["CMD-SHELL", command]; durations in
 * nanoseconds, 0 or at least a millisecond, as dockerd checks them. */
static int check_healthcheck(json_t *hc, vs_error **err) {
  const char **test = NULL;
  size_t n = 0;
  if (vs_json_get_string_array(hc, "Test", false, &test, &n, err) < 0)
    return vs_error_wrap(err, "Healthcheck");
  const char *kind = n ? test[0] : NULL;
  bool ok = !kind || !strcmp(kind, "NONE") || (!strcmp(kind, "CMD") && n >= 2) ||
            (!strcmp(kind, "CMD-SHELL") && n == 2);
  free(test);
  if (!ok)
    return vs_error_set(err, 0,
                        "Healthcheck.Test: expected [\"NONE\"], [\"CMD\", ...] or "
                        "[\"CMD-SHELL\", command], got %s",
                        kind ? kind : "(no words)");
  static const char *const durations[] = {"Interval", "Timeout", "StartPeriod"};
  int64_t v;
  for (size_t i = 0; i < ARRAY_SIZE(durations); i++) {
    if (vs_json_get_int(hc, durations[i], false, &v, err) < 0)
      return vs_error_wrap(err, "Healthcheck");
    if (v != 0 && v < 1000000)
      return vs_error_set(err, 0, "%s in Healthcheck cannot be less than 1ms", durations[i]);
  }
  if (vs_json_get_int(hc, "Retries", false, &v, err) < 0)
    return vs_error_wrap(err, "Healthcheck");
  if (v < 0)
    return vs_error_set(err, 0, "Retries in Healthcheck cannot be negative");
  return 0;
}

/* Check the types of the fields we use: a wrong type is the client's error, named. */
static int check_create_body(json_t *body, vs_error **err) {
  const char *s;
  json_t *o;
  const char **sv = NULL;
  bool b;
  if (vs_json_get_string(body, "Image", true, &s, err) < 0 ||
      vs_json_get_string(body, "WorkingDir", false, &s, err) < 0 ||
      vs_json_get_string(body, "User", false, &s, err) < 0 ||
      vs_json_get_string(body, "Hostname", false, &s, err) < 0 ||
      vs_json_get_string(body, "StopSignal", false, &s, err) < 0 ||
      vs_json_get_bool(body, "Tty", false, &b, err) < 0 ||
      vs_json_get_object(body, "Labels", false, &o, err) < 0 ||
      vs_json_get_object(body, "Volumes", false, &o, err) < 0 ||
      vs_json_get_object(body, "HostConfig", false, &o, err) < 0)
    return -1;
  json_t *ep = NULL, *cmd = NULL;
  int r = str_slice(body, "Entrypoint", &ep, err) < 0 || str_slice(body, "Cmd", &cmd, err) < 0;
  json_decref(ep);
  json_decref(cmd);
  if (r)
    return -1;
  if (vs_json_get_string_array(body, "Env", false, &sv, NULL, err) < 0)
    return -1;
  if (sv)
    free(sv);
  size_t i;
  json_t *v;
  json_array_foreach(json_object_get(body, "Env"), i,
                     v) if (!strchr(json_string_value(v), '=') ||
                            json_string_value(v)[0] ==
                                '=') return vs_error_set(err, EINVAL,
                                                         "invalid environment variable: %s",
                                                         json_string_value(v));
  const char *key;
  json_object_foreach(json_object_get(body, "Labels"), key, v) if (
      !json_is_string(v)) return vs_error_set(err, EINVAL,
                                              "field \"Labels\".%s: expected string, found %s", key,
                                              vs_json_type_name(v));
  json_t *hc = json_object_get(body, "HostConfig");
  if (json_is_object(hc) && (vs_json_get_bool(hc, "AutoRemove", false, &b, err) < 0 ||
                             vs_json_get_string(hc, "NetworkMode", false, &s, err) < 0))
    return vs_error_wrap(err, "HostConfig");
  if (json_is_object(hc)) {
    static const char *const ints[] = {"Memory",   "MemorySwap", "NanoCpus", "CpuShares",
                                       "CpuQuota", "CpuPeriod",  "PidsLimit"};
    int64_t n;
    json_t *a;
    for (size_t k = 0; k < ARRAY_SIZE(ints); k++)
      if (vs_json_get_int(hc, ints[k], false, &n, err) < 0)
        return vs_error_wrap(err, "HostConfig");
    if (vs_json_get_bool(hc, "ReadonlyRootfs", false, &b, err) < 0 ||
        vs_json_get_array(hc, "Binds", false, &a, err) < 0 ||
        vs_json_get_array(hc, "Mounts", false, &a, err) < 0 ||
        vs_json_get_array(hc, "CapAdd", false, &a, err) < 0 ||
        vs_json_get_array(hc, "CapDrop", false, &a, err) < 0 ||
        vs_json_get_object(hc, "Tmpfs", false, &o, err) < 0 ||
        vs_json_get_bool(hc, "Privileged", false, &b, err) < 0 ||
        vs_json_get_int(hc, "ShmSize", false, &n, err) < 0 ||
        vs_json_get_array(hc, "Devices", false, &a, err) < 0 ||
        vs_json_get_array(hc, "DeviceCgroupRules", false, &a, err) < 0 ||
        vs_json_get_array(hc, "Ulimits", false, &a, err) < 0 ||
        vs_json_get_object(hc, "Sysctls", false, &o, err) < 0)
      return vs_error_wrap(err, "HostConfig");
    static const char *const lists[] = {"SecurityOpt", "Dns",        "DnsSearch",
                                        "DnsOptions",  "ExtraHosts", "GroupAdd"};
    for (size_t k = 0; k < ARRAY_SIZE(lists); k++) {
      sv = NULL;
      if (vs_json_get_string_array(hc, lists[k], false, &sv, NULL, err) < 0) {
        (*err)->errnum = EINVAL;
        return vs_error_wrap(err, "HostConfig");
      }
      free(sv);
      sv = NULL;
    }
    const char *policy;
    int64_t max;
    int restarts =
        vd_restart_policy_check(json_object_get(hc, "RestartPolicy"), &policy, &max, err);
    if (restarts < 0)
      return vs_error_wrap(err, "HostConfig");
    if (restarts && json_is_true(json_object_get(hc, "AutoRemove")))
      return vs_error_set(err, EINVAL, "can't create 'AutoRemove' container with restart policy");
  }
  json_t *health = NULL;
  if (vs_json_get_bool(body, "OpenStdin", false, &b, err) < 0 ||
      vs_json_get_bool(body, "StdinOnce", false, &b, err) < 0 ||
      vs_json_get_object(body, "Healthcheck", false, &health, err) < 0)
    return -1;
  if (health && check_healthcheck(health, err) < 0)
    return -1;
  vd_log_opts log_opts;
  if (vd_log_options(hc, &log_opts, err) < 0)
    return -1;
  return 0; /* the networks are checked by vd_net_create_prepare */
}

/* The container's Config as Docker stores it: the request merged with the image's config. */
static json_t *merged_config(json_t *body, const vs_image *img, const char *id, vs_error **err) {
  json_t *icfg = json_object_get(img->config.root, "config");
  json_t *ep = NULL, *cmd = NULL;
  if (str_slice(body, "Entrypoint", &ep, err) < 0 || str_slice(body, "Cmd", &cmd, err) < 0) {
    json_decref(ep);
    return NULL;
  }
  /* --entrypoint "" resets the image's entrypoint */
  if (ep && json_array_size(ep) == 1 && !strcmp(json_string_value(json_array_get(ep, 0)), "")) {
    json_decref(ep);
    ep = json_array();
  }
  if (json_array_size(ep) == 0) {
    if (json_array_size(cmd) == 0) {
      json_decref(cmd);
      cmd = json_incref(json_object_get(icfg, "Cmd"));
    }
    if (!ep)
      ep = json_incref(json_object_get(icfg, "Entrypoint"));
  }
  json_t *cfg = json_deep_copy(body);
  json_object_del(cfg, "HostConfig");
  json_object_del(cfg, "NetworkingConfig");
  json_object_set_new(cfg, "Entrypoint", ep ? ep : json_null());
  json_object_set_new(cfg, "Cmd", cmd ? cmd : json_null());
  json_object_set_new(cfg, "Env",
                      merge_env(json_object_get(icfg, "Env"), json_object_get(body, "Env")));
  static const char *const inherit[] = {"WorkingDir", "User", "StopSignal"};
  for (size_t i = 0; i < ARRAY_SIZE(inherit); i++) {
    const char *v = json_string_value(json_object_get(body, inherit[i]));
    if (!v || !*v) {
      const char *iv = json_string_value(json_object_get(icfg, inherit[i]));
      json_object_set_new(cfg, inherit[i], json_string(iv ? iv : ""));
    }
  }
  json_t *labels = json_object();
  json_object_update(labels, json_object_get(icfg, "Labels"));
  json_object_update(labels, json_object_get(body, "Labels"));
  json_object_set_new(cfg, "Labels", labels);
  json_object_set_new(cfg, "Healthcheck",
                      merged_healthcheck(json_object_get(icfg, "Healthcheck"),
                                         json_object_get(body, "Healthcheck")));
  if (json_is_null(json_object_get(cfg, "Healthcheck")))
    json_object_del(cfg, "Healthcheck");
  /* the image's VOLUMEs and the client's `-v /path`: each an anonymous volume */
  json_t *volumes = json_object();
  json_object_update(volumes, json_object_get(icfg, "Volumes"));
  json_object_update(volumes, json_object_get(body, "Volumes"));
  json_object_set_new(cfg, "Volumes", json_object_size(volumes) ? volumes : json_null());
  if (!json_object_size(volumes))
    json_decref(volumes);
  const char *host = json_string_value(json_object_get(body, "Hostname"));
  if (!host || !*host)
    json_object_set_new(cfg, "Hostname", json_sprintf("%.12s", id));
  return cfg;
}

static int write_text(const char *dir, const char *name, const char *text, vs_error **err) {
  _cleanup_free_ char *p = vs_asprintf("%s/%s", dir, name);
  return vs_write_file(p, text, strlen(text), 0644, err);
}

/* Everything written into the new directory goes to disk at once (one journal commit rather
 * than an fsync, a rename and a directory fsync per file): the files before record.json are
 * trusted only once it exists, so they need to be durable before it, not each atomic. The
 * record itself is written under a temporary name before that same sync, so that the one flush
 * covers its content too, and renamed after it. The rename is not flushed itself: a kill -9
 * does not lose it (the page cache survives), and a power loss may lose it only with the whole
 * create, never half of it (the next start finds no record.json and removes the directory).
 * dockerd gives no more (its config.v2.json is fsynced, then renamed, its directory never
 * fsynced), and the directory fsync was a third of the create's time. */
static int commit_container_dir(const char *dir, json_t *rec, vs_error **err) {
  _cleanup_free_ char *text = json_dumps(rec, JSON_INDENT(2) | JSON_SORT_KEYS);
  if (!text)
    return vs_error_set(err, EINVAL, "serialise the container record");
  _cleanup_free_ char *tmp = vs_asprintf("%s/record.json.tmp", dir);
  _cleanup_free_ char *path = vs_asprintf("%s/record.json", dir);
  if (vs_write_file(tmp, text, strlen(text), 0600, err) < 0)
    return -1;
  _cleanup_close_ int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0 || syncfs(fd) < 0 || rename(tmp, path) < 0)
    return vs_error_set(err, errno, "commit %s", path);
  return 0;
}

/* Directory, files, overlay root and OCI config; record.json last, as the commit point. */
static int make_container_dir(vd_daemon *d, const vs_image *img, json_t *rec, const char *dir,
                              vs_error **err) {
  json_t *cfg = json_object_get(rec, "Config");
  const char *host = json_string_value(json_object_get(cfg, "Hostname"));
  json_t *hc = json_object_get(rec, "HostConfig");
  ctr_docker_dns dns = {json_object_get(hc, "Dns"), json_object_get(hc, "DnsSearch"),
                        json_object_get(hc, "DnsOptions"), json_object_get(hc, "ExtraHosts")};
  _cleanup_free_ char *rootfs = vs_asprintf("%s/rootfs", dir);
  _cleanup_free_ char *log =
      vs_asprintf("%s/%s-json.log", dir, json_string_value(json_object_get(rec, "Id")));
  if (vs_mkdir_p(dir, 0700, err) < 0 || write_text(dir, "image", img->manifest_digest, err) < 0 ||
      ctr_docker_write_etc_files_dns(dir, host, &dns, err) < 0 ||
      vs_write_file(log, "", 0, 0600, err) < 0)
    return -1;
  pthread_mutex_lock(&d->store_lock);
  int r = vs_store_lock(d->store, false, err);
  if (r == 0) {
    r = vs_rootfs_mount(d->store, img, dir, rootfs, err);
    vs_store_unlock(d->store);
  }
  pthread_mutex_unlock(&d->store_lock);
  if (r < 0)
    return vs_error_wrap(err, "mount the root file system");
  json_t *points = json_array();
  _cleanup_json_ json_t *spec = vd_spec_build(d, img, cfg, json_object_get(rec, "HostConfig"), dir,
                                              rootfs, host, points, err);
  pthread_mutex_lock(&d->lock);
  json_object_set_new(rec, "MountPoints", points);
  pthread_mutex_unlock(&d->lock);
  if (!spec || vd_pool_ctr_spec(d, rec, spec, err) < 0)
    return -1;
  _cleanup_free_ char *spec_path = vs_asprintf("%s/config.json", dir);
  _cleanup_free_ char *spec_text = json_dumps(spec, JSON_COMPACT);
  if (!spec_text)
    return vs_error_set(err, EINVAL, "serialise the OCI configuration");
  if (vs_write_file(spec_path, spec_text, strlen(spec_text), 0600, err) < 0 ||
      commit_container_dir(dir, rec, err) < 0)
    return -1;
  return 0;
}

static void remove_partial(vd_daemon *d, vd_container *ctr) {
  _cleanup_free_ char *rootfs = vs_asprintf("%s/rootfs", ctr->dir);
  umount2(rootfs, MNT_DETACH);
  vs_rm_rf(ctr->dir, NULL);
  vd_volumes_release(d, json_object_get(ctr->rec, "MountPoints"), ctr->id);
}

static json_t *new_record(vd_call *c, json_t *body, const vs_image *img, const char *id,
                          const char *name, vs_error **err) {
  json_t *cfg = merged_config(body, img, id, err);
  if (!cfg)
    return NULL;
  json_t *args = json_array();
  json_array_extend(args, json_object_get(cfg, "Entrypoint"));
  json_array_extend(args, json_object_get(cfg, "Cmd"));
  if (json_array_size(args) == 0) {
    json_decref(args);
    json_decref(cfg);
    vs_error_set(err, EINVAL, "No command specified");
    return NULL;
  }
  json_t *path = json_incref(json_array_get(args, 0));
  json_array_remove(args, 0);
  json_t *hc = json_object_get(body, "HostConfig");
  hc = hc ? json_deep_copy(hc) : json_object();
  const char *net = json_string_value(json_object_get(hc, "NetworkMode"));
  if (!net || !*net)
    json_object_set_new(hc, "NetworkMode", json_string("default"));
  /* what dockerd fills in and clients read back (docker-py reads LogConfig.Type) */
  json_t *lc = json_object_get(hc, "LogConfig");
  if (!json_is_object(lc))
    json_object_set_new(hc, "LogConfig", json_pack("{s:s, s:{}}", "Type", "json-file", "Config"));
  else if (!json_string_length(json_object_get(lc, "Type"))) /* --log-opt without --log-driver */
    json_object_set_new(lc, "Type", json_string("json-file"));
  if (!json_is_object(json_object_get(json_object_get(hc, "LogConfig"), "Config")))
    json_object_set_new(json_object_get(hc, "LogConfig"), "Config", json_object());
  if (!json_is_object(json_object_get(hc, "RestartPolicy")))
    json_object_set_new(hc, "RestartPolicy",
                        json_pack("{s:s, s:i}", "Name", "no", "MaximumRetryCount", 0));
  if (!json_is_boolean(json_object_get(hc, "AutoRemove")))
    json_object_set_new(hc, "AutoRemove", json_false());
  _cleanup_free_ char *created = vd_now();
  (void)c;
  return json_pack("{s:s, s:s, s:s, s:s, s:s, s:o, s:o, s:o, s:o}", "Id", id, "Name", name,
                   "Created", created, "Image", img->manifest.config.digest, "ImageManifest",
                   img->manifest_digest, "Config", cfg, "HostConfig", hc, "Path", path, "Args",
                   args);
}

/* Reserve the name in the table (under d->lock) by adding the container, once its pool admits
 * it: under the same lock, so that two creates cannot both take the pool's last room. */
static bool add_if_name_free(vd_call *c, vd_container *ctr) {
  vd_daemon *d = c->d;
  vs_error *e = NULL;
  pthread_mutex_lock(&d->lock);
  vd_container *other = vd_ctr_find_name(d, ctr->name);
  char other_id[sizeof(ctr->id)] = "";
  if (other)
    snprintf(other_id, sizeof(other_id), "%s", other->id);
  bool admitted = !other && vd_pool_ctr_admit_locked(d, ctr->rec, &e) == 0;
  if (admitted)
    vd_ctr_add(d, ctr);
  pthread_mutex_unlock(&d->lock);
  if (other)
    vd_call_error(c, 409,
                  "Conflict. The container name \"%s\" is already in use by container \"%s\". "
                  "You have to remove (or rename) that container to be able to reuse that name.",
                  ctr->name, other_id);
  else if (!admitted)
    vd_call_fail(c, e);
  vs_error_free(e);
  return admitted;
}

void vd_h_container_create(vd_call *c) {
  vd_daemon *d = c->d;
  _cleanup_json_ json_t *body = vd_call_body_object(c);
  if (!body)
    return;
  vs_error *e = NULL;
  _cleanup_free_ char *qname = http_query_get(c->req->query, "name");
  if (qname && *qname && !valid_name(qname)) {
    vd_call_error(c, 400, "Invalid container name (%s), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed",
                  qname);
    return;
  }
  if (check_create_body(body, &e) < 0) {
    vd_call_error(c, 400, "%s", e->msg);
    vs_error_free(e);
    return;
  }
  const char *image = json_string_value(json_object_get(body, "Image"));
  vs_image img;
  pthread_mutex_lock(&d->store_lock);
  int r = vs_store_resolve(d->store, image, &img, &e);
  pthread_mutex_unlock(&d->store_lock);
  if (r < 0) {
    vd_call_error(c, 404, "No such image: %s", image);
    vs_error_free(e);
    return;
  }
  if (img.manifest.config.media_type && !strcmp(img.manifest.config.media_type, VS_MT_VM_CONFIG)) {
    vd_call_error(c, 400,
                  "%s is a VM image (a machine's kernel and disk), not a container image: boot "
                  "it with vessel vm create --image",
                  image);
    vs_image_clear(&img);
    return;
  }
  _cleanup_free_ char *id = vd_random_id();
  pthread_mutex_lock(&d->lock);
  _cleanup_free_ char *name = qname && *qname
                                  ? vs_asprintf("/%s", qname[0] == '/' ? qname + 1 : qname)
                                  : generated_name(d, id);
  pthread_mutex_unlock(&d->lock);
  json_t *rec = new_record(c, body, &img, id, name, &e);
  if (rec && vd_net_create_prepare(d, body, rec, &img, &e) < 0) {
    json_decref(rec);
    rec = NULL;
  }
  if (!rec) {
    vd_call_fail(c, e);
    vs_error_free(e);
    vs_image_clear(&img);
    return;
  }
  vd_container *ctr = vd_ctr_new(d, id, rec);
  if (!add_if_name_free(c, ctr)) {
    vd_ctr_unref(d, ctr);
    vs_image_clear(&img);
    return;
  }
  r = make_container_dir(d, &img, rec, ctr->dir, &e);
  vs_image_clear(&img);
  if (r < 0) {
    remove_partial(d, ctr);
    pthread_mutex_lock(&d->lock);
    vd_ctr_remove(d, ctr);
    pthread_mutex_unlock(&d->lock);
    vd_ctr_unref(d, ctr);
    vd_call_fail(c, e);
    vs_error_free(e);
    return;
  }
  /* the watch could only be added once the directory existed */
  pthread_mutex_lock(&d->lock);
  vd_ctr_remove(d, ctr);
  vd_ctr_add(d, ctr);
  pthread_mutex_unlock(&d->lock);
  vs_log_info("container %.12s created (%s)", id, name);
  ctr_event(d, ctr, "create", NULL);
  vd_call_json(c, 201, json_pack("{s:s, s:[]}", "Id", id, "Warnings"));
}

/* ---------------------------------------------------------------- list, inspect */

static long long unix_time(const char *t) {
  struct tm tm = {0};
  if (!t || !strptime(t, "%Y-%m-%dT%H:%M:%S", &tm))
    return 0;
  return (long long)timegm(&tm);
}

/* "3 seconds", "About a minute", "2 hours": Go's units.HumanDuration. */
static char *human_duration(long long secs) {
  if (secs < 1)
    return vs_strdup("Less than a second");
  if (secs == 1)
    return vs_strdup("1 second");
  if (secs < 60)
    return vs_asprintf("%lld seconds", secs);
  long long mins = secs / 60;
  if (mins == 1)
    return vs_strdup("About a minute");
  if (mins < 60)
    return vs_asprintf("%lld minutes", mins);
  long long hours = mins / 60;
  if (hours == 1)
    return vs_strdup("About an hour");
  if (hours < 48)
    return vs_asprintf("%lld hours", hours);
  return vs_asprintf("%lld days", hours / 24);
}

static char *status_text(const vd_container *c) {
  long long now = (long long)time(NULL);
  if (c->state == VD_CTR_RUNNING) {
    _cleanup_free_ char *h = human_duration(now - unix_time(c->started_at));
    /* as dockerd: "(Paused)" or the health, not both */
    const char *health = c->paused ? NULL : vd_health_status(c);
    if (health && !strcmp(health, "starting"))
      health = "health: starting";
    return vs_asprintf("Up %s%s%s%s%s", h, c->paused ? " (Paused)" : "", health ? " (" : "",
                       health ? health : "", health ? ")" : "");
  }
  if (c->restarting) {
    _cleanup_free_ char *h = human_duration(now - unix_time(c->finished_at));
    return vs_asprintf("Restarting (%d) %s ago", c->exit_code, h);
  }
  if (c->state == VD_CTR_EXITED) {
    _cleanup_free_ char *h = human_duration(now - unix_time(c->finished_at));
    return vs_asprintf("Exited (%d) %s ago", c->exit_code, h);
  }
  return vs_strdup("Created");
}

static char *command_text(json_t *rec) {
  char *s = vs_strdup(json_string_value(json_object_get(rec, "Path")));
  size_t i;
  json_t *v;
  json_array_foreach(json_object_get(rec, "Args"), i, v) {
    char *n = vs_asprintf("%s %s", s, json_string_value(v));
    free(s);
    s = n;
  }
  return s;
}

/* Inspect's Mounts: the record's mount points without what only vesseld reads. */
static json_t *inspect_mounts(const vd_container *c) {
  json_t *out = json_array();
  size_t i;
  json_t *p;
  json_array_foreach(json_object_get(c->rec, "MountPoints"), i, p) {
    json_t *m = json_copy(p);
    json_object_del(m, "Anonymous");
    json_object_del(m, "CopyData");
    json_array_append_new(out, m);
  }
  return out;
}

json_t *vd_ctr_summary(const vd_container *c) {
  json_t *cfg = json_object_get(c->rec, "Config");
  json_t *hc = json_object_get(c->rec, "HostConfig");
  _cleanup_free_ char *status = status_text(c);
  _cleanup_free_ char *cmd = command_text(c->rec);
  /* HostConfig: dockerd's NetworkMode, and the limits, so that a list of guests can show them
   * without an inspect each */
  return json_pack("{s:s, s:[s], s:O, s:O, s:s, s:I, s:o, s:O, s:s, s:s, s:{s:O, s:I, s:I}, "
                   "s:{s:o}, s:o}",
                   "Id", c->id, "Names", c->name, "Image", json_object_get(cfg, "Image"), "ImageID",
                   json_object_get(c->rec, "Image"), "Command", cmd, "Created",
                   (json_int_t)unix_time(json_string_value(json_object_get(c->rec, "Created"))),
                   "Ports", vd_net_summary_ports(c), "Labels", json_object_get(cfg, "Labels"),
                   "State", vd_ctr_state_name(c), "Status", status, "HostConfig", "NetworkMode",
                   json_object_get(hc, "NetworkMode"), "NanoCpus",
                   json_integer_value(json_object_get(hc, "NanoCpus")), "Memory",
                   json_integer_value(json_object_get(hc, "Memory")), "NetworkSettings", "Networks",
                   vd_net_summary_networks(c), "Mounts", inspect_mounts(c));
}

/* Any of the values matches (filters of one key are alternatives, keys all apply). */
static bool filter_match(json_t *filters, const char *key, const vd_container *c) {
  _cleanup_json_ json_t *vals = vd_filter_values(filters, key);
  if (json_array_size(vals) == 0)
    return true;
  json_t *cfg = json_object_get(c->rec, "Config");
  size_t i;
  json_t *v;
  json_array_foreach(vals, i, v) {
    const char *want = json_string_value(v);
    if (!want)
      continue;
    if (!strcmp(key, "status") && !strcmp(want, vd_ctr_state_name(c)))
      return true;
    if (!strcmp(key, "id") && !strncmp(c->id, want, strlen(want)))
      return true;
    if (!strcmp(key, "name") && c->name && strstr(c->name + 1, want[0] == '/' ? want + 1 : want))
      return true;
    if (!strcmp(key, "ancestor")) {
      const char *img = json_string_value(json_object_get(cfg, "Image"));
      const char *iid = json_string_value(json_object_get(c->rec, "Image"));
      if ((img && !strcmp(img, want)) || (iid && strstr(iid, want)))
        return true;
    }
    if (!strcmp(key, "label") && vd_label_match(json_object_get(cfg, "Labels"), want))
      return true;
    if (!strcmp(key, "exited") && c->state == VD_CTR_EXITED &&
        strtol(want, NULL, 10) == c->exit_code)
      return true;
    if (!strcmp(key, "health")) {
      const char *h = vd_health_status(c);
      if (!strcmp(want, h ? h : "none"))
        return true;
    }
  }
  return false;
}

void vd_h_containers_list(vd_call *c) {
  vd_daemon *d = c->d;
  bool all = http_query_bool(c->req->query, "all", false);
  static const char *const known[] = {"status", "id",     "name",  "ancestor",
                                      "label",  "exited", "health"};
  _cleanup_json_ json_t *filters = NULL;
  if (vd_call_filters(c, known, ARRAY_SIZE(known), &filters) < 0)
    return;
  _cleanup_free_ char *limit_q = http_query_get(c->req->query, "limit");
  long limit = limit_q ? strtol(limit_q, NULL, 10) : -1;
  /* a status filter or a limit looks at stopped containers too, as dockerd does */
  if (json_object_get(filters, "status") || json_object_get(filters, "exited") || limit > 0)
    all = true;
  json_t *out = json_array();
  pthread_mutex_lock(&d->lock);
  /* newest first, as docker ps */
  for (size_t i = d->n_ctrs; i-- > 0;) {
    vd_container *ctr = d->ctrs[i];
    if (!all && ctr->state != VD_CTR_RUNNING)
      continue;
    bool match = true;
    for (size_t k = 0; k < ARRAY_SIZE(known) && match; k++)
      match = filter_match(filters, known[k], ctr);
    if (!match)
      continue;
    if (limit > 0 && (long)json_array_size(out) >= limit)
      break;
    json_array_append_new(out, vd_ctr_summary(ctr));
  }
  pthread_mutex_unlock(&d->lock);
  vd_call_json(c, 200, out);
}

#define ZERO_TIME "0001-01-01T00:00:00Z"

static json_t *container_inspect(vd_daemon *d, const vd_container *c) {
  _cleanup_free_ char *log = vd_ctr_log_path(c);
  _cleanup_free_ char *resolv = vs_asprintf("%s/resolv.conf", c->dir);
  _cleanup_free_ char *hostname = vs_asprintf("%s/hostname", c->dir);
  _cleanup_free_ char *hosts = vs_asprintf("%s/hosts", c->dir);
  _cleanup_free_ char *upper = vs_asprintf("%s/upper", c->dir);
  _cleanup_free_ char *merged = vs_asprintf("%s/rootfs", c->dir);
  _cleanup_free_ char *work = vs_asprintf("%s/work", c->dir);
  bool running = c->state == VD_CTR_RUNNING;
  json_t *state =
      json_pack("{s:s, s:b, s:b, s:b, s:b, s:b, s:b, s:i, s:i, s:s, s:s, s:s}", "Status",
                vd_ctr_state_name(c), "Running", running, "Paused", running && c->paused,
                "Restarting", c->restarting, "OOMKilled", 0, "Dead", 0, "RemovalInProgress",
                c->removing, "Pid", running ? (int)c->pid : 0, "ExitCode", c->exit_code, "Error",
                c->error ? c->error : "", "StartedAt", c->started_at ? c->started_at : ZERO_TIME,
                "FinishedAt", c->finished_at ? c->finished_at : ZERO_TIME);
  (void)d;
  if (vd_health_status(c))
    json_object_set_new(state, "Health", json_deep_copy(c->health));
  return json_pack(
      "{s:s, s:O, s:O, s:O, s:o, s:O, s:s, s:s, s:s, s:s, s:s, s:i, s:s, s:s, s:s, s:s, s:s, "
      "s:n, s:O, s:{s:s, s:{s:s, s:s, s:s}}, s:o, s:O, s:o}",
      "Id", c->id, "Created", json_object_get(c->rec, "Created"), "Path",
      json_object_get(c->rec, "Path"), "Args", json_object_get(c->rec, "Args"), "State", state,
      "Image", json_object_get(c->rec, "Image"), "ResolvConfPath", resolv, "HostnamePath", hostname,
      "HostsPath", hosts, "LogPath", log, "Name", c->name, "RestartCount", c->restart_count,
      "Driver", "overlay", "Platform", "linux", "MountLabel", "", "ProcessLabel", "",
      "AppArmorProfile", "", "ExecIDs", "HostConfig", json_object_get(c->rec, "HostConfig"),
      "GraphDriver", "Name", "overlay", "Data", "UpperDir", upper, "MergedDir", merged, "WorkDir",
      work, "Mounts", inspect_mounts(c), "Config", json_object_get(c->rec, "Config"),
      "NetworkSettings", vd_net_settings(c));
}

void vd_h_container_inspect(vd_call *c) {
  vd_daemon *d = c->d;
  pthread_mutex_lock(&d->lock);
  vd_container *ctr = vd_ctr_find(d, c->arg);
  if (ctr)
    vd_call_json(c, 200, container_inspect(d, ctr));
  pthread_mutex_unlock(&d->lock);
  if (!ctr)
    vd_call_error(c, 404, "No such container: %s", c->arg);
}

/* ---------------------------------------------------------------- start, stop, kill */

/* Start ctr for call c (whose c->ctr it is): answers 204, 304 or an error. */
static void start_container(vd_call *c, vd_container *ctr) {
  vd_daemon *d = c->d;
  pthread_mutex_lock(&d->lock);
  bool running = ctr->state == VD_CTR_RUNNING, busy = ctr->starting || ctr->removing;
  if (!running && !busy)
    ctr->starting = true;
  pthread_mutex_unlock(&d->lock);
  if (running) {
    vd_call_status(c, 304);
    return;
  }
  if (busy) {
    vd_call_error(c, 409, "container %s is being started or removed", c->arg);
    return;
  }
  vs_error *e = NULL;
  if (!vd_cctr_start_allowed(d, ctr, &e)) {
    pthread_mutex_lock(&d->lock);
    ctr->starting = false;
    pthread_mutex_unlock(&d->lock);
    vd_call_error(c, 409, "%s", e->msg);
    vs_error_free(e);
    return;
  }
  vd_restart_note_manual(d, ctr, false);
  int r = vd_supervise_start(d, ctr, &e);
  pthread_mutex_lock(&d->lock);
  ctr->starting = false;
  pthread_mutex_unlock(&d->lock);
  if (r < 0) {
    /* clients match Go's lowercase error texts: the CLI exits 127 for "no such file or
     * directory", 126 for "permission denied", as with dockerd */
    static const char *const go_texts[][2] = {
        {"No such file or directory", "no such file or directory"},
        {"Permission denied", "permission denied"}};
    for (size_t k = 0; k < ARRAY_SIZE(go_texts); k++) {
      char *p = strstr(e->msg, go_texts[k][0]);
      if (p)
        memcpy(p, go_texts[k][1], strlen(go_texts[k][1]));
    }
    vd_call_error(c, 500, "failed to start container %.12s: %s", ctr->id, e->msg);
    /* dockerd's codes for a command that could not be run: the shell's */
    int code = strstr(e->msg, "no such file") || strstr(e->msg, "not found") ? 127
               : strstr(e->msg, "permission denied")                         ? 126
                                                                             : 128;
    pthread_mutex_lock(&d->lock);
    ctr->exit_code = code;
    free(ctr->error);
    ctr->error = vs_strdup(e->msg);
    pthread_mutex_unlock(&d->lock);
    vs_error_free(e);
    c->after = VD_AFTER_START_FAILED;
    return;
  }
  vs_log_info("container %.12s started", ctr->id);
  ctr_event(d, ctr, "start", NULL);
  c->after = VD_AFTER_WATCH;
  vd_call_status(c, 204);
}

void vd_h_container_start(vd_call *c) {
  vd_container *ctr = call_container(c);
  if (!ctr)
    return;
  c->ctr = ctr;
  start_container(c, ctr);
}

static const struct {
  const char *name;
  int sig;
} signals[] = {{"HUP", SIGHUP},   {"INT", SIGINT},   {"QUIT", SIGQUIT},  {"KILL", SIGKILL},
               {"USR1", SIGUSR1}, {"USR2", SIGUSR2}, {"TERM", SIGTERM},  {"STOP", SIGSTOP},
               {"CONT", SIGCONT}, {"ALRM", SIGALRM}, {"WINCH", SIGWINCH}};

/* "SIGTERM", "TERM" or "15"; 0 when unknown. */
static int parse_signal(const char *s) {
  if (!s || !*s)
    return 0;
  char *end;
  long n = strtol(s, &end, 10);
  if (!*end)
    return n > 0 && n < 65 ? (int)n : 0;
  const char *name = !strncasecmp(s, "SIG", 3) ? s + 3 : s;
  for (size_t i = 0; i < ARRAY_SIZE(signals); i++)
    if (!strcasecmp(name, signals[i].name))
      return signals[i].sig;
  return 0;
}

static void refresh_after_exit(vd_daemon *d, vd_container *ctr) {
  pthread_mutex_lock(&d->lock);
  vd_ctr_refresh(d, ctr);
  pthread_mutex_unlock(&d->lock);
}

/* A frozen container cannot act on a signal: thaw it once the signal is pending. */
static void thaw_if_paused(vd_daemon *d, vd_container *ctr) {
  pthread_mutex_lock(&d->lock);
  bool paused = ctr->paused;
  ctr->paused = false;
  pthread_mutex_unlock(&d->lock);
  if (paused)
    ctr_pause(&d->rt, ctr->id, false, NULL);
}

void vd_h_container_kill(vd_call *c) {
  vd_daemon *d = c->d;
  _cleanup_free_ char *sq = http_query_get(c->req->query, "signal");
  int sig = sq && *sq ? parse_signal(sq) : SIGKILL;
  if (!sig) {
    vd_call_error(c, 400, "Invalid signal: %s", sq);
    return;
  }
  vd_container *ctr = call_running_container(c);
  if (!ctr)
    return;
  vd_restart_note_manual(d, ctr, true);
  unsigned run = vd_net_run(d, ctr);
  vs_error *e = NULL;
  if (vd_supervise_kill(d, ctr, sig, &e) < 0) {
    vd_call_fail(c, e);
    vs_error_free(e);
    return;
  }
  /* Docker's attributes are strings: the CLI cannot decode an event with a number there */
  ctr_event(d, ctr, "kill", json_pack("{s:o}", "signal", json_sprintf("%d", sig)));
  /* SIGKILL answers once the container is stopped, as dockerd's kill does: `docker kill c &&
   * docker rm c` works, and its endpoints are gone as after a stop */
  if (sig == SIGKILL) {
    thaw_if_paused(d, ctr);
    if (!vd_supervise_wait_exit(ctr, 10000)) {
      vd_call_error(c, 500, "container %.12s did not stop after SIGKILL", ctr->id);
      return;
    }
    refresh_after_exit(d, ctr);
    vd_net_teardown_run(d, ctr, run);
  }
  vd_call_status(c, 204);
}

/* A signal of a stop, with its kill event as dockerd's stop sends them. A failure is no error:
 * the container may have just exited, and the wait that follows tells. */
static void stop_signal(vd_daemon *d, vd_container *ctr, int sig) {
  vs_error *e = NULL;
  if (vd_supervise_kill(d, ctr, sig, &e) < 0) {
    vs_error_free(e);
    return;
  }
  ctr_event(d, ctr, "kill", json_pack("{s:o}", "signal", json_sprintf("%d", sig)));
}

/* Wait for ctr's exit after its stop signal: up to timeout_s seconds, or with a negative timeout
 * until it exits (dockerd and podman take -1 as no limit), a second at a time so that such a wait
 * does not hold up the daemon's end. 1: it exited; 0: the timeout passed; -1: the daemon is
 * ending (the container is left running, as the daemon leaves every container). */
static int wait_stopped(vd_daemon *d, vd_container *ctr, json_int_t timeout_s) {
  if (timeout_s >= 0)
    return vd_supervise_wait_exit(ctr, (int)timeout_s * 1000);
  while (!vd_supervise_wait_exit(ctr, 1000))
    if (vd_workers_quitting(d))
      return -1;
  return 1;
}

/* Stop ctr: its stop signal, the timeout, then SIGKILL. Answers 204, 304 or an error; returns
 * whether it is stopped. */
static bool stop_container(vd_call *c, vd_container *ctr) {
  vd_daemon *d = c->d;
  pthread_mutex_lock(&d->lock);
  bool running = ctr->state == VD_CTR_RUNNING;
  json_t *cfg = json_object_get(ctr->rec, "Config");
  int sig = parse_signal(json_string_value(json_object_get(cfg, "StopSignal")));
  json_int_t timeout = json_integer_value(json_object_get(cfg, "StopTimeout"));
  unsigned reported = ctr->exits_reported;
  pthread_mutex_unlock(&d->lock);
  _cleanup_free_ char *tq = http_query_get(c->req->query, "t");
  if (tq && *tq) {
    char *end;
    timeout = strtoll(tq, &end, 10);
    if (*end || timeout > 86400) {
      vd_call_error(c, 400, "invalid value for t: %s", tq);
      return false;
    }
  } else if (!json_object_get(cfg, "StopTimeout")) {
    timeout = 10;
  }
  vd_restart_note_manual(d, ctr, true); /* also stops a pending restart */
  if (!running) {
    vd_call_status(c, 304);
    return true;
  }
  unsigned run = vd_net_run(d, ctr);
  stop_signal(d, ctr, sig ? sig : SIGTERM);
  thaw_if_paused(d, ctr);
  int stopped = wait_stopped(d, ctr, timeout);
  if (stopped < 0) {
    vd_call_error(c, 503, "the daemon is shutting down: container %.12s was left running", ctr->id);
    return false;
  }
  if (!stopped) {
    stop_signal(d, ctr, SIGKILL);
    if (!vd_supervise_wait_exit(ctr, 10000)) {
      vd_call_error(c, 500, "container %.12s did not stop after SIGKILL", ctr->id);
      return false;
    }
  }
  refresh_after_exit(d, ctr);
  vd_net_teardown_run(d, ctr, run);
  /* dockerd's order is kill, die, stop: the die goes out on the loop once it has seen the exit
   * (a client that waits for stop may look for die before it) */
  vd_supervise_wait_reported(d, ctr, reported, 5000);
  ctr_event(d, ctr, "stop", NULL);
  vd_call_status(c, 204);
  return true;
}

void vd_h_container_stop(vd_call *c) {
  vd_container *ctr = call_container(c);
  if (!ctr)
    return;
  c->ctr = ctr;
  stop_container(c, ctr);
}

void vd_h_container_restart(vd_call *c) {
  vd_container *ctr = call_container(c);
  if (!ctr)
    return;
  c->ctr = ctr;
  if (!stop_container(c, ctr))
    return;
  /* the exit the stop caused must be seen by the loop before the new start is */
  pthread_mutex_lock(&c->d->lock);
  ctr->state = VD_CTR_EXITED;
  pthread_mutex_unlock(&c->d->lock);
  start_container(c, ctr);
  if (c->status == 304)
    vd_call_status(c, 204);
}

static void pause_container(vd_call *c, bool pause) {
  vd_daemon *d = c->d;
  vd_container *ctr = call_running_container(c);
  if (!ctr)
    return;
  pthread_mutex_lock(&d->lock);
  bool paused = ctr->paused;
  pthread_mutex_unlock(&d->lock);
  if (paused == pause) {
    vd_call_error(c, 409, "Container %s is %s", c->arg, paused ? "already paused" : "not paused");
    return;
  }
  vs_error *e = NULL;
  if (ctr_pause(&d->rt, ctr->id, pause, &e) < 0) {
    vd_call_fail(c, e);
    vs_error_free(e);
    return;
  }
  pthread_mutex_lock(&d->lock);
  ctr->paused = pause;
  pthread_mutex_unlock(&d->lock);
  ctr_event(d, ctr, pause ? "pause" : "unpause", NULL);
  vd_call_status(c, 204);
}

int vd_call_terminal_size(vd_call *c, uint64_t *h, uint64_t *w) {
  _cleanup_free_ char *hq = http_query_get(c->req->query, "h");
  _cleanup_free_ char *wq = http_query_get(c->req->query, "w");
  vs_error *e = NULL;
  *h = *w = 0;
  if (!hq || !wq || vs_parse_u64(hq, "h", h, &e) < 0 || vs_parse_u64(wq, "w", w, &e) < 0 ||
      *h > 65535 || *w > 65535) {
    vd_call_error(c, 400, "invalid terminal size: %s", e ? e->msg : "h and w must be 0..65535");
    vs_error_free(e);
    return -1;
  }
  return 0;
}

/* A terminal's size: one 'r' frame to the monitor (see monitor.c). */
void vd_h_container_resize(vd_call *c) {
  vd_daemon *d = c->d;
  uint64_t h, w;
  vs_error *e = NULL;
  if (vd_call_terminal_size(c, &h, &w) < 0)
    return;
  vd_container *ctr = call_running_container(c);
  if (!ctr)
    return;
  pthread_mutex_lock(&d->lock);
  bool tty = json_is_true(json_object_get(json_object_get(ctr->rec, "Config"), "Tty"));
  pthread_mutex_unlock(&d->lock);
  if (tty) {
    _cleanup_close_ int fd = vd_monitor_connect(ctr, &e);
    unsigned char frame[9] = {'r',
                              0,
                              0,
                              0,
                              4,
                              (unsigned char)(h >> 8),
                              (unsigned char)h,
                              (unsigned char)(w >> 8),
                              (unsigned char)w};
    if (fd < 0 || vs_write_all(fd, frame, sizeof(frame), &e) < 0) {
      vd_call_fail(c, e);
      vs_error_free(e);
      return;
    }
  }
  vd_call_status(c, 200);
}

void vd_h_container_pause(vd_call *c) { pause_container(c, true); }
void vd_h_container_unpause(vd_call *c) { pause_container(c, false); }

/* ---------------------------------------------------------------- remove */

void vd_h_container_delete(vd_call *c) {
  vd_daemon *d = c->d;
  bool force = http_query_bool(c->req->query, "force", false);
  vd_container *ctr = call_container(c);
  if (!ctr)
    return;
  c->ctr = ctr;
  pthread_mutex_lock(&d->lock);
  bool running = ctr->state == VD_CTR_RUNNING || ctr->starting;
  bool removing = ctr->removing;
  if (!removing && (!running || force))
    ctr->removing = true;
  pthread_mutex_unlock(&d->lock);
  if (removing) {
    vd_call_error(c, 409, "removal of container %s is already in progress", c->arg);
    return;
  }
  if (running && !force) {
    vd_call_error(c, 409,
                  "You cannot remove a running container %s. Stop the container before "
                  "attempting removal or force remove",
                  ctr->id);
    return;
  }
  vs_error *e = NULL;
  if (vd_supervise_remove(d, ctr, force, &e) < 0) {
    pthread_mutex_lock(&d->lock);
    ctr->removing = false;
    pthread_mutex_unlock(&d->lock);
    vd_call_fail(c, e);
    vs_error_free(e);
    return;
  }
  if (http_query_bool(c->req->query, "v", false))
    vd_volumes_release(d, json_object_get(ctr->rec, "MountPoints"), ctr->id);
  if (!c->internal)
    vd_cctr_forget(d, ctr);
  c->after = VD_AFTER_REMOVED;
  vd_call_status(c, 204);
}

/* ---------------------------------------------------------------- rename, prune, top */

void vd_h_container_rename(vd_call *c) {
  vd_daemon *d = c->d;
  _cleanup_free_ char *name = http_query_get(c->req->query, "name");
  if (!name || !valid_name(name)) {
    vd_call_error(c, 400, "Invalid container name (%s), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed",
                  name ? name : "");
    return;
  }
  vd_container *ctr = call_container(c);
  if (!ctr)
    return;
  c->ctr = ctr;
  _cleanup_free_ char *full = vs_asprintf("/%s", name[0] == '/' ? name + 1 : name);
  pthread_mutex_lock(&d->lock);
  vd_container *other = vd_ctr_find_name(d, full);
  json_t *copy = NULL;
  _cleanup_free_ char *old_name = NULL;
  if (!other) {
    old_name = ctr->name;
    ctr->name = vs_strdup(full);
    json_object_set_new(ctr->rec, "Name", json_string(full));
    copy = json_deep_copy(ctr->rec);
  }
  pthread_mutex_unlock(&d->lock);
  if (other && other != ctr) {
    vd_call_error(c, 409,
                  "Conflict. The container name \"%s\" is already in use by container "
                  "\"%s\". You have to remove (or rename) that container to be able to "
                  "reuse that name.",
                  full, other->id);
    return;
  }
  vs_error *e = NULL;
  _cleanup_free_ char *path = vs_asprintf("%s/record.json", ctr->dir);
  if (copy && vs_json_write_file(path, copy, 0600, &e) < 0) {
    json_decref(copy);
    vd_call_fail(c, e);
    vs_error_free(e);
    return;
  }
  json_decref(copy);
  if (old_name)
    vd_net_renamed(d, ctr->id, old_name + 1, full + 1);
  ctr_event(d, ctr, "rename", NULL);
  vd_call_status(c, 204);
}

/* docker container prune: every container that is not running. */
void vd_h_containers_prune(vd_call *c) {
  vd_daemon *d = c->d;
  json_t *deleted = json_array();
  for (;;) {
    vd_container *victim = NULL;
    pthread_mutex_lock(&d->lock);
    for (size_t i = 0; i < d->n_ctrs && !victim; i++) {
      vd_container *ctr = d->ctrs[i];
      if (ctr->state != VD_CTR_RUNNING && !ctr->starting && !ctr->removing && !ctr->restarting) {
        victim = ctr;
        ctr->removing = true;
        vd_ctr_ref(ctr);
      }
    }
    pthread_mutex_unlock(&d->lock);
    if (!victim)
      break;
    vs_error *e = NULL;
    if (vd_supervise_remove(d, victim, false, &e) == 0) {
      json_array_append_new(deleted, json_string(victim->id));
      /* the loop drops it from the table; until then it is marked removing */
      vd_job *job = vs_malloc0(sizeof(*job));
      job->d = d;
      job->ctr = victim;
      vd_supervise_post_removed(d, job);
    } else {
      vs_log_warn("prune %.12s: %s", victim->id, e->msg);
      vs_error_free(e);
      vd_ctr_unref(d, victim);
    }
  }
  vd_call_json(c, 200, json_pack("{s:o, s:i}", "ContainersDeleted", deleted, "SpaceReclaimed", 0));
}

/* docker top: ps(1) of the container's processes (from its cgroup), as dockerd runs it. */
void vd_h_container_top(vd_call *c) {
  vd_daemon *d = c->d;
  vd_container *ctr = call_running_container(c);
  if (!ctr)
    return;
  pid_t *pids = NULL;
  size_t n = 0;
  vs_error *e = NULL;
  if (ctr_ps(&d->rt, ctr->id, &pids, &n, &e) < 0) {
    vd_call_fail(c, e);
    vs_error_free(e);
    return;
  }
  json_t *procs = json_array();
  for (size_t i = 0; i < n; i++) {
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pids[i]);
    _cleanup_free_ char *cmd = NULL;
    size_t len = 0;
    if (vs_read_file(path, 65536, &cmd, &len, NULL) < 0)
      continue; /* gone meanwhile */
    for (size_t k = 0; k + 1 < len; k++)
      if (cmd[k] == 0)
        cmd[k] = ' ';
    char pid[16];
    snprintf(pid, sizeof(pid), "%d", (int)pids[i]);
    json_array_append_new(procs, json_pack("[s, s]", pid, cmd));
  }
  free(pids);
  vd_call_json(c, 200, json_pack("{s:[s, s], s:o}", "Titles", "PID", "CMD", "Processes", procs));
}

/* The image config of a commit, as dockerd makes it: the container's own settings (its merged
 * Cmd, Env, Labels, ...) over the image's, then the request's config, then the Dockerfile
 * instructions of `changes`. NULL after answering 400. */
static json_t *commit_config(vd_call *c, vd_container *ctr, const vs_image *base, json_t *body) {
  static const char *const image_keys[] = {
      "User",       "ExposedPorts", "Env",     "Cmd",    "Healthcheck", "Volumes",
      "WorkingDir", "Entrypoint",   "OnBuild", "Labels", "StopSignal",  "Shell"};
  json_t *img = json_object_get(base->config.root, "config");
  json_t *config = json_is_object(img) ? json_deep_copy(img) : json_object();
  pthread_mutex_lock(&c->d->lock);
  json_t *own = json_object_get(ctr->rec, "Config");
  for (size_t i = 0; i < ARRAY_SIZE(image_keys); i++) {
    json_t *v = json_object_get(own, image_keys[i]);
    if (v)
      json_object_set_new(config, image_keys[i], json_deep_copy(v));
  }
  pthread_mutex_unlock(&c->d->lock);
  if (body)
    json_object_update(config, body);
  _cleanup_json_ json_t *changes = http_query_all(c->req->query, "changes");
  vs_error *e = NULL;
  if (vs_config_apply_changes(config, changes, &e) < 0) {
    vd_call_error(c, 400, "%s", e->msg);
    vs_error_free(e);
    json_decref(config);
    return NULL;
  }
  return config;
}

/* Freeze a running container for a commit (dockerd's default, --pause): whether it was. */
static bool commit_pause(vd_call *c, vd_container *ctr) {
  if (!http_query_bool(c->req->query, "pause", true))
    return false;
  pthread_mutex_lock(&c->d->lock);
  bool freeze = ctr->state == VD_CTR_RUNNING && !ctr->paused;
  if (freeze)
    ctr->paused = true;
  pthread_mutex_unlock(&c->d->lock);
  if (freeze && ctr_pause(&c->d->rt, ctr->id, true, NULL) < 0) {
    pthread_mutex_lock(&c->d->lock);
    ctr->paused = false;
    pthread_mutex_unlock(&c->d->lock);
    return false;
  }
  return freeze;
}

static void commit_resume(vd_call *c, vd_container *ctr) {
  ctr_pause(&c->d->rt, ctr->id, false, NULL);
  pthread_mutex_lock(&c->d->lock);
  ctr->paused = false;
  pthread_mutex_unlock(&c->d->lock);
}

/* docker commit: the container's upper directory becomes a new layer on its image, with the
 * config commit_config makes, the comment (-m) and the author (-a). */
void vd_h_commit(vd_call *c) {
  vd_daemon *d = c->d;
  const char *q = c->req->query;
  _cleanup_free_ char *cname = http_query_get(q, "container");
  _cleanup_free_ char *repo = http_query_get(q, "repo");
  _cleanup_free_ char *tag = http_query_get(q, "tag");
  _cleanup_free_ char *comment = http_query_get(q, "comment");
  _cleanup_free_ char *author = http_query_get(q, "author");
  _cleanup_json_ json_t *body = NULL;
  if (c->body_len && strcmp(c->body, "null") != 0 && !(body = vd_call_body_object(c)))
    return;
  pthread_mutex_lock(&d->lock);
  vd_container *ctr = cname ? vd_ctr_find(d, cname) : NULL;
  if (ctr)
    vd_ctr_ref(ctr);
  pthread_mutex_unlock(&d->lock);
  if (!ctr) {
    vd_call_error(c, 404, "No such container: %s", cname ? cname : "");
    return;
  }
  c->ctr = ctr;
  _cleanup_free_ char *full = NULL;
  vs_error *e = NULL;
  if (vd_call_image_ref(c, repo, tag, &full) < 0)
    return;
  const char *md = json_string_value(json_object_get(ctr->rec, "ImageManifest"));
  _cleanup_free_ char *upper = vs_asprintf("%s/upper", ctr->dir);
  vs_image base, img = {0};
  char digest[VS_DIGEST_MAX];
  pthread_mutex_lock(&d->store_lock);
  int r = vs_store_load_image(d->store, md, &base, &e);
  pthread_mutex_unlock(&d->store_lock);
  if (r < 0) {
    vd_call_error(c, 500, "commit %.12s: %s", ctr->id, e ? e->msg : "failed");
    vs_error_free(e);
    return;
  }
  _cleanup_json_ json_t *config = commit_config(c, ctr, &base, body);
  if (!config) {
    vs_image_clear(&base);
    return;
  }
  bool paused = commit_pause(c, ctr);
  pthread_mutex_lock(&d->store_lock);
  r = vs_image_commit(d->store, &base, upper, full, config, comment && *comment ? comment : NULL,
                      author && *author ? author : NULL, digest, &e);
  vs_image_clear(&base);
  if (r == 0)
    r = vs_store_load_image(d->store, digest, &img, &e);
  pthread_mutex_unlock(&d->store_lock);
  if (paused)
    commit_resume(c, ctr);
  if (r < 0) {
    vd_call_error(c, 500, "commit %.12s: %s", ctr->id, e ? e->msg : "failed");
    vs_error_free(e);
    return;
  }
  vd_event_emit(d, "container", "commit", ctr->id, NULL);
  vd_call_json(c, 201, json_pack("{s:s}", "Id", img.manifest.config.digest));
  vs_image_clear(&img);
}

/* ---------------------------------------------------------------- diff */

typedef struct diff_walk {
  char **layers; /* lower layer directories, top first */
  size_t n_layers;
  json_t *out;
  int depth;
} diff_walk;

static bool in_lower(const diff_walk *w, const char *rel) {
  for (size_t i = 0; i < w->n_layers; i++) {
    _cleanup_free_ char *p = vs_asprintf("%s%s", w->layers[i], rel);
    struct stat st;
    if (lstat(p, &st) == 0)
      return !(S_ISCHR(st.st_mode) && st.st_rdev == 0); /* a whiteout there: not in the image */
  }
  return false;
}

/* Mount points the runtime makes for every container (dockerd's "init layer"): not the
 * container's own changes. */
static bool is_mount_point_file(const char *rel) {
  static const char *const init[] = {"/etc/hosts", "/etc/hostname", "/etc/resolv.conf", "/dev",
                                     "/proc",      "/sys",          "/etc/mtab",        "/dev/pts",
                                     "/dev/shm",   "/dev/mqueue",   "/dev/console"};
  for (size_t i = 0; i < ARRAY_SIZE(init); i++)
    if (!strcmp(rel, init[i]))
      return true;
  return false;
}

static void walk_upper(diff_walk *w, const char *upper, const char *rel) {
  if (w->depth > 256)
    return;
  _cleanup_free_ char *path = vs_asprintf("%s%s", upper, rel);
  DIR *dh = opendir(path);
  if (!dh)
    return;
  struct dirent *de;
  while ((de = readdir(dh))) {
    if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
      continue;
    _cleanup_free_ char *sub = vs_asprintf("%s/%s", rel, de->d_name);
    _cleanup_free_ char *full = vs_asprintf("%s%s", upper, sub);
    struct stat st;
    if (lstat(full, &st) < 0 || is_mount_point_file(sub))
      continue;
    int kind = S_ISCHR(st.st_mode) && st.st_rdev == 0 ? 2 : in_lower(w, sub) ? 0 : 1;
    json_array_append_new(w->out, json_pack("{s:s, s:i}", "Path", sub, "Kind", kind));
    if (S_ISDIR(st.st_mode)) {
      w->depth++;
      walk_upper(w, upper, sub);
      w->depth--;
    }
  }
  closedir(dh);
}

/* docker diff: what the container's upper directory holds, against the image's layers. */
void vd_h_container_changes(vd_call *c) {
  vd_daemon *d = c->d;
  vd_container *ctr = call_container(c);
  if (!ctr)
    return;
  c->ctr = ctr;
  const char *md = json_string_value(json_object_get(ctr->rec, "ImageManifest"));
  vs_image img;
  vs_error *e = NULL;
  pthread_mutex_lock(&d->store_lock);
  int r = vs_store_load_image(d->store, md, &img, &e);
  diff_walk w = {.out = json_array()};
  if (r == 0) {
    w.n_layers = img.config.n_diff_ids;
    w.layers = vs_malloc0(sizeof(char *) * (w.n_layers + 1));
    for (size_t i = 0; i < w.n_layers; i++) /* top first */
      w.layers[i] = vs_store_layer_path(d->store, img.config.diff_ids[w.n_layers - 1 - i]);
    vs_image_clear(&img);
  }
  pthread_mutex_unlock(&d->store_lock);
  if (r < 0) {
    json_decref(w.out);
    vd_call_fail(c, e);
    vs_error_free(e);
    return;
  }
  _cleanup_free_ char *upper = vs_asprintf("%s/upper", ctr->dir);
  walk_upper(&w, upper, "");
  for (size_t i = 0; i < w.n_layers; i++)
    free(w.layers[i]);
  free(w.layers);
  vd_call_json(c, 200, w.out);
}
