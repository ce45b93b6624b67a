"""Drive a VM's serial console from a test: start the VMM with the console on stdio, wait for
text, type lines, wait for the VM to power off. Works for qemu-system-riscv64 -nographic and for
build/vessel-vmm alike.

    with GuestConsole(cmd) as vm:
        vm.expect(PROMPT)
        vm.sendline("echo $((6*7))")
        vm.expect("42")
        vm.sendline("poweroff -f")
        assert vm.wait(60) == 0
"""
import os
import signal
import subprocess
import threading
import time

# The shell prompt of vessel guests (scripts/guest/profile).
PROMPT = "~ # "
# The first line of the guest's /init (scripts/guest/init).
INIT_FIRST_LINE = "vessel-init: starting"
# Generous: the VM is a software CPU on a busy 2-core machine.
BOOT_TIMEOUT = 600


def qemu_command(assets, append="console=ttyS0", disk=None, disk_format="raw", net=False,
                 mem="512M"):
    """qemu-system-riscv64 -M virt with Debian's OpenSBI, the default kernel and initramfs, and
    optionally a virtio-blk disk and a user-mode virtio-net NIC (both virtio-mmio)."""
    cmd = ["qemu-system-riscv64", "-M", "virt", "-bios", "default", "-nographic", "-m", mem,
           "-smp", "1", "-kernel", str(assets / "Image"), "-initrd", str(assets / "initrd.img"),
           "-append", append]
    if disk is not None:
        cmd += ["-drive", f"file={disk},if=none,id=disk0,format={disk_format}",
                "-device", "virtio-blk-device,drive=disk0"]
    if net:
        cmd += ["-netdev", "user,id=net0", "-device", "virtio-net-device,netdev=net0"]
    return cmd


class GuestConsole:
    def __init__(self, cmd, log_path=None):
        self.cmd = [str(c) for c in cmd]
        self.proc = subprocess.Popen(self.cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self._out = bytearray()
        self._pos = 0  # where the next expect() starts looking
        self._cond = threading.Condition()
        self._eof = False
        self._log = open(log_path, "wb") if log_path else None
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        fd = self.proc.stdout.fileno()
        while True:
            data = os.read(fd, 65536)
            with self._cond:
                if not data:
                    self._eof = True
                    self._cond.notify_all()
                    return
                self._out += data
                if self._log:
                    self._log.write(data)
                    self._log.flush()
                self._cond.notify_all()

    @property
    def output(self):
        """Everything the console printed so far, as text."""
        with self._cond:
            return self._out.decode(errors="replace")

    def expect(self, text, timeout=BOOT_TIMEOUT):
        """Waits until text appears after the previous match; returns the output before it."""
        needle = text.encode()
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                i = self._out.find(needle, self._pos)
                if i >= 0:
                    before = self._out[self._pos:i].decode(errors="replace")
                    self._pos = i + len(needle)
                    return before
                left = deadline - time.monotonic()
                if left <= 0 or self._eof:
                    why = "the VM exited" if self._eof else f"{timeout}s passed"
                    tail = self._out[-3000:].decode(errors="replace")
                    raise AssertionError(f"waiting for {text!r}: {why}; console ends with:\n{tail}")
                self._cond.wait(min(left, 1.0))

    def sendline(self, line):
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def run(self, command, timeout=120):
        """Runs a shell command at the prompt and returns its output (the prompt must be showing).
        A marker line makes the output boundaries unambiguous."""
        marker = f"__done_{time.monotonic_ns()}__"
        self.sendline(f"{command}; echo {marker[:6]}''{marker[6:]}")
        out = self.expect(marker, timeout)
        self.expect(PROMPT, timeout)
        # Drop the echoed command line.
        return out.split("\n", 1)[1] if "\n" in out else ""

    def wait(self, timeout=120):
        """Waits for the VMM to exit (the guest powered off); returns its exit status."""
        return self.proc.wait(timeout)

    def close(self):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()
        self._reader.join(5)
        if self._log:
            self._log.close()
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except OSError:
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
