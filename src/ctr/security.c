/* Security checks at `create` (before anything exists), typed JSON field checks, the oom score
 * and AppArmor / SELinux exec labels. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <string.h>
#include <sys/capability.h>
#include <sys/stat.h>

#include "ctr/security.h"
#include "ctr/security_internal.h"

/* ---------------------------------------------------------------- JSON field checks */

int sj_expect_object(json_t *value, const char *what, vs_error **err) {
  if (!json_is_object(value))
    return vs_error_set(err, 0, "%s: must be an object", what);
  return 0;
}

/* 0 = absent (or null and not required), 1 = present. */
static int field(json_t *obj, const char *key, const char *what, bool required, json_t **out,
                 vs_error **err) {
  json_t *v = json_object_get(obj, key);
  if (!v || json_is_null(v)) {
    if (required)
      return vs_error_set(err, 0, "%s.%s: missing (required)", what, key);
    return 0;
  }
  *out = v;
  return 1;
}

int sj_int(json_t *obj, const char *key, const char *what, bool required, int64_t min, int64_t max,
           int64_t *out, vs_error **err) {
  json_t *v = NULL;
  int r = field(obj, key, what, required, &v, err);
  if (r <= 0)
    return r;
  if (!json_is_integer(v))
    return vs_error_set(err, 0, "%s.%s: must be an integer", what, key);
  int64_t x = json_integer_value(v);
  if (x < min || x > max)
    return vs_error_set(err, 0, "%s.%s: %lld is out of range (%lld to %lld)", what, key,
                        (long long)x, (long long)min, (long long)max);
  *out = x;
  return 1;
}

int sj_string(json_t *obj, const char *key, const char *what, bool required, const char **out,
              vs_error **err) {
  json_t *v = NULL;
  *out = NULL;
  int r = field(obj, key, what, required, &v, err);
  if (r <= 0)
    return r;
  if (!json_is_string(v))
    return vs_error_set(err, 0, "%s.%s: must be a string", what, key);
  if (strlen(json_string_value(v)) != json_string_length(v))
    return vs_error_set(err, 0, "%s.%s: contains a NUL byte", what, key);
  *out = json_string_value(v);
  return 1;
}

int sj_bool(json_t *obj, const char *key, const char *what, bool required, bool *out,
            vs_error **err) {
  json_t *v = NULL;
  int r = field(obj, key, what, required, &v, err);
  if (r <= 0)
    return r;
  if (!json_is_boolean(v))
    return vs_error_set(err, 0, "%s.%s: must be true or false", what, key);
  *out = json_is_true(v);
  return 1;
}

int sj_array(json_t *obj, const char *key, const char *what, bool required, json_t **out,
             vs_error **err) {
  json_t *v = NULL;
  *out = NULL;
  int r = field(obj, key, what, required, &v, err);
  if (r <= 0)
    return r;
  if (!json_is_array(v))
    return vs_error_set(err, 0, "%s.%s: must be an array", what, key);
  *out = v;
  return 1;
}

int sj_object(json_t *obj, const char *key, const char *what, bool required, json_t **out,
              vs_error **err) {
  json_t *v = NULL;
  *out = NULL;
  int r = field(obj, key, what, required, &v, err);
  if (r <= 0)
    return r;
  if (!json_is_object(v))
    return vs_error_set(err, 0, "%s.%s: must be an object", what, key);
  *out = v;
  return 1;
}

/* ---------------------------------------------------------------- LSMs */

static bool apparmor_enabled(void) {
  char c = 0;
  _cleanup_close_ int fd = open("/sys/module/apparmor/parameters/enabled", O_RDONLY | O_CLOEXEC);
  return access("/sys/kernel/security/apparmor", F_OK) == 0 && fd >= 0 && read(fd, &c, 1) == 1 &&
         c == 'Y';
}

static bool selinux_enabled(void) { return access("/sys/fs/selinux/enforce", F_OK) == 0; }

static int validate_lsm(json_t *process, json_t *linux_section, vs_error **err) {
  const char *s = NULL;
  if (process && sj_string(process, "apparmorProfile", "process", false, &s, err) < 0)
    return -1;
  if (s && *s && !apparmor_enabled())
    return vs_error_set(err, 0,
                        "process.apparmorProfile: \"%s\" is set but AppArmor is not enabled on "
                        "this host",
                        s);
  s = NULL;
  if (process && sj_string(process, "selinuxLabel", "process", false, &s, err) < 0)
    return -1;
  if (s && *s && !selinux_enabled())
    return vs_error_set(err, 0,
                        "process.selinuxLabel: \"%s\" is set but SELinux is disabled or not "
                        "supported on this host",
                        s);
  s = NULL;
  if (linux_section && sj_string(linux_section, "mountLabel", "linux", false, &s, err) < 0)
    return -1;
  if (s && *s && !selinux_enabled())
    vs_log_debug("linux.mountLabel: SELinux is not enabled; the label is ignored (as runc does)");
  return 0;
}

static int write_proc_attr(const char *path, const char *value, vs_error **err) {
  _cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0)
    return vs_error_set(err, errno, "open %s", path);
  size_t len = strlen(value);
  if (write(fd, value, len) != (ssize_t)len)
    return vs_error_set(err, errno, "write %s", path);
  return 0;
}

int ctr_lsm_apply(json_t *process, vs_error **err) {
  if (!process)
    return 0;
  const char *profile = json_string_value(json_object_get(process, "apparmorProfile"));
  if (profile && *profile) {
    if (!apparmor_enabled())
      return vs_error_set(err, 0, "process.apparmorProfile: AppArmor is not enabled on this host");
    _cleanup_free_ char *cmd = vs_asprintf("exec %s", profile);
    const char *attr = access("/proc/self/attr/apparmor/exec", F_OK) == 0
                           ? "/proc/self/attr/apparmor/exec"
                           : "/proc/self/attr/exec";
    if (write_proc_attr(attr, cmd, err) < 0)
      return vs_error_wrap(err, "apply AppArmor profile %s", profile);
  }
  const char *label = json_string_value(json_object_get(process, "selinuxLabel"));
  if (label && *label) {
    if (!selinux_enabled())
      return vs_error_set(err, 0, "process.selinuxLabel: SELinux is not enabled on this host");
    if (write_proc_attr("/proc/self/attr/exec", label, err) < 0)
      return vs_error_wrap(err, "apply SELinux label %s", label);
  }
  return 0;
}

/* ---------------------------------------------------------------- oom score */

int ctr_oom_score_adj_apply(int score, vs_error **err) {
  if (score < -1000 || score > 1000)
    return vs_error_set(err, 0, "process.oomScoreAdj: %d is out of range (-1000 to 1000)", score);
  char buf[16];
  snprintf(buf, sizeof(buf), "%d", score);
  if (write_proc_attr("/proc/self/oom_score_adj", buf, err) < 0) {
    if (errno == EACCES || errno == EPERM)
      return vs_error_wrap(err,
                           "process.oomScoreAdj: lowering the score to %d needs "
                           "CAP_SYS_RESOURCE",
                           score);
    return vs_error_wrap(err, "process.oomScoreAdj");
  }
  return 0;
}

/* ---------------------------------------------------------------- everything at create */

int ctr_security_validate(json_t *process, json_t *linux_section, vs_error **err) {
  if (process && !json_is_null(process)) {
    if (sj_expect_object(process, "process", err) < 0)
      return -1;
    json_t *v;
    bool b;
    int64_t score;
    if (sj_object(process, "capabilities", "process", false, &v, err) < 0 ||
        (v && ctr_caps_validate(v, "process.capabilities", err) < 0))
      return -1;
    if (sj_array(process, "rlimits", "process", false, &v, err) < 0 ||
        (v && ctr_rlimits_validate(v, "process.rlimits", err) < 0))
      return -1;
    if (sj_bool(process, "noNewPrivileges", "process", false, &b, err) < 0 ||
        sj_int(process, "oomScoreAdj", "process", false, -1000, 1000, &score, err) < 0)
      return -1;
  } else {
    process = NULL;
  }
  if (linux_section && !json_is_null(linux_section)) {
    if (sj_expect_object(linux_section, "linux", err) < 0)
      return -1;
    json_t *seccomp;
    if (sj_object(linux_section, "seccomp", "linux", false, &seccomp, err) < 0 ||
        (seccomp && ctr_seccomp_validate(seccomp, "linux.seccomp", err) < 0))
      return -1;
  } else {
    linux_section = NULL;
  }
  return validate_lsm(process, linux_section, err);
}

void ctr_security_features(json_t *linux_features) {
  json_t *caps = json_array();
  for (int c = 0; c <= (int)cap_max_bits() - 1; c++) {
    char *name = cap_to_name(c);
    if (name && strncmp(name, "cap_", 4) == 0) {
      _cleanup_free_ char *upper = vs_strdup(name);
      for (char *p = upper; *p; p++)
        *p = (char)(*p >= 'a' && *p <= 'z' ? *p - 'a' + 'A' : *p);
      json_array_append_new(caps, json_string(upper));
    }
    cap_free(name);
  }
  json_object_set_new(linux_features, "capabilities", caps);
  json_object_set_new(linux_features, "seccomp", ctr_seccomp_features());
  json_object_set_new(linux_features, "apparmor",
                      json_pack("{s:b}", "enabled", apparmor_enabled()));
  json_object_set_new(linux_features, "selinux", json_pack("{s:b}", "enabled", selinux_enabled()));
}
