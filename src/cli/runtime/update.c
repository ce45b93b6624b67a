/* update [-r FILE | runc's resource flags] ID: change a running container's resources. */
#include "cmd.h"

#include <errno.h>
#include <string.h>

/* Parse "1024", "512k", "64m", "2g" (memory flags accept units as runc does). */
static int parse_size(const char *s, int64_t *out) {
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno || end == s)
    return -1;
  long long mul = 1;
  switch (*end) {
  case 0:
    break;
  case 'k':
  case 'K':
    mul = 1LL << 10;
    end++;
    break;
  case 'm':
  case 'M':
    mul = 1LL << 20;
    end++;
    break;
  case 'g':
  case 'G':
    mul = 1LL << 30;
    end++;
    break;
  default:
    return -1;
  }
  if (*end == 'b' || *end == 'B')
    end++;
  if (*end)
    return -1;
  *out = v == -1 ? -1 : v * mul;
  return 0;
}

static json_t *section(json_t *res, const char *name) {
  json_t *s = json_object_get(res, name);
  if (!s) {
    s = json_object();
    json_object_set_new(res, name, s);
  }
  return s;
}

int cmd_update(ctr_runtime *rt, int argc, char **argv, vs_error **err) {
  enum {
    MEM = 1000,
    MEMRES,
    MEMSWAP,
    KMEM,
    CPUSHARES,
    CPUQUOTA,
    CPUPERIOD,
    CPURTP,
    CPURTR,
    CPUSETCPUS,
    CPUSETMEMS,
    PIDS,
    BLKIOW,
    CPUIDLE
  };
  static const struct option opts[] = {
      {"resources", required_argument, NULL, 'r'},
      {"memory", required_argument, NULL, MEM},
      {"memory-reservation", required_argument, NULL, MEMRES},
      {"memory-swap", required_argument, NULL, MEMSWAP},
      {"kernel-memory", required_argument, NULL, KMEM},
      {"cpu-shares", required_argument, NULL, CPUSHARES},
      {"cpu-quota", required_argument, NULL, CPUQUOTA},
      {"cpu-period", required_argument, NULL, CPUPERIOD},
      {"cpu-rt-period", required_argument, NULL, CPURTP},
      {"cpu-rt-runtime", required_argument, NULL, CPURTR},
      {"cpuset-cpus", required_argument, NULL, CPUSETCPUS},
      {"cpuset-mems", required_argument, NULL, CPUSETMEMS},
      {"pids-limit", required_argument, NULL, PIDS},
      {"blkio-weight", required_argument, NULL, BLKIOW},
      {"cpu-idle", required_argument, NULL, CPUIDLE},
      {NULL, 0, NULL, 0},
  };
  json_t *res = json_object();
  const char *file = NULL;
  int c, ret = 2;
  while ((c = getopt_long(argc, argv, "r:", opts, NULL)) != -1) {
    int64_t v;
    const char *key = NULL, *sec = NULL;
    bool size = false;
    switch (c) {
    case 'r':
      file = optarg;
      continue;
    case MEM:
      sec = "memory";
      key = "limit";
      size = true;
      break;
    case MEMRES:
      sec = "memory";
      key = "reservation";
      size = true;
      break;
    case MEMSWAP:
      sec = "memory";
      key = "swap";
      size = true;
      break;
    case KMEM:
      sec = "memory";
      key = "kernel";
      size = true;
      break;
    case CPUSHARES:
      sec = "cpu";
      key = "shares";
      break;
    case CPUQUOTA:
      sec = "cpu";
      key = "quota";
      break;
    case CPUPERIOD:
      sec = "cpu";
      key = "period";
      break;
    case CPURTP:
      sec = "cpu";
      key = "realtimePeriod";
      break;
    case CPURTR:
      sec = "cpu";
      key = "realtimeRuntime";
      break;
    case CPUIDLE:
      sec = "cpu";
      key = "idle";
      break;
    case CPUSETCPUS:
      json_object_set_new(section(res, "cpu"), "cpus", json_string(optarg));
      continue;
    case CPUSETMEMS:
      json_object_set_new(section(res, "cpu"), "mems", json_string(optarg));
      continue;
    case PIDS:
      sec = "pids";
      key = "limit";
      break;
    case BLKIOW:
      sec = "blockIO";
      key = "weight";
      break;
    default:
      rt_usage_error(err, "update", "unknown option");
      goto out;
    }
    char *end;
    errno = 0;
    if (size ? parse_size(optarg, &v) < 0 : ((v = strtoll(optarg, &end, 10)), errno || *end)) {
      rt_usage_error(err, "update", "--%s: \"%s\" is not a number", opts[c - MEM + 1].name, optarg);
      goto out;
    }
    json_object_set_new(section(res, sec), key, json_integer(v));
  }
  const char *id;
  if (rt_one_id(argc, argv, &id, err))
    goto out;
  if (file) {
    json_t *j =
        !strcmp(file, "-") ? json_loadf(stdin, 0, NULL) : vs_json_load_file(file, 1 << 20, err);
    if (!j) {
      if (!*err)
        vs_error_set(err, 0, "update: -r -: invalid JSON on stdin");
      ret = 1;
      goto out;
    }
    json_object_update(res, j);
    json_decref(j);
  }
  ret = ctr_update(rt, id, res, err) < 0 ? 1 : 0;
out:
  json_decref(res);
  return ret;
}
