"""The Pull dialog: an image reference, then per-layer progress bars from the engine's progress messages."""

from __future__ import annotations

from PySide6.QtWidgets import QDialog, QHBoxLayout, QLabel, QLineEdit, QPushButton, QVBoxLayout, QWidget

from app.actions import ActionRunner
from app.widgets.progress_tree import ProgressTree
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
        self.layers = ProgressTree()
        self.status = QLabel()
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
        self.layers.clear_layers()
        self.status.setText(f"Pulling {reference}…")
        self.runner.run(f"Pull {reference}", self._pull(reference), [self.pull_button, self.reference])

    async def _pull(self, reference: str) -> None:
        try:
            async for message in self.client.pull(reference):
                overall = self.layers.show_progress(message)
                if overall is not None:
                    self.status.setText(overall)
        except Exception:
            self.status.setText(f"Pull of {reference} failed")
            raise
        self.status.setText(f"Pulled {reference}")
