"""vessel-vmm boots Debian's riscv64 kernel with the default busybox initramfs to a shell, with the
built-in SBI and with Debian's OpenSBI, on 1, 2 and 4 harts (several harts: a host thread each,
and once all on one thread); the console is driven over a pipe.
Bad input (truncated kernel, initrd larger than RAM, --mem 0, unknown option) fails cleanly."""
import os
import re
import subprocess
import threading
import time

import pytest

# The machine is shared and the CPU is interpreted: boots take tens of seconds, more under load.
BOOT_TIMEOUT = 900
CMD_TIMEOUT = 300


class Console:
    """The VMM's console: a reader thread collects stdout; tests wait for patterns in it."""

    def __init__(self, argv):
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        self.out = b""
        self.err = b""
        self.lock = threading.Lock()
        self.readers = [threading.Thread(target=self._pump, args=(self.proc.stdout, "out")),
                        threading.Thread(target=self._pump, args=(self.proc.stderr, "err"))]
        for t in self.readers:
            t.daemon = True
            t.start()

    def _pump(self, f, name):
        while True:
            chunk = os.read(f.fileno(), 65536)
            if not chunk:
                return
            with self.lock:
                setattr(self, name, getattr(self, name) + chunk)

    def text(self):
        with self.lock:
            return self.out.decode("utf-8", "replace")

    def send(self, line):
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def wait_for(self, pattern, timeout, start=0, poke=None, poke_every=5.0):
        """Wait until `pattern` appears in the output after offset `start`; optionally send
        `poke` every few seconds meanwhile (to get past a console that is not ready yet)."""
        deadline = time.monotonic() + timeout
        next_poke = time.monotonic()
        rx = re.compile(pattern)
        while time.monotonic() < deadline:
            m = rx.search(self.text(), start)
            if m:
                return m
            if self.proc.poll() is not None:
                break
            if poke is not None and time.monotonic() >= next_poke:
                self.send(poke)
                next_poke = time.monotonic() + poke_every
            time.sleep(0.2)
        raise AssertionError(f"no {pattern!r} on the console within {timeout}s; "
                             f"exit status {self.proc.poll()}; output tail:\n{self.text()[-3000:]}"
                             f"\nstderr:\n{self.err.decode(errors='replace')[-2000:]}")

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for t in self.readers:
            t.join(timeout=5)


def vmm(build_dir):
    return str(build_dir / "vessel-vmm")


@pytest.mark.parametrize("bios,smp,threads", [("builtin", 1, "on"), ("builtin", 2, "on"),
                                              ("builtin", 4, "on"), ("builtin", 4, "off"),
                                              ("opensbi", 1, "on"), ("opensbi", 2, "on"),
                                              ("opensbi", 4, "on")])
def test_boot_to_shell_and_power_off(build_dir, guest_assets, bios, smp, threads):
    argv = [vmm(build_dir), "--kernel", str(guest_assets / "Image"),
            "--initrd", str(guest_assets / "initrd.img"),
            "--append", "console=ttyS0", "--mem", "512M", "--smp", str(smp),
            "--hart-threads", threads]
    if bios == "opensbi":
        argv += ["--bios", str(guest_assets / "fw_dynamic.bin")]
    con = Console(argv)
    try:
        con.wait_for(r"Run /init as init process", BOOT_TIMEOUT)
        # The shell is ready once it runs a command; keep asking until it answers.
        m = con.wait_for(r"READY2", BOOT_TIMEOUT, poke="echo READY$((1+1))")
        con.send("echo RESULT$((6*7)); grep -c ^processor /proc/cpuinfo")
        m = con.wait_for(r"RESULT42\s+(\d+)", CMD_TIMEOUT, start=m.end())
        assert int(m.group(1)) == smp, con.text()[-2000:]
        con.send("poweroff -f")
        status = con.proc.wait(timeout=CMD_TIMEOUT)
        assert status == 0, f"exit status {status}:\n{con.text()[-2000:]}"
    finally:
        con.close()


def run_vmm(build_dir, *args, timeout=120):
    return subprocess.run([vmm(build_dir), *args], stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          timeout=timeout)


def test_truncated_kernel(build_dir, guest_assets, tmp_path):
    data = (guest_assets / "Image").read_bytes()
    bad = tmp_path / "Image-truncated"
    bad.write_bytes(data[: len(data) // 2])
    r = run_vmm(build_dir, "--kernel", str(bad))
    assert r.returncode == 1, r
    assert "truncated" in r.stderr and str(bad) in r.stderr, r.stderr


def test_kernel_not_a_kernel(build_dir, tmp_path):
    bad = tmp_path / "garbage"
    bad.write_bytes(os.urandom(4096))
    r = run_vmm(build_dir, "--kernel", str(bad))
    assert r.returncode == 1, r
    assert "neither a RISC-V Linux Image nor an ELF" in r.stderr, r.stderr


def test_initrd_larger_than_ram(build_dir, guest_assets, tmp_path):
    big = tmp_path / "initrd-big"
    with open(big, "wb") as f:
        f.truncate(96 << 20)  # sparse: costs no disk space
    r = run_vmm(build_dir, "--kernel", str(guest_assets / "Image"), "--initrd", str(big),
                "--mem", "64M")
    assert r.returncode == 1, r
    assert "initrd" in r.stderr and "does not fit in RAM" in r.stderr, r.stderr


def test_missing_kernel_file(build_dir, tmp_path):
    r = run_vmm(build_dir, "--kernel", str(tmp_path / "nope"))
    assert r.returncode == 1, r
    assert "nope" in r.stderr and "No such file" in r.stderr, r.stderr


@pytest.mark.parametrize("args,message", [
    (["--mem", "0"], "is zero"),
    (["--mem", "100000G"], "larger than the maximum"),
    (["--mem", "12Q"], "unknown suffix"),
    (["--smp", "9"], "from 1 to 8"),
    (["--smp", "0"], "from 1 to 8"),
    (["--frobnicate"], "unknown option '--frobnicate'"),
    (["--mem"], "needs an argument"),
    ([], "no kernel given"),
    (["--htif"], "--htif needs --bios none"),
])
def test_bad_arguments(build_dir, guest_assets, args, message):
    argv = args if args in ([], ["--mem"]) else ["--kernel", str(guest_assets / "Image"), *args]
    r = run_vmm(build_dir, *argv)
    assert r.returncode == 2, r
    assert message in r.stderr, r.stderr


def test_help_documents_every_option(build_dir):
    r = run_vmm(build_dir, "--help")
    assert r.returncode == 0
    for opt in ["--kernel", "--initrd", "--append", "--bios", "--htif", "--mem", "--smp",
                "--trace", "Ctrl-A x", "Exit status"]:
        assert opt in r.stdout, opt
