/* The digests of regular files a layer apply wrote, found again by the file's identity.
 *
 * The table is keyed by device and inode, not by path: a tar may write a path twice, replace a
 * file by a link, or reach a file through a symbolic link inside the tree, and every path that
 * names the same inode reads the same data. An inode number freed by an unlink can come back for
 * a later file; the applier records or drops the entry of every regular file it creates, so a
 * reused number never keeps the digest of the file that had it before. */
#include "image/image.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

typedef struct file_digest {
  dev_t dev;
  ino_t ino;
  off_t size;
  bool used;
  char digest[VS_DIGEST_MAX];
} file_digest;

struct vs_file_digests {
  file_digest *slots;
  size_t cap, n; /* cap is a power of two, kept at most half full */
};

vs_file_digests *vs_file_digests_new(void) {
  vs_file_digests *t = vs_malloc0(sizeof(*t));
  t->cap = 1024;
  t->slots = vs_malloc0(t->cap * sizeof(file_digest));
  return t;
}

void vs_file_digests_free(vs_file_digests *t) {
  if (!t)
    return;
  free(t->slots);
  free(t);
}

static size_t slot_of(const vs_file_digests *t, dev_t dev, ino_t ino) {
  uint64_t h = ((uint64_t)ino * 0x9e3779b97f4a7c15ULL) ^ ((uint64_t)dev * 0xc2b2ae3d27d4eb4fULL);
  size_t i = (size_t)(h >> 17) & (t->cap - 1);
  while (t->slots[i].used && !(t->slots[i].dev == dev && t->slots[i].ino == ino))
    i = (i + 1) & (t->cap - 1);
  return i;
}

static void grow(vs_file_digests *t) {
  file_digest *old = t->slots;
  size_t old_cap = t->cap;
  t->cap *= 2;
  t->slots = vs_malloc0(t->cap * sizeof(file_digest));
  for (size_t i = 0; i < old_cap; i++)
    if (old[i].used)
      t->slots[slot_of(t, old[i].dev, old[i].ino)] = old[i];
  free(old);
}

void vs_file_digests_put(vs_file_digests *t, const struct stat *st, const char *digest) {
  if ((t->n + 1) * 2 > t->cap)
    grow(t);
  file_digest *s = &t->slots[slot_of(t, st->st_dev, st->st_ino)];
  if (!s->used)
    t->n++;
  *s = (file_digest){.dev = st->st_dev, .ino = st->st_ino, .size = st->st_size, .used = true};
  snprintf(s->digest, sizeof(s->digest), "%s", digest);
}

/* Open addressing without tombstones: an entry is never removed, only marked stale (size -1),
 * which no file has. */
void vs_file_digests_drop(vs_file_digests *t, const struct stat *st) {
  file_digest *s = &t->slots[slot_of(t, st->st_dev, st->st_ino)];
  if (s->used)
    s->size = -1;
}

bool vs_file_digests_get(const vs_file_digests *t, const struct stat *st,
                         char digest[VS_DIGEST_MAX]) {
  if (!t || !S_ISREG(st->st_mode))
    return false;
  const file_digest *s = &t->slots[slot_of(t, st->st_dev, st->st_ino)];
  if (!s->used || s->size != st->st_size)
    return false;
  memcpy(digest, s->digest, VS_DIGEST_MAX);
  return true;
}
