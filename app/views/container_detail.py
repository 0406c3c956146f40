"""A container's detail window: a header (name, image, state in its colour, uptime, ports as links, and
Start/Stop/Restart/Delete) over the tabs Logs, Inspect and Stats.

The window follows its container through the session's events: a state change re-inspects it (coalesced),
which refreshes the header, the Inspect tree, the Stats stream and a follow that ended. Streams run while
the window is shown; closing it stops them and deletes the window.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from PySide6.QtCore import Qt, QUrl
from PySide6.QtGui import QCloseEvent, QDesktopServices, QShowEvent
from PySide6.QtWidgets import QHBoxLayout, QLabel, QMessageBox, QPushButton, QTabWidget, QVBoxLayout, QWidget
from shiboken6 import isValid

from app import formatting
from app.actions import ActionRunner
from app.engine_session import EngineSession
from app.live import Reloader
from app.models.containers import ContainerRow
from app.views.exec_tab import ExecTab
from app.views.files_tab import FilesTab
from app.views.stats_tab import StatsTab
from app.widgets.json_tree import JsonTree
from app.widgets.log_view import LogView
from backend.api.types import ContainerInspect, Event, Port

# Container events after which the window re-inspects its container.
STATE_ACTIONS = frozenset({"start", "die", "stop", "kill", "pause", "unpause", "restart", "rename", "update", "oom",
                           "create"})


def inspect_ports(network_settings: dict[str, Any]) -> list[Port]:
    """The published ports of an inspect document's ``NetworkSettings.Ports`` (``{"80/tcp": [{"HostIp",
    "HostPort"}]}``); unpublished and malformed entries are left out."""
    ports = []
    for spec, bindings in (network_settings.get("Ports") or {}).items():
        number, _, kind = str(spec).partition("/")
        for binding in bindings if isinstance(bindings, list) else []:
            host_port = str(binding.get("HostPort", "")) if isinstance(binding, dict) else ""
            if number.isdigit() and host_port.isdigit():
                ports.append(Port(int(number), kind or "tcp", str(binding.get("HostIp", "")), int(host_port)))
    return ports


def port_links(ports: list[Port]) -> str:
    """Rich text with each published TCP port as a link to http://localhost:PORT (``8080→80``)."""
    links = []
    for chip in formatting.port_chips(ports):
        public = chip.partition("→")[0]
        links.append(chip if "/" in chip else f'<a href="http://localhost:{public}">{chip}</a>')
    return " ".join(links)


def status_line(state: dict[str, Any]) -> str:
    """An inspect document's ``State`` as the list's status line (``Up (healthy)``, ``Exited (3)``) so the
    list's wording and colours apply."""
    status = str(state.get("Status", ""))
    if status == "running":
        health = (state.get("Health") or {}).get("Status") if isinstance(state.get("Health"), dict) else None
        return f"Up ({health})" if health and health != "none" else "Up"
    if status == "exited":
        return f"Exited ({state.get('ExitCode', 0)})"
    return status.capitalize()


class ContainerDetail(QWidget):
    """Opens on ``row``; ``confirm`` asks before deleting (replaceable). Actions go through ``runner``, so
    their errors reach the main window's banner."""

    def __init__(self, session: EngineSession, runner: ActionRunner, row: ContainerRow,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        client = session.client
        self.client, self.runner, self.row = client, runner, row
        self.container_id, self.name = row.id, row.name
        self.running = row.running
        self._started_at: str | None = None  # the State.StartedAt last seen
        self.deleted = False
        self.confirm: Callable[[str], bool] = lambda question: (
            QMessageBox.question(self, "Berth", question) == QMessageBox.StandardButton.Yes)
        self.resize(960, 640)
        self.title = QLabel()
        self.title.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.state = QLabel()
        self.ports = QLabel()
        self.ports.setToolTip("Open a published port in the browser")
        self.ports.linkActivated.connect(lambda link: QDesktopServices.openUrl(QUrl(link)))
        header = QHBoxLayout()
        header.addWidget(self.title)
        header.addWidget(self.state)
        header.addWidget(self.ports)
        header.addStretch(1)
        self.buttons: dict[str, QPushButton] = {}
        for verb, tip, slot in (("Start", "Start the container", self._start),
                                ("Stop", "Stop the container", self._stop),
                                ("Restart", "Restart the container", self._restart),
                                ("Delete", "Delete the container (a running one is stopped first)", self._delete)):
            button = QPushButton(verb)
            button.setToolTip(tip)
            button.clicked.connect(slot)
            header.addWidget(button)
            self.buttons[verb] = button
        self.logs = LogView(client, row.id)
        self.inspect = JsonTree()
        self.stats = StatsTab(client, row.id)
        self.exec_tab = ExecTab(client, row.id)
        self.tabs = QTabWidget()
        self.tabs.addTab(self.logs, "Logs")
        self.tabs.addTab(self.exec_tab, "Exec")
        self.tabs.addTab(self.inspect, "Inspect")
        self.tabs.addTab(self.stats, "Stats")
        self.tabs.addTab(FilesTab(client, row.id), "Files")
        layout = QVBoxLayout(self)
        layout.addLayout(header)
        layout.addWidget(self.tabs)
        self._reloader = Reloader(self._load, runner.failed.emit)
        self._show_header(row.name, row.image, row.state, row.status, "", list(row.ports))
        self.stats.set_running(row.running)
        session.engine_event.connect(self.on_event)

    def refresh(self) -> None:
        """Re-inspect the container soon (coalesced with refreshes under way)."""
        if not self.deleted:
            self._reloader.request()

    async def settle(self) -> None:
        """Wait until no refresh is under way (tests)."""
        await self._reloader.wait()

    def on_event(self, event: Event) -> None:
        """An engine event: refresh on this container's state changes; show it deleted on ``destroy``."""
        if event.type != "container" or event.actor.id != self.container_id or not self.isVisible():
            return
        if event.action == "destroy":
            self._gone()
        elif event.action in STATE_ACTIONS or event.action.startswith("health_status"):
            self.refresh()

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        if not self.logs.streaming and not self.deleted:
            self.logs.restart()
        self.refresh()

    def closeEvent(self, event: QCloseEvent) -> None:
        self.logs.stop()
        self.stats.stop()
        self.exec_tab.stop()
        super().closeEvent(event)

    async def _load(self) -> None:
        info = await self.client.inspect_container(self.container_id)
        if isValid(self) and not self.deleted:
            self._show(info)

    def _show(self, info: ContainerInspect) -> None:
        state = info.state
        started = str(state.get("StartedAt", ""))
        restarted = self._started_at is not None and started != self._started_at
        self._started_at = started
        self.running = state.get("Status") == "running"
        self._show_header(info.name.lstrip("/"), str(info.config.get("Image", "")), str(state.get("Status", "")),
                          status_line(state), formatting.uptime(started) if self.running else "",
                          inspect_ports(info.network_settings))
        self.inspect.set_document(info.raw)
        if restarted:
            self.stats.stop()  # fresh charts for the new run
        self.stats.set_running(self.running)
        if self.running and self.logs.follow.isChecked() and (restarted or not self.logs.streaming):
            self.logs.restart()  # the container (re)started: follow its new output

    def _show_header(self, name: str, image: str, state: str, status: str, uptime: str, ports: list[Port]) -> None:
        self.name = name
        self.setWindowTitle(f"{name} — Berth")
        self.title.setText(f"<b>{name}</b> &nbsp; <span style='color: #8a8f98'>{image}</span>")
        colour = formatting.state_colour(state, status).value
        words = " · ".join(part for part in (formatting.state_words(state, status), uptime) if part)
        self.state.setText(f"<span style='color: {colour}'>●</span> {words}")
        self.ports.setText(port_links(ports))
        self._enable_buttons()

    def _enable_buttons(self) -> None:
        for verb, button in self.buttons.items():
            button.setEnabled(not self.deleted and verb != ("Start" if self.running else "Stop"))

    def _gone(self) -> None:
        self.deleted = True
        self.logs.stop()
        self.stats.set_running(False)
        self.state.setText(f"<span style='color: {formatting.StateColour.GREY.value}'>●</span> deleted")
        self._enable_buttons()

    def _act(self, verb: str, coro: Coroutine[Any, Any, object]) -> None:
        task = self.runner.run(f"{verb} {self.name}", coro, self.buttons.values())
        task.add_done_callback(lambda _: self._enable_buttons() if isValid(self) else None)

    def _start(self) -> None:
        self._act("Start", self.client.start_container(self.container_id))

    def _stop(self) -> None:
        self._act("Stop", self.client.stop_container(self.container_id))

    def _restart(self) -> None:
        self._act("Restart", self.client.restart_container(self.container_id))

    def _delete(self) -> None:
        if not self.confirm(f"Delete {self.name}? A running container is stopped first."):
            return

        async def delete() -> None:
            await self.client.remove_container(self.container_id, force=True)
            if isValid(self):
                self.close()

        self._act("Delete", delete())
