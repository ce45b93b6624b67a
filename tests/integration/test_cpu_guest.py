"""The guest test programs (tests/guest) through the real binary: vessel-vmm --bios none --htif.

Each program checks one instruction group or privileged-architecture path on the hart and ends
through HTIF: exit status 0 means every check passed, otherwise the status is the failing check's
source line (low 8 bits)."""
import re
import subprocess

import pytest

PROGRAMS = ["rv64i", "rv64m", "amo", "rvc", "zb", "fp", "csr", "traps", "irq", "vm", "pmp", "hyp"]


def _elf(build_dir, name):
    path = build_dir / "tests" / "unit" / f"{name}.elf"
    if not path.is_file():
        pytest.skip(f"{path} not built (riscv64-unknown-elf-gcc missing?)")
    return path


def _run(build_dir, elf, *extra):
    return subprocess.run(
        [str(build_dir / "vessel-vmm"), "--bios", "none", "--htif", *extra, "--kernel", str(elf)],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("accel", ["jit", "interp"])
@pytest.mark.parametrize("name", PROGRAMS)
def test_guest_program_passes(build_dir, name, accel):
    r = _run(build_dir, _elf(build_dir, name), "--accel", accel)
    assert r.returncode == 0, f"{name} ({accel}): exit {r.returncode} (failing check at line ~{r.returncode})\n{r.stderr}"


# Multi-hart programs (tests/guest/smp_*.c, 4 harts): LR/SC and AMO torture with exact counts, and
# litmus tests (message passing under fences, store buffering under fence rw,rw, code modified
# by one hart and run by another after FENCE.I), on each engine, with a host thread per hart and
# with all harts on one thread.
@pytest.mark.parametrize("threads", ["on", "off"])
@pytest.mark.parametrize("accel", ["jit", "interp"])
@pytest.mark.parametrize("name", ["smp_atomics", "smp_litmus"])
def test_smp_guest_program_passes(build_dir, name, accel, threads):
    r = _run(build_dir, _elf(build_dir, name), "--smp", "4", "--accel", accel,
             "--hart-threads", threads)
    assert r.returncode == 0, f"{name} ({accel}, threads {threads}): exit {r.returncode}\n{r.stderr}"


# TLB shootdown through SBI RFENCE: hart 1 keeps a page in its TLB, hart 0 remaps it and asks the
# built-in SBI to flush hart 1's TLB; after the call hart 1 must see the new page (200 rounds).
@pytest.mark.parametrize("threads", ["on", "off"])
@pytest.mark.parametrize("accel", ["jit", "interp"])
def test_sbi_remote_sfence_reaches_the_other_hart(build_dir, accel, threads):
    elf = _elf(build_dir, "sbi_rfence")
    r = subprocess.run([str(build_dir / "vessel-vmm"), "--smp", "2", "--mem", "64M",
                        "--accel", accel, "--hart-threads", threads, "--kernel", str(elf)],
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "RFENCE PASS" in r.stdout, f"{r.returncode}\n{r.stdout}\n{r.stderr}"


def test_hart_threads_option_is_checked(build_dir):
    r = _run(build_dir, _elf(build_dir, "exit"), "--hart-threads", "maybe")
    assert r.returncode == 2 and "--hart-threads 'maybe'" in r.stderr, r.stderr


def test_accel_kinds_are_checked(build_dir):
    r = _run(build_dir, _elf(build_dir, "exit"), "--accel", "kvm")
    assert r.returncode == 2 and "--accel 'kvm'" in r.stderr, r.stderr


def test_cpu_model_turns_the_hypervisor_extension_off(build_dir):
    """--cpu rv64,h=off: misa.H reads zero, so the hypervisor program fails its first check; the
    default (and --cpu rv64) has H; a model that does not exist is refused."""
    elf = _elf(build_dir, "hyp")
    off = _run(build_dir, elf, "--cpu", "rv64,h=off")
    assert off.returncode not in (0, 255, 2), off.stderr  # a failing check's line, not a crash
    on = _run(build_dir, elf, "--cpu", "rv64")
    assert on.returncode == 0, on.stderr
    bad = _run(build_dir, elf, "--cpu", "rv32")
    assert bad.returncode == 2 and "--cpu 'rv32'" in bad.stderr, bad.stderr


def test_htif_exit_code_and_console(build_dir):
    r = _run(build_dir, _elf(build_dir, "exit"))
    assert r.returncode == 42, r.stderr
    assert "htif console" in r.stdout


@pytest.mark.parametrize("accel", ["jit", "interp"])
def test_htif_syscall_request_ends_the_run_with_a_message(build_dir, accel):
    """An even tohost value other than 0 is a proxy-kernel system call, which vessel-vmm does not
    serve: the run ends with 255 and says why, instead of ending silently."""
    r = _run(build_dir, _elf(build_dir, "syscall"), "--accel", accel)
    assert r.returncode == 255, r.stderr
    assert "proxy-kernel system call" in r.stderr, r.stderr
    assert re.search(r"tohost 0x[0-9a-f]*[02468ace]\b", r.stderr), r.stderr


def test_htif_needs_an_elf_with_tohost(build_dir, tmp_path):
    # a flat binary is not an ELF with tohost/fromhost: refused with a clear message
    flat = tmp_path / "flat.bin"
    flat.write_bytes(b"\x13\x00\x00\x00" * 16)
    r = _run(build_dir, flat)
    assert r.returncode != 0
    assert r.stderr.strip(), "no error message"
