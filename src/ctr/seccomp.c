/* linux.seccomp: checked at create, compiled with libseccomp and loaded in the container init. */
#include <ctype.h>
#include <errno.h>
#include <seccomp.h>
#include <string.h>

#include "ctr/security.h"
#include "ctr/security_internal.h"

typedef enum { ACT_PLAIN, ACT_WITH_ERRNO, ACT_NOTIFY } act_kind;

static const struct {
  const char *name;
  uint32_t action;
  act_kind kind;
} actions[] = {
    {"SCMP_ACT_KILL", SCMP_ACT_KILL_THREAD, ACT_PLAIN},
    {"SCMP_ACT_KILL_THREAD", SCMP_ACT_KILL_THREAD, ACT_PLAIN},
    {"SCMP_ACT_KILL_PROCESS", SCMP_ACT_KILL_PROCESS, ACT_PLAIN},
    {"SCMP_ACT_TRAP", SCMP_ACT_TRAP, ACT_PLAIN},
    {"SCMP_ACT_ERRNO", SCMP_ACT_ERRNO(0), ACT_WITH_ERRNO},
    {"SCMP_ACT_TRACE", SCMP_ACT_TRACE(0), ACT_WITH_ERRNO},
    {"SCMP_ACT_ALLOW", SCMP_ACT_ALLOW, ACT_PLAIN},
    {"SCMP_ACT_LOG", SCMP_ACT_LOG, ACT_PLAIN},
    {"SCMP_ACT_NOTIFY", SCMP_ACT_NOTIFY, ACT_NOTIFY},
};

static const struct {
  const char *name;
  enum scmp_compare op;
} ops[] = {
    {"SCMP_CMP_NE", SCMP_CMP_NE},
    {"SCMP_CMP_LT", SCMP_CMP_LT},
    {"SCMP_CMP_LE", SCMP_CMP_LE},
    {"SCMP_CMP_EQ", SCMP_CMP_EQ},
    {"SCMP_CMP_GE", SCMP_CMP_GE},
    {"SCMP_CMP_GT", SCMP_CMP_GT},
    {"SCMP_CMP_MASKED_EQ", SCMP_CMP_MASKED_EQ},
};

static const char *const known_flags[] = {"SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG",
                                          "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
                                          "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"};

static int find_action(const char *name) {
  for (size_t i = 0; i < ARRAY_SIZE(actions); i++)
    if (strcmp(actions[i].name, name) == 0)
      return (int)i;
  return -1;
}

static int find_op(const char *name) {
  for (size_t i = 0; i < ARRAY_SIZE(ops); i++)
    if (strcmp(ops[i].name, name) == 0)
      return (int)i;
  return -1;
}

/* "SCMP_ARCH_X86_64" -> libseccomp's token, 0 if unknown. */
static uint32_t arch_token(const char *name) {
  if (strncmp(name, "SCMP_ARCH_", 10) != 0 || strlen(name) > 40)
    return 0;
  char lower[40];
  size_t n = 0;
  for (const char *p = name + 10; *p && n < sizeof(lower) - 1; p++)
    lower[n++] = (char)tolower((unsigned char)*p);
  lower[n] = 0;
  return seccomp_arch_resolve_name(lower);
}

static bool syscall_name_well_formed(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n > 64)
    return false;
  for (const char *p = s; *p; p++)
    if (!(islower((unsigned char)*p) || isdigit((unsigned char)*p) || *p == '_'))
      return false;
  return true;
}

/* Check "action" (and "errnoRet") of an object; *index = the action's table entry. */
static int validate_action(json_t *obj, const char *key, const char *errno_key, const char *what,
                           int *index, vs_error **err) {
  const char *name;
  int64_t errno_ret;
  if (sj_string(obj, key, what, true, &name, err) < 0)
    return -1;
  int a = find_action(name);
  if (a < 0)
    return vs_error_set(err, 0, "%s.%s: unknown action \"%.64s\"", what, key, name);
  if (actions[a].kind == ACT_NOTIFY)
    return vs_error_set(err, 0,
                        "%s.%s: SCMP_ACT_NOTIFY needs a seccomp agent (listenerPath), which "
                        "vessel-runtime does not support",
                        what, key);
  if (sj_int(obj, errno_key, what, false, 0, 4095, &errno_ret, err) < 0)
    return -1;
  *index = a;
  return 0;
}

static int validate_syscall(json_t *sc, const char *what, vs_error **err) {
  json_t *names, *args, *e;
  size_t i;
  int a;
  if (sj_expect_object(sc, what, err) < 0 || sj_array(sc, "names", what, true, &names, err) < 0)
    return -1;
  if (json_array_size(names) == 0)
    return vs_error_set(err, 0, "%s.names: must name at least one syscall", what);
  json_array_foreach(names, i, e) {
    if (!json_is_string(e))
      return vs_error_set(err, 0, "%s.names[%zu]: must be a string", what, i);
    if (!syscall_name_well_formed(json_string_value(e)))
      return vs_error_set(err, 0, "%s.names[%zu]: \"%.64s\" is not a syscall name", what, i,
                          json_string_value(e));
  }
  if (validate_action(sc, "action", "errnoRet", what, &a, err) < 0)
    return -1;
  if (sj_array(sc, "args", what, false, &args, err) < 0)
    return -1;
  if (json_array_size(args) > 6)
    return vs_error_set(err, 0, "%s.args: at most 6 argument comparisons", what);
  json_array_foreach(args, i, e) {
    _cleanup_free_ char *w = vs_asprintf("%s.args[%zu]", what, i);
    int64_t v;
    const char *op;
    if (sj_expect_object(e, w, err) < 0 || sj_int(e, "index", w, true, 0, 5, &v, err) < 0 ||
        sj_int(e, "value", w, true, INT64_MIN, INT64_MAX, &v, err) < 0 ||
        sj_int(e, "valueTwo", w, false, INT64_MIN, INT64_MAX, &v, err) < 0 ||
        sj_string(e, "op", w, true, &op, err) < 0)
      return -1;
    if (find_op(op) < 0)
      return vs_error_set(err, 0, "%s.op: unknown operator \"%.64s\"", w, op);
  }
  return 0;
}

int ctr_seccomp_validate(json_t *seccomp, const char *what, vs_error **err) {
  json_t *arr, *e;
  size_t i;
  int a;
  const char *s;
  if (sj_expect_object(seccomp, what, err) < 0 ||
      validate_action(seccomp, "defaultAction", "defaultErrnoRet", what, &a, err) < 0)
    return -1;
  if (sj_array(seccomp, "architectures", what, false, &arr, err) < 0)
    return -1;
  json_array_foreach(arr, i, e) {
    if (!json_is_string(e))
      return vs_error_set(err, 0, "%s.architectures[%zu]: must be a string", what, i);
    if (arch_token(json_string_value(e)) == 0)
      return vs_error_set(err, 0, "%s.architectures[%zu]: unknown architecture \"%.64s\"", what, i,
                          json_string_value(e));
  }
  if (sj_array(seccomp, "flags", what, false, &arr, err) < 0)
    return -1;
  json_array_foreach(arr, i, e) {
    bool ok = false;
    for (size_t k = 0; json_is_string(e) && k < ARRAY_SIZE(known_flags); k++)
      ok = ok || strcmp(json_string_value(e), known_flags[k]) == 0;
    if (!ok)
      return vs_error_set(err, 0, "%s.flags[%zu]: unknown flag %s%.64s%s", what, i,
                          json_is_string(e) ? "\"" : "",
                          json_is_string(e) ? json_string_value(e) : "(not a string)",
                          json_is_string(e) ? "\"" : "");
  }
  if (sj_string(seccomp, "listenerPath", what, false, &s, err) < 0)
    return -1;
  if (s && *s)
    return vs_error_set(err, 0, "%s.listenerPath: seccomp agents are not supported", what);
  if (sj_array(seccomp, "syscalls", what, false, &arr, err) < 0)
    return -1;
  json_array_foreach(arr, i, e) {
    _cleanup_free_ char *w = vs_asprintf("%s.syscalls[%zu]", what, i);
    if (validate_syscall(e, w, err) < 0)
      return -1;
  }
  return 0;
}

/* The libseccomp action of an object's action/errno fields (already validated). */
static uint32_t resolve_action(json_t *obj, const char *key, const char *errno_key,
                               uint32_t default_errno) {
  int a = find_action(json_string_value(json_object_get(obj, key)));
  if (actions[a].kind != ACT_WITH_ERRNO)
    return actions[a].action;
  json_t *e = json_object_get(obj, errno_key);
  uint32_t code = json_is_integer(e) ? (uint32_t)json_integer_value(e) : default_errno;
  return actions[a].action == SCMP_ACT_TRACE(0) ? SCMP_ACT_TRACE(code) : SCMP_ACT_ERRNO(code);
}

static void fill_arg(json_t *e, struct scmp_arg_cmp *c) {
  c->arg = (unsigned)json_integer_value(json_object_get(e, "index"));
  c->op = ops[find_op(json_string_value(json_object_get(e, "op")))].op;
  c->datum_a = (scmp_datum_t)json_integer_value(json_object_get(e, "value"));
  c->datum_b = (scmp_datum_t)json_integer_value(json_object_get(e, "valueTwo"));
}

/* Several comparisons on the same argument cannot share one libseccomp rule: like runc, such
 * entries become one rule per comparison (any of them matches). */
static int add_syscall_rules(scmp_filter_ctx ctx, int nr, uint32_t action, json_t *args,
                             const char *what, const char *name, vs_error **err) {
  size_t n = json_array_size(args);
  struct scmp_arg_cmp cmp[6];
  bool repeated = false;
  unsigned seen = 0;
  for (size_t i = 0; i < n; i++) {
    fill_arg(json_array_get(args, i), &cmp[i]);
    repeated = repeated || (seen & (1U << cmp[i].arg));
    seen |= 1U << cmp[i].arg;
  }
  int rc;
  if (!repeated || n == 0) {
    rc = seccomp_rule_add_array(ctx, action, nr, (unsigned)n, cmp);
    if (rc < 0)
      return vs_error_set(err, -rc, "%s: add rule for %s", what, name);
    return 0;
  }
  for (size_t i = 0; i < n; i++) {
    rc = seccomp_rule_add_array(ctx, action, nr, 1, &cmp[i]);
    if (rc < 0)
      return vs_error_set(err, -rc, "%s.args[%zu]: add rule for %s", what, i, name);
  }
  return 0;
}

static int build_filter(json_t *seccomp, scmp_filter_ctx *out, vs_error **err) {
  uint32_t def = resolve_action(seccomp, "defaultAction", "defaultErrnoRet", EPERM);
  scmp_filter_ctx ctx = seccomp_init(def);
  if (!ctx)
    return vs_error_set(err, EINVAL, "linux.seccomp: seccomp_init");
  /* no_new_privs is the runtime's decision (process.noNewPrivileges), not libseccomp's. */
  int rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0);
  if (rc < 0) {
    seccomp_release(ctx);
    return vs_error_set(err, -rc, "linux.seccomp: turn off libseccomp's no_new_privs");
  }
  json_t *arr = json_object_get(seccomp, "architectures"), *e;
  size_t i;
  json_array_foreach(arr, i, e) {
    uint32_t arch = arch_token(json_string_value(e));
    rc = seccomp_arch_add(ctx, arch);
    if (rc < 0 && rc != -EEXIST) {
      seccomp_release(ctx);
      return vs_error_set(err, -rc, "linux.seccomp.architectures[%zu]: add %s", i,
                          json_string_value(e));
    }
  }
  arr = json_object_get(seccomp, "flags");
  json_array_foreach(arr, i, e) {
    const char *f = json_string_value(e);
    rc = 0;
    if (strcmp(f, "SECCOMP_FILTER_FLAG_TSYNC") == 0)
      rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_TSYNC, 1);
    else if (strcmp(f, "SECCOMP_FILTER_FLAG_LOG") == 0)
      rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_LOG, 1);
    else if (strcmp(f, "SECCOMP_FILTER_FLAG_SPEC_ALLOW") == 0)
      rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_SSB, 1);
    else
      vs_log_debug("linux.seccomp.flags[%zu]: %s is not supported by this libseccomp; ignored", i,
                   f);
    if (rc < 0) {
      seccomp_release(ctx);
      return vs_error_set(err, -rc, "linux.seccomp.flags[%zu]: %s", i, f);
    }
  }
  arr = json_object_get(seccomp, "syscalls");
  json_array_foreach(arr, i, e) {
    _cleanup_free_ char *what = vs_asprintf("linux.seccomp.syscalls[%zu]", i);
    uint32_t action = resolve_action(e, "action", "errnoRet", EPERM);
    if (action == def)
      continue; /* libseccomp refuses rules that repeat the default action */
    json_t *names = json_object_get(e, "names"), *n;
    size_t k;
    json_array_foreach(names, k, n) {
      const char *name = json_string_value(n);
      int nr = seccomp_syscall_resolve_name(name);
      if (nr == __NR_SCMP_ERROR) {
        /* Profiles list syscalls of every architecture and kernel: skip, like runc. */
        vs_log_debug("%s.names[%zu]: syscall %s unknown here; skipped", what, k, name);
        continue;
      }
      if (add_syscall_rules(ctx, nr, action, json_object_get(e, "args"), what, name, err) < 0) {
        seccomp_release(ctx);
        return -1;
      }
    }
  }
  *out = ctx;
  return 0;
}

static const char *const feature_archs[] = {
    "SCMP_ARCH_X86",     "SCMP_ARCH_X86_64",   "SCMP_ARCH_X32",         "SCMP_ARCH_ARM",
    "SCMP_ARCH_AARCH64", "SCMP_ARCH_MIPS",     "SCMP_ARCH_MIPS64",      "SCMP_ARCH_MIPS64N32",
    "SCMP_ARCH_MIPSEL",  "SCMP_ARCH_MIPSEL64", "SCMP_ARCH_MIPSEL64N32", "SCMP_ARCH_PPC",
    "SCMP_ARCH_PPC64",   "SCMP_ARCH_PPC64LE",  "SCMP_ARCH_S390",        "SCMP_ARCH_S390X",
    "SCMP_ARCH_PARISC",  "SCMP_ARCH_PARISC64", "SCMP_ARCH_RISCV64",     "SCMP_ARCH_LOONGARCH64",
    "SCMP_ARCH_M68K",    "SCMP_ARCH_SH",       "SCMP_ARCH_SHEB"};

json_t *ctr_seccomp_features(void) {
  json_t *acts = json_array(), *opsj = json_array(), *archs = json_array();
  json_t *known = json_array(), *supported = json_array();
  for (size_t i = 0; i < ARRAY_SIZE(actions); i++)
    if (actions[i].kind != ACT_NOTIFY)
      json_array_append_new(acts, json_string(actions[i].name));
  for (size_t i = 0; i < ARRAY_SIZE(ops); i++)
    json_array_append_new(opsj, json_string(ops[i].name));
  for (size_t i = 0; i < ARRAY_SIZE(feature_archs); i++)
    if (arch_token(feature_archs[i]) != 0)
      json_array_append_new(archs, json_string(feature_archs[i]));
  for (size_t i = 0; i < ARRAY_SIZE(known_flags); i++) {
    json_array_append_new(known, json_string(known_flags[i]));
    if (strcmp(known_flags[i], "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV") != 0)
      json_array_append_new(supported, json_string(known_flags[i]));
  }
  return json_pack("{s:b, s:o, s:o, s:o, s:o, s:o}", "enabled", 1, "actions", acts, "operators",
                   opsj, "archs", archs, "knownFlags", known, "supportedFlags", supported);
}

int ctr_seccomp_compile_only(json_t *seccomp, vs_error **err) {
  if (ctr_seccomp_validate(seccomp, "linux.seccomp", err) < 0)
    return -1;
  scmp_filter_ctx ctx = NULL;
  if (build_filter(seccomp, &ctx, err) < 0)
    return -1;
  seccomp_release(ctx);
  return 0;
}

int ctr_seccomp_load(json_t *seccomp, vs_error **err) {
  if (!seccomp || json_is_null(seccomp))
    return 0;
  if (ctr_seccomp_validate(seccomp, "linux.seccomp", err) < 0)
    return -1;
  scmp_filter_ctx ctx = NULL;
  if (build_filter(seccomp, &ctx, err) < 0)
    return -1;
  int rc = seccomp_load(ctx);
  seccomp_release(ctx);
  if (rc < 0)
    return vs_error_set(err, -rc, "load the seccomp filter");
  return 0;
}
