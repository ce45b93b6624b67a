"""The gdb stub of vessel-vmm (--gdb, --gdb-wait) driven by Debian's gdb-multiarch and by a raw
GDB-remote-protocol client: a bare-metal program with symbols (break at a function, check its
arguments, step, read and write a variable, continue to its exit) on both engines and with two
harts; Debian's kernel interrupted while it boots (0x03), looked at, stepped and let go on to a
shell; hostile packets (bad checksums, bad hex, oversized packets, unmapped memory); watchpoints
(watch, rwatch, awatch) on the program, on the running kernel and on a replay, backwards too;
QEMU's physical memory mode (memory and a watchpoint by physical address) on the kernel."""
import re
import resource
import shutil
import socket
import subprocess
import time

import pytest

from test_vm_boot import BOOT_TIMEOUT, CMD_TIMEOUT, Console

GDB = shutil.which("gdb-multiarch")
GDB_TIMEOUT = 120


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _elf(build_dir):
    path = build_dir / "tests" / "unit" / "gdb_target.elf"
    if not path.is_file():
        pytest.skip(f"{path} not built (riscv64-unknown-elf-gcc missing?)")
    return path


def _need_gdb():
    if not GDB:
        pytest.skip("gdb-multiarch is not installed (scripts/setup installs it)")


def _wait_listening(port, timeout=60):
    """Until something listens on the port (a test connection would count as a debugger)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open("/proc/net/tcp") as f:
            for line in f.readlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                if int(local.split(":")[1], 16) == port and state == "0A":
                    return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on port {port}")


class Vmm:
    """vessel-vmm with a gdb stub on a free loopback port; killed on exit if still running."""

    def __init__(self, build_dir, *args):
        self.port = _free_port()
        self.proc = subprocess.Popen([str(build_dir / "vessel-vmm"), *args, "--gdb",
                                      f"tcp:127.0.0.1:{self.port}"],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        _wait_listening(self.port)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate()


def _gdb(elf, port, commands):
    argv = [GDB, "-q", "-batch", "-nx", "-ex", "set confirm off", "-ex",
            f"target remote 127.0.0.1:{port}"]
    for c in commands:
        argv += ["-ex", c]
    if elf:
        argv.append(str(elf))
    # a gdb that trips over its own assertion leaves no core file in the tree
    r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       timeout=GDB_TIMEOUT,
                       preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_CORE, (0, 0)))
    return r.stdout + r.stderr


class RawClient:
    """The GDB remote serial protocol by hand: checksums, acks, 0x03."""

    def __init__(self, port):
        # a continue on a replay runs a whole recorded boot (with a watchpoint, every store
        # checked): seconds when the machine is quiet, minutes when it is not
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=GDB_TIMEOUT)
        self.buf = b""

    def close(self):
        self.sock.close()

    def send_raw(self, data):
        self.sock.sendall(data)

    def _read_more(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("the stub closed the connection")
        self.buf += chunk

    def read_ack(self):
        while not self.buf:
            self._read_more()
        c, self.buf = self.buf[:1], self.buf[1:]
        return c

    def read_packet(self):
        while True:
            m = re.match(rb"[+-]*\$([^#]*)#([0-9a-f]{2})", self.buf, re.S)
            if m:
                self.buf = self.buf[m.end():]
                data = m.group(1)
                assert sum(data) % 256 == int(m.group(2), 16), f"bad checksum in {m.group(0)!r}"
                return data.decode("latin-1")
            self._read_more()

    def command(self, text):
        data = text.encode("latin-1")
        self.send_raw(b"$%s#%02x" % (data, sum(data) % 256))
        assert self.read_ack() == b"+"
        return self.read_packet()


def _regs(g_reply):
    """x0..x31, pc from a 'g' reply."""
    vals = [int.from_bytes(bytes.fromhex(g_reply[i:i + 16]), "little")
            for i in range(0, 33 * 16, 16)]
    return vals[:32], vals[32]


# ------------------------------------------------------------------ the bare-metal program

@pytest.mark.parametrize("accel", ["jit", "interp"])
def test_break_step_read_write_continue(build_dir, accel):
    _need_gdb()
    elf = _elf(build_dir)
    with Vmm(build_dir, "--bios", "none", "--htif", "--accel", accel, "--gdb-wait",
             "--kernel", str(elf)) as vm:
        out = _gdb(elf, vm.port, [
            "break gdb_add", "continue",
            "printf \"ARGS %d %d\\n\", $a0, $a1",
            "printf \"PC %#lx FN %#lx\\n\", $pc, &gdb_add",
            "printf \"COUNTER %d\\n\", gdb_counter",
            "printf \"PRIV %d HART %d FCSR %d\\n\", $priv, $mhartid, $fcsr",
            "set var gdb_counter = 0",
            "printf \"COUNTER %d\\n\", gdb_counter",
            "stepi",
            "printf \"STEPPED %#lx\\n\", $pc",
            "x/2i gdb_add",
            "x/700xw 0x80000000",  # more than one packet's worth
            "continue"])
        assert "Breakpoint 1, gdb_add (a=a@entry=30, b=b@entry=12)" in out, out
        assert "ARGS 30 12" in out, out
        m = re.search(r"PC (0x[0-9a-f]+) FN (0x[0-9a-f]+)", out)
        assert m and m.group(1) == m.group(2), out
        assert re.search(r"COUNTER 5\n(.|\n)*COUNTER 0\n", out), out
        assert "PRIV 3 HART 0 FCSR 0" in out, out  # M-mode, CSRs from the target description
        stepped = re.search(r"STEPPED (0x[0-9a-f]+)", out)
        assert stepped and int(stepped.group(1), 16) in (int(m.group(1), 16) + 2,
                                                         int(m.group(1), 16) + 4), out
        assert "Cannot access memory" not in out, out
        assert "exited normally" in out, out
        # the program passes only because the debugger wrote gdb_counter
        assert vm.proc.wait(timeout=30) == 0


@pytest.mark.parametrize("accel", ["jit", "interp"])
def test_watchpoints_on_the_program(build_dir, accel):
    """gdb_fill writes gdb_watched three times, smp_main reads it, gdb_add reads gdb_counter: a
    write watchpoint sees the first two writes with their old and new values in gdb_fill, and
    once deleted no more; a read watchpoint then sees the read (not the third write); an access
    watchpoint sees gdb_counter read in gdb_add. With them gone the program runs to its end."""
    _need_gdb()
    elf = _elf(build_dir)
    with Vmm(build_dir, "--bios", "none", "--htif", "--accel", accel, "--gdb-wait",
             "--kernel", str(elf)) as vm:
        out = _gdb(elf, vm.port, [
            "set var gdb_counter = 0",
            "watch gdb_watched", "continue", "info symbol $pc", "continue", "info symbol $pc",
            "delete", "rwatch gdb_watched", "continue", "info symbol $pc",
            "delete", "awatch gdb_counter", "continue", "info symbol $pc",
            "delete", "continue"])
        assert re.search(r"Hardware watchpoint 1: gdb_watched\s+Old value = 0\s+"
                         r"New value = 10\s", out), out
        assert re.search(r"Hardware watchpoint 1: gdb_watched\s+Old value = 10\s+"
                         r"New value = 20\s", out), out
        assert "New value = 30" not in out, out  # deleted before the third write
        assert re.search(r"Hardware read watchpoint 2: gdb_watched\s+Value = 30\s", out), out
        assert re.search(r"Hardware access \(read/write\) watchpoint 3: gdb_counter\s+"
                         r"Value = 0\s", out), out
        # where each stop was: the writer, the reader, the function that reads gdb_counter
        where = re.findall(r"^(\w+) \+ \d+ in section \.text", out, re.M)
        assert where[:2] == ["gdb_fill", "gdb_fill"], out
        assert where[2] == "smp_main" and where[3] == "gdb_add", out
        assert "exited normally" in out, out
        assert vm.proc.wait(timeout=30) == 0


def test_program_alone_fails_without_the_debugger(build_dir):
    r = subprocess.run([str(build_dir / "vessel-vmm"), "--bios", "none", "--htif", "--kernel",
                        str(_elf(build_dir))], stdin=subprocess.DEVNULL, capture_output=True,
                       timeout=60)
    assert r.returncode == 5


@pytest.mark.parametrize("threads", ["on", "off"])
def test_two_harts_are_two_threads(build_dir, threads):
    _need_gdb()
    elf = _elf(build_dir)
    with Vmm(build_dir, "--bios", "none", "--htif", "--smp", "2", "--hart-threads", threads,
             "--gdb-wait", "--kernel", str(elf)) as vm:
        out = _gdb(elf, vm.port, ["set scheduler-locking step", "info threads", "thread 2", "stepi",
                                  "printf \"HART %d %d\\n\", $a0, $mhartid",  # csrr a0, mhartid
                                  "break gdb_add", "continue", "set var gdb_counter = 0",
                                  "continue"])
        assert re.search(r"1\s+Thread 1 \(hart 0\)", out), out
        assert re.search(r"2\s+Thread 2 \(hart 1\)", out), out
        assert "Switching to thread 2" in out and "HART 1 1" in out, out
        assert "hit Breakpoint 1, gdb_add" in out, out
        assert "exited normally" in out, out
        assert vm.proc.wait(timeout=30) == 0


def test_detach_lets_the_program_run_on(build_dir):
    _need_gdb()
    elf = _elf(build_dir)
    with Vmm(build_dir, "--bios", "none", "--htif", "--gdb-wait", "--kernel", str(elf)) as vm:
        out = _gdb(elf, vm.port, ["break gdb_add", "continue", "detach"])
        assert "Breakpoint 1, gdb_add" in out, out
        # breakpoints are gone with the debugger: the program ends on its own (exit 5)
        assert vm.proc.wait(timeout=30) == 5


# ------------------------------------------------------------------ the protocol by hand

def test_protocol_checks_its_input(build_dir):
    with Vmm(build_dir, "--bios", "none", "--htif", "--gdb-wait", "--kernel",
             str(_elf(build_dir))) as vm:
        c = RawClient(vm.port)
        try:
            assert "PacketSize=1000" in c.command("qSupported:multiprocess+")
            assert c.command("?").startswith("T05thread:1;")
            xml = c.command("qXfer:features:read:target.xml:0,fff")
            assert "riscv:rv64" in xml and "org.gnu.gdb.riscv.fpu" in xml
            assert c.command("qfThreadInfo") == "m1"
            _, pc = _regs(c.command("g"))
            assert pc == 0x80000000
            # bad checksum: a '-' and nothing done
            c.send_raw(b"$g#00")
            assert c.read_ack() == b"-"
            # bad hex, bad register, unknown packet, no such thread
            assert c.command("mzz,4") == "E01"
            assert c.command("m80000000,zz") == "E01"
            assert c.command("p1234567") == "E0e"
            assert c.command("P5=nothex") == "E01"
            assert c.command("M80000000,4:0011") == "E01"
            assert c.command("Hg9") == "E01"
            # watchpoints: kinds 2-4 only, a sane length, a bounded number; an address nothing
            # maps is accepted (it triggers once something maps it and accesses it)
            assert c.command("Z5,80000000,4") == ""
            assert c.command("Z2,80000000,0") == "E16"
            assert c.command("Z2,80000000,10001") == "E16"
            assert c.command("Z2,fffffffffffffffc,8") == "E16"  # wraps around
            assert c.command("Z2,zz,4") == "E01"
            assert c.command("Z2,10,4") == "OK"
            assert c.command("z2,10,4") == "OK"
            assert c.command("z2,10,4") == "OK"  # removing one that is not there
            for i in range(16):
                assert c.command("Z3,%x,8" % (0x100 + 8 * i)) == "OK"
            assert c.command("Z3,100,8") == "OK"  # the same again: still one
            assert c.command("Z4,800,8") == "E0c"  # one too many
            for i in range(16):
                assert c.command("z3,%x,8" % (0x100 + 8 * i)) == "OK"
            assert c.command("unknown") == ""
            # unmapped memory: an error, not a crash
            assert c.command("m10,4") == "E14"
            assert c.command("m0,100000") == "E01"  # longer than a packet
            assert len(c.command("m80000000,800")) == 0x1000  # as much as gdb asks at once
            assert c.command("m80000000,801") == "E01"
            # a packet beyond PacketSize is refused whole
            big = b"M80000000,1:" + b"00" * 5000
            c.send_raw(b"$%s#%02x" % (big, sum(big) % 256))
            assert c.read_ack() == b"-"
            # memory and registers round-trip
            assert c.command("m80000000,4") != ""
            assert c.command("P5=efbeadde00000000") == "OK"
            assert c.command("p5") == "efbeadde00000000"
            assert c.command("QStartNoAckMode") == "OK"
            c.send_raw(b"$p5#%02x" % (sum(b"p5") % 256))
            assert c.read_packet() == "efbeadde00000000"  # no ack any more
            c.send_raw(b"$k#6b")
        finally:
            c.close()
        assert vm.proc.wait(timeout=30) is not None


@pytest.mark.parametrize("threads", ["on", "off"])
def test_single_steps_move_one_hart_by_one_instruction(build_dir, threads):
    with Vmm(build_dir, "--bios", "none", "--htif", "--smp", "2", "--hart-threads", threads,
             "--gdb-wait", "--kernel", str(_elf(build_dir))) as vm:
        c = RawClient(vm.port)
        try:
            assert c.command("vCont;s:2") == "T05thread:2;"
            assert c.command("Hg2") == "OK"
            assert _regs(c.command("g"))[1] == 0x80000004  # past csrr a0, mhartid
            assert _regs(c.command("g"))[0][10] == 1  # a0 = mhartid
            assert c.command("Hg1") == "OK"
            assert _regs(c.command("g"))[1] == 0x80000000  # hart 0 did not move
            assert c.command("Hc1") == "OK"
            assert c.command("s") == "T05thread:1;"
            assert _regs(c.command("g"))[1] == 0x80000004
            c.send_raw(b"$k#6b")
        finally:
            c.close()
        assert vm.proc.wait(timeout=30) is not None


# ------------------------------------------------------------------ Debian's kernel

@pytest.mark.parametrize("smp", [1, 2])
def test_interrupt_step_and_continue_a_booting_kernel(build_dir, guest_assets, smp):
    _need_gdb()
    port = _free_port()
    argv = [str(build_dir / "vessel-vmm"), "--kernel", str(guest_assets / "Image"),
            "--initrd", str(guest_assets / "initrd.img"), "--append", "console=ttyS0",
            "--mem", "512M", "--smp", str(smp), "--gdb", f"tcp::{port}"]
    con = Console(argv)
    try:
        con.wait_for(r"Linux version", BOOT_TIMEOUT)
        # a raw client: let it run, interrupt it with 0x03, look, step, detach
        c = RawClient(port)
        try:
            c.command("qSupported")
            c.send_raw(b"$c#63")
            assert c.read_ack() == b"+"
            time.sleep(1)
            c.send_raw(b"\x03")
            stop = c.read_packet()
            assert re.fullmatch(r"T02thread:[12];", stop), stop
            assert c.command("qfThreadInfo") == ("m1" if smp == 1 else "m1,2")
            _, pc = _regs(c.command("g"))
            insn = c.command("m%x,2" % pc)
            assert re.fullmatch(r"[0-9a-f]{4}", insn), insn  # pc's page as the hart maps it
            # a hart that executed WFI waits with pc past it: a step runs nothing until an
            # interrupt comes (seen on an idle second hart)
            waiting = c.command("m%x,4" % (pc - 4)) == "73005010"
            assert c.command("s").startswith("T05thread:")
            _, pc2 = _regs(c.command("g"))
            assert pc2 != pc or waiting or insn[:2] == "6f", (hex(pc), hex(pc2), insn)  # j .
            assert c.command("D") == "OK"
        finally:
            c.close()
        # gdb-multiarch without kernel symbols: attach (the VM stops), registers, one step, go
        out = _gdb(None, port, ["set architecture riscv:rv64", "info registers pc sp priv",
                                "stepi", "printf \"PC %#lx\\n\", $pc", "detach"])
        assert re.search(r"pc\s+0x[0-9a-f]+", out), out
        assert "PC 0x" in out, out
        assert "Detaching" in out or "detached" in out.lower(), out
        con.wait_for(r"READY2", BOOT_TIMEOUT, poke="echo READY$((1+1))")
        con.send("poweroff -f")
        assert con.proc.wait(timeout=CMD_TIMEOUT) == 0
    finally:
        con.close()


def _kallsyms(con, names, start):
    """Addresses of kernel symbols, as the guest's /proc/kallsyms gives them."""
    con.send("grep -w %s /proc/kallsyms; echo KS$((1+1))" % " ".join("-e " + n for n in names))
    m = con.wait_for(r"KS2", CMD_TIMEOUT, start=start)
    found = dict((name, int(addr, 16)) for addr, name in
                 re.findall(r"([0-9a-f]{16}) [TtDdBbRr] (\w+)", con.out.decode(errors="replace")))
    assert set(names) <= set(found), con.out
    return found, m


def _stored_before(read_mem, pc):
    """Whether the instruction that ends at pc is a store (32-bit or compressed)."""
    word = read_mem(pc - 4)
    if word is not None and (word & 0x7f) == 0x23:
        return True
    half = read_mem(pc - 2)
    if half is None:
        return False
    half &= 0xffff
    # c.sw / c.sd (quadrant 0) and c.swsp / c.sdsp (quadrant 2)
    return half & 3 in (0, 2) and (half >> 13) in (6, 7)


# The guest changes vm.swappiness (the kernel's int vm_swappiness) every second, reading it back
# in between, until it is told to stop.
TOGGLE = ("(while [ ! -e /tmp/stop ]; do echo 33 > /proc/sys/vm/swappiness; sleep 1; "
          "cat /proc/sys/vm/swappiness > /dev/null; echo 60 > /proc/sys/vm/swappiness; sleep 1; "
          "done; echo TOGGLED$((1+1))) &")


@pytest.mark.parametrize("accel,smp", [("jit", 1), ("interp", 1), ("jit", 2)])
def test_watchpoints_on_a_running_kernel(build_dir, guest_assets, accel, smp):
    """gdb-multiarch attaches to Debian's kernel while the guest's shell changes vm.swappiness:
    a write watchpoint on vm_swappiness stops the kernel with the old and the new value, at a
    pc in the kernel's text just past a store; a read and an access watchpoint stop it too; a
    watchpoint on an address nothing maps is accepted and harmless; after detaching the guest
    runs on as before. With two harts (each on its own host thread) the hit names the hart that
    wrote."""
    _need_gdb()
    port = _free_port()
    argv = [str(build_dir / "vessel-vmm"), "--kernel", str(guest_assets / "Image"),
            "--initrd", str(guest_assets / "initrd.img"), "--append", "console=ttyS0",
            "--mem", "256M", "--accel", accel, "--smp", str(smp), "--gdb", f"tcp::{port}"]
    con = Console(argv)
    try:
        m = con.wait_for(r"READY2", BOOT_TIMEOUT, poke="echo READY$((1+1))")
        syms, m = _kallsyms(con, ["vm_swappiness", "_stext", "_etext"], m.end())
        var = syms["vm_swappiness"]
        con.send(TOGGLE)
        pc = 'printf "PC %#lx\n", $pc'
        out = _gdb(None, port, [
            "set architecture riscv:rv64",
            f"watch *(int *){var:#x}", "continue", pc, "delete",
            f"rwatch *(int *){var:#x}", "continue", pc, "delete",
            f"awatch *(int *){var:#x}", "continue", pc, "delete",
            "watch *(int *)0x10", "delete", "detach"])
        changed = re.search(r"Hardware watchpoint 1: \*\(int \*\)0x[0-9a-f]+\s+"
                            r"Old value = (\d+)\s+New value = (\d+)\s", out)
        assert changed and changed.groups() in (("60", "33"), ("33", "60")), out
        assert re.search(r"Hardware read watchpoint 2: .*\s+Value = (33|60)\s", out), out
        assert re.search(r"Hardware access \(read/write\) watchpoint 3: .*\s+"
                         r"(Value = (33|60)|Old value = (33|60)\s+New value = (33|60))\s", out), out
        assert "Hardware watchpoint 4: *(int *)0x10" in out, out
        pcs = [int(p, 16) for p in re.findall(r"PC (0x[0-9a-f]+)", out)]
        assert len(pcs) == 3, out
        assert all(syms["_stext"] <= p < syms["_etext"] for p in pcs), out
        assert "Detaching" in out or "detached" in out.lower(), out
        # the stub's own stop, without gdb (which steps one instruction further before it
        # shows a hit: RISC-V watchpoints are "non-steppable" to gdb): just past the store
        c = RawClient(port)
        try:
            c.command("qSupported")
            assert c.command("Z2,%x,4" % var) == "OK"
            c.send_raw(b"$c#63")
            assert c.read_ack() == b"+"
            stop = c.read_packet()
            m = re.fullmatch(r"T05watch:%x;thread:([12]);" % var, stop)
            assert m and int(m.group(1)) <= smp, stop
            assert c.command("Hg%s" % m.group(1)) == "OK"  # the hart that wrote
            _, stop_pc = _regs(c.command("g"))

            def read_mem(addr):
                r = c.command("m%x,4" % addr)
                return int.from_bytes(bytes.fromhex(r), "little") if len(r) == 8 else None
            assert _stored_before(read_mem, stop_pc), hex(stop_pc)
            assert read_mem(var) in (33, 60)
            assert c.command("z2,%x,4" % var) == "OK"
            assert c.command("D") == "OK"
        finally:
            c.close()
        con.send("touch /tmp/stop")
        m = con.wait_for(r"TOGGLED2", CMD_TIMEOUT, start=m.end())
        con.wait_for(r"READY3", CMD_TIMEOUT, poke="echo READY$((1+2))", start=m.end())
        con.send("poweroff -f")
        assert con.proc.wait(timeout=CMD_TIMEOUT) == 0
    finally:
        con.close()


def _page_walk(read_phys, satp, va):
    """va's physical address by the guest's own page tables (Sv39, Sv48 or Sv57, as satp says),
    read through the stub's physical memory mode; None when nothing maps it."""
    levels = {8: 3, 9: 4, 10: 5}[satp >> 60]
    table = (satp & ((1 << 44) - 1)) << 12
    for level in range(levels - 1, -1, -1):
        pte = read_phys(table + 8 * ((va >> (12 + 9 * level)) & 0x1ff))
        if pte is None or not pte & 1:
            return None
        ppn = (pte >> 10) & ((1 << 44) - 1)
        if pte & 0xa:  # R or X: a leaf (a superpage above level 0)
            offset = (1 << (12 + 9 * level)) - 1
            return ((ppn << 12) & ~offset) | (va & offset)
        table = ppn << 12
    return None


@pytest.mark.parametrize("accel", ["jit", "interp"])
def test_physical_memory_and_watchpoints_on_a_running_kernel(build_dir, guest_assets, accel):
    """QEMU's physical memory mode (Qqemu.PhyMemMode) on Debian's kernel while the guest's shell
    changes vm.swappiness: vm_swappiness's physical address, found by walking the guest's page
    tables from satp in that mode, reads the same as its virtual address; a physical write
    watchpoint on it stops the kernel just past the store that changed it, naming the physical
    address; bad mode values are refused and change nothing; gdb-multiarch reads the variable
    by its physical address with `maintenance packet`."""
    port = _free_port()
    argv = [str(build_dir / "vessel-vmm"), "--kernel", str(guest_assets / "Image"),
            "--initrd", str(guest_assets / "initrd.img"), "--append", "console=ttyS0",
            "--mem", "256M", "--accel", accel, "--gdb", f"tcp::{port}"]
    con = Console(argv)
    try:
        m = con.wait_for(r"READY2", BOOT_TIMEOUT, poke="echo READY$((1+1))")
        syms, m = _kallsyms(con, ["vm_swappiness", "_stext", "_etext"], m.end())
        var = syms["vm_swappiness"]
        con.send(TOGGLE)
        c = RawClient(port)
        try:
            c.command("qSupported")
            assert c.command("qqemu.Supported") == "PhyMemMode"
            assert c.command("qqemu.PhyMemMode") == "0"
            for bad in ("Qqemu.PhyMemMode:2", "Qqemu.PhyMemMode:", "Qqemu.PhyMemMode",
                        "Qqemu.PhyMemMode:01", "Qqemu.PhyMemMode:x"):
                assert c.command(bad) == "E22", bad
            assert c.command("qqemu.PhyMemMode") == "0"  # unchanged
            virt = c.command("m%x,4" % var)
            assert re.fullmatch(r"[0-9a-f]{8}", virt), virt
            satp = int.from_bytes(bytes.fromhex(c.command("p1c1")), "little")
            assert satp >> 60 in (8, 9, 10), hex(satp)

            def read_phys(addr, n=8):
                r = c.command("m%x,%x" % (addr, n))
                return int.from_bytes(bytes.fromhex(r), "little") if len(r) == 2 * n else None
            assert c.command("Qqemu.PhyMemMode:1") == "OK"
            assert c.command("qqemu.PhyMemMode") == "1"
            pa = _page_walk(read_phys, satp, var)
            assert pa is not None and 0x80000000 <= pa < 0x80000000 + (256 << 20), pa
            assert c.command("m%x,4" % pa) == virt
            assert c.command("m%x,4" % var) == "E14"  # no RAM at that physical address
            assert c.command("m10,4") == "E14"
            # a physical write watchpoint: the write, through whatever mapping the kernel used
            assert c.command("Z2,%x,4" % pa) == "OK"
            c.send_raw(b"$c#63")
            assert c.read_ack() == b"+"
            stop = c.read_packet()
            assert re.fullmatch(r"T05watch:%x;thread:1;" % pa, stop), stop
            assert read_phys(pa, 4) in (33, 60)
            assert c.command("z2,%x,4" % pa) == "OK"
            # virtual again: the hart stopped in the kernel's text, just past the store
            assert c.command("Qqemu.PhyMemMode:0") == "OK"
            _, stop_pc = _regs(c.command("g"))
            assert syms["_stext"] <= stop_pc < syms["_etext"], hex(stop_pc)

            def read_mem(addr):
                r = c.command("m%x,4" % addr)
                return int.from_bytes(bytes.fromhex(r), "little") if len(r) == 8 else None
            assert _stored_before(read_mem, stop_pc), hex(stop_pc)
            assert read_mem(var) in (33, 60)
            assert c.command("D") == "OK"
        finally:
            c.close()
        if GDB:
            out = _gdb(None, port, [
                "set architecture riscv:rv64",
                f'printf "VIRT %d\\n", *(int *){var:#x}',
                "maintenance packet qqemu.PhyMemMode",
                "maintenance packet Qqemu.PhyMemMode:1",
                f'printf "PHYS %d\\n", *(int *){pa:#x}',
                "maintenance packet Qqemu.PhyMemMode:3",
                "maintenance packet Qqemu.PhyMemMode:0",
                "detach"])
            assert re.search(r'received: "0"', out), out
            assert re.search(r'received: "E22"', out), out
            virt_val = re.search(r"VIRT (\d+)", out)
            phys_val = re.search(r"PHYS (\d+)", out)
            assert virt_val and phys_val and virt_val.group(1) == phys_val.group(1), out
        con.send("touch /tmp/stop")
        m = con.wait_for(r"TOGGLED2", CMD_TIMEOUT, start=m.end())
        con.wait_for(r"READY3", CMD_TIMEOUT, poke="echo READY$((1+2))", start=m.end())
        con.send("poweroff -f")
        assert con.proc.wait(timeout=CMD_TIMEOUT) == 0
    finally:
        con.close()


# ------------------------------------------------------------------ a replay, backwards

@pytest.fixture(scope="module")
def kernel_recording(build_dir, guest_assets, tmp_path_factory):
    """A recording of Debian's kernel booting to the shell, where the guest reads the addresses
    of the kernel's trap entry and of vm_swappiness from /proc/kallsyms, sets vm.swappiness to
    33, 61 and 34, and powers off (one hart)."""
    d = tmp_path_factory.mktemp("gdbrr") / "rec"
    argv = [str(build_dir / "vessel-vmm"), "--kernel", str(guest_assets / "Image"),
            "--initrd", str(guest_assets / "initrd.img"), "--append", "console=ttyS0",
            "--mem", "256M", "--record", str(d)]
    con = Console(argv)
    try:
        m = con.wait_for(r"READY2", BOOT_TIMEOUT, poke="echo READY$((1+1))")
        con.send("grep -w handle_exception /proc/kallsyms; echo KS$((1+1))")
        m = con.wait_for(r"([0-9a-f]{16}) T handle_exception\s+KS2", CMD_TIMEOUT, start=m.end())
        trap_entry = int(m.group(1), 16)
        syms, m = _kallsyms(con, ["vm_swappiness"], m.end())
        con.send("for v in 33 61 34; do echo $v > /proc/sys/vm/swappiness; done; echo SW$((1+1))")
        con.wait_for(r"SW2", CMD_TIMEOUT, start=m.end())
        con.send("poweroff -f")
        assert con.proc.wait(timeout=CMD_TIMEOUT) == 0, con.err.decode(errors="replace")
        return d, trap_entry, syms["vm_swappiness"]
    finally:
        con.close()


def _counts(out):
    """The values gdb printed for `printf "COUNT %lu\\n", $minstret`, in order."""
    return [int(c) for c in re.findall(r"COUNT (\d+)", out)]


def test_reverse_step_and_continue_on_a_replay(build_dir, kernel_recording):
    """gdb on a replay: the kernel's trap entry is hit three times going forward; going back,
    reverse-continue lands on the hit before (across the replay's checkpoints, every 10^8
    instructions), reverse-stepi on the instruction before it, a step forward on the hit again,
    and reverse-stepi at the very start finds no more history."""
    _need_gdb()
    rec, trap_entry, _ = kernel_recording
    count = 'printf "COUNT %lu\\n", $minstret'
    with Vmm(build_dir, "--replay", str(rec), "--gdb-wait") as vm:
        out = _gdb(None, vm.port, [
            "set architecture riscv:rv64", count, "reverse-stepi", count,
            f"break *{trap_entry:#x}", "continue", count, "continue", count, "continue", count,
            "reverse-continue", count, 'printf "PC %#lx\\n", $pc',
            "reverse-stepi", count, "stepi", count, 'printf "PC %#lx\\n", $pc',
            "reverse-continue", count, "kill"])
        c = _counts(out)
        assert len(c) == 9, out
        assert c[0] == 0 and c[1] == 0, out
        assert "No more reverse-execution history" in out, out
        hit1, hit2, hit3 = c[2:5]
        assert 0 < hit1 < hit2 < hit3, out
        assert c[5] == hit2, out  # back to the hit before
        assert c[6] == hit2 - 1, out  # the instruction before it
        assert c[7] == hit2, out  # forward again onto the breakpoint
        assert c[8] == hit1, out
        pcs = [int(p, 16) for p in re.findall(r"PC (0x[0-9a-f]+)", out)]
        assert pcs == [trap_entry, trap_entry], out


MINSTRET = "p%x" % (65 + 0xb02)  # the CSR's register number in the target description


def _replay_state(c, var):
    """(instruction count, pc, the watched int) of the stopped replay."""
    count = int.from_bytes(bytes.fromhex(c.command(MINSTRET)), "little")
    _, pc = _regs(c.command("g"))
    value = int.from_bytes(bytes.fromhex(c.command("m%x,4" % var)), "little")
    return count, pc, value


def test_watchpoint_hits_backwards_on_a_replay(build_dir, kernel_recording):
    """The stub alone on a replay: a write watchpoint on vm_swappiness stops after each of the
    recording's three writes (33, 61, 34); reverse-continue from the third lands on the second
    and then the first, at the instruction counts (and pcs) the forward run found, reported as
    watchpoint hits; once more finds no earlier hit (the start); forward again, the first hit
    is where it was."""
    rec, _, var = kernel_recording
    with Vmm(build_dir, "--replay", str(rec), "--gdb-wait") as vm:
        c = RawClient(vm.port)
        try:
            c.command("qSupported")
            assert c.command("Z2,%x,4" % var) == "OK"
            watch_stop = "T05watch:%x;thread:1;" % var
            forward = []
            for _ in range(3):
                assert c.command("c") == watch_stop
                forward.append(_replay_state(c, var))
            assert [v for _, _, v in forward] == [33, 61, 34], forward
            assert forward[0][0] < forward[1][0] < forward[2][0], forward
            assert c.command("bc") == watch_stop
            assert _replay_state(c, var) == forward[1]
            assert c.command("bc") == watch_stop
            assert _replay_state(c, var) == forward[0]
            assert c.command("bc") == "T05replaylog:begin;thread:1;"
            # at the start (nothing maps the kernel yet): count 0
            assert int.from_bytes(bytes.fromhex(c.command(MINSTRET)), "little") == 0
            assert c.command("c") == watch_stop
            assert _replay_state(c, var) == forward[0]
            c.send_raw(b"$k#6b")
        finally:
            c.close()
        assert vm.proc.wait(timeout=60) is not None


def test_watch_and_reverse_continue_with_gdb_on_a_replay(build_dir, kernel_recording):
    """gdb-multiarch on a replay with a write watchpoint: forward it shows each write's old and
    new value; reverse-continue goes back to the write before, as gdb does it for RISC-V (the
    stub lands just past the store, gdb steps back over it and compares): the pc is then at the
    store, one instruction before the count at which the stub stopped going forward."""
    _need_gdb()
    rec, _, var = kernel_recording
    count = 'printf "COUNT %lu\n", $minstret'
    with Vmm(build_dir, "--replay", str(rec), "--gdb-wait") as vm:
        out = _gdb(None, vm.port, [
            "set architecture riscv:rv64", f"watch *(int *){var:#x}",
            "continue", count, "continue", count, "continue", count,
            "reverse-continue", count, "reverse-continue", count, "kill"])
    c = _counts(out)
    assert len(c) == 5, out
    # (at the start nothing maps the kernel: gdb cannot read the old value of the first)
    assert re.search(r"New value = 33\s(.|\n)*Old value = 33\s+New value = 61\s"
                     r"(.|\n)*Old value = 61\s+New value = 34\s", out), out
    assert re.search(r"Old value = 34\s+New value = 61\s(.|\n)*Old value = 61\s+New value = 33",
                     out), out
    assert c[0] < c[1] < c[2], out
    # gdb shows a hit one instruction past the stub's stop (it steps over the access), and
    # going back one before it (the store): two apart
    assert c[3] == c[2] - 2 and c[4] == c[1] - 2, out


# ------------------------------------------------------------------ a replay of two harts, backwards

@pytest.fixture(scope="module")
def kernel_recording_smp(build_dir, guest_assets, tmp_path_factory):
    """A recording of Debian's kernel booting on two harts to the shell, where the guest reads
    the addresses of the kernel's trap entry and of smp_callin (the first C function a
    secondary hart runs) from /proc/kallsyms, sets vm.swappiness to 33, 61 and 34 (on either
    hart), and powering off."""
    d = tmp_path_factory.mktemp("gdbrr2") / "rec"
    argv = [str(build_dir / "vessel-vmm"), "--kernel", str(guest_assets / "Image"),
            "--initrd", str(guest_assets / "initrd.img"), "--append", "console=ttyS0",
            "--mem", "256M", "--smp", "2", "--record", str(d)]
    con = Console(argv)
    try:
        m = con.wait_for(r"READY2", BOOT_TIMEOUT, poke="echo READY$((1+1))")
        con.send("grep -w -e handle_exception -e smp_callin /proc/kallsyms; echo KS$((1+1))")
        m = con.wait_for(r"KS2", CMD_TIMEOUT, start=m.end())
        syms = dict((name, int(addr, 16)) for addr, name in
                    re.findall(r"([0-9a-f]{16}) [Tt] (handle_exception|smp_callin)\b",
                               con.out.decode(errors="replace")))
        assert set(syms) == {"handle_exception", "smp_callin"}, con.out
        more, m = _kallsyms(con, ["vm_swappiness"], m.end())
        con.send("for v in 33 61 34; do echo $v > /proc/sys/vm/swappiness; done; echo SW$((1+1))")
        con.wait_for(r"SW2", CMD_TIMEOUT, start=m.end())
        con.send("poweroff -f")
        assert con.proc.wait(timeout=CMD_TIMEOUT) == 0, con.err.decode(errors="replace")
        return d, syms["handle_exception"], syms["smp_callin"], more["vm_swappiness"]
    finally:
        con.close()


# What gdb prints after each move: the thread that stopped, its pc, and every hart's
# instruction count (`thread apply` puts the selected thread back afterwards).
STATE_SCRIPT = """
define state
  printf "STATE %d %#lx\\n", $_thread, $pc
  thread apply all -q printf "COUNT %d %lu\\n", $_thread, $minstret
  printf "END\\n"
end
"""
STATE_RE = re.compile(r"STATE (\d+) (0x[0-9a-f]+)\n((?:COUNT \d+ \d+\n)+)END")


def _states(out):
    """(thread, pc, {thread: count}) for every `state` gdb printed, in order."""
    return [(int(t), int(pc, 16), {int(a): int(b) for a, b in re.findall(r"COUNT (\d+) (\d+)", c)})
            for t, pc, c in STATE_RE.findall(out)]


def _gdb_script(port, script, tmp_path, timeout):
    path = tmp_path / "commands.gdb"
    path.write_text(STATE_SCRIPT + script)
    argv = [GDB, "-q", "-batch", "-nx", "-ex", "set confirm off", "-ex",
            "set architecture riscv:rv64", "-ex", f"target remote 127.0.0.1:{port}",
            "-x", str(path)]
    r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       timeout=timeout,
                       preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_CORE, (0, 0)))
    return r.stdout + r.stderr


FORWARD_HITS = 12


def test_reverse_on_a_two_hart_replay(build_dir, kernel_recording_smp, tmp_path):
    """gdb on a replay of two harts (one thread per hart). Going forward from where the second
    hart comes up (smp_callin), the kernel's trap entry is hit on either hart; going back,
    each reverse-continue lands on the hit before, with the hart that hit it and every hart's
    count as they were going forward. At a hit, three stepi of its hart and three reverse-stepi
    retrace the same states (the position is the interleaving's step count; reverse-stepi goes
    to the previous instruction of the selected hart), three stepi again reach them again, and
    a reverse-continue returns to the hit. A reverse-stepi of the other hart moves that hart
    back by one instruction, and the others no further forward."""
    _need_gdb()
    rec, trap_entry, callin, _ = kernel_recording_smp
    script = [f"tbreak *{callin:#x}", "continue", "state", f"break *{trap_entry:#x}"]
    script += ["continue", "state"] * FORWARD_HITS
    script += ["reverse-continue", "state"] * 4
    script += ["stepi", "state"] * 3 + ["reverse-stepi", "state"] * 3 + ["stepi", "state"] * 3
    script += ["reverse-continue", "state"]
    # the other hart, selected by hand: back by one instruction, twice
    script += ["delete", 'eval "thread %d", 3 - $_thread', "state", "reverse-stepi", "state",
               "reverse-stepi", "state", "kill"]
    with Vmm(build_dir, "--replay", str(rec), "--gdb-wait") as vm:
        out = _gdb_script(vm.port, "\n".join(script) + "\n", tmp_path, timeout=1800)
    st = _states(out)
    assert len(st) == 1 + FORWARD_HITS + 4 + 9 + 1 + 3, out
    callin_stop, hits = st[0], st[1:1 + FORWARD_HITS]
    back = st[1 + FORWARD_HITS:5 + FORWARD_HITS]
    steps = st[5 + FORWARD_HITS:14 + FORWARD_HITS]
    again = st[14 + FORWARD_HITS]
    other = st[15 + FORWARD_HITS:]
    assert callin_stop[0] == 2 and callin_stop[1] == callin, out  # hart 1 comes up
    assert all(h[1] == trap_entry for h in hits), out
    # the hits go forward: the interleaving's position (the sum of the counts) grows
    positions = [sum(h[2].values()) for h in hits]
    assert positions == sorted(positions) and len(set(positions)) == len(positions), out
    assert {h[0] for h in hits} == {1, 2}, out  # both harts hit it
    # back: each reverse-continue lands on the hit before, on its hart, the counts the same
    assert back == hits[-2:-6:-1], out
    # at hits[-5] (its thread t): three stepi, three reverse-stepi, three stepi
    t = hits[-5][0]
    f1, f2, f3, r2, r1, r0, g1, g2, g3 = steps
    assert all(s[0] == t for s in steps), out
    assert [f1[2][t], f2[2][t], f3[2][t]] == [hits[-5][2][t] + i for i in (1, 2, 3)], out
    assert [r2, r1, r0] == [f2, f1, hits[-5]], out
    assert [g1, g2, g3] == [f1, f2, f3], out
    assert again == hits[-5], out
    # the other hart, selected: its previous instruction, and the one before
    o = 3 - t
    sel, rev1, rev2 = other
    assert sel[0] == o and rev1[0] == o and rev2[0] == o, out
    assert sel[2] == again[2], out
    assert rev1[2][o] == sel[2][o] - 1 and rev2[2][o] == sel[2][o] - 2, out
    assert rev2[2][t] <= rev1[2][t] <= sel[2][t], out


def _harts_state(c, var):
    """(the thread that stopped, each hart's count, the watched int) of a stopped replay."""
    stop_thread = int(re.search(r"thread:(\d+);", c.command("?")).group(1), 16)
    counts = []
    for t in (1, 2):
        assert c.command("Hg%x" % t) == "OK"
        counts.append(int.from_bytes(bytes.fromhex(c.command(MINSTRET)), "little"))
    value = int.from_bytes(bytes.fromhex(c.command("m%x,4" % var)), "little")
    return stop_thread, counts, value


def test_watchpoint_hits_backwards_on_a_two_hart_replay(build_dir, kernel_recording_smp):
    """A write watchpoint on a replay of two harts: the three writes stop the hart that made
    each; reverse-continue lands on the second and the first again, the hart and every hart's
    count as going forward."""
    rec, _, _, var = kernel_recording_smp
    with Vmm(build_dir, "--replay", str(rec), "--gdb-wait") as vm:
        c = RawClient(vm.port)
        try:
            c.command("qSupported")
            assert c.command("Z2,%x,4" % var) == "OK"
            watch_stop = re.compile(r"T05watch:%x;thread:[12];" % var)
            forward = []
            for _ in range(3):
                stop = c.command("c")
                assert watch_stop.fullmatch(stop), stop
                forward.append(_harts_state(c, var))
            assert [v for _, _, v in forward] == [33, 61, 34], forward
            assert sum(forward[0][1]) < sum(forward[1][1]) < sum(forward[2][1]), forward
            for back in (1, 0):
                stop = c.command("bc")
                assert watch_stop.fullmatch(stop), stop
                assert _harts_state(c, var) == forward[back]
            c.send_raw(b"$k#6b")
        finally:
            c.close()
        assert vm.proc.wait(timeout=60) is not None
