"""vesseld nodes joined into a cluster on etcd (docs/cluster.md), on this one machine: three
"hosts" as network namespaces joined by a bridge of the test's own (tests/integration/cluster.py),
a three-member etcd cluster (one member per host) and a vesseld in each, all removed afterwards.

Shown: every node registers its capacity and labels under a lease and `vessel node ls` lists the
three from any node; cordon, drain, uncordon, label and rm from one node are seen from the
others; a node's record goes when its lease expires and comes back when it restarts; labels
written by two nodes at once are all kept (compare-and-swap on etcd's revisions decides the
order, nothing is lost); a node with a wrong cluster token is refused with a message that says
so; a vesseld started while etcd is down waits, says so in its log, and joins once etcd is up.
"""
import json
import os
import subprocess
import threading

import pytest

import cluster
from cluster import Cluster, wait_for

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root"),
    pytest.mark.skipif(not os.path.exists(cluster.ETCD), reason="no etcd-server (scripts/setup)"),
]


@pytest.fixture(scope="module")
def cl(build_dir, tmp_path_factory):
    c = Cluster(build_dir, tmp_path_factory.mktemp("cluster"))
    try:
        c.start_etcd()
        c.start_vesselds(labels=["zone=a"])
        yield c
    finally:
        c.cleanup()
    left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert cluster.PREFIX not in left, f"namespaces left behind: {left}"


def nodes(host):
    status, body = host.api("GET", "/vessel/v1/nodes")
    assert status == 200, body
    return {n["Name"]: n for n in body}


def test_three_nodes_register_and_are_listed_from_any_node(cl):
    for h in cl.hosts:
        ns = wait_for("three nodes", lambda h=h: len(nodes(h)) == 3 and nodes(h))
        assert sorted(ns) == ["n1", "n2", "n3"]
        for name, n in ns.items():
            i = int(name[1:])
            assert n["Status"] == "ready" and n["Address"] == f"{cluster.SUBNET}.{i}"
            assert n["Cpus"] == os.cpu_count() and n["Memory"] > 0 and n["Disk"] > 0
            assert n["Labels"] == {"zone": "a"} and n["Unschedulable"] is False
    out = cl.hosts[2].vessel("node", "ls").stdout.splitlines()
    assert out[0].split()[:4] == ["NAME", "ADDRESS", "STATUS", "SCHEDULING"]
    assert [l.split()[:4] for l in out[1:]] == [
        [f"n{i}", f"{cluster.SUBNET}.{i}", "ready", "schedulable"] for i in (1, 2, 3)]
    assert cl.hosts[0].vessel("node", "ls", "-q").stdout.split() == ["n1", "n2", "n3"]
    [n2] = json.loads(cl.hosts[0].vessel("node", "inspect", "n2").stdout)
    assert n2["Name"] == "n2" and n2["Started"]


def test_cordon_drain_uncordon_label_from_any_node(cl):
    h1, h2, h3 = cl.hosts
    h1.vessel("node", "cordon", "n2")
    assert nodes(h3)["n2"]["Unschedulable"] is True
    assert "cordoned" in h2.vessel("node", "ls").stdout.splitlines()[2]
    h3.vessel("node", "drain", "n2")
    n2 = nodes(h1)["n2"]
    assert n2["Draining"] is True and n2["Unschedulable"] is True
    h2.vessel("node", "uncordon", "n2")
    n2 = nodes(h1)["n2"]
    assert n2["Draining"] is False and n2["Unschedulable"] is False
    h1.vessel("node", "label", "n3", "disk=ssd", "rack=r7")
    h2.vessel("node", "label", "n3", "rack-")
    assert nodes(h1)["n3"]["Labels"] == {"zone": "a", "disk": "ssd"}
    r = h1.vessel("node", "cordon", "nope", check=False)
    assert r.returncode != 0 and "No such node: nope" in r.stderr
    r = h1.vessel("node", "label", "n3", "bad key=1", check=False)
    assert r.returncode != 0 and "label bad key" in r.stderr
    r = h1.vessel("node", "rm", "n3", check=False)
    assert r.returncode != 0 and "node n3 is up" in r.stderr


def test_conflicting_writes_are_decided_by_revision(cl):
    """Two nodes add ten labels each to one node at the same time: every write reads the
    spec, changes it and writes it only if its revision is unchanged, so all twenty land."""
    h1, h2, _ = cl.hosts

    def add(host, tag):
        for i in range(10):
            host.vessel("node", "label", "n1", f"{tag}{i}=v")

    ts = [threading.Thread(target=add, args=(h, t)) for h, t in ((h1, "a"), (h2, "b"))]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    labels = nodes(h1)["n1"]["Labels"]
    assert sorted(k for k in labels if k != "zone") == sorted(
        [f"a{i}" for i in range(10)] + [f"b{i}" for i in range(10)])
    retried = h1.vd.log_text().count("spec changed under us") + \
        h2.vd.log_text().count("spec changed under us")
    print(f"conflicting writes retried: {retried}")


def test_lease_expiry_marks_a_node_down_and_a_restart_brings_it_back(cl):
    h1, _, h3 = cl.hosts
    h3.vd.kill9()
    wait_for("n3 down", lambda: nodes(h1)["n3"]["Status"] == "down", timeout=30, step=0.5)
    # its spec (the label set by an operator) is kept while it is down
    assert nodes(h1)["n3"]["Labels"]["disk"] == "ssd"
    h3.vd.start()
    assert nodes(h1)["n3"]["Status"] == "ready"
    assert "node n3 joined" in h3.vd.log_text()


def test_wrong_token_is_refused(cl, tmp_path):
    h = cl.hosts[1]
    bad = cluster.Host(cl, 2)
    bad.root = tmp_path
    r = subprocess.run(["nsenter", f"--net={h.ns}", str(cl.build / "vesseld"),
                        "--data-root", str(tmp_path / "d"), "--exec-root", str(tmp_path / "x"),
                        "-H", f"unix://{tmp_path}/s.sock", "--bridge", "none",
                        *bad.vesseld_args(token="wrong")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert "cluster token refused" in r.stderr and "another --cluster-token" in r.stderr
    assert nodes(cl.hosts[0])["n2"]["Status"] == "ready"


def test_not_in_a_cluster_is_503(build_dir, tmp_path):
    import test_daemon
    vd = test_daemon.Vesseld(build_dir, tmp_path)
    try:
        r = subprocess.run([str(build_dir / "vessel"), "-H", vd.host, "node", "ls"],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode != 0 and "not in a cluster" in r.stderr
    finally:
        vd.cleanup()


def test_etcd_down_at_start_waits_and_joins(build_dir, tmp_path_factory):
    """A single-member etcd (its own small cluster), started only after vesseld."""
    c = Cluster(build_dir, tmp_path_factory.mktemp("cluster-late"), n=1,
                name="late")
    try:
        h = c.hosts[0]
        vd = h.start_vesseld(wait=False)
        wait_for("the waiting message",
                 lambda: "cluster: waiting for etcd" in vd.log_text(), timeout=30)
        assert h.client_url in vd.log_text() and vd.alive()
        h.start_etcd()
        vd.wait_ready(tries=3000)
        assert nodes(h)["n1"]["Status"] == "ready"
    finally:
        c.cleanup()
