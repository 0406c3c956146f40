"""The embedded DNS server of user-defined networks, like Docker's 127.0.0.11.

For each container on a user-defined network, berthd opens a UDP and a TCP socket on 127.0.0.11:53
*inside the container's network namespace* (from a worker thread that enters it; a socket stays in the
namespace it was made in) and serves both from the event loop. Names of containers and aliases are
answered from ``lookup(container_id, name)``; any other name is forwarded, from the host's namespace, to
the nameservers of the host's /etc/resolv.conf (SERVFAIL if none answers).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from backend.engine.networks.netns import run_in

ADDRESS = "127.0.0.11"
TTL = 600
TYPE_A = 1
TYPE_AAAA = 28
RCODE_SERVFAIL = 2
RCODE_NXDOMAIN = 3
UPSTREAM_TIMEOUT = 3.0

Lookup = Callable[[str, str], list[str] | None]
"""(container ID, name) -> IPv4 addresses of a container the asker can see under that name, or None."""


@dataclass
class Question:
    """The (first) question of a query."""

    name: str
    qtype: int
    end: int
    """offset just past the question in the message"""


def parse_question(message: bytes) -> Question | None:
    """The first question of a DNS query, or None for a malformed or non-query message."""
    if len(message) < 12 or message[2] & 0x80 or struct.unpack("!H", message[4:6])[0] < 1:
        return None
    labels, offset = [], 12
    while True:
        if offset >= len(message):
            return None
        length = message[offset]
        offset += 1
        if length == 0:
            break
        if length & 0xC0 or offset + length > len(message):
            return None
        labels.append(message[offset:offset + length].decode("ascii", "replace"))
        offset += length
    if offset + 4 > len(message):
        return None
    qtype = struct.unpack("!H", message[offset:offset + 2])[0]
    return Question(".".join(labels).lower(), qtype, offset + 4)


def answer(query: bytes, question: Question, addresses: list[str], rcode: int = 0) -> bytes:
    """A response to ``query`` with A records for ``addresses`` (only for an A question)."""
    records = [a for a in addresses if question.qtype == TYPE_A]
    flags = 0x8000 | 0x0400 | (struct.unpack("!H", query[2:4])[0] & 0x0100) | 0x0080 | rcode
    header = query[:2] + struct.pack("!HHHHH", flags, 1, len(records), 0, 0)
    body = b"".join(struct.pack("!HHHIH", 0xC00C, TYPE_A, 1, TTL, 4) + ipaddress.IPv4Address(a).packed
                    for a in records)
    return header + query[12:question.end] + body


def host_nameservers(path: str = "/etc/resolv.conf") -> list[str]:
    """The nameservers of the host's resolv.conf."""
    servers = []
    with contextlib.suppress(OSError), open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 2 and parts[0] == "nameserver":
                servers.append(parts[1].split("%")[0])
    return servers


class _Forward(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.reply: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        if not self.reply.done():
            self.reply.set_result(data)


async def forward(query: bytes, question: Question) -> bytes:
    """The host resolvers' answer to ``query``, or SERVFAIL."""
    loop = asyncio.get_running_loop()
    for server in host_nameservers():
        family = socket.AF_INET6 if ":" in server else socket.AF_INET
        transport, protocol = await loop.create_datagram_endpoint(_Forward, remote_addr=(server, 53), family=family)
        try:
            transport.sendto(query)
            return await asyncio.wait_for(protocol.reply, UPSTREAM_TIMEOUT)
        except (TimeoutError, OSError):
            continue
        finally:
            transport.close()
    return answer(query, question, [], RCODE_SERVFAIL)


async def respond(container_id: str, query: bytes, lookup: Lookup) -> bytes | None:
    """The response to one query from ``container_id`` (None: drop it)."""
    question = parse_question(query)
    if question is None:
        return None
    addresses = lookup(container_id, question.name.rstrip("."))
    if addresses is not None:
        return answer(query, question, addresses)
    return await forward(query, question)


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, container_id: str, lookup: Lookup, tasks: set[asyncio.Future[None]]) -> None:
        self.container_id = container_id
        self.lookup = lookup
        self.tasks = tasks
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a datagram transport, not its ABC

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        async def reply() -> None:
            response = await respond(self.container_id, data, self.lookup)
            if response is not None and self.transport is not None and not self.transport.is_closing():
                self.transport.sendto(response, addr)
        task = asyncio.ensure_future(reply())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)


@dataclass
class _Served:
    udp: asyncio.DatagramTransport
    tcp: asyncio.Server
    tasks: set[asyncio.Future[None]] = field(default_factory=set)


def _open_sockets() -> tuple[socket.socket, socket.socket]:
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        for sock in (udp, tcp):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((ADDRESS, 53))
            sock.setblocking(False)
        tcp.listen(64)
    except BaseException:
        udp.close()
        tcp.close()
        raise
    return udp, tcp


class DnsServer:
    """One resolver per container namespace. ``serve``/``stop`` are idempotent."""

    def __init__(self, lookup: Lookup) -> None:
        self.lookup = lookup
        self._served: dict[str, _Served] = {}

    async def serve(self, container_id: str, namespace: str) -> None:
        """Answer queries sent to 127.0.0.11:53 inside ``namespace``. Raises OSError/Unavailable if the
        sockets cannot be made there."""
        if container_id in self._served:
            return
        udp_sock, tcp_sock = await asyncio.to_thread(run_in, namespace, _open_sockets)
        loop = asyncio.get_running_loop()
        tasks: set[asyncio.Future[None]] = set()
        try:
            udp, _ = await loop.create_datagram_endpoint(lambda: _Udp(container_id, self.lookup, tasks),
                                                         sock=udp_sock)
        except BaseException:
            udp_sock.close()
            tcp_sock.close()
            raise

        async def on_tcp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while True:
                    size = struct.unpack("!H", await reader.readexactly(2))[0]
                    response = await respond(container_id, await reader.readexactly(size), self.lookup)
                    if response is None:
                        break
                    writer.write(struct.pack("!H", len(response)) + response)
                    await writer.drain()
            writer.close()

        tcp = await asyncio.start_server(on_tcp, sock=tcp_sock)
        self._served[container_id] = _Served(udp, tcp, tasks)

    def stop(self, container_id: str) -> None:
        """Close the container's resolver sockets (they hold its namespace)."""
        served = self._served.pop(container_id, None)
        if served is not None:
            served.udp.close()
            served.tcp.close()
            for task in list(served.tasks):
                task.cancel()

    def stop_all(self) -> None:
        for container_id in list(self._served):
            self.stop(container_id)
