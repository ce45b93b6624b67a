/* Private to src/cluster. */
#ifndef VESSEL_CLUSTER_INTERNAL_H
#define VESSEL_CLUSTER_INTERNAL_H

#include "cluster/cluster.h"

/* Strict base64 (standard or URL-safe alphabet, padding optional); out is NUL-terminated. */
int vc_base64_decode(const char *in, size_t in_len, char **out, size_t *out_len);
char *vc_base64_encode(const void *data, size_t len);

#endif
