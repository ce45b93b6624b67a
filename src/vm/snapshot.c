/* Snapshots: the state image shared with migration, writing a snapshot directory, restoring and
 * cloning from one. The format is described in docs/lifecycle.md.
 *
 * A snapshot directory holds two files:
 *   state   the state image: header (magic, format version), CONF (the machine's configuration),
 *           MACH, HART x n, PLIC, CLNT, UART, RTC_, SYSC, VIRT+VBLK per disk, VIRT+VINP (the
 *           power button), RAM_, and SUM_
 *           (SHA-256 of every byte before it)
 *   memory  guest RAM as a raw file of exactly mem_size bytes; zero pages are holes
 * A restored VM maps `memory` copy-on-write (MAP_PRIVATE), so restoring costs no copy and clones
 * of one snapshot share every page none of them wrote. Files are replaced by rename, never
 * rewritten in place, so a VM running from an older `memory` keeps its pages.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "vm/machine.h"

#define CONF_VERSION 4 /* 3: the CPU model (H extension or not); 4: the balloon */
#define MACH_VERSION 1
#define RAM_VERSION 1
#define SUM_VERSION 1
#define STATE_HEADER 16
#define MAX_STATE_FILE (64u << 20)
#define MAX_CONF_STRING 65536
#define STRING_SLOT_KERNEL 0
#define STRING_SLOT_INITRD 1
#define STRING_SLOT_APPEND 2
#define STRING_SLOT_BIOS 3
#define STRING_SLOT_DISK0 4
#define STRING_SLOT_NET0 (STRING_SLOT_DISK0 + VM_MAX_DISKS)

/* ------------------------------------------------------------------ disk specs */

/* PATH with each ',' doubled, as vm_disk_parse_spec expects. */
static char *escape_commas(const char *path) {
  size_t n = strlen(path), extra = 0;
  for (size_t i = 0; i < n; i++)
    extra += path[i] == ',';
  char *out = vs_malloc0(n + extra + 1), *o = out;
  for (size_t i = 0; i < n; i++) {
    *o++ = path[i];
    if (path[i] == ',')
      *o++ = ',';
  }
  return out;
}

static char *disk_spec_build(const char *path, const vm_disk_opts *o, const char *serial) {
  _cleanup_free_ char *p = escape_commas(path);
  _cleanup_free_ char *ser = serial ? vs_asprintf(",serial=%s", serial) : vs_strdup("");
  return vs_asprintf("%s,format=%s,readonly=%s,cache=%s%s", p,
                     o->format == VM_DISK_FORMAT_AUTO ? "raw" : vm_disk_format_name(o->format),
                     o->readonly ? "on" : "off",
                     o->cache == VM_DISK_CACHE_NONE ? "none" : "writeback", ser);
}

char *vm_disk_spec_absolute(const char *spec, vs_error **err) {
  _cleanup_free_ char *path = NULL;
  _cleanup_free_ char *serial = NULL;
  vm_disk_opts o;
  if (vm_disk_parse_spec(spec, &path, &o, &serial, err) < 0)
    return NULL;
  char abs[PATH_MAX];
  if (!realpath(path, abs)) {
    vs_error_set(err, errno, "resolve disk path %s", path);
    return NULL;
  }
  if (o.format == VM_DISK_FORMAT_AUTO) {
    /* record what the probe found, so a restore never probes a file that changed */
    vm_disk *d = NULL;
    vm_disk_opts probe = {.format = VM_DISK_FORMAT_AUTO, .readonly = true};
    if (vm_disk_open(abs, &probe, &d, err) < 0)
      return NULL;
    vm_disk_info info;
    vm_disk_get_info(d, &info);
    o.format = strcmp(info.format, "qcow2") == 0 ? VM_DISK_FORMAT_QCOW2 : VM_DISK_FORMAT_RAW;
    vm_disk_close(d, NULL);
  }
  return disk_spec_build(abs, &o, serial);
}

/* ------------------------------------------------------------------ the state image */

void vm_config_save(vm *m, vmstate_writer *w, bool disks_frozen) {
  vmstate_begin(w, "CONF", CONF_VERSION);
  vmstate_put_u64(w, m->cfg.mem_size);
  vmstate_put_u32(w, m->cfg.smp);
  vmstate_put_u32(w, (uint32_t)m->cfg.bios);
  vmstate_put_str(w, m->cfg.kernel);
  vmstate_put_str(w, m->cfg.initrd);
  vmstate_put_str(w, m->cfg.append);
  vmstate_put_str(w, m->cfg.bios_path);
  vmstate_put_u32(w, m->cfg.ndisks);
  for (unsigned i = 0; i < m->cfg.ndisks; i++)
    vmstate_put_str(w, m->cfg.disks[i]);
  vmstate_put_bool(w, disks_frozen);
  vmstate_put_u32(w, m->cfg.nnets);
  for (unsigned i = 0; i < m->cfg.nnets; i++)
    vmstate_put_str(w, m->cfg.nets[i]);
  vmstate_put_u32(w, (uint32_t)m->cfg.console);
  vmstate_put_u32(w, (uint32_t)m->cfg.rng);
  vmstate_put_bool(w, m->cfg.no_hypervisor);
  vmstate_put_bool(w, m->cfg.balloon);
  vmstate_end_section(w);
}

static void save_machine(vm *m, vmstate_writer *w) {
  vmstate_begin(w, "MACH", MACH_VERSION);
  vmstate_put_u64(w, vm_read_mtime(m));
  vmstate_put_u32(w, m->nharts);
  for (unsigned h = 0; h < m->nharts; h++) {
    vmstate_put_u32(w, (uint32_t)m->hsm[h]);
    vmstate_put_u64(w, m->hsm_start_addr[h]);
    vmstate_put_u64(w, m->hsm_start_opaque[h]);
  }
  vmstate_end_section(w);
}

static void save_checksum(vmstate_writer *w) {
  vmstate_end_section(w);
  uint8_t sum[32];
  vs_sha256_ctx ctx;
  vs_sha256_init(&ctx);
  vs_sha256_update(&ctx, w->data, w->len);
  vs_sha256_final_raw(&ctx, sum);
  vmstate_begin(w, "SUM_", SUM_VERSION);
  vmstate_put_bytes(w, sum, sizeof(sum));
  vmstate_end_section(w);
}

static void state_save(vm *m, vmstate_writer *w, const char *memory_sha256, bool disks_frozen) {
  vmstate_put_bytes(w, VM_STATE_MAGIC, 8);
  vmstate_put_u32(w, VM_STATE_FORMAT_VERSION);
  vmstate_put_u32(w, 0);
  vm_config_save(m, w, disks_frozen);
  save_machine(m, w);
  for (unsigned h = 0; h < m->nharts; h++)
    rv_hart_save(&m->harts[h], w);
  plic_save(&m->plic, w);
  aclint_save(&m->aclint, w);
  uart_save(&m->uart, w);
  rtc_save(&m->rtc, w);
  syscon_save(&m->syscon, w);
  for (unsigned i = 0; i < m->cfg.ndisks; i++)
    virtio_blk_save(m->blk[i], w);
  vm_io_devices_save(m, w);
  if (m->power_button)
    virtio_input_save(m->power_button, w);
  if (memory_sha256) {
    vmstate_begin(w, "RAM_", RAM_VERSION);
    vmstate_put_u64(w, m->ram_size);
    vmstate_put_str(w, memory_sha256);
  }
  save_checksum(w);
}

void vm_state_save(vm *m, vmstate_writer *w, const char *memory_sha256) {
  state_save(m, w, memory_sha256, false);
}

static int check_header(const uint8_t *img, size_t len, vs_error **err) {
  if (len < STATE_HEADER || memcmp(img, VM_STATE_MAGIC, 8) != 0)
    return vs_error_set(err, 0, "not a vessel state image (bad magic)");
  vmstate_reader r;
  vmstate_reader_init(&r, img + 8, 8);
  uint32_t version = vmstate_get_u32(&r);
  if (version != VM_STATE_FORMAT_VERSION)
    return vs_error_set(err, 0, "snapshot format version %u, this build reads %u", version,
                        VM_STATE_FORMAT_VERSION);
  if (vmstate_get_u32(&r) != 0)
    return vs_error_set(err, 0, "unknown flags in the state image header");
  return 0;
}

/* The last section must be SUM_ over every byte before it. */
static int check_checksum(const uint8_t *img, size_t len, vs_error **err) {
  size_t sum_len = VMSTATE_SECTION_HEADER + 32;
  if (len < STATE_HEADER + sum_len)
    return vs_error_set(err, 0, "state image is truncated (%zu bytes)", len);
  vmstate_reader r, s;
  vmstate_reader_init(&r, img + len - sum_len, sum_len);
  if (vmstate_next(&r, "SUM_", SUM_VERSION, &s, err) < 0)
    return vs_error_wrap(err, "state image is truncated or has no checksum");
  uint8_t want[32], got[32];
  vmstate_get_bytes(&s, want, sizeof(want));
  vs_sha256_ctx ctx;
  vs_sha256_init(&ctx);
  vs_sha256_update(&ctx, img, len - sum_len);
  vs_sha256_final_raw(&ctx, got);
  if (memcmp(want, got, sizeof(got)) != 0)
    return vs_error_set(err, 0,
                        "state image checksum mismatch: the file is corrupt or was "
                        "modified");
  return 0;
}

int vm_config_load(vmstate_reader *img, vm_config *cfg, char *strings[VM_CONFIG_STRINGS],
                   bool *disks_frozen, vs_error **err) {
  vmstate_reader r;
  if (vmstate_next(img, "CONF", CONF_VERSION, &r, err) < 0)
    return -1;
  cfg->mem_size = vmstate_get_u64(&r);
  cfg->smp = vmstate_get_u32(&r);
  uint32_t bios = vmstate_get_u32(&r);
  if (bios > VM_BIOS_FILE)
    vmstate_refuse(&r, "unknown firmware kind");
  cfg->bios = (vm_bios_kind)bios;
  cfg->kernel = strings[STRING_SLOT_KERNEL] = vmstate_get_str(&r, MAX_CONF_STRING);
  cfg->initrd = strings[STRING_SLOT_INITRD] = vmstate_get_str(&r, MAX_CONF_STRING);
  cfg->append = strings[STRING_SLOT_APPEND] = vmstate_get_str(&r, MAX_CONF_STRING);
  cfg->bios_path = strings[STRING_SLOT_BIOS] = vmstate_get_str(&r, MAX_CONF_STRING);
  cfg->ndisks = vmstate_get_u32(&r);
  if (cfg->ndisks > VM_MAX_DISKS) {
    vmstate_refuse(&r, "more disks than a machine can have");
    cfg->ndisks = 0;
  }
  for (unsigned i = 0; i < cfg->ndisks; i++) {
    cfg->disks[i] = strings[STRING_SLOT_DISK0 + i] = vmstate_get_str(&r, MAX_CONF_STRING);
    if (!cfg->disks[i])
      vmstate_refuse(&r, "a disk without a path");
  }
  *disks_frozen = vmstate_get_bool(&r);
  cfg->nnets = vmstate_get_u32(&r);
  if (cfg->nnets > VM_MAX_NICS) {
    vmstate_refuse(&r, "more network devices than a machine can have");
    cfg->nnets = 0;
  }
  for (unsigned i = 0; i < cfg->nnets; i++) {
    cfg->nets[i] = strings[STRING_SLOT_NET0 + i] = vmstate_get_str(&r, MAX_CONF_STRING);
    if (!cfg->nets[i])
      vmstate_refuse(&r, "a network device without a backend");
  }
  uint32_t console = vmstate_get_u32(&r), rng = vmstate_get_u32(&r);
  if (console > VM_CONSOLE_VIRTIO || rng > VM_RNG_OFF)
    vmstate_refuse(&r, "unknown console device or entropy mode");
  cfg->console = (vm_console_device)console;
  cfg->rng = (vm_rng_mode)rng;
  /* images before version 3 come from harts without the H extension */
  cfg->no_hypervisor = r.version >= 3 ? vmstate_get_bool(&r) : true;
  cfg->balloon = r.version >= 4 ? vmstate_get_bool(&r) : false;
  if (cfg->smp < 1 || cfg->smp > VM_MAX_SMP)
    vmstate_refuse(&r, "number of harts out of range");
  if (cfg->mem_size < VM_MIN_MEM || cfg->mem_size > VM_MAX_MEM || (cfg->mem_size & 0xfff))
    vmstate_refuse(&r, "memory size out of range");
  return vmstate_end(&r, err);
}

int vm_state_open(const uint8_t *img, size_t len, vm_config *cfg, char *strings[VM_CONFIG_STRINGS],
                  bool *disks_frozen, vmstate_reader *rest, vs_error **err) {
  if (check_header(img, len, err) < 0 || check_checksum(img, len, err) < 0)
    return -1;
  vmstate_reader_init(rest, img + STATE_HEADER, len - STATE_HEADER - VMSTATE_SECTION_HEADER - 32);
  return vm_config_load(rest, cfg, strings, disks_frozen, err);
}

static int load_machine(vm *m, vmstate_reader *img, vs_error **err) {
  vmstate_reader r;
  if (vmstate_next(img, "MACH", MACH_VERSION, &r, err) < 0)
    return -1;
  uint64_t mtime = vmstate_get_u64(&r);
  /* 2^56 ticks of 100 ns are 228 years: anything beyond is no running machine's clock */
  if (mtime >> 56)
    vmstate_refuse(&r, "mtime out of range");
  if (vmstate_get_u32(&r) != m->nharts)
    vmstate_refuse(&r, "number of harts differs from the configuration");
  for (unsigned h = 0; h < m->nharts && !r.bad; h++) {
    uint32_t st = vmstate_get_u32(&r);
    if (st > HSM_SUSPENDED)
      vmstate_refuse(&r, "unknown hart state");
    m->hsm[h] = (hsm_state)st;
    m->hsm_start_addr[h] = vmstate_get_u64(&r);
    m->hsm_start_opaque[h] = vmstate_get_u64(&r);
  }
  if (vmstate_end(&r, err) < 0)
    return -1;
  /* the guest's clock continues from where it was saved, whatever the host's clock says */
  vm_set_mtime(m, mtime);
  return 0;
}

int vm_state_load(vm *m, vmstate_reader *r, char memory_sha256[VS_SHA256_HEX_LEN + 1],
                  vs_error **err) {
  if (load_machine(m, r, err) < 0)
    return -1;
  for (unsigned h = 0; h < m->nharts; h++)
    if (rv_hart_load(&m->harts[h], r, err) < 0)
      return vs_error_wrap(err, "hart %u", h);
  if (plic_load(&m->plic, r, err) < 0 || aclint_load(&m->aclint, r, err) < 0 ||
      uart_load(&m->uart, r, err) < 0 || rtc_load(&m->rtc, r, err) < 0 ||
      syscon_load(&m->syscon, r, err) < 0)
    return -1;
  for (unsigned i = 0; i < m->cfg.ndisks; i++)
    if (virtio_blk_load(m->blk[i], r, err) < 0)
      return vs_error_wrap(err, "disk %u", i);
  if (vm_io_devices_load(m, r, err) < 0)
    return -1;
  if (m->power_button && virtio_input_load(m->power_button, r, err) < 0)
    return vs_error_wrap(err, "power button");
  char tag[5];
  vmstate_peek_tag(r, tag);
  if (strcmp(tag, "RAM_") == 0) {
    vmstate_reader s;
    if (vmstate_next(r, "RAM_", RAM_VERSION, &s, err) < 0)
      return -1;
    if (vmstate_get_u64(&s) != m->ram_size)
      vmstate_refuse(&s, "RAM size differs from the configuration");
    _cleanup_free_ char *sum = vmstate_get_str(&s, VS_SHA256_HEX_LEN);
    if (!sum || strlen(sum) != VS_SHA256_HEX_LEN)
      vmstate_refuse(&s, "memory checksum is not a SHA-256");
    if (vmstate_end(&s, err) < 0 || !sum)
      return -1;
    if (memory_sha256)
      memcpy(memory_sha256, sum, VS_SHA256_HEX_LEN + 1);
  } else if (memory_sha256) {
    return vs_error_set(err, 0, "the state image names no memory file (RAM_ section)");
  }
  if (!vmstate_at_end(r)) {
    vmstate_peek_tag(r, tag);
    return vs_error_set(err, 0, "unexpected section '%s' after the devices", tag);
  }
  aclint_update_timers(&m->aclint, vm_read_mtime(m));
  return 0;
}

/* ------------------------------------------------------------------ guest RAM as a file */

static bool page_is_zero(const uint8_t *p) {
  const uint64_t *w = (const uint64_t *)(const void *)p;
  for (size_t i = 0; i < VM_PAGE_SIZE / 8; i++)
    if (w[i])
      return false;
  return true;
}

/* The memory checksum covers every non-zero page with its index, so holes cost nothing to
 * hash and a page that changes between zero and non-zero changes the sum. */
static void hash_page(vs_sha256_ctx *ctx, uint64_t index, const uint8_t *page) {
  uint8_t le[8];
  for (int i = 0; i < 8; i++)
    le[i] = (uint8_t)(index >> (8 * i));
  vs_sha256_update(ctx, le, sizeof(le));
  vs_sha256_update(ctx, page, VM_PAGE_SIZE);
}

static void memory_sha256(const uint8_t *ram, uint64_t size, char out[VS_SHA256_HEX_LEN + 1]) {
  vs_sha256_ctx ctx;
  vs_sha256_init(&ctx);
  for (uint64_t pg = 0; pg < size / VM_PAGE_SIZE; pg++)
    if (!page_is_zero(ram + pg * VM_PAGE_SIZE))
      hash_page(&ctx, pg, ram + pg * VM_PAGE_SIZE);
  vs_sha256_final(&ctx, out);
}

/* Write RAM's non-zero pages (runs of them in one pwrite) into a sparse file. */
static int write_memory_file(vm *m, const char *path, char sha[VS_SHA256_HEX_LEN + 1],
                             vs_error **err) {
  _cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0)
    return vs_error_set(err, errno, "create %s", path);
  if (ftruncate(fd, (off_t)m->ram_size) < 0)
    return vs_error_set(err, errno, "size %s", path);
  vs_sha256_ctx ctx;
  vs_sha256_init(&ctx);
  uint64_t pages = vm_ram_pages(m);
  for (uint64_t pg = 0; pg < pages;) {
    if (page_is_zero(m->ram + pg * VM_PAGE_SIZE)) {
      pg++;
      continue;
    }
    uint64_t run = pg;
    while (run < pages && !page_is_zero(m->ram + run * VM_PAGE_SIZE)) {
      hash_page(&ctx, run, m->ram + run * VM_PAGE_SIZE);
      run++;
    }
    const uint8_t *p = m->ram + pg * VM_PAGE_SIZE;
    size_t len = (size_t)((run - pg) * VM_PAGE_SIZE);
    off_t off = (off_t)(pg * VM_PAGE_SIZE);
    while (len) {
      ssize_t n = pwrite(fd, p, len, off);
      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0) {
        vs_sha256_abandon(&ctx);
        return vs_error_set(err, n < 0 ? errno : EIO, "write %s", path);
      }
      p += n;
      off += n;
      len -= (size_t)n;
    }
    pg = run;
  }
  vs_sha256_final(&ctx, sha);
  if (fdatasync(fd) < 0)
    return vs_error_set(err, errno, "sync %s", path);
  return 0;
}

/* Map the memory file copy-on-write: the guest's writes stay in this process. */
static uint8_t *map_memory_file(const char *path, uint64_t size, vs_error **err) {
  _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    vs_error_set(err, errno, "open %s", path);
    return NULL;
  }
  struct stat st;
  if (fstat(fd, &st) < 0) {
    vs_error_set(err, errno, "stat %s", path);
    return NULL;
  }
  if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size != size) {
    vs_error_set(err, 0, "%s is %lld bytes, the snapshot's RAM is %llu bytes", path,
                 (long long)st.st_size, (unsigned long long)size);
    return NULL;
  }
  void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_NORESERVE, fd, 0);
  if (p == MAP_FAILED) {
    vs_error_set(err, errno, "map %s", path);
    return NULL;
  }
  return p;
}

/* ------------------------------------------------------------------ taking a snapshot */

/* Freeze each writable disk: the VM continues on a new qcow2 overlay PATH.<n>.qcow2 whose base
 * is the file the snapshot names, which nothing writes any more. */
static int switch_disks_to_overlays(vm *m, vs_error **err) {
  for (unsigned i = 0; i < m->cfg.ndisks; i++) {
    if (vm_disk_is_readonly(m->disk[i]))
      continue;
    _cleanup_free_ char *path = NULL;
    _cleanup_free_ char *serial = NULL;
    vm_disk_opts o;
    if (vm_disk_parse_spec(m->cfg.disks[i], &path, &o, &serial, err) < 0)
      return -1;
    _cleanup_free_ char *overlay = NULL;
    for (unsigned n = 1;; n++) {
      free(overlay);
      overlay = vs_asprintf("%s.%u.qcow2", path, n);
      if (access(overlay, F_OK) < 0)
        break;
    }
    /* The disk becomes the snapshot's frozen base: durable before anything changes, so that a
     * failure here leaves the VM running on it. */
    if (vm_disk_flush(m->disk[i], err) < 0)
      return vs_error_wrap(err, "disk %u: flush before freezing it", i);
    vm_disk_create_opts co = {
        .format = VM_DISK_FORMAT_QCOW2, .backing_file = path, .backing_format = o.format};
    vm_disk *d = NULL;
    vm_disk_opts oo = {.format = VM_DISK_FORMAT_QCOW2, .cache = o.cache};
    if (vm_disk_create(overlay, &co, err) < 0 || vm_disk_open(overlay, &oo, &d, err) < 0)
      return vs_error_wrap(err, "disk %u: overlay", i);
    _cleanup_error_ vs_error *close_err = NULL;
    if (vm_disk_close(m->disk[i], &close_err) < 0) /* nothing wrote since the flush */
      vs_log_warn("disk %u: closing the frozen base: %s", i, close_err->msg);
    m->disk[i] = d;
    m->blk[i]->disk = d;
    free(m->cfg_strings[STRING_SLOT_DISK0 + i]);
    m->cfg.disks[i] = m->cfg_strings[STRING_SLOT_DISK0 + i] = disk_spec_build(overlay, &oo, serial);
    vs_log_info("disk %u continues on %s", i, overlay);
  }
  return 0;
}

/* The configuration's disk specs with absolute paths (the snapshot may be restored from
 * anywhere); they replace the VM's own. */
int vm_make_disk_specs_absolute(vm *m, vs_error **err) {
  for (unsigned i = 0; i < m->cfg.ndisks; i++) {
    char *abs = vm_disk_spec_absolute(m->cfg.disks[i], err);
    if (!abs)
      return vs_error_wrap(err, "disk %u", i);
    free(m->cfg_strings[STRING_SLOT_DISK0 + i]);
    m->cfg.disks[i] = m->cfg_strings[STRING_SLOT_DISK0 + i] = abs;
  }
  return 0;
}

static int write_snapshot(vm *m, const char *dir, bool disks_frozen, vs_error **err) {
  if (vs_mkdir_p(dir, 0700, err) < 0)
    return -1;
  for (unsigned i = 0; i < m->cfg.ndisks; i++)
    if (vm_disk_flush(m->disk[i], err) < 0)
      return vs_error_wrap(err, "flush disk %u", i);
  if (vm_make_disk_specs_absolute(m, err) < 0)
    return -1;
  _cleanup_free_ char *mem_tmp = vs_asprintf("%s/memory.tmp", dir);
  _cleanup_free_ char *mem_path = vs_asprintf("%s/memory", dir);
  char sha[VS_SHA256_HEX_LEN + 1];
  if (write_memory_file(m, mem_tmp, sha, err) < 0) {
    unlink(mem_tmp);
    return -1;
  }
  if (rename(mem_tmp, mem_path) < 0) {
    vs_error_set(err, errno, "rename %s", mem_tmp);
    unlink(mem_tmp);
    return -1;
  }
  vmstate_writer w;
  vmstate_writer_init(&w);
  state_save(m, &w, sha, disks_frozen);
  _cleanup_free_ char *state_path = vs_asprintf("%s/state", dir);
  int rc = vs_write_file_atomic(state_path, w.data, w.len, 0600, err);
  vmstate_writer_free(&w);
  return rc;
}

int vm_snapshot(vm *m, const char *dir, const vm_snapshot_opts *opts, vs_error **err) {
  if (m->htif_enabled)
    return vs_error_set(err, 0, "snapshots of --htif test programs are not supported");
  if (m->migration)
    return vs_error_set(err, 0, "a migration is in progress");
  bool was_paused = m->paused;
  vm_pause(m);
  int rc = write_snapshot(m, dir, opts->disk_overlay, err);
  if (rc == 0 && opts->disk_overlay)
    rc = switch_disks_to_overlays(m, err);
  if (rc < 0)
    vs_error_wrap(err, "snapshot to %s", dir);
  if (rc == 0 && opts->quit)
    vm_request_exit(m, VM_EXIT_QUIT, 0);
  else if (!was_paused)
    vm_resume(m);
  return rc;
}

/* ------------------------------------------------------------------ restore and clone */

void vm_restore_opts_init(vm_restore_opts *o) {
  memset(o, 0, sizeof(*o));
  o->console_in = 0;
  o->console_out = 1;
}

/* A clone (or a restore of a snapshot whose disks are frozen bases) writes to its own qcow2
 * overlay per writable disk, in clone_dir. */
static int make_clone_overlays(vm_config *cfg, char *strings[VM_CONFIG_STRINGS],
                               const char *clone_dir, vs_error **err) {
  for (unsigned i = 0; i < cfg->ndisks; i++) {
    _cleanup_free_ char *path = NULL;
    _cleanup_free_ char *serial = NULL;
    vm_disk_opts o;
    if (vm_disk_parse_spec(cfg->disks[i], &path, &o, &serial, err) < 0)
      return vs_error_wrap(err, "disk %u", i);
    if (o.readonly)
      continue; /* shared as it is */
    _cleanup_free_ char *overlay = vs_asprintf("%s/disk%u.qcow2", clone_dir, i);
    vm_disk_create_opts co = {
        .format = VM_DISK_FORMAT_QCOW2, .backing_file = path, .backing_format = o.format};
    if (vm_disk_create(overlay, &co, err) < 0)
      return vs_error_wrap(err, "disk %u: overlay", i);
    vm_disk_opts oo = {.format = VM_DISK_FORMAT_QCOW2, .cache = o.cache};
    free(strings[STRING_SLOT_DISK0 + i]);
    cfg->disks[i] = strings[STRING_SLOT_DISK0 + i] = disk_spec_build(overlay, &oo, serial);
  }
  return 0;
}

static char *make_clone_dir(const char *snapshot_dir, const char *wanted, vs_error **err) {
  if (wanted) {
    if (vs_mkdir_p(wanted, 0700, err) < 0)
      return NULL;
    return vs_strdup(wanted);
  }
  char *dir = vs_asprintf("%s/clone-XXXXXX", snapshot_dir);
  if (!mkdtemp(dir)) {
    vs_error_set(err, errno, "create %s", dir);
    free(dir);
    return NULL;
  }
  return dir;
}

/* Identities a clone must not share with its snapshot's original: its NICs' MAC addresses. */
static void clone_new_identity(vm *m) { vm_io_devices_new_identity(m); }

static void free_strings(char *strings[VM_CONFIG_STRINGS]) {
  for (unsigned i = 0; i < VM_CONFIG_STRINGS; i++) {
    free(strings[i]);
    strings[i] = NULL;
  }
}

static int verify_memory(vm *m, const char *want, vs_error **err) {
  char got[VS_SHA256_HEX_LEN + 1];
  memory_sha256(m->ram, m->ram_size, got);
  if (strcmp(got, want) != 0)
    return vs_error_set(err, 0, "memory file checksum mismatch: it is corrupt or was modified");
  return 0;
}

static void apply_runtime_opts(vm_config *cfg, const vm_restore_opts *o) {
  cfg->console_in = o->console_in;
  cfg->console_out = o->console_out;
  cfg->console_escape = o->console_escape;
  cfg->trace = o->trace;
  cfg->interpreter = o->interpreter;
  cfg->one_thread = o->one_thread;
  cfg->net_offline = o->net_offline;
}

vm *vm_restore(const char *dir, const vm_restore_opts *opts, vs_error **err) {
  _cleanup_free_ char *state_path = vs_asprintf("%s/state", dir);
  _cleanup_free_ char *img = NULL;
  size_t len = 0;
  if (vs_read_file(state_path, MAX_STATE_FILE, &img, &len, err) < 0)
    return NULL;
  vm_config cfg;
  vm_config_init(&cfg);
  char *strings[VM_CONFIG_STRINGS] = {0};
  bool frozen = false;
  vmstate_reader rest;
  if (vm_state_open((const uint8_t *)img, len, &cfg, strings, &frozen, &rest, err) < 0) {
    free_strings(strings);
    vs_error_wrap(err, "%s", state_path);
    return NULL;
  }
  apply_runtime_opts(&cfg, opts);
  if (opts->nnets && opts->nnets != cfg.nnets) {
    vs_error_set(err, 0, "%u --net given for a snapshot with %u network devices", opts->nnets,
                 cfg.nnets);
    free_strings(strings);
    return NULL;
  }
  for (unsigned i = 0; i < opts->nnets; i++) {
    free(strings[STRING_SLOT_NET0 + i]);
    cfg.nets[i] = strings[STRING_SLOT_NET0 + i] = vs_strdup(opts->nets[i]);
  }
  if ((opts->clone || frozen) && cfg.ndisks) {
    _cleanup_free_ char *cdir = make_clone_dir(dir, opts->clone_dir, err);
    if (!cdir || make_clone_overlays(&cfg, strings, cdir, err) < 0) {
      free_strings(strings);
      return NULL;
    }
  }
  _cleanup_free_ char *mem_path = vs_asprintf("%s/memory", dir);
  uint8_t *ram = map_memory_file(mem_path, cfg.mem_size, err);
  if (!ram) {
    free_strings(strings);
    return NULL;
  }
  vm *m = vm_build(&cfg, ram, err);
  if (!m) {
    free_strings(strings);
    return NULL;
  }
  memcpy(m->cfg_strings, strings, sizeof(strings));
  char sha[VS_SHA256_HEX_LEN + 1];
  if (vm_state_load(m, &rest, sha, err) < 0 ||
      (opts->verify_memory && verify_memory(m, sha, err) < 0)) {
    vs_error_wrap(err, "%s", state_path);
    vm_destroy(m);
    return NULL;
  }
  if (opts->clone)
    clone_new_identity(m);
  return m;
}
