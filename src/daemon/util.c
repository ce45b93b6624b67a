/* Small helpers shared by vesseld and the monitor. */
#include "daemon/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

/* Length of the valid UTF-8 sequence at s (at most n bytes), 0 if invalid. */
static size_t utf8_seq_len(const unsigned char *s, size_t n) {
  unsigned char c = s[0];
  size_t len;
  uint32_t cp;
  if (c < 0x80)
    return 1;
  if (c >= 0xc2 && c <= 0xdf) {
    len = 2;
    cp = c & 0x1f;
  } else if (c >= 0xe0 && c <= 0xef) {
    len = 3;
    cp = c & 0x0f;
  } else if (c >= 0xf0 && c <= 0xf4) {
    len = 4;
    cp = c & 0x07;
  } else {
    return 0;
  }
  if (n < len)
    return 0;
  for (size_t i = 1; i < len; i++) {
    if ((s[i] & 0xc0) != 0x80)
      return 0;
    cp = (cp << 6) | (s[i] & 0x3f);
  }
  /* overlong forms, surrogates and values past U+10FFFF are invalid */
  if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10ffff ||
      (cp >= 0xd800 && cp <= 0xdfff))
    return 0;
  return len;
}

char *vd_json_escape_bytes(const char *data, size_t len) {
  /* worst case: every byte becomes \ufffd (6 characters) */
  char *out = vs_malloc0(len * 6 + 1);
  size_t o = 0;
  const unsigned char *s = (const unsigned char *)data;
  for (size_t i = 0; i < len;) {
    unsigned char c = s[i];
    if (c == '"' || c == '\\') {
      out[o++] = '\\';
      out[o++] = (char)c;
      i++;
    } else if (c == '\n') {
      memcpy(out + o, "\\n", 2);
      o += 2;
      i++;
    } else if (c == '\r') {
      memcpy(out + o, "\\r", 2);
      o += 2;
      i++;
    } else if (c == '\t') {
      memcpy(out + o, "\\t", 2);
      o += 2;
      i++;
    } else if (c < 0x20 || c == 0x7f) {
      o += (size_t)snprintf(out + o, 7, "\\u%04x", c);
      i++;
    } else {
      size_t n = utf8_seq_len(s + i, len - i);
      if (n == 0) {
        memcpy(out + o, "\\ufffd", 6);
        o += 6;
        i++;
      } else {
        memcpy(out + o, s + i, n);
        o += n;
        i += n;
      }
    }
  }
  out[o] = 0;
  return out;
}

unsigned long long vd_pid_start_time(pid_t pid) {
  char path[64];
  snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
  _cleanup_free_ char *text = NULL;
  if (vs_read_file(path, 4096, &text, NULL, NULL) < 0)
    return 0;
  /* the command name may hold spaces and parentheses: fields start after the last ')' */
  char *p = strrchr(text, ')');
  if (!p)
    return 0;
  unsigned long long start = 0;
  /* field 22 is starttime; after ')' come fields 3.. */
  int field = 2;
  char *save = NULL;
  for (char *tok = strtok_r(p + 1, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
    if (++field == 22) {
      start = strtoull(tok, NULL, 10);
      break;
    }
  }
  return start;
}

char *vd_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  char buf[64];
  vs_utc_rfc3339(&ts, buf, sizeof(buf));
  return vs_strdup(buf);
}

char *vd_random_id(void) {
  unsigned char b[32];
  size_t got = 0;
  while (got < sizeof(b)) {
    ssize_t n = getrandom(b + got, sizeof(b) - got, 0);
    if (n < 0 && errno != EINTR)
      abort(); /* no entropy source at all: nothing sensible to do */
    if (n > 0)
      got += (size_t)n;
  }
  char *s = vs_malloc0(65);
  for (size_t i = 0; i < sizeof(b); i++)
    snprintf(s + i * 2, 3, "%02x", b[i]);
  return s;
}

json_t *vd_filter_values(json_t *filters, const char *key) {
  json_t *v = json_object_get(filters, key);
  json_t *out = json_array();
  if (json_is_array(v)) {
    json_array_extend(out, v);
  } else if (json_is_object(v)) {
    const char *k;
    json_t *b;
    json_object_foreach(v, k, b) if (json_is_true(b)) json_array_append_new(out, json_string(k));
  }
  return out;
}

bool vd_label_match(json_t *labels, const char *want) {
  const char *eq = strchr(want, '=');
  _cleanup_free_ char *k = eq ? vs_img_strndup(want, (size_t)(eq - want)) : vs_strdup(want);
  const char *have = json_string_value(json_object_get(labels, k));
  return have && (!eq || !strcmp(have, eq + 1));
}
