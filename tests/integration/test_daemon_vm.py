"""VMs as vesseld objects, driven through `vessel vm` and the /vessel/v1 API, booting the real
default Debian guest (kernel and initramfs from scripts/fetch-guest). One vesseld and one VM
are shared by the tests of this module, in order (each boot takes seconds on a software CPU);
every reply of the API is validated against docs/api/vessel-v1.yaml. Everything the tests start
is removed at the end: VMs through the API, then any VMM process left, by its pid."""
import http.client
import json
import os
import pathlib
import pty
import re
import select
import signal
import socket
import subprocess
import time

import jsonschema
import pytest
import yaml

from guestconsole import BOOT_TIMEOUT, PROMPT
from test_daemon import Vesseld

TOP = pathlib.Path(__file__).resolve().parents[2]
SPEC = yaml.safe_load((TOP / "docs/api/vessel-v1.yaml").read_text())

pytestmark = [pytest.mark.skipif(os.geteuid() != 0, reason="vesseld runs as root")]


# ------------------------------------------------------------------ the API and its schema

def _operation(method, path):
    """The OpenAPI operation whose path template matches path."""
    for template, item in SPEC["paths"].items():
        rx = "^" + re.sub(r"\{[^}]+\}", "[^/]+", template) + "$"
        if re.match(rx, path) and method.lower() in item:
            return item[method.lower()]
    raise AssertionError(f"{method} {path} is not in docs/api/vessel-v1.yaml")


def validate(method, path, status, body):
    """Check a reply against the spec: the status is documented, a JSON body fits its schema."""
    op = _operation(method, path.split("?")[0])
    resp = op["responses"].get(str(status))
    assert resp is not None, f"{method} {path}: status {status} is not documented"
    if "$ref" in resp:
        resp = SPEC["components"]["responses"][resp["$ref"].rsplit("/", 1)[1]]
    content = resp.get("content", {})
    if "application/json" in content:
        schema = dict(content["application/json"]["schema"], components=SPEC["components"])
        jsonschema.validate(json.loads(body), schema, cls=jsonschema.Draft202012Validator)
    else:
        assert not body or "text/plain" in content, f"{method} {path}: unexpected body {body!r}"


class UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("vesseld", timeout=600)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(600)
        self.sock.connect(self.path)


class Env:
    def __init__(self, build_dir, root, assets):
        self.build = pathlib.Path(build_dir)
        self.root = root
        self.vd = Vesseld(build_dir, root)
        self.vmm_pids = set()

    def api(self, method, path, body=None, expect=None, spec=True):
        c = UnixHTTP(str(self.vd.sock))
        data = json.dumps(body) if body is not None else None
        c.request(method, path, body=data,
                  headers={"Content-Type": "application/json"} if data else {})
        r = c.getresponse()
        raw = r.read()
        c.close()
        if spec:
            validate(method, path, r.status, raw.decode(errors="replace"))
        if expect is not None:
            assert r.status == expect, f"{method} {path}: {r.status} {raw!r}"
        if spec and r.headers.get("Content-Type", "").startswith("application/json") and raw:
            return r.status, json.loads(raw)
        return r.status, raw.decode(errors="replace")

    def vessel(self, *args, check=True, timeout=600):
        r = subprocess.run([str(self.build / "vessel"), "-H", self.vd.host, "vm", *args],
                           capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"vessel vm {' '.join(args)}: rc {r.returncode}\n{r.stdout}"
                                 f"{r.stderr}\n--- vesseld:\n{self.vd.log_text()[-3000:]}")
        return r

    def inspect(self, name):
        _, vm = self.api("GET", f"/vessel/v1/vms/{name}", expect=200)
        if vm["State"]["Pid"]:
            self.vmm_pids.add(vm["State"]["Pid"])
        return vm


class Console:
    """A viewer of a VM's serial console through the hijacked API connection."""

    def __init__(self, env, name, logs=False):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(BOOT_TIMEOUT)
        self.sock.connect(str(env.vd.sock))
        q = "?logs=1" if logs else ""
        self.sock.sendall(f"POST /vessel/v1/vms/{name}/console{q} HTTP/1.1\r\nHost: d\r\n"
                          "Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            b = self.sock.recv(4096)
            assert b, f"console {name}: closed before the reply: {head!r}"
            head += b
        head, self.buf = head.split(b"\r\n\r\n", 1)
        self.status = int(head.split()[1])
        self.head = head.decode()

    def expect(self, text):
        """Read until text appears; return what came before it and drop it from the buffer."""
        t = text.encode()
        while t not in self.buf:
            b = self.sock.recv(65536)
            assert b, f"console closed while waiting for {text!r}: {self.buf[-500:]!r}"
            self.buf += b
        before, self.buf = self.buf.split(t, 1)
        return before.decode(errors="replace")

    def run(self, command):
        """Run a shell command in the guest; its output (the marker is computed by the shell,
        so the echoed command line never matches it)."""
        self.sock.sendall(f"{command}; echo @@$((40+2))@@\n".encode())
        out = self.expect("@@42@@\r\n")
        return out.split("\n", 1)[1] if "\n" in out else ""

    def close(self):
        self.sock.close()


@pytest.fixture(scope="module")
def env(build_dir, guest_assets, tmp_path_factory):
    saved = os.environ.get("VESSEL_CACHE")
    # vesseld finds the default guest where scripts/fetch-guest put it
    os.environ["VESSEL_CACHE"] = str(pathlib.Path(guest_assets).parent)
    e = Env(build_dir, tmp_path_factory.mktemp("vm"), guest_assets)
    try:
        yield e
    finally:
        if e.vd.alive():
            _, vms = e.api("GET", "/vessel/v1/vms")
            for vm in vms:
                e.vmm_pids.add(vm["Pid"])
            # clones first: their originals hold their snapshots
            for vm in sorted(vms, key=lambda v: v["Name"] != "copy"):
                e.api("DELETE", f"/vessel/v1/vms/{vm['Id']}?force=1")
        e.vd.stop()
        for pid in e.vmm_pids - {0}:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if saved is None:
            del os.environ["VESSEL_CACHE"]
        else:
            os.environ["VESSEL_CACHE"] = saved


def vessel_console_on_pty(env, name, keys, wanted):
    """Run `vessel vm console NAME` on a pseudo-terminal, type keys, wait for wanted, detach."""
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(str(env.build / "vessel"), ["vessel", "-H", env.vd.host, "vm", "console", name])
    out = b""
    try:
        os.write(fd, keys)
        while wanted not in out:
            r, _, _ = select.select([fd], [], [], BOOT_TIMEOUT)
            assert r, f"no {wanted!r} from the console: {out[-500:]!r}"
            out += os.read(fd, 65536)
        os.write(fd, b"\x1d")
        while True:
            try:
                b = os.read(fd, 65536)
            except OSError:
                break
            if not b:
                break
            out += b
        _, status = os.waitpid(pid, 0)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, out[-500:]
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        os.close(fd)
    return out.decode(errors="replace")


def boot_console(env, name, skip=0):
    """A viewer of a VM that is booting: its history after the first skip bytes (what earlier
    boots wrote), read until the shell prompt, then a command to make sure the shell answers."""
    c = Console(env, name, logs=True)
    assert c.status == 101
    while len(c.buf) < skip:
        b = c.sock.recv(65536)
        assert b, "console closed in its history"
        c.buf += b
    c.buf = c.buf[skip:]
    c.expect(PROMPT)
    assert c.run("echo ready") == "ready\r\n"
    return c


# ------------------------------------------------------------------ tests, in order

def test_create_start_console_logs_stats_pause(env):
    vid = env.vessel("create", "web", "--cpus", "1", "--memory", "256M",
                     "--disk-size", "64M").stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{64}", vid)
    vm = env.inspect("web")
    assert vm["State"]["Status"] == "created" and vm["Config"]["Memory"] == 256 << 20
    disk = pathlib.Path(vm["Disk"]["Path"])
    assert disk.read_bytes()[:4] == b"QFI\xfb"            # a qcow2 image, made at create
    assert env.vessel("ls").stdout.splitlines()[1].split()[:3] == ["web", vid[:12], "created"]

    assert env.vessel("start", "web").stdout == "web\n"
    vm = env.inspect("web")
    assert vm["State"]["Running"] and vm["State"]["Pid"] > 0
    c = boot_console(env, "web")
    # the guest sees the overlay disk with the size asked for (in 512-byte sectors)
    assert c.run("cat /sys/block/vda/size") == f"{64 * 2048}\r\n"
    assert "read-ok" in c.run("dd if=/dev/vda of=/dev/null bs=4096 count=64 && echo read-ok")
    # a second viewer sees what the first one types
    c2 = Console(env, "web")
    c.run("echo from-the-first-viewer")
    c2.expect("from-the-first-viewer")
    c2.close()
    c.close()
    assert "from-the-first-viewer" in env.vessel("logs", "web").stdout
    # `vessel vm console` on a terminal: what is typed reaches the guest, Ctrl-] detaches
    out = vessel_console_on_pty(env, "web", b"echo $((7*6))x\r", b"42x")
    assert "Detached from VM web" in out and env.inspect("web")["State"]["Running"]
    _, logs = env.api("GET", "/vessel/v1/vms/web/logs", expect=200)
    assert "Linux version" in logs

    _, st = env.api("GET", "/vessel/v1/vms/web/stats", expect=200)
    assert st["Cpu"]["Count"] == 1 and st["Cpu"]["Instructions"] > 0
    assert st["Memory"]["Guest"] == 256 << 20 and st["Memory"]["HostRss"] > 0
    disk0 = st["Disk"]["Disks"][0]
    assert disk0["Size"] == 64 << 20 and disk0["ReadBytes"] >= 64 * 4096 and disk0["Errors"] == 0
    assert env.vessel("stats", "web").stdout.splitlines()[1].split()[0] == "web"

    assert env.vessel("pause", "web").stdout == "web\n"
    assert env.inspect("web")["State"]["Status"] == "paused"
    _, a = env.api("GET", "/vessel/v1/vms/web/stats", expect=200)
    _, b = env.api("GET", "/vessel/v1/vms/web/stats", expect=200)
    assert a["Cpu"]["Instructions"] == b["Cpu"]["Instructions"]   # the harts stand still
    env.api("POST", "/vessel/v1/vms/web/pause", expect=409)
    assert env.vessel("resume", "web").stdout == "web\n"
    c = Console(env, "web")
    assert c.run("echo $((6*7))") == "42\r\n"
    c.close()

    _, events = env.api("GET", "/events?since=0&until=" + str(int(time.time()) + 1)
                        + "&filters=" + "%7B%22type%22%3A%5B%22vm%22%5D%7D", spec=False)
    actions = [json.loads(l)["Action"] for l in events.splitlines() if l.strip()]
    assert actions[:4] == ["create", "start", "pause", "resume"], actions


def test_vm_survives_daemon_kill9(env):
    pid = env.inspect("web")["State"]["Pid"]
    env.vd.kill9()
    os.kill(pid, 0)                      # the VMM runs on
    env.vd.start()
    vm = env.inspect("web")
    assert vm["State"]["Status"] == "running" and vm["State"]["Pid"] == pid
    c = Console(env, "web")
    assert c.run("echo after-the-restart") == "after-the-restart\r\n"
    c.close()
    logs = env.vessel("logs", "web").stdout
    assert logs.index("from-the-first-viewer") < logs.index("after-the-restart")


def test_snapshot_clone_restore(env):
    assert env.vessel("snapshot", "web", "s1").stdout == "s1\n"
    c = Console(env, "web")
    c.run("echo written-after-s1 > /tmp/marker")
    c.close()
    assert env.inspect("web")["Snapshots"] == ["s1"]
    r = env.vessel("snapshot", "web", "s1", check=False)
    assert r.returncode == 1 and "already has a snapshot s1" in r.stderr

    cid = env.vessel("clone", "web:s1", "copy").stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{64}", cid)
    assert env.inspect("copy")["Restore"]["Snapshot"] == "s1"
    env.vessel("start", "copy")
    env.inspect("copy")
    c = Console(env, "copy")
    # the clone goes on from the snapshot: the file written after it is not there
    assert "No such file" in c.run("cat /tmp/marker")
    c.close()
    r = env.vessel("rm", "-f", "web", check=False)
    assert r.returncode == 1 and "has a clone, copy" in r.stderr

    assert env.vessel("restore", "web", "s1").stdout == "s1\n"
    env.inspect("web")
    c = Console(env, "web")
    assert "No such file" in c.run("cat /tmp/marker")
    c.close()
    assert env.vessel("rm", "-f", "copy").stdout == "copy\n"


def test_restart_then_stop_by_power_button_then_remove(env):
    vm = env.inspect("web")
    assert vm["Restore"]["Pending"] is False
    log = pathlib.Path(vm["Dir"]) / "console.log"
    # a long history, as from a chatty guest: the log is rotated when the next run starts
    with open(log, "ab") as f:
        f.write(b"#" * (17 << 20) + b"\n")
    assert env.vessel("restart", "-t", "120", "web").stdout == "web\n"
    old_log = pathlib.Path(str(log) + ".1").read_bytes()
    assert b"reboot: Power down" in old_log[-200000:] and b"from-the-first-viewer" in old_log
    pid = env.inspect("web")["State"]["Pid"]
    assert pid != vm["State"]["Pid"]
    # a cold boot now, from the disk the restored run used; the new log holds only this run
    c = boot_console(env, "web")
    assert log.read_bytes().count(b"Linux version") == 1
    assert c.run("cat /sys/block/vda/size") == f"{64 * 2048}\r\n"
    c.close()
    assert env.vessel("stop", "-t", "120", "web").stdout == "web\n"
    vm = env.inspect("web")
    assert vm["State"]["Status"] == "stopped" and vm["State"]["ExitCode"] == 0, vm["State"]
    assert "reboot: Power down" in env.vessel("logs", "web").stdout
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    env.api("POST", "/vessel/v1/vms/web/console", expect=409)
    d = pathlib.Path(vm["Dir"])
    assert env.vessel("rm", "web").stdout == "web\n"
    assert not d.exists()
    assert env.vessel("ls", "-q").stdout == ""


def test_bad_input(env, tmp_path):
    bad = [({"Name": "x", "Memory": "12Q"}, 400, "Memory"),
           ({"Name": "x", "Cpus": 99}, 400, "1 to 8 vCPUs"),
           ({"Name": "x", "Kernel": "/nonexistent/Image"}, 404, "/nonexistent/Image"),
           ({"Name": "x", "Disk": "relative.img"}, 400, "absolute path"),
           ({"Name": "../x"}, 400, "VM name"),
           ({"Name": "x", "Bogus": 1}, 400, "unknown field Bogus"),
           ({"Name": "x", "Cpus": "two"}, 400, "Cpus")]
    for body, status, text in bad:
        st, reply = env.api("POST", "/vessel/v1/vms", body)
        assert st == status and text in reply["message"], (body, st, reply)
    env.api("POST", "/vessel/v1/vms", {"Name": "one"}, expect=201)
    st, reply = env.api("POST", "/vessel/v1/vms", {"Name": "one"})
    assert st == 409 and "already in use" in reply["message"]
    env.api("POST", "/vessel/v1/vms/nothing/start", expect=404)
    env.api("POST", "/vessel/v1/vms/one/kill", expect=409)
    env.api("POST", "/vessel/v1/vms/one/snapshot?name=..", expect=400)
    env.api("POST", "/vessel/v1/vms/one/restore?name=none", expect=404)
    env.api("POST", "/vessel/v1/vms/one/stop?t=x", expect=400)
    env.api("POST", "/vessel/v1/vms/one/kill?signal=NOPE", expect=400)
    # killed at once, whatever the guest is doing
    env.api("POST", "/vessel/v1/vms/one/start", expect=204)
    env.api("POST", "/vessel/v1/vms/one/start", expect=304)
    assert env.inspect("one")["State"]["Running"]
    assert env.vessel("kill", "one").stdout == "one\n"
    state = env.inspect("one")["State"]
    assert (state["Status"], state["ExitCode"]) == ("stopped", 128 + signal.SIGKILL)
    r = env.vessel("create", "two", "--memory", "lots", check=False)
    assert r.returncode == 125 and "--memory" in r.stderr
    env.api("DELETE", "/vessel/v1/vms/one", expect=204)
    assert env.vessel("ls", "-q").stdout == ""
    assert env.vd.alive()
