/* Real cgroups on this host (needs root and writable cgroup hierarchies): create with limits,
 * join, freeze/thaw, stats, update, kill, destroy; validation errors; undo on failure. */
#include <errno.h>
#include <signal.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <sys/syscall.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "ctr/cgroup_internal.h"
#include "ctr/security_internal.h"
#include "tap.h"

static json_t *parse(const char *text) {
  json_error_t je;
  json_t *j = json_loads(text, 0, &je);
  if (!j)
    TAP_FAIL("bad test JSON: %s", je.text);
  return j;
}

static const char *resources_error(const char *text) {
  static char msg[512];
  json_t *j = parse(text);
  vs_error *err = NULL;
  int rc = ctr_cgroup_validate_resources(j, &err);
  json_decref(j);
  if (rc == 0)
    return NULL;
  snprintf(msg, sizeof(msg), "%s", err->msg);
  vs_error_free(err);
  return msg;
}

TEST(resources_validation_names_the_field) {
  CHECK(resources_error("{\"memory\":{\"limit\":1048576},\"pids\":{\"limit\":10}}") == NULL);
  CHECK_CONTAINS(resources_error("{\"memory\":{\"limit\":\"1G\"}}"),
                 "linux.resources.memory.limit: must be an integer");
  CHECK_CONTAINS(resources_error("{\"memory\":{\"swappiness\":200}}"),
                 "linux.resources.memory.swappiness: 200 is out of range");
  CHECK_CONTAINS(resources_error("{\"memory\":{\"limit\":2000000,\"swap\":1000000}}"),
                 "linux.resources.memory.swap: 1000000 is below memory.limit");
  CHECK_CONTAINS(resources_error("{\"cpu\":{\"cpus\":\"0-\"}}"),
                 "linux.resources.cpu.cpus: \"0-\" is not a list");
  CHECK_CONTAINS(resources_error("{\"cpu\":{\"period\":10}}"), "linux.resources.cpu.period");
  CHECK_CONTAINS(resources_error("{\"pids\":{}}"), "linux.resources.pids.limit: missing");
  CHECK_CONTAINS(resources_error("{\"devices\":[{\"allow\":false,\"access\":\"rwx\"}]}"),
                 "linux.resources.devices[0].access: \"rwx\"");
  CHECK_CONTAINS(resources_error("{\"devices\":[{\"allow\":true,\"type\":\"q\"}]}"),
                 "linux.resources.devices[0].type: \"q\" is not a device type");
  CHECK_CONTAINS(resources_error("{\"devices\":[{\"type\":\"c\"}]}"),
                 "linux.resources.devices[0].allow: missing");
  CHECK_CONTAINS(resources_error("{\"hugepageLimits\":[{\"pageSize\":\"../../x\",\"limit\":1}]}"),
                 "linux.resources.hugepageLimits[0].pageSize");
  CHECK_CONTAINS(resources_error("{\"blockIO\":{\"throttleReadBpsDevice\":[{\"major\":8}]}}"),
                 "linux.resources.blockIO.throttleReadBpsDevice[0].minor: missing");
  CHECK_CONTAINS(resources_error("{\"unified\":{\"../memory.max\":\"1\"}}"),
                 "linux.resources.unified");
  CHECK_CONTAINS(resources_error("[]"), "linux.resources: must be an object");
}

static bool can_manage_cgroups(void) {
  if (getuid() != 0 || access("/sys/fs/cgroup", W_OK) != 0)
    return false;
  cg_layout l = {0};
  if (cg_layout_load(&l, NULL) < 0)
    return false;
  cg_layout_clear(&l);
  return true;
}

static bool dir_exists(const char *p) {
  struct stat st;
  return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static char *read_text(const char *dir, const char *file) {
  char *t = NULL;
  if (cg_read(dir, file, &t, NULL) < 0)
    return vs_strdup("");
  return t;
}

TEST(create_limit_join_freeze_update_destroy) {
  if (!can_manage_cgroups()) {
    printf("# cannot manage cgroups here: skipped\n");
    CHECK(true);
    return;
  }
  _cleanup_error_ vs_error *err = NULL;
  _cleanup_free_ char *path = vs_asprintf("/vessel-unit-%d/c1", (int)getpid());
  json_t *res =
      parse("{\"memory\":{\"limit\":67108864,\"swap\":134217728,\"reservation\":"
            "33554432,\"swappiness\":10},\"pids\":{\"limit\":50},"
            "\"cpu\":{\"shares\":512,\"quota\":50000,\"period\":100000,\"cpus\":\"0\","
            "\"mems\":\"0\"},"
            "\"devices\":[{\"allow\":false,\"access\":\"rwm\"},"
            "{\"allow\":true,\"type\":\"c\",\"major\":1,\"minor\":3,\"access\":\"rw\"}]}");
  ctr_cgroup *cg = NULL;
  int rc = ctr_cgroup_create("unit", path, res, &cg, &err);
  if (rc < 0)
    printf("# %s\n", err->msg);
  CHECK_EQ(rc, 0);
  json_decref(res);

  cg_dir *mem = cg_dir_for(cg, "memory");
  CHECK(mem != NULL);
  _cleanup_free_ char *top = vs_asprintf("%s/vessel-unit-%d", mem->mount, (int)getpid());
  CHECK(dir_exists(mem->path));
  for (size_t i = 0; i < cg->n; i++)
    CHECK(dir_exists(cg->d[i].path));
  if (!mem->unified) {
    _cleanup_free_ char *limit = read_text(mem->path, "memory.limit_in_bytes");
    CHECK_STREQ(limit, "67108864\n");
    _cleanup_free_ char *soft = read_text(mem->path, "memory.soft_limit_in_bytes");
    CHECK_STREQ(soft, "33554432\n");
    if (cg_file_exists(mem->path, "memory.memsw.limit_in_bytes")) {
      _cleanup_free_ char *sw = read_text(mem->path, "memory.memsw.limit_in_bytes");
      CHECK_STREQ(sw, "134217728\n");
    }
  }
  cg_dir *pids = cg_dir_for(cg, "pids");
  if (pids) {
    _cleanup_free_ char *max = read_text(pids->path, "pids.max");
    CHECK_STREQ(max, "50\n");
  }
  cg_dir *cpu = cg_dir_for(cg, "cpu");
  if (cpu && !cpu->unified) {
    _cleanup_free_ char *q = read_text(cpu->path, "cpu.cfs_quota_us");
    CHECK_STREQ(q, "50000\n");
    _cleanup_free_ char *s = read_text(cpu->path, "cpu.shares");
    CHECK_STREQ(s, "512\n");
  }
  cg_dir *cpuset = cg_dir_for(cg, "cpuset");
  if (cpuset && !cpuset->unified) {
    _cleanup_free_ char *c = read_text(cpuset->path, "cpuset.cpus");
    CHECK_STREQ(c, "0\n");
  }
  cg_dir *dev = cg_dir_for(cg, "devices");
  if (dev && !dev->unified) {
    _cleanup_free_ char *list = read_text(dev->path, "devices.list");
    CHECK_CONTAINS(list, "c 1:3 rw");
    CHECK(!strstr(list, "a *:* rwm"));
  }

  /* State file round trip. */
  json_t *saved = ctr_cgroup_to_json(cg);
  ctr_cgroup *cg2 = NULL;
  CHECK_EQ(ctr_cgroup_from_json(saved, &cg2, &err), 0);
  json_decref(saved);
  CHECK_EQ(cg2->n, cg->n);
  CHECK_STREQ(cg2->d[0].path, cg->d[0].path);

  /* A child joins; freeze, stats, update, kill. */
  fflush(stdout);
  pid_t child = fork();
  if (child == 0) {
    for (;;)
      pause();
  }
  CHECK_EQ(ctr_cgroup_add_pid(cg2, child, &err), 0);
  _cleanup_free_ pid_t *list = NULL;
  size_t n = 0;
  CHECK_EQ(ctr_cgroup_pids(cg2, &list, &n, &err), 0);
  CHECK_EQ(n, 1);
  CHECK_EQ(list[0], child);

  CHECK_EQ(ctr_cgroup_freeze(cg2, true, &err), 0);
  bool frozen = false;
  CHECK_EQ(ctr_cgroup_is_frozen(cg2, &frozen, &err), 0);
  CHECK(frozen);
  CHECK_EQ(ctr_cgroup_freeze(cg2, false, &err), 0);
  CHECK_EQ(ctr_cgroup_is_frozen(cg2, &frozen, &err), 0);
  CHECK(!frozen);

  json_t *stats = ctr_cgroup_stats(cg2, &err);
  CHECK(stats != NULL);
  if (pids)
    CHECK_EQ(json_integer_value(json_object_get(json_object_get(stats, "pids"), "current")), 1);
  CHECK_EQ(json_integer_value(json_object_get(
               json_object_get(json_object_get(stats, "memory"), "usage"), "limit")),
           67108864);
  CHECK(json_object_get(json_object_get(stats, "cpu"), "usage") != NULL);
  json_decref(stats);

  json_t *upd = parse("{\"memory\":{\"limit\":33554432,\"swap\":33554432},\"pids\":{\"limit\":7}}");
  rc = ctr_cgroup_update(cg2, upd, &err);
  if (rc < 0)
    printf("# %s\n", err->msg);
  CHECK_EQ(rc, 0);
  json_decref(upd);
  if (!mem->unified) {
    _cleanup_free_ char *limit = read_text(mem->path, "memory.limit_in_bytes");
    CHECK_STREQ(limit, "33554432\n");
  }
  if (pids) {
    _cleanup_free_ char *max = read_text(pids->path, "pids.max");
    CHECK_STREQ(max, "7\n");
  }

  /* Raising only the limit keeps the swap allowance (here none): memsw follows. */
  upd = parse("{\"memory\":{\"limit\":100663296}}");
  CHECK_EQ(ctr_cgroup_update(cg2, upd, &err), 0);
  json_decref(upd);
  if (!mem->unified && cg_file_exists(mem->path, "memory.memsw.limit_in_bytes")) {
    _cleanup_free_ char *limit = read_text(mem->path, "memory.limit_in_bytes");
    CHECK_STREQ(limit, "100663296\n");
    _cleanup_free_ char *sw = read_text(mem->path, "memory.memsw.limit_in_bytes");
    CHECK_STREQ(sw, "100663296\n");
  }

  CHECK_EQ(ctr_cgroup_freeze(cg2, true, &err), 0);
  CHECK_EQ(ctr_cgroup_kill(cg2, SIGKILL, &err), 0);
  int st = 0;
  CHECK_EQ(waitpid(child, &st, 0), child);
  CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);

  CHECK_EQ(ctr_cgroup_destroy(cg2, &err), 0);
  for (size_t i = 0; i < cg->n; i++)
    CHECK(!dir_exists(cg->d[i].path));
  CHECK(!dir_exists(top));
  ctr_cgroup_free(cg2);
  ctr_cgroup_free(cg);
}

TEST(failure_midway_leaves_nothing) {
  if (!can_manage_cgroups()) {
    printf("# cannot manage cgroups here: skipped\n");
    CHECK(true);
    return;
  }
  _cleanup_error_ vs_error *err = NULL;
  _cleanup_free_ char *path = vs_asprintf("/vessel-unit-bad-%d/c1", (int)getpid());
  json_t *res = parse("{\"pids\":{\"limit\":5},"
                      "\"hugepageLimits\":[{\"pageSize\":\"64KB\",\"limit\":0}]}");
  ctr_cgroup *cg = NULL;
  CHECK_EQ(ctr_cgroup_create("unit", path, res, &cg, &err), -1);
  json_decref(res);
  CHECK_CONTAINS(err->msg, "hugepageLimits");
  cg_layout l = {0};
  CHECK_EQ(cg_layout_load(&l, NULL), 0);
  for (size_t i = 0; i < l.n; i++) {
    _cleanup_free_ char *top =
        vs_asprintf("%s/vessel-unit-bad-%d", l.h[i].mountpoint, (int)getpid());
    CHECK(!dir_exists(top));
  }
  cg_layout_clear(&l);
}

/* plan decides the directories without touching the host (the runtime clones the init in
 * between); make creates them; a failing make leaves nothing. */
TEST(plan_then_make) {
  if (!can_manage_cgroups()) {
    printf("# cannot manage cgroups here: skipped\n");
    CHECK(true);
    return;
  }
  _cleanup_error_ vs_error *err = NULL;
  _cleanup_free_ char *path = vs_asprintf("/vessel-unit-plan-%d/c1", (int)getpid());
  ctr_cgroup *cg = NULL;
  CHECK_EQ(ctr_cgroup_plan("unit", path, &cg, &err), 0);
  CHECK(cg->n > 0);
  for (size_t i = 0; i < cg->n; i++)
    CHECK(!dir_exists(cg->d[i].path));
  CHECK_EQ(ctr_cgroup_make(cg, NULL, &err), 0);
  for (size_t i = 0; i < cg->n; i++)
    CHECK(dir_exists(cg->d[i].path));
  CHECK_EQ(ctr_cgroup_destroy(cg, &err), 0);
  for (size_t i = 0; i < cg->n; i++)
    CHECK(!dir_exists(cg->d[i].path));
  ctr_cgroup_free(cg);

  json_t *res = parse("{\"hugepageLimits\":[{\"pageSize\":\"64KB\",\"limit\":0}]}");
  CHECK_EQ(ctr_cgroup_plan("unit", path, &cg, &err), 0);
  CHECK_EQ(ctr_cgroup_make(cg, res, &err), -1);
  CHECK_CONTAINS(err->msg, "hugepageLimits");
  for (size_t i = 0; i < cg->n; i++) {
    CHECK(!dir_exists(cg->d[i].path));
    _cleanup_free_ char *top = vs_asprintf("%s/vessel-unit-plan-%d", cg->d[i].mount, (int)getpid());
    CHECK(!dir_exists(top));
  }
  ctr_cgroup_free(cg);
  json_decref(res);
}

TEST(default_and_relative_paths) {
  if (!can_manage_cgroups()) {
    printf("# cannot manage cgroups here: skipped\n");
    CHECK(true);
    return;
  }
  _cleanup_error_ vs_error *err = NULL;
  _cleanup_free_ char *id = vs_asprintf("unit-default-%d", (int)getpid());
  ctr_cgroup *cg = NULL;
  CHECK_EQ(ctr_cgroup_create(id, NULL, NULL, &cg, &err), 0);
  _cleanup_free_ char *suffix = vs_asprintf("/vessel/%s", id);
  for (size_t i = 0; i < cg->n; i++) {
    size_t pl = strlen(cg->d[i].path), sl = strlen(suffix);
    CHECK(pl > sl && strcmp(cg->d[i].path + pl - sl, suffix) == 0);
  }
  CHECK_EQ(ctr_cgroup_destroy(cg, &err), 0);
  ctr_cgroup_free(cg);

  /* Relative: under the caller's own cgroup, which differs per hierarchy on this host. */
  _cleanup_free_ char *rel = vs_asprintf("vessel-rel-%d", (int)getpid());
  CHECK_EQ(ctr_cgroup_create("x", rel, NULL, &cg, &err), 0);
  cg_layout l = {0};
  CHECK_EQ(cg_layout_load(&l, NULL), 0);
  const cg_hier *mh = cg_layout_v1(&l, "memory");
  cg_dir *md = cg_dir_for(cg, "memory");
  if (mh && md) {
    _cleanup_free_ char *want = vs_asprintf("%s%s/%s", mh->mountpoint,
                                            strcmp(mh->self_path, "/") ? mh->self_path : "", rel);
    CHECK_STREQ(md->path, want);
  }
  cg_layout_clear(&l);
  CHECK_EQ(ctr_cgroup_destroy(cg, &err), 0);
  for (size_t i = 0; i < cg->n; i++)
    CHECK(!dir_exists(cg->d[i].path));
  ctr_cgroup_free(cg);

  CHECK_EQ(ctr_cgroup_create("x", "/a/../../etc", NULL, &cg, &err), -1);
  CHECK_CONTAINS(err->msg, "linux.cgroupsPath");
  CHECK_EQ(ctr_cgroup_create("x", "system.slice:vessel:x", NULL, &cg, &err), -1);
  CHECK_CONTAINS(err->msg, "systemd");
}

TEST(state_json_is_checked) {
  _cleanup_error_ vs_error *err = NULL;
  ctr_cgroup *cg = NULL;
  json_t *bad = parse("{\"version\":1,\"dirs\":[{\"name\":\"memory\",\"controllers\":\"memory\","
                      "\"unified\":false,\"mount\":\"/sys/fs/cgroup/memory\",\"path\":"
                      "\"/etc/passwd\",\"created\":1}]}");
  CHECK_EQ(ctr_cgroup_from_json(bad, &cg, &err), -1);
  CHECK_CONTAINS(err->msg, "cgroup.dirs[0].path");
  json_decref(bad);
  bad = parse("{\"version\":2,\"dirs\":[]}");
  CHECK_EQ(ctr_cgroup_from_json(bad, &cg, &err), -1);
  CHECK_CONTAINS(err->msg, "cgroup.version");
  json_decref(bad);
}

/* major:minor of a whole disk (throttles refuse partitions), or false. */
static bool find_disk(unsigned *maj, unsigned *min) {
  static const char *const names[] = {"vda", "sda", "nvme0n1", "xvda"};
  for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
    _cleanup_free_ char *dir = vs_asprintf("/sys/block/%s", names[i]);
    _cleanup_free_ char *dev = NULL;
    if (cg_read(dir, "dev", &dev, NULL) == 0 && sscanf(dev, "%u:%u", maj, min) == 2)
      return true;
  }
  return false;
}

TEST(blkio_throttles_and_weight) {
  unsigned maj, min;
  if (!can_manage_cgroups() || !find_disk(&maj, &min)) {
    printf("# no cgroups or no disk here: skipped\n");
    CHECK(true);
    return;
  }
  _cleanup_error_ vs_error *err = NULL;
  _cleanup_free_ char *path = vs_asprintf("/vessel-unit-io-%d/c", (int)getpid());
  _cleanup_free_ char *text = vs_asprintf(
      "{\"blockIO\":{\"throttleReadBpsDevice\":[{\"major\":%u,\"minor\":%u,\"rate\":1048576}],"
      "\"throttleWriteIOPSDevice\":[{\"major\":%u,\"minor\":%u,\"rate\":100}]}}",
      maj, min, maj, min);
  json_t *res = parse(text);
  ctr_cgroup *cg = NULL;
  int rc = ctr_cgroup_create("io", path, res, &cg, &err);
  json_decref(res);
  if (rc < 0)
    printf("# %s\n", err->msg);
  CHECK_EQ(rc, 0);
  cg_dir *d = cg_dir_for(cg, "blkio");
  CHECK(d != NULL);
  _cleanup_free_ char *want = vs_asprintf("%u:%u 1048576\n", maj, min);
  if (!d->unified) {
    _cleanup_free_ char *got = read_text(d->path, "blkio.throttle.read_bps_device");
    CHECK_STREQ(got, want);
  }
  /* A weight: applied where the host has a weight file, else a clear error naming the field. */
  bool has_weight =
      cg_file_exists(d->path, "blkio.weight") || cg_file_exists(d->path, "blkio.bfq.weight") ||
      cg_file_exists(d->path, "io.weight") || cg_file_exists(d->path, "io.bfq.weight");
  res = parse("{\"blockIO\":{\"weight\":500}}");
  rc = ctr_cgroup_update(cg, res, &err);
  json_decref(res);
  if (has_weight) {
    CHECK_EQ(rc, 0);
  } else {
    CHECK_EQ(rc, -1);
    CHECK_CONTAINS(err->msg, "linux.resources.blockIO.weight");
    CHECK_CONTAINS(err->msg, "no weight file");
  }
  json_t *stats = ctr_cgroup_stats(cg, &err);
  CHECK(json_is_array(json_object_get(json_object_get(stats, "blkio"), "ioServiceBytesRecursive")));
  json_decref(stats);
  CHECK_EQ(ctr_cgroup_destroy(cg, &err), 0);
  ctr_cgroup_free(cg);
}

/* Root's cgroup.subtree_control on the unified hierarchy lists `ctrl`. */
static bool unified_root_has(const char *root, const char *ctrl) {
  _cleanup_free_ char *t = NULL;
  if (cg_read(root, "cgroup.subtree_control", &t, NULL) < 0)
    return false;
  for (char *p = t; *p; p++)
    if (*p == ' ' || *p == '\n')
      *p = ',';
  return cg_list_has(t, ctrl);
}

/* Turn hugetlb off again at the cgroup2 root; the kernel refuses (EBUSY) while just-removed
 * children are still being torn down, so retry for a while. */
static void restore_hugetlb_off(const char *uroot) {
  for (int i = 0; i < 100 && unified_root_has(uroot, "hugetlb"); i++) {
    if (cg_write(uroot, "cgroup.subtree_control", "-hugetlb", NULL) == 0)
      return;
    usleep(20000);
  }
}

TEST(hybrid_hugetlb_lives_on_the_unified_hierarchy) {
  cg_layout l = {0};
  if (!can_manage_cgroups() || cg_layout_load(&l, NULL) < 0 || !cg_layout_unified(&l) ||
      cg_layout_v1(&l, "hugetlb") || access("/sys/kernel/mm/hugepages/hugepages-2048kB", F_OK)) {
    cg_layout_clear(&l);
    printf("# not a hybrid host with 2MB pages and hugetlb on cgroup2: skipped\n");
    CHECK(true);
    return;
  }
  _cleanup_free_ char *uroot = vs_strdup(cg_layout_unified(&l)->mountpoint);
  cg_layout_clear(&l);
  _cleanup_free_ char *avail = read_text(uroot, "cgroup.controllers");
  if (!strstr(avail, "hugetlb")) {
    printf("# no hugetlb controller on cgroup2: skipped\n");
    CHECK(true);
    return;
  }
  bool was_enabled = unified_root_has(uroot, "hugetlb");
  _cleanup_error_ vs_error *err = NULL;
  _cleanup_free_ char *path = vs_asprintf("/vessel-unit-huge-%d/c", (int)getpid());
  json_t *res = parse("{\"hugepageLimits\":[{\"pageSize\":\"2MB\",\"limit\":4194304}]}");
  ctr_cgroup *cg = NULL;
  int rc = ctr_cgroup_create("huge", path, res, &cg, &err);
  json_decref(res);
  if (rc < 0)
    printf("# %s\n", err->msg);
  CHECK_EQ(rc, 0);
  cg_dir *h = cg_dir_for(cg, "hugetlb");
  CHECK(h != NULL && h->unified);
  _cleanup_free_ char *max = read_text(h->path, "hugetlb.2MB.max");
  CHECK_STREQ(max, "4194304\n");
  json_t *stats = ctr_cgroup_stats(cg, &err);
  CHECK(json_object_get(json_object_get(stats, "hugetlb"), "2MB") != NULL);
  json_decref(stats);
  CHECK_EQ(ctr_cgroup_destroy(cg, &err), 0);
  CHECK(!dir_exists(h->path));
  ctr_cgroup_free(cg);
  if (!was_enabled)
    restore_hugetlb_off(uroot);
  CHECK(was_enabled || !unified_root_has(uroot, "hugetlb"));
}

/* errno of open(path) by a process that joined cg first (0 = it opened). */
static int open_errno_in_cgroup(ctr_cgroup *cg, const char *path, int flags) {
  int pfd[2];
  if (pipe(pfd) < 0)
    return -1;
  pid_t pid = fork();
  if (pid == 0) {
    char c;
    close(pfd[1]);
    if (read(pfd[0], &c, 1) != 1)
      _exit(255);
    int fd = open(path, flags | O_NONBLOCK);
    _exit(fd < 0 ? errno : 0);
  }
  close(pfd[0]);
  vs_error *err = NULL;
  int rc = ctr_cgroup_add_pid(cg, pid, &err);
  vs_error_free(err);
  if (write(pfd[1], "g", 1) != 1)
    rc = -1;
  close(pfd[1]);
  int st = 0;
  waitpid(pid, &st, 0);
  return rc < 0 ? -1 : WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* In a private mount namespace with only cgroup2 mounted at /sys/fs/cgroup, the runtime sees a
 * pure v2 host: create, join, freeze through cgroup.freeze, kill, destroy. */
static int child_pure_v2(void) {
  if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
    return 10;
  if (umount2("/sys/fs/cgroup", MNT_DETACH) < 0 ||
      mount("cgroup2", "/sys/fs/cgroup", "cgroup2", 0, NULL) < 0)
    return 11;
  cg_layout l = {0};
  if (cg_layout_load(&l, NULL) < 0 || l.n != 1 || !l.h[0].unified)
    return 12;
  cg_layout_clear(&l);
  vs_error *err = NULL;
  _cleanup_free_ char *path = vs_asprintf("/vessel-unit-v2-%d/c", (int)getpid());
  ctr_cgroup *cg = NULL;
  /* memory is bound to its v1 hierarchy, so cgroup2 cannot have it: a clear error, no dirs. */
  json_t *res = json_loads("{\"memory\":{\"limit\":10000000}}", 0, NULL);
  if (ctr_cgroup_create("v2", path, res, &cg, &err) == 0 ||
      !strstr(err->msg, "linux.resources.memory: the memory controller is not available"))
    return 13;
  vs_error_free(err);
  err = NULL;
  _cleanup_free_ char *top = vs_asprintf("/sys/fs/cgroup/vessel-unit-v2-%d", (int)getpid());
  if (dir_exists(top))
    return 14;
  /* Devices: an eBPF filter emulates the v1 controller (deny all, then runc's defaults). */
  res = json_loads("{\"devices\":[{\"allow\":false,\"access\":\"rwm\"}]}", 0, NULL);
  if (ctr_cgroup_create("v2", path, res, &cg, &err) < 0 || cg->n != 1 || !cg->d[0].unified ||
      strcmp(cg->d[0].name, "") != 0) {
    fprintf(stderr, "# %s\n", err ? err->msg : "?");
    return 15;
  }
  json_decref(res);
  if (access("/dev/kmsg", F_OK) == 0) {
    if (open_errno_in_cgroup(cg, "/dev/null", O_RDONLY) != 0)
      return 30;
    if (open_errno_in_cgroup(cg, "/dev/kmsg", O_RDONLY) != EPERM)
      return 31;
    json_t *devs = json_loads("[{\"path\":\"/dev/kmsg\",\"type\":\"c\",\"major\":1,"
                              "\"minor\":11}]",
                              0, NULL);
    if (ctr_cgroup_allow_devices(cg, devs, &err) < 0)
      return 32;
    json_decref(devs);
    if (open_errno_in_cgroup(cg, "/dev/kmsg", O_RDONLY) != 0)
      return 33;
    /* Later rules win: read allowed, write denied again for the same device. */
    json_t *later = json_loads("[{\"allow\":false,\"access\":\"rwm\"},"
                               "{\"allow\":true,\"type\":\"c\",\"major\":1,\"minor\":11,"
                               "\"access\":\"rw\"},"
                               "{\"allow\":false,\"type\":\"c\",\"major\":1,\"minor\":11,"
                               "\"access\":\"w\"}]",
                               0, NULL);
    int prog_fd = -1;
    if (cg_v2_devices_attach(&cg->d[0], later, NULL, &prog_fd, &err) < 0)
      return 34;
    /* Both filters are attached now (all must allow): drop the wider one from create. */
    int first = cg->bpf_fd;
    cg->bpf_fd = prog_fd;
    json_decref(later);
    if (first >= 0) {
      union bpf_attr attr;
      memset(&attr, 0, sizeof(attr));
      _cleanup_close_ int cgfd = open(cg->d[0].path, O_RDONLY | O_DIRECTORY);
      attr.target_fd = (uint32_t)cgfd;
      attr.attach_bpf_fd = (uint32_t)first;
      attr.attach_type = BPF_CGROUP_DEVICE;
      if (syscall(SYS_bpf, BPF_PROG_DETACH, &attr, sizeof(attr)) < 0)
        return 35;
      close(first);
    }
    if (open_errno_in_cgroup(cg, "/dev/kmsg", O_RDONLY) != 0)
      return 36;
    if (open_errno_in_cgroup(cg, "/dev/kmsg", O_WRONLY) != EPERM)
      return 37;
    if (open_errno_in_cgroup(cg, "/dev/zero", O_RDONLY) != 0) /* runc's defaults */
      return 38;
  }
  pid_t child = fork();
  if (child == 0) {
    for (;;)
      pause();
  }
  bool frozen = false;
  if (ctr_cgroup_add_pid(cg, child, &err) < 0)
    return 16;
  if (ctr_cgroup_freeze(cg, true, &err) < 0 || ctr_cgroup_is_frozen(cg, &frozen, &err) < 0 ||
      !frozen)
    return 17;
  if (ctr_cgroup_freeze(cg, false, &err) < 0 || ctr_cgroup_is_frozen(cg, &frozen, &err) < 0 ||
      frozen)
    return 18;
  pid_t *pids = NULL;
  size_t n = 0;
  if (ctr_cgroup_pids(cg, &pids, &n, &err) < 0 || n != 1 || pids[0] != child)
    return 19;
  json_t *stats = ctr_cgroup_stats(cg, &err);
  if (!stats || !json_is_object(json_object_get(stats, "cpu")))
    return 22;
  json_decref(stats);
  free(pids);
  if (ctr_cgroup_kill(cg, SIGKILL, &err) < 0 || waitpid(child, NULL, 0) != child)
    return 20;
  if (ctr_cgroup_destroy(cg, &err) < 0 || dir_exists(top))
    return 21;
  ctr_cgroup_free(cg);
  return 0;
}

TEST(pure_v2_host_emulated_in_a_mount_namespace) {
  if (!can_manage_cgroups()) {
    printf("# cannot manage cgroups here: skipped\n");
    CHECK(true);
    return;
  }
  cg_layout l = {0};
  _cleanup_free_ char *uroot = NULL;
  if (cg_layout_load(&l, NULL) == 0 && cg_layout_unified(&l))
    uroot = vs_strdup(cg_layout_unified(&l)->mountpoint);
  cg_layout_clear(&l);
  bool was_enabled = uroot && unified_root_has(uroot, "hugetlb");
  fflush(stdout);
  pid_t pid = fork();
  if (pid == 0)
    _exit(child_pure_v2());
  int st = 0;
  CHECK_EQ(waitpid(pid, &st, 0), pid);
  /* A pure v2 create enables every controller down the tree; give the host its state back. */
  if (uroot && !was_enabled) {
    restore_hugetlb_off(uroot);
    CHECK(!unified_root_has(uroot, "hugetlb"));
  }
  CHECK(WIFEXITED(st));
  CHECK_EQ(WEXITSTATUS(st), 0);
}

int main(void) { return tap_run(); }
