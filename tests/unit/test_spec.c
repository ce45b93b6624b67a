/* ctr spec parsing: valid documents become typed structs, bad ones name the field. */
#include "ctr/ctr.h"
#include "tap.h"

#include <string.h>
#include <sys/mount.h>

#define MIN_PROCESS "\"process\":{\"user\":{\"uid\":0,\"gid\":0},\"cwd\":\"/\",\"args\":[\"sh\"]}"

static char *parse_error(const char *doc) {
  ctr_spec *s = NULL;
  vs_error *e = NULL;
  static char msg[512];
  int r = ctr_spec_parse(doc, strlen(doc), true, &s, &e);
  if (r == 0) {
    ctr_spec_free(s);
    return NULL;
  }
  snprintf(msg, sizeof(msg), "%s", e->msg);
  vs_error_free(e);
  return msg;
}

TEST(default_spec_parses) {
  json_t *j = ctr_default_spec(false);
  char *text = json_dumps(j, 0);
  ctr_spec *s = NULL;
  vs_error *e = NULL;
  CHECK_EQ(ctr_spec_parse(text, strlen(text), true, &s, &e), 0);
  CHECK_STREQ(s->root_path, "rootfs");
  CHECK(s->root_readonly);
  CHECK_STREQ(s->process.args[0], "sh");
  CHECK(s->ns[CTR_NS_PID].present && !s->ns[CTR_NS_PID].path);
  CHECK(!s->ns[CTR_NS_USER].present);
  CHECK_EQ(s->n_mounts, 7);
  CHECK_STREQ(s->mounts[1].destination, "/dev");
  CHECK((s->mounts[1].flags & MS_NOSUID) != 0);
  CHECK_STREQ(s->mounts[1].data, "mode=755,size=65536k");
  CHECK_STREQ(s->masked_paths[0], "/proc/acpi");
  ctr_spec_free(s);
  free(text);
  json_decref(j);
}

TEST(rootless_spec_has_user_namespace) {
  json_t *j = ctr_default_spec(true);
  char *text = json_dumps(j, 0);
  ctr_spec *s = NULL;
  CHECK_EQ(ctr_spec_parse(text, strlen(text), true, &s, NULL), 0);
  CHECK(s->ns[CTR_NS_USER].present);
  CHECK_EQ(s->n_uid_maps, 1);
  CHECK_EQ(s->uid_maps[0].container_id, 0);
  ctr_spec_free(s);
  free(text);
  json_decref(j);
}

TEST(invalid_json_is_reported_with_position) {
  CHECK_CONTAINS(parse_error("{\"ociVersion\": "), "invalid JSON at line 1");
  CHECK_CONTAINS(parse_error("[1,2]"), "must be a JSON object");
}

TEST(missing_required_fields_are_named) {
  CHECK_CONTAINS(parse_error("{\"root\":{\"path\":\"r\"}," MIN_PROCESS "}"),
                 "ociVersion: required field is missing");
  CHECK_CONTAINS(parse_error("{\"ociVersion\":\"1.0.2\"," MIN_PROCESS "}"),
                 "root: required field is missing");
  CHECK_CONTAINS(parse_error("{\"ociVersion\":\"1.0.2\",\"root\":{\"path\":\"r\"}}"),
                 "process: required field is missing");
  CHECK_CONTAINS(parse_error("{\"ociVersion\":\"1.0.2\",\"root\":{}," MIN_PROCESS "}"),
                 "root.path: required field is missing");
  CHECK_CONTAINS(parse_error("{\"ociVersion\":\"1.0.2\",\"root\":{\"path\":\"r\"},"
                             "\"process\":{\"user\":{\"uid\":0,\"gid\":0},\"cwd\":\"/\"}}"),
                 "process.args: required field is missing");
}

TEST(wrong_types_are_named) {
  CHECK_CONTAINS(parse_error("{\"ociVersion\":1}"), "ociVersion: must be a string, not an integer");
  CHECK_CONTAINS(
      parse_error(
          "{\"ociVersion\":\"1.0.2\",\"root\":{\"path\":\"r\",\"readonly\":\"yes\"}," MIN_PROCESS
          "}"),
      "root.readonly: must be a boolean");
  CHECK_CONTAINS(
      parse_error("{\"ociVersion\":\"1.0.2\",\"root\":{\"path\":\"r\"},"
                  "\"process\":{\"user\":{\"uid\":-1,\"gid\":0},\"cwd\":\"/\",\"args\":[\"sh\"]}}"),
      "process.user.uid: -1 is out of range");
  CHECK_CONTAINS(
      parse_error(
          "{\"ociVersion\":\"1.0.2\",\"root\":{\"path\":\"r\"},"
          "\"process\":{\"user\":{\"uid\":0,\"gid\":0},\"cwd\":\"/\",\"args\":[\"sh\",3]}}"),
      "process.args[1]: must be a string");
  CHECK_CONTAINS(
      parse_error(
          "{\"ociVersion\":\"1.0.2\",\"root\":{\"path\":\"r\"},"
          "\"process\":{\"user\":{\"uid\":0,\"gid\":0},\"cwd\":\"rel\",\"args\":[\"sh\"]}}"),
      "process.cwd: \"rel\" must be an absolute path");
  CHECK_CONTAINS(
      parse_error("{\"ociVersion\":\"1.0.2\",\"root\":{\"path\":\"r\"},"
                  "\"process\":{\"user\":{\"uid\":0,\"gid\":0},\"cwd\":\"/\",\"args\":[\"sh\"],"
                  "\"env\":[\"NOEQUALS\"]}}"),
      "process.env[0]: \"NOEQUALS\" is not NAME=VALUE");
}

TEST(unsupported_versions_are_refused) {
  CHECK_CONTAINS(
      parse_error("{\"ociVersion\":\"2.0.0\",\"root\":{\"path\":\"r\"}," MIN_PROCESS "}"),
      "ociVersion: version 2.0.0 is not supported");
  CHECK_CONTAINS(
      parse_error("{\"ociVersion\":\"banana\",\"root\":{\"path\":\"r\"}," MIN_PROCESS "}"),
      "is not a version");
  CHECK(parse_error("{\"ociVersion\":\"1.0.2-dev\",\"root\":{\"path\":\"r\"}," MIN_PROCESS "}") ==
        NULL);
}

#define DOC(extra) "{\"ociVersion\":\"1.2.0\",\"root\":{\"path\":\"r\"}," MIN_PROCESS "," extra "}"

TEST(bad_mount_destinations_are_refused) {
  CHECK_CONTAINS(
      parse_error(DOC("\"mounts\":[{\"destination\":\"/a/../../etc\",\"type\":\"tmpfs\"}]")),
      "mounts[0].destination: \"/a/../../etc\" must not contain \"..\"");
  CHECK_CONTAINS(parse_error(DOC("\"mounts\":[{\"destination\":\"/ok\",\"type\":\"tmpfs\"},"
                                 "{\"destination\":\"rel\",\"type\":\"tmpfs\"}]")),
                 "mounts[1].destination: \"rel\" must be an absolute path");
  CHECK_CONTAINS(parse_error(DOC("\"mounts\":[{\"destination\":\"/x\",\"options\":[\"bind\"]}]")),
                 "mounts[0].source: required for a bind mount");
  CHECK_CONTAINS(parse_error(DOC("\"mounts\":[{\"destination\":\"/x\"}]")),
                 "mounts[0].type: required");
}

TEST(mount_options_become_flags) {
  const char *d = DOC("\"mounts\":[{\"destination\":\"/x\",\"type\":\"bind\",\"source\":\"/s\","
                      "\"options\":[\"rbind\",\"ro\",\"nosuid\",\"rslave\"]}],"
                      "\"linux\":{\"namespaces\":[{\"type\":\"mount\"}]}");
  ctr_spec *s = NULL;
  CHECK_EQ(ctr_spec_parse(d, strlen(d), true, &s, NULL), 0);
  CHECK(s->mounts[0].bind && s->mounts[0].recursive);
  CHECK_EQ(s->mounts[0].flags, MS_RDONLY | MS_NOSUID);
  CHECK_EQ(s->mounts[0].propagation, MS_SLAVE | MS_REC);
  CHECK(s->mounts[0].data == NULL);
  ctr_spec_free(s);
}

TEST(host_mount_namespace_refuses_what_needs_its_own) {
  CHECK_CONTAINS(parse_error(DOC("\"mounts\":[{\"destination\":\"/x\",\"type\":\"tmpfs\","
                                 "\"source\":\"t\"}]")),
                 "mounts: applying it needs a mount namespace of the container");
  CHECK_CONTAINS(parse_error("{\"ociVersion\":\"1.2.0\",\"root\":{\"path\":\"r\",\"readonly\":"
                             "true}," MIN_PROCESS "}"),
                 "root.readonly: applying it needs a mount namespace");
  CHECK_CONTAINS(parse_error(DOC("\"linux\":{\"maskedPaths\":[\"/proc/kcore\"]}")),
                 "linux.maskedPaths: applying it needs");
  CHECK_CONTAINS(parse_error(DOC("\"linux\":{\"sysctl\":{\"kernel.msgmax\":\"1\"}}")),
                 "linux.sysctl: applying it needs");
  /* shared by path, or nothing asked that needs one of its own: accepted */
  CHECK(parse_error(DOC("\"linux\":{\"maskedPaths\":[\"/proc/kcore\"],\"namespaces\":[{"
                        "\"type\":\"mount\",\"path\":\"/proc/1/ns/mnt\"}]}")) == NULL);
  CHECK(parse_error(DOC("\"linux\":{\"namespaces\":[{\"type\":\"pid\"}]}")) == NULL);
}

TEST(bad_devices_are_refused) {
  CHECK_CONTAINS(parse_error(DOC("\"linux\":{\"devices\":[{\"type\":\"x\",\"path\":\"/dev/a\","
                                 "\"major\":1,\"minor\":3}]}")),
                 "linux.devices[0].type: \"x\" is not a device type");
  CHECK_CONTAINS(parse_error(DOC("\"linux\":{\"devices\":[{\"type\":\"c\",\"path\":\"/etc/a\","
                                 "\"major\":1,\"minor\":3}]}")),
                 "is not under /dev");
  CHECK_CONTAINS(parse_error(DOC("\"linux\":{\"devices\":[{\"type\":\"c\",\"path\":\"/dev/a\"}]}")),
                 "linux.devices[0].major: required field is missing");
}

TEST(namespaces_are_checked) {
  CHECK_CONTAINS(
      parse_error(DOC("\"linux\":{\"namespaces\":[{\"type\":\"pid\"},{\"type\":\"pid\"}]}")),
      "namespace \"pid\" is listed twice");
  CHECK_CONTAINS(parse_error(DOC("\"linux\":{\"namespaces\":[{\"type\":\"bogus\"}]}")),
                 "unknown namespace type \"bogus\"");
  CHECK_CONTAINS(parse_error(DOC("\"linux\":{\"namespaces\":[{\"type\":\"user\"}]}")),
                 "needs both uid and gid mappings");
  CHECK_CONTAINS(
      parse_error(
          DOC("\"linux\":{\"uidMappings\":[{\"containerID\":0,\"hostID\":1000,\"size\":1}]}")),
      "need a new user namespace");
  CHECK_CONTAINS(
      parse_error(DOC("\"linux\":{\"namespaces\":[{\"type\":\"net\",\"path\":\"rel\"}]}")),
      "unknown namespace type \"net\"");
  CHECK_CONTAINS(
      parse_error(DOC("\"linux\":{\"namespaces\":[{\"type\":\"network\",\"path\":\"rel\"}]}")),
      "linux.namespaces[0].path: must be an absolute path");
}

TEST(user_namespace_maps_parse) {
  const char *d = DOC("\"linux\":{\"namespaces\":[{\"type\":\"user\"}],"
                      "\"uidMappings\":[{\"containerID\":0,\"hostID\":100000,\"size\":65536}],"
                      "\"gidMappings\":[{\"containerID\":0,\"hostID\":100000,\"size\":65536}]}");
  ctr_spec *s = NULL;
  CHECK_EQ(ctr_spec_parse(d, strlen(d), true, &s, NULL), 0);
  CHECK_EQ(s->uid_maps[0].host_id, 100000);
  CHECK_EQ(s->gid_maps[0].size, 65536);
  ctr_spec_free(s);
}

TEST(hooks_parse_and_validate) {
  const char *d = DOC("\"hooks\":{\"poststop\":[{\"path\":\"/bin/true\",\"timeout\":5}]}");
  ctr_spec *s = NULL;
  CHECK_EQ(ctr_spec_parse(d, strlen(d), true, &s, NULL), 0);
  CHECK_EQ(s->n_hooks[CTR_HOOK_POSTSTOP], 1);
  CHECK_EQ(s->hooks[CTR_HOOK_POSTSTOP][0].timeout, 5);
  ctr_spec_free(s);
  CHECK_CONTAINS(parse_error(DOC("\"hooks\":{\"prestart\":[{\"path\":\"true\"}]}")),
                 "hooks.prestart[0].path: \"true\" must be an absolute path");
  CHECK_CONTAINS(parse_error(DOC("\"hooks\":{\"prestart\":[{\"path\":\"/x\",\"timeout\":0}]}")),
                 "hooks.prestart[0].timeout: 0 is out of range");
}

TEST(duplicate_keys_are_refused) {
  CHECK_CONTAINS(parse_error("{\"ociVersion\":\"1.0.0\",\"ociVersion\":\"1.0.0\"}"),
                 "invalid JSON");
}

int main(void) { return tap_run(); }
