"""Debian's containerd (its io.containerd.runc.v2 shim) driving vessel-runtime through `ctr`.

The test starts its own containerd with a private configuration: root, state and the gRPC and
ttrpc sockets in a temporary directory, the CRI plugin and the snapshotters this host lacks
disabled. `ctr run --runc-binary build/vessel-runtime --runc-root DIR` makes the shim call
vessel-runtime instead of runc. The image is a busybox OCI archive built here (no network) and
imported with `ctr images import`. At the end everything goes: tasks, containers, the image,
the shims, containerd, the overlay snapshots mounted under the temporary root, the cgroups of
the test's namespace.
"""
import json
import os
import pathlib
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time
import uuid

import pytest

import oci_images
from test_runtime import runtime_path

pytestmark = pytest.mark.skipif(shutil.which("containerd") is None or shutil.which("ctr") is None,
                                reason="containerd not installed")

IMAGE = "localhost/vessel-busybox:test"
DISABLED = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs",
            "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.aufs",
            "io.containerd.snapshotter.v1.devmapper", "io.containerd.tracing.processor.v1.otlp",
            "io.containerd.internal.v1.tracing"]


def mounts_under(path):
    """Mount points at or below path in our mount namespace, deepest last."""
    found = []
    for line in pathlib.Path("/proc/self/mountinfo").read_text().splitlines():
        mp = line.split()[4].replace("\\040", " ")
        if mp == str(path) or mp.startswith(str(path) + "/"):
            found.append(mp)
    return found


def processes_mentioning(text):
    pids = []
    for d in pathlib.Path("/proc").glob("[0-9]*"):
        try:
            if text.encode() in (d / "cmdline").read_bytes():
                pids.append(int(d.name))
        except OSError:
            pass
    return [p for p in pids if p != os.getpid()]


def cgroups_of(namespace):
    return [p for p in pathlib.Path("/sys/fs/cgroup").glob(f"*/{namespace}") if p.is_dir()]


def busybox_archive(base):
    """An OCI image archive of busybox, named for containerd by io.containerd.image.name."""
    layout = base / "layout"
    desc = oci_images.make_image(layout, [oci_images.busybox_layer().tar()],
                                 cmd=("/bin/sh",))
    desc = dict(desc, annotations={"io.containerd.image.name": IMAGE,
                                   "org.opencontainers.image.ref.name": "test"})
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [desc]}))
    archive = base / "busybox-oci.tar"
    with tarfile.open(archive, "w") as t:
        for p in sorted(layout.rglob("*")):
            t.add(p, arcname=str(p.relative_to(layout)), recursive=False)
    return archive


class Containerd:
    def __init__(self, base, runtime):
        self.base = base
        # the shim runs in its own directory: a relative VESSEL_BUILD must not reach it as such
        self.runtime = str(pathlib.Path(runtime).resolve())
        self.sock = base / "containerd.sock"
        self.namespace = "vessel-" + uuid.uuid4().hex[:10]
        self.runc_root = base / "runtime-root"
        self.config = base / "config.toml"
        disabled = ", ".join(f'"{p}"' for p in DISABLED)
        self.config.write_text(f"""version = 2
root = "{base}/root"
state = "{base}/state"
disabled_plugins = [{disabled}]
[grpc]
  address = "{self.sock}"
[ttrpc]
  address = "{self.sock}.ttrpc"
""")
        self.log = None
        self.proc = None

    def start(self):
        self.log = open(self.base / "containerd.log", "w")
        self.proc = subprocess.Popen(["containerd", "--config", str(self.config)],
                                     stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log)
        end = time.monotonic() + 30
        while time.monotonic() < end:
            if self.sock.exists() and self.ctr("version").returncode == 0:
                return
            assert self.proc.poll() is None, self.log_text()
            time.sleep(0.1)
        raise AssertionError("containerd did not come up:\n" + self.log_text())

    def log_text(self):
        return (self.base / "containerd.log").read_text()

    def ctr(self, *args, timeout=120, **kw):
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        kw.setdefault("stdin", subprocess.DEVNULL)
        return subprocess.run(["ctr", "--address", str(self.sock), "--namespace",
                               self.namespace, *args], timeout=timeout, **kw)

    def ok(self, *args, **kw):
        r = self.ctr(*args, **kw)
        assert r.returncode == 0, f"ctr {args}: rc={r.returncode}\n{r.stderr}"
        return r

    def run_args(self, *extra):
        return ["run", "--runc-binary", self.runtime, "--runc-root", str(self.runc_root), *extra]

    def task_status(self, cid):
        for line in self.ok("task", "ls").stdout.splitlines()[1:]:
            f = line.split()
            if f and f[0] == cid:
                return f[2]
        return None

    def remove_everything(self):
        for cid in self.ok("task", "ls", "-q").stdout.split():
            self.ctr("task", "kill", "--signal", "SIGKILL", cid)
            for _ in range(100):
                if self.task_status(cid) != "RUNNING":
                    break
                time.sleep(0.05)
            self.ctr("task", "delete", "--force", cid)
        for cid in self.ok("containers", "ls", "-q").stdout.split():
            self.ctr("containers", "delete", cid)
        self.ctr("images", "rm", IMAGE)

    def stop(self):
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


@pytest.fixture(scope="module")
def containerd(build_dir):
    base = pathlib.Path(tempfile.mkdtemp(prefix="vessel-containerd-"))
    d = None
    try:
        d = Containerd(base, runtime_path(build_dir))
        d.start()
        d.ok("images", "import", str(busybox_archive(base)))
        yield d
        d.remove_everything()
    finally:
        if d is not None:
            d.stop()
            # shims outlive containerd; ours name our socket on their command line
            for pid in processes_mentioning(str(d.sock)):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            for cg in sorted(cgroups_of(d.namespace), key=lambda p: -len(p.parts)):
                for sub in sorted((p for p in cg.rglob("*") if p.is_dir()),
                                  key=lambda p: -len(p.parts)):
                    sub.rmdir()
                cg.rmdir()
        left = mounts_under(base)
        for mp in reversed(left):
            subprocess.run(["umount", "-l", mp], check=False)
        subprocess.run(["rm", "-rf", str(base)], check=False)
    assert left == [], f"mounts left under {base}: {left}"
    assert d is None or cgroups_of(d.namespace) == [], "cgroups left behind"
    assert d is None or processes_mentioning(str(d.sock)) == [], "processes left behind"


def new_id():
    return "c-" + uuid.uuid4().hex[:10]


def test_run_gives_output_and_exit_status(containerd):
    cid = new_id()
    r = containerd.ctr(*containerd.run_args("--rm", IMAGE, cid, "sh", "-c",
                                            "echo out-$((6*7)); echo err >&2; exit 3"))
    assert r.returncode == 3, r.stderr
    assert r.stdout == "out-42\n"
    assert "err" in r.stderr
    assert containerd.ok("containers", "ls", "-q").stdout.split() == []
    assert mounts_under(containerd.base / "state") == [], "the snapshot is still mounted"
    assert not (containerd.runc_root / containerd.namespace / cid).exists()


def test_detached_task_exec_kill_delete(containerd):
    cid = new_id()
    log = containerd.base / f"{cid}.log"
    containerd.ok(*containerd.run_args(
        "--detach", "--log-uri", f"file://{log}", IMAGE, cid, "sh", "-c",
        "trap 'echo got-term; exit 9' TERM; echo ready; while true; do sleep 0.1; done"))
    try:
        # the shim drives vessel-runtime: its state file (runc's looks different)
        state = json.loads((containerd.runc_root / containerd.namespace / cid /
                            "state.json").read_text())
        assert state["id"] == cid and "pid_start" in state
        # the shim mounted the image's overlay snapshot as the bundle's rootfs
        assert mounts_under(containerd.base / "state"), "no snapshot mounted"
        for _ in range(200):
            if log.exists() and "ready" in log.read_text():
                break
            time.sleep(0.05)
        assert log.read_text() == "ready\n"
        assert containerd.task_status(cid) == "RUNNING"
        r = containerd.ctr("task", "exec", "--exec-id", "e1", cid, "sh", "-c",
                           "echo from-exec; exit 4")
        assert r.returncode == 4 and r.stdout == "from-exec\n", r.stderr
        containerd.ok("task", "kill", cid)  # SIGTERM: the trap answers
        for _ in range(200):
            if containerd.task_status(cid) == "STOPPED":
                break
            time.sleep(0.05)
        assert containerd.task_status(cid) == "STOPPED"
        r = containerd.ok("task", "delete", cid)
        assert "exit code 9" in r.stderr, r.stderr
        assert log.read_text() == "ready\ngot-term\n"
    finally:
        containerd.ctr("task", "delete", "--force", cid)
        containerd.ctr("containers", "delete", cid)
    assert mounts_under(containerd.base / "state") == [], "the snapshot is still mounted"
    assert not (containerd.runc_root / containerd.namespace / cid).exists()
