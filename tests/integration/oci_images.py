"""Helpers for the image tests and bench/image-pull: build OCI image layouts from Python tar
files (deterministic), and run Debian's docker-registry on a free loopback port."""
import gzip
import hashlib
import io
import json
import os
import pathlib
import shutil
import socket
import subprocess
import tarfile
import tempfile
import time
import urllib.request

BUSYBOX = "/bin/busybox"
APPLETS = ["sh", "cat", "ls", "echo", "test", "stat", "readlink", "true", "false", "id", "pwd",
           "env", "getfattr", "wc", "sleep"]


def _info(name, type_=tarfile.REGTYPE, mode=0o644, size=0, **kw):
    ti = tarfile.TarInfo(name)
    ti.type = type_
    ti.mode = mode
    ti.size = size
    ti.mtime = 1700000000
    ti.uid = kw.get("uid", 0)
    ti.gid = kw.get("gid", 0)
    ti.uname = ti.gname = ""
    if "linkname" in kw:
        ti.linkname = kw["linkname"]
    if "pax" in kw:
        ti.pax_headers = kw["pax"]
    return ti


class Layer:
    """Accumulates tar entries; .tar() gives the uncompressed bytes."""

    def __init__(self):
        self.buf = io.BytesIO()
        self.tf = tarfile.open(fileobj=self.buf, mode="w", format=tarfile.PAX_FORMAT)

    def dir(self, name, mode=0o755, **kw):
        self.tf.addfile(_info(name, tarfile.DIRTYPE, mode, **kw))
        return self

    def file(self, name, data, mode=0o644, **kw):
        if isinstance(data, str):
            data = data.encode()
        self.tf.addfile(_info(name, tarfile.REGTYPE, mode, len(data), **kw), io.BytesIO(data))
        return self

    def symlink(self, name, target):
        self.tf.addfile(_info(name, tarfile.SYMTYPE, 0o777, linkname=target))
        return self

    def hardlink(self, name, target):
        self.tf.addfile(_info(name, tarfile.LNKTYPE, 0o644, linkname=target))
        return self

    def tar(self):
        self.tf.close()
        return self.buf.getvalue()


def busybox_layer():
    l = Layer().dir("bin").dir("etc").dir("tmp", 0o1777).dir("root", 0o700)
    l.file("bin/busybox", pathlib.Path(BUSYBOX).read_bytes(), 0o755)
    for a in APPLETS:
        l.symlink(f"bin/{a}", "busybox")
    l.file("etc/passwd", "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n")
    l.file("etc/group", "root:x:0:\nnogroup:x:65534:\n")
    return l


def sha(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def write_blob(layout, data):
    d = sha(data)
    p = pathlib.Path(layout) / "blobs" / "sha256" / d[7:]
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    return d


def make_image(layout, tars, arch="amd64", cmd=("/bin/sh",), env=None, compress=True):
    """Write one image (list of uncompressed layer tars) into an OCI layout; returns the
    manifest descriptor (dict)."""
    layout = pathlib.Path(layout)
    layout.mkdir(parents=True, exist_ok=True)
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    layers, diff_ids = [], []
    for t in tars:
        diff_ids.append(sha(t))
        blob = gzip.compress(t, compresslevel=6, mtime=0) if compress else t
        layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar" +
                       ("+gzip" if compress else ""),
                       "digest": write_blob(layout, blob), "size": len(blob)})
    config = {"created": "2024-01-01T00:00:00Z", "architecture": arch, "os": "linux",
              "config": {"Env": env or ["PATH=/bin"], "Cmd": list(cmd), "WorkingDir": "/"},
              "rootfs": {"type": "layers", "diff_ids": diff_ids}}
    cdata = json.dumps(config, sort_keys=True).encode()
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                           "digest": write_blob(layout, cdata), "size": len(cdata)},
                "layers": layers}
    mdata = json.dumps(manifest).encode()
    return {"mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": write_blob(layout, mdata), "size": len(mdata),
            "platform": {"architecture": arch, "os": "linux"}}


def make_index(layout, manifests):
    """An OCI image index of the manifest descriptors given (each with its platform), written
    as a blob of layout; returns its descriptor."""
    idx = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
           "manifests": list(manifests)}
    data = json.dumps(idx).encode()
    return {"mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": write_blob(layout, data), "size": len(data)}


def make_arch_images(layout, arches):
    """One busybox image per architecture, each with /arch naming it, and their index."""
    return make_index(layout, [
        make_image(layout, [busybox_layer().file("arch", f"{a}\n").tar()], arch=a)
        for a in arches])


def write_index(layout, entries, tag):
    """index.json naming one entry per tag: entries is a list of (descriptor, tag)."""
    idx = {"schemaVersion": 2, "manifests": []}
    for desc, t in entries:
        d = dict(desc)
        d["annotations"] = {"org.opencontainers.image.ref.name": t}
        idx["manifests"].append(d)
    (pathlib.Path(layout) / "index.json").write_text(json.dumps(idx))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Registry:
    """Debian's docker-registry with filesystem storage in a temp dir, on 127.0.0.1; with
    `users` ({name: password}) it demands basic authentication (an htpasswd file, bcrypt), with
    `tls` it serves HTTPS with a self-signed certificate made here."""

    def __init__(self, workdir, users=None, tls=False):
        self.dir = pathlib.Path(workdir)
        self.storage = self.dir / "storage"
        self.storage.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        extra = ""
        if users:
            import warnings
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                import crypt
                lines = [f"{u}:{crypt.crypt(pw, crypt.METHOD_BLOWFISH)}\n"
                         for u, pw in users.items()]
            (self.dir / "htpasswd").write_text("".join(lines))
            extra += f"""auth:
  htpasswd:
    realm: vessel-test
    path: {self.dir / "htpasswd"}
"""
        tls_cfg = ""
        if tls:
            subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                            "-keyout", str(self.dir / "key.pem"), "-out", str(self.dir / "cert.pem")],
                           check=True, capture_output=True)
            tls_cfg = f"""  tls:
    certificate: {self.dir / "cert.pem"}
    key: {self.dir / "key.pem"}
"""
        cfg = self.dir / "config.yml"
        cfg.write_text(f"""version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: {self.storage}
  delete:
    enabled: true
{extra}http:
  addr: 127.0.0.1:{self.port}
{tls_cfg}""")
        self.log = open(self.dir / "registry.log", "w")
        self.proc = subprocess.Popen(["/usr/bin/docker-registry", "serve", str(cfg)],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        import ssl
        import urllib.error
        ctx = ssl._create_unverified_context()
        for _ in range(100):
            try:
                urllib.request.urlopen(f"{'https' if tls else 'http'}://{self.host}/v2/",
                                       timeout=1, context=ctx)
                return
            except urllib.error.HTTPError as e:
                if e.code == 401:  # up, and asking for the credentials
                    return
                time.sleep(0.1)
            except Exception:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("docker-registry did not start")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()

    def blob_path(self, digest):
        h = digest[7:]
        return self.storage / "docker/registry/v2/blobs/sha256" / h[:2] / h / "data"


def docker_archive(path, layer_blobs, diff_ids, config, repo_tags):
    """Write a docker-archive (what `docker save` writes): layer_blobs are the layer files as
    stored (plain or compressed tars), diff_ids their uncompressed sha256 hex digests, config
    the image config without rootfs (added here)."""
    config = dict(config, rootfs={"type": "layers", "diff_ids": ["sha256:" + d for d in diff_ids]})
    cdata = json.dumps(config).encode()
    cname = hashlib.sha256(cdata).hexdigest() + ".json"
    names = [f"{d}/layer.tar" for d in diff_ids]
    manifest = [{"Config": cname, "RepoTags": list(repo_tags), "Layers": names}]
    with tarfile.open(path, "w") as tf:
        for name, data in [*zip(names, layer_blobs), (cname, cdata),
                           ("manifest.json", json.dumps(manifest).encode())]:
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    return path


def skopeo_push(layout, tag, dest, extra=()):
    subprocess.run(["skopeo", "copy", "--quiet", "--dest-tls-verify=false", *extra,
                    f"oci:{layout}:{tag}", f"docker://{dest}"], check=True)


class AuthProxy:
    """A front for a Registry that demands Bearer tokens (issued by its own /token endpoint for
    basic credentials user:secret) and can inject faults: `faults` maps a path substring to a
    list of actions consumed one per matching request: "429", "500", "drop" (close the
    connection halfway through the body), "stall" (pause halfway through the body: 5 s, or until
    stall_gate, a threading.Event a test may set, is set)."""

    def __init__(self, upstream, user="user", password="secret"):
        import base64
        import http.client
        import http.server
        import threading

        self.upstream = upstream
        self.faults = {}
        self.stall_gate = None
        self.token_requests = []
        self.requests = []  # (method, path) of every request but the token server's
        proxy = self
        good_basic = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _fault(self):
                for key, actions in proxy.faults.items():
                    if key in self.path and actions:
                        return actions.pop(0)
                return None

            def _reply(self, code, body=b"", headers=()):
                self.send_response(code)
                for k, v in headers:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _handle(self):
                if self.path.startswith("/token"):
                    proxy.token_requests.append(self.path)
                    if self.headers.get("Authorization") != good_basic:
                        return self._reply(401, b'{"details":"bad credentials"}')
                    return self._reply(200, b'{"token":"tok-123"}')
                proxy.requests.append((self.command, self.path))
                if self.headers.get("Authorization") != "Bearer tok-123":
                    scope = ""
                    parts = self.path.split("/")
                    if len(parts) > 4:
                        scope = f',scope="repository:{"/".join(parts[2:-2])}:pull"'
                    return self._reply(401, b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}', [
                        ("WWW-Authenticate",
                         f'Bearer realm="http://{proxy.host}/token",service="test"{scope}'),
                        ("Content-Type", "application/json")])
                fault = self._fault()
                if fault in ("429", "500"):
                    return self._reply(int(fault), b'{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}')
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else None
                c = http.client.HTTPConnection(proxy.upstream, timeout=60)
                hdrs = {k: v for k, v in self.headers.items()
                        if k.lower() not in ("authorization", "host", "connection")}
                c.request(self.command, self.path, body=body, headers=hdrs)
                r = c.getresponse()
                data = r.read()
                self.send_response(r.status)
                for k, v in r.getheaders():
                    if k.lower() not in ("connection", "transfer-encoding", "content-length"):
                        if k.lower() == "location":
                            v = v.replace(proxy.upstream, proxy.host)
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command == "HEAD":
                    return
                if fault == "stall":  # then the rest, so the body is whole
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    if proxy.stall_gate is not None:
                        proxy.stall_gate.wait(120)
                    else:
                        time.sleep(5)
                    data = data[len(data) // 2:]
                if fault == "drop":
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                self.wfile.write(data)

            do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _handle

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
