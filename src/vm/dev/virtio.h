/* virtio for vessel-vmm (internal to the vm module): the virtio-mmio version 2 transport, split
 * virtqueues (indirect descriptors, event index) and the devices behind them: virtio-blk,
 * virtio-net, virtio-console and virtio-rng.
 * Reference: OASIS "Virtual I/O Device (VIRTIO) Version 1.2".
 *
 * The guest is hostile: every address, length, index and chain it hands us is checked against
 * guest RAM and the queue size before use. A driver that breaks the rules of the ring puts the
 * device in DEVICE_NEEDS_RESET (and raises a configuration change interrupt); a bad request
 * (beyond the disk, unaligned, unknown type) completes with an I/O error status. Neither ever
 * crashes or hangs the VMM, and no request ever touches memory outside guest RAM.
 *
 * Wiring (by the machine), e.g. for a disk at slot n:
 *     virtio_blk_init(&blk, disk, "serial", vm_virtio_mem(m), irq_line);
 *     map [base, base + 0x1000) to virtio_mmio_read/virtio_mmio_write with dev = &blk.mmio
 * Requests are served synchronously when the driver writes QueueNotify.
 */
#ifndef VESSEL_VM_DEV_VIRTIO_H
#define VESSEL_VM_DEV_VIRTIO_H

#include "base/base.h"
#include "vm/cpu/cpu.h"
#include "vm/dev/dev.h"
#include "vm/disk/disk.h"

#include <sys/uio.h>

/* ------------------------------------------------------------------ guest memory */

typedef struct virtio_mem {
  uint8_t *ram;  /* host mapping of guest RAM */
  uint64_t base; /* guest physical address of ram[0] */
  uint64_t size;
  /* The machine's dirty-page bitmap while a migration tracks writes (*dirty is NULL otherwise):
   * device writes into guest RAM mark their pages. NULL when nothing tracks. */
  uint64_t *const *dirty;
  /* The harts' decoded-code counters (rv_bus.code_pages): device writes drop decoded code of the
   * pages they write. NULL when no hart runs from this memory (unit tests). */
  uint32_t *code_pages;
} virtio_mem;

/* A device is about to write [gpa, gpa+len) of guest RAM (already checked to be inside it): a
 * migration sends those pages again, and the harts decode code from them afresh. */
static inline void virtio_mem_mark_dirty(const virtio_mem *m, uint64_t gpa, uint64_t len) {
  uint64_t *bitmap = m->dirty ? *m->dirty : NULL;
  if (len == 0)
    return;
  for (uint64_t pg = (gpa - m->base) >> 12; pg <= (gpa - m->base + len - 1) >> 12; pg++) {
    if (bitmap)
      __atomic_or_fetch(&bitmap[pg / 64], 1ull << (pg % 64), __ATOMIC_RELAXED);
    if (m->code_pages)
      rv_code_page_written(m->code_pages, pg);
  }
}

/* Host pointer to [gpa, gpa+len) if it lies entirely inside guest RAM, else NULL. */
static inline void *virtio_mem_ptr(const virtio_mem *m, uint64_t gpa, uint64_t len) {
  if (gpa < m->base || gpa - m->base > m->size || len > m->size - (gpa - m->base))
    return NULL;
  return m->ram + (gpa - m->base);
}

/* ------------------------------------------------------------------ split virtqueues */

#define VIRTQ_MAX_SIZE 256     /* QueueNumMax of our queues */
#define VIRTQ_MAX_SEGMENTS 512 /* buffers in one chain (direct + indirect) */

#define VIRTQ_DESC_F_NEXT 1
#define VIRTQ_DESC_F_WRITE 2
#define VIRTQ_DESC_F_INDIRECT 4

typedef struct virtq {
  /* set by the driver through the transport */
  uint32_t num; /* queue size (power of two, <= VIRTQ_MAX_SIZE) */
  uint64_t desc, avail, used;
  bool ready;
  /* device side */
  uint16_t last_avail;     /* next avail ring entry to take */
  uint16_t used_idx;       /* next used ring entry to fill */
  uint16_t signalled_used; /* used_idx when we last interrupted (event index) */
  bool signalled_valid;
  bool indirect;  /* VIRTIO_F_RING_INDIRECT_DESC negotiated */
  bool event_idx; /* VIRTIO_F_RING_EVENT_IDX negotiated */
} virtq;

/* One request: its chain mapped to host memory. Device-readable buffers come first (out), then
 * device-writable ones (in), as the spec requires of drivers. */
typedef struct virtq_elem {
  uint16_t head;
  unsigned out_num, in_num;
  uint64_t out_len, in_len;
  struct iovec out[VIRTQ_MAX_SEGMENTS];
  struct iovec in[VIRTQ_MAX_SEGMENTS];
} virtq_elem;

/* Whether the queue's rings lie in guest RAM with the alignment the spec requires. */
bool virtq_rings_valid(const virtq *vq, const virtio_mem *mem);
/* Take the next available chain: 1 = got one, 0 = queue empty, -1 = the driver broke the ring
 * protocol (err says how; the device must then need a reset). */
int virtq_pop(virtq *vq, const virtio_mem *mem, virtq_elem *elem, vs_error **err);
/* Return a chain with `written` bytes written into its device-writable buffers. */
int virtq_push(virtq *vq, const virtio_mem *mem, uint16_t head, uint32_t written, vs_error **err);
/* After pushing: does the driver want an interrupt (flags / used_event)? */
bool virtq_should_notify(virtq *vq, const virtio_mem *mem);
/* With event index: ask the driver to notify when it adds beyond what we consumed. */
void virtq_update_avail_event(virtq *vq, const virtio_mem *mem);
void virtq_reset(virtq *vq);
/* Whether the driver has made chains available that we have not taken (false if the rings are
 * unusable). */
bool virtq_has_avail(const virtq *vq, const virtio_mem *mem);
/* Give back the last n chains taken by virtq_pop and not pushed: a device that found it cannot
 * use them after all (too little room for a frame) takes them again later. */
void virtq_unpop(virtq *vq, uint16_t n);

/* Copy up to len bytes out of / into an iovec list starting at byte `skip`; returns bytes done. */

/* ------------------------------------------------------------------ virtio-mmio transport */

#define VIRTIO_MMIO_SIZE 0x1000
#define VIRTIO_MAX_QUEUES 4

#define VIRTIO_STATUS_ACKNOWLEDGE 1
#define VIRTIO_STATUS_DRIVER 2
#define VIRTIO_STATUS_DRIVER_OK 4
#define VIRTIO_STATUS_FEATURES_OK 8
#define VIRTIO_STATUS_NEEDS_RESET 64
#define VIRTIO_STATUS_FAILED 128

#define VIRTIO_F_RING_INDIRECT_DESC (1ull << 28)
#define VIRTIO_F_RING_EVENT_IDX (1ull << 29)
#define VIRTIO_F_VERSION_1 (1ull << 32)

#define VIRTIO_INT_USED 1
#define VIRTIO_INT_CONFIG 2

typedef struct virtio_mmio virtio_mmio;

/* What a device behind the transport provides. */
typedef struct virtio_device_ops {
  /* The driver notified queue `q` (DRIVER_OK, queue ready). */
  void (*notify)(virtio_mmio *t, unsigned q);
  /* Device configuration space, little-endian. */
  const uint8_t *(*config)(virtio_mmio *t, size_t *len);
  /* Reset of the device's own state (the transport resets the queues). */
  void (*reset)(virtio_mmio *t);
  /* A driver write into the configuration space (optional: NULL = read-only). */
  void (*config_write)(virtio_mmio *t, uint64_t off, unsigned size, uint32_t val);
  /* The device accepted FEATURES_OK: driver_features are settled until the next reset
   * (optional). */
  void (*features_ok)(virtio_mmio *t);
} virtio_device_ops;

struct virtio_mmio {
  /* identity */
  uint32_t device_id;
  uint64_t device_features;
  unsigned num_queues;
  /* driver-visible state */
  uint64_t driver_features;
  uint32_t device_features_sel, driver_features_sel, queue_sel;
  uint32_t status;
  uint32_t interrupt_status;
  uint32_t config_generation;
  virtq queues[VIRTIO_MAX_QUEUES];
  /* wiring */
  virtio_mem mem;
  dev_irq_line irq;
  const virtio_device_ops *ops;
  bool trace;
};

void virtio_mmio_init(virtio_mmio *t, uint32_t device_id, uint64_t device_features,
                      unsigned num_queues, virtio_mem mem, dev_irq_line irq,
                      const virtio_device_ops *ops);
bool virtio_mmio_read(void *dev, uint64_t off, unsigned size, uint64_t *val);
bool virtio_mmio_write(void *dev, uint64_t off, unsigned size, uint64_t val);
/* Raise the used-buffer interrupt (if the queue asks for it). */
void virtio_mmio_notify_used(virtio_mmio *t, unsigned q);
/* The driver broke the protocol: DEVICE_NEEDS_RESET and a configuration interrupt. */
void virtio_mmio_set_needs_reset(virtio_mmio *t, const char *why);
/* The device changed its configuration space: a new generation and a configuration change
 * interrupt for a live driver. */
void virtio_mmio_config_changed(virtio_mmio *t);
/* The next chain of queue qi into *e: 1 = got one, 0 = none, -1 = the ring or the chain is
 * malformed and the device now needs a reset. */
int virtio_mmio_pop(virtio_mmio *t, unsigned qi, virtq_elem *e);
/* Return chain head with `written` bytes to queue qi; false when the used ring is unusable and
 * the device now needs a reset. */
bool virtio_mmio_push(virtio_mmio *t, unsigned qi, uint16_t head, uint32_t written);
/* The transport's driver-visible state and every queue's position ("VIRT" section). The device
 * behind it saves its own state after it. Loading checks the device id and queue count against
 * the device this build wired at the same slot. */
void virtio_mmio_save(const virtio_mmio *t, vmstate_writer *w);
int virtio_mmio_load(virtio_mmio *t, vmstate_reader *img, vs_error **err);

/* ------------------------------------------------------------------ virtio-blk */

#define VIRTIO_ID_BLOCK 2
#define VIRTIO_BLK_ID_BYTES 20
#define VIRTIO_BLK_CONFIG_SIZE 0x3c

typedef struct virtio_blk {
  virtio_mmio mmio; /* first: the MMIO handlers get a pointer to it */
  vm_disk *disk;    /* not owned */
  bool readonly;
  char serial[VIRTIO_BLK_ID_BYTES];
  uint8_t config[VIRTIO_BLK_CONFIG_SIZE];
  virtq_elem elem; /* scratch for the request being served */
  uint64_t requests, errors;
  uint64_t read_bytes, write_bytes; /* for the control socket's info; not saved */
} virtio_blk;

/* serial may be NULL (then "vessel-vd<N>" style ids are up to the caller). */
void virtio_blk_init(virtio_blk *b, vm_disk *disk, const char *serial, virtio_mem mem,
                     dev_irq_line irq);
/* The transport and queue positions ("VIRT") then the disk's identity ("VBLK": size, read-only),
 * which must match the disk opened on restore. */
void virtio_blk_save(const virtio_blk *b, vmstate_writer *w);
int virtio_blk_load(virtio_blk *b, vmstate_reader *img, vs_error **err);

/* ------------------------------------------------------------------ virtio-input power button */

#define VIRTIO_ID_INPUT 18
#define VIRTIO_INPUT_CONFIG_SIZE 136
#define VIRTIO_INPUT_MAX_PENDING 32

/* A one-key keyboard: KEY_POWER. The machine presses it for `powerdown`; the guest's input layer
 * reports it like an ACPI power button, and its init (busybox acpid) powers off cleanly. */
typedef struct virtio_input {
  virtio_mmio mmio; /* first: the MMIO handlers get a pointer to it */
  uint8_t select, subsel;
  uint8_t config[VIRTIO_INPUT_CONFIG_SIZE];
  uint8_t pending[VIRTIO_INPUT_MAX_PENDING][8]; /* events waiting for a driver buffer */
  unsigned num_pending;
  virtq_elem elem;
} virtio_input;

void virtio_input_init(virtio_input *in, virtio_mem mem, dev_irq_line irq);
/* Press and release the power button. False when the driver is not ready to hear it. */
bool virtio_input_press_power(virtio_input *in);
void virtio_input_save(const virtio_input *in, vmstate_writer *w);
int virtio_input_load(virtio_input *in, vmstate_reader *img, vs_error **err);

/* ------------------------------------------------------------------ virtio-net */

#define VIRTIO_ID_NET 1
#define VIRTIO_NET_HDR_SIZE 12 /* struct virtio_net_hdr with num_buffers (VERSION_1) */
#define VIRTIO_NET_CONFIG_SIZE 0x14
#define VIRTIO_NET_RX_QUEUE 0
#define VIRTIO_NET_TX_QUEUE 1
#define VIRTIO_NET_CTRL_QUEUE 2 /* with VIRTIO_NET_F_CTRL_VQ (no multiqueue: right after TX) */
/* Receive filter addresses the driver may set (unicast and multicast together); a longer list
 * turns filtering off for its kind, as in QEMU. */
#define VIRTIO_NET_MAC_TABLE_ENTRIES 64
#define VIRTIO_NET_MIN_MTU 68
#define VIRTIO_NET_MAX_MTU 65521 /* libslirp's largest; the IP datagram limit in practice */
#define VIRTIO_NET_DEFAULT_MTU 1500
/* Ethernet header with one VLAN tag: a frame is at most MTU + this long. */
#define VIRTIO_NET_LINK_OVERHEAD 18
/* A TCP segmentation offload frame: one IP packet of at most 64 KiB (IPv6: payload) */
#define VIRTIO_NET_MAX_GSO_FRAME (65535 + 40 + VIRTIO_NET_LINK_OVERHEAD)
/* Frames from the backend held for a guest that has no receive buffers right now. */
#define VIRTIO_NET_PENDING_FRAMES 128

/* struct virtio_net_hdr (5.1.6) without num_buffers, in host byte order. */
typedef struct virtio_net_hdr {
  uint8_t flags, gso_type;
  uint16_t hdr_len, gso_size, csum_start, csum_offset;
} virtio_net_hdr;

/* What the guest takes on receive from a backend that carries the header: frames whose
 * checksum is left to it (csum: GUEST_CSUM) and large TCP packets (tso4/tso6: GUEST_TSO4/6). */
typedef struct virtio_net_offloads {
  bool csum, tso4, tso6;
} virtio_net_offloads;

/* Where the device's transmitted frames go (the machine wires a network backend here). */
typedef struct virtio_net_link {
  /* One Ethernet frame from the guest; the backend may drop it. Without vnet_hdr checksums are
   * complete; with it the frame is preceded by the (checked) 12-byte header. */
  void (*send)(void *opaque, const uint8_t *frame, size_t len);
  void *opaque;
  /* Frames from this backend carry correct checksums (the guest need not verify them). */
  bool rx_csum_valid;
  /* The backend takes TCP packets of up to 64 KiB whatever the MTU (libslirp does: it is a TCP
   * endpoint, not a link): the guest may then hand over unsegmented TCP (HOST_TSO4/6). */
  bool accepts_tso;
  /* The backend carries the virtio-net header both ways (a tap with IFF_VNET_HDR): frames to it
   * and from it start with VIRTIO_NET_HDR_SIZE bytes of header, so partial checksums and GSO
   * packets pass through unfinished and the guest is offered GUEST_TSO4/6. */
  bool vnet_hdr;
  /* With vnet_hdr: tell the backend what the guest takes on receive (optional). Called when the
   * driver's features are settled, at reset (all off) and after a restore. */
  void (*set_offloads)(void *opaque, virtio_net_offloads off);
} virtio_net_link;

/* The receive filter the driver sets through the control queue (VIRTIO_NET_F_CTRL_RX). After a
 * reset the device is promiscuous, as QEMU's is, so a driver without CTRL_RX gets everything. */
typedef struct virtio_net_rx_filter {
  /* The driver's own address: the config's MAC when it settled its features (a clone's new MAC
   * reaches the guest only when it probes the device again), or what MAC_ADDR_SET gave. */
  uint8_t own_mac[6];
  bool promisc, allmulti;
  bool uni_overflow, multi_overflow; /* the driver's list was too long: accept that kind */
  uint32_t n_uni, n_multi;           /* macs[0..n_uni) unicast, then n_multi multicast */
  uint8_t macs[VIRTIO_NET_MAC_TABLE_ENTRIES][6];
} virtio_net_rx_filter;

/* The device's own state, plain values only (what save/restore of issue 5 keeps). */
typedef struct virtio_net_state {
  uint8_t mac[6];
  uint16_t mtu;
  uint64_t rx_frames, rx_dropped, tx_frames, tx_dropped;
  uint64_t rx_filtered; /* frames the receive filter kept from the guest */
  virtio_net_rx_filter filter;
} virtio_net_state;

typedef struct virtio_net_pending {
  uint8_t *data; /* malloc'd copy of the frame */
  size_t len;
  virtio_net_hdr hdr; /* checked against the negotiated features; zero without vnet_hdr */
} virtio_net_pending;

typedef struct virtio_net {
  virtio_mmio mmio; /* first: the MMIO handlers get a pointer to it */
  virtio_net_state st;
  uint8_t config[VIRTIO_NET_CONFIG_SIZE];
  /* host side: the backend, frames waiting for guest buffers, scratch space */
  virtio_net_link link;
  virtio_net_pending pending[VIRTIO_NET_PENDING_FRAMES];
  unsigned pending_head, pending_count;
  uint8_t *tx_frame;  /* header + one frame being transmitted (max frame size) */
  uint8_t *rx_merged; /* coalesced TCP segments for the guest (64 KiB), or NULL */
  /* chains being served; separate because a backend may deliver a frame for the guest while
   * it takes one from the guest (slirp answers ARP from within slirp_input) */
  virtq_elem tx_elem, rx_elem, ctrl_elem;
  uint16_t rx_heads[VIRTQ_MAX_SIZE]; /* chains taken for one merged receive */
  uint32_t rx_lens[VIRTQ_MAX_SIZE];
} virtio_net;

/* mac: the guest's address; mtu: VIRTIO_NET_MIN_MTU..VIRTIO_NET_MAX_MTU. */
void virtio_net_init(virtio_net *n, const uint8_t mac[6], uint16_t mtu, virtio_mem mem,
                     dev_irq_line irq, virtio_net_link link);
/* Frees the frames still waiting; the struct itself belongs to the caller. */
void virtio_net_destroy(virtio_net *n);
/* A new address in the config space (a clone's NIC). A running guest keeps the address its
 * driver read at probe time until it probes the device again. */
void virtio_net_set_mac(virtio_net *n, const uint8_t mac[6]);
/* Snapshots: the transport and the architectural state; frames waiting on the host side are not
 * saved (a network drops packets, the guest's protocols recover). */
void virtio_net_save(const virtio_net *n, vmstate_writer *w);
int virtio_net_load(virtio_net *n, vmstate_reader *img, vs_error **err);
/* The backend side (opaque = the virtio_net): can the guest take a frame now (a receive buffer
 * is posted or there is room to hold the frame), and a frame for the guest (copied); from a
 * vnet_hdr backend the frame starts with the header, which is checked before the guest sees it. */
bool virtio_net_can_receive(void *opaque);
void virtio_net_receive(void *opaque, const uint8_t *frame, size_t len);
/* The end of a backend's burst: deliver what waits (merging TCP segments, see virtio_net.c).
 * The machine calls it after the backend's prepare and dispatch. */
void virtio_net_flush(virtio_net *n);

/* ------------------------------------------------------------------ virtio-console */

#define VIRTIO_ID_CONSOLE 3
#define VIRTIO_CONSOLE_CONFIG_SIZE 12
#define VIRTIO_CONSOLE_RX_BUF 4096

/* Port 0 only (no MULTIPORT): the guest's hvc0. Input waits in rx until the guest posts
 * buffers; output is written to out_fd as the guest sends it. */
typedef struct virtio_console {
  virtio_mmio mmio; /* first */
  uint8_t config[VIRTIO_CONSOLE_CONFIG_SIZE];
  uint8_t rx[VIRTIO_CONSOLE_RX_BUF];
  unsigned rx_head, rx_count;
  uint64_t rx_bytes, tx_bytes;
  int out_fd;
  virtq_elem elem;
} virtio_console;

void virtio_console_init(virtio_console *c, int out_fd, virtio_mem mem, dev_irq_line irq);
/* Room for console input, and feeding it (bytes beyond the room are dropped). */
unsigned virtio_console_rx_space(const virtio_console *c);
void virtio_console_rx_push(virtio_console *c, const uint8_t *buf, size_t len);
/* Snapshots: the transport and the input not yet delivered to the guest. */
void virtio_console_save(const virtio_console *c, vmstate_writer *w);
int virtio_console_load(virtio_console *c, vmstate_reader *img, vs_error **err);

/* ------------------------------------------------------------------ virtio-rng */

#define VIRTIO_ID_RNG 4
/* The most random bytes one request gets (the guest asks again for more). */
#define VIRTIO_RNG_MAX_REQUEST 65536u

typedef struct virtio_rng {
  virtio_mmio mmio; /* first */
  uint64_t bytes;
  virtq_elem elem;
  /* record/replay: where the bytes come from instead of getrandom (returns how many it gave;
   * NULL: the host's CSPRNG) */
  size_t (*source)(void *opaque, uint8_t *buf, size_t len);
  void *source_opaque;
} virtio_rng;

void virtio_rng_init(virtio_rng *r, virtio_mem mem, dev_irq_line irq);
void virtio_rng_save(const virtio_rng *r, vmstate_writer *w);
int virtio_rng_load(virtio_rng *r, vmstate_reader *img, vs_error **err);

/* ------------------------------------------------------------------ virtio-balloon */

#define VIRTIO_ID_BALLOON 5
#define VIRTIO_BALLOON_CONFIG_SIZE 8 /* num_pages, actual (no free page hints, no poison) */
#define VIRTIO_BALLOON_NUM_STATS 16  /* the tags Linux 6.12 knows (SWAP_IN .. DIRECT_RECLAIM) */
#define VIRTIO_BALLOON_PAGE_SIZE 4096u

/* Memory the guest gives back: pages it puts in the balloon (inflateq), free pages it reports
 * (free page reporting, reporting_vq) are dropped from the host with madvise, so the host takes
 * them back at once; the guest touches them again only after a deflate or an allocation, and then
 * gets zero (or, over a restored snapshot's file mapping, the saved) pages. Statistics come on
 * statsq: the driver's buffer is held until the host wants fresher numbers. */
typedef struct virtio_balloon {
  virtio_mmio mmio; /* first */
  uint8_t config[VIRTIO_BALLOON_CONFIG_SIZE];
  uint32_t target_pages; /* num_pages: what the host asks the guest to hold in the balloon */
  uint32_t actual_pages; /* what the driver says it holds */
  bool stats_held;       /* the driver's stats buffer, taken and not yet given back */
  uint16_t stats_head;
  uint32_t stats_valid; /* bit per tag the guest has reported */
  uint64_t stats[VIRTIO_BALLOON_NUM_STATS];
  uint64_t inflated_pages, deflated_pages, reported_bytes, bad_pfns;
  virtq_elem elem;
} virtio_balloon;

void virtio_balloon_init(virtio_balloon *b, virtio_mem mem, dev_irq_line irq);
/* Ask the guest to hold `pages` pages in its balloon (a configuration change). */
void virtio_balloon_set_target(virtio_balloon *b, uint32_t pages);
/* Give the driver's stats buffer back, so it sends fresh numbers (the answer arrives later). */
void virtio_balloon_request_stats(virtio_balloon *b);
/* Name of stats tag i (NULL beyond the known ones). */
const char *virtio_balloon_stat_name(unsigned tag);
void virtio_balloon_save(const virtio_balloon *b, vmstate_writer *w);
int virtio_balloon_load(virtio_balloon *b, vmstate_reader *img, vs_error **err);

#endif
