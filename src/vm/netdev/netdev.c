/* Network backends: the --net option and what every backend shares. */
#include "vm/netdev/netdev.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "vm/dev/virtio.h"

/* ------------------------------------------------------------------ parsing */

int netdev_parse_mac(const char *s, uint8_t mac[6], vs_error **err) {
  uint8_t out[6];
  const char *p = s;
  for (int i = 0; i < 6; i++) {
    char hex[3] = {0};
    for (int k = 0; k < 2; k++) {
      if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f') || (*p >= 'A' && *p <= 'F')))
        return vs_error_set(err, 0, "MAC address '%s' is not six hex bytes like %s", s,
                            "52:54:00:12:34:56");
      hex[k] = *p++;
    }
    out[i] = (uint8_t)strtoul(hex, NULL, 16);
    if (i < 5 && *p++ != ':')
      return vs_error_set(err, 0, "MAC address '%s' is not six hex bytes like %s", s,
                          "52:54:00:12:34:56");
  }
  if (*p)
    return vs_error_set(err, 0, "MAC address '%s' has extra characters", s);
  if (out[0] & 1)
    return vs_error_set(err, 0,
                        "MAC address '%s' is a multicast address (the first byte must be even)", s);
  memcpy(mac, out, 6);
  return 0;
}

static int parse_port(const char *s, const char *what, uint16_t *out, vs_error **err) {
  uint64_t v;
  if (!*s)
    return vs_error_set(err, 0, "no %s", what);
  if (vs_parse_u64(s, what, &v, NULL) < 0 || v == 0 || v > 65535)
    return vs_error_set(err, 0, "%s '%s' is not a number from 1 to 65535", what, s);
  *out = (uint16_t)v;
  return 0;
}

static int parse_ipv4(const char *s, const char *what, struct in_addr *out, vs_error **err) {
  if (inet_pton(AF_INET, s, out) != 1)
    return vs_error_set(err, 0, "%s '%s' is not an IPv4 address", what, s);
  return 0;
}

/* The text of s up to (not including) the first `sep`, in buf; *rest points after the
 * separator. Returns -1 when there is no separator. */
static int split_at(const char *s, char sep, char *buf, size_t bufsize, const char **rest) {
  const char *e = strchr(s, sep);
  if (!e || (size_t)(e - s) >= bufsize)
    return -1;
  memcpy(buf, s, (size_t)(e - s));
  buf[e - s] = '\0';
  *rest = e + 1;
  return 0;
}

/* [tcp|udp]:[HOSTADDR]:HOSTPORT-[GUESTADDR]:GUESTPORT */
static int parse_hostfwd(const char *v, netdev_hostfwd *fw, vs_error **err) {
  static const char form[] = "[tcp|udp]:[HOSTADDR]:HOSTPORT-[GUESTADDR]:GUESTPORT";
  char proto[8], haddr[64], hport[16], gaddr[64];
  const char *p = v;
  if (split_at(p, ':', proto, sizeof(proto), &p) < 0 ||
      split_at(p, ':', haddr, sizeof(haddr), &p) < 0 ||
      split_at(p, '-', hport, sizeof(hport), &p) < 0 ||
      split_at(p, ':', gaddr, sizeof(gaddr), &p) < 0)
    return vs_error_set(err, 0, "hostfwd '%s' is not of the form %s", v, form);
  *fw = (netdev_hostfwd){0};
  if (strcmp(proto, "udp") == 0)
    fw->udp = true;
  else if (*proto && strcmp(proto, "tcp") != 0)
    return vs_error_set(err, 0, "hostfwd '%s': protocol '%s' is neither tcp nor udp", v, proto);
  fw->host_addr.s_addr = htonl(INADDR_ANY);
  if (*haddr && parse_ipv4(haddr, "host address", &fw->host_addr, err) < 0)
    return vs_error_wrap(err, "hostfwd '%s'", v);
  if (parse_ipv4(*gaddr ? gaddr : NETDEV_USER_GUEST_ADDR, "guest address", &fw->guest_addr, err) <
          0 ||
      parse_port(hport, "host port", &fw->host_port, err) < 0 ||
      parse_port(p, "guest port", &fw->guest_port, err) < 0)
    return vs_error_wrap(err, "hostfwd '%s'", v);
  return 0;
}

static int parse_ifname(const char *v, netdev_opts *o, vs_error **err) {
  if (!*v || strlen(v) >= IFNAMSIZ)
    return vs_error_set(err, 0, "interface name '%s' is empty or longer than %d characters", v,
                        IFNAMSIZ - 1);
  if (strchr(v, '/') || strchr(v, ' ') || strcmp(v, ".") == 0 || strcmp(v, "..") == 0)
    return vs_error_set(err, 0, "interface name '%s' is not valid", v);
  memcpy(o->ifname, v, strlen(v) + 1);
  return 0;
}

static int parse_vnet_hdr(const char *v, netdev_opts *o, vs_error **err) {
  if (strcmp(v, "on") == 0)
    o->vnet_hdr = NETDEV_VNET_HDR_ON;
  else if (strcmp(v, "off") == 0)
    o->vnet_hdr = NETDEV_VNET_HDR_OFF;
  else
    return vs_error_set(err, 0, "vnet_hdr '%s' is neither on nor off", v);
  return 0;
}

static int parse_option(const char *key, const char *v, netdev_opts *o, vs_error **err) {
  if (strcmp(key, "mac") == 0) {
    if (netdev_parse_mac(v, o->mac, err) < 0)
      return -1;
    o->mac_set = true;
    return 0;
  }
  if (strcmp(key, "mtu") == 0) {
    uint64_t mtu;
    if (vs_parse_u64(v, "mtu", &mtu, NULL) < 0 || mtu < VIRTIO_NET_MIN_MTU ||
        mtu > VIRTIO_NET_MAX_MTU)
      return vs_error_set(err, 0, "mtu '%s' is not a number from %d to %d", v, VIRTIO_NET_MIN_MTU,
                          VIRTIO_NET_MAX_MTU);
    o->mtu = (unsigned)mtu;
    return 0;
  }
  if (strcmp(key, "hostfwd") == 0) {
    if (o->kind != NETDEV_USER)
      return vs_error_set(err, 0, "hostfwd is an option of 'user' networking only");
    if (o->nhostfwd == NETDEV_MAX_HOSTFWD)
      return vs_error_set(err, 0, "too many hostfwd options (at most %d)", NETDEV_MAX_HOSTFWD);
    return parse_hostfwd(v, &o->hostfwd[o->nhostfwd++], err);
  }
  if (strcmp(key, "ifname") == 0) {
    if (o->kind != NETDEV_TAP)
      return vs_error_set(err, 0, "ifname is an option of 'tap' networking only");
    return parse_ifname(v, o, err);
  }
  if (strcmp(key, "vnet_hdr") == 0) {
    if (o->kind != NETDEV_TAP)
      return vs_error_set(err, 0, "vnet_hdr is an option of 'tap' networking only");
    return parse_vnet_hdr(v, o, err);
  }
  return vs_error_set(err, 0, "unknown option '%s' (known: %s)", key,
                      o->kind == NETDEV_USER ? "hostfwd, mac, mtu" : "ifname, mac, mtu, vnet_hdr");
}

/* The first item: "user", "tap", or "tap=IFNAME". */
static int parse_kind(const char *item, netdev_opts *o, vs_error **err) {
  if (strcmp(item, "user") == 0) {
    o->kind = NETDEV_USER;
    return 0;
  }
  if (strcmp(item, "tap") == 0 || strncmp(item, "tap=", 4) == 0) {
    o->kind = NETDEV_TAP;
    return item[3] == '=' ? parse_ifname(item + 4, o, err) : 0;
  }
  return vs_error_set(err, 0, "unknown network type '%s' (use 'user' or 'tap=IFNAME')", item);
}

static int parse_items(char *s, netdev_opts *o, vs_error **err) {
  char *save = NULL;
  char *item = strtok_r(s, ",", &save);
  if (!item)
    return vs_error_set(err, 0, "empty (use 'user' or 'tap=IFNAME')");
  if (parse_kind(item, o, err) < 0)
    return -1;
  while ((item = strtok_r(NULL, ",", &save))) {
    char *eq = strchr(item, '=');
    if (!eq)
      return vs_error_set(err, 0, "option '%s' has no value (KEY=VALUE)", item);
    *eq = '\0';
    if (parse_option(item, eq + 1, o, err) < 0)
      return -1;
  }
  if (o->kind == NETDEV_TAP && !o->ifname[0])
    return vs_error_set(err, 0, "tap needs an interface name (tap=IFNAME)");
  return 0;
}

int netdev_parse_spec(const char *spec, netdev_opts *out, vs_error **err) {
  netdev_opts o = {0};
  _cleanup_free_ char *copy = vs_strdup(spec);
  if (parse_items(copy, &o, err) < 0)
    return vs_error_wrap(err, "net '%s'", spec);
  *out = o;
  return 0;
}

/* ------------------------------------------------------------------ dispatch */

netdev *netdev_open(const netdev_opts *opts, netdev_peer peer, vs_error **err) {
  switch (opts->kind) {
  case NETDEV_USER:
    return netdev_user_open(opts, peer, err);
  case NETDEV_TAP:
    return netdev_tap_open(opts, peer, err);
  }
  vs_error_set(err, 0, "unknown network backend %d", (int)opts->kind);
  return NULL;
}

netdev *netdev_offline_open(const netdev_opts *opts, netdev_peer peer, vs_error **err) {
  if (opts->kind == NETDEV_USER)
    return netdev_user_offline(peer);
  vs_error_set(err, 0, "a %s network is not recorded or replayed (only --net user)",
               opts->kind == NETDEV_TAP ? "tap" : "unknown");
  return NULL;
}

void netdev_send(netdev *nd, const uint8_t *frame, size_t len) { nd->ops->send(nd, frame, len); }

int netdev_set_offloads(netdev *nd, netdev_offloads off, vs_error **err) {
  if (!nd->vnet_hdr || !nd->ops->set_offloads)
    return 0;
  return nd->ops->set_offloads(nd, off, err);
}

void netdev_prepare(netdev *nd, vm_pollset *ps) { nd->ops->prepare(nd, ps); }

void netdev_dispatch(netdev *nd, const vm_pollset *ps) { nd->ops->dispatch(nd, ps); }

void netdev_close(netdev *nd) {
  if (nd)
    nd->ops->destroy(nd);
}
