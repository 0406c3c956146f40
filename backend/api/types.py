"""Wire types of the Docker Engine API as the client returns them: dataclasses built from the JSON.

Each ``from_json`` is lenient the way Docker's clients are (missing keys take their zero value,
``null`` lists become empty), so the client works against dockerd as well as Berth. Where a document
is large and open-ended (inspect, info, version), the dataclass names the fields clients use and keeps
the whole document in ``raw``.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any


def _str(doc: dict[str, Any], key: str) -> str:
    value = doc.get(key)
    return value if isinstance(value, str) else ""


def _int(doc: dict[str, Any], key: str) -> int:
    value = doc.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _strs(doc: dict[str, Any], key: str) -> list[str]:
    value = doc.get(key)
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _labels(doc: dict[str, Any], key: str) -> dict[str, str]:
    value = doc.get(key)
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


@dataclass(frozen=True)
class RegistryAuth:
    """Credentials for one registry, sent as ``X-Registry-Auth`` (base64url JSON)."""

    username: str = ""
    password: str = field(default="", repr=False)
    serveraddress: str = ""
    identitytoken: str = field(default="", repr=False)

    def header(self) -> str:
        doc = {k: v for k, v in (("username", self.username), ("password", self.password),
                                 ("serveraddress", self.serveraddress), ("identitytoken", self.identitytoken)) if v}
        return base64.urlsafe_b64encode(json.dumps(doc).encode()).decode()


EMPTY_AUTH_HEADER = "e30="
"""``{}`` in base64, what the docker CLI sends when it has no credentials."""


@dataclass(frozen=True)
class Ping:
    """``/_ping``'s headers."""

    api_version: str
    os_type: str
    experimental: bool


@dataclass(frozen=True)
class Version:
    """``GET /version``."""

    version: str
    api_version: str
    min_api_version: str
    os: str
    arch: str
    kernel_version: str
    raw: dict[str, Any]

    @staticmethod
    def from_json(doc: dict[str, Any]) -> Version:
        return Version(_str(doc, "Version"), _str(doc, "ApiVersion"), _str(doc, "MinAPIVersion"), _str(doc, "Os"),
                       _str(doc, "Arch"), _str(doc, "KernelVersion"), doc)


@dataclass(frozen=True)
class SystemInfo:
    """``GET /info`` (the fields clients show; all of it in ``raw``)."""

    id: str
    name: str
    containers: int
    containers_running: int
    containers_paused: int
    containers_stopped: int
    images: int
    driver: str
    docker_root_dir: str
    kernel_version: str
    operating_system: str
    os_type: str
    architecture: str
    ncpu: int
    mem_total: int
    server_version: str
    cgroup_version: str
    raw: dict[str, Any]

    @staticmethod
    def from_json(doc: dict[str, Any]) -> SystemInfo:
        return SystemInfo(
            _str(doc, "ID"), _str(doc, "Name"), _int(doc, "Containers"), _int(doc, "ContainersRunning"),
            _int(doc, "ContainersPaused"), _int(doc, "ContainersStopped"), _int(doc, "Images"), _str(doc, "Driver"),
            _str(doc, "DockerRootDir"), _str(doc, "KernelVersion"), _str(doc, "OperatingSystem"), _str(doc, "OSType"),
            _str(doc, "Architecture"), _int(doc, "NCPU"), _int(doc, "MemTotal"), _str(doc, "ServerVersion"),
            _str(doc, "CgroupVersion"), doc)


@dataclass(frozen=True)
class EventActor:
    id: str
    attributes: dict[str, str]


@dataclass(frozen=True)
class Event:
    """One ``/events`` message."""

    type: str
    action: str
    actor: EventActor
    scope: str
    time: int
    time_nano: int

    @staticmethod
    def from_json(doc: dict[str, Any]) -> Event:
        actor = doc.get("Actor") if isinstance(doc.get("Actor"), dict) else {}
        assert isinstance(actor, dict)
        return Event(_str(doc, "Type"), _str(doc, "Action"),
                     EventActor(_str(actor, "ID"), _labels(actor, "Attributes")),
                     _str(doc, "scope"), _int(doc, "time"), _int(doc, "timeNano"))


@dataclass(frozen=True)
class ImageSummary:
    """One ``GET /images/json`` row. ``<none>:<none>`` placeholders are dropped from the lists."""

    id: str
    repo_tags: list[str]
    repo_digests: list[str]
    created: int
    size: int
    labels: dict[str, str]
    containers: int

    @staticmethod
    def from_json(doc: dict[str, Any]) -> ImageSummary:
        return ImageSummary(
            _str(doc, "Id"), [t for t in _strs(doc, "RepoTags") if t != "<none>:<none>"],
            [d for d in _strs(doc, "RepoDigests") if d != "<none>@<none>"], _int(doc, "Created"), _int(doc, "Size"),
            _labels(doc, "Labels"), doc.get("Containers", -1) if isinstance(doc.get("Containers"), int) else -1)


@dataclass(frozen=True)
class ImageInspect:
    """``GET /images/{name}/json`` (the fields clients use; all of it in ``raw``)."""

    id: str
    repo_tags: list[str]
    repo_digests: list[str]
    created: str
    size: int
    architecture: str
    os: str
    config: dict[str, Any]
    layers: list[str]
    raw: dict[str, Any]

    @staticmethod
    def from_json(doc: dict[str, Any]) -> ImageInspect:
        rootfs = doc.get("RootFS") if isinstance(doc.get("RootFS"), dict) else {}
        assert isinstance(rootfs, dict)
        config = doc.get("Config")
        return ImageInspect(_str(doc, "Id"), _strs(doc, "RepoTags"), _strs(doc, "RepoDigests"), _str(doc, "Created"),
                            _int(doc, "Size"), _str(doc, "Architecture"), _str(doc, "Os"),
                            config if isinstance(config, dict) else {}, _strs(rootfs, "Layers"), doc)


@dataclass(frozen=True)
class HistoryItem:
    """One ``GET /images/{name}/history`` row."""

    id: str
    created: int
    created_by: str
    tags: list[str]
    size: int
    comment: str

    @staticmethod
    def from_json(doc: dict[str, Any]) -> HistoryItem:
        return HistoryItem(_str(doc, "Id"), _int(doc, "Created"), _str(doc, "CreatedBy"), _strs(doc, "Tags"),
                           _int(doc, "Size"), _str(doc, "Comment"))


@dataclass(frozen=True)
class SearchResult:
    """One ``GET /images/search`` row."""

    name: str
    description: str
    star_count: int
    is_official: bool
    is_automated: bool

    @staticmethod
    def from_json(doc: dict[str, Any]) -> SearchResult:
        return SearchResult(_str(doc, "name"), _str(doc, "description"), _int(doc, "star_count"),
                            doc.get("is_official") is True, doc.get("is_automated") is True)


@dataclass(frozen=True)
class DeleteItem:
    """One line of ``DELETE /images/{name}``'s report: a name untagged or an image ID deleted."""

    untagged: str = ""
    deleted: str = ""

    @staticmethod
    def from_json(doc: dict[str, Any]) -> DeleteItem:
        return DeleteItem(_str(doc, "Untagged"), _str(doc, "Deleted"))


@dataclass(frozen=True)
class PruneReport:
    """``POST /images/prune``."""

    deleted: list[DeleteItem]
    space_reclaimed: int

    @staticmethod
    def from_json(doc: dict[str, Any]) -> PruneReport:
        items = doc.get("ImagesDeleted") if isinstance(doc.get("ImagesDeleted"), list) else []
        assert isinstance(items, list)
        return PruneReport([DeleteItem.from_json(i) for i in items if isinstance(i, dict)],
                           _int(doc, "SpaceReclaimed"))
