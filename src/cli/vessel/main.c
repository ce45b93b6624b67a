/* vessel: the user's command line for images and containers. */
#include "cli.h"

#include <curl/curl.h>
#include <string.h>

static const struct {
  const char *name;
  vessel_cmd_fn fn;
  const char *help;
} commands[] = {
    {"pull", cmd_pull, "pull an image from a registry"},
    {"push", cmd_push, "push an image to a registry"},
    {"images", cmd_images, "list images"},
    {"rmi", cmd_rmi, "remove images"},
    {"tag", cmd_tag, "add a name to an image"},
    {"image", cmd_image, "image subcommands: ls, inspect, rm, prune, tag, pull, push, import"},
    {"inspect", cmd_inspect, "show an image's details as JSON"},
    {"system", cmd_system, "system df, system prune"},
    {"login", cmd_login, "save registry credentials"},
    {"logout", cmd_logout, "remove registry credentials"},
    {"run", cmd_run, "run a command in a new container"},
    {"ps", cmd_ps, "list containers"},
    {"rm", cmd_rm, "remove containers"},
    {"import", cmd_import, "create an image from a root file system tarball"},
    {"commit", cmd_commit, "create an image from a container's changes"},
    {"load", cmd_load, "load images from a docker-archive or OCI layout tar"},
    {"save", cmd_save, "save images to a docker-archive or OCI layout tar"},
    {"mount", cmd_mount, "mount an image's root file system (overlay) at a directory"},
};

static void usage(FILE *f) {
  fprintf(f, "usage: vessel [--root DIR] [--log-level LEVEL] COMMAND [ARGS...]\n\ncommands:\n");
  for (size_t i = 0; i < ARRAY_SIZE(commands); i++)
    fprintf(f, "  %-9s %s\n", commands[i].name, commands[i].help);
}

vs_store *vessel_store(vessel_ctx *ctx, vs_error **err) {
  if (!ctx->store)
    ctx->store = vs_store_open(ctx->root, err);
  return ctx->store;
}

int main(int argc, char **argv) {
  vessel_ctx ctx = {.root = "/var/lib/vessel", .argv0 = argv[0]};
  vs_log_level level = VS_LOG_WARN;
  int i = 1;
  for (; i < argc && argv[i][0] == '-'; i++) {
    const char *a = argv[i];
    const char *val = NULL;
    if (!strncmp(a, "--root=", 7)) {
      ctx.root = a + 7;
    } else if (!strcmp(a, "--root") && i + 1 < argc) {
      ctx.root = argv[++i];
    } else if (!strncmp(a, "--log-level", 11)) {
      val = a[11] == '=' ? a + 12 : (i + 1 < argc ? argv[++i] : "");
      level = !strcmp(val, "debug")   ? VS_LOG_DEBUG
              : !strcmp(val, "info")  ? VS_LOG_INFO
              : !strcmp(val, "error") ? VS_LOG_ERROR
                                      : VS_LOG_WARN;
    } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      usage(stdout);
      return 0;
    } else if (!strcmp(a, "--version")) {
      printf("vessel version 0.1.0\n");
      return 0;
    } else {
      fprintf(stderr, "vessel: unknown option %s\n", a);
      usage(stderr);
      return 125;
    }
  }
  vs_log_configure("vessel", level, VS_LOG_FORMAT_TEXT, 2);
  if (i >= argc) {
    usage(stderr);
    return 125;
  }
  const char *name = argv[i];
  for (size_t k = 0; k < ARRAY_SIZE(commands); k++) {
    if (strcmp(commands[k].name, name) != 0)
      continue;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    vs_error *err = NULL;
    int rc = commands[k].fn(&ctx, argc - i, argv + i, &err);
    if (err) {
      vs_error_print(err, "vessel");
      vs_error_free(err);
      if (rc == 0)
        rc = 125;
    }
    vs_store_close(ctx.store);
    curl_global_cleanup();
    return rc;
  }
  fprintf(stderr, "vessel: unknown command \"%s\"\n", name);
  usage(stderr);
  return 125;
}
