"""The classic builder's layer cache.

A step hits when a child of the same parent image was built here by the same step: the same
``created_by`` line (for COPY and ADD it holds the checksum of the copied files: content, mode, owner,
name) and the same resulting container config (so a changed ENV, HEALTHCHECK or ONBUILD misses). The
index lives in its own file, written only by this builder: pulled or loaded images are never cache
parents or children, whatever their configs say, and a ``FROM scratch`` step is only matched by images
built here (CVE-2024-24557). Entries whose image is gone are dropped when met.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Mapping
from typing import Any

from backend.engine.errors import NotFound
from backend.engine.images.image_store import ImageRecord, ImageStore


def step_key(parent_id: str, created_by: str, config: Mapping[str, Any], extra: str = "") -> str:
    """The cache key of a step: parent image ID ("" for scratch), history line, resulting config, and what
    else decides the result (``extra``: COPY's --chown and --chmod)."""
    doc = json.dumps([parent_id, created_by, config, extra], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(doc.encode()).hexdigest()


class BuildCache:
    """Step key -> image ID, kept in ``path`` (JSON, replaced atomically). Not thread-safe: one event loop."""

    def __init__(self, path: str, images: ImageStore) -> None:
        self.path = path
        self._images = images
        self._entries: dict[str, str] = {}
        with contextlib.suppress(FileNotFoundError, ValueError, TypeError):
            with open(path) as f:
                doc = json.load(f)
            self._entries = {str(k): str(v) for k, v in dict(doc).items()}

    def get(self, key: str) -> ImageRecord | None:
        """The image a step with ``key`` made here, if it still exists."""
        image_id = self._entries.get(key)
        if image_id is None:
            return None
        try:
            record = self._images.get(image_id)
        except NotFound:
            record = None
        if record is None or record.corrupt:
            self.forget({image_id})
            return None
        return record

    def put(self, key: str, image_id: str) -> None:
        self._entries[key] = image_id
        self._save()

    def image_ids(self) -> set[str]:
        """Every image the cache refers to."""
        return set(self._entries.values())

    def forget(self, image_ids: set[str]) -> None:
        """Drop the entries of ``image_ids``."""
        before = len(self._entries)
        self._entries = {k: v for k, v in self._entries.items() if v not in image_ids}
        if len(self._entries) != before:
            self._save()

    def _save(self) -> None:
        tmp = f"{self.path}.tmp"
        with open(tmp, "w") as f:
            json.dump(self._entries, f)
        os.replace(tmp, self.path)
