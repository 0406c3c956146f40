"""IP address management: a network's pool (subnet, gateway, ip-range) and address allocation.

A pool is IPv4. The gateway is the subnet's first host address unless given; container addresses come
from the ip-range (the whole subnet by default), never the network or broadcast address nor the
gateway. Allocations themselves live in the network store (``store.py``), so they survive a restart.
Errors use Docker's messages where it has them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from backend.engine.errors import Conflict, InvalidParameter, Unavailable

IPv4Net = ipaddress.IPv4Network

DEFAULT_POOLS: tuple[IPv4Net, ...] = (
    *(IPv4Net(f"172.{n}.0.0/16") for n in range(17, 32)),
    *(IPv4Net(f"192.168.{n}.0/20") for n in range(0, 256, 16)),
    *(IPv4Net(f"10.{n}.0.0/16") for n in range(200, 256)),
)
"""Candidates for a network without a subnet: Docker's local pools (172.17-31/16, 192.168/20 steps), then
some of 10/8."""


@dataclass(frozen=True)
class Pool:
    """A validated IPv4 pool. ``ip_range`` is a subnet of ``subnet``; ``gateway`` lies in ``subnet``."""

    subnet: IPv4Net
    gateway: ipaddress.IPv4Address
    ip_range: IPv4Net

    def to_docker(self) -> dict[str, str]:
        doc = {"Subnet": str(self.subnet), "Gateway": str(self.gateway)}
        if self.ip_range != self.subnet:
            doc["IPRange"] = str(self.ip_range)
        return doc


def _network(text: str) -> IPv4Net:
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError as exc:
        raise InvalidParameter(f"invalid CIDR address: {text}") from exc
    if not isinstance(net, IPv4Net):
        raise InvalidParameter(f"IPv6 subnets are not supported yet: {text}")
    return net


def parse_pool(subnet: str, gateway: str = "", ip_range: str = "") -> Pool:
    """A pool from Docker's IPAM config strings. Raises InvalidParameter for malformed or inconsistent values."""
    net = _network(subnet)
    if net.prefixlen > 30:
        raise InvalidParameter(f"subnet {subnet} is too small: it must leave room for a gateway and a container")
    if gateway:
        try:
            gw = ipaddress.IPv4Address(gateway)
        except ValueError as exc:
            raise InvalidParameter(f"invalid gateway address {gateway}: not an IPv4 address") from exc
        if gw not in net:
            raise InvalidParameter(f"no matching subnet for gateway {gateway}")
    else:
        gw = net.network_address + 1
    rng = _network(ip_range) if ip_range else net
    if not rng.subnet_of(net):
        raise InvalidParameter(f"no matching subnet for range {ip_range}")
    return Pool(net, gw, rng)


def overlapping(net: IPv4Net, taken: Iterable[IPv4Net]) -> IPv4Net | None:
    """The first of ``taken`` that overlaps ``net``, or None."""
    return next((t for t in taken if net.overlaps(t)), None)


def check_free(net: IPv4Net, taken: Iterable[IPv4Net]) -> None:
    """Raises Conflict with Docker's message if ``net`` overlaps one of ``taken``."""
    if overlapping(net, taken) is not None:
        raise Conflict("Pool overlaps with other one on this address space")


def choose_subnet(taken: Collection[IPv4Net], candidates: Iterable[IPv4Net] = DEFAULT_POOLS) -> IPv4Net:
    """The first candidate overlapping none of ``taken``. Raises Unavailable when all are used."""
    for candidate in candidates:
        if overlapping(candidate, taken) is None:
            return candidate
    raise Unavailable("could not find an available, non-overlapping IPv4 address pool among the defaults to "
                      "assign to the network")


def allocate(pool: Pool, used: Collection[str], wanted: str = "") -> str:
    """An address of ``pool`` not in ``used`` (and not the gateway): ``wanted`` if given, else the lowest free
    one of the ip-range. Raises InvalidParameter for a ``wanted`` outside the subnet, Conflict if it is taken,
    Unavailable when the range is full."""
    reserved = {pool.gateway, pool.subnet.network_address, pool.subnet.broadcast_address}
    if wanted:
        try:
            address = ipaddress.IPv4Address(wanted)
        except ValueError as exc:
            raise InvalidParameter(f"invalid IPv4 address: {wanted}") from exc
        if address not in pool.subnet:
            raise InvalidParameter(f"no available IPv4 addresses on this network's address pools: {wanted} is "
                                   f"outside {pool.subnet}")
        if address in reserved or wanted in used:
            raise Conflict(f"Address already in use: {wanted}")
        return wanted
    for address in pool.ip_range:
        if address not in reserved and str(address) not in used:
            return str(address)
    raise Unavailable(f"no available IPv4 addresses on this network's address pools: {pool.subnet}")


def mac_for(address: str) -> str:
    """Docker's MAC address for an IPv4 address: 02:42 followed by the address's four bytes."""
    return "02:42:" + ":".join(f"{b:02x}" for b in ipaddress.IPv4Address(address).packed)
