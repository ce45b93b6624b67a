/* state ID: print the OCI state document. */
#include "cmd.h"

int cmd_state(ctr_runtime *rt, int argc, char **argv, vs_error **err) {
  static const struct option opts[] = {{NULL, 0, NULL, 0}};
  if (getopt_long(argc, argv, "", opts, NULL) != -1)
    return rt_usage_error(err, "state", "unknown option");
  const char *id;
  if (rt_one_id(argc, argv, &id, err))
    return 2;
  ctr_state *st;
  if (ctr_state_load(rt, id, &st, err) < 0)
    return 1;
  json_t *j = ctr_state_oci_json(rt, st);
  rt_print_json(j, true);
  json_decref(j);
  ctr_state_free(st);
  return 0;
}
