"""The terminal widget on its own (bytes in → screen and pixels; keys → bytes; resize; scrollback; clipboard)
and the Exec tab against a real berthd (a shell in a running busybox container)."""

from __future__ import annotations

import itertools
import secrets
import time
from collections.abc import Iterator

import pytest
from PySide6.QtCore import QEvent, QObject, QPoint, QPointF, Qt, QTimer
from PySide6.QtGui import QColor, QGuiApplication, QPalette, QWheelEvent

from app.application import Desktop
from app.views.container_detail import ContainerDetail
from app.views.exec_tab import ExecTab
from app.widgets.terminal import TerminalWidget
from tests.gui.conftest import eventually, run_async

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
    start = time.monotonic()
    for n in range(150):  # 150 chunks over at least 300 ms
        term.feed(f"line {n}\r\n".encode())
        qtbot.wait(2)
    qtbot.wait(50)
    elapsed_ms = (time.monotonic() - start) * 1000
    term.removeEventFilter(counter)
    assert 1 <= len(paints) <= elapsed_ms / TerminalWidget.FRAME_MS + 2 and len(paints) < 75
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


def test_a_shorter_screen_keeps_the_cursor_line_and_scrolls_the_rest_back(term) -> None:
    width, height, _ = term._metrics()
    term.resize(int(80 * width) + 2, int(24 * height) + 2)
    term.feed("\r\n".join(f"l{n}" for n in range(20)).encode())  # the cursor is on row 19
    term.resize(int(80 * width) + 2, int(10 * height) + 2)
    assert term.rows == 10 and term.text()[-1] == "l19" and (term.vt.cursor.y, term.vt.cursor.x) == (9, 3)
    term.scroll_back(10)
    assert term.text()[0] == "l0"
    term.reset()
    term.feed(b"a\r\nb")
    term.resize(int(80 * width) + 2, int(5 * height) + 2)  # blank lines below the cursor go first
    assert term.text()[:2] == ["a", "b"]


def test_full_screen_programs_use_the_alternate_screen(term) -> None:
    term.feed(b"$ less file\r\n")
    term.feed(b"\x1b[?1049h\x1b[H\x1b[2Jpage one" + b"\r\n" * 60 + b"end")  # what less does
    assert term.text()[0] != "$ less file" and term.text()[-1] == "end"
    assert len(term.vt.history) == 0  # pages of a full-screen program stay out of the scrollback
    term.feed(b"\x1b[?1049l")
    assert term.text()[0] == "$ less file" and (term.vt.cursor.y, term.vt.cursor.x) == (1, 0)


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


# -- the Exec tab against a real berthd ----------------------------------------------------------------------


@pytest.fixture
def busybox(berthd_with_busybox) -> Iterator[str]:
    """A running busybox container's name."""
    n = f"exec-{secrets.token_hex(4)}"
    berthd_with_busybox.docker("run", "-d", "--name", n, "busybox", "sleep", "300")
    yield n
    berthd_with_busybox.docker("rm", "-f", n)


def open_exec(qtbot, desktop: Desktop, name: str) -> tuple[ContainerDetail, ExecTab]:
    run_async(qtbot, eventually(lambda: desktop.live.containers.find(name) is not None, 5, "the container"))
    window = desktop.window.open_detail(desktop.live.containers.find(name))
    window.tabs.setCurrentWidget(window.exec_tab)
    return window, window.exec_tab


def connected(qtbot, tab: ExecTab) -> None:
    run_async(qtbot, eventually(lambda: tab.status.text().startswith("Connected"), 10, "the shell"))
    run_async(qtbot, eventually(lambda: any(line.endswith("# ") or line.endswith("#") for line in tab.terminal.text()),
                                10, "the prompt"))


def run_line(qtbot, tab: ExecTab, command: str) -> None:
    qtbot.keyClicks(tab.terminal, command)
    qtbot.keyClick(tab.terminal, Qt.Key.Key_Return)


def shows(tab: ExecTab, text: str) -> bool:
    return any(line.strip() == text for line in tab.terminal.text())


@pytest.mark.root
@pytest.mark.network
def test_exec_tab_runs_a_shell_and_shows_its_output(qtbot, desktop, busybox) -> None:
    window, tab = open_exec(qtbot, desktop, busybox)
    try:
        connected(qtbot, tab)
        assert tab.status.text() == "Connected: /bin/sh"  # busybox has no bash
        run_line(qtbot, tab, "echo hi-$((40+2))")
        run_async(qtbot, eventually(lambda: shows(tab, "hi-42"), 10, "the echo's output"))
        run_line(qtbot, tab, "echo $TERM")
        run_async(qtbot, eventually(lambda: shows(tab, "xterm-256color"), 10, "TERM"))
    finally:
        window.close()


@pytest.mark.root
@pytest.mark.network
def test_exec_tab_size_follows_the_widget(qtbot, desktop, busybox) -> None:
    window, tab = open_exec(qtbot, desktop, busybox)
    try:
        connected(qtbot, tab)
        run_line(qtbot, tab, "stty size")
        run_async(qtbot, eventually(lambda: shows(tab, f"{tab.terminal.rows} {tab.terminal.columns}"), 10, "size"))
        before = (tab.terminal.columns, tab.terminal.rows)
        with qtbot.waitSignal(tab.terminal.resized):
            window.resize(window.width() + 200, window.height() + 100)
        assert (tab.terminal.columns, tab.terminal.rows) != before
        for _ in range(20):  # the resize reaches the exec a moment after the widget's: ask again until it did
            run_line(qtbot, tab, "clear; stty size")
            qtbot.wait(250)
            if shows(tab, f"{tab.terminal.rows} {tab.terminal.columns}"):
                break
        assert shows(tab, f"{tab.terminal.rows} {tab.terminal.columns}"), tab.terminal.text()
    finally:
        window.close()


@pytest.mark.root
@pytest.mark.network
def test_exit_shows_the_code_and_reconnect_opens_a_new_shell(qtbot, desktop, busybox) -> None:
    window, tab = open_exec(qtbot, desktop, busybox)
    try:
        connected(qtbot, tab)
        run_line(qtbot, tab, "exit 3")
        run_async(qtbot, eventually(lambda: tab.status.text() == "Process exited (code 3)", 10, "the exit"))
        assert tab.reconnect.isVisible()
        tab.reconnect.click()
        connected(qtbot, tab)
        assert not tab.reconnect.isVisible()
        run_line(qtbot, tab, "echo again-$((1+1))")
        run_async(qtbot, eventually(lambda: shows(tab, "again-2"), 10, "output of the new shell"))
    finally:
        window.close()


@pytest.mark.root
@pytest.mark.network
def test_closing_the_window_ends_the_session(qtbot, desktop, busybox) -> None:
    window, tab = open_exec(qtbot, desktop, busybox)
    connected(qtbot, tab)
    task, connection = tab._task, tab._connection
    window.close()
    run_async(qtbot, eventually(lambda: task.done() and connection.writer.is_closing(), 5, "the session's end"))


@pytest.mark.root
@pytest.mark.network
def test_a_stopped_container_is_said_in_words(qtbot, desktop, berthd_with_busybox) -> None:
    n = f"exec-{secrets.token_hex(4)}"
    berthd_with_busybox.docker("create", "--name", n, "busybox", "sleep", "300")
    try:
        window, tab = open_exec(qtbot, desktop, n)
        run_async(qtbot, eventually(lambda: tab.reconnect.isVisible(), 10, "the message"))
        assert tab.status.text() == "The container is not running: start it, then Reconnect."
        berthd_with_busybox.docker("start", n)
        tab.reconnect.click()
        connected(qtbot, tab)
        window.close()
    finally:
        berthd_with_busybox.docker("rm", "-f", n)


@pytest.mark.root
@pytest.mark.network
def test_a_missing_container_gives_one_line(qtbot, desktop, berthd_with_busybox) -> None:
    tab = ExecTab(desktop.client, "no-such-container")
    qtbot.addWidget(tab)
    tab.show()
    run_async(qtbot, eventually(lambda: tab.reconnect.isVisible(), 10, "the error"))
    text = tab.status.text()
    assert text.startswith("Could not open a shell: ") and "no-such-container" in text
    assert "\n" not in text and "Traceback" not in text
    tab.stop()
    assert berthd_with_busybox.docker("version").returncode == 0


@pytest.mark.root
@pytest.mark.network
def test_a_flood_of_output_does_not_freeze_the_window(qtbot, desktop, busybox, monkeypatch) -> None:
    window, tab = open_exec(qtbot, desktop, busybox)
    ticks = 0

    def tick() -> None:
        nonlocal ticks
        ticks += 1

    timer = QTimer(interval=0)  # fires whenever Qt gets a turn
    timer.timeout.connect(tick)
    feeds: list[tuple[int, int]] = []  # (bytes fed, Qt turns so far)
    feed = tab.terminal.feed
    monkeypatch.setattr(tab.terminal, "feed", lambda data: (feeds.append((len(data), ticks)), feed(data)))
    try:
        connected(qtbot, tab)
        feeds.clear()
        timer.start()
        run_line(qtbot, tab, "seq 1 40000; echo flood-$((1+1))")
        run_async(qtbot, eventually(lambda: shows(tab, "flood-2"), 60, "the end of the flood"))
        timer.stop()
        assert sum(size for size, _ in feeds) > 200_000 and len(tab.terminal.vt.history) > 1000
        turns = [b - a for (_, a), (_, b) in itertools.pairwise(feeds)]
        assert all(size <= 4096 for size, _ in feeds) and all(turns), "Qt must get a turn between slices"
    finally:
        window.close()
