/* spec [--bundle DIR] [--rootless]: write a default config.json (refuses to overwrite). */
#include "cmd.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>

int cmd_spec(ctr_runtime *rt, int argc, char **argv, vs_error **err) {
  (void)rt;
  static const struct option opts[] = {{"bundle", required_argument, NULL, 'b'},
                                       {"rootless", no_argument, NULL, 'r'},
                                       {NULL, 0, NULL, 0}};
  const char *bundle = ".";
  bool rootless = false;
  int c;
  while ((c = getopt_long(argc, argv, "b:", opts, NULL)) != -1) {
    if (c == 'b')
      bundle = optarg;
    else if (c == 'r')
      rootless = true;
    else
      return rt_usage_error(err, "spec", "unknown option");
  }
  if (optind != argc)
    return rt_usage_error(err, "spec", "takes no arguments");
  _cleanup_free_ char *path = vs_asprintf("%s/config.json", bundle);
  int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0)
    return vs_error_set(err, errno, "spec: %s", path), 1;
  json_t *j = ctr_default_spec(rootless);
  char *text = json_dumps(j, JSON_INDENT(2));
  json_decref(j);
  int r = vs_write_all(fd, text, strlen(text), err);
  if (r == 0)
    r = vs_write_all(fd, "\n", 1, err);
  free(text);
  close(fd);
  return r < 0 ? 1 : 0;
}
