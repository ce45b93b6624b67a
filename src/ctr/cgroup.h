/* vessel-runtime cgroups: one container's cgroup across every hierarchy of the host.
 *
 * Internal to src/ctr. Works on cgroup v1, v2 and the hybrid layout (v1 controllers each mounted
 * on their own plus a cgroup2 hierarchy at /sys/fs/cgroup/unified). The layout is detected per
 * controller from /proc/self/mountinfo and /proc/self/cgroup; nothing assumes one path for all.
 *
 * The `resources` arguments are the OCI spec's `linux.resources` object, as parsed JSON.
 * Every function that can fail takes `vs_error **err` last (see base.h).
 */
#ifndef VESSEL_CTR_CGROUP_H
#define VESSEL_CTR_CGROUP_H

#include <jansson.h>
#include <stdbool.h>
#include <sys/types.h>

#include "base/base.h"

typedef struct ctr_cgroup ctr_cgroup;

/* Check `linux.resources` without touching the host (types, ranges, device rules, cpuset
 * syntax). Errors name the field: "linux.resources.memory.limit: must be an integer".
 * ctr_cgroup_create() calls this itself; it is public so `create` can refuse early. */
int ctr_cgroup_validate_resources(json_t *resources, vs_error **err);

/* Create the container's cgroup in every hierarchy and apply `resources` (may be NULL).
 * cgroups_path: the spec's `linux.cgroupsPath` or NULL. Absolute = relative to each hierarchy's
 * root; relative = under the calling process's cgroup in each hierarchy; NULL = "/vessel/<id>".
 * On failure everything created so far is removed again. *out is freed with ctr_cgroup_free(). */
int ctr_cgroup_create(const char *id, const char *cgroups_path, json_t *resources, ctr_cgroup **out,
                      vs_error **err);
/* ctr_cgroup_create() in two steps: plan decides the directories (nothing on the host changes:
 * a process cloned afterwards knows them), make creates them and applies `resources`, removing
 * what it made when it fails (the plan is still freed by the caller). */
int ctr_cgroup_plan(const char *id, const char *cgroups_path, ctr_cgroup **out, vs_error **err);
int ctr_cgroup_make(ctr_cgroup *cg, json_t *resources, vs_error **err);

/* v1 devices controller: add allow rules ("c 1:3 rwm") for the spec's `linux.devices` entries,
 * like runc does (call right after create; a no-op where there is no devices controller). */
int ctr_cgroup_allow_devices(ctr_cgroup *cg, json_t *devs, vs_error **err);

/* Move `pid` (0: the calling process) into the container's cgroup in every hierarchy. Call
 * before the container's init unshares its cgroup namespace so that its namespace root is the
 * container's cgroup. */
int ctr_cgroup_add_pid(ctr_cgroup *cg, pid_t pid, vs_error **err);

/* Joining a cgroup v1 hierarchy through cgroup.procs (and any cgroup2 one) takes the kernel's
 * process-wide cgroup_threadgroup_rwsem for writing: an RCU grace period, 15-25 ms on the hybrid
 * hosts we run on, paid by every container start. Two ways around it, used together by create:
 * - the cgroup2 directory is made before the init is cloned and the init is cloned into it
 *   (clone3 with CLONE_INTO_CGROUP, which takes that lock only for reading);
 * - in each v1 hierarchy the init moves itself by writing 0 to `tasks`: one thread moving itself
 *   needs only cgroup_mutex (kernel 6.2 and later; older ones pay the grace period as before).
 *
 * Where there is a cgroup2 hierarchy on a host that also has v1 ones (hybrid), make the
 * container's directory there now and set *fd to an O_RDONLY descriptor of it for
 * CLONE_INTO_CGROUP; *fd is -1 where there is none to make (pure v1, or pure v2 where the
 * directory must stay empty until make has enabled its controllers). */
int ctr_cgroup_open_unified(ctr_cgroup *cg, int *fd, vs_error **err);
/* In the process to be moved (single-threaded): join every hierarchy, v1 ones through `tasks`,
 * the cgroup2 one through cgroup.procs unless skip_unified (already cloned into it). */
int ctr_cgroup_join_self(ctr_cgroup *cg, bool skip_unified, vs_error **err);

/* Serialise for the state file / reopen from it (later commands: kill, pause, update, delete). */
json_t *ctr_cgroup_to_json(const ctr_cgroup *cg);
int ctr_cgroup_from_json(json_t *saved, ctr_cgroup **out, vs_error **err);

/* Freeze (pause) or thaw (resume) every process of the container; waits until the freezer
 * reports the new state. */
int ctr_cgroup_freeze(ctr_cgroup *cg, bool freeze, vs_error **err);
/* Whether the container is frozen now (for `state` to report "paused"). */
int ctr_cgroup_is_frozen(ctr_cgroup *cg, bool *frozen, vs_error **err);

/* Apply new resources to a running container (`update`); only the fields present change. */
int ctr_cgroup_update(ctr_cgroup *cg, json_t *resources, vs_error **err);

/* Every pid in the container's cgroup (`ps`, `kill --all`, `delete --force`). *pids is
 * malloc'ed, sorted ascending; free() it. */
int ctr_cgroup_pids(ctr_cgroup *cg, pid_t **pids, size_t *n, vs_error **err);

/* Send `sig` to every process in the cgroup (thawing a frozen cgroup first for SIGKILL). */
int ctr_cgroup_kill(ctr_cgroup *cg, int sig, vs_error **err);

/* Statistics in the shape of runc's `events --stats` "data" object:
 * {"cpu":{"usage":{...},"throttling":{...}},"memory":{"usage":{...},"swap":{...},"raw":{...}},
 *  "pids":{"current":N,"limit":N},"blkio":{...},"hugetlb":{...}}. Also reports the OOM-kill
 * count in memory.oom_kill / "oom_kill" where the kernel has it. New reference or NULL. */
json_t *ctr_cgroup_stats(ctr_cgroup *cg, vs_error **err);

/* Remove every directory the runtime created for this container in every hierarchy (retries
 * rmdir on EBUSY while exiting processes leave). The processes must be gone already. */
int ctr_cgroup_destroy(ctr_cgroup *cg, vs_error **err);

void ctr_cgroup_free(ctr_cgroup *cg);

/* The hierarchies the container's cgroup spans, for mounting a `cgroup` filesystem inside the
 * container (bind-mount `host_path` at /sys/fs/cgroup/`name`, or at /sys/fs/cgroup when
 * `name` is "" on a pure v2 host). */
typedef struct ctr_cgroup_hierarchy {
  const char *name;      /* "memory", "cpu,cpuacct", "name=systemd" -> "systemd", "unified", "" */
  const char *host_path; /* the container's cgroup directory on the host */
  bool unified;          /* cgroup2 */
} ctr_cgroup_hierarchy;
size_t ctr_cgroup_hierarchy_count(const ctr_cgroup *cg);
bool ctr_cgroup_hierarchy_get(const ctr_cgroup *cg, size_t i, ctr_cgroup_hierarchy *out);

#endif
