"""The desktop app's Qt-free troubleshooting and setup pieces: host checks on real files, the daemon log, the
autostart entry and the engine-control messages."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import shutil
import socket
from pathlib import Path

import pytest

from app import autostart, diagnostics
from app.diagnostics import CheckStatus
from app.engine_control import failure_message
from backend.api.client import EngineClient
from backend.api.types import Version


def test_cgroups_from_the_host_hierarchy(tmp_path: Path) -> None:
    v2, v1, none = tmp_path / "v2", tmp_path / "v1", tmp_path / "none"
    v2.mkdir()
    (v2 / "cgroup.controllers").write_text("cpu memory\n")
    (v1 / "memory").mkdir(parents=True)
    none.mkdir()
    assert diagnostics.check_cgroups(None, v2).detail.startswith("cgroup v2")
    assert diagnostics.check_cgroups(None, v1).detail.startswith("cgroup v1")
    missing = diagnostics.check_cgroups(None, none)
    assert missing.status is CheckStatus.FAIL and "cgroup2" in missing.hint


def test_overlayfs_listed_or_missing(tmp_path: Path) -> None:
    listed = tmp_path / "filesystems"
    listed.write_text("nodev\tsysfs\nnodev\toverlay\n\text4\n")
    assert diagnostics.check_overlayfs(listed, tmp_path / "no-module").status is CheckStatus.OK
    listed.write_text("nodev\tsysfs\n\text4\n")
    result = diagnostics.check_overlayfs(listed, tmp_path / "no-module")
    assert result.status is CheckStatus.FAIL and result.hint == "load it: sudo modprobe overlay"
    assert diagnostics.check_overlayfs(tmp_path / "unreadable").status is CheckStatus.WARN


@pytest.mark.skipif(shutil.which("iptables") is None, reason="needs iptables")
def test_network_forwarding_off_is_a_warning(tmp_path: Path) -> None:
    forward = tmp_path / "ip_forward"
    forward.write_text("1\n")
    assert diagnostics.check_network(forward).status is CheckStatus.OK
    forward.write_text("0\n")
    result = diagnostics.check_network(forward)
    assert result.status is CheckStatus.WARN and "net.ipv4.ip_forward=1" in result.hint


def test_network_without_iptables_fails(tmp_path: Path) -> None:
    empty_path = functools.partial(shutil.which, path=str(tmp_path))  # a PATH with no iptables on it
    result = diagnostics.check_network(tmp_path / "ip_forward", which=empty_path)
    assert result.status is CheckStatus.FAIL and "apt-get install iptables" in result.hint


def test_disk_space_of_the_nearest_existing_directory(tmp_path: Path) -> None:
    root = tmp_path / "not" / "yet"
    ok = diagnostics.check_disk(None, root, minimum=1)
    assert ok.status is CheckStatus.OK and str(root) in ok.detail and " free of " in ok.detail
    low = diagnostics.check_disk(None, root, minimum=shutil.disk_usage(tmp_path).total + 1)
    assert low.status is CheckStatus.WARN and "Prune" in low.hint


def test_version_match_and_mismatch() -> None:
    version = Version("0.1.0", "1.41", "1.24", "linux", "amd64", "6.1", {})
    assert diagnostics.check_version(version, "0.1.0").status is CheckStatus.OK
    mismatch = diagnostics.check_version(version, "0.2.0")
    assert mismatch.status is CheckStatus.WARN and "engine 0.1.0" in mismatch.detail and "app 0.2.0" in mismatch.detail
    assert diagnostics.check_version(None).status is CheckStatus.WARN


def test_daemon_log_tail_from_a_file_or_none(tmp_path: Path) -> None:
    log = tmp_path / "berthd.log"
    log.write_text("".join(f"line {n}\n" for n in range(500)))
    found = asyncio.run(diagnostics.daemon_log(3, journal=False, files=[tmp_path / "absent.log", log]))
    assert found.source == str(log) and found.text == "line 497\nline 498\nline 499"
    none = asyncio.run(diagnostics.daemon_log(journal=False, files=[tmp_path / "absent.log"]))
    assert none == diagnostics.DaemonLog("", diagnostics.NO_LOG)


def test_autostart_entry_text_quotes_the_command() -> None:
    text = autostart.entry_text(["/opt/My Apps/berth-desktop", "--hidden"])
    assert text.startswith("[Desktop Entry]\nType=Application\n")
    assert 'Exec="/opt/My Apps/berth-desktop" --hidden\n' in text
    assert "Name=Berth\n" in text and "Terminal=false\n" in text
    assert 'Exec="a\\$b%%"' in autostart.entry_text(["a$b%"])


def test_autostart_path_follows_xdg_config_home(tmp_path: Path) -> None:
    assert autostart.entry_path({"XDG_CONFIG_HOME": str(tmp_path)}) == tmp_path / "autostart/berth-desktop.desktop"
    home = tmp_path / "home"
    for env in ({}, {"XDG_CONFIG_HOME": "relative/dir"}):  # unset or not absolute: ~/.config
        assert autostart.entry_path(env, home) == home / ".config/autostart/berth-desktop.desktop"
    assert not autostart.supported("darwin") and not autostart.supported("win32") and autostart.supported("linux")


def test_autostart_written_and_removed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    path = autostart.set_start_at_login(True)
    assert path == tmp_path / "autostart" / "berth-desktop.desktop"
    command = autostart.app_command()
    assert command[0].endswith("berth-desktop") and f"Exec={command[0]}\n" in path.read_text()
    assert os.listdir(path.parent) == [path.name]  # no temp file left
    autostart.set_start_at_login(False)
    assert not path.exists()
    autostart.set_start_at_login(False)  # removing twice is fine


def test_engine_control_messages() -> None:
    pkexec = ["pkexec", "systemctl", "start", "berthd.service"]
    assert "dismissed" in failure_message(pkexec, 126, "")
    assert "not authorized" in failure_message(pkexec, 127, "") and "sudo systemctl start" in failure_message(
        pkexec, 127, "")
    assert failure_message(pkexec[1:], 5, "warning\nFailed to start berthd.service: Unit not found.\n") == (
        "Failed to start berthd.service: Unit not found.")
    assert failure_message(pkexec[1:], 1, "") == "systemctl start berthd.service failed (exit status 1)"


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="drops to nobody, so must start as root")
def test_permission_denied_on_the_socket_hints_at_the_berth_group(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    folder.mkdir(mode=0o755)
    os.chmod(tmp_path, 0o755)
    path = folder / "berth.sock"
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(path))
        os.chmod(path, 0o600)  # root's only, as berthd's socket is root:berth 0660
        server.listen()
        reader, writer = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child checks as nobody, and reports through the pipe
            try:
                os.setgroups([])
                os.setresgid(65534, 65534, 65534)
                os.setresuid(65534, 65534, 65534)
                result, _, _ = asyncio.run(diagnostics.check_engine(EngineClient(f"unix://{path}")))
                os.write(writer, json.dumps([result.status.value, result.detail, result.hint]).encode())
            finally:
                os._exit(0)
        os.close(writer)
        with os.fdopen(reader, "rb") as answer:
            status, detail, hint = json.loads(answer.read())
        os.waitpid(pid, 0)
    assert status == "fail" and detail == f"permission denied on unix://{path}"
    assert hint == diagnostics.GROUP_HINT and "usermod -aG berth" in hint
