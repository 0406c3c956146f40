"""Netlink work through pyroute2: bridges, veth pairs into container namespaces, addresses and routes.

Every function is blocking (call it from a worker thread) and raises Unavailable with the kernel's message
when netlink refuses. Host-side veth names are ``vb`` + 11 hex digits of a hash of the container ID and the
network ID, so a stale one is found again after a crash; inside the container the device is ``eth<n>``.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import os
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from backend.engine.errors import Unavailable
from backend.engine.networks import netns

T = TypeVar("T")
VETH_PREFIX = "vb"


def veth_name(container_id: str, network_id: str) -> str:
    return VETH_PREFIX + hashlib.sha256(f"{container_id}/{network_id}".encode()).hexdigest()[:11]


def _netlink_error() -> type[Exception]:
    from pyroute2.netlink.exceptions import NetlinkError

    error: type[Exception] = NetlinkError
    return error


@contextlib.contextmanager
def _rtnl(what: str) -> Iterator[Any]:
    """A netlink socket. pyroute2 (about 10 MB) is imported here, on the first network operation, not
    when berthd starts."""
    from pyroute2 import IPRoute

    try:
        with IPRoute() as ipr:
            yield ipr
    except _netlink_error() as exc:
        code = getattr(exc, "code", 0)
        raise Unavailable(f"{what}: {os.strerror(code) if code else exc}") from exc


def _index(ipr: Any, name: str) -> int | None:
    found = ipr.link_lookup(ifname=name)
    return int(found[0]) if found else None


def ensure_bridge(name: str, gateway: str, prefixlen: int) -> None:
    """Bridge ``name`` exists, is up, and has ``gateway/prefixlen`` (created or completed as needed)."""
    with _rtnl(f"bridge {name}") as ipr:
        index = _index(ipr, name)
        if index is None:
            ipr.link("add", ifname=name, kind="bridge")
            index = _index(ipr, name)
        addresses = {(a.get_attr("IFA_ADDRESS"), a["prefixlen"]) for a in ipr.get_addr(index=index, family=2)}
        if (gateway, prefixlen) not in addresses:
            ipr.addr("add", index=index, address=gateway, prefixlen=prefixlen)
        ipr.link("set", index=index, state="up")
    with open(f"/proc/sys/net/ipv4/conf/{name}/route_localnet", "w") as f:  # DNAT of 127.0.0.1 to a container
        f.write("1")


def delete_link(name: str) -> None:
    """Delete a link (a bridge, or a veth and so its peer) if it exists."""
    with _rtnl(f"delete {name}") as ipr:
        index = _index(ipr, name)
        if index is not None:
            with contextlib.suppress(_netlink_error()):
                ipr.link("del", index=index)


def links_named(prefix: str) -> list[str]:
    """Names of the host's links starting with ``prefix``."""
    with _rtnl("list links") as ipr:
        return [str(link.get_attr("IFLA_IFNAME")) for link in ipr.get_links()
                if str(link.get_attr("IFLA_IFNAME")).startswith(prefix)]


def host_networks(route_table: str = "/proc/net/route") -> list[ipaddress.IPv4Network]:
    """The IPv4 networks of the host's routes (the main table, not the default route; every address's
    subnet has its prefix route there), to be avoided by new networks. Read from procfs: no netlink."""
    nets = []
    try:
        with open(route_table) as f:
            rows = [line.split() for line in f.readlines()[1:]]
    except OSError as exc:
        raise Unavailable(f"list routes: {exc.strerror}") from exc
    for row in rows:
        if len(row) < 8:
            continue
        destination = ipaddress.IPv4Address(int(row[1], 16).to_bytes(4, "little"))
        mask = ipaddress.IPv4Address(int(row[7], 16).to_bytes(4, "little"))
        if int(mask):
            nets.append(ipaddress.IPv4Network(f"{destination}/{mask}", strict=False))
    return [n for n in nets if not n.is_loopback]


def plug(namespace: str, bridge: str, veth: str, device: str, address: str, prefixlen: int, mac: str,
         gateway: str | None) -> None:
    """A veth pair: ``veth`` on the host, enslaved to ``bridge``; its peer moved into ``namespace`` as
    ``device`` with ``address/prefixlen`` and ``mac``, up, with a default route via ``gateway`` when given
    (and ``lo`` up). A failure leaves no link behind."""
    peer = "p" + veth[1:]
    with _rtnl(f"veth {veth}") as ipr:
        master = _index(ipr, bridge)
        if master is None:
            raise Unavailable(f"bridge {bridge} does not exist")
        if _index(ipr, veth) is not None:
            ipr.link("del", ifname=veth)
        ipr.link("add", ifname=veth, kind="veth", peer=peer)
        try:
            ipr.link("set", index=_index(ipr, veth), master=master, state="up")
            fd = os.open(namespace, os.O_RDONLY | os.O_CLOEXEC)
            try:
                ipr.link("set", index=_index(ipr, peer), net_ns_fd=fd)
            finally:
                os.close(fd)
            netns.run_in(namespace, lambda: _configure(device, peer, address, prefixlen, mac, gateway))
        except BaseException:
            with contextlib.suppress(_netlink_error()):
                ipr.link("del", ifname=veth)
            raise


def _configure(device: str, peer: str, address: str, prefixlen: int, mac: str, gateway: str | None) -> None:
    with _rtnl(f"configure {device}") as ipr:
        lo = _index(ipr, "lo")
        ipr.link("set", index=lo, state="up")
        index = _index(ipr, peer)
        ipr.link("set", index=index, ifname=device, address=mac)
        ipr.addr("add", index=index, address=address, prefixlen=prefixlen)
        ipr.link("set", index=index, state="up")
        if gateway:
            ipr.route("replace", dst="0.0.0.0/0", gateway=gateway)


def loopback_up(namespace: str) -> None:
    """``lo`` up inside ``namespace``."""
    def up() -> None:
        with _rtnl("loopback") as ipr:
            ipr.link("set", index=_index(ipr, "lo"), state="up")
    netns.run_in(namespace, up)


def in_namespace(namespace: str, work: Callable[[], T]) -> T:
    """``work()`` inside ``namespace`` (re-exported for the DNS server, which opens its sockets there)."""
    return netns.run_in(namespace, work)
