/* vessel image: OCI image store, layer application, overlay root file systems, registry client.
 *
 * This is the module's one public header.
 *
 * Store layout under the root directory (default /var/lib/vessel):
 *   blobs/sha256/<hex>        content-addressed blobs; a blob only appears here (by rename) after
 *                             its content was hashed and matched its digest
 *   layers/sha256/<diffhex>/  one unpacked layer per diff_id, shared by every image using it; it
 *                             appears (by rename) only after a complete, verified unpack
 *   repositories.json         tags: "registry/repository:tag" -> manifest digest
 *   containers/<id>/          containers made by `vessel run`
 *   tmp/                      partial downloads and unpacks; nothing here is ever trusted
 *   lock                      flock: shared by pulls/runs, exclusive for garbage collection
 */
#ifndef VESSEL_IMAGE_H
#define VESSEL_IMAGE_H

#include "base/base.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

/* ------------------------------------------------------------- digests */

#define VS_DIGEST_MAX 72 /* "sha256:" + 64 hex + NUL */

/* True when s is "sha256:" followed by exactly 64 lowercase hex digits. */
bool vs_digest_valid(const char *s);
/* sha256 of data as "sha256:<hex>" into out. */
void vs_digest_buffer(const void *data, size_t len, char out[VS_DIGEST_MAX]);

typedef struct vs_hasher vs_hasher;
vs_hasher *vs_hasher_new(void);
void vs_hasher_update(vs_hasher *h, const void *data, size_t len);
/* Writes "sha256:<hex>" and frees the hasher. */
void vs_hasher_finish(vs_hasher *h, char out[VS_DIGEST_MAX]);
void vs_hasher_free(vs_hasher *h);

/* ---------------------------------------------------------- references */

/* A parsed image reference, normalised the way docker does:
 * "busybox" -> registry "docker.io", repository "library/busybox", tag "latest". */
typedef struct vs_image_ref {
  char *registry;   /* "docker.io", "localhost:5000", ... */
  char *repository; /* "library/busybox" */
  char *tag;        /* NULL when only a digest was given */
  char *digest;     /* NULL unless "@sha256:..." was given */
} vs_image_ref;

int vs_image_ref_parse(const char *input, vs_image_ref *out, vs_error **err);
void vs_image_ref_clear(vs_image_ref *r);
/* "registry/repository:tag" (or "@digest" when there is no tag); caller frees. */
char *vs_image_ref_string(const vs_image_ref *r);
/* "registry/repository" */
char *vs_image_ref_name(const vs_image_ref *r);
/* The short form users type: "busybox:latest" for docker.io/library/busybox:latest. */
char *vs_image_name_familiar(const char *full);

/* ---------------------------------------------------- manifests, configs */

#define VS_MT_OCI_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define VS_MT_OCI_INDEX "application/vnd.oci.image.index.v1+json"
#define VS_MT_OCI_CONFIG "application/vnd.oci.image.config.v1+json"
#define VS_MT_OCI_LAYER "application/vnd.oci.image.layer.v1.tar"
#define VS_MT_OCI_LAYER_GZIP "application/vnd.oci.image.layer.v1.tar+gzip"
#define VS_MT_OCI_LAYER_ZSTD "application/vnd.oci.image.layer.v1.tar+zstd"
#define VS_MT_DOCKER_MANIFEST "application/vnd.docker.distribution.manifest.v2+json"
#define VS_MT_DOCKER_LIST "application/vnd.docker.distribution.manifest.list.v2+json"
#define VS_MT_DOCKER_CONFIG "application/vnd.docker.container.image.v1+json"
#define VS_MT_DOCKER_LAYER_GZIP "application/vnd.docker.image.rootfs.diff.tar.gzip"

/* VM images (OCI artifacts, docs/daemon.md): a config of this type and one layer per file of the
 * machine, stored and moved as they are (never unpacked). Their config still has rootfs.diff_ids
 * (the layers' own digests) so that the store loads them like any image. */
#define VS_MT_VM_CONFIG "application/vnd.vessel.vm.config.v1+json"
#define VS_MT_VM_KERNEL "application/vnd.vessel.vm.kernel.v1"
#define VS_MT_VM_INITRD "application/vnd.vessel.vm.initrd.v1"
#define VS_MT_VM_DISK "application/vnd.vessel.vm.disk.v1.qcow2"
/* Whether a layer of this media type is one of a VM image's files (not a file system tree). */
bool vs_media_type_is_vm_file(const char *mt);

typedef struct vs_descriptor {
  char *media_type;
  char *digest;
  int64_t size;
  char *os, *arch, *variant; /* platform, index entries only */
} vs_descriptor;

typedef enum { VS_MANIFEST_IMAGE = 1, VS_MANIFEST_INDEX = 2 } vs_manifest_kind;

typedef struct vs_manifest {
  vs_manifest_kind kind;
  char *media_type;
  vs_descriptor config;  /* image manifests */
  vs_descriptor *layers; /* image manifests */
  size_t n_layers;
  vs_descriptor *manifests; /* indexes */
  size_t n_manifests;
} vs_manifest;

/* Parse an image manifest or index. media_type (from the Content-Type of a registry reply, may
 * be NULL) is used when the document has no mediaType field. Every descriptor is checked: valid
 * digest, non-negative size, known media types for layers. */
int vs_manifest_parse(const char *data, size_t len, const char *media_type, vs_manifest *out,
                      vs_error **err);
void vs_manifest_clear(vs_manifest *m);
/* The platform this build runs containers of, in Go's names as registries and Docker give them
 * ("linux/amd64" on x86-64): what a pull picks from an index and a build writes, unless told. */
const char *vs_platform_native(void);
/* Its architecture alone ("amd64"). */
const char *vs_arch_native(void);
/* Pick the manifest for "os/arch[/variant]" (NULL: the native platform) from an index; NULL with
 * an error if none fits. */
const vs_descriptor *vs_index_select(const vs_manifest *idx, const char *platform, vs_error **err);

typedef struct vs_image_config {
  json_t *root;    /* the whole document (kept for inspect and run) */
  char **diff_ids; /* rootfs.diff_ids */
  size_t n_diff_ids;
  char *os, *arch, *created;
} vs_image_config;

int vs_image_config_parse(const char *data, size_t len, vs_image_config *out, vs_error **err);
void vs_image_config_clear(vs_image_config *c);

/* ---------------------------------------------------------- layers */

typedef struct vs_layer_limits {
  uint64_t max_bytes;   /* total uncompressed file data; 0 = default (64 GiB) */
  uint64_t max_entries; /* 0 = default (4 million) */
  bool allow_devices;   /* create char/block device nodes (true for image layers as root) */
  /* A plain archive (docker cp into a container) rather than an image layer: ".wh." names are
   * ordinary files, mounts below the directory are entered, absolute names are refused, and no
   * entry's directory may go through a symbolic link (one the archive made, or one that was
   * there), so a link cannot redirect later entries anywhere. */
  bool plain;
  bool no_overwrite_dir_nondir; /* refuse to replace a directory by a non-directory or back */
  bool owner_root;              /* every entry owned by 0:0 instead of the archive's owners */
  /* When set, the sha256 of every regular file's data is recorded here as the file is written
   * (a build context hashed as it arrives, so the builder need not read the files again). */
  struct vs_file_digests *file_digests;
  /* When set, the directory holds an earlier archive of the same kind (a build context) and
   * this one goes over it: its regular files that are not hard-linked are rewritten in place
   * (their inodes kept), and every path this archive names is added here (an object used as a
   * set) for vs_dir_prune to remove the rest. Files of the earlier archive are never a hard
   * link's target; symbolic links and other non-files must be gone before (vs_dir_prune). */
  json_t *reuse_paths;
} vs_layer_limits;

/* The digests ("sha256:…") of regular files' data, keyed by device and inode and checked
 * against the size: valid while nobody writes to those files (the builder's private context
 * directory). get is false for anything not recorded or recorded with another size. */
typedef struct vs_file_digests vs_file_digests;
struct stat;
vs_file_digests *vs_file_digests_new(void);
void vs_file_digests_free(vs_file_digests *t);
void vs_file_digests_put(vs_file_digests *t, const struct stat *st, const char *digest);
void vs_file_digests_drop(vs_file_digests *t, const struct stat *st);
bool vs_file_digests_get(const vs_file_digests *t, const struct stat *st,
                         char digest[VS_DIGEST_MAX]);

/* Remove from the directory dirfd what keep (an object used as a set of relative paths) does
 * not name, keeping the directories above what it names; keep NULL: remove everything that is
 * neither a regular file nor a directory (what an archive applied with reuse_paths must not
 * find). */
int vs_dir_prune(int dirfd, const json_t *keep, vs_error **err);

/* Apply a layer tar (plain, gzip or zstd; detected from the content) read from fd into the
 * directory dirfd. Every path is resolved inside dirfd: entries with "..", absolute paths,
 * symlinks that lead out and hardlinks to outside targets never touch anything outside.
 * Whiteouts become overlayfs whiteouts (char 0/0) and opaque dirs get trusted.overlay.opaque=y.
 * diff_id_out (may be NULL) receives the sha256 of the uncompressed tar. */
int vs_layer_apply(int fd, int dirfd, const vs_layer_limits *lim, char diff_id_out[VS_DIGEST_MAX],
                   vs_error **err);

/* ---------------------------------------------------------- store */

typedef struct vs_store vs_store;

vs_store *vs_store_open(const char *root, vs_error **err);
void vs_store_close(vs_store *s);
const char *vs_store_root(const vs_store *s);
/* flock on <root>/lock: shared for pulls and runs, exclusive for garbage collection. */
int vs_store_lock(vs_store *s, bool exclusive, vs_error **err);
void vs_store_unlock(vs_store *s);

char *vs_store_blob_path(const vs_store *s, const char *digest);
bool vs_store_has_blob(const vs_store *s, const char *digest);
int vs_store_read_blob(const vs_store *s, const char *digest, size_t max, char **data, size_t *len,
                       vs_error **err);
/* Store data under its digest after checking it matches expected (NULL: just compute it). */
int vs_store_put_blob(vs_store *s, const char *expected, const void *data, size_t len,
                      char digest_out[VS_DIGEST_MAX], vs_error **err);

/* A blob being written: data goes to a temp file in tmp/, hashed on the way; commit checks the
 * digest and renames it into blobs/ (or deletes it on mismatch). */
typedef struct vs_blob_writer vs_blob_writer;
vs_blob_writer *vs_blob_writer_new(vs_store *s, vs_error **err);
int vs_blob_writer_write(vs_blob_writer *w, const void *data, size_t len, vs_error **err);
uint64_t vs_blob_writer_size(const vs_blob_writer *w);
int vs_blob_writer_commit(vs_blob_writer *w, const char *expected, char digest_out[VS_DIGEST_MAX],
                          vs_error **err);
/* Drop the partial blob (also fine after commit). */
void vs_blob_writer_free(vs_blob_writer *w);

/* layers/sha256/<hex> of a diff_id, and whether it is present (complete). */
char *vs_store_layer_path(const vs_store *s, const char *diff_id);
bool vs_store_has_layer(const vs_store *s, const char *diff_id);
/* Unpack blob `blob_digest` as the layer `diff_id` unless it is already there. */
int vs_store_unpack_layer(vs_store *s, const char *blob_digest, const char *diff_id,
                          vs_error **err);

/* Tags: full names "registry/repository:tag" or "registry/repository@digest". */
int vs_store_tag_set(vs_store *s, const char *name, const char *manifest_digest, vs_error **err);
int vs_store_tag_remove(vs_store *s, const char *name, vs_error **err);
/* Returns the tags object (name -> digest); caller json_decref()s. */
json_t *vs_store_tags(vs_store *s, vs_error **err);

/* A stored image: its manifest and config, loaded from the store. */
typedef struct vs_image {
  char manifest_digest[VS_DIGEST_MAX];
  char *manifest_raw;
  size_t manifest_len;
  vs_manifest manifest;
  vs_image_config config;
  char *config_raw;
  size_t config_len;
} vs_image;

/* Find an image by name (any form users type), full digest or image-ID prefix. */
int vs_store_resolve(vs_store *s, const char *what, vs_image *out, vs_error **err);
int vs_store_load_image(vs_store *s, const char *digest, vs_image *img, vs_error **err);
void vs_image_clear(vs_image *img);
/* Total size of an image's layers (compressed, as in the manifest). */
int64_t vs_image_size(const vs_image *img);

/* Remove unreferenced blobs, layers and stale temp files. Takes the exclusive lock. */
typedef struct vs_gc_stats {
  uint64_t blobs_removed, layers_removed, bytes_freed;
} vs_gc_stats;
int vs_store_gc(vs_store *s, vs_gc_stats *stats, vs_error **err);

/* The gzip form of the uncompressed layer blob tar_digest (what a push sends for it): made once,
 * stored as a blob, its digest remembered in compressed/sha256/<hex of the tar> (layer_gzip.c).
 * gz_out receives its digest, size_out its size. gc keeps it while it keeps the tar. */
int vs_store_gzip_blob(vs_store *s, const char *tar_digest, char gz_out[VS_DIGEST_MAX],
                       int64_t *size_out, vs_error **err);
/* The compressed form recorded for tar_digest, when its blob is still there. */
bool vs_store_gzip_known(const vs_store *s, const char *tar_digest, char gz_out[VS_DIGEST_MAX]);
char *vs_store_gzip_map_path(const vs_store *s, const char *tar_digest);

/* Store a manifest for an image assembled locally (import, commit, load): the config and layer
 * blobs must already be in the store. Tags it as `name` (full name) when name is non-NULL. */
int vs_store_add_image(vs_store *s, const char *name, const char *config_digest,
                       const vs_descriptor *layers, size_t n, char digest_out[VS_DIGEST_MAX],
                       vs_error **err);

/* Like vs_store_unpack_layer, for a blob whose diff_id is not known yet (diff_id NULL): the
 * diff_id found while unpacking goes to diff_id_out. */
int vs_store_unpack_layer_any(vs_store *s, const char *blob_digest, const char *diff_id,
                              char diff_id_out[VS_DIGEST_MAX], vs_error **err);

/* ---------------------------------------------------------- moving images in and out */

/* vessel import: a root file system tarball (plain, gzip or zstd) becomes a one-layer image. */
int vs_image_import(vs_store *s, const char *tar_path, const char *name, json_t *changes,
                    char digest_out[VS_DIGEST_MAX], vs_error **err);
/* Dockerfile instructions that change only the config (docker commit/import --change): each
 * string of the array changes holds one or more lines of CMD, ENTRYPOINT, ENV, EXPOSE,
 * HEALTHCHECK, LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME or WORKDIR, applied in order to config (an
 * image's "config" object: Cmd, Env, ...). Other instructions and malformed arguments are errors
 * naming them. */
int vs_config_apply_changes(json_t *config, json_t *changes, vs_error **err);
/* vessel commit: the overlay upper directory becomes a new layer on top of base, an uncompressed
 * tar as dockerd keeps its layers (overlay whiteouts and opaque dirs turned back into .wh.
 * entries); config_changes (may be NULL) are merged into the image's "config" object; comment
 * and author (may be NULL) go into the history entry and the image's author. */
int vs_image_commit(vs_store *s, const vs_image *base, const char *upper_dir, const char *name,
                    json_t *changes, const char *comment, const char *author,
                    char digest_out[VS_DIGEST_MAX], vs_error **err);
/* The same for a builder's step, whose upper directory (no longer mounted, not needed after)
 * becomes the store's unpacked layer by a rename; the directory is gone on success. */
int vs_image_commit_taking_upper(vs_store *s, const vs_image *base, const char *upper_dir,
                                 char digest_out[VS_DIGEST_MAX], vs_error **err);
/* vessel image load: a docker-archive (docker save) or OCI layout tar. Names of the loaded images
 * go to *names (a JSON array, caller decrefs). */
int vs_image_load(vs_store *s, const char *path, const char *fallback_name, json_t **names,
                  vs_error **err);
/* vessel image save: images (any names users type) to a docker-archive or oci-archive tar. */
int vs_image_save(vs_store *s, char **images, size_t n, const char *format, const char *path,
                  vs_error **err);

/* ---------------------------------------------------------- root file systems */

/* Mount an overlay of the image's layers (top first) with upperdir/workdir at target. Works for
 * any number of layers (short relative lowerdir names from a link directory). */
int vs_rootfs_mount(vs_store *s, const vs_image *img, const char *container_dir, const char *target,
                    vs_error **err);

/* ---------------------------------------------------------- registry */

/* Progress of a pull or a push in Docker's words: id is a layer's short digest (12 hex digits),
 * or the tag for "Pulling from REPO", or NULL for the image as a whole; status is "Pulling fs
 * layer", "Waiting", "Downloading", "Verifying Checksum", "Download complete", "Extracting",
 * "Pull complete", "Already exists", "Digest: D", "Preparing", "Pushing", "Pushed", "Layer
 * already exists", "Mounted from R", ...; current and total count the bytes of a transfer (0
 * otherwise). Calls may come from several threads, never two at once. */
typedef void (*vs_progress_fn)(void *ctx, const char *id, const char *status, uint64_t current,
                               uint64_t total);

typedef struct vs_registry_opts {
  int tls_verify;        /* 1 default; 0 = plain http / no verification */
  const char *auth_file; /* NULL: $REGISTRY_AUTH_FILE, $XDG_RUNTIME_DIR/containers/auth.json,
                            ~/.docker/config.json */
  const char *platform;  /* NULL: vs_platform_native() */
  int parallel;          /* concurrent blob transfers (default 4) */
  uint64_t chunk_size;   /* push: PATCH chunks of this size; 0 = monolithic up to 64 MiB */
  bool quiet;
  int progress_fd;            /* where progress goes (stderr) */
  vs_progress_fn progress_cb; /* instead of text on progress_fd, when set */
  void *progress_ctx;
  const char *credentials; /* base64("user:password") to use instead of the auth files */
  bool containers_only;    /* pull: refuse a VM image (config VS_MT_VM_CONFIG) before its blobs */
} vs_registry_opts;

/* Pull ref into the store and tag it. manifest_digest_out receives the image manifest digest. */
int vs_image_pull(vs_store *s, const char *ref, const vs_registry_opts *o,
                  char manifest_digest_out[VS_DIGEST_MAX], vs_error **err);
/* Push the stored image `local` to `dest` (a reference). Uncompressed layers are sent gzipped
 * (vs_store_gzip_blob), in a manifest of their own: digest_out (may be NULL) receives the digest
 * of the manifest sent, size_out (may be NULL) its size. */
int vs_image_push(vs_store *s, const char *local, const char *dest, const vs_registry_opts *o,
                  char digest_out[VS_DIGEST_MAX], size_t *size_out, vs_error **err);
/* Check credentials against the registry (nothing is saved). */
int vs_registry_check_login(const char *registry, const char *user, const char *password,
                            const vs_registry_opts *o, vs_error **err);
/* Check credentials against the registry and save them to the auth file. */
int vs_registry_login(const char *registry, const char *user, const char *password,
                      const vs_registry_opts *o, vs_error **err);
/* The X-Registry-Auth header Docker clients send (base64url of {"username", "password", ...}):
 * *basic gets base64("user:password"), or NULL for an anonymous one ("{}" or no username).
 * -1 with *err naming the problem when it is not such a document. */
int vs_registry_auth_decode(const char *header, char **basic, vs_error **err);
int vs_registry_logout(const char *registry, const vs_registry_opts *o, vs_error **err);

/* ---------------------------------------------------------- small helpers */

/* strndup that aborts on out-of-memory, like vs_strdup. */
char *vs_img_strndup(const char *s, size_t n);
/* Disk usage of a directory tree in bytes (allocated blocks). */
uint64_t vs_img_du(const char *path);

/* ---------------------------------------------------------- Dockerfiles */

/* One Dockerfile instruction as Docker's parser reads it (dockerfile.c). Arguments stay raw
 * (quotes and variables as written); the builder expands them with vs_df_expand where Docker
 * does. The shapes of args by keyword:
 *   run, cmd, entrypoint, shell: json ? the array : one string, the shell form
 *   from, expose, copy, add, volume, onbuild's words: whitespace-separated words (or the JSON
 *       array for copy, add, volume)
 *   env, label, arg: pairs, args[2i] the name and args[2i+1] the value (NULL for an ARG without
 *       a default)
 *   workdir, user, stopsignal, maintainer: one string
 *   healthcheck: "NONE", or "CMD" followed by the command as for cmd
 *   onbuild: none; sub is the trigger instruction */
typedef struct vs_df_instr {
  char *keyword;  /* lowercase: "from", "run", ... */
  char *original; /* the instruction as written, continuations joined: "RUN echo hi" */
  int line;       /* the line its keyword is on (1-based) */
  char **flags;   /* leading "--name=value" words, raw */
  size_t nflags;
  char **args;
  size_t nargs;
  bool json; /* args came from a JSON array */
  struct vs_df_instr *sub;
} vs_df_instr;

typedef struct vs_dockerfile {
  vs_df_instr *instrs;
  size_t n;
  char escape;  /* '\\' or '`' (the escape directive) */
  char *syntax; /* the syntax directive, NULL when absent */
} vs_dockerfile;

#define VS_DF_MAX_LINE (64 << 10) /* longest physical line accepted, as Docker's scanner */
#define VS_DF_MAX_SIZE (16 << 20) /* longest Dockerfile accepted */

/* Parse a Dockerfile. Errors name the line: "Dockerfile parse error line 3: unknown
 * instruction: FOO". Heredocs are refused. */
int vs_dockerfile_parse(const char *text, size_t len, vs_dockerfile *out, vs_error **err);
void vs_dockerfile_clear(vs_dockerfile *df);
void vs_df_instr_clear(vs_df_instr *in);

/* Value of a variable for expansion, NULL when unset. */
typedef const char *(*vs_df_lookup)(const char *name, void *ctx);
/* Expand $VAR, ${VAR}, ${VAR:-x}, ${VAR-x}, ${VAR:+x}, ${VAR+x}, ${VAR:?msg}, ${VAR?msg} and
 * remove quotes and escapes as Docker's shell lexer does; *out is one word (whitespace kept). */
int vs_df_expand_word(const char *word, char escape, vs_df_lookup lookup, void *ctx, char **out,
                      vs_error **err);
/* The same, then split into words at unquoted whitespace (also inside expanded values), as for
 * FROM, COPY, EXPOSE and VOLUME. *out is NULL-terminated; *n counts the words. */
int vs_df_expand_words(const char *word, char escape, vs_df_lookup lookup, void *ctx, char ***out,
                       size_t *n, vs_error **err);
/* The value of the flag --name=value of in, "" for a bare --name, NULL when not given. */
const char *vs_df_flag(const vs_df_instr *in, const char *name);
/* Check that in has no flag other than those in allowed (NULL-terminated): "COPY: unknown
 * flag: --foo". */
int vs_df_flags_check(const vs_df_instr *in, const char *const *allowed, vs_error **err);

/* A .dockerignore: patterns as Docker's (filepath.Match syntax plus "**", "!" re-includes, the
 * last matching pattern wins, a pattern also excludes everything under a directory it matches). */
typedef struct vs_ignore vs_ignore;
/* Comments ("#") and blank lines are skipped; a malformed pattern is an error naming its line. */
int vs_dockerignore_parse(const char *text, size_t len, vs_ignore **out, vs_error **err);
/* True when path (relative to the context, "/"-separated, cleaned) is excluded. */
bool vs_dockerignore_match(const vs_ignore *ig, const char *path);
void vs_dockerignore_free(vs_ignore *ig);
/* Lexical cleaning of a "/"-separated path as Go's filepath.Clean ("." and empty segments
 * dropped, ".." taking the previous one away), relative: a leading "/" is dropped and ".." stays
 * only at the start of a relative path. "." for an empty result. */
char *vs_img_path_clean(const char *path, size_t len);

/* COPY and ADD sources: src (expanded, as written after the instruction) resolved in the build
 * context ctxfd. A "*", "?" or "[...]" in a segment matches names in that directory (sorted);
 * globs never descend through a symbolic link and a link they match is returned as itself (to be
 * copied as a link). Links on a literal path are followed inside the context; one leading out of
 * it, or a path with ".." leaving it, is an error naming the source. Paths the .dockerignore ig
 * (may be NULL) excludes are not there. *out receives the resolved paths relative to the context
 * ("." for the context itself), NULL-terminated; no match is an error ("file not found in build
 * context"). */
int vs_build_context_glob(int ctxfd, const char *src, const vs_ignore *ig, char ***out, size_t *n,
                          vs_error **err);

/* What one stage of a build carries from step to step besides its image config. */
typedef struct vs_build_stage {
  json_t *args;             /* the ARGs declared so far: name -> string, or null without a value */
  const json_t *build_args; /* --build-arg values: name -> string (not owned, may be NULL) */
  const json_t *meta_args;  /* the ARGs before the first FROM: an ARG without a default in the
                               stage takes theirs (not owned, may be NULL) */
  char escape;              /* the Dockerfile's escape character */
  bool cmd_set;             /* a CMD of this build (an ENTRYPOINT resets only an inherited one) */
} vs_build_stage;

/* Apply an instruction that only changes the image configuration (ARG, ENV, LABEL, WORKDIR,
 * USER, CMD, ENTRYPOINT, EXPOSE, VOLUME, STOPSIGNAL, SHELL, HEALTHCHECK, ONBUILD, MAINTAINER)
 * to image (a whole image config document: "config", "author", ...), expanding its arguments
 * where Docker does with the stage's ENV and ARGs. Returns -1 with an error naming the problem;
 * 1 if in is not such an instruction (FROM, RUN, COPY, ADD). */
int vs_build_apply_config(json_t *image, vs_build_stage *st, const vs_df_instr *in, vs_error **err);
/* Expand word into words (as for COPY's arguments) with the stage's ENV and ARGs. */
int vs_build_expand_words(json_t *image, vs_build_stage *st, const char *word, char ***out,
                          size_t *n, vs_error **err);
/* A Go duration ("30s", "1m30s", "500ms", "1h") in nanoseconds, as HEALTHCHECK's flags. */
int vs_build_parse_duration(const char *s, int64_t *ns, vs_error **err);

/* How COPY writes its sources: the owner of what it creates (Docker's default is 0:0) and
 * --chmod's mode (-1: the sources' modes). */
typedef struct vs_copy_opts {
  uid_t uid;
  gid_t gid;
  int mode;
  const vs_ignore *ig; /* paths of the context left out inside copied directories (may be NULL) */
} vs_copy_opts;

/* COPY's writing half: the n sources (paths vs_build_context_glob returned, relative to srcfd)
 * copied to dest inside the root file system rootfd (resolved in it: its links never lead out)
 * with Docker's rules. A relative dest is under workdir; a dest ending in "/" or naming an
 * existing directory receives the sources by name; a directory source has its contents copied;
 * several sources need a directory dest ("When using COPY with more than one source file, the
 * destination must be a directory and end with a /"). Links are copied as links; devices,
 * FIFOs and sockets are refused. as_dir marks a glob source (a directory dest then too). */
int vs_build_copy(int srcfd, char *const *srcs, size_t n, bool as_dir, int rootfd, const char *dest,
                  const char *workdir, const vs_copy_opts *o, vs_error **err);

/* A build: the context directory, its Dockerfile and the options of docker build. */
typedef struct vs_build_opts {
  const char *context;    /* a directory */
  const char *dockerfile; /* inside the context; "Dockerfile" when NULL */
  char *const *tags;      /* names users type; may be NULL */
  size_t ntags;
  const json_t *build_args; /* name -> string; may be NULL */
  const json_t *labels;     /* name -> string, added to the final image; may be NULL */
  const char *target;       /* stop after this stage; NULL: the last */
  bool nocache;             /* build every step again instead of reusing the cache */
  int progress_fd;          /* "Step N/M : ..." lines go here */
  /* the context's files hashed while they were unpacked (vs_layer_limits.file_digests); NULL:
   * COPY's cache key reads the files */
  const vs_file_digests *context_digests;
  /* RUN: run args (a JSON array) in a container of the stored image whose manifest digest is
   * `image` (its Env, User and WorkingDir) with the "K=V" strings of env added to its
   * environment. *upper receives the container's upper directory (its changes) and *handle what
   * remove needs to remove the container after the step. Returns the command's exit status, or -1
   * with an error. NULL: RUN steps are refused. */
  int (*run)(void *ctx, const char *image, json_t *args, json_t *env, char **upper, char **handle,
             vs_error **err);
  void (*remove)(void *ctx, const char *handle);
  void *run_ctx;
} vs_build_opts;

/* Build an image: FROM (a stored image, "scratch" or an earlier stage), the configuration
 * instructions, COPY (also --from=stage) and RUN (through o->run) each make an image in the
 * store; ADD is refused (not yet supported). The final image's manifest digest goes to id_out and
 * it is tagged. */
int vs_build(vs_store *s, const vs_build_opts *o, char id_out[VS_DIGEST_MAX], vs_error **err);
/* Unmount dir/rootfs (a step's overlay) and remove dir; a failure is logged. */
void vs_build_drop_dir(const char *dir);

#endif
