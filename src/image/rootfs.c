/* A container's root file system: overlayfs of the image's layers plus upper and work dirs. */
#include "image/image.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>

/* Mount options are limited to one page, so the lower layers are named through a directory of
 * short symlinks ("links/0", "links/1", ...) and mounted with relative paths from inside it. */
int vs_rootfs_mount(vs_store *s, const vs_image *img, const char *container_dir, const char *target,
                    vs_error **err) {
  _cleanup_free_ char *links = vs_asprintf("%s/links", container_dir);
  _cleanup_free_ char *upper = vs_asprintf("%s/upper", container_dir);
  _cleanup_free_ char *work = vs_asprintf("%s/work", container_dir);
  if (vs_mkdir_p(links, 0700, err) < 0 || vs_mkdir_p(upper, 0755, err) < 0 ||
      vs_mkdir_p(work, 0700, err) < 0 || vs_mkdir_p(target, 0755, err) < 0)
    return vs_error_wrap(err, "prepare root file system");
  size_t n = img->config.n_diff_ids;
  size_t cap = 64 + n * 8;
  _cleanup_free_ char *opts = vs_malloc0(cap);
  size_t off = 0;
  off += (size_t)snprintf(opts + off, cap - off, "lowerdir=");
  if (n == 0) {
    /* overlayfs needs a lower layer: an empty directory stands in for an empty image */
    _cleanup_free_ char *empty = vs_asprintf("%s/empty", links);
    if (vs_mkdir_p(empty, 0755, err) < 0)
      return -1;
    off += (size_t)snprintf(opts + off, cap - off, "empty");
  }
  for (size_t i = 0; i < n; i++) {
    const char *diff = img->config.diff_ids[i];
    if (!vs_store_has_layer(s, diff))
      return vs_error_set(err, ENOENT, "layer %s is not unpacked", diff);
    _cleanup_free_ char *layer = vs_store_layer_path(s, diff);
    _cleanup_free_ char *link = vs_asprintf("%s/%zu", links, i);
    unlink(link);
    if (symlink(layer, link) < 0)
      return vs_error_set(err, errno, "symlink %s", link);
  }
  for (size_t i = n; i-- > 0;)
    off += (size_t)snprintf(opts + off, cap - off, "%zu%s", i, i ? ":" : "");
  snprintf(opts + off, cap - off, ",upperdir=../upper,workdir=../work");

  _cleanup_close_ int cwd = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (cwd < 0)
    return vs_error_set(err, errno, "open current directory");
  if (chdir(links) < 0)
    return vs_error_set(err, errno, "chdir %s", links);
  int r = mount("overlay", target, "overlay", 0, opts);
  int e = errno;
  if (fchdir(cwd) < 0)
    vs_log_warn("could not return to the previous working directory");
  if (r < 0)
    return vs_error_set(err, e, "mount overlay on %s (%zu layers)", target, n);
  return 0;
}
