"""``docker run --rm IMAGE true``: berthd (docker CLI and berth CLI) vs dockerd, side by side.

Usage (as root): ``.venv/bin/python bench/run_rm.py [-n 10]`` (bench/run.py runs it among all the others)

Both engines get the same busybox image (built locally, loaded into each with ``docker load``); each
iteration is one ``docker run --rm --network none IMAGE true`` timed end to end (CLI start-up
included); the berth CLI runs the same command against berthd, its own start-up included. dockerd
runs in a network namespace of its own (tests/fixtures/dockerd.py); berthd on a temp data root and
socket. The test dockerd has no bridge (it must not touch the host's network), so the side-by-side
rows use ``--network none``; one more row times berthd with its default bridge network. Prints
medians and the ratio berthd/dockerd; never fails on timing.
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

from bench.common import IMAGE, image_tar, running_berthd  # noqa: E402
from tests.fixtures.dockerd import LocalDockerd  # noqa: E402


def _timed(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, env=env, check=True, capture_output=True, timeout=120)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=10)
    args = parser.parse_args(argv)
    docker = shutil.which("docker")
    if docker is None or os.geteuid() != 0:
        print("needs root and the docker CLI (apt-get install docker.io)")
        return 0
    work = Path(tempfile.mkdtemp(prefix="berth-bench-run-"))
    results: dict[str, list[float]] = {}
    tar = image_tar(work)
    with running_berthd(work, "berth-bench-run") as env:
        subprocess.run([docker, "load", "-q", "-i", str(tar)], env=env, check=True, capture_output=True)
        run = [docker, "run", "--rm", "--network", "none", IMAGE, "true"]
        _timed(run, env)  # warm
        results["berthd (docker CLI)"] = [_timed(run, env) for _ in range(args.n)]
        berth_run = [str(Path(sys.executable).parent / "berth"), "-H", f"unix://{work}/berth.sock", *run[1:]]
        results["berthd (berth CLI)"] = [_timed(berth_run, env) for _ in range(args.n)]
        bridged = [docker, "run", "--rm", IMAGE, "true"]  # berthd's default bridge: netns, veth, NAT rules
        results["berthd, default bridge"] = [_timed(bridged, env) for _ in range(args.n)]
    with LocalDockerd() as dockerd:
        dockerd.docker("load", "-q", "-i", str(tar))
        _timed(run, dockerd.env)
        results["dockerd (docker CLI)"] = [_timed(run, dockerd.env) for _ in range(args.n)]
    shutil.rmtree(work, ignore_errors=True)
    base = statistics.median(results["dockerd (docker CLI)"])
    print(f"docker run --rm --network none busybox true, {args.n} runs each (seconds)")
    for name, samples in results.items():
        median = statistics.median(samples)
        print(f"  {name:24} median {median:6.3f}   x dockerd {median / base:5.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
