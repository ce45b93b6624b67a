/* The container's init: runs in the child of clone(), sets up namespaces and the root file
 * system, waits on exec.fifo for `start`, then becomes the container's process. */
#include "init.h"
#include "security.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/close_range.h>
#include <linux/keyctl.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <termios.h>

int ctr_sync_send(int fd, char type, const char *payload) {
  char buf[4096];
  size_t n = payload ? strnlen(payload, sizeof(buf) - 2) : 0;
  buf[0] = type;
  if (n)
    memcpy(buf + 1, payload, n);
  buf[1 + n] = 0;
  ssize_t w;
  do
    w = send(fd, buf, n + 1, MSG_NOSIGNAL);
  while (w < 0 && errno == EINTR);
  return w < 0 ? -1 : 0;
}

int ctr_sync_recv(int fd, char *payload, size_t size) {
  char buf[4096];
  ssize_t r;
  do
    r = recv(fd, buf, sizeof(buf) - 1, 0);
  while (r < 0 && errno == EINTR);
  if (r < 0)
    return -1;
  if (r == 0)
    return 0;
  buf[r] = 0;
  if (payload && size) {
    snprintf(payload, size, "%s", buf + 1);
  }
  return (unsigned char)buf[0];
}

/* Setup errors go to whoever waits on us: create (or run) over the sync socket, `start`
 * after the byte that released us on exec.fifo. */
__attribute__((noreturn)) static void init_fail(const ctr_init_ctx *c, vs_error *e) {
  const char *msg = e ? e->msg : "failed";
  if (c->sync_fd >= 0 && ctr_sync_send(c->sync_fd, SYNC_ERROR, msg) == 0)
    _exit(1);
  if (c->start_fd >= 0 && vs_write_all(c->start_fd, msg, strlen(msg), NULL) == 0)
    _exit(1);
  vs_error_print(e, "vessel-runtime");
  _exit(1);
}

/* ------------------------------------------------------------------ terminal */

int ctr_setup_terminal(const ctr_process *p, int console_fd, int runtime_fd, bool bind_console,
                       vs_error **err) {
  _cleanup_close_ int master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (master < 0)
    return vs_error_set(err, errno, "open /dev/ptmx");
  if (unlockpt(master) < 0)
    return vs_error_set(err, errno, "unlockpt");
  char name[128];
  if (ptsname_r(master, name, sizeof(name)) != 0)
    return vs_error_set(err, errno, "ptsname");
  _cleanup_close_ int slave = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (slave < 0)
    return vs_error_set(err, errno, "open %s", name);
  if (p->console_height || p->console_width) {
    struct winsize ws = {.ws_row = (unsigned short)p->console_height,
                         .ws_col = (unsigned short)p->console_width};
    ioctl(slave, TIOCSWINSZ, &ws);
  }
  if (fchown(slave, p->uid, p->gid) < 0 && errno != EINVAL && errno != EPERM)
    return vs_error_set(err, errno, "chown %s", name);
  if (bind_console) {
    int fd = open("/dev/console", O_RDONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd >= 0)
      close(fd);
    if (fd >= 0 && mount(name, "/dev/console", NULL, MS_BIND, NULL) < 0)
      return vs_error_set(err, errno, "bind %s on /dev/console", name);
  }
  if (console_fd >= 0) {
    if (ctr_send_fd(console_fd, master, "/dev/ptmx", err) < 0)
      return vs_error_wrap(err, "send the pty to the console socket");
  } else if (runtime_fd >= 0) {
    char msg[2] = {SYNC_TTY, 0};
    if (ctr_send_fd(runtime_fd, master, msg, err) < 0)
      return vs_error_wrap(err, "send the pty to the runtime");
  }
  if (setsid() < 0 && errno != EPERM)
    return vs_error_set(err, errno, "setsid");
  if (ioctl(slave, TIOCSCTTY, 0) < 0)
    return vs_error_set(err, errno, "make %s the controlling terminal", name);
  for (int fd = 0; fd < 3; fd++)
    if (dup2(slave, fd) < 0)
      return vs_error_set(err, errno, "dup2 pty");
  return 0;
}

/* ------------------------------------------------------------------ exec */

/* Dispositions set to SIG_IGN and blocked signals survive fork, clone and execve: what the
 * runtime's caller ignored or blocked (a shim, a shell's background job, `run` and `exec`
 * forwarding signals) must neither reach the container's program (a non-interactive sh cannot
 * trap a signal ignored on entry) nor make the init deaf to a `kill` before it executes it. */
void ctr_reset_signals(void) {
  struct sigaction dfl = {.sa_handler = SIG_DFL};
  for (int sig = 1; sig < NSIG; sig++)
    if (sig != SIGKILL && sig != SIGSTOP)
      sigaction(sig, &dfl, NULL); /* fails harmlessly for signals glibc reserves */
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
}

static const char *env_get(char *const *env, const char *name) {
  size_t n = strlen(name);
  for (size_t i = 0; env && env[i]; i++)
    if (!strncmp(env[i], name, n) && env[i][n] == '=')
      return env[i] + n + 1;
  return NULL;
}

char *ctr_find_executable(const ctr_process *p, vs_error **err) {
  const char *a = p->args[0];
  if (strchr(a, '/')) {
    if (access(a, X_OK) < 0)
      return vs_error_set(err, errno, "exec %s", a), NULL;
    return vs_strdup(a);
  }
  const char *path = env_get(p->env, "PATH");
  if (!path)
    path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  _cleanup_free_ char *dirs = vs_strdup(path);
  char *save = NULL;
  for (char *d = strtok_r(dirs, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
    char *cand = vs_asprintf("%s/%s", *d ? d : ".", a);
    struct stat sb;
    if (stat(cand, &sb) == 0 && S_ISREG(sb.st_mode) && access(cand, X_OK) == 0)
      return cand;
    free(cand);
  }
  vs_error_set(err, 0, "exec \"%s\": executable file not found in $PATH", a);
  return NULL;
}

/* Stdio that is a pipe or socket (conmon's) goes to the container user so it can reopen
 * /proc/self/fd/N; device nodes (the host's /dev/null) are never touched. */
static void chown_stdio(const ctr_process *p) {
  if (p->uid == 0 && p->gid == 0)
    return;
  for (int fd = 0; fd < 3; fd++) {
    struct stat sb;
    if (fstat(fd, &sb) == 0 && (S_ISFIFO(sb.st_mode) || S_ISSOCK(sb.st_mode)))
      if (fchown(fd, p->uid, p->gid) < 0) {
        /* best effort, as runc */
      }
  }
}

int ctr_process_exec(const ctr_process *p, json_t *linux_json, const char *exe, int preserve_fds,
                     vs_error **err) {
  json_t *pj = p->json;
  if (!exe || !p->args)
    return vs_error_set(err, EINVAL, "exec: no program");
  json_t *seccomp = linux_json ? json_object_get(linux_json, "seccomp") : NULL;
  if (ctr_rlimits_apply(json_object_get(pj, "rlimits"), err) < 0)
    return -1;
  json_t *oom = json_object_get(pj, "oomScoreAdj");
  if (json_is_integer(oom) && ctr_oom_score_adj_apply((int)json_integer_value(oom), err) < 0)
    return -1;
  if (ctr_lsm_apply(pj, err) < 0)
    return -1;
  chown_stdio(p);
  if (chdir(p->cwd) < 0)
    return vs_error_set(err, errno, "chdir to process.cwd %s", p->cwd);
  if (!p->no_new_privileges && ctr_seccomp_load(seccomp, err) < 0)
    return -1;
  if (ctr_caps_keep_across_user_switch(err) < 0)
    return -1;
  if (setgroups(p->n_additional_gids, p->additional_gids) < 0 &&
      !(errno == EPERM && p->n_additional_gids == 0))
    return vs_error_set(err, errno, "setgroups (process.user.additionalGids)");
  if (setresgid(p->gid, p->gid, p->gid) < 0)
    return vs_error_set(err, errno, "setresgid %u (process.user.gid)", p->gid);
  if (setresuid(p->uid, p->uid, p->uid) < 0)
    return vs_error_set(err, errno, "setresuid %u (process.user.uid)", p->uid);
  if (ctr_caps_apply(json_object_get(pj, "capabilities"), p->no_new_privileges, err) < 0)
    return -1;
  if (p->umask >= 0)
    umask((mode_t)p->umask);
  else
    umask(022);
  if (preserve_fds >= 0)
    syscall(SYS_close_range, 3 + preserve_fds, ~0U, CLOSE_RANGE_CLOEXEC);
  for (int fd = 3; fd < 3 + preserve_fds; fd++) {
    int fl = fcntl(fd, F_GETFD);
    if (fl >= 0)
      fcntl(fd, F_SETFD, fl & ~FD_CLOEXEC);
  }
  ctr_reset_signals();
  if (p->no_new_privileges && ctr_seccomp_load(seccomp, err) < 0)
    return -1;
  char *const no_env[] = {NULL};
  execve(exe, p->args, p->env ? p->env : no_env);
  return vs_error_set(err, errno, "exec %s", exe);
}

/* ------------------------------------------------------------------ init */

static const int ns_flags[CTR_NS_COUNT] = {
    [CTR_NS_PID] = CLONE_NEWPID,       [CTR_NS_NET] = CLONE_NEWNET,   [CTR_NS_MNT] = CLONE_NEWNS,
    [CTR_NS_IPC] = CLONE_NEWIPC,       [CTR_NS_UTS] = CLONE_NEWUTS,   [CTR_NS_USER] = CLONE_NEWUSER,
    [CTR_NS_CGROUP] = CLONE_NEWCGROUP, [CTR_NS_TIME] = CLONE_NEWTIME,
};

static int join_namespace(const ctr_spec *s, int t, vs_error **err) {
  _cleanup_close_ int fd = open(s->ns[t].path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return vs_error_set(err, errno, "linux.namespaces: open %s namespace %s", ctr_ns_name(t),
                        s->ns[t].path);
  if (setns(fd, ns_flags[t]) < 0)
    return vs_error_set(err, errno, "linux.namespaces: join %s namespace %s", ctr_ns_name(t),
                        s->ns[t].path);
  return 0;
}

void ctr_init_await_go(const ctr_init_ctx *c) {
  if (*c->have_go)
    return;
  char buf[64];
  if (ctr_sync_recv(c->sync_fd, buf, sizeof(buf)) != SYNC_GO)
    _exit(1); /* the runtime gave up; it reports why */
  *c->have_go = true;
  *c->host_pid = (pid_t)strtol(buf, NULL, 10);
  vs_error *e = NULL;
  if (c->join_cgroups && ctr_cgroup_join_self(c->cg, c->in_cgroup2, &e) < 0)
    init_fail(c, e);
}

static int enter_namespaces(const ctr_spec *s, bool defer_new_cgroup, vs_error **err) {
  /* The user namespace first: the others we join or create then belong to it. */
  if (s->ns[CTR_NS_USER].present && s->ns[CTR_NS_USER].path &&
      join_namespace(s, CTR_NS_USER, err) < 0)
    return -1;
  int unshare_flags = 0;
  for (int t = 0; t < CTR_NS_COUNT; t++) {
    if (!s->ns[t].present || t == CTR_NS_USER || t == CTR_NS_PID || t == CTR_NS_TIME)
      continue;
    if (s->ns[t].path) {
      if (join_namespace(s, t, err) < 0)
        return -1;
    } else if (!(t == CTR_NS_CGROUP && defer_new_cgroup)) {
      unshare_flags |= ns_flags[t];
    }
  }
  if (unshare_flags && unshare(unshare_flags) < 0)
    return vs_error_set(err, errno, "unshare namespaces (0x%x)", unshare_flags);
  return 0;
}

/* Blocks until `start` opens exec.fifo for reading, then releases it with one byte. The
 * write end stays open until execve closes it (O_CLOEXEC): `start` reads to the end of the
 * file, so it returns only once the program runs, and a `kill` sent after it reaches the
 * program rather than this init on its way to execve. Failures before that follow the byte
 * (init_fail). The O_PATH fifo_fd is reopened through own_fds_dir, opened before the root
 * changed: the container's root may have no /proc of ours (no mount namespace: a chroot
 * into an image without /proc; or a /proc of another pid namespace). */
static int wait_for_start(ctr_init_ctx *c, vs_error **err) {
  char name[16];
  snprintf(name, sizeof(name), "%d", c->fifo_fd);
  int fd;
  do
    fd = openat(c->own_fds_dir, name, O_WRONLY | O_CLOEXEC);
  while (fd < 0 && errno == EINTR);
  if (fd < 0)
    return vs_error_set(err, errno, "open exec.fifo");
  close(c->own_fds_dir);
  c->own_fds_dir = -1;
  close(c->fifo_fd);
  c->fifo_fd = -1;
  c->start_fd = fd;
  if (vs_write_all(fd, "0", 1, err) < 0)
    return vs_error_wrap(err, "exec.fifo");
  return 0;
}

/* The state document for hooks run by the init itself (createContainer, startContainer). */
static char *hook_state(const ctr_init_ctx *c, const char *status) {
  json_t *ann = c->spec->annotations ? json_incref(c->spec->annotations) : json_object();
  /* The spec's pid is the one the host sees; getpid() is 1 in a new pid namespace. */
  pid_t pid = *c->host_pid > 0 ? *c->host_pid : getpid();
  json_t *j = json_pack("{s:s,s:s,s:s,s:i,s:s,s:s,s:o}", "ociVersion", CTR_OCI_VERSION, "id", c->id,
                        "status", status, "pid", (int)pid, "bundle", c->bundle, "rootfs", c->rootfs,
                        "annotations", ann);
  char *text = json_dumps(j, JSON_COMPACT);
  json_decref(j);
  return text;
}

static int init_setup(ctr_init_ctx *c, char **exe, vs_error **err) {
  const ctr_spec *s = c->spec;
  ctr_reset_signals();
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
    return vs_error_set(err, errno, "prctl PR_SET_PDEATHSIG");
  /* Before any namespace or root changes: /proc/self is ours in the runtime's /proc. */
  if (c->fifo_fd >= 0 &&
      (c->own_fds_dir = open("/proc/self/fd", O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0)
    return vs_error_set(err, errno, "open /proc/self/fd");
  char buf[256];
  int m;
  /* GO: the runtime has made our cgroups, moved us into them and written our id maps; it does
   * that while we go on. In a new user namespace we are nobody until then, and from a user or
   * mount namespace we join the host's cgroup files may be out of reach: there we wait for GO
   * first. Otherwise only the cgroup mount and the cgroup namespace need it (below, and
   * mount_cgroup() in rootfs.c). The cgroup namespace is made after joining, so that its root
   * is ours. */
  bool new_user = s->ns[CTR_NS_USER].present && !s->ns[CTR_NS_USER].path;
  bool go_first =
      s->ns[CTR_NS_USER].present || (s->ns[CTR_NS_MNT].present && s->ns[CTR_NS_MNT].path);
  if (go_first)
    ctr_init_await_go(c);
  if (new_user && (setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0))
    return vs_error_set(err, errno, "become root in the user namespace (is 0 mapped?)");
  if (enter_namespaces(s, !go_first, err) < 0)
    return -1;
  /* The host's session keyring must not be reachable from the container. */
  if (c->new_keyring && syscall(SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, NULL) < 0 &&
      errno != ENOSYS)
    return vs_error_set(err, errno, "join a new session keyring");
  umask(0);
  /* A UTS namespace joined by path is the container's too (runc sets its names as well). */
  if (s->ns[CTR_NS_UTS].present) {
    if (s->hostname && sethostname(s->hostname, strlen(s->hostname)) < 0)
      return vs_error_set(err, errno, "hostname: sethostname");
    if (s->domainname && setdomainname(s->domainname, strlen(s->domainname)) < 0)
      return vs_error_set(err, errno, "domainname: setdomainname");
  }
  bool own_mnt = s->ns[CTR_NS_MNT].present;
  if (own_mnt && ctr_rootfs_setup(c, err) < 0)
    return -1;
  if (!go_first) {
    ctr_init_await_go(c);
    if (s->ns[CTR_NS_CGROUP].present && !s->ns[CTR_NS_CGROUP].path && unshare(CLONE_NEWCGROUP) < 0)
      return vs_error_set(err, errno, "unshare the cgroup namespace");
  }
  /* The runtime runs prestart/createRuntime now; no round trip when there are none. */
  if (s->n_hooks[CTR_HOOK_PRESTART] || s->n_hooks[CTR_HOOK_CREATE_RUNTIME]) {
    if (ctr_sync_send(c->sync_fd, SYNC_HOOKS, NULL) < 0)
      return vs_error_set(err, errno, "sync with the runtime");
    m = ctr_sync_recv(c->sync_fd, buf, sizeof(buf));
    if (m != SYNC_HOOKS_DONE)
      _exit(1);
  }
  if (s->n_hooks[CTR_HOOK_CREATE_CONTAINER]) {
    _cleanup_free_ char *st = hook_state(c, "creating");
    if (ctr_hooks_run(s, CTR_HOOK_CREATE_CONTAINER, st, err) < 0)
      return -1;
  }
  if (own_mnt && ctr_rootfs_pivot(c, err) < 0)
    return -1;
  if (!own_mnt && (chroot(c->rootfs) < 0 || chdir("/") < 0))
    return vs_error_set(err, errno, "chroot %s", c->rootfs);
  if (c->process->terminal &&
      ctr_setup_terminal(c->process, c->console_fd, c->tty_to_runtime ? c->sync_fd : -1, own_mnt,
                         err) < 0)
    return -1;
  if (c->console_fd >= 0)
    close(c->console_fd);
  if (own_mnt && ctr_rootfs_finish(c, err) < 0)
    return -1;
  *exe = ctr_find_executable(c->process, err);
  if (!*exe)
    return -1;
  return 0;
}

void ctr_init_main(ctr_init_ctx *c) {
  vs_error *e = NULL;
  char *exe = NULL;
  if (init_setup(c, &exe, &e) < 0)
    init_fail(c, e);
  /* Created: the runtime may exit now without taking us with it. */
  prctl(PR_SET_PDEATHSIG, 0);
  if (ctr_sync_send(c->sync_fd, SYNC_READY, NULL) < 0)
    _exit(1);
  /* create: the runtime is gone; `start` hears from us through exec.fifo. run: the sync
   * socket stays open (O_CLOEXEC) and its end of file tells the runtime the program runs. */
  if (c->fifo_fd >= 0) {
    close(c->sync_fd);
    c->sync_fd = -1;
    if (wait_for_start(c, &e) < 0)
      init_fail(c, e);
  }
  /* The spec's "created": the program has not been executed yet (runc says so too). */
  if (c->spec->n_hooks[CTR_HOOK_START_CONTAINER]) {
    _cleanup_free_ char *st = hook_state(c, "created");
    if (ctr_hooks_run(c->spec, CTR_HOOK_START_CONTAINER, st, &e) < 0)
      init_fail(c, e);
  }
  ctr_process_exec(c->process, c->spec->linux_json, exe, c->preserve_fds, &e);
  init_fail(c, e);
}
