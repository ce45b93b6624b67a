/* Private to the security and cgroup code: typed JSON field checks whose errors name the field
 * ("linux.resources.memory.limit: must be an integer"). `what` is the path of `obj`. */
#ifndef VESSEL_CTR_SECURITY_INTERNAL_H
#define VESSEL_CTR_SECURITY_INTERNAL_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "base/base.h"

/* Each returns 1 if the field is present and valid (stored in *out), 0 if absent or JSON null
 * (then *out is untouched, except sj_string/sj_array/sj_object which set it to NULL)
 * and not required, -1 with *err set otherwise. `obj` must be an object. */
int sj_int(json_t *obj, const char *key, const char *what, bool required, int64_t min, int64_t max,
           int64_t *out, vs_error **err);
int sj_string(json_t *obj, const char *key, const char *what, bool required, const char **out,
              vs_error **err);
int sj_bool(json_t *obj, const char *key, const char *what, bool required, bool *out,
            vs_error **err);
int sj_array(json_t *obj, const char *key, const char *what, bool required, json_t **out,
             vs_error **err);
int sj_object(json_t *obj, const char *key, const char *what, bool required, json_t **out,
              vs_error **err);
/* `value` must be an object: "<what>: must be an object". */
int sj_expect_object(json_t *value, const char *what, vs_error **err);

/* Validate linux.seccomp and compile it with libseccomp without loading it (for tests and the
 * fuzzer: exercises the same code as ctr_seccomp_load up to the kernel call). */
int ctr_seccomp_compile_only(json_t *seccomp, vs_error **err);

/* The "seccomp" object of `features`. */
json_t *ctr_seccomp_features(void);

/* Capability name ("CAP_CHOWN") to number, or -1. */
int ctr_cap_from_name(const char *name);

#endif
