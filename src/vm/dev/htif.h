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

/* Look at tohost in RAM and serve its command. Returns true when the program asked to exit:
 * *exit_code = 0 for tohost == 1, else value >> 1 (the failing test number). The console
 * (device 1, command 1: putchar) writes to console_fd and acknowledges through fromhost. A
 * tohost outside RAM or a syscall-proxy request (unsupported) ends the run with exit code 255. */
bool htif_poll(htif *ht, uint8_t *ram, uint64_t ram_base, uint64_t ram_size, int console_fd,
               int *exit_code);

#endif
