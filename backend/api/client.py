"""``EngineClient``: the async Docker Engine API client the GUI, CLI and compose share.

It talks to any Docker-API engine (Berth or dockerd) on a unix socket or TCP. The API version is
negotiated once, on first use, from ``/_ping``'s ``Api-Version``: the lower of the engine's and
:data:`CLIENT_API_VERSION`.

Errors: every non-2xx answer raises the :mod:`backend.api.errors` class for its status, with the
engine's message; an error line inside a stream raises :class:`~backend.api.errors.StreamError`;
no engine at the address raises :class:`~backend.api.errors.EngineUnreachable`. HTTP is
:mod:`backend.api.http` (a connection per request, so a command starts fast).

Streams (pull, push, load, import, events, logs, stats, archives) are async iterators; leaving the
``async for`` early closes the connection, which cancels the work on the engine. ``attach`` and exec
with a stream hijack the connection (:mod:`backend.api.hijack`). :meth:`EngineClient.waiting` sends
``wait`` before the container starts, as ``docker run`` must, and reads the answer later.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from backend.api import http
from backend.api.errors import APIError, StreamError, error_for_status
from backend.api.hijack import FrameDecoder, HijackedConnection, open_hijacked
from backend.api.host import find_host, parse_host
from backend.api.swarm_types import Node, Service, SwarmInfo, Task
from backend.api.types import (
    EMPTY_AUTH_HEADER,
    AuthResult,
    BuildCachePruneReport,
    Change,
    ContainerInspect,
    ContainerPruneReport,
    ContainerSummary,
    CreatedContainer,
    DeleteItem,
    Event,
    ExecInspect,
    HistoryItem,
    ImageInspect,
    ImageSummary,
    Network,
    NetworkPruneReport,
    PathStat,
    Ping,
    PruneReport,
    RegistryAuth,
    SearchResult,
    StatsSample,
    SystemInfo,
    TopResult,
    Version,
    Volume,
    VolumePruneReport,
    WaitResult,
)

if TYPE_CHECKING:
    import ssl

    from backend.api.ssh_transport import SSHTunnel

CLIENT_API_VERSION = "1.41"
Filters = Mapping[str, Sequence[str]]
Body = http.Body
Params = http.Params


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


def _json_dict(resp: http.Response) -> dict[str, Any]:
    doc = resp.json()
    return doc if isinstance(doc, dict) else {}


class EngineClient:
    """An async client for one engine. Use ``async with`` or call :meth:`aclose`.

    ``host`` is an engine address (see :mod:`backend.api.host`); None finds it from the environment.
    ``timeout`` bounds connecting and each non-streaming request; streams wait as long as they must.
    """

    def __init__(self, host: str | None = None, *, timeout: float = 60.0,
                 user_agent: str = "berth-client/0.1", tls: ssl.SSLContext | None = None) -> None:
        self.address = parse_host(host or find_host())
        self._timeout = timeout
        self._tls = tls
        self._tunnel: SSHTunnel | None = None
        self._headers = {"User-Agent": user_agent}
        self._streams: set[http.Response] = set()
        self._prefix: str | None = None
        self.api_version: str | None = None

    async def __aenter__(self) -> EngineClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connections of streams still open (and the SSH connection of an ``ssh://`` engine)."""
        for resp in list(self._streams):
            await resp.aclose()
        if self._tunnel is not None:
            self._tunnel.close()
            self._tunnel = None

    def retarget(self, host: str, *, tls: ssl.SSLContext | None = None) -> None:
        """Send later requests to the engine at ``host`` (with ``tls`` for a TLS endpoint; the API version is
        negotiated again); streams already open stay where they are. Raises HostError for an unusable address
        (nothing changes)."""
        self.address = parse_host(host)
        self._tls = tls
        self._prefix = None
        self.api_version = None
        if self._tunnel is not None:
            self._tunnel.close()
            self._tunnel = None

    @property
    def _dialer(self) -> http.Dialer | None:
        """The SSH transport for an ``ssh://`` engine (connected on first use), else None."""
        if self.address.scheme != "ssh":
            return None
        if self._tunnel is None or self._tunnel.address != self.address:
            from backend.api.ssh_transport import SSHTunnel

            self._tunnel = SSHTunnel(self.address)
        return self._tunnel.open_connection

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

    async def _request(self, method: str, path: str, *, versioned: bool = True, params: Params | None = None,
                       headers: Mapping[str, str] | None = None, content: Body | None = None,
                       json_body: Any = None, read_timeout: float | None) -> http.Response:
        """The answer to one request, its body unread; an error status raises (body read, connection closed)."""
        if json_body is not None:
            content = json.dumps(json_body).encode()
            headers = {"Content-Type": "application/json", **(headers or {})}
        target = http.request_target(await self._url(path, versioned), params)
        resp = await http.send(self.address, method, target, headers={**self._headers, **(headers or {})},
                               body=content, timeout=self._timeout, read_timeout=read_timeout, tls=self._tls,
                               dialer=self._dialer)
        if resp.status >= 400:
            raise error_for_status(resp.status, http.error_message(await resp.read(), resp.reason))
        return resp

    async def _send(self, method: str, path: str, *, versioned: bool = True, params: Params | None = None,
                    json_body: Any = None, slow: bool = False) -> http.Response:
        """A request and its whole answer; ``slow``: the answer may take longer than the timeout (stop,
        remove, prune, auth)."""
        resp = await self._request(method, path, versioned=versioned, params=params, json_body=json_body,
                                   read_timeout=None if slow else self._timeout)
        await resp.read()
        return resp

    @asynccontextmanager
    async def _open_stream(self, method: str, path: str, *, params: Params | None = None,
                           headers: Mapping[str, str] | None = None, content: Body | None = None
                           ) -> AsyncIterator[http.Response]:
        resp = await self._request(method, path, params=params, headers=headers, content=content, read_timeout=None)
        self._streams.add(resp)
        try:
            yield resp
        finally:
            self._streams.discard(resp)
            await resp.aclose()

    async def _json_lines(self, method: str, path: str, *, params: Params | None = None,
                          headers: Mapping[str, str] | None = None, content: Body | None = None
                          ) -> AsyncIterator[dict[str, Any]]:
        async with self._open_stream(method, path, params=params, headers=headers, content=content) as resp:
            async for line in resp.iter_lines():
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

    # -- swarm ---------------------------------------------------------------------------------------

    async def swarm_init(self, advertise_addr: str, *, listen_addr: str = "0.0.0.0:2377",
                         default_addr_pool: Sequence[str] = (), subnet_size: int = 24) -> str:
        """``POST /swarm/init``: make this engine a swarm manager (overlay subnets of ``subnet_size`` bits from
        ``default_addr_pool`` when given). Returns the node ID."""
        body: dict[str, Any] = {"ListenAddr": listen_addr, "AdvertiseAddr": advertise_addr, "Spec": {}}
        if default_addr_pool:
            body.update(DefaultAddrPool=list(default_addr_pool), SubnetSize=subnet_size)
        return str((await self._send("POST", "/swarm/init", json_body=body, slow=True)).json())

    async def swarm_join(self, remote: str, token: str, *, advertise_addr: str = "",
                         listen_addr: str = "0.0.0.0:2377") -> None:
        """``POST /swarm/join``: join the swarm whose manager listens at ``remote`` (host:port)."""
        await self._send("POST", "/swarm/join", json_body={"ListenAddr": listen_addr, "AdvertiseAddr": advertise_addr,
                                                            "RemoteAddrs": [remote], "JoinToken": token}, slow=True)

    async def swarm_leave(self, *, force: bool = False) -> None:
        """``POST /swarm/leave``."""
        await self._send("POST", "/swarm/leave", params=_params(force=_flag(force)), slow=True)

    async def swarm_inspect(self) -> SwarmInfo:
        """``GET /swarm`` (a manager only; a worker or a lone engine answers 503)."""
        return SwarmInfo.from_api(_json_dict(await self._send("GET", "/swarm")))

    async def list_nodes(self, *, filters: Filters | None = None) -> list[Node]:
        """``GET /nodes``."""
        resp = await self._send("GET", "/nodes", params=_params(filters=_filters(filters)))
        return [Node.from_api(doc) for doc in resp.json() if isinstance(doc, dict)]

    async def list_services(self, *, filters: Filters | None = None) -> list[Service]:
        """``GET /services?status=true``."""
        resp = await self._send("GET", "/services", params=_params(filters=_filters(filters), status="true"))
        return [Service.from_api(doc) for doc in resp.json() if isinstance(doc, dict)]

    async def inspect_service(self, ref: str) -> Service:
        """``GET /services/{id}``."""
        return Service.from_api(_json_dict(await self._send("GET", f"/services/{ref}")))

    async def create_service(self, spec: Mapping[str, Any]) -> str:
        """``POST /services/create``. Returns the new service's ID."""
        return _str_field(_json_dict(await self._send("POST", "/services/create", json_body=spec)), "ID")

    async def update_service(self, ref: str, version: int, spec: Mapping[str, Any]) -> list[str]:
        """``POST /services/{id}/update`` at ``version`` (the one the spec was read at). Returns the warnings."""
        resp = await self._send("POST", f"/services/{ref}/update", params={"version": str(version)}, json_body=spec)
        warnings = _json_dict(resp).get("Warnings")
        return [str(w) for w in warnings] if isinstance(warnings, list) else []

    async def remove_service(self, ref: str) -> None:
        """``DELETE /services/{id}``."""
        await self._send("DELETE", f"/services/{ref}")

    async def list_tasks(self, *, filters: Filters | None = None) -> list[Task]:
        """``GET /tasks``."""
        resp = await self._send("GET", "/tasks", params=_params(filters=_filters(filters)))
        return [Task.from_api(doc) for doc in resp.json() if isinstance(doc, dict)]

    async def service_logs(self, ref: str, *, follow: bool = False, tail: str | None = None,
                           timestamps: bool = False) -> AsyncIterator[tuple[int, bytes]]:
        """``GET /services/{id}/logs``: ``(stream, bytes)`` as :meth:`logs` (services' logs are multiplexed)."""
        params = _params(follow=_flag(follow) if follow else None, stdout="1", stderr="1", tail=tail,
                         timestamps=_flag(timestamps) if timestamps else None)
        decoder = FrameDecoder()
        async with self._open_stream("GET", f"/services/{ref}/logs", params=params) as resp:
            async for chunk in resp.iter_bytes():
                for item in decoder.feed(chunk):
                    yield item

    # -- system --------------------------------------------------------------------------------------

    async def ping(self) -> Ping:
        """``GET /_ping`` (unversioned): the engine's API version and OS type."""
        resp = await self._send("GET", "/_ping", versioned=False)
        return Ping(resp.headers.get("api-version", ""), resp.headers.get("ostype", ""),
                    resp.headers.get("docker-experimental", "").lower() == "true")

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
        params: list[tuple[str, str]] = [("fromSrc", "-")]
        params += [(k, v) for k, v in (("repo", repo), ("tag", tag), ("message", message),
                                       ("platform", platform)) if v is not None]
        params += [("changes", c) for c in changes]
        async for line in self._json_lines("POST", "/images/create", params=params, content=data,
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
        async with self._open_stream("GET", "/images/get", params=[("names", n) for n in names]) as resp:
            async for chunk in resp.iter_bytes():
                yield chunk

    async def load_images(self, data: Body, *, quiet: bool = False) -> AsyncIterator[dict[str, Any]]:
        """``POST /images/load``: ``{"stream": "Loaded image: x\\n"}`` per image."""
        params = _params(quiet=_flag(quiet))
        async for message in self._json_lines("POST", "/images/load", params=params, content=data,
                                              headers={"Content-Type": "application/x-tar"}):
            yield message

    async def build(self, context: Body, *, tags: Sequence[str] = (), dockerfile: str | None = None,
                    build_args: Mapping[str, str] | None = None, target: str | None = None, nocache: bool = False,
                    pull: bool = False, labels: Mapping[str, str] | None = None,
                    quiet: bool = False) -> AsyncIterator[dict[str, Any]]:
        """``POST /build`` with the context tar: the classic builder's messages (``stream`` text, pull
        progress, ``aux`` with the image ID); an error in the stream raises StreamError."""
        params: list[tuple[str, str]] = [("t", t) for t in tags]
        params += [(k, v) for k, v in (
            ("dockerfile", dockerfile), ("target", target),
            ("buildargs", json.dumps(dict(build_args)) if build_args else None),
            ("labels", json.dumps(dict(labels)) if labels else None)) if v]
        params += [(k, "1") for k, on in (("nocache", nocache), ("pull", pull), ("q", quiet)) if on]
        headers = {"Content-Type": "application/x-tar", "X-Registry-Config": EMPTY_AUTH_HEADER}
        async for message in self._json_lines("POST", "/build", params=params, content=context, headers=headers):
            yield message

    async def prune_build_cache(self) -> BuildCachePruneReport:
        """``POST /build/prune``."""
        return BuildCachePruneReport.from_json(_json_dict(await self._send("POST", "/build/prune")))

    async def prune_images(self, *, filters: Filters | None = None) -> PruneReport:
        """``POST /images/prune``."""
        doc = (await self._send("POST", "/images/prune", params=_params(filters=_filters(filters)))).json()
        return PruneReport.from_json(doc if isinstance(doc, dict) else {})

    # -- volumes -------------------------------------------------------------------------------------

    async def create_volume(self, name: str | None = None, *, driver: str = "local",
                            labels: Mapping[str, str] | None = None,
                            options: Mapping[str, str] | None = None) -> Volume:
        """``POST /volumes/create`` (the existing volume if ``name`` is taken)."""
        body = {"Name": name or "", "Driver": driver, "Labels": dict(labels or {}), "DriverOpts": dict(options or {})}
        return Volume.from_json(_json_dict(await self._send("POST", "/volumes/create", json_body=body)))

    async def list_volumes(self, *, filters: Filters | None = None) -> list[Volume]:
        """``GET /volumes``."""
        doc = _json_dict(await self._send("GET", "/volumes", params=_params(filters=_filters(filters))))
        return [Volume.from_json(v) for v in doc.get("Volumes") or [] if isinstance(v, dict)]

    async def inspect_volume(self, name: str) -> Volume:
        """``GET /volumes/{name}``."""
        return Volume.from_json(_json_dict(await self._send("GET", f"/volumes/{name}")))

    async def remove_volume(self, name: str, *, force: bool = False) -> None:
        """``DELETE /volumes/{name}``."""
        await self._send("DELETE", f"/volumes/{name}", params=_params(force=_flag(force) if force else None))

    async def prune_volumes(self, *, filters: Filters | None = None) -> VolumePruneReport:
        """``POST /volumes/prune``."""
        doc = (await self._send("POST", "/volumes/prune", params=_params(filters=_filters(filters)))).json()
        return VolumePruneReport.from_json(doc if isinstance(doc, dict) else {})

    # -- networks ------------------------------------------------------------------------------------

    async def list_networks(self, *, filters: Filters | None = None) -> list[Network]:
        """``GET /networks``."""
        rows = (await self._send("GET", "/networks", params=_params(filters=_filters(filters)))).json()
        return [Network.from_json(r) for r in rows or [] if isinstance(r, dict)]

    async def inspect_network(self, ref: str) -> Network:
        """``GET /networks/{id}`` (a name, an ID or an ID prefix)."""
        return Network.from_json(_json_dict(await self._send("GET", f"/networks/{ref}")))

    async def create_network(self, name: str, *, driver: str = "bridge", subnet: str = "", gateway: str = "",
                             ip_range: str = "", internal: bool = False, attachable: bool = False,
                             labels: Mapping[str, str] | None = None,
                             options: Mapping[str, str] | None = None) -> str:
        """``POST /networks/create`` as the docker CLI sends it. Returns the new network's ID."""
        ipam = {k: v for k, v in (("Subnet", subnet), ("Gateway", gateway), ("IPRange", ip_range)) if v}
        body = {"Name": name, "Driver": driver, "CheckDuplicate": True, "Internal": internal, "Attachable": attachable,
                "IPAM": {"Driver": "default", "Options": {}, "Config": [ipam] if ipam else []},
                "Labels": dict(labels or {}), "Options": dict(options or {})}
        return _str_field(_json_dict(await self._send("POST", "/networks/create", json_body=body)), "Id")

    async def remove_network(self, ref: str) -> None:
        """``DELETE /networks/{id}``."""
        await self._send("DELETE", f"/networks/{ref}", slow=True)

    async def prune_networks(self, *, filters: Filters | None = None) -> NetworkPruneReport:
        """``POST /networks/prune``."""
        resp = await self._send("POST", "/networks/prune", params=_params(filters=_filters(filters)), slow=True)
        return NetworkPruneReport.from_json(_json_dict(resp))

    async def connect_network(self, network: str, container: str, *, aliases: Sequence[str] = (),
                              ipv4: str = "") -> None:
        """``POST /networks/{id}/connect``: join a container (now if it runs, else from its next start)."""
        endpoint = {"Aliases": list(aliases) or None, "IPAMConfig": {"IPv4Address": ipv4} if ipv4 else None}
        await self._send("POST", f"/networks/{network}/connect", slow=True,
                         json_body={"Container": container, "EndpointConfig": endpoint})

    async def disconnect_network(self, network: str, container: str, *, force: bool = False) -> None:
        """``POST /networks/{id}/disconnect``."""
        await self._send("POST", f"/networks/{network}/disconnect", slow=True,
                         json_body={"Container": container, "Force": force})

    # -- containers ----------------------------------------------------------------------------------

    async def create_container(self, config: Mapping[str, Any], *, name: str | None = None,
                               platform: str | None = None) -> CreatedContainer:
        """``POST /containers/create`` with Docker's create body (``Config`` plus ``HostConfig``)."""
        resp = await self._send("POST", "/containers/create", params=_params(name=name, platform=platform),
                                json_body=dict(config))
        return CreatedContainer.from_json(_json_dict(resp))

    async def list_containers(self, *, all: bool = False, limit: int | None = None, size: bool = False,
                              filters: Filters | None = None) -> list[ContainerSummary]:
        """``GET /containers/json``."""
        params = _params(all=_flag(all) if all else None, limit=str(limit) if limit else None,
                         size=_flag(size) if size else None, filters=_filters(filters))
        rows = (await self._send("GET", "/containers/json", params=params)).json()
        return [ContainerSummary.from_json(r) for r in rows if isinstance(r, dict)]

    async def inspect_container(self, ref: str, *, size: bool = False) -> ContainerInspect:
        """``GET /containers/{id}/json``."""
        params = _params(size=_flag(size) if size else None)
        return ContainerInspect.from_json(_json_dict(await self._send("GET", f"/containers/{ref}/json",
                                                                      params=params)))

    async def start_container(self, ref: str) -> None:
        """``POST /containers/{id}/start``."""
        await self._send("POST", f"/containers/{ref}/start")

    async def stop_container(self, ref: str, *, timeout: int | None = None, signal: str | None = None) -> None:
        """``POST /containers/{id}/stop``; waits as long as the stop takes."""
        params = _params(t=str(timeout) if timeout is not None else None, signal=signal)
        await self._send("POST", f"/containers/{ref}/stop", params=params, slow=True)

    async def restart_container(self, ref: str, *, timeout: int | None = None) -> None:
        """``POST /containers/{id}/restart``; waits as long as the stop takes."""
        await self._send("POST", f"/containers/{ref}/restart",
                         params=_params(t=str(timeout) if timeout is not None else None), slow=True)

    async def kill_container(self, ref: str, signal: str | None = None) -> None:
        """``POST /containers/{id}/kill``."""
        await self._send("POST", f"/containers/{ref}/kill", params=_params(signal=signal))

    async def pause_container(self, ref: str) -> None:
        """``POST /containers/{id}/pause``."""
        await self._send("POST", f"/containers/{ref}/pause")

    async def unpause_container(self, ref: str) -> None:
        """``POST /containers/{id}/unpause``."""
        await self._send("POST", f"/containers/{ref}/unpause")

    async def rename_container(self, ref: str, name: str) -> None:
        """``POST /containers/{id}/rename``."""
        await self._send("POST", f"/containers/{ref}/rename", params={"name": name})

    async def remove_container(self, ref: str, *, force: bool = False, volumes: bool = False) -> None:
        """``DELETE /containers/{id}``."""
        params = _params(force=_flag(force) if force else None, v=_flag(volumes) if volumes else None)
        await self._send("DELETE", f"/containers/{ref}", params=params, slow=True)

    @asynccontextmanager
    async def waiting(self, ref: str, condition: str = "not-running") -> AsyncIterator[PendingWait]:
        """``POST /containers/{id}/wait``, sent now and answered later: inside the block the engine is
        already waiting (start the container there); ``await pending.result()`` gives the exit."""
        async with self._open_stream("POST", f"/containers/{ref}/wait", params={"condition": condition}) as resp:
            yield PendingWait(resp)

    async def wait_container(self, ref: str, condition: str = "not-running") -> WaitResult:
        """``POST /containers/{id}/wait``: blocks until the condition holds."""
        async with self.waiting(ref, condition) as pending:
            return await pending.result()

    async def logs(self, ref: str, *, tty: bool, follow: bool = False, stdout: bool = True, stderr: bool = True,
                   since: str | None = None, until: str | None = None, tail: str | None = None,
                   timestamps: bool = False) -> AsyncIterator[tuple[int, bytes]]:
        """``GET /containers/{id}/logs``: ``(stream, bytes)`` pieces (1 stdout, 2 stderr); a tty
        container's log is raw, so all of it comes as stdout."""
        params = _params(follow=_flag(follow) if follow else None, stdout=_flag(stdout), stderr=_flag(stderr),
                         since=since, until=until, tail=tail, timestamps=_flag(timestamps) if timestamps else None)
        decoder = None if tty else FrameDecoder()
        async with self._open_stream("GET", f"/containers/{ref}/logs", params=params) as resp:
            async for chunk in resp.iter_bytes():
                if decoder is None:
                    yield 1, chunk
                else:
                    for item in decoder.feed(chunk):
                        yield item

    async def attach(self, ref: str, *, stdin: bool = False, stdout: bool = True, stderr: bool = True,
                     logs: bool = False, detach_keys: str | None = None) -> HijackedConnection:
        """``POST /containers/{id}/attach`` (hijacked). Works before start; close the connection when done."""
        params = _params(stream="1", stdin=_flag(stdin), stdout=_flag(stdout), stderr=_flag(stderr),
                         logs=_flag(logs) if logs else None, detachKeys=detach_keys)
        return await open_hijacked(self.address, "POST", await self._url(f"/containers/{ref}/attach"),
                                   params=params, timeout=self._timeout, tls=self._tls, dialer=self._dialer)

    async def resize_container(self, ref: str, height: int, width: int) -> None:
        """``POST /containers/{id}/resize`` (the container's tty)."""
        await self._send("POST", f"/containers/{ref}/resize", params={"h": str(height), "w": str(width)})

    async def top(self, ref: str, ps_args: str | None = None) -> TopResult:
        """``GET /containers/{id}/top``."""
        return TopResult.from_json(_json_dict(await self._send("GET", f"/containers/{ref}/top",
                                                               params=_params(ps_args=ps_args))))

    async def stats(self, ref: str, *, stream: bool = True) -> AsyncIterator[StatsSample]:
        """``GET /containers/{id}/stats``: one sample a second, or one in all without ``stream``."""
        params = {"stream": _flag(stream)}
        async with self._open_stream("GET", f"/containers/{ref}/stats", params=params) as resp:
            async for line in resp.iter_lines():
                if line.strip():
                    try:
                        doc = json.loads(line)
                    except ValueError as exc:
                        raise APIError(f"malformed stats line: {line[:200]!r}") from exc
                    if isinstance(doc, dict):
                        yield StatsSample.from_json(doc)

    async def container_changes(self, ref: str) -> list[Change]:
        """``GET /containers/{id}/changes``."""
        rows = (await self._send("GET", f"/containers/{ref}/changes")).json()
        return [Change.from_json(r) for r in rows or [] if isinstance(r, dict)]

    async def commit_container(self, ref: str, *, repo: str | None = None, tag: str | None = None,
                               comment: str | None = None, author: str | None = None, changes: Sequence[str] = (),
                               pause: bool = True, config: Mapping[str, Any] | None = None) -> str:
        """``POST /commit``: a new image from the container's changes (``changes``: Dockerfile lines;
        ``config``: a container config replacing the container's). Returns the image ID."""
        params: list[tuple[str, str]] = [("container", ref), ("pause", _flag(pause))]
        params += [(k, v) for k, v in (("repo", repo), ("tag", tag), ("comment", comment), ("author", author))
                   if v is not None]
        params += [("changes", c) for c in changes]
        resp = await self._send("POST", "/commit", params=params, json_body=config, slow=True)
        return str(_json_dict(resp).get("Id") or "")

    async def update_container(self, ref: str, update: Mapping[str, Any]) -> list[str]:
        """``POST /containers/{id}/update`` (resources, restart policy); the engine's warnings."""
        doc = _json_dict(await self._send("POST", f"/containers/{ref}/update", json_body=dict(update)))
        warnings = doc.get("Warnings")
        return [w for w in warnings if isinstance(w, str)] if isinstance(warnings, list) else []

    async def prune_containers(self, *, filters: Filters | None = None) -> ContainerPruneReport:
        """``POST /containers/prune``."""
        resp = await self._send("POST", "/containers/prune", params=_params(filters=_filters(filters)), slow=True)
        return ContainerPruneReport.from_json(_json_dict(resp))

    async def export_container(self, ref: str) -> AsyncIterator[bytes]:
        """``GET /containers/{id}/export``: the root filesystem as a tar, as it comes."""
        async with self._open_stream("GET", f"/containers/{ref}/export") as resp:
            async for chunk in resp.iter_bytes():
                yield chunk

    async def stat_path(self, ref: str, path: str) -> PathStat:
        """``HEAD /containers/{id}/archive``: what is at ``path`` in the container."""
        resp = await self._send("HEAD", f"/containers/{ref}/archive", params={"path": path})
        return _path_stat(resp)

    @asynccontextmanager
    async def get_archive(self, ref: str, path: str) -> AsyncIterator[tuple[PathStat, AsyncIterator[bytes]]]:
        """``GET /containers/{id}/archive``: what is at ``path`` and a tar of it, as it comes."""
        async with self._open_stream("GET", f"/containers/{ref}/archive", params={"path": path}) as resp:
            yield _path_stat(resp), resp.iter_bytes()

    async def put_archive(self, ref: str, path: str, data: Body, *, no_overwrite_dir_non_dir: bool = False,
                          copy_uid_gid: bool = False) -> None:
        """``PUT /containers/{id}/archive``: unpack a tar into the directory ``path``."""
        params = _params(path=path, noOverwriteDirNonDir="true" if no_overwrite_dir_non_dir else None,
                         copyUIDGID="true" if copy_uid_gid else None)
        async with self._open_stream("PUT", f"/containers/{ref}/archive", params=params, content=data,
                                     headers={"Content-Type": "application/x-tar"}) as resp:
            await resp.read()

    # -- exec ----------------------------------------------------------------------------------------

    async def exec_create(self, ref: str, cmd: Sequence[str], *, tty: bool = False, stdin: bool = False,
                          stdout: bool = True, stderr: bool = True, env: Sequence[str] = (), user: str = "",
                          workdir: str = "", privileged: bool = False) -> str:
        """``POST /containers/{id}/exec``: the exec instance's ID."""
        body = {"Cmd": list(cmd), "Tty": tty, "AttachStdin": stdin, "AttachStdout": stdout,
                "AttachStderr": stderr, "Env": list(env) or None, "User": user, "WorkingDir": workdir,
                "Privileged": privileged}
        return _str_field(_json_dict(await self._send("POST", f"/containers/{ref}/exec", json_body=body)), "Id")

    async def exec_start_detached(self, exec_id: str) -> None:
        """``POST /exec/{id}/start`` with ``Detach``: the process runs on its own."""
        await self._send("POST", f"/exec/{exec_id}/start", json_body={"Detach": True, "Tty": False})

    async def exec_attach(self, exec_id: str, *, tty: bool) -> HijackedConnection:
        """``POST /exec/{id}/start`` (hijacked): the process's stdio. Close the connection when done."""
        return await open_hijacked(self.address, "POST", await self._url(f"/exec/{exec_id}/start"),
                                   json_body={"Detach": False, "Tty": tty}, timeout=self._timeout, tls=self._tls,
                                   dialer=self._dialer)

    async def exec_inspect(self, exec_id: str) -> ExecInspect:
        """``GET /exec/{id}/json``."""
        return ExecInspect.from_json(_json_dict(await self._send("GET", f"/exec/{exec_id}/json")))

    async def exec_resize(self, exec_id: str, height: int, width: int) -> None:
        """``POST /exec/{id}/resize``."""
        await self._send("POST", f"/exec/{exec_id}/resize", params={"h": str(height), "w": str(width)})

    # -- registries ----------------------------------------------------------------------------------

    async def login(self, auth: RegistryAuth) -> AuthResult:
        """``POST /auth``: check credentials with the registry (through the engine)."""
        body = {k: v for k, v in (("username", auth.username), ("password", auth.password),
                                  ("serveraddress", auth.serveraddress)) if v}
        return AuthResult.from_json(_json_dict(await self._send("POST", "/auth", json_body=body, slow=True)))


class PendingWait:
    """A ``wait`` the engine has accepted; :meth:`result` reads its answer (blocking until it comes)."""

    def __init__(self, resp: http.Response) -> None:
        self._resp = resp

    async def result(self) -> WaitResult:
        """The exit. Raises APIError if the connection broke off or the answer is malformed."""
        await self._resp.read()
        return WaitResult.from_json(_json_dict(self._resp))


def _str_field(doc: dict[str, Any], key: str) -> str:
    value = doc.get(key)
    if not isinstance(value, str) or not value:
        raise APIError(f"the engine's answer has no {key}")
    return value


def _path_stat(resp: http.Response) -> PathStat:
    header = resp.headers.get("x-docker-container-path-stat")
    if not header:
        raise APIError("the engine's answer has no X-Docker-Container-Path-Stat header")
    try:
        return PathStat.from_header(header)
    except ValueError as exc:
        raise APIError(str(exc)) from exc
