"""Idle memory: RSS of berthd (and every process it keeps: fork server, monitors) vs dockerd + containerd.

Usage (as root): ``.venv/bin/python bench/idle_memory.py``

Three figures, each after a few seconds of idling:

- berthd just started, no containers;
- berthd after one ``docker run --rm`` (the warm fork server is still up; it stops after 5 idle minutes);
- dockerd and its containerd just started, no containers (tests/fixtures/dockerd.py, own netns).

Prints kB and the ratio to dockerd + containerd; never fails on the figures.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.common import IMAGE, berthd_process, client_env, descendants, image_tar, processes, rss_kb  # noqa: E402
from tests.fixtures.dockerd import LocalDockerd  # noqa: E402

SETTLE = 3.0


def main() -> int:
    if os.geteuid() != 0 or shutil.which("docker") is None:
        print("needs root and the docker CLI (apt-get install docker.io)")
        return 0
    work = Path(tempfile.mkdtemp(prefix="berth-bench-mem-"))
    tar = image_tar(work)
    rows: dict[str, int] = {}

    def berth_kb(pid: int) -> int:
        return sum(rss_kb(p) for p in descendants(pid) + processes("berth-monitor", str(work)))

    with berthd_process(work, "berth-bench-mem") as berthd:
        time.sleep(SETTLE)
        rows["berthd, fresh"] = berth_kb(berthd.pid)
        env = client_env(f"unix://{work}/berth.sock", work / "cfg")
        subprocess.run(["docker", "load", "-q", "-i", str(tar)], env=env, check=True, capture_output=True)
        subprocess.run(["docker", "run", "--rm", "--network", "none", IMAGE, "true"], env=env, check=True,
                       capture_output=True)
        time.sleep(SETTLE)
        rows["berthd, after a run (fork server up)"] = berth_kb(berthd.pid)
    with LocalDockerd() as dockerd:
        time.sleep(SETTLE)
        rows["dockerd + containerd"] = sum(rss_kb(p) for p in descendants(dockerd.pid))
    shutil.rmtree(work, ignore_errors=True)
    base = rows["dockerd + containerd"]
    print("idle RSS, no containers (kB)")
    for name, kb in rows.items():
        print(f"  {name:38} {kb:8d}   x dockerd+containerd {kb / base:5.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
