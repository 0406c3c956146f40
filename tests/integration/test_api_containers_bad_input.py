"""Hostile or malformed container requests get a clear 4xx with {"message"}; berthd keeps answering."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.root
BERTHD = str(Path(sys.executable).parent / "berthd")
CGROUP_PARENT = f"berth-test-b{os.getpid()}"


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    tmp = tmp_path_factory.mktemp("berthd")
    sock = tmp / "berth.sock"
    proc = subprocess.Popen([BERTHD, "-H", f"unix://{sock}", "--data-root", str(tmp / "data"),
                             "--exec-root", str(tmp / "run"), "--cgroup-parent", CGROUP_PARENT],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while not sock.exists():
            assert proc.poll() is None and time.monotonic() < deadline, "berthd did not start"
            time.sleep(0.05)
        with httpx.Client(transport=httpx.HTTPTransport(uds=str(sock)), base_url="http://berth",
                          timeout=30) as client:
            yield client
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
        for hierarchy in Path("/sys/fs/cgroup").iterdir():
            with contextlib.suppress(OSError):
                (hierarchy / CGROUP_PARENT).rmdir()


@pytest.mark.parametrize("method, path, body, status, message", [
    ("POST", "/v1.41/containers/create?name=x", {"Image": "busybox"}, 400, "Invalid container name (x)"),
    ("POST", "/v1.41/containers/create?name=../../etc", {"Image": "busybox"}, 400, "Invalid container name"),
    ("POST", "/v1.41/containers/create", {"Image": "busybox", "HostConfig": {"Memory": 4 << 20}}, 400,
     "Minimum memory limit allowed is 6MB"),
    ("POST", "/v1.41/containers/create", {"Image": "busybox", "HostConfig": {"RestartPolicy": {"Name": "x"}}},
     400, "invalid restart policy 'x'"),
    ("POST", "/v1.41/containers/create", {"Image": "busybox", "StopSignal": "SIGWHAT"}, 400,
     "Invalid signal: SIGWHAT"),
    ("POST", "/v1.41/containers/create", {"Image": "nosuch:image", "Cmd": ["true"]}, 404, "No such image"),
    ("POST", "/v1.41/containers/create", [1, 2, 3], 400, "config cannot be empty"),
    ("POST", "/v1.41/containers/nosuch/start", None, 404, "No such container: nosuch"),
    ("POST", "/v1.41/containers/nosuch/kill?signal=KILL", None, 404, "No such container"),
    ("POST", "/v1.41/containers/nosuch/wait?condition=sometime", None, 400, "invalid condition"),
    ("GET", "/v1.41/containers/json?filters=%7Bnot-json", None, 400, ""),
    ("POST", "/v1.41/exec/nosuch/start", {}, 404, "No such exec instance"),
])
def test_bad_requests_are_clear_4xx(api: httpx.Client, method: str, path: str, body: object, status: int,
                                    message: str) -> None:
    response = api.request(method, path, json=body) if body is not None else api.request(method, path)
    assert response.status_code == status, response.text
    assert message in response.json()["message"]


@pytest.mark.parametrize("raw", [b"{not json", b"[" * 100_000 + b"]" * 100_000, b'{"Image": ' + b"9" * 5000 + b"}",
                                 b"\xff\xfe\x00"])
def test_malformed_bodies(api: httpx.Client, raw: bytes) -> None:
    response = api.post("/v1.41/containers/create", content=raw, headers={"Content-Type": "application/json"})
    assert 400 <= response.status_code < 500 and response.json()["message"]


def test_oversized_body_and_the_daemon_stays_up(api: httpx.Client) -> None:
    response = api.post("/v1.41/containers/create", content=b'{"Image": "' + b"a" * (10 << 20) + b'"}',
                        headers={"Content-Type": "application/json"})
    assert response.status_code == 413 and response.json()["message"]
    assert api.get("/_ping").text == "OK"
