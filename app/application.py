"""berth-desktop's composition root: the client, the session, the live models, the window and the tray.

``berth-desktop [-H HOST] [--hidden]`` finds the engine as the CLI does (``-H``, BERTH_HOST, DOCKER_HOST,
docker context, the default socket). The app starts whether or not the engine is running and says so.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

import qasync  # type: ignore[import-untyped]
from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QApplication

from app.actions import ActionRunner
from app.engine_session import EngineSession
from app.live import LiveData
from app.models.containers import ContainerRow
from app.settings import NOTIFICATIONS, Settings
from app.theme import ThemeManager
from app.tray import Tray
from app.views.main_window import MainWindow
from backend.api.client import EngineClient
from backend.api.host import find_host, parse_host
from backend.version import VERSION


class Desktop:
    """Everything the app is made of, wired together. Needs a QApplication and a running qasync loop for
    :meth:`start`."""

    def __init__(self, host: str | None, settings: Settings, *, notify: bool = True) -> None:
        self.client = EngineClient(host, user_agent=f"berth-desktop/{VERSION}")
        self.settings, self._notify = settings, notify
        self.theme = ThemeManager(settings)
        self.runner = ActionRunner()
        self.session = EngineSession(self.client)
        self.live = LiveData(self.session, self.runner)
        self.window = MainWindow(self.session, self.live, self.runner, settings)
        self.quit_requested = asyncio.Event()
        self.tray = Tray(self.session, self.live, self.runner, open_dashboard=self.show_dashboard,
                         open_logs=self.open_logs, quit=self.quit_requested.set,
                         notify=notify and settings.notifications, machines=self.window.engine_page.machines)
        settings.changed.connect(self._setting_changed)
        for long_work in (self.window.images_page.pull_dialog.long_finished, self.window.builds_page.long_finished):
            long_work.connect(self.tray.notify)

    def start(self, *, show_window: bool = True) -> None:
        """Start watching the engine; show the tray and (unless ``show_window`` is false) the window."""
        self.session.start()
        self.window.engine_page.machines.start()
        self.tray.show()
        if show_window:
            self.show_dashboard()

    def show_dashboard(self) -> None:
        self.window.show()
        self.window.raise_()
        self.window.activateWindow()

    def open_logs(self, row: ContainerRow) -> object:
        return self.window.open_detail(row)

    def _setting_changed(self, key: str) -> None:
        if key == NOTIFICATIONS:
            self.tray.show_notifications = self._notify and self.settings.notifications

    async def close(self) -> None:
        """Close the windows, hide the tray and stop watching the engine (the engine keeps running)."""
        self.window.close()
        self.tray.icon.hide()
        await self.window.engine_page.machines.stop()
        await self.session.stop()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the app until Quit. Returns the exit status."""
    parser = argparse.ArgumentParser(prog="berth-desktop", description="Berth's desktop app")
    parser.add_argument("-H", "--host", help="engine address (unix:///path, tcp://host:port)")
    parser.add_argument("--hidden", action="store_true", help="start in the tray, without the window")
    parser.add_argument("--self-test", action="store_true",
                        help="build every page offscreen without an engine, then exit (0: all good)")
    args = parser.parse_args(argv)
    if args.self_test:
        from app.self_test import run_self_test

        return run_self_test()
    try:
        parse_host(args.host or find_host())
    except ValueError as exc:
        print(f"berth-desktop: {exc}", file=sys.stderr)
        return 2
    app = QApplication(sys.argv[:1])
    app.setApplicationName("Berth")
    app.setOrganizationName("Berth")
    app.setQuitOnLastWindowClosed(False)
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)

    async def run() -> None:
        settings = Settings(QSettings())
        desktop = Desktop(args.host or settings.engine_host or None, settings)
        desktop.start(show_window=not args.hidden and settings.open_dashboard)
        if not desktop.tray.icon.isVisible():  # no tray to come back from: closing the window quits
            desktop.window.closed.connect(desktop.quit_requested.set)
        await desktop.quit_requested.wait()
        await desktop.close()

    with loop:
        loop.run_until_complete(run())
    return 0
