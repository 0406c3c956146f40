"""Per-container runtime state under ``--root``: one directory per container id.

Layout of ``<root>/<id>/``: ``state.json`` (written atomically: temp file, fsync, rename),
``config.json`` (the validated config as created), ``exec.fifo`` (present while the container is
``created``). The status is derived, never stored: from the init pid and its start time (so a reused
pid is not mistaken for the container), the fifo, and the freezer.
"""

from __future__ import annotations

import enum
import json
import os
import re
import shutil
from dataclasses import asdict, dataclass, field
from typing import Any

from backend.engine.errors import Conflict, InvalidParameter, NotFound

_ID = re.compile(r"^[\w+\-.]+$")
MAX_ID = 1024
OCI_VERSION = "1.0.2"


class Status(enum.Enum):
    """The OCI lifecycle states (plus paused, as runc reports it)."""

    CREATING = "creating"
    CREATED = "created"
    RUNNING = "running"
    PAUSED = "paused"
    STOPPED = "stopped"


@dataclass
class ContainerState:
    """What the runtime remembers about one container."""

    id: str
    pid: int
    pid_start: int
    bundle: str
    rootfs: str
    created: str
    owner: str = ""
    cgroup_version: int = 1
    cgroup_paths: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)


def validate_id(container_id: str) -> str:
    """Return ``container_id`` if it is a safe directory name. Raises InvalidParameter."""
    if not container_id:
        raise InvalidParameter("container id cannot be empty")
    if len(container_id) > MAX_ID:
        raise InvalidParameter(f"invalid container id: longer than {MAX_ID} characters")
    if container_id in (".", "..") or not _ID.match(container_id):
        raise InvalidParameter(f'invalid container id "{container_id}": use letters, digits, _ + - .')
    return container_id


def process_start_time(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat (start time in ticks), or None if the process is gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rfind(b")") + 2:].split()
    if fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])


class StateStore:
    """The ``--root`` directory. Creates it (mode 0700) on first use."""

    def __init__(self, root: str) -> None:
        self.root = root

    def dir(self, container_id: str) -> str:
        return os.path.join(self.root, validate_id(container_id))

    def reserve(self, container_id: str) -> str:
        """Create the container's directory. Raises Conflict if the id is taken."""
        os.makedirs(self.root, mode=0o700, exist_ok=True)
        path = self.dir(container_id)
        try:
            os.mkdir(path, 0o700)
        except FileExistsError as exc:
            raise Conflict(f"container with id {container_id} already exists") from exc
        return path

    def save(self, state: ContainerState) -> None:
        path = os.path.join(self.dir(state.id), "state.json")
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(asdict(state), f)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, path)

    def load(self, container_id: str) -> ContainerState:
        """Raises NotFound if there is no such container."""
        path = os.path.join(self.dir(container_id), "state.json")
        try:
            with open(path) as f:
                raw: dict[str, Any] = json.load(f)
        except FileNotFoundError as exc:
            raise NotFound(f"container {container_id} does not exist") from exc
        except ValueError as exc:
            raise InvalidParameter(f"container {container_id}: state file is corrupt: {exc}") from exc
        return ContainerState(**raw)

    def config_path(self, container_id: str) -> str:
        return os.path.join(self.dir(container_id), "config.json")

    def fifo_path(self, container_id: str) -> str:
        return os.path.join(self.dir(container_id), "exec.fifo")

    def ids(self) -> list[str]:
        try:
            names = sorted(os.listdir(self.root))
        except FileNotFoundError:
            return []
        return [n for n in names if os.path.exists(os.path.join(self.root, n, "state.json"))]

    def remove(self, container_id: str) -> None:
        shutil.rmtree(self.dir(container_id), ignore_errors=True)
