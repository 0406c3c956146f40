"""A container's log: monospace, ANSI colours rendered, follow, timestamps, wrap, search, copy and clear.

Output is queued and written once per event-loop tick (one edit block), and the document keeps at most
``MAX_LINES`` lines, so a container printing 100,000 lines does not freeze the window.
"""

from __future__ import annotations

import asyncio
import bisect
import codecs
import contextlib
import re
import time
from dataclasses import dataclass, replace

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import (
    QBrush,
    QColor,
    QFont,
    QFontDatabase,
    QGuiApplication,
    QKeyEvent,
    QKeySequence,
    QShortcut,
    QTextCharFormat,
    QTextCursor,
    QTextDocument,
)
from PySide6.QtWidgets import (
    QCheckBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QTextEdit,
    QVBoxLayout,
    QWidget,
)

from app.formatting import describe_error
from backend.api.client import EngineClient
from backend.api.errors import APIError

MAX_LINES = 100_000  # the document's cap: older lines fall off the top
TAIL = "10000"  # lines fetched from the log's end when the stream (re)starts
MAX_HIGHLIGHTS = 10_000  # matches highlighted (and counted) at most

_ESCAPE = re.compile(r"\x1b(?:\[([0-9;?]*)([ -/]*[@-~])|[()][0-9A-B]|[=>])")
_PARTIAL_ESCAPE = re.compile(r"\x1b(?:\[[0-9;?]*[ -/]*|[()])?\Z")
_BASIC = ("#000000", "#cd3131", "#0dbc79", "#c8a800", "#2472c8", "#bc3fbc", "#11a8cd", "#e5e5e5",
          "#666666", "#f14c4c", "#23d18b", "#d8d840", "#3b8eea", "#d670d6", "#29b8db", "#ffffff")
_CUBE = (0, 95, 135, 175, 215, 255)


def colour_256(number: int) -> str:
    """xterm's 256-colour palette (16 basic colours, a 6x6x6 cube, 24 greys) as ``#rrggbb``."""
    if number < 16:
        return _BASIC[number]
    if number < 232:
        number -= 16
        return f"#{_CUBE[number // 36]:02x}{_CUBE[number // 6 % 6]:02x}{_CUBE[number % 6]:02x}"
    grey = 8 + 10 * (number - 232)
    return f"#{grey:02x}{grey:02x}{grey:02x}"


@dataclass(frozen=True)
class Style:
    """The SGR state: colours as ``#rrggbb`` (None: the view's own), bold, italic, underline."""

    foreground: str | None = None
    background: str | None = None
    bold: bool = False
    italic: bool = False
    underline: bool = False

    def char_format(self) -> QTextCharFormat:
        """The style as a text format."""
        fmt = QTextCharFormat()
        if self.foreground:
            fmt.setForeground(QBrush(QColor(self.foreground)))
        if self.background:
            fmt.setBackground(QBrush(QColor(self.background)))
        if self.bold:
            fmt.setFontWeight(QFont.Weight.Bold)
        fmt.setFontItalic(self.italic)
        fmt.setFontUnderline(self.underline)
        return fmt


class AnsiFormatter:
    """Turns text with ANSI escapes into ``(text, QTextCharFormat)`` runs. SGR state (colours, bold, italic,
    underline; 16, 256 and 24-bit colours) carries over from one call to the next; other escapes are
    dropped. An escape cut off at the end of a call is kept for the next one."""

    def __init__(self) -> None:
        self.style = Style()
        self._tail = ""
        self._formats: dict[Style, QTextCharFormat] = {}

    def reset(self) -> None:
        """Forget colours and any partial escape."""
        self.style, self._tail = Style(), ""

    def runs(self, text: str) -> list[tuple[str, QTextCharFormat]]:
        """The printable runs of ``text`` with their formats."""
        text = self._tail + text
        partial = _PARTIAL_ESCAPE.search(text)
        self._tail = partial.group() if partial else ""
        if partial:
            text = text[:partial.start()]
        runs: list[tuple[str, QTextCharFormat]] = []
        position = 0
        for match in _ESCAPE.finditer(text):
            if match.start() > position:
                runs.append((text[position:match.start()], self._format()))
            if match.group(2) == "m":
                self.style = self._apply(self.style, match.group(1))
            position = match.end()
        if position < len(text):
            runs.append((text[position:], self._format()))
        return runs

    def _format(self) -> QTextCharFormat:
        if self.style not in self._formats:
            self._formats[self.style] = self.style.char_format()
        return self._formats[self.style]

    @staticmethod
    def _apply(style: Style, parameters: str) -> Style:
        codes = [int(c) if c.isdigit() else 0 for c in parameters.split(";")] if parameters else [0]
        while codes:
            code = codes.pop(0)
            if code == 0:
                style = Style()
            elif code in (1, 22):
                style = replace(style, bold=code == 1)
            elif code in (3, 23):
                style = replace(style, italic=code == 3)
            elif code in (4, 24):
                style = replace(style, underline=code == 4)
            elif 30 <= code <= 37 or 90 <= code <= 97:
                style = replace(style, foreground=_BASIC[code - 30 if code < 90 else code - 82])
            elif 40 <= code <= 47 or 100 <= code <= 107:
                style = replace(style, background=_BASIC[code - 40 if code < 100 else code - 92])
            elif code == 39:
                style = replace(style, foreground=None)
            elif code == 49:
                style = replace(style, background=None)
            elif code in (38, 48) and codes:
                colour = AnsiFormatter._extended(codes)
                if colour is not None:
                    style = replace(style, foreground=colour) if code == 38 else replace(style, background=colour)
        return style

    @staticmethod
    def _extended(codes: list[int]) -> str | None:
        kind = codes.pop(0)
        if kind == 5 and codes:
            return colour_256(min(codes.pop(0), 255))
        if kind == 2 and len(codes) >= 3:
            red, green, blue = (min(codes.pop(0), 255) for _ in range(3))
            return f"#{red:02x}{green:02x}{blue:02x}"
        return None


class SearchBox(QLineEdit):
    """A search field: Enter emits ``next_match``, Shift+Enter ``previous_match``."""

    next_match = Signal()
    previous_match = Signal()

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            shifted = event.modifiers() & Qt.KeyboardModifier.ShiftModifier
            (self.previous_match if shifted else self.next_match).emit()
        else:
            super().keyPressEvent(event)


class LogView(QWidget):
    """Streams ``GET /containers/{id}/logs`` into a read-only view.

    Follow on: the stream stays open and the view scrolls to new output; off: the log so far. Toggling
    follow or timestamps restarts the stream. Clear empties the view only: later lines keep coming, and a
    restarted stream asks for the log since the clear. Errors end up in the view as one line."""

    def __init__(self, client: EngineClient, container_id: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._client, self._container_id = client, container_id
        self._tty: bool | None = None  # learnt from inspect on the first stream
        self._since: float | None = None  # the last clear (Unix time)
        self._task: asyncio.Task[None] | None = None
        self._pending: list[str] = []
        self._ansi = AnsiFormatter()
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.matches: list[int] = []  # start positions of the search matches (at most MAX_HIGHLIGHTS)
        self.text = QPlainTextEdit()
        self.text.setReadOnly(True)
        self.text.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.text.setMaximumBlockCount(MAX_LINES)
        self.text.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.follow = QCheckBox("Follow")
        self.follow.setToolTip("Keep the log open and scroll to new lines")
        self.follow.setChecked(True)
        self.timestamps = QCheckBox("Timestamps")
        self.timestamps.setToolTip("Prefix each line with the time it was written")
        self.wrap = QCheckBox("Wrap")
        self.wrap.setToolTip("Wrap long lines")
        self.search = SearchBox()
        self.search.setPlaceholderText("Search…  Ctrl+F")
        self.search.setClearButtonEnabled(True)
        self.search.setToolTip("Enter: next match, Shift+Enter: previous match")
        self.match_label = QLabel()
        bar = QHBoxLayout()
        for widget in (self.follow, self.timestamps, self.wrap):
            bar.addWidget(widget)
        bar.addWidget(self.search, 1)
        bar.addWidget(self.match_label)
        for text, tip, slot in (("↑", "Previous match (Shift+Enter)", self.find_previous),
                                ("↓", "Next match (Enter)", self.find_next),
                                ("Copy", "Copy the selection, or the whole log if nothing is selected", self.copy),
                                ("Save…", "Save what the view shows to a file", self._save_as),
                                ("Clear", "Clear the view (the log itself is kept; new lines keep coming)",
                                 self.clear)):
            button = QPushButton(text)
            button.setToolTip(tip)
            button.clicked.connect(slot)
            bar.addWidget(button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(bar)
        layout.addWidget(self.text)
        self._flush_timer = QTimer(self)
        self._flush_timer.setSingleShot(True)
        self._flush_timer.timeout.connect(self.flush)
        self._highlight_timer = QTimer(self)
        self._highlight_timer.setSingleShot(True)
        self._highlight_timer.setInterval(300)
        self._highlight_timer.timeout.connect(self.highlight)
        self.follow.toggled.connect(self.restart)
        self.timestamps.toggled.connect(self.restart)
        self.wrap.toggled.connect(lambda on: self.text.setLineWrapMode(
            QPlainTextEdit.LineWrapMode.WidgetWidth if on else QPlainTextEdit.LineWrapMode.NoWrap))
        self.search.textChanged.connect(self.highlight)
        self.search.next_match.connect(self.find_next)
        self.search.previous_match.connect(self.find_previous)
        QShortcut(QKeySequence.StandardKey.Find, self, self.search.setFocus,
                  context=Qt.ShortcutContext.WidgetWithChildrenShortcut)

    @property
    def streaming(self) -> bool:
        """Whether a log stream is open."""
        return self._task is not None and not self._task.done()

    def restart(self) -> None:
        """(Re)start streaming: the log's last ``TAIL`` lines (since the last clear), then live ones if
        following."""
        self.stop()
        self._pending.clear()
        self._ansi.reset()
        self._decoder.reset()
        self.text.clear()
        self._task = asyncio.ensure_future(self._stream())

    def stop(self) -> None:
        """Stop streaming (closes the connection)."""
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def clear(self) -> None:
        """Empty the view; the stream goes on and a restart shows only what came after this."""
        self._since = time.time()
        self.flush()
        self.text.clear()
        self.highlight()

    def copy(self) -> None:
        """Copy the selected text, or all of the view if nothing is selected."""
        selected = self.text.textCursor().selectedText().replace("\u2029", "\n")
        QGuiApplication.clipboard().setText(selected or self.text.toPlainText())

    def save(self, path: str) -> None:
        """Write what the view shows to ``path`` (UTF-8). Raises OSError."""
        self.flush()
        with open(path, "w", encoding="utf-8") as f:
            f.write(self.text.toPlainText())

    def _save_as(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save log", f"{self._container_id[:12]}.log")
        if path:
            try:
                self.save(path)
            except OSError as exc:
                self.append(f"\n[Could not save the log: {describe_error(exc)}]\n")

    def append(self, text: str) -> None:
        """Queue ``text`` (it may hold ANSI escapes) for the next flush, on the next event-loop tick."""
        self._pending.append(text)
        if not self._flush_timer.isActive():
            self._flush_timer.start(0)

    def flush(self) -> None:
        """Write the queued text at the end of the view in one edit (and scroll there when following)."""
        if not self._pending:
            return
        text = "".join(self._pending).replace("\r\n", "\n").replace("\r", "")
        self._pending.clear()
        cursor = QTextCursor(self.text.document())
        cursor.movePosition(QTextCursor.MoveOperation.End)
        cursor.beginEditBlock()
        for run, fmt in self._ansi.runs(text):
            cursor.insertText(run, fmt)
        cursor.endEditBlock()
        if self.follow.isChecked():
            bar = self.text.verticalScrollBar()
            bar.setValue(bar.maximum())
        if self.search.text() and not self._highlight_timer.isActive():
            self._highlight_timer.start()

    def highlight(self) -> None:
        """Highlight every match of the search text (case-insensitive) and update the count."""
        needle = self.search.text()
        self.matches = []
        selections = []
        found = QTextCharFormat()
        found.setBackground(QColor("#ffd54f"))
        found.setForeground(QColor("#000000"))
        document = self.text.document()
        cursor = document.find(needle) if needle else QTextCursor()
        while not cursor.isNull() and len(self.matches) < MAX_HIGHLIGHTS:
            self.matches.append(cursor.selectionStart())
            selection = QTextEdit.ExtraSelection()
            selection.cursor = cursor
            selection.format = found
            selections.append(selection)
            cursor = document.find(needle, cursor)
        self.text.setExtraSelections(selections)
        self._show_count()

    def find_next(self) -> None:
        """Select the next match after the cursor (wrapping around)."""
        self._find(QTextDocument.FindFlag(0))

    def find_previous(self) -> None:
        """Select the previous match before the cursor (wrapping around)."""
        self._find(QTextDocument.FindFlag.FindBackward)

    def _find(self, flags: QTextDocument.FindFlag) -> None:
        needle = self.search.text()
        if not needle:
            return
        document = self.text.document()
        found = document.find(needle, self.text.textCursor(), flags)
        if found.isNull():  # wrap around
            start = QTextCursor(document)
            if flags & QTextDocument.FindFlag.FindBackward:
                start.movePosition(QTextCursor.MoveOperation.End)
            found = document.find(needle, start, flags)
        if not found.isNull():
            self.text.setTextCursor(found)
            self.text.centerCursor()
        self._show_count()

    def _show_count(self) -> None:
        if not self.search.text():
            self.match_label.clear()
            return
        total = f"{len(self.matches)}{'+' if len(self.matches) >= MAX_HIGHLIGHTS else ''}"
        cursor = self.text.textCursor()
        number = bisect.bisect_left(self.matches, cursor.selectionStart())
        if cursor.hasSelection() and number < len(self.matches) and self.matches[number] == cursor.selectionStart():
            self.match_label.setText(f"{number + 1} of {total}")
        else:
            self.match_label.setText(f"{total} match{'es' if len(self.matches) != 1 else ''}")

    async def _stream(self) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            try:
                if self._tty is None:
                    self._tty = bool((await self._client.inspect_container(self._container_id)).config.get("Tty"))
                since = f"{self._since:.6f}" if self._since is not None else None
                async for _, data in self._client.logs(self._container_id, tty=self._tty,
                                                      follow=self.follow.isChecked(), since=since, tail=TAIL,
                                                      timestamps=self.timestamps.isChecked()):
                    self.append(self._decoder.decode(data))
            except (APIError, OSError) as exc:
                self.append(f"\n[{describe_error(exc)}]\n")
