/* events --stats ID: one stats event as JSON (runc's shape). */
#include "cmd.h"

int cmd_events(ctr_runtime *rt, int argc, char **argv, vs_error **err) {
  static const struct option opts[] = {{"stats", no_argument, NULL, 's'},
                                       {"interval", required_argument, NULL, 'i'},
                                       {NULL, 0, NULL, 0}};
  bool stats = false;
  int c;
  while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    if (c == 's')
      stats = true;
    else if (c != 'i')
      return rt_usage_error(err, "events", "unknown option");
  }
  const char *id;
  if (rt_one_id(argc, argv, &id, err))
    return 2;
  if (!stats)
    return rt_usage_error(err, "events", "only --stats (one shot) is supported");
  json_t *ev = ctr_stats(rt, id, err);
  if (!ev)
    return 1;
  rt_print_json(ev, false);
  json_decref(ev);
  return 0;
}
