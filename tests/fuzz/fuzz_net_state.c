/* Fuzz the net state loader (STATE_DIR/net.json, which a damaged disk or a careless hand can
 * change): arbitrary JSON is loaded or refused with a message, never half-loaded, and a loaded
 * state gives an nft ruleset whose names all passed the interface-name check. */
#include <stdint.h>
#include <string.h>

#include "net/internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  json_t *doc = vs_json_loads((const char *)data, size, "fuzz", NULL);
  if (!doc)
    return 0;
  net_ctx ctx = {0};
  vs_error *err = NULL;
  if (net_state_from_json(&ctx, doc, &err) < 0) {
    if (!err || !err->msg || ctx.n_nets != 0)
      abort();
    vs_error_free(err);
  } else {
    char *rules = net_ruleset_text(&ctx);
    /* a quote or a newline from the document would let it write its own rules */
    for (size_t i = 0; i < ctx.n_nets; i++)
      if (strpbrk(ctx.nets[i]->bridge, "\"\n;{}"))
        abort();
    free(rules);
    json_t *again = net_state_json(&ctx);
    json_decref(again);
    for (size_t i = 0; i < ctx.n_nets; i++)
      net_network_free(ctx.nets[i]);
    free(ctx.nets);
  }
  json_decref(doc);
  return 0;
}
