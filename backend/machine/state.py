"""Per-machine state on disk: ``<home>/<name>/machine.json`` (home: ``$BERTH_MACHINE_HOME`` or
``~/.berth/machines``), written atomically (temp file, fsync, rename).

A machine's lifecycle is :class:`MachineState` with the transitions in :data:`TRANSITIONS`; every change goes
through :meth:`MachineStore.transition`, which refuses the others.
"""

from __future__ import annotations

import enum
import json
import os
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from backend.machine.errors import MachineError, MachineNotFound

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
DEFAULT_NAME = "default"
DEFAULT_IDLE_TIMEOUT = 300
"""Seconds (Docker Desktop's resource saver also waits five minutes)."""


class MachineState(enum.Enum):
    """Where a machine is in its lifecycle."""

    STOPPED = "stopped"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    ERROR = "error"


TRANSITIONS: dict[MachineState, frozenset[MachineState]] = {
    MachineState.STOPPED: frozenset({MachineState.STARTING}),
    MachineState.STARTING: frozenset({MachineState.RUNNING, MachineState.STOPPING, MachineState.ERROR,
                                      MachineState.STOPPED}),
    MachineState.RUNNING: frozenset({MachineState.STOPPING, MachineState.ERROR, MachineState.STOPPED}),
    MachineState.STOPPING: frozenset({MachineState.STOPPED, MachineState.ERROR}),
    MachineState.ERROR: frozenset({MachineState.STARTING, MachineState.STOPPED}),
}


@dataclass(frozen=True)
class MachineConfig:
    """What ``init`` and ``set`` decide. ``share`` is the host directory mounted at the same path in the guest
    (None: no share); ``accel`` None chooses per host; ``restrict_network`` cuts the guest off from everything
    but its forwarded ports (QEMU's user-mode ``restrict=on``); ``idle_timeout`` is the resource saver's
    seconds without running containers and API requests before the VM is paused (0: never); ``api_port``, when
    not 0, also serves the guest API on ``127.0.0.1:<api_port>`` (Windows' clients; unauthenticated, like
    Docker Desktop's "expose daemon on tcp://localhost:2375")."""

    cpus: int = 2
    memory_mib: int = 2048
    disk_gib: int = 20
    image_url: str = ""
    image_sha256: str = ""
    share: str | None = None
    accel: str | None = None
    restrict_network: bool = False
    idle_timeout: int = DEFAULT_IDLE_TIMEOUT
    api_port: int = 0


@dataclass(frozen=True)
class MachineRecord:
    """One machine as persisted: its config, state, host-side ports and processes, and the last error."""

    name: str
    config: MachineConfig
    state: MachineState = MachineState.STOPPED
    ssh_port: int = 0
    agent_pid: int = 0
    qemu_pid: int = 0
    provisioned: bool = False
    error: str = ""
    boot_seconds: float = 0.0
    accel: str = ""
    """The accelerator of the current (or last) boot."""
    ports: list[str] = field(default_factory=list)
    qmp_port: int = 0
    """QMP's TCP port on 127.0.0.1 where QEMU cannot use a unix socket (Windows); 0: ``qmp.sock``."""
    resting: bool = False
    """The resource saver paused the running VM; the next API request or ``ssh`` resumes it."""
    guest_version: str = ""
    """The build of berthd installed in the guest (the wheels' directory name); another build reinstalls."""

    @property
    def status(self) -> str:
        """The state as shown to users: ``running (resting)`` while the resource saver holds the VM."""
        return f"{self.state.value} (resting)" if self.resting and self.state is MachineState.RUNNING else \
            self.state.value

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["state"] = self.state.value
        return doc

    @staticmethod
    def from_json(doc: dict[str, Any]) -> MachineRecord:
        return MachineRecord(**{**doc, "config": MachineConfig(**doc["config"]),
                                "state": MachineState(doc["state"])})


def machine_home(env: dict[str, str] | None = None) -> Path:
    """``$BERTH_MACHINE_HOME`` or ``~/.berth/machines``."""
    env = dict(os.environ) if env is None else env
    return Path(env.get("BERTH_MACHINE_HOME") or Path.home() / ".berth" / "machines")


class MachineStore:
    """The machines under one home directory. Raises MachineNotFound / MachineError."""

    def __init__(self, home: Path) -> None:
        self.home = home

    def dir(self, name: str) -> Path:
        """The machine's directory. Raises MachineError for a name that is not ``[a-z0-9][a-z0-9_.-]*``."""
        if not NAME_RE.match(name):
            raise MachineError(f"invalid machine name {name!r}: use lower-case letters, digits, '_', '.', '-'")
        return self.home / name

    def names(self) -> list[str]:
        if not self.home.is_dir():
            return []
        return sorted(p.name for p in self.home.iterdir() if (p / "machine.json").is_file())

    def load(self, name: str) -> MachineRecord:
        path = self.dir(name) / "machine.json"
        try:
            return MachineRecord.from_json(json.loads(path.read_text()))
        except FileNotFoundError:
            raise MachineNotFound(f"no such machine: {name}") from None
        except (ValueError, TypeError, KeyError) as exc:
            raise MachineError(f"{path} is damaged: {exc}") from exc

    def save(self, record: MachineRecord) -> None:
        directory = self.dir(record.name)
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = directory / "machine.json.tmp"
        with open(tmp, "w") as f:
            json.dump(record.to_json(), f, indent=2)
            f.flush()
            os.fsync(f.fileno())
        tmp.rename(directory / "machine.json")

    def transition(self, name: str, to: MachineState, **changes: Any) -> MachineRecord:
        """Move ``name`` to state ``to`` (and apply ``changes``); saved. Raises MachineError for a transition
        the lifecycle does not have."""
        record = self.load(name)
        if to is not record.state and to not in TRANSITIONS[record.state]:
            raise MachineError(f"machine {name} is {record.state.value}: cannot become {to.value}")
        record = replace(record, state=to, **changes)
        self.save(record)
        return record

    def update(self, name: str, **changes: Any) -> MachineRecord:
        record = replace(self.load(name), **changes)
        self.save(record)
        return record


@dataclass(frozen=True)
class MachineFiles:
    """Where a machine keeps its files (all inside its directory)."""

    dir: Path

    @property
    def disk(self) -> Path:
        return self.dir / "disk.qcow2"

    @property
    def seed(self) -> Path:
        return self.dir / "seed.iso"

    @property
    def user_key(self) -> Path:
        return self.dir / "id_ed25519"

    @property
    def host_key(self) -> Path:
        """The guest's pinned SSH host key (public, OpenSSH line)."""
        return self.dir / "host_key.pub"

    @property
    def serial_log(self) -> Path:
        return self.dir / "serial.log"

    @property
    def agent_log(self) -> Path:
        return self.dir / "agent.log"

    @property
    def ready_socket(self) -> Path:
        return self.dir / "ready.sock"

    @property
    def qmp_socket(self) -> Path:
        return self.dir / "qmp.sock"

    @property
    def api_socket(self) -> Path:
        """The guest engine's API on the host."""
        return self.dir / "berth.sock"


def qmp_address(record: MachineRecord, files: MachineFiles) -> Path | tuple[str, int]:
    """Where the running machine's QEMU answers QMP."""
    return ("127.0.0.1", record.qmp_port) if record.qmp_port else files.qmp_socket


def engine_address(record: MachineRecord, files: MachineFiles, unix: bool) -> str:
    """The machine's engine for clients: the unix socket, or ``tcp://127.0.0.1:<api_port>`` on a host without
    unix sockets (``unix`` False: Windows)."""
    return f"unix://{files.api_socket}" if unix else f"tcp://127.0.0.1:{record.config.api_port}"
