"""The engine's one error taxonomy.

Every failure the engine reports is one of these kinds. The HTTP server maps each kind to one status
code; clients dispatch on that status, never on the message. Foreign exceptions (OSError, ctypes
errors, subprocess failures) are wrapped once, where they are caught, with ``raise ... from exc``.
"""

from __future__ import annotations


class EngineError(Exception):
    """Base of all engine errors. ``str(err)`` is a message fit to show a user as it is."""


class NotFound(EngineError):
    """The named object (container, image, network, volume, file) does not exist."""


class Conflict(EngineError):
    """The request clashes with the current state (name in use, container running, already exists)."""


class InvalidParameter(EngineError):
    """The request or its input (config, reference, file) is malformed or out of range."""


class Forbidden(EngineError):
    """The operation is not allowed (privilege, policy or a path escaping its root)."""


class Unavailable(EngineError):
    """A kernel feature, tool or service the operation needs is not there or failed."""


class NotImplementedByEngine(EngineError):
    """The request is valid Docker API, but Berth does not implement it."""
