/* A copy of the cluster's keys under /vessel/ in memory, kept by the node's one watch: what the
 * scheduler reads on every pass instead of asking etcd (four ranges a pass, the whole guest list
 * twice, made one-by-one placement a third of what it is now; docs/performance.md).
 *
 * One watch of the whole prefix delivers the changes in revision order, so the copy is always
 * the store as it was at some revision: a node cordoned before a guest was created is cordoned
 * in the copy by the time that guest is seen. The node's own compare-and-swap writes go into the
 * copy as soon as etcd confirms them (vd_cache_note_put), so the next pass sees them without
 * waiting for their watch event. Each key keeps the revision it was last changed at, and a
 * change older than what is held is ignored: the watch's event of a write already noted, or a
 * reload that raced with the watch, never takes a key back in time.
 *
 * Everything here is under cl->lock; a change wakes guests_cond. */
#include "daemon/internal.h"

#include <stdlib.h>
#include <string.h>

#define ROOT "/vessel/"

void vd_cache_init(vd_cluster *cl) {
  cl->cache = json_object();
  pthread_mutex_init(&cl->reload_lock, NULL);
}

void vd_cache_free(vd_cluster *cl) {
  if (!cl->cache)
    return;
  json_decref(cl->cache);
  cl->cache = NULL;
  pthread_mutex_destroy(&cl->reload_lock);
}

static int64_t held_revision(const json_t *e) {
  return e ? (int64_t)json_integer_value(json_object_get(e, "m")) : 0;
}

/* A key removed at "m" is kept as a tombstone ({"d": true, "m"}) for a while, so that a range
 * read before its removal (a reload) or a write noted late cannot bring it back. */
static bool is_tombstone(const json_t *e) { return json_is_true(json_object_get(e, "d")); }

#define MAX_TOMBSTONES 4096

/* key = value at revision mod (created at create), unless what is held is newer. */
static void put_locked(vd_cluster *cl, const char *key, const char *value, size_t len, int64_t mod,
                       int64_t create) {
  json_t *old = json_object_get(cl->cache, key);
  if (old && held_revision(old) >= mod)
    return;
  if (!create && old && !is_tombstone(old))
    create = (int64_t)json_integer_value(json_object_get(old, "c"));
  if (old && is_tombstone(old))
    cl->tombstones--;
  /* no UTF-8 check: a value is any bytes, read back as they came */
  json_object_set_new(cl->cache, key,
                      json_pack("{s:o, s:I, s:I}", "v", json_stringn_nocheck(value, len), "m",
                                (json_int_t)mod, "c", (json_int_t)(create ? create : mod)));
}

/* Forget the tombstones at or before revision (every one with 0). */
static void purge_tombstones_locked(vd_cluster *cl, int64_t revision) {
  const char *key;
  json_t *e;
  void *tmp;
  json_object_foreach_safe(cl->cache, tmp, key, e) {
    if (is_tombstone(e) && (revision == 0 || held_revision(e) <= revision)) {
      json_object_del(cl->cache, key);
      cl->tombstones--;
    }
  }
}

static void delete_locked(vd_cluster *cl, const char *key, int64_t revision) {
  json_t *old = json_object_get(cl->cache, key);
  if (old && held_revision(old) >= revision)
    return;
  if (!old || !is_tombstone(old))
    cl->tombstones++;
  json_object_set_new(cl->cache, key, json_pack("{s:b, s:I}", "d", 1, "m", (json_int_t)revision));
  if (cl->tombstones > MAX_TOMBSTONES)
    purge_tombstones_locked(cl, 0);
}

void vd_cache_apply_locked(vd_cluster *cl, const vc_watch_msg *m) {
  for (size_t i = 0; i < m->n; i++) {
    const vc_kv *kv = &m->events[i].kv;
    if (!kv->key)
      continue;
    if (m->events[i].type == VC_EVENT_DELETE)
      delete_locked(cl, kv->key, kv->mod_revision ? kv->mod_revision : m->revision);
    else
      put_locked(cl, kv->key, kv->value ? kv->value : "", kv->value_len, kv->mod_revision,
                 kv->create_revision);
  }
}

void vd_cache_note_put(vd_cluster *cl, const char *key, const char *value, size_t len,
                       int64_t revision) {
  if (revision <= 0)
    return;
  pthread_mutex_lock(&cl->lock);
  /* a reload at or after it already holds its outcome (the key, or its removal forgotten) */
  if (cl->cache && revision > cl->reload_revision)
    put_locked(cl, key, value, len, revision, 0);
  pthread_mutex_unlock(&cl->lock);
}

int vd_cache_reload(vd_cluster *cl, int64_t *revision, vs_error **err) {
  vc_range r;
  pthread_mutex_lock(&cl->reload_lock);
  if (vc_etcd_get_prefix(cl->etcd, ROOT, 0, &r, err) < 0) {
    pthread_mutex_unlock(&cl->reload_lock);
    return -1;
  }
  pthread_mutex_lock(&cl->lock);
  /* a key held but not in the range went before r.revision, unless it changed after it */
  json_t *seen = json_object();
  for (size_t i = 0; i < r.n; i++) {
    put_locked(cl, r.kvs[i].key, r.kvs[i].value ? r.kvs[i].value : "", r.kvs[i].value_len,
               r.kvs[i].mod_revision, r.kvs[i].create_revision);
    json_object_set_new(seen, r.kvs[i].key, json_true());
  }
  const char *key;
  json_t *e;
  void *tmp;
  json_object_foreach_safe(cl->cache, tmp, key, e) {
    if (!json_object_get(seen, key) && held_revision(e) <= r.revision && !is_tombstone(e))
      json_object_del(cl->cache, key);
  }
  json_decref(seen);
  /* what the range shows is at least as new as the removals before it */
  purge_tombstones_locked(cl, r.revision);
  cl->cache_ok = true;
  /* the copy holds everything up to r.revision: a watch made again starts after it */
  if (r.revision > cl->guests_revision)
    cl->guests_revision = r.revision;
  if (revision)
    *revision = r.revision;
  if (r.revision > cl->reload_revision)
    cl->reload_revision = r.revision;
  pthread_cond_broadcast(&cl->guests_cond);
  pthread_mutex_unlock(&cl->lock);
  pthread_mutex_unlock(&cl->reload_lock);
  vc_range_clear(&r);
  return 0;
}

static int by_key(const void *a, const void *b) {
  return strcmp(((const vc_kv *)a)->key, ((const vc_kv *)b)->key);
}

bool vd_cache_range(vd_cluster *cl, const char *prefix, vc_range *out) {
  memset(out, 0, sizeof(*out));
  size_t plen = strlen(prefix);
  pthread_mutex_lock(&cl->lock);
  if (!cl->cache_ok) {
    pthread_mutex_unlock(&cl->lock);
    return false;
  }
  out->kvs = vs_malloc0(sizeof(vc_kv) * (json_object_size(cl->cache) + 1));
  const char *key;
  json_t *e;
  json_object_foreach(cl->cache, key, e) {
    if (strncmp(key, prefix, plen) != 0 || is_tombstone(e))
      continue;
    json_t *v = json_object_get(e, "v");
    vc_kv *kv = &out->kvs[out->n++];
    kv->key = vs_strdup(key);
    kv->value_len = json_string_length(v);
    kv->value = vs_malloc0(kv->value_len + 1);
    memcpy(kv->value, json_string_value(v), kv->value_len);
    kv->value[kv->value_len] = 0;
    kv->mod_revision = held_revision(e);
    kv->create_revision = (int64_t)json_integer_value(json_object_get(e, "c"));
  }
  out->revision = cl->guests_revision;
  pthread_mutex_unlock(&cl->lock);
  out->count = (int64_t)out->n;
  qsort(out->kvs, out->n, sizeof(vc_kv), by_key);
  return true;
}

json_t *vd_cache_get(vd_cluster *cl, const char *key, int64_t *revision) {
  json_t *rec = NULL;
  *revision = 0;
  pthread_mutex_lock(&cl->lock);
  json_t *e = cl->cache_ok ? json_object_get(cl->cache, key) : NULL;
  if (e && !is_tombstone(e)) {
    json_t *v = json_object_get(e, "v");
    rec = json_loadb(json_string_value(v), json_string_length(v), JSON_REJECT_DUPLICATES, NULL);
    *revision = held_revision(e);
  }
  pthread_mutex_unlock(&cl->lock);
  if (rec && !json_is_object(rec)) {
    json_decref(rec);
    rec = NULL;
  }
  return rec;
}
