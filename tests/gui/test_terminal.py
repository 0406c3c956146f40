"""The terminal widget on its own (bytes in → screen and pixels; keys → bytes; resize; scrollback; clipboard)
and the Exec tab against a real berthd (a shell in a running busybox container)."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QEvent, QObject, QPoint, QPointF, Qt
from PySide6.QtGui import QColor, QGuiApplication, QPalette, QWheelEvent

from app.widgets.terminal import TerminalWidget

pytestmark = [pytest.mark.gui]


@pytest.fixture
def term(qtbot) -> TerminalWidget:
    widget = TerminalWidget()
    qtbot.addWidget(widget)
    widget.show()
    qtbot.waitExposed(widget)
    widget.setFocus()
    return widget


def sent(qtbot, widget: TerminalWidget, *keys: tuple[Qt.Key, Qt.KeyboardModifier]) -> list[bytes]:
    out: list[bytes] = []
    widget.send.connect(out.append)
    try:
        for key, modifiers in keys:
            qtbot.keyClick(widget, key, modifiers)
    finally:
        widget.send.disconnect(out.append)
    return out


def cell_centre(widget: TerminalWidget, row: int, col: int) -> QPoint:
    width, height, _ = widget._metrics()
    return QPoint(int((col + 0.5) * width), int((row + 0.5) * height))


def pixel(widget: TerminalWidget, row: int, col: int) -> QColor:
    widget.repaint()
    width, height, _ = widget._metrics()
    # a corner of the cell: background, not glyph
    return widget.grab().toImage().pixelColor(int(col * width) + 1, int(row * height) + 1)


NO = Qt.KeyboardModifier.NoModifier
CTRL, SHIFT = Qt.KeyboardModifier.ControlModifier, Qt.KeyboardModifier.ShiftModifier
ALT = Qt.KeyboardModifier.AltModifier


def test_feed_draws_text_colours_attributes_and_moves_the_cursor(term) -> None:
    term.feed(b"hello\r\n\x1b[31mred\x1b[0m \x1b[1;4mbold\x1b[0m")
    term.feed(b"\x1b[5;10HX\x1b[38;5;208mo\x1b[38;2;1;2;3mt\x1b[0m\x1b[2A")
    rows = term.text()
    assert rows[0] == "hello" and rows[1] == "red bold" and rows[4] == " " * 9 + "Xot"
    line = term.vt.buffer[1]
    assert line[0].fg == "red" and line[3].fg == "default"
    assert line[4].bold and line[4].underscore and not line[0].bold
    assert term.vt.buffer[4][10].fg == "ff8700" and term.vt.buffer[4][11].fg == "010203"
    assert (term.vt.cursor.y, term.vt.cursor.x) == (2, 12)


def test_cells_are_painted_in_their_colours(term) -> None:
    base = term.palette().color(QPalette.ColorRole.Base)
    text = term.palette().color(QPalette.ColorRole.Text)
    term.feed(b"\x1b[41m  \x1b[48;5;21m  \x1b[48;2;10;200;30m  \x1b[0m\x1b[7m  \x1b[0m  \r\n")
    assert pixel(term, 0, 0) == QColor("#cd0000")  # ANSI red background
    assert pixel(term, 0, 2) == QColor("#0000ff")  # 256-colour cube, 21
    assert pixel(term, 0, 4) == QColor(10, 200, 30)  # truecolor
    assert pixel(term, 0, 6) == text  # reverse: the default foreground as background
    assert pixel(term, 0, 8) == base
    assert pixel(term, 1, 0) == text  # the focused cursor is a block in the text colour


def test_repaints_are_coalesced_to_about_sixty_a_second(qtbot, term) -> None:
    paints: list[int] = []

    class Counter(QObject):
        def eventFilter(self, watched: QObject, event: QEvent) -> bool:
            if event.type() == QEvent.Type.Paint:
                paints.append(1)
            return False

    counter = Counter()
    term.installEventFilter(counter)
    for n in range(150):  # 150 chunks over at least 300 ms
        term.feed(f"line {n}\r\n".encode())
        qtbot.wait(2)
    qtbot.wait(50)
    term.removeEventFilter(counter)
    assert 1 <= len(paints) <= 30
    assert term.text()[-2] == "line 149"


def test_keys_become_the_bytes_an_xterm_sends(qtbot, term) -> None:
    k = Qt.Key
    typed: list[bytes] = []
    term.send.connect(typed.append)
    qtbot.keyClicks(term, "Hi $(x)")
    term.send.disconnect(typed.append)
    assert b"".join(typed) == b"Hi $(x)"
    assert sent(qtbot, term, (k.Key_Return, NO), (k.Key_Backspace, NO), (k.Key_Tab, NO),
                (k.Key_Escape, NO)) == [b"\r", b"\x7f", b"\t", b"\x1b"]
    assert term.hasFocus()  # Tab went to the shell, not to the next widget
    assert sent(qtbot, term, (k.Key_Up, NO), (k.Key_Down, NO), (k.Key_Right, NO), (k.Key_Left, NO),
                (k.Key_Home, NO), (k.Key_End, NO), (k.Key_PageUp, NO), (k.Key_PageDown, NO),
                (k.Key_Delete, NO)) == [b"\x1b[A", b"\x1b[B", b"\x1b[C", b"\x1b[D", b"\x1b[H", b"\x1b[F",
                                        b"\x1b[5~", b"\x1b[6~", b"\x1b[3~"]
    assert sent(qtbot, term, (k.Key_C, CTRL), (k.Key_D, CTRL), (k.Key_BracketLeft, CTRL), (k.Key_Left, CTRL),
                (k.Key_B, ALT), (k.Key_F1, NO), (k.Key_F5, NO)) == [b"\x03", b"\x04", b"\x1b", b"\x1b[1;5D",
                                                                    b"\x1bb", b"\x1bOP", b"\x1b[15~"]
    term.feed(b"\x1b[?1h")  # application cursor keys (what readline, less and vi ask for)
    assert sent(qtbot, term, (k.Key_Up, NO), (k.Key_Left, NO)) == [b"\x1bOA", b"\x1bOD"]


def test_the_terminal_answers_cursor_position_reports(term) -> None:
    out: list[bytes] = []
    term.send.connect(out.append)
    term.feed(b"\x1b[3;7H\x1b[6n")
    assert out == [b"\x1b[3;7R"]


def test_resize_changes_the_screen_and_says_so(qtbot, term) -> None:
    width, height, _ = term._metrics()
    with qtbot.waitSignal(term.resized) as signal:
        term.resize(int(100 * width) + 2, int(30 * height) + 2)
    assert signal.args == [100, 30]
    assert (term.columns, term.rows) == (100, 30)
    term.feed(b"\x1b[999C@")  # as far right as the screen goes
    assert term.text()[0] == " " * 99 + "@"


def test_scrollback_with_the_wheel_and_back_on_typing(qtbot, term) -> None:
    term.resize(term.sizeHint())
    qtbot.wait(10)
    term.feed(b"".join(f"line {n}\r\n".encode() for n in range(100)))
    rows = term.rows
    assert term.text()[rows - 2] == "line 99"
    centre = QPointF(term.rect().center())
    QGuiApplication.sendEvent(term, QWheelEvent(centre, term.mapToGlobal(centre), QPoint(0, 0), QPoint(0, 120),
                                                Qt.MouseButton.NoButton, NO, Qt.ScrollPhase.NoScrollPhase, False))
    assert term.scroll_offset == 3
    assert term.text()[rows - 2] == "line 96"
    qtbot.keyClick(term, Qt.Key.Key_PageUp, SHIFT)
    assert term.scroll_offset == 3 + rows and term.text()[0] == f"line {100 - rows + 1 - 3 - rows}"
    assert sent(qtbot, term, (Qt.Key.Key_X, NO)) == [b"x"]
    assert term.scroll_offset == 0 and term.text()[rows - 2] == "line 99"


def test_select_copy_and_paste(qtbot, term) -> None:
    term.feed(b"hello world\r\nsecond line")
    left = Qt.MouseButton.LeftButton
    qtbot.mousePress(term, left, NO, cell_centre(term, 0, 6))
    qtbot.mouseMove(term, cell_centre(term, 1, 5))
    qtbot.mouseRelease(term, left, NO, cell_centre(term, 1, 5))
    assert term.selected_text() == "world\nsecond"
    assert sent(qtbot, term, (Qt.Key.Key_C, CTRL | SHIFT)) == []  # copy sends nothing to the process
    assert QGuiApplication.clipboard().text() == "world\nsecond"
    QGuiApplication.clipboard().setText("echo a\nb")
    assert sent(qtbot, term, (Qt.Key.Key_V, CTRL | SHIFT)) == [b"echo a\rb"]
    term.feed(b"\x1b[?2004h")  # the shell asked for bracketed paste
    assert sent(qtbot, term, (Qt.Key.Key_V, CTRL | SHIFT)) == [b"\x1b[200~echo a\rb\x1b[201~"]
