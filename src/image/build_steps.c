/* The build driver: a Dockerfile's instructions in order, each step an image in the store as
 * Docker's classic builder makes them (configuration steps an empty layer with a "#(nop)"
 * history entry, COPY a layer from the upper directory of an overlay of the step's image). */
#include "image/image.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <time.h>
#include <unistd.h>

typedef struct stage {
  char *name; /* AS name, or NULL */
  vs_image img;
} stage;

typedef struct builder {
  vs_store *s;
  const vs_build_opts *o;
  int ctxfd;
  vs_ignore *ig;
  vs_dockerfile df;
  json_t *meta_args; /* ARGs before the first FROM */
  stage *stages;
  size_t nstages;
  vs_image cur;
  bool have_cur;
  vs_build_stage st;
} builder;

__attribute__((format(printf, 2, 3))) static void progress(const builder *b, const char *fmt, ...) {
  if (b->o->progress_fd < 0)
    return;
  va_list ap;
  va_start(ap, fmt);
  char *line = NULL;
  if (vasprintf(&line, fmt, ap) >= 0) {
    vs_error *e = NULL;
    vs_write_all(b->o->progress_fd, line, strlen(line), &e);
    vs_error_free(e);
    free(line);
  }
  va_end(ap);
}

static char *now_rfc3339(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  char buf[64];
  vs_utc_rfc3339(&ts, buf, sizeof(buf));
  return vs_strdup(buf);
}

/* img becomes the step's image (taken over). */
static void set_current(builder *b, vs_image img, bool cached) {
  if (b->have_cur)
    vs_image_clear(&b->cur);
  b->cur = img;
  b->have_cur = true;
  progress(b, "%s ---> %.12s\n", cached ? " ---> Using cache\n" : "",
           b->cur.manifest.config.digest + 7);
}

/* Store doc as the config of a new image with the current layers (plus extra, if given) and
 * make it the current one. */
static int save_image(builder *b, json_t *doc, const vs_descriptor *layers, size_t n,
                      vs_error **err) {
  _cleanup_free_ char *text = json_dumps(doc, JSON_COMPACT);
  char cfg[VS_DIGEST_MAX], md[VS_DIGEST_MAX];
  if (!text)
    return vs_error_set(err, ENOMEM, "encode the image config");
  if (vs_store_put_blob(b->s, NULL, text, strlen(text), cfg, err) < 0 ||
      vs_store_add_image(b->s, NULL, cfg, layers, n, md, err) < 0)
    return -1;
  vs_image next;
  if (vs_store_load_image(b->s, md, &next, err) < 0)
    return -1;
  set_current(b, next, false);
  return 0;
}

static void add_history(json_t *doc, const char *created_by, bool empty_layer) {
  _cleanup_free_ char *now = now_rfc3339();
  json_object_set_new(doc, "created", json_string(now));
  json_t *hist = json_object_get(doc, "history");
  if (!json_is_array(hist)) {
    hist = json_array();
    json_object_set_new(doc, "history", hist);
  }
  json_t *h = json_pack("{s:s, s:s}", "created", now, "created_by", created_by);
  if (empty_layer)
    json_object_set_new(h, "empty_layer", json_true());
  json_array_append_new(hist, h);
}

static int load_scratch(builder *b, vs_error **err) {
  json_t *doc = json_pack("{s:s, s:s, s:{s:s, s:[]}, s:{}}", "architecture", vs_arch_native(), "os",
                          "linux", "rootfs", "type", "layers", "diff_ids", "config");
  int r = save_image(b, doc, NULL, 0, err);
  json_decref(doc);
  return r;
}

static const char *meta_lookup(const char *name, void *ctx) {
  return json_string_value(json_object_get((json_t *)ctx, name));
}

static int run_step(builder *b, const vs_df_instr *in, vs_error **err);

/* The base image's ONBUILD triggers run right after its FROM, as Docker's; the stage's image
 * then has none of its own. */
static int run_triggers(builder *b, vs_error **err) {
  json_t *ob = json_object_get(json_object_get(b->cur.config.root, "config"), "OnBuild");
  size_t n = json_array_size(ob);
  if (!n)
    return 0;
  progress(b, "# Executing %zu build trigger%s\n", n, n == 1 ? "" : "s");
  _cleanup_free_ char *text = vs_strdup("");
  size_t i;
  json_t *v;
  json_array_foreach(ob, i, v) {
    char *next = vs_asprintf("%s%s\n", text, json_string_value(v) ? json_string_value(v) : "");
    free(text);
    text = next;
  }
  vs_dockerfile df;
  if (vs_dockerfile_parse(text, strlen(text), &df, err) < 0)
    return vs_error_wrap(err, "the base image's ONBUILD triggers");
  int r = 0;
  for (size_t k = 0; r == 0 && k < df.n; k++) {
    if (!strcmp(df.instrs[k].keyword, "from") || !strcmp(df.instrs[k].keyword, "onbuild"))
      r = vs_error_set(err, 0, "%s isn't allowed as an ONBUILD trigger", df.instrs[k].original);
    else if (run_step(b, &df.instrs[k], err) < 0)
      r = vs_error_wrap(err, "ONBUILD trigger %s", df.instrs[k].original);
  }
  vs_dockerfile_clear(&df);
  if (r < 0)
    return -1;
  json_t *doc = json_deep_copy(b->cur.config.root);
  json_object_del(json_object_get(doc, "config"), "OnBuild");
  r = save_image(b, doc, b->cur.manifest.layers, b->cur.manifest.n_layers, err);
  json_decref(doc);
  return r;
}

static int step_from(builder *b, const vs_df_instr *in, vs_error **err) {
  static const char *const flags[] = {"platform", NULL};
  if (vs_df_flags_check(in, flags, err) < 0)
    return -1;
  const char *platform = vs_df_flag(in, "platform");
  if (platform && strcmp(platform, vs_platform_native()) != 0)
    return vs_error_set(err, 0, "FROM --platform=%s: this builder makes %s images only", platform,
                        vs_platform_native());
  _cleanup_free_ char *ref = NULL;
  if (vs_df_expand_word(in->args[0], b->df.escape, meta_lookup, b->meta_args, &ref, err) < 0)
    return -1;
  json_decref(b->st.args);
  b->st = (vs_build_stage){
      .build_args = b->o->build_args, .meta_args = b->meta_args, .escape = b->df.escape};
  b->nstages++;
  b->stages = vs_realloc(b->stages, b->nstages * sizeof(stage));
  stage *sg = &b->stages[b->nstages - 1];
  memset(sg, 0, sizeof(*sg));
  if (in->nargs == 3)
    sg->name = vs_strdup(in->args[2]);
  for (size_t i = 0; i + 1 < b->nstages; i++)
    if (b->stages[i].name && !strcasecmp(b->stages[i].name, ref)) {
      vs_image img;
      if (vs_store_load_image(b->s, b->stages[i].img.manifest_digest, &img, err) < 0)
        return -1;
      set_current(b, img, false);
      return 0;
    }
  if (!strcmp(ref, "scratch"))
    return load_scratch(b, err);
  vs_image img;
  if (vs_store_resolve(b->s, ref, &img, err) < 0)
    return vs_error_wrap(err, "FROM %s (images are not pulled by the builder: pull it first)", ref);
  set_current(b, img, false);
  return run_triggers(b, err);
}

static char *make_tmp(builder *b, vs_error **err);
static int mount_image(builder *b, const vs_image *img, const char *dir, vs_error **err);
static int commit_upper(builder *b, const char *upper, const char *created_by, vs_error **err);

static bool dir_empty(const char *path) {
  DIR *d = opendir(path);
  if (!d)
    return true;
  struct dirent *de;
  bool empty = true;
  while (empty && (de = readdir(d)))
    empty = !strcmp(de->d_name, ".") || !strcmp(de->d_name, "..");
  closedir(d);
  return empty;
}

/* WORKDIR creates its directory when the image lacks it (a layer then, as Docker's). */
static int make_workdir(builder *b, const char *by, vs_error **err) {
  const char *dir = json_string_value(
      json_object_get(json_object_get(b->cur.config.root, "config"), "WorkingDir"));
  if (!dir || !*dir)
    return 0;
  _cleanup_free_ char *tmp = make_tmp(b, err);
  if (!tmp || vs_store_lock(b->s, false, err) < 0)
    return -1;
  int rootfd = mount_image(b, &b->cur, tmp, err);
  vs_store_unlock(b->s);
  int r = rootfd < 0 ? -1 : vs_mkdir_p_in_root(rootfd, dir, 0755, err);
  if (rootfd >= 0)
    close(rootfd);
  _cleanup_free_ char *rootfs = vs_asprintf("%s/rootfs", tmp);
  _cleanup_free_ char *upper = vs_asprintf("%s/upper", tmp);
  umount2(rootfs, 0);
  if (r == 0 && !dir_empty(upper))
    r = commit_upper(b, upper, by, err);
  vs_build_drop_dir(tmp);
  return r;
}

static int step_config(builder *b, const vs_df_instr *in, vs_error **err) {
  json_t *doc = json_deep_copy(b->cur.config.root);
  int r = vs_build_apply_config(doc, &b->st, in, err);
  _cleanup_free_ char *by = vs_asprintf("/bin/sh -c #(nop)  %s", in->original);
  if (r == 0) {
    add_history(doc, by, true);
    r = save_image(b, doc, b->cur.manifest.layers, b->cur.manifest.n_layers, err);
  }
  json_decref(doc);
  if (r == 0 && !strcmp(in->keyword, "workdir"))
    r = make_workdir(b, by, err);
  return r;
}

/* The ids of name in the image's passwd (uid, gid) or group (gid) file. */
static int lookup_name(int rootfd, const char *file, const char *name, uint64_t *id, uint64_t *gid,
                       vs_error **err) {
  vs_error *e = NULL;
  int fd = vs_openat_in_root(rootfd, file, O_RDONLY, 0, &e);
  vs_error_free(e);
  FILE *f = fd < 0 ? NULL : fdopen(fd, "r");
  if (!f) {
    if (fd >= 0)
      close(fd);
    return vs_error_set(err, 0, "--chown: no %s in the image to find %s in", file, name);
  }
  char *line = NULL;
  size_t cap = 0;
  int r = vs_error_set(err, 0, "--chown: no %s named %s in the image's %s",
                       strstr(file, "passwd") ? "user" : "group", name, file);
  while (r < 0 && getline(&line, &cap, f) > 0) {
    char *fields[4] = {0};
    char *save = NULL, *p = line;
    for (int n = 0; n < 4; n++, p = NULL)
      fields[n] = strtok_r(p, ":\n", &save);
    if (!fields[0] || strcmp(fields[0], name) != 0 || !fields[2])
      continue;
    vs_error *pe = NULL;
    if (vs_parse_u64(fields[2], file, id, &pe) == 0 &&
        (!gid || (fields[3] && vs_parse_u64(fields[3], file, gid, &pe) == 0))) {
      vs_error_free(*err);
      *err = NULL;
      r = 0;
    }
    vs_error_free(pe);
  }
  free(line);
  fclose(f);
  return r;
}

/* --chown=user[:group], numbers or names of the image's /etc/passwd and /etc/group; a user
 * alone gives its group (its own number, or a named user's primary group). */
static int parse_chown(int rootfd, const char *spec, vs_copy_opts *o, vs_error **err) {
  _cleanup_free_ char *copy = vs_strdup(spec);
  char *colon = strchr(copy, ':');
  if (colon)
    *colon = 0;
  uint64_t uid, gid;
  vs_error *e = NULL;
  if (vs_parse_u64(copy, "--chown user", &uid, &e) == 0)
    gid = uid;
  else if (lookup_name(rootfd, "/etc/passwd", copy, &uid, &gid, err) < 0) {
    vs_error_free(e);
    return -1;
  }
  vs_error_free(e);
  e = NULL;
  if (colon && vs_parse_u64(colon + 1, "--chown group", &gid, &e) < 0 &&
      lookup_name(rootfd, "/etc/group", colon + 1, &gid, NULL, err) < 0) {
    vs_error_free(e);
    return -1;
  }
  vs_error_free(e);
  if (uid > 0xfffffffeULL || gid > 0xfffffffeULL)
    return vs_error_set(err, 0, "--chown=%s: ids out of range", spec);
  o->uid = (uid_t)uid;
  o->gid = (gid_t)gid;
  return 0;
}

/* ADD's local archives: tar, alone or compressed (gzip, bzip2, xz, zstd), by their magic. */
static bool is_archive(int srcfd, const char *rel) {
  unsigned char h[512];
  int fd = openat(srcfd, rel, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0)
    return false;
  ssize_t n = pread(fd, h, sizeof(h), 0);
  close(fd);
  if (n < 6)
    return false;
  return (h[0] == 0x1f && h[1] == 0x8b) || !memcmp(h, "BZh", 3) ||
         !memcmp(h,
                 "\xfd"
                 "7zXZ\0",
                 6) ||
         !memcmp(h, "\x28\xb5\x2f\xfd", 4) || (n == 512 && !memcmp(h + 257, "ustar", 5));
}

/* Unpack a local archive of ADD into the directory dest (relative to workdir) of the root,
 * every entry resolved inside it as a layer's are. */
static int add_archive(int srcfd, const char *rel, int rootfd, const char *dest,
                       const char *workdir, vs_error **err) {
  _cleanup_free_ char *joined =
      dest[0] == '/' ? vs_strdup(dest)
                     : vs_asprintf("%s/%s", workdir && *workdir ? workdir : "/", dest);
  _cleanup_free_ char *clean = vs_img_path_clean(joined, strlen(joined));
  if (vs_mkdir_p_in_root(rootfd, clean, 0755, err) < 0)
    return -1;
  _cleanup_close_ int dfd = vs_openat_in_root(rootfd, clean, O_RDONLY | O_DIRECTORY, 0, err);
  _cleanup_close_ int fd = openat(srcfd, rel, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (dfd < 0)
    return -1;
  if (fd < 0)
    return vs_error_set(err, errno, "open %s in the build context", rel);
  vs_layer_limits lim = {.allow_devices = false};
  if (vs_layer_apply(fd, dfd, &lim, NULL, err) < 0)
    return vs_error_wrap(err, "ADD %s", rel);
  return 0;
}

static int copy_sources(builder *b, const vs_df_instr *in, int srcfd, const vs_ignore *ig,
                        int rootfd, const vs_copy_opts *co, vs_error **err) {
  char **words = NULL;
  size_t nw = 0, cap = 0;
  int r = 0;
  for (size_t i = 0; i < in->nargs && r == 0; i++) {
    char **part = NULL;
    size_t np = 0;
    r = vs_build_expand_words(b->cur.config.root, &b->st, in->args[i], &part, &np, err);
    for (size_t j = 0; r == 0 && j < np; j++) {
      if (nw + 1 >= cap) {
        cap = (nw + 1) * 2;
        words = vs_realloc(words, cap * sizeof(char *));
      }
      words[nw++] = part[j];
      part[j] = NULL;
    }
    for (size_t j = 0; j < np; j++)
      free(part[j]);
    free(part);
  }
  if (r == 0 && nw < 2)
    r = vs_error_set(err, 0, "COPY requires at least two arguments");
  const char *workdir = json_string_value(
      json_object_get(json_object_get(b->cur.config.root, "config"), "WorkingDir"));
  for (size_t i = 0; r == 0 && i + 1 < nw; i++) {
    char **srcs = NULL;
    size_t n = 0;
    r = vs_build_context_glob(srcfd, words[i], ig, &srcs, &n, err);
    bool glob = strpbrk(words[i], "*?[") != NULL;
    for (size_t j = 0; r == 0 && j < n; j++) {
      /* ADD unpacks local archives; everything else is copied as COPY does */
      if (!strcmp(in->keyword, "add") && is_archive(srcfd, srcs[j]))
        r = add_archive(srcfd, srcs[j], rootfd, words[nw - 1], workdir, err);
      else
        r = vs_build_copy(srcfd, &srcs[j], 1, glob || nw > 2 || n > 1, rootfd, words[nw - 1],
                          workdir, co, err);
    }
    for (size_t j = 0; j < n; j++)
      free(srcs[j]);
    free(srcs);
  }
  for (size_t i = 0; i < nw; i++)
    free(words[i]);
  free(words);
  return r;
}

static char *make_tmp(builder *b, vs_error **err) {
  _cleanup_free_ char *base = vs_asprintf("%s/tmp", vs_store_root(b->s));
  if (vs_mkdir_p(base, 0700, err) < 0)
    return NULL;
  char *dir = vs_asprintf("%s/build-XXXXXX", base);
  if (!mkdtemp(dir)) {
    vs_error_set(err, errno, "mkdtemp %s", dir);
    free(dir);
    return NULL;
  }
  return dir;
}

/* Mount img at dir/rootfs (the upper at dir/upper) and open it. */
static int mount_image(builder *b, const vs_image *img, const char *dir, vs_error **err) {
  _cleanup_free_ char *rootfs = vs_asprintf("%s/rootfs", dir);
  if (vs_rootfs_mount(b->s, img, dir, rootfs, err) < 0)
    return -1;
  int fd = open(rootfs, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    vs_error_set(err, errno, "open %s", rootfs);
    umount2(rootfs, MNT_DETACH);
  }
  return fd;
}

void vs_build_drop_dir(const char *dir) {
  _cleanup_free_ char *rootfs = vs_asprintf("%s/rootfs", dir);
  umount2(rootfs, MNT_DETACH);
  vs_error *e = NULL;
  if (vs_rm_rf(dir, &e) < 0)
    vs_log_warn("remove %s: %s", dir, e->msg);
  vs_error_free(e);
}

/* The --from source: an earlier stage by name or index, else a stored image. */
static int from_image(builder *b, const char *from, vs_image *img, vs_error **err) {
  for (size_t i = 0; i < b->nstages; i++) {
    char idx[24];
    snprintf(idx, sizeof(idx), "%zu", i);
    if ((b->stages[i].name && !strcasecmp(b->stages[i].name, from)) || !strcmp(idx, from)) {
      if (i + 1 == b->nstages)
        return vs_error_set(err, 0, "COPY --from=%s: a stage cannot copy from itself", from);
      return vs_store_load_image(b->s, b->stages[i].img.manifest_digest, img, err);
    }
  }
  return vs_store_resolve(b->s, from, img, err);
}

/* The upper directory of a step becomes its layer; the history entry says what the step did. */
static int commit_upper(builder *b, const char *upper, const char *created_by, vs_error **err) {
  char md[VS_DIGEST_MAX];
  vs_image made;
  if (vs_image_commit_taking_upper(b->s, &b->cur, upper, md, err) < 0 ||
      vs_store_load_image(b->s, md, &made, err) < 0)
    return -1;
  json_t *doc = json_deep_copy(made.config.root);
  json_t *hist = json_object_get(doc, "history");
  json_t *last = json_array_get(hist, json_array_size(hist) - 1);
  json_object_set_new(last, "created_by", json_string(created_by));
  json_object_del(last, "comment");
  int r = save_image(b, doc, made.manifest.layers, made.manifest.n_layers, err);
  json_decref(doc);
  vs_image_clear(&made);
  return r;
}

static int step_copy(builder *b, const vs_df_instr *in, vs_error **err) {
  /* (flags checked by run_step) */
  vs_copy_opts co = {.uid = 0, .gid = 0, .mode = -1};
  const char *chown = vs_df_flag(in, "chown"), *chmod_ = vs_df_flag(in, "chmod");
  if (chmod_) {
    char *end;
    long m = strtol(chmod_, &end, 8);
    if (!*chmod_ || *end || m < 0 || m > 07777)
      return vs_error_set(err, 0, "--chmod=%s: not an octal mode", chmod_);
    co.mode = (int)m;
  }
  _cleanup_free_ char *tmp = make_tmp(b, err);
  if (!tmp)
    return -1;
  _cleanup_free_ char *stage_tmp = NULL;
  int r = -1, rootfd = -1, srcfd = b->ctxfd;
  const char *from = vs_df_flag(in, "from");
  vs_image src = {0};
  bool have_src = false;
  if (from) {
    if (from_image(b, from, &src, err) < 0)
      goto out;
    have_src = true;
    stage_tmp = make_tmp(b, err);
    if (!stage_tmp)
      goto out;
  }
  /* the layers under the overlays stay while they are mounted (no garbage collection) */
  if (vs_store_lock(b->s, false, err) < 0)
    goto out;
  if (from)
    srcfd = mount_image(b, &src, stage_tmp, err);
  rootfd = srcfd < 0 ? -1 : mount_image(b, &b->cur, tmp, err);
  vs_store_unlock(b->s);
  if (rootfd < 0)
    goto out;
  co.ig = from ? NULL : b->ig;
  r = chown ? parse_chown(rootfd, chown, &co, err) : 0;
  if (r == 0)
    r = copy_sources(b, in, srcfd, co.ig, rootfd, &co, err);
  close(rootfd);
  if (r == 0) {
    _cleanup_free_ char *rootfs = vs_asprintf("%s/rootfs", tmp);
    _cleanup_free_ char *upper = vs_asprintf("%s/upper", tmp);
    _cleanup_free_ char *by = vs_asprintf("/bin/sh -c #(nop) %s", in->original);
    umount2(rootfs, 0);
    r = commit_upper(b, upper, by, err);
  }
out:
  if (stage_tmp) {
    if (srcfd >= 0 && srcfd != b->ctxfd)
      close(srcfd);
    vs_build_drop_dir(stage_tmp);
  }
  if (have_src)
    vs_image_clear(&src);
  vs_build_drop_dir(tmp);
  return r;
}

/* RUN: the command (the shell form through SHELL) in a container of the step's image, with the
 * stage's ARGs in its environment as Docker passes them; its changes become the layer. */
static int step_run(builder *b, const vs_df_instr *in, vs_error **err) {
  if (vs_df_flags_check(in, NULL, err) < 0)
    return -1;
  if (!b->o->run)
    return vs_error_set(err, 0,
                        "RUN is not supported through vesseld yet (vessel build without "
                        "a daemon runs it)");
  json_t *cfg = json_object_get(b->cur.config.root, "config");
  json_t *args = json_array();
  if (!in->json) {
    json_t *shell = json_object_get(cfg, "Shell");
    if (json_is_array(shell) && json_array_size(shell))
      json_array_extend(args, shell);
    else {
      json_array_append_new(args, json_string("/bin/sh"));
      json_array_append_new(args, json_string("-c"));
    }
  }
  for (size_t i = 0; i < in->nargs; i++)
    json_array_append_new(args, json_string(in->args[i]));
  json_t *env = json_array();
  const char *k;
  json_t *v;
  json_object_foreach(b->st.args, k, v) {
    if (json_is_string(v))
      json_array_append_new(env, json_sprintf("%s=%s", k, json_string_value(v)));
  }
  _cleanup_free_ char *upper = NULL, *handle = NULL;
  int status = b->o->run(b->o->run_ctx, b->cur.manifest_digest, args, env, &upper, &handle, err);
  int r = -1;
  if (status > 0) {
    _cleanup_free_ char *shown = json_dumps(args, JSON_COMPACT);
    vs_error_set(err, 0, "The command '%s' returned a non-zero code: %d",
                 in->json ? shown : in->args[0], status);
  } else if (status == 0) {
    _cleanup_free_ char *by =
        in->json ? json_dumps(args, JSON_COMPACT) : vs_asprintf("/bin/sh -c %s", in->args[0]);
    r = commit_upper(b, upper, by, err);
  }
  if (handle && b->o->remove)
    b->o->remove(b->o->run_ctx, handle);
  json_decref(args);
  json_decref(env);
  return r;
}

/* ------------------------------------------------------------ the step cache
 *
 * As the classic builder's: a step is reused when the same instruction (with the same ARG values
 * and, for COPY, the same content of its sources) ran on the same parent image before. The
 * index maps a key hashing those to the image the step made; it lives in the store
 * (build-cache.json) and an entry whose image is gone is a miss. */

static int cmp_names(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static void hash_str(vs_hasher *h, const char *s) { vs_hasher_update(h, s, strlen(s) + 1); }

/* A file's data enters the key as its own sha256: the daemon hashed the context's files while
 * they arrived (known), so a cached build need not read them again. */
static int file_digest(int srcfd, const char *rel, const struct stat *st,
                       const vs_file_digests *known, char digest[VS_DIGEST_MAX], vs_error **err) {
  if (vs_file_digests_get(known, st, digest))
    return 0;
  int fd = openat(srcfd, rel, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0)
    return vs_error_set(err, errno, "open %s in the build context", rel);
  vs_hasher *fh = vs_hasher_new();
  char buf[1 << 16];
  ssize_t n;
  while ((n = read(fd, buf, sizeof(buf))) > 0)
    vs_hasher_update(fh, buf, (size_t)n);
  int e = errno;
  close(fd);
  if (n < 0) {
    vs_hasher_free(fh);
    return vs_error_set(err, e, "read %s", rel);
  }
  vs_hasher_finish(fh, digest);
  return 0;
}

/* Path, type, mode, owner-independent: what COPY takes from a source tree. */
static int hash_tree(int srcfd, const char *rel, const vs_ignore *ig, const vs_file_digests *known,
                     vs_hasher *h, vs_error **err) {
  struct stat st;
  if (fstatat(srcfd, rel, &st, AT_SYMLINK_NOFOLLOW) < 0)
    return vs_error_set(err, errno, "stat %s in the build context", rel);
  char head[64];
  snprintf(head, sizeof(head), "%o", (unsigned)st.st_mode);
  hash_str(h, rel);
  hash_str(h, head);
  if (S_ISLNK(st.st_mode)) {
    char target[PATH_MAX];
    ssize_t n = readlinkat(srcfd, rel, target, sizeof(target) - 1);
    if (n < 0)
      return vs_error_set(err, errno, "read the link %s", rel);
    target[n] = 0;
    hash_str(h, target);
    return 0;
  }
  if (S_ISREG(st.st_mode)) {
    char digest[VS_DIGEST_MAX];
    if (file_digest(srcfd, rel, &st, known, digest, err) < 0)
      return -1;
    hash_str(h, digest);
    return 0;
  }
  if (!S_ISDIR(st.st_mode))
    return 0;
  int dfd = openat(srcfd, rel, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  DIR *d = dfd < 0 ? NULL : fdopendir(dfd);
  if (!d) {
    if (dfd >= 0)
      close(dfd);
    return vs_error_set(err, errno, "read %s in the build context", rel);
  }
  char **names = NULL;
  size_t n = 0;
  struct dirent *de;
  while ((de = readdir(d))) {
    if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
      continue;
    names = vs_realloc(names, (n + 1) * sizeof(char *));
    names[n++] = strcmp(rel, ".") ? vs_asprintf("%s/%s", rel, de->d_name) : vs_strdup(de->d_name);
  }
  closedir(d);
  if (n)
    qsort(names, n, sizeof(char *), cmp_names);
  int r = 0;
  for (size_t i = 0; i < n; i++) {
    if (r == 0 && !vs_dockerignore_match(ig, names[i]))
      r = hash_tree(srcfd, names[i], ig, known, h, err);
    free(names[i]);
  }
  free(names);
  return r;
}

/* What a COPY reads: its sources' content from the context, or the --from image's digest. */
static int copy_checksum(builder *b, const vs_df_instr *in, vs_hasher *h, vs_error **err) {
  const char *from = vs_df_flag(in, "from");
  if (from) {
    vs_image img;
    if (from_image(b, from, &img, err) < 0)
      return -1;
    hash_str(h, img.manifest_digest);
    vs_image_clear(&img);
    return 0;
  }
  int r = 0;
  for (size_t i = 0; r == 0 && i + 1 < in->nargs; i++) {
    char **words = NULL;
    size_t nw = 0;
    r = vs_build_expand_words(b->cur.config.root, &b->st, in->args[i], &words, &nw, err);
    for (size_t j = 0; j < nw; j++) {
      char **srcs = NULL;
      size_t n = 0;
      if (r == 0)
        r = vs_build_context_glob(b->ctxfd, words[j], b->ig, &srcs, &n, err);
      for (size_t k = 0; k < n; k++) {
        if (r == 0)
          r = hash_tree(b->ctxfd, srcs[k], b->ig, b->o->context_digests, h, err);
        free(srcs[k]);
      }
      free(srcs);
      free(words[j]);
    }
    free(words);
  }
  return r;
}

static int cache_key(builder *b, const vs_df_instr *in, char key[VS_DIGEST_MAX], vs_error **err) {
  vs_hasher *h = vs_hasher_new();
  hash_str(h, b->cur.manifest_digest);
  hash_str(h, in->original);
  _cleanup_free_ char *args =
      b->st.args ? json_dumps(b->st.args, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
  hash_str(h, args ? args : "{}");
  if ((!strcmp(in->keyword, "copy") || !strcmp(in->keyword, "add")) &&
      copy_checksum(b, in, h, err) < 0) {
    vs_hasher_free(h);
    return -1;
  }
  vs_hasher_finish(h, key);
  return 0;
}

static char *cache_path(const builder *b) {
  return vs_asprintf("%s/build-cache.json", vs_store_root(b->s));
}

static json_t *cache_load(const builder *b) {
  _cleanup_free_ char *path = cache_path(b);
  json_t *c = json_load_file(path, JSON_REJECT_DUPLICATES, NULL);
  if (!json_is_object(c)) {
    json_decref(c);
    c = json_object();
  }
  return c;
}

/* The image a step made before, made current; false on a miss. */
static bool cache_hit(builder *b, const char *key) {
  json_t *c = cache_load(b);
  const char *md = json_string_value(json_object_get(c, key));
  vs_image img;
  vs_error *e = NULL;
  bool hit = md && vs_store_load_image(b->s, md, &img, &e) == 0;
  vs_error_free(e);
  json_decref(c);
  if (!hit)
    return false;
  set_current(b, img, true);
  return true;
}

static void cache_put(builder *b, const char *key) {
  json_t *c = cache_load(b);
  json_object_set_new(c, key, json_string(b->cur.manifest_digest));
  _cleanup_free_ char *path = cache_path(b);
  _cleanup_free_ char *text = json_dumps(c, JSON_COMPACT);
  vs_error *e = NULL;
  if (text && vs_write_file_atomic(path, text, strlen(text), 0600, &e) < 0)
    vs_log_warn("build cache: %s", e->msg);
  vs_error_free(e);
  json_decref(c);
}

static int run_step_uncached(builder *b, const vs_df_instr *in, vs_error **err);

static int run_step(builder *b, const vs_df_instr *in, vs_error **err) {
  if (!strcmp(in->keyword, "from") || !b->have_cur)
    return run_step_uncached(b, in, err);
  for (size_t i = 0; !strcmp(in->keyword, "add") && i + 1 < in->nargs; i++)
    if (strstr(in->args[i], "://"))
      return vs_error_set(err, 0, "ADD %s: URLs are not supported (no network access for builds)",
                          in->args[i]);
  /* flags first: the cache key of COPY reads what --from names */
  static const char *const copy_flags[] = {"from", "chown", "chmod", NULL};
  static const char *const add_flags[] = {"chown", "chmod", NULL};
  if ((!strcmp(in->keyword, "copy") && vs_df_flags_check(in, copy_flags, err) < 0) ||
      (!strcmp(in->keyword, "add") && vs_df_flags_check(in, add_flags, err) < 0))
    return -1;
  char key[VS_DIGEST_MAX];
  if (cache_key(b, in, key, err) < 0)
    return -1;
  if (!b->o->nocache && cache_hit(b, key)) {
    /* ARG and CMD change the stage's state as well as the image: replay them on a copy */
    if (strcmp(in->keyword, "run") != 0 && strcmp(in->keyword, "copy") != 0 &&
        strcmp(in->keyword, "add") != 0) {
      json_t *doc = json_deep_copy(b->cur.config.root);
      int r = vs_build_apply_config(doc, &b->st, in, err);
      json_decref(doc);
      return r < 0 ? -1 : 0;
    }
    return 0;
  }
  if (run_step_uncached(b, in, err) < 0)
    return -1;
  cache_put(b, key);
  return 0;
}

static int run_step_uncached(builder *b, const vs_df_instr *in, vs_error **err) {
  if (!strcmp(in->keyword, "from"))
    return step_from(b, in, err);
  if (!b->have_cur)
    return vs_error_set(err, 0, "no build stage in current context (FROM must come first)");
  if (!strcmp(in->keyword, "copy") || !strcmp(in->keyword, "add"))
    return step_copy(b, in, err);
  if (!strcmp(in->keyword, "run"))
    return step_run(b, in, err);
  return step_config(b, in, err);
}

static int read_context_file(builder *b, const char *name, bool must, char **text, size_t *len,
                             vs_error **err) {
  char **found = NULL;
  size_t n = 0;
  vs_error *e = NULL;
  *text = NULL;
  *len = 0;
  if (vs_build_context_glob(b->ctxfd, name, NULL, &found, &n, &e) < 0) {
    if (!must && e->errnum == ENOENT) {
      vs_error_free(e);
      return 0;
    }
    vs_error_free(*err);
    *err = e;
    return -1;
  }
  int fd = openat(b->ctxfd, found[0], O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  for (size_t i = 0; i < n; i++)
    free(found[i]);
  free(found);
  if (fd < 0)
    return vs_error_set(err, errno, "open %s in the build context", name);
  _cleanup_free_ char *path = vs_asprintf("/proc/self/fd/%d", fd);
  int r = vs_read_file(path, VS_DF_MAX_SIZE, text, len, err);
  close(fd);
  return r;
}

static void builder_clear(builder *b) {
  if (b->ctxfd >= 0)
    close(b->ctxfd);
  vs_dockerignore_free(b->ig);
  vs_dockerfile_clear(&b->df);
  json_decref(b->meta_args);
  json_decref(b->st.args);
  for (size_t i = 0; i < b->nstages; i++) {
    free(b->stages[i].name);
    if (b->stages[i].img.manifest_raw)
      vs_image_clear(&b->stages[i].img);
  }
  free(b->stages);
  if (b->have_cur)
    vs_image_clear(&b->cur);
}

/* Remember the finished stage's image (for FROM and COPY --from). */
static int close_stage(builder *b, vs_error **err) {
  if (!b->nstages || !b->have_cur)
    return 0;
  return vs_store_load_image(b->s, b->cur.manifest_digest, &b->stages[b->nstages - 1].img, err);
}

static int tag_result(builder *b, vs_error **err) {
  for (size_t i = 0; i < b->o->ntags; i++) {
    vs_image_ref ref;
    if (vs_image_ref_parse(b->o->tags[i], &ref, err) < 0)
      return vs_error_wrap(err, "tag %s", b->o->tags[i]);
    _cleanup_free_ char *full = vs_image_ref_string(&ref);
    vs_image_ref_clear(&ref);
    if (vs_store_tag_set(b->s, full, b->cur.manifest_digest, err) < 0)
      return -1;
    /* Docker prints the familiar name with its tag ("t1:latest" for "-t t1"): scripts and
     * docker-compose's output are read for it */
    _cleanup_free_ char *shown = vs_image_name_familiar(full);
    progress(b, "Successfully tagged %s\n", shown);
  }
  return 0;
}

static int build_steps(builder *b, vs_error **err) {
  size_t steps = b->df.n;
  for (size_t i = 0; i < b->df.n; i++) {
    const vs_df_instr *in = &b->df.instrs[i];
    if (!strcmp(in->keyword, "from")) {
      if (close_stage(b, err) < 0)
        return -1;
      if (b->o->target && b->nstages && b->stages[b->nstages - 1].name &&
          !strcasecmp(b->stages[b->nstages - 1].name, b->o->target))
        break;
    }
    progress(b, "Step %zu/%zu : %s\n", i + 1, steps, in->original);
    if (!b->have_cur && !strcmp(in->keyword, "arg")) {
      json_t *dummy = json_object();
      vs_build_stage meta = {
          .args = b->meta_args, .build_args = b->o->build_args, .escape = b->df.escape};
      int r = vs_build_apply_config(dummy, &meta, in, err);
      json_decref(dummy);
      if (r < 0)
        return vs_error_wrap(err, "Dockerfile line %d", in->line);
      continue;
    }
    if (run_step(b, in, err) < 0)
      return vs_error_wrap(err, "Dockerfile line %d: %s", in->line, in->original);
  }
  if (b->o->target) {
    bool found = false;
    for (size_t i = 0; i < b->nstages; i++)
      found = found || (b->stages[i].name && !strcasecmp(b->stages[i].name, b->o->target));
    if (!found)
      return vs_error_set(err, 0, "failed to reach build target %s in Dockerfile", b->o->target);
  }
  if (json_object_size(b->o->labels)) {
    _cleanup_free_ char *text = json_dumps(b->o->labels, JSON_COMPACT | JSON_SORT_KEYS);
    vs_hasher *h = vs_hasher_new();
    char key[VS_DIGEST_MAX];
    hash_str(h, b->cur.manifest_digest);
    hash_str(h, "--label");
    hash_str(h, text ? text : "");
    vs_hasher_finish(h, key);
    if (!b->o->nocache && cache_hit(b, key))
      return 0;
    json_t *doc = json_deep_copy(b->cur.config.root);
    json_t *cfg = json_object_get(doc, "config");
    if (!json_is_object(cfg)) {
      cfg = json_object();
      json_object_set_new(doc, "config", cfg);
    }
    json_t *labels = json_object_get(cfg, "Labels");
    if (!json_is_object(labels)) {
      labels = json_object();
      json_object_set_new(cfg, "Labels", labels);
    }
    json_object_update(labels, (json_t *)b->o->labels);
    add_history(doc, "/bin/sh -c #(nop)  LABEL (from the build options)", true);
    int r = save_image(b, doc, b->cur.manifest.layers, b->cur.manifest.n_layers, err);
    json_decref(doc);
    if (r < 0)
      return -1;
    cache_put(b, key);
  }
  return 0;
}

int vs_build(vs_store *s, const vs_build_opts *o, char id_out[VS_DIGEST_MAX], vs_error **err) {
  builder b = {.s = s, .o = o, .ctxfd = -1, .meta_args = json_object()};
  int r = -1;
  _cleanup_free_ char *text = NULL, *ignore = NULL;
  size_t len, ilen;
  b.ctxfd = open(o->context, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (b.ctxfd < 0) {
    vs_error_set(err, errno, "open the build context %s", o->context);
    goto out;
  }
  if (read_context_file(&b, o->dockerfile ? o->dockerfile : "Dockerfile", true, &text, &len, err) <
          0 ||
      read_context_file(&b, ".dockerignore", false, &ignore, &ilen, err) < 0)
    goto out;
  if (ignore && vs_dockerignore_parse(ignore, ilen, &b.ig, err) < 0)
    goto out;
  if (vs_dockerfile_parse(text, len, &b.df, err) < 0)
    goto out;
  if (b.df.n == 0) {
    vs_error_set(err, 0, "the Dockerfile has no instructions");
    goto out;
  }
  if (build_steps(&b, err) < 0)
    goto out;
  if (!b.have_cur) {
    vs_error_set(err, 0, "no build stage in the Dockerfile (FROM is missing)");
    goto out;
  }
  progress(&b, "Successfully built %.12s\n", b.cur.manifest.config.digest + 7);
  if (tag_result(&b, err) < 0)
    goto out;
  memcpy(id_out, b.cur.manifest_digest, VS_DIGEST_MAX);
  r = 0;
out:
  builder_clear(&b);
  return r;
}
