/* image module: digests, references, manifests, and the layer applier against hostile tars. */
#include "image/image.h"
#include "tap.h"
#include "testutil.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <zlib.h>

/* ------------------------------------------------------------ tar building */

typedef struct tarbuf {
  struct archive *a;
  char *mem;
  size_t cap, used;
} tarbuf;

static void tar_begin(tarbuf *t, const char *filter) {
  t->cap = 64 << 20;
  t->mem = vs_malloc0(t->cap);
  t->used = 0;
  t->a = archive_write_new();
  archive_write_set_format_pax_restricted(t->a);
  if (filter && !strcmp(filter, "gzip"))
    archive_write_add_filter_gzip(t->a);
  else if (filter && !strcmp(filter, "zstd"))
    archive_write_add_filter_zstd(t->a);
  archive_write_set_bytes_in_last_block(t->a, 1);
  if (archive_write_open_memory(t->a, t->mem, t->cap, &t->used) != ARCHIVE_OK)
    abort();
}

static void tar_add(tarbuf *t, const char *path, mode_t type, const char *data, size_t len,
                    const char *link) {
  struct archive_entry *e = archive_entry_new();
  archive_entry_set_pathname(e, path);
  archive_entry_set_filetype(e, type);
  archive_entry_set_perm(e, type == AE_IFDIR ? 0755 : 0644);
  archive_entry_set_mtime(e, 1600000000, 0);
  if (type == AE_IFREG)
    archive_entry_set_size(e, (la_int64_t)len);
  if (type == AE_IFLNK)
    archive_entry_set_symlink(e, link);
  if (link && type == AE_IFREG && !data) {
    archive_entry_set_hardlink(e, link);
    archive_entry_set_size(e, 0);
  }
  if (type == AE_IFCHR)
    archive_entry_set_rdev(e, makedev(1, 3));
  archive_write_header(t->a, e);
  if (data && len)
    archive_write_data(t->a, data, len);
  archive_entry_free(e);
}

static void tar_file(tarbuf *t, const char *path, const char *text) {
  tar_add(t, path, AE_IFREG, text, strlen(text), NULL);
}

/* Finish the tar, write it to a file and return an fd positioned at its start. */
static int tar_end(tarbuf *t, const char *dir) {
  archive_write_close(t->a);
  archive_write_free(t->a);
  _cleanup_free_ char *p = vs_asprintf("%s/layer.tar", dir);
  int fd = open(p, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0 || write(fd, t->mem, t->used) != (ssize_t)t->used)
    abort();
  lseek(fd, 0, SEEK_SET);
  unlink(p);
  free(t->mem);
  return fd;
}

typedef struct sandbox {
  char *top;     /* test dir */
  char *root;    /* top/root: the layer directory */
  char *outside; /* top/outside: must stay empty */
  int rootfd;
} sandbox;

static void sandbox_init(sandbox *s) {
  s->top = test_tmpdir();
  s->root = vs_asprintf("%s/root", s->top);
  s->outside = vs_asprintf("%s/outside", s->top);
  mkdir(s->root, 0755);
  mkdir(s->outside, 0755);
  s->rootfd = open(s->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
}

static bool dir_empty(const char *p) {
  _cleanup_free_ char *cmd = vs_asprintf("test -z \"$(ls -A '%s')\"", p);
  return system(cmd) == 0;
}

static void sandbox_done(sandbox *s) {
  close(s->rootfd);
  vs_rm_rf(s->top, NULL);
  free(s->top);
  free(s->root);
  free(s->outside);
}

static int apply(sandbox *s, tarbuf *t, const vs_layer_limits *lim, char *diff, vs_error **err) {
  _cleanup_close_ int fd = tar_end(t, s->top);
  return vs_layer_apply(fd, s->rootfd, lim, diff, err);
}

static char *in_root(sandbox *s, const char *p) { return vs_asprintf("%s/%s", s->root, p); }

/* ------------------------------------------------------------ digests and references */

TEST(digest_validation) {
  CHECK(vs_digest_valid("sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
  CHECK(
      !vs_digest_valid("sha256:E3B0C44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
  CHECK(!vs_digest_valid("sha256:e3b0"));
  CHECK(
      !vs_digest_valid("sha512:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
  CHECK(!vs_digest_valid(
      "sha256:../../../../etc/passwd/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"));
  char d[VS_DIGEST_MAX];
  vs_digest_buffer("", 0, d);
  CHECK_STREQ(d, "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST(reference_normalisation) {
  vs_image_ref r;
  CHECK(vs_image_ref_parse("busybox", &r, NULL) == 0);
  _cleanup_free_ char *s1 = vs_image_ref_string(&r);
  CHECK_STREQ(s1, "docker.io/library/busybox:latest");
  vs_image_ref_clear(&r);
  CHECK(vs_image_ref_parse("localhost:5000/team/app:v1.2", &r, NULL) == 0);
  CHECK_STREQ(r.registry, "localhost:5000");
  CHECK_STREQ(r.repository, "team/app");
  CHECK_STREQ(r.tag, "v1.2");
  vs_image_ref_clear(&r);
  CHECK(vs_image_ref_parse(
            "user/app@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", &r,
            NULL) == 0);
  CHECK_STREQ(r.repository, "user/app");
  CHECK(r.tag == NULL);
  CHECK(r.digest != NULL);
  vs_image_ref_clear(&r);
  CHECK(vs_image_ref_parse("index.docker.io/library/debian:12", &r, NULL) == 0);
  CHECK_STREQ(r.registry, "docker.io");
  vs_image_ref_clear(&r);
  _cleanup_free_ char *fam = vs_image_name_familiar("docker.io/library/busybox:latest");
  CHECK_STREQ(fam, "busybox:latest");
}

TEST(reference_errors_name_the_problem) {
  vs_image_ref r;
  _cleanup_error_ vs_error *e = NULL;
  CHECK(vs_image_ref_parse("Busybox", &r, &e) < 0);
  CHECK_CONTAINS(e->msg, "lowercase");
  vs_error_free(e);
  e = NULL;
  CHECK(vs_image_ref_parse("busybox:bad/tag!", &r, &e) < 0);
  vs_error_free(e);
  e = NULL;
  CHECK(vs_image_ref_parse("busybox:-x", &r, &e) < 0);
  CHECK_CONTAINS(e->msg, "bad tag");
  vs_error_free(e);
  e = NULL;
  CHECK(vs_image_ref_parse("a/b@sha256:1234", &r, &e) < 0);
  CHECK_CONTAINS(e->msg, "digest");
  vs_error_free(e);
  e = NULL;
  CHECK(vs_image_ref_parse("", &r, &e) < 0);
  vs_error_free(e);
  e = NULL;
  CHECK(vs_image_ref_parse("a//b", &r, &e) < 0);
}

/* ------------------------------------------------------------ manifests */

#define D1 "sha256:1111111111111111111111111111111111111111111111111111111111111111"
#define D2 "sha256:2222222222222222222222222222222222222222222222222222222222222222"

TEST(manifest_parses_oci_and_docker) {
  const char *m = "{\"schemaVersion\":2,\"mediaType\":\"" VS_MT_DOCKER_MANIFEST "\","
                  "\"config\":{\"mediaType\":\"" VS_MT_DOCKER_CONFIG "\",\"digest\":\"" D1
                  "\",\"size\":10},\"layers\":[{\"mediaType\":\"" VS_MT_DOCKER_LAYER_GZIP
                  "\",\"digest\":\"" D2 "\",\"size\":20}]}";
  vs_manifest man;
  _cleanup_error_ vs_error *e = NULL;
  CHECK(vs_manifest_parse(m, strlen(m), NULL, &man, &e) == 0);
  CHECK(man.kind == VS_MANIFEST_IMAGE);
  CHECK_EQ(man.n_layers, 1);
  CHECK_STREQ(man.layers[0].digest, D2);
  CHECK_EQ(man.layers[0].size, 20);
  vs_manifest_clear(&man);
}

TEST(manifest_errors) {
  static const char *const bad[] = {
      "{\"schemaVersion\":2,\"config\":{",
      "[]",
      "{\"schemaVersion\":1}",
      "{\"schemaVersion\":2,\"mediaType\":\"" VS_MT_OCI_MANIFEST "\"}",
      "{\"schemaVersion\":2,\"mediaType\":\"" VS_MT_OCI_MANIFEST
      "\",\"config\":{\"digest\":\"md5:x\",\"size\":1},\"layers\":[]}",
      "{\"schemaVersion\":2,\"mediaType\":\"" VS_MT_OCI_MANIFEST "\",\"config\":{\"digest\":\"" D1
      "\",\"size\":-1},\"layers\":[]}",
      "{\"schemaVersion\":2,\"mediaType\":\"" VS_MT_OCI_MANIFEST "\",\"config\":{\"digest\":\"" D1
      "\",\"size\":1},\"layers\":[{\"mediaType\":\"text/html\",\"digest\":\"" D2 "\",\"size\":1}]}",
      "{\"schemaVersion\":2,\"mediaType\":\"application/x-evil\"}",
  };
  static const char *const expect[] = {"malformed",
                                       "not a JSON object",
                                       "schemaVersion",
                                       "config",
                                       "digest",
                                       "size",
                                       "unsupported media type",
                                       "unsupported manifest media type"};
  for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
    vs_manifest man;
    vs_error *e = NULL;
    CHECK(vs_manifest_parse(bad[i], strlen(bad[i]), NULL, &man, &e) < 0);
    CHECK_CONTAINS(e->msg, expect[i]);
    vs_error_free(e);
  }
}

TEST(index_platform_selection) {
  const char *m = "{\"schemaVersion\":2,\"mediaType\":\"" VS_MT_OCI_INDEX "\",\"manifests\":["
                  "{\"mediaType\":\"" VS_MT_OCI_MANIFEST "\",\"digest\":\"" D1 "\",\"size\":1,"
                  "\"platform\":{\"os\":\"linux\",\"architecture\":\"riscv64\"}},"
                  "{\"mediaType\":\"" VS_MT_OCI_MANIFEST "\",\"digest\":\"" D2 "\",\"size\":1,"
                  "\"platform\":{\"os\":\"linux\",\"architecture\":\"amd64\"}}]}";
  vs_manifest idx;
  CHECK(vs_manifest_parse(m, strlen(m), NULL, &idx, NULL) == 0);
  CHECK(idx.kind == VS_MANIFEST_INDEX);
  const vs_descriptor *d = vs_index_select(&idx, "linux/amd64", NULL);
  CHECK(d && !strcmp(d->digest, D2));
  d = vs_index_select(&idx, "linux/riscv64", NULL);
  CHECK(d && !strcmp(d->digest, D1));
  _cleanup_error_ vs_error *e = NULL;
  CHECK(vs_index_select(&idx, "linux/arm64", &e) == NULL);
  CHECK_CONTAINS(e->msg, "linux/arm64");
  vs_manifest_clear(&idx);
}

TEST(config_requires_diff_ids) {
  const char *c = "{\"architecture\":\"amd64\",\"os\":\"linux\",\"rootfs\":{\"diff_ids\":[\"" D1
                  "\"]},\"config\":{\"Cmd\":[\"sh\"]}}";
  vs_image_config cfg;
  CHECK(vs_image_config_parse(c, strlen(c), &cfg, NULL) == 0);
  CHECK_EQ(cfg.n_diff_ids, 1);
  vs_image_config_clear(&cfg);
  _cleanup_error_ vs_error *e = NULL;
  const char *bad = "{\"rootfs\":{\"diff_ids\":[\"nope\"]}}";
  CHECK(vs_image_config_parse(bad, strlen(bad), &cfg, &e) < 0);
  CHECK_CONTAINS(e->msg, "diff_id 0");
}

/* ------------------------------------------------------------ layers */

static const char *const filters[] = {NULL, "gzip", "zstd"};

TEST(layer_files_links_and_diff_id) {
  for (size_t f = 0; f < ARRAY_SIZE(filters); f++) {
    sandbox s;
    sandbox_init(&s);
    tarbuf t;
    tar_begin(&t, filters[f]);
    tar_add(&t, "etc", AE_IFDIR, NULL, 0, NULL);
    tar_file(&t, "etc/hello", "hello\n");
    tar_add(&t, "etc/hard", AE_IFREG, NULL, 0, "etc/hello");
    tar_add(&t, "etc/soft", AE_IFLNK, NULL, 0, "hello");
    tar_add(&t, "./usr/bin/../x", AE_IFREG, "", 0, NULL);
    _cleanup_error_ vs_error *e = NULL;
    char diff[VS_DIGEST_MAX];
    /* "usr/bin/../x" contains "..": refused */
    CHECK(apply(&s, &t, NULL, diff, &e) < 0);
    CHECK_CONTAINS(e->msg, "..");
    sandbox_done(&s);

    sandbox_init(&s);
    tar_begin(&t, filters[f]);
    tar_add(&t, "etc", AE_IFDIR, NULL, 0, NULL);
    tar_file(&t, "etc/hello", "hello\n");
    tar_add(&t, "etc/hard", AE_IFREG, NULL, 0, "etc/hello");
    tar_add(&t, "etc/soft", AE_IFLNK, NULL, 0, "hello");
    tar_file(&t, "deep/implicit/dir/file", "x");
    CHECK(apply(&s, &t, NULL, diff, NULL) == 0);
    CHECK(vs_digest_valid(diff));
    _cleanup_free_ char *h = in_root(&s, "etc/hello");
    _cleanup_free_ char *hard = in_root(&s, "etc/hard");
    _cleanup_free_ char *soft = in_root(&s, "etc/soft");
    struct stat a, b;
    CHECK(stat(h, &a) == 0 && stat(hard, &b) == 0);
    CHECK(a.st_ino == b.st_ino);
    CHECK_EQ(a.st_mtime, 1600000000);
    char target[64] = {0};
    CHECK(readlink(soft, target, sizeof(target) - 1) == 5);
    CHECK_STREQ(target, "hello");
    sandbox_done(&s);
  }
}

TEST(layer_diff_id_is_sha_of_uncompressed_tar) {
  sandbox s;
  sandbox_init(&s);
  tarbuf t;
  tar_begin(&t, NULL);
  tar_file(&t, "a", "aaa");
  archive_write_close(t.a);
  char want[VS_DIGEST_MAX];
  vs_digest_buffer(t.mem, t.used, want);
  _cleanup_close_ int fd = tar_end(&t, s.top);
  char got[VS_DIGEST_MAX];
  CHECK(vs_layer_apply(fd, s.rootfd, NULL, got, NULL) == 0);
  CHECK_STREQ(got, want);
  sandbox_done(&s);
}

TEST(whiteouts_become_overlay_whiteouts) {
  if (geteuid() != 0)
    return; /* mknod of char 0/0 and trusted.* xattrs need root */
  sandbox s;
  sandbox_init(&s);
  tarbuf t;
  tar_begin(&t, "gzip");
  tar_add(&t, "etc", AE_IFDIR, NULL, 0, NULL);
  tar_file(&t, "etc/.wh.passwd", "");
  tar_add(&t, "data", AE_IFDIR, NULL, 0, NULL);
  tar_file(&t, "data/.wh..wh..opq", "");
  tar_file(&t, "data/new", "n");
  CHECK(apply(&s, &t, NULL, NULL, NULL) == 0);
  _cleanup_free_ char *wh = in_root(&s, "etc/passwd");
  struct stat st;
  CHECK(lstat(wh, &st) == 0);
  CHECK(S_ISCHR(st.st_mode));
  CHECK(st.st_rdev == makedev(0, 0));
  _cleanup_free_ char *data = in_root(&s, "data");
  char v[8] = {0};
  CHECK(getxattr(data, "trusted.overlay.opaque", v, sizeof(v)) == 1);
  CHECK(v[0] == 'y');
  _cleanup_free_ char *marker = in_root(&s, "data/.wh..wh..opq");
  CHECK(!test_exists(marker));
  sandbox_done(&s);
}

TEST(traversal_and_absolute_paths_stay_inside) {
  sandbox s;
  sandbox_init(&s);
  tarbuf t;
  tar_begin(&t, NULL);
  tar_file(&t, "../outside/pwned", "x");
  _cleanup_error_ vs_error *e = NULL;
  CHECK(apply(&s, &t, NULL, NULL, &e) < 0);
  CHECK_CONTAINS(e->msg, "leave the layer");
  CHECK(dir_empty(s.outside));
  sandbox_done(&s);

  sandbox_init(&s);
  tar_begin(&t, NULL);
  _cleanup_free_ char *abs = vs_asprintf("%s/pwned", s.outside);
  tar_file(&t, abs, "x");
  CHECK(apply(&s, &t, NULL, NULL, NULL) == 0);
  CHECK(dir_empty(s.outside));
  _cleanup_free_ char *inside = vs_asprintf("%s%s", s.root, abs);
  CHECK(test_exists(inside)); /* an absolute name lands below the layer root */
  sandbox_done(&s);
}

TEST(symlink_then_write_stays_inside) {
  sandbox s;
  sandbox_init(&s);
  tarbuf t;
  /* absolute symlink to the outside dir: resolved inside the root, where it does not exist */
  tar_begin(&t, NULL);
  tar_add(&t, "evil", AE_IFLNK, NULL, 0, s.outside);
  tar_file(&t, "evil/pwned", "x");
  _cleanup_error_ vs_error *e = NULL;
  CHECK(apply(&s, &t, NULL, NULL, &e) < 0);
  CHECK(dir_empty(s.outside));
  sandbox_done(&s);

  sandbox_init(&s);
  tar_begin(&t, NULL);
  tar_add(&t, "rel", AE_IFLNK, NULL, 0, "../../../../../../../");
  tar_file(&t, "rel/pwned2", "x");
  tar_add(&t, "file-link", AE_IFLNK, NULL, 0, "../outside/target");
  tar_file(&t, "file-link", "overwrite");
  CHECK(apply(&s, &t, NULL, NULL, NULL) == 0);
  CHECK(dir_empty(s.outside));
  _cleanup_free_ char *p2 = in_root(&s, "pwned2");
  CHECK(test_exists(p2)); /* "rel/" is the layer root itself */
  _cleanup_free_ char *fl = in_root(&s, "file-link");
  struct stat st;
  CHECK(lstat(fl, &st) == 0 && S_ISREG(st.st_mode)); /* the link was replaced, not followed */
  sandbox_done(&s);
}

TEST(hardlink_escape_refused) {
  sandbox s;
  sandbox_init(&s);
  _cleanup_free_ char *secret = vs_asprintf("%s/secret", s.outside);
  test_write(secret, "secret");
  tarbuf t;
  tar_begin(&t, NULL);
  tar_add(&t, "steal", AE_IFREG, NULL, 0, "../outside/secret");
  _cleanup_error_ vs_error *e = NULL;
  CHECK(apply(&s, &t, NULL, NULL, &e) < 0);
  vs_error_free(e);
  e = NULL;
  /* through a symlink to the outside: the target resolves inside the root, where it is absent */
  tar_begin(&t, NULL);
  tar_add(&t, "out", AE_IFLNK, NULL, 0, s.outside);
  tar_add(&t, "steal2", AE_IFREG, NULL, 0, "out/secret");
  CHECK(apply(&s, &t, NULL, NULL, &e) < 0);
  _cleanup_free_ char *st2 = in_root(&s, "steal2");
  CHECK(!test_exists(st2));
  struct stat st;
  CHECK(stat(secret, &st) == 0 && st.st_nlink == 1);
  sandbox_done(&s);
}

/* docker cp's plain archives: no whiteouts, hostile names refused with a message, nothing
 * written through a symbolic link, owners and directory replacement as asked. */
TEST(plain_archives_for_cp) {
  sandbox s;
  sandbox_init(&s);
  vs_layer_limits plain = {.plain = true, .owner_root = true};
  tarbuf t;
  tar_begin(&t, NULL);
  tar_add(&t, "d", AE_IFDIR, NULL, 0, NULL);
  tar_file(&t, "d/.wh.kept", "a plain file");
  tar_file(&t, "d/f", "data");
  CHECK(apply(&s, &t, &plain, NULL, NULL) == 0);
  _cleanup_free_ char *wh = in_root(&s, "d/.wh.kept");
  struct stat st;
  CHECK(lstat(wh, &st) == 0 && S_ISREG(st.st_mode));
  static const char *const hostile[][3] = {
      {"../x", NULL, "\"..\""},
      {"/abs", NULL, "absolute name"},
      {"link/x", "/", "symbolic link"},
      {"d/../../x", NULL, "\"..\""},
  };
  for (size_t i = 0; i < ARRAY_SIZE(hostile); i++) {
    tar_begin(&t, NULL);
    if (hostile[i][1])
      tar_add(&t, "link", AE_IFLNK, NULL, 0, hostile[i][1]);
    tar_file(&t, hostile[i][0], "x");
    _cleanup_error_ vs_error *e = NULL;
    CHECK(apply(&s, &t, &plain, NULL, &e) < 0);
    CHECK(e && strstr(e->msg, hostile[i][2]));
  }
  /* a link the container already had is not followed either */
  _cleanup_free_ char *planted = in_root(&s, "planted");
  CHECK(symlink(s.outside, planted) == 0);
  tar_begin(&t, NULL);
  tar_file(&t, "planted/x", "x");
  _cleanup_error_ vs_error *e = NULL;
  CHECK(apply(&s, &t, &plain, NULL, &e) < 0);
  CHECK(dir_empty(s.outside));
  /* noOverwriteDirNonDir */
  vs_layer_limits keep = {.plain = true, .no_overwrite_dir_nondir = true};
  tar_begin(&t, NULL);
  tar_file(&t, "d", "not a directory");
  vs_error *e2 = NULL;
  CHECK(apply(&s, &t, &keep, NULL, &e2) < 0);
  CHECK(e2 && strstr(e2->msg, "cannot overwrite directory"));
  vs_error_free(e2);
  tar_begin(&t, NULL);
  tar_file(&t, "d", "now a file");
  CHECK(apply(&s, &t, &plain, NULL, NULL) == 0);
  _cleanup_free_ char *d = in_root(&s, "d");
  CHECK(lstat(d, &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == 0);
  sandbox_done(&s);
}

/* docker commit --change: Dockerfile instructions on a config, errors naming what is wrong. */
TEST(config_changes) {
  _cleanup_json_ json_t *cfg =
      json_pack("{s:[s], s:[s,s]}", "Cmd", "sh", "Env", "PATH=/bin", "A=0");
  _cleanup_json_ json_t *ok =
      json_pack("[s,s,s,s,s,s,s,s]", "ENV A=1 B=\"x y\" C='$no' D=a\\ b", "expose 80 53/UDP 7-8",
                "LABEL k=v\nUSER u:g", "WORKDIR /a\nWORKDIR b", "VOLUME [\"/v\"]",
                "ENTRYPOINT [\"/e\"]", "STOPSIGNAL 9", "# a comment\nONBUILD RUN x");
  CHECK(vs_config_apply_changes(cfg, ok, NULL) == 0);
  _cleanup_free_ char *env = json_dumps(json_object_get(cfg, "Env"), JSON_COMPACT);
  CHECK_STREQ(env, "[\"PATH=/bin\",\"A=1\",\"B=x y\",\"C=$no\",\"D=a b\"]");
  _cleanup_free_ char *ports = json_dumps(json_object_get(cfg, "ExposedPorts"), JSON_SORT_KEYS);
  CHECK_STREQ(ports, "{\"53/udp\": {}, \"7/tcp\": {}, \"8/tcp\": {}, \"80/tcp\": {}}");
  CHECK_STREQ(json_string_value(json_object_get(cfg, "WorkingDir")), "/a/b");
  CHECK_STREQ(json_string_value(json_object_get(cfg, "User")), "u:g");
  CHECK(json_is_null(json_object_get(cfg, "Cmd"))); /* the entrypoint dropped the image's cmd */
  CHECK(json_object_get(json_object_get(cfg, "Volumes"), "/v") != NULL);
  /* variables take the Env as it is when the instruction comes (all words of one ENV the Env
   * from before it), as dockerd's commit; single quotes keep a '$' */
  _cleanup_json_ json_t *vars = json_pack("[s,s,s]", "ENV G=$A H=${UNSET:-d} I='$A' A=2 J=${A}",
                                          "LABEL l=\"${A}\"x", "USER $A");
  CHECK(vs_config_apply_changes(cfg, vars, NULL) == 0);
  _cleanup_free_ char *env2 = json_dumps(json_object_get(cfg, "Env"), JSON_COMPACT);
  CHECK_STREQ(env2, "[\"PATH=/bin\",\"A=2\",\"B=x y\",\"C=$no\",\"D=a b\",\"G=1\",\"H=d\","
                    "\"I=$A\",\"J=1\"]");
  CHECK_STREQ(json_string_value(json_object_get(json_object_get(cfg, "Labels"), "l")), "2x");
  CHECK_STREQ(json_string_value(json_object_get(cfg, "User")), "2");
  static const char *const bad[][2] = {
      {"RUN x", "RUN is not a valid change command"},
      {"EXPOSE 0", "invalid port"},
      {"EXPOSE 1/icmp", "invalid proto"},
      {"ENV A=\"open", "unterminated"},
      {"ENV =x", "not KEY=VALUE"},
      {"USER a b", "exactly one"},
      {"ONBUILD ONBUILD x", "isn't allowed"},
      {"VOLUME [\"\"]", "empty string"},
      {"WORKDIR ${NOPE:?no dir}", "no dir"},
  };
  _cleanup_json_ json_t *hc = json_pack(
      "[s]",
      "HEALTHCHECK --interval=1m30s --timeout=500ms --retries=3 CMD [\"/bin/check\", \"-q\"]");
  CHECK(vs_config_apply_changes(cfg, hc, NULL) == 0);
  _cleanup_free_ char *h =
      json_dumps(json_object_get(cfg, "Healthcheck"), JSON_SORT_KEYS | JSON_COMPACT);
  CHECK_STREQ(h, "{\"Interval\":90000000000,\"Retries\":3,\"Test\":[\"CMD\",\"/bin/check\","
                 "\"-q\"],\"Timeout\":500000000}");
  _cleanup_json_ json_t *shell = json_pack("[s]", "healthcheck cmd curl -f http://x/ || exit 1");
  CHECK(vs_config_apply_changes(cfg, shell, NULL) == 0);
  _cleanup_free_ char *h2 = json_dumps(json_object_get(cfg, "Healthcheck"), JSON_COMPACT);
  CHECK_STREQ(h2, "{\"Test\":[\"CMD-SHELL\",\"curl -f http://x/ || exit 1\"]}");
  static const char *const bad_hc[][2] = {
      {"HEALTHCHECK --interval=5 CMD x", "missing unit"},
      {"HEALTHCHECK --interval=1us CMD x", "less than 1ms"},
      {"HEALTHCHECK --bogus=1 CMD x", "unknown flag"},
      {"HEALTHCHECK RUN x", "try CMD"},
      {"HEALTHCHECK NONE x", "no arguments"},
  };
  for (size_t i = 0; i < ARRAY_SIZE(bad_hc); i++) {
    _cleanup_json_ json_t *one = json_pack("[s]", bad_hc[i][0]);
    _cleanup_error_ vs_error *e = NULL;
    CHECK(vs_config_apply_changes(cfg, one, &e) < 0);
    CHECK(e && strstr(e->msg, bad_hc[i][1]));
  }
  for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
    _cleanup_json_ json_t *one = json_pack("[s]", bad[i][0]);
    _cleanup_error_ vs_error *e = NULL;
    CHECK(vs_config_apply_changes(cfg, one, &e) < 0);
    CHECK(e && strstr(e->msg, bad[i][1]));
  }
}

TEST(device_nodes_only_when_allowed) {
  sandbox s;
  sandbox_init(&s);
  tarbuf t;
  tar_begin(&t, NULL);
  tar_add(&t, "null", AE_IFCHR, NULL, 0, NULL);
  vs_layer_limits lim = {.allow_devices = false};
  _cleanup_error_ vs_error *e = NULL;
  CHECK(apply(&s, &t, &lim, NULL, &e) < 0);
  CHECK_CONTAINS(e->msg, "device nodes are not allowed");
  _cleanup_free_ char *p = in_root(&s, "null");
  CHECK(!test_exists(p));
  sandbox_done(&s);
}

TEST(decompression_bomb_bounded) {
  sandbox s;
  sandbox_init(&s);
  tarbuf t;
  tar_begin(&t, "gzip");
  size_t big = 32u << 20;
  char *zeros = vs_malloc0(big);
  tar_add(&t, "bomb", AE_IFREG, zeros, big, NULL);
  free(zeros);
  CHECK(t.used < (1u << 20)); /* compresses to a small blob */
  vs_layer_limits lim = {.max_bytes = 4u << 20, .allow_devices = false};
  _cleanup_error_ vs_error *e = NULL;
  CHECK(apply(&s, &t, &lim, NULL, &e) < 0);
  CHECK_CONTAINS(e->msg, "limit");
  sandbox_done(&s);
}

TEST(garbage_is_not_a_layer) {
  sandbox s;
  sandbox_init(&s);
  _cleanup_free_ char *p = vs_asprintf("%s/junk", s.top);
  test_write(p, "this is not a tar archive at all, just some text that goes on for a while......"
                "................................................................................"
                "................................................................................"
                "................................................................................"
                "................................................................................"
                "................................................................................"
                "................................................................................");
  _cleanup_close_ int fd = open(p, O_RDONLY | O_CLOEXEC);
  _cleanup_error_ vs_error *e = NULL;
  CHECK(vs_layer_apply(fd, s.rootfd, NULL, NULL, &e) < 0);
  CHECK(e && e->msg[0]);
  sandbox_done(&s);
}

/* The digests recorded while a tar lands are those of what the files finally hold. */
TEST(layer_apply_records_file_digests) {
  sandbox s;
  sandbox_init(&s);
  tarbuf t;
  tar_begin(&t, NULL);
  tar_file(&t, "a", "one\n");
  tar_add(&t, "b", AE_IFREG, NULL, 0, "a"); /* a hard link: the same inode */
  tar_file(&t, "c", "first\n");
  tar_file(&t, "c", "second and longer\n"); /* written twice: the last content counts */
  tar_add(&t, "l", AE_IFLNK, NULL, 0, "a");
  tar_file(&t, "empty", "");
  vs_file_digests *fd = vs_file_digests_new();
  vs_layer_limits lim = {.file_digests = fd};
  char diff[VS_DIGEST_MAX];
  CHECK(apply(&s, &t, &lim, diff, NULL) == 0);
  CHECK(vs_digest_valid(diff)); /* the diff_id still comes when asked for */
  static const struct {
    const char *path, *content;
  } want[] = {{"a", "one\n"}, {"b", "one\n"}, {"c", "second and longer\n"}, {"empty", ""}};
  for (size_t i = 0; i < ARRAY_SIZE(want); i++) {
    _cleanup_free_ char *p = in_root(&s, want[i].path);
    struct stat st;
    CHECK(stat(p, &st) == 0);
    char got[VS_DIGEST_MAX], expect[VS_DIGEST_MAX];
    vs_digest_buffer(want[i].content, strlen(want[i].content), expect);
    CHECK(vs_file_digests_get(fd, &st, got));
    CHECK_STREQ(got, expect);
  }
  /* a link is not a regular file; a file whose size changed afterwards is not trusted */
  _cleanup_free_ char *l = in_root(&s, "l");
  _cleanup_free_ char *a = in_root(&s, "a");
  struct stat st;
  char got[VS_DIGEST_MAX];
  CHECK(lstat(l, &st) == 0 && !vs_file_digests_get(fd, &st, got));
  test_write(a, "one more\n");
  CHECK(stat(a, &st) == 0 && !vs_file_digests_get(fd, &st, got));
  CHECK(!vs_file_digests_get(NULL, &st, got));
  vs_file_digests_free(fd);
  sandbox_done(&s);
}

/* A build context unpacked over the previous one: files rewritten in place (same inode), the
 * old tail cut, a file in the way of a directory replaced, what the new archive lacks pruned,
 * and no hard link to a file of the old archive. */
TEST(layer_apply_over_an_earlier_archive) {
  sandbox s;
  sandbox_init(&s);
  tarbuf t;
  tar_begin(&t, NULL);
  tar_file(&t, "keep", "a longer first content\n");
  tar_file(&t, "gone", "old\n");
  tar_file(&t, "d", "a file where a directory comes\n");
  tar_add(&t, "sub", AE_IFDIR, NULL, 0, NULL);
  tar_file(&t, "sub/old", "x\n");
  tar_add(&t, "link", AE_IFLNK, NULL, 0, "keep");
  CHECK(apply(&s, &t, NULL, NULL, NULL) == 0);
  _cleanup_free_ char *keep = in_root(&s, "keep");
  struct stat before, after;
  CHECK(stat(keep, &before) == 0);

  CHECK(vs_dir_prune(s.rootfd, NULL, NULL) == 0); /* links and other non-files go first */
  _cleanup_free_ char *link = in_root(&s, "link");
  CHECK(lstat(link, &after) < 0 && errno == ENOENT);
  tar_begin(&t, NULL);
  tar_file(&t, "keep", "short\n");
  tar_file(&t, "d/inside", "in\n");
  tar_file(&t, "sub/new", "y\n");
  _cleanup_json_ json_t *named = json_object();
  vs_layer_limits lim = {.reuse_paths = named};
  CHECK(apply(&s, &t, &lim, NULL, NULL) == 0);
  CHECK(vs_dir_prune(s.rootfd, named, NULL) == 0);
  CHECK(stat(keep, &after) == 0 && after.st_ino == before.st_ino && after.st_size == 6);
  _cleanup_free_ char *text = NULL;
  CHECK(vs_read_file(keep, 100, &text, NULL, NULL) == 0);
  CHECK_STREQ(text, "short\n");
  _cleanup_free_ char *inside = in_root(&s, "d/inside");
  _cleanup_free_ char *gone = in_root(&s, "gone");
  _cleanup_free_ char *old = in_root(&s, "sub/old");
  _cleanup_free_ char *nw = in_root(&s, "sub/new");
  CHECK(access(inside, F_OK) == 0 && access(nw, F_OK) == 0);
  CHECK(access(gone, F_OK) < 0 && access(old, F_OK) < 0);

  /* a hard link may only name what this archive brought */
  tar_begin(&t, NULL);
  tar_add(&t, "h", AE_IFREG, NULL, 0, "keep");
  json_t *again = json_object();
  lim.reuse_paths = again;
  _cleanup_error_ vs_error *e = NULL;
  CHECK(apply(&s, &t, &lim, NULL, &e) < 0);
  CHECK_CONTAINS(e->msg, "not in the archive");
  json_decref(again);
  sandbox_done(&s);
}

/* Many files: the table grows and finds every one again. */
TEST(file_digests_table_grows) {
  vs_file_digests *t = vs_file_digests_new();
  char d[VS_DIGEST_MAX], got[VS_DIGEST_MAX];
  for (ino_t i = 1; i <= 5000; i++) {
    struct stat st = {.st_dev = 7, .st_ino = i, .st_size = (off_t)i, .st_mode = S_IFREG | 0644};
    char text[32];
    snprintf(text, sizeof(text), "%lu", (unsigned long)i);
    vs_digest_buffer(text, strlen(text), d);
    vs_file_digests_put(t, &st, d);
  }
  for (ino_t i = 1; i <= 5000; i++) {
    struct stat st = {.st_dev = 7, .st_ino = i, .st_size = (off_t)i, .st_mode = S_IFREG | 0644};
    char text[32];
    snprintf(text, sizeof(text), "%lu", (unsigned long)i);
    vs_digest_buffer(text, strlen(text), d);
    CHECK(vs_file_digests_get(t, &st, got));
    CHECK_STREQ(got, d);
  }
  struct stat other = {.st_dev = 8, .st_ino = 1, .st_size = 1, .st_mode = S_IFREG | 0644};
  CHECK(!vs_file_digests_get(t, &other, got));
  other.st_dev = 7;
  vs_file_digests_drop(t, &other);
  CHECK(!vs_file_digests_get(t, &other, got));
  vs_file_digests_free(t);
}

/* ------------------------------------------------------------ store */

static char *gunzip_file(const char *path, size_t *len) {
  _cleanup_free_ char *gz = NULL;
  size_t gzlen = 0;
  if (vs_read_file(path, 64 << 20, &gz, &gzlen, NULL) < 0)
    return NULL;
  size_t cap = 64 << 20;
  char *out = vs_malloc0(cap);
  z_stream z = {.next_in = (Bytef *)gz,
                .avail_in = (uInt)gzlen,
                .next_out = (Bytef *)out,
                .avail_out = (uInt)cap};
  if (inflateInit2(&z, 15 + 16) != Z_OK || inflate(&z, Z_FINISH) != Z_STREAM_END) {
    inflateEnd(&z);
    free(out);
    return NULL;
  }
  *len = z.total_out;
  inflateEnd(&z);
  return out;
}

/* A push's gzip form of a plain layer: made once, the same every time, gone with its tar. */
TEST(store_gzip_blob_is_made_once_and_collected) {
  _cleanup_free_ char *dir = test_tmpdir();
  vs_store *s = vs_store_open(dir, NULL);
  CHECK(s != NULL);
  size_t n = 3 << 20;
  char *data = vs_malloc0(n);
  for (size_t i = 0; i < n; i++)
    data[i] = (char)(i % 251 < 40 ? i % 7 : 'x');
  char tar[VS_DIGEST_MAX], gz[VS_DIGEST_MAX], gz2[VS_DIGEST_MAX];
  CHECK(vs_store_put_blob(s, NULL, data, n, tar, NULL) == 0);
  int64_t size = 0, size2 = 0;
  CHECK(vs_store_gzip_blob(s, tar, gz, &size, NULL) == 0);
  CHECK(strcmp(gz, tar) != 0 && size > 0 && (size_t)size < n);
  _cleanup_free_ char *gzpath = vs_store_blob_path(s, gz);
  size_t len = 0;
  _cleanup_free_ char *back = gunzip_file(gzpath, &len);
  CHECK(back && len == n && memcmp(back, data, n) == 0);
  struct stat st1, st2;
  CHECK(stat(gzpath, &st1) == 0);
  CHECK(vs_store_gzip_blob(s, tar, gz2, &size2, NULL) == 0); /* remembered: not made again */
  CHECK_STREQ(gz2, gz);
  CHECK(size2 == size && stat(gzpath, &st2) == 0 && st2.st_ino == st1.st_ino);
  CHECK(vs_store_gzip_known(s, tar, gz2));
  unlink(gzpath); /* a lost blob is made again, the same */
  CHECK(!vs_store_gzip_known(s, tar, gz2));
  CHECK(vs_store_gzip_blob(s, tar, gz2, &size2, NULL) == 0);
  CHECK_STREQ(gz2, gz);
  _cleanup_error_ vs_error *e = NULL;
  CHECK(vs_store_gzip_blob(s, D1, gz2, &size2, &e) < 0); /* no such tar */
  CHECK(e != NULL);
  /* nothing keeps the tar: gc takes it, its gzip form and the record */
  vs_gc_stats gs;
  CHECK(vs_store_gc(s, &gs, NULL) == 0);
  CHECK(!vs_store_has_blob(s, tar) && !vs_store_has_blob(s, gz));
  _cleanup_free_ char *map = vs_store_gzip_map_path(s, tar);
  CHECK(access(map, F_OK) < 0);
  free(data);
  vs_store_close(s);
  vs_rm_rf(dir, NULL);
}

TEST(store_verifies_digest_before_publishing) {
  _cleanup_free_ char *dir = test_tmpdir();
  _cleanup_error_ vs_error *e = NULL;
  vs_store *s = vs_store_open(dir, &e);
  CHECK(s != NULL);
  char d[VS_DIGEST_MAX];
  CHECK(vs_store_put_blob(s, NULL, "abc", 3, d, NULL) == 0);
  CHECK(vs_store_has_blob(s, d));
  CHECK(vs_store_put_blob(s, D1, "abc", 3, NULL, &e) < 0);
  CHECK_CONTAINS(e->msg, "digest mismatch");
  CHECK(!vs_store_has_blob(s, D1));
  vs_blob_writer *w = vs_blob_writer_new(s, NULL);
  CHECK(vs_blob_writer_write(w, "xyz", 3, NULL) == 0);
  vs_error_free(e);
  e = NULL;
  CHECK(vs_blob_writer_commit(w, D2, NULL, &e) < 0);
  vs_blob_writer_free(w);
  CHECK(!vs_store_has_blob(s, D2));
  _cleanup_free_ char *tmp = vs_asprintf("%s/tmp", dir);
  CHECK(dir_empty(tmp));
  CHECK(vs_store_tag_set(s, "docker.io/library/x:1", d, NULL) == 0);
  json_t *tags = vs_store_tags(s, NULL);
  CHECK_STREQ(json_string_value(json_object_get(tags, "docker.io/library/x:1")), d);
  json_decref(tags);
  vs_store_close(s);
  vs_rm_rf(dir, NULL);
}

int main(void) { return tap_run(); }
