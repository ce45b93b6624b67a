/* daemon.json (vesseld --config FILE), read as dockerd reads its own: the keys dockerd uses for
 * what vesseld does (and body-idle-timeout, vesseld's own), every other key an error naming it,
 * every value checked for its type. */
#include "daemon/daemon.h"

#include <errno.h>
#include <string.h>

#define MAX_CONFIG_FILE (1U << 20)

static const char *const known_keys[] = {"data-root",       "exec-root",
                                         "hosts",           "log-level",
                                         "log-format",      "debug",
                                         "live-restore",    "tls",
                                         "tlsverify",       "tlscacert",
                                         "tlscert",         "tlskey",
                                         "default-ulimits", "body-idle-timeout"};

/* The resources dockerd's ulimit names stand for (setrlimit's, as the OCI spec spells them). */
static const char *const ulimit_names[][2] = {
    {"core", "RLIMIT_CORE"},         {"cpu", "RLIMIT_CPU"},
    {"data", "RLIMIT_DATA"},         {"fsize", "RLIMIT_FSIZE"},
    {"locks", "RLIMIT_LOCKS"},       {"memlock", "RLIMIT_MEMLOCK"},
    {"msgqueue", "RLIMIT_MSGQUEUE"}, {"nice", "RLIMIT_NICE"},
    {"nofile", "RLIMIT_NOFILE"},     {"nproc", "RLIMIT_NPROC"},
    {"rss", "RLIMIT_RSS"},           {"rtprio", "RLIMIT_RTPRIO"},
    {"rttime", "RLIMIT_RTTIME"},     {"sigpending", "RLIMIT_SIGPENDING"},
    {"stack", "RLIMIT_STACK"},       {"as", "RLIMIT_AS"}};

static const char *ulimit_resource(const char *name) {
  for (size_t i = 0; i < ARRAY_SIZE(ulimit_names); i++)
    if (!strcmp(name, ulimit_names[i][0]))
      return ulimit_names[i][1];
  return NULL;
}

/* default-ulimits: {"nofile": {"Name": "nofile", "Soft": N, "Hard": M}, ...} into the OCI
 * rlimits array ([{"type", "soft", "hard"}]). */
static json_t *parse_ulimits(json_t *obj, vs_error **err) {
  json_t *out = json_array();
  const char *name;
  json_t *u;
  json_object_foreach(obj, name, u) {
    const char *res = ulimit_resource(name);
    const char *inner = NULL;
    int64_t soft = 0, hard = 0;
    if (!res) {
      vs_error_set(err, EINVAL, "default-ulimits: invalid ulimit type: %s", name);
      goto fail;
    }
    if (!json_is_object(u) || vs_json_get_string(u, "Name", false, &inner, err) < 0 ||
        vs_json_get_int(u, "Soft", true, &soft, err) < 0 ||
        vs_json_get_int(u, "Hard", true, &hard, err) < 0) {
      vs_error_wrap(err, "default-ulimits: %s: expected {\"Name\", \"Soft\", \"Hard\"}", name);
      goto fail;
    }
    if (inner && strcmp(inner, name) != 0) {
      vs_error_set(err, EINVAL, "default-ulimits: %s: Name is \"%s\"", name, inner);
      goto fail;
    }
    if (soft < -1 || hard < -1 || (hard != -1 && (soft == -1 || soft > hard))) {
      vs_error_set(err, EINVAL, "default-ulimits: %s: soft limit %lld is above hard limit %lld",
                   name, (long long)soft, (long long)hard);
      goto fail;
    }
    /* -1 is "unlimited", which the OCI spec writes as the largest value */
    json_array_append_new(out, json_pack("{s:s, s:I, s:I}", "type", res, "soft",
                                         (json_int_t)(soft < 0 ? INT64_MAX : soft), "hard",
                                         (json_int_t)(hard < 0 ? INT64_MAX : hard)));
  }
  return out;
fail:
  json_decref(out);
  return NULL;
}

/* Every key of the document that vesseld does not know, as "a, b". */
static char *unknown_keys(json_t *root) {
  char *list = NULL;
  const char *key;
  json_t *v;
  json_object_foreach(root, key, v) {
    bool known = false;
    for (size_t i = 0; i < ARRAY_SIZE(known_keys); i++)
      known = known || !strcmp(key, known_keys[i]);
    if (known)
      continue;
    char *next = list ? vs_asprintf("%s, %s", list, key) : vs_strdup(key);
    free(list);
    list = next;
  }
  return list;
}

int vd_config_read(const char *path, vd_config *c, vs_error **err) {
  memset(c, 0, sizeof(*c));
  c->debug = c->live_restore = c->tls = c->tls_verify = -1;
  c->body_idle_timeout = -1;
  c->root = vs_json_load_file(path, MAX_CONFIG_FILE, err);
  if (!c->root)
    return vs_error_wrap(err, "configuration file %s", path);
  if (!json_is_object(c->root)) {
    vs_error_set(err, EINVAL, "configuration file %s: expected a JSON object, found %s", path,
                 vs_json_type_name(c->root));
    goto fail;
  }
  char *unknown = unknown_keys(c->root);
  if (unknown) {
    vs_error_set(err, EINVAL,
                 "configuration file %s: the following directives don't match any "
                 "configuration option: %s",
                 path, unknown);
    free(unknown);
    goto fail;
  }
  bool b;
  json_t *ulimits = NULL;
  if (vs_json_get_string(c->root, "data-root", false, &c->data_root, err) < 0 ||
      vs_json_get_string(c->root, "exec-root", false, &c->exec_root, err) < 0 ||
      vs_json_get_string_array(c->root, "hosts", false, &c->hosts, &c->n_hosts, err) < 0 ||
      vs_json_get_string(c->root, "log-level", false, &c->log_level, err) < 0 ||
      vs_json_get_string(c->root, "log-format", false, &c->log_format, err) < 0 ||
      vs_json_get_string(c->root, "tlscacert", false, &c->tls_ca, err) < 0 ||
      vs_json_get_string(c->root, "tlscert", false, &c->tls_cert, err) < 0 ||
      vs_json_get_string(c->root, "tlskey", false, &c->tls_key, err) < 0 ||
      vs_json_get_object(c->root, "default-ulimits", false, &ulimits, err) < 0)
    goto wrap;
  int r = vs_json_get_bool(c->root, "debug", false, &b, err);
  if (r < 0)
    goto wrap;
  if (r > 0)
    c->debug = b;
  if ((r = vs_json_get_bool(c->root, "tls", false, &b, err)) < 0)
    goto wrap;
  if (r > 0)
    c->tls = b;
  if ((r = vs_json_get_bool(c->root, "tlsverify", false, &b, err)) < 0)
    goto wrap;
  if (r > 0)
    c->tls_verify = b;
  r = vs_json_get_bool(c->root, "live-restore", false, &b, err);
  if (r < 0)
    goto wrap;
  if (r > 0)
    c->live_restore = b;
  if (c->live_restore == 0) {
    vs_error_set(err, EINVAL,
                 "configuration file %s: live-restore false is not supported: containers are "
                 "held by their monitors and always outlive vesseld",
                 path);
    goto fail;
  }
  if (ulimits && !(c->default_ulimits = parse_ulimits(ulimits, err)))
    goto wrap;
  int64_t idle;
  if ((r = vs_json_get_int(c->root, "body-idle-timeout", false, &idle, err)) < 0)
    goto wrap;
  if (r > 0 && (idle < 1 || idle > VD_MAX_BODY_IDLE_TIMEOUT)) {
    vs_error_set(err, EINVAL,
                 "configuration file %s: body-idle-timeout %lld: expected 1 to %d seconds", path,
                 (long long)idle, VD_MAX_BODY_IDLE_TIMEOUT);
    goto fail;
  }
  if (r > 0)
    c->body_idle_timeout = idle;
  return 0;
wrap:
  vs_error_wrap(err, "configuration file %s", path);
fail:
  vd_config_clear(c);
  return -1;
}

void vd_config_clear(vd_config *c) {
  free(c->hosts);
  json_decref(c->default_ulimits);
  json_decref(c->root);
  memset(c, 0, sizeof(*c));
}
