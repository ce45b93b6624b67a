/* exec [--process FILE | flags] ID [COMMAND ARGS...]: run another process in the container. */
#include "cmd.h"

#include <string.h>

static int parse_user(const char *s, json_t *process, vs_error **err) {
  char *end;
  unsigned long uid = strtoul(s, &end, 10), gid = 0;
  if (end == s || (*end && *end != ':'))
    return vs_error_set(err, 0, "exec --user: \"%s\" is not UID[:GID]", s);
  if (*end == ':') {
    const char *g = end + 1;
    gid = strtoul(g, &end, 10);
    if (end == g || *end)
      return vs_error_set(err, 0, "exec --user: \"%s\" is not UID[:GID]", s);
  }
  json_t *u = json_object_get(process, "user");
  if (!json_is_object(u)) {
    u = json_object();
    json_object_set_new(process, "user", u);
  }
  json_object_set_new(u, "uid", json_integer((json_int_t)uid));
  json_object_set_new(u, "gid", json_integer((json_int_t)gid));
  return 0;
}

static void env_set(json_t *env, const char *kv) {
  size_t klen = strcspn(kv, "=");
  size_t i;
  json_t *e;
  json_array_foreach(env, i, e) {
    const char *s = json_string_value(e);
    if (s && !strncmp(s, kv, klen) && s[klen] == '=') {
      json_array_set_new(env, i, json_string(kv));
      return;
    }
  }
  json_array_append_new(env, json_string(kv));
}

int cmd_exec(ctr_runtime *rt, int argc, char **argv, vs_error **err) {
  enum { CONSOLE = 1000, PIDFILE, PROCESS, PRESERVE, NNP, APPARMOR, LABEL, CAP, CGROUP, IGNORE };
  static const struct option opts[] = {
      {"console-socket", required_argument, NULL, CONSOLE},
      {"pid-file", required_argument, NULL, PIDFILE},
      {"process", required_argument, NULL, 'p'},
      {"preserve-fds", required_argument, NULL, PRESERVE},
      {"tty", no_argument, NULL, 't'},
      {"cwd", required_argument, NULL, 'w'},
      {"env", required_argument, NULL, 'e'},
      {"user", required_argument, NULL, 'u'},
      {"additional-gids", required_argument, NULL, 'g'},
      {"detach", no_argument, NULL, 'd'},
      {"no-new-privs", no_argument, NULL, NNP},
      {"apparmor", required_argument, NULL, APPARMOR},
      {"process-label", required_argument, NULL, LABEL},
      {"cap", required_argument, NULL, 'c'},
      {"cgroup", required_argument, NULL, CGROUP},
      {"ignore-paused", no_argument, NULL, IGNORE},
      {NULL, 0, NULL, 0},
  };
  ctr_exec_opts o = {0};
  const char *process_file = NULL, *cwd = NULL, *user = NULL;
  bool tty = false, nnp = false;
  json_t *envs = json_array(), *caps = json_array(), *gids = json_array();
  int c, ret = 2;
  json_t *process = NULL;
  /* "+": the container command's own options are not ours. */
  while ((c = getopt_long(argc, argv, "+p:tw:e:u:g:dc:", opts, NULL)) != -1) {
    switch (c) {
    case CONSOLE:
      o.console_socket = optarg;
      break;
    case PIDFILE:
      o.pid_file = optarg;
      break;
    case 'p':
      process_file = optarg;
      break;
    case PRESERVE:
      if (rt_parse_count(optarg, "--preserve-fds", &o.preserve_fds, err) < 0)
        goto out;
      break;
    case 't':
      tty = true;
      break;
    case 'w':
      cwd = optarg;
      break;
    case 'e':
      json_array_append_new(envs, json_string(optarg));
      break;
    case 'u':
      user = optarg;
      break;
    case 'g': {
      int gid;
      if (rt_parse_count(optarg, "--additional-gids", &gid, err) < 0)
        goto out;
      json_array_append_new(gids, json_integer(gid));
      break;
    }
    case 'd':
      o.detach = true;
      break;
    case NNP:
      nnp = true;
      break;
    case 'c':
      json_array_append_new(caps, json_string(optarg));
      break;
    case APPARMOR:
    case LABEL:
    case CGROUP:
    case IGNORE:
      break;
    default:
      rt_usage_error(err, "exec", "unknown option");
      goto out;
    }
  }
  if (argc - optind < 1) {
    rt_usage_error(err, "exec", "expects a container id");
    goto out;
  }
  const char *id = argv[optind];
  if (process_file) {
    process = vs_json_load_file(process_file, 1 << 20, err);
    if (!process) {
      ret = 1;
      goto out;
    }
  } else {
    if (argc - optind < 2) {
      rt_usage_error(err, "exec", "expects a command to run (or --process FILE)");
      goto out;
    }
    process = ctr_exec_default_process(rt, id, err);
    if (!process) {
      ret = 1;
      goto out;
    }
    json_t *args = json_array();
    for (int i = optind + 1; i < argc; i++)
      json_array_append_new(args, json_string(argv[i]));
    json_object_set_new(process, "args", args);
    json_object_set_new(process, "terminal", json_boolean(tty));
    if (cwd)
      json_object_set_new(process, "cwd", json_string(cwd));
    if (user && parse_user(user, process, err) < 0) {
      ret = 1;
      goto out;
    }
    if (json_array_size(gids)) {
      json_t *u = json_object_get(process, "user");
      if (json_is_object(u))
        json_object_set(u, "additionalGids", gids);
    }
    json_t *env = json_object_get(process, "env");
    if (!json_is_array(env)) {
      env = json_array();
      json_object_set_new(process, "env", env);
    }
    size_t i;
    json_t *e;
    json_array_foreach(envs, i, e) env_set(env, json_string_value(e));
    if (nnp)
      json_object_set_new(process, "noNewPrivileges", json_true());
    if (json_array_size(caps)) {
      json_t *cs = json_object_get(process, "capabilities");
      if (!json_is_object(cs)) {
        cs = json_object();
        json_object_set_new(process, "capabilities", cs);
      }
      const char *sets[] = {"bounding", "effective", "permitted", "ambient"};
      for (size_t k = 0; k < ARRAY_SIZE(sets); k++) {
        json_t *a = json_object_get(cs, sets[k]);
        if (!json_is_array(a)) {
          a = json_array();
          json_object_set_new(cs, sets[k], a);
        }
        json_array_extend(a, caps);
      }
    }
  }
  o.process = process;
  int status = ctr_exec(rt, id, &o, err);
  ret = status < 0 ? 1 : status;
out:
  json_decref(process);
  json_decref(envs);
  json_decref(caps);
  json_decref(gids);
  return ret;
}
