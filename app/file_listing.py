"""Listing, downloading and uploading a container's files through the Engine API (Qt-free, async).

The Engine API has no "list a directory" call, so :func:`list_directory` uses one of two strategies:

- ``exec`` (running containers): ``sh -c SCRIPT sh DIR/. FORMAT`` runs ``find DIR/. -mindepth 1 -maxdepth 1
  -exec stat -c FORMAT {} +`` (coreutils and findutils, or the same applets through the ``busybox`` binary
  when the image has no ``find``/``stat`` of their own). The path is an argument, never part of the script.
  ``FORMAT`` is ``%s/%f/%Y/%n/%N``: a name cannot contain ``/``, so each record is cut where the next one
  starts (``\\n`` then ``SIZE/HEXMODE/MTIME/DIR/./``), even when names or link targets contain newlines.
- ``archive`` (stopped containers, images without the tools, or when the exec fails): the tar stream of
  ``GET /containers/{id}/archive`` is read header by header (file contents are skipped) and only the
  first level is kept; reading stops after :data:`MAX_ENTRIES` entries or :data:`MAX_BYTES` bytes and the
  listing says it was truncated.

Archives are read and written in a worker thread (``tarfile``) while the event loop moves the bytes, so the
UI never waits on them. Downloads are extracted with ``tarfile``'s ``data`` filter: nothing is written
outside the chosen folder; entries the filter refuses (devices, absolute or escaping links) are skipped
and counted. Errors: :mod:`backend.api.errors` classes from the engine (``APIError`` itself for a path
that is not a directory or an archive that cannot be read), ``OSError`` from the local filesystem.
"""

from __future__ import annotations

import asyncio
import enum
import io
import posixpath
import re
import stat
import tarfile
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TypeVar

from backend.api.client import EngineClient
from backend.api.errors import APIError, ConflictError, NotFoundError
from backend.api.hijack import STDOUT

MAX_ENTRIES = 20_000
MAX_BYTES = 64 * 1024 * 1024
_STAT_FORMAT = "%s/%f/%Y/%n/%N"
_NO_TOOLS = 127
_LIST_SCRIPT = """
if command -v find >/dev/null 2>&1 && command -v stat >/dev/null 2>&1; then
  exec find "$1" -mindepth 1 -maxdepth 1 -exec stat -c "$2" {} +
elif command -v busybox >/dev/null 2>&1; then
  exec busybox find "$1" -mindepth 1 -maxdepth 1 -exec busybox stat -c "$2" {} +
fi
exit 127
"""
_TAR_MODE = {tarfile.DIRTYPE: stat.S_IFDIR, tarfile.SYMTYPE: stat.S_IFLNK, tarfile.CHRTYPE: stat.S_IFCHR,
             tarfile.BLKTYPE: stat.S_IFBLK, tarfile.FIFOTYPE: stat.S_IFIFO}
T = TypeVar("T")


class Strategy(enum.Enum):
    """How a listing was made."""

    EXEC = "exec"
    ARCHIVE = "archive"


@dataclass(frozen=True)
class FileEntry:
    """One directory entry. ``mode`` is a full ``st_mode`` (type and permission bits); ``mtime`` seconds since
    the epoch; ``link_target`` the symlink's text as stored (empty for other entries)."""

    name: str
    size: int
    mode: int
    mtime: float
    link_target: str = ""

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.mode)

    @property
    def is_link(self) -> bool:
        return stat.S_ISLNK(self.mode)

    @property
    def mode_text(self) -> str:
        """``ls -l`` style, e.g. ``drwxr-xr-x``."""
        return stat.filemode(self.mode)


@dataclass(frozen=True)
class Listing:
    """The entries of ``path`` (directories first, then by name), how they were listed, and whether the
    listing stopped at a cap."""

    path: str
    entries: tuple[FileEntry, ...]
    strategy: Strategy
    truncated: bool = False


def clean_path(path: str) -> str:
    """``path`` made absolute and lexically clean (``..`` stops at ``/``)."""
    return posixpath.normpath("/" + path).replace("//", "/")


def _sorted(entries: Sequence[FileEntry]) -> tuple[FileEntry, ...]:
    return tuple(sorted(entries, key=lambda e: (not e.is_dir, e.name.lower(), e.name)))


async def list_directory(client: EngineClient, container: str, path: str) -> Listing:
    """List the directory at ``path`` (a symlink to a directory is followed): by exec when the container runs
    and has the tools, else through the archive API.

    Raises APIError when ``path`` is not a directory, the :mod:`backend.api.errors` class of an engine
    error (NotFoundError for a missing container or path)."""
    path = clean_path(path)
    try:
        found = await client.stat_path(container, path.rstrip("/") + "/.")
    except NotFoundError:  # HEAD answers carry no message: say which is missing
        await client.inspect_container(container)
        raise NotFoundError(f"{path}: no such file or directory", status=404) from None
    if not found.is_dir:
        raise APIError(f"{path} is not a directory")
    try:
        entries = await list_by_exec(client, container, path)
    except ConflictError:  # not running (or paused)
        entries = None
    if entries is not None:
        return Listing(path, _sorted(entries), Strategy.EXEC)
    return await list_by_archive(client, container, path)


async def list_by_exec(client: EngineClient, container: str, path: str) -> list[FileEntry] | None:
    """The entries of directory ``path`` by exec in the running container; None when the image has no
    usable tools or the command failed without listing anything. Raises ConflictError when the container
    does not run, other :mod:`backend.api.errors` classes for engine errors."""
    start = path.rstrip("/") + "/."  # follows a symlink to a directory
    exec_id = await client.exec_create(container, ["sh", "-c", _LIST_SCRIPT, "sh", start, _STAT_FORMAT],
                                       env=["QUOTING_STYLE=literal", "LC_ALL=C"])
    connection = await client.exec_attach(exec_id, tty=False)
    out = bytearray()
    try:
        async for stream, data in connection.output(tty=False):
            if stream == STDOUT:
                out += data
    finally:
        connection.close()
    code = (await client.exec_inspect(exec_id)).exit_code
    entries = parse_stat_output(bytes(out), path)
    if code == _NO_TOOLS or (code != 0 and not entries):
        return None
    return entries


def parse_stat_output(out: bytes, path: str) -> list[FileEntry]:
    """Parse the records ``find PATH/. ... -exec stat -c '%s/%f/%Y/%n/%N'`` printed (GNU stat with
    ``QUOTING_STYLE=literal``: ``%N`` is ``P -> T``; busybox: ``'P' -> 'T'``)."""
    prefix = (path.rstrip("/") + "/./").encode()
    record = re.compile(rb"(?:^|\n)(-?\d+)/([0-9a-fA-F]+)/(-?\d+)/" + re.escape(prefix) + rb"([^/]*)/")
    matches = list(record.finditer(out))
    entries = []
    for i, match in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(out.rstrip(b"\n"))
        size, mode, mtime, name = int(match[1]), int(match[2], 16), int(match[3]), match[4]
        target = b""
        if stat.S_ISLNK(mode):
            quoted = out[match.end():end]
            for head, tail in ((b"'" + prefix + name + b"' -> '", b"'"), (prefix + name + b" -> ", b"")):
                if quoted.startswith(head) and quoted.endswith(tail):
                    target = quoted[len(head):len(quoted) - len(tail)]
                    break
        entries.append(FileEntry(name.decode(errors="replace"), size, mode, float(mtime),
                                 target.decode(errors="replace")))
    return entries


class _ChunkReader(io.RawIOBase):
    """A blocking, readable file (for a worker thread) over an async iterator of chunks that the event
    loop ``loop`` advances. ``count`` is the number of bytes read so far."""

    def __init__(self, chunks: AsyncIterator[bytes], loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._chunks, self._loop = chunks, loop
        self._pending = b""
        self._eof = False
        self.count = 0

    def readable(self) -> bool:
        return True

    async def _next(self) -> bytes:
        return await anext(self._chunks)

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self._pending and not self._eof:
            try:
                self._pending = asyncio.run_coroutine_threadsafe(self._next(), self._loop).result()
            except StopAsyncIteration:
                self._eof = True
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        self.count += n
        return n


async def _read_tar_in_thread(client: EngineClient, container: str, path: str,
                              work: Callable[[tarfile.TarFile, _ChunkReader], T]) -> T:
    """Run ``work`` in a worker thread on the tar stream of ``path`` (opened in ``r|`` mode). Raises
    APIError for a broken tar, the :mod:`backend.api.errors` class of an engine error."""
    loop = asyncio.get_running_loop()
    async with client.get_archive(container, path) as (_, chunks):
        reader = _ChunkReader(chunks, loop)

        def run() -> T:
            try:
                with tarfile.open(fileobj=io.BufferedReader(reader), mode="r|") as tar:
                    return work(tar, reader)
            except tarfile.TarError as exc:
                raise APIError(f"unreadable archive of {path}: {exc}") from exc

        return await asyncio.to_thread(run)


async def list_by_archive(client: EngineClient, container: str, path: str) -> Listing:
    """The first level of directory ``path`` from the archive API's tar headers (works on stopped
    containers and images without tools); stops at :data:`MAX_ENTRIES` entries or :data:`MAX_BYTES`.
    Raises the :mod:`backend.api.errors` class of an engine error, APIError for a broken tar."""
    path = clean_path(path)

    def first_level(tar: tarfile.TarFile, reader: _ChunkReader) -> tuple[list[FileEntry], bool]:
        entries: list[FileEntry] = []
        sizes: dict[str, int] = {}  # regular files seen, for the sizes of hard links
        depth: int | None = None
        for count, member in enumerate(tar, start=1):
            if count > MAX_ENTRIES or reader.count > MAX_BYTES:
                return entries, True
            parts = [p for p in member.name.split("/") if p not in ("", ".")]
            if member.isreg():
                sizes[member.name] = member.size
            if depth is None:
                depth = len(parts)
            elif len(parts) == depth + 1:
                kind = stat.S_IFREG if member.islnk() else _TAR_MODE.get(member.type, stat.S_IFREG)
                size = sizes.get(member.linkname, 0) if member.islnk() else member.size
                entries.append(FileEntry(parts[-1], size, kind | stat.S_IMODE(member.mode), float(member.mtime),
                                         member.linkname if member.issym() else ""))
        return entries, False

    entries, truncated = await _read_tar_in_thread(client, container, path.rstrip("/") + "/.", first_level)
    return Listing(path, _sorted(entries), Strategy.ARCHIVE, truncated)


def _safe_members(tar: tarfile.TarFile, dest: Path, skipped: list[str]) -> Iterator[tarfile.TarInfo]:
    for member in tar:
        try:
            tarfile.data_filter(member, str(dest))
        except tarfile.FilterError:
            skipped.append(member.name)
            continue
        yield member


async def download(client: EngineClient, container: str, path: str, dest: Path) -> list[str]:
    """Save the file or directory at ``path`` into the local folder ``dest`` (as ``dest/<name>``; ``/`` is
    saved as the folder's contents), extracted with the ``data`` filter. Returns the names of the entries
    that were skipped (devices, links out of ``dest``...). Raises the :mod:`backend.api.errors` class of an
    engine error, APIError for a broken tar, OSError."""

    def extract(tar: tarfile.TarFile, _: _ChunkReader) -> list[str]:
        skipped: list[str] = []
        tar.extractall(dest, members=_safe_members(tar, dest, skipped), filter="data")
        return skipped

    return await _read_tar_in_thread(client, container, clean_path(path), extract)


def _as_root(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


def _tar_of(paths: Sequence[Path]) -> IO[bytes]:
    out = tempfile.TemporaryFile()  # noqa: SIM115 (handed to the caller, who closes it)
    try:
        with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for local in paths:
                tar.add(local, arcname=local.name, filter=_as_root)
        out.seek(0)
    except BaseException:
        out.close()
        raise
    return out


async def upload(client: EngineClient, container: str, paths: Sequence[Path], directory: str) -> None:
    """Copy local files and folders (recursively, owned by root) into the container's ``directory``; the tar
    is built in a worker thread into a temporary file and streamed from there. Raises OSError for an
    unreadable local path, the :mod:`backend.api.errors` class of an engine error."""
    archive = await asyncio.to_thread(_tar_of, paths)

    async def chunks() -> AsyncIterator[bytes]:
        while chunk := await asyncio.to_thread(archive.read, 1 << 20):
            yield chunk

    try:
        await client.put_archive(container, clean_path(directory), chunks())
    finally:
        archive.close()
