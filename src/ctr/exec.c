/* exec: start another process in a running container, joining all of its namespaces. */
#include "init.h"
#include "security.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

json_t *ctr_exec_default_process(const ctr_runtime *rt, const char *id, vs_error **err) {
  ctr_state *st;
  if (ctr_state_load(rt, id, &st, err) < 0)
    return NULL;
  json_t *p = json_object_get(st->config, "process");
  json_t *r = p ? json_deep_copy(p) : json_object();
  ctr_state_free(st);
  /* runc: exec never inherits the container's terminal setting or console size. */
  json_object_set_new(r, "terminal", json_false());
  json_object_del(r, "consoleSize");
  return r;
}

/* Namespace files in the order we join them: user last, so joining the others uses our full
 * privileges; mount late so /proc of the host is still reachable for the fds. */
static const struct {
  const char *name;
  int flag;
} exec_ns[] = {
    {"cgroup", CLONE_NEWCGROUP}, {"ipc", CLONE_NEWIPC}, {"uts", CLONE_NEWUTS},
    {"net", CLONE_NEWNET},       {"pid", CLONE_NEWPID}, {"time", CLONE_NEWTIME},
    {"mnt", CLONE_NEWNS},        {"user", CLONE_NEWUSER},
};

static int open_namespaces(pid_t pid, int fds[], vs_error **err) {
  for (size_t i = 0; i < ARRAY_SIZE(exec_ns); i++) {
    fds[i] = -1;
    char p[64], self[64];
    snprintf(p, sizeof(p), "/proc/%d/ns/%s", (int)pid, exec_ns[i].name);
    snprintf(self, sizeof(self), "/proc/self/ns/%s", exec_ns[i].name);
    struct stat a, b;
    if (stat(p, &a) < 0) {
      if (errno == ENOENT)
        continue;
      return vs_error_set(err, errno, "stat %s", p);
    }
    if (stat(self, &b) == 0 && a.st_ino == b.st_ino && a.st_dev == b.st_dev)
      continue; /* shared with us: nothing to join */
    fds[i] = open(p, O_RDONLY | O_CLOEXEC);
    if (fds[i] < 0)
      return vs_error_set(err, errno, "open %s", p);
  }
  return 0;
}

typedef struct exec_child {
  const ctr_process *process;
  json_t *linux_json;
  int *ns_fds;
  int sync_fd;
  int console_fd;
  bool tty_to_runtime;
  int preserve_fds;
  pid_t init_pid;
} exec_child;

__attribute__((noreturn)) static void exec_fail(int sync_fd, vs_error *e) {
  ctr_sync_send(sync_fd, SYNC_ERROR, e ? e->msg : "exec failed");
  _exit(1);
}

/* The process itself: in every namespace already, waits for the cgroup, then execs. */
__attribute__((noreturn)) static void exec_final(exec_child *c) {
  vs_error *e = NULL;
  char buf[16];
  if (ctr_sync_recv(c->sync_fd, buf, sizeof(buf)) != SYNC_GO)
    _exit(1);
  /* Without a console socket the process keeps the caller's stdio (its terminal, if any). */
  if (c->process->terminal && (c->console_fd >= 0 || c->tty_to_runtime) &&
      ctr_setup_terminal(c->process, c->console_fd, c->tty_to_runtime ? c->sync_fd : -1, false,
                         &e) < 0)
    exec_fail(c->sync_fd, e);
  if (c->console_fd >= 0)
    close(c->console_fd);
  char *exe = ctr_find_executable(c->process, &e);
  if (!exe)
    exec_fail(c->sync_fd, e);
  /* sync_fd is close-on-exec: the runtime sees EOF when execve succeeded. */
  ctr_process_exec(c->process, c->linux_json, exe, c->preserve_fds, &e);
  exec_fail(c->sync_fd, e);
}

/* The intermediate: joins the namespaces (pid and time apply to children), forks the process. */
__attribute__((noreturn)) static void exec_intermediate(exec_child *c) {
  vs_error *e = NULL;
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  for (size_t i = 0; i < ARRAY_SIZE(exec_ns); i++) {
    if (c->ns_fds[i] < 0)
      continue;
    if (setns(c->ns_fds[i], exec_ns[i].flag) < 0) {
      vs_error_set(&e, errno, "join the container's %s namespace", exec_ns[i].name);
      exec_fail(c->sync_fd, e);
    }
    close(c->ns_fds[i]);
  }
  pid_t pid = fork();
  if (pid < 0) {
    vs_error_set(&e, errno, "fork");
    exec_fail(c->sync_fd, e);
  }
  if (pid == 0)
    exec_final(c); /* no parent-death signal: its parent exits right away */
  char msg[32];
  snprintf(msg, sizeof(msg), "%d", (int)pid);
  ctr_sync_send(c->sync_fd, SYNC_PID, msg);
  _exit(0);
}

static int connect_socket(const char *path, vs_error **err) {
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  if (strlen(path) >= sizeof(sa.sun_path))
    return vs_error_set(err, ENAMETOOLONG, "--console-socket %s", path);
  strcpy(sa.sun_path, path);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
    int e = errno;
    if (fd >= 0)
      close(fd);
    return vs_error_set(err, e, "connect to --console-socket %s", path);
  }
  return fd;
}

int ctr_exec(const ctr_runtime *rt, const char *id, const ctr_exec_opts *o, vs_error **err) {
  ctr_state *st = NULL;
  ctr_spec *pspec = NULL, *cspec = NULL;
  ctr_cgroup *cg = NULL;
  int nsfds[ARRAY_SIZE(exec_ns)];
  for (size_t i = 0; i < ARRAY_SIZE(exec_ns); i++)
    nsfds[i] = -1;
  int sp[2] = {-1, -1}, console_fd = -1, master = -1, ret = -1;
  sigset_t sigs, old_sigs;
  ctr_forwarded_signals(&sigs);
  if (!o->detach)
    sigprocmask(SIG_BLOCK, &sigs, &old_sigs);
  pid_t mid = -1, pid = -1;
  if (ctr_state_load(rt, id, &st, err) < 0)
    return -1;
  ctr_status s = ctr_state_status(rt, st);
  if (s != CTR_STATUS_RUNNING && s != CTR_STATUS_CREATED) {
    vs_error_set(err, 0, "cannot exec in container %s that is %s", id, ctr_status_name(s));
    goto out;
  }
  if (ctr_spec_parse_process(o->process, &pspec, err) < 0)
    goto out;
  char *text = json_dumps(st->config, JSON_COMPACT);
  int pr = text ? ctr_spec_parse(text, strlen(text), false, &cspec, err) : -1;
  free(text);
  if (pr < 0)
    goto out;
  if (ctr_security_validate(pspec->process.json, cspec->linux_json, err) < 0)
    goto out;
  if (pspec->process.terminal && !o->console_socket && o->detach) {
    vs_error_set(err, 0, "--tty needs --console-socket with --detach");
    goto out;
  }
  if (st->cgroup && ctr_cgroup_from_json(st->cgroup, &cg, err) < 0)
    goto out;
  if (open_namespaces(st->pid, nsfds, err) < 0)
    goto out;
  if (!ctr_pid_alive(st->pid, st->pid_start)) {
    vs_error_set(err, ESRCH, "container %s stopped", id);
    goto out;
  }
  if (pspec->process.terminal && o->console_socket &&
      (console_fd = connect_socket(o->console_socket, err)) < 0)
    goto out;
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) < 0) {
    vs_error_set(err, errno, "socketpair");
    goto out;
  }
  /* The process is our grandchild: become its reaper so we can wait for it. */
  if (!o->detach)
    prctl(PR_SET_CHILD_SUBREAPER, 1);
  fflush(NULL);
  mid = fork();
  if (mid < 0) {
    vs_error_set(err, errno, "fork");
    goto out;
  }
  if (mid == 0) {
    close(sp[0]);
    exec_child c = {.process = &pspec->process, .linux_json = cspec->linux_json,
                    .ns_fds = nsfds, .sync_fd = sp[1], .console_fd = console_fd,
                    .tty_to_runtime = pspec->process.terminal && !o->console_socket,
                    .preserve_fds = o->preserve_fds,
                    .init_pid = st->pid};
    exec_intermediate(&c);
  }
  close(sp[1]);
  sp[1] = -1;
  char msg[4096];
  int m = ctr_sync_recv(sp[0], msg, sizeof(msg));
  waitpid(mid, NULL, 0);
  if (m == SYNC_ERROR) {
    vs_error_set(err, 0, "%s", msg);
    goto out;
  }
  if (m != SYNC_PID) {
    vs_error_set(err, 0, "exec: the helper process died");
    goto out;
  }
  pid = (pid_t)atoi(msg);
  if (cg && ctr_cgroup_add_pid(cg, pid, err) < 0)
    goto out;
  if (ctr_sync_send(sp[0], SYNC_GO, NULL) < 0) {
    vs_error_set(err, errno, "sync with the exec'd process");
    goto out;
  }
  while ((m = ctr_maybe_recv_tty(sp[0], &master, err)) == 1)
    ;
  if (m < 0)
    goto out;
  m = ctr_sync_recv(sp[0], msg, sizeof(msg));
  if (m == SYNC_ERROR) {
    vs_error_set(err, 0, "%s", msg);
    goto out;
  }
  if (o->pid_file) {
    char buf[32];
    int n = snprintf(buf, sizeof(buf), "%d", (int)pid);
    if (vs_write_file_atomic(o->pid_file, buf, (size_t)n, 0644, err) < 0)
      goto out;
  }
  if (o->detach) {
    pid = -1;
    ret = 0;
    goto out;
  }
  ret = ctr_wait_foreground(pid, master, err);
  pid = -1;
out:
  if (ret < 0 && pid > 0) {
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
  }
  for (size_t i = 0; i < ARRAY_SIZE(exec_ns); i++)
    if (nsfds[i] >= 0)
      close(nsfds[i]);
  if (sp[0] >= 0)
    close(sp[0]);
  if (sp[1] >= 0)
    close(sp[1]);
  if (console_fd >= 0)
    close(console_fd);
  if (master >= 0)
    close(master);
  if (!o->detach)
    sigprocmask(SIG_SETMASK, &old_sigs, NULL);
  ctr_cgroup_free(cg);
  ctr_spec_free(pspec);
  ctr_spec_free(cspec);
  ctr_state_free(st);
  if (ret < 0)
    vs_error_wrap(err, "exec in container %s", id);
  return ret;
}
