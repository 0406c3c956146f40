"""Client-side errors, keyed by HTTP status (clients dispatch on the class, never on the message).

=====  =========================
400    BadRequestError
401    UnauthorizedError
403    ForbiddenError
404    NotFoundError
409    ConflictError
413    PayloadTooLargeError
500    ServerError
501    NotImplementedByEngineError
503    UnavailableError
=====  =========================

Any other status is a plain :class:`APIError`. :class:`StreamError` is an error the engine reported in
the middle of a stream (the HTTP status was already 200); :class:`EngineUnreachable` means no engine
answered at all. :class:`MachineError` is a failed ``berth machine`` command (backend/api/machines.py).
"""

from __future__ import annotations


class APIError(Exception):
    """An error answer from the engine: ``status`` (None when there was no HTTP answer) and the
    engine's ``message`` (Docker's ``{"message": ...}``)."""

    status: int | None = None

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status


class BadRequestError(APIError):
    status = 400


class UnauthorizedError(APIError):
    status = 401


class ForbiddenError(APIError):
    status = 403


class NotFoundError(APIError):
    status = 404


class ConflictError(APIError):
    status = 409


class PayloadTooLargeError(APIError):
    status = 413


class ServerError(APIError):
    status = 500


class NotImplementedByEngineError(APIError):
    status = 501


class UnavailableError(APIError):
    status = 503


class StreamError(APIError):
    """An ``{"errorDetail": {"message"}, "error"}`` line in a progress or build stream."""


class EngineUnreachable(APIError):
    """Nothing answered at the engine's address (socket missing, connection refused, timeout)."""


class MachineError(APIError):
    """A ``berth machine`` command failed, or printed what is not a machine: ``message`` is the CLI's one line
    (without its ``berth:`` prefix)."""


_BY_STATUS: dict[int, type[APIError]] = {
    cls.status: cls
    for cls in (BadRequestError, UnauthorizedError, ForbiddenError, NotFoundError, ConflictError,
                PayloadTooLargeError, ServerError, NotImplementedByEngineError, UnavailableError)
    if cls.status is not None
}


def error_for_status(status: int, message: str) -> APIError:
    """The error for an HTTP ``status`` and message."""
    cls = _BY_STATUS.get(status, APIError)
    return cls(message, status=status)
