"""More of the cluster (docs/cluster.md): the images known to the cluster (each node's record in
etcd, `vessel images --cluster`, the scheduler's image locality), `vessel pool update` of a pool
of the cluster (by revision, refusing a shrink below what its guests request), a migrated
VM keeping its ID (and a VM with snapshots staying where it is), and requests for a guest of
another node carried to it (docs/cluster.md, "From any node").

The cluster is tests/integration/cluster.py's: three network namespaces, a three-member etcd,
a vesseld in each declaring a fake capacity. Every reply of /vessel/v1 is checked against
docs/api/vessel-v1.yaml.
"""
import json
import os
import select
import signal
import subprocess
import threading
import time

import pytest

import cluster
import test_daemon
from cluster import api, guests, run, wait_for

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root"),
    pytest.mark.skipif(not os.path.exists(cluster.ETCD), reason="no etcd-server (scripts/setup)"),
]

BUSYBOX = "docker.io/library/busybox:latest"
IDLE_REF = "localhost/idle:1"


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    return test_daemon.busybox_archive(tmp_path_factory.mktemp("image") / "busybox.tar")


@pytest.fixture(scope="module")
def cl(build_dir, guest_assets, tmp_path_factory):
    root = tmp_path_factory.mktemp("cmore")
    with cluster.running(build_dir, root, guest_assets, name="m",
                         capacity="cpus=2,memory=1G") as c:
        c.kernel = cluster.write_idle_kernel(root / "idle.elf")
        yield c


def cluster_images(host):
    status, body = api(host, "GET", "/vessel/v1/cluster/images")
    assert status == 200, body
    return body


def holders(host, ref, kind="container"):
    """The nodes that hold ref, as host's answer says (None when no node does)."""
    for img in cluster_images(host):
        if img["Kind"] == kind and ref in img["References"]:
            return sorted(img["Nodes"])
    return None


def etcd_json(host, key):
    out = host.etcdctl("get", "--print-value-only", key).stdout.strip()
    return json.loads(out) if out else None


def remove_guests(c):
    h = c.hosts[0]
    for name in guests(h):
        h.vessel("vm", "rm", "-f", name)
    wait_for("every VM removed",
             lambda: not any(x.api("GET", "/vessel/v1/vms")[1] for x in c.hosts), timeout=90)


# ------------------------------------------------------------------ images of the cluster

def test_each_node_records_its_images_and_any_node_lists_them(cl, image):
    h1, h2, h3 = cl.hosts
    for h in (h1, h2):
        assert "Loaded image" in h.vd.docker("load", "-i", str(image)).stdout
    wait_for("busybox on n1 and n2, seen from n3",
             lambda: holders(h3, BUSYBOX) == ["n1", "n2"], timeout=60)
    [img] = [i for i in cluster_images(h3) if BUSYBOX in i["References"]]
    assert img["Id"].startswith("sha256:") and img["Digest"].startswith("sha256:")
    assert img["Size"] > 0 and img["Registry"] == "docker.io", img
    # the node's own record in etcd, under its name
    rec = etcd_json(h1, "/vessel/images/n1")
    assert rec["Node"] == "n1"
    assert [i["Id"] for i in rec["Images"] if BUSYBOX in i["References"]] == [img["Id"]]
    assert not [i for i in etcd_json(h1, "/vessel/images/n3")["Images"]
                if BUSYBOX in i["References"]]

    # a tag on n2 is n2's alone; the image it names is the same one
    h2.vd.docker("tag", "busybox", "mine/box:v1")
    wait_for("the tag in n2's record",
             lambda: holders(h1, "docker.io/mine/box:v1") == ["n1", "n2"] and
             "docker.io/mine/box:v1" in [r for i in etcd_json(h1, "/vessel/images/n2")["Images"]
                                          for r in i["References"]], timeout=60)
    assert "docker.io/mine/box:v1" not in [r for i in etcd_json(h1, "/vessel/images/n1")["Images"]
                                            for r in i["References"]]

    # rmi on n1: n2 alone holds it
    h1.vd.docker("rmi", "busybox")
    wait_for("busybox gone from n1's record", lambda: holders(h3, BUSYBOX) == ["n2"], timeout=60)

    # the command line
    out = h3.vessel("images", "--cluster").stdout.splitlines()
    assert out[0].split() == ["KIND", "REFERENCE", "IMAGE", "ID", "SIZE", "NODES"], out
    line = [l for l in out if BUSYBOX in l]
    assert line and line[0].split()[0] == "container" and line[0].split()[-1] == "n2", out
    assert img["Id"][7:19] in h3.vessel("images", "--cluster", "-q").stdout.split()
    bad = h3.vessel("images", "--cluster", "--bogus", check=False)
    assert bad.returncode != 0 and "usage: vessel images" in bad.stderr

    # a record deleted behind the node's back is written again (reconciled, not logged)
    h1.etcdctl("del", "/vessel/images/n2")
    wait_for("n2's record back", lambda: holders(h3, BUSYBOX) == ["n2"], timeout=60)


def test_a_vm_image_is_recorded_and_the_scheduler_prefers_its_node(cl):
    """A VM image imported on n2 alone: it shows as n2's, and a VM of it created from n1 (all
    three nodes empty and alike: without image locality the name order would pick n1, which
    lacks the image and could not pull it from any registry) is placed on n2."""
    h1, h2, h3 = cl.hosts
    status, body = api(h2, "POST", "/vessel/v1/images/vm/import",
                       {"Ref": IDLE_REF, "Kernel": str(cl.kernel), "Memory": "32M"})
    assert status == 201, body
    wait_for("the VM image on n2", lambda: holders(h1, IDLE_REF, kind="vm") == ["n2"], timeout=60)
    [img] = [i for i in cluster_images(h3) if i["Kind"] == "vm"]
    assert img["Registry"] == "localhost" and img["Digest"] == body["Digest"], img
    try:
        r = h1.vessel("vm", "create", "loc1", "--image", IDLE_REF, "--cpus", "1", "--memory", "32M")
        assert "n2" in r.stderr, r.stderr
        assert guests(h3)["loc1"]["Node"] == "n2"
        # n2 made it from its own store
        status, vm = api(h2, "GET", "/vessel/v1/vms/loc1")
        assert status == 200, vm
    finally:
        remove_guests(cl)


# ------------------------------------------------------------------ pool update

def pool(host, name):
    wait_for(f"pool {name} on {host.name}",
             lambda: host.api("GET", f"/vessel/v1/pools/{name}")[0] == 200, timeout=30)
    status, body = api(host, "GET", f"/vessel/v1/pools/{name}")
    assert status == 200, body
    return body


def test_pool_update_of_the_cluster_by_revision_refusing_a_shrink(cl):
    h1, h2, h3 = cl.hosts
    h1.vessel("node", "label", "n1", "tier=silver", "one=yes")
    h1.vessel("node", "label", "n2", "tier=silver")
    h2.vessel("pool", "create", "silver", "--cluster", "--node-selector", "tier=silver")
    p = pool(h3, "silver")
    assert p["Cpus"] == 4 and sorted(p["Nodes"]) == ["n1", "n2"], p
    try:
        for i in range(3):
            h3.vessel("vm", "create", f"s{i}", "--cpus", "1", "--memory", "32M", "--pool",
                      "silver")
        # more room: the ratio goes up, from another node than the one that made the pool
        r = h1.vessel("pool", "update", "silver", "--cluster", "--cpu-overcommit", "2")
        assert r.stdout.strip() == "silver"
        # n2 answers from its copy of etcd, which its watch brings up to date a moment later
        p = wait_for("n2's copy of the updated pool",
                     lambda: (lambda p: p["CpuOvercommit"] == 2 and p)(pool(h2, "silver")),
                     timeout=30, step=0.1)
        assert p["Available"]["Cpus"] == 5, p
        assert etcd_json(h1, "/vessel/pools/silver")["CpuOvercommit"] == 2

        # a shrink below what the guests request: refused, naming the pool and the use
        r = h2.vessel("pool", "update", "silver", "--cluster", "--node-selector", "one=yes",
                      "--cpu-overcommit", "1", check=False)
        assert r.returncode != 0
        assert "pool silver of the cluster: its 3 guests request 3.00 CPUs" in r.stderr, r.stderr
        assert "2.00 CPUs x 1.00" in r.stderr and "nodes n1" in r.stderr, r.stderr
        assert "remove guests first" in r.stderr
        assert etcd_json(h1, "/vessel/pools/silver")["CpuOvercommit"] == 2  # unchanged

        # the same selector with the ratio kept fits (2 CPUs x 2 >= 3)
        status, p = api(h3, "POST", "/vessel/v1/pools/silver/update",
                        {"Cluster": True, "NodeSelector": {"one": "yes"}})
        assert status == 200 and p["Nodes"] == ["n1"] and p["Cpus"] == 2, p
        assert p["Available"]["Cpus"] == 1 and p["Usage"]["Cpus"] == 3, p

        # bad requests
        for body, code, text in [
                ({"Cluster": True, "Cpus": 4}, 400, "sum of its nodes'"),
                ({"Cluster": True, "Name": "gold"}, 400, "cannot be renamed"),
                ({"Cluster": True, "CpuOvercommit": 0.5}, 400, "1 to 100"),
                ({"Cluster": True, "NodeSelector": "x"}, 400, "NodeSelector")]:
            status, reply = api(h1, "POST", "/vessel/v1/pools/silver/update", body)
            assert status == code and text in reply["message"], (body, reply)
        status, reply = api(h1, "POST", "/vessel/v1/pools/nothing/update",
                            {"Cluster": True, "CpuOvercommit": 2})
        assert status == 404 and "nothing" in reply["message"], reply

        # two updates at once from two nodes, each of its own field: both land
        results = []

        def update(host, field, value):
            results.append(host.api("POST", "/vessel/v1/pools/silver/update",
                                    {"Cluster": True, field: value}))

        for round_ in range(5):
            ts = [threading.Thread(target=update, args=(h1, "CpuOvercommit", 3 + round_)),
                  threading.Thread(target=update, args=(h3, "MemoryOvercommit", 2 + round_))]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
            rec = etcd_json(h2, "/vessel/pools/silver")
            assert rec["CpuOvercommit"] == 3 + round_ and rec["MemoryOvercommit"] == 2 + round_
        assert all(s == 200 for s, _ in results), results
    finally:
        remove_guests(cl)
        h1.vessel("pool", "rm", "silver")


# ------------------------------------------------------------------ migration keeps the ID

def test_a_migrated_vm_keeps_its_id_and_one_with_snapshots_stays(cl):
    h1, h2, h3 = cl.hosts
    try:
        r = h3.vessel("vm", "create", "keeper", "--node", "n1", "--cpus", "1", "--memory", "32M",
                      "--kernel", str(cl.kernel), "--start")
        vm_id = r.stdout.strip()
        assert len(vm_id) == 64, r.stdout
        status, moved = api(h3, "POST", "/vessel/v1/vms/keeper/migrate", {"Node": "n2"},
                            timeout=300)
        assert status == 200, moved
        assert moved["Id"] == vm_id, moved
        status, vm = api(h2, "GET", "/vessel/v1/vms/keeper")
        assert status == 200 and vm["Id"] == vm_id and vm["State"]["Running"] is True, vm
        assert guests(h1)["keeper"]["Id"] == vm_id and guests(h1)["keeper"]["Node"] == "n2"
        # (n1's own list: a request for keeper sent to n1 is answered by n2 now)
        wait_for("n1's copy removed",
                 lambda: "keeper" not in [v["Name"] for v in h1.api("GET", "/vessel/v1/vms")[1]],
                 timeout=60)
        # and back: the ID is free again on n1
        status, moved = api(h1, "POST", "/vessel/v1/vms/keeper/migrate", {"Node": "n1"},
                            timeout=300)
        assert status == 200 and moved["Id"] == vm_id, moved

        # a snapshot keeps the VM on its node, and the refusal says why
        r = h1.vessel("vm", "snapshot", "keeper", "s1")
        status, reply = api(h3, "POST", "/vessel/v1/vms/keeper/migrate", {"Node": "n3"},
                            timeout=300)
        assert status == 409, reply
        assert "VM keeper has 1 snapshot (s1) kept in node n1's data root" in reply["message"]
        assert "a VM with snapshots stays on its node" in reply["message"]
        status, vm = api(h1, "GET", "/vessel/v1/vms/keeper")
        assert status == 200 and vm["Id"] == vm_id and vm["State"]["Running"] is True, vm
        assert guests(h2)["keeper"]["Node"] == "n1"
    finally:
        remove_guests(cl)


# ------------------------------------------------------------------ requests from any node

def write_echo_kernel(path):
    """A RISC-V ELF program that answers on its console: every byte typed comes back plus one
    ("HAL" -> "IBM"), through the SBI's legacy getchar and putchar, so what a test reads is the
    guest's answer and never an echo of what it typed."""
    def i_type(rd, rs1, imm):                      # addi rd, rs1, imm
        return (imm & 0xFFF) << 20 | rs1 << 15 | rd << 7 | 0x13

    def bltz(rs1, off):                            # blt rs1, x0, off
        o = off & 0x1FFF
        return ((o >> 12 & 1) << 31 | (o >> 5 & 0x3F) << 25 | rs1 << 15 | 4 << 12 |
                (o >> 1 & 0xF) << 8 | (o >> 11 & 1) << 7 | 0x63)

    def j(off):                                    # jal x0, off
        o = off & 0x1FFFFF
        return ((o >> 20 & 1) << 31 | (o >> 1 & 0x3FF) << 21 | (o >> 11 & 1) << 20 |
                (o >> 12 & 0xFF) << 12 | 0x6F)

    ecall = 0x00000073
    words = [i_type(17, 0, 2), ecall, bltz(10, -8),          # a0 = getchar() until one comes
             i_type(10, 10, 1), i_type(17, 0, 1), ecall,      # putchar(a0 + 1)
             j(-24)]
    return cluster.write_elf(path, words)


def console_answer(host, name, line, wanted, timeout=120):
    """`vessel vm console NAME` on host, line typed into it: what came out once wanted did."""
    p = subprocess.Popen([str(host.cluster.build / "vessel"), "-H", host.vd.host, "vm",
                          "console", name], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    out = b""
    try:
        p.stdin.write(line)
        p.stdin.flush()
        deadline = time.monotonic() + timeout
        while wanted not in out:
            r, _, _ = select.select([p.stdout], [], [], max(0.1, deadline - time.monotonic()))
            assert r, f"no {wanted!r} from the console of {name}: {out!r}"
            b = os.read(p.stdout.fileno(), 65536)
            assert b, f"console of {name} ended: {out!r} {p.stderr.read()!r}"
            out += b
    finally:
        p.kill()
        p.wait()
    return out


def test_vm_and_container_requests_go_to_their_node(cl, image, tmp_path):
    """From n1: stop, start, inspect, logs, stats and the console of a VM on n2 act on n2's VM
    (a line typed on n1 reaches the guest and its answer comes back); logs -f, exec and stats
    of a container on n3 are n3's. While n2's vesseld is stopped, a connection to the tunnel
    n1 opened for it with a wrong ticket is dropped, and n2 back, its request is answered."""
    h1, h2, h3 = cl.hosts
    kernel = write_echo_kernel(tmp_path / "echo.elf")
    try:
        h1.vessel("vm", "create", "echo1", "--node", "n2", "--cpus", "1", "--memory", "32M",
                  "--kernel", str(kernel), "--start")
        status, vm = api(h1, "GET", "/vessel/v1/vms/echo1")   # n2's VM, asked of n1
        assert status == 200 and vm["State"]["Running"] is True, vm
        assert vm["Id"] == api(h2, "GET", "/vessel/v1/vms/echo1")[1]["Id"]
        assert console_answer(h1, "echo1", b"HAL\n", b"IBM").count(b"IBM") == 1
        assert b"IBM" in h1.vessel("vm", "logs", "echo1").stdout.encode()
        r = h1.vessel("vm", "stats", "echo1")
        assert r.stdout.splitlines()[1].split()[0] == "echo1", r.stdout
        h1.vessel("vm", "stop", "-t", "1", "echo1")
        status, vm = api(h2, "GET", "/vessel/v1/vms/echo1")
        assert status == 200 and vm["State"]["Running"] is False, vm
        h1.vessel("vm", "start", "echo1")
        status, vm = api(h2, "GET", "/vessel/v1/vms/echo1")
        assert status == 200 and vm["State"]["Running"] is True, vm
        assert console_answer(h3, "echo1", b"abc\n", b"bcd")

        # a container of n3, from n1 (the stock docker CLI, and vessel logs -f)
        assert "Loaded image" in h3.vd.docker("load", "-i", str(image)).stdout
        h1.vessel("run", "-d", "--name", "talker", "--node", "n3", "busybox", "sh", "-c",
                  "i=0; while :; do i=$((i+1)); echo line$i; sleep 0.3; done")
        follow = subprocess.Popen([str(cl.build / "vessel"), "-H", h1.vd.host, "logs", "-f",
                                   "talker"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            out = b""
            while b"line6\n" not in out:     # lines written after the request came
                r, _, _ = select.select([follow.stdout], [], [], 60)
                assert r, out
                b = os.read(follow.stdout.fileno(), 65536)
                assert b, (out, follow.stderr.read())
                out += b
        finally:
            follow.kill()
            follow.wait()
        # docker attach from n1: the hijacked stream of n3's container
        att = subprocess.Popen([test_daemon.DOCKER, "attach", "--no-stdin", "talker"],
                               env=h1.vd.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            out = b""
            while out.count(b"\n") < 2:
                r, _, _ = select.select([att.stdout], [], [], 60)
                assert r, out
                b = os.read(att.stdout.fileno(), 65536)
                assert b, (out, att.stderr.read())
                out += b
            assert out.startswith(b"line"), out
        finally:
            att.kill()
            att.wait()
        r = h1.vd.docker("exec", "talker", "sh", "-c", "echo from-$((6*7)); exit 3", check=False)
        assert r.returncode == 3 and r.stdout == "from-42\n", (r.returncode, r.stdout, r.stderr)
        r = h1.vd.docker("stats", "--no-stream", "--format", "{{.Name}} {{.MemUsage}}", "talker")
        assert r.stdout.split()[0] == "talker" and "iB / " in r.stdout, r.stdout

        # a wrong ticket is refused while n2 does not answer; n2 back serves the request
        os.kill(h2.vd.proc.pid, signal.SIGSTOP)
        try:
            waiting = subprocess.Popen([str(cl.build / "vessel"), "-H", h1.vd.host, "vm",
                                        "inspect", "echo1"], stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, text=True)
            tunnel = {}

            def tunnel_key():
                out = h1.etcdctl("get", "--prefix", "/vessel/tunnels/", "--print-value-only")
                if out.stdout.strip():
                    tunnel.update(json.loads(out.stdout.strip().splitlines()[0]))
                return tunnel
            wait_for("n1's tunnel key", tunnel_key, timeout=30, step=0.1)
            assert tunnel["Node"] == "n2" and tunnel["From"] == "n1", tunnel
            host, port = tunnel["Address"].rsplit(":", 1)
            bad = "0" * 64 if tunnel["Ticket"] != "0" * 64 else "1" * 64
            out = run("/usr/bin/python3", "-c", (
                "import socket,sys; s=socket.create_connection((sys.argv[1], int(sys.argv[2])),"
                " timeout=30); s.sendall(sys.argv[3].encode()+b'\\n'); "
                "print('dropped' if s.recv(1) == b'' else 'kept')"), host, port, bad, ns=h1.ns)
            assert out.stdout.strip() == "dropped", out.stdout
        finally:
            os.kill(h2.vd.proc.pid, signal.SIGCONT)
        out, err = waiting.communicate(timeout=120)
        assert waiting.returncode == 0, err
        assert '"echo1"' in out, out
    finally:
        h1.vessel("rm", "-f", "talker", check=False)
        remove_guests(cl)


# ------------------------------------------------------------------ last: a node removed

def test_removing_a_node_removes_its_images_and_a_returning_node_records_them_again(cl, image):
    """n3 holds busybox; its vesseld dies, its lease ends, `vessel node rm n3` forgets it: its
    record of images goes with it (an image listing never names a node the cluster forgot).
    Started again, n3 joins and records what its store holds."""
    h1, h2, h3 = cl.hosts
    assert "Loaded image" in h3.vd.docker("load", "-i", str(image)).stdout
    wait_for("busybox on n3", lambda: "n3" in (holders(h1, BUSYBOX) or []), timeout=60)
    h1.vessel("vm", "create", "stray", "--node", "n3", "--cpus", "1", "--memory", "32M",
              "--kernel", str(cl.kernel))
    h3.vd.kill9()

    def n3_down():
        # a node with no spec whose lease ended: 404 (it is known by its images alone)
        status, n = api(h1, "GET", "/vessel/v1/nodes/n3")
        return status == 404 or n["Status"] == "down"

    wait_for("n3 down", n3_down, timeout=60, step=0.5)
    # a request for its VM is refused at once, naming the node
    status, reply = api(h1, "POST", "/vessel/v1/vms/stray/start")
    assert status == 409 and reply["message"] == "VM stray is on node n3, which is down", reply
    h1.vessel("vm", "rm", "-f", "stray")
    # while it is down its images are still known (they are on its disk)
    assert "n3" in holders(h2, BUSYBOX)
    h1.vessel("node", "rm", "n3")
    assert etcd_json(h1, "/vessel/images/n3") is None
    r = h1.vessel("node", "rm", "n3", check=False)  # nothing of it left
    assert r.returncode != 0 and "No such node: n3" in r.stderr, r.stderr
    assert "n3" not in (holders(h2, BUSYBOX) or [])
    assert not any("n3" in i["Nodes"] for i in cluster_images(h2))
    h3.vd.start()
    wait_for("n3's images recorded again", lambda: "n3" in (holders(h1, BUSYBOX) or []),
             timeout=60)
