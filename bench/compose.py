"""Compose, side by side: ``berth compose`` on berthd vs ``docker-compose`` v1 (Debian's package) on dockerd.

Usage (as root): ``.venv/bin/python bench/compose.py [-n 3]``

The three-service project (``web`` built from a local Dockerfile and published on a loopback port, ``db`` with a
named volume and a health check, ``cache``; web depends on db being healthy) is brought up with ``up -d`` and
timed until db is healthy and every container runs, then taken down with ``down -v``. berthd runs on a temp data
root; dockerd is the test fixture's ``LocalDockerd(bridged=True)`` (its networking confined to a namespace of its
own). Both get the same busybox image (``docker load``). Samples alternate between the engines; prints medians
and ratios; never fails on timing (a failed run is reported and left out).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.common import IMAGE, image_tar  # noqa: E402
from bench.network import Engine, _berthd  # noqa: E402
from tests.fixtures.dockerd import LocalDockerd  # noqa: E402

COMPOSE_FILE = f"""services:
  web:
    build: ./web
    ports: ["127.0.0.1::80"]
    depends_on:
      db: {{condition: service_healthy}}
      cache: {{condition: service_started}}
  db:
    image: {IMAGE}
    command: ["sh", "-c", "touch /data/ready; exec sleep 86400"]
    volumes: ["dbdata:/data"]
    healthcheck: {{test: ["CMD", "cat", "/data/ready"], interval: 1s, timeout: 5s, retries: 30}}
  cache:
    image: {IMAGE}
    command: ["sleep", "86400"]
volumes:
  dbdata: {{}}
"""
DOCKERFILE = f"""FROM {IMAGE}
RUN mkdir -p /www && echo ok > /www/index.html
CMD ["busybox", "httpd", "-f", "-p", "80", "-h", "/www"]
"""


def make_project(work: Path) -> Path:
    (work / "project" / "web").mkdir(parents=True)
    (work / "project" / "web" / "Dockerfile").write_text(DOCKERFILE)
    (work / "project" / "compose.yaml").write_text(COMPOSE_FILE)
    return work / "project" / "compose.yaml"


def _compose_cmd(engine: Engine, file: Path) -> list[str]:
    if engine.name == "berthd":
        return [str(Path(sys.executable).parent / "berth"), "compose", "-f", str(file), "-p", "benchcompose"]
    return ["docker-compose", "-f", str(file), "-p", "benchcompose"]


def _all_healthy(engine: Engine) -> bool:
    names = engine.docker("ps", "--filter", "label=com.docker.compose.project=benchcompose",
                          "--format", "{{.Names}} {{.Status}}").splitlines()
    return len(names) == 3 and all("starting" not in n and "unhealthy" not in n for n in names)


def up_down(engine: Engine, file: Path) -> tuple[float, float]:
    """(seconds from ``up -d`` to all running and healthy, seconds of ``down -v``). Raises on failure."""
    cmd = _compose_cmd(engine, file)
    start = time.perf_counter()
    subprocess.run([*cmd, "up", "-d"], env=engine.env, check=True, capture_output=True, timeout=300)
    while not _all_healthy(engine):
        if time.perf_counter() - start > 120:
            raise TimeoutError("not healthy after 120 s")
        time.sleep(0.05)
    up = time.perf_counter() - start
    start = time.perf_counter()
    subprocess.run([*cmd, "down", "-v"], env=engine.env, check=True, capture_output=True, timeout=300)
    return up, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=3, help="samples per engine")
    args = parser.parse_args(argv)
    if shutil.which("docker") is None or os.geteuid() != 0:
        print("needs root and the docker CLI (apt-get install docker.io)")
        return 0
    work = Path(tempfile.mkdtemp(prefix="berth-bench-compose-"))
    results: dict[str, list[tuple[float, float]]] = {"berthd": [], "dockerd": []}
    try:
        tar = image_tar(work)
        file = make_project(work)
        with _berthd(work) as berthd, LocalDockerd(bridged=True) as dockerd:
            engines = [berthd, Engine("dockerd", dockerd.env, dockerd.netns)]
            if shutil.which("docker-compose") is None:
                print("docker-compose is not installed (apt-get install docker-compose): berth only")
                engines = engines[:1]
            for engine in engines:
                engine.docker("load", "-q", "-i", str(tar))
            for _ in range(args.n):
                for engine in engines:
                    try:
                        results[engine.name].append(up_down(engine, file))
                    except (subprocess.CalledProcessError, TimeoutError) as exc:
                        detail = exc.stderr.decode(errors="replace").strip() if isinstance(
                            exc, subprocess.CalledProcessError) and exc.stderr else str(exc)
                        print(f"{engine.name}: run failed: {detail}")
                        subprocess.run([*_compose_cmd(engine, file), "down", "-v"], env=engine.env,
                                       capture_output=True, timeout=300, check=False)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"compose, berth compose on berthd vs docker-compose on dockerd, {args.n} runs each, medians")
    print(f"  {'':30} {'berthd':>10} {'dockerd':>10} {'berthd/dockerd':>15}")
    for index, label in ((0, "up -d -> all healthy"), (1, "down -v")):
        medians = {name: statistics.median(s[index] for s in samples) if samples else None
                   for name, samples in results.items()}
        b, d = medians["berthd"], medians["dockerd"]
        ratio = f"{b / d:.2f}x" if b and d else "-"
        shown = [f"{v * 1000:8.0f}ms" if v is not None else f"{'-':>10}" for v in (b, d)]
        print(f"  {label:30} {shown[0]} {shown[1]} {ratio:>15}   target <= 1.0x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
