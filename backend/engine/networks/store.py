"""What the network service keeps on disk: ``<data-root>/network/state.json``, replaced atomically (temp
file, fsync, rename) on every change, so networks, address allocations and the published ports of running
containers survive a daemon crash.

``ContainerNet`` is a container's networking as asked for (mode, networks with aliases and fixed
addresses, ports, DNS and hosts settings) plus what is in place while it runs (``active`` endpoints and
``ports``). Records are plain dataclasses that round-trip through JSON.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any

from backend.engine.errors import NotFound
from backend.engine.runtime.monitor import write_json_atomic


@dataclass
class NetworkRecord:
    """One network. ``driver`` is ``bridge``, ``host`` or ``null``; only bridges have a pool and a device."""

    id: str
    name: str
    driver: str
    created: str
    subnet: str = ""
    gateway: str = ""
    ip_range: str = ""
    bridge: str = ""
    internal: bool = False
    attachable: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    options: dict[str, str] = field(default_factory=dict)
    default: bool = False
    allocations: dict[str, str] = field(default_factory=dict)
    """address -> container ID"""


@dataclass
class EndpointRequest:
    """A network a container asks to join."""

    aliases: list[str] = field(default_factory=list)
    ipv4: str = ""


@dataclass
class ActiveEndpoint:
    """A container's attachment to a network while it runs."""

    network_id: str
    address: str
    mac: str
    veth: str
    aliases: list[str] = field(default_factory=list)


@dataclass
class PortMapping:
    """One published port as in place: ``host_ip`` "" means every IPv4 address."""

    container_port: int
    protocol: str
    host_ip: str
    host_port: int


@dataclass
class ContainerNet:
    """A container's networking (see the module docstring). ``mode`` is ``bridge`` (joins ``networks``),
    ``host``, ``none`` or ``container:<id>``."""

    mode: str
    networks: dict[str, EndpointRequest] = field(default_factory=dict)
    """network ID -> what was asked"""
    hostname: str = ""
    domainname: str = ""
    dns: list[str] = field(default_factory=list)
    dns_search: list[str] = field(default_factory=list)
    dns_options: list[str] = field(default_factory=list)
    extra_hosts: list[str] = field(default_factory=list)
    port_bindings: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    exposed: list[str] = field(default_factory=list)
    publish_all: bool = False
    files_dir: str = ""
    active: dict[str, ActiveEndpoint] = field(default_factory=dict)
    ports: list[PortMapping] = field(default_factory=list)

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> ContainerNet:
        net = cls(**{k: v for k, v in doc.items() if k not in ("networks", "active", "ports")})
        net.networks = {k: EndpointRequest(**v) for k, v in doc.get("networks", {}).items()}
        net.active = {k: ActiveEndpoint(**v) for k, v in doc.get("active", {}).items()}
        net.ports = [PortMapping(**p) for p in doc.get("ports", [])]
        return net


class NetworkStore:
    """Networks and containers' networking, in memory and in ``<root>/state.json``."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.path = os.path.join(root, "state.json")
        self.networks: dict[str, NetworkRecord] = {}
        self.containers: dict[str, ContainerNet] = {}

    def load(self) -> None:
        """Read the state file (absent: empty). Raises OSError/ValueError for an unreadable one."""
        os.makedirs(self.root, mode=0o700, exist_ok=True)
        if not os.path.exists(self.path):
            return
        with open(self.path) as f:
            doc = json.load(f)
        self.networks = {k: NetworkRecord(**v) for k, v in doc.get("networks", {}).items()}
        self.containers = {k: ContainerNet.from_json(v) for k, v in doc.get("containers", {}).items()}

    def save(self) -> None:
        write_json_atomic(self.path, {"networks": {k: asdict(v) for k, v in self.networks.items()},
                                      "containers": {k: asdict(v) for k, v in self.containers.items()}},
                          durable=True)

    def get(self, ref: str) -> NetworkRecord:
        """A network by full ID, name or unique ID prefix. Raises NotFound with Docker's message."""
        if ref in self.networks:
            return self.networks[ref]
        by_name = [n for n in self.networks.values() if n.name == ref]
        if by_name:
            return by_name[0]
        by_prefix = [n for n in self.networks.values() if ref and n.id.startswith(ref)]
        if len(by_prefix) == 1:
            return by_prefix[0]
        raise NotFound(f"network {ref} not found")

    def default_bridge(self) -> NetworkRecord:
        return next(n for n in self.networks.values() if n.default)
