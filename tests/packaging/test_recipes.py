"""The packaging recipes are complete and well-formed, including those that only build on macOS and Windows.

Nothing here builds a package (tests/packaging/test_bundle.py does, on Linux): these tests read the files —
Info.plist with plistlib, the systemd units and the .desktop entry as INI files (and with systemd's and
freedesktop's validators where installed), the Inno Setup script's sections and Pascal blocks, the shell
scripts with ``bash -n`` — and check that each carries what the product needs.
"""

from __future__ import annotations

import configparser
import importlib.util
import plistlib
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from PySide6.QtGui import QImage

from backend.version import VERSION

ROOT = Path(__file__).resolve().parents[2]
PACKAGING = ROOT / "packaging"


def _ini(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=True, interpolation=None, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive here
    parser.read_string(path.read_text())
    return parser


def test_macos_info_plist() -> None:
    with open(PACKAGING / "macos" / "Info.plist", "rb") as f:
        info = plistlib.load(f)
    assert info["LSUIElement"] is True  # tray-only start
    assert info["CFBundleExecutable"] == "berth-desktop"
    assert info["CFBundleShortVersionString"] == VERSION == info["CFBundleVersion"]
    assert re.fullmatch(r"[a-z0-9]+(\.[a-z0-9-]+)+", info["CFBundleIdentifier"])
    assert info["CFBundlePackageType"] == "APPL"
    assert info["NSHighResolutionCapable"] is True
    assert info["CFBundleIconFile"].endswith(".icns")


def test_systemd_units() -> None:
    service = _ini(PACKAGING / "systemd" / "berthd.service")
    socket = _ini(PACKAGING / "systemd" / "berthd.socket")
    assert service["Service"]["ExecStart"].split() == ["/usr/bin/berthd", "-H", "fd://"]
    assert service["Service"]["KillMode"] == "process"  # containers survive daemon restarts
    assert service["Service"]["Delegate"] == "yes"
    assert "berthd.socket" in service["Unit"]["Requires"]
    assert socket["Socket"]["ListenStream"] == "/run/berth/berth.sock"
    assert socket["Socket"]["SocketMode"] == "0660"
    assert socket["Socket"]["SocketGroup"] == "berth"
    assert socket["Install"]["WantedBy"] == "sockets.target"


def test_desktop_entry() -> None:
    path = PACKAGING / "linux" / "berth-desktop.desktop"
    entry = _ini(path)["Desktop Entry"]
    assert entry["Type"] == "Application" and entry["Exec"].split()[0] == "berth-desktop"
    assert entry["Icon"] == "berth" and entry["Categories"].endswith(";")
    validator = shutil.which("desktop-file-validate")
    if validator is None:
        print("desktop-file-validate not installed (package desktop-file-utils): INI checks only")
        return
    result = subprocess.run([validator, str(path)], capture_output=True, text=True)
    assert result.returncode == 0 and "error" not in result.stdout.lower(), result.stdout + result.stderr


def test_icon_svg_renders(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("render_icons", PACKAGING / "render-icons.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    written = module.render(str(tmp_path))
    for size in (16, 48, 256, 512):
        image = QImage(str(tmp_path / f"{size}x{size}" / "apps" / "berth.png"))
        assert (image.width(), image.height()) == (size, size)
        assert image.pixelColor(size // 2, size // 8).alpha() == 255  # the icon's body is opaque
    assert str(tmp_path / "scalable" / "apps" / "berth.svg") in written


def test_inno_setup_script() -> None:
    text = (PACKAGING / "windows" / "berth.iss").read_text()
    sections = re.findall(r"^\[(\w+)\]\s*$", text, re.MULTILINE)
    for needed in ("Setup", "Files", "Icons", "Run", "Code"):
        assert needed in sections, f"[{needed}] missing"
    assert f'#define AppVersion "{VERSION}"' in text
    code = text.split("[Code]", 1)[1]
    opened = len(re.findall(r"\bbegin\b", code, re.IGNORECASE))
    closed = len(re.findall(r"\bend;", code, re.IGNORECASE))
    assert opened == closed, "unbalanced begin/end in [Code]"
    assert "function InitializeSetup(): Boolean;" in code and "QemuFound" in code
    for line in text.splitlines():  # every entry line of the list sections names its parameters
        if line.startswith(("Source:", "Name:", "Filename:")):
            assert re.fullmatch(r'(\w+: ("[^"]*"|[^;"]+)(; |;?$))+\s*\\?', line.strip()), line


def test_debian_control_and_maintainer_scripts() -> None:
    control = (PACKAGING / "deb" / "control.in").read_text()
    fields = dict(re.findall(r"^([A-Za-z-]+): (.*)$", control, re.MULTILINE))
    for field in ("Package", "Version", "Architecture", "Maintainer", "Depends", "Description", "Installed-Size"):
        assert field in fields, field
    depends = control.split("Depends:", 1)[1].split("\nRecommends:", 1)[0]
    assert "iptables | nftables" in depends and "libseccomp2" in depends
    for script in ("postinst", "prerm", "postrm"):
        path = PACKAGING / "deb" / script
        assert path.stat().st_mode & 0o111, f"{script} is not executable"
        assert subprocess.run(["sh", "-n", str(path)], capture_output=True).returncode == 0, script


@pytest.mark.parametrize("script", sorted(p.relative_to(ROOT).as_posix() for p in PACKAGING.rglob("*.sh")))
def test_shell_scripts_parse(script: str) -> None:
    result = subprocess.run(["bash", "-n", str(ROOT / script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
