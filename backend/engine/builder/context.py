"""The build context: the client's tar unpacked into a private directory, and safe reads of source trees.

- ``unpack_context`` extracts the context tar (plain, gzip, zstd, bzip2 or xz) with the image layer applier
  (``images.layers``: nothing is written outside the directory, bombs stop at ``CONTEXT_LIMITS``), then
  applies ``.dockerignore`` again on the daemon side (clients that send raw tars get Docker's semantics
  too), keeping the Dockerfile and ``.dockerignore`` until the Dockerfile is read; like dockerd, both are
  removed afterwards when the patterns exclude them.
- ``SourceTree`` reads a directory it does not trust (the context, or an image's root for ``COPY --from``):
  every path is cleaned, must not climb above the root (``COPY ../x`` is refused), and is resolved through
  directory descriptors as in a chroot: a symlink ``x -> /etc/passwd`` in the context leads to the
  context's own ``etc/passwd``, never the host's. Files are opened with ``O_NOFOLLOW``; walks never
  follow a symlink (it is copied as a symlink).
"""

from __future__ import annotations

import bz2
import fnmatch
import io
import lzma
import os
import posixpath
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO, cast

from backend.engine.builder.dockerfile import MAX_DOCKERFILE_SIZE
from backend.engine.builder.dockerignore import Pattern, is_excluded, must_walk_dir, parse_dockerignore
from backend.engine.errors import InvalidParameter, NotFound, Unavailable
from backend.engine.images import tarsafe
from backend.engine.images.layers import LayerError, LayerLimits, apply_layer

CONTEXT_LIMITS = LayerLimits(max_uncompressed=16 * 1024**3, max_ratio=1000, max_entries=1_000_000)
"""Bounds on a build context: uncompressed bytes, compression ratio, entries."""

_O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_O_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_MAGIC = {b"BZh": bz2.BZ2File, b"\xfd7zXZ\x00": lzma.LZMAFile}


class ContextError(InvalidParameter):
    """The context or a path in it is unusable (outside the context, missing, not a tar)."""


@dataclass
class Found:
    """An existing entry: ``name`` in the directory open at ``dir_fd`` (None: the directory itself).
    The descriptor is the holder's to close."""

    dir_fd: int
    name: bytes | None
    st: os.stat_result

    def open_dir(self) -> int:
        if self.name is None:
            return os.open(b".", _O_DIR & ~os.O_NOFOLLOW, dir_fd=self.dir_fd)
        return os.open(self.name, _O_DIR, dir_fd=self.dir_fd)

    def open_file(self) -> int:
        if self.name is None:
            raise IsADirectoryError(self.dir_fd, "is a directory")
        return os.open(self.name, _O_FILE, dir_fd=self.dir_fd)


def clean_relative(path: str, what: str = "path") -> str:
    """``path`` cleaned relative to a root ("" for the root itself). Raises ContextError when it climbs above
    the root (``../x``); a leading ``/`` is the root, as Docker takes context paths."""
    if "\x00" in path:
        raise ContextError(f"{what} {path!r} contains a NUL byte")
    norm = posixpath.normpath(path) if path else "."
    if norm == ".." or norm.startswith("../"):
        raise ContextError(f"forbidden path outside the build context: {path}")
    rel = norm.lstrip("/")
    return "" if rel == "." else rel


class SourceTree:
    """A directory read chroot-style (see the module docstring). Use as a context manager."""

    def __init__(self, root: str, label: str) -> None:
        self.label = label
        try:
            self.fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise Unavailable(f"{label} is not available: {exc.strerror}") from exc
        self._tree = tarsafe.LayerTree(self.fd)

    def __enter__(self) -> SourceTree:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._tree.close()
        os.close(self.fd)

    def locate(self, rel: str) -> Found | None:
        """The entry at the cleaned relative path ``rel``, symlinks (the last one too) followed inside the
        root; None when it does not exist. Raises ContextError for a symlink loop, Unavailable."""
        parts = [os.fsencode(p) for p in rel.split("/") if p]
        try:
            for _ in range(tarsafe.MAX_SYMLINKS + 1):
                if not parts:
                    fd = self._tree.lookup([], strict=False)
                    return Found(fd, None, os.fstat(fd))
                fd = self._tree.lookup(parts[:-1], strict=False)
                try:
                    st = tarsafe.lstat_at(fd, parts[-1])
                    target = os.readlink(parts[-1], dir_fd=fd) if st and stat.S_ISLNK(st.st_mode) else None
                except BaseException:
                    os.close(fd)
                    raise
                if st is None or parts[-1] == b"..":
                    os.close(fd)
                    if st is None:
                        return None
                    parts = [*parts[:-1], b"..", b"."]  # resolve ".." as a directory lookup
                    continue
                if target is None:
                    return Found(fd, parts[-1], st)
                os.close(fd)
                parts = ([] if target.startswith(b"/") else parts[:-1]) + [p for p in target.split(b"/") if p]
            raise ContextError(f"{rel}: too many levels of symbolic links")
        except (tarsafe.PathMissing, tarsafe.NotADirectoryInTree):
            return None
        except tarsafe.ResolveError as exc:
            raise ContextError(f"{rel}: {exc}") from None
        except OSError as exc:
            raise Unavailable(f"{self.label}: {rel}: {exc.strerror or exc}") from exc

    def glob(self, pattern: str) -> list[str]:
        """Cleaned relative paths matching ``pattern`` component by component (``*``, ``?``, ``[...]`` never
        match ``/``, as Go's ``filepath.Match``), sorted. Raises ContextError for a pattern above the root."""
        matches = [""]
        for part in clean_relative(pattern).split("/"):
            found: list[str] = []
            for base in matches:
                if not any(c in part for c in "*?["):
                    found.append(posixpath.join(base, part) if base else part)
                    continue
                for name in self.listdir(base):
                    if fnmatch.fnmatchcase(name, part):
                        found.append(posixpath.join(base, name) if base else name)
            matches = found
        return sorted(m for m in matches if self.locate(m) is not None)

    def listdir(self, rel: str) -> list[str]:
        """Names in the directory at ``rel`` (sorted; empty if it is not a directory)."""
        found = self.locate(rel)
        if found is None:
            return []
        try:
            if not stat.S_ISDIR(found.st.st_mode):
                return []
            fd = found.open_dir()
            try:
                return sorted(os.listdir(fd))
            finally:
                os.close(fd)
        finally:
            os.close(found.dir_fd)

    def read(self, rel: str, limit: int) -> bytes:
        """The content of the regular file at ``rel``. Raises NotFound, ContextError when over ``limit`` bytes
        or not a regular file."""
        found = self.locate(rel)
        if found is None:
            raise NotFound(f"{rel}: no such file in {self.label}")
        try:
            if not stat.S_ISREG(found.st.st_mode):
                raise ContextError(f"{rel} in {self.label} is not a regular file")
            if found.st.st_size > limit:
                raise ContextError(f"{rel} is larger than the limit of {limit} bytes")
            with os.fdopen(found.open_file(), "rb") as f:
                return f.read(limit + 1)[:limit]
        finally:
            os.close(found.dir_fd)


def walk(found: Found) -> Iterator[tuple[str, int, bytes, os.stat_result]]:
    """Every entry below the directory ``found``, parents first, names sorted: (relative path, parent
    descriptor, name, lstat). Symlinks are reported, never entered; descriptors are valid during the step."""
    stack: list[tuple[int, str, Iterator[str]]] = []
    try:
        fd = found.open_dir()
        stack.append((fd, "", iter(sorted(os.listdir(fd)))))
        while stack:
            fd, prefix, names = stack[-1]
            name = next(names, None)
            if name is None:
                os.close(stack.pop()[0])
                continue
            raw = os.fsencode(name)
            st = tarsafe.lstat_at(fd, raw)
            if st is None:
                continue
            rel = f"{prefix}{name}"
            yield rel, fd, raw, st
            if stat.S_ISDIR(st.st_mode):
                sub = os.open(raw, _O_DIR, dir_fd=fd)
                stack.append((sub, rel + "/", iter(sorted(os.listdir(sub)))))
    finally:
        for fd, _, _ in stack:
            os.close(fd)


# --- unpacking ------------------------------------------------------------------------------------------


def _decompressing(source: BinaryIO) -> BinaryIO:
    """``source`` with bzip2 or xz inflated here (the layer applier inflates gzip and zstd itself)."""
    buffered = source if isinstance(source, io.BufferedReader) else io.BufferedReader(cast(io.RawIOBase, source))
    head = buffered.peek(6)[:6]
    for magic, opener in _MAGIC.items():
        if head.startswith(magic):
            return cast(BinaryIO, opener(buffered))
    return cast(BinaryIO, buffered)


def unpack_context(source: BinaryIO, dest: str, *, limits: LayerLimits = CONTEXT_LIMITS) -> None:
    """Extract the context tar read from ``source`` into the empty directory ``dest``.

    Raises ContextError for a malformed or hostile tar or one over ``limits`` (``dest`` is left empty),
    Unavailable when the disk fails."""
    try:
        apply_layer(_decompressing(source), dest, limits=limits, whiteouts=False)
    except LayerError as exc:
        raise ContextError(f"invalid build context: {exc}") from None
    except (OSError, EOFError, lzma.LZMAError) as exc:
        raise ContextError(f"invalid build context: {exc}") from None


def _remove_excluded(root_fd: int, patterns: list[Pattern], keep: frozenset[str]) -> None:
    pending: list[tuple[int, str]] = [(os.open(b".", _O_DIR & ~os.O_NOFOLLOW, dir_fd=root_fd), "")]
    while pending:
        fd, prefix = pending.pop()
        try:
            for name in sorted(os.listdir(fd)):
                rel = prefix + name
                st = tarsafe.lstat_at(fd, os.fsencode(name))
                if st is None or rel in keep:
                    continue
                is_dir = stat.S_ISDIR(st.st_mode)
                if is_excluded(rel, patterns) and not (is_dir and must_walk_dir(rel, patterns)):
                    tarsafe.remove_entry(fd, os.fsencode(name))
                    continue
                if is_dir:
                    pending.append((os.open(name, _O_DIR, dir_fd=fd), rel + "/"))
        finally:
            os.close(fd)


@dataclass(frozen=True)
class BuildContext:
    """An unpacked, filtered context at ``root`` and the Dockerfile read from it."""

    root: str
    dockerfile: bytes
    dockerfile_path: str


def open_context(root: str, dockerfile: str = "") -> BuildContext:
    """Read the Dockerfile (``dockerfile``, a path inside the context; default ``Dockerfile``, else
    ``dockerfile``) from the unpacked context at ``root``, then apply ``.dockerignore``: excluded entries
    are removed, and so are the Dockerfile and ``.dockerignore`` themselves when excluded.

    Raises ContextError (path outside the context, bad pattern, Dockerfile too large) or NotFound
    ("Cannot locate specified Dockerfile: x")."""
    names = [dockerfile] if dockerfile else ["Dockerfile", "dockerfile"]
    with SourceTree(root, "the build context") as tree:
        data, chosen = None, names[0]
        for name in names:
            rel = clean_relative(name, "Dockerfile")
            found = tree.locate(rel)
            if found is None:
                continue
            os.close(found.dir_fd)
            data, chosen = tree.read(rel, MAX_DOCKERFILE_SIZE), rel
            break
        if data is None:
            raise NotFound(f"Cannot locate specified Dockerfile: {names[0]}")
        try:
            ignore = tree.read(".dockerignore", 1 << 20).decode("utf-8", "replace")
        except NotFound:
            ignore = ""
        patterns = parse_dockerignore(ignore)
        if patterns:
            keep = frozenset({chosen, ".dockerignore"})
            try:
                _remove_excluded(tree.fd, patterns, keep)
                for name in sorted(keep):
                    if is_excluded(name, patterns):
                        parent, _, base = name.rpartition("/")
                        found = tree.locate(parent)
                        if found is not None:
                            _remove_in(found, os.fsencode(base))
            except OSError as exc:
                raise Unavailable(f"cannot filter the build context: {exc.strerror or exc}") from exc
    return BuildContext(root, data, chosen)


def _remove_in(directory: Found, name: bytes) -> None:
    try:
        fd = directory.open_dir()
        try:
            tarsafe.remove_entry(fd, name)
        finally:
            os.close(fd)
    finally:
        os.close(directory.dir_fd)
