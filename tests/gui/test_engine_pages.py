"""Settings, themes, the Engine page and Troubleshoot (offscreen): settings round-trip and validation, the
autostart entry, palettes, and against a real berthd the engine facts, disk usage, volume prune, checks and the
diagnostics bundle; against a missing socket the checks fail with a hint."""

from __future__ import annotations

import json
import secrets
import zipfile
from pathlib import Path

import pytest
from PySide6.QtCore import QSettings, Qt
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import QApplication

from app.actions import ActionRunner
from app.application import Desktop
from app.diagnostics import CheckStatus, run_checks
from app.engine_session import EngineSession, EngineState
from app.settings import EngineMode, Settings, ThemeChoice, VmLimits
from app.theme import Appearance, ThemeManager, resolve
from app.views.engine_page import EnginePage, UsageKind, disk_usage
from app.views.settings_page import VM_NOTE, SettingsPage
from app.views.troubleshoot_page import TroubleshootPage
from backend.api.client import EngineClient
from backend.api.host import HostError
from tests.gui.conftest import eventually, run_async

pytestmark = [pytest.mark.gui]
LIMITS = VmLimits(max_cpus=4, max_memory_mib=8192, max_disk_gib=100)


def make_settings(path: Path) -> Settings:
    return Settings(QSettings(str(path / "settings.ini"), QSettings.Format.IniFormat), LIMITS)


@pytest.fixture
def missing_session(qtbot, qloop, tmp_path):
    """A session (not started) on a socket nobody listens on; stopped afterwards (a reset reconnects it)."""
    session = EngineSession(EngineClient(f"unix://{tmp_path}/missing.sock"), retry_interval=0.2)
    yield session
    run_async(qtbot, session.stop())


def test_settings_round_trip_and_validation(qapp, tmp_path) -> None:
    settings = make_settings(tmp_path)
    assert (settings.engine_mode, settings.theme, settings.notifications, settings.open_dashboard) == (
        EngineMode.NATIVE, ThemeChoice.SYSTEM, True, True)
    assert (settings.vm_cpus, settings.vm_memory_mib, settings.vm_disk_gib, settings.engine_host) == (2, 4096, 64, "")
    changed: list[str] = []
    settings.changed.connect(changed.append)
    settings.engine_mode, settings.theme, settings.notifications = EngineMode.VM, ThemeChoice.DARK, False
    settings.vm_cpus, settings.vm_memory_mib, settings.vm_disk_gib = 4, 2048, 20
    settings.engine_host, settings.open_dashboard, settings.start_at_login = "tcp://127.0.0.1:2375", False, True
    again = make_settings(tmp_path)
    assert again.exported() == {
        "engine/mode": "vm", "engine/host": "tcp://127.0.0.1:2375", "vm/cpus": "4", "vm/memory_mib": "2048",
        "vm/disk_gib": "20", "app/start_at_login": "true", "app/open_dashboard": "false", "app/theme": "dark",
        "notifications/enabled": "false"}
    assert len(changed) == 9
    for name, bad in (("vm_cpus", 0), ("vm_cpus", 5), ("vm_memory_mib", 256), ("vm_disk_gib", 101)):
        with pytest.raises(ValueError, match="between"):
            setattr(settings, name, bad)
    for bad_host in ("npipe://host", "tcp://host:99999", "relative.sock"):
        with pytest.raises(HostError):
            settings.engine_host = bad_host
    assert make_settings(tmp_path).exported() == again.exported()  # nothing bad was stored
    again.store.setValue("vm/cpus", "64")  # a smaller host, or an edited file: clamped; junk reads as default
    again.store.setValue("app/theme", "purple")
    assert (again.vm_cpus, again.theme) == (4, ThemeChoice.SYSTEM)


def test_settings_page_applies_and_rejects_bad_address_inline(qtbot, missing_session, tmp_path) -> None:
    settings = make_settings(tmp_path)
    page = SettingsPage(settings, missing_session, ActionRunner())
    qtbot.addWidget(page)
    assert not page.vm_note.isVisibleTo(page) and not page.cpus.isEnabled()
    page.mode.setCurrentIndex(page.mode.findData(EngineMode.VM))
    assert settings.engine_mode is EngineMode.VM and page.vm_note.isVisibleTo(page)
    assert page.vm_note.text() == VM_NOTE and page.cpus.isEnabled()
    page.cpus.setValue(3)
    page.theme.setCurrentIndex(page.theme.findData(ThemeChoice.LIGHT))
    page.notifications.setChecked(False)
    assert (settings.vm_cpus, settings.theme, settings.notifications) == (3, ThemeChoice.LIGHT, False)
    assert page.cpus.maximum() == LIMITS.max_cpus and page.memory.maximum() == LIMITS.max_memory_mib

    page.address.setText("tcp://localhost:notaport")
    assert not page.apply_engine_address()
    assert page.address_error.isVisibleTo(page) and "bad port" in page.address_error.text()
    assert settings.engine_host == "" and missing_session.client.address.path.endswith("missing.sock")

    other = f"unix://{tmp_path}/other.sock"
    page.address.setText(other)
    page.apply_address.click()
    assert not page.address_error.isVisibleTo(page) and settings.engine_host == other
    run_async(qtbot, eventually(lambda: missing_session.client.address.path == f"{tmp_path}/other.sock", 5,
                                "the session to reconnect"))
    run_async(qtbot, eventually(lambda: missing_session.state is EngineState.STOPPED, 5, "the new address tried"))
    assert "other.sock" in missing_session.message


def test_start_at_login_writes_and_removes_the_autostart_entry(qtbot, missing_session, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    entry = tmp_path / "config" / "autostart" / "berth-desktop.desktop"
    settings = make_settings(tmp_path)
    page = SettingsPage(settings, missing_session, ActionRunner())
    qtbot.addWidget(page)
    page.start_at_login.setChecked(True)
    assert settings.start_at_login and entry.read_text().startswith("[Desktop Entry]")
    assert "Exec=" in entry.read_text() and str(entry) in page.message.text()
    page.start_at_login.setChecked(False)
    assert not settings.start_at_login and not entry.exists()


def test_theme_switch_changes_the_palette(qapp, tmp_path) -> None:
    settings = make_settings(tmp_path)
    theme = ThemeManager(settings)
    settings.theme = ThemeChoice.DARK
    assert theme.appearance is Appearance.DARK
    assert QApplication.palette().color(QPalette.ColorRole.Window).lightness() < 60
    assert QApplication.palette().color(QPalette.ColorRole.Text).lightness() > 200
    settings.theme = ThemeChoice.LIGHT
    assert theme.appearance is Appearance.LIGHT
    assert QApplication.palette().color(QPalette.ColorRole.Window).lightness() > 200
    assert QApplication.palette().color(QPalette.ColorRole.Highlight).name() == "#2f7ed8"
    assert resolve(ThemeChoice.SYSTEM, Qt.ColorScheme.Dark) is Appearance.DARK
    assert resolve(ThemeChoice.SYSTEM, Qt.ColorScheme.Unknown) is Appearance.LIGHT
    assert resolve(ThemeChoice.LIGHT, Qt.ColorScheme.Dark) is Appearance.LIGHT
    settings.theme = ThemeChoice.SYSTEM
    assert theme.appearance is resolve(ThemeChoice.SYSTEM, qapp.styleHints().colorScheme())
    theme.deleteLater()


def test_disk_usage_counts_as_docker_system_df() -> None:
    doc = {"LayersSize": 1000,
           "Images": [{"Size": 600, "SharedSize": 100, "Containers": 1}, {"Size": 400, "SharedSize": 0,
                                                                        "Containers": 0}],
           "Containers": [{"State": "running", "SizeRw": 10}, {"State": "exited", "SizeRw": 5}],
           "Volumes": [{"UsageData": {"Size": 70, "RefCount": 1}}, {"UsageData": {"Size": 30, "RefCount": 0}},
                       {"UsageData": {"Size": -1, "RefCount": -1}}],
           "BuildCache": None}
    usage = {u.kind: (u.count, u.active, u.size, u.reclaimable) for u in disk_usage(doc)}
    assert usage == {UsageKind.IMAGES: (2, 1, 1000, 500), UsageKind.CONTAINERS: (2, 1, 15, 5),
                     UsageKind.VOLUMES: (3, 1, 100, 30), UsageKind.BUILD_CACHE: (0, 0, 0, 0)}


def test_checks_against_a_missing_socket_fail_with_a_hint(qtbot, qloop, tmp_path) -> None:
    client = EngineClient(f"unix://{tmp_path}/missing.sock")
    diagnosis = run_async(qtbot, run_checks(client))
    engine, version = diagnosis.results[:2]
    assert engine.name == "Engine socket" and engine.status is CheckStatus.FAIL
    assert "missing.sock" in engine.detail and "sudo systemctl start berthd" in engine.hint
    assert version.status is CheckStatus.WARN and diagnosis.info is None
    assert [r.name for r in diagnosis.results] == ["Engine socket", "Engine version", "Cgroups",
                                                   "Overlay filesystem", "Network", "Disk space"]


def test_reset_clears_settings_only_after_confirmation(qtbot, missing_session, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    settings = make_settings(tmp_path)
    settings_page = SettingsPage(settings, missing_session, ActionRunner())
    page = TroubleshootPage(missing_session, ActionRunner(), settings)
    qtbot.addWidget(settings_page)
    qtbot.addWidget(page)
    settings.theme, settings.vm_cpus = ThemeChoice.DARK, 1
    settings_page.start_at_login.setChecked(True)
    entry = tmp_path / "config" / "autostart" / "berth-desktop.desktop"
    assert entry.exists()
    questions: list[str] = []
    page.confirm = lambda question: questions.append(question) or False
    assert not page.reset()
    assert settings.theme is ThemeChoice.DARK and "not touched" in questions[0]
    page.confirm = lambda question: True
    assert page.reset()
    assert (settings.theme, settings.vm_cpus, settings.start_at_login) == (ThemeChoice.SYSTEM, 2, False)
    assert settings.store.allKeys() == [] and not entry.exists()
    assert "cleared 3 stored settings" in page.message.text() and "not touched" in page.message.text()
    assert settings_page.theme.currentData() is ThemeChoice.SYSTEM and not settings_page.start_at_login.isChecked()


@pytest.fixture
def live_session(qtbot, qloop, berthd_with_busybox):
    session = EngineSession(EngineClient(berthd_with_busybox.url))
    session.start()
    run_async(qtbot, eventually(lambda: session.state is EngineState.RUNNING, 10, "the engine"))
    yield session
    run_async(qtbot, session.stop())


@pytest.mark.root
@pytest.mark.network
def test_engine_page_shows_version_and_disk_usage_and_prunes_volumes(qtbot, live_session,
                                                                     berthd_with_busybox, tmp_path) -> None:
    volume = f"gui-prune-{secrets.token_hex(4)}"
    berthd_with_busybox.docker("volume", "create", volume)
    berthd_with_busybox.docker("run", "--rm", "-v", f"{volume}:/data", "busybox", "sh", "-c",
                               "head -c 100000 /dev/zero > /data/blob")
    runner = ActionRunner()
    errors: list[str] = []
    runner.failed.connect(errors.append)
    page = EnginePage(live_session, runner, make_settings(tmp_path))
    qtbot.addWidget(page)
    try:
        page.reload()
        version = berthd_with_busybox.docker("version", "-f", "{{.Server.Version}}").stdout.strip()
        run_async(qtbot, eventually(lambda: page.facts["Version"].text() == version, 10, "the version"))
        assert page.facts["API"].text().startswith("1.41") and page.facts["Cgroups"].text().startswith("v")
        assert "data root" in page.facts["Storage"].text()
        count, _, used, _ = (label.text() for label in page.usage_labels[UsageKind.IMAGES])
        assert int(count) >= 1 and used not in ("—", "0B")
        volumes = page.usage_labels[UsageKind.VOLUMES]
        assert int(volumes[0].text()) >= 1 and volumes[3].text() != "0B"

        asked: list[str] = []
        page.confirm = lambda question: asked.append(question) or False
        page.prune_buttons[UsageKind.VOLUMES].click()
        assert asked and berthd_with_busybox.docker("volume", "inspect", volume, check=False).returncode == 0
        page.confirm = lambda question: True
        page.prune_buttons[UsageKind.VOLUMES].click()
        run_async(qtbot, eventually(lambda: "Reclaimed" in page.result.text(), 20, "the prune"))
        assert berthd_with_busybox.docker("volume", "inspect", volume, check=False).returncode != 0
        assert page.result.text().startswith("Volumes: ") and "Reclaimed 0B" not in page.result.text()
        assert errors == []
    finally:
        berthd_with_busybox.docker("volume", "rm", "-f", volume, check=False)


@pytest.mark.root
@pytest.mark.network
def test_troubleshoot_checks_and_bundle_against_the_daemon(qtbot, live_session, berthd_with_busybox,
                                                           tmp_path) -> None:
    settings = make_settings(tmp_path)
    settings.theme = ThemeChoice.DARK
    runner = ActionRunner()
    errors: list[str] = []
    runner.failed.connect(errors.append)
    page = TroubleshootPage(live_session, runner, settings)
    qtbot.addWidget(page)
    run_async(qtbot, page.run_checks())
    rows = {page.results.topLevelItem(i).text(0): page.results.topLevelItem(i)
            for i in range(page.results.topLevelItemCount())}
    assert rows["Engine socket"].text(1) == "ok" and berthd_with_busybox.url.removeprefix("unix://") in (
        rows["Engine socket"].text(2))
    assert rows["Engine version"].text(1) == "ok" and rows["Cgroups"].text(1) == "ok"
    assert set(rows) == {"Engine socket", "Engine version", "Cgroups", "Overlay filesystem", "Network", "Disk space"}
    assert page.log.toPlainText()  # the journal, a log file, or "no log found"

    bundle = tmp_path / "diag.zip"
    page.choose_path = lambda: bundle
    run_async(qtbot, page.export())
    assert errors == [] and str(bundle) in page.message.text()
    with zipfile.ZipFile(bundle) as archive:
        assert sorted(archive.namelist()) == ["checks.json", "daemon.log", "info.json", "settings.json",
                                              "version.json"]
        checks = json.loads(archive.read("checks.json"))["checks"]
        version = json.loads(archive.read("version.json"))
        info = json.loads(archive.read("info.json"))
        exported = json.loads(archive.read("settings.json"))
    assert checks[0] == {"name": "Engine socket", "status": "ok", "detail": rows["Engine socket"].text(2),
                         "hint": ""}
    assert version["ApiVersion"] == "1.41" and info["DockerRootDir"]
    assert exported["app/theme"] == "dark" and "window/geometry" not in exported


def test_desktop_applies_the_theme_and_the_notifications_setting(qtbot, qloop, tmp_path) -> None:
    settings = make_settings(tmp_path)
    settings.theme, settings.notifications = ThemeChoice.DARK, False
    desktop = Desktop(f"unix://{tmp_path}/missing.sock", settings)
    try:
        assert desktop.theme.appearance is Appearance.DARK and not desktop.tray.show_notifications
        settings.notifications = True
        assert desktop.tray.show_notifications
        page = desktop.window.pages["Settings"]
        assert isinstance(page, SettingsPage)
        page.theme.setCurrentIndex(page.theme.findData(ThemeChoice.LIGHT))
        assert settings.theme is ThemeChoice.LIGHT and desktop.theme.appearance is Appearance.LIGHT
    finally:
        run_async(qtbot, desktop.close())
