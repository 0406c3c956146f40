"""``POST /build`` (the classic builder's API) and ``POST /build/prune``.

Query of ``/build``: ``t`` (repeatable), ``dockerfile``, ``buildargs`` and ``labels`` (JSON objects),
``target``, ``nocache``, ``pull``, ``q``, ``networkmode`` (of the RUN containers); ``rm``/``forcerm``
(intermediate containers are always removed), ``platform`` and the resource options are accepted and
ignored. The body is the context tar; ``X-Registry-Config`` (base64 JSON, registry -> auth config) gives
credentials for pulls. The answer is a stream of the classic builder's JSON messages; an error before the
first message is an HTTP error.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Iterable

from aiohttp import web

from backend.engine.builder.executor import BuildFailed, BuildMessage, BuildOptions, BuildResult
from backend.engine.builder.service import BuildService
from backend.engine.errors import InvalidParameter
from backend.engine.images.reference import Reference, parse_reference
from backend.engine.registry.auth import Credentials
from backend.server.params import load_json, query_bool, registry_auth
from backend.server.streams import Message, ProgressStream, body_reader, progress_message
from backend.server.versioning import add_route

SERVICE: web.AppKey[BuildService] = web.AppKey("builder", BuildService)
MAX_TAGS = 100


def _json_object(request: web.Request, name: str, *, nullable: bool) -> dict[str, str | None]:
    text = request.query.get(name, "")
    if not text:
        return {}
    doc = load_json(text, name)
    if not isinstance(doc, dict) or not all(
            isinstance(v, str) or (nullable and v is None) for v in doc.values()):
        raise InvalidParameter(f"invalid {name}: expected a JSON object of strings")
    return {str(k): v for k, v in doc.items()}


def _tags(request: web.Request) -> tuple[Reference, ...]:
    tags = request.query.getall("t", [])
    if len(tags) > MAX_TAGS:
        raise InvalidParameter(f"too many tags (at most {MAX_TAGS})")
    refs = []
    for tag in tags:
        ref = parse_reference(tag).with_default_tag()
        if ref.digest is not None:
            raise InvalidParameter(f"invalid tag {tag!r}: a tag cannot hold a digest")
        refs.append(ref)
    return tuple(refs)


def _registry_config(header: str | None) -> dict[str, Credentials]:
    """The credentials of ``X-Registry-Config`` by registry. Raises InvalidParameter when malformed."""
    if not header or not header.strip():
        return {}
    try:
        raw = base64.urlsafe_b64decode(header.strip() + "=" * (-len(header.strip()) % 4))
    except (binascii.Error, ValueError):
        raise InvalidParameter("invalid X-Registry-Config header: not base64") from None
    doc = load_json(raw, "X-Registry-Config header")
    if not isinstance(doc, dict):
        raise InvalidParameter("invalid X-Registry-Config header: not a JSON object")
    out = {}
    for registry, entry in doc.items():
        credentials = registry_auth(base64.b64encode(json.dumps(entry).encode()).decode())
        if credentials is not None:
            out[str(registry)] = credentials
    return out


def _message(message: BuildMessage) -> Message:
    if message.aux_id:
        return {"aux": {"ID": message.aux_id}}
    if message.progress is not None:
        p = message.progress
        return progress_message(p.status, p.id, p.current, p.total)
    return {"stream": message.stream}


async def build(request: web.Request) -> web.StreamResponse:
    """``POST /build``: see the module docstring."""
    query = request.query
    options = BuildOptions(
        tags=_tags(request), dockerfile=query.get("dockerfile", ""),
        build_args=_json_object(request, "buildargs", nullable=True),
        target=query.get("target", ""), no_cache=query_bool(request, "nocache"), pull=query_bool(request, "pull"),
        labels={k: v or "" for k, v in _json_object(request, "labels", nullable=False).items()},
        quiet=query_bool(request, "q"), network_mode=query.get("networkmode", "") or "default")
    credentials = _registry_config(request.headers.get("X-Registry-Config"))
    service = request.app[SERVICE]
    reader = body_reader(request)

    async def run(emit: Callable[[Message], None]) -> BuildResult | None:
        try:
            return await service.build(reader, options, lambda m: emit(_message(m)), credentials=credentials)
        except BuildFailed as exc:  # dockerd's errorDetail carries the exit code; the docker CLI exits with it
            emit({"errorDetail": {"code": exc.code, "message": str(exc)}, "error": str(exc)})
            return None

    def finish(result: BuildResult | None) -> Iterable[Message]:
        return [{"stream": result.image_id + "\n"}] if options.quiet and result is not None else []

    return await ProgressStream[BuildResult | None](request, newline=b"\n").run(run, finish)


async def prune(request: web.Request) -> web.Response:
    """``POST /build/prune`` -> ``{"CachesDeleted": [...], "SpaceReclaimed": n}``."""
    report = await request.app[SERVICE].prune()
    return web.json_response({"CachesDeleted": list(report.deleted), "SpaceReclaimed": report.reclaimed})


def routes(service: BuildService) -> Callable[[web.Application], None]:
    """A route setup for ``create_app(extra_routes=...)`` building with ``service``."""

    def setup(app: web.Application) -> None:
        app[SERVICE] = service
        add_route(app, "POST", "/build/prune", prune)
        add_route(app, "POST", "/build", build)

    return setup
