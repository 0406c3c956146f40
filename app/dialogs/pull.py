"""The Pull dialog: a registry search (name, description, stars, official badge; picking one fills the reference),
an image reference, then per-layer progress bars from the engine's progress messages.

A search error (no internet) is one line under the search box; the reference field works regardless. A pull that
took at least ``notify_after`` seconds emits ``long_finished(title, text)`` when it ends, for the tray.
"""

from __future__ import annotations

import time

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor, QFont
from PySide6.QtWidgets import (
    QDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.actions import ActionRunner
from app.formatting import describe_error
from app.widgets.progress_tree import ProgressTree
from backend.api.client import EngineClient
from backend.api.errors import APIError


class PullDialog(QDialog):
    """Non-modal. ``search(term)`` lists registry results; ``start(ref)`` pulls; ``status`` shows the last overall
    message; each layer has a bar."""

    long_finished = Signal(str, str)  # title, text: for a notification

    def __init__(self, client: EngineClient, runner: ActionRunner, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Pull an image — Berth")
        self.resize(560, 360)
        self.client, self.runner = client, runner
        self.notify_after = 10.0
        self.search_box = QLineEdit()
        self.search_box.setPlaceholderText("Search a registry, e.g. nginx or 127.0.0.1:5000/app")
        self.search_box.returnPressed.connect(lambda: self.search(self.search_box.text()))
        self.search_button = QPushButton("Search")
        self.search_button.setToolTip("Search Docker Hub (or the registry named before the first /)")
        self.search_button.clicked.connect(lambda: self.search(self.search_box.text()))
        self.results = QTreeWidget()
        self.results.setHeaderLabels(["Name", "Description", "Stars", ""])
        self.results.setRootIsDecorated(False)
        self.results.setColumnWidth(0, 180)
        self.results.setColumnWidth(1, 240)
        self.results.setToolTip("Pick one to fill the image reference")
        self.results.currentItemChanged.connect(self._picked)
        self.results.hide()
        self.search_status = QLabel()
        self.search_status.hide()
        self.reference = QLineEdit()
        self.reference.setPlaceholderText("Image, e.g. busybox:latest or 127.0.0.1:5000/app:1.0")
        self.pull_button = QPushButton("Pull")
        self.pull_button.setDefault(True)
        self.pull_button.clicked.connect(lambda: self.start(self.reference.text().strip()))
        self.layers = ProgressTree()
        self.status = QLabel()
        search = QHBoxLayout()
        search.addWidget(self.search_box, 1)
        search.addWidget(self.search_button)
        top = QHBoxLayout()
        top.addWidget(self.reference, 1)
        top.addWidget(self.pull_button)
        layout = QVBoxLayout(self)
        layout.addLayout(search)
        layout.addWidget(self.results)
        layout.addWidget(self.search_status)
        layout.addLayout(top)
        layout.addWidget(self.layers)
        layout.addWidget(self.status)

    def search(self, term: str) -> None:
        """Search the registry for ``term``; the results (or one line saying why there are none) replace the last."""
        term = term.strip()
        if not term:
            self._search_said("Type a word to search for")
            return
        self.search_box.setText(term)
        self._search_said(f"Searching {term}…")
        self.runner.run(f"Search {term}", self._search(term), [self.search_button])

    async def _search(self, term: str) -> None:
        try:
            found = await self.client.search_images(term, limit=25)
        except (APIError, OSError) as exc:  # shown here, not in the banner: pulling by name still works
            self.results.clear()
            self.results.hide()
            self._search_said(f"Search failed: {describe_error(exc)}")
            return
        self.results.clear()
        for result in found:
            summary = result.description.splitlines()[0] if result.description else ""
            item = QTreeWidgetItem(self.results, [result.name, summary, str(result.star_count),
                                                  "OFFICIAL" if result.is_official else ""])
            item.setToolTip(1, result.description)
            item.setTextAlignment(2, Qt.AlignmentFlag.AlignRight)
            if result.is_official:
                bold = QFont(item.font(3))
                bold.setBold(True)
                item.setFont(3, bold)
                item.setForeground(3, QColor("#2f7ed8"))
                item.setToolTip(3, "A Docker Official Image")
        self.results.setVisible(bool(found))
        self._search_said("" if found else f"No images found for {term}")

    def _search_said(self, text: str) -> None:
        self.search_status.setText(text)
        self.search_status.setVisible(bool(text))

    def _picked(self, item: QTreeWidgetItem | None) -> None:
        if item is not None:
            self.reference.setText(item.text(0))

    def start(self, reference: str) -> None:
        """Pull ``reference``; errors go to the banner and to ``status``."""
        if not reference:
            self.status.setText("Type an image reference first")
            return
        self.reference.setText(reference)
        self.layers.clear_layers()
        self.status.setText(f"Pulling {reference}…")
        self.runner.run(f"Pull {reference}", self._pull(reference), [self.pull_button, self.reference])

    async def _pull(self, reference: str) -> None:
        started = time.monotonic()
        try:
            async for message in self.client.pull(reference):
                overall = self.layers.show_progress(message)
                if overall is not None:
                    self.status.setText(overall)
        except Exception as exc:
            self.status.setText(f"Pull of {reference} failed")
            if time.monotonic() - started >= self.notify_after:
                self.long_finished.emit("Pull failed", f"Pull of {reference} failed: {describe_error(exc)}")
            raise
        self.status.setText(f"Pulled {reference}")
        if time.monotonic() - started >= self.notify_after:
            self.long_finished.emit("Pull finished", f"Pulled {reference}")
