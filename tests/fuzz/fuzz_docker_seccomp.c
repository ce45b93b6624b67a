/* Fuzz the conversion of a seccomp profile in Docker's format (what `docker run --security-opt
 * seccomp=FILE` sends vesseld) into an OCI linux.seccomp object. Input: the profile's JSON. A
 * conversion that succeeds must give what the runtime accepts and can compile. */
#include <stdint.h>
#include <stdlib.h>

#include "ctr/ctr.h"
#include "ctr/security_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  json_t *profile = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL);
  if (!profile)
    return 0;
  json_t *caps = json_pack("[s,s,s]", "CAP_CHOWN", "CAP_KILL", "CAP_SYS_ADMIN");
  vs_error *err = NULL;
  json_t *oci = ctr_seccomp_from_docker(profile, caps, &err);
  if (!oci && (!err || !err->msg || !*err->msg))
    abort(); /* every failure names its problem */
  if (oci) {
    if (err)
      abort();
    vs_error *e2 = NULL;
    if (ctr_seccomp_compile_only(oci, &e2) < 0 && (!e2 || !e2->msg))
      abort();
    vs_error_free(e2);
  }
  vs_error_free(err);
  json_decref(oci);
  json_decref(caps);
  json_decref(profile);
  return 0;
}
