"""The busybox rootfs builder used by the test fixtures and the benchmarks."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tests.fixtures import rootfs as rootfs_mod
from tests.fixtures.rootfs import DEFAULT_BUSYBOX, build_busybox_rootfs, copy_rootfs, rootfs_key

pytestmark = pytest.mark.skipif(not DEFAULT_BUSYBOX.exists(), reason="busybox-static is not installed")


def test_build_once_and_reuse(tmp_path: Path) -> None:
    first = build_busybox_rootfs(tmp_path)
    assert first.name == f"rootfs-busybox-{rootfs_key()}"
    mtime = first.stat().st_mtime_ns
    again = build_busybox_rootfs(tmp_path)
    assert again == first and again.stat().st_mtime_ns == mtime
    assert [p.name for p in tmp_path.iterdir()] == [first.name]  # no temp dirs left


def test_contents(tmp_path: Path) -> None:
    root = build_busybox_rootfs(tmp_path)
    assert os.access(root / "bin/busybox", os.X_OK)
    assert os.readlink(root / "bin/sh") == "busybox"
    assert (root / "bin/ls").resolve() == (root / "bin/busybox").resolve()
    passwd = (root / "etc/passwd").read_text()
    assert passwd.startswith("root:x:0:0:")
    assert "nobody:x:65534:65534:" in passwd and ":1000:1000:" in passwd
    assert "root:x:0:" in (root / "etc/group").read_text()
    for d in ("proc", "sys", "dev", "tmp"):
        assert (root / d).is_dir() and not list((root / d).iterdir()), d
    assert stat.S_IMODE((root / "tmp").stat().st_mode) == 0o1777
    assert stat.S_IMODE(root.stat().st_mode) == 0o755


def test_failed_build_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(_root: Path, _busybox: Path) -> None:
        raise RuntimeError("simulated crash")

    monkeypatch.setattr(rootfs_mod, "_populate", boom)
    with pytest.raises(RuntimeError):
        build_busybox_rootfs(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_recipe_version_changes_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    before = rootfs_key()
    monkeypatch.setattr(rootfs_mod, "RECIPE_VERSION", rootfs_mod.RECIPE_VERSION + "-next")
    assert rootfs_key() != before


def test_copy_keeps_links_and_modes(tmp_path: Path) -> None:
    root = build_busybox_rootfs(tmp_path / "cache")
    copy = copy_rootfs(root, tmp_path / "copy")
    assert os.readlink(copy / "bin/sh") == "busybox"
    assert os.readlink(copy / "sbin") == "bin"
    assert stat.S_IMODE((copy / "tmp").stat().st_mode) == 0o1777
    assert (copy / "home/user").stat().st_uid == (root / "home/user").stat().st_uid
