/* The web console's authentication: the password (a salted PBKDF2-SHA256 hash under the data
 * root, set through the root-only unix socket), sessions (random cookies with a CSRF token each,
 * ended after --web-session-ttl seconds of inactivity or when the password changes) and the
 * rate limit of failed logins. Sessions live in memory: a restarted daemon asks to log in again. */
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

static void session_drop(vd_web *w, size_t i) {
  memset(&w->sessions[i], 0, sizeof(w->sessions[i]));
  w->sessions[i] = w->sessions[--w->n_sessions];
}

vd_web_session *vd_web_session_get(vd_web *w, const http_request *req, const char **why) {
  *why = "login required";
  char token[65];
  const char *cookie = http_header_get(req, "Cookie");
  if (!cookie || !cookie_value(cookie, "vessel_session", token, sizeof(token)))
    return NULL;
  long long now = mono_now();
  for (size_t i = 0; i < w->n_sessions; i++) {
    vd_web_session *s = &w->sessions[i];
    if (!vd_web_token_equal(s->token, token))
      continue;
    if (now - s->last_used > w->session_ttl || s->gen != passwd_gen(w->d)) {
      *why = "session expired; log in again";
      session_drop(w, i);
      return NULL;
    }
    s->last_used = now;
    return s;
  }
  return NULL;
}

vd_web_session *vd_web_session_new(vd_web *w) {
  long long now = mono_now();
  /* make room: expired sessions go first, then the least recently used */
  for (size_t i = 0; i < w->n_sessions;) {
    if (now - w->sessions[i].last_used > w->session_ttl)
      session_drop(w, i);
    else
      i++;
  }
  if (w->n_sessions == VD_WEB_MAX_SESSIONS) {
    size_t oldest = 0;
    for (size_t i = 1; i < w->n_sessions; i++)
      if (w->sessions[i].last_used < w->sessions[oldest].last_used)
        oldest = i;
    session_drop(w, oldest);
  }
  vd_web_session *s = &w->sessions[w->n_sessions++];
  _cleanup_free_ char *token = vd_random_id();
  _cleanup_free_ char *csrf = vd_random_id();
  memcpy(s->token, token, 65);
  memcpy(s->csrf, csrf, 65);
  s->last_used = now;
  s->gen = passwd_gen(w->d);
  return s;
}

void vd_web_session_end(vd_web *w, vd_web_session *s) {
  size_t i = (size_t)(s - w->sessions);
  if (i < w->n_sessions)
    session_drop(w, i);
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
  vd_call_status(c, 204);
}
