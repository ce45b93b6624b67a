#include "base/base.h"
#include "tap.h"

#include <errno.h>
#include <math.h>

TEST(parse_u64_accepts_decimal_and_hex) {
  _cleanup_error_ vs_error *err = NULL;
  uint64_t v = 0;
  CHECK_EQ(vs_parse_u64("0", "n", &v, &err), 0);
  CHECK_U64(v, 0);
  CHECK_EQ(vs_parse_u64("18446744073709551615", "n", &v, &err), 0);
  CHECK_U64(v, UINT64_MAX);
  CHECK_EQ(vs_parse_u64("0x80200000", "addr", &v, &err), 0);
  CHECK_U64(v, 0x80200000);
  CHECK(err == NULL);
}

TEST(parse_u64_refuses_sign_space_garbage_overflow) {
  const char *bad[] = {"", "-1", " 1", "1 ", "+1", "1x", "x", "18446744073709551616", "0x"};
  for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
    _cleanup_error_ vs_error *err = NULL;
    uint64_t v = 7;
    CHECK_EQ(vs_parse_u64(bad[i], "--cpus", &v, &err), -1);
    CHECK_CONTAINS(err->msg, "--cpus: \"");
    CHECK_U64(v, 7);
  }
  _cleanup_error_ vs_error *err = NULL;
  uint64_t v;
  CHECK_EQ(vs_parse_u64(NULL, "n", &v, &err), -1);
}

TEST(parse_size_units) {
  _cleanup_error_ vs_error *err = NULL;
  uint64_t v = 0;
  CHECK_EQ(vs_parse_size("4096", "m", &v, &err), 0);
  CHECK_U64(v, 4096);
  CHECK_EQ(vs_parse_size("512M", "m", &v, &err), 0);
  CHECK_U64(v, 512ULL << 20);
  CHECK_EQ(vs_parse_size("2g", "m", &v, &err), 0);
  CHECK_U64(v, 2ULL << 30);
  CHECK_EQ(vs_parse_size("1TiB", "m", &v, &err), 0);
  CHECK_U64(v, 1ULL << 40);
  CHECK_EQ(vs_parse_size("16777215T", "m", &v, &err), 0);
  CHECK_U64(v, 16777215ULL << 40);
  CHECK(err == NULL);
}

TEST(parse_size_errors) {
  _cleanup_error_ vs_error *err = NULL;
  uint64_t v = 0;
  CHECK_EQ(vs_parse_size("16777216T", "--memory", &v, &err), -1);
  CHECK_EQ(err->errnum, ERANGE);
  CHECK_CONTAINS(err->msg, "--memory: \"16777216T\" is too large");
  CHECK_EQ(vs_parse_size("12Q", "--memory", &v, &err), -1);
  CHECK_CONTAINS(err->msg, "unknown unit \"Q\"");
  CHECK_EQ(vs_parse_size("-1M", "--memory", &v, &err), -1);
  CHECK_CONTAINS(err->msg, "is not a size");
  CHECK_EQ(vs_parse_size("M", "--memory", &v, &err), -1);
  CHECK_EQ(err->errnum, EINVAL);
}

TEST(i64_saturate_of_any_double) {
  CHECK_EQ(vs_i64_saturate(1536.9), 1536);
  CHECK_EQ(vs_i64_saturate(-2.5), -2);
  CHECK_EQ(vs_i64_saturate(9007199254740992.0), 9007199254740992LL);
  CHECK(vs_i64_saturate(9223372036854775808.0) == INT64_MAX);
  CHECK(vs_i64_saturate(1e300) == INT64_MAX);
  CHECK(vs_i64_saturate(-1e300) == INT64_MIN);
  CHECK(vs_i64_saturate(-INFINITY) == INT64_MIN);
  CHECK_EQ(vs_i64_saturate(NAN), 0);
}

int main(void) { return tap_run(); }
