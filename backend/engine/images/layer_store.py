"""Unpacked layers, addressed by chain ID, ready to be overlayfs lower directories.

Layout under ``root``::

    layers/<chain-hex>/diff/        the layer's own changes (whiteouts as overlayfs 0/0 char devices)
    layers/<chain-hex>/layer.json   {"chain_id", "diff_id", "parent", "size", "short"}
    l/<SHORT>                       symlink to ../layers/<chain-hex>/diff (short names keep lowerdir small)

A layer is unpacked into ``layers/tmp-*`` and renamed into place when complete, so a crash leaves no
half layer under a real chain ID; ``recover()`` removes leftovers. Each layer holds only its own diff,
so the layers of one image can be unpacked in parallel.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import string
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

from backend.engine.errors import InvalidParameter, NotFound
from backend.engine.images.tarsafe import remove_tree

_SHORT_ALPHABET = string.ascii_uppercase + string.digits
SHORT_LEN = 12


def chain_ids(diff_ids: Sequence[str]) -> list[str]:
    """The OCI chain IDs of a stack of diff IDs (bottom first)."""
    out: list[str] = []
    for diff_id in diff_ids:
        if not out:
            out.append(diff_id)
        else:
            out.append("sha256:" + hashlib.sha256(f"{out[-1]} {diff_id}".encode()).hexdigest())
    return out


def _discard(path: str) -> None:
    """Remove a layer directory (trees of any depth); failures are left for ``recover``."""
    with contextlib.suppress(OSError):
        remove_tree(path)


@dataclass(frozen=True)
class LayerRecord:
    chain_id: str
    diff_id: str
    parent: str | None
    size: int
    short: str


class LayerStore:
    """See the module docstring."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.layers_dir = os.path.join(root, "layers")
        self.links_dir = os.path.join(root, "l")
        os.makedirs(self.layers_dir, mode=0o700, exist_ok=True)
        os.makedirs(self.links_dir, mode=0o700, exist_ok=True)

    def _dir(self, chain_id: str) -> str:
        if not chain_id.startswith("sha256:") or len(chain_id) != 71:
            raise InvalidParameter(f"invalid chain id {chain_id!r}")
        return os.path.join(self.layers_dir, chain_id[7:])

    def recover(self) -> None:
        """Remove partial unpacks and dangling short links (call at start-up)."""
        for name in os.listdir(self.layers_dir):
            if name.startswith("tmp-"):
                _discard(os.path.join(self.layers_dir, name))
        for name in os.listdir(self.links_dir):
            link = os.path.join(self.links_dir, name)
            if not os.path.exists(link):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(link)

    def has(self, chain_id: str) -> bool:
        return os.path.exists(os.path.join(self._dir(chain_id), "layer.json"))

    def get(self, chain_id: str) -> LayerRecord:
        """Raises NotFound, or InvalidParameter for a corrupt record."""
        path = os.path.join(self._dir(chain_id), "layer.json")
        try:
            with open(path) as f:
                return LayerRecord(**json.load(f))
        except FileNotFoundError as exc:
            raise NotFound(f"layer {chain_id} not found") from exc
        except (ValueError, TypeError) as exc:
            raise InvalidParameter(f"layer {chain_id}: corrupt record: {exc}") from exc

    def diff_path(self, chain_id: str) -> str:
        return os.path.join(self._dir(chain_id), "diff")

    def create(self, chain_id: str, diff_id: str, parent: str | None,
               unpack: Callable[[str], int]) -> LayerRecord:
        """Unpack a layer with ``unpack(empty_dir) -> uncompressed size`` and publish it under ``chain_id``.

        Returns the existing record if another caller published it first. Whatever ``unpack`` raises
        propagates after the partial directory is removed.
        """
        if self.has(chain_id):
            return self.get(chain_id)
        tmp = os.path.join(self.layers_dir, f"tmp-{secrets.token_hex(8)}")
        os.mkdir(tmp, 0o700)
        try:
            diff = os.path.join(tmp, "diff")
            os.mkdir(diff, 0o755)
            size = unpack(diff)
            short = "".join(secrets.choice(_SHORT_ALPHABET) for _ in range(SHORT_LEN))
            record = LayerRecord(chain_id, diff_id, parent, size, short)
            with open(os.path.join(tmp, "layer.json"), "w") as f:
                json.dump(asdict(record), f)
                f.flush()
                os.fsync(f.fileno())
            try:
                os.rename(tmp, self._dir(chain_id))
            except OSError:
                if self.has(chain_id):  # lost a race with a concurrent unpack of the same layer
                    _discard(tmp)
                    return self.get(chain_id)
                raise
            os.symlink(os.path.join("..", "layers", chain_id[7:], "diff"), os.path.join(self.links_dir, short))
            return record
        except BaseException:
            _discard(tmp)
            raise

    def remove(self, chain_id: str) -> None:
        """Delete a layer (its short link first). Missing is fine."""
        try:
            record = self.get(chain_id)
        except (NotFound, InvalidParameter):
            record = None
        if record is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(self.links_dir, record.short))
        path = self._dir(chain_id)
        if os.path.exists(path):
            doomed = os.path.join(self.layers_dir, f"tmp-{secrets.token_hex(8)}")
            os.rename(path, doomed)
            _discard(doomed)

    def chain_ids(self) -> list[str]:
        return ["sha256:" + name for name in os.listdir(self.layers_dir) if len(name) == 64]
