/* Logging with levels, as text or as JSON lines (runc's --log-format json). */
#include "base.h"

#include <errno.h>
#include <string.h>
#include <time.h>

static vs_logger process_logger = {
    .level = VS_LOG_WARN, .format = VS_LOG_FORMAT_TEXT, .fd = 2, .prog = "vessel"};

static const char *const level_names[] = {"error", "warning", "info", "debug"};

/* Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's days_from_civil
 * inverted): exact for every year the 64-bit seconds of a timespec can name here. */
static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d) {
  z += 719468;
  int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  unsigned doe = (unsigned)(z - era * 146097);
  unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  unsigned mp = (5 * doy + 2) / 153;
  *d = doy - (153 * mp + 2) / 5 + 1;
  *m = mp < 10 ? mp + 3 : mp - 9;
  *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

struct timespec vs_realtime_after_ms(int ms) {
  struct timespec t;
  clock_gettime(CLOCK_REALTIME, &t);
  t.tv_sec += ms / 1000;
  t.tv_nsec += (long)(ms % 1000) * 1000000L;
  if (t.tv_nsec >= 1000000000L) {
    t.tv_sec++;
    t.tv_nsec -= 1000000000L;
  }
  return t;
}

void vs_utc_rfc3339(const struct timespec *ts, char *buf, size_t size) {
  int64_t secs = ts->tv_sec;
  int64_t days = secs >= 0 ? secs / 86400 : -((-secs + 86399) / 86400);
  int64_t rem = secs - days * 86400;
  int64_t y;
  unsigned m, d;
  civil_from_days(days, &y, &m, &d);
  snprintf(buf, size, "%04lld-%02u-%02uT%02u:%02u:%02u.%09ldZ", (long long)y, m, d,
           (unsigned)(rem / 3600), (unsigned)(rem / 60 % 60), (unsigned)(rem % 60),
           (long)ts->tv_nsec);
}

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
    char when[64];
    vs_utc_rfc3339(&ts, when, sizeof(when));
    len = snprintf(line, sizeof(line), "{\"level\":\"%s\",\"msg\":\"%s\",\"time\":\"%s\"}\n",
                   level_names[level], esc, when);
  } else {
    len = snprintf(line, sizeof(line), "%s: %s: %s\n", lg->prog, level_names[level], msg);
  }
  if (len > (int)sizeof(line) - 1)
    len = (int)sizeof(line) - 1;
  write_all(lg->fd, line, (size_t)len);
}
