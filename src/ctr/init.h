/* Private to src/ctr: the container's init (the child side of create) and the final steps
 * every container process takes before execve (shared with exec). */
#ifndef VESSEL_CTR_INIT_H
#define VESSEL_CTR_INIT_H

#include "cgroup.h"
#include "internal.h"

/* Messages on the SOCK_SEQPACKET sync socket between the runtime and the init. */
enum {
  SYNC_GO = 'G',         /* runtime -> init: "G<pid>": cgroups made and joined, id maps written;
                            the init's pid as the host sees it */
  SYNC_HOOKS = 'h',      /* init -> runtime: run prestart/createRuntime now */
  SYNC_HOOKS_DONE = 'H', /* runtime -> init */
  SYNC_READY = 'R',      /* init -> runtime: created; waits on exec.fifo (run: goes on and
                            keeps the socket open until execve closes it) */
  SYNC_TTY = 'T',        /* init -> runtime: pty master attached (foreground run) */
  SYNC_PID = 'P',        /* exec: intermediate -> runtime: pid of the process */
  SYNC_ERROR = 'E',      /* init -> runtime: "E<message>" */
};

typedef struct ctr_init_ctx {
  const char *id;
  const ctr_spec *spec;
  const ctr_process *process;
  const char *bundle; /* absolute */
  const char *rootfs; /* absolute */
  int sync_fd;
  int fifo_fd;         /* O_PATH of exec.fifo (create); -1: run, start once ready */
  int own_fds_dir;     /* O_PATH of /proc/self/fd opened before the root changed: reopens
                          fifo_fd whatever /proc the new root has (or lacks) */
  int start_fd;        /* exec.fifo opened for writing once `start` came; -1 before */
  int console_fd;      /* connected --console-socket; -1 for none */
  bool tty_to_runtime; /* foreground run: send the pty master over sync_fd */
  bool no_pivot;
  bool new_keyring; /* join a fresh session keyring (runc's default; --no-new-keyring) */
  int preserve_fds;
  ctr_cgroup *cg;    /* planned (ctr_cgroup_plan); made by the runtime before it sends GO */
  bool join_cgroups; /* the init joins cg itself on GO (ctr_cgroup_join_self), not the runtime */
  bool in_cgroup2;   /* cloned into cg's cgroup2 directory already (CLONE_INTO_CGROUP) */
  bool *have_go;     /* the init has received GO */
  pid_t *host_pid;   /* the init's pid in the runtime's pid namespace, from GO */
} ctr_init_ctx;

/* In the init: wait for the runtime's GO unless it came already (exits if the runtime gave
 * up, which reports why), then join the cgroups when join_cgroups says so. */
void ctr_init_await_go(const ctr_init_ctx *c);

/* The init after clone(): never returns. */
__attribute__((noreturn)) void ctr_init_main(ctr_init_ctx *c);

int ctr_rootfs_setup(const ctr_init_ctx *c, vs_error **err);
int ctr_rootfs_pivot(const ctr_init_ctx *c, vs_error **err);
int ctr_rootfs_finish(const ctr_init_ctx *c, vs_error **err);

/* Allocate a pty in the current mount namespace, make it the controlling terminal and stdio,
 * and hand the master to console_fd (conmon) or the runtime. */
int ctr_setup_terminal(const ctr_process *p, int console_fd, int runtime_fd, bool bind_console,
                       vs_error **err);
/* Resolve process.args[0] with the process's PATH. Caller frees. */
char *ctr_find_executable(const ctr_process *p, vs_error **err);
/* Every signal to its default disposition, none blocked. */
void ctr_reset_signals(void);
/* rlimits, oom score, LSM, seccomp, user, capabilities, cwd, umask, default signal
 * dispositions and mask, then execve. Only returns on failure. */
int ctr_process_exec(const ctr_process *p, json_t *linux_json, const char *exe, int preserve_fds,
                     vs_error **err);

int ctr_sync_send(int fd, char type, const char *payload);
/* Receive one message; returns its type, or 0 on EOF, -1 on error. payload may be NULL. */
int ctr_sync_recv(int fd, char *payload, size_t size);

#endif
