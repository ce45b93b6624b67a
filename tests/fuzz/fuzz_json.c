/* Fuzz the JSON wrapper: parsing arbitrary bytes and every typed getter on every field. */
#include "base/base.h"

#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void try_getters(const json_t *obj, const char *key) {
  for (int required = 0; required < 2; required++) {
    vs_error *err = NULL;
    const char *s = NULL;
    int64_t i;
    uint64_t u;
    bool b;
    json_t *j;
    if (vs_json_get_string(obj, key, required, &s, &err) == 1 && strlen(s) > (size_t)1 << 30)
      abort(); /* touch the string: ASan checks it is a valid C string */
    vs_json_get_int(obj, key, required, &i, &err);
    vs_json_get_uint64(obj, key, required, &u, &err);
    vs_json_get_bool(obj, key, required, &b, &err);
    vs_json_get_array(obj, key, required, &j, &err);
    vs_json_get_object(obj, key, required, &j, &err);
    const char **strv = NULL;
    size_t n = 0;
    if (vs_json_get_string_array(obj, key, required, &strv, &n, &err) == 1) {
      if (strv[n] != NULL)
        abort(); /* NULL-terminated */
      free((void *)strv);
    }
    if (err && !err->msg)
      abort(); /* every error carries a message */
    vs_error_free(err);
  }
}

static void walk(const json_t *j, int depth) {
  if (depth > 64)
    return;
  if (json_is_object(j)) {
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)j, key, v) {
      try_getters(j, key);
      walk(v, depth + 1);
    }
    try_getters(j, "absent");
  } else if (json_is_array(j)) {
    size_t idx;
    json_t *v;
    json_array_foreach(j, idx, v) walk(v, depth + 1);
    try_getters(j, "not-an-object");
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  vs_error *err = NULL;
  json_t *j = vs_json_loads((const char *)data, size, "fuzz input", &err);
  if (!j) {
    if (!err || !err->msg || !strstr(err->msg, "fuzz input"))
      abort(); /* a parse error must name its source */
    vs_error_free(err);
    return 0;
  }
  walk(j, 0);
  json_decref(j);
  return 0;
}
