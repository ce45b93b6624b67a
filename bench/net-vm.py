"""bench/net's VM -> container measurement (vessel only): a default Debian guest on the bench
network of a vesseld (a tap made through /vessel/v1/networks/NET/taps, vessel-vmm started in the
daemon's namespace) sends BYTES of zeros with its busybox nc (the guest has no iperf3) to a sink in
a container's network namespace. The sink times the transfer from its first byte to its last, so
the guest's boot and the connection setup are not counted.

  net-vm.py BUILD GUEST_DIR SOCK NETNS SRV_PID SRV_IP RUNS MIB   -> one Gbit/s figure a line
"""
import http.client
import json
import os
import socket
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "integration"))
from guestconsole import PROMPT, GuestConsole  # noqa: E402

SINK = """
import socket, sys, time
want = int(sys.argv[1])
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 5202))
s.listen(1)
print("listening", flush=True)
while True:
    c, _ = s.accept()
    got, t0 = 0, None
    while got < want:
        b = c.recv(1 << 20)
        if not b:
            break
        if t0 is None:
            t0 = time.perf_counter()
        got += len(b)
    t1 = time.perf_counter()
    c.close()
    print("%d %.6f" % (got, t1 - t0 if t0 else 0.0), flush=True)
"""


class UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost")
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(self.path)


def api(sock, method, path, body=None):
    c = UnixHTTP(sock)
    c.request(method, path, json.dumps(body) if body is not None else None,
              {"Content-Type": "application/json"})
    r = c.getresponse()
    data = r.read()
    if r.status >= 300:
        sys.exit(f"net-vm: {method} {path}: {r.status} {data.decode(errors='replace')}")
    return json.loads(data) if data else None


def main():
    build, guest, sock, netns, srv_pid, srv_ip, runs, mib = sys.argv[1:9]
    want = int(mib) << 20
    sink = subprocess.Popen(["nsenter", f"--net=/proc/{srv_pid}/ns/net", sys.executable, "-c",
                             SINK, str(want)], stdout=subprocess.PIPE, text=True)
    tap = api(sock, "POST", "/v1.41/vessel/v1/networks/bench/taps", {"Id": "benchvm"})
    try:
        assert sink.stdout.readline().strip() == "listening"
        cmd = ["nsenter", f"--net={netns}", os.path.join(build, "vessel-vmm"), "--kernel",
               os.path.join(guest, "Image"), "--initrd", os.path.join(guest, "initrd.img"),
               "--mem", "256M", "--append", "console=ttyS0", "--net",
               f"tap={tap['Tap']},mac={tap['MacAddress']}"]
        with GuestConsole(cmd) as vm:
            vm.expect(f"udhcpc: eth0 {tap['IPAddress']}/")
            vm.expect(PROMPT)
            for _ in range(int(runs)):
                vm.run(f"dd if=/dev/zero bs=64k count={want >> 16} 2>/dev/null | "
                       f"nc {srv_ip} 5202", timeout=600)
                got, secs = sink.stdout.readline().split()
                if int(got) != want:
                    sys.exit(f"net-vm: the sink got {got} of {want} bytes")
                print("%.3f" % (want * 8 / float(secs) / 1e9), flush=True)
            vm.sendline("poweroff")
            vm.wait(120)
    finally:
        sink.kill()
        sink.wait()
        api(sock, "DELETE", "/v1.41/vessel/v1/networks/bench/taps?id=benchvm")


if __name__ == "__main__":
    main()
