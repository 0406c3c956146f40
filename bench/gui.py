"""berth-desktop's performance targets (issue 8): cold start, sorting, memory and event-loop latency.

Usage: ``.venv/bin/python bench/gui.py [--quick]`` (as root for the daemon parts; offscreen unless
QT_QPA_PLATFORM says otherwise)

- sort: 2,000 synthetic containers in the containers model; the slowest sort of any column, either order,
  through the Containers page's proxy and view (no daemon);
- cold start: a berthd of its own (bench/run.py's running_berthd) with 200 containers created through the API
  from the local busybox archive; from constructing the Desktop to the Containers page holding all of them;
- memory: the app's RSS once populated;
- latency: a burst of 500 container renames from another process; the largest gap of a 5 ms asyncio ticker
  in the app until the page shows the last name, and the app's CPU time meanwhile; the same gap over one idle
  second before it (the gaps also count time the scheduler gave other processes: on a busy machine compare).

``--quick`` uses 20 containers and 50 events (a smoke run). Prints a table with the targets; never fails on
the figures (exit status 0), only on errors.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import qasync  # type: ignore[import-untyped]  # noqa: E402
from PySide6.QtCore import QSettings, Qt  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from app.actions import ActionRunner  # noqa: E402
from app.application import Desktop  # noqa: E402
from app.models.containers import ContainerRow, ContainersModel  # noqa: E402
from app.settings import Settings  # noqa: E402
from app.views.containers_page import ContainersPage  # noqa: E402
from backend.api.client import EngineClient  # noqa: E402
from backend.api.types import Port  # noqa: E402
from bench.common import IMAGE, cpu_seconds, image_tar, rss_kb, running_berthd  # noqa: E402

BENCH_LABEL = "berth.bench.gui"
TARGETS = {"cold start (s)": 1.5, "sort 2,000 rows (ms)": 100.0, "app RSS (MB)": 200.0, "event loop gap (ms)": 50.0}


def synthetic_rows(count: int) -> list[ContainerRow]:
    """``count`` containers of every state, some in Compose projects, some with ports (seeded: reproducible)."""
    rng = random.Random(8)
    states = [("running", "Up 3 minutes"), ("exited", "Exited (0) 1 hour ago"), ("exited", "Exited (137) now"),
              ("paused", "Up 2 hours (Paused)"), ("created", "Created")]
    rows = []
    for number in range(count):
        state, status = rng.choice(states)
        project = f"proj{number % 40}" if number % 5 == 0 else ""
        ports = (Port(80, "tcp", "0.0.0.0", 8000 + number),) if number % 3 == 0 else ()
        rows.append(ContainerRow(f"{rng.getrandbits(256):064x}", f"c{rng.getrandbits(40):x}-{number}",
                                 f"image{rng.randrange(50)}:latest", state, status, ports,
                                 1_700_000_000 + rng.randrange(10_000_000), project, f"svc{number}" if project else ""))
    return rows


def measure_sort(count: int) -> float:
    """The slowest full sort (ms) of ``count`` rows through the Containers page's proxy and view."""
    model = ContainersModel()
    model.set_rows(synthetic_rows(count))
    page = ContainersPage(model, EngineClient("unix:///nonexistent/berth.sock"), ActionRunner())
    worst = 0.0
    for column in range(len(model.COLUMNS)):
        for order in (Qt.SortOrder.AscendingOrder, Qt.SortOrder.DescendingOrder):
            start = time.perf_counter()
            page.view.sortByColumn(column, order)
            QApplication.processEvents()
            worst = max(worst, (time.perf_counter() - start) * 1000)
    page.deleteLater()
    return worst


async def largest_gap(done: Callable[[], bool], timeout: float) -> float:
    """The largest delay (s) of a 5 ms ticker on this event loop until ``done()``. Raises TimeoutError."""
    loop = asyncio.get_running_loop()
    start = last = loop.time()
    gap = 0.0
    while not done():
        await asyncio.sleep(0.005)
        now = loop.time()
        gap, last = max(gap, now - last - 0.005), now
        if now - start > timeout:
            raise TimeoutError("timed out waiting for the app")
    return gap


async def create_containers(host: str, count: int) -> None:
    async with EngineClient(host) as client:
        for number in range(count):
            await client.create_container({"Image": IMAGE, "Cmd": ["true"], "Labels": {BENCH_LABEL: "1"}},
                                          name=f"gb-{number}")


async def remove_containers(host: str) -> None:
    """Remove the bench's containers."""
    async with EngineClient(host) as client:
        for container in await client.list_containers(all=True, filters={"label": [BENCH_LABEL]}):
            await client.remove_container(container.id, force=True)


async def rename_burst(host: str, count: int) -> None:
    """Rename the bench's containers ``count`` times in turn (the last name is ``gbr-{count - 1}``)."""
    async with EngineClient(host) as client:
        ids = [c.id for c in await client.list_containers(all=True, filters={"label": [BENCH_LABEL]})]
        for number in range(count):
            await client.rename_container(ids[number % len(ids)], f"gbr-{number}")


async def measure_app(host: str, work: Path, containers: int, events: int) -> dict[str, float]:
    """Cold start, RSS and the burst's largest event-loop gap, in a Desktop on ``host``."""
    settings = Settings(QSettings(str(work / "settings.ini"), QSettings.Format.IniFormat))
    start = time.perf_counter()
    desktop = Desktop(host, settings, notify=False)
    desktop.start()
    page = desktop.window.containers_page
    await largest_gap(lambda: page.proxy.rowCount() >= containers, 30)
    cold = time.perf_counter() - start
    await desktop.live.settle()
    rss = rss_kb(os.getpid()) / 1024
    loop = asyncio.get_running_loop()
    quiet_until = loop.time() + 1.0
    idle_gap = await largest_gap(lambda: loop.time() > quiet_until, 5)
    cpu = cpu_seconds(os.getpid())
    burst = subprocess.Popen([sys.executable, __file__, "--rename-burst", host, str(events)])
    last_name = f"gbr-{events - 1}"
    gap = await largest_gap(lambda: burst.poll() is not None
                            and (burst.returncode != 0 or desktop.live.containers.find(last_name) is not None), 120)
    if burst.returncode:
        raise RuntimeError(f"the rename burst failed ({burst.returncode})")
    cpu = cpu_seconds(os.getpid()) - cpu
    await desktop.close()
    return {"cold start (s)": cold, "app RSS (MB)": rss, "event loop gap (ms)": gap * 1000,
            "idle loop gap (ms)": idle_gap * 1000, "app CPU in the burst (s)": cpu}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="20 containers and 50 events (a smoke run)")
    parser.add_argument("--rename-burst", nargs=2, metavar=("HOST", "COUNT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rename_burst:
        asyncio.run(rename_burst(args.rename_burst[0], int(args.rename_burst[1])))
        return 0
    containers, events = (20, 50) if args.quick else (200, 500)
    app = QApplication(sys.argv[:1])
    app.setQuitOnLastWindowClosed(False)
    results = {"sort 2,000 rows (ms)": measure_sort(2000)}
    if shutil.which("docker") is None or os.geteuid() != 0:
        print("(cold start, memory and latency need root and the docker CLI: skipped)")
    else:
        work = Path(tempfile.mkdtemp(prefix="berth-bench-gui-"))
        try:
            tar = image_tar(work)
            with running_berthd(work, "berth-bench-gui") as env:
                subprocess.run(["docker", "load", "-q", "-i", str(tar)], env=env, check=True, capture_output=True)
                host = env["DOCKER_HOST"]
                try:
                    asyncio.run(create_containers(host, containers))
                    loop = qasync.QEventLoop(app)
                    asyncio.set_event_loop(loop)
                    with loop:
                        results |= loop.run_until_complete(measure_app(host, work, containers, events))
                finally:  # created containers hold a process, a mount and a netns: they outlive the daemon
                    asyncio.set_event_loop(None)
                    asyncio.run(remove_containers(host))
        finally:
            shutil.rmtree(work, ignore_errors=True)
    print(f"berth-desktop, {containers} containers, {events} events")
    print(f"  {'measure':24} {'value':>9} {'target':>9}")
    for name, value in results.items():
        target = TARGETS.get(name)
        verdict = "" if target is None else f"{target:9.1f}  {'ok' if value < target else 'MISSED'}"
        print(f"  {name:24} {value:9.2f} {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
