"""Networks across the nodes of a cluster (docs/cluster.md, "Networks across hosts"), on the
three-host cluster of tests/integration/cluster.py: three network namespaces joined by a bridge of
the test's own, a three-member etcd and a vesseld in each.

Shown: a network made on one node is made on every node (its bridge with the same gateway, a
VXLAN device with the cluster's VNI and the overlay's MTU, flooding to exactly the other nodes
that have the network, as that set grows and shrinks);
containers on different nodes reach each other by name; their addresses, claimed in etcd, are
unique across the nodes even when they start at the same moment; a container on n1 fetches a
page from a VM on n3 by the VM's name; the VM migrated to n2 keeps its address and answers
there; removing the network is refused while another node's guests are on it, and then removes
the VXLAN devices, their FDB entries and the cluster's keys on every node.
"""
import json
import os
import threading

import pytest

import cluster
import test_daemon
from cluster import run, wait_for

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root"),
    pytest.mark.skipif(not os.path.exists(cluster.ETCD), reason="no etcd-server (scripts/setup)"),
    pytest.mark.skipif(not os.path.exists(test_daemon.DOCKER), reason="no docker CLI"),
]

NET = "overlay"
SUBNET = "10.58.0"
NET_APPLETS = ["nc", "nslookup", "ping", "ip", "hostname", "httpd", "mkdir", "grep", "head",
               "cut"]


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    saved = list(test_daemon.EXTRA_APPLETS)
    test_daemon.EXTRA_APPLETS.extend(a for a in NET_APPLETS if a not in saved)
    try:
        return test_daemon.busybox_archive(tmp_path_factory.mktemp("image") / "busybox.tar")
    finally:
        test_daemon.EXTRA_APPLETS[:] = saved


@pytest.fixture(scope="module")
def cl(build_dir, guest_assets, image, tmp_path_factory):
    with cluster.running(build_dir, tmp_path_factory.mktemp("cluster"), guest_assets, name="n",
                         capacity="cpus=2,memory=1G") as c:
        for h in c.hosts:
            assert "Loaded image" in h.vd.docker("load", "-i", str(image)).stdout
        yield c


def links(host):
    return {l["ifname"]: l for l in json.loads(run("ip", "-j", "-d", "link", ns=host.ns).stdout)}


def vxlans(host):
    return {n: l for n, l in links(host).items()
            if l.get("linkinfo", {}).get("info_kind") == "vxlan"}


def flood_peers(host, dev):
    fdb = json.loads(run("bridge", "-j", "fdb", "show", "dev", dev, ns=host.ns).stdout or "[]")
    return sorted(e["dst"] for e in fdb if e.get("mac") == "00:00:00:00:00:00" and "dst" in e)


def etcd_keys(host, prefix):
    out = host.etcdctl("get", "--prefix", "--keys-only", prefix).stdout
    return [k for k in out.split() if k]


def networks(host):
    return host.vd.docker("network", "ls", "--format", "{{.Name}}").stdout.split()


def inspect(host, what):
    return json.loads(host.vd.docker("inspect", what).stdout)[0]


def ip_of(host, ctr):
    return inspect(host, ctr)["NetworkSettings"]["Networks"][NET]["IPAddress"]


def nslookup(host, ctr, name):
    r = host.vd.docker("exec", ctr, "nslookup", name, check=False)
    if r.returncode != 0:
        return None
    tail = r.stdout.split("Name:", 1)
    return tail[1].split("Address:", 1)[1].split()[0] if len(tail) > 1 and "Address:" in tail[1] \
        else None


def fetch(host, ctr, name, port):
    """The answer to GET / from name:port, through busybox nc in ctr ('' when nothing came)."""
    r = host.vd.docker("exec", ctr, "sh", "-c",
                       f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 10 {name} {port}",
                       check=False, timeout=60)
    return r.stdout if r.returncode == 0 else ""


def test_a_network_spans_the_nodes_and_containers_reach_each_other(cl):
    h1, h2, h3 = cl.hosts
    h1.vd.docker("network", "create", "--subnet", f"{SUBNET}.0/24", NET)
    [rec] = [json.loads(v) for v in h2.etcdctl("get", "--print-value-only",
                                               f"/vessel/networks/{NET}").stdout.split("\n") if v]
    assert rec["Subnet"] == f"{SUBNET}.0/24" and rec["Gateway"] == f"{SUBNET}.1"
    assert rec["Mtu"] == 1450 and rec["Vni"] >= 4096, rec
    # made on the node that took the create; the others make it once a guest there needs it
    wait_for(f"{NET} on n1", lambda: NET in networks(h1) and vxlans(h1), timeout=60)
    assert NET not in networks(h2) and not vxlans(h2) and not vxlans(h3)
    [n1_dev] = vxlans(h1)
    assert flood_peers(h1, n1_dev) == []  # no other node has the network
    # a network of that name again, from another node: refused by the cluster
    r = h3.vd.docker("network", "create", "--subnet", "10.59.0.0/24", NET, check=False)
    assert r.returncode != 0 and "already exists" in r.stderr, r.stderr
    # a server on n2 (which makes the network as the container names it), a client on n1
    h2.vd.docker("run", "-d", "--name", "srv", "--network", NET, "busybox", "sh", "-c",
                 "mkdir /w; echo served on n2 > /w/index.html; exec httpd -f -p 80 -h /w")
    h1.vd.docker("run", "-d", "--name", "cli", "--network", NET, "busybox", "sleep", "1000")
    assert NET not in networks(h3) and not vxlans(h3)  # no guest of n3 is on it
    for h in (h1, h2):
        wait_for(f"{NET} on {h.name}", lambda h=h: NET in networks(h) and vxlans(h), timeout=60)
        [(dev, vx)] = vxlans(h).items()
        data = vx["linkinfo"]["info_data"]
        assert data["id"] == rec["Vni"] and data["port"] == 4789 and data["local"] == h.ip, data
        assert vx["mtu"] == 1450 and vx["master"].startswith("br-"), vx
        bridge = links(h)[vx["master"]]
        assert bridge["mtu"] == 1450
        addrs = json.loads(run("ip", "-j", "addr", "show", vx["master"], ns=h.ns).stdout)
        assert f"{SUBNET}.1" in [a["local"] for a in addrs[0]["addr_info"]]  # the same gateway
        others = sorted(o.ip for o in (h1, h2) if o is not h)  # n3 has not made it
        wait_for(f"{h.name} flooding to the other node that has it",
                 lambda h=h, dev=dev, others=others: flood_peers(h, dev) == others)
    # by name across the overlay
    srv_ip = ip_of(h2, "srv")
    assert srv_ip != ip_of(h1, "cli")
    assert wait_for("srv's name on n1", lambda: nslookup(h1, "cli", "srv") == srv_ip, timeout=60)
    page = wait_for("the page from n2", lambda: fetch(h1, "cli", "srv", 80), timeout=60, step=1)
    assert page.startswith("HTTP/1.1 200") and page.endswith("\nserved on n2\n"), page
    # the container's MTU is the overlay's
    link = h1.vd.docker("exec", "cli", "ip", "-o", "link", "show", "eth0").stdout
    assert " mtu 1450 " in link, link


def test_addresses_are_unique_across_nodes(cl):
    """Six containers started at once, two on each node: six addresses, each claimed in etcd
    by its node, none the gateway's."""
    names = {h: [f"u{h.name}{i}" for i in range(2)] for h in cl.hosts}
    errors = []

    def start(h, n):
        r = h.vd.docker("run", "-d", "--name", n, "--network", NET, "busybox", "sleep", "1000",
                        check=False, timeout=120)
        if r.returncode != 0:
            errors.append(r.stderr)

    threads = [threading.Thread(target=start, args=(h, n)) for h in cl.hosts for n in names[h]]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    ips = {n: ip_of(h, n) for h in cl.hosts for n in names[h]}
    assert len(set(ips.values())) == 6 and f"{SUBNET}.1" not in ips.values(), ips
    claims = {}
    out = cl.hosts[0].etcdctl("get", "--prefix", f"/vessel/netaddrs/{NET}/").stdout.split("\n")
    for k, v in zip(out[0::2], out[1::2]):
        claims[k.rsplit("/", 1)[1]] = json.loads(v)
    for h in cl.hosts:
        for n in names[h]:
            c = claims[ips[n]]
            assert c["Node"] == h.name and c["Id"] == inspect(h, n)["Id"], c
    for h in cl.hosts:
        h.vd.docker("rm", "-f", *names[h])
    gone = {f"/vessel/netaddrs/{NET}/{ip}" for ip in ips.values()}
    wait_for("their claims given back",
             lambda: not gone & set(etcd_keys(cl.hosts[0], f"/vessel/netaddrs/{NET}/")),
             timeout=60)


def test_a_container_on_n1_fetches_a_page_from_a_vm_on_n3_by_name(cl):
    from guestconsole import BOOT_TIMEOUT, PROMPT
    from test_daemon_vm import Console
    h1, h2, h3 = cl.hosts
    r = h1.vessel("vm", "create", "web", "--node", "n3", "--network", NET, "--memory", "256M",
                  "--disk-size", "16M", "--start", timeout=BOOT_TIMEOUT)
    assert "on node n3" in r.stderr
    st, vm = h3.api("GET", "/vessel/v1/vms/web")
    assert st == 200, vm
    ns = vm["NetworkSettings"]
    assert ns["Network"] == NET and ns["IPAddress"].startswith(SUBNET + "."), ns
    c = Console(type("E", (), {"vd": h3.vd}), "web", logs=True)
    try:
        c.expect(f"udhcpc: eth0 {ns['IPAddress']}/24 router {SUBNET}.1")
        c.expect(PROMPT)
        c.run("mkdir -p /www && echo vm on n3 says hi > /www/index.html && httpd -p 8080 -h /www")
    finally:
        c.close()
    assert wait_for("web's name on n1", lambda: nslookup(h1, "cli", "web") == ns["IPAddress"],
                    timeout=60)
    # n3 has the network now: every node floods to the two others
    for h in cl.hosts:
        [dev] = vxlans(h)
        others = sorted(o.ip for o in cl.hosts if o is not h)
        wait_for(f"{h.name} flooding to the two others",
                 lambda h=h, dev=dev, others=others: flood_peers(h, dev) == others, timeout=30)
    page = wait_for("the VM's page on n1", lambda: fetch(h1, "cli", "web", 8080), timeout=120,
                    step=1)
    assert page.endswith("\nvm on n3 says hi\n"), page


def test_a_migrated_vm_keeps_its_address(cl):
    h1, h2, h3 = cl.hosts
    before = h3.api("GET", "/vessel/v1/vms/web")[1]["NetworkSettings"]
    st, moved = h1.api("POST", "/vessel/v1/vms/web/migrate", {"Node": "n2"}, timeout=900)
    assert st == 200, moved
    after = moved["NetworkSettings"]
    assert after["IPAddress"] == before["IPAddress"] and after["MacAddress"] == before["MacAddress"]
    wait_for("web gone from n3", lambda: h3.api("GET", "/vessel/v1/vms/web")[0] == 404, timeout=60)
    # n1's VXLAN device sends web's frames to n2 now (the target's VMM announced the guest)
    [dev] = vxlans(h1)
    mac = before["MacAddress"]

    def learned_at():
        fdb = json.loads(run("bridge", "-j", "fdb", "show", "dev", dev, ns=h1.ns).stdout or "[]")
        return [e["dst"] for e in fdb if e.get("mac") == mac and "dst" in e]

    wait_for("web's MAC at n2 in n1's overlay", lambda: learned_at() == [h2.ip], timeout=30)
    assert nslookup(h1, "cli", "web") == before["IPAddress"]
    page = wait_for("the page from n2 now", lambda: fetch(h1, "cli", "web", 8080), timeout=120,
                    step=1)
    assert page.endswith("\nvm on n3 says hi\n"), page
    claim = json.loads(h1.etcdctl("get", "--print-value-only",
                                  f"/vessel/netaddrs/{NET}/{before['IPAddress']}").stdout)
    assert claim["Node"] == "n2" and claim["Id"] == "web", claim


def test_removing_the_network_removes_it_on_every_node(cl):
    h1, h2, h3 = cl.hosts
    # refused while another node's guests are on it
    r = h3.vd.docker("network", "rm", NET, check=False)
    assert r.returncode != 0 and "active endpoints" in r.stderr, r.stderr
    assert NET in networks(h3)
    h1.vessel("vm", "rm", "-f", "web", check=False)
    h1.vd.docker("rm", "-f", "cli")
    h2.vd.docker("rm", "-f", "srv")
    wait_for("the claims given back",
             lambda: etcd_keys(h1, f"/vessel/netaddrs/{NET}/") == [], timeout=60)
    # n2's last guests on it are gone: n2 removes its copy by itself (after 30 s unused), the
    # network stays in the cluster
    wait_for(f"{NET} gone from n2 alone", lambda: NET not in networks(h2) and not vxlans(h2),
             timeout=120, step=1)
    assert etcd_keys(h1, f"/vessel/networks/{NET}")
    # ...and the nodes that still have it (n1 and n3 remove theirs too once unused) flood
    # only to each other, not to n2

    def floods_follow():
        have = {h: list(vxlans(h)) for h in (h1, h3)}
        try:
            return all(flood_peers(h, devs[0]) == [o.ip for o in have if o is not h and have[o]]
                       for h, devs in have.items() if devs)
        except AssertionError:  # a device removed meanwhile: look again
            return False

    wait_for("the flooding entries following the nodes that have it", floods_follow, timeout=30)
    h3.vd.docker("network", "rm", NET)
    for h in cl.hosts:
        wait_for(f"{NET} gone from {h.name}",
                 lambda h=h: NET not in networks(h) and not vxlans(h), timeout=60)
        fdb = run("bridge", "fdb", "show", ns=h.ns).stdout
        assert "vsvx-" not in fdb and "dst 10.77" not in fdb, fdb
        assert not [n for n in links(h) if n.startswith(("vsvx-", "br-"))]
    wait_for("the network's keys gone", lambda: etcd_keys(h1, "/vessel/net") == [], timeout=30)
