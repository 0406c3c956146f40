"""A small asyncio HTTP/1.1 client for the engine's API: one connection per request, nothing pooled.

It speaks what the Docker Engine API needs and no more: unix sockets and TCP (TLS when given an
:class:`ssl.SSLContext`), request bodies as bytes (``Content-Length``) or async iterables
(``Transfer-Encoding: chunked``), responses framed by ``Content-Length``, chunked or read to close,
read whole or streamed (chunks or lines). A :class:`Response` owns its connection: reading the body to
its end, or :meth:`Response.aclose`, closes it, so a consumer that stops early hangs up on the engine.

``timeout`` bounds connecting; ``read_timeout`` bounds each write and each read (None: wait as long as
it takes, for streams). Errors are :mod:`backend.api.errors`: :class:`EngineUnreachable` when the
connection cannot be made, :class:`APIError` (no status) when it breaks, times out or the answer is not
HTTP. :mod:`backend.api.hijack` builds on the same pieces (:func:`connect`, :func:`request_head`,
:func:`read_head`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote, urlencode

from backend.api.errors import APIError, EngineUnreachable
from backend.api.host import EngineAddress

if TYPE_CHECKING:
    import ssl

T = TypeVar("T")
Body = bytes | AsyncIterable[bytes]
Params = Mapping[str, str] | Sequence[tuple[str, str]]
Dialer = Callable[[float | None], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]
"""Makes the connection itself (given the connect timeout): the transport of ``ssh://`` addresses."""

MAX_HEAD = 64 * 1024
"""The longest status line plus headers (and chunk-size line) accepted from the engine."""
_PIECE = 64 * 1024


@dataclass(frozen=True)
class Head:
    """A response's status line and headers (names lower-cased; repeated headers joined by ``, ``)."""

    status: int
    reason: str
    headers: dict[str, str]


def where(address: EngineAddress) -> str:
    """The address as a user writes it (for messages)."""
    if address.scheme == "ssh":
        return f"ssh://{address.user}@{address.host}:{address.port}{address.path}"
    return f"unix://{address.path}" if address.scheme == "unix" else f"tcp://{address.host}:{address.port}"


def host_header(address: EngineAddress) -> str:
    """The ``Host`` header for requests to ``address`` (docker's name for a unix socket, also over SSH)."""
    if address.scheme != "tcp":
        return "api.moby.localhost"
    return f"[{address.host}]:{address.port}" if ":" in address.host else f"{address.host}:{address.port}"


def request_target(path: str, params: Params | None = None) -> str:
    """``path`` percent-encoded, plus the query string of ``params`` (spaces as ``%20``)."""
    items = list(params.items()) if isinstance(params, Mapping) else list(params or ())
    query = urlencode(items, quote_via=quote)
    return quote(path, safe="/:@") + ("?" + query if query else "")


def request_head(method: str, target: str, headers: Mapping[str, str]) -> bytes:
    """The request line and headers, ending with the blank line. Raises APIError for a header that
    would break the framing (a CR or LF in it)."""
    lines = [f"{method} {target} HTTP/1.1"]
    for name, value in headers.items():
        if any(c in name + value for c in "\r\n\0") or not name or ":" in name:
            raise APIError(f"invalid request header {name!r}")
        lines.append(f"{name}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def connect(address: EngineAddress, timeout: float | None, tls: ssl.SSLContext | None = None,
                  dialer: Dialer | None = None) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection to the engine (TLS over TCP when ``tls`` is given; made by ``dialer`` when given, which
    ``ssh://`` needs). Raises EngineUnreachable (nothing listens, refused, handshake failed, no dialer for
    ``ssh://``, or no connection within ``timeout`` seconds)."""
    try:
        async with asyncio.timeout(timeout):
            if dialer is not None:
                return await dialer(timeout)
            if address.scheme == "ssh":
                raise EngineUnreachable(f"cannot reach the engine at {where(address)}: no SSH transport given")
            if address.scheme == "unix":
                return await asyncio.open_unix_connection(address.path, limit=MAX_HEAD)
            return await asyncio.open_connection(address.host, address.port, limit=MAX_HEAD, ssl=tls)
    except TimeoutError as exc:
        raise EngineUnreachable(f"cannot reach the engine at {where(address)}: no connection within "
                                f"{timeout:g} s") from exc
    except OSError as exc:  # ssl.SSLError included
        raise EngineUnreachable(f"cannot reach the engine at {where(address)}: {exc}") from exc


async def read_head(reader: asyncio.StreamReader) -> Head:
    """Read a status line and headers. Raises APIError when the answer is not HTTP/1.x, its head is
    longer than :data:`MAX_HEAD`, or the engine hung up first (OSError and TimeoutError pass)."""
    try:
        raw = await reader.readuntil(b"\r\n\r\n")
    except asyncio.LimitOverrunError as exc:
        raise APIError("malformed answer from the engine: its headers are too long") from exc
    except asyncio.IncompleteReadError as exc:
        raise APIError("the engine closed the connection before answering") from exc
    status_line, *lines = raw[:-4].decode("latin-1").split("\r\n")
    version, _, rest = status_line.partition(" ")
    code, _, reason = rest.partition(" ")
    if not version.startswith("HTTP/1.") or len(code) != 3 or not code.isdigit():
        raise APIError(f"malformed answer from the engine: {status_line[:100]!r}")
    headers: dict[str, str] = {}
    for line in lines:
        name, sep, value = line.partition(":")
        if not sep or not name.strip():
            raise APIError(f"malformed header from the engine: {line[:100]!r}")
        key = name.strip().lower()
        headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
    return Head(int(code), reason, headers)


def error_message(body: bytes, reason: str) -> str:
    """The message of an error answer: Docker's ``{"message": ...}``, else the body's text, else ``reason``."""
    try:
        doc = json.loads(body)
    except ValueError:
        doc = None
    if isinstance(doc, dict) and isinstance(doc.get("message"), str):
        return str(doc["message"])
    return body.decode(errors="replace").strip() or reason


async def _io(operation: Awaitable[T], timeout: float | None) -> T:
    """Await one read or write on the connection, its failures as APIError."""
    try:
        async with asyncio.timeout(timeout):
            return await operation
    except TimeoutError as exc:
        raise APIError(f"the engine did not answer within {timeout:g} s") from exc
    except asyncio.IncompleteReadError as exc:
        raise APIError("the engine's answer was cut short") from exc
    except (asyncio.LimitOverrunError, ValueError) as exc:  # readline's limit
        raise APIError("malformed answer from the engine: a line is too long") from exc
    except OSError as exc:
        raise APIError(f"the engine's connection broke off: {exc}") from exc


def _chunk_size(line: bytes) -> int:
    if not line.endswith(b"\n"):
        raise APIError("the engine's answer was cut short")
    size = line.split(b";")[0].strip()
    if not size or size.strip(b"0123456789abcdefABCDEF"):
        raise APIError(f"malformed answer from the engine: chunk size {line[:40]!r}")
    return int(size, 16)


class Response:
    """An answer whose body is still on the connection. Read it whole (:meth:`read`), or iterate it
    (:meth:`iter_bytes`, :meth:`iter_lines`) once; the connection closes at the body's end or on
    :meth:`aclose` (also ``async with``). Reading raises APIError when the connection breaks, a read
    takes longer than ``read_timeout``, or the framing is malformed."""

    def __init__(self, head: Head, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *,
                 method: str, read_timeout: float | None) -> None:
        self.status = head.status
        self.reason = head.reason
        self.headers = head.headers
        self._reader = reader
        self._writer = writer
        self._read_timeout = read_timeout
        self._bodiless = method == "HEAD" or head.status in (204, 304) or head.status < 200
        self._content: bytes | None = None

    async def __aenter__(self) -> Response:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Hang up (idempotent)."""
        self._writer.close()

    def upgrade(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """The connection itself, once the engine upgraded it (``101``): the caller owns it from now on."""
        return self._reader, self._writer

    @property
    def content(self) -> bytes:
        """The body, once :meth:`read` returned it (empty before)."""
        return self._content or b""

    def json(self) -> Any:
        """The body read by :meth:`read` as JSON. Raises APIError if it is not JSON."""
        try:
            return json.loads(self.content)
        except ValueError as exc:
            raise APIError(f"malformed answer from the engine: {self.content[:200]!r}") from exc

    async def read(self) -> bytes:
        """The whole body (repeatable); the connection is closed afterwards."""
        if self._content is None:
            self._content = b"".join([piece async for piece in self.iter_bytes()])
        return self._content

    async def iter_bytes(self) -> AsyncIterator[bytes]:
        """The body's bytes as they come (never an empty piece)."""
        try:
            async for piece in self._pieces():
                yield piece
        finally:
            await self.aclose()

    async def iter_lines(self) -> AsyncIterator[str]:
        """The body's lines as they come, without their ``\\n`` or ``\\r\\n`` (UTF-8; undecodable bytes
        replaced); a last line without a newline is yielded too."""
        pending = b""
        async for piece in self.iter_bytes():
            *lines, pending = (pending + piece).split(b"\n")
            for line in lines:
                yield line.removesuffix(b"\r").decode(errors="replace")
        if pending:
            yield pending.removesuffix(b"\r").decode(errors="replace")

    async def _pieces(self) -> AsyncIterator[bytes]:
        if self._bodiless:
            return
        if "chunked" in self.headers.get("transfer-encoding", "").lower():
            while size := _chunk_size(await _io(self._reader.readline(), self._read_timeout)):
                async for piece in self._exactly(size):
                    yield piece
                if await _io(self._reader.readexactly(2), self._read_timeout) != b"\r\n":
                    raise APIError("malformed answer from the engine: bad chunk framing")
            while (await _io(self._reader.readline(), self._read_timeout)).strip():  # trailers
                pass
        elif (length := self.headers.get("content-length")) is not None:
            if not length.isdigit():
                raise APIError(f"malformed answer from the engine: Content-Length {length[:40]!r}")
            async for piece in self._exactly(int(length)):
                yield piece
        else:
            while piece := await _io(self._reader.read(_PIECE), self._read_timeout):
                yield piece

    async def _exactly(self, size: int) -> AsyncIterator[bytes]:
        while size > 0:
            piece = await _io(self._reader.read(min(size, _PIECE)), self._read_timeout)
            if not piece:
                raise APIError("the engine's answer was cut short")
            size -= len(piece)
            yield piece


async def _write_body(writer: asyncio.StreamWriter, body: Body) -> None:
    """Send the body (chunked when it is an iterable). The engine hanging up ends it quietly: an
    engine that stops reading early (a bad archive) has answered why."""
    try:
        if isinstance(body, bytes):
            writer.write(body)
        else:
            async for piece in body:
                if piece:
                    writer.write(b"%x\r\n%b\r\n" % (len(piece), piece))
                    await writer.drain()
            writer.write(b"0\r\n\r\n")
        await writer.drain()
    except ConnectionError:
        pass


async def send(address: EngineAddress, method: str, target: str, *, headers: Mapping[str, str] | None = None,
               body: Body | None = None, timeout: float | None = 60.0, read_timeout: float | None = 60.0,
               tls: ssl.SSLContext | None = None, dialer: Dialer | None = None) -> Response:
    """Send one request on a new connection and read the answer's head; the body stays to be read
    from the :class:`Response` (which the caller must close or read to its end).

    ``target`` is the path and query (:func:`request_target`). The body is sent whole before the
    answer is read; if the engine hangs up before taking it all (an early error), the upload ends
    quietly and its answer is returned when it arrived. Raises EngineUnreachable and APIError (see
    the module docstring; a bad header before connecting)."""
    framing = {} if body is None else (
        {"Content-Length": str(len(body))} if isinstance(body, bytes) else {"Transfer-Encoding": "chunked"})
    head = request_head(method, target, {"Host": host_header(address), "Connection": "close", **framing,
                                         **(headers or {})})
    reader, writer = await connect(address, timeout, tls, dialer)
    try:
        writer.write(head)
        await _io(_write_body(writer, body if body is not None else b""), read_timeout)
        answer = await _io(read_head(reader), read_timeout)
        while answer.status == 100:
            answer = await _io(read_head(reader), read_timeout)
    except BaseException:
        writer.close()
        raise
    return Response(answer, reader, writer, method=method, read_timeout=read_timeout)
