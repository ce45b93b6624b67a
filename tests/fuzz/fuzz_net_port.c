/* Fuzz the published-port parsers (Docker's -p and the API's HostPort ranges, from any API client):
 * every input is accepted or refused with a message; an accepted spec formats to a canonical form
 * that parses back to the same port. */
#include <arpa/inet.h>
#include <stdint.h>
#include <string.h>

#include "net/net.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char spec[128];
  if (size >= sizeof(spec))
    return 0;
  memcpy(spec, data, size);
  spec[size] = '\0';
  uint16_t first, last;
  vs_error *rerr = NULL;
  if (net_port_range_parse(spec, &first, &last, &rerr) < 0) {
    if (!rerr || !rerr->msg || !*rerr->msg)
      abort();
    vs_error_free(rerr);
  } else if (first == 0 || last < first) {
    abort(); /* a range is 1..65535 and in order */
  }
  net_port p;
  vs_error *err = NULL;
  if (net_port_parse(spec, &p, &err) < 0) {
    if (!err || !err->msg || !*err->msg)
      abort(); /* every refusal says why */
    vs_error_free(err);
    return 0;
  }
  if (p.host_port == 0 || p.port == 0 || (p.proto != NET_PROTO_TCP && p.proto != NET_PROTO_UDP))
    abort();
  char canon[NET_PORT_STR_MAX];
  net_port_format(&p, canon, sizeof(canon));
  net_port q;
  if (net_port_parse(canon, &q, NULL) < 0 || memcmp(&p, &q, sizeof(p)) != 0)
    abort(); /* the canonical form must mean the same port */
  return 0;
}
