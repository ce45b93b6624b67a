/* The gzip form of uncompressed layer blobs, for pushes.
 *
 * Layers a build, a commit or a load makes are stored as plain tars (nothing to decompress when
 * they are unpacked or saved again), but a registry should get them compressed, as docker push
 * sends them. The compressed blob is made once and kept in the store like any blob; the file
 * compressed/sha256/<hex of the tar> holds its digest, so a second push of the same layer (to
 * another tag or registry) compresses nothing. Garbage collection keeps a compressed blob while
 * its tar is kept (store.c). zlib writes a gzip header without a time or name, so the same tar
 * always gives the same blob. */
#include "image/image.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define GZIP_CHUNK ((size_t)256 << 10)

char *vs_store_gzip_map_path(const vs_store *s, const char *tar_digest) {
  return vs_asprintf("%s/compressed/sha256/%s", vs_store_root(s), tar_digest + 7);
}

bool vs_store_gzip_known(const vs_store *s, const char *tar_digest, char gz_out[VS_DIGEST_MAX]) {
  if (!vs_digest_valid(tar_digest))
    return false;
  _cleanup_free_ char *path = vs_store_gzip_map_path(s, tar_digest);
  _cleanup_free_ char *text = NULL;
  vs_error *e = NULL;
  if (vs_read_file(path, 128, &text, NULL, &e) < 0) {
    vs_error_free(e);
    return false;
  }
  text[strcspn(text, "\n")] = 0;
  if (!vs_digest_valid(text) || !vs_store_has_blob(s, text))
    return false;
  snprintf(gz_out, VS_DIGEST_MAX, "%s", text);
  return true;
}

/* Deflate everything from in into the blob writer. */
static int gzip_into(int in, vs_blob_writer *w, const char *what, vs_error **err) {
  z_stream z = {0};
  if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
    return vs_error_set(err, ENOMEM, "gzip %s: cannot start zlib", what);
  _cleanup_free_ unsigned char *ibuf = vs_malloc0(GZIP_CHUNK);
  _cleanup_free_ unsigned char *obuf = vs_malloc0(GZIP_CHUNK);
  int r = 0;
  for (bool end = false; r == 0 && !end;) {
    ssize_t n = read(in, ibuf, GZIP_CHUNK);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      r = vs_error_set(err, errno, "read %s", what);
      break;
    }
    end = n == 0;
    z.next_in = ibuf;
    z.avail_in = (uInt)n;
    int zr;
    do {
      z.next_out = obuf;
      z.avail_out = (uInt)GZIP_CHUNK;
      zr = deflate(&z, end ? Z_FINISH : Z_NO_FLUSH);
      if (zr == Z_STREAM_ERROR) {
        r = vs_error_set(err, EIO, "gzip %s: zlib stream error", what);
        break;
      }
      r = vs_blob_writer_write(w, obuf, GZIP_CHUNK - z.avail_out, err);
    } while (r == 0 && z.avail_out == 0);
  }
  deflateEnd(&z);
  return r;
}

int vs_store_gzip_blob(vs_store *s, const char *tar_digest, char gz_out[VS_DIGEST_MAX],
                       int64_t *size_out, vs_error **err) {
  if (!vs_digest_valid(tar_digest))
    return vs_error_set(err, EINVAL, "bad digest \"%.80s\"", tar_digest);
  if (!vs_store_gzip_known(s, tar_digest, gz_out)) {
    _cleanup_free_ char *path = vs_store_blob_path(s, tar_digest);
    _cleanup_close_ int in = open(path, O_RDONLY | O_CLOEXEC);
    if (in < 0)
      return vs_error_set(err, errno, "open layer blob %s", tar_digest);
    vs_blob_writer *w = vs_blob_writer_new(s, err);
    if (!w)
      return -1;
    int r = gzip_into(in, w, tar_digest, err);
    if (r == 0)
      r = vs_blob_writer_commit(w, NULL, gz_out, err);
    vs_blob_writer_free(w);
    if (r < 0)
      return vs_error_wrap(err, "compress layer %.19s", tar_digest);
    _cleanup_free_ char *dir = vs_asprintf("%s/compressed/sha256", vs_store_root(s));
    _cleanup_free_ char *map = vs_store_gzip_map_path(s, tar_digest);
    _cleanup_free_ char *line = vs_asprintf("%s\n", gz_out);
    if (vs_mkdir_p(dir, 0700, err) < 0 ||
        vs_write_file_atomic(map, line, strlen(line), 0600, err) < 0)
      return vs_error_wrap(err, "remember the compressed form of %.19s", tar_digest);
  }
  _cleanup_free_ char *gz_path = vs_store_blob_path(s, gz_out);
  struct stat st;
  if (stat(gz_path, &st) < 0)
    return vs_error_set(err, errno, "compressed blob %s", gz_out);
  *size_out = st.st_size;
  return 0;
}
