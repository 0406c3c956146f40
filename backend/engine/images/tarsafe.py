"""Descriptor-relative filesystem primitives for writing an untrusted tree inside one directory.

Everything here works on directory descriptors and single path components (the ``*at()`` system calls
with ``O_NOFOLLOW``), so a symlink written by the untrusted input can never redirect a write outside the
root descriptor it started from:

- ``LayerTree.directory`` resolves a path *as if the root were ``/``* (like a chroot): a symlink met on
  the way is read with ``readlinkat`` and followed by this code, an absolute target restarts at the root,
  and ``..`` never climbs above the root (it is clamped, or refused in strict mode). The kernel never
  follows a symlink for us: every ``openat`` carries ``O_NOFOLLOW``.
- ``clear_directory``, ``remove_entry`` and ``remove_tree`` (from ``backend.engine.tree_removal``, kept
  here for the modules that unpack) remove trees of any depth without following symlinks.

Failures raise ``OSError`` (with the real errno) or a ``ResolveError`` subclass; callers wrap them once
into the engine's taxonomy. Paths are ``bytes`` components (no ``/`` in a component).
"""

from __future__ import annotations

import errno
import os
import stat
from collections import OrderedDict
from collections.abc import Sequence

from backend.engine.tree_removal import clear_directory as clear_directory
from backend.engine.tree_removal import remove_entry as remove_entry
from backend.engine.tree_removal import remove_tree as remove_tree

MAX_SYMLINKS = 40
"""Symlinks followed in one resolution before giving up (Linux's own limit)."""

_O_DIR_PATH = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC
_O_DIR_READ = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_CACHE_SIZE = 16


class ResolveError(Exception):
    """A path cannot be resolved inside the root. ``str()`` is a short reason."""


class PathEscapes(ResolveError):
    """Strict resolution met ``..`` above the root or an absolute symlink."""


class PathMissing(ResolveError):
    """A component does not exist (and creation was not asked for)."""


class NotADirectoryInTree(ResolveError):
    """A component that must be a directory is something else."""


class TooManySymlinks(ResolveError):
    """More than ``MAX_SYMLINKS`` symlinks were followed."""


def lstat_at(dir_fd: int, name: bytes) -> os.stat_result | None:
    """``fstatat(AT_SYMLINK_NOFOLLOW)`` of one component, or None if it does not exist."""
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def proc_path(dir_fd: int, name: bytes) -> bytes:
    """A ``/proc/self/fd`` path naming component ``name`` of the directory open at ``dir_fd``.

    For the few calls that have no ``*at()`` form (``lsetxattr``). The magic link pins the directory, so
    only ``name`` is looked up; pass ``follow_symlinks=False`` so a symlink ``name`` is not followed.
    """
    return b"/proc/self/fd/%d/%s" % (dir_fd, name)


def _open_child_dir(dir_fd: int, name: bytes, flags: int) -> int:
    """Open directory ``name`` under ``dir_fd`` without following a symlink (ENOTDIR/ELOOP if it is one)."""
    return os.open(name, flags | os.O_NOFOLLOW, dir_fd=dir_fd)


class LayerTree:
    """Resolves directories below one root directory descriptor, chroot-style, without leaving it.

    Invariants: every descriptor it returns refers to a directory at or below the root (reached only
    through ``openat(O_NOFOLLOW)`` of single components, ``..`` only when below the root); it never asks the
    kernel to follow a symlink. Descriptors handed out by ``directory`` are owned by the tree and stay
    valid until the next ``directory`` call or ``close``; ``lookup`` descriptors are the caller's.
    ``invalidate`` must be called after anything in the tree is removed or replaced (cached resolutions
    may be stale then); creating new entries never invalidates a resolution.
    """

    def __init__(self, root_fd: int, *, implicit_dir_mode: int = 0o755) -> None:
        self.root_fd = root_fd
        self.implicit_dir_mode = implicit_dir_mode
        self._cache: OrderedDict[tuple[bytes, ...], tuple[int, int]] = OrderedDict()  # path -> (fd, depth)
        self._retired: list[int] = []

    def close(self) -> None:
        """Close every cached descriptor (not the root)."""
        self._drop_retired()
        for fd, _ in self._cache.values():
            os.close(fd)
        self._cache.clear()

    def invalidate(self) -> None:
        """Forget cached resolutions. Descriptors already handed out stay open until the next call."""
        self._retired.extend(fd for fd, _ in self._cache.values())
        self._cache.clear()

    def _drop_retired(self) -> None:
        while self._retired:
            os.close(self._retired.pop())

    def directory(self, parts: Sequence[bytes]) -> int:
        """The directory at ``parts`` (resolved in the root, ``..`` clamped), creating missing components.

        Missing components are created as directories with ``implicit_dir_mode`` (exactly, whatever the
        umask), owned by the caller. Returns a descriptor owned by the tree (see the class docstring).
        Raises ``NotADirectoryInTree``, ``TooManySymlinks`` or OSError.
        """
        self._drop_retired()
        key = tuple(parts)
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            return hit[0]
        # Tars list a directory, then its contents: resolve from a cached parent or grandparent if any.
        start: tuple[int, int] | None = None
        rest = key
        for back in (1, 2):
            if len(key) > back and (start := self._cache.get(key[:-back])) is not None:
                rest = key[-back:]
                break
        resolved = self._resolve(rest, create=True, strict=False, start=start)
        self._cache[key] = resolved
        if len(self._cache) > _CACHE_SIZE:
            _, (old, _) = self._cache.popitem(last=False)
            self._retired.append(old)
        return resolved[0]

    def lookup(self, parts: Sequence[bytes], *, strict: bool) -> int:
        """The existing directory at ``parts``; never creates. The caller closes the descriptor.

        ``strict``: refuse (``PathEscapes``) a symlink on the way that is absolute or climbs above the
        root, instead of resolving it chroot-style. Raises ``PathMissing``, ``NotADirectoryInTree``,
        ``TooManySymlinks``, ``PathEscapes`` or OSError.
        """
        return self._resolve(tuple(parts), create=False, strict=strict)[0]

    def _resolve(self, parts: tuple[bytes, ...], *, create: bool, strict: bool,
                 start: tuple[int, int] | None = None) -> tuple[int, int]:
        """(new descriptor, depth below the root) of ``parts`` resolved from ``start`` (fd, depth) or the root."""
        pending = list(reversed(parts))
        if start is None:
            cur = os.open(b".", _O_DIR_PATH, dir_fd=self.root_fd)
            depth = 0
        else:
            cur = os.open(b".", _O_DIR_PATH, dir_fd=start[0])
            depth = start[1]
        links = 0
        try:
            while pending:
                comp = pending.pop()
                if comp in (b"", b"."):
                    continue
                if comp == b"..":
                    if depth == 0:
                        if strict:
                            raise PathEscapes("a symlink climbs above the layer root")
                        continue
                    nxt = os.open(b"..", _O_DIR_PATH, dir_fd=cur)
                    os.close(cur)
                    cur = nxt
                    depth -= 1
                    continue
                try:
                    nxt = _open_child_dir(cur, comp, _O_DIR_PATH)
                except FileNotFoundError:
                    if not create:
                        raise PathMissing(f"{os.fsdecode(comp)!r} does not exist") from None
                    self._mkdir(cur, comp)
                    nxt = _open_child_dir(cur, comp, _O_DIR_PATH)
                except OSError as exc:
                    if exc.errno not in (errno.ENOTDIR, errno.ELOOP):
                        raise
                    st = os.stat(comp, dir_fd=cur, follow_symlinks=False)
                    if not stat.S_ISLNK(st.st_mode):
                        raise NotADirectoryInTree(f"{os.fsdecode(comp)!r} is not a directory") from None
                    links += 1
                    if links > MAX_SYMLINKS:
                        raise TooManySymlinks("too many levels of symbolic links") from None
                    target = os.readlink(comp, dir_fd=cur)
                    if target.startswith(b"/"):
                        if strict:
                            raise PathEscapes("an absolute symlink is on the way") from None
                        os.close(cur)
                        cur = os.open(b".", _O_DIR_PATH, dir_fd=self.root_fd)
                        depth = 0
                    pending.extend(reversed(target.split(b"/")))
                    continue
                os.close(cur)
                cur = nxt
                depth += 1
        except BaseException:
            os.close(cur)
            raise
        return cur, depth

    def _mkdir(self, dir_fd: int, name: bytes) -> None:
        os.mkdir(name, 0o700, dir_fd=dir_fd)
        fd = _open_child_dir(dir_fd, name, _O_DIR_READ)
        try:
            os.fchmod(fd, self.implicit_dir_mode)
        finally:
            os.close(fd)
