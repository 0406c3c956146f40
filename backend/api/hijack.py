"""Hijacked connections (attach, exec start) and Docker's multiplexed stream framing.

:func:`open_hijacked` sends one request with ``Connection: Upgrade`` and ``Upgrade: tcp`` through
:mod:`backend.api.http`, reads the ``101 UPGRADED`` answer (``200 OK`` is accepted too, as older engines
sent it) and hands back the socket as a raw bidirectional stream (:class:`HijackedConnection`).

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
from typing import TYPE_CHECKING, Any

from backend.api import http
from backend.api.errors import APIError, error_for_status
from backend.api.host import EngineAddress

if TYPE_CHECKING:
    import ssl

STDIN, STDOUT, STDERR = 0, 1, 2
_HEADER = struct.Struct(">BxxxI")


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


async def open_hijacked(address: EngineAddress, method: str, path: str, *,
                        params: Mapping[str, str] | None = None, json_body: Any = None,
                        headers: Mapping[str, str] | None = None, timeout: float = 60.0,
                        tls: ssl.SSLContext | None = None, dialer: http.Dialer | None = None) -> HijackedConnection:
    """Send one request asking to upgrade and return the raw stream once the engine agreed.

    Raises EngineUnreachable when nothing answers at ``address``, the :mod:`backend.api.errors` class
    for an error status (with the engine's message), APIError for a malformed or broken answer."""
    upgrade = {"Connection": "Upgrade", "Upgrade": "tcp"}
    if json_body is not None:
        upgrade["Content-Type"] = "application/json"
    response = await http.send(address, method, http.request_target(path, params),
                               headers={**upgrade, **(headers or {})},
                               body=json.dumps(json_body).encode() if json_body is not None else None,
                               timeout=timeout, read_timeout=timeout, tls=tls, dialer=dialer)
    try:
        if response.status >= 400:
            raise error_for_status(response.status, http.error_message(await response.read(), response.reason))
        if response.status not in (101, 200):
            raise APIError(f"the engine answered {response.status} {response.reason} instead of upgrading the "
                           "connection", status=response.status)
    except BaseException:
        await response.aclose()
        raise
    reader, writer = response.upgrade()
    return HijackedConnection(reader, writer, response.headers.get("content-type", ""))
