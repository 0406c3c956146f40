"""The Tag dialog: give an image a new ``repository[:tag]``. The engine judges the reference (backend.api has no
reference parser); its error is shown under the field, never a traceback."""

from __future__ import annotations

import asyncio

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QDialog, QHBoxLayout, QLabel, QLineEdit, QPushButton, QVBoxLayout, QWidget

from app.actions import ActionRunner
from app.formatting import describe_error
from backend.api.client import EngineClient
from backend.api.errors import APIError

ERROR_STYLE = "color: #d23c3c;"


def split_reference(reference: str) -> tuple[str, str | None]:
    """``repo[:tag]`` to (repo, tag or None): the tag is what follows the last ``:`` after the last ``/``
    (``127.0.0.1:5000/app`` has no tag)."""
    repo, sep, tag = reference.rpartition(":")
    if not sep or "/" in tag:
        return reference, None
    return repo, tag


class TagDialog(QDialog):
    """Tag ``image``; emits ``tagged(new_reference)`` and closes when the engine accepted it."""

    tagged = Signal(str)

    def __init__(self, client: EngineClient, runner: ActionRunner, image: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(f"Tag {image} — Berth")
        self.resize(480, 120)
        self.client, self.runner, self.image = client, runner, image
        self.task: asyncio.Task[None] | None = None
        self.reference = QLineEdit()
        self.reference.setPlaceholderText("repository[:tag], e.g. 127.0.0.1:5000/team/app:1.0")
        self.error = QLabel()
        self.error.setStyleSheet(ERROR_STYLE)
        self.error.setWordWrap(True)
        self.error.hide()
        self.tag_button = QPushButton("Tag")
        self.tag_button.setDefault(True)
        self.tag_button.clicked.connect(self.tag)
        cancel = QPushButton("Cancel")
        cancel.clicked.connect(self.reject)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(cancel)
        buttons.addWidget(self.tag_button)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel(f"New name for <b>{image}</b>:"))
        layout.addWidget(self.reference)
        layout.addWidget(self.error)
        layout.addLayout(buttons)

    def show_error(self, text: str) -> None:
        """Show ``text`` under the field (empty hides it)."""
        self.error.setText(text)
        self.error.setVisible(bool(text))

    def tag(self) -> None:
        """Tag the image with the typed reference."""
        reference = self.reference.text().strip()
        if not reference or any(c.isspace() for c in reference):
            self.show_error("Type a repository[:tag] without spaces")
            return
        self.show_error("")
        self.task = self.runner.run(f"Tag {self.image} as {reference}", self._tag(reference), [self.tag_button])

    async def _tag(self, reference: str) -> None:
        repo, tag = split_reference(reference)
        try:
            await self.client.tag_image(self.image, repo, tag)
        except APIError as exc:
            self.show_error(describe_error(exc))
            raise
        self.tagged.emit(reference)
        self.accept()
