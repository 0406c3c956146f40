"""The machine manager's errors: one line each, printed by the CLI as ``berth: <message>``."""

from __future__ import annotations


class MachineError(Exception):
    """A machine operation failed; ``str(exc)`` is the one line to show."""


class MachineNotFound(MachineError):
    """No machine of that name."""


class ImageVerificationError(MachineError):
    """A downloaded base image does not have the SHA-256 it was asked for (the file is removed)."""


class HostKeyChanged(MachineError):
    """The guest presented another SSH host key than the one pinned at provisioning."""
