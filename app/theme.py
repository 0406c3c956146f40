"""Light and dark themes: QPalettes with one accent colour and the few stylesheet bits UI.md asks for.

:class:`ThemeManager` applies the theme the settings choose; "System" follows the platform's colour scheme
(``QStyleHints.colorScheme()``) and changes with it (``colorSchemeChanged``). The Fusion style is used so the
palette is honoured the same way on every platform.
"""

from __future__ import annotations

from enum import Enum

from PySide6.QtCore import QObject, Qt
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication

from app.settings import THEME, Settings, ThemeChoice

ACCENT = "#2f7ed8"
# Compact rows, an accent for the current page in the sidebar, chips and links in the accent.
STYLESHEET = f"""
QTreeView::item, QTableView::item {{ padding: 2px 4px; }}
QListWidget::item:selected {{ background: {ACCENT}; color: white; }}
QPushButton:flat {{ border: none; }}
"""


class Appearance(Enum):
    """The colours in use."""

    LIGHT = "light"
    DARK = "dark"


_ROLES = QPalette.ColorRole
# (role, light, dark); Highlight and Link are the accent in both.
_COLOURS = (
    (_ROLES.Window, "#f5f6f8", "#1f2125"),
    (_ROLES.WindowText, "#1d1f23", "#e6e7ea"),
    (_ROLES.Base, "#ffffff", "#16181b"),
    (_ROLES.AlternateBase, "#f0f2f5", "#22252a"),
    (_ROLES.ToolTipBase, "#ffffff", "#2a2d33"),
    (_ROLES.ToolTipText, "#1d1f23", "#e6e7ea"),
    (_ROLES.PlaceholderText, "#8a8f98", "#7c818a"),
    (_ROLES.Text, "#1d1f23", "#e6e7ea"),
    (_ROLES.Button, "#eceef1", "#2a2d33"),
    (_ROLES.ButtonText, "#1d1f23", "#e6e7ea"),
    (_ROLES.BrightText, "#d23c3c", "#ff6b6b"),
    (_ROLES.Light, "#ffffff", "#3a3e45"),
    (_ROLES.Midlight, "#e1e4e8", "#30343a"),
    (_ROLES.Mid, "#c4c8ce", "#45494f"),
    (_ROLES.Dark, "#9ea3aa", "#101114"),
    (_ROLES.Shadow, "#6b7078", "#000000"),
    (_ROLES.Highlight, ACCENT, ACCENT),
    (_ROLES.HighlightedText, "#ffffff", "#ffffff"),
    (_ROLES.Link, ACCENT, "#5b9be6"),
)


def palette(appearance: Appearance) -> QPalette:
    """The palette of ``appearance``; disabled text is dimmed."""
    result = QPalette()
    for role, light, dark in _COLOURS:
        result.setColor(role, QColor(light if appearance is Appearance.LIGHT else dark))
    dimmed = QColor("#a0a4ab" if appearance is Appearance.LIGHT else "#6a6e75")
    for role in (_ROLES.Text, _ROLES.WindowText, _ROLES.ButtonText):
        result.setColor(QPalette.ColorGroup.Disabled, role, dimmed)
    return result


def resolve(choice: ThemeChoice, scheme: Qt.ColorScheme) -> Appearance:
    """The appearance ``choice`` means when the platform's scheme is ``scheme`` (unknown counts as light)."""
    if choice is ThemeChoice.SYSTEM:
        return Appearance.DARK if scheme == Qt.ColorScheme.Dark else Appearance.LIGHT
    return Appearance.DARK if choice is ThemeChoice.DARK else Appearance.LIGHT


class ThemeManager(QObject):
    """Applies the settings' theme to the QApplication now, when the setting changes and, for "System", when
    the platform's scheme does. ``appearance`` is the one in use. Raises RuntimeError without a QApplication."""

    def __init__(self, settings: Settings, parent: QObject | None = None) -> None:
        super().__init__(parent)
        app = QApplication.instance()
        if not isinstance(app, QApplication):
            raise RuntimeError("the theme needs a QApplication")
        self.app, self.settings = app, settings
        self.appearance: Appearance | None = None
        app.setStyle("Fusion")
        settings.changed.connect(self._setting_changed)
        app.styleHints().colorSchemeChanged.connect(self._scheme_changed)
        self.apply()

    def apply(self) -> None:
        """Apply the chosen theme (nothing happens when the appearance stays the same)."""
        appearance = resolve(self.settings.theme, self.app.styleHints().colorScheme())
        if appearance is not self.appearance:
            self.appearance = appearance
            self.app.setPalette(palette(appearance))
            self.app.setStyleSheet(STYLESHEET)

    def _setting_changed(self, key: str) -> None:
        if key == THEME:
            self.apply()

    def _scheme_changed(self, _scheme: Qt.ColorScheme) -> None:
        self.apply()
