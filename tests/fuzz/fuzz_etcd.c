/* Fuzz the parsers of etcd's JSON gateway replies (src/cluster/reply.c) and the placement
 * function, whose nodes and guests come from etcd (src/cluster/place.c): every input goes to
 * every parser; an input that is a JSON array [nodes, guests, request] is also placed. */
#include "cluster/cluster.h"

#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void touch(const char *s, size_t len) {
  if (s && strlen(s) > len)
    abort(); /* NUL-terminated within its length */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *body = (const char *)data;
  vs_error *err = NULL;
  vc_range r;
  if (vc_parse_range(body, size, &r, &err) == 0)
    for (size_t i = 0; i < r.n; i++) {
      touch(r.kvs[i].key, SIZE_MAX);
      touch(r.kvs[i].value, r.kvs[i].value_len);
    }
  vc_range_clear(&r);
  vs_error_free(err);
  err = NULL;
  int64_t a, b;
  bool ok;
  vc_parse_put(body, size, &a, &err);
  vs_error_free(err);
  err = NULL;
  vc_parse_delete(body, size, &a, &b, &err);
  vs_error_free(err);
  err = NULL;
  if (vc_parse_txn(body, size, &ok, &a, &r, &err) == 0)
    vc_range_clear(&r);
  vs_error_free(err);
  err = NULL;
  vc_parse_lease(body, size, &a, &b, &err);
  vs_error_free(err);
  err = NULL;
  char *tok = NULL;
  if (vc_parse_token(body, size, &tok, &err) == 0)
    free(tok);
  vs_error_free(err);
  err = NULL;
  vc_watch_msg m;
  if (vc_parse_watch(body, size, &m, &err) == 0) {
    for (size_t i = 0; i < m.n; i++)
      touch(m.events[i].kv.value, m.events[i].kv.value_len);
    vc_watch_msg_clear(&m);
  }
  vs_error_free(err);
  err = NULL;
  json_t *j = json_loadb(body, size, JSON_REJECT_DUPLICATES, NULL);
  if (json_is_array(j) && json_array_size(j) == 3) {
    char *node = NULL, *reason = NULL;
    if (vc_place(json_array_get(j, 0), json_array_get(j, 1), json_array_get(j, 2), &node, &reason,
                 &err) == 0 &&
        !node && !reason)
      abort(); /* a decision is a node or a reason */
    free(node);
    free(reason);
    vs_error_free(err);
  }
  json_decref(j);
  return 0;
}
