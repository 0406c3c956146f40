"""The docker CLI's ``cp``, ``export`` and ``diff`` against berthd: files and directories both ways, tar
streams (``-``), stopped and running containers, Docker's destination rules, and clear one-line errors."""

from __future__ import annotations

import io
import secrets
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.berthd import Berthd

pytestmark = [pytest.mark.root, pytest.mark.network]


@pytest.fixture
def container(berthd_with_busybox: Berthd) -> Iterator[str]:
    """A created (not started) busybox container with /tmp, /home and /etc/hostname, removed afterwards."""
    name = f"cp-{secrets.token_hex(4)}"
    berthd_with_busybox.docker("create", "--name", name, "busybox", "sleep", "300")
    _seed(berthd_with_busybox, name)
    yield name
    berthd_with_busybox.docker("rm", "-f", name, check=False)


def _seed(d: Berthd, name: str) -> None:
    """The test image holds only /bin: add a few directories and a file with ``docker cp -`` into ``/``."""
    _docker_bytes(d, "cp", "-", f"{name}:/", input=_tar(("tmp", None), ("home", None), ("etc", None),
                                                          ("etc/hostname", b"berth\n")))


def _docker_bytes(d: Berthd, *args: str, input: bytes | None = None) -> bytes:
    result = subprocess.run(["docker", *args], env=d.env, capture_output=True, input=input, timeout=60)
    assert result.returncode == 0, f"docker {' '.join(args)}: {result.stderr.decode()}"
    return result.stdout


def _tar(*members: tuple[str, bytes | None]) -> bytes:
    """A tar of files (bytes) and directories (None)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _cat(d: Berthd, name: str, path: str) -> str:
    """A file of the container, read with ``docker cp ... -`` (works stopped or running)."""
    with tarfile.open(fileobj=io.BytesIO(_docker_bytes(d, "cp", f"{name}:{path}", "-"))) as tar:
        member = tar.next()
        assert member is not None and member.isfile()
        f = tar.extractfile(member)
        assert f is not None
        return f.read().decode()


def test_file_both_ways(berthd_with_busybox: Berthd, container: str, tmp_path: Path) -> None:
    d = berthd_with_busybox
    (tmp_path / "hello.txt").write_text("hello berth\n")
    d.docker("cp", str(tmp_path / "hello.txt"), f"{container}:/tmp/")
    d.docker("cp", str(tmp_path / "hello.txt"), f"{container}:/tmp/renamed.txt")
    d.docker("cp", f"{container}:/tmp/hello.txt", str(tmp_path / "back.txt"))
    assert (tmp_path / "back.txt").read_text() == "hello berth\n"
    assert _cat(d, container, "/tmp/renamed.txt") == "hello berth\n"
    d.docker("cp", f"{container}:/etc/hostname", str(tmp_path))
    assert (tmp_path / "hostname").read_text() == "berth\n"


def test_directory_rules(berthd_with_busybox: Berthd, container: str, tmp_path: Path) -> None:
    d = berthd_with_busybox
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("A")
    (src / "sub" / "b.txt").write_text("B")
    d.docker("cp", str(src), f"{container}:/tmp")  # existing dir: becomes /tmp/src
    d.docker("cp", str(src), f"{container}:/tmp/copy")  # missing dir: becomes /tmp/copy
    d.docker("cp", f"{src}/.", f"{container}:/home")  # contents only
    assert _cat(d, container, "/tmp/src/sub/b.txt") == "B"
    assert _cat(d, container, "/tmp/copy/a.txt") == "A"
    assert _cat(d, container, "/home/sub/b.txt") == "B"
    out = tmp_path / "out"
    out.mkdir()
    d.docker("cp", f"{container}:/tmp/src", str(out))
    assert (out / "src" / "sub" / "b.txt").read_text() == "B"
    d.docker("cp", f"{container}:/tmp/src/.", str(out / "flat"))
    assert (out / "flat" / "a.txt").read_text() == "A"

    missing_parent = d.docker("cp", str(src), f"{container}:/nosuch/dir", check=False)
    assert missing_parent.returncode != 0 and "Traceback" not in missing_parent.stderr
    onto_file = d.docker("cp", str(src), f"{container}:/etc/hostname", check=False)
    assert onto_file.returncode != 0
    assert "cannot copy directory" in onto_file.stderr or "directory" in onto_file.stderr


def test_tar_streams(berthd_with_busybox: Berthd, container: str) -> None:
    d = berthd_with_busybox
    _docker_bytes(d, "cp", "-", f"{container}:/tmp", input=_tar(("t", None), ("t/x.txt", b"from a stream")))
    assert _cat(d, container, "/tmp/t/x.txt") == "from a stream"
    with tarfile.open(fileobj=io.BytesIO(_docker_bytes(d, "cp", f"{container}:/tmp/t", "-"))) as tar:
        assert sorted(tar.getnames()) == ["t", "t/x.txt"]
    not_dir = d.docker("cp", "-", f"{container}:/etc/hostname", check=False, input="")
    assert not_dir.returncode != 0 and "must be a directory" in not_dir.stderr


def test_running_container(berthd_with_busybox: Berthd, tmp_path: Path) -> None:
    d = berthd_with_busybox
    name = f"cp-run-{secrets.token_hex(4)}"
    d.docker("run", "-d", "--name", name, "busybox", "sleep", "300")
    try:
        _seed(d, name)
        (tmp_path / "live.txt").write_text("live\n")
        d.docker("cp", str(tmp_path / "live.txt"), f"{name}:/tmp/live.txt")
        assert d.docker("exec", name, "cat", "/tmp/live.txt").stdout == "live\n"
        d.docker("exec", name, "sh", "-c", "echo made inside > /tmp/inside.txt")
        d.docker("cp", f"{name}:/tmp/inside.txt", str(tmp_path / "inside.txt"))
        assert (tmp_path / "inside.txt").read_text() == "made inside\n"
    finally:
        d.docker("rm", "-f", name, check=False)


def test_missing_path_is_a_clear_error(berthd_with_busybox: Berthd, container: str, tmp_path: Path) -> None:
    d = berthd_with_busybox
    result = d.docker("cp", f"{container}:/no/such/file", str(tmp_path), check=False)
    assert result.returncode != 0
    assert "Could not find the file /no/such/file in container" in result.stderr
    assert "Traceback" not in result.stderr
    d.docker("version")  # the daemon is still up


def test_symlink_follow(berthd_with_busybox: Berthd, container: str, tmp_path: Path) -> None:
    d = berthd_with_busybox
    _docker_bytes(d, "cp", "-", f"{container}:/tmp", input=_tar(("real", None), ("real/f.txt", b"through a link")))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        link = tarfile.TarInfo("link")
        link.type, link.linkname = tarfile.SYMTYPE, "/tmp/real"
        tar.addfile(link)
    _docker_bytes(d, "cp", "-", f"{container}:/tmp", input=buf.getvalue())
    (tmp_path / "payload.txt").write_text("payload")
    d.docker("cp", str(tmp_path / "payload.txt"), f"{container}:/tmp/link")  # a destination symlink is followed
    assert _cat(d, container, "/tmp/real/payload.txt") == "payload"
    d.docker("cp", "-L", f"{container}:/tmp/link", str(tmp_path / "followed"))
    assert (tmp_path / "followed" / "f.txt").read_text() == "through a link"
    d.docker("cp", f"{container}:/tmp/link", str(tmp_path / "kept"))
    assert (tmp_path / "kept").is_symlink()


def test_export(berthd_with_busybox: Berthd, container: str) -> None:
    d = berthd_with_busybox
    data = _docker_bytes(d, "export", container)
    listing = subprocess.run(["tar", "t"], input=data, capture_output=True, check=True).stdout.decode().split()
    assert {"bin/busybox", "bin/sh", "etc/hostname", "tmp/"} <= set(listing)


def test_diff(berthd_with_busybox: Berthd) -> None:
    d = berthd_with_busybox
    name = f"cp-diff-{secrets.token_hex(4)}"
    d.docker("run", "-d", "--name", name, "busybox", "sh", "-c",
             "mkdir -p /data/sub && echo new > /data/sub/new.txt && rm /bin/ls && chmod 700 /bin/busybox")
    try:
        assert d.docker("wait", name).stdout.strip() == "0"
        lines = d.docker("diff", name).stdout.splitlines()
        assert {"C /bin", "C /bin/busybox", "D /bin/ls", "A /data", "A /data/sub", "A /data/sub/new.txt"} <= set(lines)
        assert lines.index("A /data") < lines.index("A /data/sub") < lines.index("A /data/sub/new.txt")
        assert not any(line.endswith(("/bin/sh", "/bin/true")) for line in lines)
    finally:
        d.docker("rm", "-f", name, check=False)
