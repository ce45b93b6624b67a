/* Raw disk backend and the generic disk layer (range checks, read-only, O_DIRECT bounce). */
#include "tap.h"
#include "vm/disk/disk.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>

static char tmpdir[64];

static const char *tmp_path(const char *name) {
  static char buf[8][128];
  static int n;
  if (!tmpdir[0]) {
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/vessel-test-raw-XXXXXX");
    if (!mkdtemp(tmpdir))
      abort();
  }
  char *p = buf[n++ % 8];
  snprintf(p, 128, "%s/%s", tmpdir, name);
  unlink(p);
  return p;
}

static void fill(uint8_t *b, size_t n, unsigned seed) {
  for (size_t i = 0; i < n; i++)
    b[i] = (uint8_t)(seed * 131 + i * 7 + (i >> 9));
}

static vm_disk *create_and_open(const char *name, uint64_t size, vm_disk_cache cache) {
  const char *p = tmp_path(name);
  vm_disk_create_opts co = {.format = VM_DISK_FORMAT_RAW, .size = size};
  vs_error *err = NULL;
  if (vm_disk_create(p, &co, &err) < 0)
    TAP_FAIL("create: %s", err->msg);
  vm_disk_opts o = {.format = VM_DISK_FORMAT_AUTO, .cache = cache};
  vm_disk *d = NULL;
  if (vm_disk_open(p, &o, &d, &err) < 0)
    TAP_FAIL("open: %s", err->msg);
  return d;
}

TEST(raw_write_read_roundtrip) {
  vm_disk *d = create_and_open("a.img", 1 << 20, VM_DISK_CACHE_WRITEBACK);
  CHECK_U64(vm_disk_size(d), 1 << 20);
  vm_disk_info info;
  vm_disk_get_info(d, &info);
  CHECK_STREQ(info.format, "raw");
  static uint8_t w[70000], r[70000];
  fill(w, sizeof(w), 1);
  vs_error *err = NULL;
  CHECK_EQ(vm_disk_write(d, w, 12345, sizeof(w), &err), 0);
  CHECK_EQ(vm_disk_flush(d, &err), 0);
  CHECK_EQ(vm_disk_read(d, r, 12345, sizeof(r), &err), 0);
  CHECK(memcmp(w, r, sizeof(w)) == 0);
  CHECK_EQ(vm_disk_close(d, &err), 0);
}

TEST(raw_rejects_out_of_range_requests) {
  vm_disk *d = create_and_open("b.img", 4096, VM_DISK_CACHE_WRITEBACK);
  uint8_t buf[512];
  vs_error *err = NULL;
  CHECK_EQ(vm_disk_read(d, buf, 4000, sizeof(buf), &err), -1);
  CHECK_CONTAINS(err->msg, "beyond the end of the disk");
  vs_error_free(err);
  err = NULL;
  CHECK_EQ(vm_disk_write(d, buf, UINT64_MAX - 10, sizeof(buf), &err), -1);
  CHECK_CONTAINS(err->msg, "beyond the end");
  vs_error_free(err);
  vm_disk_close(d, NULL);
}

TEST(raw_readonly_refuses_writes) {
  const char *p = tmp_path("ro.img");
  vm_disk_create_opts co = {.format = VM_DISK_FORMAT_RAW, .size = 8192};
  CHECK_EQ(vm_disk_create(p, &co, NULL), 0);
  vm_disk_opts o = {.format = VM_DISK_FORMAT_RAW, .readonly = true};
  vm_disk *d = NULL;
  vs_error *err = NULL;
  CHECK_EQ(vm_disk_open(p, &o, &d, &err), 0);
  CHECK(vm_disk_is_readonly(d));
  uint8_t buf[512] = {1};
  CHECK_EQ(vm_disk_write(d, buf, 0, sizeof(buf), &err), -1);
  CHECK_EQ(err->errnum, EROFS);
  vs_error_free(err);
  err = NULL;
  CHECK_EQ(vm_disk_write_zeroes(d, 0, 512, &err), -1);
  vs_error_free(err);
  vm_disk_close(d, NULL);
}

TEST(raw_write_zeroes_and_discard) {
  vm_disk *d = create_and_open("z.img", 1 << 20, VM_DISK_CACHE_WRITEBACK);
  static uint8_t w[65536], r[65536], zero[65536];
  fill(w, sizeof(w), 3);
  vs_error *err = NULL;
  CHECK_EQ(vm_disk_write(d, w, 0, sizeof(w), &err), 0);
  CHECK_EQ(vm_disk_write_zeroes(d, 1000, 20000, &err), 0);
  CHECK_EQ(vm_disk_read(d, r, 0, sizeof(r), &err), 0);
  CHECK(memcmp(r, w, 1000) == 0);
  CHECK(memcmp(r + 1000, zero, 20000) == 0);
  CHECK(memcmp(r + 21000, w + 21000, sizeof(w) - 21000) == 0);
  CHECK_EQ(vm_disk_discard(d, 0, 65536, &err), 0);
  vm_disk_close(d, NULL);
}

TEST(raw_cache_none_handles_unaligned_io) {
  const char *p = tmp_path("direct.img");
  vm_disk_create_opts co = {.format = VM_DISK_FORMAT_RAW, .size = 1 << 20};
  CHECK_EQ(vm_disk_create(p, &co, NULL), 0);
  vm_disk_opts o = {.format = VM_DISK_FORMAT_RAW, .cache = VM_DISK_CACHE_NONE};
  vm_disk *d = NULL;
  vs_error *err = NULL;
  if (vm_disk_open(p, &o, &d, &err) < 0) {
    /* A file system without O_DIRECT must say so clearly. */
    CHECK_CONTAINS(err->msg, "O_DIRECT");
    vs_error_free(err);
    return;
  }
  static uint8_t w[10001], r[10001];
  fill(w, sizeof(w), 9);
  CHECK_EQ(vm_disk_write(d, w + 1, 777, sizeof(w) - 1, &err), 0);
  CHECK_EQ(vm_disk_read(d, r + 1, 777, sizeof(r) - 1, &err), 0);
  CHECK(memcmp(w + 1, r + 1, sizeof(w) - 1) == 0);
  vm_disk_close(d, NULL);
  /* The data is in the file at the right place. */
  int fd = open(p, O_RDONLY);
  CHECK(fd >= 0);
  CHECK_EQ(pread(fd, r, sizeof(w) - 1, 777), (long)sizeof(w) - 1);
  CHECK(memcmp(w + 1, r, sizeof(w) - 1) == 0);
  close(fd);
}

TEST(create_refuses_existing_file) {
  const char *p = tmp_path("exists.img");
  vm_disk_create_opts co = {.format = VM_DISK_FORMAT_RAW, .size = 512};
  CHECK_EQ(vm_disk_create(p, &co, NULL), 0);
  vs_error *err = NULL;
  CHECK_EQ(vm_disk_create(p, &co, &err), -1);
  CHECK_CONTAINS(err->msg, "File exists");
  vs_error_free(err);
}

TEST(open_missing_file_names_it) {
  vm_disk *d = NULL;
  vs_error *err = NULL;
  CHECK_EQ(vm_disk_open("/nonexistent/disk.img", NULL, &d, &err), -1);
  CHECK_CONTAINS(err->msg, "/nonexistent/disk.img");
  vs_error_free(err);
}

TEST(disk_spec_parsing) {
  char *path = NULL, *serial = NULL;
  vm_disk_opts o;
  vs_error *err = NULL;
  CHECK_EQ(vm_disk_parse_spec("a,,b.img,format=qcow2,readonly=on,cache=none,serial=xyz", &path, &o,
                              &serial, &err),
           0);
  CHECK_STREQ(path, "a,b.img");
  CHECK_STREQ(serial, "xyz");
  CHECK_EQ(o.format, VM_DISK_FORMAT_QCOW2);
  CHECK(o.readonly);
  CHECK_EQ(o.cache, VM_DISK_CACHE_NONE);
  free(path);
  free(serial);
  CHECK_EQ(vm_disk_parse_spec("/x.raw", &path, &o, &serial, &err), 0);
  CHECK_STREQ(path, "/x.raw");
  CHECK(serial == NULL);
  CHECK_EQ(o.format, VM_DISK_FORMAT_AUTO);
  CHECK(!o.readonly);
  free(path);
  CHECK_EQ(vm_disk_parse_spec("x.img,format=vmdk", &path, &o, &serial, &err), -1);
  CHECK_CONTAINS(err->msg, "unknown disk format 'vmdk'");
  vs_error_free(err);
  err = NULL;
  CHECK_EQ(vm_disk_parse_spec("x.img,bogus=1", &path, &o, &serial, &err), -1);
  CHECK_CONTAINS(err->msg, "unknown disk option 'bogus'");
  vs_error_free(err);
  err = NULL;
  CHECK_EQ(vm_disk_parse_spec(",format=raw", &path, &o, &serial, &err), -1);
  CHECK_CONTAINS(err->msg, "no image path");
  vs_error_free(err);
}

static void cleanup(void) {
  if (tmpdir[0]) {
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
    if (system(cmd) != 0)
      fprintf(stderr, "cleanup failed\n");
  }
}

int main(void) {
  int r = tap_run();
  cleanup();
  return r;
}
