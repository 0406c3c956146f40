"""The Berth machines (VMs, issue 9) as clients see them, driven through the ``berth machine`` CLI.

Only the CLI imports the machine manager (import-linter); clients such as the desktop app run the program
instead: :class:`MachineControl` starts ``berth machine ...`` with :func:`berth_command` and parses what
``ls --format json`` and ``inspect`` print into :class:`MachineInfo`. A non-zero exit raises
:class:`~backend.api.errors.MachineError` with the CLI's one line.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from dataclasses import dataclass, fields
from enum import Enum
from pathlib import Path
from typing import Any

from backend.api.errors import MachineError

DEFAULT_NAME = "default"
DEFAULT_IDLE_TIMEOUT = 300
SHA256_HEX_LENGTH = 64


class MachineState(Enum):
    """Where a machine is in its lifecycle (the ``state`` field)."""

    STOPPED = "stopped"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    ERROR = "error"


@dataclass(frozen=True)
class MachineConfig:
    """What ``init`` and ``set`` decided: resources (MiB, GiB), the base image, the shared host directory
    (None: none), the accelerator asked for (None: per host), the resource saver's idle seconds (0: never) and
    the optional localhost API port (0: none)."""

    cpus: int
    memory_mib: int
    disk_gib: int
    image_url: str
    image_sha256: str
    share: str | None
    accel: str | None
    restrict_network: bool
    idle_timeout: int
    api_port: int


@dataclass(frozen=True)
class MachineInfo:
    """One machine as ``berth machine inspect`` prints it. ``socket`` is the engine's address on the host
    (``unix://.../berth.sock``), ``tcp`` the optional localhost one; ``ports`` the published ports
    (``127.0.0.1:8080/tcp``); ``accel`` the accelerator of the last boot and ``boot_seconds`` its time to
    ready; ``resting`` whether the resource saver holds it; ``error`` why it is in ``error``."""

    name: str
    state: MachineState
    status: str
    config: MachineConfig
    ssh_port: int
    agent_pid: int
    qemu_pid: int
    provisioned: bool
    error: str
    boot_seconds: float
    accel: str
    ports: tuple[str, ...]
    resting: bool
    guest_version: str
    socket: str
    tcp: str
    dir: str

    @staticmethod
    def from_json(doc: object) -> MachineInfo:
        """Parse one object of ``ls --format json`` (or ``inspect``). Raises MachineError naming the first
        field that is missing or of the wrong type."""
        if not isinstance(doc, dict):
            raise MachineError(f"malformed machine document: expected an object, got {type(doc).__name__}")
        where = f"machine {doc.get('name')!r}" if isinstance(doc.get("name"), str) else "machine document"
        config = _field(doc, "config", dict, where)
        state = _field(doc, "state", str, where)
        try:
            parsed_state = MachineState(state)
        except ValueError:
            raise MachineError(f"malformed {where}: state {state!r} is not one of "
                               f"{', '.join(s.value for s in MachineState)}") from None
        ports = _field(doc, "ports", list, where)
        if not all(isinstance(port, str) for port in ports):
            raise MachineError(f"malformed {where}: ports must be strings")
        values: dict[str, Any] = {"state": parsed_state, "ports": tuple(ports),
                                  "config": MachineConfig(**{f.name: _field(config, f.name, _TYPES[f.type],
                                                                            f"{where}'s config")
                                                             for f in fields(MachineConfig)})}
        for f in fields(MachineInfo):
            if f.name not in values:
                values[f.name] = _field(doc, f.name, _TYPES[f.type], where)
        return MachineInfo(**values)

    @property
    def running(self) -> bool:
        return self.state is MachineState.RUNNING


_TYPES: dict[object, type | tuple[type, ...]] = {
    "str": str, "int": int, "bool": bool, "float": (int, float), "str | None": (str, type(None))}


def _field(doc: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in doc:
        raise MachineError(f"malformed {where}: {key!r} is missing")
    value = doc[key]
    wrong_bool = isinstance(value, bool) and kind in (int, (int, float))
    if not isinstance(value, kind) or wrong_bool:
        raise MachineError(f"malformed {where}: {key!r} is {type(value).__name__}, not "
                           f"{' or '.join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))}")
    return float(doc[key]) if kind == (int, float) else doc[key]


def machine_home() -> Path:
    """Where the machines live: ``$BERTH_MACHINE_HOME`` or ``~/.berth/machines`` (as the CLI decides)."""
    return Path(os.environ.get("BERTH_MACHINE_HOME") or Path.home() / ".berth" / "machines")


def berth_command() -> list[str]:
    """The command line that runs the ``berth`` CLI: the ``berth`` program beside this one in a frozen bundle,
    else this interpreter with the source tree's CLI."""
    if getattr(sys, "frozen", False):
        return [str(Path(sys.executable).with_name("berth.exe" if sys.platform == "win32" else "berth"))]
    return [sys.executable, "-c", "from backend.cli.main import console_main; console_main()"]


class MachineControl:
    """Runs ``berth machine`` verbs for the machines under ``home`` (default :func:`machine_home`). Every
    method raises MachineError with the CLI's one line when the command fails (OSError when it cannot run)."""

    def __init__(self, home: Path | None = None) -> None:
        self.home = home or machine_home()

    async def _run(self, *args: str) -> str:
        """Run ``berth machine ARGS`` and return its standard output. The program is killed when the caller is
        cancelled."""
        env = {**os.environ, "BERTH_MACHINE_HOME": str(self.home)}
        if not getattr(sys, "frozen", False):  # the CLI from this source tree, wherever the app was started
            source_root = str(Path(__file__).resolve().parents[2])
            env["PYTHONPATH"] = os.pathsep.join(p for p in (source_root, os.environ.get("PYTHONPATH")) if p)
        proc = await asyncio.create_subprocess_exec(*berth_command(), "machine", *args, env=env,
                                                    stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.PIPE)
        try:
            out, err = await proc.communicate()
        except asyncio.CancelledError:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            raise
        if proc.returncode != 0:
            lines = err.decode(errors="replace").strip().splitlines()
            line = lines[-1] if lines else f"berth machine {args[0]} failed (exit status {proc.returncode})"
            raise MachineError(line.removeprefix("berth: "))
        return out.decode(errors="replace")

    async def ls(self) -> list[MachineInfo]:
        """Every machine, by name."""
        doc = _json(await self._run("ls", "--format", "json"))
        if not isinstance(doc, list):
            raise MachineError("malformed machine list: expected a JSON array")
        return [MachineInfo.from_json(item) for item in doc]

    async def inspect(self, name: str) -> MachineInfo:
        """The machine ``name``."""
        return MachineInfo.from_json(_json(await self._run("inspect", name)))

    async def init(self, name: str, image: str, image_sha256: str, *, cpus: int | None = None,
                   memory_mib: int | None = None, disk_gib: int | None = None, idle_timeout: int | None = None,
                   share: str | None = None, no_share: bool = False, accel: str | None = None,
                   restrict_network: bool = False) -> None:
        """Create a stopped machine from ``image`` (URL or path) whose SHA-256 must be ``image_sha256``; the
        share defaults to the home directory (``no_share``: none). Nothing is created when it fails."""
        args = ["init", name, "--image", image, "--image-sha256", image_sha256,
                *_options(cpus=cpus, memory=memory_mib, disk_size=disk_gib, idle_timeout=idle_timeout, share=share,
                          accel=accel)]
        await self._run(*args, *(["--no-share"] if no_share else []),
                        *(["--restrict-network"] if restrict_network else []))

    async def start(self, name: str, timeout: float = 900.0) -> None:
        """Boot ``name`` and wait until it runs (minutes on a first boot under TCG)."""
        await self._run("start", name, "--timeout", str(timeout))

    async def stop(self, name: str) -> None:
        """Power ``name`` down."""
        await self._run("stop", name)

    async def restart(self, name: str) -> None:
        await self._run("restart", name)

    async def rm(self, name: str) -> None:
        """Remove ``name`` (stopped first if it runs) and its disk."""
        await self._run("rm", "--force", name)

    async def set(self, name: str, *, cpus: int | None = None, memory_mib: int | None = None,
                  disk_gib: int | None = None, idle_timeout: int | None = None, api_port: int | None = None) -> None:
        """Change what is given: resources and the API port of a stopped machine (the disk only grows), the
        idle timeout at any time."""
        await self._run("set", name, *_options(cpus=cpus, memory=memory_mib, disk_size=disk_gib,
                                               idle_timeout=idle_timeout, api_port=api_port))

    async def logs(self, name: str) -> str:
        """The serial console of the current (or last) boot."""
        return await self._run("logs", name)


def _options(**values: object) -> list[str]:
    """``--flag value`` for every value that is not None (underscores become dashes)."""
    return [item for key, value in values.items() if value is not None
            for item in (f"--{key.replace('_', '-')}", str(value))]


def _json(text: str) -> object:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise MachineError(f"berth machine printed what is not JSON: {exc}") from None
