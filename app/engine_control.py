"""Starting, stopping and restarting the engine in native mode (Qt-free).

When the ``berthd`` systemd unit is installed the engine is managed with ``systemctl`` (through ``pkexec``
when not root, which asks for the password in a desktop prompt). Without the unit there is nothing the app
can start, and :func:`control_engine` says so.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from enum import Enum

UNIT = "berthd.service"
UNIT_DIRS = ("/etc/systemd/system", "/lib/systemd/system", "/usr/lib/systemd/system")


class EngineCommand(Enum):
    START = "start"
    STOP = "stop"
    RESTART = "restart"


class EngineControlError(Exception):
    """The engine could not be controlled; the message says why, in plain words."""


def unit_installed() -> bool:
    """Whether the berthd systemd unit is installed (and systemctl exists)."""
    return shutil.which("systemctl") is not None and any(os.path.exists(f"{d}/{UNIT}") for d in UNIT_DIRS)


def command_line(command: EngineCommand) -> list[str]:
    """The command that carries out ``command``. Raises EngineControlError when the unit is not installed."""
    if not unit_installed():
        raise EngineControlError(f"the {UNIT} unit is not installed: start berthd yourself (sudo berthd)")
    argv = ["systemctl", command.value, UNIT]
    return argv if os.geteuid() == 0 else ["pkexec", *argv]


async def control_engine(command: EngineCommand) -> None:
    """Run ``command`` and wait for it. Raises EngineControlError with systemctl's message when it fails."""
    proc = await asyncio.create_subprocess_exec(*command_line(command), stdout=asyncio.subprocess.DEVNULL,
                                                stderr=asyncio.subprocess.PIPE)
    _, err = await proc.communicate()
    if proc.returncode != 0:
        message = err.decode(errors="replace").strip().splitlines()
        raise EngineControlError(message[-1] if message else f"systemctl {command.value} failed")
