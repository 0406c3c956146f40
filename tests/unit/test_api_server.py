"""The API server in-process on a unix socket (no registry, no root): negotiation and headers, system
routes, events, hostile input, stream helpers, hijacking; plus the client side (EngineClient, host
discovery, errors) and the event bus on its own."""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from aiohttp import web

from backend.api.client import EngineClient
from backend.api.errors import BadRequestError, EngineUnreachable, NotFoundError
from backend.api.host import DEFAULT_HOST, HostError, find_host, parse_host
from backend.engine.errors import InvalidParameter
from backend.engine.events import Actor, Event, EventBus, EventFilter
from backend.server.params import read_json_body
from backend.server.streams import (
    Emit,
    ProgressStream,
    error_message,
    frame,
    hijack,
    human_size,
    progress_bar,
    progress_message,
)
from backend.server.versioning import add_route
from tests.fixtures.api_server import ApiServer, docker_cli_or_skip

COMMON_HEADERS = {"api-version": "1.41", "ostype": "linux", "docker-experimental": "false"}


async def _echo_json(request: web.Request) -> web.Response:
    return web.json_response({"got": await read_json_body(request)})


async def _hijack_route(request: web.Request) -> web.StreamResponse:
    """Test route: hijack, send stdout/stderr frames (also after the client's half-close), echo stdin."""
    conn = await hijack(request)
    try:
        await conn.write(frame(1, b"hello\n"))
        data = await conn.reader.read()  # until the client's EOF (half-close)
        await asyncio.sleep(0.05)
        await conn.write(frame(2, b"after-eof:" + data))
    finally:
        conn.close()
    return conn.response


CANCELLED: list[str] = []


async def _slow_progress(request: web.Request) -> web.StreamResponse:
    """Test route: progress that never ends unless the client goes away."""
    async def work(emit: Emit) -> None:
        try:
            for i in range(10_000):
                emit(progress_message("Downloading", "abc", i, 10_000))
                await asyncio.sleep(0.01)
        except asyncio.CancelledError:
            CANCELLED.append("work")
            raise

    return await ProgressStream[None](request).run(work)


def _test_routes(app: web.Application) -> None:
    add_route(app, "POST", "/test/json", _echo_json)
    add_route(app, "POST", "/test/hijack", _hijack_route)
    add_route(app, "POST", "/test/slow", _slow_progress)


@pytest.fixture(scope="module")
def server() -> Iterator[ApiServer]:
    with ApiServer(extra_routes=[_test_routes]) as srv:
        yield srv


@pytest.fixture
def http(server: ApiServer) -> Iterator[httpx.Client]:
    with httpx.Client(transport=httpx.HTTPTransport(uds=server.socket), base_url="http://api.moby.localhost",
                      timeout=10) as client:
        yield client


def assert_common_headers(resp: httpx.Response) -> None:
    for name, value in COMMON_HEADERS.items():
        assert resp.headers.get(name) == value, (name, resp.headers)
    assert resp.headers["server"].startswith("Berth/") and resp.headers["server"].endswith("(linux)")


# --- ping, version negotiation, headers ----------------------------------------------------------------


def test_ping_get_and_head_as_dockerd_answers(http: httpx.Client) -> None:
    resp = http.get("/_ping")
    assert resp.status_code == 200 and resp.text == "OK"
    assert resp.headers["content-type"] == "text/plain; charset=utf-8"
    assert resp.headers["cache-control"] == "no-cache, no-store, must-revalidate"
    assert resp.headers["pragma"] == "no-cache"
    assert "builder-version" not in resp.headers
    assert_common_headers(resp)
    head = http.head("/_ping")
    assert head.status_code == 200 and head.headers["content-length"] == "0" and head.content == b""
    assert_common_headers(head)


@pytest.mark.parametrize("prefix", ["", "/v1.12", "/v1.24", "/v1.41", "/v1.45"])
def test_version_prefixes_accepted(http: httpx.Client, prefix: str) -> None:
    resp = http.get(f"{prefix}/version")
    assert resp.status_code == 200
    doc = resp.json()
    assert doc["ApiVersion"] == "1.41" and doc["MinAPIVersion"] == "1.12" and doc["Os"] == "linux"
    assert doc["Components"][0]["Name"] == "Engine"
    assert_common_headers(resp)


@pytest.mark.parametrize(("path", "status", "message"), [
    ("/v1.99/_ping", 400, "client version 1.99 is too new. Maximum supported API version is 1.41"),
    ("/v1.46/version", 400, "client version 1.46 is too new. Maximum supported API version is 1.41"),
    ("/v1.5/version", 400, "client version 1.5 is too old. Minimum supported API version is 1.12, "
                           "please upgrade your client to a newer version"),
    ("/v1..2/version", 400, "invalid API version '1..2'"),
    ("/vfoo/version", 404, "page not found"),
    ("/v1.41/no/such/route", 404, "page not found"),
])
def test_bad_versions_and_paths_get_json_errors(http: httpx.Client, path: str, status: int, message: str) -> None:
    resp = http.get(path)
    assert resp.status_code == status
    assert resp.headers["content-type"].startswith("application/json")
    assert resp.json() == {"message": message}
    assert_common_headers(resp)
    assert http.get("/_ping").text == "OK"


def test_wrong_method_is_405_json(http: httpx.Client) -> None:
    resp = http.put("/v1.41/version")
    assert resp.status_code == 405 and "message" in resp.json()


def test_info_reports_real_values(http: httpx.Client, server: ApiServer) -> None:
    doc = http.get("/v1.41/info").json()
    assert doc["Images"] == 0 and doc["Containers"] == 0 and doc["ContainersRunning"] == 0
    assert doc["Driver"] == "overlay2" and doc["DockerRootDir"] == server.root
    assert doc["NCPU"] >= 1 and doc["MemTotal"] > 0 and doc["OSType"] == "linux"
    assert doc["KernelVersion"] and doc["OperatingSystem"] and doc["Name"] == socket.gethostname()
    assert doc["CgroupVersion"] in ("1", "2")
    assert doc["Swarm"]["LocalNodeState"] == "inactive"
    assert isinstance(doc["RegistryConfig"]["IndexConfigs"], dict)


def test_system_df_shape(http: httpx.Client) -> None:
    doc = http.get("/v1.41/system/df").json()
    assert doc == {"LayersSize": 0, "Images": [], "Containers": [], "Volumes": [], "BuildCache": []}


# --- hostile input --------------------------------------------------------------------------------


def _assert_400(resp: httpx.Response, fragment: str = "") -> None:
    assert resp.status_code == 400, resp.text
    message = resp.json()["message"]
    assert fragment in message, message


@pytest.mark.parametrize(("filters", "fragment"), [
    ("{", "invalid filters"),
    ('["dangling"]', "invalid filters"),
    ('{"dangling": "true"}', "invalid filter 'dangling'"),
    ('{"bogus": ["x"]}', "invalid filter 'bogus'"),
    ('{"label": [1]}', "invalid filter 'label'"),
    ('{"a": ' + "[" * 5000 + "]" * 5000 + "}", "nested too deeply"),
    ('{"a": [' + "9" * 5000 + "]}", "invalid filters"),
])
def test_bad_filters_are_400(http: httpx.Client, filters: str, fragment: str) -> None:
    _assert_400(http.get("/v1.41/images/json", params={"filters": filters}), fragment)
    assert http.get("/_ping").text == "OK"


def test_deeply_nested_and_huge_json_bodies_are_400(http: httpx.Client) -> None:
    assert http.post("/test/json", json={"a": [1, 2]}).json() == {"got": {"a": [1, 2]}}
    _assert_400(http.post("/test/json", content=b'{"a": '), "invalid JSON body")
    _assert_400(http.post("/test/json", content=b"[" * 200_000 + b"]" * 200_000), "nested too deeply")
    _assert_400(http.post("/test/json", content=b"[" + b"9" * 600_000 + b"]"), "invalid JSON body")
    _assert_400(http.post("/test/json", content=b"\xff\xfe{"), "invalid JSON body")
    assert http.get("/_ping").text == "OK"


def test_json_body_over_the_cap_is_413(http: httpx.Client) -> None:
    big = b'{"a": "' + b"x" * (10 * 1024 * 1024) + b'"}'
    resp = http.post("/test/json", content=big)
    assert resp.status_code == 413 and "too large" in resp.json()["message"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: the cap is enforced while reading
        for i in range(0, len(big), 1 << 20):
            yield big[i:i + (1 << 20)]

    resp = http.post("/test/json", content=chunks())
    assert resp.status_code == 413
    assert http.get("/_ping").text == "OK"


def test_hostile_query_values(http: httpx.Client) -> None:
    _assert_400(http.get("/v1.41/images/search", params={"term": "x", "limit": "9" * 40}), "limit")
    _assert_400(http.get("/v1.41/images/search", params={"term": "x", "limit": "0"}), "outside the range")
    _assert_400(http.get("/v1.41/images/search"), "term is required")
    _assert_400(http.get("/v1.41/events", params={"since": "yesterday"}), "invalid since timestamp")
    _assert_400(http.get("/v1.41/events", params={"filters": '{"type": ["spaceship"]}'}), "type=spaceship")
    _assert_400(http.post("/v1.41/images/create", params={"fromImage": "UPPER/Case"}))
    _assert_400(http.post("/v1.41/images/create"), "fromImage or fromSrc")
    resp = http.post("/v1.41/images/create", params={"fromSrc": "http://127.0.0.1:1/x.tar"})
    assert resp.status_code == 501
    assert http.get("/_ping").text == "OK"


@pytest.mark.parametrize("header", ["%%%", "bm90IGpzb24=", "WzEsMl0=", "eyJ1c2VybmFtZSI6IDF9"])
def test_bad_registry_auth_header_is_400(http: httpx.Client, header: str) -> None:
    resp = http.post("/v1.41/images/create", params={"fromImage": "127.0.0.1:1/x", "tag": "1"},
                     headers={"X-Registry-Auth": header})
    _assert_400(resp, "X-Registry-Auth")


def test_missing_image_routes_are_404(http: httpx.Client) -> None:
    for method, path in [("GET", "/v1.41/images/nope/json"), ("GET", "/v1.41/images/nope/history"),
                         ("DELETE", "/v1.41/images/nope"), ("POST", "/v1.41/images/nope/tag?repo=x"),
                         ("GET", "/v1.41/images/nope/get"), ("GET", "/v1.41/images/get?names=nope"),
                         ("POST", "/v1.41/images/127.0.0.1:1/nope/push?tag=x")]:
        resp = http.request(method, path)
        assert resp.status_code == 404, (method, path, resp.text)
        assert "nope" in resp.json()["message"]


def test_load_of_garbage_is_400_and_server_lives(http: httpx.Client) -> None:
    resp = http.post("/v1.41/images/load", content=b"this is not a tar" * 1000)
    assert resp.status_code == 400 and resp.json()["message"]
    assert http.get("/_ping").text == "OK"


# --- events -----------------------------------------------------------------------------------------


def test_events_since_until_replay_and_filters(server: ApiServer, http: httpx.Client) -> None:
    assert server.events is not None
    start = time.time()
    server.events.emit("container", "create", "c" * 64, {"name": "web", "image": "busybox", "app": "x"})
    server.events.emit("image", "tag", "sha256:" + "a" * 64, {"name": "busybox:latest"})
    server.events.emit("volume", "create", "vol1", {"driver": "local"})
    until = time.time()
    params = {"since": f"{start:.9f}", "until": f"{until:.9f}"}
    resp = http.get("/v1.41/events", params=params)
    assert resp.status_code == 200 and resp.headers["content-type"] == "application/json"
    lines = [json.loads(line) for line in resp.text.splitlines()]
    assert [(e["Type"], e["Action"]) for e in lines] == [("container", "create"), ("image", "tag"),
                                                         ("volume", "create")]
    container = lines[0]
    assert container["status"] == "create" and container["id"] == "c" * 64 and container["from"] == "busybox"
    assert container["Actor"]["Attributes"]["name"] == "web" and container["scope"] == "local"
    assert isinstance(container["timeNano"], int) and container["time"] == container["timeNano"] // 10**9
    assert "status" not in lines[2]

    def only(filters: dict[str, list[str]]) -> list[str]:
        text = http.get("/v1.41/events", params={**params, "filters": json.dumps(filters)}).text
        return [json.loads(line)["Action"] + ":" + json.loads(line)["Type"] for line in text.splitlines()]

    assert only({"type": ["image"]}) == ["tag:image"]
    assert only({"container": ["web"]}) == ["create:container"]
    assert only({"container": ["ccc"]}) == ["create:container"]  # ID prefix
    assert only({"image": ["busybox"]}) == ["create:container", "tag:image"]
    assert only({"label": ["app=x"]}) == ["create:container"]
    assert only({"event": ["create"], "type": ["volume", "container"]}) == ["create:container", "create:volume"]


def test_events_stream_live_through_engine_client(server: ApiServer) -> None:
    assert server.events is not None
    bus = server.events

    async def run() -> list[tuple[str, str]]:
        async with EngineClient(server.url) as client:
            got: list[tuple[str, str]] = []

            async def consume() -> None:
                async for event in client.events(filters={"type": ["network"]}):
                    got.append((event.action, event.actor.id))
                    if len(got) == 2:
                        return

            task = asyncio.create_task(consume())
            for _ in range(100):  # wait until the server has subscribed
                if bus.subscriber_count:
                    break
                await asyncio.sleep(0.02)
            bus.emit("container", "start", "c1")
            bus.emit("network", "create", "n1")
            bus.emit("network", "destroy", "n1")
            await asyncio.wait_for(task, 10)
            return got

    assert asyncio.run(run()) == [("create", "n1"), ("destroy", "n1")]
    for _ in range(100):  # the closed connection unsubscribes on the server
        if bus.subscriber_count == 0:
            break
        time.sleep(0.02)
    assert bus.subscriber_count == 0


def test_event_bus_filters_overflow_and_threads() -> None:
    bus = EventBus(history_size=3, queue_size=2)
    with pytest.raises(InvalidParameter):
        EventFilter.parse({"colour": ["red"]})
    exec_event = Event.now("container", "exec_start: sh -c true", "c1", {"name": "web"})
    assert EventFilter.parse({"event": ["exec_start"]}).matches(exec_event)
    assert not EventFilter.parse({"container": ["other"]}).matches(exec_event)
    assert not EventFilter.parse({"container": ["web"]}).matches(Event.now("network", "connect", "web"))
    assert EventFilter.parse({"image": ["127.0.0.1:5000/x"]}).matches(
        Event("image", "push", Actor("127.0.0.1:5000/x:1", {"name": "127.0.0.1:5000/x:1"}), 0, 0))

    for i in range(5):
        bus.emit("image", "tag", f"i{i}")
    assert [e.Actor.ID for e in bus.history()] == ["i2", "i3", "i4"]  # bounded

    async def run() -> tuple[list[str], bool, list[str]]:
        sub = bus.subscribe(since_ns=0)
        replayed = [(await sub.__anext__()).Actor.ID for _ in range(3)]
        # Published from another thread, three events overflow the queue of two: the subscription ends.
        await asyncio.to_thread(lambda: [bus.emit("image", "tag", f"t{i}") for i in range(3)])
        rest = [e.Actor.ID async for e in sub]
        return replayed, sub.overflowed, rest

    replayed, overflowed, rest = asyncio.run(run())
    assert replayed == ["i2", "i3", "i4"] and overflowed and rest == ["t0", "t1"]
    assert bus.subscriber_count == 0


# --- stream helpers and hijacking ---------------------------------------------------------------


def test_progress_formatting_matches_dockerd() -> None:
    assert human_size(34816) == "34.82kB" and human_size(1982298) == "1.982MB" and human_size(512) == "512B"
    assert human_size(999_950) == "1000kB" and human_size(5 * 10**12) == "5TB"
    bar = progress_bar(34816, 1982298)
    assert bar == "[>" + " " * 50 + "]  34.82kB/1.982MB"
    assert progress_bar(1982298, 1982298) == "[" + "=" * 50 + ">]  1.982MB/1.982MB"
    assert progress_bar(991149, 1982298).startswith("[" + "=" * 25 + ">" + " " * 25 + "] ")
    assert progress_message("Downloading", "4f9c4b0ffa93", 32768, 1064400) == {
        "status": "Downloading", "progressDetail": {"current": 32768, "total": 1064400},
        "progress": "[=>" + " " * 49 + "]  32.77kB/1.064MB", "id": "4f9c4b0ffa93"}
    assert progress_message("Pull complete", "4f9c4b0ffa93") == {
        "status": "Pull complete", "progressDetail": {}, "id": "4f9c4b0ffa93"}
    assert progress_message("Digest: sha256:x") == {"status": "Digest: sha256:x"}
    assert error_message("boom") == {"errorDetail": {"message": "boom"}, "error": "boom"}
    assert frame(1, b"hi\n") == b"\x01\x00\x00\x00\x00\x00\x00\x03hi\n"
    assert frame(2, b"") == b"\x02\x00\x00\x00\x00\x00\x00\x00"
    with pytest.raises(ValueError):
        frame(3, b"x")


def test_hijack_survives_client_half_close(server: ApiServer) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(server.socket)
        s.sendall(b"POST /v1.41/test/hijack HTTP/1.1\r\nHost: api.moby.localhost\r\nConnection: Upgrade\r\n"
                  b"Upgrade: tcp\r\nContent-Length: 0\r\n\r\n")
        data = b""
        while b"\r\n\r\n" not in data:
            data += s.recv(65536)
        s.sendall(b"stdin-bytes")
        s.shutdown(socket.SHUT_WR)  # as the docker CLI does once it has the 101, when stdin is not attached
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "HTTP/1.1 101 UPGRADED"
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    assert headers["content-type"] == "application/vnd.docker.raw-stream"
    assert headers["connection"].lower() == "upgrade" and headers["upgrade"] == "tcp"
    assert headers["api-version"] == "1.41" and "transfer-encoding" not in headers
    assert body == frame(1, b"hello\n") + frame(2, b"after-eof:stdin-bytes")
    with httpx.Client(transport=httpx.HTTPTransport(uds=server.socket)) as c:
        assert c.get("http://x/_ping").text == "OK"


def test_progress_work_is_cancelled_with_its_connection(server: ApiServer) -> None:
    with httpx.Client(transport=httpx.HTTPTransport(uds=server.socket), timeout=10) as c, \
            c.stream("POST", "http://x/v1.41/test/slow") as resp:
        first = json.loads(next(resp.iter_lines()))
        assert first["status"] == "Downloading" and first["progress"].startswith("[>")
    for _ in range(200):
        if CANCELLED:
            break
        time.sleep(0.02)
    assert CANCELLED == ["work"]


# --- the client: EngineClient, errors, host discovery ----------------------------------------------


def test_engine_client_system_calls_and_errors(server: ApiServer, tmp_path: Path) -> None:
    async def run() -> None:
        async with EngineClient(server.url) as client:
            ping = await client.ping()
            assert ping.api_version == "1.41" and ping.os_type == "linux"
            version = await client.version()
            assert version.api_version == "1.41" and client.api_version == "1.41"
            info = await client.info()
            assert info.images == 0 and info.driver == "overlay2" and info.ncpu >= 1
            assert await client.list_images() == []
            with pytest.raises(NotFoundError):
                await client.inspect_image("nope")
            with pytest.raises(BadRequestError, match="invalid filter 'bogus'"):
                await client.list_images(filters={"bogus": ["1"]})
            assert (await client.disk_usage())["Images"] == []
        async with EngineClient(f"unix://{tmp_path}/missing.sock") as missing:
            with pytest.raises(EngineUnreachable):
                await missing.ping()

    asyncio.run(run())


def test_find_host_order(tmp_path: Path) -> None:
    home = tmp_path / "home"
    config = home / ".docker"
    assert find_host(None, {}, home) == DEFAULT_HOST
    meta = config / "contexts" / "meta" / hashlib.sha256(b"desk").hexdigest()
    meta.mkdir(parents=True)
    (meta / "meta.json").write_text(json.dumps({"Name": "desk", "Endpoints": {"docker": {"Host": "unix:///ctx.sock"}}}))
    (config / "config.json").write_text(json.dumps({"currentContext": "desk"}))
    assert find_host(None, {}, home) == "unix:///ctx.sock"
    assert find_host(None, {"DOCKER_CONTEXT": "default"}, home) == DEFAULT_HOST
    assert find_host(None, {"DOCKER_HOST": "tcp://127.0.0.1:1"}, home) == "tcp://127.0.0.1:1"
    assert find_host(None, {"DOCKER_HOST": "tcp://127.0.0.1:1", "BERTH_HOST": "unix:///b.sock"}, home) == "unix:///b.sock"
    assert find_host("unix:///h.sock", {"BERTH_HOST": "unix:///b.sock"}, home) == "unix:///h.sock"
    other = tmp_path / "cfg"
    other.mkdir()
    (other / "config.json").write_text("{not json")
    assert find_host(None, {"DOCKER_CONFIG": str(other)}, home) == DEFAULT_HOST
    assert parse_host("tcp://127.0.0.1").port == 2375
    assert parse_host("tcp://[::1]:2376").host == "::1"
    assert parse_host("/run/x.sock").path == "/run/x.sock"
    for bad in ("npipe://host", "unix://relative", "tcp://h:notaport", "nonsense"):
        with pytest.raises(HostError):
            parse_host(bad)


def test_docker_cli_version_and_info(server: ApiServer) -> None:
    docker_cli_or_skip()
    out = server.docker("version", "--format", "{{.Server.APIVersion}} {{.Server.Os}}").stdout.strip()
    assert out == "1.41 linux"
    info = json.loads(server.docker("info", "--format", "{{json .}}").stdout)
    assert info["Driver"] == "overlay2" and info["NCPU"] >= 1 and info["Images"] == 0
    assert not info.get("ServerErrors")
    events = server.docker("events", "--since", "0s", "--until", "0s", "--format", "{{json .}}").stdout
    assert events.strip() == "" or all(json.loads(line) for line in events.splitlines())


def test_time_filters_take_go_durations_and_timestamps() -> None:
    from backend.server.params import parse_time_filter_ns

    now = 1_700_000_000 * 10**9
    assert parse_time_filter_ns("1h30m", "until", now) == now - 5400 * 10**9
    assert parse_time_filter_ns("1.5s", "until", now) == now - 1_500_000_000
    assert parse_time_filter_ns("1700000000", "until", now) == now
    with pytest.raises(InvalidParameter, match="invalid until timestamp"):
        parse_time_filter_ns("1h garbage", "until", now)
