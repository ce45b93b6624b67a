/* Parsers of the etcd JSON gateway's replies. Pure functions over untrusted bytes: a member (or
 * whoever answers on its address) may send anything, so every field is checked for its type,
 * every int64 for its digits and range, every key and value for valid base64. */
#include "cluster/internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define MAX_REPLY_KEYS 1000000 /* a range reply larger than this is refused, not allocated */

void vc_kv_clear(vc_kv *kv) {
  free(kv->key);
  free(kv->value);
  memset(kv, 0, sizeof(*kv));
}

void vc_range_clear(vc_range *r) {
  for (size_t i = 0; i < r->n; i++)
    vc_kv_clear(&r->kvs[i]);
  free(r->kvs);
  memset(r, 0, sizeof(*r));
}

void vc_watch_msg_clear(vc_watch_msg *m) {
  for (size_t i = 0; i < m->n; i++)
    vc_kv_clear(&m->events[i].kv);
  free(m->events);
  free(m->cancel_reason);
  memset(m, 0, sizeof(*m));
}

static int b64_value(char c) {
  if (c >= 'A' && c <= 'Z')
    return c - 'A';
  if (c >= 'a' && c <= 'z')
    return c - 'a' + 26;
  if (c >= '0' && c <= '9')
    return c - '0' + 52;
  if (c == '+' || c == '-')
    return 62;
  if (c == '/' || c == '_')
    return 63;
  return -1;
}

/* Standard base64 (and the URL-safe alphabet), padding optional; anything else is an error. The
 * output is NUL-terminated (len does not count the NUL). */
int vc_base64_decode(const char *in, size_t in_len, char **out, size_t *out_len) {
  while (in_len > 0 && in[in_len - 1] == '=')
    in_len--;
  if (in_len % 4 == 1)
    return -1;
  char *buf = vs_malloc0(in_len / 4 * 3 + 3);
  size_t n = 0;
  uint32_t acc = 0;
  int bits = 0;
  for (size_t i = 0; i < in_len; i++) {
    int v = b64_value(in[i]);
    if (v < 0) {
      free(buf);
      return -1;
    }
    acc = (acc << 6) | (uint32_t)v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      buf[n++] = (char)((acc >> bits) & 0xff);
    }
  }
  buf[n] = 0;
  *out = buf;
  *out_len = n;
  return 0;
}

char *vc_base64_encode(const void *data, size_t len) {
  static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  const unsigned char *p = data;
  char *out = vs_malloc0((len + 2) / 3 * 4 + 1);
  size_t o = 0;
  for (size_t i = 0; i < len; i += 3) {
    uint32_t v = (uint32_t)p[i] << 16;
    if (i + 1 < len)
      v |= (uint32_t)p[i + 1] << 8;
    if (i + 2 < len)
      v |= p[i + 2];
    out[o++] = alphabet[(v >> 18) & 63];
    out[o++] = alphabet[(v >> 12) & 63];
    out[o++] = (char)(i + 1 < len ? alphabet[(v >> 6) & 63] : '=');
    out[o++] = (char)(i + 2 < len ? alphabet[v & 63] : '=');
  }
  out[o] = 0;
  return out;
}

/* An int64 the gateway writes as a decimal string (proto3's JSON mapping), or as a number. Absent:
 * 0 (proto3 leaves zero values out). */
static int get_i64(const json_t *obj, const char *field, int64_t *out, vs_error **err) {
  json_t *v = json_object_get(obj, field);
  *out = 0;
  if (!v || json_is_null(v))
    return 0;
  if (json_is_integer(v)) {
    *out = json_integer_value(v);
    return 0;
  }
  const char *s = json_string_value(v);
  if (!s)
    return vs_error_set(err, EINVAL, "%s: expected an integer or a decimal string", field);
  const char *digits = s + (*s == '-');
  if (!*digits || strlen(s) > 20 || strspn(digits, "0123456789") != strlen(digits))
    return vs_error_set(err, EINVAL, "%s: \"%.40s\" is not a decimal integer", field, s);
  errno = 0;
  long long n = strtoll(s, NULL, 10);
  if (errno)
    return vs_error_set(err, EINVAL, "%s: %s is out of range", field, s);
  *out = n;
  return 0;
}

static int get_b64(const json_t *obj, const char *field, char **out, size_t *len, vs_error **err) {
  json_t *v = json_object_get(obj, field);
  if (!v || json_is_null(v)) {
    *out = vs_strdup("");
    *len = 0;
    return 0;
  }
  if (!json_is_string(v))
    return vs_error_set(err, EINVAL, "%s: expected a base64 string", field);
  if (vc_base64_decode(json_string_value(v), json_string_length(v), out, len) < 0)
    return vs_error_set(err, EINVAL, "%s: not base64", field);
  return 0;
}

static int get_bool(const json_t *obj, const char *field, bool *out, vs_error **err) {
  json_t *v = json_object_get(obj, field);
  *out = false;
  if (!v || json_is_null(v))
    return 0;
  if (!json_is_boolean(v))
    return vs_error_set(err, EINVAL, "%s: expected true or false", field);
  *out = json_is_true(v);
  return 0;
}

static int parse_kv(const json_t *j, vc_kv *kv, vs_error **err) {
  if (!json_is_object(j))
    return vs_error_set(err, EINVAL, "expected an object");
  size_t klen = 0;
  if (get_b64(j, "key", &kv->key, &klen, err) < 0 ||
      get_b64(j, "value", &kv->value, &kv->value_len, err) < 0 ||
      get_i64(j, "create_revision", &kv->create_revision, err) < 0 ||
      get_i64(j, "mod_revision", &kv->mod_revision, err) < 0 ||
      get_i64(j, "version", &kv->version, err) < 0 || get_i64(j, "lease", &kv->lease, err) < 0)
    return -1;
  if (strlen(kv->key) != klen)
    return vs_error_set(err, EINVAL, "key: holds a NUL byte");
  return 0;
}

static int header_revision(const json_t *j, int64_t *rev, vs_error **err) {
  json_t *h = json_object_get(j, "header");
  *rev = 0;
  if (!h)
    return 0;
  if (!json_is_object(h))
    return vs_error_set(err, EINVAL, "header: expected an object");
  if (get_i64(h, "revision", rev, err) < 0)
    return vs_error_wrap(err, "header");
  return 0;
}

/* The body as a JSON object; a gateway error object ({"error": "...", "message": "...", "code":
 * N}) becomes an error carrying its message. */
static json_t *load_reply(const char *body, size_t len, const char *what, vs_error **err) {
  size_t skip = 0;
  while (skip < len && (body[skip] == ' ' || body[skip] == '\n' || body[skip] == '\r'))
    skip++;
  if (skip == len || (body[skip] != '{' && body[skip] != '[')) {
    /* the gateway answers some refusals in plain text (a client certificate with a
     * CommonName, for one): say what it said */
    size_t n = len - skip;
    while (n > 0 && (body[skip + n - 1] == '\n' || body[skip + n - 1] == '\r'))
      n--;
    vs_error_set(err, EPROTO, "%s: not JSON: \"%.*s\"", what, (int)(n > 300 ? 300 : n),
                 body + skip);
    return NULL;
  }
  json_t *j = vs_json_loads(body, len, what, err);
  if (!j)
    return NULL;
  if (!json_is_object(j)) {
    json_decref(j);
    vs_error_set(err, EINVAL, "%s: expected a JSON object", what);
    return NULL;
  }
  json_t *e = json_object_get(j, "error");
  if (e) {
    const char *msg = json_string_value(json_object_get(j, "message"));
    if (!msg && json_is_object(e))
      msg = json_string_value(json_object_get(e, "message"));
    if (!msg)
      msg = json_string_value(e);
    vs_error_set(err, EIO, "%s: etcd says: %.300s", what, msg ? msg : "(an error without message)");
    json_decref(j);
    return NULL;
  }
  return j;
}

static int parse_range_obj(const json_t *j, vc_range *out, vs_error **err) {
  memset(out, 0, sizeof(*out));
  if (header_revision(j, &out->revision, err) < 0 || get_i64(j, "count", &out->count, err) < 0 ||
      get_bool(j, "more", &out->more, err) < 0)
    return -1;
  json_t *kvs = json_object_get(j, "kvs");
  if (!kvs || json_is_null(kvs))
    return 0;
  if (!json_is_array(kvs))
    return vs_error_set(err, EINVAL, "kvs: expected an array");
  size_t n = json_array_size(kvs);
  if (n > MAX_REPLY_KEYS)
    return vs_error_set(err, EINVAL, "kvs: %zu pairs, more than %d", n, MAX_REPLY_KEYS);
  out->kvs = vs_malloc0(sizeof(vc_kv) * (n ? n : 1));
  for (size_t i = 0; i < n; i++) {
    out->n = i + 1;
    if (parse_kv(json_array_get(kvs, i), &out->kvs[i], err) < 0) {
      vs_error_wrap(err, "kvs[%zu]", i);
      vc_range_clear(out);
      return -1;
    }
  }
  return 0;
}

int vc_parse_range(const char *body, size_t len, vc_range *out, vs_error **err) {
  memset(out, 0, sizeof(*out));
  _cleanup_json_ json_t *j = load_reply(body, len, "etcd range reply", err);
  if (!j)
    return -1;
  if (parse_range_obj(j, out, err) < 0)
    return vs_error_wrap(err, "etcd range reply");
  return 0;
}

int vc_parse_put(const char *body, size_t len, int64_t *revision, vs_error **err) {
  _cleanup_json_ json_t *j = load_reply(body, len, "etcd put reply", err);
  if (!j)
    return -1;
  if (header_revision(j, revision, err) < 0)
    return vs_error_wrap(err, "etcd put reply");
  return 0;
}

int vc_parse_delete(const char *body, size_t len, int64_t *revision, int64_t *deleted,
                    vs_error **err) {
  _cleanup_json_ json_t *j = load_reply(body, len, "etcd delete reply", err);
  if (!j)
    return -1;
  if (header_revision(j, revision, err) < 0 || get_i64(j, "deleted", deleted, err) < 0)
    return vs_error_wrap(err, "etcd delete reply");
  if (*deleted < 0)
    return vs_error_set(err, EINVAL, "etcd delete reply: deleted: %lld is negative",
                        (long long)*deleted);
  return 0;
}

int vc_parse_txn(const char *body, size_t len, bool *succeeded, int64_t *revision, vc_range *range,
                 vs_error **err) {
  if (range)
    memset(range, 0, sizeof(*range));
  _cleanup_json_ json_t *j = load_reply(body, len, "etcd txn reply", err);
  if (!j)
    return -1;
  if (header_revision(j, revision, err) < 0 || get_bool(j, "succeeded", succeeded, err) < 0)
    return vs_error_wrap(err, "etcd txn reply");
  json_t *resps = json_object_get(j, "responses");
  if (resps && !json_is_null(resps) && !json_is_array(resps))
    return vs_error_set(err, EINVAL, "etcd txn reply: responses: expected an array");
  size_t i;
  json_t *r;
  json_array_foreach(resps, i, r) {
    json_t *rr = json_is_object(r) ? json_object_get(r, "response_range") : NULL;
    if (!json_is_object(r))
      return vs_error_set(err, EINVAL, "etcd txn reply: responses[%zu]: expected an object", i);
    if (!rr || !range)
      continue;
    if (!json_is_object(rr))
      return vs_error_set(err, EINVAL,
                          "etcd txn reply: responses[%zu].response_range: expected an object", i);
    if (parse_range_obj(rr, range, err) < 0)
      return vs_error_wrap(err, "etcd txn reply: responses[%zu].response_range", i);
    break;
  }
  return 0;
}

int vc_parse_lease(const char *body, size_t len, int64_t *id, int64_t *ttl, vs_error **err) {
  _cleanup_json_ json_t *j = load_reply(body, len, "etcd lease reply", err);
  if (!j)
    return -1;
  json_t *o = json_object_get(j, "result");
  if (o && !json_is_object(o))
    return vs_error_set(err, EINVAL, "etcd lease reply: result: expected an object");
  if (!o)
    o = j;
  if (get_i64(o, "ID", id, err) < 0 || get_i64(o, "TTL", ttl, err) < 0)
    return vs_error_wrap(err, "etcd lease reply");
  const char *e = json_string_value(json_object_get(o, "error"));
  if (e && *e)
    return vs_error_set(err, EIO, "etcd lease reply: etcd says: %.300s", e);
  return 0;
}

int vc_parse_token(const char *body, size_t len, char **token, vs_error **err) {
  _cleanup_json_ json_t *j = load_reply(body, len, "etcd authenticate reply", err);
  if (!j)
    return -1;
  const char *t = json_string_value(json_object_get(j, "token"));
  if (!t || !*t)
    return vs_error_set(err, EINVAL, "etcd authenticate reply: no token");
  if (strlen(t) > 4096 || strpbrk(t, "\r\n"))
    return vs_error_set(err, EINVAL, "etcd authenticate reply: the token is not a header value");
  *token = vs_strdup(t);
  return 0;
}

static int parse_event(const json_t *ev, vc_event *out, vs_error **err) {
  if (!json_is_object(ev))
    return vs_error_set(err, EINVAL, "expected an object");
  /* proto3's JSON leaves the zero value (PUT) out; the enum may come as its name or number */
  json_t *t = json_object_get(ev, "type");
  const char *name = json_string_value(t);
  json_int_t num = json_is_integer(t) ? json_integer_value(t) : -1;
  if (!t || (name && !strcmp(name, "PUT")) || num == 0)
    out->type = VC_EVENT_PUT;
  else if ((name && !strcmp(name, "DELETE")) || num == 1)
    out->type = VC_EVENT_DELETE;
  else
    return vs_error_set(err, EINVAL, "type: expected PUT or DELETE");
  json_t *kv = json_object_get(ev, "kv");
  if (!kv)
    return vs_error_set(err, EINVAL, "kv: missing");
  return parse_kv(kv, &out->kv, err) < 0 ? vs_error_wrap(err, "kv") : 0;
}

int vc_parse_watch(const char *body, size_t len, vc_watch_msg *out, vs_error **err) {
  memset(out, 0, sizeof(*out));
  _cleanup_json_ json_t *j = load_reply(body, len, "etcd watch message", err);
  if (!j)
    return -1;
  json_t *r = json_object_get(j, "result");
  if (!json_is_object(r))
    return vs_error_set(err, EINVAL, "etcd watch message: result: expected an object");
  if (header_revision(r, &out->revision, err) < 0 ||
      get_i64(r, "watch_id", &out->watch_id, err) < 0 ||
      get_i64(r, "compact_revision", &out->compact_revision, err) < 0 ||
      get_bool(r, "created", &out->created, err) < 0 ||
      get_bool(r, "canceled", &out->canceled, err) < 0)
    return vs_error_wrap(err, "etcd watch message");
  const char *reason = json_string_value(json_object_get(r, "cancel_reason"));
  if (reason)
    out->cancel_reason = vs_strdup(reason);
  json_t *evs = json_object_get(r, "events");
  if (!evs || json_is_null(evs))
    return 0;
  if (!json_is_array(evs)) {
    vc_watch_msg_clear(out);
    return vs_error_set(err, EINVAL, "etcd watch message: events: expected an array");
  }
  size_t n = json_array_size(evs);
  out->events = vs_malloc0(sizeof(vc_event) * (n ? n : 1));
  for (size_t i = 0; i < n; i++) {
    out->n = i + 1;
    if (parse_event(json_array_get(evs, i), &out->events[i], err) < 0) {
      vs_error_wrap(err, "etcd watch message: events[%zu]", i);
      vc_watch_msg_clear(out);
      return -1;
    }
  }
  return 0;
}
