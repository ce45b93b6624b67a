/* Strict parsing of numbers and sizes from command lines and configuration. */
#include "base.h"

#include <ctype.h>
#include <errno.h>
#include <string.h>
#include <strings.h>

int vs_parse_u64(const char *s, const char *what, uint64_t *out, vs_error **err) {
  /* strtoull accepts leading spaces and a minus sign (wrapping the value): refuse both */
  if (!s || !isdigit((unsigned char)s[0]))
    return vs_error_set(err, EINVAL, "%s: \"%s\" is not a non-negative number", what, s ? s : "");
  errno = 0;
  char *end;
  unsigned long long v = strtoull(s, &end, 0);
  if (errno == ERANGE)
    return vs_error_set(err, ERANGE, "%s: \"%s\" is too large", what, s);
  if (*end || end == s)
    return vs_error_set(err, EINVAL, "%s: \"%s\" is not a non-negative number", what, s);
  *out = v;
  return 0;
}

int vs_parse_size(const char *s, const char *what, uint64_t *out, vs_error **err) {
  static const struct {
    const char *suffix;
    unsigned shift;
  } units[] = {
      {"", 0},     {"B", 0},  {"K", 10},   {"KiB", 10}, {"M", 20},
      {"MiB", 20}, {"G", 30}, {"GiB", 30}, {"T", 40},   {"TiB", 40},
  };
  if (!s || !isdigit((unsigned char)s[0]))
    return vs_error_set(err, EINVAL, "%s: \"%s\" is not a size (like 512M)", what, s ? s : "");
  errno = 0;
  char *end;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno == ERANGE)
    return vs_error_set(err, ERANGE, "%s: \"%s\" is too large", what, s);
  for (size_t i = 0; i < ARRAY_SIZE(units); i++) {
    if (strcasecmp(end, units[i].suffix) != 0)
      continue;
    if (units[i].shift && v > (UINT64_MAX >> units[i].shift))
      return vs_error_set(err, ERANGE, "%s: \"%s\" is too large", what, s);
    *out = (uint64_t)v << units[i].shift;
    return 0;
  }
  return vs_error_set(err, EINVAL, "%s: \"%s\": unknown unit \"%s\" (use K, M, G or T)", what, s,
                      end);
}

int64_t vs_i64_saturate(double d) {
  if (d != d)
    return 0;
  /* 2^63 is exact in a double; INT64_MAX is not, so compare against the power of two */
  if (d >= 9223372036854775808.0)
    return INT64_MAX;
  if (d <= -9223372036854775808.0)
    return INT64_MIN;
  return (int64_t)d;
}
