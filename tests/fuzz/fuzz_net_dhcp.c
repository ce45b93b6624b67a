/* Fuzz the DHCP server's request handling (every byte comes from a guest): any input gets an
 * answer, no answer or an error with a message; an answer fits the buffer, is a BOOTREPLY and
 * offers nothing but the endpoint's reserved address. */
#include <arpa/inet.h>
#include <stdint.h>
#include <string.h>

#include "net/internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  net_network n = {.name = "front",
                   .bridge = "br0",
                   .subnet = 0x0a580000,
                   .prefix = 24,
                   .gateway = 0x0a580001,
                   .range = 0x0a580000,
                   .range_prefix = 24,
                   .mtu = 1500};
  net_endpoint ep = {
      .id = "vm", .ip = {.s_addr = htonl(0x0a580005)}, .mac = {0x02, 0x42, 0x0a, 0x58, 0x00, 0x05}};
  net_endpoint *eps[] = {&ep};
  n.eps = eps;
  n.n_eps = 1;
  uint8_t out[600];
  size_t out_len = 1;
  vs_error *err = NULL;
  if (net_dhcp_reply(&n, data, size, out, sizeof(out), &out_len, &err) < 0) {
    if (!err || !err->msg || out_len != 0)
      abort();
    vs_error_free(err);
    return 0;
  }
  if (out_len == 0)
    return 0;
  if (out_len > sizeof(out) || out[0] != 2)
    abort();
  static const uint8_t zero[4], mine[4] = {10, 88, 0, 5};
  if (memcmp(out + 16, zero, 4) != 0 && memcmp(out + 16, mine, 4) != 0)
    abort(); /* yiaddr is the reservation or nothing (NAK) */
  return 0;
}
