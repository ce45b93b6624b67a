/* ELF64 RISC-V loader. The file is untrusted: every offset, size and index is checked against
 * the buffer before use, and every segment against guest RAM. */
#include "vm/elf.h"

#include <errno.h>
#include <string.h>

/* The ELF64 structures (System V gABI). Defined here because the directory's own elf.h shadows
 * the system <elf.h> on the include path. */
typedef struct {
  unsigned char e_ident[16];
  uint16_t e_type, e_machine;
  uint32_t e_version;
  uint64_t e_entry, e_phoff, e_shoff;
  uint32_t e_flags;
  uint16_t e_ehsize, e_phentsize, e_phnum, e_shentsize, e_shnum, e_shstrndx;
} Elf64_Ehdr;
typedef struct {
  uint32_t p_type, p_flags;
  uint64_t p_offset, p_vaddr, p_paddr, p_filesz, p_memsz, p_align;
} Elf64_Phdr;
typedef struct {
  uint32_t sh_name, sh_type;
  uint64_t sh_flags, sh_addr, sh_offset, sh_size;
  uint32_t sh_link, sh_info;
  uint64_t sh_addralign, sh_entsize;
} Elf64_Shdr;
typedef struct {
  uint32_t st_name;
  unsigned char st_info, st_other;
  uint16_t st_shndx;
  uint64_t st_value, st_size;
} Elf64_Sym;

#define ELFMAG "\177ELF"
#define SELFMAG 4
#define EI_CLASS 4
#define EI_DATA 5
#define ELFCLASS64 2
#define ELFDATA2LSB 1
#define ET_EXEC 2
#define ET_DYN 3
#define EM_RISCV 243
#define PT_LOAD 1
#define SHT_SYMTAB 2

/* [off, off+size) lies inside a buffer of len bytes (no overflow). */
static bool range_ok(uint64_t off, uint64_t size, uint64_t len) {
  return off <= len && size <= len - off;
}

static int elf_check_header(const Elf64_Ehdr *eh, size_t len, vs_error **err) {
  if (len < sizeof(*eh) || memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0)
    return vs_error_set(err, 0, "not an ELF file");
  if (eh->e_ident[EI_CLASS] != ELFCLASS64)
    return vs_error_set(err, 0, "not a 64-bit ELF file");
  if (eh->e_ident[EI_DATA] != ELFDATA2LSB)
    return vs_error_set(err, 0, "not a little-endian ELF file");
  if (eh->e_machine != EM_RISCV)
    return vs_error_set(err, 0, "ELF machine %u is not RISC-V", eh->e_machine);
  if (eh->e_type != ET_EXEC && eh->e_type != ET_DYN)
    return vs_error_set(err, 0, "ELF type %u is not an executable", eh->e_type);
  if (eh->e_phnum == 0)
    return vs_error_set(err, 0, "ELF file has no program headers");
  if (eh->e_phentsize != sizeof(Elf64_Phdr))
    return vs_error_set(err, 0, "ELF program header size %u is not %zu", eh->e_phentsize,
                        sizeof(Elf64_Phdr));
  if (!range_ok(eh->e_phoff, (uint64_t)eh->e_phnum * sizeof(Elf64_Phdr), len))
    return vs_error_set(err, 0, "ELF program headers lie outside the file");
  return 0;
}

static int elf_load_segments(const uint8_t *buf, size_t len, const Elf64_Ehdr *eh, uint8_t *ram,
                             uint64_t ram_base, uint64_t ram_size, rv_elf_image *out,
                             vs_error **err) {
  out->lowest = UINT64_MAX;
  out->highest = 0;
  for (unsigned i = 0; i < eh->e_phnum; i++) {
    Elf64_Phdr ph;
    memcpy(&ph, buf + eh->e_phoff + (uint64_t)i * sizeof(ph), sizeof(ph));
    if (ph.p_type != PT_LOAD || ph.p_memsz == 0)
      continue;
    if (ph.p_filesz > ph.p_memsz)
      return vs_error_set(err, 0, "ELF segment %u: file size exceeds memory size", i);
    if (!range_ok(ph.p_offset, ph.p_filesz, len))
      return vs_error_set(err, 0, "ELF segment %u lies outside the file", i);
    if (ph.p_paddr < ram_base || !range_ok(ph.p_paddr - ram_base, ph.p_memsz, ram_size))
      return vs_error_set(err, 0,
                          "ELF segment %u (0x%llx, 0x%llx bytes) lies outside guest RAM "
                          "0x%llx-0x%llx",
                          i, (unsigned long long)ph.p_paddr, (unsigned long long)ph.p_memsz,
                          (unsigned long long)ram_base, (unsigned long long)ram_base + ram_size);
    uint8_t *dst = ram + (ph.p_paddr - ram_base);
    memcpy(dst, buf + ph.p_offset, ph.p_filesz);
    memset(dst + ph.p_filesz, 0, ph.p_memsz - ph.p_filesz);
    if (ph.p_paddr < out->lowest)
      out->lowest = ph.p_paddr;
    if (ph.p_paddr + ph.p_memsz > out->highest)
      out->highest = ph.p_paddr + ph.p_memsz;
  }
  if (out->highest == 0)
    return vs_error_set(err, 0, "ELF file has no loadable segment");
  return 0;
}

/* Look up tohost/fromhost in the symbol table, if there is one (stripped files have none). */
static int elf_find_symbols(const uint8_t *buf, size_t len, const Elf64_Ehdr *eh, rv_elf_image *out,
                            vs_error **err) {
  if (eh->e_shoff == 0 || eh->e_shnum == 0)
    return 0;
  if (eh->e_shentsize != sizeof(Elf64_Shdr))
    return vs_error_set(err, 0, "ELF section header size %u is not %zu", eh->e_shentsize,
                        sizeof(Elf64_Shdr));
  if (!range_ok(eh->e_shoff, (uint64_t)eh->e_shnum * sizeof(Elf64_Shdr), len))
    return vs_error_set(err, 0, "ELF section headers lie outside the file");
  for (unsigned i = 0; i < eh->e_shnum; i++) {
    Elf64_Shdr sh, strsh;
    memcpy(&sh, buf + eh->e_shoff + (uint64_t)i * sizeof(sh), sizeof(sh));
    if (sh.sh_type != SHT_SYMTAB)
      continue;
    if (sh.sh_entsize != sizeof(Elf64_Sym) || !range_ok(sh.sh_offset, sh.sh_size, len))
      return vs_error_set(err, 0, "ELF symbol table %u is malformed", i);
    if (sh.sh_link >= eh->e_shnum)
      return vs_error_set(err, 0, "ELF symbol table %u names no string table", i);
    memcpy(&strsh, buf + eh->e_shoff + (uint64_t)sh.sh_link * sizeof(strsh), sizeof(strsh));
    if (!range_ok(strsh.sh_offset, strsh.sh_size, len))
      return vs_error_set(err, 0, "ELF string table lies outside the file");
    const char *strtab = (const char *)buf + strsh.sh_offset;
    uint64_t nsyms = sh.sh_size / sizeof(Elf64_Sym);
    for (uint64_t k = 0; k < nsyms; k++) {
      Elf64_Sym sym;
      memcpy(&sym, buf + sh.sh_offset + k * sizeof(sym), sizeof(sym));
      if (sym.st_name >= strsh.sh_size)
        continue;
      const char *name = strtab + sym.st_name;
      size_t maxlen = strsh.sh_size - sym.st_name;
      if (strnlen(name, maxlen) == maxlen)
        continue; /* not terminated inside the table */
      if (strcmp(name, "tohost") == 0) {
        out->has_tohost = true;
        out->tohost = sym.st_value;
      } else if (strcmp(name, "fromhost") == 0) {
        out->has_fromhost = true;
        out->fromhost = sym.st_value;
      }
    }
  }
  return 0;
}

int rv_elf_load(const uint8_t *buf, size_t len, uint8_t *ram, uint64_t ram_base, uint64_t ram_size,
                rv_elf_image *out, vs_error **err) {
  Elf64_Ehdr eh;
  memset(out, 0, sizeof(*out));
  if (len < sizeof(eh))
    return vs_error_set(err, 0, "ELF file is truncated (%zu bytes)", len);
  memcpy(&eh, buf, sizeof(eh));
  if (elf_check_header(&eh, len, err) < 0 ||
      elf_load_segments(buf, len, &eh, ram, ram_base, ram_size, out, err) < 0 ||
      elf_find_symbols(buf, len, &eh, out, err) < 0)
    return -1;
  out->entry = eh.e_entry;
  return 0;
}
