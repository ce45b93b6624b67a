/* Published port specs: Docker's -p "[IP:]HOSTPORT:PORT[/tcp|udp]". The spec comes from a user
 * (and, through the daemon, from any API client), so every part is checked and the error names
 * the part that is wrong. The -p spec takes no ranges (the docker CLI expands them; a host port
 * range reaches the daemon as HostPort "A-B": net_port_range_parse); no IPv6 host addresses. */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include "net/internal.h"

#define PORT_SPEC_MAX 64

/* Decimal 1..65535, digits only: no sign, no spaces, no hex, no leading zeros beyond "0". */
static int parse_port_number(const char *s, const char *spec, const char *what, uint16_t *out,
                             vs_error **err) {
  size_t len = strlen(s);
  bool digits = len >= 1 && len <= 5 && strspn(s, "0123456789") == len;
  unsigned long v = digits ? strtoul(s, NULL, 10) : 0;
  if (!digits || v < 1 || v > 65535)
    return vs_error_set(err, EINVAL, "port spec \"%s\": %s \"%s\" is not a number in 1..65535",
                        spec, what, s);
  *out = (uint16_t)v;
  return 0;
}

static int parse_proto(const char *s, const char *spec, net_proto *out, vs_error **err) {
  if (strcmp(s, "tcp") == 0)
    *out = NET_PROTO_TCP;
  else if (strcmp(s, "udp") == 0)
    *out = NET_PROTO_UDP;
  else
    return vs_error_set(err, EINVAL, "port spec \"%s\": protocol \"%s\" is not tcp or udp", spec,
                        s);
  return 0;
}

static int parse_host_ip(const char *s, const char *spec, struct in_addr *out, vs_error **err) {
  if (*s == '\0') { /* ":8080:80" means every address, as Docker takes it */
    out->s_addr = htonl(INADDR_ANY);
    return 0;
  }
  if (inet_pton(AF_INET, s, out) != 1)
    return vs_error_set(err, EINVAL, "port spec \"%s\": host address \"%s\" is not an IPv4 address",
                        spec, s);
  return 0;
}

int net_port_parse(const char *spec, net_port *out, vs_error **err) {
  if (!spec)
    return vs_error_set(err, EINVAL, "port spec: missing");
  size_t len = strnlen(spec, PORT_SPEC_MAX + 1);
  if (len == 0)
    return vs_error_set(err, EINVAL, "port spec: empty");
  if (len > PORT_SPEC_MAX)
    return vs_error_set(err, EINVAL, "port spec: longer than %d bytes", PORT_SPEC_MAX);
  if (memchr(spec, '-', len))
    return vs_error_set(err, EINVAL, "port spec \"%s\": port ranges are not supported", spec);
  char buf[PORT_SPEC_MAX + 1];
  memcpy(buf, spec, len + 1);

  net_port p = {.proto = NET_PROTO_TCP};
  char *slash = strchr(buf, '/');
  if (slash) {
    *slash = '\0';
    if (parse_proto(slash + 1, spec, &p.proto, err) < 0)
      return -1;
  }
  /* From the right: PORT, then HOSTPORT, then whatever is left is the host address. */
  char *last = strrchr(buf, ':');
  if (!last)
    return vs_error_set(err, EINVAL,
                        "port spec \"%s\": expected [IP:]HOSTPORT:PORT[/tcp|udp] (a host port is "
                        "needed: there is no random port allocation yet)",
                        spec);
  *last = '\0';
  if (parse_port_number(last + 1, spec, "container port", &p.port, err) < 0)
    return -1;
  char *host_port = buf;
  char *colon = strrchr(buf, ':');
  p.host_ip.s_addr = htonl(INADDR_ANY);
  if (colon) {
    *colon = '\0';
    host_port = colon + 1;
    if (strchr(buf, ':'))
      return vs_error_set(err, EINVAL,
                          "port spec \"%s\": too many ':' (IPv6 host addresses are not supported)",
                          spec);
    if (parse_host_ip(buf, spec, &p.host_ip, err) < 0)
      return -1;
  }
  if (parse_port_number(host_port, spec, "host port", &p.host_port, err) < 0)
    return -1;
  *out = p;
  return 0;
}

int net_port_range_parse(const char *s, uint16_t *first, uint16_t *last, vs_error **err) {
  if (!s || !*s)
    return vs_error_set(err, EINVAL, "host port: empty");
  size_t len = strnlen(s, PORT_SPEC_MAX + 1);
  if (len > PORT_SPEC_MAX)
    return vs_error_set(err, EINVAL, "host port: longer than %d bytes", PORT_SPEC_MAX);
  char buf[PORT_SPEC_MAX + 1];
  memcpy(buf, s, len + 1);
  char *dash = strchr(buf, '-');
  if (dash)
    *dash = '\0';
  uint16_t a, b;
  if (parse_port_number(buf, s, "first host port", &a, err) < 0)
    return -1;
  if (!dash) {
    *first = *last = a;
    return 0;
  }
  if (parse_port_number(dash + 1, s, "last host port", &b, err) < 0)
    return -1;
  if (b < a)
    return vs_error_set(err, EINVAL, "port spec \"%s\": the range ends before it starts", s);
  *first = a;
  *last = b;
  return 0;
}

void net_port_format(const net_port *p, char *buf, size_t size) {
  char ip[INET_ADDRSTRLEN];
  inet_ntop(AF_INET, &p->host_ip, ip, sizeof(ip));
  snprintf(buf, size, "%s:%u:%u/%s", ip, p->host_port, p->port,
           p->proto == NET_PROTO_UDP ? "udp" : "tcp");
}

/* A published port is DNAT in the kernel, so a program already listening on it would silently
 * lose its outside traffic to the guest: refuse the port instead, as a proxy's bind would. A
 * trial bind says whether the address is taken (SO_REUSEADDR only lets TCP bind over TIME_WAIT,
 * never over a listener). */
static int port_check_host(const net_port *p, vs_error **err) {
  bool udp = p->proto == NET_PROTO_UDP;
  _cleanup_close_ int fd = socket(AF_INET, (udp ? SOCK_DGRAM : SOCK_STREAM) | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return vs_error_set(err, errno, "port check: socket");
  int one = 1;
  if (!udp && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0)
    return vs_error_set(err, errno, "port check: SO_REUSEADDR");
  struct sockaddr_in sa = {
      .sin_family = AF_INET, .sin_port = htons(p->host_port), .sin_addr = p->host_ip};
  if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
    char s[NET_PORT_STR_MAX];
    net_port_format(p, s, sizeof(s));
    if (errno == EADDRINUSE)
      return vs_error_set(err, EADDRINUSE, "port %s: host port %u/%s is in use by another program",
                          s, p->host_port, udp ? "udp" : "tcp");
    return vs_error_set(err, errno, "port %s: cannot use host port %u", s, p->host_port);
  }
  return 0;
}

int net_ports_check_host(const net_port *ports, size_t n, vs_error **err) {
  for (size_t i = 0; i < n; i++)
    if (port_check_host(&ports[i], err) < 0)
      return -1;
  return 0;
}
