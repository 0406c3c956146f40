"""The Troubleshoot page: named checks with their results, berthd's log, a diagnostics bundle, and a reset of
the app's settings to factory defaults. The checks themselves are Qt-free (:mod:`app.diagnostics`)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from PySide6.QtGui import QBrush, QColor, QFontDatabase, QShowEvent
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app import diagnostics
from app.actions import ActionRunner
from app.diagnostics import CheckStatus, Diagnosis
from app.engine_session import EngineSession
from app.formatting import StateColour
from app.settings import Settings
from app.views.table_page import ask

STATUS_COLOURS = {CheckStatus.OK: StateColour.GREEN, CheckStatus.WARN: StateColour.AMBER,
                  CheckStatus.FAIL: StateColour.RED}
RESET_QUESTION = ("Reset Berth's settings to factory defaults? The engine and its containers, images and volumes "
                  "are not touched.")


def _choose_bundle_path(parent: QWidget) -> Path | None:
    suggested = str(Path.home() / "berth-diagnostics.zip")
    path, _ = QFileDialog.getSaveFileName(parent, "Export diagnostics bundle", suggested, "Zip archives (*.zip)")
    return Path(path) if path else None


class TroubleshootPage(QWidget):
    """``results`` lists the checks (name, status, detail with the hint below it); ``log`` shows berthd's log;
    ``message`` says what the last export or reset did. ``confirm(question)`` and ``choose_path()`` are
    replaceable (tests)."""

    def __init__(self, session: EngineSession, runner: ActionRunner, settings: Settings,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session, self.runner, self.settings = session, runner, settings
        self.confirm: Callable[[str], bool] = lambda question: ask(self, question)
        self.choose_path: Callable[[], Path | None] = lambda: _choose_bundle_path(self)
        self.diagnosis: Diagnosis | None = None
        self.results = QTreeWidget()
        self.results.setHeaderLabels(["Check", "Status", "Result"])
        self.results.setRootIsDecorated(False)
        self.results.setWordWrap(True)
        for column in range(2):
            self.results.header().setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        self.log_source = QLabel()
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.log.setMaximumBlockCount(5000)
        self.message = QLabel()
        self.message.setWordWrap(True)
        buttons = QHBoxLayout()
        self.buttons: dict[str, QPushButton] = {}
        for text, tooltip, slot in (
            ("Run checks", "Check the engine and this computer", self.run_checks),
            ("Reload log", "Read berthd's log again", self.reload_log),
            ("Export diagnostics bundle…", "Save the checks, engine facts, settings and log in a zip", self.export),
            ("Reset to factory defaults…", "Clear Berth's settings (never the engine's data)", self.reset),
        ):
            button = QPushButton(text)
            button.setToolTip(tooltip)
            button.clicked.connect(slot)
            buttons.addWidget(button)
            self.buttons[text] = button
        buttons.addStretch(1)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("<b>Troubleshoot</b>"))
        layout.addLayout(buttons)
        layout.addWidget(self.message)
        layout.addWidget(self.results, 1)
        layout.addWidget(self.log_source)
        layout.addWidget(self.log, 2)
        self._shown = False

    def run_checks(self) -> asyncio.Task[None]:
        """Run every check and show the results (and the log again)."""
        return self.runner.run("Run checks", self._run_checks(), [self.buttons["Run checks"]])

    def reload_log(self) -> asyncio.Task[None]:
        """Read berthd's log again."""
        return self.runner.run("Read the engine's log", self._load_log(), [self.buttons["Reload log"]])

    def export(self) -> asyncio.Task[None] | None:
        """Ask where, then run the checks and write the diagnostics bundle there."""
        path = self.choose_path()
        if path is None:
            return None
        return self.runner.run("Export diagnostics", self._export(path), [self.buttons["Export diagnostics bundle…"]])

    def reset(self) -> bool:
        """Clear the app's settings after confirmation; returns whether it did. The engine is not touched."""
        if not self.confirm(RESET_QUESTION):
            return False
        count = self.settings.reset()
        self.message.setText(f"Reset to factory defaults: cleared {count} stored settings. The engine and its "
                             "containers, images and volumes were not touched.")
        return True

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        if not self._shown:
            self._shown = True
            self.run_checks()

    async def _run_checks(self) -> None:
        self.diagnosis = await diagnostics.run_checks(self.session.client)
        self.results.clear()
        for result in self.diagnosis.results:
            found = f"{result.detail}\nWhat to do: {result.hint}" if result.hint else result.detail
            item = QTreeWidgetItem([result.name, result.status.value, found])
            item.setForeground(1, QBrush(QColor(STATUS_COLOURS[result.status].value)))
            item.setToolTip(2, found)
            self.results.addTopLevelItem(item)
        await self._load_log()

    async def _load_log(self) -> None:
        log = await diagnostics.daemon_log()
        self.log_source.setText(f"Engine log: {log.source}" if log.source else "Engine log")
        self.log.setPlainText(log.text)

    async def _export(self, path: Path) -> None:
        diagnosis = await diagnostics.run_checks(self.session.client)
        log = await diagnostics.daemon_log()
        names = diagnostics.write_bundle(path, diagnosis, self.settings.exported(), log)  # small: no thread needed
        self.message.setText(f"Wrote {path} ({', '.join(names)})")
