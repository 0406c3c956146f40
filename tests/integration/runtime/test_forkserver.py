"""The warm fork server runs berth-runtime commands exactly as the CLI does, and survives bad requests."""

from __future__ import annotations

import json
import os
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from backend.engine.errors import Unavailable
from backend.engine.runtime.forkserver_client import ForkServer
from tests.integration.runtime.harness import BundleFactory

pytestmark = pytest.mark.root


@pytest.fixture
def server() -> Iterator[ForkServer]:
    fs = ForkServer.start()
    yield fs
    fs.close()


def _run(fs: ForkServer, argv: list[str]) -> tuple[int, str, str]:
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        code = fs.run(argv, stdin=os.open(os.devnull, os.O_RDONLY), stdout=out.fileno(), stderr=err.fileno())
        out.seek(0)
        err.seek(0)
        return code, out.read(), err.read()


def test_version_and_errors_match_the_cli(server: ForkServer, tmp_path: Path) -> None:
    code, out, _ = _run(server, ["--version"])
    assert code == 0 and out.startswith("berth-runtime version")
    code, _, err = _run(server, ["--root", str(tmp_path), "state", "nosuch"])
    assert code == 1
    assert err.strip() == "berth-runtime: container nosuch does not exist"
    code, _, err = _run(server, ["--no-such-flag"])
    assert code == 2 and "unrecognized arguments" in err


def test_full_container_cycle(server: ForkServer, make_bundle: BundleFactory, tmp_path: Path) -> None:
    bundle = make_bundle(["sh", "-c", "echo hello from $(hostname)"])
    root = str(tmp_path / "state")
    code, out, err = _run(server, ["--root", root, "run", "-b", str(bundle.path), bundle.cid])
    assert (code, out, err) == (0, "hello from berth\n", "")
    assert _run(server, ["--root", root, "list", "-q"])[1] == ""


def test_garbage_requests_do_not_stop_the_server(server: ForkServer) -> None:
    for payload in (b"not json", json.dumps({"argv": "x"}).encode(), json.dumps({"argv": [1]}).encode()):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.connect(server.path)
            conn.sendall(payload)
            conn.shutdown(socket.SHUT_WR)
            reply = conn.recv(1024)
        assert json.loads(reply) == {"exit": 1}
    assert _run(server, ["--version"])[0] == 0


def test_a_stopped_server_is_reported(tmp_path: Path) -> None:
    fs = ForkServer.start(str(tmp_path))
    fs.close()
    with pytest.raises(Unavailable, match="fork server"):
        fs.run(["--version"])
