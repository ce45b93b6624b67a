/* libFuzzer: docker cp's extraction (the layer applier in its plain mode); see fuzz_layer.c. */
#define FUZZ_PLAIN 1
#include "fuzz_layer.c"
