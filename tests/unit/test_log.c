#include "base/base.h"
#include "tap.h"

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

int main(void) { return tap_run(); }
