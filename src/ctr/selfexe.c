/* Protection against CVE-2019-5736: a process in the container could open /proc/<pid>/exe of
 * a runtime process that joined its namespaces and write to the runtime's binary. We run from a
 * sealed memfd copy instead, so there is nothing on the host to write to. */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/stat.h>

#define SEALS (F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE)

static bool running_sealed(void) {
  int fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return false;
  int seals = fcntl(fd, F_GET_SEALS);
  close(fd);
  return seals >= 0 && (seals & SEALS) == SEALS;
}

int ctr_reexec_sealed(char **argv, vs_error **err) {
  if (running_sealed())
    return 0;
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
