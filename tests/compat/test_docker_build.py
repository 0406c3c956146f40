"""``DOCKER_BUILDKIT=0 docker build`` against berthd: an app-shaped Dockerfile builds, a second build hits the
cache on every step, a changed source file rebuilds from its COPY on; multi-stage builds, ``.dockerignore``,
``docker history``, build args, ``--target``, ``COPY --chown/--chmod``, ``--from``, ADD of a local tar; and
hostile builds that fail with one clear line and leave the host untouched while the daemon stays up."""

from __future__ import annotations

import gzip
import io
import json
import re
import secrets
import subprocess
import tarfile
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from tests.fixtures.berthd import Berthd

pytestmark = [pytest.mark.root, pytest.mark.network]

APP_DOCKERFILE = """\
FROM busybox
WORKDIR /app
COPY requirements.txt .
RUN while read pkg; do echo "installed $pkg" >> /app/installed; done < requirements.txt
COPY src/ ./src/
ENV MODE=production PORT=8080
EXPOSE 8080
HEALTHCHECK --interval=5s CMD test -f /app/installed
CMD ["sh", "-c", "cat /app/installed /app/src/main.txt"]
"""


@pytest.fixture
def tag(berthd_with_busybox: Berthd) -> Iterator[str]:
    """A unique image name; images with it are removed afterwards."""
    name = f"built-{secrets.token_hex(4)}"
    yield name
    for suffix in ("latest", "v2", "target"):
        berthd_with_busybox.docker("rmi", "-f", f"{name}:{suffix}", check=False)


def build(d: Berthd, context: Path, *args: str, check: bool = True) -> tuple[int, str]:
    """``docker build`` with the classic builder: (exit code, stdout + stderr)."""
    env_args = ["build", *args, str(context)]
    result = d.docker(*env_args, check=False, timeout=120)
    output = result.stdout + result.stderr
    assert not check or result.returncode == 0, output
    return result.returncode, output


@pytest.fixture(autouse=True)
def classic_builder(berthd_with_busybox: Berthd, monkeypatch: pytest.MonkeyPatch) -> None:
    berthd_with_busybox.env["DOCKER_BUILDKIT"] = "0"


def app_context(path: Path) -> Path:
    (path / "src").mkdir(parents=True)
    (path / "Dockerfile").write_text(APP_DOCKERFILE)
    (path / "requirements.txt").write_text("flask\nrequests\n")
    (path / "src" / "main.txt").write_text("main v1\n")
    (path / "src" / "util.txt").write_text("util\n")
    return path


def test_app_builds_caches_and_rebuilds_from_changed_copy(berthd_with_busybox: Berthd, tag: str,
                                                         tmp_path: Path) -> None:
    d = berthd_with_busybox
    context = app_context(tmp_path)
    _, first = build(d, context, "-t", tag)
    assert "Step 1/9 : FROM busybox" in first and "Successfully tagged " + tag + ":latest" in first
    assert "Using cache" not in first
    run = d.docker("run", "--rm", tag).stdout
    assert run == "installed flask\ninstalled requests\nmain v1\n"

    doc = json.loads(d.docker("image", "inspect", tag).stdout)[0]
    config = doc["Config"]
    assert "MODE=production" in config["Env"] and "PORT=8080" in config["Env"]
    assert config["ExposedPorts"] == {"8080/tcp": {}} and config["WorkingDir"] == "/app"
    assert config["Healthcheck"]["Test"] == ["CMD-SHELL", "test -f /app/installed"]
    assert config["Healthcheck"]["Interval"] == 5_000_000_000
    assert config["Cmd"] == ["sh", "-c", "cat /app/installed /app/src/main.txt"]

    _, second = build(d, context, "-t", tag)
    assert second.count(" ---> Using cache") == 8, second
    assert json.loads(d.docker("image", "inspect", tag).stdout)[0]["Id"] == doc["Id"]

    (context / "src" / "main.txt").write_text("main v2\n")
    _, third = build(d, context, "-t", tag)
    assert third.count(" ---> Using cache") == 3, third  # WORKDIR, COPY manifest, RUN install stay cached
    steps = third.split("Step ")
    assert "Using cache" in steps[4] and "Using cache" not in steps[5]  # RUN cached, COPY src/ rebuilt
    assert d.docker("run", "--rm", tag).stdout.endswith("main v2\n")

    parent = json.loads(d.docker("image", "inspect", tag).stdout)[0]["Parent"]
    assert parent.startswith("sha256:")  # intermediate images: listed with --all only, as dockerd lists them
    assert parent not in d.docker("images", "-q", "--no-trunc").stdout.split()
    assert parent in d.docker("images", "-a", "-q", "--no-trunc").stdout.split()
    history = d.docker("history", "--no-trunc", "--format", "{{.CreatedBy}}", tag).stdout
    assert "COPY file:" in history and "COPY dir:" in history and "#(nop)  EXPOSE 8080" in history
    assert "WORKDIR /app" in history and "while read pkg" in history


def build_tar(d: Berthd, data: bytes, *args: str) -> tuple[int, str]:
    """``docker build -`` with a context tar on stdin (sent as it is): (exit code, stdout + stderr)."""
    result = subprocess.run(["docker", "build", *args, "-"], env=d.env, input=data, capture_output=True,
                            timeout=120)
    return result.returncode, (result.stdout + result.stderr).decode(errors="replace")


def context_tar(files: Mapping[str, str | bytes], symlinks: Mapping[str, str] | None = None) -> bytes:
    """A context tar made by code: regular files and symlinks."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, content in files.items():
            data = content.encode() if isinstance(content, str) else content
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
        for name, target in (symlinks or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return out.getvalue()


def error_line(output: str) -> str:
    """The docker CLI's error output of a failed build: one line, no traceback."""
    assert "Traceback" not in output
    lines = [line for line in output.splitlines() if line and not line.startswith((" ", "DEPRECATED", "Step",
                                                                                     "Sending", "Removing"))]
    return lines[-1]


def assert_daemon_up(d: Berthd) -> None:
    assert d.docker("version", "--format", "{{.Server.APIVersion}}").stdout.strip() == "1.41"


def test_multi_stage_copies_one_artefact_and_is_smaller(berthd_with_busybox: Berthd, tag: str,
                                                        tmp_path: Path) -> None:
    d = berthd_with_busybox
    (tmp_path / "Dockerfile").write_text(
        "FROM busybox AS builder\n"
        "RUN mkdir -p /out /work && dd if=/dev/zero of=/work/junk bs=1024 count=512 && echo artefact > /out/app\n"
        "FROM busybox AS unused\nRUN echo never-built\n"
        "FROM busybox\nCOPY --from=builder /out/app /app\nCMD [\"cat\", \"/app\"]\n")
    _, output = build(d, tmp_path, "-t", tag)
    assert "never-built" not in output and "Step 1/5 : FROM busybox AS builder" in output
    build(d, tmp_path, "--target", "builder", "-t", f"{tag}:target")
    assert d.docker("run", "--rm", tag).stdout == "artefact\n"
    assert d.docker("run", "--rm", tag, "sh", "-c", "test -e /work/junk", check=False).returncode == 1
    final, builder = (json.loads(d.docker("image", "inspect", t).stdout)[0]["Size"] for t in (tag, f"{tag}:target"))
    assert final < builder - 400_000


def test_dockerignore_exclusions_and_exceptions(berthd_with_busybox: Berthd, tag: str, tmp_path: Path) -> None:
    d = berthd_with_busybox
    files = {"Dockerfile": "FROM busybox\nCOPY . /ctx/\n",
             ".dockerignore": "# comment\n*.log\nsecret/\n!important.log\n", "a.log": "x",
             "important.log": "keep", "secret/key": "s", "keep.txt": "k", "sub/deep.log": "d"}
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    build(d, tmp_path, "-t", tag)
    found = set(d.docker("run", "--rm", tag, "sh", "-c", "find /ctx -type f").stdout.split())
    assert {"/ctx/important.log", "/ctx/keep.txt", "/ctx/sub/deep.log", "/ctx/Dockerfile"} <= found
    assert not found & {"/ctx/a.log", "/ctx/secret/key"}
    # The daemon applies the patterns too (a client sending a raw tar), and drops an excluded Dockerfile.
    raw = dict(files, **{".dockerignore": "*.log\nsecret\nDockerfile\n"})
    code, output = build_tar(d, context_tar(raw), "-t", tag)
    assert code == 0, output
    found = set(d.docker("run", "--rm", tag, "sh", "-c", "find /ctx -type f").stdout.split())
    assert found == {"/ctx/.dockerignore", "/ctx/keep.txt", "/ctx/sub/deep.log"}


def test_build_args_target_and_history(berthd_with_busybox: Berthd, tag: str, tmp_path: Path) -> None:
    d = berthd_with_busybox
    (tmp_path / "Dockerfile").write_text(
        "ARG BASE=busybox\nFROM ${BASE} AS first\nARG GREETING=hello\nRUN echo \"$GREETING\" > /greeting\n"
        "FROM first AS second\nRUN echo never > /never\n")
    _, output = build(d, tmp_path, "--build-arg", "GREETING=hi", "--build-arg", "UNUSED=1", "--target", "first",
                      "-t", tag)
    assert "Step 4/4 : RUN" in output and "never" not in output
    assert "[Warning] One or more build-args [UNUSED] were not consumed" in output
    assert d.docker("run", "--rm", tag, "cat", "/greeting").stdout == "hi\n"
    history = d.docker("history", "--no-trunc", "--format", "{{.CreatedBy}}", tag).stdout.splitlines()
    assert history[0] == '|1 GREETING=hi /bin/sh -c echo "$GREETING" > /greeting'
    assert history[1] == "/bin/sh -c #(nop)  ARG GREETING=hi"


def test_copy_chown_chmod_from_image_and_add_tar(berthd_with_busybox: Berthd, tag: str, tmp_path: Path) -> None:
    d = berthd_with_busybox
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x").write_text("x")
    (tmp_path / "f.txt").write_text("f")
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        info = tarfile.TarInfo("pkg/inside.txt")
        info.size = 6
        tar.addfile(info, io.BytesIO(b"inside"))
    (tmp_path / "bundle.tar.gz").write_bytes(archive.getvalue())
    (tmp_path / "Dockerfile").write_text(
        "FROM busybox\nRUN mkdir -p /etc && echo nobody:x:65534:65534::/:/bin/false > /etc/passwd"
        " && echo nogroup:x:65534: > /etc/group\n"
        "COPY --chown=nobody:nogroup --chmod=0640 f.txt /f.txt\nCOPY --chown=1234 d/ /d/\n"
        "COPY --from=busybox /bin/busybox /bbx/\nADD bundle.tar.gz /unpacked/\nCOPY bundle.tar.gz /copied/\n"
        "COPY *.txt /globbed/\n")
    build(d, tmp_path, "-t", tag)
    out = d.docker("run", "--rm", tag, "sh", "-c",
                   "stat -c '%u:%g %a' /f.txt /d/x; cat /unpacked/pkg/inside.txt; echo; ls /copied /globbed;"
                   " /bbx/busybox echo bb").stdout.split("\n")
    assert out[:3] == ["65534:65534 640", "1234:1234 644", "inside"]
    assert "bundle.tar.gz" in out and "f.txt" in out and "bb" in out


def test_failing_run_reports_dockers_message_and_leaves_no_container(berthd_with_busybox: Berthd, tag: str,
                                                                    tmp_path: Path) -> None:
    d = berthd_with_busybox
    before = d.docker("ps", "-aq").stdout.split()
    (tmp_path / "Dockerfile").write_text("FROM busybox\nRUN echo visible-output && false\n")
    code, output = build(d, tmp_path, "-t", tag, check=False)
    assert code == 1 and "visible-output" in output
    assert error_line(output) == "The command '/bin/sh -c echo visible-output && false' returned a non-zero code: 1"
    assert d.docker("ps", "-aq").stdout.split() == before
    (tmp_path / "Dockerfile").write_text("FROM busybox\nRUN exit 3\n")
    code, output = build(d, tmp_path, check=False)
    assert code == 3 and error_line(output) == "The command '/bin/sh -c exit 3' returned a non-zero code: 3"


@pytest.mark.parametrize(("dockerfile", "expected"), [
    ("FROM busybox\nCOPY ../x /x\n", "forbidden path outside the build context: ../x"),
    ("FROM busybox\nCOPY missing /x\n", "file not found in build context"),
    ("FROM busybox\nRUN --mount=type=cache,target=/c true\n", "need BuildKit"),
    ("FROM busybox\nBOGUS x\n", "unknown instruction: BOGUS"),
    ("FROM busybox\nEXPOSE notaport\n", "Invalid containerPort: notaport"),
    ("FROM busybox\nCOPY a b c\n", "the destination must be a directory and end with a /"),
])
def test_bad_dockerfiles_fail_with_one_line(berthd_with_busybox: Berthd, tmp_path: Path, dockerfile: str,
                                            expected: str) -> None:
    d = berthd_with_busybox
    (tmp_path / "Dockerfile").write_text(dockerfile)
    (tmp_path / "a").write_text("a")
    (tmp_path / "b").write_text("b")
    code, output = build(d, tmp_path, check=False)
    assert code != 0 and expected in error_line(output), output
    assert_daemon_up(d)


def test_hostile_context_symlinks_never_reach_the_host(berthd_with_busybox: Berthd, tag: str,
                                                       tmp_path: Path) -> None:
    d = berthd_with_busybox
    secret = tmp_path / "host-secret"
    secret.write_text("host secret\n")
    code, output = build_tar(d, context_tar({}, {"Dockerfile": str(secret)}))
    assert code != 0 and "Cannot locate specified Dockerfile: Dockerfile" in error_line(output)
    files = {"Dockerfile": "FROM busybox\nCOPY link /copied\nCOPY up/ /up/\n", "host-secret": "context copy\n"}
    code, output = build_tar(d, context_tar(files, {"link": "/host-secret", "up/escape": "../../../../" + str(secret)}),
                             "-t", tag)
    assert code == 0, output
    assert d.docker("run", "--rm", tag, "cat", "/copied").stdout == "context copy\n"  # resolved inside the context
    assert d.docker("run", "--rm", tag, "sh", "-c", "readlink /up/escape").stdout.strip().endswith(str(secret))
    code, output = build_tar(d, context_tar({"Dockerfile": "FROM busybox\nCOPY link /copied\n"}, {"link": str(secret)}))
    assert code != 0 and "file not found in build context" in error_line(output)  # the host path is not read
    assert_daemon_up(d)


def test_steps_never_follow_symlinks_to_the_host(berthd_with_busybox: Berthd, tag: str, tmp_path: Path) -> None:
    d = berthd_with_busybox
    host_dir = tmp_path / "host"
    host_dir.mkdir()
    host_file = host_dir / "hostfile"
    host_file.write_text("untouched\n")
    (tmp_path / "ctx").mkdir()
    (tmp_path / "ctx" / "f").write_text("payload\n")
    (tmp_path / "ctx" / "Dockerfile").write_text(
        f"FROM busybox\nRUN rm -f /etc/resolv.conf; ln -sf {host_file} /etc/resolv.conf; ln -s {host_dir} /escape\n"
        "RUN echo pwned > /etc/resolv.conf || true\nCOPY f /escape/f\nCOPY f /etc/resolv.conf\n"
        "WORKDIR /escape/made-by-workdir\nADD f /escape/added\n")
    code, output = build(d, tmp_path / "ctx", "-t", tag, check=False)
    assert code == 0, output
    assert host_file.read_text() == "untouched\n" and sorted(p.name for p in host_dir.iterdir()) == ["hostfile"]
    assert d.docker("run", "--rm", tag, "cat", f"{host_dir}/f").stdout == "payload\n"  # inside the image


def test_workdir_proc_self_fd_fails_cleanly_or_stays_inside(berthd_with_busybox: Berthd, tag: str,
                                                            tmp_path: Path) -> None:
    d = berthd_with_busybox
    (tmp_path / "Dockerfile").write_text("FROM busybox\nWORKDIR /proc/self/fd/7\nRUN pwd && touch escaped-marker\n")
    code, output = build(d, tmp_path, "-t", tag, check=False)
    if code != 0:
        assert error_line(output)
    assert not list(Path("/").glob("escaped-marker")) and not (d.data_root / "escaped-marker").exists()
    assert_daemon_up(d)


def test_gzip_bomb_add_is_refused(berthd_with_busybox: Berthd, tag: str, tmp_path: Path) -> None:
    d = berthd_with_busybox
    inner = io.BytesIO()
    with tarfile.open(fileobj=inner, mode="w") as tar:
        info = tarfile.TarInfo("zeros")
        info.size = 64 * 1024 * 1024
        tar.addfile(info, io.BytesIO(bytes(info.size)))
    (tmp_path / "bomb.tar.gz").write_bytes(gzip.compress(inner.getvalue(), 9))
    (tmp_path / "Dockerfile").write_text("FROM busybox\nADD bomb.tar.gz /bomb/\n")
    code, output = build(d, tmp_path, "-t", tag, check=False)
    assert code != 0 and re.search(r"compression ratio \d+:1 exceeds the limit", error_line(output)), output
    assert_daemon_up(d)


@pytest.mark.parametrize("compression", ["bz2", "xz", "gz"])
def test_compressed_contexts(berthd_with_busybox: Berthd, tag: str, compression: str) -> None:
    d = berthd_with_busybox
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode=f"w:{compression}") as tar:  # type: ignore[call-overload]
        for name, data in (("Dockerfile", b"FROM busybox\nCOPY hello /hello\n"), ("hello", b"compressed\n")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    code, output = build_tar(d, out.getvalue(), "-t", tag)
    assert code == 0, output
    assert d.docker("run", "--rm", tag, "cat", "/hello").stdout == "compressed\n"


def test_hostile_context_tar_is_refused(berthd_with_busybox: Berthd, tmp_path: Path) -> None:
    d = berthd_with_busybox
    target = tmp_path / "escape"
    data = context_tar({"Dockerfile": "FROM busybox\n", "../../../../../../" + str(target): "x"})
    code, output = build_tar(d, data)
    assert code != 0 and "invalid build context" in error_line(output) and not target.exists()
    code, output = build_tar(d, b"not a tar at all" * 64)
    assert code != 0 and error_line(output)
    assert_daemon_up(d)
