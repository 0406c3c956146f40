"""Hijacked connections (attach, exec start) and Docker's multiplexed stream framing.

httpx cannot take over a connection, so :func:`open_hijacked` speaks just enough HTTP/1.1 itself: it
opens the engine's socket with asyncio, sends one request with ``Connection: Upgrade`` and
``Upgrade: tcp``, reads the ``101 UPGRADED`` answer (``200 OK`` is accepted too, as older engines sent
it) and hands back the socket as a raw bidirectional stream (:class:`HijackedConnection`).

Without a tty the engine's output is framed: an 8-byte header ``[stream, 0, 0, 0, size (uint32
big-endian)]`` then ``size`` bytes, stream 1 being stdout and 2 stderr; ``logs`` uses the same framing.
:class:`FrameDecoder` decodes it incrementally; with a tty the bytes are raw stdout.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import struct
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from backend.api.errors import APIError, EngineUnreachable, error_for_status
from backend.api.host import EngineAddress

STDIN, STDOUT, STDERR = 0, 1, 2
_HEADER = struct.Struct(">BxxxI")
_MAX_HEAD = 64 * 1024


class FrameDecoder:
    """Incremental decoder of multiplexed frames: :meth:`feed` bytes as they come, get whole frames.

    Raises APIError for a header whose stream is not 0, 1 or 2 (the bytes are not framed)."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        """The ``(stream, payload)`` frames completed by ``data`` (partial frames wait for more)."""
        self._buffer += data
        frames: list[tuple[int, bytes]] = []
        while len(self._buffer) >= _HEADER.size:
            stream, size = _HEADER.unpack_from(self._buffer)
            if stream not in (STDIN, STDOUT, STDERR):
                raise APIError(f"malformed multiplexed stream (stream byte {stream})")
            end = _HEADER.size + size
            if len(self._buffer) < end:
                break
            frames.append((stream, bytes(self._buffer[_HEADER.size:end])))
            del self._buffer[:end]
        return frames

    @property
    def pending(self) -> int:
        """Bytes of an unfinished frame (non-zero at the end of a stream means it was cut short)."""
        return len(self._buffer)


def encode_frame(stream: int, payload: bytes) -> bytes:
    """One multiplexed frame (for tests and tools that speak the engine's side)."""
    return _HEADER.pack(stream, len(payload)) + payload


@dataclass
class HijackedConnection:
    """A raw stream to the engine after ``101 UPGRADED``. ``content_type`` is the answer's header."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    content_type: str = ""
    _closed: bool = field(default=False, repr=False)

    async def write(self, data: bytes) -> None:
        """Send ``data`` (stdin). Raises ConnectionError once the engine closed the stream."""
        self.writer.write(data)
        await self.writer.drain()

    async def close_write(self) -> None:
        """Half-close: the engine sees EOF on stdin but keeps sending output."""
        if not self.writer.is_closing() and self.writer.can_write_eof():
            with contextlib.suppress(OSError):
                self.writer.write_eof()

    async def output(self, tty: bool) -> AsyncIterator[tuple[int, bytes]]:
        """``(stream, bytes)`` until the engine closes: raw bytes as stdout with a tty, else decoded frames.

        Raises APIError if the stream ends inside a frame."""
        decoder = None if tty else FrameDecoder()
        while True:
            try:
                data = await self.reader.read(1 << 16)
            except ConnectionError:
                data = b""
            if not data:
                break
            if decoder is None:
                yield STDOUT, data
            else:
                for item in decoder.feed(data):
                    yield item
        if decoder is not None and decoder.pending:
            raise APIError("the engine's stream ended inside a frame")

    def close(self) -> None:
        """Close the connection (idempotent)."""
        if not self._closed:
            self._closed = True
            self.writer.close()


def _request_bytes(method: str, target: str, host_header: str, headers: Mapping[str, str], body: bytes) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host_header}", "Connection: Upgrade", "Upgrade: tcp"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    if body:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def _error_message(body: bytes) -> str:
    try:
        doc = json.loads(body)
    except ValueError:
        return body.decode(errors="replace").strip()
    if isinstance(doc, dict) and isinstance(doc.get("message"), str):
        return str(doc["message"])
    return body.decode(errors="replace").strip()


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, str, dict[str, str]]:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.LimitOverrunError as exc:
        raise APIError("the engine's answer headers are too long") from exc
    except asyncio.IncompleteReadError as exc:
        raise APIError("the engine closed the connection before answering") from exc
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        raise APIError(f"malformed answer from the engine: {status_line[:100]!r}")
    headers: dict[str, str] = {}
    for line in header_lines:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return int(parts[1]), parts[2] if len(parts) > 2 else "", headers


async def _read_error_body(reader: asyncio.StreamReader, headers: Mapping[str, str]) -> bytes:
    length = headers.get("content-length")
    if length is not None and length.isdigit():
        return await reader.readexactly(min(int(length), _MAX_HEAD))
    if headers.get("transfer-encoding", "").lower() == "chunked":
        size_line = await reader.readline()
        size = int(size_line.split(b";")[0].strip() or b"0", 16)
        return await reader.readexactly(min(size, _MAX_HEAD))
    return await reader.read(_MAX_HEAD)


async def open_hijacked(address: EngineAddress, method: str, path: str, *,
                        params: Mapping[str, str] | None = None, json_body: Any = None,
                        headers: Mapping[str, str] | None = None, timeout: float = 60.0) -> HijackedConnection:
    """Send one request asking to upgrade and return the raw stream once the engine agreed.

    Raises EngineUnreachable when nothing answers at ``address``, the :mod:`backend.api.errors` class
    for an error status (with the engine's message), APIError for a malformed answer."""
    target = path + ("?" + urlencode(dict(params)) if params else "")
    try:
        if address.scheme == "unix":
            opened = asyncio.open_unix_connection(address.path, limit=_MAX_HEAD)
        else:
            opened = asyncio.open_connection(address.host, address.port, limit=_MAX_HEAD)
        reader, writer = await asyncio.wait_for(opened, timeout)
    except OSError as exc:  # TimeoutError included
        where = f"unix://{address.path}" if address.scheme == "unix" else f"tcp://{address.host}:{address.port}"
        raise EngineUnreachable(f"cannot reach the engine at {where}: {exc}") from exc
    host_header = "api.moby.localhost" if address.scheme == "unix" else f"{address.host}:{address.port}"
    body = json.dumps(json_body).encode() if json_body is not None else b""
    try:
        writer.write(_request_bytes(method, target, host_header, headers or {}, body))
        await writer.drain()
        status, reason, answer = await asyncio.wait_for(_read_head(reader), timeout)
        if status >= 400:
            raise error_for_status(status, _error_message(await _read_error_body(reader, answer)) or reason)
        if status not in (101, 200):
            raise APIError(f"the engine answered {status} {reason} instead of upgrading the connection",
                           status=status)
    except BaseException as exc:
        writer.close()
        if isinstance(exc, (ConnectionError, asyncio.IncompleteReadError, TimeoutError)):
            raise APIError(f"the engine's connection broke off: {exc}") from exc
        raise
    return HijackedConnection(reader, writer, answer.get("content-type", ""))
