"""vessel-runtime end to end: a busybox bundle through the runc-compatible command line.

Every test uses its own runtime root and bundle in a temporary directory and checks that nothing
is left behind: no state directory, cgroup, mount or process.
"""
import errno
import fcntl
import glob
import json
import os
import pathlib
import shutil
import signal
import stat
import subprocess
import time
import uuid

import pytest

BUSYBOX = "/bin/busybox"


def runtime_path(build_dir):
    for p in (build_dir / "vessel-runtime", build_dir / "src/cli/runtime/vessel-runtime"):
        if p.is_file():
            return p
    pytest.fail(f"vessel-runtime not built in {build_dir}")


def make_rootfs(root):
    (root / "bin").mkdir(parents=True)
    shutil.copy(BUSYBOX, root / "bin/busybox")
    applets = subprocess.run([BUSYBOX, "--list"], check=True, capture_output=True,
                             text=True).stdout.split()
    for a in applets:
        if a != "busybox":
            os.symlink("busybox", root / "bin" / a)
    for d in ("proc", "sys", "dev", "etc", "tmp"):
        (root / d).mkdir()


class Runtime:
    def __init__(self, binary, root, bundle):
        self.binary = str(binary)
        self.root = str(root)
        self.bundle = bundle
        self.created = []

    def cmd(self, *args, **kw):
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        kw.setdefault("timeout", 60)
        return subprocess.run([self.binary, "--root", self.root, *args], **kw)

    def ok(self, *args, **kw):
        r = self.cmd(*args, **kw)
        assert r.returncode == 0, f"{args}: rc={r.returncode} stderr={r.stderr}"
        return r

    def detached(self, *args):
        """create / run -d: the container keeps our stdio, so never wait for pipes to close."""
        errf = self.bundle.parent / "detached.err"
        with open(errf, "w+") as err:
            r = subprocess.run([self.binary, "--root", self.root, *args], stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=err, timeout=60)
            err.seek(0)
            msg = err.read()
        assert r.returncode == 0, f"{args}: rc={r.returncode} stderr={msg}"

    def state(self, cid):
        return json.loads(self.ok("state", cid).stdout)

    def config(self):
        return json.loads((self.bundle / "config.json").read_text())

    def write_config(self, c):
        (self.bundle / "config.json").write_text(json.dumps(c))

    def set_process(self, args, **extra):
        c = self.config()
        c["process"]["args"] = args
        c["process"].update(extra)
        self.write_config(c)


def cgroup_dirs(cid):
    return [p for p in glob.glob(f"/sys/fs/cgroup/*/vessel/{cid}") + glob.glob(
        f"/sys/fs/cgroup/*/*/vessel/{cid}") if os.path.isdir(p)]


def processes_with(marker):
    found = []
    for d in glob.glob("/proc/[0-9]*"):
        try:
            if marker.encode() in pathlib.Path(d, "cmdline").read_bytes():
                found.append(int(os.path.basename(d)))
        except OSError:
            pass
    return found


def assert_nothing_left(rt, cid):
    assert not os.path.exists(os.path.join(rt.root, cid)), "state directory left behind"
    assert cgroup_dirs(cid) == [], f"cgroups left behind: {cgroup_dirs(cid)}"
    mounts = pathlib.Path("/proc/self/mountinfo").read_text()
    assert str(rt.bundle) not in mounts, "mount left behind in the host namespace"


@pytest.fixture
def rt(build_dir, tmp_path):
    binary = runtime_path(build_dir)
    # a user-namespaced root must be able to walk to the bundle: pytest's tmp dirs are 0700
    tmp_path.chmod(0o755)
    for parent in tmp_path.parents:
        if str(parent).startswith("/tmp/pytest-of-"):
            parent.chmod(0o755)
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    make_rootfs(bundle / "rootfs")
    r = Runtime(binary, tmp_path / "state", bundle)
    r.ok("spec", "--bundle", str(bundle))
    c = r.config()
    c["process"]["terminal"] = False
    # runc's default lists ambient capabilities without inheritable ones; keep them coherent
    c["process"]["capabilities"]["inheritable"] = c["process"]["capabilities"]["bounding"]
    r.write_config(c)
    devnull = os.stat("/dev/null")
    yield r
    for cid in os.listdir(r.root) if os.path.isdir(r.root) else []:
        r.cmd("delete", "--force", cid)
    after = os.stat("/dev/null")
    assert (after.st_uid, after.st_gid, stat.S_IMODE(after.st_mode)) == (
        devnull.st_uid, devnull.st_gid, stat.S_IMODE(devnull.st_mode)), "host /dev/null changed"


def new_id():
    return "t-" + uuid.uuid4().hex[:12]


def test_run_returns_the_container_exit_status(rt):
    rt.set_process(["sh", "-c", "echo out-$(hostname); exit 7"])
    cid = new_id()
    r = rt.cmd("run", "--bundle", str(rt.bundle), cid)
    assert r.returncode == 7, r.stderr
    assert r.stdout.strip() == "out-vessel"
    assert_nothing_left(rt, cid)


@pytest.mark.parametrize("seal", ["default", "memfd"])
def test_init_image_cannot_be_written_through(rt, seal):
    """CVE-2019-5736: a container process holding /proc/<init>/exe must not be able to write the
    runtime's binary once the runtime has let go of it: the init runs from a read-only mount of
    the binary (default) or from a sealed memfd copy (the fallback, forced here)."""
    rt.set_process(["sleep", "1000"])
    cid = new_id()
    env = dict(os.environ)
    if seal == "memfd":
        env["VESSEL_RUNTIME_SEAL"] = "memfd"
    errf = rt.bundle.parent / "create.err"
    with open(errf, "w+") as err:
        r = subprocess.run([rt.binary, "--root", rt.root, "create", "--bundle", str(rt.bundle),
                            cid], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=err, timeout=60, env=env)
    assert r.returncode == 0, errf.read_text()
    pid = rt.state(cid)["pid"]
    before = pathlib.Path(rt.binary).read_bytes()
    handle = os.open(f"/proc/{pid}/exe", os.O_PATH)
    try:
        rt.ok("delete", "--force", cid)
        try:
            w = os.open(f"/proc/self/fd/{handle}", os.O_WRONLY)
        except OSError as e:
            assert seal == "default" and e.errno == errno.EROFS, e
        else:
            # only a memfd may be opened for writing, and its seals refuse the write
            try:
                assert seal == "memfd", "the runtime binary itself is writable through /proc/pid/exe"
                seals = fcntl.fcntl(w, fcntl.F_GET_SEALS)
                assert seals & fcntl.F_SEAL_WRITE, f"memfd not sealed: {seals:#x}"
                with pytest.raises(PermissionError):
                    os.write(w, b"x")
            finally:
                os.close(w)
    finally:
        os.close(handle)
    assert pathlib.Path(rt.binary).read_bytes() == before
    assert_nothing_left(rt, cid)


def test_create_start_state_kill_delete(rt):
    marker = "marker-" + uuid.uuid4().hex[:8]
    rt.set_process(["sh", "-c", f"sleep 1000; echo {marker}"])
    cid = new_id()
    rt.detached("create", "--bundle", str(rt.bundle), "--pid-file", str(rt.bundle / "pid"), cid)
    st = rt.state(cid)
    assert st["status"] == "created"
    assert st["id"] == cid and st["bundle"] == str(rt.bundle)
    assert int((rt.bundle / "pid").read_text()) == st["pid"]
    assert cgroup_dirs(cid), "no cgroup for the created container"
    rt.ok("start", cid)
    assert rt.state(cid)["status"] == "running"
    assert processes_with(marker), "container process not running"
    # runc refuses to delete a running container without --force
    r = rt.cmd("delete", cid)
    assert r.returncode != 0 and "running" in r.stderr
    listed = json.loads(rt.ok("list", "--format", "json").stdout)
    assert [c["id"] for c in listed] == [cid]
    assert rt.ok("list", "-q").stdout.split() == [cid]
    pids = json.loads(rt.ok("ps", "--format", "json", cid).stdout)
    assert st["pid"] in pids
    rt.ok("kill", cid, "KILL")
    for _ in range(100):
        if rt.state(cid)["status"] == "stopped":
            break
        time.sleep(0.05)
    assert rt.state(cid)["status"] == "stopped"
    rt.ok("delete", cid)
    assert not processes_with(marker)
    assert_nothing_left(rt, cid)


def test_exec_joins_the_running_container(rt):
    rt.set_process(["sleep", "1000"])
    c = rt.config()
    c["hostname"] = "inside"
    rt.write_config(c)
    cid = new_id()
    rt.detached("run", "--detach", "--bundle", str(rt.bundle), cid)
    init = rt.state(cid)["pid"]
    r = rt.ok("exec", "--env", "FOO=bar", cid, "sh", "-c", "hostname; echo $FOO; echo $$; ps")
    lines = r.stdout.split("\n")
    assert lines[0] == "inside" and lines[1] == "bar"
    # in the container's pid namespace: sleep is pid 1, our shell something small
    assert "1 0" in r.stdout.replace("root", "0") or " 1 " in r.stdout
    r = rt.cmd("exec", cid, "sh", "-c", "exit 3")
    assert r.returncode == 3
    # exec sees the container's root, not the host's
    r = rt.ok("exec", cid, "ls", "/")
    assert "bin" in r.stdout and "home" not in r.stdout and "usr" not in r.stdout
    pids = json.loads(rt.ok("ps", "--format", "json", cid).stdout)
    assert pids == [init]
    rt.ok("delete", "--force", cid)
    assert_nothing_left(rt, cid)


def test_pause_and_resume(rt):
    rt.set_process(["sh", "-c", "while true; do sleep 0.05; done"])
    cid = new_id()
    rt.detached("run", "-d", "--bundle", str(rt.bundle), cid)
    rt.ok("pause", cid)
    assert rt.state(cid)["status"] == "paused"
    pid = rt.state(cid)["pid"]
    s = pathlib.Path(f"/proc/{pid}/status").read_text()
    assert rt.cmd("pause", cid).returncode != 0
    rt.ok("resume", cid)
    assert rt.state(cid)["status"] == "running"
    assert rt.cmd("resume", cid).returncode != 0
    stats = json.loads(rt.ok("events", "--stats", cid).stdout)
    assert stats["type"] == "stats" and stats["id"] == cid
    rt.ok("delete", "--force", cid)
    assert_nothing_left(rt, cid)
    assert s


def test_read_only_root_refuses_writes(rt):
    rt.set_process(["sh", "-c", "touch /newfile"])
    cid = new_id()
    r = rt.cmd("run", "--bundle", str(rt.bundle), cid)
    assert r.returncode != 0
    assert "Read-only file system" in r.stderr
    assert not (rt.bundle / "rootfs/newfile").exists()
    assert_nothing_left(rt, cid)


def test_masked_and_readonly_paths(rt):
    rt.set_process(["sh", "-c",
                    "wc -c < /proc/timer_list; ls /sys/firmware | wc -l; echo 1 > /proc/sys/kernel/ns_last_pid"])
    cid = new_id()
    r = rt.cmd("run", "--bundle", str(rt.bundle), cid)
    out = r.stdout.split()
    assert out[0] == "0", "/proc/timer_list is not masked"
    assert out[1] == "0", "/sys/firmware is not masked"
    assert r.returncode != 0 and "Read-only file system" in r.stderr
    assert_nothing_left(rt, cid)


def test_user_namespace_maps_root_to_unprivileged_uid(rt):
    c = rt.config()
    c["linux"]["namespaces"].append({"type": "user"})
    c["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    c["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    c["process"]["args"] = ["sleep", "1000"]
    c["root"]["readonly"] = False
    rt.write_config(c)
    # the rootfs must be usable by the mapped root
    subprocess.run(["chown", "-R", "100000:100000", str(rt.bundle / "rootfs")], check=True)
    cid = new_id()
    rt.detached("run", "-d", "--bundle", str(rt.bundle), cid)
    pid = rt.state(cid)["pid"]
    status = pathlib.Path(f"/proc/{pid}/status").read_text()
    uid_line = [l for l in status.splitlines() if l.startswith("Uid:")][0]
    assert uid_line.split()[1:] == ["100000"] * 4, uid_line
    r = rt.ok("exec", cid, "sh", "-c", "id -u; cat /proc/self/uid_map")
    lines = r.stdout.split("\n")
    assert lines[0] == "0"
    assert lines[1].split() == ["0", "100000", "65536"]
    rt.ok("delete", "--force", cid)
    assert_nothing_left(rt, cid)


def test_bad_inputs_leave_nothing_behind(rt, tmp_path):
    cid = new_id()
    # invalid JSON
    (rt.bundle / "config.json").write_text("{ not json")
    r = rt.cmd("create", "--bundle", str(rt.bundle), cid)
    assert r.returncode != 0 and "invalid JSON" in r.stderr
    assert_nothing_left(rt, cid)
    # bad ids
    for bad in ("../x", "", "a" * 300):
        r = rt.cmd("create", "--bundle", str(rt.bundle), bad)
        assert r.returncode != 0 and "container id" in r.stderr
    # missing bundle
    r = rt.cmd("create", "--bundle", str(tmp_path / "nope"), cid)
    assert r.returncode != 0 and "nope" in r.stderr
    assert_nothing_left(rt, cid)


def test_failures_after_setup_started_are_rolled_back(rt, tmp_path):
    marker = "marker-" + uuid.uuid4().hex[:8]
    rt.set_process(["sh", "-c", f"sleep 1000; echo {marker}"])
    c = rt.config()
    saved = json.loads(json.dumps(c))
    c["mounts"].append({"destination": "/x", "type": "bind", "source": "/does/not/exist",
                        "options": ["bind"]})
    rt.write_config(c)
    cid = new_id()
    r = rt.cmd("create", "--bundle", str(rt.bundle), cid)
    assert r.returncode != 0 and "/does/not/exist" in r.stderr
    assert_nothing_left(rt, cid)
    # an executable that does not exist is found at create, like runc
    rt.write_config(saved)
    rt.set_process(["/no/such/program"])
    r = rt.cmd("create", "--bundle", str(rt.bundle), cid)
    assert r.returncode != 0 and "/no/such/program" in r.stderr
    assert_nothing_left(rt, cid)
    assert not processes_with(marker)


def test_duplicate_id_is_refused(rt):
    rt.set_process(["sleep", "1000"])
    cid = new_id()
    rt.detached("create", "--bundle", str(rt.bundle), cid)
    r = rt.cmd("create", "--bundle", str(rt.bundle), cid)
    assert r.returncode != 0 and "already exists" in r.stderr
    assert rt.state(cid)["status"] == "created"
    rt.ok("delete", "--force", cid)
    assert_nothing_left(rt, cid)


def test_mount_destination_symlink_stays_inside_the_root(rt, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(str(outside), rt.bundle / "rootfs/escape")
    c = rt.config()
    c["mounts"].append({"destination": "/escape/sub", "type": "tmpfs", "source": "tmpfs"})
    c["process"]["args"] = ["sh", "-c", "grep -c ' /escape/sub\\| /tmp' /proc/self/mountinfo"]
    rt.write_config(c)
    cid = new_id()
    r = rt.cmd("run", "--bundle", str(rt.bundle), cid)
    assert r.returncode == 0, r.stderr
    # the mount point was created inside the rootfs, at rootfs/<outside path>/sub
    assert not (outside / "sub").exists(), "a mount point was created on the host"
    assert (rt.bundle / "rootfs" / str(outside).lstrip("/") / "sub").is_dir()
    assert_nothing_left(rt, cid)


def test_signals_to_run_are_forwarded(rt):
    rt.set_process(["sh", "-c", "trap 'exit 42' TERM; echo ready; while true; do sleep 0.05; done"])
    cid = new_id()
    p = subprocess.Popen([rt.binary, "--root", rt.root, "run", "--bundle", str(rt.bundle), cid],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "ready"
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=20) == 42
    assert_nothing_left(rt, cid)


def test_hooks_get_the_state_on_stdin(rt, tmp_path):
    out = tmp_path / "hooks.log"
    hook = tmp_path / "hook.sh"
    hook.write_text(f"#!/bin/sh\ncat >> {out}\necho >> {out}\n")
    hook.chmod(0o755)
    c = rt.config()
    # the process must outlive the poststart hook for that hook to see "running"; `true` may
    # already have exited when the hook reads the state
    c["process"]["args"] = ["sleep", "0.5"]
    c["hooks"] = {k: [{"path": str(hook), "timeout": 10}]
                  for k in ("prestart", "createRuntime", "poststart", "poststop")}
    # createContainer runs in the container's namespaces before pivot_root: the host path works
    c["hooks"]["createContainer"] = [{"path": str(hook)}]
    rt.write_config(c)
    cid = new_id()
    rt.ok("run", "--bundle", str(rt.bundle), cid)
    states = [json.loads(l) for l in out.read_text().splitlines() if l.strip()]
    assert len(states) == 5
    assert all(s["id"] == cid for s in states)
    assert [s["status"] for s in states] == ["creating", "creating", "creating", "running",
                                             "stopped"]
    # poststart: running with its pid, even when `true` has exited before the hook ran
    assert states[3]["pid"] > 0
    # a failing hook fails create and leaves nothing behind
    c["hooks"] = {"createRuntime": [{"path": "/bin/false"}]}
    rt.write_config(c)
    r = rt.cmd("run", "--bundle", str(rt.bundle), cid)
    assert r.returncode != 0 and "createRuntime hook 0" in r.stderr
    assert_nothing_left(rt, cid)
    # a hook that hangs is killed at its timeout
    c["hooks"] = {"prestart": [{"path": "/bin/sleep", "args": ["sleep", "100"], "timeout": 1}]}
    rt.write_config(c)
    started = time.monotonic()
    r = rt.cmd("run", "--bundle", str(rt.bundle), cid)
    assert r.returncode != 0 and "timed out" in r.stderr
    assert time.monotonic() - started < 30
    assert_nothing_left(rt, cid)


def test_features_and_spec(rt):
    f = json.loads(rt.ok("features").stdout)
    assert "user" in f["linux"]["namespaces"]
    r = rt.cmd("spec", "--bundle", str(rt.bundle))
    assert r.returncode != 0, "spec must not overwrite an existing config.json"
    r = rt.cmd("--systemd-cgroup", "list")
    assert r.returncode != 0 and "systemd" in r.stderr


def run_in_pty(argv, cwd, typed):
    import pty
    pid, fd = pty.fork()
    if pid == 0:
        os.chdir(cwd)
        os.execv(argv[0], argv)
    os.write(fd, typed)
    out = b""
    while True:
        try:
            data = os.read(fd, 4096)
        except OSError:
            break
        if not data:
            break
        out += data
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return out.decode(errors="replace"), os.waitstatus_to_exitcode(status)


def test_foreground_terminal_run_and_exec(rt):
    rt.set_process(["sh"], terminal=True)
    cid = new_id()
    out, code = run_in_pty([rt.binary, "--root", rt.root, "run", cid], rt.bundle,
                           b"tty; echo typed-$((6*7))\nexit 4\n")
    assert code == 4, out
    assert "/dev/pts/0" in out and "typed-42" in out
    assert_nothing_left(rt, cid)
    rt.set_process(["sleep", "1000"], terminal=False)
    rt.detached("run", "-d", "--bundle", str(rt.bundle), cid)
    out, code = run_in_pty([rt.binary, "--root", rt.root, "exec", "-t", cid, "sh"], rt.bundle,
                           b"tty; echo typed-$((6*7))\nexit 3\n")
    assert code == 3, out
    assert "/dev/pts/" in out and "typed-42" in out
    rt.ok("delete", "--force", cid)
    assert_nothing_left(rt, cid)


def test_update_changes_limits(rt):
    rt.set_process(["sleep", "1000"])
    cid = new_id()
    rt.detached("run", "-d", "--bundle", str(rt.bundle), cid)
    rt.ok("update", "--pids-limit", "77", "--memory", "96m", cid)
    r = rt.ok("exec", cid, "cat", "/sys/fs/cgroup/pids/pids.max",
              "/sys/fs/cgroup/memory/memory.limit_in_bytes")
    assert r.stdout.split() == ["77", str(96 << 20)]
    rt.ok("kill", "--all", cid, "KILL")
    for _ in range(100):
        if rt.state(cid)["status"] == "stopped":
            break
        time.sleep(0.05)
    rt.ok("delete", cid)
    assert_nothing_left(rt, cid)


def test_joined_namespace_time_offsets_devices_sysctls(rt):
    holder = subprocess.Popen(["unshare", "--net", "sleep", "1000"])
    try:
        netns = f"/proc/{holder.pid}/ns/net"
        for _ in range(100):
            if os.readlink(netns) != os.readlink("/proc/self/ns/net"):
                break
            time.sleep(0.02)
        c = rt.config()
        c["linux"]["namespaces"] = [n for n in c["linux"]["namespaces"]
                                    if n["type"] not in ("network", "cgroup")]
        c["linux"]["namespaces"] += [{"type": "network", "path": netns}, {"type": "time"},
                                     {"type": "cgroup"}]
        c["linux"]["timeOffsets"] = {"boottime": {"secs": 86400 * 365, "nanosecs": 0}}
        c["linux"]["devices"] = [{"type": "c", "path": "/dev/vnull", "major": 1, "minor": 3,
                                  "fileMode": 0o666, "uid": 0, "gid": 0}]
        c["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1"}
        c["domainname"] = "example.test"
        c["process"]["args"] = ["sh", "-c",
                                "readlink /proc/self/ns/net; cut -d. -f1 /proc/uptime; "
                                "echo x > /dev/vnull && echo dev-ok; cat /proc/sys/net/ipv4/ip_forward; "
                                "cat /proc/sys/kernel/domainname; cut -d: -f3 /proc/self/cgroup | sort -u"]
        rt.write_config(c)
        cid = new_id()
        r = rt.cmd("run", "--bundle", str(rt.bundle), cid)
        assert r.returncode == 0, r.stderr
        out = r.stdout.split("\n")
        assert out[0] == os.readlink(netns), "did not join the given network namespace"
        assert int(out[1]) >= 86400 * 365, "boottime offset not applied"
        assert out[2] == "dev-ok"
        assert out[3] == "1"
        assert out[4] == "example.test"
        assert out[5] == "/", "cgroup namespace root is not the container's cgroup"
        # the sysctl went to the joined namespace only
        assert pathlib.Path("/proc/sys/net/ipv4/ip_forward").read_text().strip() in ("0", "1")
        assert_nothing_left(rt, cid)
    finally:
        holder.kill()
        holder.wait()


def test_tmpfs_copy_up(rt):
    (rt.bundle / "rootfs/etc/sub").mkdir()
    (rt.bundle / "rootfs/etc/sub/file").write_text("from-image\n")
    os.symlink("sub/file", rt.bundle / "rootfs/etc/link")
    c = rt.config()
    c["mounts"].append({"destination": "/etc", "type": "tmpfs", "source": "tmpfs",
                        "options": ["rw", "nosuid", "tmpcopyup"]})
    c["process"]["args"] = ["sh", "-c", "cat /etc/link; echo new > /etc/new; "
                                        "grep ' /etc ' /proc/self/mountinfo | grep -c tmpfs"]
    rt.write_config(c)
    cid = new_id()
    r = rt.cmd("run", "--bundle", str(rt.bundle), cid)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["from-image", "1"]
    assert not (rt.bundle / "rootfs/etc/new").exists(), "wrote through to the image"
    assert_nothing_left(rt, cid)
