"""``EngineClient``: the async Docker Engine API client the GUI, CLI and compose share (httpx).

It talks to any Docker-API engine (Berth or dockerd) on a unix socket or TCP. The API version is
negotiated once, on first use, from ``/_ping``'s ``Api-Version``: the lower of the engine's and
:data:`CLIENT_API_VERSION`.

Errors: every non-2xx answer raises the :mod:`backend.api.errors` class for its status, with the
engine's message; an error line inside a stream raises :class:`~backend.api.errors.StreamError`;
no engine at the address raises :class:`~backend.api.errors.EngineUnreachable`.

Streams (pull, push, load, import, events) are async iterators; leaving the ``async for`` early closes
the connection, which cancels the work on the engine.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import httpx

from backend.api.errors import APIError, EngineUnreachable, StreamError, error_for_status
from backend.api.host import find_host, parse_host
from backend.api.types import (
    EMPTY_AUTH_HEADER,
    DeleteItem,
    Event,
    HistoryItem,
    ImageInspect,
    ImageSummary,
    Ping,
    PruneReport,
    RegistryAuth,
    SearchResult,
    SystemInfo,
    Version,
)

CLIENT_API_VERSION = "1.41"
Filters = Mapping[str, Sequence[str]]
Body = bytes | AsyncIterable[bytes]


def _version_tuple(text: str) -> tuple[int, int]:
    major, _, minor = text.partition(".")
    try:
        return int(major), int(minor)
    except ValueError:
        return 0, 0


def _flag(value: bool) -> str:
    return "1" if value else "0"


def _filters(filters: Filters | None) -> str | None:
    return json.dumps({k: list(v) for k, v in filters.items()}) if filters else None


def _params(**values: str | None) -> dict[str, str]:
    return {k: v for k, v in values.items() if v is not None}


def _message(resp: httpx.Response) -> str:
    try:
        doc = resp.json()
    except ValueError:
        return resp.text.strip() or resp.reason_phrase
    if isinstance(doc, dict) and isinstance(doc.get("message"), str):
        return str(doc["message"])
    return resp.text.strip() or resp.reason_phrase


class EngineClient:
    """An async client for one engine. Use ``async with`` or call :meth:`aclose`.

    ``host`` is an engine address (see :mod:`backend.api.host`); None finds it from the environment.
    ``timeout`` bounds connecting and each non-streaming request; streams wait as long as they must.
    """

    def __init__(self, host: str | None = None, *, timeout: float = 60.0,
                 user_agent: str = "berth-client/0.1", transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.address = parse_host(host or find_host())
        if transport is None:
            transport = (httpx.AsyncHTTPTransport(uds=self.address.path) if self.address.scheme == "unix"
                         else httpx.AsyncHTTPTransport())
        self._timeout = httpx.Timeout(timeout)
        self._stream_timeout = httpx.Timeout(timeout, read=None, write=None)
        self._http = httpx.AsyncClient(base_url=self.address.base_url, transport=transport, timeout=self._timeout,
                                       trust_env=False, headers={"User-Agent": user_agent})
        self._prefix: str | None = None
        self.api_version: str | None = None

    async def __aenter__(self) -> EngineClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connections."""
        await self._http.aclose()

    # -- plumbing ------------------------------------------------------------------------------------

    async def _url(self, path: str, versioned: bool = True) -> str:
        if not versioned:
            return path
        if self._prefix is None:
            ping = await self.ping()
            server = _version_tuple(ping.api_version) if ping.api_version else _version_tuple(CLIENT_API_VERSION)
            chosen = min(server, _version_tuple(CLIENT_API_VERSION))
            self.api_version = f"{chosen[0]}.{chosen[1]}"
            self._prefix = f"/v{self.api_version}"
        return self._prefix + path

    async def _send(self, method: str, path: str, *, versioned: bool = True, params: Mapping[str, str] | None = None,
                    headers: Mapping[str, str] | None = None, content: Body | None = None,
                    json_body: Any = None) -> httpx.Response:
        url = await self._url(path, versioned)
        try:
            resp = await self._http.request(method, url, params=params, headers=headers, content=content,
                                            json=json_body)
        except httpx.TransportError as exc:
            raise EngineUnreachable(f"cannot reach the engine at {self._where()}: {exc}") from exc
        if resp.status_code >= 400:
            raise error_for_status(resp.status_code, _message(resp))
        return resp

    def _where(self) -> str:
        a = self.address
        return f"unix://{a.path}" if a.scheme == "unix" else f"tcp://{a.host}:{a.port}"

    @asynccontextmanager
    async def _open_stream(self, method: str, path: str, *, params: Mapping[str, str] | None = None,
                           headers: Mapping[str, str] | None = None, content: Body | None = None
                           ) -> AsyncIterator[httpx.Response]:
        url = await self._url(path)
        request = self._http.build_request(method, url, params=params, headers=headers, content=content,
                                           timeout=self._stream_timeout)
        try:
            resp = await self._http.send(request, stream=True)
        except httpx.TransportError as exc:
            raise EngineUnreachable(f"cannot reach the engine at {self._where()}: {exc}") from exc
        try:
            if resp.status_code >= 400:
                await resp.aread()
                raise error_for_status(resp.status_code, _message(resp))
            yield resp
        except httpx.TransportError as exc:
            raise APIError(f"the engine's stream broke off: {exc}") from exc
        finally:
            await resp.aclose()

    async def _json_lines(self, method: str, path: str, *, params: Mapping[str, str] | None = None,
                          headers: Mapping[str, str] | None = None, content: Body | None = None
                          ) -> AsyncIterator[dict[str, Any]]:
        async with self._open_stream(method, path, params=params, headers=headers, content=content) as resp:
            async for line in resp.aiter_lines():
                if not line.strip():
                    continue
                try:
                    message = json.loads(line)
                except ValueError as exc:
                    raise APIError(f"malformed line in the engine's stream: {line[:200]!r}") from exc
                if not isinstance(message, dict):
                    raise APIError(f"malformed line in the engine's stream: {line[:200]!r}")
                if message.get("error") or message.get("errorDetail"):
                    detail = message.get("errorDetail")
                    text = message.get("error") or (detail.get("message") if isinstance(detail, dict) else "")
                    raise StreamError(str(text or "unknown error"))
                yield message

    # -- system --------------------------------------------------------------------------------------

    async def ping(self) -> Ping:
        """``GET /_ping`` (unversioned): the engine's API version and OS type."""
        resp = await self._send("GET", "/_ping", versioned=False)
        return Ping(resp.headers.get("Api-Version", ""), resp.headers.get("Ostype", ""),
                    resp.headers.get("Docker-Experimental", "").lower() == "true")

    async def version(self) -> Version:
        """``GET /version``."""
        return Version.from_json((await self._send("GET", "/version")).json())

    async def info(self) -> SystemInfo:
        """``GET /info``."""
        return SystemInfo.from_json((await self._send("GET", "/info")).json())

    async def disk_usage(self) -> dict[str, Any]:
        """``GET /system/df`` (the document as it is)."""
        doc = (await self._send("GET", "/system/df")).json()
        return doc if isinstance(doc, dict) else {}

    async def events(self, *, since: float | None = None, until: float | None = None,
                     filters: Filters | None = None) -> AsyncIterator[Event]:
        """``GET /events``: events from ``since`` (Unix seconds) until ``until`` (forever when None)."""
        params = _params(since=f"{since:.9f}" if since is not None else None,
                         until=f"{until:.9f}" if until is not None else None, filters=_filters(filters))
        async for message in self._json_lines("GET", "/events", params=params):
            yield Event.from_json(message)

    # -- images --------------------------------------------------------------------------------------

    async def list_images(self, *, all: bool = False, filters: Filters | None = None) -> list[ImageSummary]:
        """``GET /images/json``."""
        params = _params(all=_flag(all) if all else None, filters=_filters(filters))
        rows = (await self._send("GET", "/images/json", params=params)).json()
        return [ImageSummary.from_json(r) for r in rows if isinstance(r, dict)]

    async def pull(self, name: str, *, tag: str | None = None, platform: str | None = None,
                   auth: RegistryAuth | None = None) -> AsyncIterator[dict[str, Any]]:
        """``POST /images/create?fromImage=``: the pull's progress messages."""
        params = _params(fromImage=name, tag=tag, platform=platform)
        headers = {"X-Registry-Auth": auth.header() if auth else EMPTY_AUTH_HEADER}
        async for message in self._json_lines("POST", "/images/create", params=params, headers=headers):
            yield message

    async def import_image(self, data: Body, *, repo: str | None = None, tag: str | None = None,
                           changes: Sequence[str] = (), message: str | None = None,
                           platform: str | None = None) -> AsyncIterator[dict[str, Any]]:
        """``POST /images/create?fromSrc=-``: import a root filesystem tar; the last message's
        ``status`` is the new image ID."""
        params: list[tuple[str, str | int | float | bool | None]] = [("fromSrc", "-")]
        params += [(k, v) for k, v in (("repo", repo), ("tag", tag), ("message", message),
                                       ("platform", platform)) if v is not None]
        params += [("changes", c) for c in changes]
        url_params = httpx.QueryParams(params)
        async for line in self._json_lines("POST", "/images/create", params=url_params, content=data,
                                           headers={"Content-Type": "application/x-tar"}):
            yield line

    async def push(self, name: str, *, tag: str | None = None,
                   auth: RegistryAuth | None = None) -> AsyncIterator[dict[str, Any]]:
        """``POST /images/{name}/push``: the push's progress messages (the last carries ``aux``)."""
        headers = {"X-Registry-Auth": auth.header() if auth else EMPTY_AUTH_HEADER}
        async for message in self._json_lines("POST", f"/images/{name}/push", params=_params(tag=tag),
                                              headers=headers):
            yield message

    async def tag_image(self, name: str, repo: str, tag: str | None = None) -> None:
        """``POST /images/{name}/tag``."""
        await self._send("POST", f"/images/{name}/tag", params=_params(repo=repo, tag=tag))

    async def remove_image(self, name: str, *, force: bool = False, noprune: bool = False) -> list[DeleteItem]:
        """``DELETE /images/{name}``."""
        params = _params(force=_flag(force) if force else None, noprune=_flag(noprune) if noprune else None)
        rows = (await self._send("DELETE", f"/images/{name}", params=params)).json()
        return [DeleteItem.from_json(r) for r in rows if isinstance(r, dict)]

    async def inspect_image(self, name: str) -> ImageInspect:
        """``GET /images/{name}/json``."""
        return ImageInspect.from_json((await self._send("GET", f"/images/{name}/json")).json())

    async def image_history(self, name: str) -> list[HistoryItem]:
        """``GET /images/{name}/history``."""
        rows = (await self._send("GET", f"/images/{name}/history")).json()
        return [HistoryItem.from_json(r) for r in rows if isinstance(r, dict)]

    async def search_images(self, term: str, *, limit: int | None = None,
                            filters: Filters | None = None) -> list[SearchResult]:
        """``GET /images/search``."""
        params = _params(term=term, limit=str(limit) if limit is not None else None, filters=_filters(filters))
        rows = (await self._send("GET", "/images/search", params=params)).json()
        return [SearchResult.from_json(r) for r in rows if isinstance(r, dict)]

    async def save_images(self, names: Sequence[str]) -> AsyncIterator[bytes]:
        """``GET /images/get?names=``: the archive's bytes, as they come."""
        params = httpx.QueryParams([("names", n) for n in names])
        async with self._open_stream("GET", "/images/get", params=params) as resp:
            async for chunk in resp.aiter_bytes():
                yield chunk

    async def load_images(self, data: Body, *, quiet: bool = False) -> AsyncIterator[dict[str, Any]]:
        """``POST /images/load``: ``{"stream": "Loaded image: x\\n"}`` per image."""
        params = _params(quiet=_flag(quiet))
        async for message in self._json_lines("POST", "/images/load", params=params, content=data,
                                              headers={"Content-Type": "application/x-tar"}):
            yield message

    async def prune_images(self, *, filters: Filters | None = None) -> PruneReport:
        """``POST /images/prune``."""
        doc = (await self._send("POST", "/images/prune", params=_params(filters=_filters(filters)))).json()
        return PruneReport.from_json(doc if isinstance(doc, dict) else {})
