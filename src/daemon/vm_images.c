/* VM images (/vessel/v1/images/vm): a VM's machine as an OCI artifact, in a store of its own
 * (<data-root>/vm-images: the same code as the container images' store, kept apart so that
 * `docker images` never lists a machine).
 *
 * An image is an OCI image manifest whose config has the media type VS_MT_VM_CONFIG and whose
 * layers are the machine's files, each with its own media type: the kernel, the initramfs (if
 * any) and the disk (a standalone qcow2, if any). The config keeps what a new VM defaults to
 * (vCPUs, memory, kernel command line) under "vessel.vm", and rootfs.diff_ids (the layers' own
 * digests) so that the store and the registry client load and move it like any image. A VM made
 * from an image boots the kernel and initramfs blobs of the store and gets a qcow2 overlay on
 * the disk blob: creating one copies nothing. */
#include "daemon/vms.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define VM_IMAGE_FILE_MAX (64ULL << 30)
/* What an imported image's VMs default to when the import does not say (as a created VM's). */
#define VM_IMAGE_DEFAULT_MEMORY (256ULL << 20)
#define VM_IMAGE_DEFAULT_APPEND "console=ttyS0"

/* A file into the store as a blob, streamed (disks are large). */
static int put_file_blob(vs_store *s, const char *path, char digest[VS_DIGEST_MAX], int64_t *size,
                         vs_error **err) {
  _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return vs_error_set(err, errno, "open %s", path);
  vs_blob_writer *w = vs_blob_writer_new(s, err);
  if (!w)
    return -1;
  _cleanup_free_ char *buf = vs_malloc0(1 << 20);
  int r = 0;
  for (;;) {
    ssize_t n = read(fd, buf, 1 << 20);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      r = vs_error_set(err, errno, "read %s", path);
      break;
    }
    if (n == 0)
      break;
    if (vs_blob_writer_write(w, buf, (size_t)n, err) < 0) {
      r = -1;
      break;
    }
    if (vs_blob_writer_size(w) > VM_IMAGE_FILE_MAX) {
      r = vs_error_set(err, EFBIG, "%s: larger than %llu GiB", path, VM_IMAGE_FILE_MAX >> 30);
      break;
    }
  }
  *size = (int64_t)vs_blob_writer_size(w);
  if (r == 0)
    r = vs_blob_writer_commit(w, NULL, digest, err);
  vs_blob_writer_free(w);
  return r;
}

/* A qcow2 image with a backing file cannot travel alone: its header's backing file offset
 * (bytes 8 to 15, big-endian) is not zero. *backed tells which; an error if it is no qcow2. */
static int disk_has_backing_file(const char *path, bool *backed, vs_error **err) {
  _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
  uint8_t h[16];
  if (fd < 0 || pread(fd, h, sizeof(h), 0) != (ssize_t)sizeof(h))
    return vs_error_set(err, errno ? errno : EIO, "read the header of %s", path);
  if (memcmp(h, "QFI\xfb", 4) != 0)
    return vs_error_set(err, EINVAL, "%s is not a qcow2 image", path);
  uint64_t off = 0;
  for (int i = 8; i < 16; i++)
    off = off << 8 | h[i];
  *backed = off != 0;
  return 0;
}

static char *full_reference(const char *ref, vs_error **err) {
  vs_image_ref r;
  if (vs_image_ref_parse(ref, &r, err) < 0)
    return NULL;
  char *full = vs_image_ref_string(&r);
  vs_image_ref_clear(&r);
  return full;
}

/* An overlay cannot travel alone (its base is a file of this host): its whole chain flattened
 * into one standalone qcow2 at out (vessel-vmm img convert, the VMM's own disk code, which
 * leaves clusters of zeros unallocated). */
static int flatten_disk(vd_daemon *d, const char *disk, const char *out, vs_error **err) {
  unlink(out); /* a previous push's, cut short */
  _cleanup_free_ char *vmm = vd_vmm_path(d);
  char *argv[] = {vmm, "img", "convert", "-f", "qcow2", (char *)disk, (char *)out, NULL};
  vs_spawn_opts o = VS_SPAWN_OPTS_INIT;
  o.stdout_fd = VS_SPAWN_DEVNULL;
  pid_t pid;
  int status;
  if (vs_spawn(argv, &o, &pid, err) < 0 || vs_wait_pid(pid, &status, err) < 0)
    return vs_error_wrap(err, "flatten the VM's disk");
  if (status != 0) {
    unlink(out);
    return vs_error_set(err, 0, "flatten the VM's disk: vessel-vmm img convert %s failed", disk);
  }
  return 0;
}

/* A machine's files (kernel required; initramfs and standalone qcow2 disk optional) and the
 * defaults of the VMs made from it ({Cpus, Memory, Append}) into the store as the image full. */
static int store_machine(vs_store *s, const char *kernel, const char *initrd, const char *disk,
                         json_t *defaults, const char *full, char digest_out[VS_DIGEST_MAX],
                         vs_error **err) {
  struct {
    const char *path, *media_type, *title;
  } files[] = {
      {kernel, VS_MT_VM_KERNEL, "kernel"},
      {initrd, VS_MT_VM_INITRD, "initrd"},
      {disk, VS_MT_VM_DISK, "disk.qcow2"},
  };
  _cleanup_json_ json_t *layers = json_array();
  _cleanup_json_ json_t *diff_ids = json_array();
  for (size_t i = 0; i < ARRAY_SIZE(files); i++) {
    if (!files[i].path || !*files[i].path)
      continue;
    char digest[VS_DIGEST_MAX];
    int64_t size = 0;
    if (put_file_blob(s, files[i].path, digest, &size, err) < 0)
      return vs_error_wrap(err, "the machine's %s", files[i].title);
    json_array_append_new(layers,
                          json_pack("{s:s, s:s, s:I, s:{s:s}}", "mediaType", files[i].media_type,
                                    "digest", digest, "size", (json_int_t)size, "annotations",
                                    "org.opencontainers.image.title", files[i].title));
    json_array_append_new(diff_ids, json_string(digest));
  }
  char *now = vd_now();
  json_t *config = json_pack("{s:s, s:s, s:s, s:{s:s, s:O}, s:O}", "architecture", "riscv64", "os",
                             "linux", "created", now, "rootfs", "type", "layers", "diff_ids",
                             diff_ids, "vessel.vm", defaults);
  free(now);
  _cleanup_free_ char *config_text = json_dumps(config, JSON_COMPACT | JSON_SORT_KEYS);
  json_decref(config);
  char config_digest[VS_DIGEST_MAX];
  if (vs_store_put_blob(s, NULL, config_text, strlen(config_text), config_digest, err) < 0)
    return -1;
  json_t *manifest =
      json_pack("{s:i, s:s, s:{s:s, s:s, s:I}, s:O}", "schemaVersion", 2, "mediaType",
                VS_MT_OCI_MANIFEST, "config", "mediaType", VS_MT_VM_CONFIG, "digest", config_digest,
                "size", (json_int_t)strlen(config_text), "layers", layers);
  _cleanup_free_ char *manifest_text = json_dumps(manifest, JSON_COMPACT | JSON_SORT_KEYS);
  json_decref(manifest);
  if (vs_store_put_blob(s, NULL, manifest_text, strlen(manifest_text), digest_out, err) < 0 ||
      vs_store_tag_set(s, full, digest_out, err) < 0)
    return -1;
  return 0;
}

int vd_vm_image_commit(vd_daemon *d, vd_vm *vm, const char *ref, char **full_out,
                       char digest_out[VS_DIGEST_MAX], vs_error **err) {
  vd_vms *t = d->vms;
  _cleanup_free_ char *full = full_reference(ref, err);
  if (!full)
    return vs_error_wrap(err, "invalid reference format");
  pthread_mutex_lock(&t->lock);
  _cleanup_json_ json_t *cfg = json_deep_copy(json_object_get(vm->rec, "Config"));
  const char *dp = json_string_value(json_object_get(vm->rec, "DiskPath"));
  _cleanup_free_ char *disk = dp && *dp ? vs_strdup(dp) : NULL;
  pthread_mutex_unlock(&t->lock);
  /* an overlay (a VM made from an image, or snapshotted) is pushed flattened */
  bool backed = false;
  if (disk && disk_has_backing_file(disk, &backed, err) < 0)
    return -1;
  _cleanup_free_ char *flat = backed ? vs_asprintf("%s/push-disk.qcow2", vm->dir) : NULL;
  if (flat && flatten_disk(d, disk, flat, err) < 0)
    return -1;
  _cleanup_json_ json_t *defaults =
      json_pack("{s:O, s:O, s:O}", "Cpus", json_object_get(cfg, "Cpus"), "Memory",
                json_object_get(cfg, "Memory"), "Append", json_object_get(cfg, "Append"));
  int r = store_machine(t->images, json_string_value(json_object_get(cfg, "Kernel")),
                        json_string_value(json_object_get(cfg, "Initrd")), flat ? flat : disk,
                        defaults, full, digest_out, err);
  if (flat)
    unlink(flat); /* its blob is in the store now */
  if (r < 0)
    return -1;
  *full_out = vs_strdup(full);
  return 0;
}

static int import_file(const char *field, const char *path, bool required, vs_error **err) {
  if (!path || !*path)
    return required ? vs_error_set(err, EINVAL, "%s: the path of a file is needed", field) : 0;
  if (path[0] != '/')
    return vs_error_set(err, EINVAL, "%s %s: an absolute path is needed", field, path);
  struct stat st;
  if (stat(path, &st) < 0)
    return vs_error_set(err, errno, "%s %s", field, path);
  if (!S_ISREG(st.st_mode))
    return vs_error_set(err, EINVAL, "%s %s: not a regular file", field, path);
  return access(path, R_OK) < 0 ? vs_error_set(err, errno, "%s %s", field, path) : 0;
}

int vd_vm_image_import(vd_daemon *d, json_t *body, char **full_out, char digest_out[VS_DIGEST_MAX],
                       vs_error **err) {
  static const char *const known[] = {"Ref",  "Kernel", "Initrd", "Disk",
                                      "Cpus", "Memory", "Append"};
  const char *ref = NULL, *kernel = NULL, *initrd = NULL, *disk = NULL, *append = NULL;
  int64_t cpus = 1;
  uint64_t mem = 0;
  if (vd_body_known_fields(body, known, ARRAY_SIZE(known), "a VM image import", err) < 0 ||
      vs_json_get_string(body, "Ref", true, &ref, err) < 0 ||
      vs_json_get_string(body, "Kernel", true, &kernel, err) < 0 ||
      vs_json_get_string(body, "Initrd", false, &initrd, err) < 0 ||
      vs_json_get_string(body, "Disk", false, &disk, err) < 0 ||
      vs_json_get_string(body, "Append", false, &append, err) < 0 ||
      vs_json_get_int(body, "Cpus", false, &cpus, err) < 0 ||
      vd_body_size(body, "Memory", VM_IMAGE_DEFAULT_MEMORY, &mem, err) < 0) {
    (*err)->errnum = EINVAL; /* a missing or mistyped field: the request is wrong (400) */
    return -1;
  }
  if (!json_object_get(body, "Cpus"))
    cpus = 1;
  if (cpus < 1 || cpus > 8)
    return vs_error_set(err, EINVAL, "Cpus %lld: a VM has 1 to 8 vCPUs", (long long)cpus);
  if (mem < (16ULL << 20) || mem > (64ULL << 30))
    return vs_error_set(err, EINVAL, "Memory %llu: a VM has 16 MiB to 64 GiB",
                        (unsigned long long)mem);
  _cleanup_free_ char *full = full_reference(ref, err);
  if (!full) {
    (*err)->errnum = EINVAL;
    return vs_error_wrap(err, "Ref: invalid reference format");
  }
  if (import_file("Kernel", kernel, true, err) < 0 ||
      import_file("Initrd", initrd, false, err) < 0 || import_file("Disk", disk, false, err) < 0)
    return -1;
  bool backed = false;
  if (disk && *disk && disk_has_backing_file(disk, &backed, err) < 0)
    return vs_error_wrap(err, "Disk");
  if (backed)
    return vs_error_set(err, EINVAL,
                        "Disk %s has a backing file: an image's disk must be a standalone qcow2 "
                        "(qemu-img convert -O qcow2 makes one)",
                        disk);
  _cleanup_json_ json_t *defaults =
      json_pack("{s:I, s:I, s:s}", "Cpus", (json_int_t)cpus, "Memory", (json_int_t)mem, "Append",
                append ? append : VM_IMAGE_DEFAULT_APPEND);
  if (store_machine(d->vms->images, kernel, initrd, disk, defaults, full, digest_out, err) < 0)
    return -1;
  *full_out = vs_strdup(full);
  return 0;
}

/* The machine of an image: its files' paths in the store and its defaults (loaded image). */
static int image_machine(vs_store *s, const vs_image *img, json_t *body, vs_error **err) {
  json_t *vmcfg = json_object_get(img->config.root, "vessel.vm");
  if (!json_is_object(vmcfg))
    return vs_error_set(err, EINVAL, "%s is not a VM image (its config has no vessel.vm)",
                        img->manifest_digest);
  static const struct {
    const char *media_type, *field;
  } files[] = {{VS_MT_VM_KERNEL, "Kernel"}, {VS_MT_VM_INITRD, "Initrd"}, {VS_MT_VM_DISK, "Disk"}};
  bool kernel = false;
  for (size_t i = 0; i < img->manifest.n_layers; i++)
    for (size_t k = 0; k < ARRAY_SIZE(files); k++) {
      const vs_descriptor *l = &img->manifest.layers[i];
      if (strcmp(l->media_type, files[k].media_type) != 0)
        continue;
      kernel = kernel || k == 0;
      if (json_object_get(body, files[k].field))
        continue; /* the request's own (a custom kernel over the image's disk) */
      char *p = vs_store_blob_path(s, l->digest);
      json_object_set_new(body, files[k].field, json_string(p));
      free(p);
    }
  if (!kernel && !json_object_get(body, "Kernel"))
    return vs_error_set(err, EINVAL, "VM image %s has no kernel", img->manifest_digest);
  if (!json_object_get(body, "Initrd"))
    json_object_set_new(body, "Initrd", json_string(""));
  static const char *const defaults[] = {"Cpus", "Memory", "Append"};
  for (size_t k = 0; k < ARRAY_SIZE(defaults); k++) {
    json_t *v = json_object_get(vmcfg, defaults[k]);
    if (v && !json_object_get(body, defaults[k]))
      json_object_set(body, defaults[k], v);
  }
  return 0;
}

int vd_vm_image_prepare(vd_daemon *d, json_t *body, const vs_registry_opts *o, char **full_out,
                        vs_error **err) {
  vs_store *s = d->vms->images;
  const char *ref = json_string_value(json_object_get(body, "Image"));
  if (!ref || !*ref)
    return vs_error_set(err, EINVAL, "Image: expected a reference such as registry/vm:tag");
  _cleanup_free_ char *full = full_reference(ref, err);
  if (!full)
    return vs_error_wrap(err, "Image");
  vs_image img;
  vs_error *e = NULL;
  if (vs_store_resolve(s, full, &img, &e) < 0) {
    vs_error_free(e);
    char digest[VS_DIGEST_MAX];
    /* a VM of the cluster placed on a node that never had its image comes here too: the
     * message says where the image was looked for */
    if (vs_image_pull(s, full, o, digest, err) < 0)
      return vs_error_wrap(err,
                           "VM image %s: not in this host's image store, and pulling it from "
                           "its registry failed",
                           full);
    if (vs_store_resolve(s, full, &img, err) < 0)
      return -1;
  }
  int r = image_machine(s, &img, body, err);
  if (r < 0)
    vs_error_wrap(err, "Image %s", ref);
  vs_image_clear(&img);
  json_object_del(body, "Image");
  if (r == 0)
    *full_out = vs_strdup(full);
  return r;
}

json_t *vd_vm_images_list(vd_daemon *d, vs_error **err) {
  json_t *tags = vs_store_tags(d->vms->images, err);
  if (!tags)
    return NULL;
  json_t *a = json_array();
  const char *name;
  json_t *v;
  json_object_foreach(tags, name, v) {
    json_array_append_new(a, json_pack("{s:s, s:O}", "Ref", name, "Digest", v));
  }
  json_decref(tags);
  return a;
}
