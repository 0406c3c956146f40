"""The Containers page: the containers tree with start/stop/restart/pause/resume/delete on the selection.

Selecting a Compose project's group row acts on all its containers. Enter or double-click opens the
container's detail view (``open_detail`` signal). Updates come from events through the model (no polling).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from functools import partial
from typing import Any

from PySide6.QtCore import QModelIndex, Signal
from PySide6.QtWidgets import QPushButton, QWidget

from app.actions import ActionRunner
from app.models.containers import ContainerRow, ContainersModel, ProjectGroup
from app.models.table import ROW_ROLE
from app.views.table_page import TablePage, ask
from backend.api.client import EngineClient


class ContainersPage(TablePage):
    """``open_detail(ContainerRow)`` asks for the detail view. ``confirm`` asks before deleting (replaceable)."""

    open_detail = Signal(object)

    def __init__(self, model: ContainersModel, client: EngineClient, runner: ActionRunner,
                 parent: QWidget | None = None) -> None:
        super().__init__("Containers", model, "No containers yet. Run one with: berth run -d busybox sleep 1d",
                         parent)
        self.containers = model
        self.client = client
        self.runner = runner
        self.confirm: Callable[[str], bool] = lambda question: ask(self, question)
        self.view.setRootIsDecorated(True)
        self.action_buttons: dict[str, QPushButton] = {}
        for verb, tooltip, call in (
            ("Start", "Start the selected containers", client.start_container),
            ("Stop", "Stop the selected containers", client.stop_container),
            ("Restart", "Restart the selected containers", client.restart_container),
            ("Pause", "Pause the selected containers", client.pause_container),
            ("Resume", "Resume the selected paused containers", client.unpause_container),
        ):
            self.action_buttons[verb] = self.add_button(verb, tooltip, partial(self.act, verb, call))
        self.action_buttons["Delete"] = self.add_button("Delete", "Delete the selected containers (Delete)",
                                                        self.delete_selected)
        self.view.activated.connect(self._activated)

    def summary(self) -> str:
        rows = self.model.containers() if isinstance(self.model, ContainersModel) else []
        return f"{sum(1 for r in rows if r.running)} running · {len(rows)} total"

    def selected_containers(self) -> list[ContainerRow]:
        """The selected containers; a selected project stands for all its containers. No duplicates."""
        chosen: dict[str, ContainerRow] = {}
        for node in self.selected_rows():
            for row in node.children if isinstance(node, ProjectGroup) else [node]:
                if isinstance(row, ContainerRow):
                    chosen[row.id] = row
        return list(chosen.values())

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
        targets = self.selected_containers()
        names = ", ".join(r.name for r in targets)
        if targets and self.confirm(f"Delete {names}? Running containers are stopped first."):
            self.act("Delete", lambda ref: self.client.remove_container(ref, force=True), targets)

    def _activated(self, index: QModelIndex) -> None:
        row = index.data(ROW_ROLE)
        if isinstance(row, ContainerRow):
            self.open_detail.emit(row)
