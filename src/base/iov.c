/* iovec lists: guest request buffers, sliced and copied without knowing their layout. */
#include <string.h>

#include "base/base.h"

uint64_t vs_iov_total(const struct iovec *iov, unsigned n) {
  uint64_t total = 0;
  for (unsigned i = 0; i < n; i++)
    total += iov[i].iov_len;
  return total;
}

unsigned vs_iov_slice(const struct iovec *iov, unsigned n, uint64_t skip, uint64_t len,
                      struct iovec *dst) {
  unsigned k = 0;
  for (unsigned i = 0; i < n && len > 0; i++) {
    if (skip >= iov[i].iov_len) {
      skip -= iov[i].iov_len;
      continue;
    }
    size_t take = iov[i].iov_len - (size_t)skip;
    if (take > len)
      take = (size_t)len;
    dst[k++] = (struct iovec){(char *)iov[i].iov_base + skip, take};
    len -= take;
    skip = 0;
  }
  return k;
}

/* Walk the bytes [skip, skip+len) of a list, copying each piece to or from buf. */
static size_t iov_copy(const struct iovec *iov, unsigned n, size_t skip, char *buf, size_t len,
                       bool to_iov) {
  size_t done = 0;
  for (unsigned i = 0; i < n && done < len; i++) {
    if (skip >= iov[i].iov_len) {
      skip -= iov[i].iov_len;
      continue;
    }
    size_t take = iov[i].iov_len - skip;
    if (take > len - done)
      take = len - done;
    char *p = (char *)iov[i].iov_base + skip;
    if (to_iov)
      memcpy(p, buf + done, take);
    else
      memcpy(buf + done, p, take);
    done += take;
    skip = 0;
  }
  return done;
}

size_t vs_iov_copy_from(const struct iovec *iov, unsigned n, size_t skip, void *buf, size_t len) {
  return iov_copy(iov, n, skip, buf, len, false);
}

size_t vs_iov_copy_to(const struct iovec *iov, unsigned n, size_t skip, const void *buf,
                      size_t len) {
  return iov_copy(iov, n, skip, (char *)buf, len, true);
}

void vs_iov_zero(const struct iovec *iov, unsigned n) {
  for (unsigned i = 0; i < n; i++)
    memset(iov[i].iov_base, 0, iov[i].iov_len);
}
