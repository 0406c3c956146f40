"""The resource saver: a running machine with nothing to do is paused, and resumed by the next request.

:class:`ResourceSaver` guarantees:

- the VM is paused (QMP ``stop``: its vCPUs halt, QEMU and every connection stay up) once no container has
  run, no request has been waiting for its answer and no byte has crossed the API socket for the machine's
  ``idle_timeout`` seconds (0: never);
- right before pausing it records the guest's answers to the read-only requests of :data:`SNAPSHOT` (``docker
  version``, ``ps``, ``ps -a``, ``images``, ``volume ls``, ``network ls``, ``info``); while paused a new API
  connection whose first request is one of them (``GET``, or ``HEAD``, with the same query once normalised) is
  answered from that record with ``Connection: close`` and the VM sleeps on: nothing in the guest can change
  while it is paused and no request reached it;
- any other request (``berth machine ssh`` sends ``GET /_ping?wake=1`` first) and bytes on a connection opened
  before the pause resume the VM (QMP ``cont``) before the request is passed on, and the guest's clock is set from the
  host's (a paused guest's clock stands still);
- ``resting`` in the machine's record says whether it is paused.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit

import paramiko

from backend.machine.errors import MachineError
from backend.machine.qmp import QMP

log = logging.getLogger(__name__)

SNAPSHOT = ("/_ping", "/version", "/info", "/containers/json", "/containers/json?all=1", "/images/json", "/volumes",
            "/networks")
"""The read-only requests answered while the machine rests (targets without the ``/v1.NN`` prefix)."""
_HEAD_LIMIT = 65536
_BOOLEAN = {"true": "1", "false": "0", "True": "1", "False": "0"}


class Stream(Protocol):
    """A byte stream to the guest API: an SSH channel (or, in tests, a socket)."""

    def sendall(self, data: bytes, /) -> int | None: ...
    def recv(self, size: int, /) -> bytes: ...
    def settimeout(self, timeout: float | None, /) -> None: ...
    def close(self) -> None: ...


def normalise(target: str) -> str:
    """A request target without its ``/v1.NN`` prefix, with sorted query parameters, ``true``/``false`` as
    ``1``/``0`` and defaults dropped (``all=0``), so the ways clients spell one request compare equal."""
    parts = urlsplit(target)
    path = parts.path
    segments = path.split("/", 2)
    if len(segments) > 2 and segments[1].startswith("v") and segments[1][1:].replace(".", "").isdigit():
        path = "/" + segments[2]
    query = sorted((key, _BOOLEAN.get(value, value)) for key, value in parse_qsl(parts.query, keep_blank_values=True)
                   if (key, _BOOLEAN.get(value, value)) != ("all", "0"))
    return path.rstrip("/") + (f"?{urlencode(query)}" if query else "")


@dataclass(frozen=True)
class RequestHead:
    """The first request line of a connection (and the bytes read so far, to pass on)."""

    method: str
    target: str
    data: bytes


def read_head(sock: socket.socket, timeout: float = 5.0) -> RequestHead | None:
    """Read a request's head (up to the empty line) from ``sock``; None when the peer sent nothing, closed,
    or the bytes are not an HTTP request head within :data:`_HEAD_LIMIT` bytes (the caller passes ``data`` on
    either way; it holds whatever was read)."""
    data = b""
    sock.settimeout(timeout)
    try:
        while b"\r\n\r\n" not in data and len(data) < _HEAD_LIMIT:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    except OSError:
        pass
    finally:
        sock.settimeout(None)
    line = data.split(b"\r\n", 1)[0].decode("latin-1")
    words = line.split(" ")
    if b"\r\n\r\n" not in data or len(words) != 3 or not words[1].startswith("/") or not words[2].startswith("HTTP/"):
        return RequestHead("", "", data) if data else None
    return RequestHead(words[0], words[1], data)


def closing(response: bytes) -> bytes:
    """``response`` (a whole HTTP/1.1 response) with ``Connection: close`` instead of its own connection
    headers."""
    head, sep, body = response.partition(b"\r\n\r\n")
    lines = [line for line in head.split(b"\r\n") if not line.lower().startswith((b"connection:", b"keep-alive:"))]
    return b"\r\n".join([*lines, b"Connection: close"]) + sep + body


def fetch(channel: Stream, target: str, timeout: float = 30.0) -> bytes:
    """``GET target`` (HTTP/1.0, so the guest closes after answering) over ``channel``; the whole response.
    Raises MachineError when no complete answer arrives."""
    channel.settimeout(timeout)
    response = b""
    try:
        channel.sendall(f"GET {target} HTTP/1.0\r\nHost: berth\r\n\r\n".encode())
        while chunk := channel.recv(65536):
            response += chunk
    except (OSError, paramiko.SSHException) as exc:
        raise MachineError(f"reading {target} from the machine: {exc}") from exc
    finally:
        channel.close()
    if not response.startswith(b"HTTP/1.") or b"\r\n\r\n" not in response:
        raise MachineError(f"reading {target} from the machine: no HTTP answer")
    return response


class ResourceSaver:
    """Pauses and resumes one machine's VM (see the module docstring).

    ``open_api`` opens a channel to the guest API, ``running`` tells how many containers run in the guest
    (None until it is known), ``idle_timeout`` reads the machine's current setting, ``set_clock`` sets the
    guest's clock to the host's, ``record`` saves ``resting``.
    """

    def __init__(self, qmp_socket: Path | tuple[str, int], open_api: Callable[[], Stream],
                 running: Callable[[], int | None], idle_timeout: Callable[[], int], set_clock: Callable[[], None],
                 record: Callable[[bool], None]) -> None:
        self._qmp_socket = qmp_socket
        self._open_api = open_api
        self._running = running
        self._idle_timeout = idle_timeout
        self._set_clock = set_clock
        self._record = record
        self._lock = threading.Lock()
        self._last = time.monotonic()
        self._waiting = 0
        """Connections whose request (the host's last bytes) the guest has not answered yet."""
        self._count = threading.Lock()
        self._snapshot: dict[str, bytes] = {}
        self.resting = False
        self._closed = threading.Event()

    def conversation(self) -> Callable[[bool | None], None]:
        """The traffic callback of one new relayed connection: ``True`` for bytes from the host (a request:
        resumes a resting machine first), ``False`` for bytes from the guest (the answer), ``None`` when it
        ends. While the host's last bytes on a connection are unanswered the machine is busy (a slow
        ``create`` or ``commit`` sends nothing for a while)."""
        waiting = False

        def traffic(inbound: bool | None) -> None:
            nonlocal waiting
            with self._count:
                if inbound and not waiting:
                    self._waiting += 1
                elif not inbound and waiting:
                    self._waiting -= 1
                waiting = bool(inbound)
            if inbound is not None:
                self.touch(inbound)

        return traffic

    def touch(self, request: bool = True) -> None:
        """Bytes crossed the API socket: the machine is not idle; a ``request`` resumes it if it rests (waiting
        for a pause under way to finish)."""
        self._last = time.monotonic()
        if request:
            self.wake()

    def idle_for(self) -> float:
        """Seconds since the last API traffic."""
        return time.monotonic() - self._last

    def _busy(self) -> bool:
        return self._waiting > 0 or self._running() != 0

    def rest(self) -> bool:
        """Record the snapshot and pause the VM if it is still idle; whether it now rests. Raises MachineError
        when QEMU refuses."""
        with self._lock:
            if self.resting:
                return True
            started = time.monotonic()
            snapshot = {normalise(target): fetch(self._open_api(), target) for target in SNAPSHOT}
            if self._last > started or self._busy():
                return False  # something happened meanwhile
            with QMP(self._qmp_socket) as qmp:
                qmp.execute("stop")
            self._snapshot = snapshot
            self.resting = True
            self._record(True)
        log.info("resource saver: paused the machine after %.0fs idle", self.idle_for())
        return True

    def wake(self) -> None:
        """Resume the VM if it rests (and set its clock); returns once its vCPUs run. Raises MachineError."""
        with self._lock:
            if not self.resting:
                return
            with QMP(self._qmp_socket) as qmp:
                qmp.execute("cont")
            self.resting = False
            self._snapshot = {}
            self._last = time.monotonic()
            self._record(False)
        log.info("resource saver: resumed the machine")
        threading.Thread(target=self._clock, daemon=True).start()

    def _clock(self) -> None:
        try:
            self._set_clock()
        except MachineError as exc:
            log.warning("setting the machine's clock after a pause: %s", exc)

    def gate(self, sock: socket.socket) -> bytes | None:
        """Called for each new API connection before it is relayed. While the machine rests, a snapshot
        request is answered here (None: the connection is done); anything else wakes the machine. Returns
        the bytes already read from ``sock``, to be sent on first."""
        if not self.resting:
            return b""
        head = read_head(sock)
        if head is None:
            sock.close()
            return None
        answer = self._snapshot.get(normalise(head.target)) if head.method in ("GET", "HEAD") else None
        if answer is not None and self.resting:
            reply = closing(answer)
            if head.method == "HEAD":
                reply = reply.partition(b"\r\n\r\n")[0] + b"\r\n\r\n"
            with suppress(OSError):
                sock.sendall(reply)
            sock.close()
            return None
        self.touch()
        return head.data

    def watch(self) -> None:
        """Pause the machine whenever it has been idle long enough, until :meth:`close` (run in a thread)."""
        while not self._closed.wait(1.0):
            timeout = self._idle_timeout()
            if self.resting or timeout <= 0 or self._busy() or self.idle_for() < timeout:
                continue
            try:
                self.rest()
            except MachineError as exc:
                log.warning("resource saver: %s", exc)
                self._last = time.monotonic()

    def close(self) -> None:
        self._closed.set()
