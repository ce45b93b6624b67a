/* Digests and the small file helpers the image module needs. */
#include "image/image.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <string.h>
#include <sys/stat.h>

bool vs_digest_valid(const char *s) {
  if (!s || strncmp(s, "sha256:", 7) != 0)
    return false;
  s += 7;
  size_t n = 0;
  for (; s[n]; n++)
    if (!((s[n] >= '0' && s[n] <= '9') || (s[n] >= 'a' && s[n] <= 'f')))
      return false;
  return n == 64;
}

struct vs_hasher {
  EVP_MD_CTX *ctx;
};

vs_hasher *vs_hasher_new(void) {
  vs_hasher *h = vs_malloc0(sizeof(*h));
  h->ctx = EVP_MD_CTX_new();
  if (!h->ctx || EVP_DigestInit_ex(h->ctx, EVP_sha256(), NULL) != 1)
    abort();
  return h;
}

void vs_hasher_update(vs_hasher *h, const void *data, size_t len) {
  if (len)
    EVP_DigestUpdate(h->ctx, data, len);
}

static void hex_digest(const unsigned char *md, char out[VS_DIGEST_MAX]) {
  static const char hx[] = "0123456789abcdef";
  memcpy(out, "sha256:", 7);
  for (int i = 0; i < 32; i++) {
    out[7 + 2 * i] = hx[md[i] >> 4];
    out[8 + 2 * i] = hx[md[i] & 15];
  }
  out[71] = 0;
}

void vs_hasher_finish(vs_hasher *h, char out[VS_DIGEST_MAX]) {
  unsigned char md[32];
  unsigned int n = 0;
  EVP_DigestFinal_ex(h->ctx, md, &n);
  hex_digest(md, out);
  vs_hasher_free(h);
}

void vs_hasher_free(vs_hasher *h) {
  if (!h)
    return;
  EVP_MD_CTX_free(h->ctx);
  free(h);
}

void vs_digest_buffer(const void *data, size_t len, char out[VS_DIGEST_MAX]) {
  vs_hasher *h = vs_hasher_new();
  vs_hasher_update(h, data, len);
  vs_hasher_finish(h, out);
}

char *vs_img_strndup(const char *s, size_t n) {
  size_t len = strnlen(s, n);
  char *d = vs_malloc0(len + 1);
  memcpy(d, s, len);
  return d;
}

static uint64_t du_at(int parent, const char *name) {
  struct stat st;
  if (fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
    return 0;
  uint64_t total = (uint64_t)st.st_blocks * 512;
  if (!S_ISDIR(st.st_mode))
    return total;
  int fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0)
    return total;
  DIR *d = fdopendir(fd);
  if (!d) {
    close(fd);
    return total;
  }
  struct dirent *de;
  while ((de = readdir(d)))
    if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
      total += du_at(dirfd(d), de->d_name);
  closedir(d);
  return total;
}

uint64_t vs_img_du(const char *path) { return du_at(AT_FDCWD, path); }
