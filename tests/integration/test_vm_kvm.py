"""KVM inside the VM: the harts offer the hypervisor extension (H), so Debian's kernel in the guest
loads kvm.ko, which finds H ("hypervisor extension available") and creates /dev/kvm; then a small
KVM program (tests/guest/kvm_mmio.c) makes a VM whose code stores to an MMIO address and sees the
KVM_EXIT_MMIO it expects. Under the built-in SBI and under OpenSBI, and with --cpu rv64,h=off
kvm.ko refuses to load.

The default initramfs ships kvm.ko without loading it at boot (scripts/fetch-guest), so the test
runs `modprobe kvm`; it appends a second cpio archive with the program to the default initramfs
(the kernel unpacks concatenated archives in order).

The nested boot: the disk of scripts/fetch-nested holds trixie's riscv64 qemu-system-riscv; the
guest mounts it and its /nested/run boots the same kernel and initramfs with -accel kvm, whose
init prints NESTED-INIT-OK (40–110 s on the loaded 2-core host; bench/vm-nested measures it)."""
import gzip
import pathlib
import re
import subprocess

import pytest

MARK_OK = "KVM-MMIO-OK"


def _cpio_newc(entries):
    """A newc cpio archive of (path, mode, data) entries (directories have data None)."""
    out = bytearray()
    ino = 1

    def add(name, mode, data):
        nonlocal ino
        name_b = name.encode() + b"\0"
        hdr = "070701" + "".join(f"{v:08x}" for v in (
            ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name_b), 0))
        ino += 1
        out.extend(hdr.encode() + name_b)
        out.extend(b"\0" * (-len(out) % 4))
        out.extend(data)
        out.extend(b"\0" * (-len(out) % 4))

    for name, mode, data in entries:
        add(name, mode, data if data is not None else b"")
    add("TRAILER!!!", 0, b"")
    return bytes(out)


@pytest.fixture(scope="module")
def kvm_initrd(build_dir, guest_assets, tmp_path_factory):
    prog = build_dir / "tests" / "unit" / "kvm_mmio"
    if not prog.is_file():
        pytest.skip(f"{prog} not built (riscv64-linux-gnu-gcc missing?)")
    extra = _cpio_newc([("bin", 0o40755, None), ("bin/kvm_mmio", 0o100755, prog.read_bytes())])
    initrd = tmp_path_factory.mktemp("kvm") / "initrd-kvm.img"
    initrd.write_bytes((guest_assets / "initrd.img").read_bytes() + gzip.compress(extra))
    return initrd


def _boot(build_dir, guest_assets, initrd, *extra):
    cmd = "modprobe kvm && /bin/kvm_mmio; dmesg | grep kvm"
    return subprocess.run(
        [str(build_dir / "vessel-vmm"), "--kernel", str(guest_assets / "Image"),
         "--initrd", str(initrd), "--mem", "512M", *extra,
         "--append", f'console=ttyS0 vessel.cmd="{cmd}"'],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace", timeout=900)


@pytest.mark.parametrize("bios", ["builtin", "opensbi"])
@pytest.mark.parametrize("accel", ["jit", "interp"])
def test_guest_kvm_runs_a_vm_to_an_mmio_exit(build_dir, guest_assets, kvm_initrd, bios, accel):
    fw = [] if bios == "builtin" else ["--bios", str(guest_assets / "fw_dynamic.bin")]
    r = _boot(build_dir, guest_assets, kvm_initrd, "--accel", accel, *fw)
    out = r.stdout
    assert "kvm [" in out and "hypervisor extension available" in out, out[-3000:]
    assert ("KVM_EXIT_MMIO phys_addr=0x0000000010000000 len=0x0000000000000004 "
            "is_write=0x0000000000000001 data=0x0000000000000042") in out, out[-3000:]
    assert MARK_OK in out, out[-3000:]
    assert r.returncode == 0, r.stderr[-2000:]


def test_without_h_the_guest_has_no_kvm(build_dir, guest_assets, kvm_initrd):
    r = _boot(build_dir, guest_assets, kvm_initrd, "--cpu", "rv64,h=off")
    assert "hypervisor extension available" not in r.stdout
    assert MARK_OK not in r.stdout
    assert "modprobe" in r.stdout or "kvm" in r.stdout, r.stdout[-3000:]


@pytest.fixture(scope="module")
def nested_disk(top):
    out = subprocess.run(["bash", str(top / "scripts/fetch-nested")], check=True,
                         stdout=subprocess.PIPE, text=True).stdout
    return pathlib.Path(out.strip().splitlines()[-1]) / "qemu.img"


def test_guest_qemu_boots_a_nested_linux_with_kvm(build_dir, guest_assets, nested_disk):
    r = subprocess.run(
        [str(build_dir / "vessel-vmm"), "--kernel", str(guest_assets / "Image"),
         "--initrd", str(guest_assets / "initrd.img"), "--mem", "1G",
         "--disk", f"{nested_disk},readonly=on",
         "--append", 'console=ttyS0 vessel.cmd="mount -o ro /dev/vda /mnt && sh /mnt/nested/run"'],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace", timeout=1200)
    out = r.stdout
    nested = out[out.index("nested: starting"):] if "nested: starting" in out else ""
    # The nested kernel's own banner and init, then its marker on a line of its own.
    assert "Linux version" in nested and "vessel-init: starting" in nested, out[-3000:]
    assert re.search(r"^NESTED-INIT-OK\r*$", nested, re.M), out[-3000:]
    assert "nested: qemu exited (0)" in out, out[-3000:]
    assert r.returncode == 0, r.stderr[-2000:]
