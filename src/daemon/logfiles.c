/* The json-file log's rotation (`--log-opt max-size=… max-file=…`), as dockerd's json-file
 * driver does it: when an entry would take the log past max-size, <id>-json.log becomes
 * <id>-json.log.1, .1 becomes .2 and so on, the oldest beyond max-file - 1 goes, and a new log
 * begins; with max-file 1 the log is emptied instead. The monitor rotates (it is the one
 * writer); vesseld's readers go from the oldest file to the newest, and a follower that reaches
 * the end of a file that has been rotated away goes on in the next one. The renames of one
 * rotation are not atomic together, so the writer holds an exclusive flock on the log's
 * directory while it renames and readers a shared one while they look at the names. */
#include "daemon/internal.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <libgen.h>
#include <sys/mman.h>
#include <zlib.h>
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_LOG_FILES 1000

/* Docker's sizes (units.RAMInBytes): "10m", "1.5g", "512k", "100kb", "2MiB", "4096". */
static int parse_ram_size(const char *s, int64_t *out, vs_error **err) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (end == s || errno || !isfinite(v) || v < 0 || !isdigit((unsigned char)s[0]))
    return vs_error_set(err, EINVAL, "invalid size: '%s'", s);
  if (*end == ' ')
    end++;
  double mult = 1;
  const char *units = "kmgtp";
  const char *u = *end ? strchr(units, tolower((unsigned char)*end)) : NULL;
  if (u && *u) {
    for (const char *p = units; p <= u; p++)
      mult *= 1024;
    end++;
  }
  if (*end == 'i' || *end == 'I')
    end++;
  if (*end == 'b' || *end == 'B')
    end++;
  if (*end || v * mult > 9.0e18)
    return vs_error_set(err, EINVAL, "invalid size: '%s'", s);
  *out = (int64_t)(v * mult);
  return 0;
}

/* The tag log option's template with the container's fields, as dockerd's json-file driver
 * expands it into attrs.tag: {{.ID}} (12 digits), {{.FullID}}, {{.Name}}, {{.ImageID}} (12),
 * {{.ImageFullID}}, {{.ImageName}}, {{.DaemonName}}. rec NULL only checks the template. */
static char *expand_tag(const char *tmpl, json_t *rec, vs_error **err) {
  const char *id = json_string_value(json_object_get(rec, "Id"));
  const char *name = json_string_value(json_object_get(rec, "Name"));
  const char *image = json_string_value(json_object_get(rec, "Image"));
  const char *iname = json_string_value(json_object_get(json_object_get(rec, "Config"), "Image"));
  id = id ? id : "";
  name = name ? name + (name[0] == '/') : "";
  image = image ? image + (strncmp(image, "sha256:", 7) ? 0 : 7) : "";
  iname = iname ? iname : "";
  char *out = vs_strdup("");
  for (const char *p = tmpl; *p;) {
    const char *open = strstr(p, "{{");
    size_t lit = open ? (size_t)(open - p) : strlen(p);
    char *next = vs_asprintf("%s%.*s", out, (int)lit, p);
    free(out);
    out = next;
    if (!open)
      break;
    const char *close = strstr(open, "}}");
    if (!close) {
      free(out);
      vs_error_set(err, EINVAL, "template: unclosed action in %s", tmpl);
      return NULL;
    }
    char field[32] = "";
    size_t fl = (size_t)(close - open - 2);
    const char *f = open + 2;
    while (fl && *f == ' ')
      f++, fl--;
    while (fl && f[fl - 1] == ' ')
      fl--;
    if (fl < sizeof(field))
      snprintf(field, sizeof(field), "%.*s", (int)fl, f);
    const char *val = !strcmp(field, ".ID")            ? vs_asprintf("%.12s", id)
                      : !strcmp(field, ".FullID")      ? vs_strdup(id)
                      : !strcmp(field, ".Name")        ? vs_strdup(name)
                      : !strcmp(field, ".ImageID")     ? vs_asprintf("%.12s", image)
                      : !strcmp(field, ".ImageFullID") ? vs_strdup(image)
                      : !strcmp(field, ".ImageName")   ? vs_strdup(iname)
                      : !strcmp(field, ".DaemonName")  ? vs_strdup("docker")
                                                       : NULL;
    if (!val) {
      vs_error_set(err, EINVAL, "template: can't evaluate %.*s", (int)(close + 2 - open), open);
      free(out);
      return NULL;
    }
    next = vs_asprintf("%s%s", out, val);
    free((char *)val);
    free(out);
    out = next;
    p = close + 2;
  }
  return out;
}

/* labels-regex and env-regex are Go regular expressions in dockerd (RE2 syntax, matched in
 * linear time). They are compiled here with PCRE2, whose syntax is a superset of RE2's, and
 * matched under a match and heap limit; glibc's regcomp is not fit for a pattern from a client:
 * it copies the operand of every repetition, and nested repetitions ("((a*)+)+…", "x+++…" of a
 * few dozen bytes) take it minutes or gigabytes to compile. A match that reaches a limit counts
 * as no match (only a hostile pattern gets there: names are short). */
#define LOG_REGEX_MAX_LEN 1024
#define LOG_REGEX_MATCH_LIMIT 100000
#define LOG_REGEX_HEAP_KIB 4096

typedef struct {
  pcre2_code *code;
  pcre2_match_data *md;
  pcre2_match_context *mctx;
} log_regex;

static void log_regex_free(log_regex *re) {
  pcre2_match_context_free(re->mctx);
  pcre2_match_data_free(re->md);
  pcre2_code_free(re->code);
  *re = (log_regex){0};
}

static int log_regex_compile(log_regex *re, const char *key, const char *s, vs_error **err) {
  *re = (log_regex){0};
  size_t len = strlen(s);
  if (len > LOG_REGEX_MAX_LEN)
    return vs_error_set(err, EINVAL, "log opt %s: regular expression longer than %d bytes", key,
                        LOG_REGEX_MAX_LEN);
  int code;
  PCRE2_SIZE off;
  re->code =
      pcre2_compile((PCRE2_SPTR)s, len, PCRE2_UTF | PCRE2_MATCH_INVALID_UTF, &code, &off, NULL);
  if (!re->code) {
    PCRE2_UCHAR msg[160];
    pcre2_get_error_message(code, msg, sizeof(msg));
    return vs_error_set(err, EINVAL, "log opt %s: invalid regular expression %s: %s at offset %zu",
                        key, s, (const char *)msg, (size_t)off);
  }
  re->md = pcre2_match_data_create(1, NULL);
  re->mctx = pcre2_match_context_create(NULL);
  if (!re->md || !re->mctx) {
    log_regex_free(re);
    return vs_error_set(err, ENOMEM, "log opt %s: out of memory", key);
  }
  pcre2_set_match_limit(re->mctx, LOG_REGEX_MATCH_LIMIT);
  pcre2_set_heap_limit(re->mctx, LOG_REGEX_HEAP_KIB);
  return 0;
}

static bool log_regex_matches(const log_regex *re, const char *name) {
  return pcre2_match(re->code, (PCRE2_SPTR)name, strlen(name), 0, 0, re->md, re->mctx) >= 0;
}

/* Names from a comma-separated option ("a,b") or matching its regular expression. */
static bool attr_wanted(const char *list, const log_regex *re, const char *name) {
  if (re && re->code && log_regex_matches(re, name))
    return true;
  if (!list)
    return false;
  size_t n = strlen(name);
  for (const char *p = list; *p;) {
    const char *comma = strchr(p, ',');
    size_t l = comma ? (size_t)(comma - p) : strlen(p);
    if (l == n && !memcmp(p, name, n))
      return true;
    p += l + (comma != NULL);
  }
  return false;
}

json_t *vd_log_attrs(json_t *rec) {
  json_t *opts =
      json_object_get(json_object_get(json_object_get(rec, "HostConfig"), "LogConfig"), "Config");
  json_t *cfg = json_object_get(rec, "Config");
  const char *labels = json_string_value(json_object_get(opts, "labels"));
  const char *labels_re = json_string_value(json_object_get(opts, "labels-regex"));
  const char *env = json_string_value(json_object_get(opts, "env"));
  const char *env_re = json_string_value(json_object_get(opts, "env-regex"));
  const char *tag = json_string_value(json_object_get(opts, "tag"));
  json_t *attrs = json_object();
  log_regex lre = {0}, ere = {0};
  if (labels_re)
    (void)log_regex_compile(&lre, "labels-regex", labels_re, NULL);
  if (env_re)
    (void)log_regex_compile(&ere, "env-regex", env_re, NULL);
  const char *key;
  json_t *v;
  json_object_foreach(json_object_get(cfg, "Labels"), key, v) {
    if (json_is_string(v) && attr_wanted(labels, &lre, key))
      json_object_set(attrs, key, v);
  }
  size_t i;
  json_array_foreach(json_object_get(cfg, "Env"), i, v) {
    const char *kv = json_string_value(v);
    const char *eq = kv ? strchr(kv, '=') : NULL;
    if (!eq)
      continue;
    _cleanup_free_ char *name = vs_asprintf("%.*s", (int)(eq - kv), kv);
    if (attr_wanted(env, &ere, name))
      json_object_set_new(attrs, name, json_string(eq + 1));
  }
  log_regex_free(&lre);
  log_regex_free(&ere);
  char *t = tag ? expand_tag(tag, rec, NULL) : NULL;
  if (t && *t)
    json_object_set_new(attrs, "tag", json_string(t));
  free(t);
  if (!json_object_size(attrs)) {
    json_decref(attrs);
    return NULL;
  }
  return attrs;
}

int vd_log_options(json_t *host_config, vd_log_opts *out, vs_error **err) {
  *out = (vd_log_opts){.max_size = -1, .max_files = 1};
  json_t *lc = json_object_get(host_config, "LogConfig");
  if (!lc || json_is_null(lc))
    return 0;
  if (!json_is_object(lc))
    return vs_error_set(err, EINVAL, "field \"LogConfig\": expected object, found %s",
                        vs_json_type_name(lc));
  const char *type = json_string_value(json_object_get(lc, "Type"));
  if (type && *type && strcmp(type, "json-file") != 0)
    return vs_error_set(err, EINVAL, "logging driver %s: not supported by vesseld (json-file is)",
                        type);
  json_t *cfg = json_object_get(lc, "Config");
  const char *key;
  json_t *v;
  json_object_foreach(cfg, key, v) {
    const char *s = json_string_value(v);
    if (!s)
      return vs_error_set(err, EINVAL, "log opt %s: expected a string", key);
    if (!strcmp(key, "max-size")) {
      if (strcmp(s, "-1") != 0 && parse_ram_size(s, &out->max_size, err) < 0)
        return vs_error_wrap(err, "log opt max-size");
      if (out->max_size == 0)
        return vs_error_set(err, EINVAL, "log opt max-size: must be a positive size or -1");
    } else if (!strcmp(key, "max-file")) {
      uint64_t n;
      if (vs_parse_u64(s, "log opt max-file", &n, err) < 0)
        return -1;
      if (n < 1)
        return vs_error_set(err, EINVAL, "max-file cannot be less than 1");
      if (n > MAX_LOG_FILES)
        return vs_error_set(err, EINVAL, "max-file cannot be more than %d", MAX_LOG_FILES);
      out->max_files = (unsigned)n;
    } else if (!strcmp(key, "labels-regex") || !strcmp(key, "env-regex")) {
      log_regex re;
      if (log_regex_compile(&re, key, s, err) < 0)
        return -1;
      log_regex_free(&re);
    } else if (!strcmp(key, "tag")) {
      _cleanup_free_ char *t = expand_tag(s, NULL, err);
      if (!t)
        return vs_error_wrap(err, "log opt tag");
    } else if (!strcmp(key, "compress")) {
      /* Go's strconv.ParseBool */
      static const char *const yes[] = {"1", "t", "T", "TRUE", "true", "True"};
      static const char *const no[] = {"0", "f", "F", "FALSE", "false", "False"};
      bool known = false;
      for (size_t k = 0; k < ARRAY_SIZE(yes); k++) {
        if (!strcmp(s, yes[k]))
          known = out->compress = true;
        if (!strcmp(s, no[k]))
          known = true, out->compress = false;
      }
      if (!known)
        return vs_error_set(err, EINVAL, "error reading compress log option: invalid syntax: %s",
                            s);
    } else if (strcmp(key, "labels") != 0 && strcmp(key, "env") != 0) {
      return vs_error_set(err, EINVAL, "unknown log opt '%s' for json-file log driver", key);
    }
  }
  if (out->max_files > 1 && out->max_size < 0)
    return vs_error_set(err, EINVAL, "max-file cannot be set when max-size is not set");
  return 0;
}

char *vd_log_rotated_path(const char *path, unsigned i) {
  return i ? vs_asprintf("%s.%u", path, i) : vs_strdup(path);
}

/* flock(op) on the directory of the log: a descriptor to close, or -1 (then unlocked). */
static int lock_log_dir(const char *path, int op) {
  _cleanup_free_ char *copy = vs_strdup(path);
  int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  while (fd >= 0 && flock(fd, op) < 0) {
    if (errno != EINTR) {
      close(fd);
      return -1;
    }
  }
  return fd;
}

/* gzip path.1 into path.1.gz (through a temporary name) and remove path.1. */
static int compress_newest(const char *path) {
  _cleanup_free_ char *src = vd_log_rotated_path(path, 1);
  _cleanup_free_ char *tmp = vs_asprintf("%s.gz.tmp", src);
  _cleanup_free_ char *dst = vs_asprintf("%s.gz", src);
  _cleanup_close_ int in = open(src, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  int out = in < 0 ? -1 : open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
  gzFile gz = out < 0 ? NULL : gzdopen(out, "wb");
  if (!gz) {
    if (out >= 0)
      close(out);
    return -1;
  }
  char buf[65536];
  ssize_t n;
  bool ok = true;
  while (ok && (n = read(in, buf, sizeof(buf))) > 0)
    ok = gzwrite(gz, buf, (unsigned)n) == (int)n;
  ok = gzclose(gz) == Z_OK && ok && n == 0; /* closes out */
  if (!ok || rename(tmp, dst) < 0) {
    unlink(tmp);
    return -1;
  }
  return unlink(src);
}

/* Both names of rotated file i: path.i and path.i.gz. */
static int rename_rotated(const char *path, unsigned from_i, unsigned to_i) {
  int r = 0;
  for (int gz = 0; gz < 2; gz++) {
    _cleanup_free_ char *f = vd_log_rotated_path(path, from_i);
    _cleanup_free_ char *t = vd_log_rotated_path(path, to_i);
    _cleanup_free_ char *from = gz ? vs_asprintf("%s.gz", f) : vs_strdup(f);
    _cleanup_free_ char *to = gz ? vs_asprintf("%s.gz", t) : vs_strdup(t);
    if (rename(from, to) < 0 && errno != ENOENT)
      r = -1;
  }
  return r;
}

int vd_log_rotate(const char *path, unsigned max_files, bool compress) {
  _cleanup_close_ int lock = lock_log_dir(path, LOCK_EX);
  (void)lock; /* held until the function returns */
  /* the oldest goes in either form (a rename only replaces the same form) */
  _cleanup_free_ char *last = vd_log_rotated_path(path, max_files - 1);
  _cleanup_free_ char *last_gz = vs_asprintf("%s.gz", last);
  unlink(last);
  unlink(last_gz);
  for (unsigned i = max_files - 1; i >= 1; i--)
    if (rename_rotated(path, i - 1, i) < 0)
      return -1;
  /* dockerd compresses the newly rotated file on the side; here, under the lock, so a reader
   * never finds both forms or neither (a full log of max-size is a short stall) */
  if (compress && compress_newest(path) < 0)
    vs_log_warn("compress the rotated log %s.1: %s", path, strerror(errno));
  return 0;
}

static bool rotated_gz_exists(const char *path, unsigned i) {
  _cleanup_free_ char *p = vd_log_rotated_path(path, i);
  _cleanup_free_ char *gz = vs_asprintf("%s.gz", p);
  return access(gz, F_OK) == 0;
}

/* How many rotated files there are (.1 .. .n, each plain or compressed). */
static unsigned rotated_count(const char *path) {
  unsigned n = 0;
  for (; n < MAX_LOG_FILES; n++) {
    _cleanup_free_ char *p = vd_log_rotated_path(path, n + 1);
    if (access(p, F_OK) < 0 && !rotated_gz_exists(path, n + 1))
      break;
  }
  return n;
}

/* A compressed rotated file, decompressed into an anonymous file the readers take as any. */
static int open_gz(const char *gz_path) {
  int in = open(gz_path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  gzFile gz = in < 0 ? NULL : gzdopen(in, "rb");
  if (!gz) {
    if (in >= 0)
      close(in);
    return -1;
  }
  int fd = memfd_create("vessel-log", MFD_CLOEXEC);
  char buf[65536];
  int n = 0;
  while (fd >= 0 && (n = gzread(gz, buf, sizeof(buf))) > 0)
    if (vs_write_all(fd, buf, (size_t)n, NULL) < 0)
      n = -1;
  gzclose(gz);
  if (fd >= 0 && (n < 0 || lseek(fd, 0, SEEK_SET) < 0)) {
    close(fd);
    return -1;
  }
  return fd;
}

/* The start of a file's first entry (at most size - 1 bytes, NUL-terminated): its length. */
static ssize_t first_entry_fd(int fd, char *buf, size_t size) {
  ssize_t n = pread(fd, buf, size - 1, 0);
  if (n <= 0)
    return -1;
  buf[n] = 0;
  buf[strcspn(buf, "\n")] = 0;
  return (ssize_t)strlen(buf);
}

static ssize_t first_entry_gz(const char *path, unsigned i, char *buf, size_t size) {
  _cleanup_free_ char *p = vd_log_rotated_path(path, i);
  _cleanup_free_ char *gzp = vs_asprintf("%s.gz", p);
  int fd = open(gzp, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  gzFile gz = fd < 0 ? NULL : gzdopen(fd, "rb");
  if (!gz) {
    if (fd >= 0)
      close(fd);
    return -1;
  }
  int n = gzread(gz, buf, (unsigned)size - 1);
  gzclose(gz);
  if (n <= 0)
    return -1;
  buf[n] = 0;
  buf[strcspn(buf, "\n")] = 0;
  return (ssize_t)strlen(buf);
}

static int open_log_file(const char *path, unsigned i) {
  _cleanup_free_ char *p = vd_log_rotated_path(path, i);
  int fd = open(p, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0 && errno == ENOENT && i > 0) {
    _cleanup_free_ char *gz = vs_asprintf("%s.gz", p);
    fd = open_gz(gz);
  }
  return fd;
}

static int open_oldest(const char *path) {
  for (unsigned i = rotated_count(path); i > 0; i--) {
    int fd = open_log_file(path, i);
    if (fd >= 0)
      return fd;
  }
  return open_log_file(path, 0);
}

int vd_log_open_oldest(const char *path) {
  _cleanup_close_ int lock = lock_log_dir(path, LOCK_SH);
  (void)lock; /* held until the function returns */
  return open_oldest(path);
}

int vd_log_open_next(const char *path, int fd) {
  struct stat cur, now;
  if (fstat(fd, &cur) < 0)
    return -1;
  /* the common case, cheap: ours is still the log being written */
  if (stat(path, &now) == 0 && now.st_dev == cur.st_dev && now.st_ino == cur.st_ino)
    return -1;
  _cleanup_close_ int lock = lock_log_dir(path, LOCK_SH);
  (void)lock; /* held until the function returns */
  /* again under the lock: a rotation (and its compression) may have ended meanwhile */
  if (fstat(fd, &cur) < 0)
    return -1;
  /* The monitor moves to a new file only after its last write to ours, but that write may
   * have come after the caller's read found the end: ours is read to its real end (final now
   * that it is rotated) before the caller moves on. */
  off_t pos = lseek(fd, 0, SEEK_CUR);
  if (pos >= 0 && pos < cur.st_size)
    return VD_LOG_UNREAD;
  unsigned n = rotated_count(path);
  /* files oldest first: .n … .1, then the log itself; ours is found by its inode */
  bool found = false;
  for (unsigned i = n + 1; i-- > 0;) {
    _cleanup_free_ char *p = vd_log_rotated_path(path, i);
    struct stat st;
    if (stat(p, &st) < 0)
      continue;
    if (found)
      return open(p, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    found = st.st_dev == cur.st_dev && st.st_ino == cur.st_ino;
  }
  if (found)
    return -1; /* ours is the newest */
  /* with compress, ours may live on as a .gz (its plain name removed): found by its first
   * entry, which has the time it was written to the nanosecond */
  char mine[512], theirs[512];
  if (cur.st_nlink == 0 && first_entry_fd(fd, mine, sizeof(mine)) > 0)
    for (unsigned i = n; i >= 1; i--)
      if (rotated_gz_exists(path, i) && first_entry_gz(path, i, theirs, sizeof(theirs)) > 0 &&
          !strcmp(mine, theirs))
        return open_log_file(path, i - 1);
  /* ours was rotated away altogether: whatever is left is newer than it */
  return open_oldest(path);
}

long long vd_log_fd_seek_tail(int fd, long long n) {
  struct stat st;
  if (fstat(fd, &st) < 0 || st.st_size == 0)
    return 0;
  off_t pos = st.st_size;
  long long lines = 0; /* line starts found after pos, the file's end excluded */
  char buf[8192];
  while (pos > 0) {
    size_t len = pos < (off_t)sizeof(buf) ? (size_t)pos : sizeof(buf);
    pos -= (off_t)len;
    if (pread(fd, buf, len, pos) != (ssize_t)len)
      break;
    for (size_t i = len; i-- > 0;) {
      /* a newline starts a line unless it is the file's last byte */
      if (buf[i] != '\n' || pos + (off_t)i == st.st_size - 1)
        continue;
      if (++lines == n) {
        lseek(fd, pos + (off_t)i + 1, SEEK_SET);
        return n;
      }
    }
  }
  lseek(fd, 0, SEEK_SET);
  return lines + 1; /* and the first line */
}

int vd_log_seek_tail(const char *path, long long n, int *fd_out) {
  _cleanup_close_ int lock = lock_log_dir(path, LOCK_SH);
  (void)lock; /* held until the function returns */
  unsigned rotated = rotated_count(path);
  long long want = n;
  for (unsigned i = 0; i <= rotated; i++) {
    int fd = open_log_file(path, i);
    if (fd < 0)
      continue;
    long long found = vd_log_fd_seek_tail(fd, want);
    if (found >= want || i == rotated) {
      *fd_out = fd;
      return 0;
    }
    close(fd);
    want -= found;
  }
  *fd_out = open_log_file(path, 0);
  return *fd_out < 0 ? -1 : 0;
}
