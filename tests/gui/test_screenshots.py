"""``scripts/screenshots.py`` renders every page, the detail tabs, the dialogs and the tray menu with real data:
each expected PNG exists, has the expected size and shows more than one flat colour."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from PySide6.QtGui import QImage

pytestmark = [pytest.mark.gui, pytest.mark.root, pytest.mark.network, pytest.mark.slow]

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "screenshots.py"
WINDOWS = ("containers", "containers-dark", "images", "volumes", "networks", "builds", "engine", "settings",
           "troubleshoot", "detail-logs", "detail-exec", "detail-inspect", "detail-stats", "detail-files")
DIALOGS = ("pull-dialog", "run-dialog", "build-dialog")


def colours(image: QImage) -> int:
    """How many distinct colours a grid of 40x40 samples shows."""
    return len({image.pixel(image.width() * x // 40, image.height() * y // 40) for x in range(40) for y in range(40)})


def test_screenshots_of_every_view(tmp_path, qapp) -> None:
    result = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path)], capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    for name, size in [*((n, (1100, 700)) for n in WINDOWS), *((n, (760, 560)) for n in DIALOGS),
                       ("tray-menu", None)]:
        image = QImage(str(tmp_path / f"{name}.png"))
        assert not image.isNull(), f"{name}.png is missing"
        if size is not None:
            assert (image.width(), image.height()) == size, name
        assert colours(image) > 3, f"{name}.png is flat"
    dark, light = QImage(str(tmp_path / "containers-dark.png")), QImage(str(tmp_path / "containers.png"))
    assert dark.pixelColor(dark.width() - 20, dark.height() // 2).lightness() < 100
    assert light.pixelColor(light.width() - 20, light.height() // 2).lightness() > 200
