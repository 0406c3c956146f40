"""``berth-desktop --self-test``: build the whole app offscreen, show and paint every page, and exit.

It proves that a bundle or an install carries everything the app needs (Qt plugins, fonts, resources,
Python modules) without a display and without an engine: the engine address points at a socket that does
not exist, so the app also goes through its "engine is not running" path. Settings go to a temp file.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile

import qasync  # type: ignore[import-untyped]
from PySide6.QtCore import QSettings
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QApplication, QWidget

from app.settings import Settings


def _paint(widget: QWidget) -> None:
    """Render ``widget`` to a pixmap; raises RuntimeError when nothing was painted."""
    if widget.grab().isNull():
        raise RuntimeError(f"{type(widget).__name__} did not paint")


def run_self_test() -> int:
    """Construct, show and paint every page and the tray menu; prints what it checked. Returns 0, or 1 with
    the error on stderr."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from app.application import Desktop  # the app's modules are imported here, inside the test

    app = QApplication.instance() or QApplication(sys.argv[:1])
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)

    async def run(settings_dir: str) -> list[str]:
        settings = Settings(QSettings(os.path.join(settings_dir, "berth.ini"), QSettings.Format.IniFormat))
        desktop = Desktop(f"unix://{settings_dir}/no-engine.sock", settings, notify=False)
        desktop.start()
        checked = []
        for number, (name, page) in enumerate(desktop.window.pages.items()):
            desktop.window.show_page(number)
            await asyncio.sleep(0)
            _paint(page)
            checked.append(name)
        desktop.tray.rebuild_menu()
        _paint(desktop.window)
        await desktop.close()
        return checked

    try:
        with tempfile.TemporaryDirectory(prefix="berth-self-test-") as settings_dir, loop:
            pages = loop.run_until_complete(run(settings_dir))
    except Exception as exc:  # the self-test reports any failure as one line and a non-zero status
        print(f"berth-desktop self-test failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(f"berth-desktop self-test passed: {len(pages)} pages ({', '.join(pages)}), tray menu, platform "
          f"{QGuiApplication.platformName()}")
    return 0
