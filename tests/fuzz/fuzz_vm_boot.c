/* libFuzzer harness: the kernel loader (RISC-V Image header, EFI/PE section table, ELF, gzip) gets
 * arbitrary bytes as the kernel file; vm_create must load it or fail with an error, never crash. */
#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

#include "vm/vm.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  int fd = memfd_create("kernel", MFD_CLOEXEC);
  if (fd < 0)
    return 0;
  if (write(fd, data, size) != (ssize_t)size) {
    close(fd);
    return 0;
  }
  char path[64];
  snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
  vm_config cfg;
  vm_config_init(&cfg);
  cfg.kernel = path;
  cfg.mem_size = 8ull << 20;
  cfg.console_in = -1;
  cfg.console_out = -1;
  vs_error *err = NULL;
  vm *m = vm_create(&cfg, &err);
  if (m)
    vm_destroy(m);
  else if (!err || !err->msg || !*err->msg)
    __builtin_trap(); /* a failure must say why */
  vs_error_free(err);
  close(fd);
  return 0;
}
