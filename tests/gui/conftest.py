"""GUI tests run offscreen (QT_QPA_PLATFORM=offscreen unless set) with pytest-qt.

``qloop`` is a qasync event loop over pytest-qt's QApplication, marked running for the whole module
(``already_running``): whenever Qt processes events (qtbot, pytest-qt's hooks) asyncio tasks make progress,
as in the app. Request it after module fixtures that use asyncio themselves (berthd's), so it stops first.
Its teardown cancels what is left, closes the loop (and its executor) and leaves no running loop behind, so
later modules get a fresh loop and later tests can call ``asyncio.run``.
``run_async(qtbot, coro)`` waits for a coroutine while serving events. ``desktop`` is the app against the
module's berthd (``berthd_with_busybox``), window shown and engine running, confirmations answered yes.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import qasync
from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QApplication

from app.application import Desktop
from app.engine_session import EngineState
from app.settings import Settings


@pytest.fixture(scope="module")
def qloop(qapp: QApplication) -> Iterator[asyncio.AbstractEventLoop]:
    qapp.setQuitOnLastWindowClosed(False)  # closing a test window must not quit the application
    loop = qasync.QEventLoop(qapp, already_running=True)
    executor = ThreadPoolExecutor()  # asyncio.to_thread's threads; qasync's QThreads would abort the exit if left
    loop.set_default_executor(executor)
    asyncio.set_event_loop(loop)
    try:
        yield loop
    finally:
        pending = asyncio.all_tasks(loop)
        for task in pending:
            task.cancel()
        deadline = time.monotonic() + 5
        while not all(task.done() for task in pending) and time.monotonic() < deadline:
            qapp.processEvents()  # the cancelled tasks run to their end (qasync's timers are Qt events)
            time.sleep(0.01)
        # Not loop.stop(): it calls QApplication.exit(), after which no Qt timer fires in later modules.
        loop._QEventLoop__is_running = False
        qapp.aboutToQuit.disconnect(loop._after_run_forever)
        # No longer the running loop (whatever qasync left): later tests call asyncio.run() as usual.
        asyncio.events._set_running_loop(None)
        asyncio.set_event_loop(None)
        loop.close()  # joins the executor and disconnects qasync's signaller while its QObject still exists


def run_async(qtbot: Any, coro: Coroutine[Any, Any, object], timeout: float = 60) -> Any:
    """Run ``coro`` to completion while Qt serves events; fails after ``timeout`` seconds."""
    task = asyncio.ensure_future(asyncio.wait_for(coro, timeout))
    qtbot.waitUntil(task.done, timeout=int(timeout * 1000) + 1000)
    return task.result()


async def eventually(predicate: Callable[[], object], timeout: float = 5.0, what: str = "condition") -> None:
    """Wait (serving events) until ``predicate()`` is true; AssertionError after ``timeout`` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)


@pytest.fixture
def desktop(qtbot: Any, berthd_with_busybox: Any, qloop: asyncio.AbstractEventLoop, tmp_path: Any) -> Iterator[Desktop]:
    """The app against the module's berthd with its own settings file; every page's ``confirm`` says yes."""
    app = Desktop(berthd_with_busybox.url, Settings(QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat)),
                  notify=False)
    for page in app.window.pages.values():
        if hasattr(page, "confirm"):
            page.confirm = lambda question: True
    app.start()
    run_async(qtbot, eventually(lambda: app.session.state is EngineState.RUNNING, 10, "the engine"))
    yield app
    run_async(qtbot, app.close())
