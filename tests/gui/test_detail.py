"""The container detail view: the JSON model (model tester), the stats math, the ANSI formatter and the log
view without a daemon; then against a real berthd: logs follow, search, timestamps and ANSI; Inspect shows
the container and copies paths; Stats receives samples; the header's links and actions work."""

from __future__ import annotations

import re
import secrets
import socket
import time
from collections.abc import Callable
from typing import Any

import pytest
from PySide6.QtCore import QObject, Qt, QUrl, Slot
from PySide6.QtGui import QColor, QDesktopServices, QGuiApplication, QTextCursor

from app.formatting import parse_timestamp, uptime
from app.models.containers import ContainerRow
from app.views.container_detail import ContainerDetail, inspect_ports, port_links, status_line
from app.views.stats_tab import cpu_percent, rate, stats_point
from app.widgets.charts import LineChart, nice_ceiling
from app.widgets.json_tree import PATH_ROLE, JsonModel, JsonTree, child_path, value_text
from app.widgets.log_view import MAX_LINES, AnsiFormatter, LogView
from backend.api.client import EngineClient
from backend.api.types import Port, StatsSample
from tests.gui.conftest import eventually, run_async

pytestmark = pytest.mark.gui


def daemon(test: Callable[..., None]) -> Callable[..., None]:
    """Marks a test that needs the real berthd."""
    return pytest.mark.root(pytest.mark.network(test))


# -- Inspect: the JSON model and tree -------------------------------------------------------------------

DOC: dict[str, Any] = {"Id": "abc", "State": {"Status": "running", "Pid": 42, "Running": True},
                       "Mounts": [{"Source": "/data"}, {"Source": "/logs"}], "Config": {
                           "Labels": {"com.docker.compose.project": "shop"}, "Cmd": None},
                       "NetworkSettings": {"Networks": {"bridge": {"IPAddress": "172.17.0.2"}}}}


def test_json_model_passes_the_model_tester(qtmodeltester) -> None:
    model = JsonModel()
    qtmodeltester.check(model)
    model.set_document(DOC)
    qtmodeltester.check(model)
    assert model.rowCount() == 5
    state = model.find(".State")
    assert [model.index(r, 0, state).data() for r in range(3)] == ["Status", "Pid", "Running"]
    assert [model.index(1, c, state).data() for c in range(3)] == ["Pid", "42", "number"]
    assert model.index(0, 1, model.find(".Mounts")).data() == "{1}"
    assert model.find(".Config.Cmd").siblingAtColumn(2).data() == "null"
    model.set_document({"Id": "other"})
    qtmodeltester.check(model)
    assert model.rowCount() == 1 and not model.find(".State").isValid()


def test_json_paths_are_jq_paths() -> None:
    assert child_path("", "NetworkSettings") == ".NetworkSettings"
    assert child_path(".Mounts", 0) == ".Mounts[0]"
    assert child_path(".Config.Labels", "com.docker.compose.project") == '.Config.Labels["com.docker.compose.project"]'
    assert value_text("text") == "text" and value_text(3) == "3" and value_text(None) == "null"
    assert value_text({"a": 1}) == '{\n  "a": 1\n}'


def test_json_tree_filters_by_key_and_copies(qtbot) -> None:
    tree = JsonTree()
    qtbot.addWidget(tree)
    tree.set_document(DOC)
    assert tree.select_path(".NetworkSettings.Networks.bridge.IPAddress")
    tree.copy_path()
    assert QGuiApplication.clipboard().text() == ".NetworkSettings.Networks.bridge.IPAddress"
    tree.copy_value()
    assert QGuiApplication.clipboard().text() == "172.17.0.2"
    tree.view.expand(tree.proxy.mapFromSource(tree.model.find(".State")))
    tree.set_document({**DOC, "Id": "def"})  # a refresh keeps what was expanded
    assert tree.view.isExpanded(tree.proxy.mapFromSource(tree.model.find(".State")))
    tree.filter.setText("ipaddr")
    shown = tree.proxy.index(0, 0)
    assert tree.proxy.rowCount() == 1 and shown.data(PATH_ROLE) == ".NetworkSettings"
    tree.copy_all()
    assert '"Id": "def"' in QGuiApplication.clipboard().text()


# -- Stats: the math and the chart ----------------------------------------------------------------------

def stats_doc(read: str, cpu: int, system: int, *, precpu: tuple[int, int] = (0, 0), rx: int = 0,
              memory: int = 0) -> StatsSample:
    return StatsSample.from_json({
        "read": read, "cpu_stats": {"cpu_usage": {"total_usage": cpu}, "system_cpu_usage": system, "online_cpus": 2},
        "precpu_stats": {"cpu_usage": {"total_usage": precpu[0]}, "system_cpu_usage": precpu[1]},
        "memory_stats": {"usage": memory, "limit": 1 << 30, "stats": {"inactive_file": 1000}},
        "networks": {"eth0": {"rx_bytes": rx, "tx_bytes": rx // 2}},
        "blkio_stats": {"io_service_bytes_recursive": [{"op": "Read", "value": rx * 3}]}})


def test_cpu_percent_as_docker_computes_it() -> None:
    before = {"cpu_usage": {"total_usage": 1_000}, "system_cpu_usage": 100_000, "online_cpus": 4}
    after = {"cpu_usage": {"total_usage": 6_000}, "system_cpu_usage": 200_000, "online_cpus": 4}
    assert cpu_percent(before, after) == pytest.approx(5_000 / 100_000 * 4 * 100)
    assert cpu_percent(after, before) == 0.0  # counters went back
    assert cpu_percent({}, after) == 0.0  # no earlier reading
    assert cpu_percent(before, {"cpu_usage": {"total_usage": 2_000, "percpu_usage": [1, 1]},
                                "system_cpu_usage": 101_000}) == pytest.approx(200.0)


def test_rates_from_deltas() -> None:
    assert rate(1_000, 3_000, 2.0) == 1_000.0
    assert rate(3_000, 1_000, 1.0) == 0.0  # restarted: the counter reset
    assert rate(0, 10, 0.0) == 0.0
    first = stats_doc("2024-05-01T10:00:00.000000000Z", 2_000, 20_000, precpu=(1_000, 10_000), rx=1_000,
                      memory=5_000)
    second = stats_doc("2024-05-01T10:00:00.500000000Z", 3_000, 30_000, rx=2_000, memory=7_000)
    start = stats_point(None, first)
    assert start.cpu_percent == pytest.approx(20.0) and start.net_rx_rate == 0.0
    assert start.memory_used == 4_000 and start.memory_limit == 1 << 30
    point = stats_point(first, second)
    assert point.cpu_percent == pytest.approx(20.0)
    assert (point.net_rx_rate, point.net_tx_rate, point.block_read_rate) == (2_000.0, 1_000.0, 6_000.0)


def test_timestamps_and_uptime() -> None:
    assert parse_timestamp("2024-05-01T10:00:00.5Z") == pytest.approx(1714557600.5)
    assert parse_timestamp("2024-05-01T12:00:00+02:00") == pytest.approx(1714557600.0)
    assert parse_timestamp("0001-01-01T00:00:00Z") is None and parse_timestamp("soon") is None
    assert uptime("2024-05-01T10:00:00Z", now=1714557600 + 300) == "up 5 minutes"
    assert uptime("") == ""


def test_line_chart_scales_labels_and_draws(qtbot) -> None:
    assert [nice_ceiling(v) for v in (0.3, 1, 1.5, 3, 7, 4200)] == [0.5, 1, 2, 5, 10, 5000]
    chart = LineChart("Network", ["rx", "tx"], lambda v: f"{v:.0f}B/s", capacity=5)
    qtbot.addWidget(chart)
    chart.resize(300, 160)
    with pytest.raises(ValueError):
        chart.add(1.0)
    for value in range(8):
        chart.add(value * 100.0, 50.0)
    assert chart.values(0) == [300.0, 400.0, 500.0, 600.0, 700.0]
    assert chart.axis_max() == 1000.0
    assert chart.title_text() == "Network  ■ rx 700B/s  ■ tx 50B/s"
    image = chart.grab().toImage()
    blue = QColor("#2f7ed8").rgb()
    assert any(image.pixel(x, y) == blue for x in range(image.width()) for y in range(image.height()))


# -- Logs without a daemon ------------------------------------------------------------------------------

def test_ansi_formatter_colours_and_split_escapes() -> None:
    ansi = AnsiFormatter()
    runs = ansi.runs("\x1b[1;31mred\x1b[0m plain \x1b[38;5;21mblue\x1b[38;2;1;2;3mrgb\x1b[")
    assert [text for text, _ in runs] == ["red", " plain ", "blue", "rgb"]
    assert runs[0][1].foreground().color().name() == "#cd3131" and runs[0][1].fontWeight() > 400
    assert not runs[1][1].hasProperty(runs[1][1].Property.ForegroundBrush)
    assert runs[2][1].foreground().color().name() == "#0000ff"
    assert runs[3][1].foreground().color().name() == "#010203"
    rest = ansi.runs("32mgreen\x1b[2Kcleared")  # the escape cut at the end of the last chunk
    assert [(t, f.foreground().color().name()) for t, f in rest] == [("green", "#0dbc79"), ("cleared", "#0dbc79")]


@pytest.fixture
def log_view(qtbot) -> LogView:
    view = LogView(EngineClient("unix:///nonexistent.sock"), "none")  # no stream: fed by hand
    qtbot.addWidget(view)
    view.show()
    return view


def test_log_search_highlights_counts_and_steps(qtbot, log_view, tmp_path) -> None:
    log_view.append("alpha ERROR one\nbeta\n")
    log_view.append("gamma error two\n\x1b[31merror\x1b[0m three\n")
    qtbot.waitUntil(lambda: "three" in log_view.text.toPlainText())
    log_view.search.setText("error")
    assert len(log_view.text.extraSelections()) == 3 and log_view.match_label.text() == "3 matches"
    qtbot.keyClick(log_view.search, Qt.Key.Key_Return)
    assert log_view.match_label.text() == "1 of 3"
    qtbot.keyClick(log_view.search, Qt.Key.Key_Return)
    assert log_view.text.textCursor().selectedText() == "error" and log_view.match_label.text() == "2 of 3"
    qtbot.keyClick(log_view.search, Qt.Key.Key_Return, Qt.KeyboardModifier.ShiftModifier)
    qtbot.keyClick(log_view.search, Qt.Key.Key_Return, Qt.KeyboardModifier.ShiftModifier)
    assert log_view.match_label.text() == "3 of 3"  # wrapped around backwards
    log_view.copy()
    assert QGuiApplication.clipboard().text() == "error"
    log_view.text.moveCursor(QTextCursor.MoveOperation.Start)
    log_view.copy()
    assert QGuiApplication.clipboard().text() == log_view.text.toPlainText()
    log_view.save(str(tmp_path / "saved.log"))
    assert (tmp_path / "saved.log").read_text() == "alpha ERROR one\nbeta\ngamma error two\nerror three\n"


def test_log_view_stays_responsive_with_100k_lines(qtbot, log_view) -> None:
    started = time.monotonic()
    for chunk in range(200):
        log_view.append("".join(f"\x1b[32mline {chunk * 1000 + i}\x1b[0m\n" for i in range(1000)))
        if chunk % 20 == 0:
            qtbot.wait(0)  # the event loop ticks between chunks, as with a stream
    log_view.flush()
    elapsed = time.monotonic() - started
    assert log_view.text.document().blockCount() <= MAX_LINES + 1
    assert log_view.text.toPlainText().rstrip().endswith("line 199999")
    assert elapsed < 30, f"200,000 lines took {elapsed:.1f}s"
    started = time.monotonic()
    log_view.search.setText("line 19999")
    assert time.monotonic() - started < 5 and log_view.match_label.text() == "10 matches"  # 199990-199999
    log_view.clear()
    assert log_view.text.toPlainText() == "" and log_view.match_label.text() == "0 matches"
    log_view.append("after\n")
    qtbot.waitUntil(lambda: log_view.text.toPlainText() == "after\n")


# -- Header helpers -------------------------------------------------------------------------------------

def test_header_ports_and_state_words() -> None:
    ports = inspect_ports({"Ports": {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"},
                                                {"HostIp": "::", "HostPort": "8080"}],
                                     "53/udp": [{"HostIp": "", "HostPort": "5353"}], "443/tcp": None,
                                     "bad": [{"HostPort": "x"}]}})
    assert Port(80, "tcp", "0.0.0.0", 8080) in ports and len(ports) == 3
    assert port_links(ports) == '5353→53/udp <a href="http://localhost:8080">8080→80</a>'
    assert status_line({"Status": "exited", "ExitCode": 3}) == "Exited (3)"
    assert status_line({"Status": "running", "Health": {"Status": "unhealthy"}}) == "Up (unhealthy)"
    assert status_line({"Status": "running"}) == "Up"


# -- Against the real daemon ----------------------------------------------------------------------------

def name() -> str:
    return f"detail-{secrets.token_hex(4)}"


def open_detail(qtbot, app: Any, ref: str) -> ContainerDetail:
    run_async(qtbot, eventually(lambda: app.live.containers.find(ref) is not None, 5, f"{ref} in the list"))
    window: ContainerDetail = app.window.open_detail(app.live.containers.find(ref))
    run_async(qtbot, window.settle())
    return window


def plain(window: ContainerDetail) -> str:
    return window.logs.text.toPlainText()


@daemon
def test_logs_follow_search_timestamps_and_clear(qtbot, desktop, berthd_with_busybox) -> None:
    n = name()
    berthd_with_busybox.docker("run", "-d", "--name", n, "busybox", "sh", "-c",
                               "for i in 1 2 3; do echo tick $i; sleep 0.3; done; sleep 2; echo late; sleep 60")
    try:
        window = open_detail(qtbot, desktop, n)
        run_async(qtbot, eventually(lambda: "tick 3" in plain(window), 10, "followed lines"))
        window.logs.search.setText("tick")
        assert window.logs.match_label.text() == "3 matches" and len(window.logs.text.extraSelections()) == 3
        qtbot.keyClick(window.logs.search, Qt.Key.Key_Return)
        assert window.logs.match_label.text() == "1 of 3"
        window.logs.timestamps.setChecked(True)  # restarts the stream with timestamps=true
        run_async(qtbot, eventually(lambda: "tick 3" in plain(window), 10, "lines again"))
        stamp = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d) tick \d$")
        lines = [line for line in plain(window).splitlines() if "tick" in line]
        assert len(lines) == 3 and all(stamp.match(line) for line in lines), lines
        window.logs.clear()  # view only: the late line still comes, and a restart starts after the clear
        run_async(qtbot, eventually(lambda: "late" in plain(window), 10, "the line after the clear"))
        assert "tick" not in plain(window)
        window.logs.timestamps.setChecked(False)
        run_async(qtbot, eventually(lambda: not window.logs.timestamps.isChecked() and window.logs.streaming, 5))
        qtbot.wait(500)
        assert "tick" not in plain(window)
        window.close()
    finally:
        berthd_with_busybox.docker("rm", "-f", n)


@daemon
def test_logs_follow_a_restarted_container(qtbot, desktop, berthd_with_busybox) -> None:
    n = name()
    berthd_with_busybox.docker("run", "-d", "--name", n, "busybox", "sh", "-c", "echo boot; sleep 60")
    try:
        window = open_detail(qtbot, desktop, n)
        run_async(qtbot, eventually(lambda: plain(window).count("boot") == 1, 10, "the first boot"))
        berthd_with_busybox.docker("restart", "-t", "0", n)
        run_async(qtbot, eventually(lambda: plain(window).count("boot") == 2, 15, "the second boot, followed"))
        window.close()
    finally:
        berthd_with_busybox.docker("rm", "-f", n)


@daemon
def test_logs_render_ansi_colours(qtbot, desktop, berthd_with_busybox) -> None:
    n = name()
    berthd_with_busybox.docker("run", "-d", "--name", n, "busybox", "sh", "-c",
                               r"printf '\033[31mred\033[0m plain\n'; sleep 60")
    try:
        window = open_detail(qtbot, desktop, n)
        run_async(qtbot, eventually(lambda: "red plain" in plain(window), 10, "the coloured line"))
        assert "\x1b" not in plain(window) and "[31m" not in plain(window)
        cursor = QTextCursor(window.logs.text.document())
        cursor.setPosition(plain(window).index("red") + 1)
        assert cursor.charFormat().foreground().color().name() == "#cd3131"
        window.close()
    finally:
        berthd_with_busybox.docker("rm", "-f", n)


@daemon
def test_inspect_shows_the_container_and_follows_its_state(qtbot, desktop, berthd_with_busybox) -> None:
    n = name()
    ident = berthd_with_busybox.docker("run", "-d", "--name", n, "busybox", "sleep", "60").stdout.strip()
    try:
        window = open_detail(qtbot, desktop, n)
        window.tabs.setCurrentWidget(window.inspect)
        model = window.inspect.model
        assert model.find(".Id").siblingAtColumn(1).data() == ident
        assert window.inspect.select_path(".State.Status")
        window.inspect.copy_path()
        assert QGuiApplication.clipboard().text() == ".State.Status"
        window.inspect.copy_value()
        assert QGuiApplication.clipboard().text() == "running"
        assert "running" in window.state.text()
        berthd_with_busybox.docker("stop", "-t", "0", n)
        run_async(qtbot, eventually(lambda: model.find(".State.Status").siblingAtColumn(1).data() == "exited", 10,
                                    "the refreshed inspect"))
        assert "exited (137)" in window.state.text() and window.stats.status.text() == "Not running"
        assert window.buttons["Start"].isEnabled() and not window.buttons["Stop"].isEnabled()
        window.close()
    finally:
        berthd_with_busybox.docker("rm", "-f", n)


@daemon
def test_stats_receive_samples_while_shown(qtbot, desktop, berthd_with_busybox) -> None:
    n = name()
    berthd_with_busybox.docker("run", "-d", "--name", n, "busybox", "sleep", "60")
    try:
        window = open_detail(qtbot, desktop, n)
        assert window.stats._task is None  # not shown yet: no stream
        window.tabs.setCurrentWidget(window.stats)
        run_async(qtbot, eventually(lambda: window.stats.samples >= 2, 15, "two samples"))
        assert (window.stats.memory.latest() or 0) > 0
        assert window.stats.memory.title_text().startswith("Memory ") and "of " in window.stats.memory.title_text()
        assert len(window.stats.cpu.values()) >= 2
        window.tabs.setCurrentWidget(window.logs)  # hidden: the stream stops
        assert window.stats._task is None
        count = window.stats.samples
        qtbot.wait(1500)
        assert window.stats.samples == count
        window.close()
    finally:
        berthd_with_busybox.docker("rm", "-f", n)


class UrlCatcher(QObject):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    @Slot(QUrl)
    def open(self, url: QUrl) -> None:
        self.urls.append(url.toString())


@daemon
def test_header_links_and_actions_change_the_container(qtbot, desktop, berthd_with_busybox) -> None:
    n = name()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    berthd_with_busybox.docker("run", "-d", "--name", n, "-p", f"127.0.0.1:{port}:80", "busybox", "sleep", "60")

    def running() -> str:
        return berthd_with_busybox.docker("inspect", "-f", "{{.State.Running}}", n).stdout.strip()

    catcher = UrlCatcher()
    QDesktopServices.setUrlHandler("http", catcher, "open")
    try:
        window = open_detail(qtbot, desktop, n)
        assert f'href="http://localhost:{port}"' in window.ports.text()
        window.ports.linkActivated.emit(f"http://localhost:{port}")
        assert catcher.urls == [f"http://localhost:{port}"]
        window.buttons["Stop"].click()
        run_async(qtbot, eventually(lambda: not window.running and window.buttons["Start"].isEnabled(), 20, "stop"))
        assert running() == "false"
        window.buttons["Start"].click()
        run_async(qtbot, eventually(lambda: window.running and window.buttons["Stop"].isEnabled(), 20, "start"))
        assert running() == "true" and "up " in window.state.text()
        window.confirm = lambda question: True
        ident = window.container_id
        window.buttons["Delete"].click()
        run_async(qtbot, eventually(lambda: ident not in desktop.window.detail_windows and
                                    desktop.live.containers.find(n) is None, 20, "delete"))
        assert berthd_with_busybox.docker("inspect", n, check=False).returncode != 0
    finally:
        QDesktopServices.unsetUrlHandler("http")
        berthd_with_busybox.docker("rm", "-f", n, check=False)


@daemon
def test_a_missing_container_gives_one_line_errors(qtbot, desktop, berthd_with_busybox) -> None:
    ghost = ContainerRow("0" * 64, "ghost", "busybox", "running", "Up", (), 0)
    window = desktop.window.open_detail(ghost)
    run_async(qtbot, window.settle())
    run_async(qtbot, eventually(lambda: "No such container" in plain(window), 10, "the log error"))
    banner = desktop.window.banner.text
    assert "No such container" in banner and "\n" not in banner and "Traceback" not in banner
    window.close()
    assert berthd_with_busybox.docker("version").returncode == 0
