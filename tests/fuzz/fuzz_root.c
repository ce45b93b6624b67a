/* Differential fuzzing of path resolution inside a root: for any path, the userspace walk
 * (vs_openat_in_root_walk, used when the kernel lacks openat2) must agree with the kernel's
 * openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS): both fail, or both open the same inode, and
 * that inode is never outside the root. */
#include "base/base-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct fuzz_root {
  char dir[64];
  int rootfd;
  dev_t outside_dev;
  ino_t outside_ino; /* a file next to the root that must never be reached */
} fuzz_root;

static fuzz_root the_root;

static void cleanup(void) {
  vs_error *err = NULL;
  if (the_root.dir[0])
    vs_rm_rf(the_root.dir, &err);
  vs_error_free(err);
}

static void must(bool ok) {
  if (!ok)
    abort();
}

/* root/{a/b/c, a/file, l-abs -> /a/b, l-up -> ../../.., l-esc -> ../../outside,
 *       a/b/l-rel -> ../file, l-loop1 -> l-loop2 -> l-loop1, l-proc -> /proc/self/root,
 *       l-dot -> ., l-dangling -> /nope/x}; outside (a file beside root) */
static fuzz_root *setup(void) {
  fuzz_root *fr = &the_root;
  if (fr->dir[0])
    return fr;
  strcpy(fr->dir, "/tmp/vessel-fuzz-root-XXXXXX");
  must(mkdtemp(fr->dir) != NULL);
  atexit(cleanup);
  /* relative to the scratch directory, without chdir (libFuzzer works with relative paths) */
  int top = open(fr->dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
  must(top >= 0);
  must(mkdirat(top, "root", 0755) == 0 && mkdirat(top, "root/a", 0755) == 0 &&
       mkdirat(top, "root/a/b", 0755) == 0 && mkdirat(top, "root/a/b/c", 0755) == 0);
  int fd = openat(top, "root/a/file", O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
  must(fd >= 0);
  close(fd);
  fd = openat(top, "outside", O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
  must(fd >= 0);
  close(fd);
  const char *links[][2] = {
      {"/a/b", "root/l-abs"},
      {"../../..", "root/l-up"},
      {"../../outside", "root/l-esc"},
      {"../file", "root/a/b/l-rel"},
      {"l-loop2", "root/l-loop1"},
      {"l-loop1", "root/l-loop2"},
      {"/proc/self/root", "root/l-proc"},
      {".", "root/l-dot"},
      {"/nope/x", "root/l-dangling"},
      {"/outside", "root/a/l-outside"},
  };
  for (size_t i = 0; i < ARRAY_SIZE(links); i++)
    must(symlinkat(links[i][0], top, links[i][1]) == 0);
  struct stat st;
  must(fstatat(top, "outside", &st, 0) == 0);
  fr->outside_dev = st.st_dev;
  fr->outside_ino = st.st_ino;
  fr->rootfd = openat(top, "root", O_PATH | O_DIRECTORY | O_CLOEXEC);
  must(fr->rootfd >= 0);
  close(top);
  return fr;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fuzz_root *fr = setup();
  if (size > 512)
    return 0;
  char path[513];
  memcpy(path, data, size);
  path[size] = '\0';
  if (strlen(path) != size)
    return 0; /* paths are C strings */

  static const int flag_sets[] = {O_PATH, O_RDONLY, O_PATH | O_NOFOLLOW, O_RDONLY | O_DIRECTORY};
  for (size_t f = 0; f < ARRAY_SIZE(flag_sets); f++) {
    vs_error *e1 = NULL, *e2 = NULL;
    int a = vs_openat_in_root(fr->rootfd, path, flag_sets[f], 0, &e1);
    int b = vs_openat_in_root_walk(fr->rootfd, path, flag_sets[f], 0, &e2);
    struct stat sa, sb;
    if (a >= 0)
      must(fstat(a, &sa) == 0);
    if (b >= 0)
      must(fstat(b, &sb) == 0);
    if ((a >= 0) != (b >= 0))
      abort(); /* one resolved, the other did not */
    if (a >= 0 && (sa.st_dev != sb.st_dev || sa.st_ino != sb.st_ino))
      abort(); /* they resolved to different files */
    if (b >= 0 && sb.st_dev == fr->outside_dev && sb.st_ino == fr->outside_ino)
      abort(); /* escaped the root */
    if (a >= 0)
      close(a);
    if (b >= 0)
      close(b);
    vs_error_free(e1);
    vs_error_free(e2);
  }
  return 0;
}
