"""`vessel vm image build`: the default VM image, Debian trixie riscv64 built from Debian's own
packages (scripts/build-vm-image: debootstrap's first stage on the host, its second stage inside
vessel-vmm), stored in vesseld's VM image store as vessel/debian:trixie. A VM made from it on a
user network gets its address by DHCP (systemd-networkd), answers ping and SSH from a container
on the network, and root logs in by SSH with the builder's key and finds apt and dpkg at work.

The image is built once per machine and cached ($VESSEL_CACHE/vm-image, keyed by its recipe):
the first run of this module pays the build (see docs/guest.md for its cost), later runs reuse
it. vesseld runs in a network namespace this test makes (test_daemon_net's world); the VM, the
container and the network are removed through the API at the end, and the namespaces with them.
"""
import os
import pathlib
import signal
import subprocess
import time

import pytest

import test_daemon
from test_daemon_net import image_tar, vd, vdn, vm_api, world  # noqa: F401 (fixtures)
from test_net import run

TOP = pathlib.Path(__file__).resolve().parents[2]
IMAGE = "vessel/debian:trixie"
FULL = "docker.io/" + IMAGE
BUILD_TIMEOUT = 3 * 3600  # the first build on a loaded 2-core machine; a cached one takes seconds
BOOT_TIMEOUT = 900

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="vesseld and the image builder run as root"),
    pytest.mark.skipif(not os.path.exists(test_daemon.DOCKER), reason="no docker CLI"),
]


def cache_dir():
    c = os.environ.get("VESSEL_CACHE")
    return pathlib.Path(c) if c else pathlib.Path.home() / ".cache/vessel"


def vessel(d, build_dir, *args, check=True, timeout=600):
    r = subprocess.run([str(build_dir / "vessel"), "-H", d.host, "vm", *args],
                       capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(f"vessel vm {' '.join(args)}: rc {r.returncode}\n{r.stdout}"
                             f"{r.stderr}\n--- vesseld:\n{d.log_text()[-3000:]}")
    return r


def wait_for(what, fn, timeout):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {last!r})")


def ssh(ns, key, ip, command, check=True):
    r = run("ssh", "-i", key, "-o", "StrictHostKeyChecking=no", "-o",
            "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o", "ConnectTimeout=20",
            "-o", "LogLevel=ERROR", f"root@{ip}", command, ns=ns, check=False, timeout=300)
    assert not check or r.returncode == 0, (command, r.returncode, r.stdout, r.stderr)
    return r


def test_import_refuses_bad_input(vdn, tmp_path):
    """The import endpoint (what `vm image build` stores through) checks what it is given."""
    d = vdn
    kernel = tmp_path / "kernel"
    kernel.write_bytes(b"not much of a kernel")
    raw = tmp_path / "disk.raw"
    raw.write_bytes(bytes(65536))
    base = tmp_path / "base.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(base), "1M"], check=True)
    overlay = tmp_path / "overlay.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(base), "-F", "qcow2",
                    str(overlay)], check=True)
    path = "/vessel/v1/images/vm/import"
    bad = [
        ({"Kernel": str(kernel)}, 400, "Ref"),
        ({"Ref": "x/y:z"}, 400, "Kernel"),
        ({"Ref": "x/y:z", "Kernel": "kernel"}, 400, "absolute path"),
        ({"Ref": "x/y:z", "Kernel": str(tmp_path / "nothing")}, 404, "nothing"),
        ({"Ref": "x/y:z", "Kernel": str(tmp_path)}, 400, "not a regular file"),
        ({"Ref": "x/y:z", "Kernel": str(kernel), "Disk": str(raw)}, 400, "not a qcow2"),
        ({"Ref": "x/y:z", "Kernel": str(kernel), "Disk": str(overlay)}, 400, "backing file"),
        ({"Ref": "x/y:z", "Kernel": str(kernel), "Cpus": 9}, 400, "1 to 8"),
        ({"Ref": "x/y:z", "Kernel": str(kernel), "Memory": "1K"}, 400, "16 MiB"),
        ({"Ref": "x/y:z", "Kernel": str(kernel), "Colour": "red"}, 400, "unknown field Colour"),
        ({"Ref": "Bad Ref", "Kernel": str(kernel)}, 400, "reference"),
    ]
    for body, status, words in bad:
        r = vm_api(d, "POST", path, body, expect=status)
        assert words in r["message"], (body, r)
    assert vm_api(d, "GET", "/vessel/v1/images/vm", expect=200) == []
    # a good one, then pushing needs an image that is there
    r = vm_api(d, "POST", path, {"Ref": "x/y:z", "Kernel": str(kernel), "Disk": str(base),
                                 "Memory": "64M", "Append": "console=ttyS0 quiet"}, expect=201)
    assert r["Ref"] == "docker.io/x/y:z" and r["Digest"].startswith("sha256:")
    assert vm_api(d, "GET", "/vessel/v1/images/vm", expect=200) == [r]
    r = vm_api(d, "POST", "/vessel/v1/images/vm/push", {"Image": "x/nothing", "Ref": "x/n:1"},
               expect=404)
    r = vm_api(d, "POST", "/vessel/v1/images/vm/push", {"Ref": "x/n:1"}, expect=400)
    assert "either a Vm" in r["message"], r


def test_default_image_boots_debian_with_dhcp_and_ssh(vdn, build_dir, tmp_path):
    d, w = vdn, vdn.world
    env = dict(os.environ, VESSEL_CACHE=str(cache_dir()))
    t0 = time.monotonic()
    r = subprocess.run([str(build_dir / "vessel"), "-H", d.host, "vm", "image", "build"],
                       capture_output=True, text=True, timeout=BUILD_TIMEOUT, env=env)
    assert r.returncode == 0, (r.stdout, r.stderr[-4000:])
    print(f"vessel vm image build: {time.monotonic() - t0:.1f} s\n{r.stderr[-1500:]}")
    assert r.stdout.startswith(f"{FULL}: digest: sha256:"), r.stdout
    out = cache_dir() / "vm-image/debian-trixie"
    key = cache_dir() / "vm-image/id_ed25519"
    assert (out / "disk.qcow2").is_file() and key.is_file()
    stamp = (out / "stamp").read_text()
    for p in ("systemd-sysv", "openssh-server", "apt", "dpkg", "udev"):
        assert f"\npackage={p}=" in stamp, p
    images = vm_api(d, "GET", "/vessel/v1/images/vm", expect=200)
    assert FULL in [i["Ref"] for i in images], images
    # a second build of the same recipe is the cache: stored again at once (a new config with
    # its creation time, the same blobs)
    r2 = vessel(d, build_dir, "image", "build", timeout=600)
    assert r2.stdout.startswith(f"{FULL}: digest: sha256:"), r2.stdout
    assert "cached image of this recipe" in r2.stderr, r2.stderr

    d.docker("network", "create", "--subnet", "10.49.0.0/24", "debnet")
    d.docker("run", "-d", "--name", "peer", "--network", "debnet", "busybox", "sleep", "100000")
    pid = 0
    try:
        vessel(d, build_dir, "create", "web", "--image", IMAGE, "--network", "debnet")
        vm = vm_api(d, "GET", "/vessel/v1/vms/web", expect=200)
        assert vm["Config"]["Memory"] == 512 << 20 and "root=/dev/vda" in vm["Config"]["Append"]
        ip = vm["NetworkSettings"]["IPAddress"]
        assert ip.startswith("10.49.0."), vm["NetworkSettings"]
        vessel(d, build_dir, "start", "web")
        pid = vm_api(d, "GET", "/vessel/v1/vms/web")["State"]["Pid"]

        # sshd answers once the guest has its address (DHCP) and its host keys
        def banner():
            r = d.docker("exec", "peer", "sh", "-c", f"echo | nc -w 10 {ip} 22", check=False)
            return r.stdout if r.stdout.startswith("SSH-2.0-OpenSSH") else None
        print("banner:", wait_for("the SSH banner from the VM", banner, BOOT_TIMEOUT).strip())
        r = d.docker("exec", "peer", "ping", "-c", "2", "-W", "10", ip, check=False)
        assert r.returncode == 0 and "2 packets received" in r.stdout, r.stdout + r.stderr

        out = ssh(w.host, key, ip, "apt --version && dpkg -l openssh-server systemd | tail -n2 "
                  "&& ip -4 -o addr show && hostname && cat /etc/debian_version && "
                  "ps -o comm= -p 1 && cat /etc/machine-id").stdout
        print(out)
        assert out.startswith("apt 3."), out
        assert "\nii  openssh-server " in out and "\nii  systemd " in out, out
        # the address is the DHCP lease's (dynamic), the one vesseld reserved for the VM
        assert f"inet {ip}/24" in out and "dynamic" in out, out
        assert "\ndebian\n" in out and "\n13." in out and "\nsystemd\n" in out, out
        machine_id = out.strip().splitlines()[-1]
        assert len(machine_id) == 32 and machine_id != "0" * 32, out
        # the host keys are this VM's own, made at its first boot
        r = ssh(w.host, key, ip, "ls /etc/ssh/ && systemctl is-active ssh systemd-networkd")
        assert "ssh_host_ed25519_key" in r.stdout and "active\nactive" in r.stdout, r.stdout
        # the serial console has a login on it (root, logged in)
        logs = vessel(d, build_dir, "logs", "web").stdout
        assert "Debian GNU/Linux 13" in logs, logs[-2000:]

        # the power button: systemd-logind powers the machine off
        vessel(d, build_dir, "stop", "-t", "300", "web", timeout=900)
        vm = vm_api(d, "GET", "/vessel/v1/vms/web", expect=200)
        assert vm["State"]["Status"] == "stopped" and vm["State"]["ExitCode"] == 0, vm["State"]
    finally:
        vessel(d, build_dir, "rm", "-f", "web", check=False)
        if pid:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    assert vm_api(d, "GET", "/vessel/v1/vms", expect=200) == []
