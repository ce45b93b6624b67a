"""vessel build without a daemon: Dockerfiles built on a private store from the busybox image the
daemon tests make offline (Debian's busybox-static), the results run with vessel run. Hostile
contexts (a path or a link leading out) are refused and leave no mount or temp directory."""
import hashlib
import io
import json
import os
import pathlib
import selectors
import shutil
import socket
import subprocess
import sys
import tarfile
import time

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from test_daemon import busybox_archive  # noqa: E402

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="builds mount overlays: needs root")


@pytest.fixture(scope="module")
def store(tmp_path_factory, build_dir):
    """A store with busybox:latest loaded, and a function running vessel on it."""
    work = tmp_path_factory.mktemp("build")
    root = work / "root"
    tar = busybox_archive(work / "busybox.tar")

    def vessel(*args, check=True):
        r = subprocess.run([str(build_dir / "vessel"), "--root", str(root), *map(str, args)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=300)
        if check:
            assert r.returncode == 0, f"vessel {args}: {r.returncode}\n{r.stdout}\n{r.stderr}"
        return r

    assert "Loaded image: busybox:latest" in vessel("load", "-i", tar).stdout
    yield vessel, root
    subprocess.run(["umount", "-R", "-l", str(root)], stderr=subprocess.DEVNULL)


def context(path, files):
    """A build context: files maps relative paths to contents (str) or ("link", target)."""
    path.mkdir(parents=True)
    for rel, data in files.items():
        p = path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, tuple):
            p.symlink_to(data[1])
        else:
            p.write_text(data)
    return path


def inspect(vessel, name):
    d = json.loads(vessel("image", "inspect", name).stdout)
    return d[0] if isinstance(d, list) else d


def no_leftovers(root):
    assert list((root / "tmp").glob("build-*")) == []
    with open("/proc/self/mountinfo") as f:
        assert str(root) not in f.read()


MULTI = """\
# syntax=docker/dockerfile:1
ARG BASE=busybox
FROM ${BASE} AS first
COPY src/ /stage/
COPY *.txt /stage/top/
ENV GREETING="hi there"

FROM busybox
ARG V=1
ARG BASE
LABEL version=$V \\
      stage=final base=$BASE
COPY --from=first /stage /app/from-first
COPY --chown=1000:1000 --chmod=600 src/a.txt /app/own.txt
WORKDIR /app
ENV WHERE=$PWD NAME=${V:+set}
EXPOSE 8080/tcp
VOLUME /data
STOPSIGNAL SIGINT
HEALTHCHECK --interval=30s CMD ["true"]
ONBUILD COPY . /child
USER 1000:1000
ENTRYPOINT ["cat"]
CMD ["/app/from-first/a.txt"]
"""


def test_multi_stage_build_and_run(store, tmp_path):
    vessel, root = store
    ctx = context(tmp_path / "ctx", {"Dockerfile": MULTI, "src/a.txt": "hello\n",
                                     "src/sub/b.txt": "b\n", "one.txt": "1\n", "two.txt": "2\n",
                                     "skip.log": "no\n", ".dockerignore": "*.log\n"})
    r = vessel("build", "-t", "t1", "-t", "example.org/t1:v2", "--build-arg", "V=2",
               "--iidfile", tmp_path / "iid", ctx)
    lines = r.stdout.splitlines()
    assert lines[0] == "Step 1/21 : ARG BASE=busybox"
    assert "Step 3/21 : COPY src/ /stage/" in lines
    assert sum(1 for line in lines if line.startswith(" ---> ")) == 20
    iid = (tmp_path / "iid").read_text()
    assert lines[-3] == f"Successfully built {iid[7:19]}"
    assert lines[-2:] == ["Successfully tagged t1:latest", "Successfully tagged example.org/t1:v2"]

    d = inspect(vessel, "t1")
    c = d["Config"]
    assert c["Entrypoint"] == ["cat"] and c["Cmd"] == ["/app/from-first/a.txt"]
    assert c["WorkingDir"] == "/app" and c["User"] == "1000:1000"
    assert c["Labels"] == {"org.example.from": "image", "version": "2", "stage": "final",
                           "base": "busybox"}  # an ARG without default takes the global one
    assert "NAME=set" in c["Env"] and "WHERE=" in c["Env"]
    assert not any(e.startswith("GREETING=") for e in c["Env"])  # the first stage's ENV
    assert c["ExposedPorts"] == {"8080/tcp": {}} and c["Volumes"] == {"/data": {}}
    assert c["StopSignal"] == "SIGINT" and c["OnBuild"] == ["COPY . /child"]
    assert c["Healthcheck"] == {"Test": ["CMD", "true"], "Interval": 30_000_000_000}
    assert inspect(vessel, "example.org/t1:v2")["Id"] == d["Id"]

    assert vessel("run", "--rm", "t1").stdout == "hello\n"
    ls = vessel("run", "--rm", "--user", "0", "--entrypoint", "sh", "t1", "-c",
                "cd /app && find . | sort && stat -c '%u:%g %a' own.txt && cat from-first/top/*")
    assert ls.stdout.splitlines() == [
        ".", "./from-first", "./from-first/a.txt", "./from-first/sub", "./from-first/sub/b.txt",
        "./from-first/top", "./from-first/top/one.txt", "./from-first/top/two.txt", "./own.txt",
        "1000:1000 600", "1", "2"]

    # t1's ONBUILD COPY . /child runs in a build FROM it, and the child has no trigger left
    child = context(tmp_path / "child", {"Dockerfile": "FROM t1\nUSER 0\n", "c.txt": "c\n"})
    out = vessel("build", "-t", "t1-child", child).stdout
    assert "# Executing 1 build trigger" in out
    assert vessel("run", "--rm", "t1-child", "/child/c.txt").stdout == "c\n"
    assert "OnBuild" not in inspect(vessel, "t1-child")["Config"] or \
        not inspect(vessel, "t1-child")["Config"]["OnBuild"]
    no_leftovers(root)


def tgz(path, entries):
    with tarfile.open(path, "w:gz") as tf:
        for name, data in entries:
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))


def test_add_unpacks_local_archives(store, tmp_path):
    vessel, root = store
    ctx = context(tmp_path / "ctx", {"Dockerfile": "FROM busybox\nADD files.tgz plain.txt /opt/\n"
                                     "CMD [\"sh\", \"-c\", \"cd /opt && find . | sort\"]\n",
                                     "plain.txt": "p\n"})
    tgz(ctx / "files.tgz", [("dir/in.txt", b"in\n")])
    vessel("build", "-q", "-t", "t-add", ctx)
    assert vessel("run", "--rm", "t-add").stdout.split() == [".", "./dir", "./dir/in.txt",
                                                             "./plain.txt"]
    # an archive cannot write outside its destination
    tgz(ctx / "files.tgz", [("../../escape.txt", b"out\n")])
    r = vessel("build", "-t", "t-add-bad", ctx, check=False)
    assert r.returncode != 0 and '"../../escape.txt": ".." would leave the layer' in r.stderr
    assert not (root / "escape.txt").exists()
    no_leftovers(root)


def test_chown_with_names(store, tmp_path):
    vessel, root = store
    df = ("FROM busybox\n"
          "RUN mkdir -p /etc && echo 'app:x:1234:4321::/:/bin/sh' >> /etc/passwd && "
          "echo 'grp:x:999:' >> /etc/group\n"
          "COPY --chown=app a.txt /a\nCOPY --chown=app:grp a.txt /b\nCOPY --chown=7 a.txt /c\n"
          "CMD [\"stat\", \"-c\", \"%u:%g\", \"/a\", \"/b\", \"/c\"]\n")
    ctx = context(tmp_path / "ctx", {"Dockerfile": df, "a.txt": "a\n"})
    vessel("build", "-q", "-t", "t-chown", ctx)
    assert vessel("run", "--rm", "t-chown").stdout.split() == ["1234:4321", "1234:999", "7:7"]
    (ctx / "Dockerfile").write_text("FROM busybox\nCOPY --chown=nosuch a.txt /a\n")
    r = vessel("build", ctx, check=False)
    assert r.returncode != 0 and "--chown: no user named nosuch in the image's /etc/passwd" in \
        r.stderr
    no_leftovers(root)


def test_target_stops_at_a_stage(store, tmp_path):
    vessel, root = store
    ctx = context(tmp_path / "ctx", {"Dockerfile": MULTI, "src/a.txt": "A\n", "one.txt": "1\n"})
    vessel("build", "-q", "--target", "first", "-t", "t-first", ctx)
    out = vessel("run", "--rm", "t-first", "cat", "/stage/a.txt", "/stage/top/one.txt")
    assert out.stdout == "A\n1\n"
    r = vessel("build", "--target", "nosuch", ctx, check=False)
    assert r.returncode != 0 and "failed to reach build target nosuch" in r.stderr
    no_leftovers(root)


@pytest.mark.parametrize("dockerfile, files, message", [
    ("FROM busybox\nCOPY ../outside /x\n", {}, "forbidden path outside the build context: ../outside"),
    ("FROM busybox\nCOPY link /x\n", {"link": ("link", "/etc/passwd")},
     "the symbolic link link leads outside the build context (to /etc/passwd)"),
    ("FROM busybox\nCOPY sub/up/passwd /x\n", {"sub/up": ("link", "../../..")},
     "leads outside the build context"),
    ("FROM busybox\nCOPY missing /x\n", {}, "file not found in build context"),
    ("FROM busybox\nCOPY skip.log /x\n", {"skip.log": "", ".dockerignore": "*.log\n"},
     "excluded by .dockerignore: skip.log"),
    ("FROM busybox\nFOO bar\n", {}, "Dockerfile parse error line 2: unknown instruction: FOO"),
    ("FROM busybox\nRUN <<EOF\ntrue\nEOF\n", {}, "heredocs (<<EOF) are not supported"),
    ("FROM busybox\nRUN " + "x" * 70000 + "\n", {}, "line 2: line longer than 65536 bytes"),
    ("COPY a /b\n", {"a": ""}, "no build stage in current context"),
    ("FROM nosuchimage\n", {}, "FROM nosuchimage"),
    ("FROM busybox\nCOPY --from=nostage /a /b\n", {}, "nostage"),
    ("FROM busybox\nADD http://example.org/x /x\n", {}, "URLs are not supported"),
    ("FROM busybox\nADD --from=x a /x\n", {"a": ""}, "ADD: unknown flag: --from"),
    ("FROM busybox\nRUN echo failing; exit 3\n", {},
     "The command 'echo failing; exit 3' returned a non-zero code: 3"),
])
def test_bad_builds_are_refused(store, tmp_path, dockerfile, files, message):
    vessel, root = store
    (tmp_path / "outside").write_text("secret\n")
    ctx = context(tmp_path / "ctx", {"Dockerfile": dockerfile, **files})
    r = vessel("build", "-t", "bad", ctx, check=False)
    assert r.returncode != 0
    assert message in r.stderr
    assert vessel("image", "inspect", "bad", check=False).returncode != 0
    assert vessel("ps", "-a", "-q").stdout.strip() == ""
    no_leftovers(root)


RUNS = """\
FROM busybox
ARG WHO=world
ENV FOO=bar
WORKDIR /app/sub
RUN echo "hello $WHO $FOO from $(pwd)" > greeting && mkdir /made && echo x > /made/x
RUN ["sh", "-c", "cat /app/sub/greeting; rm /bin/seq"]
RUN rm -r /made && mkdir /made && echo y > /made/y
SHELL ["/bin/sh", "-e", "-c"]
USER 1000
RUN id -u > /tmp/uid
CMD ["cat", "/app/sub/greeting", "/tmp/uid", "/made/y"]
"""


def test_run_steps(store, tmp_path):
    vessel, root = store
    ctx = context(tmp_path / "ctx", {"Dockerfile": RUNS})
    r = vessel("build", "-t", "t-run", "--build-arg", "WHO=you", ctx)
    out = r.stdout.splitlines()
    assert "hello you bar from /app/sub" in out  # the second RUN's output
    running = [line for line in out if line.startswith(" ---> Running in ")]
    removed = [line for line in out if line.startswith("Removing intermediate container ")]
    assert len(running) == len(removed) == 4
    assert vessel("run", "--rm", "t-run").stdout == "hello you bar from /app/sub\n1000\ny\n"
    # a file removed by a RUN is gone from the image (a whiteout in its layer), and a directory
    # made again holds only what the later step put there (an opaque directory)
    gone = vessel("run", "--rm", "t-run", "sh", "-c", "test -e /bin/seq || echo gone; ls /made")
    assert gone.stdout == "gone\ny\n"
    # a step's upper directory became its layer: overlayfs' own xattrs (origin, impure) are
    # dropped from it, as unpacking the layer's tar would, and only the opaque marker stays
    for layer in (root / "layers").glob("sha256/*"):
        for dirpath, dirs, files in os.walk(layer):
            for name in [dirpath] + [os.path.join(dirpath, f) for f in files + dirs]:
                if os.path.islink(name):
                    continue
                private = [x for x in os.listxattr(name, follow_symlinks=False)
                           if x.startswith("trusted.overlay.") and x != "trusted.overlay.opaque"]
                assert private == [], name
    d = inspect(vessel, "t-run")
    assert d["Config"]["Shell"] == ["/bin/sh", "-e", "-c"]
    assert vessel("ps", "-a", "-q").stdout.strip() == ""
    no_leftovers(root)


CACHED = """\
FROM busybox
RUN echo one > /one
COPY app/ /app/
RUN cat /app/a.txt > /copied
CMD ["cat", "/copied"]
"""


def test_cache(store, tmp_path):
    vessel, root = store
    ctx = context(tmp_path / "ctx", {"Dockerfile": CACHED, "app/a.txt": "v1\n",
                                     "app/x.log": "ignored\n", ".dockerignore": "**/*.log\n"})
    first = vessel("build", "--iidfile", tmp_path / "id1", "-t", "t-cache", ctx).stdout
    assert first.count(" ---> Running in ") == 2 and "Using cache" not in first

    # unchanged (an ignored file changed too): every step from the cache, the same image
    (ctx / "app/x.log").write_text("changed, but ignored\n")
    again = vessel("build", "--iidfile", tmp_path / "id2", "-t", "t-cache", ctx).stdout
    assert "Running in" not in again and again.count(" ---> Using cache") == 4
    assert (tmp_path / "id1").read_text() == (tmp_path / "id2").read_text()
    assert vessel("run", "--rm", "t-cache", "ls", "/app").stdout == "a.txt\n"

    # a changed file rebuilds from its COPY on: the first RUN stays cached
    (ctx / "app/a.txt").write_text("v2\n")
    changed = vessel("build", "--iidfile", tmp_path / "id3", "-t", "t-cache", ctx).stdout
    steps = changed.split("Step ")
    assert "Using cache" in steps[2] and "Using cache" not in steps[3] + steps[4] + steps[5]
    assert changed.count(" ---> Running in ") == 1
    assert (tmp_path / "id3").read_text() != (tmp_path / "id1").read_text()
    assert vessel("run", "--rm", "t-cache").stdout == "v2\n"

    nocache = vessel("build", "--no-cache", "-t", "t-cache", ctx).stdout
    assert "Using cache" not in nocache and nocache.count(" ---> Running in ") == 2
    no_leftovers(root)


# ---- through vesseld: the stock docker CLI (classic builder) and docker-py

DAEMON_DF = """\
FROM busybox AS base
COPY src/ /stage/
FROM busybox
ARG V=1
LABEL version=$V
COPY --from=base /stage /app
COPY --chmod=640 top.txt /app/
WORKDIR /app
ENV MODE=prod
CMD ["cat", "/app/a.txt"]
"""


@pytest.fixture
def vdb(build_dir, tmp_path):
    from test_daemon import Vesseld
    (tmp_path / "vd").mkdir()
    d = Vesseld(build_dir, tmp_path / "vd")
    r = d.docker("load", "-i", str(busybox_archive(tmp_path / "busybox.tar")))
    assert "Loaded image: busybox:latest" in r.stdout
    d.env["DOCKER_BUILDKIT"] = "0"
    yield d
    d.cleanup()
    assert list((d.data / "tmp").glob("build-*")) == []
    assert list((d.exec_root / "runtime").glob("vessel-build-*")) == []  # no runtime state


def test_docker_build_against_vesseld(vdb, tmp_path):
    ctx = context(tmp_path / "ctx", {"Dockerfile": DAEMON_DF, "src/a.txt": "A\n",
                                     "top.txt": "T\n", "junk.log": "x\n",
                                     ".dockerignore": "*.log\n"})
    r = vdb.docker("build", "-t", "d1", "-t", "d1:v2", "--build-arg", "V=7", "--label", "by=test",
                   str(ctx))
    assert "Step 1/10 : FROM busybox AS base" in r.stdout
    assert "Successfully tagged d1:latest\n" in r.stdout and "Successfully tagged d1:v2\n" in r.stdout
    d = json.loads(vdb.docker("inspect", "d1").stdout)[0]
    assert d["Config"]["Labels"]["version"] == "7" and d["Config"]["Labels"]["by"] == "test"
    assert d["Config"]["WorkingDir"] == "/app" and "MODE=prod" in d["Config"]["Env"]
    assert vdb.docker("run", "--rm", "d1").stdout == "A\n"
    out = vdb.docker("run", "--rm", "d1:v2", "sh", "-c", "ls /app; stat -c %a /app/top.txt")
    assert out.stdout.split() == ["a.txt", "top.txt", "640"]

    again = vdb.docker("build", "-q", "-t", "d1", "--build-arg", "V=7", "--label", "by=test",
                       str(ctx))
    assert again.stdout.strip() == d["Id"]

    bad = context(tmp_path / "bad", {"Dockerfile": "FROM busybox\nCOPY nothere /x\n"})
    r = vdb.docker("build", str(bad), check=False)
    assert r.returncode != 0 and "file not found in build context" in r.stderr

    run = context(tmp_path / "run", {"Dockerfile": "FROM busybox\nARG X=1\nWORKDIR /w\n"
                                     "RUN echo \"run $X in $(pwd)\" | tee made\n"
                                     "RUN rm /bin/seq\nUSER 1000\nRUN id -u > /tmp/uid\n"
                                     "CMD [\"cat\", \"/w/made\", \"/tmp/uid\"]\n"})
    r = vdb.docker("build", "-t", "d-run", "--build-arg", "X=2", str(run))
    assert "run 2 in /w" in r.stdout
    assert vdb.docker("run", "--rm", "d-run").stdout == "run 2 in /w\n1000\n"
    assert vdb.docker("run", "--rm", "d-run", "sh", "-c", "test -e /bin/seq || echo gone").stdout \
        == "gone\n"
    cached = vdb.docker("build", "-t", "d-run", "--build-arg", "X=2", str(run))
    assert "run 2 in" not in cached.stdout and cached.stdout.count("Using cache") == 7
    fail = context(tmp_path / "fail", {"Dockerfile": "FROM busybox\nRUN exit 4\n"})
    r = vdb.docker("build", str(fail), check=False)
    assert r.returncode != 0 and "The command 'exit 4' returned a non-zero code: 4" in r.stderr


EVERY = """\
# syntax=docker/dockerfile:1
ARG BASE=busybox
FROM ${BASE} AS first
WORKDIR /stage
SHELL ["/bin/sh", "-ec"]
RUN echo "built in $(pwd)" > run.txt
COPY src/ /stage/src/
ADD files.tgz /stage/unpacked/
ENV GREETING="hi there"

FROM busybox
ARG V=1
LABEL version=$V \\
      stage=final
COPY --from=first /stage /app/
COPY --chown=1000:1000 --chmod=600 src/a.txt /app/own.txt
WORKDIR /app
ENV MODE=prod WHERE=$PWD
EXPOSE 8080/tcp
VOLUME /data
STOPSIGNAL SIGINT
HEALTHCHECK --interval=30s CMD ["true"]
ONBUILD RUN echo child
USER 1000:1000
ENTRYPOINT ["sh", "-c", "echo $(id -u):$(id -g) $(pwd) $MODE; cat \\"$@\\"", "ep"]
CMD ["/app/run.txt", "/app/own.txt", "/app/unpacked/in-tar.txt"]
"""


def test_docker_build_every_instruction(vdb, tmp_path):
    """The issue's first check against vesseld with the stock CLI: a multi-stage Dockerfile
    with every instruction, what `docker run`, `docker inspect` and `docker history` show, a
    fully cached rebuild and a changed file rebuilding from its COPY on."""
    ctx = context(tmp_path / "ctx", {"Dockerfile": EVERY, "src/a.txt": "A\n",
                                     "src/b.txt": "B\n"})
    tgz(ctx / "files.tgz", [("in-tar.txt", b"from the tar\n")])
    r = vdb.docker("build", "-t", "t1", "--build-arg", "V=5", str(ctx))
    assert "Step 1/23 : ARG BASE=busybox" in r.stdout and "Step 23/23 : CMD" in r.stdout
    assert "Successfully tagged t1:latest" in r.stdout

    out = vdb.docker("run", "--rm", "t1").stdout
    assert out == "1000:1000 /app prod\nbuilt in /stage\nA\nfrom the tar\n"
    files = vdb.docker("run", "--rm", "--user", "0", "--entrypoint", "sh", "t1", "-c",
                       "cd /app && find . | sort && stat -c '%u:%g %a' own.txt").stdout
    assert files.split() == [".", "./own.txt", "./run.txt", "./src", "./src/a.txt",
                             "./src/b.txt", "./unpacked", "./unpacked/in-tar.txt",
                             "1000:1000", "600"]

    d = json.loads(vdb.docker("inspect", "t1").stdout)[0]
    c = d["Config"]
    assert c["Entrypoint"][:2] == ["sh", "-c"] and c["Cmd"][0] == "/app/run.txt"
    assert c["WorkingDir"] == "/app" and c["User"] == "1000:1000"
    assert "MODE=prod" in c["Env"] and "WHERE=" in c["Env"]
    assert not any(e.startswith("GREETING=") for e in c["Env"])  # the first stage's ENV
    assert c["Labels"]["version"] == "5" and c["Labels"]["stage"] == "final"
    assert c["ExposedPorts"] == {"8080/tcp": {}} and c["Volumes"] == {"/data": {}}
    assert c["StopSignal"] == "SIGINT" and c["OnBuild"] == ["RUN echo child"]
    assert c["Healthcheck"]["Test"] == ["CMD", "true"]
    assert c["Healthcheck"]["Interval"] == 30_000_000_000

    # history: the base's entries, then one per instruction of the final stage, newest first
    def history(name):  # the rows with a CreatedBy (the tests' busybox has no history)
        return [line for line in vdb.docker("history", "--no-trunc", "--format",
                                            "{{.CreatedBy}}", name).stdout.splitlines() if line]
    by = history("t1")
    final = [line for line in EVERY.split("FROM busybox\n")[1].splitlines()
             if not line.startswith(" ")]
    assert len(by) == len(final) + len(history("busybox")), by
    for line, entry in zip(reversed(final), by):
        word = line.split()[0]
        assert word in entry, (line, entry)
        assert ("#(nop)" in entry) == (word not in ("RUN",)), entry
    assert "CMD [\"/app/run.txt\"" in by[0] and "ARG V=1" in by[len(final) - 1]
    assert len(d["RootFS"]["Layers"]) >= 3  # busybox and the two COPY steps

    again = vdb.docker("build", "-t", "t1", "--build-arg", "V=5", str(ctx)).stdout
    assert "Running in" not in again and again.count("Using cache") == 20  # all but the global ARG and the FROMs
    assert json.loads(vdb.docker("inspect", "t1").stdout)[0]["Id"] == d["Id"]
    (ctx / "src" / "b.txt").write_text("B2\n")
    changed = vdb.docker("build", "-t", "t1", "--build-arg", "V=5", str(ctx)).stdout
    # each stage is cached up to the COPY that the change reaches, and rebuilt from it on
    steps = [s.split(" : ", 1)[1] for s in changed.split("\nStep ")[1:]]
    cached = [s.split("\n")[0].split()[0] for s in steps if "Using cache" in s]
    assert cached == ["WORKDIR", "SHELL", "RUN", "ARG", "LABEL"], changed
    assert vdb.docker("run", "--rm", "--entrypoint", "cat", "t1", "/app/src/b.txt").stdout \
        == "B2\n"


def sleeping(arg):
    """The pids of processes running `sleep ARG`."""
    pids = []
    for p in pathlib.Path("/proc").iterdir():
        try:
            if p.name.isdigit() and (p / "cmdline").read_bytes().split(b"\0")[:2] == \
                    [b"sleep", arg.encode()]:
                pids.append(int(p.name))
        except OSError:
            pass
    return pids


def test_build_progress_is_streamed(vdb, tmp_path):
    """A RUN step's output reaches `docker build` while the step still runs: the step prints a
    line, then sleeps until the test, having read that line, ends its sleep."""
    from test_daemon import DOCKER
    secs = str(100000 + os.getpid())  # a sleep of its own, told apart from others by its argument
    ctx = context(tmp_path / "ctx", {"Dockerfile": "FROM busybox\n"
                                     f"RUN echo step-is-running; sleep {secs} || true\n"})
    p = subprocess.Popen([DOCKER, "build", "-t", "live", str(ctx)], env=vdb.env,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    sel = selectors.DefaultSelector()
    sel.register(p.stdout, selectors.EVENT_READ)
    seen = []
    try:
        while not seen or seen[-1] != "step-is-running":
            assert sel.select(timeout=120), f"no output for 2 minutes: {seen}"  # a hang guard
            line = p.stdout.readline()
            assert line, f"the build ended before its step's output came: {seen}"
            seen.append(line.rstrip("\n"))
        assert "Successfully built" not in "\n".join(seen)
        # the shell forks the sleep after its echo: wait for it to be there (a hang guard only)
        for _ in range(600):
            pids = sleeping(secs)
            if pids:
                break
            time.sleep(0.1)
        assert pids, "the step's sleep is not running"
        for pid in pids:
            os.kill(pid, 15)
        rest = p.communicate(timeout=120)[0]
    finally:
        for pid in sleeping(secs):
            os.kill(pid, 9)
        p.kill()
        p.wait()
    assert p.returncode == 0 and "Successfully tagged live:latest" in rest, rest


def test_docker_py_build(vdb, tmp_path):
    docker = pytest.importorskip("docker")
    ctx = context(tmp_path / "ctx", {"Dockerfile": DAEMON_DF, "src/a.txt": "py\n",
                                     "top.txt": "T\n"})
    client = docker.DockerClient(base_url=vdb.host)
    image, logs = client.images.build(path=str(ctx), tag="py1", buildargs={"V": "3"})
    assert image.labels["version"] == "3"
    assert any("Successfully built" in x.get("stream", "") for x in logs)
    assert client.containers.run("py1", remove=True) == b"py\n"
    with pytest.raises(docker.errors.BuildError, match="unknown instruction: BOGUS"):
        bad = context(tmp_path / "bad", {"Dockerfile": "FROM busybox\nBOGUS x\n"})
        client.images.build(path=str(bad))
    client.close()


COMPOSE = shutil.which("docker-compose")

COMPOSE_BUILD = """\
version: "3.7"
services:
  web:
    build:
      context: ./web
      args:
        GREETING: hello
    image: cb-web:1
  worker:
    build:
      context: ./worker
      dockerfile: Worker.dockerfile
"""


@pytest.mark.skipif(not COMPOSE, reason="no docker-compose (Debian's docker-compose package)")
def test_compose_build(vdb, tmp_path):
    """docker-compose build of two services (one with build args and an image name, one with
    its own Dockerfile name), then `up` runs what was built."""
    context(tmp_path / "web", {"Dockerfile": "FROM busybox\nARG GREETING\nCOPY page.txt /p\n"
                               "RUN echo \"$GREETING from web\" >> /p\nCMD [\"cat\", \"/p\"]\n",
                               "page.txt": "page\n"})
    context(tmp_path / "worker", {"Worker.dockerfile": "FROM busybox\nWORKDIR /job\n"
                                  "COPY job.sh .\nCMD [\"sh\", \"job.sh\"]\n",
                                  "job.sh": "echo worker in $(pwd)\n"})
    (tmp_path / "docker-compose.yml").write_text(COMPOSE_BUILD)

    def compose(*args):
        r = subprocess.run([COMPOSE, "-p", "cb", *args], cwd=tmp_path, env=vdb.env,
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, f"docker-compose {args}: {r.stdout}{r.stderr}\n" \
            f"{vdb.log_text()[-3000:]}"
        return r

    out = compose("build").stdout
    assert "Successfully tagged cb-web:1\n" in out and "Successfully tagged cb_worker:latest\n" in out
    web = json.loads(vdb.docker("inspect", "cb-web:1").stdout)[0]
    assert web["Config"]["Cmd"] == ["cat", "/p"]
    assert vdb.docker("run", "--rm", "cb-web:1").stdout == "page\nhello from web\n"
    assert vdb.docker("run", "--rm", "cb_worker").stdout == "worker in /job\n"
    # a second build is fully cached: the same image IDs
    again = compose("build").stdout
    assert "Running in" not in again and again.count("Using cache") == 7
    assert json.loads(vdb.docker("inspect", "cb-web:1").stdout)[0]["Id"] == web["Id"]
    compose("up", "--no-build", "web", "worker")
    logs = compose("logs", "--no-color").stdout
    assert "hello from web" in logs and "worker in /job" in logs
    compose("down")
    assert vdb.docker("ps", "-aq").stdout.strip() == ""


# ---- the context streamed into the unpack (POST /build through a pipe, server.c)


def context_tar(entries):
    """An uncompressed tar: (name, bytes) files in order, ("hardlink", name, target) links."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for e in entries:
            if e[0] == "hardlink":
                ti = tarfile.TarInfo(e[1])
                ti.type = tarfile.LNKTYPE
                ti.linkname = e[2]
                tf.addfile(ti)
            else:
                ti = tarfile.TarInfo(e[0])
                ti.size = len(e[1])
                ti.mode = 0o644
                tf.addfile(ti, io.BytesIO(e[1]))
    return buf.getvalue()


def build_socket(vdb, query):
    """A connection with the head of a chunked POST /build sent, as docker's CLI sends it."""
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(120)
    s.connect(str(vdb.sock))
    s.sendall(f"POST /v1.41/build?{query} HTTP/1.1\r\nHost: d\r\n"
              "Content-Type: application/x-tar\r\nTransfer-Encoding: chunked\r\n\r\n".encode())
    return s


def send_chunk(s, data):
    s.sendall(b"%x\r\n" % len(data) + data + b"\r\n")


def read_chunked_reply(s):
    """The status line and the JSON objects of a chunked reply, read to its last chunk."""
    data = b""
    while True:
        head_end = data.find(b"\r\n\r\n")
        if head_end >= 0:
            body, objs, pos = data[head_end + 4:], [], 0
            done = False
            while True:
                nl = body.find(b"\r\n", pos)
                if nl < 0:
                    break
                size = int(body[pos:nl], 16)
                if len(body) < nl + 2 + size + 2:
                    break
                if size == 0:
                    done = True
                    break
                for line in body[nl + 2:nl + 2 + size].splitlines():
                    if line.strip():
                        objs.append(json.loads(line))
                pos = nl + 2 + size + 2
            if done:
                return data[:data.find(b"\r\n")].decode(), objs
        more = s.recv(65536)
        assert more, f"the connection closed before the reply's end: {data[-300:]!r}"
        data += more


def wait_for(what, cond):
    for _ in range(1200):  # a hang guard of two minutes, not a timing assertion
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError(f"still waiting for {what}")


def test_context_is_unpacked_while_it_arrives(vdb, tmp_path):
    """The files at the front of the context are in the daemon's context directory while the
    client has not sent the rest: the upload and the unpack overlap. The build then completes
    on the same connection, which serves a next request."""
    late = os.urandom(3 << 20)
    # libarchive looks at up to a few hundred KiB to tell the compression before it reads the
    # first entry: the part sent first is larger than that
    tar = context_tar([("Dockerfile", b"FROM busybox\nCOPY . /ctx/\n"),
                       ("pad.bin", os.urandom(1 << 20)), ("first.txt", b"here early\n"),
                       ("late.bin", late)])
    cut = tar.index(b"here early\n") + 1024  # past first.txt's data block, inside late.bin's
    s = build_socket(vdb, "t=streamed")
    try:
        send_chunk(s, tar[:cut])
        tmp = vdb.data / "tmp"
        wait_for("first.txt unpacked before the body's end",
                 lambda: any((d / "first.txt").is_file() and
                             (d / "first.txt").read_bytes() == b"here early\n"
                             for d in tmp.glob("build-context-*")))
        assert not any((d / "late.bin").exists() and (d / "late.bin").stat().st_size == len(late)
                       for d in tmp.glob("build-context-*"))
        for off in range(cut, len(tar), 1 << 20):
            send_chunk(s, tar[off:off + (1 << 20)])
        s.sendall(b"0\r\n\r\n")
        status, objs = read_chunked_reply(s)
        assert status.startswith("HTTP/1.1 200"), status
        assert not [o for o in objs if "error" in o], objs
        assert any("aux" in o for o in objs), objs
        s.sendall(b"GET /v1.41/_ping HTTP/1.1\r\nHost: d\r\n\r\n")
        assert s.recv(65536).startswith(b"HTTP/1.1 200")
    finally:
        s.close()
    out = vdb.docker("run", "--rm", "streamed", "sh", "-c",
                     "cat /ctx/first.txt; md5sum < /ctx/late.bin").stdout
    assert out == f"here early\n{hashlib.md5(late).hexdigest()}  -\n"


def test_client_leaving_mid_context_leaves_nothing(vdb, tmp_path):
    """A client that goes away halfway through its context: the worker sees a truncated tar,
    the context directory goes, and the daemon builds on."""
    tar = context_tar([("Dockerfile", b"FROM busybox\n"), ("big.bin", os.urandom(2 << 20))])
    s = build_socket(vdb, "t=never")
    send_chunk(s, tar[:len(tar) // 2])
    tmp = vdb.data / "tmp"
    wait_for("the context directory", lambda: list(tmp.glob("build-context-*")))
    s.close()
    wait_for("the context directory to go", lambda: not list(tmp.glob("build-context-*")))
    assert vdb.docker("images", "-q", "never").stdout == ""
    ok = context(tmp_path / "ok", {"Dockerfile": "FROM busybox\nLABEL after=leaving\n"})
    vdb.docker("build", "-t", "after", str(ok))
    assert '"after":"leaving"' in vdb.docker("inspect", "-f", "{{json .Config.Labels}}",
                                             "after").stdout


def test_broken_chunked_context_is_an_error(vdb):
    """Chunk framing that breaks mid-body: the build fails with the truncated context named, and
    the connection (whose framing is lost) closes after the answer."""
    tar = context_tar([("Dockerfile", b"FROM busybox\n"), ("f", os.urandom(300000))])
    s = build_socket(vdb, "t=broken")
    try:
        send_chunk(s, tar[:100000])
        s.sendall(b"zz-not-a-size\r\n")
        status, objs = read_chunked_reply(s)
        assert status.startswith("HTTP/1.1 200"), status
        errors = [o["error"] for o in objs if "error" in o]
        assert errors and "unpack the build context" in errors[0], objs
        s.settimeout(120)
        rest = b""
        while True:
            more = s.recv(65536)
            if not more:
                break
            rest += more
        assert rest == b""
    finally:
        s.close()
    assert vdb.docker("images", "-q", "broken").stdout == ""


def _read_to_end(s):
    """What the daemon sends until it closes the connection (a hang guard of two minutes)."""
    s.settimeout(120)
    data = b""
    while True:
        more = s.recv(65536)
        if not more:
            return data
        data += more


def test_stalled_bodies_are_dropped_after_the_idle_timeout(build_dir, tmp_path):
    """Clients that send a request head and then stall: with body-idle-timeout 3 (from the
    config file), five builds whose context never comes (one more than the daemon's four
    workers, so every worker is held) and two stalled bodies the loop reads (an image archive
    and a JSON document). A request that needs a worker is still answered, the stalled builds'
    connections are closed without an answer and their context directories removed, the other
    two get 408 and the close. Bad values of the option are refused."""
    from test_daemon import Vesseld
    from test_daemon_images import refused
    for args, words in [(["--body-idle-timeout", "0"], "expected 1 to 86400 seconds"),
                        (["--body-idle-timeout", "soon"], "--body-idle-timeout")]:
        assert words in refused(build_dir, *args)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"body-idle-timeout": "300"}))
    assert "body-idle-timeout" in refused(build_dir, "--config", str(bad))
    (tmp_path / "vd").mkdir()
    cfg = tmp_path / "daemon.json"
    cfg.write_text(json.dumps({"body-idle-timeout": 3}))
    vd = Vesseld(build_dir, tmp_path / "vd", extra=["--config", str(cfg)])
    conns = []
    try:
        def stalled(head):
            s = socket.socket(socket.AF_UNIX)
            s.connect(str(vd.sock))
            s.sendall(head)
            conns.append(s)
            return s
        builds = [stalled(f"POST /v1.41/build?t=stall{i} HTTP/1.1\r\nHost: d\r\n"
                          "Content-Type: application/x-tar\r\nContent-Length: 100000\r\n\r\n"
                          .encode()) for i in range(5)]
        load = stalled(b"POST /v1.41/images/load HTTP/1.1\r\nHost: d\r\n"
                       b"Content-Type: application/x-tar\r\nContent-Length: 100000\r\n\r\n"
                       + b"\0" * 512)
        create = stalled(b"POST /v1.41/containers/create HTTP/1.1\r\nHost: d\r\n"
                         b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
        tmp = vd.data / "tmp"
        wait_for("the stalled builds' context directories",
                 lambda: len(list(tmp.glob("build-context-*"))) >= 1)
        # a request for a worker: queued behind the stalled builds until they are dropped
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(120)
        s.connect(str(vd.sock))
        s.sendall(b"GET /v1.41/images/json HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n")
        reply = _read_to_end(s)
        s.close()
        assert reply.startswith(b"HTTP/1.1 200") and reply.rstrip().endswith(b"[]"), reply
        for b in builds:
            assert _read_to_end(b) == b""  # the build's answer went nowhere
        for c in (load, create):
            reply = _read_to_end(c)
            assert reply.startswith(b"HTTP/1.1 408"), reply
            assert b"request body timed out: nothing received for 3 seconds" in reply, reply
        wait_for("the context directories to go", lambda: not list(tmp.glob("build-context-*")))
        assert vd.log_text().count("no request body bytes for 3 s: closing the connection") == 7
        # the daemon serves on
        assert vd.raw(b"GET /_ping HTTP/1.1\r\nHost: d\r\n\r\n").startswith(b"HTTP/1.1 200")
    finally:
        for c in conns:
            c.close()
        vd.cleanup()
    assert list((vd.data / "tmp").glob("build-*")) == []


def api_build(vdb, tar, tag):
    """POST /build with a Content-Length body; the image's output of `cat /out`."""
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(120)
    s.connect(str(vdb.sock))
    try:
        s.sendall(f"POST /v1.41/build?t={tag} HTTP/1.1\r\nHost: d\r\n"
                  f"Content-Type: application/x-tar\r\nContent-Length: {len(tar)}\r\n\r\n"
                  .encode() + tar)
        status, objs = read_chunked_reply(s)
    finally:
        s.close()
    assert status.startswith("HTTP/1.1 200") and not [o for o in objs if "error" in o], objs
    text = "".join(o.get("stream", "") for o in objs)
    return text, vdb.docker("run", "--rm", tag, "cat", "/out").stdout


def test_cache_follows_what_the_context_holds(vdb):
    """The files are hashed as they are unpacked; the cache key must still be what the context
    finally holds: a hard link carries its target's content, a path written twice its last
    content, and a changed content is a miss even at the same size."""
    df = b"FROM busybox\nCOPY b /out\n"
    text, out = api_build(vdb, context_tar([("Dockerfile", df), ("a", b"one\n"),
                                            ("hardlink", "b", "a")]), "hl1")
    assert out == "one\n" and "Using cache" not in text
    text, out = api_build(vdb, context_tar([("Dockerfile", df), ("a", b"two\n"),
                                            ("hardlink", "b", "a")]), "hl2")
    assert out == "two\n" and "Using cache" not in text
    text, out = api_build(vdb, context_tar([("Dockerfile", df), ("a", b"two\n"),
                                            ("hardlink", "b", "a")]), "hl3")
    assert out == "two\n" and "Using cache" in text  # the same content: the same image
    df = b"FROM busybox\nCOPY a /out\n"
    text, out = api_build(vdb, context_tar([("Dockerfile", df), ("a", b"AAAA\n"),
                                            ("a", b"BBBB\n")]), "tw1")
    assert out == "BBBB\n"
    text, out = api_build(vdb, context_tar([("Dockerfile", df), ("a", b"BBBB\n"),
                                            ("a", b"CCCC\n")]), "tw2")
    assert out == "CCCC\n" and "Using cache" not in text


def test_next_context_is_unpacked_over_the_last(vdb, tmp_path):
    """The daemon keeps the last context's directory and unpacks the next one over it: what
    the next build sees is exactly its own context (files rewritten, shorter ones cut, a file
    where a directory was and back, links, nothing left from before), and `docker builder
    prune` removes the kept directory."""
    df = "FROM busybox\nCOPY . /c/\nCMD [\"sh\", \"-c\", \"cd /c && find . | sort && cat x sub\"]\n"
    a = context(tmp_path / "a", {"Dockerfile": df, "x": "a long first x\n", "y": "y\n",
                                 "sub/z": "z\n", "l": ("link", "x")})
    vdb.docker("build", "-t", "ctx-a", str(a))
    kept = vdb.data / "build-context.idle"
    assert (kept / "x").is_file()
    b = context(tmp_path / "b", {"Dockerfile": df, "x": "x2\n", "sub": "now a file\n",
                                 "y/inner": "y is a directory now\n"})
    vdb.docker("build", "-t", "ctx-b", str(b))
    out = vdb.docker("run", "--rm", "ctx-b").stdout.split("\n")
    assert out == [".", "./Dockerfile", "./sub", "./x", "./y", "./y/inner", "x2", "now a file",
                   ""], out
    out = vdb.docker("run", "--rm", "ctx-a", "sh", "-c", "cd /c && find . | sort").stdout
    assert out.split() == [".", "./Dockerfile", "./l", "./sub", "./sub/z", "./x", "./y"]
    vdb.docker("builder", "prune", "-f")
    assert not kept.exists()
