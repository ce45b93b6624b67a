/* libFuzzer harness: a hostile debugger. The input is the byte stream of a GDB remote protocol
 * connection (packets, acks, 0x03) fed to the stub of a small machine; replies go to /dev/null.
 * Nothing may crash the VMM, read or write outside guest RAM or overflow a buffer. */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "vm/gdbstub.h"
#include "vm/machine.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int kernel_fd = -1;
static int null_fd = -1;

static void make_kernel(void) {
  uint8_t img[4096] = {0};
  memcpy(img + 0x30, "RISCV\0\0\0", 8);
  memcpy(img + 0x38, "RSC\x05", 4);
  kernel_fd = memfd_create("kernel", MFD_CLOEXEC);
  if (kernel_fd < 0 || write(kernel_fd, img, sizeof(img)) != (ssize_t)sizeof(img))
    __builtin_trap();
  null_fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
  if (null_fd < 0)
    __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (kernel_fd < 0)
    make_kernel();
  char path[64];
  snprintf(path, sizeof(path), "/proc/self/fd/%d", kernel_fd);
  vm_config cfg;
  vm_config_init(&cfg);
  cfg.kernel = path;
  cfg.mem_size = 4ull << 20;
  cfg.smp = 1 + (size ? data[0] % 2 : 0);
  cfg.console_in = -1;
  cfg.console_out = -1;
  cfg.interpreter = true; /* the stub is under test, not the translator: more runs */
  vs_error *err = NULL;
  vm *m = vm_create(&cfg, &err);
  if (!m)
    __builtin_trap(); /* this configuration is valid */
  gdb_stub *s = gdb_stub_new(m, null_fd);
  if (size)
    gdb_stub_input(s, data + 1, size - 1);
  gdb_stub_free(s);
  vm_destroy(m);
  return 0;
}
