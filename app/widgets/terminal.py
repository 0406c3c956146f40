"""A terminal widget: pyte keeps the VT100/xterm screen, QPainter draws it as a grid of cells.

:class:`TerminalWidget` is only the terminal, not the process: bytes from the process go in through
:meth:`TerminalWidget.feed`; what the user types comes out as bytes on ``send``; a new size in cells comes out
on ``resized(cols, rows)``. It renders the 16 ANSI colours, the 256-colour palette and truecolor, bold,
italics, underline, strikethrough and reverse, and the cursor; has xterm's alternate screen for full-screen
programs; keeps a scrollback of ``history`` lines (mouse wheel, Shift+PgUp/PgDn); selects with the mouse and
copies/pastes with Ctrl+Shift+C/V (or the context menu).
Output is repainted at most about 60 times a second however fast it comes.
"""

from __future__ import annotations

import sys
from collections import defaultdict, deque
from functools import lru_cache
from typing import Any

import pyte
from PySide6.QtCore import QEvent, QPoint, QPointF, QRectF, QSize, Qt, QTimer, Signal
from PySide6.QtGui import (
    QAction,
    QClipboard,
    QColor,
    QFocusEvent,
    QFont,
    QFontDatabase,
    QFontMetricsF,
    QGuiApplication,
    QInputMethodEvent,
    QKeyEvent,
    QMouseEvent,
    QPainter,
    QPaintEvent,
    QPalette,
    QResizeEvent,
    QWheelEvent,
)
from PySide6.QtWidgets import QWidget
from pyte.graphics import FG_BG_256
from pyte.screens import Char, Margins, StaticDefaultDict

Line = StaticDefaultDict[int, Char]
Cell = tuple[int, int]  # (line in scrollback + screen, column)

_NAMED = ("black", "red", "green", "brown", "blue", "magenta", "cyan", "white")
_PALETTE16 = {name: FG_BG_256[i] for i, name in enumerate(_NAMED)} | {
    f"bright{name}": FG_BG_256[i + 8] for i, name in enumerate(_NAMED)} | {"bfightmagenta": FG_BG_256[13]}

_DECCKM = 1 << 5  # application cursor keys (ESC [ ? 1 h); pyte stores private modes shifted by 5
_BRACKETED_PASTE = 2004 << 5
_ALTERNATE_SCREEN = frozenset({47, 1047, 1049})
_CTRL = Qt.KeyboardModifier.MetaModifier if sys.platform == "darwin" else Qt.KeyboardModifier.ControlModifier
_SHIFT, _ALT = Qt.KeyboardModifier.ShiftModifier, Qt.KeyboardModifier.AltModifier
_K = Qt.Key
_PLAIN: dict[int, bytes] = {_K.Key_Return: b"\r", _K.Key_Enter: b"\r", _K.Key_Backspace: b"\x7f",
                            _K.Key_Tab: b"\t", _K.Key_Backtab: b"\x1b[Z", _K.Key_Escape: b"\x1b"}
_CURSOR: dict[int, str] = {_K.Key_Up: "A", _K.Key_Down: "B", _K.Key_Right: "C", _K.Key_Left: "D",
                           _K.Key_Home: "H", _K.Key_End: "F"}
_SS3: dict[int, str] = {_K.Key_F1: "P", _K.Key_F2: "Q", _K.Key_F3: "R", _K.Key_F4: "S"}
_TILDE: dict[int, int] = {_K.Key_Insert: 2, _K.Key_Delete: 3, _K.Key_PageUp: 5, _K.Key_PageDown: 6,
                          _K.Key_F5: 15, _K.Key_F6: 17, _K.Key_F7: 18, _K.Key_F8: 19, _K.Key_F9: 20,
                          _K.Key_F10: 21, _K.Key_F11: 23, _K.Key_F12: 24}
_CTRL_SYMBOLS: dict[int, int] = {_K.Key_At: 0, _K.Key_Space: 0, _K.Key_BracketLeft: 27, _K.Key_Backslash: 28,
                                 _K.Key_BracketRight: 29, _K.Key_AsciiCircum: 30, _K.Key_Underscore: 31,
                                 _K.Key_Minus: 31}


def key_bytes(key: int, modifiers: Qt.KeyboardModifier, text: str, *, app_cursor: bool = False) -> bytes:
    """What an xterm sends for ``key`` with ``modifiers`` (``text`` is what Qt says the key types).

    Empty for keys that type nothing (a lone Shift). ``app_cursor`` is DECCKM (arrows as ``ESC O A``)."""
    shift, alt, ctrl = bool(modifiers & _SHIFT), bool(modifiers & _ALT), bool(modifiers & _CTRL)
    mod = 1 + shift + 2 * alt + 4 * ctrl  # xterm's modifier parameter
    prefix = b"\x1b" if alt else b""
    if key in _CURSOR:
        final = _CURSOR[key]
        return (f"\x1b[1;{mod}{final}" if mod > 1 else f"\x1bO{final}" if app_cursor else f"\x1b[{final}").encode()
    if key in _SS3:
        return (f"\x1b[1;{mod}{_SS3[key]}" if mod > 1 else f"\x1bO{_SS3[key]}").encode()
    if key in _TILDE:
        return (f"\x1b[{_TILDE[key]};{mod}~" if mod > 1 else f"\x1b[{_TILDE[key]}~").encode()
    if key in _PLAIN:
        return prefix + _PLAIN[key]
    if ctrl and _K.Key_A <= key <= _K.Key_Z:
        return prefix + bytes([key - _K.Key_A + 1])
    if ctrl and key in _CTRL_SYMBOLS:
        return prefix + bytes([_CTRL_SYMBOLS[key]])
    return prefix + text.encode() if text else b""


@lru_cache(maxsize=1024)
def _colour(name: str) -> QColor | None:
    """The colour pyte names (``red``, ``brightblue``, ``ff8700``); None for ``default``."""
    value = _PALETTE16.get(name, name)
    colour = QColor(f"#{value}")
    return colour if colour.isValid() and len(value) == 6 else None


class _Screen(pyte.Screen):
    """pyte's screen plus a scrollback and xterm's alternate screen.

    ``history`` keeps the lines that scroll off the top of the main screen (not those scrolled within a region
    a program set, as xterm does; pyte's HistoryScreen wraps every call and is four times slower). Full-screen
    programs (less, vim, htop) switch to the alternate screen (private modes 47, 1047, 1049) and back, and the
    shell's screen reappears as it was. Answers to the process (cursor reports) wait in ``replies``."""

    def __init__(self, columns: int, lines: int, history: int) -> None:
        self.history: deque[Line] = deque(maxlen=history)
        self.replies: list[str] = []
        self.main_buffer: dict[int, Line] | None = None  # set while the alternate screen is shown
        super().__init__(columns, lines)

    def index(self) -> None:
        top, bottom = self.margins or Margins(0, self.lines - 1)
        if self.cursor.y == bottom and top == 0 and self.main_buffer is None:
            self.history.append(self.buffer[top])
        super().index()

    def set_mode(self, *modes: int, **kwargs: Any) -> None:
        super().set_mode(*modes, **kwargs)
        if kwargs.get("private") and _ALTERNATE_SCREEN & set(modes) and self.main_buffer is None:
            if 1049 in modes:
                self.save_cursor()
            self.main_buffer = self.buffer
            self.buffer = defaultdict(lambda: StaticDefaultDict[int, Char](self.default_char))

    def reset_mode(self, *modes: int, **kwargs: Any) -> None:
        super().reset_mode(*modes, **kwargs)
        if kwargs.get("private") and _ALTERNATE_SCREEN & set(modes) and self.main_buffer is not None:
            self.buffer, self.main_buffer = self.main_buffer, None
            if 1049 in modes:
                self.restore_cursor()

    def reset(self) -> None:
        super().reset()
        self.history.clear()
        if self.main_buffer is not None:
            self.buffer, self.main_buffer = self.main_buffer, None
            self.buffer.clear()

    def resize(self, lines: int | None = None, columns: int | None = None) -> None:
        """As pyte's, except that a shorter screen keeps the cursor's line: the lines above it that no longer
        fit go to the scrollback and blank lines below it go away (pyte drops lines from the top and leaves the
        cursor on another line)."""
        lines = lines or self.lines
        if lines < self.lines:
            drop = max(0, self.cursor.y + 1 - lines)
            if self.main_buffer is None:
                self.history.extend(self.buffer[y] for y in range(drop))
            for y in range(self.lines - drop):
                self.buffer[y] = self.buffer[y + drop]
            for y in range(lines, self.lines):
                self.buffer.pop(y, None)
            self.cursor.y -= drop
            self.lines = lines
        super().resize(lines, columns)
        self.set_margins()

    def erase_in_display(self, how: int = 0, *args: Any, **kwargs: Any) -> None:
        super().erase_in_display(how, *args, **kwargs)
        if how == 3:  # "clear the scrollback" (clear(1) sends it)
            self.history.clear()

    def write_process_input(self, data: str) -> None:
        self.replies.append(data)


class TerminalWidget(QWidget):
    """A terminal screen. Signals: ``send(bytes)`` (typed or pasted input for the process) and
    ``resized(cols, rows)`` (the widget's new size in cells, already applied to the screen)."""

    send = Signal(bytes)
    resized = Signal(int, int)

    FRAME_MS = 16  # at most about 60 repaints a second

    def __init__(self, parent: QWidget | None = None, *, columns: int = 80, rows: int = 24,
                 history: int = 5000) -> None:
        super().__init__(parent)
        self.vt = _Screen(columns, rows, history)
        self._stream = pyte.ByteStream(self.vt)
        self._offset = 0  # lines scrolled back into the history
        self._anchor: Cell | None = None
        self._selection: tuple[Cell, Cell] | None = None
        self._fonts: dict[tuple[bool, bool, bool, bool], QFont] = {}
        self.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)
        self.setAttribute(Qt.WidgetAttribute.WA_InputMethodEnabled)
        self.setCursor(Qt.CursorShape.IBeamCursor)
        self._frame = QTimer(self, singleShot=True, interval=self.FRAME_MS)
        self._frame.timeout.connect(self.update)
        for label, slot in (("Copy\tCtrl+Shift+C", self.copy), ("Paste\tCtrl+Shift+V", self.paste)):
            action = QAction(label, self)
            action.triggered.connect(slot)
            self.addAction(action)
        self.setContextMenuPolicy(Qt.ContextMenuPolicy.ActionsContextMenu)

    # -- the screen ----------------------------------------------------------------------------------

    @property
    def columns(self) -> int:
        return int(self.vt.columns)

    @property
    def rows(self) -> int:
        return int(self.vt.lines)

    @property
    def scroll_offset(self) -> int:
        """How many lines the view is scrolled back into the history (0: the live screen)."""
        return self._offset

    def feed(self, data: bytes) -> None:
        """Interpret ``data`` from the process; the widget repaints within a frame. Answers the terminal owes
        the process (cursor position reports) go out on ``send``. Clears the selection."""
        self._stream.feed(data)
        self._selection = self._anchor = None
        self._offset = min(self._offset, len(self.vt.history))
        if self.vt.replies:
            replies, self.vt.replies = self.vt.replies, []
            self.send.emit("".join(replies).encode())
        if not self._frame.isActive():
            self._frame.start()

    def reset(self) -> None:
        """Clear the screen, its history and its modes (for a new session)."""
        self.vt.reset()
        self._offset, self._selection, self._anchor = 0, None, None
        self.update()

    def text(self) -> list[str]:
        """What the view shows (scrolled back or not) as text: one string per row, trailing blanks dropped."""
        first = self._first_visible()
        return ["".join(self._line(first + row)[x].data for x in range(self.columns)).rstrip()
                for row in range(self.rows)]

    def scroll_back(self, lines: int) -> None:
        """Scroll the view ``lines`` back into the history (negative: forward), within the history."""
        self._offset = max(0, min(len(self.vt.history), self._offset + lines))
        self.update()

    def _line(self, index: int) -> Line:
        """Line ``index`` of history + screen (0 is the oldest line kept)."""
        history = self.vt.history
        return history[index] if index < len(history) else self.vt.buffer[index - len(history)]

    def _first_visible(self) -> int:
        return len(self.vt.history) - self._offset

    # -- selection and clipboard ---------------------------------------------------------------------

    def selected_text(self) -> str:
        """The selected cells as text (lines joined by newlines, trailing blanks dropped); empty if none."""
        if self._selection is None:
            return ""
        (start_line, start_col), (end_line, end_col) = sorted(self._selection)
        lines = []
        for index in range(start_line, end_line + 1):
            line = self._line(index)
            first = start_col if index == start_line else 0
            last = end_col if index == end_line else self.columns - 1
            lines.append("".join(line[x].data for x in range(first, last + 1)).rstrip())
        return "\n".join(lines)

    def copy(self) -> None:
        """Put the selection on the clipboard (nothing selected: nothing happens)."""
        if text := self.selected_text():
            QGuiApplication.clipboard().setText(text)

    def paste(self) -> None:
        """Send the clipboard's text as input (bracketed if the program asked for it)."""
        self._paste(QClipboard.Mode.Clipboard)

    def _paste(self, mode: QClipboard.Mode) -> None:
        text = QGuiApplication.clipboard().text(mode)
        if not text:
            return
        data = text.replace("\r\n", "\r").replace("\n", "\r").encode()
        if _BRACKETED_PASTE in self.vt.mode:
            data = b"\x1b[200~" + data + b"\x1b[201~"
        self._type(data)

    def _cell_at(self, pos: QPoint | QPointF) -> Cell:
        width, height, _ = self._metrics()
        row = max(0, min(self.rows - 1, int(pos.y() // height)))
        col = max(0, min(self.columns - 1, int(pos.x() // width)))
        return self._first_visible() + row, col

    def mousePressEvent(self, event: QMouseEvent) -> None:
        if event.button() == Qt.MouseButton.LeftButton:
            self._anchor, self._selection = self._cell_at(event.position()), None
            self.update()
        elif event.button() == Qt.MouseButton.MiddleButton and QGuiApplication.clipboard().supportsSelection():
            self._paste(QClipboard.Mode.Selection)
        super().mousePressEvent(event)

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        if self._anchor is not None and event.buttons() & Qt.MouseButton.LeftButton:
            self._selection = (self._anchor, self._cell_at(event.position()))
            self.update()

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        clipboard = QGuiApplication.clipboard()
        if event.button() == Qt.MouseButton.LeftButton and clipboard.supportsSelection() and self.selected_text():
            clipboard.setText(self.selected_text(), QClipboard.Mode.Selection)
        super().mouseReleaseEvent(event)

    # -- input ---------------------------------------------------------------------------------------

    def _type(self, data: bytes) -> None:
        if self._offset:
            self._offset = 0
            self.update()
        self.send.emit(data)

    def event(self, event: QEvent) -> bool:
        if event.type() == QEvent.Type.ShortcutOverride:  # every key is the terminal's, not a shortcut's
            event.accept()
            return True
        return super().event(event)

    def focusNextPrevChild(self, next: bool) -> bool:
        return False  # Tab goes to the process, not to the next widget

    def keyPressEvent(self, event: QKeyEvent) -> None:
        key, modifiers = event.key(), event.modifiers()
        copy_paste = Qt.KeyboardModifier.ControlModifier | _SHIFT
        if modifiers & copy_paste == copy_paste and key in (_K.Key_C, _K.Key_V):
            self.copy() if key == _K.Key_C else self.paste()
        elif modifiers & _SHIFT and key in (_K.Key_PageUp, _K.Key_PageDown):
            self.scroll_back(self.rows if key == _K.Key_PageUp else -self.rows)
        elif data := key_bytes(key, modifiers, event.text(), app_cursor=_DECCKM in self.vt.mode):
            self._type(data)
        else:
            super().keyPressEvent(event)

    def inputMethodEvent(self, event: QInputMethodEvent) -> None:
        if text := event.commitString():
            self._type(text.encode())
        event.accept()

    def wheelEvent(self, event: QWheelEvent) -> None:
        self.scroll_back(round(event.angleDelta().y() / 120 * 3))
        event.accept()

    def focusInEvent(self, event: QFocusEvent) -> None:
        self.update()
        super().focusInEvent(event)

    def focusOutEvent(self, event: QFocusEvent) -> None:
        self.update()
        super().focusOutEvent(event)

    # -- size ----------------------------------------------------------------------------------------

    def _metrics(self) -> tuple[float, float, float]:
        """Cell width, cell height and the text's ascent, in pixels."""
        metrics = QFontMetricsF(self.font())
        return metrics.horizontalAdvance("M"), metrics.lineSpacing(), metrics.ascent()

    def sizeHint(self) -> QSize:
        width, height, _ = self._metrics()
        return QSize(int(80 * width) + 1, int(24 * height) + 1)

    def resizeEvent(self, event: QResizeEvent) -> None:
        width, height, _ = self._metrics()
        columns = max(2, int(self.width() // width))
        rows = max(1, int(self.height() // height))
        if (columns, rows) != (self.columns, self.rows):
            self.vt.resize(rows, columns)
            self._offset = min(self._offset, len(self.vt.history))
            self._selection = self._anchor = None
            self.resized.emit(columns, rows)
        super().resizeEvent(event)

    # -- painting ------------------------------------------------------------------------------------

    def _font(self, char: Char) -> QFont:
        key = (char.bold, char.italics, char.underscore, char.strikethrough)
        if key not in self._fonts:
            font = QFont(self.font())
            font.setBold(char.bold)
            font.setItalic(char.italics)
            font.setUnderline(char.underscore)
            font.setStrikeOut(char.strikethrough)
            self._fonts[key] = font
        return self._fonts[key]

    def changeEvent(self, event: QEvent) -> None:
        if event.type() == QEvent.Type.FontChange:
            self._fonts.clear()
        super().changeEvent(event)

    def paintEvent(self, event: QPaintEvent) -> None:
        palette = self.palette()
        default_fg, default_bg = palette.color(QPalette.ColorRole.Text), palette.color(QPalette.ColorRole.Base)
        selected_fg = palette.color(QPalette.ColorRole.HighlightedText)
        selected_bg = palette.color(QPalette.ColorRole.Highlight)
        width, height, ascent = self._metrics()
        painter = QPainter(self)
        painter.fillRect(self.rect(), default_bg)
        selection = sorted(self._selection) if self._selection else None
        cursor = self.vt.cursor
        show_cursor = self._offset == 0 and not cursor.hidden
        first = self._first_visible()
        for row in range(self.rows):
            line, index, y = self._line(first + row), first + row, row * height

            def look(col: int, line: Line = line, index: int = index, row: int = row) -> tuple[object, ...]:
                selected = selection is not None and selection[0] <= (index, col) <= selection[1]
                return line[col][1:], selected, show_cursor and (row, col) == (cursor.y, cursor.x)

            col = 0
            while col < self.columns:  # one run of cells that look the same
                char, style = line[col], look(col)
                _, selected, at_cursor = style
                end = col + 1
                while end < self.columns and look(end) == style:
                    end += 1
                fg, bg = _colour(char.fg) or default_fg, _colour(char.bg) or default_bg
                if char.reverse != (at_cursor and self.hasFocus()):
                    fg, bg = bg, fg
                if selected:
                    fg, bg = selected_fg, selected_bg
                rect = QRectF(col * width, y, (end - col) * width, height)
                if bg != default_bg:
                    painter.fillRect(rect, bg)
                text = "".join(line[x].data for x in range(col, end))
                if text.strip() or char.underscore or char.strikethrough:
                    painter.setPen(fg)
                    painter.setFont(self._font(char))
                    painter.drawText(QPointF(col * width, y + ascent), text)
                col = end
        if show_cursor and not self.hasFocus():
            painter.setPen(default_fg)
            painter.drawRect(QRectF(cursor.x * width, cursor.y * height, width - 1, height - 1))
        painter.end()
