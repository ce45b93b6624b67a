/* Boot: firmware, kernel, initrd and device tree into guest RAM, then the harts' first state.
 *
 * Layout of RAM (base 0x8000_0000):
 *   +0              firmware (--bios PATH), or the kernel's own memory with --bios builtin
 *   +0x20_0000      the kernel (RISC-V Linux Image), up to its image_size (file + bss)
 *   ...             free
 *   top - window    initrd (page aligned, directly below the device tree window)
 *   top - 256 KiB   device tree (with room to grow: OpenSBI edits it in place), then
 *   top - 64 B      OpenSBI's struct fw_dynamic_info
 *
 * Everything read from files is untrusted: sizes are checked against RAM before anything is
 * copied, and every failure names the file and the problem.
 */
#include <errno.h>
#include <fcntl.h>
#include <libfdt.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "vm/elf.h"
#include "vm/machine.h"

/* RISC-V Linux Image header (Documentation/arch/riscv/boot-image-header.rst) */
#define IMAGE_HDR_SIZE 64
#define IMAGE_OFF_TEXT_OFFSET 0x08
#define IMAGE_OFF_IMAGE_SIZE 0x10
#define IMAGE_OFF_MAGIC 0x30
#define IMAGE_OFF_MAGIC2 0x38
#define IMAGE_OFF_PE_HEADER 0x3c

/* OpenSBI's struct fw_dynamic_info (include/sbi/fw_dynamic.h), version 2 */
#define FW_DYNAMIC_INFO_MAGIC 0x4942534full
#define FW_DYNAMIC_INFO_VERSION 2ull
#define FW_DYNAMIC_NEXT_MODE_S 1ull

#define DEFAULT_BOOTARGS "console=ttyS0"
#define DEFAULT_BOOTARGS_HVC "console=hvc0"

static uint64_t rd_le(const uint8_t *p, unsigned n) {
  uint64_t v = 0;
  for (unsigned i = 0; i < n; i++)
    v |= (uint64_t)p[i] << (8 * i);
  return v;
}

static uint64_t ram_end(const vm *m) { return VM_RAM_BASE + m->ram_size; }

/* ------------------------------------------------------------------ reading files */

/* Read a whole file into a new buffer, gunzipping it if it is gzip-compressed; at most `max`
 * bytes of (uncompressed) content. */
static int read_file_maybe_gz(const char *path, const char *what, uint64_t max, uint8_t **out,
                              size_t *out_len, vs_error **err) {
  _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return vs_error_set(err, errno, "open %s %s", what, path);
  struct stat st;
  if (fstat(fd, &st) < 0)
    return vs_error_set(err, errno, "stat %s %s", what, path);
  if (!S_ISREG(st.st_mode))
    return vs_error_set(err, 0, "%s %s is not a regular file", what, path);
  if (st.st_size == 0)
    return vs_error_set(err, 0, "%s %s is empty", what, path);
  uint8_t magic[2] = {0, 0};
  if (pread(fd, magic, 2, 0) < 0)
    return vs_error_set(err, errno, "read %s %s", what, path);
  bool gz = magic[0] == 0x1f && magic[1] == 0x8b;
  if (!gz && (uint64_t)st.st_size > max)
    return vs_error_set(err, 0, "%s %s is %lld bytes, more than the %llu bytes of RAM available",
                        what, path, (long long)st.st_size, (unsigned long long)max);

  if (!gz) {
    _cleanup_free_ uint8_t *buf = malloc((size_t)st.st_size);
    if (!buf)
      return vs_error_set(err, ENOMEM, "read %s %s", what, path);
    size_t done = 0;
    while (done < (size_t)st.st_size) {
      ssize_t n = pread(fd, buf + done, (size_t)st.st_size - done, (off_t)done);
      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0)
        return vs_error_set(err, errno, "read %s %s", what, path);
      if (n == 0)
        return vs_error_set(err, 0, "read %s %s: file shrank while reading", what, path);
      done += (size_t)n;
    }
    *out = steal_pointer(&buf);
    *out_len = done;
    return 0;
  }

  int gzfd = dup(fd);
  if (gzfd < 0)
    return vs_error_set(err, errno, "read %s %s", what, path);
  gzFile gzf = gzdopen(gzfd, "rb");
  if (!gzf) {
    close(gzfd);
    return vs_error_set(err, ENOMEM, "read %s %s", what, path);
  }
  size_t cap = 1 << 20, len = 0;
  uint8_t *buf = vs_malloc0(cap);
  for (;;) {
    if (len == cap) {
      if (cap >= max) {
        gzclose(gzf);
        free(buf);
        return vs_error_set(err, 0,
                            "%s %s: uncompressed size exceeds the %llu bytes of RAM available",
                            what, path, (unsigned long long)max);
      }
      cap = cap * 2 > max ? (size_t)max + 1 : cap * 2;
      buf = vs_realloc(buf, cap);
    }
    int n = gzread(gzf, buf + len, (unsigned)(cap - len > (1U << 30) ? (1U << 30) : cap - len));
    if (n < 0) {
      int errnum;
      const char *msg = gzerror(gzf, &errnum);
      vs_error_set(err, 0, "%s %s: corrupt gzip data: %s", what, path, msg);
      gzclose(gzf);
      free(buf);
      return -1;
    }
    if (n == 0)
      break;
    len += (size_t)n;
  }
  /* gzread stops silently at a truncated stream; gzclose_r reports it */
  int errnum = Z_OK;
  gzerror(gzf, &errnum);
  int rc = gzclose(gzf);
  if (errnum != Z_OK || (rc != Z_OK && rc != Z_BUF_ERROR)) {
    free(buf);
    return vs_error_set(err, 0, "%s %s: corrupt or truncated gzip data", what, path);
  }
  if (len > max) {
    free(buf);
    return vs_error_set(err, 0, "%s %s: uncompressed size exceeds the %llu bytes of RAM available",
                        what, path, (unsigned long long)max);
  }
  *out = buf;
  *out_len = len;
  return 0;
}

/* ------------------------------------------------------------------ Linux Image */

static bool image_is_riscv(const uint8_t *buf, size_t len) {
  if (len < IMAGE_HDR_SIZE)
    return false;
  return memcmp(buf + IMAGE_OFF_MAGIC2, "RSC\x05", 4) == 0 ||
         memcmp(buf + IMAGE_OFF_MAGIC, "RISCV\0\0\0", 8) == 0;
}

/* An Image with an EFI stub is also a PE file: its section table says how long the file must be,
 * which lets us recognise a truncated kernel. */
static int image_check_pe(const char *path, const uint8_t *buf, size_t len, vs_error **err) {
  if (buf[0] != 'M' || buf[1] != 'Z')
    return 0; /* no EFI stub: nothing more to check */
  uint64_t pe = rd_le(buf + IMAGE_OFF_PE_HEADER, 4);
  if (pe > len || len - pe < 24 || memcmp(buf + pe, "PE\0\0", 4) != 0)
    return vs_error_set(err, 0, "kernel %s: corrupt EFI/PE header", path);
  uint64_t nsections = rd_le(buf + pe + 6, 2);
  uint64_t opt_size = rd_le(buf + pe + 20, 2);
  uint64_t sections = pe + 24 + opt_size;
  if (sections > len || (len - sections) / 40 < nsections)
    return vs_error_set(err, 0, "kernel %s is truncated (PE section table beyond end of file)",
                        path);
  for (uint64_t i = 0; i < nsections; i++) {
    const uint8_t *s = buf + sections + 40 * i;
    uint64_t raw_end = rd_le(s + 16, 4) + rd_le(s + 20, 4); /* SizeOfRawData + PointerToRawData */
    if (raw_end > len)
      return vs_error_set(err, 0,
                          "kernel %s is truncated: section %.8s needs %llu bytes, file has %zu",
                          path, (const char *)s, (unsigned long long)raw_end, len);
  }
  return 0;
}

static int load_linux_image(vm *m, const char *path, const uint8_t *buf, size_t len,
                            vs_error **err) {
  if (image_check_pe(path, buf, len, err) < 0)
    return -1;
  uint64_t image_size = rd_le(buf + IMAGE_OFF_IMAGE_SIZE, 8);
  if (image_size < len)
    image_size = len; /* old headers leave it 0: the file is all there is */
  uint64_t addr = VM_RAM_BASE + VM_KERNEL_OFFSET;
  if (image_size > m->fdt_addr - addr || addr >= m->fdt_addr)
    return vs_error_set(err, 0, "kernel %s needs %llu MiB at 0x%llx: more than the %llu MiB of RAM",
                        path, (unsigned long long)((image_size + VM_KERNEL_OFFSET) >> 20),
                        (unsigned long long)addr, (unsigned long long)(m->ram_size >> 20));
  memcpy(vm_ram_ptr(m, addr), buf, len);
  m->kernel_addr = addr;
  m->kernel_end = addr + image_size;
  return 0;
}

/* ------------------------------------------------------------------ ELF */

static int load_elf_into_ram(vm *m, const char *what, const char *path, const uint8_t *buf,
                             size_t len, uint64_t *entry, uint64_t *lo, uint64_t *hi,
                             vs_error **err) {
  rv_elf_image img;
  if (rv_elf_load(buf, len, m->ram, VM_RAM_BASE, m->ram_size, &img, err) < 0)
    return vs_error_wrap(err, "%s %s", what, path);
  *entry = img.entry;
  *lo = img.lowest;
  *hi = img.highest;
  if (m->cfg.htif) {
    if (!img.has_tohost)
      return vs_error_set(err, 0, "%s %s has no 'tohost' symbol, needed by --htif", what, path);
    htif_init(&m->htif, img.tohost, img.has_fromhost, img.fromhost);
    m->htif_enabled = true;
  }
  return 0;
}

static bool is_elf(const uint8_t *buf, size_t len) {
  return len >= 4 && memcmp(buf,
                            "\x7f"
                            "ELF",
                            4) == 0;
}

/* ------------------------------------------------------------------ pieces */

static int load_firmware(vm *m, vs_error **err) {
  const char *path = m->cfg.bios_path;
  _cleanup_free_ uint8_t *buf = NULL;
  size_t len = 0;
  if (read_file_maybe_gz(path, "firmware", VM_KERNEL_OFFSET, &buf, &len, err) < 0)
    return -1;
  if (!buf || len == 0)
    return vs_error_set(err, 0, "firmware %s is empty", path);
  if (is_elf(buf, len)) {
    uint64_t entry = 0, lo = 0, hi = 0;
    if (load_elf_into_ram(m, "firmware", path, buf, len, &entry, &lo, &hi, err) < 0)
      return -1;
    if (hi > VM_RAM_BASE + VM_KERNEL_OFFSET)
      return vs_error_set(err, 0, "firmware %s extends to 0x%llx, into the kernel at 0x%llx", path,
                          (unsigned long long)hi,
                          (unsigned long long)(VM_RAM_BASE + VM_KERNEL_OFFSET));
    m->entry = entry;
  } else {
    memcpy(m->ram, buf, len);
    m->entry = VM_RAM_BASE;
  }
  m->entry_priv = RV_PRIV_M;
  return 0;
}

static int load_kernel(vm *m, vs_error **err) {
  const char *path = m->cfg.kernel;
  _cleanup_free_ uint8_t *buf = NULL;
  size_t len = 0;
  if (read_file_maybe_gz(path, "kernel", m->ram_size, &buf, &len, err) < 0)
    return -1;
  if (is_elf(buf, len)) {
    uint64_t entry = 0, lo = 0, hi = 0;
    if (load_elf_into_ram(m, "kernel", path, buf, len, &entry, &lo, &hi, err) < 0)
      return -1;
    if (hi > m->fdt_addr)
      return vs_error_set(err, 0, "kernel %s extends to 0x%llx, over the device tree at 0x%llx",
                          path, (unsigned long long)hi, (unsigned long long)m->fdt_addr);
    m->kernel_addr = entry;
    m->kernel_end = hi;
    return 0;
  }
  if (m->cfg.htif)
    return vs_error_set(err, 0, "kernel %s: --htif needs an ELF program", path);
  if (!image_is_riscv(buf, len)) {
    if (len < IMAGE_HDR_SIZE)
      return vs_error_set(err, 0, "kernel %s is too short (%zu bytes) for a RISC-V Linux Image",
                          path, len);
    return vs_error_set(err, 0, "kernel %s is neither a RISC-V Linux Image nor an ELF file", path);
  }
  return load_linux_image(m, path, buf, len, err);
}

/* The initrd goes as high as possible, right below the device tree window. */
static int load_initrd(vm *m, vs_error **err) {
  const char *path = m->cfg.initrd;
  _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return vs_error_set(err, errno, "open initrd %s", path);
  struct stat st;
  if (fstat(fd, &st) < 0)
    return vs_error_set(err, errno, "stat initrd %s", path);
  if (!S_ISREG(st.st_mode))
    return vs_error_set(err, 0, "initrd %s is not a regular file", path);
  if (st.st_size == 0)
    return vs_error_set(err, 0, "initrd %s is empty", path);
  uint64_t size = (uint64_t)st.st_size;
  uint64_t room = m->fdt_addr > m->kernel_end ? m->fdt_addr - m->kernel_end : 0;
  if (size > room)
    return vs_error_set(err, 0,
                        "initrd %s (%llu MiB) does not fit in RAM: %llu MiB guest memory, "
                        "%llu MiB free above the kernel",
                        path, (unsigned long long)(size >> 20),
                        (unsigned long long)(m->ram_size >> 20), (unsigned long long)(room >> 20));
  uint64_t start = (m->fdt_addr - size) & ~0xfffULL;
  if (start < m->kernel_end)
    return vs_error_set(err, 0, "initrd %s does not fit in RAM above the kernel", path);
  uint8_t *dst = vm_ram_ptr(m, start);
  uint64_t done = 0;
  while (done < size) {
    ssize_t n = pread(fd, dst + done, size - done, (off_t)done);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return vs_error_set(err, errno, "read initrd %s", path);
    if (n == 0)
      return vs_error_set(err, 0, "read initrd %s: file shrank while reading", path);
    done += (uint64_t)n;
  }
  m->initrd_start = start;
  m->initrd_end = start + size;
  return 0;
}

static int place_fdt(vm *m, vs_error **err) {
  _cleanup_free_ uint8_t *buf = vs_malloc0(VM_FDT_MAX_SIZE);
  if (vm_fdt_build(m, buf, VM_FDT_MAX_SIZE, err) < 0)
    return -1;
  memcpy(vm_ram_ptr(m, m->fdt_addr), buf, fdt_totalsize(buf));
  return 0;
}

static void place_fw_dynamic_info(vm *m) {
  uint64_t info[6] = {
      FW_DYNAMIC_INFO_MAGIC,
      FW_DYNAMIC_INFO_VERSION,
      m->kernel_addr,
      FW_DYNAMIC_NEXT_MODE_S,
      0, /* options */
      0, /* boot_hart: hart 0 boots, as on QEMU */
  };
  m->fw_dynamic_info = ram_end(m) - 64;
  uint8_t *p = vm_ram_ptr(m, m->fw_dynamic_info);
  for (unsigned i = 0; i < 6; i++)
    for (unsigned b = 0; b < 8; b++)
      p[8 * i + b] = (uint8_t)(info[i] >> (8 * b));
}

int vm_boot_load(vm *m, vs_error **err) {
  if (m->ram_size < 2 * VM_FDT_WINDOW)
    return vs_error_set(err, 0, "%llu KiB of RAM is too little (at least %llu KiB)",
                        (unsigned long long)(m->ram_size >> 10),
                        (unsigned long long)(2 * VM_FDT_WINDOW >> 10));
  m->fdt_addr = ram_end(m) - VM_FDT_WINDOW;
  const char *console_args =
      m->cfg.console == VM_CONSOLE_VIRTIO ? DEFAULT_BOOTARGS_HVC : DEFAULT_BOOTARGS;
  m->bootargs = vs_strdup(m->cfg.append ? m->cfg.append : console_args);

  if (m->cfg.bios == VM_BIOS_FILE && load_firmware(m, err) < 0)
    return -1;
  if (load_kernel(m, err) < 0)
    return -1;
  if (m->cfg.bios == VM_BIOS_FILE && m->kernel_addr < VM_RAM_BASE + VM_KERNEL_OFFSET)
    return vs_error_set(err, 0, "kernel %s is linked at 0x%llx, over the firmware", m->cfg.kernel,
                        (unsigned long long)m->kernel_addr);
  if (m->cfg.initrd && load_initrd(m, err) < 0)
    return -1;
  if (place_fdt(m, err) < 0)
    return -1;

  switch (m->cfg.bios) {
  case VM_BIOS_BUILTIN:
    m->entry = m->kernel_addr;
    m->entry_priv = RV_PRIV_S;
    break;
  case VM_BIOS_NONE:
    m->entry = m->kernel_addr;
    m->entry_priv = RV_PRIV_M;
    break;
  case VM_BIOS_FILE:
    place_fw_dynamic_info(m);
    break;
  }
  return 0;
}

void vm_boot_reset_harts(vm *m) {
  for (unsigned h = 0; h < m->nharts; h++) {
    rv_hart *hart = &m->harts[h];
    rv_hart_reset(hart, m->entry, m->entry_priv);
    hart->x[10] = h;           /* a0: hart id */
    hart->x[11] = m->fdt_addr; /* a1: device tree */
    hart->x[12] = m->fw_dynamic_info;
    /* with the built-in SBI only the boot hart runs; the kernel starts the others via HSM */
    bool runs = m->cfg.bios != VM_BIOS_BUILTIN || h == 0;
    m->hsm[h] = runs ? HSM_STARTED : HSM_STOPPED;
  }
}
