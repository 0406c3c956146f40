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
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.run import IMAGE, _image_tar  # noqa: E402
from tests.fixtures.dockerd import LocalDockerd  # noqa: E402

SETTLE = 3.0


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (children of children...)."""
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        try:
            with open(f"/proc/{current}/task/{current}/children") as f:
                todo += [int(p) for p in f.read().split()]
        except OSError:
            continue
    return out


def monitors(data_root: Path) -> list[int]:
    """The monitors of containers under ``data_root`` (a monitor's working directory is its state dir)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "berth-monitor" and \
                        os.readlink(entry / "cwd").startswith(str(data_root)):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def main() -> int:
    if os.geteuid() != 0 or shutil.which("docker") is None:
        print("needs root and the docker CLI (apt-get install docker.io)")
        return 0
    work = Path(tempfile.mkdtemp(prefix="berth-bench-mem-"))
    tar = _image_tar(work)
    rows: dict[str, int] = {}
    berthd = subprocess.Popen([str(Path(sys.executable).parent / "berthd"), "-H", f"unix://{work}/berth.sock",
                               "--data-root", str(work / "data"), "--exec-root", str(work / "run"),
                               "--cgroup-parent", "berth-bench-mem"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while not (work / "berth.sock").exists():
            time.sleep(0.05)
        time.sleep(SETTLE)
        rows["berthd, fresh"] = sum(rss_kb(p) for p in descendants(berthd.pid) + monitors(work))
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
        (work / "cfg").mkdir()
        env.update(DOCKER_HOST=f"unix://{work}/berth.sock", DOCKER_CONFIG=str(work / "cfg"))
        subprocess.run(["docker", "load", "-q", "-i", str(tar)], env=env, check=True, capture_output=True)
        subprocess.run(["docker", "run", "--rm", "--network", "none", IMAGE, "true"], env=env, check=True,
                       capture_output=True)
        time.sleep(SETTLE)
        rows["berthd, after a run (fork server up)"] = sum(rss_kb(p) for p in descendants(berthd.pid) + monitors(work))
    finally:
        berthd.send_signal(signal.SIGTERM)
        berthd.wait(20)
    with LocalDockerd() as dockerd:
        time.sleep(SETTLE)
        rows["dockerd + containerd"] = sum(rss_kb(p) for p in descendants(dockerd.pid))
    shutil.rmtree(work, ignore_errors=True)
    for parent in Path("/sys/fs/cgroup").glob("*/berth-bench-mem"):
        parent.rmdir()
    base = rows["dockerd + containerd"]
    print("idle RSS, no containers (kB)")
    for name, kb in rows.items():
        print(f"  {name:38} {kb:8d}   x dockerd+containerd {kb / base:5.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
