/* process.capabilities: the bounding, effective, permitted, inheritable and ambient sets. */
#include <errno.h>
#include <string.h>
#include <sys/capability.h>
#include <sys/prctl.h>

#include "ctr/security.h"
#include "ctr/security_internal.h"

static const char *const cap_sets[] = {"bounding", "effective", "permitted", "inheritable",
                                       "ambient"};

int ctr_cap_from_name(const char *name) {
  if (strncmp(name, "CAP_", 4) != 0 || strlen(name) > 64)
    return -1;
  for (const char *p = name + 4; *p; p++)
    if (!((*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '_'))
      return -1;
  cap_value_t v;
  if (cap_from_name(name, &v) < 0)
    return -1;
  /* libcap also accepts plain numbers; OCI names never are. */
  if (name[4] >= '0' && name[4] <= '9')
    return -1;
  return (int)v;
}

int ctr_caps_validate(json_t *caps, const char *what, vs_error **err) {
  if (sj_expect_object(caps, what, err) < 0)
    return -1;
  for (size_t s = 0; s < ARRAY_SIZE(cap_sets); s++) {
    json_t *arr, *e;
    size_t i;
    if (sj_array(caps, cap_sets[s], what, false, &arr, err) < 0)
      return -1;
    if (!arr)
      continue;
    json_array_foreach(arr, i, e) {
      if (!json_is_string(e))
        return vs_error_set(err, 0, "%s.%s[%zu]: must be a string", what, cap_sets[s], i);
      if (ctr_cap_from_name(json_string_value(e)) < 0)
        return vs_error_set(err, 0, "%s.%s[%zu]: unknown capability \"%.64s\"", what, cap_sets[s],
                            i, json_string_value(e));
    }
  }
  return 0;
}

/* One set as a bit mask. Capabilities the running kernel does not know are skipped, as runc
 * does (a newer spec on an older kernel). */
static uint64_t set_mask(json_t *caps, const char *set, int last_cap) {
  uint64_t m = 0;
  json_t *arr = caps ? json_object_get(caps, set) : NULL, *e;
  size_t i;
  json_array_foreach(arr, i, e) {
    const char *name = json_string_value(e);
    int c = name ? ctr_cap_from_name(name) : -1;
    if (c < 0 || c > last_cap || c >= 64) {
      vs_log_debug("process.capabilities.%s: %s is unknown to this kernel; skipped", set,
                   name ? name : "?");
      continue;
    }
    m |= 1ULL << c;
  }
  return m;
}

/* libcap's names must be released with cap_free(); hand out a plain malloc'ed copy. */
static char *cap_name(int c) {
  char *n = cap_to_name(c);
  char *copy = vs_strdup(n ? n : "?");
  cap_free(n);
  return copy;
}

int ctr_caps_keep_across_user_switch(vs_error **err) {
  if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0)
    return vs_error_set(err, errno, "prctl(PR_SET_KEEPCAPS)");
  return 0;
}

static int set_proc_caps(uint64_t eff, uint64_t perm, uint64_t inh, int last_cap, vs_error **err) {
  cap_t c = cap_init();
  if (!c)
    return vs_error_set(err, errno, "cap_init");
  for (int i = 0; i <= last_cap && i < 64; i++) {
    cap_value_t v = i;
    if (eff & (1ULL << i))
      cap_set_flag(c, CAP_EFFECTIVE, 1, &v, CAP_SET);
    if (perm & (1ULL << i))
      cap_set_flag(c, CAP_PERMITTED, 1, &v, CAP_SET);
    if (inh & (1ULL << i))
      cap_set_flag(c, CAP_INHERITABLE, 1, &v, CAP_SET);
  }
  int rc = cap_set_proc(c);
  int saved = errno;
  cap_free(c);
  if (rc < 0)
    return vs_error_set(err, saved, "capset");
  return 0;
}

static uint64_t current_permitted(int last_cap) {
  uint64_t m = 0;
  cap_t c = cap_get_proc();
  if (!c)
    return 0;
  for (int i = 0; i <= last_cap && i < 64; i++) {
    cap_flag_value_t f = CAP_CLEAR;
    if (cap_get_flag(c, i, CAP_PERMITTED, &f) == 0 && f == CAP_SET)
      m |= 1ULL << i;
  }
  cap_free(c);
  return m;
}

int ctr_caps_apply(json_t *caps, bool no_new_privileges, vs_error **err) {
  int last_cap = (int)cap_max_bits() - 1;
  uint64_t bounding = set_mask(caps, "bounding", last_cap);
  uint64_t eff = set_mask(caps, "effective", last_cap);
  uint64_t perm = set_mask(caps, "permitted", last_cap);
  uint64_t inh = set_mask(caps, "inheritable", last_cap);
  uint64_t amb = set_mask(caps, "ambient", last_cap);

  /* After a switch away from uid 0 only the permitted set survived (keep-caps): make it
   * effective again so CAP_SETPCAP can shrink the bounding set. */
  uint64_t have = current_permitted(last_cap);
  if (set_proc_caps(have, have, 0, last_cap, err) < 0)
    return vs_error_wrap(err, "raise the permitted capabilities");
  for (int i = 0; i <= last_cap && i < 64; i++) {
    if (bounding & (1ULL << i))
      continue;
    if (prctl(PR_CAPBSET_DROP, i, 0, 0, 0) < 0 && errno != EINVAL) {
      int saved = errno;
      _cleanup_free_ char *name = cap_name(i);
      return vs_error_set(err, saved, "drop %s from the bounding set", name);
    }
  }
  if (set_proc_caps(eff, perm, inh, last_cap, err) < 0)
    return vs_error_wrap(err, "process.capabilities: set effective/permitted/inheritable (the "
                              "effective set must be within the permitted set)");
  if (prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) < 0)
    return vs_error_set(err, errno, "prctl(PR_SET_KEEPCAPS, 0)");
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
    return vs_error_set(err, errno, "clear the ambient capabilities");
  /* Ambient raising is best effort, as in runc: `runc spec` lists ambient capabilities without
   * an inheritable set, and the kernel only allows ambient caps that are permitted and
   * inheritable. */
  for (int i = 0; i <= last_cap && i < 64; i++) {
    if (!(amb & (1ULL << i)))
      continue;
    if (!(perm & inh & (1ULL << i)) || prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, i, 0, 0) < 0) {
      _cleanup_free_ char *name = cap_name(i);
      vs_log_debug("process.capabilities.ambient: %s not raised (it must also be permitted and "
                   "inheritable)",
                   name);
    }
  }
  if (no_new_privileges && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
    return vs_error_set(err, errno, "prctl(PR_SET_NO_NEW_PRIVS)");
  return 0;
}
