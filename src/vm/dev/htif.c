/* HTIF: exit and console putchar through tohost/fromhost. */
#include "vm/dev/htif.h"

#include <string.h>
#include <unistd.h>

#define HTIF_DEV(v) ((v) >> 56)
#define HTIF_CMD(v) (((v) >> 48) & 0xff)
#define HTIF_PAYLOAD(v) ((v)&0xffffffffffffULL)

void htif_init(htif *ht, uint64_t tohost, bool has_fromhost, uint64_t fromhost) {
  ht->tohost = tohost;
  ht->fromhost = fromhost;
  ht->has_fromhost = has_fromhost;
}

static uint64_t *htif_word(uint8_t *ram, uint64_t ram_base, uint64_t ram_size, uint64_t addr) {
  if (addr < ram_base || addr - ram_base > ram_size - 8 || (addr & 7))
    return NULL;
  return (uint64_t *)(ram + (addr - ram_base));
}

htif_event htif_poll(htif *ht, uint8_t *ram, uint64_t ram_base, uint64_t ram_size, int console_fd,
                     int *exit_code, uint64_t *request) {
  *request = 0;
  uint64_t *to = htif_word(ram, ram_base, ram_size, ht->tohost);
  if (!to) {
    *exit_code = 255;
    *request = ht->tohost;
    return HTIF_TOHOST_NOT_IN_RAM;
  }
  uint64_t v = __atomic_load_n(to, __ATOMIC_ACQUIRE);
  if (v == 0)
    return HTIF_NOTHING;
  __atomic_store_n(to, 0, __ATOMIC_RELEASE);
  *request = v;
  if (HTIF_DEV(v) == 0 && HTIF_CMD(v) == 0) {
    uint64_t payload = HTIF_PAYLOAD(v);
    *exit_code = (payload & 1) ? (int)((payload >> 1) & 0x7fffffff) : 255;
    return (payload & 1) ? HTIF_EXIT : HTIF_SYSCALL;
  }
  if (HTIF_DEV(v) == 1 && HTIF_CMD(v) == 1) {
    char c = (char)(v & 0xff);
    if (console_fd >= 0 && write(console_fd, &c, 1) < 0) {
      /* a closed console must not stop the guest */
    }
  }
  uint64_t *from = ht->has_fromhost ? htif_word(ram, ram_base, ram_size, ht->fromhost) : NULL;
  if (from)
    __atomic_store_n(from, (HTIF_DEV(v) << 56) | (HTIF_CMD(v) << 48), __ATOMIC_RELEASE);
  return HTIF_NOTHING;
}

const char *htif_event_describe(htif_event ev) {
  switch (ev) {
  case HTIF_SYSCALL:
    return "the program asked for a proxy-kernel system call (an even value other than 0 in "
           "tohost); vessel-vmm's HTIF serves only exit and console output";
  case HTIF_TOHOST_NOT_IN_RAM:
    return "the program's tohost symbol is not inside RAM";
  case HTIF_NOTHING:
  case HTIF_EXIT:
    break;
  }
  return "";
}
