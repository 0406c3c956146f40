"""The shared port-spec parser (backend.api.ports) as the berth CLI uses it: create-body shapes and errors."""

from __future__ import annotations

import pytest

from backend.api.ports import PortSpecError, parse_expose, parse_port_spec
from backend.cli.context import UsageError
from backend.cli.run_options import parse_expose as cli_expose
from backend.cli.run_options import parse_publish


def test_host_port_strings() -> None:
    assert [m.host_port for m in parse_port_spec("9000-9010:80")] == ["9000-9010"]
    assert [m.host_port for m in parse_port_spec("127.0.0.1::80/udp")] == [""]
    assert [m.key for m in parse_port_spec("8000-8001:80-81/UDP")] == ["80/udp", "81/udp"]
    assert parse_publish(["9000-9010:80"]) == ({"80/tcp": {}}, {"80/tcp": [{"HostIp": "", "HostPort": "9000-9010"}]})
    assert parse_publish(["80", "127.0.0.1:8080:80"])[1] == {
        "80/tcp": [{"HostIp": "", "HostPort": ""}, {"HostIp": "127.0.0.1", "HostPort": "8080"}]}


def test_expose() -> None:
    assert parse_expose("7000-7001/udp") == ["7000/udp", "7001/udp"]
    assert cli_expose(["80", "53/udp"]) == {"80/tcp": {}, "53/udp": {}}
    for bad, message in (("80:80", "invalid port format for --expose: 80:80"),
                         ("x", "invalid range format for --expose: x"), ("80/icmp", "invalid proto: icmp")):
        with pytest.raises(PortSpecError, match=message):
            parse_expose(bad)
    with pytest.raises(UsageError, match="invalid hostPort: abc"):
        parse_publish(["abc:80"])
