/* vessel build: an image from a Dockerfile, built on the store without a daemon. */
#include "cli.h"

#include <string.h>
#include <unistd.h>

static const struct option build_options[] = {
    {"tag", required_argument, 0, 't'},       {"file", required_argument, 0, 'f'},
    {"build-arg", required_argument, 0, 'a'}, {"label", required_argument, 0, 'l'},
    {"target", required_argument, 0, 'T'},    {"iidfile", required_argument, 0, 'i'},
    {"quiet", no_argument, 0, 'q'},           {0, 0, 0, 0}};

/* "K=V" into obj; a bare "K" takes the value of the environment variable K (docker's rule for
 * --build-arg), or is skipped when it is unset. */
static int add_pair(json_t *obj, const char *kv, const char *what, vs_error **err) {
  const char *eq = strchr(kv, '=');
  if (eq == kv)
    return vs_error_set(err, 0, "%s %s: the name is empty", what, kv);
  if (!eq) {
    const char *v = getenv(kv);
    if (v)
      json_object_set_new(obj, kv, json_string(v));
    return 0;
  }
  _cleanup_free_ char *k = vs_img_strndup(kv, (size_t)(eq - kv));
  json_object_set_new(obj, k, json_string(eq + 1));
  return 0;
}

int cmd_build(vessel_ctx *ctx, int argc, char **argv, vs_error **err) {
  vs_build_opts o = {.progress_fd = 1};
  json_t *args = json_object(), *labels = json_object();
  char **tags = vs_malloc0(sizeof(char *) * (size_t)(argc + 1));
  const char *iidfile = NULL;
  int rc = 125, c;
  optind = 1;
  while ((c = getopt_long(argc, argv, "t:f:q", build_options, NULL)) != -1) {
    switch (c) {
    case 't':
      tags[o.ntags++] = optarg;
      break;
    case 'f':
      o.dockerfile = optarg;
      break;
    case 'a':
      if (add_pair(args, optarg, "--build-arg", err) < 0)
        goto out;
      break;
    case 'l':
      if (add_pair(labels, optarg, "--label", err) < 0)
        goto out;
      break;
    case 'T':
      o.target = optarg;
      break;
    case 'i':
      iidfile = optarg;
      break;
    case 'q':
      o.progress_fd = -1;
      break;
    default:
      vs_error_set(err, 0,
                   "usage: vessel build [-t NAME]... [-f DOCKERFILE] [--build-arg K=V]... "
                   "[--label K=V]... [--target STAGE] [--iidfile F] [-q] DIR");
      goto out;
    }
  }
  if (optind != argc - 1) {
    vs_error_set(err, 0, "vessel build needs exactly one context directory");
    goto out;
  }
  o.context = argv[optind];
  o.tags = tags;
  o.build_args = args;
  o.labels = labels;
  vs_store *s = vessel_store(ctx, err);
  char digest[VS_DIGEST_MAX];
  if (!s || vs_build(s, &o, digest, err) < 0)
    goto out;
  vs_image img;
  if (vs_store_load_image(s, digest, &img, err) < 0)
    goto out;
  if (o.progress_fd < 0)
    printf("%s\n", img.manifest.config.digest);
  int w = iidfile ? vs_write_file_atomic(iidfile, img.manifest.config.digest,
                                         strlen(img.manifest.config.digest), 0644, err)
                  : 0;
  vs_image_clear(&img);
  rc = w < 0 ? 125 : 0;
out:
  json_decref(args);
  json_decref(labels);
  free(tags);
  return rc;
}
