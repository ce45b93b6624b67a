"""KVM inside the VM: the harts offer the hypervisor extension (H), so Debian's kernel in the guest
loads kvm.ko, which finds H ("hypervisor extension available") and creates /dev/kvm; then a small
KVM program (tests/guest/kvm_mmio.c) makes a VM whose code stores to an MMIO address and sees the
KVM_EXIT_MMIO it expects. Under the built-in SBI and under OpenSBI, and with --cpu rv64,h=off
kvm.ko refuses to load.

The default initramfs does not ship kvm.ko: the test takes it from the kernel package that
scripts/fetch-guest downloaded (in its apt cache) and appends a second cpio archive with it and
the program to the default initramfs (the kernel unpacks concatenated archives in order)."""
import gzip
import pathlib
import subprocess

import pytest

MARK_OK = "KVM-MMIO-OK"


def _kernel_package(guest_assets):
    kver = (guest_assets / "kernel-version").read_text().strip()
    debs = sorted((guest_assets.parent / "apt" / "archives").glob(f"linux-image-{kver}_*.deb"))
    if not debs:
        pytest.skip(f"the package of kernel {kver} is not in fetch-guest's apt cache")
    return kver, debs[-1]


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
    kver, deb = _kernel_package(guest_assets)
    work = tmp_path_factory.mktemp("kvm")
    tar = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], check=True,
                         capture_output=True).stdout
    rel = f"usr/lib/modules/{kver}/kernel/arch/riscv/kvm/kvm.ko.xz"
    subprocess.run(["tar", "-x", "-C", str(work), f"./{rel}"], input=tar, check=True)
    ko = subprocess.run(["xz", "-dc", str(work / rel)], check=True, capture_output=True).stdout
    moddir = f"lib/modules/{kver}"
    extra = _cpio_newc([
        ("lib", 0o40755, None), ("lib/modules", 0o40755, None), (moddir, 0o40755, None),
        (f"{moddir}/kvm.ko", 0o100644, ko),
        ("bin", 0o40755, None), ("bin/kvm_mmio", 0o100755, prog.read_bytes()),
    ])
    initrd = work / "initrd-kvm.img"
    initrd.write_bytes((guest_assets / "initrd.img").read_bytes() + gzip.compress(extra))
    return kver, initrd


def _boot(build_dir, guest_assets, initrd, kver, *extra):
    cmd = f"insmod /lib/modules/{kver}/kvm.ko && /bin/kvm_mmio; dmesg | grep kvm"
    return subprocess.run(
        [str(build_dir / "vessel-vmm"), "--kernel", str(guest_assets / "Image"),
         "--initrd", str(initrd), "--mem", "512M", *extra,
         "--append", f'console=ttyS0 vessel.cmd="{cmd}"'],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace", timeout=900)


@pytest.mark.parametrize("bios", ["builtin", "opensbi"])
@pytest.mark.parametrize("accel", ["jit", "interp"])
def test_guest_kvm_runs_a_vm_to_an_mmio_exit(build_dir, guest_assets, kvm_initrd, bios, accel):
    kver, initrd = kvm_initrd
    fw = [] if bios == "builtin" else ["--bios", str(guest_assets / "fw_dynamic.bin")]
    r = _boot(build_dir, guest_assets, initrd, kver, "--accel", accel, *fw)
    out = r.stdout
    assert "kvm [" in out and "hypervisor extension available" in out, out[-3000:]
    assert ("KVM_EXIT_MMIO phys_addr=0x0000000010000000 len=0x0000000000000004 "
            "is_write=0x0000000000000001 data=0x0000000000000042") in out, out[-3000:]
    assert MARK_OK in out, out[-3000:]
    assert r.returncode == 0, r.stderr[-2000:]


def test_without_h_the_guest_has_no_kvm(build_dir, guest_assets, kvm_initrd):
    kver, initrd = kvm_initrd
    r = _boot(build_dir, guest_assets, initrd, kver, "--cpu", "rv64,h=off")
    assert "hypervisor extension available" not in r.stdout
    assert MARK_OK not in r.stdout
    assert "insmod" in r.stdout or "kvm" in r.stdout, r.stdout[-3000:]
