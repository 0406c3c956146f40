"""What the benchmarks share: the busybox test image as a docker archive, a berthd of their own, process
memory and CPU readings, and a small Engine API client over a unix socket."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.fixtures.dockerd import UnixHTTPConnection  # noqa: E402
from tests.fixtures.images import build_image  # noqa: E402
from tests.fixtures.rootfs import default_cache_dir  # noqa: E402

IMAGE = "bench/busybox:latest"
VENV_BIN = Path(sys.executable).parent
CLK_TCK = os.sysconf("SC_CLK_TCK")


def image_tar(work: Path) -> Path:
    """The busybox test image as a docker-loadable archive in ``work`` (skopeo: OCI layout -> docker-archive).
    Raises CalledProcessError if skopeo fails."""
    layout = build_image(default_cache_dir(), "busybox")
    tar = work / "busybox.tar"
    if not tar.exists():
        subprocess.run(["skopeo", "copy", "--quiet", f"oci:{layout.path}:{layout.tag}",
                        f"docker-archive:{tar}:{IMAGE}"], check=True, capture_output=True, timeout=120)
    return tar


def client_env(host: str, config_dir: Path) -> dict[str, str]:
    """The docker CLI's environment for ``host``: no inherited DOCKER_* or proxy variables, a config dir of its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_") and "proxy" not in k.lower()}
    config_dir.mkdir(parents=True, exist_ok=True)
    env.update(DOCKER_HOST=host, DOCKER_CONFIG=str(config_dir), DOCKER_CLI_HINTS="false")
    return env


@contextlib.contextmanager
def running_berthd(work: Path, name: str) -> Iterator[dict[str, str]]:
    """berthd on a temp data root and socket in ``work`` (cgroup parent ``name``); yields the docker CLI's
    environment for it. Stopped, and its cgroup parent removed, afterwards. Raises TimeoutError if its socket
    does not appear within 20 s."""
    with berthd_process(work, name) as _daemon:
        yield client_env(f"unix://{work}/berth.sock", work / "cfg")


@contextlib.contextmanager
def berthd_process(work: Path, name: str) -> Iterator[subprocess.Popen[bytes]]:
    """Like :func:`running_berthd`, yielding the daemon's process."""
    daemon = subprocess.Popen([str(VENV_BIN / "berthd"), "-H", f"unix://{work}/berth.sock",
                               "--data-root", str(work / "data"), "--exec-root", str(work / "run"),
                               "--cgroup-parent", name],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while not (work / "berth.sock").exists():
            if time.monotonic() > deadline or daemon.poll() is not None:
                raise TimeoutError(f"berthd did not open {work}/berth.sock")
            time.sleep(0.05)
        yield daemon
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(30)
        for parent in Path("/sys/fs/cgroup").glob(f"*/{name}"):
            with contextlib.suppress(OSError):
                parent.rmdir()


# --- processes -------------------------------------------------------------------------------------------


def rss_kb(pid: int) -> int:
    """Resident set size of ``pid`` in kB (0 if it is gone)."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` so far (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (children of children...)."""
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        with contextlib.suppress(OSError):
            todo += [int(p) for p in Path(f"/proc/{current}/task/{current}/children").read_text().split()]
    return out


def processes(comm: str, marker: str) -> list[int]:
    """Processes named ``comm`` whose working directory or command line mentions ``marker`` (a temp dir)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if (entry / "comm").read_text().strip() != comm:
                continue
            if os.readlink(entry / "cwd").startswith(marker) or marker.encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
    return found


# --- Engine API over a unix socket ----------------------------------------------------------------------


class ApiError(RuntimeError):
    """The engine answered with an error status (the message holds method, path, status and body)."""


class Api:
    """One keep-alive HTTP connection to an Engine API socket (``/v1.41`` paths)."""

    def __init__(self, socket_path: str, timeout: float = 120.0) -> None:
        self._conn = UnixHTTPConnection(socket_path, timeout)

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """``method /v1.41{path}``; the decoded JSON answer (None if empty). Raises ApiError on a status >= 400."""
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else {}
        self._conn.request(method, f"/v1.41{path}", body=data, headers=headers)
        response = self._conn.getresponse()
        payload = response.read()
        if response.status >= 400:
            raise ApiError(f"{method} {path}: {response.status} {payload.decode(errors='replace').strip()[:300]}")
        if not payload or not response.getheader("Content-Type", "").startswith("application/json"):
            return None
        return json.loads(payload)

    def close(self) -> None:
        self._conn.close()
