/* libFuzzer: the files of a build context from untrusted bytes: the input as a Dockerfile (every
 * argument then expanded as the builder does) and as a .dockerignore (then matched against a few
 * paths). */
#include "image/image.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *lookup(const char *name, void *ctx) {
  (void)ctx;
  return name[0] == 'A' ? "a b" : (name[0] == 'E' ? "" : NULL);
}

static void expand_all(const vs_df_instr *in, char escape) {
  for (size_t i = 0; i < in->nargs; i++) {
    if (!in->args[i])
      continue;
    vs_error *err = NULL;
    char *word = NULL;
    if (vs_df_expand_word(in->args[i], escape, lookup, NULL, &word, &err) == 0)
      free(word);
    vs_error_free(err);
    err = NULL;
    char **words = NULL;
    size_t n = 0;
    if (vs_df_expand_words(in->args[i], escape, lookup, NULL, &words, &n, &err) == 0) {
      for (size_t j = 0; j < n; j++)
        free(words[j]);
      free(words);
    }
    vs_error_free(err);
  }
  (void)vs_df_flag(in, "from");
  if (in->sub)
    expand_all(in->sub, escape);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  vs_dockerfile df;
  vs_error *err = NULL;
  if (vs_dockerfile_parse((const char *)data, size, &df, &err) == 0) {
    for (size_t i = 0; i < df.n; i++)
      expand_all(&df.instrs[i], df.escape);
    vs_dockerfile_clear(&df);
  }
  vs_error_free(err);
  err = NULL;
  vs_ignore *ig = NULL;
  if (vs_dockerignore_parse((const char *)data, size, &ig, &err) == 0) {
    static const char *const paths[] = {"a", "a/b/c.txt", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaab",
                                        "x/./y", ""};
    for (size_t i = 0; i < ARRAY_SIZE(paths); i++)
      (void)vs_dockerignore_match(ig, paths[i]);
    vs_dockerignore_free(ig);
  }
  vs_error_free(err);
  return 0;
}
