/* The web listener's own endpoints: /web/login (the password checked on a worker, the rate
 * limit first), /web/session and /web/logout. Sessions themselves are web_auth.c's. */
#include "daemon/web_front.h"

#include <errno.h>
#include <openssl/crypto.h>

/* ---- login, session, logout */

typedef struct login_job {
  vd_job job;
  vd_front *f;
  char *path, *password;
  int result; /* 1 match, 0 no match, -1 error (msg) */
  char *msg;
  bool no_password;
} login_job;

static void login_run(vd_job *job) {
  login_job *lj = (login_job *)job;
  vs_error *e = NULL;
  lj->result = vd_web_password_check(lj->path, lj->password, &e);
  if (lj->result < 0) {
    lj->no_password = e->errnum == ENOENT;
    lj->msg = vs_strdup(e->msg);
    vs_error_free(e);
  }
}

static void login_done(vd_job *job) {
  login_job *lj = (login_job *)job;
  vd_front *f = lj->f;
  f->busy = false;
  if (web_of(f->d))
    web_of(f->d)->logins_running--;
  if (!f->dead) {
    vd_web *w = web_of(f->d);
    bool keep = f->req.keep_alive;
    if (lj->result == 1) {
      char *token = NULL;
      vd_web_session *s = vd_web_session_new(w, &token);
      _cleanup_free_ char *cookie =
          vs_asprintf("Set-Cookie: vessel_session=%s; Path=/; Secure; HttpOnly; "
                      "SameSite=Strict\r\nCache-Control: no-store\r\n",
                      token);
      OPENSSL_cleanse(token, strlen(token));
      free(token);
      vd_front_respond_json(f, 200, json_pack("{s:s}", "csrf", s->csrf), cookie, keep);
      vs_log_info("web: login from %s", f->addr);
    } else if (lj->result == 0) {
      vd_web_login_failed(w, f->addr);
      vs_log_warn("web: wrong password from %s", f->addr);
      vd_front_respond_error(f, 401, "wrong password", keep);
    } else if (lj->no_password) {
      vd_front_respond_error(f, 401, "no web password is set: run `vessel web passwd` on the host",
                             keep);
    } else {
      vs_log_warn("web: login: %s", lj->msg);
      vd_front_respond_error(f, 500, "the password record cannot be read (see the daemon's log)",
                             keep);
    }
    vd_front_request_done(f);
    vd_front_run(f);
  }
  if (lj->password)
    OPENSSL_cleanse(lj->password, strlen(lj->password));
  free(lj->password);
  free(lj->path);
  free(lj->msg);
  free(lj);
}

static void web_login(vd_front *f) {
  vd_web *w = web_of(f->d);
  bool keep = f->req.keep_alive;
  long long wait = vd_web_login_wait(w, f->addr);
  /* each check costs a worker a third of a second: a flood of logins must not take them all */
  if (wait == 0 && w->logins_running >= VD_WEB_LOGINS_RUNNING_MAX)
    wait = 1;
  if (wait > 0) {
    _cleanup_free_ char *msg = vs_asprintf("too many login attempts; try again in %lld s", wait);
    _cleanup_free_ char *extra = vs_asprintf("Retry-After: %lld\r\n", wait);
    vd_front_respond_json(f, 429, json_pack("{s:s}", "message", msg), extra, keep);
    vd_front_request_done(f);
    return;
  }
  json_t *j = json_loadb(f->local_body.p ? f->local_body.p : "", f->local_body.len, 0, NULL);
  const char *pw = json_string_value(json_object_get(j, "password"));
  if (!json_is_object(j) || !pw) {
    json_decref(j);
    vd_front_respond_error(f, 400, "expected a JSON object {\"password\": \"...\"}", keep);
    vd_front_request_done(f);
    return;
  }
  login_job *lj = vs_malloc0(sizeof(*lj));
  lj->job.d = f->d;
  lj->job.run = login_run;
  lj->job.done = login_done;
  lj->f = f;
  lj->path = vs_strdup(w->passwd_path);
  lj->password = vs_strdup(pw);
  json_decref(j);
  OPENSSL_cleanse(f->local_body.p, f->local_body.len);
  f->busy = true;
  f->state = F_BUSY;
  w->logins_running++;
  vd_job_submit(f->d, &lj->job);
}

void vd_front_local_request(vd_front *f) {
  vd_web *w = web_of(f->d);
  bool keep = f->req.keep_alive;
  const char *p = f->req.path;
  bool post = !strcmp(f->req.method, "POST");
  if (!strcmp(p, "/web/login") && post) {
    web_login(f);
    return;
  }
  if (!strcmp(p, "/web/session") && !strcmp(f->req.method, "GET")) {
    const char *why;
    vd_web_session *s = vd_web_session_get(w, &f->req, &why);
    /* whether a session lives is the question, not an error: a browser would log a 401 as one
     * on every reload after the session ended */
    json_t *j = s ? json_pack("{s:s}", "csrf", s->csrf) : json_pack("{s:s}", "message", why);
    vd_front_respond_json(f, 200, j, "Cache-Control: no-store\r\n", keep);
  } else if (!strcmp(p, "/web/logout") && post) {
    vd_web_session *s = vd_front_need_session(f);
    const char *token = http_header_get(&f->req, "X-CSRF-Token");
    if (s && (!token || !vd_web_token_equal(token, s->csrf))) {
      vd_front_respond_error(f, 403, "missing or invalid CSRF token", keep);
    } else if (s) {
      vd_web_session_end(w, s);
      vd_front_respond(f, 204, NULL, NULL, 0,
                       "Set-Cookie: vessel_session=; Path=/; Secure; HttpOnly; SameSite=Strict; "
                       "Max-Age=0\r\n",
                       keep);
    }
  } else if (!strcmp(p, "/web/login") || !strcmp(p, "/web/logout") || !strcmp(p, "/web/session")) {
    vd_front_respond(f, 405, NULL, NULL, 0,
                     !strcmp(p, "/web/session") ? "Allow: GET\r\n" : "Allow: POST\r\n", keep);
  } else {
    vd_front_respond_error(f, 404, "page not found", keep);
  }
  vd_front_request_done(f);
}
