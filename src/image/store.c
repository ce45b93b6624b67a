/* The content-addressed image store: blobs, unpacked layers, tags, garbage collection. */
#include "image/image.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>

#define MAX_META_BLOB (4u << 20) /* manifests and configs */

/* The store lock has two levels: between processes a flock on <root>/lock, and between the
 * threads of one process (vesseld's workers) a reader/writer lock in front of it. flock belongs
 * to the open file, which every thread shares, so a thread asking for the exclusive lock would
 * otherwise just convert the shared lock its neighbours hold. The first reader in takes the
 * shared flock and the last one out drops it. */
struct vs_store {
  char *root;
  int lock_fd;
  pthread_rwlock_t rw; /* shared: pulls, loads, saves, runs; exclusive: garbage collection */
  pthread_mutex_t readers_lock;
  unsigned readers; /* threads holding rw shared, under readers_lock */
  bool writer;      /* a thread holds rw exclusive */
};

vs_store *vs_store_open(const char *root, vs_error **err) {
  static const char *const dirs[] = {"blobs/sha256", "layers/sha256", "containers", "tmp"};
  for (size_t i = 0; i < ARRAY_SIZE(dirs); i++) {
    _cleanup_free_ char *p = vs_asprintf("%s/%s", root, dirs[i]);
    if (vs_mkdir_p(p, 0700, err) < 0) {
      vs_error_wrap(err, "open image store %s", root);
      return NULL;
    }
  }
  _cleanup_free_ char *lock = vs_asprintf("%s/lock", root);
  int fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    vs_error_set(err, errno, "open image store lock %s", lock);
    return NULL;
  }
  vs_store *s = vs_malloc0(sizeof(*s));
  s->root = vs_strdup(root);
  s->lock_fd = fd;
  /* a waiting garbage collection is not starved by a stream of pulls */
  pthread_rwlockattr_t attr;
  pthread_rwlockattr_init(&attr);
  pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
  pthread_rwlock_init(&s->rw, &attr);
  pthread_rwlockattr_destroy(&attr);
  pthread_mutex_init(&s->readers_lock, NULL);
  return s;
}

void vs_store_close(vs_store *s) {
  if (!s)
    return;
  close(s->lock_fd);
  pthread_rwlock_destroy(&s->rw);
  pthread_mutex_destroy(&s->readers_lock);
  free(s->root);
  free(s);
}

const char *vs_store_root(const vs_store *s) { return s->root; }

static int store_flock(vs_store *s, int op, vs_error **err) {
  while (flock(s->lock_fd, op) < 0)
    if (errno != EINTR)
      return vs_error_set(err, errno, "lock image store %s", s->root);
  return 0;
}

int vs_store_lock(vs_store *s, bool exclusive, vs_error **err) {
  if (exclusive) {
    pthread_rwlock_wrlock(&s->rw);
    if (store_flock(s, LOCK_EX, err) < 0) {
      pthread_rwlock_unlock(&s->rw);
      return -1;
    }
    s->writer = true;
    return 0;
  }
  pthread_rwlock_rdlock(&s->rw);
  pthread_mutex_lock(&s->readers_lock);
  int r = s->readers == 0 ? store_flock(s, LOCK_SH, err) : 0;
  if (r == 0)
    s->readers++;
  pthread_mutex_unlock(&s->readers_lock);
  if (r < 0)
    pthread_rwlock_unlock(&s->rw);
  return r;
}

void vs_store_unlock(vs_store *s) {
  if (s->writer) { /* only the one writer can be here while it is set */
    s->writer = false;
    flock(s->lock_fd, LOCK_UN);
  } else {
    pthread_mutex_lock(&s->readers_lock);
    if (--s->readers == 0)
      flock(s->lock_fd, LOCK_UN);
    pthread_mutex_unlock(&s->readers_lock);
  }
  pthread_rwlock_unlock(&s->rw);
}

char *vs_store_blob_path(const vs_store *s, const char *digest) {
  return vs_asprintf("%s/blobs/sha256/%s", s->root, digest + 7);
}

bool vs_store_has_blob(const vs_store *s, const char *digest) {
  if (!vs_digest_valid(digest))
    return false;
  _cleanup_free_ char *p = vs_store_blob_path(s, digest);
  return access(p, F_OK) == 0;
}

int vs_store_read_blob(const vs_store *s, const char *digest, size_t max, char **data, size_t *len,
                       vs_error **err) {
  if (!vs_digest_valid(digest))
    return vs_error_set(err, EINVAL, "bad digest \"%.80s\"", digest);
  _cleanup_free_ char *p = vs_store_blob_path(s, digest);
  if (vs_read_file(p, max, data, len, err) < 0)
    return vs_error_wrap(err, "blob %s", digest);
  return 0;
}

struct vs_blob_writer {
  vs_store *store;
  char *tmp_path;
  int fd;
  vs_hasher *hasher;
  uint64_t size;
};

vs_blob_writer *vs_blob_writer_new(vs_store *s, vs_error **err) {
  char *path = vs_asprintf("%s/tmp/blob-XXXXXX", s->root);
  int fd = mkostemp(path, O_CLOEXEC);
  if (fd < 0) {
    vs_error_set(err, errno, "create %s", path);
    free(path);
    return NULL;
  }
  vs_blob_writer *w = vs_malloc0(sizeof(*w));
  w->store = s;
  w->tmp_path = path;
  w->fd = fd;
  w->hasher = vs_hasher_new();
  return w;
}

int vs_blob_writer_write(vs_blob_writer *w, const void *data, size_t len, vs_error **err) {
  vs_hasher_update(w->hasher, data, len);
  w->size += len;
  const char *p = data;
  while (len) {
    ssize_t n = write(w->fd, p, len);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      return vs_error_set(err, errno, "write %s", w->tmp_path);
    }
    p += n;
    len -= (size_t)n;
  }
  return 0;
}

uint64_t vs_blob_writer_size(const vs_blob_writer *w) { return w->size; }

int vs_blob_writer_commit(vs_blob_writer *w, const char *expected, char digest_out[VS_DIGEST_MAX],
                          vs_error **err) {
  char got[VS_DIGEST_MAX];
  vs_hasher_finish(w->hasher, got);
  w->hasher = NULL;
  if (digest_out)
    memcpy(digest_out, got, VS_DIGEST_MAX);
  if (expected && strcmp(expected, got) != 0) {
    unlink(w->tmp_path);
    return vs_error_set(err, 0, "digest mismatch: expected %s, content is %s", expected, got);
  }
  /* A blob's name promises its content: the data must be on disk before the name is, or a crash
   * could leave an empty file that every later pull trusts. */
  if (fdatasync(w->fd) < 0) {
    int e = errno;
    unlink(w->tmp_path);
    return vs_error_set(err, e, "sync blob %s", got);
  }
  _cleanup_free_ char *dst = vs_store_blob_path(w->store, got);
  if (rename(w->tmp_path, dst) < 0) {
    int e = errno;
    unlink(w->tmp_path);
    return vs_error_set(err, e, "store blob %s", got);
  }
  return 0;
}

void vs_blob_writer_free(vs_blob_writer *w) {
  if (!w)
    return;
  if (w->fd >= 0)
    close(w->fd);
  unlink(w->tmp_path); /* harmless after a successful rename */
  free(w->tmp_path);
  vs_hasher_free(w->hasher);
  free(w);
}

int vs_store_put_blob(vs_store *s, const char *expected, const void *data, size_t len,
                      char digest_out[VS_DIGEST_MAX], vs_error **err) {
  char got[VS_DIGEST_MAX];
  vs_digest_buffer(data, len, got);
  if (digest_out)
    memcpy(digest_out, got, VS_DIGEST_MAX);
  if (expected && strcmp(expected, got) != 0)
    return vs_error_set(err, 0, "digest mismatch: expected %s, content is %s", expected, got);
  if (vs_store_has_blob(s, got))
    return 0;
  vs_blob_writer *w = vs_blob_writer_new(s, err);
  if (!w)
    return -1;
  int r = vs_blob_writer_write(w, data, len, err);
  if (r == 0)
    r = vs_blob_writer_commit(w, got, NULL, err);
  vs_blob_writer_free(w);
  return r;
}

/* ---------------------------------------------------------------- layers */

char *vs_store_layer_path(const vs_store *s, const char *diff_id) {
  return vs_asprintf("%s/layers/sha256/%s", s->root, diff_id + 7);
}

bool vs_store_has_layer(const vs_store *s, const char *diff_id) {
  if (!vs_digest_valid(diff_id))
    return false;
  _cleanup_free_ char *p = vs_store_layer_path(s, diff_id);
  return access(p, F_OK) == 0;
}

int vs_store_unpack_layer_any(vs_store *s, const char *blob_digest, const char *diff_id,
                              char diff_id_out[VS_DIGEST_MAX], vs_error **err) {
  if (diff_id && !vs_digest_valid(diff_id))
    return vs_error_set(err, 0, "bad diff_id");
  if (diff_id && vs_store_has_layer(s, diff_id)) {
    if (diff_id_out)
      snprintf(diff_id_out, VS_DIGEST_MAX, "%s", diff_id);
    return 0;
  }
  _cleanup_free_ char *blob = vs_store_blob_path(s, blob_digest);
  _cleanup_close_ int fd = open(blob, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return vs_error_set(err, errno, "open layer blob %s", blob_digest);
  _cleanup_free_ char *tmp = vs_asprintf("%s/tmp/layer-XXXXXX", s->root);
  if (!mkdtemp(tmp))
    return vs_error_set(err, errno, "create %s", tmp);
  chmod(tmp, 0755);
  int r = -1;
  _cleanup_close_ int dirfd = open(tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  char got[VS_DIGEST_MAX];
  vs_layer_limits lim = {.allow_devices = geteuid() == 0};
  if (dirfd < 0) {
    vs_error_set(err, errno, "open %s", tmp);
  } else if (vs_layer_apply(fd, dirfd, &lim, got, err) < 0) {
    vs_error_wrap(err, "unpack layer %.19s", blob_digest);
  } else if (diff_id && strcmp(got, diff_id) != 0) {
    vs_error_set(err, 0, "unpack layer %.19s: uncompressed digest %s does not match diff_id %s",
                 blob_digest, got, diff_id);
  } else {
    if (diff_id_out)
      memcpy(diff_id_out, got, VS_DIGEST_MAX);
    _cleanup_free_ char *dst = vs_store_layer_path(s, got);
    if (rename(tmp, dst) == 0)
      return 0;
    if (errno == EEXIST || errno == ENOTEMPTY)
      r = 0; /* another pull unpacked the same layer first */
    else
      vs_error_set(err, errno, "store layer %s", got);
  }
  vs_error *e2 = NULL;
  vs_rm_rf(tmp, &e2);
  vs_error_free(e2);
  return r;
}

int vs_store_unpack_layer(vs_store *s, const char *blob_digest, const char *diff_id,
                          vs_error **err) {
  return vs_store_unpack_layer_any(s, blob_digest, diff_id, NULL, err);
}

/* ---------------------------------------------------------------- tags */

static int tags_lock(vs_store *s, vs_error **err) {
  _cleanup_free_ char *p = vs_asprintf("%s/repositories.lock", s->root);
  int fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0)
    return vs_error_set(err, errno, "open %s", p);
  while (flock(fd, LOCK_EX) < 0)
    if (errno != EINTR) {
      close(fd);
      return vs_error_set(err, errno, "lock %s", p);
    }
  return fd;
}

static json_t *tags_load(vs_store *s, vs_error **err) {
  _cleanup_free_ char *p = vs_asprintf("%s/repositories.json", s->root);
  if (access(p, F_OK) < 0)
    return json_object();
  _cleanup_free_ char *data = NULL;
  size_t len;
  if (vs_read_file(p, 64U << 20, &data, &len, err) < 0)
    return NULL;
  json_error_t je;
  json_t *j = json_loadb(data, len, 0, &je);
  if (!json_is_object(j)) {
    json_decref(j);
    vs_error_set(err, EINVAL, "%s is corrupt: %s", p, je.text);
    return NULL;
  }
  return j;
}

static int tags_save(vs_store *s, json_t *tags, vs_error **err) {
  _cleanup_free_ char *p = vs_asprintf("%s/repositories.json", s->root);
  _cleanup_free_ char *text = json_dumps(tags, JSON_INDENT(2) | JSON_SORT_KEYS);
  return vs_write_file_atomic(p, text, strlen(text), 0600, err);
}

json_t *vs_store_tags(vs_store *s, vs_error **err) {
  _cleanup_close_ int l = tags_lock(s, err);
  if (l < 0)
    return NULL;
  return tags_load(s, err);
}

int vs_store_tag_set(vs_store *s, const char *name, const char *manifest_digest, vs_error **err) {
  _cleanup_close_ int l = tags_lock(s, err);
  if (l < 0)
    return -1;
  json_t *tags = tags_load(s, err);
  if (!tags)
    return -1;
  /* a rebuild from the cache tags the same image again: no write, no two fsyncs */
  json_t *was = json_object_get(tags, name);
  if (json_is_string(was) && !strcmp(json_string_value(was), manifest_digest)) {
    json_decref(tags);
    return 0;
  }
  json_object_set_new(tags, name, json_string(manifest_digest));
  int r = tags_save(s, tags, err);
  json_decref(tags);
  return r;
}

int vs_store_tag_remove(vs_store *s, const char *name, vs_error **err) {
  _cleanup_close_ int l = tags_lock(s, err);
  if (l < 0)
    return -1;
  json_t *tags = tags_load(s, err);
  if (!tags)
    return -1;
  int r;
  if (json_object_del(tags, name) < 0)
    r = vs_error_set(err, ENOENT, "no image tagged %s", name);
  else
    r = tags_save(s, tags, err);
  json_decref(tags);
  return r;
}

/* ---------------------------------------------------------------- images */

void vs_image_clear(vs_image *img) {
  free(img->manifest_raw);
  free(img->config_raw);
  vs_manifest_clear(&img->manifest);
  vs_image_config_clear(&img->config);
  memset(img, 0, sizeof(*img));
}

int vs_store_load_image(vs_store *s, const char *digest, vs_image *img, vs_error **err) {
  memset(img, 0, sizeof(*img));
  if (!vs_digest_valid(digest))
    return vs_error_set(err, EINVAL, "bad manifest digest \"%.80s\"", digest);
  snprintf(img->manifest_digest, sizeof(img->manifest_digest), "%s", digest);
  if (vs_store_read_blob(s, digest, MAX_META_BLOB, &img->manifest_raw, &img->manifest_len, err) < 0)
    goto fail;
  if (vs_manifest_parse(img->manifest_raw, img->manifest_len, NULL, &img->manifest, err) < 0)
    goto fail;
  if (img->manifest.kind != VS_MANIFEST_IMAGE) {
    vs_error_set(err, EINVAL, "%s is an index, not an image manifest", digest);
    goto fail;
  }
  if (vs_store_read_blob(s, img->manifest.config.digest, MAX_META_BLOB, &img->config_raw,
                         &img->config_len, err) < 0)
    goto fail;
  if (vs_image_config_parse(img->config_raw, img->config_len, &img->config, err) < 0)
    goto fail;
  if (img->config.n_diff_ids != img->manifest.n_layers) {
    vs_error_set(err, EINVAL, "config lists %zu diff_ids for %zu layers", img->config.n_diff_ids,
                 img->manifest.n_layers);
    goto fail;
  }
  return 0;
fail:
  vs_image_clear(img);
  return vs_error_wrap(err, "image %.19s", digest);
}

int64_t vs_image_size(const vs_image *img) {
  int64_t total = img->manifest.config.size;
  for (size_t i = 0; i < img->manifest.n_layers; i++)
    total += img->manifest.layers[i].size;
  return total;
}

static bool hex_prefix(const char *s) {
  size_t n = strlen(s);
  if (n < 3 || n > 64)
    return false;
  for (size_t i = 0; i < n; i++)
    if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
      return false;
  return true;
}

int vs_store_resolve(vs_store *s, const char *what, vs_image *out, vs_error **err) {
  json_t *tags = vs_store_tags(s, err);
  if (!tags)
    return -1;
  const char *key;
  json_t *val;
  int r = -1;
  const char *id = !strncmp(what, "sha256:", 7) ? what + 7 : what;
  /* A name first (docker resolves names before IDs). */
  vs_image_ref ref;
  vs_error *perr = NULL;
  if (vs_image_ref_parse(what, &ref, &perr) == 0) {
    _cleanup_free_ char *full = vs_image_ref_string(&ref);
    json_t *d = json_object_get(tags, full);
    if (!d && ref.digest && ref.tag) {
      _cleanup_free_ char *n = vs_image_ref_name(&ref);
      _cleanup_free_ char *byd = vs_asprintf("%s@%s", n, ref.digest);
      d = json_object_get(tags, byd);
    }
    if (!d && ref.digest && vs_store_has_blob(s, ref.digest)) {
      r = vs_store_load_image(s, ref.digest, out, err);
      vs_image_ref_clear(&ref);
      json_decref(tags);
      return r;
    }
    vs_image_ref_clear(&ref);
    if (json_is_string(d)) {
      r = vs_store_load_image(s, json_string_value(d), out, err);
      json_decref(tags);
      return r;
    }
  }
  vs_error_free(perr);
  if (hex_prefix(id)) {
    json_object_foreach(tags, key, val) {
      const char *md = json_string_value(val);
      vs_image img;
      if (!md || vs_store_load_image(s, md, &img, NULL) < 0)
        continue;
      if (!img.manifest.config.digest) {
        vs_image_clear(&img);
        continue;
      }
      if (!strncmp(img.manifest.config.digest + 7, id, strlen(id)) ||
          !strncmp(md + 7, id, strlen(id))) {
        *out = img;
        json_decref(tags);
        return 0;
      }
      vs_image_clear(&img);
    }
  }
  json_decref(tags);
  return vs_error_set(err, ENOENT, "image not known: %s", what);
}

/* ---------------------------------------------------------------- gc */

static void mark_image(vs_store *s, const char *md, json_t *blobs, json_t *layers) {
  vs_image img;
  json_object_set_new(blobs, md, json_true());
  if (vs_store_load_image(s, md, &img, NULL) < 0)
    return;
  json_object_set_new(blobs, img.manifest.config.digest, json_true());
  for (size_t i = 0; i < img.manifest.n_layers; i++)
    json_object_set_new(blobs, img.manifest.layers[i].digest, json_true());
  for (size_t i = 0; i < img.config.n_diff_ids; i++)
    json_object_set_new(layers, img.config.diff_ids[i], json_true());
  vs_image_clear(&img);
}

static void sweep(const char *dir, json_t *keep, vs_gc_stats *st, bool is_layer) {
  DIR *d = opendir(dir);
  if (!d)
    return;
  struct dirent *de;
  while ((de = readdir(d))) {
    if (de->d_name[0] == '.')
      continue;
    _cleanup_free_ char *dg = vs_asprintf("sha256:%s", de->d_name);
    if (json_object_get(keep, dg))
      continue;
    _cleanup_free_ char *p = vs_asprintf("%s/%s", dir, de->d_name);
    uint64_t sz = vs_img_du(p);
    vs_error *e = NULL;
    if (vs_rm_rf(p, &e) == 0) {
      st->bytes_freed += sz;
      if (is_layer)
        st->layers_removed++;
      else
        st->blobs_removed++;
    }
    vs_error_free(e);
  }
  closedir(d);
}

/* The gzip forms made for pushes (layer_gzip.c) live as long as their tars: kept tars keep
 * theirs, and the record of a tar that goes is removed (its blob, unmarked, goes with it). */
static void keep_compressed(vs_store *s, json_t *blobs) {
  _cleanup_free_ char *cdir = vs_asprintf("%s/compressed/sha256", s->root);
  DIR *d = opendir(cdir);
  if (!d)
    return;
  json_t *keep = json_array();
  struct dirent *de;
  while ((de = readdir(d))) {
    if (de->d_name[0] == '.')
      continue;
    _cleanup_free_ char *tar = vs_asprintf("sha256:%s", de->d_name);
    char gz[VS_DIGEST_MAX];
    if (json_object_get(blobs, tar) && vs_store_gzip_known(s, tar, gz)) {
      json_array_append_new(keep, json_string(gz));
    } else {
      _cleanup_free_ char *p = vs_asprintf("%s/%s", cdir, de->d_name);
      unlink(p);
    }
  }
  closedir(d);
  size_t i;
  json_t *v;
  json_array_foreach(keep, i, v) json_object_set_new(blobs, json_string_value(v), json_true());
  json_decref(keep);
}

int vs_store_gc(vs_store *s, vs_gc_stats *stats, vs_error **err) {
  vs_gc_stats st = {0};
  if (vs_store_lock(s, true, err) < 0)
    return -1;
  json_t *tags = vs_store_tags(s, err);
  if (!tags) {
    vs_store_unlock(s);
    return -1;
  }
  json_t *blobs = json_object(), *layers = json_object();
  const char *key;
  json_t *val;
  json_object_foreach(tags, key, val) if (json_is_string(val))
      mark_image(s, json_string_value(val), blobs, layers);
  /* Containers keep their image alive. */
  _cleanup_free_ char *cdir = vs_asprintf("%s/containers", s->root);
  DIR *d = opendir(cdir);
  if (d) {
    struct dirent *de;
    while ((de = readdir(d))) {
      if (de->d_name[0] == '.')
        continue;
      _cleanup_free_ char *p = vs_asprintf("%s/%s/image", cdir, de->d_name);
      _cleanup_free_ char *md = NULL;
      if (vs_read_file(p, 128, &md, NULL, NULL) == 0) {
        md[strcspn(md, "\n")] = 0;
        if (vs_digest_valid(md))
          mark_image(s, md, blobs, layers);
      }
    }
    closedir(d);
  }
  keep_compressed(s, blobs);
  _cleanup_free_ char *bdir = vs_asprintf("%s/blobs/sha256", s->root);
  _cleanup_free_ char *ldir = vs_asprintf("%s/layers/sha256", s->root);
  _cleanup_free_ char *tdir = vs_asprintf("%s/tmp", s->root);
  sweep(bdir, blobs, &st, false);
  sweep(ldir, layers, &st, true);
  json_t *none = json_object();
  vs_gc_stats tmpst = {0};
  sweep(tdir, none, &tmpst, false); /* anything in tmp/ is left from a killed run */
  st.bytes_freed += tmpst.bytes_freed;
  json_decref(none);
  json_decref(blobs);
  json_decref(layers);
  json_decref(tags);
  vs_store_unlock(s);
  if (stats)
    *stats = st;
  return 0;
}

/* ---------------------------------------------------------------- local images */

int vs_store_add_image(vs_store *s, const char *name, const char *config_digest,
                       const vs_descriptor *layers, size_t n, char digest_out[VS_DIGEST_MAX],
                       vs_error **err) {
  struct stat st;
  _cleanup_free_ char *cpath = vs_store_blob_path(s, config_digest);
  if (stat(cpath, &st) < 0)
    return vs_error_set(err, errno, "config blob %s", config_digest);
  json_t *ls = json_array();
  for (size_t i = 0; i < n; i++)
    json_array_append_new(ls,
                          json_pack("{s:s, s:s, s:I}", "mediaType", layers[i].media_type, "digest",
                                    layers[i].digest, "size", (json_int_t)layers[i].size));
  json_t *m = json_pack("{s:i, s:s, s:{s:s, s:s, s:I}, s:o}", "schemaVersion", 2, "mediaType",
                        VS_MT_OCI_MANIFEST, "config", "mediaType", VS_MT_OCI_CONFIG, "digest",
                        config_digest, "size", (json_int_t)st.st_size, "layers", ls);
  _cleanup_free_ char *mtext = json_dumps(m, JSON_COMPACT);
  json_decref(m);
  char md[VS_DIGEST_MAX];
  if (vs_store_put_blob(s, NULL, mtext, strlen(mtext), md, err) < 0)
    return -1;
  if (digest_out)
    memcpy(digest_out, md, VS_DIGEST_MAX);
  return name ? vs_store_tag_set(s, name, md, err) : 0;
}
