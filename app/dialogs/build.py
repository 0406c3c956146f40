"""The Build dialog: a folder and a Dockerfile, tags, build args, target, no-cache and pull; then the build's
steps as rows (running, done or CACHED, with their durations) above its output as it arrives.

The context is tarred in a thread, honouring the folder's ``.dockerignore`` (:mod:`backend.api.build_context`),
and sent with ``client.build``. Cancel closes the stream, which stops the build on the engine. Closing the
window lets the build go on in the background. When a build ends the dialog emits ``build_finished(record,
output)``; when it took at least ``notify_after`` seconds (and was not cancelled) also ``long_finished(title,
text)`` for the tray.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from collections.abc import AsyncIterator
from typing import IO, Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor, QFontDatabase, QTextCursor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QDialog,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.actions import ActionRunner
from app.build_history import BuildRecord, BuildRequest, BuildResult, Step, StepState, StepTracker
from app.formatting import describe_error, short_id, strip_ansi
from backend.api import build_context
from backend.api.client import EngineClient

STATE_COLOURS = {StepState.RUNNING: "#2f7ed8", StepState.DONE: "#2e9e44", StepState.CACHED: "#8a8f98",
                 StepState.FAILED: "#d23c3c", StepState.CANCELLED: "#d99a00"}


def write_context(request: BuildRequest, out: IO[bytes]) -> str:
    """Write the context tar of ``request.folder`` to ``out`` (minus what its .dockerignore excludes); returns the
    Dockerfile's name in it. A Dockerfile outside the folder is added under a generated name, as the docker CLI
    does. Raises ValueError for a bad .dockerignore pattern, OSError for unreadable files."""
    return build_context.write_context(request.folder, out, request.dockerfile_path)


async def _chunks(f: IO[bytes]) -> AsyncIterator[bytes]:
    while chunk := await asyncio.to_thread(f.read, 1 << 20):
        yield chunk


class BuildDialog(QDialog):
    """Non-modal. :meth:`set_request` fills the form, :meth:`start` builds what the form says."""

    build_finished = Signal(object, str)  # BuildRecord, the output
    long_finished = Signal(str, str)  # title, text: for a notification

    def __init__(self, client: EngineClient, runner: ActionRunner, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Build an image — Berth")
        self.resize(760, 620)
        self.client, self.runner = client, runner
        self.notify_after = 10.0
        self.tracker = StepTracker()
        self.record: BuildRecord | None = None
        self._task: asyncio.Task[None] | None = None
        self.folder = QLineEdit()
        self.folder.setPlaceholderText("The build context: a folder")
        self.folder.textChanged.connect(self._folder_changed)
        self.dockerfile = QLineEdit()
        self.tags = QLineEdit()
        self.tags.setPlaceholderText("name:tag, more separated by commas")
        self.args = QTableWidget(0, 2)
        self.args.setHorizontalHeaderLabels(["Build arg", "Value"])
        self.args.horizontalHeader().setStretchLastSection(True)
        self.args.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.args.setMaximumHeight(110)
        self.target = QLineEdit()
        self.target.setPlaceholderText("the last stage")
        self.no_cache = QCheckBox("No cache")
        self.no_cache.setToolTip("Run every step again instead of using cached results")
        self.pull = QCheckBox("Pull")
        self.pull.setToolTip("Always pull a newer version of the base images")
        form = QFormLayout()
        form.addRow("Folder", self._with_button(self.folder, "Browse…", self._pick_folder))
        form.addRow("Dockerfile", self._with_button(self.dockerfile, "Browse…", self._pick_dockerfile))
        form.addRow("Tags", self.tags)
        arg_buttons = QHBoxLayout()
        for text, slot in (("Add", self.add_arg), ("Remove", self._remove_args)):
            button = QPushButton(text)
            button.setToolTip(f"{text} a build arg (KEY=VALUE)")
            button.clicked.connect(lambda _=False, s=slot: s())
            arg_buttons.addWidget(button)
        arg_buttons.addStretch(1)
        args = QVBoxLayout()
        args.addWidget(self.args)
        args.addLayout(arg_buttons)
        form.addRow("Build args", args)
        options = QHBoxLayout()
        options.addWidget(self.target, 1)
        options.addWidget(self.no_cache)
        options.addWidget(self.pull)
        form.addRow("Target", options)
        self.form_error = QLabel()
        self.form_error.setStyleSheet("color: #d23c3c;")
        self.form_error.hide()
        self.build_button = QPushButton("Build")
        self.build_button.setDefault(True)
        self.build_button.setToolTip("Build the image")
        self.build_button.clicked.connect(self.start)
        self.cancel_button = QPushButton("Cancel build")
        self.cancel_button.setToolTip("Stop the build")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        buttons = QHBoxLayout()
        buttons.addWidget(self.form_error, 1)
        buttons.addWidget(self.build_button)
        buttons.addWidget(self.cancel_button)
        self.steps = QTreeWidget()
        self.steps.setHeaderLabels(["Step", "Instruction", "State", "Time"])
        self.steps.setRootIsDecorated(False)
        self.steps.setColumnWidth(1, 380)
        self._step_items: dict[int, QTreeWidgetItem] = {}
        self.output = QPlainTextEdit()
        self.output.setReadOnly(True)
        self.output.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.output.setMaximumBlockCount(50_000)
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(self.steps)
        splitter.addWidget(self.output)
        self.error = QLabel()
        self.error.setWordWrap(True)
        self.error.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.error.setStyleSheet("color: #d23c3c; font-weight: bold;")
        self.error.hide()
        self.status = QLabel()
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(splitter, 1)
        layout.addWidget(self.error)
        layout.addWidget(self.status)
        self._inputs: list[QWidget] = [self.folder, self.dockerfile, self.tags, self.args, self.target, self.no_cache,
                                       self.pull, self.build_button]

    @staticmethod
    def _with_button(field: QLineEdit, text: str, slot: Any) -> QHBoxLayout:
        button = QPushButton(text)
        button.setToolTip("Choose with a file dialog")
        button.clicked.connect(lambda: slot())
        row = QHBoxLayout()
        row.addWidget(field, 1)
        row.addWidget(button)
        return row

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    # -- the form ------------------------------------------------------------------------------------

    def set_request(self, request: BuildRequest) -> None:
        """Fill the form with ``request``."""
        self.folder.setText(request.folder)
        self.dockerfile.setText(request.dockerfile)
        self.tags.setText(", ".join(request.tags))
        self.args.setRowCount(0)
        for key, value in request.build_args:
            self.add_arg(key, value)
        self.target.setText(request.target)
        self.no_cache.setChecked(request.no_cache)
        self.pull.setChecked(request.pull)

    def request(self) -> BuildRequest:
        """The form as a request. Raises ValueError with a message for the user."""
        folder = self.folder.text().strip()
        if not folder:
            raise ValueError("Choose the folder to build")
        if not os.path.isdir(folder):
            raise ValueError(f"{folder} is not a folder")
        request = BuildRequest(os.path.abspath(folder), self.dockerfile.text().strip(),
                               tuple(t for t in self.tags.text().replace(",", " ").split() if t),
                               self._build_args(), self.target.text().strip(), self.no_cache.isChecked(),
                               self.pull.isChecked())
        if not os.path.isfile(request.dockerfile_path):
            raise ValueError(f"There is no Dockerfile at {request.dockerfile_path}")
        return request

    def add_arg(self, key: str = "", value: str = "") -> None:
        """Add a build arg row (and edit its name when it is empty)."""
        row = self.args.rowCount()
        self.args.insertRow(row)
        name = QTableWidgetItem(key)
        self.args.setItem(row, 0, name)
        self.args.setItem(row, 1, QTableWidgetItem(value))
        if not key:
            self.args.editItem(name)

    def _remove_args(self) -> None:
        for row in sorted({index.row() for index in self.args.selectedIndexes()}, reverse=True):
            self.args.removeRow(row)

    def _build_args(self) -> tuple[tuple[str, str], ...]:
        pairs: list[tuple[str, str]] = []
        for row in range(self.args.rowCount()):
            key, value = ((item.text() if (item := self.args.item(row, c)) else "") for c in (0, 1))
            if not key.strip() and not value:
                continue
            if not key.strip() or "=" in key:
                raise ValueError(f"Build arg row {row + 1}: give a name without '=' (KEY, then its VALUE)")
            pairs.append((key.strip(), value))
        return tuple(pairs)

    def _folder_changed(self, folder: str) -> None:
        self.dockerfile.setPlaceholderText(os.path.join(folder.strip() or "<folder>", "Dockerfile"))

    def _pick_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "The folder to build", self.folder.text())
        if folder:
            self.folder.setText(folder)

    def _pick_dockerfile(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "The Dockerfile", self.folder.text())
        if path:
            self.dockerfile.setText(path)

    # -- the build -----------------------------------------------------------------------------------

    def start(self) -> None:
        """Build what the form says; a form error is shown next to the buttons instead."""
        try:
            request = self.request()
        except ValueError as exc:
            self.form_error.setText(str(exc))
            self.form_error.show()
            return
        self.form_error.hide()
        self.error.hide()
        self.steps.clear()
        self._step_items.clear()
        self.output.clear()
        self.tracker = StepTracker()
        self.record = None
        self.status.setText(f"Building {request.title}…")
        self.cancel_button.setEnabled(True)
        self._task = self.runner.run(f"Build {request.title}", self._build(request), self._inputs)

    def cancel(self) -> None:
        """Stop the running build (the stream is closed, the engine stops building)."""
        if self._task is not None:
            self._task.cancel()

    async def _build(self, request: BuildRequest) -> None:
        started, clock = time.time(), time.monotonic()
        result, message, image_id = BuildResult.FAILED, "", ""
        try:
            with tempfile.SpooledTemporaryFile(max_size=64 << 20) as spool:
                self.status.setText("Sending the build context…")
                dockerfile = await asyncio.to_thread(write_context, request, spool)
                spool.seek(0)
                async for item in self.client.build(
                        _chunks(spool), tags=request.tags, dockerfile=dockerfile, build_args=dict(request.build_args),
                        target=request.target or None, nocache=request.no_cache, pull=request.pull):
                    image_id = self._show(item) or image_id
            result = BuildResult.SUCCEEDED
        except asyncio.CancelledError:
            result = BuildResult.CANCELLED
            raise
        except Exception as exc:  # the runner reports it; the record keeps it in one line
            message = describe_error(exc)
            raise
        finally:
            self._finish(request, started, time.monotonic() - clock, result, message, image_id)

    def _show(self, message: dict[str, Any]) -> str:
        """Show one build message; returns the image ID when it carries one."""
        text = message.get("stream")
        if isinstance(text, str):
            text = strip_ansi(text)
            self._append(text)
            for step in self.tracker.feed(text):
                self._show_step(step)
        elif message.get("status"):
            layer = message.get("id")
            if not message.get("progressDetail"):
                self._append(f"{layer}: {message['status']}\n" if layer else f"{message['status']}\n")
        aux = message.get("aux")
        return str(aux["ID"]) if isinstance(aux, dict) and isinstance(aux.get("ID"), str) else ""

    def _show_step(self, step: Step) -> None:
        item = self._step_items.get(step.number)
        if item is None:
            item = self._step_items[step.number] = QTreeWidgetItem(self.steps, [f"{step.number}/{step.total}",
                                                                                 step.instruction])
        item.setText(2, step.state.value)
        item.setForeground(2, QColor(STATE_COLOURS[step.state]))
        item.setText(3, "" if step.duration is None else f"{step.duration:.1f} s")
        self.steps.scrollToItem(item)

    def _append(self, text: str) -> None:
        cursor = self.output.textCursor()
        cursor.movePosition(QTextCursor.MoveOperation.End)
        cursor.insertText(text)
        self.output.verticalScrollBar().setValue(self.output.verticalScrollBar().maximum())

    def _finish(self, request: BuildRequest, started: float, duration: float, result: BuildResult, message: str,
                image_id: str) -> None:
        state = {BuildResult.SUCCEEDED: StepState.DONE, BuildResult.FAILED: StepState.FAILED,
                 BuildResult.CANCELLED: StepState.CANCELLED}[result]
        if (step := self.tracker.finish(state)) is not None:
            self._show_step(step)
        total = self.tracker.total or len(self.tracker.steps)
        self.record = BuildRecord(request, started, duration, result, message, self.tracker.cached, total, image_id)
        if result is BuildResult.FAILED:
            self.error.setText(f"Error: {message}")
            self.error.show()
            self._append(f"ERROR: {message}\n")
        words = {BuildResult.SUCCEEDED: f"Built {request.title}" + (f" ({short_id(image_id)})" if image_id else ""),
                 BuildResult.FAILED: f"Build of {request.title} failed",
                 BuildResult.CANCELLED: f"Build of {request.title} cancelled"}[result]
        self.status.setText(f"{words} in {duration:.1f} s · {self.tracker.cached}/{total} steps cached")
        self.cancel_button.setEnabled(False)
        self.build_finished.emit(self.record, self.output.toPlainText())
        if result is not BuildResult.CANCELLED and duration >= self.notify_after:
            self.long_finished.emit("Build finished" if result is BuildResult.SUCCEEDED else "Build failed",
                                    words + (f": {message}" if message else ""))
