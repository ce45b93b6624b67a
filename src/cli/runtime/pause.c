/* pause ID / resume ID: freeze and thaw every process of the container. */
#include "cmd.h"

static int pause_or_resume(ctr_runtime *rt, int argc, char **argv, bool pause, vs_error **err) {
  static const struct option opts[] = {{NULL, 0, NULL, 0}};
  if (getopt_long(argc, argv, "", opts, NULL) != -1)
    return rt_usage_error(err, argv[0], "unknown option");
  const char *id;
  if (rt_one_id(argc, argv, &id, err))
    return 2;
  return ctr_pause(rt, id, pause, err) < 0 ? 1 : 0;
}

int cmd_pause(ctr_runtime *rt, int argc, char **argv, vs_error **err) {
  return pause_or_resume(rt, argc, argv, true, err);
}

int cmd_resume(ctr_runtime *rt, int argc, char **argv, vs_error **err) {
  return pause_or_resume(rt, argc, argv, false, err);
}
