/* src/net without the kernel: port specs, addresses, IPAM, the state file and the nft text. The
 * netlink and nftables parts run for real in tests/integration/test_net.py. */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include "net/internal.h"
#include "tap.h"

static net_port port_ok(const char *spec) {
  net_port p;
  vs_error *err = NULL;
  if (net_port_parse(spec, &p, &err) < 0)
    TAP_FAIL("%s: %s", spec, err->msg);
  return p;
}

static void port_bad(const char *spec, const char *msg) {
  net_port p;
  _cleanup_error_ vs_error *err = NULL;
  CHECK(net_port_parse(spec, &p, &err) == -1);
  CHECK(err != NULL);
  if (!strstr(err->msg, msg))
    TAP_FAIL("%s: error \"%s\" lacks \"%s\"", spec, err->msg, msg);
}

TEST(port_spec_forms) {
  net_port p = port_ok("8080:80");
  CHECK(p.host_port == 8080 && p.port == 80 && p.proto == NET_PROTO_TCP);
  CHECK(p.host_ip.s_addr == htonl(INADDR_ANY));
  p = port_ok("127.0.0.1:53:5353/udp");
  CHECK(p.host_port == 53 && p.port == 5353 && p.proto == NET_PROTO_UDP);
  CHECK(p.host_ip.s_addr == htonl(0x7f000001));
  p = port_ok(":1:65535/tcp");
  CHECK(p.host_port == 1 && p.port == 65535 && p.host_ip.s_addr == htonl(INADDR_ANY));
  char buf[NET_PORT_STR_MAX];
  net_port_format(&p, buf, sizeof(buf));
  CHECK_STREQ(buf, "0.0.0.0:1:65535/tcp");
}

TEST(port_spec_errors_name_the_part) {
  port_bad("", "empty");
  port_bad("80", "expected [IP:]HOSTPORT:PORT");
  port_bad("0:80", "host port \"0\" is not a number in 1..65535");
  port_bad("80:65536", "container port \"65536\"");
  port_bad("80:+1", "container port \"+1\"");
  port_bad("80: 1", "container port \" 1\"");
  port_bad("0x50:80", "host port \"0x50\"");
  port_bad("80:80/", "protocol \"\" is not tcp or udp");
  port_bad("80:80/TCP", "protocol \"TCP\"");
  port_bad("8000-8010:80", "port ranges are not supported");
  port_bad("::1:80:80", "too many ':'");
  port_bad("localhost:80:80", "host address \"localhost\" is not an IPv4 address");
  port_bad("1.2.3.4.5:80:80", "host address");
  port_bad("1:2:3:4", "too many ':'");
  port_bad("12345678901234567890123456789012345678901234567890123456789012345:1",
           "longer than 64 bytes");
}

static void range_bad(const char *s, const char *msg) {
  uint16_t a = 0, b = 0;
  _cleanup_error_ vs_error *err = NULL;
  CHECK(net_port_range_parse(s, &a, &b, &err) == -1);
  CHECK(err != NULL);
  if (!strstr(err->msg, msg))
    TAP_FAIL("%s: error \"%s\" lacks \"%s\"", s, err->msg, msg);
}

TEST(host_port_ranges) {
  uint16_t a = 0, b = 0;
  CHECK(net_port_range_parse("8080", &a, &b, NULL) == 0 && a == 8080 && b == 8080);
  CHECK(net_port_range_parse("8000-8010", &a, &b, NULL) == 0 && a == 8000 && b == 8010);
  CHECK(net_port_range_parse("1-65535", &a, &b, NULL) == 0 && a == 1 && b == 65535);
  CHECK(net_port_range_parse("7-7", &a, &b, NULL) == 0 && a == 7 && b == 7);
  range_bad("", "empty");
  range_bad("8010-8000", "the range ends before it starts");
  range_bad("-8000", "first host port \"\"");
  range_bad("8000-", "last host port \"\"");
  range_bad("8000-8001-8002", "last host port \"8001-8002\"");
  range_bad("0-10", "first host port \"0\"");
  range_bad("1-65536", "last host port \"65536\"");
  range_bad("80 -90", "first host port");
}

TEST(cidr_parse) {
  uint32_t a;
  unsigned p;
  vs_error *err = NULL;
  CHECK(net_parse_cidr("10.88.0.0/16", "subnet", &a, &p, &err) == 0);
  CHECK(a == 0x0a580000 && p == 16);
  CHECK(net_parse_cidr("0.0.0.0/0", "subnet", &a, &p, &err) == 0 && p == 0);
  CHECK(net_parse_cidr("10.88.0.1/16", "subnet", &a, &p, &err) == -1);
  CHECK(strstr(err->msg, "did you mean 10.88.0.0/16?") != NULL);
  vs_error_free(err);
  err = NULL;
  CHECK(net_parse_cidr("10.88.0.0/33", "subnet", &a, &p, &err) == -1);
  CHECK(strstr(err->msg, "larger than 32") != NULL);
  vs_error_free(err);
  err = NULL;
  CHECK(net_parse_cidr("10.88.0.0", "subnet", &a, &p, &err) == -1);
  CHECK(strstr(err->msg, "expected ADDRESS/PREFIX") != NULL);
  vs_error_free(err);
  err = NULL;
  CHECK(net_parse_cidr("10.88.0.0/-1", "subnet", &a, &p, &err) == -1);
  vs_error_free(err);
}

TEST(interface_names) {
  _cleanup_error_ vs_error *err = NULL;
  CHECK(net_check_ifname("vsbr-0123456789", "bridge", NULL) == 0); /* 15 bytes */
  CHECK(net_check_ifname("vsbr-01234567890", "bridge", &err) == -1);
  CHECK(strstr(err->msg, "longer than 15 bytes (IFNAMSIZ)") != NULL);
  CHECK(net_check_ifname("..", "bridge", NULL) == -1);
  CHECK(net_check_ifname("a/b", "bridge", NULL) == -1);
  CHECK(net_check_ifname("a b", "bridge", NULL) == -1);
  CHECK(net_check_ifname("a\"b", "bridge", NULL) == -1);
  CHECK(net_check_ifname("", "bridge", NULL) == -1);
  char name[IFNAMSIZ];
  net_derived_ifname("vstap-", "front/a-container-id", name);
  CHECK(strlen(name) == 14 && strncmp(name, "vstap-", 6) == 0);
  CHECK(net_check_ifname(name, "tap", NULL) == 0);
}

TEST(macs) {
  uint8_t mac[6];
  char buf[18];
  net_default_mac(0x0a580002, mac);
  net_format_mac(mac, buf);
  CHECK_STREQ(buf, "02:42:0a:58:00:02");
  CHECK(net_parse_mac("02:00:00:00:AA:02", mac, NULL) == 0 && mac[4] == 0xaa);
  CHECK(net_parse_mac("01:00:5e:00:00:01", mac, NULL) == -1);
  CHECK(net_parse_mac("00:00:00:00:00:00", mac, NULL) == -1);
  CHECK(net_parse_mac("02:00:00:00:aa:2", mac, NULL) == -1);
  CHECK(net_parse_mac("02-00-00-00-aa-02", mac, NULL) == -1);
  CHECK(net_parse_mac("02:00:00:00:aa:02x", mac, NULL) == -1);
}

static net_network *make_net(net_ctx *ctx, const char *name, const char *subnet, const char *gw,
                             const char *range) {
  net_network_opts o = {.name = name, .subnet = subnet, .gateway = gw, .ip_range = range};
  vs_error *err = NULL;
  net_network *n = net_network_from_opts(ctx, &o, &err);
  if (!n)
    TAP_FAIL("%s: %s", name, err->msg);
  net_ctx_add_network(ctx, n);
  return n;
}

static void add_ep(net_network *n, const char *id, uint32_t ip, const char *port) {
  net_endpoint *ep = vs_malloc0(sizeof(*ep));
  ep->id = vs_strdup(id);
  ep->ip.s_addr = htonl(ip);
  net_default_mac(ip, ep->mac);
  snprintf(ep->host_ifname, sizeof(ep->host_ifname), "vsv-%s", id);
  ep->ports = vs_malloc0(sizeof(*ep->ports));
  if (port) {
    ep->ports[0] = port_ok(port);
    ep->n_ports = 1;
  }
  net_network_add_endpoint(n, ep);
}

static void network_bad(net_ctx *ctx, net_network_opts o, const char *msg) {
  _cleanup_error_ vs_error *err = NULL;
  net_network *n = net_network_from_opts(ctx, &o, &err);
  CHECK(n == NULL);
  if (!strstr(err->msg, msg))
    TAP_FAIL("error \"%s\" lacks \"%s\"", err->msg, msg);
}

TEST(network_validation) {
  net_ctx ctx = {0};
  net_network *n = make_net(&ctx, "front", "10.88.0.0/24", NULL, NULL);
  CHECK(n->gateway == 0x0a580001 && strncmp(n->bridge, "vsbr-", 5) == 0);
  network_bad(&ctx, (net_network_opts){.name = "x", .subnet = "10.0.0.0/8"},
              "overlaps network front's subnet 10.88.0.0/24");
  network_bad(&ctx, (net_network_opts){.name = "x", .subnet = "10.88.0.128/25"}, "overlaps");
  network_bad(&ctx, (net_network_opts){.name = "front", .subnet = "10.1.0.0/24"},
              "network front already exists");
  network_bad(&ctx, (net_network_opts){.name = "x", .subnet = "10.1.0.0/24", .gateway = "10.2.0.1"},
              "gateway 10.2.0.1 is outside subnet 10.1.0.0/24");
  network_bad(&ctx,
              (net_network_opts){.name = "x", .subnet = "10.1.0.0/24", .gateway = "10.1.0.255"},
              "broadcast");
  network_bad(&ctx, (net_network_opts){.name = "x", .subnet = "10.1.0.0/31"}, "no room");
  network_bad(&ctx, (net_network_opts){.name = "x"}, "a subnet is needed");
  network_bad(&ctx,
              (net_network_opts){.name = "x", .subnet = "10.1.0.0/24", .ip_range = "10.1.0.0/23"},
              "not inside subnet");
  network_bad(&ctx, (net_network_opts){.name = "x", .subnet = "10.1.0.0/24", .bridge = n->bridge},
              "is already network front's");
  network_bad(&ctx, (net_network_opts){.name = "x", .subnet = "10.1.0.0/24", .mtu = 20}, "mtu 20");
  network_bad(&ctx, (net_network_opts){.name = "-x", .subnet = "10.1.0.0/24"},
              "must start with a letter or digit");
  net_ctx_remove_network(&ctx, n);
  net_network_free(n);
  free(ctx.nets);
}

TEST(ipam_never_hands_out_an_address_twice) {
  net_ctx ctx = {0};
  net_network *n = make_net(&ctx, "tiny", "10.9.0.0/29", "10.9.0.6", NULL);
  uint32_t a;
  _cleanup_error_ vs_error *err = NULL;
  /* .0 is the network, .6 the gateway, .7 broadcast: .1-.5 are free */
  for (uint32_t want = 0x0a090001; want <= 0x0a090005; want++) {
    CHECK(net_ipam_allocate(n, NULL, &a, NULL) == 0);
    CHECK(a == want);
    char id[16];
    snprintf(id, sizeof(id), "e%u", want & 7);
    add_ep(n, id, a, NULL);
  }
  CHECK(net_ipam_allocate(n, NULL, &a, &err) == -1);
  CHECK(strstr(err->msg, "no free address left in 10.9.0.0/29") != NULL);
  CHECK(net_ipam_allocate(n, "10.9.0.3", &a, NULL) == -1); /* taken */
  size_t idx;
  CHECK(net_find_endpoint(n, "e3", &idx) != NULL);
  net_endpoint_free(n->eps[idx]);
  net_network_remove_endpoint(n, idx);
  CHECK(net_ipam_allocate(n, NULL, &a, NULL) == 0 && a == 0x0a090003);
  CHECK(net_ipam_allocate(n, "10.9.0.3", &a, NULL) == 0);
  CHECK(net_ipam_allocate(n, "10.9.0.6", &a, NULL) == -1); /* gateway */
  CHECK(net_ipam_allocate(n, "10.9.0.8", &a, NULL) == -1); /* outside */
  net_ctx_remove_network(&ctx, n);
  net_network_free(n);
  free(ctx.nets);
}

TEST(port_conflicts) {
  net_ctx ctx = {0};
  net_network *n = make_net(&ctx, "front", "10.88.0.0/24", NULL, NULL);
  add_ep(n, "web", 0x0a580002, "8080:80");
  net_port req[2] = {port_ok("127.0.0.1:8080:81")};
  _cleanup_error_ vs_error *err = NULL;
  CHECK(net_ports_check_free(&ctx, req, 1, &err) == -1);
  CHECK(strstr(err->msg, "host port 8080/tcp is already published by web on network front"));
  req[0] = port_ok("8080:80/udp");
  CHECK(net_ports_check_free(&ctx, req, 1, NULL) == 0);
  req[1] = port_ok("0.0.0.0:8080:99/udp");
  CHECK(net_ports_check_free(&ctx, req, 2, NULL) == -1); /* twice in one request */
  net_ctx_remove_network(&ctx, n);
  net_network_free(n);
  free(ctx.nets);
}

TEST(state_round_trip_and_ruleset) {
  char dir[] = "/tmp/vessel-net-unit-XXXXXX";
  CHECK(mkdtemp(dir) != NULL);
  vs_error *err = NULL;
  net_ctx *ctx = net_open(dir, &err);
  CHECK(ctx != NULL);
  net_network *a = make_net(ctx, "front", "10.88.0.0/24", NULL, "10.88.0.128/25");
  net_network *b = make_net(ctx, "back", "10.89.0.0/24", NULL, NULL);
  b->internal = true;
  b->disable_icc = true;
  add_ep(a, "web", 0x0a580080, "127.0.0.1:8080:80");
  add_ep(b, "db1", 0x0a590002, NULL);
  add_ep(b, "db2", 0x0a590003, NULL);
  CHECK(net_state_save(ctx, &err) == 0);
  _cleanup_json_ json_t *before = net_state_json(ctx);
  _cleanup_free_ char *rules = net_ruleset_text(ctx);
  net_close(ctx);

  ctx = net_open(dir, &err);
  if (!ctx)
    TAP_FAIL("%s", err->msg);
  _cleanup_json_ json_t *after = net_state_json(ctx);
  CHECK(json_equal(before, after));
  _cleanup_free_ char *rules2 = net_ruleset_text(ctx);
  CHECK_STREQ(rules, rules2);
  CHECK(strstr(rules, "ip daddr 127.0.0.1 tcp dport 8080 dnat ip to 10.88.0.128:80\n"));
  CHECK(strstr(rules, "ip saddr 10.88.0.0/24 oifname != \"vsbr-"));
  CHECK(!strstr(rules, "ip saddr 10.89.0.0/24 oifname !=")); /* internal: no masquerade */
  CHECK(strstr(rules, "iifname { \"vsv-db1\", \"vsv-db2\" } oifname { \"vsv-db1\", \"vsv-db2\" } "
                      "drop"));
  CHECK(strstr(rules, "add table inet vessel\ndelete table inet vessel\n") == rules);
  /* one owner at a time */
  _cleanup_error_ vs_error *busy = NULL;
  CHECK(net_open(dir, &busy) == NULL);
  CHECK(strstr(busy->msg, "another process owns this state") != NULL);
  net_close(ctx);
  _cleanup_free_ char *path = vs_asprintf("%s/net.json", dir);
  _cleanup_free_ char *lock = vs_asprintf("%s/net.lock", dir);
  CHECK(unlink(path) == 0 && unlink(lock) == 0 && rmdir(dir) == 0);
}

static void state_bad(const char *text, const char *msg) {
  _cleanup_json_ json_t *doc = json_loads(text, 0, NULL);
  CHECK(doc != NULL);
  net_ctx ctx = {0};
  _cleanup_error_ vs_error *err = NULL;
  CHECK(net_state_from_json(&ctx, doc, &err) == -1);
  CHECK(ctx.n_nets == 0);
  if (!strstr(err->msg, msg))
    TAP_FAIL("error \"%s\" lacks \"%s\"", err->msg, msg);
}

#define NET1                                                                                       \
  "{\"name\":\"a\",\"bridge\":\"br-a\",\"subnet\":\"10.1.0.0/24\",\"gateway\":\"10.1.0.1\","       \
  "\"mtu\":1500,"
#define EP(id, ip, port)                                                                           \
  "{\"id\":\"" id "\",\"kind\":\"veth\",\"ip\":\"" ip "\",\"mac\":\"02:42:0a:01:00:02\","          \
  "\"host_ifname\":\"vsv-" id "\",\"ports\":[" port "]}"

TEST(damaged_state_is_refused) {
  state_bad("{}", "networks");
  state_bad("{\"networks\":[" NET1
            "\"endpoints\":[" EP("x", "10.1.0.2", "") "," EP("y", "10.1.0.2", "") "]}]}",
            "ip 10.1.0.2 is already in use");
  state_bad("{\"networks\":[" NET1 "\"endpoints\":[" EP("x", "10.1.0.2", "\"80:80\"") "," EP(
                "y", "10.1.0.3", "\"80:81\"") "]}]}",
            "already published by x");
  state_bad("{\"networks\":[" NET1 "\"endpoints\":[" EP("x", "10.1.0.2", "\"80\"") "]}]}",
            "expected [IP:]HOSTPORT:PORT");
  state_bad("{\"networks\":[" NET1 "\"endpoints\":[]}," NET1 "\"endpoints\":[]}]}",
            "network a already exists");
  state_bad("{\"networks\":[{\"name\":\"a\",\"bridge\":\"x;y\",\"subnet\":\"10.1.0.0/24\","
            "\"gateway\":\"10.1.0.1\",\"mtu\":1500}]}",
            "bridge name \"x;y\"");
}

/* A BOOTREQUEST from mac with options (already encoded, without the end option). */
static size_t dhcp_request_msg(uint8_t *buf, const uint8_t mac[6], const uint8_t *opts,
                               size_t opts_len) {
  memset(buf, 0, 300);
  buf[0] = 1;
  buf[1] = 1;
  buf[2] = 6;
  buf[4] = 0xde; /* xid */
  buf[7] = 0x42;
  buf[10] = 0x80; /* broadcast flag */
  memcpy(buf + 28, mac, 6);
  static const uint8_t cookie[4] = {99, 130, 83, 99};
  memcpy(buf + 236, cookie, 4);
  memcpy(buf + 240, opts, opts_len);
  buf[240 + opts_len] = 255;
  return 240 + opts_len + 1;
}

/* The value of option code in a reply, or NULL. */
static const uint8_t *dhcp_option(const uint8_t *msg, size_t len, uint8_t code) {
  for (size_t i = 240; i + 1 < len && msg[i] != 255;) {
    if (msg[i] == 0) {
      i++;
      continue;
    }
    if (msg[i] == code)
      return msg + i + 2;
    i += 2u + msg[i + 1];
  }
  return NULL;
}

TEST(dhcp_answers_only_its_endpoints) {
  net_ctx ctx = {0};
  net_network *n = make_net(&ctx, "front", "10.88.0.0/24", NULL, NULL);
  add_ep(n, "vm", 0x0a580005, NULL);
  uint8_t mac[6], other[6] = {0x02, 0, 0, 0, 0, 0x99};
  net_default_mac(0x0a580005, mac);
  uint8_t req[300], out[600];
  size_t out_len;

  static const uint8_t discover[] = {53, 1, 1};
  size_t len = dhcp_request_msg(req, mac, discover, sizeof(discover));
  CHECK(net_dhcp_reply(n, req, len, out, sizeof(out), &out_len, NULL) == 0);
  CHECK(out_len >= 300 && out[0] == 2 && out[4] == 0xde && out[7] == 0x42 && out[10] == 0x80);
  CHECK(memcmp(out + 16, (uint8_t[]){10, 88, 0, 5}, 4) == 0); /* yiaddr */
  CHECK(memcmp(out + 28, mac, 6) == 0);
  const uint8_t *o = dhcp_option(out, out_len, 53);
  CHECK(o && o[0] == 2); /* OFFER */
  o = dhcp_option(out, out_len, 1);
  CHECK(o && memcmp(o, (uint8_t[]){255, 255, 255, 0}, 4) == 0);
  o = dhcp_option(out, out_len, 3);
  CHECK(o && memcmp(o, (uint8_t[]){10, 88, 0, 1}, 4) == 0);
  o = dhcp_option(out, out_len, 6); /* the DNS server: the gateway */
  CHECK(o && o[-1] == 4 && memcmp(o, (uint8_t[]){10, 88, 0, 1}, 4) == 0);
  o = dhcp_option(out, out_len, 26);
  CHECK(o && o[0] == 1500 >> 8 && o[1] == (1500 & 255));

  static const uint8_t request[] = {53, 1, 3, 50, 4, 10, 88, 0, 5, 54, 4, 10, 88, 0, 1};
  len = dhcp_request_msg(req, mac, request, sizeof(request));
  CHECK(net_dhcp_reply(n, req, len, out, sizeof(out), &out_len, NULL) == 0 && out_len > 0);
  CHECK(dhcp_option(out, out_len, 53)[0] == 5); /* ACK */

  static const uint8_t wrong_ip[] = {53, 1, 3, 50, 4, 10, 88, 0, 9};
  len = dhcp_request_msg(req, mac, wrong_ip, sizeof(wrong_ip));
  CHECK(net_dhcp_reply(n, req, len, out, sizeof(out), &out_len, NULL) == 0 && out_len > 0);
  CHECK(dhcp_option(out, out_len, 53)[0] == 6); /* NAK */
  CHECK(memcmp(out + 16, (uint8_t[]){0, 0, 0, 0}, 4) == 0);

  static const uint8_t other_server[] = {53, 1, 3, 50, 4, 10, 88, 0, 5, 54, 4, 10, 88, 0, 2};
  len = dhcp_request_msg(req, mac, other_server, sizeof(other_server));
  CHECK(net_dhcp_reply(n, req, len, out, sizeof(out), &out_len, NULL) == 0 && out_len == 0);

  len = dhcp_request_msg(req, other, discover, sizeof(discover));
  CHECK(net_dhcp_reply(n, req, len, out, sizeof(out), &out_len, NULL) == 0 && out_len == 0);

  /* malformed: an option running past the end, no end option, no message type, too short */
  _cleanup_error_ vs_error *err = NULL;
  static const uint8_t runaway[] = {53, 1, 1, 12, 200};
  len = dhcp_request_msg(req, mac, runaway, sizeof(runaway));
  CHECK(net_dhcp_reply(n, req, len, out, sizeof(out), &out_len, &err) == -1 && out_len == 0);
  CHECK(strstr(err->msg, "option 12 (200 bytes) runs past the message") != NULL);
  CHECK(net_dhcp_reply(n, req, len - 1 - sizeof(runaway) + 3, out, sizeof(out), &out_len, NULL) ==
        -1);
  static const uint8_t no_type[] = {12, 2, 'v', 'm'};
  len = dhcp_request_msg(req, mac, no_type, sizeof(no_type));
  CHECK(net_dhcp_reply(n, req, len, out, sizeof(out), &out_len, NULL) == -1);
  CHECK(net_dhcp_reply(n, req, 200, out, sizeof(out), &out_len, NULL) == -1);

  net_ctx_remove_network(&ctx, n);
  net_network_free(n);
  free(ctx.nets);
}

/* A query for name (dotted) of qtype, id 0x1234, recursion desired. */
static size_t dns_query(uint8_t *buf, const char *name, uint16_t qtype) {
  static const uint8_t hdr[12] = {0x12, 0x34, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0};
  memcpy(buf, hdr, 12);
  size_t i = 12;
  for (const char *p = name; *p;) {
    size_t l = strcspn(p, ".");
    buf[i++] = (uint8_t)l;
    memcpy(buf + i, p, l);
    i += l;
    p += l + (p[l] == '.');
  }
  buf[i++] = 0;
  buf[i++] = (uint8_t)(qtype >> 8);
  buf[i++] = (uint8_t)qtype;
  buf[i++] = 0;
  buf[i++] = 1;
  return i;
}

TEST(dns_answers_names_of_the_network) {
  net_ctx ctx = {0};
  net_network *n = make_net(&ctx, "front", "10.88.0.0/24", NULL, NULL);
  add_ep(n, "web-1", 0x0a580007, NULL);
  const char *aliases[] = {"www.example"};
  CHECK(net_endpoint_set_aliases(n->eps[0], aliases, 1, NULL) == 0);
  uint8_t q[300], out[600];
  size_t len, out_len;
  bool forward;

  len = dns_query(q, "WWW.Example", 1);
  CHECK(net_dns_answer(n, q, len, out, sizeof(out), &out_len, &forward, NULL) == 0);
  CHECK(!forward && out_len == len + 16);
  CHECK(out[0] == 0x12 && out[1] == 0x34 && (out[2] & 0x80) && (out[2] & 0x04) && (out[2] & 1));
  CHECK((out[3] & 0x0f) == 0 && out[7] == 1); /* NOERROR, one answer */
  CHECK(memcmp(out + len + 12, (uint8_t[]){10, 88, 0, 7}, 4) == 0);

  len = dns_query(q, "web-1", 28); /* AAAA: the name exists, no such record */
  CHECK(net_dns_answer(n, q, len, out, sizeof(out), &out_len, &forward, NULL) == 0);
  CHECK(!forward && out_len == len && out[7] == 0 && (out[3] & 0x0f) == 0);

  len = dns_query(q, "example.org", 1);
  CHECK(net_dns_answer(n, q, len, out, sizeof(out), &out_len, &forward, NULL) == 0);
  CHECK(forward && out_len == 0);

  _cleanup_error_ vs_error *err = NULL;
  len = dns_query(q, "web-1", 1);
  q[12] = 0xc0; /* a compression pointer in the question */
  CHECK(net_dns_answer(n, q, len, out, sizeof(out), &out_len, &forward, &err) == -1);
  CHECK(strstr(err->msg, "label of length 192") != NULL);
  len = dns_query(q, "web-1", 1);
  CHECK(net_dns_answer(n, q, len - 3, out, sizeof(out), &out_len, &forward, NULL) == -1);
  q[2] |= 0x80; /* a response */
  CHECK(net_dns_answer(n, q, len, out, sizeof(out), &out_len, &forward, NULL) == -1);
  len = dns_query(q, "web-1", 1);
  q[5] = 2; /* two questions */
  CHECK(net_dns_answer(n, q, len, out, sizeof(out), &out_len, &forward, NULL) == -1);
  net_ctx_remove_network(&ctx, n);
  net_network_free(n);
  free(ctx.nets);
}

/* A network across hosts: the names of guests on other hosts are answered too, after the
 * network's own endpoints (a local name wins a clash), and replaced as a whole. */
TEST(dns_answers_names_of_other_hosts) {
  net_ctx ctx = {0};
  net_network *n = make_net(&ctx, "overlay", "10.58.0.0/24", NULL, NULL);
  add_ep(n, "web-1", 0x0a3a0002, NULL);
  const char *names[] = {"far-vm", "web-1"};
  struct in_addr ips[] = {{htonl(0x0a3a0009)}, {htonl(0x0a3a000a)}};
  CHECK(net_network_set_remote_names(&ctx, "overlay", names, ips, 2, NULL) == 0);
  uint8_t q[300], out[600];
  size_t len, out_len;
  bool forward;
  len = dns_query(q, "FAR-VM", 1);
  CHECK(net_dns_answer(n, q, len, out, sizeof(out), &out_len, &forward, NULL) == 0);
  CHECK(!forward && out_len == len + 16 && out[7] == 1);
  CHECK(memcmp(out + len + 12, (uint8_t[]){10, 58, 0, 9}, 4) == 0);
  len = dns_query(q, "web-1", 1);
  CHECK(net_dns_answer(n, q, len, out, sizeof(out), &out_len, &forward, NULL) == 0);
  CHECK(memcmp(out + len + 12, (uint8_t[]){10, 58, 0, 2}, 4) == 0);
  /* replaced: far-vm is gone, forwarded like any other name */
  CHECK(net_network_set_remote_names(&ctx, "overlay", NULL, NULL, 0, NULL) == 0);
  len = dns_query(q, "far-vm", 1);
  CHECK(net_dns_answer(n, q, len, out, sizeof(out), &out_len, &forward, NULL) == 0);
  CHECK(forward && out_len == 0);
  /* names are checked like aliases; an unknown network is refused */
  _cleanup_error_ vs_error *err = NULL;
  const char *bad[] = {"a b"};
  CHECK(net_network_set_remote_names(&ctx, "overlay", bad, ips, 1, &err) == -1);
  CHECK(strstr(err->msg, "another host") != NULL);
  CHECK(net_network_set_remote_names(&ctx, "nope", names, ips, 1, NULL) == -1);
  CHECK(net_network_set_remote_names(&ctx, "overlay", names, ips, 1, NULL) == 0);
  net_ctx_remove_network(&ctx, n);
  net_network_free(n); /* frees the remote names too (ASan checks) */
  free(ctx.nets);
}

int main(void) { return tap_run(); }
