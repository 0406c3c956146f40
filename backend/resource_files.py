"""Locate files shipped in the project's ``resources/`` folder (profiles, icons, templates)."""

from __future__ import annotations

import os

_ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "resources")


def resource_path(*parts: str) -> str:
    """Return the path of ``resources/<parts...>``.

    Raises FileNotFoundError naming the path when the file is not installed.
    """
    path = os.path.join(_ROOT, *parts)
    if not os.path.exists(path):
        raise FileNotFoundError(f"resource file not found: {path}")
    return path
