"""scripts/build-rootfs: an ext4 root disk built without root rights, raw and qcow2, that the
default guest switches to with root=/dev/vda, with DHCP on eth0 and files that survive a reboot."""
import os
import pathlib
import shutil
import subprocess
import tempfile
import uuid

import pytest

from guestconsole import INIT_FIRST_LINE, PROMPT, GuestConsole, qemu_command

NOBODY = 65534


def build_rootfs(top, guest_assets, outdir, as_nobody):
    cmd = ["bash", str(top / "scripts/build-rootfs"), "--guest", str(guest_assets), "-o",
           str(outdir), "--size", "128M"]
    if as_nobody:
        cmd = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"] + cmd
    env = dict(os.environ, HOME=str(outdir))
    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env=env, timeout=600)


@pytest.fixture(scope="module")
def rootfs(top, guest_assets):
    """The images. When the tests run as root they are built as user nobody, from world-readable
    copies of the scripts and guest assets."""
    base = pathlib.Path(tempfile.mkdtemp(prefix="vessel-rootfs-"))
    try:
        outdir = base / "out"
        if os.geteuid() == 0:
            guest, src = base / "guest", base / "src"
            shutil.copytree(guest_assets, guest)
            shutil.copytree(top / "scripts", src / "scripts")
            subprocess.run(["chmod", "-R", "a+rX", str(base)], check=True)
            outdir.mkdir()
            os.chown(outdir, NOBODY, NOBODY)
            r = build_rootfs(src, guest, outdir, as_nobody=True)
        else:
            r = build_rootfs(top, guest_assets, outdir, as_nobody=False)
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip().splitlines()[-1] == str(outdir)
        yield outdir
    finally:
        shutil.rmtree(base)


def test_images_are_ext4_owned_by_root_and_clean(rootfs):
    raw, qcow2 = rootfs / "rootfs.img", rootfs / "rootfs.qcow2"
    subprocess.run(["e2fsck", "-fn", str(raw)], check=True, stdout=subprocess.PIPE)
    out = subprocess.run(["debugfs", "-R", "ls -l /bin", str(raw)], check=True, text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL).stdout
    entries = [line.split() for line in out.splitlines() if line.split()]
    assert any(e[-1] == "busybox" for e in entries)
    for e in entries:  # inode, mode, (links), uid, gid, ...
        assert e[3] == "0" and e[4] == "0", f"not owned by root: {e}"
    info = subprocess.run(["qemu-img", "info", str(qcow2)], check=True, text=True,
                          stdout=subprocess.PIPE).stdout
    assert "file format: qcow2" in info
    subprocess.run(["qemu-img", "check", str(qcow2)], check=True, stdout=subprocess.PIPE)
    subprocess.run(["qemu-img", "compare", "-f", "raw", "-F", "qcow2", str(raw), str(qcow2)],
                   check=True, stdout=subprocess.PIPE)


def test_bad_size_fails_clearly(top, tmp_path):
    r = subprocess.run(["bash", str(top / "scripts/build-rootfs"), "--size", "lots", "-o",
                        str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert r.returncode != 0 and "--size" in r.stderr


def test_missing_guest_assets_fail_clearly(top, tmp_path):
    r = subprocess.run(["bash", str(top / "scripts/build-rootfs"), "--guest", str(tmp_path), "-o",
                        str(tmp_path / "out")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True)
    assert r.returncode != 0 and "no guest assets" in r.stderr


@pytest.mark.parametrize("fmt", ["raw", "qcow2"])
def test_root_disk_boots_and_keeps_files(guest_assets, rootfs, tmp_path, fmt):
    disk = tmp_path / f"disk.{fmt}"
    shutil.copy(rootfs / ("rootfs.img" if fmt == "raw" else "rootfs.qcow2"), disk)
    token = uuid.uuid4().hex
    cmd = qemu_command(guest_assets, append="console=ttyS0 root=/dev/vda", disk=disk,
                       disk_format=fmt, net=True)

    with GuestConsole(cmd, log_path=tmp_path / "boot1.log") as vm:
        vm.expect(INIT_FIRST_LINE)
        vm.expect("vessel-init: switching to root /dev/vda")
        vm.expect("udhcpc: eth0 10.0.2.15/24 router 10.0.2.2")  # QEMU's user-mode network
        vm.expect(PROMPT)
        out = vm.run("grep ' / ' /proc/mounts")
        assert "/dev/vda / ext4 rw" in out, out
        vm.run(f"echo {token} > /root/persist")
        # A clean power-off through busybox init: unmounts (remounts / read-only) first.
        vm.sendline("poweroff")
        assert vm.wait(300) == 0

    with GuestConsole(cmd, log_path=tmp_path / "boot2.log") as vm:
        vm.expect(PROMPT)
        vm.sendline("cat /root/persist")
        vm.expect(token)
        vm.expect(PROMPT)
        vm.sendline("poweroff -f")
        assert vm.wait(120) == 0
    if fmt == "qcow2":
        subprocess.run(["qemu-img", "check", str(disk)], check=True, stdout=subprocess.PIPE)
    else:
        subprocess.run(["e2fsck", "-fn", str(disk)], check=True, stdout=subprocess.PIPE)
