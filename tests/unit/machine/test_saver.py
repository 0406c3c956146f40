"""The resource saver against a real QEMU (``-machine none``: QMP's stop/cont without a guest) and a small HTTP
server standing in for the guest API on 127.0.0.1."""

from __future__ import annotations

import http.server
import json
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from backend.machine.qmp import QMP
from backend.machine.saver import SNAPSHOT, ResourceSaver, closing, normalise, read_head

pytestmark = pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None,
                                reason="qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)")


@pytest.mark.parametrize(("target", "expected"), [
    ("/v1.41/containers/json?all=1", "/containers/json?all=1"),
    ("/containers/json?all=true", "/containers/json?all=1"),
    ("/v1.43/containers/json?all=0", "/containers/json"),
    ("/containers/json?all=false", "/containers/json"),
    ("/_ping", "/_ping"),
    ("/v1.41/images/json?b=2&a=1", "/images/json?a=1&b=2"),
    ("/volumes/", "/volumes"),
    ("/containers/json?all=1&filters=%7B%7D", "/containers/json?all=1&filters=%7B%7D"),
    ("/vX/info", "/vX/info"),
])
def test_normalise(target: str, expected: str) -> None:
    assert normalise(target) == expected


def _head(data: bytes) -> tuple[str, str, bytes] | None:
    a, b = socket.socketpair()
    with a, b:
        a.sendall(data)
        a.shutdown(socket.SHUT_WR)
        head = read_head(b, timeout=2)
    return None if head is None else (head.method, head.target, head.data)


def test_read_head() -> None:
    assert _head(b"GET /_ping HTTP/1.1\r\nHost: x\r\n\r\n") == ("GET", "/_ping", b"GET /_ping HTTP/1.1\r\nHost: x"
                                                                b"\r\n\r\n")
    assert _head(b"") is None
    # not HTTP, or cut short: no method, but every byte read is handed back to be passed on
    assert _head(b"\x16\x03\x01 hello") == ("", "", b"\x16\x03\x01 hello")
    assert _head(b"GET /_ping HTTP/1.1\r\nHost") == ("", "", b"GET /_ping HTTP/1.1\r\nHost")
    assert _head(b"GET  HTTP/1.1\r\n\r\n") == ("", "", b"GET  HTTP/1.1\r\n\r\n")


def test_closing_replaces_connection_headers() -> None:
    reply = closing(b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nKeep-Alive: 5\r\nContent-Length: 2\r\n\r\nOK")
    assert reply == b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nOK"


class _Guest(http.server.BaseHTTPRequestHandler):
    requests: list[str] = []

    def _answer(self) -> None:
        _Guest.requests.append(f"{self.command} {self.path}")
        body = json.dumps({"path": self.path}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_POST = do_HEAD = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def guest() -> Iterator[int]:
    _Guest.requests = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Guest)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture
def qmp_socket(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "qmp.sock"
    qemu = subprocess.Popen(["qemu-system-x86_64", "-machine", "none", "-nodefaults", "-display", "none",
                             "-qmp", f"unix:{path},server=on,wait=off"], stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while not path.exists():
        assert qemu.poll() is None and time.monotonic() < deadline, "QEMU did not open its QMP socket"
        time.sleep(0.05)
    yield path
    qemu.kill()
    qemu.wait()


def _status(path: Path) -> str:
    with QMP(path) as qmp:
        status: str = qmp.execute("query-status")["status"]
        return status


def test_rests_answers_read_only_requests_and_wakes(guest: int, qmp_socket: Path) -> None:
    recorded: list[bool] = []
    clocks: list[float] = []
    saver = ResourceSaver(qmp_socket, lambda: socket.create_connection(("127.0.0.1", guest)), lambda: 0, lambda: 1,
                          lambda: clocks.append(time.time()), recorded.append)
    threading.Thread(target=saver.watch, daemon=True).start()
    try:
        deadline = time.monotonic() + 10
        while not saver.resting:
            assert time.monotonic() < deadline, "the saver did not pause an idle machine"
            time.sleep(0.1)
        assert _status(qmp_socket) == "paused" and recorded == [True]
        assert sorted(_Guest.requests) == sorted(f"GET {target}" for target in SNAPSHOT)
        fetched = len(_Guest.requests)

        def ask(request: bytes) -> tuple[bytes | None, bytes]:
            client, peer = socket.socketpair()
            with client:
                client.sendall(request)
                passed_on = saver.gate(peer)
                client.settimeout(5)
                answer = b""
                if passed_on is None:
                    while chunk := client.recv(4096):
                        answer += chunk
                else:
                    peer.close()
            return passed_on, answer

        passed_on, answer = ask(b"GET /v1.41/containers/json?all=true HTTP/1.1\r\nHost: x\r\n\r\n")
        assert passed_on is None and answer.startswith(b"HTTP/1.0 200") and b"Connection: close" in answer
        assert answer.endswith(b'{"path": "/containers/json?all=1"}')
        passed_on, answer = ask(b"HEAD /_ping HTTP/1.1\r\nHost: x\r\n\r\n")
        assert passed_on is None and answer.endswith(b"\r\n\r\n") and b"Content-Length: " in answer
        assert len(_Guest.requests) == fetched and saver.resting and _status(qmp_socket) == "paused"

        request = b"POST /v1.41/containers/create HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}"
        passed_on, _ = ask(request)
        assert passed_on == request  # handed back whole, to be relayed to the resumed guest
        assert not saver.resting and _status(qmp_socket) == "running" and recorded == [True, False]
        deadline = time.monotonic() + 5
        while not clocks:
            assert time.monotonic() < deadline, "the guest's clock was not set after the pause"
            time.sleep(0.05)
    finally:
        saver.close()


def test_running_containers_and_traffic_keep_it_awake(guest: int, qmp_socket: Path) -> None:
    running = [1]
    saver = ResourceSaver(qmp_socket, lambda: socket.create_connection(("127.0.0.1", guest)), lambda: running[0],
                          lambda: 1, lambda: None, lambda resting: None)
    threading.Thread(target=saver.watch, daemon=True).start()
    try:
        time.sleep(2.5)
        assert not saver.resting and _status(qmp_socket) == "running"  # a container runs
        running[0] = 0
        for _ in range(25):  # traffic every 0.1 s
            saver.touch()
            time.sleep(0.1)
        assert not saver.resting and _status(qmp_socket) == "running"
        deadline = time.monotonic() + 10
        while not saver.resting:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        saver.touch()  # bytes on a connection opened before the pause
        assert not saver.resting and _status(qmp_socket) == "running"
    finally:
        saver.close()


def test_zero_means_never(guest: int, qmp_socket: Path) -> None:
    saver = ResourceSaver(qmp_socket, lambda: socket.create_connection(("127.0.0.1", guest)), lambda: 0, lambda: 0,
                          lambda: None, lambda resting: None)
    threading.Thread(target=saver.watch, daemon=True).start()
    try:
        time.sleep(2.5)
        assert not saver.resting and _status(qmp_socket) == "running" and _Guest.requests == []
    finally:
        saver.close()


def test_an_unanswered_request_keeps_it_awake(guest: int, qmp_socket: Path) -> None:
    """A slow answer (``create`` under TCG sends nothing for seconds) is not idleness."""
    saver = ResourceSaver(qmp_socket, lambda: socket.create_connection(("127.0.0.1", guest)), lambda: 0, lambda: 1,
                          lambda: None, lambda resting: None)
    traffic = saver.conversation()
    traffic(True)  # the request went in
    threading.Thread(target=saver.watch, daemon=True).start()
    try:
        time.sleep(3)
        assert not saver.resting and _status(qmp_socket) == "running"
        traffic(False)  # the answer came back: idle from now on
        deadline = time.monotonic() + 10
        while not saver.resting:
            assert time.monotonic() < deadline, "the answered machine was not paused"
            time.sleep(0.1)
        traffic(True)  # the next request on the same connection resumes it before it is passed on
        assert not saver.resting and _status(qmp_socket) == "running"
        traffic(None)
    finally:
        saver.close()
