"""The Push dialog: push one of an image's tags to its registry, with a progress bar per layer."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from PySide6.QtWidgets import QComboBox, QDialog, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from app.actions import ActionRunner
from app.dialogs.tag import split_reference
from app.formatting import describe_error
from app.widgets.progress_tree import ProgressTree
from backend.api.client import EngineClient
from backend.api.errors import APIError


class PushDialog(QDialog):
    """Non-modal. ``start(reference)`` pushes; ``status`` shows the last overall message; ``task`` the push."""

    def __init__(self, client: EngineClient, runner: ActionRunner, tags: Sequence[str],
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Push an image — Berth")
        self.resize(560, 360)
        self.client, self.runner = client, runner
        self.task: asyncio.Task[None] | None = None
        self.reference = QComboBox()
        self.reference.setEditable(True)
        self.reference.addItems(list(tags))
        self.reference.setToolTip("The tag to push; its registry is the part before the first /")
        self.push_button = QPushButton("Push")
        self.push_button.setDefault(True)
        self.push_button.clicked.connect(lambda: self.start(self.reference.currentText().strip()))
        self.layers = ProgressTree()
        self.status = QLabel()
        self.status.setWordWrap(True)
        top = QHBoxLayout()
        top.addWidget(self.reference, 1)
        top.addWidget(self.push_button)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.layers)
        layout.addWidget(self.status)

    def start(self, reference: str) -> None:
        """Push ``reference`` (``repo:tag``); errors go to the banner and to ``status``."""
        if not reference:
            self.status.setText("Tag the image first (Tag…), e.g. as 127.0.0.1:5000/team/app:1.0")
            return
        self.reference.setCurrentText(reference)
        self.layers.clear_layers()
        self.status.setText(f"Pushing {reference}…")
        self.task = self.runner.run(f"Push {reference}", self._push(reference), [self.push_button, self.reference])

    async def _push(self, reference: str) -> None:
        repo, tag = split_reference(reference)
        try:
            async for message in self.client.push(repo, tag=tag or "latest"):
                overall = self.layers.show_progress(message)
                if overall:
                    self.status.setText(overall)
        except APIError as exc:
            self.status.setText(f"Push of {reference} failed: {describe_error(exc)}")
            raise
        self.status.setText(f"Pushed {reference}")
