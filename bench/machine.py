"""The machine (issue 9): boot-to-ready time, forwarded API latency vs the guest's own socket, and how soon a
published port answers on the host after ``run -d`` returns.

Usage (as root): ``.venv/bin/python bench/machine.py [--keep]``

Builds (or reuses) the test image of tests/fixtures/machine_image.py, creates a machine in a temp
``BERTH_MACHINE_HOME`` (the host's accelerator choice, reported; ``restrict=on`` network), and measures:

- first boot to READY (includes installing berthd over SFTP) and a second, provisioned boot to READY;
- ``GET /_ping`` round trips: through the host socket (SSH channel per connection) and inside the guest on
  ``/run/berth/berth.sock`` (median of :data:`PINGS`);
- time from ``run -d -p`` returning to the first HTTP answer on the host's 127.0.0.1 (median of
  :data:`PORT_SAMPLES` containers);
- the resource saver: QEMU's host CPU over :data:`CPU_WINDOW` seconds idle and resting, ``/_ping`` answered
  from the resting machine's snapshot, and the first request that wakes it.

Prints the figures; never fails on them. Bounded: every wait has a timeout, all traffic is loopback.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from backend.machine.manager import MachineManager  # noqa: E402
from backend.machine.state import MachineConfig, MachineFiles, MachineStore  # noqa: E402
from tests.fixtures.images import _skopeo, build_image  # noqa: E402
from tests.fixtures.machine_image import build_machine_image  # noqa: E402
from tests.fixtures.rootfs import default_cache_dir  # noqa: E402

PINGS = 50
PORT = 18082
PORT_SAMPLES = 5
CPU_WINDOW = 10.0
GUEST_PING = f"""
import socket, time, statistics
samples = []
for _ in range({PINGS}):
    t = time.perf_counter()
    s = socket.socket(socket.AF_UNIX)
    s.connect("/run/berth/berth.sock")
    s.sendall(b"GET /_ping HTTP/1.1\\r\\nHost: b\\r\\nConnection: close\\r\\n\\r\\n")
    while s.recv(4096):
        pass
    s.close()
    samples.append(time.perf_counter() - t)
print(statistics.median(samples) * 1000)
"""


def host_ping_ms(path: Path) -> float:
    samples = []
    for _ in range(PINGS):
        started = time.perf_counter()
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(path))
            s.sendall(b"GET /_ping HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n")
            while s.recv(4096):
                pass
        samples.append(time.perf_counter() - started)
    return statistics.median(samples) * 1000


def request_ms(path: Path, target: str) -> float:
    """One ``GET target`` through the host socket, answered in full."""
    started = time.perf_counter()
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(path))
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n".encode())
        while s.recv(65536):
            pass
    return (time.perf_counter() - started) * 1000


def cpu_percent(pid: int, window: float = CPU_WINDOW) -> float:
    """Process ``pid``'s CPU use (user + system, per cent of one core) over ``window`` seconds."""
    def ticks() -> int:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])

    before = ticks()
    time.sleep(window)
    return (ticks() - before) / os.sysconf("SC_CLK_TCK") / window * 100


def first_answer_ms(port: int, timeout: float = 30.0) -> float:
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.sendall(b"GET / HTTP/1.0\r\n\r\n")
                if s.recv(4096):
                    return (time.perf_counter() - started) * 1000
        except OSError:
            time.sleep(0.005)
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="keep the temp machine home")
    args = parser.parse_args()
    cache = default_cache_dir()
    image = build_machine_image(cache)
    home = Path(tempfile.mkdtemp(prefix="berth-machine-bench-"))
    manager = MachineManager(MachineStore(home))
    try:
        manager.init("bench", MachineConfig(image_url=str(image.tar), image_sha256=image.sha256, restrict_network=True,
                                            share=str(home)))
        first = manager.start("bench")
        print(f"first boot to READY (installs berthd): {first.boot_seconds:.1f} s ({first.accel})", flush=True)
        manager.stop("bench")
        started = time.monotonic()
        second = manager.start("bench")
        print(f"provisioned boot to READY: {second.boot_seconds:.1f} s (start returned after "
              f"{time.monotonic() - started:.1f} s; {second.accel})", flush=True)
        sock = MachineFiles(home / "bench").api_socket
        env = {**os.environ, "DOCKER_HOST": f"unix://{sock}"}
        ssh = manager.ssh("bench")
        try:
            guest = float(ssh.run(f"python3 -c '{GUEST_PING}'"))
        finally:
            ssh.close()
        print(f"GET /_ping median: host socket {host_ping_ms(sock):.2f} ms, guest's own socket {guest:.2f} ms",
              flush=True)
        layout = build_image(cache, "busybox")
        archive = home / "busybox.tar"
        _skopeo(["copy", "--quiet", f"oci:{layout.path}:latest", f"docker-archive:{archive}:busybox:latest"], home)
        subprocess.run(["docker", "load", "-q", "-i", str(archive)], env=env, check=True, capture_output=True)
        delays, warm = [], []
        for index in range(PORT_SAMPLES):
            subprocess.run(["docker", "run", "-d", "-p", f"{PORT + index}:80", "busybox", "busybox", "httpd", "-f",
                            "-p", "80", "-h", "/"], env=env, check=True, capture_output=True, timeout=300)
            delays.append(first_answer_ms(PORT + index))
            warm.append(statistics.median(first_answer_ms(PORT + index) for _ in range(5)))
        print(f"published port answering on the host after run -d returned: median {statistics.median(delays):.0f} ms "
              f"of {', '.join(f'{d:.0f}' for d in delays)}; one exchange on the warm port takes "
              f"{statistics.median(warm):.0f} ms (the guest's httpd under this accelerator)", flush=True)
        subprocess.run(["docker", "rm", "-f", *subprocess.run(["docker", "ps", "-aq"], env=env, check=True,
                                                               capture_output=True, text=True).stdout.split()],
                       env=env, check=True, capture_output=True, timeout=300)
        qemu_pid = manager.inspect("bench").qemu_pid
        awake_cpu = cpu_percent(qemu_pid)
        manager.set("bench", idle_timeout=1)
        deadline = time.monotonic() + 60
        while not manager.inspect("bench").resting and time.monotonic() < deadline:
            time.sleep(0.1)
        resting_cpu = cpu_percent(qemu_pid)
        snapshot = statistics.median(request_ms(sock, "/_ping") for _ in range(PINGS))
        wake = request_ms(sock, "/containers/json?filters=%7B%7D")
        print(f"resource saver: QEMU's CPU idle {awake_cpu:.1f} % vs resting {resting_cpu:.1f} % of a core; /_ping "
              f"while resting {snapshot:.2f} ms; the first request that wakes it {wake:.0f} ms")
    finally:
        with_error = sys.exc_info()[0] is not None
        manager.rm("bench", force=True)
        if not args.keep:
            shutil.rmtree(home, ignore_errors=True)
        if with_error:
            print(f"machine home: {home}")


if __name__ == "__main__":
    main()
