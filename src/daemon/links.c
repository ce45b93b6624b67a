/* Docker's legacy link environment (docker run --link NAME[:ALIAS]), as dockerd 20.10 sets it
 * (its daemon/links package): for each link, with ALIAS upper-cased and '-' turned into '_',
 *   ALIAS_NAME=/me/alias                     the link's full name
 *   ALIAS_PORT=tcp://IP:80                   the lowest exposed port (tcp before udp)
 *   ALIAS_PORT_80_TCP=tcp://IP:80            and _ADDR, _PORT, _PROTO, for every exposed port
 *   ALIAS_PORT_9000_TCP_START=..., _END=...  and _ADDR, _PROTO, _PORT_START, _PORT_END for a run
 *                                            of three or more consecutive ports
 *   ALIAS_ENV_X=v                            the linked container's Env (HOME and PATH left out)
 * only where dockerd sets them: both containers on the default bridge network (links over user
 * networks give /etc/hosts entries only, networks.c). The container's own Env wins over them.
 *
 * They go into the spec's process.env at every start (the linked container's address may have
 * changed); the names added are kept in the spec's annotation LINK_ENV_ANNOTATION, so that the
 * next start replaces them instead of piling new ones on top. */
#include "daemon/internal.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define LINK_ENV_ANNOTATION "org.vessel.link-env"
#define BRIDGE "bridge"

typedef struct link_port {
  unsigned num;
  char proto[8]; /* lower case, as exposed */
  char upper[8]; /* upper case, for the variables' names */
} link_port;

/* dockerd's order: by number, tcp before the others on one number. */
static int port_cmp(const void *a, const void *b) {
  const link_port *p = a, *q = b;
  if (p->num != q->num)
    return p->num < q->num ? -1 : 1;
  bool pt = !strcmp(p->proto, "tcp"), qt = !strcmp(q->proto, "tcp");
  return pt == qt ? strcmp(p->proto, q->proto) : pt ? -1 : 1;
}

/* The linked container's ExposedPorts ("80/tcp": {}), sorted; keys that are not ports are
 * skipped (the record was checked at create). */
static size_t exposed_ports(json_t *exposed, link_port **out) {
  link_port *ports = vs_malloc0(sizeof(*ports) * (json_object_size(exposed) + 1));
  size_t n = 0;
  const char *key;
  json_t *v;
  json_object_foreach(exposed, key, v) {
    char *end;
    unsigned long num = strtoul(key, &end, 10);
    const char *proto = *end == '/' ? end + 1 : "tcp";
    if (end == key || num == 0 || num > 65535 || !*proto || strlen(proto) >= sizeof(ports->proto))
      continue;
    ports[n].num = (unsigned)num;
    for (size_t i = 0; proto[i]; i++) {
      ports[n].proto[i] = (char)tolower((unsigned char)proto[i]);
      ports[n].upper[i] = (char)toupper((unsigned char)proto[i]);
    }
    n++;
  }
  qsort(ports, n, sizeof(*ports), port_cmp);
  *out = ports;
  return n;
}

/* The last index of the run of consecutive numbers that starts at i (dockerd's nextContiguous,
 * which looks at the numbers only). */
static size_t run_end(const link_port *p, size_t n, size_t i) {
  unsigned value = p[i].num;
  for (size_t k = i + 1; k < n; k++, value++)
    if (p[k].num > value + 1)
      return k - 1;
  return n - 1;
}

static void port_vars(json_t *env, const char *alias, const char *ip, const link_port *p,
                      size_t n) {
  if (n)
    json_array_append_new(env, json_sprintf("%s_PORT=%s://%s:%u", alias, p[0].proto, ip, p[0].num));
  for (size_t i = 0; i < n;) {
    size_t j = run_end(p, n, i);
    if (j <= i + 1) {
      i++;
      continue;
    }
    const link_port *a = &p[i], *b = &p[j];
    json_array_append_new(env, json_sprintf("%s_PORT_%u_%s_START=%s://%s:%u", alias, a->num,
                                            a->upper, a->proto, ip, a->num));
    json_array_append_new(env, json_sprintf("%s_PORT_%u_%s_ADDR=%s", alias, a->num, a->upper, ip));
    json_array_append_new(
        env, json_sprintf("%s_PORT_%u_%s_PROTO=%s", alias, a->num, a->upper, a->proto));
    json_array_append_new(
        env, json_sprintf("%s_PORT_%u_%s_PORT_START=%u", alias, a->num, a->upper, a->num));
    json_array_append_new(env, json_sprintf("%s_PORT_%u_%s_END=%s://%s:%u", alias, a->num, b->upper,
                                            b->proto, ip, b->num));
    json_array_append_new(
        env, json_sprintf("%s_PORT_%u_%s_PORT_END=%u", alias, a->num, b->upper, b->num));
    i = j + 1;
  }
  for (size_t i = 0; i < n; i++) {
    json_array_append_new(env, json_sprintf("%s_PORT_%u_%s=%s://%s:%u", alias, p[i].num, p[i].upper,
                                            p[i].proto, ip, p[i].num));
    json_array_append_new(env,
                          json_sprintf("%s_PORT_%u_%s_ADDR=%s", alias, p[i].num, p[i].upper, ip));
    json_array_append_new(
        env, json_sprintf("%s_PORT_%u_%s_PORT=%u", alias, p[i].num, p[i].upper, p[i].num));
    json_array_append_new(
        env, json_sprintf("%s_PORT_%u_%s_PROTO=%s", alias, p[i].num, p[i].upper, p[i].proto));
  }
}

/* What a running container on the default bridge offers a link: its address there, its Env
 * and its ExposedPorts (copies); NULL when it is not such a container. */
static json_t *link_target(vd_daemon *d, vd_container *self, const char *name) {
  _cleanup_free_ char *full = vs_asprintf("/%s", name);
  json_t *t = NULL;
  pthread_mutex_lock(&d->lock);
  vd_container *o = vd_ctr_find_name(d, full);
  if (!o)
    o = vd_ctr_find(d, name);
  const char *ip =
      o && o != self && o->state == VD_CTR_RUNNING
          ? json_string_value(json_object_get(
                json_object_get(json_object_get(o->net, "Networks"), BRIDGE), "IPAddress"))
          : NULL;
  if (ip && *ip) {
    json_t *cfg = json_object_get(o->rec, "Config");
    t = json_pack("{s:s, s:O*, s:O*}", "IP", ip, "Env", json_object_get(cfg, "Env"), "ExposedPorts",
                  json_object_get(cfg, "ExposedPorts"));
  }
  pthread_mutex_unlock(&d->lock);
  return t;
}

char *vd_link_split(const char *spec, const char **alias) {
  char *name = vs_strdup(spec[0] == '/' ? spec + 1 : spec);
  char *colon = strchr(name, ':');
  *alias = name;
  if (colon) {
    *colon = '\0';
    const char *slash = strrchr(colon + 1, '/');
    *alias = slash ? slash + 1 : colon + 1;
  }
  return name;
}

/* The variables of one link (spec "/name:/me/alias" as dockerd stores it, or "name[:alias]"). */
static void link_vars(vd_daemon *d, vd_container *c, const char *spec, json_t *env) {
  const char *alias;
  _cleanup_free_ char *name = vd_link_split(spec, &alias);
  if (!*name || !*alias)
    return; /* the start's /etc/hosts step refuses it with a message */
  _cleanup_json_ json_t *t = link_target(d, c, name);
  if (!t)
    return;
  _cleanup_free_ char *upper = vs_strdup(alias);
  for (char *p = upper; *p; p++)
    *p = (char)(*p == '-' ? '_' : toupper((unsigned char)*p));
  const char *ip = json_string_value(json_object_get(t, "IP"));
  link_port *ports = NULL;
  size_t n = exposed_ports(json_object_get(t, "ExposedPorts"), &ports);
  port_vars(env, upper, ip, ports, n);
  free(ports);
  json_array_append_new(env, json_sprintf("%s_NAME=%s/%s", upper, c->name, alias));
  size_t i;
  json_t *v;
  json_array_foreach(json_object_get(t, "Env"), i, v) {
    const char *kv = json_string_value(v);
    const char *eq = kv ? strchr(kv, '=') : NULL;
    if (!eq || (eq - kv == 4 && (!strncmp(kv, "HOME", 4) || !strncmp(kv, "PATH", 4))))
      continue;
    json_array_append_new(env, json_sprintf("%s_ENV_%s", upper, kv));
  }
}

/* Whether env (KEY=VALUE strings) has the variable named by kv's KEY; names (a comma-separated
 * list, may be NULL) the same for a list of names. */
static bool env_has(json_t *env, const char *kv) {
  size_t n = strcspn(kv, "="), i;
  json_t *v;
  json_array_foreach(env, i, v) {
    const char *s = json_string_value(v);
    if (s && !strncmp(s, kv, n) && (s[n] == '=' || !s[n]))
      return true;
  }
  return false;
}

static bool names_have(const char *names, const char *kv) {
  size_t n = strcspn(kv, "=");
  for (const char *p = names; p && *p;) {
    size_t l = strcspn(p, ",");
    if (l == n && !strncmp(p, kv, n))
      return true;
    p += l + (p[l] == ',');
  }
  return false;
}

/* process.env without the previous start's link variables, with vars the container's own
 * variables do not set; the annotation names what was added. Unchanged: not rewritten. */
static int spec_set_link_env(vd_container *c, json_t *vars, vs_error **err) {
  _cleanup_free_ char *path = vs_asprintf("%s/config.json", c->dir);
  _cleanup_json_ json_t *spec = vs_json_load_file(path, 1U << 22, err);
  if (!spec)
    return -1;
  json_t *process = json_object_get(spec, "process");
  json_t *ann = json_object_get(spec, "annotations");
  if (!json_is_object(ann))
    json_object_set_new(spec, "annotations", ann = json_object());
  _cleanup_free_ char *old =
      vs_strdup(json_string_value(json_object_get(ann, LINK_ENV_ANNOTATION)) ?: "");
  json_t *env = json_array();
  size_t i;
  json_t *v;
  json_array_foreach(json_object_get(process, "env"), i, v) {
    if (json_is_string(v) && !names_have(old, json_string_value(v)))
      json_array_append(env, v);
  }
  _cleanup_free_ char *names = vs_strdup("");
  json_array_foreach(vars, i, v) {
    const char *kv = json_string_value(v);
    if (!kv || env_has(env, kv))
      continue;
    json_array_append(env, v);
    char *next = vs_asprintf("%s%s%.*s", names, *names ? "," : "", (int)strcspn(kv, "="), kv);
    free(names);
    names = next;
  }
  bool same = json_equal(env, json_object_get(process, "env")) && !strcmp(old, names);
  json_object_set_new(process, "env", env);
  if (*names)
    json_object_set_new(ann, LINK_ENV_ANNOTATION, json_string(names));
  else
    json_object_del(ann, LINK_ENV_ANNOTATION);
  return same ? 0 : vs_json_write_file(path, spec, 0600, err);
}

int vd_links_env(vd_daemon *d, vd_container *c, vs_error **err) {
  json_t *links = json_object_get(json_object_get(c->rec, "HostConfig"), "Links");
  if (!json_array_size(links))
    return 0;
  pthread_mutex_lock(&d->lock);
  bool on_bridge = json_object_get(json_object_get(c->net, "Networks"), BRIDGE) != NULL;
  pthread_mutex_unlock(&d->lock);
  _cleanup_json_ json_t *vars = json_array();
  size_t i;
  json_t *v;
  json_array_foreach(links, i, v) {
    if (on_bridge && json_is_string(v))
      link_vars(d, c, json_string_value(v), vars);
  }
  if (spec_set_link_env(c, vars, err) < 0)
    return vs_error_wrap(err, "the link variables");
  return 0;
}
