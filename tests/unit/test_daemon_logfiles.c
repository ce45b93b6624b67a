/* The json-file log's rotation as its followers (`logs -f`, attach) see it: a reader at the end
 * of one file moves to the next only after everything the monitor wrote to its own. */
#include "daemon/internal.h"
#include "tap.h"

#include <fcntl.h>
#include <string.h>
#include <unistd.h>

typedef struct {
  char dir[64];
  char *path;
} log_dir;

static void log_dir_make(log_dir *l) {
  strcpy(l->dir, "/tmp/vessel-logfiles-XXXXXX");
  CHECK(mkdtemp(l->dir) != NULL);
  l->path = vs_asprintf("%s/ctr-json.log", l->dir);
}

static void log_dir_remove(log_dir *l) {
  CHECK_EQ(vs_rm_rf(l->dir, NULL), 0);
  free(l->path);
}

/* What the monitor does: one write per entry, O_APPEND. */
static void append(const char *path, const char *text) {
  int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
  CHECK(fd >= 0);
  CHECK_EQ(write(fd, text, strlen(text)), (ssize_t)strlen(text));
  close(fd);
}

/* Everything fd has from its position on, as a string (the caller frees). */
static char *read_rest(int fd) {
  static char buf[4096];
  ssize_t n = read(fd, buf, sizeof(buf) - 1);
  buf[n > 0 ? n : 0] = 0;
  return vs_strdup(buf);
}

static void check_rest(int fd, const char *want) {
  char *got = read_rest(fd);
  CHECK_STREQ(got, want);
  free(got);
}

/* The race a follower met under load: it read its file to the end, the monitor wrote one more
 * entry there and rotated, and only then did the follower look for the next file. That entry
 * must be read before the move (it was lost: `docker run` printed a log file's lines short). */
static void check_late_entry_before_next(bool compress) {
  log_dir l;
  log_dir_make(&l);
  append(l.path, "{\"log\":\"one\"}\n");
  int fd = open(l.path, O_RDONLY | O_CLOEXEC);
  CHECK(fd >= 0);
  check_rest(fd, "{\"log\":\"one\"}\n");
  CHECK_EQ(vd_log_open_next(l.path, fd), -1); /* still the newest */
  append(l.path, "{\"log\":\"two\"}\n");
  CHECK_EQ(vd_log_rotate(l.path, 5, compress), 0);
  append(l.path, "{\"log\":\"three\"}\n");
  CHECK_EQ(vd_log_open_next(l.path, fd), VD_LOG_UNREAD);
  check_rest(fd, "{\"log\":\"two\"}\n");
  int next = vd_log_open_next(l.path, fd);
  CHECK(next >= 0);
  close(fd);
  check_rest(next, "{\"log\":\"three\"}\n");
  CHECK_EQ(vd_log_open_next(l.path, next), -1);
  close(next);
  log_dir_remove(&l);
}

TEST(log_follower_reads_a_late_entry_before_the_next_file) { check_late_entry_before_next(false); }

TEST(log_follower_reads_a_late_entry_before_the_next_file_compressed) {
  check_late_entry_before_next(true);
}

/* Several rotations while the follower slept: each file in order, none skipped. */
TEST(log_follower_walks_every_rotated_file_in_order) {
  log_dir l;
  log_dir_make(&l);
  append(l.path, "a\n");
  int fd = open(l.path, O_RDONLY | O_CLOEXEC);
  CHECK(fd >= 0);
  const char *later[] = {"b\n", "c\n", "d\n"};
  for (size_t i = 0; i < 3; i++) {
    CHECK_EQ(vd_log_rotate(l.path, 10, false), 0);
    append(l.path, later[i]);
  }
  const char *want[] = {"a\n", "b\n", "c\n", "d\n"};
  for (size_t i = 0; i < 4; i++) {
    check_rest(fd, want[i]);
    int next = vd_log_open_next(l.path, fd);
    if (i == 3) {
      CHECK_EQ(next, -1);
      break;
    }
    CHECK(next >= 0);
    close(fd);
    fd = next;
  }
  close(fd);
  log_dir_remove(&l);
}

int main(void) { return tap_run(); }
