"""The container archive API on a real berthd: path stat, tar in and out, compression, ownership, and
hostile input. Hostile archives are built here with tarfile.TarInfo; symlinks inside the container that
point at a host directory must never expose or overwrite the host's files (a canary checks it). Every bad
request gets a one-line 4xx and the daemon keeps answering."""

from __future__ import annotations

import base64
import bz2
import gzip
import io
import json
import lzma
import secrets
import tarfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fixtures.berthd import Berthd

pytestmark = [pytest.mark.root, pytest.mark.network]

GO_DIR, GO_SYMLINK, GO_STICKY = 1 << 31, 1 << 27, 1 << 20


@pytest.fixture
def api(berthd_with_busybox: Berthd) -> Iterator[httpx.Client]:
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(berthd_with_busybox.socket)),
                      base_url="http://berth/v1.41", timeout=60) as client:
        yield client


@pytest.fixture
def container(berthd_with_busybox: Berthd, api: httpx.Client) -> Iterator[str]:
    """A created busybox container (user 1000:1000) with /tmp, /etc/hostname; removed afterwards."""
    name = f"arc-{secrets.token_hex(4)}"
    berthd_with_busybox.docker("create", "--name", name, "--user", "1000:1000", "busybox", "sleep", "300")
    put(api, name, "/", tar_of(Entry("tmp", kind=tarfile.DIRTYPE, mode=0o1777), Entry("etc", kind=tarfile.DIRTYPE),
                               Entry("etc/hostname", b"berth\n")))
    yield name
    berthd_with_busybox.docker("rm", "-f", name, check=False)


@pytest.fixture
def canary(tmp_path: Path) -> Iterator[Path]:
    """A host directory holding ``canary.txt``; the test fails if its contents change."""
    directory = tmp_path / f"host-{secrets.token_hex(3)}"
    directory.mkdir()
    (directory / "canary.txt").write_text("host secret\n")
    yield directory
    assert (directory / "canary.txt").read_text() == "host secret\n"
    assert sorted(p.name for p in directory.iterdir()) == ["canary.txt"]


class Entry:
    """One tar member to build."""

    def __init__(self, name: str, data: bytes = b"", *, kind: bytes = tarfile.REGTYPE, link: str = "",
                 mode: int = 0o644, uid: int = 0) -> None:
        self.info = tarfile.TarInfo(name)
        self.info.type, self.info.linkname, self.info.mode, self.info.uid = kind, link, mode, uid
        self.data = data
        if kind == tarfile.REGTYPE:
            self.info.size = len(data)
        if kind == tarfile.DIRTYPE:
            self.info.mode = mode if mode != 0o644 else 0o755


def tar_of(*entries: Entry) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for entry in entries:
            tar.addfile(entry.info, io.BytesIO(entry.data) if entry.info.isreg() else None)
    return buf.getvalue()


def put(api: httpx.Client, name: str, path: str, body: bytes, **params: str) -> httpx.Response:
    return api.put(f"/containers/{name}/archive", params={"path": path, **params}, content=body)


def get_tar(api: httpx.Client, name: str, path: str) -> tarfile.TarFile:
    response = api.get(f"/containers/{name}/archive", params={"path": path})
    assert response.status_code == 200, response.text
    return tarfile.open(fileobj=io.BytesIO(response.content))


def read(api: httpx.Client, name: str, path: str) -> bytes:
    with get_tar(api, name, path) as tar:
        member = tar.next()
        assert member is not None
        f = tar.extractfile(member)
        assert f is not None
        return f.read()


def path_stat(api: httpx.Client, name: str, path: str) -> dict[str, object]:
    response = api.head(f"/containers/{name}/archive", params={"path": path})
    assert response.status_code == 200, response.status_code
    doc: dict[str, object] = json.loads(base64.b64decode(response.headers["X-Docker-Container-Path-Stat"]))
    return doc


def assert_error(response: httpx.Response, status: int, message: str) -> None:
    assert response.status_code == status, (response.status_code, response.text)
    text = response.json()["message"]
    assert message in text and "\n" not in text and "Traceback" not in text, text


def bomb(compress: str, size: int = 64 << 20) -> bytes:
    """A tar holding ``size`` zero bytes, compressed with ``compress``, built as a stream."""
    header = tarfile.TarInfo("zeros")
    header.size = size
    head = header.tobuf(format=tarfile.PAX_FORMAT)
    compressor: zlib._Compress | bz2.BZ2Compressor | lzma.LZMACompressor
    if compress == "gzip":
        compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    elif compress == "bzip2":
        compressor = bz2.BZ2Compressor(9)
    else:
        compressor = lzma.LZMACompressor()
    out = [compressor.compress(head)]
    zeros = bytes(1 << 20)
    for _ in range(size >> 20):
        out.append(compressor.compress(zeros))
    out.append(compressor.compress(bytes(1024)) + compressor.flush())
    return b"".join(out)


# --- stat and get ---------------------------------------------------------------------------------


def test_stat_of_directory_file_and_symlink(api: httpx.Client, container: str) -> None:
    put(api, container, "/tmp", tar_of(Entry("link", kind=tarfile.SYMTYPE, link="../etc/hostname")))
    directory = path_stat(api, container, "/etc/")
    assert directory["name"] == "etc" and directory["mode"] == GO_DIR | 0o755 and directory["linkTarget"] == ""
    assert str(directory["mtime"]).endswith("Z") and "T" in str(directory["mtime"])
    file = path_stat(api, container, "etc/../etc/hostname")
    assert file == {**file, "name": "hostname", "size": 6, "mode": 0o644}
    link = path_stat(api, container, "/tmp/link")
    assert link["mode"] == GO_SYMLINK | 0o777 and link["linkTarget"] == "/etc/hostname"
    assert path_stat(api, container, "/")["name"] == "/"


def test_get_names_top_entry_after_the_path(api: httpx.Client, container: str) -> None:
    etc = ["etc", "etc/hostname", "etc/hosts", "etc/resolv.conf"]  # the engine's files (networking)
    with get_tar(api, container, "/etc") as tar:
        assert sorted(tar.getnames()) == etc
    with get_tar(api, container, "/etc/.") as tar:
        assert sorted(tar.getnames()) == [".", "./hostname", "./hosts", "./resolv.conf"]
    put(api, container, "/tmp", tar_of(Entry("link", kind=tarfile.SYMTYPE, link="/etc")))
    with get_tar(api, container, "/tmp/link") as tar:
        (member,) = tar.getmembers()
        assert member.issym() and member.linkname == "/etc"
    with get_tar(api, container, "/tmp/link/") as tar:
        assert sorted(tar.getnames()) == ["link", "link/hostname", "link/hosts", "link/resolv.conf"]


def test_put_compressed_and_hardlinks(api: httpx.Client, container: str) -> None:
    plain = tar_of(Entry("d", kind=tarfile.DIRTYPE), Entry("d/f", b"data"),
                   Entry("d/h", kind=tarfile.LNKTYPE, link="d/f"))
    for kind, body in (("gz", gzip.compress(plain)), ("bz2", bz2.compress(plain)), ("xz", lzma.compress(plain))):
        assert put(api, container, "/tmp", body).status_code == 200, kind
        assert read(api, container, "/tmp/d/h") == b"data"
        with get_tar(api, container, "/tmp/d") as tar:
            member = tar.getmember("d/h")
            assert member.islnk() and member.linkname == "d/f"


def test_copy_uid_gid_uses_the_container_user(api: httpx.Client, container: str) -> None:
    body = tar_of(Entry("owned", b"x", uid=4242))
    assert put(api, container, "/tmp", body).status_code == 200
    with get_tar(api, container, "/tmp/owned") as tar:
        assert tar.getmembers()[0].uid == 4242
    assert put(api, container, "/tmp", body, copyUIDGID="1").status_code == 200
    with get_tar(api, container, "/tmp/owned") as tar:
        member = tar.getmembers()[0]
        assert (member.uid, member.gid) == (1000, 1000)


def test_export_streams_the_root(api: httpx.Client, container: str) -> None:
    put(api, container, "/tmp", tar_of(Entry("big", bytes(8 << 20))))
    with api.stream("GET", f"/containers/{container}/export") as response:
        assert response.status_code == 200
        data = b"".join(response.iter_bytes())
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        names = tar.getnames()
        assert "bin/busybox" in names and "tmp/big" in names
        assert tar.getmember("tmp/big").size == 8 << 20


def test_changes(berthd_with_busybox: Berthd, api: httpx.Client, container: str) -> None:
    put(api, container, "/bin", tar_of(Entry("busybox-extra", b"x")))
    changes = api.get(f"/containers/{container}/changes").json()
    assert {"Path": "/bin", "Kind": 0} in changes and {"Path": "/bin/busybox-extra", "Kind": 1} in changes
    # The engine's own mount points (/etc/hostname...: Docker's init layer) are not changes.
    assert not [c for c in changes if c["Path"].startswith(("/etc", "/dev", "/proc", "/sys"))], changes
    assert api.get("/containers/nosuch/changes").status_code == 404


# --- hostile input ---------------------------------------------------------------------------------


@pytest.mark.parametrize("entries, message", [
    ([Entry("../escape.txt", b"x")], "escapes"),
    ([Entry("a/../../escape.txt", b"x")], "escapes"),
    ([Entry("h", kind=tarfile.LNKTYPE, link="../../../../etc/passwd")], "escapes"),
    ([Entry("h", kind=tarfile.LNKTYPE, link="/nosuch/file")], "not in this layer"),
    ([Entry("dev", kind=tarfile.CHRTYPE)], "device nodes"),
    ([Entry(".wh.hostname", b"")], "whiteout"),
    ([Entry("x", b"", kind=tarfile.GNUTYPE_SPARSE)], "sparse"),
])
def test_hostile_tar_entries(api: httpx.Client, container: str, entries: list[Entry], message: str) -> None:
    assert_error(put(api, container, "/tmp", tar_of(*entries)), 400, message)
    assert api.get("/_ping").status_code == 200


@pytest.mark.parametrize("compress", ["gzip", "bzip2", "xz"])
def test_decompression_bombs_are_stopped(api: httpx.Client, container: str, compress: str) -> None:
    assert_error(put(api, container, "/tmp", bomb(compress)), 400, "compression ratio")
    assert api.get("/_ping").status_code == 200


@pytest.mark.parametrize("body, message", [
    (b"this is not a tar at all" * 40, "corrupt"),
    (lzma.compress(b"x" * 4096)[:-20], "corrupt"),
    (bz2.compress(b"\x00" * 4096)[:20], "corrupt"),
])
def test_corrupt_archives(api: httpx.Client, container: str, body: bytes, message: str) -> None:
    assert_error(put(api, container, "/tmp", body), 400, message)


def test_bad_paths(api: httpx.Client, container: str) -> None:
    body = tar_of(Entry("f", b"x"))
    assert_error(put(api, container, "/etc/hostname", body), 400, "extraction point is not a directory")
    assert_error(put(api, container, "/nosuch", body), 404, f"Could not find the file /nosuch in container {container}")
    assert_error(api.get(f"/containers/{container}/archive"), 400, "path cannot be empty")
    assert_error(api.get(f"/containers/{container}/archive", params={"path": "/etc/hostname/x"}), 404,
                 "Could not find the file")
    assert_error(api.get("/containers/nosuch/archive", params={"path": "/"}), 404, "nosuch")
    assert api.head(f"/containers/{container}/archive", params={"path": "/nosuch"}).status_code == 404
    assert_error(put(api, container, "/", tar_of(Entry("tmp", b"file over a dir")), noOverwriteDirNonDir="1"),
                 400, 'cannot overwrite directory "tmp" with non-directory')
    assert path_stat(api, container, "/tmp")["mode"] == GO_DIR | GO_STICKY | 0o777


def test_symlink_out_of_the_container_is_resolved_inside(api: httpx.Client, container: str, canary: Path) -> None:
    up = "../" * 12 + str(canary).lstrip("/")
    put(api, container, "/", tar_of(Entry("abs", kind=tarfile.SYMTYPE, link=str(canary)),
                                    Entry("rel", kind=tarfile.SYMTYPE, link=up)))
    for link in ("/abs", "/rel"):
        assert api.get(f"/containers/{container}/archive", params={"path": f"{link}/canary.txt"}).status_code == 404
        assert api.head(f"/containers/{container}/archive", params={"path": f"{link}/"}).status_code == 404
        assert path_stat(api, container, link)["linkTarget"] == str(canary)
        assert put(api, container, link, tar_of(Entry("canary.txt", b"pwned"))).status_code == 404
    # entries written through the container's symlinks land inside the container
    assert put(api, container, "/", tar_of(Entry("abs/canary.txt", b"pwned abs"))).status_code == 200
    assert put(api, container, "/", tar_of(Entry("rel/canary.txt", b"pwned rel"))).status_code == 200
    assert read(api, container, f"{canary}/canary.txt") == b"pwned rel"


def test_symlink_in_the_tar_does_not_redirect_writes(api: httpx.Client, container: str, canary: Path) -> None:
    body = tar_of(Entry("esc", kind=tarfile.SYMTYPE, link=str(canary)), Entry("esc/canary.txt", b"pwned"),
                  Entry("up", kind=tarfile.SYMTYPE, link="../../../../../../../.." + str(canary)),
                  Entry("up/new.txt", b"pwned"))
    assert put(api, container, "/tmp", body).status_code == 200
    assert read(api, container, f"{canary}/new.txt") == b"pwned"
    # a hardlink to a host file through the symlink: the container has no such file
    assert_error(put(api, container, "/tmp", tar_of(Entry("h", kind=tarfile.LNKTYPE, link="esc/../etc/shadow"))),
                 400, "hardlink")


def test_read_only_root_filesystem_refuses_writes(berthd_with_busybox: Berthd, api: httpx.Client) -> None:
    name = f"arc-ro-{secrets.token_hex(4)}"
    berthd_with_busybox.docker("create", "--read-only", "--name", name, "busybox", "true")
    try:
        assert_error(put(api, name, "/", tar_of(Entry("f", b"x"))), 403, "read-only")
        assert path_stat(api, name, "/bin/busybox")["size"] > 0
    finally:
        berthd_with_busybox.docker("rm", "-f", name, check=False)


def test_volume_mounts_are_seen_in_stopped_containers(berthd_with_busybox: Berthd, api: httpx.Client,
                                                      canary: Path) -> None:
    tag = secrets.token_hex(4)
    volume, writer, helper = f"arc-vol-{tag}", f"arc-w-{tag}", f"arc-h-{tag}"
    docker = berthd_with_busybox.docker
    try:
        docker("run", "--name", writer, "-v", f"{volume}:/data", "busybox", "sh", "-c",
               "echo from-writer > /data/f; ln -s / /data/esc")
        docker("create", "--name", helper, "-v", f"{volume}:/volume", "-v", f"{canary}:/volume/host:ro",
               "busybox", "true")
        assert path_stat(api, helper, "/volume/f")["size"] == len("from-writer\n")
        assert read(api, helper, "/volume/f") == b"from-writer\n"
        assert path_stat(api, helper, "/volume/esc")["linkTarget"] == "/volume"  # resolved inside the volume
        assert api.head(f"/containers/{helper}/archive", params={"path": "/volume/esc/etc/passwd"}).status_code == 404
        assert put(api, helper, "/volume", tar_of(Entry("up.txt", b"uploaded"))).status_code == 200
        assert docker("run", "--rm", "-v", f"{volume}:/v", "busybox", "cat", "/v/up.txt").stdout == "uploaded"
        assert read(api, helper, "/volume/host/canary.txt") == b"host secret\n"  # the deepest mount wins
        assert_error(put(api, helper, "/volume/host", tar_of(Entry("x", b"x"))), 403, "read-only")
    finally:
        docker("rm", "-f", writer, helper, check=False)
        docker("volume", "rm", volume, check=False)
