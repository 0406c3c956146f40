"""Berth's version, in one place: the package metadata, every command's ``--version`` and the About dialog.

A packaged build may add ``backend/_build_stamp.py`` (written by packaging/build-bundle.sh) with the commit
it was built from; :func:`build_stamp` returns it, or "" for a source checkout.
"""

from __future__ import annotations

import platform

VERSION = "0.1.0"
API_VERSION = "1.41"


def build_stamp() -> str:
    """The commit a packaged build was made from ("" when running from source)."""
    try:
        from backend._build_stamp import COMMIT  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return ""
    return str(COMMIT)


def platform_name() -> str:
    """``linux/amd64``-style name of the running platform (Docker's OS/architecture words)."""
    machine = platform.machine().lower()
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(machine, machine)
    return f"{platform.system().lower()}/{arch}"
