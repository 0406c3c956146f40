"""Byte relays between host sockets and SSH channels into the guest.

:class:`SocketForwarder` listens on a host socket (the unix API socket, or ``127.0.0.1:<port>`` for a
published port) and relays every accepted connection, in a thread of its own, to a fresh channel that
``connect`` opens. Half-closes are passed on, so request/response and hijacked streams end as they should.
A forwarder may have a ``gate`` (it sees each new connection first: it may answer it itself, or hand back bytes it
read to be sent on first) and a ``conversation`` factory (a :data:`Traffic` callback per connection): the
resource saver's hooks (:mod:`backend.machine.saver`).
"""

from __future__ import annotations

import logging
import select
import socket
import threading
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path

import paramiko

from backend.machine.errors import MachineError

log = logging.getLogger(__name__)
_CHUNK = 65536


Traffic = Callable[[bool | None], None]
"""Told of every chunk relayed: ``True`` from the host, ``False`` from the guest, ``None`` at the end."""


def relay(sock: socket.socket, channel: paramiko.Channel, initial: bytes = b"", traffic: Traffic | None = None) -> None:
    """Send ``initial`` to the channel, then copy bytes both ways until both directions ended (telling
    ``traffic`` of every chunk); closes both."""
    def tell(inbound: bool | None) -> None:
        if traffic is not None:
            traffic(inbound)

    open_in, open_out = True, True  # host -> guest, guest -> host
    try:
        if initial:
            tell(True)
            channel.sendall(initial)
        while open_in or open_out:
            watched: list[socket.socket | paramiko.Channel] = []
            if open_in:
                watched.append(sock)
            if open_out:
                watched.append(channel)
            ready, _, _ = select.select(watched, [], [])
            if sock in ready:
                data = sock.recv(_CHUNK)
                if data:
                    tell(True)
                    channel.sendall(data)
                else:
                    open_in = False
                    channel.shutdown_write()
            if channel in ready:
                data = channel.recv(_CHUNK)
                if data:
                    tell(False)
                    sock.sendall(data)
                else:
                    open_out = False
                    with suppress(OSError):
                        sock.shutdown(socket.SHUT_WR)
    except (OSError, paramiko.SSHException) as exc:
        log.debug("relay ended: %s", exc)
    finally:
        tell(None)
        channel.close()
        sock.close()


class SocketForwarder:
    """A listening socket whose connections are relayed to channels from ``connect``. :meth:`close` stops
    accepting (relays under way finish on their own)."""

    def __init__(self, listener: socket.socket, connect: Callable[[], paramiko.Channel],
                 gate: Callable[[socket.socket], bytes | None] | None = None,
                 conversation: Callable[[], Traffic] | None = None) -> None:
        self.port: int = listener.getsockname()[1] if listener.family == socket.AF_INET else 0
        self._listener = listener
        self._connect = connect
        self._gate = gate
        self._conversation = conversation
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @staticmethod
    def unix(path: Path, connect: Callable[[], paramiko.Channel],
             gate: Callable[[socket.socket], bytes | None] | None = None,
             conversation: Callable[[], Traffic] | None = None) -> SocketForwarder:
        """Listen on the unix socket ``path`` (replacing a stale one; mode 0600)."""
        path.unlink(missing_ok=True)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(path))
        path.chmod(0o600)
        listener.listen(64)
        return SocketForwarder(listener, connect, gate, conversation)

    @staticmethod
    def tcp(port: int, connect: Callable[[], paramiko.Channel],
            gate: Callable[[socket.socket], bytes | None] | None = None,
            conversation: Callable[[], Traffic] | None = None) -> SocketForwarder:
        """Listen on ``127.0.0.1:port``. Raises MachineError when the port is taken."""
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind(("127.0.0.1", port))
        except OSError as exc:
            listener.close()
            raise MachineError(f"cannot publish 127.0.0.1:{port} on the host: {exc.strerror}") from exc
        listener.listen(64)
        return SocketForwarder(listener, connect, gate, conversation)

    def _serve(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._open, args=(sock,), daemon=True).start()

    def _open(self, sock: socket.socket) -> None:
        try:
            initial = self._gate(sock) if self._gate is not None else b""
            if initial is None:
                return  # the gate answered
            channel = self._connect()
        except MachineError as exc:
            log.warning("%s", exc)
            sock.close()
            return
        relay(sock, channel, initial, self._conversation() if self._conversation is not None else None)

    def close(self) -> None:
        with suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
