"""GUI tests run offscreen (QT_QPA_PLATFORM=offscreen unless set) with pytest-qt.

``qloop`` is a qasync event loop over pytest-qt's QApplication, marked running for the whole module
(``already_running``): whenever Qt processes events (qtbot, pytest-qt's hooks) asyncio tasks make progress,
as in the app. Request it after module fixtures that use asyncio themselves (berthd's), so it stops first.
``run_async(qtbot, coro)`` waits for a coroutine while serving events.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import qasync
from PySide6.QtWidgets import QApplication


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
        loop.stop()
        loop._after_run_forever()
        # No longer the running loop (whatever qasync left): later tests call asyncio.run() as usual.
        asyncio.events._set_running_loop(None)
        asyncio.set_event_loop(None)
        executor.shutdown()


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
