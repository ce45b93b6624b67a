/* vessel-runtime process security: capabilities, no_new_privs, seccomp, rlimits, oom score,
 * AppArmor / SELinux. Internal to src/ctr.
 *
 * The arguments are sections of the OCI spec as parsed JSON (jansson): `process`,
 * `process.capabilities`, `process.rlimits`, `linux`, `linux.seccomp`. Errors name the field:
 * "linux.seccomp.syscalls[3].action: unknown action \"SCMP_ACT_FOO\"".
 *
 * Order in the container's init (see NOTES-ctr.md), after the root filesystem is set up:
 *   1. ctr_rlimits_apply(process.rlimits)
 *   2. ctr_oom_score_adj_apply(process.oomScoreAdj)   (only when the spec has it)
 *   3. ctr_lsm_apply(process)                         (AppArmor/SELinux exec label)
 *   4. if !process.noNewPrivileges: ctr_seccomp_load(linux.seccomp)  (needs CAP_SYS_ADMIN)
 *   5. ctr_caps_keep_across_user_switch()
 *   6. core: setgroups / setresgid / setresuid to process.user
 *   7. ctr_caps_apply(process.capabilities, process.noNewPrivileges)
 *   8. if process.noNewPrivileges: ctr_seccomp_load(linux.seccomp)
 *   9. execve
 */
#ifndef VESSEL_CTR_SECURITY_H
#define VESSEL_CTR_SECURITY_H

#include <jansson.h>
#include <stdbool.h>

#include "base/base.h"

/* Check everything security-related before anything is created: capability names, seccomp
 * actions / architectures / syscall names / argument operators / flags, rlimit types and
 * values (a limit above the host's hard limit without CAP_SYS_RESOURCE is refused, naming the
 * limit), oomScoreAdj range, apparmorProfile / selinuxLabel on a host without AppArmor /
 * SELinux (refused, like runc). `process` and `linux_section` may be NULL. */
int ctr_security_validate(json_t *process, json_t *linux_section, vs_error **err);

/* Split out so each can be checked (and fuzzed) on its own; `what` is the field path used in
 * messages, e.g. "linux.seccomp". */
int ctr_seccomp_validate(json_t *seccomp, const char *what, vs_error **err);
int ctr_caps_validate(json_t *caps, const char *what, vs_error **err);
int ctr_rlimits_validate(json_t *rlimits, const char *what, vs_error **err);

/* setrlimit() each entry of process.rlimits (NULL = nothing). */
int ctr_rlimits_apply(json_t *rlimits, vs_error **err);

/* Write /proc/self/oom_score_adj. */
int ctr_oom_score_adj_apply(int score, vs_error **err);

/* process.apparmorProfile / process.selinuxLabel: set the exec label when the host has the
 * LSM; refuse (error) when the spec asks for one the host does not have. */
int ctr_lsm_apply(json_t *process, vs_error **err);

/* PR_SET_KEEPCAPS so the permitted set survives the switch from uid 0 to the container user. */
int ctr_caps_keep_across_user_switch(vs_error **err);

/* After the user switch: drop the bounding set to process.capabilities.bounding, set effective,
 * permitted and inheritable, clear keep-caps, raise the ambient set, and set no_new_privs if
 * asked. caps == NULL means "no capabilities at all" (every set empty), as in runc. */
int ctr_caps_apply(json_t *caps, bool no_new_privileges, vs_error **err);

/* Build the filter from linux.seccomp with libseccomp and load it (NULL = no filter). */
int ctr_seccomp_load(json_t *seccomp, vs_error **err);

/* For `features`: set "capabilities", "seccomp" (actions, operators, archs, knownFlags,
 * supportedFlags), "apparmor" and "selinux" ({"enabled": host has it}) in the `linux` object. */
void ctr_security_features(json_t *linux_features);

#endif
