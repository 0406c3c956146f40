"""``docker build`` of one 10-step Dockerfile: berthd vs dockerd's classic builder, side by side.

Usage (as root): ``.venv/bin/python bench/build.py [-n 3]``

Both engines get the same busybox image (``docker load``) and build the same context with
``DOCKER_BUILDKIT=0 docker build --network none`` (the test dockerd has no bridge): cold (``--no-cache``)
and fully cached (the same build again), each timed end to end with the CLI's start-up. Prints medians and
the ratio berthd/dockerd; never fails on timing. Target: berthd at or below dockerd in both, the cached
rebuild under 1 s.
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

DOCKERFILE = f"""\
FROM {IMAGE}
ENV APP_HOME=/app MODE=production
WORKDIR /app
COPY manifest.txt .
RUN while read pkg; do echo "installed $pkg" >> /app/installed; done < manifest.txt
COPY src/ ./src/
RUN cat src/*.txt > /app/bundle && echo built >> /app/bundle
EXPOSE 8080
LABEL org.example.bench=build
CMD ["cat", "/app/bundle"]
"""


def make_context(work: Path) -> Path:
    context = work / "context"
    (context / "src").mkdir(parents=True)
    (context / "Dockerfile").write_text(DOCKERFILE)
    (context / "manifest.txt").write_text("".join(f"package-{i}\n" for i in range(20)))
    for i in range(50):
        (context / "src" / f"module{i}.txt").write_text(f"module {i}\n" * 200)
    return context


def _timed(docker: str, env: dict[str, str], context: Path, *flags: str) -> float:
    start = time.perf_counter()
    subprocess.run([docker, "build", "--network", "none", *flags, "-t", "bench/built", str(context)], env=env,
                   check=True, capture_output=True, timeout=300)
    return time.perf_counter() - start


def _measure(docker: str, env: dict[str, str], context: Path, n: int) -> tuple[list[float], list[float]]:
    """(cold samples, cached samples): each cold build is followed by a fully cached one."""
    _timed(docker, env, context)  # warm: first container, page cache
    cold, cached = [], []
    for _ in range(n):
        cold.append(_timed(docker, env, context, "--no-cache"))
        cached.append(_timed(docker, env, context))
    return cold, cached


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=3)
    args = parser.parse_args(argv)
    docker = shutil.which("docker")
    if docker is None or os.geteuid() != 0:
        print("needs root and the docker CLI (apt-get install docker.io)")
        return 0
    work = Path(tempfile.mkdtemp(prefix="berth-bench-build-"))
    context = make_context(work)
    tar = image_tar(work)
    results: dict[str, tuple[list[float], list[float]]] = {}
    with running_berthd(work, "berth-bench-build") as env:
        env["DOCKER_BUILDKIT"] = "0"
        subprocess.run([docker, "load", "-q", "-i", str(tar)], env=env, check=True, capture_output=True)
        results["berthd"] = _measure(docker, env, context, args.n)
    with LocalDockerd() as dockerd:
        dockerd.docker("load", "-q", "-i", str(tar))
        results["dockerd (classic builder)"] = _measure(docker, dockerd.env | {"DOCKER_BUILDKIT": "0"}, context,
                                                        args.n)
    shutil.rmtree(work, ignore_errors=True)
    base_cold, base_cached = (statistics.median(s) for s in results["dockerd (classic builder)"])
    print(f"docker build of a 10-step Dockerfile, {args.n} runs each (seconds, median)")
    for name, (cold, cached) in results.items():
        c, h = statistics.median(cold), statistics.median(cached)
        print(f"  {name:26} cold {c:6.3f} (x dockerd {c / base_cold:4.2f})   "
              f"cached {h:6.3f} (x dockerd {h / base_cached:4.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
