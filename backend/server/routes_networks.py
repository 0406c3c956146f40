"""Network routes: list, inspect, create, remove, prune, connect and disconnect, as dockerd serves them."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from backend.engine.errors import InvalidParameter
from backend.engine.networks.service import NetworkService
from backend.server.params import parse_filters, parse_time_filter_ns, read_json_body
from backend.server.versioning import add_route

SERVICE: web.AppKey[NetworkService] = web.AppKey("networks", NetworkService)


def _service(request: web.Request) -> NetworkService:
    return request.app[SERVICE]


async def list_networks(request: web.Request) -> web.Response:
    service = _service(request)
    records = service.list_networks(parse_filters(request.query.get("filters")))
    return web.json_response([service.inspect(n.id) for n in records])


async def inspect(request: web.Request) -> web.Response:
    return web.json_response(_service(request).inspect(request.match_info["id"]))


async def create(request: web.Request) -> web.Response:
    network_id = await _service(request).create(await read_json_body(request))
    return web.json_response({"Id": network_id, "Warning": ""}, status=201)


async def remove(request: web.Request) -> web.Response:
    await _service(request).remove(request.match_info["id"])
    return web.Response(status=204)


async def prune(request: web.Request) -> web.Response:
    """``POST /networks/prune?filters=``: ``until`` (timestamp or duration), ``label``, ``label!``."""
    filters = parse_filters(request.query.get("filters"))
    unknown = set(filters) - {"until", "label", "label!"}
    if unknown:
        raise InvalidParameter(f"invalid filter '{sorted(unknown)[0]}'")
    until = parse_time_filter_ns(filters["until"][-1], "until") / 1e9 if filters.get("until") else None
    deleted = await _service(request).prune(until=until, labels=filters.get("label", []),
                                            not_labels=filters.get("label!", []))
    return web.json_response({"NetworksDeleted": deleted})


async def connect(request: web.Request) -> web.Response:
    await _service(request).connect(request.match_info["id"], await read_json_body(request))
    return web.Response(status=200)


async def disconnect(request: web.Request) -> web.Response:
    await _service(request).disconnect(request.match_info["id"], await read_json_body(request))
    return web.Response(status=200)


def routes(service: NetworkService) -> Callable[[web.Application], None]:
    """A route setup for ``create_app(extra_routes=...)`` serving ``service``."""

    def setup(app: web.Application) -> None:
        app[SERVICE] = service
        add_route(app, "GET", "/networks", list_networks)
        add_route(app, "POST", "/networks/create", create)
        add_route(app, "POST", "/networks/prune", prune)
        add_route(app, "GET", "/networks/{id}", inspect)
        add_route(app, "DELETE", "/networks/{id}", remove)
        add_route(app, "POST", "/networks/{id}/connect", connect)
        add_route(app, "POST", "/networks/{id}/disconnect", disconnect)

    return setup
