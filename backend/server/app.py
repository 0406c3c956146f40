"""The aiohttp application that serves the Docker Engine API, and serving it on a unix socket.

:func:`create_app` wires the middlewares (errors outermost, then API versions), the headers every
response carries and the route modules; more route modules (containers, networks, volumes...) plug in
through ``extra_routes``. :func:`serve_unix` runs the app on a socket with the settings Docker's
clients need (handlers cancelled when their client goes away, so a pull stops with its connection and
an events stream unsubscribes; request lines and headers up to 64 KiB for long ``filters`` and
``X-Registry-Auth`` values).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence

from aiohttp import web

from backend.server import routes_images, routes_system
from backend.server.context import CONTEXT, ServerContext
from backend.server.errors import JSON_BODY_LIMIT, error_middleware
from backend.server.versioning import add_common_headers, version_middleware

RouteSetup = Callable[[web.Application], None]

_HEADER_LIMIT = 64 * 1024


def create_app(context: ServerContext, *, extra_routes: Sequence[RouteSetup] = ()) -> web.Application:
    """The API application over ``context``'s services. ``extra_routes`` register more routes (with
    :func:`backend.server.versioning.add_route`, so they are served with and without a version prefix)."""
    app = web.Application(middlewares=[error_middleware, version_middleware], client_max_size=JSON_BODY_LIMIT)
    app[CONTEXT] = context
    app.on_response_prepare.append(add_common_headers)
    routes_system.setup(app)
    routes_images.setup(app)
    for setup in extra_routes:
        setup(app)
    return app


# On shutdown, requests still running after this many seconds are cancelled: open streams (events, logs -f,
# attach) never end by themselves and must not keep the daemon from stopping.
SHUTDOWN_GRACE = 2.0


def make_runner(app: web.Application) -> web.AppRunner:
    """An AppRunner with the server settings the API needs (see the module docstring)."""
    return web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=SHUTDOWN_GRACE,
                         max_line_size=_HEADER_LIMIT, max_field_size=_HEADER_LIMIT)


async def serve_unix(app: web.Application, path: str, *, mode: int = 0o660) -> web.AppRunner:
    """Serve ``app`` on the unix socket ``path`` (a stale socket file there is replaced) with ``mode``.
    Returns the runner; ``await runner.cleanup()`` stops serving and removes nothing else."""
    with contextlib.suppress(FileNotFoundError):
        if not os.path.isdir(path):
            os.unlink(path)
    runner = make_runner(app)
    await runner.setup()
    try:
        site = web.UnixSite(runner, path)
        await site.start()
        os.chmod(path, mode)
    except BaseException:
        await runner.cleanup()
        raise
    return runner
