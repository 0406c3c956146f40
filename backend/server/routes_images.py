"""Image routes (``/images/...``): each parses the request, calls the image service, serialises.

Image events (``pull``, ``push``, ``tag``, ``untag``, ``delete``, ``import``, ``load``) are published
here after the service call succeeds, because the image service has no event bus of its own yet.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from backend.engine.errors import InvalidParameter, NotImplementedByEngine
from backend.engine.images.image_store import ImageRecord
from backend.engine.images.reference import parse_reference
from backend.engine.images.service import HistoryEntry, ImageSummary, Progress, host_platform
from backend.engine.registry.auth import Credentials
from backend.engine.registry.manifest import Platform
from backend.server.context import CONTEXT, ServerContext
from backend.server.params import parse_filters, query_bool, query_int, read_json_body, registry_auth
from backend.server.streams import (
    Emit,
    Message,
    ProgressStream,
    body_reader,
    progress_message,
    stream_archive,
)
from backend.server.versioning import add_route

if TYPE_CHECKING:
    from backend.engine.registry.client import SearchResult

_PUSHED_RE = re.compile(r"^(?P<tag>\S+): digest: (?P<digest>\S+) size: (?P<size>\d+)$")


# --- serialisers ----------------------------------------------------------------------------------


def image_summary_json(summary: ImageSummary) -> dict[str, Any]:
    """An ``ImageSummary`` as API 1.41 shows it (an image without names is ``<none>:<none>``)."""
    tags: list[str] = list(summary.repo_tags)
    digests: list[str] = list(summary.repo_digests)
    if not tags and not digests:
        tags, digests = ["<none>:<none>"], ["<none>@<none>"]
    return {
        "Containers": -1, "Created": summary.created, "Id": summary.id, "Labels": summary.labels or None,
        "ParentId": "", "RepoDigests": digests, "RepoTags": tags, "SharedSize": -1,
        "Size": summary.size, "VirtualSize": summary.size,
    }


def history_json(entry: HistoryEntry) -> dict[str, Any]:
    return {"Id": entry.id, "Created": entry.created, "CreatedBy": entry.created_by, "Tags": entry.tags,
            "Size": entry.size, "Comment": entry.comment}


def search_json(result: SearchResult) -> dict[str, Any]:
    return {"description": result.description, "is_official": result.is_official,
            "is_automated": result.is_automated, "name": result.name, "star_count": result.star_count}


def progress_json(progress: Progress) -> Message:
    return progress_message(progress.status, progress.id, progress.current, progress.total)


# --- helpers ------------------------------------------------------------------------------------


def _context(request: web.Request) -> ServerContext:
    return request.app[CONTEXT]


def _publish(request: web.Request, action: str, actor_id: str, name: str) -> None:
    _context(request).events.emit("image", action, actor_id, {"name": name})


def _platform(request: web.Request) -> Platform | None:
    text = request.query.get("platform", "").strip()
    if not text:
        return None
    parts = text.split("/")
    if len(parts) > 3 or not all(parts):
        raise InvalidParameter(f"invalid platform {text[:64]!r}: expected os[/arch[/variant]]")
    os_name, arch, variant = [*parts, "", ""][:3]
    return Platform(os_name, arch or host_platform().architecture, variant or None)


def _with_tag(name: str, tag: str) -> str:
    """``name`` with ``tag`` (a tag or a digest) replacing any it has. Raises InvalidParameter."""
    if not tag:
        return name
    ref = parse_reference(name)
    if tag.startswith(("sha256:", "sha384:", "sha512:")):
        return f"{ref.repository}@{tag}"
    return f"{ref.repository}:{tag}"


def _credentials(request: web.Request) -> Credentials | None:
    return registry_auth(request.headers.get("X-Registry-Auth"))


# --- routes -------------------------------------------------------------------------------------


async def list_images(request: web.Request) -> web.Response:
    """``GET /images/json?all=&filters=``."""
    filters = parse_filters(request.query.get("filters"))
    summaries = _context(request).images.list_images(filters, include_all=query_bool(request, "all"))
    return web.json_response([image_summary_json(s) for s in summaries])


async def create_image(request: web.Request) -> web.StreamResponse:
    """``POST /images/create``: pull (``fromImage`` + ``tag``) or import (``fromSrc=-`` + ``repo``,
    ``tag``, ``changes``, ``message``)."""
    from_image = request.query.get("fromImage", "")
    from_src = request.query.get("fromSrc", "")
    if from_image and from_src:
        raise InvalidParameter("only one of fromImage and fromSrc may be given")
    if from_src:
        return await _import(request, from_src)
    if not from_image:
        raise InvalidParameter("fromImage or fromSrc is required")
    name = _with_tag(from_image, request.query.get("tag", ""))
    platform = _platform(request)
    credentials = _credentials(request)
    context = _context(request)

    async def pull(emit: Emit) -> ImageRecord:
        async with context.images_with(credentials) as images:
            return await images.pull(name, platform=platform, progress=lambda p: emit(progress_json(p)))

    def finish(_: ImageRecord) -> Iterable[Message]:
        familiar = parse_reference(name).with_default_tag().familiar()
        _publish(request, "pull", familiar, familiar)
        return ()

    # The first line ("Pulling from ...") is held back, so an unknown image or refused credentials
    # still get their HTTP status as dockerd answers them.
    return await ProgressStream[ImageRecord](request, defer=1).run(pull, finish)


async def _import(request: web.Request, source: str) -> web.StreamResponse:
    if source != "-":
        raise NotImplementedByEngine("importing from a URL is not supported; send the archive in the body "
                                     "(fromSrc=-)")
    repo = request.query.get("repo", "")
    reference = _with_tag(repo, request.query.get("tag", "")) if repo else None
    changes = request.query.getall("changes", [])
    message = request.query.get("message", "")
    platform = _platform(request)
    images = _context(request).images
    reader = body_reader(request)

    async def run(emit: Emit) -> ImageRecord:
        return await images.import_rootfs(reader, reference=reference, changes=changes, message=message,
                                          platform=platform)

    def finish(record: ImageRecord) -> Iterable[Message]:
        _publish(request, "import", record.id, reference or record.id)
        return [{"status": record.id}]

    return await ProgressStream[ImageRecord](request).run(run, finish)


async def push_image(request: web.Request) -> web.StreamResponse:
    """``POST /images/{name}/push?tag=``: without a tag (and none in the name), every local tag of the
    repository is pushed, as dockerd does."""
    name = request.match_info["name"]
    tag = request.query.get("tag", "")
    credentials = _credentials(request)
    context = _context(request)
    ref = parse_reference(name)
    if tag:
        targets = [_with_tag(name, tag)]
    elif ref.tag is not None or ref.digest is not None:
        targets = [name]
    else:
        targets = sorted({t for s in context.images.list_images({"reference": [ref.familiar_name]})
                          for t in s.repo_tags if parse_reference(t).repository == ref.repository})
        if not targets:
            raise InvalidParameter(f"An image does not exist locally with the tag: {ref.familiar_name}")

    def report(emit: Emit, progress: Progress) -> None:
        emit(progress_json(progress))
        m = _PUSHED_RE.match(progress.status)
        if m and progress.id is None:
            aux = {"Tag": m.group("tag"), "Digest": m.group("digest"), "Size": int(m.group("size"))}
            emit({"progressDetail": {}, "aux": aux})

    async def push(emit: Emit) -> list[str]:
        async with context.images_with(credentials) as images:
            digests = []
            for target in targets:
                digests.append(await images.push(target, progress=lambda p: report(emit, p)))
                familiar = parse_reference(target).with_default_tag().familiar()
                _publish(request, "push", familiar, familiar)
            return digests

    return await ProgressStream[list[str]](request, defer=1).run(push)


async def tag_image(request: web.Request) -> web.Response:
    """``POST /images/{name}/tag?repo=&tag=`` -> 201."""
    repo = request.query.get("repo", "")
    if not repo:
        raise InvalidParameter("repository name (repo) is required")
    tag = request.query.get("tag", "")
    if tag.startswith(("sha256:", "sha384:", "sha512:")):
        raise InvalidParameter("refusing to create a tag with a digest reference")
    target = _with_tag(repo, tag)
    images = _context(request).images
    images.tag(request.match_info["name"], target)
    record_id = images.resolve(target).id
    _publish(request, "tag", record_id, parse_reference(target).with_default_tag().familiar())
    return web.Response(status=201)


async def delete_image(request: web.Request) -> web.Response:
    """``DELETE /images/{name}?force=&noprune=`` -> the Untagged/Deleted report."""
    context = _context(request)
    name = request.match_info["name"]
    image_id = context.images.resolve(name).id
    report = context.images.remove(name, force=query_bool(request, "force"),
                                   prune_parents=not query_bool(request, "noprune"), in_use=context.image_in_use)
    for item in report:
        if "Untagged" in item:
            _publish(request, "untag", image_id, item["Untagged"])
        if "Deleted" in item:
            _publish(request, "delete", item["Deleted"], item["Deleted"])
    return web.json_response(report)


async def inspect_image(request: web.Request) -> web.Response:
    """``GET /images/{name}/json``."""
    return web.json_response(_context(request).images.inspect(request.match_info["name"]))


async def image_history(request: web.Request) -> web.Response:
    """``GET /images/{name}/history``."""
    entries = _context(request).images.history(request.match_info["name"])
    return web.json_response([history_json(e) for e in entries])


async def auth(request: web.Request) -> web.Response:
    """``POST /auth``: check registry credentials (``serveraddress`` as the docker CLI sends it, e.g.
    ``https://index.docker.io/v1/``); nothing is stored by the engine."""
    body = await read_json_body(request)
    if not isinstance(body, dict):
        raise InvalidParameter("auth config must be an object")
    username, password = body.get("username"), body.get("password")
    server = body.get("serveraddress") or "docker.io"
    if not all(isinstance(v, str) for v in (username, password, server)):
        raise InvalidParameter("username, password and serveraddress must be strings")
    domain = urllib.parse.urlsplit(server if "://" in server else f"//{server}").netloc or server
    if domain.lower() in ("index.docker.io", "registry-1.docker.io"):
        domain = "docker.io"
    await request.app[CONTEXT].check_login(domain, str(username), str(password))
    return web.json_response({"Status": "Login Succeeded", "IdentityToken": ""})


async def search_images(request: web.Request) -> web.Response:
    """``GET /images/search?term=&limit=&filters=``."""
    term = request.query.get("term", "")
    if not term:
        raise InvalidParameter("term is required")
    limit = query_int(request, "limit", 25)
    if not 1 <= limit <= 100:
        raise InvalidParameter(f"Limit {limit} is outside the range of [1, 100]")
    filters = parse_filters(request.query.get("filters"))
    results = await _context(request).images.search(term, limit=limit, filters=filters)
    return web.json_response([search_json(r) for r in results])


async def _save(request: web.Request, names: list[str]) -> web.StreamResponse:
    if not names:
        raise InvalidParameter("no image names given (names=...)")
    images = _context(request).images
    response = await stream_archive(request, lambda out: images.save(names, out))
    return response


async def get_image(request: web.Request) -> web.StreamResponse:
    """``GET /images/{name}/get``: a save archive of one image."""
    return await _save(request, [request.match_info["name"]])


async def get_images(request: web.Request) -> web.StreamResponse:
    """``GET /images/get?names=a&names=b``: a save archive of several images."""
    return await _save(request, request.query.getall("names", []))


async def load_images(request: web.Request) -> web.StreamResponse:
    """``POST /images/load?quiet=``: ``{"stream": "Loaded image: x\\n"}`` per image."""
    images = _context(request).images
    reader = body_reader(request)

    def report(emit: Emit, progress: Progress) -> None:
        emit({"stream": progress.status + "\n"})

    async def load(emit: Emit) -> list[ImageRecord]:
        return await images.load(reader, progress=lambda p: report(emit, p))

    def finish(records: list[ImageRecord]) -> Iterable[Message]:
        for record in records:
            _publish(request, "load", record.id, record.id)
        return ()

    return await ProgressStream[list[ImageRecord]](request).run(load, finish)


async def prune_images(request: web.Request) -> web.Response:
    """``POST /images/prune?filters=``: ``dangling`` (default true); ``until`` and ``label`` are not
    supported (501)."""
    filters = parse_filters(request.query.get("filters"))
    for key in filters:
        if key in ("until", "label", "label!"):
            raise NotImplementedByEngine(f"the prune filter '{key}' is not supported")
        if key != "dangling":
            raise InvalidParameter(f"invalid filter '{key}'")
    dangling_only = True
    for value in filters.get("dangling", []):
        lowered = value.lower()
        if lowered not in ("true", "false", "1", "0"):
            raise InvalidParameter(f"invalid filter 'dangling={value}'")
        dangling_only = lowered in ("true", "1")
    context = _context(request)
    report, reclaimed = context.images.prune(dangling_only=dangling_only, in_use=context.image_in_use)
    for item in report:
        if "Deleted" in item:
            _publish(request, "delete", item["Deleted"], item["Deleted"])
    return web.json_response({"ImagesDeleted": report or None, "SpaceReclaimed": reclaimed})


def setup(app: web.Application) -> None:
    """Register the image routes (static paths first: ``{name}`` may contain slashes)."""
    add_route(app, "POST", "/auth", auth)
    add_route(app, "GET", "/images/json", list_images)
    add_route(app, "POST", "/images/create", create_image)
    add_route(app, "GET", "/images/search", search_images)
    add_route(app, "GET", "/images/get", get_images)
    add_route(app, "POST", "/images/load", load_images)
    add_route(app, "POST", "/images/prune", prune_images)
    add_route(app, "GET", "/images/{name:.+}/json", inspect_image)
    add_route(app, "GET", "/images/{name:.+}/history", image_history)
    add_route(app, "POST", "/images/{name:.+}/push", push_image)
    add_route(app, "POST", "/images/{name:.+}/tag", tag_image)
    add_route(app, "GET", "/images/{name:.+}/get", get_image)
    add_route(app, "DELETE", "/images/{name:.+}", delete_image)

