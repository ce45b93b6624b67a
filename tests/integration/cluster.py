"""A vessel cluster on this one machine, for the cluster tests and bench/cluster.

Three "hosts" are network namespaces (PREFIX-n1..n3), each with one veth into a fourth namespace
(PREFIX-sw) that holds the bridge joining them, so nothing is made in the test's own namespace.
Each host runs one member of a three-member etcd cluster (Debian's etcd-server 3.4) on its
address and, when asked, a vesseld with its own data root, socket and default bridge, joined to
the cluster, and one directory every vesseld is given as the cluster's shared storage
(`--cluster-shared-dir`: where a real deployment mounts NFS or CephFS on every host; here the
hosts share this machine's file system). `Cluster.cleanup` stops every process it started (by pid) and deletes the
namespaces, whatever state a failed test left; the fixtures call it in `finally`.
"""
import contextlib
import json
import os
import pathlib
import shutil
import signal
import socket
import struct
import subprocess
import time

import test_daemon
import test_daemon_vm

PREFIX = f"vcl{os.getpid() % 100000}"
SUBNET = "10.77.0"
ETCD = shutil.which("etcd") or "/usr/bin/etcd"
ETCDCTL = shutil.which("etcdctl") or "/usr/bin/etcdctl"
TOKEN = "s3cret-cluster-token"


def run(*args, ns=None, check=True, timeout=60, env=None, input=None):
    cmd = (["nsenter", f"--net={ns}"] if ns else []) + [str(a) for a in args]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env,
                       input=input)
    if check and r.returncode != 0:
        raise AssertionError(f"{cmd} failed ({r.returncode}): {r.stderr}{r.stdout}")
    return r


def wait_for(what, cond, timeout=30.0, step=0.05):
    """Poll cond() until it is true (returned); fail naming what after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(step)


class Host:
    """One namespace: its address, its etcd member, its vesseld."""

    def __init__(self, cluster, index):
        self.cluster = cluster
        self.index = index
        self.name = f"n{index}"
        self.ns_name = f"{cluster.prefix}-{self.name}"
        self.ns = f"/run/netns/{self.ns_name}"
        self.ip = f"{SUBNET}.{index}"
        self.client_url = f"http://{self.ip}:2379"
        self.peer_url = f"http://{self.ip}:2380"
        self.root = cluster.root / self.name
        self.root.mkdir(parents=True, exist_ok=True)
        self.etcd = None
        self.vd = None

    # ---------------------------------------------------------------- etcd
    def start_etcd(self, state="new", extra=()):
        log = open(self.root / "etcd.log", "a")
        members = ",".join(f"{h.name}={h.peer_url}" for h in self.cluster.hosts)
        self.etcd = subprocess.Popen(
            ["nsenter", f"--net={self.ns}", ETCD, "--name", self.name,
             "--data-dir", str(self.root / "etcd"),
             "--listen-client-urls", self.client_url, "--advertise-client-urls", self.client_url,
             "--listen-peer-urls", self.peer_url, "--initial-advertise-peer-urls", self.peer_url,
             "--initial-cluster", members, "--initial-cluster-state", state,
             "--initial-cluster-token", self.cluster.prefix,
             # etcd 3.4 leaves pre-vote off: a member cut off campaigns on alone, and when its
             # link comes back its higher term deposes the leader, leaving the others without
             # one for seconds (5 s in a CI run, and a node 7 s without renewal fences itself)
             "--pre-vote", *extra],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        self.cluster.pids.add(self.etcd.pid)

    def stop_etcd(self):
        if self.etcd and self.etcd.poll() is None:
            self.etcd.terminate()
            try:
                self.etcd.wait(10)
            except subprocess.TimeoutExpired:
                self.etcd.kill()
                self.etcd.wait()

    def etcdctl(self, *args, check=True):
        env = dict(os.environ, ETCDCTL_API="3")
        return run(ETCDCTL, "--endpoints", self.client_url, *args, ns=self.ns, check=check,
                   env=env)

    # ---------------------------------------------------------------- vesseld
    def vesseld_args(self, token=TOKEN, capacity=None, labels=(), endpoints=None, shared=True):
        """shared: True for the cluster's shared directory, a path for another, None for none."""
        urls = endpoints or ",".join(h.client_url for h in self.cluster.hosts)
        args = ["--cluster", f"etcd={urls}", "--node-name", self.name, "--advertise", self.ip]
        if shared is True:
            shared = self.cluster.shared
        if shared:
            args += ["--cluster-shared-dir", str(shared)]
        if token is not None:
            args += ["--cluster-token", token]
        if capacity:
            args += ["--node-capacity", capacity]
        for l in labels:
            args += ["--node-label", l]
        return args

    def start_vesseld(self, wait=True, **kw):
        root = self.root / "vd"
        root.mkdir(exist_ok=True)
        self.vd = test_daemon.Vesseld(self.cluster.build, root,
                                      prefix=["nsenter", f"--net={self.ns}"], bridge="vessel0",
                                      extra=self.vesseld_args(**kw), wait=wait)
        self.cluster.pids.add(self.vd.proc.pid)
        return self.vd

    def api(self, method, path, body=None, timeout=60):
        """(status, decoded JSON or text) of one request to this host's vesseld."""
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(timeout)
        s.connect(str(self.vd.sock))
        data = json.dumps(body).encode() if body is not None else b""
        s.sendall((f"{method} {path} HTTP/1.1\r\nHost: d\r\nConnection: close\r\n"
                   f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n")
                  .encode() + data)
        out = b""
        while True:
            b = s.recv(65536)
            if not b:
                break
            out += b
        s.close()
        return test_daemon.decode_reply(out)

    def vessel(self, *args, check=True, timeout=120):
        r = subprocess.run([str(self.cluster.build / "vessel"), "-H", self.vd.host, *args],
                           capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"vessel {' '.join(args)} on {self.name}: rc {r.returncode}\n"
                                 f"{r.stdout}{r.stderr}\n--- vesseld:\n"
                                 f"{self.vd.log_text()[-3000:]}")
        return r


class Cluster:
    def __init__(self, build_dir, root, n=3, name="c"):
        # name tells two clusters of one test run apart (their namespaces' names)
        self.prefix = f"{PREFIX}{name}"
        self.build = pathlib.Path(build_dir)
        self.root = pathlib.Path(root)
        self.shared = self.root / "shared"
        self.shared.mkdir(parents=True, exist_ok=True)
        self.pids = set()
        self.netns = []
        self.hosts = []
        self.switch = self._add_netns("sw")
        run("ip", "link", "add", "br0", "type", "bridge", ns=self.switch)
        run("ip", "link", "set", "br0", "up", ns=self.switch)
        for i in range(1, n + 1):
            h = Host(self, i)
            self._add_netns(h.name)
            run("ip", "link", "add", "eth0", "netns", h.ns_name, "type", "veth", "peer", "name",
                f"p{i}", "netns", f"{self.prefix}-sw")
            run("ip", "link", "set", f"p{i}", "master", "br0", "up", ns=self.switch)
            run("ip", "addr", "add", f"{h.ip}/24", "dev", "eth0", ns=h.ns)
            run("ip", "link", "set", "eth0", "up", ns=h.ns)
            self.hosts.append(h)

    def _add_netns(self, name):
        full = f"{self.prefix}-{name}"
        run("ip", "netns", "add", full)
        self.netns.append(full)
        path = f"/run/netns/{full}"
        run("ip", "link", "set", "lo", "up", ns=path)
        return path

    def start_etcd(self):
        for h in self.hosts:
            h.start_etcd()
        h = self.hosts[0]
        wait_for("etcd's three members to agree",
                 lambda: h.etcdctl("endpoint", "health", "--cluster", check=False)
                 .returncode == 0, timeout=60, step=0.2)

    def raft_leader(self):
        """The host whose etcd member is the raft leader now."""
        out = self.hosts[0].etcdctl("endpoint", "status", "--cluster", "-w", "json").stdout
        st = json.loads(out)
        leader = st[0]["Status"]["leader"]
        url = next(m["Endpoint"] for m in st if m["Status"]["header"]["member_id"] == leader)
        return next(h for h in self.hosts if h.client_url == url)

    def move_raft_leader(self, to):
        """Make host to's etcd member the raft leader (etcdctl move-leader), and wait for it."""
        cur = self.raft_leader()
        if cur is to:
            return
        out = to.etcdctl("endpoint", "status", "-w", "json").stdout
        member = json.loads(out)[0]["Status"]["header"]["member_id"]
        cur.etcdctl("move-leader", format(member, "x"))
        wait_for(f"{to.name}'s etcd member to lead", lambda: self.raft_leader() is to,
                 timeout=30, step=0.2)

    def start_vesselds(self, **kw):
        for h in self.hosts:
            h.start_vesseld(**kw)

    def cleanup(self):
        """Stop everything started here (each by its pid), remove the namespaces and what the
        vesselds left; safe to call whatever state a failed test left."""
        vmm_pids = set()
        for h in self.hosts:
            if h.vd is not None and h.vd.alive():
                try:
                    _, vms = h.api("GET", "/vessel/v1/vms", timeout=10)
                    for vm in vms:
                        vmm_pids.add(vm["Pid"])
                        h.api("DELETE", f"/vessel/v1/vms/{vm['Id']}?force=1", timeout=30)
                except Exception:  # pylint: disable=broad-except (go on cleaning)
                    pass
        for h in self.hosts:
            if h.vd is not None:
                try:
                    h.vd.cleanup()
                except Exception:  # pylint: disable=broad-except (go on cleaning)
                    pass
        for pid in vmm_pids - {0}:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for pid in self.pids:
            try:
                os.killpg(pid, signal.SIGKILL) if pid_is_group_leader(pid) else \
                    os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        for h in self.hosts:
            for p in (h.etcd, h.vd.proc if h.vd else None):
                if p is not None:
                    try:
                        p.wait(10)
                    except subprocess.TimeoutExpired:
                        pass
        for n in self.netns:
            run("ip", "netns", "del", n, check=False)


def write_elf(path, words):
    """A RISC-V ELF program of the instruction words given, linked and entered where a kernel
    goes (0x80200000, as vessel-vmm's builtin SBI jumps): a tiny guest for tests and bench."""
    base = 0x80200000
    code = struct.pack(f"<{len(words)}I", *words)
    ehsize, phsize = 64, 56
    entry = base + ehsize + phsize
    size = ehsize + phsize + len(code)
    ehdr = struct.pack("<4sBBBBB7xHHIQQQIHHHHHH", b"\x7fELF", 2, 1, 1, 0, 0, 2, 243, 1, entry,
                       ehsize, 0, 0, ehsize, phsize, 1, 0, 0, 0)
    phdr = struct.pack("<IIQQQQQQ", 1, 5, 0, base, base, size, size, 0x1000)
    pathlib.Path(path).write_bytes(ehdr + phdr + code)
    return pathlib.Path(path)


def write_idle_kernel(path):
    """A program that waits for interrupts forever (wfi; j .-4): a guest whose VMM runs and
    sleeps, for the HA tests and bench, many of which fit on this machine where as many booting
    Debian kernels would not."""
    return write_elf(path, [0x10500073, 0xFFDFF06F])


def vmm_pids(needle):
    """The pids of every vessel-vmm on this machine whose command line holds needle (a disk's
    path): how many copies of a guest run, whichever node started them."""
    pids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            argv = open(f"/proc/{d}/cmdline", "rb").read().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"vessel-vmm") and any(needle.encode() in a for a in argv):
            pids.append(int(d))
    return sorted(pids)


def pid_is_group_leader(pid):
    try:
        return os.getpgid(pid) == pid
    except ProcessLookupError:
        return False


@contextlib.contextmanager
def running(build_dir, root, guest_assets, name="c", **vesselds):
    """A cluster with its etcd members and a vesseld per host started (start_vesselds' options),
    the vesselds finding the default guest where scripts/fetch-guest put it; afterwards
    everything is removed, and no namespace of it may be left."""
    saved = os.environ.get("VESSEL_CACHE")
    os.environ["VESSEL_CACHE"] = str(pathlib.Path(guest_assets).parent)
    c = Cluster(build_dir, root, name=name)
    try:
        c.start_etcd()
        c.start_vesselds(**vesselds)
        yield c
    finally:
        c.cleanup()
        if saved is None:
            os.environ.pop("VESSEL_CACHE", None)
        else:
            os.environ["VESSEL_CACHE"] = saved
    left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert f"{c.prefix}-" not in left, f"namespaces left behind: {left}"


def api(host, method, path, body=None, timeout=120):
    """A request to a node whose reply is checked against docs/api/vessel-v1.yaml."""
    status, reply = host.api(method, path, body, timeout=timeout)
    text = json.dumps(reply) if isinstance(reply, (dict, list)) else (reply or "")
    test_daemon_vm.validate(method, path, status, text)
    return status, reply


def guests(host):
    """The cluster's guests as a node lists them (GET /vessel/v1/guests), by name."""
    status, body = api(host, "GET", "/vessel/v1/guests")
    assert status == 200, body
    return {g["Name"]: g for g in body}
