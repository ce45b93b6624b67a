"""Containers as guests of the cluster (docs/cluster.md, "Containers of the cluster"), on a
three-node cluster of this machine (tests/integration/cluster.py).

Shown: `vessel run -d` on one node makes a container of the cluster that the scheduler places
(anti-affinity keeps three replicas on three nodes; one that fits nowhere is refused with the
reason, and its record goes); `vessel ps` on any node lists them with their node; logs, stop,
start and rm of a container of another node work from any node; an image that only a registry
has is pulled by the node the container lands on (and only there); and HA: kill -9 of a node's
vesseld and of its containers' monitors, and its `--restart always` containers run on the other
nodes within 30 s, each exactly once on the machine, while one without a policy stays with its
node; the node back removes its copies. `vessel node drain` makes a node's containers again on
the others, where the scheduler's rules (anti-affinity) put them.
"""
import os
import pathlib
import signal
import subprocess
import time

import pytest

import cluster
import oci_images
import test_daemon
from cluster import api, guests, run, wait_for

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root"),
    pytest.mark.skipif(not os.path.exists(cluster.ETCD), reason="no etcd-server (scripts/setup)"),
]

MARK = 400000 + os.getpid() % 100000  # the containers' `sleep N`: unique on this machine


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    return test_daemon.busybox_archive(tmp_path_factory.mktemp("image") / "busybox.tar")


@pytest.fixture(scope="module")
def cl(build_dir, guest_assets, image, tmp_path_factory):
    # every node declares 2 CPUs and 1 GiB, whatever this machine has
    with cluster.running(build_dir, tmp_path_factory.mktemp("cluster"), guest_assets, name="k",
                         capacity="cpus=2,memory=1G") as c:
        for h in c.hosts:
            assert "Loaded image" in h.vd.docker("load", "-i", str(image)).stdout
        yield c


def local_ctrs(host):
    """The node's own containers (its Docker API), by name."""
    status, body = host.api("GET", "/containers/json?all=1")
    assert status == 200, body
    return {c["Names"][0].lstrip("/"): c for c in body}


def sleepers(n):
    """Pids of the processes on this machine running `sleep n` (every node's are here)."""
    pids = []
    for p in pathlib.Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            argv = (p / "cmdline").read_bytes().split(b"\0")
            state = (p / "stat").read_text().split(") ", 1)[1][0]
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        if argv[:2] == [b"sleep", str(n).encode()] and state != "Z":
            pids.append(int(p.name))
    return pids


def running_on(host, name, node):
    g = guests(host).get(name)
    return g and g["Phase"] == "running" and g["Node"] == node and g


def remove_all(c):
    h1 = c.hosts[0]
    for name, g in guests(h1).items():
        if g["Kind"] == "container":
            h1.vessel("rm", "-f", name)
    wait_for("the containers of the cluster gone",
             lambda: not any(cluster_made(h) for h in c.hosts), timeout=30, step=0.2)


def cluster_made(host):
    return [n for n, c in local_ctrs(host).items() if "vessel.cluster.node" in c["Labels"]]


def test_placement_apart_refusal_and_ps_from_any_node(cl):
    h1, h2, h3 = cl.hosts
    nodes = {}
    for i in (1, 2, 3):
        r = h1.vessel("run", "-d", "--name", f"web{i}", "--label", "app=web", "--anti-affinity",
                      "app=web", "--cpus", "0.5", "--memory", "64M", "busybox", "sleep",
                      str(MARK + i))
        assert len(r.stdout.strip()) == 64, r.stdout  # the container's ID
        nodes[f"web{i}"] = r.stderr.strip().rsplit(" ", 1)[1]
    assert sorted(nodes.values()) == ["n1", "n2", "n3"], nodes
    g = guests(h2)
    for name, node in nodes.items():
        rec = g[name]
        assert rec["Kind"] == "container" and rec["Node"] == node and rec["Phase"] == "running"
        assert rec["Cpus"] == 0.5 and rec["Memory"] == 64 << 20 and rec["Image"] == "busybox"
        host = cl.hosts[int(node[1:]) - 1]
        local = local_ctrs(host)[name]
        assert local["Id"] == rec["Id"] and local["State"] == "running", local
        assert local["Labels"]["vessel.cluster.node"] == node
        assert local["Labels"]["app"] == "web"
        for other in cl.hosts:
            if other is not host:
                assert name not in local_ctrs(other)
        assert len(sleepers(MARK + int(name[3:]))) == 1
    # a node's Docker API lists its own containers, and carries a request naming a container
    # of the cluster on another node to that node: n3 answers with n1's container
    on_n1 = [n for n, node in nodes.items() if node == "n1"][0]
    status, doc = h3.api("GET", f"/containers/{on_n1}/json")
    assert status == 200 and doc["Id"] == g[on_n1]["Id"], doc
    assert on_n1 not in local_ctrs(h3)

    # a fourth replica: every node hosts one already
    r = h2.vessel("run", "-d", "--name", "web4", "--label", "app=web", "--anti-affinity",
                  "app=web", "busybox", "sleep", "1", check=False)
    assert r.returncode != 0
    assert "cannot place container web4: " in r.stderr, r.stderr
    for n in ("n1", "n2", "n3"):
        assert f"{n}: anti-affinity: it hosts web" in r.stderr, r.stderr
    # one that fits on no node: each node says why
    r = h3.vessel("run", "-d", "--name", "big", "--cpus", "3", "busybox", "sleep", "1",
                  check=False)
    assert r.returncode != 0
    assert "cannot place container big: no node can take 3.00 CPUs" in r.stderr, r.stderr
    assert "n1: " in r.stderr and "n2: " in r.stderr and "n3: " in r.stderr, r.stderr
    g = guests(h1)
    assert "web4" not in g and "big" not in g  # a refused guest's record is removed
    # the same name from another node: the cluster has it
    r = h3.vessel("run", "-d", "--name", "web1", "busybox", "sleep", "1", check=False)
    assert r.returncode != 0 and "already in use by a guest of the cluster" in r.stderr

    # ps on every node: the cluster's containers with their node, and the node's own
    h2.vd.docker("run", "-d", "--name", "mine2", "busybox", "sleep", str(MARK + 9))
    for h in cl.hosts:
        out = h.vessel("ps").stdout.splitlines()
        assert out[0].split()[-2:] == ["NODE", "NAMES"], out[0]
        rows = {line.split()[-1]: line.split()[-2] for line in out[1:]}
        for name, node in nodes.items():
            assert rows.get(name) == node, (h.name, out)
        if h is h2:
            assert rows.get("mine2") == "-", out  # a container of n2 alone
        else:
            assert "mine2" not in rows
    h2.vd.docker("rm", "-f", "mine2")
    remove_all(cl)
    assert not any(sleepers(MARK + i) for i in (1, 2, 3))


def test_logs_stop_start_rm_from_other_nodes(cl):
    h1, h2, h3 = cl.hosts
    r = h1.vessel("run", "-d", "--name", "echoer", "--node", "n2", "busybox", "sh", "-c",
                  f"echo hello-from-n2; echo to-stderr >&2; exec sleep {MARK + 20}")
    assert r.stderr.strip() == "echoer: on node n2", r.stderr
    assert "echoer" in local_ctrs(h2)

    def logs_have_both():
        r = h1.vessel("logs", "echoer")
        return "hello-from-n2" in r.stdout and "to-stderr" in r.stderr and r

    r = wait_for("echoer's output from n1", logs_have_both, timeout=30, step=0.5)
    assert "to-stderr" not in r.stdout and "hello-from-n2" not in r.stderr
    status, body = api(h3, "GET", "/vessel/v1/containers/echoer/logs?tail=1")
    assert status == 200 and body["Node"] == "n2", body
    assert [o["Text"] for o in body["Output"]] in (["to-stderr\n"], ["hello-from-n2\n"]), body
    # followed from n3 (the request is carried to n2): its output comes, and the stream stays
    f = subprocess.Popen([str(cl.build / "vessel"), "-H", h3.vd.host, "logs", "-f", "echoer"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out = b""
        while b"hello-from-n2\n" not in out:
            b = os.read(f.stdout.fileno(), 65536)
            assert b, (out, f.stderr.read())
            out += b
        assert f.poll() is None
    finally:
        f.kill()
        f.wait()

    # stop from n1: the container stops on n2, and the record says so (HA leaves it stopped)
    assert h1.vessel("stop", "-t", "1", "echoer").stdout.strip() == "echoer"
    assert local_ctrs(h2)["echoer"]["State"] == "exited"
    rec = wait_for("echoer's record stopped",
                   lambda: guests(h3)["echoer"]["Phase"] == "created" and guests(h3)["echoer"],
                   timeout=30, step=0.2)
    assert not sleepers(MARK + 20)
    # start from n3
    assert h3.vessel("start", "echoer").stdout.strip() == "echoer"
    assert local_ctrs(h2)["echoer"]["State"] == "running"
    wait_for("echoer's record running", lambda: guests(h1)["echoer"]["Phase"] == "running",
             timeout=30, step=0.2)
    assert len(sleepers(MARK + 20)) == 1 and rec["Id"] == guests(h1)["echoer"]["Id"]

    # rm from n1: refused while it runs, then forced
    r = h1.vessel("rm", "echoer", check=False)
    assert r.returncode != 0 and "echoer is running on node n2" in r.stderr, r.stderr
    assert h1.vessel("rm", "-f", "echoer").stdout.strip() == "echoer"
    wait_for("echoer gone from n2", lambda: "echoer" not in local_ctrs(h2), timeout=30, step=0.2)
    assert "echoer" not in guests(h1) and not sleepers(MARK + 20)
    r = h1.vessel("logs", "echoer", check=False)
    assert r.returncode != 0 and "No such container" in r.stderr
    # docker rm on its node: the record goes with the container (nothing makes it again there)
    h1.vessel("run", "-d", "--name", "plain", "--node", "n2", "busybox", "sleep", str(MARK + 21))
    assert local_ctrs(h2)["plain"]["State"] == "running"
    h2.vd.docker("rm", "-f", "plain")
    wait_for("plain's record gone", lambda: "plain" not in guests(h1), timeout=30, step=0.2)
    assert "plain" not in local_ctrs(h2) and not sleepers(MARK + 21)


def test_an_image_only_in_a_registry_is_pulled_by_its_node(cl, tmp_path):
    """The registry answers on n2's loopback alone (it runs in n2's namespace): n1 takes the
    request, n2 pulls the image when the container lands there."""
    h1, h2, h3 = cl.hosts
    port = oci_images.free_port()
    (tmp_path / "storage").mkdir()
    cfg = tmp_path / "config.yml"
    cfg.write_text(f"""version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: {tmp_path / "storage"}
http:
  addr: 127.0.0.1:{port}
""")
    log = open(tmp_path / "registry.log", "w")
    reg = subprocess.Popen(["nsenter", f"--net={h2.ns}", "/usr/bin/docker-registry", "serve",
                            str(cfg)], stdout=log, stderr=subprocess.STDOUT)
    cl.pids.add(reg.pid)
    try:
        layout = tmp_path / "layout"
        desc = oci_images.make_image(layout, [oci_images.busybox_layer().tar()],
                                     cmd=["sleep", str(MARK + 30)], env=["PATH=/bin"])
        oci_images.write_index(layout, [(desc, "1")], "1")
        ref = f"127.0.0.1:{port}/only/app:1"
        wait_for("the registry in n2's namespace",
                 lambda: run("skopeo", "copy", "--quiet", "--dest-tls-verify=false",
                             f"oci:{layout}:1", f"docker://{ref}", ns=h2.ns,
                             check=False).returncode == 0, timeout=30, step=0.5)
        r = h1.vessel("run", "-d", "--name", "pulled", "--node", "n2", ref)
        assert r.stderr.strip() == "pulled: on node n2", r.stderr
        assert local_ctrs(h2)["pulled"]["State"] == "running"
        assert "pulled " + ref in h2.vd.log_text()
        assert len(sleepers(MARK + 30)) == 1
        status, imgs = h2.api("GET", "/images/json")
        assert any(ref in (i.get("RepoTags") or []) for i in imgs), imgs
        for h in (h1, h3):
            status, imgs = h.api("GET", "/images/json")
            assert not any(ref in (i.get("RepoTags") or []) for i in imgs), (h.name, imgs)
        # one that its node cannot pull: the create says which node and why
        bad = f"127.0.0.1:{port}/none/app:1"
        r = h1.vessel("run", "-d", "--name", "nopull", "--node", "n3", bad, check=False)
        assert r.returncode != 0
        assert (f"cannot create container nopull: on node n3: image {bad}: not in this host's "
                "image store, and pulling it from its registry failed") in r.stderr, r.stderr
        assert "nopull" not in guests(h1)
        wait_for("nopull's copy gone", lambda: "nopull" not in local_ctrs(h3), timeout=30)
        h3.vessel("rm", "-f", "pulled")
        wait_for("pulled gone", lambda: not sleepers(MARK + 30), timeout=30, step=0.2)
    finally:
        reg.terminate()
        reg.wait(10)
        log.close()


def test_drain_makes_a_nodes_containers_again_elsewhere(cl):
    """drain n2: its two containers are placed again (n2 draining) and made on their new nodes,
    n2 removes its copies; dw2's anti-affinity keeps it off n1, where dw1 runs."""
    h1, h2, h3 = cl.hosts
    h1.vessel("run", "-d", "--name", "dw1", "--node", "n1", "--label", "app=dw", "busybox",
              "sleep", str(MARK + 51))
    h1.vessel("run", "-d", "--name", "dw2", "--node", "n2", "--label", "app=dw",
              "--anti-affinity", "app=dw", "busybox", "sleep", str(MARK + 52))
    h1.vessel("run", "-d", "--name", "dp", "--node", "n2", "busybox", "sleep", str(MARK + 53))
    r = h3.vessel("node", "drain", "n2", timeout=600)
    moved = {l.split()[0]: l.split()[1:] for l in r.stdout.splitlines()}
    assert moved["dw2"] == ["n2", "->", "n3"], r.stdout  # n1 hosts dw1 (app=dw)
    assert moved["dp"][:2] == ["n2", "->"] and moved["dp"][2] in ("n1", "n3"), r.stdout
    to = {"dw2": "n3", "dp": moved["dp"][2]}
    g = guests(h2)
    for n, node in to.items():
        assert g[n]["Node"] == node and g[n]["Phase"] == "running", g[n]
        assert g[n]["Moved"]["From"] == "n2", g[n]
        local = local_ctrs(cl.hosts[int(node[1:]) - 1])[n]
        assert local["State"] == "running" and local["Id"] == g[n]["Id"], local
    wait_for("n2's copies removed", lambda: not {"dw2", "dp"} & set(local_ctrs(h2)), timeout=30,
             step=0.2)
    assert len(sleepers(MARK + 52)) == 1 and len(sleepers(MARK + 53)) == 1
    rows = {line.split()[-1]: line.split()[-2] for line in h1.vessel("ps").stdout.splitlines()[1:]}
    assert rows["dw2"] == "n3" and rows["dp"] == to["dp"] and rows["dw1"] == "n1", rows
    h1.vessel("node", "uncordon", "n2")
    remove_all(cl)


def fencer_holds(vesseld_pid):
    """The pids the fencer of that vesseld holds pidfds of (what it kills when vesseld is gone)."""
    held = set()
    for p in pathlib.Path("/proc").iterdir():
        try:
            if not p.name.isdigit() or (p / "comm").read_text().strip() != "vessel-fencer":
                continue
            if monitor_of(int(p.name)) != vesseld_pid:
                continue
            for info in (p / "fdinfo").iterdir():
                for line in info.read_text().splitlines():
                    if line.startswith("Pid:"):
                        held.add(int(line.split()[1]))
        except (FileNotFoundError, ProcessLookupError):
            continue
    return held


def monitor_of(pid):
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(") ", 1)[1].split()[1])


def test_ha_restarts_containers_of_a_dead_node_once(cl):
    """kill -9 of n2's vesseld and of its containers' monitors: n2's fencer kills the
    containers themselves before its lease ends; the leader places the ones with
    `--restart always` on n1 and n3, which pull nothing (they have the image) and start them:
    each runs exactly once on the machine. One without a policy stays with n2. n2 back: it
    removes its copies and starts none of them."""
    h1, h2, h3 = cl.hosts
    names = {"ha1": MARK + 41, "ha2": MARK + 42}
    for n, mark in names.items():
        h1.vessel("run", "-d", "--name", n, "--node", "n2", "--restart", "always", "busybox",
                  "sleep", str(mark))
    h1.vessel("run", "-d", "--name", "plain", "--node", "n2", "busybox", "sleep", str(MARK + 43))
    old = {n: sleepers(m) for n, m in list(names.items()) + [("plain", MARK + 43)]}
    assert all(len(p) == 1 for p in old.values()), old
    monitors = [monitor_of(p[0]) for p in old.values()]
    # the watchdog hands the fencer the guests' pidfds at its next look (every 200 ms)
    wait_for("n2's fencer holding its containers",
             lambda: {p[0] for p in old.values()} <= fencer_holds(h2.vd.proc.pid), timeout=30)
    h2.vd.kill9()
    for pid in monitors:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def moved():
        g = guests(h1)
        return all(g[n]["Phase"] == "running" and g[n]["Node"] in ("n1", "n3") for n in names) and g

    g = wait_for("n2's containers running on n1 and n3", moved, timeout=45, step=0.2)
    for n, mark in names.items():
        rec = g[n]
        host = cl.hosts[int(rec["Node"][1:]) - 1]
        wait_for(f"{n} running on {rec['Node']}",
                 lambda: local_ctrs(host).get(n, {}).get("State") == "running", timeout=30)
        assert local_ctrs(host)[n]["Id"] == rec["Id"]
        assert rec["Failover"]["From"] == "n2", rec
        assert len(sleepers(mark)) == 1, n  # the old one was fenced
        assert old[n][0] not in sleepers(mark)
    assert g["plain"]["Node"] == "n2", g["plain"]
    assert not sleepers(MARK + 43)  # killed with n2's guests: no policy, nobody restarts it
    assert "killed its VMMs of the cluster" in h2.vd.log_text()

    h2.vd.start()
    wait_for("n2's copies removed", lambda: not set(names) & set(local_ctrs(h2)), timeout=45,
             step=0.2)
    g = guests(h1)
    for n, mark in names.items():
        assert g[n]["Node"] in ("n1", "n3") and len(sleepers(mark)) == 1
    assert local_ctrs(h2)["plain"]["State"] != "running"
    remove_all(cl)
