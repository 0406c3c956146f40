"""A container's detail window: header (name, image, state, ports) and tabs (Logs for now)."""

from __future__ import annotations

from PySide6.QtGui import QCloseEvent
from PySide6.QtWidgets import QLabel, QTabWidget, QVBoxLayout, QWidget

from app import formatting
from app.models.containers import ContainerRow
from app.widgets.log_view import LogView
from backend.api.client import EngineClient


class ContainerDetail(QWidget):
    """Opens on ``row``; its log streams while the window is open and stops when it closes."""

    def __init__(self, client: EngineClient, row: ContainerRow, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.row = row
        self.setWindowTitle(f"{row.name} — Berth")
        self.resize(900, 600)
        ports = "  ".join(formatting.port_chips(list(row.ports)))
        header = QLabel(f"<b>{row.name}</b> &nbsp; {row.image} &nbsp; {row.words} &nbsp; {ports}")
        self.logs = LogView(client, row.id)
        self.tabs = QTabWidget()
        self.tabs.addTab(self.logs, "Logs")
        layout = QVBoxLayout(self)
        layout.addWidget(header)
        layout.addWidget(self.tabs)
        self.logs.restart()

    def closeEvent(self, event: QCloseEvent) -> None:
        self.logs.stop()
        super().closeEvent(event)
