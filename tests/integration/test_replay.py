"""Deterministic record and replay (vessel-vmm --record DIR / --replay DIR, docs/debugging.md):
a Debian boot with user networking and a disk, and console input (a shell command, /dev/hwrng,
the clock, a page fetched over the network from a server on host loopback, the disk's first
bytes, a write to it) is recorded once on one hart and once on two, and each is replayed with the
translator and with the interpreter, five times in a row for the first (no live network: the
server is gone by then); each replay prints the same console output byte for byte and ends at the
recorded instruction count with the recorded digest of the harts' state and RAM. A tampered,
truncated, newer-format or foreign log (another kernel's start) is refused before anything
runs."""
import re
import shutil
import subprocess
import zlib

import pytest

from test_vm_boot import BOOT_TIMEOUT, CMD_TIMEOUT, Console, vmm
from test_vm_net import http_server

REPLAY_TIMEOUT = 1800
END_RE = re.compile(r"recorded (\d+) instructions in .*: log (\d+) bytes, (\d+) records, "
                    r"digest ([0-9a-f]{64})")
REPLAY_RE = re.compile(r"replayed (\d+) instructions from .*: digest ([0-9a-f]{64}) \(matches\)")


DISK_TOKEN = b"vessel-replay-disk\n"


def record(build_dir, guest_assets, d, smp):
    """A recording of a boot, a few commands typed at the shell (one fetches a page over user
    networking, one reads the disk and one writes it), and a poweroff."""
    d.mkdir(parents=True)
    disk = d.parent / "disk.raw"
    disk.write_bytes(DISK_TOKEN + bytes((1 << 20) - len(DISK_TOKEN)))
    www = d.parent / "www"
    www.mkdir()
    token = f"page-{d.parent.name}"
    (www / "token.txt").write_text(token + "\n")
    argv = [vmm(build_dir), "--kernel", str(guest_assets / "Image"),
            "--initrd", str(guest_assets / "initrd.img"), "--append", "console=ttyS0",
            "--mem", "256M", "--smp", str(smp), "--net", "user",
            "--disk", f"{disk},format=raw", "--record", str(d / "rec")]
    with http_server(www) as port:
        con = Console(argv)
        try:
            return record_session(con, d / "rec", smp, port, token)
        finally:
            con.close()


def record_session(con, d, smp, port, token):
    m = con.wait_for(r"READY2", BOOT_TIMEOUT, poke="echo READY$((1+1))")
    # wget retries until DHCP has configured eth0
    con.send("echo RESULT$((6*7)); grep -c ^processor /proc/cpuinfo; "
             "head -c 16 /dev/hwrng | od -An -tx1; date +%s; "
             f"for i in $(seq 60); do wget -q -O - http://10.0.2.2:{port}/token.txt && break; "
             "sleep 1; done; head -c 18 /dev/vda; echo; echo written | dd of=/dev/vda bs=512 "
             "seek=8 conv=fsync 2>/dev/null; echo DONE$((2+2))")
    m = con.wait_for(r"RESULT42\s+(\d+)\s+((?:[0-9a-f]{2} ?){16})\s+(\d+)\s+(\S+)\s+(\S+)\s+"
                     r"DONE4", CMD_TIMEOUT, start=m.end())
    assert int(m.group(1)) == smp
    assert m.group(4) == token
    assert m.group(5) == DISK_TOKEN.decode().strip()
    con.send("poweroff -f")
    status = con.proc.wait(timeout=CMD_TIMEOUT)
    assert status == 0, f"exit status {status}:\n{con.err.decode(errors='replace')}"
    for t in con.readers:
        t.join(timeout=30)
    end = END_RE.search(con.err.decode(errors="replace"))
    assert end, con.err.decode(errors="replace")
    return {"dir": d, "out": con.out, "icount": int(end.group(1)),
            "log_bytes": int(end.group(2)), "digest": end.group(4),
            "hwrng": m.group(2).split(), "token": token}


@pytest.fixture(scope="module")
def recording(build_dir, guest_assets, tmp_path_factory):
    return record(build_dir, guest_assets, tmp_path_factory.mktemp("rr") / "one", 1)


@pytest.fixture(scope="module")
def recording_smp(build_dir, guest_assets, tmp_path_factory):
    return record(build_dir, guest_assets, tmp_path_factory.mktemp("rr") / "two", 2)


def replay(build_dir, d, *extra):
    return subprocess.run([vmm(build_dir), "--replay", str(d), *extra], stdin=subprocess.DEVNULL,
                          capture_output=True, timeout=REPLAY_TIMEOUT)


def test_recording_is_a_snapshot_and_a_log(recording):
    d = recording["dir"]
    assert (d / "start" / "state").is_file() and (d / "start" / "memory").is_file()
    assert (d / "log").stat().st_size == recording["log_bytes"]
    assert recording["icount"] > 0
    log = (d / "log").read_bytes()
    # the guest read 16 bytes of the host's randomness: they are in the log as they were read
    assert bytes.fromhex("".join(recording["hwrng"])) in log
    # the page came over the network: its bytes are in a frame the log delivers
    assert recording["token"].encode() in log
    # the disk was frozen as the start's base and the recording went on in an overlay beside it
    assert (d.parent.parent / "disk.raw.1.qcow2").is_file()
    assert (d.parent.parent / "disk.raw").read_bytes().startswith(DISK_TOKEN)


def check_replay(build_dir, rec, accel):
    r = replay(build_dir, rec["dir"], "--accel", accel)
    err = r.stderr.decode(errors="replace")
    assert r.returncode == 0, err
    m = REPLAY_RE.search(err)
    assert m, err
    assert int(m.group(1)) == rec["icount"]
    assert m.group(2) == rec["digest"]
    assert r.stdout == rec["out"]


# five times in a row, both engines, with no live network (the recording's server is gone)
@pytest.mark.parametrize("accel", ["jit", "interp", "jit", "interp", "jit"])
def test_replay_reproduces_the_run(build_dir, recording, accel):
    check_replay(build_dir, recording, accel)


@pytest.mark.parametrize("accel", ["jit", "interp"])
def test_replay_reproduces_a_two_hart_run(build_dir, recording_smp, accel):
    check_replay(build_dir, recording_smp, accel)


def replay_damaged(build_dir, recording, tmp_path, damage):
    """Replay a copy of the recording whose log `damage` changed; it must be refused before
    the guest prints anything. Returns the message."""
    d = tmp_path / "rec"
    shutil.copytree(recording["dir"], d)
    log = bytearray((d / "log").read_bytes())
    (d / "log").write_bytes(bytes(damage(log)))
    r = replay(build_dir, d)
    err = r.stderr.decode(errors="replace")
    assert r.returncode == 1, err
    assert r.stdout == b""
    return err


def flip_middle(log):
    log[len(log) // 2] ^= 0x40
    return log


HEADER_LEN = 60  # src/vm/replay.h: RR_LOG_HEADER_LEN; the header's CRC-32 in its last 4 bytes


def fix_header_crc(log):
    log[HEADER_LEN - 4:HEADER_LEN] = zlib.crc32(bytes(log[:HEADER_LEN - 4])).to_bytes(4, "little")
    return log


def newer_version(log):
    log[8] = 3  # the version field
    return fix_header_crc(log)


def test_tampered_log_is_refused(build_dir, recording, tmp_path):
    err = replay_damaged(build_dir, recording, tmp_path, flip_middle)
    assert re.search(r"chunk \d+ at offset \d+: checksum mismatch", err), err


def test_truncated_log_is_refused(build_dir, recording, tmp_path):
    err = replay_damaged(build_dir, recording, tmp_path, lambda log: log[:-10])
    assert re.search(r"chunk \d+ at offset \d+: truncated", err), err


def test_newer_format_is_refused(build_dir, recording, tmp_path):
    err = replay_damaged(build_dir, recording, tmp_path, newer_version)
    assert "format version 3 at offset 8, this vessel-vmm reads version 2" in err, err


def test_log_of_another_start_is_refused(build_dir, recording, recording_smp, tmp_path):
    """A log put beside another recording's start (another machine; the same goes for another
    kernel: the start's digest covers the kernel's path and the RAM it was loaded into)."""
    d = tmp_path / "rec"
    shutil.copytree(recording["dir"], d)
    shutil.copy(recording_smp["dir"] / "log", d / "log")
    r = replay(build_dir, d)
    err = r.stderr.decode(errors="replace")
    assert r.returncode == 1, err
    assert r.stdout == b""
    assert re.search(r"the log was recorded from another start \(another kernel, machine or "
                     r"snapshot\): it names a start with digest [0-9a-f]{64}, .*/start/state has "
                     r"[0-9a-f]{64}", err), err


def varint(log, p):
    v, shift = 0, 0
    while True:
        b = log[p]
        p += 1
        v |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return v, p


def first_interrupt_changed(log):
    """Give the log's first interrupt record another cause (1, a supervisor software
    interrupt), with every checksum after it right again: a log that reads well but says what
    did not happen (the record layout is in src/vm/replay.h)."""
    chunks, p = [], HEADER_LEN
    while p < len(log):
        n = int.from_bytes(log[p:p + 4], "little")
        chunks.append((p, n))
        p += 8 + n
    start, n = chunks[0]
    p, end = start + 8, start + 8 + n
    while p < end:
        kind = log[p]
        _, p = varint(log, p + 1)
        if kind == 2:  # IRQ: hart, cause
            log[p + 1] = 1
            break
        if kind == 1:
            _, p = varint(log, p)
        elif kind in (3, 4, 8):
            if kind == 8:  # NET: NIC, flags, then the frame
                p += 2
            length, p = varint(log, p)
            p += length
        elif kind in (6, 7):
            p += 1
        else:
            raise AssertionError(f"no interrupt record in the first chunk (kind {kind})")
    crc = 0
    for start, n in chunks:
        crc = zlib.crc32(log[start:start + 4], crc)
        crc = zlib.crc32(log[start + 8:start + 8 + n], crc)
        log[start + 4:start + 8] = crc.to_bytes(4, "little")
    return log


def test_divergence_is_reported_where_it_happens(build_dir, recording, tmp_path):
    d = tmp_path / "rec"
    shutil.copytree(recording["dir"], d)
    log = bytearray((d / "log").read_bytes())
    (d / "log").write_bytes(bytes(first_interrupt_changed(log)))
    r = replay(build_dir, d, "--accel", "interp")
    err = r.stderr.decode(errors="replace")
    assert r.returncode == 1, err
    assert re.search(r"replay diverged at instruction count \d+ \(pc 0x[0-9a-f]+\): hart 0: "
                     r"the recording took interrupt 1 here, replay (took interrupt \d+|has none "
                     r"to take)", err), err


def test_record_refuses_what_it_cannot_record(build_dir, guest_assets, tmp_path):
    # refused before anything is opened: no tap is made
    r = subprocess.run([vmm(build_dir), "--kernel", str(guest_assets / "Image"),
                        "--net", "tap=vsrr-none0", "--record", str(tmp_path / "rec")],
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=CMD_TIMEOUT)
    assert r.returncode == 1
    assert "network 0 is a tap; only user networking (--net user) is recorded" in \
        r.stderr.decode(errors="replace")
    assert not (tmp_path / "rec").exists()
    r = subprocess.run([vmm(build_dir), "--replay", str(tmp_path / "rec"), "--mem", "64M"],
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=CMD_TIMEOUT)
    assert r.returncode == 2
    assert "not allowed with --replay" in r.stderr.decode(errors="replace")
