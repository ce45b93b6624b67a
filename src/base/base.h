/* vessel base: the shared C utilities every other module builds on.
 *
 * This is the module's one public header. It depends on nothing else in src/.
 *
 * Error convention (used everywhere in vessel):
 *   A function that can fail takes `vs_error **err` as its last parameter and returns a negative
 *   value (or NULL) on failure after setting *err. Callers add their own context with
 *   vs_error_wrap() on the way up; only main() prints and exits.
 *
 *     if (read_config(path, &cfg, err) < 0)
 *         return vs_error_wrap(err, "load bundle %s", bundle);
 */
#ifndef VESSEL_BASE_H
#define VESSEL_BASE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* ---------------------------------------------------------------- errors */

typedef struct vs_error {
  int errnum; /* errno value behind the failure, 0 if none */
  char *msg;  /* full message, context first: "load bundle x: open config.json: No such file" */
} vs_error;

/* Set *err (if err is non-NULL) to a new error; appends ": strerror(errnum)" when errnum != 0.
 * Always returns -1 so it can be used as `return vs_error_set(...)`. If *err is already set the
 * old error is freed first. */
int vs_error_set(vs_error **err, int errnum, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int vs_error_setv(vs_error **err, int errnum, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

/* Prefix the existing error with context: "context: old message". Returns -1. If *err is NULL
 * (the callee failed without setting it) a new error with just the context is created. */
int vs_error_wrap(vs_error **err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

void vs_error_free(vs_error *err);
void vs_error_freep(vs_error **err);
/* Print "prog: message" to stderr. */
void vs_error_print(const vs_error *err, const char *prog);

/* ------------------------------------------------------------- cleanup */

static inline void vs_freep(void *p) { free(*(void **)p); }
static inline void vs_closep(int *fd) {
  if (*fd >= 0)
    close(*fd);
}
static inline void vs_fclosep(FILE **f) {
  if (*f)
    fclose(*f);
}

#define _cleanup_(f) __attribute__((cleanup(f)))
#define _cleanup_free_ _cleanup_(vs_freep)
#define _cleanup_close_ _cleanup_(vs_closep)
#define _cleanup_fclose_ _cleanup_(vs_fclosep)
#define _cleanup_error_ _cleanup_(vs_error_freep)

/* Hand ownership out of a cleanup variable: `return steal_pointer(&p);` */
#define steal_pointer(pp)                                                                          \
  ({                                                                                               \
    __typeof__(*(pp)) _tmp = *(pp);                                                                \
    *(pp) = NULL;                                                                                  \
    _tmp;                                                                                          \
  })
static inline int steal_fd(int *fd) {
  int r = *fd;
  *fd = -1;
  return r;
}

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Allocation that cannot fail from the caller's point of view: aborts on out-of-memory, like
 * glib's g_malloc. Out-of-memory is not an error vessel can report usefully. */
void *vs_malloc0(size_t n);
void *vs_realloc(void *p, size_t n);
char *vs_strdup(const char *s);
char *vs_asprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* --------------------------------------------------------------- logging */

typedef enum {
  VS_LOG_ERROR = 0,
  VS_LOG_WARN = 1,
  VS_LOG_INFO = 2,
  VS_LOG_DEBUG = 3,
} vs_log_level;

typedef enum {
  VS_LOG_FORMAT_TEXT = 0,
  VS_LOG_FORMAT_JSON = 1, /* one JSON object per line: {"level":"info","msg":"...","time":"..."} */
} vs_log_format;

/* The process's logger. There is exactly one per process; it is configured by main() and
 * read by everything else. */
typedef struct vs_logger {
  vs_log_level level;
  vs_log_format format;
  int fd; /* where log lines go; 2 (stderr) by default */
  const char *prog;
} vs_logger;

vs_logger *vs_log_get(void);
void vs_log_configure(const char *prog, vs_log_level level, vs_log_format format, int fd);
void vs_log(vs_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define vs_log_error(...) vs_log(VS_LOG_ERROR, __VA_ARGS__)
#define vs_log_warn(...) vs_log(VS_LOG_WARN, __VA_ARGS__)
#define vs_log_info(...) vs_log(VS_LOG_INFO, __VA_ARGS__)
#define vs_log_debug(...) vs_log(VS_LOG_DEBUG, __VA_ARGS__)

#endif
