/* Where the host's cgroup hierarchies are and where the calling process sits in each of them,
 * parsed from /proc/self/mountinfo and /proc/self/cgroup; plus small control-file helpers. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <string.h>
#include <sys/stat.h>

#include "ctr/cgroup_internal.h"

/* Mount options of a v1 cgroup mount that are not controller names. */
static bool is_v1_non_controller_option(const char *opt) {
  static const char *const skip[] = {"rw",           "ro",
                                     "noprefix",     "clone_children",
                                     "xattr",        "cpuset_v2_mode",
                                     "favordynmods", "nofavordynmods",
                                     "none",         "all"};
  for (size_t i = 0; i < ARRAY_SIZE(skip); i++)
    if (strcmp(opt, skip[i]) == 0)
      return true;
  /* release_agent=..., anything with '=' except name= */
  return strchr(opt, '=') != NULL && strncmp(opt, "name=", 5) != 0;
}

bool cg_list_has(const char *list, const char *item) {
  size_t n = strlen(item);
  const char *p = list;
  while (p && *p) {
    const char *comma = strchr(p, ',');
    size_t len = comma ? (size_t)(comma - p) : strlen(p);
    if (len == n && strncmp(p, item, n) == 0)
      return true;
    p = comma ? comma + 1 : NULL;
  }
  return false;
}

static size_t list_count(const char *list) {
  size_t n = 0;
  for (const char *p = list; p && *p; p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL)
    n++;
  return n;
}

/* Two comma lists name the same set of controllers. */
static bool same_set(const char *a, const char *b) {
  if (list_count(a) != list_count(b))
    return false;
  for (const char *p = a; p && *p;) {
    const char *c = strchr(p, ',');
    size_t len = c ? (size_t)(c - p) : strlen(p);
    char item[128];
    if (len >= sizeof(item))
      return false;
    memcpy(item, p, len);
    item[len] = 0;
    if (!cg_list_has(b, item))
      return false;
    p = c ? c + 1 : NULL;
  }
  return true;
}

/* mountinfo escapes space, tab, newline and backslash as \ooo. */
static char *unescape_mount_field(const char *s) {
  char *out = vs_malloc0(strlen(s) + 1), *o = out;
  while (*s) {
    if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' && s[2] <= '7' && s[3] >= '0' &&
        s[3] <= '7') {
      *o++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
      s += 4;
    } else {
      *o++ = *s++;
    }
  }
  return out;
}

void cg_layout_clear(cg_layout *l) {
  for (size_t i = 0; i < l->n; i++) {
    free(l->h[i].mountpoint);
    free(l->h[i].mount_root);
    free(l->h[i].controllers);
    free(l->h[i].self_path);
  }
  free(l->h);
  l->h = NULL;
  l->n = 0;
}

static bool layout_has(const cg_layout *l, bool unified, const char *controllers) {
  for (size_t i = 0; i < l->n; i++)
    if (l->h[i].unified == unified && (unified || same_set(l->h[i].controllers, controllers)))
      return true;
  return false;
}

/* One mountinfo line: "ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [OPTIONAL...] - FSTYPE SRC SUPER". */
static void parse_mountinfo_line(char *line, cg_layout *l) {
  char *fields[64];
  size_t nf = 0;
  for (char *save = NULL, *tok = strtok_r(line, " ", &save); tok && nf < ARRAY_SIZE(fields);
       tok = strtok_r(NULL, " ", &save))
    fields[nf++] = tok;
  size_t sep = 0;
  for (size_t i = 6; i < nf; i++)
    if (strcmp(fields[i], "-") == 0) {
      sep = i;
      break;
    }
  if (nf < 7 || sep == 0 || sep + 3 > nf)
    return;
  const char *fstype = fields[sep + 1];
  bool unified = strcmp(fstype, "cgroup2") == 0;
  if (!unified && strcmp(fstype, "cgroup") != 0)
    return;

  _cleanup_free_ char *controllers = vs_strdup("");
  if (!unified) {
    char *save = NULL;
    for (char *opt = strtok_r(fields[sep + 3], ",", &save); opt; opt = strtok_r(NULL, ",", &save)) {
      if (is_v1_non_controller_option(opt))
        continue;
      char *joined = vs_asprintf("%s%s%s", controllers, *controllers ? "," : "", opt);
      free(controllers);
      controllers = joined;
    }
    if (!*controllers)
      return;
  }
  if (layout_has(l, unified, controllers))
    return;
  l->h = vs_realloc(l->h, (l->n + 1) * sizeof(*l->h));
  cg_hier *h = &l->h[l->n++];
  memset(h, 0, sizeof(*h));
  h->unified = unified;
  h->controllers = steal_pointer(&controllers);
  h->mount_root = unescape_mount_field(fields[3]);
  h->mountpoint = unescape_mount_field(fields[4]);
}

/* One /proc/self/cgroup line: "ID:CONTROLLERS:PATH" ("0::/path" for cgroup2). */
static void apply_proc_cgroup_line(char *line, cg_layout *l) {
  char *c1 = strchr(line, ':');
  char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
  if (!c2 || c2[1] != '/')
    return;
  *c2 = 0;
  const char *ctrls = c1 + 1;
  bool unified = *ctrls == 0 && strncmp(line, "0:", 2) == 0;
  for (size_t i = 0; i < l->n; i++) {
    cg_hier *h = &l->h[i];
    if (h->unified != unified || (!unified && !same_set(h->controllers, ctrls)))
      continue;
    free(h->self_path);
    h->self_path = vs_strdup(c2 + 1);
  }
}

int cg_layout_parse(const char *mountinfo, const char *proc_cgroup, cg_layout *out,
                    vs_error **err) {
  cg_layout l = {0};
  _cleanup_free_ char *mi = vs_strdup(mountinfo), *pc = vs_strdup(proc_cgroup);
  char *save = NULL;
  for (char *line = strtok_r(mi, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
    parse_mountinfo_line(line, &l);
  for (char *line = strtok_r(pc, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
    apply_proc_cgroup_line(line, &l);
  if (l.n == 0) {
    cg_layout_clear(&l);
    return vs_error_set(err, ENOENT, "no cgroup or cgroup2 filesystem is mounted");
  }
  /* A hierarchy the process is not listed in (mounted but unused) is treated as at its root. */
  for (size_t i = 0; i < l.n; i++)
    if (!l.h[i].self_path)
      l.h[i].self_path = vs_strdup("/");
  *out = l;
  return 0;
}

static int read_small_file(const char *path, char **out, vs_error **err) {
  _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return vs_error_set(err, errno, "open %s", path);
  size_t cap = 4096, len = 0;
  _cleanup_free_ char *buf = vs_malloc0(cap + 1);
  for (;;) {
    if (len == cap) {
      if (cap >= (16U << 20))
        return vs_error_set(err, EFBIG, "read %s: larger than 16 MiB", path);
      cap *= 2;
      buf = vs_realloc(buf, cap + 1);
    }
    ssize_t r = read(fd, buf + len, cap - len);
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0)
      return vs_error_set(err, errno, "read %s", path);
    if (r == 0)
      break;
    len += (size_t)r;
  }
  buf[len] = 0;
  *out = steal_pointer(&buf);
  return 0;
}

int cg_layout_load(cg_layout *out, vs_error **err) {
  _cleanup_free_ char *mi = NULL, *pc = NULL;
  if (read_small_file("/proc/self/mountinfo", &mi, err) < 0 ||
      read_small_file("/proc/self/cgroup", &pc, err) < 0)
    return vs_error_wrap(err, "detect cgroup layout");
  if (cg_layout_parse(mi, pc, out, err) < 0)
    return vs_error_wrap(err, "detect cgroup layout");
  return 0;
}

const cg_hier *cg_layout_v1(const cg_layout *l, const char *controller) {
  for (size_t i = 0; i < l->n; i++)
    if (!l->h[i].unified && cg_list_has(l->h[i].controllers, controller))
      return &l->h[i];
  return NULL;
}

const cg_hier *cg_layout_unified(const cg_layout *l) {
  for (size_t i = 0; i < l->n; i++)
    if (l->h[i].unified)
      return &l->h[i];
  return NULL;
}

char *cg_hier_name(const cg_hier *h) {
  const char *base = strrchr(h->mountpoint, '/');
  base = base ? base + 1 : h->mountpoint;
  if (h->unified)
    return vs_strdup(strcmp(h->mountpoint, "/sys/fs/cgroup") == 0 ? "" : base);
  if (strncmp(h->controllers, "name=", 5) == 0 && !strchr(h->controllers, ','))
    return vs_strdup(h->controllers + 5);
  return vs_strdup(h->controllers);
}

/* ------------------------------------------------------------ control files */

int cg_write(const char *dir, const char *file, const char *value, vs_error **err) {
  _cleanup_free_ char *path = vs_asprintf("%s/%s", dir, file);
  _cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0)
    return vs_error_set(err, errno, "open %s", path);
  size_t len = strlen(value);
  ssize_t w;
  do
    w = write(fd, value, len);
  while (w < 0 && errno == EINTR);
  if (w < 0)
    return vs_error_set(err, errno, "write \"%s\" to %s", value, path);
  if ((size_t)w != len)
    return vs_error_set(err, EIO, "short write of \"%s\" to %s", value, path);
  return 0;
}

int cg_writef(const char *dir, const char *file, vs_error **err, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  _cleanup_free_ char *value = NULL;
  if (vasprintf(&value, fmt, ap) < 0)
    abort();
  va_end(ap);
  return cg_write(dir, file, value, err);
}

int cg_read(const char *dir, const char *file, char **out, vs_error **err) {
  _cleanup_free_ char *path = vs_asprintf("%s/%s", dir, file);
  return read_small_file(path, out, err);
}

bool cg_file_exists(const char *dir, const char *file) {
  _cleanup_free_ char *path = vs_asprintf("%s/%s", dir, file);
  return access(path, F_OK) == 0;
}

int cg_read_u64(const char *dir, const char *file, uint64_t *out, vs_error **err) {
  _cleanup_free_ char *text = NULL;
  if (cg_read(dir, file, &text, err) < 0 || !text)
    return -1;
  if (strncmp(text, "max", 3) == 0) {
    *out = UINT64_MAX;
    return 0;
  }
  char *end;
  errno = 0;
  unsigned long long v = strtoull(text, &end, 10);
  if (errno || end == text)
    return vs_error_set(err, EINVAL, "%s/%s: not a number: \"%.40s\"", dir, file, text);
  *out = v;
  return 0;
}

bool cg_keyed_get(const char *text, const char *key, uint64_t *out) {
  size_t klen = strlen(key);
  for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
    if (strncmp(p, key, klen) == 0 && p[klen] == ' ') {
      char *end;
      unsigned long long v = strtoull(p + klen + 1, &end, 10);
      if (end == p + klen + 1)
        return false;
      *out = v;
      return true;
    }
  }
  return false;
}
