/* System endpoints: /_ping, /version, /info. */
#include "daemon/internal.h"

#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

#define VD_VERSION "0.1.0"

void vd_h_swarm(vd_call *c) {
  vd_call_error(c, 503,
                "This node is not a swarm manager. Use \"docker swarm init\" or \"docker swarm "
                "join\" to connect this node to swarm and try again.");
}

void vd_h_ping(vd_call *c) {
  c->status = 200;
  c->text = vs_strdup("OK");
  c->content_type = "text/plain; charset=utf-8";
  /* what the CLI reads to pick the builder and the API version */
  c->extra_headers = "Builder-Version: 1\r\nCache-Control: no-cache, no-store, "
                     "must-revalidate\r\nPragma: no-cache\r\n";
}

void vd_h_version(vd_call *c) {
  struct utsname u;
  uname(&u);
  /* Details is a map of strings for clients (Go's map[string]string) */
  json_t *details =
      json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "ApiVersion", VD_API_VERSION, "Arch",
                vs_arch_native(), "BuildTime", "", "GitCommit", "", "KernelVersion", u.release,
                "MinAPIVersion", VD_MIN_API_VERSION, "Experimental", "false");
  json_object_set_new(details, "Os", json_string("linux"));
  vd_call_json(
      c, 200,
      json_pack("{s:{s:s}, s:[{s:s, s:s, s:o}], s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s}",
                "Platform", "Name", "vessel", "Components", "Name", "Engine", "Version", VD_VERSION,
                "Details", details, "Version", VD_VERSION, "ApiVersion", VD_API_VERSION,
                "MinAPIVersion", VD_MIN_API_VERSION, "GitCommit", "", "GoVersion", "none", "Os",
                "linux", "Arch", vs_arch_native(), "KernelVersion", u.release, "BuildTime", ""));
}

static long long mem_total(void) {
  _cleanup_free_ char *text = NULL;
  if (vs_read_file("/proc/meminfo", 1 << 16, &text, NULL, NULL) < 0)
    return 0;
  const char *p = strstr(text, "MemTotal:");
  return p ? strtoll(p + 9, NULL, 10) * 1024 : 0;
}

static size_t count_images(vd_daemon *d) {
  json_t *tags = vs_store_tags(d->store, NULL);
  json_t *seen = json_object();
  const char *key;
  json_t *val;
  json_object_foreach(tags, key, val) if (json_is_string(val))
      json_object_set_new(seen, json_string_value(val), json_true());
  size_t n = json_object_size(seen);
  json_decref(seen);
  json_decref(tags);
  return n;
}

void vd_h_info(vd_call *c) {
  vd_daemon *d = c->d;
  struct utsname u;
  uname(&u);
  char host[256] = "";
  gethostname(host, sizeof(host) - 1);
  size_t running = 0, stopped = 0, total;
  pthread_mutex_lock(&d->lock);
  total = d->n_ctrs;
  for (size_t i = 0; i < d->n_ctrs; i++)
    d->ctrs[i]->state == VD_CTR_RUNNING ? running++ : stopped++;
  pthread_mutex_unlock(&d->lock);
  pthread_mutex_lock(&d->store_lock);
  size_t images = count_images(d);
  pthread_mutex_unlock(&d->store_lock);
  _cleanup_free_ char *now = vd_now();
  _cleanup_free_ char *runtime = vs_asprintf("%s", d->monitor_path);
  json_t *j = json_pack(
      "{s:s, s:I, s:I, s:i, s:I, s:I, s:s, s:[], s:{s:[s], s:[s,s], s:[s]}, s:b, s:b, s:b, "
      "s:b, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:s, s:s, s:[], s:b, "
      "s:s, s:s, s:b, s:[s], s:[]}",
      "ID", "vesseld", "Containers", (json_int_t)total, "ContainersRunning", (json_int_t)running,
      "ContainersPaused", 0, "ContainersStopped", (json_int_t)stopped, "Images", (json_int_t)images,
      "Driver", "overlay", "DriverStatus", "Plugins", "Volume", "local", "Network", "host", "none",
      "Log", "json-file", "MemoryLimit", 1, "SwapLimit", 0, "CpuCfsPeriod", 1, "Debug", 0,
      "SystemTime", now, "LoggingDriver", "json-file", "CgroupDriver", "cgroupfs", "CgroupVersion",
      "1", "KernelVersion", u.release, "OperatingSystem", "vessel", "OSType", "linux",
      "Architecture", u.machine, "IndexServerAddress", "https://index.docker.io/v1/",
      "DockerRootDir", d->data_root, "NCPU", (json_int_t)sysconf(_SC_NPROCESSORS_ONLN), "MemTotal",
      (json_int_t)mem_total(), "Name", host, "ServerVersion", VD_VERSION, "Labels",
      "ExperimentalBuild", 0, "DefaultRuntime", "vessel", "Isolation", "", "LiveRestoreEnabled", 1,
      "SecurityOptions", "name=seccomp,profile=default", "Warnings");
  json_object_set_new(j, "Runtimes", json_pack("{s:{s:s}}", "vessel", "path", runtime));
  json_object_set_new(j, "Swarm",
                      json_pack("{s:s, s:s, s:s, s:b, s:n}", "NodeID", "", "NodeAddr", "",
                                "LocalNodeState", "inactive", "ControlAvailable", 0,
                                "RemoteManagers"));
  /* vessel's own: whether this daemon is a node of a cluster (the web console offers migration
   * only then; /vessel/v1/nodes answers 503 otherwise) */
  json_object_set_new(j, "VesselCluster",
                      json_pack("{s:b, s:s}", "Enabled", d->cluster.enabled, "NodeName",
                                d->cluster.node_name ? d->cluster.node_name : ""));
  json_object_set_new(j, "RegistryConfig",
                      json_pack("{s:[], s:[], s:[s], s:{s:{s:s, s:[], s:b, s:b}}, s:[]}",
                                "AllowNondistributableArtifactsCIDRs",
                                "AllowNondistributableArtifactsHostnames", "InsecureRegistryCIDRs",
                                "127.0.0.0/8", "IndexConfigs", "docker.io", "Name", "docker.io",
                                "Mirrors", "Secure", 1, "Official", 1, "Mirrors"));
  vd_call_json(c, 200, j);
}
