"""The tray icon: engine state in the icon, a menu rebuilt each time it opens, notifications.

The menu lists the running containers (each: Open in browser, Logs, Restart, Stop) and the Compose projects
(Restart, Stop), the contexts (the current one checked; choosing one switches to it), the Berth machine
(app/tray_machine.py) when one exists, then Open Dashboard,
Start/Stop/Restart Engine, Quit. It reads the live containers model,
so opening it costs no request. Notifications: a container died unexpectedly (non-zero exit without a
kill before it), was OOM-killed, or turned unhealthy.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from functools import partial
from typing import Any

from PySide6.QtCore import QObject, QUrl
from PySide6.QtGui import QColor, QDesktopServices, QIcon, QPainter, QPixmap
from PySide6.QtWidgets import QMenu, QSystemTrayIcon

from app import formatting
from app.actions import ActionRunner
from app.engine_control import EngineCommand, control_engine
from app.engine_session import EngineSession, EngineState
from app.live import LiveData
from app.machines import MachineMonitor
from app.models.containers import ContainerRow
from app.tray_machine import add_machine_menu
from app.widgets.context_switcher import available_contexts, switch_context
from backend.api.types import Event

ICON_COLOURS = {EngineState.RUNNING: "#2f7ed8", EngineState.STARTING: "#d99a00", EngineState.STOPPED: "#b0b4ba",
                EngineState.ERROR: "#d23c3c"}


def state_icon(state: EngineState) -> QIcon:
    """A round icon: accent when running, dimmed when stopped, amber starting, red in error."""
    pixmap = QPixmap(32, 32)
    pixmap.fill(QColor(0, 0, 0, 0))
    painter = QPainter(pixmap)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setBrush(QColor(ICON_COLOURS[state]))
    painter.setPen(QColor(0, 0, 0, 0))
    painter.drawEllipse(3, 3, 26, 26)
    painter.end()
    return QIcon(pixmap)


class Tray(QObject):
    """Owns the QSystemTrayIcon and its menu. ``open_dashboard``, ``open_logs(row)`` and ``quit`` are the
    application's callbacks."""

    def __init__(self, session: EngineSession, live: LiveData, runner: ActionRunner, *,
                 open_dashboard: Callable[[], None], open_logs: Callable[[ContainerRow], object],
                 quit: Callable[[], None], notify: bool = True, machines: MachineMonitor | None = None,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.session, self.live, self.runner, self.machines = session, live, runner, machines
        self._open_dashboard, self._open_logs, self._quit = open_dashboard, open_logs, quit
        self.show_notifications = notify
        self.notifications: list[tuple[str, str]] = []  # (title, text), newest last
        self._killed: set[str] = set()
        self.menu = QMenu()
        self.menu.aboutToShow.connect(self.rebuild_menu)
        self.icon = QSystemTrayIcon(state_icon(session.state))
        self.icon.setContextMenu(self.menu)
        self.icon.setToolTip(f"Berth: {session.message}")
        self.icon.activated.connect(lambda reason: open_dashboard()
                                    if reason == QSystemTrayIcon.ActivationReason.Trigger else None)
        session.state_changed.connect(self._state_changed)
        session.engine_event.connect(self._on_event)
        self.rebuild_menu()

    def show(self) -> None:
        """Show the icon where the platform has a tray."""
        if QSystemTrayIcon.isSystemTrayAvailable():
            self.icon.show()

    def rebuild_menu(self) -> None:
        """Rebuild the menu from the current state and containers."""
        menu, client = self.menu, self.session.client
        menu.clear()
        header = menu.addAction(f"● Berth is {self.session.state.value}")
        header.setEnabled(False)
        menu.addSeparator()
        running = [row for row in self.live.containers.containers() if row.running]
        containers = menu.addMenu(f"Containers ({len(running)} running)")
        containers.setEnabled(bool(running))
        for row in sorted(running, key=lambda r: r.name):
            sub = containers.addMenu(row.name)
            port = formatting.first_http_port(list(row.ports))
            if port is not None:
                url = f"http://localhost:{port}"
                sub.addAction(f"Open {url}", partial(QDesktopServices.openUrl, QUrl(url)))
            sub.addAction("Logs", partial(self._open_logs, row))
            sub.addAction("Restart", partial(self._each, f"Restart {row.name}", client.restart_container, [row.id]))
            sub.addAction("Stop", partial(self._each, f"Stop {row.name}", client.stop_container, [row.id]))
        projects = self.live.containers.projects()
        if projects:
            compose = menu.addMenu("Compose projects")
            for group in projects:
                sub = compose.addMenu(f"{group.name} ({group.running}/{len(group.children)})")
                ids = [c.id for c in group.children]
                sub.addAction("Restart", partial(self._each, f"Restart {group.name}", client.restart_container, ids))
                sub.addAction("Stop", partial(self._each, f"Stop {group.name}", client.stop_container, ids))
        contexts, current = available_contexts()
        switcher = menu.addMenu(f"Context: {current}")
        for context in contexts:
            action = switcher.addAction(context.name, partial(switch_context, self.session, self.runner, context.name))
            action.setCheckable(True)
            action.setChecked(context.name == current)
            action.setToolTip(context.host)
        if self.machines is not None:
            add_machine_menu(menu, self.machines)
        menu.addSeparator()
        menu.addAction("Open Dashboard", self._open_dashboard)
        for command in EngineCommand:
            menu.addAction(f"{command.value.capitalize()} Engine", partial(self._control, command))
        menu.addSeparator()
        menu.addAction("Quit Berth", self._quit)

    def _control(self, command: EngineCommand) -> None:
        self.runner.run(f"{command.value.capitalize()} the engine", control_engine(command))

    def _each(self, label: str, call: Callable[[str], Coroutine[Any, Any, None]], ids: list[str]) -> None:
        async def each() -> None:
            for ident in ids:
                await call(ident)

        self.runner.run(label, each())

    def _state_changed(self, state: EngineState, message: str) -> None:
        self.icon.setIcon(state_icon(state))
        self.icon.setToolTip(f"Berth: {message}")

    def _on_event(self, event: Event) -> None:
        if event.type != "container":
            return
        ident, name = event.actor.id, event.actor.attributes.get("name", event.actor.id[:12])
        if event.action == "kill":
            self._killed.add(ident)
        elif event.action == "oom":
            self._notify("Container killed: out of memory", f"{name} ran out of memory")
        elif event.action == "health_status: unhealthy":
            self._notify("Container unhealthy", f"{name} turned unhealthy")
        elif event.action == "die":
            code = event.actor.attributes.get("exitCode", "0")
            if ident not in self._killed and code != "0":
                self._notify("Container died", f"{name} exited with code {code}")
            self._killed.discard(ident)

    def notify(self, title: str, text: str) -> None:
        """Show a notification (a long pull or build ended); recorded in ``notifications``."""
        self._notify(title, text)

    def _notify(self, title: str, text: str) -> None:
        self.notifications.append((title, text))
        if self.show_notifications and self.icon.isVisible():
            self.icon.showMessage(title, text, QSystemTrayIcon.MessageIcon.Warning)
