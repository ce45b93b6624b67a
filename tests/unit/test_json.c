#include "base/base.h"
#include "tap.h"
#include "testutil.h"

#include <errno.h>

static json_t *parse(const char *text, vs_error **err) {
  return vs_json_loads(text, strlen(text), "test.json", err);
}

TEST(loads_valid_document) {
  _cleanup_error_ vs_error *err = NULL;
  _cleanup_json_ json_t *j = parse("{\"a\": 1, \"b\": [true, \"x\"]}", &err);
  CHECK(j != NULL);
  CHECK(err == NULL);
  CHECK(json_is_object(j));
}

TEST(malformed_json_names_source_line_and_column) {
  _cleanup_error_ vs_error *err = NULL;
  _cleanup_json_ json_t *j = parse("{\n  \"a\": 1,\n  \"b\": ]\n}", &err);
  CHECK(j == NULL);
  CHECK_CONTAINS(err->msg, "parse test.json: line 3, column");
}

TEST(truncated_and_garbage_inputs_fail) {
  const char *bad[] = {"",          "{",       "[1,",      "{\"a\":}",   "nul", "\"unterminated",
                       "{\"a\" 1}", "[1] [2]", "\xff\xfe", "{\"a\":1,}", "01"};
  for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
    _cleanup_error_ vs_error *err = NULL;
    json_t *j = parse(bad[i], &err);
    CHECK(j == NULL);
    CHECK_CONTAINS(err->msg, "parse test.json: line ");
  }
}

TEST(duplicate_keys_are_rejected) {
  _cleanup_error_ vs_error *err = NULL;
  _cleanup_json_ json_t *j = parse("{\"args\": [\"a\"], \"args\": [\"b\"]}", &err);
  CHECK(j == NULL);
  CHECK_CONTAINS(err->msg, "duplicate");
}

TEST(embedded_nul_is_rejected) {
  _cleanup_error_ vs_error *err = NULL;
  _cleanup_json_ json_t *j = parse("{\"path\": \"/etc\\u0000/x\"}", &err);
  CHECK(j == NULL);
  CHECK(err != NULL);
  /* a raw NUL byte inside the buffer as well */
  vs_error_freep(&err);
  json_t *k = vs_json_loads("{\"a\":\"x\0y\"}", 11, "raw", &err);
  CHECK(k == NULL);
  CHECK_CONTAINS(err->msg, "parse raw");
}

TEST(deep_nesting_fails_without_crashing) {
  size_t depth = 100000;
  _cleanup_free_ char *text = vs_malloc0(depth + 1);
  memset(text, '[', depth);
  _cleanup_error_ vs_error *err = NULL;
  json_t *j = vs_json_loads(text, depth, "deep", &err);
  CHECK(j == NULL);
  CHECK_CONTAINS(err->msg, "parse deep");
}

TEST(getters_return_values) {
  _cleanup_error_ vs_error *err = NULL;
  _cleanup_json_ json_t *j = parse("{\"s\":\"str\",\"i\":-5,\"u\":9007199254740993,\"b\":true,"
                                   "\"a\":[1],\"o\":{},\"n\":null}",
                                   &err);
  CHECK(j != NULL);
  const char *s = NULL;
  int64_t i = 0;
  uint64_t u = 0;
  bool b = false;
  json_t *a = NULL, *o = NULL;
  CHECK_EQ(vs_json_get_string(j, "s", true, &s, &err), 1);
  CHECK_STREQ(s, "str");
  CHECK_EQ(vs_json_get_int(j, "i", true, &i, &err), 1);
  CHECK_EQ(i, -5);
  CHECK_EQ(vs_json_get_uint64(j, "u", true, &u, &err), 1);
  CHECK_U64(u, 9007199254740993ULL);
  CHECK_EQ(vs_json_get_bool(j, "b", true, &b, &err), 1);
  CHECK(b);
  CHECK_EQ(vs_json_get_array(j, "a", true, &a, &err), 1);
  CHECK_EQ(json_array_size(a), 1);
  CHECK_EQ(vs_json_get_object(j, "o", true, &o, &err), 1);
  CHECK(json_is_object(o));
  CHECK(err == NULL);
}

TEST(optional_absent_and_null_leave_out_untouched) {
  _cleanup_error_ vs_error *err = NULL;
  _cleanup_json_ json_t *j = parse("{\"n\":null}", &err);
  const char *s = "default";
  int64_t i = 42;
  CHECK_EQ(vs_json_get_string(j, "missing", false, &s, &err), 0);
  CHECK_EQ(vs_json_get_string(j, "n", false, &s, &err), 0);
  CHECK_STREQ(s, "default");
  CHECK_EQ(vs_json_get_int(j, "missing", false, &i, &err), 0);
  CHECK_EQ(i, 42);
  CHECK(err == NULL);
}

TEST(required_missing_names_field) {
  _cleanup_error_ vs_error *err = NULL;
  _cleanup_json_ json_t *j = parse("{\"other\":1}", &err);
  const char *s = NULL;
  CHECK_EQ(vs_json_get_string(j, "ociVersion", true, &s, &err), -1);
  CHECK_STREQ(err->msg, "missing required field \"ociVersion\"");
}

TEST(wrong_types_name_field_expected_and_found) {
  _cleanup_error_ vs_error *err = NULL;
  _cleanup_json_ json_t *j =
      parse("{\"args\":\"sh\",\"uid\":1.5,\"n\":\"7\",\"t\":1,\"o\":[],\"a\":{},\"neg\":-1}", &err);
  json_t *out = NULL;
  const char *s = NULL;
  int64_t i = 0;
  uint64_t u = 0;
  bool b = false;
  CHECK_EQ(vs_json_get_array(j, "args", true, &out, &err), -1);
  CHECK_STREQ(err->msg, "field \"args\": expected array, found string");
  CHECK_EQ(vs_json_get_int(j, "uid", true, &i, &err), -1);
  CHECK_STREQ(err->msg, "field \"uid\": expected integer, found real");
  CHECK_EQ(vs_json_get_uint64(j, "n", true, &u, &err), -1);
  CHECK_STREQ(err->msg, "field \"n\": expected non-negative integer, found string");
  CHECK_EQ(vs_json_get_bool(j, "t", true, &b, &err), -1);
  CHECK_STREQ(err->msg, "field \"t\": expected boolean, found integer");
  CHECK_EQ(vs_json_get_object(j, "o", false, &out, &err), -1);
  CHECK_STREQ(err->msg, "field \"o\": expected object, found array");
  CHECK_EQ(vs_json_get_string(j, "a", false, &s, &err), -1);
  CHECK_STREQ(err->msg, "field \"a\": expected string, found object");
  CHECK_EQ(vs_json_get_uint64(j, "neg", true, &u, &err), -1);
  CHECK_CONTAINS(err->msg, "field \"neg\": expected a non-negative integer, found -1");
  CHECK(out == NULL && s == NULL && i == 0 && u == 0 && !b);
}

TEST(getter_on_non_object_fails) {
  _cleanup_error_ vs_error *err = NULL;
  _cleanup_json_ json_t *j = parse("[1,2]", &err);
  int64_t i = 0;
  CHECK_EQ(vs_json_get_int(j, "x", false, &i, &err), -1);
  CHECK_CONTAINS(err->msg, "found array");
  CHECK_EQ(vs_json_get_int(NULL, "x", false, &i, &err), -1);
  CHECK_CONTAINS(err->msg, "field \"x\"");
}

TEST(integer_out_of_range_fails_to_parse) {
  _cleanup_error_ vs_error *err = NULL;
  _cleanup_json_ json_t *j = parse("{\"big\": 18446744073709551616}", &err);
  CHECK(j == NULL);
  CHECK_CONTAINS(err->msg, "parse test.json");
}

TEST(load_file_names_path_and_enforces_limit) {
  _cleanup_free_ char *dir = test_tmpdir();
  _cleanup_free_ char *p = vs_asprintf("%s/config.json", dir);
  test_write(p, "{\"a\":\n\n  tru}");
  _cleanup_error_ vs_error *err = NULL;
  json_t *j = vs_json_load_file(p, 1024, &err);
  CHECK(j == NULL);
  CHECK_CONTAINS(err->msg, p);
  CHECK_CONTAINS(err->msg, "line 3");
  vs_error_freep(&err);
  test_write(p, "{\"a\": true}");
  j = vs_json_load_file(p, 5, &err);
  CHECK(j == NULL);
  CHECK_EQ(err->errnum, EFBIG);
  vs_error_freep(&err);
  j = vs_json_load_file(p, 1024, &err);
  CHECK(j != NULL);
  bool b = false;
  CHECK_EQ(vs_json_get_bool(j, "a", true, &b, &err), 1);
  CHECK(b);
  json_decref(j);
  CHECK_EQ(vs_rm_rf(dir, &err), 0);
}

TEST(write_file_round_trips) {
  _cleanup_free_ char *dir = test_tmpdir();
  _cleanup_free_ char *p = vs_asprintf("%s/state.json", dir);
  _cleanup_error_ vs_error *err = NULL;
  _cleanup_json_ json_t *j = json_pack("{s:s, s:i, s:[b]}", "id", "c1", "pid", 42, "x", 1);
  CHECK(j != NULL);
  CHECK_EQ(vs_json_write_file(p, j, 0600, &err), 0);
  _cleanup_free_ char *text = NULL;
  CHECK_EQ(vs_read_file(p, 4096, &text, NULL, &err), 0);
  CHECK(text[strlen(text) - 1] == '\n');
  CHECK(strstr(text, "\"id\"") < strstr(text, "\"pid\"")); /* sorted keys */
  _cleanup_json_ json_t *back = vs_json_load_file(p, 4096, &err);
  CHECK(back != NULL);
  CHECK(json_equal(j, back));
  CHECK_EQ(vs_rm_rf(dir, &err), 0);
}

TEST(string_array_getter) {
  _cleanup_error_ vs_error *err = NULL;
  _cleanup_json_ json_t *j = parse("{\"args\":[\"sh\",\"-c\",\"true\"],\"bad\":[\"a\",1],"
                                   "\"empty\":[],\"s\":\"x\"}",
                                   &err);
  const char **v = NULL;
  size_t n = 0;
  CHECK_EQ(vs_json_get_string_array(j, "args", true, &v, &n, &err), 1);
  CHECK_EQ(n, 3);
  CHECK_STREQ(v[0], "sh");
  CHECK_STREQ(v[2], "true");
  CHECK(v[3] == NULL);
  free((void *)v);
  v = NULL;
  CHECK_EQ(vs_json_get_string_array(j, "empty", true, &v, &n, &err), 1);
  CHECK_EQ(n, 0);
  CHECK(v[0] == NULL);
  free((void *)v);
  v = NULL;
  CHECK_EQ(vs_json_get_string_array(j, "missing", false, &v, &n, &err), 0);
  CHECK(v == NULL);
  CHECK_EQ(vs_json_get_string_array(j, "bad", true, &v, &n, &err), -1);
  CHECK_STREQ(err->msg, "field \"bad\"[1]: expected string, found integer");
  CHECK_EQ(vs_json_get_string_array(j, "s", true, &v, &n, &err), -1);
  CHECK_STREQ(err->msg, "field \"s\": expected array, found string");
  CHECK(v == NULL);
}

TEST(join_strings) {
  _cleanup_json_ json_t *a = json_pack("[s, i, s, s]", "a", 7, "bc", "");
  _cleanup_free_ char *s = vs_json_join(a, ", ");
  CHECK_STREQ(s, "a, bc, "); /* the integer is skipped, the empty string kept */
  _cleanup_json_ json_t *none = json_array();
  _cleanup_free_ char *e = vs_json_join(none, " ");
  CHECK_STREQ(e, "");
  _cleanup_free_ char *n = vs_json_join(NULL, " ");
  CHECK_STREQ(n, "");
}

int main(void) { return tap_run(); }
