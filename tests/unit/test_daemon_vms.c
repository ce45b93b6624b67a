/* The checks of a VM create request (src/daemon/vms.c): names, sizes, vCPUs, paths, unknown
 * fields, and the default guest. */
#include "daemon/vms.h"
#include "tap.h"

#include <stdlib.h>
#include <string.h>

/* Parse a body given as JSON text: 0 with cfg and disk filled, or -1 with *msg (caller frees). */
static int parse(const char *text, json_t **cfg, json_t **disk, char **msg) {
  json_t *body = json_loads(text, 0, NULL);
  *cfg = json_object();
  *disk = json_object();
  vs_error *err = NULL;
  int r = vd_vm_config_parse(body, *cfg, *disk, &err);
  *msg = err ? strdup(err->msg) : NULL;
  vs_error_free(err);
  json_decref(body);
  return r;
}

static void check_refused(const char *text, const char *needle) {
  json_t *cfg, *disk;
  char *msg;
  CHECK(parse(text, &cfg, &disk, &msg) == -1);
  CHECK_CONTAINS(msg, needle);
  free(msg);
  json_decref(cfg);
  json_decref(disk);
}

TEST(vm_names) {
  CHECK(vd_vm_name_valid("web"));
  CHECK(vd_vm_name_valid("a.b_c-1"));
  CHECK(vd_vm_name_valid("0"));
  CHECK(!vd_vm_name_valid(NULL));
  CHECK(!vd_vm_name_valid(""));
  CHECK(!vd_vm_name_valid(".."));
  CHECK(!vd_vm_name_valid("-x"));
  CHECK(!vd_vm_name_valid("a/b"));
  CHECK(!vd_vm_name_valid("a b"));
  char longname[66];
  memset(longname, 'a', 65);
  longname[65] = 0;
  CHECK(!vd_vm_name_valid(longname));
  longname[64] = 0;
  CHECK(vd_vm_name_valid(longname));
}

TEST(vm_config_sizes_cpus_and_paths) {
  json_t *cfg, *disk;
  char *msg;
  /* an explicit kernel that exists: no default guest needed */
  CHECK(parse("{\"Kernel\": \"/proc/self/exe\", \"Cpus\": 2, \"Memory\": \"512M\", "
              "\"DiskSize\": 1048576}",
              &cfg, &disk, &msg) == 0);
  CHECK(json_integer_value(json_object_get(cfg, "Cpus")) == 2);
  CHECK(json_integer_value(json_object_get(cfg, "Memory")) == 512LL << 20);
  CHECK_STREQ(json_string_value(json_object_get(cfg, "Append")), "console=ttyS0");
  CHECK(json_integer_value(json_object_get(disk, "Size")) == 1 << 20);
  json_decref(cfg);
  json_decref(disk);
  /* no disk asked for: none */
  CHECK(parse("{\"Kernel\": \"/proc/self/exe\", \"Memory\": 33554432}", &cfg, &disk, &msg) == 0);
  CHECK(json_object_size(disk) == 0);
  CHECK(json_integer_value(json_object_get(cfg, "Memory")) == 32 << 20);
  json_decref(cfg);
  json_decref(disk);
  check_refused("{\"Kernel\": \"/proc/self/exe\", \"Cpus\": 0}", "1 to 8 vCPUs");
  check_refused("{\"Kernel\": \"/proc/self/exe\", \"Cpus\": 9}", "1 to 8 vCPUs");
  check_refused("{\"Kernel\": \"/proc/self/exe\", \"Cpus\": \"2\"}", "Cpus");
  check_refused("{\"Kernel\": \"/proc/self/exe\", \"Memory\": \"1Q\"}", "Memory");
  check_refused("{\"Kernel\": \"/proc/self/exe\", \"Memory\": 4096}", "16 MiB to 64 GiB");
  check_refused("{\"Kernel\": \"/proc/self/exe\", \"Memory\": true}", "Memory");
  check_refused("{\"Kernel\": \"/proc/self/exe\", \"DiskSize\": -5}", "DiskSize");
  check_refused("{\"Kernel\": \"relative/Image\"}", "absolute path");
  check_refused("{\"Kernel\": \"/nonexistent/Image\"}", "/nonexistent/Image");
  check_refused("{\"Kernel\": \"/proc/self/exe\", \"Disk\": \"/nonexistent.img\"}",
                "/nonexistent.img");
  check_refused("{\"Kernel\": \"/proc/self/exe\", \"Kernal\": \"x\"}", "unknown field Kernal");
}

TEST(vm_config_network_and_published_ports) {
  json_t *cfg, *disk;
  char *msg;
  CHECK(parse("{\"Kernel\": \"/proc/self/exe\", \"Network\": \"front\", \"Publish\": "
              "[\"8085:8080\", \"127.0.0.1:53:53/udp\"], \"PortBindings\": {\"22/tcp\": "
              "[{\"HostPort\": \"2222\"}]}}",
              &cfg, &disk, &msg) == 0);
  CHECK_STREQ(json_string_value(json_object_get(cfg, "Network")), "front");
  json_t *pb = json_object_get(cfg, "PortBindings");
  CHECK_STREQ(json_string_value(
                  json_object_get(json_array_get(json_object_get(pb, "8080/tcp"), 0), "HostPort")),
              "8085");
  CHECK_STREQ(json_string_value(
                  json_object_get(json_array_get(json_object_get(pb, "53/udp"), 0), "HostIp")),
              "127.0.0.1");
  CHECK(json_object_get(pb, "22/tcp") != NULL);
  json_decref(cfg);
  json_decref(disk);
  check_refused("{\"Kernel\": \"/proc/self/exe\", \"Publish\": [\"80:80\"]}", "need a Network");
  check_refused("{\"Kernel\": \"/proc/self/exe\", \"Network\": \"n\", \"Publish\": [\"80:x\"]}",
                "Publish");
  check_refused("{\"Kernel\": \"/proc/self/exe\", \"Network\": \"n\", \"Publish\": \"80:80\"}",
                "array");
  check_refused("{\"Kernel\": \"/proc/self/exe\", \"Network\": 3}", "Network");
  check_refused("{\"Kernel\": \"/proc/self/exe\", \"Network\": \"n\", \"PortBindings\": []}",
                "PortBindings");
}

TEST(pool_requests) {
  json_t *pool = json_object();
  json_t *body = json_loads("{\"Name\": \"p1\", \"Cpus\": 2, \"Memory\": \"1G\", "
                            "\"MemoryOvercommit\": 1.5}",
                            0, NULL);
  vs_error *err = NULL;
  CHECK(vd_pool_parse(body, pool, &err) == 0);
  CHECK(json_integer_value(json_object_get(pool, "Memory")) == 1LL << 30);
  CHECK(json_number_value(json_object_get(pool, "MemoryOvercommit")) == 1.5);
  CHECK(json_number_value(json_object_get(pool, "CpuOvercommit")) == 1.0);
  json_decref(body);
  json_decref(pool);
  static const char *const bad[][2] = {
      {"{\"Name\": \"p\", \"Cpus\": 0, \"Memory\": \"1G\"}", "Cpus"},
      {"{\"Name\": \"p\", \"Cpus\": 1}", "Memory"},
      {"{\"Name\": \"..\", \"Cpus\": 1, \"Memory\": \"1G\"}", "pool name"},
      {"{\"Name\": \"p\", \"Cpus\": 1, \"Memory\": \"1G\", \"CpuOvercommit\": 0.5}",
       "CpuOvercommit"},
      {"{\"Name\": \"p\", \"Cpus\": 1, \"Memory\": \"1G\", \"Size\": 1}", "unknown field Size"},
  };
  for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
    body = json_loads(bad[i][0], 0, NULL);
    pool = json_object();
    err = NULL;
    CHECK(vd_pool_parse(body, pool, &err) == -1);
    CHECK_CONTAINS(err->msg, bad[i][1]);
    vs_error_free(err);
    json_decref(body);
    json_decref(pool);
  }
  /* no Pool: the default one; a QoS class there asks for a cgroup */
  json_t *cfg, *disk;
  char *msg;
  CHECK(parse("{\"Kernel\": \"/proc/self/exe\", \"Qos\": \"burstable\"}", &cfg, &disk, &msg) == 0);
  CHECK(!strcmp(json_string_value(json_object_get(cfg, "Pool")), "default"));
  CHECK(!strcmp(json_string_value(json_object_get(cfg, "Qos")), "burstable"));
  json_decref(cfg);
  json_decref(disk);
  CHECK(parse("{\"Kernel\": \"/proc/self/exe\"}", &cfg, &disk, &msg) == 0);
  CHECK(!strcmp(json_string_value(json_object_get(cfg, "Pool")), "default"));
  CHECK(json_object_get(cfg, "Qos") == NULL);
  json_decref(cfg);
  json_decref(disk);
  check_refused("{\"Kernel\": \"/proc/self/exe\", \"RestartPolicy\": \"sometimes\"}",
                "invalid restart policy 'sometimes'");
  check_refused("{\"Kernel\": \"/proc/self/exe\", \"Pool\": \"p\", \"Qos\": \"gold\"}",
                "guaranteed, burstable or best-effort");
}

TEST(vm_config_default_guest_missing_says_how_to_get_it) {
  setenv("VESSEL_CACHE", "/nonexistent-cache", 1);
  check_refused("{}", "scripts/fetch-guest");
  unsetenv("VESSEL_CACHE");
}

/* ---- held memory (src/daemon/pool_memory.c): what admission counts, and the squeezes */

#define MiB (1LL << 20)

/* A VM of pool "p" as the sampler leaves it: running, measured (held MiB), its balloon driver
 * up or not. */
static vd_vm *held_vm(const char *name, const char *qos, long long mem, long long held,
                      bool ready) {
  vd_vm *vm = calloc(1, sizeof(*vm));
  vm->name = strdup(name);
  vm->pidfd = vm->restart_timerfd = -1;
  vm->rec = json_pack("{s:s, s:{s:I, s:s, s:s}}", "Name", name, "Config", "Memory",
                      (json_int_t)(mem * MiB), "Pool", "p", "Qos", qos);
  vm->pid = vm->held_pid = 4242;
  vm->held = (uint64_t)(held * MiB);
  vm->balloon_ready = ready;
  return vm;
}

typedef struct pool_fixture {
  vd_daemon d;
  vd_vms t;
  vd_vm *vms[4];
  json_t *pool;
} pool_fixture;

static void fixture_init(pool_fixture *f, long long cap, size_t n, vd_vm **vms) {
  memset(f, 0, sizeof(*f));
  for (size_t i = 0; i < n; i++)
    f->vms[i] = vms[i];
  f->t.vms = f->vms;
  f->t.n = n;
  f->t.ctr_held = json_object();
  f->d.vms = &f->t;
  f->pool = json_pack("{s:s, s:I}", "Name", "p", "Memory", (json_int_t)(cap * MiB));
}

static void fixture_free(pool_fixture *f) {
  for (size_t i = 0; i < f->t.n; i++)
    vd_vm_free(f->vms[i]);
  json_decref(f->t.ctr_held);
  json_decref(f->pool);
}

TEST(held_memory_counted) {
  int64_t held;
  vd_vm *g = held_vm("g", "guaranteed", 192, 100, false);
  CHECK(vd_vm_memory_counted_locked(g, &held) == 192 * MiB && held == 100 * MiB);
  vd_vm *b = held_vm("b", "burstable", 256, 100, true);
  CHECK(vd_vm_memory_counted_locked(b, &held) == 100 * MiB && held == 100 * MiB);
  /* no balloon driver: nothing can take it back, so its request */
  b->balloon_ready = false;
  CHECK(vd_vm_memory_counted_locked(b, &held) == 256 * MiB && held == 100 * MiB);
  /* the VMM's own memory on top of a full guest: never more than the request */
  b->balloon_ready = true;
  b->held = (uint64_t)(300 * MiB);
  CHECK(vd_vm_memory_counted_locked(b, &held) == 256 * MiB && held == 256 * MiB);
  /* a new VMM not measured yet, and a stopped VM: the request */
  b->pid = 4343;
  CHECK(vd_vm_memory_counted_locked(b, &held) == 256 * MiB && held == -1);
  b->pid = 0;
  CHECK(vd_vm_memory_counted_locked(b, &held) == 256 * MiB && held == -1);
  /* the balloon's goal: the user's target, lowered by a squeeze */
  json_object_set_new(json_object_get(b->rec, "Config"), "MemoryTarget", json_integer(200 * MiB));
  CHECK_U64(vd_vm_balloon_goal_locked(b), 200 * MiB);
  b->squeeze = (uint64_t)(102 * MiB);
  CHECK_U64(vd_vm_balloon_goal_locked(b), 102 * MiB);
  b->squeeze = (uint64_t)(220 * MiB);
  CHECK_U64(vd_vm_balloon_goal_locked(b), 200 * MiB);
  vd_vm_free(g);
  vd_vm_free(b);
}

TEST(held_memory_squeeze_and_release) {
  /* 192 (guaranteed) + 256 + 128 held in 512 MiB: past 90 %, down to 70 % (358.4 MiB); the
   * best-effort VM gives first, down to its floor of 64 MiB, then the burstable one */
  vd_vm *vms[] = {held_vm("g", "guaranteed", 192, 100, false),
                  held_vm("b", "burstable", 256, 256, true),
                  held_vm("e", "best-effort", 128, 128, true)};
  pool_fixture f;
  fixture_init(&f, 512, 3, vms);
  vd_pool_reclaim_locked(&f.d, "p", f.pool);
  CHECK_U64(vms[0]->squeeze, 0);
  CHECK_U64(vms[2]->squeeze, 64 * MiB);
  CHECK_U64(vms[1]->squeeze, 102 * MiB);
  /* the squeezes stand while the pressure (192 + 102 + 64) sits between 60 and 90 % */
  vd_pool_reclaim_locked(&f.d, "p", f.pool);
  CHECK_U64(vms[1]->squeeze, 102 * MiB);
  CHECK_U64(vms[2]->squeeze, 64 * MiB);
  /* the guaranteed VM stops: 166 MiB < 60 %; the room up to 70 % goes back, the burstable VM
   * first (all of its 256 MiB), the rest to the best-effort one */
  vms[0]->pid = 0;
  vd_pool_reclaim_locked(&f.d, "p", f.pool);
  CHECK_U64(vms[1]->squeeze, 0);
  CHECK_U64(vms[2]->squeeze, 102 * MiB);
  fixture_free(&f);
}

TEST(held_memory_guaranteed_never_squeezed) {
  /* only guaranteed VMs, over capacity: nothing to squeeze */
  vd_vm *vms[] = {held_vm("g1", "guaranteed", 256, 250, true),
                  held_vm("g2", "guaranteed", 256, 250, true)};
  pool_fixture f;
  fixture_init(&f, 384, 2, vms);
  vd_pool_reclaim_locked(&f.d, "p", f.pool);
  CHECK_U64(vms[0]->squeeze, 0);
  CHECK_U64(vms[1]->squeeze, 0);
  fixture_free(&f);
}

int main(void) { return tap_run(); }
