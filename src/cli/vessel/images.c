/* vessel images / rmi / tag / image ... / inspect / image prune / system df */
#include "cli.h"

#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <string.h>
#include <time.h>

char *vessel_human_size(uint64_t b) {
  if (b < 1000)
    return vs_asprintf("%lluB", (unsigned long long)b);
  if (b < 1000000)
    return vs_asprintf("%.3gkB", (double)b / 1e3);
  if (b < 1000000000)
    return vs_asprintf("%.3gMB", (double)b / 1e6);
  return vs_asprintf("%.3gGB", (double)b / 1e9);
}

char *vessel_human_time(const char *t) {
  struct tm tm = {0};
  if (!t || !strptime(t, "%Y-%m-%dT%H:%M:%S", &tm))
    return vs_strdup("N/A");
  time_t then = timegm(&tm), now = time(NULL);
  long d = (long)(now - then);
  if (d < 0)
    d = 0;
  if (d < 60)
    return vs_asprintf("%ld seconds ago", d);
  if (d < 3600)
    return vs_asprintf("%ld minutes ago", d / 60);
  if (d < 86400)
    return vs_asprintf("%ld hours ago", d / 3600);
  if (d < 86400L * 60)
    return vs_asprintf("%ld days ago", d / 86400);
  if (d < 86400L * 365 * 2)
    return vs_asprintf("%ld months ago", d / (86400L * 30));
  return vs_asprintf("%ld years ago", d / (86400L * 365));
}

static int images_list(vessel_ctx *ctx, bool quiet, bool no_trunc, bool digests, vs_error **err) {
  vs_store *s = vessel_store(ctx, err);
  if (!s)
    return 125;
  json_t *tags = vs_store_tags(s, err);
  if (!tags)
    return 125;
  if (!quiet)
    printf("%-40s %-12s %s%-14s %-16s %s\n", "REPOSITORY", "TAG", digests ? "DIGEST" : "",
           "IMAGE ID", "CREATED", "SIZE");
  const char *key;
  json_t *val;
  json_object_foreach(tags, key, val) {
    vs_image img;
    if (vs_store_load_image(s, json_string_value(val), &img, NULL) < 0)
      continue;
    _cleanup_free_ char *fam = vs_image_name_familiar(key);
    char *sep = strrchr(fam, '@');
    char *colon = strrchr(fam, ':');
    const char *tag = "<none>";
    if (sep) {
      *sep = 0;
    } else if (colon && colon > strrchr(fam, '/') ? colon : NULL) {
      *colon = 0;
      tag = colon + 1;
    }
    const char *id = img.manifest.config.digest + 7;
    if (quiet) {
      printf("%.*s\n", no_trunc ? 64 : 12, id);
    } else {
      _cleanup_free_ char *created = vessel_human_time(img.config.created);
      _cleanup_free_ char *size = vessel_human_size((uint64_t)vs_image_size(&img));
      printf("%-40s %-12s %s%s%-14.*s %-16s %s\n", fam, tag, digests ? img.manifest_digest : "",
             digests ? " " : "", no_trunc ? 71 : 12, no_trunc ? img.manifest.config.digest : id,
             created, size);
    }
    vs_image_clear(&img);
  }
  json_decref(tags);
  return 0;
}

int cmd_images(vessel_ctx *ctx, int argc, char **argv, vs_error **err) {
  static const struct option opts[] = {{"quiet", no_argument, 0, 'q'},
                                       {"no-trunc", no_argument, 0, 'n'},
                                       {"digests", no_argument, 0, 'd'},
                                       {0, 0, 0, 0}};
  bool quiet = false, no_trunc = false, digests = false;
  int c;
  optind = 1;
  while ((c = getopt_long(argc, argv, "+q", opts, NULL)) != -1) {
    if (c == 'q')
      quiet = true;
    else if (c == 'n')
      no_trunc = true;
    else if (c == 'd')
      digests = true;
    else
      return 125;
  }
  return images_list(ctx, quiet, no_trunc, digests, err);
}

/* Remove every tag naming `what` (a name removes just that tag, an ID removes all its tags). */
static int untag(vs_store *s, const char *what, vs_error **err) {
  vs_image_ref ref;
  if (vs_image_ref_parse(what, &ref, NULL) == 0) {
    _cleanup_free_ char *full = vs_image_ref_string(&ref);
    vs_image_ref_clear(&ref);
    vs_error *e = NULL;
    if (vs_store_tag_remove(s, full, &e) == 0) {
      printf("Untagged: %s\n", full);
      return 0;
    }
    vs_error_free(e);
  }
  vs_image img;
  if (vs_store_resolve(s, what, &img, err) < 0)
    return -1;
  json_t *tags = vs_store_tags(s, err);
  if (!tags) {
    vs_image_clear(&img);
    return -1;
  }
  const char *key;
  json_t *val;
  int r = 0;
  json_object_foreach(tags, key, val) {
    vs_image other;
    if (vs_store_load_image(s, json_string_value(val), &other, NULL) < 0)
      continue;
    if (!strcmp(other.manifest.config.digest, img.manifest.config.digest)) {
      if (vs_store_tag_remove(s, key, err) < 0)
        r = -1;
      else
        printf("Untagged: %s\n", key);
    }
    vs_image_clear(&other);
  }
  printf("Deleted: %s\n", img.manifest.config.digest);
  json_decref(tags);
  vs_image_clear(&img);
  return r;
}

int cmd_rmi(vessel_ctx *ctx, int argc, char **argv, vs_error **err) {
  optind = 1;
  int c;
  while ((c = getopt(argc, argv, "+f")) != -1)
    if (c != 'f')
      return 125;
  if (optind >= argc)
    return vs_error_set(err, EINVAL, "rmi: name at least one image"), 125;
  vs_store *s = vessel_store(ctx, err);
  if (!s)
    return 125;
  int rc = 0;
  for (int i = optind; i < argc; i++) {
    vs_error *e = NULL;
    if (untag(s, argv[i], &e) < 0) {
      vs_error_print(e, "vessel rmi");
      vs_error_free(e);
      rc = 1;
    }
  }
  vs_gc_stats st;
  if (vs_store_gc(s, &st, err) < 0)
    return 125;
  return rc;
}

int cmd_tag(vessel_ctx *ctx, int argc, char **argv, vs_error **err) {
  if (argc != 3)
    return vs_error_set(err, EINVAL, "usage: vessel tag SOURCE TARGET"), 125;
  vs_store *s = vessel_store(ctx, err);
  if (!s)
    return 125;
  vs_image img;
  if (vs_store_resolve(s, argv[1], &img, err) < 0)
    return 125;
  vs_image_ref ref;
  if (vs_image_ref_parse(argv[2], &ref, err) < 0 || !ref.tag) {
    if (!*err)
      vs_error_set(err, EINVAL, "tag %s: target needs a tag, not a digest", argv[2]);
    vs_image_clear(&img);
    return 125;
  }
  _cleanup_free_ char *full = vs_image_ref_string(&ref);
  vs_image_ref_clear(&ref);
  int r = vs_store_tag_set(s, full, img.manifest_digest, err);
  vs_image_clear(&img);
  return r < 0 ? 125 : 0;
}

static json_t *inspect_one(vs_store *s, const vs_image *img, json_t *tags) {
  json_t *repo_tags = json_array(), *repo_digests = json_array();
  const char *key;
  json_t *val;
  json_object_foreach(tags, key, val) {
    if (strcmp(json_string_value(val), img->manifest_digest) != 0)
      continue;
    if (strchr(key, '@'))
      continue;
    json_array_append_new(repo_tags, json_string(key));
    _cleanup_free_ char *name = vs_strdup(key);
    char *colon = strrchr(name, ':');
    if (colon)
      *colon = 0;
    _cleanup_free_ char *d = vs_asprintf("%s@%s", name, img->manifest_digest);
    json_array_append_new(repo_digests, json_string(d));
  }
  json_t *layers = json_array();
  for (size_t i = 0; i < img->config.n_diff_ids; i++)
    json_array_append_new(layers, json_string(img->config.diff_ids[i]));
  json_t *cfg = json_object_get(img->config.root, "config");
  json_t *o =
      json_pack("{s:s, s:s, s:s, s:o, s:o, s:s?, s:s?, s:s?, s:O?, s:I, s:{s:s, s:o}, s:s}", "Id",
                img->manifest.config.digest, "Digest", img->manifest_digest, "ManifestMediaType",
                img->manifest.media_type, "RepoTags", repo_tags, "RepoDigests", repo_digests,
                "Created", img->config.created, "Architecture", img->config.arch, "Os",
                img->config.os, "Config", cfg, "Size", (json_int_t)vs_image_size(img), "RootFS",
                "Type", "layers", "Layers", layers, "Store", vs_store_root(s));
  return o;
}

int cmd_inspect(vessel_ctx *ctx, int argc, char **argv, vs_error **err) {
  if (argc < 2)
    return vs_error_set(err, EINVAL, "usage: vessel image inspect IMAGE..."), 125;
  vs_store *s = vessel_store(ctx, err);
  if (!s)
    return 125;
  json_t *tags = vs_store_tags(s, err);
  if (!tags)
    return 125;
  json_t *out = json_array();
  int rc = 0;
  for (int i = 1; i < argc; i++) {
    vs_image img;
    vs_error *e = NULL;
    if (vs_store_resolve(s, argv[i], &img, &e) < 0) {
      vs_error_print(e, "vessel inspect");
      vs_error_free(e);
      rc = 1;
      continue;
    }
    json_array_append_new(out, inspect_one(s, &img, tags));
    vs_image_clear(&img);
  }
  _cleanup_free_ char *text = json_dumps(out, JSON_INDENT(4));
  printf("%s\n", text);
  json_decref(out);
  json_decref(tags);
  return rc;
}

int cmd_prune(vessel_ctx *ctx, int argc, char **argv, vs_error **err) {
  vs_store *s = vessel_store(ctx, err);
  if (!s)
    return 125;
  vs_gc_stats st;
  if (vs_store_gc(s, &st, err) < 0)
    return 125;
  _cleanup_free_ char *freed = vessel_human_size(st.bytes_freed);
  printf("Deleted %llu blobs and %llu layers\nTotal reclaimed space: %s\n",
         (unsigned long long)st.blobs_removed, (unsigned long long)st.layers_removed, freed);
  return 0;
}

static int system_df(vessel_ctx *ctx, vs_error **err) {
  vs_store *s = vessel_store(ctx, err);
  if (!s)
    return 125;
  json_t *tags = vs_store_tags(s, err);
  if (!tags)
    return 125;
  _cleanup_free_ char *b = vs_asprintf("%s/blobs", vs_store_root(s));
  _cleanup_free_ char *l = vs_asprintf("%s/layers", vs_store_root(s));
  _cleanup_free_ char *c = vs_asprintf("%s/containers", vs_store_root(s));
  size_t ncont = 0;
  DIR *d = opendir(c);
  if (d) {
    struct dirent *de;
    while ((de = readdir(d)))
      if (de->d_name[0] != '.')
        ncont++;
    closedir(d);
  }
  _cleanup_free_ char *bs = vessel_human_size(vs_img_du(b));
  _cleanup_free_ char *ls = vessel_human_size(vs_img_du(l));
  _cleanup_free_ char *cs = vessel_human_size(vs_img_du(c));
  printf("%-22s %-8s %s\n", "TYPE", "TOTAL", "SIZE");
  printf("%-22s %-8zu %s\n", "Images (blobs)", json_object_size(tags), bs);
  printf("%-22s %-8s %s\n", "Layers (unpacked)", "", ls);
  printf("%-22s %-8zu %s\n", "Containers", ncont, cs);
  json_decref(tags);
  return 0;
}

int cmd_system(vessel_ctx *ctx, int argc, char **argv, vs_error **err) {
  if (argc >= 2 && !strcmp(argv[1], "df"))
    return system_df(ctx, err);
  if (argc >= 2 && !strcmp(argv[1], "prune"))
    return cmd_prune(ctx, argc - 1, argv + 1, err);
  return vs_error_set(err, EINVAL, "usage: vessel system df|prune"), 125;
}

int cmd_image(vessel_ctx *ctx, int argc, char **argv, vs_error **err) {
  static const struct {
    const char *name;
    vessel_cmd_fn fn;
  } sub[] = {{"ls", cmd_images}, {"list", cmd_images}, {"inspect", cmd_inspect},
             {"rm", cmd_rmi},    {"prune", cmd_prune}, {"tag", cmd_tag},
             {"pull", cmd_pull}, {"push", cmd_push},   {"import", cmd_import},
             {"load", cmd_load}, {"save", cmd_save},   {"mount", cmd_mount}};
  if (argc < 2)
    return vs_error_set(err, EINVAL, "usage: vessel image ls|inspect|rm|prune|tag|pull|push"), 125;
  for (size_t i = 0; i < ARRAY_SIZE(sub); i++)
    if (!strcmp(argv[1], sub[i].name))
      return sub[i].fn(ctx, argc - 1, argv + 1, err);
  return vs_error_set(err, EINVAL, "unknown image command \"%s\"", argv[1]), 125;
}
