#include "base/base.h"
#include "tap.h"
#include "testutil.h"

#include <errno.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>

TEST(read_file_returns_nul_terminated_content) {
  _cleanup_free_ char *dir = test_tmpdir();
  _cleanup_free_ char *p = vs_asprintf("%s/f", dir);
  test_write(p, "hello\nworld");
  _cleanup_free_ char *buf = NULL;
  size_t len = 0;
  _cleanup_error_ vs_error *err = NULL;
  CHECK_EQ(vs_read_file(p, 100, &buf, &len, &err), 0);
  CHECK_EQ(len, 11);
  CHECK_STREQ(buf, "hello\nworld");
  CHECK_EQ(vs_rm_rf(dir, &err), 0);
}

TEST(read_file_empty_file) {
  _cleanup_free_ char *dir = test_tmpdir();
  _cleanup_free_ char *p = vs_asprintf("%s/empty", dir);
  test_write(p, "");
  _cleanup_free_ char *buf = NULL;
  size_t len = 99;
  _cleanup_error_ vs_error *err = NULL;
  CHECK_EQ(vs_read_file(p, 0, &buf, &len, &err), 0);
  CHECK_EQ(len, 0);
  CHECK_STREQ(buf, "");
  CHECK_EQ(vs_rm_rf(dir, &err), 0);
}

TEST(read_file_exactly_at_limit_is_accepted) {
  _cleanup_free_ char *dir = test_tmpdir();
  _cleanup_free_ char *p = vs_asprintf("%s/f", dir);
  test_write(p, "12345");
  _cleanup_free_ char *buf = NULL;
  _cleanup_error_ vs_error *err = NULL;
  CHECK_EQ(vs_read_file(p, 5, &buf, NULL, &err), 0);
  CHECK_STREQ(buf, "12345");
  CHECK_EQ(vs_rm_rf(dir, &err), 0);
}

TEST(read_file_refuses_oversized_file) {
  _cleanup_free_ char *dir = test_tmpdir();
  _cleanup_free_ char *p = vs_asprintf("%s/big", dir);
  test_write(p, "123456");
  _cleanup_free_ char *buf = NULL;
  _cleanup_error_ vs_error *err = NULL;
  CHECK_EQ(vs_read_file(p, 5, &buf, NULL, &err), -1);
  CHECK(buf == NULL);
  CHECK_EQ(err->errnum, EFBIG);
  CHECK_CONTAINS(err->msg, "limit of 5 bytes");
  CHECK_CONTAINS(err->msg, p);
  vs_error_freep(&err);
  CHECK_EQ(vs_rm_rf(dir, &err), 0);
}

TEST(read_file_limit_holds_for_files_without_size) {
  /* /proc files report size 0: the limit must hold on the bytes actually read. */
  _cleanup_free_ char *buf = NULL;
  _cleanup_error_ vs_error *err = NULL;
  CHECK_EQ(vs_read_file("/proc/self/maps", 10, &buf, NULL, &err), -1);
  CHECK_EQ(err->errnum, EFBIG);
  CHECK_CONTAINS(err->msg, "limit");
  vs_error_freep(&err);
  size_t len = 0;
  CHECK_EQ(vs_read_file("/proc/self/maps", 1 << 20, &buf, &len, &err), 0);
  CHECK(len > 10);
  CHECK_EQ(strlen(buf), len);
}

TEST(read_file_missing_names_path) {
  _cleanup_free_ char *buf = NULL;
  _cleanup_error_ vs_error *err = NULL;
  CHECK_EQ(vs_read_file("/nonexistent/vessel/x", 10, &buf, NULL, &err), -1);
  CHECK_EQ(err->errnum, ENOENT);
  CHECK_STREQ(err->msg, "open /nonexistent/vessel/x: No such file or directory");
}

TEST(read_file_refuses_directory) {
  _cleanup_free_ char *buf = NULL;
  _cleanup_error_ vs_error *err = NULL;
  CHECK_EQ(vs_read_file("/", 10, &buf, NULL, &err), -1);
  CHECK_EQ(err->errnum, EISDIR);
}

TEST(write_file_atomic_creates_and_replaces) {
  _cleanup_free_ char *dir = test_tmpdir();
  _cleanup_free_ char *p = vs_asprintf("%s/state.json", dir);
  _cleanup_error_ vs_error *err = NULL;
  CHECK_EQ(vs_write_file_atomic(p, "one", 3, 0640, &err), 0);
  struct stat st;
  CHECK_EQ(stat(p, &st), 0);
  CHECK_EQ(st.st_mode & 07777, 0640);
  CHECK_EQ(vs_write_file_atomic(p, "second", 6, 0600, &err), 0);
  _cleanup_free_ char *buf = NULL;
  CHECK_EQ(vs_read_file(p, 100, &buf, NULL, &err), 0);
  CHECK_STREQ(buf, "second");
  CHECK_EQ(stat(p, &st), 0);
  CHECK_EQ(st.st_mode & 07777, 0600);
  /* no temporary files are left behind */
  _cleanup_free_ char *cmd = vs_asprintf("test $(ls -A %s | wc -l) -eq 1", dir);
  CHECK_EQ(system(cmd), 0);
  CHECK_EQ(vs_rm_rf(dir, &err), 0);
}

TEST(write_file_atomic_replaces_symlink_not_target) {
  _cleanup_free_ char *dir = test_tmpdir();
  _cleanup_free_ char *target = vs_asprintf("%s/target", dir);
  _cleanup_free_ char *link = vs_asprintf("%s/link", dir);
  test_write(target, "keep");
  CHECK_EQ(symlink(target, link), 0);
  _cleanup_error_ vs_error *err = NULL;
  CHECK_EQ(vs_write_file_atomic(link, "new", 3, 0644, &err), 0);
  _cleanup_free_ char *buf = NULL;
  CHECK_EQ(vs_read_file(target, 100, &buf, NULL, &err), 0);
  CHECK_STREQ(buf, "keep");
  struct stat st;
  CHECK_EQ(lstat(link, &st), 0);
  CHECK(S_ISREG(st.st_mode));
  CHECK_EQ(vs_rm_rf(dir, &err), 0);
}

TEST(write_file_atomic_missing_dir_fails_cleanly) {
  _cleanup_error_ vs_error *err = NULL;
  CHECK_EQ(vs_write_file_atomic("/nonexistent/vessel/f", "x", 1, 0644, &err), -1);
  CHECK_EQ(err->errnum, ENOENT);
  CHECK_CONTAINS(err->msg, "/nonexistent/vessel/f");
}

TEST(mkdir_p_creates_parents_and_is_idempotent) {
  _cleanup_free_ char *dir = test_tmpdir();
  _cleanup_free_ char *p = vs_asprintf("%s/a/b//c/", dir);
  _cleanup_error_ vs_error *err = NULL;
  CHECK_EQ(vs_mkdir_p(p, 0755, &err), 0);
  CHECK_EQ(vs_mkdir_p(p, 0755, &err), 0);
  _cleanup_free_ char *c = vs_asprintf("%s/a/b/c", dir);
  struct stat st;
  CHECK_EQ(stat(c, &st), 0);
  CHECK(S_ISDIR(st.st_mode));
  CHECK_EQ(vs_rm_rf(dir, &err), 0);
}

TEST(mkdir_p_over_file_fails) {
  _cleanup_free_ char *dir = test_tmpdir();
  _cleanup_free_ char *f = vs_asprintf("%s/file", dir);
  test_write(f, "x");
  _cleanup_free_ char *p = vs_asprintf("%s/file/sub", dir);
  _cleanup_error_ vs_error *err = NULL;
  CHECK_EQ(vs_mkdir_p(p, 0755, &err), -1);
  CHECK_EQ(err->errnum, ENOTDIR);
  vs_error_freep(&err);
  CHECK_EQ(vs_mkdir_p(f, 0755, &err), -1);
  CHECK_EQ(err->errnum, ENOTDIR);
  CHECK_CONTAINS(err->msg, f);
  vs_error_freep(&err);
  CHECK_EQ(vs_rm_rf(dir, &err), 0);
}

TEST(rm_rf_does_not_follow_symlinks) {
  _cleanup_free_ char *outside = test_tmpdir();
  _cleanup_free_ char *precious = vs_asprintf("%s/precious", outside);
  test_write(precious, "do not delete");
  _cleanup_free_ char *dir = test_tmpdir();
  _cleanup_free_ char *sub = vs_asprintf("%s/sub", dir);
  _cleanup_error_ vs_error *err = NULL;
  CHECK_EQ(vs_mkdir_p(sub, 0755, &err), 0);
  _cleanup_free_ char *l1 = vs_asprintf("%s/sub/to-dir", dir);
  _cleanup_free_ char *l2 = vs_asprintf("%s/sub/to-file", dir);
  CHECK_EQ(symlink(outside, l1), 0);
  CHECK_EQ(symlink(precious, l2), 0);
  CHECK_EQ(vs_rm_rf(dir, &err), 0);
  CHECK(!test_exists(dir));
  CHECK(test_exists(precious));
  /* a symlink given as the top path is removed, its target kept */
  _cleanup_free_ char *dir2 = test_tmpdir();
  _cleanup_free_ char *l3 = vs_asprintf("%s/l", dir2);
  CHECK_EQ(symlink(outside, l3), 0);
  CHECK_EQ(vs_rm_rf(l3, &err), 0);
  CHECK(!test_exists(l3));
  CHECK(test_exists(precious));
  CHECK_EQ(vs_rm_rf(dir2, &err), 0);
  CHECK_EQ(vs_rm_rf(outside, &err), 0);
}

TEST(rm_rf_handles_read_only_dirs) {
  _cleanup_free_ char *dir = test_tmpdir();
  _cleanup_free_ char *ro = vs_asprintf("%s/ro/inner", dir);
  _cleanup_error_ vs_error *err = NULL;
  CHECK_EQ(vs_mkdir_p(ro, 0755, &err), 0);
  _cleanup_free_ char *f = vs_asprintf("%s/ro/inner/f", dir);
  test_write(f, "x");
  _cleanup_free_ char *ro_top = vs_asprintf("%s/ro", dir);
  CHECK_EQ(chmod(ro, 0), 0);
  CHECK_EQ(chmod(ro_top, 0500), 0);
  CHECK_EQ(vs_rm_rf(dir, &err), 0);
  CHECK(!test_exists(dir));
}

TEST(rm_rf_refuses_root_and_empty_path) {
  _cleanup_error_ vs_error *err = NULL;
  CHECK_EQ(vs_rm_rf("/", &err), -1);
  CHECK_EQ(err->errnum, EPERM);
  CHECK_CONTAINS(err->msg, "refusing to remove the root directory");
  CHECK_EQ(vs_rm_rf("/usr/..", &err), -1);
  CHECK_EQ(err->errnum, EPERM);
  CHECK_EQ(vs_rm_rf("", &err), -1);
  CHECK_EQ(err->errnum, EINVAL);
}

TEST(rm_rf_missing_is_ok_and_file_is_removed) {
  _cleanup_error_ vs_error *err = NULL;
  CHECK_EQ(vs_rm_rf("/nonexistent/vessel/x", &err), 0);
  CHECK(err == NULL);
  _cleanup_free_ char *dir = test_tmpdir();
  _cleanup_free_ char *f = vs_asprintf("%s/f", dir);
  test_write(f, "x");
  CHECK_EQ(vs_rm_rf(f, &err), 0);
  CHECK(!test_exists(f));
  CHECK_EQ(vs_rm_rf(dir, &err), 0);
}

TEST(write_all_reports_errors) {
  _cleanup_error_ vs_error *err = NULL;
  int p[2];
  CHECK_EQ(pipe(p), 0);
  CHECK_EQ(vs_write_all(p[1], "abc", 3, &err), 0);
  char b[4] = {0};
  CHECK_EQ(read(p[0], b, 3), 3);
  CHECK_STREQ(b, "abc");
  close(p[0]);
  close(p[1]);
  CHECK_EQ(vs_write_all(p[1], "abc", 3, &err), -1);
  CHECK_EQ(err->errnum, EBADF);
}

TEST(read_file_refuses_fifo_without_blocking) {
  _cleanup_free_ char *dir = test_tmpdir();
  _cleanup_free_ char *p = vs_asprintf("%s/fifo", dir);
  CHECK_EQ(mkfifo(p, 0600), 0);
  _cleanup_free_ char *buf = NULL;
  _cleanup_error_ vs_error *err = NULL;
  CHECK_EQ(vs_read_file(p, 100, &buf, NULL, &err), -1);
  CHECK_CONTAINS(err->msg, "not a regular file");
  vs_error_freep(&err);
  CHECK_EQ(vs_rm_rf(dir, &err), 0);
}

/* Runs in a child in its own mount namespace: 0 = passed, 1 = failed, 2 = could not set up. */
static int rm_rf_mount_child(const char *dir) {
  if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
    return 2;
  _cleanup_free_ char *mnt = vs_asprintf("%s/rootfs/proc-like", dir);
  vs_error *err = NULL;
  if (vs_mkdir_p(mnt, 0755, &err) < 0 || mount("tmpfs", mnt, "tmpfs", 0, NULL) < 0)
    return 2;
  _cleanup_free_ char *f = vs_asprintf("%s/precious", mnt);
  test_write(f, "x");
  int r = vs_rm_rf(dir, &err);
  bool ok = r == -1 && err->errnum == EBUSY && strstr(err->msg, "proc-like") && test_exists(f);
  vs_error_free(err);
  umount2(mnt, MNT_DETACH);
  return ok ? 0 : 1;
}

TEST(rm_rf_refuses_to_enter_mount_points) {
  _cleanup_free_ char *dir = test_tmpdir();
  pid_t pid = fork();
  CHECK(pid >= 0);
  if (pid == 0)
    _exit(rm_rf_mount_child(dir));
  int status;
  CHECK_EQ(waitpid(pid, &status, 0), pid);
  CHECK(WIFEXITED(status));
  _cleanup_error_ vs_error *err = NULL;
  CHECK_EQ(vs_rm_rf(dir, &err), 0); /* the namespace is gone, so is the mount: removable */
  CHECK(!test_exists(dir));
  if (WEXITSTATUS(status) == 2)
    SKIP("no privilege to create a mount namespace and mount tmpfs");
  CHECK_EQ(WEXITSTATUS(status), 0);
}

int main(void) { return tap_run(); }
