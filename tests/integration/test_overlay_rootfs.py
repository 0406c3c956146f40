"""Container root filesystems as overlay mounts over a layer chain (root: mounts)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from backend.engine.errors import InvalidParameter
from backend.engine.images.layer_store import LayerStore, chain_ids
from backend.engine.images.overlay import MAX_LAYERS, mount_rootfs, unmount_rootfs

pytestmark = pytest.mark.root


def _make_chain(store: LayerStore, count: int) -> list[str]:
    """``count`` layers; layer i adds file f<i>; the second one whites out f0 (a 0/0 char device)."""
    diff_ids = ["sha256:" + hashlib.sha256(f"layer {i}".encode()).hexdigest() for i in range(count)]
    chains = chain_ids(diff_ids)
    for i, chain in enumerate(chains):
        def unpack(target: str, i: int = i) -> int:
            Path(target, f"f{i}").write_text(str(i))
            if i == 1:
                os.mknod(os.path.join(target, "f0"), 0o600 | 0o020000, os.makedev(0, 0))
            return 1
        store.create(chain, diff_ids[i], chains[i - 1] if i else None, unpack)
    return chains


def _mounted(path: str) -> bool:
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == path for line in f)


def test_merged_view_and_writes_stay_in_upper(tmp_path: Path) -> None:
    store = LayerStore(str(tmp_path / "layers"))
    chains = _make_chain(store, 3)
    container = tmp_path / "c1"
    merged = mount_rootfs(store, list(reversed(chains)), str(container))
    try:
        assert sorted(os.listdir(merged)) == ["f1", "f2"]  # f0 whited out by layer 1
        Path(merged, "new").write_text("w")
        assert Path(container, "upper", "new").read_text() == "w"
        assert not Path(store.diff_path(chains[-1]), "new").exists()
    finally:
        unmount_rootfs(str(container))
    assert not _mounted(merged)


def test_deepest_supported_chain_mounts(tmp_path: Path) -> None:
    store = LayerStore(str(tmp_path / "layers"))
    chains = _make_chain(store, MAX_LAYERS)
    container = tmp_path / "deep"
    merged = mount_rootfs(store, list(reversed(chains)), str(container))
    try:
        assert len(os.listdir(merged)) == MAX_LAYERS - 1
    finally:
        unmount_rootfs(str(container))


def test_too_many_layers_is_a_clear_error(tmp_path: Path) -> None:
    store = LayerStore(str(tmp_path / "layers"))
    chains = _make_chain(store, MAX_LAYERS + 1)
    with pytest.raises(InvalidParameter, match=f"{MAX_LAYERS + 1} layers; at most {MAX_LAYERS}"):
        mount_rootfs(store, list(reversed(chains)), str(tmp_path / "c"))
