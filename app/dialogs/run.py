"""The Run dialog: run a container from an image with a name, ports, environment, volumes, command, restart
policy and network; "Copy command" puts the equivalent ``berth run`` line on the clipboard.

The values are checked by :mod:`app.run_form`; a bad value is shown in red under its field and nothing is
sent. Run creates and starts the container through the action runner (engine errors go to the banner and to
the dialog's status line) and emits ``started(id, detach)``; the dialog closes when it went well.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

from PySide6.QtCore import Signal
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from app.actions import ActionRunner
from app.formatting import describe_error
from app.models.networks import NetworksModel
from app.run_form import RESTART_NAMES, FormInvalid, RunForm, VolumeMount, berth_command, run_request
from backend.api.client import EngineClient
from backend.api.errors import APIError

ERROR_STYLE = "color: #d23c3c;"
T = TypeVar("T")


class _Rows(QWidget):
    """Rows of widgets made by ``make_row`` with an "Add" button and a remove button per row."""

    def __init__(self, make_row: Callable[[], list[QWidget]], add_text: str) -> None:
        super().__init__()
        self._make_row = make_row
        self.rows: list[list[QWidget]] = []
        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)
        add = QPushButton(add_text)
        add.clicked.connect(lambda: self.add_row())
        self._layout.addWidget(add)

    def add_row(self) -> list[QWidget]:
        """Append an empty row; returns its widgets."""
        widgets = self._make_row()
        line = QWidget()
        layout = QHBoxLayout(line)
        layout.setContentsMargins(0, 0, 0, 0)
        for widget in widgets:
            layout.addWidget(widget, 1 if isinstance(widget, QLineEdit) else 0)
        remove = QPushButton("✕")
        remove.setToolTip("Remove this row")
        remove.clicked.connect(lambda: self._remove(line, widgets))
        layout.addWidget(remove)
        self._layout.insertWidget(len(self.rows), line)
        self.rows.append(widgets)
        return widgets

    def _remove(self, line: QWidget, widgets: list[QWidget]) -> None:
        self.rows.remove(widgets)
        line.deleteLater()


def _line(placeholder: str) -> QLineEdit:
    edit = QLineEdit()
    edit.setPlaceholderText(placeholder)
    return edit


class RunDialog(QDialog):
    """Run ``image``. ``task`` is the last run's task (tests await it)."""

    started = Signal(str, bool)  # container ID, detach

    def __init__(self, client: EngineClient, runner: ActionRunner, networks: NetworksModel, image: str,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(f"Run {image} — Berth")
        self.resize(620, 520)
        self.client, self.runner = client, runner
        self.task: asyncio.Task[None] | None = None
        self.image = QLineEdit(image)
        self.name = _line("a name (optional), e.g. web")
        self.ports = _Rows(lambda: [_line("host:container[/proto], e.g. 8080:80")], "Add port")
        self.env = _Rows(lambda: [_line("KEY=VALUE")], "Add variable")
        self.volumes = _Rows(self._volume_row, "Add volume")
        self.command = _line("command (optional), e.g. sh -c 'echo hi'")
        self.restart = QComboBox()
        self.restart.addItems(list(RESTART_NAMES))
        self.retries = QSpinBox()
        self.retries.setRange(0, 1000)
        self.retries.setSpecialValueText("no limit")
        self.retries.setToolTip("Maximum restarts after failures (on-failure only)")
        self.restart.currentTextChanged.connect(lambda name: self.retries.setEnabled(name == "on-failure"))
        self.retries.setEnabled(False)
        self.network = QComboBox()
        self.network.addItem("(default)", "")
        for row in networks.rows:
            self.network.addItem(row.name, row.name)
        self.detach = QCheckBox("Run in the background (otherwise its logs open)")
        self.detach.setChecked(True)
        self.errors = {key: QLabel() for key in ("image", "name", "ports", "env", "volumes", "command", "restart",
                                                 "network")}
        restart = QHBoxLayout()
        restart.addWidget(self.restart, 1)
        restart.addWidget(QLabel("retries"))
        restart.addWidget(self.retries)
        form = QFormLayout()
        for label, key, field in (("Image", "image", self.image), ("Name", "name", self.name),
                                  ("Ports", "ports", self.ports), ("Environment", "env", self.env),
                                  ("Volumes", "volumes", self.volumes), ("Command", "command", self.command),
                                  ("Restart", "restart", restart), ("Network", "network", self.network)):
            column = QVBoxLayout()
            if isinstance(field, QHBoxLayout):
                column.addLayout(field)
            else:
                column.addWidget(field)
            error = self.errors[key]
            error.setStyleSheet(ERROR_STYLE)
            error.setWordWrap(True)
            error.hide()
            column.addWidget(error)
            form.addRow(label, column)
        form.addRow("", self.detach)
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.copy_button = QPushButton("Copy command")
        self.copy_button.setToolTip("Copy the equivalent berth run command line")
        self.copy_button.clicked.connect(self.copy_command)
        self.run_button = QPushButton("Run")
        self.run_button.setDefault(True)
        self.run_button.clicked.connect(self.run)
        cancel = QPushButton("Cancel")
        cancel.clicked.connect(self.reject)
        buttons = QHBoxLayout()
        buttons.addWidget(self.copy_button)
        buttons.addStretch(1)
        buttons.addWidget(cancel)
        buttons.addWidget(self.run_button)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.status)
        layout.addLayout(buttons)

    def _volume_row(self) -> list[QWidget]:
        source = _line("host folder or volume name (empty: a new volume)")
        browse = QPushButton("Browse…")
        browse.setToolTip("Choose a host folder")
        browse.clicked.connect(lambda: self._pick_folder(source))
        return [source, browse, QLabel("→"), _line("/path/in/container"), QCheckBox("read-only")]

    def _pick_folder(self, target: QLineEdit) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Host folder to mount", target.text())
        if folder:
            target.setText(folder)

    def form(self) -> RunForm:
        """The values as typed."""
        restart = self.restart.currentText()
        if restart == "on-failure" and self.retries.value():
            restart += f":{self.retries.value()}"
        volumes = []
        for source, _, _, target, read_only in self.volumes.rows:
            assert isinstance(source, QLineEdit) and isinstance(target, QLineEdit)
            assert isinstance(read_only, QCheckBox)
            volumes.append(VolumeMount(source.text().strip(), target.text().strip(), read_only.isChecked()))
        return RunForm(image=self.image.text(), name=self.name.text().strip(),
                       ports=tuple(_texts(self.ports)), env=tuple(_texts(self.env)), volumes=tuple(volumes),
                       command=self.command.text(), restart=restart, network=str(self.network.currentData() or ""),
                       detach=self.detach.isChecked())

    def _checked(self, build: Callable[[RunForm], T]) -> T | None:
        """``build(form)``, with each field's error shown under it (None when there are errors)."""
        try:
            result = build(self.form())
        except FormInvalid as exc:
            problems = exc.errors
        else:
            problems = {}
        for key, label in self.errors.items():
            label.setText(problems.get(key, ""))
            label.setVisible(key in problems)
        self.status.setText("Fix the fields marked in red" if problems else "")
        return None if problems else result

    def copy_command(self) -> None:
        """Copy the equivalent ``berth run`` command to the clipboard (when the form is valid)."""
        command = self._checked(berth_command)
        if command is not None:
            QGuiApplication.clipboard().setText(command)
            self.status.setText("Copied: " + command)

    def run(self) -> None:
        """Create and start the container (when the form is valid)."""
        request = self._checked(run_request)
        if request is None:
            return
        body, name = request
        self.status.setText(f"Starting {name or self.image.text()}…")
        self.task = self.runner.run(f"Run {self.image.text().strip()}",
                                    self._run(body, name, self.detach.isChecked()), [self.run_button])

    async def _run(self, body: dict[str, Any], name: str | None, detach: bool) -> None:
        try:
            created = await self.client.create_container(body, name=name)
            await self.client.start_container(created.id)
        except APIError as exc:
            self.status.setText(describe_error(exc))
            raise
        self.started.emit(created.id, detach)
        self.accept()


def _texts(rows: _Rows) -> list[str]:
    return [widgets[0].text() for widgets in rows.rows if isinstance(widgets[0], QLineEdit)]
