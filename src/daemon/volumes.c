/* Volumes, local driver: <data-root>/volumes/<name>/_data, described by
 * <data-root>/volumes/<name>/volume.json (replaced atomically, like every record). A volume a
 * container names in -v NAME:/path or --mount type=volume is made on first use, as docker
 * does; `-v /path`, a volume mount without a source and the image's VOLUMEs make anonymous
 * ones (64 hex digits). An empty volume is filled from the image at every start of a container
 * that mounts it (unless nocopy), and anonymous volumes go with their container on rm -v and
 * --rm, as with dockerd. */
#include "daemon/internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>

#define VOLUME_RECORD_MAX (1U << 16)

bool vd_volume_name_valid(const char *n) {
  size_t len = strlen(n);
  if (len < 2 || len > 255)
    return false;
  for (size_t i = 0; i < len; i++) {
    char ch = n[i];
    bool alnum = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9');
    if (!alnum && (i == 0 || (ch != '_' && ch != '.' && ch != '-')))
      return false;
  }
  return true;
}

static char *volume_dir(vd_daemon *d, const char *name) {
  return vs_asprintf("%s/volumes/%s", d->data_root, name);
}

static json_t *volume_load(vd_daemon *d, const char *name) {
  if (!vd_volume_name_valid(name))
    return NULL;
  _cleanup_free_ char *dir = volume_dir(d, name);
  _cleanup_free_ char *path = vs_asprintf("%s/volume.json", dir);
  json_t *v = vs_json_load_file(path, VOLUME_RECORD_MAX, NULL);
  if (v)
    json_object_set_new(v, "Mountpoint", json_sprintf("%s/_data", dir));
  return v;
}

/* The volume, made when missing; *created says whether it was. */
json_t *vd_volume_ensure(vd_daemon *d, const char *name, json_t *labels, json_t *opts,
                         bool *created, vs_error **err) {
  if (created)
    *created = false;
  if (!vd_volume_name_valid(name)) {
    vs_error_set(err, EINVAL,
                 "create %s: \"%s\" includes invalid characters for a local volume name, only "
                 "\"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed",
                 name, name);
    return NULL;
  }
  pthread_mutex_lock(&d->volume_lock);
  json_t *v = volume_load(d, name);
  if (!v) {
    _cleanup_free_ char *dir = volume_dir(d, name);
    _cleanup_free_ char *data = vs_asprintf("%s/_data", dir);
    _cleanup_free_ char *path = vs_asprintf("%s/volume.json", dir);
    _cleanup_free_ char *now = vd_now();
    /* a volume made for a container (named on first use, or anonymous) has null Labels and
     * Options, one made by `volume create` what the client sent, as with dockerd 20.10 */
    json_t *rec = json_pack("{s:s, s:s, s:s, s:s, s:o, s:o}", "Name", name, "Driver", "local",
                            "Scope", "local", "CreatedAt", now, "Labels",
                            json_is_object(labels) ? json_incref(labels) : json_null(), "Options",
                            json_is_object(opts) ? json_incref(opts) : json_null());
    if (vs_mkdir_p(data, 0755, err) == 0 && vs_json_write_file(path, rec, 0600, err) == 0) {
      v = volume_load(d, name);
      if (created)
        *created = true;
      vd_event_emit(d, "volume", "create", name, json_pack("{s:s}", "driver", "local"));
    }
    json_decref(rec);
  }
  pthread_mutex_unlock(&d->volume_lock);
  if (!v && err && !*err)
    vs_error_set(err, EIO, "volume %s could not be read back", name);
  return v;
}

/* Names of the containers whose HostConfig uses the volume. */
static json_t *volume_users(vd_daemon *d, const char *name) {
  json_t *users = json_array();
  pthread_mutex_lock(&d->lock);
  for (size_t i = 0; i < d->n_ctrs; i++) {
    json_t *hc = json_object_get(d->ctrs[i]->rec, "HostConfig");
    bool uses = false;
    size_t k;
    json_t *v;
    json_array_foreach(json_object_get(hc, "Binds"), k, v) {
      const char *b = json_string_value(v);
      size_t n = strlen(name);
      if (b && !strncmp(b, name, n) && b[n] == ':')
        uses = true;
    }
    json_array_foreach(json_object_get(hc, "Mounts"), k, v) {
      const char *t = json_string_value(json_object_get(v, "Type"));
      const char *s = json_string_value(json_object_get(v, "Source"));
      if (t && s && !strcmp(t, "volume") && !strcmp(s, name))
        uses = true;
    }
    json_array_foreach(json_object_get(d->ctrs[i]->rec, "MountPoints"), k, v) {
      const char *n = json_string_value(json_object_get(v, "Name"));
      if (n && !strcmp(n, name))
        uses = true;
    }
    if (uses)
      json_array_append_new(users, json_string(d->ctrs[i]->id));
  }
  pthread_mutex_unlock(&d->lock);
  return users;
}

/* Every value of a filter key matches (label, label!) or any does (name, driver, dangling). */
static bool volume_matches(vd_daemon *d, json_t *filters, json_t *v) {
  if (!filters)
    return true;
  const char *name = json_string_value(json_object_get(v, "Name"));
  json_t *labels = json_object_get(v, "Labels");
  size_t i;
  json_t *w;
  _cleanup_json_ json_t *want_labels = vd_filter_values(filters, "label");
  json_array_foreach(want_labels, i, w) {
    if (!vd_label_match(labels, json_string_value(w)))
      return false;
  }
  _cleanup_json_ json_t *not_labels = vd_filter_values(filters, "label!");
  json_array_foreach(not_labels, i, w) {
    if (vd_label_match(labels, json_string_value(w)))
      return false;
  }
  _cleanup_json_ json_t *names = vd_filter_values(filters, "name");
  bool any = json_array_size(names) == 0;
  json_array_foreach(names, i, w) any = any || strstr(name, json_string_value(w));
  if (!any)
    return false;
  _cleanup_json_ json_t *drivers = vd_filter_values(filters, "driver");
  any = json_array_size(drivers) == 0;
  json_array_foreach(drivers, i, w) any = any || !strcmp(json_string_value(w), "local");
  if (!any)
    return false;
  _cleanup_json_ json_t *dangling = vd_filter_values(filters, "dangling");
  if (json_array_size(dangling)) {
    const char *want = json_string_value(json_array_get(dangling, 0));
    bool want_dangling = !strcmp(want, "true") || !strcmp(want, "1");
    _cleanup_json_ json_t *users = volume_users(d, name);
    if ((json_array_size(users) == 0) != want_dangling)
      return false;
  }
  return true;
}

void vd_h_volumes_list(vd_call *c) {
  vd_daemon *d = c->d;
  static const char *const known[] = {"name", "driver", "label", "dangling"};
  _cleanup_json_ json_t *filters = NULL;
  if (vd_call_filters(c, known, ARRAY_SIZE(known), &filters) < 0)
    return;
  _cleanup_json_ json_t *dangling = vd_filter_values(filters, "dangling");
  size_t i;
  json_t *w;
  json_array_foreach(dangling, i, w) {
    const char *v = json_string_value(w);
    bool known_value =
        v && (!strcmp(v, "true") || !strcmp(v, "1") || !strcmp(v, "false") || !strcmp(v, "0"));
    if (!known_value) {
      vd_call_error(c, 400, "invalid filter 'dangling=%s'", v ? v : "");
      return;
    }
  }
  _cleanup_free_ char *dir = vs_asprintf("%s/volumes", d->data_root);
  json_t *out = json_array();
  DIR *dh = opendir(dir);
  if (dh) {
    struct dirent *de;
    while ((de = readdir(dh))) {
      json_t *v = de->d_name[0] == '.' ? NULL : volume_load(d, de->d_name);
      if (v && volume_matches(d, filters, v))
        json_array_append_new(out, v);
      else
        json_decref(v);
    }
    closedir(dh);
  }
  vd_call_json(c, 200, json_pack("{s:o, s:[]}", "Volumes", out, "Warnings"));
}

void vd_h_volume_create(vd_call *c) {
  _cleanup_json_ json_t *body = c->body_len ? vd_call_body_object(c) : json_object();
  if (!body)
    return;
  const char *name = NULL, *driver = NULL;
  json_t *labels = NULL, *opts = NULL;
  vs_error *e = NULL;
  if (vs_json_get_string(body, "Name", false, &name, &e) < 0 ||
      vs_json_get_string(body, "Driver", false, &driver, &e) < 0 ||
      vs_json_get_object(body, "Labels", false, &labels, &e) < 0 ||
      vs_json_get_object(body, "DriverOpts", false, &opts, &e) < 0) {
    vd_call_error(c, 400, "%s", e->msg);
    vs_error_free(e);
    return;
  }
  if (driver && *driver && strcmp(driver, "local") != 0) {
    vd_call_error(c, 400, "volume driver %s: only the local driver is available", driver);
    return;
  }
  if (json_object_size(opts)) {
    vd_call_error(c, 400, "DriverOpts: options of the local driver are not supported yet");
    return;
  }
  _cleanup_free_ char *rnd = name && *name ? NULL : vd_random_id();
  json_t *v = vd_volume_ensure(c->d, rnd ? rnd : name, labels, opts, NULL, &e);
  if (!v) {
    vd_call_fail(c, e);
    vs_error_free(e);
    return;
  }
  vd_call_json(c, 201, v);
}

void vd_h_volume_inspect(vd_call *c) {
  json_t *v = volume_load(c->d, c->arg);
  if (!v)
    vd_call_error(c, 404, "get %s: no such volume", c->arg);
  else
    vd_call_json(c, 200, v);
}

static int volume_remove(vd_daemon *d, const char *name, vs_error **err) {
  _cleanup_free_ char *dir = volume_dir(d, name);
  pthread_mutex_lock(&d->volume_lock);
  int r = vs_rm_rf(dir, err);
  pthread_mutex_unlock(&d->volume_lock);
  if (r == 0)
    vd_event_emit(d, "volume", "destroy", name, json_pack("{s:s}", "driver", "local"));
  return r;
}

void vd_h_volume_delete(vd_call *c) {
  _cleanup_json_ json_t *v = volume_load(c->d, c->arg);
  if (!v) {
    if (http_query_bool(c->req->query, "force", false))
      vd_call_status(c, 204);
    else
      vd_call_error(c, 404, "get %s: no such volume", c->arg);
    return;
  }
  _cleanup_json_ json_t *users = volume_users(c->d, c->arg);
  if (json_array_size(users)) {
    vd_call_error(c, 409, "remove %s: volume is in use - [%s]", c->arg,
                  json_string_value(json_array_get(users, 0)));
    return;
  }
  vs_error *e = NULL;
  if (volume_remove(c->d, c->arg, &e) < 0) {
    vd_call_fail(c, e);
    vs_error_free(e);
    return;
  }
  vd_call_status(c, 204);
}

/* 20.10's prune: every volume no container uses (newer dockerd only anonymous ones unless
 * all=true, a filter 20.10 does not know), narrowed by label and label! filters. */
void vd_h_volumes_prune(vd_call *c) {
  vd_daemon *d = c->d;
  static const char *const known[] = {"label", "label!"};
  _cleanup_json_ json_t *filters = NULL;
  if (vd_call_filters(c, known, ARRAY_SIZE(known), &filters) < 0)
    return;
  _cleanup_free_ char *dir = vs_asprintf("%s/volumes", d->data_root);
  json_t *deleted = json_array();
  DIR *dh = opendir(dir);
  if (dh) {
    struct dirent *de;
    while ((de = readdir(dh))) {
      if (de->d_name[0] == '.' || !vd_volume_name_valid(de->d_name))
        continue;
      _cleanup_json_ json_t *v = volume_load(d, de->d_name);
      if (!v || !volume_matches(d, filters, v))
        continue;
      _cleanup_json_ json_t *users = volume_users(d, de->d_name);
      if (json_array_size(users))
        continue;
      vs_error *e = NULL;
      if (volume_remove(d, de->d_name, &e) == 0)
        json_array_append_new(deleted, json_string(de->d_name));
      vs_error_free(e);
    }
    closedir(dh);
  }
  vd_call_json(c, 200, json_pack("{s:o, s:i}", "VolumesDeleted", deleted, "SpaceReclaimed", 0));
}

void vd_volumes_release(vd_daemon *d, json_t *points, const char *id) {
  size_t i;
  json_t *p;
  json_array_foreach(points, i, p) {
    const char *name = json_string_value(json_object_get(p, "Name"));
    if (!name || !json_is_true(json_object_get(p, "Anonymous")) || !vd_volume_name_valid(name))
      continue;
    _cleanup_json_ json_t *users = volume_users(d, name);
    size_t k;
    json_t *u;
    bool others = false;
    json_array_foreach(users, k, u) others = others || strcmp(json_string_value(u), id) != 0;
    vs_error *e = NULL;
    if (!others && volume_remove(d, name, &e) < 0) {
      vs_log_warn("remove volume %s: %s", name, e->msg);
      vs_error_free(e);
    }
  }
}

static bool dir_empty(int fd) {
  int dup_fd = dup(fd);
  DIR *dh = dup_fd >= 0 ? fdopendir(dup_fd) : NULL;
  if (!dh) {
    if (dup_fd >= 0)
      close(dup_fd);
    return false;
  }
  struct dirent *de;
  bool empty = true;
  while (empty && (de = readdir(dh)))
    empty = !strcmp(de->d_name, ".") || !strcmp(de->d_name, "..");
  closedir(dh);
  return empty;
}

/* What the root has at dst into the volume directory at data, when that is empty; the volume's
 * top directory takes the owner and mode of the image's (as dockerd's copy does). */
static int copy_up_one(int rootfd, const char *dst, const char *data, vs_error **err) {
  _cleanup_close_ int from =
      vs_openat_in_root(rootfd, dst, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0, NULL);
  if (from < 0)
    return 0; /* nothing there (or not a directory): the runtime makes the mount point */
  _cleanup_close_ int to = open(data, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (to < 0)
    return vs_error_set(err, errno, "open %s", data);
  if (!dir_empty(to))
    return 0;
  struct stat st;
  if (fstat(from, &st) < 0)
    return vs_error_set(err, errno, "stat %s", dst);
  if (ctr_copy_tree(from, to, err) < 0)
    return vs_error_wrap(err, "copy %s into the volume", dst);
  if (fchown(to, st.st_uid, st.st_gid) < 0 || fchmod(to, st.st_mode & 07777) < 0)
    return vs_error_set(err, errno, "set the owner and mode of %s", data);
  return 0;
}

int vd_volumes_copy_up(vd_daemon *d, vd_container *c, vs_error **err) {
  pthread_mutex_lock(&d->lock);
  _cleanup_json_ json_t *points = json_deep_copy(json_object_get(c->rec, "MountPoints"));
  pthread_mutex_unlock(&d->lock);
  _cleanup_free_ char *rootfs = vs_asprintf("%s/rootfs", c->dir);
  _cleanup_close_ int rootfd = -1;
  size_t i;
  json_t *p;
  json_array_foreach(points, i, p) {
    const char *type = json_string_value(json_object_get(p, "Type"));
    const char *name = json_string_value(json_object_get(p, "Name"));
    const char *dst = json_string_value(json_object_get(p, "Destination"));
    if (!type || strcmp(type, "volume") != 0 || !name || !dst ||
        !json_is_true(json_object_get(p, "CopyData")) || !vd_volume_name_valid(name))
      continue;
    if (rootfd < 0)
      rootfd = open(rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (rootfd < 0)
      return vs_error_set(err, errno, "open %s", rootfs);
    _cleanup_free_ char *dir = volume_dir(d, name);
    _cleanup_free_ char *data = vs_asprintf("%s/_data", dir);
    pthread_mutex_lock(&d->volume_lock);
    int r = copy_up_one(rootfd, dst, data, err);
    pthread_mutex_unlock(&d->volume_lock);
    if (r < 0)
      return vs_error_wrap(err, "volume %s", name);
  }
  return 0;
}

json_t *vd_volumes_usage(vd_daemon *d) {
  _cleanup_free_ char *dir = vs_asprintf("%s/volumes", d->data_root);
  json_t *out = json_array();
  DIR *dh = opendir(dir);
  if (!dh)
    return out;
  struct dirent *de;
  while ((de = readdir(dh))) {
    json_t *v = de->d_name[0] == '.' ? NULL : volume_load(d, de->d_name);
    if (!v)
      continue;
    _cleanup_json_ json_t *users = volume_users(d, de->d_name);
    const char *mp = json_string_value(json_object_get(v, "Mountpoint"));
    json_object_set_new(v, "UsageData",
                        json_pack("{s:I, s:I}", "Size", (json_int_t)vs_img_du(mp), "RefCount",
                                  (json_int_t)json_array_size(users)));
    json_array_append_new(out, v);
  }
  closedir(dh);
  return out;
}
