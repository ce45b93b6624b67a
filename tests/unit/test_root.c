/* Path resolution inside a root, through openat2 and through the fallback walk. Every hostile
 * case runs against both. */
#include "base/base-internal.h"
#include "tap.h"
#include "testutil.h"

#include <errno.h>
#include <sys/stat.h>

typedef int (*open_fn)(int, const char *, int, mode_t, vs_error **);

/* root/
 *   etc/passwd          "inside"
 *   abs -> /etc         (absolute link: means root/etc)
 *   up -> ../../..      (climbs: clamps at the root)
 *   esc -> ../../../../../etc/passwd
 *   dir/rel -> ../etc/passwd
 *   dangling -> /newfile
 *   loop -> loop
 *   fd -> /proc/self/fd/<n> only when /proc is available: magic links are tested separately
 * outside/secret        "outside" */
typedef struct fixture {
  char *top;
  char *root;
  int rootfd;
} fixture;

static fixture make_root(void) {
  fixture f;
  f.top = test_tmpdir();
  f.root = vs_asprintf("%s/root", f.top);
  vs_error *err = NULL;
  _cleanup_free_ char *etc = vs_asprintf("%s/etc", f.root);
  _cleanup_free_ char *d = vs_asprintf("%s/dir", f.root);
  _cleanup_free_ char *out = vs_asprintf("%s/outside", f.top);
  if (vs_mkdir_p(etc, 0755, &err) < 0 || vs_mkdir_p(d, 0755, &err) < 0 ||
      vs_mkdir_p(out, 0755, &err) < 0)
    abort();
  _cleanup_free_ char *pw = vs_asprintf("%s/passwd", etc);
  test_write(pw, "inside");
  _cleanup_free_ char *secret = vs_asprintf("%s/secret", out);
  test_write(secret, "outside");
  struct {
    const char *target, *name;
  } links[] = {
      {"/etc", "abs"},
      {"../../..", "up"},
      {"../../../../../etc/passwd", "esc"},
      {"../etc/passwd", "dir/rel"},
      {"/newfile", "dangling"},
      {"loop", "loop"},
      {"../outside/secret", "sneaky"},
  };
  for (size_t i = 0; i < ARRAY_SIZE(links); i++) {
    _cleanup_free_ char *l = vs_asprintf("%s/%s", f.root, links[i].name);
    if (symlink(links[i].target, l) < 0)
      abort();
  }
  f.rootfd = open(f.root, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (f.rootfd < 0)
    abort();
  return f;
}

static void free_root(fixture *f) {
  close(f->rootfd);
  vs_error *err = NULL;
  vs_rm_rf(f->top, &err);
  vs_error_free(err);
  free(f->top);
  free(f->root);
}

/* Open path read-only in the root and return its content (static buffer) or NULL. */
static const char *read_in_root(open_fn fn, int rootfd, const char *path, int *errnum) {
  static char buf[64];
  vs_error *err = NULL;
  int fd = fn(rootfd, path, O_RDONLY, 0, &err);
  if (fd < 0) {
    *errnum = err->errnum;
    vs_error_free(err);
    return NULL;
  }
  ssize_t n = read(fd, buf, sizeof(buf) - 1);
  close(fd);
  if (n < 0)
    return NULL;
  buf[n] = '\0';
  return buf;
}

static void check_hostile_paths(open_fn fn) {
  fixture f = make_root();
  int e = 0;
  CHECK_STREQ(read_in_root(fn, f.rootfd, "etc/passwd", &e), "inside");
  CHECK_STREQ(read_in_root(fn, f.rootfd, "/etc/passwd", &e), "inside");
  CHECK_STREQ(read_in_root(fn, f.rootfd, "../../../../etc/passwd", &e), "inside");
  CHECK_STREQ(read_in_root(fn, f.rootfd, "dir/../../etc/./passwd", &e), "inside");
  CHECK_STREQ(read_in_root(fn, f.rootfd, "abs/passwd", &e), "inside");
  CHECK_STREQ(read_in_root(fn, f.rootfd, "up/etc/passwd", &e), "inside");
  CHECK_STREQ(read_in_root(fn, f.rootfd, "esc", &e), "inside");
  CHECK_STREQ(read_in_root(fn, f.rootfd, "dir/rel", &e), "inside");
  CHECK_STREQ(read_in_root(fn, f.rootfd, "up/up/up/abs/passwd", &e), "inside");
  /* ../outside/secret from the root resolves to root/outside/secret, which does not exist */
  CHECK(read_in_root(fn, f.rootfd, "sneaky", &e) == NULL);
  CHECK_EQ(e, ENOENT);
  CHECK(read_in_root(fn, f.rootfd, "../outside/secret", &e) == NULL);
  CHECK_EQ(e, ENOENT);
  CHECK(read_in_root(fn, f.rootfd, "loop", &e) == NULL);
  CHECK_EQ(e, ELOOP);
  CHECK(read_in_root(fn, f.rootfd, "etc/passwd/x", &e) == NULL);
  CHECK_EQ(e, ENOTDIR);
  free_root(&f);
}

TEST(openat2_keeps_hostile_paths_inside_root) { check_hostile_paths(vs_openat_in_root); }
TEST(walk_keeps_hostile_paths_inside_root) { check_hostile_paths(vs_openat_in_root_walk); }

static void check_create_through_dangling_link(open_fn fn) {
  fixture f = make_root();
  _cleanup_error_ vs_error *err = NULL;
  int fd = fn(f.rootfd, "dangling", O_WRONLY | O_CREAT | O_EXCL, 0600, &err);
  if (fd < 0) {
    /* openat2 refuses O_CREAT|O_EXCL through a symlink (EEXIST): also safe */
    CHECK_EQ(err->errnum, EEXIST);
    vs_error_freep(&err);
    fd = fn(f.rootfd, "dangling", O_WRONLY | O_CREAT, 0600, &err);
  }
  CHECK(fd >= 0);
  CHECK_EQ(write(fd, "new", 3), 3);
  close(fd);
  _cleanup_free_ char *inside = vs_asprintf("%s/newfile", f.root);
  CHECK(test_exists(inside));
  CHECK(!test_exists("/newfile"));
  free_root(&f);
}

TEST(openat2_create_through_dangling_link_stays_inside) {
  check_create_through_dangling_link(vs_openat_in_root);
}
TEST(walk_create_through_dangling_link_stays_inside) {
  check_create_through_dangling_link(vs_openat_in_root_walk);
}

static void check_nofollow(open_fn fn) {
  fixture f = make_root();
  _cleanup_error_ vs_error *err = NULL;
  CHECK_EQ(fn(f.rootfd, "esc", O_RDONLY | O_NOFOLLOW, 0, &err), -1);
  CHECK_EQ(err->errnum, ELOOP);
  vs_error_freep(&err);
  /* O_PATH|O_NOFOLLOW opens the link itself */
  int fd = fn(f.rootfd, "esc", O_PATH | O_NOFOLLOW, 0, &err);
  CHECK(fd >= 0);
  struct stat st;
  CHECK_EQ(fstatat(fd, "", &st, AT_EMPTY_PATH), 0);
  CHECK(S_ISLNK(st.st_mode));
  close(fd);
  free_root(&f);
}

TEST(openat2_nofollow_final_component) { check_nofollow(vs_openat_in_root); }
TEST(walk_nofollow_final_component) { check_nofollow(vs_openat_in_root_walk); }

static void check_magic_links(open_fn fn) {
  /* With the host's / as the root, /proc is procfs: /proc/self/fd/N and /proc/self/root are
   * magic links that jump to an object directly, bypassing resolution inside the root. */
  _cleanup_free_ char *top = test_tmpdir();
  _cleanup_close_ int rootfd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
  CHECK(rootfd >= 0);
  _cleanup_close_ int outside = open(top, O_PATH | O_DIRECTORY | O_CLOEXEC);
  CHECK(outside >= 0);
  _cleanup_free_ char *fdpath = vs_asprintf("/proc/self/fd/%d/proc", outside);
  _cleanup_error_ vs_error *err = NULL;
  CHECK_EQ(fn(rootfd, fdpath, O_PATH, 0, &err), -1);
  CHECK_EQ(err->errnum, ELOOP);
  vs_error_freep(&err);
  CHECK_EQ(fn(rootfd, "/proc/self/root/etc/hostname", O_RDONLY, 0, &err), -1);
  CHECK_EQ(err->errnum, ELOOP);
  vs_error_freep(&err);
  /* ordinary procfs links (/proc/self -> pid) still work */
  int fd = fn(rootfd, "/proc/self/status", O_RDONLY, 0, &err);
  CHECK(fd >= 0);
  close(fd);
  CHECK_EQ(vs_rm_rf(top, &err), 0);
}

TEST(openat2_refuses_magic_links) { check_magic_links(vs_openat_in_root); }
TEST(walk_refuses_magic_links) { check_magic_links(vs_openat_in_root_walk); }

static void check_root_itself(open_fn fn) {
  fixture f = make_root();
  _cleanup_error_ vs_error *err = NULL;
  const char *paths[] = {".", "/", "..", "../..", "dir/..", "up"};
  for (size_t i = 0; i < ARRAY_SIZE(paths); i++) {
    int fd = fn(f.rootfd, paths[i], O_RDONLY | O_DIRECTORY, 0, &err);
    CHECK(fd >= 0);
    struct stat a, b;
    CHECK_EQ(fstat(fd, &a), 0);
    CHECK_EQ(fstat(f.rootfd, &b), 0);
    CHECK_EQ(a.st_ino, b.st_ino);
    close(fd);
  }
  free_root(&f);
}

TEST(openat2_dotdot_clamps_at_root) { check_root_itself(vs_openat_in_root); }
TEST(walk_dotdot_clamps_at_root) { check_root_itself(vs_openat_in_root_walk); }

TEST(error_names_the_path) {
  fixture f = make_root();
  _cleanup_error_ vs_error *err = NULL;
  CHECK_EQ(vs_openat_in_root(f.rootfd, "no/such/file", O_RDONLY, 0, &err), -1);
  CHECK_EQ(err->errnum, ENOENT);
  CHECK_CONTAINS(err->msg, "no/such/file");
  free_root(&f);
}

TEST(mkdir_p_in_root_stays_inside) {
  fixture f = make_root();
  _cleanup_error_ vs_error *err = NULL;
  CHECK_EQ(vs_mkdir_p_in_root(f.rootfd, "../../a/b/../c", 0755, &err), 0);
  _cleanup_free_ char *c = vs_asprintf("%s/a/c", f.root);
  _cleanup_free_ char *b = vs_asprintf("%s/a/b", f.root);
  struct stat st;
  CHECK_EQ(stat(c, &st), 0);
  CHECK(S_ISDIR(st.st_mode));
  CHECK(test_exists(b));
  /* through an escaping symlink: lands in root/ */
  CHECK_EQ(vs_mkdir_p_in_root(f.rootfd, "up/made/here", 0755, &err), 0);
  _cleanup_free_ char *h = vs_asprintf("%s/made/here", f.root);
  CHECK(test_exists(h));
  _cleanup_free_ char *outside = vs_asprintf("%s/made", f.top);
  CHECK(!test_exists(outside));
  /* idempotent */
  CHECK_EQ(vs_mkdir_p_in_root(f.rootfd, "/a/c", 0755, &err), 0);
  /* over a file */
  CHECK_EQ(vs_mkdir_p_in_root(f.rootfd, "etc/passwd/sub", 0755, &err), -1);
  CHECK_EQ(err->errnum, ENOTDIR);
  CHECK_CONTAINS(err->msg, "etc/passwd/sub");
  vs_error_freep(&err);
  CHECK_EQ(vs_mkdir_p_in_root(f.rootfd, "etc/passwd", 0755, &err), -1);
  CHECK_EQ(err->errnum, ENOTDIR);
  free_root(&f);
}

int main(void) { return tap_run(); }
