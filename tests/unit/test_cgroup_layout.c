/* Parsing /proc/self/mountinfo and /proc/self/cgroup: this host's hybrid layout, a pure v2
 * host, a pure v1 host with co-mounted controllers. */
#include "ctr/cgroup_internal.h"
#include "tap.h"

static const char hybrid_mountinfo[] =
    "22 1 0:21 / /sys rw,nosuid - sysfs sysfs rw\n"
    "30 22 0:27 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
    "31 30 0:28 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n"
    "32 30 0:29 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct\n"
    "33 30 0:30 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset\n"
    "34 30 0:31 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
    "35 30 0:32 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices\n"
    "36 30 0:33 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer\n"
    "37 30 0:34 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio\n"
    "38 30 0:35 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids\n"
    "39 30 0:36 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd\n"
    "40 30 0:37 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
static const char hybrid_cgroup[] = "9:name=systemd:/\n8:pids:/\n7:blkio:/\n6:freezer:/\n"
                                    "5:devices:/\n4:memory:/process_api/0488807be5b38dcdf\n"
                                    "3:cpuset:/\n2:cpuacct:/\n1:cpu:/\n0::/\n";

TEST(hybrid_layout_has_every_hierarchy) {
  cg_layout l = {0};
  _cleanup_error_ vs_error *err = NULL;
  CHECK_EQ(cg_layout_parse(hybrid_mountinfo, hybrid_cgroup, &l, &err), 0);
  CHECK_EQ(l.n, 10);
  const cg_hier *mem = cg_layout_v1(&l, "memory");
  CHECK(mem != NULL);
  CHECK_STREQ(mem->mountpoint, "/sys/fs/cgroup/memory");
  CHECK_STREQ(mem->self_path, "/process_api/0488807be5b38dcdf");
  CHECK_STREQ(cg_layout_v1(&l, "cpu")->mountpoint, "/sys/fs/cgroup/cpu");
  CHECK_STREQ(cg_layout_v1(&l, "cpuacct")->mountpoint, "/sys/fs/cgroup/cpuacct");
  CHECK_STREQ(cg_layout_v1(&l, "cpu")->self_path, "/");
  CHECK(cg_layout_v1(&l, "net_cls") == NULL);
  CHECK(cg_layout_v1(&l, "hugetlb") == NULL);
  const cg_hier *sd = cg_layout_v1(&l, "name=systemd");
  CHECK(sd != NULL);
  _cleanup_free_ char *sdname = cg_hier_name(sd);
  CHECK_STREQ(sdname, "systemd");
  const cg_hier *u = cg_layout_unified(&l);
  CHECK(u != NULL);
  CHECK_STREQ(u->mountpoint, "/sys/fs/cgroup/unified");
  CHECK_STREQ(u->self_path, "/");
  _cleanup_free_ char *uname = cg_hier_name(u);
  CHECK_STREQ(uname, "unified");
  cg_layout_clear(&l);
}

TEST(pure_v2_layout) {
  const char mi[] = "25 20 0:23 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - "
                    "cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n";
  const char pc[] = "0::/user.slice/user-1000.slice/session-2.scope\n";
  cg_layout l = {0};
  _cleanup_error_ vs_error *err = NULL;
  CHECK_EQ(cg_layout_parse(mi, pc, &l, &err), 0);
  CHECK_EQ(l.n, 1);
  CHECK(l.h[0].unified);
  CHECK_STREQ(l.h[0].self_path, "/user.slice/user-1000.slice/session-2.scope");
  _cleanup_free_ char *name = cg_hier_name(&l.h[0]);
  CHECK_STREQ(name, "");
  CHECK(cg_layout_v1(&l, "memory") == NULL);
  cg_layout_clear(&l);
}

TEST(pure_v1_layout_with_comounted_controllers) {
  const char mi[] =
      "26 25 0:23 / /sys/fs/cgroup/systemd rw shared:6 - cgroup cgroup "
      "rw,xattr,release_agent=/lib/systemd/systemd-cgroups-agent,name=systemd\n"
      "29 25 0:26 / /sys/fs/cgroup/cpu,cpuacct rw shared:10 - cgroup cgroup rw,cpu,cpuacct\n"
      "30 25 0:27 / /sys/fs/cgroup/net_cls,net_prio rw - cgroup cgroup rw,net_cls,net_prio\n"
      "31 25 0:28 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
      /* the same hierarchy bind-mounted again: kept once */
      "50 25 0:28 / /mnt/mem rw - cgroup cgroup rw,memory\n";
  const char pc[] = "12:net_cls,net_prio:/\n4:cpu,cpuacct:/user.slice\n3:memory:/user.slice\n"
                    "1:name=systemd:/user.slice/session-1.scope\n";
  cg_layout l = {0};
  _cleanup_error_ vs_error *err = NULL;
  CHECK_EQ(cg_layout_parse(mi, pc, &l, &err), 0);
  CHECK_EQ(l.n, 4);
  CHECK(cg_layout_unified(&l) == NULL);
  const cg_hier *cpu = cg_layout_v1(&l, "cpu"), *acct = cg_layout_v1(&l, "cpuacct");
  CHECK(cpu != NULL && cpu == acct);
  CHECK_STREQ(cpu->controllers, "cpu,cpuacct");
  CHECK_STREQ(cpu->self_path, "/user.slice");
  CHECK_STREQ(cg_layout_v1(&l, "memory")->mountpoint, "/sys/fs/cgroup/memory");
  CHECK_STREQ(cg_layout_v1(&l, "name=systemd")->controllers, "name=systemd");
  CHECK_STREQ(cg_layout_v1(&l, "name=systemd")->self_path, "/user.slice/session-1.scope");
  _cleanup_free_ char *name = cg_hier_name(cpu);
  CHECK_STREQ(name, "cpu,cpuacct");
  cg_layout_clear(&l);
}

TEST(escaped_mount_points_and_optional_fields) {
  const char mi[] = "31 30 0:28 /sub /cg\\040dir/mem rw shared:1 master:2 - cgroup cg rw,memory\n";
  const char pc[] = "4:memory:/sub/x\n";
  cg_layout l = {0};
  _cleanup_error_ vs_error *err = NULL;
  CHECK_EQ(cg_layout_parse(mi, pc, &l, &err), 0);
  CHECK_EQ(l.n, 1);
  CHECK_STREQ(l.h[0].mountpoint, "/cg dir/mem");
  CHECK_STREQ(l.h[0].mount_root, "/sub");
  cg_layout_clear(&l);
}

TEST(no_cgroup_mounts_is_an_error) {
  cg_layout l = {0};
  _cleanup_error_ vs_error *err = NULL;
  CHECK_EQ(cg_layout_parse("22 1 0:21 / /sys rw - sysfs sysfs rw\ngarbage\n\n", "0::/\n", &l, &err),
           -1);
  CHECK_CONTAINS(err->msg, "no cgroup");
}

TEST(list_helpers) {
  CHECK(cg_list_has("cpu,cpuacct", "cpuacct"));
  CHECK(!cg_list_has("cpu,cpuacct", "cpuac"));
  CHECK(!cg_list_has("", "cpu"));
  uint64_t v = 0;
  CHECK(cg_keyed_get("cache 10\noom_kill 3\n", "oom_kill", &v));
  CHECK_EQ(v, 3);
  CHECK(!cg_keyed_get("oom_kill_x 3\n", "oom_kill", &v));
  CHECK_EQ(cg_shares_to_weight(1024), 39);
  CHECK_EQ(cg_shares_to_weight(2), 1);
  CHECK_EQ(cg_shares_to_weight(262144), 10000);
  CHECK(cg_hugepage_size_valid("2MB"));
  CHECK(!cg_hugepage_size_valid("2M"));
  CHECK(!cg_hugepage_size_valid("../x"));
}

TEST(this_host_layout_loads) {
  cg_layout l = {0};
  _cleanup_error_ vs_error *err = NULL;
  int rc = cg_layout_load(&l, &err);
  if (rc < 0)
    printf("# no cgroups here: %s\n", err->msg);
  CHECK(rc == 0 || err != NULL);
  for (size_t i = 0; i < l.n; i++)
    CHECK(l.h[i].self_path && l.h[i].self_path[0] == '/');
  cg_layout_clear(&l);
}

int main(void) { return tap_run(); }
