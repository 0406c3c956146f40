"""The About dialog and ``berth version`` show the same facts: the app's version and platform, the engine's
version, API version and default runtime; an engine that does not answer is said in words."""

from __future__ import annotations

import platform
import subprocess

import PySide6
import pytest
from PySide6.QtGui import QGuiApplication

from app.actions import ActionRunner
from app.dialogs.about import AboutDialog, app_facts, as_text
from backend.api.client import EngineClient
from backend.version import VERSION, platform_name
from tests.fixtures.berthd import BIN
from tests.gui.conftest import run_async

pytestmark = [pytest.mark.gui, pytest.mark.root, pytest.mark.network]


def facts(text: str) -> dict[str, str]:
    return dict(line.split(": ", 1) for line in text.splitlines())


@pytest.mark.gui
def test_app_facts_without_an_engine() -> None:
    shown = facts(as_text(app_facts()))
    assert shown["Berth"].startswith(VERSION)
    assert shown["Platform"] == platform_name() and shown["Python"] == platform.python_version()
    assert shown["PySide"] == PySide6.__version__ and shown["Qt"]


def test_about_shows_the_engine_and_copies_it(qtbot, desktop, berthd_with_busybox) -> None:
    dialog = desktop.window.show_about()
    qtbot.addWidget(dialog)
    run_async(qtbot, dialog.task)
    shown = facts(dialog.text())
    server = berthd_with_busybox.docker("version", "-f", "{{.Server.Version}}|{{.Server.APIVersion}}").stdout
    version, api = server.strip().split("|")
    runtime = berthd_with_busybox.docker("info", "-f", "{{.DefaultRuntime}}").stdout.strip()
    assert runtime
    assert shown["Engine"] == version and shown["Engine API"].startswith(api)
    assert shown["Default runtime"] == runtime and shown["App API"] == desktop.client.api_version
    assert shown["Berth"].startswith(VERSION) and shown["Platform"] == platform_name()
    dialog.copy()
    assert QGuiApplication.clipboard().text() == dialog.text()


def test_about_says_when_the_engine_is_down(qtbot, qloop, tmp_path) -> None:
    client = EngineClient(f"unix://{tmp_path}/missing.sock")
    dialog = AboutDialog(client, ActionRunner())
    qtbot.addWidget(dialog)
    run_async(qtbot, dialog.task)
    engine = facts(dialog.text())["Engine"]
    assert engine.startswith("not reachable: The engine is not running") and "Traceback" not in engine
    run_async(qtbot, client.aclose())


def test_berth_version_shows_the_same_facts(berthd_with_busybox) -> None:
    out = berthd_with_busybox.berth("version").stdout
    client, _, server = out.partition("Server:")
    assert f" Version:           {VERSION}\n" in client and f" OS/Arch:           {platform_name()}\n" in client
    assert " API version:       1.41\n" in client and f" Python version:    {platform.python_version()}\n" in client
    runtime = berthd_with_busybox.docker("info", "-f", "{{.DefaultRuntime}}").stdout.strip()
    assert f"  Default Runtime:  {runtime}\n" in server and "  API version:      1.41" in server


def test_berth_version_without_an_engine_is_one_line(tmp_path, berthd_with_busybox) -> None:
    env = {**berthd_with_busybox.env, "BERTH_HOST": f"unix://{tmp_path}/missing.sock",
           "DOCKER_HOST": f"unix://{tmp_path}/missing.sock"}
    result = subprocess.run([str(BIN / "berth"), "version"], env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode != 0 and result.stdout.startswith("Client:\n Version:")
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr

