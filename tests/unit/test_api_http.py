"""backend.api.http, the CLI's own HTTP/1.1 client: against a real aiohttp server on a unix socket (and
TCP/TLS on loopback), plus raw asyncio servers that answer badly (malformed, cut short, silent)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from backend.api import http
from backend.api.client import EngineClient
from backend.api.errors import APIError, EngineUnreachable, NotFoundError
from backend.api.hijack import open_hijacked
from backend.api.host import EngineAddress

GONE = web.AppKey("gone", asyncio.Event)


def _run(coro: Coroutine[Any, Any, None]) -> None:
    asyncio.run(asyncio.wait_for(coro, 30))


# --- servers ------------------------------------------------------------------------------------


async def _json(request: web.Request) -> web.Response:
    return web.json_response({"a": 1}, headers={"Api-Version": "1.41"})


async def _empty(request: web.Request) -> web.Response:
    return web.Response(status=204)


async def _secure(request: web.Request) -> web.Response:
    return web.json_response({"tls": request.secure})


async def _echo(request: web.Request) -> web.Response:
    body = await request.read()
    return web.json_response({"len": len(body), "sha": hashlib.sha256(body).hexdigest(),
                              "te": request.headers.get("Transfer-Encoding"),
                              "cl": request.headers.get("Content-Length"), "ua": request.headers.get("User-Agent"),
                              "path": request.path, "query": list(request.query.items())})


async def _chunked(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse()
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    for piece in (b'{"n": 1}\r\n{"n"', b': 2}\n', b"", b"\xff tail"):
        await resp.write(piece)
        await asyncio.sleep(0.01)
    await resp.write_eof()
    return resp


async def _forever(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse()
    await resp.prepare(request)
    try:
        while True:
            await resp.write(b"tick\n")
            await asyncio.sleep(0.02)
    finally:
        request.app[GONE].set()


async def _not_found(request: web.Request) -> web.Response:
    return web.json_response({"message": "no such thing"}, status=404)


async def _aiohttp_server(sock: str) -> web.AppRunner:
    app = web.Application()
    app[GONE] = asyncio.Event()
    app.add_routes([web.get("/json", _json),
                    web.post("/echo", _echo), web.put("/echo/{tail:.*}", _echo), web.get("/chunked", _chunked),
                    web.get("/forever", _forever), web.get("/empty", _empty),
                    web.post("/missing", _not_found)])
    runner = web.AppRunner(app)
    await runner.setup()
    await web.UnixSite(runner, sock).start()
    return runner


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def _answering(answer: bytes, *, then_wait: bool = False) -> Handler:
    """A raw server handler: read the request head, send ``answer``, then hang up (or stay silent)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(answer)
            await writer.drain()
            if then_wait:
                await asyncio.sleep(60)
        finally:
            writer.close()

    return handle


async def _raw_server(sock: str, handler: Handler) -> asyncio.Server:
    return await asyncio.start_unix_server(handler, sock)


def _unix(tmp_path: Path) -> tuple[str, EngineAddress]:
    sock = str(tmp_path / "http.sock")
    return sock, EngineAddress("unix", path=sock)


# --- well-formed answers --------------------------------------------------------------------------


def test_content_length_json_head_and_no_body(tmp_path: Path) -> None:
    sock, address = _unix(tmp_path)

    async def run() -> None:
        runner = await _aiohttp_server(sock)
        try:
            resp = await http.send(address, "GET", "/json")
            assert resp.status == 200 and resp.headers["api-version"] == "1.41"
            assert await resp.read() == b'{"a": 1}' and resp.json() == {"a": 1}
            head = await http.send(address, "HEAD", "/json")
            assert head.headers["content-length"] == "8" and await head.read() == b""
            empty = await http.send(address, "GET", "/empty")
            assert empty.status == 204 and await empty.read() == b""
        finally:
            await runner.cleanup()

    _run(run())


def test_chunked_answer_as_lines_and_bytes(tmp_path: Path) -> None:
    sock, address = _unix(tmp_path)

    async def run() -> None:
        runner = await _aiohttp_server(sock)
        try:
            resp = await http.send(address, "GET", "/chunked")
            assert resp.headers["transfer-encoding"] == "chunked"
            assert [line async for line in resp.iter_lines()] == ['{"n": 1}', '{"n": 2}', "\ufffd tail"]
            whole = await http.send(address, "GET", "/chunked")
            assert await whole.read() == b'{"n": 1}\r\n{"n": 2}\n\xff tail'
        finally:
            await runner.cleanup()

    _run(run())


def test_request_bodies_paths_and_queries(tmp_path: Path) -> None:
    sock, address = _unix(tmp_path)
    data = os.urandom(300_000)

    async def pieces() -> AsyncIterator[bytes]:
        for i in range(0, len(data), 70_000):
            yield data[i:i + 70_000]
            yield b""

    async def run() -> None:
        runner = await _aiohttp_server(sock)
        try:
            sized = await http.send(address, "POST", "/echo", body=data, headers={"User-Agent": "t/1"})
            doc = (await sized.read(), sized.json())[1]
            assert doc["cl"] == str(len(data)) and doc["te"] is None and doc["ua"] == "t/1"
            assert doc["sha"] == hashlib.sha256(data).hexdigest()
            chunked = await http.send(address, "POST", "/echo", body=pieces())
            doc = (await chunked.read(), chunked.json())[1]
            assert doc["te"] == "chunked" and doc["sha"] == hashlib.sha256(data).hexdigest()
            target = http.request_target("/echo/a b?c/d:e", [("filters", '{"x": ["1 2"]}'), ("n", "a&b=c+d")])
            assert " " not in target
            odd = await http.send(address, "PUT", target)
            doc = (await odd.read(), odd.json())[1]
            assert doc["path"] == "/echo/a b?c/d:e"
            assert doc["query"] == [["filters", '{"x": ["1 2"]}'], ["n", "a&b=c+d"]]
            with pytest.raises(APIError, match="invalid request header"):
                await http.send(address, "GET", "/json", headers={"X-Evil": "a\r\nHost: other"})
        finally:
            await runner.cleanup()

    _run(run())


def test_read_to_close_and_early_answers_to_an_upload(tmp_path: Path) -> None:
    sock, address = _unix(tmp_path)
    refusal = b'HTTP/1.1 400 Bad Request\r\nContent-Length: 22\r\n\r\n{"message": "bad tar"}'

    async def refuse_then_drain(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(refusal)  # before the body came, as an engine that found the archive bad
        while await reader.read(1 << 16):
            pass
        writer.close()

    async def body(total: int) -> AsyncIterator[bytes]:
        for _ in range(total // 65536):
            yield b"x" * 65536

    async def run() -> None:
        async with await _raw_server(sock, _answering(b"HTTP/1.0 200 OK\r\nX-A: 1\r\nx-a: 2\r\n\r\nuntil close")):
            resp = await http.send(address, "GET", "/")
            assert resp.headers["x-a"] == "1, 2" and await resp.read() == b"until close"
        os.unlink(sock)
        async with await _raw_server(sock, refuse_then_drain):
            resp = await http.send(address, "POST", "/images/load", body=body(4 << 20), read_timeout=None)
            assert resp.status == 400 and http.error_message(await resp.read(), resp.reason) == "bad tar"
        os.unlink(sock)
        async with await _raw_server(sock, _answering(refusal)):  # answers and hangs up at once
            try:
                resp = await http.send(address, "POST", "/images/load", body=body(64 << 20), read_timeout=None)
                assert resp.status == 400
            except APIError as exc:  # the answer may be lost with the connection: still one clear line
                assert "\n" not in str(exc)


def test_stopping_a_stream_hangs_up(tmp_path: Path) -> None:
    sock, address = _unix(tmp_path)

    async def run() -> None:
        runner = await _aiohttp_server(sock)
        try:
            async with await http.send(address, "GET", "/forever", read_timeout=None) as resp:
                lines = []
                async for line in resp.iter_lines():
                    lines.append(line)
                    if len(lines) == 3:
                        break
            assert lines == ["tick"] * 3
            await asyncio.wait_for(runner.app[GONE].wait(), 5)
        finally:
            await runner.cleanup()

    _run(run())


def test_tcp_and_tls_on_loopback(tmp_path: Path) -> None:
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)

    async def run() -> None:
        app = web.Application()
        app.add_routes([web.get("/json", _secure)])
        runner = web.AppRunner(app)
        await runner.setup()
        try:
            listeners = [socket.create_server(("127.0.0.1", 0)) for _ in range(2)]
            ports = [listener.getsockname()[1] for listener in listeners]
            await web.SockSite(runner, listeners[0]).start()
            await web.SockSite(runner, listeners[1], ssl_context=server_tls).start()
            resp = await http.send(EngineAddress("tcp", host="127.0.0.1", port=ports[0]), "GET", "/json")
            assert (await resp.read(), resp.json()) == (b'{"tls": false}', {"tls": False})
            trusting = ssl.create_default_context(cafile=str(cert))
            async with EngineClient(f"tcp://127.0.0.1:{ports[1]}", tls=trusting) as client:
                resp = await client._send("GET", "/json", versioned=False)
                assert resp.json() == {"tls": True}
            with pytest.raises(EngineUnreachable, match="CERTIFICATE_VERIFY_FAILED"):
                await http.send(EngineAddress("tcp", host="127.0.0.1", port=ports[1]), "GET", "/json",
                                tls=ssl.create_default_context())
        finally:
            await runner.cleanup()

    _run(run())


# --- errors ----------------------------------------------------------------------------------------


def test_nothing_listening_is_engine_unreachable(tmp_path: Path) -> None:
    sock, address = _unix(tmp_path)
    bound = socket.socket(socket.AF_UNIX)
    bound.bind(sock)  # a socket file nobody listens on: connection refused

    async def run() -> None:
        with pytest.raises(EngineUnreachable, match=f"cannot reach the engine at unix://{sock}"):
            await http.send(address, "GET", "/")
        with pytest.raises(EngineUnreachable):
            await http.send(EngineAddress("unix", path=str(tmp_path / "missing.sock")), "GET", "/")

    try:
        _run(run())
    finally:
        bound.close()


MALFORMED = [
    (b"SSH-2.0-OpenSSH_9.2\r\n\r\n", "malformed answer from the engine: 'SSH-2.0-OpenSSH_9.2'"),
    (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "malformed header from the engine: 'no colon here'"),
    (b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n", "its headers are too long"),
    (b"", "the engine closed the connection before answering"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", "the engine's answer was cut short"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: ten\r\n\r\n", "Content-Length 'ten'"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "chunk size b'zz\\r\\n'"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\n", "chunk size b'-5\\r\\n'"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXY0\r\n\r\n", "bad chunk framing"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab", "the engine's answer was cut short"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5", "the engine's answer was cut short"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nnope!", "malformed answer from the engine: b'nope!'"),
]


@pytest.mark.parametrize(("answer", "message"), MALFORMED)
def test_malformed_answers_are_one_line_errors(tmp_path: Path, answer: bytes, message: str) -> None:
    sock, address = _unix(tmp_path)

    async def run() -> None:
        async with await _raw_server(sock, _answering(answer)):
            with pytest.raises(APIError) as caught:
                resp = await http.send(address, "GET", "/", read_timeout=5)
                await resp.read()
                resp.json()
        assert message in str(caught.value) and "\n" not in str(caught.value) and caught.value.status is None

    _run(run())


def test_timeouts_on_connect_head_and_body(tmp_path: Path) -> None:
    sock, address = _unix(tmp_path)

    async def run() -> None:
        async with await _raw_server(sock, _answering(b"", then_wait=True)):
            started = time.monotonic()
            with pytest.raises(APIError, match=r"the engine did not answer within 0\.3 s"):
                await http.send(address, "GET", "/", read_timeout=0.3)
            assert time.monotonic() - started < 3
        os.unlink(sock)
        async with await _raw_server(sock, _answering(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\npart",
                                                      then_wait=True)):
            resp = await http.send(address, "GET", "/", read_timeout=0.3)
            with pytest.raises(APIError, match=r"did not answer within 0\.3 s"):
                await resp.read()

    _run(run())


def test_hijack_shares_the_client(tmp_path: Path) -> None:
    sock, address = _unix(tmp_path)

    async def run() -> None:
        upgraded = b"HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.raw-stream\r\n\r\nout"
        async with await _raw_server(sock, _answering(upgraded)):
            conn = await open_hijacked(address, "POST", "/containers/x/attach", params={"stream": "1"})
            assert conn.content_type == "application/vnd.docker.raw-stream"
            assert [data async for _, data in conn.output(tty=True)] == [b"out"]
            conn.close()
        os.unlink(sock)
        runner = await _aiohttp_server(sock)
        try:
            with pytest.raises(NotFoundError, match="no such thing"):
                await open_hijacked(address, "POST", "/missing", json_body={"Detach": False})
        finally:
            await runner.cleanup()

    _run(run())


def test_cli_prints_one_line_for_a_broken_engine(tmp_path: Path) -> None:
    sock, _ = _unix(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCKER_", "BERTH_"))}
    env["DOCKER_CONFIG"] = str(tmp_path)

    async def run() -> None:
        async with await _raw_server(sock, _answering(b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n{")):
            proc = await asyncio.create_subprocess_exec(
                str(Path(sys.executable).parent / "berth"), "-H", f"unix://{sock}", "version", env=env,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            out, err = await proc.communicate()
        assert proc.returncode == 1, (out, err)
        assert err.decode().splitlines() == ["berth: the engine's answer was cut short"]

    _run(run())
