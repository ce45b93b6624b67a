"""src/net, the virtual switch, driven for real through build/tests/net/net-tool (root only).

Everything happens in network namespaces this test makes and removes: "host" plays the daemon's
namespace (net-tool runs there under nsenter, so its bridges, veths, taps and nftables tables are
made there), "outside" is another machine reached from "host" over a veth, and every "container"
is a namespace of its own (one held by an `unshare --net` process and given as /proc/PID/ns/net,
the others made with `ip netns add` and given as /run/netns/NAME). The module's own commands make
and remove the switch; `ip` here only builds the scaffolding (the namespaces and the uplink).

Shown: two containers on one network ping each other and exchange TCP bytes; a container on another
network cannot reach them; a container joins a second network; enable_icc=false keeps a network's
containers apart; outbound traffic is masqueraded to the outside, not from an internal network; a
published port answers from the outside and from the host's loopback; a second claim of the port
fails clearly; a tap for vessel-vmm sits on the bridge and takes IFF_VNET_HDR, and a VM (vessel-vmm
with Debian's kernel) on such a tap gets its address by DHCP, reaches a container and the outside
and is reached through its published port; bad input and failures half-way give clear errors and leave no bridge, veth, tap,
rule or address behind (also when the very last step, writing the state, fails); the state
survives a new process and `restore` replaces the tables without cutting an established
connection and repairs what vanished (bridge, tap, a dead container's veth); the network's DNS
server resolves ids and aliases, forwards other names, and keeps networks' names apart; removing everything leaves nothing in the namespace.
"""
import json
import os
import subprocess
import sys
import textwrap
import time

import pytest

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")

PREFIX = f"vsn{os.getpid() % 100000}"
UPLINK_HOST = "192.0.2.1"
UPLINK_OUTSIDE = "192.0.2.2"
PY = "/usr/bin/python3"

# A TCP server: answers every connection with "pong FROM DATA" (FROM is the peer's address as the
# server sees it, which shows whether NAT happened), until killed.
SERVER = textwrap.dedent("""
    import socket, sys
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", int(sys.argv[1])))
    s.listen(16)
    print("listening", flush=True)
    while True:
        c, peer = s.accept()
        data = c.recv(100)
        c.sendall(b"pong " + peer[0].encode() + b" " + data)
        c.close()
""")

# A TCP client: connect (retrying briefly while the server starts), send, print the reply.
CLIENT = textwrap.dedent("""
    import socket, sys, time
    deadline = time.time() + float(sys.argv[3])
    while True:
        try:
            c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2)
            break
        except OSError as e:
            if time.time() > deadline:
                sys.exit("connect: %s" % e)
            time.sleep(0.1)
    c.sendall(b"ping")
    print(c.recv(200).decode())
""")

# An echo server, and a client that keeps one connection: it sends each line of its stdin and
# prints the echo, so a test can act between two exchanges on the same connection.
ECHO_SERVER = textwrap.dedent("""
    import socket, sys, threading
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", int(sys.argv[1])))
    s.listen(4)
    print("listening", flush=True)
    def echo(c):
        while True:
            data = c.recv(1000)
            if not data:
                return
            c.sendall(data)
    while True:
        threading.Thread(target=echo, args=(s.accept()[0],), daemon=True).start()
""")
KEEP_CLIENT = textwrap.dedent("""
    import socket, sys
    c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
    for line in sys.stdin:
        c.sendall(line.encode())
        print(c.recv(1000).decode().strip(), flush=True)
""")

# The "host's resolver" for DNS forwarding: example.org is 203.0.113.7, every other name NXDOMAIN.
UPSTREAM_DNS = textwrap.dedent(r"""
    import socket, struct, sys
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", int(sys.argv[1])))
    print("listening", flush=True)
    while True:
        q, peer = s.recvfrom(1500)
        i, labels = 12, []
        while q[i]:
            labels.append(q[i + 1:i + 1 + q[i]].decode())
            i += 1 + q[i]
        name, qtype, end = ".".join(labels).lower(), struct.unpack("!H", q[i + 1:i + 3])[0], i + 5
        known = name == "example.org"
        hdr = bytearray(q[:12])
        hdr[2], hdr[3] = 0x81, 0x80 if known else 0x83
        hdr[6:12] = bytes([0, 1 if known and qtype == 1 else 0, 0, 0, 0, 0])
        ans = b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04" + bytes([203, 0, 113, 7])
        s.sendto(bytes(hdr) + q[12:end] + (ans if known and qtype == 1 else b""), peer)
""")


def run(*args, ns=None, check=True, timeout=60):
    cmd = (["nsenter", f"--net={ns}"] if ns else []) + [str(a) for a in args]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(f"{cmd} failed ({r.returncode}): {r.stderr}{r.stdout}")
    return r


class World:
    """The namespaces, the net-tool, the servers; cleaned up by the fixture."""

    def __init__(self, build_dir, state_dir):
        self.tool = build_dir / "tests" / "net" / "net-tool"
        assert self.tool.is_file(), f"{self.tool} is not built"
        self.state = state_dir
        self.netns = []
        self.procs = []
        self.host = self.add_netns("h")
        self.outside = self.add_netns("o")

    def add_netns(self, name):
        full = f"{PREFIX}-{name}"
        run("ip", "netns", "add", full)
        self.netns.append(full)
        path = f"/run/netns/{full}"
        run("ip", "link", "set", "lo", "up", ns=path)
        return path

    def add_holder(self):
        """A container namespace held by a process, given to the module as /proc/PID/ns/net."""
        p = subprocess.Popen(["unshare", "--net", "sleep", "1000"])
        self.procs.append(p)
        path = f"/proc/{p.pid}/ns/net"
        for _ in range(100):
            if os.path.exists(path) and os.readlink(path) != os.readlink("/proc/self/ns/net"):
                return path
            time.sleep(0.02)
        raise AssertionError("unshare --net did not start")

    def net(self, *args, check=True):
        return run(self.tool, "--state", self.state, *args, ns=self.host, check=check)

    def attach(self, network, cid, ns, *extra):
        return json.loads(self.net("attach", network, cid, "--netns", ns, *extra).stdout)

    def serve(self, ns, port):
        p = subprocess.Popen(["nsenter", f"--net={ns}", PY, "-c", SERVER, str(port)],
                             stdout=subprocess.PIPE, text=True)
        self.procs.append(p)
        assert p.stdout.readline().strip() == "listening"
        return p

    def cleanup(self):
        for p in self.procs:
            p.kill()
            p.wait()
        for n in self.netns:
            run("ip", "netns", "del", n, check=False)


def ping(ns, ip, check=True):
    r = run("busybox", "ping", "-c", "1", "-W", "2", ip, ns=ns, check=False)
    if check:
        assert r.returncode == 0, f"ping {ip} failed: {r.stdout}{r.stderr}"
    return r.returncode == 0


def tcp(ns, ip, port, wait=5.0):
    r = run(PY, "-c", CLIENT, ip, port, wait, ns=ns, check=False)
    return r.stdout.strip() if r.returncode == 0 else None


def links(ns):
    return sorted(link["ifname"] for link in json.loads(run("ip", "-j", "link", ns=ns).stdout))


def table_handles(ns):
    out = json.loads(run("nft", "-j", "list", "tables", ns=ns).stdout)["nftables"]
    return {f'{o["table"]["family"]} {o["table"]["name"]}': o["table"]["handle"]
            for o in out if "table" in o}


def vessel_tables(ns):
    out = json.loads(run("nft", "-j", "list", "ruleset", ns=ns).stdout)["nftables"]
    return sorted(f'{o["table"]["family"]} {o["table"]["name"]}' for o in out if "table" in o)


def ruleset(ns):
    return run("nft", "list", "ruleset", ns=ns).stdout


@pytest.fixture(scope="module")
def world(build_dir, tmp_path_factory):
    w = World(build_dir, tmp_path_factory.mktemp("net-state"))
    try:
        # the uplink between "host" and "outside", scaffolding for what a real host has
        run("ip", "link", "add", "up0", "netns", f"{PREFIX}-h", "type", "veth", "peer", "name",
            "up0", "netns", f"{PREFIX}-o")
        run("ip", "addr", "add", f"{UPLINK_HOST}/24", "dev", "up0", ns=w.host)
        run("ip", "link", "set", "up0", "up", ns=w.host)
        run("ip", "addr", "add", f"{UPLINK_OUTSIDE}/24", "dev", "up0", ns=w.outside)
        run("ip", "link", "set", "up0", "up", ns=w.outside)
        w.net("create", "front", "--subnet", "10.88.0.0/24")
        w.net("create", "back", "--subnet", "10.89.0.0/24", "--gateway", "10.89.0.254",
              "--bridge", f"{PREFIX}br")
        w.c1 = w.add_holder()
        w.c2 = w.add_netns("c2")
        w.c3 = w.add_netns("c3")
        w.ep1 = w.attach("front", "c1", w.c1)
        w.ep2 = w.attach("front", "c2", w.c2, "-p", "8080:80", "--mac", "02:00:00:00:aa:02")
        w.ep3 = w.attach("back", "c3", w.c3, "--ip", "10.89.0.77")
        yield w
    finally:
        w.cleanup()


def test_endpoints_are_configured(world):
    w = world
    assert w.ep1["ip"] == "10.88.0.2" and w.ep1["gateway"] == "10.88.0.1"
    assert w.ep1["mac"] == "02:42:0a:58:00:02"
    assert w.ep2["ip"] == "10.88.0.3" and w.ep2["mac"] == "02:00:00:00:aa:02"
    assert w.ep3["ip"] == "10.89.0.77" and w.ep3["gateway"] == "10.89.0.254"
    eth0 = json.loads(run("ip", "-j", "addr", "show", "eth0", ns=w.c2).stdout)[0]
    assert eth0["address"] == "02:00:00:00:aa:02" and "UP" in eth0["flags"]
    assert [(a["local"], a["prefixlen"]) for a in eth0["addr_info"] if a["family"] == "inet"] == [
        ("10.88.0.3", 24)]
    routes = json.loads(run("ip", "-j", "route", "show", "default", ns=w.c2).stdout)
    assert routes == [{"dst": "default", "gateway": "10.88.0.1", "dev": "eth0", "flags": []}] or \
        (routes[0]["gateway"] == "10.88.0.1" and routes[0]["dev"] == "eth0"), routes
    host_end = json.loads(run("ip", "-j", "-d", "link", "show", w.ep2["host_ifname"],
                              ns=w.host).stdout)[0]
    bridges = {n["name"]: n["bridge"] for n in json.loads(w.net("inspect").stdout)["networks"]}
    assert host_end["master"] == bridges["front"] and host_end["operstate"] == "UP"
    # the bridge has its own MAC (02:42 + the gateway's address), not its lowest port's, which
    # would change under the guests' neighbour caches as endpoints come and go
    bridge = json.loads(run("ip", "-j", "link", "show", bridges["front"], ns=w.host).stdout)[0]
    assert bridge["address"] == "02:42:0a:58:00:01"
    assert bridges["back"] == f"{PREFIX}br"


def test_same_network_ping_and_tcp(world):
    w = world
    ping(w.c1, w.ep2["ip"])
    ping(w.c2, w.ep1["ip"])
    w.serve(w.c2, 7000)
    # busybox nc as one client, python as the other
    r = run("sh", "-c", f"echo hello | busybox nc -w 3 {w.ep2['ip']} 7000", ns=w.c1)
    assert r.stdout.strip() == f"pong {w.ep1['ip']} hello"
    assert tcp(w.c1, w.ep2["ip"], 7000) == f"pong {w.ep1['ip']} ping"


def test_other_network_is_isolated(world):
    w = world
    ping(w.c3, "10.89.0.254")  # its own gateway answers: the network itself works
    assert not ping(w.c3, w.ep1["ip"], check=False), "a container on another network got through"
    assert not ping(w.c1, w.ep3["ip"], check=False), "a container on another network got through"
    w.serve(w.c1, 7001)
    assert tcp(w.c3, w.ep1["ip"], 7001, wait=2) is None


def test_a_second_network_for_a_container(world):
    """docker network connect: c1 (on front) joins back as eth1, without a second default
    route; it then reaches c3 directly, and leaving back takes only eth1 away."""
    w = world
    ep = w.attach("back", "c1", w.c1, "--ifname", "eth1", "--no-default-route")
    try:
        assert ep["ip"] == "10.89.0.1"  # .254 is back's gateway: .1 is the first free address
        ping(w.c1, w.ep3["ip"])
        routes = json.loads(run("ip", "-j", "route", "show", "default", ns=w.c1).stdout)
        assert [r["dev"] for r in routes] == ["eth0"]
        r = w.net("attach", "back", "c1b", "--netns", w.c1, "--ifname", "eth1", check=False)
        assert r.returncode == 1 and "create veth" in r.stderr and "File exists" in r.stderr
    finally:
        w.net("detach", "back", "c1")
    assert links(w.c1) == ["eth0", "lo"]
    ping(w.c1, w.ep2["ip"])


def test_outbound_is_masqueraded(world):
    w = world
    w.serve(w.outside, 9000)
    # the outside has no route to 10.88.0.0/24: an answer at all needs the masquerade
    assert tcp(w.c1, UPLINK_OUTSIDE, 9000) == f"pong {UPLINK_HOST} ping"
    assert tcp(w.c3, UPLINK_OUTSIDE, 9000) == f"pong {UPLINK_HOST} ping"


def test_internal_network_has_no_way_out(world):
    w = world
    w.net("create", "sealed", "--subnet", "10.90.0.0/24", "--internal")
    c = w.add_netns("c4")
    ep = w.attach("sealed", "c4", c)
    try:
        ping(c, "10.90.0.1")
        assert tcp(c, UPLINK_OUTSIDE, 9000, wait=2) is None
        assert not ping(c, UPLINK_OUTSIDE, check=False)
        assert not ping(c, w.ep1["ip"], check=False)
        r = w.net("attach", "sealed", "c4b", "--netns", c, "-p", "9999:80", check=False)
        assert r.returncode == 1 and "internal: ports cannot be published" in r.stderr
    finally:
        w.net("detach", "sealed", "c4")
        w.net("rm", "sealed")
    assert ep["ip"] == "10.90.0.2"


def test_published_port_from_outside_and_loopback(world):
    w = world
    w.serve(w.c2, 80)
    assert tcp(w.outside, UPLINK_HOST, 8080) == f"pong {UPLINK_OUTSIDE} ping"
    # from the host itself over loopback: DNAT in output, route_localnet, masquerade to the gateway
    assert tcp(w.host, "127.0.0.1", 8080) == "pong 10.88.0.1 ping"
    # a container of another network reaches it through the host's address, as from outside
    assert tcp(w.c3, UPLINK_HOST, 8080) is not None


def test_second_claim_of_a_port_fails_clearly(world):
    w = world
    before_links, before_rules = links(w.host), ruleset(w.host)
    c = w.add_netns("c5")
    r = w.net("attach", "back", "c5", "--netns", c, "-p", "0.0.0.0:8080:81", check=False)
    assert r.returncode == 1
    assert "host port 8080/tcp is already published by c2 on network front" in r.stderr, r.stderr
    # the same number over UDP, or on another address of... no: 8080/udp is free
    ok = w.attach("back", "c5", c, "-p", "8080:81/udp")
    w.net("detach", "back", "c5")
    assert ok["ip"] == "10.89.0.1"
    assert links(w.host) == before_links and ruleset(w.host) == before_rules
    assert links(c) == ["lo"]


def test_port_taken_by_a_host_program_is_refused(world):
    """A DNAT rule would silently take the outside traffic of a program already listening."""
    w = world
    w.serve(w.host, 8484)
    c = w.add_netns("c7")
    before = links(w.host), ruleset(w.host), w.net("inspect").stdout
    r = w.net("attach", "back", "c7", "--netns", c, "-p", "8484:80", check=False)
    assert r.returncode == 1
    assert "port 0.0.0.0:8484:80/tcp: host port 8484/tcp is in use by another program" in r.stderr
    assert (links(w.host), ruleset(w.host), w.net("inspect").stdout) == before
    assert links(c) == ["lo"]


@pytest.mark.parametrize("args, message", [
    (["create", "x1", "--subnet", "10.88.0.128/25"],
     "subnet 10.88.0.128/25 overlaps network front's subnet 10.88.0.0/24"),
    (["create", "x2", "--subnet", "10.95.0.0/24", "--gateway", "10.96.0.1"],
     "gateway 10.96.0.1 is outside subnet 10.95.0.0/24"),
    (["create", "x3", "--subnet", "10.95.0.1/24"], "host bits are set (did you mean 10.95.0.0/24?)"),
    (["create", "x4", "--subnet", "10.95.0.0/24", "--bridge", "a-very-long-bridge"],
     'bridge name "a-very-long-bridge": longer than 15 bytes (IFNAMSIZ)'),
    (["create", "x5", "--subnet", "10.95.0.0/24", "--bridge", "br\"x"],
     "character 3 is not one of [A-Za-z0-9_.-] in an interface name"),
    (["create", "x6", "--subnet", "10.95.0.0/24", "--bridge", "up0"], "interface up0 already exists"),
    (["create", "bad name", "--subnet", "10.95.0.0/24"], 'network name "bad name": character 4'),
    (["create", "x7", "--subnet", "10.95.0.0/24", "--ip-range", "10.96.0.0/28"],
     "ip-range 10.96.0.0/28 is not inside subnet 10.95.0.0/24"),
    (["create", "front", "--subnet", "10.97.0.0/24"], "network front already exists"),
    (["attach", "front", "x8", "--netns", "NS", "-p", "80:abc"],
     'port spec "80:abc": container port "abc" is not a number in 1..65535'),
    (["attach", "front", "x8", "--netns", "NS", "-p", "1.2.3:80:80"],
     'host address "1.2.3" is not an IPv4 address'),
    (["attach", "front", "x8", "--netns", "NS", "-p", "80:80/sctp"], 'protocol "sctp" is not tcp or udp'),
    (["attach", "front", "x8", "--netns", "NS", "-p", "70000:80"], 'host port "70000"'),
    (["attach", "front", "x8", "--netns", "NS", "--ip", "10.88.0.3"], "ip 10.88.0.3 is already in use"),
    (["attach", "front", "x8", "--netns", "NS", "--ip", "10.89.0.5"], "ip 10.89.0.5 is outside"),
    (["attach", "front", "x8", "--netns", "NS", "--ip", "10.88.0.1"], "network, broadcast or gateway"),
    (["attach", "front", "x8", "--netns", "NS", "--ifname", "eth0:1"], "not one of [A-Za-z0-9_.-]"),
    (["attach", "front", "c1", "--netns", "NS"], "c1 is already attached to network front"),
    (["attach", "nowhere", "x8", "--netns", "NS"], "network nowhere: no such network"),
    (["attach", "front", "x8", "--netns", "NS", "--mac", "01:00:5e:00:00:01"], "multicast"),
    (["rm", "front"], "network front: 2 endpoints are still attached"),
])
def test_bad_input_is_refused_and_leaves_nothing(world, args, message):
    w = world
    c = w.add_netns("bad")
    try:
        state = w.net("inspect").stdout
        before = links(w.host), ruleset(w.host)
        r = w.net(*[c if a == "NS" else a for a in args], check=False)
        assert r.returncode == 1 and message in r.stderr, r.stderr
        assert (links(w.host), ruleset(w.host)) == before
        assert links(c) == ["lo"]
        assert w.net("inspect").stdout == state
    finally:
        run("ip", "netns", "del", f"{PREFIX}-bad")
        w.netns.remove(f"{PREFIX}-bad")


def test_failure_half_way_is_rolled_back(world):
    """The veth is made and moved before the guest's default route is added; a guest that
    already has one fails there, and the pair, the address and the state go back."""
    w = world
    c = w.add_netns("half")
    run("ip", "link", "add", "d0", "type", "veth", "peer", "name", "d1", ns=c)
    run("ip", "addr", "add", "10.99.0.2/24", "dev", "d0", ns=c)
    run("ip", "link", "set", "d0", "up", ns=c)
    run("ip", "link", "set", "d1", "up", ns=c)
    run("ip", "route", "add", "default", "via", "10.99.0.1", ns=c)
    before = links(w.host), ruleset(w.host), w.net("inspect").stdout
    r = w.net("attach", "front", "half", "--netns", c, "-p", "8181:80", check=False)
    assert r.returncode == 1
    assert "attach half to network front: in the guest's namespace: add default route via " \
           "10.88.0.1" in r.stderr and "File exists" in r.stderr, r.stderr
    assert (links(w.host), ruleset(w.host), w.net("inspect").stdout) == before
    assert links(c) == ["d0", "d1", "lo"]
    # and an eth0 already in the guest is refused by the kernel before anything is made
    run("ip", "link", "set", "d0", "name", "eth0", ns=c)
    r = w.net("attach", "front", "half", "--netns", c, check=False)
    assert r.returncode == 1 and "create veth" in r.stderr and "File exists" in r.stderr
    assert (links(w.host), ruleset(w.host), w.net("inspect").stdout) == before


def test_failure_at_the_last_step_is_rolled_back(world):
    """The state file cannot be written (a read-only bind mount in a private mount namespace)
    after the veth was made and the new rules were loaded: the rules, the veth and the address
    all go back."""
    w = world
    c = w.add_netns("late")
    before = links(w.host), ruleset(w.host), w.net("inspect").stdout
    script = ('mount --bind -o ro "$0" "$0" && exec nsenter --net="$1" "$2" --state "$0" '
              'attach front late --netns "$3" -p 8383:80')
    r = subprocess.run(["unshare", "--mount", "sh", "-c", script, str(w.state), w.host,
                        str(w.tool), c], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1, r.stderr
    assert "attach late to network front" in r.stderr and "Read-only file system" in r.stderr
    assert (links(w.host), ruleset(w.host), w.net("inspect").stdout) == before
    assert links(c) == ["lo"]


def test_exhausted_range(world):
    w = world
    w.net("create", "tiny", "--subnet", "10.91.0.0/24", "--ip-range", "10.91.0.4/30")
    got = []
    try:
        for i in range(4):  # .4 .. .7 are all usable: the range is not the subnet's edge
            c = w.add_netns(f"t{i}")
            got.append(w.attach("tiny", f"t{i}", c)["ip"])
        c = w.add_netns("t4")
        before = links(w.host)
        r = w.net("attach", "tiny", "t4", "--netns", c, check=False)
        assert r.returncode == 1 and "no free address left in 10.91.0.4/30" in r.stderr, r.stderr
        assert links(w.host) == before and links(c) == ["lo"]
        # a released address is handed out again, never one in use
        w.net("detach", "tiny", "t1")
        assert w.attach("tiny", "t4", c)["ip"] == "10.91.0.5"
        # an explicit --ip may lie outside the range, inside the subnet
        c5 = w.add_netns("t5")
        assert w.attach("tiny", "t5", c5, "--ip", "10.91.0.200")["ip"] == "10.91.0.200"
    finally:
        for ep in json.loads(w.net("inspect").stdout)["networks"]:
            if ep["name"] == "tiny":
                for e in ep["endpoints"]:
                    w.net("detach", "tiny", e["id"])
        w.net("rm", "tiny")
    assert got == ["10.91.0.4", "10.91.0.5", "10.91.0.6", "10.91.0.7"]


def test_icc_disabled_keeps_containers_apart(world):
    w = world
    w.net("create", "solo", "--subnet", "10.92.0.0/24", "--no-icc")
    a, b = w.add_netns("i1"), w.add_netns("i2")
    try:
        ea, eb = w.attach("solo", "i1", a), w.attach("solo", "i2", b)
        ping(a, "10.92.0.1")
        ping(b, "10.92.0.1")
        assert not ping(a, eb["ip"], check=False)
        w.serve(b, 7002)
        assert tcp(a, eb["ip"], 7002, wait=2) is None
        assert tcp(a, UPLINK_OUTSIDE, 9000) == f"pong {UPLINK_HOST} ping"
        assert ea["ip"] == "10.92.0.2"
    finally:
        w.net("detach", "solo", "i1")
        w.net("detach", "solo", "i2")
        w.net("rm", "solo")


TUNSETIFF = 0x400454CA
IFF_TAP, IFF_NO_PI, IFF_VNET_HDR = 0x0002, 0x1000, 0x4000


def test_tap_for_a_vm(world):
    w = world
    info = json.loads(w.net("attach-tap", "front", "vm1", "-p", "2222:22").stdout)
    try:
        assert info["ip"] == "10.88.0.4" and info["mac"] == "02:42:0a:58:00:04"
        tap = json.loads(run("ip", "-j", "-d", "link", "show", info["host_ifname"],
                             ns=w.host).stdout)[0]
        bridges = {n["name"]: n["bridge"] for n in json.loads(w.net("inspect").stdout)["networks"]}
        assert tap["master"] == bridges["front"]
        assert tap["linkinfo"]["info_kind"] == "tun" and tap["linkinfo"]["info_data"]["type"] == "tap"
        assert "UP" in tap["flags"]
        # attach as vessel-vmm does (src/vm/netdev/tap.c), from inside the host namespace
        code = ("import fcntl, struct, sys; fd = open('/dev/net/tun', 'r+b', buffering=0); "
                "ifr = struct.pack('16sH', sys.argv[1].encode(), %d); "
                "fcntl.ioctl(fd, %d, ifr); print('attached')" %
                (IFF_TAP | IFF_NO_PI | IFF_VNET_HDR, TUNSETIFF))
        assert run(PY, "-c", code, info["host_ifname"], ns=w.host).stdout.strip() == "attached"
        assert "dport 2222 dnat ip to 10.88.0.4:22" in ruleset(w.host)
    finally:
        w.net("detach", "front", "vm1")
    assert info["host_ifname"] not in links(w.host)


def test_vm_on_the_network(world, build_dir, guest_assets, tmp_path):
    """vessel-vmm on a tap the module made: the VM gets its address from the network's DHCP
    server, the VM and a container reach each other, the VM reaches the outside through NAT,
    and its published port answers from the outside."""
    sys.path.insert(0, os.path.dirname(__file__))
    from guestconsole import PROMPT, GuestConsole
    w = world
    info = json.loads(w.net("attach-tap", "front", "vm2", "-p", "8082:8080").stdout)
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "hello.txt").write_text("outside says hi\n")
    web = subprocess.Popen(["nsenter", f"--net={w.outside}", PY, "-m", "http.server", "--bind",
                            UPLINK_OUTSIDE, "--directory", str(tmp_path / "www"), "9080"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    w.procs.append(web)
    dhcp = subprocess.Popen(["nsenter", f"--net={w.host}", w.tool, "--state", w.state, "dhcp",
                             "front"], stdout=subprocess.PIPE, text=True)
    w.procs.append(dhcp)
    assert dhcp.stdout.readline().strip() == "serving"
    cmd = ["nsenter", f"--net={w.host}", build_dir / "vessel-vmm", "--kernel",
           guest_assets / "Image", "--initrd", guest_assets / "initrd.img", "--mem", "256M",
           "--append", "console=ttyS0", "--net", f"tap={info['host_ifname']},mac={info['mac']}"]
    try:
        with GuestConsole(cmd, log_path=tmp_path / "console.log") as vm:
            # the guest's init asks by DHCP (udhcpc) and gets the address IPAM reserved
            vm.expect(f"udhcpc: eth0 {info['ip']}/{info['prefix']} router {info['gateway']}")
            vm.expect(PROMPT)
            out = vm.run(f"ping -c 2 -W 5 {w.ep1['ip']}")
            assert " 0% packet loss" in out, out
            out = vm.run(f"wget -q -O - http://{UPLINK_OUTSIDE}:9080/hello.txt")
            assert "outside says hi" in out, out
            vm.run("mkdir -p /www && echo vm says hi > /www/index.html && httpd -p 8080 -h /www")
            fetch = ("import urllib.request,sys; sys.stdout.write(urllib.request.urlopen("
                     "sys.argv[1], timeout=60).read().decode())")
            r = run(PY, "-c", fetch, f"http://{info['ip']}:8080/index.html", ns=w.c1)
            assert r.stdout.strip() == "vm says hi"
            r = run(PY, "-c", fetch, f"http://{UPLINK_HOST}:8082/index.html", ns=w.outside)
            assert r.stdout.strip() == "vm says hi"
            vm.sendline("poweroff")
            assert vm.wait(300) == 0
    finally:
        w.net("detach", "front", "vm2")
    assert info["host_ifname"] not in links(w.host)


def test_state_survives_and_restore_rebuilds_the_tables(world):
    w = world
    state = json.loads(w.net("inspect").stdout)
    front = next(n for n in state["networks"] if n["name"] == "front")
    assert [(e["id"], e["ip"]) for e in front["endpoints"]] == [("c1", "10.88.0.2"), ("c2", "10.88.0.3")]
    assert front["endpoints"][1]["ports"] == ["0.0.0.0:8080:80/tcp"]
    rules = ruleset(w.host)
    # a daemon restart replaces the tables in one transaction: an established connection through
    # a published port goes on (its NAT binding lives in conntrack)
    c6 = w.add_netns("c6")
    w.attach("front", "c6", c6, "-p", "8090:90")
    w.procs.append(subprocess.Popen(["nsenter", f"--net={c6}", PY, "-c", ECHO_SERVER, "90"],
                                    stdout=subprocess.PIPE, text=True))
    assert w.procs[-1].stdout.readline().strip() == "listening"
    client = subprocess.Popen(["nsenter", f"--net={w.outside}", PY, "-c", KEEP_CLIENT, UPLINK_HOST,
                               "8090"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    w.procs.append(client)
    client.stdin.write("before\n")
    client.stdin.flush()
    assert client.stdout.readline().strip() == "before"
    handles = table_handles(w.host)
    w.net("restore")
    new_handles = table_handles(w.host)
    # (the bridge table exists only while a network with enable_icc=false has endpoints)
    assert handles.keys() == new_handles.keys() and "inet vessel" in handles
    assert all(new_handles[t] != handles[t] for t in handles if t.endswith(" vessel"))
    client.stdin.write("after\n")
    client.stdin.flush()
    assert client.stdout.readline().strip() == "after"
    client.stdin.close()
    assert client.wait(10) == 0
    w.net("detach", "front", "c6")
    assert ruleset(w.host) == rules
    run("nft", "delete", "table", "inet", "vessel", ns=w.host)
    if "bridge vessel" in handles:
        run("nft", "delete", "table", "bridge", "vessel", ns=w.host)
    assert vessel_tables(w.host) == []
    w.net("restore")
    assert ruleset(w.host) == rules
    assert tcp(w.outside, UPLINK_HOST, 8080) == f"pong {UPLINK_OUTSIDE} ping"


def test_restore_after_things_vanished(world):
    """While no one watched: a container's namespace ended (its veth went with it), the VM's tap
    and the bridge itself were deleted. restore makes the bridge and the tap again, puts the
    surviving veth back on the bridge and releases the dead container's address."""
    w = world
    w.net("create", "crash", "--subnet", "10.93.0.0/24")
    dead, alive = w.add_netns("d1"), w.add_netns("d2")
    ep_dead = w.attach("crash", "dead", dead)
    ep_alive = w.attach("crash", "alive", alive)
    tap = json.loads(w.net("attach-tap", "crash", "vm").stdout)["host_ifname"]
    bridge = next(n["bridge"] for n in json.loads(w.net("inspect").stdout)["networks"]
                  if n["name"] == "crash")
    try:
        run("ip", "netns", "del", f"{PREFIX}-d1")
        w.netns.remove(f"{PREFIX}-d1")
        run("ip", "link", "del", tap, ns=w.host)
        run("ip", "link", "del", bridge, ns=w.host)
        assert not ping(alive, "10.93.0.1", check=False)
        w.net("restore")
        ping(alive, "10.93.0.1")
        for ifname in (tap, ep_alive["host_ifname"]):
            link = json.loads(run("ip", "-j", "link", "show", ifname, ns=w.host).stdout)[0]
            assert link["master"] == bridge
        eps = next(n["endpoints"] for n in json.loads(w.net("inspect").stdout)["networks"]
                   if n["name"] == "crash")
        assert [e["id"] for e in eps] == ["alive", "vm"]
        again = w.add_netns("d3")
        assert w.attach("crash", "again", again)["ip"] == ep_dead["ip"]
    finally:
        for e in ("alive", "vm", "again"):
            w.net("detach", "crash", e, check=False)
        w.net("rm", "crash")


def nslookup(ns, name, server):
    r = run("busybox", "nslookup", name, server, ns=ns, check=False)
    return [line.split()[-1] for line in r.stdout.splitlines()
            if line.startswith("Address") and not line.split()[-1].startswith(server)]


def test_dns_names_on_the_network(world):
    """The network's DNS server answers its endpoints' ids and aliases, forwards other names to
    the upstream resolver, and gives no network's names to another network."""
    w = world
    up = subprocess.Popen(["nsenter", f"--net={w.outside}", PY, "-c", UPSTREAM_DNS, "5353"],
                          stdout=subprocess.PIPE, text=True)
    w.procs.append(up)
    assert up.stdout.readline().strip() == "listening"
    c = w.add_netns("named")
    ep = w.attach("front", "named", c, "--alias", "web", "--alias", "www.front")
    servers = []
    for net in ("front", "back"):
        p = subprocess.Popen(["nsenter", f"--net={w.host}", w.tool, "--state", w.state, "dns", net,
                              "--upstream", f"{UPLINK_OUTSIDE}:5353"], stdout=subprocess.PIPE,
                             text=True)
        w.procs.append(p)
        assert p.stdout.readline().strip() == "serving"
        servers.append(p)
    try:
        assert nslookup(w.c1, "web", "10.88.0.1") == [ep["ip"]]
        assert nslookup(w.c1, "WWW.Front", "10.88.0.1") == [ep["ip"]]
        assert nslookup(w.c1, "named", "10.88.0.1") == [ep["ip"]]
        assert nslookup(w.c1, "c2", "10.88.0.1") == [w.ep2["ip"]]
        assert nslookup(w.c1, "example.org", "10.88.0.1") == ["203.0.113.7"]
        assert nslookup(w.c1, "nosuchname", "10.88.0.1") == []
        # back's server: front's names are not its own, and upstream does not know them
        assert nslookup(w.c3, "c3", "10.89.0.254") == [w.ep3["ip"]]
        assert nslookup(w.c3, "web", "10.89.0.254") == []
        assert nslookup(w.c3, "example.org", "10.89.0.254") == ["203.0.113.7"]
        aliases = next(e["aliases"] for n in json.loads(w.net("inspect").stdout)["networks"]
                       for e in n["endpoints"] if e["id"] == "named")
        assert aliases == ["web", "www.front"]
        r = w.net("attach", "front", "x9", "--netns", c, "--alias", "bad name", check=False)
        assert r.returncode == 1 and 'alias "bad name": character 4' in r.stderr
    finally:
        for p in servers:
            p.kill()
            p.wait()
        w.net("detach", "front", "named")


def test_removing_everything_leaves_nothing(world):
    """Last: the module takes down all it made; the namespace is as the test set it up."""
    w = world
    for net, cid in [("front", "c1"), ("front", "c2"), ("back", "c3")]:
        w.net("detach", net, cid)
    w.net("rm", "front")
    w.net("rm", "back")
    assert links(w.host) == ["lo", "up0"]
    assert vessel_tables(w.host) == []
    assert links(w.c1) == ["lo"] and links(w.c2) == ["lo"]
    assert json.loads(w.net("inspect").stdout)["networks"] == []
