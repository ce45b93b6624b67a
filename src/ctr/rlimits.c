/* process.rlimits: checked at create against the host's hard limits, applied in the init. */
#include <errno.h>
#include <string.h>
#include <sys/capability.h>
#include <sys/resource.h>

#include "ctr/security.h"
#include "ctr/security_internal.h"

static const struct {
  const char *name;
  int resource;
} rlimit_names[] = {
    {"RLIMIT_CPU", RLIMIT_CPU},           {"RLIMIT_FSIZE", RLIMIT_FSIZE},
    {"RLIMIT_DATA", RLIMIT_DATA},         {"RLIMIT_STACK", RLIMIT_STACK},
    {"RLIMIT_CORE", RLIMIT_CORE},         {"RLIMIT_RSS", RLIMIT_RSS},
    {"RLIMIT_NPROC", RLIMIT_NPROC},       {"RLIMIT_NOFILE", RLIMIT_NOFILE},
    {"RLIMIT_MEMLOCK", RLIMIT_MEMLOCK},   {"RLIMIT_AS", RLIMIT_AS},
    {"RLIMIT_LOCKS", RLIMIT_LOCKS},       {"RLIMIT_SIGPENDING", RLIMIT_SIGPENDING},
    {"RLIMIT_MSGQUEUE", RLIMIT_MSGQUEUE}, {"RLIMIT_NICE", RLIMIT_NICE},
    {"RLIMIT_RTPRIO", RLIMIT_RTPRIO},     {"RLIMIT_RTTIME", RLIMIT_RTTIME},
};

static int rlimit_resource(const char *name) {
  for (size_t i = 0; i < ARRAY_SIZE(rlimit_names); i++)
    if (strcmp(rlimit_names[i].name, name) == 0)
      return rlimit_names[i].resource;
  return -1;
}

/* A limit value: a non-negative integer, or a number too big for a signed 64-bit integer
 * (2^64-1 is RLIM_INFINITY; JSON parsers may hand it over as a real). */
static int rlimit_value(json_t *e, const char *key, const char *what, rlim_t *out, vs_error **err) {
  json_t *v = json_object_get(e, key);
  if (!v)
    return vs_error_set(err, 0, "%s.%s: missing (required)", what, key);
  if (json_is_integer(v) && json_integer_value(v) >= 0) {
    *out = (rlim_t)json_integer_value(v);
    return 0;
  }
  if (json_is_real(v) && json_real_value(v) >= 0 && json_real_value(v) == json_real_value(v)) {
    double d = json_real_value(v);
    *out = d >= 18446744073709551615.0 ? RLIM_INFINITY : (rlim_t)d;
    return 0;
  }
  return vs_error_set(err, 0, "%s.%s: must be a non-negative integer", what, key);
}

static bool has_effective_cap(cap_value_t cap) {
  cap_t c = cap_get_proc();
  cap_flag_value_t f = CAP_CLEAR;
  if (c) {
    cap_get_flag(c, cap, CAP_EFFECTIVE, &f);
    cap_free(c);
  }
  return f == CAP_SET;
}

static const char *fmt_limit(rlim_t v, char buf[32]) {
  if (v == RLIM_INFINITY)
    return "unlimited";
  snprintf(buf, 32, "%llu", (unsigned long long)v);
  return buf;
}

int ctr_rlimits_validate(json_t *rlimits, const char *what, vs_error **err) {
  if (!json_is_array(rlimits))
    return vs_error_set(err, 0, "%s: must be an array", what);
  uint32_t seen = 0;
  bool can_raise = has_effective_cap(CAP_SYS_RESOURCE);
  size_t i;
  json_t *e;
  json_array_foreach(rlimits, i, e) {
    _cleanup_free_ char *w = vs_asprintf("%s[%zu]", what, i);
    const char *type;
    rlim_t soft = 0, hard = 0;
    if (sj_expect_object(e, w, err) < 0 || sj_string(e, "type", w, true, &type, err) < 0)
      return -1;
    int res = rlimit_resource(type);
    if (res < 0)
      return vs_error_set(err, 0, "%s.type: unknown rlimit \"%.64s\"", w, type);
    if (seen & (1U << res))
      return vs_error_set(err, 0, "%s.type: %s is given twice", w, type);
    seen |= 1U << res;
    if (rlimit_value(e, "soft", w, &soft, err) < 0 || rlimit_value(e, "hard", w, &hard, err) < 0)
      return -1;
    char b1[32], b2[32];
    if (soft > hard)
      return vs_error_set(err, 0, "%s: %s soft limit %s is above its hard limit %s", w, type,
                          fmt_limit(soft, b1), fmt_limit(hard, b2));
    struct rlimit cur;
    if (getrlimit(res, &cur) == 0 && hard > cur.rlim_max && !can_raise)
      return vs_error_set(err, EPERM,
                          "%s: %s hard limit %s is above this host's hard limit %s and the "
                          "runtime lacks CAP_SYS_RESOURCE to raise it",
                          w, type, fmt_limit(hard, b1), fmt_limit(cur.rlim_max, b2));
  }
  return 0;
}

int ctr_rlimits_apply(json_t *rlimits, vs_error **err) {
  if (!rlimits || json_is_null(rlimits))
    return 0;
  if (ctr_rlimits_validate(rlimits, "process.rlimits", err) < 0)
    return -1;
  size_t i;
  json_t *e;
  json_array_foreach(rlimits, i, e) {
    const char *type = json_string_value(json_object_get(e, "type"));
    struct rlimit rl;
    rlimit_value(e, "soft", "", &rl.rlim_cur, NULL);
    rlimit_value(e, "hard", "", &rl.rlim_max, NULL);
    if (setrlimit(rlimit_resource(type), &rl) < 0)
      return vs_error_set(err, errno, "process.rlimits[%zu]: set %s", i, type);
  }
  return 0;
}
