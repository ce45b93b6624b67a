/* vessel daemon: vesseld, the long-running manager of containers and images with the Docker
 * Engine API, and vessel-monitor, the small process that holds one container.
 *
 * This is the module's one public header: the programs in src/cli/vesseld use only this.
 */
#ifndef VESSEL_DAEMON_H
#define VESSEL_DAEMON_H

#include "base/base.h"

#define VD_DEFAULT_DATA_ROOT "/var/lib/vessel"
#define VD_DEFAULT_EXEC_ROOT "/run/vessel"
#define VD_DEFAULT_HOST "unix:///run/vessel/vessel.sock"
#define VD_DEFAULT_BRIDGE "vessel0" /* the default network's bridge, as Docker's docker0 */
#define VD_API_VERSION "1.41"
#define VD_MIN_API_VERSION "1.12"
#define VD_MAX_BODY_IDLE_TIMEOUT 86400 /* seconds: --body-idle-timeout's largest value */

/* Joining a cluster (docs/cluster.md); all NULL/0 without --cluster. */
typedef struct vd_cluster_options {
  const char *cluster;   /* "etcd=URL[,URL...]" */
  const char *node_name; /* this node's name in the cluster */
  const char *advertise; /* the address other nodes reach this one at */
  const char *token;     /* the cluster token (the first node sets it) */
  const char **labels;   /* "key=value" */
  size_t n_labels;
  const char *capacity; /* "cpus=N,memory=SIZE,disk=SIZE" instead of the host's */
  const char *etcd_cacert, *etcd_cert, *etcd_key; /* TLS to etcd */
  const char *etcd_user;                          /* "USER:PASSWORD" for etcd's auth */
  const char *shared_dir; /* storage every node sees: the guests' disks (HA, migration) */
} vd_cluster_options;

typedef struct vd_options {
  const char *data_root; /* image store and container records (crash-safe) */
  const char *exec_root; /* runtime state, sockets: lost at reboot */
  const char **hosts;    /* "unix:///path" or "tcp://host:port" addresses to listen on */
  size_t n_hosts;
  const char *monitor_path; /* the vessel-monitor program */
  json_t *default_ulimits;  /* OCI rlimits every container gets unless it sets its own (or NULL) */
  const char *bridge;       /* the default network's bridge; "none": no default network */
  /* the web console (docs/web.md): an HTTPS listener when web is "ADDRESS:PORT" */
  const char *web, *web_cert, *web_key; /* no cert and key: a self-signed pair, made once */
  const char *web_root;                 /* static files; default <dir of vesseld>/web */
  long long web_session_ttl;            /* seconds of inactivity (0: 28800) */
  /* how long a request body may pause (no byte) before its connection is closed (0: 300 s) */
  long long body_idle_timeout;
  /* TLS on the tcp:// hosts, as dockerd's --tls, --tlsverify, --tlscacert, --tlscert, --tlskey */
  bool tls, tls_verify;
  const char *tls_ca, *tls_cert, *tls_key;
  vd_cluster_options cluster;
} vd_options;

/* daemon.json, as --config reads it: each field is NULL (or -1) when the file does not set it.
 * Keys vesseld does not know are an error naming them, as in dockerd. */
typedef struct vd_config {
  json_t *root;
  const char *data_root, *exec_root, *log_level, *log_format;
  const char **hosts; /* NULL-terminated */
  size_t n_hosts;
  int debug, live_restore; /* -1: not set */
  int tls, tls_verify;     /* -1: not set */
  const char *tls_ca, *tls_cert, *tls_key;
  json_t *default_ulimits;     /* checked, as OCI rlimits: [{"type", "soft", "hard"}] */
  long long body_idle_timeout; /* seconds, vesseld's own key; -1: not set */
} vd_config;

int vd_config_read(const char *path, vd_config *c, vs_error **err);
void vd_config_clear(vd_config *c);

typedef struct vd_daemon vd_daemon;

/* Open the store, listen on every host, find the containers a previous run left. */
vd_daemon *vd_daemon_new(const vd_options *o, vs_error **err);
/* Serve until SIGTERM or SIGINT; then close the listeners (containers keep running). */
int vd_daemon_run(vd_daemon *d, vs_error **err);
void vd_daemon_free(vd_daemon *d);

/* What vesseld hands the monitor of one container (see monitor.c). */
typedef struct vd_monitor_options {
  const char *id;
  const char *bundle;       /* the container directory with config.json */
  const char *runtime_root; /* ctr's state root (under the exec root) */
  const char *log_path;     /* json-file log, appended to */
  int ready_fd;             /* gets "ok PID\n" or an error message, then is closed */
  bool tty;                 /* the process gets a terminal (config.json says so too) */
  bool open_stdin;          /* keep the container's stdin open for attach clients */
  int64_t log_max_size;     /* rotate the log past this many bytes (0 or -1: never) */
  unsigned log_max_files;   /* the log and its rotated files (0 or 1: the log is emptied) */
  const char *log_attrs;    /* a JSON object every log entry carries as "attrs", or NULL */
  bool log_compress;        /* gzip rotated log files */
} vd_monitor_options;

/* `vessel-monitor --exec FILE`: run the OCI process in FILE (which is removed) inside the
 * running container `id` with our stdio, and return its exit status (0..255). */
int vd_exec_helper_run(const char *runtime_root, const char *id, const char *process_file,
                       vs_error **err);

/* The monitor process: create and start the container with src/ctr, copy its stdout and stderr
 * into the json-file log, record its exit status in <bundle>/exit.json and remove its runtime
 * state. Returns when the container has exited. */
int vd_monitor_run(const vd_monitor_options *o, vs_error **err);

#endif
