"""Container filesystem routes: ``docker cp`` (HEAD/GET/PUT ``/containers/{id}/archive``), ``docker export``
and ``docker diff`` (``/containers/{id}/changes``).

Each route parses its request and calls one ContainerFilesystem method in a worker thread (the work is
blocking filesystem I/O). Archives stream both ways: GET and export write the tar as it is made, PUT
extracts the request body as it arrives. HEAD and GET carry ``X-Docker-Container-Path-Stat``: base64 of
``{"name","size","mode","mtime","linkTarget"}``, as dockerd sends it.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable

from aiohttp import web

from backend.engine.containers.filesystem import ContainerFilesystem, PathStat
from backend.engine.containers.service import ContainerService
from backend.server.params import query_bool
from backend.server.streams import body_reader, stream_archive
from backend.server.versioning import add_route

FILESYSTEM: web.AppKey[ContainerFilesystem] = web.AppKey("container_filesystem", ContainerFilesystem)
STAT_HEADER = "X-Docker-Container-Path-Stat"


def _filesystem(request: web.Request) -> ContainerFilesystem:
    return request.app[FILESYSTEM]


def stat_header(stat: PathStat) -> str:
    """The ``X-Docker-Container-Path-Stat`` value: standard base64 of the stat as JSON."""
    doc = {"name": stat.name, "size": stat.size, "mode": stat.mode, "mtime": stat.mtime, "linkTarget": stat.link_target}
    return base64.b64encode(json.dumps(doc).encode()).decode()


async def head_archive(request: web.Request) -> web.Response:
    stat = await asyncio.to_thread(_filesystem(request).stat, request.match_info["id"],
                                   request.query.get("path", ""))
    return web.Response(headers={STAT_HEADER: stat_header(stat), "Content-Type": "application/json"})


async def get_archive(request: web.Request) -> web.StreamResponse:
    archive = await asyncio.to_thread(_filesystem(request).get_archive, request.match_info["id"],
                                      request.query.get("path", ""))
    return await stream_archive(request, archive.write, headers={STAT_HEADER: stat_header(archive.stat)})


async def put_archive(request: web.Request) -> web.Response:
    filesystem = _filesystem(request)
    ref, path = request.match_info["id"], request.query.get("path", "")
    no_overwrite = query_bool(request, "noOverwriteDirNonDir")
    copy_uid_gid = query_bool(request, "copyUIDGID")
    body = body_reader(request)
    await asyncio.to_thread(filesystem.put_archive, ref, path, body, no_overwrite_dir_non_dir=no_overwrite,
                            copy_uid_gid=copy_uid_gid)
    return web.Response(status=200)


async def export(request: web.Request) -> web.StreamResponse:
    write = await asyncio.to_thread(_filesystem(request).export, request.match_info["id"])
    return await stream_archive(request, write)


async def changes(request: web.Request) -> web.Response:
    found = await asyncio.to_thread(_filesystem(request).changes, request.match_info["id"])
    return web.json_response([{"Path": c.path, "Kind": int(c.kind)} for c in found])


def routes(service: ContainerService) -> Callable[[web.Application], None]:
    """A route setup for ``create_app(extra_routes=...)`` serving the filesystems of ``service``'s containers."""

    def setup(app: web.Application) -> None:
        app[FILESYSTEM] = ContainerFilesystem(service)
        add_route(app, "HEAD", "/containers/{id}/archive", head_archive)
        add_route(app, "GET", "/containers/{id}/archive", get_archive)
        add_route(app, "PUT", "/containers/{id}/archive", put_archive)
        add_route(app, "GET", "/containers/{id}/export", export)
        add_route(app, "GET", "/containers/{id}/changes", changes)

    return setup
