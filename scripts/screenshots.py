"""Render berth-desktop's pages, detail tabs, dialogs and tray menu with real data to PNG files.

``scripts/screenshots.py [--out DIR]`` (root; default docs/screenshots) starts a berthd of its own on a temp
data root (tests/fixtures/berthd.py), loads the locally built test images through a local registry on
127.0.0.1 (never Docker Hub), creates containers (running with ports, exited 0 and 1, paused, a Compose
project of three), volumes with files, a network with a subnet, one build and a (stopped) machine, then
shows the app offscreen (light theme; one page dark) and saves each view with QWidget.grab. Everything it
made goes away with its berthd. Exit status 0 when every file was written.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import qasync  # type: ignore[import-untyped]  # noqa: E402
from PySide6.QtCore import QPoint, QSettings, QSize  # noqa: E402
from PySide6.QtWidgets import QApplication, QWidget  # noqa: E402

from app.application import Desktop  # noqa: E402
from app.build_history import BuildRequest  # noqa: E402
from app.dialogs.run import RunDialog  # noqa: E402
from app.engine_session import EngineState  # noqa: E402
from app.settings import Settings, ThemeChoice  # noqa: E402
from tests.fixtures.berthd import Berthd  # noqa: E402
from tests.fixtures.images import build_image, push_with_skopeo  # noqa: E402
from tests.fixtures.registry import LocalRegistry  # noqa: E402
from tests.fixtures.rootfs import default_cache_dir  # noqa: E402
from tests.fixtures.tiny_machine_image import build_tiny_image  # noqa: E402

SIZE = QSize(1100, 700)
DIALOG_SIZE = QSize(760, 560)
LOG_LOOP = ('i=0; while true; do i=$((i+1)); echo "$(date +%T) GET /api/orders/$i 200 ${i}ms"; '
            '[ $((i % 7)) = 0 ] && echo "$(date +%T) WARN slow query on orders ($i)"; sleep 0.3; done')
DOCKERFILE = 'FROM busybox\nRUN echo "built by Berth" > /hello.txt\nCOPY app.sh /app.sh\nCMD ["sh", "/app.sh"]\n'


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def make_machine(work: Path) -> None:
    """A stopped machine named ``default`` (an image that never boots: the Engine page shows its settings)."""
    os.environ["BERTH_MACHINE_HOME"] = str(work / "machines")
    image_dir = work / "machine-image"
    image_dir.mkdir()
    image = build_tiny_image(image_dir)
    subprocess.run([sys.executable, "-c", "from backend.cli.main import console_main; console_main()", "machine",
                    "init", "--image", str(image.tar), "--image-sha256", image.sha256, "--no-share", "--cpus", "4",
                    "--memory", "4g", "--disk-size", "60g"], check=True, capture_output=True)


def make_data(daemon: Berthd, registry: LocalRegistry, context: Path) -> None:
    """Images, containers, a Compose project, volumes with files and a network with a subnet."""
    cache = default_cache_dir()
    push_with_skopeo(build_image(cache, "multilayer"), "acme/layers:1.0", registry)  # pulled in the Pull dialog
    push_with_skopeo(build_image(cache, "busybox"), "library/busybox:latest", registry)
    daemon.docker("pull", "-q", f"{registry.domain}/library/busybox:latest")
    daemon.docker("tag", f"{registry.domain}/library/busybox:latest", "busybox:latest")
    for volume, files in (("shop-data", {"orders.csv": "id,total\n1,9.90\n2,24.50\n", "README": "orders\n"}),
                          ("cache", {"index.bin": "x" * 4096})):
        daemon.docker("volume", "create", volume)
        script = "; ".join(f"printf '%s' '{text}' > /v/{file}" for file, text in files.items())
        daemon.docker("run", "--rm", "-v", f"{volume}:/v", "busybox", "sh", "-c", script)
    daemon.docker("network", "create", "--subnet", "10.231.7.0/24", "backend")
    run = ("run", "-d", "--name")
    daemon.docker(*run, "api", "-p", f"127.0.0.1:{free_port()}:80", "-v", "shop-data:/data", "busybox",
                  "sh", "-c", LOG_LOOP)
    daemon.docker(*run, "worker", "--network", "backend", "busybox", "sleep", "100000")
    daemon.docker(*run, "paused-job", "busybox", "sleep", "100000")
    daemon.docker("pause", "paused-job")
    daemon.docker(*run, "migrate", "busybox", "sh", "-c", "echo migrated 42 rows")
    daemon.docker(*run, "nightly-report", "busybox", "sh", "-c", "echo 'report failed' >&2; exit 1")
    for service, extra in (("web", ["-p", f"127.0.0.1:{free_port()}:8080"]), ("db", ["-v", "cache:/var/lib"]),
                           ("cache", [])):
        labels = ["--label", "com.docker.compose.project=shop", "--label", f"com.docker.compose.service={service}",
                  "--label", "com.docker.compose.container-number=1"]
        daemon.docker(*run, f"shop-{service}-1", *labels, *extra, "busybox", "sleep", "100000")
    daemon.docker("wait", "migrate")
    daemon.docker("wait", "nightly-report")
    (context / "Dockerfile").write_text(DOCKERFILE)
    (context / "app.sh").write_text("cat /hello.txt\n")


class Shooter:
    """Saves grabs of widgets as ``<out>/<name>.png`` and remembers the names."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.saved: list[str] = []

    async def shot(self, name: str, widget: QWidget, size: QSize | None = SIZE, settle: float = 0.4) -> None:
        if size is not None:
            widget.resize(size)
        widget.show()
        await asyncio.sleep(settle)  # layouts, the first data and the repaints
        if not widget.grab().save(str(self.out / f"{name}.png")):
            raise RuntimeError(f"could not write {name}.png")
        self.saved.append(name)


async def until(predicate: Callable[[], object], what: str, timeout: float = 20) -> None:
    """Wait until ``predicate()`` is true; RuntimeError naming ``what`` after ``timeout`` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def render(daemon: Berthd, registry: str, out: Path, work: Path, context: Path) -> list[str]:
    """Show every view against ``daemon`` (its images from ``registry``) and save it; returns the names saved."""
    settings = Settings(QSettings(str(work / "berth.ini"), QSettings.Format.IniFormat))
    settings.theme = ThemeChoice.LIGHT
    desktop = Desktop(daemon.url, settings, notify=False)
    shooter = Shooter(out)
    window = desktop.window
    try:
        desktop.start()
        await until(lambda: desktop.session.state is EngineState.RUNNING, "the engine")
        await desktop.live.settle()
        builds = window.builds_page
        dialog = builds.new_build(BuildRequest(str(context), tags=("acme/report:1.0",)), start=True)
        await until(lambda: not dialog.running and builds.builds.rowCount() > 0, "the build", 120)
        await shooter.shot("build-dialog", dialog, DIALOG_SIZE)
        dialog.close()
        images = window.images_page
        images.pull_dialog.start(f"{registry}/acme/layers:1.0")
        await until(lambda: "Pulled" in images.pull_dialog.status.text(), "the pull", 60)
        await shooter.shot("pull-dialog", images.pull_dialog, DIALOG_SIZE)
        images.pull_dialog.close()
        await desktop.live.settle()
        window.containers_page.view.expandAll()
        for number, name in enumerate(window.pages):
            window.show_page(number)
            table = window.tables().get(name)
            if table is not None:
                for column in range(table.model.columnCount()):
                    table.view.resizeColumnToContents(column)
            if name == "Builds":
                builds.select(lambda row: True)
            await shooter.shot(name.lower(), window, settle=1.5 if name in ("Containers", "Engine") else 0.5)
        window.show_page(0)
        settings.theme = ThemeChoice.DARK
        await shooter.shot("containers-dark", window, settle=1.0)
        settings.theme = ThemeChoice.LIGHT
        row = desktop.live.containers.find("api")
        if row is None:
            raise RuntimeError("the api container is not in the table")
        detail = window.open_detail(row)
        for index, tab in ((0, "logs"), (2, "inspect"), (4, "files")):
            detail.tabs.setCurrentIndex(index)
            await shooter.shot(f"detail-{tab}", detail, settle=2.0)
        detail.tabs.setCurrentIndex(3)
        await shooter.shot("detail-stats", detail, settle=6.0)  # a few samples for the charts
        detail.tabs.setCurrentIndex(1)
        await until(lambda: "#" in "".join(detail.exec_tab.terminal.text()), "the shell prompt")
        detail.exec_tab.terminal.send.emit(b"echo hello from $(hostname); ls /data\r")
        await until(lambda: "orders.csv" in "".join(detail.exec_tab.terminal.text()), "the exec output")
        await shooter.shot("detail-exec", detail, settle=0.5)
        detail.close()
        window.show_page(1)
        images.select(lambda r: "busybox:latest" in getattr(r, "tags", ()))
        images.show_run()
        run = images.dialog
        if not isinstance(run, RunDialog):
            raise RuntimeError("the Run dialog did not open")
        run.name.setText("hello-web")
        await shooter.shot("run-dialog", run, DIALOG_SIZE)
        run.close()
        desktop.tray.rebuild_menu()
        menu = desktop.tray.menu
        menu.popup(QPoint(0, 0))
        await shooter.shot("tray-menu", menu, None)
        menu.close()
    finally:
        await desktop.close()
    return shooter.saved


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "screenshots", help="where the PNGs go")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="berth-screenshots-") as tmp:
        work = Path(tmp)
        os.environ["XDG_DATA_HOME"] = str(work / "data")  # the build outputs (AppDataLocation)
        os.environ["XDG_CONFIG_HOME"] = str(work / "config")
        context, registry_dir = work / "context", work / "registry"
        context.mkdir()
        registry_dir.mkdir()
        daemon = Berthd(work / "berthd")
        try:
            with LocalRegistry(base_dir=registry_dir) as registry:
                daemon.start()
                make_data(daemon, registry, context)
                make_machine(work)
                app = QApplication.instance() or QApplication(sys.argv[:1])
                app.setApplicationName("Berth")
                loop = qasync.QEventLoop(app)
                asyncio.set_event_loop(loop)
                with loop:
                    saved = loop.run_until_complete(render(daemon, registry.domain, args.out, work, context))
        finally:
            daemon.cleanup()
    print(f"{len(saved)} screenshots in {args.out}: {', '.join(saved)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
