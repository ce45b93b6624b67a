"""qcow2 interoperability with QEMU's own tools (Debian qemu-utils: qemu-img, qemu-io).

Images that qemu-img makes (plain, compressed with zlib and zstd, zero clusters, backing chains)
must read identically through vessel; images that vessel writes must pass `qemu-img check` and read
back identically through `qemu-img convert -O raw`. vessel is driven through `vessel-vmm img`:
`read FILE OUT` dumps the virtual disk, `io --data DATA FILE` applies a script of requests.
"""
import hashlib
import json
import os
import random
import shutil
import struct
import subprocess

import pytest

QEMU_IMG = shutil.which("qemu-img")
QEMU_IO = shutil.which("qemu-io")
pytestmark = pytest.mark.skipif(QEMU_IMG is None, reason="qemu-img (qemu-utils) not installed")


@pytest.fixture(scope="module")
def img(build_dir):
    """argv prefix for `vessel-vmm img`."""
    vmm = build_dir / "vessel-vmm"
    assert vmm.exists(), f"{vmm} is not built"
    return [str(vmm), "img"]


def run(argv, check=True, **kw):
    p = subprocess.run([str(a) for a in argv], capture_output=True, text=True, **kw)
    if check and p.returncode != 0:
        raise AssertionError(f"{argv} failed ({p.returncode}): {p.stderr}")
    return p


def qemu_raw(path, tmp_path):
    out = tmp_path / "qemu.raw"
    run([QEMU_IMG, "convert", "-O", "raw", path, out])
    return out.read_bytes()


def vessel_raw(img, path, tmp_path):
    out = tmp_path / "vessel.raw"
    run(img + ["read", path, out])
    return out.read_bytes()


def qemu_check(path):
    """Returns qemu-img check's exit status: 0 clean, 3 leaked clusters only, 2 corruption."""
    p = run([QEMU_IMG, "check", path], check=False)
    return p.returncode, p.stdout + p.stderr


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


class Script:
    """Random requests for `img io`, mirrored into a shadow copy of the disk."""

    def __init__(self, tmp_path, size, seed, base=None):
        self.rng = random.Random(seed)
        self.size = size
        self.shadow = bytearray(base if base is not None else bytes(size))
        self.data_path = tmp_path / f"data-{seed}"
        self.data = self.rng.randbytes(4 << 20)
        self.data_path.write_bytes(self.data)
        self.lines = []

    def write(self, off, length):
        doff = self.rng.randrange(0, len(self.data) - length)
        self.lines.append(f"write {off} {length} {doff}")
        self.shadow[off:off + length] = self.data[doff:doff + length]

    def zero(self, off, length):
        self.lines.append(f"zero {off} {length}")
        self.shadow[off:off + length] = bytes(length)

    def random(self, count, maxlen=300000, zeros=True):
        for i in range(count):
            length = self.rng.randint(1, min(maxlen, self.size))
            self.write(self.rng.randrange(0, self.size - length + 1), length)
            if zeros and i % 17 == 0:
                length = self.rng.randint(1, min(1 << 20, self.size))
                self.zero(self.rng.randrange(0, self.size - length + 1), length)
            if i % 23 == 0:
                self.lines.append("flush")

    def run(self, img, path, fmt=None, extra=()):
        argv = img + ["io", "--data", self.data_path] + (["-f", fmt] if fmt else []) + [path]
        return run(argv, input="\n".join(list(self.lines) + list(extra)) + "\n")


# ------------------------------------------------------------------ images made by QEMU


@pytest.mark.parametrize("opts", ["cluster_size=65536", "cluster_size=512", "compat=0.10",
                                  "cluster_size=2M", "refcount_bits=1,cluster_size=4096"])
def test_reads_images_written_by_qemu(img, tmp_path, opts):
    path = tmp_path / "q.qcow2"
    run([QEMU_IMG, "create", "-f", "qcow2", "-o", opts, path, "16M"])
    if QEMU_IO:
        cmds = []
        rng = random.Random(opts)
        for _ in range(40):
            off = rng.randrange(0, (16 << 20) - 70000)
            cmds += ["-c", f"write -P {rng.randrange(1, 255)} {off} {rng.randint(1, 70000)}"]
        run([QEMU_IO, "-f", "qcow2"] + cmds + [path])
    assert vessel_raw(img, path, tmp_path) == qemu_raw(path, tmp_path)


@pytest.mark.parametrize("ctype", ["zlib", "zstd"])
def test_reads_compressed_images(img, tmp_path, ctype):
    src = tmp_path / "src.raw"
    rng = random.Random(ctype)
    # compressible and incompressible regions
    src.write_bytes(b"vessel " * 300000 + rng.randbytes(2 << 20) + bytes(1 << 20))
    path = tmp_path / "c.qcow2"
    run([QEMU_IMG, "convert", "-c", "-O", "qcow2", "-o", f"compression_type={ctype}", src, path])
    info = json.loads(run(img + ["info", "--output=json", path]).stdout)
    assert info["compression-type"] == ctype
    assert vessel_raw(img, path, tmp_path)[:src.stat().st_size] == src.read_bytes()


@pytest.mark.skipif(QEMU_IO is None, reason="qemu-io not installed")
def test_reads_zero_clusters(img, tmp_path):
    base = tmp_path / "base.qcow2"
    run([QEMU_IMG, "create", "-f", "qcow2", base, "8M"])
    run([QEMU_IO, "-c", "write -P 0x11 0 8M", base])
    top = tmp_path / "top.qcow2"
    run([QEMU_IMG, "create", "-f", "qcow2", "-b", base.name, "-F", "qcow2", top])
    run([QEMU_IO, "-c", "write -z 64k 256k", "-c", "write -z -u 1M 1M",
         "-c", "write -P 0x22 3M 100k", top])
    data = vessel_raw(img, top, tmp_path)
    assert data == qemu_raw(top, tmp_path)
    assert data[65536:65536 + 262144] == bytes(262144)
    assert data[0:65536] == b"\x11" * 65536


def test_reads_qemu_backing_chain(img, tmp_path):
    prev, prev_fmt = None, None
    for i, fmt in enumerate(["raw", "qcow2", "qcow2", "qcow2"]):
        path = tmp_path / f"layer{i}.{fmt}"
        argv = [QEMU_IMG, "create", "-f", fmt]
        if prev:
            argv += ["-b", prev.name, "-F", prev_fmt]
        run(argv + [path, "12M"])
        if QEMU_IO:
            run([QEMU_IO, "-f", fmt, "-c", f"write -P {0x30 + i} {i * 3}M 1500k", path])
        prev, prev_fmt = path, fmt
    info = json.loads(run(img + ["info", "--output=json", prev]).stdout)
    assert info["backing-chain-depth"] == 3
    assert vessel_raw(img, prev, tmp_path) == qemu_raw(prev, tmp_path)


def test_convert_flattens_a_chain_into_one_qcow2(img, tmp_path):
    """`img convert` writes a chain (raw base, qcow2 overlays written by qemu-io) into one
    standalone qcow2: qemu-img check passes, it has no backing file, its bytes are the chain's,
    and clusters of zeros stay unallocated (the file is far smaller than the disk)."""
    prev, prev_fmt = None, None
    for i, fmt in enumerate(["raw", "qcow2", "qcow2"]):
        path = tmp_path / f"layer{i}.{fmt}"
        argv = [QEMU_IMG, "create", "-f", fmt]
        if prev:
            argv += ["-b", prev.name, "-F", prev_fmt]
        run(argv + [path, "64M"])
        if QEMU_IO:
            run([QEMU_IO, "-f", fmt, "-c", f"write -P {0x41 + i} {i * 5}M 1M", path])
        prev, prev_fmt = path, fmt
    flat = tmp_path / "flat.qcow2"
    run(img + ["convert", "-f", "qcow2", prev, flat])
    assert qemu_check(flat)[0] == 0
    info = json.loads(run([QEMU_IMG, "info", "--output=json", flat]).stdout)
    assert info["format"] == "qcow2" and "backing-filename" not in info
    assert info["virtual-size"] == 64 << 20
    assert qemu_raw(flat, tmp_path) == qemu_raw(prev, tmp_path)
    assert flat.stat().st_size < 16 << 20
    # an existing destination is refused and left as it was
    flat.write_bytes(b"keep")
    r = run(img + ["convert", prev, flat], check=False)
    assert r.returncode != 0 and flat.read_bytes() == b"keep"


# ------------------------------------------------------------------ images written by vessel


@pytest.mark.parametrize("opts", ["", "cluster_size=512", "compat=0.10", "cluster_size=2M",
                                  "refcount_bits=1,cluster_size=4096",
                                  "refcount_bits=64,cluster_size=512"])
def test_vessel_writes_pass_qemu_check(img, tmp_path, opts):
    size = 24 << 20
    path = tmp_path / "v.qcow2"
    run(img + ["create", "-f", "qcow2"] + (["-o", opts] if opts else []) + [path, str(size)])
    s = Script(tmp_path, size, seed=opts)
    s.random(250)
    s.run(img, path)
    rc, out = qemu_check(path)
    assert rc == 0, out
    assert "No errors" in out
    assert qemu_raw(path, tmp_path) == bytes(s.shadow)
    assert vessel_raw(img, path, tmp_path) == bytes(s.shadow)


def test_vessel_image_info_matches_qemu(img, tmp_path):
    path = tmp_path / "i.qcow2"
    run(img + ["create", "-f", "qcow2", "-o", "cluster_size=4096", path, "3G"])
    q = json.loads(run([QEMU_IMG, "info", "--output=json", path]).stdout)
    assert q["format"] == "qcow2"
    assert q["virtual-size"] == 3 << 30
    assert q["cluster-size"] == 4096
    v = json.loads(run(img + ["info", "--output=json", path]).stdout)
    assert v["virtual-size"] == 3 << 30 and v["format"] == "qcow2"


@pytest.mark.parametrize("base_fmt", ["raw", "qcow2"])
def test_overlay_writes_leave_base_unchanged(img, tmp_path, base_fmt):
    size = 16 << 20
    base = tmp_path / f"base.{base_fmt}"
    run(img + ["create", "-f", base_fmt, base, str(size)])
    s = Script(tmp_path, size, seed=1)
    s.random(60, zeros=False)
    s.run(img, base)
    base_content = bytes(s.shadow)
    base_sum = sha256(base)

    top = tmp_path / "top.qcow2"
    run(img + ["create", "-f", "qcow2", "-b", base.name, "-F", base_fmt, top])
    q = json.loads(run([QEMU_IMG, "info", "--output=json", top]).stdout)
    assert q["backing-filename"] == base.name
    assert q["backing-filename-format"] == base_fmt
    assert q["virtual-size"] == size
    assert vessel_raw(img, top, tmp_path) == base_content

    s2 = Script(tmp_path, size, seed=2, base=base_content)
    s2.random(200)
    s2.lines.append(f"discard 0 {1 << 20}")  # advisory: may read as zeros or as the base
    s2.run(img, top)
    assert sha256(base) == base_sum, "the base image changed"
    rc, out = qemu_check(top)
    assert rc == 0, out
    got = qemu_raw(top, tmp_path)
    assert got[1 << 20:] == bytes(s2.shadow)[1 << 20:]
    assert vessel_raw(img, top, tmp_path) == got


def test_writes_over_qemu_compressed_clusters(img, tmp_path):
    src = tmp_path / "src.raw"
    src.write_bytes(random.Random(5).randbytes(1 << 20) * 6)
    path = tmp_path / "c.qcow2"
    run([QEMU_IMG, "convert", "-c", "-O", "qcow2", src, path])
    s = Script(tmp_path, 6 << 20, seed=6, base=src.read_bytes())
    s.random(150, maxlen=100000)
    s.run(img, path)
    rc, out = qemu_check(path)
    assert rc == 0, out
    assert qemu_raw(path, tmp_path) == bytes(s.shadow)


def test_crash_leaves_only_leaked_clusters(img, tmp_path):
    """A VMM killed in the middle of writing: `qemu-img check` may find leaked clusters (exit 3),
    never corruption (exit 2)."""
    size = 32 << 20
    for i, opts in enumerate(["cluster_size=4096", "cluster_size=512", ""]):
        path = tmp_path / f"crash{i}.qcow2"
        run(img + ["create", "-f", "qcow2"] + (["-o", opts] if opts else []) + [path, str(size)])
        s = Script(tmp_path, size, seed=10 + i)
        s.random(120)
        s.run(img, path, extra=["crash"])
        rc, out = qemu_check(path)
        assert rc in (0, 3), out
        assert "ERROR" not in out


# ------------------------------------------------------------------ hostile images


def patched(tmp_path, name, patches, size="16M"):
    path = tmp_path / name
    run([QEMU_IMG, "create", "-f", "qcow2", path, size])
    with open(path, "r+b") as f:
        for off, fmt, value in patches:
            f.seek(off)
            f.write(struct.pack(fmt, value))
    return path


@pytest.mark.parametrize("name,patches,message", [
    ("magic", [(0, ">I", 0x514649FA)], "not a qcow2"),
    ("version", [(4, ">I", 4)], "unsupported qcow2 version 4"),
    ("cluster-bits", [(20, ">I", 31)], "cluster bits 31"),
    ("huge-size", [(24, ">Q", 1 << 62)], "exceeds what the L1 table"),
    ("l1-past-eof", [(40, ">Q", 1 << 45)], "L1 table at"),
    ("refcount-table", [(48, ">Q", 12345)], "refcount table at"),
    ("incompatible-bit", [(72, ">Q", 1 << 40)], "unsupported incompatible feature bit 40"),
    ("refcount-order", [(96, ">I", 7)], "refcount order 7"),
    ("l1-entry-past-eof", [(0x30000, ">Q", (1 << 63) | (1 << 40))], "points past the end"),
    ("l1-entry-into-header", [(0x30000, ">Q", 0)], None),  # unallocated: fine
    ("l1-entry-into-refcount-table", [(0x30000, ">Q", (1 << 63) | 0x10000)], "other metadata"),
    ("refblock-past-eof", [(0x10000, ">Q", 1 << 44)], "past the end of the file"),
])
def test_hostile_images_are_refused(img, tmp_path, name, patches, message):
    path = patched(tmp_path, name + ".qcow2", patches)
    p = run(img + ["info", "-f", "qcow2", path], check=False)
    if message is None:
        assert p.returncode == 0, p.stderr
        return
    assert p.returncode == 1, p.stdout
    assert message in p.stderr
    assert str(path) in p.stderr  # the message names the image


def test_backing_loop_is_refused(img, tmp_path):
    a, b = tmp_path / "a.qcow2", tmp_path / "b.qcow2"
    run([QEMU_IMG, "create", "-f", "qcow2", a, "1M"])
    run([QEMU_IMG, "create", "-f", "qcow2", "-b", "a.qcow2", "-F", "qcow2", b])
    run([QEMU_IMG, "rebase", "-u", "-f", "qcow2", "-b", "b.qcow2", "-F", "qcow2", a])
    p = run(img + ["info", b], check=False)
    assert p.returncode == 1
    assert "loop" in p.stderr


def test_missing_backing_file_is_named(img, tmp_path):
    a = tmp_path / "a.qcow2"
    run([QEMU_IMG, "create", "-f", "qcow2", "-b", "gone.raw", "-F", "raw", a, "1M"], check=False)
    if not a.exists():
        run(img + ["create", "-f", "raw", tmp_path / "gone.raw", "1M"])
        run(img + ["create", "-f", "qcow2", "-b", "gone.raw", "-F", "raw", a])
        os.unlink(tmp_path / "gone.raw")
    p = run(img + ["read", a, tmp_path / "out"], check=False)
    assert p.returncode == 1
    assert "gone.raw" in p.stderr and "No such file" in p.stderr


def test_corrupt_l2_entry_fails_only_that_request(img, tmp_path):
    path = tmp_path / "l2.qcow2"
    run(img + ["create", "-f", "qcow2", path, "4M"])
    s = Script(tmp_path, 4 << 20, seed=3)
    s.write(0, 4096)
    s.run(img, path)
    # fresh vessel image: header, refcount table, refcount block, L1; then L2 at 0x40000
    with open(path, "r+b") as f:
        f.seek(0x40000 + 8)
        f.write(struct.pack(">Q", (1 << 63) | (1 << 42)))
    p = run(img + ["read", path, tmp_path / "out"], check=False)
    assert p.returncode == 1
    assert "points past the end" in p.stderr
