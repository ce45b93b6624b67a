"""The `docker create`/`run` options beyond the first slice of vesseld: anonymous volumes and
copy-up, privileges and security options, devices, DNS and hosts, limits, --init, health checks
and a monitor that dies. Driven by the stock docker CLI and docker-py against a vesseld each test
starts on a private socket and data root; dockerd 20.10's behaviour is the reference."""
import json
import os
import re
import socket
import subprocess
import time

import pytest

from test_daemon import DOCKER, Vesseld, busybox_archive

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="containers need root"),
    pytest.mark.skipif(not os.path.exists(DOCKER), reason="no docker CLI"),
]

HEX64 = re.compile(r"^[0-9a-f]{64}$")


def wait_until(pred, timeout=30):
    end = time.time() + timeout
    while time.time() < end:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached")


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
    assert vol["Mountpoint"] == m["Source"] and vol["Labels"] is None  # 20.10: no label
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


def test_volume_filters(vd):
    vd.docker("volume", "create", "--label", "team=a", "alpha")
    vd.docker("volume", "create", "--label", "team=b", "beta")
    vd.docker("create", "--name", "holder", "-v", "beta:/b", "-v", "/anon", "busybox")
    anon = next(m["Name"] for m in mounts(vd, "holder") if m["Destination"] == "/anon")

    def ls(*f):
        return set(vd.docker("volume", "ls", "-q", *[x for v in f for x in ("--filter", v)])
                   .stdout.split())
    assert ls("dangling=true") == {"alpha"}
    assert ls("dangling=false") == {"beta", anon}
    assert ls("label=team") == {"alpha", "beta"} and ls("label=team=b") == {"beta"}
    assert ls("name=alp") == {"alpha"} and ls("driver=local") == {"alpha", "beta", anon}
    bad = vd.docker("volume", "ls", "--filter", "colour=red", check=False)
    assert bad.returncode != 0 and "invalid filter" in bad.stderr
    # prune narrowed by labels: only unused volumes that match
    vd.docker("volume", "create", "--label", "keep=yes", "gamma")
    pruned = vd.docker("volume", "prune", "-f", "--filter", "label!=keep").stdout
    assert "alpha" in pruned and "gamma" not in pruned
    assert volumes(vd) == {"beta", "gamma", anon}
    vd.docker("rm", "-v", "holder")
    vd.docker("volume", "rm", "beta", "gamma")
    assert volumes(vd) == set()


def test_volumes_from(vd, tmp_path):
    """--volumes-from shares another container's volumes and binds (not its tmpfs) at the same
    places, as that container has them, or all read-only with :ro / read-write with :rw; the
    shared volumes stay while either container exists (dockerd's rules)."""
    host = tmp_path / "hostdir"
    host.mkdir()
    (host / "f").write_text("from the host\n")
    vd.docker("run", "--name", "src1", "-v", "named:/n", "-v", f"{host}:/b:ro", "--tmpfs", "/t",
              "volbox", "sh", "-c", "echo d > /data/x; echo n > /n/y")
    anon = volumes(vd) - {"named"}
    assert len(anon) == 1
    r = vd.docker("run", "--rm", "--volumes-from", "src1", "busybox", "sh", "-c",
                  "cat /data/hello /data/x /n/y /b/f; echo w > /data/w; touch /b/q; "
                  "grep -c ' /t ' /proc/mounts", check=False)
    assert r.stdout.split("\n")[:5] == ["from the image", "d", "n", "from the host", "0"]
    assert "/b/q: Read-only file system" in r.stderr  # the bind is read-only in src1 too
    r = vd.docker("run", "--rm", "--volumes-from", "src1:ro", "busybox", "sh", "-c",
                  "cat /data/w; touch /data/z", check=False)
    assert r.stdout == "w\n" and "/data/z: Read-only file system" in r.stderr
    vd.docker("run", "--name", "c2", "--volumes-from", "src1:rw", "busybox", "sh", "-c", "touch /b/rw")
    assert (host / "rw").exists()
    mounts = {m["Destination"]: m for m in
              json.loads(vd.docker("inspect", "-f", "{{json .Mounts}}", "c2").stdout)}
    assert set(mounts) == {"/data", "/n", "/b"} and all(m["RW"] for m in mounts.values())
    assert mounts["/data"]["Name"] in anon and mounts["/n"]["Name"] == "named"
    # removing either container with -v keeps what the other still uses
    vd.docker("rm", "-v", "c2")
    assert volumes(vd) == anon | {"named"}
    vd.docker("rm", "-v", "src1")
    assert volumes(vd) == {"named"}
    vd.docker("volume", "rm", "named")
    # a container that does not exist is Docker's 404 (the CLI then tries a pull, as with dockerd)
    docker = pytest.importorskip("docker")
    client = docker.APIClient(base_url=vd.host, version="auto")
    try:
        with pytest.raises(docker.errors.NotFound, match="No such container: nosuch"):
            client.create_container("busybox", "true",
                                    host_config=client.create_host_config(volumes_from=["nosuch"]))
    finally:
        client.close()
    assert vd.docker("ps", "-aq").stdout == ""


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


# ------------------------------------------------------------------ privileges and security


def status_field(text, field):
    return next(l.split(":", 1)[1].strip() for l in text.splitlines() if l.startswith(field + ":"))


def test_privileged(vd):
    plain = vd.docker("run", "--rm", "busybox", "sh", "-c",
                      "cat /proc/self/status; echo ---; cat /proc/mounts; echo ---; "
                      "ls /dev; echo ---; busybox mknod /tmp/lc c 10 237 && : < /tmp/lc",
                      check=False)
    status, mnts, devs = plain.stdout.split("---\n")[:3]
    err = plain.stderr
    assert status_field(status, "CapEff") == "00000000a80425fb"  # Docker's default set
    assert "loop0" not in devs.split()
    assert plain.returncode != 0 and "Operation not permitted" in err  # device cgroup
    assert any(l.split()[1] == "/proc/sys" and "ro" in l.split()[3].split(",")
               for l in mnts.splitlines())
    priv = vd.docker("run", "--rm", "--privileged", "--device", "/dev/loop0:/dev/xloop",
                     "busybox", "sh", "-c",
                     "cat /proc/self/status; echo ---; cat /proc/mounts; echo ---; "
                     "ls /dev; echo ---; busybox mknod /tmp/lc c 10 237 && : < /tmp/lc && echo ok")
    status, mnts, devs, out = priv.stdout.split("---\n")
    bounding = status_field(open("/proc/self/status").read(), "CapBnd")
    assert status_field(status, "CapEff") == bounding
    assert status_field(status, "Seccomp") == "0"
    assert {"loop0", "loop-control", "null", "fuse", "xloop"} <= set(devs.split())
    assert out == "ok\n"
    sys_mount = [l.split() for l in mnts.splitlines() if l.split()[1] == "/sys"]
    assert sys_mount and "rw" in sys_mount[0][3].split(",")
    assert not any(l.split()[1] in ("/proc/sys", "/proc/kcore") for l in mnts.splitlines())
    # exec --privileged in a container that is not: every capability for that process only
    vd.docker("run", "-d", "--name", "plainc", "busybox", "sleep", "1000")
    execd = vd.docker("exec", "--privileged", "plainc", "cat", "/proc/self/status").stdout
    assert status_field(execd, "CapEff") == bounding
    execd = vd.docker("exec", "plainc", "cat", "/proc/self/status").stdout
    assert status_field(execd, "CapEff") == "00000000a80425fb"
    vd.docker("rm", "-f", "plainc")


def test_devices(vd):
    r = vd.docker("run", "--rm", "--device", "/dev/loop0:/dev/xloop:r", "busybox", "stat", "-c",
                  "%F %t:%T", "/dev/xloop")
    assert r.stdout == "block special file 7:0\n"
    missing = vd.docker("run", "--rm", "--device", "/dev/nosuch", "busybox", "true", check=False)
    assert missing.returncode != 0 and "/dev/nosuch" in missing.stderr


def test_seccomp_profiles_and_no_new_privileges(vd, tmp_path):
    profile = {"defaultAction": "SCMP_ACT_ALLOW",
               "archMap": [{"architecture": "SCMP_ARCH_X86_64",
                            "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
                           {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": []}],
               "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO",
                             "errnoRet": 13},
                            # dropped: the container lacks CAP_SYS_ADMIN
                            {"name": "getpid", "action": "SCMP_ACT_ERRNO",
                             "includes": {"caps": ["CAP_SYS_ADMIN"]}},
                            {"name": "rmdir", "action": "SCMP_ACT_ERRNO",
                             "excludes": {"arches": ["arm64"]}}]}
    path = tmp_path / "profile.json"
    path.write_text(json.dumps(profile))
    r = vd.docker("run", "--rm", "--security-opt", f"seccomp={path}", "busybox", "sh", "-c",
                  "grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status; mkdir /tmp/d; "
                  "echo $?; rmdir /tmp 2>/dev/null; echo $?; echo pid $$", check=False)
    assert "Seccomp:\t2" in r.stdout and "NoNewPrivs:\t0" in r.stdout
    assert "Permission denied" in r.stderr  # mkdir's errno 13
    lines = r.stdout.splitlines()
    assert lines[-3:-1] == ["1", "1"] and lines[-1].startswith("pid ")
    r = vd.docker("run", "--rm", "--security-opt", "seccomp=unconfined", "--security-opt",
                  "no-new-privileges", "busybox", "busybox", "grep", "-E", "^(Seccomp|NoNewPrivs):",
                  "/proc/self/status")
    assert r.stdout == "NoNewPrivs:\t1\nSeccomp:\t0\n"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"defaultAction": "SCMP_ACT_ALLOW",
                               "syscalls": [{"name": "mkdir", "names": ["rmdir"],
                                             "action": "SCMP_ACT_ERRNO"}]}))
    r = vd.docker("create", "--security-opt", f"seccomp={bad}", "busybox", check=False)
    assert r.returncode != 0 and "'name' and 'names'" in r.stderr
    bad.write_text(json.dumps({"defaultAction": "SCMP_ACT_NOPE"}))
    r = vd.docker("create", "--security-opt", f"seccomp={bad}", "busybox", check=False)
    assert r.returncode != 0 and "SCMP_ACT_NOPE" in r.stderr
    r = vd.docker("create", "--security-opt", "nonsense=1", "busybox", check=False)
    assert r.returncode != 0 and "security-opt" in r.stderr
    assert vd.docker("ps", "-aq").stdout == ""


def test_dns_hosts_limits_groups_shm_sysctls(vd):
    r = vd.docker("run", "--rm", "--dns", "10.0.0.1", "--dns", "10.0.0.2", "--dns-search",
                  "example.org", "--dns-option", "ndots:2", "--add-host", "db:10.1.2.3",
                  "--add-host", "six:fd00::1", "busybox", "sh", "-c",
                  "cat /etc/resolv.conf; echo ---; cat /etc/hosts")
    resolv, hosts = r.stdout.split("---\n")
    assert resolv == ("search example.org\nnameserver 10.0.0.1\nnameserver 10.0.0.2\n"
                      "options ndots:2\n")
    assert "10.1.2.3\tdb\n" in hosts and "fd00::1\tsix\n" in hosts
    bad = vd.docker("create", "--add-host", "x:notanip", "busybox", check=False)
    assert bad.returncode != 0
    r = vd.docker("run", "--rm", "--ulimit", "nofile=100:200", "--ulimit", "nproc=50",
                  "--group-add", "nogroup", "--group-add", "1234", "--shm-size", "1m",
                  "--sysctl", "net.ipv4.ip_forward=1", "--sysctl", "kernel.shmmni=1000",
                  "busybox", "sh", "-c",
                  "ulimit -Sn; ulimit -Hn; ulimit -u; id -G; cat /proc/sys/net/ipv4/ip_forward "
                  "/proc/sys/kernel/shmmni; cat /proc/mounts")
    lines = r.stdout.splitlines()
    assert lines[:3] == ["100", "200", "50"]
    assert sorted(lines[3].split(), key=int) == ["0", "1234", "65534"]
    assert lines[4:6] == ["1", "1000"]
    shm = [l.split() for l in lines[6:] if l.split()[1] == "/dev/shm"]
    assert "size=1024k" in shm[0][3].split(",")
    docker = pytest.importorskip("docker")
    client = docker.DockerClient(base_url=vd.host, version="1.41")
    try:
        with pytest.raises(docker.errors.APIError) as e:
            client.containers.create("busybox", "true", sysctls={"kernel.panic": "1"})
        assert e.value.status_code == 400 and "kernel.panic" in str(e.value)
        with pytest.raises(docker.errors.APIError) as e:
            client.containers.create("busybox", "true", network_mode="host",
                                     sysctls={"net.ipv4.ip_forward": "1"})
        assert e.value.status_code == 400
        with pytest.raises(docker.errors.APIError) as e:
            client.containers.create("busybox", "true", ulimits=[
                docker.types.Ulimit(name="nofile", soft=10, hard=5)])
        assert e.value.status_code == 400 and "soft limit" in str(e.value)
    finally:
        client.close()
    assert vd.docker("ps", "-aq").stdout == ""


# ------------------------------------------------------------------ --init

# an orphan that ends once its parent is gone (it waits on a fifo the watcher writes to)
ORPHAN = ("busybox mkfifo /tmp/f; (busybox cat /tmp/f > /dev/null & echo $! > /tmp/orphan); "
          "o=$(cat /tmp/orphan); echo > /tmp/f; "
          "while [ -e /proc/$o ]; do s=$(busybox cut -d' ' -f3 /proc/$o/stat 2>/dev/null); "
          "[ \"$s\" = Z ] && [ \"$WANT\" = zombie ] && break; busybox usleep 20000; done; ")


def test_init_reaps_forwards_and_exits_with_status(vd):
    # PID 1 (or the init's child) is a sleep that never waits; a shell beside it leaves an
    # orphan behind and watches what becomes of it. Without an init it stays a zombie.
    for name, extra, want in [("noinit", [], "zombie Z"), ("withinit", ["--init"], "reaped")]:
        script = ORPHAN + ("echo zombie $(busybox cut -d' ' -f3 /proc/$o/stat)"
                           if want != "reaped" else "echo reaped")
        vd.docker("run", "-d", "--name", name, *extra, "-e", "WANT=" + want.split()[0],
                  "busybox", "sh", "-c", f"sh -c \"$0\" & exec busybox sleep 3600", script)
        wait_until(lambda: vd.docker("logs", name).stdout != "")
        assert vd.docker("logs", name).stdout == want + "\n"
    r = vd.docker("exec", "withinit", "sh", "-c", "cat /proc/1/cmdline | busybox tr '\\0' ' '")
    assert r.stdout.startswith("/dev/init -- sh -c ")
    vd.docker("rm", "-f", "noinit", "withinit")
    # exit status: the command's, 128 + the signal that ended it
    assert vd.docker("run", "--rm", "--init", "busybox", "sh", "-c", "exit 7",
                     check=False).returncode == 7
    assert vd.docker("run", "--rm", "--init", "busybox", "sh", "-c", "kill -9 $$",
                     check=False).returncode == 137
    missing = vd.docker("run", "--rm", "--init", "busybox", "nosuchcmd", check=False)
    assert missing.returncode == 127 and "nosuchcmd" in missing.stderr
    # signals reach the command: a shell trapping HUP and TERM (as PID 1 without an init's
    # forwarding, docker stop would end in SIGKILL: 137)
    vd.docker("run", "-d", "--init", "--name", "trap", "busybox", "sh", "-c",
              "trap 'echo got HUP' HUP; trap 'echo got TERM; exit 3' TERM; echo ready; "
              "while :; do busybox usleep 20000; done")
    wait_until(lambda: "ready" in vd.docker("logs", "trap").stdout)
    vd.docker("kill", "-s", "HUP", "trap")
    wait_until(lambda: "got HUP" in vd.docker("logs", "trap").stdout)
    st = json.loads(vd.docker("inspect", "trap").stdout)[0]
    assert st["HostConfig"]["Init"] is True and st["Path"] == "sh"
    vd.docker("stop", "-t", "60", "trap")
    st = json.loads(vd.docker("inspect", "trap").stdout)[0]["State"]
    assert st["ExitCode"] == 3
    assert vd.docker("logs", "trap").stdout == "ready\ngot HUP\ngot TERM\n"
    vd.docker("rm", "trap")


# ------------------------------------------------------------------ health checks

MS = 1000000


def health(vd, name):
    return json.loads(vd.docker("inspect", name).stdout)[0]["State"].get("Health")


def ps_status(vd, name):
    return vd.docker("ps", "-a", "--filter", f"name={name}", "--format", "{{.Status}}").stdout


def ps_names(vd, *filters):
    args = [a for f in filters for a in ("--filter", f)]
    return vd.docker("ps", "-a", *args, "--format", "{{.Names}}").stdout.split()


def test_health_checks(vd):
    since = str(int(time.time()) - 1)
    vd.docker("run", "-d", "--name", "hc", "--health-cmd", "echo probe-out; test -e /tmp/ok",
              "--health-interval", "100ms", "--health-retries", "2", "busybox", "sleep", "1000")
    vd.docker("run", "-d", "--name", "slow", "--health-cmd", "true", "--health-interval", "1h",
              "busybox", "sleep", "1000")
    vd.docker("run", "-d", "--name", "plain", "busybox", "sleep", "1000")
    # the first probe comes one interval after the start
    assert health(vd, "slow") == {"Status": "starting", "FailingStreak": 0, "Log": []}
    assert "(health: starting)" in ps_status(vd, "slow")
    assert health(vd, "plain") is None and "(" not in ps_status(vd, "plain")
    wait_until(lambda: health(vd, "hc")["Status"] == "unhealthy")
    h = health(vd, "hc")
    assert h["FailingStreak"] >= 2
    assert h["Log"][-1]["ExitCode"] == 1 and h["Log"][-1]["Output"] == "probe-out\n"
    assert "(unhealthy)" in ps_status(vd, "hc")
    assert ps_names(vd, "health=unhealthy") == ["hc"]
    vd.docker("exec", "hc", "busybox", "touch", "/tmp/ok")
    wait_until(lambda: health(vd, "hc")["Status"] == "healthy")
    assert health(vd, "hc")["FailingStreak"] == 0
    assert "(healthy)" in ps_status(vd, "hc")
    assert ps_names(vd, "health=healthy") == ["hc"]
    assert ps_names(vd, "health=starting") == ["slow"]
    assert ps_names(vd, "health=none") == ["plain"]
    wait_until(lambda: len(health(vd, "hc")["Log"]) == 5)  # the last five are kept
    entry = health(vd, "hc")["Log"][-1]
    assert set(entry) == {"Start", "End", "ExitCode", "Output"} and entry["ExitCode"] == 0
    events = vd.docker("events", "--since", since, "--until", str(int(time.time()) + 1),
                       "--filter", "event=health_status", "--format", "{{.Action}} {{.Actor.Attributes.name}}")
    assert events.stdout.splitlines()[:2] == ["health_status: unhealthy hc",
                                              "health_status: healthy hc"]
    # a stopped container keeps its last health; ps shows it only while running
    vd.docker("rm", "-f", "slow", "plain")
    vd.docker("stop", "-t", "0", "hc")
    assert health(vd, "hc")["Status"] == "healthy"
    assert "health" not in ps_status(vd, "hc")
    vd.docker("rm", "hc")


def test_health_timeout_start_period_and_image_healthcheck(vd, tmp_path):
    vd.docker("run", "-d", "--name", "tmo", "--health-cmd", "sleep 100", "--health-interval",
              "100ms", "--health-timeout", "200ms", "--health-retries", "1", "busybox", "sleep",
              "1000")
    vd.docker("run", "-d", "--name", "grace", "--health-cmd", "false", "--health-interval",
              "100ms", "--health-retries", "1", "--health-start-period", "1h", "busybox",
              "sleep", "1000")
    wait_until(lambda: health(vd, "tmo")["Status"] == "unhealthy")
    last = health(vd, "tmo")["Log"][-1]
    assert last["ExitCode"] == -1 and last["Output"] == "Health check exceeded timeout (200ms)"
    # failures in the start period do not count while it never was healthy
    wait_until(lambda: len(health(vd, "grace")["Log"]) >= 2)
    h = health(vd, "grace")
    assert h["Status"] == "starting" and h["FailingStreak"] == 0
    assert all(e["ExitCode"] == 1 for e in h["Log"])
    vd.docker("rm", "-f", "tmo", "grace")
    # the image's HEALTHCHECK, and --no-healthcheck against it
    hc = {"Test": ["CMD-SHELL", "test -e /etc/passwd"], "Interval": 100 * MS, "Retries": 1}
    vd.docker("load", "-i", str(busybox_archive(tmp_path / "hc.tar", tag="hcbox:latest",
                                                config_extra={"Healthcheck": hc})))
    vd.docker("run", "-d", "--name", "img", "hcbox", "sleep", "1000")
    vd.docker("run", "-d", "--name", "off", "--no-healthcheck", "hcbox", "sleep", "1000")
    vd.docker("run", "-d", "--name", "over", "--health-cmd", "exit 1", "hcbox", "sleep", "1000")
    over = json.loads(vd.docker("inspect", "over").stdout)[0]["Config"]["Healthcheck"]
    assert over["Test"] == ["CMD-SHELL", "exit 1"] and over["Interval"] == 100 * MS
    wait_until(lambda: health(vd, "img")["Status"] == "healthy")
    wait_until(lambda: health(vd, "over")["Status"] == "unhealthy")
    assert health(vd, "off") is None
    vd.docker("rm", "-f", "img", "off", "over")
    bad = vd.docker("run", "-d", "--health-cmd", "true", "--health-interval", "1us", "busybox",
                    check=False)
    assert bad.returncode != 0 and "1ms" in bad.stderr


def test_health_checks_resume_after_daemon_restart(vd):
    vd.docker("run", "-d", "--name", "hc", "--health-cmd", "test ! -e /tmp/bad",
              "--health-interval", "100ms", "--health-retries", "1", "busybox", "sleep", "1000")
    wait_until(lambda: health(vd, "hc")["Status"] == "healthy")
    vd.kill9()
    vd.start()
    # checks run again: a failure now turns it unhealthy
    vd.docker("exec", "hc", "busybox", "touch", "/tmp/bad")
    wait_until(lambda: health(vd, "hc")["Status"] == "unhealthy")
    assert any(e["ExitCode"] == 0 for e in health(vd, "hc")["Log"])  # kept across the restart
    vd.docker("rm", "-f", "hc")


# ------------------------------------------------------------------ a monitor that dies


def inspect(vd, name):
    return json.loads(vd.docker("inspect", name).stdout)[0]


def monitor_of(vd, name):
    cid = inspect(vd, name)["Id"]
    return json.loads((vd.data / "containers" / cid / "monitor.json").read_text())


def gone(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] == "Z"
    except FileNotFoundError:
        return True


COUNTER = "i=0; while :; do echo line $i; i=$((i+1)); busybox usleep 20000; done"
# writes its lines, then nothing: it outlives its monitor until vesseld ends it (a writer dies
# of SIGPIPE at its next write, and its status is lost with the monitor)
QUIET = "i=0; while [ $i -lt 5 ]; do echo line $i; i=$((i+1)); done; exec busybox sleep 1000"


def test_monitor_killed(vd):
    vd.docker("run", "-d", "--name", "lost", "busybox", "sh", "-c", QUIET)
    wait_until(lambda: "line 4" in vd.docker("logs", "lost").stdout)
    waiter = subprocess.Popen([DOCKER, "wait", "lost"], env=vd.env, stdout=subprocess.PIPE,
                              text=True)
    mon = monitor_of(vd, "lost")
    os.kill(mon["MonitorPid"], 9)
    assert waiter.wait(60) == 0 and waiter.stdout.read() == "137\n"
    st = inspect(vd, "lost")["State"]
    assert st["Status"] == "exited" and st["ExitCode"] == 137
    assert "monitor" in st["Error"]
    assert gone(mon["Pid"])  # nothing runs on unsupervised
    assert vd.docker("logs", "lost").stdout.splitlines() == [f"line {i}" for i in range(5)]
    die = vd.docker("events", "--since", "0", "--until", str(int(time.time()) + 1), "--filter",
                    "event=die", "--format", "{{.Actor.Attributes.exitCode}}").stdout
    assert die.split()[0] == "137"
    vd.docker("rm", "lost")
    # a wait that arrives while vesseld is still ending the orphan waits for its true exit (it
    # was once answered with the placeholder 255; seen in CI under load)
    for i in range(3):
        vd.docker("run", "-d", "--name", f"quick{i}", "busybox", "sh", "-c", QUIET)
        wait_until(lambda: "line 4" in vd.docker("logs", f"quick{i}").stdout)
        mon = monitor_of(vd, f"quick{i}")
        conn = socket.socket(socket.AF_UNIX)
        conn.connect(str(vd.sock))
        os.kill(mon["MonitorPid"], 9)
        conn.sendall(f"POST /v1.41/containers/quick{i}/wait HTTP/1.1\r\nHost: d\r\n"
                     "Content-Length: 0\r\nConnection: close\r\n\r\n".encode())
        reply = b""
        while chunk := conn.recv(65536):
            reply += chunk
        conn.close()
        assert b'"StatusCode":137' in reply, reply
        vd.docker("rm", f"quick{i}")
    # a writer dies of SIGPIPE once its monitor is gone, its status unknown (255) unless
    # vesseld ended it first (137): either way it is recorded as exited, with the reason
    vd.docker("run", "-d", "--name", "chatty", "busybox", "sh", "-c", COUNTER)
    wait_until(lambda: "line 3" in vd.docker("logs", "chatty").stdout)
    mon = monitor_of(vd, "chatty")
    os.kill(mon["MonitorPid"], 9)
    wait_until(lambda: inspect(vd, "chatty")["State"]["Status"] == "exited")
    st = inspect(vd, "chatty")["State"]
    assert st["ExitCode"] in (137, 255) and "monitor" in st["Error"] and gone(mon["Pid"])
    vd.docker("rm", "chatty")
    # --restart always: back under a new monitor, the log going on
    vd.docker("run", "-d", "--name", "back", "--restart", "always", "busybox", "sh", "-c",
              COUNTER)
    wait_until(lambda: "line 3" in vd.docker("logs", "back").stdout)
    first = monitor_of(vd, "back")
    os.kill(first["MonitorPid"], 9)
    wait_until(lambda: inspect(vd, "back")["RestartCount"] == 1
               and inspect(vd, "back")["State"]["Running"])
    assert monitor_of(vd, "back")["MonitorPid"] != first["MonitorPid"] and gone(first["Pid"])
    wait_until(lambda: vd.docker("logs", "back").stdout.count("line 0\n") == 2)
    vd.docker("rm", "-f", "back")


def test_monitor_killed_while_daemon_down(vd):
    vd.docker("run", "-d", "--name", "lost", "busybox", "sh", "-c", QUIET)
    wait_until(lambda: "line 4" in vd.docker("logs", "lost").stdout)
    mon = monitor_of(vd, "lost")
    vd.kill9()
    os.kill(mon["MonitorPid"], 9)
    vd.start()
    st = inspect(vd, "lost")["State"]
    assert st["Status"] == "exited" and st["ExitCode"] == 137 and "monitor" in st["Error"]
    assert gone(mon["Pid"])
    vd.docker("rm", "lost")
