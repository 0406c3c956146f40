"""Shared checks of the hostile-input corpus, and the ``--long`` switch for soak runs.

Every test that uses ``berthd_with_busybox`` gets, after its case, the checks of :class:`HostGuard`:

- nothing was written outside the target: the sentinel tree ``hostile.SENTINEL`` and the host marker
  file ``hostile.MARKER`` (plus ``/etc/passwd`` and ``/etc/shadow``) hash as before, names, modes, owners,
  times and contents;
- ``/_ping`` still answers ``OK``;
- no new mount below the daemon's directory, the sentinel or a host system directory;
- no leftover temp or partial files in the data root: nothing new in its temp, ingest and trash
  directories, no half-unpacked layer, every new blob matches its digest, no new image record or container
  directory.

``--long`` (registered in tests/conftest.py) raises hypothesis example counts.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, settings

from tests.fixtures.berthd import Berthd
from tests.security.hostile import MARKER, MARKER_TEXT, SENTINEL

settings.register_profile("berth-ci", max_examples=100, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("berth-long", max_examples=20_000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
HOST_FILES = ("/etc/passwd", "/etc/shadow", MARKER)
_HOST_DIRS = ("/", "/etc", "/tmp", "/usr", "/var", "/root", "/home", "/bin", "/sbin", "/lib")
_TEMP_DIRS = ("image/tmp", "builder/tmp", "image/content/ingest", "image/content/trash")
_FIRST_USE = {*_TEMP_DIRS, "builder/cache.json"}
"""Made by the first load, import or build: present in every data root after that."""


def pytest_configure(config: pytest.Config) -> None:
    settings.load_profile("berth-long" if config.getoption("--long", default=False) else "berth-ci")


def _fingerprint(path: str) -> str:
    """A hash of the tree at ``path`` (not following symlinks): names, types, modes, owners, mtimes, data."""
    h = hashlib.sha256()
    for top, dirs, files in os.walk(path):
        dirs.sort()
        for name in [".", *sorted(dirs), *sorted(files)]:
            full = os.path.join(top, name)
            st = os.lstat(full)
            h.update(f"{full}|{st.st_mode:o}|{st.st_uid}|{st.st_gid}|{st.st_mtime_ns}|".encode())
            if stat.S_ISLNK(st.st_mode):
                h.update(os.readlink(full).encode())
            elif stat.S_ISREG(st.st_mode) and name != ".":
                h.update(Path(full).read_bytes())
    return h.hexdigest()


def _host_state() -> dict[str, str]:
    state = {SENTINEL: _fingerprint(SENTINEL)}
    for name in HOST_FILES:
        st = os.lstat(name)
        state[name] = f"{st.st_mode:o}|{st.st_uid}|{st.st_mtime_ns}|" + hashlib.sha256(Path(name).read_bytes()
                                                                                        ).hexdigest()
    return state


def _mounts(watched: tuple[str, ...]) -> set[str]:
    """Mount points (with fs type and source) below the watched prefixes or on a host system directory."""
    out = set()
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            point = fields[4]
            rest = fields[fields.index("-") + 1:]
            if point in _HOST_DIRS or any(point == p or point.startswith(p + "/") for p in watched):
                out.add(f"{point} {rest[0]} {rest[1]}")
    return out


def _data_root(root: Path) -> set[str]:
    """Paths in the data root that a clean root keeps stable (container and volume dirs only by name)."""
    out = set()
    for top, dirs, files in os.walk(root):
        rel = os.path.relpath(top, root)
        if rel.count(os.sep) >= 1 and rel.split(os.sep)[0] in ("containers", "volumes"):
            dirs[:] = []
            continue
        if rel.startswith(os.path.join("image", "overlay", "layers") + os.sep):
            dirs[:] = []  # a layer's own tree is its content: only its directory and layer.json count
            files = [f for f in files if f == "layer.json"]
        out.update(os.path.normpath(os.path.join(rel, name)) for name in [*dirs, *files])
    return out


@dataclass
class HostGuard:
    """What the shared checks compare: host state, mounts and data-root listing before a case."""

    daemon: Berthd
    host: dict[str, str]
    mounts: set[str]
    data: set[str]

    @classmethod
    def snapshot(cls, daemon: Berthd) -> HostGuard:
        return cls(daemon, _host_state(), _mounts(cls.watched(daemon)), _data_root(daemon.data_root))

    @staticmethod
    def watched(daemon: Berthd) -> tuple[str, ...]:
        return (str(daemon.workdir), SENTINEL)

    def problems(self) -> list[str]:
        """Every shared check that fails, as one line each (empty: the case left no trace)."""
        found = []
        after = _host_state()
        found += [f"host path changed: {name}" for name in after if after[name] != self.host.get(name)]
        try:
            with httpx.Client(transport=httpx.HTTPTransport(uds=str(self.daemon.socket)), timeout=10) as c:
                ping = c.get("http://berth/_ping").text
        except httpx.HTTPError as exc:
            ping = f"no answer: {exc}"
        if ping != "OK":
            found.append(f"/_ping: {ping}")
        found += [f"new mount: {m}" for m in sorted(_mounts(self.watched(self.daemon)) - self.mounts)]
        root = self.daemon.data_root
        for rel in sorted(_data_root(root) - self.data):
            parts = rel.split(os.sep)
            if rel in _FIRST_USE:
                continue
            if any(rel.startswith(t + os.sep) for t in _TEMP_DIRS):
                found.append(f"leftover temp file in the data root: {rel}")
            elif rel.startswith("image/content/blobs/sha256/"):
                if hashlib.sha256((root / rel).read_bytes()).hexdigest() != parts[-1]:
                    found.append(f"blob does not match its digest: {rel}")
            elif rel.startswith("image/overlay/layers/"):
                if parts[3].startswith("tmp-") or not (root / "image/overlay/layers" / parts[3] / "layer.json"
                                                       ).exists():
                    found.append(f"partial layer in the data root: {rel}")
            elif rel.startswith("image/overlay/l/"):
                if not (root / rel).exists():
                    found.append(f"dangling layer link: {rel}")
            elif rel.startswith(("image/meta/", "containers/", "volumes/")):
                found.append(f"new record left behind: {rel}")
            else:
                found.append(f"unexpected new file in the data root: {rel}")
        return found


@pytest.fixture(scope="session", autouse=True)
def host_sentinel() -> Iterator[None]:
    """The sentinel tree and host marker file that every escape attempt aims at; removed at the end."""
    root = Path(SENTINEL)
    shutil.rmtree(root, ignore_errors=True)
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text("root:x:0:0:sentinel:/root:/bin/sh\n")
    (root / "dir" / "sub").mkdir(parents=True)
    (root / "dir" / "sub" / "file").write_bytes(b"sentinel\n")
    (root / "link").symlink_to("dir/sub")
    Path(MARKER).write_bytes(MARKER_TEXT)
    os.chmod(MARKER, 0o600)
    try:
        yield
    finally:
        shutil.rmtree(root, ignore_errors=True)
        Path(MARKER).unlink(missing_ok=True)


@pytest.fixture(autouse=True)
def shared_checks(request: pytest.FixtureRequest) -> Iterator[HostGuard | None]:
    """After each case that uses ``berthd_with_busybox``: the checks of :meth:`HostGuard.problems`."""
    if "berthd_with_busybox" not in request.fixturenames:
        yield None
        return
    daemon: Berthd = request.getfixturevalue("berthd_with_busybox")
    guard = HostGuard.snapshot(daemon)
    yield guard
    problems = guard.problems()
    assert not problems, "shared checks failed after the case:\n" + "\n".join(problems)

