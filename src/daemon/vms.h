/* Private to src/daemon: VMs as daemon objects (vms.c, vm_console.c). */
#ifndef VESSEL_DAEMON_VMS_H
#define VESSEL_DAEMON_VMS_H

#include "daemon/internal.h"

typedef struct vd_vm {
  char id[65];
  char *name;
  char *dir;   /* <data-root>/vms/<id> */
  json_t *rec; /* record.json: Name, Created, Config, Disk, Restore, FinishedAt, ExitCode... */
  /* under vd_vms.lock */
  pid_t pid; /* the running vessel-vmm, 0 when none */
  unsigned long long pid_start;
  bool paused, stopping;
  bool busy;    /* a request works on it: another one gets 409 */
  bool removed; /* kept allocated until the daemon ends */
  int exit_code;
  char *started_at, *finished_at, *error;
  int pidfd; /* on the loop while it runs */
  vd_src src;
  struct vd_vm *next_dead;
} vd_vm;

typedef struct vd_vms {
  pthread_mutex_t lock; /* after d->lock and before d->event_lock in the lock order */
  pthread_cond_t cond;  /* a VMM ended */
  char *dir;            /* <data-root>/vms */
  vd_vm **vms;
  size_t n;
  vd_vm *dead;
} vd_vms;

const char *vd_vm_status(const vd_vm *vm);
/* 1 to 64 of A-Z a-z 0-9 _ . -, starting with a letter or digit (VMs, snapshots). */
bool vd_vm_name_valid(const char *s);
/* Check a create request's body (every field but Name) and fill the record's Config (cpus,
 * memory, kernel, initrd, append) and the disk request (Base, Size; empty when none). Errors
 * name the field. */
int vd_vm_config_parse(json_t *body, json_t *cfg, json_t *disk, vs_error **err);

#endif
