/* image module: the Dockerfile parser and Docker's word expansion. */
#include "image/image.h"
#include "tap.h"
#include "testutil.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

static int parse(const char *text, vs_dockerfile *df, vs_error **err) {
  return vs_dockerfile_parse(text, strlen(text), df, err);
}

/* A failing parse whose message contains want. */
static void check_fails(const char *text, const char *want) {
  vs_dockerfile df;
  vs_error *err = NULL;
  CHECK_EQ(parse(text, &df, &err), -1);
  CHECK(err != NULL);
  CHECK_CONTAINS(err->msg, want);
  vs_error_free(err);
}

TEST(instructions_comments_and_continuations) {
  vs_dockerfile df;
  vs_error *err = NULL;
  const char *text = "# a comment\n"
                     "FROM busybox AS base\n"
                     "\n"
                     "run echo a \\\n"
                     "  # a comment inside\n"
                     "\n"
                     "  b\r\n"
                     "   ENV A=1 B=\"two words\"\n"
                     "COPY --from=base --chown=1:2 /a /b /dest/\n";
  CHECK_EQ(parse(text, &df, &err), 0);
  CHECK_EQ(df.n, 4);
  CHECK_STREQ(df.instrs[0].keyword, "from");
  CHECK_EQ(df.instrs[0].line, 2);
  CHECK_EQ(df.instrs[0].nargs, 3);
  CHECK_STREQ(df.instrs[0].args[2], "base");
  CHECK_STREQ(df.instrs[1].keyword, "run");
  CHECK_EQ(df.instrs[1].line, 4);
  CHECK(!df.instrs[1].json);
  CHECK_EQ(df.instrs[1].nargs, 1);
  CHECK_STREQ(df.instrs[1].args[0], "echo a   b");
  CHECK_STREQ(df.instrs[2].keyword, "env");
  CHECK_EQ(df.instrs[2].nargs, 4);
  CHECK_STREQ(df.instrs[2].args[0], "A");
  CHECK_STREQ(df.instrs[2].args[1], "1");
  CHECK_STREQ(df.instrs[2].args[3], "\"two words\"");
  CHECK_EQ(df.instrs[3].nflags, 2);
  CHECK_STREQ(vs_df_flag(&df.instrs[3], "from"), "base");
  CHECK_STREQ(vs_df_flag(&df.instrs[3], "chown"), "1:2");
  CHECK(vs_df_flag(&df.instrs[3], "chmod") == NULL);
  CHECK_EQ(df.instrs[3].nargs, 3);
  static const char *const copy_flags[] = {"from", "chown", "chmod", NULL};
  CHECK_EQ(vs_df_flags_check(&df.instrs[3], copy_flags, &err), 0);
  static const char *const none[] = {NULL};
  CHECK_EQ(vs_df_flags_check(&df.instrs[3], none, &err), -1);
  CHECK_CONTAINS(err->msg, "COPY: unknown flag: --from");
  vs_error_free(err);
  vs_dockerfile_clear(&df);
}

TEST(json_and_shell_forms) {
  vs_dockerfile df;
  vs_error *err = NULL;
  CHECK_EQ(parse("FROM scratch\nCMD [\"/bin/sh\", \"-c\", \"echo hi\"]\nENTRYPOINT [\"a\" \n"
                 "SHELL [\"/bin/ash\", \"-eo\"]\nVOLUME /a /b\nVOLUME [\"/c\"]\n",
                 &df, &err),
           0);
  CHECK_EQ(df.n, 6);
  CHECK(df.instrs[1].json);
  CHECK_EQ(df.instrs[1].nargs, 3);
  CHECK_STREQ(df.instrs[1].args[2], "echo hi");
  CHECK(!df.instrs[2].json); /* not JSON: the shell form, as Docker */
  CHECK_STREQ(df.instrs[2].args[0], "[\"a\"");
  CHECK(df.instrs[3].json);
  CHECK_EQ(df.instrs[4].nargs, 2);
  CHECK(df.instrs[5].json);
  vs_dockerfile_clear(&df);
  check_fails("FROM scratch\nCMD [1, 2]\n", "line 2: not a JSON array of strings");
  check_fails("FROM scratch\nSHELL /bin/sh -c\n",
              "SHELL requires the arguments to be in JSON form");
}

TEST(directives) {
  vs_dockerfile df;
  vs_error *err = NULL;
  CHECK_EQ(parse("# syntax=docker/dockerfile:1\n# escape=`\nFROM busybox\nRUN echo a `\n b\n", &df,
                 &err),
           0);
  CHECK_EQ(df.escape, '`');
  CHECK_STREQ(df.syntax, "docker/dockerfile:1");
  CHECK_EQ(df.n, 2);
  CHECK_STREQ(df.instrs[1].args[0], "echo a  b");
  vs_dockerfile_clear(&df);
  /* after the first instruction a directive is only a comment */
  CHECK_EQ(parse("FROM busybox\n# escape=`\nRUN echo a \\\n b\n", &df, &err), 0);
  CHECK_EQ(df.escape, '\\');
  CHECK_EQ(df.n, 2);
  vs_dockerfile_clear(&df);
  check_fails("# escape=x\nFROM a\n", "invalid escape token 'x'");
  check_fails("# escape=`\n# escape=\\\nFROM a\n", "only one escape parser directive");
}

TEST(env_label_arg_onbuild_healthcheck) {
  vs_dockerfile df;
  vs_error *err = NULL;
  CHECK_EQ(parse("FROM a\nENV LEGACY value with spaces\nLABEL \"k 1\"=v\nARG X Y=2\n"
                 "ONBUILD RUN echo hi\nHEALTHCHECK --interval=5s CMD [\"true\"]\nHEALTHCHECK none\n"
                 "EXPOSE 80/tcp 443\nuser 1000:1000\nWORKDIR /a b\nSTOPSIGNAL SIGINT\n",
                 &df, &err),
           0);
  CHECK_EQ(df.n, 11);
  CHECK_EQ(df.instrs[1].nargs, 2);
  CHECK_STREQ(df.instrs[1].args[0], "LEGACY");
  CHECK_STREQ(df.instrs[1].args[1], "value with spaces");
  CHECK_STREQ(df.instrs[2].args[0], "\"k 1\"");
  CHECK_EQ(df.instrs[3].nargs, 4);
  CHECK_STREQ(df.instrs[3].args[0], "X");
  CHECK(df.instrs[3].args[1] == NULL);
  CHECK_STREQ(df.instrs[3].args[3], "2");
  CHECK(df.instrs[4].sub != NULL);
  CHECK_STREQ(df.instrs[4].sub->keyword, "run");
  CHECK_STREQ(df.instrs[4].sub->original, "RUN echo hi");
  CHECK_STREQ(df.instrs[5].args[0], "CMD");
  CHECK(df.instrs[5].json);
  CHECK_STREQ(df.instrs[5].args[1], "true");
  CHECK_STREQ(vs_df_flag(&df.instrs[5], "interval"), "5s");
  CHECK_STREQ(df.instrs[6].args[0], "NONE");
  CHECK_EQ(df.instrs[7].nargs, 2);
  CHECK_STREQ(df.instrs[8].args[0], "1000:1000");
  CHECK_STREQ(df.instrs[9].args[0], "/a b");
  vs_dockerfile_clear(&df);
}

TEST(bad_dockerfiles_name_the_line) {
  check_fails("FROM a\n\nFOO bar\n", "Dockerfile parse error line 3: unknown instruction: FOO");
  check_fails("FROM a b\n", "FROM requires either one or three arguments");
  check_fails("FROM a\nCOPY onlyone\n", "COPY requires at least two arguments");
  check_fails("FROM a\nENV A=1 B\n", "can't find = in \"B\"");
  check_fails("FROM a\nONBUILD ONBUILD RUN x\n", "ONBUILD ONBUILD is not allowed");
  check_fails("FROM a\nONBUILD FROM b\n", "FROM isn't allowed as an ONBUILD trigger");
  check_fails("FROM a\nRUN <<EOF\necho hi\nEOF\n",
              "line 2: RUN: heredocs (<<EOF) are not supported");
  check_fails("FROM a\nCOPY <<-EOF /x\n", "heredocs");
  check_fails("FROM a\nRUN\n", "RUN requires at least one argument");
  check_fails("FROM a\nWORKDIR\n", "WORKDIR requires exactly one argument");
  char nul[] = "FROM a\0\n";
  vs_dockerfile df;
  vs_error *err = NULL;
  CHECK_EQ(vs_dockerfile_parse(nul, sizeof(nul) - 1, &df, &err), -1);
  CHECK_CONTAINS(err->msg, "NUL byte");
  vs_error_free(err);
  err = NULL;
  size_t n = VS_DF_MAX_LINE + 100;
  char *big = calloc(1, n + 16);
  CHECK(big != NULL);
  memcpy(big, "FROM a\nRUN ", 11);
  memset(big + 11, 'x', n);
  CHECK_EQ(vs_dockerfile_parse(big, n + 11, &df, &err), -1);
  CHECK_CONTAINS(err->msg, "line 2: line longer than");
  vs_error_free(err);
  free(big);
}

static const char *lookup(const char *name, void *ctx) {
  (void)ctx;
  if (!strcmp(name, "A"))
    return "one";
  if (!strcmp(name, "E"))
    return "";
  if (!strcmp(name, "S"))
    return "x  y";
  return NULL;
}

static void check_word(const char *in, const char *want) {
  char *out = NULL;
  vs_error *err = NULL;
  if (vs_df_expand_word(in, '\\', lookup, NULL, &out, &err) < 0)
    TAP_FAIL("expand %s: %s", in, err->msg);
  CHECK_STREQ(out, want);
  free(out);
}

TEST(expansion) {
  check_word("$A", "one");
  check_word("${A}/b", "one/b");
  check_word("$A$B.c", "one.c");
  check_word("${B:-def}", "def");
  check_word("${E:-def}", "def");
  check_word("${E-def}", "");
  check_word("${A:+alt}", "alt");
  check_word("${B:+alt}", "");
  check_word("${B:-$A}", "one");
  check_word("'$A'", "$A");
  check_word("\"$A b\"", "one b");
  check_word("\\$A", "$A");
  check_word("\"a\\\"b\\x\"", "a\"b\\x");
  check_word("a $ b", "a $ b");
  check_word("$S", "x  y");
  static const struct {
    const char *word, *want;
  } bad[] = {
      {"${B:?must be set}", "B: must be set"}, {"${A", "missing '}'"},
      {"\"abc", "matching double-quote"},      {"'abc", "matching single-quote"},
      {"${A%x}", "unsupported modifier (%)"},  {"${}", "bad substitution"},
  };
  for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
    char *out = NULL;
    vs_error *err = NULL;
    CHECK_EQ(vs_df_expand_word(bad[i].word, '\\', lookup, NULL, &out, &err), -1);
    CHECK_CONTAINS(err->msg, bad[i].want);
    vs_error_free(err);
  }

  char **words = NULL;
  size_t n = 0;
  vs_error *err = NULL;
  CHECK_EQ(vs_df_expand_words("a \"b c\" $S '' ${A}d", '\\', lookup, NULL, &words, &n, &err), 0);
  CHECK_EQ(n, 6);
  CHECK_STREQ(words[0], "a");
  CHECK_STREQ(words[1], "b c");
  CHECK_STREQ(words[2], "x");
  CHECK_STREQ(words[3], "y");
  CHECK_STREQ(words[4], "");
  CHECK_STREQ(words[5], "oned");
  CHECK(words[6] == NULL);
  for (size_t i = 0; i < n; i++)
    free(words[i]);
  free(words);
}

static vs_ignore *ignore(const char *text) {
  vs_ignore *ig = NULL;
  vs_error *err = NULL;
  if (vs_dockerignore_parse(text, strlen(text), &ig, &err) < 0)
    TAP_FAIL("parse .dockerignore: %s", err->msg);
  return ig;
}

TEST(dockerignore_patterns) {
  vs_ignore *ig = ignore("# comment\n\n*.log\n/build/\n!build/keep\ndocs/**/*.md\n  tmp? \n"
                         "[a-c]x\n**/secret\nsub/./dir/../x\n");
  CHECK(vs_dockerignore_match(ig, "a.log"));
  CHECK(!vs_dockerignore_match(ig, "dir/a.log")); /* "*" stays in one directory */
  CHECK(vs_dockerignore_match(ig, "build"));
  CHECK(vs_dockerignore_match(ig, "build/out/x.o")); /* under an excluded directory */
  CHECK(!vs_dockerignore_match(ig, "build/keep"));
  CHECK(vs_dockerignore_match(ig, "docs/a.md")); /* "**" may be no directory */
  CHECK(vs_dockerignore_match(ig, "docs/x/y/a.md"));
  CHECK(!vs_dockerignore_match(ig, "docs/a.txt"));
  CHECK(vs_dockerignore_match(ig, "tmp1"));
  CHECK(!vs_dockerignore_match(ig, "tmp12"));
  CHECK(vs_dockerignore_match(ig, "bx"));
  CHECK(!vs_dockerignore_match(ig, "dx"));
  CHECK(vs_dockerignore_match(ig, "secret"));
  CHECK(vs_dockerignore_match(ig, "a/b/secret"));
  CHECK(vs_dockerignore_match(ig, "sub/x"));
  CHECK(!vs_dockerignore_match(ig, "Dockerfile"));
  vs_dockerignore_free(ig);

  /* the last matching pattern wins */
  ig = ignore("*\n!keep*\nkeep.tmp\n");
  CHECK(vs_dockerignore_match(ig, "x"));
  CHECK(!vs_dockerignore_match(ig, "keep.c"));
  CHECK(vs_dockerignore_match(ig, "keep.tmp"));
  vs_dockerignore_free(ig);

  /* a hostile pattern costs its length times the path's */
  char pat[2100];
  for (int i = 0; i < 1000; i++)
    memcpy(pat + 2 * i, "*a", 2);
  strcpy(pat + 2000, "b\n");
  ig = ignore(pat);
  char path[1100];
  memset(path, 'a', 1000);
  path[1000] = 0;
  CHECK(!vs_dockerignore_match(ig, path));
  vs_dockerignore_free(ig);

  vs_error *err = NULL;
  CHECK_EQ(vs_dockerignore_parse("ok\n[]x\n", 7, &ig, &err), -1);
  CHECK_CONTAINS(err->msg, ".dockerignore line 2: syntax error in pattern");
  vs_error_free(err);
  err = NULL;
  CHECK_EQ(vs_dockerignore_parse("a\\", 2, &ig, &err), -1);
  CHECK_CONTAINS(err->msg, "line 1: syntax error");
  vs_error_free(err);
}

/* Sources of COPY resolved in the context; *joined receives them joined with ",". */
static int glob_in(int ctxfd, const char *src, const vs_ignore *ig, char **joined, vs_error **err) {
  char **v = NULL;
  size_t n = 0;
  if (vs_build_context_glob(ctxfd, src, ig, &v, &n, err) < 0)
    return -1;
  size_t len = 1;
  for (size_t i = 0; i < n; i++)
    len += strlen(v[i]) + 1;
  *joined = vs_malloc0(len);
  for (size_t i = 0; i < n; i++) {
    if (i)
      strcat(*joined, ",");
    strcat(*joined, v[i]);
    free(v[i]);
  }
  CHECK(v[n] == NULL);
  free(v);
  return 0;
}

static void check_glob(int ctxfd, const char *src, const vs_ignore *ig, const char *want) {
  char *got = NULL;
  vs_error *err = NULL;
  if (glob_in(ctxfd, src, ig, &got, &err) < 0)
    TAP_FAIL("%s: %s", src, err->msg);
  CHECK_STREQ(got, want);
  free(got);
}

static void check_glob_fails(int ctxfd, const char *src, const char *want) {
  char *got = NULL;
  vs_error *err = NULL;
  CHECK_EQ(glob_in(ctxfd, src, NULL, &got, &err), -1);
  CHECK_CONTAINS(err->msg, want);
  vs_error_free(err);
}

TEST(context_sources_stay_inside) {
  char *top = test_tmpdir();
  char *ctx = vs_asprintf("%s/ctx", top);
  char *p = NULL;
  CHECK_EQ(mkdir(ctx, 0755), 0);
#define AT(rel) (free(p), p = vs_asprintf("%s/%s", ctx, rel))
  CHECK_EQ(mkdir(AT("src"), 0755), 0);
  CHECK_EQ(mkdir(AT("src/sub"), 0755), 0);
  test_write(AT("src/a.c"), "a");
  test_write(AT("src/b.c"), "b");
  test_write(AT("src/b.h"), "h");
  test_write(AT("src/sub/c.c"), "c");
  test_write(AT("top.txt"), "t");
  test_write(AT("skip.log"), "l");
  free(p);
  p = vs_asprintf("%s/outside", top);
  test_write(p, "secret");
  CHECK_EQ(symlink("src/a.c", AT("in-link")), 0);
  CHECK_EQ(symlink("src", AT("dir-link")), 0);
  CHECK_EQ(symlink("../outside", AT("out-rel")), 0);
  CHECK_EQ(symlink("/etc/passwd", AT("out-abs")), 0);
  CHECK_EQ(symlink("sub/../../../outside", AT("src/sneaky")), 0);
  CHECK_EQ(symlink("loop2", AT("loop1")), 0);
  CHECK_EQ(symlink("loop1", AT("loop2")), 0);
#undef AT
  free(p);
  int fd = open(ctx, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  CHECK(fd >= 0);

  check_glob(fd, "top.txt", NULL, "top.txt");
  check_glob(fd, "/top.txt", NULL, "top.txt");
  check_glob(fd, "./src/../top.txt", NULL, "top.txt");
  check_glob(fd, ".", NULL, ".");
  check_glob(fd, "src/*.c", NULL, "src/a.c,src/b.c");
  check_glob(fd, "src/?.h", NULL, "src/b.h");
  check_glob(fd, "*/sub/*", NULL, "src/sub/c.c");
  check_glob(fd, "in-link", NULL, "src/a.c");
  check_glob(fd, "dir-link/sub/c.c", NULL, "src/sub/c.c");
  check_glob(fd, "dir-link/[ab].c", NULL, "src/a.c,src/b.c");

  vs_ignore *ig = ignore("*.log\nsrc/b.*\n");
  check_glob(fd, "*", ig, "dir-link,in-link,loop1,loop2,out-abs,out-rel,src,top.txt");
  check_glob(fd, "src/*", ig, "src/a.c,src/sneaky,src/sub");
  char *got = NULL;
  vs_error *err = NULL;
  CHECK_EQ(glob_in(fd, "skip.log", ig, &got, &err), -1);
  CHECK_CONTAINS(err->msg,
                 "file not found in build context or excluded by .dockerignore: skip.log");
  vs_error_free(err);
  vs_dockerignore_free(ig);

  check_glob_fails(fd, "../outside", "forbidden path outside the build context: ../outside");
  check_glob_fails(fd, "src/../../outside", "forbidden path outside the build context");
  check_glob_fails(fd, "out-rel", "the symbolic link out-rel leads outside the build context");
  check_glob_fails(fd, "out-abs",
                   "the symbolic link out-abs leads outside the build context (to /etc/passwd)");
  check_glob_fails(fd, "src/sneaky", "the symbolic link src/sneaky leads outside");
  check_glob(fd, "out-*", NULL, "out-abs,out-rel"); /* the links themselves, as a walk finds them */
  check_glob_fails(fd, "loop1", "too many symbolic links");
  check_glob_fails(fd, "missing", "file not found in build context");
  check_glob_fails(fd, "src/*.none", "file not found in build context");

  close(fd);
  vs_error *e = NULL;
  CHECK_EQ(vs_rm_rf(top, &e), 0);
  free(ctx);
  free(top);
}

/* Parse text and apply every instruction after the first (a FROM) to image. */
static int apply_all(const char *text, json_t *image, vs_build_stage *st, vs_error **err) {
  vs_dockerfile df;
  if (parse(text, &df, err) < 0)
    return -1;
  st->escape = df.escape;
  int r = 0;
  for (size_t i = 1; i < df.n && r == 0; i++)
    r = vs_build_apply_config(image, st, &df.instrs[i], err);
  vs_dockerfile_clear(&df);
  return r;
}

static char *dump(json_t *v) {
  return json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
}

TEST(config_instructions) {
  json_t *image = json_pack("{s:{s:[s], s:[s]}}", "config", "Env", "PATH=/bin", "Cmd", "sh");
  json_t *bargs = json_pack("{s:s}", "V", "given");
  vs_build_stage st = {.build_args = bargs};
  vs_error *err = NULL;
  const char *text = "FROM busybox\n"
                     "ARG V=default\nARG D=${V}-x\nARG NODEF\n"
                     "ENV HOME=/home/u GREETING=\"hello $V\"\n"
                     "ENV LEG value ${HOME}\n"
                     "LABEL a=\"1 2\" b=${D}\n"
                     "WORKDIR /app\nWORKDIR sub/../lib\nWORKDIR ${HOME}/w\n"
                     "USER ${NODEF:-1000}:1000\n"
                     "ENTRYPOINT [\"/bin/ep\"]\n"
                     "SHELL [\"/bin/ash\", \"-eo\", \"pipefail\", \"-c\"]\n"
                     "CMD echo $HOME\n"
                     "EXPOSE 80 53/udp 8000-8001/TCP\n"
                     "VOLUME /data \"/with space\"\n"
                     "STOPSIGNAL SIGINT\n"
                     "HEALTHCHECK --interval=1m30s --retries=3 CMD wget -q localhost\n"
                     "onbuild run echo child\n"
                     "MAINTAINER someone\n";
  if (apply_all(text, image, &st, &err) < 0)
    TAP_FAIL("apply: %s", err->msg);
  json_t *c = json_object_get(image, "config");
  char *s = dump(json_object_get(c, "Env"));
  CHECK_STREQ(s, "[\"PATH=/bin\",\"HOME=/home/u\",\"GREETING=hello given\",\"LEG=value /home/u\"]");
  free(s);
  s = dump(st.args);
  CHECK_STREQ(s, "{\"D\":\"given-x\",\"NODEF\":null,\"V\":\"given\"}");
  free(s);
  s = dump(json_object_get(c, "Labels"));
  CHECK_STREQ(s, "{\"a\":\"1 2\",\"b\":\"given-x\"}");
  free(s);
  CHECK_STREQ(json_string_value(json_object_get(c, "WorkingDir")), "/home/u/w");
  CHECK_STREQ(json_string_value(json_object_get(c, "User")), "1000:1000");
  s = dump(json_object_get(c, "Entrypoint"));
  CHECK_STREQ(s, "[\"/bin/ep\"]");
  free(s);
  s = dump(json_object_get(c, "Cmd"));
  CHECK_STREQ(s, "[\"/bin/ash\",\"-eo\",\"pipefail\",\"-c\",\"echo $HOME\"]");
  free(s);
  s = dump(json_object_get(c, "ExposedPorts"));
  CHECK_STREQ(s, "{\"53/udp\":{},\"80/tcp\":{},\"8000/tcp\":{},\"8001/tcp\":{}}");
  free(s);
  s = dump(json_object_get(c, "Volumes"));
  CHECK_STREQ(s, "{\"/data\":{},\"/with space\":{}}");
  free(s);
  CHECK_STREQ(json_string_value(json_object_get(c, "StopSignal")), "SIGINT");
  s = dump(json_object_get(c, "Healthcheck"));
  CHECK_STREQ(
      s, "{\"Interval\":90000000000,\"Retries\":3,\"Test\":[\"CMD-SHELL\",\"wget -q localhost\"]}");
  free(s);
  s = dump(json_object_get(c, "OnBuild"));
  CHECK_STREQ(s, "[\"RUN echo child\"]");
  free(s);
  CHECK_STREQ(json_string_value(json_object_get(image, "author")), "someone");
  json_decref(image);
  json_decref(st.args);

  /* an ENTRYPOINT resets an inherited CMD, not one of this build */
  image = json_pack("{s:{s:[s]}}", "config", "Cmd", "sh");
  st = (vs_build_stage){.build_args = bargs};
  CHECK_EQ(apply_all("FROM a\nENTRYPOINT [\"x\"]\n", image, &st, &err), 0);
  CHECK(json_is_null(json_object_get(json_object_get(image, "config"), "Cmd")));
  json_decref(image);
  json_decref(st.args);
  json_decref(bargs);

  static const struct {
    const char *text, *want;
  } bad[] = {
      {"FROM a\nEXPOSE 70000\n", "invalid containerPort: 70000"},
      {"FROM a\nEXPOSE 80/xyz\n", "invalid proto: xyz"},
      {"FROM a\nVOLUME \"\"\n", "VOLUME specified can not be an empty string"},
      {"FROM a\nSTOPSIGNAL \"SIG INT\"\n", "invalid signal"},
      {"FROM a\nHEALTHCHECK --interval=5 CMD true\n", "missing unit in duration"},
      {"FROM a\nHEALTHCHECK --bogus=1 CMD true\n", "HEALTHCHECK: unknown flag: --bogus"},
      {"FROM a\nENV --x=1 A=1\n", "ENV: unknown flag: --x"},
      {"FROM a\nUSER ${U:?needs a user}\n", "U: needs a user"},
  };
  for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
    image = json_object();
    st = (vs_build_stage){0};
    err = NULL;
    CHECK_EQ(apply_all(bad[i].text, image, &st, &err), -1);
    CHECK_CONTAINS(err->msg, bad[i].want);
    vs_error_free(err);
    json_decref(image);
    json_decref(st.args);
  }
  int64_t ns;
  CHECK_EQ(vs_build_parse_duration("1h2m3.5s", &ns, &err), 0);
  CHECK_EQ(ns, 3723500000000LL);
  CHECK_EQ(vs_build_parse_duration("500ms", &ns, &err), 0);
  CHECK_EQ(ns, 500000000);
}

static int open_dir(const char *path) {
  int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0)
    TAP_FAIL("open %s", path);
  return fd;
}

static void check_file(const char *path, const char *want, mode_t mode, uid_t uid) {
  char *data = NULL;
  size_t len = 0;
  vs_error *err = NULL;
  if (vs_read_file(path, 1 << 20, &data, &len, &err) < 0)
    TAP_FAIL("%s: %s", path, err->msg);
  CHECK_STREQ(data, want);
  free(data);
  struct stat st;
  CHECK_EQ(lstat(path, &st), 0);
  CHECK_EQ(st.st_mode & 07777, mode);
  CHECK_EQ(st.st_uid, uid);
}

TEST(copy_into_a_root) {
  if (geteuid() != 0)
    SKIP("COPY sets owners: needs root");
  char *top = test_tmpdir();
  char *ctx = vs_asprintf("%s/ctx", top), *root = vs_asprintf("%s/root", top), *p = NULL;
  CHECK_EQ(mkdir(ctx, 0700), 0);
  CHECK_EQ(mkdir(root, 0755), 0);
#define IN(dir, rel) (free(p), p = vs_asprintf("%s/%s", dir, rel))
  test_write(IN(ctx, "a.txt"), "A");
  CHECK_EQ(chmod(p, 0640), 0);
  test_write(IN(ctx, "b.txt"), "B");
  CHECK_EQ(mkdir(IN(ctx, "dir"), 0750), 0);
  CHECK_EQ(mkdir(IN(ctx, "dir/sub"), 0755), 0);
  test_write(IN(ctx, "dir/sub/c.txt"), "C");
  CHECK_EQ(symlink("../a.txt", IN(ctx, "dir/link")), 0);
  /* the image's own links lead nowhere outside its root */
  CHECK_EQ(symlink("/", IN(root, "escape")), 0);
  CHECK_EQ(symlink("../../..", IN(root, "up")), 0);
  CHECK_EQ(mkdir(IN(root, "existing"), 0711), 0);
  int cfd = open_dir(ctx), rfd = open_dir(root);
  vs_error *err = NULL;
  vs_copy_opts own = {.uid = 0, .gid = 0, .mode = -1};

  char *one[] = {"a.txt"};
  CHECK_EQ(vs_build_copy(cfd, one, 1, false, rfd, "/dst/", "/", &own, &err), 0);
  check_file(IN(root, "dst/a.txt"), "A", 0640, 0);
  CHECK_EQ(vs_build_copy(cfd, one, 1, false, rfd, "renamed", "/w", &own, &err), 0);
  check_file(IN(root, "w/renamed"), "A", 0640, 0);
  CHECK_EQ(vs_build_copy(cfd, one, 1, false, rfd, "/existing", "/", &own, &err), 0);
  check_file(IN(root, "existing/a.txt"), "A", 0640, 0);

  vs_copy_opts chown = {.uid = 1000, .gid = 1000, .mode = 0600};
  char *dir[] = {"dir"};
  CHECK_EQ(vs_build_copy(cfd, dir, 1, false, rfd, "/d", "/", &chown, &err), 0);
  check_file(IN(root, "d/sub/c.txt"), "C", 0600, 1000);
  char link[64] = {0};
  CHECK(readlink(IN(root, "d/link"), link, sizeof(link) - 1) > 0);
  CHECK_STREQ(link, "../a.txt");
  struct stat st;
  CHECK_EQ(stat(IN(root, "d"), &st), 0);
  CHECK_EQ(st.st_uid, 1000);

  /* "." into an existing "/" keeps the root directory's mode */
  char *all[] = {"."};
  CHECK_EQ(vs_build_copy(cfd, all, 1, false, rfd, "/", "/", &own, &err), 0);
  check_file(IN(root, "b.txt"), "B", 0644, 0);
  CHECK_EQ(stat(root, &st), 0);
  CHECK_EQ(st.st_mode & 07777, 0755);

  /* through the image's links: still inside the root */
  CHECK_EQ(vs_build_copy(cfd, one, 1, false, rfd, "/escape/etc/", "/", &own, &err), 0);
  check_file(IN(root, "etc/a.txt"), "A", 0640, 0);
  CHECK_EQ(vs_build_copy(cfd, one, 1, false, rfd, "/up/x/", "/", &own, &err), 0);
  check_file(IN(root, "x/a.txt"), "A", 0640, 0);
  CHECK_EQ(access(IN(top, "x"), F_OK), -1);

  char *two[] = {"a.txt", "b.txt"};
  CHECK_EQ(vs_build_copy(cfd, two, 2, false, rfd, "/notadir", "/", &own, &err), -1);
  CHECK_CONTAINS(err->msg, "the destination must be a directory and end with a /");
  vs_error_free(err);
  err = NULL;
  CHECK_EQ(vs_build_copy(cfd, two, 2, false, rfd, "/many/", "/", &own, &err), 0);
  check_file(IN(root, "many/b.txt"), "B", 0644, 0);
  CHECK_EQ(vs_build_copy(cfd, one, 1, false, rfd, "/many", "/", &own, &err), 0); /* existing dir */
#undef IN
  close(cfd);
  close(rfd);
  CHECK_EQ(vs_rm_rf(top, &err), 0);
  free(p);
  free(ctx);
  free(root);
  free(top);
}

int main(void) { return tap_run(); }
