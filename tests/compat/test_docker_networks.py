"""Networking through the stock docker CLI against berthd: networks, published ports, DNS by name and
alias, outbound NAT to a test-made "remote host", connect/disconnect, host/none/container modes, extra
hosts, bad input. Traffic goes only to loopback and to namespaces the tests create."""

from __future__ import annotations

import json
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator

import pytest

from tests.fixtures.berthd import Berthd
from tests.fixtures.images import LayoutImage, push_with_skopeo
from tests.fixtures.registry import LocalRegistry

pytestmark = [pytest.mark.root, pytest.mark.network]


HTTP_GET = "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w {2} {0} {1}"
"""An HTTP GET with busybox nc (the test image's static wget crashes resolving without NSS libraries)."""


def _name(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(3)}"


@pytest.fixture
def names(berthd_with_busybox: Berthd) -> Iterator[list[str]]:
    """Container and network names to remove after the test (containers first)."""
    made: list[str] = []
    yield made
    containers = [n for n in made if not n.startswith("net-")]
    if containers:
        berthd_with_busybox.docker("rm", "-f", *containers, check=False)
    for network in (n for n in made if n.startswith("net-")):
        berthd_with_busybox.docker("network", "rm", network, check=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _inspect(d: Berthd, ref: str) -> dict:
    return json.loads(d.docker("inspect", ref).stdout)[0]


def test_network_create_ls_inspect_rm(berthd_with_busybox: Berthd, names: list[str]) -> None:
    d = berthd_with_busybox
    net = _name("net-a")
    names.append(net)
    d.docker("network", "create", "--subnet", "10.231.7.0/24", "--gateway", "10.231.7.254", net)
    listed = d.docker("network", "ls", "--format", "{{.Name}} {{.Driver}}").stdout.split("\n")
    assert {"bridge bridge", "host host", "none null", f"{net} bridge"} <= set(listed)
    doc = json.loads(d.docker("network", "inspect", net).stdout)[0]
    assert doc["IPAM"]["Config"] == [{"Subnet": "10.231.7.0/24", "Gateway": "10.231.7.254"}]
    bridge = json.loads(d.docker("network", "inspect", "bridge").stdout)[0]
    assert bridge["Options"]["com.docker.network.bridge.default_bridge"] == "true"
    overlap = d.docker("network", "create", "--subnet", "10.231.7.128/25", _name("net-b"), check=False)
    assert overlap.returncode != 0 and "Pool overlaps with other one on this address space" in overlap.stderr
    dup = d.docker("network", "create", net, check=False)
    assert dup.returncode != 0 and f"network with name {net} already exists" in dup.stderr
    bad = d.docker("network", "create", "--subnet", "300.1.0.0/16", _name("net-c"), check=False)
    assert bad.returncode != 0 and "invalid CIDR address: 300.1.0.0/16" in bad.stderr
    predefined = d.docker("network", "rm", "bridge", check=False)
    assert "bridge is a pre-defined network and cannot be removed" in predefined.stderr
    d.docker("network", "rm", net)
    gone = d.docker("network", "inspect", net, check=False)
    assert gone.returncode != 0 and f"network {net} not found" in gone.stderr
    assert "bad-" not in d.docker("network", "ls").stdout


def _wait_for_text(d: Berthd, container: str, text: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while text not in d.docker("logs", container, check=False).stdout + d.docker("logs", container).stderr:
        assert time.monotonic() < deadline, f"{container} never printed {text!r}"
        time.sleep(0.05)


def test_published_port_reachable_when_run_returns(berthd_with_busybox: Berthd, names: list[str]) -> None:
    d = berthd_with_busybox
    web = _name("web")
    names.append(web)
    port = _free_port()
    d.docker("run", "-d", "--name", web, "-p", f"{port}:80", "busybox", "sh", "-c",
             "mkdir -p /www && echo hello-berth > /www/index.html && exec httpd -f -p 80 -h /www")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
        assert response.read() == b"hello-berth\n"
    with urllib.request.urlopen(f"http://[::1]:{port}/", timeout=5) as response:  # also on IPv6, as dockerd
        assert response.read() == b"hello-berth\n"
    ports = _inspect(d, web)["NetworkSettings"]["Ports"]
    assert ports == {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": str(port)}, {"HostIp": "::", "HostPort": str(port)}]}
    assert d.docker("port", web).stdout.splitlines() == [f"80/tcp -> 0.0.0.0:{port}", f"80/tcp -> [::]:{port}"]
    row = d.docker("ps", "--filter", f"name={web}", "--format", "{{.Ports}}").stdout.strip()
    assert row == f"0.0.0.0:{port}->80/tcp, [::]:{port}->80/tcp"
    busy = d.docker("run", "-d", "-p", f"{port}:80", "busybox", "true", check=False)
    assert busy.returncode != 0 and "port is already allocated" in busy.stderr
    d.docker("container", "prune", "-f")
    d.docker("stop", "-t", "1", web)
    with socket.socket() as s:  # free again after stop (as a server binds it: past TIME_WAIT connections)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", port))


def test_ipv6_host_address(berthd_with_busybox: Berthd, names: list[str]) -> None:
    d = berthd_with_busybox
    web = _name("web6")
    names.append(web)
    port = _free_port()
    d.docker("run", "-d", "--name", web, "-p", f"[::1]:{port}:80", "busybox", "sh", "-c",
             "mkdir -p /www && echo over-ipv6 > /www/index.html && exec httpd -f -p 80 -h /www")
    with urllib.request.urlopen(f"http://[::1]:{port}/", timeout=5) as response:
        assert response.read() == b"over-ipv6\n"
    assert d.docker("port", web, "80").stdout.strip() == f"[::1]:{port}"
    udp = d.docker("run", "--rm", "-p", f"[::1]:{_free_port()}:53/udp", "busybox", "true", check=False)
    assert udp.returncode != 0 and "UDP on the IPv6 address ::1 is not supported" in udp.stderr


def test_random_port_and_udp(berthd_with_busybox: Berthd, names: list[str]) -> None:
    d = berthd_with_busybox
    tcp, udp = _name("rnd"), _name("udp")
    names += [tcp, udp]
    d.docker("run", "-d", "--name", tcp, "-p", "80", "busybox", "sh", "-c",
             "mkdir -p /w && echo random > /w/index.html && exec httpd -f -p 80 -h /w")
    mapped = d.docker("port", tcp, "80").stdout.split()[0]
    host_port = int(mapped.rpartition(":")[2])
    with urllib.request.urlopen(f"http://127.0.0.1:{host_port}/", timeout=5) as response:
        assert response.read() == b"random\n"
    port = _free_port()
    d.docker("run", "-d", "--name", udp, "-p", f"127.0.0.1:{port}:5353/udp", "busybox", "sleep", "300")
    # busybox's nc has no UDP: a UDP echo server runs in the container's network namespace instead
    echo = ("import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('0.0.0.0', 5353)); "
            "print('ready', flush=True); data, peer = s.recvfrom(100); s.sendto(data, peer)")
    sandbox = _inspect(d, udp)["NetworkSettings"]["SandboxKey"]
    server = subprocess.Popen(["nsenter", f"--net={sandbox}", sys.executable, "-c", echo], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert server.stdout is not None and server.stdout.readline() == "ready\n"
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(5)
            s.sendto(b"ping-udp", ("127.0.0.1", port))
            assert s.recvfrom(100)[0] == b"ping-udp"
    finally:
        server.kill()
        server.wait()


def test_names_and_aliases_across_recreation(berthd_with_busybox: Berthd, names: list[str]) -> None:
    d = berthd_with_busybox
    net, server, client = _name("net-dns"), _name("echo"), _name("client")
    names += [server, client, net]
    d.docker("network", "create", net)
    echo = "while true; do nc -l -p 7000 -e cat; done"
    d.docker("run", "-d", "--name", server, "--network", net, "--network-alias", "echo-alias", "busybox",
             "sh", "-c", echo)
    old_ip = _inspect(d, server)["NetworkSettings"]["Networks"][net]["IPAddress"]
    d.docker("run", "-d", "--name", client, "--network", net, "busybox", "sleep", "300")
    for target in (server, "echo-alias"):
        out = d.docker("exec", client, "sh", "-c", f"echo hi-{target} | nc -w 2 {target} 7000").stdout
        assert out.strip() == f"hi-{target}"
    d.docker("rm", "-f", server)
    blocker = _name("blocker")  # takes the old address, so the new server gets another one
    names.append(blocker)
    d.docker("run", "-d", "--name", blocker, "--network", net, "--ip", old_ip, "busybox", "sleep", "300")
    d.docker("run", "-d", "--name", server, "--network", net, "busybox", "sh", "-c", echo)
    new_ip = _inspect(d, server)["NetworkSettings"]["Networks"][net]["IPAddress"]
    assert new_ip != old_ip
    resolved = d.docker("exec", client, "busybox", "nslookup", server).stdout
    assert new_ip in resolved and old_ip not in resolved.split("Name:")[-1]
    out = d.docker("exec", client, "sh", "-c", f"echo again | nc -w 2 {server} 7000").stdout
    assert out.strip() == "again"
    hosts = d.docker("exec", client, "cat", "/etc/resolv.conf").stdout
    assert "nameserver 127.0.0.11" in hosts


@pytest.fixture
def remote_host() -> Iterator[tuple[str, str]]:
    """A "remote host": a namespace of its own behind a veth pair off the host, on a test-only subnet,
    running an HTTP server. Yields (namespace name, its address)."""
    tag = secrets.token_hex(3)
    ns, host_if, peer_if = f"berthremote{tag}", f"vrh{tag}", f"vrp{tag}"
    www = f"/tmp/berth-remote-{tag}"
    server = None
    try:
        subprocess.run(["ip", "netns", "add", ns], check=True)
        subprocess.run(["ip", "link", "add", host_if, "type", "veth", "peer", "name", peer_if, "netns", ns],
                       check=True)
        subprocess.run(["ip", "addr", "add", "198.18.77.1/30", "dev", host_if], check=True)
        subprocess.run(["ip", "link", "set", host_if, "up"], check=True)
        for cmd in (["ip", "addr", "add", "198.18.77.2/30", "dev", peer_if], ["ip", "link", "set", peer_if, "up"],
                    ["ip", "link", "set", "lo", "up"]):
            subprocess.run(["ip", "netns", "exec", ns, *cmd], check=True)
        subprocess.run(["mkdir", "-p", www], check=True)
        with open(f"{www}/index.html", "w") as f:
            f.write("remote-ok\n")
        server = subprocess.Popen(["ip", "netns", "exec", ns, "busybox", "httpd", "-f", "-p", "8081", "-h", www])
        yield ns, "198.18.77.2"
    finally:
        if server is not None:
            server.kill()
            server.wait()
        subprocess.run(["ip", "link", "del", host_if], check=False, capture_output=True)
        subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)
        subprocess.run(["rm", "-rf", www], check=False)


def test_outbound_nat_to_a_test_host(berthd_with_busybox: Berthd, names: list[str],
                                     remote_host: tuple[str, str]) -> None:
    d = berthd_with_busybox
    _, address = remote_host
    net = _name("net-out")
    names.append(net)
    d.docker("network", "create", net)
    for mode in ("bridge", net):
        out = d.docker("run", "--rm", "--network", mode, "busybox", "sh", "-c",
                       HTTP_GET.format(address, 8081, 5)).stdout
        assert out.endswith("remote-ok\n")
    internal = _name("net-int")
    names.append(internal)
    d.docker("network", "create", "--internal", internal)
    cut = d.docker("run", "--rm", "--network", internal, "busybox", "sh", "-c", HTTP_GET.format(address, 8081, 2),
                   check=False)
    assert "remote-ok" not in cut.stdout


def test_connect_disconnect_and_modes(berthd_with_busybox: Berthd, names: list[str]) -> None:
    d = berthd_with_busybox
    net, box, peer = _name("net-cd"), _name("box"), _name("peer")
    names += [box, peer, net]
    d.docker("network", "create", net)
    d.docker("run", "-d", "--name", peer, "--network", net, "busybox", "sleep", "300")
    d.docker("run", "-d", "--name", box, "--add-host", "db.example:10.9.8.7", "--add-host",
             "gw:host-gateway", "--dns", "10.1.1.1", "busybox", "sleep", "300")
    hosts = d.docker("exec", box, "cat", "/etc/hosts").stdout
    gateway = _inspect(d, box)["NetworkSettings"]["Gateway"]
    assert "10.9.8.7\tdb.example" in hosts and f"{gateway}\tgw" in hosts
    assert "nameserver 10.1.1.1" in d.docker("exec", box, "cat", "/etc/resolv.conf").stdout
    assert d.docker("exec", box, "busybox", "hostname").stdout.strip() == _inspect(d, box)["Id"][:12]
    d.docker("network", "connect", "--alias", "boxy", net, box)
    assert d.docker("exec", box, "busybox", "ip", "-o", "-4", "addr", "show", "eth1").stdout
    assert d.docker("exec", peer, "busybox", "ping", "-c", "1", "-W", "2", "boxy").returncode == 0
    assert net in _inspect(d, box)["NetworkSettings"]["Networks"]
    d.docker("network", "disconnect", net, box)
    assert d.docker("exec", box, "busybox", "ip", "link", "show", "eth1", check=False).returncode != 0
    assert d.docker("exec", peer, "busybox", "ping", "-c", "1", "-W", "1", "boxy", check=False).returncode != 0
    none = d.docker("run", "--rm", "--network", "none", "busybox", "busybox", "ip", "-o", "link").stdout
    assert "lo" in none and "eth0" not in none
    shared = d.docker("run", "--rm", "--network", f"container:{peer}", "busybox", "busybox", "ip", "-o", "-4",
                      "addr").stdout
    assert _inspect(d, peer)["NetworkSettings"]["Networks"][net]["IPAddress"] in shared
    host = d.docker("run", "--rm", "--network", "host", "busybox", "busybox", "ip", "-o", "link").stdout
    assert "lo" in host and len(host.splitlines()) > 1


@pytest.mark.parametrize(("args", "message"), [
    (["-p", "1.2.3.4:80:80:80"], "invalid"),
    (["-p", "abc:80"], "invalid"),
    (["-p", "8080:80/xyz"], "invalid proto"),
    (["--network", "no-such-net"], "network no-such-net not found"),
    (["--ip", "10.1.1.1"], "user specified IP address is supported on user defined networks only"),
    (["--add-host", "bad"], "bad format for add-host"),
])
def test_bad_network_input(berthd_with_busybox: Berthd, args: list[str], message: str) -> None:
    result = berthd_with_busybox.docker("run", "--rm", *args, "busybox", "true", check=False)
    assert result.returncode != 0 and message in result.stderr
    assert "Traceback" not in result.stderr
    berthd_with_busybox.docker("version")


def test_bad_port_binding_through_the_api(berthd_with_busybox: Berthd) -> None:
    body = json.dumps({"Image": "busybox", "Cmd": ["true"],
                       "HostConfig": {"PortBindings": {"80/tcp": [{"HostPort": "99999"}]}}})
    out = subprocess.run(["curl", "-s", "--unix-socket", str(berthd_with_busybox.socket), "-H",
                          "Content-Type: application/json", "-d", body, "http://x/containers/create"],
                         capture_output=True, text=True).stdout
    assert json.loads(out) == {"message": 'invalid port specification: "99999"'}


def _berth_leftovers(bridge: str) -> list[str]:
    found = []
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    found += [line for line in links.splitlines() if f" {bridge}" in line]
    rules = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
    found += [line for line in rules.splitlines() if f"BERTH-{bridge}" in line]
    return found


def test_crash_recovery_and_cleanup(busybox_image: LayoutImage, registry: LocalRegistry) -> None:
    d = Berthd()
    try:
        d.start()
        push_with_skopeo(busybox_image, "fixture/busybox:latest", registry)
        d.docker("pull", "-q", f"{registry.domain}/fixture/busybox:latest")
        d.docker("tag", f"{registry.domain}/fixture/busybox:latest", "busybox:latest")
        nets = ["net-x", "net-y"]
        for net in nets:
            d.docker("network", "create", net)
        port = _free_port()
        containers = [f"c{i}" for i in range(5)]
        for i, name in enumerate(containers):
            extra = ["-p", f"{port}:80"] if i == 0 else []
            d.docker("run", "-d", "--name", name, "--network", nets[i % 2], *extra, "busybox", "sh", "-c",
                     f"mkdir -p /w && echo {name} > /w/index.html && exec httpd -f -p 80 -h /w")
        d.stop(signal.SIGKILL)
        d.start()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
            assert response.read() == b"c0\n"
        for client, server in (("c2", "c0"), ("c3", "c1")):
            out = d.docker("exec", client, "sh", "-c", HTTP_GET.format(server, 80, 3)).stdout
            assert out.endswith(f"{server}\n")
        d.docker("rm", "-f", *containers)
        d.docker("network", "rm", *nets)
        bridge = json.loads(d.docker("network", "inspect", "bridge").stdout)[0]["Options"][
            "com.docker.network.bridge.name"]
        d.stop()
        assert _berth_leftovers(bridge) == []
        with open("/proc/mounts") as f:
            assert str(d.workdir) + "/run/netns" not in f.read()
    finally:
        d.cleanup()



def test_host_port_zero_is_a_random_port(berthd_with_busybox: Berthd, names: list[str]) -> None:
    d = berthd_with_busybox
    web = _name("zero")
    names.append(web)
    d.docker("run", "-d", "--name", web, "-p", "127.0.0.1:0:80", "busybox", "sleep", "300")
    port = int(d.docker("port", web, "80").stdout.strip().rpartition(":")[2])
    assert port > 0
