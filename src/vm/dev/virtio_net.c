/* virtio-net (virtio 1.2, section 5.1): one receive and one transmit queue, a control queue
 * (receive filter: promiscuous, all-multicast, MAC table), a MAC address, link status, an MTU,
 * checksum and segmentation offload both ways and mergeable receive buffers.
 *
 * Every buffer starts with the 12-byte struct virtio_net_hdr (VERSION_1: num_buffers is always
 * there): {u8 flags, u8 gso_type, le16 hdr_len, le16 gso_size, le16 csum_start,
 * le16 csum_offset, le16 num_buffers}.
 *
 * Transmit: the guest's frame follows the header. With VIRTIO_NET_F_CSUM the guest may leave the
 * TCP/UDP checksum to us (NEEDS_CSUM). A backend that carries the header (a tap with
 * IFF_VNET_HDR, link.vnet_hdr) gets it with the frame, unfinished: the host kernel completes the
 * checksum and segments TSO packets, or hands them on whole (to a bridge, a host socket). Any
 * other backend only ever sees finished frames: we complete the checksum. A backend that is itself
 * a TCP endpoint (libslirp) takes whole unsegmented TCP packets of up to 64 KiB, so for it too
 * HOST_TSO4/6 are offered and such a packet goes over as it is: the guest's TCP stack then
 * handles one packet where it would handle 45, which is what the guest's (software) CPU spends
 * its time on. Everything in the guest's header is checked before it goes anywhere (and before
 * the host kernel parses it): flags other than NEEDS_CSUM, a GSO type not negotiated, a TSO
 * packet without NEEDS_CSUM or with a bad gso_size, hdr_len beyond the frame, a checksum position
 * outside the frame, or a frame longer than the MTU allows (64 KiB for TSO) drop the packet.
 *
 * Receive: the header and the frame are written into the guest's buffers; with MRG_RXBUF a frame
 * may span several chains (num_buffers says how many). From a vnet_hdr backend the header comes
 * with the frame (DATA_VALID, or NEEDS_CSUM and a TSO packet when the guest took GUEST_CSUM and
 * GUEST_TSO4/6; link.set_offloads tells the backend what the guest took); it is checked against
 * the negotiated features and the frame: a partial checksum the guest did not agree to take is
 * completed here, anything else it did not agree to is dropped. When the guest has posted too few
 * buffers the frame waits in a small queue (VIRTIO_NET_PENDING_FRAMES) until it posts more; beyond
 * that, frames are dropped, as a NIC would, and TCP recovers. The loop never waits for the guest.
 *
 * Control queue (CTRL_VQ with CTRL_RX, 5.1.6.5): PROMISC and ALLMULTI take one byte, MAC_TABLE_SET
 * two lists (le32 count, then 6-byte addresses: unicast, then multicast) that must fill the
 * command exactly; the table is replaced only when the whole command is good. Anything else
 * (another class or command, a short or long payload) is answered VIRTIO_NET_ERR and changes
 * nothing. The filter then keeps frames from the guest: its own address, broadcast and those in
 * the table pass; promiscuous mode, all-multicast or a list longer than the table let their kind
 * through, as in QEMU. After a reset the device is promiscuous.
 *
 * A chain that breaks the ring protocol (or a merged receive buffer smaller than the header, which
 * 5.1.6.3.1 forbids, or a control command without class, command and ack byte) puts the device in
 * DEVICE_NEEDS_RESET; any other bad packet is dropped.
 */
#include "vm/dev/virtio.h"

#include <endian.h>
#include <stdlib.h>
#include <string.h>

#define VIRTIO_NET_F_CSUM (1ull << 0)
#define VIRTIO_NET_F_GUEST_CSUM (1ull << 1)
#define VIRTIO_NET_F_MTU (1ull << 3)
#define VIRTIO_NET_F_GUEST_TSO4 (1ull << 7)
#define VIRTIO_NET_F_GUEST_TSO6 (1ull << 8)
#define VIRTIO_NET_F_MAC (1ull << 5)
#define VIRTIO_NET_F_HOST_TSO4 (1ull << 11)
#define VIRTIO_NET_F_HOST_TSO6 (1ull << 12)
#define VIRTIO_NET_F_MRG_RXBUF (1ull << 15)
#define VIRTIO_NET_F_STATUS (1ull << 16)
#define VIRTIO_NET_F_CTRL_VQ (1ull << 17)
#define VIRTIO_NET_F_CTRL_RX (1ull << 18)
#define VIRTIO_NET_F_CTRL_MAC_ADDR (1ull << 23)

#define VIRTIO_NET_S_LINK_UP 1

#define VIRTIO_NET_HDR_F_NEEDS_CSUM 1
#define VIRTIO_NET_HDR_F_DATA_VALID 2
#define VIRTIO_NET_HDR_GSO_NONE 0
#define VIRTIO_NET_HDR_GSO_TCPV4 1
#define VIRTIO_NET_HDR_GSO_TCPV6 4

#define ETH_HEADER 14

/* The TCP header's checksum field, where a TSO packet's partial checksum must be. */
#define TCP_CSUM_OFFSET 16
#define TCP_MIN_HEADER 20
/* Linux's GSO_BY_FRAGS: a gso_size no guest can mean (the host kernel refuses it). */
#define GSO_SIZE_RESERVED 0xffff

static virtio_net *net_of(virtio_mmio *t) { return (virtio_net *)t; }

static size_t max_frame(const virtio_net *n) { return n->st.mtu + VIRTIO_NET_LINK_OVERHEAD; }

/* The transmit buffer: a TSO packet when the backend takes them, else one MTU's frame. */
static size_t max_tx_frame(const virtio_net *n) {
  return (n->link.accepts_tso || n->link.vnet_hdr) && max_frame(n) < VIRTIO_NET_MAX_GSO_FRAME
             ? VIRTIO_NET_MAX_GSO_FRAME
             : max_frame(n);
}

/* The longest frame a backend may hand over: a TSO packet from one that carries the header (it
 * is checked against the guest's features with the header), else one MTU's frame. */
static size_t max_rx_frame(const virtio_net *n) {
  return n->link.vnet_hdr && max_frame(n) < VIRTIO_NET_MAX_GSO_FRAME ? VIRTIO_NET_MAX_GSO_FRAME
                                                                     : max_frame(n);
}

static bool negotiated(const virtio_net *n, uint64_t feature) {
  return (n->mmio.driver_features & feature) != 0;
}

static bool device_live(const virtio_net *n) {
  return (n->mmio.status & VIRTIO_STATUS_DRIVER_OK) &&
         !(n->mmio.status & VIRTIO_STATUS_NEEDS_RESET);
}

static uint16_t get_le16(const uint8_t *p) {
  uint16_t v;
  memcpy(&v, p, 2);
  return le16toh(v);
}
static void put_le16(uint8_t *p, uint16_t v) {
  v = htole16(v);
  memcpy(p, &v, 2);
}

static virtio_net_hdr hdr_parse(const uint8_t raw[VIRTIO_NET_HDR_SIZE]) {
  return (virtio_net_hdr){
      raw[0], raw[1], get_le16(raw + 2), get_le16(raw + 4), get_le16(raw + 6), get_le16(raw + 8)};
}

/* The wire form of h with num_buffers. */
static void hdr_write(uint8_t raw[VIRTIO_NET_HDR_SIZE], const virtio_net_hdr *h,
                      uint16_t num_buffers) {
  raw[0] = h->flags;
  raw[1] = h->gso_type;
  put_le16(raw + 2, h->hdr_len);
  put_le16(raw + 4, h->gso_size);
  put_le16(raw + 6, h->csum_start);
  put_le16(raw + 8, h->csum_offset);
  put_le16(raw + 10, num_buffers);
}

/* NEEDS_CSUM's position: the summed part starts after the Ethernet header and the 2-byte field
 * lies inside the frame. */
static bool csum_position_valid(const virtio_net_hdr *h, size_t len) {
  size_t start = h->csum_start, field = (size_t)h->csum_start + h->csum_offset;
  return start >= ETH_HEADER && start < len && field + 2 <= len;
}

/* ------------------------------------------------------------------ checksum offload */

/* RFC 1071 ones' complement sum of bytes, added to sum. */
static uint32_t csum_add(uint32_t sum, const uint8_t *p, size_t len) {
  uint64_t acc = sum;
  size_t i = 0;
  for (; i + 1 < len; i += 2)
    acc += (uint32_t)p[i] << 8 | p[i + 1];
  if (i < len)
    acc += (uint32_t)p[i] << 8;
  while (acc >> 16)
    acc = (acc & 0xffff) + (acc >> 16);
  return (uint32_t)acc;
}

/* NEEDS_CSUM: the guest put the pseudo-header sum at csum_start + csum_offset; the checksum is
 * the complement of the sum from csum_start to the end of the frame. As in Linux, a result of 0
 * is sent as 0xffff (the same value in ones' complement, and "no checksum" to UDP). */
static bool complete_checksum(uint8_t *frame, size_t len, const virtio_net_hdr *h) {
  size_t start = h->csum_start, field = (size_t)h->csum_start + h->csum_offset;
  if (!csum_position_valid(h, len))
    return false;
  uint16_t sum = (uint16_t)~csum_add(0, frame + start, len - start);
  if (sum == 0)
    sum = 0xffff;
  frame[field] = (uint8_t)(sum >> 8);
  frame[field + 1] = (uint8_t)sum;
  return true;
}

/* ------------------------------------------------------------------ transmit */

/* The largest frame allowed with this GSO type, or 0 if the type was not negotiated (an ECN
 * flag included: HOST_ECN is not offered). TSO needs the checksum left to us, as Linux does. */
static size_t tx_limit(const virtio_net *n, const virtio_net_hdr *h) {
  switch (h->gso_type) {
  case VIRTIO_NET_HDR_GSO_NONE:
    return max_frame(n);
  case VIRTIO_NET_HDR_GSO_TCPV4:
    return negotiated(n, VIRTIO_NET_F_HOST_TSO4) && (h->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM)
               ? max_tx_frame(n)
               : 0;
  case VIRTIO_NET_HDR_GSO_TCPV6:
    return negotiated(n, VIRTIO_NET_F_HOST_TSO6) && (h->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM)
               ? max_tx_frame(n)
               : 0;
  default:
    return 0;
  }
}

/* The rest of the guest's header, once tx_limit accepted its GSO type for a frame of len bytes:
 * what the host kernel would otherwise be the first to parse. */
static bool tx_header_valid(const virtio_net *n, const virtio_net_hdr *h, size_t len) {
  if (h->flags & ~VIRTIO_NET_HDR_F_NEEDS_CSUM) /* DATA_VALID, RSC_INFO: the device's to set */
    return false;
  if ((h->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) &&
      (!negotiated(n, VIRTIO_NET_F_CSUM) || !csum_position_valid(h, len)))
    return false;
  if (h->gso_type == VIRTIO_NET_HDR_GSO_NONE)
    return true;
  return h->gso_size != 0 && h->gso_size != GSO_SIZE_RESERVED && h->hdr_len <= len &&
         h->csum_offset == TCP_CSUM_OFFSET && (size_t)h->csum_start + TCP_MIN_HEADER <= len;
}

/* The header a vnet_hdr backend gets: only the fields that mean something for this GSO type, so
 * that nothing the checks above did not look at reaches the host kernel. */
static virtio_net_hdr tx_header_for_backend(const virtio_net_hdr *h) {
  virtio_net_hdr out = {.flags = h->flags, .gso_type = h->gso_type};
  if (h->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) {
    out.csum_start = h->csum_start;
    out.csum_offset = h->csum_offset;
  }
  if (h->gso_type != VIRTIO_NET_HDR_GSO_NONE) {
    out.hdr_len = h->hdr_len;
    out.gso_size = h->gso_size;
  }
  return out;
}

/* One chain from the transmit queue: header and frame in its readable buffers, copied to
 * n->tx_frame as they are (header, then frame). Returns false when the packet is dropped. */
static bool transmit_chain(virtio_net *n, const virtq_elem *e) {
  if (e->out_len < VIRTIO_NET_HDR_SIZE + ETH_HEADER)
    return false;
  uint8_t raw[VIRTIO_NET_HDR_SIZE];
  vs_iov_copy_from(e->out, e->out_num, 0, raw, sizeof(raw));
  virtio_net_hdr h = hdr_parse(raw);
  size_t len = e->out_len - VIRTIO_NET_HDR_SIZE;
  if (len > tx_limit(n, &h) || !tx_header_valid(n, &h, len))
    return false;
  uint8_t *frame = n->tx_frame + VIRTIO_NET_HDR_SIZE;
  vs_iov_copy_from(e->out, e->out_num, VIRTIO_NET_HDR_SIZE, frame, len);
  if (n->link.vnet_hdr) {
    virtio_net_hdr out = tx_header_for_backend(&h);
    hdr_write(n->tx_frame, &out, 0);
    if (n->link.send)
      n->link.send(n->link.opaque, n->tx_frame, VIRTIO_NET_HDR_SIZE + len);
    return true;
  }
  if ((h.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) && !complete_checksum(frame, len, &h))
    return false;
  if (n->link.send)
    n->link.send(n->link.opaque, frame, len);
  return true;
}

static void transmit(virtio_net *n) {
  virtio_mmio *t = &n->mmio;
  virtq *q = &t->queues[VIRTIO_NET_TX_QUEUE];
  bool pushed = false;
  while (virtio_mmio_pop(t, VIRTIO_NET_TX_QUEUE, &n->tx_elem) > 0) {
    if (transmit_chain(n, &n->tx_elem))
      n->st.tx_frames++;
    else
      n->st.tx_dropped++;
    if (!virtio_mmio_push(t, VIRTIO_NET_TX_QUEUE, n->tx_elem.head, 0))
      break;
    pushed = true;
  }
  virtq_update_avail_event(q, &t->mem);
  if (pushed)
    virtio_mmio_notify_used(t, VIRTIO_NET_TX_QUEUE);
}

/* ------------------------------------------------------------------ receive */

typedef enum {
  RX_DELIVERED,
  RX_NO_BUFFERS, /* keep the frame until the guest posts more */
  RX_DROPPED,
} rx_result;

/* Copy the part [done, done + room) of the stream header||frame into one chain. */
static size_t rx_fill_chain(const virtq_elem *e, const uint8_t *hdr, const uint8_t *frame,
                            size_t len, size_t done) {
  size_t total = VIRTIO_NET_HDR_SIZE + len, wrote = 0;
  if (done < VIRTIO_NET_HDR_SIZE)
    wrote = vs_iov_copy_to(e->in, e->in_num, 0, hdr + done, VIRTIO_NET_HDR_SIZE - done);
  size_t pos = done + wrote;
  if (pos >= VIRTIO_NET_HDR_SIZE && pos < total)
    wrote +=
        vs_iov_copy_to(e->in, e->in_num, wrote, frame + (pos - VIRTIO_NET_HDR_SIZE), total - pos);
  return wrote;
}

/* Return the chains taken for one frame; false if the used ring is unusable. */
static bool rx_push_chains(virtio_net *n, unsigned count) {
  for (unsigned i = 0; i < count; i++)
    if (!virtio_mmio_push(&n->mmio, VIRTIO_NET_RX_QUEUE, n->rx_heads[i], n->rx_lens[i]))
      return false;
  return true;
}

/* Receive one frame with the header h (already checked against the negotiated features). */
static rx_result rx_deliver(virtio_net *n, const uint8_t *frame, size_t len,
                            const virtio_net_hdr *h) {
  virtio_mmio *t = &n->mmio;
  virtq *q = &t->queues[VIRTIO_NET_RX_QUEUE];
  if (!device_live(n) || !q->ready)
    return RX_DROPPED;
  bool merge = negotiated(n, VIRTIO_NET_F_MRG_RXBUF);
  uint8_t hdr[VIRTIO_NET_HDR_SIZE];
  hdr_write(hdr, h, 1);
  struct iovec hdr_iov[VIRTIO_NET_HDR_SIZE];
  unsigned hdr_n = 0, count = 0;
  size_t total = VIRTIO_NET_HDR_SIZE + len, done = 0;
  while (done < total) {
    int r = count < q->num ? virtio_mmio_pop(t, VIRTIO_NET_RX_QUEUE, &n->rx_elem) : 0;
    if (r < 0)
      return RX_DROPPED;
    if (r == 0) {
      virtq_unpop(q, (uint16_t)count); /* too little room yet: wait for more buffers */
      return RX_NO_BUFFERS;
    }
    if (merge && n->rx_elem.in_len < VIRTIO_NET_HDR_SIZE) {
      virtio_mmio_set_needs_reset(t, "merged receive buffer smaller than the header");
      return RX_DROPPED;
    }
    if (count == 0)
      /* the header's iovecs (a hostile driver may split it over several buffers) */
      hdr_n = vs_iov_slice(n->rx_elem.in, n->rx_elem.in_num, 0, VIRTIO_NET_HDR_SIZE, hdr_iov);
    size_t wrote = rx_fill_chain(&n->rx_elem, hdr, frame, len, done);
    n->rx_heads[count] = n->rx_elem.head;
    n->rx_lens[count] = (uint32_t)wrote;
    count++;
    done += wrote;
    if (!merge && done < total) {
      /* a single buffer too small for the frame: hand it back empty, as a dropped packet */
      n->rx_lens[0] = 0;
      rx_push_chains(n, 1);
      return RX_DROPPED;
    }
  }
  if (count > 1) {
    put_le16(hdr + 10, (uint16_t)count);
    vs_iov_copy_to(hdr_iov, hdr_n, 10, hdr + 10, 2);
  }
  return rx_push_chains(n, count) ? RX_DELIVERED : RX_DROPPED;
}

static void rx_finish(virtio_net *n) {
  virtio_mmio *t = &n->mmio;
  virtq_update_avail_event(&t->queues[VIRTIO_NET_RX_QUEUE], &t->mem);
  virtio_mmio_notify_used(t, VIRTIO_NET_RX_QUEUE);
}

/* ------------------------------------------------------------------ receive coalescing
 *
 * With GUEST_TSO4 (and checksums the backend vouches for), consecutive in-order TCP/IPv4 data
 * segments of one connection that wait together are handed to the guest as one large packet
 * (gso_type TCPV4, gso_size = the first segment's payload), like a NIC's LRO. The guest's
 * (software) CPU then runs its TCP receive path once per batch instead of once per 1460 bytes.
 * Only plain segments merge: IPv4 without options or fragments, flags ACK (PSH on the last), the
 * same headers apart from sequence number, IP id and checksums. The IP checksum is recomputed;
 * the TCP checksum is not, since the header says DATA_VALID. */

#define ETH_P_IPV4_HI 0x08
#define TCP_FLAG_PSH 0x08
#define TCP_FLAG_ACK 0x10
#define IPV4_MAX_PACKET 65535u

typedef struct tcp_seg {
  size_t hdr_len; /* Ethernet + IPv4 + TCP with options */
  size_t payload;
  uint32_t seq;
  uint8_t flags;
} tcp_seg;

static uint32_t get_be32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static uint16_t get_be16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }

static bool parse_tcp4_segment(const uint8_t *f, size_t len, tcp_seg *s) {
  if (len < ETH_HEADER + 40 || f[12] != ETH_P_IPV4_HI || f[13] != 0)
    return false;
  const uint8_t *ip = f + ETH_HEADER;
  size_t tot = get_be16(ip + 2);
  if (ip[0] != 0x45 || ip[9] != 6 || (get_be16(ip + 6) & 0x3fff) || tot < 40 ||
      ETH_HEADER + tot > len)
    return false;
  const uint8_t *tcp = ip + 20;
  size_t thl = (size_t)(tcp[12] >> 4) * 4;
  if (thl < 20 || 20 + thl > tot)
    return false;
  s->flags = tcp[13];
  if (!(s->flags & TCP_FLAG_ACK) || (s->flags & ~(TCP_FLAG_ACK | TCP_FLAG_PSH)))
    return false;
  s->hdr_len = ETH_HEADER + 20 + thl;
  s->payload = tot - 20 - thl;
  s->seq = get_be32(tcp + 4);
  return s->payload > 0;
}

/* Same connection and same headers apart from the fields that differ between segments. */
static bool same_flow(const uint8_t *a, const tcp_seg *sa, const uint8_t *b, const tcp_seg *sb) {
  const uint8_t *ta = a + ETH_HEADER + 20, *tb = b + ETH_HEADER + 20;
  return sa->hdr_len == sb->hdr_len && memcmp(a, b, ETH_HEADER) == 0 &&
         a[ETH_HEADER + 1] == b[ETH_HEADER + 1] && a[ETH_HEADER + 8] == b[ETH_HEADER + 8] &&
         memcmp(a + ETH_HEADER + 12, b + ETH_HEADER + 12, 8) == 0 &&        /* addresses */
         memcmp(ta, tb, 4) == 0 &&                                          /* ports */
         memcmp(ta + 8, tb + 8, 5) == 0 &&                                  /* ack, data offset */
         memcmp(ta + 14, tb + 14, 2) == 0 &&                                /* window */
         memcmp(ta + 18, tb + 18, sa->hdr_len - ETH_HEADER - 20 - 18) == 0; /* urg, options */
}

static const virtio_net_pending *pending_at(const virtio_net *n, unsigned k) {
  return &n->pending[(n->pending_head + k) % VIRTIO_NET_PENDING_FRAMES];
}

/* How many waiting frames from the head form one run of segments (at least 1), and its MSS. */
static unsigned coalesce_run_length(const virtio_net *n, tcp_seg *first) {
  const virtio_net_pending *p0 = pending_at(n, 0);
  if (!parse_tcp4_segment(p0->data, p0->len, first))
    return 1;
  size_t total = first->hdr_len - ETH_HEADER + first->payload, last_payload = first->payload;
  uint32_t next_seq = first->seq + (uint32_t)first->payload;
  uint8_t last_flags = first->flags;
  unsigned k = 1;
  for (; k < n->pending_count; k++) {
    const virtio_net_pending *p = pending_at(n, k);
    tcp_seg s;
    if ((last_flags & TCP_FLAG_PSH) || last_payload != first->payload ||
        !parse_tcp4_segment(p->data, p->len, &s) || !same_flow(p0->data, first, p->data, &s) ||
        s.seq != next_seq || s.payload > first->payload || total + s.payload > IPV4_MAX_PACKET)
      break;
    total += s.payload;
    next_seq += (uint32_t)s.payload;
    last_payload = s.payload;
    last_flags = s.flags;
  }
  return k;
}

static uint16_t ipv4_header_checksum(const uint8_t *ip) {
  uint32_t sum = 0;
  for (int i = 0; i < 20; i += 2)
    if (i != 10)
      sum += (uint32_t)ip[i] << 8 | ip[i + 1];
  while (sum >> 16)
    sum = (sum & 0xffff) + (sum >> 16);
  return (uint16_t)~sum;
}

/* Build the large packet of the first `count` waiting frames in n->rx_merged; its length. */
static size_t coalesce_build(virtio_net *n, unsigned count, const tcp_seg *first) {
  uint8_t *out = n->rx_merged;
  memcpy(out, pending_at(n, 0)->data, first->hdr_len);
  size_t len = first->hdr_len;
  uint8_t flags = first->flags;
  for (unsigned k = 0; k < count; k++) {
    const virtio_net_pending *p = pending_at(n, k);
    tcp_seg s;
    if (!parse_tcp4_segment(p->data, p->len, &s))
      break; /* cannot happen: coalesce_run_length parsed the same frames */
    memcpy(out + len, p->data + s.hdr_len, s.payload);
    len += s.payload;
    flags = s.flags;
  }
  uint8_t *ip = out + ETH_HEADER;
  size_t tot = len - ETH_HEADER;
  ip[2] = (uint8_t)(tot >> 8);
  ip[3] = (uint8_t)tot;
  uint16_t c = ipv4_header_checksum(ip);
  ip[10] = (uint8_t)(c >> 8);
  ip[11] = (uint8_t)c;
  ip[20 + 13] = flags;
  return len;
}

static bool coalescing(const virtio_net *n) {
  return n->rx_merged && n->link.rx_csum_valid && !n->link.vnet_hdr &&
         negotiated(n, VIRTIO_NET_F_GUEST_TSO4) && negotiated(n, VIRTIO_NET_F_GUEST_CSUM);
}

/* ------------------------------------------------------------------ control queue */

#define VIRTIO_NET_OK 0
#define VIRTIO_NET_ERR 1
#define VIRTIO_NET_CTRL_RX 0
#define VIRTIO_NET_CTRL_RX_PROMISC 0
#define VIRTIO_NET_CTRL_RX_ALLMULTI 1
#define VIRTIO_NET_CTRL_MAC 1
#define VIRTIO_NET_CTRL_MAC_TABLE_SET 0
#define VIRTIO_NET_CTRL_MAC_ADDR_SET 1
#define CTRL_HEADER 2 /* class, command */
#define MAC_LEN 6

static void filter_reset(virtio_net_rx_filter *f, const uint8_t own_mac[MAC_LEN]) {
  *f = (virtio_net_rx_filter){.promisc = true};
  memcpy(f->own_mac, own_mac, MAC_LEN);
}

/* One list of MAC_TABLE_SET at byte `off` of the command: its entries go to f's table after
 * those already there, or set *overflow when they do not fit. Returns the offset after the
 * list, or 0 when the command ends inside it. */
static uint64_t ctrl_mac_list(const virtq_elem *e, uint64_t off, virtio_net_rx_filter *f,
                              uint32_t *count, bool *overflow) {
  uint8_t raw[4];
  if (off + sizeof(raw) > e->out_len)
    return 0;
  vs_iov_copy_from(e->out, e->out_num, off, raw, sizeof(raw));
  uint64_t entries =
      (uint32_t)raw[0] | (uint32_t)raw[1] << 8 | (uint32_t)raw[2] << 16 | (uint32_t)raw[3] << 24;
  off += sizeof(raw);
  if (entries * MAC_LEN > e->out_len - off) /* 64-bit: no overflow for any u32 count */
    return 0;
  unsigned used = f->n_uni + f->n_multi;
  if (entries <= VIRTIO_NET_MAC_TABLE_ENTRIES - used) {
    vs_iov_copy_from(e->out, e->out_num, off, f->macs[used], (size_t)entries * MAC_LEN);
    *count = (uint32_t)entries;
  } else {
    *overflow = true;
  }
  return off + entries * MAC_LEN;
}

/* MAC_TABLE_SET: both lists, exactly filling the command; the table changes only if it is good. */
static uint8_t ctrl_mac_table_set(virtio_net *n, const virtq_elem *e) {
  virtio_net_rx_filter f = n->st.filter;
  f.n_uni = f.n_multi = 0;
  f.uni_overflow = f.multi_overflow = false;
  uint64_t off = ctrl_mac_list(e, CTRL_HEADER, &f, &f.n_uni, &f.uni_overflow);
  if (off)
    off = ctrl_mac_list(e, off, &f, &f.n_multi, &f.multi_overflow);
  if (!off || off != e->out_len)
    return VIRTIO_NET_ERR;
  n->st.filter = f;
  return VIRTIO_NET_OK;
}

/* MAC_ADDR_SET: the address the guest uses from now on (Linux changes its address this way when
 * CTRL_MAC_ADDR is offered, and without telling the device otherwise). The config space shows it
 * too (5.1.6.5.2). A multicast address is refused, as a NIC cannot have one. */
static uint8_t ctrl_mac_addr_set(virtio_net *n, const virtq_elem *e) {
  uint8_t mac[MAC_LEN];
  if (e->out_len != CTRL_HEADER + MAC_LEN)
    return VIRTIO_NET_ERR;
  vs_iov_copy_from(e->out, e->out_num, CTRL_HEADER, mac, sizeof(mac));
  if (mac[0] & 1)
    return VIRTIO_NET_ERR;
  memcpy(n->st.filter.own_mac, mac, MAC_LEN);
  virtio_net_set_mac(n, mac);
  return VIRTIO_NET_OK;
}

/* PROMISC / ALLMULTI: one byte, on when not zero. */
static uint8_t ctrl_rx_mode(virtio_net *n, const virtq_elem *e, uint8_t command) {
  if (e->out_len != CTRL_HEADER + 1)
    return VIRTIO_NET_ERR;
  uint8_t on = 0;
  vs_iov_copy_from(e->out, e->out_num, CTRL_HEADER, &on, 1);
  if (command == VIRTIO_NET_CTRL_RX_PROMISC)
    n->st.filter.promisc = on != 0;
  else if (command == VIRTIO_NET_CTRL_RX_ALLMULTI)
    n->st.filter.allmulti = on != 0;
  else
    return VIRTIO_NET_ERR; /* ALLUNI, NOMULTI, ...: CTRL_RX_EXTRA is not offered */
  return VIRTIO_NET_OK;
}

static uint8_t ctrl_command(virtio_net *n, const virtq_elem *e) {
  uint8_t hdr[CTRL_HEADER];
  vs_iov_copy_from(e->out, e->out_num, 0, hdr, sizeof(hdr));
  bool rx = negotiated(n, VIRTIO_NET_F_CTRL_RX);
  if (hdr[0] == VIRTIO_NET_CTRL_RX && rx)
    return ctrl_rx_mode(n, e, hdr[1]);
  if (hdr[0] == VIRTIO_NET_CTRL_MAC && hdr[1] == VIRTIO_NET_CTRL_MAC_TABLE_SET && rx)
    return ctrl_mac_table_set(n, e);
  if (hdr[0] == VIRTIO_NET_CTRL_MAC && hdr[1] == VIRTIO_NET_CTRL_MAC_ADDR_SET &&
      negotiated(n, VIRTIO_NET_F_CTRL_MAC_ADDR))
    return ctrl_mac_addr_set(n, e);
  return VIRTIO_NET_ERR; /* a feature not negotiated; VLAN, MQ, ANNOUNCE, ...: not offered */
}

static void ctrl_process(virtio_net *n) {
  virtio_mmio *t = &n->mmio;
  virtq *q = &t->queues[VIRTIO_NET_CTRL_QUEUE];
  bool pushed = false;
  while (virtio_mmio_pop(t, VIRTIO_NET_CTRL_QUEUE, &n->ctrl_elem) > 0) {
    const virtq_elem *e = &n->ctrl_elem;
    if (e->out_len < CTRL_HEADER || e->in_len < 1) {
      virtio_mmio_set_needs_reset(t, "control command without class, command or ack byte");
      break;
    }
    uint8_t ack = ctrl_command(n, e);
    vs_iov_copy_to(e->in, e->in_num, 0, &ack, 1);
    if (!virtio_mmio_push(t, VIRTIO_NET_CTRL_QUEUE, e->head, 1))
      break;
    pushed = true;
  }
  virtq_update_avail_event(q, &t->mem);
  if (pushed)
    virtio_mmio_notify_used(t, VIRTIO_NET_CTRL_QUEUE);
}

/* Does the receive filter let a frame to this destination through? (QEMU's receive_filter
 * without VLANs and without CTRL_RX_EXTRA's modes.) */
static bool rx_filter_pass(const virtio_net *n, const uint8_t *dst) {
  static const uint8_t broadcast[MAC_LEN] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
  const virtio_net_rx_filter *f = &n->st.filter;
  if (f->promisc)
    return true;
  unsigned first = 0, end = f->n_uni;
  if (dst[0] & 1) {
    if (memcmp(dst, broadcast, MAC_LEN) == 0 || f->allmulti || f->multi_overflow)
      return true;
    first = f->n_uni;
    end = f->n_uni + f->n_multi;
  } else if (f->uni_overflow || memcmp(dst, f->own_mac, MAC_LEN) == 0) {
    return true;
  }
  for (unsigned i = first; i < end; i++)
    if (memcmp(dst, f->macs[i], MAC_LEN) == 0)
      return true;
  return false;
}

/* ------------------------------------------------------------------ receive queue */

static void pending_drop_all(virtio_net *n) {
  while (n->pending_count) {
    free(n->pending[n->pending_head].data);
    n->pending[n->pending_head] = (virtio_net_pending){0};
    n->pending_head = (n->pending_head + 1) % VIRTIO_NET_PENDING_FRAMES;
    n->pending_count--;
  }
}

static void pending_pop(virtio_net *n, unsigned count) {
  for (unsigned k = 0; k < count; k++) {
    virtio_net_pending *p = &n->pending[n->pending_head];
    free(p->data);
    *p = (virtio_net_pending){0};
    n->pending_head = (n->pending_head + 1) % VIRTIO_NET_PENDING_FRAMES;
    n->pending_count--;
  }
}

/* Deliver waiting frames in order while the guest has room; true if any went in. */
static bool rx_flush_pending(virtio_net *n) {
  bool delivered = false, lro = coalescing(n);
  while (n->pending_count) {
    tcp_seg first;
    unsigned count = lro ? coalesce_run_length(n, &first) : 1;
    rx_result r;
    if (count > 1) {
      size_t len = coalesce_build(n, count, &first);
      /* the backend's checksums stand (coalescing needs rx_csum_valid and GUEST_CSUM) */
      virtio_net_hdr h = {.flags = VIRTIO_NET_HDR_F_DATA_VALID,
                          .gso_type = VIRTIO_NET_HDR_GSO_TCPV4,
                          .hdr_len = (uint16_t)first.hdr_len,
                          .gso_size = (uint16_t)first.payload};
      r = rx_deliver(n, n->rx_merged, len, &h);
    } else {
      const virtio_net_pending *p = pending_at(n, 0);
      r = rx_deliver(n, p->data, p->len, &p->hdr);
    }
    if (r == RX_NO_BUFFERS)
      break;
    if (r == RX_DELIVERED) {
      n->st.rx_frames += count;
      delivered = true;
    } else {
      n->st.rx_dropped += count;
    }
    pending_pop(n, count);
  }
  return delivered;
}

/* Keep a copy of the frame (with its header) at the end of the queue; NULL when it is full. */
static virtio_net_pending *rx_enqueue(virtio_net *n, const uint8_t *frame, size_t len,
                                      const virtio_net_hdr *h) {
  if (n->pending_count == VIRTIO_NET_PENDING_FRAMES)
    return NULL;
  unsigned slot = (n->pending_head + n->pending_count) % VIRTIO_NET_PENDING_FRAMES;
  virtio_net_pending *p = &n->pending[slot];
  p->data = vs_malloc0(len);
  memcpy(p->data, frame, len);
  p->len = len;
  p->hdr = *h;
  n->pending_count++;
  return p;
}

/* The largest frame the guest takes with this header's GSO type, or 0 if it did not agree to
 * the type (TSO needs GUEST_CSUM too, as 5.1.3.1 requires; ECN, UFO and USO are not offered). */
static size_t rx_limit(const virtio_net *n, const virtio_net_hdr *h) {
  bool csum = negotiated(n, VIRTIO_NET_F_GUEST_CSUM);
  switch (h->gso_type) {
  case VIRTIO_NET_HDR_GSO_NONE:
    return max_frame(n);
  case VIRTIO_NET_HDR_GSO_TCPV4:
    return csum && negotiated(n, VIRTIO_NET_F_GUEST_TSO4) ? VIRTIO_NET_MAX_GSO_FRAME : 0;
  case VIRTIO_NET_HDR_GSO_TCPV6:
    return csum && negotiated(n, VIRTIO_NET_F_GUEST_TSO6) ? VIRTIO_NET_MAX_GSO_FRAME : 0;
  default:
    return 0;
  }
}

/* The header from a vnet_hdr backend, checked against what the guest negotiated and the frame,
 * and reduced to the fields that mean something for it. The backend was told the guest's
 * offloads, but frames it queued before (or a backend that ignored them) may still ask for more:
 * a partial checksum the guest did not agree to take is then left for the caller to complete
 * (*complete), anything else is refused. */
static bool rx_header_accept(const virtio_net *n, virtio_net_hdr *h, size_t len, bool *complete) {
  *complete = false;
  if (h->flags & ~(VIRTIO_NET_HDR_F_NEEDS_CSUM | VIRTIO_NET_HDR_F_DATA_VALID))
    return false;
  if (len > rx_limit(n, h))
    return false;
  bool partial = h->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM;
  if (partial && !csum_position_valid(h, len))
    return false;
  if (h->gso_type != VIRTIO_NET_HDR_GSO_NONE && (!partial || h->gso_size == 0 || h->hdr_len > len))
    return false;
  if (h->gso_type == VIRTIO_NET_HDR_GSO_NONE)
    h->hdr_len = h->gso_size = 0;
  if (!partial)
    h->csum_start = h->csum_offset = 0;
  if (!negotiated(n, VIRTIO_NET_F_GUEST_CSUM)) {
    *complete = partial;
    *h = (virtio_net_hdr){0}; /* the guest checks every checksum itself */
  }
  return true;
}

bool virtio_net_can_receive(void *opaque) {
  virtio_net *n = opaque;
  if (!device_live(n))
    return true; /* frames are dropped at once: no reason to hold the backend back */
  if (n->pending_count)
    return n->pending_count < VIRTIO_NET_PENDING_FRAMES / 2;
  const virtio_mmio *t = &n->mmio;
  return virtq_has_avail(&t->queues[VIRTIO_NET_RX_QUEUE], &t->mem);
}

void virtio_net_flush(virtio_net *n) {
  if (n->pending_count && rx_flush_pending(n))
    rx_finish(n);
}

/* What the guest learns about a frame from a backend without the header. */
static virtio_net_hdr rx_plain_header(const virtio_net *n) {
  virtio_net_hdr h = {0};
  if (negotiated(n, VIRTIO_NET_F_GUEST_CSUM) && n->link.rx_csum_valid)
    h.flags = VIRTIO_NET_HDR_F_DATA_VALID;
  return h;
}

void virtio_net_receive(void *opaque, const uint8_t *frame, size_t len) {
  virtio_net *n = opaque;
  virtio_net_hdr h = rx_plain_header(n), backend_hdr = {0};
  bool complete = false;
  if (n->link.vnet_hdr) {
    if (len < VIRTIO_NET_HDR_SIZE + ETH_HEADER) {
      n->st.rx_dropped++;
      return;
    }
    h = backend_hdr = hdr_parse(frame);
    frame += VIRTIO_NET_HDR_SIZE;
    len -= VIRTIO_NET_HDR_SIZE;
    if (!rx_header_accept(n, &h, len, &complete)) {
      n->st.rx_dropped++;
      return;
    }
  }
  if (len < ETH_HEADER || len > max_rx_frame(n) || !device_live(n)) {
    n->st.rx_dropped++;
    return;
  }
  if (!rx_filter_pass(n, frame)) {
    n->st.rx_filtered++;
    return;
  }
  /* Frames keep their order: a new one waits behind those already waiting. While coalescing,
   * frames wait for the end of the backend's burst (virtio_net_flush) to be merged. */
  virtio_net_pending *p = rx_enqueue(n, frame, len, &h);
  if (!p) {
    n->st.rx_dropped++;
    return;
  }
  if (complete)
    complete_checksum(p->data, p->len, &backend_hdr); /* the position was checked */
  if (!coalescing(n))
    virtio_net_flush(n);
}

/* ------------------------------------------------------------------ transport hooks */

static void net_notify(virtio_mmio *t, unsigned q) {
  virtio_net *n = net_of(t);
  if (q == VIRTIO_NET_TX_QUEUE) {
    transmit(n);
    virtio_net_flush(n); /* what the backend answered at once (slirp: ARP, the next segments) */
  } else if (q == VIRTIO_NET_RX_QUEUE && rx_flush_pending(n)) {
    rx_finish(n);
  } else if (q == VIRTIO_NET_CTRL_QUEUE && negotiated(n, VIRTIO_NET_F_CTRL_VQ)) {
    ctrl_process(n);
  }
}

static const uint8_t *net_config(virtio_mmio *t, size_t *len) {
  virtio_net *n = net_of(t);
  *len = sizeof(n->config);
  return n->config;
}

/* What the backend may hand over for the guest, from the features the driver settled on. TSO
 * without checksum offload means nothing (5.1.3.1), and the host kernel refuses it. */
static virtio_net_offloads rx_offloads(const virtio_net *n) {
  virtio_net_offloads off = {0};
  if (!negotiated(n, VIRTIO_NET_F_GUEST_CSUM))
    return off;
  off.csum = true;
  off.tso4 = negotiated(n, VIRTIO_NET_F_GUEST_TSO4);
  off.tso6 = negotiated(n, VIRTIO_NET_F_GUEST_TSO6);
  return off;
}

static void apply_offloads(virtio_net *n, virtio_net_offloads off) {
  if (n->link.vnet_hdr && n->link.set_offloads)
    n->link.set_offloads(n->link.opaque, off);
}

static void net_features_ok(virtio_mmio *t) {
  virtio_net *n = net_of(t);
  memcpy(n->st.filter.own_mac, n->st.mac, MAC_LEN); /* what the probing driver reads */
  apply_offloads(n, rx_offloads(n));
}

static void net_reset(virtio_mmio *t) {
  virtio_net *n = net_of(t);
  pending_drop_all(n);
  filter_reset(&n->st.filter, n->st.mac);
  apply_offloads(n, (virtio_net_offloads){0});
}

static const virtio_device_ops net_ops = {
    .notify = net_notify,
    .config = net_config,
    .reset = net_reset,
    .features_ok = net_features_ok,
};

void virtio_net_init(virtio_net *n, const uint8_t mac[6], uint16_t mtu, virtio_mem mem,
                     dev_irq_line irq, virtio_net_link link) {
  memset(n, 0, sizeof(*n));
  if (mtu < VIRTIO_NET_MIN_MTU)
    mtu = VIRTIO_NET_MIN_MTU;
  memcpy(n->st.mac, mac, 6);
  n->st.mtu = mtu;
  n->link = link;
  n->tx_frame = vs_malloc0(VIRTIO_NET_HDR_SIZE + max_tx_frame(n));
  uint64_t features = VIRTIO_F_RING_INDIRECT_DESC | VIRTIO_F_RING_EVENT_IDX | VIRTIO_NET_F_CSUM |
                      VIRTIO_NET_F_GUEST_CSUM | VIRTIO_NET_F_MTU | VIRTIO_NET_F_MAC |
                      VIRTIO_NET_F_MRG_RXBUF | VIRTIO_NET_F_STATUS | VIRTIO_NET_F_CTRL_VQ |
                      VIRTIO_NET_F_CTRL_RX | VIRTIO_NET_F_CTRL_MAC_ADDR;
  if (link.accepts_tso || link.vnet_hdr) /* the header carries TSO to the host kernel */
    features |= VIRTIO_NET_F_HOST_TSO4 | VIRTIO_NET_F_HOST_TSO6;
  if (link.vnet_hdr) { /* the host kernel's large packets come with their header */
    features |= VIRTIO_NET_F_GUEST_TSO4 | VIRTIO_NET_F_GUEST_TSO6;
  } else if (link.rx_csum_valid) { /* coalescing relies on the backend's checksums */
    features |= VIRTIO_NET_F_GUEST_TSO4;
    n->rx_merged = vs_malloc0(ETH_HEADER + IPV4_MAX_PACKET);
  }
  filter_reset(&n->st.filter, mac);
  virtio_mmio_init(&n->mmio, VIRTIO_ID_NET, features, 3, mem, irq, &net_ops);
  memcpy(n->config, mac, 6);                     /* mac */
  put_le16(n->config + 6, VIRTIO_NET_S_LINK_UP); /* status */
  put_le16(n->config + 8, 1);                    /* max_virtqueue_pairs */
  put_le16(n->config + 10, mtu);                 /* mtu */
}

void virtio_net_destroy(virtio_net *n) {
  pending_drop_all(n);
  free(n->tx_frame);
  n->tx_frame = NULL;
  free(n->rx_merged);
  n->rx_merged = NULL;
}

void virtio_net_set_mac(virtio_net *n, const uint8_t mac[6]) {
  memcpy(n->st.mac, mac, 6);
  memcpy(n->config, mac, 6);
}

/* ------------------------------------------------------------------ snapshot */

/* 2: the receive filter and its counter */
#define VIRTIO_NET_STATE_VERSION 2

void virtio_net_save(const virtio_net *n, vmstate_writer *w) {
  virtio_mmio_save(&n->mmio, w);
  vmstate_begin(w, "VNET", VIRTIO_NET_STATE_VERSION);
  vmstate_put_bytes(w, n->st.mac, 6);
  vmstate_put_u16(w, n->st.mtu);
  vmstate_put_u64(w, n->st.rx_frames);
  vmstate_put_u64(w, n->st.rx_dropped);
  vmstate_put_u64(w, n->st.tx_frames);
  vmstate_put_u64(w, n->st.tx_dropped);
  vmstate_put_u64(w, n->st.rx_filtered);
  const virtio_net_rx_filter *f = &n->st.filter;
  vmstate_put_bytes(w, f->own_mac, MAC_LEN);
  vmstate_put_bool(w, f->promisc);
  vmstate_put_bool(w, f->allmulti);
  vmstate_put_bool(w, f->uni_overflow);
  vmstate_put_bool(w, f->multi_overflow);
  vmstate_put_u32(w, f->n_uni);
  vmstate_put_u32(w, f->n_multi);
  vmstate_put_bytes(w, f->macs, (size_t)(f->n_uni + f->n_multi) * MAC_LEN);
  vmstate_end_section(w);
}

/* The filter of a version 2 state; a version 1 state predates it (no control queue: the
 * driver could not have changed it from the reset state). */
static void filter_load(virtio_net_rx_filter *f, vmstate_reader *r, const uint8_t mac[MAC_LEN]) {
  filter_reset(f, mac);
  if (r->version < 2)
    return;
  vmstate_get_bytes(r, f->own_mac, MAC_LEN);
  f->promisc = vmstate_get_bool(r);
  f->allmulti = vmstate_get_bool(r);
  f->uni_overflow = vmstate_get_bool(r);
  f->multi_overflow = vmstate_get_bool(r);
  f->n_uni = vmstate_get_u32(r);
  f->n_multi = vmstate_get_u32(r);
  if (f->n_uni > VIRTIO_NET_MAC_TABLE_ENTRIES ||
      f->n_multi > VIRTIO_NET_MAC_TABLE_ENTRIES - f->n_uni) {
    vmstate_refuse(r, "receive filter table longer than the device's");
    f->n_uni = f->n_multi = 0;
    return;
  }
  vmstate_get_bytes(r, f->macs, (size_t)(f->n_uni + f->n_multi) * MAC_LEN);
}

int virtio_net_load(virtio_net *n, vmstate_reader *img, vs_error **err) {
  if (virtio_mmio_load(&n->mmio, img, err) < 0)
    return -1;
  vmstate_reader r;
  if (vmstate_next(img, "VNET", VIRTIO_NET_STATE_VERSION, &r, err) < 0)
    return -1;
  uint8_t mac[6];
  vmstate_get_bytes(&r, mac, sizeof(mac));
  /* the MTU is part of the configuration the machine was built from */
  if (vmstate_get_u16(&r) != n->st.mtu)
    vmstate_refuse(&r, "MTU differs from the configuration");
  n->st.rx_frames = vmstate_get_u64(&r);
  n->st.rx_dropped = vmstate_get_u64(&r);
  n->st.tx_frames = vmstate_get_u64(&r);
  n->st.tx_dropped = vmstate_get_u64(&r);
  n->st.rx_filtered = r.version >= 2 ? vmstate_get_u64(&r) : 0;
  filter_load(&n->st.filter, &r, mac);
  if (vmstate_end(&r, err) < 0)
    return -1;
  virtio_net_set_mac(n, mac);
  /* the new backend learns what the guest's driver took */
  if (n->mmio.status & VIRTIO_STATUS_FEATURES_OK)
    apply_offloads(n, rx_offloads(n));
  return 0;
}
