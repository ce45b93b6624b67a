/* Logging with levels, as text or as JSON lines (runc's --log-format json). */
#include "base.h"

#include <errno.h>
#include <string.h>
#include <time.h>

static vs_logger process_logger = {
    .level = VS_LOG_WARN, .format = VS_LOG_FORMAT_TEXT, .fd = 2, .prog = "vessel"};

static const char *const level_names[] = {"error", "warning", "info", "debug"};

vs_logger *vs_log_get(void) { return &process_logger; }

void vs_log_configure(const char *prog, vs_log_level level, vs_log_format format, int fd) {
  process_logger.prog = prog;
  process_logger.level = level;
  process_logger.format = format;
  process_logger.fd = fd;
}

/* Write a JSON string literal for s into buf (bounded); control characters are escaped. */
static size_t json_escape(char *buf, size_t cap, const char *s) {
  size_t n = 0;
  for (; *s && n + 7 < cap; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') {
      buf[n++] = '\\';
      buf[n++] = (char)c;
    } else if (c < 0x20) {
      n += (size_t)snprintf(buf + n, cap - n, "\\u%04x", c);
    } else {
      buf[n++] = (char)c;
    }
  }
  buf[n] = '\0';
  return n;
}

static void write_all(int fd, const char *buf, size_t len) {
  while (len > 0) {
    ssize_t w = write(fd, buf, len);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      return;
    buf += w;
    len -= (size_t)w;
  }
}

void vs_log(vs_log_level level, const char *fmt, ...) {
  vs_logger *lg = &process_logger;
  if (level > lg->level || lg->fd < 0)
    return;
  char msg[2048];
  va_list ap;
  va_start(ap, fmt);
  // NOLINTNEXTLINE(clang-analyzer-valist.Uninitialized): clang 14 false positive after va_start
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);

  char line[4096];
  int len;
  if (lg->format == VS_LOG_FORMAT_JSON) {
    char esc[3072];
    json_escape(esc, sizeof(esc), msg);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char when[64];
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
    len = snprintf(line, sizeof(line), "{\"level\":\"%s\",\"msg\":\"%s\",\"time\":\"%s.%09ldZ\"}\n",
                   level_names[level], esc, when, ts.tv_nsec);
  } else {
    len = snprintf(line, sizeof(line), "%s: %s: %s\n", lg->prog, level_names[level], msg);
  }
  if (len > (int)sizeof(line) - 1)
    len = (int)sizeof(line) - 1;
  write_all(lg->fd, line, (size_t)len);
}
