"""The Containers, Volumes and Networks pages against a real berthd (offscreen): live CPU and memory, port chips
that open the browser, the context menu, Compose project delete, the state filter; volumes and networks created,
inspected and deleted from their pages; and their models under pytest-qt's model tester (no windows)."""

from __future__ import annotations

import json
import secrets
import socket

import pytest
from PySide6.QtCore import QModelIndex, QPersistentModelIndex, QSettings, Qt, QUrl
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QDialogButtonBox

from app.application import Desktop
from app.engine_session import EngineState
from app.models.containers import CPU, MEMORY, PORTS, PORTS_ROLE, ContainerRow, ContainersModel, ProjectGroup, Usage
from app.models.networks import NetworkMember, NetworkRow, NetworksModel
from app.models.table import ROW_ROLE, SORT_ROLE
from app.models.volumes import VolumeRow, VolumesModel
from app.settings import Settings
from app.views.networks_page import NetworksPage, network_spec
from app.views.table_page import parse_labels
from app.views.volumes_page import VolumesPage
from backend.api.types import Port
from tests.gui.conftest import eventually, run_async

pytestmark = pytest.mark.gui


def needs_daemon(test):
    """Marks a test that uses the ``desktop`` fixture (a real berthd)."""
    return pytest.mark.network(pytest.mark.root(test))


# -- models and pure helpers (no daemon, no windows) ------------------------------------------------------------

def row(ident: str, name: str, state: str = "running", project: str = "", ports: tuple[Port, ...] = (),
        volumes: tuple[str, ...] = ()) -> ContainerRow:
    return ContainerRow(ident, name, "busybox", state, "Up 1 minute" if state == "running" else "Exited (0) now",
                        ports, 1_700_000_000, project, name.split("-")[1] if project else "", "", volumes)


def test_containers_model_live_usage_and_port_chips(qtmodeltester) -> None:
    model = ContainersModel()
    model.set_rows([row("a1", "shop-web-1", project="shop", ports=(Port(80, "tcp", "0.0.0.0", 8080),
                                                                    Port(53, "udp", "0.0.0.0", 5353))),
                    row("a2", "shop-db-1", project="shop"), row("b1", "solo"), row("c1", "done", state="exited")])
    changes: list[tuple[int, int]] = []
    model.dataChanged.connect(lambda top, bottom: changes.append((top.column(), bottom.column())))
    model.set_usage("a1", Usage(12.5, 3_000_000))
    model.set_usage("a2", Usage(1.0, 1_000_000))
    model.set_usage("b1", Usage(0.25, 512_000))
    model.set_usage("c1", Usage(50.0, 1))  # not running: ignored
    qtmodeltester.check(model)
    assert changes and all(c == (CPU, MEMORY) for c in changes)  # only the numbers' cells, never a reset
    group = model.index(0, 0)
    assert model.index(0, CPU, group).data() == "12.5%" and model.index(0, MEMORY, group).data() == "3MB"
    assert model.index(0, CPU).data() == "13.5%"  # the project's sum
    assert model.index(1, CPU).data() == "0.2%" and model.data(model.index(1, CPU), SORT_ROLE) == 0.25
    assert model.index(2, CPU).data() == "" and model.usage("c1") is None
    assert model.index(0, PORTS, group).data(PORTS_ROLE) == (("5353→53/udp", 0), ("8080→80", 8080))
    model.set_rows([row("a1", "shop-web-1", project="shop", state="exited"), row("a2", "shop-db-1", project="shop"),
                    row("b1", "solo")])
    qtmodeltester.check(model)
    assert model.usage("a1") is None and model.usage("a2") is not None  # stopped: its numbers are forgotten


def test_containers_model_sorts_itself_and_keeps_the_order(qtmodeltester) -> None:
    model = ContainersModel()
    model.set_rows([row("b1", "beta"), row("a1", "shop-web-1", project="shop"), row("a2", "shop-db-1", project="shop"),
                    row("c1", "alpha")])
    kept = QPersistentModelIndex(model.index(0, 0))  # beta, as a selection would hold it
    model.sort(0, Qt.SortOrder.DescendingOrder)
    qtmodeltester.check(model)
    assert [model.index(r, 0).data() for r in range(3)] == ["shop", "beta", "alpha"]
    assert [model.index(r, 0, model.index(0, 0)).data() for r in range(2)] == ["web", "db"]
    assert kept.row() == 1 and kept.data(ROW_ROLE).name == "beta"
    model.set_rows([*model.containers(), row("d1", "delta")])  # a new row lands in its place
    qtmodeltester.check(model)
    assert [model.index(r, 0).data() for r in range(4)] == ["shop", "delta", "beta", "alpha"]
    model.set_usage("c1", Usage(9.0, 1))
    model.sort(CPU, Qt.SortOrder.DescendingOrder)
    assert model.index(0, 0).data() == "alpha"


def test_volumes_and_networks_models(qtmodeltester) -> None:
    volumes = VolumesModel()
    volumes.set_rows([VolumeRow("data", "local", "/v/data", "2024-01-01T00:00:00Z"),
                      VolumeRow("cache", "local", "/v/cache", "2024-01-02T00:00:00Z")])
    volumes.set_sizes({"data": 2048, "cache": -1})
    volumes.set_users({"data": ("web", "api")})
    qtmodeltester.check(volumes)
    assert [volumes.index(0, c).data() for c in range(4)] == ["data", "local", "2.048kB", "api, web"]
    assert volumes.index(1, 2).data() == "" and volumes.index(1, 3).data() == ""
    assert volumes.data(volumes.index(0, 2), SORT_ROLE) == 2048
    networks = NetworksModel()
    networks.set_rows([NetworkRow("n" * 64, "bridge", "bridge", ("172.17.0.0/16",), 1,
                                  (NetworkMember("web", "172.17.0.2"),)),
                       NetworkRow("m" * 64, "back", "bridge", (), 0, internal=True)])
    qtmodeltester.check(networks)
    assert networks.index(0, 3).data() == "web 172.17.0.2" and networks.index(1, 1).data() == "bridge (internal)"
    assert networks.rows[0].predefined and not networks.rows[1].predefined


@pytest.mark.parametrize(("subnet", "gateway", "message"), [
    ("10.9.8.7/24", "", "did you mean 10.9.8.0/24"),
    ("10.9.8.0/33", "", "expected a network"),
    ("banana", "", "expected a network"),
    ("10.9.8.0/24", "10.9.9.1", "not in the subnet"),
    ("", "10.9.8.1", "needs a subnet"),
])
def test_network_spec_rejects_bad_addresses(subnet: str, gateway: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        network_spec("n", "bridge", subnet, gateway, False, "")


def test_network_spec_and_labels() -> None:
    spec = network_spec(" n ", "bridge", "fd00:1::/64", "fd00:1::1", True, "a=1, b = two ,")
    assert (spec.name, spec.subnet, spec.gateway, spec.internal, spec.labels) == \
        ("n", "fd00:1::/64", "fd00:1::1", True, {"a": "1", "b": "two"})
    with pytest.raises(ValueError, match="'oops': expected KEY=VALUE"):
        parse_labels("a=1, oops")


# -- against the daemon ---------------------------------------------------------------------------------------

@pytest.fixture
def desktop(qtbot, berthd_with_busybox, qloop, tmp_path):
    app = Desktop(berthd_with_busybox.url, Settings(QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat)),
                  notify=False)
    for page in (app.window.containers_page, *app.window.pages.values()):
        if hasattr(page, "confirm"):
            page.confirm = lambda question: True
    app.start()
    app.window.show_page(0)
    run_async(qtbot, eventually(lambda: app.session.state is EngineState.RUNNING, 10, "the engine"))
    yield app
    run_async(qtbot, app.close())


def unique() -> str:
    return f"pg-{secrets.token_hex(4)}"


def find(app: Desktop, ref: str) -> ContainerRow | None:
    return app.live.containers.find(ref)


def proxy_index(page, predicate, column: int = 0) -> QModelIndex:
    """The proxy index (top level or child) whose row object satisfies ``predicate``."""
    pending = [QModelIndex()]
    while pending:
        parent = pending.pop()
        for number in range(page.proxy.rowCount(parent)):
            index = page.proxy.index(number, column, parent)
            if predicate(index.data(ROW_ROLE)):
                return index
            pending.append(page.proxy.index(number, 0, parent))
    return QModelIndex()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@needs_daemon
def test_cpu_and_memory_appear_for_a_running_container(qtbot, desktop, berthd_with_busybox) -> None:
    n = unique()
    berthd_with_busybox.docker("run", "-d", "--name", n, "busybox", "sh", "-c", "while :; do :; done")
    try:
        run_async(qtbot, eventually(lambda: find(desktop, n) is not None, 2, "run"))
        page = desktop.window.containers_page
        assert page.isVisible() and page.poller.running
        run_async(qtbot, eventually(lambda: (u := desktop.live.containers.usage(find(desktop, n).id)) is not None
                                    and u.cpu_percent > 5 and u.memory > 0, 15, "CPU and memory"))
        cpu = proxy_index(page, lambda r: isinstance(r, ContainerRow) and r.name == n, CPU).data()
        memory = proxy_index(page, lambda r: isinstance(r, ContainerRow) and r.name == n, MEMORY).data()
        assert cpu.endswith("%") and float(cpu[:-1]) > 5 and memory[-1] == "B"
        desktop.window.show_page(2)  # another page: the sampling stops
        assert not page.poller.running
    finally:
        berthd_with_busybox.docker("rm", "-f", n)


@needs_daemon
def test_port_chip_click_opens_the_browser(qtbot, desktop, berthd_with_busybox) -> None:
    n, port = unique(), free_port()
    berthd_with_busybox.docker("run", "-d", "--name", n, "-p", f"127.0.0.1:{port}:80", "busybox", "sleep", "60")
    page = desktop.window.containers_page
    opened: list[QUrl] = []
    page.open_url = opened.append
    try:
        run_async(qtbot, eventually(lambda: proxy_index(page, lambda r: getattr(r, "name", "") == n).isValid(), 2,
                                    "the row"))
        index = proxy_index(page, lambda r: getattr(r, "name", "") == n, PORTS)
        page.view.scrollTo(index)
        chips = index.data(PORTS_ROLE)
        assert chips == ((f"{port}→80", port),)
        rect = page.ports.chip_rects(page.view.visualRect(index), page.view.fontMetrics(), chips)[0]
        qtbot.mouseClick(page.view.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
        assert [url.toString() for url in opened] == [f"http://localhost:{port}"]
        page.filter.setText(str(port))  # the filter matches ports
        assert proxy_index(page, lambda r: getattr(r, "name", "") == n).isValid()
        page.filter.setText("no-such-thing")
        assert not proxy_index(page, lambda r: getattr(r, "name", "") == n).isValid()
        page.filter.clear()
    finally:
        berthd_with_busybox.docker("rm", "-f", n)


@needs_daemon
def test_context_menu_pause_resume_and_state_filter(qtbot, desktop, berthd_with_busybox) -> None:
    n, stopped = unique(), unique()
    berthd_with_busybox.docker("run", "-d", "--name", n, "busybox", "sleep", "60")
    berthd_with_busybox.docker("create", "--name", stopped, "busybox", "true")
    page = desktop.window.containers_page
    try:
        run_async(qtbot, eventually(lambda: find(desktop, n) is not None and find(desktop, stopped) is not None, 2,
                                    "the rows"))
        actions = {a.text(): a for a in page.context_menu(find(desktop, n)).actions()}
        assert {"Start", "Stop", "Restart", "Pause", "Resume", "Logs", "Copy ID", "Delete…"} <= set(actions)
        assert not actions["Start"].isEnabled() and not actions["Resume"].isEnabled()
        actions["Pause"].trigger()
        run_async(qtbot, eventually(lambda: find(desktop, n).state == "paused", 10, "paused"))
        assert berthd_with_busybox.docker("inspect", "-f", "{{.State.Status}}", n).stdout.strip() == "paused"
        state = proxy_index(page, lambda r: getattr(r, "name", "") == n, 2)
        assert state.data() == "paused" and state.data(Qt.ItemDataRole.ForegroundRole).name() == "#d99a00"
        {a.text(): a for a in page.context_menu(find(desktop, n)).actions()}["Resume"].trigger()
        run_async(qtbot, eventually(lambda: find(desktop, n).state == "running", 10, "resumed"))
        {a.text(): a for a in page.context_menu(find(desktop, n)).actions()}["Copy ID"].trigger()
        assert QGuiApplication.clipboard().text() == find(desktop, n).id
        page.state_filter.setCurrentText("Running")
        assert proxy_index(page, lambda r: getattr(r, "name", "") == n).isValid()
        assert not proxy_index(page, lambda r: getattr(r, "name", "") == stopped).isValid()
        page.state_filter.setCurrentText("Stopped")
        assert not proxy_index(page, lambda r: getattr(r, "name", "") == n).isValid()
        assert proxy_index(page, lambda r: getattr(r, "name", "") == stopped).isValid()
        page.state_filter.setCurrentText("All")
    finally:
        berthd_with_busybox.docker("rm", "-f", n, stopped)


@needs_daemon
def test_project_delete_removes_all_members(qtbot, desktop, berthd_with_busybox) -> None:
    project = unique()
    names = [f"{project}-{service}-1" for service in ("web", "db", "job")]
    for container, service in zip(names, ("web", "db", "job"), strict=True):
        berthd_with_busybox.docker("run", "-d", "--name", container, "--label", f"com.docker.compose.project={project}",
                                   "--label", f"com.docker.compose.service={service}", "busybox", "sleep", "60")
    berthd_with_busybox.docker("stop", "-t", "0", names[2])
    page = desktop.window.containers_page
    try:
        run_async(qtbot, eventually(lambda: any(g.name == project and len(g.children) == 3 and g.running == 2
                                                for g in desktop.live.containers.projects()), 5, "the group"))
        group = next(g for g in desktop.live.containers.projects() if g.name == project)
        page.filter.setText(project)  # the filter matches the project: group and members stay
        assert proxy_index(page, lambda r: isinstance(r, ProjectGroup) and r.name == project).isValid()
        assert proxy_index(page, lambda r: getattr(r, "name", "") == names[1]).isValid()
        page.filter.clear()
        actions = {a.text(): a for a in page.context_menu(group).actions()}
        assert {"Start project", "Stop project", "Restart project", "Delete project…"} <= set(actions)
        actions["Delete project…"].trigger()
        run_async(qtbot, eventually(lambda: all(find(desktop, c) is None for c in names), 30, "project deleted"))
        for container in names:
            assert berthd_with_busybox.docker("inspect", container, check=False).returncode != 0
        assert desktop.window.banner.text == ""
    finally:
        berthd_with_busybox.docker("rm", "-f", *names, check=False)


@needs_daemon
def test_volume_create_used_by_size_inspect_delete(qtbot, desktop, berthd_with_busybox) -> None:
    volume, user = unique(), unique()
    page: VolumesPage = desktop.window.pages["Volumes"]
    desktop.window.show_page(2)
    dialog = page.show_create()
    dialog.name.setText(volume)
    dialog.labels.setText("team=blue")
    dialog.buttons.button(QDialogButtonBox.StandardButton.Ok).click()
    try:
        run_async(qtbot, eventually(lambda: any(r.name == volume for r in page.volumes.rows), 5, "created"))
        inspected = json.loads(berthd_with_busybox.docker("volume", "inspect", volume).stdout)[0]
        assert inspected["Labels"] == {"team": "blue"} and inspected["Driver"] == "local"
        berthd_with_busybox.docker("run", "--name", user, "-v", f"{volume}:/data", "busybox", "sh", "-c",
                                   "head -c 300000 /dev/zero > /data/blob")
        run_async(qtbot, eventually(lambda: page.volumes.users_of(volume) == (user,), 5, "used by"))
        page.refresh_sizes()
        run_async(qtbot, eventually(lambda: (page.volumes.size_of(volume) or 0) >= 300_000, 5, "size"))
        index = proxy_index(page, lambda r: getattr(r, "name", "") == volume, 3)
        assert index.data() == user
        page.select(lambda r: getattr(r, "name", "") == volume)
        page.inspect_button.click()
        run_async(qtbot, eventually(lambda: page.inspect_dialog is not None, 5, "inspect"))
        assert json.loads(page.inspect_dialog.text.toPlainText())["Name"] == volume
        page.inspect_dialog.close()
        berthd_with_busybox.docker("rm", user)
        run_async(qtbot, eventually(lambda: page.volumes.users_of(volume) == (), 5, "no longer used"))
        page.select(lambda r: getattr(r, "name", "") == volume)
        page.delete_button.click()
        run_async(qtbot, eventually(lambda: all(r.name != volume for r in page.volumes.rows), 5, "deleted"))
        assert berthd_with_busybox.docker("volume", "inspect", volume, check=False).returncode != 0
    finally:
        berthd_with_busybox.docker("rm", "-f", user, check=False)
        berthd_with_busybox.docker("volume", "rm", "-f", volume, check=False)


@needs_daemon
def test_network_create_connected_inspect_delete(qtbot, desktop, berthd_with_busybox) -> None:
    network, member = unique(), unique()
    page: NetworksPage = desktop.window.pages["Networks"]
    dialog = page.show_create()
    dialog.name.setText(network)
    dialog.subnet.setText("10.199.37.5/24")  # host bits set: an inline error, the dialog stays open
    dialog.buttons.button(QDialogButtonBox.StandardButton.Ok).click()
    assert dialog.isVisible() and dialog.error.isVisibleTo(dialog)
    assert dialog.error.text() == "Subnet '10.199.37.5/24' has host bits set: did you mean 10.199.37.0/24?"
    dialog.subnet.setText("10.199.37.0/24")
    dialog.gateway.setText("10.199.37.1")
    dialog.labels.setText("team=blue")
    dialog.buttons.button(QDialogButtonBox.StandardButton.Ok).click()
    assert not dialog.isVisible()
    try:
        run_async(qtbot, eventually(lambda: any(r.name == network for r in page.model.rows), 5, "created"))
        inspected = json.loads(berthd_with_busybox.docker("network", "inspect", network).stdout)[0]
        assert inspected["IPAM"]["Config"][0]["Subnet"] == "10.199.37.0/24" and inspected["Labels"] == {"team": "blue"}
        berthd_with_busybox.docker("run", "-d", "--name", member, "--network", network, "busybox", "sleep", "60")
        run_async(qtbot, eventually(
            lambda: any(r.name == network and any(m.name == member and m.address.startswith("10.199.37.")
                                                  for m in r.members) for r in page.model.rows), 5, "connected"))
        page.select(lambda r: getattr(r, "name", "") == network)
        page.inspect_button.click()
        run_async(qtbot, eventually(lambda: page.inspect_dialog is not None, 5, "inspect"))
        assert json.loads(page.inspect_dialog.text.toPlainText())["Name"] == network
        page.inspect_dialog.close()
        berthd_with_busybox.docker("rm", "-f", member)
        page.select(lambda r: getattr(r, "name", "") == network)
        assert page.delete_button.isEnabled()
        page.delete_button.click()
        run_async(qtbot, eventually(lambda: all(r.name != network for r in page.model.rows), 10, "deleted"))
        assert berthd_with_busybox.docker("network", "inspect", network, check=False).returncode != 0
        assert desktop.window.banner.text == ""
    finally:
        berthd_with_busybox.docker("rm", "-f", member, check=False)
        berthd_with_busybox.docker("network", "rm", network, check=False)


@needs_daemon
def test_predefined_networks_cannot_be_deleted(qtbot, desktop, berthd_with_busybox) -> None:
    page: NetworksPage = desktop.window.pages["Networks"]
    run_async(qtbot, eventually(lambda: any(r.name == "bridge" for r in page.model.rows), 5, "networks"))
    for name in ("bridge", "host", "none"):
        if any(r.name == name for r in page.model.rows):
            page.select(lambda r, name=name: getattr(r, "name", "") == name)
            assert page.selected_rows() and not page.delete_button.isEnabled()
            page.delete_selected()  # even when called directly: nothing happens
    run_async(qtbot, desktop.live.settle())
    assert berthd_with_busybox.docker("network", "inspect", "bridge").returncode == 0


@needs_daemon
def test_engine_refusal_is_one_banner_line(qtbot, desktop, berthd_with_busybox) -> None:
    page: NetworksPage = desktop.window.pages["Networks"]
    dialog = page.show_create()
    dialog.name.setText("bridge")  # taken: the engine refuses
    dialog.buttons.button(QDialogButtonBox.StandardButton.Ok).click()
    run_async(qtbot, eventually(lambda: desktop.window.banner.text, 10, "the banner"))
    text = desktop.window.banner.text
    assert text.startswith("Create network bridge: ") and "\n" not in text and "Traceback" not in text
    assert berthd_with_busybox.docker("version").returncode == 0
