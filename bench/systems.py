"""The systems the harness compares, each started privately: berthd, dockerd (Debian's docker.io) and podman.

Every system gets a data root of its own in a temp dir and never touches the machine's own engines:

- berthd: :func:`bench.common.berthd_process` (temp data root, exec root, socket, cgroup parent);
- dockerd: ``LocalDockerd(bridged=True)`` from tests/fixtures/dockerd.py: own network and mount namespace, data
  root, socket and cgroup parent; its bridge, iptables and docker-proxy live in that namespace only;
- podman: root podman with ``--root``/``--runroot``/``--tmpdir`` in the temp dir and a ``CONTAINERS_CONF`` of its
  own (runc, cgroupfs, file events, no default ulimits); ``podman system service`` serves the Docker API on a
  socket in the temp dir. Podman's bridge (netavark) would change the host's network, so podman only runs
  containers with ``--network none``.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import VENV_BIN, berthd_process, client_env, descendants, processes
from bench.network import Engine
from tests.fixtures.dockerd import LocalDockerd

MNT_DETACH = 2
PODMAN_CONF = """[containers]
default_ulimits = []
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "{work}/events.log"
[network]
network_config_dir = "{work}/net"
"""


@dataclass
class System:
    """One running system: ``env`` points the docker CLI at its Docker API socket ``socket``; ``cli`` is its own
    CLI (argv prefix, run with ``cli_env``); ``engine_pids`` lists the processes that make up the engine (daemon
    and per-container helpers, never the containers' own processes)."""

    name: str
    socket: str
    env: dict[str, str]
    cli: list[str]
    cli_env: dict[str, str]
    engine_pids: Callable[[], list[int]]
    netns: str | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def engine(self) -> Engine:
        """The same system as bench/network.py's Engine (docker CLI helpers, its network namespace)."""
        return Engine(self.name, self.env, self.netns)

    def docker(self, *args: str, timeout: float = 300) -> str:
        """The docker CLI against this system; its stdout. Raises CalledProcessError."""
        return subprocess.run(["docker", *args], env=self.env, check=True, capture_output=True, text=True,
                              timeout=timeout).stdout

    def own(self, *args: str, timeout: float = 300) -> str:
        """This system's own CLI; its stdout. Raises CalledProcessError."""
        return subprocess.run([*self.cli, *args], env=self.cli_env, check=True, capture_output=True, text=True,
                              timeout=timeout).stdout


@contextlib.contextmanager
def berthd(work: Path) -> Iterator[System]:
    """berthd on ``work``; the engine is berthd, its fork server and the containers' monitors."""
    work.mkdir(parents=True)
    with berthd_process(work, "berth-bench") as daemon:
        sock = f"{work}/berth.sock"
        env = client_env(f"unix://{sock}", work / "cfg")
        yield System("berthd", sock, env, [str(VENV_BIN / "berth"), "-H", f"unix://{sock}"], env,
                     lambda: descendants(daemon.pid) + processes("berth-monitor", str(work)))


@contextlib.contextmanager
def dockerd() -> Iterator[System]:
    """A bridged LocalDockerd; the engine is every process in its mount namespace (dockerd, containerd, shims)."""
    with LocalDockerd(bridged=True) as daemon:
        assert daemon.pid is not None
        mnt = os.stat(f"/proc/{daemon.pid}/ns/mnt").st_ino

        def pids() -> list[int]:
            found = []
            for entry in Path("/proc").iterdir():
                if entry.name.isdigit():
                    with contextlib.suppress(OSError):
                        if os.stat(entry / "ns" / "mnt").st_ino == mnt:
                            found.append(int(entry.name))
            return found

        yield System("dockerd", daemon.socket, daemon.env, ["docker"], daemon.env, pids, netns=daemon.netns)


@contextlib.contextmanager
def podman(work: Path) -> Iterator[System]:
    """Root podman on ``work`` with its Docker API service; the engine is the service and the containers'
    conmons. Raises FileNotFoundError if podman is not installed, TimeoutError if the service does not start."""
    if shutil.which("podman") is None:
        raise FileNotFoundError("podman is not installed (apt-get install podman)")
    work.mkdir(parents=True)
    (work / "containers.conf").write_text(PODMAN_CONF.format(work=work))
    cli = ["podman", "--root", str(work / "root"), "--runroot", str(work / "run"), "--tmpdir", str(work / "tmp")]
    cli_env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    cli_env["CONTAINERS_CONF"] = str(work / "containers.conf")
    sock = f"{work}/podman.sock"
    service = subprocess.Popen([*cli, "system", "service", "--time", "0", f"unix://{sock}"], env=cli_env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while not Path(sock).exists():
            if time.monotonic() > deadline or service.poll() is not None:
                raise TimeoutError("podman system service did not open its socket")
            time.sleep(0.05)
        yield System("podman", sock, client_env(f"unix://{sock}", work / "cfg"), cli, cli_env,
                     lambda: descendants(service.pid) + processes("conmon", str(work)))
    finally:
        subprocess.run([*cli, "rm", "-af", "-t", "0"], env=cli_env, capture_output=True, timeout=300, check=False)
        service.send_signal(signal.SIGTERM)
        try:
            service.wait(30)
        except subprocess.TimeoutExpired:
            service.kill()
            service.wait(10)
        unmount_under(work)
        shutil.rmtree(work, ignore_errors=True)


def unmount_under(path: Path) -> None:
    """Detach every mount point below ``path`` (podman's storage leaves its overlay bind mount behind)."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    prefix = f"{path}/"
    points = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    for point in sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True):
        libc.umount2(point.encode(), MNT_DETACH)
