"""What the routes need from the engine, handed in by the composition root (``backend/daemon.py``).

Containers are not known here: the containers service plugs in through the callables
(``image_in_use`` for ``rmi``/``prune``, ``container_rows`` for ``system df``), so this package does
not depend on it.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web

from backend.engine.errors import Unavailable
from backend.engine.events import EventBus
from backend.engine.images.service import ImageService
from backend.engine.registry.auth import Credentials, CredentialSource, StaticCredentials
from backend.engine.system import SystemService

if TYPE_CHECKING:
    from backend.engine.registry.client import RegistryClient

ContainerRows = list[dict[str, Any]]
ContainerRowsFn = Callable[[], "ContainerRows | Awaitable[ContainerRows]"]
"""All containers as ``GET /containers/json?all=1&size=1`` rows (``Id``, ``ImageID``, ``SizeRw``...)."""


def _never_in_use(_: str) -> bool:
    return False


def _no_rows() -> ContainerRows:
    return []


class _OneCredential(StaticCredentials):
    """The credentials of one request's ``X-Registry-Auth``, for whichever registry it talks to."""

    def __init__(self, credentials: Credentials) -> None:
        super().__init__()
        self._credentials = credentials

    def get(self, domain: str) -> Credentials | None:
        return self._credentials


@dataclass
class ServerContext:
    """The services behind the routes.

    ``registry_for(credentials)`` makes a registry client with the daemon's registry settings and the
    given credentials; when set, a pull or push that carries ``X-Registry-Auth`` credentials uses a
    client of its own (its token and credential caches are then never shared with other requests).
    """

    images: ImageService
    system: SystemService
    events: EventBus
    image_in_use: Callable[[str], bool] = _never_in_use
    container_rows: ContainerRowsFn = _no_rows
    volume_rows: Callable[[], list[dict[str, Any]]] = _no_rows
    registry_for: Callable[[CredentialSource], RegistryClient] | None = None

    @contextlib.asynccontextmanager
    async def images_with(self, credentials: Credentials | None) -> AsyncIterator[ImageService]:
        """The image service, talking to registries with ``credentials`` when given.

        The scoped service shares every store and lock with the daemon's (a shallow copy with its own
        registry client), so only the registry traffic differs. Without credentials, or without
        ``registry_for``, it is the daemon's service itself (whose registry client uses the daemon's
        credential store)."""
        if credentials is None or self.registry_for is None:
            yield self.images
            return
        client = self.registry_for(_OneCredential(credentials))
        try:
            yield self.images.with_registry(client)
        finally:
            await client.aclose()

    async def check_login(self, domain: str, username: str, password: str) -> None:
        """``POST /auth``: whether ``domain`` accepts these credentials. Nothing is kept (the client stores
        its credentials itself, as with dockerd). Raises the registry's errors (Forbidden for refused
        credentials), Unavailable without a registry client."""
        if self.registry_for is None:
            raise Unavailable("this engine has no registry client")
        client = self.registry_for(StaticCredentials())
        try:
            await client.login(domain, username, password)
        finally:
            await client.aclose()

    async def containers(self) -> ContainerRows:
        """The containers' rows from the provider (sync or async)."""
        rows = self.container_rows()
        if inspect.isawaitable(rows):
            rows = await rows
        return rows


CONTEXT: web.AppKey[ServerContext] = web.AppKey("berth.context", ServerContext)
