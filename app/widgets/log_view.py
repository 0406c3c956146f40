"""A container's log: monospace, follows live output, with follow, timestamps and clear controls."""

from __future__ import annotations

import asyncio
import contextlib

from PySide6.QtGui import QFontDatabase, QTextCursor
from PySide6.QtWidgets import QCheckBox, QHBoxLayout, QPlainTextEdit, QPushButton, QVBoxLayout, QWidget

from app.formatting import describe_error, strip_ansi
from backend.api.client import EngineClient
from backend.api.errors import APIError


class LogView(QWidget):
    """Streams ``GET /containers/{id}/logs`` into a read-only text view while shown.

    Follow on: the stream stays open and new output is appended (and scrolled to); off: the log so far.
    A tty container's log is raw (not framed); inspect tells which. Toggling follow or timestamps restarts
    the stream. Errors end up in the view as one line."""

    def __init__(self, client: EngineClient, container_id: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._client, self._container_id = client, container_id
        self._tty: bool | None = None  # learnt from inspect on the first stream
        self.text = QPlainTextEdit()
        self.text.setReadOnly(True)
        self.text.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.text.setMaximumBlockCount(50_000)
        self.follow = QCheckBox("Follow")
        self.follow.setChecked(True)
        self.timestamps = QCheckBox("Timestamps")
        clear = QPushButton("Clear")
        clear.setToolTip("Clear the view (the log itself is kept)")
        clear.clicked.connect(self.text.clear)
        self.follow.toggled.connect(self.restart)
        self.timestamps.toggled.connect(self.restart)
        bar = QHBoxLayout()
        for widget in (self.follow, self.timestamps):
            bar.addWidget(widget)
        bar.addStretch(1)
        bar.addWidget(clear)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(bar)
        layout.addWidget(self.text)
        self._task: asyncio.Task[None] | None = None

    def restart(self) -> None:
        """(Re)start streaming from the beginning of the log."""
        self.stop()
        self.text.clear()
        self._task = asyncio.ensure_future(self._stream())

    def stop(self) -> None:
        """Stop streaming (closes the connection)."""
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _stream(self) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            try:
                if self._tty is None:
                    self._tty = bool((await self._client.inspect_container(self._container_id)).config.get("Tty"))
                async for _, data in self._client.logs(self._container_id, tty=self._tty,
                                                      follow=self.follow.isChecked(),
                                                      timestamps=self.timestamps.isChecked(), tail="5000"):
                    self._append(strip_ansi(data.decode(errors="replace")))
            except (APIError, OSError) as exc:
                self._append(f"\n[{describe_error(exc)}]\n")

    def _append(self, text: str) -> None:
        cursor = self.text.textCursor()
        cursor.movePosition(QTextCursor.MoveOperation.End)
        cursor.insertText(text.replace("\r\n", "\n"))
        self.text.verticalScrollBar().setValue(self.text.verticalScrollBar().maximum())
