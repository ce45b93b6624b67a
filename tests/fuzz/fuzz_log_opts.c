/* Fuzz what a container create hands the json-file log options and what image prune's `until`
 * filter takes, both straight from the client: a JSON document {"HostConfig": {"LogConfig":
 * ...}, "Config": {"Labels", "Env", "Image"}, "Name", "Id", "Image", "Until": "..."} is checked
 * as create checks it; what passes gets its attrs computed as a monitor start does, which must
 * be an object of strings or nothing. */
#include "daemon/internal.h"

#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  json_t *rec = json_loadb((const char *)data, size, 0, NULL);
  if (!json_is_object(rec)) {
    json_decref(rec);
    return 0;
  }
  vd_log_opts lo;
  vs_error *err = NULL;
  if (vd_log_options(json_object_get(rec, "HostConfig"), &lo, &err) < 0) {
    if (!err || !err->msg || !*err->msg)
      abort(); /* a refusal always says why */
    vs_error_free(err);
  } else {
    if (lo.max_files < 1 || lo.max_size == 0)
      abort();
    json_t *attrs = vd_log_attrs(rec);
    const char *key;
    json_t *v;
    json_object_foreach(attrs, key, v) {
      if (!json_is_string(v))
        abort();
    }
    if (attrs && !json_object_size(attrs))
      abort();
    json_decref(attrs);
  }
  const char *until = json_string_value(json_object_get(rec, "Until"));
  if (until)
    (void)vd_until_time(until, 1700000000);
  json_decref(rec);
  return 0;
}
