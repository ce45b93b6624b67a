/* Fuzz the DNS server's query handling (every byte comes from a guest): any input is answered,
 * forwarded or refused with a message; an answer fits the buffer, keeps the query's id and
 * carries nothing but the endpoint's address. */
#include <arpa/inet.h>
#include <stdint.h>
#include <string.h>

#include "net/internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char alias[] = "www.example";
  char *aliases[] = {alias};
  net_network n = {.name = "front",
                   .bridge = "br0",
                   .subnet = 0x0a580000,
                   .prefix = 24,
                   .gateway = 0x0a580001,
                   .range = 0x0a580000,
                   .range_prefix = 24,
                   .mtu = 1500};
  net_endpoint ep = {
      .id = "web", .ip = {.s_addr = htonl(0x0a580005)}, .aliases = aliases, .n_aliases = 1};
  net_endpoint *eps[] = {&ep};
  n.eps = eps;
  n.n_eps = 1;
  uint8_t out[1600];
  size_t out_len = 1;
  bool forward = true;
  vs_error *err = NULL;
  if (net_dns_answer(&n, data, size, out, sizeof(out), &out_len, &forward, &err) < 0) {
    if (!err || !err->msg || out_len != 0 || forward)
      abort();
    vs_error_free(err);
    return 0;
  }
  if (forward) {
    if (out_len != 0)
      abort(); /* a forwarded query has no answer of ours */
    return 0;
  }
  if (out_len > sizeof(out) || out_len < 12 || out[0] != data[0] || out[1] != data[1])
    abort();
  static const uint8_t mine[4] = {10, 88, 0, 5};
  if (out[7] == 1 && memcmp(out + out_len - 4, mine, 4) != 0)
    abort(); /* the one record is the endpoint's address */
  return 0;
}
