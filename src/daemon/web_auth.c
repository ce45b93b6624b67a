/* The web console's authentication: the password (a salted PBKDF2-SHA256 hash under the data
 * root, set through the root-only unix socket), sessions (random cookies with a CSRF token each,
 * ended after --web-session-ttl seconds of inactivity or when the password changes) and the
 * rate limit of failed logins. Sessions live in memory and in DATA_ROOT/web/sessions.json (0600,
 * the cookies only as their SHA-256), so that a restarted daemon keeps them. */
#include "daemon/web.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define SALT_BYTES 16
#define HASH_BYTES 32
#define MAX_PASSWORD 1024

static long long mono_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec;
}

bool vd_web_token_equal(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  return la == lb && CRYPTO_memcmp(a, b, la) == 0;
}

static unsigned passwd_gen(vd_daemon *d) {
  return __atomic_load_n(&d->web_passwd_gen, __ATOMIC_ACQUIRE);
}

/* ---------------------------------------------------------------- sessions */

/* The value of cookie `name` in a Cookie header ("a=1; b=2"), copied into out. */
static bool cookie_value(const char *header, const char *name, char *out, size_t size) {
  size_t nl = strlen(name);
  for (const char *p = header; p && *p;) {
    while (*p == ' ' || *p == ';')
      p++;
    const char *end = strchr(p, ';');
    size_t len = end ? (size_t)(end - p) : strlen(p);
    if (len > nl && !strncmp(p, name, nl) && p[nl] == '=') {
      size_t vl = len - nl - 1;
      if (vl >= size)
        return false;
      memcpy(out, p + nl + 1, vl);
      out[vl] = 0;
      return true;
    }
    p = end;
  }
  return false;
}

static long long real_now(void) { return (long long)time(NULL); }

static void token_sha(const char *token, char out[65]) {
  vs_sha256_ctx ctx;
  vs_sha256_init(&ctx);
  vs_sha256_update(&ctx, token, strlen(token));
  vs_sha256_final(&ctx, out);
}

static void session_drop(vd_web *w, size_t i) {
  OPENSSL_cleanse(&w->sessions[i], sizeof(w->sessions[i]));
  w->sessions[i] = w->sessions[--w->n_sessions];
}

/* A session that ended while streams or terminals ran under it: they end too. */
static void session_ended(vd_web *w, size_t i) {
  uint64_t serial = w->sessions[i].serial;
  session_drop(w, i);
  vd_web_end_session_streams(w->d, serial);
}

vd_web_session *vd_web_session_get(vd_web *w, const http_request *req, const char **why) {
  *why = "login required";
  char token[65], sha[65];
  const char *cookie = http_header_get(req, "Cookie");
  if (!cookie || !cookie_value(cookie, "vessel_session", token, sizeof(token)))
    return NULL;
  token_sha(token, sha);
  OPENSSL_cleanse(token, sizeof(token));
  long long now = mono_now();
  for (size_t i = 0; i < w->n_sessions; i++) {
    vd_web_session *s = &w->sessions[i];
    if (!vd_web_token_equal(s->token_sha, sha))
      continue;
    if (now - s->last_used > w->session_ttl || s->gen != passwd_gen(w->d)) {
      *why = "session expired; log in again";
      session_ended(w, i);
      vd_web_sessions_save(w);
      return NULL;
    }
    s->last_used = now;
    if (now - w->saved_at >= VD_WEB_SAVE_EVERY)
      vd_web_sessions_save(w);
    return s;
  }
  return NULL;
}

/* A new slot: expired sessions go first, then the least recently used. */
static vd_web_session *session_slot(vd_web *w, long long now) {
  for (size_t i = 0; i < w->n_sessions;) {
    if (now - w->sessions[i].last_used > w->session_ttl)
      session_ended(w, i);
    else
      i++;
  }
  if (w->n_sessions == VD_WEB_MAX_SESSIONS) {
    size_t oldest = 0;
    for (size_t i = 1; i < w->n_sessions; i++)
      if (w->sessions[i].last_used < w->sessions[oldest].last_used)
        oldest = i;
    session_ended(w, oldest);
  }
  vd_web_session *s = &w->sessions[w->n_sessions++];
  memset(s, 0, sizeof(*s));
  s->serial = ++w->next_serial;
  return s;
}

vd_web_session *vd_web_session_new(vd_web *w, char **token) {
  long long now = mono_now();
  vd_web_session *s = session_slot(w, now);
  *token = vd_random_id();
  _cleanup_free_ char *csrf = vd_random_id();
  token_sha(*token, s->token_sha);
  memcpy(s->csrf, csrf, 65);
  s->last_used = now;
  s->gen = passwd_gen(w->d);
  vd_web_sessions_save(w);
  return s;
}

void vd_web_session_end(vd_web *w, vd_web_session *s) {
  size_t i = (size_t)(s - w->sessions);
  if (i < w->n_sessions) {
    session_ended(w, i);
    vd_web_sessions_save(w);
  }
}

void vd_web_password_changed(vd_daemon *d) {
  vd_web *w = d->web;
  if (!w)
    return;
  for (size_t i = 0; i < w->n_sessions;) {
    if (w->sessions[i].gen != passwd_gen(d))
      session_ended(w, i);
    else
      i++;
  }
  vd_web_sessions_save(w);
}

/* ---- kept across restarts */

/* What the sessions were made under: the password record's SHA-256 ("" when there is none). A
 * new password makes the saved sessions another record's, which are not taken back. */
static void password_fingerprint(const vd_web *w, char out[65]) {
  _cleanup_free_ char *rec = NULL;
  size_t len = 0;
  out[0] = 0;
  if (vs_read_file(w->passwd_path, 4096, &rec, &len, NULL) < 0)
    return;
  vs_sha256_ctx ctx;
  vs_sha256_init(&ctx);
  vs_sha256_update(&ctx, rec, len);
  vs_sha256_final(&ctx, out);
}

void vd_web_sessions_save(vd_web *w) {
  long long now = mono_now(), real = real_now();
  w->saved_at = now;
  char fp[65];
  password_fingerprint(w, fp);
  json_t *list = json_array();
  for (size_t i = 0; i < w->n_sessions; i++) {
    const vd_web_session *s = &w->sessions[i];
    if (s->gen != passwd_gen(w->d) || !fp[0])
      continue;
    json_array_append_new(list,
                          json_pack("{s:s, s:s, s:I}", "TokenSHA256", s->token_sha, "CSRF", s->csrf,
                                    "LastUsed", (json_int_t)(real - (now - s->last_used))));
  }
  _cleanup_json_ json_t *doc = json_pack("{s:s, s:o}", "Password", fp, "Sessions", list);
  vs_error *e = NULL;
  if (vs_json_write_file(w->sessions_path, doc, 0600, &e) < 0) {
    vs_log_warn("web: keep the sessions: %s", e->msg);
    vs_error_free(e);
  }
}

static bool hex64(const char *s) {
  if (!s || strlen(s) != 64)
    return false;
  for (size_t i = 0; i < 64; i++)
    if (vs_hex_digit(s[i]) < 0)
      return false;
  return true;
}

void vd_web_sessions_load(vd_web *w) {
  vs_error *e = NULL;
  _cleanup_json_ json_t *doc = vs_json_load_file(w->sessions_path, (size_t)1 << 20, &e);
  if (!doc) {
    if (e && e->errnum != ENOENT)
      vs_log_warn("web: saved sessions not taken back: %s", e->msg);
    vs_error_free(e);
    return;
  }
  char fp[65];
  password_fingerprint(w, fp);
  const char *was = json_string_value(json_object_get(doc, "Password"));
  if (!fp[0] || !was || strcmp(was, fp) != 0)
    return; /* made under another password (or none is set now) */
  long long now = mono_now(), real = real_now();
  size_t i;
  json_t *j;
  json_array_foreach(json_object_get(doc, "Sessions"), i, j) {
    const char *sha = json_string_value(json_object_get(j, "TokenSHA256"));
    const char *csrf = json_string_value(json_object_get(j, "CSRF"));
    json_t *used = json_object_get(j, "LastUsed");
    if (!hex64(sha) || !hex64(csrf) || !json_is_integer(used) ||
        w->n_sessions == VD_WEB_MAX_SESSIONS)
      continue;
    long long idle = real - (long long)json_integer_value(used);
    if (idle < 0) /* the clock went back: as if used now */
      idle = 0;
    if (idle > w->session_ttl)
      continue;
    vd_web_session *s = &w->sessions[w->n_sessions++];
    memset(s, 0, sizeof(*s));
    memcpy(s->token_sha, sha, 65);
    memcpy(s->csrf, csrf, 65);
    s->last_used = now - idle;
    s->gen = passwd_gen(w->d);
    s->serial = ++w->next_serial;
  }
  if (w->n_sessions)
    vs_log_info("web: %zu session(s) taken back from %s", w->n_sessions, w->sessions_path);
}

/* ---------------------------------------------------------------- the login rate limit */

long long vd_web_login_wait(vd_web *w, const char *addr) {
  long long now = mono_now();
  size_t keep = 0;
  for (size_t i = 0; i < w->n_fails; i++) /* forget what left the window */
    if (now - w->fails[i].when < VD_WEB_LOGIN_WINDOW)
      w->fails[keep++] = w->fails[i];
  w->n_fails = keep;
  size_t mine = 0;
  long long oldest_mine = now, oldest = now;
  for (size_t i = 0; i < w->n_fails; i++) {
    if (w->fails[i].when < oldest)
      oldest = w->fails[i].when;
    if (!strcmp(w->fails[i].addr, addr)) {
      mine++;
      if (w->fails[i].when < oldest_mine)
        oldest_mine = w->fails[i].when;
    }
  }
  long long wait = 0;
  if (mine >= VD_WEB_LOGIN_MAX_PER_ADDR)
    wait = oldest_mine + VD_WEB_LOGIN_WINDOW - now;
  if (w->n_fails >= VD_WEB_LOGIN_MAX_ALL && oldest + VD_WEB_LOGIN_WINDOW - now > wait)
    wait = oldest + VD_WEB_LOGIN_WINDOW - now;
  bool limited = mine >= VD_WEB_LOGIN_MAX_PER_ADDR || w->n_fails >= VD_WEB_LOGIN_MAX_ALL;
  if (limited && wait < 1) /* the window ends within this second */
    wait = 1;
  return limited ? wait : 0;
}

void vd_web_login_failed(vd_web *w, const char *addr) {
  if (w->n_fails == VD_WEB_FAILS_KEPT) { /* full of recent failures: the oldest goes */
    memmove(w->fails, w->fails + 1, sizeof(w->fails[0]) * (VD_WEB_FAILS_KEPT - 1));
    w->n_fails--;
  }
  vd_web_fail *f = &w->fails[w->n_fails++];
  f->when = mono_now();
  snprintf(f->addr, sizeof(f->addr), "%s", addr);
}

/* ---------------------------------------------------------------- the password */

static void hex(const unsigned char *b, size_t n, char *out) {
  for (size_t i = 0; i < n; i++)
    snprintf(out + 2 * i, 3, "%02x", b[i]);
}

static bool unhex(const char *s, unsigned char *out, size_t n) {
  if (!s || strlen(s) != 2 * n)
    return false;
  for (size_t i = 0; i < n; i++) {
    int hi = vs_hex_digit(s[2 * i]), lo = vs_hex_digit(s[2 * i + 1]);
    if (hi < 0 || lo < 0)
      return false;
    out[i] = (unsigned char)(hi << 4 | lo);
  }
  return true;
}

static int pbkdf2(const char *password, const unsigned char *salt, int iterations,
                  unsigned char out[HASH_BYTES], vs_error **err) {
  if (PKCS5_PBKDF2_HMAC(password, (int)strlen(password), salt, SALT_BYTES, iterations, EVP_sha256(),
                        HASH_BYTES, out) != 1)
    return vs_error_set(err, EINVAL, "PBKDF2-SHA256 failed");
  return 0;
}

int vd_web_password_check(const char *path, const char *password, vs_error **err) {
  json_t *j = vs_json_load_file(path, 4096, err);
  if (!j)
    return -1;
  int64_t iter = 0;
  const char *alg = NULL, *salt_hex = NULL, *hash_hex = NULL;
  unsigned char salt[SALT_BYTES], want[HASH_BYTES], got[HASH_BYTES];
  int r = -1;
  if (vs_json_get_string(j, "Algorithm", true, &alg, err) < 0 ||
      vs_json_get_int(j, "Iterations", true, &iter, err) < 0 ||
      vs_json_get_string(j, "Salt", true, &salt_hex, err) < 0 ||
      vs_json_get_string(j, "Hash", true, &hash_hex, err) < 0)
    goto out;
  if (strcmp(alg, "pbkdf2-sha256") != 0 || iter < 1 || iter > 100000000 ||
      !unhex(salt_hex, salt, SALT_BYTES) || !unhex(hash_hex, want, HASH_BYTES)) {
    vs_error_set(err, EINVAL, "%s: not a pbkdf2-sha256 password record", path);
    goto out;
  }
  if (pbkdf2(password, salt, (int)iter, got, err) < 0)
    goto out;
  r = CRYPTO_memcmp(got, want, HASH_BYTES) == 0;
out:
  json_decref(j);
  return r;
}

static void password_changed_run(vd_job *job) { (void)job; }

static void password_changed_done(vd_job *job) {
  vd_web_password_changed(job->d);
  free(job);
}

/* POST /vessel/v1/web/password {"Password": "..."} (worker): a new salt and hash, written
 * atomically with mode 0600; every web session ends. */
void vd_h_web_password(vd_call *c) {
  json_t *body = vd_call_body_object(c);
  if (!body)
    return;
  const char *pw = NULL;
  vs_error *e = NULL;
  if (vs_json_get_string(body, "Password", true, &pw, &e) < 0) {
    vd_call_error(c, 400, "%s", e->msg);
    vs_error_free(e);
    json_decref(body);
    return;
  }
  size_t len = strlen(pw);
  if (len < 8 || len > MAX_PASSWORD) {
    vd_call_error(c, 400, "the password must have 8 to %d characters", MAX_PASSWORD);
    json_decref(body);
    return;
  }
  unsigned char salt[SALT_BYTES], hash[HASH_BYTES];
  char salt_hex[2 * SALT_BYTES + 1], hash_hex[2 * HASH_BYTES + 1];
  _cleanup_free_ char *dir = vs_asprintf("%s/web", c->d->data_root);
  _cleanup_free_ char *path = vs_asprintf("%s/passwd", dir);
  if (RAND_bytes(salt, SALT_BYTES) != 1 ||
      pbkdf2(pw, salt, VD_WEB_PBKDF2_ITERATIONS, hash, &e) < 0) {
    vd_call_error(c, 500, "hash the password: %s", e ? e->msg : "no random bytes");
    vs_error_free(e);
    json_decref(body);
    return;
  }
  json_decref(body);
  hex(salt, SALT_BYTES, salt_hex);
  hex(hash, HASH_BYTES, hash_hex);
  _cleanup_json_ json_t *rec =
      json_pack("{s:s, s:i, s:s, s:s}", "Algorithm", "pbkdf2-sha256", "Iterations",
                VD_WEB_PBKDF2_ITERATIONS, "Salt", salt_hex, "Hash", hash_hex);
  if (vs_mkdir_p(dir, 0700, &e) < 0 || vs_json_write_file(path, rec, 0600, &e) < 0) {
    vd_call_error(c, 500, "store the password: %s", e->msg);
    vs_error_free(e);
    return;
  }
  __atomic_add_fetch(&c->d->web_passwd_gen, 1, __ATOMIC_ACQ_REL);
  vs_log_info("web: the password was changed; web sessions end");
  /* their streams and terminals too, which happens on the loop */
  vd_job *job = vs_malloc0(sizeof(*job));
  job->d = c->d;
  job->run = password_changed_run;
  job->done = password_changed_done;
  vd_job_submit(c->d, job);
  vd_call_status(c, 204);
}
