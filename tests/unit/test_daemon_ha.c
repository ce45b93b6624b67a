/* HA's decisions (src/daemon/cluster_ha.c) on records as etcd holds them: which guests of a
 * node that is down the leader places again, what the record says once placed, and what the
 * node that makes the guest takes from the record (its disk on the shared storage, refused
 * when the record names a directory that is not this node's). */
#include "daemon/vms.h"
#include "tap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static json_t *rec(const char *text) {
  json_t *j = json_loads(text, 0, NULL);
  if (!j)
    abort();
  return j;
}

static const char *str(const json_t *o, const char *f) {
  return json_string_value(json_object_get(o, f));
}

TEST(ha_ready_nodes) {
  json_t *nodes = rec("[{\"Name\": \"n1\", \"Status\": \"ready\"}, {\"Name\": \"n2\", \"Status\": "
                      "\"down\"}, {\"Status\": \"ready\"}, {\"Name\": \"n3\", \"Status\": 7}]");
  json_t *ready = vd_ha_ready_nodes(nodes);
  CHECK(json_object_size(ready) == 1 && json_object_get(ready, "n1"));
  json_decref(ready);
  json_decref(nodes);
}

TEST(ha_which_guests_move) {
  json_t *ready = rec("{\"n1\": true, \"n3\": true}");
  static const struct {
    const char *rec;
    bool moves;
  } cases[] = {
      /* running on a node that is down, with a restart policy, no disk: moves */
      {"{\"Kind\": \"vm\", \"Node\": \"n2\", \"Phase\": \"running\", \"Spec\": "
       "{\"RestartPolicy\": \"always\"}}",
       true},
      {"{\"Kind\": \"vm\", \"Node\": \"n2\", \"Phase\": \"running\", \"Spec\": "
       "{\"RestartPolicy\": \"on-failure:3\"}}",
       true},
      /* its node is ready */
      {"{\"Kind\": \"vm\", \"Node\": \"n1\", \"Phase\": \"running\", \"Spec\": "
       "{\"RestartPolicy\": \"always\"}}",
       false},
      /* no policy, or "no" */
      {"{\"Kind\": \"vm\", \"Node\": \"n2\", \"Phase\": \"running\", \"Spec\": {}}", false},
      {"{\"Kind\": \"vm\", \"Node\": \"n2\", \"Phase\": \"running\", \"Spec\": "
       "{\"RestartPolicy\": \"no\"}}",
       false},
      /* a disk on the dead node's own storage: stays; on the shared storage: moves */
      {"{\"Kind\": \"vm\", \"Node\": \"n2\", \"Phase\": \"running\", \"Spec\": "
       "{\"RestartPolicy\": \"always\", \"DiskSize\": 1048576}}",
       false},
      {"{\"Kind\": \"vm\", \"Node\": \"n2\", \"Phase\": \"running\", \"DiskDir\": "
       "\"/s/disks/0123456789abcdef\", "
       "\"Spec\": {\"RestartPolicy\": \"always\", \"DiskSize\": \"1M\"}}",
       true},
      {"{\"Kind\": \"vm\", \"Node\": \"n2\", \"Phase\": \"running\", \"Spec\": "
       "{\"RestartPolicy\": \"always\", \"Disk\": \"/base.qcow2\"}}",
       false},
      /* only placed there (never made): placed anew, policy or not */
      {"{\"Kind\": \"vm\", \"Node\": \"n2\", \"Phase\": \"placed\", \"Spec\": {}}", true},
      /* made but not started, failed, pending, a placeholder, a record without a node */
      {"{\"Kind\": \"vm\", \"Node\": \"n2\", \"Phase\": \"created\", \"Spec\": "
       "{\"RestartPolicy\": \"always\"}}",
       false},
      {"{\"Kind\": \"vm\", \"Node\": \"n2\", \"Phase\": \"failed\", \"Spec\": "
       "{\"RestartPolicy\": \"always\"}}",
       false},
      {"{\"Kind\": \"placeholder\", \"Node\": \"n2\", \"Phase\": \"placed\"}", false},
      {"{\"Kind\": \"vm\", \"Phase\": \"running\", \"Spec\": {\"RestartPolicy\": \"always\"}}",
       false},
      {"{\"Kind\": \"vm\", \"Node\": 3, \"Phase\": \"running\"}", false},
      /* a live migration that sent the guest to a ready node: the target runs it, it stays */
      {"{\"Kind\": \"vm\", \"Node\": \"n2\", \"Phase\": \"running\", \"Spec\": "
       "{\"RestartPolicy\": \"always\"}, \"Migration\": {\"Phase\": \"sent\", \"From\": "
       "\"n2\", \"To\": \"n1\"}}",
       false},
      /* sent to a node that is down too, or not sent yet: it moves */
      {"{\"Kind\": \"vm\", \"Node\": \"n2\", \"Phase\": \"running\", \"Spec\": "
       "{\"RestartPolicy\": \"always\"}, \"Migration\": {\"Phase\": \"sent\", \"From\": "
       "\"n2\", \"To\": \"n4\"}}",
       true},
      {"{\"Kind\": \"vm\", \"Node\": \"n2\", \"Phase\": \"running\", \"Spec\": "
       "{\"RestartPolicy\": \"always\"}, \"Migration\": {\"Phase\": \"ready\", \"From\": "
       "\"n2\", \"To\": \"n1\", \"Expires\": 99999999999}}",
       true},
  };
  size_t wrong = 0;
  for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
    json_t *r = rec(cases[i].rec);
    if (vd_ha_failover_wanted(ready, r) != cases[i].moves) {
      fprintf(stderr, "# decided wrongly: %s\n", cases[i].rec);
      wrong++;
    }
    json_decref(r);
  }
  CHECK(wrong == 0);
  json_decref(ready);
}

TEST(ha_failover_record) {
  json_t *r = rec("{\"Kind\": \"vm\", \"Name\": \"a\", \"Node\": \"n2\", \"Phase\": \"running\", "
                  "\"Start\": false, \"Reason\": \"x\", \"Failover\": {\"Count\": 2}}");
  vd_ha_failover_prepare(r);
  CHECK(!json_object_get(r, "Node")); /* placement chooses among the live nodes */
  json_t *f = json_object_get(r, "Failover");
  CHECK_STREQ(str(f, "From"), "n2");
  CHECK(json_integer_value(json_object_get(f, "Count")) == 3);
  CHECK(str(f, "At") != NULL);
  CHECK(json_is_true(json_object_get(r, "Start"))); /* it was running: it starts there */
  vd_ha_failover_placed(r, "n3");
  CHECK_STREQ(str(r, "Node"), "n3");
  CHECK_STREQ(str(r, "Phase"), "placed");
  CHECK(!json_object_get(r, "Reason"));
  json_decref(r);
}

TEST(ha_failover_ends_an_unsent_migration) {
  json_t *r = rec("{\"Kind\": \"vm\", \"Name\": \"a\", \"Node\": \"n2\", \"Phase\": "
                  "\"running\", \"Migration\": {\"Id\": \"x\", \"Phase\": \"ready\", "
                  "\"From\": \"n2\", \"To\": \"n1\", \"Expires\": 99999999999}}");
  vd_ha_failover_prepare(r);
  json_t *mig = json_object_get(r, "Migration");
  CHECK_STREQ(str(mig, "Phase"), "failed");
  CHECK_CONTAINS(str(mig, "Reason"), "node n2 is down");
  CHECK(!vd_cluster_migration_in_progress(r));
  json_decref(r);
  /* a finished one is left as it was */
  r = rec("{\"Kind\": \"vm\", \"Name\": \"a\", \"Node\": \"n2\", \"Phase\": "
          "\"running\", \"Migration\": {\"Id\": \"x\", \"Phase\": \"done\"}}");
  vd_ha_failover_prepare(r);
  CHECK_STREQ(str(json_object_get(r, "Migration"), "Phase"), "done");
  json_decref(r);
}

TEST(ha_vm_extra_and_disk_dir) {
  vd_cluster cl = {.node_name = "n3", .shared_dir = "/shared"};
  vs_error *e = NULL;
  /* a new guest on a node with shared storage: its disk goes there, made anew */
  json_t *r = rec("{\"Name\": \"a\"}");
  json_t *x = vd_cluster_guest_extra(&cl, r, &e);
  CHECK(x != NULL);
  CHECK_STREQ(str(json_object_get(x, "Cluster"), "Node"), "n3");
  /* a directory of its own under disks/: a later guest of the same name gets another */
  CHECK(str(x, "DiskDir") && !strncmp(str(x, "DiskDir"), "/shared/disks/", 14) &&
        strlen(str(x, "DiskDir")) == 14 + 16);
  CHECK(vd_cluster_owns_disk_dir(&cl, str(x, "DiskDir")));
  json_t *x2 = vd_cluster_guest_extra(&cl, r, &e);
  CHECK(x2 != NULL && strcmp(str(x2, "DiskDir"), str(x, "DiskDir")) != 0);
  json_decref(x2);
  CHECK(!json_object_get(x, "DiskAdopt"));
  json_decref(x);
  json_decref(r);
  /* made before (failover): the disk there is taken */
  r = rec("{\"Name\": \"a\", \"DiskDir\": \"/shared/disks/0123456789abcdef\"}");
  x = vd_cluster_guest_extra(&cl, r, &e);
  CHECK(x != NULL && json_is_true(json_object_get(x, "DiskAdopt")));
  CHECK_STREQ(str(x, "DiskDir"), "/shared/disks/0123456789abcdef");
  json_decref(x);
  json_decref(r);
  /* a directory that is not this node's (or this node has none) is refused: it would be
   * removed with the guest */
  r = rec("{\"Name\": \"a\", \"DiskDir\": \"/\"}");
  CHECK(vd_cluster_guest_extra(&cl, r, &e) == NULL);
  CHECK_CONTAINS(e->msg, "its disk is in /, not in a directory of this node's "
                         "--cluster-shared-dir /shared/disks");
  vs_error_free(e);
  e = NULL;
  json_decref(r);
  r = rec("{\"Name\": \"a\", \"DiskDir\": \"/shared/disks/../../etc\"}");
  CHECK(vd_cluster_guest_extra(&cl, r, &e) == NULL);
  vs_error_free(e);
  e = NULL;
  json_decref(r);
  cl.shared_dir = NULL;
  r = rec("{\"Name\": \"a\", \"DiskDir\": \"/shared/disks/0123456789abcdef\"}");
  CHECK(vd_cluster_guest_extra(&cl, r, &e) == NULL);
  CHECK_CONTAINS(e->msg, "--cluster-shared-dir (none)");
  vs_error_free(e);
  e = NULL;
  json_decref(r);
  /* no shared storage, a new guest: nothing but the node */
  r = rec("{\"Name\": \"a\"}");
  x = vd_cluster_guest_extra(&cl, r, &e);
  CHECK(x != NULL && !json_object_get(x, "DiskDir"));
  json_decref(x);
  json_decref(r);
  /* what the guest's record keeps: the directory, when a disk was made there */
  json_t *next = json_object();
  vd_ha_note_made(next, r = rec("{\"DiskDir\": \"/shared/disks/0123456789abcdef\"}"));
  CHECK(!json_object_get(next, "DiskDir"));
  json_decref(r);
  vd_ha_note_made(next, r = rec("{\"DiskDir\": \"/shared/disks/0123456789abcdef\", \"DiskPath\": "
                                "\"/shared/disks/0123456789abcdef/disk.qcow2\"}"));
  CHECK_STREQ(str(next, "DiskDir"), "/shared/disks/0123456789abcdef");
  json_decref(r);
  json_decref(next);
}

int main(void) { return tap_run(); }
