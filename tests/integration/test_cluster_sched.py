"""The cluster's scheduler beyond placement itself (docs/cluster.md): pools of the cluster, whose
capacity is the sum of their nodes' and whose admission is cluster-wide, decided in the same etcd
transaction that places the guest; and the scheduler working from the watch's copy of the
records (a change another node made is seen before the guest created after it).

The cluster is tests/integration/cluster.py's: three network namespaces, a three-member etcd,
a vesseld in each declaring a fake capacity.
"""
import datetime
import json
import os
import shutil
import signal
import threading
import time

import pytest

import cluster
from cluster import guests, wait_for

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root"),
    pytest.mark.skipif(not os.path.exists(cluster.ETCD), reason="no etcd-server (scripts/setup)"),
]

GIB = 1 << 30
MIB = 1 << 20


@pytest.fixture(scope="module")
def cl(build_dir, guest_assets, tmp_path_factory):
    with cluster.running(build_dir, tmp_path_factory.mktemp("csched"), guest_assets, name="s",
                         capacity="cpus=2,memory=2G") as c:
        yield c


def local_vms(host):
    status, vms = host.api("GET", "/vessel/v1/vms")
    assert status == 200, vms
    return {v["Name"]: v for v in vms}


def pool(host, name):
    # inspect reads the node's copy of etcd: a pool made through another node a moment ago
    # is there once the watch brought it
    wait_for(f"pool {name} on {host.name}",
             lambda: host.api("GET", f"/vessel/v1/pools/{name}")[0] == 200, timeout=30)
    status, body = host.api("GET", f"/vessel/v1/pools/{name}")
    assert status == 200, body
    return body


def remove_all(c):
    h = c.hosts[0]
    for name in guests(h):
        h.vessel("vm", "rm", "-f", name)
    wait_for("every VM removed", lambda: not any(local_vms(x) for x in c.hosts), timeout=60)


def test_a_pool_of_the_cluster_admits_cluster_wide_without_double_booking(cl):
    """A pool on the nodes labelled pool=gold (n1 and n2: 4 CPUs between them). Six VMs of one
    CPU are created at once, three from n1 and three from n3: exactly four are admitted, all on
    n1 and n2, and the two others are refused with the pool's name and what it has left."""
    h1, h2, h3 = cl.hosts
    h2.vessel("node", "label", "n1", "pool=gold")
    h2.vessel("node", "label", "n2", "pool=gold")
    r = h3.vessel("pool", "create", "gold", "--cluster", "--node-selector", "pool=gold")
    assert r.stdout.strip() == "gold"
    p = pool(h1, "gold")
    assert p["Cluster"] is True and p["Cpus"] == 4 and p["Memory"] == 4 * GIB, p
    assert sorted(p["Nodes"]) == ["n1", "n2"] and p["Usage"]["Cpus"] == 0
    # a second pool of that name, from another node: refused
    status, body = h2.api("POST", "/vessel/v1/pools", {"Name": "gold", "Cluster": True})
    assert status == 409 and "already in use by a pool of the cluster" in body["message"]
    # a pool of the cluster has no capacity of its own
    status, body = h2.api("POST", "/vessel/v1/pools",
                          {"Name": "bad", "Cluster": True, "Cpus": 4})
    assert status == 400 and "sum of its nodes'" in body["message"], body

    results = {}

    def make(host, name):
        results[name] = host.vessel("vm", "create", name, "--cpus", "1", "--memory", "64M",
                                    "--pool", "gold", check=False)

    ts = [threading.Thread(target=make, args=(h, f"g{h.name}-{i}"))
          for i in range(3) for h in (h1, h3)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    ok = sorted(n for n, r in results.items() if r.returncode == 0)
    refused = {n: r for n, r in results.items() if r.returncode != 0}
    assert len(ok) == 4 and len(refused) == 2, {n: r.stderr for n, r in results.items()}
    for r in refused.values():
        assert "cannot place VM" in r.stderr, r.stderr
        assert "pool gold cannot admit 1.00 CPUs and 64 MiB: it has 0.00 CPUs" in r.stderr, \
            r.stderr
        assert "nodes n1, n2" in r.stderr, r.stderr
    g = guests(h2)
    assert sorted(g) == ok
    assert all(g[n]["Pool"] == "gold" and g[n]["Node"] in ("n1", "n2") for n in ok), g
    assert sum(g[n]["Cpus"] for n in ok) == 4
    p = pool(h3, "gold")
    assert p["Usage"]["Cpus"] == 4 and p["Available"]["Cpus"] == 0, p
    assert sorted(x["Name"] for x in p["Usage"]["Guests"]) == ok
    # the VMs exist on their nodes (in each node's default pool: admission is the cluster's)
    made = {n for h in (h1, h2) for n in local_vms(h)}
    assert made == set(ok) and not local_vms(h3)
    # the pool is listed with the node's own pools
    status, body = h3.api("GET", "/vessel/v1/pools")
    assert status == 200 and "gold" in [x["Name"] for x in body]
    # a pool holding guests is not removed; once they are gone it is
    r = h1.vessel("pool", "rm", "gold", check=False)
    assert r.returncode != 0 and "holds 4 guests" in r.stderr, r.stderr
    remove_all(cl)
    wait_for("the pool empty in n1's copy", lambda: pool(h1, "gold")["Usage"]["Cpus"] == 0)
    h1.vessel("pool", "rm", "gold")
    status, _ = h2.api("GET", "/vessel/v1/pools/gold")
    assert status in (200, 404)
    wait_for("gold gone from n2's copy",
             lambda: h2.api("GET", "/vessel/v1/pools/gold")[0] == 404)
    for n in ("n1", "n2"):
        h1.vessel("node", "label", n, "pool-")


def test_a_pool_with_overcommit_and_a_missing_pool(cl):
    """A pool over every node with a CPU overcommit of 2 admits twice its nodes' CPUs (here
    the nodes' own room, 6 CPUs, is the bound before the pool's 12); a guest naming a pool
    the cluster does not have is left to its node, which has no such pool either."""
    h1, h2, h3 = cl.hosts
    status, body = h1.api("POST", "/vessel/v1/pools",
                          {"Name": "all", "Cluster": True, "CpuOvercommit": 2.0})
    assert status == 201, body
    p = pool(h2, "all")
    assert p["Cpus"] == 6 and p["Available"]["Cpus"] == 12, p
    for i in range(6):
        h = cl.hosts[i % 3]
        h.vessel("vm", "create", f"o{i}", "--cpus", "1", "--memory", "64M", "--pool", "all")
    g = guests(h3)
    assert sorted(x["Node"] for x in g.values()) == ["n1", "n1", "n2", "n2", "n3", "n3"]
    # the nodes are full (overcommit 1 on each node): a seventh is refused by the nodes
    r = h2.vessel("vm", "create", "o7", "--cpus", "1", "--memory", "64M", "--pool", "all",
                  check=False)
    assert r.returncode != 0 and "no node can take 1.00 CPUs" in r.stderr, r.stderr
    remove_all(cl)
    h1.vessel("pool", "rm", "all")
    r = h2.vessel("vm", "create", "nopool", "--memory", "64M", "--pool", "nosuch", check=False)
    assert r.returncode != 0 and "cannot create VM nopool: on node" in r.stderr, r.stderr
    assert "nosuch" in r.stderr and "nopool" not in guests(h1), r.stderr


def test_the_scheduler_sees_a_cordon_made_just_before_a_create(cl):
    """The scheduler places from its copy of etcd's keys, kept by one watch of /vessel/: a
    cordon written through another node just before a create is in the copy before the guest
    is, so twenty cordon-then-create rounds never place on the cordoned node."""
    h1, h2, h3 = cl.hosts
    for i in range(20):
        target = cl.hosts[i % 3]
        other = cl.hosts[(i + 1) % 3]
        other.vessel("node", "cordon", target.name)
        r = h1.vessel("vm", "create", f"c{i}", "--cpus", "1", "--memory", "64M", check=False)
        node = r.stderr.strip().rsplit(" ", 1)[-1] if r.returncode == 0 else None
        assert node != target.name, (i, r.stderr)
        other.vessel("node", "uncordon", target.name)
        if r.returncode == 0:
            h2.vessel("vm", "rm", f"c{i}")
    remove_all(cl)


def test_one_by_one_creates_all_land_and_the_copy_follows_deletes(cl):
    """Thirty creates one after the other from n2 (not the point where the scheduler runs,
    unless it is the leader) fill the nodes to their capacity by the spread rule, and after a
    removal from another node the freed room is used again at once (the copy saw the delete)."""
    h1, h2, h3 = cl.hosts
    names = []
    for i in range(6):
        r = h2.vessel("vm", "create", f"s{i}", "--cpus", "1", "--memory", "64M")
        names.append(r.stderr.strip().rsplit(" ", 1)[-1])
    assert sorted(names) == ["n1", "n1", "n2", "n2", "n3", "n3"]
    for i in range(24):
        h3.vessel("vm", "rm", f"s{i}")
        r = h2.vessel("vm", "create", f"s{i + 6}", "--cpus", "1", "--memory", "64M")
        assert r.returncode == 0
    g = guests(h1)
    assert len(g) == 6 and sorted(x["Node"] for x in g.values()) == [
        "n1", "n1", "n2", "n2", "n3", "n3"]
    remove_all(cl)
    assert json.dumps(guests(h1)) == "{}"


def kill9_under_faketime(vd):
    """kill -9 of a vesseld that faketime runs: faketime forks it and waits, so the process the
    test started is faketime's, and killing it alone would leave that vesseld running."""
    pid = vd.proc.pid
    kids = open(f"/proc/{pid}/task/{pid}/children").read().split() if vd.alive() else []
    for kid in kids:
        os.kill(int(kid), signal.SIGKILL)
    vd.kill9()


@pytest.mark.skipif(not shutil.which("faketime"), reason="no faketime (scripts/setup)")
def test_clock_skew_between_nodes_changes_nothing(cl):
    """n2's clock three hours behind, n3's three hours ahead (libfaketime under each vesseld
    and what it starts): the cluster compares no clock across nodes — leases are timed by
    etcd's leader, fencing by each node's own monotonic clock, order by etcd's revisions — so
    every node stays ready past a lease's lifetime, nothing is fenced, and guests are placed
    on and made by the skewed nodes."""
    h1, h2, h3 = cl.hosts
    saved = {h.name: list(h.vd.prefix) for h in (h2, h3)}
    try:
        for h, skew in ((h2, "-3h"), (h3, "+3h")):
            h.vd.kill9()
            h.vd.prefix = [*saved[h.name], "faketime", "-m", "-f", skew]
            h.vd.start()

        def statuses():
            status, body = h1.api("GET", "/vessel/v1/nodes")
            assert status == 200, body
            return {n["Name"]: n for n in body}

        wait_for("all three ready", lambda: all(
            n["Status"] == "ready" for n in statuses().values()) and len(statuses()) == 3,
            timeout=60)
        now = datetime.datetime.now(datetime.timezone.utc)
        started = {n: datetime.datetime.fromisoformat(v["Started"].replace("Z", "+00:00"))
                   for n, v in statuses().items()}
        # the skew is real: each node stamps its own start with its own clock
        assert started["n3"] - now > datetime.timedelta(hours=2), started
        assert now - started["n2"] > datetime.timedelta(hours=2), started
        for i, target in enumerate(("n2", "n3", "n2", "n3")):
            src = cl.hosts[(i + 1) % 3]
            r = src.vessel("vm", "create", f"skew{i}", "--cpus", "1", "--memory", "64M",
                           "--node", target)
            assert f"on node {target}" in r.stderr
        assert sorted(local_vms(h2)) == ["skew0", "skew2"]
        assert sorted(local_vms(h3)) == ["skew1", "skew3"]
        # longer than a lease (10 s) and the fencing delay (7 s): nobody goes down or fences
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            assert all(n["Status"] == "ready" for n in statuses().values()), statuses()
            time.sleep(0.5)
        for h in cl.hosts:
            assert "fencing" not in h.vd.log_text(), h.vd.log_text()[-2000:]
        remove_all(cl)
    finally:
        for h in (h2, h3):
            kill9_under_faketime(h.vd)
            h.vd.prefix = saved[h.name]
            h.vd.start()


def test_a_vm_image_its_node_cannot_get_is_refused_clearly(cl):
    """A VM of the cluster names a VM image: the node it is placed on pulls it from its
    registry when its own store lacks it (vd_vm_image_prepare). When it cannot, the create
    says which node looked for which image and why, and nothing of the guest stays."""
    h1 = cl.hosts[0]
    ref = "10.77.0.1:5999/vm/none:1"  # nothing listens there
    r = h1.vessel("vm", "create", "img", "--node", "n2", "--image", ref, check=False)
    assert r.returncode != 0
    assert (f"cannot create VM img: on node n2: VM image {ref}: not in this host's image "
            "store, and pulling it from its registry failed") in r.stderr, r.stderr
    assert "img" not in guests(h1) and "img" not in local_vms(cl.hosts[1])
