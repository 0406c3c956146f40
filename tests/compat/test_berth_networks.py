"""Networking through the berth CLI against berthd: network create/ls/inspect/rm/prune/connect/disconnect,
names and aliases on a user network, published ports reachable when ``run -d`` returns, ``berth port``, the
run flags for DNS and hosts, and bad input (one line, the daemon stays up). Traffic goes only to 127.0.0.1
and to addresses of containers the tests make."""

from __future__ import annotations

import json
import re
import secrets
import socket
import subprocess
import urllib.request
from collections.abc import Iterator

import pytest

from tests.fixtures.berthd import Berthd

pytestmark = [pytest.mark.root, pytest.mark.network]

ECHO_SERVER = "while true; do nc -l -p 7000 -e cat; done"
HTTPD = "mkdir -p /www && echo hello-{0} > /www/index.html && exec httpd -f -p 80 -h /www"


def _name(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(3)}"


def _subnet() -> str:
    """A /24 unlikely to be taken by another test's daemon."""
    return f"10.{secrets.randbelow(40) + 200}.{secrets.randbelow(250) + 1}.0/24"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _one_line_error(result: subprocess.CompletedProcess[str], code: int = 1) -> str:
    assert result.returncode == code, result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
    return result.stderr.strip()


@pytest.fixture
def made(berthd_with_busybox: Berthd) -> Iterator[list[str]]:
    """Container and network names to remove after the test (networks start with ``net-``)."""
    names: list[str] = []
    yield names
    d = berthd_with_busybox
    containers = [n for n in names if not n.startswith("net-")]
    if containers:
        d.berth("rm", "-f", *containers, check=False)
    networks = [n for n in names if n.startswith("net-")]
    if networks:
        d.berth("network", "rm", "-f", *networks, check=False)


def test_network_create_ls_inspect_rm(berthd_with_busybox: Berthd, made: list[str]) -> None:
    d = berthd_with_busybox
    net = _name("net-a")
    made.append(net)
    subnet = _subnet()
    base = subnet.rsplit(".", 1)[0]
    network_id = d.berth("network", "create", "--subnet", subnet, "--gateway", f"{base}.254", "--ip-range",
                         f"{base}.128/25", "--label", "tier=test", "-o", "com.example.opt=1", net).stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{64}", network_id)
    table = d.berth("network", "ls").stdout.splitlines()
    assert re.match(r"NETWORK ID +NAME +DRIVER +SCOPE$", table[0])
    assert re.search(rf"^{network_id[:12]} +{net} +bridge +local$", "\n".join(table), re.M)
    assert {"bridge", "host", "none"} <= {line.split()[1] for line in table[1:]}
    assert d.berth("network", "ls", "-q", "--filter", f"name={net}").stdout == f"{network_id[:12]}\n"
    assert d.berth("network", "ls", "-q", "--no-trunc", "-f", "label=tier=test").stdout == f"{network_id}\n"
    assert d.berth("network", "ls", "--filter", f"id={network_id[:10]}", "--format",
                   "{{.Name}} {{.Driver}} {{.Internal}}").stdout == f"{net} bridge false\n"
    doc = json.loads(d.berth("network", "inspect", net).stdout)[0]
    assert doc["Id"] == network_id and doc["Labels"] == {"tier": "test"}
    assert doc["Options"] == {"com.example.opt": "1"}
    assert doc["IPAM"]["Config"] == [{"Subnet": subnet, "Gateway": f"{base}.254", "IPRange": f"{base}.128/25"}]
    assert d.berth("network", "inspect", "-f", "{{.Name}} {{.Driver}}", net, "bridge").stdout == \
        f"{net} bridge\nbridge bridge\n"
    assert d.berth("network", "rm", net).stdout == f"{net}\n"
    assert net not in d.berth("network", "ls", "--format", "{{.Name}}").stdout.split()


def test_network_errors(berthd_with_busybox: Berthd, made: list[str]) -> None:
    d = berthd_with_busybox
    net, other = _name("net-e"), _name("net-e")
    made += [net, other]
    subnet = _subnet()
    d.berth("network", "create", "--subnet", subnet, net)
    overlap = d.berth("network", "create", "--subnet", subnet.replace(".0/24", ".128/25"), other, check=False)
    assert "Pool overlaps with other one on this address space" in _one_line_error(overlap)
    dup = d.berth("network", "create", net, check=False)
    assert _one_line_error(dup) == f"Error response from daemon: network with name {net} already exists"
    bad = d.berth("network", "create", "--subnet", "300.1.0.0/16", other, check=False)
    assert "invalid CIDR address: 300.1.0.0/16" in _one_line_error(bad)
    no_subnet = d.berth("network", "create", "--gateway", "10.1.1.1", other, check=False)
    assert _one_line_error(no_subnet, 125) == "berth: every ip-range or gateway must have a corresponding subnet"
    driver = d.berth("network", "create", "-d", "overlay", other, check=False)
    assert 'plugin "overlay" not found' in _one_line_error(driver)
    predefined = d.berth("network", "rm", "bridge", check=False)
    assert "bridge is a pre-defined network and cannot be removed" in _one_line_error(predefined)
    missing = _name("net-missing")
    assert f"network {missing} not found" in _one_line_error(d.berth("network", "rm", missing, check=False))
    assert d.berth("network", "rm", "-f", missing).stdout == ""
    inspect = d.berth("network", "inspect", missing, check=False)
    assert inspect.returncode == 1 and f"network {missing} not found" in inspect.stderr
    assert "invalid filter 'colour'" in _one_line_error(d.berth("network", "ls", "-f", "colour=red", check=False))
    usage = d.berth("network", "create", check=False)
    assert usage.returncode == 125 and "Traceback" not in usage.stderr
    assert "unknown command: berth network frob" in _one_line_error(d.berth("network", "frob", check=False), 125)
    assert d.berth("version", "--format", "{{.Server.ApiVersion}}").stdout == "1.41\n"


def test_network_prune(berthd_with_busybox: Berthd, made: list[str]) -> None:
    d = berthd_with_busybox
    unused, used, box = _name("net-unused"), _name("net-used"), _name("prune-box")
    made += [box, unused, used]
    for net in (unused, used):
        d.berth("network", "create", net)
    d.berth("run", "-d", "--name", box, "--network", used, "busybox", "sleep", "300")
    declined = d.berth("network", "prune", input="n\n")
    assert declined.stdout.startswith("WARNING! This will remove all custom networks not used by at least one")
    assert unused in d.berth("network", "ls", "--format", "{{.Name}}").stdout.split()
    assert d.berth("network", "prune", "-f").stdout == f"Deleted Networks:\n{unused}\n\n"
    names = d.berth("network", "ls", "--format", "{{.Name}}").stdout.split()
    assert used in names and unused not in names and "bridge" in names
    assert d.berth("network", "prune", "-f").stdout == ""


def test_names_and_aliases_on_a_user_network(berthd_with_busybox: Berthd, made: list[str]) -> None:
    d = berthd_with_busybox
    net, server, client = _name("net-dns"), _name("echo"), _name("client")
    made += [server, client, net]
    d.berth("network", "create", net)
    d.berth("run", "-d", "--name", server, "--network", net, "--network-alias", "echo-alias", "busybox",
            "sh", "-c", ECHO_SERVER)
    d.berth("run", "-d", "--name", client, "--network", net, "busybox", "sleep", "300")
    for target in (server, "echo-alias"):
        out = d.berth("exec", client, "sh", "-c", f"echo hi-{target} | nc -w 2 {target} 7000").stdout
        assert out.strip() == f"hi-{target}"
    members = json.loads(d.berth("network", "inspect", net).stdout)[0]["Containers"]
    assert sorted(m["Name"] for m in members.values()) == sorted([server, client])


def test_fixed_ip_dns_flags_and_extra_hosts(berthd_with_busybox: Berthd, made: list[str]) -> None:
    d = berthd_with_busybox
    net, box = _name("net-ip"), _name("ipbox")
    made += [box, net]
    subnet = _subnet()
    address = subnet.replace(".0/24", ".77")
    d.berth("network", "create", "--subnet", subnet, net)
    d.berth("run", "-d", "--name", box, "--network", net, "--ip", address, "--dns", "10.1.1.1", "--dns-search",
            "example.test", "--dns-option", "ndots:2", "--add-host", "db.example:10.9.8.7", "busybox", "sleep", "300")
    assert f"inet {address}/24" in d.berth("exec", box, "busybox", "ip", "-o", "-4", "addr", "show", "eth0").stdout
    resolv = d.berth("exec", box, "cat", "/etc/resolv.conf").stdout
    assert "search example.test" in resolv and "options ndots:2" in resolv
    assert "10.9.8.7\tdb.example" in d.berth("exec", box, "cat", "/etc/hosts").stdout


def test_published_port_and_berth_port(berthd_with_busybox: Berthd, made: list[str]) -> None:
    d = berthd_with_busybox
    web, rnd = _name("web"), _name("rnd")
    made += [web, rnd]
    port = _free_port()
    d.berth("run", "-d", "--name", web, "-p", f"127.0.0.1:{port}:80", "busybox", "sh", "-c", HTTPD.format(web))
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:  # the first attempt
        assert response.read() == f"hello-{web}\n".encode()
    assert d.berth("port", web).stdout == f"80/tcp -> 127.0.0.1:{port}\n"
    assert d.berth("port", web, "80/tcp").stdout == f"127.0.0.1:{port}\n"
    assert _one_line_error(d.berth("port", web, "81", check=False)) == \
        f"Error: No public port '81' published for {web}"
    d.berth("run", "-d", "--name", rnd, "-P", "--expose", "80", "--expose", "7000-7001/udp", "busybox", "sh", "-c",
            HTTPD.format(rnd))
    lines = d.berth("port", rnd).stdout.splitlines()
    assert [line.split(" -> ")[0] for line in lines] == ["80/tcp", "80/tcp", "7000/udp", "7001/udp"]  # v4, v6
    host_port = int(d.berth("port", rnd, "80").stdout.strip().rpartition(":")[2])
    with urllib.request.urlopen(f"http://127.0.0.1:{host_port}/", timeout=5) as response:
        assert response.read() == f"hello-{rnd}\n".encode()
    d.berth("stop", "-t", "1", web)
    with socket.socket() as s:  # free again after stop
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))


def test_connect_and_disconnect(berthd_with_busybox: Berthd, made: list[str]) -> None:
    d = berthd_with_busybox
    net, box, peer = _name("net-cd"), _name("box"), _name("peer")
    made += [box, peer, net]
    subnet = _subnet()
    address = subnet.replace(".0/24", ".50")
    d.berth("network", "create", "--subnet", subnet, net)
    d.berth("run", "-d", "--name", peer, "--network", net, "busybox", "sleep", "300")
    d.berth("run", "-d", "--name", box, "busybox", "sleep", "300")
    assert d.berth("network", "connect", "--alias", "boxy", "--ip", address, net, box).stdout == ""
    assert f"inet {address}/24" in d.berth("exec", box, "busybox", "ip", "-o", "-4", "addr", "show", "eth1").stdout
    d.berth("exec", peer, "busybox", "ping", "-c", "1", "-W", "2", "boxy")
    again = d.berth("network", "connect", net, box, check=False)
    assert f"endpoint with name {box} already exists in network {net}" in _one_line_error(again)
    assert d.berth("network", "disconnect", net, box).stdout == ""
    assert d.berth("exec", box, "busybox", "ip", "link", "show", "eth1", check=False).returncode != 0
    assert d.berth("exec", peer, "busybox", "ping", "-c", "1", "-W", "1", "boxy", check=False).returncode != 0
    assert "is not connected to network" in _one_line_error(d.berth("network", "disconnect", net, box, check=False))
    missing = _name("net-missing")
    assert f"network {missing} not found" in _one_line_error(d.berth("network", "connect", missing, box,
                                                                     check=False))


@pytest.mark.parametrize(("args", "code", "message"), [
    (["-p", "abc:80"], 125, "berth: invalid hostPort: abc"),
    (["-p", "1.2.3.4:80:80:80"], 125, "berth: invalid IP address: 1.2.3.4:80"),
    (["-p", "8080:80/xyz"], 125, "berth: invalid proto: xyz"),
    (["-p", "8000-8001:80-82"], 125, "berth: invalid ranges specified for container and host Ports: 80-82 and "
                                     "8000-8001"),
    (["--expose", "80:80"], 125, "berth: invalid port format for --expose: 80:80"),
    (["--network", "no-such-net"], 125, "network no-such-net not found"),
    (["--ip", "10.1.1.1"], 125, "user specified IP address is supported on user defined networks only"),
    (["--network-alias", "a"], 125, "network-scoped alias is supported only for containers in user defined"),
    (["--add-host", "bad"], 125, "bad format for add-host"),
])
def test_bad_run_network_input(berthd_with_busybox: Berthd, args: list[str], code: int, message: str) -> None:
    result = berthd_with_busybox.berth("run", "--rm", *args, "busybox", "true", check=False)
    assert message in _one_line_error(result, code)
    assert berthd_with_busybox.berth("version", "--format", "{{.Server.ApiVersion}}").stdout == "1.41\n"


def test_network_prune_filters_and_stopped_users(berthd_with_busybox: Berthd, made: list[str]) -> None:
    d = berthd_with_busybox
    keep, drop, stopped_net, box = _name("net-keep"), _name("net-drop"), _name("net-stopped"), _name("stopped-box")
    made += [box, keep, drop, stopped_net]
    d.berth("network", "create", "--label", "team=a", keep)
    d.berth("network", "create", "--label", "team=b", drop)
    d.berth("network", "create", "--label", "team=b", stopped_net)
    d.berth("create", "--name", box, "--network", stopped_net, "busybox", "true")  # refers to it, not running
    assert d.berth("network", "prune", "-f", "--filter", "label=team=b").stdout == f"Deleted Networks:\n{drop}\n\n"
    names = d.berth("network", "ls", "--format", "{{.Name}}").stdout.split()
    assert keep in names and stopped_net in names
    d.berth("network", "prune", "-f", "--filter", "until=1h")  # all created just now: kept
    assert keep in d.berth("network", "ls", "--format", "{{.Name}}").stdout.split()
    bad = d.berth("network", "prune", "-f", "--filter", "colour=red", check=False)
    assert bad.returncode != 0 and "invalid filter" in bad.stderr
