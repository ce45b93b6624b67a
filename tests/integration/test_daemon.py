"""vesseld driven by the stock docker CLI and docker-py (python3-docker), with a busybox image the
tests build offline from Debian's busybox-static. Every test starts its own vesseld on a private
socket, data root and exec root, and leaves no container, mount or process behind."""
import hashlib
import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import tarfile
import time

import pytest

import oci_images

DOCKER = shutil.which("docker") or "/usr/local/bin/docker"
EXTRA_APPLETS = ["hostname", "sh", "kill", "seq"]

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="containers need root"),
    pytest.mark.skipif(not os.path.exists(DOCKER), reason="no docker CLI"),
]


def busybox_archive(path, tag="busybox:latest", config_extra=None, extend=None):
    """A docker-archive (what `docker save` writes) of a one-layer busybox image; config_extra
    is merged into its config, extend(layer) may add files."""
    layer = oci_images.busybox_layer()
    for a in EXTRA_APPLETS:
        if a not in oci_images.APPLETS:
            layer.symlink(f"bin/{a}", "busybox")
    if extend:
        extend(layer)
    tar = layer.tar()
    config = {"architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z",
              "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                         "Cmd": ["sh"], "Labels": {"org.example.from": "image"},
                         **(config_extra or {})}}
    return oci_images.docker_archive(path, [tar], [hashlib.sha256(tar).hexdigest()], config,
                                     [tag])


@pytest.fixture(scope="module")
def image_tar(tmp_path_factory):
    return busybox_archive(tmp_path_factory.mktemp("image") / "busybox.tar")


def decode_reply(raw):
    """(status, decoded JSON or text) of a raw HTTP/1.1 reply, chunked or not."""
    head, _, rest = raw.partition(b"\r\n\r\n")
    status = int(head.split()[1])
    if b"chunked" in head.lower():
        body, text = b"", rest
        while text:
            size, _, text = text.partition(b"\r\n")
            n = int(size, 16)
            if n == 0:
                break
            body, text = body + text[:n], text[n + 2:]
        rest = body
    try:
        return status, json.loads(rest) if rest else None
    except ValueError:
        return status, rest.decode()


def kill_pids(pids):
    """SIGKILL each process left behind by a test (VMMs outlive their daemon by design); pid 0
    (a VM that never ran) and processes already gone are skipped."""
    for pid in set(pids) - {0}:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


class Vesseld:
    """One private vesseld: start, kill -9, restart, and a docker CLI pointed at it."""

    def __init__(self, build_dir, root, prefix=(), bridge="none", extra=(), wait=True):
        # prefix: a command that runs vesseld (nsenter --net=... in test_daemon_net.py);
        # bridge "none": no default bridge, as this vesseld runs in the host's namespace;
        # extra: more options (--web ... in test_web_api.py, --cluster ... in cluster.py);
        # wait: for its /_ping answer
        self.prefix = list(prefix)
        self.extra = list(extra)
        self.bridge = bridge
        self.build = pathlib.Path(build_dir)
        self.root = pathlib.Path(root)
        self.data = self.root / "data"
        self.exec_root = self.root / "exec"
        self.sock = self.root / "vesseld.sock"
        self.host = f"unix://{self.sock}"
        self.env = dict(os.environ, DOCKER_HOST=self.host, DOCKER_CONFIG=str(self.root / "cfg"))
        self.proc = None
        self.logs = []
        self.start(wait=wait)

    def start(self, wait=True):
        log = open(self.root / f"vesseld-{len(self.logs)}.log", "w")
        self.logs.append(log)
        self.proc = subprocess.Popen(
            [*self.prefix, str(self.build / "vesseld"), "--data-root", str(self.data),
             "--exec-root", str(self.exec_root), "-H", self.host, "--log-level", "debug",
             "--bridge", self.bridge, *self.extra],
            stdout=log, stderr=subprocess.STDOUT)
        if wait:
            self.wait_ready()

    def wait_ready(self, tries=300):
        """Wait for /_ping's answer (tries of 20 ms); vesseld exiting meanwhile is an error."""
        for _ in range(tries):
            if self.proc.poll() is not None:
                raise RuntimeError("vesseld exited: " + self.log_text())
            # Connection: close, or raw() waits out its 2 s for a keep-alive connection's end
            if self.sock.exists() and self.raw(b"GET /_ping HTTP/1.1\r\nHost: d\r\n"
                                               b"Connection: close\r\n\r\n", quiet=True):
                return
            time.sleep(0.02)
        raise RuntimeError("vesseld did not answer /_ping: " + self.log_text())

    def log_text(self):
        return "".join(p.read_text() for p in sorted(self.root.glob("vesseld-*.log")))

    def alive(self):
        return self.proc.poll() is None

    def kill9(self):
        self.proc.kill()
        self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(10)
        rc = self.proc.returncode
        for f in self.logs:
            f.close()
        return rc

    def docker(self, *args, check=True, timeout=60, input=None):
        r = subprocess.run([DOCKER, *args], env=self.env, capture_output=True, text=True,
                           timeout=timeout, input=input)
        if check and r.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)}: rc {r.returncode}\n{r.stdout}"
                                 f"\n{r.stderr}\n--- vesseld:\n{self.log_text()[-3000:]}")
        return r

    def raw(self, request, quiet=False, read_all=True):
        """Send raw bytes, return the raw reply (until the server closes or 2 s pass)."""
        try:
            s = socket.socket(socket.AF_UNIX)
            s.settimeout(2)
            s.connect(str(self.sock))
            s.sendall(request)
            out = b""
            while True:
                try:
                    b = s.recv(65536)
                except socket.timeout:
                    break
                if not b:
                    break
                out += b
                if not read_all and b"\r\n\r\n" in out:
                    break
            s.close()
            return out
        except OSError:
            if quiet:
                return b""
            raise

    def cleanup(self):
        """Remove every container through the API, stop, and check nothing is left."""
        if self.alive():
            ids = self.docker("ps", "-aq", check=False).stdout.split()
            if ids:
                self.docker("rm", "-f", *ids, check=False)
        self.stop()
        leftovers = [l for l in open("/proc/self/mounts") if str(self.root) in l]
        for line in leftovers:
            subprocess.run(["umount", "-l", line.split()[1]], check=False)
        assert not leftovers, f"mounts left behind: {leftovers}"


@pytest.fixture
def vd(build_dir, tmp_path):
    d = Vesseld(build_dir, tmp_path)
    yield d
    d.cleanup()


@pytest.fixture
def vdi(vd, image_tar):
    """A vesseld with the busybox image loaded."""
    r = vd.docker("load", "-i", str(image_tar))
    assert "Loaded image: busybox:latest" in r.stdout
    return vd


def status_line(reply):
    return reply.split(b"\r\n", 1)[0].decode()


def json_body(reply):
    return json.loads(reply.split(b"\r\n\r\n", 1)[1])


# ------------------------------------------------------------------ system


def test_version_info_ping(vd):
    v = vd.docker("version", "--format", "{{.Server.APIVersion}} {{.Client.APIVersion}}")
    assert v.stdout.split() == ["1.41", "1.41"]  # the CLI negotiated down to ours
    info = json.loads(vd.docker("info", "--format", "{{json .}}").stdout)
    assert info["DockerRootDir"] == str(vd.data)
    assert info["OSType"] == "linux" and info["LoggingDriver"] == "json-file"
    head = vd.raw(b"HEAD /_ping HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n")
    assert status_line(head) == "HTTP/1.1 200 OK"
    for h in [b"Api-Version: 1.41", b"Docker-Experimental: false", b"Ostype: linux",
              b"Builder-Version: 1"]:
        assert h in head
    assert head.endswith(b"\r\n\r\n")  # HEAD: no body
    unversioned = vd.raw(b"GET /version HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n")
    assert json_body(unversioned)["ApiVersion"] == "1.41"
    too_new = vd.raw(b"GET /v1.99/version HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n")
    assert status_line(too_new).startswith("HTTP/1.1 400")
    assert "too new" in json_body(too_new)["message"]
    missing = vd.raw(b"GET /v1.41/nothing HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n")
    assert status_line(missing).startswith("HTTP/1.1 404")
    assert json_body(missing) == {"message": "page not found"}


def test_sigterm_stops_cleanly(vd):
    assert vd.stop() == 0
    assert not vd.sock.exists()
    vd.start()  # and the same data root serves again


# ------------------------------------------------------------------ images


def test_images_load_list_tag_remove(vd, image_tar):
    r = vd.docker("load", "-i", str(image_tar))
    assert r.stdout.strip() == "Loaded image: busybox:latest"
    rows = vd.docker("images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}").stdout.split("\n")
    assert rows[0].startswith("busybox:latest ")
    image_id = rows[0].split()[1]
    vd.docker("tag", "busybox", "example.org/team/box:v1")
    inspect = json.loads(vd.docker("image", "inspect", "example.org/team/box:v1").stdout)[0]
    assert inspect["Id"].startswith("sha256:" + image_id)
    assert sorted(inspect["RepoTags"]) == ["busybox:latest", "example.org/team/box:v1"]
    assert inspect["Config"]["Cmd"] == ["sh"]
    assert inspect["RootFS"]["Type"] == "layers"
    # removing one of two tags only untags
    r = vd.docker("rmi", "example.org/team/box:v1")
    assert "Untagged: example.org/team/box:v1" in r.stdout
    assert "Deleted" not in r.stdout
    missing = vd.docker("image", "inspect", "nosuch", check=False)
    assert missing.returncode != 0 and "No such image: nosuch" in missing.stderr
    # an image a container uses is refused without -f
    vd.docker("create", "--name", "user", "busybox", "true")
    refused = vd.docker("rmi", "busybox", check=False)
    assert refused.returncode != 0 and "container" in refused.stderr
    vd.docker("rm", "user")
    r = vd.docker("rmi", "busybox")
    assert "Untagged: busybox:latest" in r.stdout and "Deleted: sha256:" in r.stdout
    assert vd.docker("images", "-q").stdout.strip() == ""


# ------------------------------------------------------------------ containers


def test_run_rm_echo(vdi):
    r = vdi.docker("run", "--rm", "busybox", "echo", "hi")
    assert r.stdout == "hi\n"
    r = vdi.docker("run", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2; exit 3",
                   check=False)
    assert r.returncode == 3
    assert r.stdout == "out\n"
    assert "err\n" in r.stderr
    assert vdi.docker("ps", "-aq").stdout.strip() == ""  # --rm removed both


def test_create_options(vdi):
    r = vdi.docker("run", "--rm", "-e", "GREETING=hello", "-w", "/tmp", "-u", "nobody",
                   "--hostname", "box1", "-l", "team=x", "--entrypoint", "sh", "busybox", "-c",
                   "echo $GREETING; pwd; id -u; hostname; echo $PATH")
    assert r.stdout.split("\n")[:5] == ["hello", "/tmp", "65534", "box1",
                                        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
    none = vdi.docker("run", "--rm", "--network", "none", "busybox", "cat", "/proc/net/dev")
    assert [l.split(":")[0].strip() for l in none.stdout.splitlines()[2:]] == ["lo"]
    host = vdi.docker("run", "--rm", "--network", "host", "busybox", "cat", "/proc/net/dev")
    assert len(host.stdout.splitlines()[2:]) == len(open("/proc/net/dev").read().splitlines()[2:])
    cid = vdi.docker("create", "--name", "labelled", "-l", "team=x", "busybox").stdout.strip()
    c = json.loads(vdi.docker("inspect", cid).stdout)[0]
    assert c["Config"]["Labels"] == {"org.example.from": "image", "team": "x"}
    assert c["Path"] == "sh" and c["Name"] == "/labelled"
    assert c["State"]["Status"] == "created"
    dup = vdi.docker("create", "--name", "labelled", "busybox", check=False)
    assert dup.returncode != 0 and "already in use" in dup.stderr
    bad = vdi.docker("create", "--name", "bad/name", "busybox", check=False)
    assert bad.returncode != 0 and "Invalid container name" in bad.stderr
    vdi.docker("rm", "labelled")


def test_detached_ps_logs_stop_rm(vdi):
    cid = vdi.docker("run", "-d", "--name", "ticker", "busybox", "sh", "-c",
                     "trap 'echo bye; exit 0' TERM; i=0; while true; do echo line $i; "
                     "echo err $i >&2; i=$((i+1)); sleep 0.1; done").stdout.strip()
    assert len(cid) == 64
    ps = vdi.docker("ps", "--format", "{{.ID}} {{.Names}} {{.Status}}").stdout.split()
    assert ps[:3] == [cid[:12], "ticker", "Up"]
    # its first two lines of each stream, however slowly a loaded machine runs the loop
    def two_each():
        r = vdi.docker("logs", "ticker")
        return r.stdout.count("\n") >= 2 and r.stderr.count("\n") >= 2

    assert wait_for(two_each, timeout=60)
    logs = vdi.docker("logs", "ticker")
    assert logs.stdout.startswith("line 0\nline 1\n")
    assert logs.stderr.startswith("err 0\nerr 1\n")
    tail = vdi.docker("logs", "--tail", "1", "ticker")
    assert len(tail.stdout.splitlines()) <= 1 and len(tail.stderr.splitlines()) <= 1
    # logs -f follows until the container stops
    follow = subprocess.Popen([DOCKER, "logs", "-f", "ticker"], env=vdi.env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    time.sleep(0.3)
    vdi.docker("stop", "ticker")
    out, _ = follow.communicate(timeout=15)
    assert out.rstrip().endswith("bye")
    assert follow.returncode == 0
    state = json.loads(vdi.docker("inspect", "ticker").stdout)[0]["State"]
    assert state["Status"] == "exited" and state["ExitCode"] == 0
    assert vdi.docker("ps", "-q").stdout.strip() == ""
    assert cid[:12] in vdi.docker("ps", "-aq").stdout
    assert vdi.docker("wait", "ticker").stdout.strip() == "0"
    vdi.docker("rm", "ticker")
    assert vdi.docker("ps", "-aq").stdout.strip() == ""


def test_kill_wait_and_force_remove(vdi):
    vdi.docker("run", "-d", "--name", "sleeper", "busybox", "sleep", "300")
    running = vdi.docker("rm", "sleeper", check=False)
    assert running.returncode != 0 and "cannot remove a running container" in running.stderr
    waiter = subprocess.Popen([DOCKER, "wait", "sleeper"], env=vdi.env, text=True,
                              stdout=subprocess.PIPE)
    time.sleep(0.3)
    vdi.docker("kill", "sleeper")
    assert waiter.communicate(timeout=15)[0].strip() == "137"
    assert json.loads(vdi.docker("inspect", "sleeper").stdout)[0]["State"]["ExitCode"] == 137
    # a SIGKILL answers once the container has stopped, as dockerd's: rm needs no -f after it
    vdi.docker("run", "-d", "--name", "sleeper3", "busybox", "sleep", "300")
    vdi.docker("kill", "sleeper3")
    vdi.docker("rm", "sleeper3")
    # removed at once, maybe while its exit was still being reported: die all the same, first
    ev = vdi.docker("events", "--since", "0", "--until", f"{time.time():.3f}", "--filter",
                    "container=sleeper3", "--format", "{{.Action}}").stdout.split()
    assert "die" in ev and ev.index("die") < ev.index("destroy") == len(ev) - 1, ev
    vdi.docker("run", "-d", "--name", "sleeper2", "busybox", "sleep", "300")
    vdi.docker("rm", "-f", "sleeper", "sleeper2")
    assert vdi.docker("ps", "-aq").stdout.strip() == ""
    gone = vdi.docker("container", "inspect", "sleeper2", check=False)
    assert gone.returncode != 0 and "No such container" in gone.stderr


def test_stop_with_a_negative_timeout_waits_for_the_exit(vdi):
    """`docker stop -t -1` sends the stop signal and waits with no limit, as dockerd and podman
    do (it was a kill at once): the container's init ignores SIGTERM, so the stop still waits
    after 2 s, and answers once a kill has ended the container."""
    vdi.docker("run", "-d", "--name", "deaf", "busybox", "sleep", "300")
    stop = subprocess.Popen([DOCKER, "stop", "-t", "-1", "deaf"], env=vdi.env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(2)
    assert stop.poll() is None
    state = json.loads(vdi.docker("inspect", "deaf").stdout)[0]["State"]
    assert state["Running"], state
    vdi.docker("kill", "deaf")
    out, err = stop.communicate(timeout=30)
    assert stop.returncode == 0, err
    assert out.strip() == "deaf"
    state = json.loads(vdi.docker("inspect", "deaf").stdout)[0]["State"]
    assert not state["Running"] and state["ExitCode"] == 137, state
    ev = vdi.docker("events", "--since", "0", "--until", f"{time.time():.3f}", "--filter",
                    "container=deaf", "--format", "{{.Action}}").stdout.split()
    assert ev.count("kill") == 2 and "die" in ev, ev
    vdi.docker("rm", "deaf")
    # such a stop does not hold up the daemon's end, and leaves the container running
    vdi.docker("run", "-d", "--name", "deaf2", "busybox", "sleep", "300")
    pid = json.loads(vdi.docker("inspect", "deaf2").stdout)[0]["State"]["Pid"]
    stop = subprocess.Popen([DOCKER, "stop", "-t", "-1", "deaf2"], env=vdi.env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(1)
    assert vdi.stop() == 0
    stop.communicate(timeout=30)
    assert stop.returncode != 0
    os.kill(pid, 0)
    vdi.start()
    assert json.loads(vdi.docker("inspect", "deaf2").stdout)[0]["State"]["Running"]
    vdi.docker("rm", "-f", "deaf2")


def test_container_survives_daemon_kill9(vdi):
    vdi.docker("run", "-d", "--name", "survivor", "busybox", "sh", "-c",
               "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.1; done")
    time.sleep(0.3)
    pid = json.loads(vdi.docker("inspect", "survivor").stdout)[0]["State"]["Pid"]
    vdi.kill9()
    time.sleep(0.5)  # the container keeps writing while no daemon runs
    os.kill(pid, 0)
    vdi.start()
    ps = vdi.docker("ps", "--format", "{{.Names}} {{.Status}}").stdout.split()
    assert ps[:2] == ["survivor", "Up"]
    assert json.loads(vdi.docker("inspect", "survivor").stdout)[0]["State"]["Pid"] == pid
    # nothing lost: one tick after the other, through the time without a daemon (a loaded
    # machine may have run fewer than six ticks by now: wait for them rather than assume)
    assert wait_for(lambda: len(vdi.docker("logs", "survivor").stdout.splitlines()) >= 6)
    lines = vdi.docker("logs", "survivor").stdout.splitlines()
    assert lines == [f"tick {i}" for i in range(len(lines))]
    vdi.docker("stop", "-t", "1", "survivor")
    assert json.loads(vdi.docker("inspect", "survivor").stdout)[0]["State"]["Status"] == "exited"
    vdi.docker("rm", "survivor")



def test_removal_is_complete_at_a_kill9(vdi):
    """A removal renames the container's directory to .removed-<id> before it answers and
    deletes it afterwards; a kill -9 between the two leaves that name, which the next start
    deletes without taking it for a container."""
    cid = vdi.docker("create", "--name", "halfgone", "busybox", "true").stdout.strip()
    vdi.docker("run", "--rm", "busybox", "true")
    vdi.kill9()
    cdir = vdi.data / "containers" / cid
    subprocess.run(["umount", "-l", str(cdir / "rootfs")], check=True)
    gone = vdi.data / "containers" / f".removed-{cid}"
    cdir.rename(gone)  # the state a kill -9 right after the rename leaves
    vdi.start()
    assert not gone.exists()
    assert vdi.docker("ps", "-aq").stdout.strip() == ""
    missing = vdi.docker("container", "inspect", "halfgone", check=False)
    assert missing.returncode != 0 and "No such container" in missing.stderr
    # and the --rm container's files went after its answer
    assert [p.name for p in (vdi.data / "containers").iterdir()] == []


# ------------------------------------------------------------------ docker-py


def test_docker_py(vdi):
    docker = pytest.importorskip("docker")
    client = docker.DockerClient(base_url=vdi.host, version="auto")
    try:
        assert client.version()["ApiVersion"] == "1.41"
        api = client.api
        c = api.create_container("busybox", ["sh", "-c", "echo from-py; echo oops >&2; exit 7"],
                                 environment={"A": "1"}, labels={"k": "v"})
        api.start(c["Id"])
        assert api.wait(c["Id"], timeout=30)["StatusCode"] == 7
        assert api.logs(c["Id"], stdout=True, stderr=False) == b"from-py\n"
        assert api.logs(c["Id"], stdout=False, stderr=True) == b"oops\n"
        assert api.inspect_container(c["Id"])["Config"]["Labels"]["k"] == "v"
        api.remove_container(c["Id"])
        out = client.containers.run("busybox", ["echo", "high-level"], remove=True)
        assert out == b"high-level\n"
        stream = client.containers.run("busybox", ["sh", "-c", "for i in 1 2 3; do echo $i; done"],
                                       detach=True)
        stream.wait(timeout=30)
        assert b"".join(stream.logs(stream=True, follow=True)) == b"1\n2\n3\n"
        stream.remove(force=True)
        assert client.containers.list(all=True) == []
        assert [t for i in client.images.list() for t in i.tags] == ["busybox:latest"]
    finally:
        client.close()


# ------------------------------------------------------------------ hostile input


def test_bad_input_gets_errors_and_daemon_lives(vdi):
    garbage = vdi.raw(b"GARBAGE\r\n\r\n")
    assert status_line(garbage).startswith("HTTP/1.1 400")
    assert "request line" in json_body(garbage)["message"]
    big = b"GET /_ping HTTP/1.1\r\nHost: d\r\nX-Big: " + b"a" * 70000 + b"\r\n\r\n"
    reply = vdi.raw(big, read_all=False)
    assert status_line(reply).startswith("HTTP/1.1 431")
    for body, words in [(b"{not json", "request body"),
                        (b'{"Image": "busybox", "Cmd": 5}', "Cmd"),
                        (b'{"Image": 7}', "Image"),
                        (b'[1, 2]', "expected a JSON object"),
                        (b'{"Image": "busybox", "Env": ["A=1", 3]}', "Env")]:
        req = (b"POST /v1.41/containers/create HTTP/1.1\r\nHost: d\r\nConnection: close\r\n"
               b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        reply = vdi.raw(req)
        assert status_line(reply).startswith("HTTP/1.1 400"), reply
        assert words in json_body(reply)["message"]
    chunked = (b"POST /v1.41/containers/create HTTP/1.1\r\nHost: d\r\nConnection: close\r\n"
               b"Transfer-Encoding: chunked\r\n\r\nzz\r\n")
    assert status_line(vdi.raw(chunked)).startswith("HTTP/1.1 400")
    smuggle = (b"POST /_ping HTTP/1.1\r\nHost: d\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n")
    assert status_line(vdi.raw(smuggle)).startswith("HTTP/1.1 400")
    traversal = vdi.raw(b"GET /v1.41/containers/..%2F..%2Fetc/json HTTP/1.1\r\nHost: d\r\n"
                        b"Connection: close\r\n\r\n")
    assert status_line(traversal).startswith("HTTP/1.1 404")
    # a client that goes away mid-request and one that sends half a head
    s = socket.socket(socket.AF_UNIX)
    s.connect(str(vdi.sock))
    s.sendall(b"POST /v1.41/containers/create HTTP/1.1\r\nHost: d\r\nContent-Length: 100\r\n\r\n{")
    s.close()
    # keep-alive: two requests on one connection, answered in order
    two = vdi.raw(b"GET /_ping HTTP/1.1\r\nHost: d\r\n\r\nGET /version HTTP/1.1\r\nHost: d\r\n"
                  b"Connection: close\r\n\r\n")
    assert two.count(b"HTTP/1.1 200 OK") == 2
    assert vdi.alive()
    assert vdi.docker("run", "--rm", "busybox", "echo", "still here").stdout == "still here\n"


def test_many_clients_and_disconnects_mid_stream(vdi):
    import concurrent.futures
    vdi.docker("run", "-d", "--name", "chatty", "busybox", "sh", "-c",
               "while true; do echo tick; sleep 0.05; done")

    def one(i):
        path = [b"/_ping", b"/v1.41/containers/json?all=1", b"/v1.41/version"][i % 3]
        reply = vdi.raw(b"GET " + path + b" HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n")
        return status_line(reply)

    with concurrent.futures.ThreadPoolExecutor(max_workers=200) as pool:
        statuses = list(pool.map(one, range(200)))
    assert statuses == ["HTTP/1.1 200 OK"] * 200
    # followers and attachers that vanish while output flows
    for path in [b"/v1.41/containers/chatty/logs?follow=1&stdout=1",
                 b"/v1.41/containers/chatty/attach?stream=1&stdout=1&stderr=1"]:
        for _ in range(5):
            s = socket.socket(socket.AF_UNIX)
            s.connect(str(vdi.sock))
            s.sendall(b"POST " + path + b" HTTP/1.1\r\nHost: d\r\nConnection: Upgrade\r\n"
                      b"Upgrade: tcp\r\n\r\n" if b"attach" in path else
                      b"GET " + path + b" HTTP/1.1\r\nHost: d\r\n\r\n")
            first = s.recv(4096)
            assert first.startswith(b"HTTP/1.1 101") or first.startswith(b"HTTP/1.1 200")
            s.close()
    wrong = vdi.raw(b"POST /v1.41/version HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n")
    assert status_line(wrong).startswith("HTTP/1.1 405")
    assert vdi.alive()
    ps = vdi.docker("ps", "--format", "{{.Names}}").stdout.split()
    assert ps == ["chatty"]
    assert "tick" in vdi.docker("logs", "--tail", "1", "chatty").stdout
    vdi.docker("rm", "-f", "chatty")


def _cpu_seconds(pid):
    """User and system CPU time of a process so far."""
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_clients_that_do_not_read_are_not_read(vdi):
    """A client that pipelines requests and reads none of the answers: the daemon stops reading
    it once about 1 MiB of answers waits (before, it read and answered as fast as the client
    sent, queueing answers without bound), costs no CPU meanwhile, and answers every request in
    order once the client reads. A client that hangs up while a worker has its call (a stop that
    waits out its timeout): the hang-up is not reported to the loop again and again meanwhile."""
    import select
    import threading
    ping = b"GET /_ping HTTP/1.1\r\nHost: d\r\n\r\n"
    s = socket.socket(socket.AF_UNIX)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(str(vdi.sock))
    s.setblocking(False)
    sent, cap = 0, 8 << 20
    batch = ping * 256
    while sent < cap:
        try:
            sent += s.send(batch[sent % len(ping):])
            continue
        except BlockingIOError:
            pass
        # the daemon may be slow to read on a loaded machine: only a socket that stays full
        # for 5 s counts as not read any more
        _, w, _ = select.select([], [s], [], 5)
        if not w:
            break
    assert sent < 4 << 20, f"the daemon read {sent} bytes of requests whose answers were unread"
    before = _cpu_seconds(vdi.proc.pid)
    time.sleep(3)
    used = _cpu_seconds(vdi.proc.pid) - before
    assert used < 0.5, f"vesseld used {used:.2f} s of CPU in 3 s while a client did not read"
    assert vdi.raw(b"GET /_ping HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n").endswith(b"OK")
    # now read: every request is answered, the partial last one once it is complete
    got = bytearray()
    s.setblocking(True)
    s.settimeout(60)
    def read_to_end():
        while chunk := s.recv(1 << 16):
            got.extend(chunk)

    reader = threading.Thread(target=read_to_end)
    reader.start()
    rest = len(ping) - sent % len(ping) if sent % len(ping) else 0
    s.sendall(ping[len(ping) - rest:] + b"GET /_ping HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n")
    reader.join(90)
    assert not reader.is_alive()
    expected = -(-sent // len(ping)) + 1
    assert got.count(b"HTTP/1.1 200 OK\r\n") == expected
    assert got.count(b"\r\n\r\nOK") == expected
    s.close()

    vdi.docker("run", "-d", "--name", "deaf", "busybox", "sleep", "1000")  # pid 1: TERM ignored
    s = socket.socket(socket.AF_UNIX)
    s.connect(str(vdi.sock))
    s.sendall(b"POST /v1.41/containers/deaf/stop?t=6 HTTP/1.1\r\nHost: d\r\n\r\n")
    time.sleep(1)  # the worker has it
    s.close()
    before = _cpu_seconds(vdi.proc.pid)
    time.sleep(3)
    used = _cpu_seconds(vdi.proc.pid) - before
    assert used < 0.5, f"vesseld used {used:.2f} s of CPU in 3 s after a client hung up"
    assert wait_for(lambda: not json.loads(vdi.docker("inspect", "deaf").stdout)[0]["State"][
        "Running"], timeout=60)
    assert vdi.alive()
    vdi.docker("rm", "-f", "deaf")


def test_restart_pause_start_again_timestamps_swarm(vdi):
    vdi.docker("run", "-d", "--name", "r1", "busybox", "sh", "-c",
               "echo started; trap 'exit 0' TERM; while true; do sleep 0.1; done")
    time.sleep(0.3)
    first_pid = json.loads(vdi.docker("inspect", "r1").stdout)[0]["State"]["Pid"]
    vdi.docker("pause", "r1")
    assert "(Paused)" in vdi.docker("ps", "--format", "{{.Status}}").stdout
    state = json.loads(vdi.docker("inspect", "r1").stdout)[0]["State"]
    assert state["Paused"] and state["Status"] == "paused"
    vdi.docker("unpause", "r1")
    vdi.docker("restart", "-t", "2", "r1")
    state = json.loads(vdi.docker("inspect", "r1").stdout)[0]["State"]
    assert state["Running"] and state["Pid"] != first_pid
    # the new run's line is in the log once its monitor has read it: no fixed time for that
    assert wait_for(lambda: vdi.docker("logs", "r1").stdout.count("started") >= 2, timeout=60)
    assert vdi.docker("logs", "r1").stdout == "started\nstarted\n"
    stamped = vdi.docker("logs", "-t", "r1").stdout.splitlines()
    assert len(stamped) == 2 and stamped[0].endswith("Z started") and stamped[0][:4].isdigit()
    vdi.docker("rm", "-f", "r1")
    # a container starts again after it exited, attached each time, and its log grows
    vdi.docker("create", "--name", "once", "busybox", "echo", "once")
    assert vdi.docker("start", "-a", "once").stdout == "once\n"
    assert vdi.docker("start", "-a", "once").stdout == "once\n"
    assert vdi.docker("logs", "once").stdout == "once\nonce\n"
    vdi.docker("rm", "once")
    swarm = vdi.docker("node", "ls", check=False)
    assert swarm.returncode != 0 and "not a swarm manager" in swarm.stderr


def cgroup_file(pid, controller, name):
    for line in open(f"/proc/{pid}/cgroup"):
        _, ctrls, path = line.rstrip("\n").split(":", 2)
        if controller in ctrls.split(","):
            return pathlib.Path(f"/sys/fs/cgroup/{ctrls}{path}/{name}").read_text().strip()
    return None


def test_resources_mounts_caps(vdi, tmp_path):
    vdi.docker("run", "-d", "--name", "limited", "--memory", "64m", "--pids-limit", "50",
               "--cpus", "0.5", "busybox", "sleep", "300")
    pid = json.loads(vdi.docker("inspect", "limited").stdout)[0]["State"]["Pid"]
    assert cgroup_file(pid, "memory", "memory.limit_in_bytes") == str(64 << 20)
    assert cgroup_file(pid, "pids", "pids.max") == "50"
    assert cgroup_file(pid, "cpu", "cpu.cfs_quota_us") == "50000"
    vdi.docker("rm", "-f", "limited")
    host_dir = tmp_path / "shared"
    r = vdi.docker("run", "--rm", "-v", f"{host_dir}:/data", "--read-only", "--tmpfs", "/scratch",
                   "busybox", "sh", "-c",
                   "echo hello > /data/f && echo ok > /scratch/x && cat /scratch/x; "
                   "touch /rootfile 2>/dev/null || echo ro")
    assert r.stdout == "ok\nro\n"
    assert (host_dir / "f").read_text() == "hello\n"
    ro = vdi.docker("run", "--rm", "-v", f"{host_dir}:/data:ro", "busybox", "sh", "-c",
                    "echo x > /data/g 2>/dev/null || echo denied")
    assert ro.stdout == "denied\n"
    dropped = vdi.docker("run", "--rm", "--cap-drop", "CHOWN", "busybox", "sh", "-c",
                         "touch /tmp/a; chown 65534 /tmp/a 2>/dev/null || echo no-chown")
    assert dropped.stdout == "no-chown\n"
    for args, words in [(["--security-opt", "bogus=1"], "security-opt"),
                        (["--restart", "bogus"], "restart"),
                        (["--cap-add", "NOPE"], "unknown capability"),
                        (["-v", "bad$name:/x"], "invalid characters")]:
        r = vdi.docker("create", *args, "busybox", "true", check=False)
        assert r.returncode != 0 and words in r.stderr, r.stderr
    assert vdi.docker("ps", "-aq").stdout.strip() == ""


def wait_for(pred, timeout=15):
    end = time.time() + timeout
    while time.time() < end:
        if pred():
            return True
        time.sleep(0.1)
    return False


def test_restart_policies(vdi):
    state = lambda n: json.loads(vdi.docker("inspect", n).stdout)[0]
    vdi.docker("run", "-d", "--name", "flaky", "--restart", "on-failure:2", "busybox", "sh", "-c",
               "echo run; exit 1")
    assert wait_for(lambda: state("flaky")["RestartCount"] == 2 and
                    state("flaky")["State"]["Status"] == "exited")
    time.sleep(1)  # and no third time
    assert state("flaky")["RestartCount"] == 2
    assert vdi.docker("logs", "flaky").stdout == "run\nrun\nrun\n"
    vdi.docker("run", "-d", "--name", "phoenix", "--restart", "always", "busybox", "sleep", "300")
    pid = state("phoenix")["State"]["Pid"]
    os.kill(pid, signal.SIGKILL)  # its process dies: it comes back
    assert wait_for(lambda: state("phoenix")["State"]["Running"] and
                    state("phoenix")["State"]["Pid"] not in (0, pid))
    # it dies while no daemon runs: the next daemon brings it back
    vdi.kill9()
    state_pid = _pid_of(vdi, "phoenix")
    os.kill(state_pid, signal.SIGKILL)
    time.sleep(0.5)
    vdi.start()
    assert wait_for(lambda: state("phoenix")["State"]["Running"] and
                    state("phoenix")["State"]["Pid"] != state_pid)
    assert state("phoenix")["RestartCount"] >= 2
    vdi.docker("stop", "-t", "1", "phoenix")  # stopped by the user: stays stopped
    time.sleep(1)
    assert state("phoenix")["State"]["Status"] == "exited"
    conflict = vdi.docker("create", "--rm", "--restart", "always", "busybox", check=False)
    assert conflict.returncode != 0
    vdi.docker("rm", "-f", "flaky", "phoenix")


def _pid_of(vd, name):
    """The container's pid from the monitor's record, for when no daemon answers."""
    for rec in vd.data.glob("containers/*/record.json"):
        if json.loads(rec.read_text())["Name"] == "/" + name:
            return json.loads((rec.parent / "monitor.json").read_text())["Pid"]
    raise AssertionError(f"no container {name}")


def test_stdin_tty_and_failed_starts(vdi):
    r = subprocess.run([DOCKER, "run", "--rm", "-i", "busybox", "wc", "-l"], env=vdi.env,
                       input="a\nb\nc\n", capture_output=True, text=True, timeout=30)
    assert r.stdout.strip() == "3"
    big = "x" * 300000 + "\n"  # more than every buffer on the way
    r = subprocess.run([DOCKER, "run", "--rm", "-i", "busybox", "wc", "-c"], env=vdi.env,
                       input=big, capture_output=True, text=True, timeout=30)
    assert r.stdout.strip() == str(len(big))
    r = vdi.docker("run", "--rm", "-t", "busybox", "sh", "-c", "tty; echo out; echo err >&2")
    assert r.stdout.splitlines() == ["/dev/pts/0", "out", "err"]  # one terminal, in order
    # an interactive shell on a terminal, as a user types it
    import pty
    import select
    master, slave = pty.openpty()
    p = subprocess.Popen([DOCKER, "run", "--rm", "-it", "busybox", "sh"], env=vdi.env,
                         stdin=slave, stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    out = b""

    def read_until(needle, timeout=10):
        nonlocal out
        end = time.time() + timeout
        while needle not in out and time.time() < end:
            if select.select([master], [], [], 0.1)[0]:
                try:
                    out += os.read(master, 4096)
                except OSError:
                    break
        return needle in out

    assert read_until(b"# "), out[-200:]
    os.write(master, b"echo inside-$((6*7)); exit 3\r")
    assert read_until(b"inside-42")
    assert p.wait(timeout=15) == 3
    os.close(master)
    # commands that cannot run: dockerd's exit codes, and --rm still removes
    assert vdi.docker("run", "--rm", "busybox", "/nonexistent", check=False).returncode == 127
    assert vdi.docker("run", "--rm", "busybox", "/etc/passwd", check=False).returncode == 126
    assert vdi.docker("ps", "-aq").stdout.strip() == ""


def test_exec(vdi):
    vdi.docker("run", "-d", "--name", "host", "busybox", "sleep", "300")
    r = vdi.docker("exec", "host", "sh", "-c", "echo out; echo err >&2; exit 5", check=False)
    assert (r.returncode, r.stdout, r.stderr) == (5, "out\n", "err\n")
    r = subprocess.run([DOCKER, "exec", "-i", "host", "wc", "-c"], env=vdi.env, input="x" * 200000,
                       capture_output=True, text=True, timeout=30)
    assert r.stdout.strip() == "200000"
    r = vdi.docker("exec", "-u", "nobody", "-w", "/tmp", "-e", "X=1", "host", "sh", "-c",
                   "id -u; pwd; echo $X; echo $PATH")
    assert r.stdout.split("\n")[:4] == ["65534", "/tmp", "1",
                                        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
    r = vdi.docker("exec", "-t", "host", "sh", "-c", "test -t 1 && echo on-a-terminal")
    assert r.stdout.strip() == "on-a-terminal"
    vdi.docker("exec", "-d", "host", "sh", "-c", "echo detached > /tmp/d")
    assert wait_for(lambda: vdi.docker("exec", "host", "cat", "/tmp/d", check=False).stdout ==
                    "detached\n")
    assert vdi.docker("exec", "host", "/nope", check=False).returncode == 126
    docker = pytest.importorskip("docker")
    client = docker.DockerClient(base_url=vdi.host, version="auto")
    try:
        res = client.containers.get("host").exec_run(["sh", "-c", "echo py; exit 2"])
        assert (res.exit_code, res.output) == (2, b"py\n")
    finally:
        client.close()
    vdi.docker("stop", "-t", "0", "host")
    stopped = vdi.docker("exec", "host", "true", check=False)
    assert stopped.returncode != 0 and "not running" in stopped.stderr
    vdi.docker("rm", "host")


def _cgroup_lines(text):
    return sorted(line for line in text.splitlines() if line)


def test_exec_joins_the_container_cgroups(vdi):
    """An exec'd process is in the container's cgroup in every hierarchy (cgroup v2 and each v1
    one): inside, its /proc/self/cgroup reads as the container's init's; on the host, its
    process is in the same directories as the init."""
    vdi.docker("run", "-d", "--name", "cg", "busybox", "sleep", "300")
    try:
        init = vdi.docker("exec", "cg", "cat", "/proc/1/cgroup").stdout
        mine = vdi.docker("exec", "cg", "cat", "/proc/self/cgroup").stdout
        assert _cgroup_lines(mine) == _cgroup_lines(init) and init.strip()
        pid = int(vdi.docker("inspect", "-f", "{{.State.Pid}}", "cg").stdout)
        host_init = _cgroup_lines(open(f"/proc/{pid}/cgroup").read())
        cid = vdi.docker("inspect", "-f", "{{.Id}}", "cg").stdout.strip()
        # the container has a cgroup of its own in the memory hierarchy at least
        assert any(cid in line for line in host_init), host_init
        vdi.docker("exec", "-d", "cg", "sleep", "301")

        def exec_pid():
            for p in os.listdir("/proc"):
                try:
                    if p.isdigit() and open(f"/proc/{p}/cmdline", "rb").read() == b"sleep\x00301\x00":
                        return int(p)
                except OSError:
                    pass
            return None
        assert wait_for(lambda: exec_pid() is not None)
        assert _cgroup_lines(open(f"/proc/{exec_pid()}/cgroup").read()) == host_init
    finally:
        vdi.docker("rm", "-f", "cg", check=False)


def test_pull_run_and_import(vd, tmp_path):
    registry = oci_images.Registry(tmp_path / "registry")
    try:
        layout = tmp_path / "layout"
        desc = oci_images.make_image(layout, [oci_images.busybox_layer().tar()],
                                     cmd=["echo", "from-registry"])
        oci_images.write_index(layout, [(desc, "latest")], "latest")
        oci_images.skopeo_push(layout, "latest", f"{registry.host}/test/box:latest")
        name = f"{registry.host}/test/box"
        r = vd.docker("pull", name)
        assert f"Downloaded newer image for {name}:latest" in r.stdout
        assert vd.docker("run", "--rm", name).stdout == "from-registry\n"
        vd.docker("rmi", name)
        # docker run pulls what is missing
        r = vd.docker("run", "--rm", name)
        assert r.stdout == "from-registry\n" and "Unable to find image" in r.stderr
        missing = vd.docker("pull", f"{registry.host}/test/nothing", check=False)
        assert missing.returncode != 0
    finally:
        registry.stop()
    rootfs = tmp_path / "rootfs.tar"
    rootfs.write_bytes(oci_images.busybox_layer().tar())
    r = vd.docker("import", str(rootfs), "imported:v1")
    assert r.stdout.strip().startswith("sha256:")
    assert vd.docker("run", "--rm", "imported:v1", "echo", "imported").stdout == "imported\n"


def test_ps_filters_and_history(vdi):
    vdi.docker("run", "-d", "--name", "web-1", "-l", "tier=web", "busybox", "sleep", "300")
    vdi.docker("run", "--name", "job-1", "-l", "tier=batch", "busybox", "sh", "-c", "exit 4",
               check=False)
    names = lambda *f: sorted(vdi.docker("ps", "-a", "--format", "{{.Names}}", *f).stdout.split())
    assert names("--filter", "label=tier=web") == ["web-1"]
    assert names("--filter", "label=tier") == ["job-1", "web-1"]
    assert names("--filter", "status=exited") == ["job-1"]
    assert names("--filter", "exited=4") == ["job-1"]
    assert names("--filter", "name=web") == ["web-1"]
    assert names("--filter", "ancestor=busybox", "--filter", "status=running") == ["web-1"]
    assert vdi.docker("ps", "-q", "--filter", "status=running").stdout.strip() != ""
    bad = vdi.docker("ps", "--filter", "bogus=1", check=False)
    assert bad.returncode != 0 and "invalid filter" in bad.stderr
    hist = vdi.docker("history", "--format", "{{.ID}}", "busybox").stdout.split()
    assert len(hist) == 1 and hist[0] != "<missing>"
    vdi.docker("rm", "-f", "web-1", "job-1")


def test_save_and_load_back(vdi, tmp_path):
    out = tmp_path / "saved.tar"
    vdi.docker("tag", "busybox", "copy:1")
    vdi.docker("save", "-o", str(out), "copy:1")
    with tarfile.open(out) as tf:
        manifest = json.load(tf.extractfile("manifest.json"))
    assert "copy:1" in manifest[0]["RepoTags"]  # (the store names all tags of the image)
    vdi.docker("rmi", "copy:1")
    assert "Loaded image: copy:1" in vdi.docker("load", "-i", str(out)).stdout
    assert vdi.docker("run", "--rm", "copy:1", "echo", "round-trip").stdout == "round-trip\n"
    # the body streams from a file: a pipelined request behind it waits its turn
    two = vdi.raw(b"GET /v1.41/images/get?names=busybox HTTP/1.1\r\nHost: d\r\n\r\n"
                  b"GET /_ping HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n")
    assert two.startswith(b"HTTP/1.1 200 OK") and two.endswith(b"\r\n\r\nOK")
    assert vdi.docker("save", "nosuch", check=False).returncode != 0


def test_volumes(vdi):
    assert vdi.docker("volume", "create", "--label", "k=v", "data").stdout.strip() == "data"
    v = json.loads(vdi.docker("volume", "inspect", "data").stdout)[0]
    assert v["Driver"] == "local" and v["Labels"] == {"k": "v"}
    assert v["Mountpoint"].startswith(str(vdi.data))
    vdi.docker("run", "--rm", "-v", "data:/data", "busybox", "sh", "-c", "echo kept > /data/f")
    r = vdi.docker("run", "--rm", "--mount", "type=volume,source=data,target=/in", "busybox",
                   "cat", "/in/f")
    assert r.stdout == "kept\n"
    # made on first use, as docker does
    vdi.docker("run", "--rm", "-v", "fresh:/x", "busybox", "true")
    assert sorted(vdi.docker("volume", "ls", "-q").stdout.split()) == ["data", "fresh"]
    vdi.docker("create", "--name", "holder", "-v", "data:/d", "busybox")
    busy = vdi.docker("volume", "rm", "data", check=False)
    assert busy.returncode != 0 and "in use" in busy.stderr
    vdi.docker("rm", "holder")
    pruned = vdi.docker("volume", "prune", "-f", "--all", check=False)
    if pruned.returncode != 0:  # older API: no --all
        pruned = vdi.docker("volume", "prune", "-f")
    assert vdi.docker("volume", "ls", "-q").stdout.strip() == ""
    missing = vdi.docker("volume", "inspect", "data", check=False)
    assert missing.returncode != 0 and "no such volume" in missing.stderr


def test_rename_top_prune(vdi):
    vdi.docker("run", "-d", "--name", "before", "busybox", "sh", "-c", "sleep 300")
    vdi.docker("rename", "before", "after")
    assert vdi.docker("ps", "--format", "{{.Names}}").stdout.split() == ["after"]
    top = vdi.docker("top", "after").stdout
    assert "sleep 300" in top or "sh -c sleep 300" in top
    vdi.docker("create", "--name", "idle1", "busybox")
    vdi.docker("run", "--name", "done1", "busybox", "true")
    r = vdi.docker("container", "prune", "-f")
    assert "Total reclaimed space" in r.stdout
    assert vdi.docker("ps", "-a", "--format", "{{.Names}}").stdout.split() == ["after"]
    vdi.docker("rm", "-f", "after")


def read_lines(proc, n, timeout=60):
    """The first n lines proc prints (fewer if it ends or timeout seconds pass)."""
    import select
    out, end = b"", time.time() + timeout
    while out.count(b"\n") < n and time.time() < end:
        if not select.select([proc.stdout], [], [], max(0.0, end - time.time()))[0]:
            break
        b = os.read(proc.stdout.fileno(), 65536)
        if not b:
            break
        out += b
    return out.decode().split("\n")[:n]


def test_events(vdi):
    since = str(int(time.time()) - 1)
    # a follower from since: the ring's events, then the new ones as they come. Without since,
    # what came before its CLI subscribed was lost (a sleep of 0.3 s was not enough under load)
    follow = subprocess.Popen([DOCKER, "events", "--since", since, "--format",
                               "{{.Type}} {{.Action}}", "--filter", "type=container"],
                              env=vdi.env, stdout=subprocess.PIPE)
    vdi.docker("run", "--rm", "--name", "evented", "-l", "team=x", "busybox", "sh", "-c", "exit 2",
               check=False)
    vdi.docker("volume", "create", "evvol")
    until = str(int(time.time()) + 1)
    r = vdi.docker("events", "--since", since, "--until", until, "--format",
                   "{{.Type}} {{.Action}} {{.Actor.Attributes.name}}", "--filter",
                   "container=evented", timeout=20)
    assert r.stdout.split("\n")[:4] == ["container create evented", "container start evented",
                                        "container die evented", "container destroy evented"]
    r = vdi.docker("events", "--since", since, "--until", until, "--filter", "label=team=x",
                   "--filter", "event=die", "--format", "{{.Actor.Attributes.exitCode}}",
                   timeout=20)
    assert r.stdout.strip() == "2"
    r = vdi.docker("events", "--since", since, "--until", until, "--filter", "type=volume",
                   "--format", "{{.Action}} {{.Actor.ID}}", timeout=20)
    assert r.stdout.strip() == "create evvol"
    # the follower's four lines, however long its CLI takes to print them
    assert read_lines(follow, 4) == ["container create", "container start", "container die",
                                     "container destroy"]
    follow.kill()
    follow.wait()
    vdi.docker("volume", "rm", "evvol")
    # a stop says what dockerd's says, in its order: the signal, the exit, the stop (once the
    # stop has answered, its events are all there)
    vdi.docker("run", "-d", "--name", "stopped", "busybox", "sh", "-c",
               "trap 'exit 3' TERM; while true; do sleep 0.1; done")
    vdi.docker("stop", "-t", "20", "stopped")
    until = str(int(time.time()) + 1)
    r = vdi.docker("events", "--since", since, "--until", until, "--filter", "container=stopped",
                   "--format", '{{.Action}} {{index .Actor.Attributes "signal"}}'
                   '{{index .Actor.Attributes "exitCode"}}', timeout=20)
    assert r.stdout.split("\n")[:5] == ["create ", "start ", "kill 15", "die 3", "stop "]
    vdi.docker("rm", "stopped")


def test_system_df_and_image_prune(vdi):
    vdi.docker("volume", "create", "dfvol")
    vdi.docker("create", "--name", "user1", "-v", "dfvol:/v", "busybox")
    df = vdi.docker("system", "df", "--format", "{{.Type}} {{.TotalCount}} {{.Active}}").stdout
    rows = dict((l.split(" ", 1)[0], l.split(" ", 1)[1]) for l in df.strip().splitlines())
    assert rows["Images"] == "1 1" and rows["Containers"] == "1 0"
    assert rows["Local"].endswith("1 1")  # "Local Volumes"
    vdi.docker("tag", "busybox", "spare:1")
    # busybox is in use by user1: only what no container needs goes (spare:1 names the same image)
    vdi.docker("image", "prune", "-a", "-f")
    assert vdi.docker("images", "-q").stdout.strip() != ""
    vdi.docker("rm", "user1")
    vdi.docker("volume", "rm", "dfvol")
    vdi.docker("image", "prune", "-a", "-f")
    assert vdi.docker("images", "-q").stdout.strip() == ""


def test_image_prune_filters_and_import_changes(vdi, tmp_path):
    """image prune -a narrowed by until, label and label!; import --change through the API."""
    rootfs = tmp_path / "rootfs.tar"
    rootfs.write_bytes(oci_images.busybox_layer().tar())
    vdi.docker("import", "--change", 'CMD ["sh", "-c", "echo A=$A; pwd"]', "--change", "ENV A=1",
               "-c", "WORKDIR /tmp", "-c", "LABEL keep=yes", str(rootfs), "fresh:1")
    assert vdi.docker("run", "--rm", "fresh:1").stdout == "A=1\n/tmp\n"
    cfg = json.loads(vdi.docker("inspect", "fresh:1").stdout)[0]["Config"]
    assert cfg["Env"] == ["A=1"] and cfg["Labels"] == {"keep": "yes"}
    bad = vdi.docker("import", "--change", "RUN true", str(rootfs), "bad:1", check=False)
    assert bad.returncode != 0 and "RUN" in bad.stderr
    vdi.docker("import", str(rootfs), "plain:1")
    images = lambda: sorted(vdi.docker("images", "--format", "{{.Repository}}").stdout.split())
    # busybox was made long ago, fresh:1 and plain:1 just now; plain:1 has no label
    vdi.docker("image", "prune", "-a", "-f", "--filter", "until=10m")
    assert images() == ["fresh", "plain"]
    vdi.docker("image", "prune", "-a", "-f", "--filter", "label=keep=no")
    assert images() == ["fresh", "plain"]
    vdi.docker("image", "prune", "-a", "-f", "--filter", "label!=keep")
    assert images() == ["fresh"]
    for f, msg in [("until=soon", "failed to parse value as time or duration"),
                   ("colour=red", "invalid filter")]:
        r = vdi.docker("image", "prune", "-a", "-f", "--filter", f, check=False)
        assert r.returncode != 0 and msg in r.stderr, (f, r.stderr)
    vdi.docker("image", "prune", "-a", "-f", "--filter", "label=keep")
    assert images() == []


def test_stats_no_stream(vdi):
    vdi.docker("run", "-d", "--name", "busy", "--memory", "64m", "busybox", "sh", "-c",
               "while true; do :; done")
    r = vdi.docker("stats", "--no-stream", "--format", "{{.Name}} {{.CPUPerc}} {{.MemUsage}} {{.PIDs}}",
                   "busy", timeout=30)
    name, cpu, mem_usage, slash, mem_limit, pids = r.stdout.split()
    assert name == "busy" and slash == "/" and pids == "1"
    assert float(cpu.rstrip("%")) > 10  # the loop keeps a CPU busy
    assert mem_limit == "64MiB"
    vdi.docker("rm", "-f", "busy")  # streamed stats: test_daemon_ops.py


def test_logs_since_until(vdi):
    vdi.docker("run", "-d", "--name", "timed", "busybox", "sh", "-c",
               "echo first; sleep 1.5; echo second; sleep 300")
    assert wait_for(lambda: "second" in vdi.docker("logs", "timed").stdout)
    stamps = vdi.docker("logs", "-t", "timed").stdout.splitlines()
    import datetime
    t_first = datetime.datetime.strptime(stamps[0][:26], "%Y-%m-%dT%H:%M:%S.%f").replace(
        tzinfo=datetime.timezone.utc).timestamp()
    middle = f"{t_first + 0.75:.3f}"
    assert vdi.docker("logs", "--since", middle, "timed").stdout == "second\n"
    assert vdi.docker("logs", "--until", middle, "timed").stdout == "first\n"
    # times beyond any time_t are refused, not cast (undefined behaviour in C)
    for bound in [b"since=1e300", b"until=-1e300", b"since=nan"]:
        reply = vdi.raw(b"GET /v1.41/containers/timed/logs?stdout=1&" + bound +
                        b" HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n")
        assert status_line(reply).startswith("HTTP/1.1 400"), reply
    for bound in [b"since=1e300", b"until=-1e300"]:
        reply = vdi.raw(b"GET /v1.41/events?" + bound +
                        b" HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n")
        assert status_line(reply).startswith("HTTP/1.1 400"), reply
        assert "invalid time" in json_body(reply)["message"]
    vdi.docker("rm", "-f", "timed")


def test_commit(vdi):
    vdi.docker("run", "--name", "maker", "busybox", "sh", "-c", "echo made > /made; rm /etc/group")
    r = vdi.docker("commit", "maker", "made:1")
    assert r.stdout.strip().startswith("sha256:")
    out = vdi.docker("run", "--rm", "made:1", "sh", "-c", "cat /made; ls /etc").stdout
    # the new file, and the deletion as a whiteout
    assert out.split()[0] == "made" and "passwd" in out.split() and "group" not in out.split()
    changes = sorted(vdi.docker("diff", "maker").stdout.splitlines())
    assert changes == ["A /made", "C /etc", "D /etc/group"]
    bad = vdi.docker("commit", "--change", "RUN true", "maker", "made:2", check=False)
    assert bad.returncode != 0 and "RUN is not a valid change command" in bad.stderr
    vdi.docker("rm", "maker")
