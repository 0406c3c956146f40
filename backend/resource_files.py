"""Locate files shipped in the project's ``resources/`` folder (profiles, icons, templates).

In a source checkout (or an editable install) they are in ``resources/`` beside ``backend/``; an
installed wheel puts them in ``<prefix>/share/berth/resources``.
"""

from __future__ import annotations

import os
import sys

_CANDIDATES = (
    os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "resources"),
    os.path.join(sys.prefix, "share", "berth", "resources"),
)


def resource_path(*parts: str) -> str:
    """Return the path of ``resources/<parts...>``.

    Raises FileNotFoundError naming the path when the file is not installed.
    """
    for root in _CANDIDATES:
        path = os.path.join(root, *parts)
        if os.path.exists(path):
            return path
    raise FileNotFoundError(f"resource file not found: {os.path.join(_CANDIDATES[0], *parts)}")
