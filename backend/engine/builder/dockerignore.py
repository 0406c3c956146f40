""".dockerignore patterns with Docker's semantics: the matcher is ``backend.api.dockerignore`` (the berth CLI
filters the contexts it sends with the same code); here its errors are the engine's ``InvalidParameter``.
"""

from __future__ import annotations

from backend.api import dockerignore as _matcher
from backend.api.dockerignore import Pattern, clean_path, is_excluded, must_walk_dir
from backend.engine.errors import InvalidParameter

__all__ = ["DockerignoreError", "Pattern", "clean_path", "is_excluded", "must_walk_dir", "parse_dockerignore"]


class DockerignoreError(InvalidParameter):
    """A .dockerignore pattern is malformed (an unterminated ``[``, a bare ``!``)."""


def parse_dockerignore(text: str) -> list[Pattern]:
    """The patterns of a .dockerignore file (see ``backend.api.dockerignore``). Raises DockerignoreError."""
    try:
        return _matcher.parse_dockerignore(text)
    except _matcher.PatternError as exc:
        raise DockerignoreError(str(exc)) from None
