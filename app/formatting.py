"""Qt-free wording for the desktop app: container states in words and colours, ports, sizes, ages, errors.

Everything here is pure (no Qt, no I/O) so models, views and the tray say things the same way.
"""

from __future__ import annotations

import datetime
import errno
import re
import time
from enum import Enum

from backend.api.errors import APIError, EngineUnreachable, ForbiddenError
from backend.api.types import Port
from backend.api.units import human_duration, human_size

COMPOSE_PROJECT_LABEL = "com.docker.compose.project"
COMPOSE_SERVICE_LABEL = "com.docker.compose.service"

_EXIT_CODE = re.compile(r"^Exited \((-?\d+)\)")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[()][0-9A-B]|\x1b[=>]")


class StateColour(Enum):
    """The status dot colours of UI.md."""

    GREEN = "#2e9e44"
    BLUE = "#2f7ed8"
    AMBER = "#d99a00"
    GREY = "#8a8f98"
    RED = "#d23c3c"


def exit_code(status: str) -> int | None:
    """The exit code in a Docker status line such as ``Exited (137) 2 minutes ago``, None if there is none."""
    match = _EXIT_CODE.match(status)
    return int(match.group(1)) if match else None


def state_words(state: str, status: str) -> str:
    """A container's state in words: ``running``, ``healthy``, ``exited (1)``, ``paused``..."""
    lowered = status.lower()
    if state == "running":
        for health in ("unhealthy", "healthy", "health: starting"):
            if f"({health})" in lowered:
                return health.replace("health: ", "")
        return "running"
    if state == "exited":
        code = exit_code(status)
        return f"exited ({code})" if code is not None else "exited"
    return state or "unknown"


def state_colour(state: str, status: str) -> StateColour:
    """The dot colour for a container: green running, blue starting/restarting, amber paused or unhealthy,
    grey exited 0 or created, red exited non-zero or dead."""
    words = state_words(state, status)
    if words == "unhealthy" or state == "paused":
        return StateColour.AMBER
    if state in ("restarting", "removing") or words == "starting":
        return StateColour.BLUE
    if state == "running":
        return StateColour.GREEN
    if state == "dead" or (state == "exited" and exit_code(status) not in (None, 0)):
        return StateColour.RED
    return StateColour.GREY


def port_chips(ports: list[Port]) -> list[str]:
    """Published ports as ``8080→80`` (``80/udp`` when not TCP); unpublished ones are left out; no duplicates
    (IPv4 and IPv6 bindings of one port give one chip)."""
    chips: list[str] = []
    for port in sorted(ports, key=lambda p: (p.public_port, p.private_port)):
        if not port.public_port:
            continue
        suffix = "" if port.type in ("", "tcp") else f"/{port.type}"
        chip = f"{port.public_port}→{port.private_port}{suffix}"
        if chip not in chips:
            chips.append(chip)
    return chips


def first_http_port(ports: list[Port]) -> int | None:
    """The first published TCP host port, for "Open in browser"; None if there is none."""
    published = sorted(p.public_port for p in ports if p.public_port and p.type in ("", "tcp"))
    return published[0] if published else None


def age(created: float, now: float | None = None) -> str:
    """``5 minutes ago`` for a Unix time."""
    return f"{human_duration(max(0.0, (now or time.time()) - created))} ago"


def size(value: int) -> str:
    """Docker's human size: ``4.26MB``."""
    return human_size(value)


def byte_rate(value: float) -> str:
    """A rate in bytes per second: ``1.2MB/s``."""
    return f"{human_size(value, 3)}/s"


def parse_timestamp(text: str) -> float | None:
    """The Unix time of an RFC 3339 timestamp as the engine writes them (nanoseconds allowed), None for an
    empty, zero (``0001-01-01T00:00:00Z``) or malformed one."""
    match = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", text.strip())
    if not match or match.group(1).startswith("0001-"):
        return None
    zone = "+00:00" if match.group(3) == "Z" else match.group(3)
    try:
        whole = datetime.datetime.fromisoformat(match.group(1) + zone).timestamp()
    except ValueError:
        return None
    return whole + float(f"0.{match.group(2) or 0}")


def uptime(started_at: str, now: float | None = None) -> str:
    """``up 5 minutes`` for a container started at the RFC 3339 time ``started_at`` ("" if unknown)."""
    started = parse_timestamp(started_at)
    if started is None:
        return ""
    return f"up {human_duration(max(0.0, (now or time.time()) - started)).lower()}"


def short_id(ident: str) -> str:
    """The 12-character ID Docker shows (without ``sha256:``)."""
    return ident.removeprefix("sha256:")[:12]


def strip_ansi(text: str) -> str:
    """``text`` without ANSI escape sequences."""
    return _ANSI.sub("", text)


def describe_error(exc: BaseException) -> str:
    """A one-line message for an error the engine or the connection raised, with the fix where it helps.

    Never a traceback: unknown exceptions give their class name and text."""
    cause = exc.__cause__
    if isinstance(exc, EngineUnreachable):
        if isinstance(cause, PermissionError) or (isinstance(cause, OSError) and cause.errno == errno.EACCES):
            return (f"Permission denied on the engine's socket ({exc.message}) — add yourself to the berth group: "
                    "sudo usermod -aG berth $USER, then log in again")
        return f"The engine is not running: {exc.message}"
    if isinstance(exc, ForbiddenError):
        return f"Not allowed: {exc.message}"
    if isinstance(exc, APIError):
        return exc.message[:1].upper() + exc.message[1:] if exc.message else type(exc).__name__
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
