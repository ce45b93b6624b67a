/* Helpers shared by the unit tests: scratch directories and small file writers. */
#ifndef VESSEL_TESTUTIL_H
#define VESSEL_TESTUTIL_H

#include "base/base.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* A fresh directory under $TMPDIR (or /tmp); remove it with vs_rm_rf. */
static inline char *test_tmpdir(void) {
  const char *t = getenv("TMPDIR");
  char *d = vs_asprintf("%s/vessel-test-XXXXXX", t && *t ? t : "/tmp");
  if (!mkdtemp(d))
    abort();
  return d;
}

static inline void test_write(const char *path, const char *text) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0)
    abort();
  size_t n = strlen(text);
  if (write(fd, text, n) != (ssize_t)n)
    abort();
  close(fd);
}

static inline bool test_exists(const char *path) {
  struct stat st;
  return lstat(path, &st) == 0;
}

#endif
