"""Debian's podman (with conmon) driving vessel-runtime.

podman runs with a private configuration: CONTAINERS_CONF pointing at a test containers.conf
(default_ulimits lowered below this host's hard nofile limit, cgroupfs, file events, no network),
temporary --root/--runroot/--tmpdir. The runtime keeps its default state root
(/run/vessel-runtime): this podman does not pass --runtime-flag to every runtime call (its
cleanup's `delete` goes without it), so the test checks that no new entry is left there. The image is a busybox rootfs imported locally (no network). Nothing in /etc is
touched and everything is removed at the end.
"""
import json
import os
import pathlib
import pty
import shutil
import subprocess
import tempfile
import time

import pytest

from test_runtime import make_rootfs, runtime_path

pytestmark = pytest.mark.skipif(shutil.which("podman") is None, reason="podman not installed")

IMAGE = "localhost/vessel-busybox:test"


class Podman:
    def __init__(self, base, runtime):
        self.base = base
        self.runtime = str(runtime)
        conf = base / "containers.conf"
        conf.write_text(f"""[containers]
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]
netns = "none"
log_driver = "k8s-file"

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "{base}/events.log"
tmp_dir = "{base}/libpod-tmp"
""")
        self.env = dict(os.environ, CONTAINERS_CONF=str(conf),
                        CONTAINERS_STORAGE_CONF=str(base / "storage.conf"),
                        XDG_CONFIG_HOME=str(base / "xdg"))
        (base / "storage.conf").write_text(f"""[storage]
driver = "vfs"
runroot = "{base}/runroot"
graphroot = "{base}/root"
""")
        self.args = ["podman", "--root", str(base / "root"), "--runroot", str(base / "runroot"),
                     "--tmpdir", str(base / "libpod-tmp"), "--storage-driver", "vfs",
                     "--cgroup-manager", "cgroupfs", "--events-backend", "file",
                     "--runtime", self.runtime]

    def cmd(self, *args, timeout=120, **kw):
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        # conmon writes a file named "oom" into its working directory when the container is
        # OOM-killed: keep that inside the test's own directory
        kw.setdefault("cwd", self.base)
        return subprocess.run(self.args + list(args), env=self.env, timeout=timeout, **kw)

    def ok(self, *args, **kw):
        r = self.cmd(*args, **kw)
        assert r.returncode == 0, f"podman {args}: rc={r.returncode}\n{r.stderr}"
        return r


STATE_ROOT = pathlib.Path("/run/vessel-runtime")


def snapshot():
    """Runtime state entries, the containers' cgroups and podman's own (conmon) cgroups."""
    state = set(os.listdir(STATE_ROOT)) if STATE_ROOT.is_dir() else set()
    cgroups = set(str(p) for p in pathlib.Path("/sys/fs/cgroup").glob("*/libpod_parent/libpod-*"))
    podman_own = set(str(p) for p in pathlib.Path("/sys/fs/cgroup").glob("*/libpod_parent*"))
    podman_own |= set(str(p) for p in pathlib.Path("/sys/fs/cgroup").glob("*/libpod_parent/conmon"))
    return state, cgroups, podman_own


def remove_new_podman_cgroups(before):
    """podman puts conmon in <hierarchy>/libpod_parent/conmon: remove the ones it made now."""
    _, _, now = snapshot()
    for d in sorted(now - before, key=len, reverse=True):
        try:
            os.rmdir(d)
        except OSError:
            pass  # still in use (another podman) or not empty: not ours to force


@pytest.fixture(scope="module")
def podman(build_dir):
    before = snapshot()
    base = pathlib.Path(tempfile.mkdtemp(prefix="vessel-podman-"))
    p = Podman(base, runtime_path(build_dir))
    rootfs = base / "image-rootfs"
    make_rootfs(rootfs)
    tar = base / "busybox.tar"
    subprocess.run(["tar", "-C", str(rootfs), "-cf", str(tar), "."], check=True)
    p.ok("import", str(tar), IMAGE)
    yield p
    p.cmd("rm", "--all", "--force", "--time", "0")
    p.cmd("rmi", "--all", "--force")
    # the containers this podman made, from its event log (other tests may run podman too)
    ours = set()
    events = base / "events.log"
    for line in events.read_text().splitlines() if events.exists() else []:
        try:
            cid = json.loads(line).get("ID", "")
        except ValueError:
            continue
        if len(cid) == 64:
            ours.add(cid)
    subprocess.run(["rm", "-rf", str(base)], check=False)
    remove_new_podman_cgroups(before[2])
    after = snapshot()
    assert ours, "no container events recorded"
    assert ours & (after[0] - before[0]) == set(), "runtime state left behind"
    left = {c for c in after[1] - before[1] if c.rsplit("libpod-", 1)[-1] in ours}
    assert left == set(), f"cgroups left behind: {left}"


def run_args(*extra):
    return ["run", "--rm", "--network", "none", *extra]


def test_run_rm_echo(podman):
    r = podman.ok(*run_args(IMAGE, "echo", "hi"))
    assert r.stdout == "hi\n"


def test_run_exit_status(podman):
    r = podman.cmd(*run_args(IMAGE, "sh", "-c", "exit 5"))
    assert r.returncode == 5


def test_detached_logs_exec_pause_stop(podman):
    cid = podman.ok("run", "-d", "--network", "none", IMAGE, "sh", "-c",
                    "echo started; trap 'exit 0' TERM; while true; do sleep 0.1; done").stdout.strip()
    try:
        for _ in range(50):
            if "started" in podman.ok("logs", cid).stdout:
                break
            time.sleep(0.1)
        assert podman.ok("logs", cid).stdout == "started\n"
        r = podman.ok("exec", cid, "sh", "-c", "echo from-exec; cat /proc/1/cmdline | tr '\\0' ' '")
        assert r.stdout.startswith("from-exec\nsh -c")
        podman.ok("pause", cid)
        assert podman.ok("inspect", "--format", "{{.State.Status}}", cid).stdout.strip() == "paused"
        podman.ok("unpause", cid)
        assert podman.ok("inspect", "--format", "{{.State.Status}}", cid).stdout.strip() == "running"
        podman.ok("stop", "-t", "10", cid)
        assert podman.ok("inspect", "--format", "{{.State.ExitCode}}", cid).stdout.strip() == "0"
    finally:
        podman.cmd("rm", "-f", cid)


def test_interactive_tty(podman):
    pid, fd = pty.fork()
    if pid == 0:
        os.execvpe(podman.args[0], podman.args + run_args("-it", IMAGE, "sh", "-c",
                                                          "tty; echo cols=$(stty size)"),
                   podman.env)
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
    text = out.decode(errors="replace")
    assert os.waitstatus_to_exitcode(status) == 0, text
    assert "/dev/pts/0" in text
    assert "cols=" in text


def test_memory_and_pids_limits(podman):
    r = podman.ok(*run_args("--memory", "64m", "--pids-limit", "50", IMAGE, "sh", "-c",
                            "cat /sys/fs/cgroup/memory/memory.limit_in_bytes "
                            "/sys/fs/cgroup/pids/pids.max"))
    assert r.stdout.split() == [str(64 << 20), "50"]


def test_read_only(podman):
    r = podman.cmd(*run_args("--read-only", IMAGE, "sh", "-c", "touch /tmp/ok && touch /x"))
    assert r.returncode != 0
    assert "Read-only file system" in r.stderr + r.stdout


def test_cap_drop(podman):
    r = podman.ok(*run_args("--cap-drop", "all", IMAGE, "grep", "CapEff", "/proc/self/status"))
    assert r.stdout.split()[1] == "0000000000000000"
    r = podman.ok(*run_args("--cap-drop", "net_raw", IMAGE, "grep", "CapBnd", "/proc/self/status"))
    assert int(r.stdout.split()[1], 16) & (1 << 13) == 0  # CAP_NET_RAW
