/* The module's nftables rules, through libnftables. The module owns two tables named `vessel`:
 * `inet vessel` (NAT, published ports, isolation of networks from each other and of internal
 * networks from everything) and `bridge vessel` (enable_icc=false: frames between two ports of
 * one bridge never reach the inet hooks unless br_netfilter is loaded, which is host
 * configuration we do not own, so they are filtered where they are switched; the table exists
 * only while such a network has endpoints).
 *
 * Both are rebuilt whole from the state on every change and loaded in one nft transaction
 * ("add table; delete table; table {...}"): the kernel swaps old for new atomically, a refused
 * ruleset changes nothing, and nothing outside the two tables is ever touched. Conntrack entries
 * of established flows survive the swap, as their NAT bindings live in conntrack, not in rules. */
#include <errno.h>
#include <nftables/libnftables.h>
#include <string.h>

#include "net/internal.h"

/* Every name written into the text passed net_check_ifname, so it needs no escaping. */

static void put_cidr(FILE *f, uint32_t addr, unsigned prefix) {
  char ip[INET_ADDRSTRLEN];
  net_format_ipv4(addr, ip);
  fprintf(f, "%s/%u", ip, prefix);
}

static void put_other_bridges(FILE *f, const net_ctx *ctx, size_t self) {
  bool first = true;
  for (size_t j = 0; j < ctx->n_nets; j++) {
    if (j == self)
      continue;
    fprintf(f, "%s\"%s\"", first ? "" : ", ", ctx->nets[j]->bridge);
    first = false;
  }
}

/* Order matters: an internal network reaches nothing, not even a published port; a published
 * port is public, so a connection DNATed to it passes the isolation between networks (as it
 * would from another host); everything else between two bridges is dropped. */
static void put_forward_rules(FILE *f, const net_ctx *ctx) {
  fputs("  chain forward {\n    type filter hook forward priority filter; policy accept;\n", f);
  for (size_t i = 0; i < ctx->n_nets; i++) {
    const net_network *n = ctx->nets[i];
    if (n->internal) {
      fprintf(f, "    iifname \"%s\" oifname != \"%s\" drop\n", n->bridge, n->bridge);
      fprintf(f, "    oifname \"%s\" iifname != \"%s\" drop\n", n->bridge, n->bridge);
    }
  }
  fputs("    ct status dnat accept\n", f);
  for (size_t i = 0; i < ctx->n_nets; i++) {
    const net_network *n = ctx->nets[i];
    if (n->disable_icc) /* routed hairpin through the gateway */
      fprintf(f, "    iifname \"%s\" oifname \"%s\" drop\n", n->bridge, n->bridge);
    if (ctx->n_nets < 2)
      continue;
    fprintf(f, "    iifname \"%s\" oifname { ", n->bridge);
    put_other_bridges(f, ctx, i);
    fputs(" } drop\n", f);
  }
  fputs("  }\n", f);
}

static void put_port_rule(FILE *f, const net_endpoint *ep, const net_port *p) {
  char ip[INET_ADDRSTRLEN];
  fputs("    ", f);
  if (p->host_ip.s_addr != htonl(INADDR_ANY)) {
    inet_ntop(AF_INET, &p->host_ip, ip, sizeof(ip));
    fprintf(f, "ip daddr %s ", ip);
  }
  inet_ntop(AF_INET, &ep->ip, ip, sizeof(ip));
  const char *proto = p->proto == NET_PROTO_UDP ? "udp" : "tcp";
  fprintf(f, "%s dport %u dnat ip to %s:%u\n", proto, p->host_port, ip, p->port);
}

static void put_nat_rules(FILE *f, const net_ctx *ctx) {
  /* Published ports answer on the host's own addresses only, from outside (prerouting) and from
   * the host itself, loopback included (output). */
  fputs("  chain ports {\n", f);
  for (size_t i = 0; i < ctx->n_nets; i++)
    for (size_t j = 0; j < ctx->nets[i]->n_eps; j++) {
      const net_endpoint *ep = ctx->nets[i]->eps[j];
      for (size_t k = 0; k < ep->n_ports; k++)
        put_port_rule(f, ep, &ep->ports[k]);
    }
  fputs("  }\n", f);
  fputs("  chain prerouting {\n    type nat hook prerouting priority dstnat; policy accept;\n"
        "    fib daddr type local jump ports\n  }\n",
        f);
  fputs("  chain output {\n    type nat hook output priority -100; policy accept;\n"
        "    fib daddr type local jump ports\n  }\n",
        f);
  fputs("  chain postrouting {\n    type nat hook postrouting priority srcnat; policy accept;\n",
        f);
  for (size_t i = 0; i < ctx->n_nets; i++) {
    const net_network *n = ctx->nets[i];
    if (!n->internal) {
      fputs("    ip saddr ", f);
      put_cidr(f, n->subnet, n->prefix);
      fprintf(f, " oifname != \"%s\" masquerade\n", n->bridge);
    }
    /* Loopback publishing: a connection to 127.0.0.1:HOSTPORT leaves through the bridge with
     * source 127.0.0.1 (allowed by route_localnet on the bridge); the guest could not answer
     * that address, so it gets the gateway's. The same for a guest reaching a published port of
     * its own network through the host (hairpin). */
    fprintf(f, "    oifname \"%s\" ip saddr 127.0.0.0/8 masquerade\n", n->bridge);
    fprintf(f, "    oifname \"%s\" ct status dnat ip saddr ", n->bridge);
    put_cidr(f, n->subnet, n->prefix);
    fputs(" masquerade\n", f);
  }
  fputs("  }\n", f);
}

static void put_endpoint_set(FILE *f, const net_network *n) {
  fputs("{ ", f);
  for (size_t j = 0; j < n->n_eps; j++)
    fprintf(f, "%s\"%s\"", j ? ", " : "", n->eps[j]->host_ifname);
  fputs(" }", f);
}

/* Only while a network keeps its endpoints apart: an empty chain on the bridge hook would still
 * cost every switched frame a pass through nftables. */
static void put_bridge_table(FILE *f, const net_ctx *ctx) {
  bool needed = false;
  for (size_t i = 0; i < ctx->n_nets; i++)
    needed = needed || (ctx->nets[i]->disable_icc && ctx->nets[i]->n_eps > 0);
  if (!needed)
    return;
  fputs("table bridge vessel {\n  chain forward {\n"
        "    type filter hook forward priority filter; policy accept;\n",
        f);
  for (size_t i = 0; i < ctx->n_nets; i++) {
    const net_network *n = ctx->nets[i];
    if (!n->disable_icc || n->n_eps == 0)
      continue;
    fputs("    iifname ", f);
    put_endpoint_set(f, n);
    fputs(" oifname ", f);
    put_endpoint_set(f, n);
    fputs(" drop\n", f);
  }
  fputs("  }\n}\n", f);
}

char *net_ruleset_text(const net_ctx *ctx) {
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  if (!f)
    abort(); /* out of memory, as vs_malloc0 would */
  /* "add" first so that "delete" cannot fail on a table that is not there yet */
  fputs("add table inet vessel\ndelete table inet vessel\n"
        "add table bridge vessel\ndelete table bridge vessel\n",
        f);
  if (ctx->n_nets > 0) {
    fputs("table inet vessel {\n", f);
    put_forward_rules(f, ctx);
    put_nat_rules(f, ctx);
    fputs("}\n", f);
    put_bridge_table(f, ctx);
  }
  fclose(f);
  return text;
}

static void nft_ctx_freep(struct nft_ctx **c) {
  if (*c)
    nft_ctx_free(*c);
}

int net_nft_apply(const net_ctx *ctx, vs_error **err) {
  _cleanup_(nft_ctx_freep) struct nft_ctx *nft = nft_ctx_new(NFT_CTX_DEFAULT);
  if (!nft)
    return vs_error_set(err, ENOMEM, "nftables: create a libnftables context");
  nft_ctx_buffer_output(nft);
  nft_ctx_buffer_error(nft);
  _cleanup_free_ char *text = net_ruleset_text(ctx);
  if (nft_run_cmd_from_buffer(nft, text) != 0) {
    const char *msg = nft_ctx_get_error_buffer(nft);
    _cleanup_free_ char *first = vs_strdup(msg && *msg ? msg : "refused");
    char *nl = strchr(first, '\n');
    if (nl)
      *nl = '\0';
    return vs_error_set(err, 0, "nftables: load the vessel tables: %s", first);
  }
  return 0;
}
