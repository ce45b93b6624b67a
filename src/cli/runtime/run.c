/* run [--detach] [create's options] ID: create + start; the exit status is the container's. */
#include "cmd.h"

int cmd_run(ctr_runtime *rt, int argc, char **argv, vs_error **err) {
  static const struct option opts[] = {RT_CREATE_LONGOPTS,
                                       {"detach", no_argument, NULL, 'd'},
                                       {"keep", no_argument, NULL, 'k'},
                                       {NULL, 0, NULL, 0}};
  ctr_create_opts o = {.bundle = ".", .foreground = true};
  int c;
  while ((c = getopt_long(argc, argv, "b:d", opts, NULL)) != -1) {
    if (c == 'd') {
      o.foreground = false;
      continue;
    }
    if (c == 'k')
      continue;
    int r = rt_create_opt(c, &o, err);
    if (r < 0)
      return 2;
    if (r == 0)
      return rt_usage_error(err, "run", "unknown option");
  }
  const char *id;
  if (rt_one_id(argc, argv, &id, err))
    return 2;
  int status = ctr_run(rt, id, &o, err);
  return status < 0 ? 1 : status;
}
