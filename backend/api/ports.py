"""Docker's port specs, parsed as its ``nat`` package does: ``-p``/``--publish`` and ``--expose`` values.

Pure functions with no I/O: the berth CLI builds create bodies with them and the engine checks specs with
them (wrapping :class:`PortSpecError` into its own error). Messages are Docker's.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

PROTOCOLS = ("tcp", "udp", "sctp")


class PortSpecError(ValueError):
    """A port spec Docker's parser refuses; the text is Docker's message."""


@dataclass(frozen=True)
class PortSpec:
    """One mapping of a ``-p`` spec. Host ports 0-0 mean a random one; a range with one container port is
    the range to choose a free host port from."""

    host_ip: str
    host_start: int
    host_end: int
    container_port: int
    protocol: str

    @property
    def key(self) -> str:
        """The API's port key, ``80/tcp``."""
        return f"{self.container_port}/{self.protocol}"

    @property
    def host_port(self) -> str:
        """The API's ``HostPort``: ``""`` (random), ``"8080"`` or ``"9000-9010"``."""
        if not self.host_start:
            return ""
        return str(self.host_start) if self.host_start == self.host_end else f"{self.host_start}-{self.host_end}"


def parse_range(text: str) -> tuple[int, int]:
    """``"80"`` or ``"8000-8010"`` to (start, end), ports 1-65535. Raises ValueError."""
    start, sep, end = text.partition("-")
    if not start.isdigit() or (sep and not end.isdigit()):
        raise ValueError(text)
    first = int(start)
    last = int(end) if sep else first
    if not 0 < first <= last <= 65535:
        raise ValueError(text)
    return first, last


def split_proto(text: str) -> tuple[str, str]:
    """``"80/udp"`` to ("80", "udp"); the protocol defaults to tcp."""
    port, _, proto = text.partition("/")
    return port, proto or "tcp"


def parse_port_spec(raw: str) -> list[PortSpec]:
    """A ``-p [ip:][host_port[-end]:]container_port[-end][/proto]`` spec, as Docker's ParsePortSpec reads it.
    Raises PortSpecError with Docker's messages."""
    host_ip, host_port, container = "", "", raw
    if raw.count(":") >= 1:
        head, _, container = raw.rpartition(":")
        host_ip, sep, host_port = head.rpartition(":")
        if not sep:
            host_ip, host_port = "", head
    container, proto = split_proto(container)
    if host_ip.startswith("["):
        host_ip = host_ip[1:].rstrip("]")
    if host_ip:
        try:
            ipaddress.ip_address(host_ip)
        except ValueError as exc:
            raise PortSpecError(f"invalid IP address: {host_ip}") from exc
    if not container:
        raise PortSpecError(f"no port specified: {raw}<empty>")
    try:
        start, end = parse_range(container)
    except ValueError as exc:
        raise PortSpecError(f"invalid containerPort: {container}") from exc
    host_start = host_end = 0
    if host_port == "0":  # "ip:0:80": a random host port, as with no host port
        host_port = ""
    if host_port:
        try:
            host_start, host_end = parse_range(host_port)
        except ValueError as exc:
            raise PortSpecError(f"invalid hostPort: {host_port}") from exc
        if end - start != host_end - host_start and end != start:
            raise PortSpecError(f"invalid ranges specified for container and host Ports: {container} and {host_port}")
    if proto.lower() not in PROTOCOLS:
        raise PortSpecError(f"invalid proto: {proto}")
    if end == start:
        return [PortSpec(host_ip, host_start, host_end, start, proto.lower())]
    return [PortSpec(host_ip, host_start + i if host_port else 0, host_start + i if host_port else 0, start + i,
                     proto.lower()) for i in range(end - start + 1)]


def parse_expose(raw: str) -> list[str]:
    """An ``--expose PORT[-END][/proto]`` value to port keys (``80/tcp``), as the docker CLI reads it.
    Raises PortSpecError with its messages."""
    if ":" in raw:
        raise PortSpecError(f"invalid port format for --expose: {raw}")
    port, proto = split_proto(raw)
    try:
        start, end = parse_range(port)
    except ValueError as exc:
        raise PortSpecError(f"invalid range format for --expose: {raw}") from exc
    if proto.lower() not in PROTOCOLS:
        raise PortSpecError(f"invalid proto: {proto}")
    return [f"{p}/{proto.lower()}" for p in range(start, end + 1)]
