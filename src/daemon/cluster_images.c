/* Images known to the cluster (docs/cluster.md, "Images of the cluster"): each node records in
 * etcd which images its two stores hold — container images (d->store) and VM images
 * (d->vms->images) — so that any node can say where an image is, and the scheduler can prefer a
 * node that has a guest's image (place.c: image locality).
 *
 * A node's record is one key, /vessel/images/NODE = {Node, Images: [{Kind, Id, Digest,
 * References, Size, Registry}]}, written by that node alone and kept without a lease: an image
 * stays on a node's disk while its vesseld is down, and `vessel node rm` deletes the record with
 * the node. One key per node (rather than one per image) makes the record what the stores hold
 * as a whole: a thread of the node compares the stores' tags with what it wrote (every
 * PASS_MS, and at once after a pull, load, tag, rmi, prune or import here, which kick it) and
 * writes the whole list again when they differ — at start too, so a record that went stale
 * while the node was down, or was removed, is reconciled without a log of changes. */
#include "daemon/internal.h"
#include "daemon/vms.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define IMAGES_PREFIX "/vessel/images/"
#define PASS_MS 2000

static const char *str(const json_t *o, const char *f) {
  return json_string_value(json_object_get(o, f));
}

/* The registry a reference names ("docker.io", "10.0.0.1:5000"), NULL when it does not parse. */
static char *registry_of(const char *ref) {
  vs_image_ref r;
  vs_error *e = NULL;
  if (vs_image_ref_parse(ref, &r, &e) < 0) {
    vs_error_free(e);
    return NULL;
  }
  char *out = vs_strdup(r.registry);
  vs_image_ref_clear(&r);
  return out;
}

/* The images of one store ({full reference: manifest digest}) as record entries, by manifest. */
static void store_images(vs_store *s, const json_t *tags, const char *kind, json_t *out) {
  json_t *by_digest = json_object(); /* manifest digest: its references */
  const char *ref;
  json_t *md;
  json_object_foreach((json_t *)tags, ref, md) {
    if (!json_is_string(md))
      continue;
    json_t *refs = json_object_get(by_digest, json_string_value(md));
    if (!refs)
      json_object_set_new(by_digest, json_string_value(md), refs = json_array());
    json_array_append_new(refs, json_string(ref));
  }
  const char *digest;
  json_t *refs;
  json_object_foreach(by_digest, digest, refs) {
    vs_image img;
    if (vs_store_load_image(s, digest, &img, NULL) < 0)
      continue; /* a tag whose manifest is gone: not an image this node can use */
    /* a name rather than a bare "@sha256:" reference says where it came from */
    const char *named = json_string_value(json_array_get(refs, 0));
    size_t i;
    json_t *r;
    json_array_foreach(refs, i, r) if (!strchr(json_string_value(r), '@')) {
      named = json_string_value(r);
      break;
    }
    _cleanup_free_ char *registry = registry_of(named);
    json_t *entry =
        json_pack("{s:s, s:s, s:s, s:O, s:I}", "Kind", kind, "Id", img.manifest.config.digest,
                  "Digest", digest, "References", refs, "Size", (json_int_t)vs_image_size(&img));
    if (registry)
      json_object_set_new(entry, "Registry", json_string(registry));
    json_array_append_new(out, entry);
    vs_image_clear(&img);
  }
  json_decref(by_digest);
}

/* The tags of both stores, which decide whether the record must be built again. */
static json_t *stores_tags(vd_daemon *d, vs_error **err) {
  json_t *c = vs_store_tags(d->store, err);
  if (!c)
    return NULL;
  json_t *v = vs_store_tags(d->vms->images, err);
  if (!v) {
    json_decref(c);
    return NULL;
  }
  return json_pack("{s:o, s:o}", "container", c, "vm", v);
}

static json_t *node_record(vd_daemon *d, const json_t *tags) {
  json_t *images = json_array();
  store_images(d->store, json_object_get(tags, "container"), "container", images);
  store_images(d->vms->images, json_object_get(tags, "vm"), "vm", images);
  return json_pack("{s:s, s:o}", "Node", d->cluster.node_name, "Images", images);
}

/* One pass: the record built again when the stores' tags changed, written when etcd's copy
 * differs from it. seen and record: what the last pass built (owned by the thread). */
static int images_pass(vd_daemon *d, json_t **seen, json_t **record, vs_error **err) {
  vd_cluster *cl = &d->cluster;
  json_t *tags = stores_tags(d, err);
  if (!tags)
    return -1;
  if (!*seen || !json_equal(tags, *seen)) {
    json_decref(*record);
    *record = node_record(d, tags);
    json_decref(*seen);
    *seen = json_incref(tags);
  }
  json_decref(tags);
  _cleanup_free_ char *key = vs_asprintf(IMAGES_PREFIX "%s", cl->node_name);
  int64_t rev = 0;
  json_t *have = vd_cache_get(cl, key, &rev); /* NULL while the copy is not loaded: written */
  bool same = have && json_equal(have, *record);
  json_decref(have);
  if (same)
    return 0;
  _cleanup_free_ char *doc = json_dumps(*record, JSON_COMPACT | JSON_SORT_KEYS);
  int64_t at = 0;
  if (vc_etcd_put(cl->etcd, key, doc, strlen(doc), 0, &at, err) < 0)
    return -1;
  vd_cache_note_put(cl, key, doc, strlen(doc), at);
  vs_log_debug("cluster: images of %s recorded (%zu)", cl->node_name,
               json_array_size(json_object_get(*record, "Images")));
  return 0;
}

static void *images_thread(void *arg) {
  vd_daemon *d = arg;
  vd_cluster *cl = &d->cluster;
  json_t *seen = NULL, *record = NULL;
  while (!cl->stop) {
    vs_error *e = NULL;
    if (images_pass(d, &seen, &record, &e) < 0) {
      vs_log_warn("cluster: recording this node's images: %s", e->msg);
      vs_error_free(e);
    }
    struct timespec until = vs_realtime_after_ms(PASS_MS);
    pthread_mutex_lock(&cl->lock);
    if (!cl->stop && !cl->images_dirty)
      pthread_cond_timedwait(&cl->images_cond, &cl->lock, &until);
    cl->images_dirty = false;
    pthread_mutex_unlock(&cl->lock);
  }
  json_decref(seen);
  json_decref(record);
  return NULL;
}

int vd_cluster_start_images(vd_daemon *d, vs_error **err) {
  vd_cluster *cl = &d->cluster;
  return vd_cluster_thread_start(d, &cl->imager, images_thread, "the images' record", err);
}

void vd_cluster_images_kick(vd_daemon *d) {
  vd_cluster *cl = &d->cluster;
  if (!cl->enabled)
    return;
  pthread_mutex_lock(&cl->lock);
  cl->images_dirty = true;
  pthread_cond_broadcast(&cl->images_cond);
  pthread_mutex_unlock(&cl->lock);
}

int vd_cluster_images_forget(vd_cluster *cl, const char *node, int64_t *deleted, vs_error **err) {
  _cleanup_free_ char *key = vs_asprintf(IMAGES_PREFIX "%s", node);
  return vc_etcd_delete(cl->etcd, key, false, deleted, err);
}

/* ------------------------------------------------------------- the cluster's view */

/* The entries of every node's record merged by kind and manifest digest: each with the nodes
 * that hold it (in the order of the nodes' names) and every reference any of them gives it. */
static json_t *merge_records(const vc_range *r) {
  json_t *by = json_object(), *out = json_array();
  for (size_t i = 0; i < r->n; i++) {
    json_t *rec = vd_guest_record_of(&r->kvs[i]); /* a JSON object, checked */
    const char *node = r->kvs[i].key + strlen(IMAGES_PREFIX);
    json_t *images = rec ? json_object_get(rec, "Images") : NULL;
    size_t k;
    json_t *img;
    json_array_foreach(images, k, img) {
      const char *kind = str(img, "Kind"), *digest = str(img, "Digest");
      if (!kind || !digest || !vd_vm_name_valid(node) ||
          (strcmp(kind, "container") != 0 && strcmp(kind, "vm") != 0))
        continue;
      _cleanup_free_ char *id = vs_asprintf("%s %s", kind, digest);
      json_t *e = json_object_get(by, id);
      if (!e) {
        e = json_pack("{s:s, s:s, s:[], s:[]}", "Kind", kind, "Digest", digest, "References",
                      "Nodes");
        /* what another node wrote: copied only with the types the API shows */
        json_t *v = json_object_get(img, "Id");
        if (json_is_string(v))
          json_object_set(e, "Id", v);
        if (json_is_integer(v = json_object_get(img, "Size")) && json_integer_value(v) >= 0)
          json_object_set(e, "Size", v);
        if (json_is_string(v = json_object_get(img, "Registry")))
          json_object_set(e, "Registry", v);
        json_object_set_new(by, id, e);
        json_array_append(out, e);
      }
      json_array_append_new(json_object_get(e, "Nodes"), json_string(node));
      json_t *refs = json_object_get(e, "References");
      size_t j;
      json_t *ref;
      json_array_foreach(json_object_get(img, "References"), j, ref) {
        bool known = !json_is_string(ref);
        size_t m;
        json_t *have;
        json_array_foreach(refs, m, have) known |= json_equal(have, ref);
        if (!known)
          json_array_append(refs, ref);
      }
    }
    if (rec)
      json_decref(rec);
  }
  json_decref(by);
  return out;
}

/* GET /vessel/v1/cluster/images: every image some node of the cluster holds, with its nodes. */
void vd_h_cluster_images(vd_call *c) {
  vc_range r;
  if (!vd_cluster_read_prefix(c, IMAGES_PREFIX, &r))
    return;
  json_t *out = merge_records(&r);
  vc_range_clear(&r);
  vd_call_json(c, 200, out);
}

/* {"KIND REFERENCE": [nodes]} from the watch's copy, for the scheduler (NULL while not loaded):
 * each node under the references its own store gives the image (a tag made on one node only is
 * that node's). */
json_t *vd_cluster_image_index(vd_cluster *cl) {
  vc_range r;
  if (!vd_cache_range(cl, IMAGES_PREFIX, &r))
    return NULL;
  json_t *index = json_object();
  for (size_t i = 0; i < r.n; i++) {
    json_t *rec = vd_guest_record_of(&r.kvs[i]);
    const char *node = r.kvs[i].key + strlen(IMAGES_PREFIX);
    size_t k;
    json_t *img;
    json_array_foreach(rec && vd_vm_name_valid(node) ? json_object_get(rec, "Images") : NULL, k,
                       img) {
      const char *kind = str(img, "Kind");
      size_t j;
      json_t *ref;
      json_array_foreach(kind ? json_object_get(img, "References") : NULL, j, ref) {
        if (!json_is_string(ref))
          continue;
        _cleanup_free_ char *key = vs_asprintf("%s %s", kind, json_string_value(ref));
        json_t *nodes = json_object_get(index, key);
        if (!nodes)
          json_object_set_new(index, key, nodes = json_array());
        json_array_append_new(nodes, json_string(node));
      }
    }
    if (rec)
      json_decref(rec);
  }
  vc_range_clear(&r);
  return index;
}

json_t *vd_cluster_image_nodes(const json_t *index, const json_t *rec) {
  const json_t *spec = json_object_get(rec, "Spec");
  const char *image = str(spec, "Image");
  if (!index || !image)
    return NULL;
  vs_image_ref r;
  vs_error *e = NULL;
  if (vs_image_ref_parse(image, &r, &e) < 0) {
    vs_error_free(e);
    return NULL;
  }
  _cleanup_free_ char *full = vs_image_ref_string(&r);
  vs_image_ref_clear(&r);
  const char *kind = str(rec, "Kind");
  _cleanup_free_ char *key =
      vs_asprintf("%s %s", kind && !strcmp(kind, "vm") ? "vm" : "container", full);
  return json_object_get(index, key);
}
