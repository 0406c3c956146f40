"""Layers applied by apply_layer work as overlayfs lower layers on the real kernel.

Needs root (whiteouts are character devices, the opaque marker is a trusted.* xattr, mounting). Two
layers are applied into two directories; the second whites out a file and makes a directory opaque. The
merged view of ``lowerdir=second:first`` (plus an upperdir and workdir) must hide both. The mount is
made under pytest's tmp dir and always unmounted in teardown.
"""

from __future__ import annotations

import gzip
import io
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import zstandard

from backend.engine.images.layers import apply_layer
from backend.engine.runtime import syscalls

pytestmark = pytest.mark.root


def _tar(entries: list[tuple[str, bytes, bytes | str | None]]) -> bytes:
    """entries: (name, type, data for files / target for links)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, payload in entries:
            info = tarfile.TarInfo(name)
            info.type = kind
            info.mtime = 1_600_000_000
            info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
            if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
                assert isinstance(payload, str)
                info.linkname = payload
                tar.addfile(info)
            elif kind == tarfile.REGTYPE:
                data = payload if isinstance(payload, bytes) else b""
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return buf.getvalue()


REG, DIR, SYM, LNK = tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE

FIRST = _tar([
    ("etc/", DIR, None),
    ("etc/passwd", REG, b"root:x:0:0::/root:/bin/sh\n"),
    ("etc/hostname", REG, b"first\n"),
    ("var/lib/data/", DIR, None),
    ("var/lib/data/a", REG, b"a"),
    ("var/lib/data/b", REG, b"b"),
    ("var/lib/data/sub/", DIR, None),
    ("var/lib/data/sub/deep", REG, b"deep"),
    ("bin/", DIR, None),
    ("bin/busybox", REG, b"\x7fELF"),
    ("bin/sh", LNK, "/bin/busybox"),
    ("var/run", SYM, "/run"),
    ("var/run/pidfile", REG, b"1"),
    ("old/", DIR, None),
    ("old/file", REG, b"old"),
])

SECOND = _tar([
    ("etc/", DIR, None),
    ("etc/.wh.passwd", REG, b""),
    ("etc/hostname", REG, b"second\n"),
    ("var/lib/data/", DIR, None),
    ("var/lib/data/.wh..wh..opq", REG, b""),
    ("var/lib/data/c", REG, b"c"),
    ("var/lib/data/sub/", DIR, None),
    ("var/lib/data/sub/fresh", REG, b"fresh"),
    ("old/.wh.file", REG, b""),
    (".wh.bin", REG, b""),
    ("new", REG, b"new"),
])


@pytest.fixture
def merged(tmp_path: Path) -> Iterator[Path]:
    first, second = tmp_path / "layer1", tmp_path / "layer2"
    upper, work, mnt = tmp_path / "upper", tmp_path / "work", tmp_path / "merged"
    for path in (first, second, upper, work, mnt):
        path.mkdir()
    apply_layer(io.BytesIO(gzip.compress(FIRST)), str(first))
    apply_layer(io.BytesIO(zstandard.ZstdCompressor().compress(SECOND)), str(second))
    options = f"lowerdir={second}:{first},upperdir={upper},workdir={work}"
    try:
        syscalls.mount("overlay", str(mnt), "overlay", 0, options)
    except OSError as exc:
        pytest.skip(f"cannot mount overlayfs here: {exc}")
    try:
        yield mnt
    finally:
        try:
            syscalls.umount2(str(mnt))
        except OSError:
            syscalls.umount2(str(mnt), syscalls.MNT_DETACH)


def test_layer_dirs_hold_overlay_markers(tmp_path: Path) -> None:
    layer = tmp_path / "layer"
    layer.mkdir()
    apply_layer(io.BytesIO(SECOND), str(layer))
    st = os.lstat(layer / "etc/passwd")
    assert (os.major(st.st_rdev), os.minor(st.st_rdev)) == (0, 0) and st.st_mode & 0o170000 == 0o020000
    assert os.getxattr(layer / "var/lib/data", "trusted.overlay.opaque") == b"y"


def test_merged_view_hides_whiteouts_and_opaque_dirs(merged: Path) -> None:
    assert not os.path.lexists(merged / "etc/passwd")
    assert (merged / "etc/hostname").read_bytes() == b"second\n"
    assert sorted(os.listdir(merged / "etc")) == ["hostname"]
    # opaque: nothing of the first layer's var/lib/data shows through, not even sub/deep
    assert sorted(os.listdir(merged / "var/lib/data")) == ["c", "sub"]
    assert sorted(os.listdir(merged / "var/lib/data/sub")) == ["fresh"]
    assert os.listdir(merged / "old") == []
    assert not os.path.lexists(merged / "bin")
    assert (merged / "new").read_bytes() == b"new"
    # the first layer's absolute symlink is kept verbatim; the file written beneath it landed in /run
    assert os.readlink(merged / "var/run") == "/run"
    assert (merged / "run/pidfile").read_bytes() == b"1"


def test_merged_view_is_writable(merged: Path, tmp_path: Path) -> None:
    (merged / "etc/passwd").write_text("recreated\n")
    assert (tmp_path / "upper/etc/passwd").read_text() == "recreated\n"
    os.unlink(merged / "var/lib/data/c")
    assert os.listdir(merged / "var/lib/data") == ["sub"]
    # the lower layers are untouched
    assert (tmp_path / "layer2/var/lib/data/c").read_bytes() == b"c"
    assert (tmp_path / "layer1/etc/passwd").read_bytes().startswith(b"root:")
