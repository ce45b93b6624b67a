/* Fuzz the decoders of vesseld's VM and pool create requests (POST /vessel/v1/vms and
 * /vessel/v1/pools): any JSON document is either refused with a message or gives a complete
 * configuration within the limits. */
#include "daemon/vms.h"

#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  json_t *body = json_loadb((const char *)data, size, 0, NULL);
  if (!json_is_object(body)) {
    json_decref(body);
    return 0;
  }
  json_t *cfg = json_object(), *disk = json_object();
  vs_error *err = NULL;
  if (vd_vm_config_parse(body, cfg, disk, &err) < 0) {
    if (!err || !err->msg || !*err->msg)
      abort(); /* a refusal always says why */
    vs_error_free(err);
    err = NULL;
  } else {
    json_int_t cpus = json_integer_value(json_object_get(cfg, "Cpus"));
    json_int_t mem = json_integer_value(json_object_get(cfg, "Memory"));
    if (cpus < 1 || cpus > 8 || mem < (16 << 20) || mem > (64LL << 30) ||
        !json_string_value(json_object_get(cfg, "Kernel")) ||
        !json_string_value(json_object_get(cfg, "Append")))
      abort();
  }
  json_t *pool = json_object();
  if (vd_pool_parse(body, pool, &err) < 0) {
    if (!err || !err->msg || !*err->msg)
      abort();
    vs_error_free(err);
    err = NULL;
  } else {
    json_int_t cpus = json_integer_value(json_object_get(pool, "Cpus"));
    double rc = json_number_value(json_object_get(pool, "CpuOvercommit"));
    double rm = json_number_value(json_object_get(pool, "MemoryOvercommit"));
    if (cpus < 1 || cpus > 1024 || !(rc >= 1 && rc <= 100) || !(rm >= 1 && rm <= 100) ||
        json_integer_value(json_object_get(pool, "Memory")) < (16 << 20) ||
        !vd_vm_name_valid(json_string_value(json_object_get(pool, "Name"))))
      abort();
  }
  json_decref(pool);
  json_decref(cfg);
  json_decref(disk);
  json_decref(body);
  return 0;
}
