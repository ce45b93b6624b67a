/* ps [--format table|json] ID [ps options]: the container's processes. */
#include "cmd.h"

#include <string.h>
#include <sys/wait.h>

int cmd_ps(ctr_runtime *rt, int argc, char **argv, vs_error **err) {
  static const struct option opts[] = {{"format", required_argument, NULL, 'f'},
                                       {NULL, 0, NULL, 0}};
  const char *format = "table";
  int c;
  while ((c = getopt_long(argc, argv, "+f:", opts, NULL)) != -1) {
    if (c != 'f')
      return rt_usage_error(err, "ps", "unknown option");
    format = optarg;
  }
  if (strcmp(format, "table") && strcmp(format, "json"))
    return rt_usage_error(err, "ps", "--format: \"%s\" is not table or json", format);
  if (argc - optind < 1)
    return rt_usage_error(err, "ps", "expects a container id");
  const char *id = argv[optind];
  pid_t *pids = NULL;
  size_t n = 0;
  if (ctr_ps(rt, id, &pids, &n, err) < 0)
    return 1;
  if (!strcmp(format, "json")) {
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
      json_array_append_new(a, json_integer(pids[i]));
    rt_print_json(a, false);
    json_decref(a);
    free(pids);
    return 0;
  }
  /* The table: like runc, ps(1) filtered to the container's pids. */
  fflush(stdout);
  char **av = vs_malloc0((size_t)(argc - optind + 4) * sizeof(char *));
  size_t k = 0;
  av[k++] = "ps";
  for (int i = optind + 1; i < argc; i++)
    av[k++] = argv[i];
  if (k == 1)
    av[k++] = "-ef";
  int status;
  FILE *p = NULL;
  _cleanup_free_ char *cmd = NULL;
  {
    size_t len = 0;
    for (size_t i = 0; i < k; i++)
      len += strlen(av[i]) + 3;
    cmd = vs_malloc0(len + 1);
    for (size_t i = 0; i < k; i++) {
      if (strchr(av[i], '\''))
        return rt_usage_error(err, "ps", "ps options must not contain quotes");
      strcat(cmd, "'");
      strcat(cmd, av[i]);
      strcat(cmd, "' ");
    }
  }
  free(av);
  p = popen(cmd, "r");
  if (!p) {
    free(pids);
    return vs_error_set(err, 0, "run ps"), 1;
  }
  char line[4096];
  int pid_col = -1;
  bool header = true;
  while (fgets(line, sizeof(line), p)) {
    if (header) {
      fputs(line, stdout);
      char *save = NULL, *t = strtok_r(line, " \t\n", &save);
      for (int col = 0; t; t = strtok_r(NULL, " \t\n", &save), col++)
        if (!strcmp(t, "PID"))
          pid_col = col;
      header = false;
      continue;
    }
    char copy[4096];
    snprintf(copy, sizeof(copy), "%s", line);
    char *save = NULL, *t = strtok_r(copy, " \t\n", &save);
    for (int col = 0; t && col < pid_col; col++)
      t = strtok_r(NULL, " \t\n", &save);
    long pid = t ? strtol(t, NULL, 10) : -1;
    for (size_t i = 0; i < n; i++)
      if (pids[i] == pid) {
        fputs(line, stdout);
        break;
      }
  }
  status = pclose(p);
  free(pids);
  return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
}
