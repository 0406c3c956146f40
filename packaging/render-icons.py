"""Render resources/icons/berth.svg to PNG files in the freedesktop hicolor sizes.

Usage: python packaging/render-icons.py OUT_DIR  ->  OUT_DIR/<N>x<N>/apps/berth.png (and scalable/apps/berth.svg).
Runs offscreen (no display needed).
"""

from __future__ import annotations

import os
import shutil
import sys

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication, QImage, QPainter
from PySide6.QtSvg import QSvgRenderer

SIZES = (16, 22, 24, 32, 48, 64, 128, 256, 512)
SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "resources", "icons", "berth.svg")


def render(out_dir: str) -> list[str]:
    """Write every size; returns the paths written. Raises ValueError if the SVG does not load."""
    app = QGuiApplication.instance() or QGuiApplication([])
    renderer = QSvgRenderer(SOURCE)
    if not renderer.isValid():
        raise ValueError(f"{SOURCE}: not a valid SVG")
    written = []
    for size in SIZES:
        image = QImage(size, size, QImage.Format.Format_ARGB32)
        image.fill(Qt.GlobalColor.transparent)
        painter = QPainter(image)
        renderer.render(painter)
        painter.end()
        path = os.path.join(out_dir, f"{size}x{size}", "apps", "berth.png")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if not image.save(path):
            raise ValueError(f"cannot write {path}")
        written.append(path)
    scalable = os.path.join(out_dir, "scalable", "apps", "berth.svg")
    os.makedirs(os.path.dirname(scalable), exist_ok=True)
    shutil.copyfile(SOURCE, scalable)
    del app
    return [*written, scalable]


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: render-icons.py OUT_DIR")
    for written_path in render(sys.argv[1]):
        print(written_path)
