"""COPY and ADD: the files of a step as a checksum (for the cache) and as a tar (for the new layer).

Sources are read from a ``SourceTree`` (the context, a stage's or an image's root), never following a
symlink below the source path (it is copied as a symlink). The tar holds the destination paths relative
to ``/`` and is extracted into the step's root filesystem with the container archive extractor
(``containers.filesystem.extract_archive``): destinations resolve inside that root, so a symlink made by an
earlier step (``/etc/x -> /host``) can never lead a write out of it.

Docker's rules: a directory source copies its contents; a file goes to ``dest`` itself, or into it when
``dest`` ends with ``/`` or is an existing directory; several sources need a ``dest`` ending with ``/``.
Owners are ``--chown`` or root, modes ``--chmod`` or the source's; times are kept. ADD unpacks a local tar
(plain, gzip, bzip2, xz, zstd) into ``dest`` with the extractor's bomb limits.
"""

from __future__ import annotations

import hashlib
import io
import os
import posixpath
import stat
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from backend.engine.builder.context import Found, SourceTree, walk
from backend.engine.errors import Unavailable

_CHUNK = 1 << 20
_TAR_MAGICS = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00", b"\x28\xb5\x2f\xfd")


@dataclass(frozen=True)
class Source:
    """One source of a COPY/ADD: ``rel`` in ``tree``, or inline ``data`` (a heredoc). ``name`` is what it is
    called inside a destination directory; ``extract``: an archive ADD unpacks."""

    name: str
    tree: SourceTree | None = None
    rel: str = ""
    data: bytes | None = None
    extract: bool = False


@dataclass(frozen=True)
class _Entry:
    rel: str  # relative to the destination of its source ("" for the source itself)
    info: tarfile.TarInfo
    fd_parent: int | None
    name: bytes | None


def is_archive(tree: SourceTree, rel: str) -> bool:
    """Whether the regular file at ``rel`` is a (possibly compressed) tar, as ADD decides to unpack it."""
    found = tree.locate(rel)
    if found is None:
        return False
    try:
        if not stat.S_ISREG(found.st.st_mode):
            return False
        with os.fdopen(found.open_file(), "rb") as f:
            head = f.read(512)
    finally:
        os.close(found.dir_fd)
    if head.startswith(_TAR_MAGICS):
        return True
    try:
        tarfile.TarInfo.frombuf(head, "utf-8", "surrogateescape")
    except tarfile.HeaderError:
        return False
    return True


def _info(st: os.stat_result) -> tarfile.TarInfo:
    info = tarfile.TarInfo()
    info.mode, info.mtime = stat.S_IMODE(st.st_mode), int(st.st_mtime)
    info.type = tarfile.DIRTYPE if stat.S_ISDIR(st.st_mode) else (
        tarfile.SYMTYPE if stat.S_ISLNK(st.st_mode) else tarfile.REGTYPE)
    info.size = st.st_size if stat.S_ISREG(st.st_mode) else 0
    return info


def _entries(found: Found) -> Iterator[_Entry]:
    """The source itself, then (for a directory) everything below it; devices, FIFOs and sockets skipped."""
    if stat.S_ISDIR(found.st.st_mode):
        for rel, parent, name, st in walk(found):
            if stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode):
                info = _info(st)
                if info.type == tarfile.SYMTYPE:
                    info.linkname = os.fsdecode(os.readlink(name, dir_fd=parent))
                yield _Entry(rel, info, parent, name)
    elif stat.S_ISREG(found.st.st_mode):
        yield _Entry("", _info(found.st), found.dir_fd, found.name)


def _open(entry: _Entry) -> BinaryIO:
    assert entry.fd_parent is not None and entry.name is not None
    fd = os.open(entry.name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=entry.fd_parent)
    return os.fdopen(fd, "rb")


def _read_chunks(entry: _Entry) -> Iterator[bytes]:
    with _open(entry) as f:
        remaining = entry.info.size
        while remaining > 0:
            data = f.read(min(_CHUNK, remaining)) or bytes(min(_CHUNK, remaining))
            remaining -= len(data)
            yield data


def _each(source: Source) -> Iterator[_Entry]:
    if source.data is not None:
        info = tarfile.TarInfo()
        info.mode, info.mtime, info.size = 0o644, int(time.time()), len(source.data)
        yield _Entry("", info, None, None)
        return
    assert source.tree is not None
    found = source.tree.locate(source.rel)
    if found is None:
        return
    try:
        yield from _entries(found)
    finally:
        os.close(found.dir_fd)


def checksum(sources: list[Source], chmod: int | None) -> str:
    """A digest of what the sources copy: names, types, modes (after ``chmod``), link targets and contents
    (times and owners left out, as Docker's). Raises Unavailable when a file cannot be read."""
    digest = hashlib.sha256()
    try:
        for source in sources:
            digest.update(f"\0source {source.name} {source.extract}\n".encode())
            for entry in _each(source):
                info = entry.info
                mode = chmod if chmod is not None else info.mode
                digest.update(f"{entry.rel}\0{info.type!r}\0{mode:o}\0{info.linkname}\0{info.size}\0".encode())
                if source.data is not None:
                    digest.update(source.data)
                elif info.type == tarfile.REGTYPE:
                    for data in _read_chunks(entry):
                        digest.update(data)
    except OSError as exc:
        raise Unavailable(f"cannot read the files to copy: {exc.strerror or exc}") from exc
    return digest.hexdigest()


def write_tar(out: BinaryIO, plan: list[tuple[Source, str]], *, owner: tuple[int, int], chmod: int | None,
              directories: list[str]) -> None:
    """Write the tar of ``plan`` (each source with its destination path) to ``out``, preceded by the
    ``directories`` (destination directories to create, owned by ``owner``). Archive sources are not
    written (the caller unpacks them). Raises Unavailable when a file cannot be read."""
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT, encoding="utf-8",
                      errors="surrogateescape") as tar:
        for directory in directories:
            info = tarfile.TarInfo(directory.lstrip("/"))
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, chmod if chmod is not None else 0o755, int(time.time())
            info.uid, info.gid = owner
            tar.addfile(info)
        try:
            for source, dest in plan:
                if source.extract:
                    continue
                for entry in _each(source):
                    info = entry.info
                    info.name = posixpath.join(dest, entry.rel).lstrip("/") if entry.rel else dest.lstrip("/")
                    info.uid, info.gid = owner
                    if chmod is not None and info.type != tarfile.SYMTYPE:
                        info.mode = chmod
                    if source.data is not None:
                        tar.addfile(info, io.BytesIO(source.data))
                    elif info.type == tarfile.REGTYPE:
                        with _open(entry) as f:
                            tar.addfile(info, f)
                    elif info.name:
                        tar.addfile(info)
        except OSError as exc:
            raise Unavailable(f"cannot read the files to copy: {exc.strerror or exc}") from exc
