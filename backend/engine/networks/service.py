"""NetworkService: networks (create, list, inspect, remove, prune, connect, disconnect) and containers'
networking (attach before the runtime creates a container, detach when it stops, recover after a crash).

Networks: ``bridge`` (the default bridge, device ``berth0`` unless configured, a free private subnet chosen
at first start), ``host``, ``none`` and user-defined bridges (device ``br-<id[:12]>``). A container on a
bridge network runs in its own network namespace (``netns.py``) joined to each of its networks by a veth
pair; published ports are DNAT rules plus a reserved host socket (``ports.py``, ``nat.py``); on
user-defined networks an embedded resolver answers container names and aliases (``dns.py``).

Lifecycle: ``register`` at create (validates, records what was asked, says what the OCI config needs);
``attach`` before the runtime creates the container; ``detach`` on exit (addresses, veths, rules and the
namespace go, as dockerd releases them); ``forget`` on remove; ``recover`` at daemon start re-adopts the
running containers and deletes everything else of Berth's. Kernel work runs in worker threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
import ipaddress
import os
import secrets
import socket
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from backend.engine.errors import Conflict, Forbidden, InvalidParameter, NotFound, Unavailable
from backend.engine.events import EventBus
from backend.engine.networks import etc_files, ipam, links, netns
from backend.engine.networks.dns import DnsServer
from backend.engine.networks.nat import Nat
from backend.engine.networks.ports import LoopbackProxy, parse_bindings, reserve
from backend.engine.networks.store import (
    ActiveEndpoint,
    ContainerNet,
    EndpointRequest,
    NetworkRecord,
    NetworkStore,
    PortMapping,
)

BRIDGE_NAME_OPTION = "com.docker.network.bridge.name"
PREDEFINED = ("bridge", "host", "none")


class ContainerRef(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def name(self) -> str: ...


ContainerLookup = Callable[[str], ContainerRef]
"""A container by name or ID (raises NotFound), handed in by the composition root."""


@dataclass(frozen=True)
class NetworkSpec:
    """What the container's OCI config needs: the namespace to join (None: the host's) and the bind mounts
    of its hosts, resolv.conf and hostname files."""

    namespace: str | None
    mounts: list[dict[str, object]] = field(default_factory=list)


@dataclass
class NetworkRequest:
    """The networking fields of a create request (see ``create_request.py``)."""

    mode: str = "default"
    endpoints: dict[str, EndpointRequest] = field(default_factory=dict)
    hostname: str = ""
    domainname: str = ""
    dns: list[str] = field(default_factory=list)
    dns_search: list[str] = field(default_factory=list)
    dns_options: list[str] = field(default_factory=list)
    extra_hosts: list[str] = field(default_factory=list)
    port_bindings: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    exposed: list[str] = field(default_factory=list)
    publish_all: bool = False


def default_bridge_name(data_root: str) -> str:
    """``berth0`` for the standard data root; for another (a test daemon's) a name derived from it, so
    daemons on one host never share a bridge or NAT chains."""
    if os.path.normpath(data_root) == "/var/lib/berth":
        return "berth0"
    return "bt" + hashlib.sha256(os.path.abspath(data_root).encode()).hexdigest()[:8]


def purge(data_root: str) -> None:
    """Delete the bridges and NAT chains of the daemon on ``data_root`` (for test fixtures that kill a
    daemon's containers after stopping it). Blocking; missing pieces are skipped."""
    store = NetworkStore(os.path.join(data_root, "network"))
    with contextlib.suppress(OSError, ValueError):
        store.load()
    for network in store.networks.values():
        if network.bridge:
            links.delete_link(network.bridge)
    bridge = default_bridge_name(data_root)
    Nat(_chain_prefix(bridge)).teardown()


def _chain_prefix(bridge: str) -> str:
    return "BERTH" if bridge == "berth0" else f"BERTH-{bridge}"


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat().replace("+00:00", "Z")


class NetworkService:
    """See the module docstring. ``containers`` must be set by the composition root before use."""

    def __init__(self, root: str, exec_root: str, events: EventBus, *, bridge_name: str = "berth0",
                 default_subnet: str = "") -> None:
        self.store = NetworkStore(root)
        self.netns_dir = os.path.join(exec_root, "netns")
        self.events = events
        self.bridge_name = bridge_name
        self.default_subnet = default_subnet
        self.nat = Nat(_chain_prefix(bridge_name))
        self.dns = DnsServer(self._resolve)
        self.containers: ContainerLookup | None = None
        self._lock = asyncio.Lock()
        self._reserved: dict[str, list[socket.socket | LoopbackProxy]] = {}
        self._up: set[str] = set()  # bridges made (with their NAT rules) since this daemon started

    # -- start and stop of the daemon ----------------------------------------------------------------

    async def start(self) -> None:
        """At daemon start, before serving: load the state, make the predefined networks, set up the (emptied)
        chains. A bridge (and its NAT rules) is made when the first container joins it, so an idle engine
        holds no netlink machinery. Raises Unavailable (no iptables)."""
        async with self._lock:
            await asyncio.to_thread(self.store.load)
            await asyncio.to_thread(self._predefined)
            await asyncio.to_thread(self.nat.setup)

    async def recover(self, running: Collection[str]) -> None:
        """After ``start``: re-adopt the containers in ``running`` and delete every namespace, veth, rule
        and allocation of containers that are not running."""
        async with self._lock:
            for cid in netns.listed(self.netns_dir):
                if cid not in running:
                    await asyncio.to_thread(netns.remove, self._namespace(cid))
            for cid, net in self.store.containers.items():
                if cid in running and net.active:
                    await self._adopt(cid, net)
                else:
                    await asyncio.to_thread(self._release, cid, net)
            self.store.save()

    async def close(self) -> None:
        """Daemon shutdown: stop the resolvers (running containers keep their links and rules; the next
        ``recover`` re-adopts them). With no container attached, bridges and chains are deleted too."""
        async with self._lock:
            self.dns.stop_all()
            for cid in list(self._reserved):
                self._unreserve(cid)
            if not any(net.active for net in self.store.containers.values()):
                for network in self._bridges():
                    if os.path.exists(f"/sys/class/net/{network.bridge}"):
                        await asyncio.to_thread(links.delete_link, network.bridge)
                await asyncio.to_thread(self.nat.teardown)

    def _predefined(self) -> None:
        names = {n.name for n in self.store.networks.values()}
        if "bridge" not in names:
            taken = [*links.host_networks(), *self._subnets()]
            subnet = ipam.parse_pool(self.default_subnet) if self.default_subnet else None
            chosen = subnet.subnet if subnet else ipam.choose_subnet(taken)
            if subnet:
                ipam.check_free(chosen, taken)
            pool = subnet or ipam.parse_pool(str(chosen))
            self._add(NetworkRecord(id=secrets.token_hex(32), name="bridge", driver="bridge", created=_now(),
                                    subnet=str(pool.subnet), gateway=str(pool.gateway), bridge=self.bridge_name,
                                    default=True, options={"com.docker.network.bridge.default_bridge": "true",
                                                           BRIDGE_NAME_OPTION: self.bridge_name}))
        for name, driver in (("host", "host"), ("none", "null")):
            if name not in names:
                self._add(NetworkRecord(id=secrets.token_hex(32), name=name, driver=driver, created=_now()))
        self.store.save()

    def _add(self, record: NetworkRecord) -> None:
        self.store.networks[record.id] = record

    def _bridges(self) -> list[NetworkRecord]:
        return [n for n in self.store.networks.values() if n.driver == "bridge"]

    def _subnets(self) -> list[ipaddress.IPv4Network]:
        return [ipaddress.IPv4Network(n.subnet) for n in self._bridges()]

    def _bring_up(self, network: NetworkRecord) -> None:
        pool = ipam.parse_pool(network.subnet, network.gateway, network.ip_range)
        links.ensure_bridge(network.bridge, network.gateway, pool.subnet.prefixlen)
        self.nat.add_bridge(network.bridge, network.subnet, network.internal)
        self._up.add(network.bridge)

    async def _ensure_up(self, network: NetworkRecord) -> None:
        if network.bridge not in self._up:
            await asyncio.to_thread(self._bring_up, network)

    # -- networks ------------------------------------------------------------------------------------

    async def create(self, body: object) -> str:
        """``POST /networks/create``. Returns the ID. Raises InvalidParameter for a bad body, Conflict for a
        name in use or an overlapping subnet, NotFound for a driver other than bridge."""
        if not isinstance(body, dict):
            raise InvalidParameter("network config must be an object")
        name = body.get("Name")
        if not isinstance(name, str) or not name:
            raise InvalidParameter("network name is required")
        driver = body.get("Driver") or "bridge"
        if driver != "bridge":
            raise NotFound(f"plugin \"{driver}\" not found")
        ipam_doc = body.get("IPAM") or {}
        configs = ipam_doc.get("Config") or [] if isinstance(ipam_doc, dict) else None
        if not isinstance(configs, list) or not all(isinstance(c, dict) for c in configs):
            raise InvalidParameter("IPAM.Config: expected a list of objects")
        configs = [c for c in configs if ":" not in str(c.get("Subnet") or "")]
        if len(configs) > 1:
            raise InvalidParameter("only one IPv4 subnet per network is supported")
        options = body.get("Options") or {}
        labels = body.get("Labels") or {}
        if not isinstance(options, dict) or not isinstance(labels, dict):
            raise InvalidParameter("Options and Labels must be objects")
        async with self._lock:
            if any(n.name == name for n in self.store.networks.values()):
                raise Conflict(f"network with name {name} already exists")
            taken = [*await asyncio.to_thread(links.host_networks), *self._subnets()]
            if configs:
                config = configs[0]
                if not config.get("Subnet"):
                    raise InvalidParameter("IPAM config without a subnet is not supported")
                pool = ipam.parse_pool(str(config["Subnet"]), str(config.get("Gateway") or ""),
                                       str(config.get("IPRange") or ""))
                ipam.check_free(pool.subnet, self._subnets())
            else:
                pool = ipam.parse_pool(str(ipam.choose_subnet(taken)))
            network_id = secrets.token_hex(32)
            device = str(options.get(BRIDGE_NAME_OPTION) or f"br-{network_id[:12]}")
            if len(device) > 15 or any(n.bridge == device for n in self._bridges()):
                raise InvalidParameter(f"invalid bridge name {device!r}")
            record = NetworkRecord(
                id=network_id, name=name, driver="bridge", created=_now(), subnet=str(pool.subnet),
                gateway=str(pool.gateway), ip_range=str(pool.ip_range) if pool.ip_range != pool.subnet else "",
                bridge=device, internal=bool(body.get("Internal")), attachable=bool(body.get("Attachable")),
                labels={str(k): str(v) for k, v in labels.items()},
                options={str(k): str(v) for k, v in options.items()})
            try:
                await asyncio.to_thread(self._bring_up, record)
            except BaseException:
                await asyncio.to_thread(self._take_down, record)
                raise
            self._add(record)
            self.store.save()
        self.events.emit("network", "create", network_id, {"name": name, "type": "bridge"})
        return network_id

    def _take_down(self, network: NetworkRecord) -> None:
        self.nat.remove_bridge(network.bridge, network.subnet, network.internal)
        links.delete_link(network.bridge)
        self._up.discard(network.bridge)

    def get(self, ref: str) -> NetworkRecord:
        """Raises NotFound ("network X not found")."""
        return self.store.get(ref)

    def list_networks(self, filters: dict[str, list[str]] | None = None) -> list[NetworkRecord]:
        """Networks matching Docker's list filters (name, id, driver, label, type). Raises InvalidParameter
        for another filter."""
        filters = filters or {}
        unknown = set(filters) - {"name", "id", "driver", "label", "type", "scope", "dangling"}
        if unknown:
            raise InvalidParameter(f"invalid filter '{sorted(unknown)[0]}'")
        out = []
        for n in sorted(self.store.networks.values(), key=lambda n: n.name):
            kind = "builtin" if n.name in PREDEFINED else "custom"
            if "name" in filters and not any(f in n.name for f in filters["name"]):
                continue
            if "id" in filters and not any(n.id.startswith(f) for f in filters["id"]):
                continue
            if "driver" in filters and n.driver not in filters["driver"]:
                continue
            if "type" in filters and kind not in filters["type"]:
                continue
            if "label" in filters and not all(self._has_label(n, want) for want in filters["label"]):
                continue
            out.append(n)
        return out

    @staticmethod
    def _has_label(network: NetworkRecord, want: str) -> bool:
        key, sep, value = want.partition("=")
        return key in network.labels and (not sep or network.labels[key] == value)

    def inspect(self, ref: str) -> dict[str, Any]:
        """Docker's network document with its attached (running) containers."""
        n = self.store.get(ref)
        members: dict[str, Any] = {}
        for cid, net in self.store.containers.items():
            endpoint = net.active.get(n.id)
            if endpoint is not None:
                prefix = ipaddress.IPv4Network(n.subnet).prefixlen
                members[cid] = {"Name": self._name(cid), "EndpointID": _endpoint_id(cid, n.id),
                                "MacAddress": endpoint.mac, "IPv4Address": f"{endpoint.address}/{prefix}",
                                "IPv6Address": ""}
            elif n.driver == "host" and net.mode == "host" and net.active:
                members[cid] = {"Name": self._name(cid), "EndpointID": _endpoint_id(cid, n.id), "MacAddress": "",
                                "IPv4Address": "", "IPv6Address": ""}
        config = [ipam.parse_pool(n.subnet, n.gateway, n.ip_range).to_docker()] if n.subnet else []
        return {"Name": n.name, "Id": n.id, "Created": n.created, "Scope": "local", "Driver": n.driver,
                "EnableIPv6": False, "IPAM": {"Driver": "default", "Options": None, "Config": config},
                "Internal": n.internal, "Attachable": n.attachable, "Ingress": False, "ConfigFrom": {"Network": ""},
                "ConfigOnly": False, "Containers": members, "Options": n.options, "Labels": n.labels}

    async def remove(self, ref: str) -> None:
        """``DELETE /networks/{id}``. Raises NotFound, Forbidden for a predefined network or one with
        running containers."""
        async with self._lock:
            n = self.store.get(ref)
            if n.name in PREDEFINED:
                raise Forbidden(f"{n.name} is a pre-defined network and cannot be removed")
            if any(n.id in net.active for net in self.store.containers.values()):
                raise Forbidden(f"error while removing network: network {n.name} id {n.id} has active endpoints")
            await asyncio.to_thread(self._take_down, n)
            del self.store.networks[n.id]
            self.store.save()
        self.events.emit("network", "destroy", n.id, {"name": n.name, "type": n.driver})

    async def prune(self, *, until: float | None = None, labels: Sequence[str] = (),
                    not_labels: Sequence[str] = ()) -> list[str]:
        """``docker network prune``: remove every user-defined network no container refers to (running or
        not), created before ``until`` (Unix seconds), with all ``labels`` and none of ``not_labels``
        (``key`` or ``key=value``). Returns their names."""
        def has(n: NetworkRecord, want: str) -> bool:
            key, sep, value = want.partition("=")
            return key in n.labels and (not sep or n.labels[key] == value)

        used = {network_id for net in self.store.containers.values() for network_id in net.networks}
        removed = []
        for n in list(self.store.networks.values()):
            if n.name in PREDEFINED or n.id in used:
                continue
            created = datetime.datetime.fromisoformat(n.created.replace("Z", "+00:00")).timestamp()
            if until is not None and created >= until:
                continue
            if not all(has(n, w) for w in labels) or any(has(n, w) for w in not_labels):
                continue
            with contextlib.suppress(Forbidden, NotFound):
                await self.remove(n.id)
                removed.append(n.name)
        return removed

    # -- containers ----------------------------------------------------------------------------------

    def _namespace(self, cid: str) -> str:
        return os.path.join(self.netns_dir, cid)

    def _name(self, cid: str) -> str:
        if self.containers is None:
            return cid[:12]
        with contextlib.suppress(NotFound):
            return self.containers(cid).name
        return cid[:12]

    def register(self, cid: str, request: NetworkRequest, files_dir: str) -> NetworkSpec:
        """Record a new container's networking (create). Raises InvalidParameter for an unknown network or
        container (not NotFound: the docker CLI answers a 404 on create by pulling the image), bad ports,
        hosts, aliases or addresses (Docker's messages)."""
        try:
            return self._register(cid, request, files_dir)
        except NotFound as exc:
            raise InvalidParameter(str(exc)) from exc

    def _register(self, cid: str, request: NetworkRequest, files_dir: str) -> NetworkSpec:
        mode = request.mode or "default"
        net = ContainerNet(mode="bridge", hostname=request.hostname or cid[:12], domainname=request.domainname,
                           dns=request.dns, dns_search=request.dns_search, dns_options=request.dns_options,
                           extra_hosts=request.extra_hosts, port_bindings=request.port_bindings,
                           exposed=request.exposed, publish_all=request.publish_all, files_dir=files_dir)
        gateway = self.store.default_bridge().gateway
        for entry in request.extra_hosts:
            etc_files.parse_extra_host(entry, gateway)
        if mode in ("host", "none"):
            net.mode = mode
        elif mode.startswith("container:"):
            if self.containers is None:
                raise NotFound(f"No such container: {mode[10:]}")
            net.mode = "container:" + self.containers(mode[10:]).id
        else:
            network = self.store.default_bridge() if mode in ("default", "bridge") else self.store.get(mode)
            if network.driver == "host":
                net.mode = "host"
            elif network.driver == "null":
                net.mode = "none"
            else:
                wanted = request.endpoints.get(mode) or request.endpoints.get(network.name) or \
                    request.endpoints.get(network.id) or EndpointRequest()
                if network.default and wanted.aliases:
                    raise InvalidParameter("network-scoped alias is supported only for containers in user "
                                           "defined networks")
                if network.default and wanted.ipv4:
                    raise InvalidParameter("user specified IP address is supported on user defined networks only")
                net.networks[network.id] = wanted
        if net.mode != "bridge" and (request.port_bindings or request.publish_all):
            if net.mode == "host":
                net.port_bindings, net.publish_all = {}, False  # dockerd ignores them with a warning
            else:
                raise InvalidParameter("conflicting options: port publishing and the container type network mode")
        parse_bindings(net.port_bindings, net.exposed, net.publish_all)
        self.store.containers[cid] = net
        self.store.save()
        namespace = None if net.mode == "host" else (
            self._namespace(net.mode[10:]) if net.mode.startswith("container:") else self._namespace(cid))
        return NetworkSpec(namespace, etc_files.mounts(files_dir))

    async def attach(self, cid: str) -> None:
        """Before the runtime creates the container: its namespace, endpoints, published ports, resolver and
        files. A failure leaves nothing in place. Raises NotFound (a network was removed), Conflict (an
        address or port taken, the container whose namespace it shares is not running), Unavailable."""
        async with self._lock:
            net = self.store.containers.get(cid)
            if net is None:
                return
            try:
                await self._attach(cid, net)
            except BaseException:
                self.dns.stop(cid)
                self._unreserve(cid)
                await asyncio.to_thread(self._release, cid, net)
                self.store.save()
                raise
            self.store.save()

    async def _attach(self, cid: str, net: ContainerNet) -> None:
        if net.mode.startswith("container:"):
            other = net.mode[10:]
            if not os.path.exists(self._namespace(other)):
                raise Conflict(f"cannot join network of a non running container: {other}")
            self._write_files(cid, net)
            return
        if net.mode == "host":
            self._write_files(cid, net)
            net.active = {}
            return
        await asyncio.to_thread(netns.create, self._namespace(cid))
        if net.mode == "none":
            await asyncio.to_thread(links.loopback_up, self._namespace(cid))
        for network_id, wanted in net.networks.items():
            await self._plug(cid, net, self._network(network_id), wanted)
        await self._publish(cid, net)
        await self._serve_dns(cid, net)
        self._write_files(cid, net)

    def _network(self, network_id: str) -> NetworkRecord:
        network = self.store.networks.get(network_id)
        if network is None:
            raise NotFound(f"network {network_id} not found")
        return network

    async def _plug(self, cid: str, net: ContainerNet, network: NetworkRecord, wanted: EndpointRequest) -> None:
        pool = ipam.parse_pool(network.subnet, network.gateway, network.ip_range)
        address = ipam.allocate(pool, network.allocations, wanted.ipv4)
        used = {int(e.veth.rpartition("#")[2]) for e in net.active.values() if "#" in e.veth}
        device = next(n for n in range(len(net.active) + 1) if n not in used)
        endpoint = ActiveEndpoint(network.id, address, ipam.mac_for(address),
                                  f"{links.veth_name(cid, network.id)}#{device}", list(wanted.aliases))
        await self._ensure_up(network)
        network.allocations[address] = cid
        net.active[network.id] = endpoint
        gateway = network.gateway if not network.internal and len(net.active) == 1 else None
        await asyncio.to_thread(links.plug, self._namespace(cid), network.bridge, _host_veth(endpoint),
                                f"eth{device}", address, pool.subnet.prefixlen, endpoint.mac, gateway)
        self.events.emit("network", "connect", network.id, {"container": cid, "name": network.name,
                                                            "type": "bridge"})

    async def _publish(self, cid: str, net: ContainerNet) -> None:
        specs = parse_bindings(net.port_bindings, net.exposed, net.publish_all)
        if not specs or not net.active:
            return
        address = next(iter(net.active.values())).address
        for spec in specs:
            if spec.protocol == "sctp":
                raise InvalidParameter("sctp ports are not supported yet")
            if spec.protocol == "udp" and ":" in spec.host_ip:
                raise InvalidParameter(f"UDP on the IPv6 address {spec.host_ip} is not supported yet")
            sock, port = reserve(spec.host_ip, spec.host_start, spec.host_end, spec.protocol)
            mapping = PortMapping(spec.container_port, spec.protocol, spec.host_ip, port)
            net.ports.append(mapping)
            await self._hold(cid, sock, mapping, address)
            if spec.protocol == "tcp" and not spec.host_ip and socket.has_ipv6:
                with contextlib.suppress(OSError, Unavailable):  # a host without IPv6 keeps the IPv4 port only
                    sock6, _ = reserve("::", port, port, "tcp")
                    mapping6 = PortMapping(spec.container_port, "tcp", "::", port)
                    net.ports.append(mapping6)
                    await self._hold(cid, sock6, mapping6, address)
        await asyncio.to_thread(self.nat.add_ports, _rules(net, address))

    async def _hold(self, cid: str, sock: socket.socket, mapping: PortMapping, address: str) -> None:
        """Keep a port's reserving socket; a TCP one serves loopback clients (``ports.LoopbackProxy``)."""
        if mapping.protocol != "tcp":
            self._reserved.setdefault(cid, []).append(sock)
            return
        proxy = LoopbackProxy(sock, address, mapping.container_port)
        self._reserved.setdefault(cid, []).append(proxy)
        await proxy.start()

    def _unreserve(self, cid: str) -> None:
        for held in self._reserved.pop(cid, []):
            held.close()

    async def _serve_dns(self, cid: str, net: ContainerNet) -> None:
        if any(not self._network(nid).default for nid in net.active):
            await self.dns.serve(cid, self._namespace(cid))

    def _write_files(self, cid: str, net: ContainerNet) -> None:
        gateway = self.store.default_bridge().gateway
        extra = [etc_files.parse_extra_host(e, gateway) for e in net.extra_hosts]
        user_defined = any(not self._network(nid).default for nid in net.networks)
        etc_files.write(net.files_dir, hostname=net.hostname, domainname=net.domainname,
                        addresses=[e.address for e in net.active.values()], extra_hosts=extra,
                        embedded_dns=user_defined and net.mode == "bridge", dns=net.dns,
                        dns_search=net.dns_search, dns_options=net.dns_options)

    async def _adopt(self, cid: str, net: ContainerNet) -> None:
        """Re-adopt a running container after a daemon restart: reserve its ports again, put its DNAT
        rules back (the chains were flushed), serve its resolver."""
        if not net.active:
            return
        for endpoint in net.active.values():
            if endpoint.network_id in self.store.networks:
                await self._ensure_up(self.store.networks[endpoint.network_id])
        address = next(iter(net.active.values())).address
        for mapping in net.ports:
            with contextlib.suppress(Exception):
                sock = reserve(mapping.host_ip, mapping.host_port, mapping.host_port, mapping.protocol)[0]
                await self._hold(cid, sock, mapping, address)
        await asyncio.to_thread(self.nat.add_ports, _rules(net, address))
        with contextlib.suppress(Exception):
            await self._serve_dns(cid, net)

    def _release(self, cid: str, net: ContainerNet) -> None:
        """Blocking: drop everything the container holds (rules, reservations, veths, namespace,
        addresses). Idempotent. The resolver and the port reservations must have been dropped by the caller
        (on the event loop: ``dns.stop``, ``_unreserve``)."""
        if net.ports and net.active:
            self.nat.remove_ports(_rules(net, next(iter(net.active.values())).address))
        net.ports = []
        for endpoint in net.active.values():
            links.delete_link(_host_veth(endpoint))
            network = self.store.networks.get(endpoint.network_id)
            if network is not None:
                network.allocations.pop(endpoint.address, None)
        net.active = {}
        for network in self.store.networks.values():
            for address in [a for a, owner in network.allocations.items() if owner == cid]:
                del network.allocations[address]
        if not net.mode.startswith("container:"):
            netns.remove(self._namespace(cid))

    async def detach(self, cid: str) -> None:
        """The container stopped: release what it held (see ``_release``). Idempotent."""
        async with self._lock:
            net = self.store.containers.get(cid)
            if net is None:
                return
            self.dns.stop(cid)
            self._unreserve(cid)
            networks = [self.store.networks[n] for n in net.active if n in self.store.networks]
            await asyncio.to_thread(self._release, cid, net)
            self.store.save()
        for network in networks:
            self.events.emit("network", "disconnect", network.id, {"container": cid, "name": network.name,
                                                                   "type": network.driver})

    async def forget(self, cid: str) -> None:
        """The container is removed (or its create failed): detach and drop its record."""
        await self.detach(cid)
        async with self._lock:
            if self.store.containers.pop(cid, None) is not None:
                self.store.save()

    async def connect(self, ref: str, body: object) -> None:
        """``POST /networks/{id}/connect``: join a container to a network now if it runs, from its next
        start otherwise. Raises NotFound, Forbidden (host/none/container mode, already connected),
        InvalidParameter."""
        if not isinstance(body, dict) or not isinstance(body.get("Container"), str):
            raise InvalidParameter("Container: expected a container name or ID")
        config = body.get("EndpointConfig") or {}
        if not isinstance(config, dict):
            raise InvalidParameter("EndpointConfig: expected an object")
        wanted = endpoint_request(config)
        assert self.containers is not None
        container = self.containers(body["Container"])
        async with self._lock:
            network = self.store.get(ref)
            net = self.store.containers.get(container.id)
            if net is None or net.mode != "bridge" or network.driver != "bridge":
                raise Forbidden("container sharing network namespace with another container or host cannot be "
                                "connected to any other network")
            if network.id in net.networks:
                raise Forbidden(f"endpoint with name {container.name} already exists in network {network.name}")
            if network.default and (wanted.aliases or wanted.ipv4):
                raise InvalidParameter("network-scoped alias is supported only for containers in user defined "
                                       "networks")
            net.networks[network.id] = wanted
            if os.path.exists(self._namespace(container.id)):
                try:
                    await self._plug(container.id, net, network, wanted)
                    await self._serve_dns(container.id, net)
                    self._write_files(container.id, net)
                except BaseException:
                    del net.networks[network.id]
                    endpoint = net.active.pop(network.id, None)
                    if endpoint is not None:
                        network.allocations.pop(endpoint.address, None)
                        await asyncio.to_thread(links.delete_link, _host_veth(endpoint))
                    raise
            self.store.save()

    async def disconnect(self, ref: str, body: object) -> None:
        """``POST /networks/{id}/disconnect``. Raises NotFound, Forbidden (not connected, host mode)."""
        if not isinstance(body, dict) or not isinstance(body.get("Container"), str):
            raise InvalidParameter("Container: expected a container name or ID")
        assert self.containers is not None
        container = self.containers(body["Container"])
        async with self._lock:
            network = self.store.get(ref)
            net = self.store.containers.get(container.id)
            if net is None or network.id not in net.networks:
                raise Forbidden(f"container {container.id} is not connected to network {network.name}")
            del net.networks[network.id]
            endpoint = net.active.pop(network.id, None)
            if endpoint is not None:
                network.allocations.pop(endpoint.address, None)
                await asyncio.to_thread(links.delete_link, _host_veth(endpoint))
                self._write_files(container.id, net)
            self.store.save()
        self.events.emit("network", "disconnect", network.id, {"container": container.id, "name": network.name,
                                                               "type": network.driver})

    # -- what containers show ------------------------------------------------------------------------

    def _resolve(self, asker: str, name: str) -> list[str] | None:
        """The embedded DNS lookup: addresses under ``name`` on the user-defined networks ``asker`` is on."""
        net = self.store.containers.get(asker)
        if net is None:
            return None
        name = name.lower()
        found: list[str] = []
        for network_id in net.active:
            network = self.store.networks.get(network_id)
            if network is None or network.default:
                continue
            for cid, other in self.store.containers.items():
                endpoint = other.active.get(network_id)
                if endpoint is None:
                    continue
                names = {self._name(cid).lower(), cid[:12], *(a.lower() for a in endpoint.aliases)}
                if name in names or (name.partition(".")[0] in names and name.partition(".")[2] == network.name):
                    found.append(endpoint.address)
        return found or None

    def settings(self, cid: str) -> dict[str, Any]:
        """The container's ``NetworkSettings`` (inspect)."""
        net = self.store.containers.get(cid)
        if net is None:
            return {"Networks": {}, "Ports": {}}
        networks: dict[str, Any] = {}
        if net.mode in ("host", "none"):
            named = self.store.get(net.mode)
            networks[named.name] = _endpoint_doc(named, None, cid, [])
        for network_id, wanted in net.networks.items():
            network = self.store.networks.get(network_id)
            if network is not None:
                networks[network.name] = _endpoint_doc(network, net.active.get(network_id), cid, wanted.aliases)
        ports: dict[str, Any] = {p: None for p in net.exposed}
        for key in net.port_bindings:
            ports.setdefault(key if "/" in key else f"{key}/tcp", None)
        for m in net.ports:
            key = f"{m.container_port}/{m.protocol}"
            ports[key] = [*(ports.get(key) or []), {"HostIp": m.host_ip or "0.0.0.0", "HostPort": str(m.host_port)}]
        if not net.active:
            ports = {k: None for k in ports}
        default = next((networks[n.name] for n in map(self.store.networks.get, net.active) if n and n.default), None)
        top = {k: (default or {}).get(k, "" if k != "IPPrefixLen" else 0)
               for k in ("EndpointID", "Gateway", "IPAddress", "IPPrefixLen", "MacAddress")}
        return {"Bridge": "", "SandboxID": cid if net.active else "", "HairpinMode": False,
                "LinkLocalIPv6Address": "", "LinkLocalIPv6PrefixLen": 0, "Ports": ports,
                "SandboxKey": self._namespace(cid) if net.active else "", "SecondaryIPAddresses": None,
                "SecondaryIPv6Addresses": None, "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0,
                "IPv6Gateway": "", **top, "Networks": networks}

    def summary(self, cid: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """(``Ports``, ``NetworkSettings``) of a container's list row."""
        net = self.store.containers.get(cid)
        if net is None:
            return [], {"Networks": {}}
        rows: list[dict[str, Any]] = [{"IP": m.host_ip or "0.0.0.0", "PrivatePort": m.container_port,
                                       "PublicPort": m.host_port, "Type": m.protocol} for m in net.ports]
        published = {(m.container_port, m.protocol) for m in net.ports}
        for key in net.exposed:
            port, _, proto = key.partition("/")
            if port.isdigit() and (int(port), proto or "tcp") not in published:
                rows.append({"PrivatePort": int(port), "Type": proto or "tcp"})
        return rows, {"Networks": self.settings(cid)["Networks"]}

    def mode(self, cid: str) -> str:
        """The container's network mode as Docker shows it (``default`` for the default bridge)."""
        net = self.store.containers.get(cid)
        if net is None or net.mode != "bridge":
            return net.mode if net else "default"
        names = [self.store.networks[n].name for n in net.networks if n in self.store.networks]
        return "default" if not names or names[0] == "bridge" else names[0]


def endpoint_request(config: dict[str, Any]) -> EndpointRequest:
    """An ``EndpointSettings`` object (``Aliases``, ``IPAMConfig.IPv4Address``). Raises InvalidParameter."""
    aliases = config.get("Aliases") or []
    ipam_config = config.get("IPAMConfig") or {}
    if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases) \
            or not isinstance(ipam_config, dict):
        raise InvalidParameter("EndpointSettings: Aliases must be a list of strings, IPAMConfig an object")
    ipv4 = str(ipam_config.get("IPv4Address") or "")
    if ipv4:
        try:
            ipaddress.IPv4Address(ipv4)
        except ValueError as exc:
            raise InvalidParameter(f"invalid IPv4 address: {ipv4}") from exc
    return EndpointRequest(aliases=list(aliases), ipv4=ipv4)


def _host_veth(endpoint: ActiveEndpoint) -> str:
    return endpoint.veth.partition("#")[0]


def _endpoint_id(cid: str, network_id: str) -> str:
    return hashlib.sha256(f"{cid}/{network_id}".encode()).hexdigest()


def _rules(net: ContainerNet, address: str) -> list[tuple[str, str, int, str, int]]:
    return [(m.protocol, m.host_ip, m.host_port, address, m.container_port) for m in net.ports]


def _endpoint_doc(network: NetworkRecord, endpoint: ActiveEndpoint | None, cid: str,
                  aliases: list[str]) -> dict[str, Any]:
    prefix = ipaddress.IPv4Network(network.subnet).prefixlen if network.subnet and endpoint else 0
    return {"IPAMConfig": None, "Links": None, "Aliases": (aliases or None) if network.default else
            [*aliases, cid[:12]], "NetworkID": network.id,
            "EndpointID": _endpoint_id(cid, network.id) if endpoint else "",
            "Gateway": network.gateway if endpoint else "", "IPAddress": endpoint.address if endpoint else "",
            "IPPrefixLen": prefix, "IPv6Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0,
            "MacAddress": endpoint.mac if endpoint else "", "DriverOpts": None}
