/* delete [--force] ID: remove a stopped (or, with --force, any) container. */
#include "cmd.h"

int cmd_delete(ctr_runtime *rt, int argc, char **argv, vs_error **err) {
  static const struct option opts[] = {{"force", no_argument, NULL, 'f'}, {NULL, 0, NULL, 0}};
  bool force = false;
  int c;
  while ((c = getopt_long(argc, argv, "f", opts, NULL)) != -1) {
    if (c != 'f')
      return rt_usage_error(err, "delete", "unknown option");
    force = true;
  }
  const char *id;
  if (rt_one_id(argc, argv, &id, err))
    return 2;
  return ctr_delete(rt, id, force, err) < 0 ? 1 : 0;
}
