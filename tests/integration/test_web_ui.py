"""The web console (#21) in a real browser: Debian's headless chromium, driven by playwright-core
(tests/web/driver.mjs, one browser for the module, one fresh browser context per scenario),
against vesseld's HTTPS listener (--web) serving the front end that scripts/build-web built into
build/web.

vesseld runs inside a network namespace this module makes, with its default bridge there; the
browser runs in a second one, joined to the first by a veth pair (in vesseld's own namespace,
Chromium saw the containers' veths come and go and aborted loads with ERR_NETWORK_CHANGED). The password is set
with `vessel web passwd`. The guests the scenarios look at are made through the unix socket API:
a busybox container left stopped, one whose labels, command and output carry HTML and script, and
one VM booting the real default Debian guest (shared by the VM scenarios; it boots while the
other scenarios run). Each test is one scenario; a scenario fails on any console error or page
error in the browser that it did not expect (a refused login's 401, say). Screenshots of the main
pages go to build-logs/web/. At the end every guest is removed through the API, vesseld stopped,
any VMM left killed by its pid, and the namespace deleted."""
import json
import os
import pathlib
import select
import shutil
import subprocess
import time

import pytest

import cluster as vcluster
import test_daemon
import test_daemon_vm
from test_daemon import Vesseld, kill_pids

TOP = pathlib.Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
NODE = shutil.which("node") or "/usr/bin/node"
SHOTS = TOP / "build-logs" / "web"
NS = f"vsweb{os.getpid() % 100000}"
NS_BROWSER = NS + "b"
DAEMON_IP, BROWSER_IP = "192.0.2.1", "192.0.2.2"   # TEST-NET-1, on the veth between the two
WEB_ADDR = f"{DAEMON_IP}:8443"
PASSWORD = "correct horse battery staple"
SESSION_TTL = 3   # seconds, for the last scenario's restart of vesseld
VM = "web-vm"
STOPPED = "web-stopped"
XSS = "web-xss"
NET_VM = "web-netvm"     # created, never started: on the bridge network
LIMITED = "web-limited"  # a container with CPU and memory limits
USE_POOL = "web-use"       # a pool whose guests use memory and CPU: the pools page shows it
USE_FILL, USE_SPIN = "web-use-fill", "web-use-spin"
# markup in a label's value, a label's key (no "=" there) and the output; CSP would block inline
# script anyway, and its refusal would be a console error: the scenario fails either way
PAYLOADS = ['<img src=x onerror="window.__xss=1">', "<script>alert(document.domain)</script>",
            "<b>bold</b>"]

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="vesseld runs as root"),
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="no chromium (scripts/setup)"),
    pytest.mark.skipif(not os.path.exists(NODE), reason="no node (scripts/setup)"),
    pytest.mark.skipif(not os.path.exists(test_daemon.DOCKER), reason="no docker CLI"),
]


def run(*args, check=True, **kw):
    r = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=300, **kw)
    if check and r.returncode != 0:
        raise AssertionError(f"{args}: rc {r.returncode}\n{r.stdout}{r.stderr}")
    return r


class Driver:
    """tests/web/driver.mjs in the namespace: one request a line in, one RESULT line out."""

    def __init__(self, ns_path, log_path, base=f"https://{WEB_ADDR}", fresh=True):
        if fresh:
            shutil.rmtree(SHOTS, ignore_errors=True)   # this run's screenshots only
        SHOTS.mkdir(parents=True, exist_ok=True)
        self.log_path = log_path
        self.log = open(log_path, "w")
        self.proc = subprocess.Popen(
            ["nsenter", f"--net={ns_path}", NODE, str(TOP / "tests/web/driver.mjs"),
             "--base", base, "--password", PASSWORD, "--shots", str(SHOTS),
             "--chromium", CHROMIUM],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True, bufsize=1)
        line = self._line(120)
        assert line == "READY", f"the driver did not start: {line!r}\n{self.log_text()}"

    def log_text(self):
        self.log.flush()
        return pathlib.Path(self.log_path).read_text()[-4000:]

    def _line(self, timeout):
        r, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not r:
            return None
        return self.proc.stdout.readline().rstrip("\n")

    def scenario(self, name, /, timeout=150, **args):
        self.proc.stdin.write(json.dumps({"scenario": name, "args": args}) + "\n")
        deadline = time.monotonic() + timeout
        while True:
            line = self._line(max(0.1, deadline - time.monotonic()))
            if line is None:
                raise AssertionError(f"scenario {name}: no answer in {timeout} s\n{self.log_text()}")
            if line.startswith("RESULT "):
                res = json.loads(line[7:])
                break
            if line == "" and self.proc.poll() is not None:
                raise AssertionError(f"the driver died\n{self.log_text()}")
        assert res["ok"], f"scenario {name}: {res['error']}\n(screenshot: " \
            f"{SHOTS}/{res.get('screenshot', '')}.png)"
        return res.get("info", {})

    def close(self):
        try:
            self.proc.stdin.close()
            self.proc.wait(20)
        except (subprocess.TimeoutExpired, OSError):
            self.proc.kill()
            self.proc.wait()
        self.log.close()


class Web:
    """vesseld with --web in a namespace, its guests, and the browser driver."""

    def __init__(self, build_dir, root, image_tar, ns_path):
        self.ns_path = ns_path
        self.build = pathlib.Path(build_dir)
        self.web_args = ["--web", WEB_ADDR, "--web-root", str(self.build / "web")]
        self.vd = Vesseld(build_dir, root, prefix=["nsenter", f"--net={ns_path}"],
                          bridge="vessel0", extra=self.web_args)
        self.vmm_pids = set()
        self.driver = None
        self.vm_id = None

    def vessel(self, *args, input=None, check=True):
        r = subprocess.run([str(self.build / "vessel"), "-H", self.vd.host, *args], input=input,
                           capture_output=True, text=True, timeout=300)
        if check and r.returncode != 0:
            raise AssertionError(f"vessel {' '.join(args)}: rc {r.returncode}\n{r.stdout}"
                                 f"{r.stderr}\n--- vesseld:\n{self.vd.log_text()[-3000:]}")
        return r

    def api(self, method, path, body=None, expect=None):
        """A request on the unix socket: (status, JSON or text)."""
        c = test_daemon_vm.UnixHTTP(str(self.vd.sock))
        data = json.dumps(body) if body is not None else None
        c.request(method, path, body=data,
                  headers={"Content-Type": "application/json"} if data else {})
        r = c.getresponse()
        raw = r.read().decode(errors="replace")
        c.close()
        if expect is not None:
            assert r.status == expect, f"{method} {path}: {r.status} {raw}"
        try:
            return r.status, json.loads(raw)
        except ValueError:
            return r.status, raw   # text, or a stream of JSON lines


@pytest.fixture(scope="module")
def web(build_dir, guest_assets, tmp_path_factory):
    if not (build_dir / "web" / "index.html").is_file():
        # scripts/test builds it after meson; a lone pytest run builds it here
        run("bash", TOP / "scripts/build-web", build_dir / "web")
    root = tmp_path_factory.mktemp("web")
    # stty: the container's TTY size after the page resizes its terminal
    image_tar = test_daemon.busybox_archive(root / "busybox.tar",
                                            extend=lambda l: l.symlink("bin/stty", "busybox"))
    saved = os.environ.get("VESSEL_CACHE")
    # vesseld finds the default guest where scripts/fetch-guest put it
    os.environ["VESSEL_CACHE"] = str(pathlib.Path(guest_assets).parent)
    ns_path, browser_ns = f"/run/netns/{NS}", f"/run/netns/{NS_BROWSER}"
    w = None
    try:
        for ns, ip in ((NS, DAEMON_IP), (NS_BROWSER, BROWSER_IP)):
            run("ip", "netns", "add", ns)
        run("ip", "link", "add", "wb0", "netns", NS, "type", "veth", "peer", "name", "wb0",
            "netns", NS_BROWSER)
        for ns, ip in ((ns_path, DAEMON_IP), (browser_ns, BROWSER_IP)):
            run("nsenter", f"--net={ns}", "ip", "link", "set", "lo", "up")
            run("nsenter", f"--net={ns}", "ip", "addr", "add", f"{ip}/24", "dev", "wb0")
            run("nsenter", f"--net={ns}", "ip", "link", "set", "wb0", "up")
        w = Web(build_dir, root, image_tar, ns_path)
        w.vd.docker("load", "-i", str(image_tar))
        # the VM boots while the first scenarios run
        w.vm_id = w.vessel("vm", "create", VM, "--cpus", "1", "--memory", "256M").stdout.strip()
        w.vessel("vm", "start", VM)
        w.vmm_pids.add(w.api("GET", f"/vessel/v1/vms/{VM}", expect=200)[1]["State"]["Pid"])
        w.vd.docker("create", "--name", STOPPED, "busybox", "sleep", "600")
        w.vd.docker("run", "-d", "--name", XSS, "--label", f"evil={PAYLOADS[0]}",
                    "--label", f"{PAYLOADS[1]}=key", "busybox", "sh", "-c",
                    f"echo '{PAYLOADS[2]}{PAYLOADS[0]}'; sleep 600")
        w.vessel("web", "passwd", input=PASSWORD + "\n")
        w.driver = Driver(browser_ns, root / "driver.log")
        yield w
    finally:
        if w is not None:
            if w.driver:
                w.driver.close()
            if w.vd.alive():
                _, vms = w.api("GET", "/vessel/v1/vms")
                for vm in vms if isinstance(vms, list) else []:
                    w.vmm_pids.add(vm["Pid"])
                    w.api("DELETE", f"/vessel/v1/vms/{vm['Id']}?force=1")
            w.vd.cleanup()
            kill_pids(w.vmm_pids)
        for ns in (NS, NS_BROWSER):
            run("ip", "netns", "del", ns, check=False)
        if saved is None:
            os.environ.pop("VESSEL_CACHE", None)
        else:
            os.environ["VESSEL_CACHE"] = saved


@pytest.fixture(scope="module")
def vm_ready(web):
    """The shared VM, booted to its shell prompt (read through the unix socket's console)."""
    c = test_daemon_vm.boot_console(web, VM)
    c.close()
    return web.vm_id


def container_state(web, name):
    return json.loads(web.vd.docker("inspect", name).stdout)[0]["State"]["Status"]


# ------------------------------------------------------------------ scenarios, in order

def test_login(web):
    info = web.driver.scenario("login")
    assert "CPUs" in info["facts"]


def test_wrong_password_refused(web):
    info = web.driver.scenario("wrong_password")
    assert "wrong password" in info["message"]


def test_missing_csrf_token_refused(web):
    info = web.driver.scenario("csrf", container=XSS)
    assert info["none"] == 403 and info["wrong"] == 403
    assert container_state(web, XSS) == "running"        # the refused stop did nothing


def test_vm_and_container_from_the_api_listed(web):
    info = web.driver.scenario("guests", vm=VM, container=STOPPED)
    assert info["ctrState"] == "created"
    assert info["vmState"] == "running"


def test_start_stopped_container_state_changes_live(web):
    assert container_state(web, STOPPED) == "created"
    web.driver.scenario("start_container", container=STOPPED)
    assert container_state(web, STOPPED) == "running"


def test_create_container_from_the_form(web):
    info = web.driver.scenario("create_container", image="busybox:latest", name="web-formed")
    c = json.loads(web.vd.docker("inspect", "web-formed").stdout)[0]
    assert c["State"]["Status"] == "running" and c["Config"]["Tty"] is True
    assert c["Id"] in info["url"]
    # the terminal told the TTY its size, and its new one after the window shrank
    (rows0, cols0), (rows1, cols1) = info["sizes"]
    assert rows0 > 5 and cols0 > 40 and cols1 < cols0, info["sizes"]
    assert "made-by-the-form" in web.vd.docker("logs", "web-formed").stdout


def test_guest_html_shown_as_text(web):
    info = web.driver.scenario("xss", container=XSS, payloads=PAYLOADS)
    assert PAYLOADS[0] in info["labels"]


def test_every_page_renders(web, vm_ready):
    web.driver.scenario("pages", vmId=vm_ready)
    _, pool = web.api("GET", "/vessel/v1/pools/web-pool", expect=200)
    assert pool["Cpus"] == 2


def test_vm_console_in_the_page(web, vm_ready):
    info = web.driver.scenario("vm_console", vmId=vm_ready)
    assert any("web-42-console" in l for l in info["tail"]) or info["tail"]
    assert "web-42-console" in web.vessel("vm", "logs", VM).stdout


def test_vm_pause_resume(web, vm_ready):
    web.driver.scenario("pause_resume", vmId=vm_ready)
    _, vm = web.api("GET", f"/vessel/v1/vms/{VM}", expect=200)
    assert vm["State"]["Status"] == "running"
    _, events = web.api("GET", "/events?since=0&until=" + str(int(time.time()) + 1)
                        + "&filters=%7B%22type%22%3A%5B%22vm%22%5D%7D")
    actions = [json.loads(l)["Action"] for l in events.splitlines() if l.strip()]
    assert "pause" in actions and "resume" in actions[actions.index("pause"):]


def test_guest_table_shows_pool_address_and_limits(web):
    # a VM on the bridge network has its address from create on (the network reserves it for
    # the DHCP lease); a container with limits
    web.api("POST", "/vessel/v1/vms", {"Name": NET_VM, "Network": "bridge", "Memory": "64M"},
            expect=201)
    _, vms = web.api("GET", "/vessel/v1/vms", expect=200)
    test_daemon_vm.validate("GET", "/vessel/v1/vms", 200, json.dumps(vms))
    line = next(v for v in vms if v["Name"] == NET_VM)
    assert line["Pool"] and line["IPAddress"], line
    web.vd.docker("create", "--name", LIMITED, "--cpus", "0.5", "-m", "64m", "busybox",
                  "sleep", "600")
    info = web.driver.scenario("guest_columns", vm=NET_VM, pool=line["Pool"],
                               address=line["IPAddress"], container=LIMITED, cpus="0.50",
                               memory="64.0 MiB")
    assert info["vm"][4] == line["IPAddress"]


def _fmt_bytes(n):
    """web/src/dom.ts's fmtBytes."""
    units, i, v = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"], 0, float(n)
    while abs(v) >= 1024 and i < len(units) - 1:
        v /= 1024
        i += 1
    return (str(int(v)) if i == 0 else f"{v:.{0 if v >= 100 else 1}f}") + " " + units[i]


def test_pools_page_shows_what_the_guests_use(web):
    """A pool with a container that holds 16 MiB (in its /dev/shm) and one that spins: the pools
    page shows the pool's CPU and memory use, as GET /vessel/v1/pools/NAME/stats (what `vessel
    pool stats` reads) answered the page, beside its limit and requests; the API's own reading
    agrees (memory within a few MiB: it moves a little between two samples)."""
    web.api("POST", "/vessel/v1/pools", {"Name": USE_POOL, "Cpus": 1, "Memory": "256M"},
            expect=201)
    web.vd.docker("run", "-d", "--name", USE_FILL, "--label", f"vessel.pool={USE_POOL}",
                  "-m", "64m", "busybox", "sh", "-c",
                  "dd if=/dev/zero of=/dev/shm/fill bs=1M count=16 2>/dev/null && echo FILLED; "
                  "sleep 600")
    web.vd.docker("run", "-d", "--name", USE_SPIN, "--label", f"vessel.pool={USE_POOL}",
                  "busybox", "sh", "-c", "while :; do :; done")
    for _ in range(600):
        if "FILLED" in web.vd.docker("logs", USE_FILL).stdout:
            break
        time.sleep(0.1)
    else:
        raise AssertionError("the container did not fill its /dev/shm")
    info = web.driver.scenario("pool_use", pool=USE_POOL)
    shown, answers = info["shown"], info["answers"]
    # what the page shows is one of the API's answers to it, formatted as the page formats
    match = [a for a in answers if a["memory"] == shown["memory"] and a["cpu"] == shown["cpu"]]
    assert match, info
    a = match[0]
    assert shown["memoryText"] == f"{_fmt_bytes(a['memory'])} ({a['memoryPool']:.1f} % of the pool)", info
    assert shown["cpuText"] == f"{a['cpu']:.1f} % ({a['cpuPool']:.1f} % of the pool)", info
    # beside the limit and what the guests request (the filler asks for 64 MiB)
    assert "64.0 MiB of 256 MiB" in " ".join(shown["cells"]), info
    assert shown["memory"] >= 16 << 20, info
    assert shown["cpu"] > 0, info  # the spinner runs (how fast depends on the machine's load)
    _, st = web.api("GET", f"/vessel/v1/pools/{USE_POOL}/stats", expect=200)
    assert abs(st["Memory"]["Usage"] - shown["memory"]) <= 4 << 20, (st, shown)
    assert st["Memory"]["Usage"] >= 16 << 20 and st["Cpu"]["Percent"] > 0, st
    web.vd.docker("rm", "-f", USE_FILL, USE_SPIN)
    web.api("DELETE", f"/vessel/v1/pools/{USE_POOL}", expect=204)


def test_vm_stats_stream_and_migrate_offered_only_in_a_cluster(web, vm_ready):
    # the stream itself, on the unix socket: one object a line, each as the API describes
    c = test_daemon_vm.UnixHTTP(str(web.vd.sock))
    c.request("GET", f"/vessel/v1/vms/{VM}/stats?stream=1")
    r = c.getresponse()
    assert r.status == 200
    samples = [json.loads(r.readline()) for _ in range(2)]
    c.close()
    for s in samples:
        test_daemon_vm.validate("GET", f"/vessel/v1/vms/{VM}/stats", 200, json.dumps(s))
    assert samples[1]["Cpu"]["HostNs"] >= samples[0]["Cpu"]["HostNs"]
    info = web.driver.scenario("vm_stats_migrate", vmId=vm_ready)
    assert info["requests"] == ["?stream=1"]


def test_expired_session_refused(web):
    # a restart with a short session lifetime; the guests run on, the password stays
    web.vd.stop()
    web.vd.extra = web.web_args + ["--web-session-ttl", str(SESSION_TTL)]
    web.vd.start()
    info = web.driver.scenario("session_expired", ttl=SESSION_TTL)
    assert "expired" in info["message"]
    # a reload then shows the login form saying so, with no error in the console
    info = web.driver.scenario("reload_after_expiry", ttl=SESSION_TTL)
    assert "expired" in info["message"]


@pytest.mark.skipif(not os.path.exists(vcluster.ETCD), reason="no etcd-server (scripts/setup)")
def test_migrate_offered_in_a_cluster(build_dir, tmp_path):
    """In a cluster (etcd's three members and two vesselds in namespaces, cluster.py), a VM's
    Migrate is enabled, offers the other ready node (not this one), confirms in its chooser and
    posts {"Node": ...}; the daemon's answer, whatever it is, shows on the page."""
    c = vcluster.Cluster(build_dir, tmp_path, n=3, name="w")
    driver = None
    try:
        c.start_etcd()
        h1, h2 = c.hosts[0], c.hosts[1]
        root = h1.root / "vd"
        root.mkdir(parents=True, exist_ok=True)
        h1.vd = Vesseld(build_dir, root, prefix=["nsenter", f"--net={h1.ns}"], bridge="vessel0",
                        extra=h1.vesseld_args() + ["--web", "127.0.0.1:8443", "--web-root",
                                                   str(pathlib.Path(build_dir) / "web")])
        c.pids.add(h1.vd.proc.pid)
        h2.start_vesseld()
        run(pathlib.Path(build_dir) / "vessel", "-H", h1.vd.host, "web", "passwd",
            input=PASSWORD + "\n")
        vcluster.wait_for("both nodes ready", lambda: sorted(
            n["Name"] for n in (h1.api("GET", "/vessel/v1/nodes")[1] or [])
            if isinstance(n, dict) and n.get("Status") == "ready") == ["n1", "n2"], timeout=60)
        st, vm = h1.api("POST", "/vessel/v1/vms", {"Name": "mig", "Memory": "64M", "Node": "n1"})
        assert st == 201, vm
        driver = Driver(h1.ns, tmp_path / "driver.log", base="https://127.0.0.1:8443",
                        fresh=False)
        info = driver.scenario("migrate_in_cluster", vmId=vm["Id"], target="n2")
        assert info["options"] == ["n2"], info
        assert info["body"] == {"Node": "n2"}, info
        assert "mig" in info["outcome"], info
    finally:
        if driver:
            driver.close()
        c.cleanup()
