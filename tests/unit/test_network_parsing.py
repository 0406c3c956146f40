"""Port specs (Docker's ParsePortSpec cases), IPAM pools and allocation, DNS messages, extra hosts."""

from __future__ import annotations

import ipaddress
import struct

import pytest

from backend.engine.errors import Conflict, InvalidParameter
from backend.engine.networks import dns, ipam
from backend.engine.networks.etc_files import parse_extra_host
from backend.engine.networks.ports import PortSpec, parse_bindings, parse_port_spec


@pytest.mark.parametrize(("spec", "expected"), [
    ("80", [PortSpec("", 0, 0, 80, "tcp")]),
    ("8080:80", [PortSpec("", 8080, 8080, 80, "tcp")]),
    ("127.0.0.1:8080:80/udp", [PortSpec("127.0.0.1", 8080, 8080, 80, "udp")]),
    ("[::1]:8080:80", [PortSpec("::1", 8080, 8080, 80, "tcp")]),
    ("127.0.0.1::80", [PortSpec("127.0.0.1", 0, 0, 80, "tcp")]),
    ("9000-9001:80-81", [PortSpec("", 9000, 9000, 80, "tcp"), PortSpec("", 9001, 9001, 81, "tcp")]),
    ("9000-9010:80", [PortSpec("", 9000, 9010, 80, "tcp")]),
    ("127.0.0.1:0:80", [PortSpec("127.0.0.1", 0, 0, 80, "tcp")]),  # 0: a random port, as the docker CLI reads it
])
def test_port_specs(spec: str, expected: list[PortSpec]) -> None:
    assert parse_port_spec(spec) == expected


@pytest.mark.parametrize(("spec", "message"), [
    ("localhost:1234:80", "invalid IP address: localhost"),
    ("0.0.0.0:1234:", "no port specified: 0.0.0.0:1234:<empty>"),
    ("abc", "invalid containerPort: abc"),
    ("abc:80", "invalid hostPort: abc"),
    ("1234:80/xyz", "invalid proto: xyz"),
    ("8000-8001:80-82", "invalid ranges specified for container and host Ports: 80-82 and 8000-8001"),
    ("70000", "invalid containerPort: 70000"),
])
def test_bad_port_specs(spec: str, message: str) -> None:
    with pytest.raises(InvalidParameter, match=message):
        parse_port_spec(spec)


def test_port_bindings_and_publish_all() -> None:
    specs = parse_bindings({"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}, ["80/tcp", "53/udp"], True)
    assert specs == [PortSpec("", 8080, 8080, 80, "tcp"), PortSpec("", 0, 0, 53, "udp")]
    with pytest.raises(InvalidParameter, match='invalid port specification: "99999"'):
        parse_bindings({"80/tcp": [{"HostPort": "99999"}]}, [], False)
    with pytest.raises(InvalidParameter, match='invalid port specification: "x"'):
        parse_bindings({"x/tcp": []}, [], False)


def test_pools_and_allocation() -> None:
    pool = ipam.parse_pool("10.5.0.0/24", ip_range="10.5.0.128/25")
    assert str(pool.gateway) == "10.5.0.1"
    assert ipam.allocate(pool, set()) == "10.5.0.128"
    assert ipam.allocate(pool, {"10.5.0.128"}) == "10.5.0.129"
    assert ipam.allocate(pool, set(), "10.5.0.7") == "10.5.0.7"
    with pytest.raises(Conflict):
        ipam.allocate(pool, {"10.5.0.7"}, "10.5.0.7")
    with pytest.raises(Conflict):
        ipam.allocate(pool, set(), "10.5.0.1")
    with pytest.raises(InvalidParameter, match="invalid CIDR address: nope"):
        ipam.parse_pool("nope")
    with pytest.raises(InvalidParameter, match=r"no matching subnet for gateway 10\.6\.0\.1"):
        ipam.parse_pool("10.5.0.0/24", "10.6.0.1")
    with pytest.raises(Conflict, match="Pool overlaps with other one on this address space"):
        ipam.check_free(ipaddress.IPv4Network("10.5.0.0/16"), [pool.subnet])
    taken = [ipaddress.IPv4Network("172.17.0.0/16"), ipaddress.IPv4Network("172.16.0.0/12")]
    assert str(ipam.choose_subnet(taken)) == "192.168.0.0/20"
    assert ipam.mac_for("172.17.0.2") == "02:42:ac:11:00:02"


def _query(name: str, qtype: int = dns.TYPE_A) -> bytes:
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split("."))
    return struct.pack("!HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0) + labels + b"\0" + struct.pack("!HH", qtype, 1)


def test_dns_messages() -> None:
    query = _query("Web.example")
    question = dns.parse_question(query)
    assert question is not None and question.name == "web.example" and question.qtype == dns.TYPE_A
    reply = dns.answer(query, question, ["10.0.0.9"])
    assert reply[:2] == b"\x12\x34" and struct.unpack("!H", reply[6:8])[0] == 1 and reply.endswith(bytes([10, 0, 0, 9]))
    aaaa = _query("web", dns.TYPE_AAAA)
    empty = dns.answer(aaaa, dns.parse_question(aaaa), ["10.0.0.9"])  # type: ignore[arg-type]
    assert struct.unpack("!H", empty[6:8])[0] == 0
    assert dns.parse_question(b"\x00" * 5) is None
    assert dns.parse_question(query[:-3]) is None


def test_extra_hosts() -> None:
    assert parse_extra_host("db:10.0.0.2", "172.17.0.1") == ("db", "10.0.0.2")
    assert parse_extra_host("gw:host-gateway", "172.17.0.1") == ("gw", "172.17.0.1")
    assert parse_extra_host("v6=[::1]", "172.17.0.1") == ("v6", "::1")
    with pytest.raises(InvalidParameter, match='bad format for add-host: "nohost"'):
        parse_extra_host("nohost", "172.17.0.1")
    with pytest.raises(InvalidParameter, match="invalid IP address in add-host"):
        parse_extra_host("a:b", "172.17.0.1")
