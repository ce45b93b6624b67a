/* vessel build: an image from a Dockerfile, built on the store without a daemon. */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

static const struct option build_options[] = {{"tag", required_argument, 0, 't'},
                                              {"file", required_argument, 0, 'f'},
                                              {"build-arg", required_argument, 0, 'a'},
                                              {"label", required_argument, 0, 'l'},
                                              {"target", required_argument, 0, 'T'},
                                              {"iidfile", required_argument, 0, 'i'},
                                              {"quiet", no_argument, 0, 'q'},
                                              {"no-cache", no_argument, 0, 'N'},
                                              {0, 0, 0, 0}};

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

/* RUN steps as `vessel run` runs containers (in the foreground, output to ours), kept after they
 * end so the builder can take their upper directory. */
static int run_container(void *arg, const char *image, json_t *args, json_t *env, char **upper,
                         char **handle, vs_error **err) {
  vessel_ctx *ctx = arg;
  char name[40];
  unsigned char rnd[8];
  _cleanup_close_ int ufd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
  if (ufd < 0 || read(ufd, rnd, sizeof(rnd)) != (ssize_t)sizeof(rnd))
    return vs_error_set(err, errno, "read /dev/urandom");
  snprintf(name, sizeof(name), "vessel-build-%02x%02x%02x%02x%02x%02x%02x%02x", rnd[0], rnd[1],
           rnd[2], rnd[3], rnd[4], rnd[5], rnd[6], rnd[7]);
  size_t n = 8 + 2 * json_array_size(env) + json_array_size(args);
  const char **argv = vs_malloc0(sizeof(char *) * (n + 1));
  size_t k = 0, i;
  json_t *v;
  argv[k++] = "run";
  argv[k++] = "--name";
  argv[k++] = name;
  argv[k++] = "--entrypoint=";
  json_array_foreach(env, i, v) {
    argv[k++] = "-e";
    argv[k++] = json_string_value(v);
  }
  /* a reference by digest finds an untagged image in the store */
  _cleanup_free_ char *ref = vs_asprintf("vessel-build@%s", image);
  argv[k++] = ref;
  json_array_foreach(args, i, v) argv[k++] = json_string_value(v);
  printf(" ---> Running in %s\n", name);
  fflush(stdout);
  int status = cmd_run(ctx, (int)k, (char **)argv, err);
  free(argv);
  vs_error *e = NULL;
  char *id = vessel_container_find(ctx, name, &e);
  vs_error_free(e);
  if (id) {
    *handle = vs_strdup(name);
    *upper = vs_asprintf("%s/containers/%s/upper", ctx->root, id);
    free(id);
  }
  if (status == 125 && !id)
    return -1;
  if (status == 125 && *err)
    return -1;
  return status;
}

static void remove_container(void *arg, const char *handle) {
  vessel_ctx *ctx = arg;
  char *argv[] = {"rm", "-f", (char *)handle, NULL};
  vs_error *e = NULL;
  /* rm names what it removed on stdout; the build says it its own way */
  fflush(stdout);
  int saved = dup(1), null = open("/dev/null", O_WRONLY | O_CLOEXEC);
  if (saved >= 0 && null >= 0)
    dup2(null, 1);
  int r = cmd_rm(ctx, 3, argv, &e);
  fflush(stdout);
  if (saved >= 0 && null >= 0)
    dup2(saved, 1);
  if (saved >= 0)
    close(saved);
  if (null >= 0)
    close(null);
  if (r != 0 && e)
    vs_log_warn("remove the build container %s: %s", handle, e->msg);
  else
    printf("Removing intermediate container %s\n", handle);
  fflush(stdout);
  vs_error_free(e);
}

int cmd_build(vessel_ctx *ctx, int argc, char **argv, vs_error **err) {
  vs_build_opts o = {
      .progress_fd = 1, .run = run_container, .remove = remove_container, .run_ctx = ctx};
  json_t *args = json_object(), *labels = json_object();
  char **tags = vs_malloc0(sizeof(char *) * (size_t)(argc + 1));
  const char *iidfile = NULL;
  int rc = 125, c;
  optind = 1;
  while ((c = getopt_long(argc, argv, "+t:f:q", build_options, NULL)) != -1) {
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
    case 'N':
      o.nocache = true;
      break;
    default:
      vs_error_set(err, 0,
                   "usage: vessel build [-t NAME]... [-f DOCKERFILE] [--build-arg K=V]... "
                   "[--label K=V]... [--target STAGE] [--iidfile F] [--no-cache] [-q] DIR");
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
