/* Internals of the base module, shared between its files and its unit tests only. */
#ifndef VESSEL_BASE_INTERNAL_H
#define VESSEL_BASE_INTERNAL_H

#include "base.h"

/* The fallback of vs_openat_in_root for kernels without openat2: a component-by-component walk
 * with O_NOFOLLOW that resolves symbolic links itself, inside the root. Exposed so the tests can
 * exercise it on kernels that do have openat2. */
int vs_openat_in_root_walk(int rootfd, const char *path, int flags, mode_t mode, vs_error **err);

#endif
