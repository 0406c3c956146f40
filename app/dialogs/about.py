"""The About dialog: the app's version and build, the engine's version, API version and default runtime, the
platform, Qt, PySide and Python; Copy puts the same facts on the clipboard as text.

The app's facts show at once; the engine's load from ``/version`` and ``/info`` when the dialog opens, and an
engine that does not answer is said in the dialog ("not reachable: ...") rather than in the banner.
"""

from __future__ import annotations

import asyncio
import platform
from dataclasses import dataclass

import PySide6
from PySide6.QtCore import Qt, qVersion
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QFormLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from app.actions import ActionRunner
from app.formatting import describe_error
from backend.api.client import EngineClient
from backend.api.errors import APIError
from backend.api.types import SystemInfo, Version
from backend.version import VERSION, build_stamp, platform_name


@dataclass(frozen=True)
class Fact:
    """One line of the dialog: ``label: value``."""

    label: str
    value: str


def app_facts() -> list[Fact]:
    """What this app is and runs on (no engine needed)."""
    stamp = build_stamp()
    return [Fact("Berth", f"{VERSION} (build {stamp})" if stamp else f"{VERSION} (from source)"),
            Fact("Platform", platform_name()), Fact("Qt", qVersion()), Fact("PySide", PySide6.__version__),
            Fact("Python", platform.python_version())]


def engine_facts(version: Version, info: SystemInfo, client_api: str | None) -> list[Fact]:
    """The engine's version, API versions (the engine's range and the one this app speaks), default runtime
    and platform."""
    api = version.api_version
    if version.min_api_version:
        api += f" (minimum {version.min_api_version})"
    return [Fact("Engine", version.version), Fact("Engine API", api), Fact("App API", client_api or "not negotiated"),
            Fact("Default runtime", str(info.raw.get("DefaultRuntime") or "unknown")),
            Fact("Engine platform", f"{version.os}/{version.arch} (kernel {version.kernel_version})")]


def as_text(facts: list[Fact]) -> str:
    """``Label: value`` lines, one per fact, ending with a newline."""
    return "".join(f"{fact.label}: {fact.value}\n" for fact in facts)


class AboutDialog(QDialog):
    """Shows :func:`app_facts` and, once loaded, the engine's facts; ``facts`` is what Copy copies. ``task``
    is the engine load (tests await it)."""

    def __init__(self, client: EngineClient, runner: ActionRunner, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("About Berth")
        self.client = client
        self.facts = app_facts()
        self.form = QFormLayout()
        heading = QLabel("<h2>Berth</h2>A Docker-compatible container engine and its desktop app.")
        copy = QPushButton("Copy")
        copy.setToolTip("Copy these facts as text (for a bug report)")
        copy.clicked.connect(self.copy)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.addButton(copy, QDialogButtonBox.ButtonRole.ActionRole)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(heading)
        layout.addLayout(self.form)
        layout.addWidget(buttons)
        self._show([*self.facts, Fact("Engine", "asking…")])
        self.task: asyncio.Task[None] = runner.run("About: engine facts", self._load())

    def _show(self, facts: list[Fact]) -> None:
        while self.form.rowCount():
            self.form.removeRow(0)
        for fact in facts:
            value = QLabel(fact.value)
            value.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            self.form.addRow(f"{fact.label}:", value)

    async def _load(self) -> None:
        try:
            version, info = await asyncio.gather(self.client.version(), self.client.info())
        except APIError as exc:
            more = [Fact("Engine", f"not reachable: {describe_error(exc)}")]
        else:
            more = engine_facts(version, info, self.client.api_version)
        self.facts = [*app_facts(), *more]
        self._show(self.facts)

    def text(self) -> str:
        """The facts as text (what Copy copies)."""
        return as_text(self.facts)

    def copy(self) -> None:
        """Put :meth:`text` on the clipboard."""
        QGuiApplication.clipboard().setText(self.text())
