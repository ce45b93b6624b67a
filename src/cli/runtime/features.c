/* features: what this runtime supports, as JSON. */
#include "cmd.h"

int cmd_features(ctr_runtime *rt, int argc, char **argv, vs_error **err) {
  (void)rt;
  if (argc > 1)
    return rt_usage_error(err, "features", "takes no arguments");
  json_t *j = ctr_features();
  rt_print_json(j, true);
  json_decref(j);
  return 0;
}
