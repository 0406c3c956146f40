"""A build context as clients send it to ``POST /build``: the files under a directory, as a tar (owners
0:0, symlinks kept as symlinks, no device nodes or sockets), minus what its ``.dockerignore`` excludes
(:mod:`backend.api.dockerignore`) — the Dockerfile and ``.dockerignore`` are always sent. Shared by
``berth build`` and Compose."""

from __future__ import annotations

import io
import os
import secrets
import stat
import tarfile
from collections.abc import Collection
from typing import IO

from backend.api.dockerignore import Pattern, is_excluded, must_walk_dir, parse_dockerignore


def read_dockerignore(root: str) -> list[Pattern]:
    """The patterns of ``root/.dockerignore`` ([] without one). Raises PatternError for a bad pattern."""
    try:
        with open(os.path.join(root, ".dockerignore"), encoding="utf-8", errors="replace") as f:
            return parse_dockerignore(f.read())
    except FileNotFoundError:
        return []


def _add(tar: tarfile.TarFile, path: str, arcname: str) -> None:
    st = os.lstat(path)
    info = tar.gettarinfo(path, arcname)
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if stat.S_ISREG(st.st_mode):
        with open(path, "rb") as f:
            tar.addfile(info, f)
    elif stat.S_ISDIR(st.st_mode) or stat.S_ISLNK(st.st_mode):
        tar.addfile(info)


def add_context(tar: tarfile.TarFile, root: str, patterns: list[Pattern], keep: Collection[str]) -> None:
    """Add the files under ``root`` to ``tar`` in a stable order, minus those ``patterns`` exclude, except
    the names in ``keep`` (the Dockerfile, ``.dockerignore``)."""
    for top, dirs, files in os.walk(root):
        rel_top = os.path.relpath(top, root)
        prefix = "" if rel_top == "." else rel_top + "/"
        for name in sorted(dirs):
            rel = prefix + name
            if not is_excluded(rel, patterns):
                _add(tar, os.path.join(top, name), rel)
            elif not must_walk_dir(rel, patterns):
                dirs.remove(name)
        dirs.sort()
        for name in sorted(files):
            rel = prefix + name
            if rel in keep or not is_excluded(rel, patterns):
                _add(tar, os.path.join(top, name), rel)


def write_context(root: str, out: IO[bytes], dockerfile: str | None = None, inline: bytes | None = None) -> str:
    """Write the context tar of directory ``root`` to ``out``; returns the Dockerfile's name in it.

    ``dockerfile`` is the Dockerfile's path (default ``root/Dockerfile``); ``inline`` is a Dockerfile's content
    (read from stdin). A Dockerfile outside ``root``, or an inline one, is added under a generated name
    (``.dockerfile.<hex>``), as the docker CLI does. Raises PatternError for a bad ``.dockerignore`` pattern,
    OSError for unreadable files.
    """
    root = os.path.abspath(root)
    patterns = read_dockerignore(root)
    name = os.path.relpath(os.path.abspath(dockerfile or os.path.join(root, "Dockerfile")), root)
    if inline is None and name.startswith(".." + os.sep):
        with open(os.path.join(root, name), "rb") as f:
            inline = f.read()
    if inline is not None:
        name = f".dockerfile.{secrets.token_hex(10)}"
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        add_context(tar, root, patterns, {name, ".dockerignore"})
        if inline is not None:
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(inline), 0o600
            tar.addfile(info, io.BytesIO(inline))
    return name
