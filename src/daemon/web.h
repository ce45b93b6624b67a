/* The web console's server side (private to src/daemon): a front layer between TLS clients and
 * the API's own connections.
 *
 * A front connection terminates TLS (tls.h) and talks to the API router over an internal
 * connection: one end of a socketpair that server.c serves like any client's socket, so streamed
 * and hijacked endpoints work unchanged. Two kinds:
 *   - web (`--web ADDR:PORT`): HTTP is read here: login, sessions and CSRF (web_auth.c), static
 *     files, /api/... requests checked and passed to the router without the prefix, websocket
 *     terminals (ws.h) bridged to the attach and console endpoints, and security headers added to
 *     every answer;
 *   - relay (`-H tcp://... --tls`): bytes both ways, the Docker API over TLS.
 * Everything runs on the event loop except password hashing, which runs on a worker. */
#ifndef VESSEL_DAEMON_WEB_H
#define VESSEL_DAEMON_WEB_H

#include "daemon/internal.h"
#include "daemon/tls.h"

#define VD_WEB_MAX_SESSIONS 256
#define VD_WEB_FAILS_KEPT 64
#define VD_WEB_LOGIN_WINDOW 60 /* seconds */
#define VD_WEB_LOGIN_MAX_PER_ADDR 5
#define VD_WEB_LOGIN_MAX_ALL 20
#define VD_WEB_PBKDF2_ITERATIONS 600000 /* OWASP's figure for PBKDF2-HMAC-SHA256 */
#define VD_WEB_LOGINS_RUNNING_MAX 2     /* password checks on the workers at once */
#define VD_WEB_MAX_FRONTS_PER_ADDR 128  /* connections of one client address at once */
#define VD_WEB_SAVE_EVERY 300           /* seconds: how stale a saved session's last use may be */

typedef struct vd_web_session {
  char token_sha[65]; /* SHA-256 of the cookie (256 random bits in hex): the cookie is not kept */
  char csrf[65];
  long long last_used; /* monotonic seconds */
  unsigned gen;        /* the password generation it was made under */
  uint64_t serial;     /* names it for the streams and terminals opened under it */
} vd_web_session;

typedef struct vd_web_fail {
  long long when;
  char addr[48];
} vd_web_fail;

typedef struct vd_web {
  vd_daemon *d;
  char *root; /* static files */
  int root_fd;
  long long session_ttl;
  vd_web_session sessions[VD_WEB_MAX_SESSIONS];
  size_t n_sessions;
  vd_web_fail fails[VD_WEB_FAILS_KEPT];
  size_t n_fails;
  char *passwd_path;       /* DATA_ROOT/web/passwd */
  char *sessions_path;     /* DATA_ROOT/web/sessions.json: the sessions across restarts */
  unsigned logins_running; /* password checks on the workers now */
  uint64_t next_serial;
  long long saved_at; /* monotonic seconds of the last save of the sessions */
} vd_web;

/* A listener of front connections: web or relay, with its TLS context. */
typedef struct vd_front_listener {
  vd_src src;
  int fd;
  bool web;
  SSL_CTX *ctx;
  char *name; /* for the log */
  struct vd_front_listener *next;
} vd_front_listener;

typedef struct vd_front vd_front;
struct vd_web;

/* web.c */
/* Listen on --web ADDR:PORT (from o) with its certificate; nothing when o->web is NULL. */
int vd_web_init(vd_daemon *d, const vd_options *o, vs_error **err);
/* A TLS relay listener for -H tcp://... (fd listening), with its context (taken). */
int vd_front_listen_relay(vd_daemon *d, int fd, SSL_CTX *ctx, const char *name, vs_error **err);
void vd_front_listener_event(vd_daemon *d, vd_front_listener *l);
/* An event on one of a front connection's descriptors (client, internal, timer). */
void vd_front_event(vd_src *src, uint32_t events);
/* End of a loop iteration: free the front connections that closed. */
void vd_front_sweep(vd_daemon *d);
void vd_web_free(vd_daemon *d);

/* web_auth.c (loop, except where said) */
/* The session a request's Cookie names, touched; NULL with *why (401 message) when none. */
vd_web_session *vd_web_session_get(vd_web *w, const http_request *req, const char **why);
/* A new session; *token gets its cookie value (caller frees), which is not kept. */
vd_web_session *vd_web_session_new(vd_web *w, char **token);
void vd_web_session_end(vd_web *w, vd_web_session *s);
/* Sessions kept under the data root (0600, tokens hashed) so that a restart keeps them: read at
 * start (those of another password are dropped), written when one begins or ends, at most every
 * VD_WEB_SAVE_EVERY s for their last use, and at the end. */
void vd_web_sessions_load(vd_web *w);
void vd_web_sessions_save(vd_web *w);
/* The password changed (a worker's vd_h_web_password): its sessions end, with their streams. */
void vd_web_password_changed(vd_daemon *d);
/* 0 when a login from addr may be tried now, else the seconds to wait. */
long long vd_web_login_wait(vd_web *w, const char *addr);
void vd_web_login_failed(vd_web *w, const char *addr);
/* Check password against the stored hash (worker): 1 matches, 0 does not, -1 with *err (no
 * password set: ENOENT). */
int vd_web_password_check(const char *path, const char *password, vs_error **err);
/* Equal strings, in time independent of where they differ. */
bool vd_web_token_equal(const char *a, const char *b);

/* web.c: end the streams and terminals of a session (serial), or of every session (0). */
void vd_web_end_session_streams(vd_daemon *d, uint64_t serial);

#endif
