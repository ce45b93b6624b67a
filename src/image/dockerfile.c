/* The Dockerfile parser and Docker's word expansion (the shell lexer of its builder).
 *
 * Reading follows Docker's parser: parser directives (`# syntax=`, `# escape=`) only before
 * anything else, comments and blank lines dropped (also inside continued lines), a line ending in
 * the escape character continues on the next, the keyword is case-insensitive, leading --flags
 * are split off, and each keyword's arguments take the shape the builder expects (see
 * vs_df_instr in image.h). Expansion is not done here: Docker expands when it dispatches, with
 * the environment the build has reached at that step.
 */
#include "image/image.h"

#include <ctype.h>
#include <string.h>

/* ------------------------------------------------------------ a string builder */

typedef struct sbuf {
  char *s;
  size_t len, cap;
} sbuf;

static void sb_add(sbuf *b, const char *s, size_t n) {
  if (!b->s || b->len + n + 1 > b->cap) {
    b->cap = (b->len + n + 1) * 2;
    b->s = vs_realloc(b->s, b->cap);
  }
  memcpy(b->s + b->len, s, n);
  b->len += n;
  b->s[b->len] = 0;
}

static void sb_addc(sbuf *b, char c) { sb_add(b, &c, 1); }

static char *sb_take(sbuf *b) {
  if (!b->s)
    return vs_strdup("");
  char *s = b->s;
  b->s = NULL;
  b->len = b->cap = 0;
  return s;
}

/* A growing array of strings, kept NULL-terminated. */
typedef struct strv {
  char **v;
  size_t n, cap;
} strv;

static void strv_push(strv *a, char *s) {
  if (a->n + 2 > a->cap) {
    a->cap = (a->n + 2) * 2;
    a->v = vs_realloc(a->v, a->cap * sizeof(char *));
  }
  a->v[a->n++] = s;
  a->v[a->n] = NULL;
}

static void strv_free(char **v, size_t n) {
  for (size_t i = 0; i < n; i++)
    free(v[i]);
  free(v);
}

static bool is_ws(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

/* ------------------------------------------------------------ expansion */

/* The words being built: characters from an expansion or outside quotes split at whitespace
 * when splitting is on; quoted or escaped ones never do. */
typedef struct lexer {
  const char *p;
  char escape;
  vs_df_lookup lookup;
  void *ctx;
  bool split;
  sbuf cur;
  bool in_word; /* cur holds a word, possibly empty ("" quoted) */
  strv words;
} lexer;

static void lx_raw(lexer *lx, char c) {
  sb_addc(&lx->cur, c);
  lx->in_word = true;
}

static void lx_end_word(lexer *lx) {
  if (lx->in_word)
    strv_push(&lx->words, sb_take(&lx->cur));
  lx->in_word = false;
}

static void lx_char(lexer *lx, char c) {
  if (lx->split && is_ws(c)) {
    lx_end_word(lx);
    return;
  }
  lx_raw(lx, c);
}

static bool name_char(char c) { return isalnum((unsigned char)c) || c == '_'; }

static int lx_until(lexer *lx, char stop, bool quoted, vs_error **err);

/* After "${name" and the modifier: the word up to the closing brace, into out (unsplit). */
static int lx_modifier_word(lexer *lx, char **out, vs_error **err) {
  lexer sub = {.p = lx->p, .escape = lx->escape, .lookup = lx->lookup, .ctx = lx->ctx};
  int r = lx_until(&sub, '}', false, err);
  if (r == 0 && *sub.p != '}')
    r = vs_error_set(err, 0, "missing '}' in a variable substitution");
  if (r < 0) {
    free(sub.cur.s);
    strv_free(sub.words.v, sub.words.n);
    return -1;
  }
  lx->p = sub.p + 1;
  *out = sb_take(&sub.cur);
  strv_free(sub.words.v, sub.words.n);
  return 0;
}

static void lx_value(lexer *lx, const char *v, bool quoted) {
  for (; v && *v; v++) {
    if (quoted)
      lx_raw(lx, *v);
    else
      lx_char(lx, *v);
  }
}

/* At "$": $name, ${name}, ${name<op>word}; a lone "$" stays literal. */
static int lx_dollar(lexer *lx, bool quoted, vs_error **err) {
  lx->p++; /* '$' */
  if (*lx->p != '{') {
    const char *start = lx->p;
    while (name_char(*lx->p))
      lx->p++;
    if (lx->p == start) {
      lx_raw(lx, '$');
      return 0;
    }
    _cleanup_free_ char *name = vs_img_strndup(start, (size_t)(lx->p - start));
    lx_value(lx, lx->lookup(name, lx->ctx), quoted);
    if (quoted)
      lx->in_word = true;
    return 0;
  }
  lx->p++; /* '{' */
  const char *start = lx->p;
  while (name_char(*lx->p))
    lx->p++;
  if (lx->p == start)
    return vs_error_set(err, 0, "bad substitution: ${%.*s", (int)strcspn(start, "}"), start);
  _cleanup_free_ char *name = vs_img_strndup(start, (size_t)(lx->p - start));
  const char *val = lx->lookup(name, lx->ctx);
  if (*lx->p == '}') {
    lx->p++;
    lx_value(lx, val, quoted);
    if (quoted)
      lx->in_word = true;
    return 0;
  }
  bool colon = *lx->p == ':';
  if (colon)
    lx->p++;
  char op = *lx->p;
  if (op != '-' && op != '+' && op != '?') {
    if (!op)
      return vs_error_set(err, 0, "missing '}' in a variable substitution");
    return vs_error_set(err, 0, "unsupported modifier (%c) in substitution of %s", op, name);
  }
  lx->p++;
  _cleanup_free_ char *word = NULL;
  if (lx_modifier_word(lx, &word, err) < 0)
    return -1;
  bool set = val && (!colon || *val);
  const char *use = val;
  if (op == '-')
    use = set ? val : word;
  else if (op == '+')
    use = set ? word : "";
  else if (!set) /* '?' */
    return vs_error_set(
        err, 0, "%s: %s", name,
        *word ? word
              : (colon ? "is not allowed to be unset or empty" : "is not allowed to be unset"));
  lx_value(lx, use, quoted);
  if (quoted)
    lx->in_word = true;
  return 0;
}

static int lx_single_quote(lexer *lx, vs_error **err) {
  lx->p++;
  lx->in_word = true;
  for (; *lx->p && *lx->p != '\''; lx->p++)
    lx_raw(lx, *lx->p);
  if (!*lx->p)
    return vs_error_set(err, 0,
                        "unexpected end of statement while looking for matching single-quote");
  lx->p++;
  return 0;
}

static int lx_double_quote(lexer *lx, vs_error **err) {
  lx->p++;
  lx->in_word = true;
  if (lx_until(lx, '"', true, err) < 0)
    return -1;
  if (*lx->p != '"')
    return vs_error_set(err, 0,
                        "unexpected end of statement while looking for matching double-quote");
  lx->p++;
  return 0;
}

/* Process up to stop (not consumed) or the end. In double quotes only $ and the escapes of
 * ", $ and the escape character are special. */
static int lx_until(lexer *lx, char stop, bool quoted, vs_error **err) {
  while (*lx->p && *lx->p != stop) {
    char c = *lx->p;
    if (c == lx->escape) {
      char next = lx->p[1];
      if (quoted) {
        if (next == '"' || next == '$' || next == lx->escape) {
          lx_raw(lx, next);
          lx->p += 2;
        } else {
          lx_raw(lx, c);
          lx->p++;
        }
        continue;
      }
      if (!next) { /* a trailing escape is dropped */
        lx->p++;
        continue;
      }
      lx_raw(lx, next);
      lx->p += 2;
      continue;
    }
    if (c == '$') {
      if (lx_dollar(lx, quoted, err) < 0)
        return -1;
      continue;
    }
    if (!quoted && c == '\'') {
      if (lx_single_quote(lx, err) < 0)
        return -1;
      continue;
    }
    if (!quoted && c == '"') {
      if (lx_double_quote(lx, err) < 0)
        return -1;
      continue;
    }
    if (quoted)
      lx_raw(lx, c);
    else
      lx_char(lx, c);
    lx->p++;
  }
  return 0;
}

static int expand(const char *word, char escape, vs_df_lookup lookup, void *ctx, bool split,
                  lexer *lx, vs_error **err) {
  *lx = (lexer){.p = word, .escape = escape, .lookup = lookup, .ctx = ctx, .split = split};
  if (lx_until(lx, 0, false, err) < 0) {
    free(lx->cur.s);
    strv_free(lx->words.v, lx->words.n);
    return vs_error_wrap(err, "expand \"%.200s\"", word);
  }
  return 0;
}

int vs_df_expand_word(const char *word, char escape, vs_df_lookup lookup, void *ctx, char **out,
                      vs_error **err) {
  lexer lx;
  if (expand(word, escape, lookup, ctx, false, &lx, err) < 0)
    return -1;
  *out = sb_take(&lx.cur);
  strv_free(lx.words.v, lx.words.n);
  return 0;
}

int vs_df_expand_words(const char *word, char escape, vs_df_lookup lookup, void *ctx, char ***out,
                       size_t *n, vs_error **err) {
  lexer lx;
  if (expand(word, escape, lookup, ctx, true, &lx, err) < 0)
    return -1;
  lx_end_word(&lx);
  free(lx.cur.s);
  if (!lx.words.v)
    lx.words.v = vs_malloc0(sizeof(char *));
  *out = lx.words.v;
  *n = lx.words.n;
  return 0;
}

/* ------------------------------------------------------------ instructions */

void vs_df_instr_clear(vs_df_instr *in) {
  if (!in)
    return;
  free(in->keyword);
  free(in->original);
  strv_free(in->flags, in->nflags);
  strv_free(in->args, in->nargs);
  if (in->sub) {
    vs_df_instr_clear(in->sub);
    free(in->sub);
  }
  memset(in, 0, sizeof(*in));
}

void vs_dockerfile_clear(vs_dockerfile *df) {
  for (size_t i = 0; i < df->n; i++)
    vs_df_instr_clear(&df->instrs[i]);
  free(df->instrs);
  free(df->syntax);
  memset(df, 0, sizeof(*df));
}

const char *vs_df_flag(const vs_df_instr *in, const char *name) {
  size_t nl = strlen(name);
  for (size_t i = 0; i < in->nflags; i++) {
    const char *f = in->flags[i] + 2;
    if (!strncmp(f, name, nl) && (f[nl] == '=' || !f[nl]))
      return f[nl] ? f + nl + 1 : "";
  }
  return NULL;
}

int vs_df_flags_check(const vs_df_instr *in, const char *const *allowed, vs_error **err) {
  for (size_t i = 0; i < in->nflags; i++) {
    const char *f = in->flags[i] + 2;
    size_t nl = strcspn(f, "=");
    bool ok = false;
    for (size_t j = 0; allowed && allowed[j] && !ok; j++)
      ok = strlen(allowed[j]) == nl && !strncmp(allowed[j], f, nl);
    if (!ok) {
      _cleanup_free_ char *upper = vs_strdup(in->keyword);
      for (char *c = upper; *c; c++)
        *c = (char)toupper((unsigned char)*c);
      return vs_error_set(err, 0, "%s: unknown flag: --%.*s", upper, (int)nl, f);
    }
  }
  return 0;
}

/* Words split at unquoted whitespace with quotes and escapes kept, as Docker's parseWords. */
static void split_words_raw(const char *s, char escape, strv *out) {
  sbuf w = {0};
  char quote = 0;
  bool in_word = false;
  for (; *s; s++) {
    char c = *s;
    if (!quote && is_ws(c)) {
      if (in_word)
        strv_push(out, sb_take(&w));
      in_word = false;
      continue;
    }
    in_word = true;
    sb_addc(&w, c);
    if (c == escape && s[1] && quote != '\'') {
      sb_addc(&w, *++s);
      continue;
    }
    if (quote && c == quote)
      quote = 0;
    else if (!quote && (c == '"' || c == '\''))
      quote = c;
  }
  if (in_word)
    strv_push(out, sb_take(&w));
  free(w.s);
}

/* A JSON array of strings. Returns 1 if rest is one, 0 if it is not JSON (shell form then),
 * -1 if it is a JSON array holding something else than strings. */
static int parse_json_array(const char *rest, strv *out, vs_error **err) {
  if (rest[0] != '[')
    return 0;
  json_error_t jerr;
  json_t *a = json_loads(rest, JSON_REJECT_DUPLICATES, &jerr);
  if (!a)
    return 0;
  if (!json_is_array(a)) {
    json_decref(a);
    return 0;
  }
  size_t i;
  json_t *v;
  json_array_foreach(a, i, v) {
    if (!json_is_string(v)) {
      json_decref(a);
      return vs_error_set(err, 0, "not a JSON array of strings: %.200s", rest);
    }
  }
  json_array_foreach(a, i, v)
      strv_push(out, vs_img_strndup(json_string_value(v), json_string_length(v)));
  json_decref(a);
  return 1;
}

/* Leading --flags of the arguments, as Docker's extractBuilderFlags: words up to the first one
 * that does not start with "--"; a lone "--" ends them. Quotes in a flag's value are kept. */
static const char *split_flags(const char *s, strv *flags) {
  for (;;) {
    while (is_ws(*s))
      s++;
    if (strncmp(s, "--", 2) != 0)
      return s;
    size_t n = 0;
    char quote = 0;
    while (s[n] && (quote || !is_ws(s[n]))) {
      if (quote && s[n] == quote)
        quote = 0;
      else if (!quote && (s[n] == '"' || s[n] == '\''))
        quote = s[n];
      n++;
    }
    if (n == 2) /* "--" */
      return s + 2;
    strv_push(flags, vs_img_strndup(s, n));
    s += n;
  }
}

typedef enum {
  SHAPE_CMD,    /* JSON or one shell string */
  SHAPE_WORDS,  /* whitespace-separated words */
  SHAPE_LIST,   /* JSON or whitespace-separated words */
  SHAPE_STRING, /* one string */
  SHAPE_PAIRS,  /* name=value pairs (env, label) */
  SHAPE_ARG,
  SHAPE_HEALTH,
  SHAPE_ONBUILD,
} shape;

static const struct keyword {
  const char *name;
  shape shape;
} keywords[] = {
    {"add", SHAPE_LIST},     {"arg", SHAPE_ARG},           {"cmd", SHAPE_CMD},
    {"copy", SHAPE_LIST},    {"entrypoint", SHAPE_CMD},    {"env", SHAPE_PAIRS},
    {"expose", SHAPE_WORDS}, {"from", SHAPE_WORDS},        {"healthcheck", SHAPE_HEALTH},
    {"label", SHAPE_PAIRS},  {"maintainer", SHAPE_STRING}, {"onbuild", SHAPE_ONBUILD},
    {"run", SHAPE_CMD},      {"shell", SHAPE_CMD},         {"stopsignal", SHAPE_STRING},
    {"user", SHAPE_STRING},  {"volume", SHAPE_LIST},       {"workdir", SHAPE_STRING},
};

static const struct keyword *keyword_find(const char *name) {
  for (size_t i = 0; i < ARRAY_SIZE(keywords); i++)
    if (!strcmp(keywords[i].name, name))
      return &keywords[i];
  return NULL;
}

/* A heredoc opener among the words: "<<EOF", "<<-EOF", "<<'EOF'", "<<\"EOF\"". */
static bool has_heredoc(const char *rest) {
  for (const char *p = strstr(rest, "<<"); p; p = strstr(p + 2, "<<")) {
    const char *q = p + 2;
    if (*q == '-')
      q++;
    if (*q == '"' || *q == '\'')
      q++;
    if (isalpha((unsigned char)*q) || *q == '_')
      return true;
  }
  return false;
}

/* ENV and LABEL: "name=value ..." or the legacy "name value with spaces". */
static int parse_pairs(vs_df_instr *in, const char *rest, char escape, vs_error **err) {
  strv words = {0};
  split_words_raw(rest, escape, &words);
  strv args = {0};
  int r = 0;
  bool legacy = words.n && !strchr(words.v[0], '=');
  if (legacy) {
    size_t kl = strlen(words.v[0]);
    const char *val = rest + strspn(rest, " \t") + kl;
    val += strspn(val, " \t");
    if (words.n < 2)
      r = vs_error_set(err, 0, "%s must have two arguments",
                       !strcmp(in->keyword, "env") ? "ENV" : "LABEL");
    else {
      strv_push(&args, vs_strdup(words.v[0]));
      strv_push(&args, vs_strdup(val));
    }
  }
  for (size_t i = 0; !legacy && r == 0 && i < words.n; i++) {
    char *eq = strchr(words.v[i], '=');
    if (!eq) {
      r = vs_error_set(err, 0,
                       "Syntax error - can't find = in \"%.200s\". Must be of the form: name=value",
                       words.v[i]);
      break;
    }
    if (eq == words.v[i]) {
      r = vs_error_set(err, 0, "%s names can not be blank",
                       !strcmp(in->keyword, "env") ? "ENV" : "LABEL");
      break;
    }
    strv_push(&args, vs_img_strndup(words.v[i], (size_t)(eq - words.v[i])));
    strv_push(&args, vs_strdup(eq + 1));
  }
  strv_free(words.v, words.n);
  in->args = args.v;
  in->nargs = args.n;
  return r;
}

static int parse_arg(vs_df_instr *in, const char *rest, char escape, vs_error **err) {
  strv words = {0};
  split_words_raw(rest, escape, &words);
  strv args = {0};
  int r = 0;
  for (size_t i = 0; i < words.n; i++) {
    char *eq = strchr(words.v[i], '=');
    size_t nl = eq ? (size_t)(eq - words.v[i]) : strlen(words.v[i]);
    if (nl == 0) {
      r = vs_error_set(err, 0, "ARG names can not be blank");
      break;
    }
    /* args holds pairs; a NULL value (no default) would end the NULL-terminated vector early,
     * so the count, not the terminator, is what readers use */
    strv_push(&args, vs_img_strndup(words.v[i], nl));
    if (eq)
      strv_push(&args, vs_strdup(eq + 1));
    else {
      strv_push(&args, vs_strdup(""));
      free(args.v[args.n - 1]);
      args.v[args.n - 1] = NULL;
    }
  }
  strv_free(words.v, words.n);
  in->args = args.v;
  in->nargs = args.n;
  if (r == 0 && in->nargs == 0)
    r = vs_error_set(err, 0, "ARG requires at least one argument");
  return r;
}

static int parse_cmd_shape(vs_df_instr *in, const char *rest, strv *args, vs_error **err) {
  int j = parse_json_array(rest, args, err);
  if (j < 0)
    return -1;
  in->json = j == 1;
  if (!in->json && *rest)
    strv_push(args, vs_strdup(rest));
  return 0;
}

static int parse_instr(const char *line, char escape, bool nested, vs_df_instr *in, vs_error **err);

static int parse_args(vs_df_instr *in, const struct keyword *kw, const char *rest, char escape,
                      bool nested, vs_error **err) {
  strv args = {0};
  int r = 0;
  const char *upper = in->original; /* the keyword as written starts the original */
  int kwlen = (int)strlen(in->keyword);
  if ((!strcmp(in->keyword, "run") || !strcmp(in->keyword, "copy") ||
       !strcmp(in->keyword, "add")) &&
      has_heredoc(rest))
    return vs_error_set(err, 0, "%.*s: heredocs (<<EOF) are not supported by this builder", kwlen,
                        upper);
  switch (kw->shape) {
  case SHAPE_CMD:
    r = parse_cmd_shape(in, rest, &args, err);
    if (r == 0 && !strcmp(in->keyword, "shell") && !in->json)
      r = vs_error_set(err, 0, "SHELL requires the arguments to be in JSON form");
    else if (r == 0 && args.n == 0 &&
             (!strcmp(in->keyword, "run") || !strcmp(in->keyword, "shell")))
      r = vs_error_set(err, 0, "%.*s requires at least one argument", kwlen, upper);
    break;
  case SHAPE_LIST:
    r = parse_json_array(rest, &args, err);
    if (r >= 0) {
      in->json = r == 1;
      r = 0;
      if (!in->json)
        split_words_raw(rest, escape, &args);
    }
    if (r == 0 && !strcmp(in->keyword, "volume") && args.n == 0)
      r = vs_error_set(err, 0, "VOLUME requires at least one argument");
    else if (r == 0 && strcmp(in->keyword, "volume") != 0 && args.n < 2)
      r = vs_error_set(err, 0, "%.*s requires at least two arguments, but only %zu provided", kwlen,
                       upper, args.n);
    break;
  case SHAPE_WORDS:
    split_words_raw(rest, escape, &args);
    if (!strcmp(in->keyword, "from") &&
        !(args.n == 1 || (args.n == 3 && !strcasecmp(args.v[1], "as"))))
      r = vs_error_set(err, 0, "FROM requires either one or three arguments");
    else if (args.n == 0)
      r = vs_error_set(err, 0, "%.*s requires at least one argument", kwlen, upper);
    break;
  case SHAPE_STRING:
    if (!*rest)
      r = vs_error_set(err, 0, "%.*s requires exactly one argument", kwlen, upper);
    else
      strv_push(&args, vs_strdup(rest));
    break;
  case SHAPE_PAIRS:
    if (!*rest)
      return vs_error_set(err, 0, "%.*s requires at least one argument", kwlen, upper);
    return parse_pairs(in, rest, escape, err);
  case SHAPE_ARG:
    return parse_arg(in, rest, escape, err);
  case SHAPE_HEALTH: {
    size_t n = strcspn(rest, " \t");
    if (n == 4 && !strncasecmp(rest, "none", 4) && !rest[n]) {
      strv_push(&args, vs_strdup("NONE"));
      break;
    }
    if (n != 3 || strncasecmp(rest, "cmd", 3) != 0) {
      r = vs_error_set(err, 0, "HEALTHCHECK expects NONE or CMD followed by a command");
      break;
    }
    strv_push(&args, vs_strdup("CMD"));
    const char *cmd = rest + n + strspn(rest + n, " \t");
    r = parse_cmd_shape(in, cmd, &args, err);
    if (r == 0 && args.n < 2)
      r = vs_error_set(err, 0, "HEALTHCHECK CMD requires a command");
    break;
  }
  case SHAPE_ONBUILD:
    if (nested)
      return vs_error_set(err, 0, "ONBUILD ONBUILD is not allowed");
    if (!*rest)
      return vs_error_set(err, 0, "ONBUILD requires at least one argument");
    in->sub = vs_malloc0(sizeof(*in->sub));
    if (parse_instr(rest, escape, true, in->sub, err) < 0)
      return -1;
    if (!strcmp(in->sub->keyword, "from") || !strcmp(in->sub->keyword, "maintainer"))
      return vs_error_set(err, 0, "%s isn't allowed as an ONBUILD trigger",
                          !strcmp(in->sub->keyword, "from") ? "FROM" : "MAINTAINER");
    return 0;
  }
  in->args = args.v;
  in->nargs = args.n;
  return r;
}

/* One logical line (continuations joined) into in. */
static int parse_instr(const char *line, char escape, bool nested, vs_df_instr *in,
                       vs_error **err) {
  while (is_ws(*line))
    line++;
  size_t end = strlen(line);
  while (end && is_ws(line[end - 1]))
    end--;
  in->original = vs_img_strndup(line, end);
  size_t kl = strcspn(in->original, " \t\r\n\v\f");
  in->keyword = vs_img_strndup(in->original, kl);
  for (char *c = in->keyword; *c; c++)
    *c = (char)tolower((unsigned char)*c);
  const struct keyword *kw = keyword_find(in->keyword);
  if (!kw)
    return vs_error_set(err, 0, "unknown instruction: %.*s", (int)(kl > 64 ? 64 : kl),
                        in->original);
  strv flags = {0};
  const char *rest = split_flags(in->original + kl, &flags);
  in->flags = flags.v;
  in->nflags = flags.n;
  while (is_ws(*rest))
    rest++;
  return parse_args(in, kw, rest, escape, nested, err);
}

/* ------------------------------------------------------------ lines */

typedef struct reader {
  const char *p, *end;
  int lineno;
} reader;

/* The next physical line without its newline (and a \r before it); false at the end. */
static bool next_line(reader *r, const char **line, size_t *len) {
  if (r->p >= r->end)
    return false;
  const char *nl = memchr(r->p, '\n', (size_t)(r->end - r->p));
  const char *e = nl ? nl : r->end;
  *line = r->p;
  *len = (size_t)(e - r->p);
  if (*len && (*line)[*len - 1] == '\r')
    (*len)--;
  r->p = nl ? nl + 1 : r->end;
  r->lineno++;
  return true;
}

static size_t skip_ws(const char *s, size_t len) {
  size_t i = 0;
  while (i < len && is_ws(s[i]))
    i++;
  return i;
}

static bool is_comment(const char *s, size_t len) {
  size_t i = skip_ws(s, len);
  return i < len && s[i] == '#';
}

/* A parser directive "# key=value"; false when the line is not one. */
static bool directive(const char *s, size_t len, char **key, char **value) {
  size_t i = skip_ws(s, len);
  if (i >= len || s[i] != '#')
    return false;
  i++;
  while (i < len && is_ws(s[i]))
    i++;
  size_t ks = i;
  if (i >= len || !isalpha((unsigned char)s[i]))
    return false;
  while (i < len && isalnum((unsigned char)s[i]))
    i++;
  size_t ke = i;
  while (i < len && is_ws(s[i]))
    i++;
  if (i >= len || s[i] != '=')
    return false;
  i++;
  while (i < len && is_ws(s[i]))
    i++;
  size_t ve = len;
  while (ve > i && is_ws(s[ve - 1]))
    ve--;
  if (ve == i)
    return false;
  *key = vs_img_strndup(s + ks, ke - ks);
  for (char *c = *key; *c; c++)
    *c = (char)tolower((unsigned char)*c);
  *value = vs_img_strndup(s + i, ve - i);
  return true;
}

/* Directives at the top; returns -1 on a bad or repeated one. Leaves r after them. */
static int read_directives(reader *r, vs_dockerfile *df, vs_error **err) {
  bool seen_escape = false;
  for (;;) {
    reader save = *r;
    const char *line;
    size_t len;
    if (!next_line(r, &line, &len))
      return 0;
    _cleanup_free_ char *key = NULL, *value = NULL;
    if (!directive(line, len, &key, &value) ||
        (strcmp(key, "escape") != 0 && strcmp(key, "syntax") != 0)) {
      *r = save;
      return 0;
    }
    if (!strcmp(key, "escape")) {
      if (seen_escape)
        return vs_error_set(
            err, 0, "Dockerfile parse error line %d: only one escape parser directive can be used",
            r->lineno);
      seen_escape = true;
      if (strcmp(value, "\\") != 0 && strcmp(value, "`") != 0)
        return vs_error_set(
            err, 0,
            "Dockerfile parse error line %d: invalid escape token '%.20s' does not match ` or \\",
            r->lineno, value);
      df->escape = value[0];
    } else {
      if (df->syntax)
        return vs_error_set(
            err, 0, "Dockerfile parse error line %d: only one syntax parser directive can be used",
            r->lineno);
      df->syntax = steal_pointer(&value);
    }
  }
}

/* Remove a trailing escape (and whitespace after it); true when the line continues. */
static bool trim_continuation(const char *s, size_t *len, char escape) {
  size_t e = *len;
  while (e && (s[e - 1] == ' ' || s[e - 1] == '\t'))
    e--;
  if (e && s[e - 1] == escape) {
    *len = e - 1;
    return true;
  }
  return false;
}

static int push_instr(vs_dockerfile *df, const char *text, int lineno, vs_error **err) {
  df->instrs = vs_realloc(df->instrs, (df->n + 1) * sizeof(*df->instrs));
  vs_df_instr *in = &df->instrs[df->n];
  memset(in, 0, sizeof(*in));
  df->n++;
  in->line = lineno;
  if (parse_instr(text, df->escape, false, in, err) < 0)
    return vs_error_wrap(err, "Dockerfile parse error line %d", lineno);
  return 0;
}

static bool blank(const char *s, size_t len) { return skip_ws(s, len) == len; }

/* Instructions from the lines after the directives: comments and blank lines dropped (inside a
 * continued instruction too), continued lines joined as Docker does (the escape removed, the
 * next line appended as it is). */
static int parse_lines(reader *r, vs_dockerfile *df, vs_error **err) {
  sbuf logical = {0};
  int start = 0, ret = 0;
  bool cont = false;
  const char *line;
  size_t ll;
  while (ret == 0 && next_line(r, &line, &ll)) {
    if (ll > VS_DF_MAX_LINE) {
      ret = vs_error_set(err, 0, "Dockerfile parse error line %d: line longer than %d bytes",
                         r->lineno, VS_DF_MAX_LINE);
      break;
    }
    if (is_comment(line, ll) || blank(line, ll))
      continue;
    if (!cont) {
      size_t ws = skip_ws(line, ll);
      line += ws;
      ll -= ws;
      start = r->lineno;
      logical.len = 0;
    }
    cont = trim_continuation(line, &ll, df->escape);
    sb_add(&logical, line, ll);
    if (!cont && !blank(logical.s, logical.len))
      ret = push_instr(df, logical.s, start, err);
  }
  if (ret == 0 && cont && !blank(logical.s, logical.len))
    ret = push_instr(df, logical.s, start, err);
  free(logical.s);
  return ret;
}

int vs_dockerfile_parse(const char *text, size_t len, vs_dockerfile *out, vs_error **err) {
  memset(out, 0, sizeof(*out));
  out->escape = '\\';
  if (len > VS_DF_MAX_SIZE)
    return vs_error_set(err, 0, "the Dockerfile is larger than %d bytes", VS_DF_MAX_SIZE);
  if (memchr(text, 0, len))
    return vs_error_set(err, 0, "the Dockerfile holds a NUL byte: not a text file");
  if (len >= 3 && !memcmp(text, "\xef\xbb\xbf", 3)) {
    text += 3;
    len -= 3;
  }
  reader r = {.p = text, .end = text + len};
  if (read_directives(&r, out, err) < 0)
    goto fail;
  if (parse_lines(&r, out, err) < 0)
    goto fail;
  return 0;
fail:
  vs_dockerfile_clear(out);
  return -1;
}
