"""Networking on berthd: time from ``docker run -d -p`` returning to the first answered HTTP request on
127.0.0.1, and TCP throughput host-to-container (published port) and container-to-container (user network).

Usage (as root): ``.venv/bin/python bench/network.py [-n 5] [--mb 200]``

berthd runs on a temp data root with the busybox test image (``docker load``). Throughput moves ``--mb``
MiB of zeros into ``nc -l`` in a container and is timed by the sender. Only loopback and the test daemon's
own bridge are used. Prints medians; never fails on timing. (The dockerd side of the issue's comparison is
not measured yet: the test dockerd lives in a namespace of its own, unreachable at the host's 127.0.0.1.)
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.run import IMAGE, _image_tar  # noqa: E402

CHUNK = b"\0" * (1 << 20)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _docker(env: dict[str, str], *args: str) -> str:
    return subprocess.run(["docker", *args], env=env, check=True, capture_output=True, text=True, timeout=120).stdout


def first_connection(env: dict[str, str]) -> float:
    """Seconds from ``run -d -p`` returning to the first answered request."""
    port = _free_port()
    name = f"bench-web-{port}"
    _docker(env, "run", "-d", "--name", name, "-p", f"{port}:80", IMAGE, "busybox", "httpd", "-f", "-p", "80")
    start = time.perf_counter()
    with contextlib.suppress(urllib.error.HTTPError), urllib.request.urlopen(f"http://127.0.0.1:{port}/",
                                                                             timeout=10) as response:
        response.read()  # any HTTP answer (busybox httpd says 404 for /) counts
    elapsed = time.perf_counter() - start
    _docker(env, "rm", "-f", name)
    return elapsed


def host_to_container(env: dict[str, str], mb: int) -> float:
    """MiB/s sent to ``nc -l`` in a container through a published port on 127.0.0.1."""
    port = _free_port()
    name = f"bench-sink-{port}"
    _docker(env, "run", "-d", "--name", name, "-p", f"{port}:9000", IMAGE, "sh", "-c",
            "busybox nc -l -p 9000 > /dev/null")
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
            start = time.perf_counter()
            for _ in range(mb):
                s.sendall(CHUNK)
            s.shutdown(socket.SHUT_WR)
            s.recv(1)
            return mb / (time.perf_counter() - start)
    finally:
        _docker(env, "rm", "-f", name)


def container_to_container(env: dict[str, str], mb: int) -> float:
    """MiB/s between two containers on a user-defined network (by name, through the embedded DNS)."""
    net, sink, tag = "bench-net", "bench-c2c-sink", str(os.getpid())
    _docker(env, "network", "create", net + tag)
    try:
        _docker(env, "run", "-d", "--name", sink + tag, "--network", net + tag, IMAGE, "sh", "-c",
                "busybox nc -l -p 9000 > /dev/null")
        start = time.perf_counter()
        _docker(env, "run", "--rm", "--network", net + tag, IMAGE, "sh", "-c",
                f"busybox dd if=/dev/zero bs=1M count={mb} 2>/dev/null | busybox nc {sink + tag} 9000")
        return mb / (time.perf_counter() - start)
    finally:
        subprocess.run(["docker", "rm", "-f", sink + tag], env=env, capture_output=True)
        subprocess.run(["docker", "network", "rm", net + tag], env=env, capture_output=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=5)
    parser.add_argument("--mb", type=int, default=200)
    args = parser.parse_args(argv)
    if shutil.which("docker") is None or os.geteuid() != 0:
        print("needs root and the docker CLI (apt-get install docker.io)")
        return 0
    work = Path(tempfile.mkdtemp(prefix="berth-bench-net-"))
    tar = _image_tar(work)
    berthd = subprocess.Popen([str(Path(sys.executable).parent / "berthd"), "-H", f"unix://{work}/berth.sock",
                               "--data-root", str(work / "data"), "--exec-root", str(work / "run"),
                               "--cgroup-parent", "berth-bench-net"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while not (work / "berth.sock").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
        (work / "cfg").mkdir()
        env.update(DOCKER_HOST=f"unix://{work}/berth.sock", DOCKER_CONFIG=str(work / "cfg"))
        _docker(env, "load", "-q", "-i", str(tar))
        connect = [first_connection(env) for _ in range(args.n)]
        h2c = [host_to_container(env, args.mb) for _ in range(args.n)]
        c2c = [container_to_container(env, args.mb) for _ in range(args.n)]
    finally:
        berthd.send_signal(signal.SIGTERM)
        berthd.wait(20)
        shutil.rmtree(work, ignore_errors=True)
        for parent in Path("/sys/fs/cgroup").glob("*/berth-bench-net"):
            with contextlib.suppress(OSError):
                parent.rmdir()
    print(f"berthd networking, {args.n} runs each")
    print(f"  run -d -p returned -> first answer   median {statistics.median(connect) * 1000:7.1f} ms (target < 50)")
    print(f"  host -> container (127.0.0.1 proxy)  median {statistics.median(h2c):7.0f} MiB/s")
    print(f"  container -> container (bridge)      median {statistics.median(c2c):7.0f} MiB/s (incl. run)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
