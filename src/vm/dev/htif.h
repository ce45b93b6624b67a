/* HTIF (host-target interface) of the RISC-V test suites: the guest writes commands to the
 * `tohost` word in RAM; the machine polls it. Used in --bios none --htif mode. */
#ifndef VESSEL_VM_DEV_HTIF_H
#define VESSEL_VM_DEV_HTIF_H

#include <stdbool.h>
#include <stdint.h>

typedef struct htif {
  uint64_t tohost, fromhost; /* guest physical addresses of the two words */
  bool has_fromhost;
} htif;

void htif_init(htif *ht, uint64_t tohost, bool has_fromhost, uint64_t fromhost);

/* What a look at tohost found. */
typedef enum htif_event {
  HTIF_NOTHING,          /* no request, or one served (console output) */
  HTIF_EXIT,             /* the program asked to exit: *exit_code says how */
  HTIF_SYSCALL,          /* an even value other than 0: a proxy-kernel system call (unsupported) */
  HTIF_TOHOST_NOT_IN_RAM /* the tohost word is not inside RAM */
} htif_event;

/* Look at tohost in RAM and serve its command. HTIF_EXIT: *exit_code = 0 for tohost == 1, else
 * value >> 1 (the failing test number). The console (device 1, command 1: putchar) writes to
 * console_fd and acknowledges through fromhost. HTIF_SYSCALL and HTIF_TOHOST_NOT_IN_RAM end the
 * run too (*exit_code = 255); *request holds tohost's value for the message. */
htif_event htif_poll(htif *ht, uint8_t *ram, uint64_t ram_base, uint64_t ram_size, int console_fd,
                     int *exit_code, uint64_t *request);

/* A sentence for the log about an event that ended the run other than by HTIF_EXIT. */
const char *htif_event_describe(htif_event ev);

#endif
