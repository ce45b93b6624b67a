/* src/cluster: the parsers of etcd's JSON gateway replies (as etcd 3.4 sends them, and hostile
 * variants), base64, and placement. */
#include "cluster/internal.h"
#include "tap.h"

#include <string.h>

static int range(const char *body, vc_range *r, char **msg) {
  vs_error *err = NULL;
  int rc = vc_parse_range(body, strlen(body), r, &err);
  *msg = err ? vs_strdup(err->msg) : NULL;
  vs_error_free(err);
  return rc;
}

TEST(base64_round_trip_and_strictness) {
  const char *samples[] = {"", "a", "ab", "abc", "/vessel/nodes/n1", "\xff\x00\x01"};
  size_t lens[] = {0, 1, 2, 3, 16, 3};
  for (size_t i = 0; i < ARRAY_SIZE(samples); i++) {
    char *enc = vc_base64_encode(samples[i], lens[i]);
    char *dec = NULL;
    size_t n = 0;
    CHECK_EQ(vc_base64_decode(enc, strlen(enc), &dec, &n), 0);
    CHECK_EQ(n, lens[i]);
    CHECK(memcmp(dec, samples[i], n) == 0);
    free(enc);
    free(dec);
  }
  char *dec = NULL;
  size_t n;
  CHECK_EQ(vc_base64_decode("L3Zlc3NlbC9ub2Rlcy9uMQ==", 24, &dec, &n), 0);
  CHECK_STREQ(dec, "/vessel/nodes/n1");
  free(dec);
  CHECK_EQ(vc_base64_decode("a", 1, &dec, &n), -1);    /* one char: not a byte */
  CHECK_EQ(vc_base64_decode("ab!c", 4, &dec, &n), -1); /* not the alphabet */
  CHECK_EQ(vc_base64_decode("ab c", 4, &dec, &n), -1); /* no whitespace */
}

TEST(range_reply_of_etcd_3_4) {
  /* what the gateway of etcd 3.4.23 answered (int64 as strings, zero values left out) */
  const char *body =
      "{\"header\":{\"cluster_id\":\"14841639068965178418\",\"member_id\":"
      "\"10276657743932975437\",\"revision\":\"42\",\"raft_term\":\"3\"},\"kvs\":[{\"key\":"
      "\"L3Zlc3NlbC9ub2Rlcy9uMQ==\",\"create_revision\":\"5\",\"mod_revision\":\"41\","
      "\"version\":\"7\",\"value\":\"eyJOYW1lIjoibjEifQ==\",\"lease\":\"7587882934128427011\"},"
      "{\"key\":\"L3Zlc3NlbC9ub2Rlcy9uMg==\",\"create_revision\":\"6\",\"mod_revision\":\"6\","
      "\"version\":\"1\"}],\"count\":\"2\"}";
  vc_range r;
  char *msg;
  CHECK_EQ(range(body, &r, &msg), 0);
  CHECK_EQ(r.n, 2);
  CHECK_EQ(r.revision, 42);
  CHECK_EQ(r.count, 2);
  CHECK(!r.more);
  CHECK_STREQ(r.kvs[0].key, "/vessel/nodes/n1");
  CHECK_STREQ(r.kvs[0].value, "{\"Name\":\"n1\"}");
  CHECK_EQ(r.kvs[0].mod_revision, 41);
  CHECK_EQ(r.kvs[0].lease, 7587882934128427011LL);
  CHECK_STREQ(r.kvs[1].value, "");
  CHECK_EQ(r.kvs[1].value_len, 0);
  vc_range_clear(&r);
  /* no keys at all: no kvs, no count */
  CHECK_EQ(range("{\"header\":{\"revision\":\"3\"}}", &r, &msg), 0);
  CHECK_EQ(r.n, 0);
  CHECK_EQ(r.revision, 3);
  vc_range_clear(&r);
}

TEST(range_reply_hostile) {
  const char *bad[][2] = {
      {"", "etcd range reply: not JSON"},
      {"CommonName of client sending a request against gateway will be ignored\n",
       "not JSON: \"CommonName of client sending"},
      {"[]", "expected a JSON object"},
      {"{\"kvs\":{}}", "kvs: expected an array"},
      {"{\"kvs\":[{\"key\":\"!!\"}]}", "kvs[0]: key: not base64"},
      {"{\"kvs\":[{\"key\":\"YQBi\"}]}", "key: holds a NUL byte"},
      {"{\"kvs\":[{\"key\":\"YQ==\",\"mod_revision\":\"12x\"}]}", "not a decimal integer"},
      {"{\"kvs\":[{\"key\":\"YQ==\",\"mod_revision\":\"-\"}]}", "not a decimal integer"},
      {"{\"kvs\":[{\"key\":\"YQ==\",\"mod_revision\":\"99999999999999999999\"}]}", "out of range"},
      {"{\"kvs\":[{\"key\":\"YQ==\",\"version\":true}]}", "version: expected an integer"},
      {"{\"header\":{\"revision\":[]}}", "header: revision"},
      {"{\"kvs\":[7]}", "kvs[0]: expected an object"},
      {"{\"error\":\"etcdserver: user name is empty\",\"code\":3,\"message\":\"etcdserver: user "
       "name is empty\"}",
       "etcd says: etcdserver: user name is empty"},
  };
  for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
    vc_range r;
    char *msg = NULL;
    CHECK_EQ(range(bad[i][0], &r, &msg), -1);
    CHECK(msg != NULL);
    if (msg)
      CHECK_CONTAINS(msg, bad[i][1]);
    free(msg);
    CHECK_EQ(r.n, 0);
  }
}

TEST(txn_put_delete_lease_token) {
  vs_error *err = NULL;
  bool ok = true;
  int64_t rev = 0, id = 0, ttl = 0, n = 0;
  vc_range cur;
  const char *failed =
      "{\"header\":{\"revision\":\"9\"},\"responses\":[{\"response_range\":{\"header\":"
      "{\"revision\":\"9\"},\"kvs\":[{\"key\":\"YQ==\",\"value\":\"eA==\",\"mod_revision\":\"8\","
      "\"create_revision\":\"2\",\"version\":\"3\"}],\"count\":\"1\"}}]}";
  CHECK_EQ(vc_parse_txn(failed, strlen(failed), &ok, &rev, &cur, &err), 0);
  CHECK(!ok);
  CHECK_EQ(rev, 9);
  CHECK_EQ(cur.n, 1);
  CHECK_STREQ(cur.kvs[0].value, "x");
  CHECK_EQ(cur.kvs[0].mod_revision, 8);
  vc_range_clear(&cur);
  const char *won = "{\"header\":{\"revision\":\"10\"},\"succeeded\":true,\"responses\":"
                    "[{\"response_put\":{\"header\":{\"revision\":\"10\"}}}]}";
  CHECK_EQ(vc_parse_txn(won, strlen(won), &ok, &rev, &cur, &err), 0);
  CHECK(ok);
  CHECK_EQ(cur.n, 0);
  CHECK_EQ(vc_parse_txn("{\"succeeded\":\"yes\"}", 19, &ok, &rev, &cur, &err), -1);
  CHECK_CONTAINS(err->msg, "succeeded: expected true or false");
  vs_error_free(err);
  err = NULL;
  CHECK_EQ(vc_parse_put("{\"header\":{\"revision\":\"11\"}}", 28, &rev, &err), 0);
  CHECK_EQ(rev, 11);
  CHECK_EQ(
      vc_parse_delete("{\"header\":{\"revision\":\"12\"},\"deleted\":\"2\"}", 42, &rev, &n, &err),
      0);
  CHECK_EQ(n, 2);
  CHECK_EQ(vc_parse_delete("{\"deleted\":\"-1\"}", 16, &rev, &n, &err), -1);
  vs_error_free(err);
  err = NULL;
  const char *grant = "{\"header\":{\"revision\":\"12\"},\"ID\":\"7587882934128427011\",\"TTL\":"
                      "\"10\"}";
  CHECK_EQ(vc_parse_lease(grant, strlen(grant), &id, &ttl, &err), 0);
  CHECK_EQ(id, 7587882934128427011LL);
  CHECK_EQ(ttl, 10);
  const char *kept = "{\"result\":{\"header\":{},\"ID\":\"5\",\"TTL\":\"9\"}}";
  CHECK_EQ(vc_parse_lease(kept, strlen(kept), &id, &ttl, &err), 0);
  CHECK_EQ(ttl, 9);
  const char *gone = "{\"result\":{\"header\":{},\"ID\":\"5\"}}"; /* expired: no TTL */
  CHECK_EQ(vc_parse_lease(gone, strlen(gone), &id, &ttl, &err), 0);
  CHECK_EQ(ttl, 0);
  char *tok = NULL;
  CHECK_EQ(vc_parse_token("{\"token\":\"abc.123\"}", 19, &tok, &err), 0);
  CHECK_STREQ(tok, "abc.123");
  free(tok);
  CHECK_EQ(vc_parse_token("{\"token\":\"a\\r\\nX: y\"}", 21, &tok, &err), -1);
  CHECK_CONTAINS(err->msg, "not a header value");
  vs_error_free(err);
}

TEST(watch_messages) {
  vs_error *err = NULL;
  vc_watch_msg m;
  const char *created = "{\"result\":{\"header\":{\"revision\":\"20\"},\"created\":true}}";
  CHECK_EQ(vc_parse_watch(created, strlen(created), &m, &err), 0);
  CHECK(m.created);
  CHECK_EQ(m.n, 0);
  vc_watch_msg_clear(&m);
  const char *events = "{\"result\":{\"header\":{\"revision\":\"22\"},\"events\":[{\"kv\":{\"key\":"
                       "\"YQ==\",\"value\":\"MQ==\",\"mod_revision\":\"21\"}},{\"type\":\"DELETE\","
                       "\"kv\":{\"key\":\"Yg==\",\"mod_revision\":\"22\"}}]}}";
  CHECK_EQ(vc_parse_watch(events, strlen(events), &m, &err), 0);
  CHECK_EQ(m.n, 2);
  CHECK_EQ(m.events[0].type, VC_EVENT_PUT);
  CHECK_STREQ(m.events[0].kv.value, "1");
  CHECK_EQ(m.events[1].type, VC_EVENT_DELETE);
  CHECK_STREQ(m.events[1].kv.key, "b");
  vc_watch_msg_clear(&m);
  const char *bad = "{\"result\":{\"events\":[{\"type\":\"MOVE\",\"kv\":{}}]}}";
  CHECK_EQ(vc_parse_watch(bad, strlen(bad), &m, &err), -1);
  CHECK_CONTAINS(err->msg, "events[0]: type");
  vs_error_free(err);
  err = NULL;
  /* a refusal after the cancel reason was taken leaves nothing allocated (ASan's leak check) */
  const char *not_array = "{\"result\":{\"canceled\":true,\"cancel_reason\":\"x\",\"events\":7}}";
  CHECK_EQ(vc_parse_watch(not_array, strlen(not_array), &m, &err), -1);
  CHECK_CONTAINS(err->msg, "events: expected an array");
  CHECK(m.cancel_reason == NULL);
  vs_error_free(err);
}

static json_t *node(const char *name, int cpus, int mem_mib) {
  return json_pack("{s:s, s:s, s:b, s:i, s:I, s:f, s:f, s:{}}", "Name", name, "Status", "ready",
                   "Unschedulable", 0, "Cpus", cpus, "Memory", (json_int_t)mem_mib << 20,
                   "CpuOvercommit", 1.0, "MemoryOvercommit", 1.0, "Labels");
}

/* Place req; on success add it to guests on its node. Returns the node or the reason. */
static char *place(json_t *nodes, json_t *guests, json_t *req, bool *placed) {
  char *n = NULL, *why = NULL;
  vs_error *err = NULL;
  CHECK_EQ(vc_place(nodes, guests, req, &n, &why, &err), 0);
  vs_error_free(err);
  *placed = n != NULL;
  if (n) {
    json_t *g = json_deep_copy(req);
    json_object_set_new(g, "Node", json_string(n));
    json_array_append_new(guests, g);
  }
  json_decref(req);
  return n ? n : why;
}

TEST(placement_spreads_and_refuses_with_reasons) {
  json_t *nodes =
      json_pack("[o, o, o]", node("n1", 2, 1024), node("n2", 2, 1024), node("n3", 2, 1024));
  json_t *guests = json_array();
  bool ok;
  const char *want[] = {"n1", "n2", "n3", "n1", "n2", "n3"};
  for (int i = 0; i < 6; i++) {
    char name[8];
    snprintf(name, sizeof(name), "v%d", i);
    char *n = place(
        nodes, guests,
        json_pack("{s:s, s:i, s:I}", "Name", name, "Cpus", 1, "Memory", (json_int_t)512 << 20),
        &ok);
    CHECK(ok);
    CHECK_STREQ(n, want[i]);
    free(n);
  }
  char *why = place(
      nodes, guests,
      json_pack("{s:s, s:i, s:I}", "Name", "v6", "Cpus", 1, "Memory", (json_int_t)512 << 20), &ok);
  CHECK(!ok);
  CHECK_CONTAINS(why, "no node can take 1.00 CPUs and 512 MiB");
  CHECK_CONTAINS(why, "n1: 0.00 CPUs and 0 MiB free of 2.00 and 1024 MiB");
  CHECK_CONTAINS(why, "n3: ");
  free(why);
  json_decref(guests);
  json_decref(nodes);
}

TEST(placement_anti_affinity_pin_cordon_selector_overcommit) {
  json_t *nodes =
      json_pack("[o, o, o]", node("n1", 4, 4096), node("n2", 4, 4096), node("n3", 4, 4096));
  json_object_set_new(json_array_get(nodes, 2), "Labels", json_pack("{s:s}", "disk", "ssd"));
  json_t *guests = json_array();
  bool ok;
  /* three replicas anti-affine to each other land on three nodes; a fourth is refused */
  for (int i = 0; i < 4; i++) {
    char name[8];
    snprintf(name, sizeof(name), "db%d", i);
    char *n = place(nodes, guests,
                    json_pack("{s:s, s:i, s:{s:s}, s:{s:s}}", "Name", name, "Cpus", 1, "Labels",
                              "app", "db", "AntiAffinity", "app", "db"),
                    &ok);
    CHECK(ok == (i < 3));
    if (i == 3) {
      CHECK_CONTAINS(n, "n1: anti-affinity: it hosts db0 (app=db)");
      CHECK_CONTAINS(n, "n2: anti-affinity: it hosts db1 (app=db)");
    }
    free(n);
  }
  /* a selector, a pin, a cordoned node */
  char *n = place(
      nodes, guests,
      json_pack("{s:s, s:i, s:{s:s}}", "Name", "s", "Cpus", 1, "NodeSelector", "disk", "ssd"), &ok);
  CHECK(ok);
  CHECK_STREQ(n, "n3");
  free(n);
  n = place(nodes, guests, json_pack("{s:s, s:i, s:s}", "Name", "p", "Cpus", 1, "Node", "n1"), &ok);
  CHECK(ok);
  CHECK_STREQ(n, "n1");
  free(n);
  json_object_set_new(json_array_get(nodes, 1), "Unschedulable", json_true());
  n = place(nodes, guests, json_pack("{s:s, s:i, s:s}", "Name", "q", "Cpus", 1, "Node", "n2"), &ok);
  CHECK(!ok);
  CHECK_CONTAINS(n, "n2: cordoned");
  free(n);
  n = place(nodes, guests, json_pack("{s:s, s:i, s:s}", "Name", "q", "Cpus", 1, "Node", "n9"), &ok);
  CHECK(!ok);
  CHECK_STREQ(n, "no node n9 in the cluster");
  free(n);
  /* overcommit: n1 has 4 CPUs and 2 guests of 1; 3 more fit only with a ratio of 1.25 */
  n = place(nodes, guests, json_pack("{s:s, s:i, s:s}", "Name", "o", "Cpus", 3, "Node", "n1"), &ok);
  CHECK(!ok);
  free(n);
  json_object_set_new(json_array_get(nodes, 0), "CpuOvercommit", json_real(1.25));
  n = place(nodes, guests, json_pack("{s:s, s:i, s:s}", "Name", "o", "Cpus", 3, "Node", "n1"), &ok);
  CHECK(ok);
  free(n);
  /* wrong shapes from etcd are errors, not crashes */
  vs_error *err = NULL;
  char *a = NULL, *b = NULL;
  json_t *req = json_pack("{s:s}", "Cpus", "two");
  CHECK_EQ(vc_place(nodes, guests, req, &a, &b, &err), -1);
  CHECK_CONTAINS(err->msg, "Cpus: expected a number");
  vs_error_free(err);
  json_decref(req);
  json_decref(guests);
  json_decref(nodes);
}

/* Figures beyond any integer (a hostile or corrupt record in etcd) refuse with a reason; the
 * fuzzer found the message's integer casts of them undefined. */
TEST(placement_of_figures_beyond_any_integer) {
  json_t *nodes = json_pack("[o]", node("n1", 2, 1024));
  json_object_set_new(json_array_get(nodes, 0), "Memory", json_real(1e300));
  json_t *guests =
      json_pack("[{s:s, s:s, s:f, s:f}]", "Name", "g", "Node", "n1", "Memory", 1e300, "Cpus", 1.0);
  bool ok;
  char *why = place(nodes, guests,
                    json_pack("{s:s, s:f, s:f}", "Name", "v", "Cpus", 1.0, "Memory", 1e30), &ok);
  CHECK(!ok);
  CHECK_CONTAINS(why, "no node can take 1.00 CPUs and ");
  CHECK_CONTAINS(why, "n1: 1.00 CPUs and 0 MiB free of 2.00 and ");
  free(why);
  json_decref(guests);
  json_decref(nodes);
}

TEST(placement_prefers_a_node_with_the_image_below_spread) {
  json_t *nodes =
      json_pack("[o, o, o]", node("n1", 4, 4096), node("n2", 4, 4096), node("n3", 4, 4096));
  json_t *guests = json_array();
  bool ok;
  /* equal nodes: the one holding the image wins over the name order */
  char *n = place(nodes, guests,
                  json_pack("{s:s, s:i, s:I, s:[s]}", "Name", "a", "Cpus", 1, "Memory",
                            (json_int_t)64 << 20, "ImageNodes", "n2"),
                  &ok);
  CHECK(ok);
  CHECK_STREQ(n, "n2");
  free(n);
  /* n2 is now 25 points fuller than the others: spread wins, the image does not pile them up */
  n = place(nodes, guests,
            json_pack("{s:s, s:i, s:I, s:[s]}", "Name", "b", "Cpus", 1, "Memory",
                      (json_int_t)64 << 20, "ImageNodes", "n2"),
            &ok);
  CHECK(ok);
  CHECK_STREQ(n, "n1");
  free(n);
  /* a node filtered out (cordoned) never wins by its image */
  json_object_set_new(json_array_get(nodes, 2), "Unschedulable", json_true());
  n = place(nodes, guests,
            json_pack("{s:s, s:i, s:I, s:[s]}", "Name", "c", "Cpus", 1, "Memory",
                      (json_int_t)64 << 20, "ImageNodes", "n3"),
            &ok);
  CHECK(ok);
  CHECK(strcmp(n, "n3") != 0);
  free(n);
  /* replicas apart comes first: a replica's node loses even with the image */
  json_object_set_new(json_array_get(nodes, 2), "Unschedulable", json_false());
  json_t *g2 = json_array();
  n = place(nodes, g2,
            json_pack("{s:s, s:i, s:{s:s}, s:[s]}", "Name", "r0", "Cpus", 1, "Labels", "app", "w",
                      "ImageNodes", "n1"),
            &ok);
  CHECK_STREQ(n, "n1");
  free(n);
  n = place(nodes, g2,
            json_pack("{s:s, s:i, s:{s:s}, s:[s]}", "Name", "r1", "Cpus", 1, "Labels", "app", "w",
                      "ImageNodes", "n1"),
            &ok);
  CHECK_STREQ(n, "n2");
  free(n);
  /* a wrong shape from etcd is an error */
  vs_error *err = NULL;
  char *a = NULL, *b = NULL;
  json_t *req = json_pack("{s:s, s:[i]}", "Name", "x", "ImageNodes", 3);
  CHECK_EQ(vc_place(nodes, guests, req, &a, &b, &err), -1);
  CHECK_CONTAINS(err->msg, "ImageNodes[0]");
  vs_error_free(err);
  json_decref(req);
  json_decref(g2);
  json_decref(guests);
  json_decref(nodes);
}

int main(void) { return tap_run(); }
