"""The desktop app's context switcher (sidebar footer and tray menu) against the two SSH engines: both contexts
are listed, choosing one reconnects the session to it over SSH and makes it current for the CLI, and the Stacks
page says that a non-manager engine has no stacks; the Volumes page follows the remote engine's events (pytest-qt,
offscreen)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from typing import Any

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QSettings

from app.application import Desktop
from app.engine_session import EngineState
from app.settings import Settings
from app.views.stacks_page import NOT_A_MANAGER
from tests.fixtures.remote_engines import RemoteEngines
from tests.gui.conftest import eventually, qloop, run_async

pytestmark = [pytest.mark.root, pytest.mark.network, pytest.mark.gui, pytest.mark.slow]
__all__ = ["qloop"]


@pytest.fixture
def desktop(qtbot: Any, remote_engines: RemoteEngines, qloop: asyncio.AbstractEventLoop, tmp_path: Any,
            monkeypatch: pytest.MonkeyPatch) -> Iterator[Desktop]:
    """The app with the rig's HOME (its contexts, keys and known_hosts), started on the default context."""
    for engine in remote_engines.engines:
        if engine.name not in remote_engines.berth("context", "ls", "-q").stdout.split():
            remote_engines.berth("context", "create", engine.name, "--host", engine.url)
    remote_engines.berth("context", "use", "default")
    monkeypatch.setenv("HOME", str(remote_engines.home))
    for key in ("SSH_AUTH_SOCK", "DOCKER_HOST", "DOCKER_CONTEXT", "BERTH_HOST", "BERTH_CONTEXT", "DOCKER_CONFIG",
                "BERTH_CONFIG"):
        monkeypatch.delenv(key, raising=False)
    app = Desktop(f"unix://{tmp_path}/none.sock",
                  Settings(QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat)), notify=False)
    app.start()
    yield app
    run_async(qtbot, app.close())
    remote_engines.berth("context", "use", "default")


def test_switcher_lists_and_switches(qtbot: Any, desktop: Desktop, remote_engines: RemoteEngines) -> None:
    switcher = desktop.window.context_switcher
    names = [switcher.itemText(i) for i in range(switcher.count())]
    assert names[0] == "default" and {"e1", "e2"} <= set(names)
    assert switcher.currentText() == "default"
    desktop.tray.rebuild_menu()
    menus = {a.text(): a.menu() for a in desktop.tray.menu.actions() if a.menu() is not None}
    assert "Context: default" in menus
    assert {"e1", "e2"} <= {a.text() for a in menus["Context: default"].actions()}

    switcher.activated.emit(names.index("e2"))
    run_async(qtbot, eventually(lambda: desktop.session.state is EngineState.RUNNING
                                and desktop.session.client.address.host == "10.231.2.2", 30, "engine e2"))
    assert remote_engines.berth("context", "show").stdout == "e2\n"
    switcher.reload()
    assert switcher.currentText() == "e2"
    stacks = desktop.window.pages["Stacks"]
    desktop.window.show_page(list(desktop.window.pages).index("Stacks"))
    run_async(qtbot, eventually(lambda: stacks.loaded, 30, "the Stacks page"))
    assert stacks.message.isVisibleTo(stacks) and stacks.message.text() == NOT_A_MANAGER  # e2 never manages
    volume = "gui-remote-vol"  # the pages follow the remote engine: a volume made there appears
    remote_engines.engines[1].dockerd.docker("volume", "create", volume, check=True)
    try:
        run_async(qtbot, eventually(lambda: volume in {r.name for r in desktop.live.volumes.rows}, 30,
                                    "the remote volume"))
    finally:
        remote_engines.engines[1].dockerd.docker("volume", "rm", volume)

    desktop.tray.rebuild_menu()
    menus = {a.text(): a.menu() for a in desktop.tray.menu.actions() if a.menu() is not None}
    e1 = next(a for a in menus["Context: e2"].actions() if a.text() == "e1")
    e1.trigger()
    run_async(qtbot, eventually(lambda: desktop.session.state is EngineState.RUNNING
                                and desktop.session.client.address.host == "10.231.1.2", 30, "engine e1"))


def test_a_broken_context_is_a_banner_not_a_crash(qtbot: Any, desktop: Desktop, remote_engines: RemoteEngines) -> None:
    remote_engines.berth("context", "create", "gone", "--host", "ssh://root@10.231.1.2/run/nothing.sock")
    try:
        switcher = desktop.window.context_switcher
        switcher.reload()
        switcher.activated.emit(switcher.findText("gone"))
        run_async(qtbot, eventually(lambda: desktop.session.state is EngineState.STOPPED
                                    and "refused a channel" in desktop.session.message, 30, "the refusal"))
    finally:
        remote_engines.berth("context", "use", "default")
        remote_engines.berth("context", "rm", "gone")
