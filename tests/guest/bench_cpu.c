/* A CPU-bound bare-metal workload for bench/vm-cpu (not a test): table-driven CRC, byte stores,
 * 64-bit loads and multiplies over a 64 KiB buffer, about 0.4 billion instructions. Ends through
 * HTIF with status 0. */
#include "test.h"

static unsigned char buf[65536];
static unsigned long crc_table[256];
int main(void) {
  for (unsigned i = 0; i < 256; i++) {
    unsigned long c = i;
    for (int k = 0; k < 8; k++)
      c = c & 1 ? 0xedb88320ul ^ (c >> 1) : c >> 1;
    crc_table[i] = c;
  }
  unsigned long crc = 0, sum = 0;
  for (int round = 0; round < 300; round++) {
    for (unsigned i = 0; i < sizeof(buf); i++)
      buf[i] = (unsigned char)(i * 7 + round);
    for (unsigned i = 0; i < sizeof(buf); i++)
      crc = crc_table[(crc ^ buf[i]) & 0xff] ^ (crc >> 8);
    for (unsigned i = 0; i + 8 <= sizeof(buf); i += 8)
      sum += *(unsigned long *)(buf + i) * (i | 1);
  }
  /* the result must not be optimised away; it cannot be this value */
  return (crc ^ sum) == 0x12345 ? 1 : 0;
}
