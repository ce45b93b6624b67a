/* POST /build: Docker's classic builder protocol. The body (a tar of the build context) is
 * unpacked into a temporary directory as a layer is (every path inside it) while it arrives (the
 * route streams it through a pipe, server.c), each file hashed as it lands for the step cache;
 * the image is built
 * by src/image's builder and the reply is the JSON stream docker's CLI reads, sent as the build
 * goes: {"stream": line} for each progress line, {"aux": {"ID": ...}} for the image, {"error": ...}
 * on failure. */
#include "daemon/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

/* Every value of a repeated query parameter (t=a&t=b), percent-decoded. */
static size_t query_all(const char *query, const char *name, char ***out) {
  size_t nlen = strlen(name), n = 0;
  *out = NULL;
  for (const char *p = query; p && *p;) {
    const char *amp = strchr(p, '&');
    size_t plen = amp ? (size_t)(amp - p) : strlen(p);
    const char *eq = memchr(p, '=', plen);
    if (eq && (size_t)(eq - p) == nlen && !memcmp(p, name, nlen)) {
      vs_error *e = NULL;
      char *v = http_percent_decode(eq + 1, plen - nlen - 1, &e);
      vs_error_free(e);
      if (v && *v) {
        *out = vs_realloc(*out, (n + 1) * sizeof(char *));
        (*out)[n++] = v;
      } else {
        free(v);
      }
    }
    p = amp ? amp + 1 : NULL;
  }
  return n;
}

/* A JSON object of strings from a query parameter (buildargs, labels); NULL with an error when
 * it is not one. */
static json_t *query_object(const char *query, const char *name, vs_error **err) {
  _cleanup_free_ char *text = http_query_get(query, name);
  if (!text || !*text)
    return json_object();
  json_error_t je;
  json_t *o = json_loads(text, JSON_REJECT_DUPLICATES, &je);
  const char *k;
  json_t *v;
  bool ok = json_is_object(o);
  json_object_foreach(o, k, v) ok = ok && (json_is_string(v) || json_is_null(v));
  if (!ok) {
    json_decref(o);
    vs_error_set(err, EINVAL, "%s: not a JSON object of strings", name);
    return NULL;
  }
  /* a null build arg is docker's "take it from the environment": none here */
  json_t *clean = json_object();
  json_object_foreach(o, k, v) if (json_is_string(v)) json_object_set(clean, k, v);
  json_decref(o);
  return clean;
}

static void post_line(vd_call *c, json_t *line) {
  _cleanup_free_ char *s = json_dumps(line, JSON_COMPACT);
  json_decref(line);
  _cleanup_free_ char *out = vs_asprintf("%s\r\n", s ? s : "{}");
  vd_call_post(c, out, strlen(out));
}

/* The builder's progress and the RUN steps' output, streamed while the build runs: a thread
 * reads the pipe they write to and posts each line as {"stream": line} as it comes. It stops on
 * the stop eventfd rather than at the pipe's end, which a stray child holding the write end
 * could delay. */
typedef struct progress_pump {
  vd_call *c;
  int rfd, stopfd;
  char *partial; /* a line not yet ended */
} progress_pump;

static void pump_text(progress_pump *p, const char *buf, size_t n) {
  _cleanup_free_ char *all = vs_asprintf("%s%.*s", p->partial ? p->partial : "", (int)n, buf);
  free(p->partial);
  p->partial = NULL;
  char *at = all;
  for (char *nl; (nl = strchr(at, '\n'));) {
    _cleanup_free_ char *piece = vs_img_strndup(at, (size_t)(nl - at) + 1);
    post_line(p->c, json_pack("{s:s}", "stream", piece));
    at = nl + 1;
  }
  if (*at)
    p->partial = vs_strdup(at);
}

static void *pump_thread(void *arg) {
  progress_pump *p = arg;
  char buf[4096];
  for (bool stopping = false;;) {
    ssize_t n = read(p->rfd, buf, sizeof(buf)); /* non-blocking */
    if (n > 0) {
      pump_text(p, buf, (size_t)n);
      continue;
    }
    if (n < 0 && errno == EINTR)
      continue;
    if (n == 0 || (n < 0 && errno != EAGAIN) || stopping)
      break; /* the end, or drained after the stop */
    struct pollfd fds[2] = {{.fd = p->rfd, .events = POLLIN}, {.fd = p->stopfd, .events = POLLIN}};
    if (poll(fds, 2, -1) < 0 && errno != EINTR)
      break;
    stopping = fds[1].revents != 0;
  }
  if (p->partial)
    post_line(p->c, json_pack("{s:s}", "stream", p->partial));
  free(p->partial);
  return NULL;
}

/* The context from the request body (a pipe the loop fills as the client sends: the upload
 * and the unpack overlap). The docker CLI and docker-py leave out what .dockerignore names
 * before they send; the builder applies .dockerignore again to what it reads (other clients). */
static int unpack_context(vd_call *c, const char *dir, bool reused, vs_file_digests *digests,
                          vs_error **err) {
  _cleanup_close_ int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0)
    return vs_error_set(err, errno, "open the build context");
  _cleanup_json_ json_t *named = reused ? json_object() : NULL;
  vs_layer_limits lim = {.allow_devices = false, .file_digests = digests, .reuse_paths = named};
  if ((reused && vs_dir_prune(dfd, NULL, err) < 0) ||
      vs_layer_apply(c->body_fd, dfd, &lim, NULL, err) < 0 ||
      (reused && vs_dir_prune(dfd, named, err) < 0))
    return vs_error_wrap(err, "unpack the build context");
  return 0;
}

/* The last build's context directory is kept for the next build, which unpacks over it
 * (rewriting its files in place, then removing what the new context lacks): on ext4 without a
 * journal, creating files right after thousands were deleted scans the freed inodes on every
 * creation, which made each cached build of bench/build slower than the one before. One
 * directory is kept, <data-root>/build-context.idle, taken and given back by rename. */
static char *idle_context(const vd_daemon *d) {
  return vs_asprintf("%s/build-context.idle", d->data_root);
}

/* The idle directory in place of the empty one mkdtemp made; false when there is none. */
static bool take_idle_context(const vd_daemon *d, const char *dir) {
  _cleanup_free_ char *idle = idle_context(d);
  return rename(idle, dir) == 0;
}

static void give_back_context(const vd_daemon *d, const char *dir, bool keep) {
  _cleanup_free_ char *idle = idle_context(d);
  if (keep && rename(dir, idle) == 0)
    return;
  vs_error *e = NULL;
  if (vs_rm_rf(dir, &e) < 0) /* another build's directory is kept already */
    vs_log_warn("remove %s: %s", dir, e->msg);
  vs_error_free(e);
}

void vd_build_contexts_drop(vd_daemon *d) {
  _cleanup_free_ char *idle = idle_context(d);
  vs_error *e = NULL;
  if (vs_rm_rf(idle, &e) < 0)
    vs_log_warn("remove %s: %s", idle, e->msg);
  vs_error_free(e);
}

/* RUN steps in the daemon: a bundle on an overlay of the step's image under the data root's
 * tmp/, its config.json from the same spec builder as containers (spec.c), run to its end by
 * vessel-runtime (next to vessel-monitor) with its output going into the build's stream. */
typedef struct run_ctx {
  vd_daemon *d;
  int out_fd;
} run_ctx;

static int build_run(void *arg, const char *image, json_t *args, json_t *env, char **upper,
                     char **handle, vs_error **err) {
  run_ctx *rc = arg;
  vd_daemon *d = rc->d;
  vs_image img;
  if (vs_store_load_image(d->store, image, &img, err) < 0)
    return -1;
  char *tmpl = vs_asprintf("%s/tmp/build-run-XXXXXX", d->data_root);
  char *dir = mkdtemp(tmpl);
  if (!dir) {
    vs_error_set(err, errno, "mkdtemp %s", tmpl);
    free(tmpl);
    vs_image_clear(&img);
    return -1;
  }
  *handle = dir;
  *upper = vs_asprintf("%s/upper", dir);
  /* the container's id: mkdtemp's six random characters */
  _cleanup_free_ char *id = vs_asprintf("vessel-build-%s", dir + strlen(dir) - 6);
  _cleanup_free_ char *rootfs = vs_asprintf("%s/rootfs", dir);
  _cleanup_free_ char *host = vs_img_strndup(id, 12);
  _cleanup_json_ json_t *config = json_deep_copy(json_object_get(img.config.root, "config"));
  if (!json_is_object(config)) {
    json_decref(config);
    config = json_object();
  }
  json_object_set(config, "Cmd", args);
  json_object_del(config, "Entrypoint");
  json_t *cenv = json_object_get(config, "Env");
  if (!json_is_array(cenv)) {
    cenv = json_array();
    json_object_set_new(config, "Env", cenv);
  }
  json_array_extend(cenv, env);
  _cleanup_json_ json_t *hc = json_pack("{s:s}", "NetworkMode", "none");
  int status = -1;
  json_t *spec = NULL;
  /* the image's VOLUMEs become anonymous volumes for the step, released after it (what a RUN
   * writes under them is not in the layer, as with Docker's classic builder) */
  _cleanup_json_ json_t *points = json_array();
  if (vs_rootfs_mount(d->store, &img, dir, rootfs, err) == 0 &&
      ctr_docker_write_etc_files(dir, host, err) == 0 &&
      (spec = vd_spec_build(d, &img, config, hc, dir, rootfs, host, points, err))) {
    _cleanup_free_ char *text = json_dumps(spec, JSON_INDENT(2));
    _cleanup_free_ char *cfg = vs_asprintf("%s/config.json", dir);
    _cleanup_free_ char *bin = vs_strdup(d->monitor_path);
    char *slash = strrchr(bin, '/');
    _cleanup_free_ char *runtime =
        slash ? (*slash = 0, vs_asprintf("%s/vessel-runtime", bin)) : vs_strdup("vessel-runtime");
    char *argv[] = {runtime, "--root", d->rt.root, "run", "--bundle", dir, id, NULL};
    vs_spawn_opts so = VS_SPAWN_OPTS_INIT;
    so.stdin_fd = VS_SPAWN_DEVNULL;
    so.stdout_fd = rc->out_fd;
    so.stderr_fd = rc->out_fd;
    pid_t pid;
    int ws;
    if (text && vs_write_file_atomic(cfg, text, strlen(text), 0600, err) == 0 &&
        vs_spawn(argv, &so, &pid, err) == 0) {
      while (waitpid(pid, &ws, 0) < 0 && errno == EINTR)
        ;
      status = WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
    }
  }
  json_decref(spec);
  vd_volumes_release(d, points, id);
  _cleanup_free_ char *rfs = vs_asprintf("%s/rootfs", dir);
  umount2(rfs, MNT_DETACH);
  vs_image_clear(&img);
  return status;
}

static void build_remove(void *arg, const char *handle) {
  (void)arg;
  vs_build_drop_dir(handle);
}

void vd_h_build(vd_call *c) {
  vd_daemon *d = c->d;
  const char *q = c->req->query;
  if (c->body_fd < 0) {
    vd_call_error(c, 400, "request body is empty: a tar of the build context was expected");
    return;
  }
  _cleanup_free_ char *remote = http_query_get(q, "remote");
  if (remote && *remote) {
    vd_call_error(c, 400, "remote build contexts (%s) are not supported: no network access",
                  remote);
    return;
  }
  _cleanup_free_ char *platform = http_query_get(q, "platform");
  if (platform && *platform && strcmp(platform, vs_platform_native()) != 0) {
    vd_call_error(c, 400, "platform %s: this builder makes %s images only", platform,
                  vs_platform_native());
    return;
  }
  vs_error *e = NULL;
  _cleanup_json_ json_t *args = query_object(q, "buildargs", &e);
  _cleanup_json_ json_t *labels = args ? query_object(q, "labels", &e) : NULL;
  if (!args || !labels) {
    vd_call_error(c, 400, "%s", e ? e->msg : "bad buildargs or labels");
    vs_error_free(e);
    return;
  }
  _cleanup_free_ char *dockerfile = http_query_get(q, "dockerfile");
  _cleanup_free_ char *target = http_query_get(q, "target");
  char **tags = NULL;
  size_t ntags = query_all(q, "t", &tags);
  _cleanup_free_ char *tmp = vs_asprintf("%s/tmp/build-context-XXXXXX", d->data_root);
  int pfd[2] = {-1, -1};
  int progress = -1;
  progress_pump pump = {.c = c, .rfd = -1, .stopfd = eventfd(0, EFD_CLOEXEC)};
  pthread_t pump_tid;
  bool pumping = false;
  if (pump.stopfd >= 0 && pipe2(pfd, O_CLOEXEC) == 0) {
    fcntl(pfd[0], F_SETFL, O_NONBLOCK);
    pump.rfd = pfd[0];
    progress = pfd[1];
    pumping = pthread_create(&pump_tid, NULL, pump_thread, &pump) == 0;
  }
  char id[VS_DIGEST_MAX];
  int r = -1;
  vs_file_digests *digests = vs_file_digests_new();
  run_ctx rctx = {.d = d, .out_fd = http_query_bool(q, "q", false) ? VS_SPAWN_DEVNULL : progress};
  bool made = false, unpacked = false;
  if (!pumping)
    vs_error_set(&e, errno, "start the progress stream");
  else if (!(made = mkdtemp(tmp) != NULL))
    vs_error_set(&e, errno, "mkdtemp %s", tmp);
  else if ((unpacked = unpack_context(c, tmp, take_idle_context(d, tmp), digests, &e) == 0)) {
    vs_build_opts o = {.context = tmp,
                       .context_digests = digests,
                       .dockerfile = dockerfile && *dockerfile ? dockerfile : NULL,
                       .tags = tags,
                       .ntags = ntags,
                       .build_args = args,
                       .labels = labels,
                       .target = target && *target ? target : NULL,
                       .nocache = http_query_bool(q, "nocache", false),
                       .progress_fd = http_query_bool(q, "q", false) ? -1 : progress,
                       .run = build_run,
                       .remove = build_remove,
                       .run_ctx = &rctx};
    pthread_mutex_lock(&d->store_lock);
    r = vs_build(d->store, &o, id, &e);
    pthread_mutex_unlock(&d->store_lock);
  }
  if (pumping) {
    uint64_t one = 1;
    if (write(pump.stopfd, &one, sizeof(one)) < 0)
      vs_log_warn("stop the build's progress stream: %s", strerror(errno));
    pthread_join(pump_tid, NULL);
  }
  for (size_t i = 0; i < 2; i++)
    if (pfd[i] >= 0)
      close(pfd[i]);
  if (pump.stopfd >= 0)
    close(pump.stopfd);
  if (r == 0) {
    vs_image img;
    vs_error *le = NULL;
    if (vs_store_load_image(d->store, id, &img, &le) == 0) {
      post_line(c, json_pack("{s:{s:s}}", "aux", "ID", img.manifest.config.digest));
      if (http_query_bool(q, "q", false)) { /* quiet: the ID is the whole stream */
        _cleanup_free_ char *line = vs_asprintf("%s\n", img.manifest.config.digest);
        post_line(c, json_pack("{s:s}", "stream", line));
      }
      vs_image_clear(&img);
    }
    vs_error_free(le);
    for (size_t i = 0; i < ntags; i++)
      vd_event_emit(d, "image", "tag", tags[i], json_pack("{s:s}", "name", tags[i]));
  } else {
    const char *msg = e ? e->msg : "build failed";
    post_line(c, json_pack("{s:{s:s}, s:s}", "errorDetail", "message", msg, "error", msg));
  }
  vs_error_free(e);
  vs_file_digests_free(digests);
  if (made)
    give_back_context(d, tmp, unpacked);
  for (size_t i = 0; i < ntags; i++)
    free(tags[i]);
  free(tags);
  /* as dockerd: the stream is a 200 even when the build fails; the error is in it (posted) */
}
