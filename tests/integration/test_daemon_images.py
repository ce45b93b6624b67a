"""vesseld's image endpoints against real registries: push and login (Debian's docker-registry with
htpasswd authentication and TLS, started here on loopback), pull progress streamed as it happens,
image list filters, system prune and df, and image requests served while a long load runs.
Every test starts its own vesseld (see test_daemon.Vesseld) and registry."""
import base64
import gzip
import hashlib
import http.client
import io
import json
import os
import shutil
import socket
import subprocess
import tarfile
import threading
import time

import pytest

import oci_images
from test_daemon import DOCKER, Vesseld, busybox_archive

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="containers need root"),
    pytest.mark.skipif(not shutil.which("docker-registry"), reason="no docker-registry"),
]


@pytest.fixture(scope="module")
def image_tar(tmp_path_factory):
    return busybox_archive(tmp_path_factory.mktemp("image") / "busybox.tar")


@pytest.fixture
def vd(build_dir, tmp_path):
    (tmp_path / "vd").mkdir()
    d = Vesseld(build_dir, tmp_path / "vd")
    yield d
    d.cleanup()


@pytest.fixture
def vdi(vd, image_tar):
    vd.docker("load", "-i", str(image_tar))
    return vd


class UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost", timeout=120)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(120)
        self.sock.connect(self.path)


def registry_auth(user, password):
    doc = json.dumps({"username": user, "password": password}).encode()
    return base64.urlsafe_b64encode(doc).decode()


# ------------------------------------------------------------------ push and login


def test_login_push_pull_with_htpasswd_and_tls(vdi, tmp_path):
    reg = oci_images.Registry(tmp_path / "registry", users={"alice": "s3cret"}, tls=True)
    try:
        name = f"{reg.host}/team/box:v1"
        vdi.docker("tag", "busybox:latest", name)
        # without credentials the registry refuses the push
        r = vdi.docker("push", name, check=False)
        assert r.returncode != 0 and reg.host in r.stdout + r.stderr
        r = vdi.docker("login", "-u", "alice", "-p", "wrong", reg.host, check=False)
        assert r.returncode != 0 and "401 Unauthorized" in r.stderr
        r = vdi.docker("login", "-u", "alice", "--password-stdin", reg.host, input="s3cret\n")
        assert "Login Succeeded" in r.stdout
        r = vdi.docker("push", name)
        assert f"The push refers to repository [{reg.host}/team/box]" in r.stdout
        assert "Pushed" in r.stdout and "v1: digest: sha256:" in r.stdout
        digest = r.stdout.split("digest: ")[1].split()[0]
        # the registry has exactly what we sent: the manifest under its digest, every blob
        look = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", "--creds",
                               "alice:s3cret", f"docker://{name}"], capture_output=True,
                              check=True).stdout
        assert "sha256:" + hashlib.sha256(look).hexdigest() == digest
        # a second push finds every layer there
        again = vdi.docker("push", name)
        assert "Layer already exists" in again.stdout
        # pulled back under another name after the local copy is gone
        vdi.docker("rmi", name)
        r = vdi.docker("pull", name)
        assert f"Status: Downloaded newer image for {name}" in r.stdout
        assert f"Digest: {digest}" in r.stdout
        r = vdi.docker("pull", name)
        assert f"Status: Image is up to date for {name}" in r.stdout
        # the pull used the client's credentials: without them the registry says no
        vdi.docker("logout", reg.host)
        vdi.docker("rmi", name)
        r = vdi.docker("pull", name, check=False)
        assert r.returncode != 0
    finally:
        reg.stop()


def test_push_sends_plain_layers_gzipped_once(vdi, tmp_path):
    """Layers stored as plain tars (a load, a build) go to the registry gzipped, with the
    standard media type; each gzip blob is made once, so pushing the image again (another tag,
    another repository) compresses nothing and gives the same manifest."""
    import urllib.request
    reg = oci_images.Registry(tmp_path / "registry")
    try:
        name = f"{reg.host}/gz/box:v1"
        vdi.docker("tag", "busybox:latest", name)
        r = vdi.docker("push", name)
        digest = r.stdout.split("digest: ")[1].split()[0]
        raw = urllib.request.urlopen(urllib.request.Request(
            f"http://{reg.host}/v2/gz/box/manifests/v1",
            headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})).read()
        assert "sha256:" + hashlib.sha256(raw).hexdigest() == digest
        manifest = json.loads(raw)
        diff_ids = json.loads(vdi.docker("image", "inspect", "busybox:latest").stdout)[0][
            "RootFS"]["Layers"]
        assert len(manifest["layers"]) == len(diff_ids)
        for layer, diff_id in zip(manifest["layers"], diff_ids):
            assert layer["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip"
            blob = urllib.request.urlopen(
                f"http://{reg.host}/v2/gz/box/blobs/{layer['digest']}").read()
            assert len(blob) == layer["size"]
            assert "sha256:" + hashlib.sha256(blob).hexdigest() == layer["digest"]
            assert "sha256:" + hashlib.sha256(gzip.decompress(blob)).hexdigest() == diff_id
        made = sorted((vdi.data / "compressed/sha256").iterdir())
        assert len(made) == len(diff_ids)
        stamps = [(p.stat().st_mtime_ns, p.stat().st_ino) for p in made]
        # again, under another repository: the same blobs, the same manifest, nothing compressed
        other = f"{reg.host}/gz/again:v2"
        vdi.docker("tag", "busybox:latest", other)
        r = vdi.docker("push", other)
        assert r.stdout.split("digest: ")[1].split()[0] == digest
        assert sorted((vdi.data / "compressed/sha256").iterdir()) == made
        assert [(p.stat().st_mtime_ns, p.stat().st_ino) for p in made] == stamps
        assert "Layer already exists" in vdi.docker("push", name).stdout
        # what the registry has runs: pulled back after the local image is gone
        vdi.docker("rmi", name, other, "busybox:latest")
        vdi.docker("pull", name)
        assert vdi.docker("run", "--rm", name, "echo", "pulled").stdout == "pulled\n"
    finally:
        reg.stop()


def test_pull_picks_the_platform_from_an_index(vd, tmp_path):
    """docker pull takes the host's platform from a multi-platform index, or the one asked for
    with --platform; a platform the index lacks is refused by name."""
    layout = tmp_path / "layout"
    oi_index = oci_images.make_arch_images(layout, ["riscv64", "amd64"])
    oci_images.write_index(layout, [(oi_index, "multi")], None)
    reg = oci_images.Registry(tmp_path / "registry")
    try:
        name = f"{reg.host}/test/multi:latest"
        oci_images.skopeo_push(layout, "multi", name, extra=["--all"])
        vd.docker("pull", name)
        assert json.loads(vd.docker("image", "inspect", name).stdout)[0]["Architecture"] == \
            "amd64"
        assert vd.docker("run", "--rm", name, "cat", "/arch").stdout == "amd64\n"
        vd.docker("pull", "--platform", "linux/riscv64", name)
        assert json.loads(vd.docker("image", "inspect", name).stdout)[0]["Architecture"] == \
            "riscv64"
        r = vd.docker("pull", "--platform", "linux/s390x", name, check=False)
        assert r.returncode != 0 and "linux/s390x" in r.stderr
    finally:
        reg.stop()


def test_bad_registry_auth_header_is_refused(vdi):
    conn = UnixHTTP(str(vdi.sock))
    conn.request("POST", "/v1.41/images/busybox/push?tag=latest",
                 headers={"X-Registry-Auth": "not base64 at all!"})
    r = conn.getresponse()
    body = json.loads(r.read())
    assert r.status == 400 and "X-Registry-Auth" in body["message"]
    conn.close()
    r = vdi.docker("push", "nothing-here/at-all:v9", check=False)
    assert r.returncode != 0 and "does not exist locally" in r.stderr


# ------------------------------------------------------------------ live pull progress


def test_pull_progress_streams_as_it_happens(vd, tmp_path):
    """The proxy in front of the registry stalls halfway through the big layer: the messages
    before the stall must reach the client while the pull is still going on."""
    reg = oci_images.Registry(tmp_path / "registry")
    proxy = None
    try:
        layout = tmp_path / "layout"
        big = oci_images.busybox_layer().file("big", os.urandom(4 << 20)).tar()
        small = oci_images.Layer().file("hello", "hello\n").tar()
        desc = oci_images.make_image(layout, [big, small], cmd=["cat", "/hello"])
        oci_images.write_index(layout, [(desc, "latest")], None)
        oci_images.skopeo_push(layout, "latest", f"{reg.host}/live/img:latest")
        manifest = json.loads((layout / "blobs/sha256" / desc["digest"][7:]).read_text())
        big_digest = manifest["layers"][0]["digest"]
        proxy = oci_images.AuthProxy(reg.host)
        proxy.faults = {big_digest: ["stall"]}
        # the layer stays stalled until the test has looked (a fixed pause can end first on a
        # loaded machine)
        proxy.stall_gate = threading.Event()
        name = f"{proxy.host}/live/img"

        conn = UnixHTTP(str(vd.sock))
        conn.request("POST", f"/v1.41/images/create?fromImage={name}&tag=latest",
                     headers={"X-Registry-Auth": registry_auth("user", "secret")})
        resp = conn.getresponse()
        assert resp.status == 200
        msgs = []
        short = big_digest[7:19]
        while True:
            line = resp.readline()
            assert line, f"stream ended early: {msgs}"
            m = json.loads(line)
            msgs.append(m)
            if m.get("id") == short and m["status"] == "Downloading" and \
                    m["progressDetail"].get("current", 0) > 0:
                break
        # the registry is stalled: the image cannot be complete, yet the client heard of it
        listed = vd.docker("images", "--format", "{{.Repository}}").stdout.split()
        proxy.stall_gate.set()
        assert name not in listed
        for line in resp:
            msgs.append(json.loads(line))
        conn.close()
        assert msgs[0] == {"status": "Pulling from live/img", "id": "latest"}
        for layer in manifest["layers"]:
            states = [m["status"] for m in msgs if m.get("id") == layer["digest"][7:19]]
            order = ["Pulling fs layer", "Downloading", "Download complete", "Extracting",
                     "Pull complete"]
            seen = [s for s in order if s in states]
            assert seen == order or (seen == [s for s in order if s != "Downloading"]), states
            assert [states.index(s) for s in seen] == sorted(states.index(s) for s in seen)
        # told during the stall, not after curl gave the stalled transfer up and fetched again
        assert [p for m, p in proxy.requests if m == "GET" and big_digest in p] == \
            [f"/v2/live/img/blobs/{big_digest}"], proxy.requests
        assert msgs[-2]["status"] == "Digest: " + desc["digest"]
        assert msgs[-1]["status"] == f"Status: Downloaded newer image for {name}:latest"
        assert name in vd.docker("images", "--format", "{{.Repository}}").stdout.split()
        assert vd.docker("run", "--rm", f"{name}:latest").stdout == "hello\n"
        # without the credentials the token server says no, before any progress
        vd.docker("rmi", f"{name}:latest")
        r = vd.docker("pull", f"{name}:latest", check=False)
        assert r.returncode != 0 and "token server" in r.stderr
    finally:
        if proxy:
            if proxy.stall_gate is not None:
                proxy.stall_gate.set()
            proxy.stop()
        reg.stop()


# ------------------------------------------------------------------ the store's lock


def zeros_archive(path, size):
    """A docker-archive whose one layer is a gzip tar holding `size` zero bytes: small to send,
    long to unpack (every byte is written and hashed)."""
    ti = tarfile.TarInfo("zeros")
    ti.size = size
    ti.mtime = 1700000000
    diff = hashlib.sha256()
    blob = io.BytesIO()
    with gzip.GzipFile(fileobj=blob, mode="wb", compresslevel=1, mtime=0) as gz:
        def put(b):
            diff.update(b)
            gz.write(b)
        put(ti.tobuf(format=tarfile.USTAR_FORMAT))
        chunk = bytes(1 << 20)
        for _ in range(size // len(chunk)):
            put(chunk)
        put(bytes(1024))  # the end of the archive (size is a multiple of 512)
    config = {"architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z",
              "config": {"Cmd": ["true"]}}
    return oci_images.docker_archive(path, [blob.getvalue()], [diff.hexdigest()], config,
                                     ["zeros:big"])


def test_image_requests_and_creates_go_on_during_a_long_load(vdi, tmp_path):
    archive = zeros_archive(tmp_path / "zeros.tar", 1 << 30)
    load = subprocess.Popen([DOCKER, "load", "-i", str(archive)], env=vdi.env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        tmp = vdi.data / "tmp"
        while not any(p.name.startswith("layer-") for p in tmp.iterdir()):
            assert load.poll() is None, load.communicate()
            time.sleep(0.02)
        # the load is unpacking its layer now, holding the store's shared lock
        listed = vdi.docker("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
        assert "busybox:latest" in listed and "zeros:big" not in listed
        cid = vdi.docker("create", "busybox", "true").stdout.strip()
        assert vdi.docker("inspect", "-f", "{{.State.Status}}", cid).stdout.strip() == "created"
        assert load.poll() is None, "the load ended before the other requests were answered"
        out, err = load.communicate(timeout=600)
        assert load.returncode == 0, err
        assert "Loaded image: zeros:big" in out
        assert "zeros:big" in vdi.docker("images", "--format", "{{.Repository}}:{{.Tag}}").stdout
    finally:
        if load.poll() is None:
            load.kill()
            load.wait()


# ------------------------------------------------------------------ filters, prune, df


def one_layer_archive(path, tag, created, labels):
    """A docker-archive of a tiny image with its own layer, creation time and labels."""
    layer = oci_images.Layer().file("id", tag + "\n").tar()
    config = {"architecture": "amd64", "os": "linux", "created": created,
              "config": {"Cmd": ["true"], "Labels": labels}}
    return oci_images.docker_archive(path, [layer], [hashlib.sha256(layer).hexdigest()], config,
                                     [tag])


def names(vd, *args):
    out = vd.docker("images", "--format", "{{.Repository}}:{{.Tag}}", *args).stdout.split()
    return sorted(out)


def test_image_list_filters(vdi, tmp_path):
    for tag, created, labels in [("old/app:1", "2020-01-01T00:00:00Z", {"tier": "db"}),
                                 ("mid/app:2", "2022-06-01T00:00:00.5Z", {"tier": "web"}),
                                 ("new/tool:3", "2025-01-01T00:00:00Z", {"tier": "web", "x": "y"})]:
        vdi.docker("load", "-i", str(one_layer_archive(tmp_path / f"{created}.tar", tag,
                                                       created, labels)))
    vdi.docker("tag", "mid/app:2", "mid/app:extra")
    every = ["busybox:latest", "mid/app:2", "mid/app:extra", "new/tool:3", "old/app:1"]
    assert names(vdi) == every
    assert names(vdi, "-f", "label=tier=web") == ["mid/app:2", "mid/app:extra", "new/tool:3"]
    assert names(vdi, "-f", "label=tier") == ["mid/app:2", "mid/app:extra", "new/tool:3",
                                              "old/app:1"]
    assert names(vdi, "-f", "label=tier=web", "-f", "label=x") == ["new/tool:3"]
    assert names(vdi, "-f", "before=mid/app:2") == ["old/app:1"]
    assert names(vdi, "-f", "since=mid/app:2") == ["busybox:latest", "new/tool:3"]
    assert names(vdi, "-f", "reference=*/app") == ["mid/app:2", "mid/app:extra", "old/app:1"]
    # a tag pattern keeps only the image's matching names
    assert names(vdi, "-f", "reference=mid/app:ex*") == ["mid/app:extra"]
    assert names(vdi, "mid/app") == ["mid/app:2", "mid/app:extra"]
    assert names(vdi, "-f", "dangling=false") == every
    assert names(vdi, "-f", "dangling=true") == []
    # an image a container keeps after rmi -f is listed untagged, and it is the dangling one
    cid = vdi.docker("create", "old/app:1").stdout.strip()
    vdi.docker("rmi", "-f", "old/app:1")
    assert names(vdi, "-f", "dangling=true") == ["<none>:<none>"]
    assert "<none>:<none>" in names(vdi)
    vdi.docker("rm", cid)
    # errors name the problem
    r = vdi.docker("images", "-f", "colour=blue", check=False)
    assert r.returncode != 0 and "invalid filter 'colour'" in r.stderr
    r = vdi.docker("images", "-f", "dangling=maybe", check=False)
    assert r.returncode != 0 and "dangling=maybe" in r.stderr
    r = vdi.docker("images", "-f", "before=no/such:image", check=False)
    assert r.returncode != 0 and "No such image" in r.stderr


def test_system_prune_and_df(vdi, tmp_path):
    vdi.docker("load", "-i", str(one_layer_archive(tmp_path / "a.tar", "spare/img:1",
                                                   "2021-01-01T00:00:00Z", {})))
    kept = vdi.docker("run", "-d", "busybox", "sleep", "100").stdout.strip()
    gone = vdi.docker("create", "busybox", "true").stdout.strip()
    vdi.docker("volume", "create", "unused")
    df = vdi.docker("system", "df", "-v").stdout
    assert "busybox" in df and "spare/img" in df and kept[:12] in df and gone[:12] in df
    assert "unused" in df
    raw = json.loads(vdi.raw(b"GET /v1.41/system/df HTTP/1.1\r\nHost: d\r\nConnection: close\r\n"
                             b"\r\n").split(b"\r\n\r\n", 1)[1])
    bb = [i for i in raw["Images"] if "busybox:latest" in i["RepoTags"]][0]
    assert bb["Containers"] == 2 and bb["SharedSize"] == 0
    assert {c["Id"] for c in raw["Containers"]} == {kept, gone}
    r = vdi.docker("system", "prune", "-f")
    assert gone in r.stdout and "Total reclaimed space" in r.stdout
    ps = vdi.docker("ps", "-aq", "--no-trunc").stdout.split()
    assert ps == [kept]
    # -a takes every image no container uses; --volumes the unused volumes
    r = vdi.docker("system", "prune", "-af", "--volumes")
    assert "spare/img:1" in r.stdout and "unused" in r.stdout
    assert names(vdi) == ["busybox:latest"]
    vdi.docker("rm", "-f", kept)


# ------------------------------------------------------------------ --config and TCP


def run_vesseld(build_dir, *args):
    """Start vesseld with these arguments; a finished process when it refused to start."""
    # no default bridge: this vesseld runs in the host's network namespace
    p = subprocess.Popen([str(build_dir / "vesseld"), "--bridge", "none", *args],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        p.wait(1)
    except subprocess.TimeoutExpired:
        pass
    return p


def refused(build_dir, *args):
    p = run_vesseld(build_dir, *args)
    if p.poll() is None:
        p.terminate()
        p.wait(10)
        raise AssertionError(f"vesseld {args} started")
    assert p.returncode != 0
    return p.stdout.read()


def test_config_file_and_tcp_listener(build_dir, tmp_path, image_tar):
    port = oci_images.free_port()
    sock = tmp_path / "d.sock"
    cfg = {"data-root": str(tmp_path / "data"), "exec-root": str(tmp_path / "exec"),
           "hosts": [f"unix://{sock}", f"tcp://127.0.0.1:{port}"], "log-level": "info",
           "debug": True, "live-restore": True,
           "default-ulimits": {"nofile": {"Name": "nofile", "Soft": 4096, "Hard": 8192}}}
    path = tmp_path / "daemon.json"
    path.write_text(json.dumps(cfg))
    # a directive given both ways, unknown keys, wrong types: refused, naming them
    out = refused(build_dir, "--config", str(path), "--data-root", str(tmp_path / "other"))
    assert "specified both as a flag and in the configuration file" in out
    assert f"data-root: (from flag: {tmp_path / 'other'}, from file: {tmp_path / 'data'})" in out
    out = refused(build_dir, "--config", str(path), "-H", "unix:///nowhere.sock")
    assert "hosts: (from flag: [unix:///nowhere.sock]" in out
    for bad, words in [({"bip": "10.0.0.1/24", "colour": 1}, "match any configuration option: "
                        "bip, colour"),
                       ({"hosts": "tcp://127.0.0.1:1"}, "hosts"),
                       ({"live-restore": False}, "live-restore false is not supported"),
                       ({"default-ulimits": {"nofile": {"Soft": 9, "Hard": 1}}},
                        "soft limit 9 is above hard limit 1"),
                       ({"default-ulimits": {"wings": {"Soft": 1, "Hard": 1}}},
                        "invalid ulimit type: wings")]:
        bad_path = tmp_path / "bad.json"
        bad_path.write_text(json.dumps(bad))
        out = refused(build_dir, "--config", str(bad_path))
        assert words in out and str(bad_path) in out, out
    bad_path.write_text("{not json")
    assert str(bad_path) in refused(build_dir, "--config", str(bad_path))

    p = run_vesseld(build_dir, "--config", str(path))
    try:
        assert p.poll() is None, p.stdout.read()
        env = dict(os.environ, DOCKER_HOST=f"tcp://127.0.0.1:{port}",
                   DOCKER_CONFIG=str(tmp_path / "cfg"))

        def docker(*args, **kw):
            return subprocess.run([DOCKER, *args], env=env, capture_output=True, text=True,
                                  timeout=60, check=True, **kw)
        for _ in range(200):
            if subprocess.run([DOCKER, "version"], env=env, capture_output=True).returncode == 0:
                break
            time.sleep(0.02)
        info = json.loads(docker("info", "--format", "{{json .}}").stdout)
        assert info["DockerRootDir"] == str(tmp_path / "data")
        docker("load", "-i", str(image_tar))
        # the unix socket from the same file serves too
        unix = dict(env, DOCKER_HOST=f"unix://{sock}")
        r = subprocess.run([DOCKER, "images", "-q"], env=unix, capture_output=True, text=True)
        assert r.returncode == 0 and r.stdout.strip()
        # containers get the default ulimits; a hijacked stream works over TCP
        r = docker("run", "--rm", "busybox", "sh", "-c", "ulimit -n; ulimit -Hn")
        assert r.stdout.split() == ["4096", "8192"]
        r = docker("run", "--rm", "-i", "busybox", "cat", input="through tcp\n")
        assert r.stdout == "through tcp\n"
    finally:
        p.terminate()
        out, _ = p.communicate(timeout=20)
    assert p.returncode == 0
    assert "Binding to IP address without --tlsverify is insecure" in out
    assert "vesseld: debug: GET /v1.41/info" in out  # "debug": true in the file
    assert not sock.exists()


def test_logs_larger_than_the_send_buffer_come_whole(vdi):
    """The log reader stops at 1 MiB unsent and must read on when the socket took it all."""
    cid = vdi.docker("run", "-d", "busybox", "seq", "1", "400000").stdout.strip()
    vdi.docker("wait", cid)
    expected = "".join(f"{i}\n" for i in range(1, 400001))
    assert len(expected) > 2 << 20
    r = subprocess.run([DOCKER, "logs", cid], env=vdi.env, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0 and r.stdout == expected
    vdi.docker("rm", cid)
