/* vessel node ...: the cluster's nodes through vesseld's /vessel/v1/nodes API (docs/cluster.md).
 * Any node's vesseld answers for the whole cluster: the records are in etcd. */
#include "cli.h"

#include <string.h>

static int node_usage(vs_error **err) {
  vs_error_set(err, 0,
               "usage: vessel node ls [-q] | inspect NAME... | cordon|uncordon|drain NAME... | "
               "label NAME KEY=VALUE|KEY-... | rm [-f] NAME...");
  return 125;
}

static int node_ls(vessel_ctx *ctx, bool quiet, vs_error **err) {
  json_t *list = NULL;
  if (vessel_api_json(ctx, "GET", "/vessel/v1/nodes", NULL, &list, err) < 0)
    return 1;
  if (!quiet)
    printf("%-16s %-16s %-7s %-22s %-5s %-10s %s\n", "NAME", "ADDRESS", "STATUS", "SCHEDULING",
           "CPUS", "MEMORY", "LABELS");
  size_t i;
  json_t *n;
  json_array_foreach(list, i, n) {
    const char *name = json_string_value(json_object_get(n, "Name"));
    if (quiet) {
      printf("%s\n", name ? name : "");
      continue;
    }
    const char *addr = json_string_value(json_object_get(n, "Address"));
    _cleanup_free_ char *mem =
        vessel_human_size((uint64_t)json_integer_value(json_object_get(n, "Memory")));
    char *labels = vs_strdup("");
    const char *k;
    json_t *v;
    json_object_foreach(json_object_get(n, "Labels"), k, v) {
      char *next = vs_asprintf("%s%s%s=%s", labels, *labels ? "," : "", k, json_string_value(v));
      free(labels);
      labels = next;
    }
    const char *sched = json_is_true(json_object_get(n, "Draining"))        ? "draining"
                        : json_is_true(json_object_get(n, "Unschedulable")) ? "cordoned"
                                                                            : "schedulable";
    printf("%-16s %-16s %-7s %-22s %-5lld %-10s %s\n", name ? name : "", addr ? addr : "-",
           json_string_value(json_object_get(n, "Status")), sched,
           (long long)json_integer_value(json_object_get(n, "Cpus")), mem, labels);
    free(labels);
  }
  json_decref(list);
  return 0;
}

/* drain NAME...: each node's running VMs move elsewhere, its containers are made again
 * elsewhere; prints "NAME FROM -> TO" for each, and on stderr what could not move or stays. */
static int node_drain(vessel_ctx *ctx, int argc, char **argv) {
  int rc = 0;
  for (int i = 1; i < argc; i++) {
    _cleanup_free_ char *esc = vessel_query_escape(argv[i]);
    _cleanup_free_ char *target = vs_asprintf("/vessel/v1/nodes/%s/drain", esc);
    json_t *out = NULL;
    vs_error *e = NULL;
    if (vessel_api_json(ctx, "POST", target, NULL, &out, &e) < 0) {
      vs_error_print(e, "vessel node drain");
      vs_error_free(e);
      rc = 1;
      continue;
    }
    size_t k;
    json_t *v;
    json_array_foreach(json_object_get(out, "Migrated"), k, v) printf(
        "%s %s -> %s\n", json_string_value(json_object_get(v, "Name")),
        json_string_value(json_object_get(v, "From")), json_string_value(json_object_get(v, "To")));
    json_array_foreach(json_object_get(out, "Failed"), k, v) {
      fprintf(stderr, "vessel node drain: %s stays on %s: %s\n",
              json_string_value(json_object_get(v, "Name")), argv[i],
              json_string_value(json_object_get(v, "Error")));
      rc = 1;
    }
    json_array_foreach(json_object_get(out, "Stayed"), k, v)
        fprintf(stderr, "%s stays on %s (%s: only running VMs and made containers move)\n",
                json_string_value(json_object_get(v, "Name")), argv[i],
                json_string_value(json_object_get(v, "Phase")));
    json_decref(out);
  }
  return rc;
}

/* KEY=VALUE sets, KEY- removes (kubectl label's form). */
static int node_label(vessel_ctx *ctx, int argc, char **argv, vs_error **err) {
  if (argc < 3)
    return node_usage(err);
  json_t *set = json_object(), *rm = json_array();
  for (int i = 2; i < argc; i++) {
    const char *eq = strchr(argv[i], '=');
    size_t len = strlen(argv[i]);
    if (eq) {
      _cleanup_free_ char *k = vs_asprintf("%.*s", (int)(eq - argv[i]), argv[i]);
      json_object_set_new(set, k, json_string(eq + 1));
    } else if (len > 1 && argv[i][len - 1] == '-') {
      json_array_append_new(rm, json_stringn(argv[i], len - 1));
    } else {
      json_decref(set);
      json_decref(rm);
      return node_usage(err);
    }
  }
  _cleanup_free_ char *esc = vessel_query_escape(argv[1]);
  _cleanup_free_ char *target = vs_asprintf("/vessel/v1/nodes/%s/labels", esc);
  json_t *body = json_pack("{s:o, s:o}", "Set", set, "Remove", rm);
  int rc = vessel_api_json(ctx, "POST", target, body, NULL, err);
  json_decref(body);
  if (rc < 0)
    return 1;
  printf("%s\n", argv[1]);
  return 0;
}

int cmd_node(vessel_ctx *ctx, int argc, char **argv, vs_error **err) {
  if (argc < 2)
    return node_usage(err);
  const char *sub = argv[1];
  argc--;
  argv++;
  if (!strcmp(sub, "ls") || !strcmp(sub, "list")) {
    bool quiet = argc == 2 && (!strcmp(argv[1], "-q") || !strcmp(argv[1], "--quiet"));
    if (argc > 1 && !quiet)
      return node_usage(err);
    return node_ls(ctx, quiet, err);
  }
  if (!strcmp(sub, "inspect") && argc > 1)
    return vessel_inspect_each(ctx, argc, argv, 1, "/vessel/v1/nodes/", "vessel node inspect");
  if (!strcmp(sub, "drain") && argc > 1)
    return node_drain(ctx, argc, argv);
  static const char *const actions[] = {"cordon", "uncordon"};
  for (size_t k = 0; k < ARRAY_SIZE(actions); k++)
    if (!strcmp(sub, actions[k]) && argc > 1) {
      _cleanup_free_ char *suffix = vs_asprintf("/%s", actions[k]);
      _cleanup_free_ char *what = vs_asprintf("vessel node %s", actions[k]);
      return vessel_api_each(ctx, argc, argv, 1, "POST", "/vessel/v1/nodes/", suffix, what);
    }
  if (!strcmp(sub, "label"))
    return node_label(ctx, argc, argv, err);
  if (!strcmp(sub, "rm")) {
    bool force;
    int first = vessel_force_operands(argc, argv, &force);
    if (first < 0)
      return node_usage(err);
    return vessel_api_each(ctx, argc, argv, first, "DELETE", "/vessel/v1/nodes/",
                           force ? "?force=1" : "", "vessel node rm");
  }
  return node_usage(err);
}
