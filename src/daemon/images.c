/* Image endpoints on vessel's image store: list, inspect, load, pull, push, tag, remove.
 *
 * Docker's image ID is the digest of the image's config; the store tags manifests, so every
 * answer goes from tags to manifests to configs. The store is safe to share between the
 * workers: reads, pulls, loads and saves run side by side (each long operation holds the
 * store's shared lock), and garbage collection takes it exclusively. d->store_lock only orders
 * what must see the container table and the tags together: a create, and the removals (rmi,
 * prune) that check no container uses an image before collecting it. */
#include "daemon/internal.h"

#include <ctype.h>
#include <errno.h>
#include <string.h>
#include <fcntl.h>
#include <fnmatch.h>
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

/* Nanoseconds since the epoch of an RFC 3339 time with its fraction, for before/since. */
static long long created_ns(const char *t) {
  long long ns = unix_time(t) * 1000000000LL;
  const char *dot = t ? strchr(t, '.') : NULL;
  long long scale = 100000000LL;
  for (const char *p = dot ? dot + 1 : ""; *p >= '0' && *p <= '9' && scale; p++, scale /= 10)
    ns += (*p - '0') * scale;
  return ns;
}

/* Every image's manifest digest: the tagged ones, then those only containers keep (dockerd's
 * untagged "<none>" images, after an rmi -f of an image in use). */
static json_t *image_digests(vd_daemon *d, json_t *tags) {
  json_t *out = json_array(), *seen = json_object();
  const char *key;
  json_t *val;
  json_object_foreach(tags, key, val) {
    const char *md = json_string_value(val);
    if (md && !json_object_get(seen, md)) {
      json_object_set_new(seen, md, json_true());
      json_array_append_new(out, json_string(md));
    }
  }
  pthread_mutex_lock(&d->lock);
  for (size_t i = 0; i < d->n_ctrs; i++) {
    const char *md = json_string_value(json_object_get(d->ctrs[i]->rec, "ImageManifest"));
    if (md && !json_object_get(seen, md)) {
      json_object_set_new(seen, md, json_true());
      json_array_append_new(out, json_string(md));
    }
  }
  pthread_mutex_unlock(&d->lock);
  json_decref(seen);
  return out;
}

/* `docker images --filter`: dangling, label, before, since, reference. */
typedef struct image_filters {
  int dangling;            /* -1: any; 0: tagged only; 1: untagged only */
  long long before, since; /* creation bounds in ns, 0: none */
  json_t *labels, *refs;   /* arrays of strings */
} image_filters;

static void image_filters_clear(image_filters *f) {
  json_decref(f->labels);
  json_decref(f->refs);
}

/* The creation time of the image a before/since filter names; false after answering. */
static bool filter_image_time(vd_call *c, json_t *filters, const char *key, long long *out) {
  _cleanup_json_ json_t *vals = vd_filter_values(filters, key);
  *out = 0;
  if (json_array_size(vals) == 0)
    return true;
  const char *name = json_string_value(json_array_get(vals, 0));
  vs_image img;
  vs_error *e = NULL;
  if (vs_store_resolve(c->d->store, name, &img, &e) < 0) {
    vd_call_error(c, 404, "No such image: %s", name);
    vs_error_free(e);
    return false;
  }
  *out = created_ns(img.config.created);
  vs_image_clear(&img);
  return true;
}

/* Parse the filters query parameter; false after answering 400 (or 404 for before/since). */
static bool image_filters_parse(vd_call *c, image_filters *f) {
  *f = (image_filters){.dangling = -1};
  static const char *const known[] = {"dangling", "label", "before", "since", "reference"};
  _cleanup_json_ json_t *filters = NULL;
  if (vd_call_filters(c, known, ARRAY_SIZE(known), &filters) < 0)
    return false;
  json_t *v;
  _cleanup_json_ json_t *dangling = vd_filter_values(filters, "dangling");
  size_t i;
  json_array_foreach(dangling, i, v) {
    const char *b = json_string_value(v);
    if (!strcmp(b, "true") || !strcmp(b, "1")) {
      f->dangling = 1;
    } else if (!strcmp(b, "false") || !strcmp(b, "0")) {
      f->dangling = 0;
    } else {
      vd_call_error(c, 400, "Invalid filter 'dangling=%s'", b);
      return false;
    }
  }
  if (!filter_image_time(c, filters, "before", &f->before) ||
      !filter_image_time(c, filters, "since", &f->since))
    return false;
  f->labels = vd_filter_values(filters, "label");
  f->refs = vd_filter_values(filters, "reference");
  return true;
}

/* A name ("busybox:latest", "reg:5000/x@sha256:...") against a reference pattern, as dockerd
 * matches them: the whole familiar name, or its repository alone. */
static bool reference_match(const char *pattern, const char *fam) {
  if (fnmatch(pattern, fam, 0) == 0)
    return true;
  _cleanup_free_ char *repo = vs_strdup(fam);
  char *at = strchr(repo, '@');
  if (at)
    *at = 0;
  char *colon = strrchr(repo, ':');
  if (colon && !strchr(colon, '/'))
    *colon = 0;
  return fnmatch(pattern, repo, 0) == 0;
}

/* Keep the names of `arr` that match a pattern of refs; how many are left. */
static size_t keep_matching(json_t *arr, json_t *refs) {
  for (size_t i = json_array_size(arr); i-- > 0;) {
    const char *fam = json_string_value(json_array_get(arr, i));
    bool any = false;
    size_t k;
    json_t *p;
    json_array_foreach(refs, k, p) any = any || reference_match(json_string_value(p), fam);
    if (!any)
      json_array_remove(arr, i);
  }
  return json_array_size(arr);
}

/* Whether an image's summary passes the filters (its RepoTags are cut to the matching ones). */
static bool image_filters_pass(const image_filters *f, json_t *sum, const vs_image *img) {
  json_t *repo_tags = json_object_get(sum, "RepoTags");
  bool untagged = json_array_size(repo_tags) == 0;
  if ((f->dangling == 1 && !untagged) || (f->dangling == 0 && untagged))
    return false;
  long long t = created_ns(img->config.created);
  if ((f->before && t >= f->before) || (f->since && t <= f->since))
    return false;
  json_t *labels = json_object_get(sum, "Labels");
  size_t i;
  json_t *v;
  json_array_foreach(f->labels, i,
                     v) if (!vd_label_match(labels, json_string_value(v))) return false;
  if (json_array_size(f->refs)) {
    size_t tagged = keep_matching(repo_tags, f->refs);
    size_t digests = keep_matching(json_object_get(sum, "RepoDigests"), f->refs);
    if (tagged + digests == 0)
      return false;
  }
  return true;
}

void vd_h_images_list(vd_call *c) {
  vd_daemon *d = c->d;
  image_filters f;
  if (!image_filters_parse(c, &f))
    return;
  vs_error *e = NULL;
  json_t *tags = vs_store_tags(d->store, &e);
  json_t *digests = tags ? image_digests(d, tags) : json_array();
  json_t *out = json_array();
  size_t i;
  json_t *val;
  json_array_foreach(digests, i, val) {
    vs_image img;
    if (vs_store_load_image(d->store, json_string_value(val), &img, NULL) < 0)
      continue; /* a tag whose manifest is gone is skipped, as a dangling reference */
    json_t *sum = image_summary(&img, tags);
    if (image_filters_pass(&f, sum, &img))
      json_array_append_new(out, sum);
    else
      json_decref(sum);
    vs_image_clear(&img);
  }
  json_decref(digests);
  json_decref(tags);
  image_filters_clear(&f);
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
  if (resolve_image(c, c->arg, &img)) {
    json_t *tags = vs_store_tags(d->store, NULL);
    vd_call_json(c, 200, image_inspect(&img, tags));
    json_decref(tags);
    vs_image_clear(&img);
  }
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
  int r = vs_image_load(d->store, c->body_path, NULL, &names, &e);
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
  vd_cluster_images_kick(c->d); /* the cluster's record of this node's images */
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
  vd_cluster_images_kick(c->d); /* the cluster's record of this node's images */
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
  vd_cluster_images_kick(c->d); /* the cluster's record of this node's images */
}

/* ---------------------------------------------------------------- pull, import */

/* ---- progress streams (pull, push): JSON lines written by the worker as things happen */

static void post_json(vd_call *c, json_t *j) {
  _cleanup_free_ char *s = json_dumps(j, JSON_COMPACT);
  json_decref(j);
  _cleanup_free_ char *line = vs_asprintf("%s\n", s);
  vd_call_post(c, line, strlen(line));
}

static void post_status(vd_call *c, const char *status) {
  post_json(c, json_pack("{s:s}", "status", status));
}

/* "[=====>      ]  1.2MB/3.4MB", as dockerd words a transfer's progress. */
static char *progress_bar(uint64_t cur, uint64_t total) {
  char bar[51];
  size_t fill = total ? (size_t)(cur * 50 / total) : 0;
  if (fill > 50)
    fill = 50;
  for (size_t i = 0; i < 50; i++)
    bar[i] = (char)(i < fill ? '=' : (i == fill ? '>' : ' '));
  bar[50] = 0;
  return vs_asprintf("[%s] %.4gMB/%.4gMB", bar, (double)cur / 1e6, (double)total / 1e6);
}

/* The registry client's progress callback: one message per event, on the stream. */
static void on_progress(void *ctx, const char *id, const char *status, uint64_t cur,
                        uint64_t total) {
  vd_call *c = ctx;
  json_t *j = json_pack("{s:s}", "status", status);
  if (cur || total) {
    _cleanup_free_ char *bar = progress_bar(cur, total);
    json_object_set_new(
        j, "progressDetail",
        json_pack("{s:I, s:I}", "current", (json_int_t)cur, "total", (json_int_t)total));
    json_object_set_new(j, "progress", json_string(bar));
  } else if (id && strncmp(status, "Pulling from ", 13) != 0) { /* a layer's state */
    json_object_set_new(j, "progressDetail", json_object());
  }
  if (id)
    json_object_set_new(j, "id", json_string(id));
  post_json(c, j);
}

/* An error of a pull or push: in the stream once it began (as dockerd does), else the status. */
static void progress_fail(vd_call *c, int status, const char *msg) {
  if (!c->post_begun) {
    vd_call_error(c, status, "%s", msg);
    return;
  }
  post_json(c, json_pack("{s:{s:s}, s:s}", "errorDetail", "message", msg, "error", msg));
}

/* The registry options of a pull or push: credentials from X-Registry-Auth, progress to the
 * stream. false after answering 400 for a malformed header. */
static bool registry_opts(vd_call *c, vs_registry_opts *o, char **basic) {
  *o = (vs_registry_opts){.tls_verify = 1, .progress_cb = on_progress, .progress_ctx = c};
  *basic = NULL;
  const char *h = http_header_get(c->req, "X-Registry-Auth");
  vs_error *e = NULL;
  if (h && vs_registry_auth_decode(h, basic, &e) < 0) {
    vd_call_error(c, 400, "%s", e->msg);
    vs_error_free(e);
    return false;
  }
  o->credentials = *basic;
  return true;
}

static void image_pull(vd_call *c, const char *from, const char *tag) {
  vd_daemon *d = c->d;
  _cleanup_free_ char *ref = !tag || !*tag                 ? vs_strdup(from)
                             : !strncmp(tag, "sha256:", 7) ? vs_asprintf("%s@%s", from, tag)
                                                           : vs_asprintf("%s:%s", from, tag);
  vs_registry_opts o;
  _cleanup_free_ char *basic = NULL;
  if (!registry_opts(c, &o, &basic))
    return;
  o.containers_only = true; /* VM images live in their own store (vm_images.c) */
  /* docker pull --platform: which manifest of an index (the index checks its form) */
  _cleanup_free_ char *platform = http_query_get(c->req->query, "platform");
  if (platform && *platform)
    o.platform = platform;
  /* what the name meant before: "Image is up to date" when the pull changed nothing */
  vs_image before;
  bool had = vs_store_resolve(d->store, ref, &before, NULL) == 0;
  char digest[VS_DIGEST_MAX];
  vs_error *e = NULL;
  if (vs_image_pull(d->store, ref, &o, digest, &e) < 0) {
    _cleanup_free_ char *msg = vs_asprintf("pull %s: %s", ref, e->msg);
    progress_fail(c, e->errnum == ENOENT ? 404 : e->errnum == EMEDIUMTYPE ? 400 : 500, msg);
    vs_error_free(e);
    if (had)
      vs_image_clear(&before);
    return;
  }
  bool same = had && !strcmp(before.manifest_digest, digest);
  if (had)
    vs_image_clear(&before);
  _cleanup_free_ char *fam = vs_image_name_familiar(ref);
  _cleanup_free_ char *last = vs_asprintf(
      same ? "Status: Image is up to date for %s" : "Status: Downloaded newer image for %s", fam);
  vd_event_emit(d, "image", "pull", fam, json_pack("{s:s}", "name", fam));
  post_status(c, last);
  vd_cluster_images_kick(c->d); /* the cluster's record of this node's images */
}

/* docker push: POST /images/{name}/push?tag=T, the progress streamed as dockerd does. */
void vd_h_image_push(vd_call *c) {
  vd_daemon *d = c->d;
  _cleanup_free_ char *tag = http_query_get(c->req->query, "tag");
  vs_registry_opts o;
  _cleanup_free_ char *basic = NULL;
  if (!registry_opts(c, &o, &basic))
    return;
  _cleanup_free_ char *ref = tag && *tag ? vs_asprintf("%s:%s", c->arg, tag) : vs_strdup(c->arg);
  vs_image_ref r;
  vs_error *e = NULL;
  if (vs_image_ref_parse(ref, &r, &e) < 0) {
    vd_call_error(c, 400, "invalid reference format: %s", e->msg);
    vs_error_free(e);
    return;
  }
  _cleanup_free_ char *full = vs_image_ref_string(&r);
  vs_image_ref_clear(&r);
  vs_image img;
  if (vs_store_resolve(d->store, full, &img, &e) < 0) {
    /* dockerd's words for a name it has no image of */
    vd_call_error(c, 404, "An image does not exist locally with the tag: %s", c->arg);
    vs_error_free(e);
    return;
  }
  char pushed[VS_DIGEST_MAX];
  size_t pushed_len = 0;
  int rc = vs_image_push(d->store, full, full, &o, pushed, &pushed_len, &e);
  if (rc < 0) {
    progress_fail(c, 500, e->msg);
    vs_error_free(e);
  } else {
    _cleanup_free_ char *fam = vs_image_name_familiar(full);
    vd_event_emit(d, "image", "push", fam, json_pack("{s:s}", "name", fam));
    const char *t = strrchr(full, ':');
    post_json(c, json_pack("{s:{}, s:{s:s, s:s, s:I}}", "progressDetail", "aux", "Tag",
                           t && !strchr(t, '/') ? t + 1 : "latest", "Digest", pushed, "Size",
                           (json_int_t)pushed_len));
  }
  vs_image_clear(&img);
}

/* docker login: the credentials are checked against the registry; nothing is stored here (the
 * client keeps them and sends them with each pull and push). */
void vd_h_auth(vd_call *c) {
  json_t *body = vd_call_body_object(c);
  if (!body)
    return;
  const char *user = json_string_value(json_object_get(body, "username"));
  const char *pass = json_string_value(json_object_get(body, "password"));
  const char *server = json_string_value(json_object_get(body, "serveraddress"));
  if (!user || !*user || !pass) {
    vd_call_error(c, 400, "username and password are required");
    json_decref(body);
    return;
  }
  /* "https://host:port/v1/" and "host:port" both name the registry host:port */
  _cleanup_free_ char *host = vs_strdup(server && *server ? server : "docker.io");
  char *h = strstr(host, "://") ? strstr(host, "://") + 3 : host;
  h[strcspn(h, "/")] = 0;
  if (!strcmp(h, "index.docker.io"))
    h = "docker.io";
  vs_registry_opts o = {.tls_verify = 1, .quiet = true};
  vs_error *e = NULL;
  if (!*h || vs_registry_check_login(h, user, pass, &o, &e) < 0) {
    /* dockerd answers a refused login 401 */
    vd_call_error(c, e && e->errnum == EACCES ? 401 : 500, "%s",
                  e ? e->msg : "no registry address given");
    vs_error_free(e);
  } else {
    vd_call_json(c, 200, json_pack("{s:s, s:s}", "Status", "Login Succeeded", "IdentityToken", ""));
  }
  json_decref(body);
}

/* docker import [--change ...]: a root file system tarball (spooled while it arrived) becomes
 * an image. */
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
  /* --change: Dockerfile instructions for the config, as commit takes them (image/changes.c);
   * a bad one is the client's mistake (400) */
  _cleanup_json_ json_t *changes = http_query_all(c->req->query, "changes");
  _cleanup_json_ json_t *config = json_object();
  if (vs_config_apply_changes(config, changes, &e) < 0) {
    vd_call_error(c, 400, "%s", e->msg);
    vs_error_free(e);
    return;
  }
  char digest[VS_DIGEST_MAX];
  int r = vs_image_import(d->store, c->body_path, full, config, digest, &e);
  vs_image img;
  bool loaded = r == 0 && vs_store_load_image(d->store, digest, &img, &e) == 0;
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
  vd_cluster_images_kick(c->d); /* the cluster's record of this node's images */
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
  vs_image img;
  bool ok = resolve_image(c, c->arg, &img);
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
  int r = vs_image_save(d->store, list, n, "docker-archive", path, &e);
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

/* Seconds beyond this (some 30,000 years) are no time a filter means, and a double that large
 * would not fit the long long it becomes (found by fuzz_log_opts: "6.8e+100"). */
#define UNTIL_MAX_SECONDS 1e12

long long vd_until_time(const char *s, time_t now) {
  char *end;
  double v = strtod(s, &end);
  if (end != s && *end == 0 && isdigit((unsigned char)s[0]) && strchr(s, '.') == strrchr(s, '.'))
    return v < UNTIL_MAX_SECONDS ? (long long)v : -1;
  struct tm tm = {0};
  const char *rest = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
  if (!rest) {
    memset(&tm, 0, sizeof(tm));
    rest = strptime(s, "%Y-%m-%d", &tm);
  }
  if (rest)
    return (long long)timegm(&tm);
  double total = 0;
  const char *p = s;
  while (*p) {
    double n = strtod(p, &end);
    if (end == p || n < 0)
      return -1;
    p = end;
    double unit = !strncmp(p, "ms", 2) ? 1e-3
                  : *p == 'h'          ? 3600
                  : *p == 'm'          ? 60
                  : *p == 's'          ? 1
                                       : 0;
    if (!unit)
      return -1;
    p += unit == 1e-3 ? 2 : 1;
    total += n * unit;
    if (!(total < UNTIL_MAX_SECONDS))
      return -1;
  }
  return p == s ? -1 : (long long)now - (long long)total;
}

/* Whether a tagged image may go in a prune -a: created before until (0: any time), has every
 * label of want and none of avoid (docker's label and label! filters). */
static bool prune_match(vd_daemon *d, const char *md, long long until, json_t *want,
                        json_t *avoid) {
  vs_image img;
  if (vs_store_load_image(d->store, md, &img, NULL) < 0)
    return true; /* a tag whose image is gone goes too */
  json_t *labels = json_object_get(json_object_get(img.config.root, "config"), "Labels");
  bool ok = !until || unix_time(img.config.created) < until;
  size_t i;
  json_t *v;
  json_array_foreach(want, i, v) ok = ok && vd_label_match(labels, json_string_value(v));
  json_array_foreach(avoid, i, v) ok = ok && !vd_label_match(labels, json_string_value(v));
  vs_image_clear(&img);
  return ok;
}

/* docker image prune: unreferenced data always; with dangling=false (-a) also every image no
 * container uses (filtered by until, label and label!), untagged first. Untagged images exist
 * here only while a container uses them, so the default (dangling) prune removes no image. */
void vd_h_images_prune(vd_call *c) {
  vd_daemon *d = c->d;
  static const char *const known[] = {"dangling", "until", "label", "label!"};
  _cleanup_json_ json_t *filters = NULL;
  if (vd_call_filters(c, known, ARRAY_SIZE(known), &filters) < 0)
    return;
  bool all = false;
  size_t i;
  json_t *v;
  _cleanup_json_ json_t *dangling = vd_filter_values(filters, "dangling");
  json_array_foreach(dangling, i, v) {
    const char *b = json_string_value(v);
    if (!strcasecmp(b, "false") || !strcmp(b, "0")) {
      all = true;
    } else if (strcasecmp(b, "true") != 0 && strcmp(b, "1") != 0) {
      vd_call_error(c, 400, "Invalid filter 'dangling=%s'", b);
      return;
    }
  }
  long long until = 0;
  _cleanup_json_ json_t *untils = vd_filter_values(filters, "until");
  json_array_foreach(untils, i, v) {
    until = vd_until_time(json_string_value(v), time(NULL));
    if (until < 0) {
      vd_call_error(c, 400, "failed to parse value as time or duration: \"%s\"",
                    json_string_value(v));
      return;
    }
  }
  _cleanup_json_ json_t *want = vd_filter_values(filters, "label");
  _cleanup_json_ json_t *avoid = vd_filter_values(filters, "label!");
  json_t *deleted = json_array();
  vs_error *e = NULL;
  pthread_mutex_lock(&d->store_lock);
  json_t *tags = all ? vs_store_tags(d->store, NULL) : NULL;
  const char *key;
  json_t *val;
  json_object_foreach(tags, key, val) {
    const char *md = json_string_value(val);
    _cleanup_free_ char *user = md ? container_using(d, md) : NULL;
    if (!md || user || !prune_match(d, md, until, want, avoid) ||
        vs_store_tag_remove(d->store, key, NULL) < 0)
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
  vd_cluster_images_kick(c->d); /* the cluster's record of this node's images */
}

/* How many of the images use each layer (by blob digest). */
static json_t *layer_users(vd_daemon *d, json_t *digests) {
  json_t *users = json_object();
  size_t i;
  json_t *v;
  json_array_foreach(digests, i, v) {
    vs_image img;
    if (vs_store_load_image(d->store, json_string_value(v), &img, NULL) < 0)
      continue;
    for (size_t k = 0; k < img.manifest.n_layers; k++) {
      const char *l = img.manifest.layers[k].digest;
      json_object_set_new(users, l,
                          json_integer(json_integer_value(json_object_get(users, l)) + 1));
    }
    vs_image_clear(&img);
  }
  return users;
}

/* docker system df [-v]: images with their shared sizes and the containers using them,
 * containers with their sizes, volumes, an empty build cache. */
void vd_h_system_df(vd_call *c) {
  vd_daemon *d = c->d;
  json_t *images = json_array();
  json_t *tags = vs_store_tags(d->store, NULL);
  json_t *digests = image_digests(d, tags);
  json_t *users = layer_users(d, digests);
  size_t i;
  json_t *v;
  json_array_foreach(digests, i, v) {
    const char *md = json_string_value(v);
    vs_image img;
    if (vs_store_load_image(d->store, md, &img, NULL) < 0)
      continue;
    json_t *sum = image_summary(&img, tags);
    json_int_t shared = 0, ctrs = 0;
    for (size_t k = 0; k < img.manifest.n_layers; k++)
      if (json_integer_value(json_object_get(users, img.manifest.layers[k].digest)) > 1)
        shared += (json_int_t)img.manifest.layers[k].size;
    pthread_mutex_lock(&d->lock);
    for (size_t k = 0; k < d->n_ctrs; k++) {
      const char *cm = json_string_value(json_object_get(d->ctrs[k]->rec, "ImageManifest"));
      ctrs += cm && !strcmp(cm, md);
    }
    pthread_mutex_unlock(&d->lock);
    json_object_set_new(sum, "Containers", json_integer(ctrs));
    json_object_set_new(sum, "SharedSize", json_integer(shared));
    json_array_append_new(images, sum);
    vs_image_clear(&img);
  }
  json_decref(users);
  json_decref(digests);
  json_decref(tags);
  _cleanup_free_ char *layers = vs_asprintf("%s/layers", d->data_root);
  json_int_t layers_size = (json_int_t)vs_img_du(layers);
  json_t *ctrs = json_array();
  pthread_mutex_lock(&d->lock);
  for (size_t k = 0; k < d->n_ctrs; k++) {
    vd_container *ctr = d->ctrs[k];
    _cleanup_free_ char *upper = vs_asprintf("%s/upper", ctr->dir);
    json_t *sum = vd_ctr_summary(ctr);
    json_int_t rw = (json_int_t)vs_img_du(upper);
    json_object_set_new(sum, "SizeRw", json_integer(rw));
    json_object_set_new(sum, "SizeRootFs", json_integer(rw));
    json_array_append_new(ctrs, sum);
  }
  pthread_mutex_unlock(&d->lock);
  vd_call_json(c, 200,
               json_pack("{s:I, s:o, s:o, s:o, s:[]}", "LayersSize", layers_size, "Images", images,
                         "Containers", ctrs, "Volumes", vd_volumes_usage(d), "BuildCache"));
}

/* docker builder prune (and system prune): the step cache is made of images (image prune takes
 * them); what goes here is the context directory kept for the next build (build.c). */
void vd_h_build_prune(vd_call *c) {
  vd_build_contexts_drop(c->d);
  vd_call_json(c, 200, json_pack("{s:[], s:I}", "CachesDeleted", "SpaceReclaimed", (json_int_t)0));
}
