"""Streaming responses the Docker API uses: JSON-lines progress, raw archives, multiplexed frames and
hijacked (``Upgrade: tcp``) connections.

- :func:`progress_message` / :func:`error_message` build Docker's progress and in-stream error objects
  (``{"status","id","progressDetail":{"current","total"},"progress":"[==>  ] 1.2MB/3.4MB"}`` and
  ``{"errorDetail":{"message"},"error"}``); :func:`human_size` and :func:`progress_bar` format them as
  dockerd does (go-units ``HumanSize``, jsonmessage's 50-column bar).
- :class:`ProgressStream` runs one piece of work that reports progress through a callback (from the
  event loop or any thread) and writes each message as its own chunk, flushed at once. An error before
  the response started becomes a plain HTTP error (``{"message"}`` with the mapped status); after it
  started, an in-stream error message. A client that goes away cancels the work.
- :func:`stream_archive` runs a synchronous writer (``ImageService.save``) in a thread and streams what
  it writes; :func:`body_reader` gives a synchronous, buffered file over the request body for readers
  running in threads (``load``, ``import``). Neither holds the archive in memory.
- :func:`frame` encodes one stdout/stderr multiplexed frame; :func:`hijack` answers ``101 UPGRADED``
  and hands back the raw connection, surviving the client's half-close (the docker CLI shuts its
  write side at once when stdin is not attached).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import struct
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import IO, Any, Generic, TypeVar

from aiohttp import web

from backend.server.errors import status_for

log = logging.getLogger(__name__)

T = TypeVar("T")
Message = dict[str, Any]
Emit = Callable[[Message], None]

STDIN, STDOUT, STDERR = 0, 1, 2
RAW_STREAM = "application/vnd.docker.raw-stream"
MULTIPLEXED_STREAM = "application/vnd.docker.multiplexed-stream"

_UNITS = ("B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB")


def _on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether the caller runs on ``loop``'s thread (inside one of its callbacks or tasks)."""
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


# --- progress messages ----------------------------------------------------------------------------


def _go_g4(value: float) -> str:
    """Go's ``%.4g`` for the non-negative values HumanSize formats (no exponent below 1e4)."""
    return format(value, ".4g")


def human_size(size: float) -> str:
    """go-units ``HumanSize``: decimal units, four significant digits (``34.82kB``, ``1.982MB``, ``512B``)."""
    unit = 0
    while size >= 1000 and unit < len(_UNITS) - 1:
        size /= 1000
        unit += 1
    return f"{_go_g4(size)}{_UNITS[unit]}"


def progress_bar(current: int, total: int | None) -> str:
    """jsonmessage's ``JSONProgress.String()`` at dockerd's width (200 columns, so the bar is drawn)."""
    if current <= 0 and (total is None or total <= 0):
        return ""
    if total is None or total <= 0:
        return f"{human_size(current):>8}"
    percentage = min(int(current / total * 100) // 2, 50)
    bar = "[" + "=" * percentage + ">" + " " * max(50 - percentage, 0) + "] "
    numbers = f"{human_size(current):>8}/{human_size(total)}" if current <= total else f"{human_size(current):>8}"
    return bar + numbers


def progress_message(status: str, id: str | None = None, current: int | None = None,
                     total: int | None = None) -> Message:
    """Docker's progress object. Lines without a layer ID and counts are plain ``{"status"}``."""
    message: Message = {"status": status}
    if id is None and current is None:
        return message
    detail: dict[str, int] = {}
    if current is not None:
        detail["current"] = current
        if total is not None and total > 0:
            detail["total"] = total
    message["progressDetail"] = detail
    if current is not None:
        message["progress"] = progress_bar(current, total)
    if id is not None:
        message["id"] = id
    return message


def error_message(message: str) -> Message:
    """Docker's in-stream error object (the CLI prints ``message`` and exits 1)."""
    return {"errorDetail": {"message": message}, "error": message}


def encode_line(message: Message, newline: bytes = b"\r\n") -> bytes:
    """One JSON object and its line ending (dockerd ends progress lines with CRLF, events with LF)."""
    return json.dumps(message, separators=(",", ":")).encode() + newline


# --- JSON-lines streams -------------------------------------------------------------------------


async def start_json_stream(request: web.Request, status: int = 200) -> web.StreamResponse:
    """Send the headers of a chunked ``application/json`` stream; write each message with one ``write``."""
    response = web.StreamResponse(status=status, headers={"Content-Type": "application/json"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    return response


class ProgressStream(Generic[T]):
    """Runs ``work(emit)`` and streams what it emits as JSON lines (see the module docstring).

    ``defer`` messages are held back before the response starts, so an error the work raises early
    (an unknown image, refused credentials) still becomes an HTTP status. ``finish(result)`` gives the
    closing messages. ``emit`` may be called from any thread.
    """

    def __init__(self, request: web.Request, *, defer: int = 0, newline: bytes = b"\r\n") -> None:
        self._request = request
        self._defer = defer
        self._newline = newline
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[Message] = asyncio.Queue()
        self._response: web.StreamResponse | None = None

    def emit(self, message: Message) -> None:
        """Queue ``message`` for the client (thread-safe, never blocks)."""
        if _on_loop(self._loop):
            self._queue.put_nowait(message)
        else:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, message)

    async def _write(self, pending: list[Message]) -> None:
        if self._response is None:
            self._response = await start_json_stream(self._request)
        for message in pending:
            await self._response.write(encode_line(message, self._newline))
        pending.clear()

    async def run(self, work: Callable[[Emit], Awaitable[T]],
                  finish: Callable[[T], Iterable[Message]] | None = None) -> web.StreamResponse:
        """Run the work to its end and return the (finished) response. Raises the work's error only if
        nothing was sent yet."""
        task: asyncio.Task[T] = asyncio.ensure_future(work(self.emit))
        getter: asyncio.Future[Message] | None = None
        pending: list[Message] = []
        try:
            while True:
                getter = asyncio.ensure_future(self._queue.get())
                await asyncio.wait({task, getter}, return_when=asyncio.FIRST_COMPLETED)
                if getter.done():
                    pending.append(getter.result())
                else:
                    getter.cancel()
                if task.done():
                    while not self._queue.empty():
                        pending.append(self._queue.get_nowait())
                    break
                if self._response is not None or len(pending) > self._defer:
                    await self._write(pending)
            error = task.exception()
            if error is not None:
                if self._response is None:
                    raise error
                if status_for(error) >= 500:
                    log.warning("%s %s failed mid-stream: %s", self._request.method, self._request.path, error)
                pending.append(error_message(str(error) or type(error).__name__))
            elif finish is not None:
                pending.extend(finish(task.result()))
            await self._write(pending)
            assert self._response is not None
            await self._response.write_eof()
            return self._response
        finally:  # also when the client went away (a write raised) or the server is stopping
            if getter is not None and not getter.done():
                getter.cancel()
            if not task.done():
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task


# --- archives in and out --------------------------------------------------------------------------


class _BodyRaw(io.RawIOBase):
    """The request body as a blocking raw file, for code running in a worker thread."""

    def __init__(self, request: web.Request, loop: asyncio.AbstractEventLoop) -> None:
        self._content = request.content
        self._loop = loop

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if _on_loop(self._loop):
            raise RuntimeError("the request body reader must be used from a worker thread")
        view = memoryview(buffer).cast("B")
        data = asyncio.run_coroutine_threadsafe(self._content.read(len(view)), self._loop).result()
        view[: len(data)] = data
        return len(data)


def body_reader(request: web.Request, buffer_size: int = 1 << 20) -> io.BufferedReader:
    """A buffered, blocking reader over the request body; use it only from a worker thread."""
    return io.BufferedReader(_BodyRaw(request, asyncio.get_running_loop()), buffer_size)


class _ResponseWriter(io.RawIOBase):
    """A blocking file whose bytes go to a streamed response, for a writer running in a worker thread.

    The response starts (status 200, ``content_type``) with the first flushed bytes, so an error raised
    before anything was written can still become an HTTP error."""

    def __init__(self, request: web.Request, loop: asyncio.AbstractEventLoop, content_type: str,
                 buffer_size: int, headers: Mapping[str, str] | None = None) -> None:
        self._request = request
        self._loop = loop
        self._headers = {**(headers or {}), "Content-Type": content_type}
        self._buffer = bytearray()
        self._buffer_size = buffer_size
        self.response: web.StreamResponse | None = None

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self._buffer += chunk
        if len(self._buffer) >= self._buffer_size:
            self.flush()
        return len(chunk)

    async def _send(self, data: bytes) -> None:
        if self.response is None:
            self.response = web.StreamResponse(headers=self._headers)
            self.response.enable_chunked_encoding()
            await self.response.prepare(self._request)
        if data:
            await self.response.write(data)

    def flush(self) -> None:
        if self._buffer:
            data, self._buffer = bytes(self._buffer), bytearray()
            asyncio.run_coroutine_threadsafe(self._send(data), self._loop).result()


async def stream_archive(request: web.Request, write: Callable[[IO[bytes]], None], *,
                         content_type: str = "application/x-tar", buffer_size: int = 256 * 1024,
                         headers: Mapping[str, str] | None = None) -> web.StreamResponse:
    """Run ``write(out)`` in a worker thread and stream what it writes to ``out`` (``headers`` added to the
    response's).

    An error before the first bytes left is raised (and becomes an HTTP error); after that the
    connection is closed without the closing chunk, so the client sees a truncated transfer.
    """
    out = _ResponseWriter(request, asyncio.get_running_loop(), content_type, buffer_size, headers)

    def run() -> None:
        write(out)  # type: ignore[arg-type]  # a RawIOBase taking bytes is an IO[bytes] here
        out.flush()

    try:
        await asyncio.to_thread(run)
    except Exception:
        if out.response is None:
            raise
        log.exception("%s %s failed after the archive started", request.method, request.path)
        out.response.force_close()
        if request.transport is not None:
            request.transport.close()
        return out.response
    await out._send(b"")
    assert out.response is not None
    await out.response.write_eof()
    return out.response


# --- multiplexed frames -------------------------------------------------------------------------


def frame(stream: int, payload: bytes) -> bytes:
    """One multiplexed frame: ``[stream, 0, 0, 0, size (uint32 big-endian)]`` then the payload.

    ``stream`` is 0 (stdin), 1 (stdout) or 2 (stderr). Raises ValueError for another stream or a
    payload of 4 GiB or more."""
    if stream not in (STDIN, STDOUT, STDERR):
        raise ValueError(f"invalid stream {stream}")
    if len(payload) > 0xFFFFFFFF:
        raise ValueError("frame payload too large")
    return struct.pack(">BxxxI", stream, len(payload)) + payload


# --- hijacked connections -----------------------------------------------------------------------


class _RawFeed:
    """Takes the bytes after the HTTP request (aiohttp's ``set_parser`` interface) into a StreamReader."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self._reader = reader

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        self._reader.feed_data(data)
        return False, b""

    def feed_eof(self) -> None:
        self._reader.feed_eof()


class _HalfCloseProtocol(asyncio.Protocol):
    """Wraps aiohttp's protocol on a hijacked connection: the client's EOF (half-close) ends our reader
    but keeps the transport open for writing; everything else goes to aiohttp's protocol."""

    def __init__(self, inner: asyncio.Protocol, reader: asyncio.StreamReader) -> None:
        self._inner = inner
        self._reader = reader

    def data_received(self, data: bytes) -> None:
        self._inner.data_received(data)

    def eof_received(self) -> bool:
        self._reader.feed_eof()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._reader.at_eof():
            self._reader.feed_eof()
        self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()


@dataclass
class Hijacked:
    """A hijacked connection: ``reader`` yields the client's bytes (EOF on half-close or disconnect),
    :meth:`write` sends raw bytes; :meth:`close` ends the connection (the handler then returns
    ``response``)."""

    reader: asyncio.StreamReader
    response: web.StreamResponse
    _transport: asyncio.Transport
    _protocol: Any

    async def write(self, data: bytes) -> None:
        """Send ``data`` and wait while the client is slow. Raises ConnectionResetError once it is gone."""
        if self._transport.is_closing():
            raise ConnectionResetError("the client closed the connection")
        self._transport.write(data)
        await self._protocol._drain_helper()

    def close(self) -> None:
        """Close the connection (idempotent)."""
        if not self._transport.is_closing():
            self._transport.close()


async def hijack(request: web.Request, *, content_type: str = RAW_STREAM) -> Hijacked:
    """Answer ``101 UPGRADED`` (``Connection: Upgrade``, ``Upgrade: tcp``) and take over the connection.

    Read any JSON body before calling this; bytes the client sent after the request are in ``reader``.
    The client may half-close once it has the 101 (the docker CLI does); a client that half-closes
    before its request was routed here loses the connection (aiohttp closes on EOF). Bytes a client
    sends before it has the 101 may be lost: aiohttp's C HTTP parser treats only ``websocket`` as an
    upgrade (its pure-Python parser also knows ``tcp``). Docker's clients send stdin after the 101.
    A request without ``Upgrade: tcp`` gets ``200 OK`` and is taken over the same way (docker-py's old
    behaviour). The caller must :meth:`Hijacked.close` the connection when it is done.
    """
    upgrade = request.headers.get("Upgrade", "").lower() == "tcp"
    headers = {"Content-Type": content_type}
    if upgrade:
        response = web.StreamResponse(status=101, reason="UPGRADED", headers=headers)
        response.headers["Connection"] = "Upgrade"
        response.headers["Upgrade"] = "tcp"
    else:
        response = web.StreamResponse(status=200, headers=headers)
        response._length_check = False  # raw bytes follow, neither chunked nor of known length (as websockets)
    response.force_close()
    transport = request.transport
    protocol = request.protocol
    if transport is None:
        raise ConnectionResetError("the client closed the connection")
    reader = asyncio.StreamReader(limit=1 << 20)
    protocol.set_parser(_RawFeed(reader))  # type: ignore[arg-type]
    transport.set_protocol(_HalfCloseProtocol(protocol, reader))
    await response.prepare(request)
    return Hijacked(reader, response, transport, protocol)
