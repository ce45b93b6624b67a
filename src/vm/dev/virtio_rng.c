/* virtio-rng (virtio 1.2, section 5.4): one request queue; each chain's writable buffers are
 * filled with bytes from the host kernel's CSPRNG (getrandom), at most VIRTIO_RNG_MAX_REQUEST
 * per request so that a guest asking for gigabytes cannot stall the loop. */
#include "vm/dev/virtio.h"

#include <errno.h>
#include <string.h>
#include <sys/random.h>

static virtio_rng *rng_of(virtio_mmio *t) { return (virtio_rng *)t; }

/* Fill up to `want` bytes of the iovecs; returns how many were filled. */
static size_t fill_random(const virtio_rng *rng, const struct iovec *iov, unsigned n, size_t want) {
  size_t done = 0;
  for (unsigned i = 0; i < n && done < want; i++) {
    size_t len = iov[i].iov_len < want - done ? iov[i].iov_len : want - done;
    if (rng->source) {
      size_t got = rng->source(rng->source_opaque, iov[i].iov_base, len);
      done += got;
      if (got < len)
        return done;
      continue;
    }
    size_t got = 0;
    while (got < len) {
      ssize_t r = getrandom((uint8_t *)iov[i].iov_base + got, len - got, 0);
      if (r < 0 && errno == EINTR)
        continue;
      if (r <= 0)
        return done + got;
      got += (size_t)r;
    }
    done += got;
  }
  return done;
}

static void rng_notify(virtio_mmio *t, unsigned qi) {
  virtio_rng *r = rng_of(t);
  virtq *q = &t->queues[qi];
  bool pushed = false;
  while (virtio_mmio_pop(t, qi, &r->elem) > 0) {
    size_t n = fill_random(r, r->elem.in, r->elem.in_num, VIRTIO_RNG_MAX_REQUEST);
    if (!virtio_mmio_push(t, qi, r->elem.head, (uint32_t)n))
      break;
    r->bytes += n;
    pushed = true;
  }
  virtq_update_avail_event(q, &t->mem);
  if (pushed)
    virtio_mmio_notify_used(t, qi);
}

static const virtio_device_ops rng_ops = {
    .notify = rng_notify,
};

void virtio_rng_init(virtio_rng *r, virtio_mem mem, dev_irq_line irq) {
  memset(r, 0, sizeof(*r));
  virtio_mmio_init(&r->mmio, VIRTIO_ID_RNG, VIRTIO_F_RING_INDIRECT_DESC | VIRTIO_F_RING_EVENT_IDX,
                   1, mem, irq, &rng_ops);
}

/* ------------------------------------------------------------------ snapshot */

#define VIRTIO_RNG_STATE_VERSION 1

void virtio_rng_save(const virtio_rng *r, vmstate_writer *w) {
  virtio_mmio_save(&r->mmio, w);
  vmstate_begin(w, "VRNG", VIRTIO_RNG_STATE_VERSION);
  vmstate_put_u64(w, r->bytes);
  vmstate_end_section(w);
}

int virtio_rng_load(virtio_rng *r, vmstate_reader *img, vs_error **err) {
  if (virtio_mmio_load(&r->mmio, img, err) < 0)
    return -1;
  vmstate_reader s;
  if (vmstate_next(img, "VRNG", VIRTIO_RNG_STATE_VERSION, &s, err) < 0)
    return -1;
  r->bytes = vmstate_get_u64(&s);
  return vmstate_end(&s, err);
}
