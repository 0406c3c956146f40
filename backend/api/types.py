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
from enum import IntEnum
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


@dataclass(frozen=True)
class BuildCachePruneReport:
    """``POST /build/prune``: the removed build-cache images and the bytes reclaimed."""

    caches_deleted: list[str]
    space_reclaimed: int

    @staticmethod
    def from_json(doc: dict[str, Any]) -> BuildCachePruneReport:
        items = doc.get("CachesDeleted") if isinstance(doc.get("CachesDeleted"), list) else []
        assert isinstance(items, list)
        return BuildCachePruneReport([str(i) for i in items], _int(doc, "SpaceReclaimed"))


# -- containers --------------------------------------------------------------------------------------


def _dict(doc: dict[str, Any], key: str) -> dict[str, Any]:
    value = doc.get(key)
    return value if isinstance(value, dict) else {}


@dataclass(frozen=True)
class Port:
    """One published or exposed port of a ``GET /containers/json`` row."""

    private_port: int
    type: str
    ip: str = ""
    public_port: int = 0

    @staticmethod
    def from_json(doc: dict[str, Any]) -> Port:
        return Port(_int(doc, "PrivatePort"), _str(doc, "Type") or "tcp", _str(doc, "IP"), _int(doc, "PublicPort"))


@dataclass(frozen=True)
class ContainerSummary:
    """One ``GET /containers/json`` row. ``names`` keep Docker's leading ``/``; the whole row is in ``raw``."""

    id: str
    names: list[str]
    image: str
    image_id: str
    command: str
    created: int
    state: str
    status: str
    ports: list[Port]
    labels: dict[str, str]
    size_rw: int
    size_root_fs: int
    raw: dict[str, Any]

    @staticmethod
    def from_json(doc: dict[str, Any]) -> ContainerSummary:
        ports = doc.get("Ports") if isinstance(doc.get("Ports"), list) else []
        assert isinstance(ports, list)
        return ContainerSummary(
            _str(doc, "Id"), _strs(doc, "Names"), _str(doc, "Image"), _str(doc, "ImageID"), _str(doc, "Command"),
            _int(doc, "Created"), _str(doc, "State"), _str(doc, "Status"),
            [Port.from_json(p) for p in ports if isinstance(p, dict)], _labels(doc, "Labels"),
            _int(doc, "SizeRw"), _int(doc, "SizeRootFs"), doc)


@dataclass(frozen=True)
class ContainerInspect:
    """``GET /containers/{id}/json`` (the fields clients use; all of it in ``raw``). ``name`` has no ``/``."""

    id: str
    name: str
    image_id: str
    created: str
    state: dict[str, Any]
    config: dict[str, Any]
    host_config: dict[str, Any]
    network_settings: dict[str, Any]
    raw: dict[str, Any]

    @property
    def tty(self) -> bool:
        return self.config.get("Tty") is True

    @property
    def running(self) -> bool:
        return self.state.get("Running") is True

    @staticmethod
    def from_json(doc: dict[str, Any]) -> ContainerInspect:
        return ContainerInspect(_str(doc, "Id"), _str(doc, "Name").lstrip("/"), _str(doc, "Image"),
                                _str(doc, "Created"), _dict(doc, "State"), _dict(doc, "Config"),
                                _dict(doc, "HostConfig"), _dict(doc, "NetworkSettings"), doc)


@dataclass(frozen=True)
class CreatedContainer:
    """``POST /containers/create``'s answer."""

    id: str
    warnings: list[str]

    @staticmethod
    def from_json(doc: dict[str, Any]) -> CreatedContainer:
        return CreatedContainer(_str(doc, "Id"), _strs(doc, "Warnings"))


@dataclass(frozen=True)
class WaitResult:
    """``POST /containers/{id}/wait``'s answer: the exit code and the engine's error text, if any."""

    status_code: int
    error: str = ""

    @staticmethod
    def from_json(doc: dict[str, Any]) -> WaitResult:
        error = doc.get("Error")
        message = _str(error, "Message") if isinstance(error, dict) else ""
        code = doc.get("StatusCode")
        return WaitResult(code if isinstance(code, int) else -1, message)


@dataclass(frozen=True)
class TopResult:
    """``GET /containers/{id}/top``: column titles and one row of strings per process."""

    titles: list[str]
    processes: list[list[str]]

    @staticmethod
    def from_json(doc: dict[str, Any]) -> TopResult:
        rows = doc.get("Processes") if isinstance(doc.get("Processes"), list) else []
        assert isinstance(rows, list)
        return TopResult(_strs(doc, "Titles"), [[str(c) for c in r] for r in rows if isinstance(r, list)])


class ChangeKind(IntEnum):
    """``GET /containers/{id}/changes`` kinds (Docker's numbers)."""

    MODIFIED = 0
    ADDED = 1
    DELETED = 2

    @property
    def letter(self) -> str:
        """``docker diff``'s letter: C, A or D."""
        return "CAD"[self.value]


@dataclass(frozen=True)
class Change:
    """One ``GET /containers/{id}/changes`` row."""

    path: str
    kind: ChangeKind

    @staticmethod
    def from_json(doc: dict[str, Any]) -> Change:
        kind = _int(doc, "Kind")
        return Change(_str(doc, "Path"), ChangeKind(kind) if kind in (0, 1, 2) else ChangeKind.MODIFIED)


@dataclass(frozen=True)
class PathStat:
    """``X-Docker-Container-Path-Stat`` (base64 JSON) of the archive routes. ``mode`` is Go's os.FileMode."""

    name: str
    size: int
    mode: int
    mtime: str
    link_target: str

    GO_MODE_DIR = 1 << 31
    GO_MODE_SYMLINK = 1 << 27

    @property
    def is_dir(self) -> bool:
        return bool(self.mode & self.GO_MODE_DIR)

    @staticmethod
    def from_header(value: str) -> PathStat:
        """Raises ValueError for a header that is not base64 JSON."""
        try:
            doc = json.loads(base64.b64decode(value))
        except (ValueError, TypeError) as exc:
            raise ValueError(f"malformed path stat header: {value[:80]!r}") from exc
        if not isinstance(doc, dict):
            raise ValueError(f"malformed path stat header: {value[:80]!r}")
        return PathStat(_str(doc, "name"), _int(doc, "size"), _int(doc, "mode"), _str(doc, "mtime"),
                        _str(doc, "linkTarget"))


@dataclass(frozen=True)
class ContainerPruneReport:
    """``POST /containers/prune``."""

    deleted: list[str]
    space_reclaimed: int

    @staticmethod
    def from_json(doc: dict[str, Any]) -> ContainerPruneReport:
        return ContainerPruneReport(_strs(doc, "ContainersDeleted"), _int(doc, "SpaceReclaimed"))


@dataclass(frozen=True)
class ExecInspect:
    """``GET /exec/{id}/json``."""

    id: str
    container_id: str
    running: bool
    exit_code: int | None
    pid: int
    raw: dict[str, Any]

    @staticmethod
    def from_json(doc: dict[str, Any]) -> ExecInspect:
        code = doc.get("ExitCode")
        return ExecInspect(_str(doc, "ID"), _str(doc, "ContainerID"), doc.get("Running") is True,
                           code if isinstance(code, int) else None, _int(doc, "Pid"), doc)


@dataclass(frozen=True)
class AuthResult:
    """``POST /auth``'s answer."""

    status: str
    identity_token: str = field(default="", repr=False)

    @staticmethod
    def from_json(doc: dict[str, Any]) -> AuthResult:
        return AuthResult(_str(doc, "Status"), _str(doc, "IdentityToken"))


@dataclass(frozen=True)
class StatsSample:
    """One ``GET /containers/{id}/stats`` document, reduced as ``docker stats`` shows it (the whole
    document in ``raw``). CPU % is over the sample's ``precpu_stats`` (0 on the first sample)."""

    id: str
    name: str
    cpu_percent: float
    memory_usage: int
    memory_limit: int
    net_rx: int
    net_tx: int
    block_read: int
    block_write: int
    pids: int
    raw: dict[str, Any]

    @property
    def memory_percent(self) -> float:
        return self.memory_usage / self.memory_limit * 100 if self.memory_limit else 0.0

    @staticmethod
    def from_json(doc: dict[str, Any]) -> StatsSample:
        cpu, precpu = _dict(doc, "cpu_stats"), _dict(doc, "precpu_stats")
        cpu_delta = _int(_dict(cpu, "cpu_usage"), "total_usage") - _int(_dict(precpu, "cpu_usage"), "total_usage")
        system_delta = _int(cpu, "system_cpu_usage") - _int(precpu, "system_cpu_usage")
        cpus = _int(cpu, "online_cpus") or len(_dict(cpu, "cpu_usage").get("percpu_usage") or []) or 1
        cpu_percent = cpu_delta / system_delta * cpus * 100 if cpu_delta > 0 and system_delta > 0 else 0.0
        memory = _dict(doc, "memory_stats")
        mem_stats = _dict(memory, "stats")
        cache = _int(mem_stats, "total_inactive_file") or _int(mem_stats, "inactive_file")
        usage = max(_int(memory, "usage") - cache, 0)
        networks = [n for n in _dict(doc, "networks").values() if isinstance(n, dict)]
        blkio = _dict(doc, "blkio_stats").get("io_service_bytes_recursive")
        entries = [e for e in blkio if isinstance(e, dict)] if isinstance(blkio, list) else []
        return StatsSample(
            _str(doc, "id"), _str(doc, "name").lstrip("/"), cpu_percent, usage, _int(memory, "limit"),
            sum(_int(n, "rx_bytes") for n in networks), sum(_int(n, "tx_bytes") for n in networks),
            sum(_int(e, "value") for e in entries if _str(e, "op").lower() == "read"),
            sum(_int(e, "value") for e in entries if _str(e, "op").lower() == "write"),
            _int(_dict(doc, "pids_stats"), "current"), doc)


@dataclass(frozen=True)
class Volume:
    """``GET /volumes/{name}`` (and each of ``GET /volumes``); all of it in ``raw``."""

    name: str
    driver: str
    mountpoint: str
    created_at: str
    labels: dict[str, str]
    options: dict[str, str]
    raw: dict[str, Any]

    @staticmethod
    def from_json(doc: dict[str, Any]) -> Volume:
        return Volume(_str(doc, "Name"), _str(doc, "Driver"), _str(doc, "Mountpoint"), _str(doc, "CreatedAt"),
                      _labels(doc, "Labels"), _labels(doc, "Options"), doc)


@dataclass(frozen=True)
class VolumePruneReport:
    """``POST /volumes/prune``."""

    deleted: list[str]
    space_reclaimed: int

    @staticmethod
    def from_json(doc: dict[str, Any]) -> VolumePruneReport:
        return VolumePruneReport(_strs(doc, "VolumesDeleted"), _int(doc, "SpaceReclaimed"))


@dataclass(frozen=True)
class Network:
    """``GET /networks/{id}`` (and each of ``GET /networks``); all of it in ``raw``. ``subnets`` are the
    IPAM configs' ``Subnet`` values; ``containers`` maps a container ID to its endpoint document."""

    id: str
    name: str
    driver: str
    scope: str
    created: str
    internal: bool
    attachable: bool
    enable_ipv6: bool
    subnets: list[str]
    containers: dict[str, dict[str, Any]]
    options: dict[str, str]
    labels: dict[str, str]
    raw: dict[str, Any]

    @staticmethod
    def from_json(doc: dict[str, Any]) -> Network:
        configs = _dict(doc, "IPAM").get("Config")
        subnets = [_str(c, "Subnet") for c in configs if isinstance(c, dict)] if isinstance(configs, list) else []
        members = _dict(doc, "Containers")
        return Network(_str(doc, "Id"), _str(doc, "Name"), _str(doc, "Driver"), _str(doc, "Scope"),
                       _str(doc, "Created"), doc.get("Internal") is True, doc.get("Attachable") is True,
                       doc.get("EnableIPv6") is True, subnets,
                       {str(k): v for k, v in members.items() if isinstance(v, dict)},
                       _labels(doc, "Options"), _labels(doc, "Labels"), doc)


@dataclass(frozen=True)
class NetworkPruneReport:
    """``POST /networks/prune``: the names of the removed networks."""

    deleted: list[str]

    @staticmethod
    def from_json(doc: dict[str, Any]) -> NetworkPruneReport:
        return NetworkPruneReport(_strs(doc, "NetworksDeleted"))
