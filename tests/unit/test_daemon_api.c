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

/* json-file's rotation options, read as dockerd reads them. */
TEST(log_options) {
  struct {
    const char *config;
    int64_t size;
    unsigned files;
    const char *error;
  } cases[] = {
      {"{}", -1, 1, NULL},
      {"{\"Type\": \"json-file\", \"Config\": {\"max-size\": \"10m\"}}", 10 << 20, 1, NULL},
      {"{\"Config\": {\"max-size\": \"1.5k\", \"max-file\": \"4\"}}", 1536, 4, NULL},
      {"{\"Config\": {\"max-size\": \"2 GiB\"}}", 2LL << 30, 1, NULL},
      {"{\"Config\": {\"max-size\": \"100kb\"}}", 100 << 10, 1, NULL},
      {"{\"Config\": {\"max-size\": \"ten\"}}", 0, 0, "invalid size"},
      {"{\"Config\": {\"max-size\": \"10x\"}}", 0, 0, "invalid size"},
      {"{\"Config\": {\"max-file\": \"3\"}}", 0, 0, "max-size is not set"},
      {"{\"Config\": {\"max-size\": \"1k\", \"max-file\": \"0\"}}", 0, 0, "less than 1"},
      {"{\"Config\": {\"nope\": \"1\"}}", 0, 0, "unknown log opt 'nope'"},
      {"{\"Type\": \"syslog\"}", 0, 0, "logging driver syslog"},
  };
  for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
    _cleanup_free_ char *text = vs_asprintf("{\"LogConfig\": %s}", cases[i].config);
    _cleanup_json_ json_t *hc = json_loads(text, 0, NULL);
    vd_log_opts o;
    _cleanup_error_ vs_error *e = NULL;
    int r = vd_log_options(hc, &o, &e);
    if (cases[i].error) {
      CHECK(r < 0 && e && strstr(e->msg, cases[i].error));
    } else {
      CHECK(r == 0 && o.max_size == cases[i].size && o.max_files == cases[i].files);
    }
  }
}

TEST(pid_start_time_tells_processes_apart) {
  CHECK(vd_pid_start_time(getpid()) > 0);
  CHECK(vd_pid_start_time(getpid()) == vd_pid_start_time(getpid()));
  CHECK(vd_pid_start_time(999999999) == 0);
}

int main(void) { return tap_run(); }
