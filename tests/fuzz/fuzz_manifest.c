/* libFuzzer: manifests, indexes, image configs, image references and X-Registry-Auth headers
 * from untrusted bytes. */
#include "image/image.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  vs_manifest m;
  vs_error *err = NULL;
  if (vs_manifest_parse((const char *)data, size, NULL, &m, &err) == 0) {
    if (m.kind == VS_MANIFEST_INDEX) {
      vs_error *e2 = NULL;
      vs_index_select(&m, "linux/amd64", &e2);
      vs_error_free(e2);
    }
    vs_manifest_clear(&m);
  }
  vs_error_free(err);
  err = NULL;
  vs_image_config c;
  if (vs_image_config_parse((const char *)data, size, &c, &err) == 0)
    vs_image_config_clear(&c);
  vs_error_free(err);
  err = NULL;
  if (size < 2048) {
    char *s = vs_malloc0(size + 1);
    memcpy(s, data, size);
    vs_image_ref r;
    if (vs_image_ref_parse(s, &r, &err) == 0) {
      free(vs_image_ref_string(&r));
      vs_image_ref_clear(&r);
    }
    vs_error_free(err);
    err = NULL;
    char *basic = NULL;
    vs_registry_auth_decode(s, &basic, &err);
    free(basic);
    vs_error_free(err);
    free(s);
  }
  return 0;
}
