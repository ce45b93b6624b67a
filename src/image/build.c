/* The image builder's build context: COPY and ADD sources resolved inside it.
 *
 * A build context is untrusted: its Dockerfile names the sources and it may hold symbolic links
 * to anywhere. Every source is cleaned lexically first (a ".." that leaves the context is an
 * error), then walked one segment at a time from the context's directory descriptor with
 * O_NOFOLLOW semantics: each symbolic link met is read and its target resolved from where it
 * stands, and a target leading out of the context (absolute, or ".." past the top) is an error.
 * A glob matches what a walk of the context finds: it does not descend through links, and a link
 * it matches is handed back as the link itself (copied as a link, never read through). Every
 * other path handed back contains no symbolic link, so opening it below the context's
 * descriptor cannot leave the context.
 */
#include "image/image.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_LINKS 40 /* symbolic links followed for one source, as the kernel's limit */

static bool escapes(const char *clean) { return !strcmp(clean, "..") || !strncmp(clean, "../", 3); }

static char *join(const char *a, const char *b) {
  if (!strcmp(a, "."))
    return vs_strdup(b);
  return vs_asprintf("%s/%s", a, b);
}

/* Resolve the clean relative path p inside the context, following links inside it. *out
 * receives a path without links. Returns 1 when found, 0 when some segment does not exist. */
static int resolve(int ctxfd, const char *src, const char *p, char **out, vs_error **err) {
  _cleanup_free_ char *path = vs_strdup(p);
  int links = 0;
restart:
  if (escapes(path))
    return vs_error_set(err, 0, "forbidden path outside the build context: %s", src);
  _cleanup_free_ char *cur = vs_strdup(".");
  for (const char *seg = path; *seg && strcmp(path, ".") != 0;) {
    size_t sl = strcspn(seg, "/");
    _cleanup_free_ char *name = vs_img_strndup(seg, sl);
    const char *rest = seg[sl] ? seg + sl + 1 : "";
    _cleanup_free_ char *cand = join(cur, name);
    struct stat st;
    if (fstatat(ctxfd, cand, &st, AT_SYMLINK_NOFOLLOW) < 0) {
      if (errno == ENOENT || errno == ENOTDIR)
        return 0;
      return vs_error_set(err, errno, "stat %s in the build context", cand);
    }
    if (S_ISLNK(st.st_mode)) {
      if (++links > MAX_LINKS)
        return vs_error_set(err, ELOOP, "%s: too many symbolic links in the build context", src);
      char target[PATH_MAX];
      ssize_t tl = readlinkat(ctxfd, cand, target, sizeof(target) - 1);
      if (tl < 0)
        return vs_error_set(err, errno, "read the symbolic link %s in the build context", cand);
      target[tl] = 0;
      if (target[0] == '/')
        return vs_error_set(err, 0,
                            "%s: the symbolic link %s leads outside the build context (to %s)", src,
                            cand, target);
      _cleanup_free_ char *joined = vs_asprintf("%s/%s/%s", cur, target, rest);
      free(path);
      path = vs_img_path_clean(joined, strlen(joined));
      if (escapes(path))
        return vs_error_set(err, 0,
                            "%s: the symbolic link %s leads outside the build context (to %s)", src,
                            cand, target);
      goto restart;
    }
    free(cur);
    cur = steal_pointer(&cand);
    seg = rest;
  }
  *out = steal_pointer(&cur);
  return 1;
}

static bool has_glob(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (s[i] == '*' || s[i] == '?' || s[i] == '[')
      return true;
  return false;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The names in the context directory dir (a resolved path) matching the glob seg, sorted. */
static int list_matching(int ctxfd, const char *dir, const char *seg, char ***names, size_t *n,
                         vs_error **err) {
  *names = NULL;
  *n = 0;
  int fd = openat(ctxfd, dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0)
    return errno == ENOENT || errno == ENOTDIR
               ? 0
               : vs_error_set(err, errno, "open %s in the build context", dir);
  DIR *d = fdopendir(fd);
  if (!d) {
    close(fd);
    return vs_error_set(err, errno, "read %s in the build context", dir);
  }
  struct dirent *de;
  size_t cap = 0;
  while ((de = readdir(d))) {
    if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..") || fnmatch(seg, de->d_name, 0) != 0)
      continue;
    if (*n == cap) {
      cap = cap ? cap * 2 : 16;
      *names = vs_realloc(*names, cap * sizeof(char *));
    }
    (*names)[(*n)++] = vs_strdup(de->d_name);
  }
  closedir(d);
  if (*n)
    qsort(*names, *n, sizeof(char *), cmp_str);
  return 0;
}

typedef struct matches {
  char **v;
  size_t n, cap;
} matches;

static void add_match(matches *m, char *p) {
  for (size_t i = 0; i < m->n; i++)
    if (!strcmp(m->v[i], p)) {
      free(p);
      return;
    }
  if (m->n + 2 > m->cap) {
    m->cap = (m->n + 2) * 2;
    m->v = vs_realloc(m->v, m->cap * sizeof(char *));
  }
  m->v[m->n++] = p;
  m->v[m->n] = NULL;
}

/* Expand the clean pattern below the resolved prefix (segment by segment) into m. */
static int expand(int ctxfd, const char *src, const char *prefix, const char *pattern,
                  const vs_ignore *ig, matches *m, vs_error **err) {
  const char *g = pattern;
  /* the literal segments before the first glob are resolved at once */
  const char *lit_end = pattern;
  for (const char *s = pattern; *s;) {
    size_t sl = strcspn(s, "/");
    if (has_glob(s, sl))
      break;
    s += sl;
    lit_end = s;
    if (*s)
      s++;
  }
  _cleanup_free_ char *lit = vs_img_strndup(pattern, (size_t)(lit_end - pattern));
  _cleanup_free_ char *joined = *lit ? join(prefix, lit) : vs_strdup(prefix);
  _cleanup_free_ char *base = NULL;
  int r = resolve(ctxfd, src, joined, &base, err);
  if (r <= 0)
    return r;
  g = *lit_end == '/' ? lit_end + 1 : lit_end;
  if (!*g) {
    if (!strcmp(base, ".") || !vs_dockerignore_match(ig, base))
      add_match(m, steal_pointer(&base));
    return 0;
  }
  size_t sl = strcspn(g, "/");
  _cleanup_free_ char *seg = vs_img_strndup(g, sl);
  const char *rest = g[sl] ? g + sl + 1 : "";
  char **names;
  size_t n;
  if (list_matching(ctxfd, base, seg, &names, &n, err) < 0)
    return -1;
  r = 0;
  for (size_t i = 0; i < n && r == 0; i++) {
    _cleanup_free_ char *child = join(base, names[i]);
    _cleanup_free_ char *pat = vs_strdup(rest);
    struct stat st;
    if (vs_dockerignore_match(ig, child) || fstatat(ctxfd, child, &st, AT_SYMLINK_NOFOLLOW) < 0)
      continue;
    if (S_ISLNK(st.st_mode)) {
      /* as Docker's walk of the context: a link a glob matches is copied as the link itself,
       * and no glob descends through one */
      if (!*rest)
        add_match(m, steal_pointer(&child));
      continue;
    }
    r = expand(ctxfd, src, child, pat, ig, m, err);
  }
  for (size_t i = 0; i < n; i++)
    free(names[i]);
  free(names);
  return r;
}

int vs_build_context_glob(int ctxfd, const char *src, const vs_ignore *ig, char ***out, size_t *n,
                          vs_error **err) {
  _cleanup_free_ char *clean = vs_img_path_clean(src, strlen(src));
  if (escapes(clean))
    return vs_error_set(err, 0, "forbidden path outside the build context: %s", src);
  matches m = {0};
  if (expand(ctxfd, src, ".", strcmp(clean, ".") ? clean : "", ig, &m, err) < 0) {
    for (size_t i = 0; i < m.n; i++)
      free(m.v[i]);
    free(m.v);
    return -1;
  }
  if (m.n == 0)
    return vs_error_set(err, ENOENT,
                        "file not found in build context or excluded by .dockerignore: %s", src);
  *out = m.v;
  *n = m.n;
  return 0;
}
