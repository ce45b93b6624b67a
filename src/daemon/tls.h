/* TLS for vesseld's TCP listeners (private to src/daemon): the web console's HTTPS listener and
 * dockerd's `-H tcp://... --tls`. OpenSSL does the protocol; this file makes server contexts
 * (the operator's certificate, or a self-signed one made on first start) and drives a
 * non-blocking TLS session on the event loop. */
#ifndef VESSEL_DAEMON_TLS_H
#define VESSEL_DAEMON_TLS_H

#include "base/base.h"

#include <openssl/ssl.h>
#include <stdbool.h>
#include <sys/types.h>

typedef struct vd_tls_options {
  const char *cert, *key; /* PEM files */
  const char *ca;         /* PEM bundle of the CAs whose client certificates are accepted */
  bool verify;            /* require a client certificate signed by ca (--tlsverify) */
} vd_tls_options;

/* A server context (TLS 1.2 and later); NULL with *err naming the file at fault. */
SSL_CTX *vd_tls_server_ctx(const vd_tls_options *o, vs_error **err);

/* dir/cert.pem and dir/key.pem (mode 0600), made when missing: an EC P-256 key and a
 * self-signed certificate for CN=host with host, localhost and 127.0.0.1 as names.
 * *cert and *key get the paths (caller frees). */
int vd_tls_self_signed(const char *dir, const char *host, char **cert, char **key, vs_error **err);

/* One TLS session over a non-blocking socket. */
typedef struct vd_tls {
  SSL *ssl;
  bool established;
  bool want_write; /* OpenSSL needs the socket writable to go on */
} vd_tls;

int vd_tls_init(vd_tls *t, SSL_CTX *ctx, int fd, vs_error **err);
void vd_tls_clear(vd_tls *t);
/* Go on with the handshake: 1 done, 0 waiting for the socket, -1 failed (*err). */
int vd_tls_handshake(vd_tls *t, vs_error **err);
/* n > 0 bytes, 0 at the peer's end, -1 with errno EAGAIN (wait) or another error. */
ssize_t vd_tls_read(vd_tls *t, void *buf, size_t cap);
ssize_t vd_tls_write(vd_tls *t, const void *buf, size_t len);

#endif
