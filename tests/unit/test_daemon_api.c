/* vesseld's API routing, version prefixes and the json-file escaping of container output. */
#include "daemon/internal.h"
#include "tap.h"

#include <string.h>

TEST(api_path_strips_served_versions) {
  char *msg = NULL;
  CHECK_STREQ(vd_api_path("/v1.41/containers/json", &msg), "/containers/json");
  CHECK_STREQ(vd_api_path("/v1.24/version", &msg), "/version");
  CHECK_STREQ(vd_api_path("/_ping", &msg), "/_ping");
  CHECK(msg == NULL);
  CHECK_STREQ(vd_api_path("/v1.41", &msg), "/");
  /* not a version: looked up as it is */
  CHECK_STREQ(vd_api_path("/vx/containers/json", &msg), "/vx/containers/json");
  CHECK_STREQ(vd_api_path("/v1./x", &msg), "/v1./x");
}

TEST(api_path_refuses_versions_out_of_range) {
  char *msg = NULL;
  CHECK(vd_api_path("/v1.99/version", &msg) == NULL);
  CHECK_CONTAINS(msg, "too new");
  free(msg);
  msg = NULL;
  CHECK(vd_api_path("/v1.11/version", &msg) == NULL);
  CHECK_CONTAINS(msg, "too old");
  free(msg);
}

TEST(routes_match_segments_and_names_with_slashes) {
  char *arg = NULL;
  bool known;
  const vd_route *r = vd_route_find("POST", "/containers/abc/start", &arg, &known);
  CHECK(r && r->handler == vd_h_container_start);
  CHECK_STREQ(arg, "abc");
  free(arg);
  r = vd_route_find("GET", "/images/docker.io/library/busybox:latest/json", &arg, &known);
  CHECK(r && r->handler == vd_h_image_inspect);
  CHECK_STREQ(arg, "docker.io/library/busybox:latest");
  free(arg);
  /* a container id never holds a slash */
  r = vd_route_find("POST", "/containers/a/b/start", &arg, &known);
  CHECK(r == NULL && !known);
  r = vd_route_find("POST", "/version", &arg, &known);
  CHECK(r == NULL && known); /* 405, not 404 */
  r = vd_route_find("GET", "/images/json", &arg, &known);
  CHECK(r && r->handler == vd_h_images_list);
  free(arg);
}

TEST(json_escape_keeps_utf8_and_replaces_invalid_bytes) {
  char *s = vd_json_escape_bytes("a\"b\\c\n\t\x01", 8);
  CHECK_STREQ(s, "a\\\"b\\\\c\\n\\t\\u0001");
  free(s);
  s = vd_json_escape_bytes("h\xc3\xa9!", 4); /* é */
  CHECK_STREQ(s, "h\xc3\xa9!");
  free(s);
  s = vd_json_escape_bytes("\xff\xc3(\xed\xa0\x80", 6); /* bad byte, cut sequence, surrogate */
  CHECK_STREQ(s, "\\ufffd\\ufffd(\\ufffd\\ufffd\\ufffd");
  free(s);
  vs_error *err = NULL;
  s = vd_json_escape_bytes("x\xfey", 3);
  char *doc = vs_asprintf("{\"log\":\"%s\"}", s);
  json_t *j = vs_json_loads(doc, strlen(doc), "escaped", &err);
  CHECK(j != NULL); /* always valid JSON */
  json_decref(j);
  free(doc);
  free(s);
}

/* Detach keys: parsed as Docker spells them, and found across reads without eating bytes that
 * only looked like the start of the sequence. */
TEST(detach_keys_parse_and_filter) {
  vd_conn c = {0};
  CHECK(vd_detach_keys_parse(NULL, c.detach_keys, &c.n_detach_keys, NULL) == 0);
  CHECK(c.n_detach_keys == 2 && c.detach_keys[0] == 0x10 && c.detach_keys[1] == 0x11);
  CHECK(vd_detach_keys_parse("ctrl-@,ctrl-[,ctrl-\\,ctrl-_,Z", c.detach_keys, &c.n_detach_keys,
                             NULL) == 0);
  CHECK(c.n_detach_keys == 5 && c.detach_keys[0] == 0 && c.detach_keys[1] == 27 &&
        c.detach_keys[2] == 28 && c.detach_keys[3] == 31 && c.detach_keys[4] == 'Z');
  static const char *const bad[] = {"ctrl-1", "ctrl-", "ab", "a,,b", "ctrl-ctrl"};
  for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
    _cleanup_error_ vs_error *e = NULL;
    CHECK(vd_detach_keys_parse(bad[i], c.detach_keys, &c.n_detach_keys, &e) < 0);
    CHECK(e && strstr(e->msg, "Invalid detach keys"));
  }
  CHECK(vd_detach_keys_parse("ctrl-p,ctrl-q", c.detach_keys, &c.n_detach_keys, NULL) == 0);
  /* a first key, then something else: both go on */
  c.in = vs_strdup("a\x10"
                   "b\x10");
  c.in_len = c.in_cap = 4;
  vd_detach_filter(&c, 0);
  CHECK(c.in_len == 3 &&
        !memcmp(c.in,
                "a\x10"
                "b",
                3) &&
        c.detach_matched == 1);
  /* the next read completes the sequence: it and what follows are dropped */
  c.in = vs_realloc(c.in, 8);
  c.in_cap = 8;
  memcpy(c.in + 3, "\x11zz", 3);
  c.in_len = 6;
  vd_detach_filter(&c, 3);
  CHECK(c.detach_seen && c.in_len == 3);
  free(c.in);
}

TEST(pid_start_time_tells_processes_apart) {
  CHECK(vd_pid_start_time(getpid()) > 0);
  CHECK(vd_pid_start_time(getpid()) == vd_pid_start_time(getpid()));
  CHECK(vd_pid_start_time(999999999) == 0);
}

int main(void) { return tap_run(); }
