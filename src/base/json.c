/* JSON on jansson: parse errors that name their source and position, typed field getters. */
#include "base.h"

#include <errno.h>
#include <string.h>

/* No duplicate keys (which of two "args" would win is a classic smuggling trick) and no NUL in
 * strings (we hand strings out as C strings). */
#define VS_JSON_LOAD_FLAGS JSON_REJECT_DUPLICATES

json_t *vs_json_loads(const char *text, size_t len, const char *what, vs_error **err) {
  json_error_t je;
  json_t *j = json_loadb(text, len, VS_JSON_LOAD_FLAGS, &je);
  if (!j) {
    vs_error_set(err, 0, "parse %s: line %d, column %d: %s", what, je.line, je.column, je.text);
    return NULL;
  }
  return j;
}

json_t *vs_json_load_file(const char *path, size_t max_len, vs_error **err) {
  _cleanup_free_ char *text = NULL;
  size_t len;
  if (vs_read_file(path, max_len, &text, &len, err) < 0)
    return NULL;
  return vs_json_loads(text, len, path, err);
}

int vs_json_write_file(const char *path, const json_t *j, mode_t mode, vs_error **err) {
  _cleanup_free_ char *text = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS);
  if (!text)
    return vs_error_set(err, EINVAL, "write %s: cannot serialise the JSON value", path);
  size_t n = strlen(text);
  text = vs_realloc(text, n + 2);
  text[n] = '\n';
  text[n + 1] = '\0';
  return vs_write_file_atomic(path, text, n + 1, mode, err);
}

const char *vs_json_type_name(const json_t *j) {
  if (!j)
    return "nothing";
  switch (json_typeof(j)) {
  case JSON_OBJECT:
    return "object";
  case JSON_ARRAY:
    return "array";
  case JSON_STRING:
    return "string";
  case JSON_INTEGER:
    return "integer";
  case JSON_REAL:
    return "real";
  case JSON_TRUE:
  case JSON_FALSE:
    return "boolean";
  case JSON_NULL:
    return "null";
  }
  return "unknown";
}

/* Look up obj[field]: 1 with *val set, 0 if absent (or null) and optional, -1 on error. */
static int lookup(const json_t *obj, const char *field, bool required, json_t **val,
                  vs_error **err) {
  if (!json_is_object(obj))
    return vs_error_set(err, 0, "field \"%s\": expected an object to hold it, found %s", field,
                        vs_json_type_name(obj));
  json_t *v = json_object_get(obj, field);
  if (!v || json_is_null(v)) {
    if (required)
      return vs_error_set(err, 0, "missing required field \"%s\"", field);
    return 0;
  }
  *val = v;
  return 1;
}

/* lookup() and a type check: `want` is a jansson type, JSON_TRUE standing for any boolean. */
static int lookup_typed(const json_t *obj, const char *field, bool required, json_type want,
                        const char *want_name, json_t **val, vs_error **err) {
  int r = lookup(obj, field, required, val, err);
  if (r <= 0)
    return r;
  bool ok = want == JSON_TRUE ? json_is_boolean(*val) : json_typeof(*val) == want;
  if (!ok)
    return vs_error_set(err, 0, "field \"%s\": expected %s, found %s", field, want_name,
                        vs_json_type_name(*val));
  return 1;
}

int vs_json_get_string(const json_t *obj, const char *field, bool required, const char **out,
                       vs_error **err) {
  json_t *v = NULL;
  int r = lookup_typed(obj, field, required, JSON_STRING, "string", &v, err);
  if (r <= 0)
    return r;
  *out = json_string_value(v);
  return 1;
}

int vs_json_get_int(const json_t *obj, const char *field, bool required, int64_t *out,
                    vs_error **err) {
  json_t *v = NULL;
  int r = lookup_typed(obj, field, required, JSON_INTEGER, "integer", &v, err);
  if (r <= 0)
    return r;
  *out = (int64_t)json_integer_value(v);
  return 1;
}

int vs_json_get_uint64(const json_t *obj, const char *field, bool required, uint64_t *out,
                       vs_error **err) {
  json_t *v = NULL;
  int r = lookup_typed(obj, field, required, JSON_INTEGER, "non-negative integer", &v, err);
  if (r <= 0)
    return r;
  json_int_t i = json_integer_value(v);
  if (i < 0)
    return vs_error_set(err, 0, "field \"%s\": expected a non-negative integer, found %lld", field,
                        (long long)i);
  *out = (uint64_t)i;
  return 1;
}

int vs_json_get_bool(const json_t *obj, const char *field, bool required, bool *out,
                     vs_error **err) {
  json_t *v = NULL;
  int r = lookup_typed(obj, field, required, JSON_TRUE, "boolean", &v, err);
  if (r <= 0)
    return r;
  *out = json_is_true(v);
  return 1;
}

int vs_json_get_array(const json_t *obj, const char *field, bool required, json_t **out,
                      vs_error **err) {
  json_t *v = NULL;
  int r = lookup_typed(obj, field, required, JSON_ARRAY, "array", &v, err);
  if (r <= 0)
    return r;
  *out = v;
  return 1;
}

int vs_json_get_object(const json_t *obj, const char *field, bool required, json_t **out,
                       vs_error **err) {
  json_t *v = NULL;
  int r = lookup_typed(obj, field, required, JSON_OBJECT, "object", &v, err);
  if (r <= 0)
    return r;
  *out = v;
  return 1;
}

int vs_json_get_string_array(const json_t *obj, const char *field, bool required, const char ***out,
                             size_t *n, vs_error **err) {
  json_t *arr = NULL;
  int r = vs_json_get_array(obj, field, required, &arr, err);
  if (r <= 0)
    return r;
  size_t len = json_array_size(arr);
  const char **v = vs_malloc0((len + 1) * sizeof(*v));
  for (size_t i = 0; i < len; i++) {
    json_t *e = json_array_get(arr, i);
    if (!json_is_string(e)) {
      free((void *)v);
      return vs_error_set(err, 0, "field \"%s\"[%zu]: expected string, found %s", field, i,
                          vs_json_type_name(e));
    }
    v[i] = json_string_value(e);
  }
  *out = v;
  if (n)
    *n = len;
  return 1;
}

char *vs_json_join(const json_t *strings, const char *sep) {
  size_t len = 1, i;
  json_t *v;
  json_array_foreach(strings, i, v) len += json_string_length(v) + strlen(sep);
  char *out = vs_malloc0(len);
  char *p = out;
  bool first = true;
  json_array_foreach(strings, i, v) {
    if (!json_is_string(v))
      continue;
    if (!first)
      p = stpcpy(p, sep);
    p = stpcpy(p, json_string_value(v));
    first = false;
  }
  return out;
}
