/* Error values that carry a message with context. */
#include "base.h"

#include <errno.h>
#include <string.h>

void *vs_malloc0(size_t n) {
  void *p = calloc(1, n ? n : 1);
  if (!p)
    abort();
  return p;
}

void *vs_malloc0_aligned(size_t align, size_t n) {
  void *p = NULL;
  if (posix_memalign(&p, align, n ? n : 1) != 0)
    abort();
  return memset(p, 0, n);
}

void *vs_realloc(void *p, size_t n) {
  void *q = realloc(p, n ? n : 1);
  if (!q)
    abort();
  return q;
}

char *vs_strdup(const char *s) {
  char *d = strdup(s);
  if (!d)
    abort();
  return d;
}

char *vs_asprintf(const char *fmt, ...) {
  va_list ap;
  char *s;
  va_start(ap, fmt);
  int r = vasprintf(&s, fmt, ap);
  va_end(ap);
  if (r < 0)
    abort();
  return s;
}

int vs_error_setv(vs_error **err, int errnum, const char *fmt, va_list ap) {
  if (!err)
    return -1;
  char *base;
  if (vasprintf(&base, fmt, ap) < 0)
    abort();
  vs_error *e = vs_malloc0(sizeof(*e));
  e->errnum = errnum;
  if (errnum) {
    e->msg = vs_asprintf("%s: %s", base, strerror(errnum));
    free(base);
  } else {
    e->msg = base;
  }
  vs_error_free(*err);
  *err = e;
  return -1;
}

void vs_error_set_msg(vs_error **err, int errnum, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vs_error_setv(err, errnum, fmt, ap);
  va_end(ap);
}

void vs_error_wrap_msg(vs_error **err, const char *fmt, ...) {
  if (!err)
    return;
  va_list ap;
  va_start(ap, fmt);
  char *ctx;
  if (vasprintf(&ctx, fmt, ap) < 0)
    abort();
  va_end(ap);
  if (!*err) {
    *err = vs_malloc0(sizeof(**err));
    (*err)->msg = ctx;
    return;
  }
  char *msg = vs_asprintf("%s: %s", ctx, (*err)->msg);
  free(ctx);
  free((*err)->msg);
  (*err)->msg = msg;
}

void vs_error_free(vs_error *err) {
  if (!err)
    return;
  free(err->msg);
  free(err);
}

void vs_error_freep(vs_error **err) {
  vs_error_free(*err);
  *err = NULL;
}

void vs_error_print(const vs_error *err, const char *prog) {
  fprintf(stderr, "%s: %s\n", prog, err && err->msg ? err->msg : "unknown error");
}
