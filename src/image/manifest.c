/* OCI / Docker schema2 manifests, indexes and image configs: parsed and checked. */
#include "image/image.h"

#include <errno.h>
#include <string.h>

static void descriptor_clear(vs_descriptor *d) {
  free(d->media_type);
  free(d->digest);
  free(d->os);
  free(d->arch);
  free(d->variant);
  memset(d, 0, sizeof(*d));
}

bool vs_media_type_is_vm_file(const char *mt) {
  return mt && (!strcmp(mt, VS_MT_VM_KERNEL) || !strcmp(mt, VS_MT_VM_INITRD) ||
                !strcmp(mt, VS_MT_VM_DISK));
}

static bool layer_type_known(const char *mt) {
  if (vs_media_type_is_vm_file(mt))
    return true;
  static const char *const known[] = {
      VS_MT_OCI_LAYER,
      VS_MT_OCI_LAYER_GZIP,
      VS_MT_OCI_LAYER_ZSTD,
      VS_MT_DOCKER_LAYER_GZIP,
      "application/vnd.oci.image.layer.nondistributable.v1.tar",
      "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
      "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
      "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
  };
  for (size_t i = 0; i < ARRAY_SIZE(known); i++)
    if (!strcmp(mt, known[i]))
      return true;
  return false;
}

static int descriptor_parse(json_t *j, const char *what, vs_descriptor *d, vs_error **err) {
  if (!json_is_object(j))
    return vs_error_set(err, 0, "%s: not an object", what);
  json_t *mt = json_object_get(j, "mediaType");
  json_t *dg = json_object_get(j, "digest");
  json_t *sz = json_object_get(j, "size");
  if (mt && !json_is_string(mt))
    return vs_error_set(err, 0, "%s: mediaType is not a string", what);
  if (!json_is_string(dg))
    return vs_error_set(err, 0, "%s: missing digest", what);
  if (!vs_digest_valid(json_string_value(dg)))
    return vs_error_set(err, 0, "%s: unsupported or malformed digest \"%.80s\"", what,
                        json_string_value(dg));
  if (!json_is_integer(sz) || json_integer_value(sz) < 0)
    return vs_error_set(err, 0, "%s: missing or negative size", what);
  d->media_type = vs_strdup(mt ? json_string_value(mt) : "");
  d->digest = vs_strdup(json_string_value(dg));
  d->size = json_integer_value(sz);
  json_t *pl = json_object_get(j, "platform");
  if (json_is_object(pl)) {
    json_t *os = json_object_get(pl, "os"), *ar = json_object_get(pl, "architecture"),
           *va = json_object_get(pl, "variant");
    if (json_is_string(os))
      d->os = vs_strdup(json_string_value(os));
    if (json_is_string(ar))
      d->arch = vs_strdup(json_string_value(ar));
    if (json_is_string(va))
      d->variant = vs_strdup(json_string_value(va));
  }
  return 0;
}

void vs_manifest_clear(vs_manifest *m) {
  free(m->media_type);
  descriptor_clear(&m->config);
  for (size_t i = 0; i < m->n_layers; i++)
    descriptor_clear(&m->layers[i]);
  free(m->layers);
  for (size_t i = 0; i < m->n_manifests; i++)
    descriptor_clear(&m->manifests[i]);
  free(m->manifests);
  memset(m, 0, sizeof(*m));
}

#define MAX_DESCRIPTORS 1000

static int parse_image_manifest(json_t *root, vs_manifest *m, vs_error **err) {
  m->kind = VS_MANIFEST_IMAGE;
  if (descriptor_parse(json_object_get(root, "config"), "config", &m->config, err) < 0)
    return -1;
  json_t *layers = json_object_get(root, "layers");
  if (!json_is_array(layers))
    return vs_error_set(err, 0, "missing layers array");
  size_t n = json_array_size(layers);
  if (n > MAX_DESCRIPTORS)
    return vs_error_set(err, 0, "too many layers (%zu)", n);
  m->layers = vs_malloc0(sizeof(vs_descriptor) * (n ? n : 1));
  for (size_t i = 0; i < n; i++) {
    char what[32];
    snprintf(what, sizeof(what), "layer %zu", i);
    if (descriptor_parse(json_array_get(layers, i), what, &m->layers[i], err) < 0)
      return -1;
    m->n_layers++;
    if (!layer_type_known(m->layers[i].media_type))
      return vs_error_set(err, 0, "layer %zu: unsupported media type \"%.100s\"", i,
                          m->layers[i].media_type);
  }
  return 0;
}

static int parse_index(json_t *root, vs_manifest *m, vs_error **err) {
  m->kind = VS_MANIFEST_INDEX;
  json_t *list = json_object_get(root, "manifests");
  if (!json_is_array(list))
    return vs_error_set(err, 0, "missing manifests array");
  size_t n = json_array_size(list);
  if (n > MAX_DESCRIPTORS)
    return vs_error_set(err, 0, "too many manifests (%zu)", n);
  m->manifests = vs_malloc0(sizeof(vs_descriptor) * (n ? n : 1));
  for (size_t i = 0; i < n; i++) {
    char what[32];
    snprintf(what, sizeof(what), "manifest %zu", i);
    if (descriptor_parse(json_array_get(list, i), what, &m->manifests[i], err) < 0)
      return -1;
    m->n_manifests++;
  }
  return 0;
}

int vs_manifest_parse(const char *data, size_t len, const char *media_type, vs_manifest *out,
                      vs_error **err) {
  memset(out, 0, sizeof(*out));
  json_error_t je;
  json_t *root = json_loadb(data, len, JSON_REJECT_DUPLICATES, &je);
  if (!root)
    return vs_error_set(err, 0, "malformed manifest JSON: %s (line %d)", je.text, je.line);
  int r = -1;
  if (!json_is_object(root)) {
    vs_error_set(err, 0, "manifest is not a JSON object");
    goto out;
  }
  json_t *sv = json_object_get(root, "schemaVersion");
  if (!json_is_integer(sv) || json_integer_value(sv) != 2) {
    vs_error_set(err, 0, "unsupported manifest schemaVersion (want 2)");
    goto out;
  }
  json_t *mt = json_object_get(root, "mediaType");
  const char *type = json_is_string(mt) ? json_string_value(mt) : media_type;
  if (!type || !*type) /* OCI allows omitting it: decide by shape */
    type = json_object_get(root, "manifests") ? VS_MT_OCI_INDEX : VS_MT_OCI_MANIFEST;
  out->media_type = vs_strdup(type);
  if (!strcmp(type, VS_MT_OCI_MANIFEST) || !strcmp(type, VS_MT_DOCKER_MANIFEST))
    r = parse_image_manifest(root, out, err);
  else if (!strcmp(type, VS_MT_OCI_INDEX) || !strcmp(type, VS_MT_DOCKER_LIST))
    r = parse_index(root, out, err);
  else
    vs_error_set(err, 0, "unsupported manifest media type \"%.100s\"", type);
out:
  json_decref(root);
  if (r < 0)
    vs_manifest_clear(out);
  return r;
}

/* The compiler's target, not uname: a 32-bit build on a 64-bit kernel runs its own kind. */
#if defined(__x86_64__)
#define NATIVE_ARCH "amd64"
#elif defined(__aarch64__)
#define NATIVE_ARCH "arm64"
#elif defined(__riscv) && __riscv_xlen == 64
#define NATIVE_ARCH "riscv64"
#elif defined(__powerpc64__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define NATIVE_ARCH "ppc64le"
#elif defined(__s390x__)
#define NATIVE_ARCH "s390x"
#else /* no image names it: a pull then says which platform it found no manifest for */
#define NATIVE_ARCH "unknown"
#endif

const char *vs_platform_native(void) { return "linux/" NATIVE_ARCH; }

const char *vs_arch_native(void) { return NATIVE_ARCH; }

const vs_descriptor *vs_index_select(const vs_manifest *idx, const char *platform, vs_error **err) {
  _cleanup_free_ char *p = vs_strdup(platform ? platform : vs_platform_native());
  char *os = p, *arch = strchr(p, '/'), *variant = NULL;
  if (!arch) {
    vs_error_set(err, 0, "bad platform \"%s\" (want os/arch[/variant])", p);
    return NULL;
  }
  *arch++ = 0;
  variant = strchr(arch, '/');
  if (variant)
    *variant++ = 0;
  const vs_descriptor *fallback = NULL;
  for (size_t i = 0; i < idx->n_manifests; i++) {
    const vs_descriptor *d = &idx->manifests[i];
    if (!d->os || !d->arch || strcmp(d->os, os) != 0 || strcmp(d->arch, arch) != 0)
      continue;
    if (!variant || (d->variant && !strcmp(d->variant, variant)))
      return d;
    if (!fallback && !d->variant)
      fallback = d;
  }
  if (fallback)
    return fallback;
  vs_error_set(err, 0, "no image for platform %s/%s%s%s in the index", os, arch, variant ? "/" : "",
               variant ? variant : "");
  return NULL;
}

void vs_image_config_clear(vs_image_config *c) {
  json_decref(c->root);
  for (size_t i = 0; i < c->n_diff_ids; i++)
    free(c->diff_ids[i]);
  free(c->diff_ids);
  free(c->os);
  free(c->arch);
  free(c->created);
  memset(c, 0, sizeof(*c));
}

int vs_image_config_parse(const char *data, size_t len, vs_image_config *out, vs_error **err) {
  memset(out, 0, sizeof(*out));
  json_error_t je;
  out->root = json_loadb(data, len, JSON_REJECT_DUPLICATES, &je);
  if (!out->root)
    return vs_error_set(err, 0, "malformed image config JSON: %s (line %d)", je.text, je.line);
  if (!json_is_object(out->root)) {
    vs_image_config_clear(out);
    return vs_error_set(err, 0, "image config is not a JSON object");
  }
  json_t *rootfs = json_object_get(out->root, "rootfs");
  json_t *ids = json_object_get(rootfs, "diff_ids");
  if (!json_is_array(ids)) {
    vs_image_config_clear(out);
    return vs_error_set(err, 0, "image config: missing rootfs.diff_ids");
  }
  size_t n = json_array_size(ids);
  if (n > MAX_DESCRIPTORS) {
    vs_image_config_clear(out);
    return vs_error_set(err, 0, "image config: too many diff_ids");
  }
  out->diff_ids = vs_malloc0(sizeof(char *) * (n ? n : 1));
  for (size_t i = 0; i < n; i++) {
    const char *d = json_string_value(json_array_get(ids, i));
    if (!vs_digest_valid(d)) {
      vs_image_config_clear(out);
      return vs_error_set(err, 0, "image config: diff_id %zu is not a sha256 digest", i);
    }
    out->diff_ids[out->n_diff_ids++] = vs_strdup(d);
  }
  json_t *cfg = json_object_get(out->root, "config");
  if (cfg && !json_is_object(cfg) && !json_is_null(cfg)) {
    vs_image_config_clear(out);
    return vs_error_set(err, 0, "image config: \"config\" is not an object");
  }
  const char *s;
  if ((s = json_string_value(json_object_get(out->root, "os"))))
    out->os = vs_strdup(s);
  if ((s = json_string_value(json_object_get(out->root, "architecture"))))
    out->arch = vs_strdup(s);
  if ((s = json_string_value(json_object_get(out->root, "created"))))
    out->created = vs_strdup(s);
  return 0;
}
