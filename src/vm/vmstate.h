/* Saved VM state: a small, explicit section format (internal to the vm module).
 *
 * A state image is a sequence of sections, each
 *
 *     tag      4 bytes  (ASCII, e.g. "UART")
 *     version  u32 LE   (the section's own layout version)
 *     length   u64 LE   (payload bytes that follow)
 *     payload           (fields in a fixed order, little-endian)
 *
 * Every device writes its own section with a *_save function next to its code and reads it back
 * with the matching *_load, which checks every value it takes (the bytes come from a file or a
 * network peer: untrusted). Readers never read past a section: a short read marks the reader bad
 * and yields zeros, and vmstate_end() turns that (or unread trailing bytes) into an error naming
 * the section. Sections appear in a fixed order, so a loader asks for the tag it expects next.
 */
#ifndef VESSEL_VM_VMSTATE_H
#define VESSEL_VM_VMSTATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/base.h"

#define VMSTATE_SECTION_HEADER 16

typedef struct vmstate_writer {
  uint8_t *data;
  size_t len, cap;
  size_t section_start; /* offset of the open section's header; SIZE_MAX when none is open */
} vmstate_writer;

/* n-byte little-endian integers (n at most 8), for other formats built the same way */
void vmstate_store_le(uint8_t *p, uint64_t v, unsigned n);
uint64_t vmstate_load_le(const uint8_t *p, unsigned n);

void vmstate_writer_init(vmstate_writer *w);
void vmstate_writer_free(vmstate_writer *w);
/* Open a section (closing any open one first). */
void vmstate_begin(vmstate_writer *w, const char tag[4], uint32_t version);
/* Close the open section: its length is patched in. */
void vmstate_end_section(vmstate_writer *w);
void vmstate_put_u8(vmstate_writer *w, uint8_t v);
void vmstate_put_u16(vmstate_writer *w, uint16_t v);
void vmstate_put_u32(vmstate_writer *w, uint32_t v);
void vmstate_put_u64(vmstate_writer *w, uint64_t v);
static inline void vmstate_put_bool(vmstate_writer *w, bool v) { vmstate_put_u8(w, v ? 1 : 0); }
static inline void vmstate_put_i64(vmstate_writer *w, int64_t v) {
  vmstate_put_u64(w, (uint64_t)v);
}
void vmstate_put_bytes(vmstate_writer *w, const void *p, size_t n);
/* A length-prefixed (u32) string; NULL is written as length 0xffffffff. */
void vmstate_put_str(vmstate_writer *w, const char *s);

typedef struct vmstate_reader {
  const uint8_t *data;
  size_t len, pos;
  bool bad;         /* a read went past the end, or a value was refused */
  char tag[5];      /* of the section being read (for messages) */
  uint32_t version; /* of the section being read */
  const char *why;  /* the first refused value, for the error message */
} vmstate_reader;

/* A reader over a whole image (a sequence of sections). */
void vmstate_reader_init(vmstate_reader *r, const void *data, size_t len);
/* Take the next section, which must be `tag` with a version <= max_version; *section reads its
 * payload. Errors name what was found instead. */
int vmstate_next(vmstate_reader *r, const char tag[4], uint32_t max_version,
                 vmstate_reader *section, vs_error **err);
/* The tag of the next section without taking it ("" at the end). */
void vmstate_peek_tag(const vmstate_reader *r, char tag[5]);
bool vmstate_at_end(const vmstate_reader *r);

uint8_t vmstate_get_u8(vmstate_reader *r);
uint16_t vmstate_get_u16(vmstate_reader *r);
uint32_t vmstate_get_u32(vmstate_reader *r);
uint64_t vmstate_get_u64(vmstate_reader *r);
static inline int64_t vmstate_get_i64(vmstate_reader *r) { return (int64_t)vmstate_get_u64(r); }
/* A bool must be stored as 0 or 1; anything else marks the reader bad. */
bool vmstate_get_bool(vmstate_reader *r);
void vmstate_get_bytes(vmstate_reader *r, void *p, size_t n);
/* A string written by vmstate_put_str, at most max bytes: a new allocation (NULL for a NULL
 * string or on error). */
char *vmstate_get_str(vmstate_reader *r, size_t max);
/* Refuse a value: marks the reader bad and records why (the first reason wins). */
void vmstate_refuse(vmstate_reader *r, const char *why);

/* End of a section's fields: -1 with an error naming the section when a read overran, a value
 * was refused, or bytes are left over. */
int vmstate_end(vmstate_reader *r, vs_error **err);

#endif
