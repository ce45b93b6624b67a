"""The `docker create`/`run` options beyond the first slice of vesseld: anonymous volumes and
copy-up, privileges and security options, devices, DNS and hosts, limits, --init, health checks
and a monitor that dies. Driven by the stock docker CLI and docker-py against a vesseld each test
starts on a private socket and data root; dockerd 20.10's behaviour is the reference."""
import json
import re

import pytest

from test_daemon import DOCKER, Vesseld, busybox_archive  # noqa: F401 (DOCKER: skip marks)

import os

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="containers need root"),
    pytest.mark.skipif(not os.path.exists(DOCKER), reason="no docker CLI"),
]

HEX64 = re.compile(r"^[0-9a-f]{64}$")


@pytest.fixture(scope="module")
def archives(tmp_path_factory):
    d = tmp_path_factory.mktemp("images")

    def data(layer):
        layer.dir("data", 0o750, uid=1000, gid=1000)
        layer.file("data/hello", "from the image\n", 0o640, uid=1000, gid=1000)
        layer.dir("data/sub")
        layer.file("data/sub/deep", "deep\n")
        layer.symlink("data/link", "hello")

    return [busybox_archive(d / "busybox.tar"),
            busybox_archive(d / "volbox.tar", tag="volbox:latest",
                            config_extra={"Volumes": {"/data": {}}}, extend=data)]


@pytest.fixture
def vd(build_dir, tmp_path, archives):
    d = Vesseld(build_dir, tmp_path)
    for a in archives:
        d.docker("load", "-i", str(a))
    yield d
    d.cleanup()
    vols = list((d.data / "volumes").glob("*")) if (d.data / "volumes").exists() else []
    assert vols == [] or all(v.is_dir() for v in vols)


def volumes(vd):
    return set(vd.docker("volume", "ls", "-q").stdout.split())


def mounts(vd, name):
    return json.loads(vd.docker("inspect", name).stdout)[0]["Mounts"]


# ------------------------------------------------------------------ volumes


def test_image_volume_is_anonymous_and_filled(vd):
    r = vd.docker("run", "--name", "va", "volbox", "sh", "-c",
                  "cat /data/hello /data/sub/deep; readlink /data/link; stat -c '%u:%g %a' /data")
    assert r.stdout == "from the image\ndeep\nhello\n1000:1000 750\n"
    (m,) = mounts(vd, "va")
    assert m["Type"] == "volume" and m["Destination"] == "/data" and m["Driver"] == "local"
    assert HEX64.match(m["Name"]) and m["RW"] is True
    assert volumes(vd) == {m["Name"]}
    vol = json.loads(vd.docker("volume", "inspect", m["Name"]).stdout)[0]
    assert vol["Mountpoint"] == m["Source"]
    # in use: refused; rm -v takes it along
    busy = vd.docker("volume", "rm", m["Name"], check=False)
    assert busy.returncode != 0 and "in use" in busy.stderr
    vd.docker("rm", "-v", "va")
    assert volumes(vd) == set()


def test_dash_v_path_and_mount_without_source(vd):
    vd.docker("run", "--name", "vb", "-v", "/scratch", "--mount", "type=volume,target=/m",
              "busybox", "sh", "-c", "echo x > /scratch/f; echo y > /m/g")
    ms = {m["Destination"]: m for m in mounts(vd, "vb")}
    assert set(ms) == {"/scratch", "/m"}
    assert all(HEX64.match(m["Name"]) for m in ms.values())
    assert volumes(vd) == {m["Name"] for m in ms.values()}
    # plain rm keeps anonymous volumes; prune (20.10: every unused volume) removes them
    vd.docker("rm", "vb")
    assert len(volumes(vd)) == 2
    vd.docker("volume", "create", "keepme")
    vd.docker("create", "--name", "user", "-v", "keepme:/k", "busybox", "true")
    pruned = vd.docker("volume", "prune", "-f").stdout
    assert all(m["Name"] in pruned for m in ms.values())
    assert volumes(vd) == {"keepme"}
    vd.docker("rm", "user")


def test_rm_flag_removes_anonymous_keeps_named(vd):
    vd.docker("run", "--rm", "-v", "named:/data", "volbox", "true")
    assert volumes(vd) == {"named"}  # the image's /data is covered by the named volume
    # an empty named volume was filled from the image on first use, and keeps it
    r = vd.docker("run", "--rm", "-v", "named:/v", "busybox", "cat", "/v/hello")
    assert r.stdout == "from the image\n"
    # a volume that is not empty is not filled again
    vd.docker("run", "--rm", "-v", "named:/data", "volbox", "sh", "-c",
              "rm -r /data/hello /data/sub /data/link; echo mine > /data/own")
    r = vd.docker("run", "--rm", "-v", "named:/data", "volbox", "ls", "/data")
    assert r.stdout.split() == ["own"]


def test_nocopy(vd):
    r = vd.docker("run", "--rm", "-v", "nc:/data:nocopy", "volbox", "ls", "-A", "/data")
    assert r.stdout == ""
    r = vd.docker("run", "--rm", "--mount", "type=volume,src=nc2,dst=/data,volume-nocopy",
                  "volbox", "ls", "-A", "/data")
    assert r.stdout == ""
    r = vd.docker("run", "--rm", "--mount", "type=volume,src=c3,dst=/data", "volbox", "ls",
                  "/data")
    assert r.stdout.split() == ["hello", "link", "sub"]
    vd.docker("volume", "rm", "nc", "nc2", "c3")


def test_docker_py_volumes(vd):
    docker = pytest.importorskip("docker")
    client = docker.DockerClient(base_url=vd.host, version="1.41")
    try:
        c = client.containers.create("volbox", ["cat", "/data/hello"], volumes=["/extra"])
        c.start()
        assert c.wait()["StatusCode"] == 0
        assert c.logs() == b"from the image\n"
        c.reload()
        assert sorted(m["Destination"] for m in c.attrs["Mounts"]) == ["/data", "/extra"]
        assert len(client.volumes.list()) == 2
        c.remove(v=True)
        assert client.volumes.list() == []
    finally:
        client.close()
