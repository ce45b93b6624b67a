"""vessel's image store and registry client against Debian's docker-registry, skopeo and podman.

The registry runs on 127.0.0.1:<free port> with storage in a temp dir; every image is built by
the test itself (busybox-static based, several layers)."""
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tarfile

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import oci_images as oi  # noqa: E402

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("docker-registry") or
                                not shutil.which("skopeo"),
                                reason="needs root, docker-registry and skopeo")


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("images")


@pytest.fixture(scope="module")
def registry(work):
    r = oi.Registry(work / "registry")
    yield r
    r.stop()


def layers_main():
    l1 = (oi.busybox_layer().file("etc/todelete", "bye\n").dir("data").file("data/a", "A")
          .file("data/b", "B").tar())
    l2 = (oi.Layer().dir("etc").file("etc/hello", "hello\n", pax={"SCHILY.xattr.user.vessel": "yes"})
          .hardlink("etc/hello2", "etc/hello").symlink("etc/link", "hello")
          .file("etc/.wh.todelete", "").tar())
    l3 = oi.Layer().dir("data").file("data/.wh..wh..opq", "").file("data/c", "C\n").tar()
    return [l1, l2, l3]


@pytest.fixture(scope="module")
def seeded(work, registry):
    """test/bb:latest (3 layers), test/multi:latest (amd64 + riscv64 index)."""
    layout = work / "layout"
    d = oi.make_image(layout, layers_main())
    idesc = oi.make_arch_images(layout, ["riscv64", "amd64"])
    oi.write_index(layout, [(d, "bb"), (idesc, "multi")], None)
    oi.skopeo_push(layout, "bb", f"{registry.host}/test/bb:latest")
    oi.skopeo_push(layout, "multi", f"{registry.host}/test/multi:latest", extra=["--all"])
    return {"bb": d, "multi": idesc, "layout": layout}


class Vessel:
    def __init__(self, build_dir, root):
        self.bin = str(build_dir / "vessel")
        self.root = str(root)

    def __call__(self, *args, check=True, **kw):
        p = subprocess.run([self.bin, "--root", self.root, *args], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, timeout=300, **kw)
        if check and p.returncode != 0:
            raise AssertionError(f"vessel {' '.join(args)} failed ({p.returncode}):\n{p.stderr}")
        return p


@pytest.fixture
def vessel(build_dir, tmp_path):
    v = Vessel(build_dir, tmp_path / "store")
    yield v
    # unmount anything a test left mounted, then drop the store
    for line in open("/proc/self/mounts"):
        mnt = line.split()[1]
        if mnt.startswith(str(tmp_path)):
            subprocess.run(["umount", "-l", mnt], check=False)


def mount_image(vessel, image):
    out = vessel("mount", image).stdout.split()
    return out[0], pathlib.Path(out[1])


def test_pull_gives_merged_layers(vessel, registry, seeded):
    img = f"{registry.host}/test/bb:latest"
    p = vessel("pull", img)
    assert "Digest: " + seeded["bb"]["digest"] in p.stderr
    cid, root = mount_image(vessel, img)
    try:
        assert not (root / "etc/todelete").exists(), "file deleted in a later layer is visible"
        assert (root / "etc/hello").read_text() == "hello\n"
        assert os.stat(root / "etc/hello").st_ino == os.stat(root / "etc/hello2").st_ino
        assert os.readlink(root / "etc/link") == "hello"
        assert os.getxattr(root / "etc/hello", "user.vessel") == b"yes"
        assert sorted(os.listdir(root / "data")) == ["c"], "opaque directory not applied"
        assert os.access(root / "bin/busybox", os.X_OK)
    finally:
        vessel("rm", cid)
    assert not root.exists()


def test_run_shows_merged_content_and_exit_status(vessel, registry, seeded):
    if not shutil.which("runc"):
        pytest.skip("runc missing")
    img = f"{registry.host}/test/bb:latest"
    vessel("pull", "-q", img)
    p = vessel("run", "--rm", "--runtime", "runc", img, "sh", "-c",
               "cat /etc/hello; test -e /etc/todelete || echo gone; ls /data; exit 7",
               check=False)
    assert p.returncode == 7, p.stderr
    assert p.stdout.split() == ["hello", "gone", "c"]
    p = vessel("run", "--name", "keep", "--runtime", "runc", "-e", "FOO=bar", "-w", "/etc", img,
               "sh", "-c", "echo $FOO; pwd")
    assert p.stdout.split() == ["bar", "/etc"]
    ps = vessel("ps", "-a").stdout
    assert "keep" in ps and "Exited (0)" in ps
    vessel("rm", "keep")
    assert "keep" not in vessel("ps", "-a").stdout


def test_images_tag_inspect_rmi_prune(vessel, registry, seeded):
    img = f"{registry.host}/test/bb:latest"
    vessel("pull", "-q", img)
    vessel("tag", img, "local/copy:v2")
    out = vessel("images").stdout
    assert "local/copy" in out and f"{registry.host}/test/bb" in out
    info = json.loads(vessel("image", "inspect", "local/copy:v2").stdout)[0]
    assert info["Digest"] == seeded["bb"]["digest"]
    assert len(info["RootFS"]["Layers"]) == 3
    vessel("rmi", "local/copy:v2")
    assert len(list((pathlib.Path(vessel.root) / "layers/sha256").iterdir())) == 3
    vessel("rmi", img)
    store = pathlib.Path(vessel.root)
    assert list((store / "layers/sha256").iterdir()) == []
    assert list((store / "blobs/sha256").iterdir()) == []
    assert "Images" in vessel("system", "df").stdout


def test_push_then_skopeo_and_podman_get_same_digests(vessel, registry, seeded, tmp_path):
    img = f"{registry.host}/test/bb:latest"
    vessel("pull", "-q", img)
    dest = f"{registry.host}/pushed/copy:v1"
    vessel("push", img, dest)
    raw = subprocess.run(["skopeo", "inspect", "--tls-verify=false", "--raw", f"docker://{dest}"],
                         check=True, stdout=subprocess.PIPE).stdout
    assert oi.sha(raw) == seeded["bb"]["digest"]
    out = tmp_path / "copy"
    subprocess.run(["skopeo", "copy", "--quiet", "--src-tls-verify=false", f"docker://{dest}",
                    f"oci:{out}:x"], check=True)
    idx = json.loads((out / "index.json").read_text())
    assert idx["manifests"][0]["digest"] == seeded["bb"]["digest"]
    # a second push finds every blob already there
    p = vessel("push", img, dest)
    assert "already exists" in p.stderr


PODMAN_CONF = """[containers]
default_ulimits = ["nofile=1024:1024"]
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
"""


def podman(tmp, *args):
    env = dict(os.environ, CONTAINERS_CONF=str(tmp / "containers.conf"))
    (tmp / "containers.conf").write_text(PODMAN_CONF)
    p = subprocess.run(["podman", "--root", str(tmp / "proot"), "--runroot", str(tmp / "prun"),
                        "--storage-driver", "vfs", *args], env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=300)
    assert p.returncode == 0, f"podman {' '.join(args)}: {p.stderr}"
    return p


@pytest.mark.skipif(not shutil.which("podman"), reason="podman missing")
def test_image_pushed_by_podman_is_pulled(vessel, registry, tmp_path):
    import tempfile
    ptmp = pathlib.Path(tempfile.mkdtemp(prefix="vp", dir="/tmp"))  # podman wants a short runroot
    try:
        podman_roundtrip(vessel, registry, tmp_path, ptmp)
    finally:
        subprocess.run(["podman", "--root", str(ptmp / "proot"), "--runroot", str(ptmp / "prun"),
                        "--storage-driver", "vfs", "system", "reset", "-f"],
                       env=dict(os.environ, CONTAINERS_CONF=str(ptmp / "containers.conf")),
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(ptmp, ignore_errors=True)


def podman_roundtrip(vessel, registry, tmp_path, ptmp):
    rootfs = tmp_path / "rootfs.tar"
    rootfs.write_bytes(oi.busybox_layer().file("from-podman", "podman was here\n").tar())
    podman(ptmp, "import", str(rootfs), "localhost/frompodman:latest")
    podman(ptmp, "push", "--tls-verify=false", "localhost/frompodman:latest",
           f"docker://{registry.host}/podman/img:latest")
    vessel("pull", f"{registry.host}/podman/img:latest")
    cid, root = mount_image(vessel, f"{registry.host}/podman/img:latest")
    assert (root / "from-podman").read_text() == "podman was here\n"
    vessel("rm", cid)
    # and the other way round: vessel pushes, podman pulls and sees the same image
    vessel("push", f"{registry.host}/podman/img:latest", f"{registry.host}/podman/back:1")
    podman(ptmp, "pull", "--tls-verify=false", f"{registry.host}/podman/back:1")
    ours = json.loads(vessel("image", "inspect", f"{registry.host}/podman/img:latest").stdout)[0]
    theirs = json.loads(podman(ptmp, "image", "inspect", f"{registry.host}/podman/back:1").stdout)[0]
    assert f"{registry.host}/podman/back@{ours['Digest']}" in theirs["RepoDigests"]


def test_multi_platform_index(vessel, registry, seeded):
    img = f"{registry.host}/test/multi:latest"
    vessel("pull", img)
    info = json.loads(vessel("image", "inspect", img).stdout)[0]
    assert info["Architecture"] == "amd64"
    cid, root = mount_image(vessel, img)
    assert (root / "arch").read_text() == "amd64\n"
    vessel("rm", cid)
    vessel("pull", "--platform", "linux/riscv64", img)
    info = json.loads(vessel("image", "inspect", img).stdout)[0]
    assert info["Architecture"] == "riscv64"
    p = vessel("pull", "--platform", "linux/s390x", img, check=False)
    assert p.returncode != 0 and "linux/s390x" in p.stderr


def assert_nothing_trusted(vessel, name):
    store = pathlib.Path(vessel.root)
    assert list((store / "tmp").iterdir()) == [], "partial files left in tmp/"
    assert list((store / "layers/sha256").iterdir()) == []
    tags = store / "repositories.json"
    assert not tags.exists() or name not in tags.read_text()


def push_single(registry, work, repo, tars):
    layout = work / ("layout-" + repo.replace("/", "-"))
    d = oi.make_image(layout, tars)
    oi.write_index(layout, [(d, "x")], None)
    oi.skopeo_push(layout, "x", f"{registry.host}/{repo}:latest")
    return d, layout


def test_corrupt_blob_is_refused(vessel, registry, work):
    d, layout = push_single(registry, work, "bad/corrupt",
                            [oi.Layer().file("f", "x" * 5000).tar()])
    m = json.loads((layout / "blobs/sha256" / d["digest"][7:]).read_text())
    layer = m["layers"][0]["digest"]
    data = bytearray(registry.blob_path(layer).read_bytes())
    data[len(data) // 2] ^= 0xFF
    registry.blob_path(layer).write_bytes(bytes(data))
    img = f"{registry.host}/bad/corrupt:latest"
    p = vessel("pull", img, check=False)
    assert p.returncode != 0
    assert img in p.stderr and "digest mismatch" in p.stderr
    assert not (pathlib.Path(vessel.root) / "blobs/sha256" / layer[7:]).exists()
    assert_nothing_trusted(vessel, "bad/corrupt")


def test_missing_blob_is_reported(vessel, registry, work):
    d, layout = push_single(registry, work, "bad/missing", [oi.Layer().file("f", "missing").tar()])
    m = json.loads((layout / "blobs/sha256" / d["digest"][7:]).read_text())
    layer = m["layers"][0]["digest"]
    shutil.rmtree(registry.blob_path(layer).parent)
    img = f"{registry.host}/bad/missing:latest"
    p = vessel("pull", img, check=False)
    assert p.returncode != 0
    assert img in p.stderr and layer in p.stderr and "404" in p.stderr
    assert_nothing_trusted(vessel, "bad/missing")


def test_truncated_manifest_is_refused(vessel, registry, work):
    d, _ = push_single(registry, work, "bad/trunc", [oi.Layer().file("f", "t").tar()])
    path = registry.blob_path(d["digest"])
    path.write_bytes(path.read_bytes()[:40])
    p = vessel("pull", f"{registry.host}/bad/trunc:latest", check=False)
    assert p.returncode != 0 and "bad/trunc" in p.stderr
    assert_nothing_trusted(vessel, "bad/trunc")


def test_malicious_layer_writes_nothing_outside(vessel, registry, work, tmp_path):
    evil = oi.Layer()
    ti = tarfile.TarInfo("../../../../../../../tmp/vessel-evil-escape")
    ti.size = 4
    import io
    evil.tf.addfile(ti, io.BytesIO(b"evil"))
    push_single(registry, work, "bad/evil", [evil.tar()])
    p = vessel("pull", f"{registry.host}/bad/evil:latest", check=False)
    assert p.returncode != 0 and "leave the layer" in p.stderr
    assert not os.path.exists("/tmp/vessel-evil-escape")
    assert_nothing_trusted(vessel, "bad/evil")


def test_concurrent_pulls_share_layers(vessel, registry, seeded):
    img = f"{registry.host}/test/bb:latest"
    procs = [subprocess.Popen([vessel.bin, "--root", vessel.root, "pull", "-q", img],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(3)]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    store = pathlib.Path(vessel.root)
    assert len(list((store / "layers/sha256").iterdir())) == 3
    assert list((store / "tmp").iterdir()) == []


def test_import_commit_and_run(vessel, tmp_path):
    if not shutil.which("runc"):
        pytest.skip("runc missing")
    rootfs = tmp_path / "rootfs.tar"
    rootfs.write_bytes(oi.busybox_layer().file("hello", "imported\n").dir("data")
                       .file("data/old", "o").tar())
    vessel("import", "--change", 'CMD ["/bin/sh"]', str(rootfs), "imp:1")
    assert vessel("run", "--rm", "--runtime", "runc", "imp:1", "cat", "/hello").stdout == "imported\n"
    vessel("run", "--name", "c1", "--runtime", "runc", "imp:1", "sh", "-c",
           "echo changed > /hello; rm /bin/ls; rm -r /data; mkdir /data; echo n > /data/new")
    vessel("commit", "-m", "test", "c1", "committed:1")
    vessel("rm", "c1")
    p = vessel("run", "--rm", "--runtime", "runc", "committed:1", "sh", "-c",
               "cat /hello; test -e /bin/ls || echo ls-gone; ls /data")
    assert p.stdout.split() == ["changed", "ls-gone", "new"]
    info = json.loads(vessel("image", "inspect", "committed:1").stdout)[0]
    assert len(info["RootFS"]["Layers"]) == 2


@pytest.mark.skipif(not shutil.which("podman"), reason="podman missing")
def test_load_save_round_trip_with_podman(vessel, tmp_path):
    import tempfile
    ptmp = pathlib.Path(tempfile.mkdtemp(prefix="vp", dir="/tmp"))
    rootfs = tmp_path / "rootfs.tar"
    rootfs.write_bytes(oi.busybox_layer().file("hello", "saved\n").tar())
    vessel("import", str(rootfs), "saveme:1")
    ours = json.loads(vessel("image", "inspect", "saveme:1").stdout)[0]["Id"]
    try:
        for fmt in ("docker-archive", "oci-archive"):
            out = tmp_path / f"{fmt}.tar"
            vessel("save", "--format", fmt, "-o", str(out), "saveme:1")
            podman(ptmp, "load", "-i", str(out))
            theirs = json.loads(podman(ptmp, "image", "inspect", "saveme:1").stdout)[0]["Id"]
            assert "sha256:" + theirs == ours or theirs == ours
            podman(ptmp, "rmi", "-a", "-f")
        podman(ptmp, "import", str(rootfs), "localhost/frompodman:2")
        for fmt in ("docker-archive", "oci-archive"):
            out = tmp_path / f"podman-{fmt}.tar"
            podman(ptmp, "save", "--format", fmt, "-o", str(out), "localhost/frompodman:2")
            store = tmp_path / f"store-{fmt}"
            v2 = Vessel(pathlib.Path(vessel.bin).parent, store)
            assert "frompodman:2" in v2("load", "-i", str(out)).stdout
            cid, root = mount_image(v2, "localhost/frompodman:2")
            assert (root / "hello").read_text() == "saved\n"
            v2("rm", cid)
    finally:
        subprocess.run(["podman", "--root", str(ptmp / "proot"), "--runroot", str(ptmp / "prun"),
                        "--storage-driver", "vfs", "system", "reset", "-f"],
                       env=dict(os.environ, CONTAINERS_CONF=str(ptmp / "containers.conf")),
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(ptmp, ignore_errors=True)


@pytest.fixture
def auth_proxy(registry, seeded):
    p = oi.AuthProxy(registry.host)
    yield p
    p.stop()


def test_bearer_auth_login_and_logout(vessel, auth_proxy, tmp_path):
    authfile = tmp_path / "auth.json"
    img = f"{auth_proxy.host}/test/bb:latest"
    p = vessel("pull", "--authfile", str(authfile), img, check=False)
    assert p.returncode != 0 and img in p.stderr and "token server" in p.stderr
    p = vessel("login", "--authfile", str(authfile), "-u", "user", "-p", "wrong",
               auth_proxy.host, check=False)
    assert p.returncode != 0
    vessel("login", "--authfile", str(authfile), "-u", "user", "-p", "secret", auth_proxy.host)
    assert auth_proxy.host in json.loads(authfile.read_text())["auths"]
    vessel("pull", "--authfile", str(authfile), img)
    assert any("scope=repository%3Atest%2Fbb%3Apull" in r for r in auth_proxy.token_requests)
    vessel("logout", "--authfile", str(authfile), auth_proxy.host)
    assert auth_proxy.host not in authfile.read_text()


def test_transient_registry_errors_are_retried(vessel, auth_proxy, seeded, tmp_path):
    authfile = tmp_path / "auth.json"
    vessel("login", "--authfile", str(authfile), "-u", "user", "-p", "secret", auth_proxy.host)
    m = json.loads((seeded["layout"] / "blobs/sha256" / seeded["bb"]["digest"][7:]).read_text())
    big = m["layers"][0]["digest"]
    auth_proxy.faults = {"/manifests/": ["429", "500"], big: ["drop"]}
    p = vessel("pull", "--authfile", str(authfile), f"{auth_proxy.host}/test/bb:latest")
    assert "retrying" in p.stderr
    assert (pathlib.Path(vessel.root) / "blobs/sha256" / big[7:]).exists()
    # errors that persist are reported with the image and the problem
    auth_proxy.faults = {"/manifests/": ["500"] * 5}
    p = vessel("pull", "--authfile", str(authfile), f"{auth_proxy.host}/test/bb:v9", check=False)
    assert p.returncode != 0 and "test/bb:v9" in p.stderr and "HTTP 500" in p.stderr


def test_chunked_push(vessel, registry, seeded):
    img = f"{registry.host}/test/bb:latest"
    vessel("pull", "-q", img)
    dest = f"{registry.host}/chunked/copy:v1"
    vessel("push", "--chunk-size", "100000", img, dest)
    raw = subprocess.run(["skopeo", "inspect", "--tls-verify=false", "--raw", f"docker://{dest}"],
                         check=True, stdout=subprocess.PIPE).stdout
    assert oi.sha(raw) == seeded["bb"]["digest"]
    out = pathlib.Path(vessel.root).parent / "chk"
    subprocess.run(["skopeo", "copy", "--quiet", "--src-tls-verify=false", f"docker://{dest}",
                    f"oci:{out}:x"], check=True)


def test_killed_pull_leaves_nothing_trusted(vessel, auth_proxy, seeded, tmp_path):
    import signal
    import time
    authfile = tmp_path / "auth.json"
    vessel("login", "--authfile", str(authfile), "-u", "user", "-p", "secret", auth_proxy.host)
    m = json.loads((seeded["layout"] / "blobs/sha256" / seeded["bb"]["digest"][7:]).read_text())
    big = m["layers"][0]["digest"]
    auth_proxy.faults = {big: ["stall"]}
    img = f"{auth_proxy.host}/test/bb:latest"
    p = subprocess.Popen([vessel.bin, "--root", vessel.root, "pull", "--authfile", str(authfile),
                          img], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    store = pathlib.Path(vessel.root)
    for _ in range(100):  # wait until the stalled download has started writing
        if (store / "tmp").is_dir() and any((store / "tmp").iterdir()):
            break
        time.sleep(0.05)
    time.sleep(0.5)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert not (store / "blobs/sha256" / big[7:]).exists()
    assert not (store / "repositories.json").exists() or "test/bb" not in \
        (store / "repositories.json").read_text()
    assert vessel("images", "-q").stdout.strip() == ""
    vessel("image", "prune")
    assert list((store / "tmp").iterdir()) == []
    vessel("pull", "--authfile", str(authfile), img)
    cid, root = mount_image(vessel, img)
    assert (root / "etc/hello").read_text() == "hello\n"
    vessel("rm", cid)


def test_pull_during_prune_and_rmi(vessel, registry, seeded):
    img = f"{registry.host}/test/bb:latest"
    for _ in range(3):
        pulls = [subprocess.Popen([vessel.bin, "--root", vessel.root, "pull", "-q", img],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                 for _ in range(2)]
        prune = subprocess.Popen([vessel.bin, "--root", vessel.root, "image", "prune"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for p in pulls + [prune]:
            _, err = p.communicate(timeout=300)
            assert p.returncode == 0, err
        cid, root = mount_image(vessel, img)
        assert (root / "etc/hello").read_text() == "hello\n"
        vessel("rm", cid)
        rmi = subprocess.Popen([vessel.bin, "--root", vessel.root, "rmi", img],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        pull = subprocess.Popen([vessel.bin, "--root", vessel.root, "pull", "-q", img],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        rmi.communicate(timeout=300)
        _, err = pull.communicate(timeout=300)
        assert pull.returncode == 0, err
        # whichever finished last, the store is consistent: a tagged image has all its layers
        if img.split("/", 1)[1] in vessel("images").stdout:
            cid, root = mount_image(vessel, img)
            vessel("rm", cid)


def test_run_with_vessel_runtime(vessel, registry, seeded, build_dir):
    if not (build_dir / "vessel-runtime").exists():
        pytest.skip("vessel-runtime not built")
    img = f"{registry.host}/test/bb:latest"
    vessel("pull", "-q", img)
    p = vessel("run", "--rm", "-u", "nobody", img, "sh", "-c", "id -u; cat /etc/hello; exit 3",
               check=False)
    assert p.returncode == 3, p.stderr
    assert p.stdout.split() == ["65534", "hello"]
    assert vessel("ps", "-aq").stdout.strip() == ""


def test_docker_schema2_image(vessel, registry, seeded):
    dest = f"{registry.host}/test/v2s2:latest"
    oi.skopeo_push(seeded["layout"], "bb", dest, extra=["--format", "v2s2"])
    vessel("pull", dest)
    info = json.loads(vessel("image", "inspect", dest).stdout)[0]
    assert info["ManifestMediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    cid, root = mount_image(vessel, dest)
    assert (root / "etc/hello").read_text() == "hello\n"
    assert not (root / "etc/todelete").exists()
    vessel("rm", cid)
    # and it pushes back byte for byte
    vessel("push", dest, f"{registry.host}/test/v2s2-copy:1")
    raw = subprocess.run(["skopeo", "inspect", "--tls-verify=false", "--raw",
                          f"docker://{registry.host}/test/v2s2-copy:1"],
                         check=True, stdout=subprocess.PIPE).stdout
    assert oi.sha(raw) == info["Digest"]
