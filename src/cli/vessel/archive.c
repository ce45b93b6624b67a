/* vessel import / commit / load / save */
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <string.h>

static char *full_name(const char *name, vs_error **err) {
  vs_image_ref r;
  if (vs_image_ref_parse(name, &r, err) < 0)
    return NULL;
  char *s = vs_image_ref_string(&r);
  vs_image_ref_clear(&r);
  return s;
}

/* --change (Dockerfile instructions, applied by vs_config_apply_changes) into the array changes. */
static int parse_changes(int argc, char **argv, json_t *changes, const char **message,
                         vs_error **err) {
  static const struct option opts[] = {
      {"change", required_argument, 0, 'c'}, {"message", required_argument, 0, 'm'}, {0, 0, 0, 0}};
  int c;
  optind = 1;
  while ((c = getopt_long(argc, argv, "+c:m:", opts, NULL)) != -1) {
    if (c == 'c') {
      json_array_append_new(changes, json_string(optarg));
    } else if (c == 'm') {
      *message = optarg;
    } else {
      return vs_error_set(err, 0, "bad option");
    }
  }
  return optind;
}

static int import_with(vessel_ctx *ctx, const char *file, const char *target, json_t *changes,
                       vs_error **err) {
  _cleanup_free_ char *name = full_name(target, err);
  vs_store *s = name ? vessel_store(ctx, err) : NULL;
  char digest[VS_DIGEST_MAX];
  _cleanup_json_ json_t *config = json_object();
  if (!s || vs_config_apply_changes(config, changes, err) < 0 ||
      vs_image_import(s, file, name, config, digest, err) < 0)
    return 125;
  vs_image img;
  if (vs_store_load_image(s, digest, &img, err) < 0)
    return 125;
  printf("%s\n", img.manifest.config.digest);
  vs_image_clear(&img);
  return 0;
}

int cmd_import(vessel_ctx *ctx, int argc, char **argv, vs_error **err) {
  json_t *changes = json_array();
  const char *msg = NULL;
  int i = parse_changes(argc, argv, changes, &msg, err);
  int rc = 125;
  if (i >= 0 && i != argc - 2)
    vs_error_set(err, 0, "usage: vessel import [--change 'CMD ...'] ROOTFS.tar NAME[:TAG]");
  else if (i >= 0)
    rc = import_with(ctx, argv[i], argv[i + 1], changes, err);
  json_decref(changes);
  return rc;
}

static int commit_with(vessel_ctx *ctx, const char *container, const char *target, json_t *changes,
                       const char *msg, vs_error **err) {
  vs_store *s = vessel_store(ctx, err);
  if (!s)
    return 125;
  _cleanup_free_ char *id = vessel_container_find(ctx, container, err);
  if (!id)
    return 125;
  _cleanup_free_ char *name = target ? full_name(target, err) : NULL;
  if (target && !name)
    return 125;
  _cleanup_free_ char *imgfile = vs_asprintf("%s/containers/%s/image", ctx->root, id);
  _cleanup_free_ char *md = NULL;
  if (vs_read_file(imgfile, 128, &md, NULL, err) < 0)
    return 125;
  md[strcspn(md, "\n")] = 0;
  vs_image base;
  if (vs_store_load_image(s, md, &base, err) < 0)
    return 125;
  _cleanup_free_ char *upper = vs_asprintf("%s/containers/%s/upper", ctx->root, id);
  char digest[VS_DIGEST_MAX];
  json_t *base_config = json_object_get(base.config.root, "config");
  _cleanup_json_ json_t *config =
      json_is_object(base_config) ? json_deep_copy(base_config) : json_object();
  int r = vs_config_apply_changes(config, changes, err);
  if (r == 0)
    r = vs_image_commit(s, &base, upper, name, config, msg, NULL, digest, err);
  vs_image_clear(&base);
  if (r < 0)
    return 125;
  vs_image img;
  if (vs_store_load_image(s, digest, &img, err) < 0)
    return 125;
  printf("%s\n", img.manifest.config.digest);
  vs_image_clear(&img);
  return 0;
}

int cmd_commit(vessel_ctx *ctx, int argc, char **argv, vs_error **err) {
  json_t *changes = json_array();
  const char *msg = NULL;
  int i = parse_changes(argc, argv, changes, &msg, err);
  int rc = 125;
  if (i >= 0 && i != argc - 2 && i != argc - 1)
    vs_error_set(err, 0, "usage: vessel commit [-m MSG] [--change 'CMD ...'] CONTAINER [NAME]");
  else if (i >= 0)
    rc = commit_with(ctx, argv[i], i == argc - 2 ? argv[i + 1] : NULL, changes, msg, err);
  json_decref(changes);
  return rc;
}

int cmd_load(vessel_ctx *ctx, int argc, char **argv, vs_error **err) {
  const char *input = NULL, *name = NULL;
  for (int k = 1; k < argc; k++) {
    if ((!strcmp(argv[k], "-i") || !strcmp(argv[k], "--input")) && k + 1 < argc)
      input = argv[++k];
    else if (!strncmp(argv[k], "--input=", 8))
      input = argv[k] + 8;
    else if (argv[k][0] != '-')
      name = argv[k];
  }
  if (!input)
    return vs_error_set(err, 0, "usage: vessel load -i ARCHIVE.tar [NAME]"), 125;
  vs_store *s = vessel_store(ctx, err);
  json_t *names = NULL;
  if (!s || vs_image_load(s, input, name, &names, err) < 0) {
    json_decref(names);
    return 125;
  }
  size_t i;
  json_t *v;
  json_array_foreach(names, i, v) {
    _cleanup_free_ char *f = vs_image_name_familiar(json_string_value(v));
    printf("Loaded image: %s\n", f);
  }
  json_decref(names);
  return 0;
}

int cmd_save(vessel_ctx *ctx, int argc, char **argv, vs_error **err) {
  static const struct option opts[] = {
      {"output", required_argument, 0, 'o'}, {"format", required_argument, 0, 'f'}, {0, 0, 0, 0}};
  const char *output = NULL, *format = "docker-archive";
  int c;
  optind = 1;
  while ((c = getopt_long(argc, argv, "+o:", opts, NULL)) != -1) {
    if (c == 'o')
      output = optarg;
    else if (c == 'f')
      format = optarg;
    else
      return 125;
  }
  if (!output || optind >= argc)
    return vs_error_set(err, 0,
                        "usage: vessel save -o FILE [--format docker-archive|oci-archive] "
                        "IMAGE..."),
           125;
  vs_store *s = vessel_store(ctx, err);
  if (!s || vs_image_save(s, argv + optind, (size_t)(argc - optind), format, output, err) < 0)
    return 125;
  return 0;
}
