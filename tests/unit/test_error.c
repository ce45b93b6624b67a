#include "base/base.h"
#include "tap.h"

#include <errno.h>

static int open_thing(const char *path, vs_error **err) {
  return vs_error_set(err, ENOENT, "open %s", path);
}

static int load_bundle(const char *bundle, vs_error **err) {
  if (open_thing("config.json", err) < 0)
    return vs_error_wrap(err, "load bundle %s", bundle);
  return 0;
}

TEST(error_set_appends_strerror) {
  _cleanup_error_ vs_error *err = NULL;
  CHECK_EQ(open_thing("/x", &err), -1);
  CHECK_STREQ(err->msg, "open /x: No such file or directory");
  CHECK_EQ(err->errnum, ENOENT);
}

TEST(error_wrap_puts_context_first) {
  _cleanup_error_ vs_error *err = NULL;
  CHECK_EQ(load_bundle("b1", &err), -1);
  CHECK_STREQ(err->msg, "load bundle b1: open config.json: No such file or directory");
  CHECK_EQ(err->errnum, ENOENT);
}

TEST(error_wrap_without_error_creates_one) {
  _cleanup_error_ vs_error *err = NULL;
  CHECK_EQ(vs_error_wrap(&err, "context %d", 7), -1);
  CHECK(err != NULL);
  CHECK_STREQ(err->msg, "context 7");
  CHECK_EQ(err->errnum, 0);
}

TEST(error_set_replaces_previous) {
  _cleanup_error_ vs_error *err = NULL;
  vs_error_set(&err, 0, "first");
  vs_error_set(&err, 0, "second");
  CHECK_STREQ(err->msg, "second");
}

TEST(error_null_sink_is_allowed) { CHECK_EQ(vs_error_set(NULL, EIO, "ignored"), -1); }

TEST(steal_pointer_hands_ownership_out) {
  _cleanup_free_ char *p = vs_strdup("x");
  char *q = steal_pointer(&p);
  CHECK(p == NULL);
  CHECK_STREQ(q, "x");
  free(q);
}

int main(void) { return tap_run(); }
