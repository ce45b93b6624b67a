/* create [--bundle DIR] [--pid-file F] [--console-socket S] [--no-pivot] [--preserve-fds N] ID */
#include "cmd.h"

int cmd_create(ctr_runtime *rt, int argc, char **argv, vs_error **err) {
  static const struct option opts[] = {RT_CREATE_LONGOPTS, {NULL, 0, NULL, 0}};
  ctr_create_opts o = {.bundle = "."};
  int c;
  while ((c = getopt_long(argc, argv, "b:", opts, NULL)) != -1) {
    int r = rt_create_opt(c, &o, err);
    if (r < 0)
      return 2;
    if (r == 0)
      return rt_usage_error(err, "create", "unknown option");
  }
  const char *id;
  if (rt_one_id(argc, argv, &id, err))
    return 2;
  return ctr_create(rt, id, &o, err) < 0 ? 1 : 0;
}
