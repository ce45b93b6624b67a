/* libFuzzer harness for the OCI runtime spec parser (config.json is untrusted input). */
#include "ctr/ctr.h"

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  ctr_spec *s = NULL;
  vs_error *e = NULL;
  if (ctr_spec_parse((const char *)data, size, size & 1, &s, &e) == 0) {
    /* Touch what the runtime reads after a successful parse. */
    volatile size_t sink = s->n_mounts + s->n_devices + s->n_uid_maps + s->n_sysctls;
    for (size_t i = 0; i < s->n_mounts; i++)
      sink += s->mounts[i].destination[0] == '/';
    if (s->has_process)
      sink += s->process.args[0][0];
    (void)sink;
    ctr_spec_free(s);
  } else {
    /* Every failure carries a message. */
    if (!e || !e->msg)
      __builtin_trap();
    vs_error_free(e);
  }
  return 0;
}
