/* Protection against CVE-2019-5736: a process in the container could open /proc/<pid>/exe of
 * a runtime process that joined its namespaces (or that it made execute /proc/self/exe) and,
 * once the runtime has exited, write to the runtime's binary through that handle. So every
 * runtime process that may enter a container runs from a file nobody can write to:
 *
 * - preferably the binary itself on a private read-only mount: open_tree(OPEN_TREE_CLONE)
 *   makes a detached bind mount of it (attached nowhere, so no mount table sees it), which we
 *   make read-only and execute. A write through /proc/<pid>/exe then fails with EROFS, and
 *   making that mount writable again needs CAP_SYS_ADMIN in the host's user namespace. No copy
 *   is made: the image is the page cache of the binary, which the first exec already read.
 *   This is what runc's "bindfd" did with a temporary mount point;
 * - otherwise (no open_tree: old kernel, no CAP_SYS_ADMIN) a sealed memfd copy.
 *
 * A binary that already lives on a read-only mount (or in a sealed memfd) is not re-executed. */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/mount.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>

#define SEALS (F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE)

static bool exe_is_protected(int fd) {
  int seals = fcntl(fd, F_GET_SEALS);
  if (seals >= 0 && (seals & SEALS) == SEALS)
    return true;
  struct statvfs sv;
  return fstatvfs(fd, &sv) == 0 && (sv.f_flag & ST_RDONLY);
}

static bool running_protected(void) {
  int fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return false;
  bool r = exe_is_protected(fd);
  close(fd);
  return r;
}

/* Returns only on failure, with errno set; the caller falls back to the memfd copy. */
static void exec_from_readonly_mount(char **argv) {
  int fd =
      (int)syscall(SYS_open_tree, AT_FDCWD, "/proc/self/exe", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
  if (fd < 0)
    return;
  struct mount_attr attr = {.attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV};
  if (syscall(SYS_mount_setattr, fd, "", AT_EMPTY_PATH, &attr, sizeof(attr)) == 0)
    syscall(SYS_execveat, fd, "", argv, environ, AT_EMPTY_PATH);
  int e = errno;
  close(fd);
  errno = e;
}

static int exec_from_sealed_copy(char **argv, vs_error **err) {
  _cleanup_close_ int src = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
  if (src < 0)
    return vs_error_set(err, errno, "open /proc/self/exe");
  struct stat sb;
  if (fstat(src, &sb) < 0)
    return vs_error_set(err, errno, "stat /proc/self/exe");
  _cleanup_close_ int mfd = memfd_create("vessel-runtime", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (mfd < 0)
    return vs_error_set(err, errno, "memfd_create");
  off_t left = sb.st_size;
  while (left > 0) {
    ssize_t n = sendfile(mfd, src, NULL, (size_t)left);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return vs_error_set(err, n < 0 ? errno : EIO, "copy the runtime binary");
    left -= n;
  }
  if (fcntl(mfd, F_ADD_SEALS, SEALS) < 0)
    return vs_error_set(err, errno, "seal the runtime copy");
  fexecve(mfd, argv, environ);
  return vs_error_set(err, errno, "re-execute from the sealed copy");
}

int ctr_reexec_sealed(char **argv, vs_error **err) {
  if (running_protected())
    return 0;
  /* VESSEL_RUNTIME_SEAL=memfd forces the copy (tests exercise both ways). */
  const char *how = getenv("VESSEL_RUNTIME_SEAL");
  if (!how || strcmp(how, "memfd") != 0)
    exec_from_readonly_mount(argv);
  return exec_from_sealed_copy(argv, err);
}
