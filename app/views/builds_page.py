"""The Builds page: the builds started from the app, newest first (tag, folder, started, duration, result, cached
steps), the stored output of the selected one below the table, and New build…, Rebuild.

The history is :class:`app.build_history.BuildHistory`: its list in QSettings (``builds/history``), each build's
output in a file under the app's data folder (QStandardPaths.AppDataLocation/builds).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSettings, QStandardPaths, Qt, Signal
from PySide6.QtGui import QColor, QFontDatabase
from PySide6.QtWidgets import QPlainTextEdit, QWidget

from app import formatting
from app.actions import ActionRunner
from app.build_history import BuildHistory, BuildRecord, BuildRequest, BuildResult
from app.dialogs.build import BuildDialog
from app.models.table import RowTableModel
from app.views.table_page import TablePage
from backend.api.client import EngineClient

RESULT_COLOURS = {BuildResult.SUCCEEDED: formatting.StateColour.GREEN, BuildResult.FAILED: formatting.StateColour.RED,
                  BuildResult.CANCELLED: formatting.StateColour.GREY}


class SettingsText:
    """A :class:`app.build_history.TextStore` over one QSettings key."""

    def __init__(self, store: QSettings, key: str = "builds/history") -> None:
        self.store, self.key = store, key

    def load(self) -> str:
        value = self.store.value(self.key, "")
        return value if isinstance(value, str) else ""

    def save(self, text: str) -> None:
        self.store.setValue(self.key, text)


def default_history(store: QSettings) -> BuildHistory:
    """The history kept in ``store``, with the outputs under AppDataLocation/builds."""
    data = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.AppDataLocation)
    return BuildHistory(SettingsText(store), Path(data) / "builds")


class BuildsModel(RowTableModel[BuildRecord]):
    """Columns: Tag, Folder, Started, Duration, Result, Cached (cached/total steps)."""

    COLUMNS = ("Tag", "Folder", "Started", "Duration", "Result", "Cached")

    def cell(self, row: BuildRecord, column: int) -> str:
        if column == 0:
            return ", ".join(row.request.tags) or "<none>"
        if column == 1:
            return row.request.folder
        if column == 2:
            return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(row.started))
        if column == 3:
            return f"{row.duration:.1f} s"
        if column == 4:
            return row.outcome
        return f"{row.cached}/{row.steps}"

    def sort_value(self, row: BuildRecord, column: int) -> Any:
        return {2: row.started, 3: row.duration, 5: row.cached}.get(column, self.cell(row, column).lower())

    def decoration(self, row: BuildRecord, column: int) -> Any:
        return QColor(RESULT_COLOURS[row.result].value) if column == 4 else None


class BuildsPage(TablePage):
    """The history table with New build…, Rebuild and Output; emits ``long_finished(title, text)`` when a build
    that took long ends (for the tray). ``dialogs`` are the build dialogs still open or running."""

    long_finished = Signal(str, str)

    def __init__(self, client: EngineClient, runner: ActionRunner, history: BuildHistory,
                 parent: QWidget | None = None) -> None:
        self.builds = BuildsModel()
        super().__init__("Builds", self.builds, "No builds yet. Build an image with New build…", parent)
        self.client, self.runner, self.history = client, runner, history
        self.dialogs: list[BuildDialog] = []
        self.add_button("New build…", "Build an image from a folder with a Dockerfile", self.new_build,
                        needs_selection=False)
        self.add_button("Rebuild", "Build the selected build again", self.rebuild_selected)
        self.output = QPlainTextEdit()
        self.output.setReadOnly(True)
        self.output.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.output.setPlaceholderText("Select a build to see its output")
        layout = self.layout()
        if layout is not None:
            layout.addWidget(self.output)
        self.view.sortByColumn(2, Qt.SortOrder.DescendingOrder)
        self.view.selectionModel().selectionChanged.connect(self._show_output)
        self.reload()

    def reload(self) -> None:
        """Show the stored history."""
        self.builds.set_rows(self.history.records())

    def new_build(self, request: BuildRequest | None = None, *, start: bool = False) -> BuildDialog:
        """Open a Build dialog (filled with ``request``; building at once with ``start``)."""
        for done in [d for d in self.dialogs if not d.running and not d.isVisible()]:
            self.dialogs.remove(done)
            done.deleteLater()
        dialog = BuildDialog(self.client, self.runner, self)
        dialog.build_finished.connect(self._finished)
        dialog.long_finished.connect(self.long_finished)
        self.dialogs.append(dialog)
        if request is not None:
            dialog.set_request(request)
        dialog.show()
        if start:
            dialog.start()
        return dialog

    def rebuild_selected(self) -> BuildDialog | None:
        """Build the selected build's request again; returns its dialog."""
        records = [r for r in self.selected_rows() if isinstance(r, BuildRecord)]
        return self.new_build(records[0].request, start=True) if records else None

    def _finished(self, record: BuildRecord, output: str) -> None:
        try:
            self.history.add(record, output)
        except OSError as exc:
            self.runner.failed.emit(f"Keep the build's output: {formatting.describe_error(exc)}")
        self.reload()

    def _show_output(self) -> None:
        records = [r for r in self.selected_rows() if isinstance(r, BuildRecord)]
        self.output.setPlainText(self.history.output(records[0]) if records else "")
        self.output.verticalScrollBar().setValue(self.output.verticalScrollBar().maximum())
