"""The History dialog: an image's layers, newest first, as ``client.image_history`` gives them."""

from __future__ import annotations

import asyncio

from PySide6.QtWidgets import QDialog, QLabel, QTreeWidget, QTreeWidgetItem, QVBoxLayout, QWidget

from app import formatting
from app.actions import ActionRunner
from app.formatting import describe_error
from backend.api.client import EngineClient
from backend.api.errors import APIError
from backend.api.types import HistoryItem

COLUMNS = ("Layer", "Created", "Created by", "Size", "Comment")


class HistoryDialog(QDialog):
    """Loads the history of ``image`` when built (``task``); one row per history entry."""

    def __init__(self, client: EngineClient, runner: ActionRunner, image: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(f"History of {image} — Berth")
        self.resize(820, 400)
        self.client, self.image = client, image
        self.layers = QTreeWidget()
        self.layers.setHeaderLabels(list(COLUMNS))
        self.layers.setRootIsDecorated(False)
        self.layers.setColumnWidth(2, 420)
        self.status = QLabel(f"Loading the history of {image}…")
        layout = QVBoxLayout(self)
        layout.addWidget(self.layers)
        layout.addWidget(self.status)
        self.task: asyncio.Task[None] = runner.run(f"History of {image}", self._load())

    def show_history(self, items: list[HistoryItem]) -> None:
        """Fill the table with ``items``."""
        self.layers.clear()
        for item in items:
            layer = formatting.short_id(item.id) if item.id.startswith("sha256:") else item.id
            row = QTreeWidgetItem(self.layers, [layer, formatting.age(item.created), item.created_by,
                                                formatting.size(item.size), item.comment])
            row.setToolTip(2, item.created_by)
        total = sum(item.size for item in items)
        self.status.setText(f"{len(items)} entries, {formatting.size(total)}")

    async def _load(self) -> None:
        try:
            items = await self.client.image_history(self.image)
        except APIError as exc:
            self.status.setText(describe_error(exc))
            raise
        self.show_history(items)
