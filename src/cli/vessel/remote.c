/* The container and image commands of vessel through vesseld's Docker Engine API: the same
 * requests the docker CLI makes, printed in vessel's (docker's) formats. */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <getopt.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <termios.h>
#include <time.h>

/* Splits the stream of an attach or logs without a TTY: 8-byte headers (stream, 0, 0, 0,
 * big-endian length), then the bytes for stdout or stderr. Fed in pieces of any size. */
typedef struct demux {
  bool raw; /* TTY: no headers, everything to stdout */
  unsigned char head[8];
  size_t have;
  uint32_t left;
  int fd;
} demux;

static int demux_feed(void *arg, const char *data, size_t len, vs_error **err) {
  demux *m = arg;
  if (m->raw)
    return vs_write_all(1, data, len, err);
  while (len) {
    if (m->left == 0) {
      size_t take = 8 - m->have < len ? 8 - m->have : len;
      memcpy(m->head + m->have, data, take);
      m->have += take;
      data += take;
      len -= take;
      if (m->have < 8)
        return 0;
      m->have = 0;
      m->fd = m->head[0] == 2 ? 2 : 1;
      m->left = (uint32_t)m->head[4] << 24 | (uint32_t)m->head[5] << 16 |
                (uint32_t)m->head[6] << 8 | m->head[7];
      continue;
    }
    size_t take = m->left < len ? m->left : len;
    if (vs_write_all(m->fd, data, take, err) < 0)
      return -1;
    m->left -= (uint32_t)take;
    data += take;
    len -= take;
  }
  return 0;
}

static char *container_path(const char *what, const char *suffix) {
  _cleanup_free_ char *e = vessel_query_escape(what);
  return vs_asprintf("/containers/%s%s", e, suffix);
}

/* ---------------------------------------------------------------- run */

typedef struct remote_run_opts {
  bool rm, tty, interactive, detach;
  const char *name;
  json_t *place; /* the cluster's placement fields: Node, NodeSelector, AntiAffinity, Affinity */
} remote_run_opts;

static int usage_error(vs_error **err, const char *usage) {
  vs_error_set(err, EINVAL, "usage: %s", usage);
  return 125;
}

/* --cpus 1.5: HostConfig.NanoCpus, as docker run (the daemon checks the range). */
static int cpus_option(const char *s, json_t *host, vs_error **err) {
  char *end = NULL;
  errno = 0;
  double v = strtod(s, &end);
  if (errno || end == s || *end || !(v > 0) || v > 1e6)
    return vs_error_set(err, 0, "--cpus \"%s\": expected a number of CPUs such as 1.5", s);
  json_object_set_new(host, "NanoCpus", json_integer((json_int_t)(v * 1e9 + 0.5)));
  return 0;
}

/* --restart always|unless-stopped|no|on-failure[:N]: HostConfig.RestartPolicy, as docker run. */
static int restart_option(const char *s, json_t *host, vs_error **err) {
  const char *colon = strchr(s, ':');
  size_t len = colon ? (size_t)(colon - s) : strlen(s);
  json_int_t max = 0;
  if (colon) {
    char *end = NULL;
    long long v = strtoll(colon + 1, &end, 10);
    if (!*(colon + 1) || *end || v < 0 || strncmp(s, "on-failure", len) != 0 || len != 10)
      return vs_error_set(err, 0, "--restart %s: expected on-failure:N with N a count", s);
    max = v;
  }
  static const char *const names[] = {"no", "always", "unless-stopped", "on-failure"};
  for (size_t i = 0; i < ARRAY_SIZE(names); i++)
    if (strlen(names[i]) == len && !strncmp(s, names[i], len)) {
      json_object_set_new(host, "RestartPolicy",
                          json_pack("{s:s%, s:I}", "Name", s, len, "MaximumRetryCount", max));
      return 0;
    }
  return vs_error_set(err, 0, "--restart %s: expected no, always, unless-stopped or on-failure[:N]",
                      s);
}

/* --node-selector K=V and the like: into place[field]. */
static int place_label(json_t *place, const char *field, const char *opt, const char *kv,
                       vs_error **err) {
  const char *eq = strchr(kv, '=');
  if (!eq || eq == kv)
    return vs_error_set(err, 0, "--%s %s: expected KEY=VALUE", opt, kv);
  json_t *m = json_object_get(place, field);
  if (!m) {
    m = json_object();
    json_object_set_new(place, field, m);
  }
  _cleanup_free_ char *key = vs_asprintf("%.*s", (int)(eq - kv), kv);
  json_object_set_new(m, key, json_string(eq + 1));
  return 0;
}

static json_t *string_array(char **v, int n) {
  json_t *a = json_array();
  for (int i = 0; i < n; i++)
    json_array_append_new(a, json_string(v[i]));
  return a;
}

static int run_attached(vessel_ctx *ctx, const char *id, const remote_run_opts *o, vs_error **err) {
  _cleanup_free_ char *attach =
      container_path(id, o->interactive ? "/attach?stream=1&stdin=1&stdout=1&stderr=1"
                                        : "/attach?stream=1&stdout=1&stderr=1");
  vessel_hijack hj;
  if (vessel_api_hijack(ctx, "POST", attach, &hj, err) < 0)
    return 125;
  struct termios saved;
  bool raw = o->tty && o->interactive && vessel_tty_raw(&saved);
  _cleanup_free_ char *start = container_path(id, "/start");
  int rc = 125;
  /* the output is in Docker's frames, unless the container has a terminal */
  demux m = {.raw = o->tty};
  vessel_relay_opts ro = {.out = demux_feed,
                          .out_arg = &m,
                          .input = o->interactive,
                          .shutdown_at_eof = true,
                          .detach_key = -1};
  if (vessel_api_json(ctx, "POST", start, NULL, NULL, err) >= 0 && vessel_relay(&hj, &ro, err) == 0)
    rc = 0;
  if (raw)
    tcsetattr(0, TCSANOW, &saved);
  close(hj.fd);
  free(hj.pending);
  if (rc != 0)
    return rc;
  /* The stream ended with the container; its status is kept until it is removed. */
  _cleanup_free_ char *wait = container_path(id, "/wait?condition=not-running");
  json_t *w = NULL;
  if (vessel_api_json(ctx, "POST", wait, NULL, &w, err) < 0)
    return 125;
  rc = (int)json_integer_value(json_object_get(w, "StatusCode"));
  json_decref(w);
  if (o->rm) {
    _cleanup_free_ char *del = container_path(id, "?force=1");
    vs_error *e = NULL;
    if (vessel_api_json(ctx, "DELETE", del, NULL, NULL, &e) < 0) {
      vs_error_print(e, "vessel run --rm");
      vs_error_free(e);
    }
  }
  return rc;
}

/* vessel run -d in a cluster: the container is a guest of the cluster, placed by the scheduler
 * and made by the node it lands on (docs/cluster.md). 1 when this vesseld is not in a cluster
 * (the caller runs it here), else the command's status. */
static int run_in_cluster(vessel_ctx *ctx, json_t *cfg, const remote_run_opts *o, vs_error **err) {
  json_t *body = json_deep_copy(cfg);
  json_object_update(body, o->place);
  _cleanup_free_ char *doc = json_dumps(body, JSON_COMPACT);
  json_decref(body);
  _cleanup_free_ char *name = o->name ? vessel_query_escape(o->name) : NULL;
  _cleanup_free_ char *target =
      vs_asprintf("/vessel/v1/containers%s%s", name ? "?name=" : "", name ? name : "");
  vessel_reply r;
  if (vessel_api(ctx, "POST", target, "application/json", doc, strlen(doc), &r, err) < 0)
    return 125;
  json_t *j = json_loadb(r.body, r.len, 0, NULL);
  int rc = 0;
  if (r.status == 503 || r.status == 404) {
    rc = 1; /* not in a cluster (or a vesseld without the endpoint): a container of this node */
  } else if (r.status != 201) {
    const char *msg = json_string_value(json_object_get(j, "message"));
    vs_error_set(err, 0, "Error response from daemon: %s", msg ? msg : r.body);
    rc = 125;
  } else {
    const char *node = json_string_value(json_object_get(j, "Node"));
    if (node)
      fprintf(stderr, "%s: on node %s\n", json_string_value(json_object_get(j, "Name")), node);
    printf("%s\n", json_string_value(json_object_get(j, "Id")));
  }
  json_decref(j);
  free(r.body);
  return rc;
}

int remote_run(vessel_ctx *ctx, int argc, char **argv, vs_error **err) {

  remote_run_opts o = {0};
  _cleanup_(vs_json_decrefp) json_t *place = json_object();
  o.place = place;
  _cleanup_(vs_json_decrefp) json_t *cfg = json_object();
  json_t *host = json_object();
  json_object_set_new(cfg, "HostConfig", host);
  json_t *env = json_array();
  json_object_set_new(cfg, "Env", env);
  json_t *labels = json_object();
  json_object_set_new(cfg, "Labels", labels);
  int c;
  optind = 1;
  while ((c = getopt_long(argc, argv, "+itde:w:u:", vessel_run_options, NULL)) != -1) {
    switch (c) {
    case 'R':
      o.rm = true;
      break;
    case 't':
      o.tty = true;
      break;
    case 'i':
      o.interactive = true;
      break;
    case 'd':
      o.detach = true;
      break;
    case 'e':
      if (strchr(optarg, '='))
        json_array_append_new(env, json_string(optarg));
      else if (getenv(optarg))
        json_array_append_new(env, json_sprintf("%s=%s", optarg, getenv(optarg)));
      break;
    case 'w':
      json_object_set_new(cfg, "WorkingDir", json_string(optarg));
      break;
    case 'u':
      json_object_set_new(cfg, "User", json_string(optarg));
      break;
    case 'n':
      o.name = optarg;
      break;
    case 'E':
      json_object_set_new(cfg, "Entrypoint", *optarg ? json_pack("[s]", optarg) : json_array());
      break;
    case 'r':
      vs_error_set(err, 0,
                   "--runtime: vesseld runs containers with its own monitor and src/ctr; use "
                   "--root DIR to run with another OCI runtime without the daemon");
      return 125;
    case 'N':
      json_object_set_new(host, "NetworkMode", json_string(optarg));
      break;
    case 'P': /* the label docker run --label vessel.pool=NAME sets */
      json_object_set_new(labels, "vessel.pool", json_string(optarg));
      break;
    case 'l': {
      _cleanup_free_ char *key = vs_strdup(optarg);
      char *eq = strchr(key, '=');
      if (!eq || eq == key)
        return vs_error_set(err, 0, "--label %s: expected KEY=VALUE", optarg), 125;
      *eq = '\0';
      json_object_set_new(labels, key, json_string(eq + 1));
      break;
    }
    case 'c':
      if (cpus_option(optarg, host, err) < 0)
        return 125;
      break;
    case 'S':
      if (restart_option(optarg, host, err) < 0)
        return 125;
      break;
    case 'O':
      json_object_set_new(place, "Node", json_string(optarg));
      break;
    case 'L':
      if (place_label(place, "NodeSelector", "node-selector", optarg, err) < 0)
        return 125;
      break;
    case 'A':
      if (place_label(place, "AntiAffinity", "anti-affinity", optarg, err) < 0)
        return 125;
      break;
    case 'F':
      if (place_label(place, "Affinity", "affinity", optarg, err) < 0)
        return 125;
      break;
    case 'm': {
      uint64_t mem;
      if (vs_parse_size(optarg, "--memory", &mem, err) < 0)
        return 125;
      json_object_set_new(host, "Memory", json_integer((json_int_t)mem));
      break;
    }
    default:
      return 125;
    }
  }
  if (optind >= argc)
    return usage_error(err, "vessel run [OPTIONS] IMAGE [COMMAND...]");
  json_object_set_new(cfg, "Image", json_string(argv[optind]));
  if (argc - optind > 1)
    json_object_set_new(cfg, "Cmd", string_array(argv + optind + 1, argc - optind - 1));
  json_object_set_new(cfg, "Tty", json_boolean(o.tty));
  json_object_set_new(cfg, "OpenStdin", json_boolean(o.interactive));
  json_object_set_new(cfg, "StdinOnce", json_boolean(o.interactive));
  json_object_set_new(cfg, "AttachStdin", json_boolean(o.interactive && !o.detach));
  json_object_set_new(cfg, "AttachStdout", json_boolean(!o.detach));
  json_object_set_new(cfg, "AttachStderr", json_boolean(!o.detach));
  /* With -d the daemon removes the container at its exit; attached, vessel does after reading
   * the exit status. */
  json_object_set_new(host, "AutoRemove", json_boolean(o.rm && o.detach));
  if (o.detach && !o.rm) { /* in a cluster: a guest of the cluster, placed by its scheduler */
    int rc = run_in_cluster(ctx, cfg, &o, err);
    if (rc != 1)
      return rc;
  }
  if (json_object_size(place))
    return vs_error_set(err, 0,
                        "--node, --node-selector, --anti-affinity and --affinity place a "
                        "container of a cluster: they need vesseld in a cluster and run -d "
                        "without --rm (an attached run stays on the node it is sent to)"),
           125;
  _cleanup_free_ char *name = o.name ? vessel_query_escape(o.name) : NULL;
  _cleanup_free_ char *target =
      vs_asprintf("/containers/create%s%s", name ? "?name=" : "", name ? name : "");
  json_t *created = NULL;
  vs_error *e = NULL;
  if (vessel_api_json(ctx, "POST", target, cfg, &created, &e) < 0) {
    if (!e || e->errnum != ENOENT || !strstr(e->msg, "No such image")) {
      vs_error_wrap(&e, "create");
      *err = e;
      return 125;
    }
    /* As docker run does: pull the missing image, then create again. */
    vs_error_free(e);
    fprintf(stderr, "Unable to find image '%s' locally\n", argv[optind]);
    char *pull_argv[] = {"pull", argv[optind], NULL};
    if (remote_pull(ctx, 2, pull_argv, err) != 0)
      return 125;
    if (vessel_api_json(ctx, "POST", target, cfg, &created, err) < 0)
      return 125;
  }
  _cleanup_free_ char *id = vs_strdup(json_string_value(json_object_get(created, "Id")));
  json_decref(created);
  if (!*id)
    return vs_error_set(err, EPROTO, "create: vesseld's reply has no Id"), 125;
  if (!o.detach)
    return run_attached(ctx, id, &o, err);
  _cleanup_free_ char *start = container_path(id, "/start");
  if (vessel_api_json(ctx, "POST", start, NULL, NULL, err) < 0)
    return 125;
  printf("%s\n", id);
  return 0;
}

/* ---------------------------------------------------------------- ps, logs */

static char *unix_time_ago(json_int_t t) {
  char buf[64];
  time_t tt = (time_t)t;
  struct tm tm;
  gmtime_r(&tt, &tm);
  strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return vessel_human_time(buf);
}

/* The cluster's containers ({name: guest record}), or NULL when this vesseld is in none. */
static json_t *cluster_containers(vessel_ctx *ctx) {
  vessel_reply r;
  vs_error *e = NULL;
  if (vessel_api(ctx, "GET", "/vessel/v1/guests", NULL, NULL, 0, &r, &e) < 0) {
    vs_error_free(e);
    return NULL;
  }
  json_t *list = r.status == 200 ? json_loadb(r.body, r.len, 0, NULL) : NULL;
  free(r.body);
  if (!json_is_array(list)) {
    json_decref(list);
    return NULL;
  }
  json_t *out = json_object();
  size_t i;
  json_t *g;
  json_array_foreach(list, i, g) {
    const char *kind = json_string_value(json_object_get(g, "Kind"));
    const char *name = json_string_value(json_object_get(g, "Name"));
    if (kind && name && !strcmp(kind, "container"))
      json_object_set(out, name, g);
  }
  json_decref(list);
  return out;
}

static char *rfc3339_ago(const char *t) { return t ? vessel_human_time(t) : vs_strdup(""); }

/* The cluster's containers that are not this node's, as lines of ps (running ones, or all). */
static void ps_cluster_rest(json_t *guests, json_t *shown, bool all, bool quiet) {
  const char *name;
  json_t *g;
  json_object_foreach(guests, name, g) {
    const char *phase = json_string_value(json_object_get(g, "Phase"));
    if (json_object_get(shown, name) || (!all && (!phase || strcmp(phase, "running") != 0)))
      continue;
    const char *id = json_string_value(json_object_get(g, "Id"));
    if (quiet) {
      printf("%.12s\n", id ? id : name);
      continue;
    }
    const char *node = json_string_value(json_object_get(g, "Node"));
    const char *image = json_string_value(json_object_get(g, "Image"));
    const char *cmd = json_string_value(json_object_get(g, "Command"));
    _cleanup_free_ char *created = rfc3339_ago(json_string_value(json_object_get(g, "Created")));
    _cleanup_free_ char *status = vs_asprintf("%s", phase ? phase : "-");
    printf("%-14.12s %-20.20s %-24.24s %-16s %-22s %-10s %s\n", id && *id ? id : "-",
           image ? image : "", cmd ? cmd : "", created, status, node ? node : "-", name);
  }
}

int remote_ps(vessel_ctx *ctx, int argc, char **argv, vs_error **err) {
  bool all = false, quiet = false;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "-a") || !strcmp(argv[i], "--all"))
      all = true;
    else if (!strcmp(argv[i], "-q") || !strcmp(argv[i], "--quiet"))
      quiet = true;
    else if (!strcmp(argv[i], "-aq") || !strcmp(argv[i], "-qa"))
      all = quiet = true;
    else
      return usage_error(err, "vessel ps [-a] [-q]");
  }
  json_t *list = NULL;
  if (vessel_api_json(ctx, "GET", all ? "/containers/json?all=1" : "/containers/json", NULL, &list,
                      err) < 0)
    return 125;
  /* in a cluster: a NODE column, and the cluster's containers on the other nodes */
  _cleanup_(vs_json_decrefp) json_t *guests = cluster_containers(ctx);
  _cleanup_(vs_json_decrefp) json_t *shown = json_object();
  if (!quiet && guests)
    printf("%-14s %-20s %-24s %-16s %-22s %-10s %s\n", "CONTAINER ID", "IMAGE", "COMMAND",
           "CREATED", "STATUS", "NODE", "NAMES");
  else if (!quiet)
    printf("%-14s %-20s %-24s %-16s %-22s %s\n", "CONTAINER ID", "IMAGE", "COMMAND", "CREATED",
           "STATUS", "NAMES");
  size_t i;
  json_t *c;
  json_array_foreach(list, i, c) {
    const char *id = json_string_value(json_object_get(c, "Id"));
    const char *name = json_string_value(json_array_get(json_object_get(c, "Names"), 0));
    name = name ? name + (*name == '/') : "";
    json_t *g = guests ? json_object_get(guests, name) : NULL;
    const char *gid = json_string_value(json_object_get(g, "Id"));
    if (g && gid && id && !strcmp(gid, id)) /* this node's container of the cluster */
      json_object_set_new(shown, name, json_true());
    else
      g = NULL;
    if (quiet) {
      printf("%.12s\n", id ? id : "");
      continue;
    }
    _cleanup_free_ char *created = unix_time_ago(json_integer_value(json_object_get(c, "Created")));
    const char *image = json_string_value(json_object_get(c, "Image"));
    const char *cmd = json_string_value(json_object_get(c, "Command"));
    const char *status = json_string_value(json_object_get(c, "Status"));
    if (guests) {
      const char *node = json_string_value(json_object_get(g, "Node"));
      printf("%-14.12s %-20.20s %-24.24s %-16s %-22s %-10s %s\n", id ? id : "", image ? image : "",
             cmd ? cmd : "", created, status ? status : "", node ? node : "-", name);
    } else {
      printf("%-14.12s %-20.20s %-24.24s %-16s %-22s %s\n", id ? id : "", image ? image : "",
             cmd ? cmd : "", created, status ? status : "", name);
    }
  }
  json_decref(list);
  if (guests)
    ps_cluster_rest(guests, shown, all, quiet);
  return 0;
}

/* A container of the cluster on another node that the node's inspect did not carry there (its
 * copy of the records lagged): its output so far (GET /vessel/v1/containers/NAME/logs). -1 when the
 * cluster has no such container (*err as it was: the local answer), else the status. */
static int cluster_logs(vessel_ctx *ctx, const char *name, const char *tail, bool follow,
                        vs_error **err) {
  _cleanup_free_ char *esc = vessel_query_escape(name);
  _cleanup_free_ char *t = vessel_query_escape(tail);
  _cleanup_free_ char *target = vs_asprintf("/vessel/v1/containers/%s/logs?tail=%s", esc, t);
  vessel_reply r;
  vs_error *e = NULL;
  if (vessel_api(ctx, "GET", target, NULL, NULL, 0, &r, &e) < 0) {
    vs_error_free(e);
    return -1;
  }
  json_t *j = json_loadb(r.body, r.len, 0, NULL);
  int rc = -1;
  if (r.status == 200 && follow) {
    vs_error_free(*err);
    *err = NULL;
    vs_error_set(err, 0,
                 "logs -f: container %s runs on node %s, and this node did not carry the "
                 "request there (its copy of the cluster's records is not loaded yet): try "
                 "again",
                 name, json_string_value(json_object_get(j, "Node")));
    rc = 1;
  } else if (r.status == 200) {
    vs_error_free(*err);
    *err = NULL;
    size_t i;
    json_t *line;
    json_array_foreach(json_object_get(j, "Output"), i, line) {
      const char *stream = json_string_value(json_object_get(line, "Stream"));
      json_t *text = json_object_get(line, "Text");
      int fd = stream && !strcmp(stream, "stderr") ? 2 : 1;
      if (vs_write_all(fd, json_string_value(text), json_string_length(text), NULL) < 0)
        break;
    }
    rc = 0;
  } else if (r.status != 404 && r.status != 503) {
    vs_error_free(*err);
    *err = NULL;
    const char *msg = json_string_value(json_object_get(j, "message"));
    vs_error_set(err, 0, "Error response from daemon: %s", msg ? msg : r.body);
    rc = 1;
  }
  json_decref(j);
  free(r.body);
  return rc;
}

int remote_logs(vessel_ctx *ctx, int argc, char **argv, vs_error **err) {
  static const struct option opts[] = {{"follow", no_argument, 0, 'f'},
                                       {"timestamps", no_argument, 0, 't'},
                                       {"tail", required_argument, 0, 'T'},
                                       {0, 0, 0, 0}};
  bool follow = false, stamps = false;
  const char *tail = "all";
  int c;
  optind = 1;
  while ((c = getopt_long(argc, argv, "+ft", opts, NULL)) != -1) {
    if (c == 'f')
      follow = true;
    else if (c == 't')
      stamps = true;
    else if (c == 'T')
      tail = optarg;
    else
      return 125;
  }
  if (optind != argc - 1)
    return usage_error(err, "vessel logs [-f] [-t] [--tail N] CONTAINER");
  _cleanup_free_ char *inspect = container_path(argv[optind], "/json");
  json_t *info = NULL;
  if (vessel_api_json(ctx, "GET", inspect, NULL, &info, err) < 0) {
    int rc = (*err)->errnum == ENOENT ? cluster_logs(ctx, argv[optind], tail, follow, err) : -1;
    return rc < 0 ? 1 : rc;
  }
  demux m = {.raw = json_is_true(json_object_get(json_object_get(info, "Config"), "Tty"))};
  json_decref(info);
  _cleanup_free_ char *t = vessel_query_escape(tail);
  _cleanup_free_ char *q =
      vs_asprintf("/logs?stdout=1&stderr=1&follow=%d&timestamps=%d&tail=%s", follow, stamps, t);
  _cleanup_free_ char *target = container_path(argv[optind], q);
  return vessel_api_stream(ctx, "GET", target, NULL, demux_feed, &m, err) < 0 ? 1 : 0;
}

/* ---------------------------------------------------------------- rm, stop, start */

/* Each container: method on /containers/NAME+suffix (this node's), or when this node has none
 * of that name, on the cluster's (/vessel/v1/containers/NAME+cluster_suffix: it goes to the
 * container's node). Prints each name done, as docker does. */
static int each_container(vessel_ctx *ctx, int argc, char **argv, int first, const char *method,
                          const char *suffix, const char *cluster_suffix, const char *what) {
  int rc = 0;
  /* a removal asks the cluster first: its record goes with the container (this node's
   * reconciler would make again a container of the cluster removed here alone) */
  bool cluster_first = !strcmp(method, "DELETE");
  for (int i = first; i < argc; i++) {
    _cleanup_free_ char *esc = vessel_query_escape(argv[i]);
    _cleanup_free_ char *local = vs_asprintf("/containers/%s%s", esc, suffix);
    vs_error *e = NULL;
    if (cluster_first)
      vs_error_set(&e, ENOENT, "not asked yet");
    if ((cluster_first || vessel_api_json(ctx, method, local, NULL, NULL, &e) < 0) &&
        e->errnum == ENOENT) {
      _cleanup_free_ char *target = vs_asprintf("/vessel/v1/containers/%s%s", esc, cluster_suffix);
      vessel_reply r;
      vs_error *ce = NULL;
      if (vessel_api(ctx, method, target, NULL, NULL, 0, &r, &ce) == 0 && r.status != 404 &&
          r.status != 503) {
        vs_error_free(e);
        e = NULL;
        json_t *j = json_loadb(r.body, r.len, 0, NULL);
        const char *msg = json_string_value(json_object_get(j, "message"));
        if (r.status >= 400)
          vs_error_set(&e, 0, "Error response from daemon: %s", msg ? msg : r.body);
        json_decref(j);
      }
      if (!ce)
        free(r.body);
      vs_error_free(ce);
      if (cluster_first && e && e->errnum == ENOENT) { /* not the cluster's: this node's */
        vs_error_free(e);
        e = NULL;
        vessel_api_json(ctx, method, local, NULL, NULL, &e);
      }
    }
    if (e) {
      vs_error_print(e, what);
      vs_error_free(e);
      rc = 1;
    } else {
      printf("%s\n", argv[i]);
    }
  }
  return rc;
}

int remote_rm(vessel_ctx *ctx, int argc, char **argv, vs_error **err) {
  bool force;
  int first = vessel_force_operands(argc, argv, &force);
  if (first < 0)
    return usage_error(err, "vessel rm [-f] CONTAINER...");
  return each_container(ctx, argc, argv, first, "DELETE", force ? "?force=1" : "",
                        force ? "?force=1" : "", "vessel rm");
}

int remote_stop(vessel_ctx *ctx, int argc, char **argv, vs_error **err) {
  int first = 1;
  _cleanup_free_ char *suffix = vs_strdup("/stop");
  if (first + 1 < argc && (!strcmp(argv[first], "-t") || !strcmp(argv[first], "--time"))) {
    uint64_t t;
    if (vs_parse_u64(argv[first + 1], "stop timeout", &t, err) < 0)
      return 125;
    free(suffix);
    suffix = vs_asprintf("/stop?t=%llu", (unsigned long long)t);
    first += 2;
  }
  if (first >= argc)
    return usage_error(err, "vessel stop [-t SECONDS] CONTAINER...");
  return each_container(ctx, argc, argv, first, "POST", suffix, suffix, "vessel stop");
}

int remote_start(vessel_ctx *ctx, int argc, char **argv, vs_error **err) {
  if (argc < 2 || argv[1][0] == '-')
    return usage_error(err, "vessel start CONTAINER...");
  return each_container(ctx, argc, argv, 1, "POST", "/start", "/start", "vessel start");
}

/* ---------------------------------------------------------------- images */

/* An image's Id ("sha256:HEX") without its algorithm, "" when it has none. */
static const char *image_id_hex(const json_t *img) {
  const char *id = json_string_value(json_object_get(img, "Id"));
  return id && !strncmp(id, "sha256:", 7) ? id + 7 : (id ? id : "");
}

/* vessel images --cluster: every image a node of the cluster holds (GET
 * /vessel/v1/cluster/images), a line per reference with the nodes that have it. */
static int cluster_images(vessel_ctx *ctx, bool quiet, vs_error **err) {
  json_t *list = NULL;
  if (vessel_api_json(ctx, "GET", "/vessel/v1/cluster/images", NULL, &list, err) < 0)
    return 125;
  if (!quiet)
    printf("%-10s %-50s %-14s %-10s %s\n", "KIND", "REFERENCE", "IMAGE ID", "SIZE", "NODES");
  size_t i;
  json_t *img;
  json_array_foreach(list, i, img) {
    const char *hex = image_id_hex(img);
    if (quiet) {
      printf("%.12s\n", hex);
      continue;
    }
    _cleanup_free_ char *size =
        vessel_human_size((uint64_t)json_integer_value(json_object_get(img, "Size")));
    char *nodes = vs_strdup("");
    size_t k;
    json_t *n;
    json_array_foreach(json_object_get(img, "Nodes"), k, n) {
      char *next = vs_asprintf("%s%s%s", nodes, k ? "," : "", json_string_value(n));
      free(nodes);
      nodes = next;
    }
    json_t *ref;
    json_array_foreach(json_object_get(img, "References"), k, ref) {
      printf("%-10s %-50s %-14.12s %-10s %s\n", json_string_value(json_object_get(img, "Kind")),
             json_string_value(ref), hex, size, nodes);
    }
    free(nodes);
  }
  json_decref(list);
  return 0;
}

int remote_images(vessel_ctx *ctx, int argc, char **argv, vs_error **err) {
  bool quiet = false, cluster = false;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "-q") || !strcmp(argv[i], "--quiet"))
      quiet = true;
    else if (!strcmp(argv[i], "--cluster"))
      cluster = true;
    else
      return usage_error(err, "vessel images [-q] [--cluster]");
  }
  if (cluster)
    return cluster_images(ctx, quiet, err);
  json_t *list = NULL;
  if (vessel_api_json(ctx, "GET", "/images/json", NULL, &list, err) < 0)
    return 125;
  if (!quiet)
    printf("%-40s %-16s %-14s %-16s %s\n", "REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE");
  size_t i;
  json_t *img;
  json_array_foreach(list, i, img) {
    const char *hex = image_id_hex(img);
    if (quiet) {
      printf("%.12s\n", hex);
      continue;
    }
    _cleanup_free_ char *created =
        unix_time_ago(json_integer_value(json_object_get(img, "Created")));
    _cleanup_free_ char *size =
        vessel_human_size((uint64_t)json_integer_value(json_object_get(img, "Size")));
    json_t *tags = json_object_get(img, "RepoTags");
    size_t k;
    json_t *tag;
    bool printed = false;
    json_array_foreach(tags, k, tag) {
      const char *t = json_string_value(tag);
      const char *colon = t ? strrchr(t, ':') : NULL;
      if (!colon || strchr(colon, '/'))
        continue;
      printf("%-40.*s %-16s %-14.12s %-16s %s\n", (int)(colon - t), t, colon + 1, hex, created,
             size);
      printed = true;
    }
    if (!printed)
      printf("%-40s %-16s %-14.12s %-16s %s\n", "<none>", "<none>", hex, created, size);
  }
  json_decref(list);
  return 0;
}

/* The progress messages of a pull or load, one JSON object per line: status lines and errors. */
typedef struct pull_progress {
  char *line;
  size_t len;
  char *error;
} pull_progress;

static void pull_line(pull_progress *p) {
  json_t *j = json_loadb(p->line, p->len, 0, NULL);
  const char *status = json_string_value(json_object_get(j, "status"));
  const char *error = json_string_value(json_object_get(j, "error"));
  const char *id = json_string_value(json_object_get(j, "id"));
  const char *stream = json_string_value(json_object_get(j, "stream"));
  if (stream)
    fputs(stream, stdout);
  if (error && !p->error)
    p->error = vs_strdup(error);
  else if (status)
    printf("%s%s%s\n", id ? id : "", id ? ": " : "", status);
  json_decref(j);
}

static int pull_feed(void *arg, const char *data, size_t len, vs_error **err) {
  (void)err;
  pull_progress *p = arg;
  for (size_t i = 0; i < len; i++) {
    if (data[i] == '\n') {
      pull_line(p);
      p->len = 0;
      continue;
    }
    p->line = vs_realloc(p->line, p->len + 1);
    p->line[p->len++] = data[i];
  }
  return 0;
}

int remote_pull(vessel_ctx *ctx, int argc, char **argv, vs_error **err) {
  if (argc != 2 || argv[1][0] == '-')
    return usage_error(err, "vessel pull IMAGE (through vesseld; registry options are the "
                            "daemon's)");
  _cleanup_free_ char *ref = vessel_query_escape(argv[1]);
  _cleanup_free_ char *target = vs_asprintf("/images/create?fromImage=%s", ref);
  pull_progress p = {0};
  int rc = vessel_api_stream(ctx, "POST", target, NULL, pull_feed, &p, err);
  if (p.len)
    pull_line(&p);
  free(p.line);
  if (rc == 0 && p.error)
    vs_error_set(err, EIO, "pull %s: %s", argv[1], p.error);
  free(p.error);
  return rc < 0 || *err ? 1 : 0;
}

int remote_rmi(vessel_ctx *ctx, int argc, char **argv, vs_error **err) {
  bool force;
  int first = vessel_force_operands(argc, argv, &force);
  if (first < 0)
    return usage_error(err, "vessel rmi [-f] IMAGE...");
  int rc = 0;
  for (int i = first; i < argc; i++) {
    _cleanup_free_ char *e = vessel_query_escape(argv[i]);
    _cleanup_free_ char *target = vs_asprintf("/images/%s%s", e, force ? "?force=1" : "");
    json_t *out = NULL;
    vs_error *er = NULL;
    if (vessel_api_json(ctx, "DELETE", target, NULL, &out, &er) < 0) {
      vs_error_print(er, "vessel rmi");
      vs_error_free(er);
      rc = 1;
      continue;
    }
    size_t k;
    json_t *item;
    json_array_foreach(out, k, item) {
      const char *key;
      json_t *v;
      json_object_foreach(item, key, v) printf("%s: %s\n", key, json_string_value(v));
    }
    json_decref(out);
  }
  return rc;
}

int remote_tag(vessel_ctx *ctx, int argc, char **argv, vs_error **err) {
  if (argc != 3)
    return usage_error(err, "vessel tag SOURCE TARGET");
  const char *target = argv[2];
  const char *slash = strrchr(target, '/');
  const char *colon = strrchr(target, ':');
  if (colon && slash && colon < slash)
    colon = NULL;
  _cleanup_free_ char *repo =
      colon ? vs_asprintf("%.*s", (int)(colon - target), target) : vs_strdup(target);
  _cleanup_free_ char *erepo = vessel_query_escape(repo);
  _cleanup_free_ char *etag = vessel_query_escape(colon ? colon + 1 : "latest");
  _cleanup_free_ char *src = vessel_query_escape(argv[1]);
  _cleanup_free_ char *path = vs_asprintf("/images/%s/tag?repo=%s&tag=%s", src, erepo, etag);
  return vessel_api_json(ctx, "POST", path, NULL, NULL, err) < 0 ? 1 : 0;
}

/* Like docker inspect: a container by that name or ID, else an image. */
int remote_inspect(vessel_ctx *ctx, int argc, char **argv, vs_error **err) {
  if (argc < 2)
    return usage_error(err, "vessel inspect NAME|ID...");
  json_t *all = json_array();
  int rc = 0;
  for (int i = 1; i < argc; i++) {
    _cleanup_free_ char *ctr = container_path(argv[i], "/json");
    json_t *obj = NULL;
    vs_error *e = NULL;
    if (vessel_api_json(ctx, "GET", ctr, NULL, &obj, &e) < 0 && e->errnum == ENOENT) {
      vs_error_free(e);
      e = NULL;
      _cleanup_free_ char *esc = vessel_query_escape(argv[i]);
      _cleanup_free_ char *img = vs_asprintf("/images/%s/json", esc);
      if (vessel_api_json(ctx, "GET", img, NULL, &obj, &e) < 0 && e->errnum == ENOENT)
        vs_error_set(&e, 0, "Error: No such object: %s", argv[i]);
    }
    if (e) {
      vs_error_print(e, "vessel inspect");
      vs_error_free(e);
      rc = 1;
      continue;
    }
    json_array_append_new(all, obj);
  }
  vessel_print_json(all);
  return rc;
}

int remote_load(vessel_ctx *ctx, int argc, char **argv, vs_error **err) {
  const char *path = NULL;
  for (int i = 1; i < argc; i++) {
    if ((!strcmp(argv[i], "-i") || !strcmp(argv[i], "--input")) && i + 1 < argc)
      path = argv[++i];
    else
      return usage_error(err, "vessel load -i FILE");
  }
  if (!path)
    return usage_error(err, "vessel load -i FILE (through vesseld the archive is a file)");
  _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) < 0)
    return vs_error_set(err, errno, "open %s", path), 1;
  pull_progress p = {0};
  int rc = vessel_api_upload(ctx, "POST", "/images/load", NULL, fd, (size_t)st.st_size, pull_feed,
                             &p, err);
  if (p.len)
    pull_line(&p);
  free(p.line);
  if (rc == 0 && p.error)
    vs_error_set(err, 0, "load %s: %s", path, p.error);
  free(p.error);
  return rc < 0 || *err ? 1 : 0;
}
