/* Placement of one guest on the cluster's nodes: a pure function of the nodes, the guests
 * already placed and the request, as Kubernetes' scheduler does it in two steps. Filter: the
 * node is ready and schedulable, is the pinned one if any, has the labels the request selects,
 * hosts no guest the request is anti-affine to (and one it is affine to, when such a guest
 * exists anywhere), and has room for the request within its capacity times its overcommit
 * ratio, counting every guest placed on it (running or not). Score: spread — fewest guests
 * with the same labels (replicas of one service apart), then the lowest load after placement
 * (the larger of its CPU and memory fractions: least-allocated), then the name.
 *
 * Image locality, as Kubernetes' ImageLocality score, but below spread: a node that holds the
 * guest's image already (the request's ImageNodes) wins over one that does not when their loads
 * after placement are within IMAGE_LOAD_SLACK of each other. It saves the pull (and lets a
 * guest of an image that is in no registry land where the image is) without piling the guests
 * of one image onto one node: a node fuller by more than the slack still loses. */
#include "cluster/internal.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Loads (fractions of capacity) this close count as equal for image locality. */
#define IMAGE_LOAD_SLACK 0.05

/* Figures are doubles, as JSON gives them: a guest's or node's numbers come from etcd, and a
 * cast of 1e300 to an integer would be undefined. Bytes are exact in a double up to 8 PiB. */
typedef struct node_use {
  double cpus, memory;
  size_t guests, replicas;
  const char *anti; /* a guest on it the request is anti-affine to */
  bool affine;      /* hosts a guest the request is affine to */
} node_use;

/* Every key of want is in labels with the same value (an empty want matches everything). */
static bool labels_match(const json_t *labels, const json_t *want) {
  const char *k;
  json_t *v;
  if (!json_is_object(want) || json_object_size(want) == 0)
    return true;
  if (!json_is_object(labels))
    return false;
  json_object_foreach((json_t *)want, k, v) {
    const char *have = json_string_value(json_object_get(labels, k));
    if (!have || !json_is_string(v) || strcmp(have, json_string_value(v)) != 0)
      return false;
  }
  return true;
}

static bool has_labels(const json_t *o) { return json_is_object(o) && json_object_size(o) > 0; }

static char *labels_text(const json_t *labels) {
  char *s = vs_strdup("");
  const char *k;
  json_t *v;
  json_object_foreach((json_t *)labels, k, v) {
    char *n = vs_asprintf("%s%s%s=%s", s, *s ? "," : "", k,
                          json_is_string(v) ? json_string_value(v) : "?");
    free(s);
    s = n;
  }
  return s;
}

static double num(const json_t *o, const char *f, double dflt) {
  json_t *v = json_object_get(o, f);
  return json_is_number(v) ? json_number_value(v) : dflt;
}

/* Whole MiB of a byte count, for messages: truncated as an integer division would. */
static double mib(double bytes) { return trunc(bytes / 1048576.0); }

static const char *str(const json_t *o, const char *f) {
  return json_string_value(json_object_get(o, f));
}

static void account(const json_t *node, const json_t *guests, const json_t *req, node_use *u) {
  memset(u, 0, sizeof(*u));
  const char *name = str(node, "Name");
  const json_t *anti = json_object_get(req, "AntiAffinity");
  const json_t *aff = json_object_get(req, "Affinity");
  const json_t *mine = json_object_get(req, "Labels");
  size_t i;
  json_t *g;
  json_array_foreach((json_t *)guests, i, g) {
    const char *on = str(g, "Node");
    if (!on || !name || strcmp(on, name) != 0)
      continue;
    u->cpus += num(g, "Cpus", 0);
    u->memory += num(g, "Memory", 0);
    u->guests++;
    const json_t *gl = json_object_get(g, "Labels");
    if (has_labels(mine) && json_equal((json_t *)gl, (json_t *)mine))
      u->replicas++;
    if (has_labels(anti) && labels_match(gl, anti) && !u->anti)
      u->anti = str(g, "Name");
    if (has_labels(aff) && labels_match(gl, aff))
      u->affine = true;
  }
}

static bool affinity_exists(const json_t *guests, const json_t *req) {
  const json_t *aff = json_object_get(req, "Affinity");
  if (!has_labels(aff))
    return false;
  size_t i;
  json_t *g;
  json_array_foreach((json_t *)guests, i,
                     g) if (str(g, "Node") &&
                            labels_match(json_object_get(g, "Labels"), aff)) return true;
  return false;
}

/* Why node cannot take req (NULL: it can); *load gets its load after placement. */
static char *filter(const json_t *node, const json_t *guests, const json_t *req, bool need_affine,
                    double *load, size_t *replicas) {
  const char *pin = str(req, "Node");
  const char *name = str(node, "Name");
  if (pin && *pin && strcmp(pin, name) != 0)
    return vs_strdup("not the node asked for");
  const char *status = str(node, "Status");
  if (!status || strcmp(status, "ready") != 0)
    return vs_strdup("down");
  if (json_is_true(json_object_get(node, "Draining")))
    return vs_strdup("draining");
  if (json_is_true(json_object_get(node, "Unschedulable")))
    return vs_strdup("cordoned");
  const json_t *sel = json_object_get(req, "NodeSelector");
  if (!labels_match(json_object_get(node, "Labels"), sel)) {
    _cleanup_free_ char *t = labels_text(sel);
    return vs_asprintf("its labels do not match %s", t);
  }
  node_use u;
  account(node, guests, req, &u);
  if (u.anti) {
    _cleanup_free_ char *t = labels_text(json_object_get(req, "AntiAffinity"));
    return vs_asprintf("anti-affinity: it hosts %s (%s)", u.anti, t);
  }
  if (need_affine && !u.affine) {
    _cleanup_free_ char *t = labels_text(json_object_get(req, "Affinity"));
    return vs_asprintf("affinity: it hosts no guest with %s", t);
  }
  double cap_cpus = num(node, "Cpus", 0) * num(node, "CpuOvercommit", 1.0);
  double cap_mem = num(node, "Memory", 0) * num(node, "MemoryOvercommit", 1.0);
  double want_cpus = num(req, "Cpus", 1), want_mem = num(req, "Memory", 0);
  double free_cpus = cap_cpus - u.cpus, free_mem = cap_mem - u.memory;
  if (want_cpus > free_cpus + 1e-9 || want_mem > free_mem) {
    return vs_asprintf("%.2f CPUs and %.0f MiB free of %.2f and %.0f MiB (needs %.2f and %.0f MiB)",
                       free_cpus > 0 ? free_cpus : 0.0, mib(free_mem > 0 ? free_mem : 0), cap_cpus,
                       mib(cap_mem), want_cpus, mib(want_mem));
  }
  double lc = cap_cpus > 0 ? (u.cpus + want_cpus) / cap_cpus : 1.0;
  double lm = cap_mem > 0 ? (u.memory + want_mem) / cap_mem : 1.0;
  *load = lc > lm ? lc : lm;
  *replicas = u.replicas;
  return NULL;
}

int vc_place_check(const json_t *nodes, const json_t *guests, const json_t *req, vs_error **err) {
  if (!json_is_array(nodes) || !json_is_array(guests) || !json_is_object(req))
    return vs_error_set(err, EINVAL,
                        "placement: expected arrays of nodes and guests and a "
                        "request object");
  const char *f[] = {"Cpus", "Memory"};
  for (size_t i = 0; i < ARRAY_SIZE(f); i++) {
    json_t *v = json_object_get(req, f[i]);
    if (v && (!json_is_number(v) || json_number_value(v) < 0 || isnan(json_number_value(v))))
      return vs_error_set(err, EINVAL, "placement: %s: expected a number of 0 or more", f[i]);
  }
  json_t *have = json_object_get(req, "ImageNodes");
  if (have && !json_is_null(have)) {
    size_t k;
    json_t *x;
    if (!json_is_array(have))
      return vs_error_set(err, EINVAL, "placement: ImageNodes: expected an array of node names");
    json_array_foreach(have, k, x) if (!json_is_string(x)) return vs_error_set(
        err, EINVAL, "placement: ImageNodes[%zu]: expected a node name", k);
  }
  const char *o[] = {"Labels", "NodeSelector", "AntiAffinity", "Affinity"};
  for (size_t i = 0; i < ARRAY_SIZE(o); i++) {
    json_t *v = json_object_get(req, o[i]);
    const char *k;
    json_t *x;
    if (v && !json_is_null(v) && !json_is_object(v))
      return vs_error_set(err, EINVAL, "placement: %s: expected an object of labels", o[i]);
    json_object_foreach(v, k, x) if (!json_is_string(x)) return vs_error_set(
        err, EINVAL, "placement: %s.%s: expected a string", o[i], k);
  }
  size_t i;
  json_t *n;
  json_array_foreach((json_t *)nodes, i, n) if (
      !json_is_object(n) ||
      !str(n, "Name")) return vs_error_set(err, EINVAL,
                                           "placement: nodes[%zu]: expected an object with a Name",
                                           i);
  return 0;
}

/* Whether the request's image is on node already (ImageNodes: checked by vc_place_check). */
static bool has_image(const json_t *req, const char *node) {
  size_t i;
  json_t *n;
  json_array_foreach(json_object_get(req, "ImageNodes"), i,
                     n) if (!strcmp(json_string_value(n), node)) return true;
  return false;
}

/* Of two nodes as loaded as spread sees them, whether the one with load and image is better. */
static bool better_load(double load, bool image, double best_load, bool best_image) {
  if (image != best_image && fabs(load - best_load) <= IMAGE_LOAD_SLACK)
    return image;
  return load < best_load - 1e-12;
}

int vc_place(const json_t *nodes, const json_t *guests, const json_t *req, char **node,
             char **reason, vs_error **err) {
  *node = *reason = NULL;
  if (vc_place_check(nodes, guests, req, err) < 0)
    return -1;
  bool need_affine = affinity_exists(guests, req);
  const json_t *best = NULL;
  double best_load = 0;
  size_t best_replicas = 0;
  bool best_image = false;
  char *why = vs_strdup("");
  size_t i;
  json_t *n;
  json_array_foreach((json_t *)nodes, i, n) {
    double load = 0;
    size_t replicas = 0;
    char *no = filter(n, guests, req, need_affine, &load, &replicas);
    if (no) {
      const char *pin = str(req, "Node");
      if (!(pin && *pin && strcmp(pin, str(n, "Name")) != 0)) {
        char *next = vs_asprintf("%s%s%s: %s", why, *why ? "; " : "", str(n, "Name"), no);
        free(why);
        why = next;
      }
      free(no);
      continue;
    }
    bool image = has_image(req, str(n, "Name"));
    if (!best || replicas < best_replicas ||
        (replicas == best_replicas && better_load(load, image, best_load, best_image))) {
      best = n;
      best_load = load;
      best_replicas = replicas;
      best_image = image;
    }
  }
  if (best) {
    free(why);
    *node = vs_strdup(str(best, "Name"));
    return 0;
  }
  const char *pin = str(req, "Node");
  if (pin && *pin && !*why)
    *reason = vs_asprintf("no node %s in the cluster", pin);
  else if (!*why)
    *reason = vs_strdup("the cluster has no nodes");
  else
    *reason = vs_asprintf("no node can take %.2f CPUs and %.0f MiB: %s", num(req, "Cpus", 1),
                          mib(num(req, "Memory", 0)), why);
  free(why);
  return 0;
}
