/* net-tool: a thin command line over src/net for the integration tests (tests/integration/
 * test_net.py), until vesseld calls the module itself. Run it inside the namespace that plays the
 * host: `nsenter --net=/run/netns/NAME build/tests/net/net-tool --state DIR COMMAND ...`.
 *
 *   create NAME --subnet CIDR [--gateway IP] [--ip-range CIDR] [--bridge IFNAME] [--mtu N]
 *               [--internal] [--no-icc]
 *   rm NAME
 *   attach NAME ID --netns PATH [--ifname NAME] [--ip IP] [--mac MAC] [-p SPEC]...
 *          [--no-default-route]
 *   attach-tap NAME ID [--tap IFNAME] [--ip IP] [--mac MAC] [-p SPEC]...
 *   detach NAME ID
 *   restore | inspect | ruleset
 *   dhcp NAME        serve DHCP on the network's bridge until killed (prints "serving" first)
 *   dns NAME [--upstream IP[:PORT]]   serve DNS on the network's gateway until killed (same)
 *   attach and attach-tap also take --alias NAME (repeated): more names for the network's DNS
 *
 * attach and attach-tap print the endpoint as JSON; errors go to stderr, exit status 1.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <time.h>

#include "net/net.h"

#define MAX_PORTS 32
#define MAX_ALIASES 8

typedef struct tool_args {
  const char *pos[2];
  size_t n_pos;
  net_network_opts net;
  net_endpoint_opts ep;
  const char *netns;
  net_port ports[MAX_PORTS];
  const char *aliases[MAX_ALIASES];
  const char *upstream;
} tool_args;

static int parse_flag(tool_args *a, const char *flag, const char *val, vs_error **err) {
  if (!val)
    return vs_error_set(err, EINVAL, "%s needs a value", flag);
  if (strcmp(flag, "--subnet") == 0)
    a->net.subnet = val;
  else if (strcmp(flag, "--gateway") == 0)
    a->net.gateway = val;
  else if (strcmp(flag, "--ip-range") == 0)
    a->net.ip_range = val;
  else if (strcmp(flag, "--bridge") == 0)
    a->net.bridge = val;
  else if (strcmp(flag, "--mtu") == 0) {
    uint64_t v;
    if (vs_parse_u64(val, "--mtu", &v, err) < 0)
      return -1;
    a->net.mtu = v > 100000 ? 100000 : (unsigned)v;
  } else if (strcmp(flag, "--netns") == 0)
    a->netns = val;
  else if (strcmp(flag, "--ifname") == 0)
    a->ep.ifname = val;
  else if (strcmp(flag, "--tap") == 0)
    a->ep.tap_name = val;
  else if (strcmp(flag, "--ip") == 0)
    a->ep.ip = val;
  else if (strcmp(flag, "--mac") == 0)
    a->ep.mac = val;
  else if (strcmp(flag, "--upstream") == 0)
    a->upstream = val;
  else if (strcmp(flag, "--alias") == 0) {
    if (a->ep.n_aliases == MAX_ALIASES)
      return vs_error_set(err, EINVAL, "at most %d aliases", MAX_ALIASES);
    a->aliases[a->ep.n_aliases++] = val;
  } else if (strcmp(flag, "-p") == 0) {
    if (a->ep.n_ports == MAX_PORTS)
      return vs_error_set(err, EINVAL, "at most %d ports", MAX_PORTS);
    if (net_port_parse(val, &a->ports[a->ep.n_ports], err) < 0)
      return -1;
    a->ep.n_ports++;
  } else
    return vs_error_set(err, EINVAL, "unknown option %s", flag);
  return 0;
}

static int parse_args(int argc, char **argv, tool_args *a, vs_error **err) {
  a->ep.netns_fd = -1;
  a->ep.ports = a->ports;
  a->ep.aliases = a->aliases;
  for (int i = 0; i < argc; i++) {
    const char *arg = argv[i];
    if (strcmp(arg, "--internal") == 0)
      a->net.internal = true;
    else if (strcmp(arg, "--no-icc") == 0)
      a->net.disable_icc = true;
    else if (strcmp(arg, "--no-default-route") == 0)
      a->ep.no_default_route = true;
    else if (arg[0] == '-') {
      if (parse_flag(a, arg, i + 1 < argc ? argv[i + 1] : NULL, err) < 0)
        return -1;
      i++;
    } else if (a->n_pos < 2)
      a->pos[a->n_pos++] = arg;
    else
      return vs_error_set(err, EINVAL, "unexpected argument %s", arg);
  }
  return 0;
}

static int need_pos(const tool_args *a, size_t n, const char *usage, vs_error **err) {
  if (a->n_pos != n)
    return vs_error_set(err, EINVAL, "usage: %s", usage);
  return 0;
}

static void print_endpoint(const net_endpoint_info *info) {
  char ip[INET_ADDRSTRLEN], gw[INET_ADDRSTRLEN];
  inet_ntop(AF_INET, &info->ip, ip, sizeof(ip));
  inet_ntop(AF_INET, &info->gateway, gw, sizeof(gw));
  const uint8_t *m = info->mac;
  printf("{\"ip\": \"%s\", \"prefix\": %u, \"gateway\": \"%s\", "
         "\"mac\": \"%02x:%02x:%02x:%02x:%02x:%02x\", \"host_ifname\": \"%s\"}\n",
         ip, info->prefix, gw, m[0], m[1], m[2], m[3], m[4], m[5], info->host_ifname);
}

static int cmd_attach(net_ctx *ctx, tool_args *a, bool tap, vs_error **err) {
  if (need_pos(a, 2, tap ? "attach-tap NETWORK ID" : "attach NETWORK ID --netns PATH", err) < 0)
    return -1;
  a->ep.network = a->pos[0];
  a->ep.id = a->pos[1];
  net_endpoint_info info;
  if (tap) {
    if (net_endpoint_attach_tap(ctx, &a->ep, &info, err) < 0)
      return -1;
  } else {
    if (!a->netns)
      return vs_error_set(err, EINVAL, "attach needs --netns PATH");
    _cleanup_close_ int fd = open(a->netns, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
      return vs_error_set(err, errno, "open %s", a->netns);
    a->ep.netns_fd = fd;
    if (net_endpoint_attach_veth(ctx, &a->ep, &info, err) < 0)
      return -1;
  }
  print_endpoint(&info);
  return 0;
}

static int run(net_ctx *ctx, const char *cmd, tool_args *a, vs_error **err) {
  if (strcmp(cmd, "create") == 0) {
    if (need_pos(a, 1, "create NAME --subnet CIDR ...", err) < 0)
      return -1;
    a->net.name = a->pos[0];
    return net_network_create(ctx, &a->net, err);
  }
  if (strcmp(cmd, "rm") == 0)
    return need_pos(a, 1, "rm NAME", err) < 0 ? -1 : net_network_remove(ctx, a->pos[0], err);
  if (strcmp(cmd, "attach") == 0 || strcmp(cmd, "attach-tap") == 0)
    return cmd_attach(ctx, a, strcmp(cmd, "attach-tap") == 0, err);
  if (strcmp(cmd, "detach") == 0)
    return need_pos(a, 2, "detach NETWORK ID", err) < 0
               ? -1
               : net_endpoint_detach(ctx, a->pos[0], a->pos[1], err);
  if (strcmp(cmd, "restore") == 0)
    return net_restore(ctx, err);
  if (strcmp(cmd, "inspect") == 0) {
    _cleanup_json_ json_t *j = net_state_json(ctx);
    json_dumpf(j, stdout, JSON_INDENT(2) | JSON_SORT_KEYS);
    putchar('\n');
    return 0;
  }
  if (strcmp(cmd, "ruleset") == 0) {
    _cleanup_free_ char *text = net_ruleset_text(ctx);
    fputs(text, stdout);
    return 0;
  }
  return vs_error_set(err, EINVAL, "unknown command %s", cmd);
}

/* net_open, waiting while another net-tool command holds the state. */
static net_ctx *open_when_free(const char *state_dir, vs_error **err) {
  for (;;) {
    _cleanup_error_ vs_error *busy = NULL;
    net_ctx *ctx = net_open(state_dir, &busy);
    if (ctx)
      return ctx;
    if (busy->errnum != EWOULDBLOCK) {
      *err = steal_pointer(&busy);
      return NULL;
    }
    nanosleep(&(struct timespec){.tv_nsec = 50 * 1000 * 1000}, NULL);
  }
}

/* The state is opened for each request only, so other net-tool commands (attach-tap ...) can
 * run while this serves; a request that arrives while one of them holds the state waits in the
 * socket. */
static int serve_dhcp(const char *state_dir, const char *network, vs_error **err) {
  net_ctx *ctx = net_open(state_dir, err);
  if (!ctx)
    return -1;
  _cleanup_close_ int fd = net_dhcp_open(ctx, network, err);
  net_close(ctx);
  if (fd < 0)
    return -1;
  printf("serving\n");
  fflush(stdout);
  for (;;) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, -1) < 0 && errno != EINTR)
      return vs_error_set(err, errno, "poll");
    if (!(ctx = open_when_free(state_dir, err)))
      return -1;
    int r = net_dhcp_handle(ctx, network, fd, err);
    net_close(ctx);
    if (r < 0)
      return -1;
  }
}

/* As serve_dhcp: the state is opened for each batch of queries only. */
static int serve_dns(const char *state_dir, const char *network, const char *upstream,
                     vs_error **err) {
  net_ctx *ctx = net_open(state_dir, err);
  if (!ctx)
    return -1;
  net_dns *dns = net_dns_open(ctx, network, upstream, err);
  net_close(ctx);
  if (!dns)
    return -1;
  int fds[2];
  net_dns_fds(dns, fds);
  printf("serving\n");
  fflush(stdout);
  int r = 0;
  while (r == 0) {
    struct pollfd p[2] = {{.fd = fds[0], .events = POLLIN}, {.fd = fds[1], .events = POLLIN}};
    if (poll(p, fds[1] >= 0 ? 2 : 1, -1) < 0 && errno != EINTR) {
      r = vs_error_set(err, errno, "poll");
      break;
    }
    ctx = open_when_free(state_dir, err);
    if (!ctx)
      break;
    r = net_dns_handle(dns, ctx, err);
    net_close(ctx);
  }
  net_dns_close(dns);
  return -1;
}

int main(int argc, char **argv) {
  vs_log_configure("net-tool", VS_LOG_WARN, VS_LOG_FORMAT_TEXT, 2);
  if (argc < 4 || strcmp(argv[1], "--state") != 0) {
    fprintf(stderr, "usage: net-tool --state DIR COMMAND ARGS...\n");
    return 2;
  }
  _cleanup_error_ vs_error *err = NULL;
  tool_args a = {0};
  net_ctx *ctx = NULL;
  if (strcmp(argv[3], "dhcp") == 0) {
    if (argc == 5)
      (void)serve_dhcp(argv[2], argv[4], &err);
    else
      vs_error_set(&err, EINVAL, "usage: dhcp NETWORK");
  } else if (strcmp(argv[3], "dns") == 0) {
    if (parse_args(argc - 4, argv + 4, &a, &err) == 0 &&
        need_pos(&a, 1, "dns NETWORK [--upstream IP[:PORT]]", &err) == 0)
      (void)serve_dns(argv[2], a.pos[0], a.upstream, &err);
  } else if (parse_args(argc - 4, argv + 4, &a, &err) == 0 && (ctx = net_open(argv[2], &err)))
    (void)run(ctx, argv[3], &a, &err);
  net_close(ctx);
  if (err) {
    vs_error_print(err, "net-tool");
    return 1;
  }
  return 0;
}
