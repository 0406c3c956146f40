"""Container records on disk: ``<root>/<id>/config.v2.json``, written atomically.

The store holds what the engine knows about each container (its request, image, name and state) and
keeps the name index. It loads with a corrupt record present: that container is reported ``dead`` with
the error, and can still be removed.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from backend.engine.containers.create_request import validate_name
from backend.engine.containers.state import ContainerState, ContainerStatus
from backend.engine.errors import Conflict, InvalidParameter, NotFound
from backend.engine.images.tarsafe import remove_tree
from backend.engine.runtime.monitor import write_json_atomic

_ADJECTIVES = ("brave", "calm", "eager", "fond", "happy", "jolly", "keen", "lucid", "merry", "nifty", "quirky",
               "sharp", "tender", "vivid", "witty", "zen")
_NOUNS = ("albatross", "beacon", "capstan", "dinghy", "estuary", "ferry", "galley", "harbor", "jetty", "keel",
          "lighthouse", "mooring", "pier", "quay", "rudder", "schooner", "tide", "wharf")


@dataclass
class ContainerRecord:
    """One container as the engine keeps it."""

    id: str
    name: str
    created: str
    image: str
    image_id: str
    request: dict[str, Any]
    state: ContainerState = field(default_factory=ContainerState)
    args: list[str] = field(default_factory=list)
    corrupt: str | None = None

    def has_label(self, want: str) -> bool:
        """Whether the container has label ``key`` (any value) or ``key=value`` (dockerd's ``label`` filter)."""
        key, sep, value = want.partition("=")
        labels = self.request.get("Labels") or {}
        return isinstance(labels, dict) and key in labels and (not sep or labels[key] == value)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "created": self.created, "image": self.image,
                "image_id": self.image_id, "request": self.request, "state": self.state.to_json(),
                "args": self.args}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> ContainerRecord:
        return cls(id=str(doc["id"]), name=str(doc["name"]), created=str(doc["created"]), image=str(doc["image"]),
                   image_id=str(doc["image_id"]), request=dict(doc["request"]),
                   state=ContainerState.from_json(doc["state"]), args=[str(a) for a in doc.get("args", [])])


def _mounted_under(path: str) -> bool:
    prefix = os.path.realpath(path) + "/"
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4].encode().decode("unicode_escape")
            if point.startswith(prefix) or point == prefix[:-1]:
                return True
    return False


def new_id() -> str:
    return secrets.token_hex(32)


def random_name() -> str:
    return f"{secrets.choice(_ADJECTIVES)}_{secrets.choice(_NOUNS)}"


class ContainerStore:
    """See the module docstring. Not thread-safe: the container service serialises writes."""

    def __init__(self, root: str) -> None:
        self.root = root
        os.makedirs(root, mode=0o700, exist_ok=True)
        self.records: dict[str, ContainerRecord] = {}
        for cid in sorted(os.listdir(root)):
            if len(cid) == 64 and not cid.startswith("."):
                self.records[cid] = self._load(cid)

    def dir(self, container_id: str) -> str:
        return os.path.join(self.root, container_id)

    def _load(self, container_id: str) -> ContainerRecord:
        path = os.path.join(self.dir(container_id), "config.v2.json")
        try:
            with open(path) as f:
                return ContainerRecord.from_json(json.load(f))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            return ContainerRecord(id=container_id, name=f"corrupt_{container_id[:12]}", created="", image="",
                                   image_id="", request={}, state=ContainerState(status=ContainerStatus.DEAD,
                                                                                 error=f"corrupt record: {exc}"),
                                   corrupt=str(exc))

    def save(self, record: ContainerRecord) -> None:
        os.makedirs(self.dir(record.id), mode=0o700, exist_ok=True)
        write_json_atomic(os.path.join(self.dir(record.id), "config.v2.json"), record.to_json(), durable=True)
        self.records[record.id] = record

    def reserve_name(self, name: str | None) -> str:
        """A free name: ``name`` (validated) or a random one. Raises Conflict if taken."""
        if name is None:
            for _ in range(100):
                candidate = random_name()
                if not self._name_taken(candidate):
                    return candidate
            return f"{random_name()}_{secrets.token_hex(3)}"
        name = validate_name(name)
        owner = self._name_taken(name)
        if owner:
            raise Conflict(f'Conflict. The container name "/{name}" is already in use by container "{owner}". '
                           "You have to remove (or rename) that container to be able to reuse that name.")
        return name

    def _name_taken(self, name: str) -> str | None:
        return next((r.id for r in self.records.values() if r.name == name), None)

    def get(self, ref: str) -> ContainerRecord:
        """By full ID, name (with or without ``/``) or unique ID prefix. Raises NotFound / InvalidParameter."""
        if ref in self.records:
            return self.records[ref]
        name = ref.lstrip("/")
        by_name = self._name_taken(name)
        if by_name:
            return self.records[by_name]
        if ref and all(c in "0123456789abcdef" for c in ref):
            matches = [cid for cid in self.records if cid.startswith(ref)]
            if len(matches) == 1:
                return self.records[matches[0]]
            if len(matches) > 1:
                raise InvalidParameter(f"multiple IDs found with provided prefix: {ref}")
        raise NotFound(f"No such container: {ref}")

    def rename(self, record: ContainerRecord, new_name: str) -> None:
        name = self.reserve_name(new_name)
        record.name = name
        self.save(record)

    def remove(self, container_id: str) -> None:
        """Forget the container and delete its directory. Raises Conflict while anything is still
        mounted under it (deleting through a mount would destroy image layers)."""
        path = self.dir(container_id)
        if _mounted_under(path):
            raise Conflict(f"container {container_id[:12]}: its filesystem is still mounted")
        self.records.pop(container_id, None)
        if os.path.exists(path):
            doomed = os.path.join(self.root, f".removing-{container_id}-{secrets.token_hex(4)}")
            os.rename(path, doomed)
            with contextlib.suppress(OSError):
                remove_tree(doomed)  # iterative: a container may leave a tree deeper than Python's recursion

    def recover(self) -> None:
        """Finish removals a crash interrupted."""
        for name in os.listdir(self.root):
            if name.startswith(".removing-"):
                with contextlib.suppress(OSError):
                    remove_tree(os.path.join(self.root, name))

    def __iter__(self) -> Iterator[ContainerRecord]:
        return iter(list(self.records.values()))
