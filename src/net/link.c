/* Interfaces, addresses and routes through rtnetlink (libmnl), and taps through /dev/net/tun
 * (rtnetlink cannot make a tun device). Every request asks for an acknowledgement, so a refusal
 * comes back as the kernel's errno (and its extended message when it gives one). */
#include <errno.h>
#include <fcntl.h>
#include <libmnl/libmnl.h>
#include <linux/if_link.h>
#include <linux/if_tun.h>
#include <linux/neighbour.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/veth.h>
#include <sched.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>

#include "net/internal.h"

int nl_open(nl_sock *s, vs_error **err) {
  s->mnl = mnl_socket_open2(NETLINK_ROUTE, SOCK_CLOEXEC);
  if (!s->mnl)
    return vs_error_set(err, errno, "open rtnetlink socket");
  if (mnl_socket_bind(s->mnl, 0, MNL_SOCKET_AUTOPID) < 0) {
    int e = errno;
    mnl_socket_close(s->mnl);
    s->mnl = NULL;
    return vs_error_set(err, e, "bind rtnetlink socket");
  }
  /* extended acks: the kernel then says which attribute it refused and why */
  int one = 1;
  (void)mnl_socket_setsockopt(s->mnl, NETLINK_EXT_ACK, &one, sizeof(one));
  s->portid = mnl_socket_get_portid(s->mnl);
  s->seq = (uint32_t)time(NULL);
  return 0;
}

/* A netlink socket belongs to the namespace it was made in, so entering the container's
 * namespace just long enough to make it is enough: only this thread moves, and it moves back
 * before anything else runs on it. */
int nl_open_in_netns(nl_sock *s, int netns_fd, vs_error **err) {
  _cleanup_close_ int self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  if (self < 0)
    return vs_error_set(err, errno, "open /proc/thread-self/ns/net");
  if (setns(netns_fd, CLONE_NEWNET) < 0)
    return vs_error_set(err, errno, "enter the guest's network namespace (setns)");
  int r = nl_open(s, err);
  if (setns(self, CLONE_NEWNET) < 0)
    abort(); /* this thread would act in the wrong namespace from now on: nothing safe remains */
  return r;
}

void nl_close(nl_sock *s) {
  if (s->mnl)
    mnl_socket_close(s->mnl);
  s->mnl = NULL;
}

typedef struct nl_reply {
  int (*on_msg)(const struct nlmsghdr *nlh, void *data);
  void *data;
  char ext_msg[128];
} nl_reply;

static int ack_attr_cb(const struct nlattr *attr, void *data) {
  nl_reply *r = data;
  if (mnl_attr_get_type(attr) == NLMSGERR_ATTR_MSG &&
      mnl_attr_validate(attr, MNL_TYPE_NUL_STRING) == 0)
    snprintf(r->ext_msg, sizeof(r->ext_msg), "%s", mnl_attr_get_str(attr));
  return MNL_CB_OK;
}

/* Pick the kernel's extended message out of an error ack before mnl turns it into errno. */
static void note_ext_ack(const struct nlmsghdr *nlh, nl_reply *r) {
  if (nlh->nlmsg_type != NLMSG_ERROR || !(nlh->nlmsg_flags & NLM_F_ACK_TLVS))
    return;
  const struct nlmsgerr *e = mnl_nlmsg_get_payload(nlh);
  size_t off = sizeof(*e);
  if (!(nlh->nlmsg_flags & NLM_F_CAPPED))
    off += e->msg.nlmsg_len - sizeof(struct nlmsghdr);
  if (mnl_nlmsg_get_payload_len(nlh) <= off)
    return;
  mnl_attr_parse(nlh, (unsigned)off, ack_attr_cb, r);
}

static int data_cb(const struct nlmsghdr *nlh, void *data) {
  nl_reply *r = data;
  return r->on_msg ? r->on_msg(nlh, r->data) : MNL_CB_OK;
}

/* Send one request and read until its acknowledgement (or, for a dump, its end). */
static int nl_talk(nl_sock *s, struct nlmsghdr *nlh, nl_reply *r, const char *what,
                   vs_error **err) {
  nlh->nlmsg_seq = ++s->seq;
  nlh->nlmsg_flags |= NLM_F_ACK;
  if (mnl_socket_sendto(s->mnl, nlh, nlh->nlmsg_len) < 0)
    return vs_error_set(err, errno, "%s: netlink send", what);
  char buf[MNL_SOCKET_BUFFER_SIZE];
  for (;;) {
    ssize_t n = mnl_socket_recvfrom(s->mnl, buf, sizeof(buf));
    if (n < 0)
      return vs_error_set(err, errno, "%s: netlink receive", what);
    int left = (int)n;
    for (const struct nlmsghdr *m = (const void *)buf; mnl_nlmsg_ok(m, left);
         m = mnl_nlmsg_next(m, &left))
      note_ext_ack(m, r);
    int rc = mnl_cb_run(buf, (size_t)(n > 0 ? n : 0), s->seq, s->portid, data_cb, r);
    if (rc == MNL_CB_STOP)
      return 0;
    if (rc < 0) {
      int e = errno;
      if (r->ext_msg[0])
        return vs_error_set(err, e, "%s (%s)", what, r->ext_msg);
      return vs_error_set(err, e, "%s", what);
    }
  }
}

static struct nlmsghdr *nl_request(char *buf, uint16_t type, uint16_t flags) {
  struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
  nlh->nlmsg_type = type;
  nlh->nlmsg_flags = NLM_F_REQUEST | flags;
  return nlh;
}

static struct ifinfomsg *put_ifinfo(struct nlmsghdr *nlh, int index) {
  struct ifinfomsg *ifi = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifi));
  ifi->ifi_family = AF_UNSPEC;
  ifi->ifi_index = index;
  return ifi;
}

static int link_index_cb(const struct nlmsghdr *nlh, void *data) {
  if (nlh->nlmsg_type == RTM_NEWLINK) {
    const struct ifinfomsg *ifi = mnl_nlmsg_get_payload(nlh);
    *(int *)data = ifi->ifi_index;
  }
  return MNL_CB_OK;
}

static int link_lookup(nl_sock *s, const char *name, int *index, vs_error **err) {
  char buf[MNL_SOCKET_BUFFER_SIZE];
  struct nlmsghdr *nlh = nl_request(buf, RTM_GETLINK, 0);
  put_ifinfo(nlh, 0);
  mnl_attr_put_strz(nlh, IFLA_IFNAME, name);
  *index = 0;
  nl_reply r = {.on_msg = link_index_cb, .data = index};
  return nl_talk(s, nlh, &r, "", err);
}

int nl_link_index(nl_sock *s, const char *name, int *index, vs_error **err) {
  _cleanup_error_ vs_error *e = NULL;
  if (link_lookup(s, name, index, &e) < 0 || *index <= 0)
    return vs_error_set(err, e ? e->errnum : ENODEV, "find interface %s", name);
  return 0;
}

int nl_link_exists(nl_sock *s, const char *name, bool *exists, vs_error **err) {
  _cleanup_error_ vs_error *e = NULL;
  int index = 0;
  if (link_lookup(s, name, &index, &e) == 0) {
    *exists = index > 0;
    return 0;
  }
  if (e->errnum == ENODEV) {
    *exists = false;
    return 0;
  }
  return vs_error_set(err, e->errnum, "look up interface %s", name);
}

/* The bridge gets a MAC address of its own: without one it takes the lowest of its ports' and
 * changes whenever a guest joins or leaves, and guests that cached the gateway's old address lose
 * it until their neighbour entry is probed again (seconds of silence to the gateway). */
int nl_bridge_create(nl_sock *s, const char *name, unsigned mtu, const uint8_t mac[6],
                     vs_error **err) {
  char buf[MNL_SOCKET_BUFFER_SIZE];
  struct nlmsghdr *nlh = nl_request(buf, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL);
  put_ifinfo(nlh, 0);
  mnl_attr_put_strz(nlh, IFLA_IFNAME, name);
  mnl_attr_put_u32(nlh, IFLA_MTU, mtu);
  mnl_attr_put(nlh, IFLA_ADDRESS, 6, mac);
  struct nlattr *info = mnl_attr_nest_start(nlh, IFLA_LINKINFO);
  mnl_attr_put_strz(nlh, IFLA_INFO_KIND, "bridge");
  mnl_attr_nest_end(nlh, info);
  nl_reply r = {0};
  char what[64];
  snprintf(what, sizeof(what), "create bridge %s", name);
  return nl_talk(s, nlh, &r, what, err);
}

int nl_veth_create(nl_sock *s, const char *host_name, const char *peer_name, int peer_netns_fd,
                   const uint8_t peer_mac[6], unsigned mtu, vs_error **err) {
  char buf[MNL_SOCKET_BUFFER_SIZE];
  struct nlmsghdr *nlh = nl_request(buf, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL);
  put_ifinfo(nlh, 0);
  mnl_attr_put_strz(nlh, IFLA_IFNAME, host_name);
  mnl_attr_put_u32(nlh, IFLA_MTU, mtu);
  struct nlattr *info = mnl_attr_nest_start(nlh, IFLA_LINKINFO);
  mnl_attr_put_strz(nlh, IFLA_INFO_KIND, "veth");
  struct nlattr *data = mnl_attr_nest_start(nlh, IFLA_INFO_DATA);
  /* The peer is made directly in the guest's namespace under its final name: no moment where an
   * "eth0" exists on the host, and a name clash in the guest fails the whole request. */
  struct nlattr *peer = mnl_attr_nest_start(nlh, VETH_INFO_PEER);
  struct ifinfomsg *pifi = mnl_nlmsg_put_extra_header(nlh, sizeof(struct ifinfomsg));
  pifi->ifi_family = AF_UNSPEC;
  mnl_attr_put_strz(nlh, IFLA_IFNAME, peer_name);
  mnl_attr_put_u32(nlh, IFLA_MTU, mtu);
  mnl_attr_put(nlh, IFLA_ADDRESS, 6, peer_mac);
  mnl_attr_put_u32(nlh, IFLA_NET_NS_FD, (uint32_t)peer_netns_fd);
  mnl_attr_nest_end(nlh, peer);
  mnl_attr_nest_end(nlh, data);
  mnl_attr_nest_end(nlh, info);
  nl_reply r = {0};
  char what[96];
  snprintf(what, sizeof(what), "create veth %s (peer %s in the guest)", host_name, peer_name);
  return nl_talk(s, nlh, &r, what, err);
}

/* A VXLAN device with learning: the bridge it joins learns the remote guests' MAC addresses
 * from the frames that arrive, and the device maps them to the node they came from. No
 * multicast group: frames for unknown or broadcast destinations go to every peer of the
 * all-zero FDB entries (head-end replication, nl_fdb_peer). */
int nl_vxlan_create(nl_sock *s, const char *name, uint32_t vni, uint32_t local, uint16_t port,
                    unsigned mtu, vs_error **err) {
  char buf[MNL_SOCKET_BUFFER_SIZE];
  struct nlmsghdr *nlh = nl_request(buf, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL);
  put_ifinfo(nlh, 0);
  mnl_attr_put_strz(nlh, IFLA_IFNAME, name);
  mnl_attr_put_u32(nlh, IFLA_MTU, mtu);
  struct nlattr *info = mnl_attr_nest_start(nlh, IFLA_LINKINFO);
  mnl_attr_put_strz(nlh, IFLA_INFO_KIND, "vxlan");
  struct nlattr *data = mnl_attr_nest_start(nlh, IFLA_INFO_DATA);
  mnl_attr_put_u32(nlh, IFLA_VXLAN_ID, vni);
  mnl_attr_put_u32(nlh, IFLA_VXLAN_LOCAL, htonl(local));
  mnl_attr_put_u16(nlh, IFLA_VXLAN_PORT, htons(port));
  mnl_attr_put_u8(nlh, IFLA_VXLAN_LEARNING, 1);
  mnl_attr_nest_end(nlh, data);
  mnl_attr_nest_end(nlh, info);
  nl_reply r = {0};
  char what[96];
  snprintf(what, sizeof(what), "create vxlan %s (VNI %u, UDP %u)", name, vni, port);
  return nl_talk(s, nlh, &r, what, err);
}

/* `bridge fdb append 00:00:00:00:00:00 dev DEV dst PEER` (or `del`): one more node that gets
 * a copy of every flooded frame. Appending a peer that is there already changes nothing. */
int nl_fdb_peer(nl_sock *s, int index, uint32_t peer, bool add, vs_error **err) {
  char buf[MNL_SOCKET_BUFFER_SIZE];
  struct nlmsghdr *nlh =
      nl_request(buf, add ? RTM_NEWNEIGH : RTM_DELNEIGH, add ? NLM_F_CREATE | NLM_F_APPEND : 0);
  struct ndmsg *ndm = mnl_nlmsg_put_extra_header(nlh, sizeof(*ndm));
  ndm->ndm_family = AF_BRIDGE;
  ndm->ndm_ifindex = index;
  ndm->ndm_state = NUD_NOARP | NUD_PERMANENT;
  ndm->ndm_flags = NTF_SELF;
  static const uint8_t zero[6] = {0};
  mnl_attr_put(nlh, NDA_LLADDR, sizeof(zero), zero);
  uint32_t dst = htonl(peer);
  mnl_attr_put(nlh, NDA_DST, sizeof(dst), &dst);
  nl_reply r = {0};
  char what[96], ip[INET_ADDRSTRLEN];
  net_format_ipv4(peer, ip);
  snprintf(what, sizeof(what), "%s the flooding entry of peer %s", add ? "add" : "delete", ip);
  return nl_talk(s, nlh, &r, what, err);
}

int nl_link_delete(nl_sock *s, const char *name, vs_error **err) {
  char buf[MNL_SOCKET_BUFFER_SIZE];
  struct nlmsghdr *nlh = nl_request(buf, RTM_DELLINK, 0);
  put_ifinfo(nlh, 0);
  mnl_attr_put_strz(nlh, IFLA_IFNAME, name);
  nl_reply r = {0};
  char what[64];
  snprintf(what, sizeof(what), "delete interface %s", name);
  return nl_talk(s, nlh, &r, what, err);
}

static int link_change(nl_sock *s, struct nlmsghdr *nlh, int index, const char *what,
                       vs_error **err) {
  nl_reply r = {0};
  char w[96];
  snprintf(w, sizeof(w), "%s (interface %d)", what, index);
  return nl_talk(s, nlh, &r, w, err);
}

int nl_link_set_up(nl_sock *s, int index, vs_error **err) {
  char buf[MNL_SOCKET_BUFFER_SIZE];
  struct nlmsghdr *nlh = nl_request(buf, RTM_NEWLINK, 0);
  struct ifinfomsg *ifi = put_ifinfo(nlh, index);
  ifi->ifi_flags = IFF_UP;
  ifi->ifi_change = IFF_UP;
  return link_change(s, nlh, index, "bring up", err);
}

int nl_link_set_master(nl_sock *s, int index, int master, vs_error **err) {
  char buf[MNL_SOCKET_BUFFER_SIZE];
  struct nlmsghdr *nlh = nl_request(buf, RTM_NEWLINK, 0);
  put_ifinfo(nlh, index);
  mnl_attr_put_u32(nlh, IFLA_MASTER, (uint32_t)master);
  return link_change(s, nlh, index, "attach to the bridge", err);
}

int nl_link_set_mtu(nl_sock *s, int index, unsigned mtu, vs_error **err) {
  char buf[MNL_SOCKET_BUFFER_SIZE];
  struct nlmsghdr *nlh = nl_request(buf, RTM_NEWLINK, 0);
  put_ifinfo(nlh, index);
  mnl_attr_put_u32(nlh, IFLA_MTU, mtu);
  return link_change(s, nlh, index, "set mtu", err);
}

int nl_addr_add(nl_sock *s, int index, uint32_t addr, unsigned prefix, vs_error **err) {
  char buf[MNL_SOCKET_BUFFER_SIZE];
  struct nlmsghdr *nlh = nl_request(buf, RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL);
  struct ifaddrmsg *ifa = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifa));
  ifa->ifa_family = AF_INET;
  ifa->ifa_prefixlen = (uint8_t)prefix;
  ifa->ifa_scope = RT_SCOPE_UNIVERSE;
  ifa->ifa_index = (uint32_t)index;
  uint32_t a = htonl(addr);
  uint32_t bcast = htonl(addr | ~net_prefix_mask(prefix));
  mnl_attr_put_u32(nlh, IFA_LOCAL, a);
  mnl_attr_put_u32(nlh, IFA_ADDRESS, a);
  mnl_attr_put_u32(nlh, IFA_BROADCAST, bcast);
  char ip[INET_ADDRSTRLEN];
  net_format_ipv4(addr, ip);
  char what[64];
  snprintf(what, sizeof(what), "add address %s/%u", ip, prefix);
  return link_change(s, nlh, index, what, err);
}

int nl_route_add_default(nl_sock *s, int index, uint32_t gateway, vs_error **err) {
  char buf[MNL_SOCKET_BUFFER_SIZE];
  struct nlmsghdr *nlh = nl_request(buf, RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL);
  struct rtmsg *rtm = mnl_nlmsg_put_extra_header(nlh, sizeof(*rtm));
  rtm->rtm_family = AF_INET;
  rtm->rtm_dst_len = 0;
  rtm->rtm_table = RT_TABLE_MAIN;
  rtm->rtm_protocol = RTPROT_BOOT;
  rtm->rtm_scope = RT_SCOPE_UNIVERSE;
  rtm->rtm_type = RTN_UNICAST;
  mnl_attr_put_u32(nlh, RTA_GATEWAY, htonl(gateway));
  mnl_attr_put_u32(nlh, RTA_OIF, (uint32_t)index);
  char ip[INET_ADDRSTRLEN];
  net_format_ipv4(gateway, ip);
  char what[64];
  snprintf(what, sizeof(what), "add default route via %s", ip);
  return link_change(s, nlh, index, what, err);
}

/* The flags vessel-vmm attaches with (src/vm/netdev/tap.c): the kernel refuses an attach whose
 * IFF_TAP/IFF_TUN type differs from the device's, and IFF_VNET_HDR is chosen per attach, so this
 * is what lets `--net tap=NAME` take the header. */
int tap_create_persistent(const char *name, vs_error **err) {
  _cleanup_close_ int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
  if (fd < 0)
    return vs_error_set(err, errno, "create tap %s: open /dev/net/tun", name);
  struct ifreq ifr = {0};
  ifr.ifr_flags = (short)(IFF_TAP | IFF_NO_PI | IFF_VNET_HDR);
  memcpy(ifr.ifr_name, name, strnlen(name, IFNAMSIZ - 1));
  if (ioctl(fd, TUNSETIFF, &ifr) < 0)
    return vs_error_set(err, errno, "create tap %s (TUNSETIFF)", name);
  if (ioctl(fd, TUNSETPERSIST, 1) < 0)
    return vs_error_set(err, errno, "create tap %s: make it persistent (TUNSETPERSIST)", name);
  return 0;
}

int net_sysctl_enable(const char *path, vs_error **err) {
  _cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0)
    return vs_error_set(err, errno, "open %s", path);
  if (vs_write_all(fd, "1\n", 2, err) < 0)
    return vs_error_wrap(err, "write %s", path);
  return 0;
}
