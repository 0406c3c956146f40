"""A pty master received from the OCI runtime over a console socket (``--console-socket``), as asyncio
streams, with its window size settable.

The runtime connects to a unix socket we listen on and sends the master end of the process's pty
(SCM_RIGHTS); the process holds the slave. Reading the master gives the process's output until it and
every other holder of the slave exit (EIO, taken as end of stream); writing it is the process's input.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import socket
import struct
import termios
from dataclasses import dataclass

from backend.engine.errors import Unavailable


class ConsoleSocket:
    """A listening unix socket at ``path`` for one runtime to send one pty master. Close with :meth:`close`."""

    def __init__(self, path: str) -> None:
        self.path = path
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        self._sock.bind(path)
        os.chmod(path, 0o600)
        self._sock.listen(1)
        self._sock.setblocking(False)

    async def receive(self) -> int:
        """Wait for the runtime and return the master fd it sends. Raises Unavailable if it sends none."""
        loop = asyncio.get_running_loop()
        conn, _ = await loop.sock_accept(self._sock)
        with conn:
            conn.settimeout(10)
            try:
                _, fds, _, _ = await asyncio.to_thread(socket.recv_fds, conn, 4096, 1)
            except OSError as exc:
                raise Unavailable(f"the runtime did not send the terminal: {exc}") from exc
        if not fds:
            raise Unavailable("the runtime did not send the terminal")
        return fds[0]

    def close(self) -> None:
        self._sock.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


@dataclass
class Console:
    """Streams over a pty master. ``reader`` ends (EOF) when the pty's slave side is gone."""

    master: int
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    @classmethod
    async def open(cls, master: int) -> Console:
        """Wrap ``master`` (taken over: closed by :meth:`close`)."""
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: _EIOAsEOF(reader), os.fdopen(os.dup(master), "rb", buffering=0))
        transport, protocol = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin,
                                                            os.fdopen(os.dup(master), "wb", buffering=0))
        writer = asyncio.StreamWriter(transport, protocol, None, loop)
        return cls(master, reader, writer)

    def resize(self, height: int, width: int) -> None:
        """Set the window size (the process gets SIGWINCH). Raises Unavailable if the pty is gone."""
        try:
            fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))
        except OSError as exc:
            raise Unavailable(f"cannot resize the terminal: {exc.strerror}") from exc

    def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            os.close(self.master)


class _EIOAsEOF(asyncio.StreamReaderProtocol):
    """A pty master reports the slave's last close as EIO: end of stream, not an error."""

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(None if isinstance(exc, OSError) else exc)
