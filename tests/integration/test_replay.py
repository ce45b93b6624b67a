"""Deterministic record and replay (vessel-vmm --record DIR / --replay DIR, docs/debugging.md):
a Debian boot with user networking and a disk, and console input (a shell command, /dev/hwrng,
the clock, a page fetched over the network from a server on host loopback, the disk's first
bytes, a write to it) is recorded once on one hart and once on two, and each is replayed with the
translator and with the interpreter, five times in a row for the first (no live network: the
server is gone by then); each replay prints the same console output byte for byte and ends at the
recorded instruction count with the recorded digest of the harts' state and RAM. A tampered,
truncated, older- or newer-format or foreign log (another kernel's start) is refused before
anything runs. The one-hart recording takes a snapshot at the shell (`ctl SOCK snapshot`): a
replay point, from which `--replay --from` reproduces the rest of the run. A bare-metal program
(tests/guest/rr_inputs.c) recorded twice shows that two recordings of one run differ only in
their outside inputs, and that the time values in the log are the ones the guest read."""
import re
import shutil
import subprocess
import time
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
    sock = d / "api.sock"
    argv = [vmm(build_dir), "--kernel", str(guest_assets / "Image"),
            "--initrd", str(guest_assets / "initrd.img"), "--append", "console=ttyS0",
            "--mem", "256M", "--smp", str(smp), "--net", "user",
            "--disk", f"{disk},format=raw", "--record", str(d / "rec"), "--api-sock", str(sock)]
    with http_server(www) as port:
        con = Console(argv)
        try:
            return record_session(build_dir, con, d, smp, port, token)
        finally:
            con.close()


def ctl(build_dir, sock, *args):
    r = subprocess.run([vmm(build_dir), "ctl", str(sock), *args], stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=CMD_TIMEOUT)
    return r.returncode, (r.stdout + r.stderr).decode(errors="replace")


def record_session(build_dir, con, top, smp, port, token):
    d = top / "rec"
    m = con.wait_for(r"READY2", BOOT_TIMEOUT, poke="echo READY$((1+1))")
    # a replay point at the shell; what the recording cannot log is refused meanwhile
    snap = top / "at-shell"
    for _ in range(30):  # refused while the NIC holds frames the guest has not taken yet
        rc, out = ctl(build_dir, top / "api.sock", "snapshot", str(snap))
        if rc == 0 or "try again" not in out:
            break
        time.sleep(1)
    assert rc == 0, out
    rc, out = ctl(build_dir, top / "api.sock", "balloon", "128M")
    assert rc != 0 and "balloon: not during a recording" in out, out
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
            "log_bytes": int(end.group(2)), "records": int(end.group(3)),
            "digest": end.group(4), "hwrng": m.group(2).split(), "token": token, "snap": snap}


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
    log[8] = 4  # the version field
    return fix_header_crc(log)


def older_version(log):
    log[8] = 2  # version 2 had no snapshot records
    return fix_header_crc(log)


def test_tampered_log_is_refused(build_dir, recording, tmp_path):
    err = replay_damaged(build_dir, recording, tmp_path, flip_middle)
    assert re.search(r"chunk \d+ at offset \d+: checksum mismatch", err), err


def test_truncated_log_is_refused(build_dir, recording, tmp_path):
    err = replay_damaged(build_dir, recording, tmp_path, lambda log: log[:-10])
    assert re.search(r"chunk \d+ at offset \d+: truncated", err), err


def test_newer_format_is_refused(build_dir, recording, tmp_path):
    err = replay_damaged(build_dir, recording, tmp_path, newer_version)
    assert "format version 4 at offset 8, this vessel-vmm reads version 3" in err, err


def test_older_format_is_refused(build_dir, recording, tmp_path):
    err = replay_damaged(build_dir, recording, tmp_path, older_version)
    assert ("format version 2 at offset 8, older than this vessel-vmm reads (version 3): "
            "record the run again") in err, err


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


def first_chunk_end(log):
    """Where the log's first chunk ends: its 8-byte head (length, running CRC) and payload."""
    return HEADER_LEN + 8 + int.from_bytes(log[HEADER_LEN:HEADER_LEN + 4], "little")


# a log cut where a crash or a full disk would cut it: inside the header, between two chunks
# (every chunk reads well, the end record is missing), inside a chunk's head
@pytest.mark.parametrize("cut, message", [
    (lambda log: log[:30], r"record/replay log: 30 bytes, shorter than its header \(60\)"),
    (lambda log: log[:0], r"record/replay log: 0 bytes, shorter than its header \(60\)"),
    (lambda log: log[:first_chunk_end(log)],
     r"record/replay log: ends at offset \d+ after 1 chunks without its end record "
     r"\(truncated\)"),
    (lambda log: log[:first_chunk_end(log) + 4],
     r"record/replay log: chunk 2 at offset \d+: truncated header"),
], ids=["in-header", "empty", "at-chunk-boundary", "in-chunk-head"])
def test_log_cut_anywhere_is_refused(build_dir, recording, tmp_path, cut, message):
    err = replay_damaged(build_dir, recording, tmp_path, cut)
    assert re.search(message, err), err


def test_log_of_another_kernel_is_refused(build_dir, recording, tmp_path):
    """The log of a recording of another kernel (a bare-metal program instead of Debian's),
    put beside the Debian recording's start: refused before anything runs, naming both
    starts."""
    other = tmp_path / "other"
    record_inputs(build_dir, other)
    d = tmp_path / "rec"
    shutil.copytree(recording["dir"], d)
    shutil.copy(other / "log", d / "log")
    r = replay(build_dir, d)
    err = r.stderr.decode(errors="replace")
    assert r.returncode == 1, err
    assert r.stdout == b""
    assert re.search(r"the log was recorded from another start \(another kernel, machine or "
                     r"snapshot\): it names a start with digest [0-9a-f]{64}, .*/start/state has "
                     r"[0-9a-f]{64}", err), err
    # and the other way round: the Debian log beside the bare-metal program's start
    shutil.copy(recording["dir"] / "log", other / "log")
    r = replay(build_dir, other)
    err = r.stderr.decode(errors="replace")
    assert r.returncode == 1 and "the log was recorded from another start" in err, err


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
        elif kind == 9:  # SNAPSHOT: mtime, state digest, name
            _, p = varint(log, p)
            length, p = varint(log, p + 32)
            p += length
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


# ------------------------------------------------------------------ replay points

def test_replay_from_a_snapshot_taken_during_the_recording(build_dir, recording):
    """--from the snapshot taken at the shell: the replay begins at its instruction count and
    prints the rest of the console output (the commands typed after it, the page fetched, the
    disk read and written) byte for byte, ending with the recorded count and digest."""
    r = replay(build_dir, recording["dir"], "--from", str(recording["snap"]))
    err = r.stderr.decode(errors="replace")
    assert r.returncode == 0, err
    m = REPLAY_RE.search(err)
    assert m, err
    assert int(m.group(1)) == recording["icount"]
    assert m.group(2) == recording["digest"]
    full, part = recording["out"], r.stdout
    assert part and len(part) < len(full) and full.endswith(part), (full[-400:], part[:400])
    assert b"READY2" in full[:len(full) - len(part)]
    assert b"RESULT42" in part and recording["token"].encode() in part


def test_a_snapshot_not_of_this_recording_is_refused(build_dir, recording, recording_smp,
                                                      tmp_path):
    # another recording's start, and this recording's snapshot with its state altered
    other = recording_smp["dir"] / "start"
    altered = tmp_path / "altered"
    altered.mkdir()
    state = bytearray((recording["snap"] / "state").read_bytes())
    state[len(state) // 2] ^= 1
    (altered / "state").write_bytes(bytes(state))
    for snap in (other, altered):
        r = replay(build_dir, recording["dir"], "--from", str(snap))
        err = r.stderr.decode(errors="replace")
        assert r.returncode == 1, err
        assert r.stdout == b""
        assert re.search(rf"--from {re.escape(str(snap))}: not a snapshot of this recording "
                         rf"\(no snapshot record in .*/log names its state, digest [0-9a-f]{{64}}\)",
                         err), err
    r = subprocess.run([vmm(build_dir), "--from", str(other), "--kernel", "x"],
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=CMD_TIMEOUT)
    assert r.returncode == 2 and b"--from needs --replay" in r.stderr


def parse_dump(text):
    """vessel-vmm replay-dump's lines: the header's fields, then (kind, fields) per record."""
    lines = text.splitlines()
    head = lines[0].split()
    assert head[0] == "log", lines[0]
    header = dict(f.split("=", 1) for f in head[1:])
    records = []
    for n, line in enumerate(lines[1:], 1):
        parts = line.split()
        assert int(parts[0]) == n, line
        fields = dict(f.split("=", 1) for f in parts[2:])
        fields["icount"] = int(fields["icount"])
        records.append((parts[1], fields))
    return header, records


def dump(build_dir, d):
    r = subprocess.run([vmm(build_dir), "replay-dump", str(d)], stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=CMD_TIMEOUT)
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    return parse_dump(r.stdout.decode())


def test_dump_shows_every_record_and_the_replay_point(build_dir, recording):
    header, records = dump(build_dir, recording["dir"])
    assert header["version"] == "3" and header["harts"] == "1"
    assert len(records) == recording["records"]
    assert records[-1] == ("end", {"icount": recording["icount"],
                                   "digest": recording["digest"]})
    snaps = [f for kind, f in records if kind == "snapshot"]
    assert len(snaps) == 1 and snaps[0]["name"] == str(recording["snap"])
    assert 0 < snaps[0]["icount"] < recording["icount"]
    kinds = {kind for kind, _ in records}
    assert {"time", "irq", "console", "rng", "net"} <= kinds, kinds
    r = subprocess.run([vmm(build_dir), "replay-dump", str(recording["dir"] / "nothing")],
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=CMD_TIMEOUT)
    assert r.returncode == 1 and b"rec/nothing: No such file or directory" in r.stderr


# ------------------------------------------------------------------ two recordings of one run

INPUT_LINE = "hello replay"
CLOCK_LINE = re.compile(rb"^(time|mtime|rtc) ([0-9a-f]{16}) ([0-9a-f]{16})$", re.M)


def rr_inputs_elf(build_dir):
    path = build_dir / "tests" / "unit" / "rr_inputs.elf"
    if not path.is_file():
        pytest.skip(f"{path} not built (riscv64-unknown-elf-gcc missing?)")
    return path


def record_inputs(build_dir, d, snap=None):
    """Record tests/guest/rr_inputs.c: it reads the clock, takes timer interrupts and reads a
    line of console input, which the test types when the program asks for it (after taking a
    snapshot `snap` through the control socket, if given)."""
    sock = d.parent / f"{d.name}.sock"
    argv = [vmm(build_dir), "--bios", "none", "--kernel", str(rr_inputs_elf(build_dir)),
            "--mem", "64M", "--record", str(d)] + (["--api-sock", str(sock)] if snap else [])
    before = time.time_ns()
    con = Console(argv)
    try:
        con.wait_for(r"rr-inputs: type a line", CMD_TIMEOUT)
        if snap:
            rc, out = ctl(build_dir, sock, "snapshot", str(snap))
            assert rc == 0, out
        con.send(INPUT_LINE)  # one write: the program gets it in one piece
        status = con.proc.wait(timeout=CMD_TIMEOUT)
        for t in con.readers:
            t.join(timeout=30)
    finally:
        con.close()
    after = time.time_ns()
    assert status == 0, con.err.decode(errors="replace")
    assert f"got {INPUT_LINE}\nrr-inputs: end\n".encode() in con.out, con.out
    header, records = dump(build_dir, d)
    end = END_RE.search(con.err.decode(errors="replace"))
    assert end, con.err
    return {"dir": d, "out": con.out, "header": header, "records": records,
            "before": before, "after": after, "digest": end.group(4)}


def mtime_at(records, icount):
    """The guest's clock for the instruction at `icount`: the last TIME record at or before it
    (a record at count c is applied before the instruction numbered c runs)."""
    value = None
    for kind, f in records:
        if f["icount"] > icount:
            break
        if kind == "time":
            value = int(f["mtime"])
    assert value is not None
    return value


def check_time_values(rec):
    """The time values in the log are the ones the guest read: the time CSR and the CLINT's
    mtime read the clock the log's TIME records set, the RTC reads the log header's wall clock
    at mtime 0 plus mtime (in ns); the clock starts at 0 and never goes back."""
    records, base = rec["records"], int(rec["header"]["realtime_base_ns"])
    assert rec["before"] <= base <= rec["after"]
    times = [(f["icount"], int(f["mtime"])) for kind, f in records if kind == "time"]
    assert times[0] == (0, 0)
    assert all(a[1] <= b[1] and a[0] <= b[0] for a, b in zip(times, times[1:]))
    lines = CLOCK_LINE.findall(rec["out"])
    assert len(lines) == 15, rec["out"]
    for what, at, value in lines:
        # the value was read by the instruction after the one that read the count
        now = mtime_at(records, int(at, 16) + 1)
        want = base + now * 100 if what == b"rtc" else now
        assert int(value, 16) == want, (what, at, value, now)


def test_two_recordings_of_one_run_differ_only_in_outside_inputs(build_dir, tmp_path):
    """The same program with the same console input, recorded twice. What may differ between
    the two logs is what came from outside: the wall clock at the start (the header), the
    clock's values and where the recorder sampled them (TIME records: one between two slices
    when the host clock moved, any number while the hart waits), and when the console input
    came (a CONSOLE record's count; its bytes are the same, they were typed the same). Every
    other record -- interrupts and where they were taken, the end's count and digest -- and the
    start's digest must be equal, and so must the console output but for the clock values the
    program printed. (The program has no rng or network driver: entropy bytes and frames,
    outside inputs too, are compared by length and count in docs/debugging.md's terms but do
    not occur here.)"""
    one = record_inputs(build_dir, tmp_path / "one")
    two = record_inputs(build_dir, tmp_path / "two")
    for rec in (one, two):
        check_time_values(rec)
    h1, h2 = one["header"], two["header"]
    assert (h1["version"], h1["harts"], h1["start_sha256"]) == \
        (h2["version"], h2["harts"], h2["start_sha256"])
    assert h1["realtime_base_ns"] != h2["realtime_base_ns"]

    def guest_determined(records):
        return [(kind, f) for kind, f in records if kind != "time"]

    a, b = guest_determined(one["records"]), guest_determined(two["records"])
    assert [k for k, _ in a] == [k for k, _ in b], ([k for k, _ in a], [k for k, _ in b])
    assert not {"rng", "net"} & {k for k, _ in a}
    for (kind, fa), (_, fb) in zip(a, b):
        if kind == "console":
            fa, fb = dict(fa, icount=None), dict(fb, icount=None)
        assert fa == fb, (kind, fa, fb)
    assert sum(1 for k, _ in a if k == "irq") == 5
    assert [k for k, _ in a][-1] == "end"

    def masked(out):
        return CLOCK_LINE.sub(lambda m: m.group(1) + b" " + m.group(2) + b" <value>", out)

    assert masked(one["out"]) == masked(two["out"])
    assert CLOCK_LINE.findall(one["out"]) != CLOCK_LINE.findall(two["out"])
    # and each replays to its own digest, printing what its recording printed
    for rec in (one, two):
        r = replay(build_dir, rec["dir"])
        assert r.returncode == 0, r.stderr.decode(errors="replace")
        assert r.stdout == rec["out"]


@pytest.mark.parametrize("accel", ["jit", "interp"])
def test_replay_from_a_snapshot_of_a_bare_metal_run(build_dir, tmp_path, accel):
    """A replay point taken while the program waits for its console input: the replay from it
    prints only what came after (the line it got, its end) and ends with the recorded digest,
    on either engine; the snapshot changed nothing in the recorded run (a recording without one
    ends with the same digest, as two recordings of this program must)."""
    rec = record_inputs(build_dir, tmp_path / "rec", snap=tmp_path / "waiting")
    plain = record_inputs(build_dir, tmp_path / "plain")
    assert rec["digest"] == plain["digest"]
    snaps = [f for kind, f in rec["records"] if kind == "snapshot"]
    assert len(snaps) == 1 and snaps[0]["name"] == str(tmp_path / "waiting")
    r = replay(build_dir, rec["dir"], "--from", str(tmp_path / "waiting"), "--accel", accel)
    err = r.stderr.decode(errors="replace")
    assert r.returncode == 0, err
    m = REPLAY_RE.search(err)
    assert m and m.group(2) == rec["digest"], err
    assert f"(from the snapshot at {snaps[0]['icount']})" in err
    assert r.stdout == f"got {INPUT_LINE}\nrr-inputs: end\n".encode()
    assert rec["out"].endswith(r.stdout)
