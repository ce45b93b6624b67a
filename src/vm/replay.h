/* Deterministic record and replay (docs/debugging.md, "Record and replay").
 *
 * A recording is a directory: `start/`, a snapshot in the usual format taken before the first
 * instruction, and `log`, every input the guest's own instructions do not determine, each tagged
 * with the hart's instruction count (minstret):
 *   TIME     the guest's clock (mtime) moved; it stands still between two slices of the run loop,
 *            so reads inside a slice need no record and the RTC follows it
 *   IRQ      an interrupt was taken (its cause): replay takes it at exactly that count
 *   CONSOLE  bytes of console input delivered to the guest
 *   RNG      bytes virtio-rng handed to the guest
 *   NET      a frame the network backend handed to a NIC (delivered between two slices)
 *   END      the run ended: instruction count and a digest of the harts' state and of RAM
 *   SNAPSHOT `ctl SOCK snapshot DIR` took a snapshot here: a point a replay can start from
 *            (--from DIR), named by the SHA-256 of its state file
 * and with several harts, which take turns on one thread in slices:
 *   RUN      a hart ran a slice, up to this count of its own (replay runs it just as far)
 *   BEGIN    the run loop started a hart that another one had asked to start (SBI HSM)
 *
 * The log format (all integers little-endian, varints LEB128):
 *   header   "VSSLRRLG", u32 version, u32 harts, u64 realtime base (ns), 32 bytes: SHA-256 of
 *            the starting snapshot's state file (it names the kernel, the machine and the RAM's
 *            digest: a log is replayed only from the start it was recorded from), u32 CRC-32 of
 *            these
 *   chunks   u32 payload length, u32 CRC-32 running over every chunk so far, payload
 *   records  u8 kind, varint zigzag icount delta, then per kind: TIME varint zigzag mtime delta,
 *            IRQ u8 hart and u8 cause, RUN and BEGIN u8 hart, CONSOLE and RNG varint length
 *            and bytes, NET u8 NIC, u8 flags (1: the last frame of the backend's burst, after
 *            which the device flushes), varint length and the frame, END 32 digest bytes,
 *            SNAPSHOT varint mtime (the clock then, not a delta), 32 bytes: SHA-256 of the
 *            snapshot's state file, varint length and the directory's name as given. A
 * record's count is its hart's (hart 0's for TIME, CONSOLE, RNG and END). A reader checks the whole
 * log before replay starts: a truncated, reordered or altered log is refused with the chunk and
 * offset where it goes wrong. */
#ifndef VESSEL_VM_REPLAY_H
#define VESSEL_VM_REPLAY_H

#include <stddef.h>
#include <stdio.h>
#include <stdint.h>

#include "base/base.h"

#define RR_LOG_MAGIC "VSSLRRLG"
/* 2: the start's digest in the header, NET records; 3: SNAPSHOT records */
#define RR_LOG_VERSION 3u
#define RR_LOG_HEADER_LEN 60u
#define RR_LOG_HEADER_CRC_AT 56u /* the header's CRC-32 covers the bytes before it */
#define RR_CHUNK_TARGET 65536u
#define RR_CHUNK_MAX 1048576u
#define RR_DATA_MAX 65536u  /* console and rng records */
#define RR_FRAME_MAX 70000u /* a NIC's largest frame: a 64 KiB TCP packet and its headers */
#define RR_NET_BURST_END 1u
#define RR_DIGEST_LEN 32u
#define RR_NAME_MAX 4096u /* a SNAPSHOT record's directory name */
#define RR_MAX_HARTS 8u
#define RR_MAX_NICS 4u

typedef enum rr_kind {
  RR_TIME = 1,
  RR_IRQ = 2,
  RR_CONSOLE = 3,
  RR_RNG = 4,
  RR_END = 5,
  RR_RUN = 6,
  RR_BEGIN = 7,
  RR_NET = 8,
  RR_SNAPSHOT = 9,
} rr_kind;

typedef struct rr_event {
  rr_kind kind;
  unsigned hart;  /* IRQ, RUN, BEGIN */
  unsigned nic;   /* NET */
  unsigned flags; /* NET: RR_NET_BURST_END */
  uint64_t icount;
  uint64_t value;      /* TIME, SNAPSHOT: mtime; IRQ: cause */
  const uint8_t *data; /* CONSOLE, RNG: the bytes; NET: the frame; END: the digest; SNAPSHOT:
                          the state file's digest (points into the log) */
  size_t len;
  const uint8_t *name; /* SNAPSHOT: the directory as `ctl snapshot` named it (not terminated) */
  size_t name_len;
} rr_event;

/* ---- writing: records go to a buffer, whole chunks to the file */
typedef struct rr_log_writer {
  int fd;
  uint32_t crc; /* running CRC over the chunks written */
  uint64_t last_icount, last_mtime;
  uint8_t *buf;
  size_t len, cap;
  uint64_t bytes_written; /* header and chunks */
  uint64_t records;
  int error; /* first write error (errno), reported by rr_log_close */
} rr_log_writer;

int rr_log_create(rr_log_writer *w, const char *path, uint32_t harts, int64_t realtime_base,
                  const uint8_t start_digest[RR_DIGEST_LEN], vs_error **err);
void rr_log_put(rr_log_writer *w, const rr_event *ev);
/* Write what remains and close; fails if any write failed. */
int rr_log_close(rr_log_writer *w, vs_error **err);

/* ---- reading: the whole log in memory, checked by rr_log_open */
typedef struct rr_log_reader {
  const uint8_t *data;
  size_t len;
  uint32_t harts;
  int64_t realtime_base;
  uint8_t start_digest[RR_DIGEST_LEN];
  size_t chunk; /* offset of the current chunk's payload */
  size_t chunk_end;
  size_t pos;        /* next record */
  unsigned chunk_no; /* for messages */
  uint32_t crc;
  uint64_t last_icount, last_mtime;
  uint64_t records;
  bool ended; /* END was read */
} rr_log_reader;

/* Check the header, then every chunk and record; on success the reader stands at the first
 * record. data must outlive the reader. */
int rr_log_open(rr_log_reader *r, const uint8_t *data, size_t len, vs_error **err);
/* The next record: 1, or 0 after END, or -1 with a message naming the chunk and offset. */
int rr_log_next(rr_log_reader *r, rr_event *ev, vs_error **err);
const char *rr_kind_name(rr_kind k);
/* The log as text, one record per line (vessel-vmm replay-dump; docs/debugging.md): a header
 * line, then per record its number, kind, instruction count and payload. A log rr_log_open
 * refuses is not printed (the error says why). */
int rr_log_dump(const uint8_t *data, size_t len, FILE *out, vs_error **err);

#endif
