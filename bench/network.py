"""Networking, berthd vs dockerd side by side: time from ``docker run -d -p`` returning to the first HTTP answer,
and TCP throughput host-to-container (published port) and container-to-container (user network).

Usage (as root): ``.venv/bin/python bench/network.py [-n 5] [--mb 200]``

berthd runs on a temp data root; dockerd is the test fixture's ``LocalDockerd(bridged=True)``: Docker's bridge,
iptables rules and ``docker-proxy``, all inside a network namespace of its own (tests/fixtures/dockerd.py). Both
get the same busybox image (``docker load``). Host-side clients talk to 127.0.0.1: the host's loopback for
berthd, that namespace's loopback for dockerd (this thread enters it with ``setns`` around each client, so both
engines get the same Python client). Only loopback and the engines' own bridges are used.

- first answer: ``run -d -p PORT:80 busybox httpd`` returns, then the client requests ``/`` until any HTTP
  answer comes (a refused or dropped connection is retried at once; the attempts are counted).
- host -> container: ``--mb`` MiB of zeros into ``busybox nc -l`` through the published port, timed by the
  client until the container's side closes.
- container -> container: a second container pipes ``--mb`` MiB from ``/dev/zero`` into ``busybox nc`` to the
  sink's address on a user network, timed inside the container by ``busybox time`` (container start-up not
  included). busybox nc copies in small chunks, so this is CPU-bound: it compares engines, not line rates.

Samples alternate between the engines; prints medians and berthd/dockerd ratios; never fails on timing.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.common import IMAGE, image_tar, running_berthd  # noqa: E402
from tests.fixtures.dockerd import LocalDockerd, entered_netns  # noqa: E402

CHUNK = b"\0" * (1 << 20)
SINK = "sleep 86400 | busybox nc -l -p 9000 > /dev/null"  # stdin never ends, so nc reads until the peer's EOF
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass(frozen=True)
class Engine:
    """One engine under test: the docker CLI's environment, and the network namespace its ports are served in."""

    name: str
    env: dict[str, str]
    netns: str | None = None  # None: the host's

    def docker(self, *args: str) -> str:
        """Run the docker CLI against this engine; its stdout. Raises CalledProcessError."""
        return subprocess.run(["docker", *args], env=self.env, check=True, capture_output=True, text=True,
                              timeout=120).stdout

    def remove(self, *args: str) -> None:
        """``docker <args>`` ignoring failure (cleanup)."""
        subprocess.run(["docker", *args], env=self.env, capture_output=True, timeout=120, check=False)

    @contextlib.contextmanager
    def client(self) -> Iterator[None]:
        """Where a host-side client of published ports runs: the host's namespace or dockerd's."""
        with entered_netns(self.netns) if self.netns else contextlib.nullcontext():
            yield

    def free_port(self) -> int:
        """A TCP port free on 127.0.0.1 where this engine's published ports are served."""
        with self.client(), socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])

    def wait_listening(self, container: str, port: int, timeout: float = 20.0) -> None:
        """Return once ``container``'s namespace has a TCP socket listening on ``port``. Raises TimeoutError."""
        pid = self.docker("inspect", "-f", "{{.State.Pid}}", container).strip()
        suffix = f":{port:04X}"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                rows = [line.split() for table in ("tcp", "tcp6")
                        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]]
                if any(row[1].endswith(suffix) and row[3] == "0A" for row in rows):  # 0A: LISTEN
                    return
            time.sleep(0.005)
        raise TimeoutError(f"{container} does not listen on {port} after {timeout:.0f}s")


def _http_answer(port: int) -> bool:
    """Whether 127.0.0.1:``port`` gives any HTTP answer (busybox httpd says 404 for ``/``)."""
    try:
        with _NO_PROXY.open(f"http://127.0.0.1:{port}/", timeout=5) as response:
            response.read()
    except urllib.error.HTTPError:
        return True
    except (OSError, http.client.HTTPException):
        return False
    return True


def first_answer(engine: Engine, _mb: int) -> tuple[float, int]:
    """Seconds from ``run -d -p`` returning to the first HTTP answer, and the attempts it took."""
    port = engine.free_port()
    name = f"bench-web-{os.getpid()}-{port}"
    engine.docker("run", "-d", "--name", name, "-p", f"{port}:80", IMAGE, "busybox", "httpd", "-f", "-p", "80")
    try:
        start = time.perf_counter()
        attempts = 1
        with engine.client():
            while not _http_answer(port) and time.perf_counter() - start < 10:
                attempts += 1
        return time.perf_counter() - start, attempts
    finally:
        engine.remove("rm", "-f", name)


def host_to_container(engine: Engine, mb: int) -> tuple[float, int]:
    """MiB/s sent to ``nc -l`` in a container through a published port on 127.0.0.1."""
    port = engine.free_port()
    name = f"bench-sink-{os.getpid()}-{port}"
    engine.docker("run", "-d", "--name", name, "-p", f"{port}:9000", IMAGE, "sh", "-c", SINK)
    try:
        engine.wait_listening(name, 9000)
        with engine.client(), socket.create_connection(("127.0.0.1", port), timeout=60) as s:
            start = time.perf_counter()
            for _ in range(mb):
                s.sendall(CHUNK)
            s.shutdown(socket.SHUT_WR)
            s.recv(1)  # EOF once the container's nc has read everything and exited
            return mb / (time.perf_counter() - start), 1
    finally:
        engine.remove("rm", "-f", name)


def container_to_container(engine: Engine, mb: int) -> tuple[float, int]:
    """MiB/s from one container to another's address on a user-defined bridge network."""
    tag = f"{os.getpid()}-{time.monotonic_ns()}"
    net, sink = f"bench-net-{tag}", f"bench-c2c-{tag}"
    engine.docker("network", "create", net)
    try:
        engine.docker("run", "-d", "--name", sink, "--network", net, IMAGE, "sh", "-c", SINK)
        engine.wait_listening(sink, 9000)
        address = engine.docker("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
                                sink).strip()
        timed = subprocess.run(
            ["docker", "run", "--rm", "--network", net, IMAGE, "busybox", "time", "-f", "%e", "sh", "-c",
             f"busybox dd if=/dev/zero bs=1M count={mb} 2>/dev/null | busybox nc {address} 9000"],
            env=engine.env, check=True, capture_output=True, text=True, timeout=300,
        )
        return mb / max(float(timed.stderr.split()[-1]), 0.01), 1
    finally:
        engine.remove("rm", "-f", sink)
        engine.remove("network", "rm", net)


Scenario = Callable[[Engine, int], tuple[float, int]]


def _samples(scenario: Scenario, engines: list[Engine], n: int, mb: int) -> dict[str, list[tuple[float, int]]]:
    """``n`` samples per engine, alternating engines so background load hits both alike."""
    samples: dict[str, list[tuple[float, int]]] = {e.name: [] for e in engines}
    for _ in range(n):
        for engine in engines:
            samples[engine.name].append(scenario(engine, mb))
    return samples


@contextlib.contextmanager
def _berthd(work: Path) -> Iterator[Engine]:
    """berthd on a temp data root and socket in ``work``; stopped (and its cgroup parent removed) afterwards."""
    with running_berthd(work, "berth-bench-net") as env:
        yield Engine("berthd", env)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=5, help="samples per engine and scenario")
    parser.add_argument("--mb", type=int, default=200, help="MiB per throughput sample")
    args = parser.parse_args(argv)
    if shutil.which("docker") is None or os.geteuid() != 0:
        print("needs root and the docker CLI (apt-get install docker.io)")
        return 0
    work = Path(tempfile.mkdtemp(prefix="berth-bench-net-"))
    scenarios: dict[str, Scenario] = {"first": first_answer, "h2c": host_to_container, "c2c": container_to_container}
    try:
        tar = image_tar(work)
        with _berthd(work) as berthd, LocalDockerd(bridged=True) as dockerd:
            engines = [berthd, Engine("dockerd", dockerd.env, dockerd.netns)]
            for engine in engines:
                engine.docker("load", "-q", "-i", str(tar))
            results = {key: _samples(run, engines, args.n, args.mb) for key, run in scenarios.items()}
    finally:
        shutil.rmtree(work, ignore_errors=True)

    def median(key: str, engine: str) -> float:
        return statistics.median(value for value, _ in results[key][engine])

    print(f"networking, berthd vs dockerd (bridged, own netns), {args.n} runs each, medians")
    print(f"  {'':40} {'berthd':>10} {'dockerd':>10} {'berthd/dockerd':>15}")
    rows = [("first", "run -d -p returned -> first answer", "ms", 1000.0, "target < 50 ms"),
            ("h2c", f"host -> container, {args.mb} MiB", "MiB/s", 1.0, "target >= 0.9x"),
            ("c2c", f"container -> container, {args.mb} MiB", "MiB/s", 1.0, "target >= 0.9x")]
    for key, label, unit, scale, target in rows:
        b, d = median(key, "berthd"), median(key, "dockerd")
        print(f"  {label:40} {b * scale:10.1f} {d * scale:10.1f} {b / d:14.2f}x  {unit}, {target}")
    for name in ("berthd", "dockerd"):
        first = sum(1 for _, attempts in results["first"][name] if attempts == 1)
        print(f"  {name}: answered at the first attempt in {first} of {args.n} runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
