"""berth-desktop against a real berthd (offscreen): the window follows the engine through events, its actions
change the real containers, logs follow, the tray lists and stops running containers, and a missing engine
is reported in words."""

from __future__ import annotations

import secrets
import socket

import pytest
from PySide6.QtCore import QSettings

from app.application import Desktop
from app.engine_session import EngineState
from app.models.containers import ContainerRow
from app.settings import Settings
from tests.gui.conftest import eventually, run_async

pytestmark = [pytest.mark.gui, pytest.mark.root, pytest.mark.network]


def name() -> str:
    return f"gui-{secrets.token_hex(4)}"


def row(app: Desktop, ref: str) -> ContainerRow | None:
    return app.live.containers.find(ref)


def test_table_follows_cli_run_stop_rm_within_a_second(qtbot, desktop, berthd_with_busybox) -> None:
    n = name()
    berthd_with_busybox.docker("run", "-d", "--name", n, "busybox", "sleep", "60")
    try:
        run_async(qtbot, eventually(lambda: (r := row(desktop, n)) is not None and r.running, 1.0, "run"))
        berthd_with_busybox.docker("stop", "-t", "0", n)
        run_async(qtbot, eventually(lambda: (r := row(desktop, n)) is not None and r.state == "exited", 1.0, "stop"))
        assert desktop.window.containers_page.count.text().endswith("total")
    finally:
        berthd_with_busybox.docker("rm", "-f", n)
    run_async(qtbot, eventually(lambda: row(desktop, n) is None, 1.0, "rm"))


def test_gui_start_stop_delete_change_real_containers(qtbot, desktop, berthd_with_busybox) -> None:
    n = name()
    berthd_with_busybox.docker("create", "--name", n, "busybox", "sleep", "60")
    page = desktop.window.containers_page
    try:
        run_async(qtbot, eventually(lambda: row(desktop, n) is not None, 2, "create"))
        page.select(lambda r: isinstance(r, ContainerRow) and r.name == n)
        page.action_buttons["Start"].click()
        run_async(qtbot, eventually(lambda: row(desktop, n).running, 10, "start"))
        assert berthd_with_busybox.docker("inspect", "-f", "{{.State.Running}}", n).stdout.strip() == "true"
        page.select(lambda r: isinstance(r, ContainerRow) and r.name == n)
        page.action_buttons["Stop"].click()
        run_async(qtbot, eventually(lambda: not row(desktop, n).running, 20, "stop"))
        assert berthd_with_busybox.docker("inspect", "-f", "{{.State.Running}}", n).stdout.strip() == "false"
        page.select(lambda r: isinstance(r, ContainerRow) and r.name == n)
        page.action_buttons["Delete"].click()
        run_async(qtbot, eventually(lambda: row(desktop, n) is None, 10, "delete"))
        assert berthd_with_busybox.docker("inspect", n, check=False).returncode != 0
    finally:
        berthd_with_busybox.docker("rm", "-f", n, check=False)


def test_action_error_shows_one_line_in_banner(qtbot, desktop, berthd_with_busybox) -> None:
    n = name()
    berthd_with_busybox.docker("create", "--name", n, "busybox", "true")
    try:
        run_async(qtbot, eventually(lambda: row(desktop, n) is not None, 2, "create"))
        target = row(desktop, n)
        page = desktop.window.containers_page
        page.act("Pause", desktop.client.pause_container, [target])  # not running: the engine says 409
        run_async(qtbot, eventually(lambda: desktop.window.banner.text, 5, "the banner"))
        text = desktop.window.banner.text
        assert text.startswith(f"Pause {n}: ") and "\n" not in text and "Traceback" not in text
        assert berthd_with_busybox.docker("version").returncode == 0
    finally:
        berthd_with_busybox.docker("rm", "-f", n, check=False)


def test_logs_follow_live_output(qtbot, desktop, berthd_with_busybox) -> None:
    n = name()
    berthd_with_busybox.docker("run", "-d", "--name", n, "busybox", "sh", "-c",
                               "echo first; sleep 1; echo second; sleep 60")
    try:
        run_async(qtbot, eventually(lambda: row(desktop, n) is not None, 2, "run"))
        window = desktop.window.open_detail(row(desktop, n))
        text = window.logs.text
        run_async(qtbot, eventually(lambda: "first" in text.toPlainText(), 5, "first line"))
        run_async(qtbot, eventually(lambda: "second" in text.toPlainText(), 5, "second line (followed)"))
        window.close()
    finally:
        berthd_with_busybox.docker("rm", "-f", n)


def test_tray_lists_running_containers_and_stops_them(qtbot, desktop, berthd_with_busybox) -> None:
    n = name()
    with socket.socket() as probe:  # a free loopback port (berthd refuses host port 0)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    berthd_with_busybox.docker("run", "-d", "--name", n, "-p", f"127.0.0.1:{port}:80", "busybox", "sleep", "60")
    try:
        run_async(qtbot, eventually(lambda: row(desktop, n) is not None, 2, "run"))
        desktop.tray.rebuild_menu()
        containers = next(a.menu() for a in desktop.tray.menu.actions() if a.text().startswith("Containers ("))
        entry = next(a.menu() for a in containers.actions() if a.text() == n)
        actions = {a.text(): a for a in entry.actions()}
        assert {"Logs", "Restart", "Stop"} <= set(actions)
        assert f"Open http://localhost:{port}" in actions
        actions["Stop"].trigger()
        run_async(qtbot, eventually(lambda: not row(desktop, n).running, 20, "stop from the tray"))
        desktop.tray.rebuild_menu()
        containers = next(a.menu() for a in desktop.tray.menu.actions() if a.text().startswith("Containers ("))
        assert n not in [a.text() for a in containers.actions()]
    finally:
        berthd_with_busybox.docker("rm", "-f", n)


def test_compose_projects_are_grouped(qtbot, desktop, berthd_with_busybox) -> None:
    project = name()
    names = [f"{project}-{service}-1" for service in ("web", "db")]
    for container, service in zip(names, ("web", "db"), strict=True):
        berthd_with_busybox.docker("run", "-d", "--name", container, "--label", f"com.docker.compose.project={project}",
                                   "--label", f"com.docker.compose.service={service}", "busybox", "sleep", "60")
    try:
        run_async(qtbot, eventually(lambda: any(g.name == project and len(g.children) == 2
                                                for g in desktop.live.containers.projects()), 2, "the group"))
    finally:
        berthd_with_busybox.docker("rm", "-f", *names)


def test_unexpected_death_notifies(qtbot, desktop, berthd_with_busybox) -> None:
    n = name()
    berthd_with_busybox.docker("run", "-d", "--name", n, "busybox", "sh", "-c", "exit 3")
    try:
        run_async(qtbot, eventually(lambda: any(n in text for _, text in desktop.tray.notifications), 5, "notice"))
    finally:
        berthd_with_busybox.docker("rm", "-f", n)


def test_missing_engine_is_said_in_words(qtbot, qloop, tmp_path) -> None:
    app = Desktop(f"unix://{tmp_path}/missing.sock",
                  Settings(QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat)), notify=False)
    app.start()
    try:
        run_async(qtbot, eventually(lambda: app.session.state is EngineState.STOPPED, 5, "stopped state"))
        text = app.window.banner.text
        assert "engine is not running" in text and "Traceback" not in text
        assert app.window.containers_page.empty.isVisibleTo(app.window)
    finally:
        run_async(qtbot, app.close())


