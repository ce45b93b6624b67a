/* vesseld: the daemon with the Docker Engine API. Options are parsed here; everything else is
 * src/daemon. */
#include "daemon/daemon.h"

#include <errno.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <string.h>
#include <sys/resource.h>

static void usage(FILE *f) {
  fprintf(f,
          "usage: vesseld [--config FILE] [--data-root DIR] [--exec-root DIR]\n"
          "               [-H unix:///PATH | -H tcp://ADDRESS:PORT]... [-D|--debug]\n"
          "               [--log-level error|warn|info|debug] [--log-format text|json]\n"
          "               [-b|--bridge NAME|none] [--body-idle-timeout SECONDS]\n"
          "               [--tls] [--tlsverify] [--tlscacert PEM] [--tlscert PEM] [--tlskey PEM]\n"
          "               [--web ADDRESS:PORT [--web-cert PEM --web-key PEM] [--web-root DIR]\n"
          "                [--web-session-ttl SECONDS]]\n"
          "               [--cluster etcd=URL[,URL...] --node-name N --advertise ADDR\n"
          "                [--cluster-token T] [--node-label K=V]... [--node-capacity "
          "cpus=N,memory=SIZE,disk=SIZE]\n"
          "                [--etcd-cacert F] [--etcd-cert F --etcd-key F] [--etcd-user "
          "USER:PASSWORD]\n"
          "                [--cluster-shared-dir DIR]]\n"
          "defaults: --data-root " VD_DEFAULT_DATA_ROOT " --exec-root " VD_DEFAULT_EXEC_ROOT
          " -H " VD_DEFAULT_HOST " --bridge " VD_DEFAULT_BRIDGE "\n");
}

static int parse_level(const char *s, vs_log_level *out, vs_error **err) {
  static const char *const names[] = {"error", "warn", "info", "debug"};
  for (size_t i = 0; i < ARRAY_SIZE(names); i++)
    if (!strcmp(s, names[i]) || (i == 1 && !strcmp(s, "warning"))) {
      *out = (vs_log_level)i;
      return 0;
    }
  return vs_error_set(err, EINVAL, "--log-level %s: expected error, warn, info or debug", s);
}

/* vessel-monitor lives next to vesseld (build/ or the install's bin directory). */
static char *monitor_path(void) {
  char self[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
  if (n <= 0)
    return vs_strdup("vessel-monitor");
  self[n] = 0;
  return vs_asprintf("%s/vessel-monitor", dirname(self));
}

static int parse_format(const char *s, vs_log_format *out, vs_error **err) {
  if (strcmp(s, "text") != 0 && strcmp(s, "json") != 0)
    return vs_error_set(err, EINVAL, "--log-format %s: expected text or json", s);
  *out = strcmp(s, "json") ? VS_LOG_FORMAT_TEXT : VS_LOG_FORMAT_JSON;
  return 0;
}

/* What the command line said, before daemon.json is merged in. */
typedef struct flags {
  const char *data_root, *exec_root, *level, *format;
  const char **hosts;
  size_t n_hosts;
  bool debug;
} flags;

/* One directive set both ways, as dockerd words it: "data-root: (from flag: A, from file: B)". */
static void add_conflict(char **list, const char *key, const char *flag, const char *file) {
  char *item = vs_asprintf("%s: (from flag: %s, from file: %s)", key, flag, file);
  char *next = *list ? vs_asprintf("%s, %s", *list, item) : vs_strdup(item);
  free(item);
  free(*list);
  *list = next;
}

static char *join_hosts(const char **hosts, size_t n) {
  char *s = vs_strdup("[");
  for (size_t i = 0; i < n; i++) {
    char *next = vs_asprintf("%s%s%s", s, i ? " " : "", hosts[i]);
    free(s);
    s = next;
  }
  char *out = vs_asprintf("%s]", s);
  free(s);
  return out;
}

/* daemon.json merged with the flags: a directive given both ways is an error, as in dockerd. */
static int merge_config(const char *path, flags *f, vd_config *cfg, vd_options *o, vs_error **err) {
  if (vd_config_read(path, cfg, err) < 0)
    return -1;
  char *conflicts = NULL;
  if (f->data_root && cfg->data_root)
    add_conflict(&conflicts, "data-root", f->data_root, cfg->data_root);
  if (f->exec_root && cfg->exec_root)
    add_conflict(&conflicts, "exec-root", f->exec_root, cfg->exec_root);
  if (f->level && cfg->log_level)
    add_conflict(&conflicts, "log-level", f->level, cfg->log_level);
  if (f->format && cfg->log_format)
    add_conflict(&conflicts, "log-format", f->format, cfg->log_format);
  if (f->debug && cfg->debug >= 0)
    add_conflict(&conflicts, "debug", "true", cfg->debug ? "true" : "false");
  if (o->tls && cfg->tls >= 0)
    add_conflict(&conflicts, "tls", "true", cfg->tls ? "true" : "false");
  if (o->tls_verify && cfg->tls_verify >= 0)
    add_conflict(&conflicts, "tlsverify", "true", cfg->tls_verify ? "true" : "false");
  if (o->tls_ca && cfg->tls_ca)
    add_conflict(&conflicts, "tlscacert", o->tls_ca, cfg->tls_ca);
  if (o->tls_cert && cfg->tls_cert)
    add_conflict(&conflicts, "tlscert", o->tls_cert, cfg->tls_cert);
  if (o->tls_key && cfg->tls_key)
    add_conflict(&conflicts, "tlskey", o->tls_key, cfg->tls_key);
  if (o->body_idle_timeout > 0 && cfg->body_idle_timeout > 0) {
    _cleanup_free_ char *a = vs_asprintf("%lld", o->body_idle_timeout);
    _cleanup_free_ char *b = vs_asprintf("%lld", cfg->body_idle_timeout);
    add_conflict(&conflicts, "body-idle-timeout", a, b);
  }
  if (f->n_hosts && cfg->n_hosts) {
    _cleanup_free_ char *a = join_hosts(f->hosts, f->n_hosts);
    _cleanup_free_ char *b = join_hosts(cfg->hosts, cfg->n_hosts);
    add_conflict(&conflicts, "hosts", a, b);
  }
  if (conflicts) {
    vs_error_set(err, EINVAL,
                 "configuration file %s: the following directives are specified both as a flag "
                 "and in the configuration file: %s",
                 path, conflicts);
    free(conflicts);
    return -1;
  }
  if (cfg->data_root)
    f->data_root = cfg->data_root;
  if (cfg->exec_root)
    f->exec_root = cfg->exec_root;
  if (cfg->log_level)
    f->level = cfg->log_level;
  if (cfg->log_format)
    f->format = cfg->log_format;
  if (cfg->debug > 0)
    f->debug = true;
  if (cfg->tls > 0)
    o->tls = true;
  if (cfg->tls_verify > 0)
    o->tls_verify = true;
  if (cfg->tls_ca)
    o->tls_ca = cfg->tls_ca;
  if (cfg->tls_cert)
    o->tls_cert = cfg->tls_cert;
  if (cfg->tls_key)
    o->tls_key = cfg->tls_key;
  if (cfg->n_hosts) {
    f->hosts = cfg->hosts;
    f->n_hosts = cfg->n_hosts;
  }
  o->default_ulimits = cfg->default_ulimits;
  if (cfg->body_idle_timeout > 0)
    o->body_idle_timeout = cfg->body_idle_timeout;
  return 0;
}

int main(int argc, char **argv) {
  static const struct option opts[] = {{"data-root", required_argument, NULL, 'd'},
                                       {"exec-root", required_argument, NULL, 'x'},
                                       {"host", required_argument, NULL, 'H'},
                                       {"log-level", required_argument, NULL, 'l'},
                                       {"log-format", required_argument, NULL, 'f'},
                                       {"config", required_argument, NULL, 'c'},
                                       {"debug", no_argument, NULL, 'D'},
                                       {"bridge", required_argument, NULL, 'b'},
                                       {"web", required_argument, NULL, 'W'},
                                       {"web-cert", required_argument, NULL, 'C'},
                                       {"web-key", required_argument, NULL, 'K'},
                                       {"web-root", required_argument, NULL, 'R'},
                                       {"web-session-ttl", required_argument, NULL, 'T'},
                                       {"tls", no_argument, NULL, 1},
                                       {"tlsverify", no_argument, NULL, 2},
                                       {"tlscacert", required_argument, NULL, 3},
                                       {"tlscert", required_argument, NULL, 4},
                                       {"tlskey", required_argument, NULL, 5},
                                       /* the cluster's (docs/cluster.md): long only, past
                                        * every character code */
                                       {"cluster", required_argument, NULL, 300},
                                       {"node-name", required_argument, NULL, 301},
                                       {"advertise", required_argument, NULL, 302},
                                       {"cluster-token", required_argument, NULL, 303},
                                       {"node-label", required_argument, NULL, 304},
                                       {"node-capacity", required_argument, NULL, 305},
                                       {"etcd-cacert", required_argument, NULL, 306},
                                       {"etcd-cert", required_argument, NULL, 307},
                                       {"etcd-key", required_argument, NULL, 308},
                                       {"etcd-user", required_argument, NULL, 309},
                                       {"cluster-shared-dir", required_argument, NULL, 310},
                                       {"body-idle-timeout", required_argument, NULL, 320},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
  vd_options o = {0};
  vd_config cfg = {0};
  const char **hosts = vs_malloc0(sizeof(char *) * (size_t)(argc + 1));
  const char **labels = vs_malloc0(sizeof(char *) * (size_t)(argc + 1));
  o.cluster.labels = labels;
  flags f = {.hosts = hosts};
  const char *config = NULL;
  vs_log_level level = VS_LOG_INFO;
  vs_log_format fmt = VS_LOG_FORMAT_TEXT;
  vs_error *err = NULL;
  int c;
  while ((c = getopt_long(argc, argv, "H:b:hD", opts, NULL)) != -1) {
    switch (c) {
    case 'd':
      f.data_root = optarg;
      break;
    case 'x':
      f.exec_root = optarg;
      break;
    case 'H':
      hosts[f.n_hosts++] = optarg;
      break;
    case 'b':
      o.bridge = optarg;
      break;
    case 'W':
      o.web = optarg;
      break;
    case 'C':
      o.web_cert = optarg;
      break;
    case 'K':
      o.web_key = optarg;
      break;
    case 'R':
      o.web_root = optarg;
      break;
    case 'T': {
      uint64_t ttl;
      if (vs_parse_u64(optarg, "--web-session-ttl", &ttl, &err) < 0)
        goto fail;
      if (ttl < 1 || ttl > 365ULL * 24 * 3600) {
        vs_error_set(&err, EINVAL, "--web-session-ttl %s: expected 1 to 31536000 seconds", optarg);
        goto fail;
      }
      o.web_session_ttl = (long long)ttl;
      break;
    }
    case 320: {
      uint64_t secs;
      if (vs_parse_u64(optarg, "--body-idle-timeout", &secs, &err) < 0)
        goto fail;
      if (secs < 1 || secs > VD_MAX_BODY_IDLE_TIMEOUT) {
        vs_error_set(&err, EINVAL, "--body-idle-timeout %s: expected 1 to %d seconds", optarg,
                     VD_MAX_BODY_IDLE_TIMEOUT);
        goto fail;
      }
      o.body_idle_timeout = (long long)secs;
      break;
    }
    case 1:
      o.tls = true;
      break;
    case 2:
      o.tls_verify = true;
      break;
    case 3:
      o.tls_ca = optarg;
      break;
    case 4:
      o.tls_cert = optarg;
      break;
    case 5:
      o.tls_key = optarg;
      break;
    case 'l':
      f.level = optarg;
      break;
    case 'f':
      f.format = optarg;
      break;
    case 'c':
      config = optarg;
      break;
    case 'D':
      f.debug = true;
      break;
    case 300:
      o.cluster.cluster = optarg;
      break;
    case 301:
      o.cluster.node_name = optarg;
      break;
    case 302:
      o.cluster.advertise = optarg;
      break;
    case 303:
      o.cluster.token = optarg;
      break;
    case 304:
      labels[o.cluster.n_labels++] = optarg;
      break;
    case 305:
      o.cluster.capacity = optarg;
      break;
    case 306:
      o.cluster.etcd_cacert = optarg;
      break;
    case 307:
      o.cluster.etcd_cert = optarg;
      break;
    case 308:
      o.cluster.etcd_key = optarg;
      break;
    case 309:
      o.cluster.etcd_user = optarg;
      break;
    case 310:
      o.cluster.shared_dir = optarg;
      break;
    case 'h':
      usage(stdout);
      free(hosts);
      free(labels);
      return 0;
    default:
      usage(stderr);
      free(hosts);
      free(labels);
      return 2;
    }
  }
  if (optind < argc) {
    vs_error_set(&err, EINVAL, "unexpected argument %s", argv[optind]);
    goto fail;
  }
  if (config && merge_config(config, &f, &cfg, &o, &err) < 0)
    goto fail;
  if ((f.level && parse_level(f.level, &level, &err) < 0) ||
      (f.format && parse_format(f.format, &fmt, &err) < 0))
    goto fail;
  if (f.debug)
    level = VS_LOG_DEBUG;
  o.data_root = f.data_root ? f.data_root : VD_DEFAULT_DATA_ROOT;
  o.exec_root = f.exec_root ? f.exec_root : VD_DEFAULT_EXEC_ROOT;
  if (f.n_hosts == 0) {
    hosts[0] = VD_DEFAULT_HOST;
    f.hosts = hosts;
    f.n_hosts = 1;
  }
  o.hosts = f.hosts;
  o.n_hosts = f.n_hosts;
  vs_log_configure("vesseld", level, fmt, 2);
  /* every connection and every running container's monitor (pidfd) holds a descriptor */
  struct rlimit nofile;
  if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
    nofile.rlim_cur = nofile.rlim_max;
    setrlimit(RLIMIT_NOFILE, &nofile);
  }
  char *mon = monitor_path();
  o.monitor_path = mon;
  vd_daemon *d = vd_daemon_new(&o, &err);
  int rc = d && vd_daemon_run(d, &err) == 0 ? 0 : 1;
  vd_daemon_free(d);
  free(mon);
  if (rc) {
    vs_error_print(err, "vesseld");
    vs_error_free(err);
  }
  vd_config_clear(&cfg);
  free(hosts);
  free(labels);
  return rc;
fail:
  vs_error_print(err, "vesseld");
  vs_error_free(err);
  vd_config_clear(&cfg);
  free(hosts);
  free(labels);
  return 2;
}
