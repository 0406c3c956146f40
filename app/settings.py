"""The app's settings, kept in QSettings: window geometry, current page, notifications."""

from __future__ import annotations

from PySide6.QtCore import QByteArray, QSettings


class Settings:
    """Typed access to a QSettings store (the user's, or a file in tests)."""

    def __init__(self, store: QSettings) -> None:
        self.store = store

    @property
    def geometry(self) -> QByteArray | None:
        value = self.store.value("window/geometry")
        return value if isinstance(value, QByteArray) else None

    @geometry.setter
    def geometry(self, value: QByteArray) -> None:
        self.store.setValue("window/geometry", value)

    @property
    def page(self) -> int:
        value = self.store.value("window/page", 0)
        return int(value) if isinstance(value, (int, str)) and str(value).isdigit() else 0

    @page.setter
    def page(self, value: int) -> None:
        self.store.setValue("window/page", value)

    @property
    def notifications(self) -> bool:
        return str(self.store.value("notifications/enabled", "true")).lower() == "true"
