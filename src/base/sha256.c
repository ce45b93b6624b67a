/* SHA-256 on OpenSSL's libcrypto (EVP interface). */
#include "base.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>

/* EVP failures here mean allocation failure or a broken libcrypto: like out-of-memory, nothing
 * a caller could handle, so they abort. */
static void must(int ok) {
  if (ok != 1)
    abort();
}

void vs_sha256_init(vs_sha256_ctx *ctx) {
  EVP_MD_CTX *md = EVP_MD_CTX_new();
  if (!md)
    abort();
  must(EVP_DigestInit_ex(md, EVP_sha256(), NULL));
  ctx->md = md;
}

void vs_sha256_update(vs_sha256_ctx *ctx, const void *data, size_t len) {
  must(EVP_DigestUpdate(ctx->md, data, len));
}

void vs_sha256_final_raw(vs_sha256_ctx *ctx, uint8_t out[32]) {
  unsigned int n = 0;
  must(EVP_DigestFinal_ex(ctx->md, out, &n));
  if (n != 32)
    abort();
  vs_sha256_abandon(ctx);
}

void vs_sha256_final(vs_sha256_ctx *ctx, char out[VS_SHA256_HEX_LEN + 1]) {
  static const char hex[] = "0123456789abcdef";
  uint8_t raw[32];
  vs_sha256_final_raw(ctx, raw);
  for (size_t i = 0; i < sizeof(raw); i++) {
    out[2 * i] = hex[raw[i] >> 4];
    out[2 * i + 1] = hex[raw[i] & 0xf];
  }
  out[VS_SHA256_HEX_LEN] = '\0';
}

void vs_sha256_abandon(vs_sha256_ctx *ctx) {
  EVP_MD_CTX_free(ctx->md);
  ctx->md = NULL;
}

void vs_sha256_hex(const void *data, size_t len, char out[VS_SHA256_HEX_LEN + 1]) {
  vs_sha256_ctx ctx;
  vs_sha256_init(&ctx);
  vs_sha256_update(&ctx, data, len);
  vs_sha256_final(&ctx, out);
}

int vs_sha256_fd(int fd, char out[VS_SHA256_HEX_LEN + 1], vs_error **err) {
  vs_sha256_ctx ctx;
  vs_sha256_init(&ctx);
  _cleanup_free_ char *buf = vs_malloc0(1 << 16);
  for (;;) {
    ssize_t n = read(fd, buf, 1 << 16);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      int e = errno;
      vs_sha256_abandon(&ctx);
      return vs_error_set(err, e, "read");
    }
    if (n == 0)
      break;
    vs_sha256_update(&ctx, buf, (size_t)n);
  }
  vs_sha256_final(&ctx, out);
  return 0;
}

int vs_sha256_file(const char *path, char out[VS_SHA256_HEX_LEN + 1], vs_error **err) {
  _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0)
    return vs_error_set(err, errno, "open %s", path);
  if (vs_sha256_fd(fd, out, err) < 0)
    return vs_error_wrap(err, "sha256 %s", path);
  return 0;
}
