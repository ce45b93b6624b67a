/* vessel: the user's command line for images and containers. */
#include "cli.h"

#include <curl/curl.h>
#include <errno.h>
#include <string.h>

static const struct {
  const char *name;
  vessel_cmd_fn fn;     /* without a daemon (NULL: needs vesseld) */
  vessel_cmd_fn remote; /* through vesseld's API (NULL: works on a store only) */
  const char *help;
} commands[] = {
    {"pull", cmd_pull, remote_pull, "pull an image from a registry"},
    {"push", cmd_push, NULL, "push an image to a registry"},
    {"images", cmd_images, remote_images, "list images"},
    {"rmi", cmd_rmi, remote_rmi, "remove images"},
    {"tag", cmd_tag, remote_tag, "add a name to an image"},
    {"image", cmd_image, NULL,
     "image subcommands: ls, inspect, rm, prune, tag, pull, push, import"},
    {"inspect", cmd_inspect, remote_inspect,
     "show an image's (or through vesseld a container's) details as JSON"},
    {"system", cmd_system, NULL, "system df, system prune"},
    {"login", cmd_login, NULL, "save registry credentials"},
    {"logout", cmd_logout, NULL, "remove registry credentials"},
    {"run", cmd_run, remote_run, "run a command in a new container"},
    {"ps", cmd_ps, remote_ps, "list containers"},
    {"logs", NULL, remote_logs, "show a container's output (vesseld)"},
    {"start", NULL, remote_start, "start stopped containers (vesseld)"},
    {"stop", NULL, remote_stop, "stop running containers (vesseld)"},
    {"rm", cmd_rm, remote_rm, "remove containers"},
    {"import", cmd_import, NULL, "create an image from a root file system tarball"},
    {"commit", cmd_commit, NULL, "create an image from a container's changes"},
    {"load", cmd_load, remote_load, "load images from a docker-archive or OCI layout tar"},
    {"save", cmd_save, NULL, "save images to a docker-archive or OCI layout tar"},
    {"vm", NULL, cmd_vm, "virtual machines: create, start, stop, console, snapshot... (vesseld)"},
    {"node", NULL, cmd_node,
     "the cluster's nodes: ls, inspect, cordon, uncordon, drain, label, rm"},
    {"pool", NULL, cmd_pool,
     "resource pools of VMs and containers: create, ls, inspect, update, stats, rm (vesseld)"},
    {"top", NULL, cmd_top, "live CPU and memory of pools and their guests (vesseld)"},
    {"web", NULL, cmd_web, "web console: passwd sets its password (vesseld)"},
    {"mount", cmd_mount, NULL, "mount an image's root file system (overlay) at a directory"},
    {"build", cmd_build, NULL, "build an image from a Dockerfile (on the store, without vesseld)"},
};

static void usage(FILE *f) {
  fprintf(f, "usage: vessel [-H unix:///PATH | --root DIR] [--log-level LEVEL] COMMAND [ARGS...]\n"
             "\nWith a daemon (-H, VESSEL_HOST, DOCKER_HOST, or one answering on "
             "/run/vessel/vessel.sock)\nvessel works through its API; with --root or no daemon "
             "it works on the store directly.\n\ncommands:\n");
  for (size_t i = 0; i < ARRAY_SIZE(commands); i++)
    fprintf(f, "  %-9s %s\n", commands[i].name, commands[i].help);
}

/* The command in the mode chosen, or an error saying why it cannot run in it. */
static vessel_cmd_fn command_for_mode(const vessel_ctx *ctx, size_t k, vs_error **err) {
  if (ctx->host && !commands[k].remote)
    return vs_error_set(err, 0,
                        "%s: not available through vesseld yet; run it on a store without the "
                        "daemon: vessel --root DIR %s ...",
                        commands[k].name, commands[k].name),
           NULL;
  if (!ctx->host && !commands[k].fn)
    return vs_error_set(err, 0,
                        "%s needs vesseld, and no daemon answers (give -H unix:///PATH or "
                        "VESSEL_HOST, or start vesseld on /run/vessel/vessel.sock)",
                        commands[k].name),
           NULL;
  return ctx->host ? commands[k].remote : commands[k].fn;
}

vs_store *vessel_store(vessel_ctx *ctx, vs_error **err) {
  if (!ctx->store)
    ctx->store = vs_store_open(ctx->root, err);
  return ctx->store;
}

int main(int argc, char **argv) {
  vessel_ctx ctx = {.root = "/var/lib/vessel", .argv0 = argv[0]};
  vs_log_level level = VS_LOG_WARN;
  const char *host = NULL;
  bool root_given = false;
  int i = 1;
  for (; i < argc && argv[i][0] == '-'; i++) {
    const char *a = argv[i];
    const char *val = NULL;
    if (!strncmp(a, "--root=", 7)) {
      ctx.root = a + 7;
      root_given = true;
    } else if (!strcmp(a, "--root") && i + 1 < argc) {
      ctx.root = argv[++i];
      root_given = true;
    } else if (!strncmp(a, "--host=", 7)) {
      host = a + 7;
    } else if ((!strcmp(a, "-H") || !strcmp(a, "--host")) && i + 1 < argc) {
      host = argv[++i];
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
    int rc = 125;
    vessel_cmd_fn fn = NULL;
    if (vessel_find_daemon(&ctx, host, root_given, &err) == 0)
      fn = command_for_mode(&ctx, k, &err);
    if (fn)
      rc = fn(&ctx, argc - i, argv + i, &err);
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
