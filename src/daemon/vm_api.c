/* The /vessel/v1/vms handlers (docs/api.md): answers, and the requests that start, stop,
 * snapshot and clone VMs through vms.c. Blocking handlers run on workers (router.c); one request
 * works on a VM at a time (vm_claim). */
#include "daemon/vms.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <unistd.h>

#define VM_STOP_TIMEOUT 30 /* seconds for the guest to power off, unless the request says */

/* ---------------------------------------------------------------- answers */

static int compare_names(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The names of the VM's snapshots, sorted. */
static json_t *vm_snapshots(const vd_vm *vm) {
  json_t *a = json_array();
  _cleanup_free_ char *p = vs_asprintf("%s/snapshots", vm->dir);
  DIR *dir = opendir(p);
  if (!dir)
    return a;
  char **names = NULL;
  size_t n = 0;
  struct dirent *de;
  while ((de = readdir(dir)))
    if (de->d_name[0] != '.') {
      names = vs_realloc(names, sizeof(*names) * (n + 1));
      names[n++] = vs_strdup(de->d_name);
    }
  closedir(dir);
  if (n)
    qsort(names, n, sizeof(*names), compare_names);
  for (size_t i = 0; i < n; i++) {
    json_array_append_new(a, json_string(names[i]));
    free(names[i]);
  }
  free(names);
  return a;
}

/* The inspect document (under t->lock). */
static json_t *vm_inspect_locked(const vd_vm *vm) {
  json_t *state = json_pack("{s:s, s:b, s:b, s:i, s:s, s:s, s:i, s:s}", "Status", vd_vm_status(vm),
                            "Running", vm->pid > 0, "Paused", vm->paused, "Pid", (int)vm->pid,
                            "StartedAt", vm->started_at ? vm->started_at : "", "FinishedAt",
                            vm->finished_at ? vm->finished_at : "", "ExitCode", vm->exit_code,
                            "Error", vm->error ? vm->error : "");
  json_t *restore = json_object_get(vm->rec, "Restore");
  json_t *net = json_object_get(vm->rec, "NetworkSettings");
  return json_pack(
      "{s:s, s:s, s:O, s:O, s:o, s:O, s:O, s:s, s:o, s:O, s:i}", "Id", vm->id, "Name", vm->name,
      "Created", json_object_get(vm->rec, "Created"), "Config", json_object_get(vm->rec, "Config"),
      "State", state, "Disk",
      json_object_get(vm->rec, "Disk") ? json_object_get(vm->rec, "Disk") : json_null(), "Restore",
      restore ? restore : json_null(), "Dir", vm->dir, "Snapshots", vm_snapshots(vm),
      "NetworkSettings", net ? net : json_null(), "RestartCount", vm->restart_count);
}

json_t *vd_vm_inspect(vd_vms *t, const vd_vm *vm) {
  pthread_mutex_lock(&t->lock);
  json_t *j = vm_inspect_locked(vm);
  pthread_mutex_unlock(&t->lock);
  return j;
}

/* The list's line: what a table of guests shows, the pool and the address its network's DHCP
 * leases to the VM ("" when it has none) included. */
static json_t *vm_summary_locked(const vd_vm *vm) {
  json_t *cfg = json_object_get(vm->rec, "Config");
  const char *pool = json_string_value(json_object_get(cfg, "Pool"));
  const char *ip =
      json_string_value(json_object_get(json_object_get(vm->rec, "NetworkSettings"), "IPAddress"));
  return json_pack("{s:s, s:s, s:s, s:O, s:O, s:O, s:i, s:s, s:s}", "Id", vm->id, "Name", vm->name,
                   "Status", vd_vm_status(vm), "Created", json_object_get(vm->rec, "Created"),
                   "Cpus", json_object_get(cfg, "Cpus"), "Memory", json_object_get(cfg, "Memory"),
                   "Pid", (int)vm->pid, "Pool", pool ? pool : "", "IPAddress", ip ? ip : "");
}

/* The VM a call names, marked busy for this call: NULL after answering 404 or 409. */
static vd_vm *vm_claim(vd_call *c) {
  vd_vms *t = c->d->vms;
  pthread_mutex_lock(&t->lock);
  vd_vm *vm = vd_vm_find_locked(t, c->arg);
  if (vm && vm->busy) {
    pthread_mutex_unlock(&t->lock);
    vd_call_error(c, 409, "VM %s is busy with another request", vm->name);
    return NULL;
  }
  if (vm)
    vm->busy = true;
  pthread_mutex_unlock(&t->lock);
  if (!vm)
    vd_call_error(c, 404, "No such VM: %s", c->arg);
  return vm;
}

static void vm_release(vd_vms *t, vd_vm *vm) {
  pthread_mutex_lock(&t->lock);
  vm->busy = false;
  pthread_mutex_unlock(&t->lock);
}

/* ---------------------------------------------------------------- handlers */

void vd_h_vms_list(vd_call *c) {
  vd_vms *t = c->d->vms;
  json_t *a = json_array();
  pthread_mutex_lock(&t->lock);
  for (size_t i = 0; i < t->n; i++)
    json_array_append_new(a, vm_summary_locked(t->vms[i]));
  pthread_mutex_unlock(&t->lock);
  vd_call_json(c, 200, a);
}

void vd_h_vm_inspect(vd_call *c) {
  vd_vms *t = c->d->vms;
  pthread_mutex_lock(&t->lock);
  vd_vm *vm = vd_vm_find_locked(t, c->arg);
  json_t *j = vm ? vm_inspect_locked(vm) : NULL;
  pthread_mutex_unlock(&t->lock);
  if (!vm)
    vd_call_error(c, 404, "No such VM: %s", c->arg);
  else
    vd_call_json(c, 200, j);
}

vd_vm *vd_vm_new_from_request(vd_daemon *d, const char *name, json_t *body, json_t *extra,
                              vs_error **err) {
  json_t *rec = json_object();
  json_t *cfg = json_object();
  json_t *disk = json_object();
  json_object_set_new(rec, "Config", cfg);
  if (extra)
    json_object_update(rec, extra);
  /* the ID the cluster asks for (a guest restarted elsewhere keeps it), not a field of the VM's */
  _cleanup_free_ char *want_id = json_string_value(json_object_get(rec, "VmId"))
                                     ? vs_strdup(json_string_value(json_object_get(rec, "VmId")))
                                     : NULL;
  json_object_del(rec, "VmId");
  vs_error *e = NULL;
  _cleanup_free_ char *image = NULL;
  vs_registry_opts ro = {.tls_verify = 1, .quiet = true};
  if (json_object_get(body, "Image") && vd_vm_name_valid(name) &&
      vd_vm_image_prepare(d, body, &ro, &image, &e) < 0 && e->errnum == 0)
    e->errnum = EINVAL;
  if (e)
    ; /* the image's error */
  else if (!vd_vm_name_valid(name))
    vs_error_set(&e, EINVAL,
                 "VM name \"%s\": use 1 to 64 letters, digits, '_', '.' or '-', starting with a "
                 "letter or digit",
                 name ? name : "");
  else if (vd_vm_config_parse(body, cfg, disk, &e) < 0 && e->errnum == 0)
    e->errnum = EINVAL; /* a field of the wrong type: the request's fault */
  if (!e && image)
    json_object_set_new(cfg, "Image", json_string(image));
  vd_vm *vm = NULL;
  if (e)
    json_decref(rec);
  else
    vm = vd_vm_create_with_id(d, name, want_id, rec, &e); /* takes rec */
  if (!vm)
    goto fail;
  if (json_object_size(disk)) {
    if (vd_vm_create_disk(d, vm, disk, &e) < 0)
      goto fail;
    json_object_set(vm->rec, "Disk", disk);
  }
  if (vd_vm_net_attach(d, vm, &e) < 0)
    goto fail;
  if (vd_vm_commit(d, vm, &e) < 0) {
    vd_vm_net_detach(d, vm);
    goto fail;
  }
  json_decref(disk);
  return vm;
fail:
  json_decref(disk);
  *err = e;
  if (vm)
    vd_vm_discard(vm);
  return NULL;
}

void vd_h_vm_create(vd_call *c) {
  json_t *body = vd_call_body_object(c);
  if (!body)
    return;
  const char *bname = json_string_value(json_object_get(body, "Name"));
  _cleanup_free_ char *name = http_query_get(c->req->query, "name");
  if (bname) {
    free(name);
    name = vs_strdup(bname);
  }
  if (c->d->cluster.enabled) {
    vd_cluster_vm_create(c, name, body); /* takes body */
    return;
  }
  vs_error *e = NULL;
  vd_vm *vm = vd_vm_new_from_request(c->d, name, body, NULL, &e);
  json_decref(body);
  if (!vm) {
    vd_call_fail(c, e);
    vs_error_free(e);
    return;
  }
  vm_release(c->d->vms, vm);
  vd_call_json(c, 201, json_pack("{s:s, s:s}", "Id", vm->id, "Name", vm->name));
}

void vd_h_vm_start(vd_call *c) {
  vd_vm *vm = vm_claim(c);
  if (!vm)
    return;
  vs_error *e = NULL;
  if (vd_vm_running(c->d->vms, vm))
    vd_call_status(c, 304);
  else if (vd_vm_note_manual(c->d->vms, vm, false), vd_vm_start(c->d, vm, &e) < 0)
    vd_call_error(c, 500, "start VM %s: %s", vm->name, e->msg);
  else
    vd_call_status(c, 204);
  vd_cluster_note_local_change(c->d);
  vs_error_free(e);
  vm_release(c->d->vms, vm);
}

static int query_timeout(vd_call *c, int *out) {
  _cleanup_free_ char *t = http_query_get(c->req->query, "t");
  *out = VM_STOP_TIMEOUT;
  if (!t || !*t)
    return 0;
  uint64_t v;
  vs_error *e = NULL;
  if (vs_parse_u64(t, "t", &v, &e) < 0 || v > 3600) {
    vd_call_error(c, 400, "t=%s: expected seconds from 0 to 3600", t);
    vs_error_free(e);
    return -1;
  }
  *out = (int)v;
  return 0;
}

void vd_h_vm_stop(vd_call *c) {
  int timeout;
  if (query_timeout(c, &timeout) < 0)
    return;
  vd_vm *vm = vm_claim(c);
  if (!vm)
    return;
  vs_error *e = NULL;
  if (!vd_vm_running(c->d->vms, vm))
    vd_call_status(c, 304);
  else if (vd_vm_stop(c->d, vm, timeout, &e) < 0)
    vd_call_fail(c, e);
  else
    vd_call_status(c, 204);
  vd_cluster_note_local_change(c->d);
  vs_error_free(e);
  vm_release(c->d->vms, vm);
}

void vd_h_vm_restart(vd_call *c) {
  int timeout;
  if (query_timeout(c, &timeout) < 0)
    return;
  vd_vm *vm = vm_claim(c);
  if (!vm)
    return;
  vs_error *e = NULL;
  if (vd_vm_stop(c->d, vm, timeout, &e) < 0 ||
      (vd_vm_note_manual(c->d->vms, vm, false), vd_vm_start(c->d, vm, &e) < 0))
    vd_call_error(c, 500, "restart VM %s: %s", vm->name, e->msg);
  else {
    vd_call_status(c, 204);
    vd_event_emit(c->d, "vm", "restart", vm->id, vd_vm_event_attrs(vm));
  }
  vs_error_free(e);
  vm_release(c->d->vms, vm);
}

static int signal_number(const char *s) {
  static const struct {
    const char *name;
    int sig;
  } sigs[] = {
      {"KILL", SIGKILL}, {"TERM", SIGTERM}, {"INT", SIGINT}, {"HUP", SIGHUP}, {"QUIT", SIGQUIT}};
  if (!s || !*s)
    return SIGKILL;
  if (!strncmp(s, "SIG", 3))
    s += 3;
  for (size_t i = 0; i < ARRAY_SIZE(sigs); i++)
    if (!strcmp(s, sigs[i].name))
      return sigs[i].sig;
  char *end;
  long n = strtol(s, &end, 10);
  return *end || n < 1 || n > 64 ? -1 : (int)n;
}

void vd_h_vm_kill(vd_call *c) {
  _cleanup_free_ char *s = http_query_get(c->req->query, "signal");
  int sig = signal_number(s);
  if (sig < 0) {
    vd_call_error(c, 400, "invalid signal: %s", s);
    return;
  }
  vd_vm *vm = vm_claim(c);
  if (!vm)
    return;
  if (!vd_vm_running(c->d->vms, vm)) {
    vd_call_error(c, 409, "VM %s is not running", vm->name);
  } else {
    vd_vm_note_manual(c->d->vms, vm, true); /* as docker kill: the restart policy stops */
    pthread_mutex_lock(&c->d->vms->lock);
    vm->stopping = true;
    pthread_mutex_unlock(&c->d->vms->lock);
    vd_vm_kill(c->d->vms, vm, sig);
    if (sig == SIGKILL)
      vd_vm_wait_stopped(c->d->vms, vm, 10000);
    vd_event_emit(c->d, "vm", "kill", vm->id, vd_vm_event_attrs(vm));
    vd_call_status(c, 204);
    vd_cluster_note_local_change(c->d);
  }
  vm_release(c->d->vms, vm);
}

static void pause_or_resume(vd_call *c, bool pause) {
  vd_vm *vm = vm_claim(c);
  if (!vm)
    return;
  vs_error *e = NULL;
  if (!vd_vm_running(c->d->vms, vm))
    vd_call_error(c, 409, "VM %s is not running", vm->name);
  else if (vm->paused == pause)
    vd_call_error(c, 409, "VM %s is %s", vm->name, pause ? "already paused" : "not paused");
  else if (vd_vm_ctl_simple(vm, pause ? "pause" : "resume", &e) < 0)
    vd_call_error(c, 500, "%s VM %s: %s", pause ? "pause" : "resume", vm->name, e->msg);
  else {
    pthread_mutex_lock(&c->d->vms->lock);
    vm->paused = pause;
    pthread_mutex_unlock(&c->d->vms->lock);
    vd_event_emit(c->d, "vm", pause ? "pause" : "resume", vm->id, vd_vm_event_attrs(vm));
    vd_call_status(c, 204);
  }
  vs_error_free(e);
  vm_release(c->d->vms, vm);
}

void vd_h_vm_pause(vd_call *c) { pause_or_resume(c, true); }
void vd_h_vm_resume(vd_call *c) { pause_or_resume(c, false); }

int vd_vm_remove(vd_daemon *d, vd_vm *vm, bool force, vs_error **err) {
  vd_vms *t = d->vms;
  /* clones run from this VM's snapshots and disks: they must go first */
  pthread_mutex_lock(&t->lock);
  const char *clone = NULL;
  for (size_t i = 0; i < t->n && !clone; i++) {
    const char *src =
        json_string_value(json_object_get(json_object_get(t->vms[i]->rec, "Restore"), "Source"));
    if (src && !strcmp(src, vm->id))
      clone = t->vms[i]->name;
  }
  _cleanup_free_ char *clone_name = clone ? vs_strdup(clone) : NULL;
  pthread_mutex_unlock(&t->lock);
  if (clone_name)
    return vs_error_set(err, EBUSY,
                        "VM %s has a clone, %s, that runs from its snapshots: remove it first",
                        vm->name, clone_name);
  if (vd_vm_running(t, vm) && !force)
    return vs_error_set(err, EBUSY, "VM %s is running: stop it first or force the removal",
                        vm->name);
  if (vd_vm_running(t, vm) && vd_vm_stop(d, vm, 0, err) < 0)
    return -1;
  /* the record goes first: a removal cut short leaves a directory that recovery removes */
  _cleanup_free_ char *rpath = vs_asprintf("%s/record.json", vm->dir);
  unlink(rpath);
  vd_vm_net_detach(d, vm);
  const char *shared = json_string_value(json_object_get(vm->rec, "DiskDir"));
  if (shared && !json_object_get(vm->rec, "Migrating") &&
      vd_cluster_owns_disk_dir(&d->cluster, shared))
    vs_rm_rf(shared, NULL);
  vs_rm_rf(vm->dir, NULL);
  pthread_mutex_lock(&t->lock);
  vd_vm_remove_locked(t, vm);
  pthread_mutex_unlock(&t->lock);
  vd_event_emit(d, "vm", "destroy", vm->id, vd_vm_event_attrs(vm));
  return 0;
}

vd_vm *vd_vm_claim_name(vd_vms *t, const char *what, vs_error **err) {
  pthread_mutex_lock(&t->lock);
  vd_vm *vm = vd_vm_find_locked(t, what);
  if (vm && vm->busy) {
    pthread_mutex_unlock(&t->lock);
    vs_error_set(err, EBUSY, "VM %s is busy with another request", vm->name);
    return NULL;
  }
  if (vm)
    vm->busy = true;
  pthread_mutex_unlock(&t->lock);
  if (!vm)
    vs_error_set(err, ENOENT, "No such VM: %s", what);
  return vm;
}

void vd_vm_release(vd_vms *t, vd_vm *vm) { vm_release(t, vm); }

void vd_h_vm_delete(vd_call *c) {
  bool force = http_query_bool(c->req->query, "force", false);
  if (c->d->cluster.enabled && vd_cluster_vm_delete(c, force))
    return; /* a guest of the cluster on another node: handled there */
  vd_vm *vm = vm_claim(c);
  if (!vm)
    return;
  vs_error *e = NULL;
  if (vd_vm_remove(c->d, vm, force, &e) < 0) {
    vd_call_fail(c, e);
    vs_error_free(e);
    vm_release(c->d->vms, vm);
    return;
  }
  vd_call_status(c, 204);
}

/* ---------------------------------------------------------------- logs, snapshots, clones */

void vd_h_vm_logs(vd_call *c) {
  vd_vms *t = c->d->vms;
  pthread_mutex_lock(&t->lock);
  vd_vm *vm = vd_vm_find_locked(t, c->arg);
  _cleanup_free_ char *p = vm ? vs_asprintf("%s/console.log", vm->dir) : NULL;
  pthread_mutex_unlock(&t->lock);
  if (!vm) {
    vd_call_error(c, 404, "No such VM: %s", c->arg);
    return;
  }
  int fd = open(p, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) < 0) {
    if (fd >= 0)
      close(fd);
    c->text = vs_strdup("");
  } else {
    c->file_fd = fd;
    c->file_size = (uint64_t)st.st_size;
  }
  c->status = 200;
  c->content_type = "text/plain; charset=utf-8";
}

/* A name from the query (a snapshot's, a clone's): NULL after answering 400. */
static char *query_name(vd_call *c, const char *param, const char *what) {
  char *v = http_query_get(c->req->query, param);
  if (vd_vm_name_valid(v))
    return v;
  vd_call_error(c, 400,
                "%s name \"%s\": use 1 to 64 letters, digits, '_', '.' or '-', starting with a "
                "letter or digit",
                what, v ? v : "");
  free(v);
  return NULL;
}

void vd_h_vm_snapshot(vd_call *c) {
  _cleanup_free_ char *snap = query_name(c, "name", "snapshot");
  if (!snap)
    return;
  vd_vm *vm = vm_claim(c);
  if (!vm)
    return;
  _cleanup_free_ char *dir = vd_vm_snapshot_dir(vm, snap);
  _cleanup_free_ char *parent = vs_asprintf("%s/snapshots", vm->dir);
  vs_error *e = NULL;
  json_t *res = NULL;
  if (!vd_vm_running(c->d->vms, vm))
    vd_call_error(c, 409, "VM %s is not running: a snapshot is taken of a running VM", vm->name);
  else if (access(dir, F_OK) == 0)
    vd_call_error(c, 409, "VM %s already has a snapshot %s", vm->name, snap);
  else if (vs_mkdir_p(parent, 0700, &e) < 0 || vd_vm_snapshot(c->d->vms, vm, dir, &res, &e) < 0)
    vd_call_error(c, 500, "snapshot VM %s: %s", vm->name, e->msg);
  else {
    vd_event_emit(c->d, "vm", "snapshot", vm->id,
                  json_pack("{s:s, s:s}", "name", vm->name, "snapshot", snap));
    vd_call_json(c, 201,
                 json_pack("{s:s, s:s, s:O}", "Name", snap, "Dir", dir, "DurationUs",
                           json_object_get(res, "duration_us")));
  }
  json_decref(res);
  vs_error_free(e);
  vm_release(c->d->vms, vm);
}

void vd_h_vm_restore(vd_call *c) {
  _cleanup_free_ char *snap = http_query_get(c->req->query, "name");
  vd_vm *vm = vm_claim(c);
  if (!vm)
    return;
  _cleanup_free_ char *dir = snap && vd_vm_name_valid(snap) ? vd_vm_snapshot_dir(vm, snap) : NULL;
  vs_error *e = NULL;
  if (!dir || access(dir, F_OK) < 0) {
    vd_call_error(c, 404, "VM %s has no snapshot \"%s\"", vm->name, snap ? snap : "");
  } else if (vd_vm_stop(c->d, vm, 0, &e) < 0) {
    vd_call_fail(c, e);
  } else {
    pthread_mutex_lock(&c->d->vms->lock);
    json_object_set_new(
        vm->rec, "Restore",
        json_pack("{s:s, s:b, s:s, s:b}", "Dir", dir, "Clone", 0, "Snapshot", snap, "Pending", 1));
    pthread_mutex_unlock(&c->d->vms->lock);
    if (vd_vm_start(c->d, vm, &e) < 0)
      vd_call_error(c, 500, "restore VM %s from %s: %s", vm->name, snap, e->msg);
    else {
      vd_event_emit(c->d, "vm", "restore", vm->id,
                    json_pack("{s:s, s:s}", "name", vm->name, "snapshot", snap));
      vd_call_status(c, 204);
    }
  }
  vs_error_free(e);
  vm_release(c->d->vms, vm);
}

/* A new VM from a snapshot of this one (named, or taken now): a copy-on-write clone. */
void vd_h_vm_clone(vd_call *c) {
  _cleanup_free_ char *name = query_name(c, "name", "clone");
  if (!name)
    return;
  _cleanup_free_ char *snap = http_query_get(c->req->query, "snapshot");
  vd_vm *src = vm_claim(c);
  if (!src)
    return;
  vs_error *e = NULL;
  _cleanup_free_ char *snapname = snap && *snap ? vs_strdup(snap) : vs_asprintf("clone-%s", name);
  _cleanup_free_ char *dir = vd_vm_name_valid(snapname) ? vd_vm_snapshot_dir(src, snapname) : NULL;
  _cleanup_free_ char *parent = vs_asprintf("%s/snapshots", src->dir);
  if (!dir) {
    vd_call_error(c, 400, "snapshot name \"%s\" is not valid", snapname);
    goto out;
  }
  if (snap && *snap && access(dir, F_OK) < 0) {
    vd_call_error(c, 404, "VM %s has no snapshot \"%s\"", src->name, snap);
    goto out;
  }
  if (!(snap && *snap)) {
    if (!vd_vm_running(c->d->vms, src)) {
      vd_call_error(c, 409, "VM %s is not running: clone a snapshot of it instead", src->name);
      goto out;
    }
    if (access(dir, F_OK) == 0) {
      vd_call_error(c, 409, "VM %s already has a snapshot %s", src->name, snapname);
      goto out;
    }
    if (vs_mkdir_p(parent, 0700, &e) < 0 || vd_vm_snapshot(c->d->vms, src, dir, NULL, &e) < 0) {
      vd_call_error(c, 500, "snapshot VM %s for the clone: %s", src->name, e->msg);
      goto out;
    }
  }
  json_t *rec = json_pack("{s:o, s:{s:s, s:b, s:s, s:s, s:b}}", "Config",
                          json_deep_copy(json_object_get(src->rec, "Config")), "Restore", "Dir",
                          dir, "Clone", 1, "Snapshot", snapname, "Source", src->id, "Pending", 1);
  /* the clone gets a tap of its own on the source's network, with a new MAC and address (the
   * guest sees them once its driver probes the NIC again); published ports stay the source's */
  json_object_set_new(json_object_get(rec, "Config"), "PortBindings", json_object());
  if (!json_object_get(json_object_get(rec, "Config"), "Network"))
    json_object_del(json_object_get(rec, "Config"), "PortBindings");
  vd_vm *vm = vd_vm_create(c->d, name, rec, &e);
  bool attached = false;
  if (vm && vd_vm_net_attach(c->d, vm, &e) == 0)
    attached = true;
  if (!vm || !attached || vd_vm_commit(c->d, vm, &e) < 0) {
    vd_call_fail(c, e);
    if (attached)
      vd_vm_net_detach(c->d, vm);
    if (vm)
      vd_vm_discard(vm);
    goto out;
  }
  vm_release(c->d->vms, vm);
  vd_event_emit(
      c->d, "vm", "clone", vm->id,
      json_pack("{s:s, s:s, s:s}", "name", vm->name, "source", src->name, "snapshot", snapname));
  vd_call_json(c, 201, json_pack("{s:s, s:s}", "Id", vm->id, "Name", vm->name));
out:
  vs_error_free(e);
  vm_release(c->d->vms, src);
}

/* ---------------------------------------------------------------- stats */

/* utime + stime of a process in nanoseconds, and its resident memory in bytes. */
void vd_proc_usage(pid_t pid, uint64_t *cpu_ns, uint64_t *rss) {
  *cpu_ns = *rss = 0;
  char path[64];
  snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
  _cleanup_free_ char *text = NULL;
  if (vs_read_file(path, 4096, &text, NULL, NULL) < 0)
    return;
  char *p = strrchr(text, ')');
  if (!p)
    return;
  /* after the command name come fields 3...: utime 14, stime 15, rss 24 */
  unsigned long long ut = 0, st = 0, rss_pages = 0;
  int field = 2;
  char *save = NULL;
  for (char *tok = strtok_r(p + 1, " ", &save); tok && field < 24;
       tok = strtok_r(NULL, " ", &save)) {
    field++;
    if (field == 14)
      ut = strtoull(tok, NULL, 10);
    else if (field == 15)
      st = strtoull(tok, NULL, 10);
    else if (field == 24)
      rss_pages = strtoull(tok, NULL, 10);
  }
  long hz = sysconf(_SC_CLK_TCK);
  *cpu_ns = (ut + st) * (1000000000ULL / (uint64_t)(hz > 0 ? hz : 100));
  *rss = rss_pages * (uint64_t)sysconf(_SC_PAGESIZE);
}

/* read_bytes and write_bytes of /proc/PID/io: what the VMM's disks cost the host's storage. */
static void proc_io(pid_t pid, uint64_t *rd, uint64_t *wr) {
  *rd = *wr = 0;
  char path[64];
  snprintf(path, sizeof(path), "/proc/%d/io", (int)pid);
  _cleanup_free_ char *text = NULL;
  if (vs_read_file(path, 4096, &text, NULL, NULL) < 0)
    return;
  const char *r = strstr(text, "\nread_bytes: ");
  const char *w = strstr(text, "\nwrite_bytes: ");
  if (r)
    *rd = strtoull(r + 13, NULL, 10);
  if (w)
    *wr = strtoull(w + 14, NULL, 10);
}

/* The guest's side from the VMM's info (vCPUs and instructions retired, memory, disks, NICs)
 * and the host's side from /proc (CPU time, resident memory, storage I/O of the process). */
/* The balloon's side (the VMM's balloon command): what the guest says it holds and what it gave
 * back; null for a VMM without the device (a VM restored from an older snapshot). */
static json_t *balloon_doc(json_t *b) {
  if (!b)
    return json_null();
  json_t *st = json_object_get(b, "stats");
  return json_pack("{s:O, s:O, s:O, s:O, s:O*, s:O*, s:O*}", "Target", json_object_get(b, "target"),
                   "Inflated", json_object_get(b, "balloon"), "Reported",
                   json_object_get(b, "reported"), "Stats", st, "GuestFree",
                   json_object_get(st, "free_memory"), "GuestAvailable",
                   json_object_get(st, "available"), "Ready", json_object_get(b, "ready"));
}

static json_t *vm_stats_doc(const vd_vm *vm, pid_t pid, json_t *info, json_t *balloon) {
  uint64_t cpu_ns, rss, rd, wr;
  vd_proc_usage(pid, &cpu_ns, &rss);
  proc_io(pid, &rd, &wr);
  json_t *harts = json_object_get(info, "harts");
  uint64_t instret = 0;
  size_t i;
  json_t *h;
  json_array_foreach(harts, i, h) instret +=
      (uint64_t)json_integer_value(json_object_get(h, "instret"));
  json_t *disks = json_array();
  json_array_foreach(json_object_get(info, "disks"), i, h) json_array_append_new(
      disks,
      json_pack("{s:O, s:O, s:O, s:O, s:O, s:O}", "Spec", json_object_get(h, "spec"), "Size",
                json_object_get(h, "size"), "Requests", json_object_get(h, "requests"), "Errors",
                json_object_get(h, "errors"), "ReadBytes", json_object_get(h, "read_bytes"),
                "WriteBytes", json_object_get(h, "write_bytes")));
  json_t *nics = json_array();
  json_array_foreach(json_object_get(info, "nics"), i, h) json_array_append_new(
      nics,
      json_pack("{s:O, s:O, s:O, s:O, s:O, s:O}", "Spec", json_object_get(h, "spec"), "Mac",
                json_object_get(h, "mac"), "RxFrames", json_object_get(h, "rx_frames"), "RxDropped",
                json_object_get(h, "rx_dropped"), "TxFrames", json_object_get(h, "tx_frames"),
                "TxDropped", json_object_get(h, "tx_dropped")));
  char *now = vd_now();
  json_t *doc = json_pack(
      "{s:s, s:s, s:s%, s:{s:I, s:I, s:I}, s:{s:O, s:I, s:o}, s:{s:I, s:I, s:o}, s:{s:o}}", "Id",
      vm->id, "Name", vm->name, "Read", now, strlen(now), "Cpu", "Count",
      (json_int_t)json_array_size(harts), "Instructions", (json_int_t)instret, "HostNs",
      (json_int_t)cpu_ns, "Memory", "Guest",
      json_object_get(json_object_get(info, "memory"), "size"), "HostRss", (json_int_t)rss,
      "Balloon", balloon_doc(balloon), "Disk", "HostReadBytes", (json_int_t)rd, "HostWriteBytes",
      (json_int_t)wr, "Disks", disks, "Net", "Nics", nics);
  free(now);
  return doc;
}

/* One sample of a running VM (worker): NULL with *err when it does not run or its VMM does not
 * answer. */
static json_t *vm_stats_sample(vd_vms *t, vd_vm *vm, vs_error **err) {
  pthread_mutex_lock(&t->lock);
  pid_t pid = vm->removed ? 0 : vm->pid;
  pthread_mutex_unlock(&t->lock);
  if (pid <= 0) {
    vs_error_set(err, EBUSY, "VM %s is not running", vm->name);
    return NULL;
  }
  json_t *info = NULL;
  if (vd_vm_ctl(vm, json_pack("{s:s}", "command", "info"), &info, err) < 0) {
    vs_error_wrap(err, "stats of VM %s", vm->name);
    return NULL;
  }
  json_t *balloon = NULL;
  vs_error *be = NULL;
  vd_vm_ctl(vm, json_pack("{s:s}", "command", "balloon"), &balloon, &be);
  vs_error_free(be);
  json_t *doc = vm_stats_doc(vm, pid, info, balloon);
  json_decref(balloon);
  json_decref(info);
  return doc;
}

/* The single answer (worker): claimed, so that the VM does not stop in between. */
static void vm_stats_once(vd_call *c) {
  vd_vm *vm = vm_claim(c);
  if (!vm)
    return;
  vs_error *e = NULL;
  json_t *doc = vm_stats_sample(c->d->vms, vm, &e);
  if (doc)
    vd_call_json(c, 200, doc);
  else if (e->errnum == EBUSY)
    vd_call_error(c, 409, "%s", e->msg);
  else
    vd_call_error(c, 500, "%s", e->msg);
  vs_error_free(e);
  vm_release(c->d->vms, vm);
}

/* ---- the stream (?stream=1): a timer on the loop, each sample from a worker (the VMM's control
 * socket blocks), one at a time; one JSON object a line until the client leaves or the VM stops */

typedef struct vm_stats_job {
  vd_job job;
  vd_conn *conn;
  vd_vm *vm;
  json_t *doc; /* NULL: the VM stopped (or its VMM does not answer) */
} vm_stats_job;

static void vm_stats_job_run(vd_job *job) {
  vm_stats_job *j = (vm_stats_job *)job;
  vs_error *e = NULL;
  j->doc = vm_stats_sample(job->d->vms, j->vm, &e);
  if (e)
    vs_log_debug("%s", e->msg);
  vs_error_free(e);
}

static void vm_stats_job_done(vd_job *job) {
  vm_stats_job *j = (vm_stats_job *)job;
  vd_conn *c = j->conn;
  c->stats_job = false; /* a closed connection is freed at the next sweep */
  if (!c->dead && c->stream == VD_STREAM_STATS && c->stats_vm == j->vm) {
    if (j->doc) {
      _cleanup_free_ char *text = json_dumps(j->doc, JSON_COMPACT);
      _cleanup_free_ char *line = vs_asprintf("%s\n", text);
      vd_conn_stream_write(c, line, strlen(line));
      vd_conn_flush(c);
    } else {
      vd_conn_stream_end(c);
    }
  }
  json_decref(j->doc);
  free(j);
}

void vd_vm_stats_tick(vd_conn *c) {
  if (c->stats_job || c->out_len - c->out_off >= VD_OUT_HIGH_WATER)
    return; /* the last sample is not back, or the client does not read: skip this second */
  vm_stats_job *j = vs_malloc0(sizeof(*j));
  j->job.d = c->d;
  j->job.run = vm_stats_job_run;
  j->job.done = vm_stats_job_done;
  j->conn = c;
  j->vm = c->stats_vm;
  c->stats_job = true;
  vd_job_submit(c->d, &j->job);
}

/* GET /vessel/v1/vms/{}/stats (loop): the stream stays here, the single answer goes to a worker. */
void vd_h_vm_stats(vd_call *c) {
  if (!http_query_bool(c->req->query, "stream", false)) {
    vd_call_defer(c, vm_stats_once);
    return;
  }
  vd_vms *t = c->d->vms;
  pthread_mutex_lock(&t->lock);
  vd_vm *vm = vd_vm_find_locked(t, c->arg);
  bool running = vm && vm->pid > 0;
  pthread_mutex_unlock(&t->lock);
  if (!vm) {
    vd_call_error(c, 404, "No such VM: %s", c->arg);
    return;
  }
  if (!running) {
    vd_call_error(c, 409, "VM %s is not running", vm->name);
    return;
  }
  struct itimerspec its = {.it_value = {.tv_sec = 1}, .it_interval = {.tv_sec = 1}};
  if (vd_stats_stream_arm(c, &its, "VM stats") < 0)
    return;
  vd_conn *conn = c->conn;
  conn->stats_vm = vm;
  vd_conn_stream_begin(conn, 200, "application/json");
  vd_vm_stats_tick(conn); /* the first sample now */
}

/* ---------------------------------------------------------------- update */

/* {"MemoryTarget": SIZE, "RestartPolicy": NAME}: the balloon's target (what the guest keeps of
 * its RAM; its Memory empties the balloon) and the restart policy, both kept in the record. */
void vd_h_vm_update(vd_call *c) {
  json_t *body = vd_call_body_object(c);
  if (!body)
    return;
  static const char *const known[] = {"MemoryTarget", "RestartPolicy"};
  vs_error *e = NULL;
  uint64_t target = 0;
  const char *policy = NULL;
  json_t *rp = NULL;
  if (vd_body_known_fields(body, known, ARRAY_SIZE(known), "a VM update", &e) == 0 &&
      vd_body_size(body, "MemoryTarget", 0, &target, &e) == 0 &&
      vs_json_get_string(body, "RestartPolicy", false, &policy, &e) == 0 && policy) {
    const char *name;
    int64_t max;
    rp = json_pack("{s:s}", "Name", policy);
    if (vd_restart_policy_check(rp, &name, &max, &e) < 0)
      vs_error_wrap(&e, "RestartPolicy");
  }
  if (e) {
    vd_call_error(c, 400, "%s", e->msg);
    vs_error_free(e);
    json_decref(rp);
    json_decref(body);
    return;
  }
  vd_vm *vm = vm_claim(c);
  if (!vm) {
    json_decref(rp);
    json_decref(body);
    return;
  }
  uint64_t mem =
      (uint64_t)json_integer_value(json_object_get(json_object_get(vm->rec, "Config"), "Memory"));
  if (target && (target > mem || target < (16ULL << 20)))
    vd_call_error(c, 400, "MemoryTarget %llu: between 16 MiB and the VM's memory (%llu)",
                  (unsigned long long)target, (unsigned long long)mem);
  else {
    int r = 0;
    if (policy) {
      pthread_mutex_lock(&c->d->vms->lock);
      json_object_set_new(json_object_get(vm->rec, "Config"), "RestartPolicy", json_string(policy));
      r = vd_vm_save(vm, &e);
      pthread_mutex_unlock(&c->d->vms->lock);
    }
    if (r == 0 && target)
      r = vd_vm_set_memory_target(c->d->vms, vm, target, &e);
    if (r < 0)
      vd_call_error(c, 500, "update VM %s: %s", vm->name, e->msg);
    else {
      vd_event_emit(c->d, "vm", "update", vm->id, vd_vm_event_attrs(vm));
      vd_call_status(c, 204);
    }
  }
  vs_error_free(e);
  json_decref(rp);
  json_decref(body);
  vm_release(c->d->vms, vm);
}

/* ---------------------------------------------------------------- VM images */

void vd_h_vm_images_list(vd_call *c) {
  vs_error *e = NULL;
  json_t *a = vd_vm_images_list(c->d, &e);
  if (!a) {
    vd_call_fail(c, e);
    vs_error_free(e);
    return;
  }
  vd_call_json(c, 200, a);
}

/* {"Vm": NAME, "Ref": REF}: the stopped VM's machine becomes the image REF, pushed to its
 * registry. */
/* Push a stored image (its manifest and blobs, as they are) to dest's registry, tagging it dest
 * in the store too. */
static void push_stored_image(vd_call *c, const char *src, const char *dest) {
  vs_error *e = NULL;
  vs_store *s = c->d->vms->images;
  vs_image_ref r;
  char *full_src = NULL, *full_dest = NULL;
  vs_image img;
  if (vs_image_ref_parse(src, &r, &e) == 0) {
    full_src = vs_image_ref_string(&r);
    vs_image_ref_clear(&r);
  }
  if (full_src && vs_image_ref_parse(dest, &r, &e) == 0) {
    full_dest = vs_image_ref_string(&r);
    vs_image_ref_clear(&r);
  }
  vs_registry_opts o = {.tls_verify = 1, .quiet = true};
  if (!full_src || !full_dest)
    vd_call_error(c, 400, "invalid reference format: %s", e->msg);
  else if (vs_store_resolve(s, full_src, &img, &e) < 0)
    vd_call_error(c, 404, "no VM image %s in the store: %s", src, e->msg);
  else {
    char digest[VS_DIGEST_MAX];
    snprintf(digest, sizeof(digest), "%s", img.manifest_digest);
    vs_image_clear(&img);
    if (strcmp(full_src, full_dest) != 0 && vs_store_tag_set(s, full_dest, digest, &e) < 0)
      vd_call_fail(c, e);
    else if (vs_image_push(s, full_dest, full_dest, &o, NULL, NULL, &e) < 0)
      vd_call_error(c, 500, "push %s: %s", full_dest, e->msg);
    else
      vd_call_json(c, 200, json_pack("{s:s, s:s}", "Ref", full_dest, "Digest", digest));
  }
  vs_error_free(e);
  free(full_src);
  free(full_dest);
}

void vd_h_vm_image_push(vd_call *c) {
  json_t *body = vd_call_body_object(c);
  if (!body)
    return;
  static const char *const known[] = {"Vm", "Image", "Ref"};
  const char *vmname = NULL, *image = NULL, *ref = NULL;
  vs_error *e = NULL;
  if (vd_body_known_fields(body, known, ARRAY_SIZE(known), "a VM image push", &e) < 0 ||
      vs_json_get_string(body, "Vm", false, &vmname, &e) < 0 ||
      vs_json_get_string(body, "Image", false, &image, &e) < 0 ||
      vs_json_get_string(body, "Ref", true, &ref, &e) < 0) {
    vd_call_error(c, 400, "%s", e->msg);
    vs_error_free(e);
    json_decref(body);
    return;
  }
  if (!vmname == !image) {
    vd_call_error(c, 400,
                  "a VM image push names either a Vm (committed, then pushed) or an "
                  "Image of the store");
    json_decref(body);
    return;
  }
  if (image) {
    _cleanup_free_ char *src = vs_strdup(image), *dest = vs_strdup(ref);
    json_decref(body);
    push_stored_image(c, src, dest);
    return;
  }
  free(c->arg);
  c->arg = vs_strdup(vmname);
  _cleanup_free_ char *r = vs_strdup(ref);
  json_decref(body);
  vd_vm *vm = vm_claim(c);
  if (!vm)
    return;
  _cleanup_free_ char *full = NULL;
  char digest[VS_DIGEST_MAX];
  vs_registry_opts o = {.tls_verify = 1, .quiet = true};
  if (vd_vm_running(c->d->vms, vm))
    vd_call_error(c, 409, "VM %s is running: stop it first (its disk must hold still)", vm->name);
  else if (vd_vm_image_commit(c->d, vm, r, &full, digest, &e) < 0)
    vd_call_fail(c, e);
  else if (vs_image_push(c->d->vms->images, full, full, &o, NULL, NULL, &e) < 0)
    vd_call_error(c, 500, "push %s: %s", full, e->msg);
  else {
    vd_event_emit(c->d, "vm", "push", vm->id,
                  json_pack("{s:s, s:s}", "name", vm->name, "image", full));
    vd_call_json(c, 200, json_pack("{s:s, s:s}", "Ref", full, "Digest", digest));
  }
  vs_error_free(e);
  vm_release(c->d->vms, vm);
}

void vd_h_vm_image_import(vd_call *c) {
  json_t *body = vd_call_body_object(c);
  if (!body)
    return;
  vs_error *e = NULL;
  char *full = NULL;
  char digest[VS_DIGEST_MAX];
  if (vd_vm_image_import(c->d, body, &full, digest, &e) < 0)
    vd_call_fail(c, e);
  else
    vd_call_json(c, 201, json_pack("{s:s, s:s}", "Ref", full, "Digest", digest));
  vs_error_free(e);
  free(full);
  json_decref(body);
  vd_cluster_images_kick(c->d); /* the cluster's record of this node's images */
}
