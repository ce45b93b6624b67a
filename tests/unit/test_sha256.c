#include "base/base.h"
#include "tap.h"
#include "testutil.h"

#include <errno.h>

/* FIPS 180-2 test vectors */
TEST(sha256_known_vectors) {
  char out[VS_SHA256_HEX_LEN + 1];
  vs_sha256_hex("", 0, out);
  CHECK_STREQ(out, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  vs_sha256_hex("abc", 3, out);
  CHECK_STREQ(out, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
  vs_sha256_hex(m, strlen(m), out);
  CHECK_STREQ(out, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

TEST(sha256_incremental_matches_one_shot) {
  /* one million 'a': the long FIPS vector, fed in uneven pieces */
  vs_sha256_ctx ctx;
  vs_sha256_init(&ctx);
  char chunk[997];
  memset(chunk, 'a', sizeof(chunk));
  size_t left = 1000000;
  while (left) {
    size_t n = left < sizeof(chunk) ? left : sizeof(chunk);
    vs_sha256_update(&ctx, chunk, n);
    left -= n;
  }
  char out[VS_SHA256_HEX_LEN + 1];
  vs_sha256_final(&ctx, out);
  CHECK_STREQ(out, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
  CHECK(ctx.md == NULL);
}

TEST(sha256_raw_and_abandon) {
  vs_sha256_ctx ctx;
  vs_sha256_init(&ctx);
  vs_sha256_update(&ctx, "abc", 3);
  uint8_t raw[32];
  vs_sha256_final_raw(&ctx, raw);
  CHECK_EQ(raw[0], 0xba);
  CHECK_EQ(raw[31], 0xad);
  vs_sha256_init(&ctx);
  vs_sha256_update(&ctx, "x", 1);
  vs_sha256_abandon(&ctx); /* ASan would report the leak otherwise */
  CHECK(ctx.md == NULL);
}

TEST(sha256_file_and_errors) {
  _cleanup_free_ char *dir = test_tmpdir();
  _cleanup_free_ char *p = vs_asprintf("%s/blob", dir);
  test_write(p, "abc");
  char out[VS_SHA256_HEX_LEN + 1];
  _cleanup_error_ vs_error *err = NULL;
  CHECK_EQ(vs_sha256_file(p, out, &err), 0);
  CHECK_STREQ(out, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK_EQ(vs_sha256_file("/nonexistent/blob", out, &err), -1);
  CHECK_EQ(err->errnum, ENOENT);
  CHECK_CONTAINS(err->msg, "/nonexistent/blob");
  vs_error_freep(&err);
  CHECK_EQ(vs_sha256_file(dir, out, &err), -1);
  CHECK_EQ(err->errnum, EISDIR);
  CHECK_CONTAINS(err->msg, "sha256 ");
  vs_error_freep(&err);
  CHECK_EQ(vs_rm_rf(dir, &err), 0);
}

int main(void) { return tap_run(); }
