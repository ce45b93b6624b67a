/* qcow2 backend: create, read/write across clusters, refcount growth, backing chains, zero
 * clusters, discard, and hostile images refused with clear messages. (Interoperability with
 * QEMU's own qemu-img is covered by tests/integration/test_qcow2.py.) */
#include "tap.h"
#include "vm/disk/disk.h"

#include <endian.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>

static char tmpdir[64];

static const char *tmp_path(const char *name) {
  static char buf[8][128];
  static int n;
  if (!tmpdir[0]) {
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/vessel-test-qcow2-XXXXXX");
    if (!mkdtemp(tmpdir))
      abort();
  }
  char *p = buf[n++ % 8];
  snprintf(p, 128, "%s/%s", tmpdir, name);
  unlink(p);
  return p;
}

static uint64_t rng_state = 88172645463325252ull;
static uint64_t rng(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return rng_state;
}

static void fill(uint8_t *b, size_t n) {
  for (size_t i = 0; i < n; i++)
    b[i] = (uint8_t)rng();
}

static void create(const char *p, uint64_t size, uint32_t cluster, const char *backing,
                   vm_disk_format bfmt) {
  vm_disk_create_opts co = {.format = VM_DISK_FORMAT_QCOW2,
                            .size = size,
                            .cluster_size = cluster,
                            .backing_file = backing,
                            .backing_format = bfmt};
  vs_error *err = NULL;
  if (vm_disk_create(p, &co, &err) < 0)
    TAP_FAIL("create %s: %s", p, err->msg);
}

static vm_disk *open_img(const char *p, bool readonly) {
  vm_disk_opts o = {.readonly = readonly};
  vm_disk *d = NULL;
  vs_error *err = NULL;
  if (vm_disk_open(p, &o, &d, &err) < 0)
    TAP_FAIL("open %s: %s", p, err->msg);
  return d;
}

/* Error message of a failing open (caller frees). */
static char *open_error(const char *p, bool readonly) {
  vm_disk_opts o = {.readonly = readonly};
  vm_disk *d = NULL;
  vs_error *err = NULL;
  if (vm_disk_open(p, &o, &d, &err) == 0) {
    vm_disk_close(d, NULL);
    return NULL;
  }
  char *m = vs_strdup(err->msg);
  vs_error_free(err);
  return m;
}

static void poke(const char *p, uint64_t off, const void *data, size_t len) {
  int fd = open(p, O_WRONLY);
  if (fd < 0 || pwrite(fd, data, len, (off_t)off) != (ssize_t)len)
    TAP_FAIL("poke %s", p);
  close(fd);
}
static void poke_be32(const char *p, uint64_t off, uint32_t v) {
  v = htobe32(v);
  poke(p, off, &v, 4);
}
static void poke_be64(const char *p, uint64_t off, uint64_t v) {
  v = htobe64(v);
  poke(p, off, &v, 8);
}

/* Random writes of random lengths, mirrored in `shadow`, then a full compare. */
static void random_writes(vm_disk *d, uint8_t *shadow, uint64_t size, int count, size_t maxlen) {
  uint8_t *buf = malloc(maxlen);
  vs_error *err = NULL;
  for (int i = 0; i < count; i++) {
    size_t len = 1 + rng() % maxlen;
    uint64_t off = rng() % (size - len + 1);
    fill(buf, len);
    if (vm_disk_write(d, buf, off, len, &err) < 0)
      TAP_FAIL("write %zu at %" PRIu64 ": %s", len, off, err->msg);
    memcpy(shadow + off, buf, len);
    if (i % 37 == 0 && vm_disk_flush(d, &err) < 0)
      TAP_FAIL("flush: %s", err->msg);
  }
  free(buf);
}

static void check_content(vm_disk *d, const uint8_t *shadow, uint64_t size) {
  uint8_t *r = malloc(size);
  vs_error *err = NULL;
  if (vm_disk_read(d, r, 0, size, &err) < 0)
    TAP_FAIL("read: %s", err->msg);
  for (uint64_t i = 0; i < size; i++)
    if (r[i] != shadow[i])
      TAP_FAIL("content differs at byte %" PRIu64 ": 0x%02x != 0x%02x", i, r[i], shadow[i]);
  free(r);
  tap.checks++;
}

TEST(qcow2_new_image_reads_zeros_and_has_info) {
  const char *p = tmp_path("new.qcow2");
  create(p, 100 << 20, 0, NULL, 0);
  vm_disk *d = open_img(p, false);
  CHECK_U64(vm_disk_size(d), 100 << 20);
  vm_disk_info info;
  vm_disk_get_info(d, &info);
  CHECK_STREQ(info.format, "qcow2");
  CHECK_EQ(info.qcow2_version, 3);
  CHECK_EQ(info.cluster_size, 65536);
  CHECK_EQ(info.refcount_bits, 16);
  static uint8_t r[200000], zero[200000];
  CHECK_EQ(vm_disk_read(d, r, (50 << 20) - 1000, sizeof(r), NULL), 0);
  CHECK(memcmp(r, zero, sizeof(r)) == 0);
  CHECK_EQ(vm_disk_close(d, NULL), 0);
}

TEST(qcow2_random_writes_survive_reopen) {
  const uint64_t size = 8 << 20;
  const char *p = tmp_path("rw.qcow2");
  create(p, size, 0, NULL, 0);
  uint8_t *shadow = calloc(1, size);
  vm_disk *d = open_img(p, false);
  random_writes(d, shadow, size, 300, 150000);
  check_content(d, shadow, size);
  CHECK_EQ(vm_disk_close(d, NULL), 0);
  d = open_img(p, true);
  check_content(d, shadow, size);
  vm_disk_close(d, NULL);
  free(shadow);
}

TEST(qcow2_small_clusters_grow_refcount_structures) {
  /* 512-byte clusters: one refcount block covers 128 KiB, the table one cluster 8 MiB, so
   * writing 12 MiB needs new refcount blocks and a bigger refcount table. */
  const uint64_t size = 12 << 20;
  const char *p = tmp_path("small.qcow2");
  create(p, size, 512, NULL, 0);
  uint8_t *shadow = calloc(1, size);
  vm_disk *d = open_img(p, false);
  uint8_t *buf = malloc(1 << 20);
  for (uint64_t off = 0; off < size; off += 1 << 20) {
    fill(buf, 1 << 20);
    CHECK_EQ(vm_disk_write(d, buf, off, 1 << 20, NULL), 0);
    memcpy(shadow + off, buf, 1 << 20);
  }
  random_writes(d, shadow, size, 200, 5000);
  check_content(d, shadow, size);
  CHECK_EQ(vm_disk_close(d, NULL), 0);
  d = open_img(p, false);
  check_content(d, shadow, size);
  vm_disk_close(d, NULL);
  free(buf);
  free(shadow);
}

TEST(qcow2_version2_and_refcount_widths) {
  const uint64_t size = 2 << 20;
  unsigned widths[] = {1, 8, 64};
  for (int v = 0; v < 4; v++) {
    const char *p = tmp_path("v.qcow2");
    vm_disk_create_opts co = {.format = VM_DISK_FORMAT_QCOW2, .size = size, .cluster_size = 4096};
    if (v == 3)
      co.qcow2_version = 2;
    else
      co.refcount_bits = widths[v];
    CHECK_EQ(vm_disk_create(p, &co, NULL), 0);
    uint8_t *shadow = calloc(1, size);
    vm_disk *d = open_img(p, false);
    random_writes(d, shadow, size, 100, 20000);
    vm_disk_close(d, NULL);
    d = open_img(p, true);
    check_content(d, shadow, size);
    vm_disk_info info;
    vm_disk_get_info(d, &info);
    CHECK_EQ(info.qcow2_version, v == 3 ? 2 : 3);
    vm_disk_close(d, NULL);
    free(shadow);
  }
}

TEST(qcow2_overlay_reads_base_and_leaves_it_unchanged) {
  const uint64_t size = 4 << 20;
  const char *base = tmp_path("base.raw");
  vm_disk_create_opts co = {.format = VM_DISK_FORMAT_RAW, .size = size};
  CHECK_EQ(vm_disk_create(base, &co, NULL), 0);
  uint8_t *shadow = malloc(size);
  fill(shadow, size);
  vm_disk *b = open_img(base, false);
  CHECK_EQ(vm_disk_write(b, shadow, 0, size, NULL), 0);
  vm_disk_close(b, NULL);

  const char *mid = tmp_path("mid.qcow2");
  create(mid, 0, 0, "base.raw", VM_DISK_FORMAT_RAW); /* size from the backing file */
  vm_disk *m = open_img(mid, false);
  CHECK_U64(vm_disk_size(m), size);
  random_writes(m, shadow, size, 20, 100000);
  vm_disk_close(m, NULL);

  const char *top = tmp_path("top.qcow2");
  create(top, size + (1 << 20), 4096, "mid.qcow2", VM_DISK_FORMAT_AUTO);
  uint8_t *big = calloc(1, size + (1 << 20));
  memcpy(big, shadow, size); /* beyond the backing file: zeros */
  vm_disk *t = open_img(top, false);
  vm_disk_info info;
  vm_disk_get_info(t, &info);
  CHECK_STREQ(info.backing_file, "mid.qcow2");
  CHECK_STREQ(info.backing_format, "qcow2");
  CHECK_EQ(info.backing_depth, 2);
  check_content(t, big, size + (1 << 20));
  uint8_t *before = malloc(size);
  memcpy(before, shadow, size);
  random_writes(t, big, size + (1 << 20), 100, 30000);
  /* zero clusters hide the backing file; discard of whole clusters too */
  CHECK_EQ(vm_disk_write_zeroes(t, 10000, 50000, NULL), 0);
  memset(big + 10000, 0, 50000);
  check_content(t, big, size + (1 << 20));
  vm_disk_close(t, NULL);
  t = open_img(top, true);
  check_content(t, big, size + (1 << 20));
  vm_disk_close(t, NULL);
  m = open_img(mid, true);
  check_content(m, before, size);
  vm_disk_close(m, NULL);
  free(before);
  free(big);
  free(shadow);
}

TEST(qcow2_discard_and_zeroes_without_backing) {
  const uint64_t size = 1 << 20;
  const char *p = tmp_path("dz.qcow2");
  create(p, size, 4096, NULL, 0);
  uint8_t *shadow = calloc(1, size);
  vm_disk *d = open_img(p, false);
  random_writes(d, shadow, size, 50, 50000);
  CHECK_EQ(vm_disk_discard(d, 8192, 16384, NULL), 0);
  memset(shadow + 8192, 0, 16384);
  CHECK_EQ(vm_disk_write_zeroes(d, 100, 9000, NULL), 0);
  memset(shadow + 100, 0, 9000);
  CHECK_EQ(vm_disk_flush(d, NULL), 0);
  check_content(d, shadow, size);
  /* freed clusters get reused: writing the same amount again does not grow the file much */
  vm_disk_close(d, NULL);
  d = open_img(p, false);
  check_content(d, shadow, size);
  vm_disk_close(d, NULL);
  free(shadow);
}

TEST(qcow2_backing_loop_is_refused) {
  const char *a = tmp_path("loop-a.qcow2");
  const char *b = tmp_path("loop-b.qcow2");
  create(b, 1 << 20, 0, NULL, 0);
  create(a, 1 << 20, 0, "loop-b.qcow2", VM_DISK_FORMAT_QCOW2);
  /* Make b point back to a: rewrite b's header with a backing name. */
  poke(b, 512, "loop-a.qcow2", 12);
  poke_be64(b, 8, 512);
  poke_be32(b, 16, 12);
  char *m = open_error(a, true);
  CHECK(m != NULL);
  CHECK_CONTAINS(m, "loop");
  free(m);
}

TEST(qcow2_hostile_headers_are_refused) {
  struct {
    uint64_t off;
    int width;
    uint64_t value;
    const char *msg;
  } cases[] = {
      {0, 4, 0x514649fa, "not a qcow2"},                /* magic (forced qcow2) */
      {4, 4, 7, "unsupported qcow2 version 7"},         /* version */
      {20, 4, 40, "cluster bits 40"},                   /* cluster_bits */
      {24, 8, UINT64_MAX, "exceeds what the L1 table"}, /* size */
      {32, 4, 1, "encrypted"},                          /* crypt_method */
      {36, 4, 0x40000000, "L1 table of"},               /* l1_size */
      {40, 8, 0x30001, "L1 table at"},                  /* l1 offset unaligned */
      {40, 8, 1ull << 40, "L1 table at"},               /* l1 past EOF */
      {48, 8, 0, "refcount table at"},                  /* rt offset */
      {56, 4, 100000, "refcount table of"},             /* rt clusters */
      {72, 8, 1ull << 20, "unsupported incompatible feature bit 20"},
      {72, 8, 1ull << 4, "extended L2"},
      {96, 4, 9, "refcount order 9"},
      {100, 4, 20, "bad header length"},
      {16, 4, 5000, "backing file name"},
      {196608, 8, 0x8000000000050000ull | (1ull << 45), "points past the end"}, /* L1[0] */
      {196608, 8, 0x8000000000000000ull | 65536, "other metadata"},             /* L1[0]=RT */
      {65536, 8, 1ull << 44, "past the end of the file"},                       /* RT[0] */
  };
  for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
    const char *p = tmp_path("bad.qcow2");
    create(p, 64 << 20, 0, NULL, 0);
    if (cases[i].off == 16)
      poke_be64(p, 8, 1000);
    if (cases[i].width == 4)
      poke_be32(p, cases[i].off, (uint32_t)cases[i].value);
    else
      poke_be64(p, cases[i].off, cases[i].value);
    vm_disk_opts o = {.format = VM_DISK_FORMAT_QCOW2, .readonly = true};
    vm_disk *d = NULL;
    vs_error *err = NULL;
    if (vm_disk_open(p, &o, &d, &err) == 0)
      TAP_FAIL("case %zu (%s) was accepted", i, cases[i].msg);
    if (!strstr(err->msg, cases[i].msg))
      TAP_FAIL("case %zu: \"%s\" does not contain \"%s\"", i, err->msg, cases[i].msg);
    tap.checks++;
    vs_error_free(err);
  }
}

TEST(qcow2_bad_l2_entries_fail_the_request_only) {
  const char *p = tmp_path("badl2.qcow2");
  create(p, 64 << 20, 0, NULL, 0);
  vm_disk *d = open_img(p, false);
  uint8_t buf[4096];
  memset(buf, 0xab, sizeof(buf));
  CHECK_EQ(vm_disk_write(d, buf, 0, sizeof(buf), NULL), 0);
  vm_disk_close(d, NULL);
  /* Layout of a fresh image: header, refcount table, refcount block, L1; the first write put
   * the L2 table at 0x40000 and the data at 0x50000. Point guest cluster 1 past the end of the
   * file, guest cluster 2 into the L1 table, guest cluster 3 at a bogus compressed cluster. */
  poke_be64(p, 0x40000 + 8, 0x8000000000000000ull | (1ull << 40));
  poke_be64(p, 0x40000 + 16, 0x8000000000000000ull | 0x30000);
  poke_be64(p, 0x40000 + 24, 0x4000000000000000ull | 0x50000 | (3ull << 54));
  poke_be64(p, 0x40000 + 32, 0x8000000000000000ull | 0x50000 | 8);
  d = open_img(p, false);
  vs_error *err = NULL;
  CHECK_EQ(vm_disk_read(d, buf, 65536, 512, &err), -1);
  CHECK_CONTAINS(err->msg, "past the end");
  vs_error_free(err);
  err = NULL;
  CHECK_EQ(vm_disk_write(d, buf, 2 * 65536, 512, &err), -1);
  CHECK_CONTAINS(err->msg, "metadata");
  vs_error_free(err);
  err = NULL;
  CHECK_EQ(vm_disk_read(d, buf, 3 * 65536, 512, &err), -1);
  CHECK_CONTAINS(err->msg, "compressed");
  vs_error_free(err);
  err = NULL;
  CHECK_EQ(vm_disk_read(d, buf, 4 * 65536, 512, &err), -1);
  CHECK_CONTAINS(err->msg, "corrupt L2 entry");
  vs_error_free(err);
  err = NULL;
  /* the rest of the disk still works */
  CHECK_EQ(vm_disk_read(d, buf, 0, 512, &err), 0);
  CHECK_EQ(buf[0], 0xab);
  CHECK_EQ(vm_disk_write(d, buf, 5 * 65536, 512, &err), 0);
  vm_disk_close(d, NULL);
}

TEST(qcow2_dirty_image_opens_readonly_only) {
  const char *p = tmp_path("dirty.qcow2");
  create(p, 1 << 20, 0, NULL, 0);
  poke_be64(p, 72, 1);
  char *m = open_error(p, false);
  CHECK(m != NULL);
  CHECK_CONTAINS(m, "dirty");
  free(m);
  CHECK(open_error(p, true) == NULL);
}

/* ------------------------------------------------------------- vectored requests */

/* Split [buf, buf+len) into iovecs of odd sizes (1 byte to a bit over 3 clusters); returns
 * the count. */
static int split_iov(uint8_t *buf, size_t len, struct iovec *iov, int max) {
  static const size_t sizes[] = {4096, 1, 511, 4096, 3, 65536 + 7, 1000, 4096, 200000, 4095};
  int n = 0;
  for (size_t done = 0; done < len; n++) {
    if (n == max)
      TAP_FAIL("split_iov: more than %d segments", max);
    size_t s = sizes[rng() % ARRAY_SIZE(sizes)];
    if (s > len - done)
      s = len - done;
    iov[n] = (struct iovec){buf + done, s};
    done += s;
  }
  return n;
}

static void writev_buf(vm_disk *d, uint8_t *buf, uint64_t off, size_t len) {
  struct iovec iov[1024];
  vs_error *err = NULL;
  if (vm_disk_writev(d, iov, split_iov(buf, len, iov, 1024), off, &err) < 0)
    TAP_FAIL("writev %zu at %" PRIu64 ": %s", len, off, err->msg);
}

/* readv of [off, off+len) into odd-sized segments must match `want` (and the one-buffer read). */
static void check_readv(vm_disk *d, const uint8_t *want, uint64_t off, size_t len) {
  uint8_t *r = malloc(len), *r1 = malloc(len);
  memset(r, 0xee, len); /* zero-filled parts must really be written */
  struct iovec iov[1024];
  vs_error *err = NULL;
  if (vm_disk_readv(d, iov, split_iov(r, len, iov, 1024), off, &err) < 0)
    TAP_FAIL("readv %zu at %" PRIu64 ": %s", len, off, err->msg);
  if (vm_disk_read(d, r1, off, len, &err) < 0)
    TAP_FAIL("read %zu at %" PRIu64 ": %s", len, off, err->msg);
  for (size_t i = 0; i < len; i++)
    if (r[i] != want[i] || r1[i] != want[i])
      TAP_FAIL("byte %" PRIu64 ": readv 0x%02x, read 0x%02x, expected 0x%02x", off + i, r[i], r1[i],
               want[i]);
  tap.checks++;
  free(r);
  free(r1);
}

static bool have_qemu_img(void) { return system("command -v qemu-img >/dev/null 2>&1") == 0; }

/* qemu-img check must find the image clean (exit 0: no leaks, no corruption). Without
 * qemu-img (Debian's qemu-utils) there is nothing to compare with: the check is left out. */
static void check_qemu_img(const char *p) {
  if (!have_qemu_img())
    return;
  char cmd[256];
  snprintf(cmd, sizeof(cmd), "qemu-img check -q %s", p);
  int r = system(cmd);
  if (r != 0)
    TAP_FAIL("%s: qemu-img check exit status %d", p, WIFEXITED(r) ? WEXITSTATUS(r) : -1);
  tap.checks++;
}

/* A vectored write of buf's first len bytes at off, mirrored into the shadow copy. */
static void writev_mirror(vm_disk *d, uint8_t *shadow, uint8_t *buf, uint64_t off, size_t len) {
  writev_buf(d, buf, off, len);
  memcpy(shadow + off, buf, len);
}

/* Close the image, have qemu-img check it, and read it back read-only. */
static void close_and_verify(vm_disk *d, const char *p, const uint8_t *shadow, uint64_t size) {
  CHECK_EQ(vm_disk_close(d, NULL), 0);
  check_qemu_img(p);
  d = open_img(p, true);
  check_readv(d, shadow, 0, size);
  vm_disk_close(d, NULL);
}

/* Random vectored writes of requests up to 1.5 MiB (most crossing clusters, some covering
 * whole ones), mirrored in a shadow copy and in a second image written one buffer at a time. */
static void vectored_random(uint32_t cluster) {
  const uint64_t size = 8 << 20;
  const char *pv = tmp_path("vec.qcow2"), *p1 = tmp_path("one.qcow2");
  create(pv, size, cluster, NULL, 0);
  create(p1, size, cluster, NULL, 0);
  uint8_t *shadow = calloc(1, size), *buf = malloc(3 << 19);
  vm_disk *dv = open_img(pv, false), *d1 = open_img(p1, false);
  for (int i = 0; i < 120; i++) {
    size_t len = 1 + rng() % (3 << 19);
    uint64_t off = rng() % (size - len + 1);
    if (i % 4 == 0) /* the guest's shape: 1 MiB aligned, 4 KiB pages */
      off &= ~(uint64_t)((1 << 20) - 1), len = 1 << 20;
    fill(buf, len);
    writev_buf(dv, buf, off, len);
    CHECK_EQ(vm_disk_write(d1, buf, off, len, NULL), 0);
    memcpy(shadow + off, buf, len);
    if (i % 17 == 0)
      CHECK_EQ(vm_disk_flush(dv, NULL), 0);
  }
  check_readv(dv, shadow, 0, size);
  check_readv(d1, shadow, 0, size);
  for (int i = 0; i < 50; i++) {
    size_t len = 1 + rng() % (3 << 19);
    uint64_t off = rng() % (size - len + 1);
    check_readv(dv, shadow + off, off, len);
  }
  CHECK_EQ(vm_disk_close(dv, NULL), 0);
  CHECK_EQ(vm_disk_close(d1, NULL), 0);
  check_qemu_img(pv);
  dv = open_img(pv, true);
  check_readv(dv, shadow, 0, size);
  vm_disk_close(dv, NULL);
  free(buf);
  free(shadow);
}

TEST(qcow2_readv_writev_odd_segments_match_one_buffer_path) { vectored_random(0); }

TEST(qcow2_readv_writev_small_clusters_cross_l2_tables) {
  /* 512-byte clusters: 64 entries per L2 table, so a request crosses many tables, fresh runs
   * are cut at table ends, and refcount blocks are added on the way. */
  vectored_random(512);
}

TEST(qcow2_readv_unallocated_without_backing_reads_zeros) {
  const uint64_t size = 4 << 20;
  const char *p = tmp_path("unalloc.qcow2");
  create(p, size, 4096, NULL, 0);
  vm_disk *d = open_img(p, false);
  uint8_t *want = calloc(1, size);
  check_readv(d, want, 0, size);
  uint8_t buf[10000];
  fill(buf, sizeof(buf));
  writev_mirror(d, want, buf, 3 * 4096 + 100,
                sizeof(buf)); /* allocated clusters among unallocated */
  check_readv(d, want, 0, 64 * 4096);
  check_readv(d, want + 4000, 4000, 20000);
  vm_disk_close(d, NULL);
  free(want);
}

/* A raw base of `size` random bytes (mirrored in `content`) and a qcow2 overlay over it. */
static void make_overlay(const char *base, const char *top, uint64_t bsize, uint64_t tsize,
                         uint32_t cluster, uint8_t *content) {
  vm_disk_create_opts co = {.format = VM_DISK_FORMAT_RAW, .size = bsize};
  vs_error *err = NULL;
  if (vm_disk_create(base, &co, &err) < 0)
    TAP_FAIL("create %s: %s", base, err->msg);
  fill(content, bsize);
  vm_disk *b = open_img(base, false);
  CHECK_EQ(vm_disk_write(b, content, 0, bsize, NULL), 0);
  vm_disk_close(b, NULL);
  create(top, tsize, cluster, strrchr(base, '/') + 1, VM_DISK_FORMAT_RAW);
}

TEST(qcow2_readv_unallocated_reads_backing_and_zeros_past_its_end) {
  const uint64_t bsize = (1 << 20) + 3000, tsize = 2 << 20;
  const char *base = tmp_path("vb.raw"), *top = tmp_path("vb-top.qcow2");
  uint8_t *want = calloc(1, tsize);
  make_overlay(base, top, bsize, tsize, 0, want);
  vm_disk *d = open_img(top, false);
  check_readv(d, want, 0, tsize);
  check_readv(d, want + bsize - 70000, bsize - 70000, 200000); /* across the backing's end */
  uint8_t buf[5000];
  fill(buf, sizeof(buf));
  writev_mirror(d, want, buf, 65536 + 1000, sizeof(buf));
  check_readv(d, want, 0, tsize);
  vm_disk_close(d, NULL);
  check_qemu_img(top);
  free(want);
}

TEST(qcow2_writev_partial_clusters_copy_backing_on_write) {
  const uint64_t size = 4 << 20;
  const char *base = tmp_path("cow.raw"), *top = tmp_path("cow-top.qcow2");
  uint8_t *shadow = malloc(size), *before = malloc(size);
  make_overlay(base, top, size, size, 0, shadow);
  memcpy(before, shadow, size);
  vm_disk *d = open_img(top, false);
  uint8_t *buf = malloc(1 << 20);
  /* within one cluster; from mid-cluster over whole ones to mid-cluster; tails of clusters */
  const uint64_t cases[][2] = {{100, 1000},
                               {65536 - 10, 20},
                               {3 * 65536 + 7, 300000},
                               {20 * 65536 + 1, 65535},
                               {30 * 65536, 65536 + 4096}};
  for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
    fill(buf, cases[i][1]);
    writev_mirror(d, shadow, buf, cases[i][0], cases[i][1]);
  }
  check_readv(d, shadow, 0, size);
  vm_disk_close(d, NULL);
  check_qemu_img(top);
  d = open_img(base, true);
  check_readv(d, before, 0, size);
  vm_disk_close(d, NULL);
  free(buf);
  free(before);
  free(shadow);
}

TEST(qcow2_writev_full_clusters_do_not_read_old_content) {
  /* The base's clusters 1 and 2 cannot be read (their L2 entries point past its end): a write
   * that covers overlay cluster 1 whole must not need them; one that covers cluster 2 in part
   * must fail, as its copy-on-write reads the base. */
  const char *base = tmp_path("unread.qcow2"), *top = tmp_path("unread-top.qcow2");
  create(base, 1 << 20, 0, NULL, 0);
  vm_disk *b = open_img(base, false);
  uint8_t *buf = malloc(2 * 65536);
  fill(buf, 4096);
  CHECK_EQ(vm_disk_write(b, buf, 0, 4096, NULL), 0);
  vm_disk_close(b, NULL);
  poke_be64(base, 0x40000 + 8, 0x8000000000000000ull | (1ull << 40));
  poke_be64(base, 0x40000 + 16, 0x8000000000000000ull | (1ull << 40));
  create(top, 1 << 20, 0, "unread.qcow2", VM_DISK_FORMAT_QCOW2);
  vm_disk *d = open_img(top, false);
  fill(buf, 2 * 65536);
  writev_buf(d, buf, 65536, 65536);
  check_readv(d, buf, 65536, 65536);
  vs_error *err = NULL;
  struct iovec iov[2] = {{buf, 100}, {buf + 100, 4000}};
  CHECK_EQ(vm_disk_writev(d, iov, 2, 2 * 65536 + 10, &err), -1);
  CHECK_CONTAINS(err->msg, "past the end");
  vs_error_free(err);
  vm_disk_close(d, NULL);
  check_qemu_img(top);
  free(buf);
}

TEST(qcow2_readv_writev_zero_clusters) {
  const uint64_t size = 2 << 20;
  const char *base = tmp_path("z.raw"), *top = tmp_path("z-top.qcow2");
  uint8_t *shadow = malloc(size);
  make_overlay(base, top, size, size, 0, shadow);
  vm_disk *d = open_img(top, false);
  uint8_t *buf = malloc(4 * 65536);
  fill(buf, 4 * 65536);
  writev_mirror(d, shadow, buf, 4 * 65536, 4 * 65536);
  /* zero clusters over the backing file and over allocated clusters */
  CHECK_EQ(vm_disk_write_zeroes(d, 2 * 65536, 4 * 65536, NULL), 0);
  memset(shadow + 2 * 65536, 0, 4 * 65536);
  CHECK_EQ(vm_disk_write_zeroes(d, 10 * 65536, 3 * 65536, NULL), 0);
  memset(shadow + 10 * 65536, 0, 3 * 65536);
  check_readv(d, shadow, 0, size);
  check_readv(d, shadow + 65536 + 5, 65536 + 5, 7 * 65536);
  /* a write over a zero cluster in part (copy of zeros) and whole */
  fill(buf, 3 * 65536);
  writev_mirror(d, shadow, buf, 10 * 65536 + 999, 2 * 65536);
  writev_mirror(d, shadow, buf, 2 * 65536, 65536);
  check_readv(d, shadow, 0, size);
  close_and_verify(d, top, shadow, size);
  free(buf);
  free(shadow);
}

TEST(qcow2_writev_spans_allocated_and_unallocated_clusters) {
  const uint64_t size = 2 << 20;
  const char *p = tmp_path("mixed.qcow2");
  create(p, size, 0, NULL, 0);
  uint8_t *shadow = calloc(1, size), *buf = malloc(size);
  vm_disk *d = open_img(p, false);
  fill(buf, 65536);
  writev_mirror(d, shadow, buf, 65536, 65536); /* clusters 1 and 3 allocated */
  fill(buf, 70000);
  writev_mirror(d, shadow, buf, 3 * 65536 + 100, 70000);
  fill(buf, 5 * 65536);
  writev_mirror(d, shadow, buf, 30000,
                5 * 65536); /* partial 0, whole 1 (in place), 2, 3 (in place), 4.. */
  check_readv(d, shadow, 0, size);
  fill(buf, size);
  writev_buf(d, buf, 0, size); /* everything, allocated or not */
  check_readv(d, buf, 0, size);
  vm_disk_close(d, NULL);
  check_qemu_img(p);
  free(buf);
  free(shadow);
}

/* qemu-img makes a compressed image of `raw` (zlib or zstd). */
static void qemu_compress(const char *raw, const char *out, const char *ctype) {
  char cmd[512];
  snprintf(cmd, sizeof(cmd), "qemu-img convert -c -f raw -O qcow2 -o compression_type=%s %s %s",
           ctype, raw, out);
  if (system(cmd) != 0)
    TAP_FAIL("%s failed", cmd);
}

TEST(qcow2_readv_writev_compressed_clusters) {
  if (!have_qemu_img())
    SKIP("qemu-img (qemu-utils) is needed to make compressed images");
  const uint64_t size = 2 << 20;
  const char *types[] = {"zlib", "zstd"};
  for (size_t t = 0; t < ARRAY_SIZE(types); t++) {
    const char *raw = tmp_path("c.raw"), *p = tmp_path("c.qcow2");
    vm_disk_create_opts co = {.format = VM_DISK_FORMAT_RAW, .size = size};
    CHECK_EQ(vm_disk_create(raw, &co, NULL), 0);
    uint8_t *shadow = calloc(1, size), *buf = malloc(3 * 65536);
    for (uint64_t off = 0; off < size; off += 65536) /* compressible: runs of one byte */
      memset(shadow + off, (int)(rng() & 0xff), 65536 - (rng() % 3) * 1000);
    vm_disk *d = open_img(raw, false);
    CHECK_EQ(vm_disk_write(d, shadow, 0, size, NULL), 0);
    vm_disk_close(d, NULL);
    qemu_compress(raw, p, types[t]);
    d = open_img(p, false);
    check_readv(d, shadow, 0, size);
    check_readv(d, shadow + 65536 - 300, 65536 - 300, 3 * 65536);
    fill(buf, 3 * 65536);
    writev_mirror(d, shadow, buf, 2 * 65536 + 5, 100);   /* in part: decompress and merge */
    writev_mirror(d, shadow, buf, 5 * 65536, 2 * 65536); /* whole clusters: replaced */
    check_readv(d, shadow, 0, size);
    close_and_verify(d, p, shadow, size);
    free(buf);
    free(shadow);
  }
}

TEST(qcow2_readv_bad_l2_entry_fails_the_request) {
  const char *p = tmp_path("badv.qcow2");
  create(p, 1 << 30, 0, NULL, 0);
  vm_disk *d = open_img(p, false);
  uint8_t *buf = malloc(4 * 65536);
  fill(buf, 4 * 65536);
  writev_buf(d, buf, 0, 4 * 65536);
  writev_buf(d, buf, 512 << 20, 4096); /* a second L2 table, at 0x90000 */
  vm_disk_close(d, NULL);
  /* guest clusters 0..3 are at 0x50000..0x8ffff: cluster 2 now points into the L1 table, and a
   * compressed entry for cluster 3 reaches from data into the second L2 table */
  poke_be64(p, 0x40000 + 16, 0x8000000000000000ull | 0x30000);
  poke_be64(p, 0x40000 + 24, 0x4000000000000000ull | (0x90000 - 512) | (3ull << 54));
  d = open_img(p, false);
  vs_error *err = NULL;
  struct iovec iov[3] = {{buf, 65536}, {buf + 65536, 65536 + 10}, {buf + 2 * 65536 + 10, 100}};
  CHECK_EQ(vm_disk_readv(d, iov, 3, 0, &err), -1);
  CHECK_CONTAINS(err->msg, "metadata");
  vs_error_free(err);
  err = NULL;
  CHECK_EQ(vm_disk_writev(d, iov, 3, 0, &err), -1);
  CHECK_CONTAINS(err->msg, "metadata");
  vs_error_free(err);
  err = NULL;
  /* a whole-cluster overwrite must not drop a reference the L2 table holds */
  iov[0].iov_len = 65536;
  CHECK_EQ(vm_disk_writev(d, iov, 1, 3 * 65536, &err), -1);
  CHECK_CONTAINS(err->msg, "reaches into image metadata");
  vs_error_free(err);
  err = NULL;
  CHECK_EQ(vm_disk_writev(d, iov, 1, 65536, &err), 0); /* the rest still works */
  vm_disk_close(d, NULL);
  free(buf);
}

/* ------------------------------------------------------------- lazy L2 tables */

/* qemu-img check of an image a process "crashed" on: leaked clusters are allowed (exit 3),
 * corruption (exit 2) or anything else is not. */
static void check_qemu_img_leaks_only(const char *p) {
  if (!have_qemu_img())
    return;
  char cmd[256];
  snprintf(cmd, sizeof(cmd), "qemu-img check -q %s >/dev/null 2>&1", p);
  int r = system(cmd);
  int code = WIFEXITED(r) ? WEXITSTATUS(r) : -1;
  if (code != 0 && code != 3)
    TAP_FAIL("%s: qemu-img check exit status %d (0 or 3 expected)", p, code);
  tap.checks++;
}

/* What a VMM crash leaves: the file as it is while the disk is still open, unflushed. */
static void copy_aside(const char *from, const char *to) {
  char cmd[256];
  snprintf(cmd, sizeof(cmd), "cp %s %s", from, to);
  if (system(cmd) != 0)
    TAP_FAIL("%s", cmd);
}

static void check_range(vm_disk *d, const uint8_t *want, uint64_t off, size_t len) {
  uint8_t *r = malloc(len);
  vs_error *err = NULL;
  if (vm_disk_read(d, r, off, len, &err) < 0)
    TAP_FAIL("read %zu at %" PRIu64 ": %s", len, off, err->msg);
  if (memcmp(r, want, len) != 0)
    TAP_FAIL("content differs in %zu bytes at %" PRIu64, len, off);
  free(r);
  tap.checks++;
}

TEST(qcow2_lazy_l2_unflushed_writes_are_read_back_and_survive_flush_close_reopen) {
  const uint64_t size = 16 << 20;
  const char *p = tmp_path("lazy.qcow2"), *crash = tmp_path("lazy-crash.qcow2");
  create(p, size, 0, NULL, 0);
  uint8_t *shadow = calloc(1, size), *buf = malloc(1 << 20);
  vm_disk *d = open_img(p, false);
  for (int i = 0; i < 40; i++) {
    size_t len = 1 + rng() % (1 << 20);
    uint64_t off = rng() % (size - len + 1);
    fill(buf, len);
    CHECK_EQ(vm_disk_write(d, buf, off, len, NULL), 0);
    memcpy(shadow + off, buf, len);
  }
  check_content(d, shadow, size); /* no flush yet: the entries are only in the cache */
  copy_aside(p, crash);
  check_qemu_img_leaks_only(crash);
  CHECK_EQ(vm_disk_flush(d, NULL), 0);
  check_content(d, shadow, size);
  CHECK_EQ(vm_disk_close(d, NULL), 0);
  check_qemu_img(p);
  d = open_img(p, true);
  check_content(d, shadow, size);
  vm_disk_close(d, NULL);
  free(buf);
  free(shadow);
}

TEST(qcow2_lazy_l2_crash_keeps_flushed_data_and_leaks_at_worst) {
  const uint64_t size = 8 << 20;
  const char *p = tmp_path("crash.qcow2"), *crash = tmp_path("crash-copy.qcow2");
  create(p, size, 0, NULL, 0);
  uint8_t *flushed = malloc(size), *buf = malloc(size);
  vm_disk *d = open_img(p, false);
  fill(flushed, size);
  CHECK_EQ(vm_disk_write(d, flushed, 0, size, NULL), 0);
  CHECK_EQ(vm_disk_flush(d, NULL), 0);
  /* After the flush: overwrites in place, discards and zeroes that replace clusters, and writes
   * that allocate (after a discard) - none of them flushed. */
  fill(buf, size);
  CHECK_EQ(vm_disk_write(d, buf, 0, 1 << 20, NULL), 0);
  CHECK_EQ(vm_disk_discard(d, 2 << 20, 2 << 20, NULL), 0);
  CHECK_EQ(vm_disk_write_zeroes(d, 5 << 20, 1 << 20, NULL), 0);
  CHECK_EQ(vm_disk_write(d, buf, 3 << 20, 65536 * 3, NULL), 0);
  copy_aside(p, crash);
  check_qemu_img_leaks_only(crash);
  /* What was flushed and not touched since is in the copy. */
  vm_disk *c = open_img(crash, true);
  check_range(c, flushed + (1 << 20), 1 << 20, 1 << 20);
  check_range(c, flushed + (4 << 20), 4 << 20, 1 << 20);
  check_range(c, flushed + (6 << 20), 6 << 20, 2 << 20);
  vm_disk_close(c, NULL);
  CHECK_EQ(vm_disk_close(d, NULL), 0);
  check_qemu_img(p);
  memset(flushed + (2 << 20), 0, 2 << 20);
  memset(flushed + (5 << 20), 0, 1 << 20);
  memcpy(flushed, buf, 1 << 20);
  memcpy(flushed + (3 << 20), buf, 65536 * 3);
  d = open_img(p, true);
  check_content(d, flushed, size);
  vm_disk_close(d, NULL);
  free(buf);
  free(flushed);
}

/* 512-byte clusters on a 1 GiB disk: 32768 L2 tables of 64 entries and a cache of 16384
 * slots, so guest offsets 512 MiB apart share a slot and every other write evicts a dirty
 * table. */
TEST(qcow2_lazy_l2_evicted_dirty_tables_are_written_back) {
  const uint64_t size = 1ull << 30, half = size / 2;
  enum { N = 200, LEN = 1500 };
  const char *p = tmp_path("evict.qcow2"), *crash = tmp_path("evict-crash.qcow2");
  create(p, size, 512, NULL, 0);
  uint8_t *data = malloc((size_t)N * LEN);
  uint64_t off[N];
  fill(data, (size_t)N * LEN);
  vm_disk *d = open_img(p, false);
  for (int i = 0; i < N; i++) {
    off[i] = (i % 2 ? half : 0) + (uint64_t)(i / 2) * 40000 + (uint64_t)(i % 7) * 100;
    CHECK_EQ(vm_disk_write(d, data + (size_t)i * LEN, off[i], LEN, NULL), 0);
    if (i == N / 2) {
      copy_aside(p, crash);
      check_qemu_img_leaks_only(crash);
    }
  }
  for (int i = 0; i < N; i++)
    check_range(d, data + (size_t)i * LEN, off[i], LEN);
  CHECK_EQ(vm_disk_close(d, NULL), 0);
  check_qemu_img(p);
  d = open_img(p, true);
  for (int i = 0; i < N; i++)
    check_range(d, data + (size_t)i * LEN, off[i], LEN);
  vm_disk_close(d, NULL);
  free(data);
}

/* Discard and zeroes change cached L2 tables too; over a backing file (zero flag) and without. */
TEST(qcow2_lazy_l2_discard_and_zeroes_after_reopen) {
  const uint64_t size = 4 << 20;
  const char *base = tmp_path("lz-base.qcow2"), *top = tmp_path("lz-top.qcow2");
  create(base, size, 0, NULL, 0);
  uint8_t *want = malloc(size);
  fill(want, size);
  vm_disk *b = open_img(base, false);
  CHECK_EQ(vm_disk_write(b, want, 0, size, NULL), 0);
  CHECK_EQ(vm_disk_close(b, NULL), 0);
  create(top, size, 0, base, VM_DISK_FORMAT_QCOW2);
  vm_disk *d = open_img(top, false);
  uint8_t *buf = malloc(1 << 20);
  fill(buf, 1 << 20);
  CHECK_EQ(vm_disk_write(d, buf, 100000, 1 << 20, NULL), 0);
  memcpy(want + 100000, buf, 1 << 20);
  CHECK_EQ(vm_disk_write_zeroes(d, 300000, 400000, NULL), 0);
  memset(want + 300000, 0, 400000);
  CHECK_EQ(vm_disk_flush(d, NULL), 0);
  CHECK_EQ(vm_disk_discard(d, 2 << 20, 1 << 20, NULL), 0); /* v3: zero flag over a backing */
  memset(want + (2 << 20), 0, 1 << 20);
  CHECK_EQ(vm_disk_write_zeroes(d, 0, 65536, NULL), 0);
  memset(want, 0, 65536);
  check_content(d, want, size);
  CHECK_EQ(vm_disk_close(d, NULL), 0);
  check_qemu_img(top);
  d = open_img(top, true);
  check_content(d, want, size);
  vm_disk_close(d, NULL);
  free(buf);
  free(want);
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
