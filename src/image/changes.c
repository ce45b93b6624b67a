/* Dockerfile instructions applied to an image config: `docker commit --change`, `docker import
 * --change` and vessel's own commit and import. The text comes from clients, so every word is
 * checked and a bad one is an error naming it. The instructions dockerd accepts there are the
 * ones that change only the config; the rest (RUN, COPY, FROM, ...) are refused as dockerd
 * refuses them. Variables ($VAR, ${VAR:-x}...) in the arguments of ENV, LABEL, EXPOSE, VOLUME,
 * WORKDIR, USER and STOPSIGNAL are replaced with the config's Env as it is when the instruction
 * comes (earlier changes included), as dockerd's commit does (it runs them through its Dockerfile
 * dispatcher); CMD, ENTRYPOINT, HEALTHCHECK and ONBUILD keep theirs for the shell or the build. */
#include "image/image.h"

#include <ctype.h>
#include <errno.h>
#include <string.h>

#define MAX_CHANGE_LEN (64U << 10)

static const char *skip_space(const char *p) {
  while (*p == ' ' || *p == '\t')
    p++;
  return p;
}

/* The arguments of CMD, ENTRYPOINT or VOLUME: a JSON array of strings ("exec form"), or the
 * text as it is (NULL in *arr; the caller decides what the shell form means). */
static int exec_form(const char *args, json_t **arr, vs_error **err) {
  *arr = NULL;
  if (args[0] != '[')
    return 0;
  json_t *j = json_loads(args, JSON_REJECT_DUPLICATES, NULL);
  if (!json_is_array(j))
    goto shell; /* as dockerd: text that is not a JSON array is the shell form */
  size_t i;
  json_t *v;
  json_array_foreach(j, i, v) {
    if (!json_is_string(v))
      goto shell;
  }
  *arr = j;
  return 0;
shell:
  json_decref(j);
  (void)err;
  return 0;
}

static json_t *shell_form(const char *args) { return json_pack("[s,s,s]", "/bin/sh", "-c", args); }

/* One word of KEY=VALUE lists (ENV, LABEL): quotes and backslashes as a Dockerfile has them. */
static const char *next_word(const char *p, char **out, vs_error **err) {
  size_t cap = strlen(p) + 1, n = 0;
  char *w = vs_malloc0(cap);
  char quote = 0;
  for (; *p; p++) {
    if (!quote && (*p == ' ' || *p == '\t'))
      break;
    if (*p == '\\' && p[1] && quote != '\'') {
      w[n++] = *++p;
    } else if (!quote && (*p == '"' || *p == '\'')) {
      quote = *p;
    } else if (quote && *p == quote) {
      quote = 0;
    } else {
      w[n++] = *p;
    }
  }
  if (quote) {
    free(w);
    vs_error_set(err, EINVAL, "unterminated %c quote", quote);
    return NULL;
  }
  w[n] = 0;
  *out = w;
  return skip_space(p);
}

/* A variable of the config's Env for the expansion, NULL when it has none. */
static const char *env_lookup(const char *name, void *ctx) {
  size_t n = strlen(name), i;
  json_t *e;
  json_array_foreach(json_object_get((json_t *)ctx, "Env"), i, e) {
    const char *s = json_string_value(e);
    if (s && !strncmp(s, name, n) && s[n] == '=')
      return s + n + 1;
  }
  return NULL;
}

/* One word as written (quotes and escapes kept), up to unquoted whitespace. */
static const char *raw_word(const char *p, char **out, vs_error **err) {
  const char *start = p;
  char quote = 0;
  for (; *p; p++) {
    if (!quote && (*p == ' ' || *p == '\t'))
      break;
    if (*p == '\\' && p[1] && quote != '\'')
      p++;
    else if (!quote && (*p == '"' || *p == '\''))
      quote = *p;
    else if (quote && *p == quote)
      quote = 0;
  }
  if (quote)
    return vs_error_set(err, EINVAL, "unterminated %c quote", quote), NULL;
  *out = vs_img_strndup(start, (size_t)(p - start));
  return skip_space(p);
}

/* Quotes removed and variables replaced, as Docker's shell lexer does with a word. */
static int expand(json_t *config, const char *word, char **out, vs_error **err) {
  return vs_df_expand_word(word, '\\', env_lookup, config, out, err);
}

/* KEY=VALUE pairs (or the old "KEY VALUE" form) into set(key, value), every word expanded with
 * the Env from before the instruction (ENV A=1 B=$A gives B the old A, as in a Dockerfile). */
static int key_values(json_t *config, const char *args, const char *what,
                      void (*set)(json_t *obj, const char *k, const char *v), vs_error **err) {
  if (!*args)
    return vs_error_set(err, EINVAL, "%s needs at least one argument", what);
  const char *first_eq = strchr(args, '=');
  const char *first_sp = strpbrk(args, " \t");
  if (!first_eq || (first_sp && first_sp < first_eq)) {
    /* "ENV KEY value with spaces" */
    if (!first_sp)
      return vs_error_set(err, EINVAL, "%s %s: a value is missing (KEY=VALUE or KEY VALUE)", what,
                          args);
    _cleanup_free_ char *raw = vs_img_strndup(args, (size_t)(first_sp - args));
    _cleanup_free_ char *k = NULL, *v = NULL;
    if (expand(config, raw, &k, err) < 0 || expand(config, skip_space(first_sp), &v, err) < 0)
      return vs_error_wrap(err, "%s", what);
    set(config, k, v);
    return 0;
  }
  _cleanup_json_ json_t *pairs = json_array();
  for (const char *p = args; *p;) {
    _cleanup_free_ char *raw = NULL, *w = NULL;
    p = raw_word(p, &raw, err);
    if (!p || expand(config, raw, &w, err) < 0)
      return vs_error_wrap(err, "%s", what);
    char *eq = strchr(w, '=');
    if (!eq || eq == w)
      return vs_error_set(err, EINVAL, "%s: \"%s\" is not KEY=VALUE", what, w);
    json_array_append_new(pairs, json_string(w));
  }
  size_t i;
  json_t *kv;
  json_array_foreach(pairs, i, kv) {
    _cleanup_free_ char *k = vs_strdup(json_string_value(kv));
    char *eq = strchr(k, '=');
    *eq = 0;
    set(config, k, eq + 1);
  }
  return 0;
}

static void set_env(json_t *config, const char *k, const char *v) {
  json_t *env = json_object_get(config, "Env");
  if (!json_is_array(env)) {
    env = json_array();
    json_object_set_new(config, "Env", env);
  }
  _cleanup_free_ char *kv = vs_asprintf("%s=%s", k, v);
  size_t klen = strlen(k), i;
  json_t *e;
  json_array_foreach(env, i, e) {
    const char *s = json_string_value(e);
    if (s && !strncmp(s, k, klen) && s[klen] == '=') {
      json_array_set_new(env, i, json_string(kv));
      return;
    }
  }
  json_array_append_new(env, json_string(kv));
}

static void set_label(json_t *config, const char *k, const char *v) {
  json_t *labels = json_object_get(config, "Labels");
  if (!json_is_object(labels)) {
    labels = json_object();
    json_object_set_new(config, "Labels", labels);
  }
  json_object_set_new(labels, k, json_string(v));
}

static json_t *object_member(json_t *config, const char *key) {
  json_t *o = json_object_get(config, key);
  if (!json_is_object(o)) {
    o = json_object();
    json_object_set_new(config, key, o);
  }
  return o;
}

/* EXPOSE 80 443/tcp 53/udp 8000-8002 */
static int expose(json_t *config, const char *args, vs_error **err) {
  if (!*args)
    return vs_error_set(err, EINVAL, "EXPOSE needs at least one port");
  json_t *ports = object_member(config, "ExposedPorts");
  for (const char *p = args; *p;) {
    _cleanup_free_ char *w = NULL;
    p = next_word(p, &w, err);
    if (!p)
      return vs_error_wrap(err, "EXPOSE");
    char *slash = strchr(w, '/');
    const char *proto = "tcp";
    if (slash) {
      *slash = 0;
      proto = slash + 1;
      for (char *c = slash + 1; *c; c++)
        *c = (char)tolower((unsigned char)*c);
      if (strcmp(proto, "tcp") != 0 && strcmp(proto, "udp") != 0 && strcmp(proto, "sctp") != 0)
        return vs_error_set(err, EINVAL, "EXPOSE: invalid proto: %s", proto);
    }
    char *dash = strchr(w, '-');
    if (dash)
      *dash = 0;
    uint64_t lo, hi;
    if (vs_parse_u64(w, "EXPOSE port", &lo, err) < 0 ||
        (dash && vs_parse_u64(dash + 1, "EXPOSE port", &hi, err) < 0))
      return -1;
    if (!dash)
      hi = lo;
    if (lo == 0 || hi > 65535 || hi < lo)
      return vs_error_set(err, EINVAL, "EXPOSE: invalid port range %s%s%s", w, dash ? "-" : "",
                          dash ? dash + 1 : "");
    for (uint64_t port = lo; port <= hi; port++) {
      char key[32];
      snprintf(key, sizeof(key), "%llu/%s", (unsigned long long)port, proto);
      json_object_set_new(ports, key, json_object());
    }
  }
  return 0;
}

/* VOLUME ["/a", "/b"] or VOLUME /a /b */
static int volume(json_t *config, const char *args, vs_error **err) {
  json_t *arr;
  if (exec_form(args, &arr, err) < 0)
    return -1;
  if (!arr) {
    arr = json_array();
    for (const char *p = args; *p;) {
      char *w = NULL;
      p = next_word(p, &w, err);
      if (!p) {
        json_decref(arr);
        return vs_error_wrap(err, "VOLUME");
      }
      json_array_append_new(arr, json_string(w));
      free(w);
    }
  }
  json_t *vols = object_member(config, "Volumes");
  size_t i;
  json_t *v;
  int r = 0;
  json_array_foreach(arr, i, v) {
    const char *path = json_string_value(v);
    if (!*path) {
      r = vs_error_set(err, EINVAL, "VOLUME specified can not be an empty string");
      break;
    }
    json_object_set_new(vols, path, json_object());
  }
  if (r == 0 && json_array_size(arr) == 0)
    r = vs_error_set(err, EINVAL, "VOLUME needs at least one path");
  json_decref(arr);
  return r;
}

/* WORKDIR: a relative directory is taken from the current one. */
static int workdir(json_t *config, const char *args, vs_error **err) {
  if (!*args)
    return vs_error_set(err, EINVAL, "WORKDIR needs a directory");
  const char *cur = json_string_value(json_object_get(config, "WorkingDir"));
  _cleanup_free_ char *dir = args[0] == '/' ? vs_strdup(args)
                             : cur && *cur  ? vs_asprintf("%s/%s", cur, args)
                                            : vs_asprintf("/%s", args);
  json_object_set_new(config, "WorkingDir", json_string(dir));
  return 0;
}

static int one_word(json_t *config, const char *key, const char *what, const char *args,
                    vs_error **err) {
  if (!*args || strpbrk(args, " \t"))
    return vs_error_set(err, EINVAL, "%s needs exactly one argument", what);
  json_object_set_new(config, key, json_string(args));
  return 0;
}

/* Go's time.ParseDuration, as Dockerfile flags use it: "30s", "1m30s", "1.5h", "500ms". */
static int parse_duration(const char *s, const char *what, int64_t *ns, vs_error **err) {
  static const struct {
    const char *unit;
    double ns;
  } units[] = {{"ns", 1},  {"us", 1e3}, {"\xc2\xb5s", 1e3}, {"ms", 1e6},
               {"s", 1e9}, {"m", 60e9}, {"h", 3600e9}};
  double total = 0;
  const char *p = s;
  if (!strcmp(s, "0")) {
    *ns = 0;
    return 0;
  }
  while (*p) {
    char *end;
    if (!isdigit((unsigned char)*p) && *p != '.')
      return vs_error_set(err, EINVAL, "%s: invalid duration \"%s\"", what, s);
    double v = strtod(p, &end);
    if (end == p)
      return vs_error_set(err, EINVAL, "%s: invalid duration \"%s\"", what, s);
    size_t best = 0, best_len = 0;
    for (size_t i = 0; i < ARRAY_SIZE(units); i++) {
      size_t n = strlen(units[i].unit);
      if (!strncmp(end, units[i].unit, n) && n > best_len) {
        best = i;
        best_len = n;
      }
    }
    if (!best_len)
      return vs_error_set(err, EINVAL, "%s: missing unit in duration \"%s\"", what, s);
    total += v * units[best].ns;
    p = end + best_len;
  }
  if (total > 9.0e18)
    return vs_error_set(err, EINVAL, "%s: duration \"%s\" is too long", what, s);
  *ns = (int64_t)total;
  return 0;
}

/* HEALTHCHECK NONE, or HEALTHCHECK [--interval=D] [--timeout=D] [--start-period=D]
 * [--retries=N] CMD command (exec or shell form). */
static int healthcheck(json_t *config, const char *args, vs_error **err) {
  size_t kw = strcspn(args, " \t");
  if (kw == 4 && !strncasecmp(args, "NONE", 4)) {
    if (*skip_space(args + 4))
      return vs_error_set(err, EINVAL, "HEALTHCHECK NONE takes no arguments");
    json_object_set_new(config, "Healthcheck", json_pack("{s:[s]}", "Test", "NONE"));
    return 0;
  }
  _cleanup_json_ json_t *hc = json_object();
  const char *p = args;
  while (!strncmp(p, "--", 2)) {
    size_t n = strcspn(p, " \t");
    _cleanup_free_ char *flag = vs_img_strndup(p + 2, n - 2);
    char *eq = strchr(flag, '=');
    if (!eq)
      return vs_error_set(err, EINVAL, "HEALTHCHECK: flag --%s needs a value", flag);
    *eq = 0;
    const char *val = eq + 1;
    static const char *const durations[][2] = {
        {"interval", "Interval"}, {"timeout", "Timeout"}, {"start-period", "StartPeriod"}};
    bool known = false;
    for (size_t i = 0; i < ARRAY_SIZE(durations); i++) {
      if (strcmp(flag, durations[i][0]) != 0)
        continue;
      int64_t ns;
      if (parse_duration(val, flag, &ns, err) < 0)
        return vs_error_wrap(err, "HEALTHCHECK");
      if (ns != 0 && ns < 1000000)
        return vs_error_set(err, EINVAL, "HEALTHCHECK: %s cannot be less than 1ms", flag);
      json_object_set_new(hc, durations[i][1], json_integer(ns));
      known = true;
    }
    if (!strcmp(flag, "retries")) {
      uint64_t r;
      if (vs_parse_u64(val, "HEALTHCHECK --retries", &r, err) < 0)
        return -1;
      if (r > INT32_MAX)
        return vs_error_set(err, EINVAL, "HEALTHCHECK: --retries %s is too large", val);
      json_object_set_new(hc, "Retries", json_integer((json_int_t)r));
      known = true;
    }
    if (!known)
      return vs_error_set(err, EINVAL, "HEALTHCHECK: unknown flag: --%s", flag);
    p = skip_space(p + n);
  }
  size_t tn = strcspn(p, " \t");
  if (tn != 3 || strncasecmp(p, "CMD", 3) != 0)
    return vs_error_set(err, EINVAL, "Unknown type \"%.*s\" in HEALTHCHECK (try CMD)", (int)tn, p);
  const char *cmd = skip_space(p + 3);
  if (!*cmd)
    return vs_error_set(err, EINVAL, "HEALTHCHECK CMD needs a command");
  json_t *arr;
  if (exec_form(cmd, &arr, err) < 0)
    return -1;
  json_t *test = arr ? arr : json_pack("[s]", cmd);
  json_array_insert_new(test, 0, json_string(arr ? "CMD" : "CMD-SHELL"));
  json_object_set_new(hc, "Test", test);
  json_object_set(config, "Healthcheck", hc);
  return 0;
}

/* One instruction (a line). *cmd_set records that a CMD came, which an ENTRYPOINT then keeps. */
static int apply_line(json_t *config, const char *line, bool *cmd_set, vs_error **err) {
  const char *p = skip_space(line);
  size_t klen = strcspn(p, " \t");
  _cleanup_free_ char *kw = vs_img_strndup(p, klen);
  for (char *c = kw; *c; c++)
    *c = (char)toupper((unsigned char)*c);
  _cleanup_free_ char *args = vs_strdup(skip_space(p + klen));
  for (size_t n = strlen(args); n > 0 && isspace((unsigned char)args[n - 1]); n--)
    args[n - 1] = 0;
  if (!strcmp(kw, "CMD") || !strcmp(kw, "ENTRYPOINT")) {
    json_t *arr;
    if (exec_form(args, &arr, err) < 0)
      return -1;
    if (!arr)
      arr = *args ? shell_form(args) : json_array();
    bool cmd = !strcmp(kw, "CMD");
    json_object_set_new(config, cmd ? "Cmd" : "Entrypoint", arr);
    if (cmd)
      *cmd_set = true;
    else if (!*cmd_set) /* as in a Dockerfile: a new entrypoint drops the inherited command */
      json_object_set_new(config, "Cmd", json_null());
    return 0;
  }
  if (!strcmp(kw, "ENV"))
    return key_values(config, args, "ENV", set_env, err);
  if (!strcmp(kw, "LABEL"))
    return key_values(config, args, "LABEL", set_label, err);
  static const char *const expanded[] = {"EXPOSE", "VOLUME", "WORKDIR", "USER", "STOPSIGNAL"};
  for (size_t i = 0; i < ARRAY_SIZE(expanded); i++) {
    if (strcmp(kw, expanded[i]) != 0 || args[0] == '[') /* VOLUME's JSON form as written */
      continue;
    char *words = NULL;
    if (expand(config, args, &words, err) < 0)
      return vs_error_wrap(err, "%s", kw);
    free(args);
    args = words;
  }
  if (!strcmp(kw, "EXPOSE"))
    return expose(config, args, err);
  if (!strcmp(kw, "VOLUME"))
    return volume(config, args, err);
  if (!strcmp(kw, "WORKDIR"))
    return workdir(config, args, err);
  if (!strcmp(kw, "USER"))
    return one_word(config, "User", "USER", args, err);
  if (!strcmp(kw, "STOPSIGNAL"))
    return one_word(config, "StopSignal", "STOPSIGNAL", args, err);
  if (!strcmp(kw, "ONBUILD")) {
    size_t n = strcspn(args, " \t");
    if (!n)
      return vs_error_set(err, EINVAL, "ONBUILD needs an instruction");
    if (!strncasecmp(args, "ONBUILD", n) || !strncasecmp(args, "FROM", n) ||
        !strncasecmp(args, "MAINTAINER", n))
      return vs_error_set(err, EINVAL, "%.*s isn't allowed as an ONBUILD trigger", (int)n, args);
    json_t *ob = json_object_get(config, "OnBuild");
    if (!json_is_array(ob)) {
      ob = json_array();
      json_object_set_new(config, "OnBuild", ob);
    }
    json_array_append_new(ob, json_string(args));
    return 0;
  }
  if (!strcmp(kw, "HEALTHCHECK"))
    return healthcheck(config, args, err);
  return vs_error_set(err, EINVAL, "%s is not a valid change command", kw);
}

int vs_config_apply_changes(json_t *config, json_t *changes, vs_error **err) {
  bool cmd_set = false;
  size_t i;
  json_t *ch;
  json_array_foreach(changes, i, ch) {
    const char *text = json_string_value(ch);
    if (!text)
      return vs_error_set(err, EINVAL, "change %zu is not a string", i + 1);
    if (strlen(text) > MAX_CHANGE_LEN)
      return vs_error_set(err, EINVAL, "change %zu is longer than %u bytes", i + 1, MAX_CHANGE_LEN);
    /* like a Dockerfile: lines, with "\" continuing one, and comments */
    _cleanup_free_ char *joined = vs_malloc0(strlen(text) + 1);
    size_t n = 0;
    for (const char *p = text;; p++) {
      if (*p == '\\' && (p[1] == '\n' || (p[1] == '\r' && p[2] == '\n'))) {
        p += p[1] == '\r' ? 2 : 1;
        continue;
      }
      if (*p && *p != '\n') {
        joined[n++] = *p;
        continue;
      }
      joined[n] = 0;
      const char *line = skip_space(joined);
      if (*line && *line != '#' && apply_line(config, line, &cmd_set, err) < 0)
        return vs_error_wrap(err, "change \"%.200s\"", line);
      n = 0;
      if (!*p)
        break;
    }
  }
  return 0;
}
