"""vessel-vmm --disk: Debian's kernel boots from an ext4 root disk (scripts/build-rootfs) on
virtio-blk, raw and qcow2; files survive a power-off; a qcow2 overlay takes the writes while its
base stays unchanged; `qemu-img check` is clean afterwards; a read-only disk stays read-only."""
import hashlib
import pathlib
import shutil
import subprocess
import tempfile
import uuid

import pytest

TOP = pathlib.Path(__file__).resolve().parents[2]
if not (TOP / "scripts/build-rootfs").exists() or \
        not (TOP / "tests/integration/guestconsole.py").exists():
    pytest.skip("needs scripts/build-rootfs and guestconsole.py (branch main)",
                allow_module_level=True)

from guestconsole import INIT_FIRST_LINE, PROMPT, GuestConsole  # noqa: E402


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@pytest.fixture(scope="module")
def rootfs(top, guest_assets):
    out = pathlib.Path(tempfile.mkdtemp(prefix="vessel-vmdisk-"))
    try:
        r = subprocess.run(["bash", str(top / "scripts/build-rootfs"), "--guest",
                            str(guest_assets), "-o", str(out), "--size", "128M"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           timeout=600)
        assert r.returncode == 0, r.stderr
        yield out
    finally:
        shutil.rmtree(out)


def vmm_cmd(build_dir, assets, disks, append="console=ttyS0 root=/dev/vda"):
    cmd = [build_dir / "vessel-vmm", "--kernel", assets / "Image", "--initrd",
           assets / "initrd.img", "--mem", "512M", "--append", append]
    for d in disks:
        cmd += ["--disk", d]
    return cmd


def boot_and_write(build_dir, assets, disks, token, log):
    with GuestConsole(vmm_cmd(build_dir, assets, disks), log_path=log) as vm:
        vm.expect(INIT_FIRST_LINE)
        vm.expect("vessel-init: switching to root /dev/vda")
        vm.expect(PROMPT)
        out = vm.run("grep ' / ' /proc/mounts")
        assert "/dev/vda / ext4 rw" in out, out
        vm.run(f"echo {token} > /root/persist; sync")
        vm.sendline("poweroff")  # busybox init unmounts / remounts read-only first
        assert vm.wait(300) == 0


def boot_and_read(build_dir, assets, disks, token, log):
    with GuestConsole(vmm_cmd(build_dir, assets, disks), log_path=log) as vm:
        vm.expect(PROMPT)
        out = vm.run("cat /root/persist")
        assert token in out, out
        vm.sendline("poweroff")
        assert vm.wait(300) == 0


def test_raw_root_disk_keeps_files(build_dir, guest_assets, rootfs, tmp_path):
    disk = tmp_path / "root.raw"
    shutil.copy(rootfs / "rootfs.img", disk)
    token = uuid.uuid4().hex
    spec = f"{disk},format=raw"
    boot_and_write(build_dir, guest_assets, [spec], token, tmp_path / "boot1.log")
    boot_and_read(build_dir, guest_assets, [spec], token, tmp_path / "boot2.log")
    subprocess.run(["e2fsck", "-fn", str(disk)], check=True, stdout=subprocess.PIPE)


def test_qcow2_overlay_on_qcow2_base(build_dir, guest_assets, rootfs, tmp_path):
    base = tmp_path / "base.qcow2"
    shutil.copy(rootfs / "rootfs.qcow2", base)
    top = tmp_path / "top.qcow2"
    subprocess.run([build_dir / "vessel-vmm", "img", "create", "-f", "qcow2", "-b", base.name,
                    "-F", "qcow2", top], check=True)
    base_sum = sha256(base)
    token = uuid.uuid4().hex
    boot_and_write(build_dir, guest_assets, [str(top)], token, tmp_path / "boot1.log")
    boot_and_read(build_dir, guest_assets, [str(top)], token, tmp_path / "boot2.log")
    assert sha256(base) == base_sum, "the base image changed"
    r = subprocess.run(["qemu-img", "check", str(top)], stdout=subprocess.PIPE, text=True)
    assert r.returncode == 0, r.stdout
    # The overlay holds the new file: QEMU's view of the chain has it.
    raw = tmp_path / "top.raw"
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(top), str(raw)], check=True)
    subprocess.run(["e2fsck", "-fn", str(raw)], check=True, stdout=subprocess.PIPE)
    out = subprocess.run(["debugfs", "-R", "cat /root/persist", str(raw)], check=True,
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True).stdout
    assert token in out


def test_overlay_on_raw_base_and_readonly_disk(build_dir, guest_assets, rootfs, tmp_path):
    base = tmp_path / "base.raw"
    shutil.copy(rootfs / "rootfs.img", base)
    top = tmp_path / "top.qcow2"
    subprocess.run([build_dir / "vessel-vmm", "img", "create", "-f", "qcow2", "-b", base.name,
                    "-F", "raw", top], check=True)
    data = tmp_path / "data.raw"
    data.write_bytes(b"vessel-readonly-disk\n" + bytes((4 << 20) - 21))
    base_sum, data_sum = sha256(base), sha256(data)
    disks = [str(top), f"{data},format=raw,readonly=on,serial=vessel-data"]
    with GuestConsole(vmm_cmd(build_dir, guest_assets, disks),
                      log_path=tmp_path / "boot.log") as vm:
        vm.expect(PROMPT)
        # (the console echoes the command, wrapped: look at the last word of each output)
        assert vm.run("cat /sys/block/vdb/ro").split()[-1] == "1"
        assert vm.run("cat /sys/block/vdb/serial").split()[-1] == "vessel-data"
        assert vm.run("head -c 20 /dev/vdb").split()[-1] == "vessel-readonly-disk"
        out = vm.run("dd if=/dev/zero of=/dev/vdb count=1; echo rc=$?")
        assert "rc=1" in out, out
        assert int(vm.run("cat /sys/block/vda/queue/discard_max_bytes").split()[-1]) > 0
        assert vm.run("cat /sys/block/vda/serial").split()[-1] == "vessel-vda"
        vm.run("dd if=/dev/urandom of=/root/blob bs=1M count=4 2>/dev/null; sync; "
               "fstrim / 2>&1; md5sum /root/blob > /root/blob.md5")
        out = vm.run("md5sum -c /root/blob.md5")
        assert "OK" in out, out
        vm.sendline("poweroff")
        assert vm.wait(300) == 0
    assert sha256(base) == base_sum, "the base image changed"
    assert sha256(data) == data_sum, "the read-only disk changed"
    r = subprocess.run(["qemu-img", "check", str(top)], stdout=subprocess.PIPE, text=True)
    assert r.returncode == 0, r.stdout
