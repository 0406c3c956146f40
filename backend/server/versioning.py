"""API versions: the ``/v1.NN/`` path prefix, the version middleware and the headers every response carries.

Every route is served both unprefixed (docker-py's first ``GET /version``) and under ``/v<version>/``
(:func:`add_route` registers both). The middleware checks the prefix:

- below :data:`MIN_API_VERSION` (1.12): 400 "client version 1.5 is too old. Minimum supported API
  version is 1.12, please upgrade your client to a newer version" (dockerd's words);
- above :data:`MAX_ACCEPTED_VERSION` (1.45): 400 "client version 1.99 is too new. Maximum supported API
  version is 1.41". Versions 1.42-1.45 are served with 1.41's shapes, so clients pinned to a newer
  version they never use new fields of (docker-py 7's default is 1.45) still work;
- otherwise the request goes on with ``request[API_VERSION]`` set to the requested version (our own
  for unprefixed paths).

Every response (errors and streams included) carries ``Api-Version: 1.41``, ``Server: Berth/<ver>
(linux)``, ``Ostype: linux`` and ``Docker-Experimental: false``. No ``Builder-Version``: the docker CLI
would then ask for BuildKit.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

from aiohttp import web

from backend.engine.errors import InvalidParameter
from backend.engine.system import ENGINE_VERSION

API_VERSION_TEXT = "1.41"
MIN_API_VERSION_TEXT = "1.12"
MAX_ACCEPTED_TEXT = "1.45"

API_VERSION: web.RequestKey[tuple[int, int]] = web.RequestKey("berth.api_version", tuple)
"""The API version the client asked for (a ``(major, minor)`` tuple)."""

PREFIX = r"/{api_version:v[0-9][0-9.]*}"
SERVER_HEADER = f"Berth/{ENGINE_VERSION} (linux)"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def parse_version(text: str) -> tuple[int, int]:
    """``1.41`` -> ``(1, 41)``. Raises InvalidParameter."""
    m = re.fullmatch(r"(\d{1,4})\.(\d{1,4})", text)
    if m is None:
        raise InvalidParameter(f"invalid API version {text[:32]!r}")
    return int(m.group(1)), int(m.group(2))


OUR_VERSION = parse_version(API_VERSION_TEXT)
MIN_API_VERSION = parse_version(MIN_API_VERSION_TEXT)
MAX_ACCEPTED_VERSION = parse_version(MAX_ACCEPTED_TEXT)


def add_route(app: web.Application, method: str, path: str, handler: Handler) -> None:
    """Serve ``handler`` at ``path`` and at ``/v<version>`` + ``path``. Register static paths before
    ``{name:.+}`` ones: the router tries them in order."""
    app.router.add_route(method, path, handler)
    app.router.add_route(method, PREFIX + path, handler)


@web.middleware
async def version_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Check the path's API version (see the module docstring)."""
    prefix = request.match_info.get("api_version")
    if prefix is None:
        request[API_VERSION] = OUR_VERSION
        return await handler(request)
    text = prefix[1:]
    version = parse_version(text)
    if version < MIN_API_VERSION:
        raise InvalidParameter(f"client version {text} is too old. Minimum supported API version is "
                               f"{MIN_API_VERSION_TEXT}, please upgrade your client to a newer version")
    if version > MAX_ACCEPTED_VERSION:
        raise InvalidParameter(f"client version {text} is too new. Maximum supported API version is "
                               f"{API_VERSION_TEXT}")
    request[API_VERSION] = version
    return await handler(request)


async def add_common_headers(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: the headers dockerd puts on every response."""
    response.headers["Api-Version"] = API_VERSION_TEXT
    response.headers["Server"] = SERVER_HEADER
    response.headers["Ostype"] = "linux"
    response.headers["Docker-Experimental"] = "false"
