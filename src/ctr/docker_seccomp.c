/* Docker's seccomp profile format (what `docker run --security-opt seccomp=FILE` sends) turned
 * into an OCI linux.seccomp object, the way dockerd does it: archMap narrowed to this machine's
 * architecture and its sub-architectures, "name" or "names", and rules kept or dropped by their
 * includes/excludes (architectures, capabilities of the container, minimum kernel). */
#include "ctr/ctr.h"
#include "ctr/security.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>

#if defined(__x86_64__)
#define NATIVE_GOARCH "amd64"
#define NATIVE_SCMP "SCMP_ARCH_X86_64"
#elif defined(__aarch64__)
#define NATIVE_GOARCH "arm64"
#define NATIVE_SCMP "SCMP_ARCH_AARCH64"
#elif defined(__riscv) && __riscv_xlen == 64
#define NATIVE_GOARCH "riscv64"
#define NATIVE_SCMP "SCMP_ARCH_RISCV64"
#else /* no archMap entry or arches list names this machine */
#define NATIVE_GOARCH "unknown"
#define NATIVE_SCMP "unknown"
#endif

static bool in_strings(json_t *a, const char *s) {
  size_t i;
  json_t *v;
  json_array_foreach(a, i,
                     v) if (json_is_string(v) && !strcmp(json_string_value(v), s)) return true;
  return false;
}

static int want_strings(json_t *obj, const char *field, const char *what, json_t **out,
                        vs_error **err) {
  json_t *a = json_object_get(obj, field);
  *out = NULL;
  if (!a || json_is_null(a))
    return 0;
  if (!json_is_array(a))
    return vs_error_set(err, 0, "%s.%s: expected an array of strings", what, field);
  size_t i;
  json_t *v;
  json_array_foreach(a, i, v) if (!json_is_string(v)) return vs_error_set(
      err, 0, "%s.%s[%zu]: expected a string", what, field, i);
  *out = a;
  return 0;
}

/* "5.8" or "4.14.2": major and minor, or false when it is not such a version. */
static bool major_minor(const char *v, unsigned long *maj, unsigned long *min, bool strict) {
  char *end;
  errno = 0;
  *maj = strtoul(v, &end, 10);
  if (end == v || *end != '.' || errno)
    return false;
  const char *m = end + 1;
  *min = strtoul(m, &end, 10);
  if (end == m || errno)
    return false;
  if (!strict)
    return true;
  if (*end == '.') { /* a patch level */
    const char *p = end + 1;
    strtoul(p, &end, 10);
    if (end == p || errno)
      return false;
  }
  return *end == 0;
}

/* A minimum kernel version against the running kernel: whether it is at least that. */
static int kernel_at_least(const char *want, const char *what, bool *ok, vs_error **err) {
  unsigned long wmaj, wmin, kmaj, kmin;
  if (!major_minor(want, &wmaj, &wmin, true))
    return vs_error_set(err, 0, "%s.minKernel: \"%.32s\" is not a kernel version", what, want);
  struct utsname u;
  if (uname(&u) < 0 || !major_minor(u.release, &kmaj, &kmin, false))
    return vs_error_set(err, errno ? errno : EIO, "read the kernel version");
  *ok = kmaj > wmaj || (kmaj == wmaj && kmin >= wmin);
  return 0;
}

/* Whether a rule applies to this container (its includes all hold, no exclude matches). */
static int rule_applies(json_t *rule, json_t *caps, const char *what, bool *applies,
                        vs_error **err) {
  *applies = false;
  static const char *const parts[] = {"includes", "excludes"};
  for (int p = 0; p < 2; p++) {
    json_t *f = json_object_get(rule, parts[p]);
    if (!f || json_is_null(f))
      continue;
    _cleanup_free_ char *w = vs_asprintf("%s.%s", what, parts[p]);
    if (!json_is_object(f))
      return vs_error_set(err, 0, "%s: expected an object", w);
    json_t *arches, *need;
    if (want_strings(f, "arches", w, &arches, err) < 0 ||
        want_strings(f, "caps", w, &need, err) < 0)
      return -1;
    const char *min = NULL;
    if (vs_json_get_string(f, "minKernel", false, &min, err) < 0)
      return vs_error_wrap(err, "%s", w);
    bool included = p == 0;
    if (json_array_size(arches) && in_strings(arches, NATIVE_GOARCH) != included)
      return 0;
    size_t i;
    json_t *c;
    json_array_foreach(need, i, c) {
      bool have = in_strings(caps, json_string_value(c));
      if (included && !have)
        return 0; /* every capability listed in includes is needed */
      if (!included && have)
        return 0; /* any capability listed in excludes drops the rule */
    }
    if (min && *min) {
      bool newer;
      if (kernel_at_least(min, w, &newer, err) < 0)
        return -1;
      if (newer != included)
        return 0;
    }
  }
  *applies = true;
  return 0;
}

static int convert_syscall(json_t *rule, json_t *caps, const char *what, json_t *out,
                           vs_error **err) {
  if (!json_is_object(rule))
    return vs_error_set(err, 0, "%s: expected an object", what);
  const char *name = NULL;
  json_t *names;
  if (vs_json_get_string(rule, "name", false, &name, err) < 0 ||
      want_strings(rule, "names", what, &names, err) < 0)
    return vs_error_wrap(err, "%s", what);
  if (name && *name && json_array_size(names))
    return vs_error_set(err, 0,
                        "%s: 'name' and 'names' were specified in the seccomp profile, use either "
                        "'name' or 'names'",
                        what);
  bool applies;
  if (rule_applies(rule, caps, what, &applies, err) < 0)
    return -1;
  if (!applies)
    return 0;
  json_t *r = json_object();
  json_object_set_new(r, "names", name && *name ? json_pack("[s]", name) : json_incref(names));
  static const char *const copied[] = {"action", "errnoRet", "args"};
  for (size_t i = 0; i < ARRAY_SIZE(copied); i++) {
    json_t *v = json_object_get(rule, copied[i]);
    if (v && !json_is_null(v))
      json_object_set(r, copied[i], v);
  }
  json_array_append_new(out, r);
  return 0;
}

static json_t *convert_profile(json_t *profile, json_t *caps, vs_error **err) {
  const char *what = "seccomp profile";
  if (!json_is_object(profile)) {
    vs_error_set(err, 0, "%s: expected a JSON object", what);
    return NULL;
  }
  json_t *arches, *archmap = json_object_get(profile, "archMap");
  if (want_strings(profile, "architectures", what, &arches, err) < 0)
    return NULL;
  if (json_array_size(arches) && json_array_size(archmap)) {
    vs_error_set(err, 0,
                 "'architectures' and 'archMap' were specified in the seccomp profile, use "
                 "either 'architectures' or 'archMap'");
    return NULL;
  }
  if (archmap && !json_is_null(archmap) && !json_is_array(archmap)) {
    vs_error_set(err, 0, "%s.archMap: expected an array", what);
    return NULL;
  }
  json_t *out = json_object();
  json_t *v = json_object_get(profile, "defaultAction");
  if (v)
    json_object_set(out, "defaultAction", v);
  if ((v = json_object_get(profile, "defaultErrnoRet")) && !json_is_null(v))
    json_object_set(out, "defaultErrnoRet", v);
  if ((v = json_object_get(profile, "flags")) && !json_is_null(v))
    json_object_set(out, "flags", v);
  json_t *archs = json_array();
  json_object_set_new(out, "architectures", archs);
  if (arches)
    json_array_extend(archs, arches);
  size_t i;
  json_t *m;
  json_array_foreach(archmap, i, m) {
    _cleanup_free_ char *w = vs_asprintf("%s.archMap[%zu]", what, i);
    const char *arch = NULL;
    json_t *subs;
    if (!json_is_object(m)) {
      vs_error_set(err, 0, "%s: expected an object", w);
      goto fail;
    }
    if (vs_json_get_string(m, "architecture", true, &arch, err) < 0 ||
        want_strings(m, "subArchitectures", w, &subs, err) < 0) {
      vs_error_wrap(err, "%s", w);
      goto fail;
    }
    if (strcmp(arch, NATIVE_SCMP) != 0)
      continue;
    json_array_append_new(archs, json_string(arch));
    if (subs)
      json_array_extend(archs, subs);
  }
  json_t *rules = json_object_get(profile, "syscalls");
  if (rules && !json_is_null(rules) && !json_is_array(rules)) {
    vs_error_set(err, 0, "%s.syscalls: expected an array", what);
    goto fail;
  }
  json_t *calls = json_array();
  json_object_set_new(out, "syscalls", calls);
  json_t *r;
  json_array_foreach(rules, i, r) {
    _cleanup_free_ char *w = vs_asprintf("%s.syscalls[%zu]", what, i);
    if (convert_syscall(r, caps, w, calls, err) < 0)
      goto fail;
  }
  /* what the runtime will load: checked now, so a bad profile fails the create, not the start */
  if (ctr_seccomp_validate(out, what, err) < 0)
    goto fail;
  return out;
fail:
  json_decref(out);
  return NULL;
}

json_t *ctr_seccomp_from_docker(json_t *profile, json_t *caps, vs_error **err) {
  json_t *out = convert_profile(profile, caps, err);
  if (!out && err && *err)
    (*err)->errnum = EINVAL; /* every failure here is the profile's */
  return out;
}
