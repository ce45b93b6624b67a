"""RVVM as a peer in the VM benchmarks: built from source, booted with Debian's kernel.

RVVM (github.com/LekKit/RVVM) is not packaged by Debian and the machine has no internet, so the
benchmarks build it from a local copy of its git repository or source tree:

  --rvvm-src DIR, else $RVVM_SRC, else $VESSEL_CACHE/rvvm/src.git (default ~/.cache/vessel)

A git directory is exported at its HEAD; the build (make, JIT on, no GUI, no network, no library)
goes to $VESSEL_CACHE/rvvm/build-<commit> and is reused while the commit is the same.

RVVM has no initrd option, and the device tree it makes advertises `zkr`, with which Debian's
kernel stops right after OpenSBI's banner (it reads the `seed` CSR, which traps). So, per run
configuration:
  - one file with the kernel Image zero-padded to 0x2200000 bytes and the initramfs after it:
    RVVM loads the file at 0x80200000, the initramfs lands at 0x82400000 (past the kernel's
    image_size and past 0x82200000, where OpenSBI's fw_jump places the device tree);
  - RVVM's own device tree for the hart count (-dumpdtb), decompiled with dtc, with `_zkr`
    taken out of riscv,isa, the command line in /chosen/bootargs and
    linux,initrd-start/-end added, compiled again;
  - Debian's OpenSBI fw_jump.bin as the firmware (fw_dynamic needs a hand-off RVVM does not do).
"""
import os
import pathlib
import re
import shutil
import subprocess
import tempfile

KERNEL_PAD = 0x2200000
LOAD_ADDR = 0x80200000
MAKE_FLAGS = ["USE_JIT=1", "USE_GUI=0", "USE_SDL=0", "USE_X11=0", "USE_NET=0", "USE_VFIO=0",
              "USE_JNI=0", "USE_LIB=0"]


def cache_dir():
    return pathlib.Path(os.environ.get("VESSEL_CACHE", pathlib.Path.home() / ".cache/vessel")) \
        / "rvvm"


def default_source():
    return os.environ.get("RVVM_SRC") or str(cache_dir() / "src.git")


def _git_dir(src):
    """The git directory of src (a bare repository or a checkout), or None for a plain tree."""
    r = subprocess.run(["git", "-C", str(src), "rev-parse", "--absolute-git-dir"],
                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    return r.stdout.strip() if r.returncode == 0 else None


def build(src):
    """Build RVVM from src once per commit; returns (path of rvvm_x86_64, version label)."""
    src = pathlib.Path(src)
    if not src.exists():
        raise RuntimeError(f"RVVM source {src} not found: clone github.com/LekKit/RVVM there "
                           "or pass --rvvm-src / set RVVM_SRC")
    git = _git_dir(src)
    if git:
        commit = subprocess.run(["git", "--git-dir", git, "rev-parse", "HEAD"], check=True,
                                stdout=subprocess.PIPE, text=True).stdout.strip()
        label = commit[:7]
    else:
        commit, label = None, "tree-" + re.sub(r"[^\w.-]", "_", src.resolve().name)
    out = cache_dir() / f"build-{label}"
    binary = out / "release.linux.x86_64" / "rvvm_x86_64"
    if binary.exists():
        return binary, label
    cache_dir().mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="build-tmp-", dir=cache_dir()))
    try:
        if git:
            archive = subprocess.run(["git", "--git-dir", git, "archive", commit], check=True,
                                     stdout=subprocess.PIPE).stdout
            subprocess.run(["tar", "-x", "-C", str(tmp)], input=archive, check=True)
        else:
            shutil.copytree(src, tmp, dirs_exist_ok=True)
        r = subprocess.run(["make", "-j", str(os.cpu_count() or 1)] + MAKE_FLAGS, cwd=tmp,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"RVVM build in {tmp} failed:\n{r.stdout[-3000:]}")
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return binary, label


def _dump_dts(binary, workdir, smp, firmware):
    dtb = workdir / f"rvvm-{smp}.dtb"
    argv = [str(binary), str(firmware), "-m", "512M", "-smp", str(smp), "-nogui", "-nonet", "-dumpdtb", str(dtb)]
    # -dumpdtb writes the tree when the machine is made; the guest is not wanted afterwards.
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            if dtb.exists() and dtb.stat().st_size > 0:
                break
            try:
                p.wait(timeout=0.05)
                break
            except subprocess.TimeoutExpired:
                pass
    finally:
        p.kill()
        p.wait()
    if not dtb.exists():
        raise RuntimeError(f"{binary} -dumpdtb wrote no device tree")
    return subprocess.run(["dtc", "-q", "-I", "dtb", "-O", "dts", str(dtb)], check=True,
                          stdout=subprocess.PIPE, text=True).stdout


def _dts_string(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def boot_argv(binary, assets, workdir, smp, append, mem="512M"):
    """The argv that boots Debian's kernel and initramfs (assets) in RVVM with smp harts, and
    RVVM's version as its device tree names it ("RVVM v0.7")."""
    workdir = pathlib.Path(workdir)
    kernel = (assets / "Image").read_bytes()
    initrd = (assets / "initrd.img").read_bytes()
    if len(kernel) > KERNEL_PAD:
        raise RuntimeError(f"kernel Image is {len(kernel)} bytes, more than the {KERNEL_PAD} "
                           "the padded RVVM payload allows")
    payload = workdir / "rvvm-kernel-initrd.bin"
    if not payload.exists():
        payload.write_bytes(kernel + bytes(KERNEL_PAD - len(kernel)) + initrd)
    firmware = assets / "fw_jump.bin"
    dts = _dump_dts(binary, workdir, smp, firmware)
    model = re.search(r'model = "([^"]*)"', dts)
    dts, n = re.subn(r'(riscv,isa = "[^"]*?)_zkr', r"\1", dts)
    start = LOAD_ADDR + KERNEL_PAD
    end = start + len(initrd)
    chosen = (f"bootargs = {_dts_string(append)};\n"
              f"\t\tlinux,initrd-start = <0x00 {start:#x}>;\n"
              f"\t\tlinux,initrd-end = <0x00 {end:#x}>;")
    dts, n = re.subn(r'bootargs = "(?:[^"\\]|\\.)*";', lambda _: chosen, dts)
    if n != 1:
        raise RuntimeError("RVVM's device tree has no /chosen/bootargs to replace")
    src = workdir / f"rvvm-{smp}.dts"
    src.write_text(dts)
    dtb = workdir / f"rvvm-{smp}-boot.dtb"
    subprocess.run(["dtc", "-q", "-I", "dts", "-O", "dtb", "-o", str(dtb), str(src)], check=True)
    argv = [str(binary), str(firmware), "-k", str(payload), "-dtb", str(dtb), "-m", mem,
            "-smp", str(smp), "-nogui", "-nonet"]
    return argv, model.group(1) if model else "RVVM"
