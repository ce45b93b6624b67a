/* Registry client: OCI distribution spec v2 pull and push over libcurl. */
#include "image/image.h"

#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define MAX_MANIFEST (4u << 20)
#define MAX_SMALL_REPLY (1u << 20)
#define CHUNK_THRESHOLD (64ull << 20)
#define CHUNK_SIZE (16ull << 20)
#define ATTEMPTS 3

static const char *const manifest_accept = "Accept: " VS_MT_OCI_MANIFEST ", " VS_MT_OCI_INDEX
                                           ", " VS_MT_DOCKER_MANIFEST ", " VS_MT_DOCKER_LIST;

typedef struct reg_client {
  vs_image_ref ref;
  char *display;       /* the reference as the user gave it, for messages */
  char *base;          /* "https://host:port" */
  char *auth;          /* "Authorization: ..." header, after a challenge */
  char *basic;         /* base64(user:password) from the auth file, or NULL */
  const char *actions; /* "pull" or "pull,push" */
  char *mount_from;    /* cross-repository mount source, for push */
  bool tls_verify;
  CURL *curl; /* reused for sequential requests: keeps the connection */
  const vs_registry_opts *o;
} reg_client;

typedef struct http_reply {
  long status;
  char *body;
  size_t len, max;
  bool too_big;
  char *content_type, *www_auth, *location, *digest;
  vs_blob_writer *writer; /* body goes here instead (blob downloads) */
  int64_t expect_size;
  vs_error *write_err;
} http_reply;

static void reply_clear(http_reply *r) {
  free(r->body);
  free(r->content_type);
  free(r->www_auth);
  free(r->location);
  free(r->digest);
  vs_error_free(r->write_err);
  memset(r, 0, sizeof(*r));
}

static bool is_loopback(const char *host) {
  return !strncmp(host, "localhost", 9) || !strncmp(host, "127.", 4) || !strncmp(host, "[::1]", 5);
}

/* ---------------------------------------------------------------- auth file */

static char *default_auth_file(void) {
  const char *e = getenv("REGISTRY_AUTH_FILE");
  if (e && *e)
    return vs_strdup(e);
  e = getenv("XDG_RUNTIME_DIR");
  if (e && *e)
    return vs_asprintf("%s/containers/auth.json", e);
  return vs_asprintf("/run/containers/%d/auth.json", (int)getuid());
}

static json_t *auth_entry(json_t *auths, const char *registry) {
  if (!json_is_object(auths))
    return NULL;
  json_t *e = json_object_get(auths, registry);
  if (!e && !strcmp(registry, "docker.io")) {
    e = json_object_get(auths, "https://index.docker.io/v1/");
  }
  if (!e) {
    _cleanup_free_ char *k = vs_asprintf("https://%s", registry);
    e = json_object_get(auths, k);
  }
  return json_is_object(e) ? e : NULL;
}

static char *load_credentials(const char *registry, const vs_registry_opts *o) {
  _cleanup_free_ char *primary = o->auth_file ? vs_strdup(o->auth_file) : default_auth_file();
  const char *home = getenv("HOME");
  _cleanup_free_ char *docker = home ? vs_asprintf("%s/.docker/config.json", home) : NULL;
  const char *files[] = {primary, o->auth_file ? NULL : docker};
  for (size_t i = 0; i < ARRAY_SIZE(files); i++) {
    if (!files[i])
      continue;
    json_t *j = json_load_file(files[i], 0, NULL);
    json_t *e = auth_entry(json_object_get(j, "auths"), registry);
    const char *a = json_string_value(json_object_get(e, "auth"));
    char *r = a && *a ? vs_strdup(a) : NULL;
    json_decref(j);
    if (r)
      return r;
  }
  return NULL;
}

static char *base64(const char *s) {
  size_t n = strlen(s);
  char *out = vs_malloc0(4 * ((n + 2) / 3) + 1);
  EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)s, (int)n);
  return out;
}

#define MAX_AUTH_HEADER 16384

int vs_registry_auth_decode(const char *header, char **basic, vs_error **err) {
  *basic = NULL;
  size_t n = strlen(header);
  if (n > MAX_AUTH_HEADER)
    return vs_error_set(err, EINVAL, "X-Registry-Auth: longer than %u bytes", MAX_AUTH_HEADER);
  /* URL-safe alphabet, padding optional: back to the standard form with padding */
  _cleanup_free_ char *std = vs_malloc0(n + 4);
  for (size_t i = 0; i < n; i++) {
    char ch = header[i];
    if (ch == '-')
      ch = '+';
    else if (ch == '_')
      ch = '/';
    if (!isalnum((unsigned char)ch) && ch != '+' && ch != '/' && ch != '=')
      return vs_error_set(err, EINVAL, "X-Registry-Auth: not base64 (character 0x%02x)",
                          (unsigned char)header[i]);
    std[i] = ch;
  }
  while (n % 4)
    std[n++] = '=';
  if (n == 0)
    return 0;
  _cleanup_free_ unsigned char *raw = vs_malloc0(n / 4 * 3 + 1);
  int len = EVP_DecodeBlock(raw, (const unsigned char *)std, (int)n);
  if (len < 0)
    return vs_error_set(err, EINVAL, "X-Registry-Auth: not base64");
  /* EVP_DecodeBlock counts the padding as zero bytes */
  for (size_t i = n; i > 0 && std[i - 1] == '=' && len > 0; i--)
    len--;
  json_error_t je;
  json_t *j = json_loadb((const char *)raw, (size_t)len, 0, &je);
  if (!json_is_object(j)) {
    json_decref(j);
    return vs_error_set(err, EINVAL, "X-Registry-Auth: not a JSON object: %s", je.text);
  }
  json_t *user = json_object_get(j, "username"), *pass = json_object_get(j, "password");
  int r = 0;
  if ((user && !json_is_string(user)) || (pass && !json_is_string(pass))) {
    r = vs_error_set(err, EINVAL, "X-Registry-Auth: username and password must be strings");
  } else if (user && *json_string_value(user)) {
    _cleanup_free_ char *up =
        vs_asprintf("%s:%s", json_string_value(user), pass ? json_string_value(pass) : "");
    *basic = base64(up);
  }
  json_decref(j);
  return r;
}

/* ---------------------------------------------------------------- curl plumbing */

static size_t on_body(char *data, size_t size, size_t nmemb, void *ctx) {
  http_reply *r = ctx;
  size_t n = size * nmemb;
  if (r->writer) {
    if (r->status >= 200 && r->status < 300) {
      if (r->expect_size >= 0 && vs_blob_writer_size(r->writer) + n > (uint64_t)r->expect_size) {
        vs_error_set(&r->write_err, 0, "registry sent more data than the blob's size");
        return 0;
      }
      if (vs_blob_writer_write(r->writer, data, n, &r->write_err) < 0)
        return 0;
      return n;
    }
  }
  if (r->len + n > r->max) {
    r->too_big = true;
    return 0;
  }
  r->body = vs_realloc(r->body, r->len + n + 1);
  memcpy(r->body + r->len, data, n);
  r->len += n;
  r->body[r->len] = 0;
  return n;
}

static char *header_value(const char *line, size_t n, const char *name) {
  size_t k = strlen(name);
  if (n <= k + 1 || strncasecmp(line, name, k) != 0 || line[k] != ':')
    return NULL;
  const char *v = line + k + 1;
  const char *end = line + n;
  while (v < end && isspace((unsigned char)*v))
    v++;
  while (end > v && isspace((unsigned char)end[-1]))
    end--;
  return vs_img_strndup(v, (size_t)(end - v));
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *ctx) {
  http_reply *r = ctx;
  size_t n = size * nmemb;
  char *v;
  if (n > 5 && !strncmp(data, "HTTP/", 5)) {
    /* a new response (redirect or 100-continue): forget the previous headers */
    long st = 0;
    const char *sp = memchr(data, ' ', n);
    if (sp)
      st = strtol(sp + 1, NULL, 10);
    r->status = st;
    free(r->www_auth);
    r->www_auth = NULL;
    free(r->location);
    r->location = NULL;
    free(r->content_type);
    r->content_type = NULL;
    free(r->digest);
    r->digest = NULL;
  } else if ((v = header_value(data, n, "WWW-Authenticate"))) {
    free(r->www_auth);
    r->www_auth = v;
  } else if ((v = header_value(data, n, "Location"))) {
    free(r->location);
    r->location = v;
  } else if ((v = header_value(data, n, "Content-Type"))) {
    free(r->content_type);
    r->content_type = v;
  } else if ((v = header_value(data, n, "Docker-Content-Digest"))) {
    free(r->digest);
    r->digest = v;
  }
  return n;
}

typedef struct upload_src {
  int fd;
  uint64_t left;
  /* progress of a layer upload (cb NULL: none) */
  vs_progress_fn cb;
  void *cb_ctx;
  const char *digest;
  uint64_t sent, total;
  struct timespec last;
} upload_src;

static void upload_progress(upload_src *u, size_t n) {
  u->sent += n;
  if (!u->cb)
    return;
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  double dt = (double)(now.tv_sec - u->last.tv_sec) + (double)(now.tv_nsec - u->last.tv_nsec) / 1e9;
  if (dt < 0.1 && u->sent < u->total)
    return;
  u->last = now;
  char id[13];
  snprintf(id, sizeof(id), "%.12s", u->digest + 7);
  u->cb(u->cb_ctx, id, "Pushing", u->sent, u->total);
}

static size_t on_upload_read(char *buf, size_t size, size_t nmemb, void *ctx) {
  upload_src *u = ctx;
  size_t want = size * nmemb;
  if (want > u->left)
    want = (size_t)u->left;
  if (!want)
    return 0;
  ssize_t n = read(u->fd, buf, want);
  if (n < 0)
    return CURL_READFUNC_ABORT;
  u->left -= (uint64_t)n;
  upload_progress(u, (size_t)n);
  return (size_t)n;
}

static void setup_easy(reg_client *c, CURL *h, const char *method, const char *url,
                       struct curl_slist *headers, http_reply *r) {
  curl_easy_reset(h);
  curl_easy_setopt(h, CURLOPT_URL, url);
  curl_easy_setopt(h, CURLOPT_USERAGENT, "vessel/0.1");
  curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(h, CURLOPT_MAXREDIRS, 5L);
  curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 30L);
  curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, 60L);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  if (!c->tls_verify) {
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
  }
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, r);
  curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(h, CURLOPT_HEADERDATA, r);
  if (!strcmp(method, "HEAD"))
    curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
  else if (strcmp(method, "GET") != 0)
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
  if (headers)
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
}

static struct curl_slist *with_auth(reg_client *c, struct curl_slist *extra) {
  struct curl_slist *l = NULL;
  for (struct curl_slist *e = extra; e; e = e->next)
    l = curl_slist_append(l, e->data);
  if (c->auth)
    l = curl_slist_append(l, c->auth);
  return l;
}

/* The "errors" array of a registry reply, as one readable string. */
static char *registry_error_text(const http_reply *r) {
  json_t *j = r->body ? json_loadb(r->body, r->len, 0, NULL) : NULL;
  json_t *errs = json_object_get(j, "errors");
  char *out = NULL;
  if (json_is_array(errs) && json_array_size(errs) > 0) {
    json_t *e = json_array_get(errs, 0);
    const char *code = json_string_value(json_object_get(e, "code"));
    const char *msg = json_string_value(json_object_get(e, "message"));
    out = vs_asprintf("%s%s%s", msg ? msg : "", msg && code ? " " : "", code ? code : "");
    if (msg && code) {
      free(out);
      out = vs_asprintf("%s (%s)", msg, code);
    }
  }
  json_decref(j);
  return out;
}

static int http_status_error(reg_client *c, const http_reply *r, const char *what, vs_error **err) {
  _cleanup_free_ char *detail = registry_error_text(r);
  const char *kind = r->status == 401   ? "authentication required or denied"
                     : r->status == 403 ? "access denied"
                     : r->status == 404 ? "not found"
                     : r->status == 429 ? "too many requests (rate limited)"
                     : r->status >= 500 ? "registry server error"
                                        : "unexpected reply";
  return vs_error_set(err, 0, "%s: %s: %s (HTTP %ld)%s%s", c->display, what, kind, r->status,
                      detail ? ": " : "", detail ? detail : "");
}

/* Parse `Bearer realm="...",service="...",scope="..."` into a small JSON object. */
static json_t *parse_challenge(const char *h, char **scheme) {
  const char *p = h;
  while (*p && !isspace((unsigned char)*p))
    p++;
  *scheme = vs_img_strndup(h, (size_t)(p - h));
  json_t *o = json_object();
  while (*p) {
    while (*p && (isspace((unsigned char)*p) || *p == ','))
      p++;
    const char *k = p;
    while (*p && *p != '=')
      p++;
    if (!*p)
      break;
    _cleanup_free_ char *key = vs_img_strndup(k, (size_t)(p - k));
    p++;
    char val[2048];
    size_t vn = 0;
    if (*p == '"') {
      p++;
      while (*p && *p != '"' && vn < sizeof(val) - 1) {
        if (*p == '\\' && p[1])
          p++;
        val[vn++] = *p++;
      }
      if (*p == '"')
        p++;
    } else {
      while (*p && *p != ',' && vn < sizeof(val) - 1)
        val[vn++] = *p++;
    }
    val[vn] = 0;
    for (char *q = key; *q; q++)
      *q = (char)tolower((unsigned char)*q);
    json_object_set_new(o, key, json_string(val));
  }
  return o;
}

static int fetch_token(reg_client *c, json_t *ch, vs_error **err) {
  const char *realm = json_string_value(json_object_get(ch, "realm"));
  const char *service = json_string_value(json_object_get(ch, "service"));
  if (!realm || strncmp(realm, "http", 4) != 0)
    return vs_error_set(err, 0, "%s: registry sent a Bearer challenge without a usable realm",
                        c->display);
  CURL *h = curl_easy_init();
  _cleanup_free_ char *scope = vs_asprintf("repository:%s:%s", c->ref.repository, c->actions);
  char *es = curl_easy_escape(h, scope, 0);
  char *esv = service ? curl_easy_escape(h, service, 0) : NULL;
  _cleanup_free_ char *url = vs_asprintf("%s%sscope=%s%s%s", realm, strchr(realm, '?') ? "&" : "?",
                                         es, esv ? "&service=" : "", esv ? esv : "");
  curl_free(es);
  curl_free(esv);
  http_reply r = {.max = MAX_SMALL_REPLY, .expect_size = -1};
  struct curl_slist *hd = NULL;
  if (c->basic) {
    _cleanup_free_ char *b = vs_asprintf("Authorization: Basic %s", c->basic);
    hd = curl_slist_append(hd, b);
  }
  setup_easy(c, h, "GET", url, hd, &r);
  CURLcode cc = curl_easy_perform(h);
  curl_slist_free_all(hd);
  curl_easy_cleanup(h);
  int ret = -1;
  if (cc != CURLE_OK) {
    vs_error_set(err, 0, "%s: token server %s: %s", c->display, realm, curl_easy_strerror(cc));
  } else if (r.status != 200) {
    vs_error_set(err, 0, "%s: token server %s refused (HTTP %ld)%s", c->display, realm, r.status,
                 c->basic ? "" : ": no credentials (vessel login)");
  } else {
    json_t *j = json_loadb(r.body ? r.body : "", r.len, 0, NULL);
    const char *tok = json_string_value(json_object_get(j, "token"));
    if (!tok)
      tok = json_string_value(json_object_get(j, "access_token"));
    if (!tok || !*tok || strpbrk(tok, "\r\n")) {
      vs_error_set(err, 0, "%s: token server reply has no token", c->display);
    } else {
      free(c->auth);
      c->auth = vs_asprintf("Authorization: Bearer %s", tok);
      ret = 0;
    }
    json_decref(j);
  }
  reply_clear(&r);
  return ret;
}

/* React to a 401 challenge; returns 0 when a retry makes sense. */
static int authenticate(reg_client *c, const char *www_auth, vs_error **err) {
  if (!www_auth)
    return vs_error_set(err, 0, "%s: registry requires authentication", c->display);
  _cleanup_free_ char *scheme = NULL;
  json_t *ch = parse_challenge(www_auth, &scheme);
  int r;
  if (scheme && !strcasecmp(scheme, "Bearer")) {
    r = fetch_token(c, ch, err);
  } else if (scheme && !strcasecmp(scheme, "Basic")) {
    if (!c->basic || (c->auth && strstr(c->auth, "Basic"))) {
      r = vs_error_set(err, 0, "%s: registry requires a login (vessel login %s)", c->display,
                       c->ref.registry);
    } else {
      free(c->auth);
      c->auth = vs_asprintf("Authorization: Basic %s", c->basic);
      r = 0;
    }
  } else {
    r = vs_error_set(err, 0, "%s: unsupported authentication scheme \"%s\"", c->display,
                     scheme ? scheme : "");
  }
  json_decref(ch);
  return r;
}

static bool retryable_status(long st) {
  return st == 429 || st == 502 || st == 503 || st == 504 || st == 500;
}

static void backoff(int attempt) {
  struct timespec ts = {.tv_sec = 0, .tv_nsec = 250000000L << attempt};
  if (ts.tv_nsec >= 1000000000L) {
    ts.tv_sec = ts.tv_nsec / 1000000000L;
    ts.tv_nsec %= 1000000000L;
  }
  nanosleep(&ts, NULL);
}

/* One request with authentication and retries (idempotent requests only are retried).
 * `upload` (may be NULL) streams a file region as the request body. */
static int reg_request(reg_client *c, const char *method, const char *url, struct curl_slist *extra,
                       const char *body, size_t body_len, upload_src *upload, http_reply *r,
                       vs_error **err) {
  bool idempotent = !strcmp(method, "GET") || !strcmp(method, "HEAD");
  bool auth_tried = false;
  off_t upload_start = upload ? lseek(upload->fd, 0, SEEK_CUR) : 0;
  uint64_t upload_len = upload ? upload->left : 0;
  for (int attempt = 0;; attempt++) {
    size_t max = r->max ? r->max : MAX_SMALL_REPLY;
    vs_blob_writer *w = r->writer;
    int64_t es = r->expect_size;
    reply_clear(r);
    r->max = max;
    r->writer = w;
    r->expect_size = es;
    struct curl_slist *hd = with_auth(c, extra);
    setup_easy(c, c->curl, method, url, hd, r);
    if (upload) {
      lseek(upload->fd, upload_start, SEEK_SET);
      upload->sent -= upload_len - upload->left; /* a retry sends the region again */
      upload->left = upload_len;
      curl_easy_setopt(c->curl, CURLOPT_UPLOAD, 1L);
      curl_easy_setopt(c->curl, CURLOPT_READFUNCTION, on_upload_read);
      curl_easy_setopt(c->curl, CURLOPT_READDATA, upload);
      curl_easy_setopt(c->curl, CURLOPT_INFILESIZE_LARGE, (curl_off_t)upload_len);
      curl_easy_setopt(c->curl, CURLOPT_CUSTOMREQUEST, method);
    } else if (body || (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)) {
      curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, body ? body : "");
      curl_easy_setopt(c->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
    }
    CURLcode cc = curl_easy_perform(c->curl);
    curl_slist_free_all(hd);
    if (cc != CURLE_OK) {
      if (r->write_err) {
        vs_error_set(err, r->write_err->errnum, "%s: %s", c->display, r->write_err->msg);
        return -1;
      }
      if (r->too_big)
        return vs_error_set(err, 0, "%s: reply to %s %s is too large", c->display, method, url);
      if (idempotent && attempt + 1 < ATTEMPTS) {
        vs_log_warn("%s: %s (retrying)", c->display, curl_easy_strerror(cc));
        backoff(attempt);
        continue;
      }
      return vs_error_set(err, 0, "%s: %s %s: %s", c->display, method, url, curl_easy_strerror(cc));
    }
    if (r->status == 401 && !auth_tried) {
      auth_tried = true;
      if (authenticate(c, r->www_auth, err) < 0)
        return -1;
      attempt--;
      continue;
    }
    if (retryable_status(r->status) && idempotent && attempt + 1 < ATTEMPTS) {
      vs_log_warn("%s: HTTP %ld from the registry (retrying)", c->display, r->status);
      backoff(attempt + (r->status == 429 ? 2 : 0));
      continue;
    }
    return 0;
  }
}

static int client_init(reg_client *c, const char *ref, const char *actions,
                       const vs_registry_opts *o, vs_error **err) {
  memset(c, 0, sizeof(*c));
  if (vs_image_ref_parse(ref, &c->ref, err) < 0)
    return -1;
  c->display = vs_image_ref_string(&c->ref);
  c->o = o;
  c->actions = actions;
  const char *host =
      !strcmp(c->ref.registry, "docker.io") ? "registry-1.docker.io" : c->ref.registry;
  bool insecure = o->tls_verify == 0 || is_loopback(host);
  c->tls_verify = o->tls_verify != 0;
  c->basic = o->credentials && *o->credentials ? vs_strdup(o->credentials)
                                               : load_credentials(c->ref.registry, o);
  c->curl = curl_easy_init();
  if (!insecure) {
    c->base = vs_asprintf("https://%s", host);
    return 0;
  }
  /* As docker does for insecure and loopback registries: HTTPS when it answers, else HTTP. */
  if (is_loopback(host))
    c->tls_verify = c->tls_verify && o->tls_verify != 0;
  c->base = vs_asprintf("https://%s", host);
  _cleanup_free_ char *url = vs_asprintf("%s/v2/", c->base);
  http_reply r = {.max = MAX_SMALL_REPLY, .expect_size = -1};
  bool saved = c->tls_verify;
  c->tls_verify = false;
  setup_easy(c, c->curl, "GET", url, NULL, &r);
  CURLcode cc = curl_easy_perform(c->curl);
  c->tls_verify = saved && o->tls_verify != 0 && !is_loopback(host) ? saved : false;
  reply_clear(&r);
  if (cc != CURLE_OK) {
    free(c->base);
    c->base = vs_asprintf("http://%s", host);
  }
  return 0;
}

static void client_clear(reg_client *c) {
  vs_image_ref_clear(&c->ref);
  free(c->display);
  free(c->base);
  free(c->auth);
  free(c->basic);
  free(c->mount_from);
  if (c->curl)
    curl_easy_cleanup(c->curl);
  memset(c, 0, sizeof(*c));
}

/* ---------------------------------------------------------------- progress */

typedef struct progress {
  bool tty, quiet;
  int fd;
  vs_progress_fn cb; /* Docker-style messages instead of text */
  void *cb_ctx;
  size_t n;
  char **names;
  char **state;
  uint64_t *done, *total;
  uint64_t *told; /* the byte count the callback last had, per layer */
  bool drawn;
  struct timespec last;
  pthread_mutex_t lock;
} progress;

static void progress_line(progress *p, size_t i, char *buf, size_t cap) {
  if (p->total[i] && !strcmp(p->state[i], "Downloading")) {
    int width = 30;
    int fill = (int)(p->done[i] * (uint64_t)width / p->total[i]);
    char bar[64];
    for (int k = 0; k < width; k++)
      bar[k] = (char)(k < fill ? '=' : (k == fill ? '>' : ' '));
    bar[width] = 0;
    snprintf(buf, cap, "%.12s: %-12s [%s] %6.1f/%.1f MB\033[K\n", p->names[i], p->state[i], bar,
             (double)p->done[i] / 1e6, (double)p->total[i] / 1e6);
  } else {
    snprintf(buf, cap, "%.12s: %s\033[K\n", p->names[i], p->state[i]);
  }
}

/* Whether a tenth of a second passed since the last byte count was reported. */
static bool progress_due(progress *p) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  double dt = (double)(now.tv_sec - p->last.tv_sec) + (double)(now.tv_nsec - p->last.tv_nsec) / 1e9;
  if (dt < 0.1)
    return false;
  p->last = now;
  return true;
}

static void progress_draw(progress *p, bool force) {
  if (p->quiet || !p->tty || p->cb)
    return;
  if (!progress_due(p) && !force)
    return;
  char buf[256];
  if (p->drawn) {
    snprintf(buf, sizeof(buf), "\033[%zuA", p->n);
    if (write(p->fd, buf, strlen(buf)) < 0)
      return;
  }
  for (size_t i = 0; i < p->n; i++) {
    progress_line(p, i, buf, sizeof(buf));
    if (write(p->fd, buf, strlen(buf)) < 0)
      return;
  }
  p->drawn = true;
}

/* A layer's state or byte count to the callback, with the short id Docker shows. */
static void progress_report(progress *p, size_t i, const char *state, uint64_t cur, uint64_t tot) {
  char id[13];
  snprintf(id, sizeof(id), "%.12s", p->names[i]);
  p->cb(p->cb_ctx, id, state, cur, tot);
}

static void progress_event(progress *p, size_t i, const char *state) {
  pthread_mutex_lock(&p->lock);
  free(p->state[i]);
  p->state[i] = vs_strdup(state);
  if (p->cb && !strcmp(state, "Downloading")) {
    progress_report(p, i, state, p->done[i], p->total[i]);
    p->told[i] = p->done[i];
  } else if (p->cb)
    progress_report(p, i, state, 0, 0);
  else if (!p->quiet && !p->tty)
    dprintf(p->fd, "%.12s: %s\n", p->names[i], state);
  progress_draw(p, true);
  pthread_mutex_unlock(&p->lock);
}

static void progress_init(progress *p, const vs_registry_opts *o, size_t n) {
  memset(p, 0, sizeof(*p));
  p->fd = o->progress_fd > 0 ? o->progress_fd : 2;
  p->tty = isatty(p->fd);
  p->quiet = o->quiet;
  p->cb = o->progress_cb;
  p->cb_ctx = o->progress_ctx;
  p->n = n;
  p->names = vs_malloc0(sizeof(char *) * (n + 1));
  p->state = vs_malloc0(sizeof(char *) * (n + 1));
  p->done = vs_malloc0(sizeof(uint64_t) * (n + 1));
  p->total = vs_malloc0(sizeof(uint64_t) * (n + 1));
  p->told = vs_malloc0(sizeof(uint64_t) * (n + 1));
  pthread_mutex_init(&p->lock, NULL);
}

static void progress_free(progress *p) {
  for (size_t i = 0; i < p->n; i++) {
    free(p->names[i]);
    free(p->state[i]);
  }
  free(p->names);
  free(p->state);
  free(p->done);
  free(p->total);
  free(p->told);
  pthread_mutex_destroy(&p->lock);
}

/* ---------------------------------------------------------------- pull */

static int fetch_manifest(reg_client *c, const char *reference, char **body, size_t *len,
                          char **ctype, char digest_out[VS_DIGEST_MAX], vs_error **err) {
  _cleanup_free_ char *url =
      vs_asprintf("%s/v2/%s/manifests/%s", c->base, c->ref.repository, reference);
  struct curl_slist *hd = curl_slist_append(NULL, manifest_accept);
  http_reply r = {.max = MAX_MANIFEST, .expect_size = -1};
  int ret = reg_request(c, "GET", url, hd, NULL, 0, NULL, &r, err);
  curl_slist_free_all(hd);
  if (ret < 0)
    goto out;
  ret = -1;
  if (r.status != 200) {
    http_status_error(c, &r, "manifest", err);
    goto out;
  }
  char got[VS_DIGEST_MAX];
  vs_digest_buffer(r.body ? r.body : "", r.len, got);
  if (reference && vs_digest_valid(reference) && strcmp(reference, got) != 0) {
    vs_error_set(err, 0, "%s: manifest %s does not match its digest (content is %s)", c->display,
                 reference, got);
    goto out;
  }
  if (r.digest && vs_digest_valid(r.digest) && strcmp(r.digest, got) != 0) {
    vs_error_set(err, 0,
                 "%s: manifest digest %s announced by the registry does not match "
                 "its content (%s)",
                 c->display, r.digest, got);
    goto out;
  }
  memcpy(digest_out, got, VS_DIGEST_MAX);
  *body = r.body ? steal_pointer(&r.body) : vs_strdup("");
  *len = r.len;
  *ctype = r.content_type ? vs_strdup(r.content_type) : NULL;
  if (*ctype)
    (*ctype)[strcspn(*ctype, ";")] = 0;
  ret = 0;
out:
  reply_clear(&r);
  return ret;
}

static int fetch_small_blob(reg_client *c, vs_store *s, const vs_descriptor *d, vs_error **err) {
  if (vs_store_has_blob(s, d->digest))
    return 0;
  if (d->size > (int64_t)MAX_MANIFEST)
    return vs_error_set(err, 0, "%s: config blob of %lld bytes is too large", c->display,
                        (long long)d->size);
  _cleanup_free_ char *url =
      vs_asprintf("%s/v2/%s/blobs/%s", c->base, c->ref.repository, d->digest);
  http_reply r = {.max = MAX_MANIFEST, .expect_size = -1};
  int ret = reg_request(c, "GET", url, NULL, NULL, 0, NULL, &r, err);
  if (ret == 0 && r.status != 200)
    ret = http_status_error(c, &r, d->digest, err);
  if (ret == 0 && vs_store_put_blob(s, d->digest, r.body ? r.body : "", r.len, NULL, err) < 0)
    ret = vs_error_wrap(err, "%s: blob %s", c->display, d->digest);
  reply_clear(&r);
  return ret;
}

typedef struct layer_job {
  reg_client *c;
  vs_store *store;
  size_t index;
  const vs_descriptor *desc;
  const char *diff_id;
  progress *prog;
  /* download */
  CURL *easy;
  http_reply reply;
  char *url;
  struct curl_slist *headers;
  int attempts;
  bool downloading, downloaded, failed;
  /* unpack */
  pthread_t thread;
  bool thread_started;
  vs_error *err;
} layer_job;

static void *unpack_thread(void *arg) {
  layer_job *j = arg;
  progress_event(j->prog, j->index, "Extracting");
  if (vs_store_unpack_layer(j->store, j->desc->digest, j->diff_id, &j->err) < 0) {
    progress_event(j->prog, j->index, "Failed");
    return NULL;
  }
  progress_event(j->prog, j->index, "Pull complete");
  return NULL;
}

static void start_unpack(layer_job *j) {
  if (pthread_create(&j->thread, NULL, unpack_thread, j) == 0)
    j->thread_started = true;
  else
    unpack_thread(j);
}

static int on_xfer(void *ctx, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ult,
                   curl_off_t uln) {
  layer_job *j = ctx;
  (void)dltotal;
  (void)ult;
  (void)uln;
  progress *p = j->prog;
  pthread_mutex_lock(&p->lock);
  p->done[j->index] = (uint64_t)dlnow;
  /* a count the tenth-of-a-second throttle held back goes out at a later call: curl goes on
   * calling while a transfer stalls, so the bytes that came before a stall are told during it
   * (not only once it ends, or once the low-speed limit gives up on it a minute later) */
  if (p->cb && p->told[j->index] != (uint64_t)dlnow && progress_due(p)) {
    progress_report(p, j->index, "Downloading", (uint64_t)dlnow, p->total[j->index]);
    p->told[j->index] = (uint64_t)dlnow;
  }
  progress_draw(p, false);
  pthread_mutex_unlock(&p->lock);
  return 0;
}

static int start_download(layer_job *j, CURLM *multi, vs_error **err) {
  j->reply = (http_reply){.max = MAX_SMALL_REPLY, .expect_size = j->desc->size};
  j->reply.writer = vs_blob_writer_new(j->store, err);
  if (!j->reply.writer)
    return -1;
  if (!j->easy)
    j->easy = curl_easy_init();
  curl_slist_free_all(j->headers);
  j->headers = with_auth(j->c, NULL);
  setup_easy(j->c, j->easy, "GET", j->url, j->headers, &j->reply);
  curl_easy_setopt(j->easy, CURLOPT_PRIVATE, j);
  curl_easy_setopt(j->easy, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(j->easy, CURLOPT_XFERINFOFUNCTION, on_xfer);
  curl_easy_setopt(j->easy, CURLOPT_XFERINFODATA, j);
  curl_multi_add_handle(multi, j->easy);
  j->downloading = true;
  j->attempts++;
  progress_event(j->prog, j->index, "Downloading");
  return 0;
}

/* A finished transfer: verify and store the blob, or decide to retry. */
static int finish_download(layer_job *j, CURLcode cc, bool *retry, vs_error **err) {
  *retry = false;
  http_reply *r = &j->reply;
  int ret = -1;
  if (cc != CURLE_OK) {
    if (r->write_err) {
      vs_error_set(err, r->write_err->errnum, "%s: layer %s: %s", j->c->display, j->desc->digest,
                   r->write_err->msg);
    } else if (j->attempts < ATTEMPTS) {
      vs_log_warn("%s: layer %.19s: %s (retrying)", j->c->display, j->desc->digest,
                  curl_easy_strerror(cc));
      *retry = true;
    } else {
      vs_error_set(err, 0, "%s: layer %s: download failed: %s", j->c->display, j->desc->digest,
                   curl_easy_strerror(cc));
    }
  } else if (r->status == 401 && j->attempts < ATTEMPTS &&
             authenticate(j->c, r->www_auth, err) == 0) {
    *retry = true;
  } else if (r->status != 200) {
    if (retryable_status(r->status) && j->attempts < ATTEMPTS)
      *retry = true;
    else if (r->status != 401)
      http_status_error(j->c, r, j->desc->digest, err);
  } else if (vs_blob_writer_size(r->writer) != (uint64_t)j->desc->size) {
    vs_error_set(err, 0, "%s: layer %s: got %llu bytes, manifest says %lld", j->c->display,
                 j->desc->digest, (unsigned long long)vs_blob_writer_size(r->writer),
                 (long long)j->desc->size);
  } else if (vs_blob_writer_commit(r->writer, j->desc->digest, NULL, err) < 0) {
    vs_error_wrap(err, "%s: layer %s", j->c->display, j->desc->digest);
  } else {
    ret = 0;
  }
  vs_blob_writer_free(r->writer);
  r->writer = NULL;
  reply_clear(r);
  return *retry ? 0 : ret;
}

/* A layer needs nothing after its download when it is unpacked already, or when it is a VM
 * image's file (kept as the blob itself). */
static bool layer_ready(vs_store *s, const layer_job *j) {
  return vs_media_type_is_vm_file(j->desc->media_type) || vs_store_has_layer(s, j->diff_id);
}

static int pull_layers(reg_client *c, vs_store *s, const vs_image *img, vs_error **err) {
  size_t n = img->manifest.n_layers;
  progress prog;
  progress_init(&prog, c->o, n);
  layer_job *jobs = vs_malloc0(sizeof(layer_job) * (n ? n : 1));
  CURLM *multi = curl_multi_init();
  int parallel = c->o->parallel > 0 ? c->o->parallel : 4;
  curl_multi_setopt(multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)parallel);
  int ret = 0;
  size_t next = 0, active = 0;

  for (size_t i = 0; i < n; i++) {
    layer_job *j = &jobs[i];
    j->c = c;
    j->store = s;
    j->index = i;
    j->desc = &img->manifest.layers[i];
    j->diff_id = img->config.diff_ids[i];
    j->prog = &prog;
    j->url = vs_asprintf("%s/v2/%s/blobs/%s", c->base, c->ref.repository, j->desc->digest);
    prog.names[i] = vs_strdup(j->desc->digest + 7);
    prog.state[i] = vs_strdup("Waiting");
    prog.total[i] = (uint64_t)j->desc->size;
  }
  for (size_t i = 0; i < n && prog.cb; i++)
    if (!layer_ready(s, &jobs[i]) || !vs_store_has_blob(s, jobs[i].desc->digest))
      progress_event(&prog, i, "Pulling fs layer");
  for (size_t i = 0; i < n; i++) {
    layer_job *j = &jobs[i];
    if (layer_ready(s, j) && vs_store_has_blob(s, j->desc->digest)) {
      j->downloaded = true;
      progress_event(&prog, i, "Already exists");
    } else if (vs_store_has_blob(s, j->desc->digest)) {
      j->downloaded = true;
      start_unpack(j);
    }
  }
  for (;;) {
    while (ret == 0 && active < (size_t)parallel && next < n) {
      layer_job *j = &jobs[next++];
      if (j->downloaded)
        continue;
      if (start_download(j, multi, err) < 0) {
        ret = -1;
        break;
      }
      active++;
    }
    if (active == 0)
      break;
    int running = 0;
    curl_multi_perform(multi, &running);
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(multi, &left))) {
      if (m->msg != CURLMSG_DONE)
        continue;
      layer_job *j;
      curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&j);
      CURLcode cc = m->data.result;
      curl_multi_remove_handle(multi, m->easy_handle);
      active--;
      j->downloading = false;
      bool retry;
      if (ret < 0) {
        vs_blob_writer_free(j->reply.writer);
        reply_clear(&j->reply);
        continue;
      }
      if (finish_download(j, cc, &retry, err) < 0) {
        progress_event(&prog, j->index, "Failed");
        ret = -1;
        continue;
      }
      if (retry) {
        backoff(j->attempts - 1);
        if (start_download(j, multi, err) < 0)
          ret = -1;
        else
          active++;
        continue;
      }
      j->downloaded = true;
      progress_event(&prog, j->index, "Download complete");
      if (!layer_ready(s, j))
        start_unpack(j);
      else
        progress_event(&prog, j->index, "Already exists");
    }
    if (active)
      curl_multi_poll(multi, NULL, 0, 200, NULL);
  }
  for (size_t i = 0; i < n; i++) {
    layer_job *j = &jobs[i];
    if (j->thread_started)
      pthread_join(j->thread, NULL);
    if (j->err && ret == 0) {
      vs_error_set(err, j->err->errnum, "%s: %s", c->display, j->err->msg);
      ret = -1;
    }
    vs_error_free(j->err);
    if (j->easy)
      curl_easy_cleanup(j->easy);
    curl_slist_free_all(j->headers);
    free(j->url);
  }
  curl_multi_cleanup(multi);
  free(jobs);
  progress_free(&prog);
  return ret;
}

int vs_image_pull(vs_store *s, const char *ref, const vs_registry_opts *o,
                  char manifest_digest_out[VS_DIGEST_MAX], vs_error **err) {
  reg_client c;
  if (client_init(&c, ref, "pull", o, err) < 0)
    return vs_error_wrap(err, "pull %s", ref);
  int ret = -1;
  _cleanup_free_ char *body = NULL, *ctype = NULL;
  size_t len = 0;
  char digest[VS_DIGEST_MAX];
  vs_manifest m = {0};
  vs_image img = {0};
  _cleanup_free_ char *name = vs_image_ref_name(&c.ref);
  _cleanup_free_ char *tagname =
      c.ref.tag ? vs_asprintf("%s:%s", name, c.ref.tag) : vs_asprintf("%s@%s", name, c.ref.digest);
  if (vs_store_lock(s, false, err) < 0)
    goto out;
  const char *reference = c.ref.digest ? c.ref.digest : c.ref.tag;
  if (fetch_manifest(&c, reference, &body, &len, &ctype, digest, err) < 0)
    goto unlock;
  if (vs_manifest_parse(body, len, ctype, &m, err) < 0) {
    vs_error_wrap(err, "%s: manifest", c.display);
    goto unlock;
  }
  if (m.kind == VS_MANIFEST_INDEX) {
    const vs_descriptor *d = vs_index_select(&m, o->platform, err);
    if (!d) {
      vs_error_wrap(err, "%s", c.display);
      goto unlock;
    }
    _cleanup_free_ char *sub = vs_strdup(d->digest);
    free(body);
    free(ctype);
    body = ctype = NULL;
    vs_manifest_clear(&m);
    if (fetch_manifest(&c, sub, &body, &len, &ctype, digest, err) < 0)
      goto unlock;
    if (vs_manifest_parse(body, len, ctype, &m, err) < 0) {
      vs_error_wrap(err, "%s: manifest %s", c.display, sub);
      goto unlock;
    }
    if (m.kind != VS_MANIFEST_IMAGE) {
      vs_error_set(err, EINVAL, "%s: index entry %s is not an image manifest", c.display, sub);
      goto unlock;
    }
  }
  if (o->containers_only && m.config.media_type && !strcmp(m.config.media_type, VS_MT_VM_CONFIG)) {
    vs_error_set(err, 0,
                 "%s is a VM image (a machine's kernel and disk), not a container image: boot it "
                 "with vessel vm create --image",
                 c.display);
    if (*err)
      (*err)->errnum = EMEDIUMTYPE;
    goto unlock;
  }
  if (o->progress_cb) {
    _cleanup_free_ char *from = vs_asprintf("Pulling from %s", c.ref.repository);
    o->progress_cb(o->progress_ctx, c.ref.tag ? c.ref.tag : c.ref.digest, from, 0, 0);
  } else if (!o->quiet) {
    dprintf(o->progress_fd > 0 ? o->progress_fd : 2, "%s: pulling %s\n", c.display, digest);
  }
  if (fetch_small_blob(&c, s, &m.config, err) < 0)
    goto unlock;
  if (vs_store_put_blob(s, digest, body, len, NULL, err) < 0)
    goto unlock;
  if (vs_store_load_image(s, digest, &img, err) < 0) {
    vs_error_wrap(err, "%s", c.display);
    goto unlock;
  }
  if (pull_layers(&c, s, &img, err) < 0)
    goto unlock;
  if (vs_store_tag_set(s, tagname, digest, err) < 0)
    goto unlock;
  if (manifest_digest_out)
    memcpy(manifest_digest_out, digest, VS_DIGEST_MAX);
  if (o->progress_cb) {
    _cleanup_free_ char *line = vs_asprintf("Digest: %s", digest);
    o->progress_cb(o->progress_ctx, NULL, line, 0, 0);
  } else if (!o->quiet) {
    dprintf(o->progress_fd > 0 ? o->progress_fd : 2, "Digest: %s\nStatus: downloaded %s\n", digest,
            c.display);
  }
  ret = 0;
unlock:
  vs_store_unlock(s);
out:
  vs_image_clear(&img);
  vs_manifest_clear(&m);
  client_clear(&c);
  return ret;
}

/* ---------------------------------------------------------------- push */

static char *absolute_location(reg_client *c, const char *loc) {
  if (!strncmp(loc, "http://", 7) || !strncmp(loc, "https://", 8))
    return vs_strdup(loc);
  return vs_asprintf("%s%s%s", c->base, loc[0] == '/' ? "" : "/", loc);
}

static int blob_exists(reg_client *c, const char *digest, bool *exists, vs_error **err) {
  _cleanup_free_ char *url = vs_asprintf("%s/v2/%s/blobs/%s", c->base, c->ref.repository, digest);
  http_reply r = {.max = MAX_SMALL_REPLY, .expect_size = -1};
  int ret = reg_request(c, "HEAD", url, NULL, NULL, 0, NULL, &r, err);
  if (ret == 0) {
    if (r.status == 200)
      *exists = true;
    else if (r.status == 404)
      *exists = false;
    else
      ret = http_status_error(c, &r, digest, err);
  }
  reply_clear(&r);
  return ret;
}

/* A layer's state in a push: to the callback (layers only, as Docker shows them) or as text. */
static void push_note(reg_client *c, const char *digest, bool layer, const char *status) {
  if (c->o->progress_cb) {
    char id[13];
    snprintf(id, sizeof(id), "%.12s", digest + 7);
    if (layer)
      c->o->progress_cb(c->o->progress_ctx, id, status, 0, 0);
  } else if (!c->o->quiet) {
    dprintf(c->o->progress_fd > 0 ? c->o->progress_fd : 2, "%.19s: %s\n", digest, status);
  }
}

static int push_blob(reg_client *c, vs_store *s, const char *digest, const char *mount_from,
                     bool layer, vs_error **err) {
  bool exists = false;
  if (blob_exists(c, digest, &exists, err) < 0)
    return -1;
  if (exists) {
    vs_log_info("%s: blob %.19s already exists", c->display, digest);
    push_note(c, digest, layer, "Layer already exists");
    return 0;
  }
  _cleanup_free_ char *path = vs_store_blob_path(s, digest);
  _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return vs_error_set(err, errno, "%s: local blob %s", c->display, digest);
  struct stat st;
  if (fstat(fd, &st) < 0)
    return vs_error_set(err, errno, "stat %s", path);
  _cleanup_free_ char *url = NULL;
  if (mount_from)
    url = vs_asprintf("%s/v2/%s/blobs/uploads/?mount=%s&from=%s", c->base, c->ref.repository,
                      digest, mount_from);
  else
    url = vs_asprintf("%s/v2/%s/blobs/uploads/", c->base, c->ref.repository);
  http_reply r = {.max = MAX_SMALL_REPLY, .expect_size = -1};
  if (reg_request(c, "POST", url, NULL, NULL, 0, NULL, &r, err) < 0)
    return -1;
  if (r.status == 201) {
    reply_clear(&r);
    _cleanup_free_ char *note = vs_asprintf("Mounted from %s", mount_from);
    push_note(c, digest, layer, note);
    return 0;
  }
  if (r.status != 202 || !r.location) {
    int e = http_status_error(c, &r, "start blob upload", err);
    reply_clear(&r);
    return e;
  }
  _cleanup_free_ char *loc = absolute_location(c, r.location);
  reply_clear(&r);
  uint64_t size = (uint64_t)st.st_size;
  uint64_t chunk = c->o->chunk_size ? c->o->chunk_size : CHUNK_SIZE;
  /* every region uploaded below counts into one progress */
  upload_src prog = {.cb = layer ? c->o->progress_cb : NULL,
                     .cb_ctx = c->o->progress_ctx,
                     .digest = digest,
                     .total = size};
  if (size > (c->o->chunk_size ? c->o->chunk_size : CHUNK_THRESHOLD)) {
    /* Chunked: PATCH pieces in order, each reply tells where the next one goes. */
    for (uint64_t off = 0; off < size;) {
      uint64_t n = size - off < chunk ? size - off : chunk;
      lseek(fd, (off_t)off, SEEK_SET);
      upload_src src = prog;
      src.fd = fd;
      src.left = n;
      _cleanup_free_ char *range = vs_asprintf("Content-Range: %llu-%llu", (unsigned long long)off,
                                               (unsigned long long)(off + n - 1));
      struct curl_slist *hd = curl_slist_append(NULL, range);
      hd = curl_slist_append(hd, "Content-Type: application/octet-stream");
      int rr = reg_request(c, "PATCH", loc, hd, NULL, 0, &src, &r, err);
      curl_slist_free_all(hd);
      if (rr < 0)
        return -1;
      if (r.status != 202 || !r.location) {
        int e = http_status_error(c, &r, "upload chunk", err);
        reply_clear(&r);
        return e;
      }
      free(loc);
      loc = absolute_location(c, r.location);
      reply_clear(&r);
      off += n;
      prog.sent = src.sent;
      prog.last = src.last;
    }
    _cleanup_free_ char *put =
        vs_asprintf("%s%sdigest=%s", loc, strchr(loc, '?') ? "&" : "?", digest);
    if (reg_request(c, "PUT", put, NULL, "", 0, NULL, &r, err) < 0)
      return -1;
  } else {
    _cleanup_free_ char *put =
        vs_asprintf("%s%sdigest=%s", loc, strchr(loc, '?') ? "&" : "?", digest);
    lseek(fd, 0, SEEK_SET);
    upload_src src = prog;
    src.fd = fd;
    src.left = size;
    struct curl_slist *hd = curl_slist_append(NULL, "Content-Type: application/octet-stream");
    int rr = reg_request(c, "PUT", put, hd, NULL, 0, &src, &r, err);
    curl_slist_free_all(hd);
    if (rr < 0)
      return -1;
  }
  if (r.status != 201) {
    int e = http_status_error(c, &r, "finish blob upload", err);
    reply_clear(&r);
    return e;
  }
  reply_clear(&r);
  if (c->o->progress_cb) {
    push_note(c, digest, layer, "Pushed");
  } else {
    _cleanup_free_ char *note = vs_asprintf("Pushed %llu bytes", (unsigned long long)size);
    push_note(c, digest, layer, note);
  }
  return 0;
}

/* Another repository on the same registry that already has this image (from our tags). */
static char *mount_source(vs_store *s, reg_client *c, const char *manifest_digest) {
  json_t *tags = vs_store_tags(s, NULL);
  const char *key;
  json_t *val;
  char *found = NULL;
  json_object_foreach(tags, key, val) {
    if (found || strcmp(json_string_value(val), manifest_digest) != 0)
      continue;
    vs_image_ref r;
    if (vs_image_ref_parse(key, &r, NULL) < 0)
      continue;
    if (!strcmp(r.registry, c->ref.registry) && strcmp(r.repository, c->ref.repository) != 0)
      found = vs_strdup(r.repository);
    vs_image_ref_clear(&r);
  }
  json_decref(tags);
  return found;
}

/* What a push sends: the stored manifest when every layer is compressed already (a pulled image
 * goes back byte for byte), else a copy in which each uncompressed layer (built, committed or
 * loaded: VS_MT_OCI_LAYER) is replaced by its gzip form with the standard media type, as docker
 * push does. The config is the same (its diff_ids are the tars'), so is the image ID. */
typedef struct push_plan {
  char *manifest;
  size_t len;
  char digest[VS_DIGEST_MAX];
  char **layers; /* the layer blobs to send, in the manifest's order */
  size_t n_layers;
} push_plan;

static void push_plan_clear(push_plan *p) {
  free(p->manifest);
  for (size_t i = 0; i < p->n_layers; i++)
    free(p->layers[i]);
  free(p->layers);
  memset(p, 0, sizeof(*p));
}

static int push_plan_make(vs_store *s, const vs_image *img, push_plan *p, vs_error **err) {
  memset(p, 0, sizeof(*p));
  size_t n = img->manifest.n_layers;
  p->layers = vs_malloc0((n ? n : 1) * sizeof(char *));
  p->n_layers = n;
  bool plain = false;
  for (size_t i = 0; i < n; i++) {
    p->layers[i] = vs_strdup(img->manifest.layers[i].digest);
    plain = plain || !strcmp(img->manifest.layers[i].media_type, VS_MT_OCI_LAYER);
  }
  if (!plain) {
    p->manifest = vs_img_strndup(img->manifest_raw, img->manifest_len);
    p->len = img->manifest_len;
    snprintf(p->digest, sizeof(p->digest), "%s", img->manifest_digest);
    return 0;
  }
  json_error_t je;
  _cleanup_json_ json_t *m = json_loadb(img->manifest_raw, img->manifest_len, 0, &je);
  json_t *ls = json_object_get(m, "layers");
  if (!json_is_array(ls) || json_array_size(ls) != n)
    return vs_error_set(err, EINVAL, "manifest %s: its layers cannot be rewritten",
                        img->manifest_digest);
  const char *gz_type = strcmp(img->manifest.media_type, VS_MT_DOCKER_MANIFEST) == 0
                            ? VS_MT_DOCKER_LAYER_GZIP
                            : VS_MT_OCI_LAYER_GZIP;
  for (size_t i = 0; i < n; i++) {
    if (strcmp(img->manifest.layers[i].media_type, VS_MT_OCI_LAYER) != 0)
      continue;
    char gz[VS_DIGEST_MAX];
    int64_t size = 0;
    if (vs_store_gzip_blob(s, img->manifest.layers[i].digest, gz, &size, err) < 0)
      return -1;
    json_t *l = json_array_get(ls, i);
    json_object_set_new(l, "mediaType", json_string(gz_type));
    json_object_set_new(l, "digest", json_string(gz));
    json_object_set_new(l, "size", json_integer((json_int_t)size));
    free(p->layers[i]);
    p->layers[i] = vs_strdup(gz);
  }
  p->manifest = json_dumps(m, JSON_COMPACT);
  if (!p->manifest)
    return vs_error_set(err, ENOMEM, "manifest %s", img->manifest_digest);
  p->len = strlen(p->manifest);
  vs_digest_buffer(p->manifest, p->len, p->digest);
  return 0;
}

int vs_image_push(vs_store *s, const char *local, const char *dest, const vs_registry_opts *o,
                  char digest_out[VS_DIGEST_MAX], size_t *size_out, vs_error **err) {
  vs_image img;
  if (vs_store_resolve(s, local, &img, err) < 0)
    return vs_error_wrap(err, "push %s", local);
  reg_client c;
  if (client_init(&c, dest, "pull,push", o, err) < 0) {
    vs_image_clear(&img);
    return vs_error_wrap(err, "push %s", dest);
  }
  int ret = -1;
  push_plan plan = {0};
  _cleanup_free_ char *from = mount_source(s, &c, img.manifest_digest);
  if (vs_store_lock(s, false, err) < 0)
    goto out;
  if (push_plan_make(s, &img, &plan, err) < 0) {
    vs_error_wrap(err, "push %s", dest);
    goto unlock;
  }
  if (o->progress_cb) {
    _cleanup_free_ char *name = vs_image_ref_name(&c.ref);
    _cleanup_free_ char *fam = vs_image_name_familiar(name);
    _cleanup_free_ char *line = vs_asprintf("The push refers to repository [%s]", fam);
    o->progress_cb(o->progress_ctx, NULL, line, 0, 0);
    for (size_t i = plan.n_layers; i-- > 0;)
      push_note(&c, plan.layers[i], true, "Preparing");
  }
  for (size_t i = plan.n_layers; i-- > 0;)
    if (push_blob(&c, s, plan.layers[i], from, true, err) < 0)
      goto unlock;
  if (push_blob(&c, s, img.manifest.config.digest, from, false, err) < 0)
    goto unlock;
  {
    const char *reference = c.ref.tag ? c.ref.tag : plan.digest;
    _cleanup_free_ char *url =
        vs_asprintf("%s/v2/%s/manifests/%s", c.base, c.ref.repository, reference);
    _cleanup_free_ char *ct = vs_asprintf("Content-Type: %s", img.manifest.media_type);
    struct curl_slist *hd = curl_slist_append(NULL, ct);
    http_reply r = {.max = MAX_SMALL_REPLY, .expect_size = -1};
    int rr = reg_request(&c, "PUT", url, hd, plan.manifest, plan.len, NULL, &r, err);
    curl_slist_free_all(hd);
    if (rr < 0)
      goto unlock;
    if (r.status != 201) {
      http_status_error(&c, &r, "manifest upload", err);
      reply_clear(&r);
      goto unlock;
    }
    if (r.digest && strcmp(r.digest, plan.digest) != 0)
      vs_log_warn("%s: registry reports manifest digest %s, expected %s", c.display, r.digest,
                  plan.digest);
    reply_clear(&r);
  }
  if (o->progress_cb) {
    _cleanup_free_ char *line = vs_asprintf(
        "%s: digest: %s size: %zu", c.ref.tag ? c.ref.tag : plan.digest, plan.digest, plan.len);
    o->progress_cb(o->progress_ctx, NULL, line, 0, 0);
  } else if (!o->quiet) {
    dprintf(o->progress_fd > 0 ? o->progress_fd : 2, "%s: digest: %s size: %zu\n", c.display,
            plan.digest, plan.len);
  }
  if (digest_out)
    snprintf(digest_out, VS_DIGEST_MAX, "%s", plan.digest);
  if (size_out)
    *size_out = plan.len;
  ret = 0;
unlock:
  vs_store_unlock(s);
out:
  push_plan_clear(&plan);
  vs_image_clear(&img);
  client_clear(&c);
  return ret;
}

/* ---------------------------------------------------------------- login */

static int save_auth(const vs_registry_opts *o, const char *registry, const char *b64,
                     vs_error **err) {
  _cleanup_free_ char *file = o->auth_file ? vs_strdup(o->auth_file) : default_auth_file();
  json_t *j = json_load_file(file, 0, NULL);
  if (!json_is_object(j)) {
    json_decref(j);
    j = json_object();
  }
  json_t *auths = json_object_get(j, "auths");
  if (!json_is_object(auths)) {
    auths = json_object();
    json_object_set_new(j, "auths", auths);
  }
  if (b64)
    json_object_set_new(auths, registry, json_pack("{s:s}", "auth", b64));
  else if (json_object_del(auths, registry) < 0) {
    json_decref(j);
    return vs_error_set(err, 0, "not logged in to %s", registry);
  }
  _cleanup_free_ char *dir = vs_strdup(file);
  char *slash = strrchr(dir, '/');
  if (slash) {
    *slash = 0;
    if (*dir && vs_mkdir_p(dir, 0700, err) < 0) {
      json_decref(j);
      return -1;
    }
  }
  _cleanup_free_ char *text = json_dumps(j, JSON_INDENT(2));
  json_decref(j);
  return vs_write_file_atomic(file, text, strlen(text), 0600, err);
}

/* The credentials' base64 form after the registry accepted them; NULL with *err otherwise. */
static char *login_check(const char *registry, const char *user, const char *password,
                         const vs_registry_opts *o, char **registry_out, vs_error **err) {
  _cleanup_free_ char *ref = vs_asprintf("%s/vessel-login-check", registry);
  reg_client c;
  if (client_init(&c, ref, "pull", o, err) < 0) {
    vs_error_wrap(err, "login %s", registry);
    return NULL;
  }
  _cleanup_free_ char *up = vs_asprintf("%s:%s", user, password);
  free(c.basic);
  c.basic = base64(up);
  free(c.display);
  c.display = vs_strdup(registry);
  _cleanup_free_ char *url = vs_asprintf("%s/v2/", c.base);
  http_reply r = {.max = MAX_SMALL_REPLY, .expect_size = -1};
  int ret = reg_request(&c, "GET", url, NULL, NULL, 0, NULL, &r, err);
  if (ret == 0 && r.status == 401)
    ret =
        vs_error_set(err, EACCES, "login attempt to %s failed with status: 401 Unauthorized", url);
  else if (ret == 0 && r.status != 200)
    ret = http_status_error(&c, &r, "login", err);
  char *basic = NULL;
  if (ret == 0) {
    basic = steal_pointer(&c.basic);
    if (registry_out)
      *registry_out = vs_strdup(c.ref.registry);
  }
  reply_clear(&r);
  client_clear(&c);
  return basic;
}

int vs_registry_check_login(const char *registry, const char *user, const char *password,
                            const vs_registry_opts *o, vs_error **err) {
  _cleanup_free_ char *basic = login_check(registry, user, password, o, NULL, err);
  return basic ? 0 : -1;
}

int vs_registry_login(const char *registry, const char *user, const char *password,
                      const vs_registry_opts *o, vs_error **err) {
  _cleanup_free_ char *name = NULL;
  _cleanup_free_ char *basic = login_check(registry, user, password, o, &name, err);
  if (!basic)
    return -1;
  return save_auth(o, name, basic, err);
}

int vs_registry_logout(const char *registry, const vs_registry_opts *o, vs_error **err) {
  return save_auth(o, registry, NULL, err);
}
