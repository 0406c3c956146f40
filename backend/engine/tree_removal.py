"""Removal of directory trees of any depth, without following symlinks.

Iterative, with a constant number of open descriptors, so depth is bounded by nothing but the filesystem,
where a recursive walk (``shutil.rmtree``) dies of Python's recursion limit. Shared by every layer of the
engine (layers, container directories, build work trees, volumes); failures raise ``OSError``.
"""

from __future__ import annotations

import os
import stat

_O_DIR_READ = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


def _open_child_dir(dir_fd: int, name: bytes | str) -> int:
    """Open directory ``name`` under ``dir_fd`` without following a symlink (ENOTDIR/ELOOP if it is one)."""
    return os.open(name, _O_DIR_READ | os.O_NOFOLLOW, dir_fd=dir_fd)


def clear_directory(dir_fd: int) -> None:
    """Remove every entry below the directory open at ``dir_fd``; the directory itself stays.

    Never follows a symlink (symlinks are unlinked, not entered) and keeps two descriptors open at most,
    so trees of any depth are removed. Directories without write or search permission are made
    ``0700`` first (for callers that are not root). Raises OSError.
    """
    cur = os.open(b".", _O_DIR_READ, dir_fd=dir_fd)
    names: list[str] = []
    try:
        while True:
            child: str | None = None
            try:
                with os.scandir(cur) as entries:
                    for entry in entries:
                        if entry.is_dir(follow_symlinks=False):
                            child = entry.name
                            break
                        os.unlink(entry.name, dir_fd=cur)
            except PermissionError:
                if os.geteuid() == 0:
                    raise
                os.fchmod(cur, 0o700)
                continue
            if child is not None:
                try:
                    nxt = _open_child_dir(cur, child)
                except PermissionError:
                    os.chmod(child, 0o700, dir_fd=cur, follow_symlinks=False)
                    nxt = _open_child_dir(cur, child)
                os.close(cur)
                cur = nxt
                names.append(child)
                continue
            if not names:
                return
            parent = os.open(b"..", _O_DIR_READ, dir_fd=cur)
            os.close(cur)
            cur = parent
            os.rmdir(names.pop(), dir_fd=cur)
    finally:
        os.close(cur)


def remove_entry(dir_fd: int, name: bytes) -> None:
    """Remove ``name`` under ``dir_fd`` whatever it is (a directory with all its contents); missing is fine.

    Raises OSError."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        sub = _open_child_dir(dir_fd, name)
        try:
            clear_directory(sub)
        finally:
            os.close(sub)
        os.rmdir(name, dir_fd=dir_fd)
    else:
        os.unlink(name, dir_fd=dir_fd)


def remove_tree(path: str) -> None:
    """Remove ``path`` whatever it is, a directory tree of any depth included; missing is fine.

    Never follows a symlink (a symlink ``path`` is itself removed). Raises OSError.
    """
    parent, name = os.path.split(os.path.abspath(path))
    parent_fd = os.open(parent, _O_DIR_READ)
    try:
        remove_entry(parent_fd, os.fsencode(name))
    finally:
        os.close(parent_fd)
