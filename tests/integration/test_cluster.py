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
import hashlib
import json
import os
import subprocess
import sys
import threading
import time

import pytest

import cluster
from cluster import Cluster, api, guests, wait_for

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root"),
    pytest.mark.skipif(not os.path.exists(cluster.ETCD), reason="no etcd-server (scripts/setup)"),
]


GIB = 1 << 30
MIB = 1 << 20
cluster_ttl_s = 10  # a node's lease (docs/cluster.md)


@pytest.fixture(scope="module")
def cl(build_dir, guest_assets, tmp_path_factory):
    # fake capacity: every node declares 2 CPUs and 1 GiB, whatever this machine has
    with cluster.running(build_dir, tmp_path_factory.mktemp("cluster"), guest_assets,
                         labels=["zone=a"], capacity="cpus=2,memory=1G") as c:
        yield c


def nodes(host):
    status, body = api(host, "GET", "/vessel/v1/nodes")
    assert status == 200, body
    return {n["Name"]: n for n in body}


def test_three_nodes_register_and_are_listed_from_any_node(cl):
    for h in cl.hosts:
        ns = wait_for("three nodes", lambda h=h: len(nodes(h)) == 3 and nodes(h))
        assert sorted(ns) == ["n1", "n2", "n3"]
        for name, n in ns.items():
            i = int(name[1:])
            assert n["Status"] == "ready" and n["Address"] == f"{cluster.SUBNET}.{i}"
            assert n["Cpus"] == 2 and n["Memory"] == GIB and n["Disk"] > 0
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
    # the API's answers, each checked against the OpenAPI description
    assert api(h2, "GET", "/vessel/v1/nodes/n3")[1]["Labels"]["disk"] == "ssd"
    assert api(h2, "POST", "/vessel/v1/nodes/n3/cordon")[1]["Unschedulable"] is True
    assert api(h2, "POST", "/vessel/v1/nodes/n3/uncordon")[1]["Unschedulable"] is False
    status, n3 = api(h2, "POST", "/vessel/v1/nodes/n3/labels", {"Set": {"x": "1"},
                                                                "Remove": ["x"]})
    assert status == 200 and "x" not in n3["Labels"]
    assert api(h2, "POST", "/vessel/v1/nodes/n3/labels", {"Bad": 1})[0] == 400
    assert api(h2, "GET", "/vessel/v1/nodes/nope")[0] == 404
    assert api(h2, "DELETE", "/vessel/v1/nodes/n3")[0] == 409


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


def local_vms(host):
    status, vms = host.api("GET", "/vessel/v1/vms")
    assert status == 200, vms
    return {v["Name"]: v for v in vms}


def create(host, name, *opts, check=True):
    return host.vessel("vm", "create", name, "--cpus", "1", "--memory", "512M", *opts,
                       check=check)


def test_placement_spreads_holds_anti_affinity_and_refuses_with_the_reason(cl):
    """Six VMs of 1 CPU and 512 MiB fill three nodes of 2 CPUs and 1 GiB exactly: the
    scheduler spreads them (least allocated first, then by name), two groups of three are each
    anti-affine within the group, and what fits nowhere is refused with each node's reason."""
    h1, h2, h3 = cl.hosts
    order = []
    for i, host in enumerate((h1, h2, h3)):
        r = create(host, f"web{i + 1}", "--label", "app=web", "--anti-affinity", "app=web")
        order.append(r.stderr.strip().rsplit(" ", 1)[-1])
        assert len(r.stdout.strip()) == 64, r.stdout
    assert order == ["n1", "n2", "n3"]
    # a fourth web VM would share a node with another: refused, each node named with its reason
    r = create(h2, "web4", "--label", "app=web", "--anti-affinity", "app=web", check=False)
    assert r.returncode != 0
    for i in (1, 2, 3):
        assert f"n{i}: anti-affinity: it hosts web{i} (app=web)" in r.stderr, r.stderr
    for i in range(3):
        r = create(cl.hosts[2 - i], f"db{i + 1}", "--label", "app=db", "--anti-affinity",
                   "app=db")
        order.append(r.stderr.strip().rsplit(" ", 1)[-1])
    assert order == ["n1", "n2", "n3", "n1", "n2", "n3"]
    # each node made its two VMs itself (not started: placement alone)
    for i, host in enumerate(cl.hosts):
        vms = local_vms(host)
        assert sorted(vms) == sorted([f"web{i + 1}", f"db{i + 1}"])
        assert all(v["Status"] == "created" and v["Cpus"] == 1 for v in vms.values())
    ns = nodes(h1)
    for i in (1, 2, 3):
        assert sorted(ns[f"n{i}"]["Guests"]) == sorted([f"web{i}", f"db{i}"])
        assert ns[f"n{i}"]["Allocated"] == {"Cpus": 2.0, "Memory": GIB}
    # the whole cluster's guests from any node
    status, guests = api(h2, "GET", "/vessel/v1/guests")
    assert status == 200
    assert {g["Name"]: (g["Node"], g["Phase"]) for g in guests} == {
        f"{k}{i}": (f"n{i}", "created") for k in ("web", "db") for i in (1, 2, 3)}
    table = [l.split() for l in h3.vessel("vm", "ls", "--cluster").stdout.splitlines()]
    assert table[0][:4] == ["NAME", "KIND", "NODE", "PHASE"]
    assert sorted(r[:4] for r in table[1:]) == sorted(
        [f"{k}{i}", "vm", f"n{i}", "created"] for k in ("web", "db") for i in (1, 2, 3))
    # a seventh fits nowhere
    r = create(h3, "seventh", check=False)
    assert r.returncode != 0
    assert "cannot place VM seventh: no node can take 1.00 CPUs and 512 MiB" in r.stderr
    for i in (1, 2, 3):
        assert f"n{i}: 0.00 CPUs and 0 MiB free of 2.00 and 1024 MiB" in r.stderr
    # and nothing of it stays behind
    assert "seventh" not in json.dumps(nodes(h1))
    r = h1.vessel("vm", "create", "seventh", "--cpus", "1", "--memory", "64M", "--node", "n9",
                  check=False)
    assert r.returncode != 0 and "no node n9 in the cluster" in r.stderr
    leader = h1.etcdctl("get", "--print-value-only", "/vessel/leader").stdout.strip()
    assert leader in ("n1", "n2", "n3")
    assert sum("this node is the scheduler now" in h.vd.log_text() for h in cl.hosts) == 1


def test_cordon_and_removal_from_another_node(cl):
    h1, h2, h3 = cl.hosts
    # remove web2 (on n2) from n1: n2's reconciler removes its VM
    h1.vessel("vm", "rm", "web2")
    wait_for("web2 gone from n2", lambda: "web2" not in local_vms(h2))
    assert "removed VM web2" in h2.vd.log_text()
    # n2 has room for one again, but is cordoned: a VM pinned to it is refused
    h3.vessel("node", "cordon", "n2")
    r = create(h1, "late", "--node", "n2", check=False)
    assert r.returncode != 0 and "n2: cordoned" in r.stderr
    h3.vessel("node", "uncordon", "n2")
    r = create(h1, "late", "--node", "n2")
    assert "on node n2" in r.stderr and "late" in local_vms(h2)


def test_same_name_from_two_nodes_one_wins(cl):
    h1, _, h3 = cl.hosts
    for vm in ("web1", "web3", "db1", "db2", "db3", "late"):
        h1.vessel("vm", "rm", vm)
    wait_for("the VMs gone", lambda: not any(local_vms(h) for h in cl.hosts))
    results = {}

    def make(host):
        results[host.name] = create(host, "twin", "--memory", "64M", check=False)

    ts = [threading.Thread(target=make, args=(h,)) for h in (h1, h3)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    codes = sorted(r.returncode for r in results.values())
    assert codes[0] == 0 and codes[1] != 0, results
    loser = [r for r in results.values() if r.returncode][0]
    assert "already in use by a VM of the cluster" in loser.stderr
    assert sum("twin" in local_vms(h) for h in cl.hosts) == 1
    h3.vessel("vm", "rm", "twin")
    wait_for("twin gone", lambda: not any("twin" in local_vms(h) for h in cl.hosts))


def test_a_real_vm_placed_and_started_on_a_remote_node(cl):
    """vessel vm create --start on n1, pinned to n3: n3 makes and boots it."""
    from guestconsole import BOOT_TIMEOUT, PROMPT
    h1, _, h3 = cl.hosts
    r = h1.vessel("vm", "create", "real", "--node", "n3", "--start", timeout=BOOT_TIMEOUT)
    assert "on node n3" in r.stderr
    vm = local_vms(h3)["real"]
    assert vm["Status"] == "running" and vm["Pid"] > 0
    assert "real" not in local_vms(h1)

    def booted():
        status, text = h3.api("GET", "/vessel/v1/vms/real/logs")
        return status == 200 and PROMPT in (text or "")

    wait_for("the guest's shell prompt on n3", booted, timeout=BOOT_TIMEOUT, step=0.5)
    # a running VM of another node goes only with force
    r = h1.vessel("vm", "rm", "real", check=False)
    assert r.returncode != 0 and "running on node n3" in r.stderr
    h1.vessel("vm", "rm", "-f", "real")
    wait_for("real gone from n3", lambda: "real" not in local_vms(h3))
    wait_for("its VMM gone", lambda: not os.path.exists(f"/proc/{vm['Pid']}"), timeout=30)


def test_a_restarted_node_converges(cl):
    """A guest removed while its node's vesseld was down is removed when it comes back."""
    h1, h2, _ = cl.hosts
    create(h1, "gone", "--node", "n2", "--memory", "64M")
    assert "gone" in local_vms(h2)
    h2.vd.kill9()
    h1.vessel("vm", "rm", "gone")
    h2.vd.start()
    wait_for("gone removed by n2 after its restart", lambda: "gone" not in local_vms(h2))


def leader_of(host):
    return host.etcdctl("get", "--print-value-only", "/vessel/leader").stdout.strip()


def test_losing_an_etcd_member_changes_nothing(cl):
    """n1's member (the first endpoint every node tries) is killed: the nodes go on through
    the other two, placements go on, and the member comes back into the cluster."""
    h1, h2, h3 = cl.hosts
    h1.stop_etcd()
    try:
        r = create(h2, "quorum", "--memory", "64M")
        assert r.returncode == 0
        assert sorted(nodes(h1)) == ["n1", "n2", "n3"]
        h3.vessel("vm", "rm", "quorum")
        wait_for("quorum gone", lambda: not any("quorum" in local_vms(h) for h in cl.hosts))
    finally:
        h1.start_etcd()
    wait_for("n1's member back", lambda: h1.etcdctl("endpoint", "health", check=False)
             .returncode == 0, timeout=60, step=0.2)


def test_the_scheduler_moves_when_its_node_dies(cl):
    """kill -9 of the leader's vesseld: its lease expires, another node takes the leader key
    (within the lease's 10 s and a campaign's second) and places the next VM."""
    h1 = cl.hosts[0]
    old = leader_of(h1)
    dead = cl.hosts[int(old[1:]) - 1]
    dead.vd.kill9()
    try:
        wait_for("another leader", lambda: leader_of(h1) not in ("", old), timeout=30, step=0.2)
        new = leader_of(h1)
        alive = cl.hosts[int(new[1:]) - 1]
        assert "this node is the scheduler now" in alive.vd.log_text()
        assert nodes(alive)[old]["Status"] == "down"
        r = create(alive, "after", "--memory", "64M")
        assert r.stderr.strip().rsplit(" ", 1)[-1] not in ("", old)
        alive.vessel("vm", "rm", "after")
    finally:
        dead.vd.start()
    wait_for(f"{old} ready again", lambda: nodes(h1)[old]["Status"] == "ready")


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
        r = subprocess.run([str(build_dir / "vessel"), "-H", vd.host, "vm", "migrate", "x",
                            "--to", "n2"], capture_output=True, text=True, timeout=30)
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


def make_certs(d, ip):
    """A CA, a server certificate for ip and a client certificate, with openssl."""
    def ossl(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=d)
    ossl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=test-ca",
         "-keyout", "ca.key", "-out", "ca.crt")
    (d / "ext").write_text(f"subjectAltName=IP:{ip}\nextendedKeyUsage=serverAuth,clientAuth\n")
    # etcd 3.4's gateway refuses a client certificate with a CommonName when auth is on ("will be
    # ignored and not used as expected"): the nodes' certificate has none
    for name, subj in (("server", "/CN=etcd"), ("client", "/O=vessel-node")):
        ossl("req", "-newkey", "rsa:2048", "-nodes", "-subj", subj, "-keyout",
             f"{name}.key", "-out", f"{name}.csr")
        ossl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
             "-CAcreateserial", "-days", "1", "-extfile", "ext", "-out", f"{name}.crt")


def test_tls_and_auth(build_dir, tmp_path_factory):
    """etcd on https with client certificates and its user/password auth enabled: vesseld joins
    with --etcd-cacert/--etcd-cert/--etcd-key/--etcd-user; a wrong password is refused."""
    c = Cluster(build_dir, tmp_path_factory.mktemp("cluster-tls"), n=1, name="tls")
    try:
        h = c.hosts[0]
        certs = h.root / "certs"
        certs.mkdir()
        make_certs(certs, h.ip)
        h.client_url = f"https://{h.ip}:2379"
        h.start_etcd(extra=["--cert-file", certs / "server.crt", "--key-file", certs / "server.key",
                            "--trusted-ca-file", certs / "ca.crt", "--client-cert-auth"])
        tls = ["--cacert", certs / "ca.crt", "--cert", certs / "client.crt", "--key",
               certs / "client.key"]
        wait_for("etcd on https", lambda: h.etcdctl(*tls, "endpoint", "health", check=False)
                 .returncode == 0, timeout=60, step=0.2)
        h.etcdctl(*tls, "user", "add", "root:pw-of-root")
        h.etcdctl(*tls, "auth", "enable")
        opts = ["--etcd-cacert", str(certs / "ca.crt"), "--etcd-cert", str(certs / "client.crt"),
                "--etcd-key", str(certs / "client.key")]
        bad = subprocess.run(["nsenter", f"--net={h.ns}", str(build_dir / "vesseld"),
                              "--data-root", str(h.root / "bad"), "--exec-root",
                              str(h.root / "badx"), "-H", f"unix://{h.root}/bad.sock",
                              "--bridge", "none", *h.vesseld_args(), *opts,
                              "--etcd-user", "root:wrong"],
                             capture_output=True, text=True, timeout=60)
        assert bad.returncode != 0
        assert "etcd authentication as root" in bad.stderr, bad.stderr
        assert "authentication failed, invalid user ID or password" in bad.stderr, bad.stderr
        vd = h.start_vesseld(wait=False)
        vd.extra += [*opts, "--etcd-user", "root:pw-of-root"]
        vd.kill9()
        vd.start(wait=True)
        assert nodes(h)["n1"]["Status"] == "ready"
        out = h.etcdctl(*tls, "--user", "root:pw-of-root", "get", "--keys-only", "--prefix",
                        "/vessel/").stdout.split()
        assert "/vessel/nodes/n1" in out and "/vessel/cluster/token" in out
    finally:
        c.cleanup()


# ---------------------------------------------------------------- live migration, drain

# Typed at the guest's shell: a word on its disk (written through to the qcow2 file in the
# shared directory), then a count on the console, one number every 0.2 s, that runs on while
# the guest moves. "DISK$((6*7))DATA" and "tick $i" as typed never match what they print.
COUNT = ('echo DISK$((6*7))DATA > /dev/vda; sync; '
         'i=0; while :; do i=$((i+1)); echo "tick $i"; sleep 0.2; done &\n')
# Read the word back from the disk itself: the page cache (which moved with the guest's RAM)
# is dropped first.
READ_BACK = ('sync; echo 3 > /proc/sys/vm/drop_caches; blockdev --flushbufs /dev/vda; '
             'echo R$((1+1)):$(head -c 10 /dev/vda)\n')


def console_log(host, name):
    status, text = host.api("GET", f"/vessel/v1/vms/{name}/logs")
    assert status == 200, text
    return text or ""


def ticks(text):
    import re
    return [int(n) for n in re.findall(r"tick (\d+)\r?\n", text)]


def type_into(host, name, line):
    """Write a line to the guest's console input (the FIFO in its directory on that host)."""
    vm = api(host, "GET", f"/vessel/v1/vms/{name}")[1]
    fd = os.open(os.path.join(vm["Dir"], "console.in"), os.O_WRONLY | os.O_NONBLOCK)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def assert_counts_on(host, name, beyond):
    """The guest counts on at host past beyond, and its console's whole history there holds
    every number once, in order (nothing lost or repeated by the moves)."""
    wait_for(f"{name} counting past {beyond} on {host.name}",
             lambda: max(ticks(console_log(host, name)) or [0]) > beyond, timeout=300, step=0.5)
    seen = ticks(console_log(host, name))
    assert seen == list(range(1, len(seen) + 1)), seen


def test_live_migration_moves_a_running_guest_with_its_disk_and_console(cl):
    """A guest that counts on its console and wrote a word to its disk moves from n1 to n2
    (asked on n3): the count goes on without a gap or a repeat, n2's console log holds n1's
    whole history first, the word is read back from the disk on n2, and n1 has nothing left."""
    from guestconsole import BOOT_TIMEOUT, PROMPT
    h1, h2, h3 = cl.hosts
    r = h3.vessel("vm", "create", "mover", "--node", "n1", "--memory", "256M", "--disk-size",
                  "16M", "--start", timeout=BOOT_TIMEOUT)
    assert "on node n1" in r.stderr
    wait_for("the guest's prompt on n1", lambda: PROMPT in console_log(h1, "mover"),
             timeout=BOOT_TIMEOUT, step=0.5)
    disk = api(h1, "GET", "/vessel/v1/vms/mover")[1]["Disk"]["Path"]
    assert disk.startswith(str(cl.shared) + "/disks/"), disk
    type_into(h1, "mover", COUNT)
    wait_for("ten ticks on n1", lambda: len(ticks(console_log(h1, "mover"))) >= 10,
             timeout=300, step=0.5)
    before = console_log(h1, "mover")
    pid_n1 = local_vms(h1)["mover"]["Pid"]

    status, moved = api(h3, "POST", "/vessel/v1/vms/mover/migrate", {"Node": "n2"},
                        timeout=900)
    assert status == 200, moved
    assert moved["Name"] == "mover" and moved["State"]["Running"] is True
    assert moved["Disk"]["Path"] == disk
    vm = local_vms(h2)["mover"]
    assert vm["Status"] == "running" and vm["Id"] == moved["Id"]
    wait_for("mover gone from n1", lambda: "mover" not in local_vms(h1))
    assert not os.path.exists(f"/proc/{pid_n1}")
    status, guests = api(h1, "GET", "/vessel/v1/guests")
    assert {g["Name"]: (g["Node"], g["Phase"]) for g in guests}["mover"] == ("n2", "running")
    sent = [l for l in h1.vd.log_text().splitlines() if "migration of mover to n2: sent" in l]
    assert sent
    print(sent[0])
    assert "migration of mover from n1: done" in h2.vd.log_text()

    after = console_log(h2, "mover")
    assert after.startswith(before), "n2's console log does not begin with n1's history"
    assert_counts_on(h2, "mover", max(ticks(before)) + 10)
    type_into(h2, "mover", READ_BACK)
    wait_for("the word read back from the disk on n2",
             lambda: "R2:DISK42DATA" in console_log(h2, "mover"), timeout=120, step=0.5)
    assert os.path.exists(disk)


def test_migrate_refuses_what_it_cannot_do(cl):
    h1, h2, h3 = cl.hosts
    assert local_vms(h2)["mover"]["Status"] == "running"
    create(h3, "idle", "--node", "n3", "--memory", "64M")
    create(h1, "big", "--node", "n1", "--memory", "900M")
    cases = [
        ("nosuch", {"Node": "n1"}, 404, "No such VM: nosuch"),
        ("mover", {"Node": "n9"}, 404, "No such node: n9"),
        ("mover", {"Node": "n2"}, 409, "VM mover already runs on node n2"),
        ("idle", {"Node": "n1"}, 409, "VM idle is not running"),
        ("mover", {"Node": "n1"}, 409, "n1: "),  # 900M of n1's 1G are taken by big
        ("mover", {"Nodes": "n1"}, 400, "unknown field Nodes"),
        ("mover", {"Node": 5}, 400, "Node"),
        ("mover", {}, 400, "Node"),
        ("mover", [], 400, ""),
    ]
    for name, body, code, text in cases:
        status, reply = api(h1, "POST", f"/vessel/v1/vms/{name}/migrate", body)
        assert status == code and text in reply["message"], (name, body, status, reply)
    h1.vessel("node", "cordon", "n3")
    try:
        status, reply = api(h1, "POST", "/vessel/v1/vms/mover/migrate", {"Node": "n3"})
        assert status == 409 and "node n3 is cordoned" in reply["message"], reply
    finally:
        h1.vessel("node", "uncordon", "n3")
    r = h1.vessel("vm", "migrate", "mover", "--to", "n9", check=False)
    assert r.returncode != 0 and "No such node: n9" in r.stderr
    # n3 restarted without the shared directory refuses to take part once the migration has
    # begun: it fails (409, n3's reason) and the guest goes on counting on n2 as before
    saved = list(h3.vd.extra)
    h3.vd.stop()
    i = h3.vd.extra.index("--cluster-shared-dir")
    del h3.vd.extra[i:i + 2]
    h3.vd.start()
    try:
        last = max(ticks(console_log(h2, "mover")))
        status, reply = api(h1, "POST", "/vessel/v1/vms/mover/migrate", {"Node": "n3"},
                            timeout=300)
        assert status == 409 and "node n3 has no --cluster-shared-dir" in reply["message"], reply
        assert local_vms(h2)["mover"]["Status"] == "running"
        assert "mover" not in local_vms(h3)
        assert_counts_on(h2, "mover", last + 5)
    finally:
        h3.vd.stop()
        h3.vd.extra = saved
        h3.vd.start()
    # nothing of the refused requests stayed: the guest runs on n2, no migration pending
    status, guests = api(h2, "GET", "/vessel/v1/guests")
    assert {g["Name"]: g["Node"] for g in guests}["mover"] == "n2"
    h1.vessel("vm", "rm", "big")
    h1.vessel("vm", "rm", "idle")


def test_drain_moves_every_running_vm_off_a_node(cl):
    """drain n2: the running guest moves where the scheduler puts it (n1 or n3) and counts on
    there; a VM that is not running stays, said so; the node is left draining."""
    h1, h2, h3 = cl.hosts
    create(h1, "asleep", "--node", "n2", "--memory", "64M")
    last = max(ticks(console_log(h2, "mover")))
    r = h1.vessel("node", "drain", "n2", timeout=900)
    moved = [l.split() for l in r.stdout.splitlines()]
    assert len(moved) == 1 and moved[0][:3] == ["mover", "n2", "->"], r.stdout
    to = moved[0][3]
    assert to in ("n1", "n3")
    assert "asleep stays on n2 (created" in r.stderr
    assert not [v for v in local_vms(h2).values() if v["Status"] == "running"]
    assert nodes(h3)["n2"]["Draining"] is True
    # again through the API (its answer checked against the OpenAPI description): nothing left
    status, n2 = api(h3, "POST", "/vessel/v1/nodes/n2/drain", timeout=300)
    assert status == 200 and n2["Draining"] is True and n2["Migrated"] == []
    assert n2["Failed"] == [] and n2["Stayed"] == [{"Name": "asleep", "Phase": "created"}]
    assert api(h3, "POST", "/vessel/v1/nodes/nope/drain")[0] == 404
    assert_counts_on(cl.hosts[int(to[1:]) - 1], "mover", last + 10)
    h1.vessel("node", "uncordon", "n2")
    h1.vessel("vm", "rm", "asleep")
    h1.vessel("vm", "rm", "-f", "mover")
    wait_for("mover gone", lambda: not any("mover" in local_vms(h) for h in cl.hosts))


# ---------------------------------------------------------------- HA: failover and fencing

@pytest.fixture(scope="module")
def ha_cluster(build_dir, tmp_path_factory):
    """A cluster of its own for the HA tests (they kill nodes and cut links): the three nodes
    share a directory for the guests' disks (--cluster-shared-dir), and the guests are idle
    RISC-V programs (a real VMM each, sleeping in wfi)."""
    root = tmp_path_factory.mktemp("cluster-ha")
    c = Cluster(build_dir, root, name="ha")
    c.disks = {}
    c.kernel = cluster.write_idle_kernel(root / "idle.elf")
    try:
        c.start_etcd()
        c.start_vesselds(capacity="cpus=8,memory=4G")
        yield c
    finally:
        c.cleanup()


@pytest.fixture
def ha(ha_cluster):
    """The HA cluster for one test; what a failed test left (a node down, guests) is undone
    after it, so that the next test starts from three ready nodes and no guests."""
    c = ha_cluster
    yield c
    for i, h in enumerate(c.hosts, 1):
        cluster.run("ip", "link", "set", f"p{i}", "up", ns=c.switch)
        if not h.vd.alive():
            h.vd.start()
    names = set()
    for h in c.hosts:
        names |= set(guests(h)) | set(local_vms(h))
    for n in names:
        c.hosts[0].vessel("vm", "rm", "-f", n, check=False)
    wait_for("the HA tests' guests gone", lambda: not any(local_vms(h) for h in c.hosts),
             timeout=60)


def ha_create(c, host, name, *opts, start=True):
    r = host.vessel("vm", "create", name, "--cpus", "1", "--memory", "32M", "--kernel",
                    str(c.kernel), "--disk-size", "16M", *(["--start"] if start else []), *opts)
    # the disk's directory as etcd records it once the guest is made: a failover adopts it
    def disk_dir():
        out = host.etcdctl("get", "--print-value-only", f"/vessel/guests/{name}").stdout
        return out.strip() and json.loads(out).get("DiskDir")

    ddir = wait_for(f"{name}'s DiskDir in etcd", disk_dir, timeout=30, step=0.2)
    assert ddir.startswith(f"{c.shared}/disks/"), ddir
    c.disks[name] = f"{ddir}/disk.qcow2"
    return r


def disk_of(c, name):
    return c.disks[name]


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def check_runs_once(c, g, name, live):
    """The guest runs on the node etcd names, as the VM whose ID etcd has, and in exactly one
    VMM on this machine (all nodes' processes are here): no other live node has a copy."""
    rec = g[name]
    assert rec["Phase"] == "running" and rec["Node"] in [h.name for h in live], rec
    host = c.hosts[int(rec["Node"][1:]) - 1]
    vm = local_vms(host)[name]
    assert vm["Status"] == "running" and vm["Id"] == rec["Id"], vm
    assert cluster.vmm_pids(disk_of(c, name)) == [vm["Pid"]]
    for other in live:
        if other is not host:
            assert name not in local_vms(other), (name, other.name)
    return vm


def qemu_img_check(path):
    r = subprocess.run(["qemu-img", "check", "-U", "-f", "qcow2", path], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, f"qemu-img check {path}: {r.stdout}{r.stderr}"


def test_ha_restarts_the_guests_of_a_dead_node_elsewhere_once(ha):
    """kill -9 of n2's vesseld and of its VMMs: once its lease has expired, the leader places
    n2's guests with a restart policy on n1 and n3, which start them from their disks on the
    shared directory (each exactly once, as etcd says); a guest without a policy stays with
    n2. n2 comes back: it finds its guests gone elsewhere and removes its copies, starting
    none, and the disks stay."""
    h1, h2, h3 = ha.hosts
    names = ["ha1", "ha2", "ha3"]
    for n in names:
        ha_create(ha, h1, n, "--node", "n2", "--restart", "always")
    ha_create(ha, h1, "plain", "--node", "n2")
    old = {n: v["Pid"] for n, v in local_vms(h2).items()}
    assert sorted(old) == sorted(names + ["plain"]) and all(old.values())
    assert all(cluster.vmm_pids(disk_of(ha, n)) == [old[n]] for n in names)
    ids = {n: guests(h1)[n]["Id"] for n in names}
    h2.vd.kill9()
    for pid in old.values():
        os.kill(pid, 9)

    def moved():
        g = guests(h1)
        return all(g[n]["Phase"] == "running" and g[n]["Node"] in ("n1", "n3")
                   and g[n].get("Id") for n in names) and g

    g = wait_for("n2's guests running on n1 and n3", moved, timeout=30, step=0.2)
    for n in names:
        check_runs_once(ha, g, n, [h1, h3])
        assert not any(alive(p) for p in old.values())
        assert g[n]["Id"] == ids[n]  # the VM keeps its ID where it restarts
        qemu_img_check(disk_of(ha, n))
    assert g["plain"]["Node"] == "n2", g["plain"]
    assert not any("plain" in local_vms(h) for h in (h1, h3))
    leader = leader_of(h1)
    assert "restarts on" in ha.hosts[int(leader[1:]) - 1].vd.log_text()

    h2.vd.start()
    wait_for("n2 ready again", lambda: nodes(h1).get("n2", {}).get("Status") == "ready",
             timeout=30)
    wait_for("n2's copies removed", lambda: not set(names) & set(local_vms(h2)), timeout=30)
    g = guests(h1)
    for n in names:
        check_runs_once(ha, g, n, ha.hosts)
        assert os.path.exists(disk_of(ha, n))
    # the guest without a restart policy is back in n2's list, stopped: nothing restarts it
    assert local_vms(h2)["plain"]["Status"] != "running"
    for n in names + ["plain"]:
        h1.vessel("vm", "rm", "-f", n)
    wait_for("the guests gone", lambda: not any(local_vms(h) for h in ha.hosts))
    assert not any(os.path.exists(disk_of(ha, n)) for n in names + ["plain"])


def test_ha_follows_starts_and_stops_made_on_the_node(ha):
    """A guest created stopped and started later by a request to its node is one HA must
    restart: the node writes the start back to the guest's record (Phase running), and a stop
    by a request back again (Phase created: a stopped guest stays stopped when its node dies)."""
    h1, h2, h3 = ha.hosts
    ha_create(ha, h1, "late", "--node", "n2", "--restart", "always", start=False)

    def phase(want):
        def check():
            out = h3.etcdctl("get", "--print-value-only", "/vessel/guests/late").stdout
            rec = json.loads(out)
            return rec["Phase"] == want and guests(h3)["late"]["Phase"] == want and rec

        return wait_for(f"late's record {want}", check, timeout=30, step=0.2)

    phase("created")
    h2.vessel("vm", "start", "late")
    rec = phase("running")
    assert rec["Node"] == "n2" and rec.get("Start") is True, rec
    assert "VM late is running on this node" in h2.vd.log_text()
    h2.vessel("vm", "stop", "-t", "1", "late")
    rec = phase("created")
    assert rec.get("Start") is False, rec
    h1.vessel("vm", "rm", "-f", "late")
    wait_for("late gone", lambda: not any(local_vms(h) for h in ha.hosts))


def test_ha_a_partitioned_node_fences_itself_then_cleans_up(ha):
    """n1's link is cut, in the hardest place: its etcd member is the raft leader and the first
    endpoint every node tries. n1 cannot renew its lease and kills its guests before the lease
    ends, so that at no moment does a guest run twice while n2 and n3 restart them; n2 and n3
    renew through the other members meanwhile and never fence themselves. The link comes back:
    n1 holds a lease again and removes its copies."""
    h1, h2, h3 = ha.hosts
    names = ["pa1", "pa2"]
    for n in names:
        ha_create(ha, h2, n, "--node", "n1", "--restart", "always")
    old = {n: local_vms(h1)[n]["Pid"] for n in names}
    ha.move_raft_leader(h1)
    cluster.run("ip", "link", "set", "p1", "down", ns=ha.switch)
    twice = []
    try:
        def moved():
            for n in names:
                pids = cluster.vmm_pids(disk_of(ha, n))
                if len(pids) > 1:
                    twice.append((n, pids))
            g = guests(h2)
            return all(g[n]["Phase"] == "running" and g[n]["Node"] in ("n2", "n3")
                       and g[n].get("Id") for n in names) and g

        g = wait_for("n1's guests running on n2 and n3", moved, timeout=60, step=0.1)
        assert not twice, f"a guest ran on two nodes at once: {twice}"
        assert not any(alive(p) for p in old.values())
        log = h1.vd.log_text()
        assert "fencing: no lease renewal" in log and "fencing: sent SIGKILL" in log, log[-3000:]
        for h in (h2, h3):
            assert "fencing" not in h.vd.log_text(), (h.name, h.vd.log_text()[-3000:])
        for n in names:
            host = ha.hosts[int(g[n]["Node"][1:]) - 1]
            wait_for(f"{n} running on {host.name}",
                     lambda n=n, host=host: local_vms(host).get(n, {}).get("Status") == "running",
                     timeout=30)
        g = guests(h2)
        for n in names:
            check_runs_once(ha, g, n, [h2, h3])
    finally:
        cluster.run("ip", "link", "set", "p1", "up", ns=ha.switch)
    # (a node that never had an operator's spec is not listed at all while its lease is gone)
    wait_for("n1 ready again", lambda: nodes(h2).get("n1", {}).get("Status") == "ready",
             timeout=60, step=0.5)
    wait_for("n1's copies removed", lambda: not set(names) & set(local_vms(h1)), timeout=60,
             step=0.5)
    wait_for("n1's fencing to end", lambda: "fencing ends" in h1.vd.log_text(), timeout=30)
    g = guests(h2)
    for n in names:
        check_runs_once(ha, g, n, ha.hosts)
        qemu_img_check(disk_of(ha, n))
    for h in (h2, h3):
        assert "fencing" not in h.vd.log_text(), (h.name, h.vd.log_text()[-3000:])
    for n in names:
        h3.vessel("vm", "rm", "-f", n)
    wait_for("the guests gone", lambda: not any(local_vms(h) for h in ha.hosts))


def silent_fencer_client(h):
    """A process in h's namespace connected to its fencer's socket, sending nothing."""
    digest = hashlib.sha256(str(h.vd.data).encode()).hexdigest()[:32]
    code = ("import socket, sys, time\n"
            "s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)\n"
            f"s.connect('\\0vessel-fencer/{digest}')\n"
            "print('connected', flush=True)\n"
            "time.sleep(120)\n")
    p = subprocess.Popen(["nsenter", f"--net={h.ns}", sys.executable, "-c", code],
                         stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "connected"
    return p


def test_ha_the_fencer_outlives_vesseld(ha):
    """Guests outlive vesseld, so its fencer process does too: kill -9 of n1's vesseld
    restarted at once leaves its guest running (the new vesseld holds a lease and tells the old
    fencer to stand down); kill -9 with vesseld left down, its VMM alive: the fencer kills the
    VMM before the lease ends, and the guest restarts on n2 or n3, never twice at once. The
    fencer holds a VMM from its spawn: one whose start returned just before the kill dies too."""
    h1, h2, h3 = ha.hosts
    ha_create(ha, h2, "fe1", "--node", "n1", "--restart", "always")
    ha_create(ha, h2, "fe2", "--node", "n1", start=False)
    pid = local_vms(h1)["fe1"]["Pid"]
    h1.vd.kill9()
    h1.vd.start()
    time.sleep(cluster_ttl_s + 2)  # past the deadline the first vesseld's fencer had
    assert alive(pid) and local_vms(h1)["fe1"]["Pid"] == pid
    assert "told the fencer of the previous vesseld to stand down" in h1.vd.log_text()
    h1.vessel("vm", "start", "fe2")
    h1.vd.kill9()  # at once: before the watchdog's next look (every 200 ms)
    fe2 = cluster.vmm_pids(disk_of(ha, "fe2"))
    assert len(fe2) == 1, fe2
    # a root client that connects to the fencer and sends nothing must not hold it past its
    # deadline (it used to block in read, and the guest then ran on two nodes at once)
    silent = silent_fencer_client(h1)
    twice = []

    def moved():
        pids = cluster.vmm_pids(disk_of(ha, "fe1"))
        if len(pids) > 1:
            twice.append(pids)
        g = guests(h2)
        return g["fe1"]["Phase"] == "running" and g["fe1"]["Node"] in ("n2", "n3") and g

    try:
        g = wait_for("fe1 running on n2 or n3", moved, timeout=60, step=0.1)
        assert not twice, f"fe1 ran twice at once: {twice}"
        assert not alive(pid)
        assert not alive(fe2[0]), "the VMM started just before vesseld died outlived the lease"
        assert "killed its VMMs of the cluster" in h1.vd.log_text()
        check_runs_once(ha, g, "fe1", [h2, h3])
    finally:
        silent.kill()
        silent.wait()
        h1.vd.start()
    wait_for("n1's copy removed", lambda: "fe1" not in local_vms(h1), timeout=30)
    for n in ("fe1", "fe2"):
        h3.vessel("vm", "rm", "-f", n)
    wait_for("fe1 and fe2 gone", lambda: not any(local_vms(h) for h in ha.hosts))
