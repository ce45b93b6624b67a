/* Moving images in and out of the store: import, commit, docker-archive / OCI layout load and
 * save. */
#include "image/image.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <time.h>

#define MAX_JSON_ENTRY (4u << 20)

static char *now_rfc3339(void) {
  char buf[64];
  time_t t = time(NULL);
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return vs_strdup(buf);
}

/* Layer media type from the blob's first bytes. */
static const char *sniff_layer_type(const char *path) {
  unsigned char m[4] = {0};
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    if (read(fd, m, sizeof(m)) < 0)
      m[0] = 0;
    close(fd);
  }
  if (m[0] == 0x1f && m[1] == 0x8b)
    return VS_MT_OCI_LAYER_GZIP;
  if (m[0] == 0x28 && m[1] == 0xb5 && m[2] == 0x2f && m[3] == 0xfd)
    return VS_MT_OCI_LAYER_ZSTD;
  return VS_MT_OCI_LAYER;
}

static int64_t blob_size(vs_store *s, const char *digest) {
  _cleanup_free_ char *p = vs_store_blob_path(s, digest);
  struct stat st;
  return stat(p, &st) == 0 ? (int64_t)st.st_size : -1;
}

static int store_file_as_blob(vs_store *s, int fd, char digest[VS_DIGEST_MAX], vs_error **err) {
  vs_blob_writer *w = vs_blob_writer_new(s, err);
  if (!w)
    return -1;
  char buf[1 << 16];
  ssize_t n;
  int r = 0;
  while ((n = read(fd, buf, sizeof(buf))) > 0)
    if ((r = vs_blob_writer_write(w, buf, (size_t)n, err)) < 0)
      break;
  if (n < 0)
    r = vs_error_set(err, errno, "read");
  if (r == 0)
    r = vs_blob_writer_commit(w, NULL, digest, err);
  vs_blob_writer_free(w);
  return r;
}

static json_t *default_config(void) {
  _cleanup_free_ char *now = now_rfc3339();
  return json_pack("{s:s, s:s, s:s, s:{s:[s]}, s:[]}", "created", now, "architecture",
                   vs_arch_native(), "os", "linux", "config", "Env",
                   "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "history");
}

static int put_config(vs_store *s, json_t *config, char digest[VS_DIGEST_MAX], vs_error **err) {
  _cleanup_free_ char *text = json_dumps(config, JSON_COMPACT | JSON_SORT_KEYS);
  return vs_store_put_blob(s, NULL, text, strlen(text), digest, err);
}

/* ---------------------------------------------------------------- import */

int vs_image_import(vs_store *s, const char *tar_path, const char *name, json_t *changes,
                    char digest_out[VS_DIGEST_MAX], vs_error **err) {
  _cleanup_close_ int fd = open(tar_path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return vs_error_set(err, errno, "import %s", tar_path);
  if (vs_store_lock(s, false, err) < 0)
    return -1;
  int r = -1;
  char blob[VS_DIGEST_MAX], diff[VS_DIGEST_MAX], cfg[VS_DIGEST_MAX];
  json_t *config = NULL;
  _cleanup_free_ char *now = now_rfc3339();
  _cleanup_free_ char *bpath = NULL;
  if (store_file_as_blob(s, fd, blob, err) < 0 ||
      vs_store_unpack_layer_any(s, blob, NULL, diff, err) < 0) {
    vs_error_wrap(err, "import %s", tar_path);
    goto out;
  }
  config = default_config();
  if (json_is_object(changes))
    json_object_update(json_object_get(config, "config"), changes);
  json_object_set_new(config, "rootfs",
                      json_pack("{s:s, s:[s]}", "type", "layers", "diff_ids", diff));
  json_array_append_new(json_object_get(config, "history"),
                        json_pack("{s:s, s:s}", "created", now, "created_by", "vessel import"));
  if (put_config(s, config, cfg, err) < 0)
    goto out;
  bpath = vs_store_blob_path(s, blob);
  vs_descriptor d = {
      .media_type = (char *)sniff_layer_type(bpath), .digest = blob, .size = blob_size(s, blob)};
  r = vs_store_add_image(s, name, cfg, &d, 1, digest_out, err);
out:
  json_decref(config);
  vs_store_unlock(s);
  return r;
}

/* ---------------------------------------------------------------- commit */

/* The tar stream goes straight into a blob: an uncompressed layer, whose digest is its diff_id.
 * As dockerd keeps layers uncompressed locally: compressing each committed step cost half the CPU
 * of a build (bench/build, docs/performance.md). */
typedef struct tar_sink {
  vs_blob_writer *w;
  vs_error *err;
} tar_sink;

static la_ssize_t tar_sink_write(struct archive *a, void *ctx, const void *buf, size_t len) {
  tar_sink *t = ctx;
  (void)a;
  if (vs_blob_writer_write(t->w, buf, len, &t->err) < 0)
    return -1;
  return (la_ssize_t)len;
}

static bool is_whiteout(const struct stat *st) {
  return S_ISCHR(st->st_mode) && major(st->st_rdev) == 0 && minor(st->st_rdev) == 0;
}

static bool is_opaque(const char *path) {
  char v[4] = {0};
  return lgetxattr(path, "trusted.overlay.opaque", v, sizeof(v)) == 1 && v[0] == 'y';
}

static int write_entry_data(struct archive *out, const char *path, vs_error **err) {
  _cleanup_close_ int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0)
    return vs_error_set(err, errno, "open %s", path);
  char buf[1 << 16];
  ssize_t n;
  while ((n = read(fd, buf, sizeof(buf))) > 0)
    if (archive_write_data(out, buf, (size_t)n) < 0)
      return vs_error_set(err, 0, "write %s: %s", path, archive_error_string(out));
  return n < 0 ? vs_error_set(err, errno, "read %s", path) : 0;
}

static void add_empty_file(struct archive *out, const char *name) {
  struct archive_entry *e = archive_entry_new();
  archive_entry_set_pathname(e, name);
  archive_entry_set_filetype(e, AE_IFREG);
  archive_entry_set_perm(e, 0644);
  archive_entry_set_size(e, 0);
  archive_entry_set_mtime(e, time(NULL), 0);
  archive_write_header(out, e);
  archive_entry_free(e);
}

static int cmp_names(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Walk the upper dir (cwd is the upper dir; rel is "" or "a/b"). */
static int tar_upper(struct archive *out, struct archive *disk,
                     struct archive_entry_linkresolver *lr, const char *rel, vs_error **err) {
  DIR *d = opendir(*rel ? rel : ".");
  if (!d)
    return vs_error_set(err, errno, "open %s", rel);
  char **names = NULL;
  size_t n = 0, cap = 0;
  struct dirent *de;
  while ((de = readdir(d))) {
    if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
      continue;
    if (n == cap) {
      cap = cap ? cap * 2 : 32;
      names = vs_realloc(names, cap * sizeof(char *));
    }
    names[n++] = vs_strdup(de->d_name);
  }
  closedir(d);
  if (n)
    qsort(names, n, sizeof(char *), cmp_names);
  int r = 0;
  for (size_t i = 0; i < n && r == 0; i++) {
    _cleanup_free_ char *path = *rel ? vs_asprintf("%s/%s", rel, names[i]) : vs_strdup(names[i]);
    struct stat st;
    if (lstat(path, &st) < 0) {
      r = vs_error_set(err, errno, "stat %s", path);
      break;
    }
    if (is_whiteout(&st)) {
      _cleanup_free_ char *wh =
          *rel ? vs_asprintf("%s/.wh.%s", rel, names[i]) : vs_asprintf(".wh.%s", names[i]);
      add_empty_file(out, wh);
      continue;
    }
    struct archive_entry *e = archive_entry_new();
    archive_entry_copy_sourcepath(e, path);
    archive_entry_set_pathname(e, path);
    if (archive_read_disk_entry_from_file(disk, e, -1, &st) != ARCHIVE_OK) {
      r = vs_error_set(err, 0, "read %s: %s", path, archive_error_string(disk));
      archive_entry_free(e);
      break;
    }
    archive_entry_set_uname(e, NULL);
    archive_entry_set_gname(e, NULL);
    /* overlayfs' private xattrs must not leak into the layer */
    struct archive_entry *clean = archive_entry_clone(e);
    archive_entry_xattr_clear(clean);
    const char *xn;
    const void *xv;
    size_t xs;
    archive_entry_xattr_reset(e);
    while (archive_entry_xattr_next(e, &xn, &xv, &xs) == ARCHIVE_OK)
      if (strncmp(xn, "trusted.overlay.", 16) != 0)
        archive_entry_xattr_add_entry(clean, xn, xv, xs);
    archive_entry_free(e);
    struct archive_entry *sparse = NULL;
    archive_entry_linkify(lr, &clean, &sparse);
    if (clean) {
      if (archive_write_header(out, clean) < ARCHIVE_WARN)
        r = vs_error_set(err, 0, "write %s: %s", path, archive_error_string(out));
      else if (S_ISREG(st.st_mode) && archive_entry_size(clean) > 0)
        r = write_entry_data(out, path, err);
      archive_entry_free(clean);
    }
    if (r == 0 && S_ISDIR(st.st_mode)) {
      if (is_opaque(path)) {
        _cleanup_free_ char *opq = vs_asprintf("%s/.wh..wh..opq", path);
        add_empty_file(out, opq);
      }
      r = tar_upper(out, disk, lr, path, err);
    }
  }
  for (size_t i = 0; i < n; i++)
    free(names[i]);
  free(names);
  return r;
}

static int layer_from_upper(vs_store *s, const char *upper, char blob[VS_DIGEST_MAX],
                            vs_error **err) {
  tar_sink t = {.w = vs_blob_writer_new(s, err)};
  int r = -1;
  _cleanup_close_ int cwd = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  struct archive *out = archive_write_new();
  struct archive *disk = archive_read_disk_new();
  struct archive_entry_linkresolver *lr = archive_entry_linkresolver_new();
  archive_write_set_format_pax_restricted(out);
  archive_entry_linkresolver_set_strategy(lr, archive_format(out));
  archive_read_disk_set_symlink_physical(disk);
  if (!t.w || cwd < 0)
    goto out;
  if (chdir(upper) < 0) {
    vs_error_set(err, errno, "chdir %s", upper);
    goto out;
  }
  if (archive_write_open(out, &t, NULL, tar_sink_write, NULL) != ARCHIVE_OK) {
    vs_error_set(err, 0, "tar: %s", archive_error_string(out));
    goto back;
  }
  if (tar_upper(out, disk, lr, "", err) < 0)
    goto back;
  {
    struct archive_entry *e = NULL, *sp = NULL;
    archive_entry_linkify(lr, &e, &sp); /* flush deferred entries (none for tar strategies) */
  }
  if (archive_write_close(out) != ARCHIVE_OK || t.err) {
    vs_error_set(err, 0, "finish layer: %s", t.err ? t.err->msg : archive_error_string(out));
    goto back;
  }
  r = vs_blob_writer_commit(t.w, NULL, blob, err);
back:
  if (fchdir(cwd) < 0)
    vs_log_warn("could not return to the previous directory");
out:
  archive_entry_linkresolver_free(lr);
  archive_read_free(disk);
  archive_write_free(out);
  vs_blob_writer_free(t.w);
  vs_error_free(t.err);
  return r;
}

/* Drop overlayfs' private xattrs (origin, impure, redirect, ...) from one entry of an upper
 * directory, keeping only an opaque marker of "y": what unpacking the layer's tar would give. */
static int drop_overlay_xattrs(const char *path, vs_error **err) {
  ssize_t size = llistxattr(path, NULL, 0);
  if (size <= 0)
    return size < 0 && errno != ENOTSUP ? vs_error_set(err, errno, "list xattrs of %s", path) : 0;
  _cleanup_free_ char *names = vs_malloc0((size_t)size + 1);
  size = llistxattr(path, names, (size_t)size);
  if (size < 0)
    return vs_error_set(err, errno, "list xattrs of %s", path);
  for (const char *x = names; x < names + size; x += strlen(x) + 1) {
    if (strncmp(x, "trusted.overlay.", 16) != 0)
      continue;
    if (!strcmp(x, "trusted.overlay.opaque") && is_opaque(path))
      continue;
    if (lremovexattr(path, x) < 0 && errno != ENODATA)
      return vs_error_set(err, errno, "remove %s from %s", x, path);
  }
  return 0;
}

static int drop_overlay_xattrs_tree(const char *dir, vs_error **err) {
  if (drop_overlay_xattrs(dir, err) < 0)
    return -1;
  DIR *d = opendir(dir);
  if (!d)
    return vs_error_set(err, errno, "open %s", dir);
  int r = 0;
  struct dirent *de;
  while (r == 0 && (de = readdir(d))) {
    if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
      continue;
    _cleanup_free_ char *path = vs_asprintf("%s/%s", dir, de->d_name);
    struct stat st;
    if (lstat(path, &st) < 0)
      r = vs_error_set(err, errno, "stat %s", path);
    else if (S_ISDIR(st.st_mode))
      r = drop_overlay_xattrs_tree(path, err);
    else
      r = drop_overlay_xattrs(path, err);
  }
  closedir(d);
  return r;
}

/* The upper directory, which the caller no longer needs, becomes the unpacked layer itself (as
 * dockerd's overlay2 keeps a step's diff directory): renamed into the store instead of unpacking
 * the blob just written from it, which wrote every file a second time (bench/build). Its root
 * gets the owner and mode an unpacked layer's root has. Falls back to unpacking when the upper
 * directory is on another file system. */
static int layer_take_upper(vs_store *s, const char *upper, const char *diff, vs_error **err) {
  if (vs_store_has_layer(s, diff))
    return 0;
  if (drop_overlay_xattrs_tree(upper, err) < 0)
    return -1;
  if (lchown(upper, 0, 0) < 0 || chmod(upper, 0755) < 0)
    return vs_error_set(err, errno, "prepare %s as a layer", upper);
  _cleanup_free_ char *dst = vs_store_layer_path(s, diff);
  if (rename(upper, dst) == 0 || errno == EEXIST || errno == ENOTEMPTY)
    return 0;
  if (errno == EXDEV)
    return vs_store_unpack_layer(s, diff, diff, err);
  return vs_error_set(err, errno, "store layer %s", diff);
}

static int commit(vs_store *s, const vs_image *base, const char *upper, bool take_upper,
                  const char *name, json_t *changes, const char *comment, const char *author,
                  char digest_out[VS_DIGEST_MAX], vs_error **err) {
  if (vs_store_lock(s, false, err) < 0)
    return -1;
  int r = -1;
  char diff[VS_DIGEST_MAX], cfg[VS_DIGEST_MAX];
  json_t *config = json_deep_copy(base->config.root);
  size_t n = base->manifest.n_layers;
  vs_descriptor *layers = vs_malloc0(sizeof(vs_descriptor) * (n + 1));
  _cleanup_free_ char *now = now_rfc3339();
  if (layer_from_upper(s, upper, diff, err) < 0 ||
      (take_upper ? layer_take_upper(s, upper, diff, err)
                  : vs_store_unpack_layer(s, diff, diff, err)) < 0) {
    vs_error_wrap(err, "commit %s", upper);
    goto out;
  }
  json_object_set_new(config, "created", json_string(now));
  json_t *rootfs = json_object_get(config, "rootfs");
  json_array_append_new(json_object_get(rootfs, "diff_ids"), json_string(diff));
  json_t *hist = json_object_get(config, "history");
  if (!json_is_array(hist)) {
    hist = json_array();
    json_object_set_new(config, "history", hist);
  }
  json_array_append_new(hist, json_pack("{s:s, s:s, s:s?, s:s?}", "created", now, "created_by",
                                        "vessel commit", "comment", comment, "author", author));
  if (author)
    json_object_set_new(config, "author", json_string(author));
  if (comment)
    json_object_set_new(config, "comment", json_string(comment));
  if (json_is_object(changes)) {
    json_t *c = json_object_get(config, "config");
    if (!json_is_object(c)) {
      c = json_object();
      json_object_set_new(config, "config", c);
    }
    json_object_update(c, changes);
  }
  if (put_config(s, config, cfg, err) < 0)
    goto out;
  for (size_t i = 0; i < n; i++)
    layers[i] = base->manifest.layers[i];
  layers[n] =
      (vs_descriptor){.media_type = VS_MT_OCI_LAYER, .digest = diff, .size = blob_size(s, diff)};
  r = vs_store_add_image(s, name, cfg, layers, n + 1, digest_out, err);
out:
  free(layers);
  json_decref(config);
  vs_store_unlock(s);
  return r;
}

int vs_image_commit(vs_store *s, const vs_image *base, const char *upper, const char *name,
                    json_t *changes, const char *comment, const char *author,
                    char digest_out[VS_DIGEST_MAX], vs_error **err) {
  return commit(s, base, upper, false, name, changes, comment, author, digest_out, err);
}

int vs_image_commit_taking_upper(vs_store *s, const vs_image *base, const char *upper,
                                 char digest_out[VS_DIGEST_MAX], vs_error **err) {
  return commit(s, base, upper, true, NULL, NULL, NULL, NULL, digest_out, err);
}

/* ---------------------------------------------------------------- load */

typedef struct loaded {
  json_t *blobs; /* entry name -> digest */
  json_t *texts; /* entry name -> text, for small JSON files */
} loaded;

static int read_archive_entries(vs_store *s, const char *path, loaded *l, vs_error **err) {
  struct archive *a = archive_read_new();
  archive_read_support_filter_all(a);
  archive_read_support_format_tar(a);
  archive_read_support_format_gnutar(a);
  int r = 0;
  if (archive_read_open_filename(a, path, 1 << 16) != ARCHIVE_OK) {
    r = vs_error_set(err, 0, "%s: %s", path, archive_error_string(a));
    goto out;
  }
  struct archive_entry *e;
  for (;;) {
    int h = archive_read_next_header(a, &e);
    if (h == ARCHIVE_EOF)
      break;
    if (h < ARCHIVE_WARN) {
      r = vs_error_set(err, 0, "%s: %s", path, archive_error_string(a));
      break;
    }
    if (archive_entry_filetype(e) != AE_IFREG)
      continue;
    const char *name = archive_entry_pathname(e);
    if (!name)
      continue;
    while (name[0] == '.' && name[1] == '/')
      name += 2;
    vs_blob_writer *w = vs_blob_writer_new(s, err);
    if (!w) {
      r = -1;
      break;
    }
    la_int64_t size = archive_entry_size(e);
    bool keep_text = size >= 0 && size <= (la_int64_t)MAX_JSON_ENTRY;
    char *text = keep_text ? vs_malloc0((size_t)size + 1) : NULL;
    size_t tn = 0;
    char buf[1 << 16];
    la_ssize_t n;
    while ((n = archive_read_data(a, buf, sizeof(buf))) > 0) {
      if (vs_blob_writer_write(w, buf, (size_t)n, err) < 0) {
        n = -2;
        break;
      }
      if (text && tn + (size_t)n <= (size_t)size) {
        memcpy(text + tn, buf, (size_t)n);
        tn += (size_t)n;
      }
    }
    char digest[VS_DIGEST_MAX];
    if (n < 0 || vs_blob_writer_commit(w, NULL, digest, err) < 0) {
      if (n == -1)
        vs_error_set(err, 0, "%s: %s: %s", path, name, archive_error_string(a));
      vs_blob_writer_free(w);
      free(text);
      r = -1;
      break;
    }
    vs_blob_writer_free(w);
    json_object_set_new(l->blobs, name, json_string(digest));
    if (text)
      json_object_set_new(l->texts, name, json_stringn(text, tn));
    free(text);
  }
out:
  archive_read_free(a);
  return r;
}

static json_t *text_json(loaded *l, const char *name, vs_error **err) {
  const char *t = json_string_value(json_object_get(l->texts, name));
  if (!t) {
    vs_error_set(err, 0, "archive has no %s", name);
    return NULL;
  }
  json_error_t je;
  json_t *j = json_loads(t, 0, &je);
  if (!j)
    vs_error_set(err, 0, "%s: malformed JSON: %s", name, je.text);
  return j;
}

static char *normalise_name(const char *name, vs_error **err) {
  vs_image_ref r;
  if (vs_image_ref_parse(name, &r, err) < 0)
    return NULL;
  char *s = vs_image_ref_string(&r);
  vs_image_ref_clear(&r);
  return s;
}

static int load_docker_archive(vs_store *s, loaded *l, const char *fallback, json_t *names,
                               vs_error **err) {
  json_t *man = text_json(l, "manifest.json", err);
  if (!man)
    return -1;
  int r = 0;
  if (!json_is_array(man)) {
    json_decref(man);
    return vs_error_set(err, 0, "manifest.json is not an array");
  }
  size_t i;
  json_t *img;
  json_array_foreach(man, i, img) {
    const char *cfgname = json_string_value(json_object_get(img, "Config"));
    const char *cfg = json_string_value(json_object_get(l->blobs, cfgname ? cfgname : ""));
    json_t *lnames = json_object_get(img, "Layers");
    if (!cfg || !json_is_array(lnames)) {
      r = vs_error_set(err, 0, "manifest.json entry %zu: missing Config or Layers", i);
      break;
    }
    _cleanup_free_ char *ctext = NULL;
    size_t clen;
    vs_image_config c;
    if (vs_store_read_blob(s, cfg, MAX_JSON_ENTRY, &ctext, &clen, err) < 0 ||
        vs_image_config_parse(ctext, clen, &c, err) < 0) {
      r = -1;
      break;
    }
    size_t n = json_array_size(lnames);
    if (n != c.n_diff_ids) {
      vs_image_config_clear(&c);
      r = vs_error_set(err, 0, "image %zu: %zu layers but %zu diff_ids", i, n, c.n_diff_ids);
      break;
    }
    vs_descriptor *ds = vs_malloc0(sizeof(vs_descriptor) * (n + 1));
    for (size_t k = 0; k < n && r == 0; k++) {
      const char *ln = json_string_value(json_array_get(lnames, k));
      const char *bd = json_string_value(json_object_get(l->blobs, ln ? ln : ""));
      if (!bd) {
        r = vs_error_set(err, 0, "image %zu: layer %s is not in the archive", i, ln ? ln : "?");
        break;
      }
      _cleanup_free_ char *bp = vs_store_blob_path(s, bd);
      ds[k].media_type = (char *)sniff_layer_type(bp);
      ds[k].digest = (char *)bd;
      ds[k].size = blob_size(s, bd);
      if (vs_store_unpack_layer(s, bd, c.diff_ids[k], err) < 0)
        r = -1;
    }
    char md[VS_DIGEST_MAX];
    if (r == 0)
      r = vs_store_add_image(s, NULL, cfg, ds, n, md, err);
    free(ds);
    vs_image_config_clear(&c);
    if (r < 0)
      break;
    json_t *tags = json_object_get(img, "RepoTags");
    size_t k;
    json_t *t;
    bool tagged = false;
    json_array_foreach(tags, k, t) {
      _cleanup_free_ char *full = normalise_name(json_string_value(t), err);
      if (!full || vs_store_tag_set(s, full, md, err) < 0) {
        r = -1;
        break;
      }
      json_array_append_new(names, json_string(full));
      tagged = true;
    }
    if (r == 0 && !tagged) {
      _cleanup_free_ char *full = fallback ? normalise_name(fallback, err) : NULL;
      if (!full)
        full = vs_asprintf("localhost/loaded@%s", md);
      r = vs_store_tag_set(s, full, md, err);
      json_array_append_new(names, json_string(full));
    }
    if (r < 0)
      break;
  }
  json_decref(man);
  return r;
}

static int load_oci_layout(vs_store *s, loaded *l, const char *fallback, json_t *names,
                           vs_error **err) {
  /* every blob must carry its own digest as its name */
  const char *key;
  json_t *val;
  json_object_foreach(l->blobs, key, val) {
    if (strncmp(key, "blobs/sha256/", 13) != 0)
      continue;
    if (strcmp(key + 13, json_string_value(val) + 7) != 0)
      return vs_error_set(err, 0, "%s: content does not match its digest (%s)", key,
                          json_string_value(val));
  }
  json_t *idx = text_json(l, "index.json", err);
  if (!idx)
    return -1;
  json_t *ms = json_object_get(idx, "manifests");
  int r = 0;
  size_t i;
  json_t *d;
  json_array_foreach(ms, i, d) {
    const char *md = json_string_value(json_object_get(d, "digest"));
    const char *mt = json_string_value(json_object_get(d, "mediaType"));
    if (!vs_digest_valid(md) || !vs_store_has_blob(s, md)) {
      r = vs_error_set(err, 0, "index.json entry %zu: manifest %s is not in the archive", i,
                       md ? md : "?");
      break;
    }
    char chosen[VS_DIGEST_MAX];
    snprintf(chosen, sizeof(chosen), "%s", md);
    if (mt && (!strcmp(mt, VS_MT_OCI_INDEX) || !strcmp(mt, VS_MT_DOCKER_LIST))) {
      _cleanup_free_ char *text = NULL;
      size_t len;
      vs_manifest sub;
      if (vs_store_read_blob(s, md, MAX_JSON_ENTRY, &text, &len, err) < 0 ||
          vs_manifest_parse(text, len, mt, &sub, err) < 0) {
        r = -1;
        break;
      }
      const vs_descriptor *pick = vs_index_select(&sub, NULL, err);
      if (pick)
        snprintf(chosen, sizeof(chosen), "%s", pick->digest);
      vs_manifest_clear(&sub);
      if (!pick) {
        r = -1;
        break;
      }
    }
    vs_image img;
    if (vs_store_load_image(s, chosen, &img, err) < 0) {
      r = -1;
      break;
    }
    for (size_t k = 0; k < img.manifest.n_layers && r == 0; k++)
      r = vs_store_unpack_layer(s, img.manifest.layers[k].digest, img.config.diff_ids[k], err);
    vs_image_clear(&img);
    if (r < 0)
      break;
    json_t *ann = json_object_get(d, "annotations");
    const char *ref = json_string_value(json_object_get(ann, "io.containerd.image.name"));
    if (!ref)
      ref = json_string_value(json_object_get(ann, "org.opencontainers.image.ref.name"));
    _cleanup_free_ char *full = NULL;
    if (ref && (strchr(ref, '/') || strchr(ref, ':'))) {
      full = normalise_name(ref, err);
    } else if (fallback) {
      _cleanup_free_ char *withtag =
          ref ? vs_asprintf("%s:%s", fallback, ref) : vs_strdup(fallback);
      full = normalise_name(strchr(fallback, ':') ? fallback : withtag, err);
    } else {
      full = vs_asprintf("localhost/loaded:%s", ref ? ref : "latest");
    }
    if (!full || vs_store_tag_set(s, full, chosen, err) < 0) {
      r = -1;
      break;
    }
    json_array_append_new(names, json_string(full));
  }
  json_decref(idx);
  return r;
}

int vs_image_load(vs_store *s, const char *path, const char *fallback, json_t **names,
                  vs_error **err) {
  loaded l = {.blobs = json_object(), .texts = json_object()};
  *names = json_array();
  if (vs_store_lock(s, false, err) < 0)
    return -1;
  int r = read_archive_entries(s, path, &l, err);
  if (r == 0) {
    if (json_object_get(l.texts, "manifest.json"))
      r = load_docker_archive(s, &l, fallback, *names, err);
    else if (json_object_get(l.texts, "index.json"))
      r = load_oci_layout(s, &l, fallback, *names, err);
    else
      r = vs_error_set(err, 0,
                       "neither manifest.json (docker-archive) nor index.json (OCI "
                       "layout) found");
  }
  vs_store_unlock(s);
  json_decref(l.blobs);
  json_decref(l.texts);
  if (r < 0)
    return vs_error_wrap(err, "load %s", path);
  return 0;
}

/* ---------------------------------------------------------------- save */

static int add_file_entry(struct archive *out, const char *name, const char *src, vs_error **err) {
  _cleanup_close_ int fd = open(src, O_RDONLY | O_CLOEXEC);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) < 0)
    return vs_error_set(err, errno, "open %s", src);
  struct archive_entry *e = archive_entry_new();
  archive_entry_set_pathname(e, name);
  archive_entry_set_filetype(e, AE_IFREG);
  archive_entry_set_perm(e, 0644);
  archive_entry_set_size(e, st.st_size);
  archive_entry_set_mtime(e, 0, 0);
  int r = 0;
  if (archive_write_header(out, e) < ARCHIVE_WARN)
    r = vs_error_set(err, 0, "write %s: %s", name, archive_error_string(out));
  archive_entry_free(e);
  char buf[1 << 16];
  ssize_t n;
  while (r == 0 && (n = read(fd, buf, sizeof(buf))) > 0)
    if (archive_write_data(out, buf, (size_t)n) < 0)
      r = vs_error_set(err, 0, "write %s: %s", name, archive_error_string(out));
  return r;
}

static int add_text_entry(struct archive *out, const char *name, const char *text) {
  struct archive_entry *e = archive_entry_new();
  archive_entry_set_pathname(e, name);
  archive_entry_set_filetype(e, AE_IFREG);
  archive_entry_set_perm(e, 0644);
  archive_entry_set_size(e, (la_int64_t)strlen(text));
  archive_entry_set_mtime(e, 0, 0);
  archive_write_header(out, e);
  archive_write_data(out, text, strlen(text));
  archive_entry_free(e);
  return 0;
}

static void add_dir_entry(struct archive *out, const char *name) {
  struct archive_entry *e = archive_entry_new();
  archive_entry_set_pathname(e, name);
  archive_entry_set_filetype(e, AE_IFDIR);
  archive_entry_set_perm(e, 0755);
  archive_entry_set_mtime(e, 0, 0);
  archive_write_header(out, e);
  archive_entry_free(e);
}

/* Decompress a layer blob into a temp file (a tar entry needs its size up front). */
static char *decompress_to_temp(vs_store *s, const char *digest, vs_error **err) {
  _cleanup_free_ char *src = vs_store_blob_path(s, digest);
  char *tmp = vs_asprintf("%s/tmp/save-XXXXXX", vs_store_root(s));
  int fd = mkostemp(tmp, O_CLOEXEC);
  if (fd < 0) {
    vs_error_set(err, errno, "create %s", tmp);
    free(tmp);
    return NULL;
  }
  struct archive *a = archive_read_new();
  archive_read_support_filter_all(a);
  archive_read_support_format_raw(a);
  struct archive_entry *e;
  int r = 0;
  if (archive_read_open_filename(a, src, 1 << 16) != ARCHIVE_OK ||
      archive_read_next_header(a, &e) != ARCHIVE_OK) {
    r = vs_error_set(err, 0, "layer %s: %s", digest, archive_error_string(a));
  } else {
    char buf[1 << 16];
    la_ssize_t n;
    while ((n = archive_read_data(a, buf, sizeof(buf))) > 0)
      if (vs_write_all(fd, buf, (size_t)n, err) < 0) {
        r = -1;
        break;
      }
    if (n < 0)
      r = vs_error_set(err, 0, "layer %s: %s", digest, archive_error_string(a));
  }
  archive_read_free(a);
  close(fd);
  if (r < 0) {
    unlink(tmp);
    free(tmp);
    return NULL;
  }
  return tmp;
}

static json_t *names_of(vs_store *s, const char *manifest_digest) {
  json_t *tags = vs_store_tags(s, NULL), *out = json_array();
  const char *k;
  json_t *v;
  json_object_foreach(tags, k,
                      v) if (!strcmp(json_string_value(v), manifest_digest) && !strchr(k, '@')) {
    json_array_append_new(out, json_string(k));
  }
  json_decref(tags);
  return out;
}

static int save_docker(vs_store *s, struct archive *out, vs_image *imgs, size_t n, vs_error **err) {
  json_t *man = json_array(), *repos = json_object();
  json_t *written = json_object();
  int r = 0;
  for (size_t i = 0; i < n && r == 0; i++) {
    vs_image *img = &imgs[i];
    _cleanup_free_ char *cfgname = vs_asprintf("%s.json", img->manifest.config.digest + 7);
    _cleanup_free_ char *cfgpath = vs_store_blob_path(s, img->manifest.config.digest);
    if (!json_object_get(written, cfgname)) {
      r = add_file_entry(out, cfgname, cfgpath, err);
      json_object_set_new(written, cfgname, json_true());
    }
    json_t *layers = json_array();
    for (size_t k = 0; k < img->manifest.n_layers && r == 0; k++) {
      const char *diff = img->config.diff_ids[k];
      _cleanup_free_ char *dir = vs_strdup(diff + 7);
      _cleanup_free_ char *lname = vs_asprintf("%s/layer.tar", dir);
      json_array_append_new(layers, json_string(lname));
      if (json_object_get(written, lname))
        continue;
      _cleanup_free_ char *tmp = decompress_to_temp(s, img->manifest.layers[k].digest, err);
      if (!tmp) {
        r = -1;
        break;
      }
      add_dir_entry(out, dir);
      r = add_file_entry(out, lname, tmp, err);
      unlink(tmp);
      json_object_set_new(written, lname, json_true());
    }
    json_t *tags = names_of(s, img->manifest_digest), *fam = json_array();
    size_t k;
    json_t *t;
    json_array_foreach(tags, k, t) {
      _cleanup_free_ char *f = vs_image_name_familiar(json_string_value(t));
      json_array_append_new(fam, json_string(f));
      char *colon = strrchr(f, ':');
      if (colon && n) {
        *colon = 0;
        json_t *repo = json_object_get(repos, f);
        if (!repo) {
          repo = json_object();
          json_object_set_new(repos, f, repo);
        }
        const char *top =
            img->config.n_diff_ids ? img->config.diff_ids[img->config.n_diff_ids - 1] + 7 : "";
        json_object_set_new(repo, colon + 1, json_string(top));
      }
    }
    json_decref(tags);
    json_array_append_new(
        man, json_pack("{s:s, s:o, s:o}", "Config", cfgname, "RepoTags", fam, "Layers", layers));
  }
  if (r == 0) {
    _cleanup_free_ char *mt = json_dumps(man, JSON_COMPACT);
    _cleanup_free_ char *rt = json_dumps(repos, JSON_COMPACT);
    add_text_entry(out, "manifest.json", mt);
    add_text_entry(out, "repositories", rt);
  }
  json_decref(man);
  json_decref(repos);
  json_decref(written);
  return r;
}

static int save_oci(vs_store *s, struct archive *out, vs_image *imgs, size_t n, vs_error **err) {
  json_t *written = json_object(), *ms = json_array();
  int r = 0;
  add_text_entry(out, "oci-layout", "{\"imageLayoutVersion\":\"1.0.0\"}");
  add_dir_entry(out, "blobs");
  add_dir_entry(out, "blobs/sha256");
  for (size_t i = 0; i < n && r == 0; i++) {
    vs_image *img = &imgs[i];
    const char *all[VS_DIGEST_MAX];
    size_t na = 0;
    all[na++] = img->manifest_digest;
    all[na++] = img->manifest.config.digest;
    for (size_t k = 0; k < img->manifest.n_layers && r == 0; k++) {
      const char *d = img->manifest.layers[k].digest;
      if (json_object_get(written, d))
        continue;
      _cleanup_free_ char *name = vs_asprintf("blobs/sha256/%s", d + 7);
      _cleanup_free_ char *src = vs_store_blob_path(s, d);
      r = add_file_entry(out, name, src, err);
      json_object_set_new(written, d, json_true());
    }
    for (size_t k = 0; k < na && r == 0; k++) {
      if (json_object_get(written, all[k]))
        continue;
      _cleanup_free_ char *name = vs_asprintf("blobs/sha256/%s", all[k] + 7);
      _cleanup_free_ char *src = vs_store_blob_path(s, all[k]);
      r = add_file_entry(out, name, src, err);
      json_object_set_new(written, all[k], json_true());
    }
    json_t *tags = names_of(s, img->manifest_digest);
    const char *ref = json_string_value(json_array_get(tags, 0));
    json_t *d = json_pack("{s:s, s:s, s:I}", "mediaType", img->manifest.media_type, "digest",
                          img->manifest_digest, "size", (json_int_t)img->manifest_len);
    if (ref)
      json_object_set_new(d, "annotations",
                          json_pack("{s:s, s:s}", "org.opencontainers.image.ref.name", ref,
                                    "io.containerd.image.name", ref));
    json_array_append_new(ms, d);
    json_decref(tags);
  }
  if (r == 0) {
    json_t *idx = json_pack("{s:i, s:s, s:O}", "schemaVersion", 2, "mediaType", VS_MT_OCI_INDEX,
                            "manifests", ms);
    _cleanup_free_ char *text = json_dumps(idx, JSON_COMPACT);
    json_decref(idx);
    add_text_entry(out, "index.json", text);
  }
  json_decref(ms);
  json_decref(written);
  return r;
}

int vs_image_save(vs_store *s, char **images, size_t n, const char *format, const char *path,
                  vs_error **err) {
  bool oci = format && (!strcmp(format, "oci-archive") || !strcmp(format, "oci"));
  if (format && !oci && strcmp(format, "docker-archive") != 0)
    return vs_error_set(err, 0, "unknown format \"%s\" (docker-archive or oci-archive)", format);
  /* shared: garbage collection must not take blobs away while they are being copied */
  if (vs_store_lock(s, false, err) < 0)
    return -1;
  vs_image *imgs = vs_malloc0(sizeof(vs_image) * (n ? n : 1));
  size_t loaded_n = 0;
  int r = 0;
  for (; loaded_n < n; loaded_n++)
    if (vs_store_resolve(s, images[loaded_n], &imgs[loaded_n], err) < 0) {
      r = -1;
      break;
    }
  _cleanup_free_ char *tmp = vs_asprintf("%s.tmp-%d", path, (int)getpid());
  struct archive *out = archive_write_new();
  archive_write_set_format_pax_restricted(out);
  if (r == 0 && archive_write_open_filename(out, tmp) != ARCHIVE_OK)
    r = vs_error_set(err, 0, "create %s: %s", path, archive_error_string(out));
  if (r == 0)
    r = oci ? save_oci(s, out, imgs, n, err) : save_docker(s, out, imgs, n, err);
  if (archive_write_close(out) != ARCHIVE_OK && r == 0)
    r = vs_error_set(err, 0, "write %s: %s", path, archive_error_string(out));
  archive_write_free(out);
  if (r == 0 && rename(tmp, path) < 0)
    r = vs_error_set(err, errno, "rename %s", path);
  if (r < 0)
    unlink(tmp);
  for (size_t i = 0; i < loaded_n; i++)
    vs_image_clear(&imgs[i]);
  free(imgs);
  vs_store_unlock(s);
  return r < 0 ? vs_error_wrap(err, "save %s", path) : 0;
}
