/* vessel ctr: the OCI runtime (the library behind vessel-runtime).
 *
 * This is the module's one public header: the runc-compatible front end in src/cli/runtime uses
 * only what is declared here. A container is described by a bundle (config.json + rootfs) and
 * recorded in a state directory under the runtime root (default /run/vessel-runtime/<id>).
 */
#ifndef VESSEL_CTR_H
#define VESSEL_CTR_H

#include "base/base.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define CTR_DEFAULT_ROOT "/run/vessel-runtime"
#define CTR_OCI_VERSION "1.2.0"
#define CTR_ID_MAX 255
#define CTR_SPEC_MAX_BYTES (4U << 20)

/* ------------------------------------------------------------------ spec */

enum ctr_ns_type {
  CTR_NS_PID,
  CTR_NS_NET,
  CTR_NS_MNT,
  CTR_NS_IPC,
  CTR_NS_UTS,
  CTR_NS_USER,
  CTR_NS_CGROUP,
  CTR_NS_TIME,
  CTR_NS_COUNT,
};

enum ctr_hook_kind {
  CTR_HOOK_PRESTART,
  CTR_HOOK_CREATE_RUNTIME,
  CTR_HOOK_CREATE_CONTAINER,
  CTR_HOOK_START_CONTAINER,
  CTR_HOOK_POSTSTART,
  CTR_HOOK_POSTSTOP,
  CTR_HOOK_COUNT,
};

typedef struct ctr_namespace {
  bool present; /* listed in linux.namespaces */
  char *path;   /* join this one instead of creating a new one; NULL = new */
} ctr_namespace;

typedef struct ctr_idmap {
  uint32_t container_id, host_id, size;
} ctr_idmap;

typedef struct ctr_mount {
  char *destination;
  char *type;                /* may be NULL for bind mounts */
  char *source;              /* may be NULL */
  unsigned long flags;       /* MS_* flags to set */
  unsigned long propagation; /* MS_SHARED/MS_SLAVE/MS_PRIVATE/MS_UNBINDABLE (| MS_REC), 0 = none */
  bool bind, recursive;
  bool tmpcopyup; /* tmpfs starts with a copy of what the image has at the destination */
  char *data;     /* file-system specific options, comma separated; NULL if none */
} ctr_mount;

typedef struct ctr_device {
  char type; /* 'c', 'b', 'u', 'p' */
  char *path;
  int64_t major, minor;
  uint32_t mode; /* permission bits */
  uint32_t uid, gid;
} ctr_device;

typedef struct ctr_hook {
  char *path;
  char **args; /* NULL-terminated, may be NULL */
  char **env;  /* NULL-terminated, may be NULL */
  int timeout; /* seconds, 0 = none */
} ctr_hook;

typedef struct ctr_process {
  json_t *json; /* the process object (borrowed from the spec document) */
  bool terminal;
  unsigned console_height, console_width;
  uint32_t uid, gid;
  gid_t *additional_gids;
  size_t n_additional_gids;
  int umask; /* -1 = leave as is */
  char *cwd;
  char **args; /* NULL-terminated, at least one */
  char **env;  /* NULL-terminated */
  bool no_new_privileges;
} ctr_process;

typedef struct ctr_sysctl {
  char *key, *value;
} ctr_sysctl;

typedef struct ctr_spec {
  json_t *json; /* the whole document (owned) */
  char *oci_version;
  char *root_path; /* as written in the spec (relative to the bundle or absolute) */
  bool root_readonly;
  bool has_process;
  ctr_process process;
  char *hostname, *domainname;
  ctr_mount *mounts;
  size_t n_mounts;
  ctr_hook *hooks[CTR_HOOK_COUNT];
  size_t n_hooks[CTR_HOOK_COUNT];
  /* linux */
  json_t *linux_json; /* borrowed; NULL if absent */
  json_t *resources;  /* borrowed; NULL if absent */
  ctr_namespace ns[CTR_NS_COUNT];
  ctr_idmap *uid_maps, *gid_maps;
  size_t n_uid_maps, n_gid_maps;
  ctr_device *devices;
  size_t n_devices;
  char **masked_paths, **readonly_paths; /* NULL-terminated */
  ctr_sysctl *sysctls;
  size_t n_sysctls;
  char *cgroups_path;
  unsigned long rootfs_propagation; /* 0 = runc's default (rslave for the mounts, rprivate root) */
  bool has_time_offsets;
  int64_t time_offsets[2][2]; /* [monotonic, boottime][secs, nanosecs] */
  json_t *annotations;        /* borrowed; NULL if absent */
} ctr_spec;

/* Parse config.json text. `need_process` makes process mandatory (create/run).
 * Errors name the field: "mounts[2].destination: must be an absolute path". */
int ctr_spec_parse(const char *text, size_t len, bool need_process, ctr_spec **out, vs_error **err);
/* Load <bundle>/config.json. */
int ctr_spec_load(const char *bundle, bool need_process, ctr_spec **out, vs_error **err);
void ctr_spec_free(ctr_spec *spec);
/* Parse a process object on its own (exec --process FILE). The returned spec has only process. */
int ctr_spec_parse_process(json_t *process, ctr_spec **out, vs_error **err);
const char *ctr_ns_name(enum ctr_ns_type t);
const char *ctr_hook_name(enum ctr_hook_kind k);

/* The default config.json of `spec` (like `runc spec`), rootless variant optional. */
json_t *ctr_default_spec(bool rootless);
/* What `features` prints. */
json_t *ctr_features(void);
/* What Docker gives every container (its defaults, which docker-made images expect), for the
 * front ends that build a spec from an image (vesseld, `vessel run`): the mounts of /proc, /dev,
 * /dev/pts, /dev/shm, /dev/mqueue and /sys, then /etc/hosts, /etc/resolv.conf and /etc/hostname
 * bound from the files of those names in etc_dir; and the capability set. */
json_t *ctr_docker_default_mounts(const char *etc_dir);
json_t *ctr_docker_default_caps(void);
/* Writes the files those mounts bind into etc_dir: hosts and hostname naming the container
 * `hostname`, and a copy of the host's resolv.conf (empty when the host has none). */
int ctr_docker_write_etc_files(const char *etc_dir, const char *hostname, vs_error **err);
/* Docker's DNS and hosts options (arrays of strings, NULL or empty when not given): --dns,
 * --dns-search and --dns-option replace the host's nameservers, search domains and options in
 * resolv.conf (each kept from the host's when not given; a search list of "." writes none),
 * --add-host "name:address" lines go into hosts. */
typedef struct ctr_docker_dns {
  json_t *servers, *search, *options, *extra_hosts;
} ctr_docker_dns;
/* ctr_docker_write_etc_files with those options; addresses are checked (EINVAL naming one). */
int ctr_docker_write_etc_files_dns(const char *etc_dir, const char *hostname,
                                   const ctr_docker_dns *dns, vs_error **err);
/* Copy a directory tree (regular files, directories, symlinks) from one directory fd into
 * another, keeping modes and owners; nothing is followed (tmpfs copy-up, volume copy-up). */
int ctr_copy_tree(int from, int to, vs_error **err);
/* A seccomp profile in Docker's format (docker run --security-opt seccomp=FILE) as the OCI
 * linux.seccomp object dockerd would give the runtime for a container with the capabilities
 * caps (bounding set, names "CAP_..."); checked as the runtime will check it. EINVAL errors
 * name the problem. */
json_t *ctr_seccomp_from_docker(json_t *profile, json_t *caps, vs_error **err);

/* ------------------------------------------------------------ containers */

/* The runtime's context: one per command invocation. */
typedef struct ctr_runtime {
  char *root; /* state root, e.g. /run/vessel-runtime */
} ctr_runtime;

/* A container ID is 1..255 characters of [A-Za-z0-9_+.-], not "." or "..". */
int ctr_id_validate(const char *id, vs_error **err);

typedef enum {
  CTR_STATUS_CREATING,
  CTR_STATUS_CREATED,
  CTR_STATUS_RUNNING,
  CTR_STATUS_PAUSED,
  CTR_STATUS_STOPPED,
} ctr_status;
const char *ctr_status_name(ctr_status s);

/* The persisted record of one container (state.json in its state directory). */
typedef struct ctr_state {
  char *id;
  pid_t pid;                    /* 0 while creating */
  unsigned long long pid_start; /* /proc/<pid>/stat starttime, guards against pid reuse */
  char *bundle;
  char *rootfs;
  char *created; /* RFC 3339 */
  char *owner;
  bool started;
  json_t *annotations; /* owned, may be NULL */
  json_t *cgroup;      /* owned, ctr_cgroup_to_json(), may be NULL */
  json_t *config;      /* owned: the spec document the container was created from */
  ctr_status stored;   /* status last written */
} ctr_state;

void ctr_state_free(ctr_state *st);
json_t *ctr_state_to_json(const ctr_state *st);
int ctr_state_from_json(json_t *j, ctr_state **out, vs_error **err);
/* Directory of one container under the runtime root. Caller frees. */
char *ctr_state_dir(const ctr_runtime *rt, const char *id);
int ctr_state_save(const ctr_runtime *rt, const ctr_state *st, vs_error **err);
int ctr_state_load(const ctr_runtime *rt, const char *id, ctr_state **out, vs_error **err);
/* The OCI status now: stopped when the init is gone (or its pid was reused), paused when the
 * cgroup is frozen, created while the init waits on exec.fifo, running otherwise. */
ctr_status ctr_state_status(const ctr_runtime *rt, const ctr_state *st);
/* The OCI state document (what `state` prints and hooks read). */
json_t *ctr_state_oci_json(const ctr_runtime *rt, const ctr_state *st);
/* IDs of all containers under the root, sorted. NULL-terminated; caller frees. */
char **ctr_list_ids(const ctr_runtime *rt, vs_error **err);
void ctr_strv_free(char **v);

typedef struct ctr_create_opts {
  const char *bundle;         /* default "." */
  const char *pid_file;       /* may be NULL */
  const char *console_socket; /* may be NULL */
  bool no_pivot;
  bool no_new_keyring;
  int preserve_fds; /* fds 3..3+n-1 passed to the container */
  bool foreground;  /* run without --detach: keep the terminal and wait */
} ctr_create_opts;

/* create: the init waits on exec.fifo until `start`. Returns the init's pid. */
pid_t ctr_create(const ctr_runtime *rt, const char *id, const ctr_create_opts *o, vs_error **err);
int ctr_start(const ctr_runtime *rt, const char *id, vs_error **err);
/* run: create + start; foreground waits and returns the container's exit status (0..255). */
int ctr_run(const ctr_runtime *rt, const char *id, const ctr_create_opts *o, vs_error **err);
int ctr_kill(const ctr_runtime *rt, const char *id, int sig, bool all, vs_error **err);
int ctr_delete(const ctr_runtime *rt, const char *id, bool force, vs_error **err);
int ctr_pause(const ctr_runtime *rt, const char *id, bool pause, vs_error **err);
/* Pids of the container's processes (from its cgroup). */
int ctr_ps(const ctr_runtime *rt, const char *id, pid_t **pids, size_t *n, vs_error **err);
int ctr_update(const ctr_runtime *rt, const char *id, json_t *resources, vs_error **err);
/* runc's stats event: {"type":"stats","id":...,"data":{...}} */
json_t *ctr_stats(const ctr_runtime *rt, const char *id, vs_error **err);

typedef struct ctr_exec_opts {
  json_t *process; /* the full process object (built by the CLI from --process or flags) */
  const char *console_socket;
  const char *pid_file;
  bool detach;
  int preserve_fds;
} ctr_exec_opts;
/* Build exec's process object from the container's own process (runc's defaults). */
json_t *ctr_exec_default_process(const ctr_runtime *rt, const char *id, vs_error **err);
/* Returns the exit status of the process (foreground) or 0 (detach). */
int ctr_exec(const ctr_runtime *rt, const char *id, const ctr_exec_opts *o, vs_error **err);

/* Protection against a container overwriting the runtime binary through /proc/<pid>/exe:
 * re-executes the program (once) from a private read-only bind mount of itself, or from a
 * sealed memfd copy where that cannot be made (selfexe.c). Returns only on failure or when
 * already running from a file nobody can write to. */
int ctr_reexec_sealed(char **argv, vs_error **err);

#endif
