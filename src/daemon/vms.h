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
  /* the VMM being started, until pid is set: the fencer holds it from its spawn on
   * (cluster_ha.c), so that a vesseld that dies during a start leaves no guest unfenced */
  int spawn_pidfd;
  vd_src src;
  /* restart policy (Config.RestartPolicy), as Docker's for containers */
  bool manual_stop; /* stopped or killed by a request: policies other than always keep it down */
  bool restarting;  /* its restart timer is armed */
  int restart_count, restart_delay_ms;
  int restart_timerfd; /* on the loop while restarting (loop only) */
  vd_src restart_src;
  /* what its VMM holds (pool_memory.c's sampler), for the VMM held_pid only */
  pid_t held_pid;          /* the VMM the figures are of; another pid: not measured yet */
  uint64_t held;           /* the VMM's resident memory, bytes */
  bool balloon_ready;      /* the guest's balloon driver is up: the VM can give memory back */
  uint64_t balloon_target; /* the target the VMM reported (bytes the guest keeps) */
  uint64_t squeeze;        /* the daemon's balloon target under pool pressure; 0: none */
  struct vd_vm *next_dead;
} vd_vm;

typedef struct vd_vms {
  pthread_mutex_t lock; /* after d->lock and before d->event_lock in the lock order */
  pthread_cond_t cond;  /* a VMM ended */
  char *dir;            /* <data-root>/vms */
  vd_vm **vms;
  size_t n;
  vd_vm *dead;
  vs_store *images; /* vm_images.c: <data-root>/vm-images */
  json_t *pools;    /* pools.c: name -> the pool's file */
  char *pools_dir;  /* <data-root>/pools */
  json_t *ctr_held; /* pool_memory.c: running container id -> bytes in use, last sample */
  /* pool_memory.c: the sampler thread */
  pthread_t sampler;
  bool sampler_running, sampler_stop;
  pthread_cond_t sampler_cond; /* with lock: wakes the sampler to stop */
} vd_vms;

/* vms.c: the table (callers hold t->lock for the _locked ones) */
vd_vm *vd_vm_find_locked(vd_vms *t, const char *what); /* name, id or unique id prefix */
void vd_vm_add_locked(vd_vms *t, vd_vm *vm);
/* Out of the table; kept allocated until the daemon ends (a worker may still hold it). */
void vd_vm_remove_locked(vd_vms *t, vd_vm *vm);
void vd_vm_free(vd_vm *vm);
int vd_vm_save(vd_vm *vm, vs_error **err); /* record.json, atomically replaced */
const char *vd_vm_status(const vd_vm *vm);
bool vd_vm_running(vd_vms *t, const vd_vm *vm); /* takes t->lock */
json_t *vd_vm_event_attrs(const vd_vm *vm);

/* vms.c: the VMM (workers: these block) */
/* One request on the VMM's control socket ({"command": ...}, stolen); *result gets its result. */
int vd_vm_ctl(const vd_vm *vm, json_t *req, json_t **result, vs_error **err);
/* The same, giving up after timeout_ms without an answer (-1: no limit; ETIMEDOUT). */
int vd_vm_ctl_within(const vd_vm *vm, json_t *req, int timeout_ms, json_t **result, vs_error **err);
int vd_vm_ctl_simple(const vd_vm *vm, const char *command, vs_error **err);
/* Start the VMM (a cold boot, or a pending restore) and wait until it serves its socket. */
int vd_vm_start(vd_daemon *d, vd_vm *vm, vs_error **err);
/* Start a VMM that receives a live migration on listen_fd (a listening TCP socket, kept by the
 * caller) and then waits paused: the VM counts as running (paused) from now on; its control
 * socket appears once the stream is in. The record's Migrating keeps restart policies and
 * starts away meanwhile (docs/cluster.md). */
int vd_vm_start_incoming(vd_daemon *d, vd_vm *vm, int listen_fd, vs_error **err);
/* A connection to the VMM's control socket (for a caller that reads its events too). */
int vd_vm_ctl_connect(const vd_vm *vm, vs_error **err);
/* The power button, up to timeout seconds for the guest to power off, then SIGKILL. */
int vd_vm_stop(vd_daemon *d, vd_vm *vm, int timeout, vs_error **err);
void vd_vm_kill(vd_vms *t, vd_vm *vm, int sig);
/* Until the loop has seen the VMM end, at most timeout_ms (-1: no limit); whether it did. */
bool vd_vm_wait_stopped(vd_vms *t, vd_vm *vm, int timeout_ms);
/* A snapshot into dir with the disks frozen; the record follows the VMM to its new overlay. */
int vd_vm_snapshot(vd_vms *t, vd_vm *vm, const char *dir, json_t **res, vs_error **err);
char *vd_vm_snapshot_dir(const vd_vm *vm, const char *snap);

/* vms.c: restart policies. A stop or kill by a request sets manual_stop (persisted); a start by
 * one clears it and the restart count (takes t->lock). */
void vd_vm_note_manual(vd_vms *t, vd_vm *vm, bool stopped);
/* Whether the VM's restart policy wants it started again now that it is not running (takes
 * t->lock). */
bool vd_vm_restart_wanted(vd_vms *t, const vd_vm *vm);
/* The balloon's memory target (bytes the guest keeps) recorded in Config.MemoryTarget, given to
 * the running VMM (worker). */
int vd_vm_set_memory_target(vd_vms *t, vd_vm *vm, uint64_t target, vs_error **err);

/* vm_images.c: VM images (workers). Commit a stopped VM's kernel, initramfs and standalone
 * disk as the image ref (tagged in the VM image store; *full_out: the full reference). */
int vd_vm_image_commit(vd_daemon *d, vd_vm *vm, const char *ref, char **full_out,
                       char digest_out[VS_DIGEST_MAX], vs_error **err);
/* A machine's files given by path (POST /vessel/v1/images/vm/import: Ref, Kernel, Initrd, Disk,
 * Cpus, Memory, Append; the files are copied into the store) as the image Ref. */
int vd_vm_image_import(vd_daemon *d, json_t *body, char **full_out, char digest_out[VS_DIGEST_MAX],
                       vs_error **err);
/* A create request's Image (pulled when the store lacks it) into its Kernel, Initrd, Disk and
 * defaults (Cpus, Memory, Append) where the request gives none; Image leaves the body. */
int vd_vm_image_prepare(vd_daemon *d, json_t *body, const vs_registry_opts *o, char **full_out,
                        vs_error **err);
json_t *vd_vm_images_list(vd_daemon *d, vs_error **err); /* [{Ref, Digest}] */

/* vms.c: creating (workers) */
/* A new VM's directory and object (busy, not yet in the table); rec is stolen. */
vd_vm *vd_vm_create(vd_daemon *d, const char *name, json_t *rec, vs_error **err);
/* The same with the ID given (64 lowercase hex digits: a VM that moves here from another node of
 * the cluster keeps its ID); EEXIST when this node has a VM with that ID or name. */
vd_vm *vd_vm_create_with_id(vd_daemon *d, const char *name, const char *id, json_t *rec,
                            vs_error **err);
/* Its qcow2 disk as the request's Base and Size ask (fills disk's Path). */
int vd_vm_create_disk(vd_daemon *d, vd_vm *vm, json_t *disk, vs_error **err);
/* Write its record (the commit point) and add it to the table. */
int vd_vm_commit(vd_daemon *d, vd_vm *vm, vs_error **err);
/* Undo a create that did not commit: its directory and object. */
void vd_vm_discard(vd_vm *vm);
/* 1 to 64 of A-Z a-z 0-9 _ . -, starting with a letter or digit (VMs, snapshots). */
bool vd_vm_name_valid(const char *s);
/* Check a create request's body (every field but Name) and fill the record's Config (cpus,
 * memory, kernel, initrd, append) and the disk request (Base, Size; empty when none). Errors
 * name the field. */
int vd_vm_config_parse(json_t *body, json_t *cfg, json_t *disk, vs_error **err);

/* vms.c: the VM's NIC, a tap on its Config's Network (none: nothing), recorded in the record's
 * NetworkSettings; detached when the VM is removed. */
int vd_vm_net_attach(vd_daemon *d, vd_vm *vm, vs_error **err);
void vd_vm_net_detach(vd_daemon *d, vd_vm *vm);

/* vms.c: the vessel-vmm program beside vesseld's monitor */
char *vd_vmm_path(const vd_daemon *d);
/* vm_api.c: what the API does, for the cluster's reconciler too */
/* utime + stime of a process in nanoseconds, and its resident memory in bytes (0 when gone). */
void vd_proc_usage(pid_t pid, uint64_t *cpu_ns, uint64_t *rss);
/* A VM from a create request's body (borrowed; extra's fields are added to its record, but
 * for VmId: the ID it is made with, as vd_vm_create_with_id takes it), made
 * and committed, not busy. Errors carry errno EINVAL (the request), EEXIST (the name)... */
vd_vm *vd_vm_new_from_request(vd_daemon *d, const char *name, json_t *body, json_t *extra,
                              vs_error **err);
/* The inspect document of a VM (takes t->lock). */
json_t *vd_vm_inspect(vd_vms *t, const vd_vm *vm);
/* Remove a claimed VM (killed first with force); on failure it is still claimed. Its disk in
 * the cluster's shared storage (DiskDir) goes too, unless a migration moves it (Migrating). */
int vd_vm_remove(vd_daemon *d, vd_vm *vm, bool force, vs_error **err);
/* Claim a VM by name, ID or prefix for one request: ENOENT or EBUSY otherwise. */
vd_vm *vd_vm_claim_name(vd_vms *t, const char *what, vs_error **err);
void vd_vm_release(vd_vms *t, vd_vm *vm);

/* cluster_ha.c: a guest of the cluster does not start while its node is fenced (it lost its
 * lease: another node may start the guest from the same disk), and its restart policy does not
 * act at vesseld's start (the node restarts it once it holds its lease and etcd still places
 * the guest here) nor while fenced. */
int vd_ha_start_allowed(vd_daemon *d, const vd_vm *vm, vs_error **err);
bool vd_ha_local_restart_allowed(vd_daemon *d, const vd_vm *vm, bool daemon_start);

/* cluster_guests.c: VMs of the cluster (create places them through the scheduler; delete
 * removes the guest's record, true when that answered the call) */
void vd_cluster_vm_create(vd_call *c, const char *name, json_t *body);
bool vd_cluster_vm_delete(vd_call *c, bool force);

/* A request body with a field not in known: refused, naming the field and what (the body). */
int vd_body_known_fields(json_t *body, const char *const *known, size_t n, const char *what,
                         vs_error **err);
/* A size field of a request: a JSON integer of bytes or a string such as "512M". */
int vd_body_size(json_t *body, const char *field, uint64_t dflt, uint64_t *out, vs_error **err);

/* pools.c: resource pools (the pools live in vd_vms, under its lock) */
int vd_pools_load(vd_daemon *d, vs_error **err);
void vd_pools_free(vd_vms *t);
/* Check a pool create request and fill pool (Name, Cpus, Memory, the ratios); errors name the
 * field. */
int vd_pool_parse(json_t *body, json_t *pool, vs_error **err);
/* Whether a guest of cpus and mem bytes fits what the pool has left; the error says what is
 * (d->lock and the VMs' lock held, in that order). */
int vd_pool_admit_locked(vd_daemon *d, const char *name, double cpus, int64_t mem, vs_error **err);
/* What the pool's guests request and hold (d->lock and t->lock held, in that order): {Cpus,
 * Memory (requested), Held (what the running ones hold, as last sampled), Counted (what
 * admission counts: pool_memory.c), Guests: [{Kind, Name, Qos, Memory, Held, Counted,
 * BalloonTarget?}]}. Every guest counts, running or not. With detail, each guest also has Id,
 * Cpus, Running, and a running VM its VMM's Pid and its Dir. */
json_t *vd_pool_usage_locked(vd_daemon *d, const char *name, bool detail);
/* The VM's QoS class: guaranteed (the default), burstable or best-effort. */
const char *vd_vm_qos(const vd_vm *vm);
/* Put a VM's new VMM (pid) in its cgroup under its pool's (NULL: no pool, or an error); what
 * is returned is kept to remove the cgroup with vd_pool_cgroup_leave when the VMM ended. */
json_t *vd_pool_cgroup_enter(vd_daemon *d, const vd_vm *vm, pid_t pid, vs_error **err);
void vd_pool_cgroup_leave(json_t *saved);
/* Whether the VM's VMM goes into a cgroup of its pool: any pool but the default one, and the
 * default one for a VM that asked for a QoS class. */
bool vd_pool_cgroup_wanted(const vd_vm *vm);
/* A container's pool (its label, NULL: the default one) and its request (--cpus, --memory)
 * with its QoS class as Kubernetes derives it. */
const char *vd_pool_ctr_name(json_t *rec);
const char *vd_pool_ctr_request(json_t *rec, double *cpus, int64_t *mem);

/* pool_memory.c: what guests really hold, and the balloons that give it back (docs/daemon.md
 * "Held memory"). A sampler thread measures every running guest every few seconds; admission
 * counts each guest's memory as vd_*_memory_counted_locked say (t->lock held; *held: what it
 * holds, -1 when not known). */
int64_t vd_vm_memory_counted_locked(const vd_vm *vm, int64_t *held);
int64_t vd_ctr_memory_counted_locked(vd_vms *t, const vd_container *c, int64_t *held);
/* The balloon target a VM's VMM should have: its MemoryTarget (or Memory), lowered to the
 * daemon's squeeze under pool pressure (t->lock held). */
uint64_t vd_vm_balloon_goal_locked(const vd_vm *vm);
/* One pool (d->lock and t->lock held): what its running guests count against its capacity,
 * and the squeezes (vd_vm.squeeze) that follow: past 90 % the best-effort then burstable VMs
 * give memory until 70 %, below 60 % they get it back. The sampler then sets the balloons. */
void vd_pool_reclaim_locked(vd_daemon *d, const char *name, json_t *pool);
/* pool_stats.c: the memory a container's cgroup statistics say is in use (docker stats'). */
uint64_t vd_cgroup_memory_in_use(json_t *data);

#endif
