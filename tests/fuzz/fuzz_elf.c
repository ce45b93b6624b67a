/* libFuzzer: the ELF loader with arbitrary files; it must reject or load within guest RAM. */
#include <stdint.h>
#include <stdlib.h>

#include "vm/elf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static uint8_t *ram;
  const size_t ram_size = 1 << 20;
  if (!ram)
    ram = malloc(ram_size);
  rv_elf_image img;
  vs_error *err = NULL;
  if (rv_elf_load(data, size, ram, 0x80000000ull, ram_size, &img, &err) < 0)
    vs_error_free(err);
  return 0;
}
