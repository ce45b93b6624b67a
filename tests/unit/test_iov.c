#include "base/base.h"
#include "tap.h"

#include <string.h>

/* "hello world!" over four buffers, one of them empty, as a guest may lay out a request. */
static char b0[3], b1[1], b2[5], b3[3];
static struct iovec list[5];

static void make_list(void) {
  memcpy(b0, "hel", 3);
  memcpy(b2, "lo wo", 5);
  memcpy(b3, "rld", 3);
  list[0] = (struct iovec){b0, 3};
  list[1] = (struct iovec){b1, 0};
  list[2] = (struct iovec){b2, 5};
  list[3] = (struct iovec){b3, 3};
  list[4] = (struct iovec){b1, 1};
  b1[0] = '!';
}

static void gather(const struct iovec *iov, unsigned n, char *out) {
  size_t got = vs_iov_copy_from(iov, n, 0, out, 64);
  out[got] = 0;
}

TEST(total_counts_every_buffer) {
  make_list();
  CHECK_U64(vs_iov_total(list, 5), 12);
  CHECK_U64(vs_iov_total(list, 0), 0);
}

TEST(slice_points_into_the_same_buffers) {
  make_list();
  struct iovec part[5];
  char s[64];
  unsigned k = vs_iov_slice(list, 5, 2, 6, part);
  CHECK_EQ(k, 2); /* "l" from b0, "lo wo" from b2: the empty buffer is left out */
  CHECK(part[0].iov_base == b0 + 2);
  gather(part, k, s);
  CHECK_STREQ(s, "llo wo");
  k = vs_iov_slice(list, 5, 8, UINT64_MAX, part); /* the tail */
  gather(part, k, s);
  CHECK_STREQ(s, "rld!");
  CHECK_EQ(vs_iov_slice(list, 5, 12, 4, part), 0); /* past the end */
  CHECK_EQ(vs_iov_slice(list, 5, 0, 0, part), 0);
}

TEST(copies_stop_at_the_end_of_the_list) {
  make_list();
  char s[64] = {0};
  CHECK_U64(vs_iov_copy_from(list, 5, 4, s, 100), 8);
  CHECK_STREQ(s, "o world!");
  CHECK_U64(vs_iov_copy_to(list, 5, 9, "XYZW", 4), 3);
  gather(list, 5, s);
  CHECK_STREQ(s, "hello worXYZ");
  CHECK_U64(vs_iov_copy_to(list, 5, 20, "A", 1), 0);
}

TEST(zero_clears_every_buffer) {
  make_list();
  vs_iov_zero(list, 5);
  char s[12];
  CHECK_U64(vs_iov_copy_from(list, 5, 0, s, sizeof(s)), 12);
  for (size_t i = 0; i < sizeof(s); i++)
    CHECK_EQ(s[i], 0);
}

int main(void) { return tap_run(); }
