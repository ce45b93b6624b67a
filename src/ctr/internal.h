/* Private to src/ctr: helpers shared by the runtime-core files. */
#ifndef VESSEL_CTR_INTERNAL_H
#define VESSEL_CTR_INTERNAL_H

#include "ctr.h"

#include <sys/types.h>

int ctr_write_file(const char *path, const char *data, vs_error **err);
/* mkdir -p inside the root; returns an O_PATH fd of the final directory. */
/* Atomic replace (temporary file + rename) without fsync: the state lives in /run, which does
 * not survive a reboot anyway, and fsync costs more than a whole container start. */
int ctr_write_file_replace(const char *path, const char *data, size_t len, mode_t mode,
                           vs_error **err);
int ctr_mkdir_p_in_root(int rootfd, const char *path, mode_t mode, vs_error **err);

char **ctr_strv_dup(char *const *v);
size_t ctr_strv_len(char *const *v);

/* /proc/<pid>/stat field 22; 0 when the process is gone or a zombie. */
unsigned long long ctr_pid_start_time(pid_t pid);
bool ctr_pid_alive(pid_t pid, unsigned long long start);

/* Run one hook with the state JSON on stdin, honouring its timeout. */
int ctr_hook_run(const ctr_hook *h, const char *state_json, vs_error **err);
int ctr_hooks_run(const ctr_spec *spec, enum ctr_hook_kind k, const char *state_json,
                  vs_error **err);

/* Send/receive one fd over a unix socket. */
int ctr_send_fd(int sock, int fd, const char *msg, vs_error **err);
int ctr_recv_fd(int sock, vs_error **err);

/* Foreground processes (run, exec): the signals we forward, and the loop that forwards them,
 * copies the terminal (master >= 0) and returns the exit status (128+N for signal N). The
 * caller blocks ctr_forwarded_signals() before the process starts. */
#include <signal.h>
void ctr_forwarded_signals(sigset_t *set);
int ctr_wait_foreground(pid_t pid, int master, vs_error **err);
/* If the next sync message carries a pty master, receive it (1); 0 if it is another message. */
int ctr_maybe_recv_tty(int sync_fd, int *master, vs_error **err);

#endif
