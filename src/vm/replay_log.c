/* The record/replay log: its writer and its checking reader (format in replay.h). */
#include "vm/replay.h"
#include "vm/vmstate.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

const char *rr_kind_name(rr_kind k) {
  switch (k) {
  case RR_TIME:
    return "time";
  case RR_IRQ:
    return "interrupt";
  case RR_CONSOLE:
    return "console input";
  case RR_RNG:
    return "rng bytes";
  case RR_END:
    return "end";
  case RR_RUN:
    return "slice";
  case RR_BEGIN:
    return "hart start";
  case RR_NET:
    return "network frame";
  case RR_SNAPSHOT:
    return "snapshot";
  }
  return "unknown";
}

static uint32_t crc_of(uint32_t crc, const uint8_t *p, size_t n) {
  return (uint32_t)crc32(crc, p, (uInt)n);
}

/* a small negative delta (a guest that set mtime back) stays small */
static uint64_t zigzag(uint64_t delta) { return (delta << 1) ^ (0 - (delta >> 63)); }

static uint64_t unzigzag(uint64_t z) { return (z >> 1) ^ (0 - (z & 1)); }

/* ------------------------------------------------------------------ writer */

static void write_all(rr_log_writer *w, const uint8_t *p, size_t n) {
  while (n && !w->error) {
    ssize_t k = write(w->fd, p, n);
    if (k < 0 && errno == EINTR)
      continue;
    if (k <= 0) {
      w->error = k < 0 ? errno : EIO;
      return;
    }
    p += k;
    n -= (size_t)k;
    w->bytes_written += (uint64_t)k;
  }
}

static void buf_reserve(rr_log_writer *w, size_t more) {
  if (w->len + more <= w->cap)
    return;
  size_t cap = w->cap ? w->cap : (size_t)RR_CHUNK_TARGET * 2;
  while (cap < w->len + more)
    cap *= 2;
  w->buf = vs_realloc(w->buf, cap);
  w->cap = cap;
}

static void put_byte(rr_log_writer *w, uint8_t b) {
  buf_reserve(w, 1);
  w->buf[w->len++] = b;
}

static void put_varint(rr_log_writer *w, uint64_t v) {
  do {
    uint8_t b = v & 0x7f;
    v >>= 7;
    put_byte(w, (uint8_t)(b | (v ? 0x80 : 0)));
  } while (v);
}

static void put_bytes(rr_log_writer *w, const uint8_t *p, size_t n) {
  buf_reserve(w, n);
  memcpy(w->buf + w->len, p, n);
  w->len += n;
}

static void flush_chunk(rr_log_writer *w) {
  if (!w->len)
    return;
  uint8_t head[8];
  vmstate_store_le(head, w->len, 4);
  w->crc = crc_of(w->crc, head, 4);
  w->crc = crc_of(w->crc, w->buf, w->len);
  vmstate_store_le(head + 4, w->crc, 4);
  write_all(w, head, sizeof(head));
  write_all(w, w->buf, w->len);
  w->len = 0;
}

int rr_log_create(rr_log_writer *w, const char *path, uint32_t harts, int64_t realtime_base,
                  const uint8_t start_digest[RR_DIGEST_LEN], vs_error **err) {
  memset(w, 0, sizeof(*w));
  w->fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (w->fd < 0)
    return vs_error_set(err, errno, "create %s", path);
  uint8_t head[RR_LOG_HEADER_LEN];
  memcpy(head, RR_LOG_MAGIC, sizeof(RR_LOG_MAGIC) - 1); /* no NUL: 8 bytes */
  vmstate_store_le(head + 8, RR_LOG_VERSION, 4);
  vmstate_store_le(head + 12, harts, 4);
  vmstate_store_le(head + 16, (uint64_t)realtime_base, 8);
  memcpy(head + 24, start_digest, RR_DIGEST_LEN);
  vmstate_store_le(head + RR_LOG_HEADER_CRC_AT, crc_of(0, head, RR_LOG_HEADER_CRC_AT), 4);
  write_all(w, head, sizeof(head));
  return 0;
}

void rr_log_put(rr_log_writer *w, const rr_event *ev) {
  put_byte(w, (uint8_t)ev->kind);
  put_varint(w, zigzag(ev->icount - w->last_icount));
  w->last_icount = ev->icount;
  switch (ev->kind) {
  case RR_TIME:
    put_varint(w, zigzag(ev->value - w->last_mtime));
    w->last_mtime = ev->value;
    break;
  case RR_IRQ:
    put_byte(w, (uint8_t)ev->hart);
    put_byte(w, (uint8_t)ev->value);
    break;
  case RR_RUN:
  case RR_BEGIN:
    put_byte(w, (uint8_t)ev->hart);
    break;
  case RR_NET:
    put_byte(w, (uint8_t)ev->nic);
    put_byte(w, (uint8_t)ev->flags);
    put_varint(w, ev->len);
    put_bytes(w, ev->data, ev->len);
    break;
  case RR_CONSOLE:
  case RR_RNG:
    put_varint(w, ev->len);
    put_bytes(w, ev->data, ev->len);
    break;
  case RR_END:
    put_bytes(w, ev->data, RR_DIGEST_LEN);
    break;
  case RR_SNAPSHOT:
    put_varint(w, ev->value);
    put_bytes(w, ev->data, RR_DIGEST_LEN);
    put_varint(w, ev->name_len);
    put_bytes(w, ev->name, ev->name_len);
    break;
  }
  w->records++;
  if (w->len >= RR_CHUNK_TARGET)
    flush_chunk(w);
}

int rr_log_close(rr_log_writer *w, vs_error **err) {
  flush_chunk(w);
  if (!w->error && fsync(w->fd) < 0)
    w->error = errno;
  int rc = 0;
  if (close(w->fd) < 0 && !w->error)
    w->error = errno;
  if (w->error)
    rc = vs_error_set(err, w->error, "write the record/replay log");
  free(w->buf);
  w->buf = NULL;
  w->fd = -1;
  return rc;
}

/* ------------------------------------------------------------------ reader */

/* Move to the next chunk, checking its length and running checksum. */
static int next_chunk(rr_log_reader *r, vs_error **err) {
  size_t at = r->chunk_end;
  if (at == r->len)
    return vs_error_set(err, 0,
                        "record/replay log: ends at offset %zu after %u chunks without its end "
                        "record (truncated)",
                        at, r->chunk_no);
  if (r->len - at < 8)
    return vs_error_set(err, 0, "record/replay log: chunk %u at offset %zu: truncated header",
                        r->chunk_no + 1, at);
  uint32_t n = (uint32_t)vmstate_load_le(r->data + at, 4);
  if (n == 0 || n > RR_CHUNK_MAX)
    return vs_error_set(err, 0,
                        "record/replay log: chunk %u at offset %zu: length %u out of range "
                        "(1 to %u)",
                        r->chunk_no + 1, at, n, RR_CHUNK_MAX);
  if (r->len - at - 8 < n)
    return vs_error_set(err, 0,
                        "record/replay log: chunk %u at offset %zu: truncated (%u bytes of "
                        "payload, %zu left)",
                        r->chunk_no + 1, at, n, r->len - at - 8);
  uint32_t crc = crc_of(r->crc, r->data + at, 4);
  crc = crc_of(crc, r->data + at + 8, n);
  if (crc != (uint32_t)vmstate_load_le(r->data + at + 4, 4))
    return vs_error_set(err, 0,
                        "record/replay log: chunk %u at offset %zu: checksum mismatch (the log "
                        "was altered or damaged)",
                        r->chunk_no + 1, at);
  r->crc = crc;
  r->chunk_no++;
  r->chunk = at + 8;
  r->pos = r->chunk;
  r->chunk_end = at + 8 + n;
  return 0;
}

static int bad_record(rr_log_reader *r, const char *what, vs_error **err) {
  return vs_error_set(err, 0, "record/replay log: chunk %u, record %llu at offset %zu: %s",
                      r->chunk_no, (unsigned long long)r->records + 1, r->pos, what);
}

static bool get_varint(rr_log_reader *r, size_t *p, uint64_t *out) {
  uint64_t v = 0;
  for (unsigned shift = 0; shift < 64; shift += 7) {
    if (*p >= r->chunk_end)
      return false;
    uint8_t b = r->data[(*p)++];
    v |= (uint64_t)(b & 0x7f) << shift;
    if (!(b & 0x80)) {
      *out = v;
      return true;
    }
  }
  return false;
}

/* A varint length (1 to max) and that many bytes, inside the chunk. */
static bool get_data(rr_log_reader *r, size_t *p, uint64_t max, rr_event *ev) {
  uint64_t n;
  if (!get_varint(r, p, &n) || n == 0 || n > max || n > r->chunk_end - *p)
    return false;
  ev->data = r->data + *p;
  ev->len = (size_t)n;
  *p += n;
  return true;
}

int rr_log_next(rr_log_reader *r, rr_event *ev, vs_error **err) {
  if (r->ended)
    return 0;
  if (r->pos == r->chunk_end && next_chunk(r, err) < 0)
    return -1;
  size_t p = r->pos;
  memset(ev, 0, sizeof(*ev));
  uint8_t kind = r->data[p++];
  uint64_t delta;
  if (!get_varint(r, &p, &delta))
    return bad_record(r, "instruction count cut short", err);
  ev->kind = (rr_kind)kind;
  ev->icount = r->last_icount + unzigzag(delta);
  switch (kind) {
  case RR_TIME:
    if (!get_varint(r, &p, &delta))
      return bad_record(r, "time value cut short", err);
    ev->value = r->last_mtime + unzigzag(delta);
    break;
  case RR_IRQ:
    if (r->chunk_end - p < 2)
      return bad_record(r, "interrupt cut short", err);
    ev->hart = r->data[p++];
    ev->value = r->data[p++];
    if (ev->hart >= r->harts || ev->value >= 64)
      return bad_record(r, "interrupt's hart or cause out of range", err);
    break;
  case RR_RUN:
  case RR_BEGIN:
    if (p >= r->chunk_end)
      return bad_record(r, "hart cut short", err);
    ev->hart = r->data[p++];
    if (ev->hart >= r->harts)
      return bad_record(r, "hart out of range", err);
    break;
  case RR_NET:
    if (r->chunk_end - p < 2)
      return bad_record(r, "network frame cut short", err);
    ev->nic = r->data[p++];
    ev->flags = r->data[p++];
    if (ev->nic >= RR_MAX_NICS || (ev->flags & ~RR_NET_BURST_END))
      return bad_record(r, "network frame's NIC or flags out of range", err);
    if (!get_data(r, &p, RR_FRAME_MAX, ev))
      return bad_record(r, "frame length out of range or cut short", err);
    break;
  case RR_CONSOLE:
  case RR_RNG:
    if (!get_data(r, &p, RR_DATA_MAX, ev))
      return bad_record(r, "data length out of range or cut short", err);
    break;
  case RR_SNAPSHOT: {
    rr_event name = {0};
    if (!get_varint(r, &p, &ev->value))
      return bad_record(r, "snapshot's time cut short", err);
    if (r->chunk_end - p < RR_DIGEST_LEN)
      return bad_record(r, "snapshot's digest cut short", err);
    ev->data = r->data + p;
    ev->len = RR_DIGEST_LEN;
    p += RR_DIGEST_LEN;
    if (!get_data(r, &p, RR_NAME_MAX, &name))
      return bad_record(r, "snapshot's name length out of range or cut short", err);
    ev->name = name.data;
    ev->name_len = name.len;
    break;
  }
  case RR_END:
    if (r->chunk_end - p < RR_DIGEST_LEN)
      return bad_record(r, "digest cut short", err);
    ev->data = r->data + p;
    ev->len = RR_DIGEST_LEN;
    p += RR_DIGEST_LEN;
    if (p != r->len || r->chunk_end != r->len)
      return bad_record(r, "data after the end record", err);
    r->ended = true;
    break;
  default:
    return bad_record(r, "unknown record kind", err);
  }
  if (kind == RR_TIME)
    r->last_mtime = ev->value;
  r->last_icount = ev->icount;
  r->pos = p;
  r->records++;
  return 1;
}

static void reader_rewind(rr_log_reader *r) {
  r->chunk = r->chunk_end = r->pos = RR_LOG_HEADER_LEN;
  r->chunk_no = 0;
  r->crc = 0;
  r->last_icount = r->last_mtime = 0;
  r->records = 0;
  r->ended = false;
}

int rr_log_open(rr_log_reader *r, const uint8_t *data, size_t len, vs_error **err) {
  memset(r, 0, sizeof(*r));
  r->data = data;
  r->len = len;
  if (len < RR_LOG_HEADER_LEN)
    return vs_error_set(err, 0, "record/replay log: %zu bytes, shorter than its header (%u)", len,
                        RR_LOG_HEADER_LEN);
  if (memcmp(data, RR_LOG_MAGIC, 8) != 0)
    return vs_error_set(err, 0, "record/replay log: bad magic at offset 0 (not a vessel log)");
  /* the version first: every version has it here, and the rest of the header is the version's */
  uint32_t version = (uint32_t)vmstate_load_le(data + 8, 4);
  if (version < RR_LOG_VERSION)
    return vs_error_set(err, 0,
                        "record/replay log: format version %u at offset 8, older than this "
                        "vessel-vmm reads (version %u): record the run again",
                        version, RR_LOG_VERSION);
  if (version > RR_LOG_VERSION)
    return vs_error_set(err, 0,
                        "record/replay log: format version %u at offset 8, this vessel-vmm "
                        "reads version %u",
                        version, RR_LOG_VERSION);
  if ((uint32_t)vmstate_load_le(data + RR_LOG_HEADER_CRC_AT, 4) !=
      crc_of(0, data, RR_LOG_HEADER_CRC_AT))
    return vs_error_set(err, 0, "record/replay log: header checksum mismatch at offset %u",
                        RR_LOG_HEADER_CRC_AT);
  r->harts = (uint32_t)vmstate_load_le(data + 12, 4);
  if (r->harts < 1 || r->harts > RR_MAX_HARTS)
    return vs_error_set(err, 0, "record/replay log: %u harts at offset 12 (1 to %u)", r->harts,
                        RR_MAX_HARTS);
  r->realtime_base = (int64_t)vmstate_load_le(data + 16, 8);
  memcpy(r->start_digest, data + 24, RR_DIGEST_LEN);
  /* check all of it now: a bad log is refused before anything runs */
  reader_rewind(r);
  rr_event ev;
  int rc;
  while ((rc = rr_log_next(r, &ev, err)) == 1) {
  }
  if (rc < 0)
    return -1;
  reader_rewind(r);
  return 0;
}

/* ------------------------------------------------------------------ as text */

/* Short names, one word each, for lines a script can split. */
static const char *dump_kind(rr_kind k) {
  switch (k) {
  case RR_TIME:
    return "time";
  case RR_IRQ:
    return "irq";
  case RR_CONSOLE:
    return "console";
  case RR_RNG:
    return "rng";
  case RR_END:
    return "end";
  case RR_RUN:
    return "run";
  case RR_BEGIN:
    return "begin";
  case RR_NET:
    return "net";
  case RR_SNAPSHOT:
    return "snapshot";
  }
  return "unknown";
}

static void dump_hex(FILE *out, const uint8_t *p, size_t n) {
  for (size_t i = 0; i < n; i++)
    fprintf(out, "%02x", p[i]);
}

/* Data records show their length and the start of their bytes' SHA-256: enough to tell two
 * payloads apart without printing frames of 64 KiB. */
static void dump_payload(FILE *out, const uint8_t *p, size_t n) {
  uint8_t sum[RR_DIGEST_LEN];
  vs_sha256_ctx ctx;
  vs_sha256_init(&ctx);
  vs_sha256_update(&ctx, p, n);
  vs_sha256_final_raw(&ctx, sum);
  fprintf(out, " len=%zu sha256=", n);
  dump_hex(out, sum, 8);
}

/* Bytes a person can read: printable ASCII as it is, the rest (and the space, the quote and
 * the backslash, so a line splits on spaces) as \xNN. */
static void dump_text(FILE *out, const uint8_t *p, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (p[i] > ' ' && p[i] < 0x7f && p[i] != '\\' && p[i] != '"')
      fputc(p[i], out);
    else
      fprintf(out, "\\x%02x", p[i]);
  }
}

static void dump_record(FILE *out, uint64_t n, const rr_event *ev) {
  fprintf(out, "%llu %s icount=%llu", (unsigned long long)n, dump_kind(ev->kind),
          (unsigned long long)ev->icount);
  switch (ev->kind) {
  case RR_TIME:
    fprintf(out, " mtime=%llu", (unsigned long long)ev->value);
    break;
  case RR_IRQ:
    fprintf(out, " hart=%u cause=%llu", ev->hart, (unsigned long long)ev->value);
    break;
  case RR_RUN:
  case RR_BEGIN:
    fprintf(out, " hart=%u", ev->hart);
    break;
  case RR_CONSOLE:
    dump_payload(out, ev->data, ev->len);
    fputs(" text=", out);
    dump_text(out, ev->data, ev->len);
    break;
  case RR_RNG:
    dump_payload(out, ev->data, ev->len);
    break;
  case RR_NET:
    fprintf(out, " nic=%u burst_end=%u", ev->nic, ev->flags & RR_NET_BURST_END ? 1u : 0u);
    dump_payload(out, ev->data, ev->len);
    break;
  case RR_SNAPSHOT:
    fprintf(out, " mtime=%llu state_sha256=", (unsigned long long)ev->value);
    dump_hex(out, ev->data, RR_DIGEST_LEN);
    fputs(" name=", out);
    dump_text(out, ev->name, ev->name_len);
    break;
  case RR_END:
    fputs(" digest=", out);
    dump_hex(out, ev->data, RR_DIGEST_LEN);
    break;
  }
  fputc('\n', out);
}

int rr_log_dump(const uint8_t *data, size_t len, FILE *out, vs_error **err) {
  rr_log_reader r;
  if (rr_log_open(&r, data, len, err) < 0)
    return -1;
  fprintf(out, "log version=%u harts=%u realtime_base_ns=%lld start_sha256=", RR_LOG_VERSION,
          r.harts, (long long)r.realtime_base);
  dump_hex(out, r.start_digest, RR_DIGEST_LEN);
  fputc('\n', out);
  rr_event ev;
  int rc;
  uint64_t n = 0;
  while ((rc = rr_log_next(&r, &ev, err)) == 1)
    dump_record(out, ++n, &ev);
  if (rc < 0)
    return -1;
  if (fflush(out) != 0 || ferror(out))
    return vs_error_set(err, errno, "write the log's records");
  return 0;
}
