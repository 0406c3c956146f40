"""Registry failures, each one of the engine's error kinds (backend/engine/errors.py).

Every failure of the registry client is a :class:`RegistryError` and, through multiple inheritance,
exactly one kind of the engine taxonomy, so the HTTP server maps it to a status without knowing about
registries:

- :class:`RegistryNotFound` (:class:`~backend.engine.errors.NotFound`): ``MANIFEST_UNKNOWN``,
  ``BLOB_UNKNOWN``, ``NAME_UNKNOWN``, any 404; no platform matches in an index.
- :class:`RegistryForbidden` (:class:`~backend.engine.errors.Forbidden`): 401 after authenticating (or
  with nothing to authenticate with), 403, ``DENIED``.
- :class:`RegistryInvalid` (:class:`~backend.engine.errors.InvalidParameter`): content whose digest or
  size does not match its descriptor, a malformed or oversized manifest, a 4xx about the request.
- :class:`RegistryUnavailable` (:class:`~backend.engine.errors.Unavailable`): connection failures,
  timeouts and 5xx/429 answers after the retries are spent.

Messages follow Docker's format for registry errors: ``"<code in lower case>: <message>"``, for
example ``"unauthorized: authentication required"``.
"""

from __future__ import annotations

from backend.engine.errors import EngineError, Forbidden, InvalidParameter, NotFound, Unavailable


class RegistryError(EngineError):
    """Base of the registry client's errors.

    ``status`` is the HTTP status that caused it (None for transport and content errors); ``code`` is
    the registry's error code (``MANIFEST_UNKNOWN``...) when the body carried one.
    """

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class RegistryNotFound(RegistryError, NotFound):
    """The repository, manifest or blob does not exist (or no index entry fits the platform)."""


class RegistryForbidden(RegistryError, Forbidden):
    """Authentication failed or was missing, or the registry denied the operation."""


class RegistryInvalid(RegistryError, InvalidParameter):
    """Content does not match its digest or size, a manifest is malformed, or the request was refused as invalid."""


class RegistryUnavailable(RegistryError, Unavailable):
    """The registry could not be reached or kept failing (connection errors, timeouts, 5xx) after retries."""
