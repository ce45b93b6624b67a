"""The web console's server side in vesseld (docs/web.md): the HTTPS listener, login, sessions and
CSRF, the /api prefix, static files, websocket terminals, host statistics, and the Docker API over
TLS with client certificates (`-H tcp://... --tlsverify`). Driven with Python's standard library
(ssl, http.client and a small websocket client below) and the stock docker CLI.

vesseld runs inside a network namespace this module makes (test_daemon's private vesseld under
`nsenter --net=`); the test's sockets are made inside that namespace too (setns on a helper
thread), so everything stays on the namespace's loopback. One daemon serves the module; a second
one with a one-second session lifetime shows expiry."""
import base64
import ctypes
import gzip
import hashlib
import http.client
import json
import os
import pathlib
import socket
import ssl
import struct
import subprocess
import threading
import time

import pytest

import test_daemon
from test_daemon import busybox_archive
from test_daemon_vm import validate  # replies checked against docs/api/vessel-v1.yaml

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root"),
    pytest.mark.skipif(not os.path.exists(test_daemon.DOCKER), reason="no docker CLI"),
]

NS = f"vweb{os.getpid() % 100000}"
NS_PATH = f"/run/netns/{NS}"
WEB_PORT = 8443
TTL_PORT = 8444
TLS_PORT = 2376
PASSWORD = "correct horse battery"
CLONE_NEWNET = 0x40000000


def ns_socket(addr, port, source=None, timeout=10, rcvbuf=None):
    """A TCP connection made inside the test's network namespace (rcvbuf: a small receive buffer
    for a client that does not read)."""
    out = {}

    def run():
        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open(NS_PATH, os.O_RDONLY)
        try:
            if libc.setns(fd, CLONE_NEWNET) != 0:
                out["err"] = OSError(ctypes.get_errno(), "setns")
                return
        finally:
            os.close(fd)
        s = socket.socket()
        try:
            if rcvbuf:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            if source:
                s.bind((source, 0))
            s.settimeout(timeout)
            s.connect((addr, port))
            out["sock"] = s
        except OSError as e:
            s.close()
            out["err"] = e

    t = threading.Thread(target=run)
    t.start()
    t.join()
    if "err" in out:
        raise out["err"]
    return out["sock"]


class Web:
    """A client of one vesseld's web listener, which checks the daemon's own certificate."""

    def __init__(self, vd, port):
        self.vd = vd
        self.port = port
        self.ctx = ssl.create_default_context(cafile=str(vd.data / "web" / "cert.pem"))

    def tls_socket(self, source=None, rcvbuf=None):
        return self.ctx.wrap_socket(ns_socket("127.0.0.1", self.port, source, rcvbuf=rcvbuf),
                                    server_hostname="127.0.0.1")

    def conn(self, source=None):
        web = self

        class Conn(http.client.HTTPSConnection):
            def connect(self):
                self.sock = web.tls_socket(source)

        return Conn("127.0.0.1", self.port, timeout=20)

    def request(self, method, path, body=None, headers=None, source=None, cookie=None):
        """(status, headers, body bytes)."""
        h = dict(headers or {})
        if cookie:
            h["Cookie"] = f"vessel_session={cookie}"
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            h.setdefault("Content-Type", "application/json")
        c = self.conn(source)
        try:
            c.request(method, path, body=body, headers=h)
            r = c.getresponse()
            return r.status, r.headers, r.read()
        finally:
            c.close()

    def login(self, password=PASSWORD, source=None):
        st, h, body = self.request("POST", "/web/login", {"password": password}, source=source)
        return st, h, json.loads(body) if body else None


def session_cookie(headers):
    value = headers["Set-Cookie"]
    return value.split(";", 1)[0].split("=", 1)[1], value


def set_password(vd, password):
    r = subprocess.run([str(vd.build / "vessel"), "-H", vd.host, "web", "passwd"],
                       input=password + "\n", capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr


# ------------------------------------------------------------------ websocket client


class WebSocket:
    """Just enough RFC 6455 for the tests: masked frames out, frames in."""

    def __init__(self, sock, pending=b""):
        self.sock = sock
        self.buf = pending

    @classmethod
    def connect(cls, web, path, cookie, origin=None, headers=None):
        """(WebSocket, None) after a 101, or (None, (status, body)) when refused."""
        s = web.tls_socket()
        key = base64.b64encode(os.urandom(16)).decode()
        h = {"Host": f"127.0.0.1:{web.port}", "Upgrade": "websocket", "Connection": "Upgrade",
             "Sec-WebSocket-Key": key, "Sec-WebSocket-Version": "13",
             "Origin": origin or f"https://127.0.0.1:{web.port}"}
        if cookie:
            h["Cookie"] = f"vessel_session={cookie}"
        h.update(headers or {})
        req = f"GET {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items() if v)
        s.sendall((req + "\r\n").encode())
        data = b""
        while b"\r\n\r\n" not in data:
            b = s.recv(65536)
            assert b, f"closed during the handshake: {data!r}"
            data += b
        head, rest = data.split(b"\r\n\r\n", 1)
        status = int(head.split()[1])
        if status != 101:
            s.settimeout(5)
            try:
                while True:
                    b = s.recv(65536)
                    if not b:
                        break
                    rest += b
            except (socket.timeout, ssl.SSLError):
                pass
            s.close()
            return None, (status, rest)
        want = base64.b64encode(hashlib.sha1(
            (key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
        assert f"Sec-WebSocket-Accept: {want}".encode() in head, head
        return cls(s, rest), None

    def send_frame(self, opcode, payload, mask=True, fin=True, rsv=0, length=None):
        self.sock.sendall(self.frame(opcode, payload, mask, fin, rsv, length))

    @staticmethod
    def frame(opcode, payload, mask=True, fin=True, rsv=0, length=None):
        n = len(payload) if length is None else length
        b0 = (0x80 if fin else 0) | rsv | opcode
        if n < 126:
            hdr = struct.pack("!BB", b0, (0x80 if mask else 0) | n)
        elif n < 65536:
            hdr = struct.pack("!BBH", b0, (0x80 if mask else 0) | 126, n)
        else:
            hdr = struct.pack("!BBQ", b0, (0x80 if mask else 0) | 127, n)
        if mask:
            key = os.urandom(4)
            payload = bytes(c ^ key[i % 4] for i, c in enumerate(payload))
            hdr += key
        return hdr + payload

    def _need(self, n):
        while len(self.buf) < n:
            b = self.sock.recv(65536)
            if not b:
                raise EOFError("connection closed")
            self.buf += b

    def recv_frame(self):
        """(opcode, payload); server frames are unmasked and whole."""
        self._need(2)
        op, n = self.buf[0] & 0x0F, self.buf[1] & 0x7F
        assert not self.buf[1] & 0x80, "server frames are not masked"
        off = 2
        if n == 126:
            self._need(4)
            n, off = struct.unpack("!H", self.buf[2:4])[0], 4
        elif n == 127:
            self._need(10)
            n, off = struct.unpack("!Q", self.buf[2:10])[0], 10
        self._need(off + n)
        payload = self.buf[off:off + n]
        self.buf = self.buf[off + n:]
        return op, payload

    def read_until(self, needle, timeout=20):
        """Terminal output until needle shows up."""
        out = b""
        self.sock.settimeout(timeout)
        while needle not in out:
            op, payload = self.recv_frame()
            assert op == 2, (op, payload, out)
            out += payload
        return out

    def close_code(self, timeout=20):
        """Read up to the server's close frame: its code."""
        self.sock.settimeout(timeout)
        while True:
            op, payload = self.recv_frame()
            if op == 8:
                return struct.unpack("!H", payload[:2])[0]

    def close(self):
        self.sock.close()


# ------------------------------------------------------------------ fixtures


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_tls_files(d):
    """A CA, a server certificate for 127.0.0.1 and a client certificate, as dockerd's docs."""
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "ca-key.pem", "-out", "ca.pem", "-days", "2", "-subj", "/CN=test-ca",
            cwd=d)
    for name, ext in (("server", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth"),
                      ("client", "extendedKeyUsage=clientAuth")):
        (d / f"{name}.ext").write_text(ext + "\n")
        openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", f"{name}-key.pem", "-out", f"{name}.csr", "-subj", f"/CN={name}",
                cwd=d)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem",
                "-CAcreateserial", "-out", f"{name}-cert.pem", "-days", "2", "-extfile",
                f"{name}.ext", cwd=d)
    # the docker CLI's --tlsverify reads ca.pem, cert.pem and key.pem from DOCKER_CERT_PATH
    (d / "cert.pem").write_bytes((d / "client-cert.pem").read_bytes())
    (d / "key.pem").write_bytes((d / "client-key.pem").read_bytes())


APP_JS = b"console.log('vessel web console test asset');\n" * 40
BIG_FILE = 20 << 20  # more than the kernel's socket buffers and the front's 1 MiB together


@pytest.fixture(scope="module")
def netns():
    subprocess.run(["ip", "netns", "add", NS], check=True)
    try:
        subprocess.run(["ip", "-n", NS, "link", "set", "lo", "up"], check=True)
        yield NS_PATH
    finally:
        subprocess.run(["ip", "netns", "del", NS], check=False)


@pytest.fixture(scope="module")
def site(tmp_path_factory, netns, build_dir):
    """The module's vesseld: web listener, TLS API, the busybox image; its Web client."""
    root = tmp_path_factory.mktemp("web")
    webroot = root / "webroot"
    (webroot / "assets").mkdir(parents=True)
    (webroot / "index.html").write_text("<!doctype html><title>vessel</title>\n")
    (webroot / "assets" / "app.js").write_bytes(APP_JS)
    (webroot / "assets" / "app.js.gz").write_bytes(gzip.compress(APP_JS))
    (webroot / "assets" / "big.bin").write_bytes(os.urandom(BIG_FILE))
    tls = root / "tls"
    tls.mkdir()
    make_tls_files(tls)
    # the TLS settings as dockerd's daemon.json keys
    (root / "daemon.json").write_text(json.dumps({
        "tlsverify": True, "tlscacert": str(tls / "ca.pem"),
        "tlscert": str(tls / "server-cert.pem"), "tlskey": str(tls / "server-key.pem")}))
    vd = test_daemon.Vesseld(
        build_dir, root, prefix=["nsenter", f"--net={netns}"],
        extra=["--web", f"127.0.0.1:{WEB_PORT}", "--web-root", str(webroot),
               "-H", f"tcp://127.0.0.1:{TLS_PORT}", "--config", str(root / "daemon.json")])
    vd.tls_dir = tls
    try:
        image = busybox_archive(root / "busybox.tar")
        vd.docker("load", "-i", str(image))
        yield Web(vd, WEB_PORT)
    finally:
        vd.cleanup()


@pytest.fixture(scope="module")
def logged_in(site):
    """The password set, and one session: (cookie, csrf)."""
    st, _, body = site.login()
    assert st == 401 and "vessel web passwd" in body["message"]  # none set yet
    set_password(site.vd, PASSWORD)
    st, h, body = site.login()
    assert st == 200, body
    return session_cookie(h)[0], body["csrf"]


# ------------------------------------------------------------------ tests


def test_certificate_and_static_files(site):
    key = site.vd.data / "web" / "key.pem"
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    st, h, body = site.request("GET", "/")
    assert st == 200 and body.startswith(b"<!doctype html>")
    assert h["Content-Type"].startswith("text/html")
    assert h["Content-Security-Policy"].startswith("default-src 'self'")
    assert "frame-ancestors 'none'" in h["Content-Security-Policy"]
    assert h["X-Content-Type-Options"] == "nosniff"
    assert h["Referrer-Policy"] == "no-referrer"
    assert "max-age=" in h["Strict-Transport-Security"]
    # the precompressed sibling for a client that takes gzip, the file itself for one that does not
    st, h, body = site.request("GET", "/assets/app.js", headers={"Accept-Encoding": "gzip"})
    assert st == 200 and h["Content-Encoding"] == "gzip" and gzip.decompress(body) == APP_JS
    assert h["Content-Type"].startswith("text/javascript") and len(body) < len(APP_JS)
    st, h, body = site.request("GET", "/assets/app.js", headers={"Accept-Encoding": "identity"})
    assert st == 200 and "Content-Encoding" not in h and body == APP_JS
    # the app's own routes get index.html; missing files and escapes do not
    st, h, body = site.request("GET", "/vms/web-vm/console")
    assert st == 200 and body.startswith(b"<!doctype html>")
    st, h, _ = site.request("GET", "/assets/missing.js")
    assert st == 404 and h["X-Content-Type-Options"] == "nosniff"
    assert site.request("GET", "/assets/%2e%2e/%2e%2e/etc/passwd")[0] == 404
    assert site.request("POST", "/index.html", b"x")[0] == 405


def test_login_session_cookie_and_logout(site, logged_in):
    st, h, body = site.login("not the password")
    assert st == 401 and body == {"message": "wrong password"}
    st, h, body = site.login()
    assert st == 200 and len(body["csrf"]) == 64
    cookie, raw = session_cookie(h)
    assert len(cookie) == 64
    flags = [f.strip() for f in raw.split(";")[1:]]
    assert {"Path=/", "Secure", "HttpOnly", "SameSite=Strict"} <= set(flags)
    st, _, sess = site.request("GET", "/web/session", cookie=cookie)
    assert st == 200 and json.loads(sess)["csrf"] == body["csrf"]
    # no live session is an answer, not an error (a browser would log a 401 on every reload)
    for cookie_sent in (None, "0" * 64):
        st, h, sess = site.request("GET", "/web/session", cookie=cookie_sent)
        assert st == 200 and json.loads(sess) == {"message": "login required"}
        assert h["Cache-Control"] == "no-store"
    # logout needs the CSRF token too
    assert site.request("POST", "/web/logout", cookie=cookie)[0] == 403
    st, h, _ = site.request("POST", "/web/logout", cookie=cookie,
                            headers={"X-CSRF-Token": body["csrf"]})
    assert st == 204 and "Max-Age=0" in h["Set-Cookie"]
    st, _, b = site.request("GET", "/api/containers/json", cookie=cookie)
    assert st == 401


def test_api_needs_session_and_csrf(site, logged_in):
    cookie, csrf = logged_in
    st, _, body = site.request("GET", "/api/containers/json")
    assert st == 401 and json.loads(body)["message"]
    st, h, body = site.request("GET", "/api/v1.41/containers/json?all=1", cookie=cookie)
    assert st == 200 and isinstance(json.loads(body), list)
    assert h["Api-Version"] == "1.41" and h["X-Content-Type-Options"] == "nosniff"
    create = {"Image": "busybox", "Cmd": ["true"]}
    for headers in ({}, {"X-CSRF-Token": "0" * 64}):
        st, _, body = site.request("POST", "/api/containers/create?name=nocsrf", create,
                                   headers=headers, cookie=cookie)
        assert st == 403 and json.loads(body) == {"message": "missing or invalid CSRF token"}
    assert "nocsrf" not in site.vd.docker("ps", "-a", "--format", "{{.Names}}").stdout
    st, _, body = site.request("POST", "/api/containers/create?name=viaweb", create,
                               headers={"X-CSRF-Token": csrf}, cookie=cookie)
    assert st == 201, body
    cid = json.loads(body)["Id"]
    st, _, body = site.request("GET", f"/api/containers/{cid}/json", cookie=cookie)
    assert st == 200 and json.loads(body)["Name"] == "/viaweb"
    st, _, _ = site.request("DELETE", f"/api/containers/{cid}", cookie=cookie,
                            headers={"X-CSRF-Token": csrf})
    assert st == 204
    # the password is the host's business, not the web session's
    st, _, body = site.request("POST", "/api/vessel/v1/web/password", {"Password": "x" * 10},
                               headers={"X-CSRF-Token": csrf}, cookie=cookie)
    assert st == 403 and "vessel web passwd" in json.loads(body)["message"]
    # a streamed answer comes through as it is made: events of a container made meanwhile
    c = site.conn()
    c.request("GET", "/api/events?filters=" + '{"type":["container"]}',
              headers={"Cookie": f"vessel_session={cookie}"})
    r = c.getresponse()
    assert r.status == 200
    site.vd.docker("create", "--name", "evented", "busybox", "true")
    event = json.loads(r.readline())
    assert event["Action"] == "create" and event["Actor"]["Attributes"]["name"] == "evented"
    c.close()
    site.vd.docker("rm", "evented")


def test_login_rate_limit(site, logged_in):
    # from another loopback address, so that the other tests' logins are not held up
    for _ in range(5):
        st, _, body = site.login("wrong guess", source="127.0.0.2")
        assert st == 401
    st, h, body = site.login(PASSWORD, source="127.0.0.2")
    assert st == 429, body
    assert body["message"].startswith("too many login attempts; try again in ")
    assert 0 < int(h["Retry-After"]) <= 60
    assert site.login()[0] == 200  # another address is not held up


def unix_api(vd, method, path, body=None):
    """A request on the unix socket, its reply validated against the API's description."""
    data = json.dumps(body).encode() if body is not None else b""
    reply = vd.raw(f"{method} {path} HTTP/1.1\r\nHost: d\r\nContent-Type: application/json\r\n"
                   f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode() + data)
    status = int(test_daemon.status_line(reply).split()[1])
    payload = reply.split(b"\r\n\r\n", 1)[1]
    validate(method, path, status, payload)
    return status, payload


def test_password_endpoint(site):
    for bad in ({"Password": "short"}, {"Password": 12345678}, {}):
        status, body = unix_api(site.vd, "POST", "/vessel/v1/web/password", bad)
        assert status == 400 and json.loads(body)["message"]
    r = subprocess.run([str(site.vd.build / "vessel"), "-H", site.vd.host, "web", "passwd"],
                       input="", capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and "no password given" in r.stderr


def test_host_stats(site, logged_in):
    cookie, _ = logged_in
    keys = {"Time", "NCPU", "CPUPercent", "Load1", "MemTotal", "MemUsed"}
    status, body = unix_api(site.vd, "GET", "/vessel/v1/host/stats")
    assert status == 200 and set(json.loads(body)) == keys
    c = site.conn()
    c.request("GET", "/api/vessel/v1/host/stats?stream=1",
              headers={"Cookie": f"vessel_session={cookie}"})
    r = c.getresponse()
    assert r.status == 200
    samples = [json.loads(r.readline()) for _ in range(2)]
    c.close()
    for s in samples:
        validate("GET", "/vessel/v1/host/stats", 200, json.dumps(s))
        assert set(s) == keys
        assert s["NCPU"] >= 1 and 0 <= s["CPUPercent"] <= 100 and s["Load1"] >= 0
        assert 0 < s["MemUsed"] < s["MemTotal"]
    assert samples[1]["Time"] > samples[0]["Time"]


def test_websocket_terminal(site, logged_in):
    cookie, csrf = logged_in
    vd = site.vd
    vd.docker("run", "-d", "-it", "--name", "term", "busybox", "sh")
    path = f"/api/ws/containers/term/attach?csrf={csrf}"
    # refused before the upgrade: no session, no or a wrong token, another origin
    assert WebSocket.connect(site, path, None)[1][0] == 401
    assert WebSocket.connect(site, "/api/ws/containers/term/attach", cookie)[1][0] == 403
    assert WebSocket.connect(site, path.replace(csrf, "0" * 64), cookie)[1][0] == 403
    assert WebSocket.connect(site, path, cookie, origin="https://evil.example")[1][0] == 403
    status, body = WebSocket.connect(site, f"/api/ws/containers/nosuch/attach?csrf={csrf}",
                                     cookie)[1]
    assert status == 404 and b"nosuch" in body
    assert WebSocket.connect(site, f"/api/ws/vms/nosuch/console?csrf={csrf}", cookie)[1][0] == 404

    ws, _ = WebSocket.connect(site, path, cookie)
    ws.send_frame(2, b"echo web-$((6*7))-ok\n")
    ws.read_until(b"web-42-ok")
    ws.send_frame(9, b"are you there")  # ping
    while True:
        op, payload = ws.recv_frame()
        if op == 10:
            assert payload == b"are you there"
            break
    ws.send_frame(1, json.dumps({"type": "resize", "cols": 101, "rows": 37}).encode())
    # the resize is its own request: ask until the terminal has the new size
    deadline = time.monotonic() + 20
    out = b""
    while b"37 101" not in out:
        assert time.monotonic() < deadline, out
        ws.send_frame(2, b"stty size\n")
        try:
            out += ws.read_until(b"\n", timeout=5)
            out += ws.read_until(b"#", timeout=5)
        except socket.timeout:
            pass
    ws.close()

    # too large a frame: 1009; garbage (an unmasked frame, reserved bits): 1002
    ws, _ = WebSocket.connect(site, path, cookie)
    ws.send_frame(2, b"x" * 70000)
    assert ws.close_code() == 1009
    ws.close()
    ws, _ = WebSocket.connect(site, path, cookie)
    ws.send_frame(2, b"hello", mask=False)
    assert ws.close_code() == 1002
    ws.close()
    ws, _ = WebSocket.connect(site, path, cookie)
    ws.send_frame(2, b"hello", rsv=0x40)
    assert ws.close_code() == 1002
    ws.close()
    # a fragmented message over the limit: 1009 too
    ws, _ = WebSocket.connect(site, path, cookie)
    ws.send_frame(2, b"y" * 40000, fin=False)
    ws.send_frame(0, b"y" * 40000)
    assert ws.close_code() == 1009
    ws.close()

    # the daemon and the container are fine afterwards
    ws, _ = WebSocket.connect(site, path, cookie)
    ws.send_frame(2, b"echo still-$((1+1))\n")
    ws.read_until(b"still-2")
    ws.send_frame(2, b"exit\n")
    assert ws.close_code() == 1000  # the shell ended: the stream with it
    ws.close()
    assert site.request("GET", "/api/_ping", cookie=cookie)[2] == b"OK"
    vd.docker("rm", "-f", "term")

    # a container without a TTY: its output arrives without Docker's stream headers
    vd.docker("run", "-d", "-i", "--name", "plain", "busybox", "sh")
    ws, _ = WebSocket.connect(site, f"/api/ws/containers/plain/attach?csrf={csrf}", cookie)
    ws.send_frame(2, b"echo plain-$((2+3)); echo err-out >&2\n")
    out = ws.read_until(b"err-out\n")
    assert b"plain-5\n" in out and b"\x00" not in out, out
    ws.close()
    vd.docker("rm", "-f", "plain")


def test_docker_api_over_tls(site):
    vd = site.vd
    env = dict(vd.env, DOCKER_HOST=f"tcp://127.0.0.1:{TLS_PORT}", DOCKER_TLS_VERIFY="1",
               DOCKER_CERT_PATH=str(vd.tls_dir))

    def docker(*args, input=None):
        return subprocess.run(["nsenter", f"--net={NS_PATH}", test_daemon.DOCKER, *args],
                              env=env, capture_output=True, text=True, timeout=60, input=input)

    r = docker("version", "--format", "{{.Server.APIVersion}}")
    assert r.returncode == 0 and r.stdout.strip() == "1.41", r.stderr
    r = docker("run", "--rm", "busybox", "echo", "over-tls")  # attach: a hijacked stream
    assert r.returncode == 0 and r.stdout == "over-tls\n", r.stderr
    # stdin through the relay, and its end (the client shuts its side) reaching the container
    r = docker("run", "-i", "--rm", "busybox", "sh", "-c", "cat; echo stdin-ended",
               input="via-stdin\n")
    assert r.returncode == 0 and r.stdout == "via-stdin\nstdin-ended\n", r.stderr
    # without a client certificate the handshake fails
    ctx = ssl.create_default_context(cafile=str(vd.tls_dir / "ca.pem"))
    s = ctx.wrap_socket(ns_socket("127.0.0.1", TLS_PORT), server_hostname="127.0.0.1")
    with pytest.raises((ssl.SSLError, ConnectionError, EOFError)):
        s.sendall(b"GET /_ping HTTP/1.1\r\nHost: d\r\n\r\n")
        if not s.recv(100):
            raise EOFError
    s.close()


def test_session_expires(netns, build_dir, tmp_path):
    vd = test_daemon.Vesseld(build_dir, tmp_path, prefix=["nsenter", f"--net={netns}"],
                             extra=["--web", f"127.0.0.1:{TTL_PORT}", "--web-session-ttl", "1"])
    try:
        web = Web(vd, TTL_PORT)
        set_password(vd, PASSWORD)
        st, h, body = web.login()
        assert st == 200
        cookie = session_cookie(h)[0]
        time.sleep(2.5)  # the lifetime counts whole seconds: two have passed
        st, _, body = web.request("GET", "/api/containers/json", cookie=cookie)
        assert st == 401 and json.loads(body) == {"message": "session expired; log in again"}
        st, _, body = web.request("GET", "/web/session", cookie=cookie)
        assert st == 200 and "csrf" not in json.loads(body)
    finally:
        vd.cleanup()


# ------------------------------------------------------------------ the security review's findings


def cpu_seconds(pid):
    """User and system CPU time of a process so far."""
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def read_to_end(resp, timeout=20):
    """The rest of a streamed answer until the server ends it (cut off or not)."""
    resp.fp.raw._sock.settimeout(timeout)
    try:
        return resp.read()
    except http.client.IncompleteRead as e:
        return e.partial


def test_client_that_does_not_read_costs_no_cpu(site, logged_in):
    """Two clients that leave their answers unread: one asked for a 20 MiB file and then shut its
    side (the daemon cannot read, and was woken for that end again and again), one whose API
    answer the router sent whole and closed its end of (woken for the hang-up likewise). The
    daemon waits for both without spinning, and serves others meanwhile."""
    cookie, _ = logged_in
    vd = site.vd
    vd.docker("run", "--name", "chatty", "busybox", "sh", "-c",
              "head -c 1100000 /dev/zero | tr '\\0' x; echo")
    held = []
    try:
        s = site.tls_socket(rcvbuf=4096)
        s.sendall(b"GET /assets/big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(1)  # the answer is queued
        s.shutdown(socket.SHUT_WR)  # SSLSocket: the TCP side only, no close_notify
        held.append(s)
        s = site.tls_socket(rcvbuf=4096)
        s.sendall(f"GET /api/containers/chatty/logs?stdout=1 HTTP/1.1\r\nHost: x\r\n"
                  f"Cookie: vessel_session={cookie}\r\n\r\n".encode())
        held.append(s)
        time.sleep(2)  # the router writes the answer and closes its end
        before = cpu_seconds(vd.proc.pid)
        time.sleep(6)
        used = cpu_seconds(vd.proc.pid) - before
        assert used < 0.6, f"vesseld used {used:.2f} s of CPU in 6 s while two clients waited"
        assert site.request("GET", "/api/_ping", cookie=cookie)[2] == b"OK"
    finally:
        for s in held:
            s.close()
        vd.docker("rm", "-f", "chatty")


def test_api_connection_kept_alive(site, logged_in):
    """One TLS connection carries request after request: API answers (their ends known from
    their length or chunks), refusals, files; requests sent at once are answered in order."""
    cookie, csrf = logged_in
    auth = {"Cookie": f"vessel_session={cookie}"}
    c = site.conn()
    c.request("GET", "/api/_ping", headers=auth)
    r = c.getresponse()
    assert r.status == 200 and r.read() == b"OK" and r.getheader("Connection") is None
    sock = c.sock
    assert sock is not None
    c.request("GET", "/api/containers/json?all=1", headers=auth)
    r = c.getresponse()
    assert r.status == 200 and isinstance(json.loads(r.read()), list)
    assert r.getheader("Cache-Control") == "no-store"  # inspect documents hold environments
    c.request("POST", "/api/containers/create?name=kept",
              body=json.dumps({"Image": "busybox", "Cmd": ["true"]}),
              headers=dict(auth, **{"X-CSRF-Token": csrf, "Content-Type": "application/json"}))
    r = c.getresponse()
    assert r.status == 201, r.read()
    r.read()
    c.request("DELETE", "/api/containers/kept", headers=dict(auth, **{"X-CSRF-Token": csrf}))
    r = c.getresponse()
    assert r.status == 204
    r.read()
    c.request("GET", "/api/containers/json")  # refused: the connection goes on all the same
    r = c.getresponse()
    assert r.status == 401
    r.read()
    c.request("GET", "/index.html")
    r = c.getresponse()
    assert r.status == 200
    r.read()
    assert c.sock is sock, "the connection was not kept"
    c.close()
    s = site.tls_socket()
    s.sendall((f"GET /api/_ping HTTP/1.1\r\nHost: x\r\nCookie: vessel_session={cookie}\r\n\r\n"
               f"GET /api/version HTTP/1.1\r\nHost: x\r\nCookie: vessel_session={cookie}\r\n"
               "Connection: close\r\n\r\n").encode())
    s.settimeout(20)
    data = b""
    while True:
        b = s.recv(65536)
        if not b:
            break
        data += b
    s.close()
    assert data.count(b"HTTP/1.1 200 ") == 2, data
    assert data.index(b"\r\n\r\nOK") < data.index(b'"ApiVersion"'), data


def test_connections_per_address_bounded(site, logged_in):
    """One address cannot take every connection the listener allows (each may wait 30 s for a
    request): past 128 its new ones are closed at once; other addresses are served meanwhile."""
    held = [ns_socket("127.0.0.1", WEB_PORT, "127.0.0.3") for _ in range(128)]
    try:
        extra = ns_socket("127.0.0.1", WEB_PORT, "127.0.0.3", timeout=20)
        try:
            got = extra.recv(1)
        except ConnectionResetError:
            got = b""
        extra.close()
        assert got == b"", "the 129th connection of one address was kept"
        assert site.request("GET", "/index.html")[0] == 200
    finally:
        for s in held:
            s.close()
    deadline = time.monotonic() + 30
    while True:  # the daemon sees the 128 go, then serves the address again
        try:
            st = site.request("GET", "/index.html", source="127.0.0.3")[0]
            break
        except (ssl.SSLError, OSError):
            assert time.monotonic() < deadline, "the address stayed refused"
            time.sleep(0.2)
    assert st == 200


def test_resize_flood_is_coalesced(site, logged_in):
    """3000 resize messages at once cost a few resize requests to the router (one per batch of
    frames read), not 3000 internal connections; the last size wins."""
    cookie, csrf = logged_in
    vd = site.vd
    vd.docker("run", "-d", "-it", "--name", "sizes", "busybox", "sh")
    try:
        before = vd.log_text().count("/containers/sizes/resize?")
        ws, _ = WebSocket.connect(site, f"/api/ws/containers/sizes/attach?csrf={csrf}", cookie)
        burst = b"".join(WebSocket.frame(1, json.dumps(
            {"type": "resize", "cols": 80 + i % 7, "rows": 20 + i % 5}).encode())
            for i in range(3000))
        burst += WebSocket.frame(1, b'{"type": "resize", "cols": 123, "rows": 45}')
        ws.sock.sendall(burst)
        deadline = time.monotonic() + 20
        out = b""
        while b"45 123" not in out:
            assert time.monotonic() < deadline, out
            ws.send_frame(2, b"stty size\n")
            try:
                out += ws.read_until(b"#", timeout=5)
            except socket.timeout:
                pass
        ws.close()
        sent = vd.log_text().count("/containers/sizes/resize?") - before
        assert 1 <= sent <= 300, f"{sent} resize requests for 3001 messages"
    finally:
        vd.docker("rm", "-f", "sizes")


def test_session_end_ends_its_streams(site, logged_in):
    """A logout ends what its session opened: the terminal gets close 1008, the event stream
    its end; another session's stream goes on."""
    cookie, csrf = logged_in
    vd = site.vd
    st, h, body = site.login()
    mine, my_csrf = session_cookie(h)[0], body["csrf"]
    vd.docker("run", "-d", "-it", "--name", "held", "busybox", "sh")
    try:
        ws, _ = WebSocket.connect(site, f"/api/ws/containers/held/attach?csrf={my_csrf}", mine)
        ws.send_frame(2, b"echo held-$((3*3))\n")
        ws.read_until(b"held-9")
        c = site.conn()
        c.request("GET", "/api/events", headers={"Cookie": f"vessel_session={mine}"})
        r = c.getresponse()
        assert r.status == 200
        other = site.conn()
        other.request("GET", "/api/events?filters=" + '{"event":["create"]}',
                      headers={"Cookie": f"vessel_session={cookie}"})
        r2 = other.getresponse()
        assert r2.status == 200
        st, _, _ = site.request("POST", "/web/logout", cookie=mine,
                                headers={"X-CSRF-Token": my_csrf})
        assert st == 204
        assert ws.close_code() == 1008
        ws.close()
        read_to_end(r)  # ends (a read that never ended would time out)
        c.close()
        vd.docker("create", "--name", "after-logout", "busybox", "true")
        event = json.loads(r2.readline())
        assert event["Actor"]["Attributes"]["name"] == "after-logout"
        other.close()
    finally:
        vd.docker("rm", "-f", "held", "after-logout", check=False)


SESSIONS_PORT = 8445


def test_sessions_survive_restart(netns, build_dir, tmp_path):
    """Sessions are kept under the data root (0600, the cookie only as its SHA-256): a restart
    keeps them; a new password ends them with their streams, and a restart does not bring them
    back; nor a logged-out one."""
    vd = test_daemon.Vesseld(build_dir, tmp_path, prefix=["nsenter", f"--net={netns}"],
                             extra=["--web", f"127.0.0.1:{SESSIONS_PORT}"])
    try:
        web = Web(vd, SESSIONS_PORT)
        set_password(vd, PASSWORD)
        st, h, body = web.login()
        assert st == 200
        cookie, csrf = session_cookie(h)[0], body["csrf"]
        path = vd.data / "web" / "sessions.json"
        assert oct(path.stat().st_mode & 0o777) == "0o600"
        saved = path.read_text()
        assert cookie not in saved and hashlib.sha256(cookie.encode()).hexdigest() in saved
        vd.stop()
        vd.start()
        st, _, body = web.request("GET", "/web/session", cookie=cookie)
        assert st == 200 and json.loads(body)["csrf"] == csrf
        assert web.request("GET", "/api/_ping", cookie=cookie)[2] == b"OK"
        c = web.conn()
        c.request("GET", "/api/events", headers={"Cookie": f"vessel_session={cookie}"})
        r = c.getresponse()
        assert r.status == 200
        set_password(vd, PASSWORD + " again")
        read_to_end(r)
        c.close()
        assert web.request("GET", "/api/_ping", cookie=cookie)[0] == 401
        vd.stop()
        vd.start()
        assert web.request("GET", "/api/_ping", cookie=cookie)[0] == 401
        st, h, body = web.login(PASSWORD + " again")
        assert st == 200
        cookie, csrf = session_cookie(h)[0], body["csrf"]
        assert web.request("POST", "/web/logout", cookie=cookie,
                           headers={"X-CSRF-Token": csrf})[0] == 204
        vd.stop()
        vd.start()
        assert web.request("GET", "/api/_ping", cookie=cookie)[0] == 401
    finally:
        vd.cleanup()
