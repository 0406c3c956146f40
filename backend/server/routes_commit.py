"""``POST /commit``: a container's changes as a new image (``docker commit``).

Query: ``container``, ``repo``, ``tag``, ``comment``, ``author``, ``pause`` (true unless given and false, as
dockerd from API 1.13 on), ``changes`` (repeated, one Dockerfile line each). The body is a container config
that replaces the container's own (``null`` or empty: the container's). Answers 201 ``{"Id": "sha256:..."}``.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from backend.engine.containers.service import ContainerService
from backend.server.params import query_bool, read_json_body
from backend.server.versioning import add_route

SERVICE: web.AppKey[ContainerService] = web.AppKey("commit_containers", ContainerService)


async def commit(request: web.Request) -> web.Response:
    query = request.query
    config = await read_json_body(request)
    image = await request.app[SERVICE].commit(
        query.get("container", ""), repo=query.get("repo", ""), tag=query.get("tag", ""),
        comment=query.get("comment", ""), author=query.get("author", ""), changes=query.getall("changes", []),
        pause=not query.get("pause") or query_bool(request, "pause"), config=config)
    return web.json_response({"Id": image.id}, status=201)


def routes(service: ContainerService) -> Callable[[web.Application], None]:
    """A route setup for ``create_app(extra_routes=...)`` committing ``service``'s containers."""

    def setup(app: web.Application) -> None:
        app[SERVICE] = service
        add_route(app, "POST", "/commit", commit)

    return setup
