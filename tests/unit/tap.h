/* A small TAP harness for vessel's unit tests (meson runs them with protocol: 'tap').
 *
 *   TEST(error_wrap_adds_context) { ... CHECK(cond); CHECK_STREQ(a, b); ... }
 *   int main(void) { return tap_run(); }
 *
 * Each TEST registers itself; tap_run() runs them in order and prints one "ok"/"not ok" line each.
 * A failed CHECK records the file, line and expression and ends that test.
 * SKIP("no /dev/net/tun here") ends a test as skipped ("ok N - name # SKIP reason"): only for
 * what the machine cannot provide, never to hide a failure.
 */
#ifndef VESSEL_TAP_H
#define VESSEL_TAP_H

#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef void (*tap_fn)(void);

struct tap_test {
  const char *name;
  tap_fn fn;
};

struct tap_state {
  struct tap_test tests[512];
  int count;
  jmp_buf fail_jmp;
  char fail_msg[512];
  int checks;
};

enum { TAP_FAILED = 1, TAP_SKIPPED = 2 };

static struct tap_state tap;

#define TEST(tname)                                                                                \
  static void test_##tname(void);                                                                  \
  __attribute__((constructor)) static void register_##tname(void) {                                \
    if (tap.count == (int)(sizeof(tap.tests) / sizeof(tap.tests[0])))                              \
      abort(); /* too many tests in one file: split it */                                          \
    tap.tests[tap.count].name = #tname;                                                            \
    tap.tests[tap.count].fn = test_##tname;                                                        \
    tap.count++;                                                                                   \
  }                                                                                                \
  static void test_##tname(void)

__attribute__((format(printf, 1, 2), noreturn)) static void tap_fail(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(tap.fail_msg, sizeof(tap.fail_msg), fmt, ap);
  va_end(ap);
  longjmp(tap.fail_jmp, TAP_FAILED);
}
#define TAP_FAIL(...) tap_fail(__VA_ARGS__)

__attribute__((noreturn)) static inline void tap_skip(const char *reason) {
  snprintf(tap.fail_msg, sizeof(tap.fail_msg), "%s", reason);
  longjmp(tap.fail_jmp, TAP_SKIPPED);
}
#define SKIP(reason) tap_skip(reason)

#define CHECK(cond)                                                                                \
  do {                                                                                             \
    tap.checks++;                                                                                  \
    if (!(cond))                                                                                   \
      TAP_FAIL("%s:%d: CHECK(%s) failed", __FILE__, __LINE__, #cond);                              \
  } while (0)

#define CHECK_EQ(a, b)                                                                             \
  do {                                                                                             \
    tap.checks++;                                                                                  \
    long long _a = (long long)(a), _b = (long long)(b);                                            \
    if (_a != _b)                                                                                  \
      TAP_FAIL("%s:%d: %s == %s failed: %lld != %lld", __FILE__, __LINE__, #a, #b, _a, _b);        \
  } while (0)

#define CHECK_U64(a, b)                                                                            \
  do {                                                                                             \
    tap.checks++;                                                                                  \
    uint64_t _a = (uint64_t)(a), _b = (uint64_t)(b);                                               \
    if (_a != _b)                                                                                  \
      TAP_FAIL("%s:%d: %s == %s failed: 0x%" PRIx64 " != 0x%" PRIx64, __FILE__, __LINE__, #a, #b,  \
               _a, _b);                                                                            \
  } while (0)

#define CHECK_STREQ(a, b)                                                                          \
  do {                                                                                             \
    tap.checks++;                                                                                  \
    const char *_a = (a), *_b = (b);                                                               \
    if (!_a || !_b || strcmp(_a, _b) != 0)                                                         \
      TAP_FAIL("%s:%d: %s == %s failed: \"%s\" != \"%s\"", __FILE__, __LINE__, #a, #b,             \
               _a ? _a : "(null)", _b ? _b : "(null)");                                            \
  } while (0)

/* Substring check, for error messages: the message must name the problem. */
#define CHECK_CONTAINS(hay, needle)                                                                \
  do {                                                                                             \
    tap.checks++;                                                                                  \
    const char *_h = (hay), *_n = (needle);                                                        \
    if (!_h || !strstr(_h, _n))                                                                    \
      TAP_FAIL("%s:%d: \"%s\" does not contain \"%s\"", __FILE__, __LINE__, _h ? _h : "(null)",    \
               _n);                                                                                \
  } while (0)

static inline int tap_run(void) {
  volatile int failed = 0;
  printf("1..%d\n", tap.count);
  for (volatile int i = 0; i < tap.count; i++) {
    tap.fail_msg[0] = '\0';
    tap.checks = 0;
    switch (setjmp(tap.fail_jmp)) { /* setjmp may only appear in contexts like this one */
    case 0:
      tap.tests[i].fn();
      if (tap.checks == 0) {
        printf("not ok %d - %s # the test checked nothing\n", i + 1, tap.tests[i].name);
        failed++;
      } else {
        printf("ok %d - %s\n", i + 1, tap.tests[i].name);
      }
      break;
    case TAP_SKIPPED:
      printf("ok %d - %s # SKIP %s\n", i + 1, tap.tests[i].name, tap.fail_msg);
      break;
    default:
      printf("not ok %d - %s\n# %s\n", i + 1, tap.tests[i].name, tap.fail_msg);
      failed++;
      break;
    }
    fflush(stdout);
  }
  return failed ? 1 : 0;
}

#endif
