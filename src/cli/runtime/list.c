/* list [-q] [--format table|json]: every container under the root. */
#include "cmd.h"

#include <string.h>

int cmd_list(ctr_runtime *rt, int argc, char **argv, vs_error **err) {
  static const struct option opts[] = {{"quiet", no_argument, NULL, 'q'},
                                       {"format", required_argument, NULL, 'f'},
                                       {NULL, 0, NULL, 0}};
  bool quiet = false;
  const char *format = "table";
  int c;
  while ((c = getopt_long(argc, argv, "qf:", opts, NULL)) != -1) {
    if (c == 'q')
      quiet = true;
    else if (c == 'f')
      format = optarg;
    else
      return rt_usage_error(err, "list", "unknown option");
  }
  if (strcmp(format, "table") != 0 && strcmp(format, "json") != 0)
    return rt_usage_error(err, "list", "--format: \"%s\" is not table or json", format);
  char **ids = ctr_list_ids(rt, err);
  if (!ids)
    return 1;
  json_t *all = json_array();
  if (!quiet && !strcmp(format, "table"))
    printf("%-20s %-8s %-10s %-40s %-30s %s\n", "ID", "PID", "STATUS", "BUNDLE", "CREATED",
           "OWNER");
  for (size_t i = 0; ids[i]; i++) {
    ctr_state *st;
    if (ctr_state_load(rt, ids[i], &st, NULL) < 0)
      continue;
    json_t *j = ctr_state_oci_json(rt, st);
    if (quiet)
      puts(ids[i]);
    else if (!strcmp(format, "table"))
      printf("%-20s %-8lld %-10s %-40s %-30s %s\n", ids[i],
             (long long)json_integer_value(json_object_get(j, "pid")),
             json_string_value(json_object_get(j, "status")), st->bundle, st->created,
             st->owner[0] ? st->owner : "root");
    json_array_append_new(all, j);
    ctr_state_free(st);
  }
  if (!quiet && !strcmp(format, "json"))
    rt_print_json(all, false);
  json_decref(all);
  ctr_strv_free(ids);
  return 0;
}
