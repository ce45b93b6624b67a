/* ps [--format table|json] ID [ps options]: the container's processes. */
#include "cmd.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/wait.h>

static bool is_container_pid(const char *line, int pid_col, const pid_t *pids, size_t n) {
  char copy[4096];
  snprintf(copy, sizeof(copy), "%s", line);
  char *save = NULL, *t = strtok_r(copy, " \t\n", &save);
  for (int col = 0; t && col < pid_col; col++)
    t = strtok_r(NULL, " \t\n", &save);
  long pid = t ? strtol(t, NULL, 10) : -1;
  for (size_t i = 0; i < n; i++)
    if (pids[i] == pid)
      return true;
  return false;
}

static int ps_table(int nopts, char **opts, const pid_t *pids, size_t n, vs_error **err) {
  char **av = vs_malloc0((size_t)(nopts + 3) * sizeof(char *));
  size_t k = 0;
  av[k++] = "ps";
  for (int i = 0; i < nopts; i++)
    av[k++] = opts[i];
  if (k == 1)
    av[k++] = "-ef";
  int out[2];
  if (pipe2(out, O_CLOEXEC) < 0) {
    free(av);
    return vs_error_set(err, errno, "ps: pipe"), 1;
  }
  fflush(stdout);
  pid_t child = fork();
  if (child == 0) {
    dup2(out[1], 1);
    execvp("ps", av);
    _exit(127);
  }
  free(av);
  close(out[1]);
  if (child < 0) {
    close(out[0]);
    return vs_error_set(err, errno, "ps: fork"), 1;
  }
  FILE *f = fdopen(out[0], "r");
  char line[4096];
  int pid_col = -1;
  bool header = true;
  while (f && fgets(line, sizeof(line), f)) {
    if (header) {
      fputs(line, stdout);
      char copy[4096];
      snprintf(copy, sizeof(copy), "%s", line);
      char *save = NULL, *t = strtok_r(copy, " \t\n", &save);
      for (int col = 0; t; t = strtok_r(NULL, " \t\n", &save), col++)
        if (!strcmp(t, "PID"))
          pid_col = col;
      header = false;
      if (pid_col < 0) {
        vs_error_set(err, 0, "ps: the ps output has no PID column");
        break;
      }
      continue;
    }
    if (is_container_pid(line, pid_col, pids, n))
      fputs(line, stdout);
  }
  if (f)
    fclose(f);
  int status;
  waitpid(child, &status, 0);
  if (*err)
    return 1;
  return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
}

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
  if (strcmp(format, "table") != 0 && strcmp(format, "json") != 0)
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
  /* The table: like runc, ps(1) (with the given ps options) filtered to the container's pids. */
  int status = ps_table(argc - optind - 1, argv + optind + 1, pids, n, err);
  free(pids);
  return status;
}
