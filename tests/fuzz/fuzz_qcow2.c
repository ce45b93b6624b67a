/* libFuzzer harness for the qcow2 reader/writer: the input is an image file. It is opened
 * read-write (so the allocation and refcount paths run too) and a few ranges are read, written,
 * zeroed and discarded. Anything may fail with an error; nothing may crash, hang or touch memory
 * it does not own. */
#include "vm/disk/disk.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

static void exercise(vm_disk *d) {
  static uint8_t buf[3 * 65536];
  uint64_t size = vm_disk_size(d);
  const uint64_t offs[] = {0, 511, 65536 - 100, size / 2, size > 4096 ? size - 4096 : 0};
  for (size_t i = 0; i < sizeof(offs) / sizeof(offs[0]); i++) {
    uint64_t off = offs[i];
    size_t len = size - off < sizeof(buf) ? (size_t)(size - off) : sizeof(buf);
    vm_disk_read(d, buf, off, len, NULL);
  }
  memset(buf, 0x5a, sizeof(buf));
  for (size_t i = 0; i < sizeof(offs) / sizeof(offs[0]); i++) {
    uint64_t off = offs[i];
    size_t len = size - off < 5000 ? (size_t)(size - off) : 5000;
    vm_disk_write(d, buf, off, len, NULL);
  }
  /* vectored: odd segments over several clusters, whole ones among them */
  struct iovec iov[4] = {
      {buf, 1}, {buf + 1, 4095}, {buf + 4096, 2 * 65536}, {buf + 4096 + 2 * 65536, 777}};
  for (size_t i = 0; i < sizeof(offs) / sizeof(offs[0]); i++) {
    uint64_t off = offs[i] & ~(uint64_t)4095;
    if (off + 4096 + 2 * 65536 + 777 > size)
      continue;
    vm_disk_readv(d, iov, 4, off, NULL);
    vm_disk_writev(d, iov, 4, off + 65536 - 4096, NULL);
  }
  vm_disk_write_zeroes(d, 0, size < (1 << 20) ? size : (1 << 20), NULL);
  vm_disk_discard(d, size / 4, size / 4 < (1 << 20) ? size / 4 : (1 << 20), NULL);
  vm_disk_flush(d, NULL);
  vm_disk_read(d, buf, 0, size < sizeof(buf) ? (size_t)size : sizeof(buf), NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > (4u << 20))
    return 0;
  int fd = memfd_create("fuzz-qcow2", MFD_CLOEXEC);
  if (fd < 0)
    return 0;
  if (write(fd, data, size) != (ssize_t)size) {
    close(fd);
    return 0;
  }
  char path[64];
  snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
  for (int readonly = 0; readonly <= 1; readonly++) {
    vm_disk_opts o = {.format = VM_DISK_FORMAT_QCOW2, .readonly = readonly};
    vm_disk *d = NULL;
    vs_error *err = NULL;
    if (vm_disk_open(path, &o, &d, &err) == 0) {
      exercise(d);
      vm_disk_close(d, NULL);
    } else {
      vs_error_free(err);
    }
  }
  close(fd);
  return 0;
}
