/* libFuzzer: the layer applier on arbitrary (possibly compressed) tar streams, into a scratch
 * directory that is emptied after every input. A sibling "outside" directory must stay empty:
 * anything written there is an escape and aborts the run. fuzz_cp.c builds this file with
 * FUZZ_PLAIN: the plain mode of docker cp, its options taken from the first byte, with a symbolic
 * link to the outside directory already in the root (as a container could have planted). */
#include "image/image.h"

#include <dirent.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char *top, *root, *outside, *planted;

static void remove_dirs(void) { vs_rm_rf(top, NULL); }

static void setup_dirs(void) {
  if (top)
    return;
  char tmpl[] = "/tmp/vessel-fuzz-layer-XXXXXX";
  if (!mkdtemp(tmpl))
    abort();
  top = vs_strdup(tmpl);
  root = vs_asprintf("%s/root/layer", top);
  outside = vs_asprintf("%s/root/outside", top);
  planted = vs_asprintf("%s/planted", root);
  if (vs_mkdir_p(root, 0755, NULL) < 0 || vs_mkdir_p(outside, 0755, NULL) < 0)
    abort();
  atexit(remove_dirs);
}

static bool empty_dir(const char *p) {
  DIR *d = opendir(p);
  if (!d)
    return false;
  struct dirent *de;
  int n = 0;
  while ((de = readdir(d)))
    if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
      n++;
  closedir(d);
  return n == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  setup_dirs();
  vs_layer_limits lim = {.max_bytes = 8u << 20, .max_entries = 4096, .allow_devices = false};
#ifdef FUZZ_PLAIN
  if (size < 1)
    return 0;
  lim.plain = true;
  lim.no_overwrite_dir_nondir = data[0] & 1;
  lim.owner_root = data[0] & 2;
  data++;
  size--;
  if (symlink(outside, planted) < 0)
    abort();
#endif
  int fd = memfd_create("layer", MFD_CLOEXEC);
  if (fd < 0 || write(fd, data, size) != (ssize_t)size)
    abort();
  lseek(fd, 0, SEEK_SET);
  int dirfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  vs_error *err = NULL;
  char diff[VS_DIGEST_MAX];
  vs_layer_apply(fd, dirfd, &lim, diff, &err);
  vs_error_free(err);
  close(dirfd);
  close(fd);
  if (!empty_dir(outside))
    abort(); /* the layer escaped its directory */
  vs_rm_rf(root, NULL);
  if (mkdir(root, 0755) < 0)
    abort();
  return 0;
}
