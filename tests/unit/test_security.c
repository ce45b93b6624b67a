/* Validation errors for capabilities, seccomp, rlimits and LSM fields; applying them in forked
 * children (seccomp errno, dropped CAP_CHOWN, caps kept across a user switch, rlimits). */
#include <errno.h>
#include <fcntl.h>
#include <sys/capability.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "ctr/security.h"
#include "ctr/security_internal.h"
#include "tap.h"

static json_t *parse(const char *text) {
  json_error_t je;
  json_t *j = json_loads(text, 0, &je);
  if (!j)
    TAP_FAIL("bad test JSON: %s", je.text);
  return j;
}

/* Validate linux.seccomp given as text; returns the error message (static buffer) or NULL. */
static const char *seccomp_error(const char *text) {
  static char msg[512];
  json_t *j = parse(text);
  vs_error *err = NULL;
  int rc = ctr_seccomp_validate(j, "linux.seccomp", &err);
  json_decref(j);
  if (rc == 0)
    return NULL;
  snprintf(msg, sizeof(msg), "%s", err->msg);
  vs_error_free(err);
  return msg;
}

TEST(seccomp_errors_name_the_field) {
  CHECK(seccomp_error("{\"defaultAction\":\"SCMP_ACT_ALLOW\"}") == NULL);
  CHECK_CONTAINS(seccomp_error("{}"), "linux.seccomp.defaultAction: missing");
  CHECK_CONTAINS(seccomp_error("{\"defaultAction\":\"SCMP_ACT_ALLOW\",\"syscalls\":["
                               "{\"names\":[\"a\"],\"action\":\"SCMP_ACT_ALLOW\"},"
                               "{\"names\":[\"a\"],\"action\":\"SCMP_ACT_ALLOW\"},"
                               "{\"names\":[\"a\"],\"action\":\"SCMP_ACT_ALLOW\"},"
                               "{\"names\":[\"mkdir\"],\"action\":\"SCMP_ACT_FOO\"}]}"),
                 "linux.seccomp.syscalls[3].action: unknown action \"SCMP_ACT_FOO\"");
  CHECK_CONTAINS(seccomp_error("{\"defaultAction\":\"SCMP_ACT_ERRNO\",\"architectures\":"
                               "[\"SCMP_ARCH_X86_64\",\"SCMP_ARCH_VAX\"]}"),
                 "linux.seccomp.architectures[1]: unknown architecture \"SCMP_ARCH_VAX\"");
  CHECK_CONTAINS(seccomp_error("{\"defaultAction\":\"SCMP_ACT_ALLOW\",\"syscalls\":"
                               "[{\"names\":[\"Mk Dir\"],\"action\":\"SCMP_ACT_ERRNO\"}]}"),
                 "linux.seccomp.syscalls[0].names[0]: \"Mk Dir\" is not a syscall name");
  CHECK_CONTAINS(seccomp_error("{\"defaultAction\":\"SCMP_ACT_ALLOW\",\"syscalls\":"
                               "[{\"names\":[\"read\"],\"action\":\"SCMP_ACT_ERRNO\",\"args\":"
                               "[{\"index\":7,\"value\":1,\"op\":\"SCMP_CMP_EQ\"}]}]}"),
                 "linux.seccomp.syscalls[0].args[0].index: 7 is out of range");
  CHECK_CONTAINS(seccomp_error("{\"defaultAction\":\"SCMP_ACT_ALLOW\",\"syscalls\":"
                               "[{\"names\":[\"read\"],\"action\":\"SCMP_ACT_ERRNO\",\"args\":"
                               "[{\"index\":0,\"value\":1,\"op\":\"SCMP_CMP_XX\"}]}]}"),
                 "linux.seccomp.syscalls[0].args[0].op: unknown operator \"SCMP_CMP_XX\"");
  CHECK_CONTAINS(seccomp_error("{\"defaultAction\":\"SCMP_ACT_ALLOW\",\"flags\":[\"BOGUS\"]}"),
                 "linux.seccomp.flags[0]: unknown flag \"BOGUS\"");
  CHECK_CONTAINS(seccomp_error("{\"defaultAction\":\"SCMP_ACT_ERRNO\",\"defaultErrnoRet\":-3}"),
                 "linux.seccomp.defaultErrnoRet: -3 is out of range");
  CHECK_CONTAINS(seccomp_error("{\"defaultAction\":\"SCMP_ACT_ALLOW\",\"syscalls\":{}}"),
                 "linux.seccomp.syscalls: must be an array");
  CHECK_CONTAINS(seccomp_error("{\"defaultAction\":\"SCMP_ACT_NOTIFY\"}"), "seccomp agent");
}

static const char *caps_error(const char *text) {
  static char msg[512];
  json_t *j = parse(text);
  vs_error *err = NULL;
  int rc = ctr_caps_validate(j, "process.capabilities", &err);
  json_decref(j);
  if (rc == 0)
    return NULL;
  snprintf(msg, sizeof(msg), "%s", err->msg);
  vs_error_free(err);
  return msg;
}

TEST(capability_names_are_checked) {
  CHECK(caps_error("{\"bounding\":[\"CAP_CHOWN\",\"CAP_NET_RAW\"],\"ambient\":[]}") == NULL);
  CHECK_CONTAINS(caps_error("{\"effective\":[\"CAP_CHOWN\",\"CAP_FLY\"]}"),
                 "process.capabilities.effective[1]: unknown capability \"CAP_FLY\"");
  CHECK_CONTAINS(caps_error("{\"permitted\":[\"chown\"]}"), "unknown capability \"chown\"");
  CHECK_CONTAINS(caps_error("{\"permitted\":[\"CAP_0\"]}"), "unknown capability \"CAP_0\"");
  CHECK_CONTAINS(caps_error("{\"ambient\":[3]}"),
                 "process.capabilities.ambient[0]: must be a string");
  CHECK_CONTAINS(caps_error("{\"bounding\":\"CAP_CHOWN\"}"),
                 "process.capabilities.bounding: must be an array");
  CHECK_EQ(ctr_cap_from_name("CAP_SYS_ADMIN"), CAP_SYS_ADMIN);
}

static const char *rlimit_error(const char *text) {
  static char msg[512];
  json_t *j = parse(text);
  vs_error *err = NULL;
  int rc = ctr_rlimits_validate(j, "process.rlimits", &err);
  json_decref(j);
  if (rc == 0)
    return NULL;
  snprintf(msg, sizeof(msg), "%s", err->msg);
  vs_error_free(err);
  return msg;
}

static bool have_cap(cap_value_t c) {
  cap_t caps = cap_get_proc();
  cap_flag_value_t f = CAP_CLEAR;
  cap_get_flag(caps, c, CAP_EFFECTIVE, &f);
  cap_free(caps);
  return f == CAP_SET;
}

TEST(rlimits_are_checked) {
  CHECK(rlimit_error("[{\"type\":\"RLIMIT_NOFILE\",\"soft\":100,\"hard\":200}]") == NULL);
  CHECK_CONTAINS(rlimit_error("[{\"type\":\"RLIMIT_FOO\",\"soft\":1,\"hard\":1}]"),
                 "process.rlimits[0].type: unknown rlimit \"RLIMIT_FOO\"");
  CHECK_CONTAINS(rlimit_error("[{\"type\":\"RLIMIT_CORE\",\"soft\":10,\"hard\":5}]"),
                 "RLIMIT_CORE soft limit 10 is above its hard limit 5");
  CHECK_CONTAINS(rlimit_error("[{\"type\":\"RLIMIT_CORE\",\"soft\":1,\"hard\":1},"
                              "{\"type\":\"RLIMIT_CORE\",\"soft\":1,\"hard\":1}]"),
                 "process.rlimits[1].type: RLIMIT_CORE is given twice");
  CHECK_CONTAINS(rlimit_error("[{\"type\":\"RLIMIT_CORE\",\"soft\":-1,\"hard\":1}]"),
                 "process.rlimits[0].soft: must be a non-negative integer");
  CHECK_CONTAINS(rlimit_error("[{\"type\":\"RLIMIT_CORE\",\"soft\":1}]"),
                 "process.rlimits[0].hard: missing");
  struct rlimit cur;
  getrlimit(RLIMIT_NOFILE, &cur);
  if (cur.rlim_max != RLIM_INFINITY && !have_cap(CAP_SYS_RESOURCE)) {
    char text[256];
    snprintf(text, sizeof(text), "[{\"type\":\"RLIMIT_NOFILE\",\"soft\":1024,\"hard\":%llu}]",
             (unsigned long long)cur.rlim_max + 1);
    CHECK_CONTAINS(rlimit_error(text), "RLIMIT_NOFILE hard limit");
    CHECK_CONTAINS(rlimit_error(text), "above this host's hard limit");
  }
}

TEST(security_validate_walks_the_sections) {
  _cleanup_error_ vs_error *err = NULL;
  json_t *process = parse("{\"capabilities\":{\"bounding\":[\"CAP_KILL\"]},\"rlimits\":[],"
                          "\"noNewPrivileges\":true,\"oomScoreAdj\":100}");
  json_t *linux_section = parse("{\"seccomp\":{\"defaultAction\":\"SCMP_ACT_ALLOW\"}}");
  CHECK_EQ(ctr_security_validate(process, linux_section, &err), 0);
  json_object_set_new(process, "oomScoreAdj", json_integer(5000));
  CHECK_EQ(ctr_security_validate(process, linux_section, &err), -1);
  CHECK_CONTAINS(err->msg, "process.oomScoreAdj: 5000 is out of range");
  json_object_set_new(process, "oomScoreAdj", json_integer(0));
  json_object_set_new(process, "noNewPrivileges", json_string("yes"));
  CHECK_EQ(ctr_security_validate(process, linux_section, &err), -1);
  CHECK_CONTAINS(err->msg, "process.noNewPrivileges: must be true or false");
  json_object_del(process, "noNewPrivileges");
  json_object_set_new(process, "apparmorProfile", json_string("docker-default"));
  if (access("/sys/kernel/security/apparmor", F_OK) != 0) {
    CHECK_EQ(ctr_security_validate(process, linux_section, &err), -1);
    CHECK_CONTAINS(err->msg, "process.apparmorProfile: \"docker-default\" is set but AppArmor");
  }
  json_object_del(process, "apparmorProfile");
  json_object_set_new(process, "selinuxLabel", json_string("system_u:system_r:container_t:s0"));
  if (access("/sys/fs/selinux/enforce", F_OK) != 0) {
    CHECK_EQ(ctr_security_validate(process, linux_section, &err), -1);
    CHECK_CONTAINS(err->msg, "process.selinuxLabel");
  }
  json_decref(process);
  json_decref(linux_section);
}

/* Run fn in a child; returns its exit status (or 200 + signal). */
static int in_child(int (*fn)(void)) {
  fflush(stdout);
  pid_t pid = fork();
  if (pid == 0)
    _exit(fn());
  int st = 0;
  waitpid(pid, &st, 0);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 200 + WTERMSIG(st);
}

static int child_seccomp_errno(void) {
  json_t *j = json_loads("{\"defaultAction\":\"SCMP_ACT_ALLOW\",\"architectures\":"
                         "[\"SCMP_ARCH_X86_64\",\"SCMP_ARCH_X86\",\"SCMP_ARCH_X32\"],"
                         "\"syscalls\":[{\"names\":[\"mkdir\",\"mkdirat\",\"no_such_call\"],"
                         "\"action\":\"SCMP_ACT_ERRNO\",\"errnoRet\":42},"
                         "{\"names\":[\"getpriority\"],\"action\":\"SCMP_ACT_ERRNO\",\"args\":"
                         "[{\"index\":0,\"value\":1,\"op\":\"SCMP_CMP_EQ\"}]}]}",
                         0, NULL);
  vs_error *err = NULL;
  if (ctr_seccomp_load(j, &err) < 0) {
    fprintf(stderr, "%s\n", err->msg);
    return 1;
  }
  if (prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) != 0)
    return 2; /* the filter must not set no_new_privs by itself */
  if (mkdir("/tmp/vessel-seccomp-test-never", 0700) == 0 || errno != 42)
    return 3;
  /* Only getpriority(PRIO_PGRP, ...) matches; EPERM is SCMP_ACT_ERRNO's default errno. */
  errno = 0;
  if (getpriority(PRIO_PGRP, 0) != -1 || errno != EPERM)
    return 4;
  errno = 0;
  getpriority(PRIO_PROCESS, 0);
  if (errno != 0)
    return 5;
  return 0;
}

TEST(seccomp_filter_returns_the_configured_errno) { CHECK_EQ(in_child(child_seccomp_errno), 0); }

static int child_caps_drop_chown(void) {
  char path[] = "/tmp/vessel-caps-XXXXXX";
  int fd = mkstemp(path);
  if (fd < 0)
    return 10;
  close(fd);
  json_t *caps = json_loads("{\"bounding\":[\"CAP_KILL\",\"CAP_SETUID\"],"
                            "\"effective\":[\"CAP_KILL\"],\"permitted\":[\"CAP_KILL\"],"
                            "\"ambient\":[\"CAP_KILL\"]}",
                            0, NULL);
  vs_error *err = NULL;
  int rc = ctr_caps_keep_across_user_switch(&err) < 0 || ctr_caps_apply(caps, true, &err) < 0;
  if (rc) {
    fprintf(stderr, "%s\n", err->msg);
    unlink(path);
    return 1;
  }
  int chown_rc = chown(path, 1234, 1234), chown_errno = errno;
  unlink(path);
  if (chown_rc == 0 || chown_errno != EPERM)
    return 2;
  if (prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) != 1)
    return 3;
  if (prctl(PR_CAPBSET_READ, CAP_CHOWN, 0, 0, 0) != 0 ||
      prctl(PR_CAPBSET_READ, CAP_SETUID, 0, 0, 0) != 1)
    return 4;
  if (prctl(PR_GET_KEEPCAPS, 0, 0, 0, 0) != 0)
    return 5;
  /* Ambient without inheritable (as `runc spec` writes it) is skipped, not an error. */
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, CAP_KILL, 0, 0) != 0)
    return 6;
  return 0;
}

TEST(dropped_cap_chown_makes_chown_fail) {
  if (!have_cap(CAP_SETPCAP) || !have_cap(CAP_CHOWN)) {
    printf("# not privileged: only checking the error path\n");
    CHECK(true);
    return;
  }
  CHECK_EQ(in_child(child_caps_drop_chown), 0);
}

static int child_caps_across_setuid(void) {
  char path[] = "/tmp/vessel-caps-XXXXXX";
  int fd = mkstemp(path);
  if (fd < 0)
    return 10;
  close(fd);
  json_t *caps = json_loads("{\"bounding\":[\"CAP_CHOWN\"],\"effective\":[\"CAP_CHOWN\"],"
                            "\"permitted\":[\"CAP_CHOWN\"],\"inheritable\":[\"CAP_CHOWN\"],"
                            "\"ambient\":[\"CAP_CHOWN\"]}",
                            0, NULL);
  vs_error *err = NULL;
  if (ctr_caps_keep_across_user_switch(&err) < 0 || setresgid(1000, 1000, 1000) < 0 ||
      setresuid(1000, 1000, 1000) < 0 || ctr_caps_apply(caps, false, &err) < 0) {
    fprintf(stderr, "%s\n", err ? err->msg : "setresuid");
    return 1;
  }
  int rc = chown(path, 1234, 1234);
  if (rc < 0)
    return 2;
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, CAP_CHOWN, 0, 0) != 1)
    return 3;
  return 0;
}

TEST(capabilities_survive_the_user_switch) {
  if (getuid() != 0 || !have_cap(CAP_SETUID)) {
    printf("# not root: skipped\n");
    CHECK(true);
    return;
  }
  CHECK_EQ(in_child(child_caps_across_setuid), 0);
}

static int child_rlimits(void) {
  json_t *rl = json_loads("[{\"type\":\"RLIMIT_NOFILE\",\"soft\":100,\"hard\":200},"
                          "{\"type\":\"RLIMIT_CORE\",\"soft\":0,\"hard\":0}]",
                          0, NULL);
  vs_error *err = NULL;
  if (ctr_rlimits_apply(rl, &err) < 0)
    return 1;
  struct rlimit r;
  getrlimit(RLIMIT_NOFILE, &r);
  if (r.rlim_cur != 100 || r.rlim_max != 200)
    return 2;
  getrlimit(RLIMIT_CORE, &r);
  return r.rlim_max == 0 ? 0 : 3;
}

TEST(rlimits_apply) { CHECK_EQ(in_child(child_rlimits), 0); }

static int child_oom_score(void) {
  vs_error *err = NULL;
  if (ctr_oom_score_adj_apply(500, &err) < 0)
    return 1;
  char buf[16] = {0};
  int fd = open("/proc/self/oom_score_adj", O_RDONLY);
  if (fd < 0 || read(fd, buf, sizeof(buf) - 1) <= 0)
    return 2;
  return atoi(buf) == 500 ? 0 : 3;
}

TEST(oom_score_adj_applies) { CHECK_EQ(in_child(child_oom_score), 0); }

static bool array_has(json_t *arr, const char *s) {
  size_t i;
  json_t *e;
  json_array_foreach(arr, i,
                     e) if (json_is_string(e) && strcmp(json_string_value(e), s) == 0) return true;
  return false;
}

TEST(features_list_what_the_validator_accepts) {
  json_t *lin = json_object();
  ctr_security_features(lin);
  CHECK(array_has(json_object_get(lin, "capabilities"), "CAP_CHOWN"));
  CHECK(array_has(json_object_get(lin, "capabilities"), "CAP_SYS_ADMIN"));
  json_t *sc = json_object_get(lin, "seccomp");
  CHECK(json_is_true(json_object_get(sc, "enabled")));
  CHECK(array_has(json_object_get(sc, "actions"), "SCMP_ACT_ERRNO"));
  CHECK(!array_has(json_object_get(sc, "actions"), "SCMP_ACT_NOTIFY"));
  CHECK(array_has(json_object_get(sc, "operators"), "SCMP_CMP_MASKED_EQ"));
  CHECK(array_has(json_object_get(sc, "archs"), "SCMP_ARCH_X86_64"));
  CHECK(array_has(json_object_get(sc, "supportedFlags"), "SECCOMP_FILTER_FLAG_LOG"));
  CHECK(json_is_boolean(json_object_get(json_object_get(lin, "apparmor"), "enabled")));
  /* Every listed capability passes validation. */
  json_t *caps = json_pack("{s:O}", "bounding", json_object_get(lin, "capabilities"));
  vs_error *err = NULL;
  CHECK_EQ(ctr_caps_validate(caps, "process.capabilities", &err), 0);
  json_decref(caps);
  json_decref(lin);
}

int main(void) { return tap_run(); }
