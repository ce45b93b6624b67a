/* The web console's static files: opened inside the web root (no dot segments, no symlinks),
 * gzip siblings for browsers that take them, single-page-app addresses answered with index.html. */
#include "daemon/web_front.h"

#include <errno.h>
#include <fcntl.h>
#include <strings.h>
#include <sys/stat.h>

#define STATIC_MAX ((size_t)32 << 20)

/* ---- static files */

static const char *content_type(const char *path) {
  static const struct {
    const char *ext, *type;
  } types[] = {{".html", "text/html; charset=utf-8"},
               {".js", "text/javascript; charset=utf-8"},
               {".mjs", "text/javascript; charset=utf-8"},
               {".css", "text/css; charset=utf-8"},
               {".json", "application/json"},
               {".svg", "image/svg+xml"},
               {".png", "image/png"},
               {".ico", "image/x-icon"},
               {".woff2", "font/woff2"},
               {".txt", "text/plain; charset=utf-8"},
               {".map", "application/json"},
               {".wasm", "application/wasm"}};
  const char *dot = strrchr(path, '.');
  const char *slash = strrchr(path, '/');
  if (dot && (!slash || dot > slash))
    for (size_t i = 0; i < ARRAY_SIZE(types); i++)
      if (!strcasecmp(dot, types[i].ext))
        return types[i].type;
  return "application/octet-stream";
}

/* Open a regular file under the web root; -1 when there is none. */
static int static_open(vd_web *w, const char *rel, struct stat *st) {
  if (!*rel)
    return -1;
  int fd = vs_openat_in_root(w->root_fd, rel, O_RDONLY | O_CLOEXEC | O_NOFOLLOW, 0, NULL);
  if (fd < 0)
    return -1;
  if (fstat(fd, st) < 0 || !S_ISREG(st->st_mode) || (size_t)st->st_size > STATIC_MAX) {
    close(fd);
    return -1;
  }
  return fd;
}

/* A "." or ".." segment: such paths are not served (the root would contain them anyway). */
static bool has_dot_segment(const char *path) {
  for (const char *p = path; (p = strchr(p, '/')) != NULL; p++) {
    size_t n = strcspn(p + 1, "/");
    if ((n == 1 && p[1] == '.') || (n == 2 && p[1] == '.' && p[2] == '.'))
      return true;
  }
  return false;
}

void vd_front_static(vd_front *f) {
  vd_web *w = web_of(f->d);
  bool keep = f->req.keep_alive;
  if (strcmp(f->req.method, "GET") != 0 && strcmp(f->req.method, "HEAD") != 0) {
    vd_front_respond(f, 405, NULL, NULL, 0, "Allow: GET, HEAD\r\n", false);
    return;
  }
  const char *path = f->req.path;
  if (w->root_fd < 0 || has_dot_segment(path)) {
    vd_front_respond_error(f, 404, "not found", keep);
    return;
  }
  _cleanup_free_ char *rel = vs_strdup(path + strspn(path, "/"));
  size_t rl = strlen(rel);
  if (rl == 0 || rel[rl - 1] == '/') {
    char *r2 = vs_asprintf("%sindex.html", rel);
    free(rel);
    rel = r2;
  }
  struct stat st;
  int fd = static_open(w, rel, &st);
  if (fd < 0) {
    const char *last = strrchr(rel, '/');
    if (strchr(last ? last : rel, '.')) {
      vd_front_respond_error(f, 404, "not found", keep);
      return;
    }
    free(rel);
    rel = vs_strdup("index.html"); /* an address of the single-page app */
    fd = static_open(w, rel, &st);
    if (fd < 0) {
      vd_front_respond_error(f, 404, "the web console is not installed (scripts/build-web)", keep);
      return;
    }
  }
  const char *ae = http_header_get(&f->req, "Accept-Encoding");
  bool gz = false;
  if (ae && vd_front_has_token(ae, "gzip")) {
    _cleanup_free_ char *gzrel = vs_asprintf("%s.gz", rel);
    struct stat gst;
    int gfd = static_open(w, gzrel, &gst);
    if (gfd >= 0) {
      close(fd);
      fd = gfd;
      st = gst;
      gz = true;
    }
  }
  char *data = vs_malloc0((size_t)st.st_size + 1);
  size_t got = 0;
  while (got < (size_t)st.st_size) {
    ssize_t n = read(fd, data + got, (size_t)st.st_size - got);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      break;
    got += (size_t)n;
  }
  close(fd);
  bool immutable = !strncmp(rel, "assets/", 7);
  _cleanup_free_ char *extra = vs_asprintf(
      "%sVary: Accept-Encoding\r\nCache-Control: %s\r\n", gz ? "Content-Encoding: gzip\r\n" : "",
      immutable ? "public, max-age=31536000, immutable" : "no-cache");
  vd_front_respond(f, 200, content_type(rel), data, got, extra, keep);
  free(data);
}
