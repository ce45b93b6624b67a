/* libFuzzer: Dockerfile instructions of docker commit --change (vs_config_apply_changes); the
 * input is split at NUL bytes into the changes of one request. */
#include "image/image.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  json_t *changes = json_array();
  for (size_t start = 0; start <= size;) {
    const uint8_t *nul = memchr(data + start, 0, size - start);
    size_t len = nul ? (size_t)(nul - data) - start : size - start;
    json_array_append_new(changes, json_stringn_nocheck((const char *)data + start, len));
    start += len + 1;
  }
  json_t *config = json_pack("{s:[s], s:[s], s:s}", "Cmd", "sh", "Env", "A=1", "WorkingDir", "/w");
  vs_error *err = NULL;
  if (vs_config_apply_changes(config, changes, &err) < 0 && (!err || !*err->msg))
    abort(); /* every refusal says why */
  vs_error_free(err);
  json_decref(config);
  json_decref(changes);
  return 0;
}
