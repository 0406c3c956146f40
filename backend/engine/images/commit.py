"""Layer commit: a container's overlay upper directory as an image layer, and the child image's config.

``write_diff`` turns an overlayfs upper directory into a layer tar in Docker's format, as dockerd's overlay2
driver exports it:

- Entries in lexical byte order, depth first, parents before children; the upper directory itself is not
  an entry. Regular files, directories, symlinks (target verbatim), character and block devices and FIFOs;
  sockets are left out. A regular file met again through another hard link in the upper directory is a
  hard link to the first name. Times are the mtimes truncated to seconds, owners numeric, names PAX.
- An overlay whiteout (a character device 0/0) becomes an empty regular file ``.wh.<name>``; an opaque
  directory (``trusted.overlay.opaque=y``) is followed by an empty ``.wh..wh..opq`` inside it.
- Only the ``security.capability`` and ``user.*`` xattrs of files and directories are kept (as
  ``SCHILY.xattr.*`` records); overlay's own xattrs never are. An upper entry with overlay's
  ``redirect`` or ``metacopy`` xattr (its data would live in a lower layer) fails the commit.
- What Docker keeps in a container's init layer is not a change: the mount points ``dev``, ``proc`` and
  ``sys`` (with anything below them), ``.dockerenv`` and ``etc/{hosts,hostname,resolv.conf,mtab}``
  (``INIT_PATHS``), and a directory holding nothing but such entries (``etc`` made for ``etc/hosts``).
- The tar ends with two zero blocks and no record padding, so an empty diff is Docker's empty layer
  (``EMPTY_LAYER_DIFF_ID``) and the same upper directory always gives the same diff ID.
- Nothing is followed: every entry is reached through directory descriptors with ``O_NOFOLLOW``, so a
  symlink in the container (``/x -> /etc/shadow``) is stored as a symlink and never read through. An
  entry that changes type or vanishes while it is read (a running container) is left out; a file that
  shrinks meanwhile is padded with zeros to the size first seen.

The rest is pure: ``commit_reference`` (the repo and tag of ``docker commit``), ``container_config``
(a client's config, checked), ``merge_config`` (dockerd's merge of a commit config with the container's)
and ``child_config`` (the new image config: the parent's with the layer, config and history appended).
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import tarfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from backend.engine.errors import InvalidParameter, Unavailable
from backend.engine.images.layers import OVERLAY_OPAQUE_XATTR
from backend.engine.images.reference import Reference, parse_reference, parse_tag

EMPTY_LAYER_DIFF_ID = "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef"
"""The diff ID of a tar with no entries (two zero blocks): Docker's empty layer."""

INIT_PATHS = frozenset({"dev", "proc", "sys", ".dockerenv", "etc/hosts", "etc/hostname", "etc/resolv.conf",
                        "etc/mtab"})
"""Paths of Docker's init layer (mount points the engine and runtime make), relative to the root."""

CONFIG_KEYS = ("Hostname", "Domainname", "User", "AttachStdin", "AttachStdout", "AttachStderr", "ExposedPorts",
               "Tty", "OpenStdin", "StdinOnce", "Env", "Cmd", "Healthcheck", "ArgsEscaped", "Image", "Volumes",
               "WorkingDir", "Entrypoint", "NetworkDisabled", "MacAddress", "OnBuild", "Labels", "StopSignal",
               "StopTimeout", "Shell")
"""The fields of Docker's container ``Config``, the ``config`` object of an image config."""

_BLOCK = 512
_CHUNK = 1 << 20
_O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_O_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_VANISHED = (errno.ENOENT, errno.ENOTDIR, errno.ELOOP)
_OVERLAY_INDIRECT = ("trusted.overlay.redirect", "trusted.overlay.metacopy")


@dataclass(frozen=True)
class LayerDiff:
    """A written layer tar: its diff ID (``sha256:<hex>`` of the bytes) and size in bytes."""

    diff_id: str
    size: int


class _TarOut:
    """Tar members written through ``write``, hashed and counted; no record padding at the end."""

    def __init__(self, write: Callable[[bytes], object]) -> None:
        self._write = write
        self._hash = hashlib.sha256()
        self.size = 0

    def raw(self, data: bytes) -> None:
        self._hash.update(data)
        self.size += len(data)
        self._write(data)

    def header(self, info: tarfile.TarInfo) -> None:
        self.raw(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))

    def end(self) -> LayerDiff:
        self.raw(bytes(2 * _BLOCK))
        return LayerDiff("sha256:" + self._hash.hexdigest(), self.size)


def write_diff(upper: str, write: Callable[[bytes], object], *, skip: frozenset[str] = INIT_PATHS) -> LayerDiff:
    """Write the layer tar of the overlay upper directory ``upper`` through ``write`` (see the module
    docstring for the format and guarantees), leaving out the entries at the relative paths ``skip`` and
    the directories that hold only those. Returns its diff ID and size.

    Raises Unavailable when ``upper`` cannot be read or holds a redirect/metacopy entry; whatever ``write``
    raises propagates.
    """
    out = _TarOut(write)
    try:
        _Walker(out, skip).walk(os.open(upper, _O_DIR))
    except OSError as exc:
        raise Unavailable(f"cannot read the container's changes: {exc.strerror or exc}") from exc
    return out.end()


def _names(fd: int) -> Iterator[str]:
    return iter(sorted(os.listdir(fd), key=os.fsencode))


class _Walker:
    def __init__(self, out: _TarOut, skip: frozenset[str]) -> None:
        self._out = out
        self._skip = skip
        self._holders = {p.rpartition("/")[0] for p in skip} - {""}
        self._links: dict[tuple[int, int], str] = {}

    def walk(self, root: int) -> None:
        """Write every entry below the directory open at ``root`` (the descriptor is closed)."""
        stack: list[tuple[int, str, Iterator[str]]] = [(root, "", _names(root))]
        try:
            while stack:
                fd, prefix, names = stack[-1]
                name = next(names, None)
                if name is None:
                    os.close(stack.pop()[0])
                    continue
                if prefix + name in self._skip:
                    continue
                sub = self._entry(fd, name, prefix + name)
                if sub is not None:
                    stack.append((sub, f"{prefix}{name}/", _names(sub)))
        finally:
            for fd, _, _ in stack:
                os.close(fd)

    def _entry(self, parent: int, name: str, arcname: str) -> int | None:
        """Write one entry; returns an open descriptor of it when it is a directory to descend into."""
        try:
            st = os.stat(name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            return None
        info = tarfile.TarInfo(arcname)
        info.mode, info.uid, info.gid, info.mtime = stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, int(st.st_mtime)
        kind = stat.S_IFMT(st.st_mode)
        if kind == stat.S_IFDIR:
            return self._directory(parent, name, st, info)
        if kind == stat.S_IFREG:
            self._file(parent, name, st, info)
        elif kind == stat.S_IFCHR and st.st_rdev == 0:
            head, _, base = arcname.rpartition("/")
            info.name = f"{head}/.wh.{base}" if head else f".wh.{base}"
            info.mode = 0o600
            self._out.header(info)
        elif kind in (stat.S_IFCHR, stat.S_IFBLK):
            info.type = tarfile.CHRTYPE if kind == stat.S_IFCHR else tarfile.BLKTYPE
            info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
            self._out.header(info)
        elif kind == stat.S_IFLNK:
            info.type = tarfile.SYMTYPE
            try:
                info.linkname = os.readlink(name, dir_fd=parent)
            except OSError as exc:
                if exc.errno in (*_VANISHED, errno.EINVAL):
                    return None
                raise
            self._out.header(info)
        elif kind == stat.S_IFIFO:
            info.type = tarfile.FIFOTYPE
            self._out.header(info)
        return None

    def _directory(self, parent: int, name: str, st: os.stat_result, info: tarfile.TarInfo) -> int | None:
        try:
            fd = os.open(name, _O_DIR, dir_fd=parent)
        except OSError as exc:
            if exc.errno in _VANISHED:
                return None
            raise
        try:
            if _identity(os.fstat(fd)) != _identity(st):
                os.close(fd)
                return None
            info.type = tarfile.DIRTYPE
            info.pax_headers, opaque = _xattrs(fd, info.name)
            if not opaque and info.name in self._holders and all(
                    f"{info.name}/{child}" in self._skip for child in os.listdir(fd)):
                os.close(fd)
                return None
            self._out.header(info)
            if opaque:
                marker = tarfile.TarInfo(f"{info.name}/.wh..wh..opq")
                marker.mode, marker.uid, marker.gid, marker.mtime = info.mode & 0o777, info.uid, info.gid, info.mtime
                self._out.header(marker)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _file(self, parent: int, name: str, st: os.stat_result, info: tarfile.TarInfo) -> None:
        key = _identity(st)
        if st.st_nlink > 1 and key in self._links:
            info.type, info.linkname = tarfile.LNKTYPE, self._links[key]
            self._out.header(info)
            return
        try:
            fd = os.open(name, _O_FILE, dir_fd=parent)
        except OSError as exc:
            if exc.errno in _VANISHED:
                return
            raise
        try:
            opened = os.fstat(fd)
            if _identity(opened) != key or not stat.S_ISREG(opened.st_mode):
                return
            info.pax_headers = _xattrs(fd, info.name)[0]
            info.size = opened.st_size
            self._out.header(info)
            remaining = info.size
            while remaining:
                data = os.read(fd, min(_CHUNK, remaining)) or bytes(min(_CHUNK, remaining))
                self._out.raw(data)
                remaining -= len(data)
            self._out.raw(bytes(-info.size % _BLOCK))
        finally:
            os.close(fd)
        if st.st_nlink > 1:
            self._links[key] = info.name


def _identity(st: os.stat_result) -> tuple[int, int]:
    return st.st_dev, st.st_ino


def _xattrs(fd: int, arcname: str) -> tuple[dict[str, str], bool]:
    """The kept xattrs of the file or directory open at ``fd`` as PAX records, and whether it is an opaque
    directory. Raises Unavailable for a redirect or metacopy entry."""
    records: dict[str, str] = {}
    try:
        names = os.listxattr(fd)
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            return records, False
        raise
    opaque = False
    for key in sorted(names):
        if key in _OVERLAY_INDIRECT:
            raise Unavailable(f'cannot commit "/{arcname}": overlayfs keeps its data in a lower layer '
                              "(redirect_dir or metacopy is on)")
        if key == OVERLAY_OPAQUE_XATTR:
            opaque = os.getxattr(fd, key) == b"y"
        elif key == "security.capability" or (key.startswith("user.") and not key.startswith("user.overlay.")):
            records[f"SCHILY.xattr.{key}"] = os.getxattr(fd, key).decode("utf-8", "surrogateescape")
    return records, opaque


# --- the image config ---------------------------------------------------------------------------------


def commit_reference(repo: str, tag: str) -> Reference | None:
    """The name ``docker commit`` gives the image: ``repo`` (a name without tag or digest) with ``tag``
    (``latest`` when empty); None when ``repo`` is empty. Raises InvalidParameter with Docker's message."""
    if not repo:
        return None
    ref = parse_reference(repo)
    if ref.tag is not None or ref.digest is not None:
        raise InvalidParameter(f"unexpected repository name: {repo}")
    return Reference(ref.domain, ref.path, parse_tag(tag) if tag else "latest")


def _strings(key: str, value: object) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str) and key in ("Cmd", "Entrypoint"):
        return [value]  # Docker's StrSlice takes a string too
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidParameter(f"invalid container config: {key} must be a list of strings")
    return list(value)


def container_config(body: object) -> dict[str, Any]:
    """A client's container config (``POST /commit``'s body) reduced to ``CONFIG_KEYS``, with the fields the
    merge and the changes work on checked. Raises InvalidParameter for anything but a JSON object or a
    field of the wrong type."""
    if not isinstance(body, dict):
        raise InvalidParameter("invalid container config: expected a JSON object")
    config = {k: v for k, v in body.items() if k in CONFIG_KEYS}
    for key in ("Cmd", "Entrypoint", "Env", "OnBuild", "Shell"):
        if key in config:
            config[key] = _strings(key, config[key])
    for key in ("Hostname", "Domainname", "User", "Image", "WorkingDir", "StopSignal", "MacAddress"):
        if not isinstance(config.get(key, ""), str | None):
            raise InvalidParameter(f"invalid container config: {key} must be a string")
    for key in ("ExposedPorts", "Volumes", "Labels", "Healthcheck"):
        if not isinstance(config.get(key, {}), dict | None):
            raise InvalidParameter(f"invalid container config: {key} must be an object")
    if not all(isinstance(v, str) for v in (config.get("Labels") or {}).values()):
        raise InvalidParameter("invalid container config: label values must be strings")
    return config


def merge_config(user: Mapping[str, Any], container: Mapping[str, Any]) -> dict[str, Any]:
    """dockerd's ``merge``: the commit config ``user`` with what it leaves empty taken from the container's
    config (User, WorkingDir, StopSignal, Cmd and Entrypoint when both are empty, Healthcheck); exposed
    ports, env (by name), labels and volumes are the union, ``user``'s winning."""
    out = dict(user)
    for key in ("User", "WorkingDir", "StopSignal"):
        out[key] = out.get(key) or container.get(key) or ""
    for key in ("ExposedPorts", "Volumes"):
        merged = dict(container.get(key) or {}) | dict(out.get(key) or {})
        out[key] = merged or None
    env = list(out.get("Env") or [])
    names = {item.partition("=")[0] for item in env}
    out["Env"] = env + [item for item in container.get("Env") or [] if item.partition("=")[0] not in names]
    out["Labels"] = dict(container.get("Labels") or {}) | dict(out.get("Labels") or {})
    if not out.get("Entrypoint"):
        if not out.get("Cmd"):
            out["Cmd"] = container.get("Cmd")
        if out.get("Entrypoint") is None:
            out["Entrypoint"] = container.get("Entrypoint")
    if not out.get("Healthcheck") and container.get("Healthcheck"):
        out["Healthcheck"] = container["Healthcheck"]
    return out


def child_config(parent: Mapping[str, Any], *, config: Mapping[str, Any], diff_id: str | None, created: str,
                 created_by: str = "", comment: str = "", author: str = "", container_id: str = "",
                 container: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The image config of a child of ``parent`` (an image config document): the parent's platform, the
    container ``config``, ``diff_id`` appended to the root filesystem (None: no layer, and the history entry
    says ``empty_layer``), one history entry appended. ``container_id`` and ``container`` (the committed
    container's config) are recorded when given, as dockerd records them."""
    rootfs = parent.get("rootfs") or {}
    diff_ids = [*(rootfs.get("diff_ids") or []), *([diff_id] if diff_id else [])]
    entry: dict[str, Any] = {"created": created, "created_by": created_by}
    if author:
        entry["author"] = author
    if comment:
        entry["comment"] = comment
    if diff_id is None:
        entry["empty_layer"] = True
    doc = {k: v for k, v in parent.items() if k in ("architecture", "variant", "os", "os.version", "os.features")}
    doc.update({"config": dict(config), "created": created, "history": [*(parent.get("history") or []), entry],
                "rootfs": {"type": "layers", "diff_ids": diff_ids}})
    if author:
        doc["author"] = author
    if container_id:
        doc["container"] = container_id
    if container is not None:
        doc["container_config"] = dict(container)
    return doc
