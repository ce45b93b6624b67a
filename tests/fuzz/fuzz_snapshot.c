/* libFuzzer harness: the snapshot / migration state loader. The first byte chooses the mode: odd,
 * the rest is a state image as found in a file (header, sections, checksum); even, the harness
 * appends a correct SUM_ section itself, so the fuzzer gets past the checksum into the section
 * parsers. Any image must load into a machine or fail with a message, never crash; machines with
 * disks (whose paths would name host files), NICs (whose backends would open host sockets or tap
 * devices) or more than 64 MiB of RAM are not built. */
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

#include "vm/machine.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint8_t *with_checksum(const uint8_t *data, size_t size, size_t *out_len) {
  vmstate_writer w;
  vmstate_writer_init(&w);
  vmstate_put_bytes(&w, data, size);
  uint8_t sum[32];
  vs_sha256_ctx ctx;
  vs_sha256_init(&ctx);
  vs_sha256_update(&ctx, data, size);
  vs_sha256_final_raw(&ctx, sum);
  vmstate_begin(&w, "SUM_", 1);
  vmstate_put_bytes(&w, sum, sizeof(sum));
  vmstate_end_section(&w);
  *out_len = w.len;
  return w.data;
}

static void check_error(vs_error *err) {
  if (!err || !err->msg || !*err->msg)
    __builtin_trap(); /* a refusal must say why */
}

static void load_into_machine(const vm_config *cfg, vmstate_reader *rest) {
  if (cfg->ndisks > 0 || cfg->nnets > 0 || cfg->mem_size > (64u << 20))
    return;
  void *ram = mmap(NULL, cfg->mem_size, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (ram == MAP_FAILED)
    return;
  vs_error *err = NULL;
  vm *m = vm_build(cfg, ram, &err);
  if (!m) {
    check_error(err);
    vs_error_free(err);
    return;
  }
  char sha[VS_SHA256_HEX_LEN + 1];
  if (vm_state_load(m, rest, sha, &err) < 0)
    check_error(err);
  vs_error_free(err);
  vm_destroy(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1)
    return 0;
  size_t len = size - 1;
  uint8_t *img = (data[0] & 1) ? NULL : with_checksum(data + 1, size - 1, &len);
  const uint8_t *p = img ? img : data + 1;
  vm_config cfg;
  vm_config_init(&cfg);
  cfg.console_in = -1;
  cfg.console_out = -1;
  char *strings[VM_CONFIG_STRINGS] = {0};
  bool frozen = false;
  vmstate_reader rest;
  vs_error *err = NULL;
  if (vm_state_open(p, len, &cfg, strings, &frozen, &rest, &err) < 0)
    check_error(err);
  else
    load_into_machine(&cfg, &rest);
  vs_error_free(err);
  for (unsigned i = 0; i < ARRAY_SIZE(strings); i++)
    free(strings[i]);
  free(img);
  return 0;
}
