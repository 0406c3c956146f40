"""Locate files shipped in the project's ``resources/`` folder (profiles, icons, templates)."""

from __future__ import annotations

from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent / "resources"


def resource_path(*parts: str) -> Path:
    """Return the path of ``resources/<parts...>``.

    Raises FileNotFoundError naming the path when the file is not installed.
    """
    path = _ROOT.joinpath(*parts)
    if not path.exists():
        raise FileNotFoundError(f"resource file not found: {path}")
    return path
