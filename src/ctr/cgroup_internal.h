/* Private to the cgroup code (cgroup*.c): host layout detection and per-version helpers. */
#ifndef VESSEL_CTR_CGROUP_INTERNAL_H
#define VESSEL_CTR_CGROUP_INTERNAL_H

#include "ctr/cgroup.h"

/* One mounted cgroup hierarchy as seen by the calling process. */
typedef struct cg_hier {
  char *mountpoint;  /* "/sys/fs/cgroup/memory" */
  char *mount_root;  /* root of the mount inside the hierarchy, usually "/" */
  char *controllers; /* v1: "cpu,cpuacct", "name=systemd"; v2: "" (read cgroup.controllers) */
  bool unified;
  char *self_path; /* the caller's cgroup in this hierarchy, from /proc/self/cgroup */
} cg_hier;

typedef struct cg_layout {
  cg_hier *h;
  size_t n;
} cg_layout;

/* Parse the text of /proc/self/mountinfo and /proc/self/cgroup. Pure: touches nothing else.
 * A hierarchy mounted twice is kept once (first mount wins). */
int cg_layout_parse(const char *mountinfo, const char *proc_cgroup, cg_layout *out, vs_error **err);
/* Same, reading the calling process's files. */
int cg_layout_load(cg_layout *out, vs_error **err);
void cg_layout_clear(cg_layout *l);
/* The v1 hierarchy that has `controller` ("memory", "name=systemd"), or NULL. */
const cg_hier *cg_layout_v1(const cg_layout *l, const char *controller);
const cg_hier *cg_layout_unified(const cg_layout *l);
/* Directory name of a hierarchy under /sys/fs/cgroup ("cpu,cpuacct", "systemd", "unified"). */
char *cg_hier_name(const cg_hier *h);

/* Whether a comma-separated list contains `item`. */
bool cg_list_has(const char *list, const char *item);

/* The container's directory in one hierarchy. */
typedef struct cg_dir {
  char *name;        /* see cg_hier_name(); "" for a pure v2 host */
  char *controllers; /* v1: the hierarchy's controllers; v2: those this container uses there */
  bool unified;
  char *mount;  /* the hierarchy's mount point on the host */
  char *path;   /* absolute directory on the host, below `mount` */
  int created;  /* how many trailing path components the runtime created (removed on destroy) */
  bool premade; /* made before the init's clone (ctr_cgroup_open_unified), not again by make */
} cg_dir;

struct ctr_cgroup {
  cg_dir *d;
  size_t n;
  /* cgroup2 only, within the creating process: the device rules and the attached filter, so
   * ctr_cgroup_allow_devices() can replace the filter with a wider one. */
  json_t *dev_rules;
  int bpf_fd;
  bool pure_v2;      /* planned on a host with cgroup2 only */
  bool default_path; /* under the runtime's own /vessel parent */
};

/* The directory that serves `controller` ("memory", "cpu", "hugetlb", "freezer", ...): the v1
 * hierarchy that has it, else the unified one if its controllers list it, else NULL. */
cg_dir *cg_dir_for(ctr_cgroup *cg, const char *controller);

/* Small file helpers for cgroup control files (no O_TRUNC/rename: these are kernel files). */
int cg_write(const char *dir, const char *file, const char *value, vs_error **err);
int cg_writef(const char *dir, const char *file, vs_error **err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Read a whole control file (NUL-terminated, trailing newline kept). */
int cg_read(const char *dir, const char *file, char **out, vs_error **err);
bool cg_file_exists(const char *dir, const char *file);
/* Read one unsigned value; "max" reads as -1. */
int cg_read_u64(const char *dir, const char *file, uint64_t *out, vs_error **err);
/* Look up `key value` in a flat keyed file (memory.stat, cpu.stat, memory.events). */
bool cg_keyed_get(const char *text, const char *key, uint64_t *out);

/* Resource application: one function per controller and version; the JSON has been checked by
 * ctr_cgroup_validate_resources() already. */
int cg_v1_memory(cg_dir *d, json_t *mem, vs_error **err);
int cg_v2_memory(cg_dir *d, json_t *mem, vs_error **err);
int cg_v1_cpu(cg_dir *d, json_t *cpu, vs_error **err);
int cg_v2_cpu(cg_dir *d, json_t *cpu, vs_error **err);
int cg_v1_cpuset(cg_dir *d, json_t *cpu, bool init_from_parent, vs_error **err);
int cg_v2_cpuset(cg_dir *d, json_t *cpu, vs_error **err);
/* cgroup2: write "+controller" into cgroup.subtree_control of every ancestor of d->path below
 * the mount point that does not have it yet. */
int cg_v2_enable(cg_dir *d, const char *controller, vs_error **err);
int cg_pids_limit(cg_dir *d, json_t *pids, vs_error **err);
int cg_v1_blkio(cg_dir *d, json_t *bio, vs_error **err);
int cg_v2_io(cg_dir *d, json_t *bio, vs_error **err);
int cg_hugetlb(cg_dir *d, json_t *limits, vs_error **err);
int cg_v1_devices(cg_dir *d, json_t *rules, vs_error **err);
/* cgroup2: build an eBPF device filter from `rules` (linux.resources.devices), runc's default
 * devices and `linux_devices` (may be NULL), attach it to d, and detach *prog_fd's filter if
 * one was attached before; *prog_fd becomes the new program. */
int cg_v2_devices_attach(cg_dir *d, json_t *rules, json_t *linux_devices, int *prog_fd,
                         vs_error **err);
int cg_v1_freeze(cg_dir *d, bool freeze, vs_error **err);
int cg_v2_freeze(cg_dir *d, bool freeze, vs_error **err);
/* Fill runc's stats "data" object from whichever hierarchies serve each controller. */
void cg_stats_fill(ctr_cgroup *cg, json_t *data);

/* Shares (v1, 2..262144) to weight (v2, 1..10000), the conversion runc and crun use. */
uint64_t cg_shares_to_weight(uint64_t shares);
/* "2MB" -> "2MB" as used in v1/v2 hugetlb file names; validates the syntax. */
bool cg_hugepage_size_valid(const char *s);

#endif
