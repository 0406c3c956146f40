"""The one place errors are shown: a non-modal banner at the top of the window."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QWidget


class ErrorBanner(QFrame):
    """Shows one message at a time (the newest), with an optional action button and a close button.

    ``text`` is what the user reads; it is empty while the banner is hidden."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("errorBanner")
        self.setStyleSheet("#errorBanner { background: #fdecea; border: 1px solid #d23c3c; border-radius: 4px; }"
                           "#errorBanner QLabel { color: #611a15; }")
        self._label = QLabel()
        self._label.setWordWrap(True)
        self._action = QPushButton()
        self._action.hide()
        self._action.clicked.connect(self._run_action)
        close = QPushButton("✕")
        close.setFlat(True)
        close.setToolTip("Dismiss")
        close.clicked.connect(self.clear)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(8, 4, 4, 4)
        layout.addWidget(self._label, 1)
        layout.addWidget(self._action)
        layout.addWidget(close)
        self._callback: Callable[[], None] | None = None
        self.hide()

    @property
    def text(self) -> str:
        return "" if self.isHidden() else self._label.text()

    def show_message(self, text: str, action: str = "", callback: Callable[[], None] | None = None) -> None:
        """Show ``text``, with a button ``action`` that calls ``callback`` when both are given."""
        self._label.setText(text)
        self._callback = callback
        self._action.setText(action)
        self._action.setVisible(bool(action and callback))
        self.show()

    def clear(self) -> None:
        """Hide the banner."""
        self._label.setText("")
        self._callback = None
        self.hide()

    def _run_action(self) -> None:
        if self._callback is not None:
            self._callback()
