#include "base/base.h"
#include "tap.h"

#include <string.h>
#include <time.h>
#include <unistd.h>

static void read_pipe(int fd, char *buf, size_t cap) {
  ssize_t n = read(fd, buf, cap - 1);
  buf[n > 0 ? n : 0] = '\0';
}

TEST(log_text_has_prog_and_level) {
  int p[2];
  CHECK(pipe(p) == 0);
  vs_log_configure("t", VS_LOG_INFO, VS_LOG_FORMAT_TEXT, p[1]);
  vs_log_info("hello %d", 5);
  char buf[256];
  read_pipe(p[0], buf, sizeof(buf));
  CHECK_STREQ(buf, "t: info: hello 5\n");
  close(p[0]);
  close(p[1]);
}

TEST(log_filters_by_level) {
  int p[2];
  CHECK(pipe(p) == 0);
  vs_log_configure("t", VS_LOG_WARN, VS_LOG_FORMAT_TEXT, p[1]);
  vs_log_debug("hidden");
  vs_log_error("shown");
  char buf[256];
  read_pipe(p[0], buf, sizeof(buf));
  CHECK_STREQ(buf, "t: error: shown\n");
  close(p[0]);
  close(p[1]);
}

TEST(log_json_escapes_message) {
  int p[2];
  CHECK(pipe(p) == 0);
  vs_log_configure("t", VS_LOG_INFO, VS_LOG_FORMAT_JSON, p[1]);
  vs_log_warn("a \"quoted\"\nline");
  char buf[512];
  read_pipe(p[0], buf, sizeof(buf));
  CHECK_CONTAINS(buf, "{\"level\":\"warning\",\"msg\":\"a \\\"quoted\\\"\\u000aline\",\"time\":\"");
  close(p[0]);
  close(p[1]);
}

/* vs_utc_rfc3339 against the C library's gmtime_r + strftime, across leap days, centuries,
 * the epoch, before it, and far ahead. */
TEST(utc_rfc3339_matches_gmtime) {
  static const long long secs[] = {
      0,
      -1,
      -86400,
      59,
      951782400 /* 2000-02-29 */,
      951868799,
      4107542400 /* 2100-03-01 */,
      1790000000,
      253402300799 /* 9999 */,
      -2208988800 /* 1900-01-01 */,
      1700000000,
      1735689599,
      1709164800 /* 2024-02-29 */,
  };
  for (size_t i = 0; i < sizeof(secs) / sizeof(secs[0]); i++) {
    struct timespec ts = {.tv_sec = (time_t)secs[i], .tv_nsec = 123456789};
    char got[64], want[64];
    vs_utc_rfc3339(&ts, got, sizeof(got));
    struct tm tm;
    CHECK(gmtime_r(&ts.tv_sec, &tm) != NULL);
    size_t n = strftime(want, sizeof(want), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(want + n, sizeof(want) - n, ".123456789Z");
    CHECK_STREQ(got, want);
  }
  /* and a walk over ten years, a day and a bit at a time */
  for (long long t = 1600000000; t < 1600000000 + 10LL * 366 * 86400; t += 86400 + 3601) {
    struct timespec ts = {.tv_sec = (time_t)t, .tv_nsec = 5};
    char got[64], want[64];
    vs_utc_rfc3339(&ts, got, sizeof(got));
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(want, sizeof(want), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(want + n, sizeof(want) - n, ".000000005Z");
    if (strcmp(got, want) != 0) {
      CHECK_STREQ(got, want);
      break;
    }
  }
}

int main(void) { return tap_run(); }
