"""scripts/fetch-guest: Debian's riscv64 kernel, busybox and OpenSBI, the default initramfs, the
cache (offline, corrupt, interrupted), bad input, and a boot of the result in QEMU."""
import gzip
import hashlib
import os
import pathlib
import re
import shutil
import signal
import subprocess
import time

import pytest

from guestconsole import INIT_FIRST_LINE, PROMPT, GuestConsole, qemu_command

OPENSBI = pathlib.Path("/usr/lib/riscv64-linux-gnu/opensbi/generic")
EXPECTED_MODULES = ["virtio_mmio", "virtio_blk", "failover", "net_failover", "virtio_net", "crc16",
                    "mbcache", "jbd2", "crc32c_generic", "ext4", "virtio_rng",
                    "virtio_input", "evdev", "virtio_balloon"]
EM_RISCV = 243


def fetch_guest(top, cache=None, offline=False, env_extra=None, timeout=1800):
    """Runs scripts/fetch-guest; offline puts it in a new network namespace without any network."""
    env = dict(os.environ)
    if cache is not None:
        env["VESSEL_CACHE"] = str(cache)
    env.update(env_extra or {})
    cmd = ["bash", str(top / "scripts/fetch-guest")]
    if offline:
        cmd = ["unshare", "--net", "--"] + cmd
    return subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          timeout=timeout)


def can_unshare_net():
    return subprocess.run(["unshare", "--net", "true"], stderr=subprocess.DEVNULL).returncode == 0


needs_unshare = pytest.mark.skipif(not can_unshare_net(),
                                   reason="cannot create a network namespace (unshare --net)")


def read_newc(data):
    """Parses a newc cpio archive: {name: (mode, uid, gid, body)}."""
    entries = {}
    off = 0
    while True:
        hdr = data[off:off + 110]
        assert hdr[:6] == b"070701", f"bad cpio magic at {off}"
        f = [int(hdr[6 + 8 * i:14 + 8 * i], 16) for i in range(13)]
        mode, uid, gid, size, namesize = f[1], f[2], f[3], f[6], f[11]
        name = data[off + 110:off + 110 + namesize - 1].decode()
        off = (off + 110 + namesize + 3) & ~3
        body = data[off:off + size]
        off = (off + size + 3) & ~3
        if name == "TRAILER!!!":
            return entries
        entries[name] = (mode, uid, gid, body)


def sha256(path):
    return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


@pytest.fixture
def cache_copy(tmp_path, guest_assets):
    """A private VESSEL_CACHE holding a copy of the real cache, so tests can break it without
    disturbing others. The packages are hard-linked (fetch-guest never writes a .deb in place);
    everything else is copied."""
    real = guest_assets.parent
    cache = tmp_path / "cache"
    cache.mkdir()
    shutil.copytree(real / "guest", cache / "guest", symlinks=True)

    def copy_or_link(src, dst):
        if src.endswith(".deb"):
            os.link(src, dst)
        else:
            shutil.copy2(src, dst)

    shutil.copytree(real / "apt", cache / "apt", symlinks=True, copy_function=copy_or_link,
                    ignore=shutil.ignore_patterns("lock", "partial"))
    return cache


def test_assets_are_sane(guest_assets):
    image = (guest_assets / "Image").read_bytes()
    assert image[0x30:0x35] == b"RISCV", "no RISC-V Image magic at 0x30"
    assert image[0x38:0x3c] == b"RSC\x05", "no RISC-V Image magic2 at 0x38"
    assert image[:2] == b"MZ", "Debian's Image carries a PE header"

    kver = (guest_assets / "kernel-version").read_text().strip()
    assert re.fullmatch(r"\d+\.\d+\.\d+\S*-riscv64", kver), kver
    stamp = dict(line.split("=", 1) for line in (guest_assets / "stamp").read_text().splitlines())
    assert stamp["kernel_version"] == kver
    assert stamp["kernel_package"] == f"linux-image-{kver}"
    assert stamp["suite"] == "trixie"

    for fw in ("fw_dynamic.bin", "fw_jump.bin"):
        assert sha256(guest_assets / fw) == sha256(OPENSBI / fw), f"{fw} is not Debian's OpenSBI"

    raw = (guest_assets / "initrd.img").read_bytes()
    assert raw[:2] == b"\x1f\x8b", "initrd.img is not gzip'd"
    cpio = read_newc(gzip.decompress(raw))
    assert "init" in cpio and cpio["init"][0] & 0o111, "no executable /init"
    assert cpio["init"][3].startswith(b"#!/bin/sh")
    bb = cpio["bin/busybox"]
    assert bb[3][:4] == b"\x7fELF" and int.from_bytes(bb[3][18:20], "little") == EM_RISCV
    for applet in ("sh", "mount", "switch_root", "udhcpc", "insmod", "modprobe", "cttyhack",
                   "init"):
        mode, _, _, target = cpio[f"bin/{applet}"]
        assert mode & 0o170000 == 0o120000 and target == b"busybox", applet
    assert all(uid == 0 and gid == 0 for _, uid, gid, _ in cpio.values()), "not all root-owned"
    assert cpio["dev"][0] & 0o170000 == 0o040000

    order = cpio[f"lib/modules/{kver}/vessel-load-order"][3].decode().split()
    names = [pathlib.Path(p).stem.replace("-", "_") for p in order]
    assert names == EXPECTED_MODULES
    for rel in order:
        body = cpio[f"lib/modules/{kver}/{rel}"][3]
        assert body[:4] == b"\x7fELF", f"{rel} is not a decompressed ELF module"
        assert int.from_bytes(body[18:20], "little") == EM_RISCV
        assert (guest_assets / "modules" / rel).read_bytes() == body
    # Dependencies come before their users, as modules.dep says.
    dep = {}
    for line in (guest_assets / "modules/modules.dep").read_text().splitlines():
        mod, _, deps = line.partition(":")
        dep[mod] = deps.split()
    for i, rel in enumerate(order):
        for d in dep[rel]:
            assert order.index(d) < i, f"{rel} loaded before its dependency {d}"
    # kvm is shipped for `modprobe kvm` but not loaded at boot (it needs the H extension).
    kvm = "kernel/arch/riscv/kvm/kvm.ko"
    assert cpio[f"lib/modules/{kver}/{kvm}"][3][:4] == b"\x7fELF" and kvm in dep
    assert kvm not in order


@needs_unshare
def test_second_run_is_cached_and_works_offline(top, guest_assets):
    before = (guest_assets / "Image").stat()
    r = fetch_guest(top, offline=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == str(guest_assets)
    assert "building" not in r.stderr and "apt-get" not in r.stderr, r.stderr
    after = (guest_assets / "Image").stat()
    assert (before.st_ino, before.st_mtime_ns) == (after.st_ino, after.st_mtime_ns), "rebuilt"


@needs_unshare
@pytest.mark.parametrize("damage", ["corrupt-image", "wrong-stamp", "missing-initrd"])
def test_broken_cache_is_rebuilt_offline(top, cache_copy, damage):
    guest = cache_copy / "guest"
    good_image = sha256(guest / "Image")
    if damage == "corrupt-image":
        with open(guest / "Image", "r+b") as f:
            f.seek(4096)
            f.write(b"\xde\xad\xbe\xef")
    elif damage == "wrong-stamp":
        stamp = (guest / "stamp").read_text()
        (guest / "stamp").write_text(re.sub(r"recipe=\w+", "recipe=0", stamp))
    else:
        (guest / "initrd.img").unlink()
    r = fetch_guest(top, cache=cache_copy, offline=True)
    assert r.returncode == 0, r.stderr
    assert "not usable" in r.stderr and "rebuilding" in r.stderr, r.stderr
    assert sha256(guest / "Image") == good_image
    assert (guest / "initrd.img").is_file()
    subprocess.run(["sha256sum", "--quiet", "-c", "SHA256SUMS"], cwd=guest, check=True)


@needs_unshare
@pytest.mark.parametrize("lists", ["kept", "removed"])
def test_broken_cache_without_packages_offline_fails_clearly(top, cache_copy, lists):
    """Whatever apt state the cache holds (the lists of the last update, or none), the diagnosis
    is apt's own: no network, with the error apt gave."""
    (cache_copy / "guest/initrd.img").write_bytes(b"garbage")
    for deb in (cache_copy / "apt/archives").glob("*.deb"):
        deb.unlink()
    apt_lists = cache_copy / "apt/lists"
    if lists == "removed":
        for f in apt_lists.glob("*_Packages*"):
            f.unlink()
    r = fetch_guest(top, cache=cache_copy, offline=True)
    assert r.returncode != 0
    assert "fetch-guest: error:" in r.stderr and "no network: " in r.stderr, r.stderr
    # apt's own words follow: the name it could not resolve or the connection it could not make.
    cause = r.stderr.split("no network: ", 1)[1]
    assert re.match(r"(.*(resolv|connect|unreachable|No route))", cause, re.I), r.stderr
    assert "404" not in cause, r.stderr
    # The broken tree is not fixed up in place, and no partial build is left behind.
    assert (cache_copy / "guest/initrd.img").read_bytes() == b"garbage"
    assert not list(cache_copy.glob("guest.tmp.*")) and not list(cache_copy.glob("work.*"))


@needs_unshare
def test_interrupted_build_is_not_trusted(top, cache_copy):
    (cache_copy / "guest/stamp").unlink()
    env = dict(os.environ, VESSEL_CACHE=str(cache_copy))
    p = subprocess.Popen(["unshare", "--net", "--", "bash", str(top / "scripts/fetch-guest")],
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         start_new_session=True)
    try:
        # Kill it in the middle of building (the packages are being unpacked).
        for line in p.stderr:
            if "building the guest" in line:
                time.sleep(1)
                break
        os.killpg(p.pid, signal.SIGKILL)
    finally:
        p.wait()
    assert not (cache_copy / "guest/stamp").exists()
    r = fetch_guest(top, cache=cache_copy, offline=True)
    assert r.returncode == 0, r.stderr
    assert "rebuilding" in r.stderr
    subprocess.run(["sha256sum", "--quiet", "-c", "SHA256SUMS"], cwd=cache_copy / "guest",
                   check=True)
    assert not list(cache_copy.glob("guest.tmp.*")) and not list(cache_copy.glob("work.*"))


@needs_unshare
def test_no_network_and_empty_cache_fails_clearly(top, tmp_path):
    r = fetch_guest(top, cache=tmp_path / "c", offline=True, timeout=300)
    assert r.returncode != 0
    assert "fetch-guest: error:" in r.stderr and "no network" in r.stderr, r.stderr
    assert r.stdout == ""
    assert not (tmp_path / "c/guest").exists()


def test_unreachable_archive_fails_clearly(top, tmp_path):
    # A loopback port nobody listens on stands in for an unreachable archive.
    r = fetch_guest(top, cache=tmp_path / "c", timeout=300,
                    env_extra={"VESSEL_DEBIAN_URI": "http://127.0.0.1:9/debian"})
    assert r.returncode != 0
    assert "fetch-guest: error:" in r.stderr and "127.0.0.1:9" in r.stderr, r.stderr
    assert "no network: " in r.stderr and "refused" in r.stderr, r.stderr


def test_archive_that_answers_wrongly_is_not_blamed_on_the_network(top, tmp_path):
    """A server that answers every request with 404 is reachable: the error says the archive,
    not the network, is at fault."""
    srv = subprocess.Popen(["python3", "-m", "http.server", "--bind", "127.0.0.1", "0"],
                           cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True)
    try:
        port = int(re.search(r"port (\d+)", srv.stdout.readline()).group(1))
        r = fetch_guest(top, cache=tmp_path / "c", timeout=300,
                        env_extra={"VESSEL_DEBIAN_URI": f"http://127.0.0.1:{port}/debian"})
    finally:
        srv.kill()
        srv.wait()
    assert r.returncode != 0
    assert "fetch-guest: error:" in r.stderr, r.stderr
    assert "no network" not in r.stderr and "the archive answered" in r.stderr, r.stderr
    assert not (tmp_path / "c/guest").exists()


def test_missing_opensbi_fails_clearly(top, tmp_path):
    r = fetch_guest(top, cache=tmp_path / "c", env_extra={"VESSEL_OPENSBI_DIR": str(tmp_path)})
    assert r.returncode != 0
    assert "OpenSBI" in r.stderr and "opensbi package" in r.stderr, r.stderr


def test_bad_argument_fails_clearly(top):
    r = subprocess.run(["bash", str(top / "scripts/fetch-guest"), "--bogus"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert r.returncode != 0 and "unknown argument" in r.stderr


def test_no_host_name_in_guest_scripts(top):
    """The archive address comes from the machine's apt sources, never from our files."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=top, stdout=subprocess.PIPE,
                           check=True).stdout.decode().split("\0")
    mirror_host = re.compile(r"\b[\w-]+\.(?:debian|ubuntu)\.(?:org|net|com)\b", re.I)
    any_url = re.compile(r"\b(?:https?|ftp)://(?!127\.0\.0\.1|localhost|\[::1\])[\w.-]+", re.I)
    ours = ("scripts/fetch-guest", "scripts/build-rootfs", "scripts/demo", "scripts/guest/",
            "tests/integration/test_fetch_guest.py", "tests/integration/test_rootfs.py",
            "tests/integration/guestconsole.py")
    for f in filter(None, files):
        path = top / f
        if not path.is_file():
            continue
        text = path.read_text(errors="replace")
        assert not mirror_host.search(text), f"{f} names a Debian/Ubuntu host"
        if f.startswith(ours):
            assert not any_url.search(text), f"{f} contains a URL with a host name"


def test_default_guest_boots_in_qemu(guest_assets, tmp_path):
    with GuestConsole(qemu_command(guest_assets), log_path=tmp_path / "console.log") as vm:
        vm.expect(INIT_FIRST_LINE)
        vm.expect(PROMPT)
        vm.sendline("echo $((6*7))")
        vm.expect("\n42")
        vm.expect(PROMPT)
        out = vm.run("lsmod")
        for m in EXPECTED_MODULES:
            assert m in out, f"module {m} not loaded:\n{out}"
        vm.sendline("poweroff -f")
        assert vm.wait(120) == 0


def test_vessel_cmd_runs_and_powers_off(guest_assets, tmp_path):
    append = 'console=ttyS0 vessel.cmd="uname -m; echo answer-$((6*7))"'
    with GuestConsole(qemu_command(guest_assets, append=append),
                      log_path=tmp_path / "console.log") as vm:
        vm.expect("vessel-init: running: uname -m")
        vm.expect("riscv64")
        vm.expect("answer-42")
        vm.expect("vessel-init: command exited with status 0")
        assert vm.wait(300) == 0
