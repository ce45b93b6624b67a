/* The front connection of the web console and of the API over TLS (private to web*.c).
 *
 * A front connection has two sockets: the client's (TLS) and the inner one (a socketpair whose
 * other end server.c serves as an API connection). Its files, by responsibility:
 *   web.c          the connection: its states, moving bytes both ways, deadlines, listeners
 *   web_http.c     the client's requests: heads and bodies read, checked and dispatched
 *   web_session.c  /web/login, /web/session, /web/logout (sessions themselves: web_auth.c)
 *   web_proxy.c    /api/... requests to the router and their answers back
 *   web_static.c   the app's files from the web root
 *   web_term.c     websocket terminals bridged to attach and console streams
 * Buffers are bounded: a side that does not read stops the other. */
#ifndef VESSEL_DAEMON_WEB_FRONT_H
#define VESSEL_DAEMON_WEB_FRONT_H

#include "daemon/web.h"
#include "daemon/ws.h"

#include <string.h>

#define BUF_HIGH ((size_t)1 << 20) /* stop reading a side while this much waits for the other */
#define IDLE_SECONDS 30            /* for a handshake, a request head, a login body */
#define LOGIN_BODY_MAX 4096
#define DISCARD_BODY_MAX ((uint64_t)1 << 20) /* of a request refused or answered here */
#define INSPECT_MAX ((size_t)1 << 20)        /* a container's inspect, read whole */

#define SECURITY_HEADERS                                                                           \
  "Content-Security-Policy: default-src 'self'; connect-src 'self'; img-src 'self' data:; "        \
  "style-src 'self' 'unsafe-inline'; frame-ancestors 'none'\r\n"                                   \
  "X-Content-Type-Options: nosniff\r\nReferrer-Policy: no-referrer\r\n"                            \
  "Strict-Transport-Security: max-age=31536000\r\nX-Frame-Options: DENY\r\n"

typedef struct fbuf {
  char *p;
  size_t len, cap;
} fbuf;

static inline void buf_add(fbuf *b, const void *data, size_t len) {
  if (b->len + len > b->cap) {
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + len)
      cap *= 2;
    b->p = vs_realloc(b->p, cap);
    b->cap = cap;
  }
  if (len)
    memcpy(b->p + b->len, data, len);
  b->len += len;
}

static inline void buf_str(fbuf *b, const char *s) { buf_add(b, s, strlen(s)); }

static inline void buf_take(fbuf *b, size_t n) {
  memmove(b->p, b->p + n, b->len - n);
  b->len -= n;
}

static inline void buf_free(fbuf *b) {
  free(b->p);
  memset(b, 0, sizeof(*b));
}

typedef enum {
  F_HANDSHAKE,  /* TLS handshake */
  F_HEAD,       /* web: reading a request head */
  F_LOCAL_BODY, /* web: reading the body of a request answered here (login) */
  F_BUSY,       /* web: a worker checks a password */
  F_PROXY_BODY, /* web: passing an API request's body to the router */
  F_PROXY,      /* web: the request went in, its answer comes back */
  F_WS_INSPECT, /* web: websocket to a container: is it a TTY? (its inspect, read whole) */
  F_WS_WAIT,    /* web: websocket asked, waiting for the router's 101 */
  F_WS,         /* web: websocket terminal */
  F_RELAY,      /* API over TLS: bytes both ways */
  F_CLOSING,    /* send what is queued, then close */
  F_LINGER,     /* sent all and shut our side: read what the client still sends, a while */
} front_state;

struct vd_front {
  vd_src src, inner_src, timer_src;
  vd_daemon *d;
  vd_front *prev, *next;
  int fd, inner;
  int timer;          /* timerfd: the deadline of the handshake, a request head, a lingering end */
  int timer_mode;     /* what it is armed for: TIMER_NONE, TIMER_IDLE, TIMER_LINGER */
  unsigned requests;  /* requests answered: each new head gets its own deadline */
  unsigned armed_for; /* the value of requests when the idle deadline was armed */
  front_state state;
  vd_tls tls;
  fbuf in, out, to_inner, ihead;
  http_request req;
  http_body body;
  fbuf local_body;
  const char *refusal_msg; /* static text */
  int refusal;             /* an API request's refusal, answered once its body is read */
  char addr[48];
  uint64_t session; /* the serial of the session a stream or terminal runs under, 0 if none */
  ws_reader ws;
  char *ws_ctr;         /* the container whose TTY this is (resize), NULL for a VM console */
  int ws_cols, ws_rows; /* the size last sent to the container's TTY */
  int ws_want_cols, ws_want_rows; /* the size the client asked for last */
  bool web;
  bool ihead_done; /* the inner answer's head went to the client */
  bool client_eof, inner_eof, inner_wr_shut;
  bool inner_in_set; /* the inner socket is in the epoll set */
  bool dead;
  bool busy; /* a login job holds it */
  bool have_req;
  bool keep_body; /* F_LOCAL_BODY: the body is wanted (login), not only read */
  bool ws_close_sent;
  bool ws_demux;      /* the container has no TTY: its output comes in Docker's frames */
  bool proxy_keep;    /* F_PROXY: the client wants its connection kept after this answer */
  uint8_t mux_hdr[8]; /* a frame header being read */
  size_t mux_hdr_len; /* of mux_hdr */
  uint32_t mux_left;  /* bytes of the current frame still to come */
  http_body answer;   /* F_PROXY: where the inner answer's body ends, while answer_framed */
  bool answer_framed; /* its head said where its body ends, and the body kept to it so far */
  fbuf answer_tail;   /* a line of its chunked framing not whole yet */
};

static inline vd_web *web_of(vd_daemon *d) { return d->web; }

/* web.c */
void vd_front_close(vd_front *f);
void vd_front_run(vd_front *f);
/* A new internal API connection for this front connection: 0, or -1. */
int vd_front_inner_open(vd_front *f);

/* web_http.c */
/* Whether a comma-separated header value lists token (parameters after ';' ignored). */
bool vd_front_has_token(const char *value, const char *token);
/* A whole answer made here; extra is "Name: value\r\n" lines or NULL. */
void vd_front_respond(vd_front *f, int status, const char *ctype, const void *body, size_t len,
                      const char *extra, bool keep);
void vd_front_respond_json(vd_front *f, int status, json_t *j, const char *extra, bool keep);
void vd_front_respond_error(vd_front *f, int status, const char *msg, bool keep);
/* After a local answer: the next request, or the end when it could not be kept. */
void vd_front_request_done(vd_front *f);
/* The session of a request, or NULL after answering 401. */
vd_web_session *vd_front_need_session(vd_front *f);
/* Interpret what the client sent, as far as the state allows. */
void vd_front_client_input(vd_front *f);

/* web_session.c */
/* /web/login, /web/session, /web/logout and the rest of /web/ (the body, if any, read). */
void vd_front_local_request(vd_front *f);

/* web_proxy.c */
/* Why an API request may not go to the router: 0, or the status with *msg. */
int vd_front_api_refusal(vd_front *f, const char **msg);
/* An API request that passed the checks: to a new internal connection. */
void vd_front_api_proxy(vd_front *f);
/* Bytes of the inner answer. */
void vd_front_inner_data(vd_front *f, const char *data, size_t len);
/* A complete inner head of hl bytes at the start of f->ihead. */
void vd_front_inner_head(vd_front *f, size_t hl);
/* A chunked answer cut short (its session ended) at a chunk's boundary: its last chunk is sent
 * as the router would send it, so that the browser sees the stream's end rather than an error,
 * and the connection ends; false (nothing done) when it is not at such a boundary. */
bool vd_front_answer_cut(vd_front *f);
/* The inner connection ended: true when the client's connection goes on with its next request. */
bool vd_front_inner_ended(vd_front *f);

/* web_static.c */
void vd_front_static(vd_front *f);

/* web_term.c */
/* A websocket request (rest: the path after /api/ws): checked, then bridged. */
void vd_front_websocket(vd_front *f, const char *rest);
/* The container's inspect came whole: attach to it, or pass the refusal on. */
void vd_front_ws_inspected(vd_front *f);
/* The router's 101 (a head of hl bytes in f->ihead) became the client's: frames from here. */
void vd_front_ws_begin(vd_front *f, size_t hl);
/* The client's websocket frames. */
void vd_front_ws_input(vd_front *f);
/* Terminal output to the client as binary messages. */
void vd_front_ws_output(vd_front *f, const char *data, size_t len);
/* A close frame (once) and the end of the connection. */
void vd_front_ws_close(vd_front *f, uint16_t code, const char *reason);

#endif
