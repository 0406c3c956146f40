"""The window's state survives a restart: geometry, page, each table's column widths and sort order, and the
detail view's last tab (kept in the settings file, restored by the next window)."""

from __future__ import annotations

import secrets

import pytest
from PySide6.QtCore import QSettings, Qt

from app.application import Desktop
from app.settings import Settings
from tests.gui.conftest import eventually, run_async

pytestmark = [pytest.mark.gui, pytest.mark.root, pytest.mark.network]


def test_window_state_is_restored(qtbot, desktop, berthd_with_busybox) -> None:
    n = f"ws-{secrets.token_hex(4)}"
    berthd_with_busybox.docker("create", "--name", n, "busybox", "true")
    again = None
    try:
        run_async(qtbot, eventually(lambda: desktop.live.containers.find(n) is not None, 5, "the container"))
        window = desktop.window
        window.resize(930, 610)
        window.show_page(3)
        images, volumes = window.images_page.view, window.tables()["Volumes"].view
        images.header().resizeSection(0, 217)
        images.sortByColumn(2, Qt.SortOrder.DescendingOrder)
        volumes.header().resizeSection(1, 143)
        volumes.sortByColumn(1, Qt.SortOrder.AscendingOrder)
        detail = window.open_detail(desktop.live.containers.find(n))
        detail.tabs.setCurrentIndex(2)
        window.close()

        store = desktop.settings.store
        again = Desktop(berthd_with_busybox.url, Settings(QSettings(store.fileName(), store.format())), notify=False)
        restored = again.window
        restored.show()
        # The offscreen screen is 800x600: restoreGeometry keeps the width inside it (up to the window's minimum
        # width); a window that was not restored would have its default 1100x680.
        assert restored.height() == 610 and restored.width() < 930
        assert restored.sidebar.currentRow() == 3 and restored.stack.currentWidget() is restored.tables()["Networks"]
        header = restored.images_page.view.header()
        assert header.sectionSize(0) == 217
        assert (header.sortIndicatorSection(), header.sortIndicatorOrder()) == (2, Qt.SortOrder.DescendingOrder)
        assert restored.images_page.proxy.sortColumn() == 2  # sorted, not just the indicator
        header = restored.tables()["Volumes"].view.header()
        assert header.sectionSize(1) == 143 and header.sortIndicatorSection() == 1
        assert restored.open_detail(desktop.live.containers.find(n)).tabs.currentIndex() == 2
    finally:
        if again is not None:
            run_async(qtbot, again.close())
        berthd_with_busybox.docker("rm", "-f", n)


def test_keyboard_switches_pages_and_deletes_on_the_current_page(qtbot, desktop, berthd_with_busybox) -> None:
    volume = f"ws-{secrets.token_hex(4)}"
    berthd_with_busybox.docker("volume", "create", volume)
    window = desktop.window
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow)
    try:
        qtbot.keyClick(window, Qt.Key.Key_2, Qt.KeyboardModifier.ControlModifier)
        assert window.stack.currentWidget() is window.images_page
        qtbot.keyClick(window, Qt.Key.Key_3, Qt.KeyboardModifier.ControlModifier)
        page = window.tables()["Volumes"]
        assert window.stack.currentWidget() is page
        run_async(qtbot, eventually(lambda: any(r.name == volume for r in desktop.live.volumes.rows), 5, "volume"))
        qtbot.keyClick(window, Qt.Key.Key_F, Qt.KeyboardModifier.ControlModifier)
        assert page.filter.hasFocus()
        window.search.setText(volume)  # the top bar's search filters the page shown
        assert page.proxy.rowCount() == 1
        page.select(lambda row: getattr(row, "name", "") == volume)
        page.view.setFocus()
        qtbot.keyClick(page.view, Qt.Key.Key_Delete)
        run_async(qtbot, eventually(lambda: berthd_with_busybox.docker(
            "volume", "inspect", volume, check=False).returncode != 0, 10, "the volume deleted"))
    finally:
        berthd_with_busybox.docker("volume", "rm", "-f", volume, check=False)
