/* ACLINT in the SiFive CLINT layout (sifive,clint0): MSWI (one msip word per hart at +0),
 * MTIMER (mtimecmp per hart at +0x4000, mtime at +0xbff8). mtime itself belongs to the machine
 * (a 10 MHz clock derived from CLOCK_MONOTONIC); the device only reads and sets it.
 */
#include <string.h>

#include "vm/dev/dev.h"

void aclint_init(aclint_state *c, unsigned num_harts, dev_hart_irq out,
                 uint64_t (*read_mtime)(void *), void (*write_mtime)(void *, uint64_t)) {
  memset(c, 0, sizeof(*c));
  c->num_harts = num_harts > VM_MAX_HARTS ? VM_MAX_HARTS : num_harts;
  c->out = out;
  c->read_mtime = read_mtime;
  c->write_mtime = write_mtime;
  for (unsigned h = 0; h < VM_MAX_HARTS; h++)
    c->mtimecmp[h] = UINT64_MAX;
}

void aclint_update_timers(aclint_state *c, uint64_t now) {
  for (unsigned h = 0; h < c->num_harts; h++)
    c->out.set(c->out.machine, h, DEV_MIP_MTIP, now >= c->mtimecmp[h]);
}

uint64_t aclint_next_deadline(const aclint_state *c) {
  uint64_t t = UINT64_MAX;
  for (unsigned h = 0; h < c->num_harts; h++)
    if (c->mtimecmp[h] < t)
      t = c->mtimecmp[h];
  return t;
}

static bool aclint_valid_access(uint64_t off, unsigned size) {
  return (size == 4 || size == 8) && (off & (size - 1)) == 0 && off < ACLINT_SIZE;
}

bool aclint_read(void *dev, uint64_t off, unsigned size, uint64_t *val) {
  aclint_state *c = dev;
  if (!aclint_valid_access(off, size))
    return false;
  if (off < (uint64_t)4 * c->num_harts) {
    *val = c->msip[off / 4] & 1;
    return true;
  }
  if (off >= ACLINT_MTIMECMP_OFF && off < ACLINT_MTIMECMP_OFF + 8ULL * c->num_harts) {
    uint64_t rel = off - ACLINT_MTIMECMP_OFF;
    *val = dev_extract(c->mtimecmp[rel / 8], (unsigned)(rel % 8), size);
    return true;
  }
  if (off >= ACLINT_MTIME_OFF && off < ACLINT_MTIME_OFF + 8) {
    *val = dev_extract(c->read_mtime(c->out.machine), (unsigned)(off - ACLINT_MTIME_OFF), size);
    return true;
  }
  *val = 0; /* reserved space reads as zero */
  return true;
}

bool aclint_write(void *dev, uint64_t off, unsigned size, uint64_t val) {
  aclint_state *c = dev;
  if (!aclint_valid_access(off, size))
    return false;
  if (off < (uint64_t)4 * c->num_harts) {
    unsigned h = (unsigned)(off / 4);
    c->msip[h] = (uint32_t)val & 1;
    c->out.set(c->out.machine, h, DEV_MIP_MSIP, c->msip[h] != 0);
    return true;
  }
  if (off >= ACLINT_MTIMECMP_OFF && off < ACLINT_MTIMECMP_OFF + 8ULL * c->num_harts) {
    uint64_t rel = off - ACLINT_MTIMECMP_OFF;
    unsigned h = (unsigned)(rel / 8);
    /* atomic: hart threads read their own mtimecmp without the big lock */
    __atomic_store_n(&c->mtimecmp[h], dev_deposit(c->mtimecmp[h], (unsigned)(rel % 8), size, val),
                     __ATOMIC_RELAXED);
    /* MTIP follows the comparison at once: firmware clears it by writing mtimecmp */
    uint64_t now = c->read_mtime(c->out.machine);
    c->out.set(c->out.machine, h, DEV_MIP_MTIP, now >= c->mtimecmp[h]);
    return true;
  }
  if (off >= ACLINT_MTIME_OFF && off < ACLINT_MTIME_OFF + 8) {
    uint64_t now = c->read_mtime(c->out.machine);
    c->write_mtime(c->out.machine, dev_deposit(now, (unsigned)(off - ACLINT_MTIME_OFF), size, val));
    aclint_update_timers(c, c->read_mtime(c->out.machine));
    return true;
  }
  return true; /* writes to reserved space are ignored */
}

/* ------------------------------------------------------------------ save / restore */

#define ACLINT_STATE_VERSION 1

void aclint_save(const aclint_state *c, vmstate_writer *w) {
  vmstate_begin(w, "CLNT", ACLINT_STATE_VERSION);
  vmstate_put_u32(w, c->num_harts);
  for (unsigned h = 0; h < c->num_harts; h++) {
    vmstate_put_u32(w, c->msip[h]);
    vmstate_put_u64(w, c->mtimecmp[h]);
  }
  vmstate_end_section(w);
}

int aclint_load(aclint_state *c, vmstate_reader *img, vs_error **err) {
  vmstate_reader r;
  if (vmstate_next(img, "CLNT", ACLINT_STATE_VERSION, &r, err) < 0)
    return -1;
  if (vmstate_get_u32(&r) != c->num_harts)
    vmstate_refuse(&r, "number of harts differs from the machine's");
  for (unsigned h = 0; h < c->num_harts && !r.bad; h++) {
    c->msip[h] = vmstate_get_u32(&r) & 1;
    c->mtimecmp[h] = vmstate_get_u64(&r);
    c->out.set(c->out.machine, h, DEV_MIP_MSIP, c->msip[h] != 0);
  }
  return vmstate_end(&r, err);
}
