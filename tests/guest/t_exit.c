/* Not a test of the hart: exits through HTIF with code 42, so the runner can check that a
 * failing program's number reaches the exit status (tohost = 42 << 1 | 1). Prints through the
 * HTIF console first. */
#include "test.h"

extern volatile uint64_t tohost, fromhost;

int main(void) {
  for (const char *s = "htif console\n"; *s; s++) {
    tohost = (1ull << 56) | (1ull << 48) | (uint8_t)*s;
    while (tohost)
      ;
  }
  return 42;
}
