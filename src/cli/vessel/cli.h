/* Shared by the vessel command files: the per-invocation context and the command table. */
#ifndef VESSEL_CLI_H
#define VESSEL_CLI_H

#include "image/image.h"

typedef struct vessel_ctx {
  const char *root;  /* --root */
  const char *argv0; /* path of this program (to find vessel-runtime next to it) */
  vs_store *store;   /* opened on first use */
} vessel_ctx;

/* Open the store once for the whole command. */
vs_store *vessel_store(vessel_ctx *ctx, vs_error **err);

/* Each command: returns the process exit status; sets *err for failures main should print. */
typedef int (*vessel_cmd_fn)(vessel_ctx *ctx, int argc, char **argv, vs_error **err);

int cmd_images(vessel_ctx *ctx, int argc, char **argv, vs_error **err);
int cmd_rmi(vessel_ctx *ctx, int argc, char **argv, vs_error **err);
int cmd_tag(vessel_ctx *ctx, int argc, char **argv, vs_error **err);
int cmd_image(vessel_ctx *ctx, int argc, char **argv, vs_error **err);
int cmd_inspect(vessel_ctx *ctx, int argc, char **argv, vs_error **err);
int cmd_prune(vessel_ctx *ctx, int argc, char **argv, vs_error **err);
int cmd_system(vessel_ctx *ctx, int argc, char **argv, vs_error **err);
int cmd_pull(vessel_ctx *ctx, int argc, char **argv, vs_error **err);
int cmd_push(vessel_ctx *ctx, int argc, char **argv, vs_error **err);
int cmd_login(vessel_ctx *ctx, int argc, char **argv, vs_error **err);
int cmd_logout(vessel_ctx *ctx, int argc, char **argv, vs_error **err);
int cmd_run(vessel_ctx *ctx, int argc, char **argv, vs_error **err);
int cmd_ps(vessel_ctx *ctx, int argc, char **argv, vs_error **err);
int cmd_rm(vessel_ctx *ctx, int argc, char **argv, vs_error **err);
int cmd_import(vessel_ctx *ctx, int argc, char **argv, vs_error **err);
int cmd_commit(vessel_ctx *ctx, int argc, char **argv, vs_error **err);
int cmd_load(vessel_ctx *ctx, int argc, char **argv, vs_error **err);
int cmd_save(vessel_ctx *ctx, int argc, char **argv, vs_error **err);
int cmd_mount(vessel_ctx *ctx, int argc, char **argv, vs_error **err);

/* Parse the registry options shared by pull/push/login: --tls-verify, --authfile, --platform,
 * -q. Returns the index of the first operand or -1 with *err set. */
int vessel_registry_args(int argc, char **argv, vs_registry_opts *o, vs_error **err);

/* A container by name, full ID or unique ID prefix; returns its full ID (caller frees). */
char *vessel_container_find(vessel_ctx *ctx, const char *what, vs_error **err);

/* "3 minutes ago" style, from an RFC 3339 time. */
char *vessel_human_time(const char *t);
char *vessel_human_size(uint64_t bytes);

#endif
