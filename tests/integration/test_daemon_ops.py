"""vesseld's container operations beyond the lifecycle, driven by the stock docker CLI and
docker-py: cp (the archive endpoints) and export, commit --change, update, streamed stats,
exec resize, detach keys and log rotation. The fixtures (a private vesseld per test, the busybox
image built offline) are test_daemon's."""
import io
import json
import os
import tarfile

import pytest

from test_daemon import image_tar, vd, vdi  # noqa: F401 (fixtures)

docker = pytest.importorskip("docker")

pytestmark = [pytest.mark.skipif(os.geteuid() != 0, reason="containers need root")]


def docker_py(vd):
    return docker.DockerClient(base_url=vd.host, version="auto")


def tar_bytes(*members):
    """A tar of (TarInfo, data or None) pairs."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for ti, data in members:
            if data is not None:
                ti.size = len(data)
                tf.addfile(ti, io.BytesIO(data))
            else:
                tf.addfile(ti)
    return buf.getvalue()


def member(name, kind=tarfile.REGTYPE, link=""):
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.linkname = link
    ti.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    return ti


# ------------------------------------------------------------------ cp and export


@pytest.mark.parametrize("running", [True, False])
def test_cp_both_ways(vdi, tmp_path, running):
    cmd = ["sleep", "600"] if running else ["true"]
    vdi.docker("run", "-d", "--name", "box", "--tmpfs", "/scratch", "busybox", *cmd)
    if not running:
        vdi.docker("wait", "box")
    else:  # the container's own mounts are seen, both ways, as with dockerd
        vdi.docker("exec", "box", "sh", "-c", "echo in-tmpfs > /scratch/t")
        vdi.docker("cp", "box:/scratch/t", str(tmp_path / "t"))
        assert (tmp_path / "t").read_text() == "in-tmpfs\n"
        vdi.docker("cp", str(tmp_path / "t"), "box:/scratch/back")
        assert vdi.docker("exec", "box", "cat", "/scratch/back").stdout == "in-tmpfs\n"
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("file a\n")
    (src / "sub" / "b.txt").write_text("file b\n")
    os.symlink("a.txt", src / "link")
    (tmp_path / "one.txt").write_text("just one\n")
    # a file to a new name, a file into a directory, a directory
    vdi.docker("cp", str(tmp_path / "one.txt"), "box:/tmp/renamed.txt")
    vdi.docker("cp", str(tmp_path / "one.txt"), "box:/etc/")
    vdi.docker("cp", str(src), "box:/tmp/")
    out = tmp_path / "out"
    out.mkdir()
    vdi.docker("cp", "box:/tmp/renamed.txt", str(out / "back.txt"))
    assert (out / "back.txt").read_text() == "just one\n"
    vdi.docker("cp", "box:/etc/one.txt", str(out))
    assert (out / "one.txt").read_text() == "just one\n"
    vdi.docker("cp", "box:/tmp/src", str(out))
    assert (out / "src" / "a.txt").read_text() == "file a\n"
    assert (out / "src" / "sub" / "b.txt").read_text() == "file b\n"
    assert os.readlink(out / "src" / "link") == "a.txt"
    # the contents of a directory ("dir/."), and a missing path
    vdi.docker("cp", "box:/tmp/src/.", str(out / "contents"))
    assert sorted(os.listdir(out / "contents")) == ["a.txt", "link", "sub"]
    missing = vdi.docker("cp", "box:/nowhere", str(out), check=False)
    assert missing.returncode != 0 and "Could not find the file /nowhere" in missing.stderr
    # -a keeps the owner; without it files belong to the container's root
    os.chown(tmp_path / "one.txt", 1234, 4321)
    vdi.docker("cp", str(tmp_path / "one.txt"), "box:/tmp/root.txt")
    vdi.docker("cp", "-a", str(tmp_path / "one.txt"), "box:/tmp/kept.txt")
    client = docker_py(vdi)
    try:
        box = client.containers.get("box")
        stream, stat = box.get_archive("/tmp/kept.txt")
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tf:
            kept = tf.getmember("kept.txt")
        assert (kept.uid, kept.gid) == (1234, 4321) and stat["name"] == "kept.txt"
        stream, _ = box.get_archive("/tmp/root.txt")
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tf:
            assert (tf.getmember("root.txt").uid, tf.getmember("root.txt").gid) == (0, 0)
        # docker-py's put_archive, and the stat of a directory
        assert box.put_archive("/tmp", tar_bytes((member("py.txt"), b"from py\n")))
        stream, _ = box.get_archive("/tmp/py.txt")
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tf:
            assert tf.extractfile("py.txt").read() == b"from py\n"
        st = client.api.get_archive(box.id, "/tmp/src")[1]
        assert st["name"] == "src" and st["mode"] & (1 << 31)  # Go's ModeDir
        # noOverwriteDirNonDir: a file over a directory is refused
        with pytest.raises(docker.errors.APIError, match="cannot overwrite"):
            _put(client, box.id, "/tmp", tar_bytes((member("src"), b"x")),
                 noOverwriteDirNonDir=True)
    finally:
        client.close()
    vdi.docker("rm", "-f", "box")


def _put(client, cid, path, data, **params):
    """PUT /containers/{id}/archive with query parameters docker-py does not pass."""
    params["path"] = path
    res = client.api._put(client.api._url("/containers/{0}/archive", cid), params=params,
                          data=data)
    client.api._raise_for_status(res)
    return res


def test_cp_hostile_archives_refused(vdi, tmp_path):
    vdi.docker("run", "-d", "--name", "box", "busybox", "sleep", "600")
    outside = tmp_path / "outside"
    outside.mkdir()
    client = docker_py(vdi)
    hostile = {
        "dotdot": tar_bytes((member("../../../../../../../" + str(outside / "dd.txt")), b"x")),
        "absolute": tar_bytes((member(str(outside / "abs.txt")), b"x")),
        "symlink then write through it": tar_bytes(
            (member("esc", tarfile.SYMTYPE, str(outside)), None),
            (member("esc/through.txt"), b"x")),
        "relative symlink then write": tar_bytes(
            (member("up", tarfile.SYMTYPE, "../../../../../../.."), None),
            (member("up" + str(outside / "rel.txt")), b"x")),
        "hard link escape": tar_bytes(
            (member("hl", tarfile.LNKTYPE, "../../../../../../etc/passwd"), None)),
    }
    try:
        box = client.containers.get("box")
        for what, data in hostile.items():
            with pytest.raises(docker.errors.APIError) as info:
                box.put_archive("/tmp", data)
            assert info.value.status_code == 400, what
            msg = info.value.explanation
            assert ("..") in msg or "absolute" in msg or "symbolic link" in msg, (what, msg)
        # a symbolic link already in the container leads back inside it, never out
        box.put_archive("/tmp", tar_bytes((member("planted", tarfile.SYMTYPE, str(outside)), None)))
        with pytest.raises(docker.errors.APIError):
            box.put_archive("/tmp", tar_bytes((member("planted/p.txt"), b"x")))
        with pytest.raises(docker.errors.NotFound):  # its target does not exist in there
            box.put_archive("/tmp/planted", tar_bytes((member("p.txt"), b"x")))
        box.put_archive("/tmp", tar_bytes((member("fine.txt"), b"ok")))
        # reading through a link: resolved in the container, so the host's file is not read
        (outside / "secret").write_text("host secret\n")
        box.put_archive("/tmp", tar_bytes(
            (member("secret", tarfile.SYMTYPE, str(outside / "secret")), None)))
        r = vdi.docker("cp", "-L", "box:/tmp/secret", str(tmp_path / "got"), check=False)
        assert r.returncode != 0 and not (tmp_path / "got").exists()
        r = vdi.docker("cp", "box:/../../../../etc/hostname", str(tmp_path / "h"))
        assert (tmp_path / "h").read_text() == vdi.docker("exec", "box", "cat",
                                                          "/etc/hostname").stdout
        # a bad tar and an empty body are errors too
        with pytest.raises(docker.errors.APIError):
            box.put_archive("/tmp", b"not a tar at all" * 64)
        assert vdi.docker("exec", "box", "cat", "/tmp/fine.txt").stdout == "ok"
    finally:
        client.close()
    assert os.listdir(outside) == ["secret"]
    assert vdi.alive()
    vdi.docker("rm", "-f", "box")


def test_export(vdi, tmp_path):
    vdi.docker("run", "--name", "box", "busybox", "sh", "-c", "echo exported > /new.txt")
    out = tmp_path / "fs.tar"
    vdi.docker("export", "-o", str(out), "box")
    with tarfile.open(out) as tf:
        names = set(tf.getnames())
        assert tf.extractfile("new.txt").read() == b"exported\n"
    assert {"bin/busybox", "etc/passwd", "bin/sh"} <= names
    assert not any(n.startswith("/") or n.startswith("..") for n in names)
    # the export imports back as an image that runs
    vdi.docker("import", str(out), "exported:1")
    assert vdi.docker("run", "--rm", "exported:1", "cat", "/new.txt").stdout == "exported\n"
    vdi.docker("rm", "box")
    vdi.docker("rmi", "exported:1")


# ------------------------------------------------------------------ commit


def test_commit_changes_message_author_pause(vdi):
    vdi.docker("run", "-d", "--name", "box", "-e", "FROM_RUN=1", "busybox", "sleep", "600")
    vdi.docker("exec", "box", "sh", "-c", "echo in-layer > /layer.txt")
    changes = ['CMD ["cat", "/layer.txt"]', "ENV A=1 B=\"two words\"", "ENV FROM_RUN=2",
               "EXPOSE 80 53/udp 9000-9001", "LABEL org.example.k=v other=\"x y\"",
               "USER nobody", "WORKDIR /srv", "WORKDIR sub", "VOLUME /data /cache",
               "STOPSIGNAL SIGINT", "ONBUILD RUN echo later",
               "HEALTHCHECK --interval=5s --retries=2 CMD [\"true\"]"]
    args = ["commit", "-m", "the message", "-a", "Someone <s@example.org>"]
    for ch in changes:
        args += ["--change", ch]
    vdi.docker(*args, "box", "changed:1")
    assert vdi.docker("inspect", "-f", "{{.State.Status}} {{.State.Paused}}",
                      "box").stdout.split() == ["running", "false"]  # paused and resumed
    img = json.loads(vdi.docker("image", "inspect", "changed:1").stdout)[0]
    cfg = img["Config"]
    assert cfg["Cmd"] == ["cat", "/layer.txt"]
    assert {"A=1", "B=two words", "FROM_RUN=2"} <= set(cfg["Env"])
    assert sorted(cfg["ExposedPorts"]) == ["53/udp", "80/tcp", "9000/tcp", "9001/tcp"]
    assert cfg["Labels"]["org.example.k"] == "v" and cfg["Labels"]["other"] == "x y"
    assert cfg["Labels"]["org.example.from"] == "image"
    assert cfg["User"] == "nobody" and cfg["WorkingDir"] == "/srv/sub"
    assert sorted(cfg["Volumes"]) == ["/cache", "/data"]
    assert cfg["StopSignal"] == "SIGINT" and cfg["OnBuild"] == ["RUN echo later"]
    assert cfg["Healthcheck"] == {"Test": ["CMD", "true"], "Interval": 5000000000, "Retries": 2}
    assert img["Author"] == "Someone <s@example.org>" and img["Comment"] == "the message"
    hist = vdi.docker("history", "--format", "{{.Comment}}", "changed:1").stdout
    assert "the message" in hist
    out = vdi.docker("run", "--rm", "--user", "0", "-w", "/", "changed:1").stdout
    assert out == "in-layer\n"
    # a shell-form ENTRYPOINT drops the inherited command; docker-py's changes too
    client = docker_py(vdi)
    try:
        client.api.commit("box", "changed", "2", changes=["ENTRYPOINT echo from-entry"])
    finally:
        client.close()
    cfg = json.loads(vdi.docker("image", "inspect", "changed:2").stdout)[0]["Config"]
    assert cfg["Entrypoint"] == ["/bin/sh", "-c", "echo from-entry"] and not cfg["Cmd"]
    # instructions a commit cannot apply, and malformed ones, are refused with their name
    for bad, msg in [("RUN true", "RUN is not a valid change command"),
                     ("FROM busybox", "FROM is not a valid change command"),
                     ("EXPOSE 70000", "invalid port"), ("ENV", "ENV needs"),
                     ("ONBUILD FROM x", "isn't allowed as an ONBUILD trigger")]:
        r = vdi.docker("commit", "--change", bad, "box", "bad:1", check=False)
        assert r.returncode != 0 and msg in r.stderr, (bad, r.stderr)
    assert vdi.docker("image", "inspect", "bad:1", check=False).returncode != 0
    # --pause=false commits a running container without freezing it
    vdi.docker("commit", "--pause=false", "box", "changed:3")
    vdi.docker("rm", "-f", "box")
    vdi.docker("rmi", "changed:1", "changed:2", "changed:3")


def test_commit_changes_expand_variables(vdi):
    """commit --change expands $VAR in ENV, LABEL, EXPOSE, WORKDIR and USER with the container's
    Env; earlier changes are seen by later ones, all words of one ENV are expanded before it sets
    any, CMD keeps its variables for the shell: what dockerd 20.10 gave for the same changes."""
    vdi.docker("run", "-d", "--name", "vbox", "-e", "BASE=/opt/app", "-e", "PORT=8080", "-e",
               "WHO=nobody", "busybox", "sleep", "600")
    try:
        changes = ["ENV BIN=$BASE/bin A=1 B=x$A", "ENV C=${A}2 D=${NOPE:-dflt} E='$BASE'",
                   "ENV LEGACY ${BASE} and more", "LABEL where=\"${BASE}\" n=$PORT",
                   "EXPOSE $PORT ${PORT}/udp", "WORKDIR $BASE", "USER $WHO", "CMD echo $BASE"]
        args = ["commit"]
        for ch in changes:
            args += ["--change", ch]
        vdi.docker(*args, "vbox", "expanded:1")
        cfg = json.loads(vdi.docker("image", "inspect", "expanded:1").stdout)[0]["Config"]
        env = dict(e.split("=", 1) for e in cfg["Env"])
        assert (env["BIN"], env["A"], env["B"], env["C"], env["D"], env["E"]) == \
            ("/opt/app/bin", "1", "x", "12", "dflt", "$BASE")
        assert env["LEGACY"] == "/opt/app and more"
        assert (cfg["Labels"]["where"], cfg["Labels"]["n"]) == ("/opt/app", "8080")
        assert sorted(cfg["ExposedPorts"]) == ["8080/tcp", "8080/udp"]
        assert (cfg["WorkingDir"], cfg["User"]) == ("/opt/app", "nobody")
        assert cfg["Cmd"] == ["/bin/sh", "-c", "echo $BASE"]
    finally:
        vdi.docker("rm", "-f", "vbox", check=False)
        vdi.docker("rmi", "expanded:1", check=False)


# ------------------------------------------------------------------ update


def test_update_running_container(vdi):
    from test_daemon import cgroup_file
    vdi.docker("run", "-d", "--name", "box", "--memory", "64m", "busybox", "sleep", "600")
    pid = json.loads(vdi.docker("inspect", "box").stdout)[0]["State"]["Pid"]
    assert cgroup_file(pid, "memory", "memory.limit_in_bytes") == str(64 << 20)
    r = vdi.docker("update", "--memory", "96m", "--memory-swap", "200m", "--cpus", "0.5",
                   "--cpu-shares", "512", "--pids-limit", "40", "--restart", "on-failure:3",
                   "box")
    assert r.stdout.strip() == "box"
    assert cgroup_file(pid, "memory", "memory.limit_in_bytes") == str(96 << 20)
    assert cgroup_file(pid, "cpu", "cpu.cfs_quota_us") == "50000"
    assert cgroup_file(pid, "cpu", "cpu.shares") == "512"
    assert cgroup_file(pid, "pids", "pids.max") == "40"
    hc = json.loads(vdi.docker("inspect", "box").stdout)[0]["HostConfig"]
    assert (hc["Memory"], hc["MemorySwap"], hc["NanoCpus"], hc["CpuShares"], hc["PidsLimit"]) == \
        (96 << 20, 200 << 20, 500000000, 512, 40)
    assert hc["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 3}
    r = vdi.docker("update", "--memory", "300m", "box", check=False)
    assert r.returncode != 0 and "update the memoryswap at the same time" in r.stderr
    # docker-py; -1 lifts the pids limit
    client = docker_py(vdi)
    try:
        assert client.api.update_container("box", mem_limit="128m", memswap_limit=-1) == \
            {"Warnings": []}
    finally:
        client.close()
    vdi.docker("update", "--pids-limit", "-1", "box")
    assert cgroup_file(pid, "memory", "memory.limit_in_bytes") == str(128 << 20)
    assert cgroup_file(pid, "pids", "pids.max") == "max"
    # kept in the record: a restart (and a restarted daemon) applies the new limits
    vdi.docker("restart", "-t", "0", "box")
    pid = json.loads(vdi.docker("inspect", "box").stdout)[0]["State"]["Pid"]
    assert cgroup_file(pid, "memory", "memory.limit_in_bytes") == str(128 << 20)
    assert cgroup_file(pid, "cpu", "cpu.shares") == "512"
    vdi.kill9()
    vdi.start()
    hc = json.loads(vdi.docker("inspect", "box").stdout)[0]["HostConfig"]
    assert hc["Memory"] == 128 << 20 and hc["RestartPolicy"]["Name"] == "on-failure"
    # refusals name the problem and change nothing
    for args, msg in [(["--memory", "1m"], "Minimum memory limit allowed is 6MB"),
                      (["--cpus", "99"], "Range of CPUs"),
                      (["--restart", "sometimes"], "invalid restart policy"),
                      (["--cpuset-cpus", "0"], "CpusetCpus: not supported")]:
        r = vdi.docker("update", *args, "box", check=False)
        assert r.returncode != 0 and msg in r.stderr, (args, r.stderr)
    assert json.loads(vdi.docker("inspect", "box").stdout)[0]["HostConfig"]["Memory"] == 128 << 20
    missing = vdi.docker("update", "--memory", "64m", "nosuch", check=False)
    assert missing.returncode != 0 and "No such container" in missing.stderr
    vdi.docker("rm", "-f", "box")
    # a stopped container's update applies at its next start; --rm refuses a restart policy
    vdi.docker("create", "--name", "later", "busybox", "sleep", "600")
    vdi.docker("update", "--memory", "80m", "later")
    vdi.docker("start", "later")
    pid = json.loads(vdi.docker("inspect", "later").stdout)[0]["State"]["Pid"]
    assert cgroup_file(pid, "memory", "memory.limit_in_bytes") == str(80 << 20)
    vdi.docker("rm", "-f", "later")
    vdi.docker("create", "--rm", "--name", "auto", "busybox", "true")
    r = vdi.docker("update", "--restart", "always", "auto", check=False)
    assert r.returncode != 0 and "AutoRemove" in r.stderr
    vdi.docker("rm", "auto")


# ------------------------------------------------------------------ streamed stats


def timerfds(pid):
    """How many timerfds the process holds: each streamed stats client has one."""
    n = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            n += os.readlink(f"/proc/{pid}/fd/{fd}") == "anon_inode:[timerfd]"
        except OSError:
            pass
    return n


def test_stats_streamed(vdi):
    import subprocess
    import time
    vdi.docker("run", "-d", "--name", "box", "--memory", "64m", "busybox", "sh", "-c",
               "while :; do :; done")
    base = timerfds(vdi.proc.pid)
    client = docker_py(vdi)
    try:
        stream = client.api.stats("box", stream=True, decode=True)
        first, second, third = next(stream), next(stream), next(stream)
        assert first["name"] == "/box" and first["memory_stats"]["limit"] == 64 << 20
        # each object's precpu is the one before, and the busy loop used CPU in between
        assert second["precpu_stats"] == first["cpu_stats"]
        assert third["cpu_stats"]["cpu_usage"]["total_usage"] > \
            third["precpu_stats"]["cpu_usage"]["total_usage"]
        assert third["preread"] == second["read"]
        assert timerfds(vdi.proc.pid) == base + 1
        # other requests are served meanwhile: the stream does not hold a worker
        others = [client.api.stats("box", stream=True, decode=True) for _ in range(6)]
        for s in others:
            next(s)
        assert client.api.inspect_container("box")["State"]["Running"]
        stream.close()
        for s in others:
            s.close()
    finally:
        client.close()
    # the clients left: their timers are gone
    for _ in range(100):
        if timerfds(vdi.proc.pid) == base:
            break
        time.sleep(0.05)
    assert timerfds(vdi.proc.pid) == base
    # the docker CLI's live view, until it is stopped
    cli = subprocess.Popen(["docker", "stats", "--format", "{{.Name}} {{.MemUsage}}", "box"],
                           env=vdi.env, stdout=subprocess.PIPE, text=True)
    lines = []
    while len(lines) < 2:
        line = cli.stdout.readline()
        assert line, "docker stats ended"
        if "box" in line:
            lines.append(line)
    assert "64MiB" in lines[-1]
    cli.kill()
    cli.wait(10)
    cli.stdout.close()
    # a stopped container streams empty statistics; its removal ends the stream
    vdi.docker("stop", "-t", "0", "box")
    client = docker_py(vdi)
    try:
        stream = client.api.stats("box", stream=True, decode=True)
        assert next(stream)["cpu_stats"] == {}
        vdi.docker("rm", "box")
        assert list(stream) == [] or all(s["cpu_stats"] == {} for s in stream)
    finally:
        client.close()
    assert vdi.alive()


# ------------------------------------------------------------------ terminals


class Terminal:
    """A pseudo-terminal a docker CLI runs on, as a user's."""

    def __init__(self, args, env, rows=30, cols=100):
        import fcntl
        import pty
        import struct
        import subprocess
        import termios
        self.master, slave = pty.openpty()
        self._winsz = lambda r, c: fcntl.ioctl(self.master, termios.TIOCSWINSZ,
                                               struct.pack("HHHH", r, c, 0, 0))
        self._winsz(rows, cols)
        self.proc = subprocess.Popen(args, env=env, stdin=slave, stdout=slave, stderr=slave,
                                     close_fds=True)
        os.close(slave)
        self.out = b""

    def resize(self, rows, cols):
        import signal
        self._winsz(rows, cols)
        self.proc.send_signal(signal.SIGWINCH)  # what the kernel sends a terminal's session

    def read_until(self, needle, timeout=15):
        import select
        import time
        end = time.time() + timeout
        while needle not in self.out and time.time() < end:
            if select.select([self.master], [], [], 0.1)[0]:
                try:
                    self.out += os.read(self.master, 4096)
                except OSError:
                    break
        return needle in self.out

    def write(self, data):
        os.write(self.master, data)

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        os.close(self.master)


def test_exec_resize(vdi):
    vdi.docker("run", "-d", "--name", "box", "busybox", "sleep", "600")
    t = Terminal(["docker", "exec", "-it", "box", "sh"], vdi.env, rows=30, cols=100)
    try:
        assert t.read_until(b"# "), t.out
        t.write(b"busybox stty size\r")
        assert t.read_until(b"30 100"), t.out
        t.resize(41, 123)
        for _ in range(50):  # the CLI sends the new size when it sees SIGWINCH
            t.write(b"busybox stty size\r")
            if t.read_until(b"41 123", timeout=0.3):
                break
        assert b"41 123" in t.out, t.out
        t.write(b"exit 4\r")
        assert t.proc.wait(15) == 4
    finally:
        t.close()
    # docker-py: the size of an exec started on a socket
    client = docker_py(vdi)
    try:
        ex = client.api.exec_create("box", ["sh", "-c", "read x; busybox stty size"], tty=True,
                                    stdin=True)
        sock = client.api.exec_start(ex["Id"], tty=True, socket=True)
        raw = getattr(sock, "_sock", sock)
        client.api.exec_resize(ex["Id"], height=17, width=71)
        raw.sendall(b"go\r")
        got = b""
        while b"17 71" not in got:
            b = raw.recv(4096)
            if not b:
                break
            got += b
        assert b"17 71" in got, got
        raw.close()
        with pytest.raises(docker.errors.NotFound):
            client.api.exec_resize("nosuchexec", height=1, width=1)
    finally:
        client.close()
    vdi.docker("rm", "-f", "box")


def running(vd, name):
    return json.loads(vd.docker("inspect", name).stdout)[0]["State"]["Running"]


def test_detach_keys(vdi):
    import socket
    # run -it: ctrl-p ctrl-q leaves the shell running
    t = Terminal(["docker", "run", "-it", "--name", "dd", "busybox", "sh"], vdi.env)
    try:
        assert t.read_until(b"# "), t.out
        t.write(b"\x10\x11")
        assert t.proc.wait(15) == 0
    finally:
        t.close()
    assert running(vdi, "dd")
    # attach again, with other keys; the shell is the same one
    t = Terminal(["docker", "attach", "--detach-keys", "ctrl-a,x", "dd"], vdi.env)
    try:
        t.write(b"echo again-$((2+3))\r")
        assert t.read_until(b"again-5"), t.out
        t.write(b"\x01x")
        t.proc.wait(15)  # CLI 28 exits 1 here, with dockerd too
        assert t.read_until(b"read escape sequence"), t.out
    finally:
        t.close()
    assert running(vdi, "dd")
    # the daemon's side (clients other than the CLI): the keys end the attach, are not passed
    # on, and what follows them is not either
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(10)
    s.connect(str(vdi.sock))
    s.sendall(b"POST /v1.41/containers/dd/attach?stream=1&stdin=1&stdout=1&stderr=1"
              b"&detachKeys=q,z HTTP/1.1\r\nHost: d\r\nUpgrade: tcp\r\n"
              b"Connection: Upgrade\r\nContent-Length: 0\r\n\r\n")
    got = b""
    while b"\r\n\r\n" not in got:
        got += s.recv(4096)
    assert got.startswith(b"HTTP/1.1 101")
    s.sendall(b"echo quiz-q\r")  # a first key not followed by the second is passed on
    s.sendall(b"echo pre-$((1+1))\rqzecho post-$((2+2))\r")
    while True:  # the server ends the stream
        b = s.recv(4096)
        if not b:
            break
        got += b
    s.close()
    from test_daemon import wait_for
    assert wait_for(lambda: "pre-2" in vdi.docker("logs", "dd").stdout)
    logs = vdi.docker("logs", "dd").stdout
    assert "\nquiz-q\n" in logs and "post" not in logs
    assert running(vdi, "dd")
    bad = vdi.raw(b"POST /v1.41/containers/dd/attach?stream=1&stdin=1&detachKeys=ctrl-1 HTTP/1.1"
                  b"\r\nHost: d\r\nConnection: close\r\n\r\n")
    assert b" 400 " in bad.split(b"\r\n")[0] and b"Invalid detach keys (ctrl-1)" in bad
    # exec -it detaches the same way; the exec runs on
    t = Terminal(["docker", "exec", "-it", "dd", "sh"], vdi.env)
    try:
        assert t.read_until(b"# "), t.out
        t.write(b"\x10\x11")
        t.proc.wait(15)
        assert t.read_until(b"read escape sequence"), t.out
    finally:
        t.close()
    top = vdi.docker("top", "dd").stdout.splitlines()
    assert sum(line.split()[-1] == "sh" for line in top[1:]) == 2  # the exec's shell runs on
    client = docker_py(vdi)
    try:
        ex = client.api.exec_create("dd", "true", detach_keys="ctrl-q")
        assert client.api.exec_inspect(ex["Id"])["ProcessConfig"]["entrypoint"] == "true"
        with pytest.raises(docker.errors.APIError, match="Invalid detach keys"):
            client.api.exec_create("dd", "true", detach_keys="ctrl-ctrl")
    finally:
        client.close()
    vdi.docker("rm", "-f", "dd")


# ------------------------------------------------------------------ log rotation


def log_files(vd, name):
    cid = json.loads(vd.docker("inspect", name).stdout)[0]["Id"]
    d = vd.data / "containers" / cid
    return sorted(p for p in d.iterdir() if p.name.startswith(f"{cid}-json.log"))


def test_log_rotation(vdi):
    import subprocess
    # 300 numbered lines of about 90 bytes an entry: some 27 KB through 1 KB files
    script = "i=1; while [ $i -le 300 ]; do echo line-$i; i=$((i+1)); done"
    vdi.docker("run", "-d", "--name", "kept", "--log-opt", "max-size=1k", "--log-opt",
               "max-file=3", "busybox", "sh", "-c", script)
    follow = subprocess.Popen(["docker", "run", "--name", "all", "--log-opt", "max-size=1k",
                               "--log-opt", "max-file=50", "busybox", "sh", "-c", script],
                              env=vdi.env, stdout=subprocess.PIPE, text=True)
    vdi.docker("wait", "kept")
    files = log_files(vdi, "kept")
    assert len(files) == 3 and all(p.stat().st_size <= 1024 for p in files)
    lines = vdi.docker("logs", "kept").stdout.split()
    # what is kept is the end of the output, in order, without a gap
    first = int(lines[0].split("-")[1])
    assert first > 1 and lines == [f"line-{i}" for i in range(first, 301)]
    for n in (5, 20, len(lines) - 1, len(lines), 1000):  # within a file, across files, all
        assert vdi.docker("logs", "--tail", str(n), "kept").stdout.split() == lines[-n:]
    # the attached run followed its log through every rotation; logs reads all the files
    out, _ = follow.communicate(timeout=60)
    assert follow.returncode == 0
    assert out.split() == [f"line-{i}" for i in range(1, 301)]
    assert len(log_files(vdi, "all")) > 20
    assert vdi.docker("logs", "all").stdout.split() == [f"line-{i}" for i in range(1, 301)]
    f = subprocess.run(["docker", "logs", "-f", "--tail", "all", "all"], env=vdi.env,
                       capture_output=True, text=True, timeout=30)
    assert f.stdout.split() == [f"line-{i}" for i in range(1, 301)]
    # max-file 1: the log starts again when full
    vdi.docker("run", "--name", "one", "--log-opt", "max-size=2k", "busybox", "sh", "-c", script)
    files = log_files(vdi, "one")
    assert len(files) == 1 and files[0].stat().st_size <= 2048
    kept = vdi.docker("logs", "one").stdout.split()
    assert kept[-1] == "line-300" and len(kept) < 300
    # options dockerd refuses, and the ones vesseld does not do yet, are refused by name
    for opts, msg in [(["--log-opt", "max-size=ten"], "invalid size"),
                      (["--log-opt", "max-size=1k", "--log-opt", "max-file=0"],
                       "max-file cannot be less than 1"),
                      (["--log-opt", "max-file=2"], "max-file cannot be set when max-size"),
                      (["--log-opt", "bogus=1"], "unknown log opt 'bogus'"),
                      (["--log-opt", "compress=maybe"], "error reading compress log option"),
                      (["--log-driver", "syslog"], "logging driver syslog")]:
        r = vdi.docker("create", *opts, "busybox", "true", check=False)
        assert r.returncode != 0 and msg in r.stderr, (opts, r.stderr)
    vdi.docker("rm", "kept", "all", "one")


def test_log_rotation_compressed(vdi):
    """compress=true: rotated files are gzipped (.1.gz, .2.gz), and logs, --tail and a follower
    read through them as through plain ones."""
    import gzip
    import subprocess
    script = "i=1; while [ $i -le 300 ]; do echo line-$i; i=$((i+1)); done"
    follow = subprocess.Popen(["docker", "run", "--name", "gz", "--log-opt", "max-size=1k",
                               "--log-opt", "max-file=50", "--log-opt", "compress=true",
                               "busybox", "sh", "-c", script],
                              env=vdi.env, stdout=subprocess.PIPE, text=True)
    out, _ = follow.communicate(timeout=60)
    want = [f"line-{i}" for i in range(1, 301)]
    assert follow.returncode == 0 and out.split() == want
    files = log_files(vdi, "gz")
    rotated = [p for p in files if not p.name.endswith(".log")]
    assert len(rotated) > 20 and all(p.name.endswith(".gz") for p in rotated)
    assert json.loads(gzip.decompress(rotated[0].read_bytes()).splitlines()[0])["log"]
    assert vdi.docker("logs", "gz").stdout.split() == want
    assert vdi.docker("logs", "--tail", "50", "gz").stdout.split() == want[-50:]
    vdi.docker("rm", "gz")


def test_log_attrs_and_details(vdi):
    """json-file's labels, labels-regex, env, env-regex and tag options put attrs into every
    entry, which logs --details shows before each line (query-escaped, sorted), as dockerd."""
    vdi.docker("run", "--name", "lg", "-e", "FOO=bar baz", "-e", "OTHER=1", "-e", "SKIP=1",
               "-l", "team=a", "-l", "x.y=2", "--log-opt", "labels=team", "--log-opt",
               "labels-regex=^x\\.", "--log-opt", "env=FOO", "--log-opt", "env-regex=^OTH",
               "--log-opt", "tag={{.Name}}/{{.ID}}", "busybox", "echo", "hello")
    cid = json.loads(vdi.docker("inspect", "lg").stdout)[0]["Id"]
    entry = json.loads((vdi.data / "containers" / cid / f"{cid}-json.log").read_text())
    want = {"FOO": "bar baz", "OTHER": "1", "team": "a", "x.y": "2", "tag": f"lg/{cid[:12]}"}
    assert entry["attrs"] == want and entry["log"] == "hello\n"
    assert vdi.docker("logs", "lg").stdout == "hello\n"
    details = f"FOO=bar+baz,OTHER=1,tag=lg%2F{cid[:12]},team=a,x.y=2 hello\n"
    assert vdi.docker("logs", "--details", "lg").stdout == details
    stamped = vdi.docker("logs", "-t", "--details", "lg").stdout
    assert stamped.split(" ", 1)[1] == details and stamped.startswith(entry["time"])
    vdi.docker("rm", "lg")
    for opts, msg in [(["--log-opt", "tag={{.Bogus}}"], "can't evaluate {{.Bogus}}"),
                      (["--log-opt", "env-regex=("], "invalid regular expression"),
                      (["--log-opt", "labels-regex=x" + "+" * 200],
                       "quantifier does not follow a repeatable item"),
                      (["--log-opt", "env-regex=" + "(" * 300 + "a" + ")" * 300],
                       "parentheses are too deeply nested"),
                      (["--log-opt", "env-regex=" + "a" * 1025], "longer than 1024 bytes")]:
        r = vdi.docker("create", *opts, "busybox", "true", check=False)
        assert r.returncode != 0 and msg in r.stderr, (opts, r.stderr)


def test_cp_stopped_container_volumes_and_binds(vdi, tmp_path):
    rw, ro = tmp_path / "rw", tmp_path / "ro"
    rw.mkdir()
    ro.mkdir()
    (ro / "kept.txt").write_text("read-only bind\n")
    vdi.docker("run", "--name", "box", "-v", f"{rw}:/data", "-v", f"{ro}:/ro:ro", "-v",
               "named:/vol", "busybox", "sh", "-c", "echo in-volume > /vol/v")
    (tmp_path / "in.txt").write_text("copied in\n")
    # a stopped container's volumes and binds are where its files are, as with dockerd
    vdi.docker("cp", str(tmp_path / "in.txt"), "box:/data/in.txt")
    assert (rw / "in.txt").read_text() == "copied in\n"
    vdi.docker("cp", "box:/ro/kept.txt", str(tmp_path / "out.txt"))
    assert (tmp_path / "out.txt").read_text() == "read-only bind\n"
    vdi.docker("cp", "box:/vol/v", str(tmp_path / "v"))
    assert (tmp_path / "v").read_text() == "in-volume\n"
    r = vdi.docker("cp", str(tmp_path / "in.txt"), "box:/ro/", check=False)
    assert r.returncode != 0 and "read-only" in r.stderr
    assert sorted(os.listdir(ro)) == ["kept.txt"]
    # and nothing of it is mounted outside the copy (the overlay root stays, as always)
    assert [l.split()[1] for l in open("/proc/self/mounts")
            if str(tmp_path) in l and not l.split()[1].endswith("/rootfs")] == []
    vdi.docker("start", "-a", "box")  # it still starts, with its mounts as before
    vdi.docker("rm", "-v", "box")
    vdi.docker("volume", "rm", "named")
