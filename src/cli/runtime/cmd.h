/* vessel-runtime's commands: one file per command, dispatched by main.c. */
#ifndef VESSEL_CLI_RUNTIME_CMD_H
#define VESSEL_CLI_RUNTIME_CMD_H

#include "ctr/ctr.h"

#include <getopt.h>

/* Each command parses its own options from argv (argv[0] is the command name) and returns the
 * process exit status; errors are returned in *err and printed by main. */
typedef int (*rt_cmd_fn)(ctr_runtime *rt, int argc, char **argv, vs_error **err);

int cmd_create(ctr_runtime *rt, int argc, char **argv, vs_error **err);
int cmd_start(ctr_runtime *rt, int argc, char **argv, vs_error **err);
int cmd_run(ctr_runtime *rt, int argc, char **argv, vs_error **err);
int cmd_state(ctr_runtime *rt, int argc, char **argv, vs_error **err);
int cmd_kill(ctr_runtime *rt, int argc, char **argv, vs_error **err);
int cmd_delete(ctr_runtime *rt, int argc, char **argv, vs_error **err);
int cmd_exec(ctr_runtime *rt, int argc, char **argv, vs_error **err);
int cmd_pause(ctr_runtime *rt, int argc, char **argv, vs_error **err);
int cmd_resume(ctr_runtime *rt, int argc, char **argv, vs_error **err);
int cmd_ps(ctr_runtime *rt, int argc, char **argv, vs_error **err);
int cmd_list(ctr_runtime *rt, int argc, char **argv, vs_error **err);
int cmd_update(ctr_runtime *rt, int argc, char **argv, vs_error **err);
int cmd_events(ctr_runtime *rt, int argc, char **argv, vs_error **err);
int cmd_features(ctr_runtime *rt, int argc, char **argv, vs_error **err);
int cmd_spec(ctr_runtime *rt, int argc, char **argv, vs_error **err);

/* Shared helpers (main.c). */
int rt_usage_error(vs_error **err, const char *cmd, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Exactly one positional argument: the container id. */
int rt_one_id(int argc, char **argv, const char **id, vs_error **err);
int rt_print_json(json_t *j, bool pretty);
/* A non-negative decimal number (descriptor counts, ids); the error names the option. */
int rt_parse_count(const char *s, const char *option, int *out, vs_error **err);
/* The create/run options shared by both. Returns 1 when handled. */
int rt_create_opt(int c, ctr_create_opts *o, vs_error **err);
#define RT_CREATE_LONGOPTS                                                                         \
  {"bundle", required_argument, NULL, 'b'}, {"pid-file", required_argument, NULL, 'p'},            \
      {"console-socket", required_argument, NULL, 'c'}, {"no-pivot", no_argument, NULL, 'N'},      \
      {"preserve-fds", required_argument, NULL, 'F'}, {"no-new-keyring", no_argument, NULL, 'K'},  \
  {                                                                                                \
    "no-subreaper", no_argument, NULL, 'S'                                                         \
  }

#endif
