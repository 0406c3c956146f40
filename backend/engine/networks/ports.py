"""Published ports: ``-p`` specs (parsed by :mod:`backend.api.ports`) and ``PortBindings`` validated with
Docker's messages, and host ports reserved.

A published port is reserved by a socket bound to the host address and port for as long as the mapping
exists: another process cannot take the port, and a clash is reported as dockerd reports it. Traffic to the
host's addresses goes through kernel DNAT (``nat.py``); TCP to loopback reaches the reserving socket, which
listens and proxies (:class:`LoopbackProxy`): it accepts at once and connects to the container, retrying
while the container's server is not listening yet, so a client connecting the moment ``start`` returns is
served. An IPv6 host address (``-p [::1]:8080:80``) is served the same way, by the proxy, for TCP; and a
TCP port published on every address is also published on ``[::]`` (as dockerd's docker-proxy does), when
the host has IPv6. UDP to loopback is DNAT'd (``route_localnet``); UDP on IPv6 is refused. A random host
port is the one the kernel gives a socket bound to port 0 (or the first free one of a host port range).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import time

from backend.api import ports
from backend.api.ports import PROTOCOLS, PortSpec, parse_range, split_proto
from backend.engine.errors import InvalidParameter, Unavailable

CONNECT_PATIENCE = 5.0
"""Seconds the loopback proxy keeps retrying a refused connection to the container."""
CHUNK = 1 << 18


def parse_port_spec(raw: str) -> list[PortSpec]:
    """A ``-p`` spec (:func:`backend.api.ports.parse_port_spec`). Raises InvalidParameter with Docker's messages."""
    try:
        return ports.parse_port_spec(raw)
    except ports.PortSpecError as exc:
        raise InvalidParameter(str(exc)) from exc


def parse_bindings(bindings: dict[str, list[dict[str, str]]], exposed: list[str],
                   publish_all: bool) -> list[PortSpec]:
    """The mappings of a create request's ``PortBindings`` (plus every exposed port on a random host port
    with ``publish_all``), as dockerd checks them. Raises InvalidParameter ("invalid port specification", "invalid
    IP address")."""
    specs: list[PortSpec] = []
    for key, hosts in bindings.items():
        port, proto = split_proto(key)
        try:
            container_port, last = parse_range(port)
        except ValueError as exc:
            raise InvalidParameter(f'invalid port specification: "{port}"') from exc
        if last != container_port or proto not in PROTOCOLS:
            raise InvalidParameter(f'invalid port specification: "{key}"')
        for host in hosts or [{}]:
            host_ip = str(host.get("HostIp") or "")
            host_port = str(host.get("HostPort") or "")
            try:
                if host_ip:
                    ipaddress.ip_address(host_ip)
            except ValueError as exc:
                raise InvalidParameter(f"invalid IP address: {host_ip}") from exc
            try:
                start, end = parse_range(host_port) if host_port not in ("", "0") else (0, 0)
            except ValueError as exc:
                raise InvalidParameter(f'invalid port specification: "{host_port}"') from exc
            specs.append(PortSpec(host_ip, start, end, container_port, proto))
    if publish_all:
        bound = {(s.container_port, s.protocol) for s in specs}
        for key in exposed:
            port, proto = split_proto(key)
            with contextlib.suppress(ValueError):
                number = parse_range(port)[0]
                if (number, proto) not in bound:
                    specs.append(PortSpec("", 0, 0, number, proto))
    return specs


def reserve(host_ip: str, start: int, end: int, protocol: str) -> tuple[socket.socket, int]:
    """A socket bound to ``host_ip`` (every IPv4 address if empty) on the first free port of start..end (a
    random port for 0). Raises Unavailable with Docker's message when taken."""
    kind = socket.SOCK_DGRAM if protocol == "udp" else socket.SOCK_STREAM
    family = socket.AF_INET6 if ":" in host_ip else socket.AF_INET
    address = host_ip or "0.0.0.0"
    for port in range(start, end + 1):
        sock = socket.socket(family, kind)
        if family == socket.AF_INET6:  # [::] must not also take the IPv4 port (reserved on its own)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        if kind == socket.SOCK_STREAM:  # a restart may rebind while old proxied connections are in TIME_WAIT
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((address, port))
        except OSError:
            sock.close()
            continue
        return sock, int(sock.getsockname()[1])
    shown = f"{address}:{start}" if start == end else f"{address}:{start}-{end}"
    raise Unavailable(f"Bind for {shown} failed: port is already allocated")


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        writer.close()


class LoopbackProxy:
    """Serves a reserved TCP socket (see the module docstring) for ``address:port`` in a container."""

    def __init__(self, sock: socket.socket, address: str, port: int) -> None:
        self.sock = sock
        self.address = address
        self.port = port
        self.server: asyncio.Server | None = None

    async def start(self) -> None:
        self.sock.listen(128)
        self.sock.setblocking(False)
        self.server = await asyncio.start_server(self._serve, sock=self.sock, limit=CHUNK)

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        deadline = time.monotonic() + CONNECT_PATIENCE
        while True:
            try:
                return await asyncio.open_connection(self.address, self.port, limit=CHUNK)
            except ConnectionRefusedError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.005)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await self._connect()
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))
        upstream_writer.close()
        writer.close()

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
        self.sock.close()
