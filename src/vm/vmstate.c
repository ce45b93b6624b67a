/* The section writer and reader of saved VM state (see vmstate.h). */
#include <string.h>

#include "vm/vmstate.h"

void vmstate_writer_init(vmstate_writer *w) {
  memset(w, 0, sizeof(*w));
  w->section_start = SIZE_MAX;
}

void vmstate_writer_free(vmstate_writer *w) {
  free(w->data);
  vmstate_writer_init(w);
}

static uint8_t *writer_room(vmstate_writer *w, size_t n) {
  if (w->cap - w->len < n) {
    size_t cap = w->cap ? w->cap : 4096;
    while (cap - w->len < n)
      cap *= 2;
    w->data = vs_realloc(w->data, cap);
    w->cap = cap;
  }
  uint8_t *p = w->data + w->len;
  w->len += n;
  return p;
}

void vmstate_store_le(uint8_t *p, uint64_t v, unsigned n) {
  for (unsigned i = 0; i < n; i++)
    p[i] = (uint8_t)(v >> (8 * i));
}

uint64_t vmstate_load_le(const uint8_t *p, unsigned n) {
  uint64_t v = 0;
  for (unsigned i = 0; i < n; i++)
    v |= (uint64_t)p[i] << (8 * i);
  return v;
}

void vmstate_end_section(vmstate_writer *w) {
  if (w->section_start == SIZE_MAX)
    return;
  size_t payload = w->len - w->section_start - VMSTATE_SECTION_HEADER;
  vmstate_store_le(w->data + w->section_start + 8, payload, 8);
  w->section_start = SIZE_MAX;
}

void vmstate_begin(vmstate_writer *w, const char tag[4], uint32_t version) {
  vmstate_end_section(w);
  w->section_start = w->len;
  uint8_t *p = writer_room(w, VMSTATE_SECTION_HEADER);
  memcpy(p, tag, 4);
  vmstate_store_le(p + 4, version, 4);
  vmstate_store_le(p + 8, 0, 8);
}

void vmstate_put_u8(vmstate_writer *w, uint8_t v) { *writer_room(w, 1) = v; }
void vmstate_put_u16(vmstate_writer *w, uint16_t v) { vmstate_store_le(writer_room(w, 2), v, 2); }
void vmstate_put_u32(vmstate_writer *w, uint32_t v) { vmstate_store_le(writer_room(w, 4), v, 4); }
void vmstate_put_u64(vmstate_writer *w, uint64_t v) { vmstate_store_le(writer_room(w, 8), v, 8); }

void vmstate_put_bytes(vmstate_writer *w, const void *p, size_t n) {
  if (n)
    memcpy(writer_room(w, n), p, n);
}

void vmstate_put_str(vmstate_writer *w, const char *s) {
  if (!s) {
    vmstate_put_u32(w, UINT32_MAX);
    return;
  }
  size_t n = strlen(s);
  vmstate_put_u32(w, (uint32_t)n);
  vmstate_put_bytes(w, s, n);
}

/* ------------------------------------------------------------------ reader */

void vmstate_reader_init(vmstate_reader *r, const void *data, size_t len) {
  memset(r, 0, sizeof(*r));
  r->data = data;
  r->len = len;
}

bool vmstate_at_end(const vmstate_reader *r) { return r->pos >= r->len; }

void vmstate_peek_tag(const vmstate_reader *r, char tag[5]) {
  tag[0] = 0;
  if (r->len - r->pos >= 4) {
    memcpy(tag, r->data + r->pos, 4);
    tag[4] = 0;
  }
}

/* A tag for messages: printable or escaped. */
static void printable_tag(const uint8_t *p, char out[17]) {
  char *o = out;
  for (int i = 0; i < 4; i++) {
    if (p[i] >= 0x20 && p[i] < 0x7f && p[i] != '\\')
      *o++ = (char)p[i];
    else
      o += sprintf(o, "\\x%02x", p[i]);
  }
  *o = 0;
}

int vmstate_next(vmstate_reader *r, const char tag[4], uint32_t max_version,
                 vmstate_reader *section, vs_error **err) {
  if (r->len - r->pos < VMSTATE_SECTION_HEADER)
    return vs_error_set(err, 0, "section %.4s: missing (the state ends after %zu bytes)", tag,
                        r->pos);
  const uint8_t *h = r->data + r->pos;
  if (memcmp(h, tag, 4) != 0) {
    char found[17];
    printable_tag(h, found);
    return vs_error_set(err, 0, "section %.4s expected at offset %zu, found '%s'", tag, r->pos,
                        found);
  }
  uint32_t version = (uint32_t)vmstate_load_le(h + 4, 4);
  uint64_t length = vmstate_load_le(h + 8, 8);
  if (version == 0 || version > max_version)
    return vs_error_set(err, 0, "section %.4s has version %u, this build reads 1 to %u", tag,
                        version, max_version);
  if (length > r->len - r->pos - VMSTATE_SECTION_HEADER)
    return vs_error_set(err, 0, "section %.4s claims %llu bytes, only %zu are left", tag,
                        (unsigned long long)length, r->len - r->pos - VMSTATE_SECTION_HEADER);
  vmstate_reader_init(section, h + VMSTATE_SECTION_HEADER, (size_t)length);
  memcpy(section->tag, tag, 4);
  section->tag[4] = 0;
  section->version = version;
  r->pos += VMSTATE_SECTION_HEADER + (size_t)length;
  return 0;
}

static const uint8_t *reader_take(vmstate_reader *r, size_t n) {
  if (r->bad || r->len - r->pos < n) {
    if (!r->bad)
      r->why = "the section is too short";
    r->bad = true;
    return NULL;
  }
  const uint8_t *p = r->data + r->pos;
  r->pos += n;
  return p;
}

static uint64_t reader_le(vmstate_reader *r, unsigned n) {
  const uint8_t *p = reader_take(r, n);
  return p ? vmstate_load_le(p, n) : 0;
}

uint8_t vmstate_get_u8(vmstate_reader *r) { return (uint8_t)reader_le(r, 1); }
uint16_t vmstate_get_u16(vmstate_reader *r) { return (uint16_t)reader_le(r, 2); }
uint32_t vmstate_get_u32(vmstate_reader *r) { return (uint32_t)reader_le(r, 4); }
uint64_t vmstate_get_u64(vmstate_reader *r) { return reader_le(r, 8); }

bool vmstate_get_bool(vmstate_reader *r) {
  uint8_t v = vmstate_get_u8(r);
  if (v > 1)
    vmstate_refuse(r, "a boolean is neither 0 nor 1");
  return v == 1;
}

void vmstate_get_bytes(vmstate_reader *r, void *p, size_t n) {
  const uint8_t *s = reader_take(r, n);
  if (s)
    memcpy(p, s, n);
  else
    memset(p, 0, n);
}

char *vmstate_get_str(vmstate_reader *r, size_t max) {
  uint32_t n = vmstate_get_u32(r);
  if (n == UINT32_MAX || r->bad)
    return NULL;
  if (n > max) {
    vmstate_refuse(r, "a string is longer than allowed");
    return NULL;
  }
  const uint8_t *s = reader_take(r, n);
  if (!s)
    return NULL;
  if (memchr(s, 0, n)) {
    vmstate_refuse(r, "a string contains a NUL byte");
    return NULL;
  }
  char *out = vs_malloc0((size_t)n + 1);
  memcpy(out, s, n);
  return out;
}

void vmstate_refuse(vmstate_reader *r, const char *why) {
  if (!r->bad)
    r->why = why;
  r->bad = true;
}

int vmstate_end(vmstate_reader *r, vs_error **err) {
  if (r->bad)
    return vs_error_set(err, 0, "section %s (version %u): %s", r->tag, r->version,
                        r->why ? r->why : "invalid");
  if (r->pos != r->len)
    return vs_error_set(err, 0, "section %s (version %u): %zu unexpected bytes at its end", r->tag,
                        r->version, r->len - r->pos);
  return 0;
}
