/* Private to src/daemon (and its unit tests): the daemon's context, connections, calls and the
 * container table. Layers, bottom up:
 *   http.c                  request parser (pure)
 *   util.c                  small helpers
 *   server.c                the event loop, connections, responses, worker pool
 *   router.c                API paths and versions -> handlers
 *   system.c images.c       handlers per object kind
 *   containers.c streams.c
 *   store.c                 container records under the data root, recovery at start
 *   supervisor.c spec.c     monitors, exits, OCI specs
 *   monitor.c               the vessel-monitor process (no link to the rest)
 */
#ifndef VESSEL_DAEMON_INTERNAL_H
#define VESSEL_DAEMON_INTERNAL_H

#include "daemon/daemon.h"
#include "daemon/http.h"
#include "ctr/ctr.h"
#include "image/image.h"
#include "net/net.h"
#include "cluster/cluster.h"

#include <pthread.h>
#include <stdbool.h>

#define VD_WORKERS 4
#define VD_BODY_IDLE_TIMEOUT_S 300     /* the default of vd_options.body_idle_timeout */
#define VD_MAX_JSON_BODY (4U << 20)    /* create, and every other JSON request */
#define VD_MAX_LOAD_BODY (64ULL << 30) /* docker load: an image archive */
#define VD_MAX_CONNS 1024
#define VD_EVENTS_KEPT 1024
#define VD_OUT_HIGH_WATER (1U << 20) /* stop reading a log while this much is unsent */
#define VD_DETACH_KEYS_MAX 16

/* ---- util.c */

/* JSON string contents for arbitrary bytes: invalid UTF-8 becomes U+FFFD as Go's encoder does. */
char *vd_json_escape_bytes(const char *data, size_t len);
/* /proc/<pid>/stat starttime: tells a process from a later one with the same pid (0 if gone). */
unsigned long long vd_pid_start_time(pid_t pid);
/* RFC 3339 UTC time now, nanoseconds. */
char *vd_now(void);
/* 64 random hex digits. */
char *vd_random_id(void);
/* The values of one key of a filters query: Docker sends {"name": ["a"]} or {"name": {"a":
 * true}}. A new array. */
json_t *vd_filter_values(json_t *filters, const char *key);
/* A label filter, "KEY" or "KEY=VALUE", against an object of labels. */
bool vd_label_match(json_t *labels, const char *want);

/* ---- epoll sources: every registered fd points at one of these */

typedef enum {
  VD_SRC_LISTENER,
  VD_SRC_CONN,
  VD_SRC_SIGNAL,
  VD_SRC_DONE,           /* eventfd: worker jobs finished */
  VD_SRC_INOTIFY,        /* container directories: the logs grew, an exit was recorded */
  VD_SRC_MONITOR,        /* pidfd of a container's monitor */
  VD_SRC_RESTART,        /* timerfd of a container waiting to be restarted */
  VD_SRC_VM_RESTART,     /* timerfd of a VM waiting to be restarted (vms.c) */
  VD_SRC_ATTACH,         /* an attach connection's socket to the container's monitor (stdin) */
  VD_SRC_EXEC_PID,       /* pidfd of an exec's helper */
  VD_SRC_EXEC_OUT,       /* an exec's stdout or stderr pipe */
  VD_SRC_EXEC_IN,        /* an exec's stdin pipe */
  VD_SRC_EVENTS_TIMER,   /* an events subscriber's until */
  VD_SRC_NET,            /* a network's DHCP or DNS socket */
  VD_SRC_HEALTH,         /* timerfd of a container's health check: next probe or its timeout */
  VD_SRC_VM,             /* pidfd of a VM's vessel-vmm (vms.c) */
  VD_SRC_STATS_TIMER,    /* a streamed stats connection's next sample */
  VD_SRC_FRONT_LISTENER, /* a TLS listener: web console or API over TLS (web.c) */
  VD_SRC_FRONT,          /* a front connection's client socket or its internal one (web.c) */
  VD_SRC_BODY_PIPE,      /* the pipe a streamed request body goes into (server.c) */
} vd_src_kind;

typedef struct vd_src {
  vd_src_kind kind;
  void *owner;
} vd_src;

typedef struct vd_container vd_container;
typedef struct vd_conn vd_conn;
typedef struct vd_call vd_call;
typedef struct vd_job vd_job;
typedef struct vd_exec vd_exec;
typedef struct vd_net vd_net;

/* ---- containers */

typedef enum {
  VD_CTR_CREATED,
  VD_CTR_RUNNING,
  VD_CTR_EXITED,
} vd_ctr_state;

struct vd_container {
  char id[65];
  char *name;  /* "/name" as Docker keeps it */
  char *dir;   /* <data-root>/containers/<id> */
  json_t *rec; /* the record (container.v1.json): Config, HostConfig, Created, Image... */
  /* status, under d->lock */
  vd_ctr_state state;
  bool starting, stopping, removing, removed;
  bool paused;             /* its cgroup is frozen */
  bool monitor_lost;       /* its monitor died without recording an exit */
  bool exit_settling;      /* its exit is seen, its endpoints not yet gone: not yet stopped for a
                            * waiter (supervisor.c reports the exit once they are) */
  unsigned exits_reported; /* exits whose die event went out (d->exit_cond) */
  /* restart policy */
  bool restarting;  /* waiting for its restart timer */
  bool manual_stop; /* stopped or killed through the API: "always" does not bring it back */
  int restart_count;
  int restart_delay_ms; /* the next back-off */
  int timerfd;
  vd_src timer_src;
  pid_t monitor_pid, pid;
  unsigned long long monitor_start;
  int exit_code;
  char *started_at, *finished_at, *error;
  json_t *net;      /* running: {"Networks", "Ports"} as inspect shows them (networks.c) */
  unsigned net_gen; /* under the networks' lock: bumped by every vd_net_setup */
  unsigned exits;   /* how many exits vesseld has seen: waiters for the next one compare */
  int refs;         /* the table holds one; jobs hold one while they run */
  /* loop thread only */
  int pidfd;
  pid_t watched_pid; /* the monitor pidfd is of */
  vd_src pid_src;
  int watch;        /* inotify watch descriptor of dir, -1 if none */
  vd_conn *streams; /* connections following this container (logs, attach, wait) */
  /* health check: State.Health (under d->lock, changed on the loop); the timer and the running
   * probe's exec id are the loop's */
  json_t *health;
  int health_timer;
  vd_src health_src;
  char *probe_exec;
  long long probe_started; /* realtime ns */
  vd_container *next_dead; /* removed, its table reference dropped after the loop iteration */
};

/* ---- connections and calls */

typedef enum {
  VD_CONN_HEAD,    /* reading a request head */
  VD_CONN_BODY,    /* reading its body */
  VD_CONN_BUSY,    /* a worker handles the request */
  VD_CONN_STREAM,  /* a streamed response (logs -f, wait, attach) */
  VD_CONN_CLOSING, /* send what is queued, then close */
} vd_conn_state;

typedef enum {
  VD_STREAM_NONE,
  VD_STREAM_LOGS,   /* logs, follow or not */
  VD_STREAM_ATTACH, /* hijacked attach: follows until the next exit */
  VD_STREAM_WAIT,   /* wait: one JSON object at the next exit / removal */
  VD_STREAM_EXEC,   /* hijacked exec start: the helper's output until it ends */
  VD_STREAM_EVENTS, /* /events: JSON lines as things happen */
  VD_STREAM_STATS,  /* stats: one JSON object a second */
} vd_stream_kind;

typedef struct vd_route vd_route;

struct vd_conn {
  vd_src src;
  vd_src mon_src;
  vd_src events_timer_src;
  vd_daemon *d;
  vd_conn *prev, *next; /* all connections */
  char *in;
  size_t in_len, in_cap;
  char *out;
  size_t out_len, out_off, out_cap;
  /* the request being read */
  http_request req;
  http_body body;
  vd_call *call;
  /* streams */
  vd_container *ctr;
  vd_conn *stream_next;
  char *log_partial; /* an incomplete last line of the log */
  size_t log_partial_len;
  char *wait_condition;          /* "not-running", "next-exit", "removed" */
  char *logs_since, *logs_until; /* RFC 3339 bounds of logs entries, NULL if none */
  char *mon_out;                 /* stdin frames for the monitor's attach.sock */
  size_t mon_out_len;
  vd_exec *exec;      /* VD_STREAM_EXEC */
  uint64_t file_left; /* a file body being sent */
  uint64_t event_seq; /* VD_STREAM_EVENTS */
  json_t *event_filters;
  long long events_since, events_until;
  vd_src stats_src;        /* VD_STREAM_STATS: its timerfd */
  vd_container *stats_ctr; /* referenced */
  json_t *stats_prev_cpu;  /* the last sample's cpu_stats: the next one's precpu_stats */
  char *stats_prev_read;
  int stats_timer;
  unsigned long long host_prev_cpu[2]; /* host stats: busy and total ticks of the last sample */
  struct vd_vm *stats_vm;              /* a VM's stats (vm_api.c) */
  bool stats_job;                      /* a worker samples the VM: the connection waits for it */
  int fd;
  vd_conn_state state;
  vd_stream_kind stream;
  int log_fd;
  int mon_fd;
  int file_fd;
  int events_timer;
  bool peer_eof; /* the client shut its side (hijacked streams keep going) */
  bool tunneled; /* it came from another node through a tunnel: never carried on again */
  bool hung_up;  /* the client is gone both ways: the socket left the epoll set (server.c) */
  bool dead;     /* closed: freed at the end of the loop iteration or when its worker returns */
  bool chunked;  /* response body in chunked encoding */
  bool out_stdout, out_stderr, follow, timestamps, details;
  bool ctr_ended; /* the container exited or went away: drain the log, then end */
  bool raw;       /* TTY: no multiplexing headers */
  /* attach with stdin: what the client sends goes to the monitor's attach.sock */
  bool attach_stdin, stdin_once, stdin_closed;
  /* detach keys of a TTY attach or exec: a prefix seen so far is withheld from the container */
  unsigned char detach_keys[VD_DETACH_KEYS_MAX];
  size_t n_detach_keys, detach_matched;
  bool detach_seen; /* the whole sequence came: the client leaves, the container runs on */
  /* a body streamed to its worker (VD_RUN_WORKER_STREAMED): the pipe's write end, the decoded bytes
   * it has not taken yet, and whether the worker has the call while the body still comes */
  int pipe_fd;
  vd_src pipe_src;
  char *pipe_buf;
  size_t pipe_len, pipe_off;
  bool pipe_polled;    /* pipe_fd is in the epoll set, waiting to be writable */
  bool body_in_worker; /* from the head until the body's end */
  /* while a body is read (VD_CONN_BODY): when its last bytes came, or the loop last waited for
   * the worker's pipe (the client is not idle then), on CLOCK_MONOTONIC */
  long long body_active_ns;
};

typedef enum {
  VD_RUN_LOOP,   /* quick: runs on the event loop */
  VD_RUN_WORKER, /* may block: runs on a worker thread */
  /* a worker from the moment the head is read, which reads the body from a pipe (body_fd) as
   * it arrives (docker build); the handler need not read all of it */
  VD_RUN_WORKER_STREAMED,
} vd_run_mode;

struct vd_route {
  const char *method;
  const char *pattern; /* "/containers/{}/start": {} is one segment, {*} any non-empty text */
  void (*handler)(vd_call *call);
  vd_run_mode mode;
  bool body_to_file; /* the body is spooled to a temporary file (docker load) */
};

struct vd_call {
  vd_daemon *d;
  vd_conn *conn; /* NULL once the client went away (worker calls) */
  const http_request *req;
  const vd_route *route;
  char *arg;  /* what {} or {*} matched, decoded */
  char *body; /* JSON bodies, NUL-terminated */
  size_t body_len;
  int body_fd; /* spooled bodies, or the read end of a streamed one (VD_RUN_WORKER_STREAMED) */
  char *body_path;
  /* the answer */
  int status;
  json_t *json; /* JSON body */
  char *text;   /* or a ready body with content_type */
  int file_fd;  /* or a file body of file_size bytes (sent with sendfile) */
  uint64_t file_size;
  const char *content_type;
  const char *extra_headers;    /* "Name: value\r\n" lines */
  char *headers_owned;          /* what extra_headers points to when it was made for this call */
  bool streamed;                /* the handler took over the connection */
  void (*deferred)(vd_call *c); /* a loop handler handed the call to a worker (vd_call_defer) */
  /* a progress stream a worker writes as it goes (pull, push), sent by the loop */
  char *posted; /* under d->qlock: written, not yet handed to the connection */
  size_t posted_len;
  bool post_queued; /* under d->qlock: a delivery is on the done list */
  bool post_begun;  /* worker: something was posted, errors go into the stream now */
  bool stream_open; /* loop: the chunked head went out */
  /* a worker handler's container: referenced, and what the loop does with it afterwards */
  vd_container *ctr;
  enum { VD_AFTER_NONE, VD_AFTER_WATCH, VD_AFTER_REMOVED, VD_AFTER_START_FAILED } after;
  bool internal; /* made by the daemon itself (cluster_ctrs.c's reconciler), not by a client */
};

/* From a worker: append to the call's streamed answer (200, chunked, application/json); the loop
 * sends it as soon as it can, while the handler goes on. */
void vd_call_post(vd_call *c, const char *data, size_t len);
/* Answer helpers for handlers. */
void vd_call_json(vd_call *c, int status, json_t *json);
void vd_call_status(vd_call *c, int status);
void vd_call_error(vd_call *c, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* An error from below: 404 when errnum is ENOENT, 409 for EEXIST/EBUSY, 400 for EINVAL, else
 * 500, with e's message. */
void vd_call_fail(vd_call *c, const vs_error *e);
/* A JSON request body as an object: NULL after answering 400 naming the problem. */
json_t *vd_call_body_object(vd_call *c);
/* The query's "filters" (*out NULL when none), its keys among known: 0, or -1 after answering
 * 400 ("invalid filter 'x'"). */
int vd_call_filters(vd_call *c, const char *const *known, size_t n_known, json_t **out);

/* containers.c: the container the path names, referenced; answers 404 itself and returns NULL.
 * The running variant also holds it as c->ctr and answers 409 when it is not running. */
vd_container *vd_call_container(vd_call *c);
vd_container *vd_call_running_container(vd_call *c);
/* The h and w query parameters of a resize: -1 after answering 400. */
int vd_call_terminal_size(vd_call *c, uint64_t *h, uint64_t *w);

/* ---- jobs for the workers */

struct vd_job {
  vd_job *next;
  void (*run)(vd_job *job);  /* on a worker */
  void (*done)(vd_job *job); /* back on the loop; frees the job */
  vd_daemon *d;
  vd_call *call;
  vd_container *ctr;
  int result;
};

void vd_job_submit(vd_daemon *d, vd_job *job);
/* A job about container c (whose reference the caller took for the job; done drops it). */
void vd_job_submit_ctr(vd_daemon *d, vd_container *c, void (*run)(vd_job *),
                       void (*done)(vd_job *));

/* ---- the daemon */

/* One of the cluster's threads: joined at the end only if it was started. */
typedef struct vd_cluster_thread {
  pthread_t id;
  bool started;
} vd_cluster_thread;

/* cluster.c: this node's membership (everything zero when not in a cluster) */
typedef struct vd_cluster {
  vc_etcd *etcd;
  vc_etcd *lease_etcd; /* the lease keeper's own client (cluster.c) */
  char **endpoints;
  size_t n_endpoints;
  char *node_name, *advertise, *token;
  json_t *labels;             /* given at start (--node-label) */
  int64_t cpus, memory, disk; /* --node-capacity, 0: the host's */
  double cpu_overcommit, memory_overcommit;
  int64_t lease; /* the keeper replaces it (an expired lease): read it with vd_cluster_lease */
  pthread_mutex_t lock; /* stop; the cond wakes the threads */
  pthread_cond_t cond;
  vd_cluster_thread keeper, scheduler, reconciler, watcher;
  /* cluster_guests.c: one watch of the guests' records for the whole node, kept open (a watch
   * made anew from a past revision waits for etcd's 100 ms sync of lagging watchers) */
  pthread_cond_t guests_cond; /* with lock: a change of the records */
  int64_t guests_revision;    /* the last the watch saw */
  /* --cluster-shared-dir: the guests' disks under <dir>/disks/<random> (HA, migration) and
   * console histories under <dir>/migrations */
  char *shared_dir;
  int64_t renewed_ms;   /* CLOCK_MONOTONIC ms when the last renewal that etcd confirmed was sent
                         * (atomic): the lease ends no earlier than the TTL after it */
  vd_cluster_thread ha; /* cluster_ha.c: failover and fencing */
  vd_cluster_thread migrator; /* cluster_migrate.c: live migration between nodes */
  vd_cluster_thread netter;   /* cluster_net.c */
  vd_cluster_thread imager;   /* cluster_images.c: this node's images recorded in etcd */
  pthread_cond_t images_cond; /* with lock: an image changed here (images_dirty) */
  /* cluster_cache.c: the keys under /vessel/ as the watch delivered them ({key: {"v", "m",
   * "c"}}), with lock; cache_ok once loaded */
  json_t *cache;
  size_t tombstones;           /* keys removed, kept as such in the copy for a while */
  pthread_mutex_t reload_lock; /* one reload at a time (a later one may forget tombstones) */
  int64_t reload_revision;     /* with lock: the store's revision at the last reload */
  int64_t leader_revision;     /* the scheduler's: the leader key's revision while it leads */
  int64_t last_campaign_ms;
  int fence_fd; /* to the fencer process (when fencer_on): the deadline and the VMMs to kill */
  /* the flags, together (the struct's padding) */
  bool enabled;
  volatile bool stop;                   /* written under lock; watches poll it */
  bool schedule_dirty, reconcile_dirty; /* with lock: a change for the scheduler, the reconciler */
  bool fenced; /* (atomic) no renewal for too long: guests of the cluster are killed and none
                * starts here until the lease is renewed */
  bool fencer_on;
  bool migrate_dirty; /* with lock: a change of the records for the migrator */
  bool net_dirty;
  bool images_dirty;
  vd_cluster_thread tunneler; /* cluster_tunnel.c: connects to the nodes that ask for this node's
                               * guests */
  int tunnels_active;         /* with lock: requests this node carries to another (their threads) */
  json_t *tunnel_execs; /* with lock: execs made on other nodes through this one, {id: node} */
  bool cache_ok;
} vd_cluster;

/* seconds: a node that stops renewing is down after at most this */
#define VD_CLUSTER_LEASE_TTL 10

int vd_cluster_configure(vd_cluster *cl, const vd_cluster_options *o, vs_error **err);
/* Wait for etcd (logging so, until SIGTERM/SIGINT), check the cluster token, register. */
int vd_cluster_join(vd_daemon *d, vs_error **err);
/* Start the lease keeper, the scheduler and the reconciler (after the workers). */
int vd_cluster_start(vd_daemon *d, vs_error **err);
int vd_cluster_start_guests(vd_daemon *d, vs_error **err); /* cluster_guests.c */
/* Start fn(d) on t; the error says "cluster: starting <what>". */
int vd_cluster_thread_start(vd_daemon *d, vd_cluster_thread *t, void *(*fn)(void *),
                            const char *what, vs_error **err);
/* Join t if it was started. */
void vd_cluster_thread_join(vd_cluster_thread *t);
/* A VM of the cluster was started or stopped here by a request: its record follows (soon). */
void vd_cluster_note_local_change(vd_daemon *d);
void vd_cluster_free(vd_daemon *d);
json_t *vd_cluster_nodes(vd_daemon *d, vs_error **err);
/* For an API handler: true when this vesseld is in a cluster, else answers 503 saying how to
 * join one. */
bool vd_cluster_required(vd_call *c);
/* For an API handler: the keys under prefix read into *r (true), or the call answered with
 * 503 (not in a cluster, or etcd failed: false). */
bool vd_cluster_read_prefix(vd_call *c, const char *prefix, vc_range *r);
/* The same from the watch's copy (the scheduler); without Guests and Allocated unless asked. */
json_t *vd_cluster_nodes_cached(vd_daemon *d, bool with_guests, vs_error **err);
/* cluster_pools.c: pools of the cluster, /vessel/pools/NAME */
#define VD_POOLS_PREFIX "/vessel/pools/"
/* {name: {"Pool": the pool, "Rev": its revision}} of a range of VD_POOLS_PREFIX */
json_t *vd_cluster_pools_of(const vc_range *r);
/* Admission of a guest's record against its pool (none: admitted): the request to place (the
 * pool's NodeSelector added; a new reference), or NULL with *reason (malloc'd). placed: every
 * guest placed so far; *pool_rev: the pool's revision, the guard of the placement's write. */
json_t *vd_cluster_pool_admit(const json_t *pools, const json_t *nodes, const json_t *placed,
                              const json_t *rec, int64_t *pool_rev, char **reason);
/* A pool create that asks for a pool of the cluster ("Cluster": true or a NodeSelector). */
bool vd_cluster_pool_wanted(const json_t *body);
void vd_cluster_pool_create(vd_call *c, json_t *body);
/* The pools of the cluster as the API shows them (only: that one), from the watch's copy. */
json_t *vd_cluster_pools_view(vd_daemon *d, const char *only);
/* POST .../update of a pool of the cluster (its NodeSelector, its ratios), refused when what its
 * guests request would no longer fit; false when it is a pool of this node (or neither). */
bool vd_cluster_pool_update(vd_call *c, const json_t *body);
/* DELETE of a pool of the cluster; false when it is not one (a pool of this node). */
bool vd_cluster_pool_delete(vd_call *c);
/* A VM create's Pool that names a pool of the cluster: moved from body into the guest record. */
int vd_cluster_take_pool(vd_cluster *cl, json_t *body, json_t *guest, vs_error **err);
/* cluster_images.c: the images of each node, /vessel/images/NODE (docs/cluster.md) */
int vd_cluster_start_images(vd_daemon *d, vs_error **err);
/* An image was pulled, loaded, tagged, removed or imported here: record the stores again now. */
void vd_cluster_images_kick(vd_daemon *d);
/* The record of a node that is removed from the cluster (*deleted: 1 if it had one). */
int vd_cluster_images_forget(vd_cluster *cl, const char *node, int64_t *deleted, vs_error **err);
void vd_h_cluster_images(vd_call *c);
/* {"KIND REFERENCE": [nodes]} from the watch's copy (NULL while it is not loaded); the nodes of
 * that index holding the image a guest's record asks for (Spec.Image; NULL: none or unknown). */
json_t *vd_cluster_image_index(vd_cluster *cl);
json_t *vd_cluster_image_nodes(const json_t *index, const json_t *rec);
/* cluster_cache.c: the copy of /vessel/ kept by the watch */
void vd_cache_init(vd_cluster *cl);
void vd_cache_free(vd_cluster *cl);
/* Apply a watch message's events (cl->lock held). */
void vd_cache_apply_locked(vd_cluster *cl, const vc_watch_msg *m);
/* A write this node made and etcd confirmed at revision: in the copy at once. */
void vd_cache_note_put(vd_cluster *cl, const char *key, const char *value, size_t len,
                       int64_t revision);
/* Read everything under /vessel/ from etcd into the copy (at start, after a compaction, when a
 * write found the copy stale); *revision: the store's at the read. */
int vd_cache_reload(vd_cluster *cl, int64_t *revision, vs_error **err);
/* The keys under prefix as a range reply would give them; false while the copy is not loaded. */
bool vd_cache_range(vd_cluster *cl, const char *prefix, vc_range *out);
/* One key's JSON object and revision; NULL when absent (or not loaded: see cache_ok). */
json_t *vd_cache_get(vd_cluster *cl, const char *key, int64_t *revision);
int vd_cluster_update_spec(vd_daemon *d, const char *name, int (*change)(json_t *spec, void *arg),
                           void *arg, vs_error **err);
/* cluster_ha.c: --cluster-shared-dir, checked */
int vd_ha_configure(vd_cluster *cl, const vd_cluster_options *o, vs_error **err);
/* cluster.c: the node's lease now (the keeper thread may be replacing it). */
int64_t vd_cluster_lease(const vd_cluster *cl);
/* The keeper's news: a renewal (or a registration) sent at sent_ms succeeded. */
void vd_ha_renewed(vd_cluster *cl, int64_t sent_ms);
/* The deadline and the running (and starting) VMMs and containers of the cluster's guests, to the
 * fencer process now, not at the watchdog's next look (200 ms): a vesseld that dies right after
 * a start leaves no guest unfenced. Nothing outside a cluster. */
void vd_ha_fencer_update(vd_daemon *d);
int64_t vd_ha_now_ms(void); /* CLOCK_MONOTONIC */
/* The fencing watchdog (and the restart of this node's own guests once it holds its lease). */
int vd_ha_start(vd_daemon *d, vs_error **err);
void vd_ha_stop(vd_daemon *d); /* after cl->stop is set */
/* The scheduler's part of failover: the names of the ready nodes ({name: true}); whether a
 * record is to be placed again (its node is down); that record made ready for vc_place (the
 * node it ran on goes into Failover) and, once placed, marked to start there. */
json_t *vd_ha_ready_nodes(const json_t *nodes);
bool vd_ha_failover_wanted(const json_t *ready, const json_t *rec);
void vd_ha_failover_prepare(json_t *rec);
void vd_ha_failover_placed(json_t *rec, const char *node);
/* What the guest's record keeps of the VM made for it (DiskDir), for a failover to adopt. */
void vd_ha_note_made(json_t *next, const json_t *vm_rec);
void vd_h_nodes_list(vd_call *c);
void vd_h_cluster_guests(vd_call *c); /* cluster_guests.c */
void vd_h_node_inspect(vd_call *c);
void vd_h_node_cordon(vd_call *c);
void vd_h_node_uncordon(vd_call *c);
void vd_h_node_drain(vd_call *c);
void vd_h_node_labels(vd_call *c);
void vd_h_node_delete(vd_call *c);
/* cluster_guests.c: a guest's record under /vessel/guests/NAME, shared by the scheduler, the
 * reconciler, the migrator and HA. The record a range entry holds (NULL when it is not a JSON
 * object); one record and its revision (NULL without an error when there is none, with one when
 * it is no JSON object); rec written over the record at revision rev (0: only if there is none),
 * *ok false when someone wrote first; a wait of ms on the cluster's condition, true when the
 * cluster stops. */
json_t *vd_guest_record_of(const vc_kv *kv);
json_t *vd_guest_record_get(vd_cluster *cl, const char *name, int64_t *rev, vs_error **err);
int vd_guest_record_put(vd_cluster *cl, const char *name, json_t *rec, int64_t rev, bool *ok,
                        vs_error **err);
bool vd_cluster_sleep(vd_cluster *cl, int ms);
/* The placement fields of a create (Labels, NodeSelector, AntiAffinity, Affinity, Node, Start)
 * taken out of body into guest, checked; with keep_labels the Labels stay in body too (a
 * container's labels are its Docker labels). */
int vd_cluster_take_placement(json_t *body, json_t *guest, bool keep_labels, vs_error **err);
/* Wait for the record to leave pending and its node to make the guest (kind: "VM",
 * "container", for the messages); answers the call: 201 {Id, Name, Node}, 409, 500, 504. */
void vd_cluster_wait_created(vd_call *c, const char *name, const char *kind);
/* cluster_ha.c: whether this node is fenced (or about to be): no guest of the cluster starts */
bool vd_ha_fenced(const vd_cluster *cl);
/* Claim a guest's record for this node before restarting it (a compare-and-swap): true when
 * etcd still places it here, running, and no leader moved it first. */
bool vd_ha_claim_own(vd_cluster *cl, const char *name, vs_error **err);
/* cluster_ctrs.c: containers as guests of the cluster (docs/cluster.md). A container the node
 * made for the cluster carries this label (its value: the node). */
#define VD_CCTR_NODE_LABEL "vessel.cluster.node"
bool vd_cctr_of_cluster_locked(const vd_daemon *d, const vd_container *c); /* d->lock held */
/* false with *err while this node is fenced and c is the cluster's */
bool vd_cctr_start_allowed(vd_daemon *d, vd_container *c, vs_error **err);
/* The reconciler's part: the record of a container placed on this node (made, or its phase
 * written back), and the containers of the cluster here that mine ({name: record}) lacks
 * (removed). */
void vd_cctr_reconcile(vd_daemon *d, json_t *rec, int64_t rev);
void vd_cctr_remove_orphans(vd_daemon *d, const json_t *mine);
/* A client removed c on this node (docker rm): the cluster's record of it goes too, or the
 * reconciler would make it again. Only a record that still places this very container here. */
void vd_cctr_forget(vd_daemon *d, vd_container *c);
/* Fencing: SIGKILL to the running containers of the cluster (how many); pidfds of them for the
 * fencer (the caller closes them); the restart of those etcd still places here. */
int vd_cctr_fence_kill(vd_daemon *d);
size_t vd_cctr_pidfds(vd_daemon *d, int *fds, size_t max);
int vd_cctr_restart_own(vd_daemon *d);
void vd_h_cluster_ctr_create(vd_call *c);
void vd_h_cluster_ctr_stop(vd_call *c);
void vd_h_cluster_ctr_start(vd_call *c);
void vd_h_cluster_ctr_logs(vd_call *c);
void vd_h_cluster_ctr_delete(vd_call *c);
/* server.c: what a call made inside the daemon leaves for the loop (call->after), done there;
 * takes the call's reference of ctr. */
void vd_loop_after_call(vd_daemon *d, vd_container *ctr, int after);
/* daemon.c: a job onto the event loop's done list (its done() runs on the loop), waking it. */
void vd_loop_done(vd_daemon *d, vd_job *job);
/* cluster_migrate.c: live migration between nodes, drain (docs/cluster.md) */
int vd_cluster_start_migrator(vd_daemon *d, vs_error **err);
/* A socket listening on --advertise's address at a port of the kernel's choice ("HOST:PORT" or
 * "[V6]:PORT" in *address); -1 and *err. */
int vd_cluster_listen_advertised(const char *host, char **address, vs_error **err);
/* cluster_tunnel.c: requests for a guest of another node carried there (docs/cluster.md) */
int vd_cluster_start_tunnels(vd_daemon *d, vs_error **err);
/* On the loop, once the call's body is read: 0 when this node serves it; 1 when it went to the
 * guest's node (the connection is gone from the loop, the call freed); 2 when answered in the
 * call (the node is down). */
int vd_tunnel_take(vd_conn *c, vd_call *call);
void vd_tunnels_wait(vd_cluster *cl); /* after cl->stop: until the tunnels' threads ended */
/* Whether the record's guest is on its way to node (its VM there must stay). */
bool vd_cluster_migrating_to(const json_t *rec, const char *node);
/* Whether the record's guest has a migration under way (one sent must be left to finish). */
bool vd_cluster_migration_in_progress(const json_t *rec);
/* The fields a node adds to the record of a VM it makes for the guest record rec: Cluster; with
 * shared storage a DiskDir, a new <dir>/disks/<random> or, when rec has one already (a failover),
 * that one with DiskAdopt (an error when it is not one of this node's shared directory). */
json_t *vd_cluster_guest_extra(const vd_cluster *cl, const json_t *rec, vs_error **err);
/* Whether dir is a VM's disk directory in this node's shared directory (what a removal may
 * delete there). */
bool vd_cluster_owns_disk_dir(const vd_cluster *cl, const char *dir);
void vd_h_vm_migrate(vd_call *c);
/* cluster_net.c: networks across the nodes (docs/cluster.md, "Networks across hosts"). A
 * network made while in a cluster is the cluster's: its record in etcd (subnet, gateway, VNI,
 * MTU), which a thread of every node makes on that node (the bridge and a VXLAN device that
 * floods to the other nodes); addresses are claimed in etcd, so no two nodes hand out one. */
int vd_cluster_start_networks(vd_daemon *d, vs_error **err);
/* The overlay's MTU: the MTU of the interface with this node's --advertise address, minus
 * the VXLAN overhead. */
int vd_cnet_overlay_mtu(vd_daemon *d, unsigned *mtu, vs_error **err);
/* Write a new network's record ({Name, Id, Subnet, Gateway, Mtu, ...}: a VNI is added) by a
 * create-only transaction: EEXIST when the cluster has one of that name. */
int vd_cnet_publish(vd_daemon *d, json_t *rec, int64_t *revision, vs_error **err);
/* Remove the network's record and its address claims: EBUSY while another node's guests hold
 * addresses on it. */
int vd_cnet_unpublish(vd_daemon *d, const char *network, vs_error **err);
/* An address on the network for the endpoint id (its names for the other nodes' DNS): the one
 * its claim holds already (taken over by this node: a migrated or failed-over VM), want, or the
 * lowest unclaimed one; claimed by a create-only transaction. */
int vd_cnet_claim(vd_daemon *d, const char *network, const char *id, const char *want,
                  const char *const *names, size_t n_names, char ip[INET_ADDRSTRLEN],
                  vs_error **err);
/* Give back the endpoint's claim when this node holds it (best effort: logged). */
void vd_cnet_release(vd_daemon *d, const char *network, const char *id);
/* A network of the cluster by name from the watch's copy, for a node that makes it on demand:
 * its record (with Revision), *peers the addresses of the other nodes that have made it, *names
 * the other nodes' claims' names ([{Ip, Names}]); NULL when the cluster has no such network (or the
 * copy is not loaded). */
json_t *vd_cnet_record(vd_daemon *d, const char *name, json_t **peers, json_t **names);
/* Wake the network pass (a network was made or removed here). */
void vd_cnet_kick(vd_daemon *d);
/* networks.c, for the network pass: make the records' networks here (with their VXLAN devices
 * flooding to peers {network: [address]}, the other nodes that have each, and the names of
 * remote_claims {network: [{Ip, Names}]} in their DNS) and remove the networks of the cluster that
 * have no record at revision; the endpoints of this node on networks of the cluster ([{Network, Id,
 * Ip, Names}]). */
void vd_net_cluster_apply(vd_daemon *d, json_t *records, int64_t revision, json_t *peers,
                          json_t *remote_claims, json_t *wanted);
json_t *vd_net_cluster_endpoints(vd_daemon *d);
/* The networks of the cluster made on this node ({name: true}). */
json_t *vd_net_cluster_made(vd_daemon *d);

struct vd_daemon {
  char *data_root, *exec_root, *containers_dir, *monitor_path;
  long long body_idle_ns;  /* a request body that sends nothing this long is dropped */
  json_t *default_ulimits; /* daemon.json's default-ulimits as OCI rlimits, or NULL */
  ctr_runtime rt;
  vs_store *store;
  int epfd;
  int sigfd;
  vd_src sig_src;
  int donefd;
  vd_src done_src;
  int inofd;
  vd_src ino_src;
  int *listen_fds;
  char **listen_paths;
  vd_src *listen_srcs;
  size_t n_listen;
  bool stopping;
  vd_conn *conns;
  size_t n_conns;
  vd_conn *dead_conns; /* closed, freed at the end of the loop iteration */
  vd_container *dead_ctrs;
  vd_exec *execs; /* loop only */
  /* the events ring: under event_lock */
  pthread_mutex_t event_lock;
  json_t *events[VD_EVENTS_KEPT];
  uint64_t event_seq;
  /* the container table and every container's status: under lock (short holds, also on the
   * loop); the image store object: under store_lock (long holds, workers only) */
  pthread_mutex_t lock;
  pthread_cond_t exit_cond; /* with lock: a container's exits_reported grew */
  pthread_mutex_t store_lock;
  pthread_mutex_t volume_lock; /* making and removing volumes */
  vd_container **ctrs;
  size_t n_ctrs;
  /* workers */
  pthread_t workers[VD_WORKERS];
  size_t n_workers;
  pthread_mutex_t qlock;
  pthread_cond_t qcond;
  vd_job *queue, *queue_tail;
  vd_job *done;
  bool quit_workers;
  char *started; /* RFC 3339 */
  /* the spare monitor, started ahead for the next container (supervisor.c): under spare_lock */
  pthread_mutex_t spare_lock;
  int spare_fd; /* its socket, -1 when there is none */
  pid_t spare_pid;
  struct vd_vms *vms; /* the VM table (vms.h) */
  vd_net *net;        /* networks.c */
  /* web.c: TLS listeners, front connections, the web console's state */
  struct vd_front_listener *front_listeners;
  struct vd_front *fronts, *dead_fronts;
  size_t n_fronts;
  struct vd_web *web;
  unsigned web_passwd_gen; /* bumped (atomically) when the web password changes */
  vd_cluster cluster;      /* cluster.c */
};

/* server.c: connections and responses (loop thread only) */
void vd_conn_send(vd_conn *c, const void *data, size_t len);
void vd_conn_stream_begin(vd_conn *c, int status, const char *content_type);
/* Queue a piece of a streamed body; vd_conn_flush sends what is queued. */
void vd_conn_stream_write(vd_conn *c, const void *data, size_t len);
void vd_conn_flush(vd_conn *c);
/* Re-evaluate which events the connection waits for (after its buffers changed). */
void vd_conn_update(vd_conn *c);
void vd_conn_stream_end(vd_conn *c);
void vd_conn_hijack_begin(vd_conn *c, const char *content_type);
/* Take a hijacked connection's socket off the loop (blocking, close-on-exec): what is queued is
 * written first and the connection is closed; the caller owns the descriptor. -1 if it died. */
int vd_conn_release_fd(vd_conn *c);
/* Send the call's answer and get ready for the next request (or close). Frees the call. */
void vd_conn_finish_call(vd_conn *c, vd_call *call);
void vd_call_free(vd_call *call);
/* From a loop handler: run(call) on a worker instead, answered when it returns as a worker
 * route's call is (for a route whose quick or streamed form runs on the loop). */
void vd_call_defer(vd_call *call, void (*run)(vd_call *call));
int vd_loop_add(vd_daemon *d, int fd, uint32_t events, vd_src *src, vs_error **err);
/* Serve fd (a connected, non-blocking socket) as an API client's connection; NULL (fd closed)
 * when there is no room. The web front hands its internal socketpair ends in this way. */
vd_conn *vd_conn_adopt(vd_daemon *d, int fd);
/* From any thread: fd (connected, non-blocking) served as a client's connection that came
 * through a tunnel from another node. */
void vd_loop_adopt_tunnel(vd_daemon *d, int fd);
/* daemon.c: a TCP listening socket on hp, "ADDRESS:PORT" ([v6] or empty for all); what names
 * the option in errors. */
int vd_listen_tcp(const char *hp, const char *what, vs_error **err);
void vd_loop_del(vd_daemon *d, int fd);

/* router.c */
/* Find the handler of a call: 0, or the status to answer with and *msg (caller frees). */
int vd_route_resolve(vd_call *call, char **msg);
const vd_route *vd_route_find(const char *method, const char *path, char **arg, bool *path_known);
/* The path without a /vN.NN prefix; NULL when the version is not served (error in *msg). */
const char *vd_api_path(const char *path, char **msg);

/* images.c: the full reference a commit or import names (repo, with tag or ":latest"), in *full
 * (NULL when repo is empty: an untagged image). 0, or -1 with the call answered (400). */
int vd_call_image_ref(vd_call *c, const char *repo, const char *tag, char **full);
/* An `until` filter: a Unix time ("1700000000", "1700000000.5"), an RFC 3339 time or date, or
 * a Go duration back from now ("24h", "90m", "1h30m", "10s"), as dockerd's GetTimestamp takes
 * them. Seconds since the epoch, or -1. */
long long vd_until_time(const char *s, time_t now);

/* handlers */
void vd_h_ping(vd_call *c);
void vd_h_version(vd_call *c);
void vd_h_info(vd_call *c);
void vd_h_images_list(vd_call *c);
void vd_h_image_inspect(vd_call *c);
void vd_h_image_load(vd_call *c);
void vd_h_image_tag(vd_call *c);
void vd_h_image_delete(vd_call *c);
void vd_h_image_create(vd_call *c);
void vd_h_image_history(vd_call *c);
void vd_h_image_push(vd_call *c);
void vd_h_auth(vd_call *c);
void vd_h_build_prune(vd_call *c);
void vd_h_image_save(vd_call *c);
void vd_h_images_prune(vd_call *c);
void vd_h_system_df(vd_call *c);
void vd_h_volumes_list(vd_call *c);
void vd_h_volume_create(vd_call *c);
void vd_h_volume_inspect(vd_call *c);
void vd_h_volume_delete(vd_call *c);
void vd_h_volumes_prune(vd_call *c);

/* events.c: emit from anywhere; attrs is stolen (NULL: none) */
void vd_event_emit(vd_daemon *d, const char *type, const char *action, const char *id,
                   json_t *attrs);
/* Name, image and labels of a container (new object; caller holds d->lock or owns c). */
json_t *vd_event_ctr_attrs(const vd_container *c);
void vd_events_deliver(vd_daemon *d); /* loop, end of iteration */
void vd_events_timer(vd_conn *c);
void vd_events_detach(vd_conn *c);
void vd_events_free(vd_daemon *d);

/* volumes.c */
bool vd_volume_name_valid(const char *name);
/* Every volume with its UsageData (size, containers naming it), for system df. */
json_t *vd_volumes_usage(vd_daemon *d);
/* The named volume's record (new reference), made when missing (worker). */
json_t *vd_volume_ensure(vd_daemon *d, const char *name, json_t *labels, json_t *opts,
                         bool *created, vs_error **err);
/* Remove the anonymous volumes among points (a record's MountPoints) that no container other
 * than the one of id uses (worker): rm -v, --rm, a create that failed. */
void vd_volumes_release(vd_daemon *d, json_t *points, const char *id);
/* Fill the container's empty volumes from what its root has at their mount points (worker, the
 * root mounted), as dockerd does at every start. */
int vd_volumes_copy_up(vd_daemon *d, vd_container *c, vs_error **err);
void vd_h_containers_list(vd_call *c);
void vd_h_container_create(vd_call *c);
void vd_h_container_inspect(vd_call *c);
void vd_h_container_start(vd_call *c);
void vd_h_container_stop(vd_call *c);
void vd_h_container_kill(vd_call *c);
void vd_h_container_delete(vd_call *c);
void vd_h_container_wait(vd_call *c);
void vd_h_container_logs(vd_call *c);
void vd_h_container_attach(vd_call *c);
void vd_h_container_restart(vd_call *c);
void vd_h_container_pause(vd_call *c);
void vd_h_container_unpause(vd_call *c);
void vd_h_swarm(vd_call *c);
void vd_h_container_resize(vd_call *c);
void vd_h_events(vd_call *c);
void vd_h_container_rename(vd_call *c);
void vd_h_containers_prune(vd_call *c);
void vd_h_container_top(vd_call *c);
void vd_h_container_stats(vd_call *c);
/* stats.c (loop): a stream's timer; its end */
void vd_stats_tick(vd_conn *c);
void vd_stats_detach(vd_conn *c);
/* vm_api.c (loop): a VM's stats stream, its next sample */
void vd_vm_stats_tick(vd_conn *c);
void vd_h_commit(vd_call *c);
/* build.c */
void vd_h_build(vd_call *c);
/* Remove the context directory kept for the next build (docker builder prune). */
void vd_build_contexts_drop(vd_daemon *d);
void vd_h_container_changes(vd_call *c);
/* archive.c: docker cp and docker export */
void vd_h_container_archive_get(vd_call *c); /* GET and HEAD */
void vd_h_container_archive_put(vd_call *c);
void vd_h_container_export(vd_call *c);
void vd_h_container_update(vd_call *c); /* update.c */
void vd_h_exec_create(vd_call *c);
void vd_h_exec_start(vd_call *c);
void vd_h_exec_inspect(vd_call *c);
void vd_h_exec_resize(vd_call *c);

/* vms.c, vm_console.c: VMs (/vessel/v1/vms) */
int vd_vms_init(vd_daemon *d, vs_error **err); /* the table, and the VMs a previous run left */
void vd_vms_free(vd_daemon *d);
/* The sampler of what guests hold and the balloons' reclaim (pool_memory.c): started when the
 * daemon is ready, stopped first when it ends. */
void vd_pool_memory_start(vd_daemon *d);
void vd_pool_memory_stop(vd_daemon *d);
void vd_vms_event(vd_daemon *d, vd_src *src); /* a VMM's pidfd (loop) */
/* a VM's restart timer fired (loop): the start goes to a worker */
void vd_vms_restart_fire(vd_daemon *d, vd_src *src);
void vd_h_vms_list(vd_call *c);
void vd_h_vm_create(vd_call *c);
void vd_h_vm_inspect(vd_call *c);
void vd_h_vm_start(vd_call *c);
void vd_h_vm_stop(vd_call *c);
void vd_h_vm_kill(vd_call *c);
void vd_h_vm_restart(vd_call *c);
void vd_h_vm_update(vd_call *c);
void vd_h_vm_images_list(vd_call *c);
void vd_h_vm_image_push(vd_call *c);
void vd_h_vm_image_import(vd_call *c);
void vd_h_vm_pause(vd_call *c);
void vd_h_vm_resume(vd_call *c);
void vd_h_vm_delete(vd_call *c);
void vd_h_vm_logs(vd_call *c);
void vd_h_vm_console(vd_call *c);
void vd_h_vm_snapshot(vd_call *c);
void vd_h_vm_restore(vd_call *c);
void vd_h_vm_clone(vd_call *c);
void vd_h_vm_stats(vd_call *c);
void vd_h_host_stats(vd_call *c); /* stats.c: GET /vessel/v1/host/stats */
/* stats.c: turn the call into a stream of statistics objects, one per tick of a timer armed
 * with its (on the daemon's loop; the connection's stats fields say what is sampled); -1 after
 * answering 500 (what names the stream in the message). */
struct itimerspec;
int vd_stats_stream_arm(vd_call *c, const struct itimerspec *its, const char *what);
void vd_h_web_password(vd_call *c); /* web_auth.c: POST /vessel/v1/web/password */
/* pools.c: resource pools (/vessel/v1/pools) */
#define VD_POOL_LABEL "vessel.pool" /* docker run --label vessel.pool=NAME */
#define VD_DEFAULT_POOL "default"   /* the pool of guests that name none (pools.c) */
/* A new container (d->lock held, so that the admission and the name's reservation are one
 * step): admitted against its pool's capacity (--cpus, --memory; the default pool without the
 * label), or refused (EBUSY: 409) with what is left; an unknown pool is EINVAL. */
int vd_pool_ctr_admit_locked(vd_daemon *d, json_t *rec, vs_error **err);
/* docker update of a container (d->lock held): new limits that ask for more than its record's
 * are admitted for the growth, as a new guest would be. */
int vd_pool_ctr_update_admit_locked(vd_daemon *d, json_t *rec, json_t *host_config, vs_error **err);
/* Its spec's cgroupsPath under the pool's cgroup (a container with the label). */
int vd_pool_ctr_spec(vd_daemon *d, json_t *rec, json_t *spec, vs_error **err);
void vd_h_pools_list(vd_call *c);
void vd_h_pool_create(vd_call *c);
void vd_h_pool_inspect(vd_call *c);
void vd_h_pool_delete(vd_call *c);
void vd_h_pool_update(vd_call *c);
void vd_h_pool_stats(vd_call *c); /* pool_stats.c: GET /vessel/v1/pools/{name}/stats */

/* exec.c (loop) */
void vd_exec_event(vd_daemon *d, vd_src *src, uint32_t events);
/* The exec client's input to the exec's stdin. */
void vd_exec_forward(vd_conn *c);
void vd_exec_detach_conn(vd_conn *c);
void vd_execs_free(vd_daemon *d);
/* A health probe: cmd run in the container like an exec, stdout and stderr together; its end
 * is reported to vd_health_probe_done. *exec_id (caller frees) names it. */
int vd_exec_probe_start(vd_daemon *d, const char *ctr_id, json_t *cmd, char **exec_id,
                        vs_error **err);
/* A probe that ran out of time: its helper is killed and its result dropped. */
void vd_exec_probe_kill(vd_daemon *d, const char *exec_id);

/* health.c: health checks (loop) */
#define VD_HEALTH_OUTPUT_MAX 4096 /* of a probe's output, kept in the log (as dockerd) */
/* The container runs (started, restarted, found running at start): status "starting", the
 * first probe after one interval. Nothing when it has no health check. */
void vd_health_start(vd_daemon *d, vd_container *c);
/* It stopped or is removed: no more probes. */
void vd_health_stop(vd_daemon *d, vd_container *c);
void vd_health_timer(vd_daemon *d, vd_container *c);
void vd_health_probe_done(vd_daemon *d, const char *ctr_id, const char *exec_id, int exit_code,
                          const char *out, size_t len);
/* "healthy", "unhealthy", "starting", or NULL without a health check (under d->lock). */
const char *vd_health_status(const vd_container *c);

/* store.c: the container table (callers hold d->lock unless said otherwise) */
vd_container *vd_ctr_find(vd_daemon *d, const char *what); /* name, id or unique id prefix */
vd_container *vd_ctr_find_name(vd_daemon *d, const char *name);
void vd_ctr_ref(vd_container *c);
/* Drops a reference; the last one frees (takes d->lock itself). */
void vd_ctr_unref(vd_daemon *d, vd_container *c);
void vd_ctr_add(vd_daemon *d, vd_container *c);
void vd_ctr_remove(vd_daemon *d, vd_container *c);
int vd_ctr_save(vd_container *c, vs_error **err);
vd_container *vd_ctr_new(vd_daemon *d, const char *id, json_t *rec);
/* Read monitor.json and exit.json into the status fields. */
void vd_ctr_refresh(vd_daemon *d, vd_container *c);
int vd_store_recover(vd_daemon *d, vs_error **err);
/* Takes c->dir out of the store at once (one atomic rename) and deletes it on a worker. */
int vd_store_discard_dir(vd_daemon *d, const vd_container *c, vs_error **err);
char *vd_ctr_log_path(const vd_container *c);
const char *vd_ctr_state_name(const vd_container *c);
/* A container as `docker ps` lists it (caller holds d->lock). */
json_t *vd_ctr_summary(const vd_container *c);

/* supervisor.c */
/* Start the container's monitor and wait until it reports (worker). */
int vd_supervise_start(vd_daemon *d, vd_container *c, vs_error **err);
/* Mount the container's overlay root at <dir>/rootfs unless it is (worker; after a reboot it
 * is not). */
int vd_supervise_ensure_rootfs(vd_daemon *d, vd_container *c, vs_error **err);
/* Watch a running container's monitor (loop). */
void vd_supervise_watch(vd_daemon *d, vd_container *c);
/* The monitor exited (loop): read the exit, finish streams, auto-remove. */
void vd_supervise_exited(vd_daemon *d, vd_container *c);
/* Remove a container's files and mounts (worker); the caller set c->removing. */
int vd_supervise_remove(vd_daemon *d, vd_container *c, bool force, vs_error **err);
/* A container whose monitor died without recording its exit (c->monitor_lost): end what is
 * left of it and record exit.json (worker or start-up; see supervisor.c). */
void vd_supervise_end_orphan(vd_daemon *d, vd_container *c);
/* Start the spare monitor if there is none (a worker's job: it waits for the program's start);
 * the daemon's end closes its socket, which ends it. */
void vd_monitor_spare_refill(vd_daemon *d);
void vd_monitor_spare_submit(vd_daemon *d);
void vd_monitor_spare_close(vd_daemon *d);
/* Whether the daemon is ending and waits for its workers: a call that could wait for ever gives
 * up. */
bool vd_workers_quitting(vd_daemon *d);
/* Send sig to the container's processes. */
int vd_supervise_kill(vd_daemon *d, vd_container *c, int sig, vs_error **err);
/* Wait for the monitor to exit, up to timeout_ms (-1: forever). 1 when it exited. */
int vd_supervise_wait_exit(vd_container *c, int timeout_ms);
/* Wait, up to timeout_ms, until an exit after the before'th has been reported (its die event
 * sent) or the container is removed: a stop says stop after die, as dockerd does. */
void vd_supervise_wait_reported(vd_daemon *d, vd_container *c, unsigned before, int timeout_ms);
/* A start failed (loop): as dockerd, its attach streams end, its waiters get the exit code
 * (127, 126 or 128) and --rm removes it. */
void vd_supervise_start_failed(vd_daemon *d, vd_container *c);
/* From a worker: have the loop call vd_supervise_removed for job->ctr (then unref it). */
void vd_supervise_post_removed(vd_daemon *d, vd_job *job);
/* The container was removed (loop): end its streams, drop it from the table. */
void vd_supervise_removed(vd_daemon *d, vd_container *c);

/* restart.c: restart policies (loop, except where said) */
/* A RestartPolicy object (may be NULL) checked as dockerd checks it, its Name and
 * MaximumRetryCount in *name (NULL if none) and *max: 1 when it restarts containers, 0 when not
 * ("no" or none), -1 with *err. */
int vd_restart_policy_check(json_t *rp, const char **name, int64_t *max, vs_error **err);
/* Whether the policy wants the exited container back (under d->lock). */
bool vd_restart_wanted(const vd_container *c);
void vd_restart_schedule(vd_daemon *d, vd_container *c);
void vd_restart_fire(vd_daemon *d, vd_container *c);
void vd_restart_cancel(vd_daemon *d, vd_container *c);
/* The user stopped (true) or started (false) it: remembered in the record (worker). */
void vd_restart_note_manual(vd_daemon *d, vd_container *c, bool stopped);

/* Every capability the daemon's bounding set holds, as "CAP_..." names: what "all" means for
 * --privileged, --cap-add ALL and exec --privileged (the runtime cannot give more than it has). */
json_t *vd_spec_all_caps(void);
/* "user[:group]" (names or numbers) to ids through the image's /etc/passwd and /etc/group. */
int vd_spec_resolve_user(const char *rootfs, const char *spec, long *uid, long *gid,
                         vs_error **err);
/* spec.c: the OCI linux.resources of a HostConfig (Memory, MemorySwap, NanoCpus, CpuShares,
 * CpuQuota, CpuPeriod, PidsLimit); new object. */
json_t *vd_spec_resources(json_t *hc);
/* spec.c: the OCI config.json of a container from its image and create request. The volumes it
 * uses are made (named ones when missing, anonymous ones new) and every mount point is appended
 * to points (inspect's Mounts, with Anonymous and CopyData for volumes), also on failure, so the
 * caller can release what was made. */
json_t *vd_spec_build(vd_daemon *d, const vs_image *img, json_t *config, json_t *host_config,
                      const char *dir, const char *rootfs, const char *hostname, json_t *points,
                      vs_error **err);

/* networks.c: the network API and a container's endpoints */
int vd_net_init(vd_daemon *d, const char *bridge, vs_error **err);
void vd_net_free(vd_daemon *d);
void vd_net_event(vd_daemon *d, vd_src *src); /* loop: a DHCP or DNS socket is readable */
/* Check a create request's networks, ports and MAC; record NetworkingConfig and the exposed
 * ports (the image's and -p's) in rec. */
int vd_net_create_prepare(vd_daemon *d, json_t *body, json_t *rec, const vs_image *img,
                          vs_error **err);
/* Before the monitor starts (worker): namespace, endpoints, ports, hosts, resolv.conf. */
int vd_net_setup(vd_daemon *d, vd_container *c, vs_error **err);
/* After the container ended or failed to start, or before it is removed (worker). */
void vd_net_teardown(vd_daemon *d, vd_container *c);
/* Which run's endpoints the container has (read before a stop or at an exit), and their
 * teardown once that run ended: skipped when a start made new ones since. A stop answers, and
 * an exit is reported (die, waiters), after it, as dockerd's do, so a stopped container's
 * interfaces and addresses are gone when the client hears it stopped. */
unsigned vd_net_run(vd_daemon *d, vd_container *c);
void vd_net_teardown_run(vd_daemon *d, vd_container *c, unsigned run);
/* Inspect's NetworkSettings and ps's Ports and networks (d->lock held). */
/* links.c: Docker's legacy --link variables into the spec's process.env, at every start after
 * vd_net_setup (both containers on the default bridge, as dockerd). */
int vd_links_env(vd_daemon *d, vd_container *c, vs_error **err);
/* links.c: a link as HostConfig.Links holds it ("/name:/me/alias", as dockerd stores it, or
 * "name[:alias]"): the linked container's name (allocated) and *alias, inside it (the name when
 * there is no alias); either may be empty, which the caller refuses. */
char *vd_link_split(const char *spec, const char **alias);
json_t *vd_net_settings(const vd_container *c);
json_t *vd_net_summary_ports(const vd_container *c);
json_t *vd_net_summary_networks(const vd_container *c);
/* A VM's tap on a network (the address by DHCP, the id as its DNS name) and its removal. */
int vd_net_attach_tap(vd_daemon *d, const char *network, const char *id, const char *ip,
                      const net_port *ports, size_t n_ports, net_endpoint_info *info,
                      vs_error **err);
int vd_net_detach_tap(vd_daemon *d, const char *network, const char *id, vs_error **err);
/* A tap's published ports from Docker's PortBindings (NULL: none); an empty HostPort gets a free
 * ephemeral port. */
/* A renamed container answers to its new name on its user networks' DNS at once (as Docker's). */
void vd_net_renamed(vd_daemon *d, const char *id, const char *old_name, const char *new_name);
int vd_net_tap_ports(json_t *bindings, net_port **ports, size_t *n_ports, vs_error **err);
void vd_h_network_tap_attach(vd_call *c);
void vd_h_network_tap_detach(vd_call *c);
void vd_h_networks_list(vd_call *c);
void vd_h_network_inspect(vd_call *c);
void vd_h_network_create(vd_call *c);
void vd_h_network_delete(vd_call *c);
void vd_h_networks_prune(vd_call *c);
void vd_h_network_connect(vd_call *c);
void vd_h_network_disconnect(vd_call *c);
/* logfiles.c: the json-file log's rotation options and files */
typedef struct vd_log_opts {
  int64_t max_size;   /* bytes; -1: no limit */
  unsigned max_files; /* the log and its rotated files, at least 1 */
  bool compress;      /* rotated files are gzipped (.1.gz, .2.gz, ...) */
} vd_log_opts;
/* HostConfig.LogConfig checked (json-file only; max-size, max-file, compress, labels,
 * labels-regex, env, env-regex, tag) and the rotation read into *out. */
int vd_log_options(json_t *host_config, vd_log_opts *out, vs_error **err);
/* The attrs every json-file entry of the container carries (dockerd's: the labels and
 * environment variables its labels/env options name or their -regex options match, and the
 * expanded tag), from its record; NULL when there are none. */
json_t *vd_log_attrs(json_t *rec);
/* path, or path.i for the i-th rotated file (1 is the newest of them). */
char *vd_log_rotated_path(const char *path, unsigned i);
/* Shift path.i to path.i+1 (the one beyond max_files - 1 goes) and path to path.1, each file
 * plain or gzipped (.gz); with compress path.1 is then gzipped. -1, errno. */
int vd_log_rotate(const char *path, unsigned max_files, bool compress);
/* The oldest file of the log, opened for reading (-1 if none). */
int vd_log_open_oldest(const char *path);
/* The file after the one fd reads, opened (-1 when fd's is the newest): for a reader at the
 * end of fd. VD_LOG_UNREAD when fd's file grew since that end (read it first). */
#define VD_LOG_UNREAD (-2)
int vd_log_open_next(const char *path, int fd);
/* Position fd so that its last n lines remain; how many lines remain (fewer: all of them). */
long long vd_log_fd_seek_tail(int fd, long long n);
/* The file and position (*fd_out) from which the last n lines of the log, across its rotated
 * files, remain to be read. -1 when there is no log. */
int vd_log_seek_tail(const char *path, long long n, int *fd_out);

/* streams.c (loop) */
/* The container's directory changed: feed its followers. */
void vd_streams_poke(vd_daemon *d, vd_container *c);
/* The container exited or was removed: drain and end its streams, answer its waiters. */
void vd_streams_exit(vd_daemon *d, vd_container *c, bool removed);
/* The connection goes away: unlink it from its container. */
void vd_stream_detach(vd_conn *conn);
/* Flow control: the client drained our output, read more of the log. */
void vd_stream_pump(vd_conn *conn);
/* The container started (loop): attach connections waiting to send stdin connect now. */
void vd_streams_started(vd_daemon *d, vd_container *c);
/* Stdin from an attach client: forward what is buffered in conn->in (loop). */
void vd_attach_forward(vd_conn *conn);
/* The monitor socket of an attach connection is writable or closed (loop). */
void vd_attach_event(vd_conn *conn, uint32_t events);
/* Docker's --detach-keys ("ctrl-p,ctrl-q", "ctrl-a,x": ctrl-a..z, ctrl-@ [ \\ ] ^ _, or one
 * character per key) into keys[0..*n); NULL or "" gives the default ctrl-p,ctrl-q. -1 with
 * *err naming them when one is not a key. */
int vd_detach_keys_parse(const char *spec, unsigned char keys[VD_DETACH_KEYS_MAX], size_t *n,
                         vs_error **err);
/* Filter what the client sent, c->in[from..in_len), for the detach sequence (in place): a
 * prefix of it is withheld until it turns out not to be one; the whole sequence sets
 * c->detach_seen and drops it and what followed. */
void vd_detach_filter(vd_conn *c, size_t from);
/* Connect to a running container's monitor (attach.sock); -1 with *err. */
int vd_monitor_connect(const vd_container *c, vs_error **err);

#endif
