"""The one mapping from engine error kinds to HTTP status, and the middleware that applies it.

Every error leaves the server as Docker's ``{"message": "..."}`` JSON body. Clients dispatch on the
status, never on the text:

=========================  ======
NotFound                   404
Conflict                   409
InvalidParameter           400
Forbidden                  403
NotImplementedByEngine     501
Unavailable                503
any other failure          500
=========================  ======

aiohttp's own errors (no such route 404, wrong method 405, body over the cap 413, bad request 400)
get the same JSON shape. The message of an unexpected exception is logged in full and sent as it is
(Docker does the same), never a traceback.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from backend.engine.errors import (
    Conflict,
    EngineError,
    Forbidden,
    InvalidParameter,
    NotFound,
    NotImplementedByEngine,
    Unavailable,
)

log = logging.getLogger(__name__)

JSON_BODY_LIMIT = 1024 * 1024
"""The largest JSON request body read (archives are streamed and have no limit)."""

_STATUS: tuple[tuple[type[EngineError], int], ...] = (
    (NotFound, 404),
    (Conflict, 409),
    (InvalidParameter, 400),
    (Forbidden, 403),
    (NotImplementedByEngine, 501),
    (Unavailable, 503),
)


def status_for(error: BaseException) -> int:
    """The HTTP status for ``error``: its engine kind's, else 500. The first matching kind wins, so an
    error that is both (a registry NotFound that is also a RegistryError) maps by its most specific base."""
    for kind, status in _STATUS:
        if isinstance(error, kind):
            return status
    return 500


def error_body(message: str) -> bytes:
    """Docker's error body."""
    return json.dumps({"message": message}).encode()


def error_response(status: int, message: str) -> web.Response:
    """A ``{"message"}`` JSON response with ``status``."""
    return web.Response(status=status, body=error_body(message), content_type="application/json")


def engine_error_response(error: BaseException) -> web.Response:
    """The response for an engine error (or any exception, as 500)."""
    return error_response(status_for(error), str(error) or type(error).__name__)


_HTTP_MESSAGES = {404: "page not found", 405: "method not allowed"}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn engine errors and aiohttp's HTTP errors into ``{"message"}`` responses."""
    try:
        return await handler(request)
    except EngineError as exc:
        if status_for(exc) >= 500:
            log.warning("%s %s: %s", request.method, request.path, exc)
        return engine_error_response(exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        if exc.status == 413:
            message = f"request body is too large (the limit is {JSON_BODY_LIMIT} bytes for JSON bodies)"
        else:
            message = _HTTP_MESSAGES.get(exc.status) or exc.text or exc.reason
        response = error_response(exc.status, message)
        for name in ("Allow",):
            if name in exc.headers:
                response.headers[name] = exc.headers[name]
        return response
    except (ConnectionResetError, TimeoutError):
        raise
    except Exception as exc:
        log.exception("%s %s failed", request.method, request.path)
        return error_response(500, str(exc) or type(exc).__name__)
