/* The etcd v3 client: requests to the JSON gateway (POST /v3/<service>/<method> with a JSON
 * body) over libcurl. One easy handle, kept for its connection, serves the unary calls under a
 * mutex; a watch gets a handle of its own for its stream. A member that cannot be reached is
 * skipped for the next endpoint; an expired auth token is renewed once per call. */
#include "cluster/internal.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_REPLY (64u << 20) /* a unary reply larger than this is refused */
#define MAX_WATCH_LINE (16u << 20)

struct vc_etcd {
  char **endpoints;
  size_t n_endpoints, current;
  char *cacert, *cert, *key, *user, *password;
  long timeout_ms;
  pthread_mutex_t lock; /* the handle, current, token */
  CURL *curl;
  char *token;
};

typedef struct reply {
  char *body;
  size_t len, max;
  bool too_big;
} reply;

static size_t on_body(char *data, size_t size, size_t n, void *arg) {
  reply *r = arg;
  size_t len = size * n;
  if (r->len + len > r->max) {
    r->too_big = true;
    return 0;
  }
  r->body = vs_realloc(r->body, r->len + len + 1);
  memcpy(r->body + r->len, data, len);
  r->len += len;
  r->body[r->len] = 0;
  return len;
}

/* curl_global_init is not thread-safe before libcurl 7.84; the first client runs it once. */
static void global_init(void) { curl_global_init(CURL_GLOBAL_DEFAULT); }

/* A key as the gateway wants it: base64 in a JSON string. */
static json_t *b64_string(const char *key) {
  char *v = vc_base64_encode(key, strlen(key));
  json_t *j = json_string(v);
  free(v);
  return j;
}

static void set_tls(const vc_etcd *e, CURL *h) {
  if (e->cacert)
    curl_easy_setopt(h, CURLOPT_CAINFO, e->cacert);
  if (e->cert)
    curl_easy_setopt(h, CURLOPT_SSLCERT, e->cert);
  if (e->key)
    curl_easy_setopt(h, CURLOPT_SSLKEY, e->key);
}

vc_etcd *vc_etcd_new(const vc_etcd_options *o, vs_error **err) {
  if (o->n_endpoints == 0) {
    vs_error_set(err, EINVAL, "etcd: no endpoint given");
    return NULL;
  }
  for (size_t i = 0; i < o->n_endpoints; i++) {
    const char *u = o->endpoints[i];
    if (strncmp(u, "http://", 7) != 0 && strncmp(u, "https://", 8) != 0) {
      vs_error_set(err, EINVAL, "etcd endpoint %s: expected http://HOST:PORT or https://HOST:PORT",
                   u);
      return NULL;
    }
  }
  if ((o->cert != NULL) != (o->key != NULL)) {
    vs_error_set(err, EINVAL,
                 "etcd: a client certificate needs its key and the key its certificate");
    return NULL;
  }
  if ((o->user != NULL) != (o->password != NULL)) {
    vs_error_set(err, EINVAL, "etcd: a user needs a password and a password a user");
    return NULL;
  }
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, global_init);
  vc_etcd *e = vs_malloc0(sizeof(*e));
  e->endpoints = vs_malloc0(sizeof(char *) * o->n_endpoints);
  for (size_t i = 0; i < o->n_endpoints; i++) {
    e->endpoints[i] = vs_strdup(o->endpoints[i]);
    size_t l = strlen(e->endpoints[i]);
    while (l > 0 && e->endpoints[i][l - 1] == '/')
      e->endpoints[i][--l] = 0;
  }
  e->n_endpoints = o->n_endpoints;
  e->cacert = o->cacert ? vs_strdup(o->cacert) : NULL;
  e->cert = o->cert ? vs_strdup(o->cert) : NULL;
  e->key = o->key ? vs_strdup(o->key) : NULL;
  e->user = o->user ? vs_strdup(o->user) : NULL;
  e->password = o->password ? vs_strdup(o->password) : NULL;
  e->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : 5000;
  pthread_mutex_init(&e->lock, NULL);
  e->curl = curl_easy_init();
  return e;
}

void vc_etcd_free(vc_etcd *e) {
  if (!e)
    return;
  for (size_t i = 0; i < e->n_endpoints; i++)
    free(e->endpoints[i]);
  free(e->endpoints);
  free(e->cacert);
  free(e->cert);
  free(e->key);
  free(e->user);
  free(e->password);
  free(e->token);
  if (e->curl)
    curl_easy_cleanup(e->curl);
  pthread_mutex_destroy(&e->lock);
  free(e);
}

const char *vc_etcd_endpoint(const vc_etcd *e) { return e->endpoints[e->current]; }

/* What a transport failure means to the caller: ECONNREFUSED or ETIMEDOUT (the member is not
 * there yet: worth waiting for), EPROTO (TLS or a protocol error: a configuration to fix). */
static int transport_errno(CURLcode cc) {
  switch (cc) {
  case CURLE_COULDNT_CONNECT:
  case CURLE_COULDNT_RESOLVE_HOST:
  case CURLE_RECV_ERROR:
  case CURLE_SEND_ERROR:
  case CURLE_GOT_NOTHING:
    return ECONNREFUSED;
  case CURLE_OPERATION_TIMEDOUT:
    return ETIMEDOUT;
  default:
    return EPROTO;
  }
}

/* One POST to one endpoint on the shared handle (lock held). *status: the HTTP status. */
static int post_once(vc_etcd *e, const char *endpoint, const char *path, const char *json, reply *r,
                     long *status, vs_error **err) {
  CURL *h = e->curl;
  curl_easy_reset(h);
  _cleanup_free_ char *url = vs_asprintf("%s%s", endpoint, path);
  struct curl_slist *hd = curl_slist_append(NULL, "Content-Type: application/json");
  if (e->token) {
    _cleanup_free_ char *a = vs_asprintf("Authorization: %s", e->token);
    hd = curl_slist_append(hd, a);
  }
  curl_easy_setopt(h, CURLOPT_URL, url);
  curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, e->timeout_ms);
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, e->timeout_ms < 2000 ? e->timeout_ms : 2000L);
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, hd);
  curl_easy_setopt(h, CURLOPT_POSTFIELDS, json);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, r);
  set_tls(e, h);
  CURLcode cc = curl_easy_perform(h);
  curl_slist_free_all(hd);
  if (r->too_big)
    return vs_error_set(err, EMSGSIZE, "%s: the reply is larger than %u MiB", url, MAX_REPLY >> 20);
  if (cc != CURLE_OK)
    return vs_error_set(err, transport_errno(cc), "%s: %s", url, curl_easy_strerror(cc));
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, status);
  return 0;
}

static bool token_expired(const reply *r, long status) {
  return status == 401 || (r->body && (strstr(r->body, "invalid auth token") ||
                                       strstr(r->body, "user name is empty")));
}

static int authenticate_locked(vc_etcd *e, const char *endpoint, vs_error **err);

/* POST to the current endpoint, then to the others in turn when it cannot be reached. The
 * reply's body (any status but a transport failure) is in *r; the lock is held. */
static int post_locked(vc_etcd *e, const char *path, const char *json, reply *r, long *status,
                       vs_error **err) {
  _cleanup_error_ vs_error *first = NULL;
  for (size_t k = 0; k < e->n_endpoints; k++) {
    size_t i = (e->current + k) % e->n_endpoints;
    vs_error *one = NULL;
    if (e->user && !e->token && authenticate_locked(e, e->endpoints[i], &one) < 0) {
      if (!first)
        first = one;
      else
        vs_error_free(one);
      continue;
    }
    for (int attempt = 0; attempt < 2; attempt++) {
      free(r->body);
      *r = (reply){.max = MAX_REPLY};
      if (post_once(e, e->endpoints[i], path, json, r, status, &one) < 0)
        break;
      if (e->user && attempt == 0 && token_expired(r, *status)) {
        free(e->token);
        e->token = NULL;
        if (authenticate_locked(e, e->endpoints[i], &one) < 0)
          break;
        continue;
      }
      e->current = i;
      return 0;
    }
    if (!first)
      first = one;
    else
      vs_error_free(one);
  }
  if (e->n_endpoints > 1) {
    vs_error_set(err, first ? first->errnum : EIO,
                 "no etcd member answered (%zu tried; "
                 "first: %s)",
                 e->n_endpoints, first ? first->msg : "?");
    return -1;
  }
  *err = steal_pointer(&first);
  return -1;
}

static int authenticate_locked(vc_etcd *e, const char *endpoint, vs_error **err) {
  json_t *j = json_pack("{s:s, s:s}", "name", e->user, "password", e->password);
  _cleanup_free_ char *body = json_dumps(j, JSON_COMPACT);
  json_decref(j);
  reply r = {.max = MAX_REPLY};
  long status = 0;
  char *saved = e->token;
  e->token = NULL;
  int rc = post_once(e, endpoint, "/v3/auth/authenticate", body, &r, &status, err);
  e->token = saved;
  if (rc == 0) {
    char *tok = NULL;
    rc = vc_parse_token(r.body ? r.body : "", r.len, &tok, err);
    if (rc == 0) {
      free(e->token);
      e->token = tok;
    } else {
      /* etcd answered and refused: wrong credentials, not a member to wait for */
      if ((*err)->errnum == EIO)
        (*err)->errnum = EACCES;
      vs_error_wrap(err, "etcd authentication as %s at %s", e->user, endpoint);
    }
  }
  free(r.body);
  return rc;
}

/* A unary call: POST the JSON, hand the body to the caller (who parses it, also for errors:
 * the gateway's error objects come with 4xx/5xx statuses). */
static int call(vc_etcd *e, const char *path, json_t *req, reply *r, vs_error **err) {
  _cleanup_free_ char *body = json_dumps(req, JSON_COMPACT);
  json_decref(req);
  /* Reads and lease renewals are asked again, three times at most, while the member answers
   * that it cannot serve now (gRPC's Unavailable and DeadlineExceeded: 503 and 504 through the
   * gateway; an election under way, a member catching up). Writes are not: one that timed out
   * may have been applied, and asking again would report our own write as a conflict. */
  bool again = !strcmp(path, "/v3/kv/range") || !strcmp(path, "/v3/lease/keepalive");
  long status = 0;
  for (int attempt = 0;; attempt++) {
    pthread_mutex_lock(&e->lock);
    int rc = post_locked(e, path, body, r, &status, err);
    pthread_mutex_unlock(&e->lock);
    if (rc < 0)
      return -1;
    if (!again || attempt == 3 || (status != 503 && status != 504))
      break;
    free(r->body);
    r->body = NULL;
    usleep(100000u << attempt);
  }
  if (status != 200 && (!r->body || !strchr(r->body, '{'))) {
    vs_error_set(err, EIO, "%s: HTTP %ld: %.200s", path, status, r->body ? r->body : "");
    free(r->body);
    r->body = NULL;
    return -1;
  }
  if (!r->body)
    r->body = vs_strdup("");
  return 0;
}

int vc_etcd_status(vc_etcd *e, vs_error **err) {
  reply r = {0};
  /* a range of a key that does not exist: served by every member, with or without auth */
  json_t *req = json_pack("{s:s, s:b}", "key", "AA==", "count_only", 1);
  if (call(e, "/v3/kv/range", req, &r, err) < 0)
    return -1;
  vc_range rg;
  int rc = vc_parse_range(r.body, r.len, &rg, err);
  vc_range_clear(&rg);
  free(r.body);
  return rc;
}

/* The end of the range of every key with this prefix: the prefix with its last byte plus one
 * (etcd's clientv3.GetPrefixRangeEnd); "\0" (all keys) for a prefix of only 0xff bytes. */
static char *prefix_end_b64(const char *prefix) {
  size_t n = strlen(prefix);
  _cleanup_free_ char *end = vs_strdup(prefix);
  while (n > 0) {
    if ((unsigned char)end[n - 1] < 0xff) {
      end[n - 1] = (char)((unsigned char)end[n - 1] + 1);
      return vc_base64_encode(end, n);
    }
    n--;
  }
  return vc_base64_encode("", 1);
}

/* {key, range_end}: one key, or every key under it as a prefix (ranges, deletes). */
static json_t *key_range(const char *key, bool prefix) {
  json_t *req = json_object();
  json_object_set_new(req, "key", b64_string(key));
  if (prefix) {
    char *end = prefix_end_b64(key);
    json_object_set_new(req, "range_end", json_string(end));
    free(end);
  }
  return req;
}

static json_t *range_request(const char *key, bool prefix, int64_t limit) {
  json_t *req = key_range(key, prefix);
  if (limit > 0)
    json_object_set_new(req, "limit", json_integer(limit));
  return req;
}

int vc_etcd_get_prefix(vc_etcd *e, const char *prefix, int64_t limit, vc_range *out,
                       vs_error **err) {
  memset(out, 0, sizeof(*out));
  reply r = {0};
  if (call(e, "/v3/kv/range", range_request(prefix, true, limit), &r, err) < 0)
    return vs_error_wrap(err, "etcd get %s*", prefix);
  int rc = vc_parse_range(r.body, r.len, out, err);
  free(r.body);
  return rc < 0 ? vs_error_wrap(err, "etcd get %s*", prefix) : 0;
}

int vc_etcd_get(vc_etcd *e, const char *key, vc_range *out, vs_error **err) {
  memset(out, 0, sizeof(*out));
  reply r = {0};
  if (call(e, "/v3/kv/range", range_request(key, false, 0), &r, err) < 0)
    return vs_error_wrap(err, "etcd get %s", key);
  int rc = vc_parse_range(r.body, r.len, out, err);
  free(r.body);
  return rc < 0 ? vs_error_wrap(err, "etcd get %s", key) : 0;
}

static json_t *put_request(const char *key, const char *value, size_t len, int64_t lease) {
  json_t *req = json_object();
  char *v = vc_base64_encode(value, len);
  json_object_set_new(req, "key", b64_string(key));
  json_object_set_new(req, "value", json_string(v));
  free(v);
  if (lease)
    json_object_set_new(req, "lease", json_integer(lease));
  return req;
}

int vc_etcd_put(vc_etcd *e, const char *key, const char *value, size_t len, int64_t lease,
                int64_t *revision, vs_error **err) {
  reply r = {0};
  int64_t rev = 0;
  if (call(e, "/v3/kv/put", put_request(key, value, len, lease), &r, err) < 0)
    return vs_error_wrap(err, "etcd put %s", key);
  int rc = vc_parse_put(r.body, r.len, &rev, err);
  free(r.body);
  if (rc < 0)
    return vs_error_wrap(err, "etcd put %s", key);
  if (revision)
    *revision = rev;
  return 0;
}

/* The compare of a compare-and-swap: key's mod_revision == expected, or create_revision == 0
 * (the key does not exist) when expected is 0. */
static json_t *revision_compare(const char *key, int64_t expected) {
  json_t *cmp = json_object();
  json_object_set_new(cmp, "key", b64_string(key));
  json_object_set_new(cmp, "result", json_string("EQUAL"));
  json_object_set_new(cmp, "target", json_string(expected ? "MOD" : "CREATE"));
  json_object_set_new(cmp, expected ? "mod_revision" : "create_revision", json_integer(expected));
  return cmp;
}

int vc_etcd_put_all_if(vc_etcd *e, const vc_put *puts, size_t n, bool *succeeded, int64_t *revision,
                       vs_error **err) {
  if (n == 0 || n > 128)
    return vs_error_set(err, EINVAL, "etcd txn: %zu puts (1 to 128)", n);
  json_t *cmps = json_array(), *ops = json_array();
  for (size_t i = 0; i < n; i++) {
    json_array_append_new(cmps, revision_compare(puts[i].key, puts[i].expected_mod_revision));
    if (puts[i].value) /* NULL: a guard, compared and not written */
      json_array_append_new(
          ops, json_pack("{s:o}", "request_put",
                         put_request(puts[i].key, puts[i].value, puts[i].len, puts[i].lease)));
  }
  json_t *req = json_pack("{s:o, s:o}", "compare", cmps, "success", ops);
  reply r = {0};
  if (call(e, "/v3/kv/txn", req, &r, err) < 0)
    return vs_error_wrap(err, "etcd txn of %zu puts (first %s)", n, puts[0].key);
  int64_t rev = 0;
  int rc = vc_parse_txn(r.body, r.len, succeeded, &rev, NULL, err);
  free(r.body);
  if (rc < 0)
    return vs_error_wrap(err, "etcd txn of %zu puts (first %s)", n, puts[0].key);
  if (revision)
    *revision = rev;
  return 0;
}

/* A txn whose only compare is key's mod_revision == expected (create_revision == 0 when
 * expected is 0, i.e. the key does not exist), with `success` as its then-branch and a range of
 * the key as its else-branch. */
static int txn_if(vc_etcd *e, const char *key, int64_t expected, json_t *success, bool *succeeded,
                  vc_range *current, int64_t *revision, vs_error **err) {
  json_t *cmp = revision_compare(key, expected);
  json_t *req = json_object();
  json_object_set_new(req, "compare", json_pack("[o]", cmp));
  json_object_set_new(req, "success", json_pack("[o]", success));
  json_object_set_new(req, "failure",
                      json_pack("[{s:o}]", "request_range", range_request(key, false, 0)));
  reply r = {0};
  if (call(e, "/v3/kv/txn", req, &r, err) < 0)
    return -1;
  int64_t rev = 0;
  vc_range got;
  int rc = vc_parse_txn(r.body, r.len, succeeded, &rev, &got, err);
  free(r.body);
  if (rc < 0)
    return -1;
  if (current)
    *current = got;
  else
    vc_range_clear(&got);
  if (revision)
    *revision = rev;
  return 0;
}

int vc_etcd_put_if(vc_etcd *e, const char *key, const char *value, size_t len, int64_t lease,
                   int64_t expected_mod_revision, bool *succeeded, vc_range *current,
                   int64_t *revision, vs_error **err) {
  if (current)
    memset(current, 0, sizeof(*current));
  json_t *op = json_pack("{s:o}", "request_put", put_request(key, value, len, lease));
  if (txn_if(e, key, expected_mod_revision, op, succeeded, current, revision, err) < 0)
    return vs_error_wrap(err, "etcd put %s (if at revision %lld)", key,
                         (long long)expected_mod_revision);
  return 0;
}

int vc_etcd_put_if_quiet(vc_etcd *e, const char *key, const char *value, size_t len,
                         int64_t expected_mod_revision, const char *prefix, int64_t since,
                         bool *succeeded, int64_t *revision, vs_error **err) {
  /* etcd compares every key of a compare's range: all of them last written before since+1 */
  json_t *quiet = key_range(prefix, true);
  json_object_set_new(quiet, "result", json_string("LESS"));
  json_object_set_new(quiet, "target", json_string("MOD"));
  json_object_set_new(quiet, "mod_revision", json_integer(since + 1));
  json_t *req =
      json_pack("{s:[o, o], s:[{s:o}]}", "compare", revision_compare(key, expected_mod_revision),
                quiet, "success", "request_put", put_request(key, value, len, 0));
  reply r = {0};
  if (call(e, "/v3/kv/txn", req, &r, err) < 0)
    return vs_error_wrap(err, "etcd put %s (if at revision %lld and %s* unchanged since %lld)", key,
                         (long long)expected_mod_revision, prefix, (long long)since);
  int64_t rev = 0;
  int rc = vc_parse_txn(r.body, r.len, succeeded, &rev, NULL, err);
  free(r.body);
  if (rc < 0)
    return vs_error_wrap(err, "etcd put %s (if at revision %lld)", key,
                         (long long)expected_mod_revision);
  if (revision)
    *revision = rev;
  return 0;
}

int vc_etcd_delete(vc_etcd *e, const char *key, bool prefix, int64_t *deleted, vs_error **err) {
  reply r = {0};
  int64_t rev = 0, n = 0;
  if (call(e, "/v3/kv/deleterange", key_range(key, prefix), &r, err) < 0)
    return vs_error_wrap(err, "etcd delete %s%s", key, prefix ? "*" : "");
  int rc = vc_parse_delete(r.body, r.len, &rev, &n, err);
  free(r.body);
  if (rc < 0)
    return vs_error_wrap(err, "etcd delete %s%s", key, prefix ? "*" : "");
  if (deleted)
    *deleted = n;
  return 0;
}

int vc_etcd_delete_if(vc_etcd *e, const char *key, int64_t expected_mod_revision, bool *succeeded,
                      vs_error **err) {
  json_t *op = json_pack("{s:o}", "request_delete_range", key_range(key, false));
  if (txn_if(e, key, expected_mod_revision, op, succeeded, NULL, NULL, err) < 0)
    return vs_error_wrap(err, "etcd delete %s (if at revision %lld)", key,
                         (long long)expected_mod_revision);
  return 0;
}

int vc_etcd_lease_grant(vc_etcd *e, int64_t ttl, int64_t *id, vs_error **err) {
  reply r = {0};
  int64_t got_ttl = 0;
  if (call(e, "/v3/lease/grant", json_pack("{s:I}", "TTL", (json_int_t)ttl), &r, err) < 0)
    return vs_error_wrap(err, "etcd lease grant");
  int rc = vc_parse_lease(r.body, r.len, id, &got_ttl, err);
  free(r.body);
  if (rc == 0 && *id == 0)
    rc = vs_error_set(err, EIO, "the reply has no lease ID");
  return rc < 0 ? vs_error_wrap(err, "etcd lease grant") : 0;
}

int vc_etcd_lease_keepalive(vc_etcd *e, int64_t id, int64_t *ttl, vs_error **err) {
  reply r = {0};
  int64_t got = 0;
  if (call(e, "/v3/lease/keepalive", json_pack("{s:I}", "ID", (json_int_t)id), &r, err) < 0)
    return vs_error_wrap(err, "etcd lease keepalive %llx", (unsigned long long)id);
  int rc = vc_parse_lease(r.body, r.len, &got, ttl, err);
  free(r.body);
  return rc < 0 ? vs_error_wrap(err, "etcd lease keepalive %llx", (unsigned long long)id) : 0;
}

int vc_etcd_lease_revoke(vc_etcd *e, int64_t id, vs_error **err) {
  reply r = {0};
  if (call(e, "/v3/lease/revoke", json_pack("{s:I}", "ID", (json_int_t)id), &r, err) < 0)
    return vs_error_wrap(err, "etcd lease revoke %llx", (unsigned long long)id);
  int64_t rev = 0;
  int rc = vc_parse_put(r.body, r.len, &rev, err);
  free(r.body);
  return rc < 0 ? vs_error_wrap(err, "etcd lease revoke %llx", (unsigned long long)id) : 0;
}

/* ------------------------------------------------------------------------- watch */

typedef struct watch_state {
  vc_watch_cb cb;
  void *arg;
  const volatile bool *stop;
  char *line;
  size_t len;
  bool done, failed, created;
  vs_error *err;
} watch_state;

/* The gateway streams one JSON object per message, separated by newlines. */
static int watch_line(watch_state *w, const char *s, size_t n) {
  while (n > 0 && (s[n - 1] == '\r' || s[n - 1] == ' '))
    n--;
  if (n == 0)
    return 0;
  vc_watch_msg m;
  if (vc_parse_watch(s, n, &m, &w->err) < 0) {
    w->failed = true;
    return -1;
  }
  if (m.canceled || m.compact_revision) {
    vs_error_set(&w->err, ECANCELED, "etcd cancelled the watch%s%s%s",
                 m.compact_revision ? " (its start revision was compacted)" : "",
                 m.cancel_reason ? ": " : "", m.cancel_reason ? m.cancel_reason : "");
    vc_watch_msg_clear(&m);
    w->failed = true;
    return -1;
  }
  if (m.created)
    w->created = true;
  int stop = w->cb(w->arg, &m);
  vc_watch_msg_clear(&m);
  if (stop) {
    w->done = true;
    return -1;
  }
  return 0;
}

static size_t on_watch_data(char *data, size_t size, size_t n, void *arg) {
  watch_state *w = arg;
  size_t len = size * n;
  if (w->len + len > MAX_WATCH_LINE) {
    vs_error_set(&w->err, EMSGSIZE, "a watch message longer than %u MiB", MAX_WATCH_LINE >> 20);
    w->failed = true;
    return 0;
  }
  w->line = vs_realloc(w->line, w->len + len + 1);
  memcpy(w->line + w->len, data, len);
  w->len += len;
  size_t start = 0;
  for (size_t i = 0; i < w->len; i++) {
    if (w->line[i] != '\n')
      continue;
    if (watch_line(w, w->line + start, i - start) < 0)
      return 0;
    start = i + 1;
  }
  memmove(w->line, w->line + start, w->len - start);
  w->len -= start;
  return len;
}

static int on_watch_progress(void *arg, curl_off_t a, curl_off_t b, curl_off_t c, curl_off_t d) {
  const watch_state *w = arg;
  return w->stop && *w->stop ? 1 : 0;
}

int vc_etcd_watch(vc_etcd *e, const char *key, bool prefix, int64_t start_revision, vc_watch_cb cb,
                  void *arg, const volatile bool *stop, long timeout_ms, vs_error **err) {
  json_t *create = range_request(key, prefix, 0);
  if (start_revision > 0)
    json_object_set_new(create, "start_revision", json_integer(start_revision));
  json_t *req = json_pack("{s:o}", "create_request", create);
  _cleanup_free_ char *body = json_dumps(req, JSON_COMPACT);
  json_decref(req);
  pthread_mutex_lock(&e->lock);
  _cleanup_free_ char *url = vs_asprintf("%s/v3/watch", e->endpoints[e->current]);
  if (e->user && !e->token) {
    vs_error *one = NULL;
    if (authenticate_locked(e, e->endpoints[e->current], &one) < 0) {
      pthread_mutex_unlock(&e->lock);
      *err = one;
      return vs_error_wrap(err, "etcd watch %s", key);
    }
  }
  _cleanup_free_ char *auth = e->token ? vs_asprintf("Authorization: %s", e->token) : NULL;
  pthread_mutex_unlock(&e->lock);
  CURL *h = curl_easy_init();
  struct curl_slist *hd = curl_slist_append(NULL, "Content-Type: application/json");
  if (auth)
    hd = curl_slist_append(hd, auth);
  watch_state w = {.cb = cb, .arg = arg, .stop = stop};
  curl_easy_setopt(h, CURLOPT_URL, url);
  curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 2000L);
  if (timeout_ms > 0)
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout_ms);
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, hd);
  curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_watch_data);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &w);
  curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_watch_progress);
  curl_easy_setopt(h, CURLOPT_XFERINFODATA, &w);
  set_tls(e, h);
  CURLcode cc = curl_easy_perform(h);
  curl_slist_free_all(hd);
  curl_easy_cleanup(h);
  free(w.line);
  if (w.done || (stop && *stop) || (cc == CURLE_OPERATION_TIMEDOUT && !w.err && w.created)) {
    vs_error_free(w.err);
    return 0;
  }
  if (w.err) {
    *err = w.err;
    return vs_error_wrap(err, "etcd watch %s at %s", key, url);
  }
  /* the member went away: the next watch (and call) tries the next one */
  if (cc != CURLE_OK && transport_errno(cc) != EPROTO && e->n_endpoints > 1) {
    pthread_mutex_lock(&e->lock);
    if (!strncmp(url, e->endpoints[e->current], strlen(e->endpoints[e->current])))
      e->current = (e->current + 1) % e->n_endpoints;
    pthread_mutex_unlock(&e->lock);
  }
  return vs_error_set(err, EIO, "etcd watch %s at %s: %s", key, url,
                      cc == CURLE_OK ? "the stream ended" : curl_easy_strerror(cc));
}
