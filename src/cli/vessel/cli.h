/* Shared by the vessel command files: the per-invocation context and the command table. */
#ifndef VESSEL_CLI_H
#define VESSEL_CLI_H

#include "image/image.h"

#include <getopt.h>

typedef struct vessel_ctx {
  const char *root;      /* --root */
  const char *argv0;     /* path of this program (to find vessel-runtime next to it) */
  vs_store *store;       /* opened on first use */
  const char *host;      /* the daemon's address when vessel works through vesseld, else NULL */
  const char *sock_path; /* its unix socket */
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
int cmd_build(vessel_ctx *ctx, int argc, char **argv, vs_error **err);

/* ---- client.c: vessel as a client of vesseld */

/* Choose the mode as docker does: -H, then VESSEL_HOST, then DOCKER_HOST, then the default
 * socket if a daemon answers there; an explicit --root without a host means no daemon. Sets
 * ctx->host and ctx->sock_path when a daemon is to be used. */
int vessel_find_daemon(vessel_ctx *ctx, const char *host_opt, bool root_given, vs_error **err);

typedef struct vessel_reply {
  int status;
  char *body; /* NUL-terminated, caller frees */
  size_t len;
} vessel_reply;
/* Receives a reply body piece by piece; returns -1 with *err set to stop. */
typedef int (*vessel_body_fn)(void *arg, const char *data, size_t len, vs_error **err);

/* One request, the whole reply whatever its status. */
int vessel_api(vessel_ctx *ctx, const char *method, const char *target, const char *ctype,
               const void *body, size_t len, vessel_reply *r, vs_error **err);
/* A JSON request (body may be NULL); a status >= 400 becomes an error carrying the daemon's
 * message. *out (if out) gets the decoded reply (json null when empty). Returns the status. */
int vessel_api_json(vessel_ctx *ctx, const char *method, const char *target, json_t *body,
                    json_t **out, vs_error **err);
/* A request whose reply body is handed to fn as it arrives (logs -f, pull progress). */
int vessel_api_stream(vessel_ctx *ctx, const char *method, const char *target, json_t *body,
                      vessel_body_fn fn, void *arg, vs_error **err);
/* The same with the body read from body_fd (body_len bytes, a tar archive). */
int vessel_api_upload(vessel_ctx *ctx, const char *method, const char *target, json_t *body,
                      int body_fd, size_t body_len, vessel_body_fn fn, void *arg, vs_error **err);

typedef struct vessel_hijack {
  int fd;        /* the raw connection after 101 UPGRADED */
  char *pending; /* stream bytes read with the head, to be used first (caller frees) */
  size_t pending_len;
} vessel_hijack;
/* A request upgraded to a raw stream (attach, console). */
int vessel_api_hijack(vessel_ctx *ctx, const char *method, const char *target, vessel_hijack *hj,
                      vs_error **err);
/* One request per operand, as docker does: METHOD PREFIX<operand>SUFFIX, printing the operand
 * on success and the error (prefixed with what) otherwise. Returns 0, or 1 if any failed. */
int vessel_api_each(vessel_ctx *ctx, int argc, char **argv, int first, const char *method,
                    const char *prefix, const char *suffix, const char *what);
/* GET PREFIX<operand> for each operand, printed as one JSON array (docker inspect's form);
 * errors are printed prefixed with what. Returns 0, or 1 if any failed. (vm.c) */
int vessel_inspect_each(vessel_ctx *ctx, int argc, char **argv, int first, const char *prefix,
                        const char *what);
/* Leading -f/--force options of rm-like commands: the index of the first operand, or -1 for an
 * unknown option or no operand. */
int vessel_force_operands(int argc, char **argv, bool *force);
/* The long options of `vessel run`, shared by its daemonless and daemon forms. */
extern const struct option vessel_run_options[];
typedef struct vessel_relay_opts {
  vessel_body_fn out; /* gets what the daemon sends */
  void *out_arg;
  bool input;           /* copy our stdin to the connection */
  bool shutdown_at_eof; /* when stdin ends (or without input), end our side of the connection */
  int detach_key;       /* a byte on stdin that ends the relay (not sent), or -1 */
} vessel_relay_opts;
/* Relay a hijacked connection until the daemon closes it or the user detaches. */
int vessel_relay(vessel_hijack *hj, const vessel_relay_opts *o, vs_error **err);
struct termios;
/* Put a terminal on stdin in raw mode; false (nothing changed) when stdin is no terminal. */
bool vessel_tty_raw(struct termios *saved);
/* Print a JSON document indented as docker inspect does, and free it. */
void vessel_print_json(json_t *j);
/* Percent-encode a query value; returns a new string. */
char *vessel_query_escape(const char *s);

/* ---- remote.c: the container and image commands through vesseld's Docker API */
int remote_run(vessel_ctx *ctx, int argc, char **argv, vs_error **err);
int remote_ps(vessel_ctx *ctx, int argc, char **argv, vs_error **err);
int remote_logs(vessel_ctx *ctx, int argc, char **argv, vs_error **err);
int remote_rm(vessel_ctx *ctx, int argc, char **argv, vs_error **err);
int remote_images(vessel_ctx *ctx, int argc, char **argv, vs_error **err);
int remote_pull(vessel_ctx *ctx, int argc, char **argv, vs_error **err);
int remote_stop(vessel_ctx *ctx, int argc, char **argv, vs_error **err);
int remote_start(vessel_ctx *ctx, int argc, char **argv, vs_error **err);
int remote_inspect(vessel_ctx *ctx, int argc, char **argv, vs_error **err);
int remote_rmi(vessel_ctx *ctx, int argc, char **argv, vs_error **err);
int remote_load(vessel_ctx *ctx, int argc, char **argv, vs_error **err);
int remote_tag(vessel_ctx *ctx, int argc, char **argv, vs_error **err);

/* ---- vm.c: vessel vm ..., through vesseld's /vessel/v1 API */
int cmd_vm(vessel_ctx *ctx, int argc, char **argv, vs_error **err);
int cmd_pool(vessel_ctx *ctx, int argc, char **argv, vs_error **err); /* vm.c */
/* pool stats [NAME...] from argv[first] on (every pool without a name); `vessel top` too */
int vessel_pool_stats(vessel_ctx *ctx, int argc, char **argv, int first, vs_error **err);
int cmd_top(vessel_ctx *ctx, int argc, char **argv, vs_error **err); /* vm.c */
/* ---- node.c: vessel node ..., the cluster's nodes through /vessel/v1/nodes */
int cmd_node(vessel_ctx *ctx, int argc, char **argv, vs_error **err);
/* web.c: vessel web passwd */
int cmd_web(vessel_ctx *ctx, int argc, char **argv, vs_error **err);

/* Parse the registry options shared by pull/push/login: --tls-verify, --authfile, --platform,
 * -q. Returns the index of the first operand or -1 with *err set. */
int vessel_registry_args(int argc, char **argv, vs_registry_opts *o, vs_error **err);

/* A container by name, full ID or unique ID prefix; returns its full ID (caller frees). */
char *vessel_container_find(vessel_ctx *ctx, const char *what, vs_error **err);

/* "3 minutes ago" style, from an RFC 3339 time. */
char *vessel_human_time(const char *t);
char *vessel_human_size(uint64_t bytes);

#endif
