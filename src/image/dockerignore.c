/* .dockerignore: which files of a build context the builder leaves out.
 *
 * Patterns follow Docker's: each is cleaned like a path (a leading "/" dropped), "*" and "?" do
 * not cross "/", "[...]" is a class ("^" negates, "a-z" ranges, "\" escapes), "**" crosses
 * directories and "**" followed by "/" also matches no directory at all. A line starting with "!"
 * re-includes what it matches. A path is excluded when the last pattern matching it, or one of
 * its parent directories, is not a "!" one.
 *
 * Matching is dynamic programming over (pattern token, path position), so a hostile pattern
 * full of stars costs its length times the path's, never exponential time.
 */
#include "image/image.h"

#include <string.h>

#define MAX_PATTERN 4096

typedef enum { T_LIT, T_ANY, T_CLASS, T_STAR, T_DSTAR, T_DSTAR_SLASH } tok_kind;

typedef struct tok {
  tok_kind kind;
  char c;             /* T_LIT */
  const char *class_; /* T_CLASS: just after '[' in the pattern */
} tok;

typedef struct pattern {
  char *text; /* cleaned */
  bool exclusion;
  tok *toks;
  size_t ntoks;
} pattern;

struct vs_ignore {
  pattern *pats;
  size_t n;
};

/* Does c match the class starting at p (after '[')? *end receives the position after ']'.
 * Returns -1 for a malformed class. */
static int class_match(const char *p, char ch, const char **end) {
  unsigned char c = (unsigned char)ch;
  bool neg = *p == '^', hit = false;
  if (neg)
    p++;
  if (*p == ']')
    return -1; /* an empty class */
  while (*p != ']') {
    if (!*p || (*p == '\\' && !p[1]))
      return -1;
    if (*p == '\\')
      p++;
    unsigned char lo = (unsigned char)*p++, hi = lo;
    if (*p == '-' && p[1] && p[1] != ']') {
      p++;
      if (*p == '\\' && !*++p)
        return -1;
      hi = (unsigned char)*p++;
    }
    if (lo <= c && c <= hi)
      hit = true;
  }
  *end = p + 1;
  return hit != neg;
}

/* Split a cleaned pattern into tokens; -1 when malformed. */
static int tokenize(pattern *pt) {
  const char *p = pt->text;
  pt->toks = vs_malloc0((strlen(p) + 1) * sizeof(tok));
  while (*p) {
    tok *t = &pt->toks[pt->ntoks++];
    if (p[0] == '*' && p[1] == '*') {
      while (*p == '*')
        p++;
      if (*p == '/') {
        t->kind = T_DSTAR_SLASH;
        p++;
      } else {
        t->kind = T_DSTAR;
      }
    } else if (*p == '*') {
      t->kind = T_STAR;
      p++;
    } else if (*p == '?') {
      t->kind = T_ANY;
      p++;
    } else if (*p == '[') {
      const char *end;
      t->kind = T_CLASS;
      t->class_ = p + 1;
      if (class_match(p + 1, 'a', &end) < 0)
        return -1;
      p = end;
    } else if (*p == '\\') {
      if (!p[1])
        return -1;
      t->kind = T_LIT;
      t->c = p[1];
      p += 2;
    } else {
      t->kind = T_LIT;
      t->c = *p++;
    }
  }
  return 0;
}

/* Does the whole of s (length n) match pt? */
static bool pattern_match(const pattern *pt, const char *s, size_t n) {
  /* next[j]: tokens i+1.. match s[j..]; cur[j]: tokens i.. match s[j..] */
  bool *next = vs_malloc0(n + 1), *cur = vs_malloc0(n + 1);
  next[n] = true;
  for (size_t i = pt->ntoks; i-- > 0;) {
    const tok *t = &pt->toks[i];
    bool any_slash_after = false; /* T_DSTAR_SLASH: some k >= j with s[k]=='/' && next[k+1] */
    cur[n] = (t->kind == T_STAR || t->kind == T_DSTAR || t->kind == T_DSTAR_SLASH) && next[n];
    for (size_t j = n; j-- > 0;) {
      char c = s[j];
      const char *end;
      switch (t->kind) {
      case T_LIT:
        cur[j] = c == t->c && next[j + 1];
        break;
      case T_ANY:
        cur[j] = c != '/' && next[j + 1];
        break;
      case T_CLASS:
        cur[j] = c != '/' && class_match(t->class_, c, &end) == 1 && next[j + 1];
        break;
      case T_STAR:
        cur[j] = next[j] || (c != '/' && cur[j + 1]);
        break;
      case T_DSTAR:
        cur[j] = next[j] || cur[j + 1];
        break;
      case T_DSTAR_SLASH:
        if (c == '/' && next[j + 1])
          any_slash_after = true;
        cur[j] = next[j] || any_slash_after;
        break;
      }
    }
    bool *tmp = next;
    next = cur;
    cur = tmp;
  }
  bool r = next[0];
  free(next);
  free(cur);
  return r;
}

char *vs_img_path_clean(const char *path, size_t len) {
  char *out = vs_malloc0(len + 2);
  size_t o = 0;
  bool rooted = len && path[0] == '/';
  size_t i = 0;
  while (i < len) {
    while (i < len && path[i] == '/')
      i++;
    size_t s = i;
    while (i < len && path[i] != '/')
      i++;
    size_t sl = i - s;
    if (sl == 0 || (sl == 1 && path[s] == '.'))
      continue;
    if (sl == 2 && path[s] == '.' && path[s + 1] == '.') {
      /* drop the last segment unless there is none or it is itself ".." */
      size_t back = o;
      while (back && out[back - 1] != '/')
        back--;
      if (o > 0 && !(o - back == 2 && out[back] == '.' && out[back + 1] == '.')) {
        o = back ? back - 1 : 0;
        continue;
      }
      if (rooted)
        continue;
    }
    if (o)
      out[o++] = '/';
    memcpy(out + o, path + s, sl);
    o += sl;
  }
  if (!o)
    out[o++] = '.';
  out[o] = 0;
  return out;
}

void vs_dockerignore_free(vs_ignore *ig) {
  if (!ig)
    return;
  for (size_t i = 0; i < ig->n; i++) {
    free(ig->pats[i].text);
    free(ig->pats[i].toks);
  }
  free(ig->pats);
  free(ig);
}

int vs_dockerignore_parse(const char *text, size_t len, vs_ignore **out, vs_error **err) {
  vs_ignore *ig = vs_malloc0(sizeof(*ig));
  const char *p = text, *end = text + len;
  int lineno = 0;
  while (p < end) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    const char *e = nl ? nl : end;
    const char *s = p;
    p = nl ? nl + 1 : end;
    lineno++;
    while (s < e && (*s == ' ' || *s == '\t'))
      s++;
    const char *t = e;
    while (t > s && (t[-1] == ' ' || t[-1] == '\t' || t[-1] == '\r'))
      t--;
    if (s == t || *s == '#')
      continue;
    bool exclusion = *s == '!';
    if (exclusion) {
      s++;
      while (s < t && (*s == ' ' || *s == '\t'))
        s++;
    }
    if ((size_t)(t - s) > MAX_PATTERN) {
      vs_dockerignore_free(ig);
      return vs_error_set(err, 0, ".dockerignore line %d: pattern longer than %d bytes", lineno,
                          MAX_PATTERN);
    }
    if (memchr(s, 0, (size_t)(t - s))) {
      vs_dockerignore_free(ig);
      return vs_error_set(err, 0, ".dockerignore line %d: NUL byte in a pattern", lineno);
    }
    ig->pats = vs_realloc(ig->pats, (ig->n + 1) * sizeof(pattern));
    pattern *pt = &ig->pats[ig->n++];
    *pt = (pattern){.text = vs_img_path_clean(s, (size_t)(t - s)), .exclusion = exclusion};
    if (tokenize(pt) < 0) {
      vs_error_set(err, 0, ".dockerignore line %d: syntax error in pattern \"%s\"", lineno,
                   pt->text);
      vs_dockerignore_free(ig);
      return -1;
    }
  }
  *out = ig;
  return 0;
}

bool vs_dockerignore_match(const vs_ignore *ig, const char *path) {
  size_t n = strlen(path);
  bool matched = false;
  for (size_t i = 0; ig && i < ig->n; i++) {
    const pattern *pt = &ig->pats[i];
    /* an exclusion only matters for a path matched so far, an inclusion for one that is not */
    if (pt->exclusion != matched)
      continue;
    bool m = pattern_match(pt, path, n);
    for (size_t k = 0; !m && k < n; k++)
      if (path[k] == '/')
        m = pattern_match(pt, path, k);
    if (m)
      matched = !pt->exclusion;
  }
  return matched;
}
