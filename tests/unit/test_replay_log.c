/* Unit tests of the record/replay log (replay_log.c): records written come back as written
 * (negative deltas, large data records split over chunks), and a log cut anywhere, with any byte
 * altered, from a newer format or with data after its end is refused with a message naming
 * where. */
#include <string.h>

#include "tap.h"
#include "testutil.h"
#include "vm/replay.h"

static const uint8_t start_digest[RR_DIGEST_LEN] = {9, 8, 7};

static char *write_log(const rr_event *evs, size_t n, size_t *len) {
  char *dir = test_tmpdir();
  char *path = vs_asprintf("%s/log", dir);
  rr_log_writer w;
  vs_error *err = NULL;
  if (rr_log_create(&w, path, 1, 1234567, start_digest, &err) < 0)
    abort();
  for (size_t i = 0; i < n; i++)
    rr_log_put(&w, &evs[i]);
  if (rr_log_close(&w, &err) < 0)
    abort();
  char *data = NULL;
  if (vs_read_file(path, 1u << 30, &data, len, &err) < 0)
    abort();
  vs_rm_rf(dir, NULL);
  free(path);
  free(dir);
  return data;
}

static uint8_t big[RR_DATA_MAX];
static uint8_t frame[RR_FRAME_MAX];
static const uint8_t digest[RR_DIGEST_LEN] = {1, 2, 3};

/* time going backwards (a guest that set mtime), a count that fell (a guest that wrote
 * minstret), and enough rng data for several chunks */
static size_t sample(rr_event *evs) {
  size_t n = 0;
  evs[n++] = (rr_event){.kind = RR_TIME, .icount = 0, .value = 1000};
  evs[n++] = (rr_event){.kind = RR_IRQ, .icount = 500, .value = 5};
  evs[n++] =
      (rr_event){.kind = RR_CONSOLE, .icount = 900, .data = (const uint8_t *)"ls\n", .len = 3};
  evs[n++] = (rr_event){.kind = RR_TIME, .icount = 800, .value = 10};
  for (int i = 0; i < 3; i++)
    evs[n++] =
        (rr_event){.kind = RR_RNG, .icount = 1000u + (unsigned)i, .data = big, .len = sizeof(big)};
  evs[n++] =
      (rr_event){.kind = RR_NET, .icount = 2000, .nic = 3, .data = frame, .len = sizeof(frame)};
  evs[n++] = (rr_event){.kind = RR_NET,
                        .icount = 2000,
                        .nic = 0,
                        .flags = RR_NET_BURST_END,
                        .data = frame,
                        .len = 60};
  evs[n++] = (rr_event){.kind = RR_SNAPSHOT,
                        .icount = 2000,
                        .value = UINT64_MAX - 5, /* absolute, not a delta */
                        .data = digest,
                        .len = RR_DIGEST_LEN,
                        .name = (const uint8_t *)"/var/lib/snap 1",
                        .name_len = 15};
  evs[n++] = (rr_event){.kind = RR_TIME, .icount = 2100, .value = 20};
  evs[n++] =
      (rr_event){.kind = RR_END, .icount = UINT64_MAX - 1, .data = digest, .len = RR_DIGEST_LEN};
  return n;
}

TEST(records_come_back_as_written) {
  for (size_t i = 0; i < sizeof(big); i++)
    big[i] = (uint8_t)(i * 7);
  for (size_t i = 0; i < sizeof(frame); i++)
    frame[i] = (uint8_t)(i * 13);
  rr_event evs[16];
  size_t n = sample(evs), len;
  char *log = write_log(evs, n, &len);
  rr_log_reader r;
  vs_error *err = NULL;
  CHECK(rr_log_open(&r, (const uint8_t *)log, len, &err) == 0);
  CHECK_EQ(r.realtime_base, 1234567);
  CHECK(memcmp(r.start_digest, start_digest, RR_DIGEST_LEN) == 0);
  for (size_t i = 0; i < n; i++) {
    rr_event ev;
    CHECK_EQ(rr_log_next(&r, &ev, &err), 1);
    CHECK_EQ(ev.kind, evs[i].kind);
    CHECK_U64(ev.icount, evs[i].icount);
    if (ev.kind == RR_TIME || ev.kind == RR_IRQ || ev.kind == RR_SNAPSHOT)
      CHECK_U64(ev.value, evs[i].value);
    if (ev.kind == RR_SNAPSHOT) {
      CHECK_EQ(ev.name_len, evs[i].name_len);
      CHECK(memcmp(ev.name, evs[i].name, ev.name_len) == 0);
    }
    if (ev.kind == RR_NET) {
      CHECK_EQ(ev.nic, evs[i].nic);
      CHECK_EQ(ev.flags, evs[i].flags);
    }
    if (ev.kind != RR_TIME && ev.kind != RR_IRQ) {
      CHECK_EQ(ev.len, evs[i].len);
      CHECK(memcmp(ev.data, evs[i].data, ev.len) == 0);
    }
  }
  rr_event ev;
  CHECK_EQ(rr_log_next(&r, &ev, &err), 0);
  CHECK(r.chunk_no >= 3);
  free(log);
}

TEST(every_cut_and_every_altered_byte_is_refused) {
  rr_event evs[16];
  size_t n = sample(evs), len;
  char *log = write_log(evs, n, &len);
  rr_log_reader r;
  /* cuts: at the header, in a chunk's header, in a payload */
  size_t cuts[] = {0, 10, RR_LOG_HEADER_LEN, RR_LOG_HEADER_LEN + 5, len / 2, len - 1};
  for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
    vs_error *err = NULL;
    CHECK(rr_log_open(&r, (const uint8_t *)log, cuts[i], &err) < 0);
    CHECK(err && err->msg[0]);
    vs_error_free(err);
  }
  vs_error *err = NULL;
  CHECK(rr_log_open(&r, (const uint8_t *)log, len / 2, &err) < 0);
  CHECK_CONTAINS(err->msg, "truncated");
  vs_error_free(err);
  /* one flipped bit anywhere */
  for (size_t at = 0; at < len; at += 997) {
    log[at] ^= 0x10;
    err = NULL;
    CHECK(rr_log_open(&r, (const uint8_t *)log, len, &err) < 0);
    vs_error_free(err);
    log[at] ^= 0x10;
  }
  log[len - 3] ^= 1;
  err = NULL;
  CHECK(rr_log_open(&r, (const uint8_t *)log, len, &err) < 0);
  CHECK_CONTAINS(err->msg, "checksum mismatch");
  vs_error_free(err);
  free(log);
}

TEST(a_log_must_end_with_its_end_record) {
  rr_event evs[16];
  size_t n = sample(evs), len;
  char *log = write_log(evs, n - 1, &len); /* no END: a recorder that died */
  rr_log_reader r;
  vs_error *err = NULL;
  CHECK(rr_log_open(&r, (const uint8_t *)log, len, &err) < 0);
  CHECK_CONTAINS(err->msg, "without its end record");
  vs_error_free(err);
  free(log);
}

TEST(magic_and_version_are_checked) {
  rr_event evs[16];
  size_t n = sample(evs), len;
  char *log = write_log(evs, n, &len);
  rr_log_reader r;
  vs_error *err = NULL;
  log[8] = RR_LOG_VERSION + 1; /* a newer format: refused by its version, whatever follows */
  CHECK(rr_log_open(&r, (const uint8_t *)log, len, &err) < 0);
  CHECK_CONTAINS(err->msg, "format version 4 at offset 8, this vessel-vmm reads version 3");
  vs_error_free(err);
  err = NULL;
  log[8] = RR_LOG_VERSION - 1; /* an older one: record again */
  CHECK(rr_log_open(&r, (const uint8_t *)log, len, &err) < 0);
  CHECK_CONTAINS(err->msg, "format version 2 at offset 8, older than this vessel-vmm reads "
                           "(version 3): record the run again");
  vs_error_free(err);
  err = NULL;
  log[8] = RR_LOG_VERSION;
  log[0] = 'X';
  CHECK(rr_log_open(&r, (const uint8_t *)log, len, &err) < 0);
  CHECK_CONTAINS(err->msg, "bad magic");
  vs_error_free(err);
  free(log);
}

/* The dump prints every record on its own line, the snapshot's name escaped so a line still
 * splits on spaces. */
TEST(dump_prints_one_line_per_record) {
  rr_event evs[16];
  size_t n = sample(evs), len;
  char *log = write_log(evs, n, &len);
  char *text = NULL;
  size_t text_len = 0;
  FILE *out = open_memstream(&text, &text_len);
  vs_error *err = NULL;
  CHECK_EQ(rr_log_dump((const uint8_t *)log, len, out, &err), 0);
  fclose(out);
  size_t lines = 0;
  for (size_t i = 0; i < text_len; i++)
    lines += text[i] == '\n';
  CHECK_EQ(lines, n + 1);
  CHECK_CONTAINS(text, "log version=3 harts=1 realtime_base_ns=1234567 start_sha256=090807");
  CHECK_CONTAINS(text, "\n1 time icount=0 mtime=1000\n2 irq icount=500 hart=0 cause=5\n");
  CHECK_CONTAINS(text, "3 console icount=900 len=3 sha256=");
  CHECK_CONTAINS(text, " text=ls\\x0a\n");
  CHECK_CONTAINS(text, "nic=3 burst_end=0 len=70000 sha256=");
  CHECK_CONTAINS(text, "snapshot icount=2000 mtime=18446744073709551610 state_sha256=010203");
  CHECK_CONTAINS(text, " name=/var/lib/snap\\x201\n");
  CHECK_CONTAINS(text, "end icount=18446744073709551614 digest=010203");
  free(text);
  log[len / 2] ^= 1; /* a damaged log prints nothing */
  text = NULL;
  out = open_memstream(&text, &text_len);
  CHECK(rr_log_dump((const uint8_t *)log, len, out, &err) < 0);
  fclose(out);
  CHECK_EQ(text_len, 0);
  vs_error_free(err);
  free(text);
  free(log);
}

int main(void) { return tap_run(); }
