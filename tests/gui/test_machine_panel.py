"""The Engine page's VM section (app/views/machine_panel.py), the Create machine dialog and the tray's Machine
submenu against real machines made by ``berth machine init`` in a temporary BERTH_MACHINE_HOME.

The fast tests use a tiny image that is never booted; the slow one boots the Debian guest of
tests/fixtures/machine_image.py under TCG with ``--restrict-network`` (the guest reaches nothing) through the
whole app: Start in the panel, the app follows the machine's socket (VM mode), Stop from the tray.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import QSettings
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QMenu

from app.actions import ActionRunner
from app.application import Desktop
from app.engine_session import EngineState
from app.machines import MachineMonitor, MachineVerb
from app.settings import EngineMode, Settings, VmLimits
from app.tray_machine import add_machine_menu
from app.views.machine_panel import VM_NOT_CONFIGURED, MachinePanel, SerialLogDialog
from app.widgets.banner import ErrorBanner
from backend.api.machines import MachineControl
from tests.fixtures.machine_image import MachineImage, machine_image  # noqa: F401 (fixture)
from tests.fixtures.tiny_machine_image import TinyImage, tiny_machine_image  # noqa: F401 (fixture)
from tests.gui.conftest import eventually, run_async

pytestmark = [pytest.mark.gui]

BERTH = str(Path(sys.executable).parent / "berth")
LIMITS = VmLimits(max_cpus=4, max_memory_mib=8192, max_disk_gib=100)


def berth(home: Path, *args: str, timeout: float = 120) -> str:
    proc = subprocess.run([BERTH, "machine", *args], env={**os.environ, "BERTH_MACHINE_HOME": str(home)},
                          capture_output=True, text=True, timeout=timeout, check=False)
    assert proc.returncode == 0, f"berth machine {' '.join(args)}: {proc.stderr}"
    return proc.stdout


def init(home: Path, name: str, image: Path, sha256: str, *extra: str) -> None:
    berth(home, "init", name, "--image", str(image), "--image-sha256", sha256, "--no-share", "--accel", "tcg",
          "--restrict-network", *extra, timeout=600)


def record(home: Path, name: str) -> dict[str, Any]:
    return json.loads((home / name / "machine.json").read_text())


def write_record(home: Path, doc: dict[str, Any]) -> None:
    """Replace ``machine.json`` as the agent does (a temp file renamed into place)."""
    tmp = home / doc["name"] / "machine.json.tmp"
    tmp.write_text(json.dumps(doc))
    tmp.rename(home / doc["name"] / "machine.json")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "machines"
    monkeypatch.setenv("BERTH_MACHINE_HOME", str(path))
    return path


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat), LIMITS)


class Rig:
    """A panel over a monitor of ``home``, with the runner's errors in a banner."""

    def __init__(self, qtbot: Any, settings: Settings) -> None:
        self.qtbot, self.settings = qtbot, settings
        self.runner = ActionRunner()
        self.banner = ErrorBanner()
        self.runner.failed.connect(self.banner.show_message)
        self.monitor = MachineMonitor(MachineControl(), self.runner, settings)
        self.panel = MachinePanel(self.monitor)
        self.panel.confirm = lambda question: True
        qtbot.addWidget(self.panel)
        qtbot.addWidget(self.banner)
        self.panel.show()

    def wait(self, predicate: Any, what: str, timeout: float = 30) -> None:
        run_async(self.qtbot, eventually(predicate, timeout, what), timeout + 5)

    def idle(self) -> None:
        self.wait(lambda: not self.runner.busy, "the machine commands")


@pytest.fixture
def rig(qtbot: Any, qloop: Any, home: Path, settings: Settings) -> Iterator[Rig]:
    rig = Rig(qtbot, settings)
    yield rig
    run_async(qtbot, rig.monitor.stop())


def test_without_a_machine_create_validates_inline_and_shows_the_cli_error(
        rig: Rig, home: Path, tiny_machine_image: TinyImage) -> None:  # noqa: F811
    panel = rig.panel
    assert panel.empty.isVisible() and not panel.details.isVisible()
    assert panel.vm_status.text() == VM_NOT_CONFIGURED
    panel.create_button.click()
    dialog = panel.dialog
    assert dialog is not None and dialog.isVisible()
    assert dialog.name.text() == "default" and not dialog.create_button.isEnabled() and dialog.error.isHidden()
    assert (dialog.cpus.value(), dialog.memory.value(), dialog.disk.value()) == (
        rig.settings.vm_cpus, rig.settings.vm_memory_mib, rig.settings.vm_disk_gib)  # Settings' VM resources
    dialog.image.setText(str(tiny_machine_image.tar))
    dialog.sha256.setText("abc123")
    assert dialog.error.isVisible() and dialog.error.text().startswith("SHA-256: 64 hexadecimal digits")
    assert not dialog.create_button.isEnabled()
    dialog.sha256.setText("g" * 64)
    assert dialog.error.isVisible() and not dialog.create_button.isEnabled()
    dialog.name.setText("Bad Name")
    dialog.sha256.setText("0" * 64)
    assert dialog.error.text().startswith("Name: lower-case letters") and not dialog.create_button.isEnabled()
    dialog.name.setText("vm1")
    assert dialog.error.isHidden() and dialog.create_button.isEnabled()

    dialog.create_button.click()  # a well-formed but wrong SHA-256: init refuses, nothing is created
    assert dialog.busy.isVisible()
    rig.wait(lambda: dialog.task is not None and dialog.task.done(), "init")
    assert rig.banner.text == (f"Create machine vm1: Image {tiny_machine_image.tar} has SHA-256 "
                               f"{tiny_machine_image.sha256}, expected {'0' * 64}: refused")
    assert dialog.isVisible() and dialog.busy.isHidden() and dialog.create_button.isEnabled()
    assert not (home / "vm1").exists()
    assert berth(home, "ls", "--format", "json").strip() == "[]"
    assert panel.empty.isVisible()

    rig.banner.clear()
    dialog.sha256.setText(tiny_machine_image.sha256.upper())
    dialog.cpus.setValue(1)
    dialog.idle.setValue(600)
    dialog.create_button.click()
    rig.wait(lambda: panel.details.isVisible(), "the new machine in the panel")
    assert not dialog.isVisible() and rig.banner.text == ""
    config = record(home, "vm1")["config"]
    assert (config["cpus"], config["memory_mib"], config["idle_timeout"]) == (1, rig.settings.vm_memory_mib, 600)
    assert rig.settings.machine_name == "vm1"
    assert "vm1</b> is stopped" in panel.chip.text()


def test_stopped_machine_shows_edits_follows_and_removes(rig: Rig, home: Path, settings: Settings,
                                                         tiny_machine_image: TinyImage) -> None:  # noqa: F811
    init(home, "vm1", tiny_machine_image.tar, tiny_machine_image.sha256, "--cpus", "1", "--memory", "1024",
         "--disk-size", "8", "--idle-timeout", "60")
    panel, monitor = rig.panel, rig.monitor
    rig.wait(lambda: panel.details.isVisible(), "the machine in the panel")
    assert "#8a8f98" in panel.chip.text() and "vm1</b> is stopped" in panel.chip.text()  # grey, as exited containers
    assert (panel.cpus.value(), panel.memory.value(), panel.disk.value(), panel.idle.value()) == (1, 1024, 8, 60)
    assert panel.socket.text() == f"unix://{home}/vm1/berth.sock"
    assert panel.facts["Accelerator"].text() == "tcg" and panel.facts["Last boot"].text() == "—"
    assert panel.facts["Ports"].text() == "none published" and not panel.choice.isVisible()
    assert not panel.form.isRowVisible(panel.error)
    enabled = {verb.value: button.isEnabled() for verb, button in panel.buttons.items()}
    assert enabled == {"start": True, "stop": False, "restart": False}
    assert panel.apply_resources.isEnabled() and panel.cpus.isEnabled()
    panel.copy_socket.click()
    assert QGuiApplication.clipboard().text() == f"unix://{home}/vm1/berth.sock"

    failed = {**record(home, "vm1"), "state": "error", "error": "qemu-system-x86_64 exited with status 1"}
    write_record(home, failed)  # what the agent records when a boot fails
    rig.wait(lambda: "vm1</b> is error" in panel.chip.text(), "the error state")
    assert "#d23c3c" in panel.chip.text() and panel.form.isRowVisible(panel.error)
    assert panel.error.text() == "qemu-system-x86_64 exited with status 1"
    assert panel.buttons[MachineVerb.START].isEnabled() and not panel.buttons[MachineVerb.STOP].isEnabled()
    write_record(home, {**failed, "state": "stopped", "error": ""})
    rig.wait(lambda: not panel.form.isRowVisible(panel.error), "the stopped state again")

    panel.cpus.setValue(3)
    panel.memory.setValue(2048)
    panel.apply_resources.click()
    rig.wait(lambda: record(home, "vm1")["config"]["cpus"] == 3, "the CPUs in machine.json")
    assert record(home, "vm1")["config"]["memory_mib"] == 2048
    panel.idle.setValue(0)
    panel.apply_idle.click()
    rig.wait(lambda: record(home, "vm1")["config"]["idle_timeout"] == 0, "the idle time in machine.json")
    rig.wait(lambda: panel.idle.text() == "never" and panel.cpus.value() == 3, "the panel re-read")

    panel.open_log()
    log = panel.dialog
    assert isinstance(log, SerialLogDialog)
    rig.wait(lambda: log.text.toPlainText() == "(the machine has not booted yet)", "the serial log")
    log.close()

    menu = QMenu()  # the tray's submenu: status first, Start only
    sub = add_machine_menu(menu, monitor)
    assert sub is not None and sub.title() == "Machine: vm1"
    actions = [(a.text(), a.isEnabled()) for a in sub.actions() if not a.isSeparator()]
    assert actions == [("● vm1 is stopped", False), ("Start", True), ("Stop", False), ("Restart", False)]

    settings.engine_host = "unix:///run/custom/berth.sock"  # VM mode uses the machine; native restores
    settings.engine_mode = EngineMode.VM
    assert settings.engine_host == f"unix://{home}/vm1/berth.sock"
    settings.engine_mode = EngineMode.NATIVE
    assert settings.engine_host == "unix:///run/custom/berth.sock"

    init(home, "vm2", tiny_machine_image.tar, tiny_machine_image.sha256)  # the watcher sees a second machine
    rig.wait(lambda: panel.choice.count() == 2 and panel.choice.isVisible(), "the machine choice")
    assert panel.choice.currentText() == "vm1"
    settings.machine_name = "vm2"
    assert "vm2</b> is stopped" in panel.chip.text() and panel.cpus.value() == 2

    panel.remove_button.click()
    rig.wait(lambda: not (home / "vm2").exists() and "vm1</b>" in panel.chip.text(), "vm2 removed")
    panel.remove_button.click()
    rig.wait(lambda: panel.empty.isVisible(), "the empty state")
    assert not (home / "vm1").exists() and berth(home, "ls", "--format", "json").strip() == "[]"
    assert add_machine_menu(QMenu(), monitor) is None
    rig.idle()
    assert rig.banner.text == ""


@pytest.mark.root
@pytest.mark.slow
@pytest.mark.vm
@pytest.mark.timeout(1200)
def test_start_from_the_panel_and_stop_from_the_tray(qtbot: Any, qloop: Any, home: Path, settings: Settings,
                                                     tmp_path: Path, machine_image: MachineImage) -> None:  # noqa: F811
    init(home, "vm", machine_image.tar, machine_image.sha256, "--cpus", "2", "--memory", "2048")
    settings.engine_mode = EngineMode.VM
    desktop = Desktop(f"unix://{tmp_path}/nothing.sock", settings, notify=False)
    failures: list[str] = []
    desktop.runner.failed.connect(failures.append)
    desktop.start(show_window=False)
    panel = desktop.window.engine_page.machine_panel
    socket = f"unix://{home}/vm/berth.sock"
    try:
        run_async(qtbot, eventually(lambda: not panel.details.isHidden() and settings.engine_host == socket, 30,
                                    "the machine and VM mode's address"))
        panel.buttons[MachineVerb.START].click()
        run_async(qtbot, eventually(lambda: "vm</b> is running" in panel.chip.text(), 1100, "the machine running"),
                  1110)
        assert "#2e9e44" in panel.chip.text() and panel.facts["Last boot"].text().startswith("ready in ")
        run_async(qtbot, eventually(lambda: desktop.session.state is EngineState.RUNNING, 60,
                                    "the app on the machine's engine"))
        assert desktop.session.client.address.path == f"{home}/vm/berth.sock"  # the socket answered
        assert not panel.cpus.isEnabled() and panel.buttons[MachineVerb.STOP].isEnabled()

        desktop.tray.rebuild_menu()
        [sub] = [a.menu() for a in desktop.tray.menu.actions() if a.menu() and a.text() == "Machine: vm"]
        actions = {a.text(): a for a in sub.actions() if not a.isSeparator()}
        assert list(actions) == ["● vm is running", "Start", "Stop", "Restart"]
        assert [a.isEnabled() for a in actions.values()] == [False, False, True, True]
        actions["Stop"].trigger()
        run_async(qtbot, eventually(lambda: "vm</b> is stopped" in panel.chip.text(), 180, "the machine stopped"),
                  190)
        assert record(home, "vm")["state"] == "stopped"
        assert panel.buttons[MachineVerb.START].isEnabled() and panel.cpus.isEnabled()
        assert failures == []
    finally:
        berth(home, "rm", "--force", "vm", timeout=300)
        run_async(qtbot, desktop.close())

