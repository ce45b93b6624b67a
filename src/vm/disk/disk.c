/* Generic disk layer: format probing, request checks, locking, backing chains. */
#include "vm/disk/disk_int.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>

static const uint8_t qcow2_magic[4] = {'Q', 'F', 'I', 0xfb};

const char *vm_disk_format_name(vm_disk_format f) {
  switch (f) {
  case VM_DISK_FORMAT_RAW:
    return "raw";
  case VM_DISK_FORMAT_QCOW2:
    return "qcow2";
  default:
    return "auto";
  }
}

int vm_disk_format_parse(const char *name, vm_disk_format *out) {
  if (strcmp(name, "raw") == 0)
    *out = VM_DISK_FORMAT_RAW;
  else if (strcmp(name, "qcow2") == 0)
    *out = VM_DISK_FORMAT_QCOW2;
  else
    return -1;
  return 0;
}

static int parse_bool(const char *v, bool *out) {
  if (!strcmp(v, "on") || !strcmp(v, "true") || !strcmp(v, "yes") || !strcmp(v, "1"))
    *out = true;
  else if (!strcmp(v, "off") || !strcmp(v, "false") || !strcmp(v, "no") || !strcmp(v, "0"))
    *out = false;
  else
    return -1;
  return 0;
}

static int parse_disk_option(const char *kv, vm_disk_opts *opts, char **serial, vs_error **err) {
  const char *eq = strchr(kv, '=');
  if (!eq)
    return vs_error_set(err, EINVAL, "disk option '%s' needs a value (name=value)", kv);
  size_t klen = (size_t)(eq - kv);
  const char *v = eq + 1;
  if (klen == 6 && !strncmp(kv, "format", 6)) {
    if (vm_disk_format_parse(v, &opts->format) < 0)
      return vs_error_set(err, EINVAL, "unknown disk format '%s' (raw or qcow2)", v);
  } else if (klen == 8 && !strncmp(kv, "readonly", 8)) {
    if (parse_bool(v, &opts->readonly) < 0)
      return vs_error_set(err, EINVAL, "readonly=%s: expected on or off", v);
  } else if (klen == 5 && !strncmp(kv, "cache", 5)) {
    if (!strcmp(v, "writeback"))
      opts->cache = VM_DISK_CACHE_WRITEBACK;
    else if (!strcmp(v, "none"))
      opts->cache = VM_DISK_CACHE_NONE;
    else
      return vs_error_set(err, EINVAL, "cache=%s: expected writeback or none", v);
  } else if (klen == 6 && !strncmp(kv, "serial", 6)) {
    if (strlen(v) > 20)
      return vs_error_set(err, EINVAL, "serial '%s' is longer than 20 characters", v);
    free(*serial);
    *serial = vs_strdup(v);
  } else {
    return vs_error_set(err, EINVAL,
                        "unknown disk option '%.*s' (format, readonly, cache, "
                        "serial)",
                        (int)klen, kv);
  }
  return 0;
}

int vm_disk_parse_spec(const char *spec, char **path, vm_disk_opts *opts, char **serial,
                       vs_error **err) {
  *opts = (vm_disk_opts){0};
  *serial = NULL;
  size_t n = strlen(spec);
  _cleanup_free_ char *p = vs_malloc0(n + 1);
  size_t i = 0, k = 0;
  for (; i < n; i++) {
    if (spec[i] == ',') {
      if (spec[i + 1] != ',')
        break;
      i++; /* ",," is a literal comma */
    }
    p[k++] = spec[i];
  }
  if (k == 0)
    return vs_error_set(err, EINVAL, "disk '%s': no image path", spec);
  while (i < n) {
    const char *opt = spec + i + 1;
    size_t len = strcspn(opt, ",");
    _cleanup_free_ char *kv = vs_malloc0(len + 1);
    memcpy(kv, opt, len);
    if (parse_disk_option(kv, opts, serial, err) < 0) {
      free(*serial);
      *serial = NULL;
      return vs_error_wrap(err, "disk '%s'", spec);
    }
    i += 1 + len;
  }
  *path = steal_pointer(&p);
  return 0;
}

static int probe_format(disk_file *f, vm_disk_format *fmt, vs_error **err) {
  uint8_t magic[4];
  if (disk_file_read_zfill(f, magic, sizeof(magic), 0, err) < 0)
    return -1;
  *fmt = memcmp(magic, qcow2_magic, 4) == 0 ? VM_DISK_FORMAT_QCOW2 : VM_DISK_FORMAT_RAW;
  return 0;
}

static int disk_open_in_chain(const char *path, const vm_disk_opts *opts,
                              const disk_open_ctx *parent, vm_disk **out, vs_error **err) {
  disk_open_ctx ctx = {0};
  if (parent) {
    ctx = *parent;
    ctx.depth++;
  }
  if (ctx.depth > VM_DISK_MAX_CHAIN)
    return vs_error_set(err, ELOOP, "backing chain deeper than %d images at %s", VM_DISK_MAX_CHAIN,
                        path);
  vm_disk *d = vs_malloc0(sizeof(*d));
  d->file.fd = -1;
  d->readonly = opts->readonly;
  pthread_mutex_init(&d->lock, NULL);
  if (disk_file_open(&d->file, path, opts->readonly, opts->cache == VM_DISK_CACHE_NONE, err) < 0)
    goto fail;
  struct stat st;
  if (fstat(d->file.fd, &st) < 0) {
    vs_error_set(err, errno, "stat %s", path);
    goto fail;
  }
  for (int i = 0; i < ctx.depth; i++) {
    if (ctx.dev[i] == st.st_dev && ctx.ino[i] == st.st_ino) {
      vs_error_set(err, ELOOP, "backing file loop: %s is already in the chain", path);
      goto fail;
    }
  }
  ctx.dev[ctx.depth] = st.st_dev;
  ctx.ino[ctx.depth] = st.st_ino;

  vm_disk_format fmt = opts->format;
  if (fmt == VM_DISK_FORMAT_AUTO && probe_format(&d->file, &fmt, err) < 0)
    goto fail;
  int r = fmt == VM_DISK_FORMAT_QCOW2 ? disk_qcow2_open(d, &ctx, err) : disk_raw_open(d, err);
  if (r < 0) {
    vs_error_wrap(err, "open %s image %s", vm_disk_format_name(fmt), path);
    goto fail;
  }
  *out = d;
  return 0;
fail:
  disk_file_close(&d->file);
  pthread_mutex_destroy(&d->lock);
  free(d);
  return -1;
}

int vm_disk_open(const char *path, const vm_disk_opts *opts, vm_disk **out, vs_error **err) {
  vm_disk_opts defaults = {0};
  return disk_open_in_chain(path, opts ? opts : &defaults, NULL, out, err);
}

int disk_open_backing(const char *path, vm_disk_format fmt, const disk_open_ctx *ctx, vm_disk **out,
                      vs_error **err) {
  vm_disk_opts o = {.format = fmt, .readonly = true, .cache = VM_DISK_CACHE_WRITEBACK};
  return disk_open_in_chain(path, &o, ctx, out, err);
}

static int check_range(vm_disk *d, uint64_t off, uint64_t len, const char *what, vs_error **err) {
  if (off > d->size || len > d->size - off)
    return vs_error_set(err, EIO,
                        "%s of %" PRIu64 " bytes at offset %" PRIu64
                        " is beyond the end of the disk (%" PRIu64 " bytes)",
                        what, len, off, d->size);
  return 0;
}

static int check_writable(vm_disk *d, const char *what, vs_error **err) {
  if (d->readonly)
    return vs_error_set(err, EROFS, "%s on a read-only disk", what);
  return 0;
}

int vm_disk_read(vm_disk *d, void *buf, uint64_t offset, size_t len, vs_error **err) {
  if (check_range(d, offset, len, "read", err) < 0)
    return -1;
  if (len == 0)
    return 0;
  pthread_mutex_lock(&d->lock);
  int r = d->ops->read(d, buf, offset, len, err);
  pthread_mutex_unlock(&d->lock);
  return r;
}

int vm_disk_write(vm_disk *d, const void *buf, uint64_t offset, size_t len, vs_error **err) {
  if (check_writable(d, "write", err) < 0 || check_range(d, offset, len, "write", err) < 0)
    return -1;
  if (len == 0)
    return 0;
  pthread_mutex_lock(&d->lock);
  int r = d->ops->write(d, buf, offset, len, err);
  pthread_mutex_unlock(&d->lock);
  return r;
}

int vm_disk_readv(vm_disk *d, const struct iovec *iov, int iovcnt, uint64_t offset,
                  vs_error **err) {
  if (check_range(d, offset, vs_iov_total(iov, iovcnt), "read", err) < 0)
    return -1;
  pthread_mutex_lock(&d->lock);
  int r = 0;
  if (d->ops->readv) {
    r = d->ops->readv(d, iov, iovcnt, offset, err);
    iovcnt = 0;
  }
  for (int i = 0; i < iovcnt && r == 0; i++) {
    if (iov[i].iov_len)
      r = d->ops->read(d, iov[i].iov_base, offset, iov[i].iov_len, err);
    offset += iov[i].iov_len;
  }
  pthread_mutex_unlock(&d->lock);
  return r;
}

int vm_disk_writev(vm_disk *d, const struct iovec *iov, int iovcnt, uint64_t offset,
                   vs_error **err) {
  if (check_writable(d, "write", err) < 0 ||
      check_range(d, offset, vs_iov_total(iov, iovcnt), "write", err) < 0)
    return -1;
  pthread_mutex_lock(&d->lock);
  int r = 0;
  if (d->ops->writev) {
    r = d->ops->writev(d, iov, iovcnt, offset, err);
    iovcnt = 0;
  }
  for (int i = 0; i < iovcnt && r == 0; i++) {
    if (iov[i].iov_len)
      r = d->ops->write(d, iov[i].iov_base, offset, iov[i].iov_len, err);
    offset += iov[i].iov_len;
  }
  pthread_mutex_unlock(&d->lock);
  return r;
}

int vm_disk_flush(vm_disk *d, vs_error **err) {
  if (d->readonly)
    return 0;
  pthread_mutex_lock(&d->lock);
  int r = d->ops->flush(d, err);
  pthread_mutex_unlock(&d->lock);
  return r;
}

int vm_disk_discard(vm_disk *d, uint64_t offset, uint64_t len, vs_error **err) {
  if (check_writable(d, "discard", err) < 0 || check_range(d, offset, len, "discard", err) < 0)
    return -1;
  if (len == 0)
    return 0;
  pthread_mutex_lock(&d->lock);
  int r = d->ops->discard(d, offset, len, err);
  pthread_mutex_unlock(&d->lock);
  return r;
}

int vm_disk_write_zeroes(vm_disk *d, uint64_t offset, uint64_t len, vs_error **err) {
  if (check_writable(d, "write zeroes", err) < 0 ||
      check_range(d, offset, len, "write zeroes", err) < 0)
    return -1;
  if (len == 0)
    return 0;
  pthread_mutex_lock(&d->lock);
  int r = d->ops->write_zeroes(d, offset, len, err);
  pthread_mutex_unlock(&d->lock);
  return r;
}

uint64_t vm_disk_size(const vm_disk *d) { return d->size; }

bool vm_disk_is_readonly(const vm_disk *d) { return d->readonly; }

void vm_disk_get_info(vm_disk *d, vm_disk_info *info) {
  memset(info, 0, sizeof(*info));
  info->format = d->ops->name;
  info->virtual_size = d->size;
  disk_file_size(&d->file, &info->file_size, NULL);
  pthread_mutex_lock(&d->lock);
  if (d->ops->info)
    d->ops->info(d, info);
  pthread_mutex_unlock(&d->lock);
}

int vm_disk_close(vm_disk *d, vs_error **err) {
  if (!d)
    return 0;
  int r = d->ops->close(d, err);
  disk_file_close(&d->file);
  pthread_mutex_destroy(&d->lock);
  free(d);
  return r;
}

int vm_disk_create(const char *path, const vm_disk_create_opts *opts, vs_error **err) {
  switch (opts->format) {
  case VM_DISK_FORMAT_RAW:
    if (opts->backing_file)
      return vs_error_set(err, EINVAL, "create %s: raw images cannot have a backing file", path);
    return disk_raw_create(path, opts, err);
  case VM_DISK_FORMAT_QCOW2:
    return disk_qcow2_create(path, opts, err);
  default:
    return vs_error_set(err, EINVAL, "create %s: no image format given", path);
  }
}
