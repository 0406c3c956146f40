"""The Containers page: the containers tree with actions on the selection, a context menu, port chips that open
the browser, a state filter, and live CPU and memory of the running containers.

Selecting a Compose project's group row acts on all its containers; a project's context menu has project-wide
Start, Stop, Restart and Delete (stop, then remove every member, as ``compose down`` without networks). Enter or
double-click opens the container's detail view (``open_detail`` signal). The table follows events through the
model; only CPU and memory are sampled (:class:`UsagePoller`), and only while the page is visible.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from functools import partial
from typing import Any

from PySide6.QtCore import QAbstractItemModel, QEvent, QModelIndex, QPoint, QRect, Qt, QUrl, Signal
from PySide6.QtGui import (
    QDesktopServices,
    QFontMetrics,
    QGuiApplication,
    QHideEvent,
    QMouseEvent,
    QPainter,
    QPalette,
    QShowEvent,
)
from PySide6.QtWidgets import (
    QApplication,
    QComboBox,
    QMenu,
    QPushButton,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QWidget,
)

from app.actions import ActionRunner
from app.models.containers import (
    PORTS,
    PORTS_ROLE,
    ContainerRow,
    ContainersModel,
    ProjectGroup,
    Usage,
    port_chips,
)
from app.models.table import ROW_ROLE, Index
from app.views.table_page import TablePage
from app.views.table_page import ask as ask  # re-exported: other pages import it from here
from backend.api.client import EngineClient
from backend.api.errors import APIError

ACTIVE_STATES = ("running", "paused", "restarting")
STATE_FILTERS: dict[str, Callable[[object], bool] | None] = {
    "All": None,
    "Running": lambda row: isinstance(row, ContainerRow) and row.state in ACTIVE_STATES,
    "Stopped": lambda row: isinstance(row, ContainerRow) and row.state not in ACTIVE_STATES,
}


class UsagePoller:
    """Samples CPU and memory of the model's running containers: one round every ``interval`` seconds (or when
    the previous round ends, if it took longer), at most ``concurrency`` requests at a time.

    Each one-shot ``GET /containers/{id}/stats?stream=0`` takes about a second on the engine (CPU % needs two
    readings), so a round of M containers costs M requests over about M/concurrency seconds: the load is
    bounded whatever the number of containers, unlike one open stream per container."""

    def __init__(self, client: EngineClient, model: ContainersModel, *, interval: float = 2.0,
                 concurrency: int = 4) -> None:
        self.client, self.model = client, model
        self.interval, self.concurrency = interval, concurrency
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Start sampling (idempotent)."""
        if not self.running:
            self._task = asyncio.ensure_future(self._run())

    def stop(self) -> None:
        """Stop sampling; a request under way is cancelled."""
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _run(self) -> None:
        limit = asyncio.Semaphore(self.concurrency)
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            await asyncio.gather(*(self._sample(limit, row.id) for row in self.model.containers() if row.running))
            await asyncio.sleep(max(0.2, self.interval - (loop.time() - started)))

    async def _sample(self, limit: asyncio.Semaphore, container_id: str) -> None:
        async with limit:
            with contextlib.suppress(APIError, OSError):  # stopped or removed meanwhile; the engine's state shows
                async for sample in self.client.stats(container_id, stream=False):
                    self.model.set_usage(container_id, Usage(sample.cpu_percent, sample.memory_usage))


class PortChipsDelegate(QStyledItemDelegate):
    """Paints PORTS_ROLE as chips; a click on a TCP chip emits ``port_clicked(host_port)``."""

    port_clicked = Signal(int)
    PADDING, GAP = 6, 4

    def chip_rects(self, rect: QRect, metrics: QFontMetrics, chips: tuple[tuple[str, int], ...]) -> list[QRect]:
        """Where each chip is drawn inside the cell ``rect``."""
        height = min(rect.height() - 2, metrics.height() + 4)
        top = rect.top() + (rect.height() - height) // 2
        left, rects = rect.left() + self.GAP, []
        for text, _port in chips:
            width = metrics.horizontalAdvance(text) + 2 * self.PADDING
            rects.append(QRect(left, top, width, height))
            left += width + self.GAP
        return rects

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: Index) -> None:
        chips = index.data(PORTS_ROLE)
        if not chips:
            super().paint(painter, option, index)
            return
        cell = QStyleOptionViewItem(option)
        self.initStyleOption(cell, index)
        cell.text = ""
        style = cell.widget.style() if cell.widget else QApplication.style()
        style.drawControl(QStyle.ControlElement.CE_ItemViewItem, cell, painter, cell.widget)
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        for (text, port), rect in zip(chips, self.chip_rects(option.rect, option.fontMetrics, chips), strict=True):
            role = QPalette.ColorRole.Link if port else QPalette.ColorRole.PlaceholderText
            painter.setPen(option.palette.color(role))
            painter.drawRoundedRect(rect.adjusted(0, 0, -1, -1), rect.height() / 2, rect.height() / 2)
            painter.drawText(rect, Qt.AlignmentFlag.AlignCenter, text)
        painter.restore()

    def editorEvent(self, event: QEvent, model: QAbstractItemModel, option: QStyleOptionViewItem,
                    index: Index) -> bool:
        if event.type() == QEvent.Type.MouseButtonRelease and isinstance(event, QMouseEvent) \
                and event.button() == Qt.MouseButton.LeftButton:
            chips = index.data(PORTS_ROLE) or ()
            for (_text, port), rect in zip(chips, self.chip_rects(option.rect, option.fontMetrics, chips),
                                           strict=True):
                if port and rect.contains(event.position().toPoint()):
                    self.port_clicked.emit(port)
                    return True
        return super().editorEvent(event, model, option, index)


class ContainersPage(TablePage):
    """``open_detail(ContainerRow)`` asks for the detail view. ``confirm`` asks before deleting and ``open_url``
    opens a link (both replaceable, for tests)."""

    open_detail = Signal(object)

    def __init__(self, model: ContainersModel, client: EngineClient, runner: ActionRunner,
                 parent: QWidget | None = None) -> None:
        super().__init__("Containers", model, "No containers yet. Run one with: berth run -d busybox sleep 1d",
                         parent)
        self.containers = model
        self.client = client
        self.runner = runner
        self.confirm: Callable[[str], bool] = lambda question: ask(self, question)
        self.open_url: Callable[[QUrl], object] = QDesktopServices.openUrl
        self.poller = UsagePoller(client, model)
        self.view.setRootIsDecorated(True)
        self.verbs: dict[str, Callable[[str], Coroutine[Any, Any, None]]] = {
            "Start": client.start_container, "Stop": client.stop_container, "Restart": client.restart_container,
            "Pause": client.pause_container, "Resume": client.unpause_container}
        self.action_buttons: dict[str, QPushButton] = {}
        for verb, tooltip in (("Start", "Start the selected containers"), ("Stop", "Stop the selected containers"),
                              ("Restart", "Restart the selected containers"),
                              ("Pause", "Pause the selected containers"),
                              ("Resume", "Resume the selected paused containers")):
            self.action_buttons[verb] = self.add_button(verb, tooltip, partial(self.act, verb, self.verbs[verb]))
        self.action_buttons["Delete"] = self.add_button("Delete", "Delete the selected containers (Delete)",
                                                        self.delete_selected)
        self.state_filter = QComboBox()
        self.state_filter.addItems(list(STATE_FILTERS))
        self.state_filter.setToolTip("Show all, running or stopped containers")
        self.state_filter.currentTextChanged.connect(lambda text: self.proxy.set_row_filter(STATE_FILTERS[text]))
        self.toolbar.insertWidget(self.toolbar.count() - 1, self.state_filter)
        self.ports = PortChipsDelegate(self.view)
        self.ports.port_clicked.connect(self.open_port)
        self.view.setItemDelegateForColumn(PORTS, self.ports)
        self.view.setMouseTracking(True)
        self.view.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.view.customContextMenuRequested.connect(self._context_menu_requested)
        self.view.activated.connect(self._activated)

    def summary(self) -> str:
        rows = self.model.containers() if isinstance(self.model, ContainersModel) else []  # also during __init__
        return f"{sum(1 for r in rows if r.running)} running · {len(rows)} total"

    def selected_containers(self) -> list[ContainerRow]:
        """The selected containers; a selected project stands for all its containers. No duplicates."""
        return _members(self.selected_rows())

    def act(self, verb: str, call: Callable[[str], Coroutine[Any, Any, None]],
            rows: list[ContainerRow] | None = None) -> None:
        """Run ``call(id)`` for each selected container (or ``rows``) as one action named ``verb``."""
        targets = self.selected_containers() if rows is None else rows
        if not targets:
            return

        async def each() -> None:
            for row in targets:
                await call(row.id)

        self.runner.run(f"{verb} {', '.join(r.name for r in targets)}", each(), self.action_buttons.values())

    def delete_selected(self) -> None:
        """Delete the selected containers (running ones are killed) after confirmation."""
        self.delete(self.selected_containers())

    def delete(self, targets: list[ContainerRow]) -> None:
        """Delete ``targets`` (running ones are killed) after confirmation."""
        names = ", ".join(r.name for r in targets)
        if targets and self.confirm(f"Delete {names}? Running containers are stopped first."):
            self.act("Delete", lambda ref: self.client.remove_container(ref, force=True), targets)

    def delete_project(self, group: ProjectGroup) -> None:
        """After confirmation, stop every member of the project, then remove them all (its networks and volumes
        stay)."""
        members = list(group.children)
        if not self.confirm(f"Delete the project {group.name}? Its {len(members)} containers are stopped and "
                            "removed."):
            return

        async def down() -> None:
            for row in members:
                if row.state in ACTIVE_STATES:
                    await self.client.stop_container(row.id)
            for row in members:
                await self.client.remove_container(row.id, force=True)

        self.runner.run(f"Delete project {group.name}", down(), self.action_buttons.values())

    def open_port(self, port: int) -> None:
        """Open http://localhost:PORT with ``open_url``."""
        self.open_url(QUrl(f"http://localhost:{port}"))

    def context_menu(self, node: object) -> QMenu:
        """The menu for ``node`` (a ContainerRow or ProjectGroup); a container's acts on the whole selection when
        it is part of it."""
        menu = QMenu(self)
        if isinstance(node, ProjectGroup):
            for verb in ("Start", "Stop", "Restart"):
                menu.addAction(f"{verb} project", partial(self.act, verb, self.verbs[verb], list(node.children)))
            menu.addSeparator()
            menu.addAction("Delete project…", partial(self.delete_project, node))
            return menu
        if not isinstance(node, ContainerRow):
            return menu
        selected = self.selected_containers()
        rows = selected if node in selected else [node]
        states = {row.state for row in rows}
        for verb, enabled in (("Start", states - {"running", "paused"}), ("Stop", states & set(ACTIVE_STATES)),
                              ("Restart", states), ("Pause", states & {"running"}), ("Resume", states & {"paused"})):
            menu.addAction(verb, partial(self.act, verb, self.verbs[verb], rows)).setEnabled(bool(enabled))
        menu.addSeparator()
        menu.addAction("Logs", partial(self.open_detail.emit, node))
        for port in (port for _text, port in port_chips(node.ports) if port):
            menu.addAction(f"Open http://localhost:{port}", partial(self.open_port, port))
        menu.addAction("Copy ID", partial(QGuiApplication.clipboard().setText, node.id))
        menu.addSeparator()
        menu.addAction("Delete…", partial(self.delete, rows))
        return menu

    def _context_menu_requested(self, point: QPoint) -> None:
        index = self.view.indexAt(point)
        if index.isValid():
            self.context_menu(index.data(ROW_ROLE)).popup(self.view.viewport().mapToGlobal(point))

    def _activated(self, index: QModelIndex) -> None:
        row = index.data(ROW_ROLE)
        if isinstance(row, ContainerRow):
            self.open_detail.emit(row)

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        self.poller.start()

    def hideEvent(self, event: QHideEvent) -> None:
        super().hideEvent(event)
        self.poller.stop()


def _members(nodes: list[object]) -> list[ContainerRow]:
    chosen: dict[str, ContainerRow] = {}
    for node in nodes:
        for row in node.children if isinstance(node, ProjectGroup) else [node]:
            if isinstance(row, ContainerRow):
                chosen[row.id] = row
    return list(chosen.values())
