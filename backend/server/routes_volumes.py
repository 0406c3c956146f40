"""Volume routes: ``GET /volumes``, ``POST /volumes/create``, ``GET/DELETE /volumes/{name}``,
``POST /volumes/prune``; and the volume rows of ``GET /system/df``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from backend.engine.errors import InvalidParameter
from backend.engine.volumes.service import Volume, VolumeService
from backend.server.params import parse_filters, query_bool, read_json_body
from backend.server.versioning import add_route

SERVICE: web.AppKey[VolumeService] = web.AppKey("volumes", VolumeService)


def volume_json(volume: Volume) -> dict[str, Any]:
    """Docker's ``Volume`` document."""
    return {"CreatedAt": volume.created_at, "Driver": volume.driver, "Labels": volume.labels or None,
            "Mountpoint": volume.mountpoint, "Name": volume.name, "Options": volume.options or None,
            "Scope": "local"}


def volume_rows(service: VolumeService) -> list[dict[str, Any]]:
    """Every volume with ``UsageData`` (size, containers using it), for ``/system/df``."""
    return [volume_json(u.volume) | {"UsageData": {"Size": u.size, "RefCount": u.ref_count}}
            for u in service.disk_usage()]


def _string_map(body: dict[str, Any], key: str) -> dict[str, str]:
    value = body.get(key) or {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise InvalidParameter(f"{key}: expected an object of strings")
    return {str(k): v for k, v in value.items()}


async def list_volumes(request: web.Request) -> web.Response:
    volumes, warnings = request.app[SERVICE].list_volumes(parse_filters(request.query.get("filters")))
    return web.json_response({"Volumes": [volume_json(v) for v in volumes], "Warnings": warnings or None})


async def create(request: web.Request) -> web.Response:
    body = await read_json_body(request) or {}
    if not isinstance(body, dict):
        raise InvalidParameter("volume config must be an object")
    name, driver = body.get("Name") or "", body.get("Driver") or "local"
    if not isinstance(name, str) or not isinstance(driver, str):
        raise InvalidParameter("Name and Driver must be strings")
    volume = request.app[SERVICE].create(name or None, driver=driver, labels=_string_map(body, "Labels"),
                                         options=_string_map(body, "DriverOpts"))
    return web.json_response(volume_json(volume), status=201)


async def inspect(request: web.Request) -> web.Response:
    return web.json_response(volume_json(request.app[SERVICE].get(request.match_info["name"])))


async def remove(request: web.Request) -> web.Response:
    request.app[SERVICE].remove(request.match_info["name"], force=query_bool(request, "force"))
    return web.Response(status=204)


async def prune(request: web.Request) -> web.Response:
    report = request.app[SERVICE].prune(parse_filters(request.query.get("filters")))
    return web.json_response({"VolumesDeleted": report.deleted, "SpaceReclaimed": report.reclaimed})


def routes(service: VolumeService) -> Callable[[web.Application], None]:
    """A route setup for ``create_app(extra_routes=...)`` serving ``service``."""

    def setup(app: web.Application) -> None:
        app[SERVICE] = service
        add_route(app, "GET", "/volumes", list_volumes)
        add_route(app, "POST", "/volumes/create", create)
        add_route(app, "POST", "/volumes/prune", prune)
        add_route(app, "GET", "/volumes/{name}", inspect)
        add_route(app, "DELETE", "/volumes/{name}", remove)

    return setup
