"""Load: many containers from many clients, many long streams, a slowloris client, and no leaks after.

One test on the module's daemon, in phases:

1. Baseline (after one warm-up container, so the fork server, bridge and caches exist): ``/_ping`` median
   latency, berthd's open fds and RSS, mounts below its directory, veths on its bridge, its cgroups.
2. :data:`CONTAINERS` containers (``--long``: :data:`LONG_CONTAINERS`) created and started by
   :data:`CLIENTS` concurrent docker SDK clients: even ones print a line and sleep (expected running), odd
   ones exit 3 (expected exited, code 3).
3. :data:`STREAMS` concurrent streams, half ``logs -f`` of running containers (each sees its line), half
   ``/events`` (each sees the tag event made after they all opened).
4. :data:`SLOW` half-open connections (a request line and one header, then nothing) held while ``/_ping``
   is measured again: it stays within a generous factor of the baseline.
5. Every container is in the state its client expects; all are removed by the same clients.
6. Once everything is removed: fds, RSS, mounts, veths and cgroups return to the baseline (small
   tolerance for caches), and ``/_ping`` answers within its normal latency.
"""

from __future__ import annotations

import os
import socket
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import docker
import httpx
import pytest

from backend.engine.networks.service import default_bridge_name
from tests.fixtures.berthd import Berthd

pytestmark = [pytest.mark.root, pytest.mark.network]

CLIENTS = 20
CONTAINERS = 200
LONG_CONTAINERS = 600
STREAMS = 50
SLOW = 200
PING_FACTOR = 10
"""A loaded machine (2 cores shared with other tests) is noisy: latency may grow this much, plus 100 ms."""


@dataclass(frozen=True)
class Usage:
    """What must come back to its baseline once everything is removed."""

    fds: int
    rss_kib: int
    mounts: int
    veths: int
    cgroups: int


def usage(daemon: Berthd) -> Usage:
    assert daemon.proc is not None
    pid = daemon.proc.pid
    rss = next(int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
               if line.startswith("VmRSS:"))
    prefix = str(daemon.workdir) + "/"
    mounts = sum(1 for line in Path("/proc/self/mountinfo").read_text().splitlines()
                 if line.split()[4].startswith(prefix))
    brif = Path("/sys/class/net") / default_bridge_name(str(daemon.data_root)) / "brif"
    veths = len(list(brif.iterdir())) if brif.exists() else 0
    cgroups = len(list(Path("/sys/fs/cgroup").glob(f"*/{daemon.cgroup_parent}/*/")))
    return Usage(len(os.listdir(f"/proc/{pid}/fd")), rss, mounts, veths, cgroups)


def ping_latency(api: httpx.Client, n: int = 30) -> float:
    """Median seconds of ``n`` ``/_ping`` round trips."""
    times = []
    for _ in range(n):
        start = time.perf_counter()
        assert api.get("/_ping").text == "OK"
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@pytest.fixture
def api(berthd_with_busybox: Berthd) -> Iterator[httpx.Client]:
    transport = httpx.HTTPTransport(uds=str(berthd_with_busybox.socket))
    with httpx.Client(transport=transport, base_url="http://berth", timeout=60) as client:
        yield client


def _stream_until(daemon: Berthd, path: str, wanted: bytes, opened: threading.Barrier, deadline: float) -> bool:
    """Open ``path`` as a stream, wait at ``opened``, then read until ``wanted`` shows up or ``deadline``."""
    transport = httpx.HTTPTransport(uds=str(daemon.socket))
    with httpx.Client(transport=transport, base_url="http://berth", timeout=10) as client, \
            client.stream("GET", path) as response:
        opened.wait(60)
        seen = b""
        for chunk in response.iter_raw():
            seen += chunk
            if wanted in seen:
                return True
            if time.monotonic() > deadline:
                break
    return False


def _slowloris(daemon: Berthd, count: int, stack: ExitStack) -> None:
    """``count`` connections, each sent a request line and one header, then held open (closed by ``stack``)."""
    for _ in range(count):
        sock = stack.enter_context(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM))
        sock.connect(str(daemon.socket))
        sock.sendall(b"GET /_ping HTTP/1.1\r\nHost: berth\r\n")


def _in_parallel(work: Callable[[docker.DockerClient, int], object], n: int, daemon: Berthd) -> list[object]:
    """``work(client, i)`` for i in 0..n-1, spread over :data:`CLIENTS` SDK clients in threads."""
    clients = [docker.DockerClient(base_url=daemon.url, version="1.41", timeout=120) for _ in range(CLIENTS)]
    try:
        with ThreadPoolExecutor(CLIENTS) as pool:
            return list(pool.map(lambda i: work(clients[i % CLIENTS], i), range(n)))
    finally:
        for client in clients:
            client.close()


@pytest.mark.timeout(1800)  # --long runs take minutes; CI's take about two
def test_many_clients_streams_and_slow_connections_leave_nothing_behind(
        berthd_with_busybox: Berthd, api: httpx.Client, pytestconfig: pytest.Config) -> None:
    daemon = berthd_with_busybox
    count = LONG_CONTAINERS if pytestconfig.getoption("--long", default=False) else CONTAINERS
    prefix = f"load-{os.getpid()}"
    daemon.docker("run", "--rm", "busybox", "true")  # warm-up: fork server, bridge, caches
    base_ping = ping_latency(api)
    base = usage(daemon)

    def run(client: docker.DockerClient, i: int) -> str:
        cmd = ["sh", "-c", f"echo hello-{i}; sleep 600"] if i % 2 == 0 else ["sh", "-c", "exit 3"]
        return str(client.containers.run("busybox", cmd, name=f"{prefix}-{i}", detach=True).id)

    ids = _in_parallel(run, count, daemon)
    try:
        running = [i for i in range(count) if i % 2 == 0]
        half = STREAMS // 2
        opened = threading.Barrier(STREAMS + 1)
        deadline = time.monotonic() + 120
        with ThreadPoolExecutor(STREAMS) as pool:
            logs = [pool.submit(_stream_until, daemon, f"/containers/{ids[i]}/logs?follow=1&stdout=1",
                                f"hello-{i}\n".encode(), opened, deadline) for i in running[:half]]
            events = [pool.submit(_stream_until, daemon, "/events", f"{prefix}-marker".encode(), opened, deadline)
                      for _ in range(STREAMS - half)]
            opened.wait(60)
            daemon.docker("tag", "busybox", f"{prefix}-marker:1")
            assert all(f.result() for f in logs), "a logs -f stream missed its container's line"
            assert all(f.result() for f in events), "an /events stream missed the tag event"
        daemon.docker("rmi", f"{prefix}-marker:1")

        with ExitStack() as stack:
            _slowloris(daemon, SLOW, stack)
            loaded_ping = ping_latency(api)
            assert loaded_ping < base_ping * PING_FACTOR + 0.1, (base_ping, loaded_ping)

        def state(client: docker.DockerClient, i: int) -> tuple[str, int]:
            container = client.containers.get(str(ids[i]))
            if i % 2:
                return "exited", int(client.api.wait(container.id, timeout=60)["StatusCode"])
            return str(container.status), 0

        states = _in_parallel(state, count, daemon)
        wrong = [(i, s) for i, s in enumerate(states) if s != (("exited", 3) if i % 2 else ("running", 0))]
        assert not wrong, f"containers not in the state their client expects: {wrong[:10]}"
    finally:
        _in_parallel(lambda client, i: client.api.remove_container(str(ids[i]), force=True), count, daemon)

    settled = base
    for _ in range(60):  # monitors and mounts go away in the background: give them a moment
        settled = usage(daemon)
        if settled.mounts == base.mounts and settled.veths == base.veths and settled.cgroups == base.cgroups \
                and settled.fds <= base.fds + 8:
            break
        time.sleep(0.5)
    assert (settled.mounts, settled.veths, settled.cgroups) == (base.mounts, base.veths, base.cgroups), (base, settled)
    assert settled.fds <= base.fds + 8, (base, settled)
    assert settled.rss_kib <= base.rss_kib * 1.5 + 32 * 1024, (base, settled)
    assert ping_latency(api) < base_ping * PING_FACTOR + 0.1
    assert daemon.docker("ps", "-aq").stdout.strip() == ""
