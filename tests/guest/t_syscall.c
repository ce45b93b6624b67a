/* Not a test of the hart: asks HTIF for a proxy-kernel system call (tohost = the address of a
 * request block, an even value other than 0), which vessel-vmm does not serve. The runner checks
 * that the run ends with exit code 255 and a message naming the request. */
#include "test.h"

extern volatile uint64_t tohost, fromhost;

static volatile uint64_t syscall_block[8] __attribute__((aligned(64))) = {64 /* write */, 1};

int main(void) {
  tohost = (uint64_t)(uintptr_t)syscall_block;
  while (!fromhost)
    ;
  return 0; /* a proxy kernel would have answered; vessel-vmm must have stopped the run */
}
