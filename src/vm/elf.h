/* ELF64 RISC-V loader for bare-metal programs (--bios none) and the guest tests. */
#ifndef VESSEL_VM_ELF_H
#define VESSEL_VM_ELF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/base.h"

typedef struct rv_elf_image {
  uint64_t entry;
  uint64_t lowest, highest; /* physical range covered by PT_LOAD segments [lowest, highest) */
  bool has_tohost, has_fromhost;
  uint64_t tohost, fromhost; /* symbol addresses */
} rv_elf_image;

/* Load an ELF64 little-endian RISC-V executable from memory into guest RAM (ram = host pointer of
 * guest physical ram_base, ram_size bytes) at the segments' physical addresses (p_paddr), zeroing
 * bss. Every segment must lie inside RAM and inside the file; errors name the problem. */
int rv_elf_load(const uint8_t *buf, size_t len, uint8_t *ram, uint64_t ram_base, uint64_t ram_size,
                rv_elf_image *out, vs_error **err);

#endif
