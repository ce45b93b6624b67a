/* vessel base: the shared C utilities every other module builds on.
 *
 * This is the module's one public header. It depends on nothing else in src/.
 *
 * Error convention (used everywhere in vessel):
 *   A function that can fail takes `vs_error **err` as its last parameter and returns a negative
 *   value (or NULL) on failure after setting *err. Callers add their own context with
 *   vs_error_wrap() on the way up; only main() prints and exits.
 *
 *     if (read_config(path, &cfg, err) < 0)
 *         return vs_error_wrap(err, "load bundle %s", bundle);
 */
#ifndef VESSEL_BASE_H
#define VESSEL_BASE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#include <jansson.h>

/* ---------------------------------------------------------------- errors */

typedef struct vs_error {
  int errnum; /* errno value behind the failure, 0 if none */
  char *msg;  /* full message, context first: "load bundle x: open config.json: No such file" */
} vs_error;

/* Set *err (if err is non-NULL) to a new error; appends ": strerror(errnum)" when errnum != 0.
 * Evaluates to -1 so it can be used as `return vs_error_set(...)`. If *err is already set the
 * old error is freed first. */
#define vs_error_set(err, errnum, ...)                                                             \
  ({                                                                                               \
    vs_error_set_msg((err), (errnum), __VA_ARGS__);                                                \
    -1;                                                                                            \
  })
/* Prefix the existing error with context: "context: old message". Evaluates to -1. If *err is
 * NULL (the callee failed without setting it) a new error with just the context is created. */
#define vs_error_wrap(err, ...)                                                                    \
  ({                                                                                               \
    vs_error_wrap_msg((err), __VA_ARGS__);                                                         \
    -1;                                                                                            \
  })
/* vs_error_set and vs_error_wrap are macros so that the -1 is visible where they are used: the
 * compiler and static analysers then know that `return vs_error_wrap(...)` is a failure path
 * (out-parameters are not set on it). Call these functions directly only through the macros. */
void vs_error_set_msg(vs_error **err, int errnum, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void vs_error_wrap_msg(vs_error **err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int vs_error_setv(vs_error **err, int errnum, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

void vs_error_free(vs_error *err);
void vs_error_freep(vs_error **err);
/* Print "prog: message" to stderr. */
void vs_error_print(const vs_error *err, const char *prog);

/* ------------------------------------------------------------- cleanup */

static inline void vs_freep(void *p) { free(*(void **)p); }
/* cleanup handlers take a pointer to the variable, so the parameter cannot be const */
// NOLINTNEXTLINE(readability-non-const-parameter)
static inline void vs_closep(int *fd) {
  if (*fd >= 0)
    close(*fd);
}
static inline void vs_fclosep(FILE **f) {
  if (*f)
    fclose(*f);
}

#define _cleanup_(f) __attribute__((cleanup(f)))
#define _cleanup_free_ _cleanup_(vs_freep)
#define _cleanup_close_ _cleanup_(vs_closep)
#define _cleanup_fclose_ _cleanup_(vs_fclosep)
#define _cleanup_error_ _cleanup_(vs_error_freep)

/* Hand ownership out of a cleanup variable: `return steal_pointer(&p);` */
#define steal_pointer(pp)                                                                          \
  ({                                                                                               \
    __typeof__(*(pp)) _tmp = *(pp);                                                                \
    *(pp) = NULL;                                                                                  \
    _tmp;                                                                                          \
  })
static inline int steal_fd(int *fd) {
  int r = *fd;
  *fd = -1;
  return r;
}

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Allocation that cannot fail from the caller's point of view: aborts on out-of-memory, like
 * glib's g_malloc. Out-of-memory is not an error vessel can report usefully. */
void *vs_malloc0(size_t n) __attribute__((returns_nonnull, malloc));
/* The same for a type whose _Alignas asks more than malloc gives (16): `align` is a power of two
 * and a multiple of sizeof(void *); free() releases it. */
void *vs_malloc0_aligned(size_t align, size_t n) __attribute__((returns_nonnull, malloc));
void *vs_realloc(void *p, size_t n) __attribute__((returns_nonnull));
char *vs_strdup(const char *s) __attribute__((returns_nonnull, malloc));
char *vs_asprintf(const char *fmt, ...)
    __attribute__((format(printf, 1, 2), returns_nonnull, malloc));

/* --------------------------------------------------------------- logging */

typedef enum {
  VS_LOG_ERROR = 0,
  VS_LOG_WARN = 1,
  VS_LOG_INFO = 2,
  VS_LOG_DEBUG = 3,
} vs_log_level;

typedef enum {
  VS_LOG_FORMAT_TEXT = 0,
  VS_LOG_FORMAT_JSON = 1, /* one JSON object per line: {"level":"info","msg":"...","time":"..."} */
} vs_log_format;

/* The process's logger. There is exactly one per process; it is configured by main() and
 * read by everything else. */
typedef struct vs_logger {
  vs_log_level level;
  vs_log_format format;
  int fd; /* where log lines go; 2 (stderr) by default */
  const char *prog;
} vs_logger;

/* "YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ" (RFC 3339, UTC) into buf (at least 40 bytes). Unlike
 * gmtime_r, it never loads the time zone database (/etc/localtime): a container start is
 * short enough for those seven system calls to show. */
void vs_utc_rfc3339(const struct timespec *ts, char *buf, size_t size);
/* The CLOCK_REALTIME time ms milliseconds from now: the deadline pthread_cond_timedwait takes. */
struct timespec vs_realtime_after_ms(int ms);

vs_logger *vs_log_get(void);
void vs_log_configure(const char *prog, vs_log_level level, vs_log_format format, int fd);
void vs_log(vs_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define vs_log_error(...) vs_log(VS_LOG_ERROR, __VA_ARGS__)
#define vs_log_warn(...) vs_log(VS_LOG_WARN, __VA_ARGS__)
#define vs_log_info(...) vs_log(VS_LOG_INFO, __VA_ARGS__)
#define vs_log_debug(...) vs_log(VS_LOG_DEBUG, __VA_ARGS__)

/* ----------------------------------------------------------------- files */

/* Read a whole file into a new NUL-terminated buffer (*out, free()); *len (if non-NULL) gets the
 * length without the NUL. Files larger than max_len bytes are refused with an error naming the
 * limit, so untrusted files cannot make us allocate without bound. FIFOs and sockets are refused
 * (without blocking in open). */
int vs_read_file(const char *path, size_t max_len, char **out, size_t *len, vs_error **err);

/* Write all of buf to fd, retrying on EINTR and short writes. */
int vs_write_all(int fd, const void *buf, size_t len, vs_error **err);

/* Replace path with data atomically: write a temporary file in the same directory, fsync it,
 * rename it over path and fsync the directory. Readers see the old or the new content, never a
 * mix, and a crash leaves no partial file under path. mode is the new file's permission bits
 * (the umask does not apply). A symlink at path is replaced by the file, not written through. */
int vs_write_file_atomic(const char *path, const void *data, size_t len, mode_t mode,
                         vs_error **err);

/* Create (or truncate) path and write data, without syncing: for files a later commit point
 * makes durable (an fsync of the file system before the file that names them is written). A
 * symlink at path is an error, not followed. */
int vs_write_file(const char *path, const void *data, size_t len, mode_t mode, vs_error **err);

/* mkdir -p: create path and its missing parents with mode; existing directories are fine. */
int vs_mkdir_p(const char *path, mode_t mode, vs_error **err);

/* rm -rf: remove path and everything below it. Symbolic links are removed, never followed;
 * read-only directories are made writable first. A missing path is not an error. Mount points
 * below path are never entered: finding one is an error (EBUSY) naming it, so a forgotten bind
 * mount cannot take its source with it. */
int vs_rm_rf(const char *path, vs_error **err);
/* rm -rf of the entry name (one component) of the directory dirfd, without a path string: every
 * step is relative to an open descriptor, so it works on trees that are not reachable by path
 * from here (another mount namespace) and a renamed parent cannot redirect it. Mount points are
 * refused as vs_rm_rf does. */
int vs_rm_rf_at(int dirfd, const char *name, vs_error **err);

/* Open path inside the directory rootfd as if rootfd were "/": "..", absolute paths and symbolic
 * links (absolute or relative) never leave the root, and magic links (/proc/self/fd/N) are
 * refused. Uses openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS) and falls back to an equivalent
 * component-by-component walk with O_NOFOLLOW when the kernel lacks openat2. flags and mode are
 * those of openat(2); O_CLOEXEC is always added. rootfd must be an open directory (O_PATH is
 * enough), not AT_FDCWD. Returns the new fd. */
int vs_openat_in_root(int rootfd, const char *path, int flags, mode_t mode, vs_error **err);

/* mkdir -p inside a root: every component is resolved as vs_openat_in_root does, so symlinks in
 * the path are followed inside the root. Returns 0 when path is (now) a directory. */
int vs_mkdir_p_in_root(int rootfd, const char *path, mode_t mode, vs_error **err);

/* --------------------------------------------------------------- parsing */

/* Strict unsigned decimal (or 0x hex) number: the whole string, no sign, no spaces, no
 * overflow. `what` names the value in errors ("--cpus"). */
int vs_parse_u64(const char *s, const char *what, uint64_t *out, vs_error **err);
/* The value of one hexadecimal digit (either case), or -1 for any other character. */
static inline int vs_hex_digit(int c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}
/* A size with an optional binary suffix: "4096", "512K", "512M", "2G", "1T" (also "KiB", "MiB",
 * "GiB", "TiB"); overflow is an error. */
int vs_parse_size(const char *s, const char *what, uint64_t *out, vs_error **err);
/* d as an integer, truncated and saturated at INT64_MIN and INT64_MAX, NaN as 0: for figures
 * from untrusted JSON, where a plain cast of 1e300 would be undefined behaviour. */
int64_t vs_i64_saturate(double d);

/* ------------------------------------------------------------------ JSON */

/* vessel's JSON is jansson's json_t; these wrappers turn jansson's errors into vs_error values
 * that name the source, line and column, and the getters name the field and the expected type.
 * Duplicate object keys are rejected and strings may not contain NUL. Free with json_decref(). */
static inline void vs_json_decrefp(json_t **j) {
  if (*j)
    json_decref(*j);
}
#define _cleanup_json_ _cleanup_(vs_json_decrefp)

/* Write j to path atomically (vs_write_file_atomic) as indented JSON with sorted keys and a
 * final newline. */
int vs_json_write_file(const char *path, const json_t *j, mode_t mode, vs_error **err);

/* Parse a file of at most max_len bytes. */
json_t *vs_json_load_file(const char *path, size_t max_len, vs_error **err);
/* Parse len bytes of text; `what` names the source in errors ("config.json", "registry reply"). */
json_t *vs_json_loads(const char *text, size_t len, const char *what, vs_error **err);

/* Typed getters: look up obj[field] and check its type.
 *   returns 1 and sets *out if the field is present with the right type;
 *   returns 0 and leaves *out untouched if it is absent (or JSON null) and not required;
 *   returns -1 with an error naming the field if it is missing but required, has the wrong type
 *   ("field \"args\": expected array, found string") or an out-of-range value, or obj is not an
 *   object.
 * Strings and containers are borrowed from obj (no new reference). */
int vs_json_get_string(const json_t *obj, const char *field, bool required, const char **out,
                       vs_error **err);
int vs_json_get_int(const json_t *obj, const char *field, bool required, int64_t *out,
                    vs_error **err);
/* Non-negative integers up to INT64_MAX (jansson's integer range). */
int vs_json_get_uint64(const json_t *obj, const char *field, bool required, uint64_t *out,
                       vs_error **err);
int vs_json_get_bool(const json_t *obj, const char *field, bool required, bool *out,
                     vs_error **err);
int vs_json_get_array(const json_t *obj, const char *field, bool required, json_t **out,
                      vs_error **err);
int vs_json_get_object(const json_t *obj, const char *field, bool required, json_t **out,
                       vs_error **err);
/* An array of strings (OCI args, env): *out gets a new NULL-terminated array of borrowed strings
 * (free() the array, not the strings) and *n (if non-NULL) its length. An element of another
 * type is an error naming the field and index: "field \"args\"[2]: expected string, found
 * integer". Same return values as the getters above. */
int vs_json_get_string_array(const json_t *obj, const char *field, bool required, const char ***out,
                             size_t *n, vs_error **err);
/* The strings of an array joined with sep ("a b c"); elements that are not strings are
 * skipped. Caller frees. */
char *vs_json_join(const json_t *strings, const char *sep);
/* "object", "array", "string", "integer", "real", "boolean", "null" */
const char *vs_json_type_name(const json_t *j);

/* --------------------------------------------------------------- SHA-256 */

#define VS_SHA256_HEX_LEN 64 /* hex digits; buffers are VS_SHA256_HEX_LEN + 1 */

/* Incremental SHA-256 (OpenSSL libcrypto EVP). init allocates; final (or abandon) frees. */
typedef struct vs_sha256_ctx {
  void *md; /* EVP_MD_CTX */
} vs_sha256_ctx;

void vs_sha256_init(vs_sha256_ctx *ctx);
void vs_sha256_update(vs_sha256_ctx *ctx, const void *data, size_t len);
/* Lowercase hex digest, NUL-terminated. */
void vs_sha256_final(vs_sha256_ctx *ctx, char out[VS_SHA256_HEX_LEN + 1]);
void vs_sha256_final_raw(vs_sha256_ctx *ctx, uint8_t out[32]);
/* Free a context without finishing it. */
void vs_sha256_abandon(vs_sha256_ctx *ctx);

void vs_sha256_hex(const void *data, size_t len, char out[VS_SHA256_HEX_LEN + 1]);
int vs_sha256_fd(int fd, char out[VS_SHA256_HEX_LEN + 1], vs_error **err);
int vs_sha256_file(const char *path, char out[VS_SHA256_HEX_LEN + 1], vs_error **err);

/* ------------------------------------------------------------- processes */

#define VS_SPAWN_INHERIT (-1) /* the child keeps our stdin/stdout/stderr */
#define VS_SPAWN_DEVNULL (-2) /* the child gets /dev/null */
#define VS_SPAWN_MAX_EXTRA_FDS 64

typedef struct vs_spawn_opts {
  int stdin_fd; /* fd to become the child's 0, or VS_SPAWN_INHERIT / VS_SPAWN_DEVNULL */
  int stdout_fd;
  int stderr_fd;
  char *const *env; /* environment for the child; NULL keeps ours (PATH search uses ours) */
  const char *cwd;  /* working directory for the child; NULL keeps ours */
  bool new_session; /* setsid() in the child */
  /* Descriptors the child gets as 3, 4, ... (extra_fds[i] becomes 3 + i). Every other fd above
   * 2 is closed on exec in the child, CLOEXEC or not, so nothing leaks by accident. */
  const int *extra_fds;
  size_t n_extra_fds;
} vs_spawn_opts;

/* Initialise with this: the fd fields must not default to 0 (which is a real fd). */
#define VS_SPAWN_OPTS_INIT                                                                         \
  { .stdin_fd = VS_SPAWN_INHERIT, .stdout_fd = VS_SPAWN_INHERIT, .stderr_fd = VS_SPAWN_INHERIT }

/* Start argv[0] (searched in PATH if it has no '/') with argv. opts may be NULL (inherit all).
 * The child starts with default signal dispositions and an empty signal mask. A failure in the
 * child before exec (chdir, dup2, exec itself) is reported here with what failed, not as an
 * exit status. */
int vs_spawn(char *const argv[], const vs_spawn_opts *opts, pid_t *pid, vs_error **err);
/* waitpid, retrying on EINTR; *status gets the raw wait status (WIFEXITED, WEXITSTATUS...). */
int vs_wait_pid(pid_t pid, int *status, vs_error **err);
/* Spawn with inherited stdio and wait. Returns 0 when the program ran (whatever its exit);
 * *status is the raw wait status, so `status == 0` means it exited with 0. */
int vs_run_command(char *const argv[], int *status, vs_error **err);
/* "exited with status 3", "killed by signal 9 (Killed)"; returns a new string. */
char *vs_wait_status_str(int status);

/* ----------------------------------------------------------- unix sockets */

#define VS_MAX_PASS_FDS 253 /* the kernel's SCM_MAX_FD */

/* Bind a SOCK_STREAM unix socket at path with permission bits mode (applied to the socket
 * before bind, so the file never exists with wider permissions) and listen. An existing file at
 * path is an error (EADDRINUSE): remove a stale socket first. */
int vs_unix_listen(const char *path, mode_t mode, vs_error **err);
int vs_unix_connect(const char *path, vs_error **err);
/* Remove a socket file that a dead server left at path, so a new one can listen there. A socket
 * somebody still answers on is an error (EADDRINUSE), and so is a file that is not a socket
 * (EEXIST); no file at path is fine. */
int vs_unix_remove_stale(const char *path, vs_error **err);
/* Send all len (>= 1) bytes of buf, with nfds (<= VS_MAX_PASS_FDS) descriptors attached to the
 * first byte via SCM_RIGHTS. Never raises SIGPIPE. */
int vs_send_fds(int sock, const void *buf, size_t len, const int *fds, size_t nfds, vs_error **err);
/* Receive up to cap (>= 1) bytes and up to max_fds descriptors (close-on-exec) into fds_out; *nfds
 * gets the number received. Returns the byte count (0 at end of stream). If the peer sent more
 * descriptors than fit (MSG_CTRUNC) everything received is closed and an error says so. */
ssize_t vs_recv_fds(int sock, void *buf, size_t cap, int *fds_out, size_t max_fds, size_t *nfds,
                    vs_error **err);

/* ---- iovec lists (iov.c): guest request buffers, sliced and copied without knowing their
 * layout */

uint64_t vs_iov_total(const struct iovec *iov, unsigned n);
/* Bytes [skip, skip+len) of a list as iovecs into the same buffers (nothing is copied), e.g. one
 * part of a guest request for one preadv. Empty buffers are left out, so dst needs room for at
 * most n entries and at most len; returns how many it holds. */
unsigned vs_iov_slice(const struct iovec *iov, unsigned n, uint64_t skip, uint64_t len,
                      struct iovec *dst);
/* Copy up to len bytes between buf and the list from byte `skip` on; returns the bytes copied
 * (fewer when the list ends first). */
size_t vs_iov_copy_from(const struct iovec *iov, unsigned n, size_t skip, void *buf, size_t len);
size_t vs_iov_copy_to(const struct iovec *iov, unsigned n, size_t skip, const void *buf,
                      size_t len);
void vs_iov_zero(const struct iovec *iov, unsigned n);

#endif
