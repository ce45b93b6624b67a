/* syscon / sifive,test0 compatible power control: a 32-bit register at +0. Writing 0x5555 powers
 * the machine off, 0x7777 resets it, 0x3333 | code << 16 powers off with a failure code. Linux
 * drives it through its syscon-poweroff and syscon-reboot drivers.
 */
#include <string.h>

#include "vm/dev/dev.h"

void syscon_init(syscon_state *s) { memset(s, 0, sizeof(*s)); }

bool syscon_read(void *dev, uint64_t off, unsigned size, uint64_t *val) {
  (void)dev;
  if (off >= SYSCON_SIZE || size > 4)
    return false;
  *val = 0;
  return true;
}

bool syscon_write(void *dev, uint64_t off, unsigned size, uint64_t val) {
  syscon_state *s = dev;
  if (off >= SYSCON_SIZE || size > 4)
    return false;
  if (off != 0)
    return true;
  switch (val & 0xffff) {
  case SYSCON_POWEROFF:
    s->request = SYSCON_REQ_POWEROFF;
    break;
  case SYSCON_RESET:
    s->request = SYSCON_REQ_RESET;
    break;
  case SYSCON_FAIL:
    s->request = SYSCON_REQ_FAIL;
    s->fail_code = (unsigned)((val >> 16) & 0xffff);
    break;
  default:
    break;
  }
  return true;
}

#define SYSCON_STATE_VERSION 1

void syscon_save(const syscon_state *s, vmstate_writer *w) {
  vmstate_begin(w, "SYSC", SYSCON_STATE_VERSION);
  vmstate_put_u32(w, (uint32_t)s->request);
  vmstate_put_u32(w, s->fail_code);
  vmstate_end_section(w);
}

int syscon_load(syscon_state *s, vmstate_reader *img, vs_error **err) {
  vmstate_reader r;
  if (vmstate_next(img, "SYSC", SYSCON_STATE_VERSION, &r, err) < 0)
    return -1;
  uint32_t req = vmstate_get_u32(&r);
  if (req > SYSCON_REQ_FAIL)
    vmstate_refuse(&r, "unknown pending request");
  s->request = (syscon_request)req;
  s->fail_code = vmstate_get_u32(&r) & 0xffff;
  return vmstate_end(&r, err);
}
