/* The builder's instructions that change only the image configuration, as Docker's classic
 * builder dispatches them: arguments expanded with the ENV of the image so far (which wins) and
 * the ARGs the stage declared (with their --build-arg values), then written into the image
 * config document's "config" object. */
#include "image/image.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

typedef struct scope {
  json_t *config; /* the "config" object */
  vs_build_stage *st;
} scope;

/* ENV first, then declared ARGs: Docker's precedence. */
static const char *lookup(const char *name, void *ctx) {
  const scope *sc = ctx;
  size_t nl = strlen(name), i;
  json_t *v;
  json_array_foreach(json_object_get(sc->config, "Env"), i, v) {
    const char *e = json_string_value(v);
    if (e && !strncmp(e, name, nl) && e[nl] == '=')
      return e + nl + 1;
  }
  return json_string_value(json_object_get(sc->st->args, name));
}

static json_t *config_obj(json_t *image) {
  json_t *c = json_object_get(image, "config");
  if (!json_is_object(c)) {
    c = json_object();
    json_object_set_new(image, "config", c);
  }
  return c;
}

/* The object config[key], created empty when missing. */
static json_t *sub_obj(json_t *config, const char *key) {
  json_t *o = json_object_get(config, key);
  if (!json_is_object(o)) {
    o = json_object();
    json_object_set_new(config, key, o);
  }
  return o;
}

static int expand(scope *sc, const char *word, char **out, vs_error **err) {
  return vs_df_expand_word(word, sc->st->escape, lookup, sc, out, err);
}

static void env_set(json_t *config, const char *key, const char *value) {
  json_t *env = json_object_get(config, "Env");
  if (!json_is_array(env)) {
    env = json_array();
    json_object_set_new(config, "Env", env);
  }
  size_t kl = strlen(key), i;
  json_t *v;
  json_t *entry = json_sprintf("%s=%s", key, value);
  json_array_foreach(env, i, v) {
    const char *e = json_string_value(v);
    if (e && !strncmp(e, key, kl) && e[kl] == '=') {
      json_array_set_new(env, i, entry);
      return;
    }
  }
  json_array_append_new(env, entry);
}

static int apply_pairs(scope *sc, const vs_df_instr *in, bool env, vs_error **err) {
  for (size_t i = 0; i + 1 < in->nargs; i += 2) {
    _cleanup_free_ char *key = NULL, *value = NULL;
    if (expand(sc, in->args[i], &key, err) < 0 || expand(sc, in->args[i + 1], &value, err) < 0)
      return -1;
    if (!*key)
      return vs_error_set(err, 0, "%s names can not be blank", env ? "ENV" : "LABEL");
    if (env)
      env_set(sc->config, key, value);
    else
      json_object_set_new(sub_obj(sc->config, "Labels"), key, json_string(value));
  }
  return 0;
}

static int apply_arg(scope *sc, const vs_df_instr *in, vs_error **err) {
  for (size_t i = 0; i + 1 < in->nargs; i += 2) {
    const char *name = in->args[i];
    json_t *given = sc->st->build_args ? json_object_get(sc->st->build_args, name) : NULL;
    if (json_is_string(given)) {
      json_object_set(sc->st->args, name, given);
      continue;
    }
    if (!in->args[i + 1]) {
      json_t *global = sc->st->meta_args ? json_object_get(sc->st->meta_args, name) : NULL;
      if (json_is_string(global))
        json_object_set(sc->st->args, name, global);
      else if (!json_object_get(sc->st->args, name))
        json_object_set_new(sc->st->args, name, json_null());
      continue;
    }
    _cleanup_free_ char *value = NULL;
    if (expand(sc, in->args[i + 1], &value, err) < 0)
      return -1;
    json_object_set_new(sc->st->args, name, json_string(value));
  }
  return 0;
}

static int apply_workdir(scope *sc, const vs_df_instr *in, vs_error **err) {
  _cleanup_free_ char *dir = NULL;
  if (expand(sc, in->args[0], &dir, err) < 0)
    return -1;
  const char *cur = json_string_value(json_object_get(sc->config, "WorkingDir"));
  _cleanup_free_ char *joined =
      dir[0] == '/' ? vs_strdup(dir) : vs_asprintf("%s/%s", cur && *cur ? cur : "", dir);
  _cleanup_free_ char *clean = vs_img_path_clean(joined, strlen(joined));
  json_object_set_new(sc->config, "WorkingDir",
                      strcmp(clean, ".") ? json_sprintf("/%s", clean) : json_string("/"));
  return 0;
}

/* CMD, ENTRYPOINT and HEALTHCHECK CMD: the JSON form as given, the shell form through SHELL. */
static json_t *command_of(scope *sc, const vs_df_instr *in, size_t from) {
  json_t *a = json_array();
  if (!in->json) {
    json_t *shell = json_object_get(sc->config, "Shell");
    if (json_is_array(shell) && json_array_size(shell))
      json_array_extend(a, shell);
    else {
      json_array_append_new(a, json_string("/bin/sh"));
      json_array_append_new(a, json_string("-c"));
    }
  }
  for (size_t i = from; i < in->nargs; i++)
    json_array_append_new(a, json_string(in->args[i]));
  return a;
}

static int parse_port(const char *s, const char *spec, unsigned *out, vs_error **err) {
  char *end;
  errno = 0;
  unsigned long v = strtoul(s, &end, 10);
  if (!isdigit((unsigned char)*s) || errno || v == 0 || v > 65535 ||
      (*end && *end != '-' && *end != '/'))
    return vs_error_set(err, 0, "invalid containerPort: %s", spec);
  *out = (unsigned)v;
  return 0;
}

/* "80", "80/udp", "8000-8002/tcp" into ExposedPorts. */
static int expose_one(json_t *ports, const char *spec, vs_error **err) {
  const char *slash = strchr(spec, '/');
  const char *proto = slash ? slash + 1 : "tcp";
  if (strcasecmp(proto, "tcp") != 0 && strcasecmp(proto, "udp") != 0 &&
      strcasecmp(proto, "sctp") != 0)
    return vs_error_set(err, 0, "invalid proto: %s", proto);
  unsigned lo, hi;
  if (parse_port(spec, spec, &lo, err) < 0)
    return -1;
  hi = lo;
  const char *dash = strchr(spec, '-');
  if (dash && (!slash || dash < slash) && parse_port(dash + 1, spec, &hi, err) < 0)
    return -1;
  if (hi < lo || hi - lo > 65535)
    return vs_error_set(err, 0, "invalid port range: %s", spec);
  _cleanup_free_ char *lower = vs_strdup(proto);
  for (char *c = lower; *c; c++)
    *c = (char)tolower((unsigned char)*c);
  for (unsigned p = lo; p <= hi; p++) {
    char key[32];
    snprintf(key, sizeof(key), "%u/%s", p, lower);
    json_object_set_new(ports, key, json_object());
  }
  return 0;
}

static int apply_words(scope *sc, const vs_df_instr *in, bool volume, vs_error **err) {
  for (size_t i = 0; i < in->nargs; i++) {
    char **words;
    size_t n;
    if (vs_df_expand_words(in->args[i], sc->st->escape, lookup, sc, &words, &n, err) < 0)
      return -1;
    int r = 0;
    for (size_t j = 0; j < n; j++) {
      if (r == 0 && volume && !*words[j])
        r = vs_error_set(err, 0, "VOLUME specified can not be an empty string");
      else if (r == 0 && volume)
        json_object_set_new(sub_obj(sc->config, "Volumes"), words[j], json_object());
      else if (r == 0)
        r = expose_one(sub_obj(sc->config, "ExposedPorts"), words[j], err);
      free(words[j]);
    }
    free(words);
    if (r < 0)
      return -1;
  }
  return 0;
}

static int apply_stopsignal(scope *sc, const vs_df_instr *in, vs_error **err) {
  _cleanup_free_ char *sig = NULL;
  if (expand(sc, in->args[0], &sig, err) < 0)
    return -1;
  bool ok = *sig != 0;
  for (const char *c = sig; *c && ok; c++)
    ok = isalnum((unsigned char)*c) || *c == '+' || *c == '-';
  if (!ok)
    return vs_error_set(err, 0, "invalid signal: %s", sig);
  json_object_set_new(sc->config, "StopSignal", json_string(sig));
  return 0;
}

int vs_build_parse_duration(const char *s, int64_t *ns, vs_error **err) {
  static const struct {
    const char *unit;
    int64_t ns;
  } units[] = {{"ns", 1},         {"us", 1000},         {"ms", 1000000},
               {"s", 1000000000}, {"m", 60000000000LL}, {"h", 3600000000000LL}};
  const char *p = s;
  double total = 0;
  if (!strcmp(s, "0")) {
    *ns = 0;
    return 0;
  }
  if (!*p)
    return vs_error_set(err, 0, "invalid duration \"%s\"", s);
  while (*p) {
    char *end;
    if (!isdigit((unsigned char)*p) && *p != '.')
      return vs_error_set(err, 0, "invalid duration \"%s\"", s);
    double v = strtod(p, &end);
    if (end == p)
      return vs_error_set(err, 0, "invalid duration \"%s\"", s);
    p = end;
    size_t best = ARRAY_SIZE(units);
    for (size_t i = 0; i < ARRAY_SIZE(units); i++)
      if (!strncmp(p, units[i].unit, strlen(units[i].unit)) &&
          (best == ARRAY_SIZE(units) || strlen(units[i].unit) > strlen(units[best].unit)))
        best = i;
    if (best == ARRAY_SIZE(units))
      return vs_error_set(err, 0, "missing unit in duration \"%s\"", s);
    p += strlen(units[best].unit);
    total += v * (double)units[best].ns;
    if (total > 9.2e18)
      return vs_error_set(err, 0, "invalid duration \"%s\": too long", s);
  }
  *ns = (int64_t)total;
  return 0;
}

static int apply_healthcheck(scope *sc, const vs_df_instr *in, vs_error **err) {
  static const char *const flags[] = {"interval",       "timeout", "start-period",
                                      "start-interval", "retries", NULL};
  if (vs_df_flags_check(in, flags, err) < 0)
    return -1;
  if (!strcmp(in->args[0], "NONE")) {
    if (in->nflags)
      return vs_error_set(err, 0, "HEALTHCHECK NONE takes no flags");
    json_object_set_new(sc->config, "Healthcheck", json_pack("{s:[s]}", "Test", "NONE"));
    return 0;
  }
  json_t *test = json_array();
  json_array_append_new(test, json_string(in->json ? "CMD" : "CMD-SHELL"));
  for (size_t i = 1; i < in->nargs; i++)
    json_array_append_new(test, json_string(in->args[i]));
  json_t *hc = json_pack("{s:o}", "Test", test);
  static const struct {
    const char *flag, *key;
  } durations[] = {{"interval", "Interval"},
                   {"timeout", "Timeout"},
                   {"start-period", "StartPeriod"},
                   {"start-interval", "StartInterval"}};
  for (size_t i = 0; i < ARRAY_SIZE(durations); i++) {
    const char *v = vs_df_flag(in, durations[i].flag);
    int64_t ns;
    if (!v)
      continue;
    if (vs_build_parse_duration(v, &ns, err) < 0) {
      json_decref(hc);
      return vs_error_wrap(err, "HEALTHCHECK --%s", durations[i].flag);
    }
    if (ns != 0 && ns < 1000000) {
      json_decref(hc);
      return vs_error_set(err, 0, "HEALTHCHECK --%s cannot be less than 1ms", durations[i].flag);
    }
    json_object_set_new(hc, durations[i].key, json_integer(ns));
  }
  const char *retries = vs_df_flag(in, "retries");
  if (retries) {
    uint64_t n = 0;
    if (vs_parse_u64(retries, "HEALTHCHECK --retries", &n, err) < 0 || n > 1000000) {
      json_decref(hc);
      return n > 1000000 ? vs_error_set(err, 0, "HEALTHCHECK --retries is too large") : -1;
    }
    json_object_set_new(hc, "Retries", json_integer((json_int_t)n));
  }
  json_object_set_new(sc->config, "Healthcheck", hc);
  return 0;
}

static void apply_onbuild(scope *sc, const vs_df_instr *in) {
  const char *orig = in->sub->original;
  size_t kl = strlen(in->sub->keyword);
  _cleanup_free_ char *trigger = vs_strdup(orig);
  for (size_t i = 0; i < kl; i++)
    trigger[i] = (char)toupper((unsigned char)trigger[i]);
  json_t *ob = json_object_get(sc->config, "OnBuild");
  if (!json_is_array(ob)) {
    ob = json_array();
    json_object_set_new(sc->config, "OnBuild", ob);
  }
  json_array_append_new(ob, json_string(trigger));
}

int vs_build_apply_config(json_t *image, vs_build_stage *st, const vs_df_instr *in,
                          vs_error **err) {
  const char *k = in->keyword;
  if (!strcmp(k, "from") || !strcmp(k, "run") || !strcmp(k, "copy") || !strcmp(k, "add"))
    return 1;
  if (!st->args)
    st->args = json_object();
  scope sc = {.config = config_obj(image), .st = st};
  if (strcmp(k, "healthcheck") != 0 && vs_df_flags_check(in, NULL, err) < 0)
    return -1;
  if (!strcmp(k, "env") || !strcmp(k, "label"))
    return apply_pairs(&sc, in, k[0] == 'e', err);
  if (!strcmp(k, "arg"))
    return apply_arg(&sc, in, err);
  if (!strcmp(k, "workdir"))
    return apply_workdir(&sc, in, err);
  if (!strcmp(k, "user")) {
    _cleanup_free_ char *user = NULL;
    if (expand(&sc, in->args[0], &user, err) < 0)
      return -1;
    json_object_set_new(sc.config, "User", json_string(user));
    return 0;
  }
  if (!strcmp(k, "cmd")) {
    json_object_set_new(sc.config, "Cmd", command_of(&sc, in, 0));
    st->cmd_set = true;
    return 0;
  }
  if (!strcmp(k, "entrypoint")) {
    json_object_set_new(sc.config, "Entrypoint", command_of(&sc, in, 0));
    if (!st->cmd_set)
      json_object_set_new(sc.config, "Cmd", json_null());
    return 0;
  }
  if (!strcmp(k, "shell")) {
    json_object_set_new(sc.config, "Shell", command_of(&sc, in, 0));
    return 0;
  }
  if (!strcmp(k, "expose") || !strcmp(k, "volume"))
    return apply_words(&sc, in, k[0] == 'v', err);
  if (!strcmp(k, "stopsignal"))
    return apply_stopsignal(&sc, in, err);
  if (!strcmp(k, "healthcheck"))
    return apply_healthcheck(&sc, in, err);
  if (!strcmp(k, "onbuild")) {
    apply_onbuild(&sc, in);
    return 0;
  }
  if (!strcmp(k, "maintainer")) {
    json_object_set_new(image, "author", json_string(in->args[0]));
    return 0;
  }
  return vs_error_set(err, 0, "unknown instruction: %s", k);
}

int vs_build_expand_words(json_t *image, vs_build_stage *st, const char *word, char ***out,
                          size_t *n, vs_error **err) {
  scope sc = {.config = json_object_get(image, "config"), .st = st};
  return vs_df_expand_words(word, st->escape, lookup, &sc, out, n, err);
}
