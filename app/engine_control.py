"""Starting, stopping and restarting the engine in native mode (Qt-free).

When the ``berthd`` systemd unit is installed the engine is managed with ``systemctl`` (through ``pkexec``
when not root, which asks for the password in a desktop prompt). Without the unit (or without pkexec) there is
nothing the app can start, and :func:`control_engine` says what to run instead.
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
    """The command that carries out ``command``. Raises EngineControlError when the unit is not installed, or
    when not root and pkexec is missing."""
    if not unit_installed():
        raise EngineControlError(f"the {UNIT} unit is not installed: start berthd yourself (sudo berthd)")
    argv = ["systemctl", command.value, UNIT]
    if os.geteuid() == 0:
        return argv
    if shutil.which("pkexec") is None:
        raise EngineControlError(f"pkexec is not installed, so the app cannot ask for your password: run "
                                 f"sudo systemctl {command.value} {UNIT}")
    return ["pkexec", *argv]


def failure_message(argv: list[str], returncode: int, stderr: str) -> str:
    """What a failed ``argv`` means in plain words: pkexec's prompt dismissed (126) or refused (127), else the
    command's last line of stderr."""
    if argv[0] == "pkexec" and returncode == 126:
        return "the password prompt was dismissed: the engine was not changed"
    if argv[0] == "pkexec" and returncode == 127:
        return f"not authorized to control {UNIT}: ask an administrator, or run sudo {' '.join(argv[1:])}"
    lines = stderr.strip().splitlines()
    return lines[-1] if lines else f"{' '.join(argv)} failed (exit status {returncode})"


async def control_engine(command: EngineCommand) -> None:
    """Run ``command`` and wait for it. Raises EngineControlError saying why when it fails."""
    argv = command_line(command)
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.DEVNULL,
                                                stderr=asyncio.subprocess.PIPE)
    _, err = await proc.communicate()
    if proc.returncode != 0:
        raise EngineControlError(failure_message(argv, proc.returncode or 0, err.decode(errors="replace")))
