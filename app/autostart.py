"""Start at login (Qt-free): an XDG autostart entry on Linux; on macOS and Windows the installer sets it.

The entry is ``$XDG_CONFIG_HOME/autostart/berth-desktop.desktop`` (``~/.config`` when XDG_CONFIG_HOME is unset
or not absolute, as the XDG base directory spec says). It is written to a temp file and renamed into place.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path

ENTRY_NAME = "berth-desktop.desktop"
INSTALLER_NOTE = "On macOS and Windows, start at login is set by the installer."


def supported(platform: str = sys.platform) -> bool:
    """Whether the app manages start at login itself here (Linux and other XDG desktops)."""
    return platform not in ("darwin", "win32")


def entry_path(env: Mapping[str, str] = os.environ, home: Path | None = None) -> Path:
    """Where the autostart entry lives."""
    config = env.get("XDG_CONFIG_HOME", "")
    base = Path(config) if os.path.isabs(config) else (home or Path.home()) / ".config"
    return base / "autostart" / ENTRY_NAME


def _quote_exec_arg(arg: str) -> str:
    """One Exec= argument, quoted as the Desktop Entry spec asks when it holds reserved characters."""
    if arg and not any(c in arg for c in " \t\n\"'\\><~|&;$*?#()`%"):
        return arg
    escaped = "".join("\\" + c if c in '"`$\\' else c for c in arg).replace("%", "%%")
    return f'"{escaped}"'


def entry_text(command: list[str]) -> str:
    """The autostart entry that runs ``command`` (argv) at login."""
    exec_line = " ".join(_quote_exec_arg(arg) for arg in command)
    return ("[Desktop Entry]\n"
            "Type=Application\n"
            "Name=Berth\n"
            "Comment=Containers from the tray: Berth's desktop app\n"
            f"Exec={exec_line}\n"
            "Icon=berth\n"
            "Terminal=false\n"
            "X-GNOME-Autostart-enabled=true\n")


def app_command() -> list[str]:
    """The command that starts the app: ``berth-desktop`` on PATH, else the one beside this interpreter (a venv
    not on PATH), else the bare name."""
    beside = Path(sys.executable).with_name("berth-desktop")
    return [shutil.which("berth-desktop") or (str(beside) if beside.exists() else "berth-desktop")]


def set_start_at_login(enabled: bool, env: Mapping[str, str] = os.environ) -> Path:
    """Write (``enabled``) or remove the autostart entry; returns its path. Raises OSError when the file cannot
    be written or removed."""
    path = entry_path(env)
    if not enabled:
        path.unlink(missing_ok=True)
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.tmp")
    with open(temp, "w", encoding="utf-8") as f:
        f.write(entry_text(app_command()))
        f.flush()
        os.fsync(f.fileno())
    os.replace(temp, path)
    return path
