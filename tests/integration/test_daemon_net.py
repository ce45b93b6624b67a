"""vesseld's networks (the virtual switch of src/net wired into the daemon), driven by the stock
docker CLI and raw API requests, as Docker's bridge driver behaves (dockerd 20.10).

Everything happens in network namespaces this test makes and removes: vesseld runs in "host"
(under `nsenter --net=`), which has an uplink to "outside", another machine with a small TCP
server. vesseld makes its default bridge vessel0, user networks' bridges, the containers'
namespaces and veths and its nftables tables in "host" only; at the end every container and
network is removed through the API, and removing the namespaces takes what is left (vessel0, as
docker0 stays after dockerd). Nothing is made in the test's own namespace.

Shown: the network API (create with subnet, gateway, ip-range, internal, bridge name, MTU and
labels; ls, inspect with containers, rm refused while in use, prune, events); containers on a
user network reach each other by name and alias through the embedded DNS, a container on another
network can neither resolve nor reach them, the default bridge has addresses but no names;
--ip, --mac-address, --network none|host|container:; published ports (-p HOST:CTR, -p
IP:HOST:CTR, -P with EXPOSE) answer from the outside and from the daemon namespace's loopback,
and `docker port` lists them; outbound traffic is masqueraded, not from an internal network;
connect and disconnect of a running container; a kill -9 and restart of vesseld keeps the
addresses and a TCP connection through a published port; bad input gets a clear error and leaves
no interface, rule or namespace behind.
"""
import json
import os
import shutil
import signal
import subprocess
import time

import pytest

import test_daemon
import test_net
from test_net import CLIENT, KEEP_CLIENT, run

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root"),
    pytest.mark.skipif(not os.path.exists(test_daemon.DOCKER), reason="no docker CLI"),
]

UPLINK_HOST = "192.0.2.1"
UPLINK_OUTSIDE = "192.0.2.2"
PY = "/usr/bin/python3"
NET_APPLETS = ["nc", "nslookup", "ping", "ip", "hostname", "httpd", "mkdir", "grep", "head",
               "cut"]

# a TCP client that sends an HTTP request and prints the first line of the answer
HTTP_GET = """
import socket, sys, time
deadline = time.time() + float(sys.argv[3])
while True:
    try:
        c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3)
        c.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n")
        data = b""
        while True:
            b = c.recv(4096)
            if not b:
                break
            data += b
        if data:
            break
    except OSError as e:
        if time.time() > deadline:
            sys.exit("connect: %s" % e)
    time.sleep(0.1)
print(data.decode().split("\\r\\n\\r\\n", 1)[-1].strip())
"""


def http_get(ns, ip, port, wait=10.0):
    r = run(PY, "-c", HTTP_GET, ip, port, wait, ns=ns, check=False)
    return r.stdout.strip() if r.returncode == 0 else None


class NsVesseld(test_daemon.Vesseld):
    """test_daemon's private vesseld, run inside a network namespace, with the default bridge."""

    def __init__(self, build_dir, root, ns):
        super().__init__(build_dir, root, prefix=["nsenter", f"--net={ns}"], bridge="vessel0")

    def api(self, method, path, body=None):
        """A raw API request: (status, decoded JSON or text)."""
        data = json.dumps(body).encode() if body is not None else b""
        req = (f"{method} /v1.41{path} HTTP/1.1\r\nHost: d\r\nConnection: close\r\n"
               f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n").encode()
        out = self.raw(req + data)
        return test_daemon.decode_reply(out)


class World(test_net.World):
    """The "host" namespace vesseld runs in, and the "outside" it reaches over an uplink."""

    def __init__(self):  # pylint: disable=super-init-not-called (no net-tool, no state)
        self.netns = []
        self.procs = []
        self.host = self.add_netns("dh")
        self.outside = self.add_netns("do")
        run("ip", "link", "add", "up0", "netns", f"{test_net.PREFIX}-dh", "type", "veth", "peer",
            "name", "up0", "netns", f"{test_net.PREFIX}-do")
        run("ip", "addr", "add", f"{UPLINK_HOST}/24", "dev", "up0", ns=self.host)
        run("ip", "link", "set", "up0", "up", ns=self.host)
        run("ip", "addr", "add", f"{UPLINK_OUTSIDE}/24", "dev", "up0", ns=self.outside)
        run("ip", "link", "set", "up0", "up", ns=self.outside)
        # a host has a default route; the daemon's DNS forwards to the host's resolver through it
        run("ip", "route", "add", "default", "via", UPLINK_OUTSIDE, ns=self.host)


def own_links():
    return sorted(l["ifname"] for l in json.loads(run("ip", "-j", "link").stdout))


@pytest.fixture(scope="module")
def image_tar(tmp_path_factory):
    saved = list(test_daemon.EXTRA_APPLETS)
    test_daemon.EXTRA_APPLETS.extend(a for a in NET_APPLETS if a not in saved)
    try:
        return test_daemon.busybox_archive(tmp_path_factory.mktemp("image") / "busybox.tar")
    finally:
        test_daemon.EXTRA_APPLETS[:] = saved


@pytest.fixture(scope="module")
def world():
    before = own_links()
    w = World()
    try:
        yield w
    finally:
        w.cleanup()
    assert own_links() == before, "interfaces appeared in the test's own namespace"


@pytest.fixture(scope="module")
def vd(build_dir, tmp_path_factory, world, image_tar):
    root = tmp_path_factory.mktemp("vdnet")
    d = NsVesseld(build_dir, root, world.host)
    d.world = world
    d.docker("load", "-i", str(image_tar))
    try:
        yield d
    finally:
        d.cleanup()
        # the containers' namespace mounts went with them
        mounts = [l for l in open("/proc/self/mounts") if str(root) in l]
        assert not mounts, mounts


@pytest.fixture
def vdn(vd):
    """The module's vesseld; every container and user network is removed after the test."""
    yield vd
    ids = vd.docker("ps", "-aq", check=False).stdout.split()
    if ids:
        vd.docker("rm", "-f", *ids, check=False)
    for n in json.loads(vd.docker("network", "ls", "--format", "{{json .Name}}").stdout
                        .replace("\n", ",").rstrip(",").join("[]")):
        if n not in ("bridge", "host", "none"):
            vd.docker("network", "rm", n, check=False)
    assert sorted(os.listdir(vd.exec_root / "netns")) == []
    assert [l for l in links(vd.world.host) if l.startswith("vsv-")] == []


def links(ns):
    return sorted(l["ifname"] for l in json.loads(run("ip", "-j", "link", ns=ns).stdout))


def link(ns, name):
    return json.loads(run("ip", "-j", "-d", "link", "show", name, ns=ns).stdout)[0]


def snapshot(ns, d):
    """What a refused request must leave as it was."""
    return (links(ns), run("nft", "list", "ruleset", ns=ns).stdout,
            sorted(os.listdir(d.exec_root / "netns")), d.docker("network", "ls", "-q").stdout)


def inspect(d, what):
    return json.loads(d.docker("inspect", what).stdout)[0]


def ip_of(d, ctr, network):
    return inspect(d, ctr)["NetworkSettings"]["Networks"][network]["IPAddress"]


def nslookup(d, ctr, name):
    """The address busybox nslookup gets for name inside ctr, or None."""
    r = d.docker("exec", ctr, "nslookup", name, check=False)
    if r.returncode != 0:
        return None
    tail = r.stdout.split("Name:", 1)
    return tail[1].split("Address:", 1)[1].split()[0] if len(tail) > 1 and "Address:" in tail[1] \
        else None


def test_default_networks_and_bridge(vdn):
    d, w = vdn, vdn.world
    nets = {n["Name"]: n for n in json.loads(d.docker("network", "ls", "--format",
                                                      "{{json .}}").stdout.replace("\n", ",")
                                             .rstrip(",").join("[]"))}
    assert {k: v["Driver"] for k, v in nets.items()} == {"bridge": "bridge", "host": "host",
                                                         "none": "null"}
    b = json.loads(d.docker("network", "inspect", "bridge").stdout)[0]
    assert b["IPAM"]["Config"] == [{"Subnet": "172.17.0.0/16", "Gateway": "172.17.0.1"}]
    assert b["Options"]["com.docker.network.bridge.name"] == "vessel0"
    addrs = json.loads(run("ip", "-j", "addr", "show", "vessel0", ns=w.host).stdout)[0]
    assert [a["local"] for a in addrs["addr_info"] if a["family"] == "inet"] == ["172.17.0.1"]
    rm = d.docker("network", "rm", "bridge", check=False)
    assert rm.returncode != 0 and "pre-defined network and cannot be removed" in rm.stderr
    # a container on the default bridge: an address, the host's resolv.conf, no names
    d.docker("run", "-d", "--name", "plain", "busybox", "sleep", "1000")
    s = inspect(d, "plain")["NetworkSettings"]
    assert s["IPAddress"] == "172.17.0.2" and s["Gateway"] == "172.17.0.1"
    assert s["MacAddress"] == "02:42:ac:11:00:02" and s["IPPrefixLen"] == 16
    assert s["Networks"]["bridge"]["IPAddress"] == "172.17.0.2"
    hosts = d.docker("exec", "plain", "cat", "/etc/hosts").stdout
    assert "172.17.0.2\t" in hosts
    assert d.docker("exec", "plain", "cat", "/etc/resolv.conf").stdout == \
        open("/etc/resolv.conf").read()
    d.docker("run", "-d", "--name", "plain2", "busybox", "sleep", "1000")
    assert nslookup(d, "plain2", "plain") is None
    assert d.docker("exec", "plain2", "ping", "-c", "1", "-W", "2", "172.17.0.2",
                    check=False).returncode == 0
    insp = json.loads(d.docker("network", "inspect", "bridge").stdout)[0]
    assert sorted(c["Name"] for c in insp["Containers"].values()) == ["plain", "plain2"]


def test_network_api(vdn):
    d, w = vdn, vdn.world
    since = time.time()
    nid = d.docker("network", "create", "--subnet", "10.31.0.0/24", "--gateway", "10.31.0.254",
                   "--ip-range", "10.31.0.128/25", "-o", "com.docker.network.bridge.name=" +
                   f"{test_net.PREFIX}b", "-o", "com.docker.network.driver.mtu=1400", "--label",
                   "team=x", "front").stdout.strip()
    n = json.loads(d.docker("network", "inspect", "front").stdout)[0]
    assert n["Id"] == nid and n["Driver"] == "bridge" and n["Scope"] == "local"
    assert n["IPAM"]["Config"] == [{"Subnet": "10.31.0.0/24", "Gateway": "10.31.0.254",
                                    "IPRange": "10.31.0.128/25"}]
    assert n["Labels"] == {"team": "x"} and n["Internal"] is False
    assert link(w.host, f"{test_net.PREFIX}b")["mtu"] == 1400
    # a network without a subnet takes the next of Docker's pools
    d.docker("network", "create", "auto1")
    auto = json.loads(d.docker("network", "inspect", "auto1").stdout)[0]
    assert auto["IPAM"]["Config"] == [{"Subnet": "172.18.0.0/16", "Gateway": "172.18.0.1"}]
    assert f"br-{auto['Id'][:12]}" in links(w.host)
    d.docker("network", "create", "--internal", "inside")
    assert json.loads(d.docker("network", "inspect", "inside").stdout)[0]["Internal"] is True
    assert d.docker("network", "ls", "-q", "--filter", "label=team=x").stdout.split() == [nid[:12]]
    assert d.docker("network", "inspect", "-f", "{{.Name}}", nid[:10]).stdout.strip() == "front"
    # a container's address comes from the ip-range; inspect lists it
    d.docker("run", "-d", "--name", "member", "--network", "front", "busybox", "sleep", "1000")
    assert ip_of(d, "member", "front") == "10.31.0.128"
    cs = json.loads(d.docker("network", "inspect", "front").stdout)[0]["Containers"]
    assert [(c["Name"], c["IPv4Address"]) for c in cs.values()] == [("member", "10.31.0.128/24")]
    busy = d.docker("network", "rm", "front", check=False)
    assert busy.returncode != 0 and "has active endpoints" in busy.stderr
    # prune takes the unused ones only
    pruned = d.docker("network", "prune", "-f").stdout
    assert "auto1" in pruned and "inside" in pruned and "front" not in pruned
    # a container that ended on its own holds no endpoint once a wait says it ended (dockerd
    # releases the network before it reports the exit): checked at once, through the raw API
    d.docker("run", "-d", "--name", "brief", "--network", "front", "busybox", "true")
    assert d.docker("wait", "brief").stdout.strip() == "0"
    st, brief = d.api("GET", "/containers/brief/json")
    assert st == 200 and brief["NetworkSettings"]["Networks"]["front"]["IPAddress"] == "", brief
    assert len([l for l in links(w.host) if l.startswith("vsv-")]) == 1  # member's
    d.docker("rm", "brief")
    # a stopped container holds no endpoint: the network can go at once
    d.docker("stop", "-t", "1", "member")
    d.docker("network", "rm", "front")
    d.docker("rm", "member")
    assert f"{test_net.PREFIX}b" not in links(w.host)
    assert d.docker("network", "inspect", "front", check=False).returncode != 0
    ev = d.docker("events", "--since", str(int(since)), "--until", str(int(time.time()) + 1),
                  "--filter", "type=network", "--format",
                  "{{.Action}} {{.Actor.Attributes.name}}").stdout.splitlines()
    ev = [e for e in ev if e.split()[1] in ("front", "auto1", "inside")]
    assert ev[:3] == ["create front", "create auto1", "create inside"]
    assert "connect front" in ev and "disconnect front" in ev and ev[-1] == "destroy front"


def test_names_on_a_user_network(vdn):
    d = vdn
    d.docker("network", "create", "--subnet", "10.32.0.0/24", "apps")
    d.docker("network", "create", "--subnet", "10.33.0.0/24", "others")
    d.docker("run", "-d", "--name", "web", "--network", "apps", "--network-alias", "www",
             "busybox", "sh", "-c", "mkdir /w; echo hello from web > /w/index.html; "
                                    "exec httpd -f -p 80 -h /w")
    d.docker("run", "-d", "--name", "client", "--network", "apps", "--hostname", "cl1",
             "busybox", "sleep", "1000")
    d.docker("run", "-d", "--name", "stranger", "--network", "others", "busybox", "sleep",
             "1000")
    web = ip_of(d, "web", "apps")
    assert web == "10.32.0.2" and ip_of(d, "client", "apps") == "10.32.0.3"
    assert d.docker("exec", "client", "cat", "/etc/resolv.conf").stdout.startswith(
        "nameserver 10.32.0.1\n")
    assert d.docker("exec", "client", "hostname").stdout.strip() == "cl1"
    # the container's DNS options and extra hosts beside the network's name server
    r = d.docker("run", "--rm", "--network", "apps", "--dns-search", "example.org",
                 "--dns-option", "attempts:2", "--add-host", "db:10.1.2.3", "busybox", "sh",
                 "-c", "cat /etc/resolv.conf; echo ---; cat /etc/hosts")
    resolv, hosts = r.stdout.split("---\n")
    assert resolv == "nameserver 10.32.0.1\nsearch example.org\noptions ndots:0 attempts:2\n"
    assert "10.1.2.3\tdb\n" in hosts
    # --dns: the network's server forwards the container's other names there (Docker's way)
    up = subprocess.Popen(["nsenter", f"--net={d.world.outside}", PY, "-c",
                           test_net.UPSTREAM_DNS, "53"], stdout=subprocess.PIPE, text=True)
    try:
        assert up.stdout.readline().strip() == "listening"
        r = d.docker("run", "--rm", "--network", "apps", "--dns", UPLINK_OUTSIDE, "busybox",
                     "sh", "-c", "cat /etc/resolv.conf; nslookup example.org")
        assert r.stdout.startswith("nameserver 10.32.0.1\n")
        assert "Address: 203.0.113.7" in r.stdout
    finally:
        up.kill()
        up.wait()
    short = inspect(d, "web")["Id"][:12]
    for name in ["web", "www", "WEB", short]:
        assert nslookup(d, "client", name) == web, name
    assert nslookup(d, "client", "cl1") is None  # a hostname is not a name on the network
    # the same over TCP, from the container's namespace (busybox nslookup speaks UDP only)
    pid = inspect(d, "client")["State"]["Pid"]
    tcp = run(PY, "-c", TCP_DNS, "www", "10.32.0.1", ns=f"/proc/{pid}/ns/net").stdout
    assert tcp.splitlines() == [f"{web} 0", f"{web} 0"]
    assert d.docker("exec", "client", "ping", "-c", "1", "-W", "3", "web").returncode == 0
    page = d.docker("exec", "client", "sh", "-c",
                    "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 5 www 80").stdout
    assert page.endswith("hello from web\n")
    # a renamed container answers to its new name at once, and no longer to the old one
    d.docker("rename", "web", "web2")
    assert nslookup(d, "client", "web2") == web
    assert nslookup(d, "client", "web") is None
    assert nslookup(d, "client", "www") == web
    # another network: no name, no route
    assert nslookup(d, "stranger", "web2") is None
    assert d.docker("exec", "stranger", "ping", "-c", "1", "-W", "2", web,
                    check=False).returncode != 0


# A DNS query over TCP (RFC 7766: two-byte length, then the message): prints the A records.
TCP_DNS = """
import socket, struct, sys
name, server = sys.argv[1], sys.argv[2]
q = struct.pack("!HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0)
q += b"".join(bytes([len(l)]) + l.encode() for l in name.split(".")) + b"\\0" + struct.pack("!HH", 1, 1)
c = socket.create_connection((server, 53), timeout=5)
for _ in range(2):  # two queries on one connection
    c.sendall(struct.pack("!H", len(q)) + q)
    n = struct.unpack("!H", c.recv(2))[0]
    r = b""
    while len(r) < n:
        r += c.recv(n - len(r))
    assert r[:2] == q[:2], r
    count, i = struct.unpack("!H", r[6:8])[0], len(q)
    ips = []
    for _ in range(count):
        i += 2
        rtype, _, _, rdlen = struct.unpack("!HHIH", r[i:i + 10])
        i += 10
        if rtype == 1:
            ips.append(socket.inet_ntoa(r[i:i + 4]))
        i += rdlen
    print(" ".join(ips) or "-", r[3] & 15)
"""


def test_addresses_and_modes(vdn):
    d, w = vdn, vdn.world
    d.docker("network", "create", "--subnet", "10.34.0.0/24", "fixed")
    d.docker("run", "-d", "--name", "pinned", "--network", "fixed", "--ip", "10.34.0.50",
             "busybox", "sleep", "1000")
    assert ip_of(d, "pinned", "fixed") == "10.34.0.50"
    taken = d.docker("run", "-d", "--name", "twin", "--network", "fixed", "--ip", "10.34.0.50",
                     "busybox", "sleep", "1000", check=False)
    assert taken.returncode != 0 and "10.34.0.50 is already in use" in taken.stderr
    # --mac-address (the CLI sends it per network only from API 1.44: the 1.41 field here)
    st, r = d.api("POST", "/containers/create?name=macd",
                  {"Image": "busybox", "Cmd": ["sleep", "1000"], "MacAddress": "02:aa:bb:cc:dd:ee",
                   "HostConfig": {"NetworkMode": "fixed"}})
    assert st == 201, r
    d.docker("start", "macd")
    assert inspect(d, "macd")["NetworkSettings"]["Networks"]["fixed"]["MacAddress"] == \
        "02:aa:bb:cc:dd:ee"
    assert "02:aa:bb:cc:dd:ee" in d.docker("exec", "macd", "ip", "link", "show", "eth0").stdout
    # none: only lo; host: the daemon namespace's interfaces; container:: the other's address
    none = d.docker("run", "--rm", "--network", "none", "busybox", "ip", "-o", "link").stdout
    assert [l.split(":")[1].strip() for l in none.splitlines()] == ["lo"]
    host = d.docker("run", "--rm", "--network", "host", "busybox", "ip", "-o", "link").stdout
    assert "up0" in host and "vessel0" in host
    shared = d.docker("run", "--rm", "--network", "container:pinned", "busybox", "ip", "-o", "-4",
                      "addr", "show", "eth0").stdout
    assert "10.34.0.50/24" in shared
    # connect and disconnect while running
    d.docker("network", "create", "--subnet", "10.35.0.0/24", "extra")
    d.docker("network", "connect", "--ip", "10.35.0.9", "--alias", "second", "extra", "pinned")
    addrs = d.docker("exec", "pinned", "ip", "-o", "-4", "addr").stdout
    assert "eth0" in addrs and "10.35.0.9/24" in addrs and "eth1" in addrs
    nets = inspect(d, "pinned")["NetworkSettings"]["Networks"]
    assert nets["extra"]["IPAddress"] == "10.35.0.9" and "second" in nets["extra"]["Aliases"]
    d.docker("run", "-d", "--name", "peer", "--network", "extra", "busybox", "sleep", "1000")
    assert nslookup(d, "peer", "second") == "10.35.0.9"
    routes = d.docker("exec", "pinned", "ip", "route", "show", "default").stdout
    assert routes.count("default") == 1 and "eth0" in routes
    again = d.docker("network", "connect", "extra", "pinned", check=False)
    assert again.returncode != 0 and "already exists" in again.stderr
    d.docker("network", "disconnect", "extra", "pinned")
    assert "10.35.0.9" not in d.docker("exec", "pinned", "ip", "-o", "-4", "addr").stdout
    assert "extra" not in inspect(d, "pinned")["NetworkSettings"]["Networks"]
    # a stopped container keeps its configured networks and gets its addresses at start again
    d.docker("stop", "-t", "1", "pinned")
    assert inspect(d, "pinned")["NetworkSettings"]["Networks"]["fixed"]["IPAddress"] == ""
    assert len([l for l in links(w.host) if l.startswith("vsv-")]) == 2  # macd and peer
    d.docker("start", "pinned")
    assert ip_of(d, "pinned", "fixed") == "10.34.0.50"


def test_published_ports(vdn):
    d, w = vdn, vdn.world
    d.docker("network", "create", "--subnet", "10.36.0.0/24", "pub")
    page = "mkdir /w; echo served by $(hostname) > /w/index.html; exec httpd -f -p 80 -h /w"
    d.docker("run", "-d", "--name", "p1", "--hostname", "p1", "--network", "pub", "-p",
             "8080:80", "busybox", "sh", "-c", page)
    d.docker("run", "-d", "--name", "p2", "--hostname", "p2", "-p", f"{UPLINK_HOST}:8081:80/tcp",
             "busybox", "sh", "-c", page)
    d.docker("run", "-d", "--name", "p3", "--hostname", "p3", "--expose", "80", "-P",
             "busybox", "sh", "-c", page)
    assert http_get(w.outside, UPLINK_HOST, 8080) == "served by p1"
    assert http_get(w.host, "127.0.0.1", 8080) == "served by p1"
    assert http_get(w.outside, UPLINK_HOST, 8081) == "served by p2"
    assert d.docker("port", "p1").stdout.strip() == "80/tcp -> 0.0.0.0:8080"
    assert d.docker("port", "p2", "80").stdout.strip() == f"{UPLINK_HOST}:8081"
    p3 = inspect(d, "p3")["NetworkSettings"]["Ports"]["80/tcp"]
    random_port = int(p3[0]["HostPort"])
    assert random_port >= 1024 and random_port not in (8080, 8081)
    assert http_get(w.outside, UPLINK_HOST, random_port) == "served by p3"
    ps = d.docker("ps", "--format", "{{.Names}} {{.Ports}}").stdout
    assert "p1 0.0.0.0:8080->80/tcp" in ps
    # a second claim of the port, and a port a program of the host listens on
    before = snapshot(w.host, d)
    dup = d.docker("run", "-d", "--name", "p4", "-p", "8080:80", "busybox", "sleep", "100",
                   check=False)
    assert dup.returncode != 0 and "host port 8080/tcp is already published by" in dup.stderr
    d.docker("rm", "-f", "p4")
    w.serve(w.host, 8090)
    busy = d.docker("run", "-d", "--name", "p5", "-p", "8090:80", "busybox", "sleep", "100",
                    check=False)
    assert busy.returncode != 0 and "8090/tcp is in use by another program" in busy.stderr
    d.docker("rm", "-f", "p5")
    assert snapshot(w.host, d) == before


def test_port_ranges(vdn):
    """-p 8100-8102:80-82 maps port to port (the CLI expands it); -p 8110-8112:80 takes the first
    free host port of the range, as dockerd, and a full range is refused naming it."""
    d, w = vdn, vdn.world
    three = "; ".join(f"mkdir /w{p}; echo {p} > /w{p}/index.html; httpd -p {p} -h /w{p}"
                      for p in (80, 81, 82)) + "; exec sleep 1000"
    d.docker("run", "-d", "--name", "r1", "-p", "8100-8102:80-82", "busybox", "sh", "-c", three)
    assert [http_get(w.outside, UPLINK_HOST, 8100 + i) for i in range(3)] == ["80", "81", "82"]
    page = "mkdir /w; echo served by $(hostname) > /w/index.html; exec httpd -f -p 80 -h /w"
    srv = w.serve(w.host, 8110)  # a program of the host holds the range's first port
    for name in ("r2", "r3"):
        d.docker("run", "-d", "--name", name, "--hostname", name, "-p", "8110-8112:80",
                 "busybox", "sh", "-c", page)
    assert d.docker("port", "r2", "80").stdout.strip() == "0.0.0.0:8111"
    assert d.docker("port", "r3", "80").stdout.strip() == "0.0.0.0:8112"
    assert http_get(w.outside, UPLINK_HOST, 8112) == "served by r3"
    before = snapshot(w.host, d)
    full = d.docker("run", "-d", "--name", "r4", "-p", "8110-8112:80", "busybox", "sleep", "100",
                    check=False)
    assert full.returncode != 0 and "no free host port in 8110-8112" in full.stderr
    d.docker("rm", "-f", "r4")
    assert snapshot(w.host, d) == before
    bad = d.docker("run", "-d", "--name", "r5", "-p", "8120-8119:80", "busybox", "true",
                   check=False)
    assert bad.returncode != 0
    srv.kill()
    srv.wait()


def test_links(vdn):
    """--link NAME[:ALIAS] puts the linked container's address in /etc/hosts (default bridge and
    user networks); a link to a container that is not running fails the start."""
    d = vdn
    page = "mkdir /w; echo linked > /w/index.html; exec httpd -f -p 80 -h /w"
    d.docker("run", "-d", "--name", "lweb", "busybox", "sh", "-c", page)
    web = ip_of(d, "lweb", "bridge")
    r = d.docker("run", "--rm", "--link", "lweb:db", "busybox", "sh", "-c",
                 "grep -w db /etc/hosts; printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 5 db 80")
    # -w: the container's own hostname is 12 hex digits and may contain "db" (it did once).
    assert r.stdout.startswith(f"{web}\tdb lweb\n") and r.stdout.endswith("linked\n")
    d.docker("network", "create", "--subnet", "10.37.0.0/24", "lnk")
    d.docker("run", "-d", "--name", "lweb2", "--network", "lnk", "busybox", "sh", "-c", page)
    r = d.docker("run", "--rm", "--network", "lnk", "--link", "lweb2", "busybox", "grep",
                 "lweb2", "/etc/hosts")
    assert r.stdout == f"{ip_of(d, 'lweb2', 'lnk')}\tlweb2\n"
    d.docker("create", "--name", "lstopped", "busybox", "true")
    bad = d.docker("run", "--rm", "--link", "lstopped:x", "busybox", "true", check=False)
    assert bad.returncode != 0 and "Cannot link to lstopped" in bad.stderr


def link_env_expected(alias, ip, name, env):
    """Docker's legacy link variables for a container exposing 53/udp, 80/tcp and 7000-7002/tcp,
    as dockerd 20.10 sets them (compared with it on this machine): the lowest port as ALIAS_PORT
    (by number), every port's four variables, a run of three or more consecutive ports also as
    _START/_END, the link's full name, the linked container's Env but PATH and HOME."""
    a = alias.upper().replace("-", "_")
    out = {f"{a}_PORT": f"udp://{ip}:53", f"{a}_NAME": name}
    for port, proto in [(53, "udp"), (80, "tcp"), (7000, "tcp"), (7001, "tcp"), (7002, "tcp")]:
        p = f"{a}_PORT_{port}_{proto.upper()}"
        out.update({p: f"{proto}://{ip}:{port}", p + "_ADDR": ip, p + "_PORT": str(port),
                    p + "_PROTO": proto})
    r = f"{a}_PORT_7000_TCP"
    out.update({r + "_START": f"tcp://{ip}:7000", r + "_PORT_START": "7000",
                r + "_END": f"tcp://{ip}:7002", r + "_PORT_END": "7002"})
    out.update({f"{a}_ENV_{k}": v for k, v in env.items()})
    return out


def test_link_environment_variables(vdn):
    """--link on the default bridge sets Docker's link variables (ALIAS_PORT_80_TCP=...,
    ALIAS_NAME, ALIAS_ENV_*); the container's own -e wins; a restart gets them anew; a link on a
    user network sets none (as dockerd)."""
    d = vdn
    d.docker("run", "-d", "--name", "lenv", "-e", "SECRET=s3", "-e", "HOME=/root", "--expose",
             "80", "--expose", "53/udp", "--expose", "7000-7002", "busybox", "sleep", "1000")
    ip = ip_of(d, "lenv", "bridge")

    def link_vars(ctr_args, prefix="MY_DB_"):
        out = d.docker(*ctr_args).stdout
        return {k: v for k, v in (line.split("=", 1) for line in out.splitlines() if "=" in line)
                if k.startswith(prefix)}

    got = link_vars(["run", "--name", "lme", "--link", "lenv:my-db", "-e", "MY_DB_ENV_X=mine",
                     "busybox", "env"])
    want = link_env_expected("my-db", ip, "/lme/my-db", {"SECRET": "s3"})
    want["MY_DB_ENV_X"] = "mine"
    assert got == want
    # a second start replaces them (the linked container's new address), never adds up
    d.docker("stop", "-t", "0", "lenv")
    d.docker("start", "lenv")
    ip2 = ip_of(d, "lenv", "bridge")
    out = d.docker("start", "-a", "lme").stdout
    assert sum(line.startswith("MY_DB_NAME=") for line in out.splitlines()) == 1
    got = {k: v for k, v in (l.split("=", 1) for l in out.splitlines() if "=" in l)
           if k.startswith("MY_DB_")}
    want = link_env_expected("my-db", ip2, "/lme/my-db", {"SECRET": "s3"})
    want["MY_DB_ENV_X"] = "mine"
    assert got == want
    d.docker("rm", "lme")
    # on a user network a link gives a hosts entry, no variables
    d.docker("network", "create", "--subnet", "10.39.0.0/24", "lnv")
    d.docker("run", "-d", "--name", "lenv2", "--network", "lnv", "-e", "SECRET=s3", "busybox",
             "sleep", "1000")
    assert link_vars(["run", "--rm", "--network", "lnv", "--link", "lenv2:db", "busybox", "env"],
                     "DB_") == {}


def test_outbound_nat_and_internal(vdn):
    d, w = vdn, vdn.world
    w.serve(w.outside, 9000)
    d.docker("network", "create", "--subnet", "10.37.0.0/24", "out")
    d.docker("network", "create", "--internal", "--subnet", "10.38.0.0/24", "sealed")
    d.docker("run", "-d", "--name", "o1", "--network", "out", "busybox", "sleep", "1000")
    d.docker("run", "-d", "--name", "o2", "--network", "sealed", "busybox", "sleep", "1000")
    d.docker("run", "-d", "--name", "o3", "busybox", "sleep", "1000")
    for ctr in ["o1", "o3"]:
        r = d.docker("exec", ctr, "sh", "-c", f"echo hi | nc -w 5 {UPLINK_OUTSIDE} 9000")
        # the outside has no route to the container: an answer at all needs the masquerade
        assert r.stdout.strip() == f"pong {UPLINK_HOST} hi"
    r = d.docker("exec", "o2", "sh", "-c", f"echo hi | nc -w 3 {UPLINK_OUTSIDE} 9000",
                 check=False)
    assert "pong" not in r.stdout


def test_bad_input_leaves_nothing(vdn):
    d, w = vdn, vdn.world
    d.docker("network", "create", "--subnet", "10.40.0.0/24", "taken")
    d.docker("network", "create", "--subnet", "10.41.0.0/30", "tiny")
    d.docker("run", "-d", "--name", "fills", "--network", "tiny", "busybox", "sleep", "1000")
    before = snapshot(w.host, d)
    cases = [
        (["network", "create", "--subnet", "10.40.0.128/25", "over"], "overlaps"),
        (["network", "create", "--subnet", "10.42.0.0/24", "--gateway", "10.43.0.1", "gw"],
         "gateway"),
        (["network", "create", "--subnet", "10.42.0.0/24", "bad/name"], "name"),
        (["network", "create", "--subnet", "10.42.0.0/24", "-o",
          "com.docker.network.bridge.name=bad*name", "badbr"], "bad*name"),
        (["network", "create", "--subnet", "10.42.0.0/24", "-o",
          "com.docker.network.driver.mtu=9", "mtu"], "MTU"),
        (["network", "create", "-d", "overlay", "ov"], "only bridge networks"),
        (["network", "create", "--subnet", "10.42.0.0/24", "--ip-range", "10.43.0.0/24", "rng"],
         "range"),
        (["network", "create", "taken"], "already exists"),
        (["run", "-d", "--network", "tiny", "busybox", "sleep", "100"], "no free address"),
        (["run", "-d", "--network", "taken", "--ip", "10.99.0.5", "busybox", "true"],
         "outside the network's subnet"),
        (["run", "-d", "--ip", "172.17.0.50", "busybox", "true"], "user defined networks"),
        (["run", "-d", "--network", "nosuch", "busybox", "true"], "network nosuch not found"),
        (["network", "connect", "nosuch", "fills"], "not found"),
        (["network", "rm", "tiny"], "has active endpoints"),
    ]
    for args, words in cases:
        r = d.docker(*args, check=False)
        assert r.returncode != 0, args
        assert words.lower() in r.stderr.lower(), (args, r.stderr)
        for cid in d.docker("ps", "-aq", "--filter", "status=created").stdout.split():
            d.docker("rm", cid)
        assert snapshot(w.host, d) == before, args
    # malformed port specs through the API (the CLI checks its own -p before sending)
    for bindings, words in [({"80/tcp": [{"HostPort": "x"}]}, "host port"),
                            ({"80/tcp": [{"HostPort": "70000"}]}, "host port"),
                            ({"80/sctp": [{"HostPort": "80"}]}, "sctp"),
                            ({"eighty/tcp": [{"HostPort": "80"}]}, "eighty"),
                            ({"80/tcp": [{"HostIp": "1.2.3", "HostPort": "80"}]}, "1.2.3"),
                            ({"80/tcp": [{"HostPort": "90-80"}]}, "ends before it starts"),
                            ({"80/tcp": [{"HostPort": "80-90-95"}]}, "90-95")]:
        st, r = d.api("POST", "/containers/create", {"Image": "busybox", "Cmd": ["true"],
                                                     "HostConfig": {"PortBindings": bindings}})
        assert st == 400 and words in r["message"], (bindings, st, r)
    assert snapshot(w.host, d) == before


def test_kill9_restart_keeps_addresses_and_connections(vdn):
    d, w = vdn, vdn.world
    d.docker("network", "create", "--subnet", "10.44.0.0/24", "keep")
    d.docker("run", "-d", "--name", "k1", "--network", "keep", "-p", "7070:7070", "busybox",
             "sh", "-c", "exec nc -ll -p 7070 -e cat")
    d.docker("run", "-d", "--name", "k2", "--network", "keep", "busybox", "sleep", "1000")
    ips = {c: ip_of(d, c, "keep") for c in ["k1", "k2"]}
    # the echo answers once nc listens
    assert run(PY, "-c", CLIENT, UPLINK_HOST, 7070, 10, ns=w.outside).stdout.strip() == "ping"
    client = subprocess.Popen(["nsenter", f"--net={w.outside}", PY, "-c", KEEP_CLIENT,
                               UPLINK_HOST, "7070"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    w.procs.append(client)
    client.stdin.write("before\n")
    client.stdin.flush()
    assert client.stdout.readline().strip() == "before"
    d.kill9()
    # the tables are deleted while no daemon runs: the restart rebuilds them from its state
    run("nft", "delete", "table", "inet", "vessel", ns=w.host)
    d.start()
    assert {c: ip_of(d, c, "keep") for c in ["k1", "k2"]} == ips
    assert "table inet vessel" in run("nft", "list", "tables", ns=w.host).stdout
    client.stdin.write("after\n")
    client.stdin.flush()
    assert client.stdout.readline().strip() == "after"
    client.stdin.close()
    assert nslookup(d, "k2", "k1") == ips["k1"]
    # a container that ended while no daemon ran gives its address and veth back
    pid = inspect(d, "k2")["State"]["Pid"]
    d.kill9()
    os.kill(pid, signal.SIGKILL)
    d.start()
    d.docker("wait", "k2")
    assert inspect(d, "k2")["NetworkSettings"]["Networks"]["keep"]["IPAddress"] == ""
    d.docker("run", "-d", "--name", "k3", "--network", "keep", "busybox", "sleep", "1000")
    assert ip_of(d, "k3", "keep") == ips["k2"]


def test_vm_on_a_daemon_network(vdn, build_dir, guest_assets, tmp_path):
    """vessel-vmm on a tap the daemon made: the VM gets its address and name server by DHCP,
    resolves a container by name and fetches from it; the container resolves the VM by name and
    fetches from it; the VM reaches the outside through the masquerade; the VM's published port
    answers from the outside and from the daemon namespace's loopback (route_localnet on the
    bridge), and a second claim of that port, by a container or another tap, is refused. A second
    NIC of the same VM on an --internal network reaches a container there but not the outside."""
    import sys
    sys.path.insert(0, os.path.dirname(__file__))
    from guestconsole import PROMPT, GuestConsole
    d, w = vdn, vdn.world
    d.docker("network", "create", "--subnet", "10.46.0.0/24", "mixed")
    d.docker("run", "-d", "--name", "webc", "--network", "mixed", "busybox", "sh", "-c",
             "mkdir /w; echo container says hi > /w/index.html; exec httpd -f -p 80 -h /w")
    cip = ip_of(d, "webc", "mixed")
    st, tap = d.api("POST", "/vessel/v1/networks/mixed/taps",
                    {"Id": "vm1", "PortBindings": {"8080/tcp": [{"HostPort": "8084"}]}})
    assert st == 201, tap
    assert tap["IPAddress"] == "10.46.0.3" and tap["Gateway"] == "10.46.0.1"
    # the VM's second NIC, on an internal network with a web server of its own
    d.docker("network", "create", "--internal", "--subnet", "10.48.0.0/24", "vmsealed")
    d.docker("run", "-d", "--name", "webs", "--network", "vmsealed", "busybox", "sh", "-c",
             "mkdir /w; echo sealed says hi > /w/index.html; exec httpd -f -p 80 -h /w")
    sip = ip_of(d, "webs", "vmsealed")
    st, tap2 = d.api("POST", "/vessel/v1/networks/vmsealed/taps", {"Id": "vm1s"})
    assert st == 201, tap2
    w.serve(w.outside, 9001)
    cmd = ["nsenter", f"--net={w.host}", build_dir / "vessel-vmm", "--kernel",
           guest_assets / "Image", "--initrd", guest_assets / "initrd.img", "--mem", "256M",
           "--append", "console=ttyS0", "--net", f"tap={tap['Tap']},mac={tap['MacAddress']}",
           "--net", f"tap={tap2['Tap']},mac={tap2['MacAddress']}"]
    try:
        with GuestConsole(cmd, log_path=tmp_path / "console.log") as vm:
            vm.expect(f"udhcpc: eth0 {tap['IPAddress']}/24 router 10.46.0.1 dns 10.46.0.1")
            vm.expect(PROMPT)
            out = vm.run("nslookup webc")
            assert f"Address: {cip}" in out, out
            out = vm.run(f"wget -q -O - http://{cip}/")
            assert "container says hi" in out, out
            vm.run("mkdir -p /www && echo vm says hi > /www/index.html && httpd -p 8080 -h /www")
            assert nslookup(d, "webc", "vm1") == tap["IPAddress"]
            page = d.docker("exec", "webc", "sh", "-c",
                            "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 10 vm1 8080").stdout
            assert page.endswith("vm says hi\n"), page
            assert http_get(w.outside, UPLINK_HOST, 8084, wait=30) == "vm says hi"
            assert http_get(w.host, "127.0.0.1", 8084) == "vm says hi"
            # a second claim of the VM's host port, by a container and by another tap
            dup = d.docker("run", "-d", "--name", "dup", "-p", "8084:80", "busybox", "sleep",
                           "100", check=False)
            assert dup.returncode != 0, dup.stdout
            assert "host port 8084/tcp is already published by vm1" in dup.stderr, dup.stderr
            d.docker("rm", "-f", "dup")
            st, r = d.api("POST", "/vessel/v1/networks/mixed/taps",
                          {"Id": "vm9", "PortBindings": {"80/tcp": [{"HostPort": "8084"}]}})
            assert st == 409 and "already published by vm1" in r["message"], (st, r)
            # outbound: the outside has no route to 10.46.0.0/24, an answer needs the masquerade
            out = vm.run(f"echo hi | nc -w 5 {UPLINK_OUTSIDE} 9001")
            assert f"pong {UPLINK_HOST} hi" in out, out
            # the internal network: its container answers, the outside (routed through the
            # internal network's gateway) does not
            out = vm.run(f"ip link show eth1 && ip addr add {tap2['IPAddress']}/24 dev eth1 && "
                         f"ip link set eth1 up && ip route add {UPLINK_OUTSIDE}/32 via "
                         f"{tap2['Gateway']} dev eth1 && echo eth1 ready")
            assert tap2["MacAddress"] in out and "eth1 ready" in out, out
            out = vm.run(f"wget -q -T 10 -O - http://{sip}/")
            assert "sealed says hi" in out, out
            out = vm.run(f"echo hi | nc -w 3 {UPLINK_OUTSIDE} 9001; echo nc done")
            assert "nc done" in out and "pong" not in out, out
            vm.sendline("poweroff")
            assert vm.wait(300) == 0
    finally:
        st, r = d.api("DELETE", "/vessel/v1/networks/mixed/taps?id=vm1")
        st2, r2 = d.api("DELETE", "/vessel/v1/networks/vmsealed/taps?id=vm1s")
    assert st == 204, r
    assert st2 == 204, r2
    assert tap["Tap"] not in links(w.host) and tap2["Tap"] not in links(w.host)


def vm_api(d, method, path, body=None, expect=None):
    """A /vessel/v1 request whose reply is validated against docs/api/vessel-v1.yaml."""
    import test_daemon_vm
    env = test_daemon_vm.Env.__new__(test_daemon_vm.Env)
    env.vd = d
    st, r = env.api(method, path, body)
    assert expect is None or st == expect, (st, r)
    return r


def test_vm_object_on_a_network(vdn, build_dir, guest_assets):
    """`vessel vm create --network --publish`: vesseld makes the VM's tap on the network; the
    default Debian guest gets the address inspect shows by DHCP, a container reaches it by its
    name, its published port answers from the outside, before and after a kill -9 and restart of
    vesseld; removing the VM takes its tap and its DNAT rule."""
    from test_daemon_vm import Console
    from guestconsole import PROMPT
    d, w = vdn, vdn.world
    d.docker("network", "create", "--subnet", "10.47.0.0/24", "vmnet")
    d.docker("run", "-d", "--name", "peer", "--network", "vmnet", "busybox", "sleep", "1000")

    def vessel(*args, check=True):
        r = run(build_dir / "vessel", "-H", d.host, "vm", *args, check=False)
        assert not check or r.returncode == 0, (args, r.stdout, r.stderr, d.log_text()[-2000:])
        return r

    # refused: a network that does not exist, ports without a network, a bad port spec
    r = vessel("create", "bad", "--network", "nowhere", check=False)
    assert r.returncode != 0 and "network nowhere not found" in r.stderr, r.stderr
    r = vessel("create", "bad", "--publish", "8085:8080", check=False)
    assert r.returncode != 0 and "need a Network" in r.stderr, r.stderr
    r = vessel("create", "bad", "--network", "vmnet", "--publish", "80:x", check=False)
    assert r.returncode != 0 and "Publish" in r.stderr, r.stderr
    assert "bad" not in vessel("ls", "-q").stdout.split()
    vessel("create", "vm2", "--network", "vmnet", "--publish", "8085:8080", "--memory", "256M",
           "--kernel", str(guest_assets / "Image"), "--initrd", str(guest_assets / "initrd.img"))
    vm = vm_api(d, "GET", "/vessel/v1/vms/vm2", expect=200)
    ns = vm["NetworkSettings"]
    assert ns["Network"] == "vmnet" and ns["IPAddress"] == "10.47.0.3", ns
    assert ns["Gateway"] == "10.47.0.1" and ns["Ports"]["8080/tcp"][0]["HostPort"] == "8085"
    assert ns["Tap"] in links(w.host)
    assert "8085" in run("nft", "list", "ruleset", ns=w.host).stdout
    vessel("start", "vm2")
    pid = vm_api(d, "GET", "/vessel/v1/vms/vm2")["State"]["Pid"]
    try:
        c = Console(type("E", (), {"vd": d}), "vm2", logs=True)
        assert c.status == 101
        c.expect(f"udhcpc: eth0 {ns['IPAddress']}/24 router 10.47.0.1 dns 10.47.0.1")
        c.expect(PROMPT)
        c.run("mkdir -p /www && echo vm says hi > /www/index.html && httpd -p 8080 -h /www")
        assert nslookup(d, "peer", "vm2") == ns["IPAddress"]
        page = d.docker("exec", "peer", "sh", "-c",
                        "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 10 vm2 8080").stdout
        assert page.endswith("vm says hi\n"), page
        assert http_get(w.outside, UPLINK_HOST, 8085, wait=30) == "vm says hi"
        c.close()
        d.kill9()
        os.kill(pid, 0)  # the VM runs on without the daemon
        d.start()
        vm = vm_api(d, "GET", "/vessel/v1/vms/vm2", expect=200)
        assert vm["State"]["Pid"] == pid and vm["NetworkSettings"] == ns
        assert nslookup(d, "peer", "vm2") == ns["IPAddress"]
        assert http_get(w.outside, UPLINK_HOST, 8085, wait=30) == "vm says hi"

        # a clone of the running VM: a tap of its own on the network, a new MAC and address
        vessel("clone", "vm2", "vm3")
        cns = vm_api(d, "GET", "/vessel/v1/vms/vm3", expect=200)["NetworkSettings"]
        assert cns["Network"] == "vmnet" and cns["Tap"] != ns["Tap"], cns
        assert cns["Tap"] in links(w.host) and ns["Tap"] in links(w.host)
        assert cns["MacAddress"] != ns["MacAddress"] and cns["IPAddress"] != ns["IPAddress"]
        vessel("start", "vm3")
        c = Console(type("E", (), {"vd": d}), "vm3")
        # the guest's driver reads the new MAC when it probes the NIC again; DHCP then gives
        # the clone its own address (short lines: the console's echo wraps long ones)
        c.run("v=$(basename $(readlink /sys/class/net/eth0/device))")
        c.run("echo $v > /sys/bus/virtio/drivers/virtio_net/unbind")
        c.run("echo $v > /sys/bus/virtio/drivers/virtio_net/bind")
        assert c.run("cat /sys/class/net/eth0/address") == cns["MacAddress"] + "\r\n"
        out = c.run("udhcpc -i eth0 -n -q -s /usr/share/udhcpc/default.script")
        assert f"udhcpc: eth0 {cns['IPAddress']}/24" in out, out
        c.close()
        assert nslookup(d, "peer", "vm3") == cns["IPAddress"]
        # the clone goes on from the original's memory: its web server answers at the new address
        page = d.docker("exec", "peer", "sh", "-c",
                        "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 10 vm3 8080").stdout
        assert page.endswith("vm says hi\n"), page
        assert nslookup(d, "peer", "vm2") == ns["IPAddress"]
        vessel("rm", "-f", "vm3")
        assert cns["Tap"] not in links(w.host)
    finally:
        vessel("rm", "-f", "vm3", check=False)
        vessel("rm", "-f", "vm2", check=False)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert ns["Tap"] not in links(w.host)
    assert "8085" not in run("nft", "list", "ruleset", ns=w.host).stdout
    assert nslookup(d, "peer", "vm2") is None


COMPOSE = shutil.which("docker-compose")

COMPOSE_FILE = """\
version: "3.7"
services:
  web:
    image: busybox
    command: ["sh", "-c", "echo web starting; mkdir -p /w; echo compose web > /w/index.html; exec httpd -f -p 80 -h /w"]
    volumes:
      - data:/data
  client:
    image: busybox
    command: ["sh", "-c", "echo hello > /data/note; exec sleep 1000"]
    volumes:
      - data:/data
volumes:
  data:
"""


@pytest.mark.skipif(not COMPOSE, reason="no docker-compose (Debian's docker-compose package)")
def test_compose_project(vdn, tmp_path):
    d = vdn
    (tmp_path / "docker-compose.yml").write_text(COMPOSE_FILE)

    def compose(*args, check=True):
        r = subprocess.run([COMPOSE, "-p", "proj", *args], cwd=tmp_path, env=d.env,
                           capture_output=True, text=True, timeout=120)
        if check and r.returncode != 0:
            raise AssertionError(f"docker-compose {args}: {r.stdout}{r.stderr}\n"
                                 f"{d.log_text()[-3000:]}")
        return r

    compose("up", "-d")
    net = json.loads(d.docker("network", "inspect", "proj_default").stdout)[0]
    assert net["Labels"]["com.docker.compose.project"] == "proj"
    assert sorted(c["Name"] for c in net["Containers"].values()) == ["proj_client_1",
                                                                    "proj_web_1"]
    ps = compose("ps").stdout
    states = {l.split()[0]: l.split()[-1] for l in ps.splitlines()[2:] if l.strip()}
    assert states == {"proj_web_1": "Up", "proj_client_1": "Up"}, ps
    web = ip_of(d, "proj_web_1", "proj_default")
    # the service name and the container name resolve on the project's network
    assert nslookup(d, "proj_client_1", "web") == web
    assert nslookup(d, "proj_client_1", "proj_web_1") == web
    page = d.docker("exec", "proj_client_1", "sh", "-c",
                    "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 5 web 80").stdout
    assert page.endswith("compose web\n")
    # the named volume is shared
    assert d.docker("exec", "proj_web_1", "cat", "/data/note").stdout == "hello\n"
    assert "web starting" in compose("logs", "web").stdout
    compose("down")
    assert d.docker("network", "inspect", "proj_default", check=False).returncode != 0
    assert d.docker("ps", "-aq").stdout.strip() == ""
    assert "proj_data" in d.docker("volume", "ls", "-q").stdout
    d.docker("volume", "rm", "proj_data")
