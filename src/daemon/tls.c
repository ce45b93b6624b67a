/* TLS contexts, self-signed certificates and non-blocking sessions: see tls.h. */
#include "daemon/tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <string.h>
#include <sys/stat.h>

/* OpenSSL's queued errors as one line (and the queue emptied). */
static void ssl_errors(char *buf, size_t size) {
  buf[0] = 0;
  unsigned long e;
  size_t used = 0;
  while ((e = ERR_get_error()) != 0 && used + 2 < size) {
    if (used)
      buf[used++] = ';', buf[used++] = ' ', buf[used] = 0;
    ERR_error_string_n(e, buf + used, size - used);
    used = strlen(buf);
  }
  if (!buf[0])
    snprintf(buf, size, "unknown OpenSSL error");
}

static int ssl_fail(vs_error **err, const char *what, const char *file) {
  char why[512];
  ssl_errors(why, sizeof(why));
  if (file)
    return vs_error_set(err, EINVAL, "%s %s: %s", what, file, why);
  return vs_error_set(err, EINVAL, "%s: %s", what, why);
}

SSL_CTX *vd_tls_server_ctx(const vd_tls_options *o, vs_error **err) {
  SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
  if (!ctx)
    return ssl_fail(err, "create a TLS context", NULL), NULL;
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
                               SSL_OP_IGNORE_UNEXPECTED_EOF);
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  if (SSL_CTX_use_certificate_chain_file(ctx, o->cert) != 1) {
    ssl_fail(err, "TLS certificate", o->cert);
    goto fail;
  }
  if (SSL_CTX_use_PrivateKey_file(ctx, o->key, SSL_FILETYPE_PEM) != 1) {
    ssl_fail(err, "TLS key", o->key);
    goto fail;
  }
  if (SSL_CTX_check_private_key(ctx) != 1) {
    ssl_fail(err, "TLS key does not match its certificate:", o->key);
    goto fail;
  }
  if (o->ca) {
    if (SSL_CTX_load_verify_locations(ctx, o->ca, NULL) != 1) {
      ssl_fail(err, "TLS CA certificates", o->ca);
      goto fail;
    }
    STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(o->ca);
    if (names)
      SSL_CTX_set_client_CA_list(ctx, names);
  }
  if (o->verify)
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
  return ctx;
fail:
  SSL_CTX_free(ctx);
  return NULL;
}

/* ---------------------------------------------------------------- self-signed certificates */

static int add_ext(X509 *x, int nid, const char *value) {
  X509V3_CTX v3;
  X509V3_set_ctx_nodb(&v3);
  X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
  X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
  if (!ext)
    return -1;
  int r = X509_add_ext(x, ext, -1) == 1 ? 0 : -1;
  X509_EXTENSION_free(ext);
  return r;
}

static bool is_ip(const char *s) {
  unsigned char buf[16];
  return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

static X509 *make_cert(EVP_PKEY *pkey, const char *host) {
  X509 *x = X509_new();
  if (!x)
    return NULL;
  unsigned char serial[16];
  ASN1_INTEGER *sn = NULL;
  BIGNUM *bn = NULL;
  if (RAND_bytes(serial, sizeof(serial)) != 1)
    goto fail;
  serial[0] &= 0x7f;
  bn = BN_bin2bn(serial, sizeof(serial), NULL);
  sn = bn ? BN_to_ASN1_INTEGER(bn, NULL) : NULL;
  if (!sn || X509_set_version(x, 2) != 1 || X509_set_serialNumber(x, sn) != 1 ||
      !X509_gmtime_adj(X509_getm_notBefore(x), -3600) ||
      !X509_gmtime_adj(X509_getm_notAfter(x), 10L * 365 * 24 * 3600) ||
      X509_set_pubkey(x, pkey) != 1)
    goto fail;
  X509_NAME *name = X509_get_subject_name(x);
  const char *cn = host && *host ? host : "localhost";
  if (X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, (const unsigned char *)"vessel", -1, -1,
                                 0) != 1 ||
      X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0) !=
          1 ||
      X509_set_issuer_name(x, name) != 1)
    goto fail;
  char *san;
  if (host && *host && strcmp(host, "localhost") != 0 && strcmp(host, "127.0.0.1") != 0)
    san =
        vs_asprintf("DNS:localhost, IP:127.0.0.1, IP:::1, %s:%s", is_ip(host) ? "IP" : "DNS", host);
  else
    san = vs_strdup("DNS:localhost, IP:127.0.0.1, IP:::1");
  if (add_ext(x, NID_subject_alt_name, san) < 0 ||
      add_ext(x, NID_basic_constraints, "critical,CA:FALSE") < 0 ||
      add_ext(x, NID_key_usage, "critical,digitalSignature") < 0 ||
      add_ext(x, NID_ext_key_usage, "serverAuth") < 0 || X509_sign(x, pkey, EVP_sha256()) == 0) {
    free(san);
    goto fail;
  }
  free(san);
  ASN1_INTEGER_free(sn);
  BN_free(bn);
  return x;
fail:
  ASN1_INTEGER_free(sn);
  BN_free(bn);
  X509_free(x);
  return NULL;
}

/* Write a PEM file through a 0600 descriptor, then rename it into place. */
static int write_pem(const char *path, EVP_PKEY *key, X509 *cert, vs_error **err) {
  _cleanup_free_ char *tmp = vs_asprintf("%s.tmp", path);
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0)
    return vs_error_set(err, errno, "create %s", tmp);
  FILE *f = fdopen(fd, "w");
  if (!f) {
    close(fd);
    return vs_error_set(err, errno, "create %s", tmp);
  }
  int ok = key ? PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL) : PEM_write_X509(f, cert);
  if (fflush(f) != 0 || fsync(fileno(f)) != 0)
    ok = 0;
  fclose(f);
  if (ok != 1 || rename(tmp, path) < 0) {
    unlink(tmp);
    return ssl_fail(err, "write", path);
  }
  return 0;
}

int vd_tls_self_signed(const char *dir, const char *host, char **cert, char **key, vs_error **err) {
  if (vs_mkdir_p(dir, 0700, err) < 0)
    return -1;
  _cleanup_free_ char *cp = vs_asprintf("%s/cert.pem", dir);
  _cleanup_free_ char *kp = vs_asprintf("%s/key.pem", dir);
  if (access(cp, F_OK) != 0 || access(kp, F_OK) != 0) {
    EVP_PKEY *pkey = EVP_EC_gen("P-256");
    X509 *x = pkey ? make_cert(pkey, host) : NULL;
    int r = x ? 0 : ssl_fail(err, "make a self-signed certificate", NULL);
    if (r == 0)
      r = write_pem(kp, pkey, NULL, err);
    if (r == 0)
      r = write_pem(cp, NULL, x, err);
    X509_free(x);
    EVP_PKEY_free(pkey);
    if (r < 0)
      return -1;
    vs_log_info("web: made a self-signed certificate %s", cp);
  }
  *cert = steal_pointer(&cp);
  *key = steal_pointer(&kp);
  return 0;
}

/* ---------------------------------------------------------------- sessions */

int vd_tls_init(vd_tls *t, SSL_CTX *ctx, int fd, vs_error **err) {
  memset(t, 0, sizeof(*t));
  t->ssl = SSL_new(ctx);
  if (!t->ssl || SSL_set_fd(t->ssl, fd) != 1) {
    SSL_free(t->ssl);
    t->ssl = NULL;
    return ssl_fail(err, "start a TLS session", NULL);
  }
  SSL_set_accept_state(t->ssl);
  return 0;
}

void vd_tls_clear(vd_tls *t) {
  if (t->ssl) {
    if (t->established)
      SSL_shutdown(t->ssl); /* one close_notify, without waiting for the peer's */
    SSL_free(t->ssl);
  }
  t->ssl = NULL;
}

int vd_tls_handshake(vd_tls *t, vs_error **err) {
  if (t->established)
    return 1;
  ERR_clear_error();
  int r = SSL_do_handshake(t->ssl);
  if (r == 1) {
    t->established = true;
    t->want_write = false;
    return 1;
  }
  int e = SSL_get_error(t->ssl, r);
  t->want_write = e == SSL_ERROR_WANT_WRITE;
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
    return 0;
  return ssl_fail(err, "TLS handshake", NULL);
}

/* Map an SSL_read/SSL_write result to the read/write convention. */
static ssize_t io_result(vd_tls *t, int r, bool reading) {
  if (r > 0)
    return r;
  int e = SSL_get_error(t->ssl, r);
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
    t->want_write = e == SSL_ERROR_WANT_WRITE;
    errno = EAGAIN;
    return -1;
  }
  if (reading && e == SSL_ERROR_ZERO_RETURN)
    return 0;
  ERR_clear_error();
  errno = e == SSL_ERROR_SYSCALL && errno ? errno : EPROTO;
  return -1;
}

ssize_t vd_tls_read(vd_tls *t, void *buf, size_t cap) {
  ERR_clear_error();
  t->want_write = false;
  int n = SSL_read(t->ssl, buf, cap > INT32_MAX ? INT32_MAX : (int)cap);
  return io_result(t, n, true);
}

ssize_t vd_tls_write(vd_tls *t, const void *buf, size_t len) {
  ERR_clear_error();
  t->want_write = false;
  int n = SSL_write(t->ssl, buf, len > INT32_MAX ? INT32_MAX : (int)len);
  return io_result(t, n, false);
}
