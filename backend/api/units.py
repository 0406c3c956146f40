"""Docker's units, as its go-units package and Go's ``time.ParseDuration`` define them: human sizes and
durations for display, and Go durations (``90m``, ``1h30m``, ``1.5s``) for ``--since``/``until`` values.
Pure functions, shared by the clients, the server and the engine."""

from __future__ import annotations

import re
from collections.abc import Sequence

_DECIMAL = ("B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB")
_BINARY = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB")
_DURATION = re.compile(r"(?:\d+(?:\.\d+)?(?:h|ms|m|s|us|µs|ns))+")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(h|ms|m|s|us|µs|ns)")
_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}


def _custom_size(size: float, precision: int, base: float, units: Sequence[str]) -> str:
    unit = 0
    while size >= base and unit < len(units) - 1:
        size /= base
        unit += 1
    return f"{size:.{precision}g}{units[unit]}"


def human_size(size: float, precision: int = 4) -> str:
    """go-units ``HumanSizeWithPrecision``: decimal units (``4.26MB`` at precision 3)."""
    return _custom_size(size, precision, 1000.0, _DECIMAL)


def bytes_size(size: float) -> str:
    """go-units ``BytesSize``: binary units (``1.5MiB``)."""
    return _custom_size(size, 4, 1024.0, _BINARY)


def human_duration(seconds: float) -> str:
    """go-units ``HumanDuration``: ``Less than a second``, ``5 seconds``, ``About a minute``, ``3 hours``..."""
    if (whole := int(seconds)) < 1:
        return "Less than a second"
    if whole == 1:
        return "1 second"
    if whole < 60:
        return f"{whole} seconds"
    if (minutes := int(seconds / 60)) == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    if (hours := int(seconds / 3600 + 0.5)) == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(seconds / 3600) // 24 // 365} years"


def go_duration_seconds(text: str) -> float | None:
    """Seconds of a Go duration (``1h30m``, ``1.5s``, ``250ms``), or None if ``text`` is not one."""
    if not _DURATION.fullmatch(text):
        return None
    return sum(float(n) * _SECONDS[u] for n, u in _DURATION_PART.findall(text))
