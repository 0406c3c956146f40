"""The Pull dialog: an image reference, then per-layer progress bars from the engine's progress messages."""

from __future__ import annotations

from typing import Any

from PySide6.QtWidgets import (
    QDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.actions import ActionRunner
from backend.api.client import EngineClient


class PullDialog(QDialog):
    """Non-modal. ``start(ref)`` pulls; ``status`` shows the last overall message; each layer has a bar."""

    def __init__(self, client: EngineClient, runner: ActionRunner, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Pull an image — Berth")
        self.resize(560, 360)
        self.client, self.runner = client, runner
        self.reference = QLineEdit()
        self.reference.setPlaceholderText("Image, e.g. busybox:latest or 127.0.0.1:5000/app:1.0")
        self.pull_button = QPushButton("Pull")
        self.pull_button.setDefault(True)
        self.pull_button.clicked.connect(lambda: self.start(self.reference.text().strip()))
        self.layers = QTreeWidget()
        self.layers.setHeaderLabels(["Layer", "Status", "Progress"])
        self.status = QLabel()
        self._bars: dict[str, tuple[QTreeWidgetItem, QProgressBar]] = {}
        top = QHBoxLayout()
        top.addWidget(self.reference, 1)
        top.addWidget(self.pull_button)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.layers)
        layout.addWidget(self.status)

    def start(self, reference: str) -> None:
        """Pull ``reference``; errors go to the banner and to ``status``."""
        if not reference:
            self.status.setText("Type an image reference first")
            return
        self.reference.setText(reference)
        self.layers.clear()
        self._bars.clear()
        self.status.setText(f"Pulling {reference}…")
        self.runner.run(f"Pull {reference}", self._pull(reference), [self.pull_button, self.reference])

    async def _pull(self, reference: str) -> None:
        try:
            async for message in self.client.pull(reference):
                self.show_progress(message)
        except Exception:
            self.status.setText(f"Pull of {reference} failed")
            raise
        self.status.setText(f"Pulled {reference}")

    def show_progress(self, message: dict[str, Any]) -> None:
        """Apply one progress message (Docker's: id, status, progressDetail current/total)."""
        layer, status = str(message.get("id") or ""), str(message.get("status") or "")
        if not layer or status.startswith(("Pulling from", "Digest:", "Status:")):
            self.status.setText(status)
            return
        if layer not in self._bars:
            item = QTreeWidgetItem(self.layers, [layer[:12], status])
            bar = QProgressBar()
            bar.setRange(0, 0 if status in ("Downloading", "Extracting") else 1)
            self.layers.setItemWidget(item, 2, bar)
            self._bars[layer] = (item, bar)
        item, bar = self._bars[layer]
        item.setText(1, status)
        detail = message.get("progressDetail")
        if isinstance(detail, dict) and detail.get("total"):
            bar.setRange(0, int(detail["total"]))
            bar.setValue(int(detail.get("current") or 0))
        elif status in ("Pull complete", "Already exists", "Download complete"):
            bar.setRange(0, 1)
            bar.setValue(1)
