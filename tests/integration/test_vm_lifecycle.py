"""VM lifecycle (docs/lifecycle.md): the control socket, pause/resume, snapshot -> quit -> restore,
clones, live migration, powerdown, and refusal of bad input.

One guest boots (Debian's kernel, busybox) with a counter loop that prints count=N on its console
every 0.2 s and appends N to /mnt/log on an ext4 disk; every later VM is restored from snapshots of
it, so only one Linux boot is paid for. The tests run in file order and share that state; a test
whose prerequisite failed is skipped."""
import json
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest

TOP = pathlib.Path(__file__).resolve().parents[2]
if not (TOP / "tests/integration/guestconsole.py").exists():
    pytest.skip("needs guestconsole.py", allow_module_level=True)

from guestconsole import GuestConsole  # noqa: E402

COUNTER = ("mount /dev/vda /mnt && i=0; while true; do echo count=$i; echo $i >> /mnt/log; sync; "
           "i=$((i+1)); sleep 0.2; done")
COUNT_RE = re.compile(r"count=(\d+)")


class Ctl:
    """A control socket client: one JSON object per line; events are collected on the side."""

    def __init__(self, path, timeout=120):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(str(path))
        self.buf = b""
        self.events = []

    def _line(self):
        while b"\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError("control socket closed")
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def send_raw(self, data):
        self.sock.sendall(data)

    def reply(self):
        while True:
            msg = self._line()
            if "event" in msg:
                self.events.append(msg)
                continue
            return msg

    def call(self, command, **args):
        self.send_raw(json.dumps(dict(command=command, **args)).encode() + b"\n")
        return self.reply()

    def wait_event(self, name, timeout=120):
        deadline = time.monotonic() + timeout
        while True:
            for e in self.events:
                if e["event"] == name:
                    return e
            self.sock.settimeout(max(0.1, deadline - time.monotonic()))
            msg = self._line()
            if "event" in msg:
                self.events.append(msg)

    def close(self):
        self.sock.close()


def counts(text):
    return [int(n) for n in COUNT_RE.findall(text)]


def counts_across(*vms):
    """The counter of one guest that moved from process to process (restore, migration): its
    console is the processes' outputs one after the other. A line the guest was writing when it
    stopped is split between two of them, so the outputs are joined before they are read."""
    return counts("".join(vm.output for vm in vms))


def wait_count(vm, at_least, timeout=600):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        c = counts(vm.output)
        if c and c[-1] >= at_least:
            return c[-1]
        time.sleep(0.1)
    raise AssertionError(f"no count={at_least}; console ends with {vm.output[-2000:]}")


def wait_socket(path, proc, timeout=60):
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        assert proc.poll() is None, f"the VMM exited with {proc.returncode}"
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.02)


def wait_listening(port, proc, timeout=60):
    """Waits until a socket listens on the loopback TCP port (an --incoming destination is
    ready), read from /proc/net/tcp: a probe connection would be taken for the migration."""
    deadline = time.monotonic() + timeout
    want = f"0100007F:{port:04X}"
    while True:
        with open("/proc/net/tcp") as f:
            if any(l.split()[1] == want and l.split()[3] == "0A" for l in list(f)[1:]):
                return
        assert proc.poll() is None, f"the VMM exited with {proc.returncode}"
        assert time.monotonic() < deadline, f"nothing listens on 127.0.0.1:{port}"
        time.sleep(0.02)


def cpu_ticks(pid):
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def restore_cmd(vmm, snap, sock, *extra):
    return [vmm, "--restore", snap, "--api-sock", sock, *extra]


def disk_log(image, workdir, fmt="raw"):
    """The numbers in /log of an ext4 image (journal replayed on a raw copy)."""
    raw = workdir / f"check-{time.monotonic_ns()}.raw"
    if fmt == "raw":
        shutil.copy(image, raw)
    else:
        subprocess.run(["qemu-img", "convert", "-O", "raw", str(image), str(raw)], check=True)
    subprocess.run(["e2fsck", "-fy", str(raw)], stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    out = subprocess.run(["debugfs", "-R", "cat /log", str(raw)], check=True,
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True).stdout
    raw.unlink()
    return [int(x) for x in out.split()]


def assert_consecutive(nums, what):
    assert nums, f"{what}: no numbers"
    for a, b in zip(nums, nums[1:]):
        assert b == a + 1, f"{what}: {a} then {b} in {nums}"


@pytest.fixture(scope="module")
def env(build_dir):
    work = pathlib.Path(tempfile.mkdtemp(prefix="vessel-life-"))
    # A private copy of this tree's guest (the shared cache may be rebuilt meanwhile by another
    # checkout's fetch-guest): the power button needs this tree's initramfs.
    out = subprocess.run(["bash", str(TOP / "scripts/fetch-guest")], check=True,
                         stdout=subprocess.PIPE, text=True).stdout
    cache = pathlib.Path(out.strip().splitlines()[-1])
    assets = work / "guest"
    assets.mkdir()
    for name in ("Image", "initrd.img"):
        shutil.copy(cache / name, assets / name)
    state = {"work": work, "vmm": str(build_dir / "vessel-vmm"), "assets": assets, "procs": []}
    disk = work / "data.raw"
    with open(disk, "wb") as f:
        f.truncate(64 << 20)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(disk)], check=True)
    state["disk"] = disk
    try:
        yield state
    finally:
        for p in state["procs"]:
            p.close()
        if not os.environ.get("VESSEL_KEEP_WORK"):
            shutil.rmtree(work, ignore_errors=True)


def start(env, cmd, name):
    vm = GuestConsole(cmd, log_path=env["work"] / f"{name}.log")
    env["procs"].append(vm)
    return vm


def need(env, key):
    if key not in env:
        pytest.skip(f"an earlier test did not produce {key}")
    return env[key]


def test_boot_pause_resume(env):
    sock = env["work"] / "boot.sock"
    a = env["assets"]
    cmd = [env["vmm"], "--kernel", a / "Image", "--initrd", a / "initrd.img", "--mem", "256M",
           "--disk", f"{env['disk']},format=raw", "--api-sock", sock,
           "--append", f'console=ttyS0 quiet vessel.cmd="{COUNTER}"']
    vm = start(env, cmd, "boot")
    wait_count(vm, 3)
    assert oct(os.stat(sock).st_mode & 0o777) == "0o600"
    ctl = Ctl(sock)
    assert ctl.call("status")["result"]["state"] == "running"
    r = ctl.call("pause")
    assert r["ok"] and r["result"]["state"] == "paused"
    assert ctl.wait_event("paused")
    time.sleep(0.5)
    last = counts(vm.output)[-1]
    ticks = cpu_ticks(vm.proc.pid)
    time.sleep(3)
    assert counts(vm.output)[-1] == last, "the counter moved while paused"
    used = cpu_ticks(vm.proc.pid) - ticks
    assert used <= 5, f"a paused VM used {used} ticks of CPU in 3 s"
    info = ctl.call("info")["result"]
    assert info["state"] == "paused" and info["memory"]["size"] == 256 << 20
    assert info["harts"][0]["state"] == "started"
    assert any(d["name"] == "virtio-input" for d in info["devices"])
    assert ctl.call("resume")["result"]["state"] == "running"
    wait_count(vm, last + 2)
    after = counts(vm.output)
    assert after[after.index(last) + 1] == last + 1
    env["boot"] = (vm, ctl, sock)


def test_snapshot_quit_restore_continues(env):
    vm, ctl, _ = need(env, "boot")
    snap = env["work"] / "snap-a"
    r = ctl.call("snapshot", dir=str(snap), quit=True)
    assert r["ok"], r
    assert vm.wait(60) == 0
    ctl.close()
    last = counts(vm.output)[-1]
    assert (snap / "state").is_file() and (snap / "memory").stat().st_size == 256 << 20
    assert (snap / "memory").stat().st_blocks * 512 < 200 << 20, "the memory file is not sparse"

    # The snapshot was taken under the translator; the restored VM runs in the interpreter
    # (translated code is derived state, never saved).
    sock = env["work"] / "restored.sock"
    rvm = start(env, restore_cmd(env["vmm"], snap, sock, "--accel", "interp"), "restored")
    wait_socket(sock, rvm.proc)
    wait_count(rvm, last + 3, timeout=60)
    c = counts(rvm.output)
    assert c[0] == last + 1, f"restore printed {c[:3]} after {last}"
    assert_consecutive(c, "restored console")
    # Files on the disk agree: the guest appended every number it printed (sync each time).
    rctl = Ctl(sock)
    rctl.call("pause")
    time.sleep(0.3)
    printed = counts(vm.output) + counts(rvm.output)
    on_disk = disk_log(env["disk"], env["work"])
    assert_consecutive(on_disk, "disk log")
    assert on_disk[0] == 0 and on_disk[-1] >= printed[-1] - 1
    # A consistent snapshot for clones and migration: the disk becomes its read-only base.
    snap_b = env["work"] / "snap-b"
    r = rctl.call("snapshot", dir=str(snap_b), disk_overlay=True)
    assert r["ok"], r
    assert r["result"]["disks"][0].split(",")[0].endswith(".1.qcow2")
    base_sum = subprocess.run(["sha256sum", str(env["disk"])], stdout=subprocess.PIPE,
                              text=True, check=True).stdout.split()[0]
    rctl.call("resume")
    wait_count(rvm, counts(rvm.output)[-1] + 2, timeout=60)
    assert rctl.call("quit")["ok"]
    assert rvm.wait(60) == 0
    after = subprocess.run(["sha256sum", str(env["disk"])], stdout=subprocess.PIPE, text=True,
                           check=True).stdout.split()[0]
    assert after == base_sum, "the frozen base changed after snapshot --disk-overlay"
    env["snap_b"] = snap_b
    env["snap_b_last"] = printed[-1]


def pss_kib(pid):
    rss = pss = 0
    for line in pathlib.Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Rss:"):
            rss = int(line.split()[1])
        elif line.startswith("Pss:"):
            pss = int(line.split()[1])
    return rss, pss


def test_eight_clones_share_memory(env):
    snap = need(env, "snap_b")
    clones = []
    t0 = time.monotonic()
    for i in range(8):
        sock = env["work"] / f"clone{i}.sock"
        cmd = restore_cmd(env["vmm"], snap, sock, "--clone", "--clone-dir",
                          env["work"] / f"clone{i}")
        clones.append((start(env, cmd, f"clone{i}"), sock))
    for vm, sock in clones:
        wait_socket(sock, vm.proc)
    started = time.monotonic() - t0
    for vm, _ in clones:
        wait_count(vm, 0, timeout=120)  # a count=N printed by this clone
    time.sleep(2)
    rss_total = pss_total = 0
    for vm, sock in clones:
        c = counts(vm.output)
        assert len(c) >= 3, f"a clone printed only {c}"
        assert_consecutive(c, "clone console")
        assert vm.proc.poll() is None
        rss, pss = pss_kib(vm.proc.pid)
        rss_total += rss
        pss_total += pss
    print(f"8 clones started in {started:.2f} s; RSS {rss_total >> 10} MiB, "
          f"PSS {pss_total >> 10} MiB (guest RAM 8 x 256 MiB)")
    assert rss_total < 8 * 256 * 1024 // 2, f"total RSS {rss_total} KiB"
    # Each has its own overlay on the shared base, and they diverge.
    for i, (vm, sock) in enumerate(clones):
        assert (env["work"] / f"clone{i}" / "disk0.qcow2").is_file()
        c = Ctl(sock)
        assert c.call("quit")["ok"]
        c.close()
        assert vm.wait(60) == 0


def test_live_migration_loses_nothing(env):
    snap = need(env, "snap_b")
    src_sock = env["work"] / "src.sock"
    dst_sock = env["work"] / "dst.sock"
    port = free_port()
    dst = start(env, [env["vmm"], "--incoming", f"127.0.0.1:{port}", "--api-sock", dst_sock],
                "dest")
    wait_listening(port, dst.proc)
    src = start(env, restore_cmd(env["vmm"], snap, src_sock, "--clone-dir",
                                 env["work"] / "migrated"), "source")
    wait_socket(src_sock, src.proc)
    wait_count(src, env["snap_b_last"] + 5, timeout=60)
    r = subprocess.run([env["vmm"], "ctl", str(src_sock), "migrate", f"127.0.0.1:{port}"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    done = json.loads(r.stdout)
    assert done.get("event") == "migration-completed", r.stdout
    print(f"migration: {done['total_ms']} ms total, {done['downtime_us'] / 1000:.1f} ms down, "
          f"{done['rounds']} rounds")
    assert src.wait(60) == 0
    wait_socket(dst_sock, dst.proc)
    last_src = counts(src.output)[-1]
    wait_count(dst, last_src + 5, timeout=60)
    assert_consecutive(counts_across(src, dst), "console across the migration")
    c = Ctl(dst_sock)
    c.call("pause")
    on_disk = disk_log(env["work"] / "migrated" / "disk0.qcow2", env["work"], fmt="qcow2")
    assert_consecutive(on_disk, "disk log across the migration")
    assert on_disk[-1] >= counts(dst.output)[-1] - 1
    assert c.call("quit")["ok"]
    assert dst.wait(60) == 0


def test_powerdown_shuts_the_guest_down(env):
    snap = need(env, "snap_b")
    sock = env["work"] / "pd.sock"
    vm = start(env, restore_cmd(env["vmm"], snap, sock, "--clone", "--clone-dir",
                                env["work"] / "pd"), "powerdown")
    wait_socket(sock, vm.proc)
    c = Ctl(sock)
    assert c.call("powerdown")["ok"]
    assert vm.wait(120) == 0
    assert c.wait_event("powered-off")


def run_vmm(env, *args, timeout=60):
    return subprocess.run([env["vmm"], *map(str, args)], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def copy_snapshot(env, name):
    src = need(env, "snap_b")
    dst = env["work"] / name
    dst.mkdir()
    shutil.copy(src / "state", dst / "state")
    os.link(src / "memory", dst / "memory")
    return dst


def test_bad_snapshots_are_refused(env):
    # a flipped byte in the middle: checksum
    s = copy_snapshot(env, "bad-sum")
    data = bytearray((s / "state").read_bytes())
    data[len(data) // 2] ^= 0x40
    (s / "state").write_bytes(bytes(data))
    r = run_vmm(env, "--restore", s)
    assert r.returncode == 1 and "checksum mismatch" in r.stderr, r.stderr
    # an older (or newer) format version
    s = copy_snapshot(env, "bad-version")
    data = bytearray((s / "state").read_bytes())
    data[8:12] = (0).to_bytes(4, "little")
    (s / "state").write_bytes(bytes(data))
    r = run_vmm(env, "--restore", s)
    assert r.returncode == 1 and re.search(r"snapshot format version 0, this build reads \d+",
                                           r.stderr), r.stderr
    # truncated
    s = copy_snapshot(env, "bad-short")
    (s / "state").write_bytes((s / "state").read_bytes()[:-100])
    r = run_vmm(env, "--restore", s)
    assert r.returncode == 1 and r.stderr.strip(), r.stderr
    # a memory file of the wrong size
    s = copy_snapshot(env, "bad-memory")
    (s / "memory").unlink()
    with open(s / "memory", "wb") as f:
        f.truncate(128 << 20)
    r = run_vmm(env, "--restore", s)
    assert r.returncode == 1 and "the snapshot's RAM is" in r.stderr, r.stderr
    # machine options next to --restore
    r = run_vmm(env, "--restore", s, "--mem", "1G")
    assert r.returncode == 2


def test_garbage_migration_streams(env):
    for payload in (os.urandom(5000), b"VSSLMIGR\x01\x00\x00\x00C\xff\xff\xff\x7f",
                    b"VSSLMIGR\x01\x00\x00\x00"):
        port = free_port()
        p = subprocess.Popen([env["vmm"], "--incoming", f"127.0.0.1:{port}"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             stdin=subprocess.DEVNULL)
        try:
            for _ in range(100):
                try:
                    s = socket.create_connection(("127.0.0.1", port))
                    break
                except ConnectionRefusedError:
                    time.sleep(0.05)
            s.sendall(payload)
            s.close()  # the stream stops halfway
            _, err = p.communicate(timeout=60)
            assert p.returncode == 1 and "incoming migration" in err, err
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()


def test_incoming_on_an_inherited_socket(env):
    """--incoming fd:N takes a listening socket made by the parent (which knew the port before
    the receiver ran): a stream sent before the VMM even started waits in its backlog and is
    judged like any other; a descriptor that is not a listening socket is refused."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1)
    early = socket.create_connection(lsock.getsockname())  # queued before the VMM runs
    early.sendall(b"VSSLMIGR\x09\x00\x00\x00")
    early.close()
    fd = lsock.fileno()
    r = subprocess.run([env["vmm"], "--incoming", f"fd:{fd}", "--paused"], pass_fds=(fd,),
                       capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    lsock.close()
    assert r.returncode == 1 and "incoming migration" in r.stderr, r.stderr
    with socket.socket() as unbound, open(os.devnull) as devnull:
        for f in (unbound.fileno(), devnull.fileno()):
            r = subprocess.run([env["vmm"], "--incoming", f"fd:{f}"], pass_fds=(f,),
                               capture_output=True, text=True, timeout=60)
            assert r.returncode == 1 and "is not a listening socket" in r.stderr, r.stderr
    for bad in ("fd:", "fd:1", "fd:x3"):
        r = run_vmm(env, "--incoming", bad)
        assert r.returncode == 1 and "expected fd:N" in r.stderr, r.stderr


def test_failed_migration_leaves_the_source_running(env):
    snap = need(env, "snap_b")
    sock = env["work"] / "keep.sock"
    vm = start(env, restore_cmd(env["vmm"], snap, sock, "--clone", "--clone-dir",
                                env["work"] / "keep"), "keep")
    wait_socket(sock, vm.proc)
    c = Ctl(sock)
    # nobody listens
    r = c.call("migrate", dest=f"127.0.0.1:{free_port()}")
    assert not r["ok"] and "connect" in r["error"]
    # a receiver that reads a little and hangs up
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    r = c.call("migrate", dest=f"127.0.0.1:{srv.getsockname()[1]}")
    assert r["ok"], r
    conn, _ = srv.accept()
    conn.recv(100000)
    conn.close()
    srv.close()
    ev = c.wait_event("migration-failed", timeout=60)
    assert ev["error"]
    before = wait_count(vm, 0, timeout=60)
    wait_count(vm, before + 2, timeout=60)
    assert c.call("status")["result"]["state"] == "running"
    assert c.call("quit")["ok"]
    assert vm.wait(60) == 0


def test_bad_control_requests(env):
    snap = need(env, "snap_b")
    sock = env["work"] / "bad.sock"
    vm = start(env, restore_cmd(env["vmm"], snap, sock, "--clone", "--clone-dir",
                                env["work"] / "bad"), "badreq")
    wait_socket(sock, vm.proc)
    c = Ctl(sock)
    c.send_raw(b"{not json\n")
    r = c.reply()
    assert not r["ok"] and "malformed JSON" in r["error"]
    c.send_raw(b"[1, 2]\n")
    assert "JSON object" in c.reply()["error"]
    r = c.call("frobnicate")
    assert not r["ok"] and "unknown command" in r["error"]
    c.send_raw(b'{"id": 7}\n')
    r = c.reply()
    assert not r["ok"] and r["id"] == 7 and "command" in r["error"]
    r = c.call("snapshot")
    assert not r["ok"] and "dir" in r["error"]
    r = c.call("snapshot", dir=12)
    assert not r["ok"]
    c.send_raw(b'{"command": "status", "pad": "' + b"x" * 200000 + b'"}\n')
    r = c.reply()
    assert not r["ok"] and "longer than" in r["error"]
    # the VM and the connection are unaffected
    r = c.call("status", id="after")
    assert r["ok"] and r["id"] == "after" and r["result"]["state"] == "running"
    before = wait_count(vm, 0, timeout=60)
    wait_count(vm, before + 2, timeout=60)
    r = subprocess.run([env["vmm"], "ctl", str(sock), "status"], stdout=subprocess.PIPE,
                       text=True, timeout=30)
    assert r.returncode == 0 and json.loads(r.stdout)["state"] == "running"
    assert c.call("quit")["ok"]
    assert vm.wait(60) == 0


# Three busy loops keep the other harts running while the counter prints.
SMP_COUNTER = ("for j in 1 2 3; do (while :; do :; done) & done; i=0; while true; do "
               "echo count=$i; i=$((i+1)); sleep 0.2; done")


def test_four_harts_snapshot_restore_and_migrate(env):
    """A 4-hart guest (a host thread per hart) under load: pause stops every hart, a snapshot
    restores and a live migration moves it (onto one host thread) with the counter exact."""
    a = env["assets"]
    sock = env["work"] / "smp.sock"
    cmd = [env["vmm"], "--kernel", a / "Image", "--initrd", a / "initrd.img", "--mem", "256M",
           "--smp", "4", "--api-sock", sock,
           "--append", f'console=ttyS0 quiet vessel.cmd="{SMP_COUNTER}"']
    vm = start(env, cmd, "smp4")
    wait_count(vm, 3)
    ctl = Ctl(sock)
    harts = ctl.call("info")["result"]["harts"]
    assert [h["state"] for h in harts] == ["started"] * 4, harts
    assert ctl.call("pause")["ok"]
    time.sleep(0.5)
    last = counts(vm.output)[-1]
    ticks = cpu_ticks(vm.proc.pid)
    time.sleep(2)
    assert counts(vm.output)[-1] == last, "the counter moved while paused"
    assert cpu_ticks(vm.proc.pid) - ticks <= 5, "a paused 4-hart VM used CPU"
    assert ctl.call("resume")["ok"]
    wait_count(vm, last + 3)
    snap = env["work"] / "snap-smp"
    assert ctl.call("snapshot", dir=str(snap), quit=True)["ok"]
    assert vm.wait(60) == 0
    ctl.close()
    last = counts(vm.output)[-1]

    src_sock = env["work"] / "smp-restored.sock"
    src = start(env, restore_cmd(env["vmm"], snap, src_sock), "smp4-restored")
    wait_socket(src_sock, src.proc)
    wait_count(src, last + 3, timeout=120)
    assert_consecutive(counts_across(vm, src), "4-hart console across the snapshot")

    dst_sock = env["work"] / "smp-dest.sock"
    port = free_port()
    # the destination runs the harts on one thread: the state does not depend on it
    dst = start(env, [env["vmm"], "--incoming", f"127.0.0.1:{port}", "--api-sock", dst_sock,
                      "--hart-threads", "off"], "smp4-dest")
    wait_listening(port, dst.proc)
    r = subprocess.run([env["vmm"], "ctl", str(src_sock), "migrate", f"127.0.0.1:{port}"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout).get("event") == "migration-completed", r.stdout
    assert src.wait(60) == 0
    wait_socket(dst_sock, dst.proc)
    wait_count(dst, counts(src.output)[-1] + 3, timeout=120)
    assert_consecutive(counts_across(src, dst), "4-hart console across migration")
    d = Ctl(dst_sock)
    assert [h["state"] for h in d.call("info")["result"]["harts"]] == ["started"] * 4
    assert d.call("quit")["ok"]
    assert dst.wait(60) == 0
