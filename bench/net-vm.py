"""bench/net's VM -> container measurement (vessel only): a default Debian guest on the bench
network of a vesseld (a tap made through /vessel/v1/networks/NET/taps, vessel-vmm started in the
daemon's namespace) sends MIB MiB from its tmpfs (the guest has no iperf3) to a sink in a
container's network namespace, two ways per round:
  wget  busybox wget --post-file: the file goes out in large writes (stdio), so the guest's
        TCP stack sends 64 KiB TSO packets; what the VM's network path can carry;
  nc    busybox nc: it copies through a small buffer, one write(2) per few KiB, and on the
        translated hart the guest's per-call cost (syscall, tcp_sendmsg, a virtqueue kick) is
        what limits it: the figure earlier runs reported.
The file is not zeros: wget sends the --post-file contents with "%s", so a file of NUL bytes
goes out as an empty body. The sink times the transfer from its first body byte to its last, so
the guest's boot and the connection setup are not counted.

  net-vm.py BUILD GUEST_DIR SOCK NETNS SRV_PID SRV_IP RUNS MIB   -> "wget|nc GBIT/S" lines
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

SINK = r"""
import socket, sys, time
want = int(sys.argv[1])
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 5202))
s.listen(1)
print("listening", flush=True)
while True:
    c, _ = s.accept()
    got, t0, head = 0, None, b""
    while got < want:
        b = c.recv(1 << 20)
        if not b:
            break
        if t0 is None and not head and b.startswith(b"POST "):
            head = b  # wget: skip the request's head, answer after the body
            while b"\r\n\r\n" not in head:
                head += c.recv(65536)
            head, _, b = head.partition(b"\r\n\r\n")
        if t0 is None and b:
            t0 = time.perf_counter()
        got += len(b)
    t1 = time.perf_counter()
    if head:
        c.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n")
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
            vm.run(f"dd if=/dev/zero bs=64k count={want >> 16} 2>/dev/null | tr '\\000' v "
                   ">/tmp/send")
            senders = {"wget": f"wget -q -O /dev/null --post-file /tmp/send http://{srv_ip}:5202/",
                       "nc": f"nc {srv_ip} 5202 </tmp/send"}
            for _ in range(int(runs)):
                for name, command in senders.items():
                    vm.run(command, timeout=600)
                    got, secs = sink.stdout.readline().split()
                    if int(got) != want:
                        sys.exit(f"net-vm: {name}: the sink got {got} of {want} bytes")
                    print("%s %.3f" % (name, want * 8 / float(secs) / 1e9), flush=True)
            vm.sendline("poweroff")
            vm.wait(120)
    finally:
        sink.kill()
        sink.wait()
        api(sock, "DELETE", "/v1.41/vessel/v1/networks/bench/taps?id=benchvm")


if __name__ == "__main__":
    main()
