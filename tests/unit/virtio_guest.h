/* The guest side of the virtio device tests: a fake guest RAM at RAM_BASE (the test allocates
 * ram) and little-endian accessors at guest physical addresses, for writing rings and
 * descriptors as a driver would and reading what the device wrote back. Included by one test
 * file each: the state is that file's own. */
#ifndef VESSEL_TESTS_VIRTIO_GUEST_H
#define VESSEL_TESTS_VIRTIO_GUEST_H

#include <endian.h>
#include <stdint.h>
#include <string.h>

#define RAM_BASE 0x80000000ull
#define RAM_SIZE (4u << 20)
#define QSIZE 16

static uint8_t *ram;

static inline uint8_t *gp(uint64_t gpa) { return ram + (gpa - RAM_BASE); }
static inline void w16(uint64_t gpa, uint16_t v) {
  v = htole16(v);
  memcpy(gp(gpa), &v, 2);
}
static inline void w32(uint64_t gpa, uint32_t v) {
  v = htole32(v);
  memcpy(gp(gpa), &v, 4);
}
static inline void w64(uint64_t gpa, uint64_t v) {
  v = htole64(v);
  memcpy(gp(gpa), &v, 8);
}
static inline uint16_t r16(uint64_t gpa) {
  uint16_t v;
  memcpy(&v, gp(gpa), 2);
  return le16toh(v);
}
static inline uint32_t r32(uint64_t gpa) {
  uint32_t v;
  memcpy(&v, gp(gpa), 4);
  return le32toh(v);
}

#endif
