"""The vessel command line with and without vesseld: the same commands give the same results
whether vessel works on a store directly (--root, or no daemon answering) or through the
daemon's API (-H, VESSEL_HOST, DOCKER_HOST). Each test starts its own vesseld on a private
socket and data root and removes every container it made."""
import os
import pty
import select
import subprocess

import pytest

import oci_images
from test_daemon import Vesseld, busybox_archive

pytestmark = [pytest.mark.skipif(os.geteuid() != 0, reason="containers need root")]


class Vessel:
    """build/vessel in one mode: "daemon" (through a private vesseld) or "store" (--root)."""

    def __init__(self, build_dir, root, mode):
        self.bin = str(build_dir / "vessel")
        self.mode = mode
        self.root = root
        self.vd = Vesseld(build_dir, root) if mode == "daemon" else None
        # never pick up a daemon of the host or a DOCKER_HOST of the caller
        self.env = {k: v for k, v in os.environ.items() if k not in ("VESSEL_HOST", "DOCKER_HOST")}

    def __call__(self, *args, check=True, input=None, env=None, mode_args=None):
        if mode_args is None:
            mode_args = ["-H", self.vd.host] if self.vd else ["--root", str(self.root / "store")]
        r = subprocess.run([self.bin, *mode_args, *args], capture_output=True, text=True,
                           timeout=120, input=input, env=dict(self.env, **(env or {})))
        if check and r.returncode != 0:
            raise AssertionError(f"vessel {' '.join(args)}: rc {r.returncode}\n{r.stdout}\n"
                                 f"{r.stderr}" + (self.vd.log_text()[-2000:] if self.vd else ""))
        return r

    def cleanup(self):
        ids = self("ps", "-aq", check=False).stdout.split()
        if ids:
            self("rm", "-f", *ids, check=False)
        if self.vd:
            self.vd.cleanup()
        else:
            for line in open("/proc/self/mounts"):
                if str(self.root) in line:
                    subprocess.run(["umount", "-l", line.split()[1]], check=False)


def on_pty(argv, dialogue):
    """Run argv on a pseudo-terminal; for each (keys, wanted) type keys and read until wanted
    (None: until the end). Returns the output and the exit status."""
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(argv[0], argv)
    out = b""
    try:
        for keys, wanted in dialogue:
            os.write(fd, keys)
            while wanted is None or wanted not in out:
                r, _, _ = select.select([fd], [], [], 60)
                assert r, f"no {wanted!r}: {out[-500:]!r}"
                try:
                    b = os.read(fd, 65536)
                except OSError:
                    b = b""
                if not b:
                    break
                out += b
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(fd)
    return out.decode(errors="replace"), os.waitstatus_to_exitcode(status)


@pytest.fixture(params=["store", "daemon"])
def vessel(request, build_dir, tmp_path):
    v = Vessel(build_dir, tmp_path, request.param)
    yield v
    v.cleanup()


def test_same_commands_with_and_without_daemon(vessel, tmp_path):
    tar = busybox_archive(tmp_path / "busybox.tar")
    assert "Loaded image: busybox:latest" in vessel("load", "-i", str(tar)).stdout
    images = vessel("images").stdout.splitlines()
    assert images[0].split()[:2] == ["REPOSITORY", "TAG"]
    assert any(l.split()[:2] == ["busybox", "latest"] for l in images[1:])
    image_id = vessel("images", "-q").stdout.split()
    assert len(image_id) == 1 and len(image_id[0]) == 12
    inspected = vessel("inspect", "busybox").stdout
    assert f'"sha256:{image_id[0]}' in inspected

    assert vessel("run", "--rm", "busybox", "echo", "hello").stdout == "hello\n"
    r = vessel("run", "--name", "three", "busybox", "sh", "-c", "echo out; echo err >&2; exit 3",
               check=False)
    assert (r.returncode, r.stdout) == (3, "out\n") and "err\n" in r.stderr
    assert vessel("run", "-i", "--rm", "busybox", "cat", input="piped\n").stdout == "piped\n"
    ps = vessel("ps", "-a").stdout.splitlines()
    assert ps[0].startswith("CONTAINER ID")
    row = [l for l in ps[1:] if l.endswith("three")]
    assert len(row) == 1 and "Exited (3)" in row[0]
    assert vessel("ps").stdout.splitlines()[1:] == []   # nothing running
    assert vessel("rm", "three").stdout == "three\n"
    assert vessel("ps", "-aq").stdout == ""
    r = vessel("rm", "three", check=False)
    assert r.returncode != 0 and "three" in r.stderr


def test_pull_from_registry_in_both_modes(vessel, tmp_path):
    registry = oci_images.Registry(tmp_path / "registry")
    try:
        layout = tmp_path / "layout"
        desc = oci_images.make_image(layout, [oci_images.busybox_layer().tar()],
                                     cmd=["echo", "from-registry"])
        oci_images.write_index(layout, [(desc, "latest")], "latest")
        oci_images.skopeo_push(layout, "latest", f"{registry.host}/test/box:latest")
        name = f"{registry.host}/test/box"
        extra = ["--tls-verify=false"] if vessel.mode == "store" else []
        vessel("pull", *extra, name)
        assert vessel("run", "--rm", name).stdout == "from-registry\n"
        r = vessel("pull", *extra, f"{registry.host}/test/nothing", check=False)
        assert r.returncode != 0 and "nothing" in r.stderr
    finally:
        registry.stop()


def test_daemon_only_commands_and_mode_choice(build_dir, tmp_path):
    v = Vessel(build_dir, tmp_path, "daemon")
    try:
        v("load", "-i", str(busybox_archive(tmp_path / "busybox.tar")))
        cid = v("run", "-d", "--name", "bg", "busybox", "sh", "-c",
                "echo started; exec sleep 100").stdout.strip()
        assert len(cid) == 64
        ps = v("ps").stdout.splitlines()
        assert len(ps) == 2 and ps[1].startswith(cid[:12]) and ps[1].endswith("bg")
        assert '"Running": true' in v("inspect", "bg").stdout
        for _ in range(100):
            if v("logs", "bg").stdout == "started\n":
                break
        assert v("logs", "bg").stdout == "started\n"
        r = v("rm", "bg", check=False)
        assert r.returncode == 1 and "cannot remove a running container" in r.stderr
        assert v("stop", "-t", "1", "bg").stdout == "bg\n"
        assert v("ps", "-q").stdout == ""
        assert v("start", "bg").stdout == "bg\n"
        assert v("ps", "-q").stdout.strip() == cid[:12]
        # the same daemon found through VESSEL_HOST and DOCKER_HOST, -H first
        assert v("ps", "-q", mode_args=[], env={"VESSEL_HOST": v.vd.host}).stdout.strip() == cid[:12]
        assert v("ps", "-q", mode_args=[], env={"DOCKER_HOST": v.vd.host}).stdout.strip() == cid[:12]
        assert v("ps", "-q", mode_args=["-H", v.vd.host],
                 env={"VESSEL_HOST": "unix:///nonexistent"}).stdout.strip() == cid[:12]
        assert v("rm", "-f", "bg").stdout == "bg\n"
        # an interactive shell on a terminal: typed lines run, exit ends it with its status
        out, rc = on_pty([v.bin, "-H", v.vd.host, "run", "-it", "--rm", "busybox", "sh"],
                         [(b"echo $((6*7))x\r", b"42x"), (b"exit 5\r", None)])
        assert rc == 5, out
        # logs -f follows until the container ends
        v("run", "-d", "--name", "short", "busybox", "sh", "-c", "echo one; sleep 1; echo two")
        assert v("logs", "-f", "short").stdout == "one\ntwo\n"
        v("rm", "short")
        # what cannot go through the daemon says so, and how to do it without
        r = v("push", "busybox", check=False)
        assert r.returncode == 125 and "not available through vesseld" in r.stderr
        assert "--root DIR push" in r.stderr
    finally:
        v.cleanup()
    # without a daemon: a named one that does not answer is an error, not a silent fallback
    r = v("ps", check=False, mode_args=["-H", f"unix://{tmp_path}/none.sock"])
    assert r.returncode == 125 and "Cannot connect to the vessel daemon" in r.stderr
    r = v("ps", check=False, mode_args=["-H", "tcp://127.0.0.1:2375"])
    assert r.returncode == 125 and "only unix://" in r.stderr
    r = v("ps", check=False, mode_args=["--root", str(tmp_path / "s"), "-H", v.vd.host])
    assert r.returncode == 125 and "give one of them" in r.stderr
    r = v("logs", "x", check=False, mode_args=["--root", str(tmp_path / "s")])
    assert r.returncode == 125 and "logs needs vesseld" in r.stderr
