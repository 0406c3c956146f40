"""Container routes: create, list, inspect, start, stop, restart, kill, pause, unpause, wait, remove,
rename, logs, top, stats, attach, resize, exec.

Each route parses its request, calls one ContainerService method and serialises the answer as dockerd
does. ``attach`` hijacks the connection (``Upgrade: tcp``) and relays the monitor's stream: Docker's
multiplexed frames without a tty, raw bytes with one; ``exec`` start does the same for the exec'd
process (run through the OCI runtime's ``exec``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from aiohttp import web

from backend.api.ports import parse_range, split_proto
from backend.engine.containers.service import ContainerService
from backend.engine.containers.store import ContainerRecord
from backend.engine.errors import InvalidParameter
from backend.engine.runtime.logfile import parse_time
from backend.server.params import parse_filters, parse_time_filter_ns, query_bool, query_int, read_json_body
from backend.server.streams import MULTIPLEXED_STREAM, RAW_STREAM, frame, hijack
from backend.server.versioning import add_route

HEALTH_FILTER_VALUES = ("starting", "healthy", "unhealthy", "none")

SERVICE: web.AppKey[ContainerService] = web.AppKey("containers", ContainerService)


def _service(request: web.Request) -> ContainerService:
    return request.app[SERVICE]


def summary_json(record: ContainerRecord, service: ContainerService) -> dict[str, Any]:
    """One row of ``GET /containers/json``."""
    request = record.request
    networks = service.networks
    ports, settings = networks.summary(record.id) if networks else ([], {"Networks": {}})
    mode = networks.mode(record.id) if networks else "default"
    return {
        "Id": record.id, "Names": ["/" + record.name], "Image": record.image, "ImageID": record.image_id,
        "Command": " ".join(record.args), "Created": int(_unix(record.created)), "Ports": ports,
        "Labels": request.get("Labels") or {}, "State": record.state.status.value,
        "Status": record.state.describe(), "HostConfig": {"NetworkMode": mode},
        "NetworkSettings": settings, "Mounts": service.mounts.inspect(record.id),
    }


def _unix(text: str) -> float:
    try:
        return parse_time(text) / 1e9
    except ValueError:
        return 0.0


async def create(request: web.Request) -> web.Response:
    body = await read_json_body(request)
    cid, warnings = await _service(request).create(body, request.query.get("name") or None)
    return web.json_response({"Id": cid, "Warnings": warnings}, status=201)


async def list_containers(request: web.Request) -> web.Response:
    filters = parse_filters(request.query.get("filters"))
    unknown = set(filters) - {"status", "name", "id", "label", "health", "publish", "expose"}
    if unknown:
        raise InvalidParameter(f"invalid filter '{sorted(unknown)[0]}'")
    for value in filters.get("health", []):
        if value not in HEALTH_FILTER_VALUES:
            raise InvalidParameter(f"Unrecognised filter value for health: {value}")
    ports: dict[str, set[str]] = {k: _port_filter(k, filters[k]) for k in ("publish", "expose") if k in filters}
    rows = []
    for record in _service(request).list_containers(query_bool(request, "all")):
        if "status" in filters and record.state.status.value not in filters["status"]:
            continue
        if "name" in filters and not any(n in record.name for n in filters["name"]):
            continue
        if "id" in filters and not any(record.id.startswith(i) for i in filters["id"]):
            continue
        if "label" in filters and not all(record.has_label(want) for want in filters["label"]):
            continue
        if "health" in filters and record.state.health_status() not in filters["health"]:
            continue
        if ports and not _has_ports(_service(request).inspect(record.id), ports):
            continue
        rows.append(summary_json(record, _service(request)))
    limit = query_int(request, "limit", -1)
    return web.json_response(rows[:limit] if limit > 0 else rows)


def _port_filter(key: str, values: list[str]) -> set[str]:
    """dockerd's ``publish``/``expose`` filter values (``80``, ``80/udp``, ``8000-8080/tcp``) as port keys
    (``80/tcp``). Raises InvalidParameter with dockerd's messages."""
    wanted: set[str] = set()
    for value in values:
        if ":" in value:
            raise InvalidParameter(f"filter for '{key}' should not contain ':': {value}")
        port, proto = split_proto(value)
        try:
            start, end = parse_range(port)
        except ValueError:
            raise InvalidParameter(f"error while looking up for {key} {value}: invalid port {port!r}") from None
        wanted.update(f"{number}/{proto.lower()}" for number in range(start, end + 1))
    return wanted


def _has_ports(document: dict[str, Any], ports: dict[str, set[str]]) -> bool:
    """Whether an inspect document has one of the wanted ports of each filter: ``publish`` matches the
    container ports of ``HostConfig.PortBindings``, ``expose`` those of ``Config.ExposedPorts`` (as dockerd)."""
    have = {"publish": (document.get("HostConfig") or {}).get("PortBindings") or {},
            "expose": (document.get("Config") or {}).get("ExposedPorts") or {}}
    return all(wanted & set(have[key]) for key, wanted in ports.items())


async def rows_with_size(service: ContainerService) -> list[dict[str, Any]]:
    """Every container as a ``GET /containers/json?all=1&size=1`` row (for ``/system/df``)."""
    rows = []
    for record in service.list_containers(include_all=True):
        rows.append(summary_json(record, service) | {"SizeRw": await service.size_rw(record), "SizeRootFs": 0})
    return rows


async def update(request: web.Request) -> web.Response:
    warnings = await _service(request).update(request.match_info["id"], await read_json_body(request))
    return web.json_response({"Warnings": warnings})


async def prune(request: web.Request) -> web.Response:
    """``POST /containers/prune?filters=``: ``until`` (timestamp or duration), ``label``, ``label!``."""
    filters = parse_filters(request.query.get("filters"))
    unknown = set(filters) - {"until", "label", "label!"}
    if unknown:
        raise InvalidParameter(f"invalid filter '{sorted(unknown)[0]}'")
    until = None
    if filters.get("until"):
        until = parse_time_filter_ns(filters["until"][-1], "until") / 1e9
    deleted, reclaimed = await _service(request).prune(until=until, labels=filters.get("label", []),
                                                       not_labels=filters.get("label!", []))
    return web.json_response({"ContainersDeleted": deleted, "SpaceReclaimed": reclaimed})


async def inspect(request: web.Request) -> web.Response:
    return web.json_response(_service(request).inspect(request.match_info["id"]))


async def start(request: web.Request) -> web.Response:
    await _service(request).start(request.match_info["id"])
    return web.Response(status=204)


async def stop(request: web.Request) -> web.Response:
    timeout = request.query.get("t")
    await _service(request).stop(request.match_info["id"], int(timeout) if timeout not in (None, "") else None)
    return web.Response(status=204)


async def pause(request: web.Request) -> web.Response:
    await _service(request).pause(request.match_info["id"])
    return web.Response(status=204)


async def unpause(request: web.Request) -> web.Response:
    await _service(request).unpause(request.match_info["id"])
    return web.Response(status=204)


async def restart(request: web.Request) -> web.Response:
    timeout = request.query.get("t")
    await _service(request).restart(request.match_info["id"], int(timeout) if timeout not in (None, "") else None)
    return web.Response(status=204)


async def kill(request: web.Request) -> web.Response:
    await _service(request).kill(request.match_info["id"], request.query.get("signal") or "KILL")
    return web.Response(status=204)


async def wait(request: web.Request) -> web.StreamResponse:
    """Headers go out at once (the docker CLI blocks on them), the body when the container stops."""
    condition = request.query.get("condition") or "not-running"
    if condition not in ("not-running", "next-exit", "removed"):
        raise InvalidParameter(f"invalid condition: {condition}")
    service = _service(request)
    service.store.get(request.match_info["id"])
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    code = await service.wait(request.match_info["id"], condition)
    await response.write(json.dumps({"Error": None, "StatusCode": code}).encode() + b"\n")
    await response.write_eof()
    return response


async def remove(request: web.Request) -> web.Response:
    await _service(request).remove(request.match_info["id"], force=query_bool(request, "force"),
                                   volumes=query_bool(request, "v"))
    return web.Response(status=204)


async def rename(request: web.Request) -> web.Response:
    name = request.query.get("name")
    if not name:
        raise InvalidParameter("name is required")
    await _service(request).rename(request.match_info["id"], name)
    return web.Response(status=204)


async def logs(request: web.Request) -> web.StreamResponse:
    service = _service(request)
    ref = request.match_info["id"]
    record = service.store.get(ref)
    want = {"stdout": query_bool(request, "stdout"), "stderr": query_bool(request, "stderr")}
    if not any(want.values()):
        raise InvalidParameter("You must choose at least one stream")
    tail_text = request.query.get("tail", "all")
    try:
        tail = None if tail_text in ("", "all") else int(tail_text)
        since = float(request.query.get("since") or 0) or None
        until = float(request.query.get("until") or 0) or None
    except ValueError as exc:
        raise InvalidParameter(f"invalid logs parameter: {exc}") from exc
    tty = bool(record.request.get("Tty"))
    response = web.StreamResponse()
    response.enable_chunked_encoding()
    await response.prepare(request)
    async for stream, data in service.logs(ref, follow=query_bool(request, "follow"), since=since, until=until,
                                           tail=tail, timestamps=query_bool(request, "timestamps")):
        if want.get(stream):
            await response.write(bytes(data) if tty else frame(1 if stream == "stdout" else 2, bytes(data)))
    await response.write_eof()
    return response


async def attach(request: web.Request) -> web.StreamResponse:
    service = _service(request)
    tty, reader, writer = await service.attach(
        request.match_info["id"], stdin=query_bool(request, "stdin"), stdout=query_bool(request, "stdout"),
        stderr=query_bool(request, "stderr"))
    conn = await hijack(request, content_type=RAW_STREAM if tty else MULTIPLEXED_STREAM)

    async def pump_stdin() -> None:
        while data := await conn.reader.read(1 << 16):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()

    feeder = asyncio.ensure_future(pump_stdin()) if query_bool(request, "stdin") else None
    try:
        while data := await reader.read(1 << 16):
            await conn.write(data)
    except ConnectionResetError:
        pass
    finally:
        if feeder is not None:
            feeder.cancel()
        writer.close()
        conn.close()
    return conn.response


async def attach_websocket(request: web.Request) -> web.StreamResponse:
    """``GET /containers/{id}/attach/ws``: the container's streams over a websocket, raw (not multiplexed,
    as dockerd sends them); binary or text messages from the client go to its stdin."""
    service = _service(request)
    tty, reader, writer = await service.attach(
        request.match_info["id"], stdin=query_bool(request, "stdin"), stdout=query_bool(request, "stdout"),
        stderr=query_bool(request, "stderr"))
    ws = web.WebSocketResponse()
    await ws.prepare(request)

    async def pump_stdin() -> None:
        async for message in ws:
            if message.type in (web.WSMsgType.BINARY, web.WSMsgType.TEXT):
                writer.write(message.data if isinstance(message.data, bytes) else str(message.data).encode())
                await writer.drain()

    feeder = asyncio.ensure_future(pump_stdin()) if query_bool(request, "stdin") else None
    try:
        while True:
            if tty:
                data = await reader.read(1 << 16)
            else:  # drop the multiplexing header: the websocket carries the payload only
                header = await reader.readexactly(8)
                data = await reader.readexactly(int.from_bytes(header[4:], "big"))
            if not data:
                break
            await ws.send_bytes(data)
    except (asyncio.IncompleteReadError, ConnectionResetError):
        pass
    finally:
        if feeder is not None:
            feeder.cancel()
        writer.close()
        await ws.close()
    return ws


async def resize(request: web.Request) -> web.Response:
    await _service(request).resize(request.match_info["id"], query_int(request, "h", 0), query_int(request, "w", 0))
    return web.Response(status=200)


async def top(request: web.Request) -> web.Response:
    titles, rows = await _service(request).top(request.match_info["id"], request.query.get("ps_args") or "-ef")
    return web.json_response({"Titles": titles, "Processes": rows})


async def stats(request: web.Request) -> web.StreamResponse:
    stream = query_bool(request, "stream", True)
    one_shot = query_bool(request, "one-shot")
    service = _service(request)
    service.store.get(request.match_info["id"])
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    async for doc in service.stats(request.match_info["id"], stream=stream and not one_shot,
                                   interval=0.0 if one_shot else 1.0):
        await response.write(json.dumps(doc).encode() + b"\n")
    await response.write_eof()
    return response


async def exec_create(request: web.Request) -> web.Response:
    body = await read_json_body(request)
    exec_id = _service(request).exec_create(request.match_info["id"], body)
    return web.json_response({"Id": exec_id}, status=201)


async def exec_start(request: web.Request) -> web.StreamResponse:
    """Hijack, run the process, relay its output (framed without a tty) and the client's stdin."""
    service = _service(request)
    body = await read_json_body(request)
    instance = service.exec_get(request.match_info["id"])
    if isinstance(body, dict) and body.get("Detach"):
        await service.exec_start(instance.id, detach=True)
        return web.Response(status=200)
    streams = await service.exec_start(instance.id)
    conn = await hijack(request, content_type=RAW_STREAM if instance.tty else MULTIPLEXED_STREAM)
    stdin = streams.stdin

    async def pump_stdin() -> None:
        assert stdin is not None
        try:
            while data := await conn.reader.read(1 << 16):
                stdin.write(data)
                await stdin.drain()
        except (ConnectionResetError, BrokenPipeError):
            pass
        finally:
            if streams.console is None:
                stdin.close()

    async def pump(source: asyncio.StreamReader, stream: int) -> None:
        while data := await source.read(1 << 16):
            await conn.write(data if instance.tty else frame(stream, data))

    feeder = asyncio.ensure_future(pump_stdin()) if instance.open_stdin and stdin is not None else None
    if feeder is None and stdin is not None and streams.console is None:
        stdin.close()
    try:
        await asyncio.gather(pump(streams.stdout, 1), *([pump(streams.stderr, 2)] if streams.stderr else []))
        if instance.waiter is not None:
            await instance.waiter
    except ConnectionResetError:
        pass
    finally:
        if feeder is not None:
            feeder.cancel()
        if streams.console is not None:
            streams.console.close()
        conn.close()
    return conn.response


async def exec_inspect(request: web.Request) -> web.Response:
    return web.json_response(_service(request).exec_inspect(request.match_info["id"]))


async def exec_resize(request: web.Request) -> web.Response:
    await _service(request).exec_resize(request.match_info["id"], query_int(request, "h", 0),
                                        query_int(request, "w", 0))
    return web.Response(status=201)


def routes(service: ContainerService) -> Callable[[web.Application], None]:
    """A route setup for ``create_app(extra_routes=...)`` serving ``service``."""

    def setup(app: web.Application) -> None:
        app[SERVICE] = service
        add_route(app, "POST", "/containers/create", create)
        add_route(app, "GET", "/containers/json", list_containers)
        add_route(app, "POST", "/containers/prune", prune)
        add_route(app, "POST", "/containers/{id}/update", update)
        add_route(app, "GET", "/containers/{id}/json", inspect)
        add_route(app, "POST", "/containers/{id}/start", start)
        add_route(app, "POST", "/containers/{id}/stop", stop)
        add_route(app, "POST", "/containers/{id}/kill", kill)
        add_route(app, "POST", "/containers/{id}/wait", wait)
        add_route(app, "POST", "/containers/{id}/rename", rename)
        add_route(app, "GET", "/containers/{id}/logs", logs)
        add_route(app, "DELETE", "/containers/{id}", remove)
        add_route(app, "POST", "/containers/{id}/attach", attach)
        add_route(app, "GET", "/containers/{id}/attach/ws", attach_websocket)
        add_route(app, "POST", "/containers/{id}/resize", resize)
        add_route(app, "POST", "/containers/{id}/pause", pause)
        add_route(app, "POST", "/containers/{id}/unpause", unpause)
        add_route(app, "POST", "/containers/{id}/restart", restart)
        add_route(app, "POST", "/containers/{id}/exec", exec_create)
        add_route(app, "GET", "/containers/{id}/top", top)
        add_route(app, "GET", "/containers/{id}/stats", stats)
        add_route(app, "POST", "/exec/{id}/start", exec_start)
        add_route(app, "GET", "/exec/{id}/json", exec_inspect)
        add_route(app, "POST", "/exec/{id}/resize", exec_resize)

    return setup
