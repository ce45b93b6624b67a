/* Image endpoints on vessel's image store: list, inspect, load, tag, remove.
 *
 * Docker's image ID is the digest of the image's config; the store tags manifests, so every
 * answer goes from tags to manifests to configs. All store calls hold d->store_lock: the store
 * object is not shared between threads otherwise. */
#include "daemon/internal.h"

#include <errno.h>
#include <string.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>

/* Seconds since the epoch of an RFC 3339 time ("2024-01-01T00:00:00Z"), 0 if unreadable. */
static long long unix_time(const char *t) {
  struct tm tm = {0};
  if (!t || !strptime(t, "%Y-%m-%dT%H:%M:%S", &tm))
    return 0;
  return (long long)timegm(&tm);
}

/* RepoTags and RepoDigests of one manifest digest, from the tags object. */
static void image_names(json_t *tags, const char *manifest_digest, json_t *repo_tags,
                        json_t *repo_digests) {
  const char *key;
  json_t *val;
  json_object_foreach(tags, key, val) {
    if (!json_is_string(val) || strcmp(json_string_value(val), manifest_digest) != 0)
      continue;
    _cleanup_free_ char *fam = vs_image_name_familiar(key);
    json_array_append_new(strchr(key, '@') ? repo_digests : repo_tags, json_string(fam));
  }
}

static json_t *image_summary(const vs_image *img, json_t *tags) {
  json_t *repo_tags = json_array(), *repo_digests = json_array();
  image_names(tags, img->manifest_digest, repo_tags, repo_digests);
  json_t *cfg = json_object_get(img->config.root, "config");
  json_t *labels = json_object_get(cfg, "Labels");
  json_int_t size = (json_int_t)vs_image_size(img);
  return json_pack(
      "{s:s, s:s, s:o, s:o, s:I, s:I, s:I, s:I, s:O, s:i}", "Id", img->manifest.config.digest,
      "ParentId", "", "RepoTags", repo_tags, "RepoDigests", repo_digests, "Created",
      (json_int_t)unix_time(img->config.created), "Size", size, "VirtualSize", size, "SharedSize",
      (json_int_t)-1, "Labels", json_is_object(labels) ? labels : json_null(), "Containers", -1);
}

int vd_call_image_ref(vd_call *c, const char *repo, const char *tag, char **full) {
  *full = NULL;
  if (!repo || !*repo)
    return 0;
  /* repo may carry the tag itself ("name:v1"); a missing one is "latest" */
  _cleanup_free_ char *ref = tag && *tag ? vs_asprintf("%s:%s", repo, tag) : vs_strdup(repo);
  vs_image_ref r;
  vs_error *e = NULL;
  if (vs_image_ref_parse(ref, &r, &e) < 0) {
    vd_call_error(c, 400, "invalid reference format: %s", e->msg);
    vs_error_free(e);
    return -1;
  }
  *full = vs_image_ref_string(&r);
  vs_image_ref_clear(&r);
  return 0;
}

void vd_h_images_list(vd_call *c) {
  vd_daemon *d = c->d;
  vs_error *e = NULL;
  pthread_mutex_lock(&d->store_lock);
  json_t *tags = vs_store_tags(d->store, &e);
  json_t *out = json_array(), *seen = json_object();
  const char *key;
  json_t *val;
  json_object_foreach(tags, key, val) {
    const char *md = json_string_value(val);
    if (!md || json_object_get(seen, md))
      continue;
    json_object_set_new(seen, md, json_true());
    vs_image img;
    if (vs_store_load_image(d->store, md, &img, NULL) < 0)
      continue; /* a tag whose manifest is gone is skipped, as a dangling reference */
    json_array_append_new(out, image_summary(&img, tags));
    vs_image_clear(&img);
  }
  pthread_mutex_unlock(&d->store_lock);
  json_decref(seen);
  json_decref(tags);
  if (e) {
    json_decref(out);
    vd_call_fail(c, e);
    vs_error_free(e);
    return;
  }
  vd_call_json(c, 200, out);
}

/* Resolve a name users type; answers 404 "No such image" itself. */
static bool resolve_image(vd_call *c, const char *name, vs_image *img) {
  vs_error *e = NULL;
  if (vs_store_resolve(c->d->store, name, img, &e) == 0)
    return true;
  if (e && e->errnum == ENOENT)
    vd_call_error(c, 404, "No such image: %s", name);
  else
    vd_call_fail(c, e);
  vs_error_free(e);
  return false;
}

static json_t *image_inspect(const vs_image *img, json_t *tags) {
  json_t *repo_tags = json_array(), *repo_digests = json_array();
  image_names(tags, img->manifest_digest, repo_tags, repo_digests);
  json_t *root = img->config.root;
  json_t *cfg = json_object_get(root, "config");
  json_t *layers = json_array();
  for (size_t i = 0; i < img->config.n_diff_ids; i++)
    json_array_append_new(layers, json_string(img->config.diff_ids[i]));
  const char *author = json_string_value(json_object_get(root, "author"));
  const char *comment = json_string_value(json_object_get(root, "comment"));
  json_int_t size = (json_int_t)vs_image_size(img);
  return json_pack("{s:s, s:o, s:o, s:s, s:s, s:s, s:s, s:{}, s:s, s:s, s:O, s:s, s:s, s:I, s:I, "
                   "s:{s:n, s:s}, s:{s:s, s:o}, s:{s:s}}",
                   "Id", img->manifest.config.digest, "RepoTags", repo_tags, "RepoDigests",
                   repo_digests, "Parent", "", "Comment", comment ? comment : "", "Created",
                   img->config.created ? img->config.created : "", "Container", "",
                   "ContainerConfig", "DockerVersion", "", "Author", author ? author : "", "Config",
                   json_is_object(cfg) ? cfg : json_null(), "Architecture",
                   img->config.arch ? img->config.arch : "", "Os",
                   img->config.os ? img->config.os : "", "Size", size, "VirtualSize", size,
                   "GraphDriver", "Data", "Name", "overlay", "RootFS", "Type", "layers", "Layers",
                   layers, "Metadata", "LastTagTime", "0001-01-01T00:00:00Z");
}

void vd_h_image_inspect(vd_call *c) {
  vd_daemon *d = c->d;
  vs_image img;
  pthread_mutex_lock(&d->store_lock);
  if (resolve_image(c, c->arg, &img)) {
    json_t *tags = vs_store_tags(d->store, NULL);
    vd_call_json(c, 200, image_inspect(&img, tags));
    json_decref(tags);
    vs_image_clear(&img);
  }
  pthread_mutex_unlock(&d->store_lock);
}

/* docker load: the archive was spooled to a file while it arrived. */
void vd_h_image_load(vd_call *c) {
  vd_daemon *d = c->d;
  if (c->body_fd < 0) {
    vd_call_error(c, 400, "request body is empty: an image archive was expected");
    return;
  }
  vs_error *e = NULL;
  json_t *names = NULL;
  pthread_mutex_lock(&d->store_lock);
  int r = vs_image_load(d->store, c->body_path, NULL, &names, &e);
  pthread_mutex_unlock(&d->store_lock);
  if (r < 0) {
    /* a broken archive is the client's fault */
    vd_call_error(c, e->errnum == ENOMEM || e->errnum == ENOSPC ? 500 : 400, "%s", e->msg);
    vs_error_free(e);
    return;
  }
  _cleanup_free_ char *text = vs_strdup("");
  size_t i;
  json_t *v;
  json_array_foreach(names, i, v) {
    _cleanup_free_ char *fam = vs_image_name_familiar(json_string_value(v));
    _cleanup_free_ char *msg = vs_asprintf("Loaded image: %s\n", fam);
    vd_event_emit(d, "image", "load", fam, json_pack("{s:s}", "name", fam));
    _cleanup_json_ json_t *line = json_pack("{s:s}", "stream", msg);
    _cleanup_free_ char *ls = json_dumps(line, JSON_COMPACT);
    char *next = vs_asprintf("%s%s\n", text, ls);
    free(text);
    text = next;
  }
  json_decref(names);
  c->status = 200;
  c->text = steal_pointer(&text);
  c->content_type = "application/json";
}

/* "repo" + "tag" query values as a full reference ("docker.io/library/x:latest"). */
static char *target_name(vd_call *c, vs_error **err) {
  _cleanup_free_ char *repo = http_query_get(c->req->query, "repo");
  _cleanup_free_ char *tag = http_query_get(c->req->query, "tag");
  if (!repo || !*repo) {
    vs_error_set(err, EINVAL, "repository name must have at least one component");
    return NULL;
  }
  _cleanup_free_ char *ref = vs_asprintf("%s:%s", repo, tag && *tag ? tag : "latest");
  vs_image_ref r;
  if (vs_image_ref_parse(ref, &r, err) < 0) {
    vs_error_wrap(err, "invalid reference format");
    if (*err)
      (*err)->errnum = EINVAL;
    return NULL;
  }
  char *full = vs_image_ref_string(&r);
  vs_image_ref_clear(&r);
  return full;
}

void vd_h_image_tag(vd_call *c) {
  vd_daemon *d = c->d;
  vs_error *e = NULL;
  _cleanup_free_ char *full = target_name(c, &e);
  if (!full) {
    vd_call_fail(c, e);
    vs_error_free(e);
    return;
  }
  vs_image img;
  pthread_mutex_lock(&d->store_lock);
  if (resolve_image(c, c->arg, &img)) {
    if (vs_store_tag_set(d->store, full, img.manifest_digest, &e) < 0) {
      vd_call_fail(c, e);
    } else {
      _cleanup_free_ char *fam = vs_image_name_familiar(full);
      vd_event_emit(d, "image", "tag", img.manifest.config.digest, json_pack("{s:s}", "name", fam));
      vd_call_status(c, 201);
    }
    vs_image_clear(&img);
  }
  pthread_mutex_unlock(&d->store_lock);
  vs_error_free(e);
}

/* A container (other than one being removed) made from this manifest, or NULL. */
static char *container_using(vd_daemon *d, const char *manifest_digest) {
  char *found = NULL;
  pthread_mutex_lock(&d->lock);
  for (size_t i = 0; i < d->n_ctrs && !found; i++) {
    const char *md = json_string_value(json_object_get(d->ctrs[i]->rec, "ImageManifest"));
    if (md && !strcmp(md, manifest_digest) && !d->ctrs[i]->removing)
      found = vs_img_strndup(d->ctrs[i]->id, 12);
  }
  pthread_mutex_unlock(&d->lock);
  return found;
}

/* The full tag name when `name` is a tag of the store, else NULL. */
static char *tag_of(json_t *tags, const char *name) {
  vs_image_ref r;
  if (vs_image_ref_parse(name, &r, NULL) < 0)
    return NULL;
  char *full = vs_image_ref_string(&r);
  vs_image_ref_clear(&r);
  if (!json_object_get(tags, full)) {
    free(full);
    return NULL;
  }
  return full;
}

/* Remove the tags in `names` and, when no tag is left, the image's data (garbage collection). */
static void untag_and_collect(vd_call *c, json_t *names, const vs_image *img, json_t *out) {
  vd_daemon *d = c->d;
  vs_error *e = NULL;
  size_t i;
  json_t *v;
  json_array_foreach(names, i, v) {
    if (vs_store_tag_remove(d->store, json_string_value(v), &e) < 0) {
      vd_call_fail(c, e);
      vs_error_free(e);
      json_decref(out);
      return;
    }
    _cleanup_free_ char *fam = vs_image_name_familiar(json_string_value(v));
    json_array_append_new(out, json_pack("{s:s}", "Untagged", fam));
    vd_event_emit(d, "image", "untag", img->manifest.config.digest,
                  json_pack("{s:s}", "name", fam));
  }
  json_t *tags = vs_store_tags(d->store, NULL);
  bool still_tagged = false;
  const char *key;
  json_t *val;
  json_object_foreach(tags, key, val) if (json_is_string(val) &&
                                          !strcmp(json_string_value(val), img->manifest_digest))
      still_tagged = true;
  json_decref(tags);
  if (!still_tagged) {
    if (vs_store_gc(d->store, NULL, &e) < 0) {
      vs_log_warn("image removal: %s", e->msg);
      vs_error_free(e);
    }
    json_array_append_new(out, json_pack("{s:s}", "Deleted", img->manifest.config.digest));
    vd_event_emit(d, "image", "delete", img->manifest.config.digest, NULL);
  }
  vd_call_json(c, 200, out);
}

void vd_h_image_delete(vd_call *c) {
  vd_daemon *d = c->d;
  bool force = http_query_bool(c->req->query, "force", false);
  vs_image img;
  pthread_mutex_lock(&d->store_lock);
  if (!resolve_image(c, c->arg, &img)) {
    pthread_mutex_unlock(&d->store_lock);
    return;
  }
  json_t *tags = vs_store_tags(d->store, NULL);
  _cleanup_free_ char *tag = tag_of(tags, c->arg);
  json_t *names = json_array();
  const char *key;
  json_t *val;
  if (tag) {
    json_array_append_new(names, json_string(tag));
  } else {
    json_object_foreach(tags, key, val) if (json_is_string(val) &&
                                            !strcmp(json_string_value(val), img.manifest_digest))
        json_array_append_new(names, json_string(key));
  }
  size_t n_tags = 0;
  json_object_foreach(tags, key, val) if (json_is_string(val) &&
                                          !strcmp(json_string_value(val), img.manifest_digest))
      n_tags++;
  json_decref(tags);
  _cleanup_free_ char *user =
      n_tags <= json_array_size(names) ? container_using(d, img.manifest_digest) : NULL;
  if (!tag && json_array_size(names) > 1 && !force) {
    vd_call_error(c, 409,
                  "conflict: unable to delete %.12s (must be forced) - image is referenced in "
                  "multiple repositories",
                  img.manifest.config.digest + 7);
  } else if (user && !force) {
    vd_call_error(c, 409,
                  "conflict: unable to remove repository reference \"%s\" (must force) - "
                  "container %s is using its referenced image %.12s",
                  c->arg, user, img.manifest.config.digest + 7);
  } else {
    untag_and_collect(c, names, &img, json_array());
  }
  json_decref(names);
  vs_image_clear(&img);
  pthread_mutex_unlock(&d->store_lock);
}

/* ---------------------------------------------------------------- pull, import */

/* Docker's progress stream, one {"status": ...} object per line of what the store printed. */
static char *status_stream(int fd, const char *last) {
  _cleanup_free_ char *text = NULL;
  char *out = vs_strdup("");
  if (lseek(fd, 0, SEEK_SET) == 0) {
    size_t cap = 1 << 20;
    text = vs_malloc0(cap);
    ssize_t n = read(fd, text, cap - 1);
    if (n < 0)
      n = 0;
    text[n] = 0;
  }
  char *save = NULL;
  for (char *line = text ? strtok_r(text, "\r\n", &save) : NULL; line;
       line = strtok_r(NULL, "\r\n", &save)) {
    _cleanup_json_ json_t *j = json_pack("{s:s}", "status", line);
    _cleanup_free_ char *s = json_dumps(j, JSON_COMPACT);
    char *next = vs_asprintf("%s%s\n", out, s ? s : "");
    free(out);
    out = next;
  }
  _cleanup_json_ json_t *j = json_pack("{s:s}", "status", last);
  _cleanup_free_ char *s = json_dumps(j, JSON_COMPACT);
  char *next = vs_asprintf("%s%s\n", out, s);
  free(out);
  return next;
}

static void image_pull(vd_call *c, const char *from, const char *tag) {
  vd_daemon *d = c->d;
  _cleanup_free_ char *ref = !tag || !*tag                 ? vs_strdup(from)
                             : !strncmp(tag, "sha256:", 7) ? vs_asprintf("%s@%s", from, tag)
                                                           : vs_asprintf("%s:%s", from, tag);
  _cleanup_close_ int progress = memfd_create("pull-progress", MFD_CLOEXEC);
  vs_registry_opts o = {.tls_verify = 1, .platform = "linux/amd64", .progress_fd = progress};
  char digest[VS_DIGEST_MAX];
  vs_error *e = NULL;
  pthread_mutex_lock(&d->store_lock);
  int r = progress < 0 ? vs_error_set(&e, errno, "memfd_create")
                       : vs_image_pull(d->store, ref, &o, digest, &e);
  pthread_mutex_unlock(&d->store_lock);
  if (r < 0) {
    vd_call_error(c, e->errnum == ENOENT ? 404 : 500, "pull %s: %s", ref, e->msg);
    vs_error_free(e);
    return;
  }
  _cleanup_free_ char *fam = vs_image_name_familiar(ref);
  _cleanup_free_ char *last = vs_asprintf("Status: Downloaded newer image for %s", fam);
  vd_event_emit(d, "image", "pull", fam, json_pack("{s:s}", "name", fam));
  c->status = 200;
  c->text = status_stream(progress, last);
  c->content_type = "application/json";
}

/* docker import: a root file system tarball (spooled while it arrived) becomes an image. */
static void image_import(vd_call *c, const char *repo, const char *tag) {
  vd_daemon *d = c->d;
  if (c->body_fd < 0) {
    vd_call_error(c, 400, "request body is empty: a root file system tarball was expected");
    return;
  }
  _cleanup_free_ char *full = NULL;
  vs_error *e = NULL;
  if (vd_call_image_ref(c, repo, tag, &full) < 0)
    return;
  char digest[VS_DIGEST_MAX];
  pthread_mutex_lock(&d->store_lock);
  int r = vs_image_import(d->store, c->body_path, full, NULL, digest, &e);
  vs_image img;
  bool loaded = r == 0 && vs_store_load_image(d->store, digest, &img, &e) == 0;
  pthread_mutex_unlock(&d->store_lock);
  if (!loaded) {
    vd_call_error(c, 400, "import: %s", e ? e->msg : "failed");
    vs_error_free(e);
    return;
  }
  _cleanup_json_ json_t *j = json_pack("{s:s}", "status", img.manifest.config.digest);
  vs_image_clear(&img);
  _cleanup_free_ char *line = json_dumps(j, JSON_COMPACT);
  c->status = 200;
  c->text = vs_asprintf("%s\n", line);
  c->content_type = "application/json";
}

void vd_h_image_create(vd_call *c) {
  const char *q = c->req->query;
  _cleanup_free_ char *from_image = http_query_get(q, "fromImage");
  _cleanup_free_ char *from_src = http_query_get(q, "fromSrc");
  _cleanup_free_ char *tag = http_query_get(q, "tag");
  _cleanup_free_ char *repo = http_query_get(q, "repo");
  if (from_image && *from_image)
    image_pull(c, from_image, tag);
  else if (from_src && !strcmp(from_src, "-"))
    image_import(c, repo, tag);
  else if (from_src && *from_src)
    vd_call_error(c, 400, "fromSrc %s: only \"-\" (the request body) is supported", from_src);
  else
    vd_call_error(c, 400, "fromImage or fromSrc must be given");
}

/* docker history: the config's history entries, newest first; layers' sizes are not known
 * per entry here (0). */
void vd_h_image_history(vd_call *c) {
  vd_daemon *d = c->d;
  vs_image img;
  pthread_mutex_lock(&d->store_lock);
  bool ok = resolve_image(c, c->arg, &img);
  pthread_mutex_unlock(&d->store_lock);
  if (!ok)
    return;
  json_t *hist = json_object_get(img.config.root, "history");
  json_t *out = json_array();
  size_t n = json_array_size(hist);
  for (size_t i = n; i-- > 0;) {
    json_t *h = json_array_get(hist, i);
    const char *by = json_string_value(json_object_get(h, "created_by"));
    const char *comment = json_string_value(json_object_get(h, "comment"));
    json_array_append_new(
        out,
        json_pack("{s:s, s:I, s:s, s:n, s:i, s:s}", "Id",
                  i == n - 1 ? img.manifest.config.digest : "<missing>", "Created",
                  (json_int_t)unix_time(json_string_value(json_object_get(h, "created"))),
                  "CreatedBy", by ? by : "", "Tags", "Size", 0, "Comment", comment ? comment : ""));
  }
  if (n == 0) /* an image without history: one entry for the image itself */
    json_array_append_new(
        out, json_pack("{s:s, s:I, s:s, s:n, s:I, s:s}", "Id", img.manifest.config.digest,
                       "Created", (json_int_t)unix_time(img.config.created), "CreatedBy", "",
                       "Tags", "Size", (json_int_t)vs_image_size(&img), "Comment", ""));
  vs_image_clear(&img);
  vd_call_json(c, 200, out);
}

/* docker save: a docker-archive of the images, written to a temporary file, which is removed
 * once open and sent from the descriptor. */
void vd_h_image_save(vd_call *c) {
  vd_daemon *d = c->d;
  _cleanup_json_ json_t *names =
      c->arg ? json_pack("[s]", c->arg) : http_query_all(c->req->query, "names");
  size_t n = json_array_size(names);
  if (n == 0) {
    vd_call_error(c, 400, "no image names given");
    return;
  }
  char **list = vs_malloc0(sizeof(char *) * (n + 1));
  for (size_t i = 0; i < n; i++)
    list[i] = (char *)json_string_value(json_array_get(names, i));
  _cleanup_free_ char *rnd = vd_random_id();
  _cleanup_free_ char *path = vs_asprintf("%s/tmp/save-%.16s.tar", d->data_root, rnd);
  vs_error *e = NULL;
  pthread_mutex_lock(&d->store_lock);
  int r = vs_image_save(d->store, list, n, "docker-archive", path, &e);
  pthread_mutex_unlock(&d->store_lock);
  free(list);
  int fd = r == 0 ? open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW) : -1;
  unlink(path);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) < 0) {
    if (fd >= 0)
      close(fd);
    if (e && e->errnum == ENOENT)
      vd_call_error(c, 404, "%s", e->msg);
    else
      vd_call_error(c, 500, "save: %s", e ? e->msg : strerror(errno));
    vs_error_free(e);
    return;
  }
  c->status = 200;
  c->file_fd = fd;
  c->file_size = (uint64_t)st.st_size;
  c->content_type = "application/x-tar";
}

/* docker image prune: unreferenced data always; with dangling=false (-a) also every image no
 * container uses, untagged first. */
void vd_h_images_prune(vd_call *c) {
  vd_daemon *d = c->d;
  _cleanup_free_ char *ftext = http_query_get(c->req->query, "filters");
  bool all =
      ftext && strstr(ftext, "dangling") && (strstr(ftext, "\"false\"") || strstr(ftext, "\"0\""));
  json_t *deleted = json_array();
  vs_error *e = NULL;
  pthread_mutex_lock(&d->store_lock);
  json_t *tags = all ? vs_store_tags(d->store, NULL) : NULL;
  const char *key;
  json_t *val;
  json_object_foreach(tags, key, val) {
    const char *md = json_string_value(val);
    _cleanup_free_ char *user = md ? container_using(d, md) : NULL;
    if (!md || user || vs_store_tag_remove(d->store, key, NULL) < 0)
      continue;
    _cleanup_free_ char *fam = vs_image_name_familiar(key);
    json_array_append_new(deleted, json_pack("{s:s}", "Untagged", fam));
  }
  json_decref(tags);
  vs_gc_stats st = {0};
  int r = vs_store_gc(d->store, &st, &e);
  pthread_mutex_unlock(&d->store_lock);
  if (r < 0) {
    json_decref(deleted);
    vd_call_fail(c, e);
    vs_error_free(e);
    return;
  }
  vd_call_json(c, 200,
               json_pack("{s:o, s:I}", "ImagesDeleted", deleted, "SpaceReclaimed",
                         (json_int_t)st.bytes_freed));
}

/* docker system df: images with the containers using them, containers, volumes. */
void vd_h_system_df(vd_call *c) {
  vd_daemon *d = c->d;
  json_t *images = json_array();
  pthread_mutex_lock(&d->store_lock);
  json_t *tags = vs_store_tags(d->store, NULL);
  json_t *seen = json_object();
  const char *key;
  json_t *val;
  json_object_foreach(tags, key, val) {
    const char *md = json_string_value(val);
    vs_image img;
    if (!md || json_object_get(seen, md) || vs_store_load_image(d->store, md, &img, NULL) < 0)
      continue;
    json_object_set_new(seen, md, json_true());
    json_t *sum = image_summary(&img, tags);
    json_int_t users = 0;
    pthread_mutex_lock(&d->lock);
    for (size_t i = 0; i < d->n_ctrs; i++) {
      const char *cm = json_string_value(json_object_get(d->ctrs[i]->rec, "ImageManifest"));
      users += cm && !strcmp(cm, md);
    }
    pthread_mutex_unlock(&d->lock);
    json_object_set_new(sum, "Containers", json_integer(users));
    json_array_append_new(images, sum);
    vs_image_clear(&img);
  }
  json_decref(seen);
  json_decref(tags);
  _cleanup_free_ char *layers = vs_asprintf("%s/layers", d->data_root);
  json_int_t layers_size = (json_int_t)vs_img_du(layers);
  pthread_mutex_unlock(&d->store_lock);
  json_t *ctrs = json_array();
  pthread_mutex_lock(&d->lock);
  for (size_t i = 0; i < d->n_ctrs; i++) {
    vd_container *ctr = d->ctrs[i];
    _cleanup_free_ char *upper = vs_asprintf("%s/upper", ctr->dir);
    json_array_append_new(
        ctrs, json_pack("{s:s, s:[s], s:O, s:s, s:I}", "Id", ctr->id, "Names", ctr->name, "Image",
                        json_object_get(json_object_get(ctr->rec, "Config"), "Image"), "State",
                        vd_ctr_state_name(ctr), "SizeRw", (json_int_t)vs_img_du(upper)));
  }
  pthread_mutex_unlock(&d->lock);
  vd_call_json(c, 200,
               json_pack("{s:I, s:o, s:o, s:o, s:[]}", "LayersSize", layers_size, "Images", images,
                         "Containers", ctrs, "Volumes", vd_volumes_usage(d), "BuildCache"));
}
