"""``docker cp``, ``docker export`` and ``docker diff`` on a container's root filesystem (no HTTP).

Works on the overlay a container keeps mounted from create until remove (``ContainerService.filesystem``),
so stopped and running containers alike. A path at or below the destination of a volume or bind mount is
resolved in the mount's source instead (the deepest such mount; tmpfs mounts are not seen), as dockerd
mounts a container's volumes for ``docker cp``; the mount's source is the root of that resolution.

Guarantees:

- A path given by the client is cleaned lexically (``..`` stops at ``/``, a relative path is taken from
  ``/``), then resolved *inside* the container root as in a chroot: a symlink ``/x -> /etc`` or
  ``/x -> ../../../host`` leads to the container's ``/etc`` or ``/host``, never the host's. Resolution
  and every open go through directory descriptors with ``O_NOFOLLOW`` (``tarsafe.LayerTree``), so a
  container that swaps a directory for a symlink meanwhile cannot redirect a read or a write to the host.
- As Docker's ``ResolvePath``: ``stat`` and ``get_archive`` do not follow a symlink in the last component
  unless the path ends in ``/`` or ``/.``; ``put_archive`` always follows it (it extracts *into* a
  directory).
- ``put_archive`` extracts with the image layer applier (``images.layers``): entry names are relative to
  the destination directory and may not climb above it, symlinks in the archive or in the container are
  resolved inside the container root, hardlink targets must exist below the root and not be reached
  through absolute or escaping symlinks. Whiteouts, overlay xattrs and device nodes are refused (FIFOs
  are allowed). gzip and zstd are inflated by the applier, bzip2 and xz here; both bound the
  uncompressed size and the compression ratio (``COPY_LIMITS``). Extraction stops at the first bad
  entry; entries written before it stay, as with Docker.
- Archives are written as a stream (``tarfile`` ``w|``, PAX), never held in memory; sockets are left out
  as Docker leaves them out; a file seen again through another hard link is stored as a hard link.

Errors: NotFound ("Could not find the file /x in container y") for a missing path or container;
InvalidParameter for a bad path or archive (one line naming the problem); Forbidden for a read-only
root filesystem; Unavailable when the filesystem fails for reasons that are not the client's.
"""

from __future__ import annotations

import bz2
import dataclasses
import errno
import lzma
import os
import posixpath
import stat
import tarfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import IntEnum
from typing import IO, BinaryIO

from backend.engine.containers.mounts import MountPoint
from backend.engine.containers.oci_spec import resolve_user
from backend.engine.containers.service import ContainerService
from backend.engine.containers.store import ContainerRecord
from backend.engine.errors import Forbidden, InvalidParameter, NotFound, Unavailable
from backend.engine.images import layers, tarsafe
from backend.engine.images.commit import INIT_PATHS
from backend.engine.images.layer_store import chain_ids
from backend.engine.runtime.rootfs import RootfsError, secure_join

COPY_LIMITS = layers.LayerLimits(max_uncompressed=64 * 1024**3, max_ratio=100, max_entries=5_000_000)
"""Bounds on an archive put into a container: uncompressed bytes, compression ratio, entries."""

_CHUNK = 1 << 20
_RATIO_GRACE = 1 << 20
_O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_O_DIR_PATH = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC
_O_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_BZIP2_MAGIC = b"BZh"
_XZ_MAGIC = b"\xfd7zXZ\x00"

# Go's os.FileMode bits (what the docker CLI decodes from the path stat header)
_GO_DIR = 1 << 31
_GO_SYMLINK = 1 << 27
_GO_DEVICE = 1 << 26
_GO_NAMED_PIPE = 1 << 25
_GO_SOCKET = 1 << 24
_GO_SETUID = 1 << 23
_GO_SETGID = 1 << 22
_GO_CHAR_DEVICE = 1 << 21
_GO_STICKY = 1 << 20
_GO_KIND = {stat.S_IFDIR: _GO_DIR, stat.S_IFLNK: _GO_SYMLINK, stat.S_IFIFO: _GO_NAMED_PIPE,
            stat.S_IFSOCK: _GO_SOCKET, stat.S_IFBLK: _GO_DEVICE, stat.S_IFCHR: _GO_DEVICE | _GO_CHAR_DEVICE}


def go_file_mode(st_mode: int) -> int:
    """``st_mode`` as Go's ``os.FileMode``: permission bits, type bits and setuid/setgid/sticky."""
    mode = (st_mode & 0o777) | _GO_KIND.get(stat.S_IFMT(st_mode), 0)
    for bit, go_bit in ((stat.S_ISUID, _GO_SETUID), (stat.S_ISGID, _GO_SETGID), (stat.S_ISVTX, _GO_STICKY)):
        if st_mode & bit:
            mode |= go_bit
    return mode


def rfc3339_nano(ns: int) -> str:
    """A Unix time in nanoseconds as Go's ``time.RFC3339Nano`` in UTC (trailing zeros of the fraction dropped)."""
    seconds, frac = divmod(ns, 1_000_000_000)
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    return (f"{text}.{frac:09d}".rstrip("0") if frac else text) + "Z"


@dataclass(frozen=True)
class PathStat:
    """What ``HEAD /containers/{id}/archive`` reports of a path (Docker's ``ContainerPathStat``)."""

    name: str
    """Base name of the path as asked (``/`` for the root, ``.`` for ``dir/.``)."""
    size: int
    mode: int
    """Go ``os.FileMode`` bits (see ``go_file_mode``)."""
    mtime: str
    """RFC 3339 with nanoseconds, UTC."""
    link_target: str
    """For a symlink: its target fully resolved inside the container, absolute; else empty."""


@dataclass(frozen=True)
class PathArchive:
    """A path's stat, and a writer of its tar (top entry named as the path's base name) to a binary file."""

    stat: PathStat
    write: Callable[[IO[bytes]], None]


class ChangeKind(IntEnum):
    """Docker's change kinds (``docker diff`` prints C, A, D)."""

    MODIFIED = 0
    ADDED = 1
    DELETED = 2


@dataclass(frozen=True)
class Change:
    """One entry of ``GET /containers/{id}/changes``."""

    path: str
    kind: ChangeKind


# --- paths ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Path:
    """A client path: cleaned absolute text, components, and whether a last symlink is followed."""

    text: str
    parts: list[bytes]
    follow: bool
    name: str


def _parse_path(path: str) -> _Path:
    """Clean ``path`` as Docker does (absolute, lexical ``..``; a trailing ``/`` or ``/.`` follows the last
    component). Raises InvalidParameter for an empty path or a NUL byte."""
    if not path:
        raise InvalidParameter("bad parameter: path cannot be empty")
    if "\x00" in path:
        raise InvalidParameter("bad parameter: path contains a NUL byte")
    text = posixpath.normpath("/" + path).replace("//", "/")
    follow = path.endswith(("/", "/.")) or path == "."
    parts = [os.fsencode(p) for p in text.split("/") if p]
    name = "/" if text == "/" else ("." if path.endswith("/.") or path == "." else posixpath.basename(text))
    return _Path(text, parts, follow, name)


@dataclass
class _Located:
    """An existing entry: ``name`` in the directory open at ``dir_fd``, or the directory itself (``name``
    None). The descriptor is the holder's to close."""

    dir_fd: int
    name: bytes | None
    st: os.stat_result

    def open_dir(self) -> int:
        """A readable descriptor of the entry, which must be a directory. Raises OSError."""
        if self.name is None:
            return os.open(b".", _O_DIR, dir_fd=self.dir_fd)
        return os.open(self.name, _O_DIR | os.O_NOFOLLOW, dir_fd=self.dir_fd)


class _Root:
    """The container root open as a descriptor; resolves client paths inside it (see the module docstring)."""

    def __init__(self, merged: str, container: str) -> None:
        self.container = container
        try:
            self.fd = os.open(merged, _O_DIR_PATH)
        except OSError as exc:
            raise Unavailable(f"the root filesystem of container {container} is not available: {exc.strerror}"
                              ) from exc
        self._tree = tarsafe.LayerTree(self.fd)

    def __enter__(self) -> _Root:
        return self

    def __exit__(self, *exc: object) -> None:
        self._tree.close()
        os.close(self.fd)

    def locate(self, path: _Path) -> _Located:
        """The entry at ``path``. Raises NotFound, InvalidParameter (symlink loop) or Unavailable."""
        parts = list(path.parts)
        try:
            for _ in range(tarsafe.MAX_SYMLINKS + 1):
                if not parts or parts[-1] == b"..":
                    fd = self._tree.lookup(parts, strict=False)
                    return _Located(fd, None, os.fstat(fd))
                fd = self._tree.lookup(parts[:-1], strict=False)
                try:
                    st = tarsafe.lstat_at(fd, parts[-1])
                    link = st is not None and path.follow and stat.S_ISLNK(st.st_mode)
                    target = os.readlink(parts[-1], dir_fd=fd) if link else b""
                except BaseException:
                    os.close(fd)
                    raise
                if st is None:
                    os.close(fd)
                    break
                if not link:
                    return _Located(fd, parts[-1], st)
                os.close(fd)
                base = [] if target.startswith(b"/") else parts[:-1]
                parts = base + [p for p in target.split(b"/") if p not in (b"", b".")]
            else:
                raise InvalidParameter(f"{path.text}: too many levels of symbolic links")
        except (tarsafe.PathMissing, tarsafe.NotADirectoryInTree):
            pass
        except tarsafe.ResolveError as exc:
            raise InvalidParameter(f"{path.text}: {exc}") from None
        except OSError as exc:
            raise _unavailable(path.text, exc) from exc
        raise NotFound(f"Could not find the file {path.text} in container {self.container}")


def _inner_text(path: _Path) -> str:
    """``path``'s components as an absolute path (below a mount's destination, once resolved there)."""
    return "/" + os.fsdecode(b"/".join(path.parts))


def _unavailable(what: str, exc: OSError) -> Unavailable | NotFound:
    """The error for a filesystem failure: NotFound when the path vanished or changed type meanwhile (a
    container that renames or swaps it while it is copied: EINVAL is readlink's answer for an entry that is no
    longer a symlink), else Unavailable."""
    if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP, errno.EINVAL):
        return NotFound(f"{what}: {exc.strerror}")
    return Unavailable(f"{what}: {exc.strerror or exc}")


# --- archives out -----------------------------------------------------------------------------------


def _write_tar(out: IO[bytes], top: _Located, arcname: str, *, include_top: bool = True) -> None:
    """Write the tar of ``top`` (see ``_TarWriter.add_tree``) to ``out`` as a stream. Raises OSError."""
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT, encoding="utf-8",
                      errors="surrogateescape") as tar:
        _TarWriter(tar).add_tree(top, arcname, include_top=include_top)


class _TarWriter:
    """Writes entries found through directory descriptors into a tar."""

    def __init__(self, tar: tarfile.TarFile) -> None:
        self._tar = tar
        self._links: dict[tuple[int, int], str] = {}

    def add_tree(self, top: _Located, arcname: str, *, include_top: bool = True) -> None:
        """Add ``top`` as ``arcname`` and, for a directory, everything below it (never following a symlink)."""
        if include_top:
            self._add(top.dir_fd, top.name, top.st, arcname)
        if not stat.S_ISDIR(top.st.st_mode):
            return
        stack: list[tuple[int, str, Iterator[str]]] = []
        try:
            fd = top.open_dir()
            stack.append((fd, arcname, iter(sorted(os.listdir(fd)))))
            while stack:
                fd, prefix, names = stack[-1]
                name = next(names, None)
                if name is None:
                    stack.pop()
                    os.close(fd)
                    continue
                st = tarsafe.lstat_at(fd, os.fsencode(name))
                if st is None:
                    continue  # removed meanwhile
                child = f"{prefix}/{name}" if prefix else name
                self._add(fd, os.fsencode(name), st, child)
                if stat.S_ISDIR(st.st_mode):
                    sub = os.open(name, _O_DIR | os.O_NOFOLLOW, dir_fd=fd)
                    stack.append((sub, child, iter(sorted(os.listdir(sub)))))
        finally:
            for fd, _, _ in stack:
                os.close(fd)

    def _add(self, dir_fd: int, name: bytes | None, st: os.stat_result, arcname: str) -> None:
        info = tarfile.TarInfo(arcname)
        info.mode = stat.S_IMODE(st.st_mode)
        info.uid, info.gid, info.mtime = st.st_uid, st.st_gid, int(st.st_mtime)
        kind = stat.S_IFMT(st.st_mode)
        if kind == stat.S_IFDIR:
            info.type = tarfile.DIRTYPE
        elif kind == stat.S_IFLNK and name is not None:
            info.type = tarfile.SYMTYPE
            info.linkname = os.fsdecode(os.readlink(name, dir_fd=dir_fd))
        elif kind in (stat.S_IFCHR, stat.S_IFBLK):
            info.type = tarfile.CHRTYPE if kind == stat.S_IFCHR else tarfile.BLKTYPE
            info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
        elif kind == stat.S_IFIFO:
            info.type = tarfile.FIFOTYPE
        elif kind == stat.S_IFREG and name is not None:
            self._add_file(dir_fd, name, st, info)
            return
        else:
            return  # sockets: tar cannot hold them
        self._tar.addfile(info)

    def _add_file(self, dir_fd: int, name: bytes, st: os.stat_result, info: tarfile.TarInfo) -> None:
        key = (st.st_dev, st.st_ino)
        if st.st_nlink > 1:
            if key in self._links:
                info.type, info.linkname = tarfile.LNKTYPE, self._links[key]
                self._tar.addfile(info)
                return
            self._links[key] = info.name
        try:
            fd = os.open(name, _O_FILE, dir_fd=dir_fd)
        except FileNotFoundError:
            return  # removed meanwhile
        with os.fdopen(fd, "rb") as f:
            opened = os.fstat(fd)
            if not stat.S_ISREG(opened.st_mode):
                return  # replaced meanwhile
            info.size = opened.st_size
            self._tar.addfile(info, f)


# --- archives in ------------------------------------------------------------------------------------


class _Body:
    """The archive as the layer applier reads it: bzip2 and xz inflated here (bounded), anything else
    passed through (the applier inflates gzip and zstd itself, with the same limits)."""

    def __init__(self, raw: BinaryIO, limits: layers.LayerLimits) -> None:
        self._raw = raw
        self._limits = limits
        self._pending = b""
        while len(self._pending) < len(_XZ_MAGIC) and (data := self._read_raw()):
            self._pending += data
        self._new: Callable[[], bz2.BZ2Decompressor | lzma.LZMADecompressor] | None = None
        if self._pending.startswith(_BZIP2_MAGIC):
            self._new, self._kind = bz2.BZ2Decompressor, "bzip2"
        elif self._pending.startswith(_XZ_MAGIC):
            self._new, self._kind = lzma.LZMADecompressor, "xz"
        self._d = self._new() if self._new is not None else None
        self._consumed = len(self._pending)
        self._total = 0

    def _read_raw(self) -> bytes:
        return bytes(self._raw.read(_CHUNK))

    def read(self, size: int = -1, /) -> bytes:
        """Up to ``size`` (1 MiB if negative) bytes of the tar, ``b""`` at its end. Raises InvalidParameter."""
        size = size if size > 0 else _CHUNK
        if self._d is None:
            if self._pending:
                data, self._pending = self._pending, b""
                return data
            return self._read_raw()
        while True:
            if self._d.eof:
                self._pending = self._d.unused_data + self._pending or self._more()
                if not self._pending:
                    return b""
                assert self._new is not None
                self._d = self._new()
            if self._d.needs_input and not self._pending:
                self._pending = self._more()
                if not self._pending:
                    raise InvalidParameter(f"archive is truncated or corrupt: the {self._kind} stream ends early")
            try:
                out = self._d.decompress(self._pending, max_length=size)
            except (OSError, EOFError, lzma.LZMAError) as exc:
                raise InvalidParameter(f"archive is truncated or corrupt: {self._kind}: {exc}") from None
            self._pending = b""
            if out:
                self._count(len(out))
                return out

    def _more(self) -> bytes:
        data = self._read_raw()
        self._consumed += len(data)
        return data

    def _count(self, n: int) -> None:
        self._total += n
        if self._total > self._limits.max_uncompressed:
            raise InvalidParameter(f"archive is larger than the limit of {self._limits.max_uncompressed} bytes "
                                   "uncompressed")
        if self._total > _RATIO_GRACE and self._total > self._limits.max_ratio * self._consumed:
            raise InvalidParameter(f"archive compression ratio {self._total // self._consumed}:1 exceeds the "
                                   f"limit of {self._limits.max_ratio}:1")


class _Extractor(layers._Applier):
    """The layer applier, for ``docker cp`` into a container: entries are placed below ``dest`` (components
    relative to the container root) and may not climb above it; whiteouts, opaque markers and device
    nodes are refused (``.wh.*`` names are plain files with ``whiteouts=False``); optionally nothing
    replaces a directory by a non-directory or the reverse, and every entry is owned by ``owner``."""

    def __init__(self, root_fd: int, dest: list[bytes], limits: layers.LayerLimits, *,
                 no_overwrite_dir_non_dir: bool, owner: tuple[int, int] | None, whiteouts: bool = True) -> None:
        super().__init__(root_fd, limits, whiteouts=whiteouts)
        self._dest = os.fsdecode(b"/".join(dest))
        self._no_overwrite = no_overwrite_dir_non_dir
        self._owner = owner

    def _apply_entry(self, tar: layers._StreamTar, member: tarfile.TarInfo) -> None:
        member.name = self._below_dest(member.name)
        if member.type == tarfile.LNKTYPE:
            member.linkname = self._below_dest(member.linkname)
        if self._owner is not None:
            member.uid, member.gid = self._owner
        super()._apply_entry(tar, member)

    def _below_dest(self, name: str) -> str:
        parts = layers._split(name)  # refuses a name climbing above the destination
        return posixpath.join(self._dest, os.fsdecode(b"/".join(parts))) if parts else self._dest

    def _whiteout(self, dirparts: list[bytes], name: bytes, member: tarfile.TarInfo) -> None:
        raise InvalidParameter(f'archive entry "{layers._display(member.name)}": whiteout files (.wh.*) '
                               "cannot be copied into a container")

    def _opaque(self, dirparts: list[bytes]) -> None:
        raise InvalidParameter("archive entry .wh..wh..opq: whiteout files cannot be copied into a container")

    def _node(self, member: tarfile.TarInfo, dirparts: list[bytes], base: bytes) -> None:
        if member.type != tarfile.FIFOTYPE:
            raise InvalidParameter(f'archive entry "{layers._display(member.name)}": device nodes cannot be '
                                   "copied into a container")
        super()._node(member, dirparts, base)

    def _make_room(self, parent: int, name: bytes, *, is_dir: bool) -> bool:
        if self._no_overwrite:
            st = tarsafe.lstat_at(parent, name)
            if st is not None and stat.S_ISDIR(st.st_mode) != is_dir:
                shown = layers._display(os.fsdecode(name))
                raise InvalidParameter(f'cannot overwrite directory "{shown}" with non-directory' if not is_dir
                                       else f'cannot overwrite non-directory "{shown}" with directory')
        return super()._make_room(parent, name, is_dir=is_dir)


def extract_archive(root: str, owner_name: str, path: str, source: BinaryIO, *,
                    limits: layers.LayerLimits = COPY_LIMITS, no_overwrite_dir_non_dir: bool = False,
                    owner: tuple[int, int] | None = None, whiteouts: bool = True) -> None:
    """Extract the tar read from ``source`` into the directory at ``path`` of the root filesystem mounted at
    ``root`` (``owner_name`` names it in messages), as ``put_archive`` does (the builder uses it too, with
    ``whiteouts=False``: ``.wh.*`` names are then written as plain files, as dockerd's COPY writes them).

    Raises NotFound, InvalidParameter, Unavailable as ``put_archive``.
    """
    target = _parse_path(path)
    with _Root(root, owner_name) as tree:
        found = tree.locate(dataclasses.replace(target, follow=True))
        os.close(found.dir_fd)
        if not stat.S_ISDIR(found.st.st_mode):
            raise InvalidParameter("extraction point is not a directory")
        body = _Body(source, limits)
        extractor = _Extractor(tree.fd, target.parts, limits, no_overwrite_dir_non_dir=no_overwrite_dir_non_dir,
                               owner=owner, whiteouts=whiteouts)
        try:
            extractor.run(body)  # type: ignore[arg-type]  # _Body has the read() the applier uses
            extractor.finish()
        except layers.LayerError as exc:
            raise InvalidParameter(f"cannot extract the archive: {exc}") from None
        finally:
            extractor.close()


# --- the service ------------------------------------------------------------------------------------


class ContainerFilesystem:
    """``docker cp`` (stat, get, put), ``export`` and ``diff`` over the containers of one ContainerService.

    Every method is blocking (filesystem work): call it from a worker thread. See the module docstring
    for the guarantees and errors.
    """

    def __init__(self, service: ContainerService, *, limits: layers.LayerLimits = COPY_LIMITS) -> None:
        self._service = service
        self._limits = limits

    def stat(self, ref: str, path: str) -> PathStat:
        """``HEAD /containers/{ref}/archive?path=``. Raises NotFound, InvalidParameter, Unavailable."""
        record, merged, _ = self._service.filesystem(ref)
        point, target = self._resolve_mount(record, _parse_path(path))
        base = point.source if point else merged
        with _Root(base, ref) as root:
            found = root.locate(target)
            os.close(found.dir_fd)
        return self._path_stat(base, point.destination if point else "", target, found.st)

    def get_archive(self, ref: str, path: str) -> PathArchive:
        """``GET /containers/{ref}/archive?path=``: the path's stat now, its tar when ``write`` runs (the
        path is resolved again then). Raises NotFound, InvalidParameter, Unavailable (``write`` too)."""
        target = _parse_path(path)
        info = self.stat(ref, path)
        arcname = "." if target.text == "/" else info.name

        def write(out: IO[bytes]) -> None:
            record, merged, _ = self._service.filesystem(ref)
            point, inside = self._resolve_mount(record, target)
            with _Root(point.source if point else merged, ref) as root:
                found = root.locate(inside)
                try:
                    _write_tar(out, found, arcname)
                except OSError as exc:
                    raise _unavailable(f"archiving {target.text}", exc) from exc
                finally:
                    os.close(found.dir_fd)
            self._emit(record, "archive-path")

        return PathArchive(info, write)

    def put_archive(self, ref: str, path: str, source: BinaryIO, *, no_overwrite_dir_non_dir: bool = False,
                    copy_uid_gid: bool = False) -> None:
        """``PUT /containers/{ref}/archive?path=``: extract the tar read from ``source`` (plain, gzip, bzip2,
        xz or zstd) into the directory at ``path`` (a last symlink followed). ``copy_uid_gid`` gives every
        entry the container user's uid and gid (else the archive's are kept).

        Raises NotFound (container or path), InvalidParameter (not a directory, bad or hostile archive,
        over a limit, a directory/non-directory clash with ``no_overwrite_dir_non_dir``), Forbidden
        (read-only root filesystem), Unavailable.
        """
        target = _parse_path(path)
        record, merged, _ = self._service.filesystem(ref)
        host_config = record.request.get("HostConfig")
        if isinstance(host_config, dict) and host_config.get("ReadonlyRootfs"):
            raise Forbidden("container rootfs is marked read-only")
        owner = None
        if copy_uid_gid:
            uid, gid, _ = resolve_user(merged, str(record.request.get("User") or ""))
            owner = (uid, gid)
        point, inside = self._resolve_mount(record, target)
        if point and not point.rw:
            raise Forbidden("mounted volume is marked read-only")
        extract_archive(point.source if point else merged, ref, _inner_text(inside), source, limits=self._limits,
                        no_overwrite_dir_non_dir=no_overwrite_dir_non_dir, owner=owner)
        self._emit(record, "extract-to-dir")

    def export(self, ref: str) -> Callable[[IO[bytes]], None]:
        """``GET /containers/{ref}/export``: a writer of the tar of the whole root filesystem. Raises NotFound
        now; the writer raises Unavailable."""
        record, merged, _ = self._service.filesystem(ref)

        def write(out: IO[bytes]) -> None:
            with _Root(merged, ref) as root:
                top = _Located(os.open(b".", _O_DIR_PATH, dir_fd=root.fd), None, os.fstat(root.fd))
                try:
                    _write_tar(out, top, "", include_top=False)
                except OSError as exc:
                    raise _unavailable(f"exporting container {ref}", exc) from exc
                finally:
                    os.close(top.dir_fd)
            self._emit(record, "export")

        return write

    def changes(self, ref: str) -> list[Change]:
        """``GET /containers/{ref}/changes``: Docker's overlay changes of the upper layer, in walk order.

        A whiteout is a deletion; an opaque directory that exists below is reported deleted (its new
        contents as added); an entry that exists in a lower layer is modified, else added, except a
        directory whose size, mode and mtime match the lower one; the parent of an addition or deletion
        is reported modified once. The engine's own mount points (``/dev``, ``/etc/hosts``...: Docker's init
        layer, ``INIT_PATHS``) are not changes, nor a directory changed only by them. Raises NotFound,
        Unavailable.
        """
        record, _, upper = self._service.filesystem(ref)
        image = self._service.images.resolve(record.image_id)
        lowers: list[int] = []
        try:
            for chain in chain_ids(image.diff_ids):
                lowers.append(os.open(self._service.images.layers.diff_path(chain), _O_DIR_PATH))
            upper_fd = os.open(upper, _O_DIR)
            try:
                return _without_init_paths(_diff(upper_fd, lowers))
            finally:
                os.close(upper_fd)
        except OSError as exc:
            raise _unavailable(f"changes of container {ref}", exc) from exc
        finally:
            for fd in lowers:
                os.close(fd)

    def _resolve_mount(self, record: ContainerRecord, target: _Path) -> tuple[MountPoint | None, _Path]:
        """The deepest volume or bind mount whose destination holds ``target`` (None: the root filesystem)
        and ``target`` with the components below that destination."""
        found: MountPoint | None = None
        depth = 0
        for point in self._service.mounts.load(record.id):
            dest = [os.fsencode(p) for p in point.destination.split("/") if p]
            if point.source and target.parts[:len(dest)] == dest and len(dest) > depth:
                found, depth = point, len(dest)
        return found, dataclasses.replace(target, parts=target.parts[depth:])

    def _path_stat(self, base: str, prefix: str, target: _Path, st: os.stat_result) -> PathStat:
        """The stat of ``target`` resolved in ``base``, which the container sees at ``prefix`` ("" for /)."""
        link = ""
        if stat.S_ISLNK(st.st_mode):
            try:
                link = posixpath.normpath(prefix + "/" + os.path.relpath(secure_join(base, _inner_text(target)), base))
            except RootfsError:
                link = ""
        return PathStat(name=target.name, size=st.st_size, mode=go_file_mode(st.st_mode),
                        mtime=rfc3339_nano(st.st_mtime_ns), link_target=link)

    def _emit(self, record: ContainerRecord, action: str) -> None:
        self._service.events.emit("container", action, record.id, {"name": record.name, "image": record.image})


# --- diff -------------------------------------------------------------------------------------------


def _lower_stat(lowers: list[int], parts: list[str]) -> os.stat_result | None:
    """The entry at ``parts`` in the first lower layer that has it (no symlink followed on the way)."""
    for layer in lowers:
        fd = os.open(b".", _O_DIR_PATH, dir_fd=layer)
        try:
            for part in parts[:-1]:
                try:
                    nxt = os.open(part, _O_DIR_PATH | os.O_NOFOLLOW, dir_fd=fd)
                except OSError as exc:
                    if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
                        break
                    raise
                os.close(fd)
                fd = nxt
            else:
                st = tarsafe.lstat_at(fd, os.fsencode(parts[-1]))
                if st is not None:
                    return st
        finally:
            os.close(fd)
    return None


def _opaque(fd: int) -> bool:
    try:
        return os.getxattr(fd, layers.OVERLAY_OPAQUE_XATTR) == b"y"
    except OSError:
        return False


def _without_init_paths(changes: list[Change]) -> list[Change]:
    def init(path: str) -> bool:
        relative = path.lstrip("/")
        return any(relative == p or relative.startswith(p + "/") for p in INIT_PATHS)

    kept = [c for c in changes if not init(c.path)]
    dropped_parents = {"/" + p.rpartition("/")[0] for p in INIT_PATHS if "/" in p}
    return [c for c in kept if c.path not in dropped_parents
            or any(other.path.startswith(c.path + "/") for other in kept)]


def _diff(upper: int, lowers: list[int]) -> list[Change]:
    """Walk ``upper`` (lexical order, depth first, like Go's filepath.Walk) into Docker's change list."""
    changes: list[Change] = []
    changed_dirs: set[str] = set()
    stack: list[tuple[int, list[str], Iterator[str]]] = [(os.open(b".", _O_DIR, dir_fd=upper), [],
                                                           iter(sorted(os.listdir(upper))))]
    try:
        while stack:
            fd, prefix, names = stack[-1]
            name = next(names, None)
            if name is None:
                stack.pop()
                os.close(fd)
                continue
            parts = [*prefix, name]
            path = "/" + "/".join(parts)
            st = tarsafe.lstat_at(fd, os.fsencode(name))
            if st is None:
                continue
            is_dir = stat.S_ISDIR(st.st_mode)
            sub = os.open(name, _O_DIR | os.O_NOFOLLOW, dir_fd=fd) if is_dir else None
            if sub is not None:
                stack.append((sub, parts, iter(sorted(os.listdir(sub)))))
            lower = _lower_stat(lowers, parts)
            whiteout = stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
            if whiteout or (sub is not None and lower is not None and _opaque(sub)):
                kind = ChangeKind.DELETED
            elif lower is None:
                kind = ChangeKind.ADDED
            elif (is_dir and stat.S_ISDIR(lower.st_mode) and st.st_size == lower.st_size
                  and st.st_mode == lower.st_mode and _same_time(st, lower)):
                continue
            else:
                kind = ChangeKind.MODIFIED
            if is_dir:
                changed_dirs.add(path)
            parent = posixpath.dirname(path)
            if kind != ChangeKind.MODIFIED and parent != "/" and parent not in changed_dirs:
                changes.append(Change(parent, ChangeKind.MODIFIED))
                changed_dirs.add(parent)
            changes.append(Change(path, kind))
    finally:
        for fd, _, _ in stack:
            os.close(fd)
    return changes


def _same_time(a: os.stat_result, b: os.stat_result) -> bool:
    """Docker's sameFsTime: equal, or equal seconds when either side has no sub-second part."""
    if a.st_mtime_ns == b.st_mtime_ns:
        return True
    sa, na = divmod(a.st_mtime_ns, 1_000_000_000)
    sb, nb = divmod(b.st_mtime_ns, 1_000_000_000)
    return sa == sb and (na == 0 or nb == 0)
