/* Fuzz the security and cgroup-resource validation of a spec: process (capabilities, rlimits,
 * oomScoreAdj, LSM labels), linux.seccomp (validated and compiled with libseccomp, never
 * loaded) and linux.resources. Input: a JSON document shaped like config.json. */
#include <stdint.h>
#include <string.h>

#include "ctr/cgroup.h"
#include "ctr/security.h"
#include "ctr/security_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_error(int rc, vs_error *err) {
  if (rc < 0 && (!err || !err->msg || !*err->msg))
    abort(); /* every failure carries a message */
  if (rc == 0 && err)
    abort(); /* success never leaves an error behind */
  vs_error_free(err);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  json_t *root = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL);
  if (!root)
    return 0;
  json_t *process = json_object_get(root, "process");
  json_t *linux_section = json_object_get(root, "linux");
  vs_error *err = NULL;
  check_error(ctr_security_validate(process, linux_section, &err), err);
  if (json_is_object(linux_section)) {
    json_t *seccomp = json_object_get(linux_section, "seccomp");
    if (seccomp) {
      err = NULL;
      check_error(ctr_seccomp_compile_only(seccomp, &err), err);
    }
    err = NULL;
    check_error(ctr_cgroup_validate_resources(json_object_get(linux_section, "resources"), &err),
                err);
  }
  if (json_is_object(process)) {
    json_t *caps = json_object_get(process, "capabilities");
    if (caps) {
      err = NULL;
      check_error(ctr_caps_validate(caps, "process.capabilities", &err), err);
    }
  }
  json_decref(root);
  return 0;
}
