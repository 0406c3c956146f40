"""Image records and the tag index.

An image's ID is the digest of its config blob (kept in the content store). ``imagedb/<hex>.json``
holds what Berth knows about it besides the config (layers, size, repo digests); ``repositories.json``
maps references to IDs (Docker's layout). Both are written atomically (temp file, fsync, rename).

The store loads with corrupt records present: such an image is listed with ``corrupt`` set and can
still be removed; everything else keeps working.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from backend.engine.errors import InvalidParameter, NotFound


@dataclass
class ImageRecord:
    """What the store keeps for one image (its config lives in the content store)."""

    id: str
    diff_ids: list[str]
    size: int
    created: str = ""
    repo_digests: list[str] = field(default_factory=list)
    manifest_digest: str | None = None
    # The stored blob of each layer (as pulled, possibly compressed) and its media type, bottom first.
    layer_blobs: list[str] = field(default_factory=list)
    layer_media_types: list[str] = field(default_factory=list)
    parent: str = ""  # the image this one was built or committed on here ("" for pulled, loaded, imported)
    corrupt: str | None = None


def _write_json(path: str, doc: object) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f)
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, path)


class ImageStore:
    """See the module docstring. Not thread-safe: the image service serialises writes."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.db_dir = os.path.join(root, "imagedb")
        self.tags_path = os.path.join(root, "repositories.json")
        os.makedirs(self.db_dir, mode=0o700, exist_ok=True)
        self.tags: dict[str, str] = self._load_tags()

    def _load_tags(self) -> dict[str, str]:
        try:
            with open(self.tags_path) as f:
                doc: Any = json.load(f)
            tags = {}
            for repo_refs in doc.get("Repositories", {}).values():
                for ref, image_id in repo_refs.items():
                    tags[str(ref)] = str(image_id)
            return tags
        except FileNotFoundError:
            return {}
        except (ValueError, AttributeError, TypeError):
            # A corrupt index loses names, never images: keep the file aside for inspection.
            with contextlib.suppress(OSError):
                os.rename(self.tags_path, self.tags_path + ".corrupt")
            return {}

    def _save_tags(self) -> None:
        repos: dict[str, dict[str, str]] = {}
        for ref, image_id in sorted(self.tags.items()):
            repo = ref.split("@", 1)[0]
            slash = repo.rfind("/")
            colon = repo.rfind(":")
            if colon > slash:
                repo = repo[:colon]
            repos.setdefault(repo, {})[ref] = image_id
        _write_json(self.tags_path, {"Repositories": repos})

    def _path(self, image_id: str) -> str:
        if not image_id.startswith("sha256:") or len(image_id) != 71:
            raise InvalidParameter(f"invalid image id {image_id!r}")
        return os.path.join(self.db_dir, image_id[7:] + ".json")

    def save(self, record: ImageRecord) -> None:
        doc = asdict(record)
        doc.pop("corrupt")
        _write_json(self._path(record.id), doc)

    def get(self, image_id: str) -> ImageRecord:
        """Raises NotFound. A corrupt record comes back with ``corrupt`` set."""
        path = self._path(image_id)
        try:
            with open(path) as f:
                doc = json.load(f)
            return ImageRecord(**doc)
        except FileNotFoundError as exc:
            raise NotFound(f"No such image: {image_id}") from exc
        except (ValueError, TypeError) as exc:
            return ImageRecord(id=image_id, diff_ids=[], size=0, corrupt=f"corrupt image record: {exc}")

    def ids(self) -> Iterator[str]:
        for name in sorted(os.listdir(self.db_dir)):
            if name.endswith(".json") and len(name) == 69:
                yield "sha256:" + name[:-5]

    def records(self) -> list[ImageRecord]:
        return [self.get(i) for i in self.ids()]

    def delete(self, image_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path(image_id))
        stale = [ref for ref, target in self.tags.items() if target == image_id]
        for ref in stale:
            del self.tags[ref]
        if stale:
            self._save_tags()

    def tag(self, ref: str, image_id: str) -> str | None:
        """Point ``ref`` at ``image_id``; returns the image it pointed to before (or None)."""
        previous = self.tags.get(ref)
        self.tags[ref] = image_id
        self._save_tags()
        return previous if previous != image_id else None

    def untag(self, ref: str) -> str:
        """Remove ``ref``; returns the image it pointed to. Raises NotFound."""
        try:
            image_id = self.tags.pop(ref)
        except KeyError as exc:
            raise NotFound(f"No such image: {ref}") from exc
        self._save_tags()
        return image_id

    def refs_of(self, image_id: str) -> list[str]:
        return sorted(ref for ref, target in self.tags.items() if target == image_id)

    def children(self, image_id: str) -> list[str]:
        """The images whose ``parent`` is ``image_id`` (built or committed on it here), sorted."""
        return [record.id for record in self.records() if record.parent == image_id]
