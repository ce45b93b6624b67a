"""vessel-vmm --net, --console virtio and virtio-rng with Debian's kernel and busybox:

- user networking (libslirp), from the initramfs and from an ext4 root disk: the guest gets
  10.0.2.15 by DHCP, fetches a page from an HTTP
  server this test runs on host loopback (through the gateway 10.0.2.2), a DNS query over UDP
  reaches a server on host loopback, hostfwd reaches a server inside the guest (TCP; a UDP
  forward holds its host port); a second NIC gets the MAC it was given;
- tap networking in a network namespace the test creates (root only): ping and HTTP both ways,
  and again after the guest changes its MAC address (the receive filter follows it);
  6 MiB over TCP each way checked with SHA-256, with the virtio-net header on the tap (the large
  TCP packets of both sides cross it whole) and with vnet_hdr=off (frames of one MTU); a restored
  VM gets the tap's offloads back;
- the virtio console (hvc0) as the guest's console, and virtio-rng as its hardware RNG;
- bad --net specs and a hostfwd port that is taken fail with a message naming the problem.
"""
import contextlib
import functools
import hashlib
import http.server
import json
import os
import pathlib
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request
import uuid

import pytest

from guestconsole import PROMPT, GuestConsole

GUEST_PORT = 8080


def vmm_cmd(build_dir, assets, *extra, append="console=ttyS0"):
    cmd = [build_dir / "vessel-vmm", "--kernel", assets / "Image", "--initrd",
           assets / "initrd.img", "--mem", "256M"]
    if append is not None:
        cmd += ["--append", append]
    return cmd + list(extra)


def free_port(kind=socket.SOCK_STREAM):
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@contextlib.contextmanager
def http_server(directory, host="127.0.0.1"):
    """A threaded HTTP server for directory on host; yields its port."""
    handler = functools.partial(QuietHandler, directory=str(directory))
    srv = http.server.ThreadingHTTPServer((host, 0), handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield srv.server_address[1]
    finally:
        srv.shutdown()
        srv.server_close()
        t.join(10)


@contextlib.contextmanager
def udp_dns_server():
    """A UDP server on host loopback that records the queries it gets and answers each with
    NXDOMAIN; yields (port, list of queries)."""
    queries = []
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.5)
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                data, peer = sock.recvfrom(4096)
            except socket.timeout:
                continue
            queries.append(data)
            if len(data) >= 12:  # same id and question, QR=1 RD RA, RCODE=3
                sock.sendto(data[:2] + b"\x81\x83" + data[4:6] + b"\0\0\0\0\0\0" + data[12:],
                            peer)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        yield sock.getsockname()[1], queries
    finally:
        stop.set()
        t.join(5)
        sock.close()


def last_word(text):
    words = text.split()
    return words[-1] if words else ""


def http_get_with_retries(url, timeout=120):
    """GET url until it answers (the guest's server may still be starting)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=30) as r:
                return r.read().decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def test_user_network_dhcp_gateway_and_hostfwd(build_dir, guest_assets, tmp_path):
    token = uuid.uuid4().hex
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "token.txt").write_text(token + "\n")
    tcp_port, udp_port = free_port(), free_port(socket.SOCK_DGRAM)
    net0 = (f"user,hostfwd=tcp:127.0.0.1:{tcp_port}-:{GUEST_PORT},"
            f"hostfwd=udp:127.0.0.1:{udp_port}-10.0.2.15:{GUEST_PORT}")
    net1 = "user,mac=52:54:00:ab:cd:ef"
    with http_server(tmp_path / "www") as port, \
            GuestConsole(vmm_cmd(build_dir, guest_assets, "--net", net0, "--net", net1),
                         log_path=tmp_path / "console.log") as vm:
        vm.expect("udhcpc: eth0 10.0.2.15/24 router 10.0.2.2 dns 10.0.2.3")
        vm.expect(PROMPT)
        out = vm.run("ip -4 addr show eth0")
        assert "inet 10.0.2.15/24" in out, out
        assert "default via 10.0.2.2" in vm.run("ip route")
        assert last_word(vm.run("cat /sys/class/net/eth0/address")) == "52:54:00:12:34:56"
        assert last_word(vm.run("cat /sys/class/net/eth1/address")) == "52:54:00:ab:cd:ef"

        # the host's loopback through the gateway
        out = vm.run(f"wget -q -O - http://10.0.2.2:{port}/token.txt")
        assert token in out, out

        # hostfwd tcp: busybox httpd in the guest, fetched from the host
        guest_token = uuid.uuid4().hex
        vm.run(f"mkdir -p /www && echo {guest_token} > /www/index.html && "
               f"httpd -p {GUEST_PORT} -h /www")
        body = http_get_with_retries(f"http://127.0.0.1:{tcp_port}/index.html")
        assert guest_token in body

        # outbound UDP: the guest's DNS query reaches a server on host loopback
        with udp_dns_server() as (dns_port, queries):
            vm.run(f"nslookup -timeout=5 vessel-{token[:8]}.test 10.0.2.2:{dns_port}")
            assert any(f"vessel-{token[:8]}".encode() in q for q in queries), queries

        # hostfwd udp: the VMM holds the host port (busybox has no UDP server to answer it)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s, \
                pytest.raises(OSError):
            s.bind(("127.0.0.1", udp_port))

        vm.sendline("poweroff")
        assert vm.wait(300) == 0


def test_root_disk_gets_network_too(build_dir, guest_assets, top, tmp_path):
    """scripts/build-rootfs's ext4 disk: after switch_root the NIC is configured as well."""
    out = tmp_path / "rootfs"
    r = subprocess.run(["bash", str(top / "scripts/build-rootfs"), "--guest", str(guest_assets),
                        "-o", str(out), "--size", "128M"], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    token = uuid.uuid4().hex
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "token.txt").write_text(token + "\n")
    cmd = vmm_cmd(build_dir, guest_assets, "--disk", f"{out / 'rootfs.img'},format=raw",
                  "--net", "user", append="console=ttyS0 root=/dev/vda")
    with http_server(tmp_path / "www") as port, \
            GuestConsole(cmd, log_path=tmp_path / "console.log") as vm:
        vm.expect("vessel-init: switching to root /dev/vda")
        vm.expect("udhcpc: eth0 10.0.2.15/24 router 10.0.2.2 dns 10.0.2.3")
        vm.expect(PROMPT)
        assert "/dev/vda / ext4" in vm.run("grep ' / ' /proc/mounts")
        out = vm.run(f"wget -q -O - http://10.0.2.2:{port}/token.txt")
        assert token in out, out
        vm.sendline("poweroff")
        assert vm.wait(300) == 0


def test_virtio_console_and_rng(build_dir, guest_assets, tmp_path):
    # no --append: --console virtio makes the default command line console=hvc0
    with GuestConsole(vmm_cmd(build_dir, guest_assets, "--console", "virtio", append=None),
                      log_path=tmp_path / "console.log") as vm:
        vm.expect(PROMPT)
        assert last_word(vm.run("cat /sys/class/tty/console/active")) == "hvc0"
        assert last_word(vm.run("echo $((6 * 7))")) == "42"
        assert last_word(vm.run("cat /sys/class/misc/hw_random/rng_current")) == "virtio_rng.0"
        out = vm.run("head -c 4096 /dev/hwrng | wc -c")
        assert last_word(out) == "4096", out
        # not all zero: 4096 random bytes give (nearly) 256 distinct values
        out = vm.run("head -c 4096 /dev/hwrng | od -An -v -tx1 | tr -s ' ' '\\n' | sort -u | "
                     "wc -l")
        assert int(last_word(out)) > 200, out
        vm.sendline("poweroff")
        assert vm.wait(300) == 0


def test_rng_off_leaves_no_hwrng(build_dir, guest_assets, tmp_path):
    cmd = vmm_cmd(build_dir, guest_assets, "--rng", "off",
                  append='console=ttyS0 quiet vessel.cmd="ls /sys/class/misc/hw_random/; '
                         'cat /sys/class/misc/hw_random/rng_available; echo END"')
    r = subprocess.run([str(c) for c in cmd], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=600)
    out = r.stdout.decode(errors="replace")
    assert r.returncode == 0, out
    assert "END" in out and "virtio_rng" not in out, out


# ------------------------------------------------------------------ tap in a network namespace

def run(*cmd, check=True):
    return subprocess.run([str(c) for c in cmd], check=check, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)


@pytest.fixture
def netns_with_tap():
    """A network namespace with a tap interface 192.168.77.1/24; yields (ns, tap)."""
    if os.geteuid() != 0 or not os.path.exists("/dev/net/tun") or not shutil.which("ip"):
        pytest.skip("needs root, /dev/net/tun and ip(8)")
    ns = f"vessel-test-{uuid.uuid4().hex[:8]}"
    tap = "vtap0"
    run("ip", "netns", "add", ns)
    try:
        run("ip", "-n", ns, "link", "set", "lo", "up")
        run("ip", "-n", ns, "tuntap", "add", "dev", tap, "mode", "tap")
        run("ip", "-n", ns, "addr", "add", "192.168.77.1/24", "dev", tap)
        run("ip", "-n", ns, "link", "set", tap, "up")
        yield ns, tap
    finally:
        run("ip", "netns", "del", ns, check=False)


def test_tap_network_in_netns(build_dir, guest_assets, netns_with_tap, tmp_path):
    ns, tap = netns_with_tap
    token = uuid.uuid4().hex
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "token.txt").write_text(token + "\n")
    port = 18000 + int(uuid.uuid4().hex[:3], 16) % 1000
    server = subprocess.Popen(["ip", "netns", "exec", ns, "/usr/bin/python3", "-m", "http.server",
                               "--bind", "192.168.77.1", "--directory", str(tmp_path / "www"),
                               str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    cmd = ["ip", "netns", "exec", ns] + vmm_cmd(build_dir, guest_assets, "--net",
                                                f"tap={tap},mac=52:54:00:77:00:02")
    try:
        with GuestConsole(cmd, log_path=tmp_path / "console.log") as vm:
            vm.expect(PROMPT)
            vm.run("killall udhcpc 2>/dev/null; ip addr add 192.168.77.2/24 dev eth0")
            out = vm.run("ping -c 3 -W 5 192.168.77.1")
            assert " 0% packet loss" in out, out
            out = vm.run(f"wget -q -O - http://192.168.77.1:{port}/token.txt")
            assert token in out, out
            # the other way: the namespace reaches busybox httpd in the guest
            guest_token = uuid.uuid4().hex
            vm.run(f"mkdir -p /www && echo {guest_token} > /www/index.html && "
                   f"httpd -p {GUEST_PORT} -h /www")
            fetch = ("import urllib.request,sys; sys.stdout.write(urllib.request.urlopen("
                     f"'http://192.168.77.2:{GUEST_PORT}/index.html', timeout=60).read().decode())")
            r = run("ip", "netns", "exec", ns, "/usr/bin/python3", "-c", fetch, check=False)
            assert guest_token in r.stdout, r.stdout
            r = run("ip", "-n", ns, "neigh", "show", "192.168.77.2")
            assert "52:54:00:77:00:02" in r.stdout, r.stdout
            # the guest's driver filters what it receives (control queue, promiscuous mode
            # off); a new address goes to the device too (MAC_ADDR_SET), so frames to it pass
            vm.run("ip link set eth0 down && ip link set eth0 address 52:54:00:77:00:09 && "
                   "ip link set eth0 up && ip addr add 192.168.77.2/24 dev eth0 2>/dev/null; "
                   "ip neigh flush dev eth0")
            run("ip", "-n", ns, "neigh", "flush", "dev", tap)
            out = vm.run("ping -c 3 -W 5 192.168.77.1")
            assert " 0% packet loss" in out, out
            r = run("ip", "-n", ns, "neigh", "show", "192.168.77.2")
            assert "52:54:00:77:00:09" in r.stdout, r.stdout
            vm.sendline("poweroff")
            assert vm.wait(300) == 0
    finally:
        os.killpg(server.pid, 9)
        server.wait()


def file_sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def average_frame(bytes_, packets):
    return bytes_ / packets if packets else 0


@pytest.mark.parametrize("vnet_hdr", ["", "off"])
def test_tap_tcp_transfer_both_ways(build_dir, guest_assets, netns_with_tap, tmp_path, vnet_hdr):
    """A few MiB each way over TCP through the tap, checked with SHA-256 at the other end. With
    the virtio-net header (the default) the guest's and the host's large TCP packets cross the
    tap whole (the averages of the frames counted on both sides exceed an MTU's frame): checksums
    and segmentation are left to the kernels. With vnet_hdr=off the VMM does them and every frame
    fits the MTU, even right after a VMM with the header set the (persistent) tap's offloads."""
    ns, tap = netns_with_tap
    if vnet_hdr == "off":
        boot_once = ["ip", "netns", "exec", ns] + vmm_cmd(
            build_dir, guest_assets, "--net", f"tap={tap}",
            append='console=ttyS0 quiet vessel.cmd="cat /sys/class/net/eth0/address; echo END"')
        r = subprocess.run([str(c) for c in boot_once], stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600)
        assert r.returncode == 0 and b"END" in r.stdout, r.stdout
    size = 6 << 20
    (tmp_path / "www").mkdir()
    blob = tmp_path / "www" / "blob"
    blob.write_bytes(os.urandom(size))
    want = file_sha256(blob)
    port = 18000 + int(uuid.uuid4().hex[:3], 16) % 1000
    server = subprocess.Popen(["ip", "netns", "exec", ns, "/usr/bin/python3", "-m", "http.server",
                               "--bind", "192.168.77.1", "--directory", str(tmp_path / "www"),
                               str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    spec = f"tap={tap}" + (f",vnet_hdr={vnet_hdr}" if vnet_hdr else "")
    cmd = ["ip", "netns", "exec", ns] + vmm_cmd(build_dir, guest_assets, "--net", spec)

    def tap_stat(name):  # the tap's rx: what the VMM wrote, i.e. the guest's frames
        return int(run("ip", "netns", "exec", ns, "cat",
                       f"/sys/class/net/{tap}/statistics/{name}").stdout)

    def guest_stat(vm, name):
        return int(last_word(vm.run(f"cat /sys/class/net/eth0/statistics/{name}")))

    try:
        with GuestConsole(cmd, log_path=tmp_path / "console.log") as vm:
            vm.expect(PROMPT)
            vm.run("killall udhcpc 2>/dev/null; ip addr add 192.168.77.2/24 dev eth0")
            out = vm.run("ping -c 1 -W 5 192.168.77.1")
            assert " 0% packet loss" in out, out
            # host -> guest
            rx0 = (guest_stat(vm, "rx_bytes"), guest_stat(vm, "rx_packets"))
            out = vm.run(f"mkdir -p /www && wget -q -O /www/blob http://192.168.77.1:{port}/blob"
                         f" && sha256sum /www/blob", timeout=600)
            assert f"{want}  /www/blob" in out, out
            rx = (guest_stat(vm, "rx_bytes") - rx0[0], guest_stat(vm, "rx_packets") - rx0[1])
            assert rx[0] >= size, rx
            # guest -> host: the namespace fetches the copy from busybox httpd in the guest
            vm.run(f"httpd -p {GUEST_PORT} -h /www")
            tx0 = (tap_stat("rx_bytes"), tap_stat("rx_packets"))
            got = tmp_path / "back"
            fetch = ("import sys, urllib.request, shutil; shutil.copyfileobj(urllib.request."
                     f"urlopen('http://192.168.77.2:{GUEST_PORT}/blob', timeout=120), "
                     "open(sys.argv[1], 'wb'))")
            r = run("ip", "netns", "exec", ns, "/usr/bin/python3", "-c", fetch, got, check=False)
            assert r.returncode == 0, r.stdout
            tx = (tap_stat("rx_bytes") - tx0[0], tap_stat("rx_packets") - tx0[1])
            assert file_sha256(got) == want
            assert tx[0] >= size, tx
            frame_max = 1514  # MTU 1500 + Ethernet header
            if vnet_hdr == "off":
                assert average_frame(*rx) <= frame_max, rx
                assert average_frame(*tx) <= frame_max, tx
            else:
                assert average_frame(*rx) > 2 * frame_max, rx  # the host's TSO packets
                assert average_frame(*tx) > 2 * frame_max, tx  # the guest's
            vm.sendline("poweroff")
            assert vm.wait(300) == 0
    finally:
        os.killpg(server.pid, 9)
        server.wait()


def test_tap_offloads_after_restore(build_dir, guest_assets, netns_with_tap, tmp_path):
    """A VM on a tap with the header is snapshotted and restored: the restored VMM reopens the tap
    and sets its offloads from the restored driver's features, so the host's large TCP packets
    reach the guest again (and the data arrives intact)."""
    ns, tap = netns_with_tap
    size = 3 << 20
    (tmp_path / "www").mkdir()
    blob = tmp_path / "www" / "blob"
    blob.write_bytes(os.urandom(size))
    want = file_sha256(blob)
    port = 18000 + int(uuid.uuid4().hex[:3], 16) % 1000
    server = subprocess.Popen(["ip", "netns", "exec", ns, "/usr/bin/python3", "-m", "http.server",
                               "--bind", "192.168.77.1", "--directory", str(tmp_path / "www"),
                               str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    sock, snap = tmp_path / "vm.sock", tmp_path / "snap"
    netns = ["ip", "netns", "exec", ns]
    try:
        cmd = netns + vmm_cmd(build_dir, guest_assets, "--net", f"tap={tap}", "--api-sock", sock)
        with GuestConsole(cmd, log_path=tmp_path / "console.log") as vm:
            vm.expect(PROMPT)
            vm.run("killall udhcpc 2>/dev/null; ip addr add 192.168.77.2/24 dev eth0")
            r = ctl(build_dir, sock, "snapshot", snap, "--quit")
            assert r.returncode == 0, r.stderr
            assert vm.wait(60) == 0
        rsock = tmp_path / "restored.sock"
        cmd = netns + [build_dir / "vessel-vmm", "--restore", snap, "--api-sock", rsock]
        with GuestConsole(cmd, log_path=tmp_path / "restored.log") as vm:
            wait_for_path(rsock, vm)
            vm.sendline("")
            vm.expect(PROMPT, timeout=60)
            stats = ("cat /sys/class/net/eth0/statistics/rx_bytes "
                     "/sys/class/net/eth0/statistics/rx_packets")
            before = [int(x) for x in vm.run(stats).split()[-2:]]
            out = vm.run(f"wget -q -O /tmp/blob http://192.168.77.1:{port}/blob && "
                         "sha256sum /tmp/blob", timeout=600)
            assert f"{want}  /tmp/blob" in out, out
            after = [int(x) for x in vm.run(stats).split()[-2:]]
            rx = (after[0] - before[0], after[1] - before[1])
            assert average_frame(*rx) > 2 * 1514, rx
            vm.sendline("poweroff -f")
            assert vm.wait(120) == 0
    finally:
        os.killpg(server.pid, 9)
        server.wait()


def test_tap_vnet_hdr_on_and_bad_value(build_dir, guest_assets, netns_with_tap, tmp_path):
    """vnet_hdr=on attaches (this kernel has IFF_VNET_HDR) and boots; a bad value is refused."""
    ns, tap = netns_with_tap
    cmd = ["ip", "netns", "exec", ns] + vmm_cmd(
        build_dir, guest_assets, "--net", f"tap={tap},vnet_hdr=on",
        append='console=ttyS0 quiet vessel.cmd="cat /sys/class/net/eth0/address; echo END"')
    r = subprocess.run([str(c) for c in cmd], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=600)
    out = r.stdout.decode(errors="replace")
    assert r.returncode == 0 and "52:54:00:12:34:56" in out and "END" in out, out


# ------------------------------------------------------------------ bad input

@pytest.mark.parametrize("spec,message", [
    ("", "empty"),
    ("bridge", "unknown network type 'bridge'"),
    ("tap", "tap needs an interface name"),
    ("tap=" + "x" * 20, "longer than 15 characters"),
    ("user,hostfwd=tcp:127.0.0.1:99999-:22", "host port '99999' is not a number from 1 to 65535"),
    ("user,hostfwd=tcp:127.0.0.1:8080", "is not of the form"),
    ("user,hostfwd=sctp::8080-:80", "protocol 'sctp' is neither tcp nor udp"),
    ("user,hostfwd=tcp:localhost:8080-:80", "host address 'localhost' is not an IPv4 address"),
    ("user,hostfwd=tcp::8080-10.0.2:80", "guest address '10.0.2' is not an IPv4 address"),
    ("user,hostfwd=tcp::8080-:0", "guest port '0'"),
    ("user,mac=01:00:5e:00:00:01", "multicast"),
    ("user,mac=52:54:00:12:34", "not six hex bytes"),
    ("user,mtu=9", "mtu '9' is not a number from 68 to 65521"),
    ("user,ifname=tap0", "ifname is an option of 'tap' networking only"),
    ("tap=tap0,hostfwd=tcp::1-:1", "hostfwd is an option of 'user' networking only"),
    ("user,speed=10", "unknown option 'speed'"),
    ("user,mac", "option 'mac' has no value"),
    ("tap=tap0,vnet_hdr=maybe", "vnet_hdr 'maybe' is neither on nor off"),
    ("user,vnet_hdr=on", "vnet_hdr is an option of 'tap' networking only"),
])
def test_bad_net_spec(build_dir, tmp_path, spec, message):
    r = subprocess.run([str(build_dir / "vessel-vmm"), "--kernel", "/nonexistent", "--net", spec],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60)
    assert r.returncode == 2, r.stderr
    assert message in r.stderr, r.stderr
    assert "--net" in r.stderr


def test_bad_console_and_rng_options(build_dir):
    for args, message in ((["--console", "serial"], "expected 'uart' or 'virtio'"),
                          (["--rng", "maybe"], "expected 'on' or 'off'")):
        r = subprocess.run([str(build_dir / "vessel-vmm"), "--kernel", "/nonexistent"] + args,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60)
        assert r.returncode == 2 and message in r.stderr, r.stderr


def test_hostfwd_port_taken_fails_clearly(build_dir, guest_assets):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = subprocess.run([str(c) for c in vmm_cmd(
            build_dir, guest_assets, "--net", f"user,hostfwd=tcp:127.0.0.1:{port}-:22")],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            timeout=60)
    assert r.returncode == 1, r.stderr
    assert f"hostfwd tcp:127.0.0.1:{port}-10.0.2.15:22: cannot listen" in r.stderr, r.stderr


def test_too_many_devices_for_the_slots(build_dir, guest_assets, tmp_path):
    disks = []
    for i in range(8):
        d = tmp_path / f"d{i}.raw"
        d.write_bytes(bytes(1 << 20))
        disks += ["--disk", f"{d},format=raw"]
    r = subprocess.run([str(c) for c in vmm_cmd(build_dir, guest_assets, *disks, "--net",
                                                 "user")],
                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, timeout=60)
    assert r.returncode == 1, r.stderr
    assert "virtio-net: no free virtio-mmio slot" in r.stderr, r.stderr


def ctl(build_dir, sock, *args):
    return subprocess.run([build_dir / "vessel-vmm", "ctl", sock, *args], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, timeout=120)


def wait_for_path(path, vm, timeout=60):
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        assert vm.proc.poll() is None, f"the VMM exited with {vm.proc.returncode}"
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.05)


def test_network_survives_snapshot_restore_and_clone(build_dir, guest_assets, tmp_path):
    """A VM with a NIC, a virtio-rng and the virtio console is saved and restored: the restored
    guest and a clone of it reach the host through user networking again (the backend is new;
    the guest's driver state came from the snapshot), and the clone's NIC has a new MAC."""
    token = uuid.uuid4().hex
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "token.txt").write_text(token + "\n")
    sock, snap = tmp_path / "vm.sock", tmp_path / "snap"
    with http_server(tmp_path / "www") as port:
        url = f"http://10.0.2.2:{port}/token.txt"
        cmd = vmm_cmd(build_dir, guest_assets, "--net", "user", "--console", "virtio",
                      "--api-sock", sock, append=None)
        with GuestConsole(cmd, log_path=tmp_path / "console.log") as vm:
            vm.expect("udhcpc: eth0 10.0.2.15/24")
            vm.expect(PROMPT)
            assert token in vm.run(f"wget -q -O - {url}")
            r = ctl(build_dir, sock, "snapshot", snap, "--quit")
            assert r.returncode == 0, r.stderr
            assert vm.wait(60) == 0

        for name, extra in (("restored", []), ("clone", ["--clone", "--clone-dir",
                                                          tmp_path / "clones"])):
            csock = tmp_path / f"{name}.sock"
            cmd = [build_dir / "vessel-vmm", "--restore", snap, "--api-sock", csock, *extra]
            with GuestConsole(cmd, log_path=tmp_path / f"{name}.log") as vm:
                wait_for_path(csock, vm)
                vm.sendline("")
                vm.expect(PROMPT, timeout=60)
                out = vm.run(f"wget -q -O - {url}")
                assert token in out, f"{name}: {out}"
                assert "virtio" in vm.run("cat /sys/class/misc/hw_random/rng_current")
                info = json.loads(ctl(build_dir, csock, "info").stdout)
                macs = [n["mac"] for n in info["nics"]]
                if name == "clone":
                    assert macs and macs[0] != "52:54:00:12:34:56", info
                vm.sendline("poweroff -f")
                assert vm.wait(120) == 0
