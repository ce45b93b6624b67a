/* ctr container ids, state files and the OCI status. */
#include "ctr/ctr.h"
#include "tap.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *id_error(const char *id) {
  static char msg[512];
  vs_error *e = NULL;
  if (ctr_id_validate(id, &e) == 0)
    return NULL;
  snprintf(msg, sizeof(msg), "%s", e->msg);
  vs_error_free(e);
  return msg;
}

TEST(ids_are_validated) {
  CHECK(id_error("abc-1.2_x+y") == NULL);
  CHECK_CONTAINS(id_error(""), "must not be empty");
  CHECK_CONTAINS(id_error("../x"), "character '/' is not allowed");
  CHECK_CONTAINS(id_error(".."), "is not a valid id");
  CHECK_CONTAINS(id_error("a b"), "character ' '");
  char longid[300];
  memset(longid, 'a', sizeof(longid) - 1);
  longid[299] = 0;
  CHECK_CONTAINS(id_error(longid), "too long");
}

TEST(state_round_trip) {
  char root[] = "/tmp/vessel-state-XXXXXX";
  CHECK(mkdtemp(root) != NULL);
  ctr_runtime rt = {.root = root};
  char *dir = ctr_state_dir(&rt, "c1");
  CHECK_EQ(mkdir(dir, 0700), 0);
  ctr_state st = {.id = "c1",
                  .pid = getpid(),
                  .bundle = "/b",
                  .rootfs = "/b/rootfs",
                  .created = "2026-01-01T00:00:00Z",
                  .owner = "",
                  .stored = CTR_STATUS_RUNNING};
  st.pid_start = 0;
  st.annotations = json_pack("{s:s}", "k", "v");
  CHECK_EQ(ctr_state_save(&rt, &st, NULL), 0);
  ctr_state *back = NULL;
  CHECK_EQ(ctr_state_load(&rt, "c1", &back, NULL), 0);
  CHECK_STREQ(back->id, "c1");
  CHECK_EQ(back->pid, getpid());
  CHECK_STREQ(back->bundle, "/b");
  CHECK_STREQ(json_string_value(json_object_get(back->annotations, "k")), "v");
  /* pid_start 0 never matches a live process: the container counts as stopped */
  CHECK_EQ(ctr_state_status(&rt, back), CTR_STATUS_STOPPED);
  json_t *oci = ctr_state_oci_json(&rt, back);
  CHECK_STREQ(json_string_value(json_object_get(oci, "status")), "stopped");
  CHECK_EQ(json_integer_value(json_object_get(oci, "pid")), 0);
  json_decref(oci);
  ctr_state_free(back);
  char **ids = ctr_list_ids(&rt, NULL);
  CHECK(ids && ids[0] && !strcmp(ids[0], "c1") && !ids[1]);
  ctr_strv_free(ids);
  json_decref(st.annotations);
  CHECK_EQ(vs_rm_rf(root, NULL), 0);
  free(dir);
}

TEST(live_process_is_running_or_created) {
  char root[] = "/tmp/vessel-state-XXXXXX";
  CHECK(mkdtemp(root) != NULL);
  ctr_runtime rt = {.root = root};
  char path[256];
  snprintf(path, sizeof(path), "%s/c2", root);
  CHECK_EQ(mkdir(path, 0700), 0);
  /* our own start time, read the way the runtime reads it */
  FILE *f = fopen("/proc/self/stat", "r");
  char buf[1024];
  CHECK(fgets(buf, sizeof(buf), f) != NULL);
  fclose(f);
  char *p = strrchr(buf, ')') + 2;
  for (int i = 3; i < 22; i++)
    p = strchr(p, ' ') + 1;
  ctr_state st = {.id = "c2",
                  .pid = getpid(),
                  .pid_start = strtoull(p, NULL, 10),
                  .bundle = "",
                  .rootfs = "",
                  .created = "",
                  .owner = "",
                  .stored = CTR_STATUS_CREATED};
  CHECK_EQ(ctr_state_status(&rt, &st), CTR_STATUS_RUNNING);
  snprintf(path, sizeof(path), "%s/c2/exec.fifo", root);
  CHECK_EQ(mkfifo(path, 0600), 0);
  CHECK_EQ(ctr_state_status(&rt, &st), CTR_STATUS_CREATED);
  st.stored = CTR_STATUS_CREATING;
  CHECK_EQ(ctr_state_status(&rt, &st), CTR_STATUS_CREATING);
  CHECK_EQ(vs_rm_rf(root, NULL), 0);
}

TEST(corrupt_state_is_an_error) {
  char root[] = "/tmp/vessel-state-XXXXXX";
  CHECK(mkdtemp(root) != NULL);
  ctr_runtime rt = {.root = root};
  char path[256];
  snprintf(path, sizeof(path), "%s/c3", root);
  CHECK_EQ(mkdir(path, 0700), 0);
  snprintf(path, sizeof(path), "%s/c3/state.json", root);
  FILE *f = fopen(path, "w");
  fputs("{\"id\":\"c3\"}", f);
  fclose(f);
  ctr_state *st = NULL;
  vs_error *e = NULL;
  CHECK(ctr_state_load(&rt, "c3", &st, &e) < 0);
  CHECK_CONTAINS(e->msg, "missing or of the wrong type");
  vs_error_free(e);
  e = NULL;
  CHECK(ctr_state_load(&rt, "nope", &st, &e) < 0);
  CHECK_CONTAINS(e->msg, "does not exist");
  vs_error_free(e);
  CHECK_EQ(vs_rm_rf(root, NULL), 0);
}

int main(void) { return tap_run(); }
