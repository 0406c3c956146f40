"""What ``docker info``, ``docker version`` and ``docker system df`` report: facts about the host and
totals over the engine's services.

:func:`probe_host` reads the host once (kernel, OS release, CPUs, memory, cgroup version); the
:class:`SystemService` adds the counts the services know. Containers are another service's business:
the composition root hands in a :data:`ContainerCountsFn` (and the server a usage provider), so this
module does not depend on the containers package.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import inspect
import os
import platform
import socket
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from backend.engine.errors import InvalidParameter, NotFound
from backend.engine.events import EventBus
from backend.engine.images.layer_store import chain_ids
from backend.engine.images.service import ImageService, ImageSummary
from backend.version import VERSION

ENGINE_NAME = "Berth"
ENGINE_VERSION = VERSION


@dataclass(frozen=True)
class HostInfo:
    """Facts about the machine the engine runs on."""

    name: str
    kernel_version: str
    operating_system: str
    os_version: str
    os_type: str
    architecture: str
    go_arch: str
    ncpu: int
    mem_total: int
    cgroup_version: str
    python_version: str


@dataclass(frozen=True)
class ContainerCounts:
    """Containers by state, as ``docker info`` shows them."""

    total: int = 0
    running: int = 0
    paused: int = 0
    stopped: int = 0


ContainerCountsFn = Callable[[], "ContainerCounts | Awaitable[ContainerCounts]"]
"""Provider of container counts (the containers service's; sync or async)."""


def _no_containers() -> ContainerCounts:
    return ContainerCounts()


_GO_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le", "s390x": "s390x",
            "riscv64": "riscv64", "i686": "386"}


def _os_release(path: str = "/etc/os-release") -> dict[str, str]:
    out: dict[str, str] = {}
    try:
        with open(path) as f:
            for line in f:
                key, sep, value = line.strip().partition("=")
                if sep:
                    out[key] = value.strip().strip('"')
    except OSError:
        pass
    return out


def _mem_total(path: str = "/proc/meminfo") -> int:
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _ncpu() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def probe_host() -> HostInfo:
    """Read the host's facts (cheap; call once and keep the result)."""
    uname = os.uname()
    release = _os_release()
    cgroup_version = "2" if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else "1"
    return HostInfo(
        name=socket.gethostname(), kernel_version=uname.release,
        operating_system=release.get("PRETTY_NAME", uname.sysname), os_version=release.get("VERSION_ID", ""),
        os_type="linux", architecture=uname.machine, go_arch=_GO_ARCH.get(uname.machine, uname.machine),
        ncpu=_ncpu(), mem_total=_mem_total(), cgroup_version=cgroup_version,
        python_version=platform.python_version(),
    )


@dataclass(frozen=True)
class SystemInfo:
    """``docker info``'s facts that are not constants of the API."""

    host: HostInfo
    containers: ContainerCounts
    images: int
    root_dir: str
    event_listeners: int
    open_fds: int
    tasks: int
    runtimes: Mapping[str, str] = field(default_factory=dict)
    default_runtime: str = "berth-runtime"


@dataclass(frozen=True)
class ImageUsage:
    """One image's disk use: ``summary.size`` is all its layers, ``shared_size`` the part other images
    use too."""

    summary: ImageSummary
    shared_size: int


@dataclass(frozen=True)
class ImageDiskUsage:
    """Images' part of ``docker system df``: the unique layers' total and each image's use (newest first)."""

    layers_size: int
    images: list[ImageUsage]


class SystemService:
    """Totals across services for info and df. ``root_dir`` is the engine's data root."""

    def __init__(self, root_dir: str, images: ImageService, events: EventBus, *,
                 host: HostInfo | None = None, containers: ContainerCountsFn = _no_containers,
                 runtimes: Mapping[str, str] | None = None, default_runtime: str = "berth-runtime") -> None:
        self.root_dir = root_dir
        self.runtimes = dict(runtimes or {"berth-runtime": "berth-runtime"})
        self.default_runtime = default_runtime
        self.images = images
        self.events = events
        self.host = host or probe_host()
        self._containers = containers

    @property
    def engine_id(self) -> str:
        """A stable ID for this engine (host name and data root), in dockerd's ``XXXX:XXXX:...`` form."""
        digest = hashlib.sha256(f"{self.host.name}\0{os.path.realpath(self.root_dir)}".encode()).digest()
        text = base64.b32encode(digest).decode()[:48]
        return ":".join(text[i:i + 4] for i in range(0, 48, 4))

    async def info(self) -> SystemInfo:
        """Host facts plus container and image counts."""
        counts = self._containers()
        if inspect.isawaitable(counts):
            counts = await counts
        try:
            fds = len(os.listdir("/proc/self/fd"))
        except OSError:
            fds = 0
        return SystemInfo(host=self.host, containers=counts, images=len(self.images.list_images()),
                          root_dir=self.root_dir, event_listeners=self.events.subscriber_count,
                          open_fds=fds, tasks=len(asyncio.all_tasks()), runtimes=self.runtimes,
                          default_runtime=self.default_runtime)

    def image_disk_usage(self) -> ImageDiskUsage:
        """Sizes of the images' layers, counting a layer shared by several images once."""
        summaries = self.images.list_images()
        chains_of: dict[str, list[str]] = {}
        users: dict[str, int] = {}
        for summary in summaries:
            try:
                record = self.images.resolve(summary.id)
            except (NotFound, InvalidParameter):
                continue
            chains = chain_ids(record.diff_ids)
            chains_of[summary.id] = chains
            for chain in set(chains):
                users[chain] = users.get(chain, 0) + 1
        sizes: dict[str, int] = {}
        for chain in users:
            try:
                sizes[chain] = self.images.layers.get(chain).size
            except (NotFound, InvalidParameter):
                sizes[chain] = 0
        usage = []
        for summary in summaries:
            chains = chains_of.get(summary.id, [])
            usage.append(ImageUsage(summary, sum(sizes[c] for c in set(chains) if users[c] > 1)))
        return ImageDiskUsage(layers_size=sum(sizes.values()), images=usage)
