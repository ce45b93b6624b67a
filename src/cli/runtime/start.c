/* start ID: let a created container run its process. */
#include "cmd.h"

int cmd_start(ctr_runtime *rt, int argc, char **argv, vs_error **err) {
  static const struct option opts[] = {{NULL, 0, NULL, 0}};
  if (getopt_long(argc, argv, "", opts, NULL) != -1)
    return rt_usage_error(err, "start", "unknown option");
  const char *id;
  if (rt_one_id(argc, argv, &id, err))
    return 2;
  return ctr_start(rt, id, err) < 0 ? 1 : 0;
}
