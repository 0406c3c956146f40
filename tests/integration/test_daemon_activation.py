"""berthd under systemd socket activation (``-H fd://``), its ``--version``, and helpers run the frozen way.

The activation test uses systemd's own ``systemd-socket-activate``, which passes a listening socket exactly as
``berthd.socket`` does (LISTEN_FDS/LISTEN_PID) and starts berthd on the first connection.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from backend.frozen import HELPER_FLAG, helper_argv, run_helper_if_asked
from backend.version import VERSION
from tests.fixtures.berthd import BIN, purge_networks


def _ping(path: Path, timeout: float) -> bytes:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.socket(socket.AF_UNIX) as sock:
                sock.settimeout(timeout)
                sock.connect(str(path))
                sock.sendall(b"GET /_ping HTTP/1.1\r\nHost: berth\r\nConnection: close\r\n\r\n")
                chunks = []
                while chunk := sock.recv(65536):
                    chunks.append(chunk)
                return b"".join(chunks)
        except (FileNotFoundError, ConnectionRefusedError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_version_flag() -> None:
    out = subprocess.run([str(BIN / "berthd"), "--version"], capture_output=True, text=True, check=True).stdout
    assert out.startswith(f"Berth version {VERSION}")


def test_fd_host_without_systemd_is_a_clear_error(tmp_path: Path) -> None:
    result = subprocess.run([str(BIN / "berthd"), "-H", "fd://", "--data-root", str(tmp_path / "data"),
                             "--exec-root", str(tmp_path / "run")], capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert "no sockets were passed by systemd" in result.stderr
    assert "Traceback" not in result.stderr


def test_helper_argv_from_source_uses_the_real_interpreter() -> None:
    argv = helper_argv("forkserver")
    assert argv[0] == sys.executable and argv[1:] == ["-m", "backend.engine.runtime.forkserver"]
    with pytest.raises(KeyError):
        helper_argv("nope")


def test_unknown_helper_is_refused() -> None:
    with pytest.raises(SystemExit, match="unknown helper: nope"):
        run_helper_if_asked(["berthd", HELPER_FLAG, "nope"])
    run_helper_if_asked(["berthd", "--version"])  # not a helper call: returns


@pytest.mark.root
@pytest.mark.network
@pytest.mark.skipif(shutil.which("systemd-socket-activate") is None,
                    reason="systemd-socket-activate is not installed (package systemd)")
def test_socket_activation(tmp_path: Path) -> None:
    sock = tmp_path / "berth.sock"
    proc = subprocess.Popen(
        ["systemd-socket-activate", "-l", str(sock), str(BIN / "berthd"), "-H", "fd://",
         "--data-root", str(tmp_path / "data"), "--exec-root", str(tmp_path / "run"),
         "--cgroup-parent", f"berth-test-activation-{tmp_path.name[-8:]}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        answer = _ping(sock, 30)
        assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"OK"), answer
        headers = answer.decode().lower()
        assert "api-version: 1.4" in headers
        version = subprocess.run(["docker", "-H", f"unix://{sock}", "version", "--format", "{{json .Server}}"],
                                 capture_output=True, text=True, timeout=30)
        assert version.returncode == 0, version.stderr
        assert json.loads(version.stdout)["Version"] == VERSION
    finally:
        proc.terminate()
        proc.wait(20)
        purge_networks(str(tmp_path / "data"))
