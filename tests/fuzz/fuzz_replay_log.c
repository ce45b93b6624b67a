/* libFuzzer harness: the record/replay log reader (src/vm/replay_log.c). The first byte chooses
 * the mode: odd, the rest is a log as found in a file; even, the harness first sets the header's
 * and every chunk's checksum right, so the fuzzer gets past them into the records. Any log must
 * be read to its end or refused with a message, never crash; a log rr_log_open accepted must
 * read to its end record without an error, and print as text (rr_log_dump) without one. */
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "vm/replay.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void put_le32(uint8_t *p, uint32_t v) {
  for (unsigned i = 0; i < 4; i++)
    p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_le32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void fix_checksums(uint8_t *log, size_t len) {
  if (len < RR_LOG_HEADER_LEN)
    return;
  put_le32(log + RR_LOG_HEADER_CRC_AT, (uint32_t)crc32(0, log, RR_LOG_HEADER_CRC_AT));
  uint32_t crc = 0;
  size_t at = RR_LOG_HEADER_LEN;
  while (len - at >= 8) {
    uint32_t n = get_le32(log + at);
    if (n > len - at - 8)
      return;
    crc = (uint32_t)crc32(crc, log + at, 4);
    crc = (uint32_t)crc32(crc, log + at + 8, n);
    put_le32(log + at + 4, crc);
    at += 8 + (size_t)n;
  }
}

static void check_error(vs_error *err) {
  if (!err || !err->msg || !*err->msg)
    __builtin_trap(); /* a refusal must say why */
  vs_error_free(err);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1)
    return 0;
  bool raw = data[0] & 1;
  size_t len = size - 1;
  uint8_t *log = malloc(len ? len : 1);
  memcpy(log, data + 1, len);
  if (!raw)
    fix_checksums(log, len);
  rr_log_reader r;
  vs_error *err = NULL;
  if (rr_log_open(&r, log, len, &err) < 0) {
    check_error(err);
    free(log);
    return 0;
  }
  rr_event ev;
  int rc;
  uint64_t records = 0;
  while ((rc = rr_log_next(&r, &ev, &err)) == 1) {
    records++;
    if ((ev.kind == RR_CONSOLE || ev.kind == RR_RNG) && (ev.len == 0 || ev.len > RR_DATA_MAX))
      __builtin_trap();
    if (ev.kind == RR_NET && (ev.len == 0 || ev.len > RR_FRAME_MAX || ev.nic >= RR_MAX_NICS))
      __builtin_trap();
    if (ev.kind == RR_SNAPSHOT &&
        (ev.len != RR_DIGEST_LEN || ev.name_len == 0 || ev.name_len > RR_NAME_MAX))
      __builtin_trap();
  }
  if (rc < 0 || !r.ended)
    __builtin_trap(); /* rr_log_open checked all of it */
  /* the dump reads the same records: it must print them all without an error */
  FILE *out = fopen("/dev/null", "w");
  if (out) {
    if (rr_log_dump(log, len, out, &err) < 0)
      __builtin_trap();
    fclose(out);
  }
  (void)records;
  free(log);
  return 0;
}
