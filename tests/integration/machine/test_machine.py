"""Issue 9's acceptance: a Debian guest under TCG (one boot for the module) runs berthd for the host.

The image (tests/fixtures/machine_image.py) is served from a local HTTP server on 127.0.0.1; QEMU's user
network is ``restrict=on`` so the guest reaches nothing; busybox is loaded with ``docker load`` from the
local test image, never pulled.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import pty
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from backend.machine.agent import free_port
from backend.machine.qmp import QMP
from backend.machine.seed import generate_keys
from tests.fixtures.images import LayoutImage, _skopeo
from tests.fixtures.machine_image import MachineImage, machine_image  # noqa: F401 (fixture)

pytestmark = [pytest.mark.root, pytest.mark.slow, pytest.mark.vm, pytest.mark.timeout(1800)]

NAME = "acceptance"
DOCKER = "/usr/local/bin/docker"
BERTH = str(Path(sys.executable).parent / "berth")
UDP_PRINTER = """
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 5353))
while True:
    print(s.recv(100).decode().strip(), flush=True)
"""


@dataclass
class Machine:
    home: Path
    share: Path
    url: str
    image: MachineImage
    api_port: int

    @property
    def dir(self) -> Path:
        return self.home / NAME

    @property
    def socket(self) -> Path:
        return self.dir / "berth.sock"

    def env(self) -> dict[str, str]:
        return {**os.environ, "BERTH_MACHINE_HOME": str(self.home), "DOCKER_HOST": f"unix://{self.socket}"}

    def berth(self, *args: str, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([BERTH, *args], env=self.env(), text=True, capture_output=True, timeout=timeout,
                              check=False)
        if check and proc.returncode != 0:
            raise AssertionError(f"berth {' '.join(args)} failed ({proc.returncode}): {proc.stderr}")
        return proc

    def docker(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([DOCKER, *args], env=self.env(), text=True, capture_output=True, timeout=300,
                              check=True)

    def record(self) -> dict[str, object]:
        return json.loads((self.dir / "machine.json").read_text())


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def image_server(machine_image: MachineImage) -> Iterator[str]:  # noqa: F811
    """``http://127.0.0.1:<port>/image.tar`` served from the image's cache directory."""
    handler = functools.partial(_Quiet, directory=str(machine_image.tar.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/image.tar"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def machine(tmp_path_factory: pytest.TempPathFactory, image_server: str, machine_image: MachineImage,  # noqa: F811
            busybox_image: LayoutImage) -> Iterator[Machine]:
    """One machine booted under TCG for the module, with busybox loaded; stopped and removed afterwards."""
    root = tmp_path_factory.mktemp("machine")
    m = Machine(root / "home", root / "share", image_server, machine_image, free_port())
    m.share.mkdir()
    m.berth("machine", "init", NAME, "--image", image_server, "--image-sha256", machine_image.sha256, "--share",
            str(m.share), "--accel", "tcg", "--restrict-network", "--cpus", "2", "--memory", "2048", "--api-port",
            str(m.api_port), "--idle-timeout", "0")
    try:
        started = time.monotonic()
        out = m.berth("machine", "start", NAME).stdout
        print(f"machine boot to ready: {time.monotonic() - started:.1f}s ({out.strip()})")
        archive = root / "busybox.tar"
        _skopeo(["copy", "--quiet", f"oci:{busybox_image.path}:latest", f"docker-archive:{archive}:busybox:latest"],
                root)
        m.docker("load", "-i", str(archive))
        yield m
    finally:
        m.berth("machine", "rm", "--force", NAME, check=False)


def test_wrong_sha256_is_refused_before_anything_boots(tmp_path: Path, image_server: str) -> None:
    env_home = tmp_path / "home"
    proc = subprocess.run([BERTH, "machine", "init", "bad", "--image",
                           image_server, "--image-sha256", "0" * 64],
                          env={**os.environ, "BERTH_MACHINE_HOME": str(env_home)}, text=True, capture_output=True,
                          timeout=600, check=False)
    assert proc.returncode == 1
    assert proc.stderr.startswith("berth: image ") and f"expected {'0' * 64}: refused" in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.splitlines()) == 1
    assert not (env_home / "bad").exists()
    assert list((env_home / "_cache" / "images").iterdir()) == []  # the partial download is gone


def _request(address: str | tuple[str, int], request: bytes) -> bytes:
    family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
    with socket.socket(family) as s:
        s.settimeout(60)
        s.connect(address)
        s.sendall(request)
        answer = b""
        while chunk := s.recv(4096):
            answer += chunk
    return answer


def test_ready_and_ping(machine: Machine) -> None:
    record = machine.record()
    assert record["state"] == "running" and record["provisioned"] is True
    assert str(record["guest_version"]).startswith("wheels-")
    ping = b"GET /_ping HTTP/1.1\r\nHost: berth\r\nConnection: close\r\n\r\n"
    answer = _request(str(machine.socket), ping)
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"OK")
    # --api-port: the same engine on the host's loopback (Windows' clients)
    answer = _request(("127.0.0.1", machine.api_port), ping)
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"OK")
    proc = subprocess.run([DOCKER, "-H", f"tcp://127.0.0.1:{machine.api_port}", "version", "--format",
                           "{{.Server.Os}}"], text=True, capture_output=True, timeout=120, check=True)
    assert proc.stdout == "linux\n"


def test_run_prints_hi_from_the_guest(machine: Machine) -> None:
    proc = machine.berth("-H", f"unix://{machine.socket}", "run", "--rm", "busybox", "echo", "hi")
    assert proc.stdout == "hi\n"
    kernel = machine.berth("-H", f"unix://{machine.socket}", "run", "--rm", "busybox", "cat", "/proc/version").stdout
    assert "Debian" in kernel  # the guest's kernel, not the host's


def _get(port: int, deadline: float) -> bytes:
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.sendall(b"GET / HTTP/1.0\r\n\r\n")
                answer = b""
                while chunk := s.recv(4096):
                    answer += chunk
                if answer:
                    return answer
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"127.0.0.1:{port} did not answer")
        time.sleep(0.05)


def test_published_port_reachable_on_host(machine: Machine) -> None:
    name = "machine-web"
    machine.berth("-H", f"unix://{machine.socket}", "run", "-d", "--name", name, "-p", "18081:80", "busybox", "sh",
                  "-c", "busybox mkdir /www && echo served-from-guest > /www/index.html && "
                  "exec busybox httpd -f -p 80 -h /www")
    try:
        assert b"served-from-guest" in _get(18081, time.monotonic() + 30)
        assert "127.0.0.1:18081/tcp" in machine.record()["ports"]
    finally:
        machine.berth("-H", f"unix://{machine.socket}", "rm", "-f", name)
    deadline = time.monotonic() + 10
    while "127.0.0.1:18081/tcp" in machine.record()["ports"]:
        assert time.monotonic() < deadline, "the forward of 18081 was not removed after the container died"
        time.sleep(0.1)
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", 18081), timeout=2):
        pass


def test_created_container_holds_its_port_until_removed(machine: Machine) -> None:
    name = "machine-created"
    machine.berth("-H", f"unix://{machine.socket}", "create", "--name", name, "-p", "18084:80", "busybox")
    try:
        deadline = time.monotonic() + 30
        while "127.0.0.1:18084/tcp" not in machine.record()["ports"]:
            assert time.monotonic() < deadline, "a created container's fixed port was not bound"
            time.sleep(0.1)
    finally:
        machine.berth("-H", f"unix://{machine.socket}", "rm", name)
    deadline = time.monotonic() + 30
    while "127.0.0.1:18084/tcp" in machine.record()["ports"]:
        assert time.monotonic() < deadline, "removing the created container did not release its port"
        time.sleep(0.1)


def test_published_udp_port_through_qmp(machine: Machine) -> None:
    name = "machine-udp"
    # Debian's busybox has no UDP server: the guest's own python3, bind-mounted from the guest's /usr.
    machine.berth("-H", f"unix://{machine.socket}", "run", "-d", "--name", name, "-p", "18083:5353/udp",
                  "-v", "/usr:/usr:ro", "-v", "/lib:/lib:ro", "-v", "/lib64:/lib64:ro", "busybox", "python3", "-u",
                  "-c", UDP_PRINTER)
    try:
        deadline = time.monotonic() + 30
        while "127.0.0.1:18083/udp" not in machine.record()["ports"]:
            assert time.monotonic() < deadline, "no UDP forward for 18083"
            time.sleep(0.1)
        deadline = time.monotonic() + 60
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            while "datagram-from-host" not in machine.berth("-H", f"unix://{machine.socket}", "logs", name).stdout:
                assert time.monotonic() < deadline, "the datagram did not reach the container"
                s.sendto(b"datagram-from-host\n", ("127.0.0.1", 18083))
                time.sleep(0.5)
    finally:
        machine.berth("-H", f"unix://{machine.socket}", "rm", "-f", name)


def test_the_engine_is_unreachable_from_containers(machine: Machine) -> None:
    """berthd in the guest has no TCP listener: a host-network container finds nothing on the usual ports."""
    proc = machine.berth("-H", f"unix://{machine.socket}", "run", "--rm", "--network", "host", "busybox", "sh", "-c",
                         "busybox httpd -p 127.0.0.1:18099 -h / && sleep 0.5; for p in 18099 2375 2376; do "
                         "busybox nc -w 2 127.0.0.1 $p </dev/null && echo open-$p; done; ls /run/berth 2>&1; echo done",
                         check=False)
    assert proc.returncode == 0, proc.stderr
    assert "open-18099" in proc.stdout  # the probe does find a listener on the guest's loopback
    assert "open-237" not in proc.stdout and "berth.sock" not in proc.stdout and proc.stdout.endswith("done\n")


def test_host_file_visible_in_bind_mount(machine: Machine) -> None:
    (machine.share / "from-host.txt").write_text("written on the host\n")
    proc = machine.berth("-H", f"unix://{machine.socket}", "run", "--rm", "-v", f"{machine.share}:/data", "busybox",
                         "cat", "/data/from-host.txt")
    assert proc.stdout == "written on the host\n"


def test_changed_host_key_fails_clearly(machine: Machine) -> None:
    pinned = machine.dir / "host_key.pub"
    original = pinned.read_text()
    assert machine.berth("machine", "ssh", NAME, "echo", "ok").stdout == "ok\n"
    pinned.write_text(generate_keys().host_public + "\n")
    try:
        proc = machine.berth("machine", "ssh", NAME, "true", check=False)
    finally:
        pinned.write_text(original)
    assert proc.returncode == 1
    assert proc.stderr.startswith("berth: the machine's host key changed: pinned SHA256:")
    assert "Traceback" not in proc.stderr and len(proc.stderr.splitlines()) == 1


def test_bad_input_is_one_line(machine: Machine) -> None:
    for args in (["machine", "start", "no-such"], ["machine", "init", "x", "--image", "u", "--image-sha256", "zz"],
                 ["machine", "set", NAME, "--cpus", "4"], ["machine", "init", "../x", "--image", "u",
                                                            "--image-sha256", "0" * 64]):
        proc = machine.berth(*args, check=False)
        assert proc.returncode == 1, args
        assert proc.stderr.startswith("berth: ") and len(proc.stderr.splitlines()) == 1, proc.stderr
    assert machine.record()["state"] == "running"


def _qemu_status(machine: Machine) -> str:
    with QMP(machine.dir / "qmp.sock") as qmp:
        status: str = qmp.execute("query-status")["status"]
        return status


def test_interactive_ssh(machine: Machine) -> None:
    """``berth machine ssh`` on a terminal: a shell with a pty, its exit status passed on."""
    pid, fd = pty.fork()
    if pid == 0:
        os.execve(BERTH, [BERTH, "machine", "ssh", NAME], machine.env())
    output = b""
    try:
        os.write(fd, b"echo tty=$(tty | cut -c1-8) answer=$((6*7)); exit 3\n")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if select.select([fd], [], [], 1)[0]:
                try:
                    chunk = os.read(fd, 4096)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                output += chunk
    finally:
        for _ in range(50):
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            time.sleep(0.1)
        else:
            os.kill(pid, 9)
            _, status = os.waitpid(pid, 0)
        os.close(fd)
    assert b"tty=/dev/pts answer=42" in output, output
    assert os.waitstatus_to_exitcode(status) == 3


def test_resource_saver_pauses_and_wakes(machine: Machine) -> None:
    assert machine.berth("-H", f"unix://{machine.socket}", "ps", "-q").stdout == ""
    machine.berth("machine", "set", NAME, "--idle-timeout", "3")  # allowed while running
    try:
        deadline = time.monotonic() + 60
        while not machine.record()["resting"]:
            assert time.monotonic() < deadline, "the idle machine was not paused: " + (
                machine.dir / "agent.log").read_text()[-3000:]
            time.sleep(0.2)
        assert _qemu_status(machine) == "paused"
        assert "running (resting)" in machine.berth("machine", "ls").stdout
        # read-only requests are answered while it rests: the docker CLI's ping, ps -a and images
        names = machine.docker("ps", "-a", "--format", "{{.Names}}").stdout
        assert "machine-web" not in names  # removed earlier: the answer is current
        assert "busybox" in machine.docker("images", "--format", "{{.Repository}}").stdout
        assert machine.record()["resting"] and _qemu_status(machine) == "paused"
        # anything else wakes it transparently
        started = time.monotonic()
        assert machine.berth("-H", f"unix://{machine.socket}", "run", "--rm", "busybox", "echo", "awake").stdout \
            == "awake\n"
        print(f"run --rm from resting: {time.monotonic() - started:.2f}s")
        assert not machine.record()["resting"] and _qemu_status(machine) == "running"
        deadline = time.monotonic() + 60
        while not machine.record()["resting"]:
            assert time.monotonic() < deadline, "the machine was not paused again: " + (
                machine.dir / "agent.log").read_text()[-3000:]
            time.sleep(0.2)
        # ssh wakes it too, and the guest's clock was set from the host's after the pause
        guest_time = float(machine.berth("machine", "ssh", NAME, "date", "+%s").stdout)
        assert not machine.record()["resting"]
        deadline = time.monotonic() + 30
        while abs(float(machine.berth("machine", "ssh", NAME, "date", "+%s").stdout) - time.time()) > 3:
            assert time.monotonic() < deadline, f"the guest's clock stays behind ({guest_time} vs {time.time()})"
            time.sleep(0.5)
    finally:
        machine.berth("machine", "set", NAME, "--idle-timeout", "0")
    assert _request(str(machine.socket), b"GET /_ping HTTP/1.0\r\n\r\n").endswith(b"OK")


def test_stop_powers_down_through_qmp(machine: Machine) -> None:
    qemu_pid = int(str(machine.record()["qemu_pid"]))
    machine.berth("machine", "stop", NAME)
    record = machine.record()
    assert record["state"] == "stopped" and record["ports"] == []
    assert not Path(f"/proc/{qemu_pid}").exists()
    assert "reboot: Power down" in (machine.dir / "serial.log").read_text(errors="replace")  # ACPI, not quit
    assert not machine.socket.exists()


def test_a_changed_host_build_is_installed_at_start(machine: Machine) -> None:
    """A machine whose guest has another build of berthd than the host's gets the host's at its next start."""
    record = machine.record()
    assert record["state"] == "stopped"  # by the test before
    (machine.dir / "machine.json").write_text(json.dumps({**record, "guest_version": "wheels-0.0.1-older"}))
    machine.berth("machine", "start", NAME)
    try:
        assert str(machine.record()["guest_version"]).startswith("wheels-")
        assert machine.record()["guest_version"] != "wheels-0.0.1-older"
        assert "it had wheels-0.0.1-older" in (machine.dir / "agent.log").read_text()
        assert machine.berth("-H", f"unix://{machine.socket}", "run", "--rm", "busybox", "echo", "hi").stdout == "hi\n"
    finally:
        machine.berth("machine", "stop", NAME)
