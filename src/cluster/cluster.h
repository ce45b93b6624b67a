/* vessel cluster module: an etcd v3 client over etcd's JSON gateway (HTTP/1.1 + JSON through
 * libcurl), and the pure parsers of its replies. vesseld's cluster membership, node records and
 * (later) placement and reconciliation are built on it in src/daemon.
 *
 * This is the module's one public header.
 *
 * Why the JSON gateway rather than gRPC: see docs/dependencies.md. Keys and values travel as
 * base64 in the gateway's JSON and 64-bit integers as decimal strings; the parsers below check
 * both and treat every reply as untrusted input (tests/fuzz/fuzz_etcd.c).
 */
#ifndef VESSEL_CLUSTER_H
#define VESSEL_CLUSTER_H

#include "base/base.h"

/* ------------------------------------------------------------ replies (pure parsers) */

/* One key-value pair as etcd's mvccpb.KeyValue. key and value are NUL-terminated copies (value
 * may hold NULs itself: value_len counts them). */
typedef struct vc_kv {
  char *key;
  char *value;
  size_t value_len;
  int64_t create_revision, mod_revision, version, lease;
} vc_kv;

/* A range reply: the pairs, and the store's revision when it was read. */
typedef struct vc_range {
  vc_kv *kvs;
  size_t n;
  int64_t count;    /* how many keys matched (more than n when a limit cut the list) */
  int64_t revision; /* header.revision */
  bool more;
} vc_range;

void vc_range_clear(vc_range *r);
void vc_kv_clear(vc_kv *kv);

/* One watch event: PUT (kv holds the new pair) or DELETE (kv holds the key, value empty). */
typedef enum { VC_EVENT_PUT = 0, VC_EVENT_DELETE = 1 } vc_event_type;
typedef struct vc_event {
  vc_event_type type;
  vc_kv kv;
} vc_event;

/* One message of a watch stream. */
typedef struct vc_watch_msg {
  vc_event *events;
  size_t n;
  int64_t revision; /* header.revision */
  int64_t watch_id;
  int64_t compact_revision; /* non-zero: the start revision was compacted away */
  bool created, canceled;
  char *cancel_reason;
} vc_watch_msg;

void vc_watch_msg_clear(vc_watch_msg *m);

/* Each parser takes the raw body (len bytes, any content) and fills *out, or fails with an error
 * that names what is wrong ("etcd range reply: kvs[2].key: not base64"). An error reply of the
 * gateway ({"error", "message", "code"}) is reported with its message. */
int vc_parse_range(const char *body, size_t len, vc_range *out, vs_error **err);
/* put / deleterange: the revision after the write, and for a delete how many keys went. */
int vc_parse_put(const char *body, size_t len, int64_t *revision, vs_error **err);
int vc_parse_delete(const char *body, size_t len, int64_t *revision, int64_t *deleted,
                    vs_error **err);
/* txn: whether its compares held, the revision after it; *range gets the first range response
 * of the branch taken (zeroed when there was none). */
int vc_parse_txn(const char *body, size_t len, bool *succeeded, int64_t *revision, vc_range *range,
                 vs_error **err);
/* lease grant and keepalive ({"result": {...}} for keepalive): the lease and its TTL (a TTL of 0
 * or less from keepalive: the lease is gone). */
int vc_parse_lease(const char *body, size_t len, int64_t *id, int64_t *ttl, vs_error **err);
/* auth/authenticate: the token, malloc'd. */
int vc_parse_token(const char *body, size_t len, char **token, vs_error **err);
/* One line of a watch stream ({"result": {...}} or {"error": {...}}). */
int vc_parse_watch(const char *body, size_t len, vc_watch_msg *out, vs_error **err);

/* ------------------------------------------------------------------- placement */

/* Choose a node for one guest (src/cluster/place.c: Kubernetes' filter-then-score).
 *   nodes:  [{Name, Status ("ready"), Unschedulable, Draining, Cpus, Memory, CpuOvercommit,
 *             MemoryOvercommit, Labels}]
 *   guests: [{Name, Node, Cpus, Memory, Labels}]  (every guest placed so far)
 *   req:    {Name, Cpus, Memory, Labels, Node (pinned), NodeSelector, AntiAffinity, Affinity}
 * Returns 0 with *node (malloc'd) when some node fits, or 0 with *reason saying, node by node,
 * why none does; -1 when the input has the wrong shape (they come from etcd: checked). */
int vc_place(const json_t *nodes, const json_t *guests, const json_t *req, char **node,
             char **reason, vs_error **err);
/* The shape checks of vc_place alone. */
int vc_place_check(const json_t *nodes, const json_t *guests, const json_t *req, vs_error **err);

/* ------------------------------------------------------------------- the client */

typedef struct vc_etcd_options {
  const char *const *endpoints; /* "http://10.0.0.1:2379", "https://..."; tried in turn */
  size_t n_endpoints;
  const char *cacert;          /* TLS: the CA that signed the members' certificates */
  const char *cert, *key;      /* TLS client certificate (etcd's --client-cert-auth) */
  const char *user, *password; /* etcd auth: exchanged for a token, renewed when it expires */
  long timeout_ms;             /* per request; 0: 5000 */
} vc_etcd_options;

typedef struct vc_etcd vc_etcd;

/* Nothing is sent yet: the first request connects (vc_etcd_status checks reachability). */
vc_etcd *vc_etcd_new(const vc_etcd_options *o, vs_error **err);
void vc_etcd_free(vc_etcd *e);

/* The endpoint that answered last ("http://..."), for log messages. */
const char *vc_etcd_endpoint(const vc_etcd *e);

/* GET /version of some endpoint: fails when no member answers. */
int vc_etcd_status(vc_etcd *e, vs_error **err);

/* Calls may come from several threads; they are serialised on one connection (watches have
 * their own). Every call fails with an error naming the operation, the key and the cause. */
int vc_etcd_get(vc_etcd *e, const char *key, vc_range *out, vs_error **err);
/* Every key that starts with prefix, in key order; limit 0: all. */
int vc_etcd_get_prefix(vc_etcd *e, const char *prefix, int64_t limit, vc_range *out,
                       vs_error **err);
int vc_etcd_put(vc_etcd *e, const char *key, const char *value, size_t len, int64_t lease,
                int64_t *revision, vs_error **err);
/* Put only if the key's mod_revision is still expected (0: only if the key does not exist).
 * *succeeded is false when another writer got there first; *current then holds the key as it
 * is now (zeroed if it is gone). The compare-and-swap of every read-modify-write. */
int vc_etcd_put_if(vc_etcd *e, const char *key, const char *value, size_t len, int64_t lease,
                   int64_t expected_mod_revision, bool *succeeded, vc_range *current,
                   int64_t *revision, vs_error **err);
/* Several puts in one transaction, each only if its key's mod_revision is still as expected (0:
 * the key must not exist): all are written or none (*succeeded false: some key changed). etcd
 * takes at most 128 operations in one transaction (--max-txn-ops). An entry whose value is NULL
 * is a guard: its key's revision is compared and nothing is written to it (the scheduler's
 * leadership, a pool's definition). */
typedef struct vc_put {
  const char *key, *value;
  size_t len;
  int64_t lease, expected_mod_revision;
} vc_put;
int vc_etcd_put_all_if(vc_etcd *e, const vc_put *puts, size_t n, bool *succeeded, int64_t *revision,
                       vs_error **err);
/* Put key only if its mod_revision is still expected (0: it does not exist) and no key under
 * prefix was written after revision since (a read of prefix at since still holds; a key
 * removed meanwhile is not seen). The check of a change that must agree with a whole list: a
 * pool of the cluster shrunk only while its guests are as counted. */
int vc_etcd_put_if_quiet(vc_etcd *e, const char *key, const char *value, size_t len,
                         int64_t expected_mod_revision, const char *prefix, int64_t since,
                         bool *succeeded, int64_t *revision, vs_error **err);
/* Delete key (or every key under it with prefix); *deleted: how many. */
int vc_etcd_delete(vc_etcd *e, const char *key, bool prefix, int64_t *deleted, vs_error **err);
/* Delete key only if its mod_revision is still expected. */
int vc_etcd_delete_if(vc_etcd *e, const char *key, int64_t expected_mod_revision, bool *succeeded,
                      vs_error **err);

int vc_etcd_lease_grant(vc_etcd *e, int64_t ttl, int64_t *id, vs_error **err);
/* *ttl gets the renewed TTL, 0 when the lease has expired (then grant a new one). */
int vc_etcd_lease_keepalive(vc_etcd *e, int64_t id, int64_t *ttl, vs_error **err);
int vc_etcd_lease_revoke(vc_etcd *e, int64_t id, vs_error **err);

/* Watch key (or the prefix) from start_revision (0: from now) on a connection of its own, and
 * hand every message to cb on the calling thread. Returns 0 when cb returns non-zero, when
 * timeout_ms passed (0: no limit) or *stop became true (checked about once a second); -1 when the
 * stream fails or etcd cancels the watch (compaction: read again and watch from there). */
typedef int (*vc_watch_cb)(void *arg, const vc_watch_msg *m);
int vc_etcd_watch(vc_etcd *e, const char *key, bool prefix, int64_t start_revision, vc_watch_cb cb,
                  void *arg, const volatile bool *stop, long timeout_ms, vs_error **err);

#endif
